/* SPDX-License-Identifier: BSD-2-Clause */
/* The schema cache. */
#include "schema.h"

#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "alloc.h"

/* One round trip returns everything as JSON. Input parameters are taken
 * from proallargtypes/proargmodes when a function has OUT parameters. */
const char ap_schema_query[] =
    "with s as (select unnest(string_to_array($1, ',')) as nspname),\n"
    "f as (\n"
    "  select n.nspname, p.proname, p.pronargdefaults, p.proretset, p.provolatile,\n"
    "    format_type(p.prorettype, null) as rettype, t.typtype, t.typrelid,\n"
    "    coalesce(p.proallargtypes, (select array_agg(x) from unnest(p.proargtypes) x)) as types,\n"
    "    p.proargnames as names, p.proargmodes as modes\n"
    "  from pg_proc p join pg_namespace n on n.oid = p.pronamespace\n"
    "  join pg_type t on t.oid = p.prorettype\n"
    "  where n.nspname in (select nspname from s) and p.prokind = 'f'\n"
    ")\n"
    "select json_build_object(\n"
    " 'functions', coalesce((select json_agg(json_build_object(\n"
    "   'schema', f.nspname, 'name', f.proname, 'ndefaults', f.pronargdefaults,\n"
    "   'retset', f.proretset, 'volatility', f.provolatile, 'rettype', f.rettype,\n"
    "   'kind', case when f.rettype = 'void' then 'v'\n"
    "                when f.typtype = 'c' or (f.typtype = 'd' and f.typrelid <> 0) then 'c'\n"
    "                when f.rettype = 'record' then 'r' else 's' end,\n"
    "   'args', coalesce((select json_agg(json_build_object(\n"
    "       'name', coalesce(f.names[i], ''), 'type', format_type(f.types[i], null)) order by i)\n"
    "     from generate_subscripts(f.types, 1) i\n"
    "     where f.modes is null or f.modes[i] in ('i', 'b', 'v')), '[]'::json)))\n"
    "   from f), '[]'::json),\n"
    " 'tables', coalesce((select json_agg(json_build_object(\n"
    "   'schema', n.nspname, 'name', c.relname, 'view', c.relkind in ('v', 'm'),\n"
    "   'columns', coalesce((select json_agg(json_build_object(\n"
    "       'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),\n"
    "       'nullable', not a.attnotnull, 'default', a.atthasdef) order by a.attnum)\n"
    "     from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped),\n"
    "     '[]'::json),\n"
    "   'pk', coalesce((select json_agg(a.attname order by k.ord)\n"
    "     from pg_index i cross join lateral unnest(i.indkey) with ordinality k(attnum, ord)\n"
    "     join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum\n"
    "     where i.indrelid = c.oid and i.indisprimary), '[]'::json)))\n"
    "   from pg_class c join pg_namespace n on n.oid = c.relnamespace\n"
    "   where n.nspname in (select nspname from s) and c.relkind in ('r', 'v', 'm', 'f', 'p')),\n"
    "   '[]'::json)\n"
    ")::text";

static const char *str_of(yajl_val obj, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : NULL;
}

static yajl_val val_of(yajl_val obj, const char *key, yajl_type type)
{
    const char *path[] = {key, NULL};
    return yajl_tree_get(obj, path, type);
}

static int bool_of(yajl_val obj, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_any);
    return v && YAJL_IS_TRUE(v);
}

static char *dup_or_empty(const char *s)
{
    return ap_xstrdup(s ? s : "");
}

static int load_func(ap_schema_func_t *f, yajl_val o)
{
    const char *kind = str_of(o, "kind"), *vol = str_of(o, "volatility");
    yajl_val nd = val_of(o, "ndefaults", yajl_t_number);
    yajl_val args = val_of(o, "args", yajl_t_array);
    if (!str_of(o, "schema") || !str_of(o, "name") || !kind || !vol || !nd || !args)
        return -1;
    f->schema = ap_xstrdup(str_of(o, "schema"));
    f->name = ap_xstrdup(str_of(o, "name"));
    f->rettype = dup_or_empty(str_of(o, "rettype"));
    f->ret_kind = kind[0];
    f->volatility = vol[0];
    f->retset = bool_of(o, "retset");
    f->nargs = YAJL_GET_ARRAY(args)->len;
    f->args = ap_xcalloc(f->nargs ? f->nargs : 1, sizeof(*f->args));
    for (size_t i = 0; i < f->nargs; i++) {
        yajl_val a = YAJL_GET_ARRAY(args)->values[i];
        f->args[i].name = dup_or_empty(str_of(a, "name"));
        f->args[i].type = dup_or_empty(str_of(a, "type"));
    }
    long long n = YAJL_IS_INTEGER(nd) ? YAJL_GET_INTEGER(nd) : 0;
    f->ndefaults = n < 0 ? 0 : (size_t)n > f->nargs ? f->nargs : (size_t)n;
    return 0;
}

