#!/usr/bin/perl
# Binary upgrade (issue 5, DESIGN.md 2): "apiary -s upgrade" under a
# continuous load of keep-alive and fresh connections loses no request;
# the new master's pid is in the pidfile, no .oldbin is left, every worker
# is new; the binary on disk is what runs (also after a package manager
# renamed a new file over it). An upgrade to a binary that exits at start
# fails: the old master keeps serving and restores its pidfile. Socket
# activation: apiary started with LISTEN_FDS serves on the socket it was
# given without binding one itself.
#
# The new master of an upgrade is forked by the old one; this test process
# makes itself a subreaper, so that once the old master is gone the new one
# is its child, which the harness then runs and stops (adopt_master).

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Copy ();
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

# Masters started by an upgrade and not (yet) adopted: stopped at the end
# whatever happens (checked by start time, so a reused pid is never hit).
my @STRAY;
END {
    for my $s (@STRAY) {
        my ($pid, $start) = @$s;
        my $st = proc_stat($pid);
        next unless $st && $st->{starttime} == $start && proc_alive($pid);
        kill 'TERM', $pid;
        my $deadline = time + 5;
        sleep 0.05 while time < $deadline && proc_alive($pid);
        kill 'KILL', $pid if proc_alive($pid);
        waitpid($pid, 0);
    }
}

sub remember_master($pid) {
    my $st = proc_stat($pid) or return;
    push @STRAY, [$pid, $st->{starttime}];
}

sub live($t, %o) {
    my $r = eval { $t->get('/live', timeout => 2, %o) };
    return $r && $r->{status} == 200 ? $r : undef;
}

sub disjoint($x, $y) {
    my %y = map { $_ => 1 } @$y;
    return !grep { $y{$_} } @$x;
}

sub same_set($x, $y) { join(' ', sort { $a <=> $b } @$x) eq join(' ', sort { $a <=> $b } @$y) }

sub load_ok($res, $name) {
    ok($res->{fail} == 0 && $res->{keepalive_ok} > 0 && $res->{fresh_ok} > 0,
        "$name: no failed request ($res->{ok} ok: $res->{keepalive_ok} keep-alive, "
        . "$res->{fresh_ok} fresh; $res->{fail} failed)")
        or diag(join("\n", 'first failures:', @{$res->{errors}}));
}

# Installs a file as $path the way a package manager does: written next to
# it, then renamed over it (a running binary cannot be written in place).
sub install_over($src_or_text, $path, %o) {
    my $tmp = "$path.new.$$";
    if ($o{text}) {
        open my $fh, '>', $tmp or die "open $tmp: $!";
        print {$fh} $src_or_text;
        close $fh or die "close $tmp: $!";
    } else {
        File::Copy::copy($src_or_text, $tmp) or die "copy $src_or_text: $!";
    }
    chmod 0755, $tmp or die "chmod $tmp: $!";
    rename $tmp, $path or die "rename $tmp: $!";
}

# A copy of the binary in the test directory, made the one the harness
# starts.
sub use_copy($t) {
    my $copy = $t->testdir . '/apiary';
    install_over($ENV{APIARY_BIN}, $copy);
    $t->set_bin($copy);
    return $copy;
}

