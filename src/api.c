/* SPDX-License-Identifier: BSD-2-Clause */
/* API routing and PostgREST-style errors. */
#include "api.h"

#include <stdio.h>
#include <string.h>

#include "api_read.h"
#include "api_rpc.h"
#include "conn.h"
#include "json.h"
#include "metrics.h"
#include "worker.h"

int ap_api_match(const ap_config_t *conf, ap_str_t path, ap_str_t *rest)
{
    const char *prefix = conf->api_prefix;
    size_t n = strlen(prefix);
    if (n == 1) {
        *rest = path;
        return 1;
    }
    if (path.len < n || memcmp(path.p, prefix, n) != 0)
        return 0;
    if (path.len == n) {
        *rest = AP_STR("/");
        return 1;
    }
    if (path.p[n] != '/')
        return 0;
    *rest = ap_str_make(path.p + n, path.len - n);
    return 1;
}

void ap_api_quote_ident(ap_buf_t *b, const char *name)
{
    ap_buf_append_char(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            ap_buf_append_char(b, '"');
        ap_buf_append_char(b, *p);
    }
    ap_buf_append_char(b, '"');
}

void ap_api_error(ap_request_t *req, int status, const char *code, const char *message,
                  const char *details, const char *hint)
{
    ap_buf_t b;
    ap_buf_init(&b);
    /* For the access log; the body keeps PostgREST's four keys. */
    snprintf(req->error_code, sizeof(req->error_code), "%s", code ? code : "");
    ap_json_append_error(&b, code, message, details, hint);
    if (status == 401)
        ap_http_add_header(req, "WWW-Authenticate", "Bearer");
    ap_http_respond(req, status, "application/json; charset=utf-8", b.data, b.len);
    ap_buf_cleanup(&b);
}

int ap_api_status_for_sqlstate(const char *s, int authenticated)
{
    if (s == NULL || strlen(s) != 5)
        return 500;
    static const struct {
        const char *code; /* a prefix: "08" is class 08 */
        int status;
    } map[] = {
        {"23503", 409}, {"23505", 409}, {"25006", 405}, {"53400", 500}, {"P0001", 400},
        {"42883", 404}, {"42P01", 404}, {"42P17", 500}, {"57014", 504}, {"08", 503},
        {"09", 500},    {"0L", 403},    {"0P", 403},    {"25", 500},    {"28", 403},
        {"2D", 500},    {"38", 500},    {"39", 500},    {"3B", 500},    {"40", 500},
        {"53", 503},    {"54", 500},    {"55", 500},    {"57", 500},    {"58", 500},
        {"F0", 500},    {"HV", 500},    {"P0", 500},    {"XX", 500},
    };
    if (strcmp(s, "42501") == 0)
        return authenticated ? 403 : 401;
    /* RAISE SQLSTATE 'PT402' answers 402: the status is the code's digits
     * (a final status only; anything else is a 500). */
    if (s[0] == 'P' && s[1] == 'T') {
        if (s[2] >= '2' && s[2] <= '5' && s[3] >= '0' && s[3] <= '9' && s[4] >= '0' &&
            s[4] <= '9')
            return (s[2] - '0') * 100 + (s[3] - '0') * 10 + (s[4] - '0');
        return 500;
    }
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strncmp(s, map[i].code, strlen(map[i].code)) == 0)
            return map[i].status;
    return 400;
}

void ap_api_pg_error(ap_request_t *req, const PGresult *res, int authenticated)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (msg == NULL)
        msg = PQresultErrorMessage(res);
    int status = ap_api_status_for_sqlstate(state, authenticated);
    /* A role that does not exist (named by a JWT) is the client's to fix:
     * 401, as PostgREST answers since 12.2. */
    if (state && strcmp(state, "22023") == 0 && strncmp(msg, "role ", 5) == 0 &&
        strstr(msg, "does not exist"))
        status = 401;
    ap_metrics_db_error(&req->conn->worker->slot->metrics, state ? state : "XX000");
    if (status == 204 || status == 304) {
        /* RAISE SQLSTATE 'PT204': these statuses carry no body. */
        ap_http_respond(req, status, NULL, NULL, 0);
        return;
    }
    ap_api_error(req, status, state ? state : "XX000", msg,
                 PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
                 PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
}

void ap_api_pool_error(ap_request_t *req, ap_pg_status_t st)
{
    ap_metrics_db_error(&req->conn->worker->slot->metrics,
                        st == AP_PG_QUEUE_FULL || st == AP_PG_POOL_TIMEOUT ? "PGRST003"
                        : st == AP_PG_DEADLINE                           ? "57014"
                                                                         : NULL);
    switch (st) {
    case AP_PG_QUEUE_FULL:
    case AP_PG_POOL_TIMEOUT:
        ap_http_add_header(req, "Retry-After", "1");
        ap_api_error(req, 503, "PGRST003", "Timed out acquiring connection from connection pool.",
                     st == AP_PG_QUEUE_FULL ? "the wait queue is full (database.queue_size)"
                                            : "no connection came free within database.pool_timeout",
                     NULL);
        return;
    case AP_PG_DEADLINE:
        ap_api_error(req, 504, "57014", "canceling statement due to request timeout",
                     "the request took longer than database.request_timeout", NULL);
        return;
    case AP_PG_CONN_LOST:
        ap_http_add_header(req, "Retry-After", "1");
        ap_api_error(req, 503, "PGRST001", "Database client error. Retrying the connection.",
                     "the connection to the database broke while the request ran", NULL);
        return;
    case AP_PG_UNAVAILABLE:
    default:
        ap_http_add_header(req, "Retry-After", "1");
        ap_api_error(req, 503, "PGRST000",
                     "Database connection error. Retrying the connection.",
                     "no connection to the database could be made", NULL);
        return;
    }
}

void ap_api_dispatch(ap_request_t *req, ap_db_t *db, ap_str_t rest)
{
    /* The role the access log shows: the anonymous one until
     * authentication says otherwise. */
    if (req->role == NULL)
        req->role = db->conf->api_anon_role;
    if (db->schema == NULL) {
        ap_http_add_header(req, "Retry-After", "1");
        ap_api_error(req, 503, "PGRST002",
                     "Could not query the database for the schema cache. Retrying.", NULL, NULL);
        return;
    }
    /* A pool that is down answers 503 itself, at once or after waiting
     * out a brief outage (ap_pg_submit). */
    if (rest.len > 5 && memcmp(rest.p, "/rpc/", 5) == 0) {
        req->route = AP_ROUTE_RPC;
        ap_str_t name = ap_str_make(rest.p + 5, rest.len - 5);
        ap_api_rpc(req, db, name);
        return;
    }
    if (rest.len > 1) {
        req->route = AP_ROUTE_API;
        ap_api_read(req, db, ap_str_make(rest.p + 1, rest.len - 1));
        return;
    }
    ap_api_error(req, 404, "PGRST125", "Invalid path specified in request URL", NULL, NULL);
}
