# Tests of the stand-in's control endpoints (faults in every mode, latency, stats, reset) and of
# its HTTP/1.1 handling (keep-alive, pipelining, chunked bodies, Expect: 100-continue), with raw
# sockets where HTTP::Tiny would hide the behaviour.
use strict;
use warnings;
use Test::More tests => 56;
use IO::Socket::INET;
use IO::Select;
use JSON::PP;
use Time::HiRes qw(time);
use Ragq::Standin;

my $s = Ragq::Standin->start(dim => 8);
my $port = $s->port;
my $emb = { model => 'm', input => 'hello world' };

sub sock {
    IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 5)
      or die "connect: $!";
}

# Reads whatever arrives until the peer closes or $secs pass; returns (bytes, closed?).
sub read_for {
    my ($c, $secs) = @_;
    my ($buf, $sel, $end) = ('', IO::Select->new($c), time + $secs);
    while ((my $left = $end - time) > 0) {
        last unless $sel->can_read($left);
        my $n = sysread($c, my $chunk, 65536);
        return ($buf, 1) unless $n;
        $buf .= $chunk;
    }
    return ($buf, 0);
}

# Reads exactly one response with a Content-Length body; bytes of later responses already
# read are kept for the next call on the same socket.
my %LEFT;
sub read_response {
    my ($c) = @_;
    my $buf = delete $LEFT{"$c"} // '';
    my $sel = IO::Select->new($c);
    while (1) {
        if ($buf =~ /\r\n\r\n/) {
            my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
            my ($len) = $head =~ /content-length: (\d+)/i;
            if (length $rest >= $len) {
                $LEFT{"$c"} = substr($rest, $len);
                return ($head, substr($rest, 0, $len));
            }
        }
        $sel->can_read(5) or die 'timeout reading response';
        sysread($c, $buf, 65536, length $buf) or die 'closed';
    }
}

my $body = encode_json($emb);

# --- status fault with headers and default OpenAI body, consumed after `times`
$s->fault({ path => '/v1/embeddings', times => 2, status => 429, headers => { 'Retry-After' => '1' } });
my $r = $s->request(POST => '/v1/embeddings', $emb);
is($r->{status}, 429, 'status fault: 429');
is($r->{headers}{'retry-after'}, '1', 'fault headers sent');
is($r->{json}{error}{code}, 'rate_limit_exceeded', 'default body is the OpenAI error shape');
is($s->request(POST => '/v1/embeddings', $emb)->{status}, 429, 'second time too');
is($s->request(POST => '/v1/embeddings', $emb)->{status}, 200, 'times exhausted: normal again');

$s->fault({ path => '/collections', status => 503 });
$r = $s->request(GET => '/collections');
is($r->{status}, 503, 'Qdrant path fault');
like($r->{json}{status}{error}, qr/^Shard temporarily unavailable/, 'default body is the Qdrant error envelope');

$s->fault({ path => '/v1/chat', status => 500, body => 'plain oops' });
$r = $s->request(POST => '/v1/chat/completions', { model => 'm', messages => [{ role => 'user', content => 'x' }] });
is_deeply([$r->{status}, $r->{content}], [500, 'plain oops'], 'raw body; path is a prefix');

$s->fault({ path => '', times => -1, method => 'GET', status => 502 });
is($s->request(GET => '/v1/models')->{status}, 502, 'empty path matches any API path; forever');
is($s->request(GET => '/collections')->{status}, 502, 'still active');
is($s->request(POST => '/v1/embeddings', $emb)->{status}, 200, 'method filter respected');
is($s->request(GET => '/_standin/stats')->{status}, 200, 'control endpoints are never faulted');
$s->reset;
is($s->request(GET => '/v1/models')->{status}, 200, 'reset clears faults');

$r = $s->request(POST => '/_standin/faults', { mode => 'explode' });
is($r->{status}, 400, 'unknown fault mode rejected');

# --- drop
$s->fault({ path => '/v1/embeddings', mode => 'drop' });
my $c = sock();
print $c "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
my ($got, $closed) = read_for($c, 3);
ok($closed && $got eq '', 'drop: closed without a reply');

# --- reset: RST, not FIN
$s->fault({ path => '/v1/embeddings', mode => 'reset' });
$c = sock();
print $c "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
IO::Select->new($c)->can_read(3);
my $n = sysread($c, my $rbuf, 100);
ok(!defined $n && $!{ECONNRESET}, "reset: connection reset by peer ($!)");

