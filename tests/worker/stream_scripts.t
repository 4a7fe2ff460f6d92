# worker/scripts/append.lua on its own (redis-cli --eval, no worker): the
# streamed pieces of an answer go to P:out:ID with ids 0-1, 0-2, ... and one
# PUBLISH per batch on the channel P:out:ID; only the claim that holds the
# job (its fencing token) may append; a new try after pieces were written
# starts with one reset entry; nothing is written for a job that is not
# running; final.lua makes the stream end with the result when an append
# was lost.
use strict;
use warnings;
use utf8;
use Test::More;
use File::Basename qw(dirname);
use IO::Select;
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Encode ();
use POSIX ();

my $P = "tso$$";
my $DIR = dirname(__FILE__) . '/../../worker/scripts';
my $id = 'a' x 32;
my ($JOB, $OUT) = ("$P:job:$id", "$P:out:$id");

sub append {
    my ($token, $owner, $new_try, @pieces) = @_;
    return Ragq::Valkey::cmd('--eval', "$DIR/append.lua", $JOB, $OUT, ',',
                             $token, $owner, $new_try, @pieces);
}

# The stream as [seq, field => value, ...] (pieces hold no newline here).
sub entries {
    my @l = Ragq::Valkey::cmd_list('XRANGE', $OUT, '-', '+');
    my @out;
    while (@l) {
        my ($eid, @kv) = splice(@l, 0, 5);
        my ($seq) = $eid =~ /^0-(\d+)$/ or die "bad id $eid";
        push @out, [$seq, @kv];
    }
    return \@out;
}

