/* SPDX-License-Identifier: BSD-2-Clause */
/* One client connection. */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access_log.h"
#include "alloc.h"
#include "clock.h"
#include "log.h"
#include "router.h"
#include "security.h"
#include "shm.h"
#include "tls.h"
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
/* File bodies: bytes sent for one connection before the loop gets a turn
 * (a fast reader must not hold up everyone else), and the size of the
 * reads when the bytes cannot go straight from file to socket. */
#define AP_FILE_TURN (1024 * 1024)
#define AP_FILE_CHUNK (64 * 1024)
/* A file body up to this size is read and written with its head in one
 * write: one trip through the TCP stack and one segment, which costs less
 * than a second system call to sendfile for a small file. */
#define AP_FILE_INLINE_MAX (16 * 1024)
/* Response bytes encrypted at a time on a TLS connection. */
#define AP_TLS_WRITE_SLICE (64 * 1024)

struct write_req {
    uv_write_t req;
    ap_conn_t *conn;
    ap_access_rec_t *rec; /* the access log line of the response these bytes end */
    size_t len;
    char data[];
};

static void conn_process(ap_conn_t *c);
static void enter_linger(ap_conn_t *c);
static void file_pump(ap_conn_t *c);
static void file_release(ap_conn_t *c, int complete);
static void enter_idle(ap_conn_t *c);
static void send_error(ap_conn_t *c, int status, const char *detail);
static struct write_req *conn_write(ap_conn_t *c, const char *data, size_t len, size_t *sent);
static void proxy_input(ap_conn_t *c, ssize_t nread);

static const ap_config_t *conf_of(const ap_conn_t *c)
{
    return c->worker->conf;
}

static void on_handle_closed(uv_handle_t *h)
{
    ap_conn_t *c = h->data;
    if (h == (uv_handle_t *)&c->wpoll && c->wfd >= 0) {
        close(c->wfd);
        c->wfd = -1;
    }
    if (--c->handles_open > 0)
        return;
    ap_security_conn_closed(c);
    ap_worker_conn_closed(c->worker, c);
    ap_tls_conn_free(c->tls);
    ap_http_parser_cleanup(&c->hp);
    ap_buf_cleanup(&c->in);
    ap_buf_cleanup(&c->out);
    free(c);
}

/* A request that will get no response is logged too: 499 when the client
 * went away first, 444 when the server closes (fast shutdown,
 * shutdown_timeout). Logged while the socket is open: its address is
 * needed. */
static void log_abort(ap_conn_t *c)
{
    if (!ap_access_active)
        return;
    if (c->state == AP_CONN_HANDLING ||
        ((c->state == AP_CONN_HEAD || c->state == AP_CONN_BODY) && c->hp.started))
        ap_access_abort(c, &c->hp.req, c->gone ? 499 : 444);
}

/* The client closed or reset the connection. */
static void close_gone(ap_conn_t *c)
{
    c->gone = 1;
    ap_conn_close(c);
}

