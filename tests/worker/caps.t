# What an upstream answers is bounded: an answer larger than
# RAGQ_MAX_ANSWER_BYTES (or the default of its call) is a permanent error,
# upstream_answer_too_large, never retried, whether the server says its
# length (Content-Length) or streams it (the transfer is cut as soon as the
# cap is crossed).  Before, a 100 MB answer was downloaded 15 times and a
# 60 MB one stored.  And what the job asks Qdrant for is bounded: sources
# are capped at top_k however many points come back, points without text
# are skipped, and only text-less points is a clear error.
use strict;
use warnings;
use Test::More;
use JSON::PP qw(encode_json decode_json);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wk$$";
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my $EMB = '/v1/embeddings';
my $CHAT = '/v1/chat/completions';
my $QRY = '/collections/docs/points/query';
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_MAX_ATTEMPTS => 3);

# A chat completion whose content is $n bytes long.
sub chat_answer {
    my ($n) = @_;
    return encode_json({ id => 'c', object => 'chat.completion', created => 1, model => 'm',
        choices => [ { index => 0, finish_reason => 'stop',
                       message => { role => 'assistant', content => 'x' x $n } } ] });
}

sub run_job {
    my ($w, $faults, %o) = @_;
    $s->reset;
    $s->fault($faults) if $faults;
    my $id = Ragq::Worker::enqueue(prefix => $P, top_k => $o{top_k} // 3);
    Ragq::Worker::wait_final($P, [$id], 30);
    my $j = Ragq::Worker::job($P, $id);
    $j->{id} = $id;
    $j->{err} = decode_json($j->{error}) if $j->{error};
    $j->{count} = { map { $_ => $s->count($_) } $EMB, $CHAT, $QRY };
    return $j;
}

sub too_large {
    my ($w, $j, $what, $path, $cap) = @_;
    is($j->{status}, 'failed', "$what: failed") or diag explain $j;
    is($j->{err}{code}, 'upstream_answer_too_large', "$what: upstream_answer_too_large");
    like($j->{err}{message}, qr/larger than $cap bytes/, "$what: the message names the cap");
    is($j->{count}{$path}, 1, "$what: asked once, never retried");
    is($j->{attempts}, 1, "$what: in one attempt");
}

my $w = Ragq::Worker->start(env => { %env, RAGQ_MAX_ANSWER_BYTES => '1M' });
ok($w->ready, 'worker ready (RAGQ_MAX_ANSWER_BYTES=1M)') or diag $w->log;

my $j = run_job($w, { path => $CHAT, status => 200, body => chat_answer(900_000), times => 1 });
is($j->{status}, 'finished', 'an answer under the cap is fine');
is(length $j->{result}, 900_000, 'and kept whole');

$j = run_job($w, { path => $CHAT, status => 200, body => chat_answer(2_000_000), times => -1 });
too_large($w, $j, 'chat answer of 2 MB with Content-Length', $CHAT, 1048576);

$j = run_job($w, { path => $EMB, mode => 'flood', times => -1 });
too_large($w, $j, 'embeddings answer that never ends', $EMB, 1048576);
my $sent = $s->stats->{flood_sent};
cmp_ok($sent, '<', 64 << 20, "the transfer was cut early ($sent bytes sent)");
is($j->{count}{$CHAT}, 0, 'no call after it');

$j = run_job($w, { path => $QRY, mode => 'flood', times => -1 });
too_large($w, $j, 'Qdrant answer that never ends', $QRY, 1048576);

# Qdrant answers: more points than asked for, points without text.
sub points {
    my (@p) = @_;
    return encode_json({ result => { points => \@p }, status => 'ok', time => 0.001 });
}
my @five = map { { id => $_, version => 0, score => 1 - $_ / 10,
                   payload => { text => "The capital of France is Paris ($_).", source => "s$_.md" } } } 1 .. 5;
$j = run_job($w, { path => $QRY, status => 200, body => points(@five), times => 1 }, top_k => 2);
is($j->{status}, 'finished', 'more points than top_k: finished');
my $src = decode_json($j->{sources});
is(scalar @$src, 2, 'sources capped at top_k (2 of 5)');
is_deeply([ map { $_->{id} } @$src ], [1, 2], 'the first (best) ones');

$j = run_job($w, { path => $QRY, status => 200, times => 1,
                   body => points({ id => 7, version => 0, score => 0.9 }, $five[0],
                                  { id => 8, version => 0, score => 0.5, payload => { other => 1 } }) });
is($j->{status}, 'finished', 'points without text among others: finished');
$src = decode_json($j->{sources});
is_deeply([ map { $_->{id} } @$src ], [1], 'only the point with text is a source');

$j = run_job($w, { path => $QRY, status => 200, times => 1,
                   body => points({ id => 7, version => 0, score => 0.9 },
                                  { id => 8, version => 0, score => 0.5, payload => { title => 'x' } }) });
is($j->{status}, 'failed', 'only points without text: failed');
is($j->{err}{code}, 'unsupported_payload', 'unsupported_payload');
like($j->{err}{message}, qr/2 points.*page_content.*text/, 'the message says what is missing');
is($j->{count}{$CHAT}, 0, 'the model is not asked to answer from nothing');
is($w->stop, 0, 'exit 0');

# The defaults: 4 MiB for chat answers.
$w = Ragq::Worker->start(env => \%env);
ok($w->ready, 'worker ready (default caps)');
$j = run_job($w, { path => $CHAT, status => 200, body => chat_answer(5_000_000), times => -1 });
too_large($w, $j, 'chat answer of 5 MB, default cap', $CHAT, 4194304);
is($w->stop, 0, 'exit 0');

like(`$ENV{RAGQ_BUILD}/ragq-worker --help`, qr/--max-answer-bytes SIZE\s+RAGQ_MAX_ANSWER_BYTES/,
     '--help lists RAGQ_MAX_ANSWER_BYTES');
my $bad = `RAGQ_MAX_ANSWER_BYTES=12x $ENV{RAGQ_BUILD}/ragq-worker 2>&1`;
like($bad, qr/RAGQ_MAX_ANSWER_BYTES must be a size/, 'a bad size is refused at start');
done_testing();
