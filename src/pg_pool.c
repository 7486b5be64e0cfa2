/* SPDX-License-Identifier: BSD-2-Clause */
/* The worker's PostgreSQL pool. */
#include "pg_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "pg_watch.h"

/* Reconnect back-off: a database that is down is retried quickly at
 * first, then every RECONNECT_MAX_MS. */
#define RECONNECT_FIRST_MS 100
#define RECONNECT_MAX_MS 2000
/* A cancelled statement whose result has not come back in this long has a
 * connection we no longer trust: it is closed. */
#define CANCEL_GRACE_MS 5000
/* With no successful round trip for this long, the pool sends "select 1":
 * behind pgBouncer a connection can be up while PostgreSQL is not. */
#define PING_INTERVAL_MS 1000

/* One round trip: the settings, [api] pre_request when set, the
 * statement, the response settings when asked for, then Sync. Without an
 * explicit BEGIN the statements up to Sync form one implicit transaction,
 * so set_config(..., true) holds for the statement and ends with it, an
 * error anywhere rolls everything back (the statements after it are
 * skipped), and the server connection goes back to pgBouncer's pool at
 * Sync. The role comes first: a role that cannot be switched to fails the
 * transaction before anything runs. */
static const char settings_sql[] =
    "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), "
    "set_config('request.method', $3, true), set_config('request.path', $4, true), "
    "set_config('request.headers', $5, true), set_config('request.cookies', $6, true), "
    "set_config('statement_timeout', $7, true), set_config('transaction_read_only', $8, true)";
#define SETTINGS_NPARAMS 8

static const char response_sql[] =
    "select current_setting('response.headers', true), current_setting('response.status', true)";

typedef enum { PC_DOWN = 0, PC_CONNECTING, PC_READY, PC_BUSY } pc_state_t;

typedef struct ap_pg_conn_s {
    ap_pg_pool_t *pool;
    PGconn *pg;
    ap_pg_watch_t watch;
    pc_state_t state;
    uint64_t connect_deadline;
    uint64_t retry_at;
    uint64_t backoff_ms;
    ap_pg_query_t *q;
    int flushing;
} pg_conn_t;

struct ap_pg_pool_s {
    uv_loop_t *loop;
    const ap_config_t *conf;
    ap_shm_slot_t *slot;
    pg_conn_t *conns;
    size_t nconns;
    ap_pg_query_t *qhead, *qtail;
    size_t qlen;
    uv_timer_t timer;
    char statement_timeout[32];
    void (*on_healthy)(void *);
    void *on_healthy_data;
    int healthy;
    int ever_connected;
    int closing;
    int db_ok;          /* the last round trip (or ping) reached PostgreSQL */
    uint64_t last_ok;   /* monotonic ms of the last successful round trip */
    ap_pg_query_t *ping; /* the ping in flight */
    uint64_t down_since; /* monotonic ms: when the pool stopped being healthy */
    const char *uri;
};

static void conn_connect(pg_conn_t *c);
static void conn_broken(pg_conn_t *c, const char *why);
static void pool_rearm(ap_pg_pool_t *p);
static void take_queued(ap_pg_pool_t *p);

ap_pg_query_t *ap_pg_query_new(int nparams)
{
    ap_pg_query_t *q = ap_xcalloc(1, sizeof(*q));
    q->nparams = nparams;
    q->params = ap_xcalloc((size_t)(nparams > 0 ? nparams : 1), sizeof(char *));
    return q;
}

static void query_free(ap_pg_query_t *q)
{
    free(q->sql);
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i]);
    free(q->params);
    for (int i = 0; i < AP_PG_NSETTINGS; i++)
        free(q->settings[i]);
    if (q->result)
        PQclear(q->result);
    if (q->response)
        PQclear(q->response);
    if (q->free_data)
        q->free_data(q->data);
    free(q);
}

/* Calls done once, for an owner still waiting; first adds the time since
 * the submission to the owner's db_us. */
