# Signed callbacks end to end (README "Callbacks"): POST /chat with a
# callback_url -> the real worker runs the job -> POSTs its /job-status JSON
# to the stand-in's webhook receiver with the Standard Webhooks headers,
# which README's Python recipe (run here as it is written there) verifies;
# a receiver answering 500 twice gets it a third time; a redirect is not
# followed; a 4xx fails at once; failed jobs call back too; /job-status
# shows "callback" with the outcome; RAGQ_CALLBACK_TIMEOUT ends a POST a
# receiver holds, and RAGQ_CALLBACK_CONCURRENCY caps the POSTs in flight.
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Standin;
use Ragq::Worker;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use File::Temp qw(tempfile);
use Time::HiRes qw(sleep time);

no_shuffle();
no_long_string();

our $Prefix = "wcb$$";
$ENV{TEST_NGINX_WPREFIX} = $Prefix;

# 32 fixed key bytes: the signature is checked with this same secret.
our $Secret = 'whsec_' . MIME::Base64::encode_base64(join('', map { chr } 1 .. 32), '');

our $S = Ragq::Standin->start(dim => 24, api_key => 'sk-c');
$S->create_collection('books', 24);
$S->upsert('books', [
    { id => 11, payload => { page_content => 'Moby-Dick was written by Herman Melville.',
                             metadata => { source => 'moby.md' } } },
]);
$ENV{TEST_NGINX_HOOKS} = $S->hook_url('');
our $W = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $Prefix, OPENAI_BASE_URL => $S->base_url, OPENAI_API_KEY => 'sk-c',
    QDRANT_URL => $S->qdrant_url, RAGQ_WEBHOOK_SECRET => $Secret,
    RAGQ_CALLBACK_ATTEMPTS => 4, RAGQ_LOG_LEVEL => 'debug',
});
$W->ready or die "worker did not start:\n" . $W->log;

# README's verification recipe, as it is written there.
our $Recipe = do {
    open my $fh, '<', 'README.md' or die "README.md: $!";
    local $/;
    my $md = <$fh>;
    $md =~ /<!-- callback-verify -->\s*```python\n(.*?)```/s or die "no recipe in README.md";
    $1;
};

# Runs the recipe on one received request: 1 when it verifies.
sub verify {
    my ($secret, $hook) = @_;
    my ($fh, $file) = tempfile(SUFFIX => '.py', UNLINK => 1);
    print $fh $Recipe, <<'PY';

import json, sys
d = json.load(sys.stdin)
print("ok" if verify(d["secret"], d["headers"], base64.b64decode(d["body_b64"])) else "bad")
PY
    close $fh;
    my ($in, $infile) = tempfile(UNLINK => 1);
    print $in encode_json({ secret => $secret, headers => $hook->{headers},
                            body_b64 => $hook->{body_b64} });
    close $in;
    my $out = `python3 $file < $infile`;
    chomp $out;
    return $out;
}

