# GET /job-stream with the real worker (issue 12): the stand-in streams the
# chat answer, ragq-worker appends the pieces to P:out:ID and publishes
# them, nginx sends them as Server-Sent Events. The token texts (after the
# last reset) concatenate to the job's result byte for byte (multilingual
# text and emoji); a chat answer stalled after a batch was sent is retried
# and the client sees a reset event, then the retry's whole text; one cut
# is retried; a late client gets the same events.
use utf8;
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Standin;
use Ragq::Worker;
use Ragq::Sse qw(send_get read_all parse events text_of ids_of kinds_of);
use JSON::PP;
use Encode ();

no_shuffle();
no_long_string();

our $Prefix = "wsn$$";
$ENV{TEST_NGINX_WPREFIX} = $Prefix;

our $S = Ragq::Standin->start(dim => 32);
$S->create_collection('docs', 32);
our $Text = "Grüße aus Köln: 日本語のテキスト, русский текст, العربية, and emoji 😀🚀👍🏽 too. Second sentence.";
$S->upsert('docs', [ { id => 1, payload => { text => $Text, source => 'multi.md' } } ]);
our $W = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $Prefix, OPENAI_BASE_URL => $S->base_url, OPENAI_API_KEY => 'sk-x',
    QDRANT_URL => $S->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RESULT_TTL => '1h',
    RAGQ_HTTP_TIMEOUT => '2s',
});
$W->ready or die "worker did not start:\n" . $W->log;

# Queues a job and streams it from the start: (id, code, job, events, body).
sub stream_job {
    my ($query) = @_;
    my $id = Ragq::Worker::enqueue(prefix => $Prefix, query => $query, top_k => 1);
    my ($raw) = read_all(send_get("/job-stream?job_id=$id"));
    my ($code, undef, $body) = parse($raw);
    my ($ev) = events($body);
    my $job = Ragq::Worker::job($Prefix, $id);
    return ($id, $code, $job, $ev, $body);
}

# Every id once, in order, from 1.
sub ids_ok {
    my ($ev) = @_;
    my @ids = split /,/, ids_of($ev);
    return @ids && "@ids" eq join(' ', 1 .. @ids);
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config',
        "location = /job-stream { ragq_prefix \$TEST_NGINX_WPREFIX; ragq_stream; }\n")
      unless defined $block->config;
    $block->set_value('no_error_log', "[error]\n[alert]\n") unless defined $block->no_error_log;
});

plan tests => 26;
run_tests();

__DATA__

=== TEST 1: a streamed answer: the token texts are the result byte for byte, then done; a late client gets the same
--- init
my ($id, $code, $job, $ev, $body) = main::stream_job('Greetings from Köln?');
Test::More::is($code, 200, 'status 200');
Test::More::is($job->{status}, 'finished', 'the job finished') or Test::More::diag($main::W->log);
Test::More::like(main::kinds_of($ev), qr/^(status,)*token(,token)*,done$/, 'statuses, tokens, done');
Test::More::ok(main::ids_ok($ev), 'ids 1..N: ' . main::ids_of($ev));
Test::More::is(main::text_of($ev), $job->{result}, 'tokens = result, byte for byte');
Test::More::like($job->{result}, qr/\Q@{[Encode::encode_utf8('😀🚀👍🏽')]}\E/, 'the emoji made it');
my $done = JSON::PP->new->utf8->decode($ev->[-1]{data});
Test::More::is(Encode::encode_utf8($done->{result}), $job->{result}, 'done carries the result');
my ($raw) = main::read_all(main::send_get("/job-stream?job_id=$id"));
my (undef, undef, $late) = main::parse($raw);
my $tokens = join '', grep { /^event: (token|reset)/ } split /(?<=\n\n)/, $body;
my $late_tokens = join '', grep { /^event: (token|reset)/ } split /(?<=\n\n)/, $late;
Test::More::is($late_tokens, $tokens, 'a late client: the same pieces');
Test::More::like($late, qr/event: done\ndata: [^\n]*"status":"finished"[^\n]*\n\n\z/, '... then done');
--- request
GET /job-stream
--- error_code: 400



=== TEST 2: a chat answer stalled after a batch was sent: a reset event, then the retry's whole text
--- init
$main::S->fault({ path => '/v1/chat/completions', mode => 'stream_stall', after_events => 4, times => 1 });
my ($id, $code, $job, $ev, $body) = main::stream_job('Greetings once more?');
Test::More::is($job->{status}, 'finished', 'the job finished after the retry') or Test::More::diag($main::W->log);
my @resets = grep { $_->{event} eq 'reset' } @$ev;
Test::More::is(scalar @resets, 1, 'one reset event');
Test::More::ok(defined $resets[0]{id} && $resets[0]{id} > 1, 'with its id, after pieces of the broken try');
Test::More::ok(main::ids_ok($ev), 'ids 1..N: ' . main::ids_of($ev));
Test::More::is(main::text_of($ev), $job->{result}, 'tokens after the reset = result, byte for byte');
--- request
GET /job-stream
--- error_code: 400



=== TEST 3: a chat answer cut before a batch was sent: retried, no reset, the text is the result
--- init
$main::S->fault({ path => '/v1/chat/completions', mode => 'stream_cut', after_events => 4, times => 1 });
my ($id, $code, $job, $ev, $body) = main::stream_job('Greetings again?');
Test::More::is($job->{status}, 'finished', 'the job finished after the retry') or Test::More::diag($main::W->log);
# no reset is expected, but a loaded machine may send a batch before the
# cut: the events show exactly the stream's reset entries either way
my @entries = Ragq::Valkey::cmd_list('XRANGE', "$main::Prefix:out:$id", '-', '+');
Test::More::is(scalar(grep { $_->{event} eq 'reset' } @$ev), scalar(grep { $_ eq 'reset' } @entries),
    'a reset event per reset entry (none unless a batch went out before the cut)');
Test::More::is(main::text_of($ev), $job->{result}, 'tokens = result, byte for byte');
--- request
GET /job-stream
--- error_code: 400
