#!/usr/bin/perl
# Configuration and command line: -t, -v, -h, -s without a master, error
# lines "FILE:LINE: section.key: why", environment overrides.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Apiary::Test qw(:all);

my $t = Apiary::Test->new(ports => 3);
my $dir = $t->testdir;
my $port = $t->port(0);

# A file name for each case, so the error lines must name the right one.
my $nconf = 0;
sub conf_file($text) {
    return $t->write_file(sprintf('case-%02d.conf', ++$nconf), $text);
}

# Runs "apiary -t -c FILE" and returns (exit code, stderr, file).
sub check_t($text, %o) {
    my $file = conf_file($text);
    my ($code, $out, $err) = $t->run_cmd('-t', '-c', $file, { env => $o{env} });
    return ($code, $out . $err, $file);
}

# The "FILE:LINE: KEY: why" lines for $file in $err, as [line, key, why].
sub error_lines($err, $file) {
    my @e;
    for my $l (split /\n/, $err) {
        next unless $l =~ /^\Q$file\E:(\d+): (.*)$/;
        my ($line, $rest) = ($1, $2);
        my ($key, $why) = $rest =~ /^([a-z_]+\.[a-z_]+): (.+)$/ ? ($1, $2) : (undef, $rest);
        push @e, [$line + 0, $key, $why];
    }
    return @e;
}

# Header common to most cases: lines 1-3.
my $HEAD = "[server]\nlisten = 127.0.0.1:$port\npidfile = $dir/apiary.pid\n";

# ---------------------------------------------------------------------------
# Good configurations
# ---------------------------------------------------------------------------

my $good = <<"EOF";
# apiary test configuration

[server]
listen = 127.0.0.1:$port
; a comment
workers = 2
pidfile = $dir/apiary.pid

[log]
level = info
error_log = $dir/error.log
EOF

{
    my ($code, $err, $file) = check_t($good);
    is($code, 0, '-t on a good configuration exits 0');
    like($err, qr/^apiary: configuration file \Q$file\E test is successful$/m,
        '-t says the test is successful') or diag($err);
}

# Every documented key, at a valid value other than its default.
{
    my ($code, $err) = check_t(<<"EOF");
[server]
listen = 127.0.0.1:$port backlog=1024
listen = 127.0.0.1:${\ $t->port(1)}
listen = *:${\ $t->port(2)}
listen = unix:$dir/apiary.sock
workers = auto
pidfile = $dir/apiary.pid
min_uptime = 500ms
shutdown_timeout = 1m
header_timeout = 5s
body_timeout = 30
keepalive_timeout = 0
keepalive_requests = 1000
max_uri_size = 4k
max_header_size = 1m
max_headers = 100
max_body_size = 2m
max_connections = 4096
server_header = off

[log]
level = debug
error_log = stderr
access = stderr
access_format = combined
access_query = off
slow_ms = 250
EOF
    is($code, 0, '-t accepts every documented key') or diag($err);
}

# The sample configuration shipped in etc/ is valid.
{
    my $src = $ENV{APIARY_SRCDIR} // "$FindBin::Bin/..";
    my $sample = "$src/etc/apiary.conf";
    SKIP: {
        skip "no $sample", 1 unless -f $sample;
        my ($code, $out, $err) = $t->run_cmd('-t', '-c', $sample);
        is($code, 0, '-t accepts etc/apiary.conf') or diag($err);
    }
}

# ---------------------------------------------------------------------------
# Bad configurations: exit 1, one "FILE:LINE: key: why" line per problem
# ---------------------------------------------------------------------------

my $WORKERS_WHY = qr/^expected "auto" or an integer 1\.\.512\b/;

