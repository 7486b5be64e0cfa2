/* SPDX-License-Identifier: BSD-2-Clause */
/* The schema-reload listener: one session connection per worker that runs
 * LISTEN apiary and reports NOTIFY apiary, 'reload schema'. LISTEN needs a
 * session, so this connection goes straight to PostgreSQL
 * ([database] listen_uri), not through pgBouncer's transaction pool. */
#ifndef AP_PG_LISTEN_H
#define AP_PG_LISTEN_H

#include <uv.h>

typedef struct ap_pg_listen_s ap_pg_listen_t;

/* Connects to uri and listens. on_reload runs for each "reload schema"
 * notification, and after a reconnection (notifications sent while the
 * connection was down are lost, so the cache may be stale). */
ap_pg_listen_t *ap_pg_listen_new(uv_loop_t *loop, const char *uri, uint64_t connect_timeout_ms,
                                 void (*on_reload)(void *data), void *data);

/* Closes the connection; the listener is freed once its handles close. */
void ap_pg_listen_close(ap_pg_listen_t *l);

#endif