static void answer(ap_pg_query_t *q, ap_pg_status_t st, PGresult *res)
{
    if (q->abandoned || q->answered)
        return;
    q->answered = 1;
    if (q->db_us)
        *q->db_us += ap_clock_mono_us() - q->submitted_us;
    q->done(q, st, res);
}

/* Hands the outcome to the owner, unless it left, and frees the query. */
static void query_finish(ap_pg_query_t *q, ap_pg_status_t st)
{
    answer(q, st, st == AP_PG_OK ? q->result : NULL);
    query_free(q);
}

/* --- the wait queue --- */

static void queue_push(ap_pg_pool_t *p, ap_pg_query_t *q, int front)
{
    q->queued = 1;
    q->prev = q->next = NULL;
    if (p->qhead == NULL) {
        p->qhead = p->qtail = q;
    } else if (front) {
        q->next = p->qhead;
        p->qhead->prev = q;
        p->qhead = q;
    } else {
        q->prev = p->qtail;
        p->qtail->next = q;
        p->qtail = q;
    }
    p->qlen++;
}

static void queue_remove(ap_pg_pool_t *p, ap_pg_query_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        p->qhead = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        p->qtail = q->prev;
    q->queued = 0;
    q->next = q->prev = NULL;
    p->qlen--;
}

static void fail_queue(ap_pg_pool_t *p, ap_pg_status_t st)
{
    while (p->qhead) {
        ap_pg_query_t *q = p->qhead;
        queue_remove(p, q);
        query_finish(q, st);
    }
}

/* --- health --- */

static int connecting_count(const ap_pg_pool_t *p)
{
    int n = 0;
    for (size_t i = 0; i < p->nconns; i++)
        if (p->conns[i].state == PC_CONNECTING)
            n++;
    return n;
}

/* Whether requests should get 503 at once rather than wait: PostgreSQL
 * does not answer through connections that are up (db_ok), or no
 * connection has been up for connect_timeout. A pgBouncer restart, which
 * drops every connection for a moment, is waited out (within
 * pool_timeout). */
static int given_up(const ap_pg_pool_t *p)
{
    if (p->healthy)
        return 0;
    if (!p->db_ok)
        return 1;
    if (!p->ever_connected)
        return connecting_count(p) == 0;
    return ap_clock_mono_ms() - p->down_since >= p->conf->db_connect_timeout_ms;
}

static void update_health(ap_pg_pool_t *p)
{
    int up = 0;
    for (size_t i = 0; i < p->nconns; i++)
        if (p->conns[i].state == PC_READY || p->conns[i].state == PC_BUSY)
            up = 1;
    up = up && p->db_ok;
    if (up == p->healthy && p->ever_connected)
        return;
    /* Once unhealthy, a pool stays so until it works: reconnect attempts
     * must not restart the unhealthy_grace clock. */
    uint32_t was = ap_shm_load(p->slot->db_state);
    uint32_t state = up                                                         ? AP_DB_HEALTHY
                     : was == AP_DB_UNHEALTHY || p->ever_connected || !connecting_count(p)
                         ? AP_DB_UNHEALTHY
                         : AP_DB_CONNECTING;
    if (ap_shm_load(p->slot->db_state) != state) {
        ap_shm_store(p->slot->db_state, state);
        ap_shm_store(p->slot->db_since_ms, ap_clock_mono_ms());
    }
    if (up == p->healthy)
        return;
    p->healthy = up;
    if (!up)
        p->down_since = ap_clock_mono_ms();
    if (up) {
        p->ever_connected = 1;
        ap_log(AP_LOG_INFO, "database pool connected");
        if (p->on_healthy)
            p->on_healthy(p->on_healthy_data);
    } else if (!p->closing) {
        ap_log(AP_LOG_ERR, "database pool has no connection");
    }
}

int ap_pg_pool_healthy(const ap_pg_pool_t *p)
{
    return p->healthy;
}

/* --- polling the connection's socket --- */

