#!/usr/bin/perl
# contrib/prometheus/alerts.yml and contrib/grafana/apiary.json: promtool
# accepts the rules and their unit tests (alerts.test.yml); the dashboard
# is a well-formed Grafana dashboard whose queries are valid PromQL; and
# every metric, label and fixed label value that either names exists in
# the /metrics of a running apiary, so a renamed metric breaks this test
# rather than a dashboard nobody looks at until the night it is needed.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use File::Temp ();
use POSIX ();
use Apiary::Test qw(:all);

my $SRC = $ENV{APIARY_SRCDIR} // "$FindBin::Bin/..";
my $RULES = "$SRC/contrib/prometheus/alerts.yml";
my $RULE_TESTS = "$SRC/contrib/prometheus/alerts.test.yml";
my $DASH = "$SRC/contrib/grafana/apiary.json";

my $promtool = (grep { -x "$_/promtool" } split /:/, $ENV{PATH} // '/usr/bin')[0];
$promtool = "$promtool/promtool" if $promtool;
if (!$promtool) {
    # CI installs it (contrib/dev/deps test: the Debian package prometheus)
    # and never skips.
    plan skip_all => 'promtool not found (install the Debian package prometheus)' unless $ENV{CI};
    fail('promtool not found, and CI is set: install the Debian package prometheus');
    done_testing;
    exit 1;
}

sub slurp($path) {
    open my $fh, '<', $path or die "open $path: $!";
    local $/;
    return scalar <$fh>;
}

# Runs a command with its output in a file; (exit code, output).
sub run_cmd(@cmd) {
    my $out = File::Temp->new;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $out->filename or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        exec @cmd or POSIX::_exit(127);
    }
    my $deadline = time + 60;
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); return (-1, 'timed out') }
        select undef, undef, undef, 0.05;
    }
    return ($? >> 8, slurp($out->filename));
}

# ---------------------------------------------------------------------------
# The rules.

