# POST /job-cancel?job_id=ID (ragq_cancel, DEVELOPERS.md "Cancel"): a queued
# job (only its queue entry) and a started one (its hash) become canceled
# in one script: 200 with the job JSON, the hash written (from the entry
# when there is none; the entry stays for the claim to ack), a TTL on
# P:out:ID and on the hash unless its entry waits (queued, or running: the
# worker that acks the entry gives it one), "ID canceled" on P:events and "ID" on P:cancel;
# then /job-status says canceled, a second cancel is 409 already_final;
# unknown, other tenant 404; bad or missing id 400; GET 405 with Allow; a
# long-poll waiter is woken with canceled; ragq_metrics counts them as
# endpoint="cancel".
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Chat;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

no_shuffle();
no_long_string();

our @Kids;

# Fixed ids (a request line is made before its block's init runs): a job
# that is only its queue entry (entry id 1700000000000-7 + r), a finished,
# a started, another tenant's and a waited-on job (hashes).
our $R = '0123456789abcdef';
our $Id = sprintf('%012x%04x%s', 1700000000000, 7, $R);
our $Fin = '0000000000000000000000000000c003';
our $Run = '0000000000000000000000000000c004';
our $Alice = '0000000000000000000000000000c006';
our $Wait = '0000000000000000000000000000c009';

# One request of our own, on a fresh connection: (status, body, headers).
sub http { Ragq::Chat::http(@_) }

sub chat_id {
    my ($body) = @_;
    return $body =~ /"job_id":"([0-9a-f]{32})"/ ? $1 : '';
}

sub wait_for { Ragq::Chat::wait_for(@_) }

# A raw subscriber on the suite's redis-server: the next message's payload.
sub subscriber {
    my ($channel) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => Ragq::Valkey::port(), Timeout => 10) or die "connect: $!";
    print $s "*2\r\n\$9\r\nSUBSCRIBE\r\n\$" . length($channel) . "\r\n$channel\r\n";
    my $ack = '';
    while ($ack !~ /:1\r\n$/) {
        defined(sysread($s, $ack, 1, length $ack)) or die "subscribe: $!";
    }
    return $s;
}

sub message {
    my ($s) = @_;
    my $buf = '';
    while ($buf !~ /^\*3\r\n\$7\r\nmessage\r\n\$\d+\r\n[^\r]*\r\n\$(\d+)\r\n/
           || length($buf) < length($&) + $1 + 2)
    {
        my $n = sysread($s, $buf, 4096, length $buf);
        die "subscriber: $!" unless $n;
    }
    $buf =~ /^\*3\r\n\$7\r\nmessage\r\n\$\d+\r\n[^\r]*\r\n\$(\d+)\r\n/;
    return substr($buf, length($&), $1);
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('no_error_log', "[error]\n[alert]\n")
      unless defined $block->no_error_log;
    $block->set_value('http_config',
        "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix cn; ragq_enqueue; }
location = /job-status { ragq_prefix cn; ragq_status; }
location = /job-cancel { ragq_prefix cn; ragq_job_ttl 60s; ragq_cancel; }
location = /t/chat { ragq_prefix cn; ragq_tenant $http_x_tenant; ragq_enqueue; }
location = /t/job-cancel { ragq_prefix cn; ragq_tenant $http_x_tenant; ragq_cancel; }
location = /metrics { ragq_prefix cn; ragq_metrics; }
EOF
});

plan tests => 74;
run_tests();
waitpid($_, 0) for @Kids;

__DATA__

=== TEST 1: cancel of a queued job (only its entry): 200 with the canceled job; the hash written from the entry, the entry kept, TTLs, P:events and P:cancel told
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'cn:*'), 'x');
Ragq::Valkey::cmd('XADD', 'cn:jobs', '1700000000000-7', r => $main::R,
    query => 'cancel me', top_k => 5, collection => '', tenant => '',
    created_at => '1700000000000');
