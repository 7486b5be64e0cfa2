/* SPDX-License-Identifier: BSD-2-Clause */
/* The schema-reload listener. */
#include "pg_listen.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "pg_watch.h"

#define RETRY_FIRST_MS 200
#define RETRY_MAX_MS 5000

typedef enum { L_DOWN, L_CONNECTING, L_LISTENING } lstate_t;

struct ap_pg_listen_s {
    uv_loop_t *loop;
    char *uri;
    uint64_t connect_timeout_ms;
    void (*on_reload)(void *);
    void *data;
    PGconn *pg;
    ap_pg_watch_t watch;
    uv_timer_t timer; /* connect deadline, or the next attempt */
    lstate_t state;
    uint64_t backoff_ms;
    int ever_listened;
    int closing;
};

static void start(ap_pg_listen_t *l);
static void on_poll(uv_poll_t *h, int status, int events);
static void step(ap_pg_listen_t *l);

static void on_timer(uv_timer_t *t)
{
    ap_pg_listen_t *l = t->data;
    if (l->state == L_CONNECTING) {
        ap_log(AP_LOG_WARN, "schema listener: connect_timeout passed");
        ap_pg_watch_stop(&l->watch);
        PQfinish(l->pg);
        l->pg = NULL;
        l->state = L_DOWN;
    }
    if (l->state == L_DOWN && !l->closing)
        start(l);
}

static void fail(ap_pg_listen_t *l, const char *why)
{
    char msg[256];
    size_t n = strlen(why);
    if (n >= sizeof(msg))
        n = sizeof(msg) - 1;
    memcpy(msg, why, n);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    msg[n] = '\0';
    ap_log(AP_LOG_WARN, "schema listener connection failed: %s", msg);
    ap_pg_watch_stop(&l->watch);
    if (l->pg)
        PQfinish(l->pg);
    l->pg = NULL;
    l->state = L_DOWN;
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : RETRY_FIRST_MS;
    if (l->backoff_ms > RETRY_MAX_MS)
        l->backoff_ms = RETRY_MAX_MS;
    uv_timer_start(&l->timer, on_timer, l->backoff_ms, 0);
}

static void watch(ap_pg_listen_t *l, int events)
{
    if (ap_pg_watch_set(&l->watch, l->pg, events) < 0)
        fail(l, "cannot watch the connection's socket");
}

static void connected(ap_pg_listen_t *l)
{
    uv_timer_stop(&l->timer);
    PQsetnonblocking(l->pg, 1);
    if (!PQsendQuery(l->pg, "LISTEN apiary")) {
        fail(l, PQerrorMessage(l->pg));
        return;
    }
    PQflush(l->pg);
    l->state = L_LISTENING;
    l->backoff_ms = 0;
    watch(l, UV_READABLE);
    if (l->ever_listened) {
        ap_log(AP_LOG_INFO, "schema listener reconnected: reloading the schema cache");
        l->on_reload(l->data);
    }
    l->ever_listened = 1;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    ap_pg_listen_t *l = h->data;
    (void)events;
    if (status < 0) {
        fail(l, uv_strerror(status));
        return;
    }
    step(l);
}

static void step(ap_pg_listen_t *l)
{
    if (l->state == L_CONNECTING) {
        switch (PQconnectPoll(l->pg)) {
        case PGRES_POLLING_OK:
            connected(l);
            return;
        case PGRES_POLLING_READING:
            watch(l, UV_READABLE);
            return;
        case PGRES_POLLING_WRITING:
            watch(l, UV_WRITABLE);
            return;
        default:
            fail(l, PQerrorMessage(l->pg));
            return;
        }
    }
    if (!PQconsumeInput(l->pg)) {
        fail(l, PQerrorMessage(l->pg));
        return;
    }
    while (!PQisBusy(l->pg)) {
        PGresult *r = PQgetResult(l->pg);
        if (r == NULL)
            break;
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            ap_log(AP_LOG_ERR, "LISTEN apiary failed: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
    int reload = 0;
    PGnotify *n;
    while ((n = PQnotifies(l->pg)) != NULL) {
        if (strcmp(n->relname, "apiary") == 0 && strcmp(n->extra, "reload schema") == 0)
            reload = 1;
        PQfreemem(n);
    }
    if (reload) {
        ap_log(AP_LOG_INFO, "NOTIFY apiary: reloading the schema cache");
        l->on_reload(l->data);
    }
}

static void start(ap_pg_listen_t *l)
{
    l->pg = ap_pg_connect_start(l->uri, "apiary-listen");
    if (l->pg == NULL || PQstatus(l->pg) == CONNECTION_BAD) {
        fail(l, l->pg ? PQerrorMessage(l->pg) : "out of memory");
        return;
    }
    l->state = L_CONNECTING;
    uv_timer_start(&l->timer, on_timer, l->connect_timeout_ms, 0);
    step(l);
}

ap_pg_listen_t *ap_pg_listen_new(uv_loop_t *loop, const char *uri, uint64_t connect_timeout_ms,
                                 void (*on_reload)(void *data), void *data)
{
    ap_pg_listen_t *l = ap_xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->uri = ap_xstrdup(uri);
    l->connect_timeout_ms = connect_timeout_ms;
    l->on_reload = on_reload;
    l->data = data;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    ap_pg_watch_init(&l->watch, loop, on_poll, l);
    start(l);
    return l;
}

static void free_listener(uv_handle_t *h)
{
    ap_pg_listen_t *l = h->data;
    free(l->uri);
    free(l);
}

void ap_pg_listen_close(ap_pg_listen_t *l)
{
    if (l == NULL)
        return;
    l->closing = 1;
    ap_pg_watch_stop(&l->watch);
    if (l->pg)
        PQfinish(l->pg);
    l->pg = NULL;
    uv_close((uv_handle_t *)&l->timer, free_listener);
}
