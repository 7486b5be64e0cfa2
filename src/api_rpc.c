/* SPDX-License-Identifier: BSD-2-Clause */
/* RPC: argument matching against the schema cache, the SQL that calls the
 * function, and its JSON result. */
#include "api_rpc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "alloc.h"
#include "api.h"
#include "api_auth.h"
#include "json.h"
#include "log.h"

/* The request's arguments: names, their values as text when each is a
 * scalar (then every argument goes as a typed parameter of its own), and
 * the JSON object text (for json_to_record, which converts arrays and
 * objects to PostgreSQL types). */
typedef struct {
    char **names;
    char **values; /* text, NULL for JSON null */
    unsigned char *json_text; /* values[i] is a JSON text (not a string's content) */
    size_t n;
    ap_buf_t json; /* the object passed as $1 */
    int raw_body;  /* json is the whole body (single unnamed json parameter) */
    int scalars;   /* every value is a scalar: typed parameters will do */
} args_t;

static void args_cleanup(args_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->names[i]);
        free(a->values[i]);
    }
    free(a->names);
    free(a->values);
    free(a->json_text);
    ap_buf_cleanup(&a->json);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ap_api_url_decode(ap_buf_t *out, ap_str_t s, int plus)
{
    ap_buf_reserve(out, s.len);
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (c == '%') {
            if (i + 2 >= s.len)
                return -1;
            int h = hexval(s.p[i + 1]), l = hexval(s.p[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (c == '\0')
            return -1;
        ap_buf_append_char(out, c);
    }
    return 0;
}

static int has_name(const args_t *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->names[i], name) == 0)
            return 1;
    return 0;
}

static void add_arg(args_t *a, const char *name, size_t len, char *value, int json_text)
{
    a->names = ap_xrealloc(a->names, (a->n + 1) * sizeof(char *));
    a->values = ap_xrealloc(a->values, (a->n + 1) * sizeof(char *));
    a->json_text = ap_xrealloc(a->json_text, a->n + 1);
    a->names[a->n] = ap_xstrndup(name, len);
    a->values[a->n] = value;
    a->json_text[a->n] = (unsigned char)json_text;
    a->n++;
}

static const char *value_of(const args_t *a, const char *name, int *json_text)
{
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->names[i], name) == 0) {
            *json_text = a->json_text[i];
            return a->values[i];
        }
    }
    *json_text = 0;
    return NULL;
}

/* GET: ?a=1&b=x becomes {"a":"1","b":"x"}; PostgreSQL converts the
 * strings to the parameters' types. */
static int args_from_query(args_t *a, ap_str_t query, const char **why)
{
    ap_buf_t key, val;
    ap_buf_init(&key);
    ap_buf_init(&val);
    a->scalars = 1;
    ap_buf_append_char(&a->json, '{');
    size_t i = 0;
    int rc = 0;
    while (i < query.len) {
        size_t end = i;
        while (end < query.len && query.p[end] != '&')
            end++;
        ap_str_t pair = ap_str_make(query.p + i, end - i);
        i = end + 1;
        if (pair.len == 0)
            continue;
        const char *eq = memchr(pair.p, '=', pair.len);
        ap_str_t k = eq ? ap_str_make(pair.p, (size_t)(eq - pair.p)) : pair;
        ap_str_t v = eq ? ap_str_make(eq + 1, pair.len - k.len - 1) : ap_str_make(pair.p, 0);
        ap_buf_reset(&key);
        ap_buf_reset(&val);
        if (ap_api_url_decode(&key, k, 1) < 0 || ap_api_url_decode(&val, v, 1) < 0) {
            *why = "malformed percent-encoding in the query string";
            rc = -1;
            break;
        }
        if (has_name(a, key.data ? key.data : "")) {
            *why = "an argument is given twice";
            rc = -1;
            break;
        }
        add_arg(a, key.data ? key.data : "", key.len,
                ap_xstrndup(val.data ? val.data : "", val.len), 0);
        if (a->n > 1)
            ap_buf_append_char(&a->json, ',');
        ap_json_append_string(&a->json, key.data ? key.data : "", key.len);
        ap_buf_append_char(&a->json, ':');
        ap_json_append_string(&a->json, val.data ? val.data : "", val.len);
    }
    ap_buf_append_char(&a->json, '}');
    ap_buf_cleanup(&key);
    ap_buf_cleanup(&val);
    return rc;
}

