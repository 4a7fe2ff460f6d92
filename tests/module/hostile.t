# Hostile input (issue 10): a table of malformed requests sent over raw
# sockets to one nginx, each answered by the module with a 4xx JSON error
# (or a 202), or by nginx itself before the module (its own HTML page, or
# the connection closed), never a 5xx from the module; then a table of
# hostile job hashes written into Valkey, each read back through
# /job-status as strict JSON in UTF-8 (JSON::PP, Encode) or a clean JSON
# error. Both tables run from --- init (a Perl driver over sockets: the
# block format has one request per block, and no way to check a body with
# a strict parser); Test::Nginx starts nginx and checks its error.log.
# Rows say who answers: "nginx" rows are nginx's own answers, which the
# module never sees; every other row is the module's.
use Test::Nginx::Socket;
use Ragq::Valkey;
use IO::Socket::INET;
use IO::Select;
use JSON::PP ();
use Encode ();
use Digest::SHA ();
use Time::HiRes ();

master_on();
workers(1);
no_shuffle();
no_long_string();

our $Id = '0000000000000000000000000000b0b0';
our $Missing = '0000000000000000000000000000dead';
our $JSON = JSON::PP->new->utf8;

# ---- talking to nginx and Valkey ----

# Sends raw bytes (a list: the pieces, each written on its own; a piece
# "SHUT" half-closes the connection) and reads until nginx closes it.
# Returns (status or undef when nothing came back, headers, body).
sub http_raw {
    my @pieces = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ENV{TEST_NGINX_SERVER_PORT}, Proto => 'tcp', Timeout => 5)
      or die "connect: $!\n";
    local $SIG{PIPE} = 'IGNORE';
    for my $p (@pieces) {
        if ($p eq 'SHUT') { shutdown($s, 1); next }
        my $off = 0;
        while ($off < length $p) {
            my $n = syswrite($s, $p, 65536, $off);
            last unless defined $n;    # nginx may close before all is sent
            $off += $n;
        }
    }
    my $resp = '';
    my $sel = IO::Select->new($s);
    # the 50 MB answer takes seconds to start under ASan on a loaded machine
    my $deadline = Time::HiRes::time() + 120;
    while (Time::HiRes::time() < $deadline) {
        last unless $sel->can_read(60);
        my $n = sysread($s, my $buf, 1 << 20);
        last unless $n;
        $resp .= $buf;
    }
    close $s;
    return (undef, '', '') unless length $resp;
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    my ($status) = $head =~ m{^HTTP/1\.[01] (\d{3})};
    return ($status, $head, $body // '');
}

# One command to Valkey in RESP, so that values may hold any byte (NUL
# too, which redis-cli's arguments cannot). Returns the first reply line.
sub redis_raw {
    my @args = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => Ragq::Valkey::port(), Proto => 'tcp', Timeout => 10)
      or die "redis connect: $!\n";
    my $cmd = '*' . scalar(@args) . "\r\n";
    $cmd .= '$' . length($_) . "\r\n$_\r\n" for @args;
    print $s $cmd;
    my $line = <$s>;
    close $s;
    die "redis: @args[0,1]: $line" if !defined $line || $line =~ /^-/;
    return $line;
}

sub seed {
    my ($key, @fields) = @_;
    redis_raw('DEL', $key);
    redis_raw('HSET', $key, @fields) if @fields;
}

# ---- what an answer must be ----

# The module's answers: application/json, a strict JSON object in UTF-8.
sub module_json {
    my ($name, $head, $body) = @_;
    return (0, "not application/json") unless $head =~ m{^Content-Type: application/json\r?$}mi;
    return (0, "not UTF-8") unless eval {
        Encode::decode('UTF-8', my $copy = $body, Encode::FB_CROAK); 1 };
    my $v = eval { $JSON->decode($body) };
    return (0, "not JSON: $@") unless ref $v eq 'HASH';
    return (1, $v);
}

