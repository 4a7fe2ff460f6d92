# ragq_status_url: the Location and status_url of the 202 follow the status
# location wherever it is: a non-default location (and the URL returned
# answers 200 there), a value inherited from http{}, a URL with arguments of
# its own (&job_id=), variables, and JSON escaping of a URL that needs it.
use Test::Nginx::Socket;
use Ragq::Valkey;
use IO::Socket::INET;
use JSON::PP ();

no_shuffle();
no_long_string();

# POST /chat of our own; (Location, status_url of the body).
sub post_chat {
    my ($path, $headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => server_port(), Timeout => 5) or die "connect: $!";
    print $s "POST $path HTTP/1.0\r\nHost: localhost\r\n" . ($headers // '') . "\r\n";
    local $/;
    my $resp = <$s>;
    close $s;
    die "POST $path: $resp\n" unless $resp =~ m{^HTTP/1\.\d 202};
    my ($loc) = $resp =~ /^Location: (.*?)\r$/m;
    my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
    return ($loc, JSON::PP::decode_json($body)->{status_url});
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('no_error_log', "[error]\n[alert]\n")
      unless defined $block->no_error_log;
    # the URL a POST /chat of this block's config returned, read back
    if ($block->name =~ /\bTEST 2:/) {
        my ($loc) = main::post_chat('/chat?query=where');
        $block->set_value('request', "GET $loc");
    }
});

plan tests => 28;
run_tests();

__DATA__

=== TEST 1: a status location elsewhere: Location and status_url point at it
--- config
location = /chat { ragq_prefix su; ragq_status_url /api/v1/rag/status; ragq_enqueue; }
location = /api/v1/rag/status { ragq_prefix su; ragq_status; }
--- request
POST /chat?query=where
--- error_code: 202
--- response_headers_like
Location: /api/v1/rag/status\?job_id=[0-9a-f]{32}
--- response_body_like chomp
^\{"status":"queued","job_id":"([0-9a-f]{32})","status_url":"/api/v1/rag/status\?job_id=\1"\}$



=== TEST 2: the returned URL answers 200 with the job
--- config
location = /chat { ragq_prefix su; ragq_status_url /api/v1/rag/status; ragq_enqueue; }
location = /api/v1/rag/status { ragq_prefix su; ragq_status; }
--- error_code: 200
--- response_body_like chomp
"status":"queued","query":"where"



=== TEST 3: inherited from http{}, a URL with an argument of its own
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_status_url /rag?op=status;
--- config
location = /chat { ragq_prefix su; ragq_enqueue; }
--- request
POST /chat?query=args
--- error_code: 202
--- response_headers_like
Location: /rag\?op=status&job_id=[0-9a-f]{32}
--- response_body_like chomp
"status_url":"/rag\?op=status&job_id=[0-9a-f]{32}"



=== TEST 4: variables: a prefix from a request header
--- config
location = /chat { ragq_prefix su; ragq_status_url $http_x_base/job-status; ragq_enqueue; }
--- more_headers
X-Base: /tenant-a
--- request
POST /chat?query=vars
--- error_code: 202
--- response_headers_like
Location: /tenant-a/job-status\?job_id=[0-9a-f]{32}
--- response_body_like chomp
"status_url":"/tenant-a/job-status\?job_id=[0-9a-f]{32}"



=== TEST 5: a URL that needs JSON escaping is escaped in the body, not in Location
--- config
location = /chat { ragq_prefix su; ragq_status_url '/s/$http_x_q'; ragq_enqueue; }
--- more_headers
X-Q: a"b\c
--- request
POST /chat?query=escape
--- error_code: 202
--- response_headers_like
Location: /s/a"b\\c\?job_id=[0-9a-f]{32}
--- response_body_like chomp
"status_url":"/s/a\\"b\\\\c\?job_id=[0-9a-f]{32}"\}$



=== TEST 6: the default is /job-status
--- config
location = /chat { ragq_prefix su; ragq_enqueue; }
--- request
POST /chat?query=default
--- error_code: 202
--- response_headers_like
Location: /job-status\?job_id=[0-9a-f]{32}
