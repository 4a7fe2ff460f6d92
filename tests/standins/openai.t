# Tests of the stand-in's OpenAI-compatible side: embeddings, chat (plain and streaming),
# models, auth and error shapes. Needs only python3 and core Perl.
use strict;
use warnings;
use Test::More tests => 48;
use MIME::Base64 qw(decode_base64);
use JSON::PP;
use Ragq::Standin;

my $s = Ragq::Standin->start(dim => 32);
ok($s->port > 0, 'started on a free port');
like($s->base_url, qr{^http://127\.0\.0\.1:\d+/v1$}, 'base_url includes /v1');

sub dot { my ($a, $b) = @_; my $d = 0; $d += $a->[$_] * $b->[$_] for 0 .. $#$a; $d }

# --- embeddings
my $r = $s->request(POST => '/v1/embeddings', { model => 'text-embedding-3-small',
    input => ['refund policy for orders', 'the weather today', 'Refund POLICY details'] });
is($r->{status}, 200, 'embeddings 200');
my $j = $r->{json};
is($j->{object}, 'list', 'object list');
is($j->{model}, 'text-embedding-3-small', 'model echoed');
is_deeply([map { $_->{index} } @{ $j->{data} }], [2, 1, 0], 'data comes in reversed order, with index');
is($j->{data}[0]{object}, 'embedding', 'item object');
my @v;
$v[ $_->{index} ] = $_->{embedding} for @{ $j->{data} };
is(scalar @{ $v[0] }, 32, 'default dim from --dim');
cmp_ok(abs(dot($v[0], $v[0]) - 1), '<', 1e-9, 'L2-normalised');
cmp_ok(dot($v[0], $v[2]), '>', dot($v[0], $v[1]) + 0.3, 'shared words give higher cosine (case-folded)');
is($j->{usage}{prompt_tokens}, 10, 'usage counts word tokens');
is($j->{usage}{total_tokens}, 10, 'total_tokens');

my $again = $s->request(POST => '/v1/embeddings', { model => 'm', input => 'refund policy for orders' })->{json};
is_deeply($again->{data}[0]{embedding}, $v[0], 'deterministic; string input works');

$r = $s->request(POST => '/v1/embeddings', { model => 'm', input => 'refund policy for orders',
    encoding_format => 'base64' });
my @f = unpack('f<*', decode_base64($r->{json}{data}[0]{embedding}));
is(scalar @f, 32, 'base64 decodes to dim little-endian float32');
my $maxdiff = 0;
for (0 .. 31) { my $d = abs($f[$_] - $v[0][$_]); $maxdiff = $d if $d > $maxdiff }
cmp_ok($maxdiff, '<', 1e-6, 'base64 values equal the float values');

$r = $s->request(POST => '/v1/embeddings', { model => 'm', input => 'abc', dimensions => 8 });
is(scalar @{ $r->{json}{data}[0]{embedding} }, 8, 'dimensions honoured');

$r = $s->request(POST => '/v1/embeddings', { model => 'm', input => [[1, 2, 3]] });
is($r->{status}, 400, 'token arrays: 400');
is_deeply([sort keys %{ $r->{json}{error} }], [qw(code message param type)], 'OpenAI error object keys');
is($r->{json}{error}{type}, 'invalid_request_error', 'error type');

$r = $s->request(POST => '/v1/embeddings', '{not json');
is($r->{status}, 400, 'bad JSON: 400');
like($r->{json}{error}{message}, qr/could not parse the JSON body/, 'bad JSON message');

$r = $s->request(POST => '/v1/embeddings', { model => 'm', input => '' });
is($r->{status}, 400, 'empty input: 400');
$r = $s->request(POST => '/v1/embeddings', { model => 'm', input => 'x', encoding_format => 'hex' });
is($r->{status}, 400, 'bad encoding_format: 400');

$r = $s->request(POST => '/v1/embeddings', { model => 'missing-embedder', input => 'x' });
is($r->{status}, 404, 'missing-* model: 404');
is($r->{json}{error}{code}, 'model_not_found', 'model_not_found code');

# --- chat
my $prompt = "Context:\n[1] (handbook (v2).md) Refunds are issued within 30 days. Contact support.\n"
  . "[2] () Shipping is free.\n\nQuestion: how long do refunds take?";
$r = $s->request(POST => '/v1/chat/completions', { model => 'gpt-4o-mini', max_tokens => 200,
    messages => [{ role => 'system', content => 'Answer from context.' }, { role => 'user', content => $prompt }] });
is($r->{status}, 200, 'chat 200');
$j = $r->{json};
is($j->{object}, 'chat.completion', 'object');
like($j->{id}, qr/^chatcmpl-/, 'id');
ok($j->{created} > 1_600_000_000, 'created is epoch seconds');
is($j->{choices}[0]{message}{role}, 'assistant', 'role');
is($j->{choices}[0]{message}{content},
   'According to [1] (handbook (v2).md): Refunds are issued within 30 days.', 'grounded answer from source 1');
is($j->{choices}[0]{finish_reason}, 'stop', 'finish_reason stop');
is($j->{usage}{total_tokens}, $j->{usage}{prompt_tokens} + $j->{usage}{completion_tokens}, 'usage adds up');

$r = $s->request(POST => '/v1/chat/completions', { model => 'm',
    messages => [{ role => 'user', content => [{ type => 'text', text => "Question: what?" }] }] });
is($r->{json}{choices}[0]{message}{content}, "I don't know based on the provided sources.", 'no sources: declines');

$r = $s->request(POST => '/v1/chat/completions', { model => 'm', max_completion_tokens => 3,
    messages => [{ role => 'user', content => $prompt }] });
is($r->{json}{choices}[0]{finish_reason}, 'length', 'token limit cuts with finish_reason length');

$r = $s->request(POST => '/v1/chat/completions', { model => 'm', messages => [] });
is($r->{status}, 400, 'empty messages: 400');
$r = $s->request(POST => '/v1/chat/completions', { model => 'missing-llm', messages => [{ role => 'user', content => 'x' }] });
is($r->{status}, 404, 'missing model: 404');

# streaming
$r = $s->request(POST => '/v1/chat/completions', { model => 'm', stream => JSON::PP::true,
    stream_options => { include_usage => JSON::PP::true }, messages => [{ role => 'user', content => $prompt }] });
is($r->{status}, 200, 'stream 200');
like($r->{headers}{'content-type'}, qr{^text/event-stream}, 'SSE content type');
my @events = $r->{content} =~ /^data: (.*)$/mg;
is($events[-1], '[DONE]', 'ends with [DONE]');
my @chunks = map { decode_json($_) } @events[0 .. $#events - 1];
is($chunks[0]{choices}[0]{delta}{role}, 'assistant', 'first chunk carries the role');
my $text = join '', map { $_->{choices}[0]{delta}{content} // '' } grep { @{ $_->{choices} } } @chunks;
is($text, 'According to [1] (handbook (v2).md): Refunds are issued within 30 days.', 'pieces concatenate to the answer');
is_deeply($chunks[-1]{choices}, [], 'usage chunk has empty choices');
ok($chunks[-1]{usage}{total_tokens} > 0, 'usage chunk filled');

# models
$r = $s->request(GET => '/v1/models');
is($r->{json}{object}, 'list', 'GET /v1/models');

$s->stop;

# --- auth
my $a = Ragq::Standin->start(api_key => 'sk-test-123');
$r = $a->request(POST => '/v1/embeddings', { model => 'm', input => 'x' });
is($r->{status}, 401, 'no key: 401');
$r = $a->request(POST => '/v1/embeddings', { model => 'm', input => 'x' }, { authorization => 'Bearer sk-wrong-999' });
is($r->{json}{error}{code}, 'invalid_api_key', 'wrong key: invalid_api_key');
$r = $a->request(POST => '/v1/embeddings', { model => 'm', input => 'x' }, { authorization => 'Bearer sk-test-123' });
is($r->{status}, 200, 'right key: 200');
$a->stop;
