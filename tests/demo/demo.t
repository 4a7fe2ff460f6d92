# The README's first command: scripts/demo (what `make demo` runs after
# building) must put a question in through nginx and get a grounded answer
# out, using only what this repository ships.
use strict;
use warnings;
use Test::More tests => 7;

my $root = $ENV{RAGQ_ROOT} || '.';
my $question = 'What happens to a job when the worker that runs it is killed?';

# Under RAGQ_ASAN=1 tests/run points TEST_NGINX_BINARY at the sanitizer
# wrapper; the demo must use it to load the ASan build of the module.
$ENV{RAGQ_NGINX} = $ENV{TEST_NGINX_BINARY} if $ENV{TEST_NGINX_BINARY};

my $out = `cd '$root' && scripts/demo '$question' 2>&1`;
my $rc  = $? >> 8;

is $rc, 0, 'scripts/demo exits 0' or diag $out;
like $out, qr/^HTTP 202 \{"status":"queued","job_id":"[0-9a-f]{32}"/m,
    'the question was queued through POST /chat';
like $out, qr/^status: finished/m, 'the job finished';
like $out, qr/^answer:\n\s+\S[^\[]*\[\d\]/m, 'the answer cites a numbered source';
like $out, qr/^\s+\[1\] samples\/docs\/\S+\.md\s+score/m,
    'sources name the bundled documents';
like $out, qr/reclaim|another worker|pending/i,
    'the answer is about the question (worker death and reclaim)';
like $out, qr/backends: \{"embedder": "hash", "store": "local", "answerer": "extractive"\}/,
    'the offline backends answered';
