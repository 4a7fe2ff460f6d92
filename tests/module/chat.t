# POST /chat: query argument and JSON body, validation, limits, methods,
# content types, the ragq_* knobs that shape the stored job, and the byte-exact
# round trip of a multilingual question through Valkey and /job-status.
use Test::Nginx::Socket;
use Ragq::Valkey;

no_shuffle();
no_long_string();

our $Id = qr/[0-9a-f]{32}/;
our $Queued = qr/^\{"status":"queued","job_id":"([0-9a-f]{32})","status_url":"\/job-status\?job_id=\1"\}$/;

# The one job under a prefix (tests use a fresh prefix each), as its key:
# a queued job is its queue entry (DEVELOPERS.md, "data model").
sub job_of {
    my ($prefix) = @_;
    my @ids = Ragq::Valkey::job_ids($prefix);
    die "expected one job under $prefix, found " . scalar(@ids) . "\n"
      unless @ids == 1;
    return "$prefix:job:$ids[0]";
}

# A field of the job of a P:job:ID key, from its hash or its entry.
sub hget {
    my ($key, $f) = @_;
    my ($prefix, $id) = $key =~ /^(.*):job:(\w+)$/ or die "not a job key: $key\n";
    return Ragq::Valkey::job_field($prefix, $id, $f);
}

sub json_str {
    my $s = shift;
    $s =~ s/\\/\\\\/g;
    $s =~ s/"/\\"/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# A multilingual question with emoji (UTF-8 bytes), as sent and as stored
# after the JSON escapes " \ud83d\ude80\u00e9\n" are decoded.
our $Q = "Wie geht's? \x{65E5}\x{672C}\x{8A9E}\x{306E}\x{8CEA}\x{554F} \x{2014}"
  . " \x{BF}qu\x{E9}? \x{41F}\x{440}\x{438}\x{432}\x{435}\x{442}"
  . " \x{1F600}\x{1F1EB}\x{1F1F7} \"q\" \\ end";
utf8::encode($Q);
our $QStored = $Q . do { my $t = " \x{1F680}\x{E9}\n"; utf8::encode($t); $t };
our $FixedId = '0123456789abcdef0123456789abcdef';

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config',
        "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config', "location = /chat { ragq_enqueue; }\n")
      unless defined $block->config;
    $block->set_value('no_error_log', "[error]\n[alert]\n")
      unless defined $block->no_error_log;
});

plan tests => 217;
run_tests();

__DATA__

=== TEST 1: query argument, form-decoded (+ is a space)
--- init
Ragq::Valkey::cmd('DEL', 'ragq:jobs');
--- request
POST /chat?query=what+is%20ragq%3F
--- error_code: 202
--- response_headers_like
Location: /job-status\?job_id=[0-9a-f]{32}
Content-Type: application/json
--- response_body_like eval
$::Queued



=== TEST 2: the job stored by TEST 1 has every field the worker expects
--- init
my @e = Ragq::Valkey::cmd_list('XRANGE', 'ragq:jobs', '-', '+');
Test::More::is(scalar(@e), 13, 'one stream entry (id, r, query, top_k, collection, tenant, created_at)');
Test::More::is(Ragq::Valkey::cmd('EXISTS', 'ragq:job:' . (Ragq::Valkey::job_ids('ragq'))[0]),
    '0', 'no hash until a worker claims the job');
