# Valkey refusing commands for a while, each on a real server: out of memory
# (maxmemory), busy running a script (past busy-reply-threshold), loading its
# data after a restart. POST /chat and GET /job-status answer 503 with the
# code README's "Errors" table names and Retry-After, the error log has
# Valkey's own words, and requests are served again once the condition
# passes.
use Test::Nginx::Socket;
use Ragq::ValkeyHA;
use Ragq::Valkey ();
use Time::HiRes ();

our $HA = Ragq::ValkeyHA->new;
our $Oom = $HA->server;
our $Busy = $HA->server(args => ['--busy-reply-threshold', '100']);
our $Load = $HA->server;
$ENV{TEST_NGINX_OOM_PORT} = $Oom->port;
$ENV{TEST_NGINX_BUSY_PORT} = $Busy->port;
$ENV{TEST_NGINX_LOAD_PORT} = $Load->port;

our $Queued = '0123456789abcdef0123456789abcdef';

# A script that runs until SCRIPT KILL, from a child redis-cli.
sub busy_start {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        { exec 'redis-cli', '-p', $main::Busy->port, 'EVAL', 'while true do end', '0' }
        POSIX::_exit(127);
    }
    $main::BusyPid = $pid;
    # until the script has run past the 100 ms after which Valkey answers BUSY
    for (1 .. 200) {
        my ($out) = $main::Busy->try_cli('PING');
        last if ($out // '') =~ /^BUSY/;
        Time::HiRes::sleep(0.05);
    }
}

sub busy_end {
    for (1 .. 100) {
        my ($out) = $main::Busy->try_cli('SCRIPT', 'KILL');
        last if ($out // '') =~ /^OK|NOTBUSY/;
        Time::HiRes::sleep(0.05);
    }
    waitpid($main::BusyPid, 0);
}

# A restart that loads 100 keys, 50 ms each: LOADING for about 5 s.
sub load_start {
    my $v = 'x' x 2000;
    $main::Load->cli('SET', "fill:$_", $v) for 1 .. 100;
    $main::Load->cli('HSET', "ld:job:$main::Queued", 'status', 'queued', 'query', 'q',
        'tenant', '', 'created_at', '1700000000000', 'attempts', '0');
    # uncompressed, so that the loading answers clients at every key
    $main::Load->cli('CONFIG', 'SET', 'rdbcompression', 'no');
    $main::Load->cli('SAVE');
    $main::Load->kill('TERM');
    $main::Load->start(loading => 1, args => ['--key-load-delay', '50000',
        '--loading-process-events-interval-bytes', '1024']);
    # nginx reconnects on its own (after its backoff): the request goes out
    # once it has (its handshake's ROLE is seen), while Valkey still loads
    for (1 .. 100) {
        my ($clients) = $main::Load->try_cli('CLIENT', 'LIST');
        last if ($clients // '') =~ /cmd=role/;
        Time::HiRes::sleep(0.03);
    }
}

sub load_end {
    for (1 .. 400) {
        my ($out) = $main::Load->try_cli('PING');
        return if ($out // '') =~ /PONG/;
        Time::HiRes::sleep(0.05);
    }
    die "still loading";
}

no_shuffle();
no_long_string();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix ld; ragq_enqueue; }
location = /job-status { ragq_prefix ld; ragq_status; }
EOF
});

plan tests => 29;
run_tests();

__DATA__

=== TEST 1: out of memory (maxmemory reached, noeviction): POST /chat 503 valkey_oom, Retry-After
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_OOM_PORT;
--- init
$main::Oom->cli('CONFIG', 'SET', 'maxmemory', '1');
--- request
POST /chat?query=x
--- error_code: 503
--- response_headers_like
Retry-After: \d+
--- response_body_like chomp
^\{"error":\{"code":"valkey_oom","message":"the job store \(Valkey\) is out of memory \(maxmemory\); retry later"\}\}$
--- error_log
OOM command not allowed when used memory > 'maxmemory'
--- no_error_log
[alert]



=== TEST 2: ... served again once memory is allowed
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_OOM_PORT;
--- init
$main::Oom->cli('CONFIG', 'SET', 'maxmemory', '0');
--- request
POST /chat?query=x
--- error_code: 202
--- no_error_log
[error]
[alert]



=== TEST 3: a script running past busy-reply-threshold: POST /chat 503 valkey_busy, Retry-After
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_BUSY_PORT;
--- init
main::busy_start();
--- request
POST /chat?query=x
--- error_code: 503
--- response_headers_like
Retry-After: \d+
--- response_body_like chomp
"code":"valkey_busy"
--- error_log
BUSY
--- no_error_log
[alert]



=== TEST 4: ... and GET /job-status too
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_BUSY_PORT;
--- request eval
"GET /job-status?job_id=$::Queued"
--- error_code: 503
--- response_body_like chomp
"code":"valkey_busy"
--- no_error_log
[alert]



=== TEST 5: ... served again once the script is killed
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_BUSY_PORT;
--- init
main::busy_end();
--- request
POST /chat?query=x
--- error_code: 202
--- no_error_log
[alert]



=== TEST 6: a restarted Valkey loading its data: POST /chat 503 valkey_loading, Retry-After
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_LOAD_PORT;
--- init
main::load_start();
--- request
POST /chat?query=x
--- error_code: 503
--- response_headers_like
Retry-After: \d+
--- response_body_like chomp
"code":"valkey_loading"
--- error_log
LOADING
--- no_error_log
[alert]



=== TEST 7: ... and GET /job-status too
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_LOAD_PORT;
--- request eval
"GET /job-status?job_id=$::Queued"
--- error_code: 503
--- response_body_like chomp
"code":"valkey_loading"
--- no_error_log
[alert]



=== TEST 8: ... the job written before the restart is read once the data is loaded
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_LOAD_PORT;
--- init
main::load_end();
--- request eval
"GET /job-status?job_id=$::Queued"
--- error_code: 200
--- response_body_like chomp
"status":"queued"
--- no_error_log
[alert]