void ap_conn_close(ap_conn_t *c)
{
    if (c->state == AP_CONN_CLOSING)
        return;
    log_abort(c);
    if (c->state == AP_CONN_HANDLING) {
        ap_shm_sub(c->worker->slot->in_flight, 1);
        if (c->hp.req.on_abort)
            c->hp.req.on_abort(&c->hp.req);
    }
    if (c->state == AP_CONN_SENDING)
        file_release(c, 0);
    c->state = AP_CONN_CLOSING;
    if (c->tls && !c->eof) {
        /* close_notify, when the socket takes it at once: the connection
         * is going whatever the client does. */
        char alert[256];
        ap_tls_conn_shutdown(c->tls);
        size_t n = ap_tls_conn_output(c->tls, alert, sizeof(alert));
        if (n && c->writes_pending == 0) {
            uv_buf_t b = uv_buf_init(alert, (unsigned int)n);
            uv_try_write(&c->io.stream, &b, 1);
        }
    }
    uv_close(&c->io.handle, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    /* The duplicate descriptor keeps the socket open: it is closed with
     * its poll handle, which also takes it out of epoll. */
    if (c->wfd >= 0)
        uv_close((uv_handle_t *)&c->wpoll, on_handle_closed);
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
    /* TLS: ciphertext goes into the engine at once (on_read follows
     * on_alloc before the next read), so one buffer serves all. */
    if (c->tls) {
        static char cipher[AP_READ_CHUNK];
        buf->base = cipher;
        buf->len = sizeof(cipher);
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

static void tls_input(ap_conn_t *c, const char *data, size_t len);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ap_conn_t *c = s->data;
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
        if (c->state == AP_CONN_HANDSHAKE) {
            ap_tls_conn_abort(c->tls, AP_TLS_FAIL_EOF);
            ap_conn_close(c);
            return;
        }
        if (nread != UV_EOF) {
            close_gone(c);
            return;
        }
        /* While a request is being handled, the client going away means
         * it no longer wants the answer (nginx's proxy_ignore_client_abort
         * off): stop the work. Otherwise, a half-close: answer what was
         * sent, then close. */
        if (c->state == AP_CONN_HANDLING && c->hp.req.on_abort) {
            close_gone(c);
            return;
        }
        c->eof = 1;
        conn_process(c);
        return;
    }
    if (c->tls) {
        tls_input(c, buf->base, (size_t)nread);
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
    if (wr->rec)
        ap_access_finish(wr->rec, status == 0);
    free(wr);
    if (c->state == AP_CONN_CLOSING)
        return;
    if (status < 0) {
        ap_log_errno(AP_LOG_INFO, status, "writing a response failed");
        close_gone(c);
        return;
    }
    if (c->writes_pending == 0) {
        if (c->state == AP_CONN_LINGER)
            enter_linger(c);
        else if (c->state == AP_CONN_SENDING)
            file_pump(c);
        else
            conn_process(c);
    }
}

/* Queues bytes for the socket: straight to it when nothing is queued,
 * copied into a write request for whatever the kernel did not take.
 * Returns that write request (its callback runs once the kernel has the
 * last byte), or NULL when nothing is left queued: all was taken, or the
 * write failed and the connection is closing. *sent, when not NULL, says
 * how many bytes the kernel took at once. */
static struct write_req *sock_write(ap_conn_t *c, const char *data, size_t len, size_t *sent)
{
    if (sent)
        *sent = 0;
    if (c->writes_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned int)len);
        int n = uv_try_write(&c->io.stream, &b, 1);
        if (n > 0 && sent)
            *sent = (size_t)n;
        if (n >= 0 && (size_t)n == len)
            return NULL;
        if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
            ap_log_errno(AP_LOG_INFO, n, "writing a response failed");
            close_gone(c);
            return NULL;
        }
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    struct write_req *wr = ap_xmalloc(sizeof(*wr) + len);
    wr->conn = c;
    wr->rec = NULL;
    wr->len = len;
    memcpy(wr->data, data, len);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned int)len);
    int rc = uv_write(&wr->req, &c->io.stream, &b, 1, on_write);
    if (rc < 0) {
        free(wr);
        ap_log_errno(AP_LOG_INFO, rc, "writing a response failed");
        close_gone(c);
        return NULL;
    }
    c->writes_pending++;
    return wr;
}

/* The access log's line for a response just queued: logged now when the
 * kernel took it all (or the write failed), else when the write request
 * that carries its last byte completes. head_len + body_len bytes were
 * queued. */
static void log_response(ap_conn_t *c, ap_request_t *req, int status, size_t head_len,
                         size_t body_len, struct write_req *wr, size_t sent)
{
    if (!ap_access_active)
        return;
    uint64_t body_sent = sent > head_len ? sent - head_len : 0;
    if (body_sent > body_len)
        body_sent = body_len;
    if (wr)
        wr->rec = ap_access_defer(c, req, status, body_len, body_sent);
    else
        ap_access_done(c, req, status, body_sent);
}

/* A head that a file body follows through sendfile: MSG_MORE holds it
 * back until the first bytes of the body join it in one segment. */
static void conn_write_more(ap_conn_t *c, const char *data, size_t len)
{
    uv_os_fd_t fd;
    if (c->writes_pending == 0 && ap_conn_can_sendfile(c) && uv_fileno(&c->io.handle, &fd) == 0) {
        ssize_t n = send(fd, data, len, MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            ap_log_errno(AP_LOG_INFO, errno, "writing a response failed");
            ap_conn_close(c);
            return;
        }
        if (n > 0) {
            ap_shm_add(c->worker->slot->bytes_out, (uint64_t)n);
            data += n;
            len -= (size_t)n;
        }
        if (len == 0)
            return;
    }
    conn_write(c, data, len, NULL);
}

/* Sends what the TLS engine wrote: handshake messages, alerts, tickets,
 * records. */
