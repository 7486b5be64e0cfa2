/* SPDX-License-Identifier: BSD-2-Clause */
/* Prometheus metrics. */
#include "metrics.h"

#include <llhttp.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"
#include "shm.h"
#include "status.h"
#include "version.h"

static const double buckets[AP_M_NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const char *const method_names[AP_M_NMETHODS] = {"GET",   "HEAD",   "POST",    "PUT",
                                                        "PATCH", "DELETE", "OPTIONS", "other"};
static const char *const route_names[AP_ROUTE_NKINDS] = {"builtin", "api", "rpc", "static"};
static const char *const sql_classes[AP_M_NSQLCLASSES] = {
    "08", "22", "23", "25", "28", "40", "42", "53", "54", "55", "57", "58", "P0", "XX", "PGRST",
    "other"};

const char *const ap_metrics_tls_fail_names[AP_TLS_NFAILS] = {
    "protocol", "version", "cipher", "alpn", "certificate", "plain_http", "timeout", "eof",
    "renegotiation"};

#define ADD(field, v) __atomic_fetch_add(&(field), (v), __ATOMIC_RELAXED)
#define LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

static int method_index(int method)
{
    switch (method) {
    case HTTP_GET:
        return AP_M_GET;
    case HTTP_HEAD:
        return AP_M_HEAD;
    case HTTP_POST:
        return AP_M_POST;
    case HTTP_PUT:
        return AP_M_PUT;
    case HTTP_PATCH:
        return AP_M_PATCH;
    case HTTP_DELETE:
        return AP_M_DELETE;
    case HTTP_OPTIONS:
        return AP_M_OPTIONS;
    default:
        return AP_M_OTHER;
    }
}

/* Each observation lands in the first bucket it fits; rendering sums
 * them into Prometheus's cumulative "le" counts. */
static void observe(uint64_t *bkts, uint64_t *count, uint64_t *sum_us, uint64_t us)
{
    double s = (double)us / 1e6;
    int i = 0;
    while (i < AP_M_NBUCKETS && s > buckets[i])
        i++;
    if (i < AP_M_NBUCKETS)
        ADD(bkts[i], 1);
    ADD(*count, 1);
    ADD(*sum_us, us);
}

void ap_metrics_request(ap_metrics_t *m, int method, int status, int route, uint64_t duration_us)
{
    int cls = status / 100 - 1;
    if (cls < 0 || cls > 4)
        cls = 4;
    if (route < 0 || route >= AP_ROUTE_NKINDS)
        route = AP_ROUTE_BUILTIN;
    ADD(m->requests[method_index(method)][cls], 1);
    observe(m->duration_buckets[route], &m->duration_count[route], &m->duration_sum_us[route],
            duration_us);
}

void ap_metrics_pool_wait(ap_metrics_t *m, uint64_t wait_us)
{
    observe(m->pool_wait_buckets, &m->pool_wait_count, &m->pool_wait_sum_us, wait_us);
}

void ap_metrics_db_error(ap_metrics_t *m, const char *sqlstate)
{
    int i = AP_M_NSQLCLASSES - 1;
    if (sqlstate == NULL)
        i = 0; /* a connection failure: class 08 */
    else if (strncmp(sqlstate, "PGRST", 5) == 0)
        i = AP_M_NSQLCLASSES - 2;
    else
        for (int k = 0; k < AP_M_NSQLCLASSES - 2; k++)
            if (strncmp(sqlstate, sql_classes[k], 2) == 0)
                i = k;
    ADD(m->db_errors[i], 1);
}

void ap_metrics_tls_handshake(ap_metrics_t *m, int tls13, int resumed)
{
    ADD(m->tls_handshakes[tls13 != 0][resumed != 0], 1);
}

void ap_metrics_tls_failure(ap_metrics_t *m, int reason)
{
    if (reason >= 0 && reason < AP_TLS_NFAILS)
        ADD(m->tls_failures[reason], 1);
}

void ap_metrics_fold(ap_metrics_t *dst, const ap_metrics_t *src)
{
    /* The struct is uint64_t counters only: fold it as an array. */
    uint64_t *d = (uint64_t *)dst;
    const uint64_t *s = (const uint64_t *)src;
    for (size_t i = 0; i < sizeof(*dst) / sizeof(uint64_t); i++)
        ADD(d[i], LOAD(s[i]));
}

/* The retired block plus every live worker's. */
static void total(ap_shm_t *shm, ap_metrics_t *t)
{
    memset(t, 0, sizeof(*t));
    ap_metrics_fold(t, &shm->retired);
    for (uint32_t i = 0; i < shm->nslots; i++)
        if (LOAD(shm->slots[i].pid) > 0)
            ap_metrics_fold(t, &shm->slots[i].metrics);
}

static void family(ap_buf_t *out, const char *name, const char *type, const char *help)
{
    ap_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(ap_buf_t *out, const char *name, const char *label, const uint64_t *bkts,
                      uint64_t count, uint64_t sum_us)
{
    uint64_t acc = 0;
    for (int i = 0; i < AP_M_NBUCKETS; i++) {
        acc += bkts[i];
        ap_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label, label[0] ? "," : "",
                      buckets[i], (unsigned long long)acc);
    }
    ap_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, label[0] ? "," : "",
                  (unsigned long long)count);
    ap_buf_printf(out, "%s_sum%s%s%s %.6f\n", name, label[0] ? "{" : "", label, label[0] ? "}" : "",
                  (double)sum_us / 1e6);
    ap_buf_printf(out, "%s_count%s%s%s %llu\n", name, label[0] ? "{" : "", label,
                  label[0] ? "}" : "", (unsigned long long)count);
}

