# The offline path end to end: ragq-ingest with the hashed embedder writes
# the bundled samples into a local store; re-ingesting does not duplicate; a
# different vector size is refused; a ragq-worker with no model server and
# no Qdrant answers from that store with the extractive answerer, citing its
# sources, and picks up documents ingested while it runs.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Ingest qw(ingest store_header);
use Ragq::Worker;

my $BIN = Ragq::Ingest::binary();
ok(-x $BIN, "$BIN is built") or BAIL_OUT("build $BIN first");

my $tmp = tempdir('ragq-local-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $store = "$tmp/store";

my %env = (RAGQ_STORE_PATH => $store);
my ($rc, $out, $err) = ingest(\%env, 'samples/docs');
is($rc, 0, 'ingest: exit 0') or diag $err;
like($out, qr/^ingested 4 files, (\d+) chunks into collection 'documents' \(local store \Q$store\E, embedder hash, dim 384\) in \d+\.\d s\n\z/,
     'ingest: summary names the local store and the hash embedder');
my ($chunks) = $out =~ /, (\d+) chunks/;
my ($magic, $ver, $dim, $count) = store_header("$store/documents.ragq");
is($magic, "RAGQVEC\0", 'store file written');
is($ver, 1, 'format version 1');
is($dim, 384, 'dimension 384');
is($count, $chunks, 'one point per chunk');
ok(!glob("$store/.documents.ragq.tmp.*"), 'no temporary file left behind');

($rc, $out, $err) = ingest(\%env, './samples/docs/');
is($rc, 0, 're-ingest: exit 0') or diag $err;
(undef, undef, undef, my $count2) = store_header("$store/documents.ragq");
is($count2, $count, 're-ingest: the same number of points');

# smaller chunks, then the default again: no chunks of the first run remain
($rc, $out, $err) = ingest({ %env, RAGQ_CHUNK_SIZE => 300, RAGQ_CHUNK_OVERLAP => 50 }, 'samples/docs');
is($rc, 0, 'smaller chunks: exit 0') or diag $err;
(undef, undef, undef, my $small) = store_header("$store/documents.ragq");
cmp_ok($small, '>', $count, 'smaller chunks: more points');
($rc, $out, $err) = ingest(\%env, 'samples/docs');
(undef, undef, undef, $count2) = store_header("$store/documents.ragq");
is($count2, $count, 'default chunks again: the documents\' old chunks are replaced');

# another embedder's vectors do not go into a 384-dimension collection
my $s = Ragq::Standin->start(dim => 24);
($rc, $out, $err) = ingest({ %env, RAGQ_EMBED_BASE_URL => $s->base_url }, 'samples/docs');
is($rc, 1, 'other dimension: exit 1');
like($err, qr/collection 'documents' in \Q$store\E holds vectors of size 384, not 24/,
     'other dimension: a precise message');
(undef, undef, undef, my $count3) = store_header("$store/documents.ragq");
is($count3, $count, 'other dimension: the store is unchanged');
$s->stop;

# ---- the worker answers from the store, offline -----------------------
my $P = "il$$";
my $w = Ragq::Worker->start(env => { RAGQ_PREFIX => $P, RAGQ_STORE_PATH => $store });
ok($w->ready, 'worker is ready') or diag $w->log;

my $id = Ragq::Worker::enqueue(prefix => $P, query => 'What happens to a job when a worker dies?',
                               top_k => 4);
is(Ragq::Worker::wait_final($P, [$id], 15), 1, 'job reached a final state');
my $j = Ragq::Worker::job($P, $id);
is($j->{status}, 'finished', 'finished') or diag explain $j, $w->log;
like($j->{result}, qr/another worker takes it over \[\d\]\./,
     'the answer quotes the document that covers it, with a citation');
my $src = decode_json($j->{sources} // '[]');
is(scalar @$src, 4, 'top_k sources');
my ($n) = $j->{result} =~ /\[(\d)\]/;
is($src->[$n - 1]{source}, 'samples/docs/queue.md', 'the citation points at the right source');
is_deeply(decode_json($j->{usage})->{backends},
          { embedder => 'hash', store => 'local', answerer => 'extractive' },
          'usage names the offline backends');

# a document ingested while the worker runs is found without a restart
mkdir "$tmp/more";
open my $f, '>', "$tmp/more/tea.md" or die;
print $f "# Tea\n\nGreen tea is steamed or pan-fired soon after picking, which keeps its leaves green.\n";
close $f;
($rc, $out, $err) = ingest(\%env, "$tmp/more");
is($rc, 0, 'second ingest: exit 0') or diag $err;
$id = Ragq::Worker::enqueue(prefix => $P, query => 'Why do green tea leaves stay green?', top_k => 3);
Ragq::Worker::wait_final($P, [$id], 15);
$j = Ragq::Worker::job($P, $id);
is($j->{status}, 'finished', 'new document: finished') or diag explain $j;
like($j->{result}, qr/^Green tea is steamed or pan-fired soon after picking, which keeps its leaves green \[1\]\.$/,
     'new document: answered from it');

# a collection that is not there fails the job with the store's message
$id = Ragq::Worker::enqueue(prefix => $P, query => 'anything', collection => 'nope');
Ragq::Worker::wait_final($P, [$id], 15);
$j = Ragq::Worker::job($P, $id);
is($j->{status}, 'failed', 'missing collection: failed');
my $e = decode_json($j->{error} // '{}');
is($e->{code}, 'collection_not_found', 'missing collection: code');
is($e->{message}, "collection 'nope' does not exist in $store", 'missing collection: message');

$w->stop;
done_testing;
