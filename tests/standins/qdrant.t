# Tests of the stand-in's Qdrant side: collections, upsert (record and column form), query and
# legacy search with real cosine ranking, count, errors, auth and --data preload.
use strict;
use warnings;
use Test::More tests => 61;
use Ragq::Standin;

my $s = Ragq::Standin->start(dim => 16);
my $r;

$r = $s->request(GET => '/');
like($r->{json}{version}, qr/^1\.\d+/, 'GET / reports a version, no envelope');

$r = $s->request(PUT => '/collections/docs', { vectors => { size => 3, distance => 'Cosine' } });
is($r->{status}, 200, 'create 200');
is_deeply([@{ $r->{json} }{qw(result status)}], [JSON::PP::true, 'ok'], 'result true, status ok');
ok(exists $r->{json}{time}, 'time in envelope');

$r = $s->request(PUT => '/collections/docs', { vectors => { size => 3, distance => 'Cosine' } });
is($r->{status}, 409, 'create existing: 409');
is($r->{json}{status}{error}, 'Wrong input: Collection `docs` already exists!', 'exists message');
ok(!exists $r->{json}{result}, 'no result on error');

$r = $s->request(PUT => '/collections/bad', { vectors => { size => 3, distance => 'cosine' } });
is($r->{status}, 400, 'distance is case-sensitive: 400');
$r = $s->request(PUT => '/collections/zero', { vectors => { size => 0, distance => 'Dot' } });
is($r->{status}, 422, 'size 0: 422');

$r = $s->request(GET => '/collections');
is_deeply($r->{json}{result}{collections}, [{ name => 'docs' }], 'list collections');

$r = $s->request(GET => '/collections/docs/exists');
is($r->{json}{result}{exists}, JSON::PP::true, 'exists true');
$r = $s->request(GET => '/collections/nope/exists');
is($r->{json}{result}{exists}, JSON::PP::false, 'exists false, still 200');

my $uuid = '5C56C793-69F3-4FBF-87E6-C4BF54C28C26';
$r = $s->request(PUT => '/collections/docs/points?wait=true', { points => [
    { id => 1, vector => [1, 0, 0], payload => { text => 'one', source => 'a.md' } },
    { id => 2, vector => [0, 1, 0], payload => { text => 'two', source => 'b.md' } },
    { id => $uuid, vector => [1, 1, 0], payload => { text => 'mid', source => 'c.md' } } ] });
is($r->{status}, 200, 'upsert records 200');
is($r->{json}{result}{status}, 'completed', 'wait=true: completed');
ok(defined $r->{json}{result}{operation_id}, 'operation_id');

$r = $s->request(PUT => '/collections/docs/points', { batch => { ids => [3, 4],
    vectors => [[0, 0, 1], [-1, 0, 0]], payloads => [{ text => 'three' }, undef] } });
is($r->{status}, 200, 'upsert columns 200');
is($r->{json}{result}{status}, 'acknowledged', 'wait absent: acknowledged');

$r = $s->request(PUT => '/collections/docs/points?wait=true', { points => [{ id => 9, vector => [1, 2] }] });
is($r->{status}, 400, 'dimension mismatch: 400');
is($r->{json}{status}{error}, 'Wrong input: Vector dimension error: expected dim: 3, got 2', 'Qdrant wording');

$r = $s->request(PUT => '/collections/docs/points?wait=true', { points => [{ id => 'doc-7#3', vector => [1, 2, 3] }] });
is($r->{status}, 400, 'string id that is not a UUID: 400');
like($r->{json}{status}{error}, qr/is not a valid point ID/, 'point id message');
$r = $s->request(PUT => '/collections/docs/points?wait=true', { points => [{ id => -1, vector => [1, 2, 3] }] });
is($r->{status}, 400, 'negative id: 400');

$r = $s->request(GET => '/collections/docs');
is($r->{json}{result}{points_count}, 5, 'points_count');
is($r->{json}{result}{config}{params}{vectors}{size}, 3, 'config.params.vectors.size');
is($r->{json}{result}{config}{params}{vectors}{distance}, 'Cosine', 'distance');
is($r->{json}{result}{status}, 'green', 'collection status');

