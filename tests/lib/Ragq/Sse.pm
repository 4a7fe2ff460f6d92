# Ragq::Sse: a test client for GET /job-stream (Server-Sent Events).
#
# Owns: opening streams on raw sockets (so that many can be open at once
# and read with poll), reading them until a condition or their end, and
# taking a response apart: status, headers, the de-chunked body, its events
# ({event, id, data, retry}) and comments, the text of the token events
# after the last reset; waiting for nginx's subscriptions (PUBSUB NUMSUB).
# Used by the tests/module/ stream and lifecycle tests and
# tests/worker/stream_nginx.t.
package Ragq::Sse;

use strict;
use warnings;

use Exporter 'import';
use IO::Poll qw(POLLIN POLLHUP POLLERR);
use IO::Socket::INET ();
use JSON::PP ();
use Encode qw(encode_utf8);
use Time::HiRes ();
use Ragq::Valkey ();
use Ragq::Proc qw(wait_until);    # exported again, for older callers

our @EXPORT_OK = qw(send_get send_post read_all read_until parse events text_of ids_of
                    kinds_of numsub wait_until);

sub send_get {
    my ($path, $headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => main::server_port(), Proto => 'tcp') or die "connect: $!";
    syswrite $s, "GET $path HTTP/1.1\r\nHost: localhost\r\n"
      . ($headers // '') . "Connection: close\r\n\r\n";
    return $s;
}

# POST with an empty body (e.g. /job-cancel); the socket, for read_all.
sub send_post {
    my ($path, $headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => main::server_port(), Proto => 'tcp') or die "connect: $!";
    syswrite $s, "POST $path HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
      . ($headers // '') . "Connection: close\r\n\r\n";
    return $s;
}

# Reads every socket until it closes (or 30 s); the raw responses in order.
sub read_all {
    my @socks = @_;
    my (%buf, %idx);
    @idx{ map { fileno $_ } @socks } = 0 .. $#socks;
    my $poll = IO::Poll->new;
    $poll->mask($_ => POLLIN) for @socks;
    my $deadline = time + 30;
    while ($poll->handles && time < $deadline) {
        $poll->poll(0.5);
        for my $s ($poll->handles(POLLIN | POLLHUP | POLLERR)) {
            my $n = sysread $s, my $chunk, 65536;
            if ($n) {
                $buf{ $idx{ fileno $s } } .= $chunk;
            } else {
                $poll->remove($s);
                close $s;
            }
        }
    }
    return map { $buf{$_} // '' } 0 .. $#socks;
}

# Reads what s has so far, until cond(text) or 10 s.
sub read_until {
    my ($s, $cond) = @_;
    my $text = '';
    my $poll = IO::Poll->new;
    $poll->mask($s => POLLIN);
    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline && !$cond->($text)) {
        $poll->poll(0.2);
        next unless $poll->handles(POLLIN | POLLHUP | POLLERR);
        my $n = sysread $s, my $chunk, 65536;
        last unless $n;
        $text .= $chunk;
    }
    return $text;
}

# (code, {header => value}, body) of a raw response, the body de-chunked.
sub parse {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    $head //= '';
    $body //= '';
    my ($code) = $head =~ m{^HTTP/1\.1 (\d+)};
    my %h;
    for (split /\r\n/, $head) { $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/ }
    if (($h{'transfer-encoding'} // '') eq 'chunked') {
        my $out = '';
        while ($body =~ s/\A([0-9a-f]+)\r\n//i) {
            my $n = hex $1;
            last if $n == 0;
            $out .= substr($body, 0, $n, '');
            $body =~ s/\A\r\n//;
        }
        $body = $out;
    }
    return ($code // 0, \%h, $body);
}

# The events of an SSE body: ([{event, id, data}], number of comments).
sub events {
    my ($body) = @_;
    my (@ev, $comments);
    $comments = 0;
    for my $block (split /\n\n/, $body) {
        my %e;
        for my $line (split /\n/, $block) {
            if ($line =~ /^:/) { $comments++; next }
            $e{$1} = $2 if $line =~ /^(event|id|data|retry): ?(.*)$/;
        }
        push @ev, \%e if %e;
    }
    return (\@ev, $comments);
}

# The text of the token events after the last reset, as bytes.
sub text_of {
    my ($ev) = @_;
    my $t = '';
    for (@$ev) {
        $t = '' if $_->{event} eq 'reset';
        $t .= encode_utf8(JSON::PP->new->utf8->decode($_->{data})->{text})
          if $_->{event} eq 'token';
    }
    return $t;
}

sub ids_of { join ',', map { $_->{id} } grep { defined $_->{id} } @{ $_[0] } }
sub kinds_of { join ',', map { $_->{event} // 'retry' } @{ $_[0] } }

# The subscribers of a channel: on the shared test server, or on $server
# (a Ragq::ValkeyHA server) when given.
sub numsub {
    my ($ch, $server) = @_;
    my @r = $server ? $server->cli_list('PUBSUB', 'NUMSUB', $ch)
                    : Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', $ch);
    return $r[1] // 0;
}

1;
