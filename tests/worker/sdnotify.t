# systemd's notification protocol (worker/sdnotify.c), heard on a datagram
# socket of the test's own as NOTIFY_SOCKET: READY=1 (with a STATUS= line)
# once the worker says "ready", never while Valkey is unreachable; WATCHDOG=1
# every WATCHDOG_USEC / 2 from the loop, also while Valkey is down (with
# STATUS= lines saying so), none while the process is stopped (SIGSTOP),
# none when WATCHDOG_PID names another process; STOPPING=1 on SIGTERM; an
# abstract socket ("@name"); a socket nobody listens on: one warning, the
# worker goes on; and without NOTIFY_SOCKET the worker runs as before.
use strict;
use warnings;
use Test::More;
use Cwd qw(abs_path);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Socket::UNIX;
use Socket qw(SOCK_DGRAM);
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Worker;

my $P   = "sdn$$";
my $tmp = tempdir(CLEANUP => 1);

my %env = (RAGQ_PREFIX => $P, RAGQ_STORE_PATH => "$tmp/store", WATCHDOG_USEC => 200000);

# A datagram socket at path (or "\0name": abstract) that systemd would hold.
sub listener {
    my ($where) = @_;
    my $s = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $where)
      or die "bind $where: $!";
    return $s;
}

# The datagrams that come within secs, as [time, text]; stops early at the
# first for which until returns true.
sub collect {
    my ($sock, $secs, $until) = @_;
    my $deadline = time + $secs;
    my @got;
    while ((my $left = $deadline - time) > 0) {
        my $rin = '';
        vec($rin, fileno($sock), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $left);
        next if $n <= 0;
        my $buf;
        next unless defined $sock->recv($buf, 4096);
        push @got, [time, $buf];
        return @got if $until && $until->($buf);
    }
    return @got;
}

sub count { my $re = shift; return scalar grep { $_->[1] =~ $re } @_ }
sub texts { return join(' | ', map { $_->[1] =~ s/\n/\\n/gr } @_) }

# ---- Valkey unreachable: the loop turns (pings), READY=1 never comes ----------
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1);
my $closed = $l->sockport;
close $l;
my $s = listener("$tmp/notify-x");
my $w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'sdn-x',
    NOTIFY_SOCKET => "$tmp/notify-x", RAGQ_VALKEY_URL => "redis://127.0.0.1:$closed",
    RAGQ_CONNECT_TIMEOUT => '1500ms' });
my @got = collect($s, 1.2);
ok(count(qr/^WATCHDOG=1$/, @got) >= 3, 'watchdog pings come while Valkey cannot be reached')
    or diag texts(@got);
is($w->wait_exit(10) >> 8, 1, 'that worker gives up (exit 1)') or diag $w->log;
push @got, collect($s, 0.2);
is(count(qr/READY=1/, @got), 0, 'and never said READY=1') or diag texts(@got);
close $s;

# ---- a worker that gets ready ------------------------------------------------
$s = listener("$tmp/notify-a");
$w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'sdn-a',
    NOTIFY_SOCKET => "$tmp/notify-a" });
my $ready_logged;
@got = collect($s, 15, sub {
    return 0 unless $_[0] =~ /READY=1/;
    $ready_logged = $w->log =~ /info: ready: /;
    return 1;
});
my ($ready) = grep { $_->[1] =~ /READY=1/ } @got;
ok($ready, 'READY=1 arrives') or diag texts(@got), $w->log;
ok($ready_logged, 'after the worker logged its ready line') or diag $w->log;
like($ready ? $ready->[1] : '', qr/^READY=1\nSTATUS=claiming jobs from \Q$P\E:jobs$/,
     'with a STATUS= line naming the stream');
ok(count(qr/^WATCHDOG=1$/, @got) >= 1, 'pings came before it too') or diag texts(@got);

@got = collect($s, 1);
my @pings = grep { $_->[1] eq 'WATCHDOG=1' } @got;
ok(@pings >= 3, 'WATCHDOG=1 keeps coming (every WATCHDOG_USEC / 2)')
    or diag scalar(@pings), ' pings: ', texts(@got);
ok(@pings <= 15, 'not much more often than every 100 ms') or diag scalar(@pings);
is(count(qr/READY=1/, @got), 0, 'READY=1 is said once');

# Valkey stopped: the pings go on (the worker reconnects, it is not stuck).
Ragq::Valkey::stop();
@got = collect($s, 10, sub { $_[0] =~ /^STATUS=Valkey lost/ });
ok(count(qr/^STATUS=Valkey lost \(\w+ connection\): .*; reconnecting$/, @got),
   'Valkey stopped: STATUS= says it is lost') or diag texts(@got), $w->log;
@got = collect($s, 1);
ok(count(qr/^WATCHDOG=1$/, @got) >= 3, 'and the pings go on while it is down')
    or diag texts(@got), $w->log;
Ragq::Valkey::start();
@got = collect($s, 15, sub { $_[0] =~ /^STATUS=claiming/ });
ok(count(qr/^STATUS=claiming jobs from \Q$P\E:jobs$/, @got), 'Valkey back: STATUS= says so')
    or diag texts(@got), $w->log;
is(count(qr/READY=1/, @got), 0, 'without another READY=1');

