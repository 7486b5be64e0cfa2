/* SPDX-License-Identifier: BSD-2-Clause */
/* A libpq connection's socket watched by libuv. */
#include "pg_watch.h"

#include <stdlib.h>

#include "alloc.h"

void ap_pg_watch_init(ap_pg_watch_t *w, uv_loop_t *loop, uv_poll_cb cb, void *data)
{
    w->loop = loop;
    w->poll = NULL;
    w->fd = -1;
    w->events = 0;
    w->cb = cb;
    w->data = data;
}

static void free_poll(uv_handle_t *h)
{
    free(h);
}

void ap_pg_watch_stop(ap_pg_watch_t *w)
{
    if (w->poll) {
        uv_close((uv_handle_t *)w->poll, free_poll);
        w->poll = NULL;
    }
    w->fd = -1;
    w->events = 0;
}

int ap_pg_watch_set(ap_pg_watch_t *w, PGconn *pg, int events)
{
    int fd = PQsocket(pg);
    if (fd < 0)
        return -1;
    if (w->poll && w->fd != fd)
        ap_pg_watch_stop(w);
    if (w->poll == NULL) {
        w->poll = ap_xmalloc(sizeof(*w->poll));
        if (uv_poll_init(w->loop, w->poll, fd) < 0) {
            free(w->poll);
            w->poll = NULL;
            return -1;
        }
        w->poll->data = w->data;
        w->fd = fd;
        w->events = 0;
    }
    if (events != w->events) {
        uv_poll_start(w->poll, events, w->cb);
        w->events = events;
    }
    return 0;
}

PGconn *ap_pg_connect_start(const char *uri, const char *application_name)
{
    static const char *const keys[] = {"dbname", "fallback_application_name", NULL};
    const char *values[] = {uri, application_name, NULL};
    return PQconnectStartParams(keys, values, 1);
}
