/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: the llhttp glue (events, slices, limits, rejections). */
#include <stdlib.h>

#include "config.h"
#include "http.h"
#include "tap.h"

static ap_config_t *conf;

/* Feeds text in one go, or byte by byte when split is set, and returns the
 * status of an error, 0 for a complete message, -1 when more is needed. */
static int feed(ap_http_parser_t *hp, const char *text, size_t len, int split)
{
    size_t off = 0;
    while (off < len) {
        size_t n = split ? 1 : len - off;
        size_t used = 0;
        ap_http_event_t ev = ap_http_parse(hp, text + off, n, &used);
        off += used;
        if (ev == AP_HTTP_ERROR)
            return hp->error_status;
        if (ev == AP_HTTP_MESSAGE)
            return 0;
    }
    return -1;
}

static int status_of(const char *text, size_t len)
{
    ap_http_parser_t hp;
    ap_http_parser_init(&hp, conf);
    int a = feed(&hp, text, len, 0);
    ap_http_parser_cleanup(&hp);
    ap_http_parser_init(&hp, conf);
    int b = feed(&hp, text, len, 1);
    ap_http_parser_cleanup(&hp);
    if (a != b)
        printf("# whole: %d, byte by byte: %d\n", a, b);
    /* Splitting the input anywhere must not change the verdict. */
    return a == b ? a : 1000 + a;
}

#define STATUS(lit) status_of((lit), sizeof(lit) - 1)

int main(void)
{
    ap_buf_t err;
    ap_buf_init(&err);
    static const char text[] = "[server]\nmax_uri_size = 100\nmax_header_size = 300\n"
                               "max_headers = 5\nmax_body_size = 10\n";
    conf = ap_config_parse("t.conf", text, sizeof(text) - 1, NULL, &err);
    ok(conf != NULL, "test config");
    if (!conf)
        return done_testing();

    ap_http_parser_t hp;
    ap_http_parser_init(&hp, conf);
    static const char two[] = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Pad:  v  \r\n\r\n"
                              "POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    size_t used = 0, off = 0;
    ap_http_event_t ev = ap_http_parse(&hp, two, sizeof(two) - 1, &used);
    is_int(ev, AP_HTTP_MESSAGE, "a request without a body is complete at once");
    off += used;
    ok(ap_str_eq(hp.req.path, AP_STR("/a/b")), "path sliced");
    ok(ap_str_eq(hp.req.query, AP_STR("x=1&y=2")), "query sliced");
    const ap_str_t *pad = ap_http_header(&hp.req, AP_STR("x-PAD"));
    ok(pad && ap_str_eq(*pad, AP_STR("v")), "header looked up case-insensitively, OWS trimmed");
    ok(hp.req.keep_alive, "HTTP/1.1 keeps alive");
    ok(off < sizeof(two) - 1, "pipelined bytes left unconsumed");
    ap_http_parser_next(&hp);
    ev = ap_http_parse(&hp, two + off, sizeof(two) - 1 - off, &used);
    is_int(ev, AP_HTTP_HEAD, "a request with a body announces its head");
    off += used;
    ev = ap_http_parse(&hp, two + off, sizeof(two) - 1 - off, &used);
    is_int(ev, AP_HTTP_MESSAGE, "then the whole request");
    ok(hp.req.method == HTTP_POST && ap_str_eq(ap_buf_str(&hp.req.body), AP_STR("abc")),
       "second request body");
    ap_http_parser_cleanup(&hp);

    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n0\r\n\r\n"), 0, "chunked body");
    is_int(STATUS("GET / HTTP/1.0\r\n\r\n"), 0, "HTTP/1.0 without Host");
    is_int(STATUS("GET /xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx HTTP/1.1\r\nHost: a\r\n\r\n"), 414, "long target: 414");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"), 431, "too many headers: 431");
    char big[600];
    memset(big, 0, sizeof(big));
    strcpy(big, "GET / HTTP/1.1\r\nHost: a\r\nA: ");
    memset(big + strlen(big), 'x', 300);
    strcat(big, "\r\n\r\n");
    is_int(status_of(big, strlen(big)), 431, "large head: 431");
    is_int(STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"), 413, "Content-Length over the limit: 413");
    is_int(STATUS("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"), 413, "chunked over the limit: 413");
    is_int(STATUS("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505, "HTTP/2.0: 505");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), 501, "TE gzip: 501");
    is_int(STATUS("GET / HTTP/1.1\r\n\r\n"), 400, "no Host: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400, "two Hosts: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, "CL and TE: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400, "two Content-Lengths: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), 400, "obs-fold: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nX:\r\n b\r\n\r\n"), 400, "obs-fold after an empty value: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nX:\r\nY: 1\r\n\r\n"), 0, "an empty value: accepted");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n"), 0, "an empty value, a space before CRLF: accepted");
    is_int(STATUS("GET / HTTP/1.1\nHost: a\n\n"), 400, "bare LF: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 400, "bare CR: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHo st: a\r\n\r\n"), 400, "space in a header name: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"), 400, "empty header name: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400, "space before the colon: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n"), 400, "control character in a value: 400");
    is_int(STATUS("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "NUL in the target: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n"), 400, "chunk size overflow: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), 400, "bad chunk size: 400");
    is_int(STATUS("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), 400, "TLS ClientHello: 400");
    is_int(STATUS("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400, "HTTP/2 preface: 400");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n"), 417, "unknown Expect: 417");
    is_int(STATUS("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"), 400, "negative Content-Length: 400");

    ap_config_free(conf);
    ap_buf_cleanup(&err);
    return done_testing();
}
