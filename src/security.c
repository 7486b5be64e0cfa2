/* SPDX-License-Identifier: BSD-2-Clause */
/* The security layer: headers, client addresses, limits, privileges. */
#include "security.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "alloc.h"
#include "api_rpc.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "cors.h"
#include "log.h"
#include "metrics.h"
#include "privdrop.h"
#include "proxy_protocol.h"
#include "ratelimit.h"
#include "shm.h"
#include "worker.h"

/* Forwarding headers looked at per request, at most (each may hold a
 * whole chain). */
#define AP_FWD_MAX_LINES 16

/* --- the master --- */

int ap_security_master_start(const ap_config_t *conf)
{
    if (ap_rl_table == NULL) {
        ap_rl_table = ap_rl_create(conf->rate_limit_table_size);
        if (ap_rl_table == NULL) {
            ap_log_errno(AP_LOG_CRIT, errno,
                         "mapping the rate-limit table (security.rate_limit_table_size = %llu) "
                         "failed",
                         (unsigned long long)conf->rate_limit_table_size);
            return -1;
        }
    }
    ap_privdrop_master_check(conf);
    /* Not fatal: the workers write to the descriptor they inherit; only
     * their reopen after USR1 needs the file to be theirs (logged). */
    ap_privdrop_own_file(conf, conf->error_log);
    return 0;
}

void ap_security_master_reload(const ap_config_t *old, const ap_config_t *conf)
{
    if (ap_rl_table && conf->rate_limit_table_size != old->rate_limit_table_size)
        ap_log(AP_LOG_WARN,
               "reload: security.rate_limit_table_size changes take effect at the next restart "
               "(the table keeps %llu entries)",
               (unsigned long long)ap_rl_capacity(ap_rl_table));
    ap_privdrop_master_check(conf);
    ap_privdrop_own_file(conf, conf->error_log);
}

void ap_security_master_reopen(const ap_config_t *conf)
{
    ap_privdrop_own_file(conf, conf->error_log);
}

void ap_security_worker_exited(pid_t pid, int clean)
{
    if (!clean && ap_rl_table)
        ap_rl_worker_died(ap_rl_table, pid);
}

void ap_security_master_stop(void)
{
    ap_rl_destroy(ap_rl_table);
    ap_rl_table = NULL;
}

/* --- a worker --- */

int ap_security_worker_start(const ap_config_t *conf)
{
    return ap_privdrop_worker(conf);
}

/* --- connections --- */

static void set_peer_text(ap_conn_t *c)
{
    ap_addr_format(&c->client_ip, c->client_addr);
}

void ap_security_conn_accepted(ap_conn_t *c, int fd, int proxy_protocol)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    memset(&c->client_ip, 0, sizeof(c->client_ip));
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        ap_addr_from_sockaddr((struct sockaddr *)&ss, &c->client_ip);
    set_peer_text(c);
    c->proxy_wait = proxy_protocol != 0;
}

int ap_security_proxy_input(ap_conn_t *c)
{
    ap_proxy_info_t info;
    const char *why;
    int n =
        ap_proxy_parse((const uint8_t *)c->in.data + c->in_off, c->in.len - c->in_off, &info, &why);
    if (n == 0)
        return 0;
    if (n < 0) {
        ap_log(AP_LOG_INFO, "closing a connection from %s: %s", c->client_addr, why);
        ap_shm_add(c->worker->slot->metrics.conns_refused[AP_M_REFUSED_PROXY], 1);
        return -1;
    }
    c->in_off += (size_t)n;
    if (c->in_off == c->in.len) {
        c->in_off = 0;
        c->in.len = 0;
    }
    c->proxy_wait = 0;
    if (!info.local) {
        c->client_ip = info.src;
        set_peer_text(c);
    }
    return 1;
}

/* Every open connection of the server: what each worker's slot says. */
static uint64_t total_connections(const ap_shm_t *shm)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < shm->nslots; i++)
        if (ap_shm_load(shm->slots[i].pid) > 0)
            n += ap_shm_load(shm->slots[i].connections);
    return n;
}

