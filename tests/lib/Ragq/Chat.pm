# Ragq::Chat: plain HTTP requests to the nginx under test, for test code
# that drives load or polls outside Test::Nginx's own request sections
# (fail-over tests). One request per connection, a hard timeout per
# request, the answer parsed into status, headers and body.
package Ragq::Chat;

use strict;
use warnings;

use IO::Select ();
use IO::Socket::INET ();
use Time::HiRes qw(time sleep);

# request($method, $path, %o): { status, headers => {lc name => value},
# body, job_id } (status 0: no answer within $o{timeout}, default 5 s).
sub request {
    my ($method, $path, %o) = @_;
    my $port = $o{port} // $ENV{TEST_NGINX_SERVER_PORT};
    my $res = { status => 0, headers => {}, body => '', job_id => undef };
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => $o{timeout} // 5) or return $res;
    my $hdrs = '';
    for my $k (sort keys %{ $o{headers} || {} }) {
        $hdrs .= "$k: $o{headers}{$k}\r\n";
    }
    syswrite $s, "$method $path HTTP/1.1\r\nHost: localhost\r\n$hdrs"
      . "Connection: close\r\nContent-Length: 0\r\n\r\n";
    my $sel = IO::Select->new($s);
    my $deadline = time + ($o{timeout} // 5);
    my $buf = '';
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread $s, my $chunk, 65536;
        last unless $n;
        $buf .= $chunk;
    }
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    return $res unless defined $head && $head =~ m{^HTTP/1\.\d (\d{3})};
    $res->{status} = $1;
    for my $l (split /\r\n/, $head) {
        $res->{headers}{ lc $1 } = $2 if $l =~ /^([^:]+):\s*(.*)$/;
    }
    $res->{body} = $body // '';
    $res->{job_id} = $1 if $res->{body} =~ /"job_id":"([0-9a-f]{32})"/;
    $res->{code} = $1 if $res->{body} =~ /"code":"([a-z_]+)"/;
    return $res;
}

# http($method, $path, $headers): one HTTP/1.0 request without a body to
# the nginx under test: (status, body, head). For the request lines of
# tests that check an answer byte for byte (request() parses more).
sub http {
    my ($method, $path, $headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ENV{TEST_NGINX_SERVER_PORT}, Timeout => 10) or die "connect: $!";
    print $s "$method $path HTTP/1.0\r\nHost: localhost\r\n" . ($headers // '') . "\r\n";
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($code) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    return ($code // 0, $body // '', $head // '');
}

# flood($n, $c, $method, $uri, $body): $n requests, each on a connection of
# its own, at most $c at once, each written whole before the next is
# started; the answers counted by "status code" (code: the JSON error code
# or "-"; "none" for no HTTP answer).  For tests that overload nginx.
sub flood {
    my ($n, $c, @req) = @_;
    my (%seen, $sent);
    my $sel = IO::Select->new;
    $sent = 0;
    while ($sent < $n || $sel->count) {
        while ($sent < $n && $sel->count < $c) {
            $sel->add(_start_request(@req));
            $sent++;
        }
        for my $s ($sel->can_read(30)) {
            $sel->remove($s);
            $seen{_finish_request($s)}++;
        }
    }
    return %seen;
}

sub _start_request {
    my ($method, $uri, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ENV{TEST_NGINX_SERVER_PORT}, Proto => 'tcp') or die "connect: $!";
    my $req = "$method $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $req .= "Content-Type: application/json\r\nContent-Length: "
        . length($body) . "\r\n" if defined $body;
    $req .= "\r\n" . ($body // '');
    my $off = 0;
    while ($off < length $req) {
        my $w = syswrite($s, $req, length($req) - $off, $off);
        die "write: $!" unless defined $w;
        $off += $w;
    }
    return $s;
}

sub _finish_request {
    my ($s) = @_;
    my $t = '';
    1 while sysread($s, $t, 65536, length $t);
    close $s;
    my ($status) = $t =~ m{^HTTP/1\.1 (\d+)} or return 'none';
    my ($code) = $t =~ /"code":"([a-z_]+)"/;
    return "$status " . ($code // '-');
}

# wait_for($what, $cond, $secs): polls $cond (a die counts as false) every
# 50 ms until it is true; dies "gave up waiting for $what" after $secs
# (default 20).
sub wait_for {
    my ($what, $cond, $secs) = @_;
    my $deadline = time + ($secs // 20);
    while (time < $deadline) {
        return 1 if eval { $cond->() };
        sleep 0.05;
    }
    die "gave up waiting for $what\n";
}

sub post_chat { request('POST', "/chat?query=" . ($_[0] // 'q'), @_[1 .. $#_]) }

# Polls POST /chat until it answers 202 (or $secs pass); the 202 or undef.
# $o{seen} (an array ref) collects the other answers' "status code" lines.
sub until_202 {
    my ($secs, %o) = @_;
    my $deadline = time + ($secs // 30);
    while (time < $deadline) {
        my $r = post_chat($o{query} // 'poll', %o);
        return $r if $r->{status} == 202;
        push @{ $o{seen} }, "$r->{status} " . ($r->{code} // '-') if $o{seen};
        sleep 0.05;
    }
    return undef;
}

# Steady POST /chat load (one request at a time, 20 ms apart): after
# $o{before} answers of 202, $o{kill}->() runs once; then on until $o{after}
# answers of 202 in a row (at most $o{secs}, default 90). Returns (ok, the
# results: [seconds since the kill (-1 before it), response] each).
sub load_and_kill {
    my (%o) = @_;
    my ($t_kill, $ok_after, $ok_before, @load) = (undef, 0, 0);
    my $start = time;
    while (time - $start < ($o{secs} // 90)) {
        my $r = post_chat($o{query} // 'under+load', timeout => 5);
        push @load, [ defined $t_kill ? time - $t_kill : -1, $r ];
        if (!defined $t_kill) {
            $ok_before++ if $r->{status} == 202;
            if ($ok_before == ($o{before} // 20)) {
                $o{kill}->();
                $t_kill = time;
            }
        } else {
            $ok_after = $r->{status} == 202 ? $ok_after + 1 : 0;
            last if $ok_after == ($o{after} // 20);
        }
        sleep 0.02;
    }
    return ($ok_after == ($o{after} // 20), @load);
}

# A line for the test's output: when 202s came back after the kill, and
# what was answered meanwhile.
sub recovery_summary {
    my @after = grep { $_->[0] >= 0 } @_;
    my ($first) = grep { $_->[1]{status} == 202 } @after;
    my %codes;
    $codes{"$_->[1]{status} " . ($_->[1]{code} // '-')}++
      for grep { $_->[1]{status} != 202 } @after;
    return sprintf('fail-over: 202 again %.2f s after SIGKILL; meanwhile %s',
        $first ? $first->[0] : -1,
        join(', ', map { "$codes{$_} x $_" } sort keys %codes) || 'nothing else');
}

# Polls a log file until a line matches (or secs pass): true when one did.
sub wait_log {
    my ($file, $re, $secs) = @_;
    my $deadline = Time::HiRes::time() + ($secs // 10);
    while (1) {
        if (open my $fh, '<', $file) {
            while (my $line = <$fh>) { return 1 if $line =~ $re }
        }
        return 0 if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.1);
    }
}

# The answers that are neither 202 nor 503 with Retry-After.
sub unexpected {
    return grep { $_->[1]{status} != 202
        && !($_->[1]{status} == 503 && ($_->[1]{headers}{'retry-after'} // '') eq '1') } @_;
}

1;
