# Ragq::SlowProxy: a TCP proxy for tests, on a private loopback port, that
# passes what clients send at once and what the server answers slowly: at
# most `rate` bytes every 20 ms, or nothing at all while paused. It makes a
# large Valkey reply stream in slowly, or a server fall silent with its
# connection open.
#
# With cut_on => BYTES, the first time a client sends BYTES (a command
# carrying them: '$8\r\nfinished\r\n' is a bulk string "finished"), the
# command is passed on, then the server's answer to it (and anything not
# yet passed back on that connection) is dropped and both sides are closed:
# the command ran, its reply is lost.  Once only; ->cut says it happened.
#
# stall_commands holds what clients send on command connections (those
# whose first bytes carry no SUBSCRIBE: nginx's pub/sub connection sends
# ROLE and SUBSCRIBE in its first write) until unstall_commands, which
# passes it on in order; pub/sub connections and the answers flow on. The
# server then sees nothing while the client's commands pile up in flight.
#
#   my $p = Ragq::SlowProxy->start(to => $redis_port, rate => 8192);
#   $p->port; $p->pause; $p->resume; $p->cut; $p->stop (also at DESTROY)
#   $p->stall_commands; $p->unstall_commands
package Ragq::SlowProxy;

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes ();

sub start {
    my ($class, %o) = @_;
    my $dir = tempdir('ragq-proxy-XXXXXX', TMPDIR => 1, CLEANUP => 0);
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 16, ReuseAddr => 1) or die "listen: $!";
    my $self = bless { dir => $dir, port => $l->sockport, owner => $$ }, $class;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        _serve($l, $o{to}, $o{rate} // 8192, $dir, $o{cut_on});
        POSIX::_exit(0);
    }
    close $l;
    $self->{pid} = $pid;
    return $self;
}

sub port   { $_[0]{port} }
sub pause  { open my $f, '>', "$_[0]{dir}/paused"; close $f; 1 }
sub resume { unlink "$_[0]{dir}/paused"; 1 }
sub cut    { -e "$_[0]{dir}/cut" ? 1 : 0 }
sub stall_commands   { open my $f, '>', "$_[0]{dir}/stalled"; close $f; 1 }
sub unstall_commands { unlink "$_[0]{dir}/stalled"; 1 }

sub _serve {
    my ($l, $to, $rate, $dir, $cut_on) = @_;
    my $sel = IO::Select->new($l);
    my %peer;    # fileno => the other socket
    my %back;    # fileno of a server socket => bytes for its client
    my %server;  # fileno => 1 for server sockets
    my %tail;    # fileno of a client socket => its last bytes (cut_on)
    my %cut;     # fileno of a server socket => [when to close it anyway, it]
    my %command; # fileno of a client socket => 1 command, 0 pub/sub
    my %held;    # fileno of a client socket => bytes held (stall_commands)
    my $next = Time::HiRes::time();
    my $close = sub {
        my ($s) = @_;
        my $o = $peer{ fileno $s };
        $sel->remove($s, $o);
        for my $fd (fileno $s, fileno $o) {
            delete $_->{$fd}
              for \%peer, \%back, \%server, \%tail, \%cut, \%command, \%held;
        }
        close $s;
        close $o;
    };
    while (1) {
        for my $fd (keys %cut) {
            $close->($cut{$fd}[1]) if $cut{$fd} && $cut{$fd}[0] < Time::HiRes::time();
        }
        if (%held && !-e "$dir/stalled") {
            # released: in order, 64 kB a turn, the answers flowing meanwhile
            for my $fd (keys %held) {
                my $chunk = substr($held{$fd}, 0, 65536, '');
                syswrite $peer{$fd}, $chunk;
                delete $held{$fd} unless length $held{$fd};
            }
        }
        for my $s ($sel->can_read(0.005)) {
            if ($s == $l) {
                my $c = $l->accept or next;
                my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                    PeerPort => $to, Proto => 'tcp') or do { close $c; next };
                $peer{ fileno $c } = $u;
                $peer{ fileno $u } = $c;
                $server{ fileno $u } = 1;
                $back{ fileno $u } = '';
                $sel->add($c, $u);
                next;
            }
            next unless defined fileno $s;    # closed in this round
            my $n = sysread $s, my $buf, 65536;
            my $o = $peer{ fileno $s };
            if (!$n || $cut{ fileno $s }) {
                # EOF, or the answer to the command cut_on found: dropped
                $close->($s);
                next;
            }
            if ($server{ fileno $s }) {
                $back{ fileno $s } .= $buf;
            } else {
                my $fd = fileno $s;
                $command{$fd} //= index($buf, 'SUBSCRIBE') < 0 ? 1 : 0;
                if ($command{$fd} && (exists $held{$fd} || -e "$dir/stalled")) {
                    $held{$fd} .= $buf;
                    next;
                }
                syswrite $o, $buf;
                next unless defined $cut_on && !-e "$dir/cut";
                my $seen = ($tail{ fileno $s } // '') . $buf;
                if (index($seen, $cut_on) >= 0) {
                    open my $f, '>', "$dir/cut";
                    close $f;
                    $back{ fileno $o } = '';
                    $cut{ fileno $o } = [Time::HiRes::time() + 2, $o];
                }
                $tail{ fileno $s } = length $seen > length $cut_on
                                     ? substr($seen, -length $cut_on) : $seen;
            }
        }
        next if Time::HiRes::time() < $next || -e "$dir/paused";
        $next = Time::HiRes::time() + 0.02;
        for my $fd (keys %back) {
            next unless length $back{$fd};
            my $chunk = substr($back{$fd}, 0, $rate, '');
            syswrite $peer{$fd}, $chunk;
        }
    }
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $$ == $self->{owner};
    kill 'KILL', $self->{pid};
    waitpid($self->{pid}, 0);
    $self->{pid} = undef;
    system('rm', '-rf', $self->{dir});
}

sub DESTROY { local ($?, $!, $@); $_[0]->stop }

1;