my $key = main::job_of('ragq');
Test::More::is(main::hget($key, 'query'), 'what is ragq?', 'query decoded');
Test::More::is(main::hget($key, 'status'), 'queued', 'status');
Test::More::is(main::hget($key, 'top_k'), '5', 'default top_k');
Test::More::is(main::hget($key, 'attempts'), '0', 'attempts');
Test::More::is(main::hget($key, 'collection'), '', 'collection empty');
Test::More::is(main::hget($key, 'tenant'), '', 'no tenant');
Test::More::like(main::hget($key, 'created_at'), qr/^\d{13}$/, 'created_at ms');
--- request
POST /chat?query=again
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 3: JSON body with any charset parameter; top_k from the body
--- config
location = /chat { ragq_prefix t3; ragq_enqueue; }
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 't3:*'), 'x');
--- more_headers
Content-Type: application/json; charset=UTF-8
--- request
POST /chat
{"query": "hello", "top_k": 7, "ignored": {"a": [1, 2.5e3, true, null]}}
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 4: ragq_prefix and top_k of TEST 3 landed in t3:*
--- init
my $key = main::job_of('t3');
Test::More::is(main::hget($key, 'top_k'), '7', 'top_k from body');
Test::More::is(main::hget($key, 'query'), 'hello', 'query');
Test::More::is(Ragq::Valkey::cmd('XLEN', 't3:jobs'), '1', 'stream t3:jobs');
--- request
GET /chat
--- error_code: 405
--- response_headers
Allow: POST
Content-Type: application/json
--- response_body
{"error":{"code":"method_not_allowed","message":"use POST to submit a question"}}



=== TEST 5: HEAD is 405 too, with Allow
--- request
HEAD /chat
--- error_code: 405
--- response_headers
Allow: POST
--- response_body



=== TEST 6: PUT is 405
--- request
PUT /chat?query=x
--- error_code: 405
--- response_headers
Allow: POST
--- response_body_like chomp
"method_not_allowed"



=== TEST 7: malformed JSON
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": "unterminated
--- error_code: 400
--- response_body_like chomp
^\{"error":\{"code":"invalid_json","message":".+"\}\}$



=== TEST 8: trailing garbage after the object
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": "x"} {}
--- error_code: 400
--- response_body_like chomp
"invalid_json"



=== TEST 9: JSON that is not an object
--- more_headers
Content-Type: application/json
--- request
POST /chat
["query", "x"]
--- error_code: 400
--- response_body_like chomp
"invalid_json"



=== TEST 10: query must be a string
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": ["x"]}
--- error_code: 400
--- response_body_like chomp
"invalid_query"



=== TEST 11: empty query (JSON)
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": ""}
--- error_code: 400
--- response_body_like chomp
"invalid_query"



=== TEST 12: empty query argument
--- request
POST /chat?query=
--- error_code: 400
--- response_body_like chomp
"invalid_query"



=== TEST 13: no query at all
--- request
POST /chat
--- error_code: 400
--- response_body_like chomp
"missing_query"



=== TEST 14: JSON without "query"
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"question": "x"}
--- error_code: 400
--- response_body_like chomp
"missing_query"



=== TEST 15: wrong content type is 415
--- more_headers
Content-Type: text/plain
--- request
POST /chat
what is ragq?
--- error_code: 415
--- response_headers
Content-Type: application/json
--- response_body_like chomp
"unsupported_media_type"



=== TEST 16: form bodies are 415 too (the question goes in the URL or JSON)
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- request
POST /chat
query=x
--- error_code: 415
--- response_body_like chomp
"unsupported_media_type"



=== TEST 17: invalid UTF-8 in the JSON string is 400
--- more_headers
Content-Type: application/json
--- request eval
"POST /chat\n{\"query\": \"ab\xff\xfecd\"}"
--- error_code: 400
--- response_body_like chomp
"invalid_utf8"



=== TEST 18: invalid UTF-8 in the argument is 400 (overlong slash)
--- request
POST /chat?query=%C0%AF
--- error_code: 400
--- response_body_like chomp
"invalid_utf8"



=== TEST 19: a lone surrogate escape is malformed JSON
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": "\ud83d x"}
--- error_code: 400
--- response_body_like chomp
"invalid_json"



=== TEST 20: malformed percent-encoding
--- request
POST /chat?query=100%zz
--- error_code: 400
--- response_body_like chomp
"invalid_query"



