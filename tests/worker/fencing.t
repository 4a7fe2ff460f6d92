# Fencing: a worker frozen (SIGSTOP) in the middle of a job loses it to a
# peer that reclaims it after RAGQ_RECLAIM_AFTER and claims it again (its
# attempt number is the claim's token).  When the frozen worker comes back
# it must not take the entry back with its keep-alive, must not write its
# stale result over the job the peer is running, and stops the job; the
# peer's attempt is the one that finishes it, once.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wfe$$";
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RECLAIM_AFTER => '1s',
           RAGQ_HTTP_TIMEOUT => '30s');
my $CHAT = '/v1/chat/completions';

sub wait_for {
    my ($cond, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

sub pel_owner {
    my @p = Ragq::Valkey::cmd_list('XPENDING', "$P:jobs", "$P:workers", '-', '+', 10);
    return $p[1] // '';
}

# One round: A runs the job until its chat call is out, is frozen, B takes
# the job over; A is resumed $resume_after seconds after its chat call went
# out (the stand-in answers A's chat call after $chat_s seconds, B's after
# 6 s, so B is still at it when A wakes up and looks around).
sub round {
    my ($name, $chat_s, $resume_after) = @_;
    $s->reset;
    $s->fault([{ path => $CHAT, mode => 'delay', delay_ms => $chat_s * 1000, times => 1 },
               { path => $CHAT, mode => 'delay', delay_ms => 6000, times => -1 }]);
    my $a = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => "a-$name" });
    ok($a->ready, "$name: worker A ready") or diag $a->log;
    my $id = Ragq::Worker::enqueue(prefix => $P);
    ok(wait_for(sub { $s->count($CHAT) == 1 }, 10), "$name: A asked the model") or diag $a->log;
    my $t_chat = time;
    $a->signal('STOP');
    my $b = Ragq::Worker->start(env => { %env, RAGQ_CONSUMER => "b-$name" });
    ok($b->ready, "$name: worker B ready");
    ok(wait_for(sub { (Ragq::Worker::field($P, $id, 'attempts') // 0) == 2 }, 10),
       "$name: B reclaimed and claimed the job (attempt 2)") or diag $b->log;
    is(Ragq::Worker::field($P, $id, 'owner'), "b-$name", "$name: B owns it");
    my $wait = $t_chat + $resume_after - time;
    sleep $wait if $wait > 0;
    is(Ragq::Worker::field($P, $id, 'status'), 'started', "$name: B is still running it when A wakes up");
    $a->signal('CONT');
    ok($a->wait_log(qr/job $id: .*stale/, 10), "$name: A finds its attempt stale") or diag $a->log;
    sleep 0.6;    # A's keep-alive (every 333 ms) has run by now
    is(pel_owner(), "b-$name", "$name: A did not take the entry back");
    is(Ragq::Worker::field($P, $id, 'status'), 'started', "$name: nor wrote its result");
    is(Ragq::Worker::wait_final($P, [$id], 20), 1, "$name: the job ends");
    my $j = Ragq::Worker::job($P, $id);
    is($j->{status}, 'finished', "$name: finished");
    is($j->{attempts}, 2, "$name: by attempt 2");
    ok($b->wait_log(qr/job $id finished in/, 5), "$name: B wrote it") or diag $b->log;
    unlike($a->log, qr/job $id finished in/, "$name: A did not");
    unlike($b->log, qr/already final/, "$name: B did not find it final already");
    ok(wait_for(sub { Ragq::Valkey::cmd('XLEN', "$P:jobs") == 0 }, 5), "$name: entry acknowledged");
    is($a->stop, 0, "$name: A exits 0");
    is($b->stop, 0, "$name: B exits 0");
    return ($a, $b);
}

# A's answer is in when it wakes: the stale final write is refused.
my ($a) = round('late-answer', 3, 3.6);
like($a->log, qr/stale/, 'late answer: logged as stale');
# A wakes before its answer: it stops the call (nothing more to pay for).
($a) = round('early', 5, 2.5);
like($a->log, qr/stopped/, 'early: A stopped the job');

done_testing();
