#!/usr/bin/perl
# Health-driven replacement and recycling (issue 5, DESIGN.md 2): a hung
# worker (SIGSTOP) is SIGKILLed and replaced within worker_timeout + 1 s;
# a killed worker is replaced within 1 s; a worker that crashes at start
# is restarted with a growing back-off (visible in status and the log),
# not in a fork storm; TTIN/TTOU add and remove a worker; max_requests
# (with jitter) and max_worker_memory recycle workers gracefully, without
# failed requests. The crash at start uses the daemon's test hook
# APIARY_TEST_WORKER_EXIT=1.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

# The master's report of a worker it killed, or that crashed, on purpose
# here (logged at error; tolerated at crit/alert only for these lines).
my $KILLED_WORKER_LOG = qr/"msg"\s*:\s*"[^"]*(?:worker|child)[^"]*(?:signal|exit|killed|died|heartbeat)/i;

# Stopped workers get SIGCONT at the end, in case the master did not kill
# them (checked by start time: a reused pid is never hit).
my @STOPPED;
END {
    for my $s (@STOPPED) {
        my $st = proc_stat($s->[0]);
        kill 'CONT', $s->[0] if $st && $st->{starttime} == $s->[1];
    }
}

sub live($t, %o) {
    my $r = eval { $t->get('/live', timeout => 2, %o) };
    return $r && $r->{status} == 200 ? $r : undef;
}

sub status_worker($j, $pid) {
    return (grep { $_->{pid} == $pid } @{($j // {})->{workers} // []})[0];
}

sub load_ok($res, $name) {
    ok($res->{fail} == 0 && $res->{keepalive_ok} > 0 && $res->{fresh_ok} > 0,
        "$name: no failed request ($res->{ok} ok: $res->{keepalive_ok} keep-alive, "
        . "$res->{fresh_ok} fresh; $res->{fail} failed)")
        or diag(join("\n", 'first failures:', @{$res->{errors}}));
}

sub log_msgs($t, $re) { grep { ($_->{msg} // '') =~ $re } $t->log_records }

# ---------------------------------------------------------------------------
# SIGSTOP: no heartbeat; SIGKILLed and replaced within worker_timeout + 1 s.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(
        config => { server => { workers => 2, worker_timeout => '2s', min_uptime => '500ms' } },
        allow_log => $KILLED_WORKER_LOG, name => '23-recycle.t (SIGSTOP)');
    $t->run;
    sleep 1.2;    # older than min_uptime, a heartbeat or two written
    my @w = $t->worker_pids;
    my $victim = $w[0];
    push @STOPPED, [$victim, proc_stat($victim)->{starttime}];
    kill 'STOP', $victim;
    my $t0 = time;
    my ($gone, $new);
    wait_for(sub {
        $gone //= time if !proc_alive($victim);
        my @n = $t->worker_pids;
        $new //= time if @n == 2 && !grep { $_ == $victim } @n;
        defined $gone && defined $new;
    }, timeout => 6, interval => 0.01);
    my $took = defined $new ? $new - $t0 : undef;
    ok(defined $gone, 'SIGSTOP: the stopped worker is gone');
    # 0.1 s on top for this test's polling (every 10 ms) and the fork.
    ok(defined $took && $took <= 3.1,
        sprintf('SIGSTOP: replaced within worker_timeout + 1 s = 3 s (%s)',
            defined $took ? sprintf('%.2f s', $took) : 'not replaced'));
    ok(scalar(log_msgs($t, qr/\(pid $victim\).*(?:heartbeat)/)), 'SIGSTOP: the log says its heartbeat stopped');
    ok(scalar(log_msgs($t, qr/\(pid $victim\) was killed by signal 9\b/)),
        'SIGSTOP: it was SIGKILLed (log)') or diag($t->log_tail(10));
    my $j = $t->status_json;
    my @repl = grep { $_->{pid} != $w[1] } @{($j // {})->{workers} // []};
    is(scalar @repl, 1, 'SIGSTOP: status shows the replacement');
    is($repl[0] && $repl[0]{last_restart_reason}, 'timeout', 'SIGSTOP: its last_restart_reason is "timeout"');
    cmp_ok($repl[0] ? $repl[0]{restarts} : 0, '>=', 1, 'SIGSTOP: its restarts count is at least 1');
    ok(live($t), 'SIGSTOP: serving');
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# SIGKILL: replaced within 1 s.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 2, min_uptime => '500ms' } },
        allow_log => $KILLED_WORKER_LOG, name => '23-recycle.t (SIGKILL)');
    $t->run;
    sleep 0.8;
    my @w = $t->worker_pids;
    kill 'KILL', $w[0];
    my $t0 = time;
    my $new = wait_for(sub { my @n = $t->worker_pids; @n == 2 && !grep { $_ == $w[0] } @n }, timeout => 3,
        interval => 0.01);
    my $took = time - $t0;
    ok($new && $took <= 1, sprintf('SIGKILL: replaced within 1 s (%.3f s)', $took));
    my $j = $t->status_json;
    my @repl = grep { $_->{pid} != $w[1] } @{($j // {})->{workers} // []};
    is($repl[0] && $repl[0]{last_restart_reason}, 'crash', 'SIGKILL: status: last_restart_reason "crash"');
    is($repl[0] && $repl[0]{restarts}, 1, 'SIGKILL: status: restarts 1');
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# A worker that crashes at start: the test hook APIARY_TEST_WORKER_EXIT=1
# makes every worker exit right after the fork, as a broken deploy would.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 1, min_uptime => '10s' } },
        env => { APIARY_TEST_WORKER_EXIT => 1 },
        allow_log => qr/APIARY_TEST_WORKER_EXIT|$KILLED_WORKER_LOG/, name => '23-recycle.t (crash at start)');
    $t->run(no_wait => 1);
    my $t0 = time;
    ok(wait_for(sub { scalar log_msgs($t, qr/died within min_uptime/) }, timeout => 3),
        'the worker dies at start (test hook APIARY_TEST_WORKER_EXIT)') or diag($t->log_tail(20));
    # Status, sampled only while no worker process exists: the worker is
    # waiting out its back-off.
    my ($nsamples, @seen, @bad) = (0);
    my $end = $t0 + 5;
    while (time < $end) {
        next if $t->worker_pids;
        my $j = $t->status_json;
        next if !$j || $t->worker_pids;
        $nsamples++;
        my ($row) = grep { $_->{id} == 0 } @{$j->{workers}};
        push @seen, $row if $row;
        push @bad, JSON::PP->new->canonical->encode($j) if !$row && @bad < 2;
    } continue {
        sleep 0.05;
    }
    my @starts = log_msgs($t, qr/^worker 0 started/);
    my $nforks = @starts;
    ok($nforks >= 3 && $nforks <= 10, "no fork storm: $nforks forks of worker 0 in about 5 s");
    my @delays = map { /restarting in (\d+) ms/ ? $1 : () } map { $_->{msg} } log_msgs($t, qr/died within min_uptime/);
    ok(@delays >= 3 && !grep({ $delays[$_] <= $delays[$_ - 1] } 1 .. $#delays) && $delays[0] <= 200,
        "the log shows the back-off growing (@delays ms)");
    cmp_ok($nsamples, '>=', 3, "status was sampled during the back-off ($nsamples samples)");
    ok(@seen && @seen == $nsamples,
        'status shows worker 0 while it waits out its back-off') or diag(join("\n", @bad));
    ok(@seen && $seen[-1]{restarts} >= 2 && ($seen[-1]{last_restart_reason} // '') eq 'crash',
        'status shows its restarts and the reason "crash"');
    my ($code) = $t->cli('check', '--ready');
    is($code, 1, 'check --ready exits 1 (no worker is ready)');
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# TTIN / TTOU.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 2, min_uptime => '500ms' } },
        name => '23-recycle.t (TTIN/TTOU)');
    $t->run;
    my $ids = sub {
        my $j = $t->status_json or return '';
        return join(',', sort map { "$_->{id}:$_->{state}" } @{$j->{workers}});
    };
    $t->signal('TTIN');
    ok(wait_for(sub { $t->worker_pids == 3 && $ids->() eq '0:ready,1:ready,2:ready' }, timeout => 5),
        'TTIN: three workers, status shows ids 0, 1, 2 ready') or diag('status: ' . $ids->());
    $t->signal('TTOU');
    ok(wait_for(sub { $t->worker_pids == 2 && $ids->() eq '0:ready,1:ready' }, timeout => 8),
        'TTOU: two workers, status shows ids 0, 1') or diag('status: ' . $ids->());
    $t->signal('TTOU');
    ok(wait_for(sub { $t->worker_pids == 1 && $ids->() eq '0:ready' }, timeout => 8),
        'TTOU: one worker, status shows id 0') or diag('status: ' . $ids->());
    ok(live($t), 'serving with one worker');
    $t->signal('TTIN');
    ok(wait_for(sub { $t->worker_pids == 2 && $ids->() eq '0:ready,1:ready' }, timeout => 5),
        'TTIN: two workers again') or diag('status: ' . $ids->());
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# max_requests with jitter, under load.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(
        config => { server => { workers => 2, max_requests => 50, max_requests_jitter => 10,
                                min_uptime => '500ms', shutdown_timeout => '10s' } },
        name => '23-recycle.t (max_requests)');
    $t->run;
    my @w0 = $t->worker_pids;
    my $load = $t->load(seconds => 8, keepalive => 2, fresh => 2);
    my ($seen, $j);
    my $deadline = time + 8;
    while (time < $deadline) {
        $j = $t->status_json;
        $seen ||= grep { ($_->{last_restart_reason} // '') eq 'max_requests' && $_->{restarts} >= 1 }
            @{($j // {})->{workers} // []};
        sleep 0.2;
    }
    ok($seen, 'status shows a worker with last_restart_reason "max_requests"')
        or diag(JSON::PP->new->canonical->encode($j // {}));
    load_ok($load->finish, 'max_requests');
    my @recycled = log_msgs($t, qr/served \d+ requests: recycling it/);
    cmp_ok(scalar @recycled, '>=', 4, 'workers were recycled several times (' . scalar(@recycled) . ' in the log)');
    my @w1 = $t->worker_pids;
    ok(!grep({ my $o = $_; grep { $_ == $o } @w1 } @w0), 'none of the first workers is left');
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# max_worker_memory below what a worker uses: recycled for memory.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(
        config => { server => { workers => 2, max_worker_memory => '1m', min_uptime => '500ms' } },
        name => '23-recycle.t (max_worker_memory)');
    $t->run;
    my @w0 = $t->worker_pids;
    my $load = $t->load(seconds => 5, keepalive => 1, fresh => 1);
    my ($seen, $j);
    wait_for(sub {
        $j = $t->status_json;
        $seen = grep { ($_->{last_restart_reason} // '') eq 'memory' && $_->{restarts} >= 1 }
            @{($j // {})->{workers} // []};
    }, timeout => 5, interval => 0.1);
    ok($seen, 'status shows a worker with last_restart_reason "memory"')
        or diag(JSON::PP->new->canonical->encode($j // {}));
    ok(scalar(log_msgs($t, qr/uses \d+ bytes: recycling it/)), 'the log says why');
    ok(wait_for(sub { my @w = $t->worker_pids; !grep({ my $o = $_; grep { $_ == $o } @w } @w0) }, timeout => 5),
        'the first workers were replaced');
    load_ok($load->finish, 'max_worker_memory');
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

done_testing;
