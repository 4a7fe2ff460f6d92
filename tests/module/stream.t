# GET /job-stream (ragq_stream): Server-Sent Events of a job's answer
# pieces. The worker's side is simulated (XADD P:out:ID 0-N + PUBLISH of the
# batch, HSET + PUBLISH on P:events), so every case is exact: a finished
# job's pieces concatenate to its result and end with done; resume from
# every Last-Event-ID (header and query argument) returns exactly the rest;
# live pieces arrive by pub/sub, a missed batch is read from the stream (no
# gap, no duplicate), a reset entry is an event; status events; heartbeats;
# a client that leaves leaves no subscription (PUBSUB NUMSUB 0); a Valkey
# restart mid-stream; graceful shutdown and reload end streams with retry:
# (after a reload the client resumes with last_event_id, nothing lost); errors as
# JSON before any event; the ragq_streams gauge; 1,000 streams on one
# nginx worker; a POST /job-cancel (the real cancel script) ends an open
# stream with done, canceled. The real worker's streams: tests/worker/stream_nginx.t.
use utf8;
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Sse qw(send_get send_post read_all read_until parse events text_of ids_of kinds_of
                 numsub wait_until);
use Ragq::Proc qw(nginx_worker_pids rss_kb);
use JSON::PP;
use Encode qw(encode_utf8);
use POSIX ();
use Time::HiRes ();
use IO::Select;
use Socket qw(PF_INET SOCK_STREAM SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);

master_on();
workers(1);
worker_connections(4096);
no_shuffle();
no_long_string();

our $Id = '0000000000000000000000000000b001';
our $Id2 = '0000000000000000000000000000b002';
our @Kids;
our $Text = "Grüße aus Köln: 日本語のテキスト, русский, العربية, emoji 😀🚀👍🏽.";

sub seed {
    my ($prefix, $id, @fields) = @_;
    Ragq::Valkey::cmd('DEL', "$prefix:job:$id", "$prefix:out:$id");
    Ragq::Valkey::cmd('HSET', "$prefix:job:$id", query => 'q', tenant => '',
        created_at => '1', attempts => '1', @fields);
}

# The answer in pieces of a few characters (bytes of UTF-8).
sub pieces {
    my ($text, $n) = @_;
    my @chars = split //, $text;
    my @p;
    push @p, join('', splice(@chars, 0, $n)) while @chars;
    return map { encode_utf8($_) } @p;
}

sub add_pieces {
    my ($prefix, $id, $from, @pieces) = @_;
    my $seq = $from;
    for my $p (@pieces) {
        Ragq::Valkey::cmd('XADD', "$prefix:out:$id", "0-$seq", 't', $p, 'a', '1');
        $seq++;
    }
}

# What append.lua publishes for a batch: "<seq>:<kind>:<len>:<bytes>"...
sub batch_msg {
    my ($from, @pieces) = @_;
    my $seq = $from;
    return join '', map { my $m = $seq++ . ":t:" . length($_) . ":$_"; $m } @pieces;
}

sub publish_batch {
    my ($prefix, $id, $from, @pieces) = @_;
    add_pieces($prefix, $id, $from, @pieces);
    Ragq::Valkey::cmd('PUBLISH', "$prefix:out:$id", batch_msg($from, @pieces));
}

sub finish {
    my ($prefix, $id, $status, @fields) = @_;
    Ragq::Valkey::cmd('HSET', "$prefix:job:$id", status => $status, @fields);
    Ragq::Valkey::cmd('PUBLISH', "$prefix:events", "$id $status");
}

# A stream of job $id whose client reads nothing yet: with a 4 kB receive
# buffer, the sockets between nginx and it hold little.  The socket.
sub slow_stream {
    my ($id) = @_;
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096) or die "SO_RCVBUF: $!";
    connect($s, pack_sockaddr_in(server_port(), inet_aton('127.0.0.1'))) or die "connect: $!";
    syswrite $s, "GET /job-stream?job_id=$id HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    return $s;
}

# A stream of job $Id2 (started), read to its status: see nginx_has_read_all.
sub marker_stream {
    my $s2 = send_get("/job-stream?job_id=$::Id2");
    read_until($s2, sub { $_[0] =~ /"status":"started"/ });
    return $s2;
}

