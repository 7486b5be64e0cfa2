#!/usr/bin/perl
# The worker's database pool under pressure, with one worker and one
# connection so that every request's fate is known: pool_timeout (503
# PGRST003 + Retry-After), a full wait queue (503 at once), request_timeout
# (504 57014 and the statement really cancelled in PostgreSQL), a client
# that goes away (its statement cancelled), and statement_timeout (set per
# transaction). Whether a statement still runs is read from
# pg_stat_activity with psql.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my %DB = (pool_size => 1, queue_size => 1, pool_timeout => '1s', request_timeout => '30s');
my $t = Apiary::Test->new(db => 1, config => { server => { workers => 1 }, database => {%DB} });

# Starts the daemon and waits for /ready; if it does not get there, the
# rest of the file cannot run: fail, and end here.
sub start_daemon($name) {
    my $ok = eval { $t->run(timeout => 10); 1 };
    my $err = $@;
    ok($ok, "$name: apiary starts (/live answers)") or diag($err);
    $ok &&= ok($t->wait_ready(timeout => 15), "$name: /ready 200");
    return if $ok;
    diag("apiary did not get ready ($name): the remaining tests cannot run\n" . $t->log_tail);
    done_testing;
    exit 1;
}

# A request sent on its own connection, not read yet: { conn, t0 }.
sub send_rpc($method, $path, $body = undef) {
    my $raw = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $raw .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n" if defined $body;
    $raw .= "\r\n" . ($body // '');
    my $c = $t->connect;
    my $t0 = time;
    $c->send($raw);
    return { conn => $c, t0 => $t0 };
}

# Reads the answer to a send_rpc(): the parsed response with elapsed set
# (seconds since the request was sent), or undef.
sub finish_rpc($p, $timeout = 5) {
    my $r = $p->{conn}->read_response(timeout => $timeout);
    my $elapsed = time - $p->{t0};
    $p->{conn}->close;
    $r->{elapsed} = $elapsed if $r;
    return $r;
}

sub rpc($method, $path, $body = undef, $timeout = 5) {
    return finish_rpc(send_rpc($method, $path, $body), $timeout);
}

sub error_ok($r, $status, $code, $name) {
    ok($r, "$name: got a response") or return undef;
    is($r->{status}, $status, "$name: status $status") or diag($r->{raw});
    my $j = eval { $JSON->decode($r->{body}) };
    ok(ref $j eq 'HASH', "$name: a JSON object") or return diag($r->{body});
    is_deeply([sort keys %$j], [qw(code details hint message)], "$name: code, message, details, hint");
    is($j->{code}, $code, "$name: code $code") or diag($r->{body});
    return $j;
}

sub add_them_ok($name) {
    my $r = rpc('GET', '/rpc/add_them?a=20&b=22');
    ok($r && $r->{status} == 200 && $r->{body} eq '42', "$name: add_them answers 200")
        or diag($r ? $r->{raw} : 'no response');
}

# Backends of this database running api.slow right now (not psql itself).
sub slow_active() {
    return $t->psql(q{select count(*) from pg_stat_activity
        where datname = current_database() and state = 'active'
          and pid <> pg_backend_pid() and query like '%"slow"(%'}, timeout => 5);
}

# ---------------------------------------------------------------------------
# pool_size 1, queue_size 1, pool_timeout 1s
# ---------------------------------------------------------------------------

start_daemon('pool_size 1');
add_them_ok('at start');

{
    # A holds the only connection for 3 s.
    my $a = send_rpc('POST', '/rpc/slow', '{"seconds":3}');
    ok(wait_for(sub { slow_active() >= 1 }, timeout => 3, interval => 0.05),
        'slow(3) runs in PostgreSQL and holds the connection');
    # B waits in the queue (size 1); C finds it full.
    my $b = send_rpc('GET', '/rpc/add_them?a=1&b=1');
    sleep 0.2;
    my $c = send_rpc('GET', '/rpc/add_them?a=2&b=2');
    my $rc = finish_rpc($c, 3);
    my $j = error_ok($rc, 503, 'PGRST003', 'queue full');
    ok($rc && $rc->{elapsed} < 0.5, sprintf('queue full: answered at once (%.2f s)', $rc ? $rc->{elapsed} : -1));
    like($rc && $rc->{headers}{'retry-after'}, qr/^\d+$/, 'queue full: Retry-After (seconds)');
    like($j && $j->{details}, qr/queue/, 'queue full: details say the queue is full');

    my $rb = finish_rpc($b, 4);
    $j = error_ok($rb, 503, 'PGRST003', 'pool_timeout');
    ok($rb && $rb->{elapsed} >= 0.9 && $rb->{elapsed} < 2.0,
        sprintf('pool_timeout: answered after about 1 s (%.2f s)', $rb ? $rb->{elapsed} : -1));
    like($rb && $rb->{headers}{'retry-after'}, qr/^\d+$/, 'pool_timeout: Retry-After (seconds)');
    like($rb && $rb->{headers}{'content-type'}, qr{^application/json}, 'pool_timeout: JSON');

    # The worker itself is not blocked while its only connection is busy.
    my $live = eval { $t->get('/live', timeout => 1) };
    ok($live && $live->{status} == 200, 'while every pool connection is busy, /live still answers at once');

    my $ra = finish_rpc($a, 5);
    ok($ra && $ra->{status} == 200 && $ra->{body} eq '1', 'the request holding the connection completes: 200, 1')
        or diag($ra ? $ra->{raw} : 'no response');
    ok($ra && $ra->{elapsed} >= 2.9, sprintf('after its 3 s (%.2f s)', $ra ? $ra->{elapsed} : -1));
    add_them_ok('after the pool was free again');
}

# A client that goes away while its statement runs: the statement is
# cancelled, and the connection serves the next request.
{
    my $d = send_rpc('POST', '/rpc/slow', '{"seconds":10}');
    ok(wait_for(sub { slow_active() >= 1 }, timeout => 3, interval => 0.05), 'slow(10) runs');
    $d->{conn}->close;
    my $tc = time;
    my $gone = wait_for(sub { slow_active() == 0 }, timeout => 1.5, interval => 0.05);
    ok($gone, sprintf('client gone: no backend runs slow() within 1.5 s (%.2f s)', time - $tc))
        or diag(join "\n", $t->psql(q{select pid, state, query from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid()}));
    my $r;
    wait_for(sub { $r = rpc('GET', '/rpc/add_them?a=20&b=22', undef, 3); $r && $r->{status} == 200 },
        timeout => 3, interval => 0.1);
    ok($r && $r->{status} == 200 && time - $tc < 3, 'the connection serves again after the cancel')
        or diag($r ? $r->{raw} : 'no response');
}
$t->stop;

# ---------------------------------------------------------------------------
# request_timeout 1s
# ---------------------------------------------------------------------------

$t->write_config(config => { server => { workers => 1 }, database => { %DB, request_timeout => '1s' } });
start_daemon('request_timeout 1s');
{
    my $p = send_rpc('POST', '/rpc/slow', '{"seconds":10}');
    my $deadline = $p->{t0} + 1;
    my $r = finish_rpc($p, 5);
    my $j = error_ok($r, 504, '57014', 'request_timeout with slow(10)');
    ok($r && $r->{elapsed} >= 0.9 && $r->{elapsed} < 2.0,
        sprintf('504 after about 1 s (%.2f s)', $r ? $r->{elapsed} : -1));
    like($r && $r->{headers}{'content-type'}, qr{^application/json}, '504: JSON');
    my $gone = wait_for(sub { slow_active() == 0 }, timeout => $deadline + 1 - time, interval => 0.05);
    ok($gone, sprintf('the backend is no longer active within 1 s after the deadline (%.2f s after it)',
        time - $deadline))
        or diag(join "\n", $t->psql(q{select pid, state, query from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid()}));
    my $r2;
    wait_for(sub { $r2 = rpc('GET', '/rpc/add_them?a=20&b=22', undef, 3); $r2 && $r2->{status} == 200 },
        timeout => 3, interval => 0.1);
    ok($r2 && $r2->{status} == 200, 'the connection serves again after the cancel')
        or diag($r2 ? $r2->{raw} : 'no response');
    # A statement that ends in time is not affected.
    $r2 = rpc('POST', '/rpc/slow', '{"seconds":0.3}');
    ok($r2 && $r2->{status} == 200 && $r2->{body} eq '1', 'slow(0.3) within request_timeout: 200')
        or diag($r2 ? $r2->{raw} : 'no response');
}
$t->stop;

# ---------------------------------------------------------------------------
# statement_timeout 300ms (set per transaction)
# ---------------------------------------------------------------------------

$t->write_config(config => { server => { workers => 1 },
    database => { %DB, request_timeout => '10s', statement_timeout => '300ms' } });
start_daemon('statement_timeout 300ms');
{
    my $r = rpc('POST', '/rpc/slow', '{"seconds":5}');
    ok($r, 'statement_timeout: got a response') or diag('no response');
    $r //= { status => 0, body => '', raw => '', elapsed => 99 };
    my $j = eval { $JSON->decode($r->{body}) } // {};
    is($j->{code}, '57014', 'statement_timeout: code 57014') or diag($r->{raw});
    like($j->{message} // '', qr/statement timeout/, 'statement_timeout: PostgreSQL\'s message');
    # PostgREST maps 57* to 500; apiary answers its own request_timeout
    # with 504. Either is a server-side timeout, not the client's fault.
    ok($r && ($r->{status} == 500 || $r->{status} == 504), "statement_timeout: status $r->{status} (500 or 504)");
    ok($r && $r->{elapsed} < 1.5, sprintf('statement_timeout: after about 0.3 s (%.2f s)', $r->{elapsed}));
    # pgBouncer hands out its most recently used server connection: the
    # one apiary's statement ran on.
    is($t->psql('show statement_timeout', user => 'authenticator', via => 'pgbouncer'), '0',
        'SET LOCAL: the server connection behind pgBouncer keeps the default statement_timeout');
    add_them_ok('after a statement_timeout');
}

done_testing;
