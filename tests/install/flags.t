# The build honours CFLAGS, CPPFLAGS and LDFLAGS from the environment, adds
# hardening by default (stack protector, _FORTIFY_SOURCE, -z relro -z now,
# PIE programs), and builds the module from a plain nginx source tree (no
# Debian conf_flags) given its configure arguments: a copy of nginx-dev's tree
# without conf_flags stands for one.  The module built so loads into
# /usr/sbin/nginx.  Builds into a scratch directory (about half a minute).
use strict;
use warnings;
use File::Temp qw(tempdir);
use File::Spec;
use Test::More;

my $root  = File::Spec->rel2abs($ENV{RAGQ_ROOT} || '.');
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $tmp   = tempdir(CLEANUP => 1);
my $plain = "$tmp/nginx-plain";
my $build = "$tmp/build";

sub slurp {
    open my $f, '<', $_[0] or return '';
    local $/;
    return scalar <$f>;
}

system('cp', '-r', '/usr/share/nginx/src', $plain) == 0 or die 'cp failed';
my $flags = slurp("$plain/conf_flags");
my ($args) = $flags =~ /^NGX_CONF_FLAGS=\(\s*(.*?)\s*\)\s*$/m;
ok $args && $args =~ /--with-compat/, 'nginx-dev\'s conf_flags names the configure arguments';
unlink "$plain/conf_flags" or die $!;

# Without configure arguments, a plain tree is refused with the way out.
my $out = `make -s -C '$root' BUILD='$build' NGX_SRC='$plain' module 2>&1`;
isnt $? >> 8, 0, 'a plain tree without NGX_CONFIGURE_ARGS is refused';
like $out, qr/NGX_CONFIGURE_ARGS/, 'saying to give NGX_CONFIGURE_ARGS' or diag $out;

# Flags from the environment, without any hardening of their own.  Markers:
# CPPFLAGS defines a macro (seen on the compile lines), LDFLAGS asks for a
# SysV hash table (DT_HASH in the dynamic section; Debian's default is GNU's).
local $ENV{CFLAGS}   = '-O2 -g';
local $ENV{CPPFLAGS} = '-DRAGQ_FLAGS_T_MARK=1';
local $ENV{LDFLAGS}  = '-Wl,--hash-style=both';
$out = `make -C '$root' BUILD='$build' NGX_SRC='$plain' NGX_CONFIGURE_ARGS='$args' all 2>&1`;
is $? >> 8, 0, 'make NGX_SRC=<plain tree> NGX_CONFIGURE_ARGS=... builds' or diag $out;

my $so = "$build/ngx_http_ragq_module.so";
my $module_log = slurp("$build/module-build.log");
like $module_log, qr/-DRAGQ_FLAGS_T_MARK=1/, 'the module is compiled with CPPFLAGS';
like $module_log, qr/-D_FORTIFY_SOURCE=2/, 'and _FORTIFY_SOURCE=2 added';
my @worker_cc = grep { /-c -o \S+\/config\.o/ } split /\n/, $out;
like $worker_cc[0] // '', qr/-DRAGQ_FLAGS_T_MARK=1/, 'the programs are compiled with CPPFLAGS';
for my $f ($so, "$build/ragq-worker", "$build/ragq-ingest") {
    like `readelf -dW '$f'`, qr/\(HASH\)/, ($f =~ s{.*/}{}r) . ' is linked with LDFLAGS';
}

my $check = "$root/tests/install/elf-hardening";
for my $f ("$build/ragq-worker", "$build/ragq-ingest") {
    my $said = `'$check' '$f' pie 2>&1`;
    is $? >> 8, 0, ($f =~ s{.*/}{}r) . ': PIE, relro, bind-now, stack protector, fortify'
        or diag $said;
}
my $said = `'$check' '$so' 2>&1`;
is $? >> 8, 0, 'the module: relro, bind-now, stack protector, fortify' or diag $said;

# The module of the plain tree loads into the nginx it was configured for.
open my $c, '>', "$tmp/load.conf" or die $!;
print $c "load_module $so;\nevents {}\n";
close $c;
$said = `'$nginx' -t -q -p '$tmp/' -c '$tmp/load.conf' -e stderr -g 'error_log stderr; pid $tmp/nginx.pid;' 2>&1`;
is $? >> 8, 0, 'nginx -t loads the module built from the plain tree' or diag $said;

# HARDENING=0 adds nothing (the sanitizer build relies on it).
$out = `make -n -C '$root' BUILD='$tmp/bare' HARDENING=0 '$tmp/bare/ragq-worker' 2>&1`;
unlike $out, qr/-fstack-protector|_FORTIFY_SOURCE|-z,now/, 'HARDENING=0 adds no hardening flags';

done_testing;
