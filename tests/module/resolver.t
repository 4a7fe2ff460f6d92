# With nginx's "resolver" configured, the host name of ragq_valkey is
# resolved through it on every reconnect (never with a blocking lookup in a
# worker): a test DNS server (Ragq::DnsStub) answers "localhost" with
# 127.0.0.1, where one redis-server listens; then with 127.0.0.2, where
# another listens on the same port, and the first one stops: the same nginx
# moves to the new address by itself.
use Test::Nginx::Socket;
use Ragq::ValkeyHA;
use Ragq::Valkey ();
use Ragq::DnsStub;
use Ragq::Chat;
use File::Temp qw(tempdir);

our $HA = Ragq::ValkeyHA->new;
our $A = $HA->server;
our $Port = $A->port;

# the second server: the same port on another loopback address
our $BDir = tempdir('ragq-resolver-XXXXXX', TMPDIR => 1, CLEANUP => 1);
system('redis-server', '--bind', '127.0.0.2', '--port', $Port, '--save', '',
    '--appendonly', 'no', '--protected-mode', 'no', '--daemonize', 'yes',
    '--dir', $BDir, '--pidfile', "$BDir/redis.pid", '--logfile', "$BDir/redis.log") == 0
  or die "redis-server on 127.0.0.2 failed";

# no shell between: the arguments may be a Lua script
sub b_cli {
    open(my $fh, '-|', 'redis-cli', '-h', '127.0.0.2', '-p', $Port, '--raw', @_)
      or die "redis-cli: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    chomp $out;
    return $out;
}

for (1 .. 100) {
    last if b_cli('PING') eq 'PONG';
    select(undef, undef, undef, 0.05);
}

END {
    if (open my $f, '<', "$BDir/redis.pid") {
        my $pid = <$f>;
        chomp $pid;
        kill 'KILL', $pid if $pid;
    }
}

our $DNS = Ragq::DnsStub->start('127.0.0.1');
$ENV{TEST_NGINX_DNS_PORT} = $DNS->port;
$ENV{TEST_NGINX_VALKEY_PORT} = $Port;

sub jobs_with {
    my ($cli, $query) = @_;
    return Ragq::Valkey::jobs_with_query('rs', $query,
        sub { my $o = $cli->(@_); return length $o ? split /\n/, $o : () });
}

no_shuffle();
no_long_string();

plan tests => 11;
run_tests();

__DATA__

=== TEST 1: "localhost" resolved by the resolver: the server on 127.0.0.1
--- http_config
resolver 127.0.0.1:$TEST_NGINX_DNS_PORT ipv6=off valid=1s;
ragq_valkey localhost:$TEST_NGINX_VALKEY_PORT;
--- config
location = /chat { ragq_prefix rs; ragq_enqueue; }
--- request
POST /chat?query=first
--- error_code: 202
--- no_error_log
[alert]



=== TEST 1b: the name now points at 127.0.0.2 and the first server stops: nginx moves by itself
--- init
Test::More::is(scalar(main::jobs_with(sub { $main::A->cli(@_) }, 'first')), 1,
    'the first job is on 127.0.0.1');
Test::More::cmp_ok($main::DNS->queries('localhost'), '>=', 1, 'nginx asked the resolver');
$main::DNS->answer('127.0.0.2');
$main::A->stop;
Test::More::ok(Ragq::Chat::until_202(30), '202 again, from the server on 127.0.0.2');
--- request
POST /chat?query=second
--- error_code: 202
--- no_error_log
[alert]



=== TEST 1c: ... the job is on the server at 127.0.0.2; the name was asked again on reconnect
--- init
Test::More::is(scalar(main::jobs_with(\&main::b_cli, 'second')), 1,
    'the second job is on 127.0.0.2');
Test::More::cmp_ok($main::DNS->queries('localhost'), '>=', 2, 'resolved again on reconnect');
--- request
POST /chat?query=third
--- error_code: 202
--- no_error_log
[alert]