sub http {
    my ($method, $path, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ENV{TEST_NGINX_SERVER_PORT}, Timeout => 20) or die "connect: $!";
    $body //= '';
    print $s "$method $path HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($code) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my (undef, $b) = split /\r\n\r\n/, $resp, 2;
    return ($code // 0, $b // '');
}

# POST /chat with a callback to /hooks/NAME: the job id.
sub chat {
    my ($name, $query) = @_;
    my ($code, $body) = http(POST => '/chat', encode_json({
        query => $query // 'Who wrote Moby-Dick?', callback_url => $S->hook_url($name) }));
    Test::More::is($code, 202, "$name: queued") or Test::More::diag($body);
    return $body =~ /"job_id":"([0-9a-f]{32})"/ ? $1 : '';
}

sub job {
    my ($id, $wait) = @_;
    my ($code, $body) = http(GET => "/job-status?job_id=$id" . ($wait ? "&wait=$wait" : ''));
    return $code == 200 ? decode_json($body) : { http => $code };
}

# Polls until the job's callback outcome is recorded (no fixed sleeps).
sub callback_of {
    my ($id) = @_;
    my $deadline = time + 30;
    while (time < $deadline) {
        my $j = job($id);
        return $j if $j->{callback};
        sleep 0.1;
    }
    Test::More::diag("no callback outcome for $id:\n" . $W->log);
    return job($id);
}

sub hooks_for { my ($name) = @_; grep { $_->{path} eq "/hooks/$name" } $S->hooks }

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat {
    ragq_prefix $TEST_NGINX_WPREFIX; ragq_collection books; ragq_top_k 1;
    ragq_callback_allow $TEST_NGINX_HOOKS;
    ragq_enqueue;
}
location = /job-status { ragq_prefix $TEST_NGINX_WPREFIX; ragq_status; }
location = /job-cancel { ragq_prefix $TEST_NGINX_WPREFIX; ragq_cancel; }
EOF
    $block->set_value('request', "GET /job-status?job_id=") unless defined $block->request;
    $block->set_value('error_code', 400) unless defined $block->error_code;
    $block->set_value('response_body_like', '"code":"missing_job_id"')
      unless defined $block->response_body_like;
});

plan tests => 2 * 12 + 82;
run_tests();

__DATA__

=== TEST 1: a finished job calls back once, signed; README's recipe verifies it; /job-status shows callback delivered
--- init
my $id = main::chat('ok');
my $j = main::callback_of($id);
Test::More::is($j->{status}, 'finished', 'the job finished');
Test::More::is_deeply($j->{callback}, { status => 'delivered', attempts => 1, code => 200 },
    'callback: delivered, 1 attempt, 200');
my @h = main::hooks_for('ok');
Test::More::is(scalar @h, 1, 'one POST');
my $h = $h[0];
Test::More::is($h->{method}, 'POST', 'a POST');
Test::More::is($h->{headers}{'webhook-id'}, "msg_$id", 'webhook-id: msg_<job id>');
Test::More::like($h->{headers}{'webhook-timestamp'}, qr/^\d{10}$/, 'webhook-timestamp: epoch seconds');
Test::More::like($h->{headers}{'webhook-signature'}, qr{^v1,[A-Za-z0-9+/]{43}=$}, 'webhook-signature: v1,<base64 of 32 bytes>');
Test::More::like($h->{headers}{'content-type'}, qr{^application/json}, 'Content-Type: application/json');
my $body = MIME::Base64::decode_base64($h->{body_b64});
my $sent = JSON::PP::decode_json($body);
Test::More::is($sent->{job_id}, $id, 'the body is the job');
Test::More::is($sent->{status}, 'finished', '... finished');
Test::More::is($sent->{result}, $j->{result}, '... with its result');
Test::More::is_deeply([sort keys %$sent], [sort qw(job_id status query result sources error created_at
    started_at ended_at attempts usage callback)], '... the keys of /job-status');
Test::More::is(main::verify($main::Secret, $h), 'ok', "README's recipe verifies it");
Test::More::is(main::verify('whsec_' . MIME::Base64::encode_base64('x' x 32, ''), $h), 'bad',
    'and refuses it with another secret');
my %tampered = (%$h, body_b64 => MIME::Base64::encode_base64($body . ' ', ''));
Test::More::is(main::verify($main::Secret, \%tampered), 'bad', 'and a changed body');
Test::More::unlike($main::W->log, qr/\Q$main::Secret\E|AQIDBAUGBwgJ/, 'the secret is never logged');



=== TEST 2: a receiver answering 500 twice gets it the third time
--- init
$main::S->fault({ path => '/hooks/retry', status => 500, times => 2 });
my $id = main::chat('retry');
my $j = main::callback_of($id);
Test::More::is_deeply($j->{callback}, { status => 'delivered', attempts => 3, code => 200 },
    'callback: delivered on attempt 3');
my @h = main::hooks_for('retry');
Test::More::is(scalar @h, 3, 'three POSTs');
Test::More::is(scalar(grep { $_->{headers}{'webhook-id'} eq "msg_$id" } @h), 3, 'all with the same webhook-id');
Test::More::is(main::verify($main::Secret, $h[2]), 'ok', 'the last one verifies');



=== TEST 3: a redirect is not followed: failed at once with its status
--- init
$main::S->fault({ path => '/hooks/moved', status => 302, times => 1,
                  headers => { Location => $main::S->hook_url('elsewhere') } });
my $id = main::chat('moved');
my $j = main::callback_of($id);
Test::More::is_deeply($j->{callback}, { status => 'failed', attempts => 1, code => 302 },
    'callback: failed, 1 attempt, 302');
Test::More::is(scalar(main::hooks_for('moved')), 1, 'one POST');
Test::More::is(scalar(main::hooks_for('elsewhere')), 0, 'the Location was not followed');



=== TEST 4: another 4xx fails at once; 5xx every time fails after RAGQ_CALLBACK_ATTEMPTS
--- init
$main::S->fault({ path => '/hooks/gone', status => 410, times => 5 });
$main::S->fault({ path => '/hooks/down', status => 503, times => 10 });
my $a = main::chat('gone');
my $b = main::chat('down');
Test::More::is_deeply(main::callback_of($a)->{callback}, { status => 'failed', attempts => 1, code => 410 },
    '410: failed after 1 attempt');
Test::More::is_deeply(main::callback_of($b)->{callback}, { status => 'failed', attempts => 4, code => 503 },
    '503 always: failed after 4 attempts (RAGQ_CALLBACK_ATTEMPTS)');
Test::More::is(scalar(main::hooks_for('down')), 4, 'four POSTs');



=== TEST 5: a failed job calls back too
--- init
$main::S->fault({ path => '/v1/embeddings', status => 401, times => 1 });
my $id = main::chat('failed', 'Who wrote War and Peace?');
my $j = main::callback_of($id);
Test::More::is($j->{status}, 'failed', 'the job failed');
Test::More::is_deeply($j->{callback}, { status => 'delivered', attempts => 1, code => 200 }, 'callback delivered');
my ($h) = main::hooks_for('failed');
my $sent = JSON::PP::decode_json(MIME::Base64::decode_base64($h->{body_b64}));
Test::More::is($sent->{status}, 'failed', 'the body says failed');
Test::More::is($sent->{error}{code}, 'unauthorized', '... with its error');
Test::More::is(main::verify($main::Secret, $h), 'ok', 'and verifies');



=== TEST 6: a job failed by its claim (max_attempts) calls back; a queued job canceled calls back once
--- init
# A job the module queued, then marked as claimed too often: its claim fails it.
my $id = main::chat('claimfail');
my $j = main::callback_of($id);
Test::More::ok($j->{callback}, 'a first job (reference)');
# A job canceled while queued (written as i12-cancel's script does), on a
# queue entry the worker claims: its claim acks it and calls back.
my $cid = 'c' x 32;
Ragq::Valkey::cmd('HSET', "$main::Prefix:job:$cid", status => 'canceled', query => 'q', tenant => '',
    created_at => 1, ended_at => 2, attempts => 0, callback_url => $main::S->hook_url('canceled'),
    error => '{"code":"canceled","message":"canceled by the client"}');
Ragq::Valkey::cmd('XADD', "$main::Prefix:jobs", '*', job => $cid);
my $c = main::callback_of($cid);
Test::More::is($c->{status}, 'canceled', 'still canceled');
Test::More::is_deeply($c->{callback}, { status => 'delivered', attempts => 1, code => 200 }, 'callback delivered');
my @h = main::hooks_for('canceled');
Test::More::is(scalar @h, 1, 'one POST');
Test::More::is(JSON::PP::decode_json(MIME::Base64::decode_base64($h[0]{body_b64}))->{status}, 'canceled', 'saying canceled');
# Claimed more than RAGQ_MAX_ATTEMPTS times: failed by claim.lua.
my $mid = 'd' x 32;
Ragq::Valkey::cmd('HSET', "$main::Prefix:job:$mid", status => 'started', query => 'q', tenant => '',
    created_at => 1, attempts => 3, callback_url => $main::S->hook_url('maxed'));
Ragq::Valkey::cmd('XADD', "$main::Prefix:jobs", '*', job => $mid);
my $m = main::callback_of($mid);
Test::More::is($m->{error}{code}, 'max_attempts', 'failed at its claim');
Test::More::is_deeply($m->{callback}, { status => 'delivered', attempts => 1, code => 200 }, 'callback delivered');



=== TEST 7: a malformed RAGQ_WEBHOOK_SECRET stops the worker at start, saying why, never showing it
--- init
for my $bad ('topsecret-not-whsec-1234', 'whsec_not!base64!secret') {
    my $w = Ragq::Worker->start(env => { RAGQ_PREFIX => "$main::Prefix-bad", RAGQ_WEBHOOK_SECRET => $bad });
    my $st = $w->wait_exit(10);
    Test::More::is(defined $st ? $st >> 8 : undef, 2, "exit 2: $bad");
    Test::More::like($w->log, qr/RAGQ_WEBHOOK_SECRET/, '... naming the setting');
    Test::More::unlike($w->log, qr/\Q$bad\E|secret-not|base64!secret/, '... not the secret');
}



=== TEST 8: a job canceled while it runs (the keep-alive finds it final) calls back once, saying canceled; a job of the old form carries callback_url in its hash
--- init
my $p2 = "$main::Prefix-run";
my $w2 = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $p2, OPENAI_BASE_URL => $main::S->base_url, OPENAI_API_KEY => 'sk-c',
    QDRANT_URL => $main::S->qdrant_url, RAGQ_COLLECTION => 'books', RAGQ_WEBHOOK_SECRET => $main::Secret,
    RAGQ_RECLAIM_AFTER => '3s',
});
$w2->ready or die "worker did not start:\n" . $w2->log;
$main::S->fault({ path => '/v1/chat/completions', mode => 'delay', delay_ms => 6000, times => 1 });
my $id = 'e' x 32;
Ragq::Valkey::cmd('HSET', "$p2:job:$id", status => 'queued', query => 'Who wrote Moby-Dick?', top_k => 1,
    collection => 'books', tenant => '', created_at => 1, attempts => 0,
    callback_url => $main::S->hook_url('running'));
