package Apiary::Test;

# Integration-test harness for apiary, modelled on nginx-tests' Test::Nginx:
# write a configuration into a private temporary directory with free
# loopback ports, start the real daemon in the foreground, wait until it
# serves, talk to it over raw sockets, and stop it when the test is done.
# On teardown every started instance is checked (as a test) for crit/alert
# log lines and sanitizer reports.
#
# Everything here is bounded in time, and the only processes ever signalled
# are the master this harness forked and, after the master is gone, workers
# it was seen to own (checked by pid and start time, so a reused pid is
# never hit).
#
# Environment:
#   APIARY_BIN        the daemon to test (required)
#   APIARY_TEST_KEEP  keep the temporary directories (their paths are printed)
#                     and the test databases
#   APIARY_TEST_VERBOSE  print the logs of every instance on teardown
#   APIARY_TEST_PG_DIR   the running cluster (contrib/dev/pg) in which
#                     database tests (new(db => 1)) create their databases;
#                     t/lib/with-pg sets it. Without it a database test fails
#                     when CI is set (CI=true), and is skipped otherwise.
#   APIARY_SRCDIR     the source tree (for contrib/dev/pg and sql/); by
#                     default, found from this file's path

use v5.36;

use Carp qw(croak);
use Cwd ();
use Exporter qw(import);
use File::Basename ();
use File::Spec ();
use File::Temp ();
use IO::Socket::INET ();
use JSON::PP ();
use POSIX qw(WNOHANG);
use Test::More ();
use Test2::API qw(test2_add_callback_testing_done);
use Time::HiRes qw(time sleep);