int ap_security_conn_admit(ap_conn_t *c, const char **detail)
{
    const ap_config_t *conf = c->worker->conf;
    if (c->admin)
        return 0;
    /* The slots count this connection already. */
    if (conf->max_connections_total &&
        total_connections(c->worker->shm) > conf->max_connections_total) {
        ap_shm_add(c->worker->slot->metrics.conns_refused[AP_M_REFUSED_TOTAL], 1);
        *detail = "the server has as many connections as security.max_connections_total allows";
        return 503;
    }
    /* A trusted proxy carries many clients' connections; the allowlist is
     * exempt from every per-client limit. */
    if (conf->max_connections_per_address && ap_rl_table && c->client_ip.family &&
        !ap_cidr_list_match(&conf->trusted_proxies, &c->client_ip) &&
        !ap_cidr_list_match(&conf->rate_limit_allow, &c->client_ip)) {
        if (ap_rl_conn_open(ap_rl_table, &c->client_ip, (uint32_t)conf->max_connections_per_address,
                            ap_clock_mono_us()) < 0) {
            ap_shm_add(c->worker->slot->metrics.conns_refused[AP_M_REFUSED_ADDRESS], 1);
            *detail = "this address has as many connections as "
                      "security.max_connections_per_address allows";
            return 503;
        }
        c->addr_counted = 1;
    }
    return 0;
}

void ap_security_conn_closed(ap_conn_t *c)
{
    if (c->addr_counted && ap_rl_table) {
        ap_rl_conn_close(ap_rl_table, &c->client_ip, ap_clock_mono_us());
        c->addr_counted = 0;
    }
}

uint64_t ap_security_body_timeout(const ap_conn_t *c, int *rate_limited)
{
    const ap_config_t *conf = c->worker->conf;
    uint64_t t = conf->body_timeout_ms;
    *rate_limited = 0;
    if (conf->min_body_rate == 0)
        return t;
    /* The body may take body_timeout, plus one second per min_body_rate
     * bytes received: a client must keep up the average rate, however it
     * spaces its bytes (a slow POST sends one byte just before each
     * body_timeout). */
    uint64_t now = ap_clock_mono_ms();
    uint64_t elapsed = now > c->body_start_ms ? now - c->body_start_ms : 0;
    uint64_t allowed = conf->body_timeout_ms + c->hp.req.body.len * 1000 / conf->min_body_rate;
    uint64_t left = allowed > elapsed ? allowed - elapsed : 0;
    if (left < t) {
        t = left ? left : 1;
        *rate_limited = 1;
    }
    return t;
}

/* --- requests --- */

/* Handlers (and request.headers in SQL) see the real client as
 * X-Real-IP; whatever the client sent under that name is dropped, since
 * it could say anything. */
static void set_real_ip(ap_request_t *req)
{
    size_t k = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (!ap_str_caseeq(req->headers[i].name, AP_STR("x-real-ip")))
            req->headers[k++] = req->headers[i];
    req->nheaders = k;
    if (req->client.family == 0)
        return;
    req->headers = ap_xrealloc(req->headers, (k + 1) * sizeof(*req->headers));
    req->headers[k].name = AP_STR("X-Real-IP");
    req->headers[k].value = ap_str_make(req->client_addr, strlen(req->client_addr));
    req->nheaders = k + 1;
}

int ap_security_request(ap_request_t *req)
{
    ap_conn_t *c = req->conn;
    const ap_config_t *conf = c->worker->conf;
    req->client = c->client_ip;
    if (conf->trusted_proxies.n && !c->admin) {
        ap_str_t vals[AP_FWD_MAX_LINES];
        size_t n = 0;
        ap_str_t name = conf->forwarded_header == AP_FWD_FORWARDED ? AP_STR("forwarded")
                                                                   : AP_STR("x-forwarded-for");
        /* Past AP_FWD_MAX_LINES lines, the rightmost are the ones a walk
         * from the right needs. */
        for (size_t i = 0; i < req->nheaders; i++) {
            if (!ap_str_caseeq(req->headers[i].name, name))
                continue;
            if (n == AP_FWD_MAX_LINES) {
                memmove(vals, vals + 1, (AP_FWD_MAX_LINES - 1) * sizeof(vals[0]));
                n--;
            }
            vals[n++] = req->headers[i].value;
        }
        ap_addr_real_client(&c->client_ip, &conf->trusted_proxies,
                            (ap_fwd_header_t)conf->forwarded_header, vals, n, &req->client);
    }
    ap_addr_format(&req->client, req->client_addr);
    if (c->admin)
        return 0;
    set_real_ip(req);
    return ap_cors_preflight(req, conf);
}

