/* SPDX-License-Identifier: BSD-2-Clause */
/* The access log, the slow-request log and request ids. */
#include "access_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "clock.h"
#include "conn.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "reqid.h"

/* Lines wait in a buffer of this size (nginx's access_log buffer=64k):
 * one write(2) per 64 KiB, or per second when traffic is light. */
#define AP_ACCESS_BUFFER (64 * 1024)
#define AP_ACCESS_FLUSH_MS 1000

struct ap_access_rec_s {
    uint64_t start_us;
    uint64_t db_us;
    uint64_t body_total;
    uint64_t body_sent;
    int status;
    size_t len;      /* the line's text, with its two holes */
    size_t h1, h2;   /* where the time and the bytes/duration go */
    size_t slow_len; /* after the line: "METHOD PATH\0REQUEST-ID\0" when slow_ms is set */
    char text[];
};

int ap_access_active;

static struct {
    uv_timer_t timer;
    int timer_on;     /* the timer is initialised and may be started */
    int fd;           /* -1: no access log (off, or it could not be opened) */
    int own_fd;       /* fd is a file of ours, not stderr */
    int regular;      /* a regular file: one write per flush */
    char *path;       /* NULL for stderr */
    ap_buf_t buf;     /* whole lines waiting to be written */
    ap_buf_t line;    /* the line being built */
    int worker;
    long pid;
    int combined;
    int query;
    uint64_t slow_us; /* 0: no slow log */
    int write_failed; /* an error was logged; quiet until a write succeeds */
} L = {.fd = -1};

/* --- the file --- */

static int open_path(const char *path, int *fd, int *regular)
{
    struct stat st;
    if (strcmp(path, "stderr") == 0) {
        *fd = STDERR_FILENO;
    } else {
        *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (*fd < 0)
            return -errno;
    }
    *regular = fstat(*fd, &st) == 0 && S_ISREG(st.st_mode);
    return 0;
}

int ap_access_check(const ap_config_t *conf)
{
    int fd, regular;
    if (conf->access_log == NULL || strcmp(conf->access_log, "stderr") == 0)
        return 0;
    int rc = open_path(conf->access_log, &fd, &regular);
    if (rc == 0)
        close(fd);
    return rc;
}

