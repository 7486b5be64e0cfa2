/* SPDX-License-Identifier: BSD-2-Clause */
/* Request dispatch. Order: built-in endpoints (/live, /ready), then the
 * API under [api] prefix, then 404. */
#include "router.h"

#include <stdio.h>

#include "api.h"
#include "buf.h"
#include "conn.h"
#include "json.h"
#include "metrics.h"
#include "security.h"
#include "status.h"
#include "worker.h"

static void handle_live(ap_request_t *req)
{
    static const char body[] = "{\"status\":\"ok\"}";
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        ap_http_add_header(req, "Allow", "GET, HEAD");
        ap_http_respond_error(req, 405, "/live answers GET and HEAD");
        return;
    }
    ap_http_add_header(req, "Cache-Control", "no-store");
    ap_http_respond(req, 200, "application/json", body, sizeof(body) - 1);
}

/* 200 when this worker can serve the API: its pool reaches PostgreSQL and
 * its schema cache is loaded (or no database is configured); 503 with the
 * reason otherwise, and while the worker drains. */
static void handle_ready(ap_request_t *req)
{
    static const char body[] = "{\"status\":\"ready\"}";
    ap_worker_t *w = req->conn->worker;
    const char *why = NULL;
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        ap_http_add_header(req, "Allow", "GET, HEAD");
        ap_http_respond_error(req, 405, "/ready answers GET and HEAD");
        return;
    }
    ap_http_add_header(req, "Cache-Control", "no-store");
    if (w->draining)
        why = "the worker is shutting down";
    else if (ap_shm_load(w->shm->draining))
        why = "the server is draining (apiary -s drain)";
    else if (w->db && !ap_db_ready(w->db, &why))
        ;
    else {
        ap_http_respond(req, 200, "application/json", body, sizeof(body) - 1);
        return;
    }
    ap_http_add_header(req, "Retry-After", "1");
    ap_http_respond_error(req, 503, why);
}

/* The admin listener: the whole server's view, from shared memory. */
static void handle_admin(ap_request_t *req)
{
    ap_worker_t *w = req->conn->worker;
    int is_ready = ap_str_eq(req->path, AP_STR("/ready"));
    if (ap_str_eq(req->path, AP_STR("/live"))) {
        handle_live(req);
        return;
    }
    int is_metrics = ap_str_eq(req->path, AP_STR("/metrics"));
    if (!is_ready && !is_metrics && !ap_str_eq(req->path, AP_STR("/status"))) {
        ap_http_respond_error(req, 404,
                              "the admin listener serves /live, /ready, /status and /metrics");
        return;
    }
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        ap_http_add_header(req, "Allow", "GET, HEAD");
        ap_http_respond_error(req, 405, "answers GET and HEAD");
        return;
    }
    ap_buf_t b;
    ap_buf_init(&b);
    ap_http_add_header(req, "Cache-Control", "no-store");
    if (is_metrics) {
        ap_metrics_render(&b, w->shm);
        ap_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        ap_buf_cleanup(&b);
        return;
    }
    ap_status_json(&b, w->shm);
    /* Ready while at least one worker is: the balancer's question is
     * whether this node can serve. */
    int status = is_ready && ap_status_ready_workers(w->shm) == 0 ? 503 : 200;
    ap_http_respond(req, status, "application/json", b.data, b.len);
    ap_buf_cleanup(&b);
}

void ap_router_dispatch(ap_request_t *req)
{
    ap_worker_t *w = req->conn->worker;
    ap_str_t rest;
    /* Security layer: the real client, CORS preflights. */
    if (ap_security_request(req))
        return;
    if (req->conn->admin) {
        handle_admin(req);
        return;
    }
    if (ap_str_eq(req->path, AP_STR("/live"))) {
        handle_live(req);
        return;
    }
    if (ap_str_eq(req->path, AP_STR("/ready"))) {
        handle_ready(req);
        return;
    }
    if (w->db && ap_api_match(w->conf, req->path, &rest)) {
        req->route = AP_ROUTE_API;
        if (ap_security_admit(req, rest)) /* rate limits */
            return;
        ap_api_dispatch(req, w->db, rest);
        return;
    }
    ap_buf_t details;
    ap_buf_init(&details);
    /* The path is shown as sent (bounded by max_uri_size); the JSON writer
     * escapes it. */
    ap_buf_printf(&details, "no route for %.*s %.*s", (int)req->method_name.len,
                  req->method_name.p, (int)req->path.len, req->path.p);
    ap_http_respond_error(req, 404, details.data);
    ap_buf_cleanup(&details);
}
