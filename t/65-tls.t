#!/usr/bin/perl
# TLS on a "tls" listener, against certificates of a private CA made here
# with openssl: requests with IO::Socket::SSL and curl (keep-alive,
# pipelining, a POST body to /rpc), TLS 1.2 and 1.3, TLS 1.1 refused, ALPN,
# SNI with several certificates and a wildcard, HSTS on TLS responses only,
# session resumption across workers with the ticket keys in shared memory,
# a "redirect" listener, and the clients that must be closed cleanly and
# counted: handshake garbage, plain HTTP on the TLS port, a handshake that
# stalls (while the worker keeps serving), a TLS 1.2 renegotiation.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET ();
use IO::Socket::SSL ();
use JSON::PP ();
use IO::Select ();
use Net::SSLeay ();
use POSIX ();
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);
use Apiary::TLS qw(:all);

my $JSON = JSON::PP->new->utf8->canonical;

# Ports: 0 plain (the harness probes /live there), 1 tls, 2 redirect.
my $t = Apiary::Test->new(db => 1, ports => 3);
my $dir = $t->testdir;
my ($plain, $tport, $rport) = map { $t->port($_) } 0 .. 2;

my $ca = make_ca($dir);
my ($a_crt, $a_key) = make_cert($dir, 'a', names => ['a.test', 'localhost'], rsa => 1, serial => 0xA1);
my ($b_crt, $b_key) = make_cert($dir, 'b', names => ['b.test'], serial => 0xB2);
my ($w_crt, $w_key) = make_cert($dir, 'w', names => ['*.wild.test'], serial => 0xC3);
# An exact name wins over a wildcard that also matches it.
my ($x_crt, $x_key) = make_cert($dir, 'x', names => ['exact.wild.test'], serial => 0xD4);

$t->write_config(config => {
    server => {
        listen => ["127.0.0.1:$plain", "127.0.0.1:$tport tls", "127.0.0.1:$rport redirect"],
        workers => 2,
        header_timeout => '2s',
    },
    tls => {
        certificate => ["$a_crt $a_key", "$b_crt $b_key", "$w_crt $w_key", "$x_crt $x_key"],
        hsts => 'max-age=31536000; includeSubDomains; preload',
    },
});
$t->run(timeout => 15);
ok($t->wait_ready(timeout => 15), 'apiary is ready');

my %C = (port => $tport, ca => $ca);

# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------

{
    my ($r, $i) = tls_get(%C, sni => 'a.test');
    ok($r, 'GET /live over TLS') or diag($i->{error});
    is($r && $r->{status}, 200, 'GET /live over TLS: 200');
    is($r && $r->{body}, '{"status":"ok"}', 'GET /live over TLS: body');
    is($i->{version}, 'TLSv1_3', 'TLS 1.3 by default');
    is($i->{alpn}, 'http/1.1', 'ALPN: http/1.1');
    is($r && $r->{headers}{'strict-transport-security'},
        'max-age=31536000; includeSubDomains; preload', 'HSTS on a TLS response, as configured');
}

{
    my ($r, $i) = tls_get(%C, sni => 'a.test', version => 'TLSv1_2');
    is($r && $r->{status}, 200, 'TLS 1.2: 200') or diag($i->{error});
    is($i->{version}, 'TLSv1_2', 'TLS 1.2 negotiated when the client asks for it');
}

