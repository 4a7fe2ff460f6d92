# A result is not thrown away when its final write fails: with Valkey out
# of memory (maxmemory tiny, noeviction) the final script is refused; the
# worker keeps the result and writes it again with backoff while the claim
# is still its own, instead of letting the job run again (three paid
# upstream calls).  Before, the job was dropped, reclaimed and run twice.
#
# Two more ways the final write meets a job it did not expect, both of
# which lost the job's end before:
# - a claim lost in a fail-over (its hash gone, its queue entry not): the
#   final write re-creates the hash from the entry and writes the result;
#   it used to acknowledge the entry away (the job a 404, no callback);
# - the final write's reply lost with the connection: written again after
#   the reconnection, the script says it was our own write (2), and the
#   job ends as if the reply had come (log line, count, callback); it used
#   to be taken for a job run twice, with no callback ever sent.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use MIME::Base64 ();
use Ragq::Valkey ();
use Ragq::SlowProxy;
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

sub wait_for {
    my ($cond, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

sub hooks_to { my ($name) = @_; scalar grep { $_->{path} eq "/hooks/$name" } $s->hooks }

# Waits for the job's callback outcome (the worker writes it after the POST).
sub callback_outcome {
    my ($prefix, $id) = @_;
    wait_for(sub { Ragq::Worker::field($prefix, $id, 'callback') ne '' }, 15);
    return Ragq::Worker::field($prefix, $id, 'callback');
}

my %cbenv = (OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k', QDRANT_URL => $s->qdrant_url,
             RAGQ_COLLECTION => 'docs',
             RAGQ_WEBHOOK_SECRET => 'whsec_' . MIME::Base64::encode_base64(join('', map { chr } 1 .. 32), ''));

# ---- A claim lost in a fail-over ------------------------------------------
# A job the module queued is only its entry in P:jobs until a claim writes
# its hash; a fail-over can lose that write (replication is asynchronous),
# leaving the new primary with the entry and no hash.  DEL of the hash while
# the job runs stands in for it.  RAGQ_RECLAIM_AFTER is long, so no
# keep-alive (every 20 s) runs during the job: it would stop a job whose hash
# is gone (left to reclaim), and this is about the final write finding it so.
my $L = "${P}l";
$s->reset;
$s->fault({ path => $CHAT, mode => 'delay', delay_ms => 1500, times => -1 });
# The worker logs in with README's ACL: re-creating the hash reads the
# entry (XRANGE), which 0.6.1's ACL did not allow.
my $USER = "wfl$$";
Ragq::Valkey::cmd('ACL', 'SETUSER', $USER, split / /, Ragq::Worker::acl_rules($L, 's3cret'));
END { local $?; eval { Ragq::Valkey::cmd('ACL', 'DELUSER', $USER) } }
$w = Ragq::Worker->start(env => { %cbenv, RAGQ_PREFIX => $L, RAGQ_CONSUMER => 'wl',
                                  RAGQ_RECLAIM_AFTER => '60s',
                                  RAGQ_VALKEY_URL => "redis://$USER:s3cret\@127.0.0.1:" . Ragq::Valkey::port() });
ok($w->ready, 'lost claim: worker is ready') or diag $w->log;
my $t0 = int(time * 1000);
$id = Ragq::Worker::enqueue(prefix => $L, callback_url => $s->hook_url('lost'));
ok(wait_for(sub { $s->count($CHAT) == 1 }, 10), 'lost claim: the job runs (the model is asked)')
  or diag $w->log;
my $started_at = Ragq::Worker::field($L, $id, 'started_at');
is(Ragq::Valkey::cmd('DEL', "$L:job:$id"), 1, 'lost claim: its hash is deleted while it runs');
is(Ragq::Worker::wait_final($L, [$id], 20), 1, 'lost claim: the job ends all the same') or diag $w->log;
$j = Ragq::Worker::job($L, $id);
is($j->{status}, 'finished', 'lost claim: finished');
like($j->{result}, qr/Paris/, 'lost claim: its result is readable');
is($j->{query}, 'What is the capital of France?', 'lost claim: the hash has the query back');
is($j->{attempts}, 1, 'lost claim: attempts is the claim\'s');
is($j->{owner}, 'wl', 'lost claim: so is the owner');
is($j->{started_at}, $started_at, 'lost claim: started_at is the one the claim wrote');
ok($j->{created_at} >= $t0 && $j->{created_at} <= $j->{ended_at}, 'lost claim: created_at from the entry');
is($j->{callback_url}, $s->hook_url('lost'), 'lost claim: and its callback_url');
ok(Ragq::Valkey::cmd('PTTL', "$L:job:$id") > 0, 'lost claim: it expires as a final job does');
is(Ragq::Valkey::cmd('XLEN', "$L:jobs"), 0, 'lost claim: its entry is acknowledged and deleted');
like(callback_outcome($L, $id), qr/"status":"delivered"/, 'lost claim: its callback is delivered');
is(hooks_to('lost'), 1, 'lost claim: once');
like($w->log, qr/job $id finished in/, 'lost claim: logged finished');
unlike($w->log, qr/already final/, 'lost claim: not taken for a job run twice');
is($w->stop, 0, 'lost claim: exit 0');

# ---- The final write's reply lost -----------------------------------------
# A proxy between the worker and Valkey passes the final script's call (the
# command carrying "finished") on, drops its reply and closes the
# connection: the job is parked and written again after the reconnection,
# and the script finds the job final by this very claim.
my $C = "${P}c";
$s->reset;
my $proxy = Ragq::SlowProxy->start(to => Ragq::Valkey::port(), rate => 1 << 20,
                                   cut_on => "\$8\r\nfinished\r\n");
$w = Ragq::Worker->start(env => { %cbenv, RAGQ_PREFIX => $C, RAGQ_CONSUMER => 'wc',
                                  RAGQ_HEARTBEAT => '200ms', RAGQ_SHUTDOWN_GRACE => '2s',
                                  RAGQ_VALKEY_URL => 'redis://127.0.0.1:' . $proxy->port });
ok($w->ready, 'lost reply: worker is ready') or diag $w->log;
$id = Ragq::Worker::enqueue(prefix => $C, callback_url => $s->hook_url('cut'));
ok(wait_for(sub { $proxy->cut }, 15), 'lost reply: the final write went out, its reply was dropped')
  or diag $w->log;
is(Ragq::Worker::wait_final($C, [$id], 20), 1, 'lost reply: the job is final') or diag $w->log;
$j = Ragq::Worker::job($C, $id);
is($j->{status}, 'finished', 'lost reply: finished');
like($j->{result}, qr/Paris/, 'lost reply: with its result');
ok($w->wait_log(qr/valkey \(command connection\).*reconnecting/, 10), 'lost reply: the connection dropped')
  or diag $w->log;
ok($w->wait_log(qr/job $id finished in/, 10), 'lost reply: the job is logged finished') or diag $w->log;
like(callback_outcome($C, $id), qr/"status":"delivered"/, 'lost reply: its callback is delivered');
is(hooks_to('cut'), 1, 'lost reply: once');
ok(wait_for(sub { Ragq::Valkey::cmd('HGET', "$C:worker:wc", 'jobs_finished') eq '1' }, 10),
   'lost reply: the heartbeat counts it finished') or diag $w->log;
unlike($w->log, qr/run twice/, 'lost reply: not taken for a job run twice');
is(Ragq::Valkey::cmd('XLEN', "$C:jobs"), 0, 'lost reply: its entry is acknowledged and deleted');
is($w->stop, 0, 'lost reply: exit 0') or diag $w->log;
$proxy->stop;

done_testing();
