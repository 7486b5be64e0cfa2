#!/usr/bin/perl
# systemd's notification protocol (issue 5): the test makes its own
# NOTIFY_SOCKET (a datagram socket in the test directory), starts apiary
# with it, and checks the messages in order: READY=1 with STATUS= once the
# workers are ready; on HUP, RELOADING=1 with MONOTONIC_USEC= (in the same
# message, as systemd requires) and then READY=1; on a binary upgrade,
# MAINPID= with the new master's pid, and nothing from the old master that
# systemd would take for the service stopping; on TERM, STOPPING=1.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::UNIX ();
use Socket qw(SOCK_DGRAM);
use Test::More;
use Time::HiRes qw(time sleep clock_gettime CLOCK_MONOTONIC);
use Apiary::Test qw(:all);

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

ok(Apiary::Test::become_subreaper(), 'this test process is a subreaper')
    or BAIL_OUT('prctl(PR_SET_CHILD_SUBREAPER) failed: the new master of an upgrade could not be stopped');

my $t = Apiary::Test->new(config => { server => { workers => 2, min_uptime => '500ms' } },
    name => '25-systemd.t');
my $path = $t->testdir . '/notify.sock';
my $ns = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path)
    or die "cannot bind the notify socket $path: $!";

# Datagrams received so far (each one message, possibly several lines).
my @ALL;

# Reads datagrams until one satisfies $cond (or the timeout); returns the
# ones read by this call, the matching one last.
sub read_until($cond, $timeout) {
    my @got;
    my $deadline = time + $timeout;
    while (1) {
        my $left = $deadline - time;
        last if $left <= 0;
        my $rin = '';
        vec($rin, fileno($ns), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $left);
        next if $n < 0 && $!{EINTR};
        last if $n <= 0;
        defined $ns->recv(my $msg, 65536) or last;
        push @got, $msg;
        push @ALL, $msg;
        last if $cond->($msg);
    }
    return @got;
}

sub has($msg, $line) { scalar grep { $_ eq $line } split /\n/, $msg }
sub field($msg, $name) { (map { /^\Q$name\E=(.*)$/ ? $1 : () } split /\n/, $msg)[0] }
sub show(@m) { join(' | ', map { s/\n/\\n/gr } @m) }

$t->set_env(NOTIFY_SOCKET => $path);
$t->run;

# --- start-up ---------------------------------------------------------------
my @m = read_until(sub ($m) { has($m, 'READY=1') }, 10);
ok(@m && has($m[-1], 'READY=1'), 'start: READY=1') or diag('received: ' . show(@m));
ok(@m && grep({ defined field($_, 'STATUS') && field($_, 'STATUS') ne '' } @m),
    'start: a STATUS= line with READY=1 or before it') or diag('received: ' . show(@m));
ok(!grep({ has($_, 'RELOADING=1') || has($_, 'STOPPING=1') } @m), 'start: nothing else before READY=1')
    or diag('received: ' . show(@m));
my $j = $t->status_json;
is($j && $j->{master}{ready_workers}, 2, 'start: the workers are ready');

# --- HUP -------------------------------------------------------------------
my @old = $t->worker_pids;
my $mono0 = clock_gettime(CLOCK_MONOTONIC);
$t->reload;
my $mono1 = clock_gettime(CLOCK_MONOTONIC);
@m = read_until(sub ($m) { has($m, 'READY=1') }, 10);
ok(@m >= 2, 'HUP: two messages or more') or diag('received: ' . show(@m));
ok(@m && has($m[0], 'RELOADING=1'), 'HUP: the first is RELOADING=1') or diag('received: ' . show(@m));
my $usec = @m ? field($m[0], 'MONOTONIC_USEC') : undef;
ok(defined $usec && $usec =~ /^\d+$/, 'HUP: with MONOTONIC_USEC=<number> in the same message')
    or diag('received: ' . show(@m));
ok(defined $usec && $usec =~ /^\d+$/ && $usec >= ($mono0 - 1) * 1e6 && $usec <= ($mono1 + 2) * 1e6,
    sprintf('HUP: MONOTONIC_USEC is CLOCK_MONOTONIC at the reload (%s, now %.0f)', $usec // 'none', $mono1 * 1e6));
ok(@m && has($m[-1], 'READY=1') && !has($m[-1], 'RELOADING=1'), 'HUP: then READY=1 when the reload is done')
    or diag('received: ' . show(@m));
ok(!grep({ has($_, 'STOPPING=1') } @m), 'HUP: no STOPPING=1');
ok(wait_for(sub { my @w = $t->worker_pids; @w == 2 && !grep { my $o = $_; grep { $_ == $o } @old } @w }, timeout => 5),
    'HUP: the workers were replaced');

# --- binary upgrade -----------------------------------------------------------
my $m0 = $t->master_pid;
my ($code, $out, $err) = $t->cli('-s', 'upgrade', { timeout => 40 });
is($code, 0, 'upgrade: -s upgrade exits 0') or diag($out . $err);
my $new = $t->pidfile_pid;
if ($new && $new != $m0 && (my $st = proc_stat($new))) { push @STRAY, [$new, $st->{starttime}] }
@m = read_until(sub ($m) { defined field($m, 'MAINPID') }, 10);
my $mainpid = @m ? field($m[-1], 'MAINPID') : undef;
ok(defined $mainpid, 'upgrade: MAINPID=') or diag('received: ' . show(@m));
ok($new && $new != $m0, 'upgrade: a new master');
is($mainpid, $new, 'upgrade: MAINPID= is the new master pid');
my $exit = $t->wait_exit(20);
is($exit, 0, 'upgrade: the old master quits (exit 0)');
my @after = read_until(sub { 0 }, 0.5);
ok(!grep({ has($_, 'STOPPING=1') } @after),
    'upgrade: no STOPPING=1 after MAINPID= (from the old master: under NotifyAccess=all systemd would stop the service)')
    or diag('after MAINPID: ' . show(@after));
ok(defined $exit && $new && $t->adopt_master($new), 'upgrade: the new master runs');

# --- TERM ------------------------------------------------------------------
if ($t->master_pid) {
    $t->signal('TERM');
    @m = read_until(sub ($m) { has($m, 'STOPPING=1') }, 5);
    ok(@m && has($m[-1], 'STOPPING=1'), 'TERM: STOPPING=1') or diag('received: ' . show(@m));
    ok(!grep({ has($_, 'READY=1') || has($_, 'RELOADING=1') } @m), 'TERM: nothing else before it')
        or diag('received: ' . show(@m));
    is($t->wait_exit(10), 0, 'TERM: the master exits 0');
} else {
    fail('TERM: no master to stop');
}
diag('all messages: ' . show(@ALL)) if $ENV{APIARY_TEST_VERBOSE};
$t->teardown;

done_testing;
