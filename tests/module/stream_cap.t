# A started GET /job-stream whose sync is refused because the worker's
# commands in flight are at their cap (16,384: the command connection is
# healthy, only slow) gets its sync later: the job's final event came while
# the cap was reached, and the stream still ends with done once Valkey
# answers again (its heartbeat tries the sync again; ready() never comes,
# the connection did not drop). Ragq::SlowProxy stalls only the command
# connection (what nginx sends on it is held, pub/sub flows); pipelined
# GET /job-status requests with a 10 ms ragq_valkey_timeout pile up in
# flight until nginx answers "overloaded". Before the fix the stream sent
# ": keep-alive" forever.
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::SlowProxy;
use Ragq::Sse qw(send_get read_all read_until parse events kinds_of numsub wait_until);
use IO::Socket::INET ();
use JSON::PP;
use Time::HiRes ();

our $Proxy = Ragq::SlowProxy->start(to => $ENV{TEST_NGINX_REDIS_PORT}, rate => 1 << 24);
$ENV{TEST_NGINX_PROXY_PORT} = $Proxy->port;

master_on();
workers(1);
worker_connections(1024);
no_shuffle();
no_long_string();

our $Id = '0000000000000000000000000000ca01';     # streamed, finished in the stall
our $Id2 = '0000000000000000000000000000ca02';    # streamed, gets a piece in the stall
our $Flood = '0000000000000000000000000000ca03';  # read by the flood

sub seed {
    my ($id, @fields) = @_;
    Ragq::Valkey::cmd('DEL', "sc:job:$id", "sc:out:$id");
    Ragq::Valkey::cmd('HSET', "sc:job:$id", query => 'q', tenant => '',
        created_at => '1', attempts => '1', @fields);
}

# $conns keep-alive connections, $n GET /job-status each, all written at
# once; the status codes and error codes of the answers, counted.
sub flood {
    my ($conns, $n) = @_;
    my $req = "GET /job-status?job_id=$::Flood HTTP/1.1\r\nHost: localhost\r\n";
    my @socks;
    for (1 .. $conns) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => main::server_port(), Proto => 'tcp') or die "connect: $!";
        syswrite $s, "$req\r\n" x ($n - 1) . "${req}Connection: close\r\n\r\n";
        push @socks, $s;
    }
    my %seen;
    for my $raw (main::read_all(@socks)) {
        $seen{$1}++ while $raw =~ m{^HTTP/1\.1 (\d+) }mg;
        $seen{$1}++ while $raw =~ m{"code":"(\w+)"}g;
    }
    return \%seen;
}

plan tests => 10;
run_tests();

__DATA__

=== TEST 1: the final event comes while the commands in flight are at their cap: the stream still ends with done (the heartbeat syncs again)
--- log_level: warn
--- main_config
worker_rlimit_nofile 4096;
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_PROXY_PORT;
ragq_valkey_timeout 60s;
--- config
access_log off;
keepalive_requests 100000;
location = /job-stream { ragq_prefix sc; ragq_stream_heartbeat 1s; ragq_stream; }
location = /job-status { ragq_prefix sc; ragq_valkey_timeout 10ms; ragq_status; }
location = /read/job-status { ragq_prefix sc; ragq_status; }
--- init
main::seed($::Id, status => 'started');
main::seed($::Id2, status => 'started');
Ragq::Valkey::cmd('DEL', "sc:job:$::Flood");
main::wait_until('the events subscription', sub { main::numsub('sc:events') >= 1 });
my $s = main::send_get("/job-stream?job_id=$::Id");
my $s2 = main::send_get("/job-stream?job_id=$::Id2");
my $t = main::read_until($s, sub { $_[0] =~ /"status":"started"/ });
main::read_until($s2, sub { $_[0] =~ /"status":"started"/ });
main::wait_until('the job subscriptions',
    sub { main::numsub("sc:out:$::Id") == 1 && main::numsub("sc:out:$::Id2") == 1 });
$main::Proxy->stall_commands;
# 200 connections x 100: each request waits 10 ms, its read stays in flight
my $seen = main::flood(200, 100);
Test::More::cmp_ok($seen->{overloaded} // 0, '>', 0,
    "the cap was reached: 503 overloaded ($seen->{overloaded}), "
    . "after 503 valkey_timeout (" . ($seen->{valkey_timeout} // 0) . ")");
# the job ends while no sync can be sent
Ragq::Valkey::cmd('HSET', "sc:job:$::Id", status => 'finished', result => 'the answer');
Ragq::Valkey::cmd('PUBLISH', 'sc:events', "$::Id finished");
# the same pub/sub connection, in order: once this piece is out, the
# event above has been handled (its sync refused)
Ragq::Valkey::cmd('XADD', "sc:out:$::Id2", '0-1', 't', 'x', 'a', '1');
Ragq::Valkey::cmd('PUBLISH', "sc:out:$::Id2", '1:t:1:x');
Test::More::like(main::read_until($s2, sub { $_[0] =~ /id: 1\n/ }), qr/id: 1\n/,
    'the pub/sub connection flows during the stall');
my $t0 = Time::HiRes::time();
$main::Proxy->unstall_commands;
$t .= main::read_until($s, sub { $_[0] =~ /event: done\ndata: [^\n]*\n\n/ });
my $took = Time::HiRes::time() - $t0;
close $s;
close $s2;
my (undef, undef, $body) = main::parse($t);
my ($ev) = main::events($body);
Test::More::is(main::kinds_of($ev), 'status,done', 'the stream: status, then done');
my $done = eval { JSON::PP->new->decode($ev->[-1]{data} // '') } // {};
Test::More::is($done->{status}, 'finished', 'done: finished');
Test::More::is($done->{result}, 'the answer', 'done: the result');
Test::More::cmp_ok($took, '<', 5,
    sprintf('done within 5 s of the end of the stall (heartbeat 1 s): %.1f s', $took));
Test::More::ok(main::wait_until('the unsubscribe', sub { main::numsub("sc:out:$::Id") == 0 }),
    'no subscription left');
--- request eval
"GET /read/job-status?job_id=$::Id"
--- response_body_like: "status":"finished"
--- no_error_log
[alert]
