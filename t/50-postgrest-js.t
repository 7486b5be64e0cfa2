#!/usr/bin/perl
# The PostgREST JavaScript client against apiary: t/js/postgrest-js.mjs
# (@supabase/postgrest-js, the client inside supabase-js) reads tables (filters,
# or, order, range, count, single, CSV) and calls RPC
# functions of the example application through a running apiary; its TAP
# lines are passed through as tests here.
#
# Needs node (20 or later) and npm. Without them the test is skipped, or
# fails when CI=true. The client is installed with `npm ci` from
# t/js/package-lock.json into a temporary copy of t/js (the source tree
# may be read-only, as under make distcheck), unless t/js/node_modules
# already holds the locked version (after `cd t/js && npm ci`). npm uses
# its cache first (--prefer-offline); the registry is needed only for what
# the cache lacks.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Copy qw(copy);
use File::Spec ();
use File::Temp ();
use JSON::PP ();
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $JS_SRC = "$FindBin::Bin/js";
my $SCRIPT = 'postgrest-js.mjs';
my $NPM_TIMEOUT = 300;   # seconds for npm ci
my $NODE_TIMEOUT = 90;   # seconds for the whole client script

my $CI = ($ENV{CI} // '') =~ /^(?:true|1|yes)$/i;

# Missing tooling: a skip on a developer's machine, a failure in CI.
sub unavailable($why) {
    if ($CI) {
        fail("postgrest-js: $why (required when CI=true)");
        done_testing();
        exit 1;
    }
    plan skip_all => $why;
}

sub which($prog) {
    for my $d (File::Spec->path) {
        my $p = "$d/$prog";
        return $p if -f $p && -x _;
    }
    return undef;
}

# The process group of a command still running, for END (a test that dies
# halfway must not leave node or npm behind).
my $RUNNING_PGID;
END {
    if ($RUNNING_PGID) {
        local $?;
        kill 'KILL', -$RUNNING_PGID;
        waitpid($RUNNING_PGID, 0);
    }
}

# run_bounded(\@cmd, cwd => DIR, env => {...}, timeout => S): runs the
# command in a process group of its own, stdout and stderr to files.
# Returns (exit code, stdout, stderr); the code is 128+N when killed by
# signal N and -1 on timeout (then the whole group is killed: npm and node
# start children of their own).
sub run_bounded($cmd, %o) {
    my $dir = File::Temp->newdir('apiary-js-run-XXXXXXXX', TMPDIR => 1);
    my ($outf, $errf) = ("$dir/stdout", "$dir/stderr");
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        chdir $o{cwd} or POSIX::_exit(126) if defined $o{cwd};
        open STDIN, '<', '/dev/null' or POSIX::_exit(126);
        open STDOUT, '>', $outf or POSIX::_exit(126);
        open STDERR, '>', $errf or POSIX::_exit(126);
        my %env = %{$o{env} // {}};
        for my $k (keys %env) {
            if (defined $env{$k}) { $ENV{$k} = $env{$k} } else { delete $ENV{$k} }
        }
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM);
        no warnings q(exec);
        exec { $cmd->[0] } @$cmd;
        print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }
    POSIX::setpgid($pid, $pid);    # either side may win the race; both set it
    $RUNNING_PGID = $pid;
    my $deadline = time + ($o{timeout} // 60);
    my $code;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) {
            $code = ($? & 127) ? 128 + ($? & 127) : $? >> 8;
            last;
        }
        if (time > $deadline) {
            kill 'TERM', -$pid;
            my $grace = time + 3;
            sleep 0.05 while waitpid($pid, WNOHANG) == 0 && time < $grace;
            kill 'KILL', -$pid;
            waitpid($pid, 0);
            $code = -1;
            last;
        }
        sleep 0.02;
    }
    # The group may still hold children of a command that has exited.
    kill 'KILL', -$pid;
    $RUNNING_PGID = undef;
    my $slurp = sub ($f) { open my $fh, '<', $f or return ''; local $/; <$fh> // '' };
    return ($code, $slurp->($outf), $slurp->($errf));
}

sub tail_lines($text, $n = 20) {
    my @l = split /\n/, $text;
    splice @l, 0, @l - $n if @l > $n;
    return join "\n", @l;
}

# ---------------------------------------------------------------------------
# node, npm and the client library.

my $node = which('node') or unavailable('node not found in PATH (Node.js 20 or later; Debian: nodejs)');
my $npm = which('npm') or unavailable('npm not found in PATH (Debian: npm)');
{
    my ($code, $out) = run_bounded([$node, '-p', 'process.versions.node'], timeout => 30);
    my ($major) = $out =~ /^(\d+)\./;
    unavailable("node --version failed (exit $code)") unless $code == 0 && defined $major;
    unavailable("node $out is too old: 20 or later is needed (\@supabase/postgrest-js)")
        if $major < 20;
}