Ragq::Valkey::cmd('XADD', "$p2:jobs", '*', job => $id);
my $deadline = time + 20;
sleep 0.05 while time < $deadline && Ragq::Valkey::cmd('HGET', "$p2:job:$id", 'status') ne 'started';
Test::More::is(Ragq::Valkey::cmd('HGET', "$p2:job:$id", 'status'), 'started', 'the job runs');
Ragq::Valkey::cmd('HSET', "$p2:job:$id", status => 'canceled', ended_at => 2,
    error => '{"code":"canceled","message":"canceled by the client"}');
$deadline = time + 20;
sleep 0.1 while time < $deadline && Ragq::Valkey::cmd('HGET', "$p2:job:$id", 'callback') eq '';
Test::More::is_deeply(JSON::PP::decode_json(Ragq::Valkey::cmd('HGET', "$p2:job:$id", 'callback') || '{}'),
    { status => 'delivered', attempts => 1, code => 200 }, 'callback delivered') or Test::More::diag($w2->log);
my @h = main::hooks_for('running');
Test::More::is(scalar @h, 1, 'one POST');
Test::More::is(@h && JSON::PP::decode_json(MIME::Base64::decode_base64($h[0]{body_b64}))->{status}, 'canceled', 'saying canceled');
Test::More::is(Ragq::Valkey::cmd('HGET', "$p2:job:$id", 'status'), 'canceled', 'no result written over it');
Test::More::is($w2->stop, 0, 'the worker stops cleanly');