static void on_poll(uv_poll_t *h, int status, int events);

static void poll_set(pg_conn_t *c, int events)
{
    if (ap_pg_watch_set(&c->watch, c->pg, events) < 0)
        conn_broken(c, "cannot watch the connection's socket");
}

/* --- connecting --- */

static void conn_ready(pg_conn_t *c)
{
    ap_pg_pool_t *p = c->pool;
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        conn_broken(c, "cannot enter pipeline mode");
        return;
    }
    c->state = PC_READY;
    c->backoff_ms = 0;
    /* An idle connection is watched too, to notice the server going away. */
    poll_set(c, UV_READABLE);
    update_health(p);
    take_queued(p);
}

static void connect_step(pg_conn_t *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_OK:
        conn_ready(c);
        return;
    case PGRES_POLLING_READING:
        poll_set(c, UV_READABLE);
        return;
    case PGRES_POLLING_WRITING:
        poll_set(c, UV_WRITABLE);
        return;
    default:
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
}

static void conn_connect(pg_conn_t *c)
{
    ap_pg_pool_t *p = c->pool;
    c->pg = ap_pg_connect_start(p->uri, "apiary");
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_broken(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
        return;
    }
    c->state = PC_CONNECTING;
    /* libpq's connect_timeout does not apply to PQconnectPoll: the pool
     * timer enforces ours. */
    c->connect_deadline = ap_clock_mono_ms() + p->conf->db_connect_timeout_ms;
    connect_step(c);
    pool_rearm(p);
}

/* --- running a query --- */

static void send_query(pg_conn_t *c, ap_pg_query_t *q)
{
    ap_pg_pool_t *p = c->pool;
    if (q->with_settings)
        ap_metrics_pool_wait(&p->slot->metrics, ap_clock_mono_us() - q->submitted_us);
    c->state = PC_BUSY;
    c->q = q;
    q->conn = c;
    q->nulls = 0;
    q->main_index = 0;
    q->response_index = -1;
    int ok = 1, pre = 0;
    if (q->with_settings) {
        const char *vals[SETTINGS_NPARAMS] = {
            q->settings[AP_PG_SET_ROLE],    q->settings[AP_PG_SET_CLAIMS],
            q->settings[AP_PG_SET_METHOD],  q->settings[AP_PG_SET_PATH],
            q->settings[AP_PG_SET_HEADERS], q->settings[AP_PG_SET_COOKIES],
            p->statement_timeout,           q->read_only ? "on" : "off"};
        ok = PQsendQueryParams(c->pg, settings_sql, SETTINGS_NPARAMS, NULL, vals, NULL, NULL, 0);
        q->main_index++;
        pre = q->pre_request && p->conf->api_pre_request_sql;
        if (ok && pre) {
            ok = PQsendQueryParams(c->pg, p->conf->api_pre_request_sql, 0, NULL, NULL, NULL, NULL,
                                   0);
            q->main_index++;
        }
    }
    ok = ok && PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, (const char *const *)q->params,
                                 NULL, NULL, 0);
    /* Reading the response settings back costs a statement: only when
     * something may have set them. */
    if (q->with_settings && (q->with_response || pre)) {
        ok = ok && PQsendQueryParams(c->pg, response_sql, 0, NULL, NULL, NULL, NULL, 0);
        q->response_index = q->main_index + 1;
    }
    ok = ok && PQpipelineSync(c->pg);
    if (!ok) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    int f = PQflush(c->pg);
    if (f < 0) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    /* From here the server may have run it: no retry if the connection
     * breaks (it may have committed). */
    q->sent = 1;
    c->flushing = f == 1;
    poll_set(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE);
    pool_rearm(p);
}

static void take_queued(ap_pg_pool_t *p)
{
    for (size_t i = 0; i < p->nconns && p->qhead; i++) {
        pg_conn_t *c = &p->conns[i];
        if (c->state != PC_READY)
            continue;
        ap_pg_query_t *q = p->qhead;
        queue_remove(p, q);
        send_query(c, q);
    }
}

