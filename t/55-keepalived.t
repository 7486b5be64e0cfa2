#!/usr/bin/perl
# A keepalived/VRRP pair for real: network namespaces for node A, node B
# and a client, joined by veth pairs to a bridge that lives in a namespace
# of its own, on 10.234.0.0/24 (nothing is ever configured on the host's
# own interfaces). Each node runs apiary, as the unprivileged user nobody,
# bound to the VIP with the freebind flag, and keepalived with
# contrib/keepalived/keepalived.conf (only its $NAME definitions changed):
# vrrp_script "apiary check --ready" as script_user nobody, weight 0 (a
# failing node goes to FAULT), nopreempt. The client requests the VIP
# every 20 ms, each request on a new connection.
#
# Scenarios, each printing the failed requests and the failover time:
#   1. apiary -s drain on the MASTER (A): the VIP moves to B within
#      interval x fall + 2 s; the client sees no failure (A serves until the
#      VIP has left, then B, already bound, serves at once).
#   2. A comes back: with nopreempt, A becomes BACKUP and the VIP stays on
#      B; no failure.
#   3. kill -9 of apiary's master on the MASTER (B): the check fails at
#      once (nobody answers on the control socket), the VIP moves to A
#      within interval x fall + 2 s. Then B comes back as BACKUP.
# Also checked: the script user reaches apiary's control socket because
# apiary runs as that same user; an apiary running as root turns it away
# (the trade-off in contrib/keepalived/README.md), and keepalived
# complains about no script (it silently tracks nothing when it does).
#
# Needs root (namespaces, keepalived) and keepalived and iproute2 installed
# (contrib/dev/deps test). Skipped when not root or when network namespaces
# cannot be created, except with CI set (CI=true), where it fails instead.
# Everything it creates (namespaces, and with them the veths and the
# bridge, processes, the temporary directory) is removed at the end, on
# failure and on Ctrl-C too.
#
# Environment: APIARY_BIN (required), APIARY_TEST_KEEP=1 keeps the
# temporary directory (logs, configurations), APIARY_TEST_VERBOSE=1 prints
# the logs at the end even on success.

use v5.36;
use Cwd ();
use FindBin;
use File::Copy ();
use File::Temp ();
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(time sleep);

$SIG{PIPE} = 'IGNORE';
$SIG{INT}  = sub { exit 130 };
$SIG{TERM} = sub { exit 143 };

my $SRCDIR = $ENV{APIARY_SRCDIR} // Cwd::abs_path("$FindBin::Bin/..");
my $SAMPLE = "$SRCDIR/contrib/keepalived/keepalived.conf";
my $NOTIFY = "$SRCDIR/contrib/keepalived/apiary-notify";

my $NET     = '10.234.0';
my $VIP     = "$NET.10";
my $PORT    = 8080;
my %ADDR    = (a => "$NET.11", b => "$NET.12", c => "$NET.100");
my $CLIENT_EVERY_MS = 20;
my $DRAIN_DELAY = 5;    # seconds; longer than the failover bound

sub ci() {
    my $ci = $ENV{CI} // '';
    return $ci ne '' && $ci ne '0' && lc $ci ne 'false';
}

# Skips, or fails when CI is set: the two reasons the test may not run.
sub cannot_run($why) {
    if (ci()) {
        fail("keepalived test cannot run with CI set: $why");
        done_testing();
        exit 1;
    }
    plan skip_all => $why;
}

# A prerequisite missing on a machine that could run the test: a failure,
# not a skip.
sub missing($what) {
    fail($what);
    done_testing();
    exit 1;
}

cannot_run('needs root: network namespaces, veth, keepalived (run as root, as CI does)') if $> != 0;

my $BIN = $ENV{APIARY_BIN};
missing('APIARY_BIN is not set') unless $BIN;
$BIN = Cwd::abs_path($BIN) // $BIN;
missing("APIARY_BIN $BIN is not executable") unless -x $BIN;

