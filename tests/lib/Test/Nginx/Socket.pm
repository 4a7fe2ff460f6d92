# Test::Nginx::Socket: ragq's in-repo runner for Test::Nginx's block format.
#
# Owns: the subset of openresty/test-nginx that ragq's .t files use (see
# /work/shared/notes/nginx-valkey-anchors.md section D and tests/README in
# DEVELOPERS.md): block sections, defaults, env vars, generated nginx.conf,
# nginx start/stop, request sending, response/error-log checks with the same
# assertion counts as the real module, and a one-shot mock TCP server.
# Files say only `use Test::Nginx::Socket;` so they also run under the real
# Test::Nginx. Sections we do not implement make the run bail out loudly.
#
# Every named sub is written `sub name () {`: Spiffy's -Base source filter
# would otherwise insert `my $self = shift;`; with the empty prototype it only
# strips the prototype, which gives plain functions (as the real module does).
package Test::Nginx::Socket;

use Test::Base -Base;

use Cwd ();
use Errno ();
use File::Path qw(make_path remove_tree);
use File::Temp ();
use HTTP::Response ();
use IO::Select ();
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use List::Util ();
use POSIX ();
use Socket qw(SOCK_STREAM);
use Test::LongString ();
use Time::HiRes ();

our $VERSION = '0.01-ragq';

our @EXPORT = qw(
    run_tests run_test repeat_each no_shuffle log_level workers
    master_on master_off master_process_enabled worker_connections
    no_long_string no_root_location env_to_nginx add_block_preprocessor
    server_port server_port_for_client html_dir server_root timeout
    check_accum_error_log bail_out no_check_leak is_str config_preamble
);

# ---- settings (env vars of the real Test::Nginx::Util, same defaults) ----

our $NginxBinary = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
  || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $ServRoot = $ENV{TEST_NGINX_SERVROOT} || Cwd::cwd() . '/t/servroot';
our $LogLevel = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $Timeout = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $NoShuffle = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $ForceRestartOnTest = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
  ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $NoClean = $ENV{TEST_NGINX_NO_CLEAN};
our $FastShutdown = $ENV{TEST_NGINX_FAST_SHUTDOWN};
our $EventType = $ENV{TEST_NGINX_EVENT_TYPE};
our $ErrorLogAppend = $ENV{TEST_NGINX_ERROR_LOG};
our $LoadModules = $ENV{TEST_NGINX_LOAD_MODULES};

if ($ENV{TEST_NGINX_RANDOMIZE}) {
    $ServerPort = $ServerPortForClient = pick_free_port();
    $ServRoot .= "_$ServerPort";
}

our ($HtmlDir, $ConfDir, $LogDir, $ConfFile, $PidFile, $ErrLogFile,
    $AccLogFile);

sub setup_paths () {
    $HtmlDir = "$ServRoot/html";
    $ConfDir = "$ServRoot/conf";
    $LogDir = "$ServRoot/logs";
    $ConfFile = "$ConfDir/nginx.conf";
    $PidFile = "$LogDir/nginx.pid";
    $ErrLogFile = "$LogDir/error.log";
    $AccLogFile = "$LogDir/access.log";
}

setup_paths();

my $RepeatEach = 1;
my $Workers = 1;
my $WorkerConnections = 64;
my $NoLongString = 0;
my $NoRootLocation = 0;
my $CheckAccumErrLog = 0;
my @EnvToNginx;
my @BlockPreprocessors;

my $MainPid = $$;
my $RunningBlock;    # block whose nginx instance is up (for shutdown logs)
my $RunningConfig;   # its generated nginx.conf text (FORCE_RESTART_ON_TEST=0)
my $LastConfig;      # `--- config` of the previous block (reused when absent)
my $ErrLogPos = 0;
my %RandPorts;

my %KnownSections = map { $_ => 1 } qw(
    config http_config main_config post_main_config server_name init
    request raw_request pipelined_requests more_headers
    error_code error_code_like response_body response_body_like
    response_body_unlike response_headers response_headers_like
    raw_response_headers_like raw_response_headers_unlike
    error_log no_error_log grep_error_log grep_error_log_out
    shutdown_error_log no_shutdown_error_log
    wait abort timeout ignore_response shutdown log_level must_die
    user_files tcp_listen tcp_reply tcp_reply_delay tcp_query tcp_query_len
    tcp_no_close tcp_shutdown
    ONLY SKIP LAST
);

# ---- exported API ----

sub repeat_each () {
    if (@_) { $RepeatEach = shift; return }
    return $RepeatEach;
}

sub no_shuffle () { $NoShuffle = 1 }
sub log_level () { $LogLevel = shift if @_; return $LogLevel }
sub workers () { $Workers = shift if @_; return $Workers }
sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }

sub master_process_enabled () {
    $MasterProcessEnabled = $_[0] ? 'on' : 'off' if @_;
    return $MasterProcessEnabled eq 'on';
}

sub worker_connections () {
    $WorkerConnections = shift if @_;
    return $WorkerConnections;
}

