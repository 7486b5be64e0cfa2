#!/usr/bin/perl
# Rolling reload (issue 5, DESIGN.md 2): under a continuous load of
# keep-alive and fresh connections, three reloads (HUP and "-s reload
# --wait") lose no request, never leave fewer than N ready workers, and
# replace every worker; an invalid configuration changes nothing and is
# reported (log, status, "-s reload --wait" exit 1 with file:line); a new
# worker that cannot become ready aborts the rollout and the old workers
# keep serving; listeners added to or removed from the configuration are
# bound or closed.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::INET ();
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

sub live($t, %o) {
    my $r = eval { $t->get('/live', timeout => 2, %o) };
    return $r && $r->{status} == 200 ? $r : undef;
}

sub disjoint($x, $y) {
    my %y = map { $_ => 1 } @$y;
    return !grep { $y{$_} } @$x;
}

sub same_set($x, $y) { join(' ', sort { $a <=> $b } @$x) eq join(' ', sort { $a <=> $b } @$y) }

sub ready_count($j) { scalar grep { ($_->{state} // '') eq 'ready' } @{$j->{workers} // []} }

# Connecting to a port is refused (nothing listens).
sub refused($port) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 2);
    return 0 if $s;
    return $!{ECONNREFUSED} ? 1 : 0;
}

# The line of the configuration file that holds $re.
sub conf_line($t, $re) {
    my @l = split /\n/, $t->read_file($t->conf_path) // '';
    for my $i (0 .. $#l) { return $i + 1 if $l[$i] =~ $re }
    return 0;
}

sub load_ok($res, $name) {
    ok($res->{fail} == 0 && $res->{keepalive_ok} > 0 && $res->{fresh_ok} > 0,
        "$name: no failed request ($res->{ok} ok: $res->{keepalive_ok} keep-alive, "
        . "$res->{fresh_ok} fresh; $res->{fail} failed)")
        or diag(join("\n", 'first failures:', @{$res->{errors}}));
}

# ---------------------------------------------------------------------------
# Three reloads under load: HUP, "-s reload --wait", HUP.
# ---------------------------------------------------------------------------

{
    my $N = 2;
    my %server = (workers => $N, shutdown_timeout => '10s', min_uptime => '500ms');
    my $t = Apiary::Test->new(config => { server => { %server, server_header => 'gen0' } },
        name => '21-reload.t (three reloads under load)');
    $t->run;
    my @first = $t->worker_pids;
    is(scalar @first, $N, "$N workers");

    my $load = $t->load(seconds => 22, keepalive => 2, fresh => 2);
    my ($nsamples, $min_ready, @low) = (0, undef);
    my $sample = sub {
        my $j = $t->status_json or return undef;
        $nsamples++;
        my $n = ready_count($j);
        $min_ready = $n if !defined $min_ready || $n < $min_ready;
        push @low, sprintf('%.2fs: %s', $load->elapsed,
            join(', ', map { "$_->{pid}=$_->{state}" } @{$j->{workers}})) if $n < $N && @low < 5;
        return $j;
    };

    sleep 2;
    my @prev = @first;
    for my $i (1 .. 3) {
        my $how = $i == 2 ? '-s reload --wait' : 'HUP';
        my $name = "reload $i ($how)";
        $t->write_config(config => { server => { %server, server_header => "gen$i" } });
        my $t0 = time;
        my $wait;
        if ($i == 2) {
            $wait = $t->cli_start('-s', 'reload', '--wait');
        } else {
            $t->reload;
        }
        # Sample the status while the rollout runs, until the workers are
        # all new, the old ones are gone and the reload is reported "ok".
        my ($done, $j);
        my $deadline = time + 15;
        while (time < $deadline) {
            $j = $sample->();
            my @w = $t->worker_pids;
            if (@w == $N && disjoint(\@w, \@prev) && $j && ($j->{master}{reload}{result} // '') eq 'ok'
                && (!$wait || $wait->(poll => 1))) {
                $done = 1;
                last;
            }
            sleep 0.02;
        }
        ok($done, sprintf('%s: completed (%.2f s), every worker replaced', $name, time - $t0))
            or diag('workers: ' . join(' ', $t->worker_pids) . "; before: @prev; status: "
                . JSON::PP->new->canonical->encode($j // {}));
        if ($wait) {
            my ($code, $out, $err) = $wait->(timeout => 20);
            is($code, 0, "$name: exits 0") or diag($out . $err);
        }
        my $r = live($t);
        is($r && $r->{headers}{server}, "gen$i", "$name: the new configuration is served");
        my @now = $t->worker_pids;
        ok(disjoint(\@now, \@prev), "$name: no worker of the previous generation is left")
            or diag("now @now; before @prev");
        @prev = @now;
        sleep 4 if $i < 3;
    }
    # Keep sampling until the load ends.
    while ($load->elapsed < 22) { $sample->(); sleep 0.2 }
    my $res = $load->finish;
    cmp_ok($load->elapsed, '>=', 20, 'the load ran for at least 20 s');
    load_ok($res, 'three reloads under load');

    my @last = $t->worker_pids;
    is(scalar @last, $N, "$N workers afterwards");
    ok(disjoint(\@last, \@first), 'afterwards every worker pid is new')
        or diag("first @first; last @last");
    cmp_ok($nsamples, '>=', 10, "status --json was sampled during the rollouts ($nsamples samples)");
    ok(defined $min_ready && $min_ready >= $N,
        "never fewer than $N ready workers in status during the rollouts (minimum "
        . ($min_ready // 'none') . ')') or diag(join("\n", @low));
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# An invalid configuration: nothing changes, the error is reported.
# ---------------------------------------------------------------------------

{
    my %server = (workers => 2, min_uptime => '500ms');
    my $t = Apiary::Test->new(config => { server => { %server, server_header => 'old' } },
        name => '21-reload.t (invalid configuration)');
    $t->run;
    my $m = $t->master_pid;
    my @old = $t->worker_pids;
    my $load = $t->load(seconds => 6, keepalive => 1, fresh => 1);

    $t->write_config(config => { server => { %server, server_header => 'new', no_such_key => 1 } });
    my $conf = $t->conf_path;
    my $line = conf_line($t, qr/^no_such_key/);
    ok($line > 0, "the invalid line is line $line");

    $t->reload;
    # The admin listener's /status (the same document, from the workers).
    my $a;
    ok(wait_for(sub {
        my $r = eval { $t->get('/status', port => $t->admin_port) };
        $a = decode_json_body($r);
        $a && ($a->{master}{reload}{result} // '') eq 'failed' }, timeout => 5),
        'HUP: the admin /status shows the reload result "failed"');
    like($a && $a->{master}{reload}{message}, qr/\Q$conf\E:$line:.*no_such_key/,
        'HUP: ... with the file:line error');
    # "apiary status" while the file on disk is the invalid one: that is
    # when an operator asks.
    my $j;
    ok(wait_for(sub { $j = $t->status_json; $j && ($j->{master}{reload}{result} // '') eq 'failed' },
        timeout => 5), 'HUP: apiary status --json shows the reload result "failed"')
        or diag($t->{status_error} // JSON::PP->new->canonical->encode($j // {}));
    like($j && $j->{master}{reload}{message}, qr/\Q$conf\E:$line:.*no_such_key/,
        'HUP: apiary status --json: the message has the file:line error');
    ok(wait_for(sub { grep { ($_->{msg} // '') =~ /\Q$conf\E:$line:.*no_such_key/ } $t->log_records },
        timeout => 3), 'HUP: the error log has the file:line error');
    sleep 1;
    is($t->master_pid, $m, 'HUP: same master');
    ok(same_set([$t->worker_pids], \@old), 'HUP: the same workers keep running (pids unchanged)')
        or diag('now ' . join(' ', $t->worker_pids) . "; before @old");
    my $r = live($t);
    is($r && $r->{headers}{server}, 'old', 'HUP: the old configuration is served');

    my ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 20 });
    is($code, 1, '-s reload --wait: exits 1');
    like($out . $err, qr/\Q$conf\E:$line:.*no_such_key/, '-s reload --wait: prints the file:line error');
    ok(same_set([$t->worker_pids], \@old), '-s reload --wait: the same workers keep running');

    load_ok($load->finish, 'invalid configuration');
    $r = live($t);
    is($r && $r->{headers}{server}, 'old', 'still serving the old configuration');
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# A new worker that cannot become ready (its database pool points at a
# closed port): the rollout is aborted, the old workers keep serving.
# ---------------------------------------------------------------------------

SKIP: {
    my $ci = ($ENV{CI} // '') !~ /^(?:|0|false)$/i;
    skip 'no PostgreSQL cluster (APIARY_TEST_PG_DIR; run under t/lib/with-pg)', 1
        unless $ENV{APIARY_TEST_PG_DIR} || $ci;
    my $t = Apiary::Test->new(db => 1, ports => 2, name => '21-reload.t (new worker never ready)');
    my $closed = $t->port(1);    # reserved, nobody listens there
    my %server = (workers => 2, worker_ready_timeout => '2s', min_uptime => '500ms',
        listen => '127.0.0.1:' . $t->port(0));
    $t->write_config(config => { server => { %server } });
    $t->run(timeout => 15);
    ok(wait_for(sub { my $j = $t->status_json; $j && ready_count($j) == 2 }, timeout => 15),
        'both workers ready (database pool connected, schema cache loaded)');
    my @old = $t->worker_pids;
    my $good_uri = $t->db_uri;
    my $API = '/rpc/add_them?a=40&b=2';
    my $r0 = eval { $t->get($API) };
    is($r0 && $r0->{status}, 200, "GET $API answers 200 before the reload");
    my $load = $t->load(seconds => 12, keepalive => 1, fresh => 1, path => $API);

    $t->write_config(config => {
        server => { %server },
        database => { uri => "postgresql://authenticator\@127.0.0.1:$closed/" . $t->dbname },
    });
    my $nrec = () = $t->log_records;
    $t->reload;
    my $t0 = time;
    my ($j, $min_ready, $saw_new) = (undef, undef, 0);
    my $aborted = wait_for(sub {
        my @w = $t->worker_pids;
        $saw_new = 1 if !same_set(\@w, \@old) && @w > @old;
        $j = $t->status_json or return 0;
        my $n = ready_count($j);
        $min_ready = $n if !defined $min_ready || $n < $min_ready;
        ($j->{master}{reload}{result} // '') eq 'failed' && same_set(\@w, \@old);
    }, timeout => 8, interval => 0.05);
    ok($aborted, sprintf('HUP: the rollout is aborted (reload "failed") after about worker_ready_timeout (%.1f s)',
        time - $t0)) or diag(JSON::PP->new->canonical->encode($j // {}));
    ok($saw_new, 'HUP: a new worker was started');
    my @all = $t->log_records;
    my @recs = @all[$nrec .. $#all];
    my @new = map { /^worker \d+ started \(pid (\d+)\)/ ? $1 : () } map { $_->{msg} // '' } @recs;
    ok(@new && !grep { proc_alive($_) } @new, 'HUP: the new worker that was not ready is gone')
        or diag("new workers: @new");
    like($j && $j->{master}{reload}{message}, qr/ready/i, 'HUP: status says why (not ready)');
    ok(defined $min_ready && $min_ready >= 2, 'HUP: never fewer than 2 ready workers meanwhile (minimum '
        . ($min_ready // 'none') . ')');
    ok(same_set([$t->worker_pids], \@old), 'HUP: the old workers keep running');
    ok(wait_for(sub { my $r = eval { $t->get('/ready', timeout => 2) }; $r && $r->{status} == 200 }, timeout => 2),
        'HUP: the old workers keep serving (/ready 200: their pool is healthy)');

    my ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 20 });
    is($code, 1, '-s reload --wait: exits 1 when the new worker is not ready');
    like($out . $err, qr/ready/i, '-s reload --wait: prints the reason');
    ok(wait_for(sub { same_set([$t->worker_pids], \@old) }, timeout => 3),
        '-s reload --wait: the old workers keep running');
    load_ok($load->finish(stop => 1), "aborted rollout (GET $API)");
    $j = $t->status_json;
    is($j && $j->{master}{reload}{result}, 'failed', 'status: the reload result is "failed"');

    # Back to a good configuration: the rollout completes, and requests
    # that need the database do not fail meanwhile.
    $load = $t->load(seconds => 6, keepalive => 1, fresh => 1, path => $API);
    sleep 1;
    $t->write_config(config => { server => { %server }, database => { uri => $good_uri } });
    ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 30 });
    is($code, 0, 'a good configuration afterwards: -s reload --wait exits 0') or diag($out . $err);
    my @w = $t->worker_pids;
    ok(wait_for(sub { @w = $t->worker_pids; @w == 2 && disjoint(\@w, \@old) }, timeout => 10),
        'a good configuration afterwards: every worker replaced');
    load_ok($load->finish, "reload with a database (GET $API)");
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# Listeners: one added, one removed by a reload.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(ports => 3, name => '21-reload.t (listeners added and removed)');
    my ($p0, $p1, $p2) = $t->ports;
    my %server = (workers => 2, min_uptime => '500ms');
    $t->write_config(config => { server => { %server, listen => ["127.0.0.1:$p0", "127.0.0.1:$p1"] } });
    $t->run;
    ok(live($t, port => $p1), "port $p1 answers before the reload");
    ok(refused($p2), "port $p2 refuses before the reload");
    my @old = $t->worker_pids;

    $t->write_config(config => { server => { %server, listen => ["127.0.0.1:$p0", "127.0.0.1:$p2"] } });
    my ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 20 });
    is($code, 0, '-s reload --wait exits 0') or diag($out . $err);
    ok(live($t, port => $p2), "the added port $p2 answers");
    ok(live($t, port => $p0), "the kept port $p0 answers");
    ok(wait_for(sub { !grep { proc_alive($_) } @old }, timeout => 10), 'the old workers are gone');
    ok(wait_for(sub { refused($p1) }, timeout => 3), "the removed port $p1 refuses connections");
    is(scalar keys %{listening_inodes($p1)}, 0, "nothing listens on $p1 any more");
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

done_testing;
