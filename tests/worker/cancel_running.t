# A job canceled while it runs keeps its queue entry until its worker acks
# it (DEVELOPERS.md "Cancel"), so its hash must outlive that entry: had it
# expired first (a short ragq_job_ttl, workers down longer than it), the
# claim of a reclaim would find no hash, write the job queued again from
# its entry and run it.  Here its worker is frozen before the cancel (300
# ms TTL) and killed, so it never acks; a new worker reclaims the entry
# after the TTL would have run out: the job stays canceled, no upstream
# call, its entry acked and its hash given RAGQ_RESULT_TTL.  And every
# path by which a worker acks the entry of a job it finds canceled gives
# the hash RAGQ_RESULT_TTL: the P:cancel message, the keep-alive (a cancel
# it did not hear), so no canceled hash is left without a TTL.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker qw(wait_until pending);

my $P = "wr$$";
my $s = Ragq::Standin->start(dim => 32);
$s->create_collection('docs', 32);
$s->upsert('docs', [
    { id => 1, payload => { text => 'The capital of France is Paris.', source => 'france.md' } },
]);

sub pttl    { Ragq::Valkey::cmd('PTTL', "$P:job:$_[0]") }
sub chats   { $s->count('/v1/chat/completions') }

# RAGQ_RESULT_TTL 2 h, the cancels' ragq_job_ttl 1 h (or 300 ms): the TTL
# a hash ends with says who gave it.
my $RESULT_TTL = 7_200_000;
# The workers log in with the ACL of README "Production Valkey": whatever
# they do for a canceled job must be in it (0.6.1's claim.lua ran PTTL,
# which it is not: NOPERM on every claim of a canceled job).
my $USER = "wr$$";
Ragq::Valkey::cmd('ACL', 'SETUSER', $USER, split / /, Ragq::Worker::acl_rules($P, 's3cret'));
my %env = (RAGQ_VALKEY_URL => "redis://$USER:s3cret\@127.0.0.1:" . Ragq::Valkey::port(),
           RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'sk',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RESULT_TTL => '2h',
           RAGQ_RECLAIM_AFTER => '1s');

# ---- canceled while running, its worker dead: the reclaim does not run it ----
$s->fault({ path => '/v1/chat/completions', mode => 'hang', times => 1 });
my $a = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => "a$$" });
ok($a->ready, 'worker a is ready') or diag $a->log;
my $id = Ragq::Worker::enqueue(prefix => $P, query => 'What is the capital of France?');
ok(wait_until('the chat call', sub { chats() >= 1 }), 'the job reached its chat call')
  or diag $a->log;
is(Ragq::Worker::field($P, $id, 'status'), 'started', '... started');
my $embeds = $s->count('/v1/embeddings');

$a->signal('STOP'); # it never hears the cancel, never acks
is((Ragq::Worker::cancel($P, $id, '', 300))[0], 2, 'canceled while running, with a 300 ms TTL');
$a->signal('KILL');
$a->wait_exit(5);
is(pending($P), 1, 'its entry is still pending (its worker is dead)');
is(pttl($id), '-1', '... so its hash has no TTL while the entry waits');
sleep 0.6;
is(Ragq::Worker::field($P, $id, 'status'), 'canceled', '... and outlives the 300 ms');

# And one canceled while queued, for the same claim.
my $q = Ragq::Worker::enqueue(prefix => $P, query => 'never run');
is((Ragq::Worker::cancel($P, $q))[0], 2, 'a queued job canceled too');
is(pttl($q), '-1', '... no TTL while its entry waits');

my $b = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => "b$$" });
ok($b->ready, 'worker b is ready') or diag $b->log;
ok(wait_until('the reclaim acks the entry', sub { Ragq::Valkey::cmd('XLEN', "$P:jobs") eq '0' }, 10),
   'the reclaim acked and deleted the entry') or diag $b->log;
