# At-least-once, exactly one final state: a worker SIGKILLed with jobs in
# flight leaves them pending; another worker reclaims them after
# RAGQ_RECLAIM_AFTER and every job finishes once.  Live workers keep their
# long jobs alive, so a second worker never steals them.
use strict;
use warnings;
use Test::More;
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wr$$";
my $s = Ragq::Standin->start(dim => 16, latency_ms => 1000);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RECLAIM_AFTER => '2s');

my $a = Ragq::Worker->start(env => { %env, RAGQ_CONCURRENCY => 10, RAGQ_CONSUMER => 'a' });
ok($a->ready, 'worker A ready');
my @ids = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 12;
ok(Ragq::Worker::wait_status($P, $ids[9], 'started', 10), 'A started its jobs');
sleep 0.2;
$a->signal('KILL');
ok(defined $a->wait_exit(5), 'A killed');
my @started = grep { Ragq::Worker::field($P, $_, 'status') eq 'started' } @ids;
is(scalar @started, 10, 'ten jobs in flight when A died (its concurrency)');
my ($pending) = Ragq::Valkey::cmd_list('XPENDING', "$P:jobs", "$P:workers");
is($pending, 10, 'their entries are pending in the group');

my $b = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'b' });
ok($b->ready, 'worker B ready');
is(Ragq::Worker::wait_final($P, \@ids, 30), 12, 'every job reaches a final state');
is(scalar(grep { Ragq::Worker::field($P, $_, 'status') eq 'finished' } @ids), 12, 'all finished');
my %att;
$att{ Ragq::Worker::field($P, $_, 'attempts') }++ for @ids;
is_deeply(\%att, { 1 => 2, 2 => 10 }, 'reclaimed jobs ran a second attempt, the others one');
my @fin = $b->log =~ /job ([0-9a-f]{32}) finished in/g;
my %once;
$once{$_}++ for @fin;
is(scalar(keys %once), 12, 'B finished each job');
ok(!(grep { $_ != 1 } values %once), 'each exactly once');
unlike($b->log, qr/already final/, 'no job ran into a final state twice');
# The acknowledgement may trail the log line or the final state by a moment.
for (1 .. 100) {
    last if Ragq::Valkey::cmd('XLEN', "$P:jobs") == 0;
    select(undef, undef, undef, 0.05);
}
is(Ragq::Valkey::cmd('XLEN', "$P:jobs"), 0, 'stream empty');
($pending) = Ragq::Valkey::cmd_list('XPENDING', "$P:jobs", "$P:workers");
is($pending, 0, 'nothing pending');

# Keep-alive: jobs taking 3x RAGQ_RECLAIM_AFTER are not stolen by a live peer.
$s->latency(1000);
my $c = Ragq::Worker->start(env => { %env, RAGQ_RECLAIM_AFTER => '1s', RAGQ_CONSUMER => 'c',
                                     RAGQ_CONCURRENCY => 4 });
ok($c->ready, 'worker C ready');
$b->stop;
my $b2 = Ragq::Worker->start(env => { %env, RAGQ_RECLAIM_AFTER => '1s', RAGQ_CONSUMER => 'b2' });
ok($b2->ready, 'worker B2 ready');
my @long = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 8;
is(Ragq::Worker::wait_final($P, \@long, 30), 8, 'long jobs end');
is(scalar(grep { Ragq::Worker::field($P, $_, 'attempts') == 1 } @long), 8,
   'each ran once: kept alive, never reclaimed');
unlike($c->log . $b2->log, qr/reclaimed stream entry/, 'no reclaim between live workers');
$c->stop;
$b2->stop;
done_testing();
