/* SPDX-License-Identifier: BSD-2-Clause */
/* Request dispatch. Order: built-in endpoints (/live, /ready), then, on a
 * redirect listener, the redirect to https; then the longest prefix among
 * the [static] roots and the API's [api] prefix ("/" being the shortest of
 * all), then 404. */
#include "router.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "buf.h"
#include "conn.h"
#include "json.h"
#include "metrics.h"
#include "static.h"
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

/* A Host header value fit to put in a URL: a DNS name or IPv4 address,
 * or an IPv6 literal in brackets, with an optional port (dropped: the
 * https port is ours to say). Returns its length without the port, or 0. */
static size_t redirect_host(const ap_str_t *host)
{
    size_t n = host->len, i = 0;
    const char *p = host->p;
    if (n == 0 || n > 255)
        return 0;
    if (p[0] == '[') {
        for (i = 1; i < n && p[i] != ']'; i++)
            if (!isxdigit((unsigned char)p[i]) && p[i] != ':' && p[i] != '.')
                return 0;
        if (i == n || i == 1)
            return 0;
        i++;
    } else {
        for (; i < n && p[i] != ':'; i++)
            if (!isalnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '.')
                return 0;
        if (i == 0)
            return 0;
    }
    size_t end = i;
    if (i < n) {
        if (p[i] != ':' || i + 1 == n)
            return 0;
        for (i++; i < n; i++)
            if (!isdigit((unsigned char)p[i]))
                return 0;
    }
    return end;
}

/* A plain listener with "redirect": the same host and path on https.
 * GET and HEAD get 301; other methods 308, which keeps the method and
 * the body (a client turns a POST that got 301 into a GET). */
static void handle_redirect(ap_request_t *req)
{
    const ap_config_t *conf = req->conn->worker->conf;
    const ap_str_t *host = ap_http_header(req, AP_STR("host"));
    size_t hlen = host ? redirect_host(host) : 0;
    if (hlen == 0) {
        ap_http_respond_error(req, 400, "a valid Host header is needed to redirect to https");
        return;
    }
    ap_buf_t loc;
    ap_buf_init(&loc);
    ap_buf_printf(&loc, "https://%.*s", (int)hlen, host->p);
    if (conf->https_port != 443)
        ap_buf_printf(&loc, ":%u", conf->https_port);
    if (req->path.len && req->path.p[0] == '/')
        ap_buf_append(&loc, req->path.p, req->path.len);
    else
        ap_buf_append_char(&loc, '/'); /* OPTIONS * */
    if (req->query.len) {
        ap_buf_append_char(&loc, '?');
        ap_buf_append(&loc, req->query.p, req->query.len);
    }
    /* The path and query are as the parser took them: no CR, LF or
     * space can be in them, so the header line stays one line. */
    ap_http_add_header(req, "Location", loc.data);
    ap_http_add_header(req, "Cache-Control", "no-store");
    ap_buf_t body;
    ap_buf_init(&body);
    ap_buf_append_str(&body, "{\"location\":");
    ap_json_append_string(&body, loc.data, loc.len);
    ap_buf_append_char(&body, '}');
    int status = req->method == HTTP_GET || req->method == HTTP_HEAD ? 301 : 308;
    ap_http_respond(req, status, "application/json", body.data, body.len);
    ap_buf_cleanup(&body);
    ap_buf_cleanup(&loc);
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
    if (req->conn->redirect) {
        handle_redirect(req);
        return;
    }
    /* Static roots and the API: the longest prefix wins, so that
     * "/assets" under an API at "/" and an API at "/api" under a site at
     * "/" both work. apiary -t refuses a root on the API's own prefix. */
    size_t slen = 0;
    int root = w->statics ? ap_static_match(w->conf, req->path, &slen) : -1;
    if (w->db && ap_api_match(w->conf, req->path, &rest)) {
        size_t alen = strlen(w->conf->api_prefix);
        if (root < 0 || (alen > 1 && alen > slen)) {
            req->route = AP_ROUTE_API;
            if (ap_security_admit(req, rest)) /* rate limits */
                return;
            ap_api_dispatch(req, w->db, rest);
            return;
        }
    }
    if (root >= 0) {
        req->route = AP_ROUTE_STATIC;
        if (ap_security_admit(req, req->path)) /* rate limits */
            return;
        ap_static_handle(w->statics, req, root);
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
