/* SPDX-License-Identifier: BSD-2-Clause */
/* A worker's pool of non-blocking libpq connections on uv_poll: connect
 * with PQconnectStart/PQconnectPoll, one transaction per request sent in
 * one round trip with pipeline mode, a bounded wait queue, reconnect with
 * back-off, and cancellation (PQcancel in libuv's thread pool). */
#ifndef AP_PG_POOL_H
#define AP_PG_POOL_H

#include <libpq-fe.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "shm.h"

typedef struct ap_pg_pool_s ap_pg_pool_t;
typedef struct ap_pg_query_s ap_pg_query_t;

typedef enum {
    AP_PG_OK = 0,       /* res is the statement's result: rows, or a SQL error */
    AP_PG_QUEUE_FULL,   /* no free connection and queue_size requests already wait */
    AP_PG_POOL_TIMEOUT, /* no connection came free within pool_timeout */
    AP_PG_UNAVAILABLE,  /* no connection to the database can be made */
    AP_PG_CONN_LOST,    /* the connection broke while the transaction ran */
    AP_PG_DEADLINE,     /* request_timeout passed: the statement is being cancelled */
} ap_pg_status_t;

/* Called once per submitted query (never after ap_pg_abandon). res is
 * owned by the pool and cleared when the callback returns; so is q (and
 * q->response). */
typedef void (*ap_pg_done_cb)(ap_pg_query_t *q, ap_pg_status_t status, PGresult *res);

/* The transaction-local settings sent before the statement, in the same
 * round trip (set_config(..., true)). NULL leaves one unset. */
enum {
    AP_PG_SET_ROLE,    /* role */
    AP_PG_SET_CLAIMS,  /* request.jwt.claims */
    AP_PG_SET_METHOD,  /* request.method */
    AP_PG_SET_PATH,    /* request.path */
    AP_PG_SET_HEADERS, /* request.headers */
    AP_PG_SET_COOKIES, /* request.cookies */
    AP_PG_NSETTINGS
};

struct ap_pg_query_s {
    /* Filled by the caller; freed with the query. */
    char *sql;
    int nparams;
    char **params;                   /* text values; NULL is SQL NULL */
    char *settings[AP_PG_NSETTINGS]; /* with_settings: role, claims, method, path... */
    int with_settings;               /* 0: the bare statement (schema loading) */
    int read_only;                   /* run the transaction READ ONLY (GET) */
    int pre_request;                 /* with_settings: then [api] pre_request, if set;
                                      * response.headers and response.status are then
                                      * read back too (pre_request may set them) */
    int with_response;               /* read response.headers and response.status back
                                      * after the statement in any case (a function may
                                      * set them) */
    ap_pg_done_cb done;
    void *data;
    void (*free_data)(void *data);   /* when set, frees data with the query */
    uint64_t *db_us;                 /* when set, the time from submit to answer (pool wait
                                      * included) is added here just before done runs: a
                                      * request's db_us, for its access log line */

    /* The pool's. */
    ap_pg_pool_t *pool;
    struct ap_pg_conn_s *conn;       /* running on it */
    ap_pg_query_t *next, *prev;      /* in the wait queue */
    uint64_t queued_until;           /* monotonic ms: pool_timeout */
    uint64_t deadline;               /* monotonic ms: request_timeout */
    uint64_t cancelled_at;
    uint64_t submitted_us;           /* monotonic: for the pool wait metric */
    PGresult *result;
    PGresult *response;              /* one row, (headers, status), when they were read
                                      * back and the statement succeeded; else NULL */
    int nulls;                       /* statements whose results are complete */
    int main_index;                  /* the statement's place in the pipeline */
    int response_index;              /* that of the response settings, or -1 */
    unsigned queued : 1, abandoned : 1, retried : 1, answered : 1, sent : 1;
};

/* A query with room for nparams parameters (params[i] start NULL). */
ap_pg_query_t *ap_pg_query_new(int nparams);

/* Creates the pool and starts connecting pool_size connections to uri
 * (which must outlive the pool). The pool records its health in slot:
 * healthy while a connection is up and the last round trip reached
 * PostgreSQL. on_healthy, when not NULL, runs each time it becomes so. */
ap_pg_pool_t *ap_pg_pool_new(uv_loop_t *loop, const ap_config_t *conf, const char *uri,
                             ap_shm_slot_t *slot, void (*on_healthy)(void *data), void *data);

/* Runs q: at once on a free connection, else after a wait in the queue.
 * q->done is called exactly once, possibly before this returns. */
void ap_pg_submit(ap_pg_pool_t *pool, ap_pg_query_t *q);

/* The owner of q is gone (the client went away): done will not be called;
 * a running statement is cancelled and q freed when its result is in. */
void ap_pg_abandon(ap_pg_query_t *q);

/* Non-zero while at least one connection is up. */
int ap_pg_pool_healthy(const ap_pg_pool_t *pool);

/* Closes every connection, fails what waits, frees the pool once its
 * handles are closed (run the loop afterwards). */
void ap_pg_pool_close(ap_pg_pool_t *pool);

/* Starts PQcancel for conn's running statement in the thread pool. */
void ap_pg_cancel(uv_loop_t *loop, PGconn *conn);

#endif
