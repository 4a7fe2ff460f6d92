# make install into a DESTDIR lays out what a Debian host needs, and the
# installed module, loaded by nginx through the installed snippet (linked into
# modules-enabled as dh_nginx's postinst does), passes nginx -t and serves
# POST /chat; the unit waits for READY=1, has a watchdog and passes
# systemd-analyze verify, and so does an instance of the template unit
# ragq-worker@.service, which differs from it in its own lines only.  Also
# PREFIX, a non-Debian NGX_MODULES_DIR, an edited environment file kept, and
# make uninstall.
use strict;
use warnings;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use File::Spec;
use Test::More;

my $root  = File::Spec->rel2abs($ENV{RAGQ_ROOT} || '.');
my $build = File::Spec->rel2abs($ENV{RAGQ_BUILD} || "$root/build");
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $redis = $ENV{TEST_NGINX_REDIS_PORT} || 6379;
my $tmp   = tempdir(CLEANUP => 1);

chomp(my $version = slurp("$root/VERSION"));

sub slurp {
    open my $f, '<', $_[0] or return undef;
    local $/;
    return scalar <$f>;
}

sub spew {
    my ($path, $text) = @_;
    open my $f, '>', $path or die "$path: $!";
    print $f $text;
    close $f;
}

# make install-files: what `make install` does once `all` is built (the
# build directory under test is $RAGQ_BUILD, possibly built with other flags).
sub make_install {
    my ($target, @vars) = @_;
    my $out = `make -s -C '$root' $target BUILD='$build' @vars 2>&1`;
    return ($? >> 8, $out);
}

sub mode { my @st = stat $_[0]; return @st ? sprintf('%04o', $st[2] & 07777) : 'missing' }

sub stop_nginx {
    my $pid = slurp("$tmp/nginx.pid") or return;
    chomp $pid;
    kill 'QUIT', $pid;
    for (1 .. 100) { last unless kill 0, $pid; select undef, undef, undef, 0.05 }
    unlink "$tmp/nginx.pid";
}
END { stop_nginx() }    # also when a test above died

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 1) or die "no port: $!";
    return $s->sockport;
}

# --- PREFIX=/usr, as the .deb does -------------------------------------------
my $d = "$tmp/usr";
my ($rc, $out) = make_install('install-files', "DESTDIR='$d'", 'PREFIX=/usr');
is $rc, 0, 'make install DESTDIR=... PREFIX=/usr' or diag $out;

my %want = (
    '/usr/lib/nginx/modules/ngx_http_ragq_module.so'          => '0644',
    '/usr/share/nginx/modules-available/mod-http-ragq.conf' => '0644',
    '/usr/bin/ragq-worker'                                  => '0755',
    '/usr/bin/ragq-ingest'                                  => '0755',
    '/usr/share/man/man1/ragq-worker.1'                     => '0644',
    '/usr/share/man/man1/ragq-ingest.1'                     => '0644',
    '/usr/lib/systemd/system/ragq-worker.service'           => '0644',
    '/usr/lib/systemd/system/ragq-worker@.service'          => '0644',
    '/etc/default/ragq-worker'                              => '0644',
);
for my $f (sort keys %want) {
    is mode("$d$f"), $want{$f}, "installed $f ($want{$f})";
}
ok !-e "$d/etc/nginx/modules-enabled", 'make install enables nothing in /etc/nginx/modules-enabled';

is slurp("$d/usr/share/nginx/modules-available/mod-http-ragq.conf"),
    "load_module modules/ngx_http_ragq_module.so;\n",
    'the snippet loads the module as Debian\'s snippets do';

my $unit = slurp("$d/usr/lib/systemd/system/ragq-worker.service") // '';
like $unit, qr{^ExecStart=/usr/bin/ragq-worker$}m, 'the unit runs the installed worker';
like $unit, qr{^EnvironmentFile=/etc/default/ragq-worker$}m, 'the unit reads /etc/default/ragq-worker';
is slurp("$d/etc/default/ragq-worker"), slurp("$root/conf/ragq-worker.env"),
    'the environment file is conf/ragq-worker.env';
