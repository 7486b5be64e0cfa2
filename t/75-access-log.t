#!/usr/bin/perl
# The access log ([log] access, access_format, access_query, slow_ms):
# one valid JSON line with every field for normal, error (API 404, SQL
# error, parser 400, timeout 408) and aborted requests (499: the client
# went away in the head, in the body, while the database worked; 444: fast
# shutdown); request ids accepted, replaced or generated and echoed; the
# W3C traceparent logged; the query left out when asked; the combined
# format; the buffer flushed within about a second and on exit; the
# slow-request warning; a response larger than the socket takes logged
# once its last byte is handed over; USR1 after a rename under load: the
# new file gets the lines, none lost or split; and the configuration
# errors.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->utf8->canonical;

my @KEYS = sort qw(time worker pid client client_port method path query status bytes duration_ms
                   db_ms request_id role user_agent referer error_code traceparent);
my $TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
my $HEX32 = qr/^[0-9a-f]{32}$/;

# Decoded lines of an access log: (records, bad lines).
sub read_log($path) {
    open my $fh, '<', $path or return ([], []);
    local $/;
    my $text = <$fh> // '';
    my (@r, @bad);
    push @bad, '(no final newline)' if length $text && substr($text, -1) ne "\n";
    for my $line (split /\n/, $text) {
        my $j = eval { $JSON->decode($line) };
        if (ref $j eq 'HASH') { push @r, $j } else { push @bad, $line }
    }
    return (\@r, \@bad);
}