=== TEST 9: SIGTERM: a graceful stop waits for a delivery in its backoff (delivered on attempt 2); one that outlasts the grace is dropped with a line, exit 0
--- init
for my $case ([ 'late', 1, '30s' ], [ 'stuck', 100, '1500ms' ]) {
    my ($name, $fails, $grace) = @$case;
    my $p3 = "$main::Prefix-$name";
    my $w = Ragq::Worker->start(env => {
        RAGQ_PREFIX => $p3, RAGQ_WEBHOOK_SECRET => $main::Secret, RAGQ_SHUTDOWN_GRACE => $grace,
        RAGQ_CALLBACK_ATTEMPTS => 100,
    });
    $w->ready or die "worker did not start:\n" . $w->log;
    $main::S->fault({ path => "/hooks/$name", status => 503, times => $fails,
                      headers => { 'Retry-After' => 1 } });
    my $id = ($name eq 'late' ? 'f' : 'a') x 32;
    # A job already failed by its claim (max_attempts): no model call needed.
    Ragq::Valkey::cmd('HSET', "$p3:job:$id", status => 'started', query => 'q', tenant => '',
        created_at => 1, attempts => 3, callback_url => $main::S->hook_url($name));
    Ragq::Valkey::cmd('XADD', "$p3:jobs", '*', job => $id);
    my $deadline = time + 20;
    sleep 0.02 while time < $deadline && !main::hooks_for($name);
    Test::More::ok(scalar(main::hooks_for($name)) >= 1, "$name: a first POST (answered 503)");
    $w->signal('TERM');
    my $st = $w->wait_exit(20);
    Test::More::is(defined $st ? $st >> 8 : undef, 0, "$name: exit 0");
    my $cb = Ragq::Valkey::cmd('HGET', "$p3:job:$id", 'callback');
    if ($name eq 'late') {
        Test::More::is_deeply(JSON::PP::decode_json($cb || '{}'), { status => 'delivered', attempts => 2, code => 200 },
            'late: delivered on attempt 2, after SIGTERM') or Test::More::diag($w->log);
    } else {
        Test::More::is($cb, '', 'stuck: no outcome recorded');
        Test::More::like($w->log, qr/1 callback\(s\) not delivered: the worker stopped first/, 'stuck: said so');
    }
}



