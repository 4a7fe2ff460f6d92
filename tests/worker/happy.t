# ragq-worker end to end, the happy path: a job enqueued the module's way
# ends finished with an answer built from the retrieved chunk, sources best
# first (LangChain page_content + metadata and plain text payloads), usage
# with token counts and backends, auth headers sent, entry acked + deleted,
# result TTL set, events published.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wh$$";
my $s = Ragq::Standin->start(dim => 32, api_key => 'sk-test', qdrant_api_key => 'qk-test');
$s->create_collection('docs', 32);
$s->upsert('docs', [
    { id => 1, payload => { page_content => 'The capital of France is Paris. It lies on the Seine.',
                            metadata => { source => 'france.md', chunk => 0 } } },
    { id => 2, payload => { text => 'Bananas are yellow fruit. They grow in bunches.',
                            source => 'fruit.md' } },
    { id => '5c56c793-69f3-4fbf-87e6-c4bf54c28c26',
      payload => { page_content => 'Berlin is the capital of Germany.',
                   metadata => { source => 'germany.md' } } },
]);

my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'sk-test',
    QDRANT_URL => $s->qdrant_url, QDRANT_API_KEY => 'qk-test', RAGQ_COLLECTION => 'docs',
    RAGQ_RESULT_TTL => '1h',
});
ok($w->ready, 'worker is ready') or diag $w->log;

# Watch the events channel while the job runs.
open(my $sub, '-|', 'redis-cli', '-p', Ragq::Valkey::port(), '--raw', 'SUBSCRIBE', "$P:events")
  or die "redis-cli: $!";
# Enqueue only once the subscription is in place (a loaded machine may take
# a while to start redis-cli).
for (1 .. 200) {
    my (undef, $n) = Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', "$P:events");
    last if $n && $n >= 1;
    select(undef, undef, undef, 0.05);
}

my $id = Ragq::Worker::enqueue(prefix => $P, query => 'What is the capital of France?', top_k => 2);
is(Ragq::Worker::wait_final($P, [$id], 15), 1, 'job reached a final state');
my $j = Ragq::Worker::job($P, $id);
is($j->{status}, 'finished', 'status finished') or diag explain $j, $w->log;
is($j->{result}, 'According to [1] (france.md): The capital of France is Paris.',
   'answer built from the retrieved chunk');
my $src = decode_json($j->{sources});
is(scalar @$src, 2, 'top_k sources');
is($src->[0]{source}, 'france.md', 'best source first (LangChain payload)');
is($src->[0]{id}, '1', 'point id as text');
like($src->[0]{text}, qr/^The capital of France is Paris/, 'excerpt of page_content');
ok($src->[0]{score} >= $src->[1]{score}, 'sources ordered by score');
is($j->{attempts}, 1, 'one attempt');
ok($j->{started_at} >= $j->{created_at} && $j->{ended_at} >= $j->{started_at}, 'timestamps in order');
my $u = decode_json($j->{usage});
is_deeply($u->{backends}, { embedder => 'openai', store => 'qdrant', answerer => 'openai' },
          'usage.backends');
ok($u->{total_tokens} > 0, 'token counts from the model');
ok(!exists $j->{error}, 'no error field');
is(Ragq::Valkey::cmd('XLEN', "$P:jobs"), 0, 'stream entry acknowledged and deleted');
my ($pending) = Ragq::Valkey::cmd_list('XPENDING', "$P:jobs", "$P:workers");
is($pending, 0, 'nothing pending in the group');
my $ttl = Ragq::Valkey::cmd('PTTL', "$P:job:$id");
ok($ttl > 3_500_000 && $ttl <= 3_600_000, "result TTL set ($ttl ms)");
is(Ragq::Valkey::cmd('XLEN', "$P:dead"), 0, 'dead stream empty');
like($w->log, qr/job $id finished in \d+ ms \(embed \d+, retrieve \d+, generate \d+\)/,
     'one log line per job with stage times');

# The plain "text" payload is understood too.
my $id2 = Ragq::Worker::enqueue(prefix => $P, query => 'What colour are bananas?', top_k => 1);
Ragq::Worker::wait_final($P, [$id2], 15);
my $j2 = Ragq::Worker::job($P, $id2);
is($j2->{result}, 'According to [1] (fruit.md): Bananas are yellow fruit.', 'plain text payload');

# The job's own collection wins over RAGQ_COLLECTION.
$s->create_collection('other', 32);
$s->upsert('other', [ { id => 9, payload => { text => 'Rome is in Italy.', source => 'it.md' } } ]);
my $id3 = Ragq::Worker::enqueue(prefix => $P, query => 'Where is Rome?', collection => 'other');
Ragq::Worker::wait_final($P, [$id3], 15);
is(decode_json(Ragq::Worker::field($P, $id3, 'sources'))->[0]{source}, 'it.md',
   "the job's collection is searched");

# Events: "ID started" then "ID finished", for each job.
$w->stop;
kill 'TERM', (grep { $_ } map { /(\d+)/ ? $1 : () } `pgrep -P $$ redis-cli`);
my @ev;
while (my $l = <$sub>) { chomp $l; push @ev, $l }
close $sub;
my @mine = grep { /^$id / } @ev;
is_deeply(\@mine, ["$id started", "$id finished"], 'events published on every change');

done_testing();
