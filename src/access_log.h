/* SPDX-License-Identifier: BSD-2-Clause */
/* The access log and the slow-request log. Each worker formats one line
 * per request (JSON, or the classic combined format) into a buffer of its
 * own, written with one write(2) of whole lines to a file opened with
 * O_APPEND when it fills, at least once a second, on reopen and on exit.
 * The request id (X-Request-Id) and trace context are taken or made here
 * too, for every request, whether or not anything is logged. */
#ifndef AP_ACCESS_LOG_H
#define AP_ACCESS_LOG_H

#include <stdint.h>
#include <uv.h>

#include "config.h"

struct ap_conn_s;
struct ap_request_s;

/* A line whose response is not all handed to the kernel yet. */
typedef struct ap_access_rec_s ap_access_rec_t;

/* Non-zero in a worker that logs requests: [log] access is not off, or
 * slow_ms is set. Checked before any per-request work for the logs. */
extern int ap_access_active;

/* Whether the access log of conf can be opened for appending (creating
 * it, mode 0640): the master's check at start and before a reload, so
 * that a path workers could not open fails early. 0 or -errno. */
int ap_access_check(const ap_config_t *conf);

/* In a worker, after fork: opens the access log that conf names and keys
 * the request id generator. On failure (-errno, logged) requests are not
 * logged until a reopen succeeds; the slow log still works. */
int ap_access_init(uv_loop_t *loop, const ap_config_t *conf, int worker_id);

/* USR1: writes out the buffer, then reopens the file by its path (after
 * logrotate moved it). 0 or -errno (the old file is kept then). */
int ap_access_reopen(void);

/* Writes out whatever is buffered. */
void ap_access_flush(void);

/* The worker's loop is about to close every handle: the flush timer goes,
 * lines logged from here on wait in the buffer for ap_access_close. */
void ap_access_stop(void);

/* Writes out the buffer and closes the file (worker exit). */
void ap_access_close(void);

/* Looks up the client's address of c for its log lines (getpeername):
 * at accept, while the socket still has a peer to ask about. */
void ap_access_peer(struct ap_conn_s *c);

/* Gives req its request id: the client's X-Request-Id when
 * ap_reqid_valid() accepts it, else a generated one; notes a valid
 * traceparent; adds "X-Request-Id" to the response headers. Does nothing
 * the second time. Called for every request, logged or not. */
void ap_access_begin(struct ap_request_s *req);

/* Logs req, whose response (status, body_sent body bytes) has been handed
 * to the kernel, or whose connection broke before (body_sent counts what
 * got through). Only when ap_access_active. */
void ap_access_done(struct ap_conn_s *c, struct ap_request_s *req, int status,
                    uint64_t body_sent);

/* Logs a request that got no response: status 499 (the client closed the
 * connection first) or 444 (the server closed it: fast shutdown,
 * shutdown_timeout). Only when ap_access_active. */
void ap_access_abort(struct ap_conn_s *c, struct ap_request_s *req, int status);

/* Part of the response is still queued for the socket: captures all the
 * line needs from req now (its slices are about to be reused) and returns
 * a record for ap_access_finish. body_total is the response's body size,
 * body_sent how much of it the kernel took already. Only when
 * ap_access_active. */
ap_access_rec_t *ap_access_defer(struct ap_conn_s *c, struct ap_request_s *req, int status,
                                 uint64_t body_total, uint64_t body_sent);

/* The last queued byte of rec's response was handed to the kernel (ok),
 * or the write failed (the body bytes sent are then those counted at
 * ap_access_defer): logs the line and frees rec. */
void ap_access_finish(ap_access_rec_t *rec, int ok);

#endif
