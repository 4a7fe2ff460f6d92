# conf/nginx.conf, the example users copy, must be accepted by nginx with the
# module as built (only its paths are moved into a scratch directory).
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More tests => 2;

my $root  = $ENV{RAGQ_ROOT}  || '.';
my $build = $ENV{RAGQ_BUILD} || "$root/build";
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $dir   = tempdir(CLEANUP => 1);

open my $in, '<', "$root/conf/nginx.conf" or die "conf/nginx.conf: $!";
my $conf = do { local $/; <$in> };
close $in;

like $conf, qr/^\s*ragq_valkey\s.*^\s*ragq_enqueue;.*^\s*ragq_status;/ms,
    'the example uses ragq_valkey, ragq_enqueue and ragq_status';

$conf =~ s{load_module modules/ngx_http_ragq_module\.so;}
          {load_module $build/ngx_http_ragq_module.so;};
$conf =~ s{/run/nginx\.pid}{$dir/nginx.pid}g;
$conf =~ s{/var/log/nginx/}{$dir/}g;

open my $out, '>', "$dir/nginx.conf" or die $!;
print $out $conf;
close $out;

my $said = `'$nginx' -t -p '$dir/' -c '$dir/nginx.conf' -e '$dir/error.log' 2>&1`;
is $? >> 8, 0, 'nginx -t accepts conf/nginx.conf' or diag $said;