=== TEST 21: top_k out of range, fractional, negative, wrong type
--- more_headers
Content-Type: application/json
--- request eval
[
"POST /chat\n{\"query\": \"x\", \"top_k\": 0}",
"POST /chat\n{\"query\": \"x\", \"top_k\": 21}",
"POST /chat\n{\"query\": \"x\", \"top_k\": 2.5}",
"POST /chat\n{\"query\": \"x\", \"top_k\": -3}",
"POST /chat\n{\"query\": \"x\", \"top_k\": \"5\"}",
"POST /chat?query=x&top_k=abc",
]
--- error_code eval
[400, 400, 400, 400, 400, 400]
--- response_body_like eval
[qr/"invalid_top_k".*from 1 to 20/, qr/"invalid_top_k"/, qr/"invalid_top_k"/,
 qr/"invalid_top_k"/, qr/"invalid_top_k"/, qr/"invalid_top_k"/]



=== TEST 22: ragq_top_k sets the default and the maximum
--- config
location = /chat { ragq_prefix t22; ragq_top_k 3 8; ragq_enqueue; }
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 't22:*'), 'x');
--- more_headers
Content-Type: application/json
--- request eval
[
"POST /chat\n{\"query\": \"x\", \"top_k\": 9}",
"POST /chat\n{\"query\": \"x\", \"top_k\": 8}",
]
--- error_code eval
[400, 202]
--- response_body_like eval
[qr/from 1 to 8/, $::Queued]



=== TEST 23: the default top_k of ragq_top_k 3 8, and the stored 8 of TEST 22
--- config
location = /chat { ragq_prefix t22; ragq_top_k 3 8; ragq_enqueue; }
--- init
Test::More::is(main::hget(main::job_of('t22'), 'top_k'), '8', 'top_k 8 stored');
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 't22:*'), 'x');
--- request
POST /chat?query=defaults
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 24: ... stored with top_k 3
--- config
location = /chat { ragq_prefix t22; ragq_top_k 3 8; ragq_enqueue; }
--- init
Test::More::is(main::hget(main::job_of('t22'), 'top_k'), '3', 'default top_k 3');
--- request
GET /chat
--- error_code: 405
--- response_body_like chomp
method_not_allowed



=== TEST 25: ragq_collection and ragq_tenant take variables
--- config
location = /chat {
    ragq_prefix t25;
    ragq_collection "docs_$arg_c";
    ragq_tenant $http_x_tenant;
    ragq_enqueue;
}
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 't25:*'), 'x');
--- more_headers
X-Tenant: acme
--- request
POST /chat?query=x&c=v2
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 26: ... stored collection and tenant; a client cannot pick the collection by JSON
--- config
location = /chat { ragq_prefix t25; ragq_collection fixed; ragq_enqueue; }
--- init
my $key = main::job_of('t25');
Test::More::is(main::hget($key, 'collection'), 'docs_v2', 'collection');
Test::More::is(main::hget($key, 'tenant'), 'acme', 'tenant');
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 't25:*'), 'x');
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": "x", "collection": "secret"}
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 27: ... the configured collection won
--- config
location = /chat { ragq_prefix t25; ragq_enqueue; }
--- init
Test::More::is(main::hget(main::job_of('t25'), 'collection'), 'fixed', 'configured collection');
--- request
POST /chat?query=x
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 28: ragq_max_query_length: at the limit 202, one byte over 413
--- config
location = /chat { ragq_max_query_length 10; ragq_enqueue; }
--- request eval
["POST /chat?query=0123456789", "POST /chat?query=0123456789a"]
--- error_code eval
[202, 413]
--- response_body_like eval
[$::Queued, qr/^\{"error":\{"code":"query_too_long","message":"the query is 11 bytes; at most 10 are accepted"\}\}$/]



=== TEST 29: the limit counts decoded bytes (JSON escapes do not count)
--- config
location = /chat { ragq_max_query_length 4; ragq_enqueue; }
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": "\u00e9\u00e9"}
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 30: a 1 MB JSON body is refused with 413 by default, without reading it whole
--- more_headers
Content-Type: application/json
--- request eval
"POST /chat\n{\"query\": \"" . ("a" x (1024 * 1024)) . "\"}"
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body_like chomp
"body_too_large"



