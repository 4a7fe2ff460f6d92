# Runner self-test: wrong expectations really fail. Each case writes a tiny
# inner .t (plain nginx), runs it with perl in a subprocess against a private
# servroot, and checks how many assertions ran and which failed.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes ();

my $root = $ENV{RAGQ_ROOT} or plan skip_all => 'run via tests/run';
my $tmp = tempdir('ragq-neg-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $n = 0;

# Runs the inner test; returns (exit code, number run, [failed numbers],
# whole output).
sub inner {
    my ($preamble, $blocks, %env) = @_;
    $n++;
    my $file = "$tmp/inner$n.t";
    open my $fh, '>', $file or die $!;
    print $fh "BEGIN { \$ENV{TEST_NGINX_LOAD_MODULES} = '' }\n"
      . "use Test::Nginx::Socket;\n$preamble\nrun_tests();\n__DATA__\n\n"
      . $blocks;
    close $fh;
    local $ENV{TEST_NGINX_SERVROOT} = "$tmp/servroot$n";
    local @ENV{keys %env} = values %env;
    my $t0 = Time::HiRes::time();
    my $out = `perl -I$root/tests/lib $file 2>&1`;
    diag sprintf "inner %d: %.2fs", $n, Time::HiRes::time() - $t0 if $ENV{RAGQ_TIME};
    my $rc = $? >> 8;
    my @ran = $out =~ /^(?:not )?ok \d+/mg;
    my @failed = $out =~ /^not ok (\d+)/mg;
    return ($rc, scalar @ran, \@failed, $out);
}

my $hello = <<'EOF_';
=== TEST 1: hello
--- config
location = /t { return 200 "hello\n"; }
--- request
GET /t
EOF_

my ($rc, $ran, $failed, $out);

($rc, $ran, $failed, $out) = inner('plan tests => 2;',
    "$hello--- response_body\nhello\n");
is("$rc/$ran/@$failed", '0/2/', 'right expectations pass') or diag $out;

($rc, $ran, $failed, $out) = inner('plan tests => 2;',
    "$hello--- response_body\nhullo\n");
is("$rc/$ran/@$failed", '1/2/2', 'wrong response_body fails') or diag $out;
like($out, qr/got: "hello\\x\{0a\}"|hello/, 'diff shows the body');

($rc, $ran, $failed, $out) = inner('plan tests => 2;',
    "$hello--- error_code: 404\n--- response_body\nhello\n");
is("$rc/$ran/@$failed", '1/2/1', 'wrong error_code fails') or diag $out;

($rc, $ran, $failed, $out) = inner('plan tests => 4;',
    "$hello--- error_log\nno such line anywhere\nGET /t\n"
      . "--- no_error_log\nGET /t\n");
is("$rc/$ran/@$failed", '2/4/2 4', 'error_log / no_error_log failures')
  or diag $out;

($rc, $ran, $failed, $out) = inner('plan tests => 3;',
    "$hello--- response_headers\nContent-Type: text/html\n"
      . "--- response_body_like: ^hel+o\$\n");
is("$rc/$ran/@$failed", '1/3/2', 'wrong response header fails') or diag $out;

($rc, $ran, $failed, $out) = inner('plan tests => 2;',
    "$hello--- response_body_like: ^bye\n");
is("$rc/$ran/@$failed", '1/2/2', 'wrong response_body_like fails')
  or diag $out;

($rc, $ran, $failed, $out) = inner('plan tests => 2;',
    "$hello--- grep_error_log: GET /t\n--- grep_error_log_out\nGET /t\nGET /t\n");
is("$rc/$ran/@$failed", '1/2/2', 'wrong grep_error_log_out fails')
  or diag $out;

# Timeout without --- abort is a failure of its own (then the checks run).
($rc, $ran, $failed, $out) = inner('plan tests => 3;', <<'EOF_');
=== TEST 1: slow
--- config
location = /slow { limit_rate 1; return 200 "0123456789"; }
--- request
GET /slow
--- timeout: 0.2
--- response_body: 0123456789
EOF_
like($out, qr/not ok 1 - ERROR: client socket timed out/, 'timeout fails')
  or diag $out;
is($ran, 3, 'timeout: then status and body are still checked');

# An "Assertion ... failed" line in error.log fails the block.
($rc, $ran, $failed, $out) = inner('plan tests => 3;', <<'EOF_');
=== TEST 1: assertion line
--- config
--- log_level: error
--- request
GET /Assertion%20x%20failed
--- error_code: 404
--- error_log
No such file
EOF_
like($out, qr/not ok \d+ - .*assertion failure in error\.log/,
    'Assertion ... failed lines fail') or diag $out;
is("$ran/@$failed", '3/2', 'exactly one extra failing assertion')
  or diag $out;

# Unknown sections bail out loudly.
($rc, $ran, $failed, $out) = inner('plan tests => 2;',
    "$hello--- response_body_eq\nhello\n");
like($out, qr/^Bail out!.*response_body_eq.*not supported/m,
    'unknown section bails out') or diag $out;
isnt($rc, 0, 'bail out exits non-zero');

# must_die with a valid config fails.
($rc, $ran, $failed, $out) = inner('plan tests => 1;', <<'EOF_');
=== TEST 1: starts fine
--- config
location = /t { return 200; }
--- must_die
EOF_
is("$rc/$ran/@$failed", '1/1/1', 'must_die fails when nginx starts')
  or diag $out;

# A broken config fails the block (no hang, no bail out).
($rc, $ran, $failed, $out) = inner('plan tests => 2;', <<'EOF_');
=== TEST 1: bad config
--- config
location = /t { bogus_directive; }
--- request
GET /t
EOF_
like($out, qr/nginx failed to start.*bogus_directive/s,
    'start failure is reported with nginx output') or diag $out;

# Mock TCP server: a wrong tcp_query fails.
($rc, $ran, $failed, $out) = inner('plan tests => 3;', <<'EOF_');
=== TEST 1: mock query
--- config
location = /up {
    proxy_set_header Host mock;
    proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_query: GET /nope HTTP/1.0
--- tcp_reply eval
"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
--- request
GET /up
--- response_body
ok
EOF_
is("$rc/$ran/@$failed", '1/3/3', 'wrong tcp_query fails') or diag $out;

# request eval arrays need array expectations.
($rc, $ran, $failed, $out) = inner('plan tests => 4;',
    "=== TEST 1: arr\n--- config\nlocation /t { return 200 \"t\\n\"; }\n"
      . "--- request eval\n[\"GET /t\", \"GET /t\"]\n--- response_body\nt\n");
like($out, qr/response_body must be an array/, 'scalar expectation for'
      . ' several requests bails out') or diag $out;

# Blocks are shuffled unless no_shuffle(): 8 blocks in file order would
# happen with probability 1/40320.
my $order = "$tmp/order";
my $blocks = join '', map { <<"EOF_" } 1 .. 8;
=== TEST $_: b$_
--- config
location = /t { return 200; }
--- init
open my \$o, '>>', '$order'; print \$o "$_\\n"; close \$o;
--- request
GET /t
--- response_body:

EOF_
($rc, $ran, $failed, $out) = inner('plan tests => 16;', $blocks);
is("$rc/$ran", '0/16', 'shuffled run passes') or diag $out;
my $got = do { local (@ARGV, $/) = $order; <> };
isnt($got, join('', map { "$_\n" } 1 .. 8), 'blocks ran shuffled');
is(join(',', sort split /\n/, $got), '1,2,3,4,5,6,7,8', 'each block once');
unlink $order;
($rc, $ran, $failed, $out) = inner("no_shuffle();\nplan tests => 16;",
    $blocks);
$got = do { local (@ARGV, $/) = $order; <> };
is($got, join('', map { "$_\n" } 1 .. 8), 'no_shuffle keeps file order');

done_testing();
