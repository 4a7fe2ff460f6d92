# ragq-ingest against the Qdrant + OpenAI-compatible stand-in: the collection
# is created with the embedder's vector size and cosine distance, points
# carry LangChain's payload and deterministic UUIDs, re-ingesting updates
# instead of duplicating, the points LangChain's own ingestion wrote for a
# document (metadata.source, no metadata.chunk) go when ragq-ingest loads
# it, a collection of another size is refused, keys are sent, and PDFs
# without pdftotext get a message naming poppler-utils.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Ragq::Standin;
use Ragq::Ingest qw(write_file ingest);

my $BIN = Ragq::Ingest::binary();
ok(-x $BIN, "$BIN is built") or BAIL_OUT("build $BIN first");

my $dir = tempdir('ragq-ingest-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$dir/docs";
mkdir "$dir/docs/sub";
write_file("$dir/docs/queue.md", join ' ', map {
    "Sentence $_ says that workers claim jobs from the Valkey stream." } 1 .. 12);
write_file("$dir/docs/sub/store.txt",
    "Qdrant keeps the vectors.\n\nEach chunk is a point with a payload.\n");
write_file("$dir/docs/picture.png", "\x89PNG not text");
write_file("$dir/docs/empty.md", "  \n\n ");
write_file("$dir/docs/.hidden.md", "hidden files are not read");

my $s = Ragq::Standin->start(dim => 24);
my %env = (
    RAGQ_EMBED_BASE_URL => $s->base_url, QDRANT_URL => $s->qdrant_url,
    RAGQ_COLLECTION => 'docs', RAGQ_CHUNK_SIZE => 200, RAGQ_CHUNK_OVERLAP => 40,
    RAGQ_BATCH_SIZE => 3,
);

# ---- first ingest: the collection is created ------------------------------
my ($rc, $out, $err) = ingest(\%env, "$dir/docs");
is($rc, 0, 'exit 0') or diag $err;
like($out, qr/^ingested 2 files, (\d+) chunks into collection 'docs' \(qdrant \Q${\ $s->qdrant_url}\E, embedder openai text-embedding-3-small, dim 24\) in \d+\.\d s\n\z/,
     'summary line');
my ($chunks) = $out =~ /, (\d+) chunks/;
cmp_ok($chunks, '>=', 5, 'the long document was split');
like($err, qr/skipping \Q$dir\E\/docs\/picture\.png: only \.txt, \.md, \.markdown and \.pdf/,
     'other file types are skipped with a note');
like($err, qr/skipping \Q$dir\E\/docs\/empty\.md: no text/, 'an empty document is noted');
like($err, qr/created collection 'docs' \(vectors of size 24, cosine\)/, 'creation is reported');
unlike($err, qr/hidden/, 'hidden files are not read');

my $info = $s->request(GET => '/collections/docs')->{json}{result};
is($info->{config}{params}{vectors}{size}, 24, 'collection created with the embedder\'s size');
is($info->{config}{params}{vectors}{distance}, 'Cosine', '... and cosine distance');
is($info->{points_count}, $chunks, 'one point per chunk');

my $scroll = $s->request(POST => '/collections/docs/points/scroll',
                         { limit => 1000, with_payload => JSON::PP::true() })->{json}{result}{points};
is(scalar @$scroll, $chunks, 'scroll sees every point');
my %by_source;
my $uuid = qr/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
my $bad = 0;
for my $p (@$scroll) {
    $bad++ unless $p->{id} =~ $uuid;
    $bad++ unless defined $p->{payload}{page_content} && length $p->{payload}{page_content};
    push @{ $by_source{ $p->{payload}{metadata}{source} } }, $p->{payload}{metadata}{chunk};
}
is($bad, 0, 'UUIDv5 ids and page_content on every point');
is_deeply([sort keys %by_source], ["$dir/docs/queue.md", "$dir/docs/sub/store.txt"],
          'metadata.source names the files');
is_deeply([sort { $a <=> $b } @{ $by_source{"$dir/docs/sub/store.txt"} }], [0],
          'a short file is one chunk, number 0');
is_deeply([sort { $a <=> $b } @{ $by_source{"$dir/docs/queue.md"} }], [0 .. $chunks - 2],
          'metadata.chunk numbers the chunks of a document');
my ($first) = grep { $_->{payload}{metadata}{source} =~ /store\.txt$/ } @$scroll;
is($first->{payload}{page_content}, "Qdrant keeps the vectors.\n\nEach chunk is a point with a payload.",
   'page_content is the chunk text');

# the embeddings came from the server, in batches of 3
my $stats = $s->stats;
is($stats->{requests}{'/v1/embeddings'}, int(($chunks + 2) / 3), 'embedded in batches of RAGQ_BATCH_SIZE');

# ---- re-ingest: same ids, no duplicates ------------------------------------
my @ids_before = sort map { $_->{id} } @$scroll;
($rc, $out, $err) = ingest(\%env, "$dir/docs/");
is($rc, 0, 're-ingest: exit 0') or diag $err;
unlike($err, qr/created collection/, 're-ingest: the collection is reused');
$info = $s->request(GET => '/collections/docs')->{json}{result};
is($info->{points_count}, $chunks, 're-ingest: points_count unchanged');
$scroll = $s->request(POST => '/collections/docs/points/scroll', { limit => 1000 })->{json}{result}{points};
is_deeply([sort map { $_->{id} } @$scroll], \@ids_before, 're-ingest: the same point ids');

# ---- a document that got shorter leaves no stale chunks --------------------
write_file("$dir/docs/queue.md", "Workers claim jobs. That is all now.");
($rc, $out, $err) = ingest(\%env, "$dir/docs");
is($rc, 0, 'shorter document: exit 0') or diag $err;
like($out, qr/ingested 2 files, 2 chunks/, 'shorter document: two chunks in all');
$scroll = $s->request(POST => '/collections/docs/points/scroll',
                      { limit => 1000, with_payload => JSON::PP::true() })->{json}{result}{points};
is(scalar @$scroll, 2, 'shorter document: its old chunks are gone');
is_deeply([sort map { $_->{payload}{page_content} } @$scroll],
          ["Qdrant keeps the vectors.\n\nEach chunk is a point with a payload.",
           'Workers claim jobs. That is all now.'], 'shorter document: the new text');

# ---- points LangChain wrote for a document go when ragq-ingest loads it ---
# A collection migrated from LangChain: its points have metadata.source but
# no metadata.chunk, under ids that are not ragq's, so no upsert replaces them.
sub langchain_point {
    my ($id, $source, $text, %meta) = @_;
    return { id => $id, payload => { page_content => $text, metadata => { source => $source, %meta } } };
}
$s->upsert('docs', [
    langchain_point(900001, "$dir/docs/queue.md", 'LangChain-old-queue, first split.', start_index => 0),
    langchain_point(900002, "$dir/docs/queue.md", 'LangChain-old-queue, second split.', start_index => 950),
    langchain_point(900003, "$dir/docs/queue.md", 'LangChain-old-queue, null chunk.', chunk => undef),
    langchain_point(900004, "$dir/docs/gone.md", 'LangChain-gone, a file not loaded again.'),
    langchain_point(900005, "docs/queue.md", 'LangChain-relative, another source string.'),
]);
is($s->request(GET => '/collections/docs')->{json}{result}{points_count}, 7, 'LangChain points: added');
($rc, $out, $err) = ingest(\%env, "$dir/docs");
is($rc, 0, 'LangChain points: re-ingest exit 0') or diag $err;
$scroll = $s->request(POST => '/collections/docs/points/scroll',
                      { limit => 1000, with_payload => JSON::PP::true() })->{json}{result}{points};
is_deeply([sort map { $_->{payload}{page_content} } @$scroll],
          ["LangChain-gone, a file not loaded again.", "LangChain-relative, another source string.",
           "Qdrant keeps the vectors.\n\nEach chunk is a point with a payload.",
           'Workers claim jobs. That is all now.'],
          'LangChain points: those of the document loaded again are gone, the others stay');

# a document that became empty loses LangChain's points too, and they are counted
$s->upsert('docs', [langchain_point(900006, "$dir/docs/sub/store.txt", 'LangChain-old-store.')]);
write_file("$dir/docs/sub/store.txt", "\n");
($rc, $out, $err) = ingest(\%env, "$dir/docs/sub");
is($rc, 0, 'LangChain points, emptied document: exit 0') or diag $err;
like($out, qr/^no text in 1 file: removed its 2 old chunks from collection 'docs'/,
     'LangChain points, emptied document: ragq\'s chunk and LangChain\'s point counted');
$scroll = $s->request(POST => '/collections/docs/points/scroll',
                      { limit => 1000, with_payload => JSON::PP::true() })->{json}{result}{points};
is_deeply([sort grep { /store\.txt\z/ } map { $_->{payload}{metadata}{source} } @$scroll], [],
          'LangChain points, emptied document: none of its points is left');
is(scalar @$scroll, 3, 'LangChain points, emptied document: the others stay');
write_file("$dir/docs/sub/store.txt",
    "Qdrant keeps the vectors.\n\nEach chunk is a point with a payload.\n");

# ---- wrong vector size ------------------------------------------------------
$s->create_collection('small', 8);
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'small' }, "$dir/docs");
is($rc, 1, 'size mismatch: exit 1');
is($out, '', 'size mismatch: no summary');
like($err, qr/^ragq-ingest: collection 'small' at \Q${\ $s->qdrant_url}\E holds vectors of size 8, but embedder openai text-embedding-3-small makes vectors of size 24; ingest into another collection/m,
     'size mismatch: a precise message');