our @EXPORT_OK = qw(
    http http_ex http_get parse_response parse_responses wait_for
    decode_json_body imf_date_ok reason_phrase
    proc_stat proc_alive proc_fds listening_inodes tcp_sockets unix_inodes kcmp_same
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $VERSION = '0.1';

# A client-side write to a socket the server has already closed must fail
# with EPIPE, not kill the test.
$SIG{PIPE} = 'IGNORE';

# An interrupted run (Ctrl-C in prove) still goes through END, which stops
# the daemons.
$SIG{INT}  = sub { exit 130 };
$SIG{TERM} = sub { exit 143 };

my @LIVE;           # every object created in this process, for END
my $FINALIZED = 0;  # the root hub's done-testing callbacks have run
our $CURRENT;       # the most recent object; used by the exported http()

my $JSON = JSON::PP->new->utf8->canonical;

# The source tree: t/lib/Apiary/Test.pm is three levels down. Resolved now,
# before any test changes directory.
my $SRCDIR = $ENV{APIARY_SRCDIR}
    // Cwd::abs_path(File::Spec->catdir(File::Basename::dirname(__FILE__), '..', '..', '..'));
my $DEV_PG = $ENV{APIARY_DEV_PG} // "$SRCDIR/contrib/dev/pg";
my $NDB = 0;        # databases created by this process, for unique names

# The kcmp(2) syscall number tells whether two descriptors in two processes
# are the same open file description. x86_64 and aarch64 only; elsewhere
# the fd checks fall back to inode comparison.
my %KCMP_NR = (x86_64 => 312, aarch64 => 272);

test2_add_callback_testing_done(sub {
    for my $t (@LIVE) {
        next unless defined $t && $t->{owner} == $$;
        $t->teardown;
    }
    $FINALIZED = 1;
});

END {
    # Reached after done_testing, or when a test died halfway: make sure no
    # daemon outlives the test process, without emitting more tests.
    for my $t (@LIVE) {
        next unless defined $t && $t->{owner} == $$;
        local $?;
        $t->_kill_all;
        $t->_db_cleanup;
    }
}

# ---------------------------------------------------------------------------
# Construction and configuration
# ---------------------------------------------------------------------------

# new(%opts)
#   config  => { server => {...}, log => {...}, other => {...} }
#              values are scalars, array refs (repeated keys) or undef
#              (leave the key out, including the harness defaults)
#   extra   => raw text appended to the generated file
#   raw     => the whole file as text (then config/extra are ignored)
#   ports   => number of free loopback ports to reserve (default 1); the
#              default listen lines use all of them
#   env     => { NAME => value|undef } for the daemon's environment
#   workers => number of workers run() waits for (default: server.workers
#              from the config)
#   name    => label used in test names (default: the script name)
#   allow_log => qr// of crit/alert lines that this test provokes on purpose
#   db      => 1: a database test. A fresh database, loaded with
#              sql/apiary.sql and every migration of sql/migrations (the
#              example application; contrib/dev/pg createdb), is created for this object in the cluster of APIARY_TEST_PG_DIR
#              and dropped on teardown; the configuration gets
#              [database] uri (through pgBouncer), listen_uri (straight to
#              PostgreSQL) and [api] schemas = api, anon_role = anon, unless
#              config gives them (undef leaves one out).
#              db => 'private': the same in a cluster of this test's own,
#              started in the test directory and stopped on teardown: for
#              tests that stop or restart PostgreSQL or pgBouncer, which
#              would disturb other tests sharing the cluster.
#              Without APIARY_TEST_PG_DIR (db => 1), new() skips the whole
#              test file (so create the object before any test), or, when
#              CI is set, dies: CI never skips a database test.
# %%TESTDIR%% and %%PORT_n%% in raw/extra text are replaced; in a database
# test also %%DBNAME%%, %%DB_URI%%, %%DB_LISTEN_URI%%, %%PG_PORT%%,
# %%PGBOUNCER_PORT%%.
sub new($class, %opts) {
    my $bin = $ENV{APIARY_BIN};
    croak 'APIARY_BIN is not set (the path of the apiary binary to test)' unless $bin;
    croak "APIARY_BIN=$bin is not an executable file" unless -f $bin && -x _;
    # Skips the file, or dies, before anything is set up.
    _db_available($opts{db}) if $opts{db};

    my $dir = File::Temp->newdir('apiary-test-XXXXXXXX',
        TMPDIR => 1, CLEANUP => $ENV{APIARY_TEST_KEEP} ? 0 : 1);

    my $self = bless {
        bin      => $bin,
        dirobj   => $dir,
        dir      => "$dir",
        owner    => $$,
        opts     => {%opts},
        env      => $opts{env} // {},
        name     => $opts{name} // ($0 =~ s{.*/}{}r),
        ports    => [],
        pid      => undef,      # master pid while it runs
        status   => undef,      # master wait status once reaped
        workers_seen => {},     # pid => starttime of every worker observed
        ncmd     => 0,
        allow_log => $opts{allow_log},
        torn_down => 0,
    }, $class;

    my $nports = $opts{ports} // 1;
    push @{$self->{ports}}, _free_port($self->{ports}) for 1 .. $nports;

    diag_keep($self->{dir}) if $ENV{APIARY_TEST_KEEP};
    if ($opts{db}) {
        # Registered before the database exists, so that END drops it even
        # if something below dies.
        push @LIVE, $self;
        $self->_db_setup($opts{db});
    }
    $self->write_config(%opts);

    push @LIVE, $self unless $opts{db};
    $CURRENT = $self;
    return $self;
}

sub diag_keep($dir) {
    Test::More::diag("apiary test directory kept: $dir");
}

# set_env(NAME => value|undef, ...): environment for later run()/run_cmd().
sub set_env($self, %e) {
    $self->{env}{$_} = $e{$_} for keys %e;
    return $self;
}

sub testdir($self)   { $self->{dir} }
sub conf_path($self) { "$self->{dir}/apiary.conf" }
sub pidfile($self)   { $self->{pidfile} }
sub admin_port($self) { $self->{admin_port} }
sub control_socket($self) { $self->{auto_env}{APIARY_SERVER_CONTROL_SOCKET} }
sub error_log($self) { $self->{error_log} }
sub stderr_path($self) { "$self->{dir}/stderr.log" }
sub master_pid($self) { $self->{pid} }

sub ports($self) { @{$self->{ports}} }

sub port($self, $i = 0) {
    croak "no port $i reserved (ports => N in new())" unless defined $self->{ports}[$i];
    return $self->{ports}[$i];
}

# Replaces the harness placeholders in raw text.
sub subst($self, $text) {
    $text =~ s/%%TESTDIR%%/$self->{dir}/g;
    $text =~ s/%%PORT_(\d+)%%/$self->port($1)/ge;
    if ($self->{dbname}) {
        $text =~ s/%%DBNAME%%/$self->{dbname}/g;
        $text =~ s/%%DB_URI%%/$self->db_uri/ge;
        $text =~ s/%%DB_LISTEN_URI%%/$self->db_listen_uri/ge;
        $text =~ s/%%PG_PORT%%/$self->pg_port/ge;
        $text =~ s/%%PGBOUNCER_PORT%%/$self->pgbouncer_port/ge;
    }
    return $text;
}

# Writes the configuration file (same options as new()) and returns its
# path. Used again before reload() to change the configuration.
sub write_config($self, %opts) {
    my $text;
    if (defined $opts{raw}) {
        $text = $self->subst($opts{raw});
    } else {
        my %conf = map { $_ => { %{$opts{config}{$_}} } } keys %{$opts{config} // {}};
        my $s = $conf{server} //= {};
        my $l = $conf{log} //= {};
        $s->{listen} = [map { "127.0.0.1:$_" } @{$self->{ports}}] unless exists $s->{listen};
        $s->{pidfile} = "$self->{dir}/apiary.pid" unless exists $s->{pidfile};
        $s->{workers} = 2 unless exists $s->{workers};
        $l->{error_log} = "$self->{dir}/error.log" unless exists $l->{error_log};
        $l->{level} = 'info' unless exists $l->{level};
        if ($self->{dbname}) {
            my $d = $conf{database} //= {};
            $d->{uri} = $self->db_uri unless exists $d->{uri};
            $d->{listen_uri} = $self->db_listen_uri unless exists $d->{listen_uri};
            my $a = $conf{api} //= {};
            $a->{schemas} = 'api' unless exists $a->{schemas};
            $a->{anon_role} = 'anon' unless exists $a->{anon_role};
        }

        $text = "# written by Apiary::Test for $self->{name}\n";
        my @sections = ('server', 'log', sort grep { $_ ne 'server' && $_ ne 'log' } keys %conf);
        for my $sec (@sections) {
            my $h = $conf{$sec};
            $text .= "[$sec]\n";
            # listen first, then the rest in a stable order.
            for my $k (sort { ($a ne 'listen') <=> ($b ne 'listen') || $a cmp $b } keys %$h) {
                my $v = $h->{$k};
                next unless defined $v;
                $text .= "$k = $_\n" for ref $v eq 'ARRAY' ? @$v : ($v);
            }
        }
        $text .= $self->subst($opts{extra}) if defined $opts{extra};
    }

    # What the daemon will be told, for pidfile/log/worker expectations.
    # (Environment overrides are the caller's business: see workers =>.)
    my %seen = _ini_values($text);
    $self->{pidfile}   = $seen{'server.pidfile'};
    my $el = $seen{'log.error_log'};
    $self->{error_log} = (defined $el && $el ne 'stderr') ? $el : undef;
    $self->{conf_workers} = $seen{'server.workers'};
    # The admin listener and the control socket default to fixed places
    # (127.0.0.1:9091, /run/apiary.sock) that tests running side by side
    # would share: unless the file names them, the environment moves them
    # into this test's port range and directory.
    $self->{admin_port} //= _free_port($self->{ports});
    my %auto;
    $auto{APIARY_ADMIN_LISTEN} = "127.0.0.1:$self->{admin_port}" unless $text =~ /^\s*\[admin\]/m;
    $auto{APIARY_SERVER_CONTROL_SOCKET} = "$self->{dir}/apiary.sock"
        unless exists $seen{'server.control_socket'};
    $self->{auto_env} = \%auto;

    $self->write_file('apiary.conf', $text);
    return $self->conf_path;
}

# Minimal INI reader for the harness's own bookkeeping (last value wins).
sub _ini_values($text) {
    my ($sec, %v) = ('');
    for my $line (split /\n/, $text) {
        next if $line =~ /^\s*(?:[#;]|$)/;
        if ($line =~ /^\s*\[([^\]]*)\]/) { $sec = $1; next }
        $v{"$sec.$1"} = $2 if $line =~ /^\s*([^=\s]+)\s*=\s*(.*?)\s*$/;
    }
    return %v;
}

sub write_file($self, $name, $content) {
    my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";
    open my $fh, '>', $path or croak "open $path: $!";
    print {$fh} $content;
    close $fh or croak "close $path: $!";
    return $path;
}

sub read_file($self, $name) {
    my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";
    open my $fh, '<', $path or return undef;
    local $/;
    my $c = <$fh>;
    return $c // '';
}

sub _free_port($taken) {
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1,
        ) or croak "cannot bind a free port: $!";
        my $p = $s->sockport;
        close $s;
        return $p unless grep { $_ == $p } @$taken;
    }
    croak 'no free port found';
}

# ---------------------------------------------------------------------------
# Running the daemon
# ---------------------------------------------------------------------------

# expected number of workers: option, else the configured count.
sub expected_workers($self) {
    return $self->{opts}{workers} if defined $self->{opts}{workers};
    my $w = $self->{conf_workers};
    return _ncpus() if !defined $w || $w eq 'auto';
    return $w;
}

sub _ncpus() {
    open my $fh, '<', '/proc/cpuinfo' or return 1;
    my $n = grep { /^processor\s*:/ } <$fh>;
    return $n || 1;
}

# run(%opts): start "$APIARY_BIN -F -c CONF" and wait (at most timeout,
# default 10 s) until GET /live answers 200 on port 0 and the expected
# number of workers are running. Dies, with the logs, otherwise.
#   timeout => seconds, workers => N (overrides), no_wait => 1
sub run($self, %opts) {
    croak 'daemon already running' if $self->{pid};
    $self->{status} = undef;
    $self->{killed} = 0;
    my $pid = $self->spawn(['-F', '-c', $self->conf_path], stdout => $self->stderr_path);
    $self->{pid} = $pid;
    $self->{started_at} = time;
    return $self if $opts{no_wait};

    my $want = $opts{workers} // $self->expected_workers;
    my $timeout = $opts{timeout} // 10;
    my $deadline = time + $timeout;
    my ($live, $nw) = (0, 0);
    while (time < $deadline) {
        if (defined $self->wait_exit(0)) {
            croak sprintf("apiary exited during start-up (%s)\n%s",
                _status_text($self->{status}), $self->log_tail(40));
        }
        $live ||= eval { my $r = $self->get('/live', timeout => 1); $r && $r->{status} == 200 };
        $nw = scalar $self->worker_pids;
        return $self if $live && $nw == $want;
        sleep 0.05;
    }
    croak sprintf("apiary did not become ready within %ss (/live 200: %s, workers %d of %d)\n%s",
        $timeout, $live ? 'yes' : 'no', $nw, $want, $self->log_tail(40));
}

# Forks and execs the daemon binary with @$args; stdout and stderr go to
# the given file (appended). Returns the pid. The test process's own
# descriptors above 2 are close-on-exec (Perl's $^F), so the daemon starts
# with only 0, 1 and 2 open.
sub spawn($self, $args, %o) {
    my $out = $o{stdout} // $self->stderr_path;
    my $err = $o{stderr} // $out;
    my %env = (%{$self->{auto_env} // {}}, %{$self->{env}}, %{$o{env} // {}});
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null' or POSIX::_exit(126);
        open STDOUT, '>>', $out or POSIX::_exit(126);
        if ($err eq $out) {
            open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        } else {
            open STDERR, '>>', $err or POSIX::_exit(126);
        }
        for my $k (keys %env) {
            if (defined $env{$k}) { $ENV{$k} = $env{$k} } else { delete $ENV{$k} }
        }
        # Descriptors inherited from whatever ran the tests (make's
        # jobserver pipe, a CI runner's) must not reach the daemon: start
        # it with 0, 1 and 2 only, as a service manager would.
        if (opendir my $fdd, '/proc/self/fd') {
            my @fds = grep { /^\d+$/ && $_ > 2 } readdir $fdd;
            closedir $fdd;
            POSIX::close($_) for @fds;
        }
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM);
        no warnings q(exec);
        exec { $self->{bin} } $self->{bin}, @$args;
        print STDERR "exec $self->{bin}: $!\n";
        POSIX::_exit(127);
    }
    return $pid;
}

# run_cmd(@args, {env => {...}, timeout => 10}) runs the binary to
# completion (e.g. -t, -v, -s) and returns (exit code, stdout, stderr).
# Exit code is 128+N when killed by signal N; -1 on timeout (then killed).
# The outputs are kept in the test directory, so the teardown check sees
# sanitizer reports from these runs too.
# Waits for child $pid at most $timeout seconds (then SIGKILLs it); returns
# its exit code, 128+signal when a signal ended it, or -1 on timeout.
sub _wait_bounded($pid, $timeout) {
    my $deadline = time + $timeout;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return ($? & 127) ? 128 + ($? & 127) : $? >> 8 if $r == $pid;
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            return -1;
        }
        sleep 0.02;
    }
}

