#!/usr/bin/perl
# Static files ([static]): media types and charset, validators and 304/412,
# single byte ranges (206/416, If-Range), precompressed siblings chosen by
# Accept-Encoding, on-the-fly gzip, Cache-Control rules, index files and
# the directory redirect, the SPA fallback, 405 with Allow, every traversal
# attempt (.., %2e%2e, %2f, NUL, backslashes, dotfiles, symbolic links out
# of the root), follow_symlinks modes, keep-alive and pipelining after file
# responses, the open file cache seeing files change, metrics, and
# apiary -t on bad [static] lines.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use IO::Compress::Gzip qw(gzip $GzipError);
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use Apiary::Test qw(:all);

my $t = Apiary::Test->new(ports => 1, name => '70-static.t');
my $dir = $t->testdir;
my $www = "$dir/www";

# ---------------------------------------------------------------------------
# The tree served
# ---------------------------------------------------------------------------

sub put($path, $content) {
    my $f = "$dir/$path";
    my $d = $f =~ s{/[^/]+$}{}r;
    system('mkdir', '-p', $d) == 0 or die "mkdir $d";
    open my $fh, '>:raw', $f or die "open $f: $!";
    print {$fh} $content;
    close $fh or die "close $f: $!";
    return $f;
}

sub gz($data) {
    my $out;
    gzip(\$data => \$out) or die "gzip: $GzipError";
    return $out;
}

my $DIGITS = join('', map { $_ % 10 } 0 .. 999);          # 1000 bytes
my $BIG = join('', map { sprintf("%07d\n", $_) } 0 .. 40000); # 320 KiB, sent with sendfile
my $TEXT = "lorem ipsum dolor sit amet\n" x 200;            # 5400 bytes, compressible
my $APPJS = "console.log('identity');\n" x 50;
my $INDEX = "<!doctype html><title>site</title>\n";
my $SPA = "<!doctype html><title>spa</title>\n";

put('www/index.html', $INDEX);
put('www/a.txt', "hello world\n");
put('www/digits.txt', $DIGITS);
put('www/big.bin', $BIG);
put('www/text.txt', $TEXT);
put('www/style.css', "body { color: red }\n" x 100);
put('www/style.css.gz', gz("body { color: red }\n" x 100));
put('www/app.js', $APPJS);
my $APPJS_GZ = gz($APPJS); # gzip headers hold a time: compress once
put('www/app.js.gz', $APPJS_GZ);
put('www/app.js.br', "BROTLI-BYTES-FOR-TEST");
put('www/image.png', "\x89PNG\r\n\x1a\n" . ("\0" x 2000));
put('www/data.unknownext', "x");
put('www/empty.txt', '');
put('www/hello world.txt', "space\n");
put('www/sub/index.html', "<p>sub</p>\n");
put('www/sub/file.txt', "in sub\n");
put('www/noindex/file.txt', "no index here\n");
put('www/assets/app.3f9a1b.js', "// hashed\n");
put('www/.git/config', "SECRET-GIT\n");
put('www/.env', "SECRET-ENV\n");
put('www/sub/.htpasswd', "SECRET-HT\n");
put('www/.well-known/security.txt', "Contact: mailto:security\@example.org\n");
put('outside/secret.txt', "SECRET-OUTSIDE\n");
put('app/index.html', $SPA);
put('app/assets/real.js', "real();\n");
symlink("$dir/outside/secret.txt", "$www/passwd") or die "symlink: $!";
symlink("$dir/outside", "$www/outdir") or die "symlink: $!";
symlink("a.txt", "$www/link.txt") or die "symlink: $!";
symlink("../a.txt", "$www/sub/uplink.txt") or die "symlink: $!";
POSIX::mkfifo("$www/fifo", 0644) or die "mkfifo: $!";
# A deployment: the root is a link to a release directory, switched.
put('releases/v1/page.txt', "v1\n");
put('releases/v2/page.txt', "v2\n");
put('releases/v2/only-v2.txt', "new in v2\n");
symlink("$dir/releases/v1", "$dir/current") or die "symlink: $!";

my %STATIC = (
    root => ["/ $www", "/app $dir/app fallback=/index.html", "/rel $dir/current"],
    cache_control => ['/assets/* public, max-age=31536000, immutable', '*.html no-cache'],
);
$t->write_config(config => {
    server => { workers => 2 },
    static => \%STATIC,
    gzip => { enable => 'on', min_length => '1k' },
});
$t->run;

my $H = "Host: localhost\r\n";