is(pending($P), 0, 'nothing pending');
sleep 0.3; # a job run by mistake would be calling out by now
my $j = Ragq::Worker::job($P, $id);
is($j->{status}, 'canceled', 'the job stays canceled');
ok(!exists $j->{result}, '... with no result');
like($j->{error} // '', qr/"code":"canceled"/, '... and the cancel\'s error');
is($j->{attempts}, '1', '... no new attempt');
is(chats(), 1, 'no second chat call');
is($s->count('/v1/embeddings'), $embeds, 'no embeddings call either');
my $ttl = pttl($id);
ok($ttl > 3_600_000 && $ttl <= $RESULT_TTL, "the claim gave its hash RAGQ_RESULT_TTL ($ttl ms)");
like($b->log, qr/job $id was canceled before this worker claimed it; acknowledged its entry without running it/,
     'worker b acked it without running it');
is(Ragq::Worker::field($P, $q, 'status'), 'canceled', 'the queued one: acked, still canceled');
$ttl = pttl($q);
ok($ttl > 3_600_000 && $ttl <= $RESULT_TTL, "... with RAGQ_RESULT_TTL ($ttl ms)");

# ---- canceled while running, acked by its worker (P:cancel): a TTL ----
$s->fault({ path => '/v1/chat/completions', mode => 'hang', times => 1 });
my $id2 = Ragq::Worker::enqueue(prefix => $P, query => 'What is the capital of France?');
ok(wait_until('the chat call', sub { chats() >= 2 }), 'a second job reached its chat call')
  or diag $b->log;
is((Ragq::Worker::cancel($P, $id2))[0], 2, 'canceled while running (ragq_job_ttl 1 h)');
ok(wait_until('the entry acked', sub { Ragq::Valkey::cmd('XLEN', "$P:jobs") eq '0' }, 10),
   'its worker acked and deleted its entry') or diag $b->log;
ok(wait_until('the log line', sub { $b->log =~ /job $id2 canceled after \d+ ms/ }),
   'it stopped the job');
ok(wait_until('the TTL', sub { pttl($id2) > 3_600_000 }, 5), 'its hash got RAGQ_RESULT_TTL');
$ttl = pttl($id2);
ok($ttl > 3_600_000 && $ttl <= $RESULT_TTL, "... ($ttl ms)");
is(Ragq::Worker::field($P, $id2, 'status'), 'canceled', 'still canceled');

# ---- a cancel its worker does not hear: the keep-alive acks it, with a TTL ----
$s->fault({ path => '/v1/chat/completions', mode => 'hang', times => 1 });
my $id3 = Ragq::Worker::enqueue(prefix => $P, query => 'What is the capital of France?');
ok(wait_until('the chat call', sub { chats() >= 3 }), 'a third job reached its chat call')
  or diag $b->log;
# The module's script, its P:cancel message sent where no worker listens.
# Its worker is frozen until the PTTL below is read: its keep-alive (a third
# of RAGQ_RECLAIM_AFTER apart) would otherwise find the cancel in between
# and rightly give the hash its TTL (seen under ASan on a loaded machine).
$b->signal('STOP');
ok(wait_until('worker b stopped', sub {
    open my $st, '<', '/proc/' . $b->pid . '/stat' or return 0;
    return scalar(<$st>) =~ /^\d+ \(.*\) [Tt] /s }, 5), 'worker b frozen for the cancel');
my @r = Ragq::Valkey::cmd_list('EVAL', Ragq::Worker::cancel_script(), 5, "$P:job:$id3", "$P:jobs",
    "$P:events", "$P:nobody", "$P:out:$id3", $id3, Ragq::Worker::entry_of_id($id3),
    substr($id3, 16), int(time * 1000), 3600000, '',
    '{"code":"canceled","message":"the job was canceled by POST /job-cancel"}');
is($r[0], 2, 'canceled while running, unheard');
is(pttl($id3), '-1', '... no TTL while its entry is pending');
$b->signal('CONT');
ok(wait_until('the keep-alive acks it', sub { Ragq::Valkey::cmd('XLEN', "$P:jobs") eq '0' }, 10),
   'the keep-alive found it final and acked its entry') or diag $b->log;
like($b->log, qr/job $id3 is already final; stopped/, '... one log line');
ok(wait_until('the TTL', sub { pttl($id3) > 3_600_000 }, 5), 'its hash got RAGQ_RESULT_TTL');
is(pending($P), 0, 'nothing pending');

# ---- a finished job keeps its TTL; the worker goes on ----
my $id4 = Ragq::Worker::enqueue(prefix => $P, query => 'What is the capital of France?');
is(Ragq::Worker::wait_final($P, [$id4], 20), 1, 'the next job ends');
is(Ragq::Worker::field($P, $id4, 'status'), 'finished', '... finished') or diag $b->log;
$ttl = pttl($id4);
ok($ttl > 3_600_000 && $ttl <= $RESULT_TTL, "... with RAGQ_RESULT_TTL ($ttl ms)");
unlike($b->log, qr/\berror\b/, 'no error logged') or diag $b->log;

$b->stop;
Ragq::Valkey::cmd('ACL', 'DELUSER', $USER);
Ragq::Valkey::cmd('DEL', map { ("$P:job:$_", "$P:out:$_") } $q, $id, $id2, $id3, $id4);
Ragq::Valkey::cmd('DEL', "$P:jobs", "$P:events", "$P:dead", "$P:worker:b$$", "$P:workers:live");
done_testing;
