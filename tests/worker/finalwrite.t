# A result is not thrown away when its final write fails: with Valkey out
# of memory (maxmemory tiny, noeviction) the final script is refused; the
# worker keeps the result and writes it again with backoff while the claim
# is still its own, instead of letting the job run again (three paid
# upstream calls).  Before, the job was dropped, reclaimed and run twice.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wfw$$";
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my $CHAT = '/v1/chat/completions';

my $maxmem = (Ragq::Valkey::cmd_list('CONFIG', 'GET', 'maxmemory'))[1];
my $policy = (Ragq::Valkey::cmd_list('CONFIG', 'GET', 'maxmemory-policy'))[1];
END {
    local $?;
    eval { Ragq::Valkey::cmd('CONFIG', 'SET', 'maxmemory', $maxmem // 0);
           Ragq::Valkey::cmd('CONFIG', 'SET', 'maxmemory-policy', $policy // 'noeviction') };
}

my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RECLAIM_AFTER => '1s',
});
ok($w->ready, 'worker is ready') or diag $w->log;

$s->fault({ path => $CHAT, mode => 'delay', delay_ms => 1500, times => -1 });
my $id = Ragq::Worker::enqueue(prefix => $P);
my $deadline = time + 10;
sleep 0.05 while $s->count($CHAT) < 1 && time < $deadline;
is($s->count($CHAT), 1, 'the model is asked');
Ragq::Valkey::cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
Ragq::Valkey::cmd('CONFIG', 'SET', 'maxmemory', 1);
ok($w->wait_log(qr/job $id: cannot write its final state: OOM/, 10), 'the final write is refused (OOM)')
  or diag $w->log;
# Out of memory for longer than RAGQ_RECLAIM_AFTER: the keep-alive (not a
# memory-growing command) keeps the claim.
sleep 2.5;
is(Ragq::Worker::field($P, $id, 'status'), 'started', 'still started while Valkey is full');
Ragq::Valkey::cmd('CONFIG', 'SET', 'maxmemory', $maxmem);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'written once Valkey has room') or diag $w->log;
my $j = Ragq::Worker::job($P, $id);
is($j->{status}, 'finished', 'finished');
is($j->{attempts}, 1, 'in its first attempt');
like($j->{result}, qr/Paris/, 'with the answer kept in memory');
is($s->count($CHAT), 1, 'the model was asked once');
like($w->log, qr/job $id: cannot write its final state: OOM.*retry/, 'the retries are logged');
unlike($w->log, qr/reclaimed stream entry/, 'nothing was reclaimed');
like($w->log, qr/job $id finished in/, 'and the job is logged finished');

is($w->stop, 0, 'exit 0');
done_testing();
