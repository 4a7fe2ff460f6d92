# Ragq::ValkeyHA: Valkey as production runs it, on private loopback ports,
# for tests: TLS (a test CA made with the openssl CLI), ACL users, and an HA
# set (a primary, replicas and three sentinels).  Everything lives under one
# temporary directory and every process is a child of the test, killed by
# its pid when the object goes away (or at END).  Independent of tests/run's
# suite redis-server (Ragq::Valkey); usable from any .t file.
#
#   use Ragq::ValkeyHA;
#   my $ha  = Ragq::ValkeyHA->new;            # temp dir, nothing started
#   my $pki = $ha->pki;                       # CA + certs (made once)
#   my $s = $ha->server(tls => 1, plain => 0, tls_auth_clients => 'yes',
#       users => { ragq => 'on >pw ~p:* &p:* -@all +xreadgroup ...' });
#   $s->cli('SET', 'k', 'v');                 # admin redis-cli (TLS if needed)
#   $s->url(user => 'ragq', pass => 'pw');    # rediss://ragq:pw@127.0.0.1:P
#   my $set = $ha->ha_set(replicas => 1, sentinels => 3, name => 'ragqmaster');
#   $set->{primary}->kill;                    # SIGKILL
#   my $new = $ha->wait_failover($set, 20);   # the promoted server
#
# PKI ($ha->pki, a hash of file paths; made once per object, EC P-256 keys):
#   ca, ca_key            the test CA
#   server_cert/_key      signed by ca, SAN IP:127.0.0.1 + DNS:localhost,
#                         EKU serverAuth+clientAuth (the servers use it for
#                         replication too)
#   client_cert/_key      signed by ca, CN ragq-client, EKU clientAuth
#   wrong_name_cert/_key  signed by ca, SAN DNS:wrong.invalid only (a name
#                         that does not match what clients connect to)
#   bad_ca, bad_ca_key    a second CA that nobody trusts
#   bad_server_cert/_key  signed by bad_ca, SAN 127.0.0.1/localhost: does not
#                         verify against ca
#   bad_client_cert/_key  signed by bad_ca (a client cert a server with
#                         tls-auth-clients yes must refuse)
#   chain_server_cert/_key  signed by an intermediate CA (sub_ca, itself
#                         signed by ca), the file holding both: a chain one
#                         step deeper than server_cert's
#   dir                   the directory holding them
#
# Servers: $ha->server(%o) starts a redis-server (foreground, a child of the
# test) and waits until it answers PING.  Options:
#   plain => 1|0            listen on a plain TCP port (default 1; 0 = --port 0)
#   tls => 0|1              also listen with TLS (--tls-port)
#   tls_auth_clients => 'optional'|'yes'|'no'   (default 'optional')
#   cert => 'server'|'wrong_name'|'bad_server'|'chain_server'  which server
#                           cert (default server)
#   users => { NAME => 'ACL rules', ... }  written to an aclfile (the default
#                           user stays `on nopass ~* &* +@all`, the harness's
#                           admin)
#   replicaof => $server    start as its replica (waits for the link)
#   args => [ '--k', 'v' ]  more redis-server arguments
# A server object ($s) has:
#   port / tls_port         its ports (port undef when plain => 0); addr
#                           "127.0.0.1:<the port clients use>" (TLS if tls)
#   url(user =>, pass =>, db =>, host =>)  redis:// or rediss:// URL
#   cli(@args)              one command as admin (redis-cli --raw, TLS with the
#                           client cert when needed), chomped output; dies on
#                           failure. cli_list(@args): its lines. try_cli(@args):
#                           (output, exit code), never dies.
#   cli_as($user, $pass, @args)  the same, logged in as an ACL user
#   acl_setuser($name, @rules)   ACL SETUSER at run time (also on the aclfile
#                           so a restart keeps it: ACL SAVE)
#   replicaof($other) / promote   REPLICAOF host port / REPLICAOF NO ONE
#   role                    'master' | 'slave' (ROLE's first element)
#   wait_role($role, $secs) wait_link($secs) (replica's master_link_status:up)
#   commandstats            { cmd => { calls, rejected_calls, failed_calls } }
#                           from INFO commandstats (cmd lower case, subcommands
#                           as "client|list")
#   errorstats              { PREFIX => count } from INFO errorstats
#   command_count(@cmds)    sum of calls + rejected_calls (failed calls are
#                           in calls; NOPERM/READONLY/OOM are rejected) of
#                           those commands (all but the harness's and the
#                           sentinels'/replicas' own when @cmds is empty: see
#                           @BACKGROUND) -- take two and subtract to get the
#                           commands a client sent meanwhile
#   kill($sig)              default KILL; waits for the exit. start: the same
#                           server again on the same ports (after kill/stop);
#                           start(args => [...]) with more arguments from then
#                           on, start(loading => 1) returns as soon as PING
#                           answers LOADING (a server still loading its RDB).
#                           stop: SIGTERM, then KILL. pause/resume: SIGSTOP/CONT
#   alive, pid, dir, logfile, log
#
# HA sets: $ha->ha_set(%o) starts a primary, replicas (default 1) and
# sentinels (default 3, quorum 2) monitoring it as name (default
# 'ragqmaster'), with down-after-milliseconds (default 1000) and
# failover-timeout (default 3000); server options (tls, plain, users, ...)
# apply to every data node, tls => 1 also puts the sentinels on TLS (and
# tls-replication yes). Waits until every sentinel knows the other two and
# the replicas. Returns { primary => $s, replicas => [$s...], sentinels =>
# [$sentinel...], name => NAME, servers => [all data nodes] }.
#   $ha->sentinel_url($set, user =>, pass =>, db =>, tls =>)
#       redis+sentinel://[user:pass@]127.0.0.1:P1,...,127.0.0.1:P3/NAME[/db]
#       (rediss+sentinel:// when the set is TLS)
#   $ha->master_addr($set)  what the sentinels say ("127.0.0.1:port"; the
#       first sentinel that answers)
#   $ha->wait_failover($set, $secs)  polls SENTINEL get-master-addr-by-name
#       on every sentinel until all name another port than the primary's of
#       the set, and that server says ROLE master; updates $set->{primary} /
#       {replicas} and returns the new primary.  Dies on timeout.  Then
#       raises the set's down-after to 10 s (set_down_after): what a test
#       checks after a fail-over is that fail-over, and a stall of the
#       loaded machine must not start a second one.
#   $ha->set_down_after($set, $ms)  SENTINEL SET ... down-after-milliseconds
#       on every sentinel of the set
#   $ha->wait_replicated($server, $n, $secs)  polls INFO replication of
#       $server until $n replicas are online (after a fail-over the
#       sentinels re-point the others, which then resync).  Dies on timeout.
#   Sentinel objects: port, cli(@args), kill, start, log, alive, pid.
#   $ha->sentinel_events($n)  the last $n (default 20) +/- events each
#       sentinel logged; wait_failover, wait_replicated, ha_set and a
#       server's wait_role add them to their error when they time out.
#
# Everything started is killed (SIGKILL, by pid) on DESTROY of $ha and at
# END (in the process that made $ha, not in forked children); the temp dir
# is removed (kept when RAGQ_KEEP_HA is set, for debugging).  Ports are
# picked at random in 30000-32699 (below Linux's ephemeral range, apart from
# tests/run's 19000-29999), checked free, and retried if a server cannot bind.
package Ragq::ValkeyHA;

