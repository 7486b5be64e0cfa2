/* SPDX-License-Identifier: BSD-2-Clause */
/* HTTP/1.1 on llhttp: the parser glue that turns bytes into requests held as
 * slices, the checks DESIGN.md section 3 asks for, and the response
 * serialiser with its JSON error bodies. */
#ifndef AP_HTTP_H
#define AP_HTTP_H

#include <llhttp.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "reqid.h"
#include "netaddr.h"
#include "str.h"

struct ap_conn_s;

typedef struct ap_header_s {
    ap_str_t name;
    ap_str_t value;
} ap_header_t;

/* A parsed request. Every slice points into the parser's storage and stays
 * valid until ap_http_parser_next(). */
typedef struct ap_request_s {
    struct ap_conn_s *conn;
    llhttp_method_t method;
    ap_str_t method_name;
    ap_str_t target; /* the request-target as sent */
    ap_str_t path;   /* its path, without query or fragment */
    ap_str_t query;  /* after '?', without it; empty when absent */
    uint8_t http_major;
    uint8_t http_minor;
    ap_header_t *headers;
    size_t nheaders;
    ap_buf_t body;
    unsigned keep_alive : 1;      /* the client allows another request */
    unsigned expect_continue : 1; /* "Expect: 100-continue" */
    unsigned has_body : 1;        /* Content-Length > 0 or chunked */
    uint64_t start_ms;            /* monotonic, when the first byte arrived */
    uint64_t start_us;            /* the same in microseconds, for metrics */
    int route;                    /* AP_ROUTE_*: set by the router, for metrics */
    ap_buf_t resp_headers;        /* extra header lines for the response */
    /* Set by a handler that answers later: called if the connection
     * closes first (client gone, fast shutdown); the request must not be
     * answered after that. */
    void (*on_abort)(struct ap_request_s *req);
    void *handler_data;
    /* --- Access log and tracing (access_log.c). Zeroed per request. --- */
    char request_id[AP_REQID_MAX + 1]; /* echoed as X-Request-Id; "" until assigned */
    uint8_t request_id_len;
    ap_str_t traceparent; /* a valid W3C traceparent as sent; empty otherwise */
    const char *role;     /* the database role it ran as, set by the API; NULL: none */
    uint64_t db_us;       /* time its database queries took: the pool adds to it */
    char error_code[16];  /* "code" of the JSON error body sent (PGRST..., SQLSTATE, AP4xx) */
    /* The real client (security.c, before routing): the connection's
     * peer, or the address trusted proxies forwarded. Empty text until
     * then: ap_security_client_addr() falls back to the connection's. */
    ap_addr_t client;
    char client_addr[AP_ADDR_TEXT];
} ap_request_t;

typedef enum {
    AP_HTTP_MORE = 0, /* everything consumed; the request is not complete */
    AP_HTTP_HEAD,     /* the head is complete (the body may follow) */
    AP_HTTP_MESSAGE,  /* a whole request is ready in parser->req */
    AP_HTTP_ERROR,    /* malformed or over a limit: answer error_status, close */
} ap_http_event_t;

typedef struct ap_http_hdr_off_s {
    size_t name_off, name_len, value_off, value_len;
} ap_http_hdr_off_t;

typedef struct ap_http_parser_s {
    llhttp_t llhttp;
    const ap_config_t *conf;
    ap_request_t req;
    ap_buf_t raw;                /* request-target and header bytes, copied */
    ap_http_hdr_off_t *offs;     /* where each header sits in raw */
    size_t noffs, offs_cap;
    size_t target_len;
    uint64_t head_bytes;         /* bytes of the head's pieces so far */
    uint64_t head_raw;           /* raw bytes consumed inside the head */
    unsigned started : 1;        /* a request has begun */
    unsigned head_done : 1;      /* its head is complete */
    unsigned in_field : 1;       /* inside a header name */
    const char *exec_start;      /* the bytes being parsed now */
    char exec_prev;              /* the last byte parsed before them, spaces and tabs skipped */
    ap_http_event_t event;       /* what the last callback announced */
    int error_status;            /* for AP_HTTP_ERROR */
    const char *error_detail;    /* static text for the JSON body */
} ap_http_parser_t;

void ap_http_parser_init(ap_http_parser_t *hp, const ap_config_t *conf);
void ap_http_parser_cleanup(ap_http_parser_t *hp);

/* Feeds len bytes and returns at the first event; *consumed says how many
 * bytes were used (the rest must be fed again, after the event is handled).
 * After AP_HTTP_ERROR the parser is dead: answer and close. */
ap_http_event_t ap_http_parse(ap_http_parser_t *hp, const char *data, size_t len,
                              size_t *consumed);

/* Forgets the finished request so the next one can be parsed. */
void ap_http_parser_next(ap_http_parser_t *hp);

/* The value of the first header with this name (case-insensitive), or NULL. */
const ap_str_t *ap_http_header(const ap_request_t *req, ap_str_t name);

/* The reason phrase of a status code ("Not Found"). */
const char *ap_http_reason(int status);

/* Serialises a response into out: status line, Date, Server (when
 * server is not NULL), Content-Type (when not NULL), Content-Length, the
 * extra header lines, Connection, then the body unless head_only. */
void ap_http_serialize(ap_buf_t *out, int status, const char *server, const char *content_type,
                       const ap_buf_t *extra, int keep_alive, int http10, const void *body,
                       size_t body_len, int head_only);

/* Appends the JSON error body for status: {"code":"AP<status>",...}. */
void ap_http_error_body(ap_buf_t *out, int status, const char *details);

/* --- Responding to a request: used by the router and handlers. --- */

/* Adds "name: value" to the response being built. */
void ap_http_add_header(ap_request_t *req, const char *name, const char *value);

/* Sends the response and finishes the request (req is invalid afterwards).
 * HEAD requests get the head only. The body is gzipped on the way when
 * [gzip] allows it and the request accepts it (src/gzip.c). */
void ap_http_respond(ap_request_t *req, int status, const char *content_type, const void *body,
                     size_t len);

/* Sends a response whose body is len bytes of the file fd from offset
 * (src/conn.c: sendfile where it can), and finishes the request. No
 * on-the-fly compression. done(data, complete) is called once when fd is
 * no longer used: see ap_conn_respond_file(). */
void ap_http_respond_file(ap_request_t *req, int status, const char *content_type, int fd,
                          uint64_t offset, uint64_t len, void (*done)(void *data, int complete),
                          void *data);

/* Sends a JSON error response; details may be NULL. */
void ap_http_respond_error(ap_request_t *req, int status, const char *details);

#endif
