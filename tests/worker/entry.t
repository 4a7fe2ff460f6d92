# ragq-worker and the one-XADD enqueue (DEVELOPERS.md, "data model"): a job
# its entry carries is claimed (the claim writes its hash from the entry:
# query, top_k, collection, tenant, created_at), run and acked; a job
# enqueued before the upgrade (hash + "job ID" entry) is claimed and run
# the same, side by side; a carried job that already has a hash (canceled
# while queued) is only acknowledged; an entry whose id no job id can carry
# (seq above 0xffff) or without a valid r is acknowledged and deleted,
# never run; a carried poison job (bad top_k) fails at claim as a hash's.
use strict;
use warnings;
use Test::More;
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "we$$";
my $s = Ragq::Standin->start(dim => 32);
$s->create_collection('docs', 32);
$s->upsert('docs', [
    { id => 1, payload => { page_content => 'The capital of France is Paris.',
                            metadata => { source => 'france.md' } } },
]);

# Entries the worker must drop, written before it starts: past 16 bits of
# seq (its ms in the future, so the stream's later entries still come
# after it), and one whose r is not 16 lowercase hex characters.
my $future = int(time * 1000) + 3_600_000;
Ragq::Valkey::cmd('XADD', "$P:jobs", "1-1", r => 'nothex', query => 'bad r',
    top_k => 3, collection => '', tenant => '', created_at => 1);
# an old job, from before the upgrade
my $old = Ragq::Worker::enqueue(prefix => $P, old => 1, query => 'What is the capital of France?');
# a new one, with a tenant
my $new = Ragq::Worker::enqueue(prefix => $P, query => 'Where is Paris?', top_k => 2,
    tenant => 'acme');
my ($new_created) = Ragq::Valkey::job_field($P, $new, 'created_at');
# a new one canceled while queued: its hash exists before any claim
my $canceled = Ragq::Worker::enqueue(prefix => $P, query => 'never run');
Ragq::Valkey::cmd('HSET', "$P:job:$canceled", status => 'canceled', query => 'never run',
    tenant => '', attempts => 0);
# a new poison job
my $poison = Ragq::Worker::enqueue(prefix => $P, query => 'bad top_k', top_k => 'many');
Ragq::Valkey::cmd('XADD', "$P:jobs", "$future-65536", r => '0123456789abcdef',
    query => 'overflow', top_k => 3, collection => '', tenant => '', created_at => $future);

is(Ragq::Valkey::cmd('EXISTS', "$P:job:$new"), '0', 'a new job has no hash before its claim');
is(Ragq::Valkey::cmd('EXISTS', "$P:job:$old"), '1', 'an old one has');

my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, QDRANT_URL => $s->qdrant_url,
    RAGQ_COLLECTION => 'docs', RAGQ_RESULT_TTL => '1h',
});
ok($w->ready, 'worker is ready') or diag $w->log;

is(Ragq::Worker::wait_final($P, [$old, $new, $poison], 20), 3, 'old, new and poison jobs final');
my $jo = Ragq::Worker::job($P, $old);
my $jn = Ragq::Worker::job($P, $new);
is($jo->{status}, 'finished', 'the old job finished') or diag explain $jo, $w->log;
is($jn->{status}, 'finished', 'the new job finished') or diag explain $jn, $w->log;
like($jn->{result}, qr/Paris/, 'with its answer');
is($jn->{query}, 'Where is Paris?', 'the hash has the query of the entry');
is($jn->{top_k}, '2', '... its top_k');
is($jn->{tenant}, 'acme', '... its tenant');
is($jn->{collection}, '', '... its collection');
is($jn->{created_at}, $new_created, '... its created_at');
is($jn->{attempts}, '1', 'one attempt');
ok($jn->{started_at} >= $jn->{created_at}, 'started after it was created');
my $jp = Ragq::Worker::job($P, $poison);
is($jp->{status}, 'failed', 'the poison job failed at claim');
like($jp->{error} // '', qr/"invalid_job"/, '... invalid_job');

# every entry settled: acked and deleted, nothing pending, none run twice
for (1 .. 100) {
    last if Ragq::Valkey::cmd('XLEN', "$P:jobs") eq '0';
    select(undef, undef, undef, 0.1);
}
is(Ragq::Valkey::cmd('XLEN', "$P:jobs"), '0', 'every entry deleted');
my ($pending) = Ragq::Valkey::cmd_list('XPENDING', "$P:jobs", "$P:workers");
is($pending, 0, 'nothing pending');
is(Ragq::Worker::job($P, $canceled)->{status}, 'canceled', 'the canceled job stays canceled');
my $overflow = sprintf('%012x%04x', $future, 0) . '0123456789abcdef';
is(Ragq::Valkey::cmd('EXISTS', "$P:job:$overflow"), '0', 'the overflowing entry made no hash');
like($w->log, qr/stream entry $future-65536 holds no job/, 'the overflowing entry was dropped');
like($w->log, qr/stream entry 1-1 holds no job/, 'so was the one with a bad r');
my %ran;
my $log = $w->log;
$ran{$1}++ while $log =~ /job (\w+) finished in/g;
ok(!grep({ $_ > 1 } values %ran), 'no job ran twice');
is($s->count('/v1/chat/completions'), 2, 'two answers generated (old and new)');

$w->stop;
$s->stop;
done_testing();
