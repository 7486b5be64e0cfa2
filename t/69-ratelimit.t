#!/usr/bin/perl
# Rate limits and connection limits ([security]): token buckets per client
# address in shared memory, so that a limit holds for the whole server
# whichever worker answers (exactly k of N+k refused); 429 with
# Retry-After, RateLimit-* and a JSON body; the RPC limit for paths that
# match rate_limit_rpc_paths; the allowlist; IPv4 clients apart (every
# 127.0.0.0/8 address is a client of its own); a full table evicting its
# oldest clients, bounded and without a crash; the accuracy of a limit
# under a steady hammering (the figure is printed); per-address and
# global connection limits answered 503 at the edge; the metrics.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $H = "Host: localhost\r\n";

# Started, and every worker ready (its pool up and its schema cache
# loaded): a worker still starting would answer the API with 503.
sub start($d) {
    $d->run(timeout => 15);
    my $n = $d->expected_workers;
    wait_for(sub { my $s = $d->status_json; $s && ($s->{master}{ready_workers} // 0) == $n },
        timeout => 20, interval => 0.1)
        or BAIL_OUT('the workers did not all get ready: ' . $d->log_tail);
}

# One request on a fresh connection from address $from.
sub get_from($t, $from, $path) {
    my $c = $t->connect(local => $from);
    $c->send("GET $path HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    my $r = $c->read_response(timeout => 5);
    $c->close;
    return $r;
}

# The worker (pid) that holds the server side of client connection $c.
sub worker_of($t, $c) {
    my $port = $c->local_port;
    my $socks = tcp_sockets();
    my ($ino) = grep { $socks->{$_}{remote_port} == $port && $socks->{$_}{local_port} == $t->port(0) }
        keys %$socks;
    return undef unless $ino;
    for my $w ($t->worker_pids) {
        my %fd = proc_fds($w);
        return $w if grep { $_ eq "socket:[$ino]" } values %fd;
    }
    return undef;
}

# Keep-alive connections from $from, one held by each of two workers.
sub one_per_worker($t, $from) {
    my (%by, @spare);
    for (1 .. 40) {
        my $c = $t->connect(local => $from);
        # Accepted once it answered a request.
        $c->send("GET /live HTTP/1.1\r\n$H\r\n");
        $c->read_response(timeout => 3) or next;
        my $w = worker_of($t, $c);
        if (defined $w && !$by{$w}) { $by{$w} = $c } else { push @spare, $c }
        last if keys %by == 2;
    }
    $_->close for @spare;
    return values %by;
}

sub metric($t, $re) {
    my ($r) = parse_responses($t->http("GET /metrics HTTP/1.1\r\n${H}Connection: close\r\n\r\n",
        port => $t->admin_port));
    return undef unless $r && $r->{status} == 200;
    my ($v) = $r->{body} =~ $re;
    return $v;
}

my $t = Apiary::Test->new(
    db => 1,
    config => {
        server   => { workers => 2 },
        security => {
            rate_limit_api       => '10r/m burst=10',
            rate_limit_rpc       => '3r/m',
            rate_limit_rpc_paths => '/rpc/add_them /rpc/login*',
            rate_limit_allow     => '127.0.0.2, 127.0.9.0/24',
        },
    },
    name => '69-ratelimit.t',
);
start($t);

# --- The bucket is shared: 11 requests alternating between two workers'
# connections; 10 pass, the 11th is refused.
{
    my @c = one_per_worker($t, '127.0.0.1');
    is(scalar @c, 2, 'two keep-alive connections, held by two different workers');
    my (@status, @remaining);
    for my $i (0 .. 10) {
        my $c = $c[$i % 2];
        $c->send("GET /tasks?select=id&limit=1 HTTP/1.1\r\n$H\r\n");
        my $r = $c->read_response(timeout => 5);
        push @status, $r ? $r->{status} : 0;
        push @remaining, $r ? $r->{headers}{'ratelimit-remaining'} // '-' : '-';
        if ($i == 10) {
            is($r->{status}, 429, 'the 11th request: 429 Too Many Requests');
            is($r->{reason}, 'Too Many Requests', 'reason phrase');
            like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/, 'Retry-After: seconds');
            ok($r->{headers}{'retry-after'} <= 6, 'Retry-After: at most one refill interval (6 s)')
                or diag($r->{headers}{'retry-after'});
            is($r->{headers}{'ratelimit-limit'}, '10', 'RateLimit-Limit: 10');
            is($r->{headers}{'ratelimit-remaining'}, '0', 'RateLimit-Remaining: 0');
            like($r->{headers}{'ratelimit-reset'} // '', qr/^\d+$/, 'RateLimit-Reset: seconds');
            like($r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON body');
            my $j = decode_json_body($r);
            is($j->{code}, 'AP429', 'code AP429');
            like($j->{details} // '', qr/security\.rate_limit_api allows 10 requests per minute, burst 10/,
                'details name the limit');
            is($r->{headers}{'x-frame-options'}, 'DENY', 'security headers on the 429');
            ok(!$c->is_closed, 'the connection stays open after a 429');
        }
    }
    is("@status", join(' ', (200) x 10, 429), '10 allowed, then refused, across both workers');
    is("@remaining", '9 8 7 6 5 4 3 2 1 0 0', 'RateLimit-Remaining counts down over both workers');
    $_->close for @c;
}

# Built-in endpoints are not limited; other addresses have their own bucket.
is(get_from($t, '127.0.0.1', '/live')->{status}, 200, '/live is not rate limited');
is(get_from($t, '127.0.0.3', '/tasks?select=id&limit=1')->{status}, 200,
    '127.0.0.3 has a bucket of its own');
my $r = get_from($t, '127.0.0.3', '/tasks?select=id&limit=1');
is($r->{headers}{'ratelimit-remaining'}, '8', '... and counts from 10');

# N+k requests on fresh connections (whichever worker takes each): exactly k refused.
{
    my ($ok, $refused) = (0, 0);
    for (1 .. 15) {
        my $s = get_from($t, '127.0.0.5', '/tasks?select=id&limit=1')->{status};
        $ok++ if $s == 200;
        $refused++ if $s == 429;
    }
    is("$ok/$refused", '10/5', '15 requests on 15 connections: exactly 5 refused');
}

# The allowlist.
{
    my @s = map { get_from($t, '127.0.0.2', '/tasks?select=id&limit=1')->{status} } 1 .. 14;
    is(scalar(grep { $_ == 200 } @s), 14, 'an allowlisted address is never limited');
    $r = get_from($t, '127.0.9.7', '/tasks?select=id&limit=1');
    ok($r->{status} == 200 && !exists $r->{headers}{'ratelimit-limit'},
        'an address in an allowlisted prefix: no limit, no RateLimit headers');
}

# The RPC limit for matching paths, apart from the API's.
{
    my @s = map { get_from($t, '127.0.0.4', '/rpc/add_them?a=1&b=2')->{status} } 1 .. 4;
    is("@s", '200 200 200 429', 'rate_limit_rpc: 3 per minute for /rpc/add_them');
    $r = get_from($t, '127.0.0.4', '/rpc/add_them?a=1&b=2');
    like(decode_json_body($r)->{details} // '', qr/security\.rate_limit_rpc allows 3 requests per minute/,
        'the 429 names the RPC limit');
    is($r->{headers}{'ratelimit-limit'}, '3', 'RateLimit-Limit: 3');
    is(get_from($t, '127.0.0.4', '/tasks?select=id&limit=1')->{status}, 200,
        'the API limit of the same client is apart');
    $r = get_from($t, '127.0.0.4', '/rpc/task?id=1');
    ok($r->{status} != 429 && ($r->{headers}{'ratelimit-limit'} // '') eq '10',
        'an RPC path that matches no pattern counts against the API limit');
    @s = map { get_from($t, '127.0.0.8', '/rpc/login_now')->{status} } 1 .. 4;
    is("@s", '404 404 404 429', 'a pattern with *: /rpc/login* matches /rpc/login_now '
        . '(the limit comes before the function lookup)');
    is(get_from($t, '127.0.0.8', '/rpc/log%69n_now')->{status}, 429,
        'a percent-encoded path is matched decoded, as the API reads it');
    is(get_from($t, '127.0.0.4', '/rpc/add%5Fthem?a=1&b=2')->{status}, 429,
        '... /rpc/add%5Fthem is /rpc/add_them');
}

is(metric($t, qr/^apiary_rate_limited_total\{limit="api"\} (\d+)$/m), 6,
    'apiary_rate_limited_total{limit="api"}: the 6 refusals');
is(metric($t, qr/^apiary_rate_limited_total\{limit="rpc"\} (\d+)$/m), 5,
    'apiary_rate_limited_total{limit="rpc"}: 5');
is(metric($t, qr/^apiary_rate_limit_table_capacity (\d+)$/m), 65536, 'table capacity 65536');
like($t->read_file($t->error_log) // '', qr/rate limit api: refused a request from 127\.0\.0\.5/,
    'a refusal is logged with the client address');
$t->stop;

# --- Accuracy under a steady hammering, and a full table.
my $u = Apiary::Test->new(
    db => 1,
    config => {
        server   => { workers => 2 },
        security => { rate_limit_api => '20r/s burst=5', rate_limit_table_size => 64 },
    },
    name => '69-ratelimit.t (accuracy, eviction)',
);
start($u);
{
    my @c = one_per_worker($u, '127.0.0.6');
    my ($allowed, $refused, $n) = (0, 0, 0);
    my $t0 = time;
    while (time - $t0 < 2.0 && $n < 40000) {
        my $i = $n % @c;
        $c[$i]->send("GET /rpc/add_them?a=1&b=2 HTTP/1.1\r\n$H\r\n");
        my $r = $c[$i]->read_response(timeout => 5) or last;
        # keepalive_requests ends a connection now and then: take another.
        $c[$i] = $u->connect(local => '127.0.0.6') if lc($r->{headers}{connection} // '') eq 'close';
        $n++;
        $allowed++ if $r->{status} == 200;
        $refused++ if $r->{status} == 429;
    }
    my $elapsed = time - $t0;
    my $expect = 5 + 20 * $elapsed;
    diag(sprintf('rate-limit accuracy: 20r/s burst=5 over %.2f s, %d requests at %.0f/s: '
        . '%d allowed, expected %.1f (%+.1f)', $elapsed, $n, $n / $elapsed, $allowed, $expect,
        $allowed - $expect));
    ok($n > 60, "the hammering sent $n requests (more than the limit allows)");
    ok(abs($allowed - $expect) <= 2, "allowed $allowed of $n: within 2 of 5 + 20/s x elapsed")
        or diag("expected $expect");
    is($allowed + $refused, $n, 'every other request was a 429');
    $_->close for @c;
}
{
    my @s = map { get_from($u, '127.0.0.10', '/rpc/add_them?a=1&b=2')->{status} } 1 .. 6;
    is($s[5], 429, '127.0.0.10 used its burst of 5');
    # 320 other clients, one request each, into a table of 64 entries.
    my $fails = 0;
    for my $i (0 .. 319) {
        my $a = sprintf('127.0.%d.%d', 20 + int($i / 200), 1 + $i % 200);
        my $x = eval { get_from($u, $a, '/rpc/add_them?a=1&b=2') };
        $fails++ unless $x && $x->{status} == 200;
    }
    is($fails, 0, '320 new clients, each allowed');
    my $evicted = metric($u, qr/^apiary_rate_limit_evictions_total (\d+)$/m) // 0;
    cmp_ok($evicted, '>=', 320 - 64, "the full table evicted its oldest entries ($evicted)");
    cmp_ok(metric($u, qr/^apiary_rate_limit_table_entries (\d+)$/m), '<=', 64,
        'it never holds more than its 64 entries');
    is(get_from($u, '127.0.0.10', '/rpc/add_them?a=1&b=2')->{status}, 200,
        '127.0.0.10 was forgotten: a fresh bucket');
    is($u->get('/live')->{status}, 200, 'the server is fine');
}
$u->stop;

# --- Connection limits.
my $v = Apiary::Test->new(
    config => { server => { workers => 2 }, security => { max_connections_per_address => 3 } },
    name => '69-ratelimit.t (per address)',
);
$v->run;
sub open_served($t, $from) {
    my $c = $t->connect(local => $from);
    $c->send("GET /live HTTP/1.1\r\n$H\r\n");
    my $r = $c->read_response(timeout => 3);
    return ($c, $r);
}
{
    my @held;
    for (1 .. 3) {
        my ($c, $r) = open_served($v, '127.0.0.20');
        ok($r && $r->{status} == 200, "connection $_ of 127.0.0.20 served");
        push @held, $c;
    }
    my $c = $v->connect(local => '127.0.0.20');
    my $r = $c->read_response(timeout => 3);
    ok($r, 'the 4th connection gets an answer without sending anything');
    is($r->{status}, 503, '... 503');
    is(decode_json_body($r)->{code}, 'AP503', '... with a JSON body');
    like(decode_json_body($r)->{details} // '', qr/max_connections_per_address/, '... naming the limit');
    is(lc($r->{headers}{connection} // ''), 'close', '... Connection: close');
    ok($c->wait_closed(timeout => 3), '... and the connection is closed');
    $c->close;
    my ($o, $or) = open_served($v, '127.0.0.21');
    is($or->{status}, 200, 'another address is served meanwhile');
    $o->close;
    (shift @held)->close;
    ok(wait_for(sub { my ($x, $xr) = open_served($v, '127.0.0.20'); my $ok = $xr && $xr->{status} == 200;
                      push @held, $x if $ok; $ok }, timeout => 3),
        'once one closes, 127.0.0.20 may open another');
    $_->close for @held;
    like($v->http("GET /metrics HTTP/1.1\r\n${H}Connection: close\r\n\r\n", port => $v->admin_port),
        qr/^apiary_connections_refused_total\{reason="per_address"\} [1-9]/m,
        'apiary_connections_refused_total{reason="per_address"}');
}
$v->stop;

my $g = Apiary::Test->new(
    config => { server => { workers => 2 }, security => { max_connections_total => 4 } },
    name => '69-ratelimit.t (total)',
);
$g->run;
{
    my @held;
    for my $i (1 .. 4) {
        my ($c, $r) = open_served($g, "127.0.0.3$i");
        ok($r && $r->{status} == 200, "connection $i of 4 served");
        push @held, $c;
    }
    my $c = $g->connect(local => '127.0.0.39');
    my $r = $c->read_response(timeout => 3);
    is($r && $r->{status}, 503, 'the 5th connection of the server: 503');
    like(decode_json_body($r)->{details} // '', qr/max_connections_total/, '... naming the limit');
    ok($c->wait_closed(timeout => 3), '... then closed');
    $c->close;
    (pop @held)->close;
    ok(wait_for(sub { my ($x, $xr) = open_served($g, '127.0.0.39'); my $ok = $xr && $xr->{status} == 200;
                      push @held, $x if $ok; $ok }, timeout => 3),
        'after one closes, a new connection is served');
    $_->close for @held;
}
$g->stop;

done_testing;
