#!/usr/bin/perl
# Security headers ([security]): the safe defaults on every response of
# every kind (built-in endpoints, 404/405 errors, errors the HTTP layer
# answers before routing, the admin listener, HEAD), each key set to its
# own value and each switched off, the Server header without a version
# unless asked, and -t on bad values.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Apiary::Test qw(:all);

my %DEFAULT = (
    'x-content-type-options'     => 'nosniff',
    'x-frame-options'            => 'DENY',
    'referrer-policy'            => 'strict-origin-when-cross-origin',
    'content-security-policy'    => "default-src 'none'; frame-ancestors 'none'",
    'permissions-policy'         => 'accelerometer=(), camera=(), geolocation=(), gyroscope=(), '
        . 'magnetometer=(), microphone=(), payment=(), usb=()',
    'cross-origin-opener-policy' => 'same-origin',
);
my %KEY = (
    'x-content-type-options'     => 'x_content_type_options',
    'x-frame-options'            => 'x_frame_options',
    'referrer-policy'            => 'referrer_policy',
    'content-security-policy'    => 'content_security_policy',
    'permissions-policy'         => 'permissions_policy',
    'cross-origin-opener-policy' => 'cross_origin_opener_policy',
);

sub headers_ok($r, $want, $name) {
    ok($r, "$name: a response") or return;
    for my $h (sort keys %$want) {
        if (defined $want->{$h}) {
            is($r->{headers}{$h}, $want->{$h}, "$name: $h");
            is($r->{header_count}{$h}, 1, "$name: one $h");
        } else {
            ok(!exists $r->{headers}{$h}, "$name: no $h") or diag($r->{raw});
        }
    }
}

my $t = Apiary::Test->new(config => { server => { workers => 2 } }, name => '67-security-headers.t');
$t->run;

# Every kind of response carries them.
my $r = $t->get('/live');
is($r->{status}, 200, '/live answers');
headers_ok($r, \%DEFAULT, 'GET /live (defaults)');
is($r->{headers}{server}, 'apiary', 'Server: apiary, without a version');
unlike($r->{headers}{server} // '', qr{/|\d}, 'no version in Server');

$r = $t->get('/live', method => 'HEAD');
headers_ok($r, \%DEFAULT, 'HEAD /live');

$r = $t->get('/nothing-here');
is($r->{status}, 404, 'a 404');
headers_ok($r, \%DEFAULT, '404 error');

$r = $t->get('/live', method => 'DELETE');
is($r->{status}, 405, 'a 405');
headers_ok($r, \%DEFAULT, '405 error');

# Errors the HTTP layer answers before any routing.
($r) = parse_responses($t->http("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"));
is($r->{status}, 400, 'a malformed request: 400');
headers_ok($r, \%DEFAULT, '400 from the parser');
($r) = parse_responses($t->http("GET / HTTP/3.0\r\nHost: a\r\n\r\n"));
is($r->{status}, 505, 'HTTP/3.0: 505');
headers_ok($r, \%DEFAULT, '505 from the parser');

# Keep-alive: every response on the connection, not only the first.
my @rs = $t->keepalive(["GET /live HTTP/1.1\r\nHost: x\r\n\r\n", "GET /x HTTP/1.1\r\nHost: x\r\n\r\n",
                        "GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
is(scalar(grep { $_ && $_->{headers}{'x-frame-options'} } @rs), 3,
    'three responses on one connection: each has the headers');

# The admin listener too.
($r) = parse_responses($t->http("GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    port => $t->admin_port));
is($r->{status}, 200, 'admin /status answers');
headers_ok($r, \%DEFAULT, 'admin /status');

$t->stop;

# Each key to a value of its own; the Server header with a version when
# asked for one.
my %CUSTOM = (
    'x-content-type-options'     => 'nosniff',
    'x-frame-options'            => 'SAMEORIGIN',
    'referrer-policy'            => 'no-referrer',
    'content-security-policy'    => "default-src 'self'; img-src https://img.example.com",
    'permissions-policy'         => 'geolocation=(self)',
    'cross-origin-opener-policy' => 'same-origin-allow-popups',
);
my $c = Apiary::Test->new(
    config => {
        server   => { workers => 1, server_header => 'apiary/0.1.0' },
        security => { map { $KEY{$_} => $CUSTOM{$_} } keys %CUSTOM },
    },
    name => '67-security-headers.t (custom)',
);
$c->run;
$r = $c->get('/live');
headers_ok($r, \%CUSTOM, 'custom values');
is($r->{headers}{server}, 'apiary/0.1.0', 'Server with a version when server_header says so');
$r = $c->get('/missing');
headers_ok($r, \%CUSTOM, 'custom values on a 404');
$c->stop;

# Each one off, one at a time, and all at once.
for my $h (sort keys %KEY) {
    my $o = Apiary::Test->new(
        config => { server => { workers => 1 }, security => { $KEY{$h} => 'off' } },
        name => "67-security-headers.t ($KEY{$h} off)",
    );
    $o->run;
    my %want = (%DEFAULT, $h => undef);
    headers_ok($o->get('/live'), \%want, "$KEY{$h} = off");
    headers_ok($o->get('/nope'), { $h => undef }, "$KEY{$h} = off, on a 404");
    $o->stop;
}
my $off = Apiary::Test->new(
    config => {
        server   => { workers => 1, server_header => 'off' },
        security => { map { $_ => 'off' } values %KEY },
    },
    name => '67-security-headers.t (all off)',
);
$off->run;
$r = $off->get('/live');
headers_ok($r, { map { $_ => undef } keys %KEY }, 'every header off');
ok(!exists $r->{headers}{server}, 'server_header = off: no Server header');
$off->stop;

# Environment overrides work for [security] as for the rest.
my $env = Apiary::Test->new(
    config => { server => { workers => 1 } },
    env => { APIARY_SECURITY_X_FRAME_OPTIONS => 'SAMEORIGIN' },
    name => '67-security-headers.t (env)',
);
$env->run;
is($env->get('/live')->{headers}{'x-frame-options'}, 'SAMEORIGIN',
    'APIARY_SECURITY_X_FRAME_OPTIONS overrides the default');
$env->stop;

# -t: an empty value is refused with file:line.
my $bad = Apiary::Test->new(raw => "[server]\nlisten = 127.0.0.1:%%PORT_0%%\n[security]\nx_frame_options =\n",
    name => '67-security-headers.t (-t)');
my ($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
is($code, 1, '-t refuses an empty header value');
like($err, qr/apiary\.conf:4: security\.x_frame_options: a value is required/, '... with file:line')
    or diag($err);
$bad->write_config(raw => "[security]\nx_frame_option = DENY\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
is($code, 1, '-t refuses an unknown [security] key');
like($err, qr/apiary\.conf:2: security\.x_frame_option: unknown key/, '... with file:line')
    or diag($err);

done_testing;
