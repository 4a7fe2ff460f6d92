# The Dockerfile and compose.yaml, checked without a container engine: the
# compose file parses; every service has a healthcheck and a non-root user;
# the images named are pinned; the Dockerfile's stages are built with the
# Makefile's commands, run as non-root with a healthcheck, nginx's with
# STOPSIGNAL SIGQUIT; .dockerignore keeps a host's build out.  The image's
# nginx.conf (rendered by conf/docker/entrypoint from the environment) is run
# here with the built module, and the healthchecks answer for it and for a
# worker's fresh heartbeat in Valkey (named by RAGQ_CONSUMER or found by its
# process), and fail without one or when Valkey is away; with
# RAGQ_HEALTH_FILE (which the worker image sets), for the age of that file,
# whatever the URL.
use strict;
use warnings;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use File::Spec;
use Sys::Hostname ();
use Test::More;

my $root  = File::Spec->rel2abs($ENV{RAGQ_ROOT} || '.');
my $build = File::Spec->rel2abs($ENV{RAGQ_BUILD} || "$root/build");
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $redis = $ENV{TEST_NGINX_REDIS_PORT} || 6379;
my $tmp   = tempdir(CLEANUP => 1);

sub slurp {
    open my $f, '<', $_[0] or return '';
    local $/;
    return scalar <$f>;
}

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 1) or die "no port: $!";
    return $s->sockport;
}

chomp(my $version = slurp("$root/VERSION"));

# --- compose.yaml ----------------------------------------------------------------
my $json = `python3 -c 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))' '$root/compose.yaml' 2>&1`;
is $? >> 8, 0, 'compose.yaml parses as YAML' or diag $json;
my $compose = eval { decode_json($json) } || {};
my $services = $compose->{services} || {};
is_deeply [sort keys %$services], [qw(nginx qdrant valkey worker)],
    'services: Valkey, Qdrant, nginx + ragq, a worker';

my $dockerfile = slurp("$root/Dockerfile");
my %stage = map { $_ => 1 } $dockerfile =~ /^FROM\s+\S+\s+AS\s+(\S+)/mig;