/* Whether PostgreSQL answered: an error of class 08 (connection) or an
 * administrator shutdown (57P01..57P03) comes from pgBouncer or a server
 * that is going away, not from the statement. */
static int reached_database(const PGresult *r)
{
    if (r == NULL || PQresultStatus(r) != PGRES_FATAL_ERROR)
        return 1;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state == NULL)
        return 0;
    return strncmp(state, "08", 2) != 0 && strncmp(state, "57P0", 4) != 0;
}

static void set_db_ok(ap_pg_pool_t *p, int ok)
{
    if (ok)
        p->last_ok = ap_clock_mono_ms();
    if (ok == p->db_ok)
        return;
    p->db_ok = ok;
    if (!ok)
        ap_log(AP_LOG_ERR, "database unreachable through the pool");
    update_health(p);
    if (p->healthy)
        return;
    fail_queue(p, AP_PG_UNAVAILABLE);
    /* Statements sent before the outage wait for a server that is not
     * coming (pgBouncer queues them): answer them now, cancel them, and
     * let the connections come back when the cancel is answered. */
    uint64_t now = ap_clock_mono_ms();
    for (size_t i = 0; i < p->nconns; i++) {
        ap_pg_query_t *q = p->conns[i].q;
        if (p->conns[i].state != PC_BUSY || q == p->ping || q->cancelled_at)
            continue;
        q->cancelled_at = now;
        ap_pg_cancel(p->loop, p->conns[i].pg);
        answer(q, AP_PG_UNAVAILABLE, NULL);
    }
    pool_rearm(p);
}

/* The transaction's results are all in (Sync came back): answer, and the
 * connection is free again. */
static void conn_done(pg_conn_t *c)
{
    ap_pg_query_t *q = c->q;
    if (!q->cancelled_at)
        set_db_ok(c->pool, reached_database(q->result));
    c->q = NULL;
    c->state = PC_READY;
    q->conn = NULL;
    query_finish(q, AP_PG_OK);
    take_queued(c->pool);
    pool_rearm(c->pool);
}

/* Reads what results are complete. In pipeline mode each statement's
 * results end with a NULL, and the Sync with PGRES_PIPELINE_SYNC. */
static void read_results(pg_conn_t *c)
{
    while (c->state == PC_BUSY && !PQisBusy(c->pg)) {
        ap_pg_query_t *q = c->q;
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) {
            q->nulls++;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            conn_done(c);
            return;
        }
        int is_main = q->nulls == q->main_index;
        int is_response = q->nulls == q->response_index;
        /* The first error explains; the statements after it are only
         * "aborted". Results of the settings and of pre_request that
         * succeeded are not needed. */
        if (st == PGRES_FATAL_ERROR && q->result == NULL) {
            q->result = r;
        } else if (is_main && st != PGRES_PIPELINE_ABORTED && q->result == NULL) {
            q->result = r;
        } else if (is_response && st == PGRES_TUPLES_OK && q->response == NULL && q->result &&
                   PQresultStatus(q->result) != PGRES_FATAL_ERROR) {
            q->response = r;
        } else {
            PQclear(r);
        }
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    pg_conn_t *c = h->data;
    if (status < 0) {
        conn_broken(c, uv_strerror(status));
        return;
    }
    if (c->state == PC_CONNECTING) {
        connect_step(c);
        return;
    }
    if (c->state == PC_DOWN)
        return;
    if ((events & UV_WRITABLE) && c->flushing) {
        int f = PQflush(c->pg);
        if (f < 0) {
            conn_broken(c, PQerrorMessage(c->pg));
            return;
        }
        c->flushing = f == 1;
        if (!c->flushing)
            poll_set(c, UV_READABLE);
    }
    if (events & UV_READABLE) {
        if (!PQconsumeInput(c->pg)) {
            conn_broken(c, PQerrorMessage(c->pg));
            return;
        }
        if (c->state == PC_BUSY) {
            read_results(c);
        } else {
            /* An idle connection has nothing to say but notices; a closed
             * one fails PQconsumeInput above. */
            PGnotify *n;
            while ((n = PQnotifies(c->pg)) != NULL)
                PQfreemem(n);
        }
    }
}

