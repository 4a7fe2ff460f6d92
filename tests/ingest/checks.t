# Regressions of the second ragq-ingest audit (December 2026):
# - a rerun where every document is now empty removes their old chunks
#   (Qdrant and local store) and exits 0, instead of stopping with "no text
#   to ingest" and leaving the old text searchable; "no text to ingest"
#   (exit 1) stays for runs that found no document at all;
# - a .txt/.md file that looks binary (a NUL byte, or over 10% invalid
#   UTF-8, in its first 8 KiB) is skipped with a warning, not ingested as
#   chunks of U+FFFD, and loses its old chunks as an empty document does;
#   real UTF-8 text (and Latin-1 with a few accents) is still read;
# - a 2xx answer to an upsert (or a delete) that is not Qdrant's update
#   result, or says it was not completed, is an error, not counted as
#   stored;
# - a 2xx answer to the collection's creation (PUT /collections/NAME) that
#   is not Qdrant's {"result":true,...} (a proxy's page, "result":false) is
#   an error naming the collection, the URL and the answer, cut short;
# - --log-level / RAGQ_LOG_LEVEL quiets the notes (info) and warnings
#   (warn) on stderr; errors and the summary on stdout always show.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep time);
use Ragq::Standin;
use Ragq::Ingest qw(write_file slurp_raw ingest);

my $BIN = Ragq::Ingest::binary();
ok(-x $BIN, "$BIN is built") or BAIL_OUT("build $BIN first");

my $tmp = tempdir('ragq-ingest-checks-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# Points in a local store file (its header: magic, version, dim, count).
sub store_count {
    my ($path) = @_;
    my $h = substr(slurp_raw($path), 0, 24);
    return undef unless length $h == 24;
    my (undef, undef, undef, $lo, $hi) = unpack('a8 V V V V', $h);
    return $lo + $hi * 2**32;
}

# ---- 1. every document emptied: local store ---------------------------------
mkdir "$tmp/e";
write_file("$tmp/e/a.md", "Alpha talks about queues and workers.\n");
write_file("$tmp/e/b.md", "Bravo-only-sentence about stale vectors.\n");
my ($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s1" }, "$tmp/e");
is($rc, 0, 'emptied, local: first ingest') or diag $err;
is(store_count("$tmp/s1/documents.ragq"), 2, 'emptied, local: two points');

write_file("$tmp/e/b.md", "  \n\n");
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s1" }, "$tmp/e/b.md");
is($rc, 0, 'emptied, local: the only document named is empty: exit 0') or diag $err;
like($out, qr/^no text in 1 file: removed its 1 old chunk from collection 'documents' \(local store \Q$tmp\E\/s1\) in \d+\.\d s\n\z/,
     'emptied, local: the summary says its old chunk was removed');
like($err, qr/skipping \Q$tmp\E\/e\/b\.md: no text in it/, 'emptied, local: the empty document is noted');
is(store_count("$tmp/s1/documents.ragq"), 1, 'emptied, local: its old chunk is gone');
unlike(slurp_raw("$tmp/s1/documents.ragq"), qr/Bravo-only-sentence/, 'emptied, local: its old text is not in the store');
like(slurp_raw("$tmp/s1/documents.ragq"), qr/Alpha talks about queues/, 'emptied, local: the other document stays');

# the same run again: nothing left to remove, and still not a failure
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s1" }, "$tmp/e/b.md");
is($rc, 0, 'emptied, local, again: exit 0') or diag $err;
like($out, qr/^no text in 1 file: removed its 0 old chunks from collection 'documents'/, 'emptied, local, again: 0 removed');
is(store_count("$tmp/s1/documents.ragq"), 1, 'emptied, local, again: the other document stays');

# an empty document and no store yet: nothing created
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s-none" }, "$tmp/e/b.md");
is($rc, 0, 'emptied, no store: exit 0') or diag $err;
ok(!-e "$tmp/s-none", 'emptied, no store: no store directory created');

# no document at all is still an error
mkdir "$tmp/nodoc";
write_file("$tmp/nodoc/p.png", "\x89PNG\r\n");
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s1" }, "$tmp/nodoc");
is($rc, 1, 'no document found: exit 1');
like($err, qr/no text to ingest in the paths given/, 'no document found: "no text to ingest"');

# ---- 1. every document emptied: Qdrant --------------------------------------
my $s = Ragq::Standin->start(dim => 24);
my %env = (RAGQ_EMBED_BASE_URL => $s->base_url, QDRANT_URL => $s->qdrant_url,
           RAGQ_COLLECTION => 'emptied');
sub points_count { $s->request(GET => "/collections/$_[0]")->{json}{result}{points_count} }
mkdir "$tmp/q";
write_file("$tmp/q/a.md", "Alpha talks about queues and workers.\n");
write_file("$tmp/q/b.md", "Bravo-only-sentence about stale vectors.\n");
($rc, $out, $err) = ingest(\%env, "$tmp/q");
is($rc, 0, 'emptied, qdrant: first ingest') or diag $err;
is(points_count('emptied'), 2, 'emptied, qdrant: two points');
write_file("$tmp/q/b.md", "\n");
($rc, $out, $err) = ingest(\%env, "$tmp/q/b.md");
is($rc, 0, 'emptied, qdrant: exit 0') or diag $err;
like($out, qr/^no text in 1 file: removed its 1 old chunk from collection 'emptied' \(qdrant \Q${\ $s->qdrant_url}\E\) in \d+\.\d s\n\z/,
     'emptied, qdrant: the summary');
is(points_count('emptied'), 1, 'emptied, qdrant: its old chunk is gone');
my $left = $s->request(POST => '/collections/emptied/points/scroll',
                       { limit => 10, with_payload => JSON::PP::true() })->{json}{result}{points};
is($left->[0]{payload}{metadata}{source}, "$tmp/q/a.md", 'emptied, qdrant: the other document stays');

# a collection that does not exist: 0 removed, and it is not created
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'never' }, "$tmp/q/b.md");
is($rc, 0, 'emptied, no collection: exit 0') or diag $err;
like($out, qr/^no text in 1 file: removed its 0 old chunks from collection 'never'/, 'emptied, no collection: 0 removed');
is($s->request(GET => '/collections/never')->{status}, 404, 'emptied, no collection: not created');

