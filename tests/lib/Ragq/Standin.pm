# Ragq::Standin: starts, drives and stops tests/standins/standin.py (the OpenAI-compatible +
# Qdrant stand-in) from Perl tests, on a free loopback port, without leaving orphan processes.
package Ragq::Standin;

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempfile);
use HTTP::Tiny;
use IO::Select;
use JSON::PP;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Time::HiRes qw(time sleep);

my %LIVE;    # pid => object, so the END block can stop what DESTROY did not

our $SCRIPT = $ENV{RAGQ_STANDIN}
  || File::Spec->catfile(dirname(abs_path(__FILE__)), '..', '..', 'standins', 'standin.py');

# Debian's interpreter first: a pyenv-style shim on PATH costs ~0.3 s per start.
our $PYTHON = $ENV{RAGQ_PYTHON} || (-x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3');

my $JSON = JSON::PP->new->utf8->canonical;

sub start {
    my ($class, %o) = @_;
    my @cmd = ($PYTHON, $SCRIPT, '--port', 0, '--host', '127.0.0.1', '--exit-with-parent');
    push @cmd, '--latency-ms',     $o{latency_ms}     if defined $o{latency_ms};
    push @cmd, '--dim',            $o{dim}            if defined $o{dim};
    push @cmd, '--api-key',        $o{api_key}        if defined $o{api_key};
    push @cmd, '--qdrant-api-key', $o{qdrant_api_key} if defined $o{qdrant_api_key};
    my $datafile;
    if (defined $o{data}) {
        if (ref $o{data}) {
            # Structured data is written to a temp file for --data.
            my $fh;
            ($fh, $datafile) = tempfile('standin-data-XXXXXX', TMPDIR => 1, UNLINK => 1);
            print $fh $JSON->encode($o{data});
            close $fh;
        } else {
            $datafile = $o{data};
        }
        push @cmd, '--data', $datafile;
    }
    my ($errfh, $errfile) = tempfile('standin-err-XXXXXX', TMPDIR => 1, UNLINK => 1);
    pipe(my $rd, my $wr) or croak "pipe: $!";
    my $pid = fork();
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $rd;
        open STDOUT, '>&', $wr or POSIX::_exit(127);
        open STDERR, '>&', $errfh or POSIX::_exit(127);
        open STDIN, '<', '/dev/null';
        exec @cmd or POSIX::_exit(127);
    }
    close $wr;
    my $self = bless { pid => $pid, errfile => $errfile, errfh => $errfh, out => $rd,
                       datafile => $datafile, owner => $$,
                       api_key => $o{api_key}, qdrant_api_key => $o{qdrant_api_key} }, $class;
    $LIVE{$pid} = $self;
    weaken($LIVE{$pid});    # so DESTROY still runs when the test drops its object
    my $sel = IO::Select->new($rd);
    my ($line, $deadline) = ('', time + ($o{timeout} // 10));
    while (time < $deadline) {
        last if $line =~ /\n/;
        if ($sel->can_read(0.1)) {
            my $n = sysread($rd, my $chunk, 256);
            last unless $n;
            $line .= $chunk;
        }
        if (waitpid($pid, WNOHANG) == $pid) {    # exited before printing "ready"
            delete $LIVE{$pid};
            delete $self->{pid};
            last;
        }
    }
    if ($line =~ /^ready (\d+)/) {
        $self->{port} = $1;
        $self->{http} = HTTP::Tiny->new(timeout => 30, keep_alive => 1);
        return $self;
    }
    $self->stop;
    croak "standin did not print \"ready\" within " . ($o{timeout} // 10) . "s or exited (@cmd): " . _slurp($errfile);
}

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    my $s = <$fh>;
    return defined $s ? $s : '';
}

sub port       { $_[0]{port} }
sub pid        { $_[0]{pid} }
sub base_url   { 'http://127.0.0.1:' . $_[0]{port} . '/v1' }
sub qdrant_url { 'http://127.0.0.1:' . $_[0]{port} }
sub stderr     { _slurp($_[0]{errfile}) }

# request(METHOD, PATH, BODY?, HEADERS?) -> HTTP::Tiny response hash, with {json} decoded when
# the body is JSON. BODY may be a reference (sent as JSON) or a string.
sub request {
    my ($self, $method, $path, $body, $headers) = @_;
    my %h = %{ $headers || {} };
    my %args = (headers => \%h);
    if (defined $body) {
        $args{content} = ref $body ? $JSON->encode($body) : $body;
        $h{'content-type'} //= 'application/json';
    }
    my $res = $self->{http}->request($method, $self->qdrant_url . $path, \%args);
    $res->{json} = eval { $JSON->decode($res->{content}) }
      if defined $res->{content} && length $res->{content};
    return $res;
}

sub _control {
    my ($self, $method, $path, $body) = @_;
    my $res = $self->request($method, $path, $body);
    croak "standin $method $path: $res->{status} $res->{content}" unless $res->{success};
    return $res->{json};
}

sub fault   { my ($self, $rule) = @_; $self->_control(POST => '/_standin/faults', $rule) }
sub latency { my ($self, $ms) = @_; $self->_control(POST => '/_standin/latency', { ms => $ms }) }
# A streamed chat answer's pace (ms between events) and length (words; 0: as built).
sub stream_pace {
    my ($self, %o) = @_;
    $self->_control(POST => '/_standin/stream', { token_ms => $o{token_ms} // 0,
                                                  answer_words => $o{answer_words} // 0 });
}
sub reset {
    my ($self, %o) = @_;
    $self->_control(POST => '/_standin/reset', { data => $o{data} ? JSON::PP::true : JSON::PP::false });
}
sub stats { $_[0]->_control(GET => '/_standin/stats') }

# The webhook receiver: every request to /hooks/... since the last reset,
# oldest first: { method, path, headers (lower-case names), body_b64 (the
# raw bytes), at }.  Faults on a /hooks/ path make it answer 500, 302...
sub hooks { @{ $_[0]->_control(GET => '/_standin/hooks')->{hooks} } }
sub hook_url { 'http://127.0.0.1:' . $_[0]{port} . "/hooks/$_[1]" }

# Number of requests the stand-in has seen on one path (since the last reset).
sub count {
    my ($self, $path) = @_;
    return $self->stats->{requests}{$path} // 0;
}

sub embed {
    my ($self, @texts) = @_;
    my $res = $self->request(POST => '/v1/embeddings',
                             { model => 'standin-embed', input => \@texts }, $self->_auth);
    croak "embed: $res->{status} $res->{content}" unless $res->{success};
    my @vec;
    $vec[ $_->{index} ] = $_->{embedding} for @{ $res->{json}{data} };
    return wantarray ? @vec : $vec[0];
}

sub create_collection {
    my ($self, $name, $dim, $distance) = @_;
    my $res = $self->request(PUT => "/collections/$name",
                             { vectors => { size => $dim + 0, distance => $distance // 'Cosine' } },
                             $self->_qauth);
    croak "create_collection: $res->{status} $res->{content}" unless $res->{success};
    return $res->{json};
}

# upsert(NAME, [{id, vector?, payload}]): points without a vector are embedded from
# payload.text (or payload.page_content) with the stand-in's own embeddings.
sub upsert {
    my ($self, $name, $points) = @_;
    my @pts = map { {%$_} } @$points;
    my @need = grep { !$_->{vector} } @pts;
    if (@need) {
        my @v = $self->embed(map { $_->{payload}{text} // $_->{payload}{page_content} // '' } @need);
        $need[$_]{vector} = $v[$_] for 0 .. $#need;
    }
    my $res = $self->request(PUT => "/collections/$name/points?wait=true", { points => \@pts },
                             $self->_qauth);
    croak "upsert: $res->{status} $res->{content}" unless $res->{success};
    return $res->{json};
}

sub _auth  { $_[0]{api_key}        ? { authorization => "Bearer $_[0]{api_key}" } : {} }
sub _qauth { $_[0]{qdrant_api_key} ? { 'api-key' => $_[0]{qdrant_api_key} }      : {} }

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid};
    return unless $pid && $self->{owner} == $$;   # a forked child must not kill its parent's stand-in
    delete $LIVE{$pid};
    kill 'TERM', $pid;
    my $deadline = time + 5;
    while (time < $deadline) {
        return if waitpid($pid, WNOHANG) != 0;
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

sub DESTROY { local ($?, $!, $@); $_[0]->stop }

END {
    local $?;
    $_->stop for grep { defined } values %LIVE;
}

1;
