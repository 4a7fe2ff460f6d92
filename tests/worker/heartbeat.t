# Worker heartbeats: P:worker:NAME appears once the worker is connected,
# says who it is (version, host, pid, start) and counts what it did (jobs
# by how they ended, calls and errors per API, jobs in flight, the last
# job's end), is refreshed with a TTL of three periods and listed in
# P:workers:live; it expires after kill -9, and a SIGTERM exit deletes it
# (and its listing) before the process is gone.
use strict;
use warnings;
use Test::More;
use Sys::Hostname ();
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "hb$$";
my $version = do {
    open my $f, '<', ($ENV{RAGQ_ROOT} // '.') . '/VERSION' or die "VERSION: $!";
    my $v = <$f>;
    $v =~ s/\s+\z//;
    $v;
};

sub beat {
    my ($name) = @_;
    my @kv = Ragq::Valkey::cmd_list('HGETALL', "$P:worker:$name");
    return {@kv};
}

# Waits until the heartbeat satisfies cond; returns it (or the last one).
sub wait_beat {
    my ($name, $cond, $secs) = @_;
    my $deadline = time + ($secs // 15);
    my $h;
    while (time < $deadline) {
        $h = beat($name);
        return $h if %$h && $cond->($h);
        sleep 0.05;
    }
    return $h;
}

my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);

my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_HEARTBEAT => '300ms',
    RAGQ_MAX_ATTEMPTS => 2, RAGQ_RECLAIM_AFTER => '1s');
my $t0 = int(time * 1000);
my $w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'hb-a' });
ok($w->ready, 'worker is ready') or diag $w->log;

my $h = wait_beat('hb-a', sub { 1 });
is_deeply [@$h{qw(version host pid concurrency in_flight jobs_finished jobs_failed
    jobs_released jobs_canceled calls_chat errors_chat last_job_at interval_ms)}],
    [$version, Sys::Hostname::hostname(), $w->pid, 64, 0, 0, 0, 0, 0, 0, 0, 0, 300],
    'the heartbeat appears: who the worker is, nothing done yet';
ok($h->{started_at} >= $t0 - 1000 && $h->{started_at} <= time * 1000, 'its start time');
my $ttl = Ragq::Valkey::cmd('PTTL', "$P:worker:hb-a");
ok($ttl > 0 && $ttl <= 900, "a TTL of three periods ($ttl ms)");
ok(Ragq::Valkey::cmd('ZSCORE', "$P:workers:live", 'hb-a') >= $t0, 'listed in P:workers:live');
my $b1 = $h->{beat_at};
$h = wait_beat('hb-a', sub { $_[0]{beat_at} > $b1 });
ok($h->{beat_at} > $b1, 'refreshed');

# Two jobs that finish, one whose chat call fails once on the way.
$s->reset;
$s->fault({ path => '/v1/chat/completions', status => 500, times => 1 });
my @ids = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 2;
is(Ragq::Worker::wait_final($P, \@ids, 30), 2, 'two jobs finish');
$h = wait_beat('hb-a', sub { $_[0]{jobs_finished} == 2 });
is_deeply [@$h{qw(jobs_finished jobs_failed calls_embeddings calls_qdrant calls_chat
    errors_embeddings errors_qdrant errors_chat in_flight)}], [2, 0, 2, 2, 3, 0, 0, 1, 0],
    'counted: two finished, every call, the failed one';
ok($h->{last_job_at} >= $t0, 'the last job end');

# One that fails at once, one given back after its retries, then failed.
$s->reset;
$s->fault({ path => '/v1/embeddings', status => 401, times => 1 });
my $bad = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$bad], 30), 1, 'a job fails');
$s->reset;
$s->fault({ path => '/v1/embeddings', status => 503, times => -1 });
my $flaky = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$flaky], 60), 1, 'a job fails after two attempts');
$s->reset;
$h = wait_beat('hb-a', sub { $_[0]{jobs_failed} == 2 });
is_deeply [@$h{qw(jobs_finished jobs_failed jobs_released)}], [2, 2, 1],
    'counted: two failed, one released for another attempt';
is($h->{errors_embeddings}, 11, 'the 401 and the ten 503s counted as errors');

# A job in flight shows as such.
$s->latency(1500);
my $slow = Ragq::Worker::enqueue(prefix => $P);
$h = wait_beat('hb-a', sub { $_[0]{in_flight} == 1 });
is($h->{in_flight}, 1, 'a job in flight');
Ragq::Worker::wait_final($P, [$slow], 30);
$s->latency(0);

# kill -9: nothing deletes it, it expires.
$w->signal('KILL');
$w->wait_exit(10);
my $deadline = time + 10;
sleep 0.05 while Ragq::Valkey::cmd('EXISTS', "$P:worker:hb-a") && time < $deadline;
is(Ragq::Valkey::cmd('EXISTS', "$P:worker:hb-a"), 0, 'after kill -9 the heartbeat expires');

# SIGTERM: deleted before the process exits, long before its TTL (30 s).
my $w2 = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'hb-b', RAGQ_HEARTBEAT => '10s' });
ok($w2->ready, 'a second worker is ready') or diag $w2->log;
$h = wait_beat('hb-b', sub { 1 });
is($h->{pid}, $w2->pid, 'its heartbeat');
is($w2->stop, 0, 'SIGTERM: exit 0') or diag $w2->log;
is_deeply [Ragq::Valkey::cmd('EXISTS', "$P:worker:hb-b"),
           Ragq::Valkey::cmd('ZSCORE', "$P:workers:live", 'hb-b')], [0, ''],
    'SIGTERM: the heartbeat and its listing are gone when the process is';

done_testing();
