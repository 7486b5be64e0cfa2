/* SPDX-License-Identifier: BSD-2-Clause */
/* HTTP/1.1 on llhttp: request parsing, checks and the response serialiser. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "clock.h"
#include "conn.h"
#include "gzip.h"
#include "json.h"

#define HP(p) ((ap_http_parser_t *)(p)->data)

static int fail(ap_http_parser_t *hp, int status, const char *detail)
{
    hp->error_status = status;
    hp->error_detail = detail;
    return -1;
}

static int count_head(ap_http_parser_t *hp, size_t len)
{
    hp->head_bytes += len;
    if (hp->head_bytes > hp->conf->max_header_size)
        return fail(hp, 431, "the request head is larger than server.max_header_size");
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    ap_http_parser_t *hp = HP(p);
    hp->started = 1;
    hp->req.start_us = ap_clock_mono_us();
    hp->req.start_ms = hp->req.start_us / 1000;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    ap_http_parser_t *hp = HP(p);
    hp->target_len += len;
    if (hp->target_len > hp->conf->max_uri_size)
        return fail(hp, 414, "the request-target is longer than server.max_uri_size");
    if (count_head(hp, len) < 0)
        return -1;
    ap_buf_append(&hp->raw, at, len);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    ap_http_parser_t *hp = HP(p);
    if (!hp->in_field) {
        if (hp->noffs >= hp->conf->max_headers)
            return fail(hp, 431, "more header fields than server.max_headers");
        if (hp->noffs == hp->offs_cap) {
            hp->offs_cap = hp->offs_cap ? hp->offs_cap * 2 : 16;
            hp->offs = ap_xrealloc(hp->offs, hp->offs_cap * sizeof(*hp->offs));
        }
        ap_http_hdr_off_t *o = &hp->offs[hp->noffs++];
        memset(o, 0, sizeof(*o));
        o->name_off = hp->raw.len;
        hp->in_field = 1;
        /* ": " and CRLF count towards the head size too. */
        if (count_head(hp, 4) < 0)
            return -1;
    }
    if (count_head(hp, len) < 0)
        return -1;
    ap_buf_append(&hp->raw, at, len);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    ap_http_parser_t *hp = HP(p);
    /* llhttp 8 lets an empty field name through; it is not a token. */
    if (!hp->in_field || hp->raw.len == hp->offs[hp->noffs - 1].name_off)
        return fail(hp, 400, "empty header field name");
    ap_http_hdr_off_t *o = &hp->offs[hp->noffs - 1];
    o->name_len = hp->raw.len - o->name_off;
    o->value_off = hp->raw.len;
    hp->in_field = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    ap_http_parser_t *hp = HP(p);
    /* llhttp 8 joins obs-fold continuation lines into the value; RFC 9112
     * 5.2 lets a server reject them, and a proxy in front may read them
     * differently, so we do. A piece of a value that starts right after a
     * line feed, indentation skipped, is such a continuation (llhttp takes
     * the line break and indentation before the continuation of an empty
     * value for leading whitespace). An empty value ("X-A:" CRLF) comes as
     * an empty piece at the start of the next line: no continuation. */
    const char *b = at;
    while (b > hp->exec_start && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
    char before = b > hp->exec_start ? b[-1] : hp->exec_prev;
    if (before == '\n' && len > 0)
        return fail(hp, 400, "obsolete line folding in a header value");
    if (count_head(hp, len) < 0)
        return -1;
    ap_buf_append(&hp->raw, at, len);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    ap_http_parser_t *hp = HP(p);
    if (hp->noffs == 0)
        return fail(hp, 400, "header value without a name");
    ap_http_hdr_off_t *o = &hp->offs[hp->noffs - 1];
    size_t end = hp->raw.len;
    /* Optional whitespace after the value is not part of it (RFC 9110 5.5). */
    while (end > o->value_off && (hp->raw.data[end - 1] == ' ' || hp->raw.data[end - 1] == '\t'))
        end--;
    o->value_len = end - o->value_off;
    return 0;
}

