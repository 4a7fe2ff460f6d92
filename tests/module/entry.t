# The one-XADD enqueue (DEVELOPERS.md, "data model"): a new job is one queue
# entry that carries it, its id made of the entry id and the entry's random
# part; /job-status reads a job nobody claimed yet from that entry (the
# same JSON as from a hash), a wrong random part or another tenant is 404;
# the hash and the entry are asked for in one round trip, and a miss of both
# reads the hash again; a long-poll on a queued job is woken
# by its final state; Idempotency-Key finds the job in its entry and in its
# hash; an entry id no job id can carry is 503 and stores nothing the
# script made; ragq_max_queue reads the length behind enqueues, and never
# with ragq_max_queue 0.
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Chat;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

no_shuffle();
no_long_string();

our $Queued = qr/^\{"status":"queued","job_id":"([0-9a-f]{32})","status_url":"\/job-status\?job_id=\1"\}$/;

# A job written as the module writes it, with a fixed entry id (the stream
# is emptied first, so the id is never behind its last one).
our $R = '0123456789abcdef';
our $Fixed = sprintf('%012x%04x%s', 1700000000000, 5, $R);
our @Kids;

sub fixed_job {
    my ($prefix, $tenant) = @_;
    Ragq::Valkey::cmd('DEL', "$prefix:jobs", "$prefix:job:$Fixed");
    Ragq::Valkey::cmd('XADD', "$prefix:jobs", '1700000000000-5', r => $R,
        query => 'fixed question', top_k => 5, collection => '',
        tenant => $tenant // '', created_at => '1700000000000');
}

# One request of our own, on a fresh connection: (status, body).
sub http { Ragq::Chat::http(@_) }

sub chat_id {
    my ($body) = @_;
    return $body =~ /"job_id":"([0-9a-f]{32})"/ ? $1 : '';
}

sub calls {
    my ($cmd) = @_;
    my ($n) = Ragq::Valkey::cmd('INFO', 'commandstats') =~ /^cmdstat_$cmd:calls=(\d+)/m;
    return $n // 0;
}

sub wait_for { Ragq::Chat::wait_for(@_) }

sub subscribed {
    my ($channel) = @_;
    wait_for("a subscription to $channel", sub {
        my @r = Ragq::Valkey::cmd_list('PUBSUB', 'NUMSUB', $channel);
        return @r == 2 && $r[1] >= 1;
    });
}

# What a worker does to a job: claim it (its hash), then finish it (the
# final state, the entry deleted, the event); run from a child.
sub worker_later {
    my ($prefix, $id, $entry) = @_;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        Time::HiRes::sleep(0.3);
        Ragq::Valkey::cmd('HSET', "$prefix:job:$id", status => 'started',
            query => 'fixed question', tenant => '', created_at => '1700000000000',
            attempts => 1);
        Ragq::Valkey::cmd('PUBLISH', "$prefix:events", "$id started");
        Time::HiRes::sleep(0.3);
        Ragq::Valkey::cmd('HSET', "$prefix:job:$id", status => 'finished',
            result => 'done', ended_at => '1700000000001');
        Ragq::Valkey::cmd('XDEL', "$prefix:jobs", $entry);
        Ragq::Valkey::cmd('PUBLISH', "$prefix:events", "$id finished");
        POSIX::_exit(0);
    }
    push @Kids, $pid;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('no_error_log', "[error]\n[alert]\n")
      unless defined $block->no_error_log;
    return if $block->name =~ /^TEST \d+[a-z]:/;
    $block->set_value('http_config',
        "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix en; ragq_enqueue; }
location = /job-status { ragq_prefix en; ragq_status; }
location = /t/chat { ragq_prefix en; ragq_tenant $http_x_tenant; ragq_enqueue; }
location = /t/job-status { ragq_prefix en; ragq_tenant $http_x_tenant; ragq_status; }
location = /o/chat { ragq_prefix eno; ragq_enqueue; }
location = /n/chat { ragq_prefix en; ragq_max_queue 0; ragq_enqueue; }
location = /q/chat { ragq_prefix enq; ragq_enqueue; }
EOF
});

plan tests => 95;
run_tests();
waitpid($_, 0) for @Kids;

__DATA__

