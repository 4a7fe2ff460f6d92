# Runner self-test: wrong expectations really fail, and our runner fails
# them as the real Test::Nginx does. Each case writes a tiny inner .t (plain
# nginx), runs it with perl in a subprocess against a private servroot, and
# checks how many assertions ran, which failed and the exit code; when
# tests/run found the real Test::Nginx ($RAGQ_TEST_NGINX_REAL_LIB), every
# case also runs under it and must give the same result (the expected
# values below are the real runner's).
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes ();
use IO::Socket::INET ();

my $root = $ENV{RAGQ_ROOT} or plan skip_all => 'run via tests/run';
my $real = $ENV{RAGQ_TEST_NGINX_REAL_LIB};
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
# cases run in parallel) under one runner (@inc: its -I dirs); returns a
# handle for result().
sub start_inner {
    my ($preamble, $blocks, @inc) = @_;
    $n++;
    my $file = "$tmp/inner$n.t";
    open my $fh, '>', $file or die $!;
    print $fh "BEGIN { \$ENV{TEST_NGINX_LOAD_MODULES} = '' }\n"
      . "use Test::Nginx::Socket;\n$preamble\nrun_tests();\n__DATA__\n\n"
      . $blocks;
    close $fh;
    local $ENV{TEST_NGINX_SERVROOT} = "$tmp/servroot$n";
    local $ENV{TEST_NGINX_SERVER_PORT} = free_port();
    my $inc = join ' ', map { "-I$_" } @inc;
    open my $pipe, '-|', "perl $inc $file 2>&1" or die $!;
    return {pipe => $pipe, servroot => "$tmp/servroot$n"};
}

# The case under ours, and under the real runner when we have it (unless
# $ours_only).
sub inner {
    my ($preamble, $blocks, $ours_only) = @_;
    return {
        ours => start_inner($preamble, $blocks, "$root/tests/lib"),
        $real && !$ours_only ? (real => start_inner($preamble, $blocks,
            $real, "$root/tests/lib")) : (),
    };
}

sub result_of {
    my $pipe = shift->{pipe};
    my $out = do { local $/; <$pipe> } // '';
    close $pipe;
    my $rc = $? >> 8;
    my @ran = $out =~ /^(?:not )?ok \d+/mg;
    my @failed = $out =~ /^not ok (\d+)/mg;
    return ($rc, scalar @ran, \@failed, $out);
}

# Waits for a case: (exit code, number run, [failed numbers], output) of
# ours; when the real runner ran it too, one more assertion: the same exit
# code, count and failures there.
sub result {
    my ($h, $what) = @_;
    my @ours = result_of($h->{ours});
    if ($h->{real}) {
        my @real = result_of($h->{real});
        is("$real[0]/$real[1]/@{$real[2]}", "$ours[0]/$ours[1]/@{$ours[2]}",
            "$what: the real Test::Nginx gives the same result")
          or diag "real:\n$real[3]\nours:\n$ours[3]";
    }
    return @ours;
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

# Unknown sections: ours bails out (the real runner ignores sections it
# does not know; ours refuses to ignore those it does not implement).
$h{unknown} = inner('plan tests => 2;',
    "$hello--- response_body_eq\nhello\n", 'ours only');

# must_die with a valid config fails.
$h{must_die} = inner('plan tests => 1;', <<'EOF_');
=== TEST 1: starts fine
--- config
location = /t { return 200; }
--- must_die
EOF_

# nginx that cannot start (a broken config) bails out (the real runner
# too, after retrying for 30 s: not waited for here).
$h{badconf} = inner('plan tests => 2;', <<'EOF_', 'ours only');
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
    my ($count) = @_;
    return join '', map { <<"EOF_" } 1 .. $count;
=== TEST $_: b$_
--- config
location = /t { return 200; }
--- init
open my \$o, '>>', "\$ENV{TEST_NGINX_SERVROOT}.order";
print \$o "$_\\n"; close \$o;
--- request
GET /t
--- response_body:

EOF_
}
$h{shuffled} = inner('plan tests => 16;', order_blocks(8));
$h{ordered} = inner("no_shuffle();\nplan tests => 8;", order_blocks(4));

