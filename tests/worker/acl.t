# ragq-worker as an ACL user (redis://user:password@, AUTH with two
# arguments) limited to its prefix and to the commands it needs: the ACL of
# README "Production Valkey" serves jobs end to end with no error; one
# command taken away (NOPERM) while it runs makes it back off (its command
# rate stays under 10/s, its log under 10 lines a minute, Valkey's text
# logged once) and it recovers when the command is given back, also when
# the claims and the reclaims were refused together, or the reclaims alone
# while it idles; the same fault at start: exit 1 with Valkey's words,
# without flooding Valkey.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Ragq::Standin;
use Ragq::Worker;
use Ragq::ValkeyHA;

my $P = "wa$$";
# The worker's ACL, as README "Production Valkey" gives it (Ragq::Worker).
my $ACL = Ragq::Worker::acl_rules($P, 's3cret');
# The worker's commands, to count what it sends (the harness's are left out).
my @WORKER_CMDS = @Ragq::Worker::ACL_COMMANDS;

my $ha = Ragq::ValkeyHA->new;
my $v = $ha->server(users => { 'ragq-worker' => $ACL, 'no-read' => $ACL =~ s/ \+xreadgroup//r });
local $Ragq::Worker::VALKEY = $v;

my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_CONNECT_TIMEOUT => '2s');

sub lines { my $l = shift; return scalar(() = $l =~ /\n/g) }

# ---- the minimal ACL serves --------------------------------------------
my $w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $v->url(user => 'ragq-worker', pass => 's3cret') });
ok($w->ready, 'ready as the ACL user') or diag $w->log;
my @ids = map { Ragq::Worker::enqueue(prefix => $P) } 1 .. 3;
is(Ragq::Worker::wait_final($P, \@ids, 20), 3, 'jobs reach a final state');
is(scalar(grep { Ragq::Worker::field($P, $_, 'status') eq 'finished' } @ids), 3, 'and finish');
my @clients = grep { /cmd=(xreadgroup|evalsha|xclaim|xautoclaim)/ } split /\n/, $v->cli('CLIENT', 'LIST');
ok(@clients >= 1 && !grep({ !/ user=ragq-worker / } @clients), 'its connections are the ACL user\'s')
  or diag explain \@clients;
is($v->errorstats->{NOPERM} // 0, 0, 'no command refused: the ACL is complete');
unlike($w->log, qr/NOPERM|warn|error/, 'nothing to warn about');

# ---- NOPERM while running ------------------------------------------------
my $log0 = $w->log;
my $c0 = $v->command_count(@WORKER_CMDS);
my $t0 = time;
$v->acl_setuser('ragq-worker', '-xreadgroup');
ok($w->wait_log(qr/warn: valkey: XREADGROUP: NOPERM [^\n]*xreadgroup/, 15),
   'logs the refusal with Valkey\'s text') or diag $w->log;
sleep 10 - (time - $t0) if time - $t0 < 10;
my $secs = time - $t0;
my $sent = $v->command_count(@WORKER_CMDS) - $c0;
my $during = substr($w->log, length $log0);
my $rate = $sent / $secs;
ok($rate < 10, sprintf('NOPERM: %d commands in %.1f s = %.2f/s, under 10/s', $sent, $secs, $rate));
ok(lines($during) * 60 / $secs < 10, sprintf('NOPERM: %d log lines in %.1f s, under 10 a minute',
   lines($during), $secs)) or diag $during;
is(scalar(() = $during =~ /NOPERM/g), 1, 'the refusal logged once, not once per try');
ok($w->alive, 'still running');
diag(sprintf('NOPERM while running: %d worker commands in %.1f s (%.2f/s), %d log line(s)',
             $sent, $secs, $rate, lines($during)));

my $t1 = time;
$v->acl_setuser('ragq-worker', '+xreadgroup');
my $id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'recovers once the command is allowed again');
my $recovery = time - $t1;
is(Ragq::Worker::field($P, $id, 'status'), 'finished', 'the job finishes');
like($w->log, qr/info: valkey: XREADGROUP works again \(\d+ error\(s\) in [\d.]+ s; the last: NOPERM/,
     'says it works again');
ok($recovery < 8, sprintf('recovered within the backoff cap (%.1f s)', $recovery));
diag(sprintf('NOPERM recovery: job finished %.1f s after the ACL was fixed', $recovery));
is($w->stop, 0, 'exit 0');

# ---- claims and reclaims refused together, then given back --------------
# XPENDING (the reclaims' probe, sent while the read blocks) and XREADGROUP
# refused, then both allowed again: a job queued then runs. A reclaim that
# works (XAUTOCLAIM) clears the reclaims' fault, and the claims get their
# pass: before, every pass's XAUTOCLAIM took all free slots first, the
# XREADGROUP fault was never tried again, and XPENDING, not sent while
# nothing blocks, kept the reclaims' fault forever: the worker never
# claimed again.
$w = Ragq::Worker->start(env => { %env, RAGQ_RECLAIM_AFTER => '1s',
    RAGQ_VALKEY_URL => $v->url(user => 'ragq-worker', pass => 's3cret') });
ok($w->ready, 'two paths: ready') or diag $w->log;
$v->acl_setuser('ragq-worker', '-xpending', '-xreadgroup');
ok($w->wait_log(qr/warn: valkey: XPENDING: NOPERM/, 15), 'two paths: the probe refused') or diag $w->log;
ok($w->wait_log(qr/warn: valkey: XREADGROUP: NOPERM/, 15), 'two paths: the read refused') or diag $w->log;
$v->acl_setuser('ragq-worker', '+xpending', '+xreadgroup');
$t1 = time;
$id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'two paths: claims resume once both are allowed again')
    or diag $w->log;