sub no_long_string () { $NoLongString = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub env_to_nginx () { push @EnvToNginx, @_ }
sub add_block_preprocessor () { push @BlockPreprocessors, shift }
sub server_port () { return $ServerPort }
sub server_port_for_client () { return $ServerPortForClient }
sub html_dir () { return $HtmlDir }
sub server_root () { return $ServRoot }
sub timeout () { $Timeout = shift if @_; return $Timeout }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub no_check_leak () { return }
sub config_preamble () { return '' }
sub bail_out () { Test::More::BAIL_OUT(join '', @_) }

sub is_str () {
    my ($got, $expected, $desc) = @_;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    if ($NoLongString) {
        return Test::More::is($got, $expected, $desc);
    }
    return Test::LongString::is_string($got, $expected, $desc);
}

# ---- helpers ----

sub parse_time () {
    my $v = shift;
    return undef unless defined $v;
    $v =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $v =~ /^(\d+(?:\.\d+)?)\s*ms$/;
    return $1 if $v =~ /^(\d+(?:\.\d+)?)\s*s?$/;
    bail_out("bad time value '$v'");
}

sub pick_free_port () {
    for (1 .. 100) {
        my $port = 20000 + int(rand(9999));
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $port, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
          or next;
        close $s;
        return $port;
    }
    bail_out("cannot find a free loopback port");
}

sub env_value () {
    my $name = shift;
    if ($name =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
        $RandPorts{$name} //= pick_free_port();
        return $RandPorts{$name};
    }
    bail_out("No environment $name defined.") unless defined $ENV{$name};
    return $ENV{$name};
}

# $TEST_NGINX_* and $ServerPort; used only for the sections the real
# runner expands (config-like sections, response_body, grep_error_log_out).
sub expand_env () {
    my $s = shift;
    return $s if !defined $s || ref $s;
    $s =~ s/\$(TEST_NGINX_[_A-Z0-9]+)/env_value($1)/ge;
    return expand_port($s);
}

sub expand_port () {
    my $s = shift;
    return $s if !defined $s || ref $s;
    $s =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
    $s =~ s/\$ServerPort\b/$ServerPortForClient/g;
    return $s;
}

# The value of a per-request section: with several requests it must be an
# array indexed by request, as in the real runner.
sub req_value () {
    my ($block, $sec, $idx, $need_array) = @_;
    my $v = $block->$sec;
    return undef unless defined $v;
    if (ref $v && ref $v eq 'ARRAY') {
        return $v->[$idx];
    }
    if ($need_array) {
        bail_out($block->name . " - $sec must be an array (one element per"
          . " request) when several requests are sent");
    }
    return $v;
}

sub alive () {
    my $pid = shift;
    return 0 unless $pid && kill(0, $pid);
    # Our daemons are reparented to a pid 1 that may not reap: a zombie is
    # as good as gone.
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $stat = <$fh>;
        close $fh;
        return 0 if defined $stat && $stat =~ /^\d+ \(.*\) Z /s;
    }
    return 1;
}

sub children_of () {
    my $ppid = shift;
    my @kids;
    opendir my $dh, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh>;
        close $fh;
        push @kids, $p if defined $stat && $stat =~ /^\d+ \(.*\) \S (\d+) /s
          && $1 == $ppid;
    }
    closedir $dh;
    return @kids;
}

