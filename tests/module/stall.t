# A stalled Valkey (SIGSTOP: the TCP connection alive, nothing read or
# answered) under a flood of POST /chat with long questions. The location's
# ragq_valkey_timeout (100 ms) answers each request 503 valkey_timeout, but
# its XADD stays in the command connection's output buffer until Valkey
# reads it or the connection drops; the http{}-level watchdog is 60 s here,
# so the connection is kept for the whole flood. 2,000 questions of 60 kB
# are 120 MB of commands: past 16 MB unsent (NGX_HTTP_RAGQ_MAX_UNSENT) new
# requests get 503 overloaded at once instead of growing the buffer, and
# once Valkey reads again the grown buffer is freed. Late replies for the
# requests that timed out are dropped (RAGQ_ASAN=1: no use after free).
# The log: the first request that timed out is logged at error, the others
# at info, and one warn line counts them once Valkey answers in time again
# (before 0.6.4: one error line per request, hundreds here).
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Chat ();
use Ragq::Proc qw(nginx_worker_pids rss_kb);
use Time::HiRes ();

master_on();
workers(1);
worker_connections(1024);
no_shuffle();
no_long_string();

our $Query = 'q' x 60000;
our %Codes;
our $Before;

END { Ragq::Valkey::resume() if $ENV{TEST_NGINX_REDIS_PORT} }

sub codes { my $h = shift; join ", ", map { "$h->{$_} x $_" } sort keys %$h }

# the error log's lines so far
sub log_lines {
    open my $f, '<', server_root() . '/logs/error.log' or die "error.log: $!";
    return <$f>;
}

plan tests => repeat_each() * (4 * blocks()) + 11;
run_tests();

__DATA__

=== TEST 1: Valkey stalled under 120 MB of questions: 503 valkey_timeout, then 503 overloaded at once past 16 MB unsent; the worker's memory stays bounded; the grown buffer goes once Valkey reads again
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 60s;
--- config
client_body_buffer_size 128k;
location = /chat {
    ragq_prefix stall;
    ragq_max_query_length 64k;
    ragq_valkey_timeout 100ms;
    ragq_enqueue;
}
location = /chat-patient {
    ragq_prefix stall;
    ragq_valkey_timeout 30s;
    ragq_enqueue;
}
location = /job-status { ragq_prefix stall; ragq_valkey_timeout 100ms; ragq_status; }
--- init
my %warm = Ragq::Chat::flood(1, 1, 'POST', '/chat-patient', '{"query":"warm up"}');
die "warm-up: " . main::codes(\%warm) unless $warm{'202 -'};
my ($worker) = main::nginx_worker_pids();
my $before = main::rss_kb($worker);
Ragq::Valkey::pause();
my %seen = Ragq::Chat::flood(2000, 32, 'POST', '/chat', qq({"query":"$::Query"}));
my $grown = main::rss_kb($worker) - $before;
my %status = Ragq::Chat::flood(20, 4, 'GET', '/job-status?job_id=0000000000000000000000000000c001');
Ragq::Valkey::resume();
my $codes = main::codes(\%seen);
Test::More::ok($seen{'503 valkey_timeout'}, "some waited for their timeout ($codes)");
Test::More::ok($seen{'503 overloaded'}, "then the rest were refused at once ($codes)");
Test::More::is(($seen{'503 valkey_timeout'} // 0) + ($seen{'503 overloaded'} // 0), 2000,
    'every one answered 503 with one of those codes');
Test::More::is($status{'503 overloaded'}, 20,
    'a job-status read meanwhile: 503 overloaded at once (' . main::codes(\%status) . ')');
# Valkey works through what it was sent (until then: overloaded); then a
# new question goes in
my %after;
for (1 .. 300) {
    %after = Ragq::Chat::flood(1, 1, 'POST', '/chat-patient', '{"query":"after the stall"}');
    last unless $after{'503 overloaded'};
    Time::HiRes::sleep(0.1);
}
Test::More::is($after{'202 -'}, 1, 'once Valkey reads again, a new question goes in ('
    . main::codes(\%after) . ')');
# the log of the stall: one error line when it began, one summary at its end
my @log = main::log_lines();
my $timeouts = $seen{'503 valkey_timeout'} // 0;
my @first = grep { $log[$_] =~ /\[error\].*ragq: valkey did not answer within 100 ms/ } 0 .. $#log;
Test::More::cmp_ok(scalar @first, '<=', 2, scalar(@first)
    . " error lines \"did not answer\" for the $timeouts requests that timed out");
Test::More::cmp_ok($timeouts, '>=', 100, "hundreds timed out ($timeouts): the stall was one");
my @sum = grep { $log[$_] =~ /\[warn\].*ragq: valkey answered in time again after \d+ ms; \d+ requests? timed out meanwhile/ } 0 .. $#log;
Test::More::is(scalar @sum, 1, 'one warn line sums the stall up')
    or Test::More::diag(grep { /ragq: valkey/ && !/\[(debug|info)\]/ } @log[-200 .. -1]);
my ($ms, $n) = (0, -1);
my $line = '(no summary)';
if (@sum) {
    ($ms, $n) = $log[$sum[0]] =~ /after (\d+) ms; (\d+) request/;
    ($line) = $log[$sum[0]] =~ /(ragq: [^\n]*)/;
}
Test::More::ok($n == $timeouts && $ms >= 100 && @first && @sum && $sum[0] > $first[0],
    "after the error line, it counts each of the $timeouts: $line");
my $left = main::rss_kb($worker) - $before;
SKIP: {
    Test::More::skip('RSS under ASan counts its quarantine', 2) if $ENV{RAGQ_ASAN};
    Test::More::cmp_ok($grown, '<', 48 * 1024,
        "during the stall the worker's memory grew by $grown kB, not by the 120 MB sent");
    Test::More::cmp_ok($left, '<', 16 * 1024,
        "once Valkey caught up it kept $left kB of that");
}
--- request
POST /chat-patient
{"query":"and once more"}
--- more_headers
Content-Type: application/json
--- error_code: 202
--- response_body_like: "job_id":"[0-9a-f]{32}"
--- no_error_log
[alert]
[crit]