my ($code, $body) = main::http('GET', "/job-status?job_id=$main::Id");
Test::More::like($body, qr/"status":"queued"/, 'queued (its entry)');
Test::More::is(Ragq::Valkey::cmd('EXISTS', "cn:job:$main::Id"), '0', 'no hash yet');
Ragq::Valkey::cmd('XADD', "cn:out:$main::Id", '0-1', t => 'x');
my $events = main::subscriber('cn:events');
my $cancel = main::subscriber('cn:cancel');
($code, $body) = main::http('POST', "/job-cancel?job_id=$main::Id");
Test::More::is($code, 200, 'canceled: 200');
Test::More::like($body, qr/^\{"job_id":"$main::Id","status":"canceled","query":"cancel me","result":null,"sources":null,"error":\{"code":"canceled","message":"[^"]+"\},"created_at":\d+,"started_at":null,"ended_at":\d+,"attempts":0,"usage":null,"callback":null\}\n\z/, 'the job JSON');
Test::More::is(main::message($events), "$main::Id canceled", 'P:events: ID canceled');
Test::More::is(main::message($cancel), $main::Id, 'P:cancel: ID');
my %h = Ragq::Valkey::cmd_list('HGETALL', "cn:job:$main::Id");
Test::More::is($h{status}, 'canceled', 'hash: canceled');
Test::More::is($h{query}, 'cancel me', 'hash: the entry\'s query');
Test::More::is($h{top_k}, '5', 'hash: the entry\'s top_k');
Test::More::is($h{tenant}, '', 'hash: the entry\'s tenant');
Test::More::ok(!exists $h{r}, 'hash: no r');
my $ttl = Ragq::Valkey::cmd('PTTL', "cn:job:$main::Id");
Test::More::is($ttl, -1, 'hash: no TTL while its entry waits for a claim');
$ttl = Ragq::Valkey::cmd('PTTL', "cn:out:$main::Id");
Test::More::ok($ttl > 0 && $ttl <= 60000, "P:out:ID TTL too ($ttl)");
Test::More::is(Ragq::Valkey::cmd('XLEN', 'cn:jobs'), '1', 'the entry stays (the claim acks it)');
--- request eval
"GET /job-status?job_id=$main::Id"
--- response_body_like: ^\{"job_id":"[0-9a-f]{32}","status":"canceled",.*"error":\{"code":"canceled"



=== TEST 2: a second cancel: 409 already_final, nothing changed
--- init
$main::Ended = Ragq::Valkey::job_field('cn', $main::Id, 'ended_at');
--- request eval
"POST /job-cancel?job_id=$main::Id"
--- error_code: 409
--- response_body_like: ^\{"error":\{"code":"already_final","message":"the job has already ended \(canceled\)



=== TEST 3: a finished job: 409 already_final, left finished
--- init
Ragq::Valkey::cmd('DEL', "cn:job:$main::Fin");
Ragq::Valkey::cmd('HSET', "cn:job:$main::Fin", status => 'finished', query => 'q',
    tenant => '', result => 'done', attempts => 1);
--- request eval
"POST /job-cancel?job_id=$main::Fin"
--- error_code: 409
--- response_body_like: "already_final".*\(finished\)



=== TEST 4: a started job (its hash): canceled, its owner and attempts kept; a TTL only when its entry is gone
--- init
Test::More::is(Ragq::Valkey::job_field('cn', $main::Fin, 'status'), 'finished', 'the finished job stays finished');
Test::More::is(Ragq::Valkey::job_field('cn', $main::Id, 'ended_at'), $main::Ended, 'the second cancel changed nothing');
my ($code, $body) = main::http('POST', '/chat?query=running');
my $id = main::chat_id($body);
Ragq::Valkey::cmd('HSET', "cn:job:$id", status => 'started', query => 'running', tenant => '',
    attempts => 1, owner => 'w1', created_at => 1, started_at => 2);
($code, $body) = main::http('POST', "/job-cancel?job_id=$id");
Test::More::is($code, 200, 'a started job whose entry waits for its worker\'s ack: canceled');
Test::More::is(Ragq::Valkey::cmd('PTTL', "cn:job:$id"), -1, '... its hash has no TTL while the entry waits');
Ragq::Valkey::cmd('DEL', "cn:job:$main::Run");
Ragq::Valkey::cmd('HSET', "cn:job:$main::Run", status => 'started', query => 'q',
    tenant => '', attempts => 1, owner => 'w1', created_at => 1, started_at => 2);
--- request eval
"POST /job-cancel?job_id=$main::Run"
--- error_code: 200
--- response_body_like: ^\{"job_id":"0000000000000000000000000000c004","status":"canceled","query":"q","result":null,"sources":null,"error":\{"code":"canceled","message":"[^"]+"\},"created_at":1,"started_at":2,"ended_at":\d+,"attempts":1,"usage":null,"callback":null\}$



=== TEST 5: unknown job: 404
--- init
Test::More::is(Ragq::Valkey::job_field('cn', $main::Run, 'owner'), 'w1', 'owner kept');
my $ttl = Ragq::Valkey::cmd('PTTL', "cn:job:$main::Run");
Test::More::ok($ttl > 0 && $ttl <= 60000, "the started job without an entry: ragq_job_ttl ($ttl ms)");
--- request
POST /job-cancel?job_id=ffffffffffffffff0000000000000000
--- error_code: 404
--- response_body_like: ^\{"error":\{"code":"job_not_found"



=== TEST 6: another tenant's job (entry, then hash): 404 and left queued; its own tenant cancels it
--- init
my ($code, $body) = main::http('POST', '/t/chat?query=mine', "X-Tenant: alice\r\n");
Test::More::is($code, 202, 'alice queues');
my $id = main::chat_id($body);
($code, $body) = main::http('POST', "/t/job-cancel?job_id=$id", "X-Tenant: bob\r\n");
Test::More::is($code, 404, 'bob: 404');
($code, $body) = main::http('POST', "/job-cancel?job_id=$id");
Test::More::is($code, 404, 'no tenant: 404');
Test::More::is(Ragq::Valkey::cmd('EXISTS', "cn:job:$id"), '0', 'nothing written');
Ragq::Valkey::cmd('DEL', "cn:job:$main::Alice");
Ragq::Valkey::cmd('HSET', "cn:job:$main::Alice", status => 'queued', query => 'q',
    tenant => 'alice', attempts => 0);
($code, $body) = main::http('POST', "/t/job-cancel?job_id=$main::Alice", "X-Tenant: bob\r\n");
Test::More::is($code, 404, 'bob: 404 (hash)');
Test::More::is(Ragq::Valkey::job_field('cn', $main::Alice, 'status'), 'queued', 'still queued');
($code, $body) = main::http('POST', "/t/job-cancel?job_id=$id", "X-Tenant: alice\r\n");
Test::More::is($code, 200, 'alice: 200');
Test::More::like($body, qr/"status":"canceled"/, '... canceled');
Test::More::is(Ragq::Valkey::job_field('cn', $id, 'tenant'), 'alice', 'the hash keeps the tenant');
--- request eval
"POST /t/job-cancel?job_id=$main::Alice"
--- more_headers
X-Tenant: alice
--- error_code: 200
--- response_body_like: "status":"canceled"



=== TEST 7: a missing or malformed job_id: 400
--- init
my ($code, $body) = main::http('POST', '/job-cancel');
Test::More::is($code, 400, 'missing: 400');
Test::More::like($body, qr/"code":"missing_job_id"/, '... missing_job_id');
--- request
POST /job-cancel?job_id=XYZ
--- error_code: 400
--- response_body_like: ^\{"error":\{"code":"invalid_job_id"



=== TEST 8: GET: 405 with Allow: POST
--- request
GET /job-cancel?job_id=ffffffffffffffff0000000000000000
--- error_code: 405
--- response_headers
Allow: POST
--- response_body_like: ^\{"error":\{"code":"method_not_allowed"



=== TEST 9: a long-poll waiter on a queued job is woken by the cancel with canceled
--- init
Ragq::Valkey::cmd('DEL', "cn:job:$main::Wait");
Ragq::Valkey::cmd('HSET', "cn:job:$main::Wait", status => 'queued', query => 'q',
    tenant => '', attempts => 0);
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    # once the waiter has subscribed (nginx's worker) and is waiting
    main::wait_for('nginx subscribed', sub {
        my @r = Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', 'cn:events');
        return @r == 2 && $r[1] >= 1;
    });
    Time::HiRes::sleep(0.5);
    main::http('POST', "/job-cancel?job_id=$main::Wait");
    POSIX::_exit(0);
}
push @main::Kids, $pid;
--- request eval
"GET /job-status?job_id=$main::Wait&wait=20"
--- timeout: 15
--- response_body_like: "status":"canceled"



=== TEST 10: ragq_metrics counts /job-cancel answers as endpoint="cancel"
--- init
my ($code) = main::http('POST', '/job-cancel?job_id=ffffffffffffffff0000000000000001');
Test::More::is($code, 404, 'one 404');
($code) = main::http('POST', '/job-cancel?job_id=ffffffffffffffff0000000000000002');
Test::More::is($code, 404, 'two 404s');
--- request
GET /metrics
--- response_body_like: ragq_http_requests_total\{endpoint="cancel",code="404"\} 2\n