static void tls_flush(ap_conn_t *c)
{
    static char out[64 * 1024];
    size_t n;
    while (c->state != AP_CONN_CLOSING && (n = ap_tls_conn_output(c->tls, out, sizeof(out))) > 0)
        sock_write(c, out, n, NULL);
}

/* Queues response bytes for the client, through the transport; returns
 * and reports as sock_write does. Through TLS the bytes count as taken
 * once encrypted: NULL, and *sent is len. */
static struct write_req *conn_write(ap_conn_t *c, const char *data, size_t len, size_t *sent)
{
    ap_shm_add(c->worker->slot->bytes_out, len);
    if (c->tls == NULL)
        return sock_write(c, data, len, sent);
    if (sent)
        *sent = len;
    /* In slices: the engine's output buffer keeps the size of the
     * largest write it took, for the life of the connection. */
    while (len > 0 && c->state != AP_CONN_CLOSING) {
        size_t n = len < AP_TLS_WRITE_SLICE ? len : AP_TLS_WRITE_SLICE;
        if (ap_tls_conn_write(c->tls, data, n) < 0) {
            ap_conn_close(c);
            return NULL;
        }
        tls_flush(c);
        data += n;
        len -= n;
    }
    return NULL;
}

/* Ciphertext from the socket: through the engine into the input buffer,
 * then on as plain bytes would go. */
