# Runner self-test: request forms (eval arrays, packets, raw_request,
# pipelined_requests), timeout/abort, ignore_response, --- init, grep_error_log,
# *_like sections. Plain nginx, no ragq module.
BEGIN { $ENV{TEST_NGINX_LOAD_MODULES} = '' }
use Test::Nginx::Socket;

our $InitRan = 0;

no_shuffle();
plan tests => 34;
run_tests();

__DATA__

=== TEST 1: request eval array: one connection per request, arrays per request
--- config
location /a { return 200 "a:$request_uri\n"; }
location /b { return 201 "b:$http_x_h\n"; }
--- request eval
["GET /a?1", "GET /b"]
--- more_headers eval
["X-H: one", "X-H: two"]
--- error_code eval
[200, 201]
--- response_body eval
["a:/a?1\n", "b:two\n"]
--- no_error_log
[error]



=== TEST 2: request sent as packets with a delay
--- config
location = /p { return 200 "$request_method $http_content_length\n"; }
--- request eval
[["POST /p\nab", {value => "cd", delay_before => 0.05}]]
--- response_body
POST 4



=== TEST 3: raw_request is sent verbatim
--- config
location = /r { return 200 "$http_x_raw|$server_protocol\n"; }
--- raw_request eval
"GET /r HTTP/1.0\r\nX-Raw: yes\r\n\r\n"
--- response_body
yes|HTTP/1.0



=== TEST 4: pipelined requests on one keep-alive connection
--- config
location /q { return 200 "q$arg_n\n"; }
--- pipelined_requests eval
["GET /q?n=1", "GET /q?n=2", "GET /q?n=3"]
--- response_body eval
["q1\n", "q2\n", "q3\n"]
--- error_code eval
[200, 200, 200]



=== TEST 5: timeout + abort + ignore_response: no assertions from the request
--- config
location = /slow { limit_rate 1; return 200 "0123456789"; }
--- request
GET /slow
--- timeout: 200ms
--- abort
--- ignore_response
--- wait: 0.1
--- error_log
client prematurely closed connection



=== TEST 6: --- init runs Perl; body_like wins over body_unlike (1 assertion)
--- config
location = /i { return 200 "ok\n"; }
--- init
$main::InitRan = 1;
--- request
GET /i
--- response_body_like chop
^ok$
--- response_body_unlike: fail
--- response_headers_like
Content-Type: text/plain



=== TEST 7: init really ran (blocks run in order here)
--- config
location = /i { return 200 "ran\n"; }
--- init
die "init did not run\n" unless $main::InitRan == 1;
--- request
GET /i
--- error_code_like: ^2\d\d$
--- raw_response_headers_like: Content-Length: 4\r\n
--- raw_response_headers_unlike: X-Never



=== TEST 8: grep_error_log collects matches in order
--- config
location = /g {
    rewrite_log on;
    rewrite ^/g$ /g1 last;
}
location = /g1 { return 200 "g1\n"; }
--- request
GET /g
--- grep_error_log eval: qr/rewritten data: "[^"]+"/
--- grep_error_log_out
rewritten data: "/g1"



=== TEST 9: chunked response is decoded; HEAD has no body
--- config
location = /c { return 200 "chunk\n"; chunked_transfer_encoding on; }
--- request
HEAD /c
--- response_body:
--- response_headers
Content-Length: 6



=== TEST 10: shutdown half-closes; response still read
--- config
location = /s { return 200 "s\n"; }
--- request
GET /s
--- shutdown: 1
--- response_body
s



=== TEST 11: nginx answers 413 before the whole body is read (lingering close)
--- config
location = /big { client_max_body_size 1k; return 200 "no\n"; }
--- request eval
"POST /big\n" . ("x" x 300_000)
--- error_code: 413
--- response_body_like: 413 Request Entity Too Large



=== TEST 12: the first packet's delay_before is not waited for, later ones' are
--- config
client_header_timeout 500ms;
location = /d { return 200 "$request_method $http_content_length\n"; }
--- request eval
[[{value => "POST /d\nab", delay_before => 3}, {value => "cd", delay_before => 0.05}]]
--- response_body
POST 4
