/* SPDX-License-Identifier: BSD-2-Clause */
/* PostgREST's URL grammar for reads (select, filters, or/and trees, order,
 * limit, offset), a small recursive-descent parser over each decoded
 * query-string value. Errors are PostgREST's: PGRST100 with the value and
 * the column where parsing stopped. */
#include "api_query.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "api_rpc.h"
#include "buf.h"

static const struct {
    const char *name;
    const char *sql;
    int quantifiable; /* takes (any) and (all) */
} ops[] = {
    [AP_QOP_EQ] = {"eq", "=", 1},         [AP_QOP_NEQ] = {"neq", "<>", 0},
    [AP_QOP_GT] = {"gt", ">", 1},         [AP_QOP_GTE] = {"gte", ">=", 1},
    [AP_QOP_LT] = {"lt", "<", 1},         [AP_QOP_LTE] = {"lte", "<=", 1},
    [AP_QOP_LIKE] = {"like", "like", 1},  [AP_QOP_ILIKE] = {"ilike", "ilike", 1},
    [AP_QOP_MATCH] = {"match", "~", 1},   [AP_QOP_IMATCH] = {"imatch", "~*", 1},
    [AP_QOP_IN] = {"in", "in", 0},        [AP_QOP_IS] = {"is", "is", 0},
    [AP_QOP_ISDISTINCT] = {"isdistinct", "is distinct from", 0},
    [AP_QOP_FTS] = {"fts", "@@", 0},      [AP_QOP_PLFTS] = {"plfts", "@@", 0},
    [AP_QOP_PHFTS] = {"phfts", "@@", 0},  [AP_QOP_WFTS] = {"wfts", "@@", 0},
    [AP_QOP_CS] = {"cs", "@>", 0},        [AP_QOP_CD] = {"cd", "<@", 0},
    [AP_QOP_OV] = {"ov", "&&", 0},        [AP_QOP_SL] = {"sl", "<<", 0},
    [AP_QOP_SR] = {"sr", ">>", 0},        [AP_QOP_NXR] = {"nxr", "&<", 0},
    [AP_QOP_NXL] = {"nxl", "&>", 0},      [AP_QOP_ADJ] = {"adj", "-|-", 0},
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

const char *ap_qop_name(ap_qop_t op)
{
    return ops[op].name;
}

const char *ap_qop_sql(ap_qop_t op)
{
    return ops[op].sql;
}

static int is_fts(ap_qop_t op)
{
    return op == AP_QOP_FTS || op == AP_QOP_PLFTS || op == AP_QOP_PHFTS || op == AP_QOP_WFTS;
}

/* --- Errors ----------------------------------------------------------- */

static void set_error(ap_query_t *q, int status, const char *code, char *message, char *details,
                      char *hint)
{
    if (q->code != NULL) { /* the first error wins */
        free(message);
        free(details);
        free(hint);
        return;
    }
    q->status = status;
    q->code = code;
    q->message = message;
    q->details = details;
    q->hint = hint;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    ap_buf_t b;
    ap_buf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    ap_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return b.data ? b.data : ap_xstrdup("");
}

/* --- The parser over one decoded value --------------------------------- */

typedef struct {
    const char *s;
    size_t len;
    size_t pos;
    ap_query_t *q;
    const char *what; /* "filter", "logic tree", "select parameter", "order" */
    int depth;
} parser_t;

/* Shown values are cut: the message of an over-long query string must
 * not be over-long itself. */
#define SHOW_MAX 200

static int fail(parser_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser_t *p, const char *fmt, ...)
{
    char details[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(details, sizeof(details), fmt, ap);
    va_end(ap);
    int shown = p->len > SHOW_MAX ? SHOW_MAX : (int)p->len;
    set_error(p->q, 400, "PGRST100",
              xprintf("\"failed to parse %s (%.*s%s)\" (line 1, column %zu)", p->what, shown, p->s,
                      p->len > SHOW_MAX ? "..." : "", p->pos + 1),
              ap_xstrdup(details), NULL);
    return -1;
}

static int at_end(const parser_t *p)
{
    return p->pos >= p->len;
}

static char peek(const parser_t *p)
{
    return at_end(p) ? '\0' : p->s[p->pos];
}

static int looking_at(const parser_t *p, const char *lit)
{
    size_t n = strlen(lit);
    return p->len - p->pos >= n && memcmp(p->s + p->pos, lit, n) == 0;
}

static int eat(parser_t *p, const char *lit)
{
    if (!looking_at(p, lit))
        return 0;
    p->pos += strlen(lit);
    return 1;
}

static const char *shown_char(const parser_t *p, char *buf, size_t size)
{
    if (at_end(p))
        return "end of input";
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c >= 0x20 && c < 0x7f && c != '"')
        snprintf(buf, size, "\"%c\"", c);
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

#define UNEXPECTED(p, expecting)                                                              \
    do {                                                                                      \
        char c_[16];                                                                          \
        return fail((p), "unexpected %s expecting %s", shown_char((p), c_, sizeof(c_)),       \
                    (expecting));                                                             \
    } while (0)

/* "text" with \" and \\ escapes; p is at the opening quote. */
static int quoted(parser_t *p, ap_buf_t *out)
{
    p->pos++;
    for (;;) {
        if (at_end(p))
            return fail(p, "unexpected end of input expecting closing quote");
        char c = p->s[p->pos++];
        if (c == '"')
            return 0;
        if (c == '\\' && !at_end(p))
            c = p->s[p->pos++];
        ap_buf_append_char(out, c);
    }
}

/* Bytes up to one in stop (or "->" when arrows is set). */
static void run(parser_t *p, ap_buf_t *out, const char *stop, int arrows)
{
    while (!at_end(p)) {
        char c = p->s[p->pos];
        if (strchr(stop, c) != NULL)
            break;
        if (arrows && looking_at(p, "->"))
            break;
        ap_buf_append_char(out, c);
        p->pos++;
    }
}

static char *buf_take(ap_buf_t *b)
{
    char *s = b->data ? b->data : ap_xstrdup("");
    ap_buf_init(b);
    return s;
}

static void field_free(ap_qfield_t *f)
{
    free(f->name);
    for (size_t i = 0; i < f->nkeys; i++)
        free(f->keys[i]);
    free(f->keys);
    free(f->as_text);
    memset(f, 0, sizeof(*f));
}

/* name or "quoted name", then ->key / ->>key steps. */
static int field(parser_t *p, ap_qfield_t *f, const char *stop)
{
    ap_buf_t b;
    ap_buf_init(&b);
    if (peek(p) == '"') {
        if (quoted(p, &b) < 0)
            goto bad;
    } else {
        run(p, &b, stop, 1);
    }
    if (b.len == 0) {
        ap_buf_cleanup(&b);
        UNEXPECTED(p, "field name");
    }
    f->name = buf_take(&b);
    while (looking_at(p, "->")) {
        if (f->nkeys == AP_QUERY_MAX_DEPTH) {
            ap_buf_cleanup(&b);
            return fail(p, "a JSON path may have %d keys at most", AP_QUERY_MAX_DEPTH);
        }
        int as_text = eat(p, "->>") ? 1 : (p->pos += 2, 0);
        if (peek(p) == '"') {
            if (quoted(p, &b) < 0)
                goto bad;
        } else {
            run(p, &b, stop, 1);
        }
        if (b.len == 0) {
            ap_buf_cleanup(&b);
            UNEXPECTED(p, "a key after the arrow");
        }
        f->keys = ap_xrealloc(f->keys, (f->nkeys + 1) * sizeof(char *));
        f->as_text = ap_xrealloc(f->as_text, f->nkeys + 1);
        f->keys[f->nkeys] = buf_take(&b);
        f->as_text[f->nkeys] = (unsigned char)as_text;
        f->nkeys++;
    }
    return 0;
bad:
    ap_buf_cleanup(&b);
    return -1;
}

static void node_free(ap_qnode_t *n)
{
    field_free(&n->field);
    free(n->lang);
    free(n->value);
    for (size_t i = 0; i < n->nkids; i++)
        node_free(&n->kids[i]);
    free(n->kids);
    memset(n, 0, sizeof(*n));
}

/* Room for one more element in an array that grows by doubling (hostile
 * query strings hold tens of thousands of filters). */
static void *grow(void *arr, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 4;
    return ap_xrealloc(arr, *cap * size);
}

static void add_kid(ap_qnode_t *parent, ap_qnode_t *kid)
{
    parent->kids = grow(parent->kids, parent->nkids, &parent->kids_cap, sizeof(ap_qnode_t));
    parent->kids[parent->nkids++] = *kid;
    memset(kid, 0, sizeof(*kid));
}

/* An element of an array literal: always quoted, so that "null" stays a
 * string and commas and braces stay data. */
static void array_element(ap_buf_t *arr, const char *s, size_t n)
{
    ap_buf_append_char(arr, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            ap_buf_append_char(arr, '\\');
        ap_buf_append_char(arr, s[i]);
    }
    ap_buf_append_char(arr, '"');
}

/* in.(a,"b,c",d) as the array literal {"a","b,c","d"}. */
static int in_list(parser_t *p, ap_qnode_t *n)
{
    if (!eat(p, "("))
        UNEXPECTED(p, "\"(\"");
    ap_buf_t arr, item;
    ap_buf_init(&arr);
    ap_buf_init(&item);
    ap_buf_append_char(&arr, '{');
    size_t count = 0;
    if (!eat(p, ")")) {
        for (;;) {
            ap_buf_reset(&item);
            if (peek(p) == '"') {
                if (quoted(p, &item) < 0)
                    goto bad;
            } else {
                run(p, &item, ",)", 0);
            }
            if (count++)
                ap_buf_append_char(&arr, ',');
            array_element(&arr, item.data ? item.data : "", item.len);
            if (eat(p, ","))
                continue;
            if (eat(p, ")"))
                break;
            char c_[16];
            fail(p, "unexpected %s expecting \",\" or \")\"", shown_char(p, c_, sizeof(c_)));
            goto bad;
        }
    }
    ap_buf_append_char(&arr, '}');
    n->value = buf_take(&arr);
    ap_buf_cleanup(&item);
    return 0;
bad:
    ap_buf_cleanup(&arr);
    ap_buf_cleanup(&item);
    return -1;
}

static void stars_to_percent(char *s)
{
    for (; *s; s++)
        if (*s == '*')
            *s = '%';
}

/* [not.]op[(any|all|lang)].value, after "field." or as a whole value.
 * In a logic tree a plain value ends at ',' or ')' unless quoted. */
static int filter_expr(parser_t *p, ap_qnode_t *n, int in_tree)
{
    n->kind = AP_QNODE_FILTER;
    if (eat(p, "not."))
        n->negate = 1;
    size_t start = p->pos;
    while (!at_end(p) && islower((unsigned char)p->s[p->pos]))
        p->pos++;
    size_t k;
    for (k = 0; k < NOPS; k++)
        if (strlen(ops[k].name) == p->pos - start &&
            memcmp(ops[k].name, p->s + start, p->pos - start) == 0)
            break;
    if (k == NOPS) {
        p->pos = start;
        UNEXPECTED(p, "operator (eq, gt, ...)");
    }
    n->op = (ap_qop_t)k;
    if (eat(p, "(")) {
        size_t a = p->pos;
        while (!at_end(p) && (isalnum((unsigned char)p->s[p->pos]) || p->s[p->pos] == '_'))
            p->pos++;
        ap_str_t word = ap_str_make(p->s + a, p->pos - a);
        if (is_fts(n->op) && word.len > 0) {
            n->lang = ap_xstrndup(word.p, word.len);
        } else if (ops[n->op].quantifiable && ap_str_eq(word, AP_STR("any"))) {
            n->mod = AP_QMOD_ANY;
        } else if (ops[n->op].quantifiable && ap_str_eq(word, AP_STR("all"))) {
            n->mod = AP_QMOD_ALL;
        } else {
            p->pos = a;
            UNEXPECTED(p, is_fts(n->op) ? "a language" : "\"any\" or \"all\"");
        }
        if (!eat(p, ")"))
            UNEXPECTED(p, "\")\"");
    }
    if (!eat(p, "."))
        UNEXPECTED(p, "\".\"");

    if (n->op == AP_QOP_IN) {
        if (in_list(p, n) < 0)
            return -1;
    } else if (n->op == AP_QOP_IS) {
        size_t a = p->pos;
        while (!at_end(p) && (isalpha((unsigned char)p->s[p->pos]) || p->s[p->pos] == '_'))
            p->pos++;
        ap_str_t w = ap_str_make(p->s + a, p->pos - a);
        if (ap_str_caseeq(w, AP_STR("null")))
            n->is = AP_QIS_NULL;
        else if (ap_str_caseeq(w, AP_STR("not_null")))
            n->is = AP_QIS_NOT_NULL;
        else if (ap_str_caseeq(w, AP_STR("true")))
            n->is = AP_QIS_TRUE;
        else if (ap_str_caseeq(w, AP_STR("false")))
            n->is = AP_QIS_FALSE;
        else if (ap_str_caseeq(w, AP_STR("unknown")))
            n->is = AP_QIS_UNKNOWN;
        else {
            p->pos = a;
            UNEXPECTED(p, "null, not_null, true, false or unknown");
        }
    } else {
        ap_buf_t v;
        ap_buf_init(&v);
        if (!in_tree) {
            ap_buf_append(&v, p->s + p->pos, p->len - p->pos);
            p->pos = p->len;
        } else if (peek(p) == '"') {
            if (quoted(p, &v) < 0) {
                ap_buf_cleanup(&v);
                return -1;
            }
        } else if (peek(p) == '{') {
            run(p, &v, "}", 0);
            if (!eat(p, "}")) {
                ap_buf_cleanup(&v);
                UNEXPECTED(p, "\"}\"");
            }
            ap_buf_append_char(&v, '}');
        } else {
            run(p, &v, ",)", 0);
        }
        n->value = buf_take(&v);
        if (n->op == AP_QOP_LIKE || n->op == AP_QOP_ILIKE)
            stars_to_percent(n->value);
    }
    if (!in_tree && !at_end(p))
        UNEXPECTED(p, "end of input");
    return 0;
}

static int tree(parser_t *p, ap_qnode_t *n);

/* One element of a logic tree: [not.]and(...), [not.]or(...), or
 * field.[not.]op.value. */
static int tree_item(parser_t *p, ap_qnode_t *n)
{
    size_t start = p->pos;
    int negate = eat(p, "not.");
    if (eat(p, "and(") || eat(p, "or(")) {
        n->kind = p->s[p->pos - 2] == 'd' ? AP_QNODE_AND : AP_QNODE_OR;
        n->negate = negate;
        p->pos--; /* back to the '(' */
        return tree(p, n);
    }
    p->pos = start;
    if (field(p, &n->field, ".,:()") < 0)
        return -1;
    if (!eat(p, "."))
        UNEXPECTED(p, "\".\"");
    return filter_expr(p, n, 1);
}

/* (item,item,...) into n's kids; n->kind is set by the caller. */
static int tree(parser_t *p, ap_qnode_t *n)
{
    if (++p->depth > AP_QUERY_MAX_DEPTH)
        return fail(p, "logic trees may be nested %d levels deep at most", AP_QUERY_MAX_DEPTH);
    if (!eat(p, "("))
        UNEXPECTED(p, "\"(\"");
    for (;;) {
        ap_qnode_t kid;
        memset(&kid, 0, sizeof(kid));
        if (tree_item(p, &kid) < 0) {
            node_free(&kid);
            return -1;
        }
        add_kid(n, &kid);
        if (eat(p, ","))
            continue;
        if (eat(p, ")"))
            break;
        UNEXPECTED(p, "\",\" or \")\"");
    }
    p->depth--;
    return 0;
}

/* --- select ------------------------------------------------------------ */

static void select_free(ap_qselect_t *s)
{
    free(s->alias);
    free(s->cast);
    field_free(&s->field);
}

static int type_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == ' ';
}

static int select_item(parser_t *p, ap_qselect_t *s)
{
    if (eat(p, "*")) {
        s->star = 1;
        return 0;
    }
    if (looking_at(p, "...")) {
        set_error(p->q, 400, "PGRST100",
                  xprintf("\"failed to parse select parameter (%.*s)\" (line 1, column %zu)",
                          (int)(p->len > SHOW_MAX ? SHOW_MAX : p->len), p->s, p->pos + 1),
                  ap_xstrdup("spread embedding is not supported: there are no relationships "
                             "in apiary's schema cache"),
                  NULL);
        return -1;
    }
    /* alias: (a single ':' that is not the start of "::") */
    size_t start = p->pos;
    ap_buf_t a;
    ap_buf_init(&a);
    if (peek(p) == '"') {
        if (quoted(p, &a) < 0) {
            ap_buf_cleanup(&a);
            return -1;
        }
    } else {
        run(p, &a, ".,:()!", 1);
    }
    if (peek(p) == ':' && !looking_at(p, "::") && a.len > 0) {
        p->pos++;
        s->alias = buf_take(&a);
    } else {
        p->pos = start;
    }
    ap_buf_cleanup(&a);

    if (field(p, &s->field, ".,:()!") < 0)
        return -1;
    if (peek(p) == '(' || peek(p) == '!') {
        if (peek(p) == '(' && p->pos + 1 < p->len && p->s[p->pos + 1] == ')') {
            set_error(p->q, 400, "PGRST123", ap_xstrdup("Use of aggregate functions is not allowed"),
                      NULL, NULL);
            return -1;
        }
        /* An embedded resource: apiary has no relationships to follow. */
        set_error(p->q, 400, "PGRST200", ap_xstrdup(s->field.name), NULL, NULL);
        return -1;
    }
    if (peek(p) == '.' && p->pos + 1 < p->len && isalpha((unsigned char)p->s[p->pos + 1])) {
        set_error(p->q, 400, "PGRST123", ap_xstrdup("Use of aggregate functions is not allowed"),
                  NULL, NULL);
        return -1;
    }
    if (eat(p, "::")) {
        size_t b = p->pos;
        while (!at_end(p) && type_char(p->s[p->pos]))
            p->pos++;
        eat(p, "[]");
        if (p->pos == b || !isalpha((unsigned char)p->s[b]) || p->pos - b > 63)
            UNEXPECTED(p, "a type name");
        s->cast = ap_xstrndup(p->s + b, p->pos - b);
        for (char *c = s->cast; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    }
    return 0;
}

static int select_list(parser_t *p)
{
    ap_query_t *q = p->q;
    if (at_end(p))
        return 0;
    for (;;) {
        ap_qselect_t s;
        memset(&s, 0, sizeof(s));
        if (select_item(p, &s) < 0) {
            select_free(&s);
            return -1;
        }
        q->select = grow(q->select, q->nselect, &q->select_cap, sizeof(*q->select));
        q->select[q->nselect++] = s;
        if (at_end(p))
            return 0;
        if (!eat(p, ","))
            UNEXPECTED(p, "\",\" or end of input");
    }
}

/* --- order ------------------------------------------------------------- */

static int order_list(parser_t *p)
{
    ap_query_t *q = p->q;
    for (;;) {
        ap_qorder_t o;
        memset(&o, 0, sizeof(o));
        if (field(p, &o.field, ".,:()") < 0) {
            field_free(&o.field);
            return -1;
        }
        for (int step = 0; step < 2 && eat(p, "."); step++) {
            if (step == 0 && eat(p, "asc"))
                o.desc = 0;
            else if (step == 0 && eat(p, "desc"))
                o.desc = 1;
            else if (eat(p, "nullsfirst"))
                o.nulls = 1, step = 1;
            else if (eat(p, "nullslast"))
                o.nulls = 2, step = 1;
            else {
                field_free(&o.field);
                UNEXPECTED(p, "\"asc\", \"desc\", \"nullsfirst\" or \"nullslast\"");
            }
        }
        q->order = grow(q->order, q->norder, &q->order_cap, sizeof(*q->order));
        q->order[q->norder++] = o;
        if (at_end(p))
            return 0;
        if (!eat(p, ","))
            UNEXPECTED(p, "\",\" or end of input");
    }
}

/* --- The query string -------------------------------------------------- */

static int number(parser_t *p, int64_t *out)
{
    if (at_end(p))
        UNEXPECTED(p, "digit");
    int64_t v = 0;
    while (!at_end(p)) {
        char c = p->s[p->pos];
        if (c < '0' || c > '9')
            UNEXPECTED(p, "digit");
        if (v > (INT64_MAX - 9) / 10)
            return fail(p, "the number is too large");
        v = v * 10 + (c - '0');
        p->pos++;
    }
    *out = v;
    return 0;
}

static int filter_param(ap_query_t *q, const char *key, size_t klen, parser_t *vp)
{
    parser_t kp = {.s = key, .len = klen, .q = q, .what = "filter"};
    ap_qnode_t n;
    memset(&n, 0, sizeof(n));
    if (field(&kp, &n.field, ".,:()") < 0)
        goto bad;
    if (!at_end(&kp)) {
        if (peek(&kp) == '.') {
            /* rel.col=...: a filter on an embedded resource. */
            set_error(q, 400, "PGRST108",
                      xprintf("'%s' is not an embedded resource in this request", n.field.name),
                      NULL,
                      xprintf("Verify that '%s' is included in the 'select' query parameter.",
                              n.field.name));
        } else {
            char c_[16];
            fail(&kp, "unexpected %s expecting \"=\"", shown_char(&kp, c_, sizeof(c_)));
        }
        goto bad;
    }
    if (filter_expr(vp, &n, 0) < 0)
        goto bad;
    add_kid(&q->where, &n);
    return 0;
bad:
    node_free(&n);
    return -1;
}

static int param(ap_query_t *q, const char *key, size_t klen, const char *val, size_t vlen)
{
    parser_t p = {.s = val, .len = vlen, .q = q};
    ap_str_t k = ap_str_make(key, klen);
    if (ap_str_eq(k, AP_STR("select"))) {
        for (size_t i = 0; i < q->nselect; i++)
            select_free(&q->select[i]);
        q->nselect = 0;
        p.what = "select parameter";
        return select_list(&p);
    }
    if (ap_str_eq(k, AP_STR("order"))) {
        for (size_t i = 0; i < q->norder; i++)
            field_free(&q->order[i].field);
        q->norder = 0;
        p.what = "order";
        return order_list(&p);
    }
    if (ap_str_eq(k, AP_STR("limit"))) {
        p.what = "limit parameter";
        return number(&p, &q->limit);
    }
    if (ap_str_eq(k, AP_STR("offset"))) {
        p.what = "offset parameter";
        return number(&p, &q->offset);
    }
    if (ap_str_eq(k, AP_STR("columns")) || ap_str_eq(k, AP_STR("on_conflict")))
        return 0; /* for writes; a read ignores them, as PostgREST does */
    int negate = 0;
    if (klen > 4 && memcmp(key, "not.", 4) == 0 &&
        (ap_str_eq(ap_str_make(key + 4, klen - 4), AP_STR("or")) ||
         ap_str_eq(ap_str_make(key + 4, klen - 4), AP_STR("and")))) {
        negate = 1;
        k = ap_str_make(key + 4, klen - 4);
    }
    if (ap_str_eq(k, AP_STR("or")) || ap_str_eq(k, AP_STR("and"))) {
        p.what = "logic tree";
        ap_qnode_t n;
        memset(&n, 0, sizeof(n));
        n.kind = k.len == 2 ? AP_QNODE_OR : AP_QNODE_AND;
        n.negate = negate;
        if (tree(&p, &n) < 0 || (!at_end(&p) && fail(&p, "unexpected text after the tree") < 0)) {
            node_free(&n);
            return -1;
        }
        add_kid(&q->where, &n);
        return 0;
    }
    p.what = "filter";
    return filter_param(q, key, klen, &p);
}

int ap_query_parse(ap_query_t *q, ap_str_t qs)
{
    memset(q, 0, sizeof(*q));
    q->where.kind = AP_QNODE_AND;
    q->limit = -1;
    ap_buf_t key, val;
    ap_buf_init(&key);
    ap_buf_init(&val);
    size_t i = 0;
    int rc = 0;
    while (i < qs.len && rc == 0) {
        size_t end = i;
        while (end < qs.len && qs.p[end] != '&')
            end++;
        ap_str_t pair = ap_str_make(qs.p + i, end - i);
        i = end + 1;
        if (pair.len == 0)
            continue;
        const char *eq = memchr(pair.p, '=', pair.len);
        ap_str_t k = eq ? ap_str_make(pair.p, (size_t)(eq - pair.p)) : pair;
        ap_str_t v = eq ? ap_str_make(eq + 1, pair.len - k.len - 1) : ap_str_make(pair.p, 0);
        ap_buf_reset(&key);
        ap_buf_reset(&val);
        if (ap_api_url_decode(&key, k, 1) < 0 || ap_api_url_decode(&val, v, 1) < 0) {
            set_error(q, 400, "PGRST100", ap_xstrdup("Failed to parse the query string"),
                      ap_xstrdup("malformed percent-encoding, or an encoded NUL byte"), NULL);
            rc = -1;
            break;
        }
        if (key.len == 0)
            continue;
        rc = param(q, key.data, key.len, val.data ? val.data : "", val.len);
    }
    ap_buf_cleanup(&key);
    ap_buf_cleanup(&val);
    return rc;
}

void ap_query_free(ap_query_t *q)
{
    for (size_t i = 0; i < q->nselect; i++)
        select_free(&q->select[i]);
    free(q->select);
    for (size_t i = 0; i < q->norder; i++)
        field_free(&q->order[i].field);
    free(q->order);
    node_free(&q->where);
    free(q->message);
    free(q->details);
    free(q->hint);
    memset(q, 0, sizeof(*q));
}
