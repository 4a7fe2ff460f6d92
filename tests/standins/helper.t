# Tests of Ragq::Standin's process handling: start failures die with the stand-in's stderr, and
# no stand-in outlives its test (DESTROY, stop, and a SIGKILLed parent).
use strict;
use warnings;
use Test::More tests => 6;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Ragq::Standin;

sub gone_within {
    my ($pid, $secs) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 unless kill 0, $pid;
        sleep 0.05;
    }
    return 0;
}

my $pid;
{
    my $s = Ragq::Standin->start;
    $pid = $s->pid;
    ok(kill(0, $pid), 'running while in scope');
}
ok(gone_within($pid, 3), 'DESTROY stops it when the object goes out of scope');

my $err = eval { Ragq::Standin->start(data => '/nonexistent/standin-data.json'); 1 } ? '' : $@;
like($err, qr/No such file or directory/, 'start dies with the stand-in stderr');

# A parent killed with SIGKILL runs no DESTROY or END: --exit-with-parent covers that.
pipe(my $rd, my $wr) or die $!;
my $child = fork() // die $!;
if ($child == 0) {
    close $rd;
    my $s = Ragq::Standin->start;
    syswrite $wr, $s->pid . "\n";
    sleep 30;
    POSIX::_exit(0);
}
close $wr;
my $spid = <$rd>;
chomp $spid;
ok($spid && kill(0, $spid), 'stand-in of the child is running');
kill 'KILL', $child;
waitpid($child, 0);
ok(gone_within($spid, 3), 'it exits when its parent is SIGKILLed');

my $s = Ragq::Standin->start;
my $last = $s->pid;
$s->stop;
ok(!kill(0, $last) && !$s->pid, 'stop is explicit and idempotent');
$s->stop;