static int load_table(ap_schema_table_t *t, yajl_val o)
{
    yajl_val cols = val_of(o, "columns", yajl_t_array), pk = val_of(o, "pk", yajl_t_array);
    if (!str_of(o, "schema") || !str_of(o, "name") || !cols || !pk)
        return -1;
    t->schema = ap_xstrdup(str_of(o, "schema"));
    t->name = ap_xstrdup(str_of(o, "name"));
    t->is_view = bool_of(o, "view");
    t->ncolumns = YAJL_GET_ARRAY(cols)->len;
    t->columns = ap_xcalloc(t->ncolumns ? t->ncolumns : 1, sizeof(*t->columns));
    for (size_t i = 0; i < t->ncolumns; i++) {
        yajl_val c = YAJL_GET_ARRAY(cols)->values[i];
        t->columns[i].name = dup_or_empty(str_of(c, "name"));
        t->columns[i].type = dup_or_empty(str_of(c, "type"));
        t->columns[i].nullable = bool_of(c, "nullable");
        t->columns[i].has_default = bool_of(c, "default");
    }
    t->npk = YAJL_GET_ARRAY(pk)->len;
    t->pk = ap_xcalloc(t->npk ? t->npk : 1, sizeof(char *));
    for (size_t i = 0; i < t->npk; i++) {
        yajl_val v = YAJL_GET_ARRAY(pk)->values[i];
        t->pk[i] = dup_or_empty(YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL);
    }
    return 0;
}

ap_schema_t *ap_schema_from_json(const char *json, const char **why)
{
    char err[256];
    yajl_val root = yajl_tree_parse(json, err, sizeof(err));
    if (root == NULL || !YAJL_IS_OBJECT(root)) {
        *why = "the catalog query did not return a JSON object";
        yajl_tree_free(root);
        return NULL;
    }
    yajl_val funcs = val_of(root, "functions", yajl_t_array);
    yajl_val tables = val_of(root, "tables", yajl_t_array);
    if (!funcs || !tables) {
        *why = "the catalog query's JSON lacks functions or tables";
        yajl_tree_free(root);
        return NULL;
    }
    ap_schema_t *s = ap_xcalloc(1, sizeof(*s));
    size_t nf = YAJL_GET_ARRAY(funcs)->len, nt = YAJL_GET_ARRAY(tables)->len;
    s->funcs = ap_xcalloc(nf ? nf : 1, sizeof(*s->funcs));
    s->tables = ap_xcalloc(nt ? nt : 1, sizeof(*s->tables));
    for (size_t i = 0; i < nf; i++) {
        if (load_func(&s->funcs[s->nfuncs], YAJL_GET_ARRAY(funcs)->values[i]) < 0) {
            *why = "a function entry is malformed";
            goto fail;
        }
        s->nfuncs++;
    }
    for (size_t i = 0; i < nt; i++) {
        if (load_table(&s->tables[s->ntables], YAJL_GET_ARRAY(tables)->values[i]) < 0) {
            *why = "a table entry is malformed";
            goto fail;
        }
        s->ntables++;
    }
    yajl_tree_free(root);
    return s;
fail:
    yajl_tree_free(root);
    ap_schema_free(s);
    return NULL;
}

void ap_schema_free(ap_schema_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nfuncs; i++) {
        ap_schema_func_t *f = &s->funcs[i];
        for (size_t k = 0; k < f->nargs; k++) {
            free(f->args[k].name);
            free(f->args[k].type);
        }
        free(f->args);
        free(f->schema);
        free(f->name);
        free(f->rettype);
    }
    for (size_t i = 0; i < s->ntables; i++) {
        ap_schema_table_t *t = &s->tables[i];
        for (size_t k = 0; k < t->ncolumns; k++) {
            free(t->columns[k].name);
            free(t->columns[k].type);
        }
        for (size_t k = 0; k < t->npk; k++)
            free(t->pk[k]);
        free(t->columns);
        free(t->pk);
        free(t->schema);
        free(t->name);
    }
    free(s->funcs);
    free(s->tables);
    free(s);
}

static int name_eq(const char *a, ap_str_t b)
{
    return strlen(a) == b.len && memcmp(a, b.p, b.len) == 0;
}

const ap_schema_func_t **ap_schema_funcs(const ap_schema_t *s, const char *schema, ap_str_t name,
                                         size_t *n)
{
    const ap_schema_func_t **out = NULL;
    *n = 0;
    for (size_t i = 0; i < s->nfuncs; i++) {
        if (strcmp(s->funcs[i].schema, schema) != 0 || !name_eq(s->funcs[i].name, name))
            continue;
        out = ap_xrealloc(out, (*n + 1) * sizeof(*out));
        out[(*n)++] = &s->funcs[i];
    }
    return out;
}

const ap_schema_table_t *ap_schema_table(const ap_schema_t *s, const char *schema, ap_str_t name)
{
    for (size_t i = 0; i < s->ntables; i++)
        if (strcmp(s->tables[i].schema, schema) == 0 && name_eq(s->tables[i].name, name))
            return &s->tables[i];
    return NULL;
}