use strict;
use warnings;

use Carp qw(croak);
use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use IO::Socket::INET ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

my %LIVE;    # pid => 1, every process any object started
my $OWNER = $$;    # forked children (Test::Nginx's, the tests') kill nothing

# Commands the harness, replicas and sentinels send on their own: left out
# of command_count() when it is given no command names.
our @BACKGROUND = qw(info ping publish subscribe replconf psync sync
  client|setname client|kill client|list config|set config|rewrite
  config|get role cluster|info command command|docs hello acl|setuser
  acl|save acl|whoami slaveof replicaof exec multi select auth);

sub new {
    my ($class, %o) = @_;
    my $dir = tempdir('ragq-ha-XXXXXX', TMPDIR => 1);
    return bless { dir => $dir, procs => [], n => 0, pki => undef,
                   used_ports => {}, owner => $$ }, $class;
}

sub dir { $_[0]{dir} }

# ---- ports ---------------------------------------------------------------

sub _port_free {
    my $p = shift;
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p,
        Proto => 'tcp', Listen => 1, ReuseAddr => 1) or return 0;
    close $s;
    return 1;
}

# Below Linux's ephemeral range (32768+), away from tests/run's 19000-30000.
sub _pick_port {
    my ($self) = @_;
    for (1 .. 500) {
        my $p = 30000 + int(rand(2700));
        next if $self->{used_ports}{$p};
        next unless _port_free($p);
        $self->{used_ports}{$p} = 1;
        return $p;
    }
    croak "Ragq::ValkeyHA: no free loopback port";
}

