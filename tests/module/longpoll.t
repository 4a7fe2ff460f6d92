# GET /job-status?wait=N long-polls: woken by the worker's HSET + PUBLISH
# (simulated from a forked child), a non-final event does not end the wait,
# timeouts answer the current state, ragq_max_wait caps N, 50 waiters on
# one job, prefixes kept apart, client aborts, a Valkey restart (catch-up
# after resubscribe), graceful shutdown with a waiter held (answered, no
# open socket), and the answers that never wait (final, 404, bad wait).
# Elapsed times are measured and asserted with generous bounds only.
use Test::Nginx::Socket;
use Ragq::Valkey;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

master_on();
workers(2);
worker_connections(256);
no_shuffle();
no_long_string();

our $Id = '0000000000000000000000000000a001';
our $Id2 = '0000000000000000000000000000a002';
our @Kids;

sub seed {
    my ($prefix, $id, @fields) = @_;
    Ragq::Valkey::cmd('DEL', "$prefix:job:$id");
    Ragq::Valkey::cmd('HSET', "$prefix:job:$id", query => 'q', tenant => '',
        created_at => '1', attempts => '0', @fields);
}

# Every nginx worker has confirmed its subscription to each channel (a wait
# that arrives earlier is answered at once, by design).
sub subscribed {
    my @channels = @_ ? @_ : ('lp:events');
    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline) {
        my @r = Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', @channels);
        my $ok = 1;
        for (my $i = 1; $i < @r; $i += 2) { $ok = 0 if $r[$i] < workers() }
        return if $ok && @r;
        Time::HiRes::sleep(0.02);
    }
    die "nginx workers did not subscribe to @channels\n";
}

# What the worker does on a status change: write the state, then publish.
# Each step is [delay, prefix, id, status]; run from a child after delays.
sub worker_later {
    my @steps = @_;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        for my $s (@steps) {
            my ($delay, $prefix, $id, $status, $publish_on) = @$s;
            Time::HiRes::sleep($delay);
            Ragq::Valkey::cmd('HSET', "$prefix:job:$id", status => $status);
            Ragq::Valkey::cmd('PUBLISH', ($publish_on // $prefix) . ':events',
                "$id $status");
        }
        POSIX::_exit(0);
    }
    push @Kids, $pid;
}

sub reap { waitpid($_, 0) for @Kids; @Kids = () }

# Sends GET $path on a fresh connection; returns the socket.
sub send_get {
    my ($path, $headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => server_port(), Proto => 'tcp') or die "connect: $!";
    syswrite $s, "GET $path HTTP/1.1\r\nHost: localhost\r\n"
      . ($headers // '') . "Connection: close\r\n\r\n";
    return $s;
}

# Reads every socket's response until it closes; returns them in order.
sub read_all {
    my @socks = @_;
    my (%buf, %idx);
    @idx{ map { fileno $_ } @socks } = 0 .. $#socks;
    my $sel = IO::Select->new(@socks);
    my $deadline = time + 20;
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(0.5)) {
            my $n = sysread $s, my $chunk, 65536;
            if ($n) {
                $buf{ $idx{ fileno $s } } .= $chunk;
            } else {
                $sel->remove($s);
                close $s;
            }
        }
    }
    return map { $buf{$_} // '' } 0 .. $#socks;
}

# GET with the time it took: (status, body, seconds).
sub timed_get {
    my ($path, $headers) = @_;
    my $t0 = Time::HiRes::time();
    my ($resp) = read_all(send_get($path, $headers));
    my $elapsed = Time::HiRes::time() - $t0;
    my ($code) = $resp =~ m{^HTTP/1\.1 (\d+)};
    my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
    return ($code // 0, $body // '', $elapsed);
}

sub status_of { my ($body) = @_; return $body =~ /"status":"(\w+)"/ ? $1 : '' }

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'EOF') unless defined $block->http_config;
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 2s;
EOF
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /job-status { ragq_prefix lp; ragq_status; }
location = /lp2/job-status { ragq_prefix lp2; ragq_status; }
location = /short/job-status { ragq_prefix lp; ragq_max_wait 1; ragq_status; }
location = /off/job-status { ragq_prefix lp; ragq_max_wait 0; ragq_status; }
location = /t/job-status {
    ragq_prefix lp; ragq_tenant $http_x_tenant; ragq_status;
}
EOF
    $block->set_value('no_error_log', "[error]\n[alert]\n")
      unless defined $block->no_error_log;
});

plan tests => 96;
run_tests();

__DATA__

=== TEST 1: an event wakes the wait as soon as it is published (wait=10)
--- init
main::seed('lp', $::Id, status => 'queued');
main::subscribed('lp:events', 'lp2:events');
main::worker_later([0.4, 'lp', $::Id, 'finished']);
my ($code, $body, $t) = main::timed_get("/job-status?job_id=$::Id&wait=10");
main::reap();
Test::More::is($code, 200, 'woken: 200');
Test::More::is(main::status_of($body), 'finished', 'woken with the final state');
Test::More::cmp_ok($t, '>=', 0.3, "it waited for the event ($t s)");
Test::More::cmp_ok($t, '<', 5, "answered well before the wait ended ($t s)");
--- request eval
"GET /job-status?job_id=$::Id&wait=0"
--- response_body_like: "status":"finished"



