# Paced reads of a streamed chat answer (DEVELOPERS.md "Answer streams"):
# after its first body bytes the connection is read on the worker's tick
# (RAGQ_STREAM_INTERVAL, 50 ms by default) instead of per event.  A long
# answer at 2 ms a token loses and reorders nothing (the entries' pieces = result, ids in order) and the
# job still ends; a cancel still closes a paced stream (the stand-in sees
# the client leave) and acks the entry.  A longer RAGQ_STREAM_INTERVAL
# writes the same answer in fewer batches, and what a tick reads reaches
# Valkey in that tick, not one interval later.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Encode qw(encode_utf8);
use Time::HiRes qw(time sleep clock_gettime CLOCK_MONOTONIC);
use List::Util qw(max);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker qw(wait_until pending);

my $P = "wsp$$";

sub out_entries {
    my ($id) = @_;
    my $json = Ragq::Valkey::cmd('--json', 'XRANGE', "$P:out:$id", '-', '+');
    my $list = JSON::PP->new->utf8->decode($json);
    return [map { my ($eid, $kv) = @$_; my ($seq) = $eid =~ /^0-(\d+)$/;
                  [$seq, { map { encode_utf8($_) } @$kv }] } @$list];
}

sub aborted { $_[0]->stats->{aborted}{'/v1/chat/completions'} // 0 }

my $s = Ragq::Standin->start(dim => 32);
$s->create_collection('docs', 32);
$s->upsert('docs', [ { id => 1, payload => { text => 'Köln grüßt 😀.', source => 'k.md' } } ]);

my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'sk-x',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RESULT_TTL => '1h',
    RAGQ_HTTP_TIMEOUT => '60s', RAGQ_CONSUMER => "c$$",
});
ok($w->ready, 'worker ready') or diag $w->log;

