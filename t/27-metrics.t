#!/usr/bin/perl
# /metrics on the admin listener: Prometheus text that promtool accepts,
# counters that move with a known set of requests (plain and RPC), and
# totals that survive a worker killed with SIGKILL.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use File::Temp ();
use Apiary::Test qw(:all);

my $t = Apiary::Test->new(db => 1, config => { server => { workers => 2 } }, name => '27-metrics.t');
$t->run;
$t->wait_ready if $t->can('wait_ready');

sub metrics() {
    my $r = $t->get('/metrics', port => $t->admin_port);
    return ($r, {}) unless $r && $r->{status} == 200;
    my %m;
    for my $line (split /\n/, $r->{body}) {
        next if $line =~ /^#/ || $line eq '';
        my ($k, $v) = $line =~ /^(\S+)\s+(\S+)$/ or next;
        $m{$k} = $v;
    }
    return ($r, \%m);
}

my $GET2 = 'apiary_http_requests_total{method="GET",status_class="2xx"}';
my $GET4 = 'apiary_http_requests_total{method="GET",status_class="4xx"}';
my $POST4 = 'apiary_http_requests_total{method="POST",status_class="4xx"}';
my $RPC = 'apiary_http_request_duration_seconds_count{route="rpc"}';
my $WAIT = 'apiary_db_pool_wait_seconds_count';

my ($r, $m0) = metrics();
is($r && $r->{status}, 200, '/metrics answers 200 on the admin listener');
like($r->{headers}{'content-type'} // '', qr{^text/plain; version=0\.0\.4}, 'exposition format 0.0.4');
like($r->{body}, qr/^# HELP apiary_http_requests_total /m, 'HELP lines');
like($r->{body}, qr/^# TYPE apiary_http_request_duration_seconds histogram$/m, 'histogram TYPE');
like($r->{body}, qr/^apiary_build_info\{version="[^"]+"\} 1$/m, 'build info');

$t->get('/live') for 1 .. 5;
$t->get('/nope-' . $_) for 1 .. 2;
$t->http("POST /live HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
my $rpc = $t->get('/rpc/add_them?a=1&b=2');
is($rpc && $rpc->{status}, 200, 'an RPC call');

my $m1;
($r, $m1) = metrics();
is(($m1->{$GET2} // 0) - ($m0->{$GET2} // 0), 5 + 1 + 1,
   'GET 2xx moved by the 5 /live, the RPC call and the first /metrics');
# The two 404s come from the API (prefix /): PGRST125.
is(($m1->{$GET4} // 0) - ($m0->{$GET4} // 0), 2, 'GET 4xx moved by 2');
is(($m1->{$POST4} // 0) - ($m0->{$POST4} // 0), 1, 'POST 4xx (405) moved by 1');
is(($m1->{$RPC} // 0) - ($m0->{$RPC} // 0), 1, 'the rpc route histogram counted the call');
cmp_ok(($m1->{$WAIT} // 0) - ($m0->{$WAIT} // 0), '>=', 1, 'the pool wait histogram counted it');
cmp_ok($m1->{'apiary_http_response_bytes_total'} // 0, '>', $m0->{'apiary_http_response_bytes_total'} // 0,
       'response bytes grow');
is($m1->{'apiary_workers{state="ready"}'}, 2, 'two ready workers');
cmp_ok($m1->{'apiary_db_pool_connections{state="idle"}'} // 0, '>=', 1, 'idle pool connections');

# Kill a worker: what it counted stays.
my @w = $t->worker_pids;
kill 'KILL', $w[0];
my $deadline = time + 5;
my $m2 = {};
while (time < $deadline) {
    sleep 0.2;
    my @now = $t->worker_pids;
    next unless @now == 2 && !grep { $_ == $w[0] } @now;
    ($r, $m2) = metrics();
    last if %$m2;
}
cmp_ok($m2->{$GET2} // 0, '>=', ($m1->{$GET2} // 0) + 1, 'GET 2xx did not drop after a worker was killed');
is($m2->{$GET4}, $m1->{$GET4}, 'GET 4xx unchanged');
is($m2->{'apiary_worker_restarts_total{reason="crash"}'}, 1, 'one restart for a crash');

SKIP: {
    my $promtool = -x '/usr/bin/promtool' ? '/usr/bin/promtool' : undef;
    if (!$promtool) {
        my $ci = ($ENV{CI} // '') =~ /^(1|true|yes)$/i;
        fail('promtool is installed (Debian package prometheus)') if $ci;
        skip 'promtool not installed (Debian package prometheus)', 1;
    }
    my $f = File::Temp->new;
    print $f $r->{body};
    close $f;
    my $out = `$promtool check metrics < $f 2>&1`;
    is($? >> 8, 0, 'promtool check metrics accepts the output') or diag($out);
}

$t->stop;
done_testing();
