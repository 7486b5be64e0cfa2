/* SPDX-License-Identifier: BSD-2-Clause */
/* Reading tables and views as PostgREST does: GET and HEAD /table with the
 * URL grammar of api_query.c, Range and Prefer: count, JSON, CSV and the
 * singular object. Every name in the statement comes from the schema
 * cache; every value is a bind parameter; PostgreSQL renders the body. */
#include "api_read.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "api.h"
#include "api_auth.h"
#include "api_query.h"
#include "api_rpc.h"
#include "json.h"

typedef enum { FMT_JSON, FMT_OBJECT, FMT_CSV } format_t;

/* The protocol's limit on a statement's parameters. */
#define AP_READ_MAX_PARAMS 65535

/* --- Content negotiation ---------------------------------------------- */

typedef struct {
    format_t format;
    int strip_nulls;
} accept_t;

/* Media types apiary can produce for a table, by the Accept header's
 * preference (q-values, then order). Returns 0, or -1 when none of them is
 * acceptable. */
static int negotiate(const ap_str_t *accept, accept_t *out)
{
    out->format = FMT_JSON;
    out->strip_nulls = 0;
    if (accept == NULL || accept->len == 0)
        return 0;
    double best_q = -1;
    const char *p = accept->p, *end = accept->p + accept->len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        /* type/subtype */
        while (p < item_end && (*p == ' ' || *p == '\t'))
            p++;
        const char *t = p;
        while (p < item_end && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        ap_str_t type = ap_str_make(t, (size_t)(p - t));
        double q = 1;
        int strip = 0;
        while (p < item_end) {
            while (p < item_end && (*p == ';' || *p == ' ' || *p == '\t'))
                p++;
            const char *a = p;
            while (p < item_end && *p != ';')
                p++;
            ap_str_t param = ap_str_make(a, (size_t)(p - a));
            while (param.len && (param.p[param.len - 1] == ' ' || param.p[param.len - 1] == '\t'))
                param.len--;
            if (param.len > 2 && strncasecmp(param.p, "q=", 2) == 0) {
                char num[16];
                size_t n = param.len - 2 < sizeof(num) - 1 ? param.len - 2 : sizeof(num) - 1;
                memcpy(num, param.p + 2, n);
                num[n] = '\0';
                q = strtod(num, NULL);
            } else if (ap_str_caseeq(param, AP_STR("nulls=stripped")))
                strip = 1;
        }
        int fmt = -1;
        if (ap_str_caseeq(type, AP_STR("application/json")) ||
            ap_str_caseeq(type, AP_STR("application/*")) || ap_str_caseeq(type, AP_STR("*/*")) ||
            ap_str_caseeq(type, AP_STR("application/vnd.pgrst.array+json")) ||
            ap_str_caseeq(type, AP_STR("application/vnd.pgrst.array")))
            fmt = FMT_JSON;
        else if (ap_str_caseeq(type, AP_STR("application/vnd.pgrst.object+json")) ||
                 ap_str_caseeq(type, AP_STR("application/vnd.pgrst.object")))
            fmt = FMT_OBJECT;
        else if (ap_str_caseeq(type, AP_STR("text/csv")))
            fmt = FMT_CSV;
        if (fmt >= 0 && q > 0 && q > best_q) {
            best_q = q;
            out->format = (format_t)fmt;
            out->strip_nulls = strip;
        }
        p = comma ? comma + 1 : end;
    }
    return best_q > 0 ? 0 : -1;
}

/* --- Prefer ------------------------------------------------------------ */

typedef enum { COUNT_NONE, COUNT_EXACT, COUNT_PLANNED, COUNT_ESTIMATED } count_t;

/* Returns 0, or -1 after answering (handling=strict with a preference
 * apiary does not know). */
