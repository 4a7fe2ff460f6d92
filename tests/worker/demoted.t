# ragq-worker whose primary is demoted under it (REPLICAOF another server),
# the fault that once made it write 26-29k warning lines a second: it leaves
# the server (READONLY / ROLE not master) and backs off: its commands to the
# demoted server stay under 10/s and its log under 10 lines a minute while
# the fault lasts; once the server is the primary again it claims again,
# without a restart.  A hung server (SIGSTOP) with a claim waiting is
# dropped after RAGQ_VALKEY_TIMEOUT and reconnected.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Ragq::Standin;
use Ragq::Worker;
use Ragq::ValkeyHA;

my $P = "wd$$";
my $ha = Ragq::ValkeyHA->new;
my $a = $ha->server;
my $b = $ha->server;
local $Ragq::Worker::VALKEY = $a;

my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_VALKEY_URL => $a->url,
           RAGQ_VALKEY_TIMEOUT => "1s", RAGQ_LOG_LEVEL => ($ENV{DBG} ? "debug" : "info"));

# Lines at info level and above (DBG=1 runs it at debug level to look).
sub lines { my $l = shift; return scalar(() = $l =~ /^\S+ \S+ ragq-worker\[\d+\] (?:error|warn|info): /mg) }

my $w = Ragq::Worker->start(env => \%env);
ok($w->ready, 'ready') or diag $w->log;
my $id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'a job before the fault');

# ---- demoted ------------------------------------------------------------
my $log0 = $w->log;
my $c0 = $a->command_count;
my $t0 = time;
$a->replicaof($b);
ok($w->wait_log(qr/valkey \(claim connection\): 127\.0\.0\.1:\d+ (is no longer the primary \(XREADGROUP: (READONLY|UNBLOCKED)|is not the primary \(ROLE slave\))/, 15),
   'the claim connection leaves the demoted server, saying why') or diag $w->log;
sleep 12 - (time - $t0) if time - $t0 < 12;
my $secs = time - $t0;
my $sent = $a->command_count - $c0;
my $during = substr($w->log, length $log0);
my $rate = $sent / $secs;
ok($rate < 10, sprintf('demoted: %d commands in %.1f s = %.2f/s, under 10/s', $sent, $secs, $rate))
  or diag explain $a->commandstats;
ok(lines($during) * 60 / $secs < 10 * 1.5,
   sprintf('demoted: %d log lines in %.1f s (state changes only)', lines($during), $secs))
  or diag $during;
# After the first state changes, nothing more while the fault lasts.
my $late = $w->log;
sleep 6;
my $quiet = substr($w->log, length $late);
is(lines($quiet), 0, 'demoted: no log line in 6 more seconds of the fault') or diag $quiet;
like($during, qr/is (no longer|not) the primary .*; RAGQ_VALKEY_URL must name the primary, or use Sentinel/,
     'says the server is not the primary, and what to do');
ok($w->alive, 'still running');
diag(sprintf('demoted primary: %d commands to it in %.1f s (%.2f/s), %d log line(s), then %d in 6 s',
             $sent, $secs, $rate, lines($during), lines($quiet)));

my $t1 = time;
$a->promote;
$id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, 'promoted again: the worker claims again');
my $recovery = time - $t1;
is(Ragq::Worker::field($P, $id, 'status'), 'finished', 'the job finishes');
like($w->log, qr/valkey \(claim connection\): connected to 127\.0\.0\.1:\d+/, 'says it is connected again');
ok($recovery < 10, sprintf('recovered within the backoff cap (%.1f s)', $recovery));
diag(sprintf('demoted primary recovery: job finished %.1f s after REPLICAOF NO ONE', $recovery));

# ---- hung (SIGSTOP) with a claim waiting ---------------------------------
$log0 = $w->log;
$a->pause;
ok($w->wait_log(qr/valkey \((claim|command) connection\): no reply within \d+ ms \(RAGQ_VALKEY_TIMEOUT\)/, 15),
   'a hung server is given up on after the reply deadline') or diag $w->log;
$a->resume;
$id = Ragq::Worker::enqueue(prefix => $P);
is(Ragq::Worker::wait_final($P, [$id], 20), 1, "after the hang the worker claims again")
  or diag $w->log, $a->cli('CLIENT', 'LIST'), "\n", join(' ', $a->cli_list('XPENDING', "$P:jobs", "$P:workers")),
          "\n", join(' ', $a->cli_list('XINFO', 'GROUPS', "$P:jobs")), "\n", $a->cli('XLEN', "$P:jobs");
is($w->stop, 0, 'exit 0');

done_testing();
