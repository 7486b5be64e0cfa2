#!/usr/bin/perl
# Privileges ([server] user, group): started as root, the master binds and
# stays root; its workers run as the configured user and group, every id
# (real, effective, saved, filesystem) and the supplementary groups, with
# no capabilities and no_new_privs, as /proc/PID/status shows; they
# serve; they reopen their log after USR1 (the master gives the new file
# to them); a reload can switch them to another user; a worker whose drop
# fails (its user was deleted, userdel, after the start) refuses to run
# rather than serve as root; -t refuses unknown users and groups, root,
# and a group without a user. Needs root (CI runs as root); skipped
# otherwise.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

plan skip_all => 'needs root (started as root, the master drops the workers to a user)' if $> != 0;

my @nobody = getpwnam('nobody') or plan skip_all => 'no user nobody';
my $NOGROUP = getgrnam('nogroup') // getgrnam('nobody');
my $GNAME = defined getgrnam('nogroup') ? 'nogroup' : 'nobody';
my ($UID, $GID) = ($nobody[2], $NOGROUP);

sub status_of($pid) {
    open my $fh, '<', "/proc/$pid/status" or return {};
    my %s;
    while (my $l = <$fh>) { $s{$1} = $2 if $l =~ /^(\w+):\s*(.*?)\s*$/ }
    return \%s;
}

my $t = Apiary::Test->new(
    config => { server => { workers => 2, user => 'nobody', group => $GNAME } },
    name => '64-privdrop.t',
);
# The workers reopen the error log in the test directory after USR1.
chmod 0755, $t->testdir;
$t->run;

