/* SPDX-License-Identifier: BSD-2-Clause */
/* The shared table of per-client token buckets and connection counts. */
#include "ratelimit.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

#define AP_RL_MAGIC 0x41524c31u /* "ARL1" */

const char *const ap_rl_kind_names[AP_RL_NKINDS] = {"api", "rpc", "static"};

typedef struct rl_entry {
    uint8_t key[16];
    uint64_t last_us;           /* last use; 0: the entry is free */
    uint64_t tat[AP_RL_NKINDS]; /* GCRA: theoretical arrival time, per bucket */
    uint32_t conns;             /* open connections */
    uint32_t pad;
} __attribute__((aligned(64))) rl_entry_t;

typedef struct rl_set {
    uint32_t lock; /* 0, or the pid of the holder */
    uint8_t pad[60];
    rl_entry_t e[AP_RL_WAYS];
} __attribute__((aligned(64))) rl_set_t;

struct ap_rl_table_s {
    uint32_t magic;
    uint32_t pad0;
    uint64_t nsets;
    uint64_t mapped; /* bytes */
    uint64_t sipkey[2];
    uint64_t used, evictions, steals; /* atomics */
    uint8_t pad[8];
    rl_set_t sets[];
};

ap_rl_table_t *ap_rl_table;

/* --- rates --- */

int ap_rate_parse(const char *text, ap_rate_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strcmp(p, "off") == 0)
        return 0;
    uint64_t n = 0;
    if (*p < '0' || *p > '9') {
        *why = "expected off or a rate such as 10r/s, 30r/m or 100r/h, with an optional burst=N";
        return -1;
    }
    while (*p >= '0' && *p <= '9') {
        n = n * 10 + (uint64_t)(*p++ - '0');
        if (n > 1000000) {
            *why = "a rate is at most 1000000 requests per unit";
            return -1;
        }
    }
    if (n == 0) {
        *why = "a rate of 0 would refuse everything: use a rate of at least 1, or off";
        return -1;
    }
    uint64_t unit_us;
    if (strncmp(p, "r/s", 3) == 0)
        unit_us = 1000000ULL;
    else if (strncmp(p, "r/m", 3) == 0)
        unit_us = 60ULL * 1000000;
    else if (strncmp(p, "r/h", 3) == 0)
        unit_us = 3600ULL * 1000000;
    else {
        *why = "expected off or a rate such as 10r/s, 30r/m or 100r/h, with an optional burst=N";
        return -1;
    }
    out->unit = p[2];
    p += 3;
    uint64_t burst = n;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncmp(p, "burst=", 6) == 0) {
        p += 6;
        burst = 0;
        if (*p < '0' || *p > '9') {
            *why = "burst must be a number of requests";
            return -1;
        }
        while (*p >= '0' && *p <= '9') {
            burst = burst * 10 + (uint64_t)(*p++ - '0');
            if (burst > 1000000) {
                *why = "burst is at most 1000000";
                return -1;
            }
        }
        if (burst == 0) {
            *why = "burst must be at least 1";
            return -1;
        }
        while (*p == ' ' || *p == '\t')
            p++;
    }
    if (*p != '\0') {
        *why = "unexpected text after the rate (expected burst=N)";
        return -1;
    }
    out->count = (uint32_t)n;
    out->burst = (uint32_t)burst;
    out->interval_us = unit_us / n;
    if (out->interval_us == 0)
        out->interval_us = 1;
    return 0;
}

void ap_rate_describe(const ap_rate_t *r, char *out, size_t size)
{
    const char *unit = r->unit == 'm' ? "minute" : r->unit == 'h' ? "hour" : "second";
    snprintf(out, size, "%u requests per %s, burst %u", r->count, unit, r->burst);
}

/* --- SipHash-2-4 of a 16-byte key --- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t siphash16(const uint64_t k[2], const uint8_t in[16])
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
    for (int i = 0; i < 2; i++) {
        uint64_t m;
        memcpy(&m, in + 8 * i, 8);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = 16ULL << 56;
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* --- the table --- */

