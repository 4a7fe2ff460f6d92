# The worker's Lua scripts (worker/scripts/*.lua) on their own, run from
# their files with redis-cli --eval against the suite's redis-server, without
# a worker: what each returns and writes, the events it publishes, and that
# none of them touches a job that is already final or re-creates a missing
# hash (but final.lua's for a job its entry carries: a claim a fail-over lost).
use strict;
use warnings;
use Test::More;
use JSON::PP qw(decode_json);
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

# ---- claim.lua: KEYS job, events, dead, jobs; ARGV max attempts, now, id,
# ---- entry, group, consumer, ttl, top_k max ------------------------------

my $TOPK_MAX = 1000;
sub claim {
    my ($id, $entry, %o) = @_;
    return eval_script('claim', ["$P:job:$id", $EVENTS, $DEAD, $JOBS],
        [$o{max} // 3, $o{now} // 1700000000000, $id, $entry // '0-1', $GROUP,
         $o{consumer} // 'w', 60000, $TOPK_MAX]);
}

sub acked {
    my ($entry, $what) = @_;
    my @left = Ragq::Valkey::cmd_list('XRANGE', $JOBS, $entry, $entry);
    is(scalar @left, 0, "$what: entry deleted");
    is((Ragq::Valkey::cmd_list('XPENDING', $JOBS, $GROUP))[0], 0, "$what: nothing pending");
}

# The last dead-stream entry: (job id, error JSON decoded).
sub last_dead {
    my @d = Ragq::Valkey::cmd_list('XREVRANGE', $DEAD, '+', '-', 'COUNT', 1);
    return ($d[2], decode_json($d[4] // '{}'));
}
sub dead_len { Ragq::Valkey::cmd('XLEN', $DEAD) }

my $id = new_id();
my $entry = pending_entry($id);
is(claim($id, $entry), '0', 'claim: a missing hash is {0}');
is(Ragq::Valkey::cmd('EXISTS', "$P:job:$id"), 0, 'claim: and is not created');
acked($entry, 'claim, missing');

for my $st (qw(finished failed canceled)) {
    $id = job(status => $st);
    $entry = pending_entry($id);
    is(claim($id, $entry), "1\n$st\n\n0", "claim: a $st job is {1, status, callback_url, called}");
    is(hget("$P:job:$id", 'attempts'), 0, "claim: $st: attempts untouched");
    # A canceled hash has no TTL while its entry waits (the cancel script):
    # the claim that acks the entry gives it one; the others have theirs.
    my $ttl = Ragq::Valkey::cmd('PTTL', "$P:job:$id");
    if ($st eq 'canceled') {
        ok($ttl > 0 && $ttl <= 60000, "claim: canceled: given the TTL ($ttl ms)");
    } else {
        is($ttl, -1, "claim: $st: its TTL left as it is");
    }
    acked($entry, "claim, $st");
}
no_event('claim: final and missing jobs publish nothing');

$id = job(query => 'what is ragq?', top_k => 7, collection => 'books');
is(claim($id, undef, now => 1700000000123, consumer => 'wA'),
   "2\n1\nwhat is ragq?\n7\nbooks\n", 'claim: {2, attempts, query, top_k, collection, callback_url}');
is(hget("$P:job:$id", 'status'), 'started', 'claim: status started');
is(hget("$P:job:$id", 'started_at'), '1700000000123', 'claim: started_at');
is(hget("$P:job:$id", 'attempts'), 1, 'claim: attempts counted');
is(hget("$P:job:$id", 'owner'), 'wA', 'claim: the owner is the consumer');
is(next_event(), "$id started", 'claim: "ID started" published');

is(claim($id, undef, now => 1700000000456, consumer => 'wB'),
   "2\n2\nwhat is ragq?\n7\nbooks\n", 'claim: a reclaimed job counts its second attempt');
is(hget("$P:job:$id", 'owner'), 'wB', 'claim: and changes hands');
is(next_event(), "$id started", 'claim: published again');

$id = job(top_k => '');
Ragq::Valkey::cmd('HDEL', "$P:job:$id", 'top_k', 'collection');
is(claim($id), "2\n1\nwhy?\n\n\n", 'claim: missing top_k and collection come back empty (defaults)');
next_event();

# A job its entry carries with a callback_url (ARGV[15]): written into the
# hash, returned with the claim; a final job's claim says whether its
# callback outcome is written (a job canceled while queued gets its callback
# from the worker whose claim finds it).
$id = new_id();
is(eval_script('claim', ["$P:job:$id", $EVENTS, $DEAD, $JOBS],
       [3, 1700000000000, $id, '0-1', $GROUP, 'w', 60000, $TOPK_MAX,
        '1', 'q?', '', '', '', '1700000000000', 'http://127.0.0.1:9/h']),
   "2\n1\nq?\n\n\nhttp://127.0.0.1:9/h", 'claim: a carried callback_url comes back');
is(hget("$P:job:$id", 'callback_url'), 'http://127.0.0.1:9/h', 'claim: and is in the hash');
next_event();
Ragq::Valkey::cmd('HSET', "$P:job:$id", 'status', 'canceled');
is(claim($id), "1\ncanceled\nhttp://127.0.0.1:9/h\n0", 'claim: canceled: {1, status, callback_url, 0}');
Ragq::Valkey::cmd('HSET', "$P:job:$id", 'callback', '{"status":"delivered","attempts":1,"code":200}');
is(claim($id), "1\ncanceled\nhttp://127.0.0.1:9/h\n1", 'claim: callback written: called 1');

# Max attempts: failed here, in the same step, never run.
my $d0 = dead_len();
$id = job(attempts => 3);
$entry = pending_entry($id);
my @r = split /\n/, claim($id, $entry, now => 1700000000777);
is_deeply([@r[0, 1]], [3, 'max_attempts'], 'claim: past RAGQ_MAX_ATTEMPTS: {3, max_attempts, message}');
like($r[2], qr/claimed 4 times without finishing \(RAGQ_MAX_ATTEMPTS is 3\)/, 'claim: the message says why');
is(hget("$P:job:$id", 'status'), 'failed', 'claim: max_attempts: failed');
is(hget("$P:job:$id", 'attempts'), 4, 'claim: max_attempts: this claim counted');
is(hget("$P:job:$id", 'ended_at'), '1700000000777', 'claim: max_attempts: ended_at');
is(decode_json(hget("$P:job:$id", 'error'))->{code}, 'max_attempts', 'claim: max_attempts: error.code');
ok(Ragq::Valkey::cmd('PTTL', "$P:job:$id") > 0, 'claim: max_attempts: expires');
is(dead_len(), $d0 + 1, 'claim: max_attempts: a dead-stream entry');
is((last_dead())[0], $id, 'claim: max_attempts: naming the job');
is(next_event(), "$id failed", 'claim: max_attempts: "ID failed" published');
acked($entry, 'claim, max_attempts');

# Poison jobs: any malformed job ends failed invalid_job + dead entry +
# ack, without a Lua runtime error (so it cannot come back forever).
my @poison = (
    [ 'attempts not a number', { attempts => 'abc' }, qr/attempts is not a whole number: 'abc'/ ],
    [ 'attempts with a leading zero', { attempts => '007' }, qr/attempts is not a whole number/ ],
    [ 'negative attempts', { attempts => '-1' }, qr/attempts is not a whole number/ ],
    [ 'attempts past 2^53', { attempts => '99999999999999999999' }, qr/attempts is not a whole number/ ],
    [ 'top_k -1', { top_k => '-1' }, qr/top_k must be a whole number from 1 to 1000, got '-1'/ ],
    [ 'top_k 0', { top_k => '0' }, qr/top_k must be/ ],
    [ 'top_k past the cap', { top_k => '1001' }, qr/top_k must be/ ],
    [ 'top_k not a number', { top_k => '3x' }, qr/top_k must be/ ],
    [ 'top_k huge', { top_k => '4294967295' }, qr/top_k must be/ ],
    [ 'empty query', { query => '' }, qr/the job has no query/ ],
    [ 'unknown status', { status => 'banana' }, qr/unknown status 'banana'/ ],
    [ 'binary status', { status => "\x01\xff" }, qr/unknown status a value of 2 bytes/ ],
);
for my $p (@poison) {
    my ($what, $f, $re) = @$p;
    $d0 = dead_len();
    $id = job(%$f);
    $entry = pending_entry($id);
    my $out = claim($id, $entry, now => 1700000000888);
    my @o = split /\n/, $out;
    is_deeply([@o[0, 1]], [3, 'invalid_job'], "claim: $what: {3, invalid_job}") or diag $out;
    like($o[2] // '', $re, "claim: $what: the message");
    is(hget("$P:job:$id", 'status'), 'failed', "claim: $what: failed");
    my $e = decode_json(hget("$P:job:$id", 'error'));
    is($e->{code}, 'invalid_job', "claim: $what: error.code");
    is(hget("$P:job:$id", 'ended_at'), '1700000000888', "claim: $what: ended_at");
    ok(Ragq::Valkey::cmd('PTTL', "$P:job:$id") > 0, "claim: $what: expires");
    is(dead_len(), $d0 + 1, "claim: $what: dead-stream entry");
    is_deeply([last_dead()], [$id, $e], "claim: $what: with its error");
    is(next_event(), "$id failed", "claim: $what: published");
    acked($entry, "claim, $what");
}

$id = job();
Ragq::Valkey::cmd('HDEL', "$P:job:$id", 'status');
$entry = pending_entry($id);
like(claim($id, $entry), qr/\A3\ninvalid_job\nthe job has no status\n\z/, 'claim: a hash without status is invalid');
next_event();
acked($entry, 'claim, no status');

$id = job();
Ragq::Valkey::cmd('EVAL', "redis.call('HSET', KEYS[1], 'query', 'a\\0b')", 1, "$P:job:$id");
is(Ragq::Valkey::cmd('HSTRLEN', "$P:job:$id", 'query'), 3, 'a query with a NUL byte');
$entry = pending_entry($id);
like(claim($id, $entry), qr/\A3\ninvalid_job\nthe query contains a NUL byte\n\z/,
     'claim: a NUL byte in the query is invalid (never cut short)');
next_event();
acked($entry, 'claim, NUL');

# A key of another type: never overwritten; dead-lettered and acked.
for my $t (['string', 'SET', 'x'], ['list', 'RPUSH', 'x'], ['stream', 'XADD', '*', 'a', 'b']) {
    my ($type, @cmd) = @$t;
    $d0 = dead_len();
    $id = new_id();
    Ragq::Valkey::cmd($cmd[0], "$P:job:$id", @cmd[1 .. $#cmd]);
    $entry = pending_entry($id);
    my @o = split /\n/, claim($id, $entry);
    is_deeply([@o[0, 1]], [3, 'invalid_job'], "claim: a $type key is {3, invalid_job}");
    like($o[2], qr/holds a $type, not a hash; left as it is/, "claim: $type: the message");
    is(Ragq::Valkey::cmd('TYPE', "$P:job:$id"), $type, "claim: $type: the key is left as it is");
    is(Ragq::Valkey::cmd('PTTL', "$P:job:$id"), -1, "claim: $type: no TTL put on it");
    is(dead_len(), $d0 + 1, "claim: $type: dead-stream entry");
    my ($did, $de) = last_dead();
    is($did, $id, "claim: $type: naming the job");
    is($de->{code}, 'invalid_job', "claim: $type: invalid_job");
    acked($entry, "claim, $type");
    Ragq::Valkey::cmd('DEL', "$P:job:$id");
}
no_event('claim: nothing published for a key that is not a job');

# P:dead of the wrong type: an error before any write.
$id = job();
Ragq::Valkey::cmd('RENAME', $DEAD, "$DEAD.saved");
Ragq::Valkey::cmd('SET', $DEAD, 'oops');
like(claim($id), qr/WRONGTYPE/, 'claim: a dead stream of the wrong type is an error');
is(hget("$P:job:$id", 'status'), 'queued', 'claim: that wrote nothing');
is(hget("$P:job:$id", 'attempts'), 0, 'claim: not even attempts');
Ragq::Valkey::cmd('DEL', $DEAD);
Ragq::Valkey::cmd('RENAME', "$DEAD.saved", $DEAD);
no_event('claim: nor published');

# ---- final.lua: KEYS job, events, dead, jobs, out; ARGV status, ended_at, ttl,
# ---- result, sources, usage, error, entry, id, group, token, owner --------

sub final {
    my ($id, $entry, $status, $err, %o) = @_;
    return eval_script('final', ["$P:job:$id", $EVENTS, $DEAD, $JOBS, "$P:out:$id"],
        [$status, 1700000009999, $o{ttl} // 60000, 'the answer', '[{"id":"1"}]', '{"backends":{}}',
         $err // '', $entry, $id, $GROUP, $o{token} // 1, $o{owner} // 'w']);
}

# A job as a claim left it: started, attempts 1, owner w.
sub claimed { job(status => 'started', attempts => 1, owner => 'w', @_) }

$id = claimed(error => '{"code":"rate_limited","message":"x"}');
$entry = pending_entry($id);
Ragq::Valkey::cmd('XADD', "$P:out:$id", '0-1', 't', 'the answer', 'a', 1);
is(final($id, $entry, 'finished'), '1', 'final: finished is written');
my $out_pttl = Ragq::Valkey::cmd('PTTL', "$P:out:$id");
ok($out_pttl > 0 && $out_pttl <= 60000, "final: the output stream gets the job's TTL ($out_pttl ms)");
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
$d0 = dead_len();

# Run twice (reclaimed from a slow worker): the first final state stays.
$entry = pending_entry($id);
is(final($id, $entry, 'failed', '{"code":"x","message":"late"}'), '0',
   'final: an already final job is not written again');
is(hget("$P:job:$id", 'status'), 'finished', 'final: it stays finished');
is(Ragq::Valkey::cmd('HEXISTS', "$P:job:$id", 'error'), 0, 'final: no error added');
acked($entry, 'final, twice');
is(dead_len(), $d0, 'final: no dead entry for the second run');
no_event('final: nothing published the second time');

# The same write again (its reply lost, written again after a reconnect):
# the same status by the same claim is 2, our own write; nothing changes.
$entry = pending_entry($id);
is(final($id, $entry, 'finished'), '2', 'final: our own earlier write is 2');
is(hget("$P:job:$id", 'ended_at'), '1700000009999', 'final: 2: nothing rewritten');
acked($entry, 'final, our own write');
no_event('final: 2: nothing published');
$entry = pending_entry($id);
is(final($id, $entry, 'finished', undef, token => 2), '0', 'final: finished by another claim is 0');
acked($entry, 'final, another claim');

$id = job(status => 'canceled');
$entry = pending_entry($id);
is(final($id, $entry, 'finished'), '0', 'final: a canceled job stays canceled');
is(hget("$P:job:$id", 'status'), 'canceled', 'final: status canceled');
my $cttl = Ragq::Valkey::cmd('PTTL', "$P:job:$id");
ok($cttl > 0 && $cttl <= 60000, "final: canceled (no TTL while its entry waited): given the TTL ($cttl ms)");
acked($entry, 'final, canceled');

my $err = '{"code":"unauthorized","message":"bad key"}';
$id = claimed();
$entry = pending_entry($id);
is(final($id, $entry, 'failed', $err), '1', 'final: failed is written');
is(hget("$P:job:$id", 'status'), 'failed', 'final: status failed');
is(hget("$P:job:$id", 'error'), $err, 'final: error');
is(hget("$P:job:$id", 'result'), '', 'final: no result');
ok(Ragq::Valkey::cmd('PTTL', "$P:job:$id") > 0, 'final: a failed job expires too');
is(next_event(), "$id failed", 'final: "ID failed" published');
my @dead = Ragq::Valkey::cmd_list('XREVRANGE', $DEAD, '+', '-', 'COUNT', 1);
is_deeply([@dead[1 .. 4]], ['job', $id, 'error', $err], 'final: a dead-stream entry');
acked($entry, 'final, failed');

$id = new_id();
$entry = pending_entry($id);
is(final($id, $entry, 'finished'), '0', 'final: a missing hash is not written');
is(Ragq::Valkey::cmd('EXISTS', "$P:job:$id"), 0, 'final: nor re-created');
acked($entry, 'final, missing');
no_event('final: nothing published for a missing job');

# A missing hash whose entry carries the job (the module's XADD): the claim
# was lost (a fail-over), not the job.  The hash is re-created from the
# entry with this claim in it, and the final state written over it.
sub carried_entry {
    my (%f) = @_;
    my $r = sprintf('%016x', 0xabc0 + ++$n);
    my $e = Ragq::Valkey::cmd('XADD', $JOBS, '*', r => $r, query => 'why?', top_k => 3,
        collection => 'docs', tenant => 't1', created_at => 1700000000000, %f);
    Ragq::Valkey::cmd('XREADGROUP', 'GROUP', $GROUP, 'w', 'COUNT', 1, 'STREAMS', $JOBS, '>');
    my ($ms, $seq) = $e =~ /^(\d+)-(\d+)$/;
    return (sprintf('%012x%04x%s', $ms, $seq, $r), $e);
}
($id, $entry) = carried_entry(callback_url => 'http://h/cb');
is(eval_script('final', ["$P:job:$id", $EVENTS, $DEAD, $JOBS, "$P:out:$id"],
               ['finished', 1700000009999, 60000, 'the answer', '[]', '{}', '', $entry, $id, $GROUP,
                1, 'w', 1700000001234]), '1', 'final: a lost claim of a carried job is written');
my %h = Ragq::Valkey::cmd_list('HGETALL', "$P:job:$id");
is_deeply(\%h, { status => 'finished', query => 'why?', top_k => 3, collection => 'docs', tenant => 't1',
                 created_at => 1700000000000, attempts => 1, owner => 'w', started_at => 1700000001234,
                 callback_url => 'http://h/cb', ended_at => 1700000009999, result => 'the answer',
                 sources => '[]', usage => '{}' },
          'final: the hash re-created from the entry, with this claim, then final');
ok(Ragq::Valkey::cmd('PTTL', "$P:job:$id") > 0, 'final: lost claim: expires');
is(next_event(), "$id finished", 'final: lost claim: "ID finished" published');
acked($entry, 'final, lost claim');

($id, $entry) = carried_entry();
is(final($id, $entry, 'failed', $err), '1', 'final: a lost claim, failed, without started_at');
is(hget("$P:job:$id", 'status'), 'failed', 'final: lost claim: status failed');
is(Ragq::Valkey::cmd('HEXISTS', "$P:job:$id", 'started_at'), 0, 'final: no started_at without ARGV[13]');
is(Ragq::Valkey::cmd('HEXISTS', "$P:job:$id", 'callback_url'), 0, 'final: nor a callback_url the entry lacks');
is((last_dead())[0], $id, 'final: lost claim: a dead-stream entry');
is(next_event(), "$id failed", 'final: lost claim: "ID failed" published');
acked($entry, 'final, lost claim, failed');

# An entry that does not carry this job (another r, or no query): as before.
sub carried_no_query {
    my $r = sprintf('%016x', 0xabc0 + ++$n);
    my $e = Ragq::Valkey::cmd('XADD', $JOBS, '*', r => $r, top_k => 3);
    Ragq::Valkey::cmd('XREADGROUP', 'GROUP', $GROUP, 'w', 'COUNT', 1, 'STREAMS', $JOBS, '>');
    my ($ms, $seq) = $e =~ /^(\d+)-(\d+)$/;
    return (sprintf('%012x%04x%s', $ms, $seq, $r), $e);
}
for my $what ('another r', 'no query') {
    ($id, $entry) = $what eq 'no query' ? carried_no_query() : carried_entry();
    $id = substr($id, 0, 16) . ('0' x 16) if $what eq 'another r';
    is(final($id, $entry, 'finished'), '0', "final: missing hash, entry with $what: 0");
    is(Ragq::Valkey::cmd('EXISTS', "$P:job:$id"), 0, "final: $what: no hash created");
    acked($entry, "final, missing, $what");
}
no_event('final: nothing published for them');

# Fencing: a stale attempt (its token is not the hash's any more) writes
# nothing and leaves the entry to the claim that holds it.
for my $stale ([ 'an older attempt', token => 1, owner => 'w' ],
               [ 'another owner',   token => 2, owner => 'old' ]) {
    my ($what, %tok) = @$stale;
    $id = claimed(attempts => 2, owner => 'w');
    $entry = pending_entry($id);
    is(final($id, $entry, 'finished', undef, %tok), '-1', "final: stale ($what): refused");
    is(hget("$P:job:$id", 'status'), 'started', "final: stale ($what): still started");
    is(hget("$P:job:$id", 'result'), '', "final: stale ($what): no result");
    is(Ragq::Valkey::cmd('PTTL', "$P:job:$id"), -1, "final: stale ($what): no TTL");
    is((Ragq::Valkey::cmd_list('XPENDING', $JOBS, $GROUP))[0], 1, "final: stale ($what): entry still pending");
    is(final($id, $entry, 'finished', undef, token => 2, owner => 'w'), '1',
       "final: stale ($what): the holder's write goes through");
    next_event();
    acked($entry, "final, after a stale one ($what)");
}
$id = claimed(owner => '');
Ragq::Valkey::cmd('HDEL', "$P:job:$id", 'owner');
$entry = pending_entry($id);
is(final($id, $entry, 'failed', $err), '-1', 'final: a job without owner is not ours');
$d0 = dead_len();
is(final($id, $entry, 'failed', $err), '-1', 'final: (again)');
is(dead_len(), $d0, 'final: stale: no dead-stream entry');
no_event('final: stale attempts publish nothing');
Ragq::Valkey::cmd('XACK', $JOBS, $GROUP, $entry);

# A key of another type: left alone, dead-lettered, acked.
$id = new_id();
Ragq::Valkey::cmd('SET', "$P:job:$id", 'not a job');
$entry = pending_entry($id);
$d0 = dead_len();
is(final($id, $entry, 'finished'), '-2', 'final: a key that is not a hash is -2');
is(Ragq::Valkey::cmd('GET', "$P:job:$id"), 'not a job', 'final: the key is left as it is');
is(dead_len(), $d0 + 1, 'final: a dead-stream entry for it');
is((last_dead())[1]{code}, 'invalid_job', 'final: invalid_job');
acked($entry, 'final, not a hash');
Ragq::Valkey::cmd('DEL', "$P:job:$id");

# Validation before any write: a dead stream of the wrong type (which
# failed XADD after HSET before) leaves the job exactly as it was, with no
# failed job lacking TTL, event or dead entry.
$id = claimed();
$entry = pending_entry($id);
Ragq::Valkey::cmd('RENAME', $DEAD, "$DEAD.saved");
Ragq::Valkey::cmd('SET', $DEAD, 'oops');
like(final($id, $entry, 'failed', $err), qr/WRONGTYPE/, 'final: a dead stream of the wrong type: an error');
is(hget("$P:job:$id", 'status'), 'started', 'final: and the job is untouched');
is(Ragq::Valkey::cmd('HEXISTS', "$P:job:$id", 'error'), 0, 'final: no error written');
is(Ragq::Valkey::cmd('PTTL', "$P:job:$id"), -1, 'final: no TTL');
is((Ragq::Valkey::cmd_list('XPENDING', $JOBS, $GROUP))[0], 1, 'final: entry still pending');
Ragq::Valkey::cmd('DEL', $DEAD);
Ragq::Valkey::cmd('RENAME', "$DEAD.saved", $DEAD);
like(final($id, $entry, 'failed', $err, ttl => 'soon'), qr/ERR/, 'final: a bad TTL: an error too');
is(hget("$P:job:$id", 'status'), 'started', 'final: still untouched');
no_event('final: errors publish nothing');
is(final($id, $entry, 'failed', $err), '1', 'final: once fixed, written whole');
is(next_event(), "$id failed", 'final: published');
acked($entry, 'final, after the errors');

# ---- release.lua: KEYS job, events; ARGV error, id, token, owner ---------

sub release {
    my ($id, %o) = @_;
    return eval_script('release', ["$P:job:$id", $EVENTS], [$err, $id, $o{token} // 1, $o{owner} // 'w']);
}

$err = '{"code":"upstream_timeout","message":"chat: timed out"}';
$id = claimed();
is(release($id), '1', 'release: returns 1');
is(hget("$P:job:$id", 'status'), 'queued', 'release: a started job is queued again');
is(hget("$P:job:$id", 'error'), $err, 'release: with its last error');
is(hget("$P:job:$id", 'attempts'), 1, 'release: attempts kept');
is(next_event(), "$id queued", 'release: "ID queued" published');

$id = job(status => 'finished');
is(release($id), '0', 'release: on a final job');
is(hget("$P:job:$id", 'status'), 'finished', 'release: it stays final');
is(Ragq::Valkey::cmd('HEXISTS', "$P:job:$id", 'error'), 0, 'release: no error added');

$id = new_id();
is(release($id), '0', 'release: on a missing job');
is(Ragq::Valkey::cmd('EXISTS', "$P:job:$id"), 0, 'release: not re-created');

Ragq::Valkey::cmd('SET', "$P:job:$id", 'x');
is(release($id), '0', 'release: on a key of another type');
is(Ragq::Valkey::cmd('GET', "$P:job:$id"), 'x', 'release: left alone');
Ragq::Valkey::cmd('DEL', "$P:job:$id");

# A stale release must not flip a job another worker runs back to queued.
$id = claimed(attempts => 2, owner => 'w2');
is(release($id, token => 1, owner => 'w'), '-1', 'release: stale: -1');
is(hget("$P:job:$id", 'status'), 'started', 'release: stale: the job stays started');
is(Ragq::Valkey::cmd('HEXISTS', "$P:job:$id", 'error'), 0, 'release: stale: no error written');
is(release($id, token => 2, owner => 'w'), '-1', 'release: same attempt, other owner: -1');
no_event('release: nothing published for final, missing or stale jobs');

# ---- keepalive.lua: KEYS jobs, job...; ARGV group, consumer, entries...,
# ---- tokens... -----------------------------------------------------------

# Entries read by consumer 'a'; returns them.
sub pending_for {
    my ($consumer, @ids) = @_;
    my @e = Ragq::Valkey::cmd_list('EVAL', "local e = {} for i = 1, #ARGV do "
        . "e[i] = redis.call('XADD', KEYS[1], '*', 'job', ARGV[i]) end return e", 1, $JOBS, @ids);
    Ragq::Valkey::cmd('XREADGROUP', 'GROUP', $GROUP, $consumer, 'COUNT', scalar @ids,
                      'STREAMS', $JOBS, '>');
    return @e;
}
sub owner_of {
    my ($entry) = @_;
    my @p = Ragq::Valkey::cmd_list('XPENDING', $JOBS, $GROUP, $entry, $entry, 1);
    return $p[1];
}

my @ids = (claimed(owner => 'a'), claimed(owner => 'a', attempts => 2),
           claimed(owner => 'b', attempts => 2), job(status => 'canceled'), new_id());
Ragq::Valkey::cmd('SET', "$P:job:$ids[4]", 'x');
my @entries = pending_for('b', @ids);
# a holds ids 0 and 1 by token; 2 was claimed again by b; 3 was canceled;
# 4 is not a job any more.
my $ka = eval_script('keepalive', [$JOBS, map { "$P:job:$_" } @ids],
    [$GROUP, 'a', @entries, 1, 2, 1, 1, 1]);
is($ka, "1\n1\n0\n3\n2", 'keepalive: ours, ours, stale, final, gone');
is(owner_of($entries[0]), 'a', 'keepalive: our entries are claimed back to us');
is(owner_of($entries[1]), 'a', 'keepalive: (both)');
is(owner_of($entries[2]), 'b', 'keepalive: a stale one is never taken back');
is(owner_of($entries[3]), 'b', 'keepalive: nor a final one');
is(owner_of($entries[4]), 'b', 'keepalive: nor one that is not a job');
Ragq::Valkey::cmd('XACK', $JOBS, $GROUP, @entries);
Ragq::Valkey::cmd('DEL', "$P:job:$ids[4]");

# Many at once (past unpack()'s batch).
my @many = map { new_id() } 1 .. 450;
Ragq::Valkey::cmd('EVAL', "for i = 1, #KEYS do redis.call('HSET', KEYS[i], 'status', 'started', "
    . "'query', 'q', 'attempts', 1, 'owner', 'a') end", scalar @many, map { "$P:job:$_" } @many);
my @me = pending_for('b', @many);
$ka = eval_script('keepalive', [$JOBS, map { "$P:job:$_" } @many],
    [$GROUP, 'a', @me, (1) x @many]);
is($ka, join("\n", (1) x @many), 'keepalive: 450 jobs');
is(scalar(grep { owner_of($_) eq 'a' } @me[0, 199, 200, 399, 449]), 5, 'keepalive: every batch claimed');
Ragq::Valkey::cmd('XACK', $JOBS, $GROUP, @me);

# ---- consumers.lua: KEYS jobs; ARGV group, self, idle ms ----------------

Ragq::Valkey::cmd('XGROUP', 'CREATECONSUMER', $JOBS, $GROUP, $_) for qw(gone1 gone2 me);
my ($busy) = pending_for('busy', new_id());
sleep 0.3;
Ragq::Valkey::cmd('XGROUP', 'CREATECONSUMER', $JOBS, $GROUP, 'fresh');
my @removed = sort split /\n/, eval_script('consumers', [$JOBS], [$GROUP, 'me', 200]);
ok((grep { $_ eq 'gone1' } @removed) && (grep { $_ eq 'gone2' } @removed),
   'consumers: idle consumers without pending entries are removed');
my @x = Ragq::Valkey::cmd_list('XINFO', 'CONSUMERS', $JOBS, $GROUP);
my %left = map { $x[$_ + 1] => 1 } grep { $x[$_] eq 'name' } 0 .. $#x - 1;
ok(!$left{gone1} && !$left{gone2}, 'consumers: gone from the group');
ok($left{busy}, 'consumers: one with a pending entry stays');
ok($left{me}, 'consumers: the caller stays');
ok($left{fresh}, 'consumers: a recently active one stays');
is(eval_script('consumers', ["$P:nothing"], [$GROUP, 'me', 0]), '', 'consumers: no stream, nothing');
is(eval_script('consumers', [$JOBS], ["$P:nogroup", 'me', 0]), '', 'consumers: no group, nothing');
Ragq::Valkey::cmd('XACK', $JOBS, $GROUP, $busy);

kill 'KILL', $sub_pid;
waitpid($sub_pid, 0);
my @keys = Ragq::Valkey::cmd_list('KEYS', "$P:*");
Ragq::Valkey::cmd('DEL', @keys) if @keys;

done_testing();
