# The worker's Lua scripts (worker/scripts/*.lua) on their own, run from
# their files with redis-cli --eval against the suite's redis-server, without
# a worker: what each returns and writes, the events it publishes, and that
# none of them touches a job that is already final or re-creates a missing
# hash.
use strict;
use warnings;
use Test::More;
use File::Basename qw(dirname);
use IO::Select;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();

my $P = "ts$$";
my $DIR = dirname(__FILE__) . '/../../worker/scripts';
my ($EVENTS, $DEAD, $JOBS, $GROUP) = ("$P:events", "$P:dead", "$P:jobs", "$P:workers");

# eval_script(NAME, [KEYS], [ARGV]): the reply, as redis-cli --raw prints it.
sub eval_script {
    my ($name, $keys, $args) = @_;
    return Ragq::Valkey::cmd('--eval', "$DIR/$name.lua", @$keys, ',', @$args);
}

sub hget { Ragq::Valkey::cmd('HGET', @_) }

# A SUBSCRIBE on the events channel, read line by line.
my $sub_pid = open(my $sub, '-|') // die "fork: $!";
if ($sub_pid == 0) {
    no warnings 'exec';
    exec 'redis-cli', '-h', '127.0.0.1', '-p', Ragq::Valkey::port(), '--raw',
        'SUBSCRIBE', $EVENTS;
    POSIX::_exit(127);
}
my $sel = IO::Select->new($sub);
my $buf = '';

# The next message published on the channel, undef after 5 s.
sub next_event {
    my $deadline = time + 5;
    while (time < $deadline) {
        # --raw prints a message as three lines: message, channel, payload.
        if ($buf =~ s/\Amessage\n\Q$EVENTS\E\n([^\n]*)\n//) {
            return $1;
        }
        $buf =~ s/\A(?:subscribe\n\Q$EVENTS\E\n\d+\n)//;
        next unless $sel->can_read(0.1);
        my $n = sysread($sub, my $chunk, 4096);
        last unless $n;
        $buf .= $chunk;
    }
    return undef;
}

