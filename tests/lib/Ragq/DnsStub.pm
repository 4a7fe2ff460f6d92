# Ragq::DnsStub: a DNS server for tests, on a private loopback UDP port, so
# that nginx's "resolver" can be pointed at names whose address the test
# changes. It answers every A query with the address set by answer() (TTL
# 0), AAAA and others with no records, and counts the queries per name.
#
#   my $dns = Ragq::DnsStub->start('127.0.0.1');   # forked child
#   $dns->port; $dns->answer('127.0.0.2'); $dns->queries('localhost');
#   $dns->stop;                                    # also at DESTROY
package Ragq::DnsStub;

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Socket::INET ();
use POSIX ();

sub start {
    my ($class, $ip) = @_;
    my $dir = tempdir('ragq-dns-XXXXXX', TMPDIR => 1, CLEANUP => 0);
    my $self = bless { dir => $dir, owner => $$ }, $class;
    $self->answer($ip);
    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'udp') or die "Ragq::DnsStub: udp socket: $!";
    $self->{port} = $sock->sockport;
    my $pid = fork();
    die "Ragq::DnsStub: fork: $!" unless defined $pid;
    if ($pid == 0) {
        _serve($sock, $dir);
        POSIX::_exit(0);
    }
    close $sock;
    $self->{pid} = $pid;
    return $self;
}

sub port { $_[0]{port} }

sub answer {
    my ($self, $ip) = @_;
    open my $f, '>', "$self->{dir}/answer.tmp" or die "$self->{dir}: $!";
    print $f $ip;
    close $f;
    rename "$self->{dir}/answer.tmp", "$self->{dir}/answer" or die "rename: $!";
}

# how many A queries for $name came in
sub queries {
    my ($self, $name) = @_;
    open my $f, '<', "$self->{dir}/queries" or return 0;
    my $n = 0;
    while (<$f>) {
        chomp;
        $n++ if $_ eq "A $name";
    }
    return $n;
}

sub _serve {
    my ($sock, $dir) = @_;
    while (1) {
        my $from = $sock->recv(my $q, 512);
        next unless defined $from && length($q) >= 17;
        my ($id, $flags, $qd) = unpack('n n n', $q);
        my ($name, $p) = ('', 12);
        while ($p < length $q) {
            my $len = ord substr($q, $p, 1);
            $p++;
            last if $len == 0;
            $name .= ($name eq '' ? '' : '.') . substr($q, $p, $len);
            $p += $len;
        }
        my ($type) = unpack('n', substr($q, $p, 2));
        my $question = substr($q, 12, $p + 4 - 12);
        open my $log, '>>', "$dir/queries";
        print $log ($type == 1 ? 'A' : "T$type") . " $name\n";
        close $log;
        my $answer = '';
        my $an = 0;
        if ($type == 1 && open my $f, '<', "$dir/answer") {
            my $ip = <$f>;
            close $f;
            $answer = pack('n n n N n', 0xc00c, 1, 1, 0, 4)
              . pack('C4', split /\./, $ip);
            $an = 1;
        }
        my $reply = pack('n n n n n n', $id, 0x8180, 1, $an, 0, 0) . $question . $answer;
        $sock->send($reply, 0, $from);
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
