/* SPDX-License-Identifier: BSD-2-Clause */
/* A worker's database side. */
#include "db.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

#define SCHEMA_RETRY_MS 1000

static void load_schema(ap_db_t *db);

static void on_retry(uv_timer_t *t)
{
    load_schema(t->data);
}

static void on_notify(void *data)
{
    load_schema(data);
}

static void on_schema(ap_pg_query_t *q, ap_pg_status_t st, PGresult *res)
{
    ap_db_t *db = q->data;
    db->loading = 0;
    if (db->closing)
        return;
    const char *why = NULL;
    ap_schema_t *s = NULL;
    if (st == AP_PG_DEADLINE)
        why = "the catalog query took longer than database.request_timeout";
    else if (st != AP_PG_OK)
        why = "no usable database connection";
    else if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        why = PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : "unexpected result";
    else
        s = ap_schema_from_json(PQgetvalue(res, 0, 0), &why);
    if (s == NULL) {
        ap_log(AP_LOG_ERR, "loading the schema cache failed: %s", why);
        /* Without a connection, the pool's recovery triggers the next
         * load; with one, something else failed: try again shortly. */
        if (ap_pg_pool_healthy(db->pool))
            uv_timer_start(&db->retry, on_retry, SCHEMA_RETRY_MS, 0);
        return;
    }
    int first = db->schema == NULL;
    ap_schema_free(db->schema);
    db->schema = s;
    if (!first)
        ap_shm_add(db->slot->schema_reloads, 1);
    ap_shm_store(db->slot->schema_loaded, 1);
    ap_log(first ? AP_LOG_INFO : AP_LOG_NOTICE,
           "schema cache %s: %zu tables and views, %zu functions in %s",
           first ? "loaded" : "reloaded", s->ntables, s->nfuncs, db->schemas);
    if (db->on_change)
        db->on_change(db->on_change_data);
    if (db->reload_pending) {
        db->reload_pending = 0;
        load_schema(db);
    }
}

static void load_schema(ap_db_t *db)
{
    if (db->closing)
        return;
    if (db->loading) {
        /* The catalog may have changed after the running load read it. */
        db->reload_pending = 1;
        return;
    }
    db->loading = 1;
    ap_pg_query_t *q = ap_pg_query_new(1);
    q->sql = ap_xstrdup(ap_schema_query);
    q->params[0] = ap_xstrdup(db->schemas);
    q->done = on_schema;
    q->data = db;
    ap_pg_submit(db->pool, q);
}

void ap_db_reload_schema(ap_db_t *db)
{
    load_schema(db);
}

static void on_pool_healthy(void *data)
{
    ap_db_t *db = data;
    /* The first connection loads the cache; after an outage the catalog
     * may have changed too. */
    load_schema(db);
}

/* A test hook: APIARY_TEST_BREAK_DB_WORKER=N gives worker N a database
 * address that cannot work, so that the tests can watch the master
 * replace a worker whose pool alone is unhealthy. */
static const char *pool_uri(const ap_config_t *conf, int id)
{
    const char *v = getenv("APIARY_TEST_BREAK_DB_WORKER");
    if (v && *v && atoi(v) == id && strspn(v, "0123456789") == strlen(v)) {
        ap_log(AP_LOG_WARN, "APIARY_TEST_BREAK_DB_WORKER: this worker's pool is broken on purpose");
        return "postgresql://apiary-test-hook@127.0.0.1:1/broken";
    }
    return conf->db_uri;
}

ap_db_t *ap_db_new(uv_loop_t *loop, const ap_config_t *conf, ap_shm_slot_t *slot, int id)
{
    if (conf->db_uri == NULL) {
        ap_shm_store(slot->db_state, AP_DB_NONE);
        return NULL;
    }
    ap_db_t *db = ap_xcalloc(1, sizeof(*db));
    db->loop = loop;
    db->conf = conf;
    db->slot = slot;
    /* "api, public" -> "api,public" */
    db->schemas = ap_xmalloc(strlen(conf->api_schemas) + 1);
    char *o = db->schemas;
    for (const char *p = conf->api_schemas; *p; p++)
        if (*p != ' ' && *p != '\t')
            *o++ = *p;
    *o = '\0';
    size_t n = strcspn(db->schemas, ",");
    db->default_schema = ap_xstrndup(db->schemas, n);
    uv_timer_init(loop, &db->retry);
    db->retry.data = db;
    db->pool = ap_pg_pool_new(loop, conf, pool_uri(conf, id), slot, on_pool_healthy, db);
    db->listen = ap_pg_listen_new(loop, conf->db_listen_uri ? conf->db_listen_uri : conf->db_uri,
                                  conf->db_connect_timeout_ms, on_notify, db);
    return db;
}

int ap_db_ready(const ap_db_t *db, const char **why)
{
    if (!ap_pg_pool_healthy(db->pool)) {
        *why = "PostgreSQL cannot be reached through the database pool";
        return 0;
    }
    if (db->schema == NULL) {
        *why = "the schema cache is not loaded yet";
        return 0;
    }
    return 1;
}

static void free_db(uv_handle_t *h)
{
    ap_db_t *db = h->data;
    ap_schema_free(db->schema);
    free(db->schemas);
    free(db->default_schema);
    free(db);
}

void ap_db_close(ap_db_t *db)
{
    if (db == NULL || db->closing)
        return;
    db->closing = 1;
    ap_pg_listen_close(db->listen);
    ap_pg_pool_close(db->pool);
    uv_close((uv_handle_t *)&db->retry, free_db);
}
