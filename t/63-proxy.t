#!/usr/bin/perl
# The real client behind proxies: X-Forwarded-For (and Forwarded) honoured
# only from [security] trusted_proxies, walked right to left; the PROXY
# protocol v1 and v2 on listeners with proxy_protocol (valid headers of
# each kind, split across packets, followed at once by the request;
# garbage, a missing header and a stalled one close the connection). What
# the rate limits and the per-address connection limit count is that
# client: every check below is a bucket or a count keyed by it.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

# Started, and every worker ready (its pool up and its schema cache
# loaded): a worker still starting would answer the API with 503.
sub start_ready($d) {
    $d->run(timeout => 15);
    my $n = $d->expected_workers;
    wait_for(sub { my $s = $d->status_json; $s && ($s->{master}{ready_workers} // 0) == $n },
        timeout => 20, interval => 0.1)
        or BAIL_OUT('the workers did not all get ready: ' . $d->log_tail);
}

my $H = "Host: localhost\r\n";
my $Q = '/tasks?select=id&limit=1';
my $SIG = "\r\n\r\n\0\r\nQUIT\n";

sub v2_tcp4($src, $sport = 4711) {
    my $body = pack('C4 C4 n n', split(/\./, $src), 127, 0, 0, 1, $sport, 80);
    return $SIG . pack('C C n', 0x21, 0x11, length $body) . $body;
}
sub v2_tcp6($src16) {
    my $body = $src16 . ("\0" x 15) . "\1" . pack('n n', 1234, 80);
    return $SIG . pack('C C n', 0x21, 0x21, length $body) . $body;
}
sub v2_local() { $SIG . pack('C C n', 0x20, 0x00, 0) }
sub v1($src) { "PROXY TCP4 $src 127.0.0.1 5555 80\r\n" }

my %conf = (
    server => { workers => 2, header_timeout => '2s' },
    security => {
        trusted_proxies             => '127.0.0.1, 10.0.0.0/8',
        rate_limit_api              => '1r/m burst=2',
        max_connections_per_address => 2,
    },
);
my $t = Apiary::Test->new(db => 1, ports => 2, config => \%conf, name => '63-proxy.t');
# The second port speaks the PROXY protocol.
$conf{server}{listen} = ['127.0.0.1:' . $t->port(0), '127.0.0.1:' . $t->port(1) . ' proxy_protocol'];
$t->write_config(config => \%conf);
start_ready($t);

# One request on a fresh connection: from $o{local}, to $o{port}, after
# $o{pre} (a PROXY header), with extra header lines $o{h}.
sub req(%o) {
    my $c = $t->connect(local => $o{local} // '127.0.0.1', port => $o{port} // $t->port(0));
    $c->send(($o{pre} // '') . "GET " . ($o{path} // $Q) . " HTTP/1.1\r\n$H" . ($o{h} // '')
        . "Connection: close\r\n\r\n");
    my $r = $c->read_response(timeout => 4);
    $c->close;
    return $r ? $r->{status} : 0;
}
sub statuses($n, %o) { join ' ', map { req(%o) } 1 .. $n }

# --- X-Forwarded-For from a trusted proxy: the bucket is the client's.
is(statuses(3, h => "X-Forwarded-For: 198.51.100.1\r\n"), '200 200 429',
    'trusted proxy: the XFF client has a bucket of 2');
is(req(h => "X-Forwarded-For: 198.51.100.2\r\n"), 200, 'another XFF client: its own bucket');
like($t->read_file($t->error_log), qr/refused a request from 198\.51\.100\.1\b/,
    'the refusal is logged with the forwarded client address');
is(statuses(3, local => '127.0.0.2', h => "X-Forwarded-For: 198.51.100.3\r\n"), '200 200 429',
    'untrusted peer: XFF ignored ...');
is(req(local => '127.0.0.2', h => "X-Forwarded-For: 198.51.100.4\r\n"), 429,
    '... a new XFF value does not give a fresh bucket (the peer is the client)');

# The chain, right to left.
is(statuses(2, h => "X-Forwarded-For: 203.0.113.66, 198.51.100.5, 10.9.9.9\r\n"), '200 200',
    'chain: trusted 10.9.9.9 is skipped, 198.51.100.5 is the client');
is(req(h => "X-Forwarded-For: 198.51.100.5\r\n"), 429, '... the same bucket as 198.51.100.5 alone');
is(req(h => "X-Forwarded-For: 198.51.100.5, 198.51.100.6\r\n"), 200,
    'a client cannot pick its address: what it puts left of the last untrusted hop is ignored');
is(statuses(2, h => "X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: 10.0.0.1\r\n"), '200 200',
    'several X-Forwarded-For lines form one chain');
is(req(h => "X-Forwarded-For: 198.51.100.7\r\n"), 429, '... whose client was 198.51.100.7');
is(statuses(3, h => "X-Forwarded-For: garbage, 10.1.1.1\r\n"), '200 200 429',
    'garbage in the chain: the last trusted hop is the client');
is(req(h => "X-Forwarded-For: 10.1.1.1\r\n"), 429, '... namely 10.1.1.1');
is(statuses(2, h => "Forwarded: for=198.51.100.8\r\n"), '200 200',
    'Forwarded is not read when forwarded_header is x-forwarded-for ...');
is(req(h => "Forwarded: for=198.51.100.9\r\n"), 429, '... (the bucket is the peer\'s, 127.0.0.1)');

# --- PROXY protocol.
is(statuses(3, port => $t->port(1), pre => v1('203.0.113.7')), '200 200 429',
    'PROXY v1: the source address is the client');
is(req(port => $t->port(1), pre => v1('203.0.113.17'), h => "X-Forwarded-For: 10.0.0.9\r\n"), 200,
    'PROXY v1 from an untrusted source: a bucket of its own');
is(req(port => $t->port(1), pre => v1('203.0.113.17'), h => "X-Forwarded-For: 198.51.100.99\r\n"), 200,
    '... and its X-Forwarded-For is ignored (same bucket, second request)');
is(req(port => $t->port(1), pre => v1('203.0.113.17')), 429, '... third: refused');
is(statuses(2, port => $t->port(1), pre => v1('10.2.2.2'), h => "X-Forwarded-For: 198.51.100.10\r\n"),
    '200 200', 'PROXY source in trusted_proxies: the walk goes on into X-Forwarded-For');
is(req(h => "X-Forwarded-For: 198.51.100.10\r\n"), 429, '... the client was 198.51.100.10');

is(statuses(3, port => $t->port(1), pre => v2_tcp4('203.0.113.8')), '200 200 429', 'PROXY v2 TCP4');
is(statuses(3, port => $t->port(1), pre => v2_tcp6(pack('H*', '20010db8000000080000000000000001'))),
    '200 200 429', 'PROXY v2 TCP6');
is(req(port => $t->port(1), pre => v2_tcp6(pack('H*', '20010db80000000800000000000000ff'))), 429,
    '... one bucket per IPv6 /64');
is(req(port => $t->port(1), pre => v2_local(), path => '/live'), 200,
    'PROXY v2 LOCAL (a health check of the balancer): served');
is(req(port => $t->port(1), pre => v2_local()), 429, '... as the balancer itself (127.0.0.1, out of tokens)');
is(req(port => $t->port(1), pre => "PROXY UNKNOWN\r\n", path => '/live'), 200, 'PROXY v1 UNKNOWN: served');

# Split across packets, byte by byte, and pipelined with the request.
{
    my $c = $t->connect(port => $t->port(1));
    $c->send($_), sleep 0.01 for split //, v1('203.0.113.30');
    $c->send("GET /live HTTP/1.1\r\n$H\r\n");
    my $r = $c->read_response(timeout => 3);
    is($r && $r->{status}, 200, 'a v1 header sent byte by byte');
    $c->close;
    $c = $t->connect(port => $t->port(1));
    $c->send(v2_tcp4('203.0.113.31') . "GET /live HTTP/1.1\r\n$H\r\n" . "GET /live HTTP/1.1\r\n$H\r\n");
    my @r = ($c->read_response(timeout => 3), $c->read_response(timeout => 3));
    ok($r[0] && $r[1] && $r[0]{status} == 200 && $r[1]{status} == 200,
        'a v2 header and two pipelined requests in one packet');
    $c->close;
}

# Bad or missing headers: closed, no answer.
for my $case (['garbage', "GARBAGE\r\n\r\n"], ['a plain request', "GET /live HTTP/1.1\r\n$H\r\n"],
              ['v1 with a bad address', "PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\nGET /live HTTP/1.1\r\n$H\r\n"],
              ['v2 version 1', $SIG . pack('C C n', 0x11, 0x11, 0)],
              ['v1 over 107 bytes', 'PROXY TCP4 ' . ('1' x 120) . "\r\n"]) {
    my ($data, $info) = $t->http_ex($case->[1], port => $t->port(1), timeout => 3);
    ok($info->{closed} && $data eq '', "$case->[0]: closed without an answer")
        or diag(length($data) . " bytes: $data");
}
{
    my $c = $t->connect(port => $t->port(1));
    $c->send('PROXY TCP4 203.0.');
    my $s = time;
    ok($c->wait_closed(timeout => 5), 'a header that stalls: closed ...');
    my $d = time - $s;
    ok($d > 1.5 && $d < 4, sprintf('... at header_timeout (2 s): %.2f s', $d));
    is($c->{buf}, '', '... without an answer');
    $c->close;
}
like($t->http("GET /metrics HTTP/1.1\r\n${H}Connection: close\r\n\r\n", port => $t->admin_port),
    qr/^apiary_connections_refused_total\{reason="proxy_protocol"\} 5$/m,
    'apiary_connections_refused_total{reason="proxy_protocol"}: the 5 bad headers');

# A PROXY header on a plain listener is a bad request.
{
    my ($r) = parse_responses($t->http(v1('203.0.113.9') . "GET /live HTTP/1.1\r\n$H\r\n"));
    is($r && $r->{status}, 400, 'a PROXY header on a listener without proxy_protocol: 400');
}

# The per-address connection limit counts the PROXY source, not the balancer.
{
    my @held;
    for my $i (1 .. 2) {
        my $c = $t->connect(port => $t->port(1));
        $c->send(v1('203.0.113.40') . "GET /live HTTP/1.1\r\n$H\r\n");
        my $r = $c->read_response(timeout => 3);
        ok($r && $r->{status} == 200, "PROXY client 203.0.113.40, connection $i: served");
        push @held, $c;
    }
    my $c = $t->connect(port => $t->port(1));
    $c->send(v1('203.0.113.40'));
    my $r = $c->read_response(timeout => 3);
    is($r && $r->{status}, 503, 'its third connection: 503 (max_connections_per_address = 2)');
    $c->close;
    $c = $t->connect(port => $t->port(1));
    $c->send(v1('203.0.113.41') . "GET /live HTTP/1.1\r\n$H\r\n");
    $r = $c->read_response(timeout => 3);
    is($r && $r->{status}, 200, 'another PROXY client through the same balancer: served');
    $c->close;
    my @plain = map { my $x = $t->connect; $x->send("GET /live HTTP/1.1\r\n$H\r\n");
                      [$x, $x->read_response(timeout => 3)] } 1 .. 3;
    is(scalar(grep { $_->[1] && $_->[1]{status} == 200 } @plain), 3,
        'a trusted proxy (127.0.0.1) is not held to the per-address limit');
    $_->[0]->close for @plain;
    $_->close for @held;
}
$t->stop;

# forwarded_header = forwarded: RFC 7239 instead of X-Forwarded-For.
my $f = Apiary::Test->new(
    db => 1,
    config => {
        server => { workers => 1 },
        security => { trusted_proxies => '127.0.0.1', forwarded_header => 'forwarded',
                      rate_limit_api => '1r/m burst=1' },
    },
    name => '63-proxy.t (Forwarded)',
);
start_ready($f);
$t = $f;
is(statuses(2, h => "Forwarded: for=198.51.100.30;proto=https\r\n"), '200 429', 'Forwarded: for=');
is(req(h => "Forwarded: for=\"[2001:db8::30]:443\"\r\n"), 200, 'Forwarded: a quoted IPv6 client');
is(req(h => "Forwarded: for=198.51.100.31, for=127.0.0.1\r\n"), 200,
    'Forwarded: a chain through the trusted proxy');
is(statuses(2, h => "X-Forwarded-For: 198.51.100.32\r\n"), '200 429',
    'X-Forwarded-For is not read then (the peer\'s bucket)');
$f->stop;

# -t.
my $bad = Apiary::Test->new(raw => "[server]\nlisten = 127.0.0.1:%%PORT_0%% proxy_protocol=on\n",
    name => '63-proxy.t (-t)');
my ($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
like($err, qr/apiary\.conf:2: server\.listen: unknown listen flag .*proxy_protocol/, 'a bad listen flag')
    or diag($err);
$bad->write_config(raw => "[server]\nlisten = 127.0.0.1:%%PORT_0%% proxy_protocol backlog=8\n"
    . "[security]\ntrusted_proxies = 10.0.0.0/8 192.168.0.0/33\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
is($code, 1, '-t refuses a bad trusted_proxies prefix');
like($err, qr{apiary\.conf:4: security\.trusted_proxies: an IPv4 prefix length is at most 32, got "192\.168\.0\.0/33"},
    '... naming it at its line') or diag($err);
$bad->write_config(raw => "[server]\nlisten = 127.0.0.1:%%PORT_0%% proxy_protocol\n"
    . "[security]\nforwarded_header = x-real-ip\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
like($err, qr/apiary\.conf:4: security\.forwarded_header: expected x-forwarded-for or forwarded/,
    'a bad forwarded_header') or diag($err);
$bad->write_config(raw => "[server]\nlisten = 127.0.0.1:%%PORT_0%% proxy_protocol\n"
    . "[security]\ntrusted_proxies = 10.0.0.0/8, ::1\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
is($code, 0, '-t accepts a proxy_protocol listener and a list of trusted proxies') or diag($err);

done_testing;
