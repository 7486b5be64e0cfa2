#!/usr/bin/perl
# HTTP/1.x behaviour of a worker: /live, HEAD, 404/405 JSON errors,
# keep-alive, HTTP/1.0, pipelining, Expect: 100-continue, chunked bodies,
# every limit (414, 431, 413, 408, 505, 501) and the idle timeouts.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $t = Apiary::Test->new(
    config => {
        server => {
            workers => 2,
            header_timeout => '1s',
            body_timeout => '1s',
            keepalive_timeout => '2s',
            max_uri_size => '1k',
            max_header_size => '4k',
            max_headers => 20,
            max_body_size => '1k',
        },
    },
    name => '30-http.t',
);
$t->run;

my $H = "Host: localhost\r\n";
my $LIVE = "GET /live HTTP/1.1\r\n$H\r\n";
my $LIVE_BODY = '{"status":"ok"}';

# Date, Server and Content-Length on every final response.
sub common_ok($r, $name, %o) {
    ok(imf_date_ok($r->{headers}{date}), "$name: Date is an IMF-fixdate close to now")
        or diag('Date: ' . ($r->{headers}{date} // 'missing'));
    is($r->{headers}{server}, $o{server} // 'apiary', "$name: Server header")
        unless exists $o{server} && !defined $o{server};
    ok(!exists $r->{headers}{server}, "$name: no Server header")
        if exists $o{server} && !defined $o{server};
    like($r->{headers}{'content-length'} // '', qr/^\d+$/, "$name: Content-Length");
    is($r->{header_count}{'content-length'} // 0, 1, "$name: one Content-Length");
    is(length $r->{body}, $r->{headers}{'content-length'}, "$name: body matches Content-Length")
        unless $o{head};
}

# A JSON error response as SPEC.md describes it.
sub error_ok($r, $status, $name, %o) {
    ok($r, "$name: got a response") or return;
    is($r->{status}, $status, "$name: status $status") or diag($r->{raw});
    my @reasons = $status == 413 ? ('Content Too Large', 'Payload Too Large') : (reason_phrase($status));
    ok((grep { $_ eq $r->{reason} } @reasons), "$name: reason phrase '$r->{reason}'");
    common_ok($r, $name);
    like($r->{headers}{'content-type'} // '', qr{^application/json(?:;|$)}, "$name: JSON content type");
    my $j = decode_json_body($r);
    ok(ref $j eq 'HASH', "$name: body is a JSON object") or return diag($r->{body});
    is_deeply([sort keys %$j], [qw(code details hint message)], "$name: code, message, details, hint");
    is($j->{code}, "AP$status", "$name: code AP$status");
    is($j->{message}, $r->{reason}, "$name: message is the reason phrase");
    ok(!defined $j->{details} || !ref $j->{details}, "$name: details is a string or null");
    ok(exists $j->{hint} && !defined $j->{hint}, "$name: hint is null");
    if ($o{close}) {
        is(lc($r->{headers}{connection} // ''), 'close', "$name: Connection: close");
    }
    return $j;
}

sub live_ok($name) {
    my $r = eval { $t->get('/live') };
    ok($r && $r->{status} == 200, "$name: /live still answers on a fresh connection")
        or diag($@ || ($r ? $r->{raw} : 'no response'));
}

# Sends $raw on a fresh connection (or the given parts), reads the first
# final response and checks that the server closed the connection after it.
sub request_closing($raw, $status, $name, %o) {
    my $c = $t->connect;
    my $t0 = time;
    if ($o{parts}) {
        for my $p (@{$o{parts}}) { ref $p ? sleep $$p : $c->send($p) }
    } else {
        $c->send($raw);
    }
    my $r = $c->read_response(timeout => $o{timeout} // 3, head => $o{head});
    $r = $c->read_response(timeout => 3) while $r && $r->{status} < 200;
    my $elapsed = time - $t0;
    error_ok($r, $status, $name, close => 1);
    ok($c->wait_closed(timeout => 2), "$name: connection closed") if $r;
    $c->close;
    return ($r, $elapsed);
}

# ---------------------------------------------------------------------------
# /live, HEAD, 404, 405
# ---------------------------------------------------------------------------

subtest 'GET /live' => sub {
    my $r = $t->get('/live');
    ok($r, 'response') or return;
    is($r->{status}, 200, 'status 200');
    is($r->{status_line}, 'HTTP/1.1 200 OK', 'status line');
    is($r->{body}, $LIVE_BODY, 'body {"status":"ok"}');
    like($r->{headers}{'content-type'} // '', qr{^application/json(?:;|$)}, 'Content-Type: application/json');
    common_ok($r, 'GET /live');
    is(lc($r->{headers}{connection} // ''), 'close', 'Connection: close echoed for a closing request');
};

subtest 'GET /live?query' => sub {
    my $r = $t->get('/live?probe=1');
    is($r && $r->{status}, 200, 'a query string does not change the route');
};

subtest 'absolute-form request target (RFC 9112 3.2.2)' => sub {
    my @r = $t->keepalive(["GET http://localhost/live HTTP/1.1\r\n$H\r\n"]);
    is($r[0] && $r[0]{status}, 200, 'GET http://localhost/live answers 200');
};

subtest 'HEAD /live' => sub {
    my @r = $t->keepalive(["HEAD /live HTTP/1.1\r\n$H\r\n", $LIVE]);
    ok($r[0], 'HEAD response') or return;
    is($r[0]{status}, 200, 'HEAD: 200');
    is($r[0]{headers}{'content-length'}, length $LIVE_BODY, 'HEAD: Content-Length of the GET body');
    common_ok($r[0], 'HEAD /live', head => 1);
    # If HEAD had sent a body, the next response would not parse.
    ok($r[1] && $r[1]{status} == 200 && $r[1]{body} eq $LIVE_BODY,
        'HEAD sent no body: the next response on the connection is intact');
    my @e = $t->keepalive(["HEAD /nope HTTP/1.1\r\n$H\r\n", $LIVE]);
    is($e[0] && $e[0]{status}, 404, 'HEAD /nope: 404');
    ok($e[0] && $e[0]{headers}{'content-length'} > 0, 'HEAD /nope: Content-Length of the error body');
    ok($e[1] && $e[1]{status} == 200 && $e[1]{body} eq $LIVE_BODY, 'HEAD /nope sent no body');
};

subtest '404 Not Found' => sub {
    my $c = $t->connect;
    $c->send("GET /nope HTTP/1.1\r\n$H\r\n");
    my $r = $c->read_response;
    my $j = error_ok($r, 404, 'GET /nope');
    like($j->{details} // '', qr{/nope}, '404: details names the path') if $j;
    ok($r && ($r->{headers}{connection} // '') !~ /close/i, '404: keeps the connection');
    $c->send($LIVE);
    my $r2 = $c->read_response;
    is($r2 && $r2->{status}, 200, '404: connection still usable');
};

subtest '405 Method Not Allowed' => sub {
    for my $m ('POST', 'PUT', 'DELETE') {
        my @r = $t->keepalive(["$m /live HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n"]);
        error_ok($r[0], 405, "$m /live");
        my $allow = $r[0] ? ($r[0]{headers}{allow} // '') : '';
        is(join(',', sort map { s/^\s+|\s+$//gr } split /,/, $allow), 'GET,HEAD', "$m /live: Allow: GET, HEAD");
    }
};

# ---------------------------------------------------------------------------
# Persistent connections
# ---------------------------------------------------------------------------

subtest 'keep-alive: 3 requests on one connection' => sub {
    my $conn;
    my @r = $t->keepalive([$LIVE, "GET /nope HTTP/1.1\r\n$H\r\n", $LIVE], conn => \$conn);
    is_deeply([map { $_ ? $_->{status} : 'none' } @r], [200, 404, 200], 'three answers in order');
    ok(!grep({ $_ && ($_->{headers}{connection} // '') =~ /close/i } @r), 'none says Connection: close');
    ok($conn && !$conn->is_closed, 'connection still open');
    $conn->close if $conn;
};

subtest 'HTTP/1.0 closes' => sub {
    my $c = $t->connect;
    $c->send("GET /live HTTP/1.0\r\n\r\n");
    my $r = $c->read_response;
    is($r && $r->{status}, 200, 'HTTP/1.0 request answered');
    ok($r && ($r->{headers}{connection} // '') !~ /keep-alive/i, 'no Connection: keep-alive');
    ok($c->wait_closed(timeout => 2), 'connection closed after the response');
};

subtest 'HTTP/1.0 with Connection: keep-alive stays open' => sub {
    my $c = $t->connect;
    $c->send("GET /live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    my $r = $c->read_response;
    is($r && $r->{status}, 200, 'first request answered');
    is(lc(($r && $r->{headers}{connection}) // ''), 'keep-alive', 'Connection: keep-alive in the response');
    $c->send("GET /live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    my $r2 = $c->read_response;
    is($r2 && $r2->{status}, 200, 'second request on the same connection answered');
};

subtest 'Connection: close' => sub {
    my $c = $t->connect;
    $c->send("GET /live HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    my $r = $c->read_response;
    is($r && $r->{status}, 200, 'answered');
    is(lc(($r && $r->{headers}{connection}) // ''), 'close', 'Connection: close in the response');
    ok($c->wait_closed(timeout => 2), 'connection closed');
};

subtest 'pipelining' => sub {
    my $c = $t->connect;
    $c->send($LIVE . "GET /nope1 HTTP/1.1\r\n$H\r\n" . $LIVE);
    my @r = map { $c->read_response } 1 .. 3;
    is_deeply([map { $_ ? $_->{status} : 'none' } @r], [200, 404, 200], '/live, /nope1, /live answered in order');
    my $j = decode_json_body($r[1]);
    like($j && $j->{details} // '', qr{/nope1}, 'the 404 is the one for /nope1');

    # HEAD in a pipeline, and a request with a body before another.
    $c->send("HEAD /live HTTP/1.1\r\n$H\r\n" . $LIVE
        . "POST /upload HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello" . $LIVE);
    my $h = $c->read_response(head => 1);
    my @rest = map { $c->read_response } 1 .. 3;
    is_deeply([map { $_ ? $_->{status} : 'none' } $h, @rest], [200, 200, 404, 200],
        'HEAD, GET, POST with body, GET answered in order');
    is($rest[0] && $rest[0]{body}, $LIVE_BODY, 'the GET after HEAD is intact');
};

subtest 'request head arriving a few bytes at a time' => sub {
    my $c = $t->connect;
    for my $piece (unpack '(a3)*', $LIVE) {
        $c->send($piece);
        sleep 0.005;
    }
    my $r = $c->read_response;
    is($r && $r->{status}, 200, 'answered');
};

# ---------------------------------------------------------------------------
# Expect and request bodies
# ---------------------------------------------------------------------------

subtest 'Expect: 100-continue' => sub {
    my $c = $t->connect;
    $c->send("POST /upload HTTP/1.1\r\n${H}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    my $r = $c->read_response(timeout => 2);
    is($r && $r->{status_line}, 'HTTP/1.1 100 Continue', 'interim 100 Continue before the body');
    ok($r && !%{$r->{headers}} || ($r && !exists $r->{headers}{'content-length'}), '100 has no Content-Length');
    $c->send('hello');
    my $f = $c->read_response;
    error_ok($f, 404, 'final response after the body');
    $c->send($LIVE);
    my $r2 = $c->read_response;
    is($r2 && $r2->{status}, 200, 'connection still usable');
};

subtest 'Expect: 100-continue in HTTP/1.0 is ignored (RFC 9110 10.1.1)' => sub {
    my $c = $t->connect;
    $c->send("POST /upload HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
    my $r = $c->read_response;
    ok($r && $r->{status} != 100, 'no 100 Continue to an HTTP/1.0 client');
    is($r && $r->{status}, 404, 'final response');
};

subtest 'Expect: foo' => sub {
    my @r = $t->keepalive(["POST /upload HTTP/1.1\r\n${H}Content-Length: 5\r\nExpect: foo\r\n\r\n"]);
    error_ok($r[0], 417, 'Expect: foo');
    live_ok('Expect: foo');
};

subtest 'Expect: 100-continue with a too large Content-Length' => sub {
    my $c = $t->connect;
    $c->send("POST /upload HTTP/1.1\r\n${H}Content-Length: 2048\r\nExpect: 100-continue\r\n\r\n");
    my $r = $c->read_response(timeout => 2);
    ok($r && $r->{status} != 100, 'no 100 Continue');
    error_ok($r, 413, '100-continue, 2048 > max_body_size', close => 1);
    ok($c->wait_closed(timeout => 2), 'connection closed');
    live_ok('100-continue 413');
};

subtest 'Content-Length body' => sub {
    my $c = $t->connect;
    $c->send("POST /upload HTTP/1.1\r\n${H}Content-Length: 1024\r\n\r\n" . ('x' x 1024));
    my $r = $c->read_response;
    error_ok($r, 404, 'body of exactly max_body_size accepted');
    $c->send($LIVE);
    my $r2 = $c->read_response;
    is($r2 && $r2->{status}, 200, 'connection still usable');
};

subtest 'chunked request body' => sub {
    my $c = $t->connect;
    $c->send("POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    my $r = $c->read_response;
    error_ok($r, 404, 'chunked body');
    $c->send($LIVE);
    my $r2 = $c->read_response;
    is($r2 && $r2->{status}, 200, 'connection still usable after a chunked body');

    # Chunk extensions, a trailer, hex sizes in both cases, and a body cut
    # into several writes.
    $c->send("POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhel");
    sleep 0.05;
    $c->send("lo\r\nA\r\n0123456789\r\na\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n");
    $r = $c->read_response;
    error_ok($r, 404, 'chunked body with extension and trailer');
    $c->send($LIVE);
    $r2 = $c->read_response;
    is($r2 && $r2->{status}, 200, 'connection still usable after extensions and trailers');
};

# ---------------------------------------------------------------------------
# keepalive_requests, keepalive_timeout = 0, server_header = off
# ---------------------------------------------------------------------------

{
    my $k = Apiary::Test->new(config => { server => { workers => 1, keepalive_requests => 2 } },
        name => '30-http.t (keepalive_requests)');
    $k->run;
    subtest 'keepalive_requests = 2' => sub {
        my $c = $k->connect;
        $c->send($LIVE);
        my $r1 = $c->read_response;
        is($r1 && $r1->{status}, 200, 'first answered');
        ok($r1 && ($r1->{headers}{connection} // '') !~ /close/i, 'first keeps the connection');
        $c->send($LIVE);
        my $r2 = $c->read_response;
        is($r2 && $r2->{status}, 200, 'second answered');
        is(lc(($r2 && $r2->{headers}{connection}) // ''), 'close', 'second carries Connection: close');
        ok($c->wait_closed(timeout => 2), 'connection closed after the second');
    };
    is($k->stop, 0, 'keepalive_requests instance stops');
    $k->teardown;
}

{
    my $k = Apiary::Test->new(
        config => { server => { workers => 1, keepalive_timeout => 0, server_header => 'off' } },
        name => '30-http.t (keep-alive off)');
    $k->run;
    subtest 'keepalive_timeout = 0, server_header = off' => sub {
        my $c = $k->connect;
        $c->send($LIVE);
        my $r = $c->read_response;
        is($r && $r->{status}, 200, 'answered');
        common_ok($r, 'server_header = off', server => undef) if $r;
        is(lc(($r && $r->{headers}{connection}) // ''), 'close', 'Connection: close');
        ok($c->wait_closed(timeout => 2), 'connection closed');
        my $e = $k->get('/nope');
        ok($e && !exists $e->{headers}{server}, 'no Server header on an error response either');
    };
    is($k->stop, 0, 'keep-alive-off instance stops');
    $k->teardown;
}

# ---------------------------------------------------------------------------
# Limits: each answers and closes, and the server keeps serving.
# ---------------------------------------------------------------------------

subtest '414 URI Too Long' => sub {
    my @ok = $t->keepalive(["GET /" . ('a' x 1023) . " HTTP/1.1\r\n$H\r\n"]);
    is($ok[0] && $ok[0]{status}, 404, 'request-target of exactly max_uri_size (1024) is accepted');
    request_closing("GET /" . ('a' x 1024) . " HTTP/1.1\r\n$H\r\n", 414, 'request-target of 1025 bytes');
    live_ok('414');
};

subtest '431 head too large' => sub {
    my @ok = $t->keepalive(["GET /live HTTP/1.1\r\n${H}X-Pad: " . ('b' x 3000) . "\r\n\r\n"]);
    is($ok[0] && $ok[0]{status}, 200, 'a 3 KB head is accepted (max_header_size 4k)');
    request_closing("GET /live HTTP/1.1\r\n${H}X-Big: " . ('b' x 5000) . "\r\n\r\n", 431, 'a 5 KB header line');
    request_closing("GET /live HTTP/1.1\r\n$H" . join('', map { "X-H$_: " . ('c' x 400) . "\r\n" } 1 .. 12)
        . "\r\n", 431, 'twelve 400-byte headers');
    live_ok('431 too large');
};

subtest '431 too many headers' => sub {
    my $fields = sub ($n) { join '', map { "X-F$_: v\r\n" } 1 .. $n };
    my @ok = $t->keepalive(["GET /live HTTP/1.1\r\n$H" . $fields->(19) . "\r\n"]);
    is($ok[0] && $ok[0]{status}, 200, '20 header fields (max_headers) are accepted');
    request_closing("GET /live HTTP/1.1\r\n$H" . $fields->(20) . "\r\n", 431, '21 header fields');
    live_ok('431 too many');
};

subtest '413 Content-Length' => sub {
    my ($r, $elapsed) = request_closing("POST /upload HTTP/1.1\r\n${H}Content-Length: 1025\r\n\r\n",
        413, 'Content-Length 1025 > max_body_size, body not sent');
    ok($elapsed < 0.9, sprintf('413 at once, without waiting for the body (%.2f s)', $elapsed));
    request_closing("POST /upload HTTP/1.1\r\n${H}Content-Length: 1048576000\r\n\r\n" . ('x' x 100),
        413, 'Content-Length 1000 MB');
    live_ok('413 Content-Length');
};

subtest '413 chunked' => sub {
    my $c600 = sprintf("%x\r\n%s\r\n", 600, 'y' x 600);
    my $c500 = sprintf("%x\r\n%s\r\n", 500, 'y' x 500);
    my @ok = $t->keepalive(["POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n$c500${c500}0\r\n\r\n"]);
    is($ok[0] && $ok[0]{status}, 404, 'chunked body of 1000 bytes accepted');
    request_closing("POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n$c600${c600}0\r\n\r\n",
        413, 'chunked body of 1200 bytes');
    request_closing("POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n"
        . sprintf("%x\r\n", 4096) . ('z' x 2000), 413, 'one chunk announcing 4096 bytes');
    live_ok('413 chunked');
};

subtest '408 partial head' => sub {
    my ($r, $elapsed) = request_closing(undef, 408, 'head not finished within header_timeout',
        parts => ["GET /live HTTP/1.1\r\n$H"], timeout => 4);
    ok($elapsed >= 0.8 && $elapsed < 3, sprintf('408 after about header_timeout (%.2f s)', $elapsed));
    live_ok('408 head');
};

subtest '408 body stall' => sub {
    my ($r, $elapsed) = request_closing(undef, 408, 'body stalls longer than body_timeout',
        parts => ["POST /upload HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\n12345"], timeout => 4);
    ok($elapsed >= 0.8 && $elapsed < 3, sprintf('408 after about body_timeout (%.2f s)', $elapsed));
    live_ok('408 body');
};

subtest '505 HTTP Version Not Supported' => sub {
    request_closing("GET /live HTTP/2.0\r\n$H\r\n", 505, 'HTTP/2.0 request line');
    request_closing("GET /live HTTP/3.0\r\n$H\r\n", 505, 'HTTP/3.0 request line');
    live_ok('505');
};

subtest '501 Not Implemented' => sub {
    request_closing("POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n", 501, 'Transfer-Encoding: gzip');
    request_closing("POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        501, 'Transfer-Encoding: gzip, chunked');
    live_ok('501');
};

subtest 'a connection that sends nothing is closed silently' => sub {
    my $c = $t->connect;
    my $t0 = time;
    my $closed = $c->wait_closed(timeout => 4);
    my $elapsed = time - $t0;
    ok($closed, 'closed');
    is($c->{buf}, '', 'without a response');
    ok($elapsed >= 0.8 && $elapsed < 3, sprintf('after about header_timeout (%.2f s)', $elapsed));
    live_ok('silent close');
};

subtest 'an idle keep-alive connection is closed silently' => sub {
    my $c = $t->connect;
    $c->send($LIVE);
    my $r = $c->read_response;
    is($r && $r->{status}, 200, 'answered');
    my $t0 = time;
    my $closed = $c->wait_closed(timeout => 5);
    my $elapsed = time - $t0;
    ok($closed, 'closed');
    is($c->{buf}, '', 'without a response');
    ok($elapsed >= 1.5 && $elapsed < 4, sprintf('after about keepalive_timeout (%.2f s)', $elapsed));
    live_ok('keep-alive idle close');
};

is($t->stop, 0, 'TERM: master exits 0');
done_testing;
