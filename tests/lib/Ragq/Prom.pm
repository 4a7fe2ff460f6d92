# Ragq::Prom: a strict reader of Prometheus' text exposition format 0.0.4,
# for tests of the ragq_metrics location. It says what is wrong rather than
# guessing: every line must be a HELP, a TYPE or a sample; HELP and TYPE at
# most once per family and before its samples; a family's samples together;
# names, label names and values, escapes and numbers as the format defines
# them; no series twice; histograms with cumulative buckets ending in +Inf
# equal to _count, and a _sum.
#
#   my ($fam, $errors) = Ragq::Prom::parse($text);
#   $fam->{ragq_workers}{type}                      # 'gauge'
#   Ragq::Prom::value($fam, 'ragq_http_requests_total', endpoint => 'chat', code => 202)
package Ragq::Prom;

use strict;
use warnings;

my $NAME = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LABEL = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $FLOAT = qr/[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN/;
my %TYPES = map { $_ => 1 } qw(counter gauge histogram summary untyped);

# The family a sample name belongs to, given the TYPEs seen so far.
sub _family {
    my ($fam, $name) = @_;
    return $name if $fam->{$name} && $fam->{$name}{type};
    if ($name =~ /^(.*)_(bucket|sum|count)$/) {
        my ($base, $suffix) = ($1, $2);
        my $t = $fam->{$base} && $fam->{$base}{type} // '';
        return $base if $t eq 'histogram';
        return $base if $t eq 'summary' && $suffix ne 'bucket';
    }
    return $name;
}

# Label set {a="b",...} at the start of $s (after the name); returns
# (\%labels, rest) or (undef, error).
sub _labels {
    my ($s) = @_;
    my %l;
    return ({}, $s) unless $s =~ s/^\{//;
    while (1) {
        return (\%l, $s) if $s =~ s/^\}//;
        $s =~ s/^($LABEL)="// or return (undef, "bad label name at '$s'");
        my $k = $1;
        return (undef, "label name $k is reserved") if $k =~ /^__/;
        return (undef, "label $k twice") if exists $l{$k};
        my $v = '';
        while (1) {
            if ($s =~ s/^([^"\\]+)//) { $v .= $1; next }
            if ($s =~ s/^\\(.)//s) {
                my $c = $1;
                return (undef, "bad escape \\$c in label $k")
                  unless $c eq '\\' || $c eq '"' || $c eq 'n';
                $v .= $c eq 'n' ? "\n" : $c;
                next;
            }
            last if $s =~ s/^"//;
            return (undef, "unterminated value of label $k");
        }
        {
            my $bytes = $v;
            return (undef, "label $k is not UTF-8")
              unless utf8::decode($bytes);
        }
        $l{$k} = $v;
        next if $s =~ s/^,//;
        return (undef, "expected , or } after label $k at '$s'")
          unless $s =~ /^\}/;
    }
}

sub _num {
    my ($v) = @_;
    return 9**9**9 if $v =~ /^\+?Inf$/;
    return -9**9**9 if $v eq '-Inf';
    return $v + 0;
}

sub parse {
    my ($text) = @_;
    my (%fam, @err, %series, @order, $current);
    push @err, 'empty exposition' unless length($text // '');
    push @err, 'does not end with a line feed' if length($text // '') && $text !~ /\n\z/;
    my $n = 0;
    for my $line (split /\n/, $text // '') {
        $n++;
        next if $line eq '';
        if ($line =~ /^#\s*(HELP|TYPE)\s/) {
            my $kind = $1;
            unless ($line =~ /^# (HELP|TYPE) ($NAME)(?: (.*))?$/) {
                push @err, "line $n: malformed $kind line: $line";
                next;
            }
            my ($name, $rest) = ($2, $3 // '');
            my $f = $fam{$name} //= { samples => [] };
            push @order, $name unless $f->{seen}++;
            if ($kind eq 'HELP') {
                push @err, "line $n: second HELP for $name" if defined $f->{help};
                (my $check = $rest) =~ s/\\[\\n]//g;
                push @err, "line $n: bad escape in HELP of $name" if $check =~ /\\/;
                ($f->{help} = $rest) =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
            } else {
                push @err, "line $n: second TYPE for $name" if defined $f->{type};
                push @err, "line $n: unknown type '$rest' for $name" unless $TYPES{$rest};
                push @err, "line $n: TYPE of $name after its samples" if @{ $f->{samples} };
                $f->{type} = $rest;
            }
            $fam{$current}{closed} = 1 if defined $current && $current ne $name;
            $current = $name;
            next;
        }
        next if $line =~ /^#/;    # a comment
        unless ($line =~ /^($NAME)(.*)$/) {
            push @err, "line $n: not a sample: $line";
            next;
        }
        my ($sname, $rest) = ($1, $2);
        my ($labels, $after) = _labels($rest);
        unless ($labels) {
            push @err, "line $n: $after: $line";
            next;
        }
        unless ($after =~ /^ ($FLOAT)(?: (-?\d+))?$/) {
            push @err, "line $n: bad value in: $line";
            next;
        }
        my $value = $1;
        my $fname = _family(\%fam, $sname);
        my $f = $fam{$fname} //= { samples => [] };
        push @order, $fname unless $f->{seen}++;
        push @err, "line $n: sample of $fname without a TYPE before it" unless defined $f->{type};
        push @err, "line $n: samples of $fname are not together" if $f->{closed};
        $fam{$current}{closed} = 1 if defined $current && $current ne $fname;
        $current = $fname;
        my $key = join "\0", $sname, map { "$_=$labels->{$_}" } sort keys %$labels;
        push @err, "line $n: series twice: $line" if $series{$key}++;
        push @err, "line $n: negative counter: $line"
          if ($f->{type} // '') eq 'counter' && _num($value) < 0;
        push @{ $f->{samples} }, { name => $sname, labels => $labels, value => $value };
    }
    for my $name (@order) {
        my $f = $fam{$name};
        push @err, "$name has no HELP" unless defined $f->{help};
        push @err, "$name has no TYPE" unless defined $f->{type};
        push @err, _histogram($name, $f) if ($f->{type} // '') eq 'histogram';
        delete @$f{qw(seen closed)};
    }
    return (\%fam, \@err);
}

# Per label set (le aside): increasing le, cumulative counts, +Inf = _count.
sub _histogram {
    my ($name, $f) = @_;
    my (%sets, @err);
    for my $s (@{ $f->{samples} }) {
        my %l = %{ $s->{labels} };
        my $le = delete $l{le};
        my $set = join ',', map { "$_=$l{$_}" } sort keys %l;
        my $h = $sets{$set} //= { buckets => [] };
        if ($s->{name} eq "${name}_bucket") {
            push @err, "$name\{$set}: bucket without le" unless defined $le;
            push @{ $h->{buckets} }, [_num($le // 0), _num($s->{value}), $le // ''];
        } elsif ($s->{name} eq "${name}_sum") {
            $h->{sum} = $s->{value};
        } elsif ($s->{name} eq "${name}_count") {
            $h->{count} = _num($s->{value});
        } else {
            push @err, "$name: unexpected sample $s->{name}";
        }
    }
    for my $set (sort keys %sets) {
        my $h = $sets{$set};
        my @b = @{ $h->{buckets} };
        push @err, "$name\{$set}: no buckets" unless @b;
        for my $i (1 .. $#b) {
            push @err, "$name\{$set}: le not increasing at $b[$i][2]" unless $b[$i][0] > $b[$i - 1][0];
            push @err, "$name\{$set}: bucket $b[$i][2] below the one before" if $b[$i][1] < $b[$i - 1][1];
        }
        push @err, "$name\{$set}: last bucket is not +Inf" unless @b && $b[-1][2] eq '+Inf';
        push @err, "$name\{$set}: no _sum" unless defined $h->{sum};
        push @err, "$name\{$set}: no _count" unless defined $h->{count};
        push @err, "$name\{$set}: +Inf bucket is not _count"
          if @b && defined $h->{count} && $b[-1][1] != $h->{count};
    }
    return @err;
}

# The value of the one sample of family/sample name $name with exactly
# these labels (others may not exist); undef when there is none.
sub value {
    my ($fam, $name, %labels) = @_;
    my $f = $fam->{ _family($fam, $name) } or return undef;
    for my $s (@{ $f->{samples} }) {
        next unless $s->{name} eq $name;
        next unless keys %{ $s->{labels} } == keys %labels;
        next if grep { !defined $s->{labels}{$_} || $s->{labels}{$_} ne $labels{$_} } keys %labels;
        return _num($s->{value});
    }
    return undef;
}

# Every value of label $label among the samples of $name.
sub label_values {
    my ($fam, $name, $label) = @_;
    my $f = $fam->{ _family($fam, $name) } or return ();
    my %seen;
    return grep { !$seen{$_}++ } map { $_->{labels}{$label} // () }
      grep { $_->{name} eq $name } @{ $f->{samples} };
}

# { family => type } of every family.
sub types {
    my ($fam) = @_;
    return { map { $_ => $fam->{$_}{type} } keys %$fam };
}

1;