# --- flood: a chunked body that goes on until the client leaves (or limit_bytes)
$s->fault({ path => '/v1/embeddings', mode => 'flood', limit_bytes => 300000 });
$c = sock();
print $c "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
($got, $closed) = read_for($c, 5);
ok($closed && $got =~ m{^HTTP/1\.1 200 .*Transfer-Encoding: chunked.*\r\n\r\n[0-9a-f]+\r\n\{"data":\[ }s,
   'flood: 200 and a chunked body');
cmp_ok(length $got, '>', 300000, 'flood: limit_bytes of it');
is($s->stats->{flood_sent}, 300000, 'flood: counted in stats');

# --- probability: a share of the matching requests, at random
$s->reset;
$s->fault({ path => '/v1/embeddings', status => 503, times => -1, probability => 0.5 });
my %st;
$st{ $s->request(POST => '/v1/embeddings', $emb)->{status} }++ for 1 .. 60;
ok($st{503} && $st{200}, "probability 0.5: some faulted, some not (@{[ %st ]})");
is($s->request(POST => '/_standin/faults', { probability => 2 })->{status}, 400, 'probability > 1 rejected');
$s->reset;

# --- tally: 2xx answers counted by a tag found in the request body
$s->request(POST => '/_standin/tally', { path => '/v1/embeddings', pattern => 'tag-[0-9]+' });
$s->fault({ path => '/v1/embeddings', status => 500, times => 1 });
$s->request(POST => '/v1/embeddings', { model => 'm', input => "x tag-$_" }) for 1, 1, 1, 2;
is_deeply($s->request(GET => '/_standin/tally')->{json}{counts}, { 'tag-1' => 2, 'tag-2' => 1 },
          'tally: answered requests per tag (the faulted one is not)');
$s->reset;

# --- hang
$s->fault({ path => '/v1/embeddings', mode => 'hang' });
$c = sock();
print $c "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
($got, $closed) = read_for($c, 0.7);
ok(!$closed && $got eq '', 'hang: no reply, connection kept open');
close $c;
is($s->request(POST => '/v1/embeddings', $emb)->{status}, 200, 'server fine after a hung client left');

# --- stream_hold: the whole streamed answer and [DONE], then nothing (no terminal chunk)
$s->fault({ path => '/v1/chat/completions', mode => 'stream_hold' });
my $chat = encode_json({ model => 'm', stream => JSON::PP::true,
                         messages => [{ role => 'user', content => 'x' }] });
$c = sock();
print $c "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($chat)
  . "\r\n\r\n$chat";
($got, $closed) = read_for($c, 0.7);
like($got, qr{^HTTP/1\.1 200.*Transfer-Encoding: chunked.*finish_reason":"stop".*data: \[DONE\]\n\n\r\n\z}s,
     'stream_hold: the whole answer up to [DONE], chunked');
ok(!$closed && $got !~ /Connection: close/i && $got !~ /\r\n0\r\n\r\n/,
   'stream_hold: no terminal chunk, the connection kept open');
close $c;
is($s->request(POST => '/v1/chat/completions', { model => 'm', messages => [{ role => 'user', content => 'x' }] })->{status},
   200, 'stream_hold: consumed, then normal answers');
is($s->stats->{aborted}{'/v1/chat/completions'}, 1, 'stream_hold: the client leaving is counted aborted');
# with end_after_ms: the terminal chunk comes that much later, in a write of its own
$s->fault({ path => '/v1/chat/completions', mode => 'stream_hold', end_after_ms => 300 });
$c = sock();
print $c "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($chat)
  . "\r\n\r\n$chat";
($got, $closed) = read_for($c, 0.15);
ok($got =~ /data: \[DONE\]\n\n\r\n\z/, 'stream_hold end_after_ms: [DONE], no end yet');
my ($rest) = read_for($c, 0.5);
is($rest, "0\r\n\r\n", 'stream_hold end_after_ms: then the terminal chunk');
close $c;

# --- malformed
$s->fault({ path => '/v1/embeddings', mode => 'malformed' });
$r = $s->request(POST => '/v1/embeddings', $emb);
is($r->{status}, 200, 'malformed: 200');
ok(!eval { decode_json($r->{content}); 1 }, 'malformed: body is not valid JSON');

# --- slow_body
$s->fault({ path => '/v1/embeddings', mode => 'slow_body', bytes => 40, interval_ms => 50 });
$c = sock();
my $t0 = time;
print $c "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
my ($head, $slow) = read_response($c);
my $took = time - $t0;
my ($blen) = $head =~ /content-length: (\d+)/i;
my $steps = int(($blen + 39) / 40);
cmp_ok($took, '>=', ($steps - 1) * 0.05 * 0.9, "slow_body: $blen bytes in $steps steps took ${took}s");
is(decode_json($slow)->{object}, 'list', 'slow_body: the body is the normal answer');

# --- delay and latency
$s->fault({ path => '/v1/embeddings', mode => 'delay', delay_ms => 300 });
$t0 = time;
$r = $s->request(POST => '/v1/embeddings', $emb);
cmp_ok(time - $t0, '>=', 0.29, 'delay fault delays');
is($r->{status}, 200, 'delay: then a normal answer');
$s->latency(200);
$t0 = time;
$s->request(GET => '/collections');
cmp_ok(time - $t0, '>=', 0.19, 'latency applied to API responses');
$t0 = time;
$s->stats;
cmp_ok(time - $t0, '<', 0.15, 'control endpoints are not delayed');
$s->latency(0);

# --- stats and reset
$s->reset;
$s->request(POST => '/v1/embeddings', $emb, { authorization => 'Bearer sk-x', 'X-Trace' => 'abc' });
$s->request(POST => '/v1/embeddings', $emb);
$s->request(GET => '/collections/foo/exists');
my $st = $s->stats;
is($st->{requests}{'/v1/embeddings'}, 2, 'stats count per path');
is($st->{requests}{'/collections/foo/exists'}, 1, 'qdrant path counted');
ok(!exists $st->{requests}{'/_standin/stats'}, 'control endpoints not counted');
is(scalar @{ $st->{log} }, 3, 'log entries');
is($st->{log}[0]{headers}{'x-trace'}, 'abc', 'log: headers with lower-case names');
is($st->{log}[0]{headers}{authorization}, 'Bearer sk-x', 'log: authorization visible to tests');
is_deeply($st->{log}[0]{body}, $emb, 'log: JSON body decoded');
is($st->{log}[0]{method}, 'POST', 'log: method');
$s->create_collection('keep', 4);
$s->reset;
is($s->request(GET => '/collections/keep/exists')->{json}{result}{exists}, JSON::PP::true, 'reset keeps data');
$s->reset(data => 1);
is($s->request(GET => '/collections/keep/exists')->{json}{result}{exists}, JSON::PP::false, 'reset data clears collections');

# --- HTTP/1.1: pipelined keep-alive requests answered in order on one connection
$c = sock();
my $q1 = "GET /collections/a/exists HTTP/1.1\r\nHost: x\r\n\r\n";
print $c $q1 . "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($body) . "\r\n\r\n$body" . $q1;
my (@bodies, $h, $b, $rest);
($h, $b) = read_response($c); push @bodies, $b;
($h, $b) = read_response($c); push @bodies, $b;
($h, $b) = read_response($c); push @bodies, $b;
ok(decode_json($bodies[0])->{result} && decode_json($bodies[1])->{object} eq 'list'
   && decode_json($bodies[2])->{result}, 'three pipelined requests answered in order');

# chunked request body
my $half = int(length($body) / 2);
print $c "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
  . sprintf("%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\n\r\n", $half, substr($body, 0, $half),
            length($body) - $half, substr($body, $half));
($h, $b) = read_response($c);
like($h, qr{^HTTP/1\.1 200}, 'chunked request body accepted');
is(decode_json($b)->{data}[0]{index}, 0, 'chunked body decoded');

# Expect: 100-continue
print $c "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " . length($body) . "\r\n\r\n";
($got) = read_for($c, 0.3);
like($got, qr{^HTTP/1\.1 100 Continue\r\n\r\n$}, '100 Continue sent before the body');
print $c $body;
($h, $b) = read_response($c);
like($h, qr{^HTTP/1\.1 200}, 'then the answer');

# Connection: close is honoured
print $c "GET /collections HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
($got, $closed) = read_for($c, 2);
ok($closed && $got =~ /Connection: close/, 'Connection: close closes after the answer');

# garbage request line
$c = sock();
print $c "NONSENSE\r\n\r\n";
($got, $closed) = read_for($c, 2);
ok($got =~ m{^HTTP/1\.1 400} && $closed, 'bad request line: 400 and close');

is($s->request(GET => '/collections')->{status}, 200, 'server still healthy');
$s->stop;