my $JSON = JSON::PP->new->utf8;
my $lock = do {
    open my $fh, '<', "$JS_SRC/package-lock.json" or die "$JS_SRC/package-lock.json: $!\n";
    local $/;
    $JSON->decode(<$fh>);
};
my $want_version = $lock->{packages}{'node_modules/@supabase/postgrest-js'}{version}
    or die "t/js/package-lock.json does not lock \@supabase/postgrest-js\n";

sub installed_version($dir) {
    open my $fh, '<', "$dir/node_modules/\@supabase/postgrest-js/package.json" or return undef;
    local $/;
    my $p = eval { $JSON->decode(<$fh>) } or return undef;
    return $p->{version};
}

my $js_tmp;    # keeps the temporary copy alive until the end
my $js_dir;
if ((installed_version($JS_SRC) // '') eq $want_version) {
    $js_dir = $JS_SRC;
    note("using $JS_SRC/node_modules (\@supabase/postgrest-js $want_version)");
} else {
    $js_tmp = File::Temp->newdir('apiary-js-XXXXXXXX', TMPDIR => 1);
    $js_dir = "$js_tmp";
    for my $f ('package.json', 'package-lock.json', $SCRIPT) {
        copy("$JS_SRC/$f", "$js_dir/$f") or die "copy $JS_SRC/$f: $!\n";
    }
    my $t0 = time;
    my ($code, $out, $err) = run_bounded(
        [$npm, 'ci', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'],
        cwd => $js_dir, timeout => $NPM_TIMEOUT,
        env => { npm_config_update_notifier => 'false', CI => $ENV{CI} });
    if ($code != 0) {
        diag(tail_lines("$out\n$err"));
        unavailable($code == -1
            ? "npm ci did not finish within ${NPM_TIMEOUT}s"
            : "npm ci failed (exit $code): is the npm registry or npm's cache reachable?");
    }
    my $got = installed_version($js_dir) // 'nothing';
    unavailable("npm ci installed \@supabase/postgrest-js $got, not $want_version")
        unless $got eq $want_version;
    note(sprintf('npm ci: @supabase/postgrest-js %s in %.1fs', $want_version, time - $t0));
}

# ---------------------------------------------------------------------------
# apiary with a database holding the example application.

my $t = Apiary::Test->new(db => 1, name => '50-postgrest-js.t');
$t->run;

# The API is usable once /ready says so (pool connected, schema cache loaded).
my $ready;
my $deadline = time + 15;
while (time < $deadline) {
    my $r = eval { $t->get('/ready', timeout => 2) };
    $ready = $r;
    last if $r && $r->{status} == 200;
    sleep 0.1;
}
ok($ready && $ready->{status} == 200, 'GET /ready is 200 before the client runs')
    or diag($ready ? "$ready->{status} $ready->{body}" : 'no response');

# ---------------------------------------------------------------------------
# The client, its TAP passed through.

my $url = 'http://127.0.0.1:' . $t->port;
my ($code, $out, $err) = run_bounded([$node, $SCRIPT],
    cwd => $js_dir, timeout => $NODE_TIMEOUT,
    env => { APIARY_URL => $url, NODE_OPTIONS => undef });

my ($plan, $seen, $failed_last) = (undef, 0, 0);
for my $line (split /\n/, $out) {
    if ($line =~ /^1\.\.(\d+)/) {
        $plan = $1;
    } elsif ($line =~ /^(not )?ok (\d+)(?: - (.*))?$/) {
        $seen++;
        $failed_last = defined $1;
        ok(!$failed_last, 'postgrest-js: ' . ($3 // "test $2"));
    } elsif ($line =~ /^#\s?(.*)$/) {
        $failed_last ? diag($1) : note($1);
    } elsif ($line =~ /^Bail out!/) {
        fail("postgrest-js: $line");
    } elsif ($line ne '') {
        diag("postgrest-js stdout: $line");
    }
}
ok(defined $plan, 'postgrest-js printed a TAP plan') or diag(tail_lines($out));
is($seen, $plan // -1, 'postgrest-js ran every test it planned') if defined $plan;
is($code, 0, 'node postgrest-js.mjs exited 0')
    or diag($code == -1 ? "killed after ${NODE_TIMEOUT}s" : 'stderr: ' . tail_lines($err));
diag('node stderr: ' . tail_lines($err)) if $code == 0 && $err =~ /\S/;

done_testing();