is($s->request(GET => '/collections/small')->{json}{result}{points_count}, 0,
   'size mismatch: nothing written');

# ---- the hashed embedder into Qdrant ------------------------------------
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'hashed', RAGQ_EMBEDDER => 'hash' }, "$dir/docs");
is($rc, 0, 'hash embedder into Qdrant: exit 0') or diag $err;
like($out, qr/embedder hash, dim 384\)/, 'hash embedder: dim 384');
is($s->request(GET => '/collections/hashed')->{json}{result}{config}{params}{vectors}{size}, 384,
   'hash embedder: collection of size 384');

# ---- keys --------------------------------------------------------------
my $k = Ragq::Standin->start(dim => 24, api_key => 'ek', qdrant_api_key => 'qk');
my %kenv = (%env, RAGQ_EMBED_BASE_URL => $k->base_url, QDRANT_URL => $k->qdrant_url);
($rc, $out, $err) = ingest({ %kenv, RAGQ_EMBED_API_KEY => 'ek', QDRANT_API_KEY => 'qk' }, "$dir/docs");
is($rc, 0, 'with keys: exit 0') or diag $err;
($rc, $out, $err) = ingest({ %kenv, RAGQ_EMBED_API_KEY => 'ek' }, "$dir/docs");
is($rc, 1, 'without the Qdrant key: exit 1');
like($err, qr/cannot read collection 'docs' at \S+: Must provide an API key/,
     'without the Qdrant key: says why');