sub read_pid () {
    my $wait = shift;
    my $deadline = Time::HiRes::time() + ($wait // 0);
    while (1) {
        if (open my $fh, '<', $PidFile) {
            my $pid = <$fh>;
            close $fh;
            if (defined $pid && $pid =~ /^(\d+)/) {
                return $1;
            }
        }
        return undef if Time::HiRes::time() >= $deadline;
        Time::HiRes::sleep(0.01);
    }
}

# ---- server root, nginx.conf ----

sub setup_server_root () {
    if (-d $ServRoot) {
        opendir my $dh, $ServRoot or bail_out("cannot open $ServRoot: $!");
        my @old = grep { /^(?:conf|logs|html|\w+_temp|cache)$/ } readdir $dh;
        closedir $dh;
        remove_tree(map { "$ServRoot/$_" } @old);
    }
    make_path($ConfDir, $LogDir, $HtmlDir);
    write_file("$HtmlDir/index.html", "It works!\nIt works!\n");
}

sub write_file () {
    my ($path, $content) = @_;
    open my $fh, '>', $path or bail_out("cannot write $path: $!");
    binmode $fh;
    print $fh $content;
    close $fh or bail_out("cannot write $path: $!");
}

sub write_user_files () {
    my $block = shift;
    my $uf = $block->user_files;
    return unless defined $uf;
    my @files;
    if (ref $uf && ref $uf eq 'ARRAY') {
        @files = map { [@$_] } @$uf;
    } else {
        my @parts = split /^>>>\s+(\S+)(?:[ \t]+\d+)?[ \t]*\n/m, $uf;
        shift @parts;
        while (@parts) {
            my ($fname, $content) = splice @parts, 0, 2;
            push @files, [$fname, $content // ''];
        }
    }
    for my $f (@files) {
        my ($fname, $content, $mtime) = @$f;
        bail_out($block->name . " - bad user_files name '$fname'")
          if $fname =~ m{(?:^|/)\.\.(?:/|$)};
        my $path = "$HtmlDir/$fname";
        (my $dir = $path) =~ s{/[^/]*$}{};
        make_path($dir);
        write_file($path, $content);
        utime $mtime, $mtime, $path if defined $mtime;
    }
}

sub gen_config () {
    my $block = shift;
    my $config = shift;
    my $level = $block->log_level;
    $level = $LogLevel unless defined $level;
    $level =~ s/^\s+|\s+$//g;
    my $http_config = expand_env($block->http_config) // '';
    my $main_config = expand_env($block->main_config) // '';
    my $post_main_config = expand_env($block->post_main_config) // '';
    $config = expand_env($config) // '';
    my $server_name = $block->server_name // 'localhost';
    $server_name =~ s/^\s+|\s+$//g;

    my $conf = "worker_processes  $Workers;\ndaemon on;\n"
      . "master_process $MasterProcessEnabled;\n"
      . "error_log $ErrLogFile $level;\npid       $PidFile;\n";
    for my $e (qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN
        MOCKEAGAIN_WRITE_TIMEOUT_PATTERN MOCKNOEAGAIN_VERBOSE MOCKNOEAGAIN
        LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS UBSAN_OPTIONS), @EnvToNginx)
    {
        $conf .= "env $e;\n";
    }
    if (defined $LoadModules) {
        for my $m (split ' ', $LoadModules) {
            $conf .= "load_module $m;\n";
        }
    }
    $conf .= "user root;\n" if $> == 0 && $main_config !~ /^\s*user\s/m;
    $conf .= "$main_config\n";
    $conf .= "http {\n    access_log $AccLogFile;\n";
    for my $t (qw(client_body proxy fastcgi scgi uwsgi)) {
        next if $http_config =~ /\b${t}_temp_path\b/;
        $conf .= "    ${t}_temp_path $ServRoot/${t}_temp;\n";
    }
    $conf .= "    default_type text/plain;\n    keepalive_timeout  68000ms;\n"
      . "$http_config\n"
      . "    server {\n"
      # Loopback only (project rule); the real runner listens on all
      # addresses, which only changes $server_addr.
      . "        listen          127.0.0.1:$ServerPort;\n"
      . "        server_name     '$server_name';\n"
      . "        client_max_body_size 30M;\n"
      . "        # Begin test case config...\n$config\n"
      . "        # End test case config.\n";
    unless ($NoRootLocation) {
        $conf .= "        location / {\n            root $HtmlDir;\n"
          . "            index index.html index.htm;\n        }\n";
    }
    $conf .= "    }\n}\n$post_main_config\n";
    $conf .= "events {\n    accept_mutex off;\n"
      . "    worker_connections  $WorkerConnections;\n";
    $conf .= "    use $EventType;\n" if $EventType;
    $conf .= "}\n";
    return $conf;
}

# ---- nginx lifecycle ----

# Returns (ok, output of the nginx command).
sub start_nginx () {
    my ($name, $must_die) = @_;
    my $out = "$LogDir/nginx-start.out";
    my $cmd = "$NginxBinary -e $ErrLogFile -p $ServRoot/ -c $ConfFile"
      . " >$out 2>&1";
    my $delay = 0.05;
    my $waited = 0;
    while (1) {
        my $rc = system($cmd);
        my $text = '';
        if (open my $fh, '<', $out) { local $/; $text = <$fh> // ''; }
        return (1, $text) if $rc == 0;
        return (0, $text) if $must_die;
        # A previous instance may still hold the port: retry only for that.
        if ($text !~ /Address already in use/ || $waited >= 30) {
            return (0, $text);
        }
        Time::HiRes::sleep($delay);
        $waited += $delay;
        $delay *= 2 if $delay < 1;
    }
}

# Stops the running instance (if any); when $check, runs the stopped block's
# shutdown_error_log / no_shutdown_error_log checks.
sub stop_nginx () {
    my $check = shift;
    my $block = $RunningBlock;
    return unless $block;
    undef $RunningBlock;
    undef $RunningConfig;
    my $pid = read_pid(1);
    if ($pid) {
        my @kids = children_of($pid);
        kill($FastShutdown ? 'TERM' : 'QUIT', $pid);
        my $deadline = Time::HiRes::time() + $Timeout;
        while (alive($pid) && Time::HiRes::time() < $deadline) {
            Time::HiRes::sleep(0.01);
        }
        if (alive($pid)) {
            warn "WARNING: " . $block->name . " - nginx $pid did not exit"
              . " within $Timeout s; sending SIGKILL\n";
            @kids = (@kids, children_of($pid));
            kill 'KILL', $pid;
        }
        # Workers whose master was killed (or that outlive a crash).
        for my $k (@kids) {
            kill 'KILL', $k if alive($k);
        }
    }
    # No pid file: nginx removes it when it exits, e.g. a test stopped it.
    if ($ErrorLogAppend && open my $in, '<', $ErrLogFile) {
        if (open my $outfh, '>>', $ErrorLogAppend) {
            print $outfh "===== " . $block->name . "\n", <$in>;
            close $outfh;
        }
        close $in;
    }
    return unless $check;
    if (defined $block->shutdown_error_log
        || defined $block->no_shutdown_error_log)
    {
        my $lines = read_error_log();
        check_log_patterns($block, $block->name . ' - shutdown', $lines,
            scalar $block->shutdown_error_log,
            scalar $block->no_shutdown_error_log);
    }
}

sub read_error_log () {
    Time::HiRes::sleep($TestNginxSleep * 3);
    open my $fh, '<', $ErrLogFile or return [];
    seek $fh, ($CheckAccumErrLog ? 0 : $ErrLogPos), 0;
    my @lines = <$fh>;
    $ErrLogPos = tell $fh;
    close $fh;
    return \@lines;
}

sub log_patterns () {
    my $v = shift;
    return () unless defined $v;
    my @raw = ref $v && ref $v eq 'ARRAY' ? @$v : ($v);
    my @pats;
    for my $p (@raw) {
        next unless defined $p;
        if (ref $p) {
            push @pats, $p;
        } else {
            push @pats, grep { length } split /\n+/, $p;
        }
    }
    return map { ref $_ ? $_ : expand_port($_) } @pats;
}

sub line_matches () {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub check_log_patterns () {
    my ($block, $name, $lines, $want, $unwanted, $quiet) = @_;
    my @want = log_patterns($want);
    my @unwanted = log_patterns($unwanted);
    my $all = join "\n", map { "$_" } @want, @unwanted;
    for my $line (@$lines) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            Test::More::fail("$name - assertion failure in error.log: $line");
        }
        if (!$quiet && $line =~ /\[(alert|crit|emerg)\]/
            && index($all, $1) < 0)
        {
            warn "WARNING: $name - $line";
        }
    }
    for my $pat (@want) {
        if (grep { line_matches($_, $pat) } @$lines) {
            Test::More::pass("$name - pattern \"$pat\" matches a line in"
              . " error.log");
        } else {
            Test::More::fail("$name - pattern \"$pat\" should match a line"
              . " in error.log");
            my @tail = @$lines > 40 ? @$lines[-40 .. -1] : @$lines;
            Test::More::diag(join '', "last error.log lines:\n", @tail);
        }
    }
    for my $pat (@unwanted) {
        my @hit = grep { line_matches($_, $pat) } @$lines;
        if (@hit) {
            Test::More::fail("$name - pattern \"$pat\" should not match any"
              . " line in error.log but matches line \"$hit[0]\"");
        } else {
            Test::More::pass("$name - pattern \"$pat\" does not match a line"
              . " in error.log");
        }
    }
}

sub check_error_log () {
    my ($block, $name, $rep) = @_;
    my $wait = parse_time($block->wait);
    Time::HiRes::sleep($wait) if $wait;
    my $lines = read_error_log();
    check_log_patterns($block, $name, $lines, scalar $block->error_log,
        scalar $block->no_error_log);
    my $gpat = $block->grep_error_log;
    my $exp = $block->grep_error_log_out;
    if (!defined $gpat || !defined $exp) {
        bail_out("$name - --- grep_error_log and --- grep_error_log_out go"
          . " together") if defined $gpat || defined $exp;
        return;
    }
    $gpat = $gpat->[$rep] if ref $gpat && ref $gpat eq 'ARRAY';
    $gpat =~ s/\n+$// unless ref $gpat;
    # One (the first) match per line, as the real runner does.
    my $got = '';
    for my $line (@$lines) {
        if (ref $gpat ? $line =~ /$gpat/ : $line =~ /\Q$gpat\E/) {
            my $m = $&;
            $got .= "$m\n" if $m !~ /\n/;
        }
    }
    $exp = $exp->[$rep] if ref $exp && ref $exp eq 'ARRAY';
    $exp = expand_env($exp);
    is_str($got, $exp, "$name - grep_error_log_out");
}

# ---- requests ----

sub packetize () {
    my $v = shift;
    my @p = ref $v && ref $v eq 'ARRAY' ? @$v : ($v);
    return [map { ref $_ && ref $_ eq 'HASH' ? {%$_} : {value => $_} } @p];
}

sub parse_more_headers () {
    my $text = shift;
    my @h;
    return \@h unless defined $text;
    for my $line (split /\n/, $text) {
        $line =~ s/\r$//;
        next if $line =~ /^\s*(?:#|$)/;
        push @h, expand_port($line);
    }
    return \@h;
}

# Builds the wire packets of one `--- request` element (a string, or an
# array of packets whose first one holds the request line).
sub build_request () {
    my ($name, $req, $more_headers, $keepalive) = @_;
    my $packets = packetize($req);
    my $first = $packets->[0]{value} // '';
    $first =~ s/\A(?:[ \t]*\n|[ \t]*#[^\n]*\n)+//;
    $first =~ s/\A\s+//;
    my ($line, $body) = split /\n/, $first, 2;
    $body //= '';
    $line =~ s/\r$//;
    my ($method, $uri, $proto) = split ' ', $line;
    bail_out("$name - empty request") unless defined $method;
    $uri //= '/';
    $proto //= 'HTTP/1.1';
    my $headers = parse_more_headers($more_headers);
    my %seen;
    for (@$headers) { $seen{lc $1} = 1 if /^\s*([^:\s]+)\s*:/ }
    my $chunked = grep { /^\s*transfer-encoding\s*:.*chunked/i } @$headers;
    my @rest = @$packets[1 .. $#$packets];
    my $full_body = $body . join '', map { $_->{value} // '' } @rest;
    if (!@rest && !$seen{'content-length'} && !$chunked) {
        $body =~ s/^\s+|\s+$//g;
        $full_body = $body;
    }
    my $head = "$method $uri $proto\r\n";
    $head .= "Host: localhost\r\n" unless $seen{host};
    $head .= "Connection: " . ($keepalive ? 'keep-alive' : 'close') . "\r\n"
      unless $seen{connection};
    $head .= "$_\r\n" for @$headers;
    if (length $full_body && !$seen{'content-length'} && !$chunked) {
        $head .= "Content-Length: " . length($full_body) . "\r\n";
    }
    $head .= "\r\n";
    my @out = ({value => $head . $body,
        delay_before => $packets->[0]{delay_before}});
    push @out, @rest;
    return ($method, \@out);
}

sub connect_server () {
    my $sock;
    for my $i (1 .. 50) {
        $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ServerPortForClient, Proto => 'tcp',
            Timeout => $Timeout);
        return $sock if $sock;
        Time::HiRes::sleep(0.002 * $i);
    }
    return undef;
}

# Sends the packets on one connection; returns (response bytes, timed_out).
sub send_request () {
    my ($name, $packets, $timeout, $shutdown) = @_;
    my $sock = connect_server();
    unless ($sock) {
        Test::More::fail("$name - cannot connect to 127.0.0.1:"
          . "$ServerPortForClient: $!");
        return ('', 0);
    }
    # nginx may close before it has read everything (413, errors).
    local $SIG{PIPE} = 'IGNORE';
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my $timed_out = 0;
  PACKET:
    for my $p (@$packets) {
        Time::HiRes::sleep($p->{delay_before}) if $p->{delay_before};
        my $buf = $p->{value} // '';
        while (length $buf) {
            unless ($sel->can_write($timeout)) {
                $timed_out = 1;
                last PACKET;
            }
            my $n = syswrite($sock, $buf);
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EINTR};
                last PACKET;    # the server closed early: read its answer
            }
            substr($buf, 0, $n, '');
        }
    }
    shutdown($sock, $shutdown) if defined $shutdown && !$timed_out;
    my $resp = '';
    while (!$timed_out) {
        unless ($sel->can_read($timeout)) {
            $timed_out = 1;
            last;
        }
        my $n = sysread($sock, my $chunk, 65536);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            last;
        }
        last if $n == 0;
        $resp .= $chunk;
    }
    close $sock;
    return ($resp, $timed_out);
}

# Parses one response off the front of $raw; returns a hash with code,
# headers (HTTP::Headers), raw_headers, body and the unconsumed rest.
sub parse_response () {
    my ($name, $raw, $method) = @_;
    my %r = (code => undef, raw_headers => '', body => '', rest => '',
        headers => HTTP::Headers->new);
    my $i = index($raw, "\r\n\r\n");
    my $sep = 4;
    if ($i < 0) {
        $i = index($raw, "\n\n");
        $sep = 2;
    }
    if ($i < 0) {
        $r{raw_headers} = $raw;
        return \%r;
    }
    $r{raw_headers} = substr($raw, 0, $i + $sep / 2);
    my $rest = substr($raw, $i + $sep);
    my $res = HTTP::Response->parse(substr($raw, 0, $i));
    $r{code} = $res->code // '';
    $r{headers} = $res->headers;
    my $te = $res->header('Transfer-Encoding') // '';
    my $cl = $res->header('Content-Length');
    if (($method // '') eq 'HEAD' || $r{code} =~ /^(?:1\d\d|204|304)$/) {
        $r{rest} = $rest;
    } elsif ($te =~ /chunked/i) {
        my $body = '';
        while (1) {
            if ($rest !~ s/\A([0-9a-fA-F]+)[^\r\n]*\r?\n//) {
                warn "WARNING: $name - bad or truncated chunked body\n";
                $body .= $rest;
                $rest = '';
                last;
            }
            my $size = hex $1;
            if ($size == 0) {
                while ($rest =~ s/\A([^\r\n]+)\r?\n//) {
                    my ($k, $v) = split /\s*:\s*/, $1, 2;
                    $r{headers}->push_header($k, $v // '');
                }
                $rest =~ s/\A\r?\n//;
                last;
            }
            if (length $rest < $size) {
                warn "WARNING: $name - truncated chunk\n";
                $body .= $rest;
                $rest = '';
                last;
            }
            $body .= substr($rest, 0, $size, '');
            $rest =~ s/\A\r?\n//;
        }
        $r{body} = $body;
        $r{rest} = $rest;
    } elsif (defined $cl && $cl =~ /^\s*(\d+)/) {
        my $len = $1;
        if (length $rest < $len) {
            warn "WARNING: $name - Content-Length $len but only "
              . length($rest) . " body bytes received\n";
        }
        $r{body} = substr($rest, 0, $len);
        $r{rest} = length $rest > $len ? substr($rest, $len) : '';
    } else {
        $r{body} = $rest;
    }
    return \%r;
}

sub check_response () {
    my ($block, $name, $res, $idx, $need_array) = @_;
    my $code = $res->{code} // '';

    my $like = req_value($block, 'error_code_like', $idx, $need_array);
    if (defined $like) {
        $like =~ s/^\s+|\s+$//g unless ref $like;
        Test::More::like($code, ref $like ? $like : qr/$like/sm,
            "$name - status code ok");
    } else {
        my $exp = req_value($block, 'error_code', $idx, $need_array) // 200;
        $exp =~ s/^\s+|\s+$//g;
        Test::More::is($code, $exp, "$name - status code ok");
    }

    for my $sec (qw(raw_response_headers_like raw_response_headers_unlike)) {
        my $pat = req_value($block, $sec, $idx, $need_array);
        next unless defined $pat;
        $pat =~ s/\n+\z// unless ref $pat;
        my $re = ref $pat ? $pat : qr/$pat/s;
        if ($sec =~ /unlike/) {
            Test::More::unlike($res->{raw_headers}, $re, "$name - $sec");
        } else {
            Test::More::like($res->{raw_headers}, $re, "$name - $sec");
        }
    }

    # Like the real runner: response_headers wins over response_headers_like,
    # response_body over response_body_like over response_body_unlike.
    for my $sec (qw(response_headers response_headers_like)) {
        my $v = req_value($block, $sec, $idx, $need_array);
        next unless defined $v;
        last if $sec eq 'response_headers_like'
          && defined $block->response_headers;
        my @pairs;
        if (ref $v && ref $v eq 'HASH') {
            @pairs = map { [$_, $v->{$_}] } sort keys %$v;
        } else {
            for my $line (split /\n/, $v) {
                $line =~ s/^\s+|\s+$//g;
                next unless length $line;
                if ($line =~ /^!\s*(.+)$/) {
                    push @pairs, [$1, undef];
                    next;
                }
                my ($k, $val) = split /\s*:\s*/, $line, 2;
                push @pairs, [$k, expand_port($val // '')];
            }
        }
        for my $pair (@pairs) {
            my ($k, $val) = @$pair;
            my $got = $res->{headers}->header($k);
            if (!defined $val) {
                Test::More::ok(!defined $got, "$name - header $k not present");
            } elsif ($sec eq 'response_headers') {
                Test::More::is($got // '', $val, "$name - header $k ok");
            } else {
                Test::More::like($got // '', ref $val ? $val : qr/^$val$/,
                    "$name - header $k like ok");
            }
        }
    }

    my $body = $res->{body};
    my $exp = req_value($block, 'response_body', $idx, $need_array);
    if (defined $exp) {
        is_str($body, ref $exp ? $exp : expand_env($exp),
            "$name - response_body - response is expected");
        return;
    }
    for my $sec (qw(response_body_like response_body_unlike)) {
        my $pat = req_value($block, $sec, $idx, $need_array);
        next unless defined $pat;
        my $re = ref $pat ? $pat : expand_port($pat);
        $re = qr/$re/s unless ref $re;
        if ($sec =~ /unlike/) {
            Test::More::unlike($body, $re, "$name - $sec");
        } else {
            Test::More::like($body, $re, "$name - $sec - response is expected");
        }
        return;
    }
}

# ---- one-shot mock TCP server ----

sub start_tcp_server () {
    my ($block, $name) = @_;
    my $listen = expand_env($block->tcp_listen);
    $listen =~ s/^\s+|\s+$//g;
    my $srv;
    if ($listen =~ /^\d+$/) {
        $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $listen, Proto => 'tcp', Listen => 5,
            ReuseAddr => 1);
    } else {
        unlink $listen;
        $srv = IO::Socket::UNIX->new(Local => $listen, Type => SOCK_STREAM,
            Listen => 5);
    }
    bail_out("$name - cannot listen on $listen: $!") unless $srv;
    my ($qfh, $qfile) = File::Temp::tempfile('ragq-tcpq-XXXXXX',
        TMPDIR => 1, UNLINK => 1);
    close $qfh;
    my $query = $block->tcp_query;
    my $qlen = $block->tcp_query_len;
    $qlen = length $query if !defined $qlen && defined $query && !ref $query;
    my $delay = parse_time($block->tcp_reply_delay);
    my $reply = $block->tcp_reply;
    my $no_close = defined $block->tcp_no_close;
    my $shut = $block->tcp_shutdown;

    my $pid = fork;
    bail_out("fork: $!") unless defined $pid;
    if ($pid == 0) {
        # Child: never run END blocks (they would stop nginx).
        my $ok = eval {
            local $SIG{ALRM} = sub { POSIX::_exit(0) };
            alarm(int($Timeout * 3 + ($delay // 0) + 5));
            my $c = $srv->accept or POSIX::_exit(1);
            close $srv;
            shutdown($c, $shut) if defined $shut && $shut =~ /^\s*\d/;
            my $sel = IO::Select->new($c);
            my $got = '';
            while (1) {
                last unless $sel->can_read($Timeout);
                my $n = sysread($c, my $buf, 65536);
                last unless $n;
                $got .= $buf;
                last unless defined $qlen && length $got < $qlen;
            }
            if (open my $fh, '>', $qfile) { binmode $fh; print $fh $got;
                close $fh }
            Time::HiRes::sleep($delay) if $delay;
            my @out;
            if (ref $reply && ref $reply eq 'CODE') {
                @out = ({value => $reply->($got)});
            } elsif (defined $reply) {
                @out = @{packetize($reply)};
            }
            local $SIG{PIPE} = 'IGNORE';
            for my $p (@out) {
                Time::HiRes::sleep($p->{delay_before}) if $p->{delay_before};
                my $buf = $p->{value} // '';
                while (length $buf) {
                    my $n = syswrite($c, $buf);
                    last unless defined $n;
                    substr($buf, 0, $n, '');
                }
            }
            if ($no_close) {
                1 while sysread($c, my $buf, 65536);
            }
            close $c;
            1;
        };
        warn "mock tcp server: $@" unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }
    close $srv;
    return {pid => $pid, qfile => $qfile, listen => $listen};
}

sub finish_tcp_server () {
    my ($block, $name, $tcp) = @_;
    my $deadline = Time::HiRes::time() + $Timeout
      + (parse_time($block->tcp_reply_delay) // 0);
    while (Time::HiRes::time() < $deadline) {
        last if waitpid($tcp->{pid}, POSIX::WNOHANG()) != 0;
        Time::HiRes::sleep(0.01);
    }
    if (kill 0, $tcp->{pid}) {
        kill 'KILL', $tcp->{pid};
        waitpid($tcp->{pid}, 0);
    }
    unlink $tcp->{listen} if $tcp->{listen} !~ /^\d+$/;
    my $got = '';
    if (open my $fh, '<', $tcp->{qfile}) {
        local $/;
        binmode $fh;
        $got = <$fh> // '';
        close $fh;
    }
    unlink $tcp->{qfile};
    my $query = $block->tcp_query;
    if (defined $query) {
        is_str($got, $query, "$name - tcp_query ok");
    }
    my $qlen = $block->tcp_query_len;
    if (defined $qlen) {
        $qlen =~ s/^\s+|\s+$//g;
        Test::More::is(length($got), $qlen, "$name - TCP query length ok");
    }
}

# ---- the block runner ----

sub check_sections () {
    my $block = shift;
    my %internal = map { $_ => 1 } qw(name description seq_num is_filtered
        blocks_object original_values);
    for my $sec (@{ $block->_section_order || [] }, keys %$block) {
        next if $internal{$sec} || $sec =~ /^_/ || $KnownSections{$sec};
        bail_out($block->name . ": section '--- $sec' is not supported by"
          . " ragq's Test::Nginx::Socket (tests/lib); refusing to ignore it");
    }
}

sub run_tests () {
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
    $ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
    $ENV{TEST_NGINX_HTML_DIR} //= $HtmlDir;
    my @blocks = blocks();
    @blocks = List::Util::shuffle(@blocks) unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        check_sections($block);
        run_test($block);
    }
    stop_nginx(1) unless $NoClean;
}

sub run_test () {
    my $block = shift;
    my $name = $block->name;
    my $config = $block->config;
    $config = $LastConfig unless defined $config;
    $LastConfig = $config;
    %RandPorts = ();
    my $conf = gen_config($block, $config // '');
    my $must_die = defined $block->must_die;

    my $reuse = !$ForceRestartOnTest && $RunningBlock && !$must_die
      && defined $RunningConfig && $RunningConfig eq $conf
      && !defined $block->user_files;
    if ($reuse) {
        $RunningBlock = $block;
    } else {
        stop_nginx(1);
        setup_server_root();
        write_user_files($block);
        write_file($ConfFile, $conf);
        $ErrLogPos = 0;
        my ($ok, $out) = start_nginx($name, $must_die);
        if ($must_die) {
            if ($ok) {
                $RunningBlock = $block;
                Test::More::fail("$name - nginx must die but it started");
                stop_nginx(0);
                return;
            }
            my $lines = read_error_log();
            push @$lines, split /^/m, $out;
            check_log_patterns($block, $name, $lines,
                scalar $block->error_log, scalar $block->no_error_log, 1);
            return;
        }
        unless ($ok) {
            Test::More::fail("$name - nginx failed to start");
            Test::More::diag("$NginxBinary said:\n$out");
            return;
        }
        $RunningBlock = $block;
        $RunningConfig = $conf;
        Time::HiRes::sleep($TestNginxSleep);
    }

    my $init = $block->init;
    if (defined $init) {
        my $ok = ref $init eq 'CODE' ? eval { $init->(); 1 }
          : eval "package main; $init; 1";
        unless ($ok) {
            Test::More::fail("$name - init failed: $@");
            return;
        }
    }

    for my $rep (0 .. $RepeatEach - 1) {
        my $tcp = defined $block->tcp_listen
          ? start_tcp_server($block, $name) : undef;
        run_requests($block, $RepeatEach > 1 ? "$name (repeat $rep)" : $name,
            $rep);
        finish_tcp_server($block, $name, $tcp) if $tcp;
    }
}

sub run_requests () {
    my ($block, $name, $rep) = @_;
    my $timeout = parse_time($block->timeout) // $Timeout;
    my $abort = defined $block->abort;
    my $ignore = defined $block->ignore_response;
    my $shutdown;
    if (defined(my $v = $block->shutdown)) {
        $shutdown = $v =~ /^\s*(\d)/ ? $1 : 1;
    }

    my @reqs;    # [method, packets, number of responses]
    my $need_array = 0;
    if (defined $block->pipelined_requests) {
        my $list = $block->pipelined_requests;
        bail_out("$name - pipelined_requests must be an array")
          unless ref $list eq 'ARRAY';
        my @all;
        my @methods;
        for my $i (0 .. $#$list) {
            my $mh = req_value($block, 'more_headers', $i, 0);
            my ($m, $p) = build_request($name, expand_env($list->[$i]), $mh,
                $i < $#$list);
            push @all, @$p;
            push @methods, $m;
        }
        @reqs = ([\@methods, \@all]);
        $need_array = 1;
    } elsif (defined $block->raw_request) {
        my $raw = $block->raw_request;
        my $p = packetize($raw);
        my ($m) = ($p->[0]{value} // '') =~ /^\s*(\S+)/;
        @reqs = ([[$m], $p]);
    } else {
        my $r = $block->request;
        bail_out("$name - no --- request, raw_request or pipelined_requests")
          unless defined $r;
        my @list = ref $r && ref $r eq 'ARRAY' ? @$r : ($r);
        $need_array = @list > 1;
        for my $i (0 .. $#list) {
            my $mh = $block->more_headers;
            $mh = $mh->[$i] if ref $mh && ref $mh eq 'ARRAY';
            my $req = $list[$i];
            $req = expand_port($req) unless ref $req;
            my ($m, $p) = build_request($name, $req, $mh, 0);
            push @reqs, [[$m], $p];
        }
    }

    my $resp_idx = 0;
    for my $i (0 .. $#reqs) {
        my ($methods, $packets) = @{$reqs[$i]};
        my $rname = @reqs > 1 ? "$name (req $i)" : $name;
        my ($raw, $timed_out) = send_request($rname, $packets, $timeout,
            $shutdown);
        if ($timed_out && !$abort) {
            Test::More::fail("ERROR: client socket timed out - $rname");
        }
        unless ($ignore) {
            for my $m (@$methods) {
                my $res = parse_response($rname, $raw, $m);
                $raw = $res->{rest};
                my $n = @$methods > 1 ? "$rname (pipelined $resp_idx)"
                  : $rname;
                check_response($block, $n, $res, $resp_idx, $need_array);
                $resp_idx++;
            }
        }
        check_error_log($block, $rname, $rep) if $i < $#reqs;
    }
    check_error_log($block, $name, $rep);
}

END {
    # Safety net after a die/BAIL_OUT: no assertions here, just no leftovers.
    if ($$ == $MainPid && !$NoClean && $RunningBlock) {
        stop_nginx(0);
    }
}

1;
__END__

=head1 NAME

Test::Nginx::Socket - ragq's in-repo runner of Test::Nginx's block format

=head1 WHERE IT DIFFERS FROM openresty/test-nginx

=over

=item * nginx listens on C<127.0.0.1:$TEST_NGINX_SERVER_PORT> (project rule:
loopback only), not on all addresses.

=item * A block whose nginx fails to start (bad config) fails that block
(C<fail> plus nginx's output) instead of retrying for 30 s and bailing out;
only "Address already in use" is retried. A failing C<--- init> also just
fails the block.

=item * C<--- must_die> blocks emit only their C<error_log>/C<no_error_log>
assertions (matched against nginx's stderr and error.log), or one failure
when nginx starts.

=item * A C<--- request> given as packets needs the request line in the first
packet; its body is not trimmed.

=item * C<shutdown_error_log>/C<no_shutdown_error_log> look at the error.log
lines written since the block's last log check (i.e. the shutdown).

=item * Unknown sections bail out (no silent passes). Not implemented:
http09, curl, stap, udp_*, tcp_query_auto_timeout, skip_nginx, valgrind, HUP
reloads, leak checks.

=item * Files share one servroot and port: run them serially (no prove -j).

=back

=cut