/* Drops a connection and schedules its replacement. A query that was on
 * it is retried once if the server cannot have seen it, else fails. */
static void conn_broken(pg_conn_t *c, const char *why)
{
    ap_pg_pool_t *p = c->pool;
    int was_connecting = c->state == PC_CONNECTING;
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", why ? why : "");
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    ap_log(p->closing ? AP_LOG_DEBUG : AP_LOG_WARN, "database connection %s: %s",
           was_connecting ? "failed" : "lost", msg);
    ap_shm_add(p->slot->db_errors, 1);

    ap_pg_watch_stop(&c->watch);
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    ap_pg_query_t *q = c->q;
    c->q = NULL;
    c->state = PC_DOWN;
    c->flushing = 0;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : RECONNECT_FIRST_MS;
    if (c->backoff_ms > RECONNECT_MAX_MS)
        c->backoff_ms = RECONNECT_MAX_MS;
    c->retry_at = ap_clock_mono_ms() + (was_connecting ? c->backoff_ms : 0);
    update_health(p);

    if (q) {
        q->conn = NULL;
        if (q->result) {
            PQclear(q->result);
            q->result = NULL;
        }
        if (q->response) {
            PQclear(q->response);
            q->response = NULL;
        }
        /* It never left: retry once on another connection. */
        if (!q->sent && !q->retried && !q->abandoned && !q->answered && !p->closing) {
            q->retried = 1;
            queue_push(p, q, 1);
        } else {
            query_finish(q, AP_PG_CONN_LOST);
        }
    }
    if (!p->closing && given_up(p))
        fail_queue(p, AP_PG_UNAVAILABLE);
    if (!p->closing) {
        take_queued(p);
        pool_rearm(p);
    }
}

/* --- pings --- */

static void on_ping(ap_pg_query_t *q, ap_pg_status_t st, PGresult *res)
{
    ap_pg_pool_t *p = q->data;
    p->ping = NULL;
    if (p->closing)
        return;
    int ok = st == AP_PG_OK && PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok && p->db_ok)
        ap_log(AP_LOG_WARN, "database ping failed: %s",
               st == AP_PG_OK ? PQresultErrorMessage(res) : "no answer within connect_timeout");
    set_db_ok(p, ok);
}

static void send_ping(ap_pg_pool_t *p, pg_conn_t *c)
{
    ap_pg_query_t *q = ap_pg_query_new(0);
    uint64_t now = ap_clock_mono_ms();
    q->sql = ap_xstrdup("select 1");
    q->done = on_ping;
    q->data = p;
    q->pool = p;
    /* An answer that takes longer than a connection may take means the
     * database is not there. */
    q->deadline = q->queued_until = now + p->conf->db_connect_timeout_ms;
    p->ping = q;
    p->last_ok = now; /* one ping per interval, whatever its outcome */
    send_query(c, q);
}

static void maybe_ping(ap_pg_pool_t *p, uint64_t now)
{
    if (p->ping || p->closing || now < p->last_ok + PING_INTERVAL_MS)
        return;
    for (size_t i = 0; i < p->nconns; i++) {
        if (p->conns[i].state == PC_READY) {
            send_ping(p, &p->conns[i]);
            return;
        }
    }
}

/* --- deadlines: one timer for the whole pool --- */