# A subscriber on the job's channel.
my $sub_pid = open(my $sub, '-|') // die "fork: $!";
if ($sub_pid == 0) {
    no warnings 'exec';
    exec 'redis-cli', '-h', '127.0.0.1', '-p', Ragq::Valkey::port(), '--raw',
        'SUBSCRIBE', $OUT;
    POSIX::_exit(127);
}
my $sel = IO::Select->new($sub);
my $buf = '';
sub next_message {
    my $deadline = time + 5;
    while (time < $deadline) {
        return $1 if $buf =~ s/\Amessage\n\Q$OUT\E\n([^\n]*)\n//;
        $buf =~ s/\A(?:subscribe\n\Q$OUT\E\n\d+\n)//;
        next unless $sel->can_read(0.1);
        my $n = sysread($sub, my $chunk, 4096);
        last unless $n;
        $buf .= $chunk;
    }
    return undef;
}
for (1 .. 100) {
    last if (Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', $OUT))[1];
    sleep 0.05;
}

# Not running: nothing written.
is(append(1, 'w1', 1, 'x'), -2, 'no job hash: -2');
Ragq::Valkey::cmd('SET', $JOB, 'started');
is(append(1, 'w1', 1, 'x'), -2, 'job key of another type: -2, not an error');
Ragq::Valkey::cmd('DEL', $JOB);
Ragq::Valkey::cmd('HSET', $JOB, 'status', 'queued', 'attempts', 1, 'owner', 'w1');
is(append(1, 'w1', 1, 'x'), -2, 'queued (released) job: -2');
is(Ragq::Valkey::cmd('EXISTS', $OUT), 0, 'no stream written');

# Attempt 1, first try: no reset before the first piece.
Ragq::Valkey::cmd('HSET', $JOB, 'status', 'started');
is(append(1, 'w1', 1, 'Hello', ', wor'), 2, 'first batch: last seq 2');
is(next_message(), '1:t:5:Hello2:t:5:, wor', 'one message for the batch, entries framed');
is(append(1, 'w1', 0, 'ld'), 3, 'second batch');
is(next_message(), '3:t:2:ld', 'its message');
is_deeply(entries(), [[1, 't', 'Hello', 'a', 1], [2, 't', ', wor', 'a', 1],
                      [3, 't', 'ld', 'a', 1]], 'pieces with ids 0-1.. and the attempt');

# A stale attempt (another worker claimed it since) cannot append.
Ragq::Valkey::cmd('HSET', $JOB, 'attempts', 2, 'owner', 'w2');
is(append(1, 'w1', 0, 'STALE'), -1, 'stale token: -1');
is(append(2, 'w1', 0, 'STALE'), -1, 'right attempt, other owner: -1');
is(scalar @{ entries() }, 3, 'nothing appended by the stale attempt');

# Attempt 2's first batch: a reset, then its pieces.
is(append(2, 'w2', 1, 'Héllo 😀'), 5, 'new try: reset + piece');
is(next_message(), '4:r:1:25:t:' . length(Encode::encode_utf8('Héllo 😀')) . ':'
   . Encode::encode_utf8('Héllo 😀'), 'reset framed as r, bytes counted');
my $e = entries();
is_deeply($e->[3], [4, 'reset', 2, 'a', 2], 'reset entry carries the attempt');

# The chat call retried within attempt 2 before anything new: one more reset
# (the stream holds a piece since the last one); a try that wrote nothing
# then a new try: no second reset in a row.
is(append(2, 'w2', 1), 6, 'retry within the attempt: reset only');
is(next_message(), '6:r:1:2', 'its message');
is(append(2, 'w2', 1, 'Bye'), 7, 'another try right away: no reset in a row');
is(next_message(), '7:t:3:Bye', 'only the piece');

# The text since the last reset is the answer of the try that runs.
$e = entries();
my ($last_reset) = grep { $e->[$_][1] eq 'reset' } reverse 0 .. $#$e;
is(join('', map { $_->[2] } @{$e}[$last_reset + 1 .. $#$e]), 'Bye',
   'pieces after the last reset');

# Final or gone: nothing more.
Ragq::Valkey::cmd('HSET', $JOB, 'status', 'finished');
is(append(2, 'w2', 0, 'late'), -2, 'final job: -2');
Ragq::Valkey::cmd('DEL', $OUT);
Ragq::Valkey::cmd('SET', $OUT, 'x');
Ragq::Valkey::cmd('HSET', $JOB, 'status', 'started');
like(append(2, 'w2', 0, 'x'), qr/WRONGTYPE/, 'output key of another type: an error, nothing written');

# ---- final.lua checks the stream against the result it writes
my ($EVENTS, $DEAD, $JOBS) = ("$P:events", "$P:dead", "$P:jobs");
sub final_finished {
    my ($result) = @_;
    return Ragq::Valkey::cmd('--eval', "$DIR/final.lua", $JOB, $EVENTS, $DEAD, $JOBS, $OUT, ',',
        'finished', 1700000009999, 60000, $result, '[]', '{}', '', '1-1', $id,
        "$P:workers", 3, 'w3');
}
sub fresh { Ragq::Valkey::cmd('DEL', $JOB, $OUT);
            Ragq::Valkey::cmd('HSET', $JOB, 'status', 'started', 'attempts', 3, 'owner', 'w3') }

# The pieces since the last reset are the result: nothing added.
fresh();
append(3, 'w3', 1, 'old text');
append(3, 'w3', 1, 'The ', 'answer.');
next_message() for 1 .. 2;
is(final_finished('The answer.'), 1, 'final written');
is(scalar @{ entries() }, 4, 'a stream that matches the result is left as it is');

# A piece lost (an append refused): a reset, then the whole result.
fresh();
append(3, 'w3', 1, 'The ');
next_message();
is(final_finished('The answer.'), 1, 'final written');
$e = entries();
is_deeply([@{$e}[1, 2]], [[2, 'reset', 3, 'a', 3], [3, 't', 'The answer.', 'a', 3]],
          'a stream short of the result gets a reset and the whole result');
is(next_message(), '2:r:1:33:t:11:The answer.', 'published as one batch');
my $pttl = Ragq::Valkey::cmd('PTTL', $OUT);
ok($pttl > 0 && $pttl <= 60000, "the output stream has the job's TTL ($pttl ms)");

# No stream at all (every append lost): the result as its one piece.
fresh();
is(final_finished('Only this.'), 1, 'final written');
is_deeply(entries(), [[1, 't', 'Only this.', 'a', 3]], 'no stream: the result as one piece, no reset');
is(next_message(), '1:t:10:Only this.', 'published');

# ---- claim.lua: a job failed at its claim (max_attempts) expires the
# pieces its earlier attempts left
fresh();
append(3, 'w3', 1, 'half an answer');
next_message();
Ragq::Valkey::cmd('HSET', $JOB, 'status', 'queued', 'query', 'q?', 'top_k', '', 'collection', '');
my $r = Ragq::Valkey::cmd('--eval', "$DIR/claim.lua", $JOB, $EVENTS, $DEAD, $JOBS, $OUT, ',',
    3, 1700000009999, $id, '1-1', "$P:workers", 'w4', 60000, 1000);
like($r, qr/max_attempts/, 'claimed more than RAGQ_MAX_ATTEMPTS times: failed at the claim');
$pttl = Ragq::Valkey::cmd('PTTL', $OUT);
ok($pttl > 0 && $pttl <= 60000, "the output stream expires with the job ($pttl ms)");

# ---- an ACL without XLEN (the worker's ACL of 0.5.0): the last seq read
# back from the last entry instead, the same stream
my $U = "old-acl-$$";
Ragq::Valkey::cmd('ACL', 'SETUSER', $U, 'on', '>pw', '~*', '&*', '-@all',
                  '+eval', '+hmget', '+xrevrange', '+xadd', '+publish');
sub append_as_old {
    my ($token, $owner, $new_try, @pieces) = @_;
    return Ragq::Valkey::cmd('--user', $U, '--pass', 'pw', '--no-auth-warning', '--eval',
        "$DIR/append.lua", $JOB, $OUT, ',', $token, $owner, $new_try, @pieces);
}
fresh();
is(append_as_old(3, 'w3', 1, 'Hello '), 1, 'no XLEN allowed: first batch');
is(append_as_old(3, 'w3', 0, 'world'), 2, 'no XLEN allowed: second batch');
is(append_as_old(3, 'w3', 1, 'again'), 4, 'no XLEN allowed: a new try, reset + piece');
is(append(3, 'w3', 0, '!'), 5, 'and with XLEN again: the next seq');
is_deeply(entries(), [[1, 't', 'Hello ', 'a', 3], [2, 't', 'world', 'a', 3],
                      [3, 'reset', 3, 'a', 3], [4, 't', 'again', 'a', 3], [5, 't', '!', 'a', 3]],
          'the stream is the same either way');
next_message() for 1 .. 2;
is(next_message(), '3:r:1:34:t:5:again', 'published as with XLEN');
next_message();
Ragq::Valkey::cmd('ACL', 'DELUSER', $U);

kill 'TERM', $sub_pid;
close $sub;
Ragq::Valkey::cmd('DEL', $JOB, $OUT, $DEAD);
done_testing();