diag(sprintf('two paths: job finished %.1f s after the ACL was fixed', time - $t1));
is($w->stop, 0, 'two paths: exit 0');

# ---- reclaims refused while the worker idles, then given back ------------
# While the read blocks, the reclaims' only command is the XPENDING probe:
# refused, then allowed again, and a job a dead consumer left pending is
# taken over. The backoff pass used to try only XAUTOCLAIM, which needs a
# free slot, and the blocked read holds them all: the fault never cleared
# and nothing was ever reclaimed again.
$w = Ragq::Worker->start(env => { %env, RAGQ_RECLAIM_AFTER => '1s',
    RAGQ_VALKEY_URL => $v->url(user => 'ragq-worker', pass => 's3cret') });
ok($w->ready, 'reclaims: ready') or diag $w->log;
$v->acl_setuser('ragq-worker', '-xautoclaim', '-xpending');
ok($w->wait_log(qr/warn: valkey: XPENDING: NOPERM/, 15), 'reclaims: the probe refused') or diag $w->log;
$v->acl_setuser('ragq-worker', '+xautoclaim', '+xpending');
# queued and read by consumer "gone" in one script: the worker's blocked read never sees it
my $r = sprintf('%08x%08x', int(rand(0xffffffff)), int(rand(0xffffffff)));
my $entry = $v->cli('EVAL', "local id = redis.call('XADD', KEYS[1], '*', 'r', ARGV[1], "
    . "'query', 'What is the capital of France?', 'top_k', '3', 'collection', '', 'tenant', '', "
    . "'created_at', ARGV[2]) redis.call('XREADGROUP', 'GROUP', KEYS[2], 'gone', 'COUNT', '1', "
    . "'STREAMS', KEYS[1], '>') return id", 2, "$P:jobs", "$P:workers", $r, int(time * 1000));
my $gone = Ragq::Worker::id_of_entry($entry, $r);
$t1 = time;
is(Ragq::Worker::wait_final($P, [$gone], 20), 1,
   "reclaims: the job a dead consumer left is taken over once they are allowed again") or diag $w->log;
diag(sprintf('reclaims: job finished %.1f s after the ACL was fixed', time - $t1));
is($w->stop, 0, 'reclaims: exit 0');

# ---- the same fault at start ---------------------------------------------
$c0 = $v->command_count(@WORKER_CMDS);
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $v->url(user => 'no-read', pass => 's3cret') });
is($w->wait_exit(15) >> 8, 1, 'NOPERM at start: exit 1');
like($w->log, qr/error: Valkey at 127\.0\.0\.1:\d+ \(RAGQ_VALKEY_URL\) refuses the worker's commands: XREADGROUP: NOPERM/,
     'says which command and Valkey\'s words') or diag $w->log;
unlike($w->log, qr/info: ready/, 'never said ready');
$sent = $v->command_count(@WORKER_CMDS) - $c0;
ok($sent < 20, "a handful of commands before giving up ($sent)");

# ---- a wrong password ----------------------------------------------------
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $v->url(user => 'ragq-worker', pass => 'wrong') });
is($w->wait_exit(15) >> 8, 1, 'wrong password: exit 1');
like($w->log, qr/is unreachable: AUTH: WRONGPASS/, 'with the server\'s answer');
unlike($w->log, qr/s3cret|wrong\@/, 'the password is not logged');

done_testing();