/* RFC 3986 host[:port]: reg-name or IP literal characters only, so that a
 * Host header cannot smuggle a path, a space or a user into anything that
 * later builds a URL from it. */
static int valid_host(ap_str_t v)
{
    static const char ok[] = "-._~%!$&'()*+,;=:[]";
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != '\0' && strchr(ok, c) != NULL)))
            return 0;
    }
    return 1;
}

/* Transfer-Encoding in a request: exactly one coding, chunked. Anything
 * else we do not implement (501), and a doubled chunked is malformed. */
static int check_transfer_encoding(ap_http_parser_t *hp, ap_str_t v, int *chunked)
{
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t start = i;
        while (i < v.len && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t')
            i++;
        if (i == start)
            continue;
        if (!ap_str_caseeq(ap_str_make(v.p + start, i - start), AP_STR("chunked")))
            return fail(hp, 501, "the only transfer coding accepted in requests is chunked");
        if ((*chunked)++)
            return fail(hp, 400, "chunked given twice in Transfer-Encoding");
    }
    return 0;
}

/* Splits the request-target into path and query; origin-form and the
 * absolute-form a proxy may send are both accepted. */
static void split_target(ap_request_t *req)
{
    const char *t = req->target.p;
    size_t n = req->target.len;
    size_t start = 0;
    if (n > 7 && (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0)) {
        start = t[4] == ':' ? 7 : 8;
        while (start < n && t[start] != '/' && t[start] != '?')
            start++;
    }
    size_t q = start;
    while (q < n && t[q] != '?' && t[q] != '#')
        q++;
    req->path = q > start ? ap_str_make(t + start, q - start) : AP_STR("/");
    if (q < n && t[q] == '?') {
        size_t qs = q + 1, qe = qs;
        while (qe < n && t[qe] != '#')
            qe++;
        req->query = ap_str_make(t + qs, qe - qs);
    } else {
        req->query = ap_str_make(t + n, 0);
    }
}