# req(METHOD, PATH, headers => "Name: v\r\n..."): one request on a fresh
# connection, parsed.
sub req($method, $path, %o) {
    my $d = $o{t} // $t;
    my $raw = "$method $path HTTP/1.1\r\n${H}Connection: close\r\n" . ($o{headers} // '') . "\r\n";
    my ($r) = parse_responses($d->http($raw, timeout => $o{timeout} // 5), head => $method eq 'HEAD');
    return $r // { status => 0, headers => {}, body => '', raw => '' };
}

sub get($path, %o) { req('GET', $path, %o) }

sub mtime_date($path) {
    my @st = stat($path) or die "stat $path: $!";
    return POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime $st[9]);
}

my $ETAG_RE = qr/^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/;

# ---------------------------------------------------------------------------
# Plain GET and HEAD: types, charset, validators
# ---------------------------------------------------------------------------

{
    my $r = get('/a.txt');
    is($r->{status}, 200, 'GET /a.txt: 200');
    is($r->{body}, "hello world\n", 'GET /a.txt: the file');
    is($r->{headers}{'content-length'}, 12, 'Content-Length is the size');
    is($r->{headers}{'content-type'}, 'text/plain; charset=utf-8', 'text/plain with charset=utf-8');
    like($r->{headers}{etag} // '', $ETAG_RE, 'a strong ETag');
    is($r->{headers}{'last-modified'}, mtime_date("$www/a.txt"), 'Last-Modified is the mtime');
    is($r->{headers}{'accept-ranges'}, 'bytes', 'Accept-Ranges: bytes');
    ok(imf_date_ok($r->{headers}{date}), 'Date');

    my %types = (
        '/index.html' => 'text/html; charset=utf-8',
        '/style.css' => 'text/css; charset=utf-8',
        '/app.js' => 'text/javascript; charset=utf-8',
        '/image.png' => 'image/png',
        '/data.unknownext' => 'application/octet-stream',
        '/.well-known/security.txt' => 'text/plain; charset=utf-8',
    );
    for my $p (sort keys %types) {
        my $x = get($p);
        is($x->{status}, 200, "GET $p: 200");
        is($x->{headers}{'content-type'}, $types{$p}, "GET $p: Content-Type $types{$p}");
    }

    my $h = req('HEAD', '/digits.txt');
    is($h->{status}, 200, 'HEAD: 200');
    is($h->{headers}{'content-length'}, 1000, 'HEAD: Content-Length of the file');
    is($h->{body}, '', 'HEAD: no body');
    is($h->{headers}{etag}, get('/digits.txt')->{headers}{etag}, 'HEAD: the same ETag as GET');

    my $big = get('/big.bin');
    is($big->{status}, 200, 'GET a 320 KiB file: 200');
    ok($big->{body} eq $BIG, 'GET a 320 KiB file: every byte (sendfile)');

    my $e = get('/empty.txt');
    is($e->{status}, 200, 'an empty file: 200');
    is($e->{headers}{'content-length'}, 0, 'an empty file: Content-Length 0');

    my $sp = get('/hello%20world.txt');
    is($sp->{status}, 200, 'a percent-encoded space in the name');
    is($sp->{body}, "space\n", '... the file with the space');

    my $q = get('/a.txt?v=3&x=y');
    is($q->{body}, "hello world\n", 'the query string is ignored');

    my $lk = get('/link.txt');
    is($lk->{status}, 200, 'a symbolic link inside the root: 200');
    is($lk->{body}, "hello world\n", '... with the target');
    is(get('/sub/uplink.txt')->{status}, 200, 'a relative link through .. that stays inside: 200');

    is(get('/nope.txt')->{status}, 404, 'a missing file: 404');
    my $nf = get('/nope.txt');
    like($nf->{headers}{'content-type'} // '', qr{^application/json}, '404 with a JSON body');
    is(get('/fifo')->{status}, 404, 'a FIFO is not served (and does not block the worker)');
    is(get('/a.txt/')->{status}, 404, 'a file with a trailing slash: 404');
}

# ---------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------

for my $m (qw(POST PUT DELETE PATCH OPTIONS)) {
    my $raw = "$m /a.txt HTTP/1.1\r\n${H}Connection: close\r\nContent-Length: 0\r\n\r\n";
    my ($r) = parse_responses($t->http($raw));
    is($r->{status}, 405, "$m on a static file: 405");
    is($r->{headers}{allow}, 'GET, HEAD', "$m: Allow: GET, HEAD");
    like($r->{headers}{'content-type'} // '', qr{^application/json}, "$m: a JSON error");
}

# ---------------------------------------------------------------------------
# Index files, directories, SPA fallback
# ---------------------------------------------------------------------------

{
    my $r = get('/');
    is($r->{status}, 200, 'GET /: 200');
    is($r->{body}, $INDEX, 'GET /: index.html');
    is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', 'GET /: text/html');
    is($r->{headers}{'cache-control'}, 'no-cache', 'GET /: Cache-Control of *.html');

    $r = get('/sub');
    is($r->{status}, 301, 'a directory without its slash: 301');
    is($r->{headers}{location}, '/sub/', '... to the directory with the slash');
    $r = get('/sub?a=1');
    is($r->{headers}{location}, '/sub/?a=1', 'the redirect keeps the query');
    $r = get('//sub');
    is($r->{headers}{location}, '/sub/', '//sub redirects to /sub/, never to another host');
    $r = get('/sub/');
    is($r->{status}, 200, 'GET /sub/: 200');
    is($r->{body}, "<p>sub</p>\n", 'GET /sub/: its index.html');
    $r = get('/noindex/');
    is($r->{status}, 404, 'a directory without index.html: 404, no listing');
    unlike($r->{body}, qr/file\.txt/, '... the body names no file');
    $r = get('/sub/file.txt');
    is($r->{body}, "in sub\n", 'a file in a subdirectory');

    $r = get('/app');
    is($r->{status}, 301, 'a root prefix without its slash: 301');
    is($r->{headers}{location}, '/app/', '... to /app/');
    $r = get('/app/');
    is($r->{body}, $SPA, '/app/: the SPA index');
    $r = get('/app/users/42/edit');
    is($r->{status}, 200, 'SPA fallback: an unknown path under /app answers 200');
    is($r->{body}, $SPA, '... with the fallback file');
    is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', '... as text/html');
    is($r->{headers}{'cache-control'}, 'no-cache', '... with the Cache-Control of *.html');
    $r = get('/app/assets/real.js');
    is($r->{body}, "real();\n", 'an existing file under the SPA root is served');
    is(get('/app/.env')->{status}, 404, 'no fallback for a dotfile');
    is(get('/app/../www/a.txt')->{status}, 400, 'no fallback for a path leaving the root');
    is(get('/nope/deeper')->{status}, 404, 'no fallback where none is configured');
    is(get('/application')->{status}, 404, '/application is not under the prefix /app');
}

# ---------------------------------------------------------------------------
# Traversal and hidden files: never the secret, and the worker carries on
# ---------------------------------------------------------------------------

{
    my @cases = (
        ['/../outside/secret.txt', 400],
        ['/%2e%2e/outside/secret.txt', 400],
        ['/%2E%2E/outside/secret.txt', 400],
        ['/.%2e/outside/secret.txt', 400],
        ['/sub/../../outside/secret.txt', 400],
        ['/sub/%2e%2e/%2e%2e/outside/secret.txt', 400],
        ['/..%2foutside%2fsecret.txt', 400],
        ['/sub%2ffile.txt', 400],
        ['/sub%2Ffile.txt', 400],
        ['/a.txt%00', 400],
        ['/a.txt%00.html', 400],
        ['/%00', 400],
        ['/sub%5c..%5ca.txt', 400],
        ['/sub%5cfile.txt', 400],
        ['/a.txt%0a', 400],
        ['/%zz', 400],
        ['/a%2', 400],
        ['/.git/config', 404],
        ['/%2egit/config', 404],
        ['/.env', 404],
        ['/sub/.htpasswd', 404],
        ['/.', 200],
        ['/passwd', 404],
        ['/outdir/secret.txt', 404],
        ['/outdir/', 404],
    );
    for my $c (@cases) {
        my ($path, $want) = @$c;
        my $r = get($path);
        is($r->{status}, $want, "GET $path: $want");
        unlike($r->{raw}, qr/SECRET/, "GET $path: no secret in the answer");
    }
    # A raw backslash: llhttp may refuse it first; either way no file.
    my $raw = $t->http("GET /sub\\..\\a.txt HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    my ($r) = parse_responses($raw);
    ok($r && $r->{status} == 400, 'a raw backslash in the path: 400') or diag($raw);
    # Normalisation that stays inside the root is fine.
    is(get('/sub/../a.txt')->{body}, "hello world\n", '/sub/../a.txt is /a.txt');
    is(get('/sub/./file.txt')->{body}, "in sub\n", '/sub/./file.txt is /sub/file.txt');
    is(get('//a.txt')->{body}, "hello world\n", '//a.txt is /a.txt');
    is(get('/%61.txt')->{body}, "hello world\n", 'percent-encoded letters are decoded once');
    is(get('/%252e%252e/a.txt')->{status}, 404, 'a double-encoded .. is a name, decoded only once');
    is(get('/live')->{status}, 200, 'the worker still answers');
}

# ---------------------------------------------------------------------------
# Conditional requests
# ---------------------------------------------------------------------------

{
    my $r = get('/digits.txt');
    my $etag = $r->{headers}{etag};
    my $lm = $r->{headers}{'last-modified'};

    my $c = get('/digits.txt', headers => "If-None-Match: $etag\r\n");
    is($c->{status}, 304, 'If-None-Match with the ETag: 304');
    is($c->{body}, '', '304: no body');
    ok(!exists $c->{headers}{'content-length'}, '304: no Content-Length');
    is($c->{headers}{etag}, $etag, '304: the ETag');
    is($c->{headers}{vary}, 'Accept-Encoding', '304: Vary as on the 200');
    is(get('/digits.txt', headers => "If-None-Match: \"x\", $etag\r\n")->{status}, 304,
        'If-None-Match: a list that holds the ETag: 304');
    is(get('/digits.txt', headers => "If-None-Match: W/$etag\r\n")->{status}, 304,
        'If-None-Match: the weak form matches (weak comparison)');
    is(get('/digits.txt', headers => "If-None-Match: *\r\n")->{status}, 304, 'If-None-Match: *: 304');
    is(get('/digits.txt', headers => "If-None-Match: \"other\"\r\n")->{status}, 200,
        'If-None-Match: another tag: 200');
    is(get('/digits.txt', headers => "If-Modified-Since: $lm\r\n")->{status}, 304,
        'If-Modified-Since: Last-Modified: 304');
    is(get('/digits.txt', headers => "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n")->{status},
        200, 'If-Modified-Since: an older date: 200');
    is(get('/digits.txt', headers => "If-Modified-Since: yesterday\r\n")->{status}, 200,
        'If-Modified-Since: not a date: ignored');
    is(get('/digits.txt', headers => "If-None-Match: \"other\"\r\nIf-Modified-Since: $lm\r\n")->{status},
        200, 'If-None-Match wins over If-Modified-Since');
    is(req('HEAD', '/digits.txt', headers => "If-None-Match: $etag\r\n")->{status}, 304, 'HEAD: 304 too');
    my $t850 = POSIX::strftime('%A, %d-%b-%y %H:%M:%S GMT', gmtime(time + 3600));
    is(get('/digits.txt', headers => "If-Modified-Since: $t850\r\n")->{status}, 304,
        'If-Modified-Since in the RFC 850 form');
    my $tasc = POSIX::strftime('%a %b %e %H:%M:%S %Y', gmtime(time + 3600));
    is(get('/digits.txt', headers => "If-Modified-Since: $tasc\r\n")->{status}, 304,
        'If-Modified-Since in the asctime form');

    is(get('/digits.txt', headers => "If-Match: \"other\"\r\n")->{status}, 412, 'If-Match: another tag: 412');
    is(get('/digits.txt', headers => "If-Match: $etag\r\n")->{status}, 200, 'If-Match: the ETag: 200');
    is(get('/digits.txt', headers => "If-Match: W/$etag\r\n")->{status}, 412,
        'If-Match: a weak tag never matches (strong comparison)');
    is(get('/digits.txt', headers => "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n")->{status},
        412, 'If-Unmodified-Since: an older date: 412');

    my $hc = get('/index.html');
    my $c2 = get('/index.html', headers => "If-None-Match: $hc->{headers}{etag}\r\n");
    is($c2->{headers}{'cache-control'}, 'no-cache', '304 keeps the Cache-Control');
}

# ---------------------------------------------------------------------------
# Ranges
# ---------------------------------------------------------------------------

{
    my $etag = get('/digits.txt')->{headers}{etag};
    my $lm = get('/digits.txt')->{headers}{'last-modified'};
    # [Range value, status, Content-Range or undef, body or undef (whole)]
    my @cases = (
        ['bytes=0-0', 206, 'bytes 0-0/1000', substr($DIGITS, 0, 1)],
        ['bytes=0-99', 206, 'bytes 0-99/1000', substr($DIGITS, 0, 100)],
        ['bytes=10-19', 206, 'bytes 10-19/1000', substr($DIGITS, 10, 10)],
        ['bytes=-100', 206, 'bytes 900-999/1000', substr($DIGITS, 900)],
        ['bytes=990-', 206, 'bytes 990-999/1000', substr($DIGITS, 990)],
        ['bytes=-2000', 206, 'bytes 0-999/1000', $DIGITS],
        ['bytes=500-5000', 206, 'bytes 500-999/1000', substr($DIGITS, 500)],
        ['bytes=999-999', 206, 'bytes 999-999/1000', substr($DIGITS, 999)],
        ['bytes= 1-2', 206, 'bytes 1-2/1000', substr($DIGITS, 1, 2)],
        ['bytes=1000-', 416, 'bytes */1000', undef],
        ['bytes=1000-2000', 416, 'bytes */1000', undef],
        ['bytes=-0', 416, 'bytes */1000', undef],
        ['bytes=5-2', 200, undef, $DIGITS],
        ['bytes=abc', 200, undef, $DIGITS],
        ['bytes=', 200, undef, $DIGITS],
        ['bytes=1-2-3', 200, undef, $DIGITS],
        ['items=0-1', 200, undef, $DIGITS],
        ['bytes=0-1,5-6', 200, undef, $DIGITS],
        ['bytes=99999999999999999999-', 200, undef, $DIGITS],
    );
    for my $c (@cases) {
        my ($range, $status, $cr, $body) = @$c;
        my $r = get('/digits.txt', headers => "Range: $range\r\n");
        is($r->{status}, $status, "Range: $range: $status");
        is($r->{headers}{'content-range'}, $cr, "Range: $range: Content-Range " . ($cr // 'absent'));
        if (defined $body) {
            ok($r->{body} eq $body, "Range: $range: the right bytes");
            is($r->{headers}{'content-length'}, length $body, "Range: $range: Content-Length");
        } else {
            like($r->{headers}{'content-type'} // '', qr{^application/json}, "Range: $range: a JSON error");
        }
    }
    my $e = get('/empty.txt', headers => "Range: bytes=0-\r\n");
    is($e->{status}, 416, 'a range of an empty file: 416');
    is($e->{headers}{'content-range'}, 'bytes */0', '... Content-Range: bytes */0');

    my $b = get('/big.bin', headers => "Range: bytes=100000-\r\n");
    is($b->{status}, 206, 'a range of the large file: 206');
    ok($b->{body} eq substr($BIG, 100000), '... the bytes from sendfile at an offset');

    my $h = req('HEAD', '/digits.txt', headers => "Range: bytes=0-9\r\n");
    is($h->{status}, 200, 'HEAD ignores Range');

    is(get('/digits.txt', headers => "Range: bytes=0-9\r\nIf-Range: $etag\r\n")->{status}, 206,
        'If-Range with the ETag: 206');
    my $ir = get('/digits.txt', headers => "Range: bytes=0-9\r\nIf-Range: \"old\"\r\n");
    is($ir->{status}, 200, 'If-Range with another ETag: 200');
    ok($ir->{body} eq $DIGITS, '... the whole file');
    is(get('/digits.txt', headers => "Range: bytes=0-9\r\nIf-Range: W/$etag\r\n")->{status}, 200,
        'If-Range with a weak ETag: 200 (strong comparison)');
    is(get('/digits.txt', headers => "Range: bytes=0-9\r\nIf-Range: $lm\r\n")->{status}, 206,
        'If-Range with the Last-Modified date: 206');
    is(get('/digits.txt', headers => "Range: bytes=0-9\r\nIf-Range: Sat, 01 Jan 2000 00:00:00 GMT\r\n")->{status},
        200, 'If-Range with another date: 200');
}

# ---------------------------------------------------------------------------
# Precompressed siblings and on-the-fly gzip
# ---------------------------------------------------------------------------

{
    my $id = get('/app.js');
    is($id->{headers}{vary}, 'Accept-Encoding', 'no Accept-Encoding: Vary all the same');
    ok(!exists $id->{headers}{'content-encoding'}, 'no Accept-Encoding: identity');
    is($id->{body}, $APPJS, '... the file');

    my %choice = (
        'gzip' => 'gzip',
        'br' => 'br',
        'gzip, deflate, br' => 'br',
        'br;q=0.5, gzip' => 'gzip',
        'gzip;q=1.0, br;q=0.999' => 'gzip',
        'br;q=0, gzip' => 'gzip',
        'BR' => 'br',
        '*' => 'br',
        '*;q=0.5, br;q=0' => 'gzip',
        'x-gzip' => 'gzip',
        'identity' => undef,
        'gzip;q=0, br;q=0' => undef,
        'deflate' => undef,
        'gzip;q=abc' => undef,
    );
    for my $ae (sort keys %choice) {
        my $r = get('/app.js', headers => "Accept-Encoding: $ae\r\n");
        my $want = $choice{$ae};
        is($r->{status}, 200, "Accept-Encoding: $ae: 200");
        is($r->{headers}{'content-encoding'}, $want, "Accept-Encoding: $ae: " . ($want // 'identity'));
        is($r->{headers}{vary}, 'Accept-Encoding', "Accept-Encoding: $ae: Vary");
        is($r->{headers}{'content-type'}, 'text/javascript; charset=utf-8', "Accept-Encoding: $ae: the type of app.js");
        my $body = !defined $want ? $APPJS : $want eq 'br' ? 'BROTLI-BYTES-FOR-TEST' : $APPJS_GZ;
        ok($r->{body} eq $body, "Accept-Encoding: $ae: the bytes of " . ($want ? "app.js.$want" =~ s/gzip$/gz/r : 'app.js'));
    }
    my $g = get('/app.js', headers => "Accept-Encoding: gzip\r\n");
    my $plain;
    gunzip(\$g->{body} => \$plain) or die "gunzip: $GunzipError";
    is($plain, $APPJS, 'the .gz sibling decompresses to the file');
    isnt($g->{headers}{etag}, $id->{headers}{etag}, 'the sibling has its own ETag');
    is(get('/app.js', headers => "Accept-Encoding: gzip\r\nIf-None-Match: $g->{headers}{etag}\r\n")->{status},
        304, 'If-None-Match with the sibling ETag: 304');
    my $gr = get('/app.js', headers => "Accept-Encoding: gzip\r\nRange: bytes=0-9\r\n");
    is($gr->{status}, 206, 'Range on a precompressed sibling: 206');
    is($gr->{headers}{'content-encoding'}, 'gzip', '... of the gzip representation');
    ok($gr->{body} eq substr($APPJS_GZ, 0, 10), '... its first bytes');

    my $css = get('/style.css', headers => "Accept-Encoding: br\r\n");
    ok(!exists $css->{headers}{'content-encoding'}, 'br asked, only .gz there: identity');
    $css = get('/style.css', headers => "Accept-Encoding: br, gzip\r\n");
    is($css->{headers}{'content-encoding'}, 'gzip', 'br, gzip asked, only .gz there: gzip');

    my $direct = get('/app.js.gz');
    is($direct->{headers}{'content-type'}, 'application/gzip', 'the .gz file asked by name: application/gzip');
    ok(!exists $direct->{headers}{'content-encoding'}, '... without Content-Encoding');

    # On the fly: text.txt has no sibling; [gzip] is on, min_length 1k.
    my $tx = get('/text.txt', headers => "Accept-Encoding: gzip\r\n");
    is($tx->{status}, 200, 'on-the-fly gzip: 200');
    is($tx->{headers}{'content-encoding'}, 'gzip', 'on-the-fly gzip: Content-Encoding: gzip');
    is($tx->{headers}{vary}, 'Accept-Encoding', 'on-the-fly gzip: Vary');
    is($tx->{header_count}{vary}, 1, 'on-the-fly gzip: one Vary');
    like($tx->{headers}{etag} // '', qr{^W/"}, 'on-the-fly gzip: a weak ETag');
    ok(!exists $tx->{headers}{'accept-ranges'}, 'on-the-fly gzip: no Accept-Ranges');
    cmp_ok($tx->{headers}{'content-length'}, '<', length($TEXT) / 4, 'on-the-fly gzip: much smaller');
    my $txp;
    gunzip(\$tx->{body} => \$txp) or die "gunzip: $GunzipError";
    ok($txp eq $TEXT, 'on-the-fly gzip: decompresses to the file');
    my $txh = req('HEAD', '/text.txt', headers => "Accept-Encoding: gzip\r\n");
    is($txh->{headers}{'content-encoding'}, 'gzip', 'HEAD: Content-Encoding as GET');
    is($txh->{headers}{'content-length'}, $tx->{headers}{'content-length'}, 'HEAD: the gzip length as GET');
    is(get('/text.txt', headers => "Accept-Encoding: gzip\r\nIf-None-Match: $tx->{headers}{etag}\r\n")->{status},
        304, 'If-None-Match with the weak ETag: 304');
    my $txr = get('/text.txt', headers => "Accept-Encoding: gzip\r\nRange: bytes=0-4\r\n");
    is($txr->{status}, 206, 'Range with gzip accepted: 206');
    ok(!exists $txr->{headers}{'content-encoding'}, '... of the identity bytes, not gzipped');
    is($txr->{body}, 'lorem', '... the first five bytes');
    my $small = get('/a.txt', headers => "Accept-Encoding: gzip\r\n");
    ok(!exists $small->{headers}{'content-encoding'}, 'below min_length: not gzipped');
    my $png = get('/image.png', headers => "Accept-Encoding: gzip\r\n");
    ok(!exists $png->{headers}{'content-encoding'}, 'an image: not gzipped');
    ok(!exists $png->{headers}{vary}, 'an image: no Vary');
    my $q0 = get('/text.txt', headers => "Accept-Encoding: gzip;q=0\r\n");
    ok(!exists $q0->{headers}{'content-encoding'}, 'gzip;q=0: identity');
}

# ---------------------------------------------------------------------------
# Cache-Control rules
# ---------------------------------------------------------------------------

{
    is(get('/assets/app.3f9a1b.js')->{headers}{'cache-control'}, 'public, max-age=31536000, immutable',
        'a hashed asset under /assets: immutable');
    is(get('/index.html')->{headers}{'cache-control'}, 'no-cache', '*.html: no-cache');
    is(get('/sub/')->{headers}{'cache-control'}, 'no-cache', 'a directory index: its rule');
    ok(!exists get('/a.txt')->{headers}{'cache-control'}, 'no rule: no Cache-Control');
}

# ---------------------------------------------------------------------------
# Keep-alive and pipelining after file responses
# ---------------------------------------------------------------------------

{
    my $etag = get('/digits.txt')->{headers}{etag};
    my @reqs = (
        "GET /a.txt HTTP/1.1\r\n$H\r\n",
        "GET /big.bin HTTP/1.1\r\n$H\r\n",
        "HEAD /big.bin HTTP/1.1\r\n$H\r\n",
        "GET /digits.txt HTTP/1.1\r\n${H}If-None-Match: $etag\r\n\r\n",
        "GET /digits.txt HTTP/1.1\r\n${H}Range: bytes=0-9\r\n\r\n",
        "GET /nope HTTP/1.1\r\n$H\r\n",
        "GET /text.txt HTTP/1.1\r\n${H}Accept-Encoding: gzip\r\n\r\n",
        "GET /big.bin HTTP/1.1\r\n$H\r\n",
        "GET /a.txt HTTP/1.1\r\n$H\r\n",
    );
    my @r = $t->keepalive(\@reqs, timeout => 5);
    is(scalar(grep { defined } @r), scalar @reqs, 'keep-alive: every response on one connection');
    is(join(' ', map { $_ ? $_->{status} : 'none' } @r), '200 200 200 304 206 404 200 200 200',
        'keep-alive: the statuses in order');
    ok($r[1] && $r[1]{body} eq $BIG, 'keep-alive: the large file intact');
    ok($r[7] && $r[7]{body} eq $BIG, 'keep-alive: the large file again after other responses');
    is($r[8] && $r[8]{body}, "hello world\n", 'keep-alive: a small file at the end');

    # Pipelined: three requests in one write, a large file in the middle.
    my $c = $t->connect;
    $c->send("GET /a.txt HTTP/1.1\r\n$H\r\nGET /big.bin HTTP/1.1\r\n$H\r\nGET /digits.txt HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    my $all = $c->read_all(timeout => 5);
    my @p = parse_responses($all);
    is(scalar @p, 3, 'pipelined: three responses');
    ok(@p == 3 && $p[0]{body} eq "hello world\n" && $p[1]{body} eq $BIG && $p[2]{body} eq $DIGITS,
        'pipelined: in order, each intact');
    $c->close;

    # HTTP/1.0 with keep-alive.
    my $c10 = $t->connect;
    $c10->send("GET /big.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    my $r10 = $c10->read_response(timeout => 5);
    ok($r10 && $r10->{body} eq $BIG, 'HTTP/1.0 keep-alive: the file');
    is($r10 && $r10->{headers}{connection}, 'keep-alive', 'HTTP/1.0: Connection: keep-alive');
    $c10->send("GET /a.txt HTTP/1.0\r\n\r\n");
    my $r10b = $c10->read_response(timeout => 5);
    is($r10b && $r10b->{body}, "hello world\n", 'HTTP/1.0: a second request on the connection');
    $c10->close;
}

# ---------------------------------------------------------------------------
# The open file cache sees files change
# ---------------------------------------------------------------------------

{
    put('www/changing.txt', "one\n");
    is(get('/changing.txt')->{body}, "one\n", 'a new file');
    # Rewritten in place (same inode): the cached descriptor's own metadata
    # gives the new length at once.
    put('www/changing.txt', "two, longer\n");
    my $r = get('/changing.txt');
    is($r->{body}, "two, longer\n", 'rewritten in place: the new content at once');
    is($r->{headers}{'content-length'}, 12, '... and the new Content-Length');
    # Replaced by a rename (an atomic deploy): the old file stays whole
    # until the cache revalidates the name (open_file_cache_valid = 2s).
    put('www/changing.new', "three\n");
    rename("$www/changing.new", "$www/changing.txt") or die "rename: $!";
    my $during = get('/changing.txt')->{body};
    ok($during eq "two, longer\n" || $during eq "three\n", 'right after a rename: the old or the new file, whole');
    ok(wait_for(sub { get('/changing.txt')->{body} eq "three\n" }, timeout => 5, interval => 0.2),
        'after open_file_cache_valid: the new file');
    unlink "$www/changing.txt";
    ok(wait_for(sub { get('/changing.txt')->{status} == 404 }, timeout => 5, interval => 0.2),
        'a deleted file: 404');
}

# A root that is a link switched by a deployment (ln -sfn, as a rename).
{
    is(get('/rel/page.txt')->{body}, "v1\n", 'a linked root: the release it points to');
    is(get('/rel/only-v2.txt')->{status}, 404, '... a file of the next release: not yet');
    symlink("$dir/releases/v2", "$dir/current.new") or die "symlink: $!";
    rename("$dir/current.new", "$dir/current") or die "rename: $!";
    my $r = get('/rel/only-v2.txt');
    is($r->{status}, 200, 'switched: a file only the new release has, at once');
    is($r->{body}, "new in v2\n", '... its content');
    ok(wait_for(sub { get('/rel/page.txt')->{body} eq "v2\n" }, timeout => 5, interval => 0.2),
        '... and a cached file comes from the new release within open_file_cache_valid');
}

# ---------------------------------------------------------------------------
# Metrics: static responses are route="static"
# ---------------------------------------------------------------------------

{
    my $raw = $t->http("GET /metrics HTTP/1.1\r\n${H}Connection: close\r\n\r\n", port => $t->admin_port);
    my ($r) = parse_responses($raw);
    my ($n) = ($r->{body} // '') =~ /^apiary_http_request_duration_seconds_count\{route="static"\} (\d+)/m;
    cmp_ok($n // 0, '>', 100, 'metrics: static requests counted as route="static"') or diag($r->{body});
}

# ---------------------------------------------------------------------------
# follow_symlinks = off and on; no mime.types file
# ---------------------------------------------------------------------------

for my $mode (qw(off on)) {
    my $s = Apiary::Test->new(name => "70-static.t follow_symlinks=$mode", config => {
        server => { workers => 1 },
        static => { root => "/ $www", follow_symlinks => $mode, mime_types => '',
                    precompressed => 'off' },
    });
    $s->run;
    my %want = $mode eq 'off'
        ? ('/link.txt' => 404, '/passwd' => 404, '/outdir/secret.txt' => 404, '/a.txt' => 200)
        : ('/link.txt' => 200, '/passwd' => 200, '/outdir/secret.txt' => 200, '/a.txt' => 200);
    for my $p (sort keys %want) {
        is(get($p, t => $s)->{status}, $want{$p}, "follow_symlinks = $mode: $p: $want{$p}");
    }
    if ($mode eq 'off') {
        is(get('/app.js', t => $s)->{headers}{'content-type'}, 'text/javascript; charset=utf-8',
            'mime_types empty: the built-in table');
        ok(!exists get('/app.js', t => $s, headers => "Accept-Encoding: gzip\r\n")->{headers}{'content-encoding'},
            'precompressed = off: no sibling');
        ok(!exists get('/app.js', t => $s)->{headers}{vary}, 'precompressed and gzip off: no Vary');
    }
    $s->stop;
}

# ---------------------------------------------------------------------------
# apiary -t on bad [static] lines: file:line: static.key: why
# ---------------------------------------------------------------------------

{
    my $n = 0;
    my @bad = (
        ["root = / $dir/missing", 3, qr{^static\.root: \Q$dir\E/missing: No such file or directory$}],
        ["root = / $www/a.txt", 3, qr{^static\.root: .*: not a directory$}],
        ["root = / www", 3, qr{^static\.root: the directory must be an absolute path}],
        ["root = assets $www", 3, qr{^static\.root: expected a URL path}],
        ["root = /a?b $www", 3, qr{^static\.root: expected a URL path}],
        ["root = /", 3, qr{^static\.root: expected "URL-PREFIX DIRECTORY}],
        ["root = /x $www fallback=nope.html", 3, qr{^static\.root: fallback .*nope\.html: No such file}],
        ["root = /x $www fallback=../outside/secret.txt", 3, qr{^static\.root: fallback: expected a file name inside}],
        ["root = /x $www fallback=sub", 3, qr{^static\.root: fallback .*sub: not a regular file}],
        ["root = /x $www spa=index.html", 3, qr{^static\.root: unknown option "spa=index\.html"}],
        ["root = /x $www\nroot = /x/ $dir/app", 4, qr{^static\.root: the prefix /x is mapped twice}],
        ["follow_symlinks = yes", 3, qr{^static\.follow_symlinks: expected off, inside or on}],
        ["precompressed = maybe", 3, qr{^static\.precompressed: expected on or off}],
        ["cache_control = *.html", 3, qr{^static\.cache_control: expected "PATTERN VALUE"}],
        ["index = sub/index.html", 3, qr{^static\.index: a file name without}],
        ["mime_types = $dir/no-such-mime.types", 3, qr{^static\.mime_types: .*No such file or directory}],
        ["default_type = text", 3, qr{^static\.default_type: expected a media type}],
        ["open_file_cache = -1", 3, qr{^static\.open_file_cache: expected an integer}],
    );
    for my $c (@bad) {
        my ($text, $line, $why) = @$c;
        my $file = $t->write_file(sprintf('bad-%02d.conf', ++$n), "[server]\n[static]\n$text\n");
        my ($code, $out, $err) = $t->run_cmd('-t', '-c', $file);
        is($code, 1, "-t refuses: $text");
        my ($msg) = "$out$err" =~ /^\Q$file\E:$line: (.*)$/m;
        like($msg // '', $why, "-t says $file:$line and why") or diag("$out$err");
    }
    my $file = $t->write_file('bad-gzip.conf', "[gzip]\nlevel = 0\n");
    my ($code, $out, $err) = $t->run_cmd('-t', '-c', $file);
    like("$out$err", qr/^\Q$file\E:2: gzip\.level: expected an integer 1\.\.9/m, '-t: gzip.level 0');

    # A root on the API's prefix hides one of them.
    $file = $t->write_file('bad-api.conf', "[database]\nuri = postgresql://x\@127.0.0.1/x\n[static]\nroot = / $www\n");
    ($code, $out, $err) = $t->run_cmd('-t', '-c', $file);
    like("$out$err", qr/^\Q$file\E:4: static\.root: the prefix \/ is also api\.prefix/m,
        '-t: a root on api.prefix') or diag("$out$err");
    $file = $t->write_file('good-api.conf', "[database]\nuri = postgresql://x\@127.0.0.1/x\n[api]\nprefix = /api\n[static]\nroot = / $www\nroot = /app $dir/app fallback=index.html\ncache_control = *.html no-cache\n");
    ($code, $out, $err) = $t->run_cmd('-t', '-c', $file);
    is($code, 0, '-t: the site at / and the API at /api') or diag("$out$err");
    ($code, $out, $err) = $t->run_cmd('-t', '-c', $file,
        { env => { APIARY_STATIC_ROOT => "/x $dir/missing", APIARY_STATIC_CACHE_CONTROL => '*.js public, max-age=60; *.css no-cache' } });
    like("$out$err", qr{^env:APIARY_STATIC_ROOT: static\.root: \Q$dir\E/missing: No such file}m,
        '-t: APIARY_STATIC_ROOT is checked as well');
}

done_testing;