# A row: [name, request pieces (string or array), expected, setup sub].
# Expected: "202", "<status> <code>" (the module's JSON error), "nginx
# <status>" (nginx's own page, before the module), "closed" (nginx closes
# without an answer); "a|b" allows either.
sub check_row {
    my ($name, $req, $expect, $setup) = @_;
    $setup->() if $setup;
    my ($status, $head, $body) = http_raw(ref $req ? @$req : $req);
    my @ok = split /\|/, $expect;
    my ($what, $why) = ('', '');
    for my $e (@ok) {
        if ($e eq 'closed') {
            ($what, $why) = ('closed', defined $status ? "answered $status" : '');
        } elsif ($e =~ /^nginx (\d+)$/) {
            my $code = $1;
            $what = "nginx $code";
            $why = !defined $status ? 'closed'
              : $status != $code ? "answered $status"
              : $head =~ m{^Content-Type: application/json}mi ? 'a JSON answer: the module\'s?'
              : '';
        } elsif ($e =~ /^(\d+)(?: (\w+))?$/) {
            my ($code, $err) = ($1, $2);
            $what = $e;
            if (!defined $status) { $why = 'closed'; }
            elsif ($status != $code) { $why = "answered $status: $body"; }
            else {
                my ($good, $v) = module_json($name, $head, $body);
                if (!$good) { $why = $v }
                elsif (defined $err) {
                    my $ok = ref $v->{error} eq 'HASH' && keys(%$v) == 1
                      && keys(%{ $v->{error} }) == 2
                      && defined $v->{error}{code} && $v->{error}{code} eq $err
                      && defined $v->{error}{message} && !ref $v->{error}{message};
                    $why = $ok ? '' : "not the error $err: $body";
                } else {
                    $why = ($v->{status} // '') eq 'queued'
                      && ($v->{job_id} // '') =~ /^[0-9a-f]{32}$/ ? '' : "not a 202 body: $body";
                }
            }
        }
        last if $why eq '';
    }
    Test::More::ok($why eq '', "request: $name: $expect" . ($why eq '' ? '' : " ($why)"));
    Test::More::ok(!defined $status || $status < 500
          || grep({ $_ eq "nginx $status" } @ok),
        "request: $name: no 5xx" . (defined $status ? " ($status)" : ''));
}

# ---- the requests ----

my $H = "Host: x\r\nConnection: close\r\n";
sub post_json {
    my ($body, $extra, $uri) = @_;
    return "POST " . ($uri // '/chat') . " HTTP/1.1\r\n${H}Content-Type: application/json\r\n"
      . ($extra // '') . "Content-Length: " . length($body) . "\r\n\r\n$body";
}
sub post_chunked {
    my ($raw, $extra) = @_;
    return "POST /chat HTTP/1.1\r\n${H}Content-Type: application/json\r\n"
      . "Transfer-Encoding: chunked\r\n" . ($extra // '') . "\r\n$raw";
}
sub chunks { join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) } @_) . "0\r\n\r\n" }
sub req {
    my ($method, $uri, $extra) = @_;
    return "$method $uri HTTP/1.1\r\n$H" . ($extra // '') . "\r\n";
}
my $deep = '[' x 10000 . ']' x 10000;
my $deepobj = '{"a":' x 10000 . '1' . '}' x 10000;
my $idem_seen = sub { http_raw(req('POST', '/chat?query=first', "Idempotency-Key: hostile-reuse\r\n")) };

our @Requests = (
    # -- chunked and truncated bodies (nginx parses the framing) --
    ['chunked, one chunk', post_chunked(chunks('{"query":"t"}')), '202'],
    ['chunked, 1-byte chunks', post_chunked(chunks(split //, '{"query":"one byte at a time"}')), '202'],
    ['chunked, extensions and a trailer', post_chunked("d;ext=1\r\n{\"query\":\"t\"}\r\n0\r\nX-Trailer: 1\r\n\r\n"), '202'],
    ['chunked, empty body', post_chunked("0\r\n\r\n"), '400 missing_query'],
    ['chunked, not JSON', post_chunked(chunks('query=t')), '400 invalid_json'],
    ['chunked, size not hex', post_chunked("zz\r\n{}\r\n0\r\n\r\n"), 'nginx 400'],
    ['chunked, size overflows', post_chunked("ffffffffffffffffffff\r\nx\r\n0\r\n\r\n"), 'nginx 400|nginx 413'],
    ['chunked, negative size', post_chunked("-5\r\nhello\r\n0\r\n\r\n"), 'nginx 400'],
    ['chunked, more data than the size', post_chunked("2\r\n{\"query\":\"t\"}\r\n0\r\n\r\n"), 'nginx 400'],
    ['chunked, no CRLF after data', post_chunked("d\r\n{\"query\":\"t\"}0\r\n\r\n"), 'nginx 400'],
    ['chunked, cut off (client closes)', [post_chunked("d\r\n{\"query\""), 'SHUT'], 'closed|nginx 400'],
    ['chunked over the body limit', post_chunked(chunks('{"query":"' . ('a' x 110000) . '"}')), '413 body_too_large'],
    ['chunked and Content-Length together', "POST /chat HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n" . chunks('{"query":"t"}'), 'nginx 400'],
    ['Transfer-Encoding: gzip (nginx: 501, RFC 9112 6.1)', "POST /chat HTTP/1.1\r\n${H}Content-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\nxx", 'nginx 501'],
    ['Content-Length body cut off (client closes)', ["POST /chat HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\"", 'SHUT'], 'closed|nginx 400'],
    ['Content-Length: -1', "POST /chat HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: -1\r\n\r\n", 'nginx 400'],
    ['Content-Length: abc', "POST /chat HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: abc\r\n\r\n", 'nginx 400'],
    ['Content-Length twice', "POST /chat HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 13\r\nContent-Length: 13\r\n\r\n{\"query\":\"t\"}", 'nginx 400'],
    ['Content-Length of 20 digits', "POST /chat HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 99999999999999999999\r\n\r\n", 'nginx 400'],
    ['Content-Length: 0', "POST /chat HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 0\r\n\r\n", '400 missing_query'],
    ['body over client_max_body_size: nginx\'s HTML 413', post_json('{"query":"' . ('a' x 2000) . '"}', '', '/small/chat'), 'nginx 413'],
    ['... with the documented error_page 413: JSON', post_json('{"query":"' . ('a' x 2000) . '"}', '', '/json413/chat'), '413 body_too_large'],
    ['body over the module\'s limit', post_json('{"query":"' . ('a' x 110000) . '"}'), '413 body_too_large'],
    ['question over ragq_max_query_length', post_json('{"query":"' . ('a' x 65) . '"}', '', '/small/chat'), '413 query_too_long'],
    # -- headers --
    ['a 10 kB header (over large_client_header_buffers)', req('POST', '/chat?query=t', 'X-Big: ' . ('b' x 10000) . "\r\n"), 'nginx 400'],
    ['a 9 kB request line (nginx: 414)', req('POST', '/chat?query=' . ('q' x 9000)), 'nginx 414'],
    ['100 headers', req('POST', '/chat?query=t', join('', map { "X-H$_: v\r\n" } 1 .. 100)), '202'],
    ['1,000 headers (over nginx\'s header buffers)', req('POST', '/chat?query=t', join('', map { "X-H$_: v\r\n" } 1 .. 1000)), 'nginx 400'],
    ['Content-Type twice', post_json('{"query":"t"}', "Content-Type: text/plain\r\n"), '202|415 unsupported_media_type'],
    ['Content-Type text/plain', "POST /chat HTTP/1.1\r\n${H}Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n{\"query\":\"t\"}", '415 unsupported_media_type'],
    ['Content-Type application/jsonx', "POST /chat HTTP/1.1\r\n${H}Content-Type: application/jsonx\r\nContent-Length: 13\r\n\r\n{\"query\":\"t\"}", '415 unsupported_media_type'],
    ['no Content-Type', "POST /chat HTTP/1.1\r\n${H}Content-Length: 13\r\n\r\n{\"query\":\"t\"}", '415 unsupported_media_type'],
    ['a form body', "POST /chat HTTP/1.1\r\n${H}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nquery=t", '415 unsupported_media_type'],
    ['NUL in a header value', req('POST', '/chat?query=t', "X-A: a\0b\r\n"), 'nginx 400'],
    ['NUL in the URI', req('POST', "/chat?query=a\0b"), 'nginx 400'],
    ['no Host in HTTP/1.1', "POST /chat?query=t HTTP/1.1\r\nConnection: close\r\n\r\n", 'nginx 400'],
    ['HTTP/2.0 request line (nginx: 505)', "POST /chat?query=t HTTP/2.0\r\n$H\r\n", 'nginx 505'],
    ['a method nginx does not know', req('BREW', '/chat?query=t'), '405 method_not_allowed'],
    ['a header line without a colon', req('POST', '/chat?query=t', "Broken header\r\n"), 'nginx 400'],
    ['invalid UTF-8 in a header value', req('POST', '/chat?query=t', "X-A: \xff\xfe\r\n"), '202'],
    # -- JSON bodies --
    ['empty object', post_json('{}'), '400 missing_query'],
    ['whitespace only', post_json("  \r\n\t "), '400 invalid_json'],
    ['only "{"', post_json('{'), '400 invalid_json'],
    ['key without value', post_json('{"query":'), '400 invalid_json'],
    ['unterminated string', post_json('{"query":"abc'), '400 invalid_json'],
    ['object not closed', post_json('{"query":"abc"'), '400 invalid_json'],
    ['an array', post_json('["query"]'), '400 invalid_json'],
    ['a string', post_json('"query"'), '400 invalid_json'],
    ['null', post_json('null'), '400 invalid_json'],
    ['trailing comma', post_json('{"query":"a",}'), '400 invalid_json'],
    ['unquoted key', post_json('{query:"a"}'), '400 invalid_json'],
    ['single quotes', post_json("{'query':'a'}"), '400 invalid_json'],
    ['two objects', post_json('{"query":"a"} {"query":"b"}'), '400 invalid_json'],
    ['a BOM first', post_json("\xef\xbb\xbf{\"query\":\"a\"}"), '400 invalid_json'],
    ['10,000-deep arrays in another key', post_json('{"x":' . $deep . ',"query":"a"}'), '400 invalid_json'],
    ['10,000-deep objects in another key', post_json('{"x":' . $deepobj . ',"query":"a"}'), '400 invalid_json'],
    ['10,000-deep arrays as the body', post_json($deep), '400 invalid_json'],
    ['32-deep arrays in another key (the limit)', post_json('{"x":' . ('[' x 32) . (']' x 32) . ',"query":"a"}'), '202'],
    ['query a number', post_json('{"query":1}'), '400 invalid_query'],
    ['query null', post_json('{"query":null}'), '400 invalid_query'],
    ['query an array', post_json('{"query":["a"]}'), '400 invalid_query'],
    ['query empty', post_json('{"query":""}'), '400 invalid_query'],
    ['query with \u0000', post_json('{"query":"a\u0000b"}'), '400 invalid_query'],
    ['query with a raw NUL', post_json("{\"query\":\"a\0b\"}"), '400 invalid_json'],
    ['query with a raw control byte', post_json("{\"query\":\"a\x01b\"}"), '400 invalid_json'],
    ['query with \xff', post_json("{\"query\":\"a\xffb\"}"), '400 invalid_utf8'],
    ['query with an overlong "/" (C0 AF)', post_json("{\"query\":\"\xc0\xaf\"}"), '400 invalid_utf8'],
    ['query with an overlong 3-byte NUL', post_json("{\"query\":\"\xe0\x80\x80\"}"), '400 invalid_utf8'],
    ['query with a UTF-8 surrogate', post_json("{\"query\":\"\xed\xa0\x80\"}"), '400 invalid_utf8'],
    ['query above U+10FFFF', post_json("{\"query\":\"\xf4\x90\x80\x80\"}"), '400 invalid_utf8'],
    ['query with a cut sequence', post_json("{\"query\":\"ab\xe2\x82\"}"), '400 invalid_utf8'],
    ['invalid UTF-8 in another key', post_json("{\"x\":\"\xff\",\"query\":\"a\"}"), '400 invalid_utf8'],
    ['lone high surrogate escape', post_json('{"query":"\ud800"}'), '400 invalid_json'],
    ['lone low surrogate escape', post_json('{"query":"\udc00"}'), '400 invalid_json'],
    ['a surrogate pair escape', post_json('{"query":"\ud83d\ude80"}'), '202'],
    ['unknown escape', post_json('{"query":"\x"}'), '400 invalid_json'],
    ['\u with a non-hex digit', post_json('{"query":"\u12g4"}'), '400 invalid_json'],
    ['"query" twice', post_json('{"query":"a","query":"b"}'), '400 invalid_json'],
    ['"top_k" twice', post_json('{"query":"a","top_k":1,"top_k":2}'), '400 invalid_json'],
    ['another key twice', post_json('{"x":1,"x":2,"query":"a"}'), '202'],
    ['a 50 kB key', post_json('{"' . ('k' x 50000) . '":1,"query":"a"}'), '202'],
    ['top_k 0', post_json('{"query":"a","top_k":0}'), '400 invalid_top_k'],
    ['top_k -1', post_json('{"query":"a","top_k":-1}'), '400 invalid_top_k'],
    ['top_k -0', post_json('{"query":"a","top_k":-0}'), '400 invalid_top_k'],
    ['top_k 1e2', post_json('{"query":"a","top_k":1e2}'), '400 invalid_top_k'],
    ['top_k 3.0', post_json('{"query":"a","top_k":3.0}'), '400 invalid_top_k'],
    ['top_k "5"', post_json('{"query":"a","top_k":"5"}'), '400 invalid_top_k'],
    ['top_k of 25 digits', post_json('{"query":"a","top_k":9999999999999999999999999}'), '400 invalid_top_k'],
    ['top_k 1e99999', post_json('{"query":"a","top_k":1e99999}'), '400 invalid_top_k'],
    ['top_k true', post_json('{"query":"a","top_k":true}'), '400 invalid_top_k'],
    ['top_k null (the default)', post_json('{"query":"a","top_k":null}'), '202'],
    ['top_k 007 (not JSON)', post_json('{"query":"a","top_k":007}'), '400 invalid_json'],
    ['a huge number elsewhere', post_json('{"x":1e999999,"y":-0.0e-0,"query":"a"}'), '202'],
    ['a number cut after "-"', post_json('{"x":-,"query":"a"}'), '400 invalid_json'],
    # -- the query string --
    ['query= empty', req('POST', '/chat?query='), '400 invalid_query'],
    ['query=%00', req('POST', '/chat?query=%00'), '400 invalid_query'],
    ['query=a%00b', req('POST', '/chat?query=a%00b'), '400 invalid_query'],
    ['query=%ff', req('POST', '/chat?query=%ff'), '400 invalid_utf8'],
    ['query=%c0%af', req('POST', '/chat?query=%c0%af'), '400 invalid_utf8'],
    ['query=%zz', req('POST', '/chat?query=%zz'), '400 invalid_query'],
    ['query=%', req('POST', '/chat?query=%'), '400 invalid_query'],
    ['query=%4', req('POST', '/chat?query=%4'), '400 invalid_query'],
    ['query twice (the first wins)', req('POST', '/chat?query=a&query=%ff'), '202'],
    ['QUERY= (names ignore case)', req('POST', '/chat?QUERY=a'), '202'],
    ['query without "="', req('POST', '/chat?query'), '400 missing_query'],
    ['top_k=abc', req('POST', '/chat?query=a&top_k=abc'), '400 invalid_top_k'],
    ['top_k=', req('POST', '/chat?query=a&top_k='), '400 invalid_top_k'],
    ['top_k=-1', req('POST', '/chat?query=a&top_k=-1'), '400 invalid_top_k'],
    ['top_k=99999999999', req('POST', '/chat?query=a&top_k=99999999999'), '400 invalid_top_k'],
    ['top_k=5.5', req('POST', '/chat?query=a&top_k=5.5'), '400 invalid_top_k'],
    # -- methods --
    ['GET /chat', req('GET', '/chat?query=a'), '405 method_not_allowed'],
    ['PUT /chat', req('PUT', '/chat?query=a'), '405 method_not_allowed'],
    ['DELETE /job-status', req('DELETE', "/job-status?job_id=$Id"), '405 method_not_allowed'],
    ['POST /job-status with a body', post_json('{"job_id":"x"}', '', "/job-status?job_id=$Id"), '405 method_not_allowed'],
    # -- /job-status arguments --
    ['no job_id', req('GET', '/job-status'), '400 missing_job_id'],
    ['job_id=', req('GET', '/job-status?job_id='), '400 missing_job_id'],
    ['job_id uppercase', req('GET', '/job-status?job_id=' . uc $Missing), '400 invalid_job_id'],
    ['job_id of 31', req('GET', '/job-status?job_id=' . substr($Missing, 1)), '400 invalid_job_id'],
    ['job_id of 33', req('GET', "/job-status?job_id=${Missing}0"), '400 invalid_job_id'],
    ['job_id not hex', req('GET', '/job-status?job_id=' . ('g' x 32)), '400 invalid_job_id'],
    ['job_id percent-encoded', req('GET', '/job-status?job_id=%30' . substr($Missing, 1)), '400 invalid_job_id'],
    ['job_id with %00', req('GET', '/job-status?job_id=%00'), '400 invalid_job_id'],
    ['job_id twice (the first wins)', req('GET', "/job-status?job_id=$Missing&job_id=x"), '404 job_not_found'],
    ['unknown job', req('GET', "/job-status?job_id=$Missing"), '404 job_not_found'],
    ['wait=-1', req('GET', "/job-status?job_id=$Missing&wait=-1"), '400 invalid_wait'],
    ['wait=abc', req('GET', "/job-status?job_id=$Missing&wait=abc"), '400 invalid_wait'],
    ['wait=', req('GET', "/job-status?job_id=$Missing&wait="), '400 invalid_wait'],
    ['wait=1e3', req('GET', "/job-status?job_id=$Missing&wait=1e3"), '400 invalid_wait'],
    ['wait=.5', req('GET', "/job-status?job_id=$Missing&wait=.5"), '400 invalid_wait'],
    ['wait=+1', req('GET', "/job-status?job_id=$Missing&wait=+1"), '400 invalid_wait'],
    ['wait=0x10', req('GET', "/job-status?job_id=$Missing&wait=0x10"), '400 invalid_wait'],
    ['wait=NaN', req('GET', "/job-status?job_id=$Missing&wait=NaN"), '400 invalid_wait'],
    ['wait=5. (a number)', req('GET', "/job-status?job_id=$Missing&wait=5."), '404 job_not_found'],
    ['wait=0.0001', req('GET', "/job-status?job_id=$Missing&wait=0.0001"), '404 job_not_found'],
    ['wait of 25 digits (capped)', req('GET', "/job-status?job_id=$Missing&wait=9999999999999999999999999"), '404 job_not_found'],
    # -- Idempotency-Key --
    ['Idempotency-Key empty', req('POST', '/chat?query=a', "Idempotency-Key: \r\n"), '400 invalid_idempotency_key'],
    ['Idempotency-Key of 256', req('POST', '/chat?query=a', 'Idempotency-Key: ' . ('k' x 256) . "\r\n"), '400 invalid_idempotency_key'],
    ['Idempotency-Key of 255', req('POST', '/chat?query=a', 'Idempotency-Key: ' . ('k' x 255) . "\r\n"), '202'],
    ['Idempotency-Key with bytes that are not UTF-8', req('POST', '/chat?query=a', "Idempotency-Key: \xff\xfe:\x80\r\n"), '202'],
    ['Idempotency-Key with spaces and colons', req('POST', '/chat?query=a', "Idempotency-Key: a b:c::\r\n"), '202'],
    ['Idempotency-Key twice (the first counts)', req('POST', '/chat?query=a', "Idempotency-Key: one\r\nIdempotency-Key: two\r\n"), '202'],
    ['Idempotency-Key reused for another question', req('POST', '/chat?query=second', "Idempotency-Key: hostile-reuse\r\n"), '422 idempotency_key_reused', $idem_seen],
    ['Idempotency-Key whose value is not a job id',
     req('POST', '/chat?query=a', "Idempotency-Key: hostile-garbage\r\n"), '202',
     sub { redis_raw('SET', 'ho:idem::' . Digest::SHA::sha1_hex('hostile-garbage'), "\0\xff not an id") }],
    ['Idempotency-Key whose key is a list',
     req('POST', '/chat?query=a', "Idempotency-Key: hostile-list\r\n"), '202',
     sub { my $k = 'ho:idem::' . Digest::SHA::sha1_hex('hostile-list'); redis_raw('DEL', $k); redis_raw('RPUSH', $k, 'x') }],
    # -- tenancy --
    ['tenant header absent', req('POST', '/t/chat?query=a'), '403 missing_tenant'],
    ['tenant header empty', req('POST', '/t/chat?query=a', "X-Tenant: \r\n"), '403 missing_tenant'],
    ['tenant absent on /job-status', req('GET', "/t/job-status?job_id=$Missing"), '403 missing_tenant'],
    ['tenant with bytes that are not UTF-8', req('POST', '/t/chat?query=a', "X-Tenant: \xff\r\n"), '202'],
);

# ---- the job hashes ----

my @all = (status => 'finished', query => 'q', result => 'r', tenant => '',
    sources => '[]', error => '{"code":"c","message":"m"}', usage => '{}',
    created_at => '1', started_at => '2', ended_at => '3', attempts => '1');
my $bytes = join('', map { chr } 0 .. 255);

# [name, setup (fields of ho:job:$Id, or a sub), expected status/code,
#  checks of the decoded view (a sub returning an error or '')]
our @Hashes = (
    ['no hash', sub { redis_raw('DEL', "ho:job:$Id") }, '404 job_not_found'],
    ['status only', [status => 'queued'], '200',
     sub { defined $_[0]{query} ? 'query is not null' : '' }],
    ['unknown fields only', [x => 'y', 'STATUS' => 'finished'], '200',
     sub { defined $_[0]{status} ? 'STATUS read as status' : '' }],
    ['500 extra fields', [@all, map { ("extra$_" => "v$_") } 1 .. 500], '200'],
    ['10,000 fields', [map { ("f$_" => $_) } 1 .. 10000], '200'],
    ['every byte in every text field', [@all, status => $bytes, query => $bytes, result => $bytes], '200',
     sub { length($_[0]{query}) == 256 ? '' : 'query not kept with U+FFFD for each bad byte' }],
    ['NUL bytes in the text', [@all, query => "a\0b", result => "\0"], '200',
     sub { $_[0]{query} eq "a\0b" ? '' : 'NUL not kept as \\u0000' }],
    ['bad UTF-8 inside sources strings', [@all, sources => qq/[{"id":"c1","score":0.5,"source":"d\xffoc","text":"\xc0\xaf"}]/], '200',
     sub { ref $_[0]{sources} eq 'ARRAY' && $_[0]{sources}[0]{source} eq "d\x{fffd}oc" ? '' : 'sources not repaired in place' }],
    ['bad UTF-8 inside error and usage', [@all, error => qq/{"code":"x","message":"\xed\xa0\x80"}/, usage => qq/{"a":"\xf4\x90\x80\x80"}/], '200',
     sub { ref $_[0]{error} eq 'HASH' && ref $_[0]{usage} eq 'HASH' ? '' : 'not repaired in place' }],
    ['a raw control byte in sources', [@all, sources => qq/["a\x01"]/], '200',
     sub { !ref $_[0]{sources} ? '' : 'sent as JSON' }],
    ['sources not JSON', [@all, sources => '[1,2'], '200', sub { $_[0]{sources} eq '[1,2' ? '' : 'not as a string' }],
    ['sources empty', [@all, sources => ''], '200', sub { $_[0]{sources} eq '' ? '' : 'not ""' }],
    ['sources 10,000 deep', [@all, sources => $deep], '200', sub { !ref $_[0]{sources} ? '' : 'sent as JSON' }],
    ['sources with a lone surrogate escape', [@all, sources => '["\ud800"]'], '200', sub { !ref $_[0]{sources} ? '' : 'sent as JSON' }],
    ['sources with \u0000', [@all, sources => '["a\u0000"]'], '200', sub { ref $_[0]{sources} ? '' : 'not as JSON' }],
    ['error followed by garbage', [@all, error => '{"code":"x"}garbage'], '200', sub { !ref $_[0]{error} ? '' : 'sent as JSON' }],
    ['usage null', [@all, usage => 'null'], '200', sub { !defined $_[0]{usage} ? '' : 'not null' }],
    ['usage with 1e999 and -0', [@all, usage => '{"a":1e999,"b":-0}'], '200'],
    ['integers with leading zeros', [@all, created_at => '007', attempts => '-00', started_at => '-0012', ended_at => '0000000000000000000000042'], '200',
     sub { "$_[0]{created_at} $_[0]{attempts} $_[0]{started_at} $_[0]{ended_at}" eq '7 0 -12 42' ? '' : 'not canonical' }],
    ['integers that are not', [@all, created_at => '1e3', attempts => ' 5', started_at => '+5', ended_at => '0x1f'], '200',
     sub { (grep { defined $_[0]{$_} } qw(created_at attempts started_at ended_at)) ? 'not null' : '' }],
    ['integers too long or empty', [@all, created_at => '99999999999999999999', attempts => ''], '200',
     sub { defined $_[0]{created_at} || defined $_[0]{attempts} ? 'not null' : '' }],
    ['another tenant\'s job', [@all, tenant => 'acme'], '404 job_not_found'],
    ['a tenant field that is not UTF-8', [@all, tenant => "\xff"], '404 job_not_found'],
    ['WRONGTYPE: a string', sub { redis_raw('DEL', "ho:job:$Id"); redis_raw('SET', "ho:job:$Id", 'x') }, '500 valkey_misconfigured'],
    ['WRONGTYPE: a list', sub { redis_raw('DEL', "ho:job:$Id"); redis_raw('RPUSH', "ho:job:$Id", 'x') }, '500 valkey_misconfigured'],
    ['WRONGTYPE: a stream', sub { redis_raw('DEL', "ho:job:$Id"); redis_raw('XADD', "ho:job:$Id", '*', 'a', 'b') }, '500 valkey_misconfigured'],
    ['a 1 MB result of bytes that are not UTF-8', [@all, result => "\xff" x (1 << 20)], '200',
     sub { $_[0]{result} eq ("\x{fffd}" x (1 << 20)) ? '' : 'not U+FFFD each' }],
    ['a 1 MB valid error object', [@all, error => '{"code":"x","message":"' . ('m' x (1 << 20)) . '"}'], '200',
     sub { ref $_[0]{error} eq 'HASH' ? '' : 'not as JSON' }],
    ['a 50 MB result', [@all, result => 'a' x (50 << 20)], '200big'],
    ['final, read with wait=1 (the long-poll path)', [@all, sources => qq/["\xff"]/, created_at => '00'], '200wait',
     sub { ref $_[0]{sources} eq 'ARRAY' && $_[0]{created_at} == 0 ? '' : 'not repaired' }],
);

sub check_hash {
    my ($name, $setup, $expect, $check) = @_;
    ref $setup eq 'CODE' ? $setup->() : seed("ho:job:$Id", @$setup);
    my $wait = $expect =~ s/wait$// ? '&wait=1' : '';
    my $big = $expect =~ s/big$//;
    my ($status, $head, $body) = http_raw(req('GET', "/job-status?job_id=$Id$wait"));
    my ($code, $err) = split / /, $expect;
    my $why = '';
    if (!defined $status) {
        $why = 'closed';
    } elsif ($status != $code) {
        $why = "answered $status: " . substr($body, 0, 300);
    } elsif ($big) {
        # JSON::PP is too slow for 50 MB: the big string is checked apart
        if ($body =~ s/"result":"(a+)"/"result":"big"/ && length($1) == 50 << 20) {
            my ($good, $v) = module_json($name, $head, $body);
            $why = $good ? '' : $v;
        } else {
            $why = 'the 50 MB result is not there whole';
        }
    } else {
        my ($good, $v) = module_json($name, $head, $body);
        if (!$good) {
            $why = $v;
        } elsif (defined $err) {
            $why = ($v->{error}{code} // '') eq $err ? '' : "not $err: $body";
        } else {
            my @keys = sort keys %$v;
            $why = "keys: @keys" unless "@keys" eq join(' ', sort qw(job_id status
                query result sources error created_at started_at ended_at attempts usage callback));
            $why ||= $check->($v) if $check;
        }
    }
    Test::More::ok($why eq '', "job hash: $name: $expect" . ($why eq '' ? '' : " ($why)"));
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('no_error_log', <<'EOF');
[alert]
[crit]
[emerg]
runtime error
Sanitizer
exited on signal
exited with code
EOF
    return unless $block->name =~ /^TEST 1:/;
    $block->set_value('http_config', <<'EOF');
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
# the 50 MB reply takes its time under ASan (the watchdog is issue 9's)
ragq_valkey_timeout 30s;
EOF
    $block->set_value('config', <<'EOF');
location = /chat { ragq_prefix ho; ragq_enqueue; }
location = /job-status { ragq_prefix ho; ragq_status; }
location = /t/chat { ragq_prefix ho; ragq_tenant $http_x_tenant; ragq_enqueue; }
location = /t/job-status { ragq_prefix ho; ragq_tenant $http_x_tenant; ragq_status; }
location = /small/chat {
    ragq_prefix ho; ragq_max_query_length 64; client_max_body_size 1k; ragq_enqueue;
}
# README's snippet: nginx's own 413 as the module's JSON error
location = /json413/chat {
    ragq_prefix ho; client_max_body_size 1k; error_page 413 = @ragq_413; ragq_enqueue;
}
location @ragq_413 {
    default_type application/json;
    return 413 '{"error":{"code":"body_too_large","message":"the request body is larger than client_max_body_size"}}\n';
}
EOF
});

plan tests => 3 * 8 + 2 * @Requests + @Hashes;
run_tests();

__DATA__

=== TEST 1: nginx up, Valkey clean for prefix ho
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'ho:*'), 'x');
--- request eval
"GET /job-status?job_id=$::Missing"
--- error_code: 404



=== TEST 2: the malformed requests (no --- config: the same nginx)
--- init
main::check_row(@$_) for @::Requests;
--- request eval
"GET /job-status?job_id=$::Missing"
--- error_code: 404



=== TEST 3: the hostile job hashes
--- init
main::check_hash(@$_) for @::Hashes;
--- request eval
"GET /job-status?job_id=$::Missing"
--- error_code: 404