# ---- 2. binary files with a text extension ----------------------------------
mkdir "$tmp/bin";
open my $ls, '<:raw', '/bin/ls' or die "/bin/ls: $!";
read($ls, my $elf, 20000) == 20000 or die 'short /bin/ls';
close $ls;
write_file("$tmp/bin/x.txt", $elf);
# data without a NUL byte (as compressed data is): mostly invalid UTF-8
my ($seed, $noise) = (12345, '');
for (1 .. 12000) {
    $seed = ($seed * 1103515245 + 12345) % 2**31;
    $noise .= chr(1 + ($seed >> 16) % 255);
}
write_file("$tmp/bin/y.md", $noise);
# real text: UTF-8, most of it outside ASCII; and Latin-1 with a few accents
my $jp = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe6\x96\x87\xe7\xab\xa0";    # 日本語の文章
write_file("$tmp/bin/u.md", ("$jp \xce\xb1\xce\xb2\xce\xb3 na\xc3\xafve caf\xc3\xa9. " x 40) . "\n");
write_file("$tmp/bin/l.txt", "Le caf\xe9 est pr\xeat pour la r\xe9union de demain matin.\n");
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s2", RAGQ_CHUNK_SIZE => 100, RAGQ_CHUNK_OVERLAP => 0 },
                           "$tmp/bin");
