# Ragq::Valkey: test helpers for the private redis-server that tests/run starts.
#
# Owns: talking to it (redis-cli), and stopping, starting, pausing it to
# simulate Valkey outages. The server's config and pid file come from
# RAGQ_TEST_REDIS_CONF / RAGQ_TEST_REDIS_PID (set by tests/run); the port from
# TEST_NGINX_REDIS_PORT. Usable from `--- init` and from .t preambles.
package Ragq::Valkey;

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET ();
use Time::HiRes ();

our @EXPORT_OK = qw(cmd cmd_list);

sub port {
    my $p = $ENV{TEST_NGINX_REDIS_PORT};
    die "Ragq::Valkey: TEST_NGINX_REDIS_PORT is not set (run tests via"
      . " tests/run)\n" unless defined $p && $p =~ /^\d+$/;
    return $p;
}

sub _run {
    my @args = @_;
    my $pid = open(my $fh, '-|');
    die "Ragq::Valkey: fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        no warnings 'exec';
        exec 'redis-cli', '-h', '127.0.0.1', '-p', port(), '--raw', @args;
        require POSIX;
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($out, $? >> 8);
}

# One command; its output as redis-cli --raw prints it, chomped. Dies if
# redis-cli fails (e.g. the server is down).
sub cmd {
    my ($out, $rc) = _run(@_);
    die "Ragq::Valkey: redis-cli @_ failed ($rc): $out\n" if $rc;
    chomp $out;
    return $out;
}

# The output lines (e.g. of HGETALL, LRANGE, KEYS).
sub cmd_list {
    my $out = cmd(@_);
    return () unless length $out;
    return split /\n/, $out;
}

sub flushall { return cmd('FLUSHALL') }

# ---- jobs as the module stores them (DEVELOPERS.md, "data model") ----
# A job nobody claimed yet is its queue entry in P:jobs (fields r, query,
# top_k, collection, tenant, created_at), its id made of the entry id and
# r; a claimed job (or one enqueued before the one-XADD enqueue) is its
# hash P:job:ID.  $list: a sub running a command and returning its output
# lines (another server's cli_list); the suite's server by default.

sub id_of_entry {
    my ($entry, $r) = @_;
    my ($ms, $seq) = $entry =~ /^(\d+)-(\d+)$/ or die "not an entry id: $entry\n";
    return sprintf('%012x%04x%s', $ms, $seq, $r);
}

sub entry_of_id {
    my ($id) = @_;
    no warnings "portable";
    return hex(substr($id, 0, 12)) . "-" . hex(substr($id, 12, 4));
}

# The ids of the jobs under a prefix: hashes and entries, sorted.
sub job_ids {
    my ($prefix, $list) = @_;
    $list //= \&cmd_list;
    my %ids = map { /:job:(\w+)$/ ? ($1 => 1) : () }
      $list->('--scan', '--pattern', "$prefix:job:*");
    # each entry that carries a job as "ENTRY R"
    my $lua = "local o = {} for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do "
      . "local f = e[2] for i = 1, #f - 1, 2 do if f[i] == 'r' then "
      . "o[#o + 1] = e[1] .. ' ' .. f[i + 1] end end end return o";
    for ($list->('EVAL', $lua, 1, "$prefix:jobs")) {
        my ($entry, $r) = split / /;
        $ids{ id_of_entry($entry, $r) } = 1;
    }
    return sort keys %ids;
}