sub which($prog) {
    for my $d (split(/:/, $ENV{PATH} // ''), qw(/usr/sbin /usr/bin /sbin /bin)) {
        return "$d/$prog" if $d ne '' && -x "$d/$prog";
    }
    return undef;
}
my %TOOL;
for my $t (qw(ip keepalived setpriv)) {
    $TOOL{$t} = which($t) // missing("$t not found (install iproute2, keepalived and util-linux: contrib/dev/deps test)");
}
missing("$SAMPLE not found") unless -r $SAMPLE;
missing("$NOTIFY is not executable") unless -x $NOTIFY;

my @NOBODY = getpwnam('nobody');
missing('no user nobody') unless @NOBODY;
my ($NOBODY_UID, $NOBODY_GID) = @NOBODY[2, 3];

# The environment of everything started here: no APIARY_* override from
# the caller reaches the daemons or the checks keepalived runs.
my %CHILD_ENV = (PATH => '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL => 'C');
for my $k (grep { /^(ASAN|UBSAN|LSAN|TSAN)_OPTIONS$/ } keys %ENV) {
    $CHILD_ENV{$k} = $ENV{$k};
}

# ---------------------------------------------------------------------------
# Processes: everything started is remembered by pid and start time, and
# only those are ever signalled.
# ---------------------------------------------------------------------------

my %STARTED;    # pid => {what, start}
my $DIR;        # the temporary directory
my %NS;         # role => namespace name, once created
my $CLEANED = 0;

sub proc_stat($pid) {
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my $line = <$fh> // return undef;
    my $rp = rindex($line, ')');
    return undef if $rp < 0;
    my @f = split ' ', substr($line, $rp + 2);
    return {state => $f[0], ppid => $f[1], start => $f[19]};
}

# True while the process we know by (pid, start time) runs.
sub same_alive($pid, $start) {
    my $st = proc_stat($pid) or return 0;
    return $st->{start} eq $start && $st->{state} ne 'Z' && $st->{state} ne 'X';
}

sub reap() {
    while ((my $p = waitpid(-1, WNOHANG)) > 0) {
        $STARTED{$p}{status} = $? if $STARTED{$p};
    }
}

# Forks and execs @$cmd with stdout and stderr appended to $log. Returns
# the pid.
sub spawn($what, $cmd, $log) {
    open my $out, '>>', $log or die "open $log: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $out;
        open STDERR, '>&', $out;
        %ENV = %CHILD_ENV;
        { no warnings qw(exec); exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }
    close $out;
    my $st = proc_stat($pid);
    $STARTED{$pid} = {what => $what, start => $st ? $st->{start} : ''};
    return $pid;
}

# Waits (at most $timeout s) for a process started here to exit; returns
# its wait status, or undef if it still runs.
sub wait_pid($pid, $timeout) {
    my $deadline = time + $timeout;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) {
            $STARTED{$pid}{status} = $?;
            return $?;
        }
        return $STARTED{$pid}{status} if $r < 0;    # reaped already
        return undef if time > $deadline;
        sleep 0.02;
    }
}

# Stops a process started here: $sig, then KILL after $grace seconds.
sub stop_pid($pid, $sig = 'TERM', $grace = 5) {
    my $s = $STARTED{$pid} or return;
    return if defined $s->{status};
    kill $sig, $pid if same_alive($pid, $s->{start});
    return if defined wait_pid($pid, $grace);
    kill 'KILL', $pid if same_alive($pid, $s->{start});
    wait_pid($pid, 5);
}

