/* SPDX-License-Identifier: BSD-2-Clause */
/* apiary migrate: versioned SQL files applied in order, each in its own
 * transaction, recorded in apiary.schema_migrations. A command-line tool:
 * blocking libpq, output on stdout, errors on stderr. */
#ifndef AP_MIGRATE_H
#define AP_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

/* Exit statuses of "apiary migrate" and "apiary migrate status". */
#define AP_MIGRATE_OK 0
#define AP_MIGRATE_FAILED 1   /* cannot connect or read; a file failed and was rolled back */
#define AP_MIGRATE_USAGE 2    /* bad arguments */
#define AP_MIGRATE_CONFLICT 3 /* the directory disagrees with what the database recorded */

/* The key of the transaction-scoped advisory lock every run takes before it
 * looks at or applies a version: the bytes of "apiary" read as a number.
 * Two runs against one database apply files one at a time, and each checks
 * again, under the lock, whether the file is still pending. */
#define AP_MIGRATE_LOCK_KEY 0x617069617279LL

/* One statement of a migration file. */
typedef struct {
    size_t off;     /* byte offset of its first token in the file */
    size_t len;     /* up to and including its semicolon (or the end of the file) */
    int line;       /* 1-based line of off */
    char word1[16]; /* its first two words, lower case, "" if none or too long */
    char word2[16];
} ap_sql_stmt_t;

/* Splits SQL text into statements the way psql does: semicolons end a
 * statement unless inside quotes ('', E'', "", $tag$...$tag$), comments
 * (--, nested slash-star), parentheses, or the BEGIN ... END body of a
 * CREATE [OR REPLACE] FUNCTION|PROCEDURE (SQL-standard bodies). Comments
 * and blank space between statements belong to none. Sets *stmts to a
 * malloc'd array (free() it; NULL when there is none) and returns how many
 * there are. */
size_t ap_sql_split(const char *text, size_t len, ap_sql_stmt_t **stmts);

/* Where a server error position points: pos is PG_DIAG_STATEMENT_POSITION
 * (1-based, in characters of the statement text st as sent, UTF-8). Sets
 * *line (in the file), *col (1-based, in characters) and *line_off (byte
 * offset of that line's start in text). pos <= 0 means the statement's
 * first token. */
void ap_sql_position(const char *text, size_t len, const ap_sql_stmt_t *st, long pos, int *line,
                     int *col, size_t *line_off);

/* The transaction-control command st is ("BEGIN", "COMMIT", ...), or
 * NULL: a migration runs in a transaction of apiary's, which such a
 * statement would end. */
const char *ap_sql_txn_control(const ap_sql_stmt_t *st);

/* Parses a file name "NNNN_name.sql" (digits, "_", then letters, digits,
 * "_", "-" or "."). Returns 1 and sets *version and *name (malloc'd) if it
 * is one, 0 if it does not end in ".sql" (not a migration: ignored), -1 if
 * it ends in ".sql" but is not of that form. */
int ap_migrate_parse_name(const char *file, int64_t *version, char **name);

typedef struct {
    const char *uri; /* connection string; never printed */
    const char *dir; /* the directory of NNNN_name.sql files */
    int dry_run;     /* list what would be applied, change nothing */
    int64_t to;      /* apply versions up to this one; < 0: all */
    uint64_t connect_timeout_ms;
} ap_migrate_opts_t;

/* Applies the pending files of o->dir in version order, each in its own
 * transaction under the advisory lock, and records each in
 * apiary.schema_migrations (created if missing). Stops at the first
 * failure (that file rolled back, file:line of the failing statement on
 * stderr) or conflict (an applied file changed or missing, a pending file
 * older than an applied one). After applying anything, sends NOTIFY
 * apiary, 'reload schema'. Returns an AP_MIGRATE_* exit status. */
int ap_migrate_run(const ap_migrate_opts_t *o);

/* Prints one line per version, applied or pending (and changed, missing,
 * out of order), on stdout. Returns AP_MIGRATE_OK, AP_MIGRATE_CONFLICT if
 * there is a conflict, AP_MIGRATE_FAILED if the database or the directory
 * cannot be read. */
int ap_migrate_status(const ap_migrate_opts_t *o);

#endif