($rc, $out, $err) = ingest({ %kenv, QDRANT_API_KEY => 'qk', RAGQ_EMBED_API_KEY => 'wrong' }, "$dir/docs");
is($rc, 1, 'wrong embeddings key: exit 1');
like($err, qr/embedding with model 'text-embedding-3-small' at \Q${\ $k->base_url}\E\/embeddings failed: /,
     'wrong embeddings key: says which call failed');
$k->stop;

# ---- failures before any work ------------------------------------------
write_file("$dir/paper.pdf", "%PDF-1.4 not really");
($rc, $out, $err) = ingest({ %env, PATH => '/nonexistent' }, "$dir/paper.pdf");
is($rc, 1, 'PDF without pdftotext: exit 1');
like($err, qr/install the package poppler-utils/, 'PDF without pdftotext: names the package');
($rc, $out, $err) = ingest(\%env, "$dir/nothere");
is($rc, 1, 'missing path: exit 1');
like($err, qr/cannot read '\Q$dir\E\/nothere': No such file or directory/, 'missing path: message');
($rc, $out, $err) = ingest(\%env);
is($rc, 2, 'no path: usage error');
like($err, qr/needs at least one file or directory/, 'no path: message');
($rc, $out, $err) = ingest({ %env, QDRANT_URL => '127.0.0.1:6333' }, "$dir/docs");
is($rc, 2, 'bad QDRANT_URL: exit 2');
like($err, qr/QDRANT_URL must be an http:\/\/ or https:\/\/ URL/, 'bad QDRANT_URL: message');
($rc, $out, $err) = ingest({ %env, QDRANT_URL => 'http://127.0.0.1:1' }, "$dir/docs");
is($rc, 1, 'Qdrant down: exit 1');
like($err, qr/cannot read collection 'docs' at http:\/\/127\.0\.0\.1:1: /, 'Qdrant down: message');

$s->stop;
done_testing;
