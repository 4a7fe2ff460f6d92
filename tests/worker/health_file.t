# RAGQ_HEALTH_FILE: the file the Docker healthcheck reads.  A stale one left
# by an earlier run is removed at start, and none appears while the worker
# cannot reach Valkey; it appears once the worker beats, and its mtime
# advances with every beat Valkey accepted, not while a beat's EXEC fails
# (WRONGTYPE) nor while Valkey is down or hung (SIGSTOP: beats sent, not
# answered), and again when it is back; a SIGTERM exit removes it.  A path
# that cannot be written: one warning, and the worker goes on beating.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Worker;
use Ragq::Proc qw(wait_until);

my $P   = "hf$$";
my $tmp = tempdir(CLEANUP => 1);
my $hf  = "$tmp/worker.health";

# mtime with its fraction (undef: no file)
sub mtime { my @st = Time::HiRes::stat($_[0]); return @st ? $st[9] : undef }

my %env = (RAGQ_PREFIX => $P, RAGQ_STORE_PATH => "$tmp/store", RAGQ_HEARTBEAT => '200ms',
           RAGQ_HEALTH_FILE => $hf);

# A worker that never reaches Valkey: the stale file is gone, none is made.
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1);
my $closed = $l->sockport;
close $l;
open my $f, '>', $hf or die "$hf: $!";
close $f;
utime time - 60, time - 60, $hf;
my $w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'hf-x',
    RAGQ_VALKEY_URL => "redis://127.0.0.1:$closed", RAGQ_CONNECT_TIMEOUT => '1s' });
ok(wait_until('the stale file removed', sub { !-e $hf }, 5), 'a stale health file of an earlier run is removed at start');
sleep 0.6;    # three beats' time
ok(!-e $hf, 'no health file while the worker cannot reach Valkey');
is($w->wait_exit(10) >> 8, 1, 'that worker gives up (exit 1)');
ok(!-e $hf, 'and leaves none');

# A worker that beats.
unlink $hf;
my $t0 = time;
$w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'hf-a' });
ok($w->ready, 'worker is ready') or diag $w->log;
ok(wait_until('the health file', sub { -e $hf }), 'the health file appears once the worker beats') or diag $w->log;
my $m1 = mtime($hf);
ok(defined $m1 && $m1 >= $t0 - 1, 'touched now');
ok(defined $m1 && Ragq::Valkey::cmd('EXISTS', "$P:worker:hf-a") == 1,
   'after a beat Valkey took: the heartbeat is there');
my $m2 = wait_until('a newer mtime', sub { my $m = mtime($hf); $m && $m > $m1 ? $m : 0 }, 3);
ok($m2 && $m2 > $m1, 'its mtime advances with the beats');
my $m3 = wait_until('a newer mtime', sub { my $m = mtime($hf); $m && $m > $m2 ? $m : 0 }, 3);
ok($m2 && $m3 && $m3 > $m2, 'and again');

# Beats that Valkey answers with an error: the hash's key holds a string,
# so EXEC's HSET fails (WRONGTYPE; PEXPIRE keeps the string alive).
Ragq::Valkey::cmd('DEL', "$P:worker:hf-a");
Ragq::Valkey::cmd('SET', "$P:worker:hf-a", 'x');
ok($w->wait_log(qr/heartbeat \Q$P\E:worker:hf-a: WRONGTYPE/, 5), 'the beats fail')
    or diag $w->log;
sleep 0.3;    # a beat sent before the SET may still be answered
my $failing = time;
my $m = mtime($hf);
sleep 1;      # five beats
my $n = mtime($hf);
ok(defined $m && $m > $failing - 1.5 && defined $n && $n == $m,
   'while they fail, the mtime of the last good beat stays');
Ragq::Valkey::cmd('DEL', "$P:worker:hf-a");
my $again = wait_until('a newer mtime', sub { my $n = mtime($hf); $n && $n > $m ? $n : 0 }, 5);
ok($again, 'beats that work again: it advances');

# Valkey away, then back.
my $fresh = mtime($hf);
Ragq::Valkey::stop();
my $down = time;
sleep 0.3;
$m = mtime($hf);
sleep 1;
$n = mtime($hf);
ok(defined $fresh && $fresh > $down - 1 && defined $m && defined $n && $n == $m,
   'while Valkey is down, the mtime of the last good beat stays (the file too: '
   . 'the healthcheck judges its age)');
Ragq::Valkey::start();
$again = wait_until('a newer mtime', sub { my $n = mtime($hf); $n && $n > $m ? $n : 0 }, 15);
ok($again, 'Valkey back: it advances again') or diag $w->log;

# Valkey hung (SIGSTOP): beats are sent and not answered, nothing touched.
$fresh = mtime($hf);
Ragq::Valkey::pause();
my $hung = time;
sleep 0.3;
$m = mtime($hf);
sleep 1;
$n = mtime($hf);
Ragq::Valkey::resume();
ok(defined $fresh && $fresh > $hung - 1 && defined $m && defined $n && $n == $m,
   'while Valkey is hung, the mtime of the last good beat stays');
$again = wait_until('a newer mtime', sub { my $n = mtime($hf); $n && $n > $m ? $n : 0 }, 15);
ok($again, 'Valkey answers again: it advances again') or diag $w->log;

# A clean exit removes it.
my $was = -e $hf;
is($w->stop, 0, 'SIGTERM: exit 0') or diag $w->log;
ok($was && !-e $hf, 'SIGTERM: the health file is gone when the process is');
is(Ragq::Valkey::cmd('EXISTS', "$P:worker:hf-a"), 0, 'and so is the heartbeat');

# A file that cannot be made: warned once, the worker goes on.
$w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'hf-b',
    RAGQ_HEALTH_FILE => "$tmp/no/such/dir/worker.health" });
ok($w->ready, 'a worker with an unwritable health file is ready') or diag $w->log;
my $b1 = wait_until('a beat', sub { Ragq::Valkey::cmd('HGET', "$P:worker:hf-b", 'beat_at') });
ok($b1, 'it beats');
ok(wait_until('a newer beat', sub { my $b = Ragq::Valkey::cmd('HGET', "$P:worker:hf-b", 'beat_at');
                  $b && $b > $b1 + 400 }, 5), 'and goes on beating');
my @warned = $w->log =~ /warn: health file \Q$tmp\E\/no\/such\/dir\/worker\.health \(RAGQ_HEALTH_FILE\): No such file or directory/g;
is(scalar @warned, 1, 'one warning, not one per beat') or diag $w->log;
ok($w->alive, 'still running');
is($w->stop, 0, 'SIGTERM: exit 0') or diag $w->log;

done_testing();
