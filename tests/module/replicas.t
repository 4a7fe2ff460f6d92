# ragq_valkey_replicas N: POST /chat answers 202 only once WAIT confirms N
# replicas have the job. With a replica: 202, and the job is already on the
# replica. Without enough replicas: 503 valkey_not_replicated with
# Retry-After and a message that the job may exist (it does), and a retry
# with the same Idempotency-Key makes no second job. While a WAIT blocks the
# writes connection, /job-status (on the command connection) still answers
# within its own short ragq_valkey_timeout. The writes connection's own
# in-flight cap (16 MB unsent to a stalled Valkey) answers 503 overloaded, as
# the command connection's does (up to 0.6.3: 503 valkey_unavailable).
use Test::Nginx::Socket;
use Ragq::ValkeyHA;
use Ragq::Valkey ();
use Ragq::Chat ();
use IO::Socket::INET ();
use IO::Select ();

our $HA = Ragq::ValkeyHA->new;
our $Solo = $HA->server;
our $P = $HA->server;
our $R = $HA->server(replicaof => $P);
$ENV{TEST_NGINX_SOLO_PORT} = $Solo->port;
$ENV{TEST_NGINX_P_PORT} = $P->port;

our $Seeded = '000000000000000000000000000000aa';
$Solo->cli('HSET', "rp:job:$Seeded", 'status', 'queued', 'query', 'seeded',
    'tenant', '', 'created_at', '1700000000000', 'attempts', '0');

sub jobs_with {
    my ($s, $query) = @_;
    return Ragq::Valkey::jobs_with_query('rp', $query, sub { $s->cli_list(@_) });
}

# a POST /chat sent now, its answer read later (slow_answer)
sub slow_send {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ENV{TEST_NGINX_SERVER_PORT}, Proto => 'tcp') or die "connect: $!";
    syswrite $s, "POST /slow?query=slow HTTP/1.1\r\nHost: localhost\r\n"
      . "Connection: close\r\nContent-Length: 0\r\n\r\n";
    $main::Slow = $s;
    # until the server holds the WAIT (the writes connection is blocked)
    for (1 .. 200) {
        return 1 if $Solo->cli('CLIENT', 'LIST') =~ /cmd=wait/;
        select(undef, undef, undef, 0.02);
    }
    return 0;
}

sub slow_answer {
    my $sel = IO::Select->new($main::Slow);
    my $buf = '';
    while ($sel->can_read(10)) {
        my $n = sysread $main::Slow, my $chunk, 4096;
        last unless $n;
        $buf .= $chunk;
    }
    close $main::Slow;
    return $buf;
}

END { Ragq::Valkey::resume() if $main::Paused }

no_shuffle();
no_long_string();

plan tests => 28 + 11;
run_tests();

__DATA__

=== TEST 1: no replica, ragq_valkey_replicas 1: 503 valkey_not_replicated + Retry-After; the job may exist
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_SOLO_PORT;
--- config
location = /chat { ragq_prefix rp; ragq_valkey_replicas 1; ragq_enqueue; }
location = /slow { ragq_prefix rp; ragq_valkey_replicas 1; ragq_valkey_timeout 3s; ragq_enqueue; }
location = /job-status { ragq_prefix rp; ragq_valkey_timeout 300ms; ragq_status; }
--- request
POST /chat?query=alone
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like chomp
^\{"error":\{"code":"valkey_not_replicated","message":"the job was written but not confirmed by ragq_valkey_replicas replicas in time, so it may exist: retry with the same Idempotency-Key header to get this job instead of a second one"\}\}$
--- error_log eval
qr/ragq: valkey error: NOTREPLICATED 0 of 1 replicas acknowledged the write within \d+ ms/
--- no_error_log
[alert]