/* Where yajl stopped in invalid JSON, for the error's details. */
static void json_error_details(const char *text, size_t len, ap_buf_t *out)
{
    yajl_handle h = yajl_alloc(NULL, NULL, NULL);
    yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
    size_t at = yajl_get_bytes_consumed(h);
    if (st == yajl_status_ok) {
        /* The text ended before the value did. */
        st = yajl_complete_parse(h);
        at = len;
    }
    if (st != yajl_status_ok) {
        unsigned char *e = yajl_get_error(h, 0, (const unsigned char *)text, len);
        size_t n = strlen((char *)e);
        while (n && (e[n - 1] == '\n' || e[n - 1] == ' '))
            n--;
        ap_buf_printf(out, "%.*s at byte %zu", (int)n, (char *)e, at);
        yajl_free_error(h, e);
    } else {
        ap_buf_append_str(out, "empty body");
    }
    yajl_free(h);
}

/* POST: the body must be JSON; an object's keys are the argument names. */
static int args_from_body(args_t *a, const ap_request_t *req, yajl_val *tree, ap_buf_t *details)
{
    const char *body = req->body.len ? req->body.data : "{}";
    size_t len = req->body.len ? req->body.len : 2;
    char err[256];
    *tree = yajl_tree_parse(body, err, sizeof(err));
    if (*tree == NULL || memchr(body, '\0', len) != NULL) {
        json_error_details(body, len, details);
        return -1;
    }
    if (YAJL_IS_OBJECT(*tree)) {
        a->scalars = 1;
        for (size_t i = 0; i < YAJL_GET_OBJECT(*tree)->len; i++) {
            const char *k = YAJL_GET_OBJECT(*tree)->keys[i];
            yajl_val v = YAJL_GET_OBJECT(*tree)->values[i];
            if (has_name(a, k))
                continue;
            if (YAJL_IS_STRING(v))
                add_arg(a, k, strlen(k), ap_xstrdup(YAJL_GET_STRING(v)), 0);
            else if (YAJL_IS_NUMBER(v))
                add_arg(a, k, strlen(k), ap_xstrdup(YAJL_GET_NUMBER(v)), 1);
            else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
                add_arg(a, k, strlen(k), ap_xstrdup(YAJL_IS_TRUE(v) ? "true" : "false"), 1);
            else if (YAJL_IS_NULL(v))
                add_arg(a, k, strlen(k), NULL, 1);
            else {
                add_arg(a, k, strlen(k), NULL, 1);
                a->scalars = 0;
            }
        }
    }
    ap_buf_append(&a->json, body, len);
    return 0;
}

static int is_json_type(const char *t)
{
    return strcmp(t, "json") == 0 || strcmp(t, "jsonb") == 0;
}

/* A function matches when every argument names one of its parameters
 * and every parameter without a default is given. */
static int matches(const ap_schema_func_t *f, const args_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        size_t k;
        for (k = 0; k < f->nargs; k++)
            if (f->args[k].name[0] && strcmp(f->args[k].name, a->names[i]) == 0)
                break;
        if (k == f->nargs)
            return 0;
    }
    size_t required = f->nargs - f->ndefaults;
    for (size_t k = 0; k < required; k++)
        if (!f->args[k].name[0] || !has_name(a, f->args[k].name))
            return 0;
    return 1;
}

static int single_json_param(const ap_schema_func_t *f)
{
    return f->nargs == 1 && f->args[0].name[0] == '\0' && is_json_type(f->args[0].type);
}

