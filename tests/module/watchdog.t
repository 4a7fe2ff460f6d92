# The command connection's watchdog counts bytes read as progress: a reply
# of 1.5 MB that streams in for seconds through a slow proxy
# (Ragq::SlowProxy, 400 kB/s) is not a dead connection, though it takes
# many times the http{}-level ragq_valkey_timeout (500 ms); the request's
# own deadline is its location's ragq_valkey_timeout. A server that falls
# silent with replies pending is still taken for dead after 500 ms.
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::SlowProxy;
use IO::Socket::INET ();

our $Proxy = Ragq::SlowProxy->start(to => $ENV{TEST_NGINX_REDIS_PORT}, rate => 8192);
$ENV{TEST_NGINX_PROXY_PORT} = $Proxy->port;

our $Id = '00000000000000000000000000000bb1';
our $Size = 1_500_000;

# HSET with a value too long for redis-cli's command line, in RESP
sub seed {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ENV{TEST_NGINX_REDIS_PORT}, Proto => 'tcp') or die "connect: $!";
    my @a = ('HSET', "wd:job:$Id", 'status', 'finished', 'query', 'big',
        'tenant', '', 'result', 'x' x $Size);
    my $cmd = '*' . scalar(@a) . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @a);
    print $s $cmd;
    my $reply = <$s>;
    die "HSET: $reply" unless $reply =~ /^:/;
    close $s;
}

seed();

no_shuffle();
no_long_string();

plan tests => 8;
run_tests();

__DATA__

=== TEST 1: a 1.5 MB reply streaming in for seconds: answered, no reconnect
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_PROXY_PORT;
ragq_valkey_timeout 500ms;
--- config
location = /job-status { ragq_prefix wd; ragq_valkey_timeout 60s; ragq_status; }
--- request eval
"GET /job-status?job_id=$::Id"
--- timeout: 60
--- error_code: 200
--- response_body_like eval
qr/"status":"finished","query":"big","result":"(?:x{50000}){30}"/
--- no_error_log
sent no reply
[alert]



=== TEST 2: the same server silent with replies pending (the job-status read: HGETALL and XRANGE): the watchdog reconnects after 500 ms, 503 valkey_timeout (Valkey was silent, not unreachable)
--- init
$main::Proxy->pause;
--- request eval
"GET /job-status?job_id=$::Id"
--- error_code: 503
--- response_body_like chomp
"code":"valkey_timeout"
--- error_log eval
qr/ragq: valkey sent no reply for \d+ ms with 2 commands pending, reconnecting/
--- no_error_log
[alert]
