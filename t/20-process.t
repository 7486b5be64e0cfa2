#!/usr/bin/perl
# Process model: start and stop, workers, accept spreading, crash
# replacement and back-off, graceful QUIT, USR1 log reopening, HUP reload
# (broken and valid), "-s" commands, and descriptors inherited by workers.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use List::Util qw(sum0 min);
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $LIVE = "GET /live HTTP/1.1\r\nHost: localhost\r\n\r\n";

# Master crash reports for workers we kill on purpose may be logged at
# crit/alert (nginx logs "exited on signal 9" at alert); only those are
# tolerated, and only in the instances that kill workers.
my $KILLED_WORKER_LOG = qr/"msg"\s*:\s*"[^"]*(?:worker|child)[^"]*(?:signal|exit|killed|died)/i;

sub live_ok($t, $name, %o) {
    my $r = eval { $t->get('/live', %o) };
    ok($r && $r->{status} == 200, $name) or diag($@ || ($r ? "status $r->{status}" : 'no response'));
}

# Problems with the descriptors a worker holds. Allowed: 0-2; the error
# log; the listening sockets (the master's, by inode); and descriptors of
# the worker's own (epoll, eventfd, timerfd, signalfd, pipes, a unix socket
# channel) that are not the same open file description as any descriptor
# of the master or of a sibling worker. Anything else (the config file,
# the pidfile, a client socket, the master's event loop) is a leak.
sub fd_problems($t) {
    my $m = $t->master_pid;
    my @workers = $t->worker_pids;
    my %mfd = proc_fds($m);
    my $listen = listening_inodes($t->ports, grep { defined } $t->admin_port);
    my %mlisten;
    for (values %mfd) {
        $mlisten{$1} = 1 if /^socket:\[(\d+)\]$/ && $listen->{$1};
    }
    my @p;
    push @p, "master $m holds no listening socket on the test ports" unless %mlisten;
    my $unix = unix_inodes();
    my %wfd = map { $_ => { proc_fds($_) } } @workers;
    my $log = $t->error_log // '';
    for my $w (@workers) {
        my $fds = $wfd{$w};
        my @others = ([$m, \%mfd, 'master'], map { [$_, $wfd{$_}, "worker $_"] } grep { $_ != $w } @workers);
        my $nlisten = 0;
        for my $fd (sort { $a <=> $b } keys %$fds) {
            next if $fd <= 2;
            my $target = $fds->{$fd};
            my $desc = "worker $w fd $fd -> $target";
            if ($target =~ /^socket:\[(\d+)\]$/) {
                my $ino = $1;
                if ($mlisten{$ino}) { $nlisten++; next }
                if ($unix->{$ino}) {
                    my @sh = shared_with($w, $fd, $target, \@others);
                    push @p, "$desc: unix socket shared with @sh" if @sh;
                    next;
                }
                push @p, "$desc: a socket that is not a listener";
            } elsif ($target =~ /^(?:pipe:|anon_inode:)/) {
                my @sh = shared_with($w, $fd, $target, \@others);
                push @p, "$desc: shared with @sh" if @sh;
            } elsif ($target eq $log || $target =~ m{^/dev/(?:null|urandom)$|^/memfd:|^/dev/shm/}) {
                next;
            } else {
                push @p, "$desc: a file the worker should not hold";
            }
        }
        push @p, "worker $w holds no listening socket" unless $nlisten;
    }
    return @p;
}

sub shared_with($w, $fd, $target, $others) {
    my @sh;
    for my $o (@$others) {
        my ($pid, $fds, $name) = @$o;
        for my $ofd (sort { $a <=> $b } keys %$fds) {
            next if $ofd <= 2 || $fds->{$ofd} ne $target;
            my $same = kcmp_same($w, $fd, $pid, $ofd);
            # Without kcmp: sockets and pipes with the same inode are the
            # same object; anonymous inodes cannot be told apart.
            $same //= $target =~ /^anon_inode:/ ? 0 : 1;
            push @sh, "$name fd $ofd" if $same;
        }
    }
    return @sh;
}

# Runs GET /live on fresh connections in a child process for $seconds;
# returns a sub that waits for it and returns (ok, failed, first errors).
sub background_load($t, $seconds) {
    my $file = $t->testdir . '/load-' . int(time * 1000) . '.txt';
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my ($ok, $fail, @err) = (0, 0);
        my $end = time + $seconds;
        while (time < $end) {
            my $r = eval { $t->get('/live', timeout => 3) };
            if ($r && $r->{status} == 200) {
                $ok++;
            } else {
                $fail++;
                push @err, sprintf('%.3f %s', time, $@ || ($r ? "status $r->{status}" : 'no response'));
            }
            sleep 0.01;
        }
        if (open my $fh, '>', $file) {
            print {$fh} "$ok $fail\n", join("\n", @err[0 .. min(4, $#err)]), "\n";
            close $fh;
        }
        POSIX::_exit(0);
    }
    return sub {
        my $deadline = time + $seconds + 10;
        while (waitpid($pid, POSIX::WNOHANG()) == 0) {
            if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
            sleep 0.05;
        }
        my $c = $t->read_file($file) // "0 0\nload child wrote nothing\n";
        my ($head, @err) = split /\n/, $c;
        my ($ok, $fail) = split ' ', $head;
        return ($ok, $fail, @err);
    };
}

# ---------------------------------------------------------------------------
# Start, pidfile, log format, descriptors, a second instance, TERM.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(
        config => { server => { workers => 2 }, log => { level => 'debug' } },
        name => '20-process.t (start/stop)',
    );
    $t->run;
    my $m = $t->master_pid;
    my @w = $t->worker_pids;
    is(scalar @w, 2, 'two workers are children of the master');

    my $pid_text = $t->read_file($t->pidfile);
    ok(defined $pid_text && $pid_text =~ /^(\d+)\n?$/ && $1 == $m, 'pidfile holds the master pid')
        or diag('pidfile: ' . ($pid_text // 'missing'));

    my @problems = fd_problems($t);
    is(join("\n", @problems), '', 'workers hold no descriptors leaked from the master');

    # A second master on the same port and pidfile must fail and must not
    # take the pidfile away from the first.
    my $t2 = Apiary::Test->new(name => '20-process.t (second instance)', allow_log => qr/./);
    $t2->write_config(config => { server => {
        listen => '127.0.0.1:' . $t->port, pidfile => $t->pidfile, workers => 1 } });
    $t2->run(no_wait => 1);
    my $st2 = $t2->wait_exit(5);
    $t2->worker_pids unless defined $st2;
    ok(defined $st2 && $st2 != 0, 'a second master on a busy port exits with an error')
        or diag('second master: ' . (defined $st2 ? "status $st2" : 'still running'));
    $t2->teardown;
    $pid_text = $t->read_file($t->pidfile);
    ok(defined $pid_text && $pid_text =~ /^(\d+)/ && $1 == $m,
        "the failed second master leaves the first one's pidfile alone");
    live_ok($t, 'the first master still serves');

    # Every log line is one JSON object with the documented keys.
    my @recs = $t->log_records;
    ok(scalar(grep { !$_->{_bad} && ($_->{proc} // '') eq 'master' } @recs), 'the master logs')
        or diag($t->log_tail);
    my @bad;
    for my $r (@recs) {
        my $why =
              $r->{_bad} ? 'not a JSON object'
            : ($r->{time} // '') !~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/ ? 'time'
            : ($r->{level} // '') !~ /^(?:debug|info|notice|warn|error|crit|alert)$/ ? 'level'
            : ($r->{pid} // '') !~ /^\d+$/ ? 'pid'
            : ($r->{proc} // '') !~ /^(?:master|worker)$/ ? 'proc'
            : ($r->{proc} eq 'worker') != (defined $r->{worker} && $r->{worker} =~ /^\d+$/) ? 'worker'
            : ($r->{proc} eq 'master' && $r->{pid} != $m) ? 'master pid'
            : (!defined $r->{msg} || ref $r->{msg} || $r->{msg} eq '') ? 'msg'
            : (exists $r->{error} && (ref $r->{error} || !defined $r->{error})) ? 'error'
            : undef;
        push @bad, "$why: " . ($r->{_raw} // JSON::PP->new->canonical->encode($r)) if $why;
    }
    is(join("\n", @bad), '', 'every error log line has the documented JSON shape');

    my $st = $t->stop;
    is($st, 0, 'TERM: master exits 0');
    ok(!-e $t->pidfile, 'TERM: pidfile removed');
    ok(wait_for(sub { !grep { proc_alive($_) } @w }, timeout => 3), 'TERM: workers are gone');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# Three workers; accepted connections spread over more than one of them.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 3 } },
        name => '20-process.t (three workers)');
    $t->run;
    my @w = $t->worker_pids;
    is(scalar @w, 3, 'three workers');
    for my $p (@w) {
        is(proc_stat($p)->{ppid}, $t->master_pid, "worker $p is a child of the master");
    }

    # Hold 30 keep-alive connections, each after one answered request, then
    # see which process holds the server end of each (socket inode in
    # /proc/PID/fd, matched to the client's port in /proc/net/tcp).
    my @conns;
    for (1 .. 30) {
        my $c = $t->connect;
        $c->send($LIVE);
        my $r = $c->read_response;
        push @conns, $c if $r && $r->{status} == 200;
        sleep 0.01;
    }
    is(scalar @conns, 30, '30 requests on fresh connections answered 200');
    my %client = map { $_->local_port => 1 } @conns;
    my $tcp = tcp_sockets();
    my %held;
    for my $pid ($t->master_pid, @w) {
        my %fds = proc_fds($pid);
        for my $target (values %fds) {
            my ($ino) = $target =~ /^socket:\[(\d+)\]$/ or next;
            my $s = $tcp->{$ino} or next;
            $held{$pid}++ if $s->{local_port} == $t->port && $client{$s->{remote_port}};
        }
    }
    ok(!$held{$t->master_pid}, 'the master holds no client connection');
    is(sum0(map { $held{$_} // 0 } @w), 30, 'each connection is held by one worker');
    my $busy = grep { $held{$_} } @w;
    cmp_ok($busy, '>=', 2, 'connections were accepted by more than one worker')
        or diag('connections per worker: ' . join(', ', map { "$_=" . ($held{$_} // 0) } @w));
    $_->close for @conns;
    is($t->stop, 0, 'three workers: TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# kill -9 of a worker older than min_uptime: replaced at once.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 1, min_uptime => '500ms' } },
        allow_log => $KILLED_WORKER_LOG, name => '20-process.t (kill -9)');
    $t->run;
    sleep 0.7;    # older than min_uptime
    my ($old) = $t->worker_pids;
    kill 'KILL', $old;
    my $t0 = time;
    my $new = wait_for(sub { my @n = $t->worker_pids; (@n == 1 && $n[0] != $old) ? $n[0] : 0 },
        timeout => 1, interval => 0.01);
    ok($new, 'kill -9: a new worker appears within 1 s')
        or diag(sprintf('workers now: %s', join(' ', $t->worker_pids)));
    my $ok = wait_for(sub { my $r = eval { $t->get('/live', timeout => 0.5) }; $r && $r->{status} == 200 },
        timeout => $t0 + 1 - time, interval => 0.02);
    ok($ok, 'kill -9: /live answers 200 within 1 s (only the new worker can answer)');
    diag(sprintf('replacement after %.3f s', time - $t0)) if $ENV{APIARY_TEST_VERBOSE};
    is($t->stop, 0, 'kill -9: TERM exits 0 afterwards');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# Back-off: a worker that keeps dying young is restarted after 100 ms,
# 200 ms, 400 ms, 800 ms, ...
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 1, min_uptime => '10s' } },
        allow_log => $KILLED_WORKER_LOG, name => '20-process.t (back-off)');
    $t->run;
    my @d;
    for my $k (1 .. 4) {
        my ($w) = $t->worker_pids;
        last unless $w;
        kill 'KILL', $w;
        my $t0 = time;
        my $new = wait_for(sub { my @n = $t->worker_pids; (@n == 1 && $n[0] != $w) ? $n[0] : 0 },
            timeout => 12, interval => 0.005);
        last unless $new;
        push @d, time - $t0;
    }
    is(scalar @d, 4, 'back-off: each of 4 young deaths is followed by a new worker');
    my $shown = join(' ', map { sprintf '%.3f', $_ } @d);
    ok(@d >= 1 && $d[0] >= 0.07 && $d[0] < 0.6, "back-off: first restart after ~100 ms ($shown)");
    ok(@d >= 4 && $d[3] >= 0.6 && $d[3] < 2.0, "back-off: fourth restart after ~800 ms ($shown)");
    ok(@d >= 4 && $d[3] > $d[1] + 0.2, "back-off: the delay grows ($shown)");
    ok(wait_for(sub { my $r = eval { $t->get('/live', timeout => 1) }; $r && $r->{status} == 200 },
        timeout => 3), 'back-off: the last replacement serves');
    is($t->stop, 0, 'back-off: TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# QUIT: an in-flight request finishes, idle keep-alive connections do not
# hold the shutdown, the master exits 0.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(
        config => { server => { workers => 2, shutdown_timeout => '20s', body_timeout => '10s' } },
        name => '20-process.t (QUIT)');
    $t->run;

    my $idle = $t->connect;
    $idle->send($LIVE);
    my $ir = $idle->read_response;
    is($ir && $ir->{status}, 200, 'QUIT: idle keep-alive connection set up');

    my $c = $t->connect;
    $c->send("POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n12345");
    sleep 0.5;
    $t->signal('QUIT');
    my $t_quit = time;
    sleep 0.5;
    ok(!defined $t->wait_exit(0), 'QUIT: master waits while a request is in flight');
    ok(!$c->is_closed, 'QUIT: the in-flight connection is still open');
    $c->send('67890');
    my $r = $c->read_response(timeout => 5);
    ok($r, 'QUIT: the in-flight request gets a complete response')
        or diag('received: ' . ($c->{buf} // ''));
    is($r && $r->{status}, 404, 'QUIT: ... 404 for POST /slow');
    my $j = decode_json_body($r);
    is($j && $j->{code}, 'AP404', 'QUIT: ... with the JSON error body');
    is(lc(($r && $r->{headers}{connection}) // ''), 'close',
        'QUIT: ... and Connection: close (DESIGN.md 2, graceful worker stop)');

    my $st = $t->wait_exit(15);
    is($st, 0, 'QUIT: master exits 0');
    my $took = time - $t_quit;
    ok(defined $st && $took < 10,
        sprintf('QUIT: an idle keep-alive connection does not hold shutdown until shutdown_timeout (%.1f s)', $took));
    ok($idle->wait_closed(timeout => 1), 'QUIT: the idle connection is closed');
    ok(!-e $t->pidfile, 'QUIT: pidfile removed');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# USR1 ("-s reopen"): the error log is reopened after logrotate's rename.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 2 } },
        name => '20-process.t (USR1)');
    $t->run;
    my $log = $t->error_log;
    ok(wait_for(sub { -s $log }, timeout => 2), 'USR1: error log written at start-up');
    rename $log, "$log.1" or die "rename: $!";

    my ($code, $out, $err) = $t->run_cmd('-s', 'reopen', '-c', $t->conf_path);
    is($code, 0, '-s reopen exits 0') or diag($out . $err);
    ok(wait_for(sub { -e $log }, timeout => 3), 'USR1: a new error log file appears');
    is((stat $log)[2] & 07777, 0640, 'USR1: the new file has mode 0640 (etc/apiary.conf)')
        if -e $log;
    sleep 0.3;
    my $old_size = -s "$log.1";

    # A broken reload is guaranteed to log error lines: they must go to the
    # new file.
    $t->write_config(config => { server => { workers => 0 } });
    $t->reload;
    ok(wait_for(sub { ($t->read_file($log) // '') =~ /server\.workers/ }, timeout => 3),
        'USR1: lines logged afterwards go to the new file') or diag($t->log_tail);
    sleep 0.3;
    is(-s "$log.1", $old_size, 'USR1: nothing more is written to the renamed file');

    $t->write_config(config => { server => { workers => 2 } });
    live_ok($t, 'USR1: still serving');
    ($code, $out, $err) = $t->run_cmd('-s', 'stop', '-c', $t->conf_path);
    is($code, 0, '-s stop exits 0') or diag($out . $err);
    is($t->wait_exit(10), 0, '-s stop: master exits 0');
    # The workers started before USR1 log while they stop: their lines too
    # must have gone to the new file.
    is(-s "$log.1", $old_size, 'USR1: workers reopened the log too (renamed file unchanged at exit)');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# HUP: a broken configuration changes nothing; a valid one replaces the
# workers (2 -> 3, new Server header) without refusing a connection.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 2 } },
        name => '20-process.t (HUP)');
    $t->run;
    my $m = $t->master_pid;
    my @old = $t->worker_pids;

    $t->write_config(config => { server => { workers => 0 } });
    $t->reload;
    ok(wait_for(sub {
        grep { ($_->{level} // '') =~ /^(?:error|crit|alert)$/ && ($_->{msg} // '') =~ /server\.workers/ }
            $t->log_records }, timeout => 3),
        'HUP with a broken config: an error line names server.workers') or diag($t->log_tail);
    sleep 0.5;
    is($t->master_pid, $m, 'HUP with a broken config: master keeps running');
    ok(!defined $t->wait_exit(0), 'HUP with a broken config: master has not exited');
    is_deeply([$t->worker_pids], \@old, 'HUP with a broken config: the same workers keep running');
    my $r = $t->get('/live');
    ok($r && $r->{status} == 200 && ($r->{headers}{server} // '') eq 'apiary',
        'HUP with a broken config: serving with the old configuration');

    $t->write_config(config => { server => { workers => 3, server_header => 'apiary-reloaded' } });
    my $load = background_load($t, 3);
    sleep 0.3;
    $t->reload;
    my $done = wait_for(sub {
        my @w = $t->worker_pids;
        return 0 unless @w == 3 && !grep { my $o = $_; grep { $_ == $o } @w } @old;
        my $r = eval { $t->get('/live', timeout => 1) };
        $r && ($r->{headers}{server} // '') eq 'apiary-reloaded';
    }, timeout => 10, interval => 0.05);
    ok($done, 'HUP with a valid config: three new workers, none of the old ones')
        or diag('workers: ' . join(' ', $t->worker_pids) . "; old: @old");
    ok(wait_for(sub { !grep { proc_alive($_) } @old }, timeout => 5), 'HUP: old workers have exited');
    is($t->master_pid, $m, 'HUP with a valid config: same master');
    $r = $t->get('/live');
    is($r && $r->{headers}{server}, 'apiary-reloaded', 'HUP: the new Server header is served');
    my ($ok, $fail, @err) = $load->();
    ok($ok > 0 && $fail == 0, "HUP: no request failed on fresh connections during the reload ($ok ok, $fail failed)")
        or diag(join("\n", @err));

    my @problems = fd_problems($t);
    is(join("\n", @problems), '', 'after HUP: workers hold no descriptors leaked from the master');

    my @before = $t->worker_pids;
    my ($code, $out, $err) = $t->run_cmd('-s', 'reload', '-c', $t->conf_path);
    is($code, 0, '-s reload exits 0') or diag($out . $err);
    ok(wait_for(sub {
        my @w = $t->worker_pids;
        @w == 3 && !grep { my $o = $_; grep { $_ == $o } @w } @before;
    }, timeout => 10, interval => 0.05), '-s reload: the workers are replaced');
    ($code, $out, $err) = $t->run_cmd('-s', 'quit', '-c', $t->conf_path);
    is($code, 0, '-s quit exits 0') or diag($out . $err);
    is($t->wait_exit(15), 0, '-s quit: master exits 0');
    $t->teardown;
}

done_testing;
