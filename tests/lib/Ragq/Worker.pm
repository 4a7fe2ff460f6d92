# Ragq::Worker: starts and stops ragq-worker processes for tests (binary from
# $ENV{RAGQ_BUILD}, default build/), each with its own environment and its
# stderr captured to a file; waits for log lines; enqueues jobs directly into
# Valkey the way the module does, and reads them back.
package Ragq::Worker;

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempfile);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use Ragq::Valkey ();
use Ragq::Proc qw(wait_until);    # exported again, for older callers

use Exporter 'import';
our @EXPORT_OK = qw(wait_until pending);

my %LIVE;

sub binary {
    my $build = $ENV{RAGQ_BUILD} || 'build';
    return "$build/ragq-worker";
}

# Variables a worker would otherwise inherit from the developer's shell (or
# from a systemd unit running the tests: its NOTIFY_SOCKET and watchdog).
my @SCRUB = qw(OPENAI_BASE_URL OPENAI_API_KEY QDRANT_URL QDRANT_API_KEY
  NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID);

# start(ENV => {...}, args => [...]): env values override; RAGQ_VALKEY_URL
# defaults to the suite's redis-server.
sub start {
    my ($class, %o) = @_;
    my %env = (
        RAGQ_VALKEY_URL => 'redis://127.0.0.1:' . Ragq::Valkey::port(),
        %{ $o{env} || {} },
    );
    my ($fh, $logfile) = tempfile('ragq-worker-XXXXXX', TMPDIR => 1, UNLINK => 1);
    my $bin = $o{binary} || binary();
    croak "Ragq::Worker: $bin is not built" unless -x $bin;
    my $pid = fork();
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        delete @ENV{ grep { /^RAGQ_/ && !/^RAGQ_(BUILD|ROOT|SAN_DIR)$/ } keys %ENV };
        delete @ENV{@SCRUB};
        $ENV{$_} = $env{$_} for keys %env;
        # Sanitized runs (tests/run RAGQ_ASAN=1): the worker frees what it
        # allocates, so leaks are looked for in it too (not in nginx, whose
        # pools are freed by exiting).
        $ENV{ASAN_OPTIONS} =~ s/detect_leaks=0/detect_leaks=1/
          if $ENV{RAGQ_SAN_DIR} && defined $ENV{ASAN_OPTIONS};
        open STDERR, '>&', $fh or POSIX::_exit(127);
        open STDOUT, '>&', $fh or POSIX::_exit(127);
        open STDIN, '<', '/dev/null';
        exec $bin, @{ $o{args} || [] } or POSIX::_exit(127);
    }
    my $self = bless { pid => $pid, logfile => $logfile, logfh => $fh }, $class;
    $LIVE{$pid} = 1;
    return $self;
}

sub pid { $_[0]{pid} }

sub log {
    my ($self) = @_;
    open my $f, '<', $self->{logfile} or return '';
    local $/;
    my $s = <$f>;
    return $s // '';
}

