# Regressions of the ragq-ingest audit (December 2026):
# - a directory reached again through a symbolic link is read once: a link
#   back up (dir/up -> ..) added every file once more per level, and two
#   such links made the walk exponential (it never ended);
# - a document that became empty loses its chunks in the local store too
#   (Qdrant already lost them), instead of still answering from old text;
# - a collection created by another ingest between our GET and our PUT
#   (Qdrant: 409 "already exists") is checked and used, not retried five
#   times and given up;
# - an answer without end (a broken server or proxy) stops at a cap
#   instead of growing in memory until the HTTP timeout.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);
use Ragq::Standin;
use Ragq::Ingest qw(write_file ingest store_header slurp_raw);

my $BIN = Ragq::Ingest::binary();
ok(-x $BIN, "$BIN is built") or BAIL_OUT("build $BIN first");

my $tmp = tempdir('ragq-ingest-audit-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# ---- symbolic link loops ---------------------------------------------------
mkdir "$tmp/loop";
mkdir "$tmp/loop/sub";
write_file("$tmp/loop/sub/a.md", "Symbolic link loops must not copy this sentence.\n");
symlink('..', "$tmp/loop/sub/up") or die "symlink: $!";
symlink('.', "$tmp/loop/l1") or die "symlink: $!";
symlink('.', "$tmp/loop/l2") or die "symlink: $!";
my ($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s1" }, "$tmp/loop");
is($rc, 0, 'symlink loops: the walk ends, exit 0') or diag substr($err, -600);
like($out, qr/^ingested 1 file, 1 chunk into collection 'documents'/,
     'symlink loops: the one file is read once');
(undef, undef, undef, my $count) = store_header("$tmp/s1/documents.ragq");
is($count, 1, 'symlink loops: one point in the store');
like($err, qr/skipping \Q$tmp\E\/loop\/sub\/up: a directory already read \(a symbolic link loop/,
     'symlink loops: the link back up is skipped with a note');
like($err, qr/skipping \Q$tmp\E\/loop\/l1: a directory already read/, '... and the link to itself');
unlike($err, qr/nested too deep/, 'symlink loops: no walk down to the depth limit');

# two links to one directory: its files once, under the first name
mkdir "$tmp/two";
mkdir "$tmp/shared";
write_file("$tmp/shared/s.md", "A directory linked twice is read once.\n");
symlink("$tmp/shared", "$tmp/two/a") or die;
symlink("$tmp/shared", "$tmp/two/b") or die;
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s1b" }, "$tmp/two");
is($rc, 0, 'two links to one directory: exit 0') or diag $err;
like($out, qr/^ingested 1 file, 1 chunk/, 'two links to one directory: its file once');
like($err, qr/skipping \Q$tmp\E\/two\/b: a directory already read/, '... the second link is noted');

# ---- local store: a document that became empty -----------------------------
mkdir "$tmp/e";
write_file("$tmp/e/a.md", "Alpha talks about queues and workers.\n");
write_file("$tmp/e/b.md", "Bravo-only-sentence about stale vectors.\n");
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s2" }, "$tmp/e");
is($rc, 0, 'local store: first ingest') or diag $err;
(undef, undef, undef, $count) = store_header("$tmp/s2/documents.ragq");
is($count, 2, 'local store: two points');
write_file("$tmp/e/b.md", "   \n\n");
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s2" }, "$tmp/e");
is($rc, 0, 'local store: emptied document, exit 0') or diag $err;
like($err, qr/skipping \Q$tmp\E\/e\/b\.md: no text in it/, 'local store: the empty document is noted');
(undef, undef, undef, $count) = store_header("$tmp/s2/documents.ragq");
is($count, 1, 'local store: the emptied document\'s old chunk is gone');
unlike(slurp_raw("$tmp/s2/documents.ragq"), qr/Bravo-only-sentence/,
       'local store: its old text is not in the store file');
like(slurp_raw("$tmp/s2/documents.ragq"), qr/Alpha talks about queues/, 'local store: the other document stays');

# a document not named in this run keeps its chunks
mkdir "$tmp/f";
write_file("$tmp/f/c.md", "Charlie is ingested on its own.\n");
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s2" }, "$tmp/f");
is($rc, 0, 'local store: another path') or diag $err;
(undef, undef, undef, $count) = store_header("$tmp/s2/documents.ragq");
is($count, 2, 'local store: documents of other runs are kept');

# ---- Qdrant: the collection created meanwhile by another ingest -------------
my $s = Ragq::Standin->start(dim => 24);
mkdir "$tmp/q";
write_file("$tmp/q/q.md", "Qdrant collections can be created by two ingests at once.\n");
my %env = (RAGQ_EMBED_BASE_URL => $s->base_url, QDRANT_URL => $s->qdrant_url,
           RAGQ_COLLECTION => 'race');

# The race, made deterministic: the collection exists, but our GET is told
# it does not (as if the other ingest created it right after our GET).
$s->create_collection('race', 24);
$s->reset;    # stats only: the collection stays
$s->fault({ path => '/collections/race', method => 'GET', status => 404, times => 1,
            body => '{"status":{"error":"Not found: Collection `race` doesn\'t exist!"},"time":0.0}' });
($rc, $out, $err) = ingest(\%env, "$tmp/q");
is($rc, 0, 'collection created meanwhile: exit 0') or diag $err;
like($out, qr/^ingested 1 file, 1 chunk into collection 'race'/, 'collection created meanwhile: summary');
like($err, qr/collection 'race' was created meanwhile by someone else; using it/,
     'collection created meanwhile: noted');
unlike($err, qr/retrying/, 'collection created meanwhile: the 409 is not retried');
my @puts = grep { $_->{method} eq 'PUT' && $_->{path} eq '/collections/race' } @{ $s->stats->{log} };
is(scalar @puts, 1, 'collection created meanwhile: one PUT of the collection');
is($s->request(GET => '/collections/race')->{json}{result}{points_count}, 1,
   'collection created meanwhile: the point is stored');

# ... and one of another vector size is refused like any other
$s->create_collection('race8', 8);
$s->fault({ path => '/collections/race8', method => 'GET', status => 404, times => 1 });
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'race8' }, "$tmp/q");
is($rc, 1, 'created meanwhile with another size: exit 1');
like($err, qr/collection 'race8' at \S+ holds vectors of size 8, but embedder openai text-embedding-3-small makes vectors of size 24/,
     'created meanwhile with another size: the size message');
is($s->request(GET => '/collections/race8')->{json}{result}{points_count}, 0,
   'created meanwhile with another size: nothing written');

# ---- an answer without end --------------------------------------------------
$s->reset;
# limit_bytes: a runaway old binary stops at 256 MiB, not at the machine's memory
$s->fault({ path => '/v1/embeddings', mode => 'flood', times => 1, limit_bytes => 256 << 20 });
my $t0 = time;
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'flood' }, "$tmp/q");
is($rc, 1, 'endless embeddings answer: exit 1');
like($err, qr/embedding with model 'text-embedding-3-small' at \S+ failed: POST \S+: the answer is larger than 4456448 bytes; not retried/,
     'endless embeddings answer: the cap is named');
cmp_ok(time - $t0, '<', 30, 'endless embeddings answer: stopped at the cap, not at the HTTP timeout');
cmp_ok($s->stats->{flood_sent}, '<', 64 << 20, 'endless embeddings answer: read no further than the cap');
is($out, '', 'endless embeddings answer: no summary');

$s->reset;
$s->fault({ path => '/collections/flood', method => 'GET', mode => 'flood', times => 1,
            limit_bytes => 256 << 20 });
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'flood' }, "$tmp/q");
is($rc, 1, 'endless Qdrant answer: exit 1');
like($err, qr/cannot read collection 'flood' at \S+: GET \S+: the answer is larger than 16777216 bytes; not retried/,
     'endless Qdrant answer: the cap is named');

$s->stop;
done_testing;
