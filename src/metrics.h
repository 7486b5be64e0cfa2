/* SPDX-License-Identifier: BSD-2-Clause */
/* Prometheus metrics: counters and histograms that each worker updates in
 * its shared-memory slot with relaxed atomics (no locks on the request
 * path), folded by the master into a "retired" block when a worker exits
 * so that totals survive worker replacement, and rendered in the text
 * exposition format 0.0.4 on the admin listener's /metrics. */
#ifndef AP_METRICS_H
#define AP_METRICS_H

#include <stdint.h>

#include "buf.h"

enum { AP_M_GET, AP_M_HEAD, AP_M_POST, AP_M_PUT, AP_M_PATCH, AP_M_DELETE, AP_M_OPTIONS,
       AP_M_OTHER, AP_M_NMETHODS };
enum { AP_ROUTE_BUILTIN, AP_ROUTE_API, AP_ROUTE_RPC, AP_ROUTE_STATIC, AP_ROUTE_NKINDS };
/* Why a TLS handshake did not complete (or a renegotiation was refused). */
enum {
    AP_TLS_FAIL_PROTOCOL,      /* not TLS, or broken TLS (handshake garbage) */
    AP_TLS_FAIL_VERSION,       /* a version we do not speak (TLS 1.1 and older) */
    AP_TLS_FAIL_CIPHER,        /* no cipher or signature algorithm in common */
    AP_TLS_FAIL_ALPN,          /* ALPN offered without http/1.1 */
    AP_TLS_FAIL_CERTIFICATE,   /* the client rejected our certificate (alert) */
    AP_TLS_FAIL_PLAIN_HTTP,    /* a plain HTTP request on a TLS listener */
    AP_TLS_FAIL_TIMEOUT,       /* not done within server.header_timeout */
    AP_TLS_FAIL_EOF,           /* the client closed in the middle */
    AP_TLS_FAIL_RENEGOTIATION, /* a TLS 1.2 renegotiation, refused */
    AP_TLS_NFAILS
};
extern const char *const ap_metrics_tls_fail_names[AP_TLS_NFAILS];

/* Request duration buckets, in seconds. */
#define AP_M_NBUCKETS 14
/* SQLSTATE classes counted one by one; the rest is "other". */
#define AP_M_NSQLCLASSES 16
/* Rate limits (ratelimit.h: AP_RL_API, AP_RL_RPC, AP_RL_STATIC). */
#define AP_M_NRATELIMITS 3
/* Why a connection was refused at the edge (security.c). */
enum { AP_M_REFUSED_ADDRESS, AP_M_REFUSED_TOTAL, AP_M_REFUSED_PROXY, AP_M_NREFUSED };

typedef struct ap_metrics_s {
    uint64_t requests[AP_M_NMETHODS][5]; /* by status class 1xx..5xx */
    uint64_t duration_buckets[AP_ROUTE_NKINDS][AP_M_NBUCKETS]; /* cumulative "le" */
    uint64_t duration_count[AP_ROUTE_NKINDS];
    uint64_t duration_sum_us[AP_ROUTE_NKINDS];
    uint64_t pool_wait_buckets[AP_M_NBUCKETS];
    uint64_t pool_wait_count;
    uint64_t pool_wait_sum_us;
    uint64_t db_errors[AP_M_NSQLCLASSES];
    uint64_t rate_limited[AP_M_NRATELIMITS];
    uint64_t conns_refused[AP_M_NREFUSED];
    uint64_t tls_handshakes[2][2]; /* [TLS 1.3][resumed] */
    uint64_t tls_failures[AP_TLS_NFAILS];
} ap_metrics_t;

struct ap_shm_s;

/* Counts a finished request: method (llhttp_method_t), status, route
 * kind, duration. */
void ap_metrics_request(ap_metrics_t *m, int method, int status, int route, uint64_t duration_us);

/* Counts the time a query waited for a pool connection. */
void ap_metrics_pool_wait(ap_metrics_t *m, uint64_t wait_us);

/* Counts a database error by its SQLSTATE (NULL: a connection failure). */
void ap_metrics_db_error(ap_metrics_t *m, const char *sqlstate);

/* Counts a completed TLS handshake: version 1.3 or 1.2, resumed or not. */
void ap_metrics_tls_handshake(ap_metrics_t *m, int tls13, int resumed);

/* Counts a TLS handshake that failed, by AP_TLS_FAIL_* reason. */
void ap_metrics_tls_failure(ap_metrics_t *m, int reason);

/* dst += src, field by field (the master, when a worker exits). */
void ap_metrics_fold(ap_metrics_t *dst, const ap_metrics_t *src);

/* Appends the whole exposition: every family, aggregated over the retired
 * block and every live worker. */
void ap_metrics_render(ap_buf_t *out, struct ap_shm_s *shm);

#endif