my ($code, $out) = run_cmd($promtool, 'check', 'rules', $RULES);
is($code, 0, 'promtool check rules alerts.yml') or diag($out);
like($out, qr/SUCCESS: (\d+) rules found/, 'promtool found the rules');
my ($nrules) = $out =~ /SUCCESS: (\d+) rules found/;
cmp_ok($nrules // 0, '>=', 5, "$nrules alert rules");

# promtool resolves rule_files relative to the test file.
($code, $out) = run_cmd($promtool, 'test', 'rules', $RULE_TESTS);
is($code, 0, 'promtool test rules alerts.test.yml: the alerts fire when they should') or diag($out);

my $rules_text = slurp($RULES);
my @alerts = $rules_text =~ /^\s*- alert: (\w+)/mg;
for my $want (qw(ApiaryHigh5xxRate ApiaryHighLatencyP95 ApiaryNoReadyWorkers
                 ApiaryWorkerRestartStorm ApiaryDbPoolSaturated)) {
    ok((grep { $_ eq $want } @alerts), "alert $want is there");
}
# Each rule's expression: "expr: x" on one line or "expr: |" and an
# indented block.
my @rule_exprs;
{
    my @lines = split /\n/, $rules_text;
    for (my $i = 0; $i < @lines; $i++) {
        next unless $lines[$i] =~ /^(\s*)expr:\s*(.*)$/;
        my ($indent, $rest) = (length $1, $2);
        if ($rest ne '|') { push @rule_exprs, $rest; next }
        my $e = '';
        while ($i + 1 < @lines && ($lines[$i + 1] =~ /^\s*$/ || $lines[$i + 1] =~ /^(\s*)/ && length($1) > $indent)) {
            $e .= $lines[++$i] . "\n";
        }
        push @rule_exprs, $e;
    }
}
is(scalar @rule_exprs, scalar @alerts, 'one expression per alert read back');

# ---------------------------------------------------------------------------
# The dashboard.

my $dash = eval { JSON::PP->new->decode(slurp($DASH)) };
ok(ref $dash eq 'HASH', 'apiary.json is a JSON object') or diag($@);
$dash //= {};
is($dash->{uid}, 'apiary', 'dashboard uid');
ok(($dash->{title} // '') ne '' && ($dash->{schemaVersion} // 0) >= 30, 'a title and a current schemaVersion');
my %vars = map { $_->{name} => $_ } @{$dash->{templating}{list} // []};
is($vars{datasource}{type}, 'datasource', 'a data source variable');
is($vars{datasource}{query}, 'prometheus', 'of Prometheus data sources');
is($vars{instance}{type}, 'query', 'an instance variable');

my @panels = @{$dash->{panels} // []};
my (%ids, @dash_exprs, @titles, $bad_ds, @overlap);
my @boxes;
for my $p (@panels) {
    $ids{$p->{id} // 'none'}++;
    my $g = $p->{gridPos} // {};
    ok(defined $g->{x} && defined $g->{y} && $g->{w} > 0 && $g->{h} > 0 && $g->{x} + $g->{w} <= 24,
       "panel \"$p->{title}\": a place on the 24-column grid");
    for my $b (@boxes) {
        push @overlap, "$p->{title} / $b->[4]"
            if $g->{x} < $b->[0] + $b->[2] && $b->[0] < $g->{x} + $g->{w}
            && $g->{y} < $b->[1] + $b->[3] && $b->[1] < $g->{y} + $g->{h};
    }
    push @boxes, [$g->{x}, $g->{y}, $g->{w}, $g->{h}, $p->{title}];
    next if ($p->{type} // '') eq 'row';
    push @titles, $p->{title};
    $bad_ds++ unless ($p->{datasource}{uid} // '') eq '${datasource}';
    my @t = @{$p->{targets} // []};
    ok(@t > 0, "panel \"$p->{title}\": has queries");
    for my $t (@t) {
        $bad_ds++ unless ($t->{datasource}{uid} // '') eq '${datasource}';
        ok(($t->{expr} // '') ne '', "panel \"$p->{title}\" $t->{refId}: an expression");
        push @dash_exprs, $t->{expr};
    }
}
is(scalar(grep { $_ > 1 } values %ids), 0, 'panel ids are unique');
is(join(', ', @overlap), '', 'no panels overlap');
ok(!$bad_ds, 'every panel and query uses the ${datasource} variable');
for my $want (qr/request/i, qr/error/i, qr/latency/i, qr/pool/i, qr/workers by state/i, qr/restart/i) {
    ok((grep { $_ =~ $want } @titles), "a panel for $want");
}
ok((grep { /histogram_quantile\(0\.95/ } @dash_exprs), 'latency percentiles with histogram_quantile');

# The dashboard's queries parse as PromQL: promtool checks them as
# recording rules, Grafana's variables replaced by what they expand to.
{
    my $tmp = File::Temp->new(SUFFIX => '.yml');
    my $y = "groups:\n  - name: dashboard\n    rules:\n";
    my $n = 0;
    for my $e (@dash_exprs) {
        (my $q = $e) =~ s/\$__rate_interval/5m/g;
        $q =~ s/\$instance/.*/g;
        $q =~ s/'/''/g;
        $y .= "      - record: dashboard:q" . ++$n . "\n        expr: '$q'\n";
    }
    print {$tmp} $y;
    close $tmp;
    my ($c, $o) = run_cmd($promtool, 'check', 'rules', $tmp->filename);
    is($c, 0, scalar(@dash_exprs) . ' dashboard queries are valid PromQL') or diag($o);
}

# ---------------------------------------------------------------------------
# Every name in a live /metrics.

my $t = Apiary::Test->new(name => '77-dashboards.t', config => { server => { workers => 1 } });
$t->run;
$t->get('/live');
$t->get('/nope');
my $r = $t->get('/metrics', port => $t->admin_port);
is($r && $r->{status}, 200, '/metrics answers');
my (%labels, %values);
for my $line (split /\n/, $r->{body} // '') {
    next if $line =~ /^#/ || $line !~ /\S/;
    my ($name, $lab) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s/ or next;
    $labels{$name} //= {};
    while (($lab // '') =~ /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g) {
        $labels{$name}{$1} = 1;
        $values{"$name/$1"}{$2} = 1;
    }
}
ok(scalar(keys %labels) >= 10, scalar(keys %labels) . ' series names in /metrics');

# Labels Prometheus adds itself, and its own series.
my %EXTERNAL_LABEL = map { $_ => 1 } qw(instance job le);
my %EXTERNAL_METRIC = (up => 1);
# Families that show a label value only once it has been counted: a value
# in a query must then look like one apiary can produce.
my %SPARSE = (
    'apiary_http_requests_total/status_class' => qr/^[1-5]xx$/,
    'apiary_http_requests_total/method' => qr/^(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|other)$/,
    'apiary_db_errors_total/sqlstate_class' => qr/^(?:[0-9A-Z]{2}|PGRST|other)$/,
);

my %problems;
for my $e (@dash_exprs, @rule_exprs) {
    my %in_expr;
    # name{matchers} or a bare name, outside function calls and keywords.
    while ($e =~ /\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?/g) {
        my ($name, $sel) = ($1, $2);
        next unless $name =~ /^apiary_/ || $EXTERNAL_METRIC{$name};
        next if $EXTERNAL_METRIC{$name};
        $in_expr{$name} = 1;
        if (!$labels{$name}) {
            $problems{"metric $name is not in /metrics"}++;
            next;
        }
        while (($sel // '') =~ /([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g) {
            my ($l, $op, $v) = ($1, $2, $3);
            next if $EXTERNAL_LABEL{$l};
            if (!$labels{$name}{$l}) {
                $problems{"$name has no label $l"}++;
                next;
            }
            next if $v =~ /\$/;   # a Grafana variable
            # A value, or a regex that is a list of values.
            my @vals = $op =~ /~/ ? split(/\|/, $v) : ($v);
            next if grep { /[^\w.:+-]/ } @vals;
            for my $x (@vals) {
                next if $values{"$name/$l"}{$x};
                next if $SPARSE{"$name/$l"} && $x =~ $SPARSE{"$name/$l"};
                $problems{"$name\{$l=\"$x\"} never appears in /metrics"}++;
            }
        }
    }
    # by (...) and without (...) name labels of the metrics in the expression.
    while ($e =~ /\b(?:by|without)\s*\(([^)]*)\)/g) {
        for my $l (map { s/^\s+|\s+$//gr } split /,/, $1) {
            next if $l eq '' || $EXTERNAL_LABEL{$l};
            $problems{"by ($l): no metric of the expression has it"}++
                unless grep { $labels{$_} && $labels{$_}{$l} } keys %in_expr;
        }
    }
}
is(join("\n", sort keys %problems), '', 'every metric, label and label value used exists in /metrics');
my %used = map { $_ => 1 } map { /\b(apiary_[a-z_]+)/g } @dash_exprs;
for my $family (qw(apiary_http_requests_total apiary_http_request_duration_seconds_bucket
                   apiary_db_pool_connections apiary_workers apiary_worker_restarts_total)) {
    ok($used{$family}, "the dashboard uses $family");
}

done_testing;
