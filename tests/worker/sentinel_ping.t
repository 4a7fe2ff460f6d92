# ragq-worker and a +switch-master that a sentinel pushes while the
# worker's keep-alive PING waits for its pong (DEVELOPERS.md, "Sentinel"):
# the message comes first, then ["pong", ""].  A fake sentinel (below, in
# Perl) names the suite's redis-server as the primary, and at the first
# PING on its subscribed connection switches to a second redis-server and
# writes the +switch-master message just before the pong, in one write.
# The worker must follow it: a job queued on the new primary runs.  Before
# the fix the message was taken as the PING's reply and dropped (the pong
# then went to the message hook, ignored): the worker stayed on the old
# primary, which still says master, for good.
#
# The PING is sent 10 s after the subscription (RAGQ_SENTINEL_PING_MS in
# worker/valkey_sentinel.c, not a setting), so this file takes ~12 s.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes qw(time sleep);
use Ragq::Standin;
use Ragq::Valkey;
use Ragq::Worker;
use Ragq::ValkeyHA;

my $P = "wp$$";
my $NAME = 'ragqmaster';

my $ha = Ragq::ValkeyHA->new;
my $new = $ha->server;
my $old_port = Ragq::Valkey::port();
my $new_port = $new->port;
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);

# ---- the fake sentinel ---------------------------------------------------

sub bulk { my $v = shift; return '$' . length($v) . "\r\n$v\r\n" }
sub arr  { return '*' . scalar(@_) . "\r\n" . join('', map { bulk($_) } @_) }

# One command (an array of bulk strings, as the worker writes them) off the
# front of $$buf, or undef when it is not all there yet.
sub take_command {
    my ($buf) = @_;
    return undef unless $$buf =~ /\A\*(\d+)\r\n/;
    my ($n, $pos, @args) = ($1, length($&));
    for (1 .. $n) {
        return undef unless substr($$buf, $pos) =~ /\A\$(\d+)\r\n/;
        my $len = $1;
        $pos += length($&);
        return undef if length($$buf) < $pos + $len + 2;
        push @args, substr($$buf, $pos, $len);
        $pos += $len + 2;
    }
    substr($$buf, 0, $pos, '');
    return \@args;
}

# Answers SENTINEL get-master-addr-by-name, PING, SUBSCRIBE; records what it
# did in $dir/log and the switch in $dir/switched.
sub fake_sentinel {
    my ($l, $dir) = @_;
    my $primary = $old_port;
    my $sel = IO::Select->new($l);
    my (%buf, %subscribed);
    open my $log, '>>', "$dir/log" or die "$dir/log: $!";
    $log->autoflush(1);
    while (1) {
        for my $c ($sel->can_read(1)) {
            if ($c == $l) {
                my $a = $l->accept or next;
                $sel->add($a);
                $buf{ fileno $a } = '';
                next;
            }
            my $fd = fileno $c;
            my $chunk;
            if (!sysread($c, $chunk, 65536)) {
                $sel->remove($c);
                delete $buf{$fd};
                delete $subscribed{$fd};
                close $c;
                next;
            }
            $buf{$fd} .= $chunk;
            while (my $cmd = take_command(\$buf{$fd})) {
                my $verb = uc $cmd->[0];
                my $out;
                print $log "conn $fd: @$cmd\n";
                if ($verb eq 'PING' && $subscribed{$fd}) {
                    $out = arr('pong', '');
                    if ($primary == $old_port) {
                        # The fail-over falls inside the PING's round trip.
                        $primary = $new_port;
                        $out = arr('message', '+switch-master',
                                   "$NAME 127.0.0.1 $old_port 127.0.0.1 $new_port") . $out;
                        print $log "conn $fd: +switch-master written before the pong\n";
                        open my $f, '>', "$dir/switched";
                        close $f;
                    }
                } elsif ($verb eq 'PING') {
                    $out = "+PONG\r\n";
                } elsif ($verb eq 'SENTINEL' && ($cmd->[2] // '') eq $NAME) {
                    $out = arr('127.0.0.1', $primary);
                } elsif ($verb eq 'SENTINEL') {
                    $out = "*-1\r\n";
                } elsif ($verb eq 'SUBSCRIBE') {
                    $out = join '', map {
                        $subscribed{$fd}++;
                        "*3\r\n" . bulk('subscribe') . bulk($cmd->[$_]) . ":$subscribed{$fd}\r\n"
                    } 1 .. $#$cmd;
                } else {
                    $out = "-ERR unknown command '$cmd->[0]'\r\n";
                }
                syswrite $c, $out;
            }
        }
    }
}

my $dir = tempdir('ragq-fakesent-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
                              Listen => 16, ReuseAddr => 1) or die "listen: $!";
my $fake_port = $l->sockport;
my $fake = fork();
die "fork: $!" unless defined $fake;
if ($fake == 0) {
    fake_sentinel($l, $dir);
    POSIX::_exit(0);
}
close $l;
my $owner = $$;
END {
    if ($fake && $$ == $owner) {
        local $?;
        kill 'KILL', $fake;
        waitpid($fake, 0);
    }
}

sub fake_log {
    open my $f, '<', "$dir/log" or return '';
    local $/;
    return <$f> // '';
}

# ---- the worker ------------------------------------------------------------

my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_CONNECT_TIMEOUT => '1s',
    RAGQ_VALKEY_URL => "redis+sentinel://127.0.0.1:$fake_port/$NAME" });
ok($w->ready(15), 'ready through the fake sentinel') or diag $w->log;
my $t_ready = time;
my $id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'a job on the first primary');

my $later;
{
    local $Ragq::Worker::VALKEY = $new;
    $later = Ragq::Worker::enqueue(prefix => $P);
}

# The first keep-alive PING comes 10 s after the subscription.
my $deadline = time + 20;
sleep 0.1 while !-e "$dir/switched" && time < $deadline;
ok(-e "$dir/switched", 'the PING came; +switch-master was written just before its pong')
  or diag fake_log();
diag(sprintf('the PING came %.1f s after the worker was ready', time - $t_ready));
{
    local $Ragq::Worker::VALKEY = $new;
    is(Ragq::Worker::wait_final($P, [$later], 8), 1, 'the worker moved: a job on the new primary ran')
      or diag $w->log;
    is(Ragq::Worker::field($P, $later, 'status'), 'finished', 'and finished');
}
like($w->log, qr/sentinel: \+switch-master: the primary "$NAME" moved from 127\.0\.0\.1:$old_port to 127\.0\.0\.1:$new_port/,
     'logs the move');
unlike($w->log, qr/protocol error|sentinel 127\.0\.0\.1:$fake_port: /,
       'the sentinel connection stays up');
like(fake_log(), qr/^conn (\d+): SUBSCRIBE \+switch-master\n(?:.*\n)*?conn \1: PING\n/m,
     'the PING was sent on the subscribed connection');
ok($w->alive, 'still running');
is($w->stop, 0, 'exit 0');

done_testing();
