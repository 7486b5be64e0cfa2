/* SPDX-License-Identifier: BSD-2-Clause */
/* The status view: the master and every worker, read from shared memory,
 * as JSON (apiary status --json, the admin /status) or as a table. */
#ifndef AP_STATUS_H
#define AP_STATUS_H

#include "buf.h"
#include "shm.h"

/* Appends the JSON document:
 * {"master":{...},"workers":[{"id",...},...]}. */
void ap_status_json(ap_buf_t *out, ap_shm_t *shm);

/* Appends a table for people, made from that JSON document. Returns -1
 * when json is not a status document. */
int ap_status_table(ap_buf_t *out, const char *json);

/* Number of workers ready to serve (and not draining). */
int ap_status_ready_workers(ap_shm_t *shm);

const char *ap_status_state_name(uint32_t state);
const char *ap_status_db_name(uint32_t state);

#endif