# query: cosine ranking
$r = $s->request(POST => '/collections/docs/points/query',
                 { query => [0.9, 0.3, 0], limit => 3, with_payload => JSON::PP::true });
is($r->{status}, 200, 'query 200');
my @p = @{ $r->{json}{result}{points} };
is_deeply([map { $_->{id} } @p], [1, lc $uuid, 2], 'best first by cosine; uuid canonical lower-case');
cmp_ok(abs($p[0]{score} - 0.9 / sqrt(0.9**2 + 0.3**2)), '<', 1e-6, 'score is the cosine');
cmp_ok(abs($p[1]{score} - 1.2 / sqrt(0.9) / sqrt(2)), '<', 1e-6, 'second score');
is($p[0]{payload}{source}, 'a.md', 'payload returned');
ok(defined $p[0]{version}, 'version present');

$r = $s->request(POST => '/collections/docs/points/query', { query => [0.9, 0.3, 0] });
is(scalar @{ $r->{json}{result}{points} }, 5, 'default limit 10 returns all 5');
ok(!exists $r->{json}{result}{points}[0]{payload}, 'with_payload default false: no payload key');

$r = $s->request(POST => '/collections/docs/points/query',
                 { query => { nearest => [0, 0, 2] }, limit => 1, with_payload => ['text'], with_vector => JSON::PP::true });
is($r->{json}{result}{points}[0]{id}, 3, 'nearest form');
is_deeply($r->{json}{result}{points}[0]{payload}, { text => 'three' }, 'with_payload list filters keys');
is_deeply($r->{json}{result}{points}[0]{vector}, [0, 0, 1], 'vector returned normalised');

$r = $s->request(POST => '/collections/docs/points/query', { query => [1, 0, 0], score_threshold => 0.5 });
is_deeply([map { $_->{id} } @{ $r->{json}{result}{points} }], [1, lc $uuid], 'score_threshold');

$r = $s->request(POST => '/collections/docs/points/query', { query => [1, 0, 0], limit => 5,
    filter => { must => [{ key => 'source', match => { any => ['b.md', 'c.md'] } }] } });
is_deeply([map { $_->{id} } @{ $r->{json}{result}{points} }], [lc $uuid, 2], 'filter match any');

$r = $s->request(POST => '/collections/docs/points/query', { query => [1, 0, 0], limit => 0 });
is($r->{status}, 422, 'limit 0: 422');
$r = $s->request(POST => '/collections/docs/points/query', { query => [1, 0] });
is($r->{status}, 400, 'query dimension mismatch: 400');

$r = $s->request(POST => '/collections/docs/points/search', { vector => [0, 1, 0.1], limit => 2, with_payload => JSON::PP::true });
is(ref $r->{json}{result}, 'ARRAY', 'legacy search: result is a bare list');
is($r->{json}{result}[0]{id}, 2, 'legacy search ranks');

$r = $s->request(POST => '/collections/docs/points/count', { exact => JSON::PP::true });
is($r->{json}{result}{count}, 5, 'count');

$r = $s->request(POST => '/collections/nope/points/query', { query => [1, 0, 0] });
is($r->{status}, 404, 'missing collection: 404');
is($r->{json}{status}{error}, 'Not found: Collection `nope` doesn\'t exist!', 'missing message');

$r = $s->request(POST => '/collections/docs/points/query', '{"query": [1,');
is($r->{status}, 400, 'malformed JSON: 400');
like($r->{json}{status}{error}, qr/^Format error in JSON body/, 'format error message');

$r = $s->request(POST => '/collections/docs/points/query', { query => [1, 0, 0],
    filter => { must => [{ key => 'source', match => 5 }] } });
is($r->{status}, 400, 'wrong-shaped filter: 400, not a crash');

$r = $s->request(POST => '/collections/docs/points/scroll', { limit => 2 });
is_deeply([map { $_->{id} } @{ $r->{json}{result}{points} }], [1, 2], 'scroll in id order');
is($r->{json}{result}{next_page_offset}, 3, 'next_page_offset');