=== TEST 2: no event: after N seconds the current (queued) state, and no polling meanwhile
--- init
main::seed('lp', $::Id, status => 'queued');
main::subscribed();
Ragq::Valkey::cmd('CONFIG', 'RESETSTAT');
my ($code, $body, $t) = main::timed_get("/job-status?job_id=$::Id&wait=1");
my ($calls) = Ragq::Valkey::cmd('INFO', 'commandstats') =~ /cmdstat_hgetall:calls=(\d+)/;
Test::More::is($calls, 2, 'no busy polling: one read to start, one at the end');
Test::More::is($code, 200, 'timed out: 200');
Test::More::is(main::status_of($body), 'queued', 'with the current state');
Test::More::cmp_ok($t, '>=', 0.9, "after the wait ($t s)");
Test::More::cmp_ok($t, '<', 3, "not much later ($t s)");
--- request eval
"GET /job-status?job_id=$::Id"
--- response_body_like: "status":"queued"



=== TEST 3: ragq_max_wait caps N (wait=30 under ragq_max_wait 1), fractions work
--- init
main::seed('lp', $::Id, status => 'queued');
main::subscribed();
my ($code, $body, $t) = main::timed_get("/short/job-status?job_id=$::Id&wait=30");
Test::More::is($code, 200, 'capped: 200');
Test::More::is(main::status_of($body), 'queued', 'capped: current state');
Test::More::cmp_ok($t, '<', 3, "capped at 1 s ($t s)");
($code, $body, $t) = main::timed_get("/job-status?job_id=$::Id&wait=0.3");
Test::More::cmp_ok($t, '>=', 0.25, "wait=0.3 waits ($t s)");
Test::More::cmp_ok($t, '<', 2, "wait=0.3 is not rounded up to seconds ($t s)");
--- request eval
"GET /off/job-status?job_id=$::Id&wait=30"
--- timeout: 2
--- response_body_like: "status":"queued"



=== TEST 4: a non-final event (started) does not end the wait; the final one does
--- init
main::seed('lp', $::Id, status => 'queued');
main::subscribed();
main::worker_later([0.2, 'lp', $::Id, 'started'], [1.0, 'lp', $::Id, 'failed']);
my ($code, $body, $t) = main::timed_get("/job-status?job_id=$::Id&wait=10");
main::reap();
Test::More::is(main::status_of($body), 'failed', 'answered with the final state');
Test::More::cmp_ok($t, '>=', 1.0, "not ended by 'started' ($t s)");
Test::More::cmp_ok($t, '<', 5, "ended by 'failed' ($t s)");
--- request eval
"GET /job-status?job_id=$::Id"
--- response_body_like: "status":"failed"



=== TEST 5: 50 concurrent waiters on one job (two nginx workers): all answered by one event
--- init
main::seed('lp', $::Id, status => 'started');
main::subscribed();
my @socks = map { main::send_get("/job-status?job_id=$::Id&wait=10") } 1 .. 50;
my $t0 = Time::HiRes::time();
main::worker_later([0.6, 'lp', $::Id, 'finished']);
my @resp = main::read_all(@socks);
my $t = Time::HiRes::time() - $t0;
main::reap();
Test::More::is(scalar(grep { m{^HTTP/1\.1 200 } && /"status":"finished"/ } @resp),
    50, '50 answers, each 200 with the finished job');
Test::More::cmp_ok($t, '<', 5, "all answered well before the wait ended ($t s)");
--- request eval
"GET /job-status?job_id=$::Id"
--- response_body_like: "status":"finished"



=== TEST 6: prefixes are kept apart: an event on lp:events does not wake an lp2 waiter
--- init
main::seed('lp2', $::Id2, status => 'queued');
main::seed('lp', $::Id2, status => 'queued');
main::subscribed('lp:events', 'lp2:events');
main::worker_later([0.2, 'lp', $::Id2, 'finished'], [0.8, 'lp2', $::Id2, 'canceled']);
my ($code, $body, $t) = main::timed_get("/lp2/job-status?job_id=$::Id2&wait=10");
main::reap();
Test::More::is(main::status_of($body), 'canceled', 'woken by its own prefix');
Test::More::cmp_ok($t, '>=', 0.9, "not by the other prefix's event ($t s)");
Test::More::cmp_ok($t, '<', 5, "answered well before the wait ended ($t s)");
--- request eval
"GET /lp2/job-status?job_id=$::Id2"
--- response_body_like: "status":"canceled"



=== TEST 7: a waiter whose client leaves: no crash, no alert; the later event is fine
--- init
main::seed('lp', $::Id, status => 'queued');
main::subscribed();
my $s = main::send_get("/job-status?job_id=$::Id&wait=10");
Time::HiRes::sleep(0.3);
close $s;
Time::HiRes::sleep(0.2);
Ragq::Valkey::cmd('HSET', "lp:job:$::Id", status => 'finished');
Ragq::Valkey::cmd('PUBLISH', 'lp:events', "$::Id finished");
Time::HiRes::sleep(0.2);
--- request eval
"GET /job-status?job_id=$::Id&wait=5"
--- timeout: 2
--- response_body_like: "status":"finished"
--- error_log
client prematurely closed connection
--- no_error_log
[error]
[alert]



