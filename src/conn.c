/* SPDX-License-Identifier: BSD-2-Clause */
/* One client connection. */
#include "conn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "log.h"
#include "router.h"
#include "security.h"
#include "shm.h"
#include "worker.h"

/* Bytes asked of the kernel per read. */
#define AP_READ_CHUNK (16 * 1024)
/* Unparsed input kept while a request is handled or the client is slow to
 * read its responses; past this, reading pauses (pipelining backpressure). */
#define AP_INPUT_HIGH_WATER (64 * 1024)
/* Queued response bytes past which no further request is parsed. */
#define AP_OUTPUT_HIGH_WATER (256 * 1024)
/* After a final response: how long to read and discard what the client is
 * still sending, so that closing does not reset the connection before the
 * client has read the response (nginx's lingering close). */
#define AP_LINGER_MS 2000
/* While draining, an idle keep-alive connection is closed once it has been
 * idle this long: closing sooner races with a request the client may be
 * sending at that instant, and the client would see a reset. Well below
 * the idle timeouts of common clients (4 s and more). */
#define AP_DRAIN_IDLE_GRACE_MS 1000

struct write_req {
    uv_write_t req;
    ap_conn_t *conn;
    size_t len;
    char data[];
};

static void conn_process(ap_conn_t *c);
static void enter_linger(ap_conn_t *c);
static void send_error(ap_conn_t *c, int status, const char *detail);
static void proxy_input(ap_conn_t *c, ssize_t nread);

static const ap_config_t *conf_of(const ap_conn_t *c)
{
    return c->worker->conf;
}

static void on_handle_closed(uv_handle_t *h)
{
    ap_conn_t *c = h->data;
    if (--c->handles_open > 0)
        return;
    ap_security_conn_closed(c);
    ap_worker_conn_closed(c->worker, c);
    ap_http_parser_cleanup(&c->hp);
    ap_buf_cleanup(&c->in);
    ap_buf_cleanup(&c->out);
    free(c);
}

