# A streamed chat answer ends at "data: [DONE]" (the OpenAI streaming
# contract), whatever the server does next: against a server that sends
# the whole answer and [DONE] but never ends its HTTP body (no terminal
# chunk, the connection held open: the stand-in's stream_hold fault), the
# job finishes with the whole answer at once, not at the upstream timeout
# (the old worker waited for the end of the body: every try timed out and
# the job ended upstream_timeout), after a short grace in which a body end
# that comes late keeps the connection.  The held connection is closed, not
# kept for the next request: the next job (its embeddings, Qdrant and chat
# calls go to the same origin) finishes too.  Both HTTP clients: the
# worker's own and libcurl (RAGQ_HTTP_CLIENT=curl).
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wsh$$";

my $s = Ragq::Standin->start(dim => 32);
$s->create_collection('docs', 32);
$s->upsert('docs', [ { id => 1, payload => { text => 'Refunds take 30 days. Ask support.',
                                             source => 'refunds.md' } } ]);
my $want = 'According to [1] (refunds.md): Refunds take 30 days.';

# The output stream's pieces after the last reset entry, concatenated.
sub streamed_text {
    my ($id) = @_;
    my $list = JSON::PP->new->utf8->decode(
        Ragq::Valkey::cmd('--json', 'XRANGE', "$P:out:$id", '-', '+'));
    my $text = '';
    for my $x (@$list) {
        my %kv = @{ $x->[1] };
        if (exists $kv{reset}) { $text = ''; next }
        $text .= $kv{t} // '';
    }
    return $text;
}

my @ids;
for my $client ('own', 'curl') {
    my $w = Ragq::Worker->start(env => {
        RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'sk-x',
        QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RESULT_TTL => '1h',
        RAGQ_HTTP_TIMEOUT => '30s', RAGQ_CONSUMER => "c$client$$",
        ($client eq 'curl' ? (RAGQ_HTTP_CLIENT => 'curl') : ()),
    });
    ok($w->ready, "$client: worker ready") or diag $w->log;
    $s->reset;

    # A clean job first, so that connections to the origin are kept.
    my $id0 = Ragq::Worker::enqueue(prefix => $P, query => 'How long do refunds take?', top_k => 1);
    is(Ragq::Worker::wait_final($P, [$id0], 15), 1, "$client: a clean job ends");
    is(Ragq::Worker::job($P, $id0)->{status}, 'finished', "$client: finished") or diag $w->log;

    # The held answer: [DONE], then the body never ends.
    $s->fault({ path => '/v1/chat/completions', mode => 'stream_hold', times => 1 });
    my $calls = $s->count('/v1/chat/completions');
    my $t0 = time;
    my $id = Ragq::Worker::enqueue(prefix => $P, query => 'How long do refunds take?', top_k => 1);
    is(Ragq::Worker::wait_final($P, [$id], 10), 1, "$client: the job with a held stream ends")
      or diag $w->log;
    my $took = time - $t0;
    cmp_ok($took, '<', 3, sprintf('%s: at [DONE] (%.2f s), not at the 30 s timeout', $client, $took));
    my $j = Ragq::Worker::job($P, $id);
    is($j->{status}, 'finished', "$client: finished") or diag explain $j, $w->log;
    is($j->{result}, $want, "$client: the whole answer");
    is(streamed_text($id), $want, "$client: its pieces = the answer");
    is($s->count('/v1/chat/completions') - $calls, 1, "$client: one chat call, no retry");
    ok((eval { decode_json($j->{usage})->{total_tokens} } // 0) > 0,
       "$client: usage from the last chunk");

    # The held connection was closed by the worker (the stand-in saw the
    # client leave amid the answer), not left open or reused.
    my $aborted;
    for (1 .. 40) {
        last if ($aborted = $s->stats->{aborted}{'/v1/chat/completions'} // 0) >= 1;
        sleep 0.05;
    }
    is($aborted, 1, "$client: the held connection was closed");

    # A server that ends the body right after [DONE], but in a write of its
    # own (as most do): its end is waited for a grace, so the connection
    # is kept, not closed amid the body (and, on https, handshaken again).
    $s->fault({ path => '/v1/chat/completions', mode => 'stream_hold', end_after_ms => 40,
                times => 1 });
    my $late = Ragq::Worker::enqueue(prefix => $P, query => 'How long do refunds take?', top_k => 1);
    is(Ragq::Worker::wait_final($P, [$late], 10), 1, "$client: a late body end: the job ends");
    is(Ragq::Worker::job($P, $late)->{result}, $want, "$client: ... with the whole answer");
    sleep 0.3;
    is($s->stats->{aborted}{'/v1/chat/completions'} // 0, 1,
       "$client: ... and its connection was not closed amid the body");
    push @ids, $late;

    # The next jobs, on the same origin: fine and quick.
    $t0 = time;
    my @next = map { Ragq::Worker::enqueue(prefix => $P, query => 'How long do refunds take?',
                                           top_k => 1) } 1 .. 3;
    is(Ragq::Worker::wait_final($P, \@next, 10), 3, "$client: the next jobs end");
    cmp_ok(time - $t0, '<', 3, "$client: ... quickly");
    is_deeply([map { Ragq::Worker::job($P, $_)->{status} } @next], [('finished') x 3],
              "$client: finished") or diag $w->log;
    is_deeply([map { Ragq::Worker::job($P, $_)->{result} } @next], [($want) x 3],
              "$client: the same answer");
    is($w->stop, 0, "$client: the worker exits 0");
    push @ids, $id0, $id, @next;
}

Ragq::Valkey::cmd('DEL', map { ("$P:out:$_", "$P:job:$_") } @ids);
done_testing();