static void on_timer(uv_timer_t *t)
{
    ap_pg_pool_t *p = t->data;
    uint64_t now = ap_clock_mono_ms();

    for (ap_pg_query_t *q = p->qhead, *next; q; q = next) {
        next = q->next;
        if (now >= q->deadline) {
            queue_remove(p, q);
            query_finish(q, AP_PG_DEADLINE);
        } else if (now >= q->queued_until) {
            queue_remove(p, q);
            query_finish(q, AP_PG_POOL_TIMEOUT);
        }
    }
    for (size_t i = 0; i < p->nconns; i++) {
        pg_conn_t *c = &p->conns[i];
        if (c->state == PC_CONNECTING && now >= c->connect_deadline) {
            conn_broken(c, "timeout expired (connect_timeout)");
        } else if (c->state == PC_BUSY) {
            ap_pg_query_t *q = c->q;
            if (q->cancelled_at && now >= q->cancelled_at + CANCEL_GRACE_MS) {
                conn_broken(c, "no answer to a cancelled statement");
            } else if (!q->cancelled_at && now >= q->deadline) {
                /* Answer 504 now; the connection goes back to the pool
                 * once the cancelled statement's result is consumed. */
                q->cancelled_at = now;
                ap_log(AP_LOG_WARN, "request_timeout: cancelling the statement");
                ap_pg_cancel(p->loop, c->pg);
                answer(q, AP_PG_DEADLINE, NULL);
            }
        } else if (c->state == PC_DOWN && !p->closing && now >= c->retry_at) {
            conn_connect(c);
        }
    }
    maybe_ping(p, now);
    pool_rearm(p);
}

/* The connections by state, for /metrics. */
static void publish_states(ap_pg_pool_t *p)
{
    uint64_t n[4] = {0};
    for (size_t i = 0; i < p->nconns; i++) {
        switch (p->conns[i].state) {
        case PC_READY:
            n[0]++;
            break;
        case PC_BUSY:
            n[1]++;
            break;
        case PC_CONNECTING:
            n[2]++;
            break;
        default:
            n[3]++;
            break;
        }
    }
    for (int k = 0; k < 4; k++)
        ap_shm_store(p->slot->db_conns[k], n[k]);
}

static void pool_rearm(ap_pg_pool_t *p)
{
    if (p->closing)
        return;
    publish_states(p);
    uint64_t next = UINT64_MAX;
    for (ap_pg_query_t *q = p->qhead; q; q = q->next) {
        if (q->queued_until < next)
            next = q->queued_until;
        if (q->deadline < next)
            next = q->deadline;
    }
    for (size_t i = 0; i < p->nconns; i++) {
        pg_conn_t *c = &p->conns[i];
        uint64_t t = UINT64_MAX;
        if (c->state == PC_CONNECTING)
            t = c->connect_deadline;
        else if (c->state == PC_DOWN)
            t = c->retry_at;
        else if (c->state == PC_BUSY)
            t = c->q->cancelled_at ? c->q->cancelled_at + CANCEL_GRACE_MS : c->q->deadline;
        if (t < next)
            next = t;
    }
    /* A ping is due only when a connection is free to carry it; a busy
     * pool's answers tell the same. */
    if (!p->ping && p->ever_connected && p->last_ok + PING_INTERVAL_MS < next) {
        for (size_t i = 0; i < p->nconns; i++) {
            if (p->conns[i].state == PC_READY) {
                next = p->last_ok + PING_INTERVAL_MS;
                break;
            }
        }
    }
    if (next == UINT64_MAX) {
        uv_timer_stop(&p->timer);
        return;
    }
    uint64_t now = ap_clock_mono_ms();
    uv_timer_start(&p->timer, on_timer, next > now ? next - now : 0, 0);
}

/* --- the public side --- */

