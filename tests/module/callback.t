# callback_url in the /chat JSON body (DESIGN §1, README "Callbacks"): none
# allowed is 400 callbacks_disabled; a URL that does not start with a
# ragq_callback_allow prefix, or that a client could read another way
# (userinfo, dot segments, controls, spaces, other schemes, too long), is
# 400 callback_not_allowed; an allowed one travels in the queue entry as
# callback_url (absent without one), and an Idempotency-Key counts it as
# part of the question. Prefixes that do not end their authority with "/"
# fail the configuration.
use Test::Nginx::Socket;
use Ragq::Valkey;
use IO::Socket::INET;

no_shuffle();
no_long_string();

# One POST of our own, on a fresh connection: (status, body).
sub post {
    my ($path, $body, $headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ENV{TEST_NGINX_SERVER_PORT}, Timeout => 10) or die "connect: $!";
    print $s "POST $path HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n" . ($headers // '') . "\r\n$body";
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($code) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my (undef, $b) = split /\r\n\r\n/, $resp, 2;
    return ($code // 0, $b // '');
}

# The fields of the queue entry of job id (its entry id is in the id).
sub entry_fields {
    my ($id) = @_;
    my $e = do { no warnings "portable"; sprintf("%d-%d", hex(substr($id, 0, 12)), hex(substr($id, 12, 4))) };
    my @f = Ragq::Valkey::cmd_list('XRANGE', 'cbm:jobs', $e, $e);
    shift @f;
    return @f;
}

our @Hostile = (
    'http://hooks.test.evil.example/cb/x',     # the host goes on
    'http://hooks.test@evil.example/cb/x',     # userinfo
    'http://hooks.test/cb@evil.example/',      # not the prefix either
    'http://hooks.test/cb/../admin',           # dot segments
    'http://hooks.test/cb/%2e%2e/admin',
    'http://hooks.test/cb/%2E%2E/admin',
    'http://hooks.test/cb/./x',
    'http://hooks.test/cb/..',
    'http://hooks.test/cb/a b',                # space
    "http://hooks.test/cb/a\\r\\nX-Evil: 1",   # controls (JSON-escaped)
    "http://hooks.test/cb/a\\u0000",           # NUL
    "http://hooks.test/cb/\\u00e9",            # not ASCII
    'http://hooks.test/cb/a\\\\..\\\\x',       # backslashes
    'HTTP://hooks.test/cb/x',                  # compared exactly
    'https://hooks.test/cb/x',                 # another scheme than allowed
    'ftp://hooks.test/cb/x',
    'javascript:alert(1)',
    'file:///etc/passwd',
    '',
    'http://hooks.test/cb/' . ('a' x 2100),    # over 2048 bytes
);

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat {
    ragq_prefix cbm;
    ragq_callback_allow http://hooks.test/cb/ http://127.0.0.1:9/other/;
    ragq_callback_allow http://hooks2.test:8080/;
    ragq_enqueue;
}
location = /chat-nocb { ragq_prefix cbm; ragq_enqueue; }
location = /job-status { ragq_prefix cbm; ragq_status; }
EOF
});

plan tests => 2 * @Hostile + 33;
run_tests();

__DATA__

=== TEST 1: no ragq_callback_allow: a callback_url is 400 callbacks_disabled
--- more_headers
Content-Type: application/json
--- request
POST /chat-nocb
{"query": "q", "callback_url": "http://hooks.test/cb/x"}
--- error_code: 400
--- response_body_like chomp
^\{"error":\{"code":"callbacks_disabled","message":".*ragq_callback_allow.*"\}\}$



=== TEST 2: a callback_url that is not a string is refused
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": "q", "callback_url": 42}
--- error_code: 400
--- response_body_like chomp
"code":"callback_not_allowed"



=== TEST 3: twice in the body: 400
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": "q", "callback_url": "http://hooks.test/cb/1", "callback_url": "http://hooks.test/cb/2"}
--- error_code: 400
--- response_body_like chomp
"callback_url\\" more than once



=== TEST 4: hostile URLs, each one
--- init
for my $u (@main::Hostile) {
    my ($code, $body) = main::post('/chat', qq({"query": "q", "callback_url": "$u"}));
    Test::More::is($code, 400, "refused: " . substr($u, 0, 60));
    Test::More::like($body, qr/"code":"callback_not_allowed"/, "... callback_not_allowed: " . substr($u, 0, 60));
}
Test::More::is(Ragq::Valkey::cmd('XLEN', 'cbm:jobs'), 0, 'nothing queued');
--- request
GET /job-status?job_id=
--- error_code: 400
--- response_body_like chomp
"code":"missing_job_id"



