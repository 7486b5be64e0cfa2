#!/usr/bin/perl
# CORS ([security] cors_*): off by default; an allowlist of origins with
# credentials (allowed and refused origins, Vary: Origin, exposed headers
# on actual responses and errors, preflights answered 204 before routing,
# without the database); "*" without credentials; the configurable lists;
# -t refusing "*" with credentials and malformed origins, with file:line.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
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

my $APP = 'https://app.example.com';
my $DEV = 'http://localhost:5173';

sub req($t, $method, $path, %h) {
    my $raw = "$method $path HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n";
    $raw .= "$_: $h{$_}\r\n" for sort keys %h;
    my ($r) = parse_responses($t->http("$raw\r\n"), head => $method eq 'HEAD');
    return $r;
}

sub no_cors_ok($r, $name) {
    ok($r, "$name: a response") or return;
    my @acx = grep { /^access-control-/ } keys %{$r->{headers}};
    is("@acx", '', "$name: no Access-Control-* header") or diag($r->{raw});
}

# Off by default: no CORS header, no Vary, and a preflight is routed as
# any OPTIONS request.
{
    my $t = Apiary::Test->new(config => { server => { workers => 1 } }, name => '68-cors.t (off)');
    $t->run;
    my $r = req($t, 'GET', '/live', Origin => $APP);
    is($r->{status}, 200, 'CORS off: GET answers');
    no_cors_ok($r, 'CORS off');
    ok(!exists $r->{headers}{vary}, 'CORS off: no Vary');
    $r = req($t, 'OPTIONS', '/live', Origin => $APP, 'Access-Control-Request-Method' => 'GET');
    is($r->{status}, 405, 'CORS off: a preflight is routed like any OPTIONS (405 on /live)');
    $t->stop;
}

# An allowlist with credentials, against the API.
my $t = Apiary::Test->new(
    db => 1,
    config => {
        server   => { workers => 2 },
        security => { cors_origins => "$APP, $DEV", cors_credentials => 'on' },
    },
    name => '68-cors.t',
);
start_ready($t);

my $EXPOSE = 'Content-Encoding, Content-Location, Content-Range, Content-Type, Content-Profile, '
    . 'Date, Location, Preference-Applied, Range-Unit, Retry-After, RateLimit-Limit, '
    . 'RateLimit-Remaining, RateLimit-Reset, X-Request-Id';

my $r = req($t, 'GET', '/tasks?select=id&limit=1', Origin => $APP);
is($r->{status}, 200, 'allowed origin: the API answers');
is($r->{headers}{'access-control-allow-origin'}, $APP, 'Access-Control-Allow-Origin echoes it');
is($r->{headers}{'access-control-allow-credentials'}, 'true', 'Access-Control-Allow-Credentials');
is($r->{headers}{'access-control-expose-headers'}, $EXPOSE,
    'Access-Control-Expose-Headers: what PostgREST clients read');
