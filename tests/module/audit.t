# The findings of issue 10's outside audit on the nginx side, one or more
# regression tests each (each failed before its fix): chunked bodies and the
# empty last buffer (2), the per-key copy of the body (1), canonical numbers
# and UTF-8 in the job view (4), Idempotency-Key replays (5), NUL bytes in a
# question (7), an empty tenant (8).
use Test::Nginx::Socket;
use Ragq::Valkey;

no_shuffle();
no_long_string();

our $Queued = qr/^\{"status":"queued","job_id":"([0-9a-f]{32})","status_url":"\/job-status\?job_id=\1"\}$/;

our $Id = '0000000000000000000000000000a0d1';
our $Id2 = '0000000000000000000000000000a0d2';

# The Valkey key of an Idempotency-Key under prefix au (DEVELOPERS.md).
sub idem_key {
    my ($tenant, $key) = @_;
    require Digest::SHA;
    return "au:idem:$tenant:" . Digest::SHA::sha1_hex($key);
}

sub chunked {
    my ($body, @sizes) = @_;
    my $out = '';
    while (length $body) {
        my $n = @sizes ? shift @sizes : length $body;
        my $c = substr($body, 0, $n, '');
        $out .= sprintf("%x\r\n%s\r\n", length $c, $c);
    }
    return $out . "0\r\n\r\n";
}