void ap_conn_close(ap_conn_t *c)
{
    if (c->state == AP_CONN_CLOSING)
        return;
    if (c->state == AP_CONN_HANDLING) {
        ap_shm_sub(c->worker->slot->in_flight, 1);
        if (c->hp.req.on_abort)
            c->hp.req.on_abort(&c->hp.req);
    }
    c->state = AP_CONN_CLOSING;
    uv_close(&c->io.handle, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_timer(uv_timer_t *t);

static void set_timer(ap_conn_t *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    /* Input arriving after the final response is read only to be thrown
     * away: one buffer serves every lingering connection of the worker. */
    static char sink[AP_READ_CHUNK];
    ap_conn_t *c = h->data;
    (void)suggested;
    if (c->state == AP_CONN_LINGER) {
        buf->base = sink;
        buf->len = sizeof(sink);
        return;
    }
    if (c->in_off == c->in.len) {
        c->in_off = 0;
        c->in.len = 0;
    }
    ap_buf_reserve(&c->in, AP_READ_CHUNK);
    buf->base = c->in.data + c->in.len;
    buf->len = c->in.cap - c->in.len - 1;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ap_conn_t *c = s->data;
    (void)buf;
    if (nread == 0 || c->state == AP_CONN_CLOSING)
        return;
    if (c->state == AP_CONN_LINGER) {
        if (nread < 0)
            ap_conn_close(c);
        return;
    }
    if (c->proxy_wait) {
        proxy_input(c, nread);
        return;
    }
    if (nread < 0) {
        uv_read_stop(s);
        c->reading = 0;
        if (nread != UV_EOF) {
            ap_conn_close(c);
            return;
        }
        /* While a request is being handled, the client going away means
         * it no longer wants the answer (nginx's proxy_ignore_client_abort
         * off): stop the work. Otherwise, a half-close: answer what was
         * sent, then close. */
        if (c->state == AP_CONN_HANDLING && c->hp.req.on_abort) {
            ap_conn_close(c);
            return;
        }
        c->eof = 1;
        conn_process(c);
        return;
    }
    c->in.len += (size_t)nread;
    c->in.data[c->in.len] = '\0';
    conn_process(c);
    if (c->state == AP_CONN_BODY) {
        int rate;
        set_timer(c, ap_security_body_timeout(c, &rate));
    }
}

/* Reads only while there is room: input piles up while a request is being
 * handled or responses are not being read. */
static void update_reading(ap_conn_t *c)
{
    if (c->state == AP_CONN_CLOSING || c->eof)
        return;
    int want = c->state == AP_CONN_LINGER || c->in.len - c->in_off < AP_INPUT_HIGH_WATER;
    if (want && !c->reading) {
        if (uv_read_start(&c->io.stream, on_alloc, on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop(&c->io.stream);
        c->reading = 0;
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;
    ap_conn_t *c = wr->conn;
    c->writes_pending--;
    free(wr);
    if (c->state == AP_CONN_CLOSING)
        return;
    if (status < 0) {
        ap_log_errno(AP_LOG_INFO, status, "writing a response failed");
        ap_conn_close(c);
        return;
    }
    if (c->writes_pending == 0) {
        if (c->state == AP_CONN_LINGER)
            enter_linger(c);
        else
            conn_process(c);
    }
}

/* Queues bytes for the client: straight to the socket when nothing is
 * queued, copied into a write request for whatever the kernel did not
 * take. */
static void conn_write(ap_conn_t *c, const char *data, size_t len)
{
    ap_shm_add(c->worker->slot->bytes_out, len);
    if (c->writes_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned int)len);
        int n = uv_try_write(&c->io.stream, &b, 1);
        if (n >= 0 && (size_t)n == len)
            return;
        if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
            ap_log_errno(AP_LOG_INFO, n, "writing a response failed");
            ap_conn_close(c);
            return;
        }
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    struct write_req *wr = ap_xmalloc(sizeof(*wr) + len);
    wr->conn = c;
    wr->len = len;
    memcpy(wr->data, data, len);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned int)len);
    int rc = uv_write(&wr->req, &c->io.stream, &b, 1, on_write);
    if (rc < 0) {
        free(wr);
        ap_log_errno(AP_LOG_INFO, rc, "writing a response failed");
        ap_conn_close(c);
        return;
    }
    c->writes_pending++;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    ap_conn_t *c = req->data;
    free(req);
    if (status < 0 && c->state != AP_CONN_CLOSING)
        ap_conn_close(c);
}

/* After the final response: once it is written, shut down our side and
 * discard input until the client closes or AP_LINGER_MS pass. */
static void enter_linger(ap_conn_t *c)
{
    c->state = AP_CONN_LINGER;
    if (c->writes_pending > 0) {
        /* A client that does not read its response gets send_timeout. */
        set_timer(c, conf_of(c)->send_timeout_ms);
        return;
    }
    if (c->eof) {
        ap_conn_close(c);
        return;
    }
    uv_shutdown_t *req = ap_xmalloc(sizeof(*req));
    req->data = c;
    if (uv_shutdown(req, &c->io.stream, on_shutdown) < 0) {
        free(req);
        ap_conn_close(c);
        return;
    }
    set_timer(c, AP_LINGER_MS);
    update_reading(c);
}

/* Answers an error found by the HTTP layer and closes the connection. */
static void send_error(ap_conn_t *c, int status, const char *detail)
{
    const ap_config_t *conf = conf_of(c);
    ap_buf_t body;
    ap_buf_init(&body);
    ap_http_error_body(&body, status, detail);
    ap_buf_reset(&c->out);
    ap_security_response(&c->hp.req, status);
    ap_http_serialize(&c->out, status, conf->server_header, "application/json",
                      &c->hp.req.resp_headers, 0, 0, body.data, body.len, 0);
    ap_buf_cleanup(&body);
    ap_shm_add(c->worker->slot->requests, 1);
    ap_metrics_request(&c->worker->slot->metrics, c->hp.started ? (int)llhttp_get_method(&c->hp.llhttp) : -1,
                       status, AP_ROUTE_BUILTIN,
                       c->hp.req.start_us ? ap_clock_mono_us() - c->hp.req.start_us : 0);
    ap_log(AP_LOG_INFO, "client error %d: %s", status, detail ? detail : ap_http_reason(status));
    conn_write(c, c->out.data, c->out.len);
    if (c->state != AP_CONN_CLOSING)
        enter_linger(c);
}

static void enter_idle(ap_conn_t *c)
{
    c->state = AP_CONN_IDLE;
    c->idle_since = ap_clock_mono_ms();
    if (c->worker->draining)
        set_timer(c, AP_DRAIN_IDLE_GRACE_MS);
    else
        set_timer(c, c->requests == 0 ? conf_of(c)->header_timeout_ms
                                      : conf_of(c)->keepalive_timeout_ms);
}

static void on_timer(uv_timer_t *t)
{
    ap_conn_t *c = t->data;
    switch (c->state) {
    case AP_CONN_IDLE:
    case AP_CONN_LINGER:
        ap_conn_close(c);
        return;
    case AP_CONN_HEAD:
        send_error(c, 408, "the request head was not received within server.header_timeout");
        return;
    case AP_CONN_BODY: {
        int rate;
        ap_security_body_timeout(c, &rate);
        send_error(c, 408,
                   rate ? "the request body arrived slower than server.min_body_rate"
                        : "the request body stalled for longer than server.body_timeout");
        return;
    }
    case AP_CONN_HANDLING:
    case AP_CONN_CLOSING:
        return;
    }
}

static void dispatch(ap_conn_t *c)
{
    c->state = AP_CONN_HANDLING;
    uv_timer_stop(&c->timer);
    ap_shm_add(c->worker->slot->in_flight, 1);
    ap_router_dispatch(&c->hp.req);
}

static void conn_process(ap_conn_t *c)
{
    if (c->processing)
        return;
    c->processing = 1;
    while (c->state == AP_CONN_IDLE || c->state == AP_CONN_HEAD || c->state == AP_CONN_BODY) {
        if (c->writes_pending &&
            uv_stream_get_write_queue_size(&c->io.stream) > AP_OUTPUT_HIGH_WATER)
            break; /* on_write resumes */
        size_t avail = c->in.len - c->in_off;
        if (avail == 0) {
            if (c->eof) {
                /* The client sent all it will; what it started is lost. */
                if (c->writes_pending)
                    enter_linger(c);
                else
                    ap_conn_close(c);
            }
            break;
        }
        size_t used = 0;
        ap_http_event_t ev = ap_http_parse(&c->hp, c->in.data + c->in_off, avail, &used);
        c->in_off += used;
        if (c->in_off == c->in.len) {
            c->in_off = 0;
            c->in.len = 0;
        }
        switch (ev) {
        case AP_HTTP_MORE:
            if (c->state == AP_CONN_IDLE && c->hp.started) {
                /* The head must arrive within header_timeout of its first
                 * byte, however slowly it trickles in. */
                c->state = AP_CONN_HEAD;
                set_timer(c, conf_of(c)->header_timeout_ms);
            }
            break;
        case AP_HTTP_HEAD: {
            ap_request_t *req = &c->hp.req;
            req->conn = c;
            c->state = AP_CONN_BODY;
            c->body_start_ms = ap_clock_mono_ms();
            set_timer(c, conf_of(c)->body_timeout_ms);
            /* The client waits for "100 Continue" before it sends the body;
             * when body bytes are already here it did not wait. */
            if (req->expect_continue && req->has_body && c->in.len == c->in_off &&
                req->http_minor == 1) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                conn_write(c, cont, sizeof(cont) - 1);
            }
            break;
        }
        case AP_HTTP_MESSAGE:
            dispatch(c);
            break;
        case AP_HTTP_ERROR:
            send_error(c, c->hp.error_status, c->hp.error_detail);
            break;
        }
    }
    update_reading(c);
    c->processing = 0;
}