static pid_t self_pid;

static void after_fork_child(void)
{
    self_pid = 0;
}

static uint32_t me(void)
{
    if (self_pid == 0)
        self_pid = getpid();
    return (uint32_t)self_pid;
}

ap_rl_table_t *ap_rl_create(uint64_t entries)
{
    uint64_t nsets = (entries + AP_RL_WAYS - 1) / AP_RL_WAYS;
    if (nsets == 0)
        nsets = 1;
    size_t size = sizeof(ap_rl_table_t) + nsets * sizeof(rl_set_t);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    ap_rl_table_t *t = p;
    t->magic = AP_RL_MAGIC;
    t->nsets = nsets;
    t->mapped = size;
    if (getrandom(t->sipkey, sizeof(t->sipkey), 0) != (ssize_t)sizeof(t->sipkey)) {
        /* Unpredictable enough for a hash seed when getrandom is missing. */
        t->sipkey[0] = ap_clock_mono_us() ^ ((uint64_t)getpid() << 32);
        t->sipkey[1] = ap_clock_wall_ms() * 0x9e3779b97f4a7c15ULL;
    }
    static int registered;
    if (!registered) {
        pthread_atfork(NULL, NULL, after_fork_child);
        registered = 1;
    }
    return t;
}

void ap_rl_destroy(ap_rl_table_t *t)
{
    if (t)
        munmap(t, t->mapped);
}