my ($rc, $ran, $failed, $out);

($rc, $ran, $failed, $out) = result($h{right}, 'right');
is("$rc/$ran/@$failed", '0/2/', 'right expectations pass') or diag $out;

($rc, $ran, $failed, $out) = result($h{body}, 'body');
is("$rc/$ran/@$failed", '1/2/2', 'wrong response_body fails') or diag $out;
like($out, qr/got: "hello\\x\{0a\}"|hello/, 'diff shows the body');

($rc, $ran, $failed, $out) = result($h{code}, 'code');
is("$rc/$ran/@$failed", '1/2/1', 'wrong error_code fails') or diag $out;

# passes first (in error.log order), then the patterns no line matched;
# no_error_log fails once per matching line
($rc, $ran, $failed, $out) = result($h{log}, 'log');
is("$rc/$ran/@$failed", '2/4/3 4', 'error_log / no_error_log failures')
  or diag $out;

($rc, $ran, $failed, $out) = result($h{header}, 'header');
is("$rc/$ran/@$failed", '1/3/2', 'wrong response header fails') or diag $out;

($rc, $ran, $failed, $out) = result($h{like}, 'like');
is("$rc/$ran/@$failed", '1/2/2', 'wrong response_body_like fails')
  or diag $out;

($rc, $ran, $failed, $out) = result($h{grep}, 'grep');
is("$rc/$ran/@$failed", '1/2/2', 'wrong grep_error_log_out fails')
  or diag $out;

# no exit code: the real runner turns Test::Builder's ending off here
($rc, $ran, $failed, $out) = result($h{timeout}, 'timeout');
like($out, qr/not ok 1 - ERROR: client socket timed out/, 'timeout fails')
  or diag $out;
is("$rc/$ran", '0/3', 'timeout: then status and body are still checked');

($rc, $ran, $failed, $out) = result($h{assert}, 'assert');
like($out, qr/not ok \d+ - .*Assertion x failed/,
    'Assertion ... failed lines fail') or diag $out;
is("$ran/@$failed", '3/3', 'exactly one extra failing assertion')
  or diag $out;

($rc, $ran, $failed, $out) = result($h{unknown}, 'unknown');
like($out, qr/^Bail out!.*response_body_eq.*not supported/m,
    'unknown section bails out') or diag $out;
isnt($rc, 0, 'bail out exits non-zero');

($rc, $ran, $failed, $out) = result($h{must_die}, 'must_die');
is("$rc/$ran/@$failed", '1/1/1', 'must_die fails when nginx starts')
  or diag $out;

($rc, $ran, $failed, $out) = result($h{badconf}, 'badconf');
like($out, qr/^Bail out!.*Cannot start nginx/m, 'start failure bails out')
  or diag $out;
like($out, qr/bogus_directive/, 'with what nginx said') or diag $out;

($rc, $ran, $failed, $out) = result($h{tcp}, 'tcp');
is("$rc/$ran/@$failed", '1/3/3', 'wrong tcp_query fails') or diag $out;

($rc, $ran, $failed, $out) = result($h{array}, 'array');
like($out, qr/^Bail out!.*the expected results should be arrays/m,
    'scalar expectation for several requests bails out') or diag $out;

for my $runner (sort keys %{ $h{shuffled} }) {
    my $dir = $h{shuffled}{$runner}{servroot};
    my $dir2 = $h{ordered}{$runner}{servroot};
    ($rc, $ran, $failed, $out) = result({ours => $h{shuffled}{$runner}});
    is("$rc/$ran", '0/16', "$runner: shuffled run passes") or diag $out;
    my $got = do { local (@ARGV, $/) = "$dir.order"; <> };
    isnt($got, join('', map { "$_\n" } 1 .. 8), "$runner: blocks ran"
      . " shuffled");
    is(join(',', sort split /\n/, $got), '1,2,3,4,5,6,7,8',
        "$runner: each block once");
    result({ours => $h{ordered}{$runner}});
    $got = do { local (@ARGV, $/) = "$dir2.order"; <> };
    is($got, join('', map { "$_\n" } 1 .. 4),
        "$runner: no_shuffle keeps file order");
}

done_testing();
