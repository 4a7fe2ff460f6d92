# Dead consumers leave the group: a worker SIGKILLed never removes its
# consumer, so the group kept one per dead worker forever (27 after a kill
# storm).  Every worker now removes consumers that have no pending entry
# and have been idle for ten times RAGQ_RECLAIM_AFTER, never its own.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wc$$";
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RECLAIM_AFTER => '1s');

sub consumers {
    my @x = Ragq::Valkey::cmd_list('XINFO', 'CONSUMERS', "$P:jobs", "$P:workers");
    my (%c, $name);
    for (my $i = 0; $i + 1 < @x; $i += 2) {
        $name = $x[$i + 1] if $x[$i] eq 'name';
        $c{$name}{ $x[$i] } = $x[$i + 1] if defined $name;
    }
    return \%c;
}

# Workers that died long ago: consumers with nothing pending.
Ragq::Valkey::cmd('XGROUP', 'CREATE', "$P:jobs", "$P:workers", 0, 'MKSTREAM');
Ragq::Valkey::cmd('XGROUP', 'CREATECONSUMER', "$P:jobs", "$P:workers", $_) for qw(dead-1 dead-2 dead-3);

my $w = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => 'live' });
ok($w->ready, 'worker is ready') or diag $w->log;
# The worker's own consumer exists once it has read something.
my $id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 10), 1, 'a job is run');
my $t0 = time;
my $deadline = $t0 + 25;
sleep 0.2 while exists consumers()->{'dead-1'} && time < $deadline;
my $c = consumers();
ok(!exists $c->{"dead-$_"}, "dead-$_ is removed") for 1 .. 3;
ok(exists $c->{live}, "the worker keeps its own consumer") or diag explain $c, $w->log;
my $took = time - $t0;
cmp_ok($took, '>=', 4, "not before they were idle for long (after ${\ sprintf '%.1f', $took} s)");
like($w->log, qr/removed consumer dead-1 from group $P:workers: no pending entry, idle for more than 10000 ms/,
     'logged');

# (A consumer holding entries is never removed: tests/worker/scripts.t,
# consumers.lua; here any entry would be reclaimed long before.)
is($w->stop, 0, 'exit 0');
done_testing();
