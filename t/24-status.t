#!/usr/bin/perl
# Seeing it (issue 5): "apiary status --json" against its documented fields
# and the real values, the "status" table, "check [--ready]" (exit status,
# no output), the control socket's mode, the admin listener (/live, /ready
# with the per-worker view, /status, 404 otherwise), "-s drain" (/ready
# fails at once on the public and the admin listener, then a graceful quit
# after drain_delay), and listen lines with the freebind flag.

use v5.36;
use Cwd ();
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use List::Util qw(sum0);
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->canonical;

sub uint_ok($v) { defined $v && !ref $v && $v =~ /^\d+$/ }

sub is_bool($v) { JSON::PP::is_bool($v) }

sub admin_get($t, $path) { eval { $t->get($path, port => $t->admin_port, timeout => 2) } }

my %STATES  = map { $_ => 1 } qw(starting ready draining unhealthy);
my %DB      = map { $_ => 1 } qw(none connecting healthy unhealthy);
my %REASONS = map { $_ => 1 } ('', qw(crash timeout unhealthy memory max_requests reload));
my %RESULTS = map { $_ => 1 } ('', 'in progress', 'ok', 'failed');

# Problems with a status document (apiary status --json, admin /status):
# the fields of doc/apiary.8 ("apiary status --json") and their types.
sub status_problems($j) {
    my @p;
    return ('not a JSON object') unless ref $j eq 'HASH';
    my $m = $j->{master};
    return ('no "master" object') unless ref $m eq 'HASH';
    push @p, 'master.pid' unless uint_ok($m->{pid});
    push @p, 'master.version' unless defined $m->{version} && !ref $m->{version} && $m->{version} ne '';
    push @p, 'master.config' unless defined $m->{config} && !ref $m->{config} && $m->{config} =~ m{^/};
    push @p, 'master.uptime_s' unless uint_ok($m->{uptime_s});
    push @p, 'master.draining (boolean)' unless is_bool($m->{draining});
    push @p, 'master.ready_workers' unless uint_ok($m->{ready_workers});
    my $r = $m->{reload};
    if (ref $r ne 'HASH') {
        push @p, 'master.reload';
    } else {
        push @p, 'master.reload.result' unless defined $r->{result} && $RESULTS{$r->{result}};
        push @p, 'master.reload.message' unless defined $r->{message} && !ref $r->{message};
        push @p, 'master.reload.at_ms' unless uint_ok($r->{at_ms});
    }
    return (@p, 'no "workers" array') unless ref $j->{workers} eq 'ARRAY';
    for my $w (@{$j->{workers}}) {
        my $id = $w->{id} // '?';
        push @p, map { "workers[$id].$_" } grep { !uint_ok($w->{$_}) }
            qw(id pid uptime_s restarts requests in_flight rss_bytes);
        push @p, "workers[$id].state=" . ($w->{state} // 'undef') unless $STATES{$w->{state} // ''};
        push @p, "workers[$id].db=" . ($w->{db} // 'undef') unless $DB{$w->{db} // ''};
        push @p, "workers[$id].last_restart_reason=" . ($w->{last_restart_reason} // 'undef')
            unless defined $w->{last_restart_reason} && $REASONS{$w->{last_restart_reason}};
    }
    return @p;
}

sub pids_of($j) { join ' ', sort { $a <=> $b } map { $_->{pid} } @{$j->{workers} // []} }

sub rss_of($pid) {
    open my $fh, '<', "/proc/$pid/statm" or return 0;
    my (undef, $res) = split ' ', scalar <$fh>;
    return $res * POSIX::sysconf(POSIX::_SC_PAGESIZE());
}

# Every one of $n GETs of /ready on fresh connections answers $status.
sub ready_all($t, $status, %o) {
    my @got;
    for (1 .. ($o{n} // 6)) {
        my $r = eval { $t->get('/ready', port => $o{port} // $t->port, timeout => 2) };
        push @got, $r ? $r->{status} : 'none';
    }
    return (!grep({ $_ ne $status } @got), "@got");
}

# ---------------------------------------------------------------------------
# status, check, the admin listener, the control socket, drain.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 2, drain_delay => '2s' } },
        name => '24-status.t');
    $t->run;
    my $m = $t->master_pid;
    my @w = $t->worker_pids;
    sleep 1.5;    # the master has looked at the workers (RSS) at least once

    my ($vcode, $vout) = $t->cli('-v');
    my ($version) = $vout =~ /^apiary (\S+)/;

    # status --json
    my ($code, $out, $err) = $t->cli('status', '--json');
    is($code, 0, 'status --json exits 0') or diag($err);
    my $j = eval { JSON::PP->new->decode($out) };
    ok($j, 'status --json prints one JSON document') or diag($out);
    is(join("\n", status_problems($j)), '', 'status --json: every documented field, with its type');
    is($j->{master}{pid}, $m, 'master.pid is the master');
    is($j->{master}{version}, $version, "master.version is the version (apiary -v: $version)");
    is($j->{master}{config}, Cwd::abs_path($t->conf_path), 'master.config is the configuration file');
    ok(is_bool($j->{master}{draining}) && !$j->{master}{draining}, 'master.draining is false');
    is($j->{master}{reload}{result}, '', 'master.reload.result is empty before any reload');
    is($j->{master}{ready_workers}, 2, 'master.ready_workers is 2');
    is(scalar @{$j->{workers} // []}, 2, 'two workers');
    is(pids_of($j), join(' ', @w), 'the worker pids are the real ones');
    is(join(',', sort map { $_->{id} } @{$j->{workers}}), '0,1', 'worker ids 0 and 1');
    for my $x (@{$j->{workers}}) {
        is($x->{state}, 'ready', "worker $x->{id}: state ready");
        is($x->{db}, 'none', "worker $x->{id}: db none (no database configured)");
        is($x->{restarts}, 0, "worker $x->{id}: no restarts");
        is($x->{last_restart_reason}, '', "worker $x->{id}: no restart reason");
        my $real = rss_of($x->{pid});
        ok($x->{rss_bytes} > 0 && $x->{rss_bytes} >= $real / 4 && $x->{rss_bytes} <= $real * 4,
            "worker $x->{id}: rss_bytes $x->{rss_bytes} is about its RSS ($real)");
        cmp_ok($x->{uptime_s}, '<=', time - $t->{started_at} + 1, "worker $x->{id}: uptime_s is plausible");
    }

    # requests grow
    my $before = sum0(map { $_->{requests} } @{$j->{workers}});
    for (1 .. 20) { $t->get('/live') }
    my $after;
    ok(wait_for(sub {
        my $k = $t->status_json or return 0;
        $after = sum0(map { $_->{requests} } @{$k->{workers}});
        $after >= $before + 20 }, timeout => 3),
        "the requests counters grow by the 20 requests made ($before -> " . ($after // '?') . ')');

    # status table
    ($code, $out, $err) = $t->cli('status');
    is($code, 0, 'status exits 0') or diag($err);
    my @lines = split /\n/, $out;
    like($lines[0] // '', qr/\bmaster pid $m\b.*\Q$version\E.*\Q$j->{master}{config}\E/,
        'status: the master line (pid, version, config)');
    my ($head) = grep { /^id\s/ } @lines;
    like($head // '', qr/^id\s+pid\s+state\s+uptime\s+restarts\s+last reason\s+requests\s+in-flight\s+rss\s+db\s*$/,
        'status: the column header');
    for my $p (@w) {
        my @rows = grep { /^\d+\s+$p\s/ } @lines;
        is(scalar @rows, 1, "status: one row for worker $p");
        like($rows[0] // '', qr/^\d+\s+$p\s+ready\s+\d+s\s+0\s+-\s+\d+\s+\d+\s+[\d.]+M\s+none\s*$/,
            "status: worker $p: ready, uptime, 0 restarts, no reason, requests, in-flight, rss, db");
    }
    is(scalar(grep { /^\d+\s+\d+\s/ } @lines), 2, 'status: two worker rows');

    # check
    ($code, $out, $err) = $t->cli('check');
    is($code, 0, 'check exits 0');
    is($out . $err, '', 'check prints nothing');
    ($code, $out, $err) = $t->cli('check', '--ready');
    is($code, 0, 'check --ready exits 0');
    is($out . $err, '', 'check --ready prints nothing');

    # the control socket
    my $sock = $t->control_socket;
    ok(-S $sock, "the control socket $sock is a socket");
    is(sprintf('%04o', (stat $sock)[2] & 07777), '0600', 'the control socket has mode 0600');

    # the admin listener
    my $r = admin_get($t, '/live');
    is($r && $r->{status}, 200, 'admin /live: 200');
    $r = admin_get($t, '/ready');
    is($r && $r->{status}, 200, 'admin /ready: 200');
    my $rj = decode_json_body($r);
    is(join("\n", status_problems($rj)), '', 'admin /ready: the status document (per-worker view)');
    is($rj && pids_of($rj), join(' ', @w), 'admin /ready: one entry per worker, with the real pids');
    like($r && $r->{headers}{'content-type'}, qr{^application/json}, 'admin /ready: application/json');
    $r = admin_get($t, '/status');
    is($r && $r->{status}, 200, 'admin /status: 200');
    my $sj = decode_json_body($r);
    is(join("\n", status_problems($sj)), '', 'admin /status: the status document');
    is($sj && $sj->{master}{pid}, $m, 'admin /status: master.pid');
    is($sj && pids_of($sj), join(' ', @w), 'admin /status: the worker pids');
    my $cj = $t->status_json;
    is(join(',', sort keys %{$sj // {}}) . ';' . join(',', sort keys %{$sj->{master} // {}}),
       join(',', sort keys %{$cj // {}}) . ';' . join(',', sort keys %{$cj->{master} // {}}),
       'admin /status has the fields of status --json');
    $r = admin_get($t, '/other');
    is($r && $r->{status}, 404, 'admin /other: 404');

    # drain
    my ($ok, $got) = ready_all($t, 200);
    ok($ok, "before the drain: /ready 200 on the public listener ($got)");
    ($code, $out, $err) = $t->cli('-s', 'drain');
    my $t_drain = time;
    is($code, 0, '-s drain exits 0') or diag($out . $err);
    ($ok, $got) = ready_all($t, 503);
    ok($ok, "drain: /ready 503 at once on the public listener, every worker ($got)");
    ($ok, $got) = ready_all($t, 503, port => $t->admin_port, n => 3);
    ok($ok, "drain: /ready 503 at once on the admin listener ($got)");
    $r = eval { $t->get('/live', timeout => 2) };
    is($r && $r->{status}, 200, 'drain: the node still serves meanwhile (/live 200)');
    ($code, $out, $err) = $t->cli('check', '--ready');
    is($code, 1, 'drain: check --ready exits 1');
    is($out . $err, '', 'drain: check --ready prints nothing');
    ($code, $out, $err) = $t->cli('check');
    is($code, 0, 'drain: check exits 0 (the master answers)');
    my $dj = $t->status_json;
    ok($dj && is_bool($dj->{master}{draining}) && $dj->{master}{draining}, 'drain: status shows draining true');
    my $st = $t->wait_exit(15);
    my $took = time - $t_drain;
    is($st, 0, 'drain: the master exits 0');
    ok(defined $st && $took >= 1.8 && $took < 8,
        sprintf('drain: the master quits gracefully after drain_delay = 2 s (%.2f s)', $took));
    ok(!-e $t->pidfile, 'drain: pidfile removed');
    ok(!grep({ proc_alive($_) } @w), 'drain: the workers are gone');
    ($code, $out, $err) = $t->cli('check');
    is($code, 1, 'check exits 1 when no master runs');
    is($out . $err, '', '... and prints nothing');
    ($code, $out, $err) = $t->cli('check', '--ready');
    is($code, 1, 'check --ready exits 1 when no master runs');
    is($out . $err, '', '... and prints nothing');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# freebind: 127.0.0.1 with the flag, and an address this host does not
# have (192.0.2.1, TEST-NET-1: only a listening socket is made, nothing is
# sent to it).
# ---------------------------------------------------------------------------

# LISTEN sockets on $addr:$port in /proc/net/tcp.
sub listening_on($addr, $port) {
    my $hex = sprintf('%08X:%04X', unpack('V', pack('C4', split /\./, $addr)), $port);
    open my $fh, '<', '/proc/net/tcp' or return 0;
    return scalar grep { my @c = split; @c > 3 && $c[1] eq $hex && $c[3] eq '0A' } <$fh>;
}

{
    my $t = Apiary::Test->new(ports => 2, name => '24-status.t (freebind)');
    my ($p0, $p1) = $t->ports;
    $t->write_config(config => { server => { workers => 1,
        listen => ["127.0.0.1:$p0 freebind", "192.0.2.1:$p1 freebind"] } });
    my ($code, $out, $err) = $t->cli('-t');
    is($code, 0, 'apiary -t accepts listen lines with the freebind flag') or diag($out . $err);
    $t->run;
    my $r = eval { $t->get('/live') };
    is($r && $r->{status}, 200, 'serving on 127.0.0.1 with freebind');
    ok(listening_on('192.0.2.1', $p1), "listening on 192.0.2.1:$p1, an address this host does not hold");
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

SKIP: {
    my $nonlocal = do { open my $fh, '<', '/proc/sys/net/ipv4/ip_nonlocal_bind'; <$fh> } // '0';
    skip 'net.ipv4.ip_nonlocal_bind is on: binding any address works without freebind', 1
        if $nonlocal =~ /^1/;
    my $t = Apiary::Test->new(ports => 2, name => '24-status.t (no freebind)', allow_log => qr/bind\(\)/);
    my ($p0, $p1) = $t->ports;
    $t->write_config(config => { server => { workers => 1,
        listen => ["127.0.0.1:$p0", "192.0.2.1:$p1"] } });
    $t->run(no_wait => 1);
    my $st = $t->wait_exit(5);
    ok(defined $st && $st != 0, 'without freebind, the same address cannot be bound: apiary exits non-zero');
    like($t->log_text, qr/192\.0\.2\.1/, '... and says which address');
    $t->teardown;
}

done_testing;
