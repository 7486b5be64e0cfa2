#!/usr/bin/perl
# Malformed and hostile requests (h2o's 40bad-request.t style): send the
# bytes on a fresh connection, expect the exact status SPEC.md gives (with
# the JSON error body and Connection: close) and the connection closed,
# then prove the server still answers /live on a new connection.
#
# Where SPEC.md is silent the expectation follows RFC 9112 and nginx; each
# such case says so in its comment.

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
            max_body_size => '1k',
        },
    },
    name => '31-malformed.t',
);
$t->run;

my $H = "Host: localhost\r\n";
my $POST_CHUNKED = "POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n";

# A TLS 1.2 ClientHello record (RFC 5246), truncated after the cipher suites.
my $CLIENT_HELLO = pack('H*',
    '16030100a5010000a10303' . ('ab' x 32) . '00' . '0020'
    . 'c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a00050004ff00'
    . '0100');

# [name, bytes (or array of bytes and \delay), expected status or 'close']
my @cases = (
    # --- request line ---
    # RFC 9112 knows no HTTP/0.9: a request line without a version is an
    # invalid request line (400), not a 505 for "version 0.9".
    ['missing HTTP version', "GET /live\r\n\r\n", 400],
    # "get" is a token, but methods are case-sensitive and no such method
    # exists; nginx and llhttp answer 400 (SPEC.md is silent).
    ['lowercase method', "get /live HTTP/1.1\r\n$H\r\n", 400],
    ['non-token character in method', "G(ET /live HTTP/1.1\r\n$H\r\n", 400],
    # RFC 9112 3 lets a recipient parse the request line on whitespace
    # boundaries, and nginx accepts several spaces here: answered, not 400.
    ['two spaces after the method', "GET  /live HTTP/1.1\r\n$H\r\n", 200],
    ['space inside the target', "GET /li ve HTTP/1.1\r\n$H\r\n", 400],
    ['extra token after the version', "GET /live HTTP/1.1 extra\r\n$H\r\n", 400],
    ['leading space', " GET /live HTTP/1.1\r\n$H\r\n", 400],
    ['tab as separator', "GET\t/live HTTP/1.1\r\n$H\r\n", 400],
    ['empty request target', "GET  HTTP/1.1\r\n$H\r\n", 400],
    ['origin-form target without "/"', "GET live HTTP/1.1\r\n$H\r\n", 400],
    ['control character in the target', "GET /li\x01ve HTTP/1.1\r\n$H\r\n", 400],
    ['DEL in the target', "GET /li\x7fve HTTP/1.1\r\n$H\r\n", 400],
    ['NUL in the target', "GET /li\x00ve HTTP/1.1\r\n$H\r\n", 400],
    # A malformed version is a bad request line (400); 505 is for a
    # well-formed version the server does not support (RFC 9110 15.6.6).
    ['lowercase protocol name', "GET /live http/1.1\r\n$H\r\n", 400],
    ['wrong protocol name', "GET /live HTTX/1.1\r\n$H\r\n", 400],
    ['non-digit minor version', "GET /live HTTP/1.x\r\n$H\r\n", 400],
    ['version without a dot', "GET /live HTTP/11\r\n$H\r\n", 400],
    ['binary garbage', "\x01\x02\x03\xff\xfe garbage\r\n\r\n", 400],

    # --- header fields ---
    ['space before the colon', "GET /live HTTP/1.1\r\nHost : localhost\r\n\r\n", 400],
    ['tab before the colon', "GET /live HTTP/1.1\r\n${H}X-A\t: 1\r\n\r\n", 400],
    ['non-token character in a name', "GET /live HTTP/1.1\r\n${H}X(Bad): 1\r\n\r\n", 400],
    ['8-bit byte in a name', "GET /live HTTP/1.1\r\n${H}X-\xff: 1\r\n\r\n", 400],
    ['header line without a colon', "GET /live HTTP/1.1\r\n${H}X-No-Colon\r\n\r\n", 400],
    ['empty header name', "GET /live HTTP/1.1\r\n$H: value\r\n\r\n", 400],
    ['control character in a value', "GET /live HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n", 400],
    ['NUL in a value', "GET /live HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n", 400],
    ['DEL in a value', "GET /live HTTP/1.1\r\n${H}X-A: a\x7fb\r\n\r\n", 400],
    ['CR inside a value', "GET /live HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n", 400],
    ['obs-fold continuation line', "GET /live HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n", 400],
    ['obs-fold after an empty value', "GET /live HTTP/1.1\r\n${H}X-A:\r\n b\r\n\r\n", 400],
    ['whitespace before the first header', "GET /live HTTP/1.1\r\n Host: localhost\r\n\r\n", 400],
    ['bare LF line endings', "GET /live HTTP/1.1\nHost: localhost\n\n", 400],
    ['bare LF in one header line', "GET /live HTTP/1.1\r\n${H}X-A: 1\nX-B: 2\r\n\r\n", 400],
    ['bare CR as line ending', "GET /live HTTP/1.1\rHost: localhost\r\n\r\n", 400],
    ['HTTP/1.1 without Host', "GET /live HTTP/1.1\r\nX-A: 1\r\n\r\n", 400],
    ['two Host headers', "GET /live HTTP/1.1\r\n${H}Host: other\r\n\r\n", 400],
    # RFC 9110 7.2: an invalid Host value is a 400 (MUST); so does nginx.
    ['Host with a space', "GET /live HTTP/1.1\r\nHost: exa mple\r\n\r\n", 400],

    # --- message framing ---
    ['Content-Length and Transfer-Encoding',
        "POST /upload HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400],
    ['Transfer-Encoding with a space before the colon, and Content-Length',
        "POST /upload HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\nhello", 400],
    ['vertical tab before chunked',
        "POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400],
    ['two different Content-Length',
        "POST /upload HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400],
    # RFC 9112 6.3 lets a recipient accept repeated identical values; SPEC.md
    # lists "duplicate" Content-Length as 400, so both forms are rejected.
    ['the same Content-Length twice',
        "POST /upload HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400],
    ['Content-Length list "5, 5"', "POST /upload HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello", 400],
    ['negative Content-Length', "POST /upload HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n", 400],
    ['non-numeric Content-Length', "POST /upload HTTP/1.1\r\n${H}Content-Length: abc\r\n\r\n", 400],
    ['Content-Length with a sign', "POST /upload HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello", 400],
    ['hexadecimal Content-Length', "POST /upload HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nhello", 400],
    ['empty Content-Length', "POST /upload HTTP/1.1\r\n${H}Content-Length: \r\n\r\n", 400],
    # Too many digits for 64 bits: invalid, like nginx (not a 413).
    ['Content-Length overflowing 64 bits',
        "POST /upload HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\n", 400],
    ['chunk size that is not hex', "${POST_CHUNKED}zz\r\nhello\r\n0\r\n\r\n", 400],
    ['negative chunk size', "${POST_CHUNKED}-5\r\nhello\r\n0\r\n\r\n", 400],
    ['chunk size overflowing 64 bits', "${POST_CHUNKED}10000000000000000\r\nhello\r\n0\r\n\r\n", 400],
    ['chunk data not followed by CRLF', "${POST_CHUNKED}5\r\nhelloXX0\r\n\r\n", 400],
    ['chunk data longer than its size', "${POST_CHUNKED}3\r\nhello\r\n0\r\n\r\n", 400],
    ['chunk data followed by bare LF', "${POST_CHUNKED}5\r\nhello\n0\r\n\r\n", 400],
    ['chunk size line ending in bare LF', "${POST_CHUNKED}5\nhello\r\n0\r\n\r\n", 400],
    # Valid syntax, larger than max_body_size (1k): 413, at once when the
    # chunk size announces it, as nginx does (SPEC.md: "413 body >
    # max_body_size"; it only says "at once" for Content-Length).
    ['chunk size of 64 GB', "${POST_CHUNKED}fffffffff\r\nhello", 413],

    # --- not HTTP/1.x at all ---
    # The ClientHello's first byte is not a token character: a bad request
    # line, as nginx answers on a plain port.
    ['TLS ClientHello on the plain port', $CLIENT_HELLO, 400],
    # "PRI * HTTP/2.0": "*" is only a valid target for OPTIONS, so the line
    # is invalid before its version matters; nginx answers 400 too.
    ['HTTP/2 connection preface', "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400],

    # --- slowloris: a byte every 250 ms; header_timeout bounds the whole head ---
    ['slowloris partial head', ["GET /live HTTP/1.1\r\n", map { (\0.25, $_) } split //, "X-Slow: aaaaaaaaaaaaaaaaaaaa"], 408],
);

my %CLOSES = map { $_ => 1 } (400, 408, 413, 414, 431, 501, 505);

for my $case (@cases) {
    my ($name, $bytes, $want) = @$case;
    my $c = $t->connect;
    my $t0 = time;
    for my $p (ref $bytes eq 'ARRAY' ? @$bytes : ($bytes)) {
        if (ref $p) {
            last if $c->is_closed;
            sleep $$p;
        } else {
            $c->send($p);
        }
    }
    my $r = $c->read_response(timeout => 3);
    if ($want eq 'close') {
        ok(!$r && $c->wait_closed(timeout => 2) && $c->{buf} eq '', "$name: closed without a response")
            or diag('received: ' . ($r ? $r->{raw} : $c->{buf}));
    } else {
        is($r ? $r->{status} : 'no response', $want, "$name: $want")
            or diag('received: ' . ($r ? $r->{raw} : $c->{buf} // ''));
        if ($r && $want >= 400) {
            my $j = decode_json_body($r);
            is($j && $j->{code}, "AP$want", "$name: JSON body with code AP$want");
            if ($CLOSES{$want}) {
                is(lc($r->{headers}{connection} // ''), 'close', "$name: Connection: close");
                ok($c->wait_closed(timeout => 2), "$name: connection closed");
            }
        }
    }
    $c->close;
    my $live = eval { $t->get('/live', timeout => 2) };
    ok($live && $live->{status} == 200, "$name: server still answers /live")
        or diag($@ || 'no 200');
}

cmp_ok(scalar @cases, '>=', 30, 'corpus has at least 30 cases');
is($t->stop, 0, 'TERM: master exits 0');
done_testing;
