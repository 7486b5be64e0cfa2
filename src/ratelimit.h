/* SPDX-License-Identifier: BSD-2-Clause */
/* Per-client limits shared by every worker: token buckets (as GCRA, one
 * timestamp per bucket) and connection counts, kept per client address
 * (IPv4 /32, IPv6 /64) in a fixed-size table of shared memory that the
 * master maps before the first fork.
 *
 * The table is set-associative: an address hashes (SipHash with a key
 * drawn at start, so clients cannot aim at one set) to a set of
 * AP_RL_WAYS entries guarded by one spinlock. A full set evicts its least
 * recently used entry (preferring one without open connections), so the
 * memory is fixed and nothing fails when more clients come than fit: the
 * oldest are forgotten. The lock word holds its owner's pid: a holder
 * that died (or stopped) for AP_RL_LOCK_STEAL_MS loses it, so a crashed
 * worker cannot wedge the others; the master also clears a dead worker's
 * locks when it reaps it. */
#ifndef AP_RATELIMIT_H
#define AP_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "netaddr.h"

#define AP_RL_WAYS 8
#define AP_RL_LOCK_STEAL_MS 50

/* Which bucket a request draws from. */
enum { AP_RL_API, AP_RL_RPC, AP_RL_STATIC, AP_RL_NKINDS };

extern const char *const ap_rl_kind_names[AP_RL_NKINDS];

/* "100r/s burst=200": one request per interval, up to burst at once. */
typedef struct ap_rate_s {
    uint64_t interval_us; /* 0: no limit */
    uint32_t burst;       /* bucket size: requests allowed at once */
    uint32_t count;       /* N of "Nr/s" as written */
    char unit;            /* 's', 'm' or 'h' */
} ap_rate_t;

/* Parses "off" or "Nr/s", "Nr/m", "Nr/h" with an optional " burst=B"
 * (B >= 1; by default N). 0, or -1 with *why set. */
int ap_rate_parse(const char *text, ap_rate_t *out, const char **why);

/* "10 requests per second, burst 20" into out. */
void ap_rate_describe(const ap_rate_t *r, char *out, size_t size);

typedef struct ap_rl_table_s ap_rl_table_t;

/* The table of this process tree: set by the master, inherited by the
 * workers. NULL until ap_rl_create. */
extern ap_rl_table_t *ap_rl_table;

/* Maps a zeroed table of at least `entries` entries (rounded up to a
 * whole number of sets). NULL with errno set on failure. */
ap_rl_table_t *ap_rl_create(uint64_t entries);
void ap_rl_destroy(ap_rl_table_t *t);

/* Entries the table holds (its fixed capacity). */
uint64_t ap_rl_capacity(const ap_rl_table_t *t);

typedef struct ap_rl_result_s {
    int allowed;
    uint32_t limit;         /* the bucket size */
    uint32_t remaining;     /* requests still allowed right now */
    uint64_t reset_s;       /* seconds until the bucket is full again */
    uint64_t retry_after_s; /* when refused: seconds until one is allowed */
} ap_rl_result_t;

/* Takes one token from a's bucket of this kind (now_us: CLOCK_MONOTONIC,
 * which every process shares), creating its entry if needed. */
void ap_rl_take(ap_rl_table_t *t, const ap_addr_t *a, int kind, const ap_rate_t *rate,
                uint64_t now_us, ap_rl_result_t *res);

/* Counts a new connection from a: 0 when it is within limit (then counted:
 * ap_rl_conn_close must follow), -1 when a already has limit connections
 * (nothing counted). */
int ap_rl_conn_open(ap_rl_table_t *t, const ap_addr_t *a, uint32_t limit, uint64_t now_us);
void ap_rl_conn_close(ap_rl_table_t *t, const ap_addr_t *a, uint64_t now_us);

/* The master, after a worker died without closing its connections: its
 * locks are released and every connection count is cleared (the counts
 * of the dead worker's connections cannot be told apart; undercounting
 * for a while is the side that never locks a client out). */
void ap_rl_worker_died(ap_rl_table_t *t, pid_t pid);

typedef struct ap_rl_stats_s {
    uint64_t used;      /* entries in use */
    uint64_t evictions; /* entries forgotten to make room */
    uint64_t steals;    /* locks taken from a dead or stuck holder */
} ap_rl_stats_t;

void ap_rl_stats(ap_rl_table_t *t, ap_rl_stats_t *st);

#endif