for (1 .. 100) {
    last if (Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', $EVENTS))[1];
    sleep 0.05;
}
is((Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', $EVENTS))[1], 1, 'listening to the events');

# Nothing else was published: the next event is this marker.
sub no_event {
    my ($what) = @_;
    Ragq::Valkey::cmd('PUBLISH', $EVENTS, 'marker');
    is(next_event(), 'marker', $what);
}

my $n = 0;
sub new_id { sprintf('%032x', ++$n) }

# A job as the module enqueues it (fields of DEVELOPERS.md), plus its stream
# entry read into the group so that it is pending, as a claimed one is.
sub job {
    my (%f) = @_;
    my $id = new_id();
    Ragq::Valkey::cmd('HSET', "$P:job:$id", status => 'queued', query => 'why?',
        top_k => 3, collection => 'docs', tenant => '', created_at => 1, attempts => 0, %f);
    return $id;
}

sub pending_entry {
    my ($id) = @_;
    my $entry = Ragq::Valkey::cmd('XADD', $JOBS, '*', 'job', $id);
    Ragq::Valkey::cmd('XREADGROUP', 'GROUP', $GROUP, 'w', 'COUNT', 1, 'STREAMS', $JOBS, '>');
    return $entry;
}

Ragq::Valkey::cmd('XGROUP', 'CREATE', $JOBS, $GROUP, 0, 'MKSTREAM');

# ---- claim.lua: KEYS job, events; ARGV max attempts, now, id -------------

my $id = new_id();
is(eval_script('claim', ["$P:job:$id", $EVENTS], [3, 1700000000000, $id]), '0',
   'claim: a missing hash is {0}');
is(Ragq::Valkey::cmd('EXISTS', "$P:job:$id"), 0, 'claim: and is not created');

for my $st (qw(finished failed canceled)) {
    $id = job(status => $st);
    is(eval_script('claim', ["$P:job:$id", $EVENTS], [3, 1700000000000, $id]), "1\n$st",
       "claim: a $st job is {1, status}");
    is(hget("$P:job:$id", 'attempts'), 0, "claim: $st: attempts untouched");
}
no_event('claim: final jobs publish nothing');

$id = job(query => 'what is ragq?', top_k => 7, collection => 'books');
is(eval_script('claim', ["$P:job:$id", $EVENTS], [3, 1700000000123, $id]),
   "2\n1\nwhat is ragq?\n7\nbooks", 'claim: {2, attempts, query, top_k, collection}');
is(hget("$P:job:$id", 'status'), 'started', 'claim: status started');
is(hget("$P:job:$id", 'started_at'), '1700000000123', 'claim: started_at');
is(hget("$P:job:$id", 'attempts'), 1, 'claim: attempts counted');
is(next_event(), "$id started", 'claim: "ID started" published');

is(eval_script('claim', ["$P:job:$id", $EVENTS], [3, 1700000000456, $id]),
   "2\n2\nwhat is ragq?\n7\nbooks", 'claim: a reclaimed job counts its second attempt');
is(next_event(), "$id started", 'claim: published again');

$id = job(attempts => 3);
is(eval_script('claim', ["$P:job:$id", $EVENTS], [3, 1700000000000, $id]),
   "2\n4\nwhy?\n3\ndocs", 'claim: past RAGQ_MAX_ATTEMPTS the count is returned');
is(hget("$P:job:$id", 'status'), 'queued', 'claim: and the job is not started');
is(hget("$P:job:$id", 'started_at'), '', 'claim: no started_at');
no_event('claim: nor published');

$id = job(query => '', top_k => '');
Ragq::Valkey::cmd('HDEL', "$P:job:$id", 'query', 'top_k', 'collection');
is(eval_script('claim', ["$P:job:$id", $EVENTS], [3, 1, $id]), "2\n1\n\n\n",
   'claim: missing inputs come back empty');
next_event();

# ---- final.lua: KEYS job, events, dead, jobs; ARGV status, ended_at, ttl,
# ---- result, sources, usage, error, entry, id, group ----------------------

sub final {
    my ($id, $entry, $status, $err) = @_;
    return eval_script('final', ["$P:job:$id", $EVENTS, $DEAD, $JOBS],
        [$status, 1700000009999, 60000, 'the answer', '[{"id":"1"}]', '{"backends":{}}',
         $err // '', $entry, $id, $GROUP]);
}

sub acked {
    my ($entry, $what) = @_;
    my @left = Ragq::Valkey::cmd_list('XRANGE', $JOBS, $entry, $entry);
    is(scalar @left, 0, "$what: entry deleted");
    is((Ragq::Valkey::cmd_list('XPENDING', $JOBS, $GROUP))[0], 0, "$what: nothing pending");
}

$id = job(status => 'started', error => '{"code":"rate_limited","message":"x"}');
my $entry = pending_entry($id);
is(final($id, $entry, 'finished'), '1', 'final: finished is written');
is(hget("$P:job:$id", 'status'), 'finished', 'final: status finished');
is(hget("$P:job:$id", 'ended_at'), '1700000009999', 'final: ended_at');
is(hget("$P:job:$id", 'result'), 'the answer', 'final: result');
is(hget("$P:job:$id", 'sources'), '[{"id":"1"}]', 'final: sources');
is(hget("$P:job:$id", 'usage'), '{"backends":{}}', 'final: usage');
is(Ragq::Valkey::cmd('HEXISTS', "$P:job:$id", 'error'), 0, 'final: the last error is cleared');
my $pttl = Ragq::Valkey::cmd('PTTL', "$P:job:$id");
ok($pttl > 0 && $pttl <= 60000, "final: expires within RAGQ_RESULT_TTL ($pttl ms)");
is(next_event(), "$id finished", 'final: "ID finished" published');
acked($entry, 'final');
is(Ragq::Valkey::cmd('XLEN', $DEAD), 0, 'final: finished jobs are not dead');

# Run twice (reclaimed from a slow worker): the first final state stays.
$entry = pending_entry($id);
is(final($id, $entry, 'failed', '{"code":"x","message":"late"}'), '0',
   'final: an already final job is not written again');
is(hget("$P:job:$id", 'status'), 'finished', 'final: it stays finished');
is(Ragq::Valkey::cmd('HEXISTS', "$P:job:$id", 'error'), 0, 'final: no error added');
acked($entry, 'final, twice');
is(Ragq::Valkey::cmd('XLEN', $DEAD), 0, 'final: no dead entry for the second run');
no_event('final: nothing published the second time');

$id = job(status => 'canceled');
$entry = pending_entry($id);
is(final($id, $entry, 'finished'), '0', 'final: a canceled job stays canceled');
is(hget("$P:job:$id", 'status'), 'canceled', 'final: status canceled');
acked($entry, 'final, canceled');

my $err = '{"code":"unauthorized","message":"bad key"}';
$id = job(status => 'started');
$entry = pending_entry($id);
is(final($id, $entry, 'failed', $err), '1', 'final: failed is written');
is(hget("$P:job:$id", 'status'), 'failed', 'final: status failed');
is(hget("$P:job:$id", 'error'), $err, 'final: error');
is(hget("$P:job:$id", 'result'), '', 'final: no result');
ok(Ragq::Valkey::cmd('PTTL', "$P:job:$id") > 0, 'final: a failed job expires too');
is(next_event(), "$id failed", 'final: "ID failed" published');
my @dead = Ragq::Valkey::cmd_list('XRANGE', $DEAD, '-', '+');
is_deeply([@dead[1 .. 4]], ['job', $id, 'error', $err], 'final: a dead-stream entry');
acked($entry, 'final, failed');

$id = new_id();
$entry = pending_entry($id);
is(final($id, $entry, 'finished'), '0', 'final: a missing hash is not written');
is(Ragq::Valkey::cmd('EXISTS', "$P:job:$id"), 0, 'final: nor re-created');
acked($entry, 'final, missing');
no_event('final: nothing published for a missing job');

# ---- release.lua: KEYS job, events; ARGV error, id -----------------------

$err = '{"code":"upstream_timeout","message":"chat: timed out"}';
$id = job(status => 'started', attempts => 1);
is(eval_script('release', ["$P:job:$id", $EVENTS], [$err, $id]), '1', 'release: returns 1');
is(hget("$P:job:$id", 'status'), 'queued', 'release: a started job is queued again');
is(hget("$P:job:$id", 'error'), $err, 'release: with its last error');
is(hget("$P:job:$id", 'attempts'), 1, 'release: attempts kept');
is(next_event(), "$id queued", 'release: "ID queued" published');

$id = job(status => 'finished');
is(eval_script('release', ["$P:job:$id", $EVENTS], [$err, $id]), '1', 'release: on a final job');
is(hget("$P:job:$id", 'status'), 'finished', 'release: it stays final');
is(Ragq::Valkey::cmd('HEXISTS', "$P:job:$id", 'error'), 0, 'release: no error added');

$id = new_id();
is(eval_script('release', ["$P:job:$id", $EVENTS], [$err, $id]), '1', 'release: on a missing job');
is(Ragq::Valkey::cmd('EXISTS', "$P:job:$id"), 0, 'release: not re-created');
no_event('release: nothing published for final or missing jobs');

kill 'TERM', $sub_pid;
waitpid($sub_pid, 0);
my @keys = Ragq::Valkey::cmd_list('KEYS', "$P:*");
Ragq::Valkey::cmd('DEL', @keys) if @keys;

done_testing();
