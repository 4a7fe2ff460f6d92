# Runner self-test: nginx lifecycle and config sections: master_on/workers,
# shutdown_error_log, must_die, main/http/post_main_config, log_level,
# env_to_nginx, the one-shot mock TCP server, TEST_NGINX_RAND_PORT_n.
# Plain nginx, no ragq module.
BEGIN {
    $ENV{TEST_NGINX_LOAD_MODULES} = '';
    $ENV{RAGQ_RUNNER_TEST_ENV} = 'from-env';
}
use Test::Nginx::Socket;

master_on();
workers(2);
env_to_nginx('RAGQ_RUNNER_TEST_ENV');
no_shuffle();
plan tests => 22;
run_tests();

__DATA__

=== TEST 1: master + 2 workers; graceful shutdown is logged
--- main_config
worker_shutdown_timeout 1s;
--- http_config
map $uri $tag { default "mapped"; }
--- config
location = /m { return 200 "$tag\n"; }
--- request
GET /m
--- response_body
mapped
--- error_log
start worker processes
--- shutdown_error_log
gracefully shutting down
exiting
--- no_shutdown_error_log
[alert]
open socket



=== TEST 2: must_die: a bad config must not start (1 assertion); error.log is checked
--- config
location = /x { no_such_directive on; }
--- must_die
--- error_log
unknown directive "no_such_directive"



=== TEST 3: log_level per block drops debug lines; post_main_config
--- log_level: warn
--- post_main_config
# after http {}, still main context
--- config
location = /l { return 200 "ok\n"; }
--- request
GET /l
--- response_body
ok
--- no_error_log
[debug]



=== TEST 4: mock TCP server: nginx proxies to it; exact bytes checked
--- config
location = /up {
    proxy_set_header Host mock;
    proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/back;
}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_query eval
"GET /back HTTP/1.0\r\nHost: mock\r\nConnection: close\r\n\r\n"
--- tcp_reply eval
"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nmock\n"
--- request
GET /up
--- response_body
mock



=== TEST 5: mock reply delay beyond proxy_read_timeout gives 504
--- config
location = /slow {
    proxy_read_timeout 100ms;
    proxy_set_header Host mock;
    proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply_delay: 400ms
--- tcp_reply eval
"HTTP/1.0 200 OK\r\n\r\nlate"
--- tcp_query_len: 53
--- request
GET /slow
--- error_code: 504
--- error_log
upstream timed out



=== TEST 6: env_to_nginx passes variables to nginx (perl-free check: env in conf)
--- config
location = /conf { alias $TEST_NGINX_SERVER_ROOT/conf/nginx.conf; default_type text/plain; }
--- request
GET /conf
--- response_body_like
env RAGQ_RUNNER_TEST_ENV;



=== TEST 7: mock reply as an array (one send() each); tcp_no_close
--- config
location = /pk {
    proxy_set_header Host mock;
    proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2;
}
--- tcp_listen: $TEST_NGINX_RAND_PORT_2
--- tcp_no_close
--- tcp_reply eval
["HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nab", "cd\n\n"]
--- request
GET /pk
--- response_body eval
"abcd\n\n"
