# Test::Nginx::Socket: ragq's in-repo runner for Test::Nginx's block format.
#
# Owns: a re-implementation of the part of openresty/test-nginx (the
# reference; unmodified copy in ../shared/vendor/test-nginx) that ragq's .t
# files use, behaving as the real one does: when nginx is (re)started, what
# error.log each check sees, how requests are built and sent, how responses
# are parsed, which assertions each section emits and in which order. Files
# say only `use Test::Nginx::Socket;`, so they run unchanged under either
# (tests/run picks the real one when it finds it). tests/README lists the
# few places where this one still differs; sections it does not implement
# make it bail out instead of passing silently.
#
# Every named sub is written `sub name () {`: Spiffy's -Base source filter
# would otherwise insert `my $self = shift;`; with the empty prototype it only
# strips the prototype, which gives plain functions (as the real module does).
package Test::Nginx::Socket;

use Test::Base -Base;

use Carp ();
use Cwd ();
use File::Path qw(make_path remove_tree);
use File::Temp ();
use HTTP::Response ();
use IO::Select ();
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use List::Util ();
use POSIX ();
use Scalar::Util ();
use Socket qw(SOCK_STREAM);
use Test::LongString ();
use Time::HiRes ();

our $VERSION = '0.02-ragq';

# The real module's exports, less those of features we do not have
# (use_hup, no_nginx_manager bail out when called).
our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location use_hup
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout no_nginx_manager check_accum_error_log
    add_block_preprocessor bail_out add_test_cleanup_handler
    add_cleanup_handler add_response_body_check
);

# ---- settings (the real Test::Nginx::Util's env vars and defaults) ----

our $NginxBinary = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
  || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $ServerAddr = '127.0.0.1';
our $ServerName = 'localhost';
our $LogLevel = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $Timeout = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $NoShuffle = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $ForceRestartOnTest = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
  ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $FastShutdown = $ENV{TEST_NGINX_FAST_SHUTDOWN};
our $EventType = $ENV{TEST_NGINX_EVENT_TYPE};
our $LoadModules = $ENV{TEST_NGINX_LOAD_MODULES};
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $PostponeOutput = $ENV{TEST_NGINX_POSTPONE_OUTPUT};
our $WorkerUser = $ENV{TEST_NGINX_WORKER_USER};

our $ServRoot;
if ($ENV{TEST_NGINX_RANDOMIZE}) {
    $ServerPort = $ServerPortForClient = pick_free_port();
    $ServRoot = Cwd::abs_path('.') . "/t/servroot_$ServerPort";
} else {
    $ServRoot = $ENV{TEST_NGINX_SERVROOT} || Cwd::abs_path('.')
      . '/t/servroot';
}
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir = "$ServRoot/html";
our $ConfDir = "$ServRoot/conf";
our $ConfFile = "$ConfDir/nginx.conf";
our $PidFile = "$LogDir/nginx.pid";
our $CacheDir = "$ServRoot/cache";

my $RepeatEach = 1;
my $Workers = 1;
my $WorkerConnections = 64;
my $NoLongString;
my $NoRootLocation = 0;
my $ConfigPreamble = '';
my @EnvToNginx;
my @BlockPreprocessors;
my @CleanupHandlers;
my @TestCleanupHandlers;
my @ResponseBodyChecks;

my $MainPid = $$;
my $PrevConfig;        # the expanded --- config nginx was last started with
my $PrevBlock;         # the block run before this one
my $ErrLogPos = 0;     # where the next error.log read starts
my $ConnectFailures = 0;
my $TcpServerPid;
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
    tcp_no_close tcp_shutdown tcp_shutdown_delay
    ONLY SKIP LAST
);

# ---- exported API ----

sub repeat_each () {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub no_shuffle () { $NoShuffle = 1 }

sub log_level () {
    return $LogLevel unless @_;
    $LogLevel = shift;
}

sub workers () {
    return $Workers unless @_;
    $Workers = shift;
}

sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }

sub master_process_enabled () {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = $_[0] ? 'on' : 'off';
}

sub worker_connections () {
    return $WorkerConnections unless @_;
    $WorkerConnections = shift;
}

sub no_long_string () { $NoLongString = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub config_preamble () { $ConfigPreamble = shift }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }

