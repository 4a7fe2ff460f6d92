# Max attempts: a job whose upstream keeps failing with transient errors is
# given back for another attempt (status queued, entry left un-acked and
# reclaimed after RAGQ_RECLAIM_AFTER), and after RAGQ_MAX_ATTEMPTS attempts
# ends failed with the upstream's error and a dead-stream entry.  A job
# claimed more often than that (workers crashing on it) fails max_attempts.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wa$$";
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);

my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs',
    RAGQ_MAX_ATTEMPTS => 2, RAGQ_RECLAIM_AFTER => '1s',
});
ok($w->ready, 'worker is ready') or diag $w->log;

$s->reset;
$s->fault({ path => '/v1/embeddings', status => 500, times => -1 });
my $id = Ragq::Worker::enqueue(prefix => $P);
ok($w->wait_log(qr/job $id: attempt 1 of 2 gave up/, 20), 'attempt 1 gives up after its retries');
is(Ragq::Worker::wait_final($P, [$id], 30), 1, 'the job ends');
my $j = Ragq::Worker::job($P, $id);
is($j->{status}, 'failed', 'failed after the last attempt') or diag $w->log;
is($j->{attempts}, 2, 'attempts = RAGQ_MAX_ATTEMPTS');
my $e = decode_json($j->{error});
like($e->{message}, qr/server had an error/, "the upstream's message");
ok(length $e->{code}, "error code $e->{code}");
is($s->count('/v1/embeddings'), 10, 'five tries per attempt') or diag $s->count('/v1/embeddings'), $w->log;
like($w->log, qr/reclaimed stream entry/, 'the second attempt came from a reclaim');
my @dead = Ragq::Valkey::cmd_list('XRANGE', "$P:dead", '-', '+');
is($dead[2], $id, 'dead stream entry for the job');
is(decode_json($dead[4])->{code}, $e->{code}, 'dead entry carries the error');
is(Ragq::Valkey::cmd('XLEN', "$P:jobs"), 0, 'stream entry acked and deleted');

# A job already claimed RAGQ_MAX_ATTEMPTS times fails without running.
$s->reset;
my $id2 = Ragq::Worker::enqueue(prefix => $P, attempts => 2);
Ragq::Worker::wait_final($P, [$id2], 10);
my $j2 = Ragq::Worker::job($P, $id2);
is($j2->{status}, 'failed', 'crash-looping job failed');
is($j2->{attempts}, 3, 'its third claim');
is(decode_json($j2->{error})->{code}, 'max_attempts', 'error.code max_attempts');
is($s->count('/v1/embeddings'), 0, 'no upstream call');
is(Ragq::Valkey::cmd('XLEN', "$P:dead"), 2, 'dead stream entry');

# A job that is gone (expired) or already final is only acknowledged.
my $id3 = Ragq::Worker::new_id();
Ragq::Valkey::cmd('HSET', "$P:job:$id3", 'status', 'finished', 'result', 'old', 'attempts', 1);
Ragq::Valkey::cmd('XADD', "$P:jobs", '*', 'job', $id3);
my $id4 = Ragq::Worker::new_id();
Ragq::Valkey::cmd('XADD', "$P:jobs", '*', 'job', $id4);
ok($w->wait_log(qr/job $id4 is gone/, 10), 'missing job hash: acknowledged');
ok($w->wait_log(qr/job $id3 is finished/, 10), 'final job: acknowledged');
is(Ragq::Worker::field($P, $id3, 'result'), 'old', 'a final job is not run again');
ok(!Ragq::Valkey::cmd('EXISTS', "$P:job:$id4"), 'no hash created for a missing job');
# The acknowledgement may trail the log line or the final state by a moment.
for (1 .. 100) {
    last if Ragq::Valkey::cmd('XLEN', "$P:jobs") == 0;
    select(undef, undef, undef, 0.05);
}
is(Ragq::Valkey::cmd('XLEN', "$P:jobs"), 0, 'their entries are deleted');

is($w->stop, 0, 'exit 0');
done_testing();
