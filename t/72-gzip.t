#!/usr/bin/perl
# On-the-fly gzip of API responses ([gzip]) and static files beside the
# API: a JSON RPC answer compressed when Accept-Encoding allows it (the
# body gunzips to what an identity request gets), Vary, Content-Length of
# the compressed bytes, q=0 refusals, small and error responses left
# alone, [gzip] off; routing between a static root and the API (longest
# prefix wins; /live and /ready stay built in); metrics by route kind.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->utf8->canonical;

my $t = Apiary::Test->new(db => 1, name => '72-gzip.t');
my $dir = $t->testdir;
mkdir "$dir/assets" or die;
mkdir "$dir/site" or die;
{
    open my $fh, '>', "$dir/assets/app.css" or die;
    print {$fh} "body { margin: 0 }\n" x 200;
    close $fh;
    open $fh, '>', "$dir/site/index.html" or die;
    print {$fh} "<!doctype html><title>site</title>\n";
    close $fh;
    open $fh, '>', "$dir/site/rpc" or die; # a file named like the API's path
    print {$fh} "not the API\n";
    close $fh;
}
$t->write_config(config => {
    server => { workers => 2 },
    static => { root => ["/assets $dir/assets"] },
    gzip => { enable => 'on', min_length => '512' },
});

my $ok = eval { $t->run(timeout => 10); 1 } && $t->wait_ready(timeout => 15);
ok($ok, 'apiary starts and gets ready') or do { diag($@ // '', $t->log_tail); done_testing; exit 1 };

my $H = "Host: localhost\r\n";

sub rpc($method, $path, %o) {
    my $d = $o{t} // $t;
    my $body = defined $o{body} ? (ref $o{body} ? $JSON->encode($o{body}) : $o{body}) : undef;
    my $raw = "$method $path HTTP/1.1\r\n${H}Connection: close\r\n" . ($o{headers} // '');
    $raw .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n" if defined $body;
    $raw .= "\r\n" . ($body // '');
    my ($r) = parse_responses($d->http($raw, timeout => 5), head => $method eq 'HEAD');
    return $r // { status => 0, headers => {}, body => '' };
}

sub gunzip_ok($r, $name) {
    my $plain;
    my $ok = gunzip(\$r->{body} => \$plain);
    ok($ok, "$name: the body gunzips") or diag($GunzipError);
    return $plain;
}

# A JSON document of ~20 KB.
my $doc = { items => [map { { id => $_, title => "task number $_", done => $_ % 2 ? JSON::PP::true : JSON::PP::false } } 1 .. 300] };

# ---------------------------------------------------------------------------
# The API's JSON, gzipped
# ---------------------------------------------------------------------------

{
    my $id = rpc('POST', '/rpc/echo_json', body => $doc);
    is($id->{status}, 200, 'echo_json: 200');
    ok(!exists $id->{headers}{'content-encoding'}, 'no Accept-Encoding: identity');
    is($id->{headers}{vary}, 'Accept-Encoding', 'no Accept-Encoding: Vary all the same');
    is_deeply($JSON->decode($id->{body}), $doc, 'identity: the document');

    my $gz = rpc('POST', '/rpc/echo_json', body => $doc, headers => "Accept-Encoding: gzip, deflate, br\r\n");
    is($gz->{status}, 200, 'Accept-Encoding: gzip: 200');
    is($gz->{headers}{'content-encoding'}, 'gzip', 'Content-Encoding: gzip');
    is($gz->{headers}{vary}, 'Accept-Encoding', 'Vary: Accept-Encoding');
    is($gz->{header_count}{vary}, 1, 'one Vary');
    like($gz->{headers}{'content-type'}, qr{^application/json}, 'the JSON type is kept');
    is($gz->{headers}{'content-length'}, length $gz->{body}, 'Content-Length is the compressed length');
    cmp_ok(length $gz->{body}, '<', length($id->{body}) / 3, sprintf('much smaller (%d of %d bytes)', length $gz->{body}, length $id->{body}));
    my $plain = gunzip_ok($gz, 'gzip');
    is($plain, $id->{body}, 'decompressed: the identity body, byte for byte');

    my $q0 = rpc('POST', '/rpc/echo_json', body => $doc, headers => "Accept-Encoding: gzip;q=0, identity\r\n");
    ok(!exists $q0->{headers}{'content-encoding'}, 'gzip;q=0: identity');
    my $star = rpc('POST', '/rpc/echo_json', body => $doc, headers => "Accept-Encoding: *\r\n");
    is($star->{headers}{'content-encoding'}, 'gzip', 'Accept-Encoding: *: gzip');

    my $small = rpc('GET', '/rpc/add_them?a=1&b=2', headers => "Accept-Encoding: gzip\r\n");
    is($small->{body}, '3', 'a small answer: as it is');
    ok(!exists $small->{headers}{'content-encoding'}, 'below min_length: not gzipped');
    ok(!exists $small->{headers}{vary}, 'below min_length: no Vary');

    my $err = rpc('POST', '/rpc/no_such_function', body => {}, headers => "Accept-Encoding: gzip\r\n");
    is($err->{status}, 404, 'an error: 404');
    ok(!exists $err->{headers}{'content-encoding'}, 'a small error body: not gzipped');

    my $void = rpc('POST', '/rpc/mark_done', body => { id => 999999 }, headers => "Accept-Encoding: gzip\r\n");
    ok($void->{status} == 204 || $void->{status} == 200, 'a void function: ' . $void->{status});
    ok(!exists $void->{headers}{'content-encoding'}, '... nothing to compress');

    # Keep-alive: a gzipped answer, then an identity one, on one connection.
    my $body = $JSON->encode($doc);
    my @r = $t->keepalive([
        "POST /rpc/echo_json HTTP/1.1\r\n${H}Accept-Encoding: gzip\r\nContent-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body",
        "POST /rpc/echo_json HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body",
    ]);
    ok(@r == 2 && $r[0]{headers}{'content-encoding'} eq 'gzip' && !exists $r[1]{headers}{'content-encoding'},
        'keep-alive: gzip then identity on one connection');
    ok(@r == 2 && $r[1]{body} eq $id->{body}, '... the second body intact');
}

# ---------------------------------------------------------------------------
# Routing: a static root beside the API at "/"
# ---------------------------------------------------------------------------

{
    my $css = rpc('GET', '/assets/app.css', headers => "Accept-Encoding: gzip\r\n");
    is($css->{status}, 200, '/assets/app.css: the static file');
    is($css->{headers}{'content-encoding'}, 'gzip', '... gzipped on the fly');
    my $plain = gunzip_ok($css, 'app.css');
    is($plain, "body { margin: 0 }\n" x 200, '... to the file');
    is(rpc('GET', '/assets/missing.css')->{status}, 404, 'a missing file under /assets: 404');
    like(rpc('GET', '/assets/missing.css')->{body}, qr/"code":"AP404"/, '... apiary\'s own 404, not the API\'s');
    is(rpc('GET', '/assetsx/app.css')->{status}, 404, '/assetsx is not under /assets');
    like(rpc('GET', '/assetsx/app.css')->{body}, qr/PGRST125/, '... it belongs to the API');
    is(rpc('GET', '/rpc/add_them?a=2&b=3')->{body}, '5', 'the API answers beside it');
    is(rpc('GET', '/live')->{status}, 200, '/live stays built in');
    is(rpc('GET', '/ready')->{status}, 200, '/ready stays built in');
    is(rpc('POST', '/assets/app.css', body => {})->{status}, 405, 'POST to a static file: 405');
}

# Metrics by route kind.
{
    my $raw = $t->http("GET /metrics HTTP/1.1\r\n${H}Connection: close\r\n\r\n", port => $t->admin_port);
    my ($r) = parse_responses($raw);
    my %n = ($r->{body} // '') =~ /^apiary_http_request_duration_seconds_count\{route="(\w+)"\} (\d+)/mg;
    cmp_ok($n{static} // 0, '>=', 4, "metrics: route=\"static\" counted ($n{static})");
    cmp_ok($n{rpc} // 0, '>=', 5, "metrics: route=\"rpc\" counted ($n{rpc})");
}

# ---------------------------------------------------------------------------
# A site at "/" and the API at "/api"; [gzip] off
# ---------------------------------------------------------------------------

{
    my $s = Apiary::Test->new(db => 1, name => '72-gzip.t site and /api', config => {
        server => { workers => 1 },
        api => { prefix => '/api' },
        static => { root => "/ $dir/site" },
    });
    my $ok2 = eval { $s->run(timeout => 10); 1 } && $s->wait_ready(timeout => 15);
    ok($ok2, 'second instance ready') or diag($@ // '', $s->log_tail);
    is(rpc('GET', '/', t => $s)->{body}, "<!doctype html><title>site</title>\n", '/: the site');
    is(rpc('GET', '/rpc', t => $s)->{body}, "not the API\n", '/rpc: a file of the site');
    is(rpc('GET', '/api/rpc/add_them?a=20&b=22', t => $s)->{body}, '42', '/api/rpc/...: the API (longer prefix)');
    my $r = rpc('POST', '/api/rpc/echo_json', t => $s, body => $doc, headers => "Accept-Encoding: gzip\r\n");
    is($r->{status}, 200, '[gzip] off: 200');
    ok(!exists $r->{headers}{'content-encoding'}, '[gzip] off: never gzipped');
    ok(!exists $r->{headers}{vary}, '[gzip] off: no Vary');
    is(rpc('GET', '/live', t => $s)->{status}, 200, '/live stays built in under a site at /');
    $s->stop;
}

done_testing;