=== TEST 10: without RAGQ_WEBHOOK_SECRET nothing is sent: the outcome is failed, 0 attempts, code null
--- init
my $p4 = "$main::Prefix-nokey";
my $w = Ragq::Worker->start(env => { RAGQ_PREFIX => $p4 });
$w->ready or die "worker did not start:\n" . $w->log;
my $id = 'b' x 32;
Ragq::Valkey::cmd('HSET', "$p4:job:$id", status => 'started', query => 'q', tenant => '',
    created_at => 1, attempts => 3, callback_url => $main::S->hook_url('nokey'));
Ragq::Valkey::cmd('XADD', "$p4:jobs", '*', job => $id);
my $deadline = time + 20;
sleep 0.05 while time < $deadline && Ragq::Valkey::cmd('HGET', "$p4:job:$id", 'callback') eq '';
Test::More::is(Ragq::Valkey::cmd('HGET', "$p4:job:$id", 'callback'), '{"status":"failed","attempts":0,"code":null}',
    'recorded failed, 0 attempts, code null');
Test::More::is(scalar(main::hooks_for('nokey')), 0, 'no POST');
Test::More::like($w->log, qr/RAGQ_WEBHOOK_SECRET is not set/, 'the log says why');



=== TEST 11: POST /job-cancel of a running job: the worker aborts it and calls back once, saying canceled
--- init
$main::S->fault({ path => '/v1/chat/completions', mode => 'delay', delay_ms => 8000, times => 1 });
my $id = main::chat('cancel');
my $deadline = time + 20;
sleep 0.05 while time < $deadline && (main::job($id)->{status} // '') ne 'started';
my ($code, $body) = main::http(POST => "/job-cancel?job_id=$id");
Test::More::is($code, 200, 'canceled: 200') or Test::More::diag($body);
my $j = main::callback_of($id);
Test::More::is($j->{status}, 'canceled', 'the job is canceled');
Test::More::is_deeply($j->{callback}, { status => 'delivered', attempts => 1, code => 200 }, 'callback delivered');
my @h = main::hooks_for('cancel');
Test::More::is(scalar @h, 1, 'one POST');
Test::More::is(@h && JSON::PP::decode_json(MIME::Base64::decode_base64($h[0]{body_b64}))->{status}, 'canceled',
    'saying canceled');
Test::More::is(main::verify($main::Secret, $h[0]), 'ok', 'and verifies');



=== TEST 12: RAGQ_CALLBACK_TIMEOUT ends a POST the receiver holds, and it is tried again; RAGQ_CALLBACK_CONCURRENCY caps the POSTs in flight
--- init
# Jobs failed by their claim (max_attempts): a callback without a model call.
my $claim_failed = sub {
    my ($p, $id, $hook) = @_;
    Ragq::Valkey::cmd('HSET', "$p:job:$id", status => 'started', query => 'q', tenant => '',
        created_at => 1, attempts => 3, callback_url => $main::S->hook_url($hook));
    Ragq::Valkey::cmd('XADD', "$p:jobs", '*', job => $id);
};
my $outcome = sub {
    my ($p, $id, $secs) = @_;
    my $deadline = time + $secs;
    sleep 0.05 while time < $deadline && Ragq::Valkey::cmd('HGET', "$p:job:$id", 'callback') eq '';
    return JSON::PP::decode_json(Ragq::Valkey::cmd('HGET', "$p:job:$id", 'callback') || '{}');
};

# A receiver that holds the first two POSTs 10 s: each try gives up after 500 ms.
my $pt = "$main::Prefix-cbto";
my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $pt, RAGQ_WEBHOOK_SECRET => $main::Secret,
    RAGQ_CALLBACK_TIMEOUT => '500ms', RAGQ_CALLBACK_ATTEMPTS => 2,
});
$w->ready or die "worker did not start:\n" . $w->log;
$main::S->fault({ path => '/hooks/held', mode => 'delay', delay_ms => 10000, times => 2 });
my $t0 = time;
$claim_failed->($pt, '1' x 32, 'held');
Test::More::is_deeply($outcome->($pt, '1' x 32, 30), { status => 'failed', attempts => 2, code => undef },
    'held: failed after 2 attempts, no status') or Test::More::diag($w->log);
