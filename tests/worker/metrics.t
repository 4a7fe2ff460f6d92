# The worker's heartbeat seen through nginx's ragq_metrics: a live worker
# is counted with its jobs and calls after answering questions asked
# through POST /chat; after kill -9 its heartbeat expires and it is no
# longer counted.
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Chat;
use Ragq::Standin;
use Ragq::Worker;
use Ragq::Prom;
use IO::Socket::INET;
use Time::HiRes ();

no_shuffle();
no_long_string();

our $Prefix = "wm$$";
$ENV{TEST_NGINX_WPREFIX} = $Prefix;

our $S = Ragq::Standin->start(dim => 16);
$S->create_collection('docs', 16);
$S->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
our $W = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $Prefix, OPENAI_BASE_URL => $S->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $S->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_CONSUMER => 'wm-1',
    RAGQ_HEARTBEAT => '300ms',
});
$W->ready or die "worker did not start:\n" . $W->log;

sub get {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
        Timeout => 5) or die "connect: $!";
    print $s "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $resp = <$s> // '';
    my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
    return $body // '';
}

sub post {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
        Timeout => 5) or die "connect: $!";
    print $s "POST $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $resp = <$s> // '';
    die "POST $path: $resp\n" unless $resp =~ m{^HTTP/1\.\d 202};
}

sub value {
    my ($fam) = Ragq::Prom::parse(get('/metrics'));
    return Ragq::Prom::value($fam, @_) // -1;
}

sub wait_for { Ragq::Chat::wait_for(@_) }

add_response_body_check(sub {
    my ($block, $body, $idx, $rep, $dry) = @_;
    return if $dry || $block->name !~ /\bTEST 2:/;
    my ($fam, $err) = Ragq::Prom::parse($body);
    is_deeply $err, [], 'TEST 2: well-formed';
    is_deeply [map { Ragq::Prom::value($fam, @$_) } ['ragq_workers'],
        ['ragq_worker_jobs_total', worker => 'wm-1', status => 'finished'],
        ['ragq_worker_upstream_calls_total', worker => 'wm-1', api => 'chat'],
        ['ragq_worker_in_flight', worker => 'wm-1']], [1, 3, 3, 0],
        'TEST 2: one live worker, its three jobs and calls, nothing in flight';
});

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix $TEST_NGINX_WPREFIX; ragq_enqueue; }
location = /job-status { ragq_prefix $TEST_NGINX_WPREFIX; ragq_status; }
location = /metrics { ragq_prefix $TEST_NGINX_WPREFIX; ragq_metrics; }
EOF
    $block->set_value('no_error_log', "[error]\n[alert]\n") unless defined $block->no_error_log;
});

plan tests => 12;
run_tests();

__DATA__

=== TEST 1: three questions through nginx (two asked by the init)
--- init
main::post('/chat?query=capital+of+France%3F') for 1 .. 2;
--- request
POST /chat?query=capital+of+France%3F
--- error_code: 202



=== TEST 2: the worker answered them: counted from its heartbeat
--- init
main::wait_for('three finished jobs in the heartbeat', sub {
    main::value('ragq_worker_jobs_total', worker => 'wm-1', status => 'finished') == 3 });
--- request
GET /metrics



=== TEST 3: after kill -9 the worker's heartbeat expires: no live worker
--- init
$main::W->signal('KILL');
$main::W->wait_exit(10);
main::wait_for('the heartbeat to expire', sub { main::value('ragq_workers') == 0 });
--- request
GET /metrics
--- response_body_like chomp
\nragq_workers 0\n
