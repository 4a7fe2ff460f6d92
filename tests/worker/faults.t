# ragq-worker against a misbehaving upstream: transient faults (429 with
# Retry-After, retry-after-ms, 5xx, a hung call, a dropped connection,
# malformed JSON) are retried until the job finishes; permanent ones (401,
# missing model, missing collection, vector size mismatch) fail the job at
# once with the upstream's message, and the failure goes to the dead stream.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "wf$$";
my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->create_collection('small', 8);
$s->upsert('docs', [
    { id => 1, payload => { page_content => 'The capital of France is Paris.',
                            metadata => { source => 'france.md' } } },
]);

my $w = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_HTTP_TIMEOUT => '1s',
    RAGQ_LOG_LEVEL => 'info',
});
ok($w->ready, 'worker is ready') or diag $w->log;

my $EMB = '/v1/embeddings';
my $CHAT = '/v1/chat/completions';
my $QRY = '/collections/docs/points/query';

# Runs one job under a fault; returns the job hash and the request counts.
sub run_job {
    my ($fault, %o) = @_;
    $s->reset;
    $s->fault($fault) if $fault;
    my $id = Ragq::Worker::enqueue(prefix => $P, collection => $o{collection} // '');
    Ragq::Worker::wait_final($P, [$id], 30);
    my $j = Ragq::Worker::job($P, $id);
    $j->{id} = $id;
    $j->{count} = { map { $_ => $s->count($_) } $EMB, $CHAT, $QRY, '/collections/small/points/query',
                    '/collections/nope/points/query' };
    return $j;
}

sub finished_ok {
    my ($j, $name) = @_;
    is($j->{status}, 'finished', "$name: finished") or diag explain $j;
    is($j->{result}, 'According to [1] (france.md): The capital of France is Paris.',
       "$name: the answer");
    is($j->{attempts}, 1, "$name: within one attempt");
}

my $j = run_job({ path => $CHAT, status => 429, times => 2, headers => { 'Retry-After' => '1' } });
finished_ok($j, '429 + Retry-After');
is($j->{count}{$CHAT}, 3, '429: two retries');
like($w->log, qr/job $j->{id}: chat: .*retry 1 in 1000 ms/, 'Retry-After: 1 honoured');

$j = run_job({ path => $EMB, status => 503, times => 1, headers => { 'retry-after-ms' => '300' } });
finished_ok($j, '503 + retry-after-ms');
like($w->log, qr/job $j->{id}: embeddings: .*retry 1 in 300 ms/, 'retry-after-ms honoured');

$j = run_job({ path => $EMB, status => 500, times => 2 });
finished_ok($j, '500 twice');
is($j->{count}{$EMB}, 3, '500: two retries');

$j = run_job({ path => $QRY, status => 502, times => 1 });
finished_ok($j, 'qdrant 502');

$j = run_job({ path => $QRY, mode => 'hang', times => 1 });
finished_ok($j, 'hung qdrant call');
like($w->log, qr/job $j->{id}: qdrant: .*no answer within 1000 ms/, 'hang: timed out');

$j = run_job({ path => $CHAT, mode => 'drop', times => 1 });
finished_ok($j, 'dropped connection');
is($j->{count}{$CHAT}, 2, 'drop: retried once');

$j = run_job({ path => $EMB, mode => 'malformed', times => 1 });
finished_ok($j, 'malformed JSON');

$j = run_job({ path => $CHAT, mode => 'delay', delay_ms => 1500, times => 1 });
finished_ok($j, 'slow answer past the timeout');

# Permanent errors: failed at once, upstream message, dead stream.
my $dead0 = Ragq::Valkey::cmd('XLEN', "$P:dead");
$j = run_job({ path => $CHAT, status => 401, times => 1,
               body => { error => { message => 'Incorrect API key provided: k***', type => 'invalid_request_error',
                                    code => 'invalid_api_key' } } });
is($j->{status}, 'failed', '401: failed');
is($j->{count}{$CHAT}, 1, '401: not retried');
my $e = decode_json($j->{error});
is($e->{code}, 'unauthorized', '401: error.code');
like($e->{message}, qr/Incorrect API key provided/, "401: the upstream's message");
ok(!exists $j->{result}, '401: no result');
is(Ragq::Valkey::cmd('XLEN', "$P:dead"), $dead0 + 1, '401: dead stream entry');
my @dead = Ragq::Valkey::cmd_list('XREVRANGE', "$P:dead", '+', '-', 'COUNT', 1);
is($dead[2], $j->{id}, 'dead entry names the job');
like($w->log, qr/job $j->{id} failed in \d+ ms/, 'failure logged');

$j = run_job({ path => $CHAT, status => 404, times => 1, body => { error => {
    message => 'The model `gpt-x` does not exist', type => 'invalid_request_error', code => 'model_not_found' } } });
is($j->{status}, 'failed', 'missing model: failed');
is(decode_json($j->{error})->{code}, 'model_not_found', 'missing model: code');

$j = run_job(undef, collection => 'nope');
is($j->{status}, 'failed', 'missing collection: failed');
$e = decode_json($j->{error});
is($e->{code}, 'collection_not_found', 'missing collection: code');
like($e->{message}, qr/nope/, 'missing collection: message names it');
is($j->{count}{'/collections/nope/points/query'}, 1, 'missing collection: not retried');
is($j->{count}{$CHAT}, 0, 'missing collection: no generation');

$j = run_job(undef, collection => 'small');
is($j->{status}, 'failed', 'vector size mismatch: failed');
$e = decode_json($j->{error});
is($e->{code}, 'vector_size_mismatch', 'vector size mismatch: code');
like($e->{message}, qr/dim/i, "vector size mismatch: Qdrant's message");

is($w->stop, 0, "worker exits 0 on SIGTERM") or diag $w->log;
done_testing();