=== TEST 1: a new job: 202
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'en:*'), 'x');
--- request
POST /chat?query=hello+entry
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 1b: ... one entry that carries it, its id = entry id + r, no hash; its /job-status is a hash's, byte for byte
--- init
my ($code, $body) = main::http('POST', '/chat?query=second+entry');
Test::More::is($code, 202, 'second job queued');
my $id = main::chat_id($body);
my @ids = Ragq::Valkey::job_ids('en');
Test::More::is(scalar(@ids), 2, 'two jobs');
Test::More::ok((grep { $_ eq $id } @ids), 'the id is the entry id and r');
Test::More::is(Ragq::Valkey::cmd('EXISTS', "en:job:$id"), '0', 'no hash');
Test::More::is(Ragq::Valkey::cmd('XLEN', 'en:jobs'), '2', 'two entries');
my $e = Ragq::Valkey::entry_of_id($id);
my (undef, %f) = Ragq::Valkey::cmd_list('XRANGE', 'en:jobs', $e, $e);
Test::More::is_deeply([sort keys %f], [qw(collection created_at query r tenant top_k)], 'the fields');
Test::More::is($f{r}, substr($id, 16), 'r is the id\'s end');
Test::More::is($f{query}, 'second entry', 'query');
Test::More::is($f{top_k}, '5', 'top_k');
($code, my $json) = main::http('GET', "/job-status?job_id=$id");
Test::More::is($code, 200, 'queued job found');
Test::More::is($json, qq({"job_id":"$id","status":"queued","query":"second entry","result":null,"sources":null,"error":null,"created_at":$f{created_at},"started_at":null,"ended_at":null,"attempts":0,"usage":null,"callback":null}\n), 'the queued view');
# the same job as a hash, as the module wrote it before
Ragq::Valkey::cmd('HSET', "en:job:$id", status => 'queued', query => 'second entry',
    top_k => 5, collection => '', tenant => '', created_at => $f{created_at}, attempts => 0);
($code, my $json2) = main::http('GET', "/job-status?job_id=$id");
Test::More::is($json2, $json, 'the same bytes as from a hash');
Ragq::Valkey::cmd('DEL', "en:job:$id");
my $wrong = substr($id, 0, 31) . (substr($id, 31) eq '0' ? '1' : '0');
($code, $body) = main::http('GET', "/job-status?job_id=$wrong");
Test::More::is($code, 404, 'another random part: 404');
Test::More::like($body, qr/"job_not_found"/, '... job_not_found');
--- request
GET /job-status?job_id=ffffffffffffffff0000000000000000
--- error_code: 404
--- response_body_like: "job_not_found"



=== TEST 2: tenancy: a queued job is its tenant's only
--- init
my ($code, $body) = main::http('POST', '/t/chat?query=mine', "X-Tenant: alice\r\n");
Test::More::is($code, 202, 'alice queues');
$main::Alice = main::chat_id($body);
Test::More::is(Ragq::Valkey::job_field('en', $main::Alice, 'tenant'), 'alice', 'tenant in the entry');
($code, $body) = main::http('GET', "/t/job-status?job_id=$main::Alice", "X-Tenant: alice\r\n");
Test::More::is($code, 200, 'alice reads it');
Test::More::like($body, qr/"status":"queued","query":"mine"/, '... queued');
($code, $body) = main::http('GET', "/t/job-status?job_id=$main::Alice", "X-Tenant: bob\r\n");
Test::More::is($code, 404, 'bob does not');
($code, $body) = main::http('GET', "/job-status?job_id=$main::Alice");
Test::More::is($code, 404, 'nor a location without tenant');
--- request
GET /t/job-status?job_id=ffffffffffffffff0000000000000000
--- more_headers
X-Tenant: alice
--- error_code: 404



=== TEST 3: a miss reads the hash, the entry, then the hash again (a job claimed and finished between two reads is found)
--- init
$main::Hgetall = main::calls('hgetall');
$main::Xrange = main::calls('xrange');
--- request
GET /job-status?job_id=00000000000100020123456789abcdef
--- error_code: 404
--- response_body_like: "job_not_found"



=== TEST 3b: ... two HGETALL, one XRANGE
--- init
Test::More::is(main::calls('hgetall') - $main::Hgetall, 2, 'HGETALL twice');
Test::More::is(main::calls('xrange') - $main::Xrange, 1, 'XRANGE once');
--- request
GET /job-status?job_id=ffffffffffffffff0000000000000000
--- error_code: 404



=== TEST 3c: a job in its hash: its entry was asked for in the same round trip (HGETALL and XRANGE pipelined), the hash answers
--- init
main::fixed_job('en');
Ragq::Valkey::cmd('HSET', "en:job:$::Fixed", status => 'started', query => 'from the hash',
    tenant => '', created_at => '1700000000000', attempts => 1);
$main::Hgetall = main::calls('hgetall');
$main::Xrange = main::calls('xrange');
--- request eval
"GET /job-status?job_id=$::Fixed"
--- error_code: 200
--- response_body_like: "status":"started","query":"from the hash"



=== TEST 3d: ... one HGETALL, one XRANGE (sent with it, its reply not needed)
--- init
Test::More::is(main::calls('hgetall') - $main::Hgetall, 1, 'HGETALL once');
Test::More::is(main::calls('xrange') - $main::Xrange, 1, 'XRANGE with it');
Ragq::Valkey::cmd('DEL', "en:job:$::Fixed");
--- request
GET /job-status?job_id=ffffffffffffffff0000000000000000
--- error_code: 404



