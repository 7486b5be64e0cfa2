/* SPDX-License-Identifier: BSD-2-Clause */
/* The shared-memory segment. */
#include "shm.h"

#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

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