=== TEST 31: a 1 MB question is accepted when configured (body spooled to a temp file)
--- config
location = /chat {
    ragq_prefix t31;
    ragq_max_query_length 2m;
    client_body_buffer_size 16k;
    ragq_enqueue;
}
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 't31:*'), 'x');
--- more_headers
Content-Type: application/json
--- request eval
"POST /chat\n{\"query\": \"" . ("ab" x (512 * 1024)) . "\"}"
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 32: ... stored byte for byte
--- config
location = /chat { ragq_prefix t31; ragq_enqueue; }
--- init
my $q = main::hget(main::job_of('t31'), 'query');
Test::More::ok($q eq ("ab" x (512 * 1024)), '1 MB query stored intact');
--- request
POST /chat?query=x
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 33: chunked body with the 1 MB limit exceeded is 413
--- config
location = /chat { ragq_max_query_length 1k; ragq_enqueue; }
--- more_headers
Content-Type: application/json
Transfer-Encoding: chunked
--- request eval
my $body = "{\"query\": \"" . ("a" x 20000) . "\"}";
"POST /chat\n" . sprintf("%x\r\n%s\r\n0\r\n\r\n", length($body), $body)
--- error_code: 413
--- response_body_like chomp
"body_too_large"



=== TEST 34: multilingual + emoji question, raw and \u-escaped (surrogate pair)
--- config
location = /chat { ragq_prefix t34; ragq_enqueue; }
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 't34:*'), 'x');
--- more_headers
Content-Type: application/json
--- request eval
"POST /chat\n{\"query\": \"" . main::json_str($::Q) . ' \ud83d\ude80\u00e9\n"}'
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 35: ... the bytes in Valkey, and the same bytes back through /job-status
--- config
location = /job-status { ragq_prefix t34; ragq_status; }
--- init
my $stored = main::hget(main::job_of('t34'), 'query');
Test::More::ok($stored eq $::QStored, 'stored byte for byte');
Ragq::Valkey::cmd('HSET', "t34:job:$::FixedId", 'status', 'queued', 'query',
    $stored, 'tenant', '', 'attempts', '0');
--- request eval
"GET /job-status?job_id=$::FixedId"
--- response_body_like eval
my $e = main::json_str($::QStored);
qr/^\{"job_id":"$::FixedId","status":"queued","query":"\Q$e\E","result":null,/



=== TEST 36: no ragq_valkey given: 127.0.0.1:6379 is assumed (and unreachable here: 503)
--- http_config
--- config
location = /chat { ragq_enqueue; }
--- request
POST /chat?query=x
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like chomp
"valkey_unavailable"
--- no_error_log
[alert]



=== TEST 37: bad directive values fail the configuration
--- config
location = /chat { ragq_top_k 0; ragq_enqueue; }
--- must_die
--- error_log
must be a positive number



=== TEST 38: ragq_valkey outside http{} level is rejected
--- config
location = /chat { ragq_valkey 127.0.0.1:1; ragq_enqueue; }
--- must_die
--- error_log
"ragq_valkey" directive is not allowed here



=== TEST 39: arguments: names need "=", match case-insensitively, the first wins; others are ignored
--- config
location = /chat { ragq_prefix t39; ragq_enqueue; }
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 't39:*'), 'x');
--- request
POST /chat?xquery=no&query&top_k=2&Query=yes&query=later&top_k=3
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 40: ... stored: the first "query=" and the first "top_k="
--- init
my $key = main::job_of('t39');
Test::More::is(main::hget($key, 'query'), 'yes', 'query');
Test::More::is(main::hget($key, 'top_k'), '2', 'top_k');
--- request
POST /chat?query=
--- error_code: 400
--- response_body_like chomp
"invalid_query"