static void write_out(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(L.fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (!L.write_failed)
                ap_log_errno(AP_LOG_ERR, w < 0 ? errno : EIO,
                             "writing the access log failed; %zu bytes of it are lost", n);
            L.write_failed = 1;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
    L.write_failed = 0;
}

/* Why whole lines never interleave or split between workers: every worker
 * has its own descriptor for the file, opened with O_APPEND, and writes
 * only whole lines, each buffer in one write(2). For a regular file the
 * kernel moves the offset to the end and copies the whole buffer under
 * the inode lock, so two workers' writes land one after the other (a
 * write is cut short only by a full disk or a file size limit). A pipe or
 * socket (stderr under a supervisor) keeps a write whole only up to
 * PIPE_BUF bytes: there the buffer goes out in chunks of whole lines of at
 * most PIPE_BUF bytes each, and only a single line longer than that can
 * interleave with another worker's. */
void ap_access_flush(void)
{
    const char *p = L.buf.data;
    size_t len = L.buf.len;
    if (len == 0)
        return;
    if (L.fd >= 0 && (L.regular || len <= PIPE_BUF)) {
        write_out(p, len);
    } else if (L.fd >= 0) {
        size_t off = 0;
        while (off < len) {
            size_t lim = len - off < PIPE_BUF ? len - off : PIPE_BUF;
            const char *nl = memrchr(p + off, '\n', lim);
            if (nl == NULL)
                nl = memchr(p + off, '\n', len - off);
            size_t end = nl ? (size_t)(nl - p) + 1 : len;
            write_out(p + off, end - off);
            off = end;
        }
    }
    ap_buf_reset(&L.buf);
    /* A line longer than the buffer made it grow: give that back. */
    if (L.buf.cap > 4 * AP_ACCESS_BUFFER) {
        ap_buf_cleanup(&L.buf);
        ap_buf_reserve(&L.buf, AP_ACCESS_BUFFER + 4096);
    }
    if (L.timer_on)
        uv_timer_stop(&L.timer);
}

static void on_flush_timer(uv_timer_t *t)
{
    (void)t;
    ap_access_flush();
}

static void close_file(void)
{
    if (L.fd >= 0 && L.own_fd)
        close(L.fd);
    L.fd = -1;
    L.own_fd = 0;
}

int ap_access_init(uv_loop_t *loop, const ap_config_t *conf, int worker_id)
{
    L.worker = worker_id;
    L.pid = (long)getpid();
    L.combined = conf->access_combined;
    L.query = conf->access_log_query;
    L.slow_us = conf->slow_ms * 1000;
    ap_access_active = conf->access_log != NULL || conf->slow_ms > 0;
    int rc = ap_reqid_seed();
    if (rc < 0)
        ap_log_errno(AP_LOG_WARN, rc, "getrandom() failed: request ids come from it one by one");
    uv_timer_init(loop, &L.timer);
    /* The timer never keeps the loop alive: exit flushes on its own. */
    uv_unref((uv_handle_t *)&L.timer);
    L.timer_on = 1;
    ap_buf_init(&L.buf);
    ap_buf_init(&L.line);
    if (conf->access_log == NULL)
        return 0;
    ap_buf_reserve(&L.buf, AP_ACCESS_BUFFER + 4096);
    L.path = strcmp(conf->access_log, "stderr") == 0 ? NULL : ap_xstrdup(conf->access_log);
    rc = open_path(conf->access_log, &L.fd, &L.regular);
    if (rc < 0) {
        L.fd = -1;
        ap_log_errno(AP_LOG_ERR, rc, "opening the access log \"%s\" failed", conf->access_log);
        return rc;
    }
    L.own_fd = L.path != NULL;
    return 0;
}

int ap_access_reopen(void)
{
    int fd, regular;
    if (L.path == NULL)
        return 0;
    /* Lines logged before the signal go to the file they belong to. */
    ap_access_flush();
    int rc = open_path(L.path, &fd, &regular);
    if (rc < 0)
        return rc;
    close_file();
    L.fd = fd;
    L.own_fd = 1;
    L.regular = regular;
    return 0;
}

void ap_access_stop(void)
{
    if (!L.timer_on)
        return;
    L.timer_on = 0;
    uv_timer_stop(&L.timer);
    if (!uv_is_closing((uv_handle_t *)&L.timer))
        uv_close((uv_handle_t *)&L.timer, NULL);
}

void ap_access_close(void)
{
    ap_access_stop();
    ap_access_flush();
    close_file();
    free(L.path);
    L.path = NULL;
    ap_buf_cleanup(&L.buf);
    ap_buf_cleanup(&L.line);
    ap_access_active = 0;
}

/* --- request ids --- */

void ap_access_begin(ap_request_t *req)
{
    if (req->request_id_len)
        return;
    ap_str_t given = {NULL, 0};
    for (size_t i = 0; i < req->nheaders; i++) {
        const ap_header_t *h = &req->headers[i];
        if (h->name.len == 12 && given.p == NULL && ap_str_caseeq(h->name, AP_STR("x-request-id")))
            given = h->value;
        else if (h->name.len == 11 && req->traceparent.len == 0 &&
                 ap_str_caseeq(h->name, AP_STR("traceparent")) &&
                 ap_reqid_traceparent_valid(h->value))
            req->traceparent = h->value;
    }
    if (given.p && ap_reqid_valid(given)) {
        memcpy(req->request_id, given.p, given.len);
        req->request_id[given.len] = '\0';
        req->request_id_len = (uint8_t)given.len;
    } else {
        ap_reqid_generate(req->request_id);
        req->request_id_len = AP_REQID_GEN_LEN;
    }
    ap_buf_t *h = &req->resp_headers;
    ap_buf_reserve(h, 16 + req->request_id_len);
    char *w = h->data + h->len;
    memcpy(w, "X-Request-Id: ", 14);
    memcpy(w + 14, req->request_id, req->request_id_len);
    memcpy(w + 14 + req->request_id_len, "\r\n", 3); /* with the NUL */
    h->len += 16 + req->request_id_len;
}

/* --- formatting --- */

void ap_access_peer(ap_conn_t *c)
{
    uv_os_fd_t fd;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (c->peer_known)
        return;
    c->peer_known = 1;
    snprintf(c->peer, sizeof(c->peer), "-");
    if (uv_fileno(&c->io.handle, &fd) < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, c->peer, sizeof(c->peer));
        c->peer_port = ntohs(sin->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, c->peer, sizeof(c->peer));
        c->peer_port = ntohs(sin6->sin6_port);
    } else if (ss.ss_family == AF_UNIX) {
        snprintf(c->peer, sizeof(c->peer), "unix:");
    }
}

/* Lines are built with writes that do not check for room: render() and
 * emit() reserve, once per line, the most the line can take (every byte
 * of a client's string escaped) and put() copies within that. */
static inline void put(ap_buf_t *b, const char *s, size_t n)
{
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

#define PUT_LIT(b, lit) put((b), (lit), sizeof(lit) - 1)

static void put_u64(ap_buf_t *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b, tmp + i, sizeof(tmp) - i);
}

