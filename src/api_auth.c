/* SPDX-License-Identifier: BSD-2-Clause */
/* Authentication and the per-request transaction settings. */
#include "api_auth.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_tree.h>

#include "alloc.h"
#include "api.h"
#include "clock.h"
#include "json.h"
#include "jwt.h"

void ap_auth_cleanup(ap_auth_t *auth)
{
    free(auth->role);
    free(auth->claims);
    memset(auth, 0, sizeof(*auth));
}

/* A JWT error: 401 with the header RFC 6750 asks for. PostgREST writes
 * the description with Haskell's show: a quoted string, \" and \\
 * escaped; our messages hold neither. */
static void invalid_token(ap_request_t *req, const char *code, const ap_jwt_error_t *e)
{
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_printf(&b, "Bearer error=\"invalid_token\", error_description=\"%s\"", e->message);
    ap_http_add_header(req, "WWW-Authenticate", b.data);
    ap_buf_reset(&b);
    ap_json_append_error(&b, code, e->message, e->details[0] ? e->details : NULL, NULL);
    ap_http_respond(req, 401, "application/json; charset=utf-8", b.data, b.len);
    ap_buf_cleanup(&b);
}

/* The token of "Authorization: Bearer <token>" (the scheme in any case);
 * 0 when the header uses another scheme. */
static int bearer_token(ap_str_t h, ap_str_t *tok)
{
    size_t i = 0;
    while (i < h.len && (h.p[i] == ' ' || h.p[i] == '\t'))
        i++;
    if (h.len - i < 6 || strncasecmp(h.p + i, "bearer", 6) != 0)
        return 0;
    i += 6;
    if (i < h.len && h.p[i] != ' ' && h.p[i] != '\t')
        return 0; /* "Bearerx": another scheme */
    while (i < h.len && (h.p[i] == ' ' || h.p[i] == '\t'))
        i++;
    size_t end = h.len;
    while (end > i && (h.p[end - 1] == ' ' || h.p[end - 1] == '\t'))
        end--;
    *tok = ap_str_make(h.p + i, end - i);
    return 1;
}

/* The claims with "role" set to role, as PostgREST hands them to the
 * database. */
static char *claims_with_role(yajl_val tree, const char *role)
{
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_append_str(&b, "{\"role\":");
    ap_json_append_string(&b, role, strlen(role));
    for (size_t i = 0; tree && i < tree->u.object.len; i++) {
        const char *k = tree->u.object.keys[i];
        if (strcmp(k, "role") == 0)
            continue;
        ap_buf_append_char(&b, ',');
        ap_json_append_string(&b, k, strlen(k));
        ap_buf_append_char(&b, ':');
        ap_jwt_json_append(&b, tree->u.object.values[i]);
    }
    ap_buf_append_char(&b, '}');
    return b.data;
}

static int anonymous(ap_request_t *req, const ap_config_t *conf, ap_auth_t *auth)
{
    if (conf->api_anon_role == NULL) {
        ap_api_error(req, 401, "PGRST302", "Anonymous access is disabled", NULL, NULL);
        return -1;
    }
    auth->role = ap_xstrdup(conf->api_anon_role);
    auth->claims = claims_with_role(NULL, conf->api_anon_role);
    auth->authenticated = 0;
    return 0;
}

