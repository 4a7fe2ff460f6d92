# ragq-worker and POST /job-cancel (DEVELOPERS.md "Cancel"; the cancel is
# the module's own script, Ragq::Worker::cancel): a job canceled while
# queued is acknowledged by the claim without any upstream call; a job
# canceled while it runs (its chat call hanging in the stand-in, then its
# embeddings call delayed) has its upstream connection closed (the
# stand-in sees the client leave), no result written, its entry acked
# (nothing pending), one "canceled" log line and the heartbeat's
# jobs_canceled; and the worker goes on with the next job.  After a
# Valkey restart the worker subscribes again and cancels still work.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker qw(wait_until pending);

my $P = "wc$$";
my $s = Ragq::Standin->start(dim => 32);
$s->create_collection('docs', 32);
$s->upsert('docs', [
    { id => 1, payload => { text => 'The capital of France is Paris.', source => 'france.md' } },
]);

sub aborted { $s->stats->{aborted}{ $_[0] } // 0 }

my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'sk',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_HEARTBEAT => '1s',
           RAGQ_CONSUMER => "c$$");

# ---- canceled while queued: the claim acks it, no upstream call ----
my $q = Ragq::Worker::enqueue(prefix => $P, query => 'never run');
my @r = Ragq::Worker::cancel($P, $q);
is($r[0], 2, 'queued job canceled by the module\'s script');
is(Ragq::Worker::field($P, $q, 'status'), 'canceled', '... status canceled');
is(Ragq::Valkey::cmd('XLEN', "$P:jobs"), '1', '... its entry stays for the claim');

# Canceled while queued, with a ragq_job_ttl shorter than the wait for a
# worker: its hash has no TTL until a claim acks its entry, or that claim
# would find no hash, write the job queued again and run it.
my $q2 = Ragq::Worker::enqueue(prefix => $P, query => 'never run either');
is((Ragq::Worker::cancel($P, $q2, '', 300))[0], 2, 'queued job canceled with a 300 ms TTL');
is(Ragq::Valkey::cmd('PTTL', "$P:job:$q2"), '-1', '... its hash has no TTL while its entry waits');
sleep 0.6;
is(Ragq::Worker::field($P, $q2, 'status'), 'canceled', '... and outlives that TTL');

$s->reset;
my $w = Ragq::Worker->start(env => \%env);
ok($w->ready, 'worker is ready') or diag $w->log;
ok(wait_until('the canceled entry acked', sub { Ragq::Valkey::cmd('XLEN', "$P:jobs") eq '0' }),
   'the claim acked and deleted the canceled entry');
like($w->log, qr/job $q was canceled before this worker claimed it; acknowledged its entry without running it/,
     'one log line');
is(pending($P), 0, 'nothing pending');
is_deeply($s->stats->{requests}, {}, 'no upstream call at all');
is(Ragq::Worker::field($P, $q, 'status'), 'canceled', 'still canceled');
is(Ragq::Worker::field($P, $q2, 'status'), 'canceled', 'the one past its TTL too, never run');
my $q2ttl = Ragq::Valkey::cmd('PTTL', "$P:job:$q2");
ok($q2ttl > 300 && $q2ttl <= 86_400_000, "the claim gave it RAGQ_RESULT_TTL ($q2ttl ms)");

# ---- canceled while its chat call hangs: the connection is closed ----
$s->fault({ path => '/v1/chat/completions', mode => 'hang', times => 1 });
my $id = Ragq::Worker::enqueue(prefix => $P, query => 'What is the capital of France?');
ok(wait_until('the chat call', sub { $s->count('/v1/chat/completions') >= 1 }),
   'the job reached its chat call') or diag $w->log;
is(Ragq::Worker::field($P, $id, 'status'), 'started', '... started');
is(aborted('/v1/chat/completions'), 0, 'the call is open');
@r = Ragq::Worker::cancel($P, $id);
is($r[0], 2, 'canceled');
ok(wait_until('the stand-in sees the chat connection closed',
              sub { aborted('/v1/chat/completions') == 1 }, 10),
   'the worker closed its chat connection') or diag $w->log;
ok(wait_until('the entry acked', sub { pending($P) == 0 }), 'its entry acked: nothing pending');
is(Ragq::Valkey::cmd('XLEN', "$P:jobs"), '0', 'and deleted');
ok(wait_until('the log line', sub { $w->log =~ /job $id canceled after \d+ ms/ }),
   'one "canceled" log line');
my $j = Ragq::Worker::job($P, $id);
is($j->{status}, 'canceled', 'still canceled');
ok(!exists $j->{result}, 'no result written');
like($j->{error}, qr/"code":"canceled"/, 'the cancel\'s error');
is($s->count('/v1/chat/completions'), 1, 'no second chat call');

# ---- canceled while its embeddings call is slow; then the next job runs ----
$s->fault({ path => '/v1/embeddings', mode => 'delay', delay_ms => 30000, times => 1 });
my $embeds = $s->count('/v1/embeddings');
my $id2 = Ragq::Worker::enqueue(prefix => $P, query => 'What is the capital of France?');
ok(wait_until('the embeddings call', sub { $s->count('/v1/embeddings') > $embeds }),
   'the second job is in its embeddings call');
Ragq::Worker::cancel($P, $id2);
ok(wait_until('the stand-in sees the embeddings connection closed',
              sub { aborted('/v1/embeddings') == 1 }, 10),
   'the worker closed its embeddings connection') or diag $w->log;
ok(wait_until('the entry acked', sub { pending($P) == 0 }), 'entry acked');
is($s->count('/v1/chat/completions'), 1, 'no chat call for it');

my $id3 = Ragq::Worker::enqueue(prefix => $P, query => 'What is the capital of France?');
is(Ragq::Worker::wait_final($P, [$id3], 20), 1, 'the next job ends');
is(Ragq::Worker::field($P, $id3, 'status'), 'finished', '... finished') or diag $w->log;
is(Ragq::Worker::field($P, $id2, 'status'), 'canceled', 'the canceled one stays canceled');
ok(!length Ragq::Worker::field($P, $id2, 'result'), '... without a result');
ok(wait_until('the heartbeat counts them', sub {
       Ragq::Valkey::cmd('HGET', "$P:worker:c$$", 'jobs_canceled') eq '2' }),
   'heartbeat: jobs_canceled 2') or diag $w->log;
unlike($w->log, qr/\berror\b/, 'no error logged') or diag $w->log;

# ---- Valkey restarts (its data gone): the cancel connection subscribes again ----
sub numsub { (Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', "$P:cancel"))[1] // 0 }
is(numsub(), 1, 'one subscription to P:cancel (the worker\'s)');
Ragq::Valkey::restart();
ok(wait_until('the worker subscribed again', sub { numsub() == 1 }, 20),
   'subscribed again after the restart') or diag $w->log;
$s->fault({ path => '/v1/chat/completions', mode => 'hang', times => 1 });
my $chats = $s->count('/v1/chat/completions');
my $id4 = Ragq::Worker::enqueue(prefix => $P, query => 'What is the capital of France?');
ok(wait_until('the chat call', sub { $s->count('/v1/chat/completions') > $chats }, 20),
   'a job runs again') or diag $w->log;
Ragq::Worker::cancel($P, $id4);
ok(wait_until('the chat connection closed', sub { aborted('/v1/chat/completions') == 2 }, 10),
   'and its cancel closes its chat connection') or diag $w->log;
ok(wait_until('the entry acked', sub { pending($P) == 0 }), 'entry acked');

$w->stop;
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', "$P:*"), 'x');
done_testing();