# [name, file text, line, key, qr/why/ or undef]
my @bad = (
    ['workers = 0',   "${HEAD}workers = 0\n",   4, 'server.workers', $WORKERS_WHY],
    ['workers = abc', "${HEAD}workers = abc\n", 4, 'server.workers', $WORKERS_WHY],
    ['workers = 513', "${HEAD}workers = 513\n", 4, 'server.workers', $WORKERS_WHY],
    ['workers = -1',  "${HEAD}workers = -1\n",  4, 'server.workers', $WORKERS_WHY],
    ['workers empty', "${HEAD}workers =\n",     4, 'server.workers', $WORKERS_WHY],
    ['bad duration unit', "${HEAD}\n\nheader_timeout = 10x\n", 6, 'server.header_timeout'],
    ['duration with a space', "${HEAD}header_timeout = 10 s\n", 4, 'server.header_timeout'],
    ['negative duration', "${HEAD}body_timeout = -5s\n", 4, 'server.body_timeout'],
    ['fractional duration', "${HEAD}shutdown_timeout = 1.5s\n", 4, 'server.shutdown_timeout'],
    ['header_timeout below 100ms', "${HEAD}header_timeout = 50ms\n", 4, 'server.header_timeout'],
    ['bad size suffix', "${HEAD}max_body_size = 1t\n", 4, 'server.max_body_size'],
    ['fractional size', "${HEAD}max_body_size = 12.5k\n", 4, 'server.max_body_size'],
    ['size not a number', "${HEAD}; comment\n# comment\nmax_header_size = lots\n", 6,
        'server.max_header_size'],
    ['max_headers = 0', "${HEAD}max_headers = 0\n", 4, 'server.max_headers'],
    ['keepalive_requests = 0', "${HEAD}keepalive_requests = 0\n", 4, 'server.keepalive_requests'],
    ['bad IPv4 address', "[server]\nlisten = 999.1.1.1:80\n", 2, 'server.listen'],
    ['port out of range', "[server]\n\nlisten = 127.0.0.1:70000\n", 3, 'server.listen'],
    ['port zero', "[server]\nlisten = 127.0.0.1:0\n", 2, 'server.listen'],
    ['host name', "[server]\nlisten = localhost:8080\n", 2, 'server.listen'],
    ['missing port', "[server]\nlisten = 127.0.0.1\n", 2, 'server.listen'],
    ['relative unix path', "[server]\nlisten = unix:relative.sock\n", 2, 'server.listen'],
    ['bad backlog', "[server]\nlisten = 127.0.0.1:$port backlog=abc\n", 2, 'server.listen'],
    ['access_format = xml', "${HEAD}[log]\naccess_format = xml\n", 5, 'log.access_format',
        qr/^expected json or combined, got "xml"$/],
    ['access_query = yes', "${HEAD}[log]\naccess_query = yes\n", 5, 'log.access_query',
        qr/^expected on or off, got "yes"$/],
    ['slow_ms with a unit', "${HEAD}[log]\nslow_ms = 1s\n", 5, 'log.slow_ms'],
    ['unknown key', "${HEAD}wrokers = 2\n", 4, 'server.wrokers'],
    ['unknown key in [log]', "${HEAD}[log]\nlevl = info\n", 5, 'log.levl'],
    ['bad log level', "${HEAD}[log]\nlevel = verbose\n", 5, 'log.level'],
    ['duplicate single-valued key', "${HEAD}workers = 2\nworkers = 3\n", 5, 'server.workers'],
    ['duplicate key across two [server] sections',
        "${HEAD}workers = 2\n[log]\nlevel = info\n[server]\nworkers = 2\n", 8, 'server.workers'],
);