sub env_to_nginx () {
    Carp::croak("env_to_nginx: no arguments specified") unless @_;
    for my $v (@_) {
        Carp::croak("env_to_nginx: bad argument value: $v\n")
          if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# Like the real one: the last one added runs first.
sub add_block_preprocessor () { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler () { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler () { unshift @TestCleanupHandlers, shift }
sub add_response_body_check () { push @ResponseBodyChecks, shift }

sub server_port () {
    return $ServerPort unless @_;
    $ServerPort = shift;
}

sub server_port_for_client () {
    return $ServerPortForClient unless @_;
    $ServerPortForClient = shift;
}

sub server_addr () {
    return $ServerAddr unless @_;
    $ServerAddr = shift;
}

sub server_name () {
    return $ServerName unless @_;
    $ServerName = shift;
}

sub html_dir () { return $HtmlDir }
sub server_root () { return $ServRoot }

sub timeout () {
    return $Timeout unless @_;
    $Timeout = shift;
}

sub use_hup () {
    bail_out("use_hup (HUP reloads between blocks) is not implemented by"
      . " ragq's Test::Nginx::Socket");
}

sub no_nginx_manager () {
    bail_out("no_nginx_manager is not implemented by ragq's"
      . " Test::Nginx::Socket");
}

sub bail_out () {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

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

# A failure after which Test::Builder must not complain about the plan
# (the real runner's counts vary in these cases too).
sub no_ending () { Test::More->builder->no_ending(1) }

# "100ms" -> 0.1, "2s" -> 2, "0.5" -> 0.5 (undef stays undef).
sub parse_time () {
    my $t = shift;
    return $t unless defined $t;
    if ($t =~ s/([^_a-zA-Z])ms$/$1/) {
        return $t / 1000;
    }
    $t =~ s/([^_a-zA-Z])s$/$1/;
    return $t;
}

sub pick_free_port () {
    my $used = shift // {};
    for (1 .. 1000) {
        my $port = 1988 + int(rand(63547));
        next if $used->{$port} || $port == $ServerPort;
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $port, Proto => 'tcp', Listen => 5, ReuseAddr => 1)
          or next;
        close $s;
        return $port;
    }
    return undef;
}

# $TEST_NGINX_* from the environment; $TEST_NGINX_RAND_PORT_<n>: a free
# port, the same one for every use within a block.
sub expand_env () {
    my ($text, $name) = @_;
    return $text unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $v;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            unless (defined $RandPorts{$var}) {
                my %used = map { $_ => 1 } values %RandPorts;
                my $p = pick_free_port(\%used)
                  // bail_out("$name - Cannot find an available listening"
                    . " port number for $var.\n");
                $RandPorts{$var} = $p;
            }
            $v = $RandPorts{$var};
        } else {
            bail_out("$name - No environment $var defined.\n")
              unless defined $ENV{$var};
            $v = $ENV{$var};
        }
        $v;
    }eg;
    return $text;
}

sub expand_port () {
    my $s = shift;
    return $s if !defined $s || ref $s;
    $s =~ s/\$ServerPort\b/$ServerPort/g;
    $s =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
    return $s;
}

sub trim () {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /g;
    return $s;
}

# One line per value, quotes and newlines escaped (failure messages).
sub fmt_str () {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# The value of a per-request section: with several requests it must be an
# array indexed by request.
sub indexed_value () {
    my ($name, $value, $idx, $need_array) = @_;
    if (ref $value && ref $value eq 'ARRAY') {
        bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and don't need array.")
          if !$need_array && $idx != 0;
        return $value->[$idx];
    }
    bail_out("$name - You asked for many requests, the expected results"
      . " should be arrays as well.") if $need_array;
    return $value;
}

sub alive () {
    my $pid = shift;
    return 0 unless $pid && kill(0, $pid);
    # Daemons are reparented to a pid 1 that may not reap: a zombie is as
    # good as gone.
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

sub pid_from_file () {
    open my $fh, '<', $PidFile or return undef;
    my $pid = <$fh>;
    close $fh;
    return defined $pid && $pid =~ /^(\d+)/ ? $1 : undef;
}

# Stops a process (nginx, the mock TCP server): QUIT (TERM with
# TEST_NGINX_FAST_SHUTDOWN), up to timeout() for it to exit, then KILL; with
# the children it had (nginx workers) when it needed the KILL.
sub kill_process () {
    my ($pid, $name) = @_;
    return unless $pid;
    my @kids = children_of($pid);
    kill($FastShutdown ? 'TERM' : 'QUIT', $pid);
    my $deadline = Time::HiRes::time() + $Timeout;
    while (alive($pid) && Time::HiRes::time() < $deadline) {
        waitpid($pid, POSIX::WNOHANG());
        Time::HiRes::sleep(0.01);
    }
    waitpid($pid, POSIX::WNOHANG());
    if (alive($pid)) {
        warn "$name - timeout when waiting for the process $pid to exit\n";
        push @kids, children_of($pid);
        kill 'KILL', $pid;
        waitpid($pid, POSIX::WNOHANG());
        for my $k (@kids) {
            kill 'KILL', $k if alive($k);
        }
    }
}

sub stop_nginx () {
    my $name = shift;
    my $pid = pid_from_file();
    return unless defined $pid;
    if (alive($pid)) {
        kill_process($pid, $name);
    } else {
        unlink $PidFile;
    }
}

sub cleanup () {
    $_->() for @CleanupHandlers;
    if (defined $TcpServerPid) {
        kill_process($TcpServerPid, 'cleanup');
        undef $TcpServerPid;
    }
}

# ---- server root, nginx.conf ----

sub setup_server_root () {
    if (-d $ServRoot) {
        remove_tree($ConfDir, glob("$ServRoot/*_cache"),
            glob("$ServRoot/*_temp"), $CacheDir, $HtmlDir, $LogDir);
        # Like the real runner: nothing else may live in the servroot.
        rmdir $ServRoot
          or bail_out("Can't remove $ServRoot (not empty?): $!");
    }
    make_path($ServRoot, $LogDir, $HtmlDir, $ConfDir);
    write_file("$HtmlDir/index.html", '<html><head><title>It works!</title>'
      . '</head><body>It works!</body></html>');
}

sub write_file () {
    my ($path, $content) = @_;
    open my $fh, '>', $path or bail_out("Can't open $path for writing: $!\n");
    binmode $fh;
    print $fh $content;
    close $fh or bail_out("Can't write $path: $!\n");
}

# --- user_files: ">>> name [touch -t date]" lines, each followed by the
# file's text ($TEST_NGINX_* expanded); or an array of [name, text, date].
sub write_user_files () {
    my ($block, $name) = @_;
    my $files = $block->user_files;
    return unless $files;
    if (!ref $files) {
        my @list;
        for my $line (split /^/m, $files) {
            if ($line =~ />>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, undef, $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
            ", only scalar or ARRAY are accepted");
    }
    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/}) {
            make_path($1) unless -d $1;
        }
        write_file($path, expand_env($body // '', $name));
        if ($date) {
            system('touch', '-t', $date, $path) == 0
              or bail_out("$name - touch -t '$date' $path failed\n");
        }
    }
}

sub write_config () {
    my ($block, $config, $name) = @_;
    my $http_config = expand_env(scalar $block->http_config, $name) // '';
    my $main_config = $block->main_config // '';
    if (defined $LoadModules) {
        my @m = map { "load_module $_;" } grep { length } split /\s+/,
          $LoadModules;
        $main_config = join ' ', @m, $main_config if @m;
    }
    $main_config = expand_env($main_config, $name);
    my $post_main_config = expand_env(scalar $block->post_main_config, $name)
      // '';
    my $level = $block->log_level ? $block->log_level : $LogLevel;
    my $server_name = $block->server_name // $ServerName;
    (my $quoted = $server_name) =~ s/\\/\\\\/g;
    $quoted =~ s/'/\\'/g;

    my $conf = "worker_processes  $Workers;\ndaemon on;\n"
      . "master_process $MasterProcessEnabled;\n"
      . "error_log $ErrLogFile $level;\npid       $PidFile;\n";
    $conf .= "env $_;\n" for qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN
        MOCKEAGAIN_WRITE_TIMEOUT_PATTERN LD_PRELOAD LD_LIBRARY_PATH
        DYLD_INSERT_LIBRARIES DYLD_FORCE_FLAT_NAMESPACE);
    $conf .= "env " . ($_ =~ /\s/ ? "'$_'" : $_) . ";\n" for @EnvToNginx;
    my @temp;
    push @temp, "client_body_temp_path $ServRoot/client_body_temp;"
      unless $http_config =~ /\bclient_body_temp_path\b/;
    push @temp, "proxy_temp_path $ServRoot/proxy_temp;"
      unless $http_config =~ /\bproxy_temp_path\b/;
    push @temp, map { "${_}_temp_path $ServRoot/${_}_temp;" }
      qw(fastcgi scgi uwsgi);
    my $postpone = '';
    if (defined $PostponeOutput && $http_config !~ /\bpostpone_output\b/) {
        bail_out("Bad TEST_NGINX_POSTPONE_OUTPUT value: $PostponeOutput\n")
          if $PostponeOutput !~ /^\d+$/;
        $postpone = "    postpone_output $PostponeOutput;\n";
    }
    $conf .= "\n$main_config\n\nhttp {\n    access_log $AccLogFile; @temp\n"
      . "    default_type text/plain;\n    keepalive_timeout  68000ms;\n"
      . "$postpone\n$http_config\n"
      . "    server {\n"
      # Loopback only (project rule); the real runner listens on all
      # addresses (`listen <port>;`), which only changes $server_addr.
      . "        listen          127.0.0.1:$ServerPort;\n"
      . "        server_name     '$quoted';\n"
      . "        client_max_body_size 30M;\n\n"
      . "        # Begin preamble config...\n$ConfigPreamble\n"
      . "        # End preamble config...\n\n"
      . "        # Begin test case config...\n$config\n"
      . "        # End test case config.\n\n";
    unless ($NoRootLocation) {
        $conf .= "        location / {\n            root $HtmlDir;\n"
          . "            index index.html index.htm;\n        }\n";
    }
    $conf .= "    }\n}\n\n$post_main_config\n\nevents {\n"
      . "    accept_mutex off;\n\n"
      . "    worker_connections  $WorkerConnections;\n";
    $conf .= "    use $EventType;\n" if $EventType;
    $conf .= "}\nenv ASAN_OPTIONS;\nenv MOCKNOEAGAIN_VERBOSE;\n"
      . "env MOCKNOEAGAIN;\n";
    if (defined $WorkerUser) {
        $conf .= "user $WorkerUser;\n";
    } elsif ($> == 0) {
        $conf .= "user root;\n";
    }
    write_file($ConfFile, $conf);
}

# ---- nginx start ----

# Runs the nginx command line once: (wait status, what nginx printed on
# stderr). The real runner lets nginx's stderr through to ours: so do we.
sub run_nginx () {
    my $errfile = "$ServRoot/nginx-start.err";
    system("$NginxBinary -e $ErrLogFile -p $ServRoot/ -c $ConfFile"
      . " >/dev/null 2>$errfile");
    my $status = $?;
    my $err = '';
    if (open my $fh, '<', $errfile) {
        local $/;
        $err = <$fh> // '';
        close $fh;
    }
    unlink $errfile;
    print STDERR $err;
    return ($status, $err);
}

# Starts nginx for a block; a failure bails out, as in the real runner.
sub start_nginx () {
    my $name = shift;
    my $waited = 0;
    my $i = 0;
    while (1) {
        my ($status, $err) = run_nginx();
        return if $status == 0;
        # The real runner retries any failure for 30 s; only a port still
        # held by an instance on its way out can get better by waiting.
        if ($err =~ /Address already in use/ && $waited < 30) {
            $i++;
            my $delay = List::Util::min(0.1 * $i, 1);
            Time::HiRes::sleep($delay);
            $waited += $delay;
            next;
        }
        bail_out("$name - Cannot start nginx using command \"$NginxBinary"
          . " -e $ErrLogFile -p $ServRoot/ -c $ConfFile\" (status code"
          . " $status): $err");
    }
}

# A --- must_die block: nginx must fail to start, RepeatEach times; each
# time one assertion on the exit (status, or the given exit code), then the
# block's error.log checks.
sub run_must_die () {
    my ($block, $name) = @_;
    my $must_die = $block->must_die;
    for my $i (0 .. $RepeatEach - 1) {
        my ($status) = run_nginx();
        my $code = $status >> 8;
        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command"
              . " line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (Scalar::Util::looks_like_number($must_die)) {
            Test::More::is($must_die, $code,
                "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }
        check_error_log($block, $name, undef, $i, 0);
        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; killing"
              . " it (req $i)\n";
            for (1 .. 15) {
                last if -f $PidFile;
                Time::HiRes::sleep($TestNginxSleep);
            }
            stop_nginx($name);
        }
    }
}

# ---- error.log ----

# The lines nginx appended since the last read (all of them with
# check_accum_error_log). The short sleep lets log-phase lines land.
sub error_log_data () {
    Time::HiRes::sleep($TestNginxSleep * 3);
    open my $fh, '<', $ErrLogFile or return [];
    seek $fh, $ErrLogPos, 0 if !$CheckAccumErrLog && $ErrLogPos > 0;
    my @lines = <$fh>;
    $ErrLogPos = tell $fh unless $CheckAccumErrLog;
    close $fh;
    return \@lines;
}

sub patterns () {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub pattern_matches () {
    my ($line, $pat) = @_;
    return ref $pat && $line =~ /$pat/ || $line =~ /\Q$pat\E/;
}

sub value_contains () {
    my ($val, $text) = @_;
    return $val =~ /\Q$text\E/ if !ref $val || ref $val eq 'Regexp';
    return scalar grep { defined && value_contains($_, $text) } @$val
      if ref $val eq 'ARRAY';
    return 0;
}

sub check_error_log () {
    my ($block, $name, $res, $rep, $need_array) = @_;
    my %warn_on = map { $_ => 1 } qw(alert crit emerg);
    my $lines = error_log_data();

    my $grep_pat = $block->grep_error_log;
    if (defined $grep_pat) {
        $grep_pat = $grep_pat->[$rep] if ref $grep_pat eq 'ARRAY';
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but ---"
          . " grep_error_log is defined") unless defined $expected;
        $expected = expand_env($expected, $name) unless ref $expected;
        $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
        my $got = '';
        for my $line (@$lines) {
            if (ref $grep_pat && $line =~ /$grep_pat/
                || $line =~ /\Q$grep_pat\E/)
            {
                my $m = $&;
                $got .= "$m\n" if $m !~ /\n/;
            }
        }
        my $desc = "$name - grep_error_log_out (req $rep)";
        if (ref $expected eq 'Regexp') {
            Test::More::like($got, $expected, $desc);
        } elsif ($NoLongString) {
            Test::More::is($got, $expected, $desc);
        } else {
            Test::LongString::is_string($got, $expected, $desc);
        }
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but ---"
          . " grep_error_log_out is defined");
    }

    for my $sec (qw(error_log no_error_log)) {
        my $v = $block->$sec;
        next unless defined $v;
        for my $level (keys %warn_on) {
            delete $warn_on{$level} if value_contains($v, "[$level");
        }
    }

    if (defined $block->error_log) {
        my $pats = patterns($block->error_log);
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                if (pattern_matches($line, $pat)) {
                    Test::More::pass("$name - pattern \"$pat\" matches a line"
                      . " in error.log (req $rep)");
                    undef $pat;
                }
            }
        }
        for my $pat (grep { defined } @$pats) {
            Test::More::fail("$name - pattern \"$pat\" should match a line"
              . " in error.log (req $rep)");
        }
    }

    if (defined $block->no_error_log) {
        my $pats = patterns($block->no_error_log);
        my %found;
        for my $i (0 .. $#$lines) {
            my $line = $lines->[$i];
            for my $pat (grep { defined } @$pats) {
                next unless pattern_matches($line, $pat);
                no_ending() if $found{$pat}++;
                my $end = List::Util::min($i + 10, @$lines - 1);
                Test::More::fail("$name - pattern \"" . fmt_str($pat)
                  . "\" should not match any line in error.log but matches"
                  . " line \"" . fmt_str($line) . "\" (req $rep)\n"
                  . join '', @$lines[$i + 1 .. $end - 1]);
            }
        }
        for my $pat (grep { defined && !$found{$_} } @$pats) {
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
              . "\" does not match a line in error.log (req $rep)");
        }
    }

    for my $line (@$lines) {
        if ($line =~ /\[(alert|crit|emerg)\]/ && $warn_on{$1}) {
            warn "WARNING: $name - " . fmt_str($line) . "\n";
        }
    }
    for my $line (@$lines) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            no_ending();
            chomp(my $l = $line);
            Test::More::fail("$name - $l\n");
        }
    }
}