/* Microseconds as milliseconds with three decimals. */
static void put_ms(ap_buf_t *b, uint64_t us)
{
    char frac[4] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                    (char)('0' + us % 10)};
    put_u64(b, us / 1000);
    put(b, frac, 4);
}

/* Room for a string as JSON or combined text: at most 6 bytes per byte
 * (\u00XX), and the quotes. */
#define ROOM(n) (6 * (size_t)(n) + 8)

/* A JSON string, or null for none: plain ASCII is copied as it is, the
 * rest goes through the JSON writer (escapes, U+FFFD for bad UTF-8). */
static void put_json(ap_buf_t *b, const char *p, size_t n)
{
    if (p == NULL || n == 0) {
        PUT_LIT(b, "null");
        return;
    }
    /* Bytes a JSON string cannot hold as they are. */
    static const uint8_t special[256] = {
        [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 1,
    };
    for (size_t i = 0; i < n; i++) {
        if (special[(unsigned char)p[i]]) {
            ap_json_append_string(b, p, n);
            return;
        }
    }
    put(b, "\"", 1);
    put(b, p, n);
    put(b, "\"", 1);
}

/* A string that needs no escaping (checked where it came from: a request
 * id, an address, a method token, a traceparent, an error code), or null. */
static void put_plain(ap_buf_t *b, const char *p, size_t n)
{
    if (p == NULL || n == 0) {
        PUT_LIT(b, "null");
        return;
    }
    put(b, "\"", 1);
    put(b, p, n);
    put(b, "\"", 1);
}

/* What a combined line may hold inside its quotes: nginx's escaping
 * ('"', '\\', controls and bytes past 0x7e as \xHH); "-" for none. */
static void put_clf(ap_buf_t *b, const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (p == NULL || n == 0) {
        put(b, "-", 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            b->data[b->len++] = (char)c;
        } else {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            put(b, esc, 4);
        }
    }
}

static void headers_for_log(const ap_request_t *req, ap_str_t *ua, ap_str_t *referer)
{
    *ua = *referer = (ap_str_t){NULL, 0};
    for (size_t i = 0; i < req->nheaders; i++) {
        const ap_header_t *h = &req->headers[i];
        if (h->name.len == 10 && ua->p == NULL && ap_str_caseeq(h->name, AP_STR("user-agent")))
            *ua = h->value;
        else if (h->name.len == 7 && referer->p == NULL &&
                 ap_str_caseeq(h->name, AP_STR("referer")))
            *referer = h->value;
    }
}

/* Builds req's line in L.line, leaving out what is known only once the
 * response is all handed over: the time (at *h1) and the body bytes and
 * duration (at *h2). A request whose head never completed has no method,
 * path or headers: those are null ("-" in combined). */
static void render(ap_conn_t *c, ap_request_t *req, int status, size_t *h1, size_t *h2)
{
    ap_buf_t *b = &L.line;
    int head = req->method_name.len > 0;
    ap_str_t ua = {NULL, 0}, referer = {NULL, 0};
    ap_str_t method = {NULL, 0}, path = {NULL, 0}, query = {NULL, 0}, target = {NULL, 0};
    if (head) {
        headers_for_log(req, &ua, &referer);
        method = req->method_name;
        path = req->path;
        query = req->query;
        target = L.query ? req->target : req->path;
    }
    if (b->cap > 256 * 1024)
        ap_buf_cleanup(b); /* a huge line before this one */
    /* The real client: the PROXY header's source, or what trusted proxies
     * forwarded (security.c), when it is not the TCP peer. */
    const char *client = c->peer;
    if (head && req->client_addr[0] && strcmp(req->client_addr, c->client_addr) != 0)
        client = req->client_addr;
    else if (c->client_addr[0] && strcmp(c->client_addr, "unix") != 0 &&
             strcmp(c->client_addr, c->peer) != 0)
        client = c->client_addr;
    size_t peer_len = strlen(client);
    size_t role_len = req->role ? strlen(req->role) : 0;
    size_t code_len = strnlen(req->error_code, sizeof(req->error_code));
    ap_buf_reset(b);
    ap_buf_reserve(b, 400 + ROOM(peer_len) + ROOM(method.len) + ROOM(path.len) +
                          ROOM(query.len) + ROOM(target.len) + ROOM(req->request_id_len) +
                          ROOM(role_len) + ROOM(ua.len) + ROOM(referer.len) + ROOM(code_len) +
                          ROOM(req->traceparent.len));

    if (L.combined) {
        /* 127.0.0.1 - - [10/Oct/2026:13:55:36 +0000] "GET /x HTTP/1.1" 200 15 "-" "curl/8" */
        put(b, client, peer_len);
        PUT_LIT(b, " - - [");
        *h1 = b->len;
        PUT_LIT(b, "] \"");
        if (head) {
            put_clf(b, method.p, method.len);
            put(b, " ", 1);
            put_clf(b, target.p, target.len);
            char v[10] = {' ', 'H', 'T', 'T', 'P', '/', (char)('0' + req->http_major % 10), '.',
                          (char)('0' + req->http_minor % 10), '"'};
            put(b, v, sizeof(v));
        } else {
            PUT_LIT(b, "-\"");
        }
        put(b, " ", 1);
        put_u64(b, (unsigned)status);
        *h2 = b->len;
        PUT_LIT(b, " \"");
        put_clf(b, referer.p, referer.len);
        PUT_LIT(b, "\" \"");
        put_clf(b, ua.p, ua.len);
        PUT_LIT(b, "\"\n");
        b->data[b->len] = '\0';
        return;
    }

    PUT_LIT(b, "{\"time\":\"");
    *h1 = b->len;
    PUT_LIT(b, "\",\"worker\":");
    put_u64(b, (unsigned)L.worker);
    PUT_LIT(b, ",\"pid\":");
    put_u64(b, (unsigned long long)L.pid);
    PUT_LIT(b, ",\"client\":");
    put_plain(b, client, peer_len);
    PUT_LIT(b, ",\"client_port\":");
    if (c->peer_port)
        put_u64(b, c->peer_port);
    else
        PUT_LIT(b, "null"); /* a Unix socket */
    PUT_LIT(b, ",\"method\":");
    put_plain(b, method.p, method.len);
    PUT_LIT(b, ",\"path\":");
    put_json(b, path.p, path.len);
    if (L.query) {
        PUT_LIT(b, ",\"query\":");
        put_json(b, query.p, query.len);
    }
    PUT_LIT(b, ",\"status\":");
    put_u64(b, (unsigned)status);
    *h2 = b->len;
    PUT_LIT(b, ",\"db_ms\":");
    put_ms(b, req->db_us);
    PUT_LIT(b, ",\"request_id\":");
    put_plain(b, req->request_id, req->request_id_len);
    PUT_LIT(b, ",\"role\":");
    put_json(b, req->role, role_len);
    PUT_LIT(b, ",\"user_agent\":");
    put_json(b, ua.p, ua.len);
    PUT_LIT(b, ",\"referer\":");
    put_json(b, referer.p, referer.len);
    PUT_LIT(b, ",\"error_code\":");
    put_json(b, req->error_code, code_len);
    PUT_LIT(b, ",\"traceparent\":");
    put_plain(b, req->traceparent.p, req->traceparent.len);
    PUT_LIT(b, "}\n");
    b->data[b->len] = '\0';
}

/* The time at the end of a request, formatted once per second. */
static size_t format_time(char *out, uint64_t wall_ms)
{
    static time_t cached = -1;
    static char stamp[40];
    static size_t stamp_len;
    time_t secs = (time_t)(wall_ms / 1000);
    unsigned ms = (unsigned)(wall_ms % 1000);
    if (secs != cached) {
        static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        struct tm tm;
        gmtime_r(&secs, &tm);
        int n = L.combined ? snprintf(stamp, sizeof(stamp), "%02d/%s/%04d:%02d:%02d:%02d +0000",
                                      tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
                                      tm.tm_hour, tm.tm_min, tm.tm_sec)
                           : snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.",
                                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                      tm.tm_min, tm.tm_sec);
        stamp_len = n > 0 && (size_t)n < sizeof(stamp) ? (size_t)n : 0;
        cached = secs;
    }
    memcpy(out, stamp, stamp_len);
    if (L.combined)
        return stamp_len;
    out[stamp_len] = (char)('0' + ms / 100);
    out[stamp_len + 1] = (char)('0' + ms / 10 % 10);
    out[stamp_len + 2] = (char)('0' + ms % 10);
    out[stamp_len + 3] = 'Z';
    return stamp_len + 4;
}

