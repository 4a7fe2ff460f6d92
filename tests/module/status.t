# GET /job-status: the 200 document (every key, nulls, numbers, raw JSON
# fields), 400 for missing/malformed ids, 404 for unknown jobs and for
# another tenant's jobs, 405, HEAD, a reply larger than the module's reply
# arena, and Idempotency-Key plus ragq_max_queue (429) on the enqueue side.
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Chat;
use IO::Socket::INET;

no_shuffle();
no_long_string();

our $Id1 = '00000000000000000000000000000001';
our $Id2 = '00000000000000000000000000000002';
our $Queued = qr/^\{"status":"queued","job_id":"([0-9a-f]{32})","status_url":"\/job-status\?job_id=\1"\}$/;

sub seed {
    my ($id, @fields) = @_;
    Ragq::Valkey::cmd('DEL', "st:job:$id");
    Ragq::Valkey::cmd('HSET', "st:job:$id", @fields);
}

# How many XLEN commands Valkey ran so far (the module's re-reads of the
# queue length while it answers 429).
sub xlen_calls {
    my ($calls) = Ragq::Valkey::cmd('INFO', 'commandstats')
      =~ /^cmdstat_xlen:calls=(\d+)/m;
    return $calls // 0;
}

sub wait_for { Ragq::Chat::wait_for(@_) }

# A POST /chat of our own (its answer is not checked).
sub post_chat {
    my $q = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ENV{TEST_NGINX_SERVER_PORT}, Timeout => 5) or die "connect: $!";
    print $s "POST /chat?query=$q HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $resp = <$s>;
    close $s;
}

# A block numbered like "17b" goes on in the nginx of the block before it:
# it gets no --- config, and Test::Nginx keeps nginx running for a block
# without one.
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('no_error_log', "[error]\n[alert]\n")
      unless defined $block->no_error_log;
    return if $block->name =~ /^TEST \d+[a-z]:/;
    $block->set_value('http_config',
        "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix st; ragq_enqueue; }
location = /job-status { ragq_prefix st; ragq_status; }
location = /t/chat {
    ragq_prefix st; ragq_tenant $http_x_tenant; ragq_enqueue;
}
location = /t/job-status {
    ragq_prefix st; ragq_tenant $http_x_tenant; ragq_status;
}
EOF
});

plan tests => 157;
run_tests();

__DATA__

=== TEST 1: a queued job: every key present, nulls where unset, numbers as numbers
--- init
main::seed($::Id1, status => 'queued', query => 'q', top_k => 5,
    collection => '', tenant => '', created_at => '1700000000123',
    attempts => '0');
--- request eval
"GET /job-status?job_id=$::Id1"
--- response_headers
Content-Type: application/json
--- response_body eval
qq/{"job_id":"$::Id1","status":"queued","query":"q","result":null,"sources":null,"error":null,"created_at":1700000000123,"started_at":null,"ended_at":null,"attempts":0,"usage":null,"callback":null}\n/



=== TEST 2: a finished job: sources/error/usage are emitted as raw JSON
--- init
main::seed($::Id1, status => 'finished', query => "line1\nline2 \"q\"",
    result => "Answer \x{e2}\x{9c}\x{93}", tenant => '',
    sources => '[{"id":"c1","score":0.83,"source":"doc.md","text":"ex"}]',
    usage => '{"prompt_tokens":3,"backends":{"store":"local"}}',
    created_at => '1', started_at => '2', ended_at => '3', attempts => '1');
--- request eval
"GET /job-status?job_id=$::Id1"
--- response_body eval
qq/{"job_id":"$::Id1","status":"finished","query":"line1\\nline2 \\"q\\"","result":"Answer \x{e2}\x{9c}\x{93}","sources":[{"id":"c1","score":0.83,"source":"doc.md","text":"ex"}],"error":null,"created_at":1,"started_at":2,"ended_at":3,"attempts":1,"usage":{"prompt_tokens":3,"backends":{"store":"local"}},"callback":null}\n/



=== TEST 3: a failed job: error object; corrupt JSON/number fields degrade safely
--- init
main::seed($::Id1, status => 'failed', query => 'q', tenant => '',
    error => '{"code":"max_attempts","message":"gave up"}',
    sources => '[broken', usage => "bad\xff", attempts => '3x');
--- request eval
"GET /job-status?job_id=$::Id1"
--- response_body eval
qq/{"job_id":"$::Id1","status":"failed","query":"q","result":null,"sources":"[broken","error":{"code":"max_attempts","message":"gave up"},"created_at":null,"started_at":null,"ended_at":null,"attempts":null,"usage":"bad\\ufffd","callback":null}\n/



=== TEST 4: HEAD: headers only
--- init
main::seed($::Id1, status => 'queued', query => 'q', tenant => '');
--- request eval
"HEAD /job-status?job_id=$::Id1"
--- response_headers
Content-Type: application/json
--- response_body