static void tls_input(ap_conn_t *c, const char *data, size_t len)
{
    if (c->in_off == c->in.len) {
        c->in_off = 0;
        c->in.len = 0;
    }
    int rc = ap_tls_conn_read(c->tls, data, len, &c->in);
    tls_flush(c);
    if (c->state == AP_CONN_CLOSING)
        return;
    switch (rc) {
    case AP_TLS_AGAIN:
        return;
    case AP_TLS_FAILED:
        ap_conn_close(c);
        return;
    case AP_TLS_PLAIN_HTTP:
        /* Say so in clear, as nginx does, and close. */
        ap_tls_conn_free(c->tls);
        c->tls = NULL;
        c->state = AP_CONN_HEAD;
        send_error(c, 400, "a plain HTTP request was sent to an HTTPS port");
        return;
    case AP_TLS_CLOSED:
        /* close_notify: the client sends no more, as with a FIN. */
        if (c->reading) {
            uv_read_stop(&c->io.stream);
            c->reading = 0;
        }
        c->eof = 1;
        break;
    }
    if (c->state == AP_CONN_HANDSHAKE)
        enter_idle(c);
    else if (c->state == AP_CONN_BODY)
        set_timer(c, conf_of(c)->body_timeout_ms);
    conn_process(c);
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
    if (c->tls) {
        /* close_notify goes before the FIN; uv_shutdown waits for it. */
        ap_tls_conn_shutdown(c->tls);
        tls_flush(c);
        if (c->state == AP_CONN_CLOSING)
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
    ap_request_t *req = &c->hp.req;
    ap_buf_t body;
    ap_buf_init(&body);
    ap_http_error_body(&body, status, detail);
    /* Its X-Request-Id: the client's if the head got that far. */
    ap_access_begin(req);
    snprintf(req->error_code, sizeof(req->error_code), "AP%d", status);
    ap_buf_reset(&c->out);
    ap_security_response(req, status);
    ap_http_serialize(&c->out, status, conf->server_header, "application/json",
                      &req->resp_headers, 0, 0, body.data, body.len, 0);
    size_t body_len = body.len;
    ap_buf_cleanup(&body);
    ap_shm_add(c->worker->slot->requests, 1);
    ap_metrics_request(&c->worker->slot->metrics, c->hp.started ? (int)llhttp_get_method(&c->hp.llhttp) : -1,
                       status, AP_ROUTE_BUILTIN,
                       c->hp.req.start_us ? ap_clock_mono_us() - c->hp.req.start_us : 0);
    ap_log(AP_LOG_INFO, "client error %d: %s", status, detail ? detail : ap_http_reason(status));
    /* The request is answered: a close from here on is no abort. */
    c->state = AP_CONN_LINGER;
    size_t sent;
    struct write_req *wr = conn_write(c, c->out.data, c->out.len, &sent);
    log_response(c, req, status, c->out.len - body_len, body_len, wr, sent);
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

/* Whether the kernel would take more bytes for the client now. */
static int socket_writable(ap_conn_t *c)
{
    uv_os_fd_t fd;
    if (uv_fileno(&c->io.handle, &fd) < 0)
        return 0;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) && !(p.revents & (POLLERR | POLLHUP));
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
    case AP_CONN_SENDING:
        /* Timers run before I/O in a loop turn: after a stall of the
         * worker itself, a socket with room again means the client did
         * read, and its event is about to be handled. */
        if (socket_writable(c)) {
            set_timer(c, conf_of(c)->send_timeout_ms);
            return;
        }
        ap_log(AP_LOG_INFO, "the client read nothing for server.send_timeout: closing the "
                            "connection with %llu bytes of a file not sent",
               (unsigned long long)c->file_left);
        file_release(c, 0);
        ap_conn_close(c);
        return;
    case AP_CONN_HANDSHAKE:
        /* A client that stalls mid-handshake gets header_timeout, as one
         * that stalls mid-request does. */
        ap_tls_conn_abort(c->tls, AP_TLS_FAIL_TIMEOUT);
        ap_conn_close(c);
        return;
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
    /* Every response carries the request's id. */
    ap_access_begin(&c->hp.req);
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
                c->gone = 1;
                if (c->writes_pending) {
                    log_abort(c);
                    enter_linger(c);
                } else {
                    ap_conn_close(c);
                }
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
                conn_write(c, cont, sizeof(cont) - 1, NULL);
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

/* Whether the connection stays open after this response. While the server
 * drains (apiary -s drain), connections are not kept: clients reconnect,
 * and a balancer or the VIP sends them elsewhere. */
static int want_keep(ap_conn_t *c)
{
    const ap_config_t *conf = conf_of(c);
    return c->hp.req.keep_alive && !c->eof && !c->worker->draining &&
           !ap_shm_load(c->worker->shm->draining) && conf->keepalive_timeout_ms > 0 &&
           c->requests + 1 < conf->keepalive_requests;
}

/* The request is answered: counters, metrics, no more abort callback. */
static void count_response(ap_conn_t *c, int status)
{
    ap_request_t *req = &c->hp.req;
    c->requests++;
    ap_shm_add(c->worker->slot->requests, 1);
    ap_shm_sub(c->worker->slot->in_flight, 1);
    ap_metrics_request(&c->worker->slot->metrics, req->method, status, req->route,
                       ap_clock_mono_us() - req->start_us);
    req->on_abort = NULL;
}

/* The whole response is queued: on to the next request, or the close. */
static void next_request(ap_conn_t *c, int keep)
{
    if (keep) {
        enter_idle(c);
        conn_process(c);
    } else {
        enter_linger(c);
    }
}

void ap_conn_respond(ap_conn_t *c, int status, const char *content_type, const void *body,
                     size_t len)
{
    const ap_config_t *conf = conf_of(c);
    ap_request_t *req = &c->hp.req;
    if (c->state != AP_CONN_HANDLING)
        return;
    int keep = want_keep(c);

    if (c->tls && conf->tls_hsts)
        ap_http_add_header(req, "Strict-Transport-Security", conf->tls_hsts);
    ap_buf_reset(&c->out);
    ap_security_response(req, status);
    ap_http_serialize(&c->out, status, conf->server_header, content_type, &req->resp_headers, keep,
                      req->http_minor == 0, body, len, req->method == HTTP_HEAD);
    size_t body_len = req->method == HTTP_HEAD ? 0 : len;
    count_response(c, status);
    /* Leave HANDLING first: a failed write closes the connection, and the
     * request is no longer in flight. */
    c->state = keep ? AP_CONN_IDLE : AP_CONN_LINGER;
    size_t sent;
    struct write_req *wr = conn_write(c, c->out.data, c->out.len, &sent);
    log_response(c, req, status, c->out.len - body_len, body_len, wr, sent);
    if (c->state == AP_CONN_CLOSING)
        return;
    ap_http_parser_next(&c->hp);
    c->hp.req.conn = c;
    next_request(c, keep);
}

/* --- File bodies --- */

int ap_conn_can_sendfile(const ap_conn_t *c)
{
    /* Through TLS the bytes must pass the engine: pread and conn_write. */
    return c->tls == NULL;
}

/* Hands the file back to its owner, once. */
static void file_release(ap_conn_t *c, int complete)
{
    void (*done)(void *, int) = c->file_done;
    c->file_done = NULL;
    c->file_fd = -1;
    if (c->wfd >= 0)
        uv_poll_stop(&c->wpoll);
    if (done)
        done(c->file_data, complete);
}

static void on_writable(uv_poll_t *p, int status, int events)
{
    ap_conn_t *c = p->data;
    (void)events;
    uv_poll_stop(p);
    if (c->state != AP_CONN_SENDING)
        return;
    if (status < 0) {
        /* libuv says EBADF for POLLERR: the client reset the connection. */
        ap_log(AP_LOG_INFO, "the connection broke while a file was being sent (%llu bytes left)",
               (unsigned long long)c->file_left);
        ap_conn_close(c);
        return;
    }
    file_pump(c);
}

/* Waits, at most send_timeout, for room in the socket. libuv lets one
 * watcher own a descriptor, and the stream owns the socket's: the poll
 * handle watches a duplicate, made the first time it is needed (epoll
 * tells the two apart). 0, or a negative errno when it cannot wait. */
static int wait_writable(ap_conn_t *c)
{
    if (c->wfd < 0) {
        uv_os_fd_t fd;
        int rc = uv_fileno(&c->io.handle, &fd);
        if (rc < 0)
            return rc;
        int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (d < 0)
            return -errno;
        rc = uv_poll_init(c->worker->loop, &c->wpoll, d);
        if (rc < 0) {
            close(d);
            return rc;
        }
        c->wfd = d;
        c->wpoll.data = c;
        c->handles_open++;
    }
    set_timer(c, conf_of(c)->send_timeout_ms);
    return uv_poll_start(&c->wpoll, UV_WRITABLE, on_writable);
}

/* All of the file is out: the request is complete. */
static void file_finish(ap_conn_t *c)
{
    file_release(c, 1);
    next_request(c, c->keep_after);
}

/* The file ended before the announced length: the client has a head that
 * promises more bytes than exist. Padding would hand it garbage and going
 * on would make it read the next response as this body: close, once what
 * was sent has gone out, so that the client sees a truncated body. */
static void file_short(ap_conn_t *c, uint64_t missing)
{
    ap_log(AP_LOG_WARN,
           "a file shrank while it was being sent: closing the connection with %llu bytes "
           "of its Content-Length missing",
           (unsigned long long)missing);
    file_release(c, 0);
    enter_linger(c);
}

static void file_pump(ap_conn_t *c)
{
    static char chunk[AP_FILE_CHUNK];
    uint64_t budget = AP_FILE_TURN;
    uv_os_fd_t sock = -1;
    if (uv_fileno(&c->io.handle, &sock) < 0)
        c->no_sendfile = 1;

    while (c->file_left > 0) {
        if (c->writes_pending > 0) {
            /* What is queued goes first; on_write resumes. */
            set_timer(c, conf_of(c)->send_timeout_ms);
            return;
        }
        if (budget == 0) {
            if (wait_writable(c) == 0)
                return;
            budget = AP_FILE_TURN; /* cannot yield: carry on */
        }
        uint64_t want = c->file_left < budget ? c->file_left : budget;
        ssize_t n;
        if (!c->no_sendfile && ap_conn_can_sendfile(c)) {
            off_t off = (off_t)c->file_off;
            n = sendfile(sock, c->file_fd, &off, (size_t)want);
            if (n < 0) {
                int err = errno;
                if (err == EINTR)
                    continue;
                if (err == EAGAIN) {
                    if (wait_writable(c) == 0)
                        return;
                    /* No way to wait for the socket: let uv_write do it. */
                    c->no_sendfile = 1;
                    continue;
                }
                if (err == EINVAL || err == ENOSYS || err == EOPNOTSUPP) {
                    /* A file system without sendfile support. */
                    c->no_sendfile = 1;
                    continue;
                }
                ap_log_errno(AP_LOG_INFO, err, "sendfile() to a client failed");
                file_release(c, 0);
                ap_conn_close(c);
                return;
            }
            if (n == 0) {
                file_short(c, c->file_left);
                return;
            }
            ap_shm_add(c->worker->slot->bytes_out, (uint64_t)n);
            c->file_off += (uint64_t)n;
            c->file_left -= (uint64_t)n;
        } else {
            n = pread(c->file_fd, chunk, want < sizeof(chunk) ? (size_t)want : sizeof(chunk),
                      (off_t)c->file_off);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                ap_log_errno(AP_LOG_ERR, errno, "reading a file for a response failed");
                file_release(c, 0);
                ap_conn_close(c);
                return;
            }
            if (n == 0) {
                file_short(c, c->file_left);
                return;
            }
            c->file_off += (uint64_t)n;
            c->file_left -= (uint64_t)n;
            conn_write(c, chunk, (size_t)n, NULL);
            if (c->state == AP_CONN_CLOSING)
                return;
        }
        budget -= (uint64_t)n < budget ? (uint64_t)n : budget;
    }
    file_finish(c);
}

void ap_conn_send_file(ap_conn_t *c, int fd, uint64_t offset, uint64_t len)
{
    c->state = AP_CONN_SENDING;
    c->file_fd = fd;
    c->file_off = offset;
    c->file_left = len;
    c->no_sendfile = 0;
    file_pump(c);
}

void ap_conn_respond_file(ap_conn_t *c, int status, const char *content_type, int fd,
                          uint64_t offset, uint64_t len, void (*done)(void *data, int complete),
                          void *data)
{
    const ap_config_t *conf = conf_of(c);
    ap_request_t *req = &c->hp.req;
    if (c->state != AP_CONN_HANDLING) {
        if (done)
            done(data, 0);
        return;
    }
    int keep = want_keep(c);
    int head_only = req->method == HTTP_HEAD || len == 0;

    ap_buf_reset(&c->out);
    /* The head announces len bytes; the body follows from the file. */
    ap_security_response(req, status);
    ap_http_serialize(&c->out, status, conf->server_header, content_type, &req->resp_headers, keep,
                      req->http_minor == 0, NULL, (size_t)len, 1);
    count_response(c, status);
    /* The access log line is written now, with the bytes the head
     * announced: the request's data is gone by the time a long file is out. */
    if (ap_access_active)
        ap_access_done(c, req, status, head_only ? 0 : len);
    if (head_only) {
        c->state = keep ? AP_CONN_IDLE : AP_CONN_LINGER;
        conn_write(c, c->out.data, c->out.len, NULL);
        if (done)
            done(data, 1);
        if (c->state == AP_CONN_CLOSING)
            return;
        ap_http_parser_next(&c->hp);
        c->hp.req.conn = c;
        next_request(c, keep);
        return;
    }
    if (len <= AP_FILE_INLINE_MAX) {
        /* Small: the body joins the head in c->out. */
        size_t got = 0;
        ap_buf_reserve(&c->out, (size_t)len);
        while (got < len) {
            ssize_t n = pread(fd, c->out.data + c->out.len + got, (size_t)len - got,
                              (off_t)(offset + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (n < 0)
                    ap_log_errno(AP_LOG_ERR, errno, "reading a file for a response failed");
                break;
            }
            got += (size_t)n;
        }
        c->out.len += got;
        c->state = keep && got == len ? AP_CONN_IDLE : AP_CONN_LINGER;
        conn_write(c, c->out.data, c->out.len, NULL);
        if (done)
            done(data, got == len);
        if (c->state == AP_CONN_CLOSING)
            return;
        ap_http_parser_next(&c->hp);
        c->hp.req.conn = c;
        if (got < len) {
            file_short(c, len - got);
            return;
        }
        next_request(c, keep);
        return;
    }
    /* SENDING before the write, so that a failed write hands the file
     * back through ap_conn_close(). */
    c->state = AP_CONN_SENDING;
    c->keep_after = keep;
    c->file_fd = fd;
    c->file_done = done;
    c->file_data = data;
    conn_write_more(c, c->out.data, c->out.len);
    if (c->state == AP_CONN_CLOSING)
        return;
    ap_http_parser_next(&c->hp);
    c->hp.req.conn = c;
    ap_conn_send_file(c, fd, offset, len);
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
    c->file_fd = -1;
    c->wfd = -1;
    c->worker = w;
    c->admin = l->admin != 0;
    c->redirect = l->redirect != 0;
    if (l->tls && (w->conf->tls == NULL ||
                   (c->tls = ap_tls_conn_new(w->conf->tls, &w->slot->metrics)) == NULL)) {
        close(fd);
        free(c);
        return UV_ENOMEM;
    }
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
        ap_tls_conn_free(c->tls);
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
    if (ap_access_active)
        ap_access_peer(c);
    ap_security_conn_accepted(c, fd, l->proxy_protocol);
    if (c->tls) {
        /* The handshake has header_timeout, as a request head has. Over a
         * connection limit, a TLS client is closed (no plain answer can
         * reach it before the handshake). */
        const char *detail = NULL;
        if (ap_security_conn_admit(c, &detail)) {
            ap_conn_close(c);
            return 0;
        }
        c->state = AP_CONN_HANDSHAKE;
        set_timer(c, conf_of(c)->header_timeout_ms);
    } else {
        enter_idle(c);
        if (!c->proxy_wait)
            admit(c);
    }
    update_reading(c);
    return 0;
}