/* The statement that calls f, in one of two forms:
 *   select <render> from "schema"."fn"("x" := $1::int, ...) _r
 * when every value is a scalar (each a typed parameter), else
 *   select <render> from json_to_record($1::json) as _a("x" int, ...),
 *     lateral "schema"."fn"("x" := _a."x", ...) _r
 * which lets PostgreSQL turn JSON arrays and objects into its types.
 * Fills params (owned by the caller) and returns how many there are. */
static int build_sql(ap_buf_t *sql, const ap_schema_func_t *f, const args_t *a, char **params)
{
    ap_buf_t call;
    ap_buf_init(&call);
    ap_api_quote_ident(&call, f->schema);
    ap_buf_append_char(&call, '.');
    ap_api_quote_ident(&call, f->name);
    ap_buf_append_char(&call, '(');
    int given = 0, nparams = 0;
    if (a->raw_body) {
        ap_buf_printf(&call, "$1::%s", f->args[0].type);
        params[nparams++] = ap_xstrndup(a->json.data, a->json.len);
    } else if (a->scalars) {
        for (size_t k = 0; k < f->nargs; k++) {
            if (!has_name(a, f->args[k].name))
                continue;
            int json_text;
            const char *v = value_of(a, f->args[k].name, &json_text);
            if (nparams)
                ap_buf_append_str(&call, ", ");
            ap_api_quote_ident(&call, f->args[k].name);
            ap_buf_printf(&call, " := $%d::%s", nparams + 1, f->args[k].type);
            /* A json/jsonb parameter takes the JSON text of a string,
             * quotes and all; others take the string's content. */
            if (v && is_json_type(f->args[k].type) && !json_text) {
                ap_buf_t j;
                ap_buf_init(&j);
                ap_json_append_string(&j, v, strlen(v));
                params[nparams++] = ap_xstrndup(j.data, j.len);
                ap_buf_cleanup(&j);
            } else {
                params[nparams++] = v ? ap_xstrdup(v) : NULL;
            }
        }
    } else {
        for (size_t k = 0; k < f->nargs; k++) {
            if (!has_name(a, f->args[k].name))
                continue;
            if (given++)
                ap_buf_append_str(&call, ", ");
            ap_api_quote_ident(&call, f->args[k].name);
            ap_buf_append_str(&call, " := _a.");
            ap_api_quote_ident(&call, f->args[k].name);
        }
    }
    ap_buf_append_char(&call, ')');

    ap_buf_t from;
    ap_buf_init(&from);
    if (given) {
        params[nparams++] = ap_xstrndup(a->json.data, a->json.len);
        ap_buf_append_str(&from, " from json_to_record($1::json) as _a(");
        int first = 1;
        for (size_t k = 0; k < f->nargs; k++) {
            if (!has_name(a, f->args[k].name))
                continue;
            if (!first)
                ap_buf_append_str(&from, ", ");
            first = 0;
            ap_api_quote_ident(&from, f->args[k].name);
            ap_buf_printf(&from, " %s", f->args[k].type);
        }
        ap_buf_append_char(&from, ')');
    }

    if (f->retset) {
        /* Sets become arrays; the row count feeds Content-Range. */
        ap_buf_printf(sql, "select coalesce(json_agg(_r), '[]')::text, count(*)%s%s %s _r",
                      from.len ? from.data : " from", from.len ? ", lateral" : "", call.data);
    } else if (f->ret_kind == 'c' || f->ret_kind == 'r') {
        ap_buf_printf(sql, "select to_json(_r)::text%s%s %s _r", from.len ? from.data : " from",
                      from.len ? ", lateral" : "", call.data);
    } else if (f->ret_kind == 'v') {
        ap_buf_printf(sql, "select %s::text%s", call.data, from.len ? from.data : "");
    } else {
        ap_buf_printf(sql, "select to_json(%s)::text%s", call.data, from.len ? from.data : "");
    }
    ap_buf_cleanup(&call);
    ap_buf_cleanup(&from);
    return nparams;
}

typedef struct {
    ap_request_t *req;
    char ret_kind;
    int retset;
    int authenticated;
} rpc_call_t;

