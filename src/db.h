/* SPDX-License-Identifier: BSD-2-Clause */
/* A worker's database side: the pool, the schema cache and its reload
 * listener, and what /ready reports. */
#ifndef AP_DB_H
#define AP_DB_H

#include <uv.h>

#include "config.h"
#include "pg_listen.h"
#include "pg_pool.h"
#include "schema.h"
#include "shm.h"

typedef struct ap_db_s {
    uv_loop_t *loop;
    const ap_config_t *conf;
    ap_shm_slot_t *slot;
    ap_pg_pool_t *pool;
    ap_pg_listen_t *listen;
    ap_schema_t *schema;   /* NULL until the first load */
    char *schemas;         /* the exposed schemas, comma-separated, no spaces */
    char *default_schema;  /* the first of them */
    uv_timer_t retry;      /* a failed schema load is retried */
    void (*on_change)(void *data); /* readiness may have changed */
    void *on_change_data;
    unsigned loading : 1, reload_pending : 1, closing : 1;
} ap_db_t;

/* Starts worker id's pool and listener for conf's [database]; NULL when
 * no database is configured. */
ap_db_t *ap_db_new(uv_loop_t *loop, const ap_config_t *conf, ap_shm_slot_t *slot, int id);

/* Loads the schema cache again (HUP, NOTIFY). */
void ap_db_reload_schema(ap_db_t *db);

/* 1 when requests can be served: the pool reaches PostgreSQL and the
 * schema cache is loaded; else 0 with *why set. */
int ap_db_ready(const ap_db_t *db, const char **why);

/* Closes everything; memory is freed as the handles close. */
void ap_db_close(ap_db_t *db);

#endif
