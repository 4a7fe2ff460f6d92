# Debian's nchan exports its bundled hiredis 1.0 symbols globally; loaded
# first, it must not capture ragq's calls. ragq reads Valkey's replies itself
# (ngx_http_ragq_reply.c) and links no hiredis: the module neither exports
# nor calls any redis*/sds* symbol.
BEGIN {
    my $ragq = $ENV{TEST_NGINX_LOAD_MODULES} // '';
    # nchan 1.3.6 itself double-frees in shm_destroy at exit, which ASan
    # reports; this file checks symbol binding, so it runs uninstrumented
    if (($ENV{RAGQ_ASAN} // '') eq '1' && $ENV{RAGQ_ROOT}
        && -f "$ENV{RAGQ_ROOT}/build/ngx_http_ragq_module.so")
    {
        $ragq = "$ENV{RAGQ_ROOT}/build/ngx_http_ragq_module.so";
        $ENV{TEST_NGINX_BINARY} = '/usr/sbin/nginx';
    }
    $ENV{TEST_NGINX_LOAD_MODULES} =
      "/usr/lib/nginx/modules/ngx_nchan_module.so $ragq";
    $ENV{RAGQ_MODULE_SO} = $ragq;
}
use Test::Nginx::Socket;
use Ragq::Valkey;

no_shuffle();

our $Queued = qr/^\{"status":"queued","job_id":"([0-9a-f]{32})","status_url":"\/job-status\?job_id=\1"\}$/;

plan tests => 11;
run_tests();

__DATA__

=== TEST 1: nchan loaded before ragq: enqueue and status work
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
location = /chat { ragq_prefix nc; ragq_enqueue; }
location = /job-status { ragq_prefix nc; ragq_status; }
location = /sub { nchan_subscriber; nchan_channel_id test; }
--- init
my @exported = grep { /^\s*[0-9a-f]*\s+[TDBW]\s+(redis|sds)/ }
  `nm -D --defined-only $ENV{RAGQ_MODULE_SO}`;
Test::More::is(scalar(@exported), 0, 'no redis*/sds* symbols exported')
  or Test::More::diag(@exported[0 .. 4]);
my @called = grep { /\s+U\s+(redis|sds|freeReplyObject)/ }
  `nm -D --undefined-only $ENV{RAGQ_MODULE_SO}`;
Test::More::is(scalar(@called), 0, 'no redis*/sds* symbols called: nothing nchan could capture')
  or Test::More::diag(@called[0 .. 4]);
my @nchan = grep { /\s+T\s+redisAsyncConnect$/ }
  `nm -D --defined-only /usr/lib/nginx/modules/ngx_nchan_module.so`;
Test::More::is(scalar(@nchan), 1, 'nchan does export redisAsyncConnect (the clash is real)');
Ragq::Valkey::cmd('HSET', 'nc:job:' . ('ab' x 16), 'status', 'finished',
    'result', 'fine', 'tenant', '');
--- request eval
["POST /chat?query=with+nchan", "GET /job-status?job_id=" . ('ab' x 16)]
--- error_code eval
[202, 200]
--- response_body_like eval
[$::Queued, qr/"status":"finished","query":null,"result":"fine"/]
--- no_error_log
[alert]
[error]