Test::More::cmp_ok(time - $t0, '<', 8, "held: given up after the timeouts, not the receiver's 10 s");
Test::More::is(scalar(main::hooks_for('held')), 2, 'held: two POSTs');
Test::More::like($w->log, qr/job 1{32}: callback failed after 2 attempt\(s\): no answer within 500 ms/,
    'held: the log says no answer came within RAGQ_CALLBACK_TIMEOUT');
$w->stop;

# Five callbacks to a receiver that takes 1.5 s each, two at a time: they
# arrive in three waves, the third POST only once one of the first two ended.
my $pc = "$main::Prefix-cbcc";
$w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $pc, RAGQ_WEBHOOK_SECRET => $main::Secret, RAGQ_CALLBACK_CONCURRENCY => 2,
});
$w->ready or die "worker did not start:\n" . $w->log;
$main::S->fault({ path => '/hooks/busy', mode => 'delay', delay_ms => 1500, times => 5 });
my @ids = map { $_ x 32 } qw(2 3 4 5 6);
$claim_failed->($pc, $_, 'busy') for @ids;
my @got = map { $outcome->($pc, $_, 30) } @ids;
Test::More::is(scalar(grep { ($_->{status} // '') eq 'delivered' && $_->{attempts} == 1 } @got), 5,
    'busy: all five delivered at the first attempt') or Test::More::diag($w->log);
my @at = sort { $a <=> $b } map { $_->{at} } main::hooks_for('busy');
Test::More::is(scalar @at, 5, 'busy: five POSTs');
Test::More::cmp_ok($at[2] - $at[0], '>=', 1.3, 'busy: the third began when one of the first two ended');
Test::More::cmp_ok($at[4] - $at[2], '>=', 1.3, 'busy: the fifth began when one of the next two ended');
$w->stop;
