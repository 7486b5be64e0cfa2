/* SPDX-License-Identifier: BSD-2-Clause */
/* The shared-memory segment. */
#include "shm.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#define AP_SHM_MAGIC 0x41504931u /* "API1" */

static size_t shm_size(uint32_t nslots)
{
    return sizeof(ap_shm_t) + (size_t)nslots * sizeof(ap_shm_slot_t);
}

ap_shm_t *ap_shm_create(uint32_t nslots)
{
    /* Anonymous shared memory is inherited by fork and needs no name, no
     * file and no cleanup if the master is killed. */
    void *p = mmap(NULL, shm_size(nslots), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                   0);
    if (p == MAP_FAILED)
        return NULL;
    ap_shm_t *shm = p;
    shm->magic = AP_SHM_MAGIC;
    shm->nslots = nslots;
    return shm;
}

void ap_shm_destroy(ap_shm_t *shm)
{
    if (shm)
        munmap(shm, shm_size(shm->nslots));
}

const char *const ap_restart_reason_names[AP_RESTART_NREASONS] = {
    "crash", "timeout", "unhealthy", "memory", "max_requests", "reload"};

int ap_restart_reason_index(const char *name)
{
    for (int i = 0; name && i < AP_RESTART_NREASONS; i++)
        if (strcmp(name, ap_restart_reason_names[i]) == 0)
            return i;
    return -1;
}

int ap_shm_tickets_rotate(ap_shm_t *shm)
{
    ap_ticket_key_t k;
    size_t got = 0;
    while (got < sizeof(k)) {
        ssize_t n = getrandom((char *)&k + got, sizeof(k) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        got += (size_t)n;
    }
    ap_ticket_keys_t *t = &shm->tickets;
    __atomic_add_fetch(&t->seq, 1, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    if (t->n > 0)
        t->keys[1] = t->keys[0];
    t->keys[0] = k;
    t->n = t->n < 2 ? t->n + 1 : 2;
    __atomic_add_fetch(&t->seq, 1, __ATOMIC_RELEASE);
    /* The key is in the segment now; leave no copy on the stack. */
    explicit_bzero(&k, sizeof(k));
    return 0;
}

uint32_t ap_shm_tickets_get(ap_shm_t *shm, ap_ticket_key_t out[2])
{
    ap_ticket_keys_t *t = &shm->tickets;
    /* The master writes a few stores at a time; a master killed in the
     * middle must not hang its workers, which then seal no ticket. */
    for (int tries = 0; tries < 100000; tries++) {
        uint32_t seq = __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE);
        if (seq & 1)
            continue;
        uint32_t n = __atomic_load_n(&t->n, __ATOMIC_RELAXED);
        memcpy(out, (const void *)t->keys, sizeof(t->keys));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&t->seq, __ATOMIC_RELAXED) == seq)
            return n > 2 ? 2 : n;
    }
    return 0;
}
