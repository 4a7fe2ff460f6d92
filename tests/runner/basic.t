# Runner self-test: plain nginx (no ragq module): status, bodies, headers,
# error_log checks, repeat_each, user_files, more_headers, POST bodies.
BEGIN { $ENV{TEST_NGINX_LOAD_MODULES} = '' }
use Test::Nginx::Socket;

repeat_each(2);
plan tests => repeat_each() * (2 * blocks() + 6);

# Blocks without a request get one (preprocessors run before each block).
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /pre\n") unless defined $block->request;
});

run_tests();

__DATA__

=== TEST 1: return 200 with body
--- config
location = /t { return 200 "hello\n"; }
--- request
GET /t
--- response_body
hello



=== TEST 2: error_code and response_headers (always)
--- config
location = /h { add_header X-Foo "bar baz" always; return 404 "x"; }
--- request
GET /h
--- error_code: 404
--- response_headers
X-Foo: bar baz
!X-Nope
--- response_body chomp
x



=== TEST 3: more_headers are sent; request headers echoed back
--- config
location = /e { return 200 "$http_x_one|$http_x_two|$host|$http_connection\n"; }
--- more_headers
X-One: 1
# a comment
X-Two: two words
--- request
GET /e
--- response_body
1|two words|localhost|close
--- error_log
GET /e HTTP/1.1
--- no_error_log
[error]
[alert]



=== TEST 4: POST body gets Content-Length, trimmed
--- config
location = /p { return 200 "$http_content_length\n"; }
--- request
POST /p
  hello world  
--- response_body
11



=== TEST 5: user_files served from html/
--- user_files
>>> a.txt
file A
>>> sub/b.txt
file B
--- config
location /x { return 404; }
--- request
GET /sub/b.txt
--- response_body
file B
--- response_headers_like
Content-Type: text/pl.*



=== TEST 6: request supplied by a block preprocessor
--- config
location = /pre { return 200 "pre\n"; }
--- response_body
pre
