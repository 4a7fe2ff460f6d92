# The worker and a Valkey that refuses commands for a while on its own: a
# restart that loads its data slowly (LOADING for about 5 s, while the
# worker reconnects), and a script running past busy-reply-threshold
# (BUSY). The jobs queued before the restart, in its RDB, run once it has
# loaded; a job queued after the script ends runs; the worker stays up and
# waits between tries instead of spinning.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Ragq::ValkeyHA;
use Ragq::Standin;
use Ragq::Worker;

my $P = "wl$$";
my $ha = Ragq::ValkeyHA->new;
my $v = $ha->server(args => ['--busy-reply-threshold', '100']);
local $Ragq::Worker::VALKEY = $v;

my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs',
    RAGQ_VALKEY_URL => 'redis://127.0.0.1:' . $v->port, RAGQ_RECLAIM_AFTER => '2s', RAGQ_LOG_LEVEL => 'info' });
ok($w->ready, 'worker ready') or diag $w->log;

my $id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'a job before anything happens');

# LOADING: the worker stopped (SIGSTOP), three jobs queued (its blocked
# read may take them: they are then pending for it, and that reply is lost
# with the connection) and saved; Valkey restarted on an RDB that loads at
# 50 ms a key; the worker woken while it loads.
$v->cli('SET', "fill:$_", 'x' x 2000) for 1 .. 100;
$w->signal('STOP');
my @ids = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 3;
$v->cli('CONFIG', 'SET', 'rdbcompression', 'no');
$v->cli('SAVE');
$v->kill('TERM');
my $t0 = time;
$v->start(loading => 1, args => ['--key-load-delay', '50000',
    '--loading-process-events-interval-bytes', '1024']);
$w->signal('CONT');
my ($ping) = $v->try_cli('PING');
like($ping // '', qr/^LOADING/, 'Valkey is loading when the worker wakes');
# (the test's own reads wait for the end of the loading too)
for (1 .. 600) {
    ($ping) = $v->try_cli('PING');
    last if ($ping // '') =~ /PONG/;
    sleep 0.05;
}
is(Ragq::Worker::wait_final($P, \@ids, 40), 3, 'the three jobs in the RDB end once it has loaded')
    or diag $w->log;
is(scalar(grep { Ragq::Worker::field($P, $_, 'status') eq 'finished' } @ids), 3, '... finished');
ok($w->alive, 'the worker is up');
my $log = $w->log;
my $loading = () = $log =~ /LOADING/g;
cmp_ok($loading, '>=', 1, 'its log says Valkey was loading');
cmp_ok($loading, '<=', 20, "... a few times, not at every turn of its loop ($loading lines)")
    or diag $log;
my $post = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$post], 20), 1, 'LOADING: a job queued after it has loaded runs')
    or diag $w->log;
diag(sprintf('LOADING: jobs done %.1f s after the restart, %d log lines about it', time - $t0, $loading));

# BUSY: a script running 1.5 s past the threshold, then killed.
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';
    { exec 'redis-cli', '-p', $v->port, 'EVAL', 'while true do end', '0' }
    POSIX::_exit(127);
}
sleep 1.5;
for (1 .. 100) {
    my ($out) = $v->try_cli('SCRIPT', 'KILL');
    last if ($out // '') =~ /^OK|NOTBUSY/;
    sleep 0.05;
}
waitpid($pid, 0);
my $after = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$after], 20), 1, 'BUSY: a job queued after the script ends runs')
    or diag $w->log;
is(Ragq::Worker::field($P, $after, 'status'), 'finished', '... and finishes');
ok($w->alive, 'BUSY: the worker is up');
is($w->stop, 0, 'the worker stops cleanly');

done_testing();
