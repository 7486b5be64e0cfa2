/* SPDX-License-Identifier: BSD-2-Clause */
/* Content codings: negotiation and on-the-fly gzip. */
#include "gzip.h"

#include <fnmatch.h>
#include <string.h>
#include <zlib.h>

#include "conn.h"
#include "log.h"
#include "worker.h"

/* One deflate state per process, reset between responses: allocating one
 * costs about 256 KiB each time. */
static z_stream zs;
static int zs_level; /* 0: not initialised */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* "1", "0.5", "1.000": thousandths, or -1. */
static int parse_q(const char *p, size_t n)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1'))
        return -1;
    int v = (p[0] - '0') * 1000;
    if (n == 1)
        return v;
    if (p[1] != '.' || n > 5)
        return -1;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v += (p[i] - '0') * scale;
    }
    return v > 1000 ? -1 : v;
}

int ap_gzip_accept_q(ap_str_t ae, ap_str_t coding)
{
    int star = -1, own = -1;
    size_t i = 0;
    while (i < ae.len) {
        while (i < ae.len && (is_ows(ae.p[i]) || ae.p[i] == ','))
            i++;
        size_t start = i;
        while (i < ae.len && ae.p[i] != ',' && ae.p[i] != ';' && !is_ows(ae.p[i]))
            i++;
        ap_str_t name = ap_str_make(ae.p + start, i - start);
        int q = 1000;
        /* Parameters: only q matters. */
        while (i < ae.len && ae.p[i] != ',') {
            while (i < ae.len && (is_ows(ae.p[i]) || ae.p[i] == ';'))
                i++;
            size_t ps = i;
            while (i < ae.len && ae.p[i] != ',' && ae.p[i] != ';' && !is_ows(ae.p[i]))
                i++;
            if (i - ps >= 2 && (ae.p[ps] == 'q' || ae.p[ps] == 'Q') && ae.p[ps + 1] == '=') {
                q = parse_q(ae.p + ps + 2, i - ps - 2);
                if (q < 0)
                    q = 0;
            }
            while (i < ae.len && is_ows(ae.p[i]))
                i++;
        }
        if (name.len == 0)
            continue;
        if (ap_str_caseeq(name, coding) ||
            (ap_str_caseeq(coding, AP_STR("gzip")) && ap_str_caseeq(name, AP_STR("x-gzip"))))
            own = own > q ? own : q;
        else if (ap_str_eq(name, AP_STR("*")))
            star = q;
    }
    if (own >= 0)
        return own;
    return star >= 0 ? star : 0;
}

int ap_gzip_type_ok(const ap_config_t *conf, const char *ctype)
{
    char type[128], glob[128];
    size_t n = strcspn(ctype, ";");
    while (n && is_ows(ctype[n - 1]))
        n--;
    if (n == 0 || n >= sizeof(type))
        return 0;
    for (size_t i = 0; i < n; i++)
        type[i] = (char)((ctype[i] >= 'A' && ctype[i] <= 'Z') ? ctype[i] + 32 : ctype[i]);
    type[n] = '\0';
    const char *p = conf->gzip_types;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t k = strcspn(p, " \t,");
        if (k == 0)
            break;
        if (k < sizeof(glob)) {
            memcpy(glob, p, k);
            glob[k] = '\0';
            if (fnmatch(glob, type, FNM_CASEFOLD) == 0)
                return 1;
        }
        p += k;
    }
    return 0;
}

ap_gzip_verdict_t ap_gzip_decide(const ap_request_t *req, int status, const char *ctype, size_t len)
{
    const ap_config_t *conf = req->conn->worker->conf;
    if (!conf->gzip || ctype == NULL || status < 200 || status == 204 || status == 206 ||
        status == 304 || len < conf->gzip_min_length || len == 0)
        return AP_GZIP_NO;
    if (!ap_gzip_type_ok(conf, ctype))
        return AP_GZIP_NO;
    const ap_str_t *ae = ap_http_header(req, AP_STR("accept-encoding"));
    if (ae && ap_gzip_accept_q(*ae, AP_STR("gzip")) > 0)
        return AP_GZIP_YES;
    return AP_GZIP_VARY;
}

int ap_gzip_compress(ap_buf_t *out, const void *in, size_t len, int level)
{
    ap_buf_reset(out);
    if (zs_level != level) {
        if (zs_level)
            deflateEnd(&zs);
        zs_level = 0;
        memset(&zs, 0, sizeof(zs));
        /* windowBits 15 + 16: a gzip header and trailer around deflate. */
        if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            ap_log(AP_LOG_ERR, "deflateInit2() failed");
            return -1;
        }
        zs_level = level;
    } else if (deflateReset(&zs) != Z_OK) {
        return -1;
    }
    /* zlib counts in uInt: feed and drain in pieces below 4 GiB. */
    const unsigned char *p = in;
    size_t left = len;
    int flush;
    do {
        uInt take = left > (1u << 30) ? (1u << 30) : (uInt)left;
        zs.next_in = (unsigned char *)p;
        zs.avail_in = take;
        p += take;
        left -= take;
        flush = left ? Z_NO_FLUSH : Z_FINISH;
        int rc;
        do {
            size_t room = deflateBound(&zs, zs.avail_in) + 64;
            ap_buf_reserve(out, room);
            size_t avail = out->cap - out->len - 1;
            zs.next_out = (unsigned char *)out->data + out->len;
            zs.avail_out = avail > (1u << 30) ? (1u << 30) : (uInt)avail;
            uInt before = zs.avail_out;
            rc = deflate(&zs, flush);
            out->len += before - zs.avail_out;
            if (rc == Z_STREAM_ERROR) {
                ap_buf_reset(out);
                return -1;
            }
            if (flush == Z_FINISH && rc == Z_STREAM_END)
                break;
        } while (zs.avail_in > 0 || (flush == Z_FINISH));
    } while (left > 0);
    out->data[out->len] = '\0';
    return 0;
}

/* Whether the response being built has a header line starting with
 * name (lower case, colon included). */
static int has_header(const ap_request_t *req, const char *name)
{
    const ap_buf_t *h = &req->resp_headers;
    size_t n = strlen(name);
    for (size_t i = 0; i + n <= h->len; i++) {
        if ((i == 0 || h->data[i - 1] == '\n') && strncasecmp(h->data + i, name, n) == 0)
            return 1;
    }
    return 0;
}

void ap_gzip_add_vary(ap_request_t *req)
{
    if (!has_header(req, "vary:"))
        ap_http_add_header(req, "Vary", "Accept-Encoding");
}

int ap_gzip_response(ap_request_t *req, int status, const char *ctype, const void *body, size_t len,
                     ap_buf_t *out)
{
    if (!req->conn->worker->conf->gzip)
        return 0;
    ap_gzip_verdict_t v = ap_gzip_decide(req, status, ctype, len);
    if (v == AP_GZIP_NO)
        return 0;
    ap_gzip_add_vary(req);
    if (v == AP_GZIP_VARY || has_header(req, "content-encoding:"))
        return 0;
    if (ap_gzip_compress(out, body, len, (int)req->conn->worker->conf->gzip_level) < 0)
        return 0;
    ap_http_add_header(req, "Content-Encoding", "gzip");
    return 1;
}

void ap_gzip_cleanup(void)
{
    if (zs_level)
        deflateEnd(&zs);
    zs_level = 0;
}
