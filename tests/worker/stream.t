# The worker streams the answer as it is written (issue 12): the chat call
# with stream: true against the stand-in, pieces appended to P:out:ID; the
# pieces after the last reset entry, concatenated, are the job's result
# byte for byte (multilingual text and emoji); the output stream gets the
# job's TTL; a chat answer cut mid-stream before a batch was sent is retried
# without a reset; one stalled after a batch was sent is retried and the
# stream shows a reset entry, then the retried try's whole text; the
# extractive answerer streams sentence by sentence.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Encode qw(encode_utf8);
use File::Temp qw(tempdir);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wst$$";

# The stream as [[seq, {field => value}], ...], values as bytes.
sub out_entries {
    my ($id) = @_;
    my $json = Ragq::Valkey::cmd('--json', 'XRANGE', "$P:out:$id", '-', '+');
    my $list = JSON::PP->new->utf8->decode($json);
    return [map { my ($eid, $kv) = @$_; my ($seq) = $eid =~ /^0-(\d+)$/;
                  [$seq, { map { encode_utf8($_) } @$kv }] } @$list];
}

# The text after the last reset entry, and the number of resets.
sub streamed_text {
    my ($e) = @_;
    my ($text, $resets) = ('', 0);
    for my $x (@$e) {
        if (exists $x->[1]{reset}) { $text = ''; $resets++; next }
        $text .= $x->[1]{t};
    }
    return ($text, $resets);
}

my $s = Ragq::Standin->start(dim => 32);
$s->create_collection('docs', 32);
my $text = "Grüße aus Köln: 日本語のテキスト, русский текст, العربية, and emoji 😀🚀👍🏽 too. Second sentence.";
$s->upsert('docs', [ { id => 1, payload => { text => $text, source => 'multi.md' } } ]);

my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'sk-x',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RESULT_TTL => '1h',
    RAGQ_HTTP_TIMEOUT => '2s',
});
ok($w->ready, 'worker ready') or diag $w->log;

# ---- a clean streamed answer
my $id = Ragq::Worker::enqueue(prefix => $P, query => 'Greetings from Köln?', top_k => 1);
is(Ragq::Worker::wait_final($P, [$id], 15), 1, 'job ends');
my $j = Ragq::Worker::job($P, $id);
is($j->{status}, 'finished', 'finished') or diag explain $j, $w->log;
my $req = (grep { $_->{path} eq '/v1/chat/completions' } @{ $s->stats->{log} })[-1];
is($req->{body}{stream}, JSON::PP::true, 'the chat call asks for a stream');
is($req->{body}{stream_options}{include_usage}, JSON::PP::true, '... with the usage');
my $e = out_entries($id);
ok(@$e >= 1, scalar(@$e) . ' entries in the output stream');
is_deeply([map { $_->[0] } @$e], [1 .. scalar @$e], 'ids 0-1, 0-2, ... in order');
my ($streamed, $resets) = streamed_text($e);
is($resets, 0, 'no reset in a clean run');
is($streamed, $j->{result}, 'pieces concatenated = result, byte for byte');
like($j->{result}, qr/\Q@{[encode_utf8('😀🚀👍🏽')]}\E/, 'the emoji made it');
ok(decode_json($j->{usage})->{total_tokens} > 0, 'usage from the last chunk');
my $pttl = Ragq::Valkey::cmd('PTTL', "$P:out:$id");
ok($pttl > 3_500_000 && $pttl <= 3_600_000, "output stream has the job's TTL ($pttl ms)");

# ---- cut mid-stream, before a batch was due: the broken try's pieces
# were never sent (dropped with the try), so no reset is needed
$s->fault({ path => '/v1/chat/completions', mode => 'stream_cut', after_events => 4, times => 1 });
my $calls = $s->count('/v1/chat/completions');
my $id2 = Ragq::Worker::enqueue(prefix => $P, query => 'Greetings again?', top_k => 1);
is(Ragq::Worker::wait_final($P, [$id2], 20), 1, 'job with a cut stream ends');
my $j2 = Ragq::Worker::job($P, $id2);
is($j2->{status}, 'finished', 'finished after the retry') or diag explain $j2, $w->log;
is($j2->{attempts}, 1, 'retried within the attempt');
is($s->count('/v1/chat/completions') - $calls, 2, 'the chat call was made twice');
my ($streamed2, $resets2) = streamed_text(out_entries($id2));
is($streamed2, $j2->{result}, 'pieces = result, byte for byte');