=== TEST 5: missing and empty job_id are 400
--- request eval
["GET /job-status", "GET /job-status?job_id=", "GET /job-status?wait=5"]
--- error_code eval
[400, 400, 400]
--- response_body eval
['{"error":{"code":"missing_job_id","message":"the job_id argument is required: /job-status?job_id=ID"}}' . "\n",
 '{"error":{"code":"missing_job_id","message":"the job_id argument is required: /job-status?job_id=ID"}}' . "\n",
 '{"error":{"code":"missing_job_id","message":"the job_id argument is required: /job-status?job_id=ID"}}' . "\n"]



=== TEST 6: malformed ids are 400 (uppercase, short, long, not hex)
--- request eval
["GET /job-status?job_id=0000000000000000000000000000000A",
 "GET /job-status?job_id=abc",
 "GET /job-status?job_id=000000000000000000000000000000001",
 "GET /job-status?job_id=0000000000000000000000000000000g"]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
[qr/"invalid_job_id"/, qr/"invalid_job_id"/, qr/"invalid_job_id"/, qr/"invalid_job_id"/]



=== TEST 7: unknown job is 404
--- init
Ragq::Valkey::cmd('DEL', "st:job:$::Id2");
--- request eval
"GET /job-status?job_id=$::Id2"
--- error_code: 404
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"code":"job_not_found","message":"no such job: it never existed, has expired, or belongs to someone else"}}



=== TEST 8: POST is 405 with Allow; wait=0 answers at once
--- init
main::seed($::Id1, status => 'queued', query => 'q', tenant => '');
--- request eval
["POST /job-status?job_id=$::Id1", "GET /job-status?job_id=$::Id1&wait=0"]
--- error_code eval
[405, 200]
--- response_headers eval
["Allow: GET, HEAD", "!Allow"]
--- response_body_like eval
[qr/"method_not_allowed"/, qr/"status":"queued"/]



=== TEST 9: tenancy: the owner reads it, another tenant and no tenant get 404; an empty tenant 403
--- init
main::seed($::Id1, status => 'queued', query => 'q', tenant => 'alice');
--- request eval
["GET /t/job-status?job_id=$::Id1", "GET /t/job-status?job_id=$::Id1",
 "GET /job-status?job_id=$::Id1", "GET /t/job-status?job_id=$::Id1"]
--- more_headers eval
["X-Tenant: alice", "X-Tenant: bob", "X-Tenant: alice", ""]
--- error_code eval
[200, 404, 404, 403]
--- response_body_like eval
[qr/"status":"queued"/, qr/"job_not_found"/, qr/"job_not_found"/, qr/"missing_tenant"/]



=== TEST 10: a job without tenant is not readable under a tenant
--- init
main::seed($::Id1, status => 'queued', query => 'q', tenant => '');
--- request eval
"GET /t/job-status?job_id=$::Id1"
--- more_headers
X-Tenant: alice
--- error_code: 404
--- response_body_like chomp
"job_not_found"



=== TEST 11: Idempotency-Key: the same key gives the same job; another tenant a new one
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'st:*'), 'x');
--- request eval
["POST /t/chat?query=once", "POST /t/chat?query=once", "POST /t/chat?query=once"]
--- more_headers eval
["X-Tenant: alice\nIdempotency-Key: k-1", "X-Tenant: alice\nIdempotency-Key: k-1",
 "X-Tenant: bob\nIdempotency-Key: k-1"]
--- error_code eval
[202, 202, 202]
--- response_body_like eval
[$::Queued, $::Queued, $::Queued]



=== TEST 12: ... two jobs stored, two idempotency keys with the job TTL
--- init
my @jobs = Ragq::Valkey::job_ids('st');
Test::More::is(scalar(@jobs), 2, 'two jobs for three requests');
Test::More::is(Ragq::Valkey::cmd('XLEN', 'st:jobs'), '2', 'two stream entries');
my @idem = sort(Ragq::Valkey::cmd_list('--scan', '--pattern', 'st:idem:*'));
Test::More::is(scalar(@idem), 2, 'one key per tenant');
Test::More::like($idem[0], qr/^st:idem:alice:[0-9a-f]{40}$/, 'key shape');
my $ttl = Ragq::Valkey::cmd('PTTL', $idem[0]);
Test::More::ok($ttl > 86000000 && $ttl <= 86400000, "default ragq_job_ttl 24h ($ttl)");
my $id = Ragq::Valkey::cmd('GET', $idem[0]);
Test::More::is(Ragq::Valkey::job_field('st', $id, 'tenant'), 'alice', 'tenant');
--- request
POST /t/chat?query=once
--- more_headers
X-Tenant: alice
Idempotency-Key: k-2
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 13: ragq_job_ttl sets the key lifetime; an expired job gets a new id
--- config
location = /chat { ragq_prefix st; ragq_job_ttl 5s; ragq_enqueue; }
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'st:*'), 'x');
Ragq::Valkey::cmd('SET', "st:idem::" . ('0' x 40), 'x');
--- request eval
["POST /chat?query=a", "POST /chat?query=a"]
--- more_headers eval
["Idempotency-Key: ttl", "Idempotency-Key: ttl"]
--- error_code eval
[202, 202]
--- response_body_like eval
[$::Queued, $::Queued]



