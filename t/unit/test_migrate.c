/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests for the migration files: statement splitting, error positions,
 * transaction-control detection and file names. */
#include <stdlib.h>
#include <string.h>

#include "migrate.h"
#include "tap.h"

/* The statements of sql, joined by "|", each as its text. */
static char out[4096];
static const char *split(const char *sql, size_t *n)
{
    ap_sql_stmt_t *st;
    size_t cnt = ap_sql_split(sql, strlen(sql), &st);
    out[0] = '\0';
    for (size_t i = 0; i < cnt; i++) {
        if (i)
            strcat(out, "|");
        strncat(out, sql + st[i].off, st[i].len);
    }
    if (n)
        *n = cnt;
    free(st);
    return out;
}

static int line_of(const char *sql, size_t i)
{
    ap_sql_stmt_t *st;
    size_t cnt = ap_sql_split(sql, strlen(sql), &st);
    int l = i < cnt ? st[i].line : -1;
    free(st);
    return l;
}

static void test_split(void)
{
    size_t n;
    is_str(split("select 1; select 2;", &n), "select 1;|select 2;", "two statements");
    is_int(n, 2, "counted");
    is_str(split("select 1", NULL), "select 1", "a last statement without a semicolon");
    is_str(split("select 1;  -- trailing comment\n", NULL), "select 1;", "a trailing comment");
    is_str(split("", &n), "", "empty text");
    is_int(n, 0, "no statement");
    is_str(split("-- only a comment\n/* and another */\n;;\n", &n), "", "comments and lone ;");
    is_int(n, 0, "no statement in them");
    is_str(split("select ';', \"a;b\" from t;", NULL), "select ';', \"a;b\" from t;",
           "semicolons in quotes");
    is_str(split("select 'it''s; here'; select 2;", NULL), "select 'it''s; here';|select 2;",
           "a doubled quote");
    is_str(split("select E'\\'; still' ; select 2;", NULL), "select E'\\'; still' ;|select 2;",
           "E'' with a backslash-escaped quote");
    is_str(split("select 'a\\'; select 2;", NULL), "select 'a\\';|select 2;",
           "a backslash in a standard string escapes nothing");
    is_str(split("create function f() returns int as $$ select 1; $$ language sql; select 2;",
                 NULL),
           "create function f() returns int as $$ select 1; $$ language sql;|select 2;",
           "$$ bodies");
    is_str(split("do $body$ begin perform 1; $x$ ; $x$; end $body$; select 2;", NULL),
           "do $body$ begin perform 1; $x$ ; $x$; end $body$;|select 2;",
           "a tagged body holding another tag");
    is_str(split("prepare p as select $1; execute p(1);", NULL),
           "prepare p as select $1;|execute p(1);", "$1 is a parameter, not a quote");
    is_str(split("select a$b$c from t; select 2;", NULL), "select a$b$c from t;|select 2;",
           "$ inside an identifier");
    is_str(split("select /* a; /* nested; */ still */ 1; select 2;", NULL),
           "select /* a; /* nested; */ still */ 1;|select 2;", "nested block comments");
    is_str(split("select 1 -- a comment; not the end\n; select 2;", NULL),
           "select 1 -- a comment; not the end\n;|select 2;", "a line comment");
    is_str(split("create rule r as on insert to t do (insert into u values (1); insert into u "
                 "values (2)); select 2;",
                 NULL),
           "create rule r as on insert to t do (insert into u values (1); insert into u values "
           "(2));|select 2;",
           "semicolons in parentheses");
    is_str(split("create function f() returns int language sql begin atomic select 1; select "
                 "case when true then 2 end; end; select 3;",
                 NULL),
           "create function f() returns int language sql begin atomic select 1; select case "
           "when true then 2 end; end;|select 3;",
           "BEGIN ATOMIC ... END (with a CASE ... END inside)");
    is_str(split("CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC insert into t "
                 "values (1); END; select 2;",
                 NULL),
           "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC insert into t values (1); "
           "END;|select 2;",
           "CREATE OR REPLACE PROCEDURE, upper case");
    is_str(split("select 'unterminated; select 2;", &n), "select 'unterminated; select 2;",
           "an unterminated string runs to the end");
    is_int(n, 1, "one statement");
    is_str(split("select 'é;ü', '😀;'; select 2;", NULL), "select 'é;ü', '😀;';|select 2;",
           "UTF-8 text");

    const char *sql = "-- header\n\nselect 1;\n/* c\n */ select\n 2;\n\n\ncreate table t (\n"
                      "  a text default 'x\ny'\n);\nselect 4;";
    is_int(line_of(sql, 0), 3, "line of the first statement");
    is_int(line_of(sql, 1), 5, "line of a statement after a block comment");
    is_int(line_of(sql, 2), 9, "line of the third");
    is_int(line_of(sql, 3), 13, "lines in a string count");
}

