# What the packages carry besides the code: one version everywhere (VERSION,
# debian/changelog, the man pages, --version), man pages that document every
# option and variable of --help and render without warnings, the license.
use strict;
use warnings;
use File::Spec;
use Test::More;

my $root  = File::Spec->rel2abs($ENV{RAGQ_ROOT} || '.');
my $build = File::Spec->rel2abs($ENV{RAGQ_BUILD} || "$root/build");

sub slurp {
    open my $f, '<', $_[0] or return '';
    local $/;
    return scalar <$f>;
}

chomp(my $version = slurp("$root/VERSION"));
like $version, qr/^\d+\.\d+\.\d+$/, "VERSION is a version ($version)";

my ($deb) = slurp("$root/debian/changelog") =~ /^ragq \(([^)]+)\)/;
is $deb, $version, 'debian/changelog\'s top entry is VERSION';

for my $prog (qw(ragq-worker ragq-ingest)) {
    my $man = slurp("$root/man/$prog.1");
    my ($th) = $man =~ /^\.TH \S+ 1 "[^"]*" "ragq ([^"]+)"/m;
    is $th, $version, "man/$prog.1 is of VERSION";

    chomp(my $said = `'$build/$prog' --version 2>&1`);
    is $said, "$prog $version", "$prog --version says VERSION";

    my $help = `'$build/$prog' --help 2>&1`;
    my %opts = map { $_ => 1 } $help =~ /^\s+(--[a-z][a-z-]+)/mg;
    my %vars = map { $_ => 1 } $help =~ /^\s+--[a-z-]+(?: [A-Z]+)?\s+([A-Z][A-Z_]+)/mg;
    ok keys %opts > 10, "$prog --help lists its options";
    (my $roff = $man) =~ s/\\-/-/g;
    my @undoc = grep { $roff !~ /\Q$_\E\b/ } sort(keys %opts), sort(keys %vars);
    is_deeply \@undoc, [], "man/$prog.1 documents every option and variable of --help";

    my $warn = `LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z '$root/man/$prog.1' 2>&1 >/dev/null`;
    is $? >> 8, 0, "man/$prog.1 renders";
    is $warn, '', "man/$prog.1 renders without warnings";
}

like slurp("$root/LICENSE"), qr/^BSD 2-Clause License/, 'LICENSE is BSD-2-Clause';
like slurp("$root/debian/copyright"), qr/^License: BSD-2-Clause/m, 'debian/copyright says the same';
like slurp("$root/README.md"), qr/BSD 2-Clause/, 'the README states the license';

done_testing;
