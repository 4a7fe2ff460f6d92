# Runner self-test, TEST_NGINX_FORCE_RESTART_ON_TEST=0: nginx is restarted
# only when a block's --- config differs from the one it runs with (other
# sections do not count), as the real Test::Nginx does it; a block on the
# same nginx sees its whole error.log. Plain nginx, no ragq module.
BEGIN {
    $ENV{TEST_NGINX_LOAD_MODULES} = '';
    $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0;
}
use Test::Nginx::Socket;

no_shuffle();
log_level('error');
plan tests => 3 * blocks();
run_tests();

__DATA__

=== TEST 1: a new nginx
--- http_config
map $uri $tag { default "one"; }
--- config
location /t/ { add_header X-Tag $tag always; }
--- request
GET /t/1
--- error_code: 404
--- response_headers
X-Tag: one
--- grep_error_log eval: qr{/t/\d" failed}
--- grep_error_log_out
/t/1" failed



=== TEST 2: the same --- config, another http_config: the same nginx, its error.log read from the start
--- http_config
map $uri $tag { default "two"; }
--- config
location /t/ { add_header X-Tag $tag always; }
--- request
GET /t/2
--- error_code: 404
--- response_headers
X-Tag: one
--- grep_error_log eval: qr{/t/\d" failed}
--- grep_error_log_out
/t/1" failed
/t/2" failed



=== TEST 3: another --- config: a new nginx, a new error.log
--- http_config
map $uri $tag { default "three"; }
--- config
location /t/ { add_header X-Tag $tag always; }
location = /other { return 204; }
--- request
GET /t/3
--- error_code: 404
--- response_headers
X-Tag: three
--- grep_error_log eval: qr{/t/\d" failed}
--- grep_error_log_out
/t/3" failed
