/* SPDX-License-Identifier: BSD-2-Clause */
/* The schema cache: the exposed schemas' tables, views, columns, primary
 * keys and functions, introspected from pg_catalog. Identifiers used in SQL
 * come only from here. */
#ifndef AP_SCHEMA_H
#define AP_SCHEMA_H

#include <stddef.h>

#include "str.h"

typedef struct ap_schema_arg_s {
    char *name; /* "" for an unnamed parameter */
    char *type; /* format_type(), usable in SQL */
} ap_schema_arg_t;

typedef struct ap_schema_func_s {
    char *schema;
    char *name;
    ap_schema_arg_t *args; /* input parameters, in order */
    size_t nargs;
    size_t ndefaults;      /* the last ndefaults parameters have defaults */
    char *rettype;
    char ret_kind;         /* 'c' composite, 'v' void, 's' scalar, 'r' record */
    int retset;
    char volatility;       /* 'i' immutable, 's' stable, 'v' volatile */
} ap_schema_func_t;

typedef struct ap_schema_column_s {
    char *name;
    char *type;
    int nullable;
    int has_default;
} ap_schema_column_t;

typedef struct ap_schema_table_s {
    char *schema;
    char *name;
    int is_view;
    ap_schema_column_t *columns;
    size_t ncolumns;
    char **pk; /* primary key column names */
    size_t npk;
} ap_schema_table_t;

typedef struct ap_schema_s {
    ap_schema_func_t *funcs;
    size_t nfuncs;
    ap_schema_table_t *tables;
    size_t ntables;
} ap_schema_t;

/* The catalog query: one text value of JSON. $1 is the comma-separated
 * list of schemas. */
extern const char ap_schema_query[];

/* Builds a cache from the catalog query's JSON; NULL (with why set) when
 * the text is not what the query makes. */
ap_schema_t *ap_schema_from_json(const char *json, const char **why);
void ap_schema_free(ap_schema_t *s);

/* The functions called name in schema, as an array of pointers into the
 * cache (caller frees the array); *n is how many. */
const ap_schema_func_t **ap_schema_funcs(const ap_schema_t *s, const char *schema, ap_str_t name,
                                         size_t *n);

const ap_schema_table_t *ap_schema_table(const ap_schema_t *s, const char *schema, ap_str_t name);

#endif
