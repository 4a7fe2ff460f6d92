# Poison jobs: a malformed job (attempts not a number, top_k out of range, a
# NUL byte in the query, an unknown status) or a job key of another type
# ends at its first claim: failed invalid_job (the key of another type left
# as it is), a dead-stream entry, its entry acknowledged, no upstream call.
# Before, the claim script failed on them and the entry was reclaimed every
# RAGQ_RECLAIM_AFTER forever.
use strict;
use warnings;
use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(sleep time);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wp$$";
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);

my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RECLAIM_AFTER => '1s',
    RAGQ_HEARTBEAT => '200ms', RAGQ_CONSUMER => "c$$",
});
ok($w->ready, 'worker is ready') or diag $w->log;

sub settled {
    for (1 .. 100) {
        my ($pending) = Ragq::Valkey::cmd_list('XPENDING', "$P:jobs", "$P:workers");
        return 1 if Ragq::Valkey::cmd('XLEN', "$P:jobs") == 0 && $pending == 0;
        sleep 0.1;
    }
    return 0;
}

my %dead;
sub read_dead {
    my @d = Ragq::Valkey::cmd_list('XRANGE', "$P:dead", '-', '+');
    %dead = ();
    for (my $i = 0; $i + 4 < @d; $i += 5) {
        push @{ $dead{ $d[$i + 2] } }, decode_json($d[$i + 4]);
    }
}

# A job written as the module writes one, with some fields replaced, and
# its stream entry, in one step (the worker is quicker than two).
sub enqueue_poison {
    my (%f) = @_;
    my $id = Ragq::Worker::new_id();
    my %h = (status => 'queued', query => 'What is the capital of France?', top_k => 3,
             collection => '', tenant => '', created_at => 1, attempts => 0, %f);
    # \0 in a value stands for a NUL byte (redis-cli cannot pass one).
    Ragq::Valkey::cmd('EVAL', "local a = {} for i = 1, #ARGV do a[i] = string.gsub(ARGV[i], '\\\\0', '\\0') end "
        . "redis.call('HSET', KEYS[1], unpack(a)) "
        . "return redis.call('XADD', KEYS[2], '*', 'job', KEYS[3])",
        3, "$P:job:$id", "$P:jobs", $id, %h);
    return $id;
}

$s->reset;
my @cases = (
    [ 'attempts abc', { attempts => 'abc' } ],
    [ 'top_k -1', { top_k => '-1' } ],
    [ 'top_k 4294967296', { top_k => '4294967296' } ],
    [ 'status banana', { status => 'banana' } ],
);
my %id;
for my $c (@cases) {
    my ($what, $f) = @$c;
    $id{$what} = enqueue_poison(%$f);
}
$id{'NUL in query'} = enqueue_poison(query => 'Paris\\0DROP');
is(Ragq::Valkey::cmd('HSTRLEN', "$P:job:$id{'NUL in query'}", 'query'), 10, 'a NUL byte in a query');
# Keys of another type under job names.
my $str = Ragq::Worker::new_id();
Ragq::Valkey::cmd('SET', "$P:job:$str", 'somebody else');
Ragq::Valkey::cmd('XADD', "$P:jobs", '*', 'job', $str);
my $list = Ragq::Worker::new_id();
Ragq::Valkey::cmd('RPUSH', "$P:job:$list", 'a', 'b');
Ragq::Valkey::cmd('XADD', "$P:jobs", '*', 'job', $list);
# And a good job behind them all.
my $good = Ragq::Worker::enqueue(prefix => $P);

is(Ragq::Worker::wait_final($P, [values %id, $good], 20), scalar(keys %id) + 1,
   'every job ends') or diag $w->log;
ok(settled(), 'every entry is acknowledged: nothing left to reclaim')
  or diag explain [Ragq::Valkey::cmd_list('XPENDING', "$P:jobs", "$P:workers")];
read_dead();
for my $what (sort keys %id) {
    my $j = Ragq::Worker::job($P, $id{$what});
    is($j->{status}, 'failed', "$what: failed");
    my $e = decode_json($j->{error} // '{}');
    is($e->{code}, 'invalid_job', "$what: invalid_job");
    ok(length $e->{message}, "$what: $e->{message}");
    is(scalar @{ $dead{ $id{$what} } || [] }, 1, "$what: one dead-stream entry");
    like($w->log, qr/job $id{$what} failed at claim: invalid_job/, "$what: logged");
}
like(Ragq::Worker::job($P, $id{'top_k -1'})->{error}, qr/top_k must be a whole number from 1 to 1000, got '-1'/,
     'top_k: the message says the range');
for my $k ([ $str, 'string', 'somebody else' ], [ $list, 'list' ]) {
    my ($kid, $type, $val) = @$k;
    is(Ragq::Valkey::cmd('TYPE', "$P:job:$kid"), $type, "a $type under a job name is left as it is");
    is(Ragq::Valkey::cmd('GET', "$P:job:$kid"), $val, "its value too") if defined $val;
    is($dead{$kid}[0]{code}, 'invalid_job', "a $type: dead-stream entry invalid_job");
    is(scalar @{ $dead{$kid} || [] }, 1, "a $type: once");
}
is(Ragq::Worker::field($P, $good, 'status'), 'finished', 'the good job behind them finished');
is($s->count('/v1/embeddings'), 1, 'only the good job reached the upstreams');
is($s->count('/collections/docs/points/query'), 1, 'Qdrant was asked once (no limit: 4294967295)');

# Failed at their claim by this worker, they count as its failed jobs
# (ragq_worker_jobs_total{status="failed"}), the good one as finished.
my $beat = sub { Ragq::Valkey::cmd('HGET', "$P:worker:c$$", $_[0]) // '' };
my $deadline = time + 5;
sleep 0.1 while $beat->('jobs_finished') ne '1' && time < $deadline;
is($beat->('jobs_failed'), scalar(keys %id) + 2, 'the heartbeat counts the poison jobs failed');
is($beat->('jobs_finished'), 1, '... and the good one finished');

# Nothing comes back later: no reclaim loop.
sleep 2.5;
unlike($w->log, qr/reclaimed stream entry/, 'no entry is reclaimed');
unlike($w->log, qr/claim failed/, 'no claim failed');
read_dead();
is(scalar(map { @$_ } values %dead), scalar(keys %id) + 2, 'one dead entry a poison job, no more');

is($w->stop, 0, 'exit 0');
done_testing();
