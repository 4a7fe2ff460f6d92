# The module over TLS (ragq_valkey ... tls) to redis-servers that listen
# with TLS only, their certificates made for the test by Ragq::ValkeyHA:
# POST /chat, GET /job-status and a long-poll (the pub/sub connection over
# TLS too) with the certificate verified against the test CA; servers whose
# certificate does not verify (an untrusted CA, a wrong name) refused with a
# log line that says why and 503 to clients; ragq_valkey_ssl_name,
# ragq_valkey_ssl_verify off, a host name (SNI + name check), mutual TLS;
# configuration mistakes fail nginx -t.
use Test::Nginx::Socket;
use Ragq::ValkeyHA;
use Ragq::Valkey ();

our $HA = Ragq::ValkeyHA->new;
our $K = $HA->pki;
our $V = $HA->server(tls => 1, plain => 0);
our $Bad = $HA->server(tls => 1, plain => 0, cert => 'bad_server');
our $Wrong = $HA->server(tls => 1, plain => 0, cert => 'wrong_name');
our $Mutual = $HA->server(tls => 1, plain => 0, tls_auth_clients => 'yes');
our $Only13 = $HA->server(tls => 1, plain => 0, args => ['--tls-protocols', 'TLSv1.3']);
our $Chain = $HA->server(tls => 1, plain => 0, cert => 'chain_server');
our $OneCipher = $HA->server(tls => 1, plain => 0, args => ['--tls-protocols', 'TLSv1.2',
    '--tls-ciphers', 'ECDHE-ECDSA-AES256-GCM-SHA384']);

$ENV{TEST_NGINX_TLS_PORT} = $V->tls_port;
$ENV{TEST_NGINX_BAD_PORT} = $Bad->tls_port;
$ENV{TEST_NGINX_WRONG_PORT} = $Wrong->tls_port;
$ENV{TEST_NGINX_MUTUAL_PORT} = $Mutual->tls_port;
$ENV{TEST_NGINX_ONLY13_PORT} = $Only13->tls_port;
$ENV{TEST_NGINX_ONECIPHER_PORT} = $OneCipher->tls_port;
$ENV{TEST_NGINX_CHAIN_PORT} = $Chain->tls_port;
$ENV{TEST_NGINX_CA} = $K->{ca};
$ENV{TEST_NGINX_CLIENT_CERT} = $K->{client_cert};
$ENV{TEST_NGINX_CLIENT_KEY} = $K->{client_key};

# two jobs to read, written straight into the TLS server
our $Queued = '0123456789abcdef0123456789abcdef';
our $Waited = 'fedcba9876543210fedcba9876543210';
for my $id ($Queued, $Waited) {
    $V->cli('HSET', "tls:job:$id", 'status', 'queued', 'query', 'over TLS?',
        'tenant', '', 'created_at', '1700000000000', 'attempts', '0');
}

# Waits until nginx's pub/sub connection listens on tls:events, then
# finishes $Waited from a child process a moment later (the long-poll is
# answered by that event, or by its catch-up read if the event came first).
sub finish_later {
    for (1 .. 200) {
        my $n = (split /\n/, $V->cli('PUBSUB', 'NUMSUB', 'tls:events'))[1] // 0;
        last if $n > 0;
        select(undef, undef, undef, 0.05);
    }
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        select(undef, undef, undef, 0.3);
        $V->cli('HSET', "tls:job:$Waited", 'status', 'finished', 'result', 'yes');
        $V->cli('PUBLISH', 'tls:events', "$Waited finished");
        POSIX::_exit(0);
    }
    $main::Child = $pid;
}

no_shuffle();
no_long_string();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix tls; ragq_enqueue; }
location = /job-status { ragq_prefix tls; ragq_status; }
EOF
});

plan tests => 64;
run_tests();

waitpid($main::Child, 0) if $main::Child;

__DATA__