{
    my $m0 = metrics($t);
    # OpenSSL 3 clients need security level 0 to offer TLS 1.1 at all.
    my ($s, $err) = tls_connect(%C, sni => 'a.test', version => 'TLSv1_1',
        ciphers => 'DEFAULT:@SECLEVEL=0');
    ok(!$s, 'TLS 1.1 is refused') or diag($s->get_sslversion);
    like($err, qr/protocol version|unsupported protocol|no protocols available/i,
        'TLS 1.1: the server says protocol version') or diag($err);
    my $m1 = metrics($t);
    my $k = 'apiary_tls_handshake_failures_total{reason="version"}';
    is(($m1->{$k} // 0) - ($m0->{$k} // 0), 1, 'TLS 1.1: counted as reason="version"');
}

{
    my $m0 = metrics($t);
    my ($s, $err) = tls_connect(%C, sni => 'a.test', alpn => ['h2']);
    ok(!$s, 'ALPN offering h2 only is refused (we speak HTTP/1.1)');
    my $m1 = metrics($t);
    my $k = 'apiary_tls_handshake_failures_total{reason="alpn"}';
    is(($m1->{$k} // 0) - ($m0->{$k} // 0), 1, 'ALPN mismatch counted as reason="alpn"');
    my ($r) = tls_get(%C, sni => 'a.test', alpn => []);
    is($r && $r->{status}, 200, 'a client without ALPN is served');
}

# curl, with verification against the private CA and SNI from the URL.
{
    my $out = `curl -sS -v --max-time 10 --cacert $ca --resolve a.test:$tport:127.0.0.1 -D - https://a.test:$tport/live 2>&1`;
    like($out, qr{^HTTP/1\.1 200 OK\r?$}m, 'curl: 200') or diag($out);
    like($out, qr/ALPN: server accepted http\/1\.1|ALPN, server accepted to use http\/1\.1/,
        'curl: ALPN http/1.1');
    like($out, qr{^strict-transport-security: max-age=31536000; includeSubDomains; preload\r?$}mi,
        'curl: HSTS header');
    like($out, qr/SSL certificate verify ok/, 'curl: the chain verifies against the CA');
    my $v12 = `curl -sS --max-time 10 --cacert $ca --tlsv1.2 --tls-max 1.2 --resolve a.test:$tport:127.0.0.1 -w '%{http_code}' -o /dev/null https://a.test:$tport/live 2>&1`;
    is($v12, '200', 'curl --tls-max 1.2: 200');
}

# Keep-alive: three requests on one connection.
{
    my $s = tls_connect(%C, sni => 'a.test');
    my @st;
    for my $path ('/live', '/ready', '/live') {
        my $r = tls_request($s, "GET $path HTTP/1.1\r\nHost: a.test\r\n\r\n");
        push @st, $r ? $r->{status} : 'none';
        last unless $r;
    }
    is("@st", '200 200 200', 'keep-alive: three requests on one TLS connection');
    ok(!tls_closed($s), 'keep-alive: the connection stays open');
    $s->close(SSL_fast_shutdown => 1);
}

# Pipelining: three requests in one write, answers in order.
{
    my $s = tls_connect(%C, sni => 'a.test');
    tls_send($s, "GET /live HTTP/1.1\r\nHost: a\r\n\r\nHEAD /ready HTTP/1.1\r\nHost: a\r\n\r\n"
        . "GET /nope-no-such-table HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    my @r = (tls_read_response($s), tls_read_response($s, head => 1), tls_read_response($s));
    is(join(' ', map { $_ ? $_->{status} : 'none' } @r), '200 200 404',
        'pipelining: three answers in order');
    is($r[1] && $r[1]->{body}, '', 'pipelining: HEAD answered without a body');
    ok(!defined tls_read_response($s, timeout => 2) && tls_closed($s),
        'pipelining: closed after Connection: close');
}

# A POST body over TLS to the API, and what it did in the database.
{
    my $s = tls_connect(%C, sni => 'a.test');
    my $body = '{"a": 40, "b": 2}';
    my $r = tls_request($s, "POST /rpc/add_them HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body");
    is($r && $r->{status}, 200, 'POST /rpc/add_them over TLS: 200') or diag($r && $r->{raw});
    is($r && $r->{body}, '42', 'POST /rpc/add_them over TLS: 42');

    my $uid = $t->psql("select id from api.users order by id limit 1");
    $body = $JSON->encode({ user_id => $uid + 0, title => 'made over TLS' });
    $r = tls_request($s, "POST /rpc/create_task HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body");
    is($r && $r->{status}, 200, 'POST /rpc/create_task over TLS: 200') or diag($r && $r->{raw});
    is($t->psql("select count(*) from api.tasks where title = 'made over TLS'"), 1,
        'POST /rpc/create_task over TLS: the row is in the database');

    # A body of many TLS records each way, sent in pieces.
    my $big = $JSON->encode({ blob => 'x' x 300_000 });
    my $head = "POST /rpc/echo_json HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($big) . "\r\n\r\n";
    tls_send($s, $head);
    tls_send($s, substr($big, $_ * 100_000, 100_000)) for 0 .. int(length($big) / 100_000);
    $r = tls_read_response($s, timeout => 10);
    is($r && $r->{status}, 200, 'a 300 kB POST body echoed over TLS: 200') or diag($r && substr($r->{raw}, 0, 300));
    my $j = $r && eval { $JSON->decode($r->{body}) };
    is(length($j && $j->{blob} // ''), 300_000, 'a 300 kB POST body echoed over TLS: intact');
    $s->close(SSL_fast_shutdown => 1);
}

# TLS records that arrive a few bytes at a time: a proxy forwards what the
# client sends in pieces of 1 to 7 bytes, so every record (handshake and
# application data) is split across many reads of the server.
{
    my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 4,
        ReuseAddr => 1) or die "proxy listen: $!";
    my $pport = $ls->sockport;
    my $proxy = fork // die "fork: $!";
    if ($proxy == 0) {
        my $c = $ls->accept;
        my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tport) or POSIX::_exit(1);
        my $sel = IO::Select->new($c, $u);
        my $end = time + 20;
        while (time < $end) {
            for my $h ($sel->can_read(0.5)) {
                my $n = sysread($h, my $buf, 65536);
                POSIX::_exit(0) unless $n;
                if ($h == $u) { syswrite($c, $buf); next }
                while (length $buf) {
                    syswrite($u, substr($buf, 0, 1 + int(rand(7)), ''));
                    sleep 0.0005;
                }
            }
        }
        POSIX::_exit(0);
    }
    close $ls;
    my $s = tls_connect(%C, port => $pport, verify_name => 'a.test', sni => 'a.test', timeout => 10);
    ok($s, 'records in pieces: the handshake completes');
    my @st;
    if ($s) {
        tls_send($s, join '', map { "GET /live HTTP/1.1\r\nHost: a\r\n\r\n" } 1 .. 5);
        for (1 .. 5) {
            my $r = tls_read_response($s, timeout => 10);
            push @st, $r ? $r->{status} : 'none';
        }
        my $body = '{"a": 1, "b": 2}';
        my $r = tls_request($s, "POST /rpc/add_them HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            . "Connection: close\r\nContent-Length: " . length($body) . "\r\n\r\n$body", timeout => 10);
        push @st, $r ? "$r->{status}:$r->{body}" : 'none';
        $s->close(SSL_fast_shutdown => 1);
    }
    is("@st", '200 200 200 200 200 200:3', 'records in pieces: pipelined requests and a POST all answered');
    kill 'TERM', $proxy;
    waitpid($proxy, 0);
}

# ---------------------------------------------------------------------------
# SNI
# ---------------------------------------------------------------------------

for my $c (['a.test', 'A1', 'a.test'], ['localhost', 'A1', 'a.test'], ['b.test', 'B2', 'b.test'],
           ['B.TEST', 'B2', 'b.test'], ['x.wild.test', 'C3', '*.wild.test'],
           ['exact.wild.test', 'D4', 'exact.wild.test']) {
    my ($sni, $serial, $cn) = @$c;
    my ($r, $i) = tls_get(%C, sni => $sni);
    is($i->{serial}, $serial, "SNI $sni: certificate serial $serial") or diag($i->{error});
    is($i->{cn}, $cn, "SNI $sni: certificate $cn");
    is($r && $r->{status}, 200, "SNI $sni: 200");
}
for my $sni ('unknown.test', 'a.b.wild.test', undef) {
    my ($r, $i) = tls_get(port => $tport, sni => $sni);
    is($i->{serial}, 'A1', 'SNI ' . ($sni // '(none)') . ': the default (first) certificate');
}

# ---------------------------------------------------------------------------
# Resumption across workers, with the ticket keys in shared memory
# ---------------------------------------------------------------------------

for my $v ('TLSv1_3', 'TLSv1_2') {
    my $cache = tls_session();
    my $m0 = metrics($t);
    my ($r, $i) = tls_get(%C, sni => 'a.test', version => $v, session => $cache);
    ok($r && !$i->{reused}, "$v: the first connection is a full handshake");
    my $reused = 0;
    my $status = $t->status_json;
    my %before = map { $_->{pid} => $_->{requests} } @{$status->{workers} // []};
    for (1 .. 20) {
        ($r, $i) = tls_get(%C, sni => 'a.test', version => $v, session => $cache);
        $reused++ if $r && $r->{status} == 200 && $i->{reused};
    }
    is($reused, 20, "$v: 20 connections with the saved session: all resumed");
    $status = $t->status_json;
    my @served = grep { ($_->{requests} // 0) > ($before{$_->{pid}} // 0) } @{$status->{workers} // []};
    diag("$v: the resumed connections went to " . scalar(@served) . " of 2 workers");
    my $m1 = metrics($t);
    my $k = sprintf('apiary_tls_handshakes_total{protocol="%s",resumed="true"}', $v =~ s/_/./r);
    cmp_ok(($m1->{$k} // 0) - ($m0->{$k} // 0), '>=', 20, "$v: resumed handshakes counted");
}

# The conclusive case: sessions survive the workers that issued them. A
# reload replaces every worker; a session saved before resumes after.
{
    my $cache = tls_session();
    my ($r, $i) = tls_get(%C, sni => 'a.test', version => 'TLSv1_2', session => $cache);
    my @old = $t->worker_pids;
    my ($code, $out, $err) = $t->run_cmd('-c', $t->conf_path, '-s', 'reload', '--wait', { timeout => 60 });
    is($code, 0, 'reload --wait: exit 0') or diag($err);
    my %old = map { $_ => 1 } @old;
    ok(wait_for(sub { !grep { $old{$_} } $t->worker_pids }, timeout => 20),
        'after the reload no worker that issued the session is left');
    ($r, $i) = tls_get(%C, sni => 'a.test', version => 'TLSv1_2', session => $cache);
    ok($r && $r->{status} == 200 && $i->{reused}, 'a session issued by a replaced worker resumes');
}

# ---------------------------------------------------------------------------
# HSTS only on TLS; the redirect listener
# ---------------------------------------------------------------------------

{
    my $r = $t->get('/live');
    is($r && $r->{status}, 200, 'plain listener: 200');
    ok(!exists $r->{headers}{'strict-transport-security'}, 'plain listener: no HSTS header');

    $r = $t->get('/tasks?select=id&order=id.desc', port => $rport);
    my ($st, $h) = parse_response($t->http("GET /tasks?select=id&order=id.desc HTTP/1.1\r\n"
        . "Host: api.example.test:8080\r\nConnection: close\r\n\r\n", port => $rport));
    is($st, 301, 'redirect listener: GET answered 301');
    is($h->{location}, "https://api.example.test:$tport/tasks?select=id&order=id.desc",
        'redirect listener: same host and path on the https port');
    ok(!exists $h->{'strict-transport-security'}, 'redirect listener: no HSTS header over http');

    ($st, $h) = parse_response($t->http("POST /rpc/add_them HTTP/1.1\r\nHost: example.test\r\n"
        . "Content-Length: 2\r\nConnection: close\r\n\r\n{}", port => $rport));
    is($st, 308, 'redirect listener: POST answered 308 (the method is kept)');
    is($h->{location}, "https://example.test:$tport/rpc/add_them", 'redirect listener: POST location');

    ($st) = parse_response($t->http("GET / HTTP/1.0\r\n\r\n", port => $rport));
    is($st, 400, 'redirect listener: no Host header: 400');
    ($st) = parse_response($t->http("GET / HTTP/1.1\r\nHost: evil\"host\r\n\r\n", port => $rport));
    is($st, 400, 'redirect listener: a Host that is no host name: 400');
    ($st) = parse_response($t->http("GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port => $rport));
    is($st, 200, 'redirect listener: /live still answers (load balancers probe it)');

    my $out = `curl -sS -L --max-time 10 --cacert $ca --resolve a.test:$rport:127.0.0.1 --resolve a.test:$tport:127.0.0.1 'http://a.test:$rport/rpc/add_them?a=1&b=2' -w ' %{http_code} %{url_effective}' 2>&1`;
    is($out, "3 200 https://a.test:$tport/rpc/add_them?a=1&b=2", 'curl -L follows the redirect to https');
}

# ---------------------------------------------------------------------------
# Clients closed cleanly, and counted
# ---------------------------------------------------------------------------

sub raw_exchange($bytes, %o) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tport, Timeout => 3)
        or return (undef, undef);
    syswrite($s, $bytes) if length $bytes;
    my ($data, $t0) = ('', time);
    my $closed = 0;
    while (time - $t0 < ($o{timeout} // 5)) {
        IO::Select->new($s)->can_read(0.2) or next;
        my $n = sysread($s, my $chunk, 65536);
        if (!$n) { $closed = 1; last }
        $data .= $chunk;
    }
    return ($data, $closed, time - $t0);
}

{
    my $m0 = metrics($t);
    my ($data, $closed) = raw_exchange("\x16\x03\x01\x00\x30" . ("\xAB" x 48));
    ok($closed, 'handshake garbage: the connection is closed');
    like(unpack('H*', $data // ''), qr/^(15030[1-4]0002)?/, 'handshake garbage: at most an alert comes back');
    ($data, $closed) = raw_exchange("\x00\x01\x02 not TLS at all \r\n\r\n");
    ok($closed, 'bytes that are not TLS: the connection is closed');
    my $m1 = metrics($t);
    my $k = 'apiary_tls_handshake_failures_total{reason="protocol"}';
    is(($m1->{$k} // 0) - ($m0->{$k} // 0), 2, 'garbage counted as reason="protocol"');

    ($data, $closed) = raw_exchange("GET /live HTTP/1.1\r\nHost: a\r\n\r\n");
    my ($st, $h, $body) = parse_response($data);
    is($st, 400, 'plain HTTP on the TLS port: 400 in clear');
    like($body // '', qr/plain HTTP request was sent to an HTTPS port/, 'plain HTTP on the TLS port: says why');
    ok($closed, 'plain HTTP on the TLS port: then closed');
    my $m2 = metrics($t);
    $k = 'apiary_tls_handshake_failures_total{reason="plain_http"}';
    is(($m2->{$k} // 0) - ($m1->{$k} // 0), 1, 'counted as reason="plain_http"');
    my ($r) = tls_get(%C, sni => 'a.test');
    is($r && $r->{status}, 200, 'TLS still served after all that');
}

# A TLS 1.2 client that asks to renegotiate: refused, and closed.
{
    my $m0 = metrics($t);
    my $s = tls_connect(%C, sni => 'a.test', version => 'TLSv1_2');
    my $r = tls_request($s, "GET /live HTTP/1.1\r\nHost: a\r\n\r\n");
    is($r && $r->{status}, 200, 'renegotiation: a first request is served');
    my $ssl = $s->_get_ssl_object;
    Net::SSLeay::renegotiate($ssl);
    my $rc = Net::SSLeay::do_handshake($ssl);
    cmp_ok($rc, '<=', 0, 'renegotiation: the handshake is refused');
    $r = tls_request($s, "GET /live HTTP/1.1\r\nHost: a\r\n\r\n", timeout => 3);
    ok(!$r, 'renegotiation: the connection is closed');
    my $m1 = metrics($t);
    my $k = 'apiary_tls_handshake_failures_total{reason="renegotiation"}';
    is(($m1->{$k} // 0) - ($m0->{$k} // 0), 1, 'renegotiation counted');
}

# metrics: the TLS families are there, and promtool-clean in t/27.
{
    my $m = metrics($t);
    cmp_ok($m->{'apiary_tls_handshakes_total{protocol="TLSv1.3",resumed="false"}'} // 0, '>', 5,
        'TLS 1.3 full handshakes counted');
}

# ---------------------------------------------------------------------------
# A handshake that stalls is closed after header_timeout, and the only
# worker keeps serving meanwhile; tickets off means no resumption; no
# HSTS when off.
# ---------------------------------------------------------------------------

my $t1 = Apiary::Test->new(ports => 2);
$t1->write_config(config => {
    server => { listen => ['127.0.0.1:' . $t1->port(0), '127.0.0.1:' . $t1->port(1) . ' tls'],
                workers => 1, header_timeout => '1500ms' },
    tls => { certificate => "$a_crt $a_key", session_tickets => 'off', hsts => 'off' },
});
$t1->run(timeout => 15);
{
    my $port = $t1->port(1);
    my @stalled = map {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 3);
        # The start of a ClientHello, and then nothing.
        syswrite($s, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03") if $_ % 2;
        $s;
    } 1 .. 6;
    my $t0 = time;
    my ($ok, $slow) = (0, 0);
    while (time - $t0 < 1.2) {
        my $t1s = time;
        my ($r) = tls_get(port => $port, sni => 'a.test');
        $ok++ if $r && $r->{status} == 200;
        $slow++ if time - $t1s > 0.5;
        sleep 0.05;
    }
    cmp_ok($ok, '>=', 5, "stalled handshakes: the one worker keeps serving ($ok requests)");
    is($slow, 0, 'stalled handshakes: no request waits on them');
    my @closed_at;
    for my $s (@stalled) {
        my $end = '';
        if (IO::Select->new($s)->can_read(5)) { sysread($s, $end, 100); push @closed_at, time - $t0 }
    }
    is(scalar @closed_at, 6, 'stalled handshakes: all closed');
    ok(!grep({ $_ < 1.2 || $_ > 4 } @closed_at), 'stalled handshakes: closed after header_timeout (1.5 s)')
        or diag("@closed_at");
    my $m = metrics($t1);
    is($m->{'apiary_tls_handshake_failures_total{reason="timeout"}'}, 6, 'stalled handshakes counted as reason="timeout"');

    my $cache = tls_session();
    my $reused = 0;
    for (1 .. 3) {
        my ($r, $i) = tls_get(port => $port, sni => 'a.test', session => $cache);
        $reused++ if $i->{reused};
        ok(!exists $r->{headers}{'strict-transport-security'}, 'hsts = off: no header') if $_ == 1;
    }
    is($reused, 0, 'session_tickets = off: no session is resumed');
}

done_testing;
