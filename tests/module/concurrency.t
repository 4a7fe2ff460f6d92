# 500 concurrent enqueues over 2 nginx workers: every one answered 202 with
# a distinct id, and each stored exactly once (500 hashes, 500 stream
# entries, each hash holding its own question).
use Test::Nginx::Socket;
use Ragq::Valkey;
use IO::Socket::INET;
use IO::Select;

no_shuffle();
master_on();
workers(2);
worker_connections(1024);

our $N = 500;

# Opens $n connections at once, sends every request before reading any
# answer, and returns the responses in order.
sub burst {
    my ($n, $path) = @_;
    my (@socks, %buf, %done);
    for my $i (0 .. $n - 1) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => server_port(), Proto => 'tcp') or die "connect: $!";
        push @socks, $s;
    }
    for my $i (0 .. $n - 1) {
        my $q = "q$i";
        syswrite $socks[$i], "POST $path?query=$q HTTP/1.1\r\nHost: localhost\r\n"
          . "Connection: close\r\nContent-Length: 0\r\n\r\n";
    }
    my $sel = IO::Select->new(@socks);
    my %idx = map { (fileno($socks[$_]) => $_) } 0 .. $#socks;
    my $deadline = time + 30;
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(1)) {
            my $n = sysread $s, my $chunk, 4096;
            if ($n) {
                $buf{$idx{fileno $s}} .= $chunk;
            } else {
                $sel->remove($s);
                close $s;
            }
        }
    }
    return map { $buf{$_} // '' } 0 .. $n - 1;
}

add_block_preprocessor(sub {
    my $block = shift;
    # a generous deadline: 500 transactions at once on a loaded 2-core
    # machine under ASan must not turn into 503s; this file checks storage
    $block->set_value('http_config',
        "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n"
        . "ragq_valkey_timeout 10s;\n")
      unless defined $block->http_config;
});

plan tests => 10;
run_tests();

__DATA__

=== TEST 1: 500 concurrent POST /chat, each stored exactly once
--- config
location = /chat { ragq_prefix cc; ragq_max_queue 0; ragq_enqueue; }
location = /ok { return 200 "ok\n"; }
--- init
Ragq::Valkey::cmd('DEL', Ragq::Valkey::cmd_list('--scan', '--pattern', 'cc:*'), 'x');
my @resp = main::burst($main::N, '/chat');
my @ok = grep { m{^HTTP/1\.1 202 } } @resp;
Test::More::is(scalar(@ok), $main::N, "$main::N answers are 202");
my %ids;
for my $r (@ok) {
    $ids{$1}++ if $r =~ /"job_id":"([0-9a-f]{32})"/;
}
Test::More::is(scalar(keys %ids), $main::N, 'all job ids distinct');
# a queued job is its stream entry (DEVELOPERS.md, "data model")
my @jobs = Ragq::Valkey::job_ids('cc');
Test::More::is(scalar(@jobs), $main::N, "$main::N jobs");
Test::More::is(Ragq::Valkey::cmd('XLEN', 'cc:jobs'), $main::N, "$main::N stream entries");
my %in_stream = map { $_ => 1 } @jobs;
Test::More::ok(!grep({ !$in_stream{$_} } keys %ids),
    'each answered id names its stream entry');
my %queries;
$queries{ Ragq::Valkey::job_field('cc', $_, 'query') }++ for keys %ids;
Test::More::is(scalar(grep { $queries{"q$_"} && $queries{"q$_"} == 1 } 0 .. $main::N - 1),
    $main::N, 'every question stored once, in its own job');
--- request
GET /ok
--- response_body
ok
--- no_error_log
[error]
[alert]