=== TEST 5: allowed URLs are queued with the entry's callback_url; null and absent: no field
--- init
my ($code, $body) = main::post('/chat', q({"query": "q", "callback_url": "http://hooks.test/cb/job?x=1"}));
Test::More::is($code, 202, 'an allowed prefix: 202');
my ($id) = $body =~ /"job_id":"([0-9a-f]{32})"/;
my %f = main::entry_fields($id);
Test::More::is($f{callback_url}, 'http://hooks.test/cb/job?x=1', 'the entry carries callback_url');
Test::More::is_deeply([sort keys %f], [qw(callback_url collection created_at query r tenant top_k)], 'after the other fields');
($code, $body) = main::post('/chat', q({"query": "q", "callback_url": "http://hooks2.test:8080/"}));
Test::More::is($code, 202, 'a prefix of a second directive: 202');
($code, $body) = main::post('/chat', q({"query": "q", "callback_url": "http://127.0.0.1:9/other/a"}));
Test::More::is($code, 202, 'the second prefix of a directive: 202');
($code, $body) = main::post('/chat', q({"callback_url": null, "query": "q"}));
Test::More::is($code, 202, 'null: 202');
($id) = $body =~ /"job_id":"([0-9a-f]{32})"/;
%f = main::entry_fields($id);
Test::More::ok(!exists $f{callback_url}, 'null: no callback_url field');
($code, $body) = main::post('/chat', q({"query": "q"}));
($id) = $body =~ /"job_id":"([0-9a-f]{32})"/;
%f = main::entry_fields($id);
Test::More::ok(!exists $f{callback_url}, 'absent: no callback_url field');
--- request
GET /job-status?job_id=
--- error_code: 400
--- response_body_like chomp
"code":"missing_job_id"



=== TEST 6: Idempotency-Key: the same callback_url is the same job, another one is 422
--- init
my $h = "Idempotency-Key: cb-$$-" . time() . "\r\n";
my ($c1, $b1) = main::post('/chat', q({"query": "q", "callback_url": "http://hooks.test/cb/a"}), $h);
my ($c2, $b2) = main::post('/chat', q({"query": "q", "callback_url": "http://hooks.test/cb/a"}), $h);
my ($c3, $b3) = main::post('/chat', q({"query": "q", "callback_url": "http://hooks.test/cb/b"}), $h);
my ($c4, $b4) = main::post('/chat', q({"query": "q"}), $h);
Test::More::is($c1, 202, 'first: 202');
Test::More::is($c2, 202, 'again: 202');
my ($i1) = $b1 =~ /"job_id":"(\w+)"/;
my ($i2) = $b2 =~ /"job_id":"(\w+)"/;
Test::More::is($i2, $i1, 'again: the same job');
my %f = main::entry_fields($i1);
Test::More::is($f{callback_url}, 'http://hooks.test/cb/a', 'the script\'s entry carries callback_url');
Test::More::is($c3, 422, 'another callback_url: 422');
Test::More::is($c4, 422, 'none: 422');
my $h2 = "Idempotency-Key: cb2-$$-" . time() . "\r\n";
my ($c5, $b5) = main::post('/chat', q({"query": "q"}), $h2);
my ($c6, $b6) = main::post('/chat', q({"query": "q"}), $h2);
my ($i5) = $b5 =~ /"job_id":"(\w+)"/;
my ($i6) = $b6 =~ /"job_id":"(\w+)"/;
Test::More::is($i6, $i5, 'no callback twice: the same job');
%f = main::entry_fields($i5);
Test::More::ok(!exists $f{callback_url}, 'and no callback_url field');
--- request
GET /job-status?job_id=
--- error_code: 400
--- response_body_like chomp
"code":"missing_job_id"



=== TEST 7: a prefix without "/" after its host fails the configuration
--- config
location = /chat { ragq_callback_allow http://hooks.test; ragq_enqueue; }
--- must_die
--- error_log
must name a host and end its authority with "/"



=== TEST 8: a prefix of another scheme fails the configuration
--- config
location = /chat { ragq_callback_allow ftp://hooks.test/; ragq_enqueue; }
--- must_die
--- error_log
must start with http:// or https://