=== TEST 4: a queued job (entry), then claimed (hash, started), then finished (hash, entry gone)
--- init
main::fixed_job('en');
my ($code, $body) = main::http('GET', "/job-status?job_id=$::Fixed");
Test::More::like($body, qr/^\{"job_id":"$::Fixed","status":"queued","query":"fixed question",.*"attempts":0,/, 'queued from the entry');
Ragq::Valkey::cmd('HSET', "en:job:$::Fixed", status => 'started', query => 'fixed question',
    tenant => '', created_at => '1700000000000', attempts => 1, started_at => '1700000000002');
($code, $body) = main::http('GET', "/job-status?job_id=$::Fixed");
Test::More::like($body, qr/"status":"started",.*"started_at":1700000000002,.*"attempts":1,/, 'started from the hash');
Ragq::Valkey::cmd('HSET', "en:job:$::Fixed", status => 'finished', result => 'yes');
Ragq::Valkey::cmd('XDEL', 'en:jobs', '1700000000000-5');
--- request eval
"GET /job-status?job_id=$::Fixed"
--- error_code: 200
--- response_body_like: "status":"finished","query":"fixed question","result":"yes"



=== TEST 5: a long-poll on a queued job (read from its entry) is woken by its final state
--- init
main::fixed_job('en');
main::subscribed('en:events');
main::worker_later('en', $::Fixed, '1700000000000-5');
--- request eval
"GET /job-status?job_id=$::Fixed&wait=20"
--- error_code: 200
--- response_body_like: "status":"finished","query":"fixed question","result":"done"



=== TEST 6: Idempotency-Key finds the job in its entry, then in its hash
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'en:*'), 'x');
my ($code, $body) = main::http('POST', '/chat?query=same', "Idempotency-Key: k-entry\r\n");
Test::More::is($code, 202, 'first');
my $id = main::chat_id($body);
Test::More::is_deeply([Ragq::Valkey::job_ids('en')], [$id], 'its id is its entry\'s');
Test::More::is(Ragq::Valkey::cmd('EXISTS', "en:job:$id"), '0', 'no hash');
($code, $body) = main::http('POST', '/chat?query=same', "Idempotency-Key: k-entry\r\n");
Test::More::is(main::chat_id($body), $id, 'queued: the same job');
($code, $body) = main::http('POST', '/chat?query=other', "Idempotency-Key: k-entry\r\n");
Test::More::is($code, 422, 'queued, another question: 422');
# claimed and finished: the hash, no entry
my $e = Ragq::Valkey::entry_of_id($id);
Ragq::Valkey::cmd('HSET', "en:job:$id", status => 'finished', query => 'same', top_k => 5,
    collection => '', tenant => '', result => 'r');
Ragq::Valkey::cmd('XDEL', 'en:jobs', $e);
($code, $body) = main::http('POST', '/chat?query=same', "Idempotency-Key: k-entry\r\n");
Test::More::is(main::chat_id($body), $id, 'finished: the same job');
Test::More::is(Ragq::Valkey::cmd('XLEN', 'en:jobs'), '0', 'nothing queued again');
# expired: a new job, its own id from its entry
Ragq::Valkey::cmd('DEL', "en:job:$id");
($code, $body) = main::http('POST', '/chat?query=same', "Idempotency-Key: k-entry\r\n");
$main::New = main::chat_id($body);
Test::More::isnt($main::New, $id, 'expired: a new job');
Test::More::is_deeply([Ragq::Valkey::job_ids('en')], [$main::New], 'whose id is its entry\'s');
--- request
POST /chat?query=another
--- more_headers
Idempotency-Key: k-other
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 7: an entry id no job id can carry (65,536 entries in one ms): 503, retry
--- init
my $future = int(Time::HiRes::time() * 1000) + 3600000;
Ragq::Valkey::cmd('DEL', 'eno:jobs');
Ragq::Valkey::cmd('XADD', 'eno:jobs', "$future-65535", job => 'x');
my ($code, $body) = main::http('POST', '/o/chat?query=idem', "Idempotency-Key: k-overflow\r\n");
Test::More::is($code, 503, 'with an Idempotency-Key: 503');
Test::More::like($body, qr/"valkey_unavailable"/, '... valkey_unavailable');
Test::More::is(Ragq::Valkey::cmd('XLEN', 'eno:jobs'), '1', '... its entry deleted again');
Test::More::is(Ragq::Valkey::cmd('EXISTS', Ragq::Valkey::cmd_list('--scan', '--pattern', 'eno:idem:*'), 'x'), '0', '... no key kept');
--- request
POST /o/chat?query=plain
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like: "valkey_unavailable"
--- error_log
cannot be named by a job id
--- no_error_log
[alert]



=== TEST 8: with ragq_max_queue 0 no XLEN; with a limit (default 100000), the length is read behind an enqueue
--- init
$main::Xlen = main::calls('xlen');
for (1 .. 5) {
    my ($code) = main::http('POST', "/n/chat?query=n$_");
    Test::More::is($code, 202, "enqueue $_");
}
Test::More::is(main::calls('xlen'), $main::Xlen, 'no XLEN with ragq_max_queue 0');
--- request
POST /q/chat?query=counted
--- error_code: 202
--- response_body_like eval
$::Queued



=== TEST 8b: ... an XLEN followed it
--- init
main::wait_for('an XLEN', sub { main::calls('xlen') > $main::Xlen });
Test::More::pass('XLEN read behind the enqueue');
--- request
GET /job-status?job_id=ffffffffffffffff0000000000000000
--- error_code: 404