# The job as /job-status reads it: its hash, else its entry (status
# queued, attempts 0); {} when neither.
sub job {
    my ($prefix, $id, $list) = @_;
    $list //= \&cmd_list;
    my @kv = $list->('HGETALL', "$prefix:job:$id");
    if (!@kv) {
        my $e = entry_of_id($id);
        my (undef, @f) = $list->('XRANGE', "$prefix:jobs", $e, $e);
        my %f = @f;
        @kv = ((map { $_ => $f{$_} } grep { $_ ne 'r' } keys %f),
               status => 'queued', attempts => 0)
          if @f && ($f{r} // '') eq substr($id, 16);
    }
    my %h;
    while (@kv) {
        my $k = shift @kv;
        $h{$k} = shift(@kv) // '';
    }
    return \%h;
}

# The ids of the jobs under a prefix whose query is $query.
sub jobs_with_query {
    my ($prefix, $query, $list) = @_;
    return grep { job_field($prefix, $_, 'query', $list) eq $query }
      job_ids($prefix, $list);
}

# One field, read inside Valkey (values may hold newlines).
my $JOB_FIELD = "if redis.call('EXISTS', KEYS[1]) == 1 then "
  . "return redis.call('HGET', KEYS[1], ARGV[1]) end "
  . "local e = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2])[1] "
  . "if not e then return false end local f = {} "
  . "for i = 1, #e[2] - 1, 2 do f[e[2][i]] = e[2][i + 1] end "
  . "if f.r ~= ARGV[3] then return false end "
  . "if ARGV[1] == 'status' then return 'queued' end "
  . "if ARGV[1] == 'attempts' then return '0' end return f[ARGV[1]]";

sub job_field {
    my ($prefix, $id, $f, $list) = @_;
    my @a = ('EVAL', $JOB_FIELD, 2, "$prefix:job:$id", "$prefix:jobs", $f,
             entry_of_id($id), substr($id, 16));
    return $list ? join("\n", $list->(@a)) : cmd(@a);
}

sub _pid {
    my $f = $ENV{RAGQ_TEST_REDIS_PID}
      or die "Ragq::Valkey: RAGQ_TEST_REDIS_PID is not set\n";
    open my $fh, '<', $f or return undef;
    my $pid = <$fh>;
    close $fh;
    return defined $pid && $pid =~ /(\d+)/ ? $1 : undef;
}

sub _port_open {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => port(),
        Proto => 'tcp', Timeout => 0.5);
    return 0 unless $s;
    close $s;
    return 1;
}

sub _wait_for {
    my ($what, $cond, $secs) = @_;
    my $deadline = Time::HiRes::time() + ($secs // 10);
    while (Time::HiRes::time() < $deadline) {
        return 1 if $cond->();
        Time::HiRes::sleep(0.02);
    }
    die "Ragq::Valkey: timed out waiting for $what\n";
}

# SIGTERM is redis-server's own shutdown (nothing is saved: `save ""`);
# SIGCONT first because a paused server cannot act on it.
sub stop {
    my $pid = _pid();
    if ($pid && _alive($pid)) {
        kill 'CONT', $pid;
        kill 'TERM', $pid;
        my $deadline = Time::HiRes::time() + 5;
        while (_alive($pid) && Time::HiRes::time() < $deadline) {
            Time::HiRes::sleep(0.02);
        }
        kill 'KILL', $pid if _alive($pid);
    }
    _wait_for('redis-server to close its port', sub { !_port_open() });
    return 1;
}

sub _alive {
    my $pid = shift;
    return 0 unless kill 0, $pid;
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $s = <$fh>;
        close $fh;
        return 0 if defined $s && $s =~ /^\d+ \(.*\) Z /s;
    }
    return 1;
}

sub start {
    my $conf = $ENV{RAGQ_TEST_REDIS_CONF}
      or die "Ragq::Valkey: RAGQ_TEST_REDIS_CONF is not set\n";
    system('redis-server', $conf) == 0
      or die "Ragq::Valkey: redis-server $conf failed: $?\n";
    _wait_for('redis-server to answer PING', sub {
        my ($out, $rc) = _run('PING');
        return $rc == 0 && $out =~ /^PONG/;
    });
    return 1;
}

sub restart {
    stop();
    return start();
}

# SIGSTOP: the port stays open but nothing answers (a hung Valkey).
sub pause {
    my $pid = _pid() or die "Ragq::Valkey: no redis-server pid\n";
    kill 'STOP', $pid;
    return 1;
}

sub resume {
    my $pid = _pid() or die "Ragq::Valkey: no redis-server pid\n";
    kill 'CONT', $pid;
    return 1;
}

1;
