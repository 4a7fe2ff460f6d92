# The Valkey side of the module: outages (stopped, then restarted: nginx
# recovers by itself), a hung server (SIGSTOP longer than
# ragq_valkey_timeout: 503 + Retry-After, recovery after SIGCONT), a client
# that leaves before the reply, AUTH/SELECT plus unix sockets against a
# second, password-protected redis-server started by this file, and the
# connect_timeout= parameter against a server that never answers.
BEGIN {
    # consecutive blocks with the same config share one nginx, so recovery
    # is observed inside one running instance (Test::Nginx then restarts
    # nginx only when --- config changes: see the preprocessor below)
    $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0;

    require IO::Socket::INET;
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 1) or die "no free port: $!";
    $ENV{TEST_NGINX_AUTH_REDIS_PORT} = $s->sockport;
    close $s;
    $ENV{TEST_NGINX_AUTH_REDIS_DIR} = "/tmp/ragq-auth-redis-$$";
    mkdir $ENV{TEST_NGINX_AUTH_REDIS_DIR};

    # a "server" that completes TCP handshakes (the kernel's backlog) but
    # never answers: a connect that hangs in the handshake
    $main::Silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => 0, Proto => 'tcp', Listen => 64) or die "listen: $!";
    $ENV{TEST_NGINX_SILENT_PORT} = $main::Silent->sockport;
}

use Test::Nginx::Socket;
use Ragq::Valkey;

our $AuthDir = $ENV{TEST_NGINX_AUTH_REDIS_DIR};
our $AuthPort = $ENV{TEST_NGINX_AUTH_REDIS_PORT};

system('redis-server', '--bind', '127.0.0.1', '--port', $AuthPort,
    '--requirepass', 's3cret', '--unixsocket', "$AuthDir/redis.sock",
    '--unixsocketperm', '700', '--daemonize', 'yes', '--save', '',
    '--appendonly', 'no', '--dir', $AuthDir, '--pidfile', "$AuthDir/redis.pid",
    '--logfile', "$AuthDir/redis.log") == 0 or die "auth redis-server failed";

sub auth_cmd {
    my $out = `redis-cli -h 127.0.0.1 -p $AuthPort -a s3cret --no-auth-warning --raw @_`;
    chomp $out;
    return $out;
}

for (1 .. 100) {
    last if auth_cmd('PING') eq 'PONG';
    select(undef, undef, undef, 0.05);
}

END {
    if (open my $fh, '<', "$AuthDir/redis.pid") {
        my $pid = <$fh>;
        chomp $pid;
        kill 'TERM', $pid if $pid;
        for (1 .. 100) {
            last unless kill 0, $pid;
            select(undef, undef, undef, 0.05);
        }
    }
    system('rm', '-rf', $AuthDir);
}

no_shuffle();
no_long_string();

our $Queued = qr/^\{"status":"queued","job_id":"([0-9a-f]{32})","status_url":"\/job-status\?job_id=\1"\}$/;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'EOF') unless defined $block->http_config;
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 300ms;
EOF
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix vk; ragq_enqueue; }
location = /job-status { ragq_prefix vk; ragq_status; }
EOF
    # Test::Nginx compares only --- config to decide on a restart: a block
    # whose http_config differs from the one before gets a new nginx because
    # its config carries the http_config (as a comment).
    (my $http = $block->http_config) =~ s/\s*\n\s*/ /g;
    $block->set_value('config', $block->config . "# http_config: $http\n");
});

plan tests => 60;
run_tests();

__DATA__

=== TEST 1: healthy
--- request
POST /chat?query=up
--- error_code: 202
--- response_body_like eval
$::Queued
--- no_error_log
[error]
[alert]