static int prefer(ap_request_t *req, count_t *count)
{
    *count = COUNT_NONE;
    ap_buf_t invalid;
    ap_buf_init(&invalid);
    int strict = 0;
    for (size_t h = 0; h < req->nheaders; h++) {
        if (!ap_str_caseeq(req->headers[h].name, AP_STR("prefer")))
            continue;
        ap_str_t v = req->headers[h].value;
        size_t i = 0;
        while (i < v.len) {
            size_t j = i;
            while (j < v.len && v.p[j] != ',')
                j++;
            ap_str_t tok = ap_str_make(v.p + i, j - i);
            while (tok.len && (tok.p[0] == ' ' || tok.p[0] == '\t'))
                tok.p++, tok.len--;
            while (tok.len && (tok.p[tok.len - 1] == ' ' || tok.p[tok.len - 1] == '\t'))
                tok.len--;
            i = j + 1;
            if (tok.len == 0)
                continue;
            if (ap_str_eq(tok, AP_STR("count=exact")))
                *count = COUNT_EXACT;
            else if (ap_str_eq(tok, AP_STR("count=planned")))
                *count = COUNT_PLANNED;
            else if (ap_str_eq(tok, AP_STR("count=estimated")))
                *count = COUNT_ESTIMATED;
            else if (ap_str_eq(tok, AP_STR("handling=strict")))
                strict = 1;
            else if (ap_str_eq(tok, AP_STR("handling=lenient")))
                strict = 0;
            else if (tok.len > 7 && memcmp(tok.p, "return=", 7) == 0)
                ; /* meaningful for writes; a read has nothing to return but itself */
            else if (tok.len > 3 && memcmp(tok.p, "tx=", 3) == 0)
                ;
            else {
                if (invalid.len)
                    ap_buf_append_str(&invalid, ", ");
                ap_buf_append(&invalid, tok.p, tok.len);
            }
        }
    }
    if (strict && invalid.len) {
        ap_buf_t d;
        ap_buf_init(&d);
        ap_buf_printf(&d, "Invalid preferences: %s", invalid.data);
        ap_api_error(req, 400, "PGRST122", "Invalid preferences given with handling=strict",
                     d.data, NULL);
        ap_buf_cleanup(&d);
        ap_buf_cleanup(&invalid);
        return -1;
    }
    ap_buf_cleanup(&invalid);
    return 0;
}

/* --- The statement ----------------------------------------------------- */

typedef struct {
    ap_buf_t sql;
    char **params;
    int nparams, cap;
    const ap_schema_table_t *t;
    char *bad_column; /* set when a name is not in the cache */
} stmt_t;

static int add_param(stmt_t *s, const char *value)
{
    if (s->nparams == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->params = ap_xrealloc(s->params, (size_t)s->cap * sizeof(char *));
    }
    s->params[s->nparams] = value ? ap_xstrdup(value) : NULL;
    return ++s->nparams;
}

static const ap_schema_column_t *column(const ap_schema_table_t *t, const char *name)
{
    for (size_t i = 0; i < t->ncolumns; i++)
        if (strcmp(t->columns[i].name, name) == 0)
            return &t->columns[i];
    return NULL;
}

static int is_index(const char *k)
{
    if (*k == '-')
        k++;
    if (*k == '\0')
        return 0;
    for (; *k; k++)
        if (!isdigit((unsigned char)*k))
            return 0;
    return 1;
}

/* A column, or an expression for its JSON path in parentheses. */
static int emit_field(stmt_t *s, const ap_qfield_t *f, const ap_schema_column_t **colp)
{
    const ap_schema_column_t *col = column(s->t, f->name);
    if (col == NULL) {
        if (s->bad_column == NULL)
            s->bad_column = ap_xstrdup(f->name);
        return -1;
    }
    if (colp)
        *colp = col;
    if (f->nkeys == 0) {
        ap_api_quote_ident(&s->sql, col->name);
        return 0;
    }
    int json = strcmp(col->type, "json") == 0 || strcmp(col->type, "jsonb") == 0;
    ap_buf_append_str(&s->sql, json ? "(" : "(to_jsonb(");
    ap_api_quote_ident(&s->sql, col->name);
    if (!json)
        ap_buf_append_char(&s->sql, ')');
    for (size_t i = 0; i < f->nkeys; i++) {
        int n = add_param(s, f->keys[i]);
        ap_buf_printf(&s->sql, "%s$%d::%s", f->as_text[i] ? "->>" : "->", n,
                      is_index(f->keys[i]) ? "int" : "text");
    }
    ap_buf_append_char(&s->sql, ')');
    return 0;
}