=== TEST 8: Valkey restarted while a waiter holds: it is answered after the catch-up
--- init
main::seed('lp', $::Id, status => 'queued');
main::subscribed();
my $t0 = Time::HiRes::time();
my $s = main::send_get("/job-status?job_id=$::Id&wait=12");
Time::HiRes::sleep(0.3);
# the job finishes while nginx is not listening: no PUBLISH reaches it
# (written to disk so that it survives the restart)
Ragq::Valkey::cmd('HSET', "lp:job:$::Id", status => 'finished');
Ragq::Valkey::cmd('SAVE');
Ragq::Valkey::restart();
my ($resp) = main::read_all($s);
my $t = Time::HiRes::time() - $t0;
my %cfg = Ragq::Valkey::cmd_list('CONFIG', 'GET', 'dir');
unlink "$cfg{dir}/dump.rdb";
Test::More::like($resp, qr{^HTTP/1\.1 200 .*"status":"finished"}s,
    'answered with the state reached during the outage');
Test::More::cmp_ok($t, '<', 8, "well before its wait ended ($t s)");
# the command connection may still be in its reconnect backoff (503 +
# Retry-After is the documented answer meanwhile): the request below is
# about the state read after the restart, not about how soon
my $deadline = Time::HiRes::time() + 5;
while (Time::HiRes::time() < $deadline) {
    my ($code) = main::timed_get("/job-status?job_id=$::Id");
    last if $code != 503;
    Time::HiRes::sleep(0.1);
}
--- request eval
"GET /job-status?job_id=$::Id&wait=3"
--- timeout: 2
--- response_body_like: "status":"finished"
--- error_log
ragq: valkey pub/sub connection lost
ragq: valkey pub/sub connection restored
--- no_error_log
[alert]



=== TEST 9: a job already final answers at once; so do 404s and bad input
--- init
main::seed('lp', $::Id, status => 'finished', result => 'done');
main::seed('lp', $::Id2, status => 'queued', tenant => 'alice');
Ragq::Valkey::cmd('DEL', 'lp:job:0000000000000000000000000000dead');
main::subscribed();
my ($code, $body, $t) = main::timed_get("/job-status?job_id=$::Id&wait=10");
Test::More::ok($code == 200 && main::status_of($body) eq 'finished', 'final: 200 finished');
Test::More::cmp_ok($t, '<', 2, "final: at once ($t s)");
($code, $body, $t) = main::timed_get("/t/job-status?job_id=$::Id2&wait=10", "X-Tenant: bob\r\n");
Test::More::ok($code == 404 && $body =~ /"job_not_found"/, "other tenant: 404 ($code)");
Test::More::cmp_ok($t, '<', 2, "other tenant: at once ($t s)");
($code, $body, $t) = main::timed_get("/job-status?job_id=0000000000000000000000000000dead&wait=10");
Test::More::ok($code == 404 && $body =~ /"job_not_found"/, "unknown: 404 ($code)");
Test::More::cmp_ok($t, '<', 2, "unknown: at once ($t s)");
--- request eval
["GET /job-status?job_id=$::Id&wait=-1", "GET /job-status?job_id=$::Id&wait=abc",
 "GET /job-status?job_id=$::Id&wait=", "GET /job-status?job_id=$::Id&wait=1e3",
 "GET /job-status?job_id=$::Id&wait=.", "GET /t/job-status?job_id=$::Id2&wait=2"]
--- more_headers eval
["", "", "", "", "", "X-Tenant: alice"]
--- timeout: 4
--- error_code eval
[400, 400, 400, 400, 400, 200]
--- response_body_like eval
[qr/^\{"error":\{"code":"invalid_wait","message":"wait must be a number of seconds, e.g. wait=30 \(at most 30 is used\)"\}\}$/,
 qr/"invalid_wait"/, qr/"invalid_wait"/, qr/"invalid_wait"/, qr/"invalid_wait"/,
 qr/"status":"queued"/]



=== TEST 10: graceful shutdown (QUIT) with a waiter held: answered with the current state at once, no open socket
--- init
main::seed('lp', $::Id, status => 'started');
main::subscribed();
my $pidfile = server_root() . '/logs/nginx.pid';
open my $fh, '<', $pidfile or die "$pidfile: $!";
my $master = <$fh>;
chomp $master;
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    Time::HiRes::sleep(0.4);
    kill 'QUIT', $master;
    POSIX::_exit(0);
}
push @main::Kids, $pid;
--- request eval
"GET /job-status?job_id=$::Id&wait=20"
--- timeout: 3
--- response_body_like: "status":"started"
--- wait: 0.3
--- error_log
gracefully shutting down
--- no_error_log
[error]
[alert]
open socket
--- no_shutdown_error_log
[alert]
open socket
