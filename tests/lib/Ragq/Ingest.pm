# Ragq::Ingest: runs ragq-ingest (binary from $ENV{RAGQ_BUILD}, default
# build/) for tests, and the file helpers those tests share.
#
#   my ($rc, $out, $err) = ingest(\%env, @args);
#
# The program runs with a clean environment (no RAGQ_, OPENAI_ or QDRANT_
# variable of the caller's but RAGQ_BUILD) plus %env, and is killed after
# 60 s ($rc 'timeout'); its stdout and stderr are returned, each cut to its
# first MiB (a broken walk once wrote gigabytes of notes).
package Ragq::Ingest;

use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);

our @EXPORT_OK = qw(ingest binary write_file slurp_raw store_header);

my $Tmp;

sub binary { ($ENV{RAGQ_BUILD} || 'build') . '/ragq-ingest' }

sub ingest {
    my ($env, @args) = @_;
    $Tmp //= tempdir('ragq-ingest-run-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $bin = binary();
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        delete @ENV{ grep { /^(RAGQ_|OPENAI_|QDRANT_)/ && $_ ne 'RAGQ_BUILD' } keys %ENV };
        $ENV{$_} = $env->{$_} for keys %$env;
        open STDOUT, '>', "$Tmp/out" or POSIX::_exit(127);
        open STDERR, '>', "$Tmp/err" or POSIX::_exit(127);
        exec $bin, @args or POSIX::_exit(127);
    }
    my $deadline = time + 60;
    my $rc;
    while (1) {
        my $w = waitpid($pid, POSIX::WNOHANG());
        if ($w == $pid) { $rc = $? >> 8; last }
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $rc = 'timeout';
            last;
        }
        sleep 0.02;
    }
    return ($rc, _head("$Tmp/out"), _head("$Tmp/err"));
}

sub _head {
    my ($path) = @_;
    my $s = '';
    open my $f, '<:raw', $path or return '';
    read($f, $s, 1 << 20);
    return $s;
}

sub write_file {
    my ($path, $bytes) = @_;
    open my $f, '>:raw', $path or die "$path: $!";
    print $f $bytes;
    close $f;
}

sub slurp_raw {
    my ($path) = @_;
    open my $f, '<:raw', $path or return '';
    local $/;
    return scalar <$f> // '';
}

# The header of a local store file: (magic, version, dim, count).
sub store_header {
    my ($path) = @_;
    open my $f, '<:raw', $path or return;
    read($f, my $h, 24) == 24 or return;
    my ($magic, $ver, $dim, $lo, $hi) = unpack('a8 V V V V', $h);
    return ($magic, $ver, $dim, $lo + $hi * 2**32);
}

1;