# The process stopped (a hung loop, as systemd sees it): no pings.
kill 'STOP', $w->pid;
collect($s, 0.3);    # what was sent before the stop
@got = collect($s, 1);
is(count(qr/WATCHDOG=1/, @got), 0, 'SIGSTOP: no pings while the loop cannot turn')
    or diag texts(@got);
kill 'CONT', $w->pid;
@got = collect($s, 1.5);
ok(count(qr/^WATCHDOG=1$/, @got) >= 3, 'SIGCONT: they come again') or diag texts(@got);

# SIGTERM: STOPPING=1, then a clean exit.
$w->signal('TERM');
@got = collect($s, 10, sub { $_[0] =~ /STOPPING=1/ });
my ($stopping) = grep { $_->[1] =~ /STOPPING=1/ } @got;
ok($stopping, 'SIGTERM: STOPPING=1 arrives') or diag texts(@got), $w->log;
like($stopping ? $stopping->[1] : '', qr/^STOPPING=1\nSTATUS=stopping: waiting up to \d+ ms for 0 job\(s\)$/,
     'with a STATUS= line');
is($w->wait_exit(10), 0, 'and the worker exits 0') or diag $w->log;
close $s;

# ---- WATCHDOG_PID of another process: READY=1, but no pings -----------------
$s = listener("$tmp/notify-b");
$w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'sdn-b',
    NOTIFY_SOCKET => "$tmp/notify-b", WATCHDOG_PID => $$ });
@got = collect($s, 15, sub { $_[0] =~ /READY=1/ });
ok(count(qr/READY=1/, @got), 'WATCHDOG_PID another pid: READY=1 arrives') or diag $w->log;
push @got, collect($s, 1);
is(count(qr/WATCHDOG=1/, @got), 0, 'and no WATCHDOG=1 (the pings are not ours to send)')
    or diag texts(@got);
is($w->stop, 0, 'SIGTERM: exit 0');
close $s;

# WATCHDOG_PID of the worker itself (a shell that execs it keeps its pid).
my $bin = abs_path(Ragq::Worker::binary());
open my $sh, '>', "$tmp/own-pid" or die $!;
print $sh "#!/bin/sh\nWATCHDOG_PID=\$\$ exec '$bin' \"\$\@\"\n";
close $sh;
chmod 0755, "$tmp/own-pid";
$s = listener("$tmp/notify-c");
$w = Ragq::Worker->start(binary => "$tmp/own-pid", env => { %env, RAGQ_CONSUMER => 'sdn-c',
    NOTIFY_SOCKET => "$tmp/notify-c" });
@got = collect($s, 15, sub { $_[0] =~ /READY=1/ });
push @got, collect($s, 1);
ok(count(qr/READY=1/, @got) && count(qr/^WATCHDOG=1$/, @got) >= 3,
   'WATCHDOG_PID our own pid: READY=1 and the pings') or diag texts(@got), $w->log;
is($w->stop, 0, 'SIGTERM: exit 0');
close $s;

# ---- an abstract socket ------------------------------------------------------
my $name = "ragq-sdnotify-$$-" . int(rand(1e9));
$s = listener("\0$name");
$w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'sdn-d', NOTIFY_SOCKET => "\@$name" });
@got = collect($s, 15, sub { $_[0] =~ /READY=1/ });
ok(count(qr/^READY=1\nSTATUS=claiming jobs/, @got), 'NOTIFY_SOCKET=@name: READY=1 on the abstract socket')
    or diag texts(@got), $w->log;
push @got, collect($s, 1);
ok(count(qr/^WATCHDOG=1$/, @got) >= 3, 'and the pings') or diag texts(@got);
$w->signal('TERM');
@got = collect($s, 10, sub { $_[0] =~ /STOPPING=1/ });
ok(count(qr/STOPPING=1/, @got), 'and STOPPING=1');
is($w->wait_exit(10), 0, 'exit 0') or diag $w->log;
close $s;

# ---- nobody listens: one warning, the worker goes on ---------------------------
$w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'sdn-e',
    NOTIFY_SOCKET => "$tmp/nobody" });
ok($w->ready, 'NOTIFY_SOCKET where nobody listens: the worker is ready') or diag $w->log;
sleep 1;    # READY=1 and ten pings lost
my @warned = $w->log =~ /warn: systemd notification .* not sent to NOTIFY_SOCKET \Q$tmp\E\/nobody: /g;
is(scalar @warned, 1, 'one warning, not one per lost datagram') or diag $w->log;
ok($w->alive, 'still running');
is($w->stop, 0, 'SIGTERM: exit 0') or diag $w->log;

# ---- no NOTIFY_SOCKET: as before --------------------------------------------
$s = listener("$tmp/notify-f");
$w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'sdn-f' });
ok($w->ready, 'without NOTIFY_SOCKET (WATCHDOG_USEC set): ready') or diag $w->log;
my $id = Ragq::Worker::enqueue(prefix => $P, query => 'what is ragq?');
is(Ragq::Worker::wait_final($P, [$id], 30), 1, 'and runs a job to its end') or diag $w->log;
@got = collect($s, 0.5);
is(scalar @got, 0, 'nothing sent anywhere we listen');
is($w->stop, 0, 'SIGTERM: exit 0') or diag $w->log;
unlike($w->log, qr/NOTIFY_SOCKET|systemd/, 'and nothing logged about systemd');
close $s;

Ragq::Valkey::cmd('DEL', "$P:jobs", "$P:job:$id", "$P:out:$id", "$P:dead");
done_testing();