static int rpc_path(const ap_config_t *conf, ap_str_t rest)
{
    if (conf->rate_limit_rpc_paths.n == 0)
        return 0;
    /* Matched as the API will read it: the function name is
     * percent-decoded there, so /rpc/log%69n must not slip past a
     * pattern for /rpc/login. Undecodable paths are matched as sent. */
    ap_buf_t path;
    ap_buf_init(&path);
    if (ap_api_url_decode(&path, rest, 0) < 0) {
        ap_buf_reset(&path);
        ap_buf_append(&path, rest.p, rest.len);
    }
    ap_buf_append_char(&path, '\0');
    int hit = 0;
    for (size_t i = 0; i < conf->rate_limit_rpc_paths.n && !hit; i++)
        hit = fnmatch(conf->rate_limit_rpc_paths.v[i], path.data, 0) == 0;
    ap_buf_cleanup(&path);
    return hit;
}

/* A client over its limit may send thousands of requests a second: one
 * log line per second per worker says so, with how many were not logged. */
static void refusal_log(int kind, const char *client)
{
    static uint64_t last_ms;
    static unsigned long quiet;
    uint64_t now = ap_clock_mono_ms();
    if (last_ms && now - last_ms < 1000) {
        quiet++;
        return;
    }
    if (quiet)
        ap_log(AP_LOG_INFO, "rate limit %s: refused a request from %s (and %lu more not logged)",
               ap_rl_kind_names[kind], client, quiet);
    else
        ap_log(AP_LOG_INFO, "rate limit %s: refused a request from %s", ap_rl_kind_names[kind],
               client);
    last_ms = now;
    quiet = 0;
}

int ap_security_admit(ap_request_t *req, ap_str_t rest)
{
    ap_conn_t *c = req->conn;
    const ap_config_t *conf = c->worker->conf;
    int kind;
    if (c->admin || ap_rl_table == NULL || req->client.family == 0)
        return 0;
    switch (req->route) {
    case AP_ROUTE_API:
    case AP_ROUTE_RPC:
        kind =
            conf->rate_limit[AP_RL_RPC].interval_us && rpc_path(conf, rest) ? AP_RL_RPC : AP_RL_API;
        break;
    case AP_ROUTE_STATIC:
        kind = AP_RL_STATIC;
        break;
    default:
        return 0;
    }
    const ap_rate_t *rate = &conf->rate_limit[kind];
    if (rate->interval_us == 0 || ap_cidr_list_match(&conf->rate_limit_allow, &req->client))
        return 0;

    ap_rl_result_t res;
    ap_rl_take(ap_rl_table, &req->client, kind, rate, ap_clock_mono_us(), &res);
    ap_buf_printf(&req->resp_headers,
                  "RateLimit-Limit: %u\r\nRateLimit-Remaining: %u\r\nRateLimit-Reset: %llu\r\n",
                  res.limit, res.remaining, (unsigned long long)res.reset_s);
    if (res.allowed)
        return 0;

    ap_shm_add(c->worker->slot->metrics.rate_limited[kind], 1);
    char retry[24], desc[96], details[256];
    snprintf(retry, sizeof(retry), "%llu", (unsigned long long)res.retry_after_s);
    ap_http_add_header(req, "Retry-After", retry);
    ap_rate_describe(rate, desc, sizeof(desc));
    snprintf(details, sizeof(details), "security.rate_limit_%s allows %s per client; retry in %s s",
             ap_rl_kind_names[kind], desc, retry);
    refusal_log(kind, req->client_addr);
    ap_http_respond_error(req, 429, details);
    return 1;
}

static void add(ap_buf_t *out, const char *name, const char *value)
{
    if (value && !ap_security_has_header(out, name))
        ap_buf_printf(out, "%s: %s\r\n", name, value);
}

void ap_security_response(ap_request_t *req, int status)
{
    ap_conn_t *c = req->conn;
    const ap_config_t *conf = c->worker->conf;
    ap_buf_t *out = &req->resp_headers;
    (void)status;
    add(out, "X-Content-Type-Options", conf->sec_content_type_options);
    add(out, "X-Frame-Options", conf->sec_frame_options);
    add(out, "Referrer-Policy", conf->sec_referrer_policy);
    add(out, "Content-Security-Policy",
        req->route == AP_ROUTE_STATIC ? conf->sec_csp_static : conf->sec_csp);
    add(out, "Permissions-Policy", conf->sec_permissions_policy);
    add(out, "Cross-Origin-Opener-Policy", conf->sec_coop);
    /* CORS for requests that were routed: a request the parser refused
     * has headers nobody should act on. */
    if (!c->admin && req->client_addr[0])
        ap_cors_headers(out, req, conf);
}

const char *ap_security_client_addr(const ap_request_t *req)
{
    if (req->client_addr[0])
        return req->client_addr;
    return req->conn ? req->conn->client_addr : "-";
}