# ---- a long answer, 2 ms a token: every piece, in order, and the end
$s->stream_pace(token_ms => 2, answer_words => 600);
my @ids = map { Ragq::Worker::enqueue(prefix => $P, query => "Long answer $_?", top_k => 1) } 1 .. 3;
is(Ragq::Worker::wait_final($P, \@ids, 60), 3, 'the three paced jobs end');
for my $id (@ids) {
    my $j = Ragq::Worker::job($P, $id);
    is($j->{status}, 'finished', 'finished') or diag explain $j, $w->log;
    is(scalar(split / /, $j->{result}), 600, 'a 600-word answer');
    my $e = out_entries($id);
    is_deeply([map { $_->[0] } @$e], [1 .. scalar @$e], scalar(@$e) . ' entries, ids in order');
    is(scalar(grep { exists $_->[1]{reset} } @$e), 0, 'no reset');
    is(join('', map { $_->[1]{t} // '' } @$e), $j->{result}, 'pieces = result, byte for byte');
}

# ---- a cancel ends a paced stream (200 ms a token: 40 s if left alone)
$s->stream_pace(token_ms => 200, answer_words => 200);
my $id = Ragq::Worker::enqueue(prefix => $P, query => 'Slow answer?', top_k => 1);
ok(wait_until('two entries (the stream is paced)', sub { @{ out_entries($id) } >= 2 }, 20),
   'the answer is streaming') or diag $w->log;
is(aborted($s), 0, 'the chat call is open');
my @r = Ragq::Worker::cancel($P, $id);
is($r[0], 2, 'canceled');
ok(wait_until('the stand-in sees the chat connection closed', sub { aborted($s) == 1 }, 10),
   'the worker closed the paced chat connection') or diag $w->log;
ok(wait_until('the entry acked', sub { pending($P) == 0 }), 'its entry acked');
is(Ragq::Worker::field($P, $id, 'status'), 'canceled', 'still canceled');
ok(!length Ragq::Worker::field($P, $id, 'result'), 'no result');
$s->stream_pace();

# ---- and the worker goes on: the next streamed job ends
my $id2 = Ragq::Worker::enqueue(prefix => $P, query => 'After the cancel?', top_k => 1);
is(Ragq::Worker::wait_final($P, [$id2], 15), 1, 'the next job ends');
is(Ragq::Worker::field($P, $id2, 'status'), 'finished', 'finished') or diag $w->log;
unlike($w->log, qr/\berror\b/, 'no error logged') or diag $w->log;

# ---- a stream faster than one read a tick is not held back: a ~0.9 MB
# answer sent in 64 kB writes 10 ms apart (~0.15 s) is read a few buffers a
# tick and ends in well under 2 s (0.6-0.9 s here); at one 16 kB read per 50 ms
# tick it took 4.6 s.
{
    $s->stream_pace(token_ms => 0, answer_words => 6000);
    $s->fault({ path => '/v1/chat/completions', mode => 'slow_body', bytes => 65536,
                interval_ms => 10, times => 1 });
    my $jid = Ragq::Worker::enqueue(prefix => $P, query => 'A fast long answer?', top_k => 1);
    is(Ragq::Worker::wait_final($P, [$jid], 30), 1, 'fast stream: the job ends');
    my $j = Ragq::Worker::job($P, $jid);
    is($j->{status}, 'finished', 'fast stream: finished') or diag explain $j, $w->log;
    is(scalar(split / /, $j->{result} // ''), 6000, 'fast stream: a 6000-word answer');
    my $ms = $j->{ended_at} - $j->{started_at};
    cmp_ok($ms, '<', 2000, "fast stream: the job took $ms ms");
    $s->stream_pace();
}

# ---- RAGQ_STREAM_INTERVAL: the same 1.2 s answer (48 words, 25 ms apart,
# each batch well under the 256-byte flush) is written in ~24 batches at
# the default 50 ms and in ~4 at 400 ms, and whole either way.
sub batches_of_slow_answer {
    my ($worker, $label) = @_;
    $s->stream_pace(token_ms => 25, answer_words => 48);
    my $jid = Ragq::Worker::enqueue(prefix => $P, query => "Batched $label?", top_k => 1);
    is(Ragq::Worker::wait_final($P, [$jid], 20), 1, "$label: the job ends");
    my $j = Ragq::Worker::job($P, $jid);
    is($j->{status}, 'finished', "$label: finished") or diag $worker->log;
    my $e = out_entries($jid);
    is(join('', map { $_->[1]{t} // '' } @$e), $j->{result}, "$label: pieces = result");
    $s->stream_pace();
    return scalar @$e;
}
my $n50 = batches_of_slow_answer($w, 'default interval');
cmp_ok($n50, '>=', 10, "50 ms: $n50 batches for a 1.2 s answer");
$w->stop;

$w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'sk-x',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RESULT_TTL => '1h',
    RAGQ_HTTP_TIMEOUT => '60s', RAGQ_CONSUMER => "c$$", RAGQ_STREAM_INTERVAL => '400ms',
});
ok($w->ready, 'worker ready with RAGQ_STREAM_INTERVAL=400ms') or diag $w->log;
my $n400 = batches_of_slow_answer($w, '400 ms interval');
cmp_ok($n400, '<=', 7, "400 ms: $n400 batches for the same answer");
cmp_ok($n400, '<', $n50, 'fewer batches than at 50 ms');

# ---- a piece reaches Valkey at the first tick after it arrived: at most one
# interval (400 ms) after the model sent it, ~200 ms on average.  Sent on a
# tick's boundary only at the next one, every piece but the first would take
# 400-800 ms.  Words 700 ms apart: one per batch.  The stand-in says when
# each event left (CLOCK_MONOTONIC, as here); a piece's delay is from the
# event that completed its batch to when the test first saw the batch.
{
    $s->stream_pace(token_ms => 700, answer_words => 6);
    my $jid = Ragq::Worker::enqueue(prefix => $P, query => 'Timed pieces?', top_k => 1);
    my @seen;    # [when first seen, text up to and with this entry]
    my $text = '';
    my $deadline = time + 20;
    while (time < $deadline) {
        my $done = Ragq::Worker::field($P, $jid, 'status') eq 'finished';
        my $now = 1000 * clock_gettime(CLOCK_MONOTONIC);
        my $e = out_entries($jid);
        for my $k (scalar(@seen) .. $#$e) {
            $text .= $e->[$k][1]{t} // '';
            push @seen, [$now, $text];
        }
        last if $done;
        sleep 0.01;
    }
    is(Ragq::Worker::field($P, $jid, 'status'), 'finished', 'timed: the job ends') or diag $w->log;
    # the stand-in's events of this answer: their content, in order
    my @sent;
    for my $ev (@{ $s->stats->{stream_sent} }) {
        my ($at, $raw) = @$ev;
        next unless $raw =~ /^data: (\{.*\})\s*$/s;
        my $c = JSON::PP->new->decode($1)->{choices}[0]{delta}{content};
        push @sent, [$at, encode_utf8($c)] if defined $c && length $c;
    }
    @sent = @sent[-6 .. -1] if @sent > 6;
    is(join('', map { $_->[1] } @sent), $text, 'timed: the pieces are the events sent');
    my (@delay, $sofar);
    my $i = 0;
    for my $b (@seen) {
        # the event that completed this batch
        $sofar = '';
        for ($i = 0; $i < @sent; $i++) {
            $sofar .= $sent[$i][1];
            last if length($sofar) >= length($b->[1]);
        }
        push @delay, $b->[0] - $sent[$i][0] if $i < @sent;
    }
    my @sorted = sort { $a <=> $b } @delay;
    my $median = $sorted[int(@sorted / 2)];
    cmp_ok(scalar(@delay), '>=', 4, 'timed: ' . scalar(@delay) . ' batches');
    cmp_ok($median, '<', 350, sprintf('timed: median delay %.0f ms (delays %s)', $median,
                                      join(' ', map { sprintf '%.0f', $_ } @delay)));
    cmp_ok(max(@delay), '<', 650, 'timed: no piece waits a second interval');
    $s->stream_pace();
}

$w->stop;

# ---- paced through libcurl (https:// upstreams, or RAGQ_HTTP_CLIENT=curl):
# the tick reads curl's transfers and has none of its own client's (under
# UBSan an empty copy of those was a null-pointer memcpy that killed the
# worker at the first tick)
$w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'sk-x',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RESULT_TTL => '1h',
    RAGQ_HTTP_TIMEOUT => '60s', RAGQ_CONSUMER => "c$$", RAGQ_HTTP_CLIENT => 'curl',
});
ok($w->ready, 'worker ready with RAGQ_HTTP_CLIENT=curl') or diag $w->log;
{
    $s->stream_pace(token_ms => 20, answer_words => 30);
    my $jid = Ragq::Worker::enqueue(prefix => $P, query => 'Paced by curl?', top_k => 1);
    is(Ragq::Worker::wait_final($P, [$jid], 20), 1, 'curl: the paced job ends');
    my $j = Ragq::Worker::job($P, $jid);
    is($j->{status}, 'finished', 'curl: finished') or diag $w->log;
    my $e = out_entries($jid);
    cmp_ok(scalar @$e, '>=', 3, 'curl: ' . scalar(@$e) . ' batches over ~0.6 s');
    is(join('', map { $_->[1]{t} // '' } @$e), $j->{result}, 'curl: pieces = result');
    $s->stream_pace();
}
is($w->stop, 0, 'curl: the worker exits 0');
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', "$P:*"), 'x');
done_testing();
