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

plan tests => 32;
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
