# ragq-worker's own HTTP/1.1 client (worker/http1.c), which carries every
# http:// call without a proxy. A re-framing proxy (forked here) sits
# between the worker and the stand-in: it forwards each request and sends
# the answer back framed as the test's mode says (tiny chunks with
# extensions, a body ended by closing, a 100 Continue first, a connection
# dropped when it is reused or past the Keep-Alive timeout it announced
# or a silent one, an early 413 and a reset while the body is still coming,
# not HTTP at all). It counts connections and
# requests, so reuse, the per-host cap and the retry on a dead kept
# connection are seen from the server's side.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET ();
use Time::HiRes qw(time);
use IO::Select ();
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wh1$$";
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [
    { id => 1, payload => { page_content => 'The capital of France is Paris.',
                            metadata => { source => 'france.md' } } },
]);
my $ANSWER = 'According to [1] (france.md): The capital of France is Paris.';

my $Dir = "/tmp/ragq-http1-t-$$";
mkdir $Dir or die "mkdir: $!";
my $Parent = $$;

sub slurp { my ($f) = @_; open my $fh, '<', $f or return ''; local $/; <$fh> }
sub mode { open my $fh, '>', "$Dir/mode" or die; print $fh $_[0]; close $fh }
sub count { scalar(() = slurp("$Dir/$_[0]") =~ /\n/g) }
sub note_line { open my $fh, '>>', "$Dir/$_[0]" or return; print $fh "$_[1]\n"; close $fh }
sub reset_counts { unlink "$Dir/conns", "$Dir/reqs" }

# The stand-in's answer to one request: status line, headers, body (chunks
# decoded).
sub forward {
    my ($head, $body) = @_;
    my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $s->port,
                                  Proto => 'tcp') or die "standin: $!";
    my ($line, @h) = split /\r\n/, $head;
    $line =~ s{^(\w+) http://[^/]+}{$1 };   # absolute-form, as sent to a proxy
    my @keep = grep { !/^(connection|host):/i } @h;
    print $u join("\r\n", $line, 'Host: 127.0.0.1', 'Connection: close', @keep), "\r\n\r\n", $body;
    local $/;
    my $raw = <$u>;
    close $u;
    my ($rh, $rb) = split /\r\n\r\n/, $raw, 2;
    my ($status, @rhs) = split /\r\n/, $rh;
    if ($rh =~ /^transfer-encoding:\s*chunked/im) {
        my $out = '';
        while ($rb =~ s/\A([0-9a-f]+)[^\r]*\r\n//i) {
            my $n = hex $1;
            last if $n == 0;
            $out .= substr($rb, 0, $n, '');
            $rb =~ s/\A\r\n//;
        }
        $rb = $out;
    }
    my @pass = grep { !/^(transfer-encoding|content-length|connection):/i } @rhs;
    return ($status, \@pass, $rb);
}

sub answer {
    my ($c, $mode, $nth, $head, $body) = @_;
    my ($status, $hs, $rb) = forward($head, $body);
    my $h = join('', map { "$_\r\n" } @$hs);
    if ($mode eq 'chunks') {
        syswrite($c, "$status\r\n${h}Transfer-Encoding: chunked\r\n\r\n");
        for my $piece (unpack('(a3)*', $rb)) {
            syswrite($c, sprintf("%x;n=v\r\n%s\r\n", length $piece, $piece));
        }
        syswrite($c, "0\r\nX-Trailer: yes\r\n\r\n");
        return 1;
    }
    if ($mode eq 'close') {
        (my $s10 = $status) =~ s{^HTTP/1\.1}{HTTP/1.0};
        syswrite($c, "$s10\r\n$h\r\n$rb");
        return 0;
    }
    my $pre = $mode eq 'continue' ? "HTTP/1.1 100 Continue\r\n\r\n" : '';
    $h .= "Keep-Alive: timeout=2\r\n" if $mode eq 'hint';
    syswrite($c, "$pre$status\r\n${h}Content-Length: " . length($rb) . "\r\n\r\n$rb");
    return 1;
}

# A server that refuses a body from the request's head alone (a 413, as
# nginx's client_max_body_size does) and resets the connection (SO_LINGER
# 0; a close with unread bytes does the same) while the body is still
# being sent. With a pid in $Dir/stop, that worker is stopped meanwhile, so
# the answer and the reset are both there when it runs again (one wake-up
# for both, as under load): deterministic, where otherwise the worker may
# read the answer before the reset comes.
my $EARLY = '{"error":{"message":"request body too large for the test server (early 413)",'
          . '"type":"invalid_request_error","code":null}}';