# Runs a command to completion (bounded); returns (exit code, output).
sub run($cmd, %o) {
    my $log = "$DIR/cmd.out";
    unlink $log;
    my $pid = spawn(join(' ', @$cmd), $cmd, $log);
    my $status = wait_pid($pid, $o{timeout} // 10);
    if (!defined $status) {
        kill 'KILL', $pid;
        wait_pid($pid, 5);
        $status = -1;
    }
    delete $STARTED{$pid};
    my $out = slurp($log) // '';
    my $code = $status < 0 ? -1 : ($status & 127) ? 128 + ($status & 127) : $status >> 8;
    return ($code, $out);
}

# As run(), but a failure ends the test.
sub must(@cmd) {
    my ($code, $out) = run(\@cmd);
    die "\"@cmd\" failed (exit $code): $out" if $code != 0;
    return $out;
}

sub slurp($path) {
    open my $fh, '<', $path or return undef;
    local $/;
    return scalar <$fh>;
}

sub spew($path, $text) {
    open my $fh, '>', $path or die "write $path: $!";
    print $fh $text;
    close $fh or die "close $path: $!";
}

# ---------------------------------------------------------------------------
# Teardown: on every exit, including die and Ctrl-C.
# ---------------------------------------------------------------------------

sub show_logs() {
    return unless $DIR && -d $DIR;
    for my $f (sort glob("$DIR/*/*.log"), glob("$DIR/client-*.log")) {
        my $text = slurp($f) // next;
        my @lines = split /\n/, $text;
        my $n = $f =~ /client-/ ? 15 : 60;
        @lines = @lines[-$n .. -1] if @lines > $n;
        diag("--- $f (last " . scalar(@lines) . " lines)");
        diag("  $_") for @lines;
    }
}

sub cleanup() {
    return if $CLEANED++;
    # The client first, then keepalived (which removes the VIP on the way
    # out), then apiary, then anything left in our namespaces.
    my %rank = (client => 0, keepalived => 1, apiary => 2);
    my $rank = sub ($pid) { $STARTED{$pid}{what} =~ /^([a-z]+)-/ ? $rank{$1} // 3 : 3 };
    my @order = sort { $rank->($a) <=> $rank->($b) } keys %STARTED;
    for my $pid (@order) {
        next if defined $STARTED{$pid}{status};
        stop_pid($pid, $STARTED{$pid}{what} =~ /^apiary/ ? 'QUIT' : 'TERM', 5);
    }
    # Processes still in one of our namespaces (orphaned workers): these
    # namespaces are private to this test, so all of them are ours.
    for my $role (sort keys %NS) {
        for my $try (1 .. 3) {
            my $pids = `$TOOL{ip} netns pids $NS{$role} 2>/dev/null` // '';
            my @p = grep { /^\d+$/ } split /\s+/, $pids;
            last unless @p;
            diag("killing what is left in namespace $NS{$role}: @p") if $try == 1;
            kill 'KILL', @p;
            sleep 0.2;
            reap();
        }
        system($TOOL{ip}, 'netns', 'del', $NS{$role}) == 0
            or diag("ip netns del $NS{$role} failed");
    }
    my $left = `$TOOL{ip} netns list 2>/dev/null` // '';
    for my $role (sort keys %NS) {
        diag("namespace $NS{$role} is still there") if $left =~ /^\Q$NS{$role}\E\b/m;
    }
    reap();
}

END {
    my $code = $?;
    if ($DIR) {
        my $passing = Test::More->builder->is_passing;
        show_logs() if !$passing || $code != 0 || $ENV{APIARY_TEST_VERBOSE};
        cleanup();
        diag("kept $DIR") if $ENV{APIARY_TEST_KEEP};
    }
    $? = $code;
}

# ---------------------------------------------------------------------------
# The network.
# ---------------------------------------------------------------------------

$DIR = File::Temp::tempdir('apiary-keepalived-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{APIARY_TEST_KEEP});
chmod 0755, $DIR or die "chmod $DIR: $!";

# Namespaces unavailable (an unprivileged container, no CONFIG_NET_NS):
# the one reason besides root to skip.
{
    my $probe = "apiary-t55-probe-$$";
    my ($code, $out) = run([$TOOL{ip}, 'netns', 'add', $probe]);
    if ($code != 0) {
        $out =~ s/\s+\z//;
        cannot_run("network namespaces are unavailable: ip netns add: $out");
    }
    run([$TOOL{ip}, 'netns', 'del', $probe]);
}

# apiary and keepalived's scripts run as nobody: the test directory, the
# binary and the notify script must be within its reach (a checkout under
# /root is not: then the two are copied into the test directory).
sub as_nobody(@cmd) {
    return ($TOOL{setpriv}, "--reuid=$NOBODY_UID", "--regid=$NOBODY_GID", '--clear-groups', '--', @cmd);
}
sub nobody_can_run($path) { return (run([as_nobody('test', '-x', $path)]))[0] == 0 }
nobody_can_run($DIR)
    or die "the user nobody cannot reach $DIR: set TMPDIR to a directory every user may traverse, e.g. /tmp";
for my $file (\$BIN, \$NOTIFY) {
    next if nobody_can_run($$file);
    mkdir "$DIR/bin", 0755 unless -d "$DIR/bin";
    my $copy = "$DIR/bin/" . ($$file =~ s{.*/}{}r);
    File::Copy::copy($$file, $copy) or die "copy $$file to $copy: $!";
    chmod 0755, $copy or die "chmod $copy: $!";
    diag("nobody cannot run $$file: using a copy, $copy");
    $$file = $copy;
}

# Short names (an interface name is 15 bytes at most; namespaces need not
# be, but stay readable).
for my $role (qw(sw a b c)) {
    my $name = "apiary-t55-$$-$role";
    must($TOOL{ip}, 'netns', 'add', $name);
    $NS{$role} = $name;
}
sub nsip($role, @args) { return must($TOOL{ip}, '-n', $NS{$role}, @args) }

nsip('sw', qw(link add br0 type bridge));
nsip('sw', qw(link set br0 up));
for my $role (qw(a b c)) {
    # The veth is made inside the bridge's namespace and its peer moved
    # straight into the node's: the host's namespace never sees either.
    nsip('sw', 'link', 'add', "${role}0", 'type', 'veth', 'peer', 'name', 'eth0', 'netns', $NS{$role});
    nsip('sw', 'link', 'set', "${role}0", 'master', 'br0');
    nsip('sw', 'link', 'set', "${role}0", 'up');
    nsip($role, qw(link set lo up));
    nsip($role, 'addr', 'add', "$ADDR{$role}/24", 'dev', 'eth0');
    nsip($role, qw(link set eth0 up));
}
pass('namespaces A, B, client and a bridge on 10.234.0.0/24');

sub vip_on($role) {
    my ($code, $out) = run([$TOOL{ip}, '-n', $NS{$role}, '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    return ($code == 0 && $out =~ m{\binet \Q$VIP\E/}) ? 1 : 0;
}

# Where the VIP is: 'a', 'b', 'both' or ''.
sub vip_where() {
    my ($on_a, $on_b) = (vip_on('a'), vip_on('b'));
    return $on_a && $on_b ? 'both' : $on_a ? 'a' : $on_b ? 'b' : '';
}

# Polls $cond every 20 ms for at most $timeout s; returns the time it
# became true, or undef.
sub wait_for($timeout, $cond) {
    my $deadline = time + $timeout;
    while (1) {
        my $now = time;
        return $now if $cond->();
        return undef if $now > $deadline;
        sleep 0.02;
    }
}

# ---------------------------------------------------------------------------
# apiary on A and B, as nobody, bound to the VIP with freebind.
# ---------------------------------------------------------------------------

my %APIARY;    # role => master pid
my %NODE_DIR;
for my $role (qw(a b)) {
    my $d = "$DIR/$role";
    mkdir $d or die "mkdir $d: $!";
    chown $NOBODY_UID, $NOBODY_GID, $d or die "chown $d: $!";
    $NODE_DIR{$role} = $d;
    spew("$d/apiary.conf", <<"EOF");
[server]
listen = $VIP:$PORT freebind
workers = 2
pidfile = $d/apiary.pid
control_socket = $d/apiary.sock
drain_delay = ${DRAIN_DELAY}s
shutdown_timeout = 5s
server_header = apiary-$role

[admin]
listen = off

[log]
level = info
error_log = stderr
EOF
    chmod 0644, "$d/apiary.conf";
}

sub check_ready($role, %o) {
    my @cmd = ($BIN, '-c', "$NODE_DIR{$role}/apiary.conf", 'check', '--ready');
    @cmd = as_nobody(@cmd) if $o{as_nobody};
    my ($code) = run(\@cmd, timeout => 5);
    return $code == 0;
}

sub start_apiary($role) {
    my $d = $NODE_DIR{$role};
    $APIARY{$role} = spawn(
        "apiary-$role",
        [$TOOL{ip}, 'netns', 'exec', $NS{$role}, as_nobody($BIN, '-F', '-c', "$d/apiary.conf")],
        "$d/apiary.log");
    my $ready = wait_for(10, sub { check_ready($role) });
    die "apiary on $role did not become ready within 10 s" unless $ready;
    my $pidfile = slurp("$d/apiary.pid") // '';
    $pidfile =~ s/\s+//g;
    die "apiary on $role: pidfile has $pidfile, started $APIARY{$role}" if $pidfile ne $APIARY{$role};
}

# Worker pids of a master, with their start times.
sub workers_of($master) {
    my %w;
    opendir my $dh, '/proc' or die "opendir /proc: $!";
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $st = proc_stat($p) or next;
        $w{$p} = $st->{start} if $st->{ppid} == $master && $st->{state} ne 'Z';
    }
    return \%w;
}

for my $role (qw(a b)) {
    start_apiary($role);
}
pass('apiary runs as nobody on A and B, listening on the VIP with freebind');

for my $role (qw(a b)) {
    my $ss = nsip($role, qw(-4 -o addr show dev eth0));
    unlike($ss, qr{\Q$VIP\E/}, "$role does not hold the VIP yet");
    my ($code, $out) = run([$TOOL{ip}, 'netns', 'exec', $NS{$role}, 'ss', '-Hltn', 'src', $VIP]);
    like($out, qr{\Q$VIP\E:$PORT\b}, "$role: apiary is bound to $VIP:$PORT without holding it (freebind)");
    ok(check_ready($role, as_nobody => 1),
       "$role: apiary check --ready succeeds as nobody (keepalived's script_user)");
}

# The trade-off of the README: with apiary running as root, its control
# socket (mode 0600) turns an unprivileged script user away, so every
# check would fail. A throwaway instance in the client's namespace.
{
    my $d = "$DIR/root";
    mkdir $d, 0755 or die "mkdir $d: $!";
    spew("$d/apiary.conf", <<"EOF");
[server]
listen = 127.0.0.1:$PORT
workers = 1
pidfile = $d/apiary.pid
control_socket = $d/apiary.sock
[admin]
listen = off
EOF
    my $pid = spawn('apiary-root', [$TOOL{ip}, 'netns', 'exec', $NS{c}, $BIN, '-F', '-c', "$d/apiary.conf"],
                    "$d/apiary.log");
    my $check = sub (@pre) {
        return (run([@pre, $BIN, '-c', "$d/apiary.conf", 'check', '--ready'], timeout => 5))[0];
    };
    ok(wait_for(10, sub { $check->() == 0 }), 'apiary as root: check --ready succeeds as root');
    is($check->(as_nobody()), 1, 'apiary as root: check --ready fails as nobody (control socket mode 0600)');
    my @st = stat "$d/apiary.sock";
    is(sprintf('%04o', $st[2] & 07777), '0600', 'the control socket is mode 0600');
    stop_pid($pid, 'QUIT', 10);
}

# ---------------------------------------------------------------------------
# keepalived: the sample configuration with its definitions changed.
# ---------------------------------------------------------------------------

my $sample = slurp($SAMPLE);
my %param;
for my $k (qw(interval fall rise advert_int)) {
    ($param{$k}) = $sample =~ /^\s*\Q$k\E\s+(\d+)\s*$/m;
    die "$SAMPLE: no $k" unless defined $param{$k};
}
my $BOUND = $param{interval} * $param{fall} + 2;
my $RISE_BOUND = $param{interval} * $param{rise} + 2;
like($sample, qr/^\s*nopreempt\s*$/m, 'the sample configuration does not preempt');
like($sample, qr/^\s*enable_script_security\s*$/m, 'the sample enables script security');

my %KEEPALIVED;
for my $role (qw(a b)) {
    my $d = $NODE_DIR{$role};
    my $conf = $sample;
    my %def = (
        APIARY      => $BIN,
        APIARY_CONF => "$d/apiary.conf",
        SCRIPT_USER => 'nobody',
        NOTIFY      => "$NOTIFY --log $d/notify.log",
        IFACE       => 'eth0',
        VIP         => "$VIP/24",
        VRID        => 55,
    );
    for my $k (sort keys %def) {
        $conf =~ s/^\$\Q$k\E=.*$/\$$k=$def{$k}/m or die "$SAMPLE has no \$$k= definition";
    }
    spew("$d/keepalived.conf", $conf);
}

sub start_keepalived($role) {
    my $d = $NODE_DIR{$role};
    $KEEPALIVED{$role} = spawn(
        "keepalived-$role",
        [$TOOL{ip}, 'netns', 'exec', $NS{$role},
         $TOOL{keepalived}, '-n', '-l', '-D', '-G', '-P', '-i', "apiary-$role",
         '-f', "$d/keepalived.conf", '-p', "$d/keepalived.pid", '-r', "$d/vrrp.pid"],
        "$d/keepalived.log");
}

# The notify script's lines for a node, from line $from on.
sub notify_lines($role) {
    my $text = slurp("$NODE_DIR{$role}/notify.log") // '';
    return [split /\n/, $text];
}
sub notified($role, $state, $from = 0) {
    my $l = notify_lines($role);
    return scalar grep { /: \Q$state\E \(priority/ } @$l[$from .. $#$l];
}

start_keepalived('a');
my $t = wait_for(3 * $param{advert_int} + 5, sub { vip_on('a') });
ok($t, 'A alone becomes MASTER and holds the VIP');
start_keepalived('b');
ok(wait_for(5, sub { notified('b', 'BACKUP') }), 'B starts as BACKUP (notify script ran as nobody)');
sleep $param{advert_int} * 2;
is(vip_where(), 'a', 'the VIP stays on A once B runs');
ok(notified('a', 'MASTER'), 'A: the notify script logged MASTER');
for my $role (qw(a b)) {
    my $log = slurp("$NODE_DIR{$role}/keepalived.log") // '';
    unlike($log, qr/(?:disabling|Permissions failure|cannot be accessed|insecure|not executable|unsafe|WARNING - script)/i,
           "$role: keepalived runs the check script (no security complaint)");
}

# ---------------------------------------------------------------------------
# The client, in its namespace: GET /live on the VIP every 20 ms, a new
# connection each, 3 s to answer; one line per request.
# ---------------------------------------------------------------------------

my $CLIENT_CODE = <<'EOC';
use strict; use warnings;
use IO::Socket::INET; use IO::Select; use Time::HiRes qw(time sleep);
my ($host, $port, $every_ms, $max_s, $log) = @ARGV;
open my $out, '>>', $log or die "$log: $!";
$out->autoflush(1);
my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
$SIG{PIPE} = 'IGNORE';
my $end = time + $max_s;
my $next = time;
while (!$stop && time < $end) {
    my $t0 = time;
    my ($ok, $info) = (0, '');
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp', Timeout => 3);
    if (!$s) {
        $info = "connect: " . ($@ || $!);
    } else {
        my $req = "GET /live HTTP/1.1\r\nHost: $host\r\nConnection: close\r\n\r\n";
        my $w = syswrite($s, $req);
        my $resp = '';
        my $sel = IO::Select->new($s);
        while (1) {
            my $left = $t0 + 3 - time;
            if ($left <= 0) { $info = 'read: timeout'; last }
            if (!$sel->can_read($left)) { $info = 'read: timeout'; last }
            my $n = sysread($s, my $buf, 65536);
            if (!defined $n) { $info = "read: $!"; last }
            last if $n == 0;
            $resp .= $buf;
        }
        if (!defined $w) {
            $info = "write: $!";
        } elsif ($resp =~ m{^HTTP/1\.\d 200 } && $resp =~ /\r\n\r\n\{"status":"ok"\}/) {
            $ok = 1;
            ($info) = $resp =~ /^Server:\s*(\S+)/mi;
            $info //= '?';
        } elsif ($info eq '') {
            my ($line) = $resp =~ /^([^\r\n]*)/;
            $info = "response: " . ($line // '');
        }
        close $s;
    }
    $info =~ s/\s+/_/g;
    printf $out "%.6f %.6f %s %s\n", $t0, time, $ok ? 'ok' : 'fail', $info || '-';
    $next += $every_ms / 1000;
    my $d = $next - time;
    if ($d > 0) { sleep $d } else { $next = time }
}
EOC

my $nclient = 0;
sub start_client($max_s) {
    my $log = "$DIR/client-" . ++$nclient . ".log";
    spew($log, '');
    my $pid = spawn("client-$nclient",
                    [$TOOL{ip}, 'netns', 'exec', $NS{c}, $^X, '-e', $CLIENT_CODE,
                     $VIP, $PORT, $CLIENT_EVERY_MS, $max_s, $log],
                    "$DIR/client-$nclient.stderr");
    # Wait for its first answer.
    wait_for(5, sub { (slurp($log) // '') =~ /\n/ }) or die "the client did not start";
    return {pid => $pid, log => $log};
}

sub stop_client($c) {
    stop_pid($c->{pid}, 'TERM', 5);
    my @r;
    for my $line (split /\n/, slurp($c->{log}) // '') {
        my ($t0, $t1, $res, $info) = split ' ', $line;
        next unless defined $info;
        push @r, {t0 => $t0, t1 => $t1, ok => $res eq 'ok', info => $info};
    }
    return \@r;
}

# A summary of the client's requests.
sub summary($r, $t_act) {
    my %s = (n => scalar @$r, failed => 0, by => {}, max_latency => 0, max_gap => 0);
    my $last_ok;
    for my $q (@$r) {
        if ($q->{ok}) {
            $s{max_gap} = $q->{t1} - $last_ok if defined $last_ok && $q->{t1} - $last_ok > $s{max_gap};
            $last_ok = $q->{t1};
        }
        my $lat = $q->{t1} - $q->{t0};
        $s{max_latency} = $lat if $lat > $s{max_latency};
        if ($q->{ok}) {
            $s{by}{$q->{info}}++;
        } else {
            $s{failed}++;
            $s{fail_info}{$q->{info}}++;
        }
    }
    return \%s;
}

# Time of the first answer after $t_act from $server, relative to $t_act.
sub first_from($r, $t_act, $server) {
    for my $q (@$r) {
        return $q->{t1} - $t_act if $q->{ok} && $q->{info} eq $server && $q->{t0} >= $t_act;
    }
    return undef;
}

sub report($name, $s, %extra) {
    my $by = join(', ', map { "$_: $s->{by}{$_}" } sort keys %{$s->{by}});
    my $fails = $s->{failed} ? ' (' . join(', ', map { "$_ x$s->{fail_info}{$_}" } sort keys %{$s->{fail_info}}) . ')' : '';
    my $extra = join('', map { sprintf("; %s %s", $_, $extra{$_}) } sort keys %extra);
    diag(sprintf("%s: %d requests, %d failed%s; served by %s; slowest %.3f s; longest without an answer %.3f s%s",
                 $name, $s->{n}, $s->{failed}, $fails, $by || 'nobody', $s->{max_latency}, $s->{max_gap}, $extra));
}

sub secs($x) { defined $x ? sprintf('%.2f s', $x) : 'never' }

# ---------------------------------------------------------------------------
# 1. Drain the MASTER (A): the VIP moves to B, and no request fails.
# ---------------------------------------------------------------------------
{
    my $c = start_client(30);
    sleep 0.5;
    my $na = scalar @{notify_lines('a')};
    my $t_act = time;
    my ($code, $out) = run([$BIN, '-c', "$NODE_DIR{a}/apiary.conf", '-s', 'drain']);
    is($code, 0, 'apiary -s drain on A') or diag($out);
    my $t_b = wait_for($BOUND + 5, sub { vip_on('b') });
    my $t_gone = wait_for(5, sub { !vip_on('a') });
    sleep 2;    # B serving for a while
    my $r = stop_client($c);
    my $s = summary($r, $t_act);
    my $failover = defined $t_b ? $t_b - $t_act : undef;
    report('drain', $s, 'failover (drain to VIP on B)' => secs($failover),
           'first answer from B after' => secs(first_from($r, $t_act, 'apiary-b')));
    ok(defined $failover && $failover <= $BOUND,
       sprintf('drain: the VIP moved to B in %s (bound: interval %d x fall %d + 2 = %d s)',
               secs($failover), $param{interval}, $param{fall}, $BOUND));
    ok(defined $t_gone, 'drain: A gave the VIP up');
    is($s->{failed}, 0, 'drain: the client saw no failed request');
    ok($s->{by}{'apiary-a'} && $s->{by}{'apiary-b'}, 'drain: A served, then B');
    ok(notified('a', 'FAULT', $na), 'drain: A logged FAULT');
    ok(notified('b', 'MASTER'), 'drain: B logged MASTER');
    # The drained apiary stops by itself after drain_delay.
    my $st = wait_pid($APIARY{a}, $DRAIN_DELAY + 10);
    is($st, 0, "drain: apiary on A exited 0 after drain_delay ($DRAIN_DELAY s)");
}

# ---------------------------------------------------------------------------
# 2. A comes back: nopreempt, so it becomes BACKUP and the VIP stays on B.
# ---------------------------------------------------------------------------
{
    my $c = start_client(30);
    my $na = scalar @{notify_lines('a')};
    my $t_act = time;
    start_apiary('a');
    my $t_ready = time;
    my $t_backup = wait_for($RISE_BOUND + 3, sub { notified('a', 'BACKUP', $na) });
    # Longer than the master-down interval: had A preempted, it would have.
    my %seen;
    my $t_watch = time + 3 * $param{advert_int} + 2;
    while (time < $t_watch) {
        $seen{vip_where() || 'nowhere'}++;
        sleep 0.1;
    }
    my $moved = grep { $_ ne 'b' } keys %seen;
    my $r = stop_client($c);
    my $s = summary($r, $t_act);
    my $rise = defined $t_backup ? $t_backup - $t_ready : undef;
    report('A back', $s, 'A ready to A BACKUP' => secs($rise));
    ok(defined $rise && $rise <= $RISE_BOUND,
       sprintf('A back: A left FAULT for BACKUP %s after its apiary was ready (bound: interval %d x rise %d + 2 = %d s)',
               secs($rise), $param{interval}, $param{rise}, $RISE_BOUND));
    ok(!$moved, 'A back: the VIP stayed on B (nopreempt)')
        or diag('the VIP was seen on: ' . join(', ', map { "$_ x$seen{$_}" } sort keys %seen));
    is($s->{failed}, 0, 'A back: the client saw no failed request');
    is_deeply([sort keys %{$s->{by}}], ['apiary-b'], 'A back: B served everything');
}

# ---------------------------------------------------------------------------
# 3. kill -9 of apiary's master on the MASTER (B): the VIP moves to A.
# ---------------------------------------------------------------------------
{
    my $c = start_client(30);
    sleep 0.5;
    my $nb = scalar @{notify_lines('b')};
    my $master = $APIARY{b};
    my $workers = workers_of($master);
    ok(scalar(keys %$workers), 'B: the master has workers: ' . join(' ', sort keys %$workers));
    my $t_act = time;
    kill 'KILL', $master;
    is(wait_pid($master, 5), 9, "kill -9 of apiary's master on B (pid $master)");
    ok(!check_ready('b'), 'B: apiary check --ready fails once the master is dead');
    my $t_a = wait_for($BOUND + 5, sub { vip_on('a') });
    my $t_gone = wait_for(5, sub { !vip_on('b') });
    sleep 2;    # A serving for a while
    my $r = stop_client($c);
    my $s = summary($r, $t_act);
    my $failover = defined $t_a ? $t_a - $t_act : undef;
    report('kill -9', $s, 'failover (kill to VIP on A)' => secs($failover),
           'first answer from A after' => secs(first_from($r, $t_act, 'apiary-a')));
    ok(defined $failover && $failover <= $BOUND,
       sprintf('kill -9: the VIP moved to A in %s (bound %d s)', secs($failover), $BOUND));
    ok(defined $t_gone, 'kill -9: B gave the VIP up');
    ok(notified('b', 'FAULT', $nb), 'kill -9: B logged FAULT');
    ok($s->{by}{'apiary-a'}, 'kill -9: A serves the VIP');

    # Workers whose master died: how long they live on (informational;
    # the VIP has left B either way). They were started here: stop them.
    my @alive = grep { same_alive($_, $workers->{$_}) } sort keys %$workers;
    if (@alive) {
        my $gone = wait_for(3, sub { !grep { same_alive($_, $workers->{$_}) } @alive });
        if (!$gone) {
            @alive = grep { same_alive($_, $workers->{$_}) } @alive;
            diag(sprintf('kill -9: %d of B\'s workers still run %.1f s after their master died (pids %s); '
                         . 'the VIP left B regardless. Stopping them.',
                         scalar @alive, time - $t_act, "@alive"));
            kill 'QUIT', @alive;
            wait_for(5, sub { !grep { same_alive($_, $workers->{$_}) } @alive });
            kill 'KILL', grep { same_alive($_, $workers->{$_}) } @alive;
        }
    }
    wait_for(5, sub { !grep { same_alive($_, $workers->{$_}) } keys %$workers })
        or die "B's old workers would not stop";

    # B comes back after the crash (over its stale pidfile): BACKUP, the
    # VIP stays on A.
    $nb = scalar @{notify_lines('b')};
    start_apiary('b');
    ok(wait_for($RISE_BOUND + 3, sub { notified('b', 'BACKUP', $nb) }), 'B back after the crash: BACKUP');
    sleep 1;
    is(vip_where(), 'a', 'B back: the VIP stays on A');
}

# ---------------------------------------------------------------------------
# Orderly stop: keepalived removes the VIP, apiary quits gracefully.
# ---------------------------------------------------------------------------
for my $role (qw(a b)) {
    stop_pid($KEEPALIVED{$role}, 'TERM', 5);
    is($STARTED{$KEEPALIVED{$role}}{status}, 0, "keepalived on $role stopped cleanly");
}
is(vip_where(), '', 'no node holds the VIP once keepalived stopped');
for my $role (qw(a b)) {
    stop_pid($APIARY{$role}, 'QUIT', 10);
    is($STARTED{$APIARY{$role}}{status}, 0, "apiary on $role stopped gracefully");
}
cleanup();
my $left = `$TOOL{ip} netns list` // '';
unlike($left, qr/apiary-t55-$$-/, 'every namespace of the test is gone');

done_testing();
