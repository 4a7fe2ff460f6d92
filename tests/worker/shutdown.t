# SIGTERM: stop claiming, let jobs in flight finish, exit 0.  When the
# grace period ends first, the jobs left are not acknowledged and another
# worker reclaims them.
use strict;
use warnings;
use Test::More;
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;
use Ragq::SlowProxy;
use Time::HiRes qw(time sleep);

my $P = "ws$$";
my $s = Ragq::Standin->start(dim => 16, latency_ms => 500);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RECLAIM_AFTER => '1s');

my $w = Ragq::Worker->start(env => { %env, RAGQ_CONCURRENCY => 5 });
ok($w->ready, 'worker ready');
my @ids = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 5;
ok(Ragq::Worker::wait_status($P, $ids[4], 'started', 10), 'five jobs in flight');
$w->signal('TERM');
ok($w->wait_log(qr/stopping: no new claims/, 5), 'stops claiming');
my @late = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 2;
my $st = $w->wait_exit(10);
is($st, 0, 'exit status 0');
is(scalar(grep { Ragq::Worker::field($P, $_, 'status') eq 'finished' } @ids), 5,
   'jobs in flight finished before exit');
is(scalar(grep { Ragq::Worker::field($P, $_, 'status') eq 'queued' } @late), 2,
   'jobs queued after SIGTERM were not claimed');
like($w->log, qr/drained/, 'drained');

# Grace shorter than the jobs: exit 0 anyway, leave them for reclaim.
$s->latency(2000);
my $w2 = Ragq::Worker->start(env => { %env, RAGQ_SHUTDOWN_GRACE => '500ms', RAGQ_CONCURRENCY => 2 });
ok($w2->ready, 'second worker ready');
ok(Ragq::Worker::wait_status($P, $late[0], 'started', 10)
   && Ragq::Worker::wait_status($P, $late[1], 'started', 10), 'it took the two late jobs');
$w2->signal('TERM');
is($w2->wait_exit(5), 0, 'exit 0 when the grace ends');
like($w2->log, qr/grace \(500 ms\) is over: 2 job\(s\) left/, 'says what was left');
my ($pending) = Ragq::Valkey::cmd_list('XPENDING', "$P:jobs", "$P:workers");
is($pending, 2, 'the two jobs stay pending (un-acked)');

$s->latency(0);
my $w3 = Ragq::Worker->start(env => \%env);
ok($w3->ready, 'third worker ready');
is(Ragq::Worker::wait_final($P, \@late, 20), 2, 'the left jobs are reclaimed') or diag $w3->log, explain [map { Ragq::Worker::job($P, $_) } @late], Ragq::Valkey::cmd('XPENDING', "$P:jobs", "$P:workers", '-', '+', 10);
is(scalar(grep { Ragq::Worker::field($P, $_, 'status') eq 'finished' } @late), 2, 'and finish');
$w3->signal('INT');
is($w3->wait_exit(5), 0, 'SIGINT: exit 0 too');

# A stop that begins while a command is on the wire (here every reply held
# by a paused proxy: the heartbeat's, the stop's own) exits once its reply
# comes, not when RAGQ_SHUTDOWN_GRACE ends: nothing looked again then.
{
    my $proxy = Ragq::SlowProxy->start(to => Ragq::Valkey::port(), rate => 1 << 20);
    my $w4 = Ragq::Worker->start(env => { %env, RAGQ_HEARTBEAT => '200ms',
                                          RAGQ_SHUTDOWN_GRACE => '20s',
                                          RAGQ_VALKEY_URL => 'redis://127.0.0.1:' . $proxy->port });
    ok($w4->ready, 'worker behind the proxy ready') or diag $w4->log;
    $proxy->pause;
    sleep 0.5;    # a heartbeat goes out, its reply held
    $w4->signal('TERM');
    ok($w4->wait_log(qr/stopping: no new claims/, 5), 'held replies: stops claiming');
    sleep 0.3;
    $proxy->resume;
    my $t0 = time;
    is($w4->wait_exit(10), 0, 'held replies: exit 0');
    cmp_ok(time - $t0, '<', 5, 'held replies: once they came, not at the 20 s grace')
      or diag $w4->log;
    like($w4->log, qr/drained/, 'held replies: drained');
    $proxy->stop;
}
done_testing();
