# The offline path end to end: documents loaded by ragq-ingest into the
# local store with the hash embedder; the worker answers with the
# extractive answerer, no model server and no Qdrant.  Also: a collection
# that is not there fails collection_not_found.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use File::Temp qw(tempdir);
use Ragq::Valkey ();
use Ragq::Worker;

my $P = "wl$$";
my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/docs";
open my $f, '>', "$dir/docs/lighthouse.md" or die;
print $f "# Lighthouses\n\nThe Tower of Hercules is the oldest lighthouse still in use. "
  . "It stands near A Coruña in Spain.\n\nLighthouse keepers once trimmed wicks every night.\n";
close $f;
open $f, '>', "$dir/docs/bread.txt" or die;
print $f "Sourdough bread rises thanks to wild yeast and lactic acid bacteria. "
  . "A starter must be fed with flour and water.\n";
close $f;

my %env = (RAGQ_EMBEDDER => 'hash', RAGQ_STORE => 'local', RAGQ_ANSWERER => 'extractive',
           RAGQ_STORE_PATH => "$dir/store", RAGQ_COLLECTION => 'kb');
my $build = $ENV{RAGQ_BUILD} || 'build';
{
    local @ENV{ keys %env } = values %env;
    my $out = `$build/ragq-ingest $dir/docs 2>&1`;
    is($?, 0, 'ragq-ingest loaded the documents') or diag $out;
}

my $w = Ragq::Worker->start(env => { %env, RAGQ_PREFIX => $P });
ok($w->ready, 'worker ready with local backends') or diag $w->log;
like($w->log, qr/embedder hash, store local, answerer extractive/, 'backends in the ready line');

my $id = Ragq::Worker::enqueue(prefix => $P, query => 'Which is the oldest lighthouse still in use?', top_k => 2);
is(Ragq::Worker::wait_final($P, [$id], 10), 1, 'job ends');
my $j = Ragq::Worker::job($P, $id);
is($j->{status}, 'finished', 'finished') or diag explain $j;
like($j->{result}, qr/Tower of Hercules is the oldest lighthouse still in use.*\[1\]/,
     'extractive answer quotes the chunk with its citation');
my $src = decode_json($j->{sources});
like($src->[0]{source}, qr/lighthouse\.md$/, 'best source first');
is_deeply(decode_json($j->{usage})->{backends},
          { embedder => 'hash', store => 'local', answerer => 'extractive' }, 'usage.backends');

my $id2 = Ragq::Worker::enqueue(prefix => $P, query => 'How does sourdough rise?', top_k => 1);
Ragq::Worker::wait_final($P, [$id2], 10);
like(Ragq::Worker::field($P, $id2, 'result'), qr/wild yeast/, 'second document answers its question');

my $id3 = Ragq::Worker::enqueue(prefix => $P, collection => 'missing');
Ragq::Worker::wait_final($P, [$id3], 10);
is(Ragq::Worker::field($P, $id3, 'status'), 'failed', 'missing local collection: failed');
is(decode_json(Ragq::Worker::field($P, $id3, 'error'))->{code}, 'collection_not_found',
   'collection_not_found');

# Many jobs at once through the synchronous backends: posted, never recursive.
my @ids = map { Ragq::Worker::enqueue(prefix => $P, query => "lighthouse keepers $_") } 1 .. 40;
is(Ragq::Worker::wait_final($P, \@ids, 20), 40, '40 jobs end');
is(scalar(grep { Ragq::Worker::field($P, $_, 'status') eq 'finished' } @ids), 40, 'all finished');

is($w->stop, 0, 'exit 0');
done_testing();
