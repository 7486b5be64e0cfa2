/* SPDX-License-Identifier: BSD-2-Clause */
/* PostgREST's URL grammar for reading a table or view: the query string
 * parsed into select items, a tree of filters, order terms and paging.
 * Pure parsing, no schema and no SQL: api_read.c checks every name against
 * the schema cache and writes the statement. */
#ifndef AP_API_QUERY_H
#define AP_API_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "str.h"

/* Deeper and/or nesting, and longer JSON paths, are refused (PGRST100),
 * so that hostile input cannot exhaust the stack here or in PostgreSQL. */
#define AP_QUERY_MAX_DEPTH 64

/* A column, possibly followed by a JSON path: data->a->>b. */
typedef struct ap_qfield_s {
    char *name;
    char **keys;           /* the path's keys, after name */
    unsigned char *as_text; /* keys[i] follows ->> (else ->) */
    size_t nkeys;
} ap_qfield_t;

typedef enum {
    AP_QOP_EQ, AP_QOP_NEQ, AP_QOP_GT, AP_QOP_GTE, AP_QOP_LT, AP_QOP_LTE,
    AP_QOP_LIKE, AP_QOP_ILIKE, AP_QOP_MATCH, AP_QOP_IMATCH,
    AP_QOP_IN, AP_QOP_IS, AP_QOP_ISDISTINCT,
    AP_QOP_FTS, AP_QOP_PLFTS, AP_QOP_PHFTS, AP_QOP_WFTS,
    AP_QOP_CS, AP_QOP_CD, AP_QOP_OV, AP_QOP_SL, AP_QOP_SR, AP_QOP_NXR, AP_QOP_NXL, AP_QOP_ADJ,
} ap_qop_t;

typedef enum { AP_QMOD_NONE, AP_QMOD_ANY, AP_QMOD_ALL } ap_qmod_t;
typedef enum { AP_QIS_NULL, AP_QIS_NOT_NULL, AP_QIS_TRUE, AP_QIS_FALSE, AP_QIS_UNKNOWN } ap_qis_t;
typedef enum { AP_QNODE_FILTER, AP_QNODE_AND, AP_QNODE_OR } ap_qnode_kind_t;

typedef struct ap_qnode_s {
    ap_qnode_kind_t kind;
    int negate;
    /* AP_QNODE_FILTER */
    ap_qfield_t field;
    ap_qop_t op;
    ap_qmod_t mod;
    ap_qis_t is;
    char *lang;  /* fts(lang), or NULL */
    char *value; /* the value; for in: a PostgreSQL array literal; like's '*' are '%' */
    /* AP_QNODE_AND, AP_QNODE_OR */
    struct ap_qnode_s *kids;
    size_t nkids, kids_cap;
} ap_qnode_t;

typedef struct ap_qselect_s {
    int star;    /* "*" */
    char *alias; /* NULL when none */
    ap_qfield_t field;
    char *cast;  /* a type name (letters, digits, '_', ' ', "[]"), or NULL */
} ap_qselect_t;

typedef struct ap_qorder_s {
    ap_qfield_t field;
    int desc;
    int nulls; /* 0 default, 1 first, 2 last */
} ap_qorder_t;

typedef struct ap_query_s {
    ap_qselect_t *select; /* none: every column */
    size_t nselect, select_cap;
    ap_qnode_t where;     /* an AND of every filter */
    ap_qorder_t *order;
    size_t norder, order_cap;
    int64_t limit;        /* -1: none */
    int64_t offset;

    /* When parsing fails: the answer PostgREST gives. */
    int status;
    const char *code;
    char *message;
    char *details;
    char *hint;
} ap_query_t;

/* Parses a query string (still percent-encoded, as in the URL). Returns 0,
 * or -1 with q->status, code, message (and maybe details, hint) set.
 * Either way free q with ap_query_free. */
int ap_query_parse(ap_query_t *q, ap_str_t query_string);
void ap_query_free(ap_query_t *q);

/* The operator's name in the URL ("eq") and in SQL ("="). */
const char *ap_qop_name(ap_qop_t op);
const char *ap_qop_sql(ap_qop_t op);

#endif