static int on_headers_complete(llhttp_t *p)
{
    ap_http_parser_t *hp = HP(p);
    ap_request_t *req = &hp->req;

    hp->head_done = 1;
    req->method = (llhttp_method_t)llhttp_get_method(p);
    req->method_name = ap_str_make(llhttp_method_name(req->method),
                                   strlen(llhttp_method_name(req->method)));
    req->http_major = llhttp_get_http_major(p);
    req->http_minor = llhttp_get_http_minor(p);
    req->target = ap_str_make(hp->raw.data, hp->target_len);
    req->headers = ap_xrealloc(req->headers, (hp->noffs ? hp->noffs : 1) * sizeof(ap_header_t));
    req->nheaders = hp->noffs;
    for (size_t i = 0; i < hp->noffs; i++) {
        const ap_http_hdr_off_t *o = &hp->offs[i];
        req->headers[i].name = ap_str_make(hp->raw.data + o->name_off, o->name_len);
        req->headers[i].value = ap_str_make(hp->raw.data + o->value_off, o->value_len);
    }
    split_target(req);

    /* A request line without a version parses as HTTP/0.9, which has no
     * headers and no keep-alive: not something to serve today. */
    if (req->http_major == 0)
        return fail(hp, 400, "the request line has no HTTP version");
    if (req->http_major != 1 || req->http_minor > 1)
        return fail(hp, 505, "only HTTP/1.0 and HTTP/1.1 are supported");

    /* Checks llhttp leaves to us (RFC 9112): one Host in HTTP/1.1, no
     * control characters in values, no request smuggling through an
     * ambiguous length. */
    int hosts = 0, chunked = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const ap_header_t *h = &req->headers[i];
        for (size_t k = 0; k < h->value.len; k++) {
            unsigned char c = (unsigned char)h->value.p[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return fail(hp, 400, "invalid character in a header value");
        }
        if (ap_str_caseeq(h->name, AP_STR("host"))) {
            if (!valid_host(h->value))
                return fail(hp, 400, "invalid Host header");
            hosts++;
        } else if (ap_str_caseeq(h->name, AP_STR("transfer-encoding"))) {
            if (check_transfer_encoding(hp, h->value, &chunked) < 0)
                return -1;
        } else if (ap_str_caseeq(h->name, AP_STR("expect"))) {
            if (!ap_str_caseeq(h->value, AP_STR("100-continue")))
                return fail(hp, 417, "only \"Expect: 100-continue\" is supported");
            req->expect_continue = 1;
        }
    }
    if (hosts > 1)
        return fail(hp, 400, "more than one Host header");
    if (hosts == 0 && req->http_minor == 1)
        return fail(hp, 400, "an HTTP/1.1 request needs a Host header");

    if ((p->flags & F_TRANSFER_ENCODING) && !(p->flags & F_CHUNKED))
        return fail(hp, 501, "the only transfer coding accepted in requests is chunked");
    if (p->flags & F_CHUNKED) {
        req->has_body = 1;
    } else if (p->flags & F_CONTENT_LENGTH) {
        if (p->content_length > hp->conf->max_body_size)
            return fail(hp, 413, "the request body is larger than server.max_body_size");
        req->has_body = p->content_length > 0;
    }
    req->keep_alive = llhttp_should_keep_alive(p) != 0;
    /* Pause only when a body follows, so that the connection can answer
     * "100 Continue" and time the body; without one, on_message_complete
     * comes next in this same call. */
    hp->event = AP_HTTP_HEAD;
    return req->has_body ? HPE_PAUSED : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    ap_http_parser_t *hp = HP(p);
    ap_request_t *req = &hp->req;
    if (req->body.len + len > hp->conf->max_body_size || req->body.len + len < len)
        return fail(hp, 413, "the request body is larger than server.max_body_size");
    ap_buf_append(&req->body, at, len);
    return 0;
}

/* A chunk larger than what is left of the body limit is refused at its
 * size line, before any of its data is read. */
