# Graceful reload (HUP) and graceful shutdown (QUIT) while requests wait on
# Valkey: the old worker answers them (202) before it exits, closes its
# Valkey connection itself (no "open socket ... left" alert), and the new
# workers serve.
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::ValkeyHA;
use Ragq::Sse qw(send_get read_all read_until parse wait_until);
use Ragq::Proc qw(nginx_master_pid);
use POSIX ();
use Time::HiRes ();

master_on();
workers(1);
no_shuffle();

our $Queued = qr/^\{"status":"queued","job_id":"([0-9a-f]{32})","status_url":"\/job-status\?job_id=\1"\}$/;

# Holds every Valkey reply for $ms, and sends $sig to the nginx master
# $after seconds from now, while the block's request waits.
sub signal_while_paused {
    my ($sig, $after, $ms) = @_;
    my $pidfile = server_root() . '/logs/nginx.pid';
    open my $fh, '<', $pidfile or die "$pidfile: $!";
    my $master = <$fh>;
    chomp $master;
    Ragq::Valkey::cmd('CLIENT', 'PAUSE', $ms, 'ALL');
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        select(undef, undef, undef, $after);
        kill $sig, $master;
        POSIX::_exit(0);
    }
}

# A server of our own, to stall (SIGSTOP) or kill under nginx.
our $HA = Ragq::ValkeyHA->new;
our $V = $HA->server;
$ENV{TEST_NGINX_OWN_PORT} = $V->port;
our $Id = '0000000000000000000000000000c001';

# A job of our server, started: a long-poll on it waits, a stream stays open.
sub seed_started {
    $main::V->cli('DEL', "sd:job:$main::Id", "sd:out:$main::Id");
    $main::V->cli('HSET', "sd:job:$main::Id", 'query', 'q', 'tenant', '',
        'created_at', '1', 'attempts', '1', 'status', 'started');
    wait_until('the events subscription', sub { Ragq::Sse::numsub('sd:events', $main::V) >= 1 });
}

# The sanitizer reports written so far (RAGQ_ASAN=1 runs; tests/asan-nginx).
sub san_reports {
    my $dir = $ENV{RAGQ_SAN_DIR} or return ();
    return grep { -s $_ } glob("$dir/asan.*"), glob("$dir/ubsan.*");
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'EOF2') unless defined $block->http_config;
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 3s;
EOF2
    $block->set_value('config', <<'EOF2') unless defined $block->config;
location = /chat { ragq_prefix lc; ragq_enqueue; }
EOF2
});

plan tests => 46;
run_tests();

__DATA__

=== TEST 1: reload (HUP) with a request in flight: answered, then the old worker exits cleanly
--- init
main::signal_while_paused('HUP', 0.2, 700);
--- request
POST /chat?query=during-reload
--- error_code: 202
--- response_body_like eval
$::Queued
--- wait: 0.5
--- error_log
reconfiguring
gracefully shutting down
--- no_error_log
[alert]
[error]
open socket
--- no_shutdown_error_log
[alert]
open socket



=== TEST 2: ... the reloaded worker serves
--- request eval
["POST /chat?query=after-reload", "POST /chat?query=again"]
--- error_code eval
[202, 202]
--- response_body_like eval
[$::Queued, $::Queued]
--- no_shutdown_error_log
[alert]
open socket



=== TEST 3: shutdown (QUIT) with a request in flight: answered before the worker exits
--- init
main::signal_while_paused('QUIT', 0.2, 700);
--- request
POST /chat?query=during-quit
--- error_code: 202
--- response_body_like eval
$::Queued
--- wait: 0.5
--- error_log
gracefully shutting down
exit
--- no_error_log
[alert]
open socket
--- no_shutdown_error_log
[alert]
open socket



