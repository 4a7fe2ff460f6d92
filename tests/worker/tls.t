# ragq-worker over TLS (rediss://) to a redis-server with --tls-port only and
# a CA made for the test (Ragq::ValkeyHA): a job answered end to end through
# the stand-ins, by IP (checked against the certificate's IP SAN) and by
# name (resolved off the loop, SNI + host name check); servers whose
# certificate does not verify (untrusted CA, wrong name) refused at start
# with exit 1 and a line that says why; RAGQ_VALKEY_TLS_SERVER_NAME;
# RAGQ_VALKEY_TLS_VERIFY=0 for labs; mutual TLS (no client certificate, an
# untrusted one: refused; ours: served); bad TLS settings: exit 2.
use strict;
use warnings;
use Test::More;
use Ragq::Standin;
use Ragq::Worker;
use Ragq::ValkeyHA;

my $P = "wt$$";
my $ha = Ragq::ValkeyHA->new;
my $k = $ha->pki;
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
my %env = (RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
           QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_CONNECT_TIMEOUT => '1s');

# One job through worker $w on server $v; the job hash.
sub one_job {
    my ($v, $what) = @_;
    local $Ragq::Worker::VALKEY = $v;
    my $id = Ragq::Worker::enqueue(prefix => $P);
    is(Ragq::Worker::wait_final($P, [$id], 20), 1, "$what: the job reached a final state");
    my $j = Ragq::Worker::job($P, $id);
    is($j->{status}, 'finished', "$what: finished") or diag explain $j;
    is($j->{result}, 'According to [1] (f.md): The capital of France is Paris.',
       "$what: the answer");
    return $j;
}

# ---- verification on, by IP and by name --------------------------------
my $v = $ha->server(tls => 1, plain => 0);
my $w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $v->url, RAGQ_VALKEY_CA_FILE => $k->{ca} });
ok($w->ready, 'worker ready over TLS (rediss://127.0.0.1)') or diag $w->log;
one_job($v, 'TLS by IP');
like($v->cli('CLIENT', 'LIST'), qr/cmd=xreadgroup/, 'the worker is a client of the TLS port');
is($w->stop, 0, 'exit 0');

$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => 'rediss://localhost:' . $v->tls_port,
                                  RAGQ_VALKEY_CA_FILE => $k->{ca} });
ok($w->ready, 'worker ready over TLS (rediss://localhost: resolved, SNI, host name checked)')
  or diag $w->log;
one_job($v, 'TLS by name');
$w->stop;

# ---- certificates that do not verify -----------------------------------
my $bad = $ha->server(tls => 1, plain => 0, cert => 'bad_server');
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $bad->url, RAGQ_VALKEY_CA_FILE => $k->{ca} });
is($w->wait_exit(15) >> 8, 1, 'untrusted certificate: exit 1 at start');
like($w->log, qr/Valkey at 127\.0\.0\.1:\d+ \(RAGQ_VALKEY_URL\) is unreachable: 127\.0\.0\.1:\d+: TLS handshake: certificate verify failed: (unable to get local issuer certificate|self-signed)/,
     'says the certificate did not verify, and why') or diag $w->log;
unlike($w->log, qr/info: ready/, 'never said ready');

my $wrong = $ha->server(tls => 1, plain => 0, cert => 'wrong_name');
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => 'rediss://localhost:' . $wrong->tls_port,
                                  RAGQ_VALKEY_CA_FILE => $k->{ca} });
is($w->wait_exit(15) >> 8, 1, 'certificate for another name: exit 1');
like($w->log, qr/certificate verify failed: hostname mismatch/, 'says the name does not match')
  or diag $w->log;
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $wrong->url, RAGQ_VALKEY_CA_FILE => $k->{ca} });
is($w->wait_exit(15) >> 8, 1, 'by IP, a certificate without that IP: exit 1');
like($w->log, qr/certificate verify failed: IP address mismatch/, 'says the IP does not match')
  or diag $w->log;

$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $wrong->url, RAGQ_VALKEY_CA_FILE => $k->{ca},
                                  RAGQ_VALKEY_TLS_SERVER_NAME => 'wrong.invalid' });
ok($w->ready, 'RAGQ_VALKEY_TLS_SERVER_NAME: the certificate is checked for that name') or diag $w->log;
one_job($wrong, 'TLS server name');
$w->stop;

$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $bad->url, RAGQ_VALKEY_TLS_VERIFY => 0 });
ok($w->ready, 'RAGQ_VALKEY_TLS_VERIFY=0 accepts the untrusted certificate (labs)') or diag $w->log;
one_job($bad, 'TLS without verification');
$w->stop;

# The system's CAs by default: our test CA is not among them.
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $v->url });
is($w->wait_exit(15) >> 8, 1, 'no RAGQ_VALKEY_CA_FILE: the system CAs do not know the test CA');
like($w->log, qr/certificate verify failed/, 'verification is on by default');

# ---- mutual TLS ----------------------------------------------------------
my $m = $ha->server(tls => 1, plain => 0, tls_auth_clients => 'yes');
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $m->url, RAGQ_VALKEY_CA_FILE => $k->{ca} });
is($w->wait_exit(15) >> 8, 1, 'mutual TLS without a client certificate: exit 1');
like($w->log, qr/is unreachable: .*(TLS|closed|reset)/i, 'says the TLS session failed') or diag $w->log;
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $m->url, RAGQ_VALKEY_CA_FILE => $k->{ca},
                                  RAGQ_VALKEY_CERT_FILE => $k->{bad_client_cert},
                                  RAGQ_VALKEY_KEY_FILE => $k->{bad_client_key} });
is($w->wait_exit(15) >> 8, 1, 'a client certificate the server does not trust: exit 1');
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $m->url, RAGQ_VALKEY_CA_FILE => $k->{ca},
                                  RAGQ_VALKEY_CERT_FILE => $k->{client_cert},
                                  RAGQ_VALKEY_KEY_FILE => $k->{client_key} });
ok($w->ready, 'mutual TLS with our client certificate') or diag $w->log;
one_job($m, 'mutual TLS');
is($w->stop, 0, 'exit 0');

# ---- bad settings: exit 2 before anything starts ------------------------
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $v->url, RAGQ_VALKEY_CA_FILE => '/nonexistent/ca.pem' });
is($w->wait_exit(10) >> 8, 2, 'unreadable CA file: exit 2');
like($w->log, qr{RAGQ_VALKEY_CA_FILE /nonexistent/ca\.pem: cannot load}, 'names the file');
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => $v->url, RAGQ_VALKEY_CA_FILE => $k->{ca},
                                  RAGQ_VALKEY_CERT_FILE => $k->{client_cert},
                                  RAGQ_VALKEY_KEY_FILE => $k->{server_key} });
is($w->wait_exit(10) >> 8, 2, 'a key that is not the certificate\'s: exit 2');
like($w->log, qr/RAGQ_VALKEY_KEY_FILE does not match RAGQ_VALKEY_CERT_FILE/, 'says so');
$w = Ragq::Worker->start(env => { %env, RAGQ_VALKEY_URL => 'redis://127.0.0.1:' . $v->tls_port,
                                  RAGQ_VALKEY_CA_FILE => $k->{ca} });
is($w->wait_exit(10) >> 8, 2, 'TLS settings with a plain redis:// URL: exit 2');
like($w->log, qr/RAGQ_VALKEY_CA_FILE is set but RAGQ_VALKEY_URL does not use TLS/, 'says so');

done_testing();