# CUT: the Content-Length promises more than comes before the reset.
sub early_413 {
    my ($c, $cut) = @_;
    my $pid = slurp("$Dir/stop");
    if ($pid) {
        kill 'STOP', $pid;
        for (1 .. 200) {   # until it is stopped (the signal is asynchronous)
            last if slurp("/proc/$pid/stat") =~ /^\d+ \(.*\) [Tt] /s;
            select(undef, undef, undef, 0.005);
        }
    }
    setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) or die "SO_LINGER: $!";
    syswrite($c, "HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
                 . "Content-Length: " . (length($EARLY) + ($cut ? 4000 : 0)) . "\r\n\r\n$EARLY");
    close $c;
    if ($pid) {
        select(undef, undef, undef, 0.05);
        kill 'CONT', $pid;
    }
}

sub proxy {
    my ($l) = @_;
    my $sel = IO::Select->new($l);
    my (%buf, %nth, %last);
    $SIG{PIPE} = 'IGNORE';
    alarm 600;
    for (;;) {
        for my $c ($sel->can_read(1)) {
            if ($c == $l) {
                my $n = $l->accept or next;
                $sel->add($n);
                $buf{$n} = '';
                $nth{$n} = 0;
                note_line('conns', 1);
                next;
            }
            my $got = sysread($c, my $chunk, 65536);
            if (!$got) {
                $sel->remove($c);
                close $c;
                next;
            }
            $buf{$c} .= $chunk;
            while ($buf{$c} =~ /\r\n\r\n/) {
                my $end = $+[0];
                my $head = substr($buf{$c}, 0, $end - 4);
                if ((slurp("$Dir/mode") || '') =~ /^early413(cut)?$/) {
                    my $cut = $1;
                    note_line('reqs', $head =~ /^POST (\S+)/ ? $1 : '?');
                    $sel->remove($c);
                    early_413($c, $cut);
                    last;
                }
                my ($len) = $head =~ /^content-length:\s*(\d+)/im;
                last if length($buf{$c}) < $end + ($len // 0);
                my $body = substr($buf{$c}, $end, $len // 0);
                substr($buf{$c}, 0, $end + ($len // 0)) = '';
                my $mode = slurp("$Dir/mode") || 'length';
                note_line('reqs', $head =~ /^POST (\S+)/ ? $1 : '?');
                note_line('proxied', $1) if $head =~ m{^POST (http://\S+)};
                my $keep = 1;
                if ($mode eq 'garbage') {
                    syswrite($c, "HELLO THERE\r\n\r\n");
                    $keep = 0;
                } elsif ($mode eq 'drop-reused' && $nth{$c} > 0) {
                    $keep = 0; # the server closed it just as it was reused
                } elsif ($nth{$c} > 0 && (($mode eq 'hint' && time - $last{$c} > 2) ||
                                          ($mode eq 'stale' && time - $last{$c} > 1))) {
                    # Idle past the timeout it announced: the server's
                    # close crosses the request, which is lost.
                    note_line('stale', 1);
                    $keep = 0;
                } else {
                    $keep = answer($c, $mode, $nth{$c}, $head, $body);
                    $last{$c} = time;
                }
                $nth{$c}++;
                if (!$keep) {
                    $sel->remove($c);
                    close $c;
                    last;
                }
            }
        }
    }
}

my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
                              Listen => 64, ReuseAddr => 1) or die "listen: $!";
my $PORT = $l->sockport;
my $Proxy = fork // die "fork: $!";
if ($Proxy == 0) {
    proxy($l);
    POSIX::_exit(0);
}
close $l;
END {
    if ($$ == $Parent) {
        kill 'KILL', $Proxy if $Proxy;
        waitpid($Proxy, 0) if $Proxy;
        system('rm', '-rf', $Dir);
    }
}

my %ENVS = (
    RAGQ_PREFIX => $P, OPENAI_API_KEY => 'k', RAGQ_COLLECTION => 'docs',
    RAGQ_HTTP_TIMEOUT => '2s', RAGQ_LOG_LEVEL => 'info',
);

sub worker {
    my (%env) = @_;
    my $host = delete $env{host} // '127.0.0.1';
    my $w = Ragq::Worker->start(env => {
        %ENVS, OPENAI_BASE_URL => "http://$host:$PORT/v1", QDRANT_URL => "http://$host:$PORT",
        %env });
    ok($w->ready, 'worker is ready') or diag $w->log;
    return $w;
}

sub run_jobs {
    my ($n, $timeout) = @_;
    my @ids = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. $n;
    Ragq::Worker::wait_final($P, \@ids, $timeout // 30);
    return map { my $j = Ragq::Worker::job($P, $_); $j->{id} = $_; $j } @ids;
}

sub all_finished {
    my ($name, @jobs) = @_;
    my @bad = grep { ($_->{status} // '') ne 'finished' || ($_->{result} // '') ne $ANSWER
                     || ($_->{attempts} // 0) != 1 } @jobs;
    is(scalar @bad, 0, "$name: every job finished in one attempt with the answer")
        or diag explain $bad[0];
}

# Streamed (the default) and whole answers, framed every way.
for my $stream (qw(on off)) {
    for my $mode (qw(length chunks close continue)) {
        my $w = worker(RAGQ_STREAM => $stream, RAGQ_CONCURRENCY => 1);
        mode($mode);
        reset_counts();
        my @j = run_jobs(3);
        all_finished("stream $stream, $mode", @j);
        is(count('reqs'), 9, "stream $stream, $mode: three calls a job");
        if ($mode eq 'close') {
            is(count('conns'), 9, "stream $stream, $mode: a connection per call");
        } else {
            is(count('conns'), 1, "stream $stream, $mode: one kept connection for all nine");
        }
        unlike($w->log, qr/error|warn/i, "stream $stream, $mode: nothing logged as wrong")
            or diag $w->log;
        $w->stop;
    }
}

# A kept connection closed by the server as it is reused: sent again on a
# new one, once, without the job seeing it.
{
    my $w = worker(RAGQ_CONCURRENCY => 1);
    mode('drop-reused');
    reset_counts();
    my @j = run_jobs(1);
    all_finished('dropped when reused', @j);
    is(count('reqs'), 5, 'dropped when reused: two calls sent twice');
    is(count('conns'), 3, 'dropped when reused: a new connection for each');
    unlike($w->log, qr/retry \d+ in/, 'dropped when reused: no retry of the job step');
    $w->stop;
}

# A server that says how long it keeps an idle connection (Keep-Alive:
# timeout=2, as Node's servers do; uvicorn, llama.cpp's and Qdrant's keep
# theirs 5 s): the kept connection is dropped before that, not reused as
# the server closes it (then the request is lost with it: sent again once
# at best, a failed call when that lands on another such connection).
{
    my $w = worker(RAGQ_CONCURRENCY => 1);
    mode('hint');
    reset_counts();
    unlink "$Dir/stale";
    all_finished('Keep-Alive timeout', run_jobs(1));
    is(count('conns'), 1, 'Keep-Alive timeout: one kept connection for a job');
    sleep 3;
    all_finished('Keep-Alive timeout, 3 s later', run_jobs(1));
    is(count('stale'), 0, 'Keep-Alive timeout: nothing sent on a connection past it');
    is(count('conns'), 2, 'Keep-Alive timeout: a new connection after it');
    $w->stop;
}

# A server that closes idle connections after 1 s without saying so, each
# close crossing the request sent on it: the request sent again must not go
# to another connection idle as long, which that server closed too, but to
# a new one (else the call fails and the job step is retried).
{
    my $w = worker(RAGQ_CONCURRENCY => 2);
    mode('stale');
    reset_counts();
    unlink "$Dir/stale";
    $s->latency(150); # two jobs at once: two connections
    all_finished('silent idle timeout', run_jobs(2));
    $s->latency(0);
    cmp_ok(count('conns'), '>=', 2, 'silent idle timeout: two or more kept connections');
    sleep 1.5;
    reset_counts();
    all_finished('silent idle timeout, 1.5 s later', run_jobs(1));
    is(count('stale'), 1, 'silent idle timeout: one request lost with its connection');
    is(count('reqs'), 4, 'silent idle timeout: sent again once, then two more calls');
    unlike($w->log, qr/retry \d+ in/, 'silent idle timeout: no retry of the job step')
        or diag $w->log;
    $w->stop;
}

# The per-host cap: never more connections than jobs in flight, reused.
{
    my $w = worker(RAGQ_CONCURRENCY => 3);
    mode('length');
    reset_counts();
    my @j = run_jobs(30, 60);
    all_finished('3 in flight', @j);
    is(count('reqs'), 90, '3 in flight: 90 calls');
    cmp_ok(count('conns'), '<=', 3, '3 in flight: at most 3 connections');
    $w->stop;
}

# A host name (looked up off the loop): localhost.
{
    my $w = worker(host => 'localhost', RAGQ_CONCURRENCY => 1);
    mode('length');
    reset_counts();
    all_finished('localhost', run_jobs(2));
    $w->stop;
}

# A server that answers 413 after reading only the request's head and
# resets the connection while the body (8 MB: more than the socket buffers
# hold) is still going out: the call ends with that answer, not with the
# reset, so the job fails at once with the server's 413 and its message (a
# 4xx other than 408/409/429 is permanent: no retry of the step, no other
# attempt), where it used to fail with "Connection reset by peer", retried
# as a network error.
sub enqueue_big {
    my ($query) = @_;
    # redis-cli cannot carry it (an argument is at most 128 kB): RESP here.
    my $r = sprintf('%08x%08x', int(rand(0xffffffff)), int(rand(0xffffffff)));
    my @a = ('XADD', "$P:jobs", '*', r => $r, query => $query, top_k => 3,
             collection => '', tenant => '', created_at => int(time * 1000));
    my $v = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => Ragq::Valkey::port(),
                                  Proto => 'tcp') or die "valkey: $!";
    print $v '*' . @a . "\r\n", map { '$' . length($_) . "\r\n$_\r\n" } @a;
    my $len = <$v>;
    my $entry = <$v>;
    close $v;
    die "XADD: $len" unless $len =~ /^\$\d+/ && defined $entry;
    $entry =~ s/\r\n\z//;
    return Ragq::Worker::id_of_entry($entry, $r);
}
# Then the same 413 whose body the reset cuts short: still the server's
# 413, not a network error to retry.
for my $case ([1, ''], [0, ''], [1, 'cut'], [0, 'cut']) {
    my ($stopped, $cut) = @$case;
    my $name = ($stopped ? 'early 413, answer and reset read at once' : 'early 413')
        . ($cut ? ', its body cut short' : '');
    my $w = worker(RAGQ_CONCURRENCY => 1, RAGQ_MAX_ATTEMPTS => 1, RAGQ_HTTP_TIMEOUT => '10s');
    mode("early413$cut");
    reset_counts();
    if ($stopped) {
        open my $fh, '>', "$Dir/stop" or die; print $fh $w->pid; close $fh;
    }
    my $id = enqueue_big('word ' x 1_600_000);
    Ragq::Worker::wait_final($P, [$id], 60);
    unlink "$Dir/stop";
    my %j = map { $_ => Ragq::Worker::field($P, $id, $_) } qw(status error attempts);
    is($j{status}, 'failed', "$name: the job fails");
    like($j{error}, qr/"code":"upstream_http_413"/, "$name: with the server's 413")
        or diag $j{error};
    like($j{error}, qr/request body too large for the test server \(early 413\)/,
         "$name: and its message");
    is($j{attempts}, 1, "$name: one attempt");
    is(count('reqs'), 1, "$name: the call was not tried again (a 413 is permanent)");
    unlike($w->log, qr/reset by peer|retry \d+ in/, "$name: no reset, no retry")
        or diag substr($w->log, 0, 4000);
    my $taken = () = $w->log =~ /127\.0\.0\.1:$PORT: HTTP 413 came while the request was sent, its body cut short by the connection's end; taken as it came/g;
    is($taken, $cut ? 1 : 0, "$name: " . ($cut ? 'the cut is logged once' : 'nothing cut short is logged'));
    ok($w->alive, "$name: the worker lives on");
    $w->stop;
}

# Not HTTP: the call fails with the reason, the step is retried, the job
# fails in the end; nothing crashes.
{
    my $w = worker(RAGQ_CONCURRENCY => 1, RAGQ_MAX_ATTEMPTS => 1);
    mode('garbage');
    reset_counts();
    my ($j) = run_jobs(1, 30);
    is($j->{status}, 'failed', 'not HTTP: the job fails') or diag explain $j;
    like($w->log, qr/127\.0\.0\.1:$PORT: not an HTTP\/1\.x status line/,
         'not HTTP: the reason is logged');
    is(count('reqs'), 5, 'not HTTP: the first call tried 5 times (RAGQ_CALL_TRIES)');
    ok($w->alive, 'not HTTP: the worker lives on');
    $w->stop;
}

# Nobody listening: the reason is logged.
{
    my $closed = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
                                       Listen => 1)->sockport;
    my $w = Ragq::Worker->start(env => {
        %ENVS, RAGQ_MAX_ATTEMPTS => 1,
        OPENAI_BASE_URL => "http://127.0.0.1:$closed/v1", QDRANT_URL => "http://127.0.0.1:$closed" });
    ok($w->ready, 'worker is ready') or diag $w->log;
    my ($j) = run_jobs(1, 30);
    is($j->{status}, 'failed', 'refused: the job fails');
    like($w->log, qr/127\.0\.0\.1:$closed: Connection refused/, 'refused: the reason is logged');
    $w->stop;
}

# Nobody answering the connect (a listener whose queue is full drops the
# SYNs): each try gives up after RAGQ_CONNECT_TIMEOUT, the job fails.
{
    my $full = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
                                     Listen => 0) or die "listen: $!";
    my $fport = $full->sockport;
    my @fill;
    for (1 .. 8) {
        my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $fport, Proto => 'tcp',
                                      Blocking => 0);
        push @fill, $c if $c;
    }
    my $w = Ragq::Worker->start(env => {
        %ENVS, RAGQ_MAX_ATTEMPTS => 1, RAGQ_CONNECT_TIMEOUT => '200ms',
        OPENAI_BASE_URL => "http://127.0.0.1:$fport/v1", QDRANT_URL => "http://127.0.0.1:$fport" });
    ok($w->ready, 'worker is ready') or diag $w->log;
    my $t0 = time;
    my ($j) = run_jobs(1, 30);
    is($j->{status}, 'failed', 'connect never answered: the job fails') or diag explain $j;
    like($j->{error} // '', qr/upstream_timeout/, 'connect never answered: as a timeout');
    cmp_ok(time - $t0, '<', 8, 'connect never answered: 5 connect timeouts, not 5 call timeouts (10 s)');
    diag(sprintf('connect never answered: job failed after %.1f s', time - $t0));
    ok($w->alive, 'connect never answered: the worker lives on');
    $w->stop;
}

# The environment that makes the worker read names from the test's own
# hosts file, whatever LINES say (nss_wrapper: no DNS server or /etc/hosts
# is touched).
sub write_hosts {
    open my $h, '>', "$Dir/hosts" or die "hosts: $!";
    print $h map { "$_\n" } @_;
    close $h;
}
sub hosts_env {
    write_hosts(@_);
    my %nss = (LD_PRELOAD => 'libnss_wrapper.so', NSS_WRAPPER_HOSTS => "$Dir/hosts");
    # Under ASan: it must otherwise be the first library loaded, and it
    # refuses the RTLD_DEEPBIND nss_wrapper would load libc with.
    %nss = (%nss, ASAN_OPTIONS => "$ENV{ASAN_OPTIONS}:verify_asan_link_order=0",
            NSS_WRAPPER_DISABLE_DEEPBIND => 1) if $ENV{ASAN_OPTIONS};
    return %nss;
}

# A name with two addresses, from a hosts file of the test's own
# (nss_wrapper: no DNS server or /etc/hosts is touched). Its first address,
# 127.0.0.2 (loopback too), refuses the connect or never answers it; the
# worker goes on to the second, where the proxy listens, says so once in
# its log, and from then on connects to the second first: with a
# connection per call, six calls make one such line, not six.
sub two_addresses {
    my ($name, %env) = @_;
    my %nss = hosts_env('127.0.0.2 models.ragq.test', '127.0.0.1 models.ragq.test');
    my $w = worker(host => 'models.ragq.test', RAGQ_CONCURRENCY => 1, %nss, %env);
    mode('close');
    reset_counts();
    all_finished($name, run_jobs(2));
    is(count('conns'), 6, "$name: six connections reached the second address");
    my @tries = $w->log =~ /models\.ragq\.test:$PORT: cannot connect to 127\.0\.0\.2: ([^\n]*); trying the next address/g;
    is(scalar @tries, 1, "$name: the first address was tried once, then the one that answered")
        or diag $w->log;
    $w->stop;
    return $tries[0] // '';
}
like(two_addresses('first address refuses'), qr/Connection refused/,
     'first address refuses: the reason is logged');
{
    # A listener whose queue is full drops the SYNs: the connect is never answered.
    my $full = IO::Socket::INET->new(LocalAddr => '127.0.0.2', LocalPort => $PORT, Proto => 'tcp',
                                     Listen => 0) or die "listen 127.0.0.2:$PORT: $!";
    my @fill = grep { $_ } map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.2', PeerPort => $PORT, Proto => 'tcp', Blocking => 0)
    } 1 .. 8;
    like(two_addresses('first address never answers', RAGQ_CONNECT_TIMEOUT => '300ms'),
         qr/no connection within the connect timeout/, 'first address never answers: as a timeout');
}

# A server that moves to a new address (a container recreated, a service
# redeployed): the name's old address refuses, and the worker looks the
# name up again at once rather than keeping the old answer for the rest of
# its minute, so the job's next try reaches the server where it is now.
# The server starts on 127.0.0.3 (a second proxy) and moves to 127.0.0.1.
# Both clients: the own one, and libcurl (which forgets the name then).
sub moved {
    my ($client) = @_;
    my $name = "moved ($client client)";
    my %nss = hosts_env('127.0.0.3 models.ragq.test');
    my $l3 = IO::Socket::INET->new(LocalAddr => '127.0.0.3', LocalPort => $PORT, Proto => 'tcp',
                                   Listen => 64, ReuseAddr => 1) or die "listen 127.0.0.3: $!";
    my $old = fork // die "fork: $!";
    if ($old == 0) {
        proxy($l3);
        POSIX::_exit(0);
    }
    close $l3;
    my $w = worker(host => 'models.ragq.test', RAGQ_CONCURRENCY => 1,
                   RAGQ_HTTP_CLIENT => $client, %nss);
    mode('length');
    reset_counts();
    all_finished("$name: before the move", run_jobs(1));
    kill 'KILL', $old;
    waitpid($old, 0);
    # past the shortest time between two lookups of a name, and a second
    # later than the hosts file's first version (nss_wrapper reloads it
    # when its mtime, in seconds, changed)
    sleep 1.1;
    write_hosts('127.0.0.1 models.ragq.test');
    reset_counts();
    my $t0 = time;
    all_finished($name, run_jobs(1, 20));
    diag(sprintf('%s: the job finished %.1f s after it was queued', $name, time - $t0));
    is(count('reqs'), 3, "$name: its three calls reached the server at its new address");
    my @again = $w->log =~ /models\.ragq\.test:$PORT: no address of the name took a connection; looking it up again/g;
    is(scalar @again, 1, "$name: the name was looked up again once") or diag $w->log;
    $w->stop;
}
moved($_) for qw(own curl);

# With http_proxy set, http:// calls go through libcurl, which sends them to
# the proxy (here the re-framing proxy, reached for a port nobody listens on).
{
    my $closed = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
                                       Listen => 1)->sockport;
    my $w = Ragq::Worker->start(env => {
        %ENVS, RAGQ_CONCURRENCY => 1, http_proxy => "http://127.0.0.1:$PORT",
        no_proxy => '', NO_PROXY => '',
        OPENAI_BASE_URL => "http://127.0.0.1:$closed/v1", QDRANT_URL => "http://127.0.0.1:$closed" });
    ok($w->ready, 'worker is ready') or diag $w->log;
    mode('length');
    reset_counts();
    unlink "$Dir/proxied";
    all_finished('http_proxy', run_jobs(1));
    is(count('proxied'), 3, 'http_proxy: the three calls went to the proxy');
    like(slurp("$Dir/proxied"), qr{^http://127\.0\.0\.1:$closed/v1/embeddings$}m,
         'http_proxy: in absolute form, for the origin asked');
    $w->stop;
}

# curl still carries them when asked; anything else is refused at start.
{
    my $w = worker(RAGQ_HTTP_CLIENT => 'curl', RAGQ_CONCURRENCY => 1);
    mode('chunks');
    reset_counts();
    all_finished('RAGQ_HTTP_CLIENT=curl', run_jobs(2));
    is(count('conns'), 1, 'RAGQ_HTTP_CLIENT=curl: curl keeps its connection too');
    $w->stop;
    my $bad = Ragq::Worker->start(env => { %ENVS, RAGQ_HTTP_CLIENT => 'fast',
        OPENAI_BASE_URL => "http://127.0.0.1:$PORT/v1", QDRANT_URL => "http://127.0.0.1:$PORT" });
    $bad->wait_exit(10);
    like($bad->log, qr/RAGQ_HTTP_CLIENT must be 'own' or 'curl'/, 'a bad RAGQ_HTTP_CLIENT is refused');
}

done_testing();