int ap_api_auth(ap_request_t *req, ap_db_t *db, ap_auth_t *auth)
{
    const ap_config_t *conf = db->conf;
    memset(auth, 0, sizeof(*auth));
    const ap_str_t *h = ap_http_header(req, AP_STR("authorization"));
    ap_str_t tok;
    /* No token (or another scheme, such as Basic): the anonymous role. */
    if (h == NULL || !bearer_token(*h, &tok))
        return anonymous(req, conf, auth);
    if (conf->api_jwt_keys == NULL) {
        ap_api_error(req, 500, "PGRST300", "Server lacks JWT secret", NULL, NULL);
        return -1;
    }

    ap_jwt_opts_t opts = {conf->api_jwt_aud, (int64_t)(conf->api_jwt_leeway_ms / 1000)};
    ap_jwt_claims_t claims;
    ap_jwt_error_t err;
    int64_t now = (int64_t)(ap_clock_wall_ms() / 1000);
    ap_jwt_status_t st =
        ap_jwt_verify(conf->api_jwt_keys, tok.p, tok.len, now, &opts, &claims, &err);
    if (st != AP_JWT_OK) {
        invalid_token(req, st == AP_JWT_DECODE ? "PGRST301" : "PGRST303", &err);
        return -1;
    }

    yajl_val v = ap_jwt_path_get(conf->api_jwt_role_path, claims.tree);
    if (v == NULL || YAJL_IS_NULL(v)) {
        /* A valid token without a role runs as the anonymous role, with its
         * claims (PostgREST does the same). */
        int rc = anonymous(req, conf, auth);
        if (rc == 0) {
            free(auth->claims);
            auth->claims = claims_with_role(claims.tree, auth->role);
        }
        ap_jwt_claims_cleanup(&claims);
        return rc;
    }
    if (YAJL_IS_STRING(v)) {
        auth->role = ap_xstrdup(v->u.string);
    } else {
        /* A number (or anything else) names the role by its JSON text. */
        ap_buf_t b;
        ap_buf_init(&b);
        ap_jwt_json_append(&b, v);
        auth->role = b.data;
    }
    /* The common case, {"role": "x", ...}, goes to the database as signed. */
    yajl_val top = NULL;
    for (size_t i = 0; i < claims.tree->u.object.len; i++)
        if (strcmp(claims.tree->u.object.keys[i], "role") == 0)
            top = claims.tree->u.object.values[i];
    if (top == v && YAJL_IS_STRING(v)) {
        auth->claims = claims.text;
        claims.text = NULL;
    } else {
        auth->claims = claims_with_role(claims.tree, auth->role);
    }
    auth->authenticated = 1;
    ap_jwt_claims_cleanup(&claims);
    return 0;
}

/* --- settings --- */

static int same_name(ap_str_t a, ap_str_t b)
{
    return a.len == b.len && strncasecmp(a.p, b.p, a.len) == 0;
}

static void append_lower(ap_buf_t *b, ap_str_t s)
{
    ap_buf_t low;
    ap_buf_init(&low);
    ap_buf_reserve(&low, s.len);
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        ap_buf_append_char(&low, c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
    }
    ap_json_append_string(b, low.data, low.len);
    ap_buf_cleanup(&low);
}

/* {"name": "value", ...}: lower-cased names, the last of a repeated header
 * winning (as PostgREST's map does), Cookie left to request.cookies. */
static char *headers_json(const ap_request_t *req)
{
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_append_char(&b, '{');
    int first = 1;
    for (size_t i = 0; i < req->nheaders; i++) {
        const ap_header_t *h = &req->headers[i];
        if (same_name(h->name, AP_STR("cookie")))
            continue;
        int later = 0;
        for (size_t j = i + 1; j < req->nheaders && !later; j++)
            later = same_name(h->name, req->headers[j].name);
        if (later)
            continue;
        if (!first)
            ap_buf_append_char(&b, ',');
        first = 0;
        append_lower(&b, h->name);
        ap_buf_append_char(&b, ':');
        ap_json_append_string(&b, h->value.p, h->value.len);
    }
    ap_buf_append_char(&b, '}');
    return b.data;
}

static ap_str_t trim(ap_str_t s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* The pairs of every Cookie header, "a=1; b=2", as {"a":"1","b":"2"};
 * the last of a repeated name wins. */
static char *cookies_json(const ap_request_t *req)
{
    ap_str_t *names = NULL, *values = NULL;
    size_t n = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!same_name(req->headers[i].name, AP_STR("cookie")))
            continue;
        ap_str_t v = req->headers[i].value;
        size_t at = 0;
        while (at <= v.len) {
            size_t end = at;
            while (end < v.len && v.p[end] != ';')
                end++;
            ap_str_t pair = trim(ap_str_make(v.p + at, end - at));
            const char *eq = memchr(pair.p, '=', pair.len);
            if (pair.len && eq && eq > pair.p) {
                names = ap_xrealloc(names, (n + 1) * sizeof(*names));
                values = ap_xrealloc(values, (n + 1) * sizeof(*values));
                names[n] = trim(ap_str_make(pair.p, (size_t)(eq - pair.p)));
                values[n] = trim(ap_str_make(eq + 1, pair.len - (size_t)(eq + 1 - pair.p)));
                n++;
            }
            at = end + 1;
        }
    }
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_append_char(&b, '{');
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        int later = 0;
        for (size_t j = i + 1; j < n && !later; j++)
            later =
                names[i].len == names[j].len && memcmp(names[i].p, names[j].p, names[i].len) == 0;
        if (later)
            continue;
        if (!first)
            ap_buf_append_char(&b, ',');
        first = 0;
        ap_json_append_string(&b, names[i].p, names[i].len);
        ap_buf_append_char(&b, ':');
        ap_json_append_string(&b, values[i].p, values[i].len);
    }
    ap_buf_append_char(&b, '}');
    free(names);
    free(values);
    return b.data;
}