# The block before this one, when nginx stops (restart, or the end of the
# file): its --- shutdown_error_log / --- no_shutdown_error_log against the
# error.log lines written since its last check.
sub check_prev_block_shutdown_error_log () {
    my $block = $PrevBlock;
    return unless $block;
    return unless defined $block->shutdown_error_log
      || defined $block->no_shutdown_error_log;
    return if $ENV{TEST_NGINX_NO_CLEAN};
    my $name = $block->name;
    my $lines = error_log_data();
    if (defined $block->shutdown_error_log) {
        my $pats = patterns($block->shutdown_error_log);
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                if (pattern_matches($line, $pat)) {
                    Test::More::pass("$name - pattern \"$pat\" matches a line"
                      . " in error.log");
                    undef $pat;
                }
            }
        }
        for my $pat (grep { defined } @$pats) {
            Test::More::fail("$name - pattern \"$pat\" should match a line"
              . " in error.log");
        }
        for my $line (@$lines) {
            if ($line =~ /\bAssertion .*? failed\.$/) {
                no_ending();
                chomp(my $l = $line);
                Test::More::fail("$name - $l");
            }
        }
    }
    if (defined $block->no_shutdown_error_log) {
        my $pats = patterns($block->no_shutdown_error_log);
        my %found;
        for my $line (@$lines) {
            for my $pat (grep { defined } @$pats) {
                next unless pattern_matches($line, $pat);
                no_ending() if $found{$pat}++;
                Test::More::fail("$name - pattern \"" . fmt_str($pat)
                  . "\" should not match any line in error.log but matches"
                  . " line \"" . fmt_str($line) . "\"");
            }
        }
        for my $pat (grep { defined && !$found{$_} } @$pats) {
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
              . "\" does not match a line in error.log");
        }
    }
}