# Waits until the log matches re (or the process exits); returns the match.
sub wait_log {
    my ($self, $re, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (time < $deadline) {
        my $log = $self->log;
        return $1 // $& if $log =~ $re;
        last if !$self->alive;
        sleep 0.05;
    }
    my $log = $self->log;
    return $1 // $& if $log =~ $re;
    return undef;
}

sub ready { $_[0]->wait_log(qr/info: ready: .*/, $_[1] // 10) }

sub alive {
    my ($self) = @_;
    return 0 unless $self->{pid};
    return 1 if !defined $self->{status} && waitpid($self->{pid}, WNOHANG) == 0;
    $self->{status} //= $?;
    return 0;
}

sub signal {
    my ($self, $sig) = @_;
    kill $sig, $self->{pid} if $self->alive;
}

# Exit status (as $?) once the process ended within timeout, else undef.
sub wait_exit {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while ($self->alive) {
        return undef if time > $deadline;
        sleep 0.02;
    }
    delete $LIVE{ $self->{pid} };
    return $self->{status};
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    if ($self->alive) {
        kill 'TERM', $self->{pid};
        if (!defined $self->wait_exit(10)) {
            kill 'KILL', $self->{pid};
            $self->wait_exit(5);
        }
    }
    delete $LIVE{ $self->{pid} };
    return $self->{status};
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    if ($self->{pid} && $self->alive) {
        kill 'KILL', $self->{pid};
        waitpid($self->{pid}, 0);
    }
}

END {
    local $?;
    for my $pid (keys %LIVE) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
}

# ---- the worker's ACL -------------------------------------------------

# The commands ragq-worker sends, itself and inside its scripts: the ACL of
# README "Production Valkey" (worker subsection).  Tests log in with it, so a
# command added to the worker without adding it here fails them (NOPERM).
our @ACL_COMMANDS = qw(xreadgroup xautoclaim xpending xclaim xack xdel
  xgroup|create xgroup|delconsumer xinfo|groups xinfo|consumers
  evalsha eval script|load client|id client|unblock role
  type hset hget hmget hdel hincrby pexpire publish xadd xlen
  multi exec del zadd zrem zremrangebyscore time xrevrange xrange subscribe hgetall
  exists);

# The rules of an ACL user for a worker of prefix P with password PASS.
sub acl_rules {
    my ($prefix, $pass) = @_;
    return "on >$pass resetkeys ~$prefix:* resetchannels &$prefix:* -\@all "
      . join(' ', map { "+$_" } @ACL_COMMANDS);
}

# ---- jobs in Valkey, the module's way ---------------------------------

# Where the job helpers below talk: the suite's redis-server (Ragq::Valkey),
# or any object with cli(@args) / cli_list(@args), such as a
# Ragq::ValkeyHA server:  local $Ragq::Worker::VALKEY = $server;
our $VALKEY;

sub _cmd {
    return $VALKEY ? $VALKEY->cli(@_) : Ragq::Valkey::cmd(@_);
}

sub _cmd_list {
    return $VALKEY ? $VALKEY->cli_list(@_) : Ragq::Valkey::cmd_list(@_);
}

my $SEQ = 0;

sub new_id {
    return sprintf('%08x%08x%08x%08x', $$, int(time) & 0xffffffff, ++$SEQ,
                   int(rand(0xffffffff)));
}

my $ENQUEUE = "redis.call('HSET', KEYS[1], unpack(ARGV)); "
  . "return redis.call('XADD', KEYS[2], '*', 'job', KEYS[3])";

# The id of the job an entry "<ms>-<seq>" with random part $r carries
# (DEVELOPERS.md, "data model"), as the module and the worker make it.
sub id_of_entry {
    my ($entry, $r) = @_;
    my ($ms, $seq) = $entry =~ /^(\d+)-(\d+)$/ or die "not an entry id: $entry\n";
    return sprintf('%012x%04x%s', $ms, $seq, $r);
}

# The entry id "<ms>-<seq>" a job id names.
sub entry_of_id {
    my ($id) = @_;
    no warnings "portable";
    return hex(substr($id, 0, 12)) . "-" . hex(substr($id, 12, 4));
}

# enqueue(prefix => P, query => Q, top_k => K, collection => C
# [, callback_url => URL]): the job as the module enqueues it, one XADD
# that carries it (the callback_url last, when given).  With attempts => N,
# id => ID or old => 1: as the module did before (hash + "job ID" entry),
# the form of jobs enqueued before an upgrade.
sub enqueue {
    my (%o) = @_;
    my $p = $o{prefix} // 'ragq';
    my $ms = int(time * 1000);
    if (!$o{old} && !defined $o{attempts} && !defined $o{id}) {
        my $r = sprintf('%08x%08x', int(rand(0xffffffff)), int(rand(0xffffffff)));
        my $entry = _cmd('XADD', "$p:jobs", '*', r => $r,
            query => $o{query} // 'What is the capital of France?',
            top_k => $o{top_k} // 3, collection => $o{collection} // '',
            tenant => $o{tenant} // '', created_at => $ms,
            defined $o{callback_url} ? (callback_url => $o{callback_url}) : ());
        return id_of_entry($entry, $r);
    }
    my $id = $o{id} // new_id();
    _cmd('EVAL', $ENQUEUE, 3, "$p:job:$id", "$p:jobs", $id,
        status => 'queued', query => $o{query} // 'What is the capital of France?',
        top_k => $o{top_k} // 3, collection => $o{collection} // '',
        tenant => '', created_at => $ms, attempts => $o{attempts} // 0);
    return $id;
}

# The job hash as a Perl hash (values must not contain newlines).
# A job not claimed yet is read from its queue entry, as the module reads
# it: status queued, attempts 0.
sub job {
    my ($prefix, $id) = @_;
    my @kv = _cmd_list('HGETALL', "$prefix:job:$id");
    if (!@kv && $id =~ /^[0-9a-f]{32}$/) {
        my $e = entry_of_id($id);
        my (undef, @f) = _cmd_list('XRANGE', "$prefix:jobs", $e, $e);
        my %f = @f;
        @kv = ((map { $_ => $f{$_} } grep { $_ ne 'r' } keys %f),
               status => 'queued', attempts => 0)
          if @f && ($f{r} // '') eq substr($id, 16);
    }
    my %h;
    while (@kv) {
        my $k = shift @kv;
        my $v = shift @kv;
        $h{$k} = $v // '';
    }
    return \%h;
}

sub field {
    my ($prefix, $id, $f) = @_;
    my $v = _cmd('HGET', "$prefix:job:$id", $f);
    return $v if length $v || _cmd('EXISTS', "$prefix:job:$id");
    return job($prefix, $id)->{$f} // '';
}

# The module's cancel script, read from ngx_http_ragq_cancel.c (its C
# string literal), so worker tests cancel exactly as POST /job-cancel does.
my $CANCEL_SCRIPT;

sub cancel_script {
    return $CANCEL_SCRIPT if defined $CANCEL_SCRIPT;
    my $root = $ENV{RAGQ_ROOT} // '.';
    open my $f, '<', "$root/ngx_http_ragq_cancel.c" or die "ngx_http_ragq_cancel.c: $!";
    local $/;
    my $c = <$f>;
    my ($lit) = $c =~ /ngx_http_ragq_cancel_script\[\] =\s*(.*?);\n/s
      or die "no cancel script in ngx_http_ragq_cancel.c\n";
    my $s = '';
    while ($lit =~ /"((?:[^"\\]|\\.)*)"/g) {
        (my $part = $1) =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
        $s .= $part;
    }
    return $CANCEL_SCRIPT = $s;
}

# cancel(prefix, id[, tenant, ttl_ms]): what POST /job-cancel does, with the
# module's own script: its reply ({0}, {1, status}, {2, HGETALL}) as a list.
sub cancel {
    my ($prefix, $id, $tenant, $ttl) = @_;
    return _cmd_list('EVAL', cancel_script(), 5, "$prefix:job:$id", "$prefix:jobs",
        "$prefix:events", "$prefix:cancel", "$prefix:out:$id", $id, entry_of_id($id),
        substr($id, 16), int(time * 1000), $ttl // 3600000, $tenant // '',
        '{"code":"canceled","message":"the job was canceled by POST /job-cancel"}');
}

# Waits until every id has a final status; returns the number that did.
sub wait_final {
    my ($prefix, $ids, $timeout) = @_;
    my $deadline = time + ($timeout // 20);
    my @left = @$ids;
    while (@left && time < $deadline) {
        @left = grep { (field($prefix, $_, 'status') // '') !~ /^(finished|failed)$/ } @left;
        sleep 0.05 if @left;
    }
    return @$ids - @left;
}

# How many entries of prefix's queue are claimed and not yet acked.
sub pending {
    my ($prefix) = @_;
    return (_cmd_list('XPENDING', "$prefix:jobs", "$prefix:workers"))[0];
}

sub wait_status {
    my ($prefix, $id, $status, $timeout) = @_;
    my $deadline = time + ($timeout // 20);
    while (time < $deadline) {
        my $s = field($prefix, $id, 'status') // '';
        return 1 if $s eq $status;
        sleep 0.05;
    }
    return 0;
}

1;
