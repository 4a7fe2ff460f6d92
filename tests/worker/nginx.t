# The whole path through nginx: POST /chat (module) -> Valkey -> ragq-worker
# -> stand-ins -> /job-status?wait= answers with the finished job, its
# answer built from the retrieved chunk and its sources; a permanent
# upstream error shows as a failed job with the upstream's message;
# POST /job-cancel of a job whose chat call hangs: 200 canceled, the worker
# closes its chat connection, /job-status says canceled.
use Test::Nginx::Socket;
use Ragq::Valkey;
use Ragq::Standin;
use Ragq::Worker;

no_shuffle();
no_long_string();

our $Prefix = "wn$$";
$ENV{TEST_NGINX_WPREFIX} = $Prefix;

our $S = Ragq::Standin->start(dim => 24, api_key => 'sk-n');
$S->create_collection('books', 24);
$S->upsert('books', [
    { id => 11, payload => { page_content => 'Moby-Dick was written by Herman Melville. It appeared in 1851.',
                             metadata => { source => 'moby.md' } } },
    { id => 12, payload => { page_content => 'War and Peace was written by Leo Tolstoy.',
                             metadata => { source => 'tolstoy.md' } } },
]);
our $W = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $Prefix, OPENAI_BASE_URL => $S->base_url, OPENAI_API_KEY => 'sk-n',
    QDRANT_URL => $S->qdrant_url,
});
$W->ready or die "worker did not start:\n" . $W->log;

# The job id of the last POST /chat.
sub last_job {
    my @k = Ragq::Valkey::cmd_list('--scan', '--pattern', "$Prefix:job:*");
    my %c = map { $_ => Ragq::Valkey::cmd('HGET', $_, 'created_at') } @k;
    my ($id) = map { /:job:(\w+)$/ } sort { $c{$b} <=> $c{$a} } @k;
    return $id;
}

# Queues a job (the module's entry) whose chat call hangs in the stand-in,
# and waits until the worker is in that call: its id.
sub hanging_job {
    $S->fault({ path => '/v1/chat/completions', mode => 'hang', times => 1 });
    my $before = $S->count('/v1/chat/completions');
    my $id = Ragq::Worker::enqueue(prefix => $Prefix, query => 'Who wrote Moby-Dick?',
                                   collection => 'books', top_k => 2);
    for (1 .. 500) {
        last if $S->count('/v1/chat/completions') > $before;
        select(undef, undef, undef, 0.02);
    }
    return $id;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "POST /job-cancel?job_id=" . main::hanging_job())
      if $block->name =~ /^TEST 6:/;
    # A block without --- request waits on the job the block before it
    # queued: preprocessors run just before their block, after the previous
    # one is done (blocks are parsed before anything runs).
    $block->set_value('request',
        "GET /job-status?job_id=" . main::last_job() . "&wait=15")
      unless defined $block->request;
    $block->set_value('http_config', "ragq_valkey 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
      unless defined $block->http_config;
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix $TEST_NGINX_WPREFIX; ragq_collection books; ragq_top_k 2; ragq_enqueue; }
location = /job-status { ragq_prefix $TEST_NGINX_WPREFIX; ragq_status; }
location = /job-cancel { ragq_prefix $TEST_NGINX_WPREFIX; ragq_cancel; }
EOF
    $block->set_value('no_error_log', "[error]\n[alert]\n") unless defined $block->no_error_log;
});

plan tests => 28;
run_tests();

__DATA__

=== TEST 1: an old client's POST /chat?query=... is queued
--- request
POST /chat?query=Who+wrote+Moby-Dick%3F
--- error_code: 202
--- response_body_like chomp
^\{"status":"queued","job_id":"[0-9a-f]{32}","status_url":"/job-status\?job_id=[0-9a-f]{32}"\}$



=== TEST 2: /job-status?wait= returns the finished job, answer and sources from the chunk
--- timeout: 20
--- error_code: 200
--- response_body_like chomp
"status":"finished".*"result":"According to \[1\] \(moby\.md\): Moby-Dick was written by Herman Melville\.".*"sources":\[\{"id":"11","score":[0-9.e-]+,"source":"moby\.md","text":"Moby-Dick was written by Herman Melville\. It appeared in 1851\."\},\{"id":"12",.*"attempts":1



=== TEST 3: a JSON body with top_k; an upstream 401 fails the job with its message
--- init
$main::S->fault({ path => '/v1/embeddings', status => 401, times => 1,
    body => { error => { message => 'Incorrect API key provided (nginx test)', type => 'invalid_request_error', code => 'invalid_api_key' } } });
--- more_headers
Content-Type: application/json
--- request
POST /chat
{"query": "Who wrote War and Peace?", "top_k": 1}
--- error_code: 202



=== TEST 4: the failed job
--- timeout: 20
--- error_code: 200
--- response_body_like chomp
"status":"failed".*"error":\{"code":"unauthorized","message":"[^"]*Incorrect API key provided \(nginx test\)



=== TEST 5: the worker is still serving
--- request
POST /chat?query=Who+wrote+War+and+Peace%3F
--- error_code: 202
--- response_body_like chomp
"status":"queued"



=== TEST 6: POST /job-cancel of a job in its (hanging) chat call: 200 canceled
--- error_code: 200
--- response_body_like chomp
"status":"canceled","query":"Who wrote Moby-Dick\?".*"error":\{"code":"canceled"



=== TEST 7: the worker closed its chat connection; /job-status says canceled, no result
--- init
my $n = 0;
for (1 .. 500) {
    $n = $main::S->stats->{aborted}{'/v1/chat/completions'} // 0;
    last if $n;
    select(undef, undef, undef, 0.02);
}
Test::More::is($n, 1, 'the stand-in saw the chat connection closed');
--- timeout: 20
--- error_code: 200
--- response_body_like chomp
"status":"canceled".*"result":null