# is_empty as Qdrant has it: the key missing (or a parent of it), null or []; a value, 0
# and "" included, is not empty; nested in should/must with a dotted key, as ragq-ingest
# sends it to find the points of a source that have no metadata.chunk
$s->request(PUT => '/collections/emp', { vectors => { size => 2, distance => 'Cosine' } });
$s->request(PUT => '/collections/emp/points?wait=true', { points => [
    { id => 1, vector => [1, 0], payload => { metadata => { source => 'a', chunk => 0 } } },
    { id => 2, vector => [1, 0], payload => { metadata => { source => 'a' } } },
    { id => 3, vector => [1, 0], payload => { metadata => { source => 'a', chunk => undef } } },
    { id => 4, vector => [1, 0], payload => { metadata => { source => 'a', chunk => [] } } },
    { id => 5, vector => [1, 0], payload => { metadata => { source => 'b' } } },
    { id => 6, vector => [1, 0], payload => { page_content => 'no metadata' } },
    { id => 7, vector => [1, 0], payload => { metadata => { source => 'a', chunk => '' } } },
    { id => 8, vector => [1, 0], payload => { metadata => { source => 'a', chunk => 5 } } } ] });
$r = $s->request(POST => '/collections/emp/points/scroll', { limit => 20,
    filter => { must => [{ is_empty => { key => 'metadata.chunk' } }] } });
is_deeply([map { $_->{id} } @{ $r->{json}{result}{points} }], [2, 3, 4, 5, 6],
          'is_empty: missing key or parent, null, []');
$r = $s->request(POST => '/collections/emp/points/scroll', { limit => 20, filter => { should => [
    { must => [{ key => 'metadata.source', match => { value => 'a' } },
               { should => [{ key => 'metadata.chunk', range => { gte => 1 } },
                            { is_empty => { key => 'metadata.chunk' } }] }] }] } });
is_deeply([map { $_->{id} } @{ $r->{json}{result}{points} }], [2, 3, 4, 8],
          'is_empty or range, nested under the source match');

$s->request(PUT => '/collections/euc', { vectors => { size => 2, distance => 'Euclid' } });
$s->request(PUT => '/collections/euc/points?wait=true', { points => [
    { id => 1, vector => [0, 0] }, { id => 2, vector => [3, 4] }, { id => 3, vector => [1, 1] } ] });
$r = $s->request(POST => '/collections/euc/points/query', { query => [3, 3], limit => 3 });
is_deeply([map { $_->{id} } @{ $r->{json}{result}{points} }], [2, 3, 1], 'Euclid: smallest distance first');
cmp_ok(abs($r->{json}{result}{points}[0]{score} - 1), '<', 1e-9, 'Euclid score is the distance');

$r = $s->request(DELETE => '/collections/docs');
is($r->{json}{result}, JSON::PP::true, 'delete');
is($s->request(GET => '/collections/docs')->{status}, 404, 'gone after delete');
$s->stop;

# --- auth + preload (text-only points are embedded by the stand-in itself)
my $q = Ragq::Standin->start(qdrant_api_key => 'qk', dim => 16, data => { collection => 'kb', points => [
    { id => 1, payload => { text => 'refunds are issued within thirty days', source => 'refunds.md' } },
    { id => 2, payload => { page_content => 'shipping is free for members', metadata => { source => 'ship.md' } } } ] });
$r = $q->request(GET => '/collections');
is($r->{status}, 401, 'no api-key: 401');
is($r->{content}, 'Must provide an API key or an Authorization bearer token', 'plain-text 401');
$r = $q->request(GET => '/collections', undef, { 'api-key' => 'nope' });
is($r->{content}, 'Invalid API key or JWT', 'wrong key message');
my ($v) = $q->embed('how many days for refunds');
$r = $q->request(POST => '/collections/kb/points/query', { query => $v, limit => 2 }, { authorization => 'Bearer qk' });
is_deeply([map { $_->{id} } @{ $r->{json}{result}{points} }], [1, 2], 'preloaded data ranks by shared words (bearer auth)');
$q->stop;