for my $name (sort keys %$services) {
    my $s  = $services->{$name};
    my $hc = $s->{healthcheck} || {};
    ok ref $hc->{test} eq 'ARRAY' && @{$hc->{test}} > 1 && !$hc->{disable},
        "$name has a healthcheck";
    ok defined $s->{user} && $s->{user} !~ /^(root|0)(:|$)/, "$name runs as a non-root user";
    if ($s->{build}) {
        ok $stage{$s->{build}{target} // ''}, "$name builds the Dockerfile's $s->{build}{target} stage";
        like $s->{image} // '', qr/:\Q$version\E$/, "${name}'s image is tagged with VERSION";
    } else {
        like $s->{image} // '', qr/^[\w.\/-]+:(?!latest)[\w.-]*\d[\w.-]*(\@sha256:[0-9a-f]{64})?$/,
            "${name}'s image is pinned ($s->{image})";
    }
}
like join(' ', @{$services->{valkey}{command} || []}), qr/--appendonly yes/, 'Valkey keeps an AOF';
is $services->{nginx}{environment}{RAGQ_VALKEY}, 'valkey:6379', 'nginx takes Valkey\'s address from the environment';
ok grep({ /^RAGQ_VALKEY_URL=redis:\/\/valkey:6379$/ } @{$services->{worker}{environment} || []}),
    'so does the worker';
is $services->{nginx}{stop_signal}, 'SIGQUIT', 'compose stops nginx with SIGQUIT (graceful)';
my @published = map { @{$_->{ports} || []} } values %$services;
ok !grep({ !/^127\.0\.0\.1:/ } @published), 'only loopback ports are published';

# --- Dockerfile --------------------------------------------------------------------
my ($base) = $dockerfile =~ /^ARG DEBIAN_IMAGE=(\S+)/m;
like $base // '', qr/^debian:[\w.-]*\d[\w.-]*$/, "the base image is pinned ($base)";
my @from = $dockerfile =~ /^FROM\s+(\S+)/mg;
is_deeply [grep { $_ ne '${DEBIAN_IMAGE}' } @from], [], 'every stage starts from that base';

my %body;
my @parts = split /^(?=FROM\s)/m, $dockerfile;
for (@parts) { $body{$1} = $_ if /^FROM\s+\S+\s+AS\s+(\S+)/ }
like $body{build} // '', qr/^RUN\b[^\n]*(?:\\\n[^\n]*)*scripts\/install-deps --deb\b/m,
    'build: scripts/install-deps --deb, as CI';
like $body{build} // '', qr/^RUN make deb$/m, 'build: make deb, as CI';
like slurp("$root/scripts/ci-packages"), qr/^scripts\/install-deps --deb$/m, 'CI runs the same install-deps';
for my $st (qw(nginx worker)) {
    my $b = $body{$st} // '';
    like $b, qr/^USER (?!root\b|0\b)\S+/m, "$st: a non-root USER";
    like $b, qr/^HEALTHCHECK .*\n?.*CMD/m, "$st: a HEALTHCHECK";
    like $b, qr/apt-get install .*\/tmp\/debs\/\*\.deb/, "$st: installs the package built by make deb";
}
like $body{nginx} // '', qr/^STOPSIGNAL SIGQUIT$/m, 'nginx: STOPSIGNAL SIGQUIT';
for my $src ($dockerfile =~ /^COPY\s+(?!--from)(.+)\s+\S+$/mg) {
    for my $f (split ' ', $src) {
        next if $f eq '.';
        ok -e "$root/$f", "COPY source $f exists";
    }
}
my %ignored = map { $_ => 1 } grep { /\S/ && !/^#/ } split /\n/, slurp("$root/.dockerignore");
ok $ignored{$_}, ".dockerignore excludes $_" for qw(build .git tests/servroot*);

# --- the image's nginx.conf, rendered and run --------------------------------------
my $template = "$root/conf/docker/nginx.conf.template";
like slurp($template), qr/^error_log stderr;$/m, 'nginx logs errors to stderr';
like slurp($template), qr/^\s*access_log \/dev\/stdout;$/m, 'and requests to stdout';

my $entry = "$root/conf/docker/entrypoint";
my $said = `RAGQ_NGINX_TEMPLATE='$template' RAGQ_NGINX_CONF='$tmp/x.conf' RAGQ_VALKEY='x; include /etc/passwd' '$entry' true 2>&1`;
isnt $? >> 8, 0, 'the entrypoint refuses a RAGQ_VALKEY that would extend the directive';

sub render {
    my ($valkey_port, $port) = @_;
    my $out = `RAGQ_NGINX_TEMPLATE='$template' RAGQ_NGINX_CONF='$tmp/nginx.conf' RAGQ_VALKEY='127.0.0.1:$valkey_port' RAGQ_PREFIX=ragq_docker_t '$entry' true 2>&1`;
    return (0, $out) if $? >> 8;
    my $conf = slurp("$tmp/nginx.conf");
    $conf =~ s{^include /etc/nginx/modules-enabled/\*\.conf;}{load_module $build/ngx_http_ragq_module.so;}m;
    $conf =~ s{/run/ragq-nginx/}{$tmp/}g;
    $conf =~ s{listen 8080;}{listen 127.0.0.1:$port;};
    # daemonized here: a master holding stderr would hold the test's pipe
    $conf =~ s{access_log /dev/stdout;}{access_log off;};
    $conf =~ s{^error_log stderr;}{error_log $tmp/error.log;}m;
    $conf =~ s{worker_processes auto;}{worker_processes 1;};
    open my $f, '>', "$tmp/nginx.conf" or die $!;
    print $f $conf;
    close $f;
    return (1, $conf);
}

sub run_nginx {
    my @cmd = ($nginx, '-p', "$tmp/", '-c', "$tmp/nginx.conf", '-e', "$tmp/error.log");
    my $out = `@cmd @_ 2>&1`;
    return ($? >> 8, $out);
}

sub stop_nginx {
    my $pid = slurp("$tmp/nginx.pid") or return;
    chomp $pid;
    kill 'QUIT', $pid;
    for (1 .. 100) { last unless kill 0, $pid; select undef, undef, undef, 0.05 }
    unlink "$tmp/nginx.pid";
}

# an nginx left by a failed test is stopped too
END { stop_nginx() }

my $health = "$root/conf/docker/healthcheck";
my $dead = free_port();    # nothing listens there
for my $case ([$redis, 0, 'answers'], [$dead, 1, 'fails while Valkey is away']) {
    my ($vport, $fails, $what) = @$case;
    my $port = free_port();
    my ($ok, $conf) = render($vport, $port);
    ok $ok, 'the entrypoint renders nginx.conf' or diag $conf;
    like $conf, qr/^\s*ragq_valkey 127\.0\.0\.1:$vport;$/m, 'with RAGQ_VALKEY';
    my ($rc, $out) = run_nginx('-t');
    is $rc, 0, 'nginx -t accepts the image\'s nginx.conf' or diag $out;
    ($rc, $out) = run_nginx();
    is $rc, 0, 'nginx starts with it' or diag $out;
    my $code = system("RAGQ_HEALTH_PORT=$port '$health' nginx") >> 8;
    if ($fails) { isnt $code, 0, "healthcheck nginx $what" }
    else        { is $code, 0, "healthcheck nginx $what" }
    stop_nginx();

    # the worker's: its heartbeat hash, by RAGQ_CONSUMER or found by its
    # process (a proc tree of our own: the machine may run other workers)
    my $hc = "RAGQ_VALKEY_URL=redis://127.0.0.1:$vport/0 RAGQ_PREFIX=ragq_docker_t '$health' worker 2>/dev/null";
    my $beat = sub { system("redis-cli -p $vport @_ >/dev/null 2>&1") };
    my $host = Sys::Hostname::hostname();
    mkdir "$tmp/proc"; mkdir "$tmp/proc/$_" for 1, 4242;
    open my $c1, '>', "$tmp/proc/1/comm" or die; print $c1 "init\n"; close $c1;
    open my $c2, '>', "$tmp/proc/4242/comm" or die; print $c2 "ragq-worker\n"; close $c2;
    $beat->('DEL', 'ragq_docker_t:worker:hc-1', "ragq_docker_t:worker:$host-4242");
    $code = system("RAGQ_CONSUMER=hc-1 $hc") >> 8;
    isnt $code, 0, "healthcheck worker $what: no heartbeat, unhealthy";
    $beat->('SET', 'ragq_docker_t:worker:hc-1', 'x', 'PX', 60000);
    $beat->('SET', "ragq_docker_t:worker:$host-4242", 'x', 'PX', 60000);
    $code = system("RAGQ_CONSUMER=hc-1 $hc") >> 8;
    if ($fails) { isnt $code, 0, "healthcheck worker $what" }
    else        { is $code, 0, "healthcheck worker $what: a fresh heartbeat of RAGQ_CONSUMER" }
    $code = system("RAGQ_HEALTH_PROC='$tmp/proc' $hc") >> 8;
    if ($fails) { isnt $code, 0, "healthcheck worker $what (found by its process)" }
    else        { is $code, 0, "healthcheck worker $what: the heartbeat of the ragq-worker process" }
    $beat->('DEL', 'ragq_docker_t:worker:hc-1', "ragq_docker_t:worker:$host-4242");
}

# TLS and Sentinel URLs, which bash cannot speak: healthy while a
# ragq-worker process runs (0.6.1 opened them as plain RESP and was
# unhealthy forever), not without one
{
    mkdir "$tmp/proc2"; mkdir "$tmp/proc2/$_" for 1, 77;
    open my $c1, '>', "$tmp/proc2/1/comm" or die; print $c1 "init\n"; close $c1;
    open my $c2, '>', "$tmp/proc2/77/comm" or die; print $c2 "ragq-worker\n"; close $c2;
    for my $url ("rediss://u:p\@127.0.0.1:1/0", "valkeys://127.0.0.1:1",
                 "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster") {
        my $hc = "RAGQ_VALKEY_URL='$url' RAGQ_CONSUMER=hc-1 '$health' worker 2>/dev/null";
        is system("RAGQ_HEALTH_PROC='$tmp/proc2' $hc") >> 8, 0,
          "healthcheck worker, $url: a ragq-worker runs";
        unlink "$tmp/proc2/77/comm";
        isnt system("RAGQ_HEALTH_PROC='$tmp/proc2' $hc") >> 8, 0,
          "healthcheck worker, $url: none runs";
        open $c2, '>', "$tmp/proc2/77/comm" or die; print $c2 "ragq-worker\n"; close $c2;
    }
}

# RAGQ_HEALTH_FILE: the file decides, whatever the URL (the process alone is
# not enough); its age is held against three RAGQ_HEARTBEAT, read as the
# worker reads durations
{
    my $hf = "$tmp/worker.health";
    mkdir "$tmp/proc3"; mkdir "$tmp/proc3/$_" for 1, 88;
    open my $c1, '>', "$tmp/proc3/1/comm" or die; print $c1 "init\n"; close $c1;
    open my $c2, '>', "$tmp/proc3/88/comm" or die; print $c2 "ragq-worker\n"; close $c2;
    mkdir "$tmp/proc-none";
    my $check = sub {
        my ($url, $proc, %env) = @_;
        my $e = join ' ', map { "$_='$env{$_}'" } sort keys %env;
        return system("RAGQ_HEALTH_FILE='$hf' RAGQ_VALKEY_URL='$url' RAGQ_HEALTH_PROC='$tmp/$proc' "
            . "RAGQ_PREFIX=ragq_docker_t RAGQ_CONSUMER=hc-1 $e '$health' worker 2>/dev/null") >> 8;
    };
    # what the check without the file would take as healthy: a fresh hash
    # in Valkey, a unix socket
    system("redis-cli -p $redis SET ragq_docker_t:worker:hc-1 x PX 60000 >/dev/null 2>&1");
    require IO::Socket::UNIX;
    my $sock = IO::Socket::UNIX->new(Local => "$tmp/v.sock", Listen => 1) or die "v.sock: $!";
    for my $url ("redis://127.0.0.1:$redis/0", "rediss://u:p\@127.0.0.1:1/0", "valkeys://127.0.0.1:1",
                 "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster", "unix://$tmp/v.sock") {
        system('touch', $hf);
        is $check->($url, 'proc-none'), 0, "healthcheck worker, health file, $url: fresh, healthy";
        system('touch', '-d', '1 min ago', $hf);
        isnt $check->($url, 'proc3'), 0,
            "healthcheck worker, health file, $url: a minute old, unhealthy (a ragq-worker runs)";
        unlink $hf;
        isnt $check->($url, 'proc3'), 0,
            "healthcheck worker, health file, $url: missing, unhealthy (a ragq-worker runs)";
    }
    system("redis-cli -p $redis DEL ragq_docker_t:worker:hc-1 >/dev/null 2>&1");
    my $url = 'rediss://127.0.0.1:1';
    system('touch', '-d', '1 min ago', $hf);
    is $check->($url, 'proc-none', RAGQ_HEARTBEAT => '30s'), 0, 'a minute old with RAGQ_HEARTBEAT=30s: healthy';
    is $check->($url, 'proc-none', RAGQ_HEARTBEAT => '25'), 0, '... =25 (seconds): healthy';
    is $check->($url, 'proc-none', RAGQ_HEARTBEAT => '1m'), 0, '... =1m: healthy';
    is $check->($url, 'proc3', RAGQ_HEARTBEAT => ''), 1, '... empty (5s): unhealthy';
    is $check->($url, 'proc3', RAGQ_HEARTBEAT => '19'), 1, '... =19: unhealthy';
    is $check->($url, 'proc3', RAGQ_HEARTBEAT => '19500ms'), 1, '... =19500ms: unhealthy';
    is $check->($url, 'proc-none', RAGQ_HEARTBEAT => '21000ms'), 0, '... =21000ms: healthy';
    is $check->($url, 'proc3', RAGQ_HEARTBEAT => '30x'), 1, '... =30x (the worker refuses it): unhealthy';
    system('touch', '-d', '1 sec ago', $hf);
    is $check->($url, 'proc3', RAGQ_HEARTBEAT => '250ms'), 1, 'a second old with RAGQ_HEARTBEAT=250ms: unhealthy';
    is $check->($url, 'proc-none', RAGQ_HEARTBEAT => '600ms'), 0, '... =600ms: healthy';
    unlink $hf;
}
like $body{worker} // '', qr{^ENV\b[^\n]*(?:\\\n[^\n]*)*\bRAGQ_HEALTH_FILE=/tmp/\S+}m,
    'worker: the image sets RAGQ_HEALTH_FILE (under /tmp, which its user can write)';

# and a real worker's heartbeat: healthy while it runs, not once it stopped
{
    require Ragq::Worker;
    my $w = Ragq::Worker->start(env => { RAGQ_PREFIX => 'ragq_docker_t',
        RAGQ_CONSUMER => 'hc-real', RAGQ_STORE_PATH => "$tmp/store" });
    ok $w->ready, 'a worker runs' or diag $w->log;
    my $hc = "RAGQ_VALKEY_URL=redis://127.0.0.1:$redis RAGQ_PREFIX=ragq_docker_t RAGQ_CONSUMER=hc-real '$health' worker";
    my $code = 1;
    for (1 .. 100) {
        last if ($code = system($hc) >> 8) == 0;
        select undef, undef, undef, 0.05;
    }
    is $code, 0, 'healthcheck worker: a running worker is healthy';
    is $w->stop, 0, 'the worker stops';
    isnt system($hc) >> 8, 0, 'healthcheck worker: a stopped worker is not';
}

# and a real worker's health file, with a URL bash cannot speak in the
# check's environment (the worker's own is plain, the suite's server)
{
    my $hf = "$tmp/real.health";
    my $w = Ragq::Worker->start(env => { RAGQ_PREFIX => 'ragq_docker_t',
        RAGQ_CONSUMER => 'hc-file', RAGQ_STORE_PATH => "$tmp/store",
        RAGQ_HEARTBEAT => '200ms', RAGQ_HEALTH_FILE => $hf });
    ok $w->ready, 'a worker with RAGQ_HEALTH_FILE runs' or diag $w->log;
    # the real /proc: the file decides, not the process (stopped, or others')
    my $hc = "RAGQ_VALKEY_URL='rediss+sentinel://127.0.0.1:1/mymaster' "
        . "RAGQ_HEARTBEAT=200ms RAGQ_HEALTH_FILE='$hf' '$health' worker";
    my $code = 1;
    for (1 .. 100) {
        last if ($code = system($hc) >> 8) == 0;
        select undef, undef, undef, 0.05;
    }
    is $code, 0, 'healthcheck worker, health file: a running worker is healthy';
    $w->signal('STOP');
    select undef, undef, undef, 0.9;
    isnt system($hc) >> 8, 0, 'healthcheck worker, health file: a stopped (SIGSTOP) worker is not';
    $w->signal('CONT');
    $code = 1;
    for (1 .. 100) {
        last if ($code = system($hc) >> 8) == 0;
        select undef, undef, undef, 0.05;
    }
    is $code, 0, 'healthcheck worker, health file: healthy again after SIGCONT';
    is $w->stop, 0, 'the worker stops';
    isnt system($hc) >> 8, 0, 'healthcheck worker, health file: a worker that exited is not, at once';
}

done_testing;
