# The worker and its Valkey: exact start-up errors, reconnection after a
# restart (the group is re-created when the server lost it), and a paused
# server (SIGSTOP) while a job is in flight.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wv$$";
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RECLAIM_AFTER => '1s');

# A port nobody listens on.
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1);
my $closed = $l->sockport;
close $l;
my $w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => "redis://127.0.0.1:$closed",
                                     RAGQ_CONNECT_TIMEOUT => '500ms' });
my $st = $w->wait_exit(10);
is($st >> 8, 1, 'unreachable Valkey at start: exit 1');
like($w->log, qr/Valkey at 127\.0\.0\.1:$closed \(RAGQ_VALKEY_URL\) is unreachable: .*refused/i,
     'says which Valkey and why');

$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => 'http://127.0.0.1:6379' });
is($w->wait_exit(10) >> 8, 2, 'bad URL: exit 2');
like($w->log, qr/RAGQ_VALKEY_URL .*http:\/\/127\.0\.0\.1:6379/, 'says what is wrong');

$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => 'redis://:wrong@127.0.0.1:' . Ragq::Valkey::port(),
                                  RAGQ_CONNECT_TIMEOUT => '500ms' });
is($w->wait_exit(10) >> 8, 1, 'AUTH refused at start: exit 1');
like($w->log, qr/unreachable: AUTH: /, 'with the server\'s answer');

# Restart while running.
$w = Ragq::Worker->start(env => \%env);
ok($w->ready, 'worker ready');
my $id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 10), 1, 'job before the restart');
Ragq::Valkey::restart();
ok($w->wait_log(qr/reconnecting/, 10), 'notices the lost connection');
ok($w->wait_log(qr/\(command connection\): connected/, 15), 'reconnects');
ok($w->alive, 'still running');
my @ids = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 3;
is(Ragq::Worker::wait_final($P, \@ids, 20), 3, 'jobs after the restart run');
is(scalar(grep { Ragq::Worker::field($P, $_, 'status') eq 'finished' } @ids), 3, 'and finish');

# A hung server while a job is in flight: its result is written afterwards.
$s->latency(800);
my $id2 = Ragq::Worker::enqueue(prefix => $P);
ok(Ragq::Worker::wait_status($P, $id2, 'started', 10), 'job in flight');
Ragq::Valkey::pause();
sleep 1.5;
Ragq::Valkey::resume();
is(Ragq::Worker::wait_final($P, [$id2], 15), 1, 'job ends after the pause');
is(Ragq::Worker::field($P, $id2, 'status'), 'finished', 'finished');
is(Ragq::Worker::field($P, $id2, 'attempts'), 1, 'in one attempt');

# Scripts run by EVALSHA (loaded once per connection); a flushed script
# cache (SCRIPT FLUSH, failover to a server without them) falls back to
# EVAL and reloads, for the claim and the final write alike.
$s->latency(0);
Ragq::Valkey::cmd('CONFIG', 'RESETSTAT');
my $id3 = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id3], 15), 1, 'job with loaded scripts');
my $stats = Ragq::Valkey::cmd('INFO', 'commandstats');
# claim, the answer's append batches (one or more: 50 ms / 256 bytes), final
my ($evalsha) = $stats =~ /cmdstat_evalsha:calls=(\d+),/;
ok(defined $evalsha && $evalsha >= 3, 'claim, appends and final write by EVALSHA')
  or diag $stats;
Ragq::Valkey::cmd('SCRIPT', 'FLUSH');
my @ids3 = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 2;
is(Ragq::Worker::wait_final($P, \@ids3, 15), 2, 'jobs after SCRIPT FLUSH end');
is(scalar(grep { Ragq::Worker::field($P, $_, 'status') eq 'finished' } @ids3), 2,
   'and finish');
my $id4 = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id4], 15), 1, 'and the next one too');
is(Ragq::Worker::field($P, $id4, 'attempts'), 1, 'in one attempt');

# A flush drops every script, the appends' too, which want no reply: the
# first NOSCRIPT reloads them all.  A flush while a streamed answer is
# being written loses at most the batches already sent; the next job
# streams in many batches again, not as final.lua's one repair entry.
my $out_len = sub { Ragq::Valkey::cmd('XLEN', "$P:out:$_[0]") };
$s->stream_pace(token_ms => 20, answer_words => 30);
Ragq::Valkey::cmd('SCRIPT', 'FLUSH');
my $id5 = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id5], 15), 1, 'streamed job after SCRIPT FLUSH ends');
cmp_ok($out_len->($id5), '>', 3, 'its answer streamed in batches (claim NOSCRIPT reloaded all)');
my $id6 = Ragq::Worker::enqueue(prefix => $P);
ok(Ragq::Worker::wait_status($P, $id6, 'started', 10), 'streamed job running');
my $t0 = time;
select(undef, undef, undef, 0.05) until $out_len->($id6) > 0 || time - $t0 > 5;
Ragq::Valkey::cmd('SCRIPT', 'FLUSH');
is(Ragq::Worker::wait_final($P, [$id6], 15), 1, 'job flushed mid-stream ends');
is(Ragq::Worker::field($P, $id6, 'status'), 'finished', 'finished');
my $id7 = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id7], 15), 1, 'the next streamed job ends');
cmp_ok($out_len->($id7), '>', 3, 'and streamed in batches (the appends were reloaded)');
$s->stream_pace();

is($w->stop, 0, 'exit 0');
done_testing();