# ---- PKI -----------------------------------------------------------------

sub _openssl {
    my ($self, @args) = @_;
    my $log = "$self->{dir}/pki/openssl.log";
    my $pid = fork();
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        exec 'openssl', @args or POSIX::_exit(127);
    }
    waitpid($pid, 0);
    return if $? == 0;
    open my $f, '<', $log;
    local $/;
    my $out = <$f> // '';
    croak "Ragq::ValkeyHA: openssl @args failed: $out";
}

sub _slurp {
    my ($file) = @_;
    open my $f, '<', $file or croak "$file: $!";
    local $/;
    return scalar <$f>;
}

sub _write {
    my ($file, $text) = @_;
    open my $f, '>', $file or croak "$file: $!";
    print $f $text;
    close $f or croak "$file: $!";
}

my $OPENSSL_CNF = <<'EOF';
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
[ wrong_name_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:wrong.invalid
[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
EOF

sub _make_ca {
    my ($self, $d, $name, $cn) = @_;
    $self->_openssl('req', '-config', "$d/openssl.cnf", '-x509', '-new',
        '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', "$d/$name.key", '-out', "$d/$name.crt", '-days', '2',
        '-subj', "/CN=$cn", '-extensions', 'ca_ext');
}

sub _make_cert {
    my ($self, $d, $name, $ca, $cn, $ext) = @_;
    $self->_openssl('req', '-config', "$d/openssl.cnf", '-new', '-newkey',
        'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', "$d/$name.key", '-out', "$d/$name.csr", '-subj', "/CN=$cn");
    $self->_openssl('x509', '-req', '-in', "$d/$name.csr", '-CA', "$d/$ca.crt",
        '-CAkey', "$d/$ca.key", '-CAcreateserial', '-out', "$d/$name.crt",
        '-days', '2', '-extfile', "$d/openssl.cnf", '-extensions', $ext);
}

sub pki {
    my ($self) = @_;
    return $self->{pki} if $self->{pki};
    my $d = "$self->{dir}/pki";
    mkdir $d or croak "$d: $!";
    _write("$d/openssl.cnf", $OPENSSL_CNF);
    $self->_make_ca($d, 'ca', 'ragq test CA');
    $self->_make_cert($d, 'server', 'ca', 'localhost', 'server_ext');
    $self->_make_cert($d, 'client', 'ca', 'ragq-client', 'client_ext');
    $self->_make_cert($d, 'wrong_name', 'ca', 'wrong.invalid', 'wrong_name_ext');
    $self->_make_ca($d, 'bad_ca', 'ragq untrusted CA');
    $self->_make_cert($d, 'bad_server', 'bad_ca', 'localhost', 'server_ext');
    $self->_make_cert($d, 'bad_client', 'bad_ca', 'ragq-client', 'client_ext');
    # an intermediate CA under ca, and a server certificate it signed, sent
    # with the intermediate (leaf first, as servers send chains)
    $self->_make_cert($d, 'sub_ca', 'ca', 'ragq test intermediate CA', 'ca_ext');
    $self->_make_cert($d, 'chain_leaf', 'sub_ca', 'localhost', 'server_ext');
    _write("$d/chain_server.crt", _slurp("$d/chain_leaf.crt") . _slurp("$d/sub_ca.crt"));
    _write("$d/chain_server.key", _slurp("$d/chain_leaf.key"));
    my %p = (dir => $d, ca => "$d/ca.crt", ca_key => "$d/ca.key",
             bad_ca => "$d/bad_ca.crt", bad_ca_key => "$d/bad_ca.key");
    for my $n (qw(server client wrong_name bad_server bad_client chain_server)) {
        $p{"${n}_cert"} = "$d/$n.crt";
        $p{"${n}_key"} = "$d/$n.key";
    }
    chmod 0600, glob("$d/*.key");
    return $self->{pki} = \%p;
}

# ---- processes -----------------------------------------------------------

sub _alive_pid {
    my $pid = shift;
    return 0 unless $pid;
    if (waitpid($pid, WNOHANG) == $pid) {
        delete $LIVE{$pid};
        return 0;
    }
    return 0 unless kill 0, $pid;
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $s = <$fh>;
        return 0 if defined $s && $s =~ /^\d+ \(.*\) Z /s;
    }
    return 1;
}

sub _spawn {
    my ($bin, $logfile, @args) = @_;
    my $pid = fork();
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $logfile;
        open STDERR, '>&', \*STDOUT;
        exec $bin, @args or POSIX::_exit(127);
    }
    $LIVE{$pid} = 1;
    return $pid;
}