# ---- stalled mid-stream past a batch: its pieces were sent, so the retry
# begins with a reset entry, then the whole text of the retry
$s->fault({ path => '/v1/chat/completions', mode => 'stream_stall', after_events => 4, times => 1 });
$calls = $s->count('/v1/chat/completions');
my $id4 = Ragq::Worker::enqueue(prefix => $P, query => 'Greetings once more?', top_k => 1);
is(Ragq::Worker::wait_final($P, [$id4], 30), 1, 'job with a stalled stream ends');
my $j4 = Ragq::Worker::job($P, $id4);
is($j4->{status}, 'finished', 'finished after the timeout and retry') or diag explain $j4, $w->log;
is($s->count('/v1/chat/completions') - $calls, 2, 'the chat call was made twice');
my $e4 = out_entries($id4);
my ($streamed4, $resets4) = streamed_text($e4);
is($resets4, 1, 'one reset entry between the broken try and the retry') or diag explain $e4;
my ($reset) = grep { exists $_->[1]{reset} } @$e4;
is($reset->[1]{reset}, 1, 'the reset names the attempt');
ok($reset->[0] > 1, 'pieces of the broken try came before it');
is($streamed4, $j4->{result}, 'pieces after the reset = result, byte for byte');

# ---- a 200-word answer written over ~1 s: batched (50 ms / 256 bytes), so
# several entries, far fewer than the stand-in's 200 events
$s->stream_pace(token_ms => 5, answer_words => 200);
my $id5 = Ragq::Worker::enqueue(prefix => $P, query => 'Greetings at length?', top_k => 1);
is(Ragq::Worker::wait_final($P, [$id5], 30), 1, 'paced job ends');
my $j5 = Ragq::Worker::job($P, $id5);
$s->stream_pace();
is($j5->{status}, 'finished', 'paced answer finished') or diag explain $j5, $w->log;
is(scalar(split / /, $j5->{result}), 200, 'a 200-word answer');
my $e5 = out_entries($id5);
ok(@$e5 >= 3 && @$e5 <= 100, scalar(@$e5) . ' entries for 200 deltas: batched as it was written')
  or diag explain $e5;
my ($streamed5, $resets5) = streamed_text($e5);
is($resets5, 0, 'no reset');
is($streamed5, $j5->{result}, 'batched pieces = result, byte for byte');

# ---- RAGQ_STREAM=off: the answer asked whole; the output stream gets it
# as one piece from the final write (so /job-stream still works)
$w->stop;
my $woff = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'sk-x',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RESULT_TTL => '1h',
    RAGQ_STREAM => 'off',
});
ok($woff->ready, 'RAGQ_STREAM=off worker ready') or diag $woff->log;
my $id6 = Ragq::Worker::enqueue(prefix => $P, query => 'Greetings, unstreamed?', top_k => 1);
is(Ragq::Worker::wait_final($P, [$id6], 15), 1, 'unstreamed job ends');
my $j6 = Ragq::Worker::job($P, $id6);
is($j6->{status}, 'finished', 'finished') or diag explain $j6, $woff->log;
like($j6->{result}, qr/\Q@{[encode_utf8('😀🚀👍🏽')]}\E/, 'the whole answer');
my $req6 = (grep { $_->{path} eq '/v1/chat/completions' } @{ $s->stats->{log} })[-1];
ok(!$req6->{body}{stream}, 'the chat call does not ask for a stream');
my $e6 = out_entries($id6);
is(scalar @$e6, 1, 'one entry in the output stream') or diag explain $e6;
is($e6->[0][1]{t}, $j6->{result}, '... the whole result');
$woff->stop;

# ---- the offline extractive answerer: sentence by sentence
my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/docs";
open my $f, '>', "$dir/docs/light.md" or die;
print $f "The Tower of Hercules is the oldest lighthouse still in use. It stands near A Coruña in Spain. "
  . "Its keepers once trimmed wicks every night. Today it is a World Heritage Site.\n";
close $f;
my %env = (RAGQ_EMBEDDER => 'hash', RAGQ_STORE => 'local', RAGQ_ANSWERER => 'extractive',
           RAGQ_STORE_PATH => "$dir/store", RAGQ_COLLECTION => 'kb');
my $build = $ENV{RAGQ_BUILD} || 'build';
{
    local @ENV{ keys %env } = values %env;
    my $out = `$build/ragq-ingest $dir/docs 2>&1`;
    is($?, 0, 'ragq-ingest loaded the document') or diag $out;
}
my $w2 = Ragq::Worker->start(env => { %env, RAGQ_PREFIX => $P });
ok($w2->ready, 'extractive worker ready') or diag $w2->log;
my $id3 = Ragq::Worker::enqueue(prefix => $P, query => 'Which lighthouse is the oldest still in use near Coruña?');
is(Ragq::Worker::wait_final($P, [$id3], 15), 1, 'extractive job ends');
my $j3 = Ragq::Worker::job($P, $id3);
is($j3->{status}, 'finished', 'finished') or diag explain $j3, $w2->log;
my $e3 = out_entries($id3);
my ($streamed3) = streamed_text($e3);
is($streamed3, $j3->{result}, 'extractive: pieces concatenated = result');
my $sentences = () = $j3->{result} =~ /[.!?](?:\s|$)/g;
is(scalar @$e3, $sentences + ($j3->{result} =~ /[.!?\n]\s*\z/ ? 0 : 1),
   "one entry per sentence (@{[scalar @$e3]})") or diag explain $e3;
$w2->stop;

Ragq::Valkey::cmd("DEL", map { ("$P:out:$_", "$P:job:$_") } $id, $id2, $id3, $id4, $id5, $id6);
done_testing();