# Returns once nginx has read everything published so far: the pub/sub
# connection is in order, so once the marker stream has a piece published
# after them, nginx has read them all.  Closes the marker stream.
sub nginx_has_read_all {
    my ($s2) = @_;
    publish_batch('st', $::Id2, 1, 'mark');
    read_until($s2, sub { $_[0] =~ /id: 1\n/ });
    close $s2;
}

# Reads s until re matches the end of what came (or 10 s); what came.
sub drain {
    my ($s, $re) = @_;
    my ($t, $sel) = ('', IO::Select->new($s));
    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline && substr($t, -65536) !~ $re) {
        next unless $sel->can_read(0.2);
        last unless sysread($s, $t, 65536, length $t);
    }
    return $t;
}

sub subscribed { wait_until('the events subscription', sub { numsub('st:events') >= 1 }) }

sub stream {
    my ($path, $headers) = @_;
    my ($raw) = read_all(send_get($path, $headers));
    return parse($raw);
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('main_config', "worker_rlimit_nofile 8192;\n")
      unless defined $block->main_config;
    $block->set_value('http_config', <<'EOF') unless defined $block->http_config;
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 2s;
EOF
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /job-stream { ragq_prefix st; ragq_stream; }
location = /hb/job-stream { ragq_prefix st; ragq_stream_heartbeat 200ms; ragq_stream; }
location = /t/job-stream { ragq_prefix st; ragq_tenant $http_x_tenant; ragq_stream; }
location = /metrics { ragq_metrics; }
location = /job-cancel { ragq_prefix st; ragq_cancel; }
EOF
    $block->set_value('no_error_log', "[error]\n[alert]\n")
      unless defined $block->no_error_log;
});

plan tests => 146;
run_tests();

__DATA__