static const char *fts_function(ap_qop_t op)
{
    switch (op) {
    case AP_QOP_PLFTS:
        return "plainto_tsquery";
    case AP_QOP_PHFTS:
        return "phraseto_tsquery";
    case AP_QOP_WFTS:
        return "websearch_to_tsquery";
    default:
        return "to_tsquery";
    }
}

static int emit_node(stmt_t *s, const ap_qnode_t *n);

static int emit_filter(stmt_t *s, const ap_qnode_t *n)
{
    const ap_schema_column_t *col;
    switch (n->op) {
    case AP_QOP_IS: {
        static const char *const is[] = {"is null", "is not null", "is true", "is false",
                                         "is unknown"};
        if (emit_field(s, &n->field, &col) < 0)
            return -1;
        ap_buf_printf(&s->sql, " %s", is[n->is]);
        return 0;
    }
    case AP_QOP_IN:
        if (emit_field(s, &n->field, &col) < 0)
            return -1;
        ap_buf_printf(&s->sql, " = any($%d)", add_param(s, n->value));
        return 0;
    case AP_QOP_FTS:
    case AP_QOP_PLFTS:
    case AP_QOP_PHFTS:
    case AP_QOP_WFTS: {
        size_t at = s->sql.len;
        if (emit_field(s, &n->field, &col) < 0)
            return -1;
        int lang = n->lang ? add_param(s, n->lang) : 0;
        if (strcmp(col->type, "tsvector") != 0 || n->field.nkeys > 0) {
            /* to_tsvector([lang,] field) around what was just written */
            char *field_sql = ap_xstrndup(s->sql.data + at, s->sql.len - at);
            s->sql.len = at;
            if (lang)
                ap_buf_printf(&s->sql, "to_tsvector($%d::regconfig, %s)", lang, field_sql);
            else
                ap_buf_printf(&s->sql, "to_tsvector(%s)", field_sql);
            free(field_sql);
        }
        int v = add_param(s, n->value);
        if (lang)
            ap_buf_printf(&s->sql, " @@ %s($%d::regconfig, $%d)", fts_function(n->op), lang, v);
        else
            ap_buf_printf(&s->sql, " @@ %s($%d)", fts_function(n->op), v);
        return 0;
    }
    default:
        if (emit_field(s, &n->field, &col) < 0)
            return -1;
        if (n->mod != AP_QMOD_NONE)
            ap_buf_printf(&s->sql, " %s %s($%d)", ap_qop_sql(n->op),
                          n->mod == AP_QMOD_ANY ? "any" : "all", add_param(s, n->value));
        else
            ap_buf_printf(&s->sql, " %s $%d", ap_qop_sql(n->op), add_param(s, n->value));
        return 0;
    }
}

static int emit_node(stmt_t *s, const ap_qnode_t *n)
{
    if (n->negate)
        ap_buf_append_str(&s->sql, "not ");
    ap_buf_append_char(&s->sql, '(');
    if (n->kind == AP_QNODE_FILTER) {
        if (emit_filter(s, n) < 0)
            return -1;
    } else {
        for (size_t i = 0; i < n->nkids; i++) {
            if (i)
                ap_buf_append_str(&s->sql, n->kind == AP_QNODE_AND ? " and " : " or ");
            if (emit_node(s, &n->kids[i]) < 0)
                return -1;
        }
    }
    ap_buf_append_char(&s->sql, ')');
    return 0;
}

static void emit_from(stmt_t *s)
{
    ap_buf_append_str(&s->sql, " from ");
    ap_api_quote_ident(&s->sql, s->t->schema);
    ap_buf_append_char(&s->sql, '.');
    ap_api_quote_ident(&s->sql, s->t->name);
}

/* " where ..." for the query's filters, or nothing. */
static int emit_where(stmt_t *s, const ap_query_t *q)
{
    if (q->where.nkids == 0)
        return 0;
    ap_buf_append_str(&s->sql, " where ");
    for (size_t i = 0; i < q->where.nkids; i++) {
        if (i)
            ap_buf_append_str(&s->sql, " and ");
        if (emit_node(s, &q->where.kids[i]) < 0)
            return -1;
    }
    return 0;
}