=== TEST 1b: ... it does exist; retried with the same Idempotency-Key: still one job
--- init
Test::More::is(scalar(main::jobs_with($main::Solo, 'alone')), 1, 'the job of TEST 1 exists');
--- request eval
["POST /chat?query=keyed", "POST /chat?query=keyed"]
--- more_headers
Idempotency-Key: rp-1
--- error_code eval
[503, 503]
--- response_body_like eval
[qr/"valkey_not_replicated"/, qr/"valkey_not_replicated"/]
--- no_error_log
[alert]



=== TEST 1c: ... one job for the key; and while a WAIT holds the writes connection, /job-status answers within 300 ms
--- init
Test::More::is(scalar(main::jobs_with($main::Solo, 'keyed')), 1, 'one job for two tries with one key');
Test::More::ok(main::slow_send(), 'a WAIT is blocking the writes connection');
--- request eval
"GET /job-status?job_id=$::Seeded"
--- error_code: 200
--- response_body_like chomp
"status":"queued","query":"seeded"
--- no_error_log
[alert]



=== TEST 1d: ... and the slow /chat got its answer from its WAIT: not replicated
--- init
Test::More::like(main::slow_answer(), qr{^HTTP/1\.1 503 .*"valkey_not_replicated"}s,
    'the /chat that held the WAIT: 503 valkey_not_replicated');
--- request
POST /chat?query=again
--- error_code: 503
--- no_error_log
[alert]



=== TEST 2: a replica, ragq_valkey_replicas 1: 202
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_P_PORT;
--- config
location = /chat { ragq_prefix rp; ragq_valkey_replicas 1; ragq_enqueue; }
location = /two { ragq_prefix rp; ragq_valkey_replicas 2; ragq_enqueue; }
--- request
POST /chat?query=replicated
--- error_code: 202
--- no_error_log
[error]
[alert]



=== TEST 2b: ... the job was on the replica when the 202 was sent; ragq_valkey_replicas 2 with one: 503
--- init
Test::More::is(scalar(main::jobs_with($main::R, 'replicated')), 1, 'the job is on the replica');
--- request
POST /two?query=twice
--- error_code: 503
--- response_body_like chomp
"valkey_not_replicated"
--- error_log eval
qr/NOTREPLICATED 1 of 2 replicas acknowledged/
--- no_error_log
[alert]



=== TEST 3: a stalled Valkey: the writes connection reaches its cap (16 MB unsent) while the command connection is idle: 503 overloaded + Retry-After, as on the command connection
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 60s;
--- config
client_body_buffer_size 128k;
location = /chat {
    ragq_prefix rp;
    ragq_max_query_length 64k;
    ragq_valkey_replicas 1;
    ragq_valkey_timeout 100ms;
    ragq_enqueue;
}
location = /job-status { ragq_prefix rp; ragq_valkey_timeout 30s; ragq_status; }
--- init
Ragq::Valkey::pause();
$main::Paused = 1;
my %seen = Ragq::Chat::flood(600, 32, 'POST', '/chat', '{"query":"' . ('q' x 60000) . '"}');
my $codes = join ', ', map { "$seen{$_} x $_" } sort keys %seen;
Test::More::ok($seen{'503 valkey_timeout'}, "the first ones waited for their timeout ($codes)");
Test::More::ok($seen{'503 overloaded'}, "then the writes connection was full: overloaded ($codes)");
Test::More::is(($seen{'503 valkey_timeout'} // 0) + ($seen{'503 overloaded'} // 0), 600,
    "none answered valkey_unavailable or anything else ($codes)");
--- request
POST /chat?query=one+more
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body
{"error":{"code":"overloaded","message":"too many requests are waiting for Valkey in this nginx worker; retry shortly"}}
--- no_error_log
[alert]
[crit]



=== TEST 3b: ... Valkey reads again: the command connection answers
--- init
Ragq::Valkey::resume();
$main::Paused = 0;
--- request
GET /job-status?job_id=0000000000000000000000000000c001
--- error_code: 404
--- no_error_log
[alert]
[crit]
