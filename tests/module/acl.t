# The module as an ACL user (ragq_valkey ... user= password=): with the
# minimal ACL README's "Production Valkey" documents (keys and channels of
# its prefix, exactly the commands it sends) POST /chat, an idempotent one
# (EVAL), GET /job-status and a long-poll work; a user that lacks a command
# or a key gets 500 valkey_denied and the log names NOPERM (the queued
# command's error, not EXECABORT); a wrong password: valkey_denied, logged
# once at error however many times the reconnects try; a user without ROLE
# is served with one warning; POST /job-cancel (its script's HSET, PEXPIRE,
# PUBLISH), GET /job-stream (MULTI/EXEC, SUBSCRIBE and UNSUBSCRIBE of the
# job's acl:out:ID) and ragq_metrics (its script's XPENDING, ZRANGE) work
# with the same ACL.
use Test::Nginx::Socket;
use Ragq::ValkeyHA;
use Ragq::Valkey ();

# README "Production Valkey": the module's ACL, for prefix "acl"
our $Acl = 'on >s3cret ~acl:* &acl:* -@all +role +ping'
  . ' +xadd +xlen +xrange +xdel +hgetall +eval +get +set +type +hmget +subscribe +wait'
  . ' +xpending +zrange +hset +pexpire +publish +multi +exec +unsubscribe';
(our $NoXadd = $Acl) =~ s/ \+xadd//;
(our $NoRole = $Acl) =~ s/ \+role//;

our $HA = Ragq::ValkeyHA->new;
our $V = $HA->server(users => { 'ragq-nginx' => $Acl, noxadd => $NoXadd,
                                norole => $NoRole });
$ENV{TEST_NGINX_ACL_PORT} = $V->port;

our $Seeded = '0000000000000000000000000000ac1a';
$V->cli('HSET', "acl:job:$Seeded", 'status', 'queued', 'query', 'seeded',
    'tenant', '', 'created_at', '1700000000000', 'attempts', '0');

# finishes $Seeded once nginx listens on acl:events (see tls.t)
sub finish_later {
    for (1 .. 200) {
        last if ((split /\n/, $V->cli('PUBSUB', 'NUMSUB', 'acl:events'))[1] // 0) > 0;
        select(undef, undef, undef, 0.05);
    }
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        select(undef, undef, undef, 0.3);
        $V->cli('HSET', "acl:job:$Seeded", 'status', 'finished');
        $V->cli('PUBLISH', 'acl:events', "$Seeded finished");
        POSIX::_exit(0);
    }
    $main::Child = $pid;
}

# waits until the server has refused $n logins (nginx's reconnects)
sub wait_wrongpass {
    my $n = shift;
    for (1 .. 400) {
        return 1 if ($V->errorstats->{WRONGPASS} // 0) >= $n;
        select(undef, undef, undef, 0.05);
    }
    return 0;
}

no_shuffle();
no_long_string();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'EOF') unless defined $block->http_config;
ragq_valkey 127.0.0.1:$TEST_NGINX_ACL_PORT user=ragq-nginx password=s3cret;
EOF
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix acl; ragq_enqueue; }
location = /job-status { ragq_prefix acl; ragq_status; }
location = /job-cancel { ragq_prefix acl; ragq_cancel; }
location = /job-stream { ragq_prefix acl; ragq_stream; }
location = /metrics { ragq_prefix acl; ragq_metrics; }
location = /other { ragq_prefix other; ragq_enqueue; }
EOF
});

plan tests => 54;
run_tests();

waitpid($main::Child, 0) if $main::Child;

__DATA__

=== TEST 1: the minimal ACL: POST /chat
--- request
POST /chat?query=as+an+ACL+user
--- error_code: 202
--- no_error_log
[error]
ROLE failed
[alert]



=== TEST 2: ... an idempotent POST /chat (EVAL, and the commands of its script), twice: the same job
--- init
$main::V->cli('DEL', $main::V->cli_list('--scan', '--pattern', 'acl:idem:*'), 'x');
--- request eval
["POST /chat?query=once", "POST /chat?query=once"]
--- more_headers
Idempotency-Key: acl-key-1
--- error_code eval
[202, 202]
--- response_body_like eval
[qr/"job_id":"([0-9a-f]{32})"/, qr/"job_id":"([0-9a-f]{32})"/]
--- no_error_log
[error]
[alert]