# Waits (at most $timeout s) for a line of $path with this request id.
sub wait_line($path, $rid, $timeout = 3) {
    my $found;
    wait_for(sub {
        my ($r) = read_log($path);
        ($found) = grep { ($_->{request_id} // '') eq $rid } @$r;
        $found;
    }, timeout => $timeout, interval => 0.05);
    return $found;
}

# One request on a fresh connection; returns the parsed response.
sub req($t, $method, $target, %o) {
    my $raw = "$method $target HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . ($o{headers} // '') . "\r\n" . ($o{body} // '');
    my ($r) = parse_responses($t->http($raw, timeout => $o{timeout} // 5), head => $method eq 'HEAD');
    return $r;
}

sub start($t, $name) {
    my $ok = eval { $t->run(timeout => 10); 1 };
    ok($ok, "$name: apiary starts") or diag($@);
    return $ok;
}

# ---------------------------------------------------------------------------
# JSON lines, with a database: fields, ids, errors, aborts, slow log.

my $t = Apiary::Test->new(db => 1, name => '75-access-log.t');
my $ALOG = $t->testdir . '/access.log';
$t->write_config(config => {
    server => { workers => 2, header_timeout => '1s', body_timeout => '1s' },
    log => { access => $ALOG, slow_ms => 300 },
});
start($t, 'json') or do { done_testing; exit 1 };
ok($t->wait_ready(timeout => 15), 'json: ready');
my %wpid = map { $_ => 1 } $t->worker_pids;

{
    my $c = $t->connect;
    my $port = $c->local_port;
    $c->send("GET /live?x=1&y=%22 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tester \"7\"\r\n"
        . "Referer: http://example.test/from\r\nX-Request-Id: abc.DEF_1:2-3\r\n"
        . "traceparent: $TP\r\nConnection: close\r\n\r\n");
    my $t0 = time;
    my $r = $c->read_response(timeout => 3);
    $c->close;
    is($r && $r->{status}, 200, 'normal: 200');
    is($r && $r->{headers}{'x-request-id'}, 'abc.DEF_1:2-3', 'normal: a valid X-Request-Id is echoed');
    my $l = wait_line($ALOG, 'abc.DEF_1:2-3');
    my $dt = time - $t0;
    ok($l, 'normal: logged') or diag($t->read_file($ALOG));
    # Buffered, and written within the flush interval (1 s) and some slack
    # for a busy machine.
    ok($dt < 2.5, sprintf('normal: on disk %.2f s after the response', $dt));
    $l //= {};
    is_deeply([sort keys %$l], \@KEYS, 'normal: every field, nothing else');
    like($l->{time} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'normal: RFC 3339 UTC time with ms');
    ok(defined $l->{worker} && $l->{worker} =~ /^\d+$/, 'normal: worker index');
    ok($wpid{$l->{pid} // 0}, 'normal: pid of a worker');
    is($l->{client}, '127.0.0.1', 'normal: client address');
    is($l->{client_port}, $port, 'normal: client port');
    is($l->{method}, 'GET', 'normal: method');
    is($l->{path}, '/live', 'normal: path without the query');
    is($l->{query}, 'x=1&y=%22', 'normal: query as sent');
    is($l->{status}, 200, 'normal: status');
    is($l->{bytes}, length('{"status":"ok"}'), 'normal: body bytes');
    ok(defined $l->{duration_ms} && $l->{duration_ms} >= 0 && $l->{duration_ms} < 3000,
       'normal: duration_ms');
    is($l->{db_ms}, 0, 'normal: no database time');
    is($l->{role}, undef, 'normal: no role outside the API');
    is($l->{user_agent}, 'tester "7"', 'normal: user agent');
    is($l->{referer}, 'http://example.test/from', 'normal: referer');
    is($l->{error_code}, undef, 'normal: no error code');
    is($l->{traceparent}, $TP, 'normal: traceparent');
}

# Request ids: replaced when unsafe, generated when absent, unique.
{
    my %ids;
    for my $bad ('has space', 'quote"d', 'x' x 129, 'semi;colon', '') {
        my $r = req($t, 'GET', '/live', headers => "X-Request-Id: $bad\r\n");
        is($r && $r->{status}, 200, 'X-Request-Id "' . substr($bad, 0, 12) . '": answered');
        my $id = $r && $r->{headers}{'x-request-id'} // '';
        like($id, $HEX32, 'bad X-Request-Id "' . substr($bad, 0, 12) . '": replaced by a generated one');
        $ids{$id}++;
        ok(wait_line($ALOG, $id), 'replaced id: logged under the new id');
    }
    my $r = req($t, 'GET', '/live');
    my $gen = $r && $r->{headers}{'x-request-id'} // '';
    like($gen, $HEX32, 'no X-Request-Id: 128 random bits in hex');
    $ids{$gen}++;
    is(scalar(keys %ids), 6, 'generated ids differ');
    my $ok = req($t, 'GET', '/live', headers => 'X-Request-Id: ' . ('a' x 128) . "\r\n");
    is($ok && $ok->{headers}{'x-request-id'}, 'a' x 128, 'a 128-character id is kept');
    my $l = wait_line($ALOG, $gen);
    is($l && $l->{traceparent}, undef, 'no traceparent: null');

    # An invalid traceparent is not logged (W3C: ignore it).
    for my $tp ('00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
                '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
                'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
                '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra') {
        my $rid = 'tp-' . substr(rand(), 2, 8);
        req($t, 'GET', '/live', headers => "X-Request-Id: $rid\r\ntraceparent: $tp\r\n");
        my $x = wait_line($ALOG, $rid);
        ok($x && !defined $x->{traceparent}, "invalid traceparent not logged: $tp");
    }
    my $rid = 'tp-future';
    my $future = '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more';
    req($t, 'GET', '/live', headers => "X-Request-Id: $rid\r\ntraceparent: $future\r\n");
    my $x = wait_line($ALOG, $rid);
    is($x && $x->{traceparent}, $future, 'a later traceparent version with more fields is kept');
}

# Errors: the API's 404 and an SQL error (code in the log, PostgREST body
# unchanged), a parser 400, a request line that is not one.
{
    my $r = req($t, 'GET', '/nope', headers => "X-Request-Id: e-404\r\n");
    is($r && $r->{status}, 404, 'API 404');
    is($r && $r->{headers}{'x-request-id'}, 'e-404', 'API 404: X-Request-Id echoed');
    my $j = eval { $JSON->decode($r->{body}) } // {};
    is_deeply([sort keys %$j], [qw(code details hint message)], 'API 404: the body keeps PostgREST\'s four keys');
    my $l = wait_line($ALOG, 'e-404') // {};
    is($l->{status}, 404, 'API 404: logged');
    is($l->{error_code}, 'PGRST205', 'API 404 (no such table): error code PGRST205');
    is($l->{role}, 'anon', 'API 404: the anonymous role');

    $r = req($t, 'GET', '/rpc/add_them?a=1&b=2', headers => "X-Request-Id: rpc-ok\r\n");
    is($r && $r->{status}, 200, 'RPC: 200');
    $l = wait_line($ALOG, 'rpc-ok') // {};
    is($l->{role}, 'anon', 'RPC: role');
    ok(($l->{db_ms} // 0) > 0, "RPC: database time counted ($l->{db_ms} ms)");
    ok(($l->{db_ms} // 0) <= ($l->{duration_ms} // 0), 'RPC: db_ms within duration_ms');
    is($l->{query}, 'a=1&b=2', 'RPC: query');

    $r = req($t, 'GET', '/rpc/fail_raise?msg=boom', headers => "X-Request-Id: rpc-err\r\n");
    is($r && $r->{status}, 400, 'RPC raising: 400');
    $l = wait_line($ALOG, 'rpc-err') // {};
    is($l->{error_code}, 'P0001', 'RPC raising: SQLSTATE logged');

    my $raw = $t->http("GET /x?q=1 HTTP/1.1\r\nX-Request-Id: p-400\r\n\r\n");
    my ($p) = parse_responses($raw);
    is($p && $p->{status}, 400, 'parser 400 (no Host)');
    is($p && $p->{headers}{'x-request-id'}, 'p-400', 'parser 400: X-Request-Id echoed');
    $l = wait_line($ALOG, 'p-400') // {};
    is_deeply([sort keys %$l], \@KEYS, 'parser 400: every field');
    is($l->{status}, 400, 'parser 400: status');
    is($l->{error_code}, 'AP400', 'parser 400: error code');
    is($l->{method}, 'GET', 'parser 400: method (the head was read)');
    is($l->{path}, '/x', 'parser 400: path');

    my $before = scalar @{(read_log($ALOG))[0]};
    $raw = $t->http("NOT A REQUEST\r\n\r\n");
    ($p) = parse_responses($raw);
    is($p && $p->{status}, 400, 'garbage request line: 400');
    my $gid = $p && $p->{headers}{'x-request-id'} // '';
    like($gid, $HEX32, 'garbage: a generated X-Request-Id');
    $l = wait_line($ALOG, $gid) // {};
    is($l->{status}, 400, 'garbage: logged');
    is($l->{method}, undef, 'garbage: method null');
    is($l->{path}, undef, 'garbage: path null');
    is_deeply([sort keys %$l], \@KEYS, 'garbage: every field all the same');
}

# Aborted requests: the client closes in the head, in the body, while the
# database works; the head times out (408).
{
    my $c = $t->connect;
    $c->send("GET /live HTTP/1.1\r\nHost: x\r\nX-Req");
    sleep 0.2;
    $c->close;
    my $l;
    wait_for(sub {
        my ($r) = read_log($ALOG);
        ($l) = grep { $_->{status} == 499 && !defined $_->{method} } @$r;
        $l;
    }, timeout => 3);
    ok($l, 'client gone in the head: 499');
    ok($l && !defined $l->{path} && $l->{request_id} =~ $HEX32, 'in the head: no path yet, an id all the same');

    $c = $t->connect;
    $c->send("POST /rpc/add_them HTTP/1.1\r\nHost: x\r\nX-Request-Id: ab-body\r\n"
        . "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":");
    sleep 0.2;
    $c->close;
    $l = wait_line($ALOG, 'ab-body') // {};
    is($l->{status}, 499, 'client gone in the body: 499');
    is($l->{method}, 'POST', 'in the body: method');
    is($l->{bytes}, 0, 'in the body: no bytes');

    $c = $t->connect;
    $c->send("GET /rpc/slow?seconds=2 HTTP/1.1\r\nHost: x\r\nX-Request-Id: ab-db\r\n\r\n");
    sleep 0.4;
    $c->close;
    $l = wait_line($ALOG, 'ab-db') // {};
    is($l->{status}, 499, 'client gone while the database works: 499');
    ok(($l->{duration_ms} // 0) >= 300 && ($l->{duration_ms} // 0) < 1900,
       "499 logged when the client left ($l->{duration_ms} ms), not when the query ended");
    is($l->{role}, 'anon', '499: the role');

    $c = $t->connect;
    $c->send("GET /live HTTP/1.1\r\nHost: x\r\nX-Request-Id: to-head\r\n");
    my $r = $c->read_response(timeout => 4);
    $c->close;
    is($r && $r->{status}, 408, 'head timeout: 408');
    wait_for(sub {
        my ($rs) = read_log($ALOG);
        ($l) = grep { $_->{status} == 408 } @$rs;
        $l;
    }, timeout => 3);
    ok($l && ($l->{error_code} // '') eq 'AP408', 'head timeout: logged as 408 with AP408');
    ok($l && $l->{duration_ms} >= 900, 'head timeout: duration from the first byte');
}

# The slow-request warning: method, path, status, duration, database time.
{
    my $r = req($t, 'GET', '/rpc/slow?seconds=0.5', headers => "X-Request-Id: slow-1\r\n");
    is($r && $r->{status}, 200, 'slow RPC: 200');
    my $l = wait_line($ALOG, 'slow-1') // {};
    ok(($l->{db_ms} // 0) >= 450, "slow RPC: db_ms ($l->{db_ms}) covers the sleep");
    my $w;
    wait_for(sub {
        ($w) = grep { ($_->{msg} // '') =~ /^slow request: .*slow-1$/ } $t->log_records;
        $w;
    }, timeout => 3);
    ok($w, 'slow request in the error log') or diag($t->log_tail);
    is($w && $w->{level}, 'warn', 'slow log: level warn');
    like($w && $w->{msg} // '', qr{^slow request: GET /rpc/slow status 200 in \d+\.\d{3} ms \(database \d+\.\d{3} ms\), request_id slow-1$},
         'slow log: method, path, status, duration, database time, id');
    my @fast = grep { ($_->{msg} // '') =~ /slow request: .*rpc-ok/ } $t->log_records;
    is(scalar @fast, 0, 'a fast request is not in the slow log');
}

# A response the socket cannot take at once: logged when its last byte is
# handed over, with the whole body counted; and one the client leaves
# half-read: the status sent, the bytes that got through.
{
    # Functions in each worker's schema cache, from the error log.
    my $functions = sub {
        my %n;
        for ($t->log_records) {
            $n{$_->{worker}} = $1
                if defined $_->{worker} && ($_->{msg} // '') =~ /^schema cache (?:re)?loaded: .* (\d+) functions/;
        }
        return \%n;
    };
    my $before = $functions->();
    $t->psql(q{create function api.big(n int) returns text language sql immutable
               as $$ select repeat('x', n) $$;
               grant execute on function api.big(int) to anon;});
    my $n = 8 * 1024 * 1024;   # more than the kernel's socket buffers take
    # Every worker must have the function: the next request may go to any.
    ok(wait_for(sub {
        my $now = $functions->();
        keys %$before && !grep { ($now->{$_} // 0) <= $before->{$_} } keys %$before;
    }, timeout => 15, interval => 0.2), 'big: the new function is in every worker\'s schema cache');
    my $c = $t->connect;
    $c->send("GET /rpc/big?n=$n HTTP/1.1\r\nHost: x\r\nX-Request-Id: big-1\r\nConnection: close\r\n\r\n");
    sleep 1.0;   # not reading: the rest of the response waits in apiary
    # Read to the end (Connection: close), then parse once: 8 MiB.
    my $raw = $c->read_all(timeout => 30);
    $c->close;
    my ($r) = parse_responses($raw);
    is($r && length($r->{body}), $n + 2, 'big response read whole')
        or diag('got: ' . (substr($raw, 0, 300) =~ s/\r\n/|/gr));
    my $l = wait_line($ALOG, 'big-1') // {};
    is($l->{status}, 200, 'big response: logged');
    is($l->{bytes}, $n + 2, 'big response: the whole body counted');
    ok(($l->{duration_ms} // 0) >= 900, "big response: duration runs to the last byte ($l->{duration_ms} ms)");

    $c = $t->connect;
    $c->send("GET /rpc/big?n=$n HTTP/1.1\r\nHost: x\r\nX-Request-Id: big-2\r\nConnection: close\r\n\r\n");
    # Once the response has started (the query may take a while on a busy
    # machine), leave with most of it unread.
    $c->_fill(time + 15);
    sleep 0.2;
    $c->close;   # unread data: the kernel resets the connection
    my $t0 = time;
    $l = wait_line($ALOG, 'big-2');
    if (!$l) {
        # Not within 3 s: say whether it came later, to tell a slow flush
        # from a lost line.
        $l = wait_line($ALOG, 'big-2', 10);
        diag(sprintf('big-2: %s after %.2f s', $l ? 'logged' : 'still not logged', time - $t0));
        ok(0, 'big response, client gone: logged within 3 s');
    }
    $l //= {};
    is($l->{status}, 200, 'big response, client gone: the status sent');
    ok(defined $l->{bytes} && $l->{bytes} < $n, "big response, client gone: the bytes that got through ($l->{bytes})");
}

# Everything so far is valid JSON with every field.
{
    my ($r, $bad) = read_log($ALOG);
    is(join("\n", @$bad), '', 'json: every line is valid JSON');
    my @odd = grep { join(',', sort keys %$_) ne join(',', @KEYS) } @$r;
    is(scalar @odd, 0, 'json: every line has every field');
}

# Fast shutdown with a request in progress: 444, flushed on exit.
{
    my $c = $t->connect;
    $c->send("GET /rpc/slow?seconds=3 HTTP/1.1\r\nHost: x\r\nX-Request-Id: ab-term\r\n\r\n");
    sleep 0.4;
    $t->stop;
    $c->close;
    my ($r) = read_log($ALOG);
    my ($l) = grep { ($_->{request_id} // '') eq 'ab-term' } @$r;
    is($l && $l->{status}, 444, 'fast shutdown during a request: 444, written at exit');
}

# ---------------------------------------------------------------------------
# Combined format without the query; then a reload to JSON without the
# query; the last line written by a graceful stop.

my $u = Apiary::Test->new(name => '75-access-log.t combined');
my $CLOG = $u->testdir . '/access.log';
$u->write_config(config => { server => { workers => 1 },
                             log => { access => $CLOG, access_format => 'combined', access_query => 'off' } });
if (start($u, 'combined')) {
    req($u, 'GET', '/live?secret=1', headers => "User-Agent: ua \"q\"\r\nReferer: http://r.test/\r\n");
    req($u, 'GET', '/nope');
    my @lines;
    wait_for(sub { @lines = grep { /nope/ } split /\n/, $u->read_file($CLOG) // ''; @lines }, timeout => 3);
    my @all = split /\n/, $u->read_file($CLOG) // '';
    my ($live) = grep { m{"GET /live } && /ua/ } @all;
    like($live // '', qr{^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /live HTTP/1\.1" 200 15 "http://r\.test/" "ua \\x22q\\x22"$},
         'combined: the classic shape, quotes escaped as nginx does');
    unlike(join("\n", @all), qr/secret/, 'combined, access_query = off: no query string');
    like($lines[0] // '', qr{"GET /nope HTTP/1\.1" 404 \d+ "-" "-"$}, 'combined: 404, no referer or user agent');

    $u->write_config(config => { server => { workers => 1 },
                                 log => { access => $CLOG, access_query => 'off' } });
    $u->reload;
    my $json_line;
    wait_for(sub {
        req($u, 'GET', '/live?secret=2', headers => "X-Request-Id: after-reload\r\n");
        my ($r) = read_log($CLOG);
        ($json_line) = grep { ($_->{request_id} // '') eq 'after-reload' } @$r;
        $json_line;
    }, timeout => 10, interval => 0.3);
    ok($json_line, 'reload: the new workers write JSON');
    ok($json_line && !exists $json_line->{query}, 'json, access_query = off: no query field');
    unlike($u->read_file($CLOG) // '', qr/secret=2/, 'json, access_query = off: the query appears nowhere');

    req($u, 'GET', '/live', headers => "X-Request-Id: last-before-quit\r\n");
    $u->quit;
    my ($r) = read_log($CLOG);
    ok((grep { ($_->{request_id} // '') eq 'last-before-quit' } @$r),
       'graceful stop: the buffer is written before the worker exits');
}

# ---------------------------------------------------------------------------
# USR1 after a rename, under load: no line lost, split or left behind.

my $v = Apiary::Test->new(name => '75-access-log.t reopen');
my $RLOG = $v->testdir . '/access.log';
$v->write_config(config => { server => { workers => 2 }, log => { access => $RLOG } });
if (start($v, 'reopen')) {
    my ($nclients, $per) = (4, 300);
    my @kids;
    # The clients say how far they got, so that the rotations fall in the
    # middle of the load however slow the machine is.
    pipe(my $progress_r, my $progress_w) or die "pipe: $!";
    for my $k (1 .. $nclients) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $progress_r;
            # Keep-alive connections of 50 requests; bounded by count and time.
            my $sent = 0;
            my $deadline = time + 30;
            while ($sent < $per && time < $deadline) {
                my $c = eval { $v->connect } or do { sleep 0.05; next };
                for (1 .. 50) {
                    last if $sent >= $per;
                    my $id = "load-$k-$sent";
                    $c->send("GET /live HTTP/1.1\r\nHost: x\r\nX-Request-Id: $id\r\n\r\n") or last;
                    my $r = $c->read_response(timeout => 5) or last;
                    $sent++;
                    syswrite($progress_w, $sent == 50 ? 'a' : 'b') if $sent == 50 || $sent == 150;
                    sleep 0.003;   # spread over about a second
                }
                $c->close;
            }
            POSIX::_exit($sent == $per ? 0 : 1);
        }
        push @kids, $pid;
    }
    close $progress_w;
    # Two rotations while the clients run: once a client has sent 50
    # requests, and once one has sent 150 (of 300).
    for my $n (1, 2) {
        my $want = $n == 1 ? 'a' : 'b';
        my $deadline = time + 20;
        while (time < $deadline) {
            my $rin = '';
            vec($rin, fileno($progress_r), 1) = 1;
            last unless select(my $rout = $rin, undef, undef, $deadline - time) > 0;
            my $got = sysread($progress_r, my $buf, 1);
            last unless $got;
            last if $buf eq $want;
        }
        rename $RLOG, "$RLOG.$n" or die "rename: $!";
        $v->reopen;
    }
    close $progress_r;
    my $fails = 0;
    for my $pid (@kids) {
        my $deadline = time + 40;
        while (waitpid($pid, POSIX::WNOHANG()) == 0 && time < $deadline) { sleep 0.05 }
        if (time >= $deadline) { kill 'KILL', $pid; waitpid($pid, 0); $fails++; next }
        $fails++ if $? != 0;
    }
    is($fails, 0, "$nclients clients sent $per requests each");
    sleep 1.5;   # the buffers' once-a-second flush
    my (%seen, @bad, %per_file);
    for my $f ("$RLOG.1", "$RLOG.2", $RLOG) {
        my ($r, $b) = read_log($f);
        push @bad, map { "$f: $_" } @$b;
        for (@$r) {
            next unless ($_->{request_id} // '') =~ /^load-/;
            $seen{$_->{request_id}}++;
            $per_file{$f}++;
        }
    }
    is(join("\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]), '', 'reopen: every line of every file is whole JSON');
    is(scalar(keys %seen), $nclients * $per, 'reopen: a line for every request across the files');
    is(scalar(grep { $_ != 1 } values %seen), 0, 'reopen: no line twice');
    ok(($per_file{$RLOG} // 0) > 0 && ($per_file{"$RLOG.2"} // 0) > 0,
       'reopen: lines in the file moved away and in the new one')
        or diag(join ', ', map { "$_: " . ($per_file{$_} // 0) } sort keys %per_file);
    # After the rotations, lines go to the new file only.
    my $n1 = -s "$RLOG.1";
    my $n2 = -s "$RLOG.2";
    req($v, 'GET', '/live', headers => "X-Request-Id: after-rotation\r\n");
    ok(wait_line($RLOG, 'after-rotation'), 'after USR1: a new request lands in the new file');
    is(-s "$RLOG.1", $n1, 'the first rotated file no longer grows');
    is(-s "$RLOG.2", $n2, 'the second rotated file no longer grows');
    my %fds = proc_fds((sort $v->worker_pids)[0]);
    my @fds = grep { m{/access\.log} } values %fds;
    is_deeply(\@fds, [$RLOG], 'a worker holds the new file only');
}

# ---------------------------------------------------------------------------
# access = stderr.

# A Unix socket listener: client "unix:", no port.

my $s = Apiary::Test->new(name => '75-access-log.t stderr');
my $SOCK = $s->testdir . '/http.sock';
$s->write_config(config => { server => { workers => 1, listen => ['127.0.0.1:' . $s->port, "unix:$SOCK"] },
                             log => { access => 'stderr' } });
if (start($s, 'stderr')) {
    req($s, 'GET', '/live', headers => "X-Request-Id: to-stderr\r\n");
    my $l = wait_line($s->stderr_path, 'to-stderr');
    ok($l, 'access = stderr: the line goes to standard error');
    require IO::Socket::UNIX;
    my $u = IO::Socket::UNIX->new(Peer => $SOCK);
    ok($u, 'connected to the Unix socket') or diag("$SOCK: $!");
    if ($u) {
        print {$u} "GET /live HTTP/1.1\r\nHost: x\r\nX-Request-Id: over-unix\r\nConnection: close\r\n\r\n";
        local $/;
        my $resp = <$u>;
        like($resp // '', qr{^HTTP/1\.1 200 }, 'answered over the Unix socket');
        $l = wait_line($s->stderr_path, 'over-unix') // {};
        is($l->{client}, 'unix:', 'Unix socket: client "unix:"');
        ok(exists $l->{client_port} && !defined $l->{client_port}, 'Unix socket: client_port null');
    }
}

# ---------------------------------------------------------------------------
# Configuration errors: a clear file:line message, or a start/reload that
# fails with the reason.

my $e = Apiary::Test->new(name => '75-access-log.t config');
for my $case (['access_format', 'xml', qr/:\d+: log\.access_format: expected json or combined, got "xml"/],
              ['access_query', 'maybe', qr/:\d+: log\.access_query: expected on or off, got "maybe"/],
              ['slow_ms', '1s', qr/:\d+: log\.slow_ms: expected an integer/]) {
    my ($k, $val, $re) = @$case;
    $e->write_config(config => { log => { $k => $val } });
    my ($code, $out, $err) = $e->run_cmd('-t', '-c', $e->conf_path);
    is($code, 1, "-t rejects $k = $val");
    like($err, $re, "$k = $val: file:line and why");
}
$e->write_config(config => { log => { access => $e->testdir . '/no/such/dir/access.log' } });
my ($code, $out, $err) = $e->run_cmd('-F', '-c', $e->conf_path, { timeout => 10 });
is($code, 1, 'an access log that cannot be opened fails the start');
like($err . $out, qr{cannot open \[log\] access ".*/no/such/dir/access\.log": No such file or directory},
     'the start says why');

$e->write_config(config => { server => { workers => 1 }, log => { access => $e->testdir . '/ok.log' } });
if (start($e, 'reload')) {
    $e->write_config(config => { server => { workers => 1 }, log => { access => $e->testdir . '/no/dir/x.log' } });
    $e->reload;
    my $f;
    wait_for(sub { ($f) = grep { ($_->{msg} // '') =~ /reload failed: cannot open \[log\] access/ } $e->log_records; $f },
             timeout => 5);
    ok($f, 'reload with an access log that cannot be opened: refused, with the reason');
    my $r = req($e, 'GET', '/live', headers => "X-Request-Id: still-ok\r\n");
    is($r && $r->{status}, 200, 'the running workers keep serving');
    ok(wait_line($e->testdir . '/ok.log', 'still-ok'), 'and keep logging to the old file');
}

done_testing;