static int emit_select(stmt_t *s, const ap_query_t *q)
{
    if (q->nselect == 0) {
        ap_buf_append_char(&s->sql, '*');
        return 0;
    }
    for (size_t i = 0; i < q->nselect; i++) {
        const ap_qselect_t *it = &q->select[i];
        if (i)
            ap_buf_append_str(&s->sql, ", ");
        if (it->star) {
            ap_buf_append_char(&s->sql, '*');
            continue;
        }
        if (it->cast)
            ap_buf_append_char(&s->sql, '(');
        if (emit_field(s, &it->field, NULL) < 0)
            return -1;
        if (it->cast)
            ap_buf_printf(&s->sql, ")::%s", it->cast);
        /* The key's name: the alias, else the path's last key, else the column. */
        const char *name = it->alias          ? it->alias
                           : it->field.nkeys ? it->field.keys[it->field.nkeys - 1]
                                             : it->field.name;
        ap_buf_append_str(&s->sql, " as ");
        ap_api_quote_ident(&s->sql, name);
    }
    return 0;
}

static int emit_order(stmt_t *s, const ap_query_t *q)
{
    for (size_t i = 0; i < q->norder; i++) {
        ap_buf_append_str(&s->sql, i ? ", " : " order by ");
        if (emit_field(s, &q->order[i].field, NULL) < 0)
            return -1;
        ap_buf_append_str(&s->sql, q->order[i].desc ? " desc" : " asc");
        if (q->order[i].nulls)
            ap_buf_append_str(&s->sql, q->order[i].nulls == 1 ? " nulls first" : " nulls last");
    }
    return 0;
}

/* The count query's text and its parameters as one text[] literal, for
 * apiary_public.planned_count (sql/apiary.sql): PostgreSQL quotes the values. */