void ap_conn_respond(ap_conn_t *c, int status, const char *content_type, const void *body,
                     size_t len)
{
    const ap_config_t *conf = conf_of(c);
    ap_request_t *req = &c->hp.req;
    if (c->state != AP_CONN_HANDLING)
        return;
    /* While the server drains (apiary -s drain), connections are not kept:
     * clients reconnect, and a balancer or the VIP sends them elsewhere. */
    int keep = req->keep_alive && !c->eof && !c->worker->draining &&
               !ap_shm_load(c->worker->shm->draining) &&
               conf->keepalive_timeout_ms > 0 && c->requests + 1 < conf->keepalive_requests;

    ap_buf_reset(&c->out);
    ap_security_response(req, status);
    ap_http_serialize(&c->out, status, conf->server_header, content_type, &req->resp_headers, keep,
                      req->http_minor == 0, body, len, req->method == HTTP_HEAD);
    c->requests++;
    ap_shm_add(c->worker->slot->requests, 1);
    ap_shm_sub(c->worker->slot->in_flight, 1);
    ap_metrics_request(&c->worker->slot->metrics, req->method, status, req->route,
                       ap_clock_mono_us() - req->start_us);
    req->on_abort = NULL;
    /* Leave HANDLING first: a failed write closes the connection, and the
     * request is no longer in flight. */
    c->state = keep ? AP_CONN_IDLE : AP_CONN_LINGER;
    conn_write(c, c->out.data, c->out.len);
    if (c->state == AP_CONN_CLOSING)
        return;
    ap_http_parser_next(&c->hp);
    c->hp.req.conn = c;
    if (keep) {
        enter_idle(c);
        conn_process(c);
    } else {
        enter_linger(c);
    }
}

