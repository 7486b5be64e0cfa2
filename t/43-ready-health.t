#!/usr/bin/perl
# Readiness and database health: /ready with and without a database,
# PostgreSQL stopped and started again, pgBouncer restarted (apiary
# recovers without a restart), a worker whose pool alone is broken
# (replaced by the master after unhealthy_grace) and every pool broken
# (nobody replaced: that is the database's fault, not a worker's).
# PostgreSQL and pgBouncer are stopped here, so this test has a cluster of
# its own (db => 'private').

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

sub rpc($d, $method, $path, %o) {
    my $body = $o{body};
    my $raw = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $raw .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n" if defined $body;
    $raw .= "\r\n" . ($body // '');
    my $t0 = time;
    my ($r) = eval { parse_responses($d->http($raw, timeout => $o{timeout} // 5)) };
    $r->{elapsed} = time - $t0 if $r;
    return $r;
}

# The body as a JSON object ({} if it is not one).
sub jbody($r) {
    my $j = eval { $JSON->decode($r->{body}) };
    return ref $j eq 'HASH' ? $j : {};
}

sub add_them($d, %o) { return rpc($d, 'POST', '/rpc/add_them', body => '{"a":40,"b":2}', %o) }

sub ok_200($r) { return $r && $r->{status} == 200 && $r->{body} eq '42' }

# Starts a daemon; if it does not start, the rest of the file cannot run:
# fail, and end here.
sub start_or_end($d, $name, %o) {
    my $ok = eval { $d->run(timeout => 10); 1 };
    my $err = $@;
    ok($ok, "$name: apiary starts (/live answers)") or diag($err);
    $ok &&= ok($d->wait_ready(timeout => 15), "$name: /ready 200") if $o{ready};
    return if $ok;
    diag("apiary did not start ($name): the remaining tests cannot run\n" . $d->log_tail);
    done_testing;
    exit 1;
}

# The master's "worker N started (pid P)" lines from record $from on:
# (id => last pid) and every (id, pid) in order.
sub started_workers($d, $from = 0) {
    my @recs = $d->log_records;
    my (%last, @all);
    for my $r (@recs[$from .. $#recs]) {
        next unless ($r->{proc} // '') eq 'master' && ($r->{msg} // '') =~ /^worker (\d+) started \(pid (\d+)\)/;
        $last{$1} = $2;
        push @all, [$1, $2];
    }
    return (\%last, \@all);
}

sub nrecords($d) { return scalar(my @r = $d->log_records) }

sub replacing_lines($d, $from = 0) {
    my @recs = $d->log_records;
    return grep { ($_->{msg} // '') =~ /replacing it/ } @recs[$from .. $#recs];
}

# N fresh connections in a row all answering /ready 200 (both workers
# take connections, so this sees every worker with high probability).
sub all_ready($d, $n = 8) {
    for (1 .. $n) {
        my $r = eval { $d->get('/ready', timeout => 2) };
        return 0 unless $r && $r->{status} == 200;
    }
    return 1;
}

sub all_rpc_ok($d, $n = 8) {
    for (1 .. $n) { return 0 unless ok_200(add_them($d, timeout => 3)) }
    return 1;
}

# ---------------------------------------------------------------------------
# Without [database] uri: nothing to wait for, and no API.
# ---------------------------------------------------------------------------
{
    my $n = Apiary::Test->new(name => '43-ready-health.t (no database)', config => { server => { workers => 1 } });
    unlike($n->read_file('apiary.conf'), qr/^\[database\]/m, 'no [database] section');
    start_or_end($n, 'no database');
    my $r = $n->get('/ready');
    is($r && $r->{status}, 200, 'no database: /ready 200');
    is_deeply(jbody($r), { status => 'ready' }, 'no database: {"status":"ready"}');
    for my $req (['GET', '/rpc/x'], ['POST', '/rpc/add_them']) {
        $r = rpc($n, $req->[0], $req->[1], body => $req->[0] eq 'POST' ? '{}' : undef);
        is($r && $r->{status}, 404, "no database: $req->[0] $req->[1] -> 404") or diag($r && $r->{raw});
        is(jbody($r)->{code}, 'AP404', "no database: $req->[0] $req->[1] -> AP404 (the API is off)");
    }
    $n->teardown;
}

# ---------------------------------------------------------------------------
# A database of our own: PostgreSQL stopped and started again
# ---------------------------------------------------------------------------

my %DB = (connect_timeout => '2s', unhealthy_grace => '60s', request_timeout => '10s');
my $t = Apiary::Test->new(db => 'private',
    config => { server => { workers => 2 }, database => {%DB} });
start_or_end($t, 'private cluster', ready => 1);
{
    my $r = $t->get('/ready');
    is_deeply(jbody($r), { status => 'ready' }, '/ready: {"status":"ready"}');
    is($r->{headers}{'cache-control'}, 'no-store', '/ready: Cache-Control: no-store');
    ok(wait_for(sub { all_ready($t) }, timeout => 10), 'every worker is ready');
    ok(all_rpc_ok($t), 'RPC answers 200');
}
my @workers_before = $t->worker_pids;
my $master = $t->master_pid;

{
    $t->pg_stop;
    my $stopped = time;
    my (%first, @slow, @bad);
    my $max_rpc = 0;
    while (time - $stopped < 8) {
        my $rr = eval { $t->get('/ready', timeout => 4) };
        $first{ready} //= time - $stopped if $rr && $rr->{status} == 503;
        my $r = add_them($t, timeout => 6);
        my $e = $r ? $r->{elapsed} : 6;
        $max_rpc = $e if $e > $max_rpc;
        if ($r && $r->{status} == 503) {
            $first{rpc} //= time - $stopped;
            my $j = jbody($r);
            push @bad, "503 with code " . ($j->{code} // 'none') unless ($j->{code} // '') =~ /^PGRST00[0-3]$/;
            push @bad, '503 without Retry-After' unless ($r->{headers}{'retry-after'} // '') =~ /^\d+$/;
        } elsif (!$r || $r->{status} != 200) {
            push @bad, $r ? "status $r->{status}" : 'no response';
        }
        last if defined $first{ready} && defined $first{rpc} && time - $stopped > 3.5;
        sleep 0.1;
    }
    diag(sprintf('PostgreSQL stopped: first /ready 503 after %s s, first RPC 503 after %s s, slowest RPC %.2f s',
        map({ defined $_ ? sprintf('%.2f', $_) : 'never' } @first{qw(ready rpc)}), $max_rpc));
    ok(defined $first{ready} && $first{ready} < 3.5,
        '/ready turns 503 within connect_timeout (2 s) plus the 1 s ping interval');
    ok(defined $first{rpc} && $first{rpc} < 3.5, 'RPC turns 503 within connect_timeout plus the ping interval');
    ok($max_rpc < 2.5, sprintf('no RPC request waited longer than connect_timeout (2 s): at most %.2f s', $max_rpc));
    is(join(', ', @bad), '', 'every failed RPC is a 503 PGRST00x with Retry-After');

    my $r = $t->get('/ready');
    is($r && $r->{status}, 503, 'PostgreSQL down: /ready 503');
    my $j = jbody($r);
    is($j->{code}, 'AP503', '/ready 503: code AP503');
    ok(defined $j->{details} && $j->{details} ne '', "/ready 503: a reason (" . ($j->{details} // '') . ')');
    like($r && $r->{headers}{'retry-after'}, qr/^\d+$/, '/ready 503: Retry-After');
    ok(all_rpc_ok($t, 1) == 0, 'PostgreSQL down: RPC does not answer 200');

    $t->pg_start;
    my $started = time;
    my $back = wait_for(sub { all_ready($t) && all_rpc_ok($t) }, timeout => 15, interval => 0.2);
    ok($back, sprintf('PostgreSQL started again: every worker ready and RPC 200 again (%.1f s), without restarting apiary',
        time - $started)) or diag($t->log_tail(20));
    is($t->master_pid, $master, 'the same master');
    is_deeply([$t->worker_pids], \@workers_before, 'the same workers (nobody was replaced: all were down)');
    is($t->psql("select api.add_them(1, 1)"), 2, 'psql works too');
}

# ---------------------------------------------------------------------------
# pgBouncer restarted under load
# ---------------------------------------------------------------------------

# A child process sends requests one after another until $stop_file exists
# (bounded by $limit seconds) and writes "elapsed status code" lines.
sub background_load($d, $out_file, $stop_file, $limit) {
    my $pid = fork // die "fork: $!";
    return $pid if $pid;
    my $deadline = time + $limit;
    open my $fh, '>', $out_file or POSIX::_exit(1);
    $fh->autoflush(1);
    while (time < $deadline && !-e $stop_file) {
        my $r = add_them($d, timeout => 5);
        my $code = $r ? (jbody($r)->{code} // '-') : '-';
        printf {$fh} "%.3f %s %s\n", $r ? $r->{elapsed} : 5, $r ? $r->{status} : 0, $code;
        sleep 0.02;
    }
    close $fh;
    POSIX::_exit(0);
}

{
    my $out = $t->testdir . '/load-pgbouncer.txt';
    my $stop = $t->testdir . '/load-pgbouncer.stop';
    my $pid = background_load($t, $out, $stop, 30);
    sleep 0.5;
    my $t0 = time;
    $t->pgbouncer_restart;
    my $restarted = time;
    my $back = wait_for(sub { all_rpc_ok($t) && all_ready($t) }, timeout => 15, interval => 0.2);
    ok($back, sprintf('pgBouncer restarted (took %.1f s): RPC 200 again %.1f s later', $restarted - $t0,
        time - $restarted)) or diag($t->log_tail(20));
    sleep 0.5;
    $t->write_file($stop, '');
    my $reaped = wait_for(sub { waitpid($pid, POSIX::WNOHANG()) == $pid }, timeout => 10);
    kill 'KILL', $pid unless $reaped;
    waitpid($pid, 0) unless $reaped;
    my @lines = split /\n/, $t->read_file($out) // '';
    my @failed = grep { (split / /)[1] != 200 } @lines;
    my %by;
    $by{join ' ', (split / /)[1, 2]}++ for @failed;
    diag(sprintf('pgBouncer restart: %d requests, %d failed (%s)', scalar @lines, scalar @failed,
        join(', ', map { "$_ x$by{$_}" } sort keys %by) || 'none'));
    ok(@lines > 10, 'the load ran through the restart');
    is(join(', ', grep { !/^503 PGRST00\d$/ } sort keys %by), '', 'every failed request was a 503 PGRST00x');
    my @slow = grep { (split / /)[0] > 2.5 } @lines;
    is(scalar @slow, 0, 'no request waited longer than connect_timeout (+0.5 s)') or diag(join "\n", @slow);
    ok((split / /, $lines[-1] // '0 0')[1] == 200, 'the last requests succeed');
    is_deeply([$t->worker_pids], \@workers_before, 'the same workers');
}
$t->stop;

# ---------------------------------------------------------------------------
# One worker's pool broken: the master replaces that worker
# ---------------------------------------------------------------------------
{
    $t->set_env(APIARY_TEST_BREAK_DB_WORKER => 1);
    $t->write_config(config => { server => { workers => 2 },
        database => { %DB, unhealthy_grace => '2s' } });
    my $from = nrecords($t);
    start_or_end($t, 'worker 1 broken');
    my ($w0) = started_workers($t, $from);
    my ($pid0, $pid1) = @{$w0}{0, 1};
    ok($pid0 && $pid1, "workers 0 ($pid0) and 1 ($pid1) started");
    my $t0 = time;
    my (%status, $replaced);
    while (time - $t0 < 10) {
        my $r = add_them($t, timeout => 3);
        $status{$r ? $r->{status} : 'none'}++;
        my ($last) = started_workers($t, $from);
        if (!$replaced && $last->{1} && $last->{1} != $pid1) {
            $replaced = time - $t0;
        }
        last if $replaced && time - $t0 > $replaced + 0.5;
        sleep 0.05;
    }
    diag(sprintf('worker 1 replaced after %s s; statuses meanwhile: %s',
        defined $replaced ? sprintf('%.1f', $replaced) : 'never',
        join(', ', map { "$_ x$status{$_}" } sort keys %status)));
    my @rep = replacing_lines($t, $from);
    ok(@rep, 'the master logs "replacing it"') or diag($t->log_tail(20));
    like($rep[0]{msg} // '', qr/^worker 1 \(pid $pid1\)/, 'for worker 1, by its pid');
    is($rep[0]{level}, 'warn', 'at level warn');
    ok(defined $replaced && $replaced < 6, 'worker 1 has a new pid within unhealthy_grace (2 s) + a few seconds');
    my ($last) = started_workers($t, $from);
    is($last->{0}, $pid0, 'worker 0 was not replaced');
    ok(proc_alive($pid0), 'worker 0 still runs');
    ok(wait_for(sub { !proc_alive($pid1) }, timeout => 5), 'the old worker 1 exits');
    ok(($status{200} // 0) > 0, 'worker 0 kept answering 200 meanwhile');
    ok(!grep({ $_ ne '200' && $_ ne '503' } keys %status), 'every answer was 200 or 503');
    $t->stop;
    $t->set_env(APIARY_TEST_BREAK_DB_WORKER => undef);
}

# ---------------------------------------------------------------------------
# Every pool broken: nobody is replaced, /ready says 503
# ---------------------------------------------------------------------------
{
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1)
        or die "bind: $!";
    my $closed = $s->sockport;
    close $s;
    my $uri = "postgresql://authenticator\@127.0.0.1:$closed/nothing";
    $t->write_config(config => { server => { workers => 2 },
        database => { %DB, uri => $uri, listen_uri => $uri, unhealthy_grace => '1s', connect_timeout => '1s' } });
    my $from = nrecords($t);
    start_or_end($t, 'every pool broken');
    my @pids = $t->worker_pids;
    is(scalar @pids, 2, 'two workers');
    my $t0 = time;
    my %ready;
    while (time - $t0 < 4) {
        my $r = eval { $t->get('/ready', timeout => 2) };
        $ready{$r ? $r->{status} : 'none'}++;
        sleep 0.2;
    }
    is_deeply([$t->worker_pids], \@pids, 'after 4 s (unhealthy_grace 1 s) the same workers run');
    my ($last, $all) = started_workers($t, $from);
    is(scalar @$all, 2, 'no worker was started after the first two');
    is(scalar(my @r = replacing_lines($t, $from)), 0, 'nothing logged "replacing it"');
    is(join(', ', map { "$_ x$ready{$_}" } sort keys %ready), "503 x$ready{503}", '/ready was 503 throughout');
    my $r = $t->get('/ready');
    is(jbody($r)->{code}, 'AP503', '/ready: AP503');
    $r = add_them($t);
    is($r && $r->{status}, 503, 'RPC: 503') or diag($r && $r->{raw});
    like(jbody($r)->{code} // '', qr/^PGRST00\d$/, 'RPC: PGRST00x');
    like($r && $r->{headers}{'retry-after'}, qr/^\d+$/, 'RPC: Retry-After');
}

done_testing;