=== TEST 3: ... GET /job-status, and a long-poll (SUBSCRIBE on &acl:*, PING)
--- init
my @once = Ragq::Valkey::jobs_with_query('acl', 'once', sub { $main::V->cli_list(@_) });
Test::More::is(scalar(@once), 1, 'TEST 2: one job for the two requests with one key');
main::finish_later();
--- request eval
["GET /job-status?job_id=$::Seeded", "GET /job-status?job_id=$::Seeded&wait=10"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"status":"(queued|finished)","query":"seeded"/, qr/"status":"finished","query":"seeded"/]
--- no_error_log
[error]
[alert]



=== TEST 3b: ... POST /job-cancel (EVAL of the cancel script: HSET, PEXPIRE, PUBLISH)
--- init
$main::V->cli('HSET', "acl:job:0000000000000000000000000000ac1b", 'status', 'queued',
    'query', 'q', 'tenant', '', 'attempts', '0');
--- request
POST /job-cancel?job_id=0000000000000000000000000000ac1b
--- error_code: 200
--- response_body_like: "status":"canceled"
--- no_error_log
[error]
[alert]



=== TEST 3c: ... GET /job-stream of a finished job (SUBSCRIBE to its acl:out:ID, MULTI / HGETALL / XRANGE / EXEC, UNSUBSCRIBE at the end)
--- init
my $id = '0000000000000000000000000000ac1c';
$main::V->cli('DEL', "acl:job:$id", "acl:out:$id");
$main::V->cli('HSET', "acl:job:$id", 'status', 'finished', 'query', 'q', 'tenant', '',
    'attempts', '1', 'result', 'streamed as acl');
$main::V->cli('XADD', "acl:out:$id", '0-1', 't', 'streamed ', 'a', '1');
$main::V->cli('XADD', "acl:out:$id", '0-2', 't', 'as acl', 'a', '1');
--- request
GET /job-stream?job_id=0000000000000000000000000000ac1c
--- error_code: 200
--- response_body_like: (?s)event: token\nid: 1\ndata: \{"text":"streamed "\}.*event: token\nid: 2\ndata: \{"text":"as acl"\}.*event: done\ndata: \{[^\n]*"status":"finished"
--- no_error_log
[error]
[alert]



=== TEST 3d: ... GET /metrics (the metrics script: XLEN, XPENDING, ZRANGE): the Valkey side is read
--- request
GET /metrics
--- error_code: 200
--- response_body_like: (?m)^ragq_valkey_up 1$
--- no_error_log
[error]
[alert]



=== TEST 4: a user without XADD: 500 valkey_denied, and the log names NOPERM, not EXECABORT
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_ACL_PORT user=noxadd password=s3cret;
--- request
POST /chat?query=x
--- error_code: 500
--- response_body_like chomp
^\{"error":\{"code":"valkey_denied","message":"the job store \(Valkey\) refused nginx: check the user, password and ACL of ragq_valkey \(see the error log\); retrying will not help"\}\}$
--- error_log eval
qr/ragq: valkey error: NOPERM .*'xadd'/
--- no_error_log
EXECABORT
[alert]



=== TEST 5: a key outside the user's pattern (another ragq_prefix): 500 valkey_denied, NOPERM logged
--- request
POST /other?query=x
--- error_code: 500
--- response_body_like chomp
"code":"valkey_denied"
--- error_log eval
qr/ragq: valkey error: NOPERM .*key/
--- no_error_log
EXECABORT
[alert]



=== TEST 6: a wrong password: 500 valkey_denied; logged at error once, the retries at info
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_ACL_PORT user=ragq-nginx password=wrong;
--- init
Test::More::ok(main::wait_wrongpass(($main::V->errorstats->{WRONGPASS} // 0) + 3),
    'nginx tried at least three times');
--- request
POST /chat?query=x
--- error_code: 500
--- response_body_like chomp
"code":"valkey_denied"
--- grep_error_log eval
qr/\[(?:error|info)\](?= \S+ ragq: valkey AUTH failed: WRONGPASS)/
--- grep_error_log_out eval
qr/\A\[error\]\n(\[info\]\n){2,}\z/
--- no_error_log
[alert]



=== TEST 7: a user without ROLE: served, with one warning that the role cannot be checked
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_ACL_PORT user=norole password=s3cret;
--- request
POST /chat?query=no+role
--- error_code: 202
--- error_log eval
qr/\[warn\] .*ragq: valkey cannot check that 127\.0\.0\.1:\d+ is the primary: ROLE failed: NOPERM/
--- no_error_log
[error]
[alert]



=== TEST 8: user= without password= fails the configuration
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_ACL_PORT user=ragq-nginx;
--- must_die
--- error_log
"ragq_valkey" directive needs password= with user=