# ---- requests ----

sub parse_more_headers () {
    my $text = shift;
    my ($out, $chunked) = ('', 0);
    for my $h (split /\n+/, $text) {
        next if $h =~ /^\s*#/;
        my ($k, $v) = split /:\s*/, $h, 2;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# The wire form of one request given as packets (strings): the request line
# normalized ("METHOD URI VERSION\r\n", URI "/" and HTTP/1.1 by default),
# then Host / Connection / more_headers / Content-Length, then the body
# (trimmed when we compute its length). Packet boundaries stay where they
# were in the text given: a boundary inside a part that was rewritten lands
# at the same offset into its replacement.
sub build_request () {
    my ($name, $more_headers, $chunked, $conn, $packets) = @_;
    my $text = join '', map { $_ // '' } @$packets;
    my ($line, $rest) = $text =~ /\A([^\n]*\n?)(.*)\z/s;
    bail_out("$name - Request line should be non-empty") if $line eq '';
    $line =~ /^(\s*)(\S+)( *)(?:(\S+)( *))?(?:(\S+)( *))?(\s*)$/
      or bail_out("$name - Request line is not valid. Should be 'meth [url"
        . " [version]]' but got \"$line\".");
    my ($ws0, $meth, $ws1, $url, $ws2, $ver, $ws3, $eol)
      = ($1, $2, $3, $4, $5 // '', $6, $7 // '', $8);
    my $content = $rest;
    my $len_header = '';
    if (!$chunked && $content ne ''
        && $more_headers !~ /(?:^|\n)Content-Length:/)
    {
        $content =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($content) . "\r\n";
    }
    my $headers = '';
    $headers .= "Host: $ServerName\r\n"
      if $more_headers !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn\r\n"
      if $more_headers !~ /(?:^|\n)Connection/msi;
    $more_headers =~ s/(?<!\r)\n/\r\n/gs;
    $headers .= "$more_headers$len_header\r\n";

    # [original length, replacement] for each part of the text, in order.
    my @parts = ([length $ws0, ''], [length $meth, "$meth "],
        [length $ws1, ''], [length($url // ''), ($url // '/') . ' '],
        [length $ws2, ''], [length($ver // ''), ($ver // 'HTTP/1.1') . "\r\n"],
        [length($ws3) + length($eol), ''], [0, $headers],
        [length $rest, $content]);
    my $new = join '', map { $_->[1] } @parts;
    my @out;
    my ($from, $pos) = (0, 0);
    for my $i (0 .. $#$packets) {
        $pos += length($packets->[$i] // '');
        my $to = $i == $#$packets ? length $new : map_offset(\@parts, $pos);
        push @out, substr($new, $from, $to - $from);
        $from = $to;
    }
    return \@out;
}

sub map_offset () {
    my ($parts, $pos) = @_;
    my ($orig, $new) = (0, 0);
    for my $p (@$parts) {
        my ($len, $repl) = @$p;
        if ($len > 0 && $pos < $orig + $len) {
            return $new + List::Util::min($pos - $orig, length $repl);
        }
        $orig += $len;
        $new += length $repl;
    }
    return $new;
}

# The block's requests: a list (one per connection) of packet lists
# ({value => bytes, delay_before => seconds}).
sub requests_of_block () {
    my ($block, $name) = @_;
    if (defined(my $raw = $block->raw_request)) {
        return [[map { {value => $_} } @$raw]] if ref $raw eq 'ARRAY';
        return [[{value => $raw}]];
    }
    my $more = $block->more_headers || '';
    my $headers_for = sub {
        my $i = shift;
        return parse_more_headers($more) unless ref $more eq 'ARRAY';
        bail_out("--- more_headers lacks data for the ${i}th request")
          unless defined $more->[$i];
        return parse_more_headers($more->[$i]);
    };
    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
          unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my ($h, $c) = $headers_for->($i);
            $all .= build_request($name, $h, $c,
                $i == $#$reqs ? 'close' : 'keep-alive',
                [expand_env($reqs->[$i], $name)])->[0];
        }
        return [[{value => $all}]];
    }
    my $request = $block->request;
    if (!ref $request) {
        if (defined $request) {
            1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
        }
        my ($h, $c) = $headers_for->(0);
        return [[{value => build_request($name, $h, $c, 'close',
            [$request])->[0]}]];
    }
    bail_out("$name - invalid ---request : MUST be string or array of"
      . " requests") unless ref $request eq 'ARRAY';
    my @list;
    for my $i (0 .. $#$request) {
        my ($h, $c) = $headers_for->($i);
        my $one = $request->[$i];
        if (!ref $one) {
            push @list, [{value => build_request($name, $h, $c, 'close',
                [$one])->[0]}];
            next;
        }
        bail_out("$name - Invalid syntax. $one should be a string or an"
          . " array of packets.") unless ref $one eq 'ARRAY';
        my @values = map {
            !ref $_ ? $_ : ref $_ eq 'HASH' ? $_->{value}
              : bail_out("$name - Invalid syntax. $_ should be a string or"
                . " hash with value.")
        } @$one;
        my $wire = build_request($name, $h, $c, 'close', \@values);
        push @list, [map {
            my $p = $one->[$_];
            ref $p ? {%$p, value => $wire->[$_]} : {value => $wire->[$_]}
        } 0 .. $#$wire];
    }
    return \@list;
}

sub connect_server () {
    my ($name, $timeout) = @_;
    for my $try (1 .. ($ConnectFailures ? 20 : 50)) {
        my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
            PeerPort => $ServerPortForClient, Proto => 'tcp',
            Timeout => $timeout);
        return $sock if $sock;
        my $wait = List::Util::min(
            ($TestNginxSleep + $TestNginxSleep * $try) * $try / 2, 1);
        warn "$name - Can't connect to $ServerAddr:$ServerPortForClient:"
          . " $!\n\tRetry connecting after $wait sec\n" if $wait >= 0.6;
        Time::HiRes::sleep($wait);
    }
    my $msg = "$name - Can't connect to $ServerAddr:$ServerPortForClient:"
      . " $! (aborted)\n";
    bail_out($msg) if ++$ConnectFailures >= 3;
    no_ending();
    Test::More::fail($msg);
    return undef;
}

# Sends one request's packets on a new connection while reading what comes
# back, until the server closes or nothing moves for $timeout seconds.
# The first packet goes at once; each later one after its delay_before.
sub send_request () {
    my ($block, $name, $packets, $timeout) = @_;
    my $sock = connect_server($name, $timeout) or return '';
    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';
    my @todo = @$packets;
    my $buf = (shift @todo)->{value} // '';
    my ($reading, $writing, $resp) = (1, 1, '');
    while ($reading || $writing) {
        my $rs = IO::Select->new($reading ? $sock : ());
        my $ws = IO::Select->new($writing ? $sock : ());
        my ($r, $w) = IO::Select->select($rs, $ws, undef, $timeout);
        if (!$r && !$w) {
            close $sock;
            if (defined $block->abort) {
                Time::HiRes::sleep(0.005);
            } else {
                no_ending();
                Test::More::fail("ERROR: client socket timed out - $name\n");
            }
            return $resp;
        }
        if ($r && @$r) {
            while (1) {
                my $n = sysread($sock, my $chunk, 1024);
                if (!defined $n) {
                    last if $!{EAGAIN} || $!{EINTR};
                    warn "WARNING: $name - HTTP response read failure: $!";
                }
                if (!$n) {
                    ($reading, $writing) = (0, 0);
                    last;
                }
                $resp .= $chunk;
            }
        }
        next unless $writing && $w && @$w;
        while (1) {
            if (length $buf) {
                my $n = syswrite($sock, $buf);
                if (!defined $n) {
                    last if $!{EAGAIN} || $!{EINTR};
                    warn "write failed: $!\n";
                    $resp = "write failed: $!" unless length $resp;
                    ($reading, $writing) = (0, 0);
                    last;
                }
                substr($buf, 0, $n, '');
                next;
            }
            my $next = shift @todo;
            if (!$next) {
                my $sd = $block->shutdown;
                if (defined $sd) {
                    $sd = 1 if $sd =~ /^$/s;
                    shutdown($sock, $sd);
                }
                $writing = 0;
                last;
            }
            $buf = $next->{value} // '';
            Time::HiRes::sleep($next->{delay_before})
              if $next->{delay_before};
        }
    }
    close $sock;
    return $resp;
}

# One response off the front of $raw: (HTTP::Response, raw header text up
# to the last header's CRLF, what follows the response).
sub parse_response () {
    my ($name, $raw, $head_req) = @_;
    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';
    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;
    if ($code && $code !~ /^\d+$/) {
        undef $code;
        $res->code(undef);
    }
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);
    my $te = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my @trailers = $res->header('Trailer');
    my $left;
    if (defined $te && $te eq 'chunked') {
        my $body = $res->content // '';
        my $decoded = '';
        pos($body) = 0;
        while (1) {
            if (!@trailers && $body =~ /\G0[ \t]*\r\n\r\n/gc) {
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }
            if (@trailers && $body =~ /\G0[ \t]*\r\n/gc) {
                for my $t (@trailers) {
                    if ($body !~ /\G(\Q$t\E: [^\n]*\r\n)/gcs) {
                        no_ending();
                        Test::More::fail("$name - invalid trailer data"
                          . " received (expected $t).");
                        return;
                    }
                }
                if ($body !~ /\G\r\n/gc) {
                    no_ending();
                    Test::More::fail("$name - invalid chunked data received"
                      . " (expected CRLF).");
                    return;
                }
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }
            if ($body =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                if (length($body) - pos($body) < $size) {
                    no_ending();
                    Test::More::fail("$name - invalid chunked data received"
                      . " (not enought octets for the data section)");
                    return;
                }
                $decoded .= substr($body, pos($body), $size);
                pos($body) += $size;
                if ($body !~ /\G\r\n/gc) {
                    no_ending();
                    Test::More::fail("$name - invalid chunked data received"
                      . " (expected CRLF).");
                    return;
                }
            } elsif ($body =~ /\G(.+)/gcs) {
                no_ending();
                Test::More::fail("$name - invalid chunked body received: $1");
                return;
            } else {
                no_ending();
                Test::More::fail("$name - no last chunk found - $body");
                return;
            }
        }
        $res->content($decoded);
    } elsif (defined $len && $len ne '' && $len >= 0) {
        my $body = $res->content;
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected,"
              . " but got " . length($body) . "\n" unless $head_req;
        } elsif (length $body > $len) {
            $left = substr($body, $len);
            $res->content(substr($body, 0, $len));
        }
    }
    return ($res, $raw_headers, $left);
}

# ---- response checks (in the real runner's order and counts) ----

sub check_error_code () {
    my ($block, $name, $res, $idx, $need_array) = @_;
    my $code = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $v = indexed_value($name, $block->error_code_like, $idx,
            $need_array);
        Test::More::like($code, qr/$v/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($code, indexed_value($name, $block->error_code, $idx,
            $need_array), "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }
}

sub check_raw_response_headers () {
    my ($block, $name, $raw_headers, $idx, $need_array) = @_;
    if (defined $block->raw_response_headers_like) {
        my $v = indexed_value($name, $block->raw_response_headers_like, $idx,
            $need_array);
        Test::More::like($raw_headers, qr/$v/s,
            "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $v = indexed_value($name, $block->raw_response_headers_unlike,
            $idx, $need_array);
        Test::More::unlike($raw_headers, qr/$v/s,
            "$name - raw resp headers unlike");
    }
}

# "Name: value" lines, "!Name" for "absent".
sub parse_headers () {
    my $text = shift;
    my %h;
    for my $line (split /^/m, $text // '') {
        $line =~ s/^\s+|\s+$//g;
        if ($line =~ s/^!\s*//) {
            $h{$line} = undef;
        } else {
            my ($k, $v) = split /\s*:\s*/, $line, 2;
            $h{$k // ''} = $v;
        }
    }
    return \%h;
}

sub check_response_headers () {
    my ($block, $name, $res, $raw_headers, $idx, $need_array) = @_;
    if (defined $block->response_headers) {
        my $h = parse_headers(indexed_value($name, $block->response_headers,
            $idx, $need_array));
        for my $k (sort keys %$h) {
            my $v = $h->{$k};
            if (!defined $v) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$k\E\s*:/ms,
                    "$name - header $k not present in the raw headers");
                next;
            }
            $v = expand_port($v);
            my $got = $res ? $res->header($k) : undef;
            Test::More::is($got // '', $v, "$name - header $k ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $h = parse_headers(indexed_value($name,
            $block->response_headers_like, $idx, $need_array));
        for my $k (sort keys %$h) {
            my $v = $h->{$k};
            my $got = $res->header($k) // '';
            Test::More::like($got, qr/^$v$/, "$name - header $k like ok");
        }
    }
}

sub check_response_body () {
    my ($block, $name, $res, $idx, $rep, $need_array) = @_;
    my $content = $res ? $res->content : undef;
    if (defined $content) {
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gms;
        $content =~ s/^Connection: TE, close\r\n//gms;
    }
    if (defined $block->response_body) {
        my $exp = indexed_value($name, $block->response_body, $idx,
            $need_array);
        $exp = expand_env(expand_port($exp), $name)
          if defined $exp && !ref $exp;
        my $desc = "$name - response_body - response is expected (repeated"
          . " req $rep, req $idx)";
        if (ref $exp) {
            Test::More::like($content, $exp, "$name - response_body - like"
              . " (repeated req $rep, req $idx)");
        } elsif ($NoLongString) {
            Test::More::is($content, $exp, $desc);
        } else {
            Test::LongString::is_string($content, $exp, $desc);
        }
    } elsif (defined $block->response_body_like
        || defined $block->response_body_unlike)
    {
        my $like = defined $block->response_body_like;
        my $type = $like ? 'like' : 'unlike';
        my $pat = indexed_value($name, $like ? $block->response_body_like
              : $block->response_body_unlike, $idx, $need_array);
        $pat = expand_port($pat);
        my $summary = trim($content) // '';
        my $desc = "$name - response_body_$type - response is expected"
          . " ($summary)";
        if ($like) {
            Test::More::like($content, qr/$pat/s, $desc);
        } else {
            Test::More::unlike($content, qr/$pat/s, $desc);
        }
    }
    for my $check (@ResponseBodyChecks) {
        $check->($block, $res->content, $idx, $rep, 0);
    }
}

# ---- one-shot mock TCP server (--- tcp_listen) ----

sub start_tcp_server () {
    my ($block, $name) = @_;
    my $target = expand_env(scalar $block->tcp_listen, $name);
    my $reply = $block->tcp_reply;
    bail_out("$name - no --- tcp_reply specified but --- tcp_listen is"
      . " specified") if !defined $reply && !defined $block->tcp_shutdown;
    my $req_len = $block->tcp_query_len;
    my $qfile;
    if (defined $block->tcp_query || defined $req_len) {
        $req_len //= length $block->tcp_query;
        (my $fh, $qfile) = File::Temp::tempfile('ragq-tcpq-XXXXXX',
            TMPDIR => 1);
        close $fh;
        unlink $qfile;
    }
    my ($srv, $err);
    for my $try (0 .. 29) {
        if ($target =~ /^\d+$/) {
            $srv = IO::Socket::INET->new(LocalHost => '127.0.0.1',
                LocalPort => $target, Proto => 'tcp', ReuseAddr => 1,
                Listen => 5);
        } elsif ($target =~ m{\S+\.sock$}) {
            unlink $target if -e $target;
            $srv = IO::Socket::UNIX->new(Local => $target,
                Type => SOCK_STREAM, Listen => 5);
        } else {
            bail_out("$name - bad tcp_listen target: $target");
        }
        last if $srv;
        $err = $!;
        last unless $err =~ /address already in use/i;
        warn "WARNING: failed to create the tcp listening socket: $err\n";
        sleep 1;
    }
    bail_out("$name - failed to create the tcp listening socket: $err")
      unless $srv;

    my $pid = fork;
    bail_out("$name - fork() failed: $!") unless defined $pid;
    if ($pid == 0) {
        # Child: _exit, so that no END block (nginx, servers) runs here.
        my $ok = eval {
            my $c;
            until ($c = $srv->accept) {
                warn "WARNING: $name - TCP server: failed to accept: $!\n";
                Time::HiRes::sleep($TestNginxSleep);
            }
            my ($no_read, $no_write);
            if (defined(my $sd = $block->tcp_shutdown)) {
                my $d = $block->tcp_shutdown_delay;
                Time::HiRes::sleep($d) if $d;
                $c->shutdown($sd);
                if ($sd == 0 || $sd == 2) { $no_read = 1 } else {
                    $no_write = 1 }
            }
            my $buf = '';
            unless ($no_read) {
                while (1) {
                    my $r = $c->recv(my $b, 4096);
                    die "failed to receive: $!\n" unless defined $r;
                    $buf .= $b;
                    if ($qfile) {
                        open my $o, '>', "$qfile.tmp" or die "$qfile: $!\n";
                        binmode $o;
                        print $o $buf;
                        close $o;
                        rename "$qfile.tmp", $qfile or die "$qfile: $!\n";
                    }
                    last if !$req_len || length $buf >= $req_len;
                    last if $b eq '';
                }
            }
            my $delay = parse_time(scalar $block->tcp_reply_delay);
            Time::HiRes::sleep($delay) if $delay;
            if (!$no_write && defined $reply) {
                $reply = $reply->($buf) if ref $reply eq 'CODE';
                local $SIG{PIPE} = 'IGNORE';
                for my $r (ref $reply eq 'ARRAY' ? @$reply : ($reply)) {
                    defined $c->send($r) or warn "WARNING: tcp server"
                      . " failed to send reply: $!\n";
                }
            }
            sleep 1 while defined $block->tcp_no_close;
            close $c;
            1;
        };
        warn "mock tcp server: $@" unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }
    $TcpServerPid = $pid;
    return {sock => $srv, qfile => $qfile, target => $target};
}

sub finish_tcp_server () {
    my ($block, $name, $tcp) = @_;
    my $buf = '';
    if ($tcp->{qfile} && open my $fh, '<', $tcp->{qfile}) {
        local $/;
        binmode $fh;
        $buf = <$fh> // '';
        close $fh;
    }
    is_str($buf, $block->tcp_query, "$name - tcp_query ok")
      if defined $block->tcp_query;
    Test::More::is(length($buf), $block->tcp_query_len,
        "$name - TCP query length ok") if defined $block->tcp_query_len;
    if (defined $TcpServerPid) {
        kill_process($TcpServerPid, $name);
        waitpid($TcpServerPid, 0);
        undef $TcpServerPid;
    }
    close $tcp->{sock};
    unlink $tcp->{qfile} if $tcp->{qfile};
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
    for my $mode (qw(USE_HUP USE_VALGRIND CHECK_LEAK BENCHMARK USE_STAP
        NO_NGINX_MANAGER USE_HTTP2 USE_HTTP3 USE_RR))
    {
        bail_out("TEST_NGINX_$mode is not implemented by ragq's"
          . " Test::Nginx::Socket (tests/lib)") if $ENV{"TEST_NGINX_$mode"};
    }
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort
      unless defined $ENV{TEST_NGINX_SERVER_PORT};
    my @blocks = Test::Base::blocks();
    @blocks = List::Util::shuffle(@blocks) unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        check_sections($block);
        $block->set_value('name', "$0 " . $block->name);
        run_test($block);
        $_->($block) for @TestCleanupHandlers;
        $PrevBlock = $block;
    }
    cleanup();
}

# Like the real runner: a block with a --- config starts a new nginx (with
# TEST_NGINX_FORCE_RESTART_ON_TEST=0: only when its --- config differs from
# the one nginx runs with); a block without one keeps the running nginx,
# whatever its other sections say. error.log is read from its start in
# every block: from the restart on, or all that the shared nginx wrote.
sub run_test () {
    my $block = shift;
    return if defined $block->SKIP;
    my $name = $block->name;
    %RandPorts = ();
    my $config = expand_env(scalar $block->config, $name);

    my $restart;
    if (!defined $config) {
        bail_out("$name - No '--- config' section specified and could not"
          . " get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?")
          unless defined $PrevConfig;
        $restart = 0;
    } else {
        $restart = $ForceRestartOnTest || !defined $PrevConfig
          || $config ne $PrevConfig;
    }

    if ($restart) {
        $PrevConfig = $config;
        stop_nginx($name);
        check_prev_block_shutdown_error_log();
        setup_server_root();
        write_user_files($block, $name);
        write_config($block, $config, $name);
        $ErrLogPos = 0;
        if (defined $block->must_die) {
            run_must_die($block, $name);
            return;
        }
        start_nginx($name);
        Time::HiRes::sleep($TestNginxSleep);
    }

    if (my $init = $block->init) {
        # The real runner evals it inside its run_test (package
        # Test::Nginx::Util), where $block and $name are in scope.
        eval "package Test::Nginx::Util;\n$init";
        bail_out("$name - init failed: $@") if $@;
    }

    $ErrLogPos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        my $tcp = defined $block->tcp_listen
          ? start_tcp_server($block, $name) : undef;
        write_user_files($block, $name) if $rep > 0;
        run_requests($block, $name, $rep);
        finish_tcp_server($block, $name, $tcp) if $tcp;
    }
    append_error_log($name);
}

# TEST_NGINX_ERROR_LOG: every block's error.log appended to one file.
sub append_error_log () {
    my $name = shift;
    my $total = $ENV{TEST_NGINX_ERROR_LOG} or return;
    return unless -s $ErrLogFile;
    open my $out, '>>', $total
      or bail_out("Failed to append test case title to $total: $!\n");
    print $out "\n=== $0 $name\n";
    if (open my $in, '<', $ErrLogFile) {
        print $out $_ while <$in>;
        close $in;
    }
    close $out;
}

sub run_requests () {
    my ($block, $name, $rep) = @_;
    my $timeout = parse_time(scalar $block->timeout) // $Timeout;
    my $reqs = requests_of_block($block, $name);
    bail_out("$name - request empty") unless @$reqs;
    my ($n, $need_array);
    if ($block->pipelined_requests) {
        $n = @{ $block->pipelined_requests };
        $need_array = 1;
    } else {
        $need_array = @$reqs > 1;
    }
    my ($res, $idx) = (undef, 0);
    for my $r (0 .. $#$reqs) {
        my $packets = $reqs->[$r];
        my $head = (join '', map { $_->{value} // '' } @$packets)
          =~ /^\s*HEAD\s+/ ? 1 : 0;
        my $raw = send_request($block, $name, $packets, $timeout);
        while (1) {
            $raw //= '';
            my ($raw_headers, $left);
            unless (defined $block->ignore_response) {
                ($res, $raw_headers, $left)
                  = parse_response($name, $raw, $head);
            }
            if (!$n) {
                if (defined $left && length $left) {
                    (my $l = $left)
                      =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
                    warn "WARNING: $name - unexpected extra bytes after last"
                      . " chunk in response: \"$l\"\n";
                }
            } else {
                $raw = $left;
                $n--;
            }
            unless (defined $block->ignore_response) {
                check_error_code($block, $name, $res, $idx, $need_array);
                check_raw_response_headers($block, $name, $raw_headers // '',
                    $idx, $need_array);
                check_response_headers($block, $name, $res,
                    $raw_headers // '', $idx, $need_array);
                check_response_body($block, $name, $res, $idx, $rep,
                    $need_array);
            }
            if ($n || $r < $#$reqs) {
                Time::HiRes::sleep($block->wait) if $block->wait;
                check_error_log($block, $name, $res, $rep, $need_array);
            }
            $idx++;
            last unless $n;
        }
    }
    Time::HiRes::sleep($block->wait) if $block->wait;
    check_error_log($block, $name, $res, $rep, $need_array);
}

# --- init code runs in package Test::Nginx::Util (see run_test), where the
# real runner's helpers are callable without a package name: so are ours.
for my $f (qw(server_root html_dir server_port server_port_for_client
    server_addr server_name timeout bail_out is_str parse_time repeat_each
    workers log_level master_on master_off master_process_enabled
    no_long_string no_shuffle no_root_location worker_connections
    env_to_nginx config_preamble check_accum_error_log error_log_data
    add_block_preprocessor add_cleanup_handler add_test_cleanup_handler))
{
    no strict 'refs';
    *{"Test::Nginx::Util::$f"} = \&{"Test::Nginx::Socket::$f"};
}

END {
    if ($$ == $MainPid) {
        cleanup();
        unless ($ENV{TEST_NGINX_NO_CLEAN}) {
            local $?;
            stop_nginx('END');
        }
        check_prev_block_shutdown_error_log();
    }
}

1;
__END__

=head1 NAME

Test::Nginx::Socket - ragq's in-repo runner of Test::Nginx's block format

=head1 DESCRIPTION

Behaves as openresty/test-nginx (the reference) does for the sections it
implements; tests/README lists where it still differs.

=cut