is($rc, 0, 'binary: exit 0') or diag $err;
like($err, qr/skipping \Q$tmp\E\/bin\/x\.txt: it looks binary, not text/, 'binary: the part of /bin/ls is skipped, named');
like($err, qr/skipping \Q$tmp\E\/bin\/y\.md: it looks binary, not text/, 'binary: data without NUL but not UTF-8 is skipped');
unlike($err, qr/(?:u\.md|l\.txt): it looks binary/, 'binary: the text files are not');
my ($files, $chunks) = $out =~ /^ingested (\d+) files, (\d+) chunks/;
is($files, 2, 'binary: the UTF-8 and the Latin-1 files are ingested');
is(store_count("$tmp/s2/documents.ragq"), $chunks, 'binary: only their chunks are stored');
my $store = slurp_raw("$tmp/s2/documents.ragq");
like($store, qr/\Q$jp\E/, 'binary: the UTF-8 text is stored as it is');
unlike($store, qr/ELF/, 'binary: nothing of /bin/ls is stored');
my $fffd = () = $store =~ /\xef\xbf\xbd/g;
cmp_ok($fffd, '<=', 3, 'binary: no U+FFFD but the Latin-1 accents');
# a text file that became binary loses its old chunks, as an empty one does
mkdir "$tmp/bin2";
write_file("$tmp/bin2/w.txt", "Whiskey-old-text that was a document once.\n");
write_file("$tmp/bin2/k.txt", "Kilo keeps its text.\n");
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s3" }, "$tmp/bin2");
is($rc, 0, 'became binary: first ingest') or diag $err;
write_file("$tmp/bin2/w.txt", $elf);
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s3" }, "$tmp/bin2/w.txt");
is($rc, 0, 'became binary: exit 0') or diag $err;
like($err, qr/skipping \Q$tmp\E\/bin2\/w\.txt: it looks binary/, 'became binary: skipped with a warning');
like($out, qr/^no text in 1 file: removed its 1 old chunk from collection 'documents'/,
     'became binary: its old chunk is removed');
is(store_count("$tmp/s3/documents.ragq"), 1, 'became binary: the other document stays');
unlike(slurp_raw("$tmp/s3/documents.ragq"), qr/Whiskey-old-text/, 'became binary: its old text is gone');

# ---- 3. a 2xx upsert answer that is not an update result --------------------
mkdir "$tmp/u";
write_file("$tmp/u/u.md", "An upsert answer must be checked, not trusted.\n");
$s->reset;
$s->fault({ path => '/collections/upsert/points', method => 'PUT', status => 200,
            body => '<html><body>Welcome to our proxy</body></html>', times => 1 });
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'upsert' }, "$tmp/u");
is($rc, 1, 'upsert answered 200 and not JSON: exit 1');
like($err, qr/writing 1 points to collection 'upsert' at \S+ failed: the answer cannot be used: Qdrant upsert answer is not a JSON object/,
     'upsert answered 200 and not JSON: the message');
is($out, '', 'upsert answered 200 and not JSON: no summary');

$s->fault({ path => '/collections/upsert/points', method => 'PUT', status => 200,
            body => '{"status":"ok","result":{"operation_id":3,"status":"wait_timeout"},"time":0.1}',
            times => 1 });
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'upsert' }, "$tmp/u");
is($rc, 1, 'upsert answered wait_timeout: exit 1');
like($err, qr/the answer cannot be used: Qdrant upsert was not completed \(result\.status "wait_timeout"\)/,
     'upsert answered wait_timeout: the message');

$s->fault({ path => '/collections/upsert/points/delete', method => 'POST', status => 200,
            body => 'OK', times => 1 });
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'upsert' }, "$tmp/u");
is($rc, 1, 'delete answered 200 and not JSON: exit 1');
like($err, qr/removing old chunks from collection 'upsert' at \S+ failed: the answer cannot be used: Qdrant delete answer is not a JSON object/,
     'delete answered 200 and not JSON: the message');

# the real answers still pass
($rc, $out, $err) = ingest({ %env, RAGQ_COLLECTION => 'upsert' }, "$tmp/u");
is($rc, 0, 'upsert: the real answer is accepted') or diag $err;
is(points_count('upsert'), 1, 'upsert: the point is stored');

