/* SPDX-License-Identifier: BSD-2-Clause */
/* One client connection: the read buffer, the request/response cycle with
 * keep-alive and pipelining, timeouts, writes, and lingering close. A
 * connection is freed only in its handles' close callbacks. */
#ifndef AP_CONN_H
#define AP_CONN_H

#include <uv.h>

#include "buf.h"
#include "http.h"
#include "listener.h"
#include "netaddr.h"

struct ap_worker_s;

typedef enum {
    AP_CONN_IDLE = 0, /* waiting for the first byte of a request */
    AP_CONN_HEAD,     /* reading a request head */
    AP_CONN_BODY,     /* reading a request body */
    AP_CONN_HANDLING, /* a handler has the request */
    AP_CONN_LINGER,   /* final response sent; discarding input before close */
    AP_CONN_CLOSING,  /* handles are being closed */
} ap_conn_state_t;

typedef struct ap_conn_s {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_timer_t timer;
    struct ap_worker_s *worker;
    struct ap_conn_s *prev, *next; /* the worker's list of connections */

    ap_conn_state_t state;
    ap_buf_t in;       /* bytes read; [in_off, in.len) not yet parsed */
    size_t in_off;
    ap_http_parser_t hp;
    ap_buf_t out;      /* scratch for serialising a response */

    uint64_t requests;      /* requests answered on this connection */
    uint64_t idle_since;    /* monotonic ms, while IDLE */
    size_t writes_pending;  /* uv_write requests in flight */
    int handles_open;       /* closed handles still to report */
    unsigned processing : 1;    /* inside conn_process(): do not re-enter */
    unsigned reading : 1;       /* uv_read_start is active */
    unsigned eof : 1;           /* the client closed its side */
    unsigned close_after : 1;   /* close once the pending writes are done */
    unsigned continue_sent : 1; /* "100 Continue" went out for this request */
    unsigned admin : 1;         /* accepted on the admin listener */

    /* The security layer (security.c): who the client is, and its limits. */
    ap_addr_t client_ip;            /* the TCP peer, or the PROXY header's source */
    char client_addr[AP_ADDR_TEXT]; /* client_ip as text ("unix" for none): for logs */
    uint64_t body_start_ms;         /* when the request body began (min_body_rate) */
    unsigned proxy_wait : 1;        /* a PROXY protocol header must come first */
    unsigned addr_counted : 1;      /* counted in the per-address connection table */
} ap_conn_t;

/* Takes an accepted, non-blocking socket (fd is owned from now on, closed
 * on failure too) from listener l, whose flags (admin, proxy_protocol) the
 * connection takes. Returns 0 or a negative libuv error. */
int ap_conn_accept(struct ap_worker_s *w, int fd, const ap_listener_t *l);

/* Called by the HTTP layer for the request being handled: sends the
 * response and finishes the request. */
void ap_conn_respond(ap_conn_t *c, int status, const char *content_type, const void *body,
                     size_t len);

/* The worker is draining: finish what is in progress with
 * "Connection: close"; an idle connection is closed once it has been idle
 * for the drain grace period. */
void ap_conn_drain(ap_conn_t *c);

/* Closes now, whatever the state (fast shutdown, deadline). */
void ap_conn_close(ap_conn_t *c);

#endif
