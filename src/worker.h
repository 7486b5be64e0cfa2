/* SPDX-License-Identifier: BSD-2-Clause */
/* A worker process: after fork, a fresh libuv loop accepting on the
 * inherited listeners, until told to stop. */
#ifndef AP_WORKER_H
#define AP_WORKER_H

#include <uv.h>

#include "config.h"
#include "db.h"
#include "listener.h"
#include "shm.h"

struct ap_conn_s;

typedef struct ap_worker_s {
    uv_loop_t loop_storage;
    uv_loop_t *loop;
    const ap_config_t *conf;
    int id;
    ap_shm_t *shm;
    ap_shm_slot_t *slot;
    ap_listener_t *listeners;
    size_t nlisteners;
    uv_poll_t *polls; /* one per listener */
    uv_timer_t heartbeat;
    uv_timer_t deadline;     /* shutdown_timeout while draining */
    uv_timer_t accept_retry; /* after EMFILE/ENFILE */
    uv_signal_t sig_term, sig_quit, sig_usr1;
    ap_db_t *db;             /* NULL without [database] uri */
    struct ap_static_s *statics; /* NULL without [static] root */
    struct ap_conn_s *conns; /* every open connection */
    size_t nconns;
    uint32_t log_generation; /* the shm's log_generation when the logs were last opened */
    unsigned draining : 1;
    unsigned accepting : 1;
    unsigned stopping : 1;
} ap_worker_t;

/* Runs worker id in shm slot `slot` with the master's listeners and exits
 * the process; never returns. Called in the child right after fork. */
void ap_worker_main(const ap_config_t *conf, ap_shm_t *shm, int slot, int id,
                    ap_listener_t *listeners, size_t nlisteners) __attribute__((noreturn));

/* Publishes the worker's state in its slot: starting, ready (its
 * database side is usable, or there is none), unhealthy, draining. */
void ap_worker_update_state(ap_worker_t *w);

/* Connection bookkeeping, called by conn.c. */
void ap_worker_conn_added(ap_worker_t *w, struct ap_conn_s *c);
void ap_worker_conn_closed(ap_worker_t *w, struct ap_conn_s *c);

#endif