=== TEST 2: Valkey stopped: 503 + Retry-After, at once
--- init
Ragq::Valkey::stop();
--- request
POST /chat?query=down
--- error_code: 503
--- response_headers
Retry-After: 1
Content-Type: application/json
--- response_body_like chomp
^\{"error":\{"code":"valkey_unavailable","message":"[^"]+"\}\}$
--- error_log
ragq: valkey connection lost
--- no_error_log
[alert]



=== TEST 3: ... /job-status too
--- request
GET /job-status?job_id=00000000000000000000000000000000
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like chomp
"valkey_unavailable"
--- no_error_log
[alert]



=== TEST 3b: Valkey back: the same nginx reconnects by itself
--- init
Ragq::Valkey::start();
select(undef, undef, undef, 1.5);
--- request
POST /chat?query=back
--- error_code: 202
--- response_body_like eval
$::Queued
--- error_log
ragq: valkey connection restored
--- no_error_log
[alert]



=== TEST 4: Valkey hung (SIGSTOP) longer than ragq_valkey_timeout: 503 + Retry-After
--- init
Ragq::Valkey::pause();
--- request
POST /chat?query=hung
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like chomp
"valkey_timeout"
--- error_log eval
qr/ragq: valkey (did not answer within 300 ms|sent no reply for \d+ ms with \d+ commands pending)/
--- no_error_log
[alert]



=== TEST 4b: ... /job-status too (timeout, or unavailable while reconnecting)
--- request
GET /job-status?job_id=00000000000000000000000000000000
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like chomp
"valkey_(timeout|unavailable)"
--- no_error_log
[alert]



=== TEST 5: ... after SIGCONT it serves again
--- init
Ragq::Valkey::resume();
select(undef, undef, undef, 1.5);
--- request eval
["POST /chat?query=resumed", "POST /chat?query=resumed"]
--- error_code eval
[202, 202]
--- response_body_like eval
[$::Queued, $::Queued]
--- no_error_log
[alert]



=== TEST 6: a client that leaves before the reply: no crash, no alert
(a timeout far above the pause: the watchdog must not take a loaded
machine's slow reply for a hung server here)
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 5s;
--- init
Ragq::Valkey::cmd('CLIENT', 'PAUSE', '400', 'ALL');
--- request
POST /chat?query=gone
--- timeout: 0.1
--- abort
--- ignore_response
--- wait: 1
--- error_log
client prematurely closed connection
--- no_error_log
[alert]
[error]



=== TEST 7: ... the worker still serves, and the abandoned job was stored (at-least-once)
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 5s;
--- init
my $stored = 0;
for (1 .. 100) {
    $stored = 1 if Ragq::Valkey::jobs_with_query('vk', 'gone');
    last if $stored;
    select(undef, undef, undef, 0.05);
}
Test::More::ok($stored, 'the job of the client that left is stored');
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'vk:*'), 'x');
--- request
POST /chat?query=after
--- error_code: 202
--- response_body_like eval
$::Queued
--- no_error_log
[alert]



=== TEST 8: AUTH + SELECT
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_AUTH_REDIS_PORT password=s3cret db=3;
--- init
main::auth_cmd('-n', 3, 'FLUSHDB');
--- request
POST /chat?query=authed
--- error_code: 202
--- response_body_like eval
$::Queued
--- no_error_log
[error]
[alert]



=== TEST 9: ... the job is in database 3; unix socket with password works too
--- http_config
ragq_valkey unix:$TEST_NGINX_AUTH_REDIS_DIR/redis.sock password=s3cret db=3;
--- init
Test::More::is(main::auth_cmd('-n', 3, 'XLEN', 'vk:jobs'), '1', 'one job in db 3');
Test::More::is(main::auth_cmd('-n', 0, 'DBSIZE'), '0', 'nothing in db 0');
--- request
POST /chat?query=unix
--- error_code: 202
--- response_body_like eval
$::Queued
--- no_error_log
[error]
[alert]



=== TEST 10: a wrong password: 500 valkey_denied (retrying will not help), and the reason is logged
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_AUTH_REDIS_PORT password=wrong;
--- request
POST /chat?query=x
--- error_code: 500
--- response_body_like chomp
"valkey_denied"
--- error_log
ragq: valkey AUTH failed: WRONGPASS
--- no_error_log
[alert]



=== TEST 11: connect_timeout= bounds the connect + handshake, apart from ragq_valkey_timeout
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_SILENT_PORT connect_timeout=200ms;
ragq_valkey_timeout 5s;
--- request
POST /chat?query=x
--- error_code: 503
--- response_body_like chomp
"valkey_(timeout|unavailable)"
--- error_log
ragq: valkey connect timed out after 200 ms
--- no_error_log
[alert]



=== TEST 12: a bad connect_timeout fails the configuration
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=soon;
--- must_die
--- error_log
invalid connect timeout "connect_timeout=soon"