for my $c (@bad) {
    my ($name, $text, $line, $key, $why) = @$c;
    my ($code, $err, $file) = check_t($text);
    is($code, 1, "$name: -t exits 1");
    my @e = error_lines($err, $file);
    is(scalar @e, 1, "$name: exactly one error line naming $file") or diag($err);
    next unless @e;
    is($e[0][0], $line, "$name: error on line $line");
    is($e[0][1], $key, "$name: error names $key") or diag($err);
    if ($why) {
        like($e[0][2] // '', $why, "$name: says why");
    } else {
        ok(length($e[0][2] // '') > 3, "$name: says why") or diag($err);
    }
}

# An unknown section: spec gives no KEY for it; the error must be on the
# section's line or on its first key's line, and name the section.
{
    my ($code, $err, $file) = check_t("${HEAD}\n[sever]\nfoo = 1\n");
    is($code, 1, 'unknown section: -t exits 1');
    my @e = error_lines($err, $file);
    is(scalar @e, 1, 'unknown section: one error line') or diag($err);
    ok(@e && ($e[0][0] == 5 || $e[0][0] == 6), 'unknown section: error on line 5 or 6')
        or diag($err);
    like($err, qr/^\Q$file\E:\d+: .*sever/m, 'unknown section: names the section');
}

# Syntax errors: "FILE:LINE: syntax error".
for my $c (
    ['line without "="', "${HEAD}\nthis line is not ini\n", 5],
    ['unterminated section', "${HEAD}workers = 2\n[log\nlevel = info\n", 5],
) {
    my ($name, $text, $line) = @$c;
    my ($code, $err, $file) = check_t($text);
    is($code, 1, "syntax error, $name: -t exits 1");
    like($err, qr/^\Q$file\E:$line: syntax error/m, "syntax error, $name: FILE:$line: syntax error")
        or diag($err);
}

# max_uri_size may not exceed max_header_size (etc/apiary.conf); the
# error points at one of the two lines.
{
    my ($code, $err, $file) =
        check_t("${HEAD}max_header_size = 1k\nmax_uri_size = 2k\n");
    is($code, 1, 'max_uri_size > max_header_size: -t exits 1');
    my @e = error_lines($err, $file);
    ok(@e == 1 && ($e[0][0] == 4 || $e[0][0] == 5) && ($e[0][1] // '') =~ /^server\.max_(uri|header)_size$/,
        'max_uri_size > max_header_size: FILE:LINE: server.max_..._size: why') or diag($err);
}

# Several problems: every one is reported, in file order.
{
    my ($code, $err, $file) = check_t(<<"EOF");
[server]
listen = 127.0.0.1:$port
workers = 0
pidfile = $dir/apiary.pid
max_body_size = huge
[log]
level = loud
EOF
    is($code, 1, 'three problems: -t exits 1');
    my @e = error_lines($err, $file);
    is_deeply([map { "$_->[0] $_->[1]" } @e],
        ['3 server.workers', '5 server.max_body_size', '7 log.level'],
        'three problems: three error lines, in order') or diag($err);
}

# A missing file.
{
    my $missing = "$dir/does-not-exist.conf";
    my ($code, $out, $err) = $t->run_cmd('-t', '-c', $missing);
    is($code, 1, 'missing configuration file: -t exits 1');
    like($out . $err, qr/\Q$missing\E/, 'missing configuration file: message names it');
}

# A bad configuration also stops a real start, before anything is written.
{
    my $file = conf_file("${HEAD}workers = 0\n[log]\nerror_log = $dir/bad-start.log\n");
    my ($code, $out, $err) = $t->run_cmd('-F', '-c', $file, { timeout => 5 });
    is($code, 1, 'start with a bad configuration exits 1');
    like($out . $err, qr/^\Q$file\E:4: server\.workers: /m, 'start with a bad configuration says why');
    ok(!-e "$dir/apiary.pid", 'start with a bad configuration writes no pidfile');
}

# ---------------------------------------------------------------------------
# Environment overrides
# ---------------------------------------------------------------------------

{
    my ($code, $err) = check_t($good, env => { APIARY_SERVER_WORKERS => 'zz' });
    is($code, 1, 'APIARY_SERVER_WORKERS=zz: -t exits 1');
    like($err, qr/^env:APIARY_SERVER_WORKERS: server\.workers: expected "auto" or an integer 1\.\.512\b/m,
        'APIARY_SERVER_WORKERS=zz: error names the variable and the key') or diag($err);
}
{
    my ($code, $err) = check_t($good, env => { APIARY_SERVER_WORKERS => '3' });
    is($code, 0, 'APIARY_SERVER_WORKERS=3: -t exits 0') or diag($err);
}
{
    my ($code, $err) = check_t($good, env => { APIARY_SERVER_HEADER_TIMEOUT => '10x' });
    is($code, 1, 'APIARY_SERVER_HEADER_TIMEOUT=10x: -t exits 1');
    like($err, qr/^env:APIARY_SERVER_HEADER_TIMEOUT: server\.header_timeout: \S/m,
        'APIARY_SERVER_HEADER_TIMEOUT=10x: error names the variable and the key') or diag($err);
}

# The overrides take effect: workers, listen (a comma-separated list that
# replaces the file's listen lines), and a header visible over HTTP.
{
    my $r = Apiary::Test->new(
        ports => 3,
        name => '10-config.t (environment)',
        workers => 3,
    );
    $r->write_config(config => { server => { workers => 1, listen => '127.0.0.1:' . $r->port(2) } });
    $r->set_env(
        APIARY_SERVER_WORKERS => '3',
        APIARY_SERVER_LISTEN => join(',', map { '127.0.0.1:' . $r->port($_) } 0, 1),
        APIARY_SERVER_SERVER_HEADER => 'env-test',
    );
    SKIP: {
        ok(eval { $r->run; 1 }, 'daemon starts with environment overrides') or do {
            diag($@);
            skip 'daemon did not start', 5;
        };
        is(scalar $r->worker_pids, 3, 'APIARY_SERVER_WORKERS=3 overrides workers = 1');
        for my $i (0, 1) {
            my $resp = $r->get('/live', port => $r->port($i));
            is($resp && $resp->{status}, 200, "APIARY_SERVER_LISTEN: port $i answers");
        }
        my $resp = $r->get('/live');
        is($resp && $resp->{headers}{server}, 'env-test', 'APIARY_SERVER_SERVER_HEADER sets Server');
        is($r->stop, 0, 'environment-configured daemon stops with exit 0');
    }
    $r->teardown;
}

# ---------------------------------------------------------------------------
# Other options
# ---------------------------------------------------------------------------

{
    my ($code, $out, $err) = $t->run_cmd('-v');
    is($code, 0, '-v exits 0');
    like($out . $err, qr/^apiary \d+\.\d+\S*\s*$/, '-v prints "apiary VERSION"');
}
{
    my ($code, $out, $err) = $t->run_cmd('-h');
    is($code, 0, '-h exits 0');
    like($out . $err, qr/-c\b/, '-h prints usage');
}
{
    my ($code, $out, $err) = $t->run_cmd('-Z');
    isnt($code, 0, 'an unknown option fails');
    like($out . $err, qr/\S/, 'an unknown option is reported');
}

# -s without a running master.
{
    my $file = conf_file($good);
    my $pidfile = "$dir/apiary.pid";
    unlink $pidfile;
    my ($code, $out, $err) = $t->run_cmd('-s', 'reload', '-c', $file);
    is($code, 1, '-s reload without a pidfile exits 1');
    like($out . $err, qr/\Q$pidfile\E/, '-s reload without a pidfile names the pidfile');

    # A stale pidfile: a process that has exited.
    my $gone = fork // die "fork: $!";
    POSIX::_exit(0) if $gone == 0;
    waitpid($gone, 0);
    $t->write_file($pidfile, "$gone\n");
    ($code, $out, $err) = $t->run_cmd('-s', 'reload', '-c', $file);
    is($code, 1, '-s reload with a stale pidfile exits 1');
    like($out . $err, qr/\S/, '-s reload with a stale pidfile says why');

    $t->write_file($pidfile, "not a pid\n");
    ($code, $out, $err) = $t->run_cmd('-s', 'stop', '-c', $file);
    is($code, 1, '-s stop with a garbage pidfile exits 1');
    like($out . $err, qr/\S/, '-s stop with a garbage pidfile says why');
    unlink $pidfile;

    ($code, $out, $err) = $t->run_cmd('-s', 'bogus', '-c', $file);
    is($code, 1, '-s bogus exits 1');
    like($out . $err, qr/\S/, '-s bogus says why');
}

done_testing;