sub _reap {
    my ($pid, $secs) = @_;
    my $deadline = time + ($secs // 10);
    while (time < $deadline) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid || $r < 0) {
            delete $LIVE{$pid};
            return 1;
        }
        sleep 0.01;
    }
    return 0;
}

# $explain (optional): a sub whose text is added to the error on timeout.
sub _wait_for {
    my ($what, $cond, $secs, $explain) = @_;
    my $deadline = time + ($secs // 15);
    while (time < $deadline) {
        my $v = $cond->();
        return $v if $v;
        sleep 0.05;
    }
    my $more = $explain ? "\n" . $explain->() : '';
    croak "Ragq::ValkeyHA: timed out waiting for $what$more";
}

# What every sentinel logged last (its +/- events, TILT among them): the
# explanation of a fail-over or a reconfiguration that did not come.
sub sentinel_events {
    my ($self, $lines) = @_;
    my $out = '';
    for my $t (grep { $_->{sentinel} } @{ $self->{procs} }) {
        my @ev = grep { /[#*] [+-][a-z]/ } split /\n/, $t->log;
        splice @ev, 0, @ev - ($lines // 20) if @ev > ($lines // 20);
        $out .= "$t->{name} (" . ($t->alive ? 'running' : 'not running') . "):\n"
          . join('', map { "  $_\n" } @ev);
    }
    return $out;
}

# ---- servers -------------------------------------------------------------

sub server {
    my ($self, %o) = @_;
    my $n = ++$self->{n};
    my $s = bless {
        ha => $self, name => "redis$n", dir => "$self->{dir}/redis$n",
        plain => $o{plain} // 1, tls => $o{tls} // 0,
        tls_auth_clients => $o{tls_auth_clients} // 'optional',
        cert => $o{cert} // 'server', users => $o{users} || {},
        args => $o{args} || [],
    }, 'Ragq::ValkeyHA::Server';
    croak "Ragq::ValkeyHA: a server needs plain or tls" unless $s->{plain} || $s->{tls};
    mkdir $s->{dir} or croak "$s->{dir}: $!";
    $self->pki if $s->{tls};
    my $acl = "user default on nopass ~* &* +\@all\n";
    for my $u (sort keys %{ $s->{users} }) {
        $acl .= "user $u $s->{users}{$u}\n";
    }
    _write("$s->{dir}/users.acl", $acl);
    for my $try (1 .. 5) {
        $s->{port} = $s->{plain} ? $self->_pick_port : undef;
        $s->{tls_port} = $s->{tls} ? $self->_pick_port : undef;
        last if $s->_start_once;
        croak "Ragq::ValkeyHA: $s->{name} did not start:\n" . $s->log if $try == 5;
    }
    if (my $m = $o{replicaof}) {
        $s->replicaof($m);
        $s->wait_link;
    }
    push @{ $self->{procs} }, $s;
    return $s;
}

# ---- sentinels -----------------------------------------------------------

sub _sentinel {
    my ($self, %o) = @_;
    my $n = ++$self->{n};
    my $t = bless {
        ha => $self, name => "sentinel$n", dir => "$self->{dir}/sentinel$n",
        tls => $o{tls} // 0, plain => !($o{tls} // 0),
        tls_auth_clients => $o{tls_auth_clients} // 'optional',
        cert => 'server', sentinel => 1,
    }, 'Ragq::ValkeyHA::Server';
    mkdir $t->{dir} or croak "$t->{dir}: $!";
    my $p = $self->_pick_port;
    $t->{port} = $t->{plain} ? $p : undef;
    $t->{tls_port} = $t->{tls} ? $p : undef;
    my $m = $o{primary};
    my $conf = "bind 127.0.0.1\ndir $t->{dir}\nprotected-mode no\n";
    if ($t->{tls}) {
        my $k = $self->pki;
        $conf .= "port 0\ntls-port $p\ntls-cert-file $k->{server_cert}\n"
          . "tls-key-file $k->{server_key}\ntls-ca-cert-file $k->{ca}\n"
          . "tls-auth-clients $t->{tls_auth_clients}\ntls-replication yes\n";
    } else {
        $conf .= "port $p\n";
    }
    $conf .= "sentinel monitor $o{name} 127.0.0.1 " . $m->client_port . " $o{quorum}\n"
      . "sentinel down-after-milliseconds $o{name} $o{down_after}\n"
      . "sentinel failover-timeout $o{name} $o{failover_timeout}\n"
      . "sentinel parallel-syncs $o{name} 1\n";
    _write("$t->{dir}/sentinel.conf", $conf);
    $t->{conf} = "$t->{dir}/sentinel.conf";
    $t->_start_once or croak "Ragq::ValkeyHA: $t->{name} did not start:\n" . $t->log;
    push @{ $self->{procs} }, $t;
    return $t;
}

sub ha_set {
    my ($self, %o) = @_;
    my $name = $o{name} // 'ragqmaster';
    my $nrep = $o{replicas} // 1;
    my $nsen = $o{sentinels} // 3;
    my %srv = map { exists $o{$_} ? ($_ => $o{$_}) : () }
      qw(plain tls tls_auth_clients users args cert);
    my $primary = $self->server(%srv);
    my @replicas = map { $self->server(%srv, replicaof => $primary) } 1 .. $nrep;
    my @sentinels = map {
        $self->_sentinel(tls => $srv{tls}, name => $name, primary => $primary,
            quorum => $o{quorum} // 2, down_after => $o{down_after} // 1000,
            failover_timeout => $o{failover_timeout} // 3000)
    } 1 .. $nsen;
    my $set = { name => $name, primary => $primary, replicas => \@replicas,
                sentinels => \@sentinels, servers => [ $primary, @replicas ],
                tls => $srv{tls} // 0 };
    # Sentinels find each other through the primary's hello channel and the
    # replicas through its INFO: wait until each knows all of them.
    _wait_for('the sentinels to know each other and the replicas', sub {
        for my $t (@sentinels) {
            my %m = $t->try_kv('SENTINEL', 'MASTER', $name);
            return 0 unless ($m{'num-other-sentinels'} // -1) == $nsen - 1
              && ($m{'num-slaves'} // -1) >= $nrep;
        }
        return 1;
    }, 30, sub { $self->sentinel_events });
    return $set;
}

sub sentinel_url {
    my ($self, $set, %o) = @_;
    my $scheme = ($o{tls} // $set->{tls}) ? 'rediss+sentinel' : 'redis+sentinel';
    my $cred = '';
    if (defined $o{pass}) {
        $cred = ($o{user} // '') . ":$o{pass}\@";
    }
    my $hosts = join ',', map { '127.0.0.1:' . $_->client_port } @{ $set->{sentinels} };
    my $db = defined $o{db} ? "/$o{db}" : '';
    return "$scheme://$cred$hosts/$set->{name}$db";
}

sub master_addr {
    my ($self, $set) = @_;
    for my $t (@{ $set->{sentinels} }) {
        next unless $t->alive;
        my ($out, $rc) = $t->try_cli('SENTINEL', 'get-master-addr-by-name', $set->{name});
        next if $rc;
        my ($h, $p) = split /\n/, $out;
        return "$h:$p" if defined $p && $p =~ /^\d+$/;
    }
    return undef;
}

sub wait_failover {
    my ($self, $set, $secs) = @_;
    my $old = $set->{primary}->client_port;
    my %by_port = map { $_->client_port => $_ } @{ $set->{servers} };
    my $new = _wait_for("a fail-over away from port $old", sub {
        my %seen;
        for my $t (grep { $_->alive } @{ $set->{sentinels} }) {
            my ($out, $rc) = $t->try_cli('SENTINEL', 'get-master-addr-by-name', $set->{name});
            return 0 if $rc;
            my (undef, $p) = split /\n/, $out;
            return 0 unless defined $p && $p ne $old;
            $seen{$p} = 1;
        }
        return 0 unless keys %seen == 1;
        my ($p) = keys %seen;
        my $s = $by_port{$p} or return 0;
        return 0 unless $s->alive && ($s->try_role // '') eq 'master';
        return $s;
    }, $secs // 30, sub { $self->sentinel_events });
    $set->{replicas} = [ grep { $_ != $new } @{ $set->{servers} } ];
    $set->{primary} = $new;
    $self->set_down_after($set, 10000);
    return $new;
}

# SENTINEL SET down-after-milliseconds on every running sentinel of the set.
# wait_failover raises it to 10 s once the fail-over is seen, so that a stall
# of the loaded machine (ASan, CI) longer than the 1 s default is not taken
# for the new primary failing.  That starts a second fail-over: to the old
# primary if it is back, which then never becomes a replica (CI's "timed out
# waiting for redis5 to be slave"), or to the new primary's one replica,
# which then has none to acknowledge WAIT (CI's 503 valkey_not_replicated in
# worker/failover.t).  Both reproduced by pausing the new primary for 3 s.
sub set_down_after {
    my ($self, $set, $ms) = @_;
    $_->cli('SENTINEL', 'SET', $set->{name}, 'down-after-milliseconds', $ms)
      for grep { $_->alive } @{ $set->{sentinels} };
    return 1;
}

sub wait_replicated {
    my ($self, $server, $n, $secs) = @_;
    return _wait_for("$n replica(s) online on port " . $server->client_port, sub {
        my ($out, $rc) = $server->try_cli('INFO', 'replication');
        return 0 if $rc;
        my $online = () = $out =~ /^slave\d+:.*state=online/mg;
        return $online >= $n;
    }, $secs // 30, sub { $self->sentinel_events });
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    return unless $$ == $self->{owner};
    for my $p (grep { defined } @{ $self->{procs} || [] }) {
        $p->_kill_now;
    }
    remove_tree($self->{dir}) if $self->{dir} && -d $self->{dir} && !$ENV{RAGQ_KEEP_HA};
}

END {
    local $?;
    return unless $$ == $OWNER;
    for my $pid (keys %LIVE) {
        kill 'CONT', $pid;
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
}

# ---- one redis-server or redis-sentinel ----------------------------------

package Ragq::ValkeyHA::Server;

use strict;
use warnings;

use Carp qw(croak);
use Time::HiRes qw(time sleep);

sub port     { $_[0]{port} }
sub tls_port { $_[0]{tls_port} }
sub pid      { $_[0]{pid} }
sub dir      { $_[0]{dir} }
sub name     { $_[0]{name} }
sub logfile  { "$_[0]{dir}/log" }

# The port clients use: TLS when the server has it.
sub client_port { $_[0]{tls} ? $_[0]{tls_port} : $_[0]{port} }
sub addr        { '127.0.0.1:' . $_[0]->client_port }

sub log {
    my ($self) = @_;
    open my $f, '<', $self->logfile or return '';
    local $/;
    return <$f> // '';
}

sub url {
    my ($self, %o) = @_;
    my $scheme = ($o{tls} // $self->{tls}) ? 'rediss' : 'redis';
    my $port = ($o{tls} // $self->{tls}) ? $self->{tls_port} : $self->{port};
    my $cred = '';
    if (defined $o{pass}) {
        $cred = ($o{user} // '') . ":$o{pass}\@";
    }
    my $db = defined $o{db} ? "/$o{db}" : '';
    return "$scheme://$cred" . ($o{host} // '127.0.0.1') . ":$port$db";
}

sub _server_args {
    my ($self) = @_;
    my $ha = $self->{ha};
    my @a = ('--bind', '127.0.0.1', '--port', $self->{port} // 0,
        '--dir', $self->{dir}, '--save', '', '--appendonly', 'no',
        '--protected-mode', 'no', '--aclfile', "$self->{dir}/users.acl",
        '--daemonize', 'no');
    if ($self->{tls}) {
        my $k = $ha->pki;
        my $c = $self->{cert};
        push @a, '--tls-port', $self->{tls_port},
          '--tls-cert-file', $k->{"${c}_cert"}, '--tls-key-file', $k->{"${c}_key"},
          '--tls-ca-cert-file', $k->{ca},
          '--tls-auth-clients', $self->{tls_auth_clients},
          # replicas reach their primary over TLS, with the good client cert
          '--tls-replication', 'yes',
          '--tls-client-cert-file', $k->{client_cert},
          '--tls-client-key-file', $k->{client_key};
    }
    return (@a, @{ $self->{args} });
}

# Starts the process and waits for PING; 0 if it died first (port taken).
sub _start_once {
    my ($self) = @_;
    my @cmd = $self->{sentinel}
      ? ('redis-sentinel', $self->{conf})
      : ('redis-server', $self->_server_args);
    my $bin = shift @cmd;
    $self->{pid} = Ragq::ValkeyHA::_spawn($bin, $self->logfile, @cmd);
    my $deadline = time + 15;
    while (time < $deadline) {
        if (!Ragq::ValkeyHA::_alive_pid($self->{pid})) {
            Ragq::ValkeyHA::_reap($self->{pid}, 1);
            $self->{pid} = undef;
            return 0;
        }
        my ($out, $rc) = $self->try_cli('PING');
        return 1 if $rc == 0 && $out =~ /PONG/;
        return 1 if $self->{up_when_loading} && $out =~ /^LOADING/;
        sleep 0.05;
    }
    return 0;
}

sub start {
    my ($self, %o) = @_;
    croak "Ragq::ValkeyHA: $self->{name} is running" if $self->alive;
    $self->{args} = [ @{ $self->{args} }, @{ $o{args} } ] if $o{args};
    $self->{up_when_loading} = $o{loading};
    $self->_start_once or croak "Ragq::ValkeyHA: $self->{name} did not start again:\n"
      . $self->log;
    return $self;
}

sub alive { Ragq::ValkeyHA::_alive_pid($_[0]{pid}) }

sub kill {
    my ($self, $sig) = @_;
    $sig //= 'KILL';
    return unless $self->{pid};
    CORE::kill 'CONT', $self->{pid} if $sig eq 'KILL' || $sig eq 'TERM';
    CORE::kill $sig, $self->{pid};
    if ($sig eq 'KILL' || $sig eq 'TERM') {
        Ragq::ValkeyHA::_reap($self->{pid}, 10) or do {
            CORE::kill 'KILL', $self->{pid};
            Ragq::ValkeyHA::_reap($self->{pid}, 5);
        };
        $self->{pid} = undef;
    }
    return 1;
}

sub stop   { $_[0]->kill('TERM') }
sub pause  { CORE::kill 'STOP', $_[0]{pid} if $_[0]{pid}; 1 }
sub resume { CORE::kill 'CONT', $_[0]{pid} if $_[0]{pid}; 1 }

sub _kill_now {
    my ($self) = @_;
    return unless $self->{pid};
    CORE::kill 'CONT', $self->{pid};
    CORE::kill 'KILL', $self->{pid};
    Ragq::ValkeyHA::_reap($self->{pid}, 5);
    $self->{pid} = undef;
}

# ---- redis-cli -----------------------------------------------------------

sub _cli_argv {
    my ($self, $auth, @args) = @_;
    my @a = ('redis-cli', '-h', '127.0.0.1', '-p', $self->client_port, '--raw',
             '--no-auth-warning');
    if ($self->{tls}) {
        my $k = $self->{ha}->pki;
        # a server with the untrusted CA's certificate: the admin trusts it
        my $ca = ($self->{cert} // '') eq 'bad_server' ? $k->{bad_ca} : $k->{ca};
        push @a, '--tls', '--cacert', $ca, '--cert', $k->{client_cert},
          '--key', $k->{client_key};
    }
    if ($auth) {
        push @a, '--user', $auth->[0] if defined $auth->[0];
        push @a, '--pass', $auth->[1];
    }
    return (@a, @args);
}

sub _run {
    my ($self, $auth, @args) = @_;
    my @argv = $self->_cli_argv($auth, @args);
    my $pid = open(my $fh, '-|');
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        open STDIN, '<', '/dev/null';
        no warnings 'exec';
        exec @argv;
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my $rc = $? >> 8;
    $out =~ s/\n\z//;    # chomp does nothing under local $/
    # redis-cli --raw exits 0 on an error reply; make that a failure too
    $rc = 1 if !$rc && $out =~ /^(ERR|NOPERM|WRONGPASS|NOAUTH|READONLY|LOADING)\b/
      && @args && uc($args[0]) ne 'GET';
    return ($out, $rc);
}

sub try_cli { my $s = shift; return $s->_run(undef, @_) }

sub cli {
    my ($self, @args) = @_;
    my ($out, $rc) = $self->_run(undef, @args);
    croak "Ragq::ValkeyHA: $self->{name}: redis-cli @args failed ($rc): $out" if $rc;
    return $out;
}

sub cli_list {
    my $out = shift->cli(@_);
    return () unless length $out;
    return split /\n/, $out;
}

sub cli_as {
    my ($self, $user, $pass, @args) = @_;
    return $self->_run([ $user, $pass ], @args);
}

# A flat key/value reply (SENTINEL MASTER, CONFIG GET) as a hash; () on error.
sub try_kv {
    my ($self, @args) = @_;
    my ($out, $rc) = $self->_run(undef, @args);
    return () if $rc;
    my @kv = split /\n/, $out;
    push @kv, '' if @kv % 2;
    return @kv;
}

sub acl_setuser {
    my ($self, $name, @rules) = @_;
    $self->cli('ACL', 'SETUSER', $name, @rules);
    $self->cli('ACL', 'SAVE');
    return 1;
}

sub replicaof {
    my ($self, $other) = @_;
    return $self->cli('REPLICAOF', '127.0.0.1', $other->client_port);
}

sub promote { $_[0]->cli('REPLICAOF', 'NO', 'ONE') }

sub try_role {
    my ($self) = @_;
    my ($out, $rc) = $self->try_cli('ROLE');
    return undef if $rc;
    my ($r) = split /\n/, $out;
    return $r;
}

sub role {
    my ($self) = @_;
    my $r = $self->try_role;
    croak "Ragq::ValkeyHA: $self->{name}: ROLE failed" unless defined $r;
    return $r;
}

sub wait_role {
    my ($self, $role, $secs) = @_;
    return Ragq::ValkeyHA::_wait_for("$self->{name} to be $role",
        sub { ($self->try_role // '') eq $role }, $secs,
        sub { "its role: " . ($self->try_role // 'no answer') . "\n"
              . $self->{ha}->sentinel_events });
}

sub _info {
    my ($self, $section) = @_;
    my %h;
    for my $l (split /\r?\n/, $self->cli('INFO', $section)) {
        next if $l =~ /^#/ || $l !~ /:/;
        my ($k, $v) = split /:/, $l, 2;
        $h{$k} = $v;
    }
    return \%h;
}

sub info { $_[0]->_info($_[1] // 'default') }

sub wait_link {
    my ($self, $secs) = @_;
    return Ragq::ValkeyHA::_wait_for("$self->{name}'s replication link", sub {
        my $i = eval { $self->_info('replication') } or return 0;
        return ($i->{master_link_status} // '') eq 'up';
    }, $secs);
}

sub commandstats {
    my ($self) = @_;
    my $i = $self->_info('commandstats');
    my %s;
    for my $k (keys %$i) {
        next unless $k =~ /^cmdstat_(.+)$/;
        my $cmd = lc $1;
        my %f = map { split /=/, $_, 2 } split /,/, $i->{$k};
        $s{$cmd} = { map { $_ => $f{$_} // 0 } qw(calls rejected_calls failed_calls) };
    }
    return \%s;
}

sub errorstats {
    my ($self) = @_;
    my $i = $self->_info('errorstats');
    my %e;
    for my $k (keys %$i) {
        next unless $k =~ /^errorstat_(.+)$/;
        my $name = $1;
        $e{$name} = $i->{$k} =~ /count=(\d+)/ ? $1 : 0;
    }
    return \%e;
}

sub command_count {
    my ($self, @cmds) = @_;
    my $s = $self->commandstats;
    my %bg = map { $_ => 1 } @Ragq::ValkeyHA::BACKGROUND;
    my @which = @cmds ? map { lc } @cmds : grep { !$bg{$_} } keys %$s;
    my $n = 0;
    for my $c (@which) {
        my $e = $s->{$c} or next;
        $n += $e->{calls} + $e->{rejected_calls};
    }
    return $n;
}

1;