void ap_api_query_settings(ap_pg_query_t *q, ap_request_t *req, const ap_auth_t *auth)
{
    q->with_settings = 1;
    q->pre_request = 1;
    q->settings[AP_PG_SET_ROLE] = ap_xstrdup(auth->role);
    q->settings[AP_PG_SET_CLAIMS] = ap_xstrdup(auth->claims);
    q->settings[AP_PG_SET_METHOD] = ap_xstrndup(req->method_name.p, req->method_name.len);
    q->settings[AP_PG_SET_PATH] = ap_xstrndup(req->path.p, req->path.len);
    q->settings[AP_PG_SET_HEADERS] = headers_json(req);
    q->settings[AP_PG_SET_COOKIES] = cookies_json(req);
}

/* --- what the transaction asks of the response --- */

static int token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A header field name (RFC 9110 token) and a value without CR, LF or other
 * control characters but tab: nothing the database sets can split the
 * response. */
static int header_ok(const char *name, const char *value)
{
    if (!*name)
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (!token_char(*p))
            return 0;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}

static int framing_header(const char *name)
{
    static const char *const names[] = {
        "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(name, names[i]) == 0)
            return 1;
    return 0;
}

int ap_api_response_settings(ap_request_t *req, const ap_pg_query_t *q, int *status,
                             ap_buf_t *content_type)
{
    const PGresult *r = q->response;
    if (r == NULL || PQntuples(r) != 1 || PQnfields(r) != 2)
        return 0;
    const char *hs = PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0);
    const char *ss = PQgetisnull(r, 0, 1) ? "" : PQgetvalue(r, 0, 1);

    if (*ss) {
        char *end;
        long v = strtol(ss, &end, 10);
        while (*end == ' ')
            end++;
        if (*end || end == ss || v < 200 || v > 599) {
            ap_api_error(req, 500, "PGRST112", "response.status guc must be a valid status code",
                         NULL, NULL);
            return -1;
        }
        *status = (int)v;
    }
    if (*hs == '\0')
        return 0;

    yajl_val tree = yajl_tree_parse(hs, NULL, 0);
    int bad = tree == NULL || !YAJL_IS_ARRAY(tree);
    for (size_t i = 0; !bad && i < tree->u.array.len; i++) {
        yajl_val o = tree->u.array.values[i];
        bad = !YAJL_IS_OBJECT(o) || o->u.object.len != 1 ||
              !YAJL_IS_STRING(o->u.object.values[0]) ||
              !header_ok(o->u.object.keys[0], o->u.object.values[0]->u.string);
    }
    if (bad) {
        yajl_tree_free(tree);
        ap_api_error(req, 500, "PGRST111",
                     "response.headers guc must be a JSON array composed of objects with a single "
                     "key and a string value",
                     NULL, NULL);
        return -1;
    }
    for (size_t i = 0; i < tree->u.array.len; i++) {
        yajl_val o = tree->u.array.values[i];
        const char *name = o->u.object.keys[0], *value = o->u.object.values[0]->u.string;
        if (framing_header(name))
            continue;
        if (strcasecmp(name, "content-type") == 0) {
            ap_buf_reset(content_type);
            ap_buf_append_str(content_type, value);
            continue;
        }
        ap_http_add_header(req, name, value);
    }
    yajl_tree_free(tree);
    return 0;
}
