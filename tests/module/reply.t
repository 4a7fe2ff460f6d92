# The module's reply reader (ngx_http_ragq_reply.c) against a Valkey that
# sends what is not RESP, or announces more than it sends. A fake server
# (forked here) answers ROLE as a primary and every other command with the
# bytes in its mode file, set by each block. The client gets a 503, nginx
# logs why and does not crash; an array announced with 2,000,000,000
# elements is not allocated before its elements are there (hiredis's
# reader, which this one replaced, allocated 16 GB for it at once).
# One command in RESP (an array of bulk strings) off the front of $$buf.
sub next_command {
    my ($buf) = @_;
    return undef unless $$buf =~ /\A\*(\d+)\r\n/;
    my ($n, $at, @args) = ($1, length($&));
    for (1 .. $n) {
        return undef unless substr($$buf, $at) =~ /\A\$(\d+)\r\n/;
        my $len = $1;
        $at += length($&);
        return undef if length($$buf) < $at + $len + 2;
        push @args, substr($$buf, $at, $len);
        $at += $len + 2;
    }
    substr($$buf, 0, $at) = '';
    return \@args;
}

sub fake_valkey {
    my ($l) = @_;
    require IO::Select;
    my $sel = IO::Select->new($l);
    my %buf;
    # nginx drops the connection after a protocol error: a write after that
    # must not end the server
    $SIG{PIPE} = 'IGNORE';
    alarm 600;
    for (;;) {
        for my $s ($sel->can_read(1)) {
            if ($s == $l) {
                my $c = $l->accept or next;
                $sel->add($c);
                $buf{$c} = '';
                next;
            }
            my $n = sysread($s, my $chunk, 65536);
            if (!$n) {
                $sel->remove($s);
                delete $buf{$s};
                close $s;
                next;
            }
            $buf{$s} .= $chunk;
            while (my $cmd = next_command(\$buf{$s})) {
                my $name = uc $cmd->[0];
                my $out;
                if ($name eq 'ROLE') {
                    $out = "*3\r\n\$6\r\nmaster\r\n:0\r\n*0\r\n";
                } elsif ($name eq 'PING') {
                    $out = "+PONG\r\n";
                } else {
                    open my $fh, '<', $main::Mode or next;
                    local $/;
                    $out = <$fh>;
                }
                syswrite($s, $out);
            }
        }
    }
}

sub mode {
    my ($bytes) = @_;
    open my $fh, '>', "$main::Mode.new" or die "mode: $!";
    print $fh $bytes;
    close $fh;
    rename "$main::Mode.new", $main::Mode or die "mode: $!";
}

END {
    if ($$ == $main::Parent) {
        kill 'KILL', $main::Fake if $main::Fake;
        waitpid($main::Fake, 0) if $main::Fake;
        system('rm', '-rf', $main::Dir);
    }
}

use Test::Nginx::Socket;
use IO::Socket::INET ();
use POSIX ();

our $Dir = "/tmp/ragq-reply-t-$$";
mkdir $Dir;
our $Mode = "$Dir/mode";
our $Parent = $$;
{
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 16, ReuseAddr => 1) or die "listen: $!";
    $ENV{TEST_NGINX_FAKE_VALKEY_PORT} = $l->sockport;
    our $Fake = fork // die "fork: $!";
    if ($Fake == 0) {
        fake_valkey($l);
        POSIX::_exit(0);
    }
    close $l;
}

no_shuffle();
no_long_string();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'EOF') unless defined $block->http_config;
ragq_valkey 127.0.0.1:$TEST_NGINX_FAKE_VALKEY_PORT;
ragq_valkey_timeout 500ms;
EOF
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix rp; ragq_enqueue; }
EOF
    $block->set_value('request', "POST /chat?query=q\n") unless defined $block->request;
});

plan tests => 26;
run_tests();

__DATA__

=== TEST 1: a reply that starts with no RESP type byte: 503, the connection dropped, the reason logged
--- init
main::mode("?what\r\n");
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like chomp
^\{"error":\{"code":"valkey_unavailable","message":"[^"]+"\}\}$
--- error_log eval
qr/connection lost: protocol error from 127\.0\.0\.1:\d+: not a reply type byte/
--- no_error_log
[alert]
[emerg]



=== TEST 2: a bulk string of length -5: 503, logged
--- init
main::mode("\$-5\r\n");
--- error_code: 503
--- response_body_like chomp
"code":"valkey_unavailable"
--- error_log eval
qr/protocol error from 127\.0\.0\.1:\d+: bad bulk string length/
--- no_error_log
[alert]



=== TEST 3: arrays nested 9 deep (hiredis 0.14's limit is 8): 503, logged
--- init
main::mode(("*1\r\n" x 9) . ":1\r\n");
--- error_code: 503
--- response_body_like chomp
"code":"valkey_unavailable"
--- error_log eval
qr/protocol error from 127\.0\.0\.1:\d+: arrays nested too deep/
--- no_error_log
[alert]



=== TEST 4: an integer reply with a leading zero: 503, logged
--- init
main::mode(":01\r\n");
--- error_code: 503
--- response_body_like chomp
"code":"valkey_unavailable"
--- error_log eval
qr/protocol error from 127\.0\.0\.1:\d+: bad integer/
--- no_error_log
[alert]



=== TEST 5: an array of 2,000,000,000 elements announced, none sent: the request times out (503 valkey_timeout), nothing allocated for it
--- init
main::mode("*2000000000\r\n");
--- error_code: 503
--- response_body_like chomp
"code":"valkey_timeout"
--- no_error_log eval
[qr/malloc: \S+:\d{8,}/, qr/\[alert\]/]



=== TEST 6: the same with 1,000 elements sent of 2,000,000,000 announced: still nothing allocated for them
--- init
main::mode("*2000000000\r\n" . (":1\r\n" x 1000));
--- error_code: 503
--- response_body_like chomp
"code":"valkey_timeout"
--- no_error_log eval
[qr/malloc: \S+:\d{8,}/, qr/\[alert\]/]