static void test_position(void)
{
    const char *sql = "select 1;\n\ncreate table t (\n  a int,\n  b nosuchtype\n);\n";
    ap_sql_stmt_t *st;
    size_t n = ap_sql_split(sql, strlen(sql), &st);
    is_int(n, 2, "two statements");
    int line, col;
    size_t loff;
    /* The server's position of "nosuchtype" in the statement text. */
    const char *stmt = sql + st[1].off;
    long pos = (long)(strstr(stmt, "nosuchtype") - stmt) + 1;
    ap_sql_position(sql, strlen(sql), &st[1], pos, &line, &col, &loff);
    is_int(line, 5, "position: line in the file");
    is_int(col, 5, "position: column");
    ok(strncmp(sql + loff, "  b nosuchtype", 14) == 0, "position: the line's start");
    ap_sql_position(sql, strlen(sql), &st[1], 0, &line, &col, &loff);
    is_int(line, 3, "no position: the statement's first line");
    is_int(col, 1, "and its first column");
    free(st);

    /* Positions count characters, not bytes. */
    const char *u = "select 'ééé',\n 'ü' + nosuch;";
    n = ap_sql_split(u, strlen(u), &st);
    ap_sql_position(u, strlen(u), &st[0], 22, &line, &col, &loff);
    is_int(line, 2, "UTF-8: line");
    is_int(col, 8, "UTF-8: column in characters");
    free(st);
}

static void test_txn(void)
{
    static const struct {
        const char *sql;
        const char *want;
    } cases[] = {
        {"BEGIN;", "BEGIN"},
        {"begin transaction isolation level serializable;", "BEGIN"},
        {"commit;", "COMMIT"},
        {"END;", "END"},
        {"abort;", "ABORT"},
        {"rollback;", "ROLLBACK"},
        {"rollback to savepoint a;", NULL},
        {"savepoint a;", NULL},
        {"start transaction;", "START TRANSACTION"},
        {"prepare transaction 'x';", "PREPARE TRANSACTION"},
        {"prepare p as select 1;", NULL},
        {"create table begin_x (a int);", NULL},
        {"select 1;", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ap_sql_stmt_t *st;
        size_t n = ap_sql_split(cases[i].sql, strlen(cases[i].sql), &st);
        const char *got = n == 1 ? ap_sql_txn_control(&st[0]) : "split failed";
        is_str(got, cases[i].want, cases[i].sql);
        free(st);
    }
}

static void test_names(void)
{
    int64_t v = -1;
    char *name = NULL;
    is_int(ap_migrate_parse_name("0001_example_tasks.sql", &v, &name), 1, "0001_example_tasks.sql");
    is_int(v, 1, "version 1");
    is_str(name, "example_tasks", "name");
    free(name);
    is_int(ap_migrate_parse_name("20240501120000_add-index.v2.sql", &v, &name), 1,
           "a timestamp version, - and .");
    is_int(v, 20240501120000LL, "its version");
    free(name);
    is_int(ap_migrate_parse_name("README.md", &v, &name), 0, "not .sql: ignored");
    is_int(ap_migrate_parse_name("0001_x.sql~", &v, &name), 0, "a backup file: ignored");
    is_int(ap_migrate_parse_name("x_0001.sql", &v, &name), -1, "no leading version");
    is_int(ap_migrate_parse_name("0001.sql", &v, &name), -1, "no name");
    is_int(ap_migrate_parse_name("0001_.sql", &v, &name), -1, "an empty name");
    is_int(ap_migrate_parse_name("0001_a b.sql", &v, &name), -1, "a space");
    is_int(ap_migrate_parse_name("1234567890123456789_a.sql", &v, &name), -1, "19 digits");
}

int main(void)
{
    test_split();
    test_position();
    test_txn();
    test_names();
    return done_testing();
}
