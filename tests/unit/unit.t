# The worker's C unit tests (Check), reported to prove as TAP.
use strict;
use warnings;

my $build = $ENV{RAGQ_BUILD} || 'build';
my $bin   = "$build/unit-tests";

if (!-x $bin) {
    print "1..1\nnot ok 1 - $bin exists (run make unit)\n";
    exit 1;
}

# Check writes TAP to the file named by CK_TAP_LOG_FILE_NAME; "-" is stdout.
# CK_FORK=yes keeps a crashing test from taking the others down.
$ENV{CK_TAP_LOG_FILE_NAME} = '-';
$ENV{CK_VERBOSITY}         = 'silent';
$ENV{CK_FORK}              = 'yes';
exec $bin or die "cannot run $bin: $!";
