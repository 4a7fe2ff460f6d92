# Runner self-test: wrong expectations really fail. Each case writes a tiny
# inner .t (plain nginx), runs it with perl in a subprocess against a private
# servroot, and checks how many assertions ran and which failed.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes ();
use IO::Socket::INET ();

my $root = $ENV{RAGQ_ROOT} or plan skip_all => 'run via tests/run';
my $tmp = tempdir('ragq-neg-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $n = 0;

my %used_ports;

sub free_port {
    for (1 .. 200) {
        my $p = 20000 + int(rand(9999));
        next if $used_ports{$p};
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $p, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
          or next;
        close $s;
        $used_ports{$p} = 1;
        return $p;
    }
    die "no free port\n";
}

# Starts the inner test in the background (own servroot and port, so the
# cases run in parallel); returns a handle for result().
sub inner {
    my ($preamble, $blocks) = @_;
    $n++;
    my $file = "$tmp/inner$n.t";
    open my $fh, '>', $file or die $!;
    print $fh "BEGIN { \$ENV{TEST_NGINX_LOAD_MODULES} = '' }\n"
      . "use Test::Nginx::Socket;\n$preamble\nrun_tests();\n__DATA__\n\n"
      . $blocks;
    close $fh;
    local $ENV{TEST_NGINX_SERVROOT} = "$tmp/servroot$n";
    local $ENV{TEST_NGINX_SERVER_PORT} = free_port();
    open my $pipe, '-|', "perl -I$root/tests/lib $file 2>&1" or die $!;
    return $pipe;
}

# Waits for it: (exit code, number run, [failed numbers], whole output).
sub result {
    my $pipe = shift;
    my $out = do { local $/; <$pipe> } // '';
    close $pipe;
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

my %h;    # case name => running inner test

$h{right} = inner('plan tests => 2;', "$hello--- response_body\nhello\n");
$h{body} = inner('plan tests => 2;', "$hello--- response_body\nhullo\n");
$h{code} = inner('plan tests => 2;',
    "$hello--- error_code: 404\n--- response_body\nhello\n");
$h{log} = inner('plan tests => 4;',
    "$hello--- error_log\nno such line anywhere\nGET /t\n"
      . "--- no_error_log\nGET /t\n");
$h{header} = inner('plan tests => 3;',
    "$hello--- response_headers\nContent-Type: text/html\n"
      . "--- response_body_like: ^hel+o\$\n");
$h{like} = inner('plan tests => 2;', "$hello--- response_body_like: ^bye\n");
$h{grep} = inner('plan tests => 2;',
    "$hello--- grep_error_log: GET /t\n--- grep_error_log_out\nGET /t\nGET /t\n");

# Timeout without --- abort is a failure of its own (then the checks run).
$h{timeout} = inner('plan tests => 3;', <<'EOF_');
=== TEST 1: slow
--- config
location = /slow { limit_rate 1; return 200 "0123456789"; }
--- request
GET /slow
--- timeout: 0.2
--- response_body: 0123456789
EOF_

# An "Assertion ... failed" line in error.log fails the block.
$h{assert} = inner('plan tests => 3;', <<'EOF_');
=== TEST 1: assertion line
--- config
--- log_level: error
--- request
GET /Assertion%20x%20failed
--- error_code: 404
--- error_log
No such file
EOF_

# Unknown sections bail out loudly.
$h{unknown} = inner('plan tests => 2;',
    "$hello--- response_body_eq\nhello\n");

# must_die with a valid config fails.
$h{must_die} = inner('plan tests => 1;', <<'EOF_');
=== TEST 1: starts fine
--- config
location = /t { return 200; }
--- must_die
EOF_

# A broken config fails the block (no hang, no bail out).
$h{badconf} = inner('plan tests => 2;', <<'EOF_');
=== TEST 1: bad config
--- config
location = /t { bogus_directive; }
--- request
GET /t
EOF_

# Mock TCP server: a wrong tcp_query fails.
$h{tcp} = inner('plan tests => 3;', <<'EOF_');
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

# request eval arrays need array expectations.
$h{array} = inner('plan tests => 4;',
    "=== TEST 1: arr\n--- config\nlocation /t { return 200 \"t\\n\"; }\n"
      . "--- request eval\n[\"GET /t\", \"GET /t\"]\n--- response_body\nt\n");

# Blocks are shuffled unless no_shuffle(): 8 blocks in file order would
# happen with probability 1/40320.
sub order_blocks {
    my ($file, $count) = @_;
    return join '', map { <<"EOF_" } 1 .. $count;
=== TEST $_: b$_
--- config
location = /t { return 200; }
--- init
open my \$o, '>>', '$file'; print \$o "$_\\n"; close \$o;
--- request
GET /t
--- response_body:

EOF_
}
$h{shuffled} = inner('plan tests => 16;', order_blocks("$tmp/order1", 8));
$h{ordered} = inner("no_shuffle();\nplan tests => 8;",
    order_blocks("$tmp/order2", 4));

my ($rc, $ran, $failed, $out);

($rc, $ran, $failed, $out) = result($h{right});
is("$rc/$ran/@$failed", '0/2/', 'right expectations pass') or diag $out;

($rc, $ran, $failed, $out) = result($h{body});
is("$rc/$ran/@$failed", '1/2/2', 'wrong response_body fails') or diag $out;
like($out, qr/got: "hello\\x\{0a\}"|hello/, 'diff shows the body');

($rc, $ran, $failed, $out) = result($h{code});
is("$rc/$ran/@$failed", '1/2/1', 'wrong error_code fails') or diag $out;

($rc, $ran, $failed, $out) = result($h{log});
is("$rc/$ran/@$failed", '2/4/2 4', 'error_log / no_error_log failures')
  or diag $out;

($rc, $ran, $failed, $out) = result($h{header});
is("$rc/$ran/@$failed", '1/3/2', 'wrong response header fails') or diag $out;

($rc, $ran, $failed, $out) = result($h{like});
is("$rc/$ran/@$failed", '1/2/2', 'wrong response_body_like fails')
  or diag $out;

($rc, $ran, $failed, $out) = result($h{grep});
is("$rc/$ran/@$failed", '1/2/2', 'wrong grep_error_log_out fails')
  or diag $out;

($rc, $ran, $failed, $out) = result($h{timeout});
like($out, qr/not ok 1 - ERROR: client socket timed out/, 'timeout fails')
  or diag $out;
is($ran, 3, 'timeout: then status and body are still checked');

($rc, $ran, $failed, $out) = result($h{assert});
like($out, qr/not ok \d+ - .*assertion failure in error\.log/,
    'Assertion ... failed lines fail') or diag $out;
is("$ran/@$failed", '3/2', 'exactly one extra failing assertion')
  or diag $out;

($rc, $ran, $failed, $out) = result($h{unknown});
like($out, qr/^Bail out!.*response_body_eq.*not supported/m,
    'unknown section bails out') or diag $out;
isnt($rc, 0, 'bail out exits non-zero');

($rc, $ran, $failed, $out) = result($h{must_die});
is("$rc/$ran/@$failed", '1/1/1', 'must_die fails when nginx starts')
  or diag $out;

($rc, $ran, $failed, $out) = result($h{badconf});
like($out, qr/nginx failed to start.*bogus_directive/s,
    'start failure is reported with nginx output') or diag $out;

($rc, $ran, $failed, $out) = result($h{tcp});
is("$rc/$ran/@$failed", '1/3/3', 'wrong tcp_query fails') or diag $out;

($rc, $ran, $failed, $out) = result($h{array});
like($out, qr/response_body must be an array/, 'scalar expectation for'
      . ' several requests bails out') or diag $out;

($rc, $ran, $failed, $out) = result($h{shuffled});
is("$rc/$ran", '0/16', 'shuffled run passes') or diag $out;
my $got = do { local (@ARGV, $/) = "$tmp/order1"; <> };
isnt($got, join('', map { "$_\n" } 1 .. 8), 'blocks ran shuffled');
is(join(',', sort split /\n/, $got), '1,2,3,4,5,6,7,8', 'each block once');

($rc, $ran, $failed, $out) = result($h{ordered});
$got = do { local (@ARGV, $/) = "$tmp/order2"; <> };
is($got, join('', map { "$_\n" } 1 .. 4), 'no_shuffle keeps file order');

done_testing();