ap_pg_pool_t *ap_pg_pool_new(uv_loop_t *loop, const ap_config_t *conf, const char *uri,
                             ap_shm_slot_t *slot, void (*on_healthy)(void *data), void *data)
{
    ap_pg_pool_t *p = ap_xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->conf = conf;
    p->slot = slot;
    p->on_healthy = on_healthy;
    p->on_healthy_data = data;
    p->nconns = conf->db_pool_size;
    p->uri = uri;
    p->conns = ap_xcalloc(p->nconns, sizeof(*p->conns));
    snprintf(p->statement_timeout, sizeof(p->statement_timeout), "%llu",
             (unsigned long long)conf->db_statement_timeout_ms);
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->db_ok = 1;
    ap_shm_store(slot->db_state, AP_DB_CONNECTING);
    ap_shm_store(slot->db_since_ms, ap_clock_mono_ms());
    for (size_t i = 0; i < p->nconns; i++) {
        p->conns[i].pool = p;
        ap_pg_watch_init(&p->conns[i].watch, loop, on_poll, &p->conns[i]);
        conn_connect(&p->conns[i]);
    }
    return p;
}

void ap_pg_submit(ap_pg_pool_t *p, ap_pg_query_t *q)
{
    uint64_t now = ap_clock_mono_ms();
    q->pool = p;
    q->submitted_us = ap_clock_mono_us();
    q->deadline = now + p->conf->db_request_timeout_ms;
    q->queued_until = now + p->conf->db_pool_timeout_ms;
    for (size_t i = 0; i < p->nconns; i++) {
        if (p->conns[i].state == PC_READY) {
            send_query(&p->conns[i], q);
            return;
        }
    }
    /* Down for a while, or up only as far as pgBouncer: answer at once
     * rather than after every timeout. */
    if (given_up(p)) {
        query_finish(q, AP_PG_UNAVAILABLE);
        return;
    }
    if (p->qlen >= p->conf->db_queue_size) {
        query_finish(q, AP_PG_QUEUE_FULL);
        return;
    }
    queue_push(p, q, 0);
    pool_rearm(p);
}

void ap_pg_abandon(ap_pg_query_t *q)
{
    ap_pg_pool_t *p = q->pool;
    q->abandoned = 1;
    if (q->queued) {
        queue_remove(p, q);
        query_free(q);
        return;
    }
    if (q->conn && !q->cancelled_at) {
        q->cancelled_at = ap_clock_mono_ms();
        ap_pg_cancel(p->loop, q->conn->pg);
        pool_rearm(p);
    }
}

static void free_pool(uv_handle_t *h)
{
    ap_pg_pool_t *p = h->data;
    free(p->conns);
    free(p);
}

void ap_pg_pool_close(ap_pg_pool_t *p)
{
    if (p == NULL || p->closing)
        return;
    p->closing = 1;
    fail_queue(p, AP_PG_UNAVAILABLE);
    for (size_t i = 0; i < p->nconns; i++) {
        pg_conn_t *c = &p->conns[i];
        if (c->state != PC_DOWN)
            conn_broken(c, "pool closed");
    }
    uv_close((uv_handle_t *)&p->timer, free_pool);
}

/* --- cancellation off the loop --- */

typedef struct {
    uv_work_t work;
    PGcancel *cancel;
    int ok;
    char err[256];
} cancel_req_t;

static void cancel_work(uv_work_t *w)
{
    cancel_req_t *r = w->data;
    /* PQcancel opens a new connection and waits for it: a blocking call,
     * hence the thread pool. */
    r->ok = PQcancel(r->cancel, r->err, (int)sizeof(r->err));
}

static void cancel_after(uv_work_t *w, int status)
{
    cancel_req_t *r = w->data;
    if (status == 0 && !r->ok)
        ap_log(AP_LOG_WARN, "cancelling a statement failed: %s", r->err);
    PQfreeCancel(r->cancel);
    free(r);
}

void ap_pg_cancel(uv_loop_t *loop, PGconn *conn)
{
    cancel_req_t *r = ap_xcalloc(1, sizeof(*r));
    r->cancel = PQgetCancel(conn);
    if (r->cancel == NULL) {
        free(r);
        return;
    }
    r->work.data = r;
    if (uv_queue_work(loop, &r->work, cancel_work, cancel_after) < 0) {
        PQfreeCancel(r->cancel);
        free(r);
    }
}
