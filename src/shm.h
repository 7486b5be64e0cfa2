/* SPDX-License-Identifier: BSD-2-Clause */
/* The shared-memory segment: made by the master before the first fork, it
 * outlives every worker. One slot per worker (pid, state, heartbeat,
 * counters). A slot is written only by its worker and read by the master,
 * with relaxed atomics: each field is a counter or a state on its own. */
#ifndef AP_SHM_H
#define AP_SHM_H

#include <stdint.h>
#include <sys/types.h>

#include "metrics.h"

typedef enum {
    AP_WORKER_FREE = 0,
    AP_WORKER_STARTING,  /* forked; not ready yet */
    AP_WORKER_READY,     /* accepting, and its database pool and schema cache are usable */
    AP_WORKER_DRAINING,  /* finishing what it holds before it exits */
    AP_WORKER_UNHEALTHY, /* was ready; its database pool is not usable now */
    AP_WORKER_BACKOFF,   /* died young; the master restarts it after a back-off */
} ap_worker_state_t;

typedef struct ap_shm_slot_s {
    int32_t pid;
    uint32_t state;           /* ap_worker_state_t */
    uint64_t started_ms;      /* wall clock */
    uint64_t heartbeat_ms;    /* CLOCK_MONOTONIC, which all processes share */
    uint64_t requests;        /* responses finished */
    uint64_t in_flight;       /* requests being handled */
    uint64_t connections;     /* open client connections */
    uint64_t bytes_out;       /* response bytes handed to the kernel */
    uint32_t db_state;        /* ap_db_state_t */
    uint32_t schema_loaded;   /* the schema cache is usable */
    uint64_t db_since_ms;     /* CLOCK_MONOTONIC: when db_state last changed */
    uint64_t schema_reloads;  /* schema cache loads after the first */
    uint64_t db_errors;       /* failed connection attempts and broken connections */
    uint64_t rss_bytes;       /* written by the master, from /proc */
    int32_t id;               /* the worker's number */
    uint32_t restarts;        /* written by the master */
    char last_reason[16];     /* written by the master: why it was last restarted */
    uint64_t db_conns[4];     /* pool connections: idle, busy, connecting, down */
    ap_metrics_t metrics;
} __attribute__((aligned(64))) ap_shm_slot_t;

/* Why the master started a worker in place of another. */
typedef enum {
    AP_RESTART_CRASH,
    AP_RESTART_TIMEOUT,
    AP_RESTART_UNHEALTHY,
    AP_RESTART_MEMORY,
    AP_RESTART_MAX_REQUESTS,
    AP_RESTART_RELOAD,
    AP_RESTART_NREASONS
} ap_restart_reason_t;

extern const char *const ap_restart_reason_names[AP_RESTART_NREASONS];

/* The index of a reason's name, or -1. */
int ap_restart_reason_index(const char *name);

typedef enum {
    AP_DB_NONE = 0,  /* no database configured */
    AP_DB_CONNECTING, /* never connected yet */
    AP_DB_HEALTHY,   /* at least one pool connection is up */
    AP_DB_UNHEALTHY, /* no connection could be made */
} ap_db_state_t;

/* A session-ticket key: its name (sent in clear in each ticket, to find
 * the key again), an AES-256 key that seals the session and an
 * HMAC-SHA256 key that authenticates it. */
typedef struct ap_ticket_key_s {
    uint8_t name[16];
    uint8_t aes_key[32];
    uint8_t hmac_key[32];
} ap_ticket_key_t;

/* The ticket keys every worker uses, so that a session sealed by one
 * worker opens on any other. keys[0] seals new tickets; keys[1], the one
 * it replaced, still opens tickets issued before the last rotation. Only
 * the master writes, under a sequence lock (seq odd while it writes). */
typedef struct ap_ticket_keys_s {
    uint32_t seq;
    uint32_t n; /* keys held: 0, 1 or 2 */
    ap_ticket_key_t keys[2];
} ap_ticket_keys_t;

typedef struct ap_shm_s {
    uint32_t magic;
    uint32_t nslots;
    uint32_t draining; /* set by `apiary -s drain`: every /ready fails */
    uint32_t log_generation; /* bumped by the master on USR1: workers reopen their logs */
    int32_t master_pid;
    /* Written by the master only, for status views; the sequence number
     * is odd while an update is in progress (readers retry). */
    uint32_t master_seq;
    uint64_t master_started_ms; /* wall clock */
    uint64_t reload_at_ms;      /* wall clock of the last reload outcome */
    char config_path[256];
    char reload_result[16];     /* "", "ok", "failed", "in progress" */
    char reload_message[512];
    /* What exited workers counted, so that totals survive them. */
    ap_metrics_t retired;
    uint64_t retired_bytes_out;
    uint64_t retired_schema_reloads;
    uint64_t restarts[AP_RESTART_NREASONS];
    ap_ticket_keys_t tickets;
    ap_shm_slot_t slots[];
} ap_shm_t;

/* Maps a shared anonymous segment with nslots zeroed slots; NULL with errno
 * set on failure. */
ap_shm_t *ap_shm_create(uint32_t nslots);
void ap_shm_destroy(ap_shm_t *shm);

/* The master: a new random key seals tickets from now on; the current
 * one becomes the previous, and the previous is forgotten. Returns 0, or
 * -errno when the kernel gives no random bytes (the keys are unchanged). */
int ap_shm_tickets_rotate(ap_shm_t *shm);

/* A worker: copies the keys (current first) into out and returns how
 * many there are; retries while the master writes, and gives 0 if the
 * master never finishes (it died in the middle). */
uint32_t ap_shm_tickets_get(ap_shm_t *shm, ap_ticket_key_t out[2]);

#define ap_shm_load(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define ap_shm_store(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)
#define ap_shm_add(field, v) __atomic_fetch_add(&(field), (v), __ATOMIC_RELAXED)
#define ap_shm_sub(field, v) __atomic_fetch_sub(&(field), (v), __ATOMIC_RELAXED)

#endif