void ap_conn_drain(ap_conn_t *c)
{
    if (c->state != AP_CONN_IDLE)
        return; /* the response in progress will say Connection: close */
    uint64_t idle = ap_clock_mono_ms() - c->idle_since;
    if (idle >= AP_DRAIN_IDLE_GRACE_MS)
        ap_conn_close(c);
    else
        set_timer(c, AP_DRAIN_IDLE_GRACE_MS - idle);
}

/* The client's address is known (at once, or after the PROXY header):
 * past a connection limit, a 503 and close; else serve. */
static void admit(ap_conn_t *c)
{
    const char *detail = NULL;
    int status = ap_security_conn_admit(c, &detail);
    if (status)
        send_error(c, status, detail);
    else
        conn_process(c);
}

/* A PROXY protocol listener's connection, before the header is complete:
 * bytes gather in c->in; a client that sends anything else, or closes,
 * is dropped without an answer (it is not the balancer), and one that
 * sends nothing meets the idle header_timeout.
 * (TLS: the header precedes the handshake, so after it the rest of c->in
 * is ciphertext for the TLS engine.) */
static void proxy_input(ap_conn_t *c, ssize_t nread)
{
    if (nread < 0) {
        ap_conn_close(c);
        return;
    }
    c->in.len += (size_t)nread;
    c->in.data[c->in.len] = '\0';
    int rc = ap_security_proxy_input(c);
    if (rc < 0)
        ap_conn_close(c);
    else if (rc > 0)
        admit(c);
}

int ap_conn_accept(ap_worker_t *w, int fd, const ap_listener_t *l)
{
    ap_conn_t *c = ap_xcalloc(1, sizeof(*c));
    int rc, family = l->family;
    c->worker = w;
    c->admin = l->admin != 0;
    ap_buf_init(&c->in);
    ap_buf_init(&c->out);
    ap_http_parser_init(&c->hp, w->conf);
    c->hp.req.conn = c;

    if (family == AF_UNIX)
        rc = uv_pipe_init(w->loop, &c->io.pipe, 0);
    else
        rc = uv_tcp_init(w->loop, &c->io.tcp);
    if (rc < 0) {
        close(fd);
        ap_http_parser_cleanup(&c->hp);
        free(c);
        return rc;
    }
    uv_timer_init(w->loop, &c->timer);
    c->io.handle.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    ap_worker_conn_added(w, c);

    rc = family == AF_UNIX ? uv_pipe_open(&c->io.pipe, fd) : uv_tcp_open(&c->io.tcp, fd);
    if (rc < 0) {
        close(fd);
        ap_conn_close(c);
        return rc;
    }
    if (family != AF_UNIX)
        uv_tcp_nodelay(&c->io.tcp, 1);
    ap_security_conn_accepted(c, fd, l->proxy_protocol);
    enter_idle(c);
    if (!c->proxy_wait)
        admit(c);
    update_reading(c);
    return 0;
}