sub run_cmd($self, @args) {
    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};
    my $n = ++$self->{ncmd};
    my $out = "$self->{dir}/cmd-$n.stdout.log";
    my $err = "$self->{dir}/cmd-$n.stderr.log";
    my $pid = $self->spawn(\@args, stdout => $out, stderr => $err, env => $o->{env});
    my $code = _wait_bounded($pid, $o->{timeout} // 10);
    return ($code, $self->read_file($out) // '', $self->read_file($err) // '');
}

sub _status_text($st) {
    return 'still running' unless defined $st;
    return sprintf('killed by signal %d', $st & 127) if $st & 127;
    return sprintf('exit code %d', $st >> 8);
}

# Non-blocking reap of the master, bounded by $timeout seconds. Returns the
# wait status once the master has exited (also on later calls), else undef.
sub wait_exit($self, $timeout = 10) {
    return $self->{status} if defined $self->{status};
    return undef unless $self->{pid};
    my $deadline = time + $timeout;
    while (1) {
        my $r = waitpid($self->{pid}, WNOHANG);
        if ($r == $self->{pid} || $r == -1) {
            $self->{status} = $r == -1 ? -1 : $?;
            $self->{last_pid} = $self->{pid};
            $self->{pid} = undef;
            return $self->{status};
        }
        return undef if time >= $deadline;
        sleep 0.02;
    }
}

# Exit code of the last master (undef while running or if killed).
sub exit_code($self) {
    my $st = $self->{status};
    return undef if !defined $st || $st < 0 || ($st & 127);
    return $st >> 8;
}

sub signal($self, $sig) {
    croak "signal $sig: daemon not running" unless $self->{pid};
    kill($sig, $self->{pid}) or croak "kill $sig $self->{pid}: $!";
    return $self;
}

sub reload($self) { $self->signal('HUP') }
sub reopen($self) { $self->signal('USR1') }

# stop(): TERM, wait (bounded), KILL if needed. Returns the wait status.
sub stop($self, %o) {
    return $self->{status} unless $self->{pid};
    $self->signal('TERM');
    my $st = $self->wait_exit($o{timeout} // 10);
    return $st if defined $st;
    Test::More::diag("apiary master $self->{pid} ignored TERM; sending KILL");
    kill 'KILL', $self->{pid};
    $self->{killed} = 1;
    return $self->wait_exit(5);
}

# quit(): QUIT (graceful), wait up to timeout (default 15 s). Returns the
# wait status, or undef if the master is still running (not killed).
sub quit($self, %o) {
    $self->signal('QUIT');
    return $self->wait_exit($o{timeout} // 15);
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# /proc/PID/stat: pid, comm, state, ppid, starttime.
sub proc_stat($pid) {
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my $line = <$fh>;
    return undef unless defined $line;
    my $rp = rindex($line, ')');
    return undef if $rp < 0;
    my $comm = substr($line, index($line, '(') + 1, $rp - index($line, '(') - 1);
    my @f = split ' ', substr($line, $rp + 2);
    # @f[0] is field 3 (state); starttime is field 22.
    return { pid => $pid, comm => $comm, state => $f[0], ppid => $f[1], starttime => $f[19] };
}

# True if the process exists and is not a zombie.
sub proc_alive($pid) {
    my $st = proc_stat($pid) or return 0;
    return $st->{state} ne 'Z' && $st->{state} ne 'X';
}

# Live (non-zombie) children of the master, sorted. Each is remembered with
# its start time so teardown can find workers that outlive the master.
sub worker_pids($self) {
    my $m = $self->{pid} or return ();
    my @w;
    opendir my $d, '/proc' or croak "opendir /proc: $!";
    for my $p (grep { /^\d+$/ } readdir $d) {
        my $st = proc_stat($p) or next;
        next unless $st->{ppid} == $m;
        next if $st->{state} eq 'Z' || $st->{state} eq 'X';
        $self->{workers_seen}{$p} //= $st->{starttime};
        push @w, $p + 0;
    }
    @w = sort { $a <=> $b } @w;
    return @w;
}

# A remembered worker that is still the same process (pid not reused).
sub _still_ours($self, $pid) {
    my $st = proc_stat($pid) or return 0;
    return 0 if $st->{state} eq 'Z' || $st->{state} eq 'X';
    return $st->{starttime} == $self->{workers_seen}{$pid};
}

# Stops the master if it still runs (TERM, then KILL), then gives the
# workers it owned 3 s to go. Returns the workers that were still alive
# after that and had to be killed: they outlived their master.
sub _kill_all($self) {
    if ($self->{pid}) {
        kill 'TERM', $self->{pid};
        if (!defined $self->wait_exit(5)) {
            kill 'KILL', $self->{pid};
            $self->{killed} = 1;
            $self->wait_exit(5);
        }
    }
    my @left = grep { $self->_still_ours($_) } keys %{$self->{workers_seen}};
    return () unless @left;
    my $deadline = time + 3;
    sleep 0.05 while time < $deadline && grep { $self->_still_ours($_) } @left;
    my @orphans = grep { $self->_still_ours($_) } @left;
    kill 'KILL', $_ for @orphans;
    return @orphans;
}

# ---------------------------------------------------------------------------
# Logs and teardown
# ---------------------------------------------------------------------------

# All log text of this instance: the error log (and any rotated copies),
# the daemon's stdout/stderr, and the output of run_cmd() invocations.
sub log_text($self) {
    my $text = '';
    opendir my $d, $self->{dir} or return '';
    my %files = map { $_ => 1 } grep { /\.log/ && -f "$self->{dir}/$_" } readdir $d;
    if ($self->{error_log} && -f $self->{error_log} && $self->{error_log} !~ m{^\Q$self->{dir}\E/}) {
        $files{$self->{error_log}} = 1;
    }
    for my $f (sort keys %files) {
        my $c = $self->read_file($f) // next;
        $text .= $c;
    }
    return $text;
}

sub log_tail($self, $n = 30) {
    my @l = split /\n/, $self->log_text;
    @l = @l[-$n .. -1] if @l > $n;
    return join("\n", map { "    | $_" } @l) . "\n";
}

# The error log decoded, one hash per JSON line (non-JSON lines are
# returned as { _raw => line, _bad => 1 }).
sub log_records($self, $path = undef) {
    $path //= $self->{error_log} // $self->stderr_path;
    my $text = $self->read_file($path) // '';
    my @r;
    for my $line (split /\n/, $text) {
        my $obj = eval { $JSON->decode($line) };
        push @r, (ref $obj eq 'HASH') ? $obj : { _raw => $line, _bad => 1 };
    }
    return @r;
}

my $BAD_LINE = qr/"level"\s*:\s*"(?:crit|alert)"|ERROR: AddressSanitizer|runtime error:|LeakSanitizer|SUMMARY: \w+Sanitizer|ThreadSanitizer/;
my $SANITIZER = qr/AddressSanitizer|runtime error:|LeakSanitizer|Sanitizer/;

sub bad_log_lines($self) {
    my @bad;
    for my $line (split /\n/, $self->log_text) {
        next unless $line =~ $BAD_LINE;
        next if $self->{allow_log} && $line =~ $self->{allow_log} && $line !~ $SANITIZER;
        push @bad, $line;
    }
    return @bad;
}

# Stops the daemon and checks, as tests, that the logs are clean and that
# no worker outlived its master. Runs once per object: from done_testing
# (or the end of a planned test), or from DESTROY while tests still run.
sub teardown($self) {
    return if $self->{torn_down} || $self->{owner} != $$;
    $self->{torn_down} = 1;
    my $ran = $self->{pid} || defined $self->{status} || %{$self->{workers_seen}};

    my $master_exited_by_itself = !$self->{killed};
    $self->stop if $self->{pid};
    $master_exited_by_itself &&= !$self->{killed};
    my @orphans = $self->_kill_all;

    my @bad = $self->bad_log_lines;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::is(join("\n", @bad), '',
        "$self->{name}: no crit/alert lines or sanitizer reports in the logs");
    if ($ran && $master_exited_by_itself) {
        Test::More::is(join(' ', sort @orphans), '',
            "$self->{name}: no worker outlived the master");
    }
    if ($ENV{APIARY_TEST_VERBOSE} || !Test::More->builder->is_passing) {
        Test::More::diag("logs of $self->{dir}:\n" . $self->log_tail(60));
    }
    $self->_db_cleanup;
}

sub DESTROY($self) {
    return if $self->{owner} != $$;
    local ($?, $@, $!);
    if (!$FINALIZED && !$self->{torn_down} && ${^GLOBAL_PHASE} ne 'DESTRUCT') {
        $self->teardown;
    }
    $self->_kill_all;
}

# ---------------------------------------------------------------------------
# Database: a fresh database per test object, in the shared cluster of
# APIARY_TEST_PG_DIR (t/lib/with-pg starts one per run) or in a private one
# ---------------------------------------------------------------------------

sub _ci() {
    my $ci = $ENV{CI} // '';
    return $ci ne '' && $ci ne '0' && lc $ci ne 'false';
}

# Called by new() before anything is set up: skips the test file, or dies
# under CI, when there is no cluster to use.
sub _db_available($mode) {
    return if $mode eq 'private';
    my $dir = $ENV{APIARY_TEST_PG_DIR};
    if (!defined $dir || $dir eq '') {
        my $why = 'APIARY_TEST_PG_DIR is not set: database tests need PostgreSQL and pgBouncer '
            . '(run them under t/lib/with-pg, as make check does)';
        croak "$why; CI is set, so this is a failure" if _ci();
        Test::More::plan(skip_all => $why);
    }
    croak "APIARY_TEST_PG_DIR=$dir: no $dir/env (is the cluster started? contrib/dev/pg start $dir)"
        unless -f "$dir/env";
}

# The variables of DIR/env (export NAME=value or NAME='value' lines).
sub _read_pg_env($dir) {
    open my $fh, '<', "$dir/env" or croak "open $dir/env: $!";
    my %e;
    while (my $line = <$fh>) {
        next unless $line =~ /^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*?)\s*$/;
        my ($k, $v) = ($1, $2);
        $v = $1 if $v =~ /^'(.*)'$/ || $v =~ /^"(.*)"$/;
        $e{$k} = $v;
    }
    for my $k (qw(APIARY_PG_PORT APIARY_PGBOUNCER_PORT APIARY_PG_SOCKET_DIR)) {
        croak "$dir/env: no $k" unless defined $e{$k};
    }
    return \%e;
}

# Runs a program to completion with its output in files; bounded by
# timeout (then killed). Returns (exit code, stdout, stderr); the code is
# 128+N when killed by signal N, -1 on timeout.
sub _run_prog($argv, %o) {
    my $out = File::Temp->new(TEMPLATE => 'apiary-out-XXXXXXXX', TMPDIR => 1);
    my $err = File::Temp->new(TEMPLATE => 'apiary-err-XXXXXXXX', TMPDIR => 1);
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null' or POSIX::_exit(126);
        open STDOUT, '>', $out->filename or POSIX::_exit(126);
        open STDERR, '>', $err->filename or POSIX::_exit(126);
        my %env = %{$o{env} // {}};
        for my $k (keys %env) {
            if (defined $env{$k}) { $ENV{$k} = $env{$k} } else { delete $ENV{$k} }
        }
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM);
        no warnings q(exec);
        exec { $argv->[0] } @$argv;
        print STDERR "exec $argv->[0]: $!\n";
        POSIX::_exit(127);
    }
    my $code = _wait_bounded($pid, $o{timeout} // 60);
    my $slurp = sub ($f) { open my $fh, '<', $f or return ''; local $/; <$fh> // '' };
    return ($code, $slurp->($out->filename), $slurp->($err->filename));
}

# contrib/dev/pg COMMAND DIR ARGS...; dies with its output if it fails.
sub _dev_pg($self, $cmd, @args) {
    my %env;
    $env{APIARY_PG_FAST} = 1 if $cmd eq 'start';
    my ($code, $out, $err) = _run_prog(['bash', $DEV_PG, $cmd, $self->{pg_dir}, @args],
        env => \%env, timeout => 180);
    croak sprintf("contrib/dev/pg %s %s failed (%s):\n%s%s",
        $cmd, join(' ', $self->{pg_dir}, @args), $code == -1 ? 'timed out' : "exit $code",
        $out, $err) if $code != 0;
    return $out;
}

# A database name from the test file, the pid and a counter: unique among
# test files running at the same time, readable in pg_stat_activity.
sub _db_name($self) {
    my $base = lc($0 =~ s{.*/}{}r =~ s/\.t$//r);
    $base =~ s/[^a-z0-9]+/_/g;
    my $suffix = "_$$" . ($NDB++ ? "_$NDB" : '');
    return substr("t_$base", 0, 63 - length $suffix) . $suffix;
}

sub _db_setup($self, $mode) {
    if ($mode eq 'private') {
        # postgres (when run as root) must reach the cluster's directory.
        chmod 0711, $self->{dir};
        $self->{pg_dir} = "$self->{dir}/pg";
        $self->{pg_private} = 1;
        $self->_dev_pg('start');
    } else {
        $self->{pg_dir} = $ENV{APIARY_TEST_PG_DIR};
    }
    $self->{pg_env} = _read_pg_env($self->{pg_dir});
    my $name = $self->_db_name;
    $self->_dev_pg('createdb', $name);
    $self->{dbname} = $name;
    Test::More::diag("test database kept: $name in $self->{pg_dir}") if $ENV{APIARY_TEST_KEEP};
}

# Drops the database (and stops a private cluster) once the daemon is gone.
# Bounded; a failure is reported, not a test failure.
sub _db_cleanup($self) {
    return if $self->{owner} != $$ || $self->{db_cleaned};
    return unless $self->{pg_dir};
    $self->{db_cleaned} = 1;
    local $@;
    if ($self->{dbname} && !$ENV{APIARY_TEST_KEEP} && !$self->{pg_private}) {
        eval { $self->_dev_pg('dropdb', $self->{dbname}); 1 }
            or Test::More::diag("could not drop the test database $self->{dbname}: $@");
    }
    if ($self->{pg_private}) {
        eval { $self->_dev_pg('stop'); 1 }
            or Test::More::diag("could not stop the private cluster in $self->{pg_dir}: $@");
    }
}

sub dbname($self) { $self->{dbname} }
sub pg_dir($self) { $self->{pg_dir} }
sub pg_port($self) { $self->{pg_env}{APIARY_PG_PORT} }
sub pgbouncer_port($self) { $self->{pg_env}{APIARY_PGBOUNCER_PORT} }

# What apiary is given: through pgBouncer, and straight to PostgreSQL (for
# LISTEN), as the role authenticator.
sub db_uri($self, $db = $self->{dbname}) {
    return "postgresql://authenticator\@127.0.0.1:" . $self->pgbouncer_port . "/$db";
}
sub db_listen_uri($self, $db = $self->{dbname}) {
    return "postgresql://authenticator\@127.0.0.1:" . $self->pg_port . "/$db";
}

# psql_ex($sql, db => NAME, user => ROLE, via => 'socket'|'pgbouncer',
#         sep => '|', timeout => 60): runs $sql (any number of statements,
# ON_ERROR_STOP) with psql -XAtq and returns (exit code, stdout, stderr).
# By default as the superuser postgres, over the Unix socket, in the test
# database. via => 'pgbouncer' connects through pgBouncer over TCP.
sub psql_ex($self, $sql, %o) {
    croak 'psql: not a database test (new(db => 1))' unless $self->{pg_env};
    my $file = $self->write_file(sprintf('psql-%d.sql', ++$self->{npsql}), $sql);
    my $e = $self->{pg_env};
    my $bouncer = ($o{via} // 'socket') eq 'pgbouncer';
    my %env = (
        PGHOST => $bouncer ? '127.0.0.1' : $e->{APIARY_PG_SOCKET_DIR},
        PGPORT => $bouncer ? $e->{APIARY_PGBOUNCER_PORT} : $e->{APIARY_PG_PORT},
        PGUSER => $o{user} // 'postgres',
        PGDATABASE => $o{db} // $self->{dbname} // 'postgres',
        PGCONNECT_TIMEOUT => 5, PGSSLMODE => 'disable', PGAPPNAME => 'apiary-test',
        map { $_ => undef } qw(PGSERVICE PGSERVICEFILE PGOPTIONS PGPASSWORD PGPASSFILE PGHOSTADDR),
    );
    return _run_prog(['psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
                      '-F', $o{sep} // '|', '-f', $file],
        env => \%env, timeout => $o{timeout} // 60);
}

# psql($sql, %opts): as psql_ex, but dies (with psql's message) if psql
# fails. Returns the output rows (lines; columns joined by sep, "|" by
# default) in list context, and the whole output without its last newline
# in scalar context: my $n = $t->psql('select count(*) from api.tasks').
sub psql($self, $sql, %o) {
    my ($code, $out, $err) = $self->psql_ex($sql, %o);
    croak sprintf("psql failed (%s): %s\nSQL: %s",
        $code == -1 ? 'timed out' : "exit $code", $err, $sql) if $code != 0;
    chomp $out;
    return wantarray ? split(/\n/, $out) : $out;
}

# Stopping and starting the servers, for failure and recovery tests. In the
# shared cluster these affect every test running at the same time: tests
# that use them should say db => 'private'.
#   pg_stop(mode => 'fast'|'immediate'|'kill'): fast shutdown by default;
#   immediate is a crash-like stop, kill a SIGKILL of the server.
sub pg_stop($self, %o) { $self->_dev_pg('stop-postgres', $o{mode} // 'fast'); $self }
sub pg_start($self) { $self->_dev_pg('start-postgres'); $self }
sub pg_restart($self) { $self->_dev_pg('restart-postgres'); $self }
sub pgbouncer_stop($self) { $self->_dev_pg('stop-pgbouncer'); $self }
sub pgbouncer_start($self) { $self->_dev_pg('start-pgbouncer'); $self }
sub pgbouncer_restart($self) { $self->_dev_pg('restart-pgbouncer'); $self }

# wait_ready(timeout => 10): polls GET /ready until it answers 200 (from
# whichever worker takes the connection); returns the last response.
sub wait_ready($self, %o) {
    my $r;
    wait_for(sub { $r = eval { $self->get('/ready', timeout => 1) }; $r && $r->{status} == 200 },
        timeout => $o{timeout} // 10, interval => 0.05);
    return $r;
}

# ---------------------------------------------------------------------------
# HTTP clients
# ---------------------------------------------------------------------------

sub connect($self, %o) {
    return Apiary::Test::Conn->new(port => $o{port} // $self->port(0), %o);
}

# http($raw, %opts): sends raw bytes on a fresh connection and returns
# everything received until the server closes or the read times out.
#   port    => N (default port 0)
#   timeout => seconds to wait for data/close (default 3)
#   parts   => [ bytes, \0.5, bytes, ... ] instead of $raw: scalar refs
#              are pauses in seconds, strings are written
# http_ex() takes the same arguments and returns ($data, { closed, reset,
# timed_out, elapsed }).
sub http($self_or_raw, @rest) {
    my ($data) = http_ex($self_or_raw, @rest);
    return $data;
}

sub http_ex($self_or_raw, @rest) {
    my ($self, $raw, %o);
    if (ref $self_or_raw && eval { $self_or_raw->isa(__PACKAGE__) }) {
        ($self, $raw, %o) = ($self_or_raw, @rest);
    } else {
        ($self, $raw, %o) = ($CURRENT, $self_or_raw, @rest);
    }
    my $c = $self->connect(%o);
    my $t0 = time;
    if ($o{parts}) {
        for my $p (@{$o{parts}}) {
            if (ref $p eq 'SCALAR') { sleep $$p }
            else { $c->send($p) }
        }
    } elsif (defined $raw) {
        $c->send($raw);
    }
    my $data = $c->read_all(timeout => $o{timeout} // 3);
    my $info = { closed => $c->{eof}, reset => $c->{reset}, timed_out => !$c->{eof},
                 elapsed => time - $t0 };
    $c->close;
    return ($data, $info);
}

sub http_get($self_or_path, @rest) {
    my ($self, $path, %o);
    if (ref $self_or_path && eval { $self_or_path->isa(__PACKAGE__) }) {
        ($self, $path, %o) = ($self_or_path, @rest);
    } else {
        ($self, $path, %o) = ($CURRENT, $self_or_path, @rest);
    }
    return $self->http("GET $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", %o);
}

# get($path): GET on a fresh connection, parsed (hash ref), or undef.
sub get($self, $path, %o) {
    my $method = $o{method} // 'GET';
    my $raw = $self->http("$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", %o);
    my ($r) = parse_responses($raw, head => $method eq 'HEAD');
    return $r;
}

# keepalive(\@raw_requests, %opts): sends each request on one connection,
# reading its response (by Content-Length) before sending the next.
# Returns a list of parsed responses (undef for one that did not arrive),
# followed by nothing; $opts{conn} receives the connection if a ref given.
sub keepalive($self, $reqs, %o) {
    my $c = $self->connect(%o);
    my @r;
    for my $req (@$reqs) {
        $c->send($req);
        my $r = $c->read_response(head => scalar($req =~ /^HEAD /), timeout => $o{timeout} // 3);
        # An interim 1xx is not the answer to the request.
        $r = $c->read_response(timeout => $o{timeout} // 3) while $r && $r->{status} < 200;
        push @r, $r;
        last unless $r;
    }
    if (ref $o{conn} eq 'SCALAR') { ${$o{conn}} = $c } else { $c->close }
    return @r;
}

# ---------------------------------------------------------------------------
# Response parsing
# ---------------------------------------------------------------------------

# Parses one response from the front of $$bufref. Returns a hash ref and
# removes its bytes from the buffer, or returns undef if incomplete.
# {status, reason, version, headers => {lc name => value (repeats joined
# with ", ")}, header_count => {lc name => n}, header_lines => [...],
# body, raw}. With eof => 1 a response without Content-Length takes the
# rest of the buffer as its body.
sub _parse_one($bufref, %o) {
    my $i = index($$bufref, "\r\n\r\n");
    return undef if $i < 0;
    my $head = substr($$bufref, 0, $i);
    my @lines = split /\r\n/, $head;
    my $sl = shift @lines // '';
    my ($version, $status, $reason) = $sl =~ m{^(HTTP/\d\.\d) (\d{3})(?: (.*))?$}
        or return { status => 0, bad => "bad status line: $sl", raw => $$bufref,
                    headers => {}, header_count => {}, header_lines => [], body => '' };
    my (%h, %cnt);
    for my $l (@lines) {
        my ($n, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        $n = lc $n;
        $h{$n} = exists $h{$n} ? "$h{$n}, $v" : $v;
        $cnt{$n}++;
    }
    my $start = $i + 4;
    my $body = '';
    my $nobody = $o{head} || $status < 200 || $status == 204 || $status == 304;
    if (!$nobody) {
        if (defined $h{'content-length'} && $h{'content-length'} =~ /^\d+$/) {
            my $len = $h{'content-length'};
            return undef if length($$bufref) - $start < $len;
            $body = substr($$bufref, $start, $len);
            $start += $len;
        } elsif ($o{eof}) {
            $body = substr($$bufref, $start);
            $start = length $$bufref;
        } else {
            return undef;
        }
    }
    my $raw = substr($$bufref, 0, $start, '');
    return { version => $version, status => $status + 0, reason => $reason // '',
             headers => \%h, header_count => \%cnt, header_lines => \@lines,
             body => $body, raw => $raw, status_line => $sl };
}

# parse_responses($text, head => 0|1): every complete response in $text,
# in order (interim 1xx included). The text is what a server sent before
# closing, so a response without Content-Length runs to the end.
sub parse_responses($text, %o) {
    my $buf = $text // '';
    my @r;
    while (length $buf) {
        my $r = _parse_one(\$buf, head => $o{head} && !grep({ $_->{status} >= 200 } @r), eof => 1);
        last unless $r;
        push @r, $r;
        last if $r->{bad};
    }
    return @r;
}

# parse_response($text): (status, \%headers, body) of the first final
# response in $text; (undef) if there is none.
sub parse_response($text, %o) {
    my ($r) = grep { $_->{status} >= 200 || $_->{bad} } parse_responses($text, %o);
    return (undef) unless $r;
    return ($r->{status}, $r->{headers}, $r->{body});
}

sub decode_json_body($r) {
    return undef unless $r && defined $r->{body};
    return eval { $JSON->decode($r->{body}) };
}

my @WDAY = qw(Sun Mon Tue Wed Thu Fri Sat);
my @MON  = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);

# IMF-fixdate (RFC 9110 5.6.7), within $slack seconds of now.
sub imf_date_ok($v, $slack = 5) {
    return 0 unless defined $v;
    my ($wd, $d, $mon, $y, $H, $M, $S) =
        $v =~ /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d\d):(\d\d):(\d\d) GMT$/
        or return 0;
    my %mi; @mi{@MON} = (0 .. 11);
    my $t = eval { require Time::Local; Time::Local::timegm($S, $M, $H, $d, $mi{$mon}, $y) } // return 0;
    return 0 unless $WDAY[(gmtime $t)[6]] eq $wd;
    return abs($t - time) <= $slack;
}

my %REASON = (
    100 => 'Continue', 200 => 'OK', 400 => 'Bad Request', 404 => 'Not Found',
    405 => 'Method Not Allowed', 408 => 'Request Timeout', 413 => 'Content Too Large',
    414 => 'URI Too Long', 417 => 'Expectation Failed',
    431 => 'Request Header Fields Too Large', 501 => 'Not Implemented',
    505 => 'HTTP Version Not Supported',
);
sub reason_phrase($status) { $REASON{$status} }

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# wait_for(sub { cond }, timeout => 5, interval => 0.02): polls until the
# condition is true; returns its value, or false at the deadline.
sub wait_for($cond, %o) {
    my $deadline = time + ($o{timeout} // 5);
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return 0 if time >= $deadline;
        sleep($o{interval} // 0.02);
    }
}

# Descriptors of a process: fd number => readlink target.
sub proc_fds($pid) {
    my %fd;
    opendir my $d, "/proc/$pid/fd" or return ();
    for my $f (grep { /^\d+$/ } readdir $d) {
        my $l = readlink "/proc/$pid/fd/$f";
        $fd{$f} = $l if defined $l;
    }
    return %fd;
}

# Socket inodes in LISTEN state on the given local ports (TCP v4/v6).
sub listening_inodes(@ports) {
    my %want = map { $_ => 1 } @ports;
    my %ino;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        <$fh>;
        while (<$fh>) {
            my @c = split;
            my ($port) = $c[1] =~ /:([0-9A-F]{4})$/;
            next unless $c[3] eq '0A' && $want{hex $port};
            $ino{$c[9]} = 1;
        }
    }
    return \%ino;
}

# Established TCP sockets: inode => { local_port, remote_port }.
sub tcp_sockets() {
    my %s;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        <$fh>;
        while (<$fh>) {
            my @c = split;
            my ($lp) = $c[1] =~ /:([0-9A-F]{4})$/;
            my ($rp) = $c[2] =~ /:([0-9A-F]{4})$/;
            $s{$c[9]} = { local_port => hex $lp, remote_port => hex $rp, state => $c[3] };
        }
    }
    return \%s;
}

# Unix-domain socket inodes.
sub unix_inodes() {
    my %s;
    open my $fh, '<', '/proc/net/unix' or return \%s;
    <$fh>;
    while (<$fh>) {
        my @c = split;
        $s{$c[6]} = 1;
    }
    return \%s;
}

my $KCMP_OK;
# kcmp_same($pid1, $fd1, $pid2, $fd2): 1 if both are the same open file
# description, 0 if not, undef if the kernel cannot tell.
sub kcmp_same($p1, $f1, $p2, $f2) {
    my $arch = (POSIX::uname())[4];
    my $nr = $KCMP_NR{$arch} // return undef;
    return undef if defined $KCMP_OK && !$KCMP_OK;
    local $!;
    my $r = syscall($nr, $p1 + 0, $p2 + 0, 0, $f1 + 0, $f2 + 0);
    if ($r < 0) {
        $KCMP_OK = 0 if $!{ENOSYS} || $!{EPERM};
        return undef;
    }
    $KCMP_OK = 1;
    return $r == 0 ? 1 : 0;
}

# ---------------------------------------------------------------------------

package Apiary::Test::Conn;

# One client connection with a read buffer: send, read one response at a
# time, or read everything until the server closes.

use v5.36;
use Carp qw(croak);
use IO::Socket::INET ();
use Time::HiRes qw(time);

sub new($class, %o) {
    # local => '127.0.0.5': the client's own address (any of 127.0.0.0/8
    # is bindable), for tests of per-address limits.
    my $s = IO::Socket::INET->new(
        PeerAddr => $o{host} // '127.0.0.1', PeerPort => $o{port},
        Proto => 'tcp', Timeout => $o{connect_timeout} // 3,
        (defined $o{local} ? (LocalAddr => $o{local}) : ()),
    ) or croak "connect to 127.0.0.1:$o{port}: $!";
    $s->autoflush(1);
    return bless { sock => $s, buf => '', eof => 0, reset => 0 }, $class;
}

sub sock($self) { $self->{sock} }
sub local_port($self) { $self->{sock}->sockport }

# Writes all bytes; returns false if the server closed/reset the socket.
sub send($self, $data) {
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($self->{sock}, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            return 0;
        }
        $off += $n;
    }
    return 1;
}

# Reads whatever arrives before $deadline; returns bytes read, 0 on
# timeout, -1 on EOF/reset.
sub _fill($self, $deadline) {
    return -1 if $self->{eof};
    my $left = $deadline - time;
    return 0 if $left <= 0;
    my $rin = '';
    vec($rin, fileno($self->{sock}), 1) = 1;
    my $n = select(my $rout = $rin, undef, undef, $left);
    return 0 if $n <= 0;
    my $r = sysread($self->{sock}, my $chunk, 65536);
    if (!defined $r) {
        return 0 if $!{EINTR} || $!{EAGAIN};
        $self->{reset} = 1 if $!{ECONNRESET};
        $self->{eof} = 1;
        return -1;
    }
    if ($r == 0) {
        $self->{eof} = 1;
        return -1;
    }
    $self->{buf} .= $chunk;
    return $r;
}

# read_response(head => 0|1, timeout => 3): the next response (1xx
# included) as a hash ref, or undef if none completed in time or the
# server closed first (what arrived stays in ->{buf}).
sub read_response($self, %o) {
    my $deadline = time + ($o{timeout} // 3);
    while (1) {
        my $r = Apiary::Test::_parse_one(\$self->{buf}, head => $o{head}, eof => $self->{eof});
        return $r if $r;
        return undef if $self->{eof};
        return undef if $self->_fill($deadline) == 0 && time >= $deadline;
    }
}

# read_all(timeout => 3): everything until EOF or timeout, buffer included.
sub read_all($self, %o) {
    my $deadline = time + ($o{timeout} // 3);
    1 while $self->_fill($deadline) > 0;
    my $data = $self->{buf};
    $self->{buf} = '';
    return $data;
}

# wait_closed(timeout => 3): true if the server closed the connection
# within the timeout; any bytes received meanwhile are kept in ->{buf}.
sub wait_closed($self, %o) {
    my $deadline = time + ($o{timeout} // 3);
    while (!$self->{eof}) {
        last if $self->_fill($deadline) == 0 && time >= $deadline;
    }
    return $self->{eof};
}

# Closed by the peer right now? Non-blocking check; buffers any data.
sub is_closed($self) {
    $self->_fill(time + 0.001) while !$self->{eof} && $self->_readable;
    return $self->{eof};
}

sub _readable($self) {
    my $rin = '';
    vec($rin, fileno($self->{sock}), 1) = 1;
    return select(my $rout = $rin, undef, undef, 0) > 0;
}

sub close($self) {
    close $self->{sock} if $self->{sock};
    $self->{sock} = undef;
}

1;

# ---------------------------------------------------------------------------
# Added for the operations tests (t/21-reload.t .. t/25-systemd.t): the
# program to run, the CLI, adopting the new master of a binary upgrade, and
# a client load that counts every failed request.
# ---------------------------------------------------------------------------

package Apiary::Test;

# set_bin($path): the program that run() and spawn() execute from now on
# (a copy of the binary, or a launcher that execs it: the pid stays the
# master's). run_cmd() uses it too; cli() always uses $APIARY_BIN.
sub set_bin($self, $path) {
    croak "$path is not an executable file" unless -f $path && -x _;
    $self->{bin} = $path;
    return $self;
}

sub bin($self) { $self->{bin} }

# cli(@args, {env, timeout}): "$APIARY_BIN @args -c CONF" to completion;
# returns (exit code, stdout, stderr) as run_cmd() does.
sub cli($self, @args) {
    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};
    local $self->{bin} = $ENV{APIARY_BIN};
    return $self->run_cmd(@args, '-c', $self->conf_path, $o);
}

# status_json(): "apiary status --json" decoded (a hash ref), or undef (the
# reason in $self->{status_error}).
sub status_json($self, %o) {
    my ($code, $out, $err) = $self->cli('status', '--json', { timeout => $o{timeout} // 5 });
    my $j = $code == 0 ? eval { JSON::PP->new->utf8->decode($out) } : undef;
    $self->{status_error} = ref $j eq 'HASH' ? undef : "exit $code: $err$out";
    return ref $j eq 'HASH' ? $j : undef;
}

# cli_start(@args): as cli(), in the background. Returns a sub that waits
# for it (timeout => 30 s, then KILL) and returns (exit code, stdout,
# stderr); called with (poll => 1), it returns an empty list while the
# command still runs.
sub cli_start($self, @args) {
    my $n = ++$self->{ncmd};
    my $out = "$self->{dir}/cmd-$n.stdout.log";
    my $err = "$self->{dir}/cmd-$n.stderr.log";
    my $pid = do {
        local $self->{bin} = $ENV{APIARY_BIN};
        $self->spawn([@args, '-c', $self->conf_path], stdout => $out, stderr => $err);
    };
    my @result;
    return sub (%o) {
        return @result if @result;
        my $deadline = time + ($o{timeout} // 30);
        my $code;
        while (1) {
            my $r = waitpid($pid, WNOHANG);
            if ($r == $pid) {
                $code = ($? & 127) ? 128 + ($? & 127) : $? >> 8;
                last;
            }
            return () if $o{poll};
            if (time > $deadline) {
                kill 'KILL', $pid;
                waitpid($pid, 0);
                $code = -1;
                last;
            }
            sleep 0.02;
        }
        @result = ($code, $self->read_file($out) // '', $self->read_file($err) // '');
        return @result;
    };
}

# The pid in the pidfile (or in $path), or undef.
sub pidfile_pid($self, $path = undef) {
    my $c = $self->read_file($path // $self->pidfile) // return undef;
    return $c =~ /^(\d+)\n?$/ ? $1 + 0 : undef;
}

# become_subreaper(): prctl(PR_SET_CHILD_SUBREAPER). The new master of a
# binary upgrade is forked by the old one; once the old one exits, it
# becomes a child of this test process (not of init), which can then wait
# for it and stop it. True on success.
sub become_subreaper() {
    my %nr = (x86_64 => 157, aarch64 => 167);
    my $n = $nr{(POSIX::uname())[4]} // return 0;
    local $!;
    return syscall($n, 36, 1, 0, 0, 0) == 0;
}

# adopt_master($pid): after a binary upgrade, once the old master has been
# reaped (wait_exit), the new master becomes the one this object runs,
# stops and checks on teardown. It must be a child of this process
# (become_subreaper()). Returns true if adopted.
sub adopt_master($self, $pid) {
    croak "adopt_master: the master $self->{pid} is still running" if $self->{pid};
    my $st = proc_stat($pid);
    return 0 unless $st && $st->{ppid} == $$ && proc_alive($pid);
    $self->{pid} = $pid + 0;
    $self->{status} = undef;
    $self->{killed} = 0;
    $CURRENT = $self;
    return 1;
}

# load(%opts): a client load in forked processes, every request counted:
# a refused or failed connect, a reset, a connection closed without a
# response, a timeout and a non-2xx status are failures. Keep-alive
# clients reuse one connection and open a new one only after a response
# with "Connection: close" (a keep-alive connection closed by the server
# otherwise is a failure: that is the loss a graceful stop must avoid).
#   seconds   => 20 (bound; ->finish stops it earlier)
#   keepalive => 2 clients on keep-alive connections
#   fresh     => 2 clients with a new connection per request
#   path => '/live', port => port(0), timeout => 3 (per request),
#   pause => 0.002 (between requests of a client)
# Returns an Apiary::Test::Load; ->finish waits for the clients and returns
# { ok, fail, keepalive_ok, fresh_ok, errors => [...first 20...] }.
sub load($self, %o) {
    my $seconds = $o{seconds} // 20;
    my $port = $o{port} // $self->port(0);
    my $path = $o{path} // '/live';
    my $timeout = $o{timeout} // 3;
    my $pause = $o{pause} // 0.002;
    my $id = ++$self->{nload};
    my @kids;
    my @kinds = ((('keepalive') x ($o{keepalive} // 2)), (('fresh') x ($o{fresh} // 2)));
    my $t0 = time;
    for my $k (0 .. $#kinds) {
        my $kind = $kinds[$k];
        my $file = "$self->{dir}/load-$id-$k.txt";
        my $pid = fork // croak "fork: $!";
        if ($pid == 0) {
            my $stop = 0;
            $SIG{TERM} = sub { $stop = 1 };
            $SIG{INT} = 'DEFAULT';
            my ($ok, $fail, @err) = (0, 0);
            my $end = $t0 + $seconds;
            my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\n"
                . ($kind eq 'fresh' ? "Connection: close\r\n" : '') . "\r\n";
            my $c;
            my $failed = sub ($why) {
                $fail++;
                push @err, sprintf('%+.3fs %s: %s', time - $t0, $kind, $why) if @err < 20;
                $c->close if $c;
                undef $c;
            };
            while (!$stop && time < $end) {
                if (!$c) {
                    $c = eval { Apiary::Test::Conn->new(port => $port, connect_timeout => $timeout) };
                    if (!$c) {
                        $failed->('connect: ' . (($@ // '') =~ s/ at .*//sr));
                        sleep $pause;
                        next;
                    }
                }
                if (!$c->send($req)) {
                    $failed->("send: $!");
                    next;
                }
                my $r = $c->read_response(timeout => $timeout);
                if (!$r) {
                    $failed->($c->{reset} ? 'connection reset'
                        : $c->{eof} ? 'closed without a (complete) response'
                        : "no response within ${timeout}s");
                    next;
                }
                if ($r->{status} < 200 || $r->{status} > 299) {
                    $failed->("status $r->{status}");
                    next;
                }
                $ok++;
                if ($kind eq 'fresh' || lc($r->{headers}{connection} // '') eq 'close') {
                    $c->close;
                    undef $c;
                }
                sleep $pause if $pause > 0;
            }
            $c->close if $c;
            if (open my $fh, '>', "$file.tmp") {
                print {$fh} "$kind $ok $fail\n", map { "$_\n" } @err;
                close $fh;
                rename "$file.tmp", $file;
            }
            POSIX::_exit(0);
        }
        push @kids, { pid => $pid, file => $file, kind => $kind };
    }
    return bless { t => $self, kids => \@kids, seconds => $seconds, t0 => $t0, owner => $$ },
        'Apiary::Test::Load';
}

package Apiary::Test::Load;

use v5.36;
use POSIX ();
use Time::HiRes qw(time sleep);

sub elapsed($self) { time - $self->{t0} }

# finish(stop => 1): stops the clients now (else waits for the end of
# their time), reaps them (bounded) and returns the totals.
sub finish($self, %o) {
    return $self->{result} if $self->{result};
    if ($o{stop}) {
        kill 'TERM', $_->{pid} for @{$self->{kids}};
    }
    my $deadline = time + ($o{stop} ? 0 : $self->{seconds} - $self->elapsed) + 15;
    for my $k (@{$self->{kids}}) {
        while (waitpid($k->{pid}, POSIX::WNOHANG()) == 0) {
            if (time > $deadline) {
                kill 'KILL', $k->{pid};
                waitpid($k->{pid}, 0);
                last;
            }
            sleep 0.05;
        }
    }
    my %r = (ok => 0, fail => 0, keepalive_ok => 0, fresh_ok => 0, errors => []);
    for my $k (@{$self->{kids}}) {
        my $c = $self->{t}->read_file($k->{file});
        if (!defined $c) {
            $r{fail}++;
            push @{$r{errors}}, "a $k->{kind} client wrote no result";
            next;
        }
        my ($head, @err) = split /\n/, $c;
        my ($kind, $ok, $fail) = split ' ', $head;
        $r{ok} += $ok;
        $r{fail} += $fail;
        $r{"${kind}_ok"} += $ok;
        push @{$r{errors}}, @err;
    }
    @{$r{errors}} = map { $_->[1] } sort { $a->[0] <=> $b->[0] }
        map { [/^([-+]?[\d.]+)s/ ? $1 : 0, $_] } @{$r{errors}};
    $self->{result} = \%r;
    return \%r;
}

sub DESTROY($self) {
    return if $self->{result} || $self->{owner} != $$;
    local ($?, $!, $@);
    for my $k (@{$self->{kids}}) {
        kill 'KILL', $k->{pid};
        waitpid($k->{pid}, 0);
    }
}

1;