=== TEST 14: ... the TTL, and a key whose job expired is re-pointed
--- config
location = /chat { ragq_prefix st; ragq_job_ttl 5s; ragq_enqueue; }
--- init
my ($key) = grep { !/0{40}/ } Ragq::Valkey::cmd_list('--scan', '--pattern', 'st:idem:*');
my $ttl = Ragq::Valkey::cmd('PTTL', $key);
Test::More::ok($ttl > 0 && $ttl <= 5000, "ragq_job_ttl 5s ($ttl)");
my $old = Ragq::Valkey::cmd('GET', $key);
# gone: as queued, its entry; once claimed, its hash
Ragq::Valkey::cmd('XDEL', 'st:jobs', Ragq::Valkey::entry_of_id($old));
Ragq::Valkey::cmd('DEL', "st:job:$old");
$main::OldId = $old;
--- request
POST /chat?query=a
--- more_headers
Idempotency-Key: ttl
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 15: (TEST 14's key now names a new, existing job) an over-long Idempotency-Key is 400
--- init
my ($key) = grep { !/0{40}/ } Ragq::Valkey::cmd_list('--scan', '--pattern', 'st:idem:*');
my $new = Ragq::Valkey::cmd('GET', $key);
Test::More::isnt($new, $main::OldId, 're-pointed to a new job');
Test::More::is(scalar(grep { $_ eq $new } Ragq::Valkey::job_ids('st')), 1, 'which exists');
--- request eval
"POST /chat?query=a"
--- more_headers eval
"Idempotency-Key: " . ("k" x 256)
--- error_code: 400
--- response_body_like chomp
"invalid_idempotency_key"



=== TEST 16: ragq_max_queue: 429 + Retry-After once the queue is at the limit
--- config
location = /chat { ragq_prefix st; ragq_max_queue 2; ragq_enqueue; }
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'st:*'), 'x');
--- request eval
["POST /chat?query=1", "POST /chat?query=2", "POST /chat?query=3"]
--- error_code eval
[202, 202, 429]
--- response_headers eval
["!Retry-After", "!Retry-After", "Retry-After: 1"]
--- response_body_like eval
[$::Queued, $::Queued, qr/^\{"error":\{"code":"queue_full","message":"2 questions are waiting \(the limit is 2\); retry later"\}\}$/]



=== TEST 17: ... accepts again once workers drained the stream (TEST 17 to 17d share one nginx)
--- config
location = /chat { ragq_prefix st; ragq_max_queue 3; ragq_enqueue; }
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'st:*'), 'x');
Ragq::Valkey::cmd('XADD', 'st:jobs', '*', 'job', 'a');
Ragq::Valkey::cmd('XADD', 'st:jobs', '*', 'job', 'b');
--- request
POST /chat?query=1
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 17b: ... full now: 429, which makes nginx re-read the length (XLEN)
--- init
# nginx re-reads the length at most every 100 ms after it last learnt it
# (from TEST 17's enqueue reply, before its 202): wait longer than that, so
# that this 429 asks for it.
select(undef, undef, undef, 0.15);
$main::Xlen = main::xlen_calls();
--- request
POST /chat?query=2
--- error_code: 429
--- response_body_like chomp
"queue_full"



=== TEST 17c: ... drained after that XLEN: the next request still sees the length nginx knows (429)
--- init
main::wait_for('the XLEN of TEST 17b', sub { main::xlen_calls() > $main::Xlen });
Ragq::Valkey::cmd('DEL', 'st:jobs');
$main::Xlen = main::xlen_calls();
--- request
POST /chat?query=3
--- error_code: 429
--- response_body_like chomp
"queue_full"



=== TEST 17d: ... once nginx has re-read the length (at most every 100 ms, on a 429), it accepts again
--- init
# TEST 17c's 429 asked for the length unless it came within 100 ms of the
# previous XLEN; then a later 429 (ours, 150 ms apart) does.
main::wait_for('an XLEN after the stream was drained', sub {
    return 1 if main::xlen_calls() > $main::Xlen;
    main::post_chat('nudge');
    return main::xlen_calls() > $main::Xlen;
});
--- request
POST /chat?query=4
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 18: a reply larger than the module's 16 kB reply arena (a 100 kB result) comes back whole
--- init
main::seed($::Id1, status => 'finished', query => 'q', tenant => '',
    result => ('0123456789' x 10000), sources => '[]');
--- request eval
"GET /job-status?job_id=$::Id1"
--- response_body_like eval
qr/^\{"job_id":"$::Id1","status":"finished","query":"q","result":"(?:0123456789){10000}","sources":\[\],/