static int on_chunk_header(llhttp_t *p)
{
    ap_http_parser_t *hp = HP(p);
    if (p->content_length > hp->conf->max_body_size - hp->req.body.len)
        return fail(hp, 413, "the request body is larger than server.max_body_size");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    ap_http_parser_t *hp = HP(p);
    /* The keep-alive verdict can change with a chunked body's trailers. */
    hp->req.keep_alive = llhttp_should_keep_alive(p) != 0;
    hp->event = AP_HTTP_MESSAGE;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

void ap_http_parser_init(ap_http_parser_t *hp, const ap_config_t *conf)
{
    memset(hp, 0, sizeof(*hp));
    hp->conf = conf;
    llhttp_init(&hp->llhttp, HTTP_REQUEST, &settings);
    hp->llhttp.data = hp;
    ap_buf_init(&hp->raw);
    ap_buf_init(&hp->req.body);
    ap_buf_init(&hp->req.resp_headers);
}

void ap_http_parser_cleanup(ap_http_parser_t *hp)
{
    ap_buf_cleanup(&hp->raw);
    ap_buf_cleanup(&hp->req.body);
    ap_buf_cleanup(&hp->req.resp_headers);
    free(hp->req.headers);
    free(hp->offs);
    hp->req.headers = NULL;
    hp->offs = NULL;
}

void ap_http_parser_next(ap_http_parser_t *hp)
{
    ap_request_t *req = &hp->req;
    struct ap_conn_s *conn = req->conn;
    ap_header_t *headers = req->headers;
    ap_buf_t body = req->body, resp = req->resp_headers;

    /* Keep the allocations; drop what a large request made them grow to. */
    if (hp->raw.cap > 64 * 1024)
        ap_buf_cleanup(&hp->raw);
    if (body.cap > 64 * 1024)
        ap_buf_cleanup(&body);
    ap_buf_reset(&hp->raw);
    ap_buf_reset(&body);
    ap_buf_reset(&resp);

    memset(req, 0, sizeof(*req));
    req->conn = conn;
    req->headers = headers;
    req->body = body;
    req->resp_headers = resp;
    hp->noffs = 0;
    hp->target_len = 0;
    hp->head_bytes = 0;
    hp->head_raw = 0;
    hp->started = 0;
    hp->head_done = 0;
    hp->in_field = 0;
    hp->event = AP_HTTP_MORE;
}

/* Status for an llhttp error that no callback of ours chose. */
static int status_for(llhttp_errno_t err, const char *reason)
{
    switch (err) {
    case HPE_INVALID_TRANSFER_ENCODING:
        /* A request whose last transfer coding is not chunked (gzip,
         * identity, ...): we do not implement it (RFC 9112 6.1). Other
         * Transfer-Encoding problems are plain syntax errors. */
        if (reason && strstr(reason, "chunked") != NULL)
            return 501;
        return 400;
    default:
        return 400;
    }
}

/* Strict llhttp refuses versions it does not know (HTTP/3.0) the same way
 * as garbage (HTTP/1.x). A well-formed HTTP-version deserves 505, the
 * rest 400: look at the bytes around where the parser stopped. */
static int wellformed_version(const char *start, const char *pos, const char *end)
{
    if (pos == NULL || pos < start || pos > end)
        return 0;
    const char *from = pos - start > 16 ? pos - 16 : start;
    for (const char *p = pos; p >= from; p--) {
        if (end - p >= 10 && memcmp(p, "HTTP/", 5) == 0)
            return p[5] >= '0' && p[5] <= '9' && p[6] == '.' && p[7] >= '0' && p[7] <= '9' &&
                   p[8] == '\r' && p[9] == '\n' && !(p[5] == '1' && p[7] <= '1');
        if (end - p < 10 && p + 5 <= end && memcmp(p, "HTTP/", 5) == 0)
            return 0;
    }
    return 0;
}

ap_http_event_t ap_http_parse(ap_http_parser_t *hp, const char *data, size_t len,
                              size_t *consumed)
{
    hp->event = AP_HTTP_MORE;
    hp->exec_start = data;
    llhttp_errno_t err = llhttp_execute(&hp->llhttp, data, len);
    size_t parsed = err == HPE_PAUSED ? (size_t)(llhttp_get_error_pos(&hp->llhttp) - data) : len;
    /* The last byte before the next call's that is not indentation, for
     * on_header_value's look behind. */
    for (size_t i = parsed; i > 0; i--) {
        if (data[i - 1] != ' ' && data[i - 1] != '\t') {
            hp->exec_prev = data[i - 1];
            break;
        }
    }
    if (err == HPE_OK || err == HPE_PAUSED) {
        int in_head = hp->started && !hp->head_done;
        if (err == HPE_OK) {
            *consumed = len;
        } else {
            *consumed = (size_t)(llhttp_get_error_pos(&hp->llhttp) - data);
            llhttp_resume(&hp->llhttp);
            in_head = hp->event == AP_HTTP_HEAD ||
                      (hp->event == AP_HTTP_MESSAGE && !hp->req.has_body);
        }
        /* The callbacks count the head's pieces; padding that llhttp skips
         * without a callback (whitespace around values) counts too. */
        if (in_head) {
            hp->head_raw += *consumed;
            if (hp->head_raw > hp->conf->max_header_size + 1024) {
                fail(hp, 431, "the request head is larger than server.max_header_size");
                return AP_HTTP_ERROR;
            }
        }
        return err == HPE_OK ? AP_HTTP_MORE : hp->event;
    }
    *consumed = len;
    if (hp->error_status == 0) {
        const char *reason = llhttp_get_error_reason(&hp->llhttp);
        hp->error_status = status_for(err, reason);
        hp->error_detail = reason;
        if (err == HPE_INVALID_VERSION &&
            wellformed_version(data, llhttp_get_error_pos(&hp->llhttp), data + len)) {
            hp->error_status = 505;
            hp->error_detail = "only HTTP/1.0 and HTTP/1.1 are supported";
        }
    }
    return AP_HTTP_ERROR;
}

const ap_str_t *ap_http_header(const ap_request_t *req, ap_str_t name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (ap_str_caseeq(req->headers[i].name, name))
            return &req->headers[i].value;
    return NULL;
}

const char *ap_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

/* The Date header changes once a second: format it only then. */
static const char *http_date(void)
{
    static char date[40];
    static time_t cached = -1;
    time_t now = time(NULL);
    if (now != cached) {
        ap_clock_http_date((int64_t)now, date, sizeof(date));
        cached = now;
    }
    return date;
}

void ap_http_serialize(ap_buf_t *out, int status, const char *server, const char *content_type,
                       const ap_buf_t *extra, int keep_alive, int http10, const void *body,
                       size_t body_len, int head_only)
{
    ap_buf_reserve(out, 192 + (extra ? extra->len : 0) + (head_only ? 0 : body_len));
    ap_buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, ap_http_reason(status),
                  http_date());
    if (server)
        ap_buf_printf(out, "Server: %s\r\n", server);
    if (content_type)
        ap_buf_printf(out, "Content-Type: %s\r\n", content_type);
    /* RFC 9110 8.6: no Content-Length in a 1xx or 204 response; a 304's
     * would describe the selected representation, which it does not carry. */
    if (status >= 200 && status != 204 && status != 304) {
        ap_buf_append_str(out, "Content-Length: ");
        ap_buf_append_u64(out, body_len);
        ap_buf_append(out, "\r\n", 2);
    }
    if (extra && extra->len)
        ap_buf_append(out, extra->data, extra->len);
    if (!keep_alive)
        ap_buf_append_str(out, "Connection: close\r\n");
    else if (http10)
        ap_buf_append_str(out, "Connection: keep-alive\r\n");
    ap_buf_append(out, "\r\n", 2);
    if (!head_only && body_len)
        ap_buf_append(out, body, body_len);
}

