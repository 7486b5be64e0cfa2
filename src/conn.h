/* SPDX-License-Identifier: BSD-2-Clause */
/* One client connection: the read buffer, the request/response cycle with
 * keep-alive and pipelining, timeouts, writes, and lingering close. A
 * connection is freed only in its handles' close callbacks. */
#ifndef AP_CONN_H
#define AP_CONN_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "buf.h"
#include "http.h"
#include "listener.h"
#include "netaddr.h"

struct ap_worker_s;
struct ap_tls_conn_s;

typedef enum {
    AP_CONN_IDLE = 0, /* waiting for the first byte of a request */
    AP_CONN_HEAD,     /* reading a request head */
    AP_CONN_BODY,     /* reading a request body */
    AP_CONN_HANDLING, /* a handler has the request */
    AP_CONN_SENDING,  /* a response head went out; its body comes from a file */
    AP_CONN_LINGER,   /* final response sent; discarding input before close */
    AP_CONN_CLOSING,  /* handles are being closed */
    AP_CONN_HANDSHAKE, /* TLS: the handshake is in progress */
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
    /* The transport: NULL for plain TCP; on a tls listener every byte
     * read goes through it before the HTTP parser, and every byte written
     * after the serialiser. */
    struct ap_tls_conn_s *tls;

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
    /* --- Access log (access_log.c) --- */
    unsigned gone : 1;          /* the client closed or reset the connection */
    unsigned peer_known : 1;    /* peer and peer_port are filled in */
    uint16_t peer_port;         /* 0 for a Unix socket */
    char peer[48];              /* the client's address, looked up at its first log line */

    /* A file body being sent (AP_CONN_SENDING): see ap_conn_send_file(). */
    int file_fd;
    uint64_t file_off, file_left;
    void (*file_done)(void *data, int complete);
    void *file_data;
    uv_poll_t wpoll;  /* writability of wfd, a dup of the socket, for sendfile */
    int wfd;          /* -1 until sendfile first finds the socket full */
    unsigned keep_after : 1;  /* keep the connection once the file is sent */
    unsigned no_sendfile : 1; /* sendfile failed on this file: read and write */
    unsigned redirect : 1;      /* accepted on a redirect listener */

    /* The security layer (security.c): who the client is, and its limits. */
    ap_addr_t client_ip;            /* the TCP peer, or the PROXY header's source */
    char client_addr[AP_ADDR_TEXT]; /* client_ip as text ("unix" for none): for logs */
    uint64_t body_start_ms;         /* when the request body began (min_body_rate) */
    unsigned proxy_wait : 1;        /* a PROXY protocol header must come first */
    unsigned addr_counted : 1;      /* counted in the per-address connection table */
} ap_conn_t;

/* Takes an accepted, non-blocking socket (fd is owned from now on, closed
 * on failure too) from listener l, whose flags (admin, tls, redirect) the
 * connection takes. Returns 0 or a negative libuv error. */
int ap_conn_accept(struct ap_worker_s *w, int fd, const ap_listener_t *l);

/* Whether the connection is TLS: its bytes must go through the TLS
 * engine, so sendfile(2) and the like cannot be used on it. */
static inline int ap_conn_is_tls(const ap_conn_t *c)
{
    return c->tls != NULL;
}

/* Called by the HTTP layer for the request being handled: sends the
 * response and finishes the request. */
void ap_conn_respond(ap_conn_t *c, int status, const char *content_type, const void *body,
                     size_t len);

/* Called by the HTTP layer: sends the response head for a body of len
 * bytes read from fd at offset, then the body itself (none for HEAD), and
 * finishes the request. done(data, complete) is called exactly once, when
 * the descriptor is no longer needed: complete is 1 when every byte went
 * out, 0 when the connection closed first or the file turned out shorter
 * than len (the connection is then closed: a response is never padded or
 * cut short silently). fd stays the caller's. */
void ap_conn_respond_file(ap_conn_t *c, int status, const char *content_type, int fd,
                          uint64_t offset, uint64_t len, void (*done)(void *data, int complete),
                          void *data);

/* Starts sending len bytes of fd from offset after what is already
 * queued, without blocking the loop: sendfile(2) on a non-blocking socket
 * when ap_conn_can_sendfile(), else reads of the file written through the
 * connection's buffered writes; continues when the socket is writable
 * again, and closes the connection when the client reads nothing for
 * send_timeout. The connection is in AP_CONN_SENDING meanwhile; when the
 * last byte is out it goes on with the next request (or closes).
 * ap_conn_respond_file() calls it after the head. */
void ap_conn_send_file(ap_conn_t *c, int fd, uint64_t offset, uint64_t len);

/* Whether the bytes of this connection may go straight from a file to
 * the socket with sendfile(2): plain connections (TLS ones must encrypt
 * them first). */
int ap_conn_can_sendfile(const ap_conn_t *c);

/* The worker is draining: finish what is in progress with
 * "Connection: close"; an idle connection is closed once it has been idle
 * for the drain grace period. */
void ap_conn_drain(ap_conn_t *c);

/* Closes now, whatever the state (fast shutdown, deadline). */
void ap_conn_close(ap_conn_t *c);

#endif