=== TEST 1: POST /chat over TLS, certificate verified: 202, and the job is on the TLS server
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_TLS_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
--- request
POST /chat?query=over+TLS
--- error_code: 202
--- response_body_like chomp
^\{"status":"queued","job_id":"[0-9a-f]{32}"
--- no_error_log
[error]
[alert]



=== TEST 2: ... the job hash and stream entry are on the TLS server; GET /job-status over TLS
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_TLS_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
--- init
my @jobs = Ragq::Valkey::jobs_with_query('tls', 'over TLS', sub { $main::V->cli_list(@_) });
Test::More::is(scalar(@jobs), 1, 'the job of TEST 1 is stored on the TLS server');
Test::More::is($main::V->cli('XLEN', 'tls:jobs'), 1, 'and queued');
--- request eval
"GET /job-status?job_id=$::Queued"
--- error_code: 200
--- response_body_like chomp
"status":"queued","query":"over TLS\?"
--- no_error_log
[error]
[alert]



=== TEST 3: a long-poll over TLS: the pub/sub connection hears the event
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_TLS_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
--- init
main::finish_later();
--- request eval
"GET /job-status?job_id=$::Waited&wait=10"
--- error_code: 200
--- response_body_like chomp
"status":"finished","query":"over TLS\?","result":"yes"
--- no_error_log
[error]
[alert]



=== TEST 4: a certificate from an untrusted CA: refused, 503 + Retry-After, and the log says why
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_BAD_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
--- request
POST /chat?query=x
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like chomp
"code":"valkey_unavailable"
--- error_log eval
qr/\[error\] .*ragq: valkey connect failed: TLS certificate of 127\.0\.0\.1:\d+ does not verify: \(\d+:unable to (get local issuer certificate|verify the first certificate)\)/
--- no_error_log
[alert]



=== TEST 5: a certificate for another name: refused, and the log names the name
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_WRONG_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
--- request
POST /chat?query=x
--- error_code: 503
--- response_body_like chomp
"code":"valkey_unavailable"
--- error_log eval
qr/ragq: valkey connect failed: TLS certificate of 127\.0\.0\.1:\d+ does not match "127\.0\.0\.1"/
--- no_error_log
[alert]



=== TEST 6: ragq_valkey_ssl_name: the same server, checked against the name its certificate has
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_WRONG_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
ragq_valkey_ssl_name wrong.invalid;
--- request
POST /chat?query=named
--- error_code: 202
--- no_error_log
[error]
[alert]



=== TEST 7: ragq_valkey_ssl_verify off (a test bed): the untrusted server is used
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_BAD_PORT tls;
ragq_valkey_ssl_verify off;
--- request
POST /chat?query=unverified
--- error_code: 202
--- no_error_log
[error]
[alert]



=== TEST 8: a host name: SNI and the certificate's DNS name (localhost)
--- http_config
ragq_valkey localhost:$TEST_NGINX_TLS_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
--- request
POST /chat?query=by+name
--- error_code: 202
--- no_error_log
[error]
[alert]



=== TEST 9: a server that wants a client certificate, none configured: refused, 503
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_MUTUAL_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
--- request
POST /chat?query=x
--- error_code: 503
--- response_body_like chomp
"code":"valkey_unavailable"
--- error_log eval
qr/ragq: valkey connect failed: ((reading from|writing to|TLS handshake with) 127\.0\.0\.1:\d+ failed|127\.0\.0\.1:\d+ closed the connection)/
--- no_error_log
[alert]



=== TEST 10: mutual TLS: with ragq_valkey_ssl_certificate/_key, served
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_MUTUAL_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
ragq_valkey_ssl_certificate $TEST_NGINX_CLIENT_CERT;
ragq_valkey_ssl_certificate_key $TEST_NGINX_CLIENT_KEY;
--- request
POST /chat?query=mutual
--- error_code: 202
--- no_error_log
[error]
[alert]



=== TEST 11: ragq_valkey_ssl_protocols TLSv1.2 against a server that takes only TLSv1.3: refused, 503
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_ONLY13_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
ragq_valkey_ssl_protocols TLSv1.2;
--- request
POST /chat?query=x
--- error_code: 503
--- response_body_like chomp
"code":"valkey_unavailable"
--- error_log eval
qr/\[error\] .*ragq: valkey connect failed: .*127\.0\.0\.1:\d+/
--- no_error_log
[alert]



=== TEST 12: ... and with ragq_valkey_ssl_protocols TLSv1.3, served
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_ONLY13_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
ragq_valkey_ssl_protocols TLSv1.3;
--- request
POST /chat?query=tls13
--- error_code: 202
--- no_error_log
[error]
[alert]



=== TEST 13: ragq_valkey_ssl_ciphers without the one cipher a TLSv1.2 server takes: refused, 503
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_ONECIPHER_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
ragq_valkey_ssl_protocols TLSv1.2;
ragq_valkey_ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;
--- request
POST /chat?query=x
--- error_code: 503
--- response_body_like chomp
"code":"valkey_unavailable"
--- error_log eval
qr/\[error\] .*ragq: valkey connect failed: .*127\.0\.0\.1:\d+/
--- no_error_log
[alert]



=== TEST 14: ... and with that cipher, served
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_ONECIPHER_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
ragq_valkey_ssl_protocols TLSv1.2;
ragq_valkey_ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384;
--- request
POST /chat?query=one+cipher
--- error_code: 202
--- no_error_log
[error]
[alert]



=== TEST 15: a certificate signed by an intermediate CA (sent with it): served at the default depth
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_CHAIN_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
--- request
POST /chat?query=chain
--- error_code: 202
--- no_error_log
[error]
[alert]



=== TEST 16: ... refused with ragq_valkey_ssl_verify_depth 0 (no intermediate allowed)
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_CHAIN_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
ragq_valkey_ssl_verify_depth 0;
--- request
POST /chat?query=x
--- error_code: 503
--- response_body_like chomp
"code":"valkey_unavailable"
--- error_log eval
qr/\[error\] .*ragq: valkey connect failed: TLS certificate of 127\.0\.0\.1:\d+ does not verify: \((20:unable to get local issuer certificate|22:certificate chain too long)\)/
--- no_error_log
[alert]



=== TEST 17: tls without a trusted certificate (and verification on) fails the configuration
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_TLS_PORT tls;
--- must_die
--- error_log
"ragq_valkey ... tls" verifies the server's certificate: set "ragq_valkey_ssl_trusted_certificate"



=== TEST 18: a client certificate without its key fails the configuration
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_TLS_PORT tls;
ragq_valkey_ssl_trusted_certificate $TEST_NGINX_CA;
ragq_valkey_ssl_certificate $TEST_NGINX_CLIENT_CERT;
--- must_die
--- error_log
no "ragq_valkey_ssl_certificate_key" for "ragq_valkey_ssl_certificate"