# ---- 3b. a 2xx answer to the collection's creation that is not Qdrant's -----
mkdir "$tmp/c";
write_file("$tmp/c/c.md", "Creating a collection must be checked, not trusted.\n");
$s->reset;
my $qurl = $s->qdrant_url;
my %cenv = (%env, RAGQ_COLLECTION => 'made');
sub put_points { $s->stats->{requests}{'/collections/made/points'} // 0 }
$s->fault({ path => '/collections/made', method => 'PUT', status => 200,
            headers => { 'Content-Type' => 'text/html' },
            body => "<html><body>\r\nWelcome to our proxy</body></html>", times => 1 });
($rc, $out, $err) = ingest(\%cenv, "$tmp/c");
is($rc, 1, 'create answered 200 and not JSON: exit 1');
like($err, qr/^ragq-ingest: cannot create collection 'made': PUT \Q$qurl\E\/collections\/made answered 200, but the answer cannot be used: Qdrant create collection answer is not a JSON object \(the answer: "<html><body>  Welcome to our proxy<\/body><\/html>"\)$/m,
     'create answered 200 and not JSON: the collection, the URL and the answer');
unlike($err, qr/created collection/, 'create answered 200 and not JSON: not reported as created');
is(put_points(), 0, 'create answered 200 and not JSON: no upsert tried');
is($out, '', 'create answered 200 and not JSON: no summary');

$s->fault({ path => '/collections/made', method => 'PUT', status => 200,
            body => '{"result":false,"status":"ok","time":0.0041}', times => 1 });
($rc, $out, $err) = ingest(\%cenv, "$tmp/c");
is($rc, 1, 'create answered result false: exit 1');
like($err, qr/^ragq-ingest: cannot create collection 'made': PUT \Q$qurl\E\/collections\/made answered 200, but the answer cannot be used: Qdrant create collection answer has a "result" that is not true \(the answer: "\{"result":false,"status":"ok","time":0\.0041\}"\)$/m,
     'create answered result false: the message');
is(put_points(), 0, 'create answered result false: no upsert tried');

$s->fault({ path => '/collections/made', method => 'PUT', status => 201,
            body => '<!DOCTYPE html><html><head><title>Portal</title></head><body>' . ('Please log in. ' x 40)
                    . '</body></html>', times => 1 });
($rc, $out, $err) = ingest(\%cenv, "$tmp/c");
is($rc, 1, 'create answered a long page: exit 1');
like($err, qr/answered 201, but the answer cannot be used: Qdrant create collection answer is not a JSON object \(the answer: "<!DOCTYPE html><html><head><title>Portal<\/title><\/head><body>Please log in\. .*\.\.\."\)$/m,
     'create answered a long page: the answer is cut short');
my ($shown) = $err =~ /\(the answer: "(.*)\.\.\."\)$/m;
is(length($shown // ''), 120, 'create answered a long page: its first 120 bytes');

# the real answer still passes
($rc, $out, $err) = ingest(\%cenv, "$tmp/c");
is($rc, 0, 'create: the real answer is accepted') or diag $err;
like($err, qr/created collection 'made' \(vectors of size 24, cosine\)/, 'create: reported');
is(points_count('made'), 1, 'create: the point is stored');

# ---- 4. the log level -------------------------------------------------------
mkdir "$tmp/l";
write_file("$tmp/l/t.md", "Log levels quiet the notes of ragq-ingest.\n");
write_file("$tmp/l/e.md", "");
write_file("$tmp/l/p.png", "\x89PNG\r\n");
write_file("$tmp/l/z.txt", "\0\0\0binary");
($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s4" }, '--log-level', 'error', "$tmp/l");
is($rc, 0, '--log-level error: exit 0') or diag $err;
is($err, '', '--log-level error: nothing on stderr');
like($out, qr/^ingested 1 file, 1 chunk into collection 'documents'/, '--log-level error: the summary stays on stdout');

($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s4", RAGQ_LOG_LEVEL => 'warn' }, "$tmp/l");
is($rc, 0, 'RAGQ_LOG_LEVEL=warn: exit 0') or diag $err;
unlike($err, qr/p\.png|e\.md/, 'RAGQ_LOG_LEVEL=warn: the notes (info) are quiet');
like($err, qr/skipping \Q$tmp\E\/l\/z\.txt: it looks binary/, 'RAGQ_LOG_LEVEL=warn: the warning shows');

($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s4" }, "$tmp/l");
like($err, qr/skipping \Q$tmp\E\/l\/p\.png: only/, 'default level (info): the notes show');

($rc, $out, $err) = ingest({ RAGQ_STORE_PATH => "$tmp/s4" }, '--log-level', 'error', "$tmp/nodoc");
is($rc, 1, '--log-level error: an error still ends the run');
like($err, qr/no text to ingest/, '--log-level error: ... and shows');

$s->stop;
done_testing;
