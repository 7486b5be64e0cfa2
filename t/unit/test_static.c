/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: static-file path normalisation, Range and date parsing,
 * entity-tag matching, Accept-Encoding q-values, media types, gzip. */
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "config.h"
#include "gzip.h"
#include "mime.h"
#include "static.h"
#include "tap.h"

static ap_str_t S(const char *s)
{
    return ap_str_make(s, strlen(s));
}

static void norm(const char *in, int want_rc, const char *want, int want_dir)
{
    ap_buf_t b;
    ap_buf_init(&b);
    int dir = -1;
    int rc = ap_static_normalise(S(in), &b, &dir);
    ok(rc == want_rc && (rc != 0 || (strcmp(b.data, want) == 0 && dir == want_dir)),
       "normalise \"%s\" -> %d \"%s\"%s", in, want_rc, want ? want : "", want_dir ? " (dir)" : "");
    if (rc != want_rc || (rc == 0 && (strcmp(b.data, want) != 0 || dir != want_dir)))
        printf("#   got %d \"%s\" dir=%d\n", rc, b.data ? b.data : "", dir);
    ap_buf_cleanup(&b);
}

static void range(const char *v, uint64_t size, ap_range_t want, uint64_t wf, uint64_t wl)
{
    uint64_t f = 7777, l = 7777;
    ap_range_t r = ap_static_parse_range(S(v), size, &f, &l);
    ok(r == want && (r != AP_RANGE_ONE || (f == wf && l == wl)), "Range \"%s\" of %llu", v,
       (unsigned long long)size);
    if (r != want || (r == AP_RANGE_ONE && (f != wf || l != wl)))
        printf("#   got %d %llu-%llu\n", r, (unsigned long long)f, (unsigned long long)l);
}

