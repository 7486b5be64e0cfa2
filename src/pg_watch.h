/* SPDX-License-Identifier: BSD-2-Clause */
/* A libpq connection's socket watched by libuv. libpq may change sockets
 * while it connects (one address after another), and libuv allows one
 * poll handle per descriptor, so the handle follows the socket: the old
 * one is closed before a new one watches the new descriptor. */
#ifndef AP_PG_WATCH_H
#define AP_PG_WATCH_H

#include <libpq-fe.h>
#include <uv.h>

typedef struct ap_pg_watch_s {
    uv_loop_t *loop;
    uv_poll_t *poll; /* heap: freed in its close callback */
    int fd;
    int events;
    uv_poll_cb cb;
    void *data;      /* handed to cb as poll->data */
} ap_pg_watch_t;

void ap_pg_watch_init(ap_pg_watch_t *w, uv_loop_t *loop, uv_poll_cb cb, void *data);

/* Watches pg's current socket for events (UV_READABLE, UV_WRITABLE).
 * Returns 0, or -1 when pg has no socket or libuv refuses it. */
int ap_pg_watch_set(ap_pg_watch_t *w, PGconn *pg, int events);

/* Stops watching; call before PQfinish. */
void ap_pg_watch_stop(ap_pg_watch_t *w);

/* PQconnectStartParams for uri with an application name; NULL or a
 * connection already failed is reported through PQstatus by the caller. */
PGconn *ap_pg_connect_start(const char *uri, const char *application_name);

#endif
