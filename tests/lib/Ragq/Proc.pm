# Ragq::Proc: what tests ask of processes: polling for a condition, the
# nginx under test's master and worker pids (from its pid file under
# server_root()), and a process's resident memory.  No side effects at load,
# so any test or helper module may use it.
package Ragq::Proc;

use strict;
use warnings;

use Exporter 'import';
use Time::HiRes qw(time sleep);

our @EXPORT_OK = qw(wait_until nginx_master_pid nginx_worker_pids rss_kb);

# Polls $cond every 20 ms until it returns a true value, which is returned,
# or $timeout seconds (15) pass: then a diagnostic naming $what, and the
# last (false) value.
sub wait_until {
    my ($what, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 15);
    my $v;
    while (time < $deadline) {
        return $v if $v = $cond->();
        sleep 0.02;
    }
    Test::More::diag("gave up waiting for $what");
    return $v;
}

sub nginx_master_pid {
    my $file = main::server_root() . '/logs/nginx.pid';
    open my $f, '<', $file or die "$file: $!";
    chomp(my $pid = <$f> // '');
    return $pid;
}

# The master's live (not zombie) children, sorted.
sub nginx_worker_pids {
    my $master = nginx_master_pid();
    my @kids;
    opendir my $d, '/proc' or die "/proc: $!";
    for my $p (grep { /^\d+$/ } readdir $d) {
        open my $st, '<', "/proc/$p/stat" or next;
        push @kids, $p
          if (<$st> // '') =~ /^\d+ \(.*\) [^Z] (\d+) /s && $1 == $master;
    }
    return sort { $a <=> $b } @kids;
}

# The resident memory of a process, kB.
sub rss_kb {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/status" or die "status of $pid: $!";
    while (<$f>) { return $1 if /^VmRSS:\s+(\d+) kB/ }
    die "no VmRSS for $pid";
}

1;