my @w = $t->worker_pids;
is(scalar @w, 2, 'two workers');
for my $pid (@w) {
    my $s = status_of($pid);
    is($s->{Uid}, "$UID\t$UID\t$UID\t$UID", "worker $pid: Uid (real, effective, saved, fs) is nobody's");
    is($s->{Gid}, "$GID\t$GID\t$GID\t$GID", "worker $pid: Gid is $GNAME\'s");
    ok(!grep({ $_ == 0 } split ' ', $s->{Groups} // ''), "worker $pid: no supplementary group root")
        or diag("Groups: $s->{Groups}");
    is($s->{CapEff}, '0000000000000000', "worker $pid: no effective capability");
    is($s->{CapPrm}, '0000000000000000', "worker $pid: no permitted capability (no way back)");
    is($s->{NoNewPrivs}, '1', "worker $pid: no_new_privs");
}
my $ms = status_of($t->master_pid);
like($ms->{Uid}, qr/^0\t0\t0\t0$/, 'the master stays root (it binds listeners on reload)');
is($t->get('/live')->{status}, 200, 'the workers serve');
unlike($t->log_text, qr/"level":"(crit|alert)"/, 'no failed drop in the log');
unlike($t->log_text, qr/workers run as root/, 'no warning about root workers');

# USR1: the master reopens first and gives the new file to the workers,
# which can then reopen it.
{
    my $log = $t->error_log;
    rename $log, "$log.1" or die "rename: $!";
    $t->reopen;
    ok(wait_for(sub { -e $log }, timeout => 5), 'USR1: a new error log');
    my @st = stat $log;
    is("$st[4]:$st[5]", "$UID:$GID", '... owned by the workers\' user and group');
    sleep 0.3;
    # A worker writes a line: a request it refuses.
    $t->http("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    ok(wait_for(sub { ($t->read_file($log) // '') =~ /"proc":"worker".*client error 400/ }, timeout => 5),
        '... and a worker writes to it');
    unlike($t->read_file($log) // '', qr/reopening the error log failed/, 'no worker failed to reopen it');
}

# A reload may switch the workers to another user.
SKIP: {
    my @d = getpwnam('daemon');
    skip 'no user daemon', 4 unless @d && $d[2] != 0 && $d[3] != 0;
    $t->write_config(config => { server => { workers => 2, user => 'daemon' } });
    my ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 30 });
    is($code, 0, 'reload to user daemon') or diag($err);
    my @nw = $t->worker_pids;
    is(scalar @nw, 2, 'two new workers');
    is(scalar(grep { (status_of($_)->{Uid} // '') eq "$d[2]\t$d[2]\t$d[2]\t$d[2]" } @nw), 2,
        'both run as daemon');
    is(scalar(grep { (status_of($_)->{Gid} // '') eq "$d[3]\t$d[3]\t$d[3]\t$d[3]" } @nw), 2,
        '... with its primary group (no group given)');
}
$t->stop;

# A drop that fails is no reason to serve as root: the user disappears
# (userdel) after the start; a replacement worker cannot take its groups,
# refuses to run, and is restarted with back-off, never serving as root.
SKIP: {
    skip 'no useradd/userdel', 6 unless -x '/usr/sbin/useradd' && -x '/usr/sbin/userdel';
    my $name = "aptest$$";
    skip "user $name exists", 6 if getpwnam($name);
    system('/usr/sbin/useradd', '--system', '--no-create-home', '--home-dir', '/nonexistent',
        '--shell', '/usr/sbin/nologin', $name) == 0 or skip 'useradd failed', 6;
    my $uid = (getpwnam($name))[2];
    my $gone = 0;
    # -f: the workers still run as the user.
    my $cleanup = sub { system("/usr/sbin/userdel -f $name >/dev/null 2>&1") unless $gone++ };
    my $d = eval {
        my $x = Apiary::Test->new(
            config => { server => { workers => 2, user => $name, min_uptime => '1s' } },
            allow_log => qr/refusing to run as root/,
            name => '64-privdrop.t (user removed)',
        );
        chmod 0755, $x->testdir;
        $x->run;
        $x;
    };
    if (!$d) { $cleanup->(); die $@ }
    my @before = $d->worker_pids;
    is(scalar(grep { (status_of($_)->{Uid} // '') =~ /^$uid\t/ } @before), 2, "workers run as $name");
    $cleanup->();
    ok(!defined getpwnam($name), "$name removed");
    kill 'KILL', $before[0];
    # A new worker is root for an instant, between fork and the drop; one
    # still root after 0.5 s would be serving as root.
    my (%root_since, $stayed_root);
    my $refused = wait_for(sub {
        for my $p (grep { $_ != $before[0] } $d->worker_pids) {
            if ((status_of($p)->{Uid} // '') =~ /^0\t/) {
                $root_since{$p} //= time;
                $stayed_root++ if time - $root_since{$p} > 0.5;
            }
        }
        $d->log_text =~ /initgroups\(\) for user \\"\Q$name\E\\" failed: refusing to run as root/;
    }, timeout => 10, interval => 0.05);
    ok($refused, 'the replacement worker refuses to run as root, and says why') or diag($d->log_tail(20));
    ok(!$stayed_root, 'no worker stays root');
    is($d->get('/live')->{status}, 200, 'the remaining worker serves meanwhile');
    like($d->log_text, qr/worker \d+ \(pid \d+\) exited with status 2/, 'the refusing worker exits 2');
    $d->stop;
}

# Without user: the workers stay root, and the master says so.
{
    my $r = Apiary::Test->new(config => { server => { workers => 1 } }, name => '64-privdrop.t (root)');
    $r->run;
    my ($pid) = $r->worker_pids;
    like(status_of($pid)->{Uid}, qr/^0\t/, 'no server.user: the worker runs as root');
    like($r->log_text, qr/workers run as root: set server\.user/, '... and the master notes it');
    $r->stop;
}

# -t.
my $bad = Apiary::Test->new(raw => "[server]\nlisten = 127.0.0.1:%%PORT_0%%\nuser = no_such_user_x\n",
    name => '64-privdrop.t (-t)');
my ($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
is($code, 1, '-t refuses an unknown user');
like($err, qr/apiary\.conf:3: server\.user: unknown user "no_such_user_x"/, '... at its line') or diag($err);
$bad->write_config(raw => "[server]\nuser = nobody\ngroup = no_such_group_x\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
like($err, qr/apiary\.conf:3: server\.group: unknown group "no_such_group_x"/, 'an unknown group')
    or diag($err);
$bad->write_config(raw => "[server]\ngroup = $GNAME\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
like($err, qr/apiary\.conf:2: server\.group: needs server\.user/, 'a group without a user') or diag($err);
$bad->write_config(raw => "[server]\nuser = root\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
like($err, qr/apiary\.conf:2: server\.user: "root" is root/, 'user root refused') or diag($err);
$bad->write_config(raw => "[server]\nuser = nobody\ngroup = root\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
like($err, qr/apiary\.conf:3: server\.group: workers must not run with group root/, 'group root refused')
    or diag($err);
$bad->write_config(raw => "[server]\nlisten = 127.0.0.1:%%PORT_0%%\nuser = $UID\ngroup = $GID\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
is($code, 0, 'numeric user and group ids are accepted') or diag($err);

done_testing;