static void on_abort(ap_request_t *req)
{
    ap_pg_query_t *q = req->handler_data;
    ap_pg_abandon(q);
}

static void on_result(ap_pg_query_t *q, ap_pg_status_t st, PGresult *res)
{
    rpc_call_t *call = q->data;
    ap_request_t *req = call->req;
    char ret_kind = call->ret_kind;
    int retset = call->retset;
    if (st != AP_PG_OK) {
        ap_api_pool_error(req, st);
        return;
    }
    ExecStatusType es = PQresultStatus(res);
    if (es != PGRES_TUPLES_OK) {
        ap_api_pg_error(req, res, call->authenticated);
        return;
    }
    /* response.status and response.headers, set by the function or by
     * pre_request. */
    int status = ret_kind == 'v' && !retset ? 204 : 200;
    ap_buf_t ctype;
    ap_buf_init(&ctype);
    if (ap_api_response_settings(req, q, &status, &ctype) < 0) {
        ap_buf_cleanup(&ctype);
        return;
    }
    const char *content_type = ctype.len ? ctype.data : "application/json; charset=utf-8";
    if (status == 204 || status == 304 || (ret_kind == 'v' && !retset)) {
        /* No body: a void function's, and none may go with 204 or 304. */
        ap_http_respond(req, status, status == 204 || status == 304 ? NULL : content_type, NULL,
                        0);
        ap_buf_cleanup(&ctype);
        return;
    }
    const char *body = "null";
    size_t len = 4;
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
        body = PQgetvalue(res, 0, 0);
        len = (size_t)PQgetlength(res, 0, 0);
    }
    if (retset && PQntuples(res) > 0 && PQnfields(res) > 1) {
        long n = strtol(PQgetvalue(res, 0, 1), NULL, 10);
        char range[64];
        if (n > 0)
            snprintf(range, sizeof(range), "0-%ld/*", n - 1);
        else
            snprintf(range, sizeof(range), "*/*");
        ap_http_add_header(req, "Content-Range", range);
    }
    ap_http_respond(req, status, content_type, body, len);
    ap_buf_cleanup(&ctype);
}

static void not_found(ap_request_t *req, const char *schema, const char *name, const args_t *a)
{
    ap_buf_t msg;
    ap_buf_init(&msg);
    ap_buf_printf(&msg, "Could not find the function %s.%s(", schema, name);
    for (size_t i = 0; i < a->n; i++)
        ap_buf_printf(&msg, "%s%s", i ? ", " : "", a->names[i]);
    ap_buf_append_str(&msg, ") in the schema cache");
    ap_api_error(req, 404, "PGRST202", msg.data,
                 "Searched for the function with the given parameter names, but no matches were "
                 "found in the schema cache.",
                 NULL);
    ap_buf_cleanup(&msg);
}