void ap_http_error_body(ap_buf_t *out, int status, const char *details)
{
    char code[16];
    snprintf(code, sizeof(code), "AP%d", status);
    ap_json_append_error(out, code, ap_http_reason(status), details, NULL);
}

void ap_http_add_header(ap_request_t *req, const char *name, const char *value)
{
    ap_buf_printf(&req->resp_headers, "%s: %s\r\n", name, value);
}

void ap_http_respond(ap_request_t *req, int status, const char *content_type, const void *body,
                     size_t len)
{
    /* On-the-fly gzip ([gzip] in apiary.conf): src/gzip.c decides. */
    ap_buf_t z;
    ap_buf_init(&z);
    if (ap_gzip_response(req, status, content_type, body, len, &z)) {
        body = z.data;
        len = z.len;
    }
    ap_conn_respond(req->conn, status, content_type, body, len);
    ap_buf_cleanup(&z);
}

void ap_http_respond_file(ap_request_t *req, int status, const char *content_type, int fd,
                          uint64_t offset, uint64_t len, void (*done)(void *data, int complete),
                          void *data)
{
    ap_conn_respond_file(req->conn, status, content_type, fd, offset, len, done, data);
}

void ap_http_respond_error(ap_request_t *req, int status, const char *details)
{
    snprintf(req->error_code, sizeof(req->error_code), "AP%d", status);
    ap_buf_t b;
    ap_buf_init(&b);
    ap_http_error_body(&b, status, details);
    ap_http_respond(req, status, "application/json", b.data, b.len);
    ap_buf_cleanup(&b);
}
