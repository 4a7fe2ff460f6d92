# ragq-worker with Sentinel (redis+sentinel://, DESIGN §6): a primary, a
# replica and three redis-sentinels on loopback (Ragq::ValkeyHA), the worker
# logged in as the ACL user of README "Production Valkey".  It finds the
# primary through the sentinels (the first one listed being down); SIGKILL
# of the primary with jobs queued and in flight: the worker follows
# +switch-master to the new primary without a restart and every job reaches
# a final state (jobs acknowledged just before the kill may run twice:
# at-least-once).  Then the same over TLS (rediss+sentinel://).
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Ragq::Standin;
use Ragq::Worker;
use Ragq::ValkeyHA;

my $P = "ws$$";
my $ACL = Ragq::Worker::acl_rules($P, 's3cret');

my $ha = Ragq::ValkeyHA->new;
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_CONNECT_TIMEOUT => '1s',
           RAGQ_RECLAIM_AFTER => '3s', RAGQ_CONCURRENCY => 4);

sub finished {
    my ($ids) = @_;
    return scalar grep { (Ragq::Worker::field($P, $_, 'status') // '') eq 'finished' } @$ids;
}

# ---- fail-over --------------------------------------------------------------
my $set = $ha->ha_set(users => { 'ragq-worker' => $ACL });
local $Ragq::Worker::VALKEY = $set->{primary};

# The first sentinel listed is down: the next ones answer.
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1);
my $dead = $l->sockport;
close $l;
(my $url = $ha->sentinel_url($set, user => 'ragq-worker', pass => 's3cret'))
  =~ s{\@}{\@127.0.0.1:$dead,};
my $w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $url });
ok($w->ready(15), 'ready through the sentinels (the first one down)') or diag $w->log;
my $pid = $w->pid;
my $id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'a job on the first primary');
like($set->{primary}->cli('CLIENT', 'LIST'), qr/cmd=xreadgroup user=ragq-worker /,
     'the worker is on the primary, as its ACL user');

# Jobs in flight (slow model) and queued (concurrency 4) when the primary dies.
$s->latency(1500);
my @before = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 8;
$set->{primary}->cli('WAIT', 1, 2000);    # what ragq_valkey_replicas 1 does
for (1 .. 100) {
    last if grep { (Ragq::Worker::field($P, $_, 'status') // '') eq 'started' } @before;
    sleep 0.05;
}
$set->{primary}->cli('WAIT', 1, 2000);
my $old = $set->{primary};
my $t0 = time;
$old->kill;
my $new = $ha->wait_failover($set, 30);
my $t_failover = time - $t0;
isnt($new->client_port, $old->client_port, 'the sentinels promoted the replica');
$Ragq::Worker::VALKEY = $new;
$s->latency(0);
my @after = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 3;
is(Ragq::Worker::wait_final($P, [@before, @after], 60), 11, 'every job reaches a final state');
my $t_done = time - $t0;
is(finished([@before, @after]), 11, 'and finishes: no job lost');
is(Ragq::Worker::field($P, $_, 'attempts') <= 3 ? 1 : 0, 1, "job $_ within its attempts")
  for $before[0];
is($w->pid, $pid, 'the same worker process');
ok($w->alive, 'still running');
like($w->log, qr/sentinel: \+switch-master: the primary "ragqmaster" moved from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+/,
     'follows +switch-master');
like($new->cli('CLIENT', 'LIST'), qr/cmd=(xreadgroup|evalsha|xautoclaim|xclaim) user=ragq-worker /,
     'the worker is on the new primary');
unlike($w->log, qr/error:/, 'no error logged') or diag $w->log;
note $w->log;
diag(sprintf('fail-over: the sentinels switched %.1f s after SIGKILL; all 11 jobs final %.1f s after it',
             $t_failover, $t_done));

# The old primary comes back as a replica: nothing changes for the worker.
# The sentinels make it a replica once they see it up again (~10 s; under
# ASan and load it took over 30 s once in CI).  Meanwhile a stall of the
# machine must not look like the new primary failing: wait_failover raised
# down-after (see set_down_after in Ragq::ValkeyHA).
my $t_restart = time;
$old->start;
$old->wait_role('slave', 90);
diag(sprintf('the sentinels made the old primary a replica %.1f s after it started again',
             time - $t_restart));
$id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'a job after the old primary came back as a replica');
is($w->stop, 0, 'exit 0');

# ---- the same over TLS --------------------------------------------------------
my $k = $ha->pki;
my $tset = $ha->ha_set(tls => 1, plain => 0, name => 'ragqtls', users => { 'ragq-worker' => $ACL });
$Ragq::Worker::VALKEY = $tset->{primary};
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_CA_FILE => $k->{ca},
    RAGQ_VALKEY_CERT_FILE => $k->{client_cert}, RAGQ_VALKEY_KEY_FILE => $k->{client_key},
    RAGQ_VALKEY_URL => $ha->sentinel_url($tset, user => 'ragq-worker', pass => 's3cret') });
ok($w->ready(15), 'ready through sentinels over TLS (rediss+sentinel://)') or diag $w->log;
$id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'a job over TLS');
$tset->{primary}->kill;
$new = $ha->wait_failover($tset, 30);
$Ragq::Worker::VALKEY = $new;
$id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 30), 1, 'a job on the new primary after a fail-over over TLS');
is(Ragq::Worker::field($P, $id, 'status'), 'finished', 'finished');
is($w->stop, 0, 'exit 0');

done_testing();