# The worker says READY=1 and pings the watchdog itself (worker/sdnotify.c).
like $unit, qr{^Type=notify$}m, 'the unit waits for the worker\'s READY=1 (Type=notify)';
like $unit, qr{^NotifyAccess=main$}m, 'from the main process only';
like $unit, qr{^WatchdogSec=30s$}m, 'and restarts a worker whose loop stopped turning (WatchdogSec)';
like $unit, qr{^RestrictAddressFamilies=.*\bAF_UNIX\b}m, 'the sandbox lets it reach NOTIFY_SOCKET';

# systemd-analyze verify (scripts/install-deps installs systemd): the
# installed unit with its paths inside DESTDIR (man pages are not looked up).
{
    my $sa = (grep { -x "$_/systemd-analyze" } split /:/, "$ENV{PATH}:/usr/bin:/bin")[0];
    ok $sa, 'systemd-analyze is there' or diag 'scripts/install-deps installs systemd';
    (my $u = $unit) =~ s{^(ExecStart=|EnvironmentFile=)(/\S+)}{$1$d$2}mg;
    mkdir "$tmp/unit";
    spew("$tmp/unit/ragq-worker.service", $u);
    my $said = $sa ? `'$sa/systemd-analyze' verify --man=no '$tmp/unit/ragq-worker.service' 2>&1` : 'none';
    # it exits 0 after "Failed to parse ..., ignoring": nothing said is the test
    ok $sa && $? == 0 && $said eq '', 'systemd-analyze verify accepts the installed unit, silently'
        or diag $said;
}

# The template ragq-worker@.service (several workers on one host) is the unit
# with only the template's own lines changed: same sandbox, Type=notify,
# watchdog, timeouts.
my $tmpl = slurp("$d/usr/lib/systemd/system/ragq-worker\@.service") // '';
like $tmpl, qr{^EnvironmentFile=/etc/default/ragq-worker\nEnvironmentFile=-/etc/default/ragq-worker-%i$}m,
    'the template reads /etc/default/ragq-worker, then the instance\'s own file if any';