# "-s upgrade", then: the new master in the pidfile, the old one gone
# (reaped), the new one adopted. Returns the new master's pid (or undef).
sub upgrade_ok($t, $name) {
    my $old = $t->master_pid;
    my $oldbin = $t->pidfile . '.oldbin';
    my $t0 = time;
    my ($code, $out, $err) = $t->cli('-s', 'upgrade', { timeout => 40 });
    my $took = time - $t0;
    my $new = $t->pidfile_pid;
    remember_master($new) if $new && $new != $old;
    is($code, 0, sprintf('%s: -s upgrade exits 0 (%.2f s)', $name, $took)) or diag($out . $err);
    ok($new && $new != $old, "$name: the pidfile holds a new master pid") or diag('pidfile: ' . ($new // 'none'));
    my $st = $t->wait_exit(20);
    is($st, 0, "$name: the old master quits gracefully (exit 0)");
    ok(!-e $oldbin, "$name: no .oldbin left");
    is($t->pidfile_pid, $new, "$name: the pidfile still holds the new master");
    return undef unless $new && $new != $old && defined $st;
    ok($t->adopt_master($new), "$name: the new master is running (a child of this subreaper)")
        or return undef;
    return $new;
}

ok(Apiary::Test::become_subreaper(), 'this test process is a subreaper')
    or BAIL_OUT('prctl(PR_SET_CHILD_SUBREAPER) failed: the new master of an upgrade could not be stopped');

# ---------------------------------------------------------------------------
# Two upgrades under a 20 s load: the binary unchanged, then the binary on
# disk replaced by a new file (as a package upgrade does).
# ---------------------------------------------------------------------------

{
    my $N = 2;
    my $t = Apiary::Test->new(
        config => { server => { workers => $N, shutdown_timeout => '10s', min_uptime => '500ms' } },
        name => '22-upgrade.t (under load)');
    my $copy = use_copy($t);
    $t->run;
    my $m0 = $t->master_pid;
    my @w0 = $t->worker_pids;
    is(scalar @w0, $N, "$N workers");

    my $load = $t->load(seconds => 21, keepalive => 2, fresh => 2);
    sleep 3;
    my $m1 = upgrade_ok($t, 'upgrade 1');
    my @w1 = $t->worker_pids;
    is(scalar @w1, $N, "upgrade 1: $N workers of the new master");
    ok(disjoint(\@w1, \@w0), 'upgrade 1: every worker is new') or diag("before @w0; now @w1");
    ok(!grep({ proc_alive($_) } @w0), 'upgrade 1: the old workers are gone');
    my $j = $t->status_json;
    is($j && $j->{master}{pid}, $m1, 'upgrade 1: status shows the new master');

    sleep 3;
    install_over($ENV{APIARY_BIN}, $copy);
    my $m2 = upgrade_ok($t, 'upgrade 2 (binary on disk replaced)');
    is($m2 && readlink("/proc/$m2/exe"), $copy, 'upgrade 2: the new master runs the file now on disk');
    my @w2 = $t->worker_pids;
    is(scalar @w2, $N, "upgrade 2: $N workers of the new master");
    ok(disjoint(\@w2, [@w0, @w1]), 'upgrade 2: every worker is new') or diag("before @w1; now @w2");

    my $res = $load->finish;
    cmp_ok($load->elapsed, '>=', 20, 'the load ran for at least 20 s');
    load_ok($res, 'two upgrades under load');
    ok(live($t), 'the new master serves');
    is($t->stop, 0, 'TERM: the new master exits 0');
    ok(!-e $t->pidfile, 'TERM: pidfile removed');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# An upgrade to a binary that exits at start.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 2, min_uptime => '500ms' } },
        name => '22-upgrade.t (new binary exits at start)');
    my $copy = use_copy($t);
    $t->run;
    my $m = $t->master_pid;
    my @w = $t->worker_pids;
    my $ran = $t->testdir . '/stand-in.ran';
    install_over("#!/bin/sh\necho \"\$\$ \$*\" > '$ran'\nexit 1\n", $copy, text => 1);

    my $load = $t->load(seconds => 5, keepalive => 1, fresh => 1);
    sleep 0.5;
    my ($code, $out, $err) = $t->cli('-s', 'upgrade', { timeout => 40 });
    isnt($code, 0, '-s upgrade exits non-zero') or diag($out . $err);
    ok(-e $ran, 'the stand-in on disk was run (and exited 1)');
    like($out . $err, qr/\S/, '-s upgrade says why') ;
    my $new = $t->pidfile_pid;
    remember_master($new) if $new && $new != $m;
    is($new, $m, 'the pidfile is restored: it holds the old master');
    ok(!-e $t->pidfile . '.oldbin', 'no .oldbin left');
    ok(!defined $t->wait_exit(0), 'the old master keeps running');
    ok(same_set([$t->worker_pids], \@w), 'its workers keep running');
    ok(live($t), 'the old master keeps serving');
    my $j = $t->status_json;
    is($j && $j->{master}{pid}, $m, 'status: the old master');
    load_ok($load->finish, 'failed upgrade');

    # A working binary afterwards: the upgrade goes through.
    install_over($ENV{APIARY_BIN}, $copy);
    my $m2 = upgrade_ok($t, 'a working binary afterwards');
    ok($m2 && live($t), 'a working binary afterwards: the new master serves');
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

# ---------------------------------------------------------------------------
# Socket activation: a launcher binds the socket, puts it at descriptor 3,
# sets LISTEN_FDS=1 and LISTEN_PID to its own pid, and execs apiary.
# ---------------------------------------------------------------------------

{
    my $t = Apiary::Test->new(config => { server => { workers => 2 } },
        name => '22-upgrade.t (LISTEN_FDS)');
    my $inode_file = $t->testdir . '/listen.inode';
    my $launcher = $t->write_file('launch.pl', <<'PERL');
#!/usr/bin/perl
# Binds the socket systemd would, and execs apiary with it at fd 3.
use strict;
use warnings;
use Fcntl qw(F_SETFD);
use IO::Socket::INET ();
use POSIX ();
my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $ENV{LAUNCH_PORT},
    Proto => 'tcp', Listen => 128, ReuseAddr => 1) or die "launcher: bind: $!\n";
my $ino = (stat $s)[1];
if (fileno($s) != 3) {
    POSIX::dup2(fileno($s), 3) or die "launcher: dup2: $!\n";
}
open(my $fd3, '+<&=', 3) or die "launcher: fd 3: $!\n";
fcntl($fd3, F_SETFD, 0) or die "launcher: fcntl: $!\n";
open my $fh, '>', $ENV{LAUNCH_INODE_FILE} or die "launcher: $!\n";
print {$fh} "$ino\n";
close $fh;
$ENV{LISTEN_FDS} = 1;
$ENV{LISTEN_PID} = $$;
$ENV{LISTEN_FDNAMES} = 'http';
delete @ENV{qw(LAUNCH_PORT LAUNCH_INODE_FILE LAUNCH_BIN)};
my $bin = $ENV{LAUNCH_APIARY};
delete $ENV{LAUNCH_APIARY};
exec { $bin } $bin, @ARGV or die "launcher: exec $bin: $!\n";
PERL
    chmod 0755, $launcher or die "chmod: $!";
    $t->set_env(LAUNCH_PORT => $t->port, LAUNCH_INODE_FILE => $inode_file, LAUNCH_APIARY => $ENV{APIARY_BIN});
    $t->set_bin($launcher);
    $t->run;
    my $m = $t->master_pid;
    my $ino = ($t->read_file($inode_file) // '') =~ /^(\d+)/ ? $1 : undef;
    ok($ino, "the launcher bound the socket (inode " . ($ino // '?') . ')');
    ok(live($t), 'apiary serves on the inherited socket');
    my %fds = proc_fds($m);
    is($fds{3}, "socket:[$ino]", 'the master holds the inherited socket at descriptor 3') if $ino;
    my $listening = listening_inodes($t->port);
    is(join(' ', sort keys %$listening), $ino // '',
        'the only socket listening on the port is the inherited one (apiary bound none itself)');
    ok(scalar(grep { ($_->{msg} // '') =~ /1 listening sockets? inherited/ } $t->log_records),
        'the log says one socket was inherited');
    for my $w ($t->worker_pids) {
        my %wfd = proc_fds($w);
        ok(scalar(grep { $_ eq "socket:[$ino]" } values %wfd), "worker $w accepts on the inherited socket")
            if $ino;
    }
    ok(live($t, port => $t->admin_port), 'the admin listener (bound by apiary) answers');
    is($t->stop, 0, 'TERM exits 0');
    $t->teardown;
}

done_testing;