=== TEST 4: worker_shutdown_timeout while Valkey hangs, with a long-poll's read and a stream's sync pending: both answered 503 when the timeout closes the Valkey connection, no use of the freed reads (ASan), the worker exits normally
--- main_config
worker_shutdown_timeout 1s;
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_OWN_PORT;
ragq_valkey_timeout 5s;
--- config
location = /job-status { ragq_prefix sd; ragq_max_wait 30s; ragq_status; }
location = /job-stream { ragq_prefix sd; ragq_stream; }
--- init
main::seed_started();
my @before = main::san_reports();
my $lp = main::send_get("/job-status?job_id=$::Id&wait=30");
my $a = main::send_get("/job-stream?job_id=$::Id");
my $ra0 = main::read_until($a, sub { $_[0] =~ /"status":"started"/ });
Time::HiRes::sleep(0.2);
$::V->pause;
# its sync goes out (the job's subscription is in effect), unanswered
my $b = main::send_get("/job-stream?job_id=$::Id");
Time::HiRes::sleep(0.3);
my $t0 = Time::HiRes::time();
kill 'HUP', main::nginx_master_pid();
# the graceful shutdown ends the started stream at once and reads the
# long-poll's job; Valkey answers neither that read nor the new stream's sync
my ($rl, $ra, $rb) = main::read_all($lp, $a, $b);
my $t = Time::HiRes::time() - $t0;
$::V->resume;
Time::HiRes::sleep(0.5);
my ($cl, undef, $bl) = main::parse($rl);
my ($ca, undef, $ba) = main::parse($ra0 . $ra);
my ($cb, undef, $bb) = main::parse($rb);
Test::More::ok($cl == 503 && $bl =~ /"valkey_unavailable"/, "the long-poll: 503 valkey_unavailable ($cl $bl)");
Test::More::ok($ca == 200 && $ba =~ /retry: 1000\n\n\z/, "the started stream: retry: ($ca)");
Test::More::ok($cb == 503 && $bb =~ /"valkey_unavailable"/, "the stream whose sync was pending: 503 ($cb $bb)");
Test::More::cmp_ok($t, '<', 4, "all answered by the shutdown timeout ($t s)");
my %old = map { $_ => 1 } @before;
my @new = grep { !$old{$_} } main::san_reports();
Test::More::is(join(' ', @new), '', 'no sanitizer report');
for my $f (@new) {
    open my $fh, '<', $f or next;
    Test::More::diag(join '', grep { defined } (<$fh>)[0 .. 12]);
}
--- request eval
"GET /job-status?job_id=$::Id"
--- response_body_like: "status":"started"
--- error_log
gracefully shutting down
--- no_error_log eval
[qr/exited on signal/, qr/exited with code [1-9]/, '[alert]', 'open socket']



=== TEST 5: reload (HUP) while Valkey is unreachable (the pub/sub connection in its reconnect backoff, no socket for nginx to close): the long-poll is answered at once, the stream ends with retry:, the old worker exits at once
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_OWN_PORT;
ragq_valkey_timeout 2s;
--- config
location = /job-status { ragq_prefix sd; ragq_max_wait 30s; ragq_status; }
location = /job-stream { ragq_prefix sd; ragq_stream; }
--- init
main::seed_started();
my $lp = main::send_get("/job-status?job_id=$::Id&wait=20");
my $a = main::send_get("/job-stream?job_id=$::Id");
my $ra0 = main::read_until($a, sub { $_[0] =~ /"status":"started"/ });
Time::HiRes::sleep(0.2);
$::V->kill;
# both connections lost, every reconnect refused: the backoff
Time::HiRes::sleep(1.5);
my $log = server_root() . '/logs/error.log';
my $t0 = Time::HiRes::time();
kill 'HUP', main::nginx_master_pid();
my ($rl, $ra) = main::read_all($lp, $a);
my $t = Time::HiRes::time() - $t0;
my $exited = main::wait_until('the old worker to exit', sub {
    open my $fh, '<', $log or return 0;
    return scalar grep { /worker process \d+ exited/ } <$fh>;
});
my $te = Time::HiRes::time() - $t0;
$::V->start;
main::seed_started();
my ($cl, undef, $bl) = main::parse($rl);
my ($ca, undef, $ba) = main::parse($ra0 . $ra);
Test::More::ok($cl == 503 && $bl =~ /"valkey_unavailable"/, "the long-poll: 503 valkey_unavailable ($cl $bl)");
Test::More::ok($ca == 200 && $ba =~ /retry: 1000\n\n\z/, "the stream: retry: ($ca)");
Test::More::cmp_ok($t, '<', 2, "both answered at once ($t s)");
Test::More::ok($exited && $te < 3, "the old worker exited at once ($te s)");
--- request eval
"GET /job-status?job_id=$::Id"
--- response_body_like: "status":"started"
--- error_log
gracefully shutting down
--- no_error_log eval
[qr/exited on signal/, qr/exited with code [1-9]/, '[alert]', 'open socket']