void ap_metrics_render(ap_buf_t *out, ap_shm_t *shm)
{
    ap_metrics_t t;
    total(shm, &t);
    static const char *const classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

    family(out, "apiary_http_requests_total", "counter",
           "HTTP requests answered, by method and status class.");
    for (int m = 0; m < AP_M_NMETHODS; m++)
        for (int c = 0; c < 5; c++)
            if (t.requests[m][c] || (m == AP_M_GET && c == 1))
                ap_buf_printf(out, "apiary_http_requests_total{method=\"%s\",status_class=\"%s\"} %llu\n",
                              method_names[m], classes[c], (unsigned long long)t.requests[m][c]);

    family(out, "apiary_http_request_duration_seconds", "histogram",
           "Time from a request's first byte to its response, by route kind.");
    for (int r = 0; r < AP_ROUTE_NKINDS; r++) {
        char label[32];
        snprintf(label, sizeof(label), "route=\"%s\"", route_names[r]);
        histogram(out, "apiary_http_request_duration_seconds", label, t.duration_buckets[r],
                  t.duration_count[r], t.duration_sum_us[r]);
    }

    uint64_t in_flight = 0, bytes = 0, conns = 0, reloads = 0, db_conn[4] = {0};
    uint64_t workers[AP_WORKER_BACKOFF + 1] = {0};
    for (uint32_t i = 0; i < shm->nslots; i++) {
        ap_shm_slot_t *s = &shm->slots[i];
        if (LOAD(s->state) == AP_WORKER_BACKOFF)
            workers[AP_WORKER_BACKOFF]++;
        if (LOAD(s->pid) <= 0)
            continue;
        in_flight += LOAD(s->in_flight);
        conns += LOAD(s->connections);
        uint32_t st = LOAD(s->state);
        if (st <= AP_WORKER_BACKOFF)
            workers[st]++;
        for (int k = 0; k < 4; k++)
            db_conn[k] += LOAD(s->db_conns[k]);
    }
    for (uint32_t i = 0; i < shm->nslots; i++) {
        if (LOAD(shm->slots[i].pid) <= 0)
            continue;
        bytes += LOAD(shm->slots[i].bytes_out);
        reloads += LOAD(shm->slots[i].schema_reloads);
    }
    bytes += LOAD(shm->retired_bytes_out);
    reloads += LOAD(shm->retired_schema_reloads);

    family(out, "apiary_http_in_flight", "gauge", "Requests being handled now.");
    ap_buf_printf(out, "apiary_http_in_flight %llu\n", (unsigned long long)in_flight);
    family(out, "apiary_http_response_bytes_total", "counter",
           "Response bytes handed to the kernel.");
    ap_buf_printf(out, "apiary_http_response_bytes_total %llu\n", (unsigned long long)bytes);
    family(out, "apiary_connections", "gauge", "Open client connections, by state.");
    ap_buf_printf(out, "apiary_connections{state=\"open\"} %llu\n", (unsigned long long)conns);

    family(out, "apiary_worker_restarts_total", "counter",
           "Workers replaced by the master, by reason.");
    for (int r = 0; r < AP_RESTART_NREASONS; r++)
        ap_buf_printf(out, "apiary_worker_restarts_total{reason=\"%s\"} %llu\n",
                      ap_restart_reason_names[r], (unsigned long long)LOAD(shm->restarts[r]));

    family(out, "apiary_workers", "gauge", "Worker processes, by state.");
    for (uint32_t st = AP_WORKER_STARTING; st <= AP_WORKER_BACKOFF; st++)
        ap_buf_printf(out, "apiary_workers{state=\"%s\"} %llu\n", ap_status_state_name(st),
                      (unsigned long long)workers[st]);

    static const char *const pool_states[4] = {"idle", "busy", "connecting", "down"};
    family(out, "apiary_db_pool_connections", "gauge",
           "Database pool connections of all workers, by state.");
    for (int k = 0; k < 4; k++)
        ap_buf_printf(out, "apiary_db_pool_connections{state=\"%s\"} %llu\n", pool_states[k],
                      (unsigned long long)db_conn[k]);

    family(out, "apiary_db_pool_wait_seconds", "histogram",
           "Time a request waited for a database pool connection.");
    histogram(out, "apiary_db_pool_wait_seconds", "", t.pool_wait_buckets, t.pool_wait_count,
              t.pool_wait_sum_us);

    family(out, "apiary_db_errors_total", "counter",
           "Database errors answered, by SQLSTATE class (08 includes connection failures).");
    for (int k = 0; k < AP_M_NSQLCLASSES; k++)
        if (t.db_errors[k] || k == 0)
            ap_buf_printf(out, "apiary_db_errors_total{sqlstate_class=\"%s\"} %llu\n",
                          sql_classes[k], (unsigned long long)t.db_errors[k]);

    family(out, "apiary_rate_limited_total", "counter",
           "Requests refused by rate limits (429), by limit.");
    for (int k = 0; k < AP_M_NRATELIMITS; k++)
        ap_buf_printf(out, "apiary_rate_limited_total{limit=\"%s\"} %llu\n", ap_rl_kind_names[k],
                      (unsigned long long)t.rate_limited[k]);
    static const char *const refused[AP_M_NREFUSED] = {"per_address", "total", "proxy_protocol"};
    family(out, "apiary_connections_refused_total", "counter",
           "Connections refused at the edge: over a connection limit (503), or without a valid "
           "PROXY protocol header (closed).");
    for (int k = 0; k < AP_M_NREFUSED; k++)
        ap_buf_printf(out, "apiary_connections_refused_total{reason=\"%s\"} %llu\n", refused[k],
                      (unsigned long long)t.conns_refused[k]);
    if (ap_rl_table) {
        ap_rl_stats_t st;
        ap_rl_stats(ap_rl_table, &st);
        family(out, "apiary_rate_limit_table_entries", "gauge",
               "Clients remembered by the shared rate-limit table.");
        ap_buf_printf(out, "apiary_rate_limit_table_entries %llu\n", (unsigned long long)st.used);
        family(out, "apiary_rate_limit_table_capacity", "gauge",
               "Entries the rate-limit table holds (security.rate_limit_table_size, rounded up).");
        ap_buf_printf(out, "apiary_rate_limit_table_capacity %llu\n",
                      (unsigned long long)ap_rl_capacity(ap_rl_table));
        family(out, "apiary_rate_limit_evictions_total", "counter",
               "Clients forgotten by the full rate-limit table to make room for new ones.");
        ap_buf_printf(out, "apiary_rate_limit_evictions_total %llu\n",
                      (unsigned long long)st.evictions);
    }
    family(out, "apiary_tls_handshakes_total", "counter",
           "TLS handshakes completed, by protocol version and session resumption.");
    for (int v = 0; v < 2; v++)
        for (int r = 0; r < 2; r++)
            ap_buf_printf(out, "apiary_tls_handshakes_total{protocol=\"%s\",resumed=\"%s\"} %llu\n",
                          v ? "TLSv1.3" : "TLSv1.2", r ? "true" : "false",
                          (unsigned long long)t.tls_handshakes[v][r]);
    family(out, "apiary_tls_handshake_failures_total", "counter",
           "TLS connections closed before or instead of a completed handshake, by reason.");
    for (int k = 0; k < AP_TLS_NFAILS; k++)
        ap_buf_printf(out, "apiary_tls_handshake_failures_total{reason=\"%s\"} %llu\n",
                      ap_metrics_tls_fail_names[k], (unsigned long long)t.tls_failures[k]);
    family(out, "apiary_schema_cache_reloads_total", "counter",
           "Schema cache loads after each worker's first.");
    ap_buf_printf(out, "apiary_schema_cache_reloads_total %llu\n", (unsigned long long)reloads);
    family(out, "apiary_build_info", "gauge", "apiary's version; the value is always 1.");
    ap_buf_printf(out, "apiary_build_info{version=\"%s\"} 1\n", AP_VERSION);
}