=== TEST 1: a finished job: every piece, then done; texts concatenate to the result byte for byte
--- init
my @p = main::pieces($::Text, 3);
main::seed('st', $::Id, status => 'finished', result => Encode::encode_utf8($::Text));
main::add_pieces('st', $::Id, 1, @p);
main::subscribed();
my ($code, $h, $body) = main::stream("/job-stream?job_id=$::Id");
Test::More::is($code, 200, "status 200");
Test::More::is($h->{'content-type'}, 'text/event-stream', 'Content-Type');
Test::More::is($h->{'cache-control'}, 'no-cache', 'Cache-Control');
Test::More::is($h->{'x-accel-buffering'}, 'no', 'X-Accel-Buffering');
Test::More::is($h->{'transfer-encoding'}, 'chunked', 'chunked');
my ($ev) = main::events($body);
Test::More::is(main::kinds_of($ev), join(',', ('token') x @p, 'done'), 'tokens then done');
Test::More::is(main::ids_of($ev), join(',', 1 .. @p), 'ids 1..N');
Test::More::is(main::text_of($ev), Encode::encode_utf8($::Text), 'the pieces are the result');
my $done = JSON::PP->new->utf8->decode($ev->[-1]{data});
Test::More::is($done->{status}, 'finished', 'done: the job JSON');
Test::More::is(Encode::encode_utf8($done->{result}), Encode::encode_utf8($::Text), 'done: its result');
Test::More::is($done->{job_id}, $::Id, 'done: its id');
--- request eval
"GET /job-stream?job_id=$::Id"
--- response_body_like: ^event: token\nid: 1\ndata: \{"text":".*event: done\ndata: \{.*"status":"finished".*\}\n\n\z



=== TEST 2: resume from every Last-Event-ID (header) and last_event_id (query): exactly the rest
--- init
my @p = main::pieces($::Text, 5);
main::seed('st', $::Id, status => 'finished', result => Encode::encode_utf8($::Text));
main::add_pieces('st', $::Id, 1, @p);
main::subscribed();
my ($bad_h, $bad_q) = (0, 0);
for my $n (0 .. scalar @p) {
    my $want_ids = join ',', ($n + 1) .. @p;
    my $want_text = join '', @p[$n .. $#p];
    my (undef, undef, $b1) = main::stream("/job-stream?job_id=$::Id", "Last-Event-ID: $n\r\n");
    my ($e1) = main::events($b1);
    $bad_h++ unless main::ids_of($e1) eq $want_ids && main::text_of($e1) eq $want_text
        && $e1->[-1]{event} eq 'done';
    my (undef, undef, $b2) = main::stream("/job-stream?job_id=$::Id&last_event_id=$n");
    my ($e2) = main::events($b2);
    $bad_q++ unless main::ids_of($e2) eq $want_ids && main::text_of($e2) eq $want_text
        && $e2->[-1]{event} eq 'done';
}
Test::More::is($bad_h, 0, 'Last-Event-ID 0..N: each exactly the rest, then done');
Test::More::is($bad_q, 0, 'last_event_id=0..N: each exactly the rest, then done');
--- request eval
"GET /job-stream?job_id=$::Id&last_event_id=999"
--- response_body_like: ^event: done\ndata: \{.*"status":"finished"



=== TEST 3: live: status events, batches by pub/sub, a missed batch read from the stream, a reset, then done
--- init
main::seed('st', $::Id, status => 'queued');
main::subscribed();
my $s = main::send_get("/job-stream?job_id=$::Id");
my $t = main::read_until($s, sub { $_[0] =~ /"status":"queued"/ });
Test::More::ok(main::wait_until('the job subscription', sub { main::numsub("st:out:$::Id") == 1 }),
    'the stream subscribed to st:out:ID');
main::finish('st', $::Id, 'started');
$t .= main::read_until($s, sub { $_[0] =~ /"status":"started"/ });
main::publish_batch('st', $::Id, 1, 'Hel', 'lo');
$t .= main::read_until($s, sub { $_[0] =~ /id: 2\n/ });
# batch 3-4 is written but its PUBLISH is lost; 5 reveals the gap
main::add_pieces('st', $::Id, 3, ' wor', 'ld');
main::publish_batch('st', $::Id, 5, '!');
$t .= main::read_until($s, sub { $_[0] =~ /id: 5\n/ });
# the worker retries: a reset, then the new try's text
Ragq::Valkey::cmd('XADD', "st:out:$::Id", '0-6', 'reset', '2', 'a', '2');
main::add_pieces('st', $::Id, 7, 'Hi');
Ragq::Valkey::cmd('PUBLISH', "st:out:$::Id", '6:r:1:2' . main::batch_msg(7, 'Hi'));
$t .= main::read_until($s, sub { $_[0] =~ /id: 7\n/ });
main::finish('st', $::Id, 'finished', result => 'Hi');
$t .= main::read_until($s, sub { $_[0] =~ /event: done/ });
close $s;
my (undef, undef, $body) = main::parse($t);
my ($ev) = main::events($body);
Test::More::is(main::kinds_of($ev),
    'status,status,token,token,token,token,token,reset,token,done', 'the events in order');
Test::More::is(main::ids_of($ev), '1,2,3,4,5,6,7', 'each id once, none missing');
Test::More::like($body, qr/event: reset\nid: 6\ndata: \{\}\n\n/, 'the reset event');
Test::More::is(main::text_of($ev), 'Hi', 'after the reset, the new try is the result');
Test::More::ok(main::wait_until('the unsubscribe', sub { main::numsub("st:out:$::Id") == 0 }),
    'done: unsubscribed');
--- request eval
"GET /job-stream?job_id=$::Id"
--- response_body_like: event: reset\nid: 6\n.*event: done



=== TEST 4: heartbeat comments every ragq_stream_heartbeat
--- init
main::seed('st', $::Id, status => 'started');
main::subscribed();
my $s = main::send_get("/hb/job-stream?job_id=$::Id");
my $t = main::read_until($s, sub { my $n = () = $_[0] =~ /: keep-alive\n\n/g; $n >= 3 });
close $s;
my $n = () = $t =~ /: keep-alive\n\n/g;
Test::More::cmp_ok($n, '>=', 3, "keep-alive comments ($n)");
Test::More::ok(main::wait_until('the unsubscribe', sub { main::numsub("st:out:$::Id") == 0 }),
    'the client left: no subscription remains');
--- request eval
"GET /job-stream?job_id=$::Id&last_event_id=0"
--- timeout: 1
--- abort
--- ignore_response



=== TEST 5: clients that leave mid-stream leave no subscription; many clients share one
--- init
main::seed('st', $::Id, status => 'started');
main::subscribed();
my @s = map { main::send_get("/job-stream?job_id=$::Id") } 1 .. 20;
main::read_until($_, sub { $_[0] =~ /"status":"started"/ }) for @s;
Test::More::is(main::numsub("st:out:$::Id"), 1, '20 streams, one subscription');
main::publish_batch('st', $::Id, 1, 'a');
my $got = 0;
for (@s) { $got++ if main::read_until($_, sub { $_[0] =~ /id: 1\n/ }) =~ /id: 1\n/ }
Test::More::is($got, 20, 'the batch reached all 20');
close $_ for @s[0 .. 18];
Time::HiRes::sleep(0.3);
Test::More::is(main::numsub("st:out:$::Id"), 1, 'one left: still subscribed');
close $s[19];
Test::More::ok(main::wait_until('the unsubscribe', sub { main::numsub("st:out:$::Id") == 0 }),
    'the last left: PUBSUB NUMSUB 0');
# clients that leave at once, before their subscription is acknowledged
for (1 .. 30) { my $c = main::send_get("/job-stream?job_id=$::Id"); close $c }
my $s2 = main::send_get("/job-stream?job_id=$::Id");
Test::More::like(main::read_until($s2, sub { $_[0] =~ /id: 1\n/ }), qr/"status":"started".*id: 1\n/s,
    'after 30 quick leavers, a stream still starts and gets the piece');
close $s2;
Test::More::ok(main::wait_until('the unsubscribe', sub { main::numsub("st:out:$::Id") == 0 }),
    'and no subscription remains');
my @ch = Ragq::Valkey::cmd_list('PUBSUB', 'CHANNELS', 'st:out:*');
Test::More::is(scalar @ch, 0, 'PUBSUB CHANNELS st:out:* is empty');
--- request eval
"GET /metrics"
--- response_body_like: ragq_streams 0\n



=== TEST 6: errors are JSON, before any event
--- init
main::seed('st', $::Id2, status => 'started', tenant => 'alice');
Ragq::Valkey::cmd('DEL', 'st:job:0000000000000000000000000000dead');
main::subscribed();
--- request eval
["GET /job-stream", "GET /job-stream?job_id=XYZ",
 "GET /job-stream?job_id=$::Id2&last_event_id=x",
 "GET /job-stream?job_id=0000000000000000000000000000dead",
 "GET /t/job-stream?job_id=$::Id2",
 "GET /t/job-stream?job_id=$::Id2",
 "POST /job-stream?job_id=$::Id2"]
--- more_headers eval
["", "", "", "", "X-Tenant: bob", "", ""]
--- error_code eval
[400, 400, 400, 404, 404, 403, 405]
--- response_body_like eval
[qr/^\{"error":\{"code":"missing_job_id"/, qr/"invalid_job_id"/,
 qr/"invalid_last_event_id"/, qr/"job_not_found"/, qr/"job_not_found"/,
 qr/"missing_tenant"/, qr/"method_not_allowed"/]



=== TEST 7: the ragq_streams gauge counts open streams; requests are counted as endpoint="stream"
--- init
main::seed('st', $::Id, status => 'started');
main::subscribed();
my $s = main::send_get("/job-stream?job_id=$::Id");
main::read_until($s, sub { $_[0] =~ /"status":"started"/ });
my ($m) = main::read_all(main::send_get('/metrics'));
Test::More::like($m, qr/^ragq_streams 1$/m, 'one open stream');
main::finish('st', $::Id, 'failed', error => '{"code":"x","message":"y"}');
my $t = main::read_until($s, sub { $_[0] =~ /event: done/ });
Test::More::like($t, qr/event: done\ndata: \{[^\n]*"status":"failed"/, 'a failed job ends with done too');
close $s;
--- request eval
"GET /metrics"
--- response_body_like: ragq_http_requests_total\{endpoint="stream",code="200"\} 1\n(?s:.*)ragq_streams 0\n



=== TEST 8: Valkey restarted mid-stream: no gap, no duplicate
--- init
main::seed('st', $::Id, status => 'started');
main::subscribed();
my $s = main::send_get("/job-stream?job_id=$::Id");
my $t = main::read_until($s, sub { $_[0] =~ /"status":"started"/ });
main::wait_until('the job subscription', sub { main::numsub("st:out:$::Id") == 1 });
main::publish_batch('st', $::Id, 1, 'one ', 'two ');
$t .= main::read_until($s, sub { $_[0] =~ /id: 2\n/ });
# written while nginx is not listening (kept on disk across the restart)
main::add_pieces('st', $::Id, 3, 'three ');
Ragq::Valkey::cmd('SAVE');
Ragq::Valkey::restart();
$t .= main::read_until($s, sub { $_[0] =~ /id: 3\n/ });
main::wait_until('the resubscription', sub { main::numsub("st:out:$::Id") == 1 });
main::publish_batch('st', $::Id, 4, 'four');
main::finish('st', $::Id, 'finished', result => 'one two three four');
$t .= main::read_until($s, sub { $_[0] =~ /event: done/ });
close $s;
my %cfg = Ragq::Valkey::cmd_list('CONFIG', 'GET', 'dir');
unlink "$cfg{dir}/dump.rdb";
my (undef, undef, $body) = main::parse($t);
my ($ev) = main::events($body);
Test::More::is(main::ids_of($ev), '1,2,3,4', 'every piece once, in order');
Test::More::is(main::text_of($ev), 'one two three four', 'the whole answer');
Test::More::is($ev->[-1]{event}, 'done', 'then done');
--- request eval
"GET /job-stream?job_id=$::Id"
--- timeout: 3
--- response_body_like: event: done
--- error_log
ragq: valkey pub/sub connection restored
--- no_error_log
[alert]



=== TEST 9: 1,000 concurrent streams on one nginx worker (200 jobs, 5 streams each) all end with done
--- init
my @ids = map { sprintf '%032x', 0xc000 + $_ } 1 .. 200;
for my $id (@ids) {
    Ragq::Valkey::cmd('DEL', "st:job:$id", "st:out:$id");
}
open my $cli, '|-', 'redis-cli', '-h', '127.0.0.1', '-p', Ragq::Valkey::port() or die "redis-cli: $!";
for my $id (@ids) {
    print $cli "HSET st:job:$id status started query q tenant \"\" created_at 1 attempts 1\n";
    print $cli "XADD st:out:$id 0-1 t p1 a 1\n";
}
close $cli;
main::subscribed();
my @socks = map { my $id = $_; map { main::send_get("/job-stream?job_id=$id") } 1 .. 5 } @ids;
# every stream has its 200 and its subscription
main::wait_until('200 subscriptions', sub {
    my @r = Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', map { "st:out:$_" } @ids);
    my $n = grep { $_ eq '1' } @r[ map { 2 * $_ + 1 } 0 .. $#ids ];
    $n == @ids });
open $cli, '|-', 'redis-cli', '-h', '127.0.0.1', '-p', Ragq::Valkey::port() or die "redis-cli: $!";
for my $id (@ids) {
    print $cli "XADD st:out:$id 0-2 t p2 a 1\n";
    print $cli "PUBLISH st:out:$id 2:t:2:p2\n";
    print $cli "HSET st:job:$id status finished result p1p2\n";
    print $cli "PUBLISH st:events \"$id finished\"\n";
}
close $cli;
my @resp = main::read_all(@socks);
my $ok = 0;
for (@resp) {
    my ($code, undef, $body) = main::parse($_);
    my ($ev) = main::events($body);
    $ok++ if $code == 200 && main::kinds_of($ev) =~ /^(status,)?token,token,done$/
        && main::text_of($ev) eq 'p1p2';
}
Test::More::is($ok, 1000, '1000 streams: each p1, p2, done');
Test::More::ok(main::wait_until('no subscription left', sub {
    my @ch = Ragq::Valkey::cmd_list('PUBSUB', 'CHANNELS', 'st:out:*'); !@ch }),
    'every subscription gone');
--- request eval
"GET /metrics"
--- response_body_like: ragq_streams 0\n



=== TEST 10: a canceled job: its open stream ends with done (status canceled), a late client gets the same
--- init
main::seed('st', $::Id2, status => 'queued');
main::subscribed();
my $s = main::send_get("/job-stream?job_id=$::Id2");
main::read_until($s, sub { $_[0] =~ /"status":"queued"/ });
main::wait_until('the job subscription', sub { main::numsub("st:out:$::Id2") == 1 });
my ($c) = main::read_all(main::send_post("/job-cancel?job_id=$::Id2"));
Test::More::like($c, qr{^HTTP/1\.1 200 }, 'POST /job-cancel: 200');
my $t = main::read_until($s, sub { $_[0] =~ /event: done/ });
Test::More::like($t, qr/event: done\ndata: \{[^\n]*"status":"canceled"/, 'the open stream ends with done, canceled');
Test::More::like($t, qr/event: done\ndata: \{[^\n]*"code":"canceled"/, '... with the canceled error');
close $s;
Test::More::ok(main::wait_until('the unsubscribe', sub { main::numsub("st:out:$::Id2") == 0 }),
    'no subscription left');
--- request eval
"GET /job-stream?job_id=$::Id2"
--- response_body_like: \Aevent: done\ndata: \{[^\n]*"status":"canceled"



=== TEST 11: graceful reload (HUP) with a stream open: the old worker ends it with retry:; the client resumes with last_event_id on the new workers and loses nothing
--- init
main::seed('st', $::Id, status => 'started');
main::subscribed();
main::add_pieces('st', $::Id, 1, 'x');
my $pidfile = server_root() . '/logs/nginx.pid';
open my $fh, '<', $pidfile or die "$pidfile: $!";
my $master = <$fh>;
chomp $master;
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    Time::HiRes::sleep(0.5);
    kill 'HUP', $master;
    Time::HiRes::sleep(1.5);
    main::publish_batch('st', $::Id, 2, 'y');
    main::finish('st', $::Id, 'finished', result => 'xy', ended_at => '2');
    POSIX::_exit(0);
}
push @main::Kids, $pid;
--- request eval
["GET /job-stream?job_id=$::Id", "GET /job-stream?job_id=$::Id&last_event_id=1"]
--- timeout: 6
--- response_body_like eval
[qr/^event: status\ndata: \{"status":"started"\}\n\nevent: token\nid: 1\ndata: \{"text":"x"\}\n\nretry: 1000\n\n\z/,
 qr/^(?:event: status\ndata: \{"status":"started"\}\n\n)?event: token\nid: 2\ndata: \{"text":"y"\}\n\nevent: done\ndata: \{[^\n]*"status":"finished"[^\n]*\}\n\n\z/]
--- wait: 0.3
--- no_error_log
[error]
[alert]
open socket



=== TEST 12: graceful shutdown (QUIT) with a stream open: it ends with retry:, no open socket
--- init
main::seed('st', $::Id, status => 'started');
main::subscribed();
main::add_pieces('st', $::Id, 1, 'x');
my $pidfile = server_root() . '/logs/nginx.pid';
open my $fh, '<', $pidfile or die "$pidfile: $!";
my $master = <$fh>;
chomp $master;
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    Time::HiRes::sleep(0.5);
    kill 'QUIT', $master;
    POSIX::_exit(0);
}
push @main::Kids, $pid;
--- request eval
"GET /job-stream?job_id=$::Id"
--- timeout: 4
--- response_body_like: ^event: status\ndata: \{"status":"started"\}\n\nevent: token\nid: 1\ndata: \{"text":"x"\}\n\nretry: 1000\n\n\z
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



=== TEST 13: a client that stops reading: closed after send_timeout without reading, its stream gone
--- config
location = /job-stream { ragq_prefix st; ragq_stream; send_timeout 1s; }
location = /metrics { ragq_metrics; }
--- init
main::seed('st', $::Id, status => 'started');
main::subscribed();
my $s = main::slow_stream($::Id);
Test::More::ok(main::wait_until('the stream', sub { main::numsub("st:out:$::Id") == 1 }),
    'the stream is open');
# 8 MB of answer, far past what the sockets hold: nginx's writes block
main::publish_batch('st', $::Id, $_, 'x' x 32768) for 1 .. 256;
Test::More::ok(main::wait_until('the stream closed', sub { main::numsub("st:out:$::Id") == 0 }),
    'closed after send_timeout (1 s) with output unread: no subscription remains');
my ($got, $eof, $sel) = ('', 0, IO::Select->new($s));
my $deadline = Time::HiRes::time() + 5;
while (!$eof && Time::HiRes::time() < $deadline) {
    next unless $sel->can_read(0.2);
    $eof = 1 unless sysread($s, $got, 65536, length $got);
}
close $s;
Test::More::ok($eof, 'the connection is closed');
Test::More::cmp_ok(length $got, '<', 8 * 1024 * 1024, 'the client got part of the answer, then the close');
Test::More::unlike($got, qr/event: done/, 'and no done: the job did not end');
--- request eval
"GET /metrics"
--- response_body_like: ragq_streams 0\n
--- error_log
client timed out



=== TEST 14: a client whose socket filled up once, then read it all: the next pieces still come as they are written, not at the job's end or never
--- init
main::seed('st', $::Id, status => 'started');
main::seed('st', $::Id2, status => 'started');
main::subscribed();
my $s = main::slow_stream($::Id);
my $s2 = main::marker_stream();
Test::More::ok(main::wait_until('the stream', sub { main::numsub("st:out:$::Id") == 1 }),
    'the stream is open');
# 8 MB while the client reads nothing: more than the sockets hold, nginx's writes block
main::publish_batch('st', $::Id, $_, 'x' x 32768) for 1 .. 256;
main::nginx_has_read_all($s2);
# the client reads again, all of it; then one more piece comes
setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 1 << 20);
my $t = main::drain($s, qr/id: 256\n/);
Test::More::like(substr($t, -65536), qr/id: 256\n/, 'the client got all 256 pieces');
main::publish_batch('st', $::Id, 257, 'and more');
$t .= main::drain($s, qr/id: 257\n/);
Test::More::like(substr($t, -65536), qr/id: 257\ndata: \{"text":"and more"\}/, 'and the next one, while the job runs');
close $s;
--- request eval
"GET /metrics"
--- response_body_like: ragq_streams 0\n
--- no_error_log
client timed out
[error]
[alert]



=== TEST 15: a client that reads nothing for a while: nginx holds at most its backlog cap, the rest waits in Valkey and comes when the client reads again, every piece once
--- init
main::seed('st', $::Id, status => 'started');
main::seed('st', $::Id2, status => 'started');
main::subscribed();
my $s = main::slow_stream($::Id);
my $s2 = main::marker_stream();
Test::More::ok(main::wait_until('the stream', sub { main::numsub("st:out:$::Id") == 1 }),
    'the stream is open');
my ($worker) = main::nginx_worker_pids();
my $before = main::rss_kb($worker);
# 16 MB of answer while the client reads nothing (send_timeout is 60 s)
main::publish_batch('st', $::Id, $_, chr(ord('a') + $_ % 26) x 32768) for 1 .. 512;
main::nginx_has_read_all($s2);
my $grown = main::rss_kb($worker) - $before;
SKIP: {
    Test::More::skip('RSS under ASan counts its quarantine', 1) if $ENV{RAGQ_ASAN};
    Test::More::cmp_ok($grown, '<', 4 * 1024,
        "the worker's memory grew by $grown kB, not by the 16 MB the client did not read");
}
main::finish('st', $::Id, 'finished', result => 'sixteen megabytes');
setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 1 << 20);
my ($t) = main::read_all($s);
my (undef, undef, $body) = main::parse($t);
my ($ev) = main::events($body);
Test::More::is(main::ids_of($ev), join(',', 1 .. 512), 'then every piece once, in order');
my $bad = grep { $_->{event} eq 'token'
    && $_->{data} ne '{"text":"' . (chr(ord('a') + $_->{id} % 26) x 32768) . '"}' } @$ev;
Test::More::is($bad, 0, 'each with its text');
Test::More::is($ev->[-1]{event}, 'done', 'then done');
--- request eval
"GET /metrics"
--- response_body_like: ragq_streams 0\n