add_block_preprocessor(sub {
    my $block = shift;
    # a request that depends on an earlier block's outcome is made here:
    # preprocessors run just before their block
    $block->set_value('request', "GET /job-status?job_id="
        . Ragq::Valkey::cmd('GET', main::idem_key('', 'garbage-1')))
      if $block->name =~ /^TEST 11:/;
    $block->set_value('http_config',
        "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix au; ragq_enqueue; }
location = /job-status { ragq_prefix au; ragq_status; }
location = /t/chat { ragq_prefix au; ragq_tenant $http_x_tenant; ragq_enqueue; }
location = /t/job-status { ragq_prefix au; ragq_tenant $http_x_tenant; ragq_status; }
EOF
    $block->set_value('no_error_log', "[error]\n[alert]\nexited with code\n")
      unless defined $block->no_error_log;
});

plan tests => 123;
run_tests();

__DATA__

=== TEST 1: finding 2: a chunked JSON body is accepted (202), one chunk
--- more_headers
Content-Type: application/json
Transfer-Encoding: chunked
--- request eval
"POST /chat\n" . main::chunked('{"query":"t"}')
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 2: finding 2: a chunked JSON body in many chunks (202)
--- more_headers
Content-Type: application/json
Transfer-Encoding: chunked
--- request eval
"POST /chat\n" . main::chunked('{"query": "split across chunks", "top_k": 3}', 1, 2, 3, 5, 8)
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 3: finding 2: an empty chunked body is missing_query
--- more_headers
Content-Type: application/json
Transfer-Encoding: chunked
--- request eval
"POST /chat\n0\r\n\r\n"
--- error_code: 400
--- response_body_like chomp
^\{"error":\{"code":"missing_query",



=== TEST 4: finding 1: a 100 kB body of 8,400 "query" keys costs one pass: refused at the second key, a few allocations
--- more_headers
Content-Type: application/json
--- request eval
"POST /chat\n{" . ('"query":"x",' x 8400) . '"query":"x"}'
--- error_code: 400
--- response_body_like chomp
^\{"error":\{"code":"invalid_json","message":"the JSON body has \\"query\\" more than once"\}\}$
--- grep_error_log eval: qr/malloc: \S+:\d+/
--- grep_error_log_out eval: qr/\A(?:[^\n]*\n){0,20}\z/



=== TEST 5: finding 1: 8,400 other keys before "query" are skipped without copies (202, a few allocations)
--- more_headers
Content-Type: application/json
--- request eval
"POST /chat\n{" . ('"q":"xxxxxxxxxxxxx",' x 4800) . '"query":"the question"}'
--- error_code: 202
--- response_body_like eval
$::Queued
--- grep_error_log eval: qr/malloc: \S+:\d+/
--- grep_error_log_out eval: qr/\A(?:[^\n]*\n){0,20}\z/



=== TEST 6: finding 1: "top_k" twice is refused too
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": "q", "top_k": 3, "top_k": 4}
--- error_code: 400
--- response_body_like chomp
^\{"error":\{"code":"invalid_json","message":"the JSON body has \\"top_k\\" more than once"\}\}$



=== TEST 7: finding 4: integer fields are re-emitted canonically; invalid UTF-8 inside JSON fields is repaired in place
--- init
Ragq::Valkey::cmd('DEL', "au:job:$::Id");
Ragq::Valkey::cmd('HSET', "au:job:$::Id", status => 'finished', query => 'q',
    tenant => '', created_at => '007', attempts => '-00', started_at => '-0012',
    ended_at => '0000000000000000000000042',
    sources => qq/[{"id":"c1","score":0.5,"source":"d\xffoc.md","text":"\xc0\xaf"}]/,
    error => qq/{"code":"x","message":"bad \xed\xa0\x80"}/,
    usage => qq/{"backends":{"store":"loc\xf4\x90\x80\x80al"}}/,
    callback => '{"status":"delivered","attempts":1,"code":204}');
--- request eval
"GET /job-status?job_id=$::Id"
--- error_code: 200
--- response_body eval
qq/{"job_id":"$::Id","status":"finished","query":"q","result":null,"sources":[{"id":"c1","score":0.5,"source":"d\\ufffdoc.md","text":"\\ufffd\\ufffd"}],"error":{"code":"x","message":"bad \\ufffd\\ufffd\\ufffd"},"created_at":7,"started_at":-12,"ended_at":42,"attempts":0,"usage":{"backends":{"store":"loc\\ufffd\\ufffd\\ufffd\\ufffdal"}},"callback":{"status":"delivered","attempts":1,"code":204}}\n/



=== TEST 8: finding 4: what is not an integer of at most 19 digits is null; JSON fields that do not parse are strings
--- init
Ragq::Valkey::cmd('DEL', "au:job:$::Id");
Ragq::Valkey::cmd('HSET', "au:job:$::Id", status => 'queued', query => 'q',
    tenant => '', created_at => '+5', attempts => '1.0', started_at => '',
    ended_at => '12345678901234567890', sources => '[007]',
    error => qq/{"code":"x"}\xff/, usage => '{"a":"\ud800"}',
    callback => '[1]');
--- request eval
"GET /job-status?job_id=$::Id"
--- error_code: 200
--- response_body eval
qq/{"job_id":"$::Id","status":"queued","query":"q","result":null,"sources":"[007]","error":"{\\"code\\":\\"x\\"}\\ufffd","created_at":null,"started_at":null,"ended_at":null,"attempts":null,"usage":"{\\"a\\":\\"\\\\ud800\\"}","callback":null}\n/



=== TEST 9: finding 5: an Idempotency-Key reused with another question is 422; the same question gets the same job
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'au:idem:*'), 'x');
--- request eval
["POST /chat?query=first", "POST /chat?query=first", "POST /chat?query=second",
 "POST /chat?query=first&top_k=7"]
--- more_headers eval
["Idempotency-Key: reuse-1", "Idempotency-Key: reuse-1", "Idempotency-Key: reuse-1",
 "Idempotency-Key: reuse-1"]
--- error_code eval
[202, 202, 422, 422]
--- response_body_like eval
[$::Queued, $::Queued,
 qr/^\{"error":\{"code":"idempotency_key_reused","message":"this Idempotency-Key was used for another question[^"]*"\}\}$/,
 qr/^\{"error":\{"code":"idempotency_key_reused",/]



=== TEST 10: finding 5: a stored value that is not a job id (its key exists) is replaced by a new job
--- init
Ragq::Valkey::cmd('SET', main::idem_key('', 'garbage-1'), 'x');
Ragq::Valkey::cmd('HSET', 'au:job:x', status => 'queued', query => 'q10');
Ragq::Valkey::cmd('SET', main::idem_key('', 'garbage-2'), $::Id2);
Ragq::Valkey::cmd('SET', "au:job:$::Id2", 'a string, not a hash');
Ragq::Valkey::cmd('DEL', main::idem_key('', 'garbage-3'));
Ragq::Valkey::cmd('RPUSH', main::idem_key('', 'garbage-3'), 'a list');
--- request eval
["POST /chat?query=q10", "POST /chat?query=q10", "POST /chat?query=q10"]
--- more_headers eval
["Idempotency-Key: garbage-1", "Idempotency-Key: garbage-2", "Idempotency-Key: garbage-3"]
--- error_code eval
[202, 202, 202]
--- response_body_like eval
[$::Queued, $::Queued, $::Queued]



=== TEST 11: finding 5: ... each key now names a new job that exists, with the question
--- init
for my $k ('garbage-1', 'garbage-2', 'garbage-3') {
    my $id = Ragq::Valkey::cmd('GET', main::idem_key('', $k));
    Test::More::like($id, qr/^[0-9a-f]{32}$/, "$k: a job id");
    Test::More::is(Ragq::Valkey::job_field('au', $id, 'query'), 'q10', "$k: its job");
}
--- error_code: 200
--- response_body_like: "query":"q10"



=== TEST 12: finding 7: a NUL byte in a question is refused (argument and JSON)
--- request eval
["POST /chat?query=a%00b", "POST /chat?query=%00",
 "POST /chat\n{\"query\": \"a\\u0000b\"}"]
--- more_headers eval
["", "", "Content-Type: application/json"]
--- error_code eval
[400, 400, 400]
--- response_body eval
['{"error":{"code":"invalid_query","message":"the query contains a NUL byte (U+0000)"}}' . "\n",
 '{"error":{"code":"invalid_query","message":"the query contains a NUL byte (U+0000)"}}' . "\n",
 '{"error":{"code":"invalid_query","message":"the query contains a NUL byte (U+0000)"}}' . "\n"]



=== TEST 13: finding 8: an empty tenant where ragq_tenant is configured is 403 missing_tenant (enqueue and status)
--- init
Ragq::Valkey::cmd('DEL', "au:job:$::Id");
Ragq::Valkey::cmd('HSET', "au:job:$::Id", status => 'queued', query => 'q', tenant => '');
--- request eval
["POST /t/chat?query=q", "POST /t/chat?query=q", "GET /t/job-status?job_id=$::Id",
 "POST /t/chat?query=q"]
--- more_headers eval
["", "X-Tenant: ", "", "Idempotency-Key: shared"]
--- error_code eval
[403, 403, 403, 403]
--- response_body eval
['{"error":{"code":"missing_tenant","message":"this location needs a tenant (ragq_tenant) and the request has none"}}' . "\n",
 '{"error":{"code":"missing_tenant","message":"this location needs a tenant (ragq_tenant) and the request has none"}}' . "\n",
 '{"error":{"code":"missing_tenant","message":"this location needs a tenant (ragq_tenant) and the request has none"}}' . "\n",
 '{"error":{"code":"missing_tenant","message":"this location needs a tenant (ragq_tenant) and the request has none"}}' . "\n"]