int main(void)
{
    /* Normalisation */
    norm("", 0, "", 1);
    norm("/", 0, "", 1);
    norm("/a.txt", 0, "a.txt", 0);
    norm("//a//b.txt", 0, "a/b.txt", 0);
    norm("/a/./b", 0, "a/b", 0);
    norm("/a/b/../c", 0, "a/c", 0);
    norm("/a/b/..", 0, "a", 1);
    norm("/a/b/.", 0, "a/b", 1);
    norm("/a/", 0, "a", 1);
    norm("/%61%62c", 0, "abc", 0);
    norm("/hello%20world", 0, "hello world", 0);
    norm("/caf%C3%A9", 0, "caf\xc3\xa9", 0);
    norm("/%252e%252e", 0, "%2e%2e", 0);
    norm("/..", 400, NULL, 0);
    norm("/a/../..", 400, NULL, 0);
    norm("/%2e%2e/x", 400, NULL, 0);
    norm("/.%2E/x", 400, NULL, 0);
    norm("/a%2fb", 400, NULL, 0);
    norm("/a%2Fb", 400, NULL, 0);
    norm("/a%00", 400, NULL, 0);
    norm("/a%0d%0aX", 400, NULL, 0);
    norm("/a%7f", 400, NULL, 0);
    norm("/a\\b", 400, NULL, 0);
    norm("/a%5cb", 400, NULL, 0);
    norm("/a%", 400, NULL, 0);
    norm("/a%4", 400, NULL, 0);
    norm("/a%g0", 400, NULL, 0);
    norm("/.git/config", 404, NULL, 0);
    norm("/a/.env", 404, NULL, 0);
    norm("/%2eenv", 404, NULL, 0);
    norm("/.well-known/x", 0, ".well-known/x", 0);
    norm("/.well-knownx/x", 404, NULL, 0);
    norm("/a/.git/../b", 0, "a/b", 0);
    norm("/a.b/c..d/...", 404, NULL, 0);

    /* Ranges */
    range("bytes=0-0", 1000, AP_RANGE_ONE, 0, 0);
    range("bytes=0-", 1000, AP_RANGE_ONE, 0, 999);
    range("bytes=-1", 1000, AP_RANGE_ONE, 999, 999);
    range("bytes=-1000", 1000, AP_RANGE_ONE, 0, 999);
    range("bytes=-5000", 1000, AP_RANGE_ONE, 0, 999);
    range("bytes=10-20000", 1000, AP_RANGE_ONE, 10, 999);
    range("Bytes=1-2", 1000, AP_RANGE_ONE, 1, 2);
    range("bytes=1-2,", 1000, AP_RANGE_ONE, 1, 2);
    range("bytes=1000-", 1000, AP_RANGE_UNSATISFIABLE, 0, 0);
    range("bytes=-0", 1000, AP_RANGE_UNSATISFIABLE, 0, 0);
    range("bytes=0-", 0, AP_RANGE_UNSATISFIABLE, 0, 0);
    range("bytes=-1", 0, AP_RANGE_UNSATISFIABLE, 0, 0);
    range("bytes=2000-3000,4000-", 1000, AP_RANGE_UNSATISFIABLE, 0, 0);
    range("bytes=0-1,2000-", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=0-1,3-4", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=5-1", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=a-b", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=-", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=1", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=+1-2", 1000, AP_RANGE_NONE, 0, 0);
    range("lines=1-2", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=99999999999999999999-", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=18446744073709551615-", 1000, AP_RANGE_NONE, 0, 0);
    range("bytes=9999999999999999999-", 1000, AP_RANGE_UNSATISFIABLE, 0, 0);

    /* Dates */
    is_int(ap_static_parse_date(S("Sun, 06 Nov 1994 08:49:37 GMT")), 784111777, "IMF-fixdate");
    is_int(ap_static_parse_date(S("Sunday, 06-Nov-94 08:49:37 GMT")), 784111777, "RFC 850 date");
    is_int(ap_static_parse_date(S("Sun Nov  6 08:49:37 1994")), 784111777, "asctime date");
    is_int(ap_static_parse_date(S("Thu, 01 Jan 1970 00:00:00 GMT")), 0, "the epoch");
    is_int(ap_static_parse_date(S("Tue, 29 Feb 2028 12:00:00 GMT")), 1835438400, "a leap day");
    is_int(ap_static_parse_date(S("Sun, 06 Nov 1994 08:49:37 UTC")), -1, "not GMT");
    is_int(ap_static_parse_date(S("Sun, 06 Foo 1994 08:49:37 GMT")), -1, "a bad month");
    is_int(ap_static_parse_date(S("yesterday")), -1, "not a date");
    is_int(ap_static_parse_date(S("")), -1, "empty");

    /* Entity tags */
    ok(ap_static_etag_match(S("\"a\""), "\"a\"", 1), "strong match");
    ok(ap_static_etag_match(S("\"x\", \"a\""), "\"a\"", 1), "in a list");
    ok(ap_static_etag_match(S("*"), "\"a\"", 1), "*");
    ok(!ap_static_etag_match(S("W/\"a\""), "\"a\"", 1), "weak tag fails strong comparison");
    ok(ap_static_etag_match(S("W/\"a\""), "\"a\"", 0), "weak tag passes weak comparison");
    ok(ap_static_etag_match(S("\"a\""), "W/\"a\"", 0), "our weak tag, weak comparison");
    ok(!ap_static_etag_match(S("\"a\""), "W/\"a\"", 1), "our weak tag, strong comparison");
    ok(!ap_static_etag_match(S("\"ab\""), "\"a\"", 0), "another tag");
    ok(!ap_static_etag_match(S("a"), "\"a\"", 0), "unquoted: malformed");
    ok(!ap_static_etag_match(S("\"a"), "\"a\"", 0), "unterminated");
    ok(!ap_static_etag_match(S(""), "\"a\"", 0), "empty list");

    /* Accept-Encoding */
    is_int(ap_gzip_accept_q(S("gzip"), AP_STR("gzip")), 1000, "gzip");
    is_int(ap_gzip_accept_q(S("deflate, gzip;q=0.5"), AP_STR("gzip")), 500, "gzip;q=0.5");
    is_int(ap_gzip_accept_q(S("gzip ; q=0.25 , br"), AP_STR("gzip")), 250, "spaces around ;");
    is_int(ap_gzip_accept_q(S("gzip;q=0"), AP_STR("gzip")), 0, "q=0");
    is_int(ap_gzip_accept_q(S("gzip;q=1.000"), AP_STR("gzip")), 1000, "q=1.000");
    is_int(ap_gzip_accept_q(S("gzip;q=1.5"), AP_STR("gzip")), 0, "q=1.5 is malformed");
    is_int(ap_gzip_accept_q(S("gzip;q=0.1234"), AP_STR("gzip")), 0, "four decimals are malformed");
    is_int(ap_gzip_accept_q(S("x-gzip"), AP_STR("gzip")), 1000, "x-gzip");
    is_int(ap_gzip_accept_q(S("*;q=0.3"), AP_STR("gzip")), 300, "*");
    is_int(ap_gzip_accept_q(S("*, gzip;q=0"), AP_STR("gzip")), 0, "its own entry beats *");
    is_int(ap_gzip_accept_q(S("br"), AP_STR("gzip")), 0, "not listed");
    is_int(ap_gzip_accept_q(S(""), AP_STR("gzip")), 0, "empty");
    is_int(ap_gzip_accept_q(S("GZIP"), AP_STR("gzip")), 1000, "case-insensitive");
    is_int(ap_gzip_accept_q(S("gzipx"), AP_STR("gzip")), 0, "a longer name");

    /* Media types: built-in table only, then with a file */
    ap_mime_t *m = ap_mime_new(NULL, "application/octet-stream");
    is_str(ap_mime_type(m, "a/b.html", 8), "text/html; charset=utf-8", "html");
    is_str(ap_mime_type(m, "x.JS", 4), "text/javascript; charset=utf-8", "JS, any case");
    is_str(ap_mime_type(m, "x.png", 5), "image/png", "png, no charset");
    is_str(ap_mime_type(m, "x.svg", 5), "image/svg+xml; charset=utf-8", "svg is text");
    is_str(ap_mime_type(m, "x.tar.gz", 8), "application/gzip", "the last extension");
    is_str(ap_mime_type(m, "Makefile", 8), "application/octet-stream", "no extension");
    is_str(ap_mime_type(m, "dir.d/file", 10), "application/octet-stream", "a dot in a directory");
    is_str(ap_mime_type(m, "x.", 2), "application/octet-stream", "a trailing dot");
    ap_mime_free(m);
    char mpath[] = "/tmp/test_static.mime.XXXXXX";
    int mfd = mkstemp(mpath);
    FILE *f = mfd >= 0 ? fdopen(mfd, "w") : NULL;
    if (f) {
        fputs("# comment\ntext/x-test tst  TS2\napplication/json json\nbad-line zz\n", f);
        fclose(f);
    }
    m = ap_mime_new(mpath, "text/plain");
    is_str(ap_mime_type(m, "a.tst", 5), "text/x-test; charset=utf-8", "from the file");
    is_str(ap_mime_type(m, "a.ts2", 5), "text/x-test; charset=utf-8",
           "file extensions in any case");
    is_str(ap_mime_type(m, "a.zz", 4), "text/plain; charset=utf-8",
           "a line without a type/subtype is skipped");
    is_str(ap_mime_type(m, "a.css", 5), "text/css; charset=utf-8",
           "built-in for what the file lacks");
    is_str(ap_mime_type(m, "noext", 5), "text/plain; charset=utf-8", "default_type");
    ap_mime_free(m);
    remove(mpath);

    /* gzip round trip, twice on the same stream */
    for (int round = 0; round < 2; round++) {
        ap_buf_t z;
        ap_buf_init(&z);
        char in[5000];
        for (size_t i = 0; i < sizeof(in); i++)
            in[i] = (char)('a' + (i * 7 + (size_t)round) % 26);
        ok(ap_gzip_compress(&z, in, sizeof(in), round ? 9 : 1) == 0, "compress, round %d", round);
        char out[6000];
        z_stream s;
        memset(&s, 0, sizeof(s));
        inflateInit2(&s, 15 + 16);
        s.next_in = (unsigned char *)z.data;
        s.avail_in = (uInt)z.len;
        s.next_out = (unsigned char *)out;
        s.avail_out = sizeof(out);
        int rc = inflate(&s, Z_FINISH);
        ok(rc == Z_STREAM_END && s.total_out == sizeof(in) && memcmp(out, in, sizeof(in)) == 0,
           "gunzips to the input, round %d", round);
        inflateEnd(&s);
        ap_buf_cleanup(&z);
    }
    ap_buf_t z;
    ap_buf_init(&z);
    ok(ap_gzip_compress(&z, "", 0, 1) == 0 && z.len >= 18, "an empty body is a valid gzip member");
    ap_buf_cleanup(&z);
    ap_gzip_cleanup();

    /* [static] and [gzip] in the configuration */
    ap_buf_t err;
    ap_buf_init(&err);
    ap_config_t *c = ap_config_parse("t.conf", "", 0, NULL, &err);
    ok(c && c->nstatic_roots == 0 && strcmp(c->static_index, "index.html") == 0 &&
           c->static_symlinks == AP_SYMLINKS_INSIDE && c->static_precompressed == 1 &&
           c->gzip == 0 && c->gzip_min_length == 1024 && c->gzip_level == 1 &&
           c->open_file_cache == 1000 && c->open_file_cache_valid_ms == 2000 &&
           strcmp(c->mime_types, "/etc/mime.types") == 0,
       "defaults: no root, index.html, inside, precompressed, gzip off");
    ap_config_free(c);
    const char *text = "[static]\nroot = /assets/ /tmp/\nroot = / / fallback=/etc/hostname\n"
                       "index = off\nfollow_symlinks = off\ncache_control = *.html  no-cache \n"
                       "mime_types =\nopen_file_cache = 0\n[gzip]\nenable = on\nlevel = 6\n";
    ap_buf_reset(&err);
    c = ap_config_parse("t.conf", text, strlen(text), NULL, &err);
    ok(c != NULL, "a [static] section parses");
    if (c == NULL)
        printf("# %s", err.data);
    if (c) {
        is_int(c->nstatic_roots, 2, "two roots");
        is_str(c->static_roots[0].prefix, "/assets", "the trailing slash of a prefix is dropped");
        is_str(c->static_roots[0].dir, "/tmp", "... and of a directory");
        ok(c->static_roots[0].fallback == NULL && c->static_roots[0].line == 2,
           "no fallback; line 2");
        is_str(c->static_roots[1].fallback, "etc/hostname", "the fallback, relative");
        ok(c->static_index == NULL, "index = off");
        is_int(c->static_symlinks, AP_SYMLINKS_OFF, "follow_symlinks = off");
        is_int(c->ncache_rules, 1, "one cache rule");
        is_str(c->cache_rules[0].pattern, "*.html", "its pattern");
        is_str(c->cache_rules[0].value, "no-cache", "its value, trimmed");
        ok(c->mime_types == NULL, "mime_types empty: built-in only");
        ok(c->gzip == 1 && c->gzip_level == 6, "gzip on, level 6");
        ap_config_free(c);
    }
    char *env[] = {"APIARY_STATIC_ROOT=/a /tmp, /b /",
                   "APIARY_STATIC_CACHE_CONTROL=*.js a, b; *.css c", "APIARY_GZIP_ENABLE=yes",
                   NULL};
    ap_buf_reset(&err);
    c = ap_config_parse("t.conf", text, strlen(text), env, &err);
    ok(c && c->nstatic_roots == 2 && strcmp(c->static_roots[1].prefix, "/b") == 0 &&
           c->static_roots[1].fallback == NULL && c->ncache_rules == 2 &&
           strcmp(c->cache_rules[0].value, "a, b") == 0 && c->gzip == 1,
       "environment lists replace the file's roots and rules");
    ap_config_free(c);
    ap_buf_cleanup(&err);

    return done_testing();
}