/* Fills the holes of a rendered line and queues it for writing. */
static void emit(const char *text, size_t len, size_t h1, size_t h2, uint64_t bytes,
                 uint64_t duration_us)
{
    char when[48];
    size_t when_len = format_time(when, ap_clock_wall_ms());
    size_t total = len + when_len + 64;
    if (L.buf.len > 0 && L.buf.len + total > AP_ACCESS_BUFFER)
        ap_access_flush();
    int was_empty = L.buf.len == 0;
    ap_buf_t *b = &L.buf;
    ap_buf_reserve(b, total);
    put(b, text, h1);
    put(b, when, when_len);
    put(b, text + h1, h2 - h1);
    if (L.combined) {
        put(b, " ", 1);
        put_u64(b, bytes);
    } else {
        PUT_LIT(b, ",\"bytes\":");
        put_u64(b, bytes);
        PUT_LIT(b, ",\"duration_ms\":");
        put_ms(b, duration_us);
    }
    put(b, text + h2, len - h2);
    b->data[b->len] = '\0';
    if (b->len >= AP_ACCESS_BUFFER)
        ap_access_flush();
    else if (was_empty && L.timer_on)
        uv_timer_start(&L.timer, on_flush_timer, AP_ACCESS_FLUSH_MS, 0);
}