like $tmpl, qr{^ExecStart=/usr/bin/ragq-worker --consumer=%H\@%i$}m,
    'each instance is a consumer of its own, <hostname>@NAME';
{
    my $body = sub {    # the settings, without the header comment
        my ($text) = @_;
        $text =~ s/\A(?:#.*\n|\n)*//;
        return $text;
    };
    (my $want = $body->($unit)) =~ s/^(Description=ragq worker):/$1 %i:/m;
    $want =~ s{^(EnvironmentFile=/etc/default/ragq-worker\n)}{$1EnvironmentFile=-/etc/default/ragq-worker-%i\n}m;
    $want =~ s{^(ExecStart=/usr/bin/ragq-worker)$}{$1 --consumer=%H\@%i}m;
    is $body->($tmpl), $want, 'the template differs from ragq-worker.service in these lines only';
    like $tmpl, qr{\A# systemd template unit}, 'the template has a header comment of its own';
    like $unit, qr{^#.*ragq-worker\@\.service.*\n(?:#.*\n)*#\s+systemctl enable --now ragq-worker\@1}m,
        'the unit\'s comment says how to run several workers';
}

# systemd-analyze verify of an instance of the template (the paths inside DESTDIR).
{
    my $sa = (grep { -x "$_/systemd-analyze" } split /:/, "$ENV{PATH}:/usr/bin:/bin")[0];
    (my $u = $tmpl) =~ s{^(ExecStart=|EnvironmentFile=-?)(/\S+)}{$1$d$2}mg;
    mkdir "$tmp/unit";
    spew("$tmp/unit/ragq-worker\@.service", $u);
    my $said = $sa ? `'$sa/systemd-analyze' verify --man=no '$tmp/unit/ragq-worker\@2.service' 2>&1` : 'none';
    ok $sa && $? == 0 && $said eq '' && $u =~ m{^ExecStart=$d/usr/bin/}m,
        'systemd-analyze verify accepts an instance of the installed template, silently'
        or diag $said;
}

chomp(my $said = `'$d/usr/bin/ragq-worker' --version 2>&1`);
is $said, "ragq-worker $version", 'the installed ragq-worker --version says VERSION';

# nginx as Debian lays it out: prefix /usr/share/nginx with the link
# modules -> /usr/lib/nginx/modules (nginx-common), and modules-enabled
# holding the link dh_nginx's postinst makes.
my $ngx = "$d/usr/share/nginx";
symlink "$d/usr/lib/nginx/modules", "$ngx/modules" or die $!;
mkdir "$d/etc/nginx";
mkdir "$d/etc/nginx/modules-enabled";
symlink "$ngx/modules-available/mod-http-ragq.conf",
    "$d/etc/nginx/modules-enabled/50-mod-http-ragq.conf" or die $!;
my $port = free_port();
spew("$d/etc/nginx/nginx.conf", <<"CONF");
include $d/etc/nginx/modules-enabled/*.conf;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    ragq_valkey 127.0.0.1:$redis;
    ragq_prefix ragq_install_t;
    server {
        listen 127.0.0.1:$port;
        location = /chat       { ragq_enqueue; }
        location = /job-status { ragq_status; }
    }
}
CONF
my @nginx = ($nginx, '-p', "$ngx/", '-c', "$d/etc/nginx/nginx.conf", '-e', "$tmp/error.log");
$said = `@nginx -t 2>&1`;
is $? >> 8, 0, 'nginx -t loads the installed module through the installed snippet' or diag $said;

$said = `@nginx 2>&1`;
is $? >> 8, 0, 'nginx starts with it' or diag $said;
my $reply = `curl -sS -m 10 -X POST 'http://127.0.0.1:$port/chat?query=installed' -w ' %{http_code}' 2>&1`;
like $reply, qr/"status":"queued".* 202$/s, 'the installed module queues POST /chat' or diag $reply;
stop_nginx();
system("redis-cli -p $redis --scan --pattern 'ragq_install_t*' | xargs -r redis-cli -p $redis del >/dev/null 2>&1");

# --- PREFIX=/usr/local, an edited environment file, another modules dir --------
my $l = "$tmp/local";
mkdir $l;
mkdir "$l/etc";
mkdir "$l/etc/default";
spew("$l/etc/default/ragq-worker", "RAGQ_VALKEY_URL=redis://edited:6379\n");
($rc, $out) = make_install('install-files', "DESTDIR='$l'", 'PREFIX=/usr/local',
    'NGX_MODULES_DIR=/opt/nginx/modules');
is $rc, 0, 'make install PREFIX=/usr/local NGX_MODULES_DIR=/opt/nginx/modules' or diag $out;
ok -x "$l/usr/local/bin/ragq-worker", 'programs in PREFIX/bin';
like slurp("$l/usr/local/lib/systemd/system/ragq-worker.service") // '',
    qr{^ExecStart=/usr/local/bin/ragq-worker$}m, 'the unit in PREFIX/lib/systemd/system runs PREFIX/bin/ragq-worker';
like slurp("$l/usr/local/lib/systemd/system/ragq-worker\@.service") // '',
    qr{^ExecStart=/usr/local/bin/ragq-worker --consumer=%H\@%i$}m, 'and so does the template';
is slurp("$l/etc/default/ragq-worker"), "RAGQ_VALKEY_URL=redis://edited:6379\n",
    'an existing /etc/default/ragq-worker is kept';
like $out, qr{kept .*/etc/default/ragq-worker}, 'and make install says so';
ok -f "$l/opt/nginx/modules/ngx_http_ragq_module.so", 'the module in NGX_MODULES_DIR';
is slurp("$l/usr/share/nginx/modules-available/mod-http-ragq.conf"),
    "load_module /opt/nginx/modules/ngx_http_ragq_module.so;\n",
    'a snippet for another modules directory names it in full';

# --- make uninstall --------------------------------------------------------------
($rc, $out) = make_install('uninstall', "DESTDIR='$d'", 'PREFIX=/usr');
is $rc, 0, 'make uninstall' or diag $out;
my @left = grep { -e "$d$_" } sort keys %want;
is_deeply \@left, ['/etc/default/ragq-worker'],
    'make uninstall removes everything but the environment file';

done_testing;
