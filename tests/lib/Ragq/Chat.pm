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

sub post_chat { request('POST', "/chat?query=" . ($_[0] // 'q'), @_[1 .. $#_]) }

# Polls POST /chat until it answers 202 (or $secs pass); the 202 or undef.
sub until_202 {
    my ($secs, %o) = @_;
    my $deadline = time + ($secs // 30);
    while (time < $deadline) {
        my $r = post_chat($o{query} // 'poll', %o);
        return $r if $r->{status} == 202;
        sleep 0.05;
    }
    return undef;
}

1;