static void slow_log(const char *method, size_t mlen, const char *path, size_t plen, const char *rid,
                     int status, uint64_t duration_us, uint64_t db_us)
{
    /* Long paths are cut: the access log has them whole. */
    ap_log(AP_LOG_WARN,
           "slow request: %.*s %.*s%s status %d in %llu.%03u ms (database %llu.%03u ms), "
           "request_id %s",
           (int)(mlen ? mlen : 1), mlen ? method : "-", (int)(plen > 512 ? 512 : plen ? plen : 1),
           plen ? path : "-",
           plen > 512 ? "..." : "", status, (unsigned long long)(duration_us / 1000),
           (unsigned)(duration_us % 1000), (unsigned long long)(db_us / 1000),
           (unsigned)(db_us % 1000), rid);
}

static uint64_t since(uint64_t start_us)
{
    uint64_t now = ap_clock_mono_us();
    return start_us && now > start_us ? now - start_us : 0;
}

void ap_access_done(ap_conn_t *c, ap_request_t *req, int status, uint64_t body_sent)
{
    size_t h1, h2;
    if (!ap_access_active)
        return;
    ap_access_begin(req);
    uint64_t duration = since(req->start_us);
    if (L.fd >= 0) {
        render(c, req, status, &h1, &h2);
        emit(L.line.data, L.line.len, h1, h2, body_sent, duration);
    }
    if (L.slow_us && duration >= L.slow_us)
        slow_log(req->method_name.p, req->method_name.len, req->path.p, req->path.len,
                 req->request_id, status, duration, req->db_us);
}

void ap_access_abort(ap_conn_t *c, ap_request_t *req, int status)
{
    ap_access_done(c, req, status, 0);
}

ap_access_rec_t *ap_access_defer(ap_conn_t *c, ap_request_t *req, int status,
                                 uint64_t body_total, uint64_t body_sent)
{
    size_t h1 = 0, h2 = 0, len = 0, slow_len = 0;
    ap_access_begin(req);
    if (L.fd >= 0) {
        render(c, req, status, &h1, &h2);
        len = L.line.len;
    }
    if (L.slow_us)
        slow_len = req->method_name.len + 1 + req->path.len + 1 + req->request_id_len + 1;
    ap_access_rec_t *r = ap_xmalloc(sizeof(*r) + len + slow_len);
    r->start_us = req->start_us;
    r->db_us = req->db_us;
    r->body_total = body_total;
    r->body_sent = body_sent;
    r->status = status;
    r->len = len;
    r->h1 = h1;
    r->h2 = h2;
    r->slow_len = slow_len;
    if (len)
        memcpy(r->text, L.line.data, len);
    if (slow_len) {
        char *p = r->text + len;
        if (req->method_name.len)
            memcpy(p, req->method_name.p, req->method_name.len);
        p += req->method_name.len;
        *p++ = ' ';
        if (req->path.len)
            memcpy(p, req->path.p, req->path.len);
        p += req->path.len;
        *p++ = '\0';
        memcpy(p, req->request_id, req->request_id_len + 1);
    }
    return r;
}

void ap_access_finish(ap_access_rec_t *r, int ok)
{
    uint64_t duration = since(r->start_us);
    uint64_t bytes = ok ? r->body_total : r->body_sent;
    if (r->len && L.fd >= 0)
        emit(r->text, r->len, r->h1, r->h2, bytes, duration);
    if (r->slow_len && L.slow_us && duration >= L.slow_us) {
        /* "METHOD PATH\0REQUEST-ID\0": method names hold no space. */
        const char *m = r->text + r->len;
        const char *sp = strchr(m, ' ');
        const char *rid = sp + strlen(sp) + 1;
        slow_log(m, (size_t)(sp - m), sp + 1, strlen(sp + 1), rid, r->status, duration, r->db_us);
    }
    free(r);
}