uint64_t ap_rl_capacity(const ap_rl_table_t *t)
{
    return t->nsets * AP_RL_WAYS;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* The critical sections are a few dozen instructions: spin briefly, then
 * yield; a holder that keeps the lock for AP_RL_LOCK_STEAL_MS died or was
 * stopped inside one, and loses it (the entries of that set may then hold
 * a half-made update: a bucket off by one request, never a crash). */
static void set_lock(ap_rl_table_t *t, rl_set_t *s)
{
    uint32_t self = me();
    uint64_t since = 0;
    for (unsigned spins = 0;; spins++) {
        uint32_t expect = 0;
        if (__atomic_compare_exchange_n(&s->lock, &expect, self, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return;
        if (spins < 100) {
            cpu_relax();
            continue;
        }
        sched_yield();
        uint64_t now = ap_clock_mono_ms();
        if (since == 0) {
            since = now;
            continue;
        }
        if (now - since < AP_RL_LOCK_STEAL_MS &&
            !(expect != 0 && kill((pid_t)expect, 0) < 0 && errno == ESRCH))
            continue;
        if (__atomic_compare_exchange_n(&s->lock, &expect, self, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
            __atomic_fetch_add(&t->steals, 1, __ATOMIC_RELAXED);
            return;
        }
        since = 0;
    }
}

static void set_unlock(rl_set_t *s)
{
    __atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
}

/* IPv4 as ::ffff:a.b.c.d, IPv6 as its /64: one key per client network. */
static void make_key(const ap_addr_t *a, uint8_t key[16])
{
    memset(key, 0, 16);
    if (a->family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, a->a, 4);
    } else {
        memcpy(key, a->a, 8);
    }
}

static rl_set_t *set_of(ap_rl_table_t *t, const uint8_t key[16])
{
    return &t->sets[siphash16(t->sipkey, key) % t->nsets];
}

/* The entry for key in its locked set; with create, a free or evicted one
 * when it has none (NULL otherwise). */
static rl_entry_t *find(ap_rl_table_t *t, rl_set_t *s, const uint8_t key[16], int create,
                        uint64_t now_us)
{
    rl_entry_t *free_e = NULL, *lru = NULL, *lru_idle = NULL;
    for (int i = 0; i < AP_RL_WAYS; i++) {
        rl_entry_t *e = &s->e[i];
        if (e->last_us == 0) {
            if (free_e == NULL)
                free_e = e;
            continue;
        }
        if (memcmp(e->key, key, 16) == 0)
            return e;
        if (lru == NULL || e->last_us < lru->last_us)
            lru = e;
        if (e->conns == 0 && (lru_idle == NULL || e->last_us < lru_idle->last_us))
            lru_idle = e;
    }
    if (!create)
        return NULL;
    rl_entry_t *e = free_e;
    if (e == NULL) {
        /* Full: forget the least recently seen client, one without open
         * connections if there is one (its count would be lost). */
        e = lru_idle ? lru_idle : lru;
        __atomic_fetch_add(&t->evictions, 1, __ATOMIC_RELAXED);
    } else {
        __atomic_fetch_add(&t->used, 1, __ATOMIC_RELAXED);
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, 16);
    e->last_us = now_us ? now_us : 1;
    return e;
}

void ap_rl_take(ap_rl_table_t *t, const ap_addr_t *a, int kind, const ap_rate_t *rate,
                uint64_t now_us, ap_rl_result_t *res)
{
    uint8_t key[16];
    make_key(a, key);
    rl_set_t *s = set_of(t, key);
    /* GCRA: a bucket of `burst` tokens refilled one per interval is a
     * single time, the theoretical arrival time (tat) of the next
     * request; a request is allowed while tat is at most tau ahead. */
    uint64_t T = rate->interval_us;
    uint64_t tau = T * (uint64_t)(rate->burst - 1);
    res->limit = rate->burst;

    set_lock(t, s);
    rl_entry_t *e = find(t, s, key, 1, now_us);
    e->last_us = now_us ? now_us : 1;
    uint64_t tat = e->tat[kind] > now_us ? e->tat[kind] : now_us;
    if (tat - now_us > tau) {
        set_unlock(s);
        res->allowed = 0;
        res->remaining = 0;
        res->retry_after_s = (tat - now_us - tau + 999999) / 1000000;
        if (res->retry_after_s == 0)
            res->retry_after_s = 1;
        res->reset_s = (tat - now_us + 999999) / 1000000;
        return;
    }
    tat += T;
    e->tat[kind] = tat;
    set_unlock(s);
    res->allowed = 1;
    res->retry_after_s = 0;
    res->remaining = (uint32_t)((now_us + tau + T - tat) / T);
    res->reset_s = (tat - now_us + 999999) / 1000000;
}

int ap_rl_conn_open(ap_rl_table_t *t, const ap_addr_t *a, uint32_t limit, uint64_t now_us)
{
    uint8_t key[16];
    make_key(a, key);
    rl_set_t *s = set_of(t, key);
    set_lock(t, s);
    rl_entry_t *e = find(t, s, key, 1, now_us);
    e->last_us = now_us ? now_us : 1;
    int rc = -1;
    if (e->conns < limit) {
        e->conns++;
        rc = 0;
    }
    set_unlock(s);
    return rc;
}

void ap_rl_conn_close(ap_rl_table_t *t, const ap_addr_t *a, uint64_t now_us)
{
    uint8_t key[16];
    make_key(a, key);
    rl_set_t *s = set_of(t, key);
    set_lock(t, s);
    rl_entry_t *e = find(t, s, key, 0, now_us);
    if (e && e->conns > 0) {
        e->conns--;
        e->last_us = now_us ? now_us : 1;
    }
    set_unlock(s);
}

void ap_rl_worker_died(ap_rl_table_t *t, pid_t pid)
{
    for (uint64_t i = 0; i < t->nsets; i++) {
        rl_set_t *s = &t->sets[i];
        uint32_t expect = (uint32_t)pid;
        __atomic_compare_exchange_n(&s->lock, &expect, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
        set_lock(t, s);
        for (int k = 0; k < AP_RL_WAYS; k++)
            s->e[k].conns = 0;
        set_unlock(s);
    }
}

void ap_rl_stats(ap_rl_table_t *t, ap_rl_stats_t *st)
{
    st->used = __atomic_load_n(&t->used, __ATOMIC_RELAXED);
    st->evictions = __atomic_load_n(&t->evictions, __ATOMIC_RELAXED);
    st->steals = __atomic_load_n(&t->steals, __ATOMIC_RELAXED);
}
