# Runner self-test: when nginx is (re)started between blocks and what
# error.log a block's checks see, as the real Test::Nginx does it: a block
# with a --- config gets a new nginx and an empty error.log; a block without
# one keeps the running nginx (its own --- http_config is not used) and its
# checks see all that nginx logged since it started, earlier blocks included.
# (tests/runner/reuse.t: the same with TEST_NGINX_FORCE_RESTART_ON_TEST=0.)
# Plain nginx, no ragq module.
BEGIN { $ENV{TEST_NGINX_LOAD_MODULES} = '' }
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



=== TEST 2: no --- config: the same nginx, its error.log read from the start
--- http_config
map $uri $tag { default "two"; }
--- request
GET /t/2
--- error_code: 404
--- response_headers
X-Tag: one
--- grep_error_log eval: qr{/t/\d" failed}
--- grep_error_log_out
/t/1" failed
/t/2" failed



=== TEST 3: the same --- config as TEST 1: a new nginx all the same, a new error.log
--- http_config
map $uri $tag { default "three"; }
--- config
location /t/ { add_header X-Tag $tag always; }
--- request
GET /t/3
--- error_code: 404
--- response_headers
X-Tag: three
--- grep_error_log eval: qr{/t/\d" failed}
--- grep_error_log_out
/t/3" failed