like($r->{headers}{vary} // '', qr/\bOrigin\b/, 'Vary: Origin');
is($r->{header_count}{'access-control-allow-origin'}, 1, 'one Access-Control-Allow-Origin');

$r = req($t, 'GET', '/live', Origin => $DEV);
is($r->{headers}{'access-control-allow-origin'}, $DEV, 'the second origin of the list too');
$r = req($t, 'GET', '/live', Origin => 'HTTPS://APP.EXAMPLE.COM');
ok(defined $r->{headers}{'access-control-allow-origin'},
    'origins compare without regard to case (scheme and host are case-insensitive)');

for my $o ('https://evil.example.com', 'https://app.example.com.evil.com', 'http://app.example.com',
           'https://app.example.com:444', 'null', "$APP/") {
    $r = req($t, 'GET', '/live', Origin => $o);
    is($r->{status}, 200, "refused origin $o: the request is still answered");
    no_cors_ok($r, "refused origin $o");
    like($r->{headers}{vary} // '', qr/\bOrigin\b/, "refused origin $o: Vary: Origin");
}
$r = req($t, 'GET', '/live');
no_cors_ok($r, 'no Origin');
like($r->{headers}{vary} // '', qr/\bOrigin\b/, 'no Origin: Vary: Origin all the same (caches)');

# Errors carry the headers, so that scripts can read them.
$r = req($t, 'GET', '/no_such_table', Origin => $APP);
is($r->{status}, 404, 'a 404 from the API');
is($r->{headers}{'access-control-allow-origin'}, $APP, 'the 404 carries Allow-Origin');
($r) = parse_responses($t->http("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nOrigin: $APP\r\n\r\n"));
is($r->{status}, 400, 'a 400 from the parser');
ok(!exists $r->{headers}{'access-control-allow-origin'},
    'a request the parser refused gets none (its headers are not trusted)')
    or diag($r->{raw});

# Preflight: answered before routing, without the database.
my $rows_before = $t->psql('select count(*) from api.tasks');
$r = req($t, 'OPTIONS', '/tasks', Origin => $APP, 'Access-Control-Request-Method' => 'POST',
    'Access-Control-Request-Headers' => 'content-type, prefer');
is($r->{status}, 204, 'preflight: 204');
is($r->{headers}{'access-control-allow-origin'}, $APP, 'preflight: Allow-Origin');
is($r->{headers}{'access-control-allow-credentials'}, 'true', 'preflight: Allow-Credentials');
is($r->{headers}{'access-control-allow-methods'}, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS',
    'preflight: Allow-Methods');
like($r->{headers}{'access-control-allow-headers'} // '', qr/\bContent-Type\b.*\bPrefer\b/,
    'preflight: Allow-Headers lists Content-Type and Prefer');
like($r->{headers}{'access-control-allow-headers'} // '', qr/\bAuthorization\b/,
    'preflight: ... and Authorization');
is($r->{headers}{'access-control-max-age'}, '86400', 'preflight: Max-Age 86400 (24 h)');
like($r->{headers}{vary} // '', qr/\bOrigin\b/, 'preflight: Vary: Origin');
ok(!exists $r->{headers}{'access-control-expose-headers'}, 'preflight: no Expose-Headers');
ok(!exists $r->{headers}{'content-length'}, 'preflight: 204 has no Content-Length');
is($r->{body}, '', 'preflight: no body');
is($r->{headers}{'x-frame-options'}, 'DENY', 'preflight: the security headers too');
$r = req($t, 'OPTIONS', '/rpc/add_them', Origin => $DEV, 'Access-Control-Request-Method' => 'GET');
is($r->{status}, 204, 'preflight to an RPC path: 204');
is($r->{headers}{'access-control-allow-origin'}, $DEV, '... for the second origin');
$r = req($t, 'OPTIONS', '/anything/at/all', Origin => $APP, 'Access-Control-Request-Method' => 'PUT');
is($r->{status}, 204, 'preflight to a path no route has: still 204 (answered before routing)');

$r = req($t, 'OPTIONS', '/tasks', Origin => 'https://evil.example.com',
    'Access-Control-Request-Method' => 'DELETE');
is($r->{status}, 204, 'preflight from a refused origin: 204 ...');
no_cors_ok($r, 'preflight from a refused origin');

# An OPTIONS without Access-Control-Request-Method is no preflight.
$r = req($t, 'OPTIONS', '/live', Origin => $APP);
is($r->{status}, 405, 'OPTIONS without Access-Control-Request-Method is routed (405 on /live)');
is($r->{headers}{'access-control-allow-origin'}, $APP, '... with the CORS headers of a response');
is($t->psql('select count(*) from api.tasks'), $rows_before, 'nothing changed in the database');

# Keep-alive: a preflight then the request on one connection.
my @rs = $t->keepalive([
    "OPTIONS /tasks HTTP/1.1\r\nHost: x\r\nOrigin: $APP\r\nAccess-Control-Request-Method: PATCH\r\n\r\n",
    "GET /tasks?select=id&limit=1 HTTP/1.1\r\nHost: x\r\nOrigin: $APP\r\n\r\n",
]);
ok($rs[0] && $rs[0]{status} == 204 && $rs[1] && $rs[1]{status} == 200,
    'preflight and request on one keep-alive connection');
is($rs[1]{headers}{'access-control-allow-origin'}, $APP, '... the second carries Allow-Origin');
ok(!exists $rs[1]{headers}{'access-control-allow-methods'},
    '... and nothing left over from the preflight');
$t->stop;

# "*" without credentials; custom lists.
my $any = Apiary::Test->new(
    config => {
        server   => { workers => 1 },
        security => {
            cors_origins        => '*',
            cors_allow_methods  => 'GET, POST',
            cors_allow_headers  => 'Authorization, X-Custom',
            cors_expose_headers => 'X-Total',
            cors_max_age        => '10m',
        },
    },
    name => '68-cors.t (any)',
);
$any->run;
$r = req($any, 'GET', '/live', Origin => 'https://whoever.example');
is($r->{headers}{'access-control-allow-origin'}, '*', '"*": Allow-Origin: *');
ok(!exists $r->{headers}{'access-control-allow-credentials'}, '"*": no credentials');
ok(!exists $r->{headers}{vary}, '"*": no Vary (the answer is the same for all)');
is($r->{headers}{'access-control-expose-headers'}, 'X-Total', 'cors_expose_headers');
$r = req($any, 'OPTIONS', '/x', Origin => 'https://whoever.example',
    'Access-Control-Request-Method' => 'POST');
is($r->{status}, 204, '"*": preflight 204');
is($r->{headers}{'access-control-allow-methods'}, 'GET, POST', 'cors_allow_methods');
is($r->{headers}{'access-control-allow-headers'}, 'Authorization, X-Custom', 'cors_allow_headers');
is($r->{headers}{'access-control-max-age'}, '600', 'cors_max_age = 10m: 600');
$r = req($any, 'GET', '/live');
no_cors_ok($r, '"*" without Origin');
($r) = parse_responses($any->http("GET /status HTTP/1.1\r\nHost: x\r\nOrigin: https://o.example\r\n"
    . "Connection: close\r\n\r\n", port => $any->admin_port));
no_cors_ok($r, 'the admin listener');
$any->stop;

# -t refuses what cannot work, where it was written.
my $bad = Apiary::Test->new(raw => "[server]\nlisten = 127.0.0.1:%%PORT_0%%\n[security]\n"
    . "cors_origins = *\ncors_credentials = on\n", name => '68-cors.t (-t)');
my ($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
is($code, 1, '-t refuses "*" with credentials');
like($err, qr/apiary\.conf:5: security\.cors_credentials: credentials cannot be allowed for every origin/,
    '... at the cors_credentials line') or diag($err);
$bad->write_config(raw => "[security]\ncors_credentials = yes\n\ncors_origins = https://a.example *\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
is($code, 1, '-t refuses "*" in a list');
like($err, qr/apiary\.conf:4: security\.cors_origins: "\*" allows every origin/, '... at its line')
    or diag($err);
$bad->write_config(raw => "[security]\ncors_origins = https://a.example/app http://ok.example\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
is($code, 1, '-t refuses an origin with a path');
like($err, qr{apiary\.conf:2: security\.cors_origins: "https://a\.example/app": an origin has no path},
    '... naming it') or diag($err);
$bad->write_config(raw => "[security]\ncors_credentials = maybe\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path);
like($err, qr/apiary\.conf:2: security\.cors_credentials: expected on or off/, 'a bad boolean')
    or diag($err);
$bad->write_config(raw => "[server]\nlisten = 127.0.0.1:%%PORT_0%%\n");
($code, $out, $err) = $bad->run_cmd('-t', '-c', $bad->conf_path,
    { env => { APIARY_SECURITY_CORS_CREDENTIALS => 'on', APIARY_SECURITY_CORS_ORIGINS => '*' } });
is($code, 1, '-t refuses "*" with credentials from the environment');
like($err, qr/env:APIARY_SECURITY_CORS_ORIGINS: security\.cors_origins: credentials cannot/,
    '... naming the variable') or diag($err);

done_testing;