void ap_api_rpc(ap_request_t *req, ap_db_t *db, ap_str_t raw_name)
{
    int is_get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    if (!is_get && req->method != HTTP_POST) {
        ap_http_add_header(req, "Allow", "GET, HEAD, POST");
        ap_api_error(req, 405, "PGRST101", "Only GET and POST are allowed for RPC", NULL, NULL);
        return;
    }
    /* Who the request runs as, before the function is looked up (as
     * PostgREST does): a bad token is a 401 whatever the function. */
    ap_auth_t auth;
    if (ap_api_auth(req, db, &auth) < 0)
        return;

    ap_buf_t name;
    ap_buf_init(&name);
    if (ap_api_url_decode(&name, raw_name, 0) < 0 || name.len == 0 ||
        memchr(name.data, '/', name.len)) {
        ap_buf_cleanup(&name);
        ap_auth_cleanup(&auth);
        ap_api_error(req, 404, "PGRST125", "Invalid path specified in request URL", NULL, NULL);
        return;
    }

    args_t a;
    memset(&a, 0, sizeof(a));
    ap_buf_init(&a.json);
    yajl_val tree = NULL;
    const char *why = NULL;
    ap_buf_t details;
    ap_buf_init(&details);
    const ap_str_t *ctype = ap_http_header(req, AP_STR("content-type"));
    int form = !is_get && ctype && ctype->len >= 33 &&
               strncasecmp(ctype->p, "application/x-www-form-urlencoded", 33) == 0;
    if (is_get || form) {
        /* A form body carries named arguments the way a query string does
         * (PostgREST takes both). */
        ap_str_t src = is_get ? req->query : ap_buf_str(&req->body);
        if (args_from_query(&a, src, &why) < 0) {
            ap_api_error(req, 400, is_get ? "PGRST100" : "PGRST102",
                         is_get ? "Failed to parse the query string" : "Failed to parse the form",
                         why, NULL);
            goto out;
        }
    } else if (args_from_body(&a, req, &tree, &details) < 0) {
        ap_api_error(req, 400, "PGRST102", "Empty or invalid json", details.data, NULL);
        goto out;
    }

    size_t nf;
    const ap_schema_func_t **funcs =
        ap_schema_funcs(db->schema, db->default_schema, ap_buf_str(&name), &nf);
    const ap_schema_func_t *best = NULL;
    int ambiguous = 0;
    int object_body = is_get || form || (tree && YAJL_IS_OBJECT(tree));
    for (size_t i = 0; i < nf; i++) {
        if (!object_body || !matches(funcs[i], &a))
            continue;
        if (best == NULL || funcs[i]->nargs < best->nargs) {
            best = funcs[i];
            ambiguous = 0;
        } else if (funcs[i]->nargs == best->nargs) {
            ambiguous = 1;
        }
    }
    /* PostgREST's fallback: one unnamed json/jsonb parameter takes the
     * whole body. */
    if (best == NULL && !is_get && !form) {
        for (size_t i = 0; i < nf; i++) {
            if (single_json_param(funcs[i])) {
                best = funcs[i];
                a.raw_body = 1;
                break;
            }
        }
    }
    free(funcs);
    if (best == NULL) {
        if (!is_get && tree && !YAJL_IS_OBJECT(tree) && nf > 0)
            ap_api_error(req, 400, "PGRST102", "Empty or invalid json",
                         "the body must be a JSON object of named arguments", NULL);
        else
            not_found(req, db->default_schema, name.data, &a);
        goto out;
    }
    if (ambiguous) {
        ap_api_error(req, 300, "PGRST203",
                     "Could not choose the best candidate function between overloads", NULL,
                     "Try renaming the parameters or the function itself in the database so "
                     "function overloading can be resolved");
        goto out;
    }

    ap_buf_t sql;
    ap_buf_init(&sql);
    ap_pg_query_t *q = ap_pg_query_new((int)best->nargs + 1);
    q->nparams = build_sql(&sql, best, &a, q->params);
    q->sql = ap_xstrndup(sql.data, sql.len);
    ap_buf_cleanup(&sql);
    q->with_settings = 1;
    /* GET runs read-only, as PostgREST does. PostgreSQL already refuses
     * writes inside STABLE and IMMUTABLE functions, so only a VOLATILE one
     * needs the setting (which costs the database a little each time). */
    q->read_only = is_get && best->volatility == 'v';
    ap_api_query_settings(q, req, &auth);
    req->role = q->settings[AP_PG_SET_ROLE]; /* for the access log: q outlives the answer */
    /* A function may set response.status and response.headers. */
    q->with_response = 1;

    rpc_call_t *call = ap_xmalloc(sizeof(*call));
    call->req = req;
    call->ret_kind = best->ret_kind;
    call->retset = best->retset;
    call->authenticated = auth.authenticated;
    q->done = on_result;
    q->data = call;
    q->free_data = free;
    /* Set before submitting: the answer may come at once. */
    req->on_abort = on_abort;
    req->handler_data = q;
    q->db_us = &req->db_us; /* for the access log */
    ap_pg_submit(db->pool, q);
out:
    ap_auth_cleanup(&auth);
    if (tree)
        yajl_tree_free(tree);
    args_cleanup(&a);
    ap_buf_cleanup(&name);
    ap_buf_cleanup(&details);
}