static char *params_array(const stmt_t *s)
{
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_append_char(&b, '{');
    for (int i = 0; i < s->nparams; i++) {
        if (i)
            ap_buf_append_char(&b, ',');
        if (s->params[i] == NULL) {
            ap_buf_append_str(&b, "NULL");
            continue;
        }
        ap_buf_append_char(&b, '"');
        for (const char *c = s->params[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                ap_buf_append_char(&b, '\\');
            ap_buf_append_char(&b, *c);
        }
        ap_buf_append_char(&b, '"');
    }
    ap_buf_append_char(&b, '}');
    return b.data;
}

/* --- Ranges ------------------------------------------------------------ */

typedef struct {
    int64_t lower;
    int64_t upper; /* -1: open */
} range_t;

/* "Range: 0-24" (items). Returns 1 when one was given, 0 when none (or
 * one that is not an item range, which PostgREST ignores too), -1 when it
 * is backwards. */
static int header_range(const ap_request_t *req, range_t *r)
{
    const ap_str_t *h = ap_http_header(req, AP_STR("range"));
    if (h == NULL)
        return 0;
    ap_str_t v = *h;
    if (v.len > 6 && strncasecmp(v.p, "items=", 6) == 0)
        v = ap_str_make(v.p + 6, v.len - 6);
    size_t i = 0;
    int64_t a = 0, b = -1;
    if (i >= v.len || !isdigit((unsigned char)v.p[i]))
        return 0;
    for (; i < v.len && isdigit((unsigned char)v.p[i]); i++) {
        if (a > INT64_MAX / 20)
            return 0;
        a = a * 10 + (v.p[i] - '0');
    }
    if (i >= v.len || v.p[i] != '-')
        return 0;
    i++;
    if (i < v.len) {
        b = 0;
        for (; i < v.len && isdigit((unsigned char)v.p[i]); i++) {
            if (b > INT64_MAX / 20)
                return 0;
            b = b * 10 + (v.p[i] - '0');
        }
        if (i != v.len)
            return 0;
        if (b < a)
            return -1;
    }
    r->lower = a;
    r->upper = b;
    return 1;
}

/* --- Running it -------------------------------------------------------- */

typedef struct {
    ap_request_t *req;
    format_t format;
    count_t count;
    int64_t lower;
    int authenticated;
    char *schema; /* for Content-Profile when several are exposed */
} read_call_t;

static void read_call_free(void *data)
{
    read_call_t *c = data;
    free(c->schema);
    free(c);
}

static void on_abort(ap_request_t *req)
{
    ap_pg_abandon(req->handler_data);
}

static const char *content_type(format_t f)
{
    switch (f) {
    case FMT_OBJECT:
        return "application/vnd.pgrst.object+json; charset=utf-8";
    case FMT_CSV:
        return "text/csv; charset=utf-8";
    default:
        return "application/json; charset=utf-8";
    }
}

static void on_result(ap_pg_query_t *q, ap_pg_status_t st, PGresult *res)
{
    read_call_t *c = q->data;
    ap_request_t *req = c->req;
    if (st != AP_PG_OK) {
        ap_api_pool_error(req, st);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ap_api_pg_error(req, res, c->authenticated);
        return;
    }
    if (PQntuples(res) != 1) {
        ap_api_error(req, 500, "PGRSTX00", "The read statement returned no row", NULL, NULL);
        return;
    }
    int64_t page = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    int has_total = c->count != COUNT_NONE && !PQgetisnull(res, 0, 2);
    int64_t total = has_total ? strtoll(PQgetvalue(res, 0, 2), NULL, 10) : -1;
    char total_s[24] = "*";
    if (has_total)
        snprintf(total_s, sizeof(total_s), "%" PRId64, total);
    char range[80];

    if (c->schema)
        ap_http_add_header(req, "Content-Profile", c->schema);
    if (has_total && c->lower > total) {
        snprintf(range, sizeof(range), "*/%s", total_s);
        ap_http_add_header(req, "Content-Range", range);
        char details[128];
        snprintf(details, sizeof(details),
                 "An offset of %" PRId64 " was requested, but there are only %" PRId64 " rows.",
                 c->lower, total);
        ap_api_error(req, 416, "PGRST103", "Requested range not satisfiable", details, NULL);
        return;
    }
    if (c->format == FMT_OBJECT && page != 1) {
        char details[64];
        snprintf(details, sizeof(details), "The result contains %" PRId64 " rows", page);
        ap_api_error(req, 406, "PGRST116", "Cannot coerce the result to a single JSON object",
                     details, NULL);
        return;
    }
    if (page > 0)
        snprintf(range, sizeof(range), "%" PRId64 "-%" PRId64 "/%s", c->lower,
                 c->lower + page - 1, total_s);
    else
        snprintf(range, sizeof(range), "*/%s", total_s);
    ap_http_add_header(req, "Content-Range", range);
    if (c->count == COUNT_EXACT)
        ap_http_add_header(req, "Preference-Applied", "count=exact");
    else if (c->count == COUNT_PLANNED)
        ap_http_add_header(req, "Preference-Applied", "count=planned");
    else if (c->count == COUNT_ESTIMATED)
        ap_http_add_header(req, "Preference-Applied", "count=estimated");
    int status = 200;
    if (has_total && page < total)
        status = 206;
    /* response.status and response.headers, set by [api] pre_request. */
    ap_buf_t ctype;
    ap_buf_init(&ctype);
    if (ap_api_response_settings(req, q, &status, &ctype) < 0) {
        ap_buf_cleanup(&ctype);
        return;
    }
    if (status == 204 || status == 304)
        ap_http_respond(req, status, NULL, NULL, 0);
    else
        ap_http_respond(req, status, ctype.len ? ctype.data : content_type(c->format),
                        PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
    ap_buf_cleanup(&ctype);
}

/* The schema of the request: Accept-Profile when given (it must be one of
 * [api] schemas), else the first. Returns NULL after answering. */
static const char *request_schema(ap_request_t *req, ap_db_t *db, int *several)
{
    *several = strchr(db->schemas, ',') != NULL;
    const ap_str_t *prof = ap_http_header(req, AP_STR("accept-profile"));
    if (prof == NULL)
        return db->default_schema;
    const char *p = db->schemas;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (ap_str_eq(*prof, ap_str_make(p, n))) {
            /* The cache's strings live as long as the request needs them. */
            for (size_t i = 0; i < db->schema->ntables; i++)
                if (ap_str_eq(*prof, ap_str_make(db->schema->tables[i].schema,
                                                 strlen(db->schema->tables[i].schema))))
                    return db->schema->tables[i].schema;
            return db->default_schema; /* exposed, but holds no table */
        }
        p = e ? e + 1 : p + n;
    }
    ap_buf_t msg;
    ap_buf_init(&msg);
    ap_buf_append_str(&msg, "The schema must be one of the following: ");
    for (const char *s = db->schemas; *s; s++) {
        if (*s == ',')
            ap_buf_append_str(&msg, ", ");
        else
            ap_buf_append_char(&msg, *s);
    }
    ap_api_error(req, 406, "PGRST106", msg.data, NULL, NULL);
    ap_buf_cleanup(&msg);
    return NULL;
}

/* Levenshtein distance, for "Perhaps you meant the table ...". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            size_t del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = cur;
        }
    }
    return row[lb];
}

static void table_not_found(ap_request_t *req, ap_db_t *db, const char *schema, const char *name)
{
    const ap_schema_table_t *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < db->schema->ntables; i++) {
        const ap_schema_table_t *t = &db->schema->tables[i];
        if (strcmp(t->schema, schema) != 0)
            continue;
        size_t d = distance(name, t->name);
        if (d < best_d) {
            best_d = d;
            best = t;
        }
    }
    ap_buf_t msg, hint;
    ap_buf_init(&msg);
    ap_buf_init(&hint);
    ap_buf_printf(&msg, "Could not find the table '%s.%s' in the schema cache", schema, name);
    size_t limit = strlen(name) / 2 > 2 ? strlen(name) / 2 : 2;
    if (best && best_d <= limit)
        ap_buf_printf(&hint, "Perhaps you meant the table '%s.%s'", best->schema, best->name);
    ap_api_error(req, 404, "PGRST205", msg.data, NULL, hint.len ? hint.data : NULL);
    ap_buf_cleanup(&msg);
    ap_buf_cleanup(&hint);
}

/* The SQL and its parameters for a read of t. */
static int build(stmt_t *s, const ap_query_t *q, format_t format, int strip_nulls, int head,
                 count_t count, int64_t offset, int64_t limit, int64_t max_rows)
{
    ap_buf_t *b = &s->sql;
    const char *agg = strip_nulls ? "json_strip_nulls(json_agg(_r))" : "json_agg(_r)";
    ap_buf_append_str(b, "select ");
    if (head)
        ap_buf_append_str(b, "''");
    else if (format == FMT_OBJECT)
        ap_buf_printf(b, "coalesce((%s->0)::text, 'null')", agg);
    else if (format == FMT_CSV)
        ap_buf_append_str(
            b, "coalesce((select string_agg(k, ',') from json_object_keys(json_agg(_r)->0) k), '') "
               "|| E'\\n' || "
               "coalesce(string_agg(substring(_r::text, 2, length(_r::text) - 2), E'\\n'), '')");
    else
        ap_buf_printf(b, "coalesce(%s, '[]')::text", agg);
    ap_buf_append_str(b, ", count(_r)");

    if (count == COUNT_EXACT || (count == COUNT_ESTIMATED && max_rows == 0)) {
        ap_buf_append_str(b, ", (select count(*)");
        emit_from(s);
        if (emit_where(s, q) < 0)
            return -1;
        ap_buf_append_char(b, ')');
    } else if (count != COUNT_NONE) {
        /* The count query for the planner, with parameters of its own. */
        stmt_t c = {.t = s->t};
        ap_buf_init(&c.sql);
        ap_buf_append_str(&c.sql, "select 1");
        emit_from(&c);
        int rc = emit_where(&c, q);
        char *arr = params_array(&c);
        int qn = add_param(s, c.sql.data);
        int pn = add_param(s, arr);
        free(arr);
        for (int i = 0; i < c.nparams; i++)
            free(c.params[i]);
        free(c.params);
        ap_buf_cleanup(&c.sql);
        if (rc < 0) {
            s->bad_column = c.bad_column;
            return -1;
        }
        if (count == COUNT_PLANNED) {
            ap_buf_printf(b, ", apiary_public.planned_count($%d, $%d::text[])", qn, pn);
        } else {
            /* estimated: exact up to max_rows, the planner's beyond */
            char mr[24];
            snprintf(mr, sizeof(mr), "%" PRId64, max_rows);
            ap_buf_printf(b, ", (select case when _p.n > $%d::bigint then _p.n else (select count(*)",
                          add_param(s, mr));
            emit_from(s);
            if (emit_where(s, q) < 0)
                return -1;
            ap_buf_printf(b, ") end from (select apiary_public.planned_count($%d, $%d::text[]) as n) _p)", qn,
                          pn);
        }
    }

    ap_buf_append_str(b, " from (select ");
    if (emit_select(s, q) < 0)
        return -1;
    emit_from(s);
    if (emit_where(s, q) < 0 || emit_order(s, q) < 0)
        return -1;
    if (limit >= 0) {
        char n[24];
        snprintf(n, sizeof(n), "%" PRId64, limit);
        ap_buf_printf(b, " limit $%d::bigint", add_param(s, n));
    }
    if (offset > 0) {
        char n[24];
        snprintf(n, sizeof(n), "%" PRId64, offset);
        ap_buf_printf(b, " offset $%d::bigint", add_param(s, n));
    }
    ap_buf_append_str(b, ") _r");
    return 0;
}

void ap_api_read(ap_request_t *req, ap_db_t *db, ap_str_t raw_name)
{
    const ap_config_t *conf = db->conf;
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        ap_http_add_header(req, "Allow", "GET, HEAD");
        ap_buf_t m;
        ap_buf_init(&m);
        ap_buf_printf(&m, "Unsupported HTTP method: %.*s", (int)req->method_name.len,
                      req->method_name.p);
        ap_api_error(req, 405, "PGRST117", m.data,
                     "apiary serves tables and views read-only: GET and HEAD", NULL);
        ap_buf_cleanup(&m);
        return;
    }
    ap_buf_t name;
    ap_buf_init(&name);
    if (ap_api_url_decode(&name, raw_name, 0) < 0 || name.len == 0 ||
        memchr(name.data, '/', name.len)) {
        ap_buf_cleanup(&name);
        ap_api_error(req, 404, "PGRST125", "Invalid path specified in request URL", NULL, NULL);
        return;
    }
    int several;
    const char *schema = request_schema(req, db, &several);
    if (schema == NULL) {
        ap_buf_cleanup(&name);
        return;
    }
    const ap_schema_table_t *t = ap_schema_table(db->schema, schema, ap_buf_str(&name));
    if (t == NULL) {
        table_not_found(req, db, schema, name.data);
        ap_buf_cleanup(&name);
        return;
    }
    ap_buf_cleanup(&name);

    accept_t acc;
    if (negotiate(ap_http_header(req, AP_STR("accept")), &acc) < 0) {
        const ap_str_t *a = ap_http_header(req, AP_STR("accept"));
        ap_buf_t m;
        ap_buf_init(&m);
        ap_buf_printf(&m, "None of these media types are available: %.*s",
                      (int)(a->len > 200 ? 200 : a->len), a->p);
        ap_api_error(req, 406, "PGRST107", m.data, NULL, NULL);
        ap_buf_cleanup(&m);
        return;
    }
    count_t count;
    if (prefer(req, &count) < 0)
        return;
    ap_auth_t auth;
    if (ap_api_auth(req, db, &auth) < 0)
        return;

    ap_query_t q;
    if (ap_query_parse(&q, req->query) < 0) {
        if (strcmp(q.code, "PGRST200") == 0) {
            ap_buf_t m, d;
            ap_buf_init(&m);
            ap_buf_init(&d);
            ap_buf_printf(&m, "Could not find a relationship between '%s' and '%s' in the schema cache",
                          t->name, q.message);
            ap_buf_printf(&d,
                          "Searched for a foreign key relationship between '%s' and '%s' in the "
                          "schema '%s', but no matches were found.",
                          t->name, q.message, t->schema);
            ap_api_error(req, 400, "PGRST200", m.data, d.data, NULL);
            ap_buf_cleanup(&m);
            ap_buf_cleanup(&d);
        } else {
            ap_api_error(req, q.status, q.code, q.message, q.details, q.hint);
        }
        ap_query_free(&q);
        ap_auth_cleanup(&auth);
        return;
    }

    /* The rows wanted: the Range header's, within limit/offset's, within
     * max_rows. */
    range_t hr = {0, -1};
    if (header_range(req, &hr) < 0) {
        ap_query_free(&q);
        ap_auth_cleanup(&auth);
        ap_api_error(req, 416, "PGRST103", "Requested range not satisfiable",
                     "The lower boundary must be lower than or equal to the upper boundary in "
                     "the Range header.",
                     NULL);
        return;
    }
    int64_t lower = q.offset > hr.lower ? q.offset : hr.lower;
    int bounded = q.limit >= 0 || hr.upper >= 0;
    int64_t upper = q.limit >= 0 ? q.offset + q.limit - 1 : INT64_MAX;
    if (hr.upper >= 0 && hr.upper < upper)
        upper = hr.upper;
    int64_t max_rows = (int64_t)conf->api_max_rows;
    if (max_rows > 0 && (!bounded || upper - lower + 1 > max_rows)) {
        upper = lower + max_rows - 1;
        bounded = 1;
    }
    int64_t limit = !bounded ? -1 : (upper < lower ? 0 : upper - lower + 1);

    stmt_t s = {.t = t};
    ap_buf_init(&s.sql);
    int rc = build(&s, &q, acc.format, acc.strip_nulls, req->method == HTTP_HEAD, count, lower,
                   limit, max_rows);
    ap_query_free(&q);
    if (rc < 0) {
        ap_buf_t m;
        ap_buf_init(&m);
        ap_buf_printf(&m, "column %s.%s does not exist", t->name, s.bad_column);
        ap_api_error(req, 400, "42703", m.data, NULL, NULL);
        ap_buf_cleanup(&m);
        free(s.bad_column);
        ap_buf_cleanup(&s.sql);
        for (int i = 0; i < s.nparams; i++)
            free(s.params[i]);
        free(s.params);
        ap_auth_cleanup(&auth);
        return;
    }

    if (s.nparams > AP_READ_MAX_PARAMS) {
        /* libpq and the protocol take at most 65535 parameters. */
        char d[128];
        snprintf(d, sizeof(d), "the query needs %d values; one statement takes at most %d",
                 s.nparams, AP_READ_MAX_PARAMS);
        ap_api_error(req, 400, "PGRST100", "Too many filters, keys or values in the query string",
                     d, NULL);
        ap_buf_cleanup(&s.sql);
        for (int i = 0; i < s.nparams; i++)
            free(s.params[i]);
        free(s.params);
        ap_auth_cleanup(&auth);
        return;
    }
    ap_pg_query_t *pq = ap_pg_query_new(s.nparams);
    for (int i = 0; i < s.nparams; i++)
        pq->params[i] = s.params[i];
    free(s.params);
    pq->nparams = s.nparams;
    pq->sql = ap_xstrndup(s.sql.data, s.sql.len);
    ap_buf_cleanup(&s.sql);
    pq->read_only = 1;
    ap_api_query_settings(pq, req, &auth);
    req->role = pq->settings[AP_PG_SET_ROLE]; /* for the access log: pq outlives the answer */
    pq->db_us = &req->db_us;

    read_call_t *c = ap_xcalloc(1, sizeof(*c));
    c->req = req;
    c->format = acc.format;
    c->count = count;
    c->lower = lower;
    c->authenticated = auth.authenticated;
    c->schema = several ? ap_xstrdup(t->schema) : NULL;
    ap_auth_cleanup(&auth);
    pq->done = on_result;
    pq->data = c;
    pq->free_data = read_call_free;
    req->on_abort = on_abort;
    req->handler_data = pq;
    ap_pg_submit(db->pool, pq);
}
