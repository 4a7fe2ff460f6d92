# Heartbeats of workers whose clocks disagree: the scores of P:workers:live
# and its prune horizon are Valkey's TIME, not each worker's clock.  Two
# workers on one redis-server, one of them 5 minutes behind (libfaketime,
# its monotonic clock left real so its timers keep time): over many beats
# both are always listed, and every score is within a few seconds of
# Valkey's TIME (with each worker's own clock, the one ahead pruned the
# other on each of its beats, and nginx's ragq_workers flapped).  The hash's
# started_at stays the worker's own clock.  An ACL user without +time: the
# worker warns once and lists itself by its own clock.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Worker;

my $FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
# scripts/install-deps installs it: its absence is a failure, not a skip
-e $FAKETIME or die "libfaketime is not installed ($FAKETIME: apt-get install faketime)";

my $P   = "hc$$";
my $tmp = tempdir(CLEANUP => 1);
my %env = (RAGQ_PREFIX => $P, RAGQ_STORE_PATH => "$tmp/store", RAGQ_HEARTBEAT => '200ms');

# The worker's clock 5 minutes behind; its timers (CLOCK_MONOTONIC) real.
# Under ASan, a preloaded library must be allowed before ASan's runtime.
my %behind = (LD_PRELOAD => $FAKETIME, FAKETIME => '-5m', FAKETIME_DONT_FAKE_MONOTONIC => 1,
              FAKETIME_NO_CACHE => 1);
$behind{ASAN_OPTIONS} = "$ENV{ASAN_OPTIONS}:verify_asan_link_order=0" if $ENV{ASAN_OPTIONS};

# Valkey's TIME in epoch ms.
sub valkey_ms {
    my ($s, $us) = Ragq::Valkey::cmd_list('TIME');
    return $s * 1000 + int($us / 1000);
}

# ZRANGE P:workers:live WITHSCORES as { name => score }.
sub live { return { Ragq::Valkey::cmd_list('ZRANGE', "$P:workers:live", 0, -1, 'WITHSCORES') } }

sub hget { Ragq::Valkey::cmd('HGET', "$P:worker:$_[0]", $_[1]) }

my $a = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'hc-on-time' });
my $b = Ragq::Worker->start(env => { %env, %behind, RAGQ_CONSUMER => 'hc-behind' });
ok($a->ready, 'the worker on time is ready') or diag $a->log;
ok($b->ready, 'the worker 5 minutes behind is ready') or diag $b->log;

my $deadline = time + 10;
sleep 0.05 while time < $deadline && keys %{ live() } < 2;

# libfaketime took: the hash's started_at is the worker's own clock.
my $now = valkey_ms();
my ($sa, $sb) = (hget('hc-on-time', 'started_at'), hget('hc-behind', 'started_at'));
ok(defined $sb && $now - $sb > 280_000 && $now - $sb < 320_000,
   'the worker behind runs 5 minutes behind (its started_at, its own clock)')
  or diag "valkey $now, started_at " . ($sb // 'none');
ok(defined $sa && abs($now - $sa) < 20_000, 'the other one on time (its started_at)')
  or diag "valkey $now, started_at " . ($sa // 'none');

# Sampled every 40 ms over 3 s: 15 beats of each.
my ($samples, $both, $near, @bad) = (0, 0, 0);
my $t_end = time + 3;
while (time < $t_end) {
    my $t0 = valkey_ms();
    my $l = live();
    my $t1 = valkey_ms();
    $samples++;
    if (defined $l->{'hc-on-time'} && defined $l->{'hc-behind'}) {
        $both++;
    } elsif (@bad < 5) {
        push @bad, join(' ', %$l);
    }
    # a score is a beat of the last 200 ms: within 3 s of TIME, either way
    $near++ if 2 == grep { defined $l->{$_} && $l->{$_} > $t0 - 3000 && $l->{$_} < $t1 + 3000 }
        qw(hc-on-time hc-behind);
    sleep 0.04;
}
is($both, $samples, "both workers listed in every one of $samples samples")
  or diag "listings without both: @bad";
is($near, $samples, 'every score within 3 s of Valkey\'s TIME');
my $bb = hget('hc-behind', 'beat_at');
ok(defined $bb && abs(valkey_ms() - $bb) < 3000, 'beat_at is Valkey\'s time too')
  or diag 'beat_at ' . ($bb // 'none');
unlike($b->log . $a->log, qr/warn|error/, 'nothing to warn about') or diag $b->log;

# A clean exit still delists the worker behind.
$b->stop;
ok(!defined live()->{'hc-behind'}, 'a SIGTERM exit delists it');

# ---- TIME refused (an ACL without +time) -----------------------------------
my $rules = Ragq::Worker::acl_rules($P, 's3cret') =~ s/ \+time\b//r;
Ragq::Valkey::cmd('ACL', 'SETUSER', 'hc-notime', split / /, $rules);
my $c = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'hc-notime',
    RAGQ_VALKEY_URL => 'redis://hc-notime:s3cret@127.0.0.1:' . Ragq::Valkey::port() });
ok($c->ready, 'a worker whose ACL lacks +time is ready') or diag $c->log;
ok($c->wait_log(qr/warn: heartbeat \S+: TIME: NOPERM[^\n]*grant \+time/, 10),
   'it warns that TIME is refused') or diag $c->log;
$deadline = time + 5;
sleep 0.05 while time < $deadline && !defined live()->{'hc-notime'};
my $sc = live()->{'hc-notime'};
ok(defined $sc && abs(valkey_ms() - $sc) < 3000, 'and is listed, by its own clock');
sleep 1;
my @warns = $c->log =~ /heartbeat \S+: TIME: NOPERM/g;
is(scalar @warns, 1, 'warned once over several beats');
unlike($c->log, qr/valkey: TIME:/, 'the queue does not count it as a fault of its own (no second warning)')
    or diag $c->log;
$c->stop;
ok(!defined live()->{'hc-notime'}, 'its SIGTERM exit delists it');
Ragq::Valkey::cmd('ACL', 'DELUSER', 'hc-notime');

$a->stop;
Ragq::Valkey::cmd('DEL', "$P:workers:live");
done_testing;
