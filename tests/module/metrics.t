# ragq_metrics with two nginx workers: the exposition read strictly
# (Ragq::Prom) with every family of the right type, label values that
# round-trip (quotes, backslashes, line feeds, UTF-8, and non-UTF-8
# replaced); request counters that move by exactly the requests made over
# many connections answered by both workers, the latency histogram (a
# request held by Valkey lands in the right bucket; long-polls stay out of
# it), counters kept across a reload (HUP), the gauges of connected
# workers and open long-polls, and the Valkey side from synthetic
# heartbeats; with Valkey paused the nginx side within the location's
# ragq_valkey_timeout (shorter than the connection watchdog's, so the
# scrape's own deadline is what answers) and ragq_valkey_up 0, with Valkey
# stopped at once, and recovery.
BEGIN {
    # one nginx for every block with the default config (reload included)
    $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0;
}

use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Chat;
use Ragq::Prom;
use Ragq::Proc qw(nginx_master_pid nginx_worker_pids);
use IO::Select;
use IO::Socket::INET;
use Time::HiRes ();

master_on();
workers(2);
worker_connections(512);
no_shuffle();
no_long_string();

our $Version = do {
    open my $f, '<', ($ENV{RAGQ_ROOT} // '.') . '/VERSION' or die "VERSION: $!";
    my $v = <$f>;
    $v =~ s/\s+\z//;
    $v;
};

our $Missing = '0000000000000000000000000000abcd';
our $Known = '0000000000000000000000000000abce';
our $Waited = '0000000000000000000000000000abcf';
our %Check;      # block number => sub ($fam, $errors, $body)
our %Before;     # what a block's init saw before it acted
our %Made;       # requests a block's init made: "endpoint/code" => n
our %Pids;       # nginx worker pids that answered them
our @Waiters;    # long-poll sockets
our @WaitCodes;

# ---- HTTP of our own: many connections at once ----

sub send_req {
    my ($method, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => server_port(), Proto => 'tcp') or die "connect: $!";
    syswrite $s, "$method $path HTTP/1.1\r\nHost: localhost\r\n"
      . "Connection: close\r\nContent-Length: 0\r\n\r\n";
    return $s;
}

# Reads every socket until it closes; the raw responses, in order.
sub read_all {
    my @socks = @_;
    my (%buf, %idx);
    @idx{ map { fileno $_ } @socks } = 0 .. $#socks;
    my $sel = IO::Select->new(@socks);
    my $deadline = time + 30;
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

sub code_of { $_[0] =~ m{^HTTP/1\.\d (\d{3})} ? $1 : 0 }

sub get {
    my ($path) = @_;
    my ($resp) = read_all(send_req('GET', $path));
    my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
    return (code_of($resp), $body // '');
}

# The exposition, parsed; dies on anything the reader rejects.
sub scrape {
    my ($code, $body) = get('/metrics');
    die "GET /metrics: $code\n" unless $code == 200;
    my ($fam, $err) = Ragq::Prom::parse($body);
    die "GET /metrics: @$err\n" if @$err;
    return $fam;
}

sub value { Ragq::Prom::value(@_) }

sub wait_for { Ragq::Chat::wait_for(@_) }

# requests_total and the histogram's _count, "endpoint/code" and
# "hist/endpoint" => value
sub counts {
    my ($fam) = @_;
    my %c;
    for my $s (@{ $fam->{ragq_http_requests_total}{samples} }) {
        $c{"$s->{labels}{endpoint}/$s->{labels}{code}"} = $s->{value};
    }
    for my $e (qw(chat status metrics)) {
        $c{"hist/$e"} = value($fam, 'ragq_http_request_duration_seconds_count',
            endpoint => $e) // 0;
    }
    return \%c;
}

# what changed between two counts(), keys with no change left out
sub delta {
    my ($a, $b) = @_;
    my %d;
    for my $k (keys %$b) {
        my $d = $b->{$k} - ($a->{$k} // 0);
        $d{$k} = $d if $d;
    }
    return \%d;
}

# Every request on its own connection, all sent before any answer is
# read, until both nginx workers answered some: counts what came back.
sub burst_until_both_workers {
    Ragq::Valkey::cmd('HSET', "mx:job:$Known", status => 'finished',
        query => 'q', tenant => '', created_at => 1, attempts => 1);
    my %made;
    my %pids;
    for my $round (1 .. 20) {
        my @req = ((['POST', '/chat?query=count+me']) x 30,
                   (['GET', "/job-status?job_id=$Missing"]) x 10,
                   (['GET', '/job-status']) x 5,
                   (['GET', "/job-status?job_id=$Known"]) x 5);
        my @socks = map { send_req(@$_) } @req;
        my @resp = read_all(@socks);
        for my $i (0 .. $#req) {
            my $code = code_of($resp[$i]) or die "no answer to $req[$i][1]\n";
            my $ep = $req[$i][1] =~ m{^/chat} ? 'chat' : 'status';
            $made{"$ep/$code"}++;
            $made{"hist/$ep"}++;
            $pids{$1} = 1 if $resp[$i] =~ /^X-Pid: (\d+)/mi;
        }
        last if keys %pids >= 2;
    }
    return (\%made, \%pids);
}

sub subscribed {
    wait_for('both workers subscribed to mx:events', sub {
        my (undef, $n) = Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', 'mx:events');
        return ($n // 0) >= 2;
    });
}

# Heartbeats as workers write them (ragq-worker's heartbeat.c), under
# names that need escaping, one not UTF-8, and a listed worker whose hash
# has expired.
our @Names = ('w1', "we\"ird\\na\nme \xc3\xa9", "bad\xffname");
our @Shown = ('w1', "we\"ird\\na\nme \xc3\xa9", 'bad?name');

sub seed_valkey {
    Ragq::Valkey::cmd('DEL', 'mx:jobs', 'mx:dead', 'mx:workers:live',
        map { "mx:worker:$_" } @Names);
    Ragq::Valkey::cmd('XADD', 'mx:jobs', '*', job => "j$_") for 1 .. 3;
    Ragq::Valkey::cmd('XGROUP', 'CREATE', 'mx:jobs', 'mx:workers', '0');
    Ragq::Valkey::cmd('XREADGROUP', 'GROUP', 'mx:workers', 'c1', 'COUNT', 1,
        'STREAMS', 'mx:jobs', '>');
    Ragq::Valkey::cmd('XADD', 'mx:dead', '*', job => "d$_", error => '{}') for 1 .. 2;
    my $now = int(Time::HiRes::time() * 1000);
    Ragq::Valkey::cmd('HSET', "mx:worker:$Names[0]", version => '9.8.7',
        host => 'h1', pid => 42, concurrency => 64, in_flight => 4,
        jobs_finished => 7, jobs_failed => 2, jobs_released => 1,
        jobs_canceled => 0, calls_embeddings => 10, errors_embeddings => 0,
        calls_qdrant => 10, errors_qdrant => 0, calls_chat => 9,
        errors_chat => 1, started_at => 1700000000123,
        last_job_at => 1700000100456, beat_at => $now);
    for my $n (@Names[1, 2]) {
        Ragq::Valkey::cmd('HSET', "mx:worker:$n", version => $Version,
            host => 'h2', in_flight => 0, jobs_finished => 0,
            started_at => 1700000000000, last_job_at => 0, beat_at => $now);
    }
    Ragq::Valkey::cmd('PEXPIRE', "mx:worker:$_", 600000) for @Names;
    Ragq::Valkey::cmd('ZADD', 'mx:workers:live', $now, $_) for @Names, 'gone';
}

add_response_body_check(sub {
    my ($block, $body, $idx, $rep, $dry) = @_;
    my ($n) = $block->name =~ /\bTEST (\d+):/;
    return if $dry || !defined $n || !$Check{$n};
    my ($fam, $err) = Ragq::Prom::parse($body // '');
    $Check{$n}->($fam, $err, $body);
});

our %NginxSide = (
    ragq_module_info => 'gauge',
    ragq_http_requests_total => 'counter',
    ragq_http_request_duration_seconds => 'histogram',
    ragq_nginx_workers => 'gauge',
    ragq_valkey_connected => 'gauge',
    ragq_waiters => 'gauge',
    ragq_streams => 'gauge',
    ragq_valkey_up => 'gauge',
);

our %ValkeySide = (
    ragq_queue_length => 'gauge',
    ragq_jobs_pending => 'gauge',
    ragq_dead_jobs => 'gauge',
    ragq_workers => 'gauge',
    ragq_worker_info => 'gauge',
    ragq_worker_jobs_total => 'counter',
    ragq_worker_in_flight => 'gauge',
    ragq_worker_upstream_calls_total => 'counter',
    ragq_worker_upstream_errors_total => 'counter',
    ragq_worker_start_time_seconds => 'gauge',
    ragq_worker_last_job_timestamp_seconds => 'gauge',
);

$Check{1} = sub {
    my ($fam, $err) = @_;
    is_deeply $err, [], 'TEST 1: the exposition is well-formed';
    is_deeply Ragq::Prom::types($fam), { %NginxSide, %ValkeySide },
        'TEST 1: every family, each of its type';
    is_deeply [sort(Ragq::Prom::label_values($fam, 'ragq_worker_info', 'worker'))],
        [sort @Shown], 'TEST 1: the live workers, names escaped and read back';
    is_deeply [map { value($fam, $_) } qw(ragq_workers ragq_queue_length
        ragq_jobs_pending ragq_dead_jobs ragq_valkey_up)], [3, 3, 1, 2, 1],
        'TEST 1: workers, queue length, pending, dead, valkey up';
    my $w = 'w1';
    is_deeply [
        (map { value($fam, 'ragq_worker_jobs_total', worker => $w, status => $_) }
            qw(finished failed released canceled)),
        value($fam, 'ragq_worker_in_flight', worker => $w),
        (map { value($fam, 'ragq_worker_upstream_calls_total', worker => $w, api => $_) }
            qw(embeddings qdrant chat)),
        value($fam, 'ragq_worker_upstream_errors_total', worker => $w, api => 'chat'),
        value($fam, 'ragq_worker_start_time_seconds', worker => $w),
        value($fam, 'ragq_worker_last_job_timestamp_seconds', worker => $w),
        value($fam, 'ragq_worker_info', worker => $w, version => '9.8.7', host => 'h1'),
    ], [7, 2, 1, 0, 4, 10, 10, 9, 1, 1700000000.123, 1700000100.456, 1],
        "TEST 1: a worker's counters from its heartbeat";
    is value($fam, 'ragq_worker_last_job_timestamp_seconds', worker => 'bad?name'),
        undef, 'TEST 1: no last job time for a worker that has not ended one';
    is value($fam, 'ragq_module_info', version => $Version), 1,
        'TEST 1: the module says its version';
};

$Check{2} = sub {
    my ($fam, $err) = @_;
    is_deeply $err, [], 'TEST 2: well-formed';
    my %want = (%{ $Made{2} }, 'metrics/200' => 1, 'hist/metrics' => 1);
    is_deeply delta($Before{2}, counts($fam)), \%want,
        'TEST 2: counters and histogram counts moved by exactly the requests made';
    ok keys %{ $Pids{2} } >= 2, 'TEST 2: both nginx workers answered some of them';
};

$Check{3} = sub {
    my ($fam, $err) = @_;
    my $b = $Before{3};
    my @le = qw(0.001 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf);
    my %d = map { $_ => value($fam, 'ragq_http_request_duration_seconds_bucket',
                             endpoint => 'status', le => $_) - $b->{$_} } @le;
    # the buckets below what the request surely took, and +Inf
    my @below = grep { $_ ne '+Inf' && $_ < $b->{min} } @le;
    is_deeply $err, [], 'TEST 3: well-formed';
    is_deeply [map { $d{$_} } @below, '+Inf'], [(0) x @below, 1],
        "TEST 3: a request held by Valkey is above every bucket below $b->{min} s";
    ok value($fam, 'ragq_http_request_duration_seconds_sum', endpoint => 'status')
        - $b->{sum} >= $b->{min} - 0.001, "TEST 3: and adds at least that to the sum";
};

$Check{4} = sub {
    my ($fam, $err) = @_;
    is_deeply $err, [], 'TEST 4: well-formed';
    is_deeply delta($Before{4}, counts($fam)), { 'metrics/200' => 1, 'hist/metrics' => 1 },
        'TEST 4: the counters survived the reload (only the scrape before it is new)';
    is value($fam, 'ragq_nginx_workers'), 2, 'TEST 4: the two new workers, the old ones gone';
};

$Check{7} = sub {
    my ($fam, $err) = @_;
    is_deeply $err, [], 'TEST 7: well-formed';
    is_deeply [@WaitCodes], [200, 200, 200], 'TEST 7: the long-polls got their job';
    is value($fam, 'ragq_waiters'), 0, 'TEST 7: no waiter left';
    my $d = delta($Before{7}, counts($fam));
    is_deeply [$d->{'status/200'}, $d->{'hist/status'} // 0], [3, 0],
        'TEST 7: counted as requests, not in the latency histogram';
};

$Check{9} = sub {
    my ($fam, $err) = @_;
    is_deeply delta($Before{9}, counts($fam)), { 'metrics/200' => 1, 'hist/metrics' => 1 },
        'TEST 9: requests of other locations are not counted';
};

$Check{10} = sub {
    my ($fam, $err) = @_;
    is_deeply $err, [], 'TEST 10: well-formed';
    is_deeply Ragq::Prom::types($fam), \%NginxSide,
        'TEST 10: Valkey paused: the nginx side only';
    is value($fam, 'ragq_valkey_up'), 0, 'TEST 10: and ragq_valkey_up 0';
};

$Check{11} = sub {
    my ($fam, $err) = @_;
    is_deeply $err, [], 'TEST 11: well-formed';
    is_deeply [map { value($fam, $_) } qw(ragq_valkey_up ragq_valkey_connected
        ragq_nginx_workers)], [0, 0, 2],
        'TEST 11: Valkey stopped: up 0, no worker connected, both workers there';
};

END { eval { Ragq::Valkey::resume() } }

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'EOF') unless defined $block->http_config;
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 1s;
EOF
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix mx; ragq_enqueue; add_header X-Pid $pid always; }
location = /job-status { ragq_prefix mx; ragq_status; add_header X-Pid $pid always; }
location = /metrics { ragq_prefix mx; ragq_valkey_timeout 500ms; ragq_metrics; }
location = /plain { return 200 "plain\n"; }
EOF
    $block->set_value('no_error_log', "[alert]\n[emerg]\n")
      unless defined $block->no_error_log;
});

plan tests => 69;
run_tests();

__DATA__

=== TEST 1: every family, of the right type, in a well-formed exposition
--- init
main::seed_valkey();
--- request
GET /metrics
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- no_error_log
[error]
[alert]



=== TEST 2: counters summed over both nginx workers move by exactly the requests made
--- init
$main::Before{2} = main::counts(main::scrape());
($main::Made{2}, $main::Pids{2}) = main::burst_until_both_workers();
--- request
GET /metrics
--- no_error_log
[error]
[alert]



=== TEST 3: the latency histogram: a request held by Valkey (CLIENT PAUSE 600 ms)
--- init
my $f = main::scrape();
$main::Before{3} = { map { $_ => main::value($f, 'ragq_http_request_duration_seconds_bucket',
    endpoint => 'status', le => $_) } qw(0.001 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf) };
$main::Before{3}{sum} = main::value($f, 'ragq_http_request_duration_seconds_sum', endpoint => 'status');
# the pause ends 600 ms after t0 at the earliest and the request started
# before t1, so it took at least 0.6 - (t1 - t0) s
my $t0 = Time::HiRes::time();
Ragq::Valkey::cmd('CLIENT', 'PAUSE', 600, 'ALL');
my $s = main::send_req('GET', "/job-status?job_id=$main::Known");
my $t1 = Time::HiRes::time();
my ($resp) = main::read_all($s);
die "held request: $resp\n" unless main::code_of($resp) == 200;
$main::Before{3}{min} = sprintf '%.3f', 0.6 - ($t1 - $t0);
--- request
GET /metrics
--- no_error_log
[error]
[alert]



=== TEST 4: a reload (HUP) keeps the counters
--- init
my @old = main::nginx_worker_pids();
$main::Before{4} = main::counts(main::scrape());
kill 'HUP', main::nginx_master_pid();
main::wait_for('two new workers, the old ones gone', sub {
    my @now = main::nginx_worker_pids();
    my %old = map { $_ => 1 } @old;
    return @now == 2 && !grep { $old{$_} } @now;
});
--- request
GET /metrics
--- no_error_log
[error]
[alert]



=== TEST 5: ragq_valkey_connected counts the workers whose command connection is up
--- init
main::wait_for('both workers connected', sub {
    main::value(main::scrape(), 'ragq_valkey_connected') == 2 });
--- request
GET /metrics
--- response_body_like chomp
\nragq_valkey_connected 2\n
--- no_error_log
[error]
[alert]



=== TEST 6: ragq_waiters: open long-polls of all workers
--- init
Ragq::Valkey::cmd('DEL', "mx:job:$main::Waited");
Ragq::Valkey::cmd('HSET', "mx:job:$main::Waited", status => 'queued',
    query => 'q', tenant => '', created_at => 1, attempts => 0);
main::subscribed();
@main::Waiters = map { main::send_req('GET', "/job-status?job_id=$main::Waited&wait=20") } 1 .. 3;
main::wait_for('three waiters', sub { main::value(main::scrape(), 'ragq_waiters') == 3 });
--- request
GET /metrics
--- response_body_like chomp
\nragq_waiters 3\n
--- no_error_log
[error]
[alert]



=== TEST 7: the long-polls, answered, are counted but stay out of the latency histogram
--- init
$main::Before{7} = main::counts(main::scrape());
Ragq::Valkey::cmd('HSET', "mx:job:$main::Waited", status => 'finished');
Ragq::Valkey::cmd('PUBLISH', 'mx:events', "$main::Waited finished");
@main::WaitCodes = map { main::code_of($_) } main::read_all(@main::Waiters);
--- request
GET /metrics
--- no_error_log
[error]
[alert]



=== TEST 8: POST /metrics is not allowed
--- request
POST /metrics
--- error_code: 405
--- response_headers
Allow: GET, HEAD
--- response_body_like chomp
"code":"method_not_allowed"



=== TEST 9: a location without ragq is not counted
--- init
$main::Before{9} = main::counts(main::scrape());
main::get('/plain') for 1 .. 3;
--- request
GET /metrics



=== TEST 10: Valkey paused: the nginx side within ragq_valkey_timeout (500 ms; the client gives up after 1 s)
--- init
Ragq::Valkey::pause();
--- request
GET /metrics
--- timeout: 1
--- error_log
ragq: metrics: valkey did not answer within 500 ms



=== TEST 11: Valkey stopped: answered at once, nobody connected
--- init
Ragq::Valkey::resume();
Ragq::Valkey::stop();
main::wait_for('no worker connected', sub {
    main::value(main::scrape(), 'ragq_valkey_connected') == 0 });
--- request
GET /metrics
--- timeout: 2



=== TEST 12: Valkey back: read again
--- init
Ragq::Valkey::start();
main::wait_for('Valkey read again, both workers connected', sub {
    my $f = main::scrape();
    main::value($f, 'ragq_valkey_up') == 1 && main::value($f, 'ragq_valkey_connected') == 2 });
--- request
GET /metrics
--- response_body_like chomp
\nragq_valkey_up 1\n
