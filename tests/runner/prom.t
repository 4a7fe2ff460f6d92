# Ragq::Prom, the strict exposition reader of the metrics tests: a good
# exposition passes, and each kind of mistake it exists to catch is caught.
use strict;
use warnings;
use Test::More;
use Ragq::Prom;

my $good = <<'EOF_';
# HELP a_total things, with a \\ and a \n
# TYPE a_total counter
a_total{x="1",y="q\"uote\\back\nline"} 3
a_total{x="2"} 0
# HELP h latency
# TYPE h histogram
h_bucket{e="c",le="0.1"} 1
h_bucket{e="c",le="1"} 2
h_bucket{e="c",le="+Inf"} 2
h_sum{e="c"} 0.300
h_count{e="c"} 2
# HELP g a gauge
# TYPE g gauge
g 1.5e3
EOF_

my ($fam, $err) = Ragq::Prom::parse($good);
is_deeply $err, [], 'a good exposition passes';
is_deeply Ragq::Prom::types($fam), { a_total => 'counter', h => 'histogram', g => 'gauge' }, 'its families and types';
is Ragq::Prom::value($fam, 'a_total', x => 1, y => qq{q"uote\\back\nline}), 3, 'label values unescaped';
is Ragq::Prom::value($fam, 'h_count', e => 'c'), 2, 'histogram samples found by name';
is Ragq::Prom::value($fam, 'g'), 1500, 'a float value';

my %bad = (
    'no final line feed'     => "# HELP g x\n# TYPE g gauge\ng 1",
    'no HELP'                => "# TYPE g gauge\ng 1\n",
    'no TYPE'                => "# HELP g x\ng 1\n",
    'TYPE after samples'     => "# HELP g x\ng 1\n# TYPE g gauge\n",
    'unknown type'           => "# HELP g x\n# TYPE g meter\ng 1\n",
    'bad value'              => "# HELP g x\n# TYPE g gauge\ng one\n",
    'bad label escape'       => "# HELP g x\n# TYPE g gauge\ng{a=\"\\t\"} 1\n",
    'unescaped quote'        => "# HELP g x\n# TYPE g gauge\ng{a=\"a\"b\"} 1\n",
    'label twice'            => "# HELP g x\n# TYPE g gauge\ng{a=\"1\",a=\"2\"} 1\n",
    'series twice'           => "# HELP g x\n# TYPE g gauge\ng{a=\"1\"} 1\ng{a=\"1\"} 2\n",
    'families interleaved'   => "# HELP g x\n# TYPE g gauge\ng 1\n# HELP k x\n# TYPE k gauge\nk 1\ng{a=\"1\"} 1\n",
    'not UTF-8'              => "# HELP g x\n# TYPE g gauge\ng{a=\"\xff\"} 1\n",
    'negative counter'       => "# HELP c_total x\n# TYPE c_total counter\nc_total -1\n",
    'buckets not cumulative' => "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    'no +Inf bucket'         => "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n",
    '+Inf is not count'      => "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    'no _sum'                => "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n",
    'garbage line'           => "# HELP g x\n# TYPE g gauge\ng 1\n{g} 2\n",
);
for my $what (sort keys %bad) {
    my (undef, $e) = Ragq::Prom::parse($bad{$what});
    ok @$e > 0, "caught: $what" or diag $bad{$what};
}

done_testing;
