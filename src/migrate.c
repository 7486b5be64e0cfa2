/* SPDX-License-Identifier: BSD-2-Clause */
/* apiary migrate: versioned SQL files applied in order, one transaction each. */
#include "migrate.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "clock.h"

/* A migration file bigger than this is surely not one. */
#define MAX_FILE_BYTES (256u * 1024 * 1024)

/* ---------------------------------------------------------------------------
 * Splitting SQL into statements
 * ------------------------------------------------------------------------- */

static int ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int ident_cont(unsigned char c)
{
    return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/* Skips a quoted string or identifier starting at s[i] (the quote); a
 * doubled quote stands for itself, and in an E'' string a backslash escapes
 * the next byte. Returns the index after the closing quote (or len). */
static size_t skip_quoted(const char *s, size_t len, size_t i, int *line, int backslash)
{
    char q = s[i++];
    while (i < len) {
        if (s[i] == '\n')
            (*line)++;
        if (backslash && s[i] == '\\' && i + 1 < len) {
            if (s[i + 1] == '\n')
                (*line)++;
            i += 2;
            continue;
        }
        if (s[i] == q) {
            if (i + 1 < len && s[i + 1] == q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i++;
    }
    return len;
}

/* At s[i] == '$': the length of a dollar-quote tag ("$$", "$body$") that
 * starts here, or 0 if this is not one ($1, a lone $). */
static size_t dollar_tag(const char *s, size_t len, size_t i)
{
    size_t j = i + 1;
    if (j < len && ident_start((unsigned char)s[j])) {
        while (j < len && ident_cont((unsigned char)s[j]) && s[j] != '$')
            j++;
    }
    return j < len && s[j] == '$' ? j + 1 - i : 0;
}

static void add_stmt(ap_sql_stmt_t **v, size_t *n, size_t *cap, const ap_sql_stmt_t *st)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = ap_xrealloc(*v, *cap * sizeof(**v));
    }
    (*v)[(*n)++] = *st;
}

size_t ap_sql_split(const char *s, size_t len, ap_sql_stmt_t **stmts)
{
    ap_sql_stmt_t *v = NULL, cur;
    size_t n = 0, cap = 0, i = 0, last_end = 0;
    int line = 1, in_stmt = 0, paren = 0, begin_depth = 0, nwords = 0, ntokens = 0;
    char ids[4];

    memset(&cur, 0, sizeof(cur));
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            line++;
            i++;
            continue;
        }
        if (isspace(c)) {
            i++;
            continue;
        }
        if (c == '-' && i + 1 < len && s[i + 1] == '-') {
            while (i < len && s[i] != '\n')
                i++;
            continue;
        }
        if (c == '/' && i + 1 < len && s[i + 1] == '*') {
            int depth = 1;
            i += 2;
            while (i < len && depth > 0) {
                if (s[i] == '\n') {
                    line++;
                    i++;
                } else if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
                    depth++;
                    i += 2;
                } else if (s[i] == '*' && i + 1 < len && s[i + 1] == '/') {
                    depth--;
                    i += 2;
                } else {
                    i++;
                }
            }
            continue;
        }
        if (!in_stmt) {
            memset(&cur, 0, sizeof(cur));
            cur.off = i;
            cur.line = line;
            in_stmt = 1;
            paren = begin_depth = nwords = ntokens = 0;
            memset(ids, 0, sizeof(ids));
        }
        ntokens++;
        if (c == ';') {
            i++;
            last_end = i;
            if (paren == 0 && begin_depth == 0) {
                cur.len = i - cur.off;
                /* A lone ";" is no statement. */
                if (ntokens > 1)
                    add_stmt(&v, &n, &cap, &cur);
                in_stmt = 0;
            }
            continue;
        }
        if (c == '\'' || c == '"') {
            i = skip_quoted(s, len, i, &line, 0);
        } else if (c == '$') {
            size_t tag = dollar_tag(s, len, i);
            if (tag == 0) {
                i++;
                while (i < len && isdigit((unsigned char)s[i]))
                    i++;
            } else {
                /* The body runs to the same tag. */
                size_t j = i + tag;
                while (j < len && !(s[j] == '$' && j + tag <= len && memcmp(s + j, s + i, tag) == 0)) {
                    if (s[j] == '\n')
                        line++;
                    j++;
                }
                i = j < len ? j + tag : len;
            }
        } else if (ident_start(c)) {
            size_t start = i;
            while (i < len && ident_cont((unsigned char)s[i]))
                i++;
            size_t wlen = i - start;
            /* E'...': a string with backslash escapes, not a word. */
            if (wlen == 1 && (c == 'e' || c == 'E') && i < len && s[i] == '\'') {
                i = skip_quoted(s, len, i, &line, 1);
                last_end = i;
                continue;
            }
            char w[16] = "";
            if (wlen < sizeof(w)) {
                for (size_t k = 0; k < wlen; k++)
                    w[k] = (char)tolower((unsigned char)s[start + k]);
                w[wlen] = '\0';
            }
            if (nwords == 0)
                memcpy(cur.word1, w, sizeof(w));
            else if (nwords == 1)
                memcpy(cur.word2, w, sizeof(w));
            /* psql's heuristic: inside CREATE [OR REPLACE] FUNCTION or
             * PROCEDURE, BEGIN (ATOMIC) ... END may hold semicolons. */
            if (nwords < 4) {
                ids[nwords] = (strcmp(w, "create") == 0 || strcmp(w, "function") == 0 ||
                               strcmp(w, "procedure") == 0 || strcmp(w, "or") == 0 ||
                               strcmp(w, "replace") == 0)
                                  ? w[0]
                                  : 0;
            }
            nwords++;
            if (ids[0] == 'c' &&
                (ids[1] == 'f' || ids[1] == 'p' ||
                 (ids[1] == 'o' && ids[2] == 'r' && (ids[3] == 'f' || ids[3] == 'p'))) &&
                paren == 0) {
                if (strcmp(w, "begin") == 0)
                    begin_depth++;
                else if (strcmp(w, "case") == 0 && begin_depth >= 1)
                    begin_depth++;
                else if (strcmp(w, "end") == 0 && begin_depth > 0)
                    begin_depth--;
            }
        } else {
            if (c == '(')
                paren++;
            else if (c == ')' && paren > 0)
                paren--;
            i++;
        }
        last_end = i;
    }
    if (in_stmt && ntokens > 0) {
        cur.len = last_end - cur.off;
        add_stmt(&v, &n, &cap, &cur);
    }
    *stmts = v;
    return n;
}

void ap_sql_position(const char *text, size_t len, const ap_sql_stmt_t *st, long pos, int *line,
                     int *col, size_t *line_off)
{
    size_t end = st->off + st->len, i = st->off, lstart = st->off;
    int l = st->line;
    long chars = 0;
    if (end > len)
        end = len;
    /* The line of the statement's first token starts before it. */
    while (lstart > 0 && text[lstart - 1] != '\n')
        lstart--;
    if (pos > 1) {
        while (i < end) {
            unsigned char c = (unsigned char)text[i];
            /* Characters, not bytes: skip UTF-8 continuation bytes. */
            if ((c & 0xc0) != 0x80) {
                if (chars == pos - 1)
                    break;
                chars++;
            }
            if (c == '\n') {
                l++;
                lstart = i + 1;
            }
            i++;
        }
    }
    int cc = 1;
    for (size_t k = lstart; k < i; k++)
        if (((unsigned char)text[k] & 0xc0) != 0x80)
            cc++;
    *line = l;
    *col = cc;
    *line_off = lstart;
}

const char *ap_sql_txn_control(const ap_sql_stmt_t *st)
{
    static const char *const words[][2] = {
        {"begin", "BEGIN"}, {"commit", "COMMIT"}, {"end", "END"}, {"abort", "ABORT"}};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(st->word1, words[i][0]) == 0)
            return words[i][1];
    /* ROLLBACK TO SAVEPOINT stays inside the transaction; ROLLBACK does not. */
    if (strcmp(st->word1, "rollback") == 0 && strcmp(st->word2, "to") != 0)
        return "ROLLBACK";
    if (strcmp(st->word1, "start") == 0 && strcmp(st->word2, "transaction") == 0)
        return "START TRANSACTION";
    if (strcmp(st->word1, "prepare") == 0 && strcmp(st->word2, "transaction") == 0)
        return "PREPARE TRANSACTION";
    return NULL;
}

int ap_migrate_parse_name(const char *file, int64_t *version, char **name)
{
    size_t len = strlen(file);
    if (len < 4 || strcmp(file + len - 4, ".sql") != 0)
        return 0;
    size_t i = 0;
    int64_t v = 0;
    while (i < len && isdigit((unsigned char)file[i])) {
        if (i >= 18)
            return -1;
        v = v * 10 + (file[i] - '0');
        i++;
    }
    if (i == 0 || file[i] != '_')
        return -1;
    size_t nstart = ++i, nend = len - 4;
    if (nstart >= nend)
        return -1;
    for (size_t k = nstart; k < nend; k++) {
        unsigned char c = (unsigned char)file[k];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.')
            return -1;
    }
    *version = v;
    *name = ap_xstrndup(file + nstart, nend - nstart);
    return 1;
}

/* ---------------------------------------------------------------------------
 * The directory
 * ------------------------------------------------------------------------- */

typedef struct {
    int64_t version;
    char *name; /* "example_tasks" */
    char *file; /* "0001_example_tasks.sql" */
    char *path; /* DIR/file, for messages */
    char *text;
    size_t len;
    char checksum[65]; /* SHA-256 of the bytes, hex */
    ap_sql_stmt_t *st;
    size_t nst;
} mfile_t;

typedef struct {
    int64_t version;
    char *name;
    char *checksum;
    char *applied_at;
    char *duration_ms;
} applied_t;

static void files_free(mfile_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].name);
        free(f[i].file);
        free(f[i].path);
        free(f[i].text);
        free(f[i].st);
    }
    free(f);
}

static void applied_free(applied_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].name);
        free(a[i].checksum);
        free(a[i].applied_at);
        free(a[i].duration_ms);
    }
    free(a);
}

static int by_version(const void *a, const void *b)
{
    const mfile_t *x = a, *y = b;
    return x->version < y->version ? -1 : x->version > y->version;
}

static char *join_path(const char *dir, const char *file)
{
    ap_buf_t b;
    ap_buf_init(&b);
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    ap_buf_append(&b, dir, dl);
    ap_buf_append_char(&b, '/');
    ap_buf_append_str(&b, file);
    return b.data;
}

static int read_file(mfile_t *f)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        fprintf(stderr, "apiary: migrate: cannot read %s: %s\n", f->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > MAX_FILE_BYTES) {
        fprintf(stderr, "apiary: migrate: %s: %s\n", f->path,
                S_ISREG(sb.st_mode) ? "too large for a migration (256 MiB at most)"
                                    : "not a regular file");
        close(fd);
        return -1;
    }
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_reserve(&b, (size_t)sb.st_size + 1);
    for (;;) {
        ap_buf_reserve(&b, 65536);
        ssize_t r = read(fd, b.data + b.len, b.cap - b.len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "apiary: migrate: cannot read %s: %s\n", f->path, strerror(errno));
            close(fd);
            ap_buf_cleanup(&b);
            return -1;
        }
        if (r == 0)
            break;
        b.len += (size_t)r;
        b.data[b.len] = '\0';
        if (b.len > MAX_FILE_BYTES)
            break;
    }
    close(fd);
    if (memchr(b.data, '\0', b.len) != NULL) {
        fprintf(stderr, "apiary: migrate: %s: contains a NUL byte; not SQL text\n", f->path);
        ap_buf_cleanup(&b);
        return -1;
    }
    f->text = b.data;
    f->len = b.len;

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(f->text, f->len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        fprintf(stderr, "apiary: migrate: %s: SHA-256 failed\n", f->path);
        return -1;
    }
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(f->checksum + 2 * i, 3, "%02x", md[i]);

    f->nst = ap_sql_split(f->text, f->len, &f->st);
    for (size_t i = 0; i < f->nst; i++) {
        const char *tc = ap_sql_txn_control(&f->st[i]);
        if (tc) {
            fprintf(stderr,
                    "%s:%d: %s is not allowed in a migration: apiary runs each file in a "
                    "transaction of its own, which it would end; remove it\n",
                    f->path, f->st[i].line, tc);
            return -1;
        }
    }
    return 0;
}

/* Reads every NNNN_name.sql of dir, sorted by version. Prints why and
 * returns -1 on failure. */
static int load_dir(const char *dir, mfile_t **out, size_t *nout)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "apiary: migrate: cannot open the directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    mfile_t *f = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int64_t version;
        char *name;
        int p = ap_migrate_parse_name(e->d_name, &version, &name);
        if (p == 0)
            continue;
        if (p < 0) {
            fprintf(stderr,
                    "apiary: migrate: %s/%s: not a migration file name: expected NNNN_name.sql "
                    "(a version of digits, \"_\", a name of letters, digits, \"_\", \"-\" or "
                    "\".\")\n",
                    dir, e->d_name);
            rc = -1;
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            f = ap_xrealloc(f, cap * sizeof(*f));
        }
        memset(&f[n], 0, sizeof(f[n]));
        f[n].version = version;
        f[n].name = name;
        f[n].file = ap_xstrdup(e->d_name);
        f[n].path = join_path(dir, e->d_name);
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(f, n, sizeof(*f), by_version);
    for (size_t i = 1; i < n; i++) {
        if (f[i].version == f[i - 1].version) {
            fprintf(stderr, "apiary: migrate: %s and %s have the same version %04" PRId64 "\n",
                    f[i - 1].path, f[i].path, f[i].version);
            rc = -1;
        }
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (read_file(&f[i]) < 0)
            rc = -1;
    if (rc < 0) {
        files_free(f, n);
        return -1;
    }
    *out = f;
    *nout = n;
    return 0;
}

/* ---------------------------------------------------------------------------
 * The database
 * ------------------------------------------------------------------------- */

/* Where notices come from: the statement being run, if any. */
static const char *cur_path;
static int cur_line;

static void on_notice(void *arg, const PGresult *r)
{
    (void)arg;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (cur_path)
        fprintf(stderr, "%s:%d: %s: %s\n", cur_path, cur_line, sev ? sev : "NOTICE",
                msg ? msg : "");
    else
        fprintf(stderr, "apiary: migrate: %s: %s\n", sev ? sev : "NOTICE", msg ? msg : "");
}

static PGconn *db_connect(const ap_migrate_opts_t *o)
{
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%llu",
             (unsigned long long)((o->connect_timeout_ms + 999) / 1000));
    /* Keywords before dbname are defaults the URI may override. */
    const char *keys[] = {"connect_timeout", "client_encoding", "fallback_application_name",
                          "dbname", NULL};
    const char *vals[] = {timeout, "UTF8", "apiary-migrate", o->uri, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "apiary: migrate: cannot connect to the database: %s",
                c ? PQerrorMessage(c) : "out of memory\n");
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeReceiver(c, on_notice, NULL);
    return c;
}

static void print_field(const PGresult *r, int field, const char *label)
{
    const char *v = PQresultErrorField(r, field);
    if (v && *v)
        fprintf(stderr, "  %s: %s\n", label, v);
}

/* An error of the statement st of file f: "path:line: ERROR: ...", the
 * server's detail, hint and context, and the line with a caret under the
 * position the server named. */
static void stmt_error(const mfile_t *f, const ap_sql_stmt_t *st, const PGresult *r,
                       PGconn *c)
{
    const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;
    int line, col;
    size_t loff;
    ap_sql_position(f->text, f->len, st, pos ? strtol(pos, NULL, 10) : 0, &line, &col, &loff);
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *sev = r ? PQresultErrorField(r, PG_DIAG_SEVERITY) : NULL;
    if (msg)
        fprintf(stderr, "%s:%d: %s: %s (SQLSTATE %s)\n", f->path, line, sev ? sev : "ERROR", msg,
                state ? state : "?");
    else
        fprintf(stderr, "%s:%d: %s", f->path, line, PQerrorMessage(c));
    if (r) {
        print_field(r, PG_DIAG_MESSAGE_DETAIL, "DETAIL");
        print_field(r, PG_DIAG_MESSAGE_HINT, "HINT");
        print_field(r, PG_DIAG_CONTEXT, "CONTEXT");
    }
    if (pos) {
        size_t e = loff;
        while (e < f->len && f->text[e] != '\n' && e - loff < 300)
            e++;
        fprintf(stderr, "  %.*s\n  ", (int)(e - loff), f->text + loff);
        int cc = 1;
        for (size_t k = loff; k < e && cc < col; k++) {
            unsigned char ch = (unsigned char)f->text[k];
            if ((ch & 0xc0) == 0x80)
                continue;
            fputc(ch == '\t' ? '\t' : ' ', stderr);
            cc++;
        }
        fputs("^\n", stderr);
    }
}

/* A failed query of apiary's own, with a hint when the role lacks rights. */
static void db_fail(PGconn *c, const PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    fprintf(stderr, "apiary: migrate: %s failed: %s%s", what, msg ? msg : PQerrorMessage(c),
            msg ? "\n" : "");
    if (state && strcmp(state, "42501") == 0)
        fprintf(stderr,
                "apiary: migrate: the role \"%s\" lacks a privilege that migrations need: "
                "connect as the owner of the schemas (or a superuser) with [database] "
                "migrate_uri or --uri\n",
                PQuser(c));
}

/* Runs a command of apiary's own; prints the error and returns -1. */
static int exec_ok(PGconn *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c, sql);
    int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    if (!ok)
        db_fail(c, r, what);
    PQclear(r);
    return ok ? 0 : -1;
}

static int lock(PGconn *c)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "select pg_advisory_xact_lock(%lld)", (long long)AP_MIGRATE_LOCK_KEY);
    return exec_ok(c, sql, "taking the advisory lock (pg_advisory_xact_lock)");
}

static void rollback(PGconn *c)
{
    PQclear(PQexec(c, "rollback"));
}


static const char table_sql[] =
    "create table apiary.schema_migrations (\n"
    "    version     bigint primary key check (version >= 0),\n"
    "    name        text not null,\n"
    "    checksum    text not null check (checksum ~ '^[0-9a-f]{64}$'),\n"
    "    applied_at  timestamptz not null default clock_timestamp(),\n"
    "    duration_ms bigint not null check (duration_ms >= 0)\n"
    ");\n"
    "comment on table apiary.schema_migrations is\n"
    "    'apiary migrate: one row per applied migration file (checksum: SHA-256 of its bytes)'";

/* Creates apiary.schema_migrations (and the schema apiary) if missing,
 * under the lock, so two first runs do not race. */
static int ensure_table(PGconn *c)
{
    if (exec_ok(c, "begin", "begin") < 0)
        return -1;
    if (lock(c) < 0) {
        rollback(c);
        return -1;
    }
    /* Checked first: CREATE ... IF NOT EXISTS needs the privilege to
     * create even when there is nothing to create. */
    PGresult *r = PQexec(c, "select to_regnamespace('apiary') is not null, "
                            "to_regclass('apiary.schema_migrations') is not null");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_fail(c, r, "looking for apiary.schema_migrations");
        PQclear(r);
        rollback(c);
        return -1;
    }
    int has_schema = PQgetvalue(r, 0, 0)[0] == 't', has_table = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    if ((!has_schema && exec_ok(c, "create schema apiary", "creating the schema apiary") < 0) ||
        (!has_table && exec_ok(c, table_sql, "creating apiary.schema_migrations") < 0) ||
        exec_ok(c, "commit", "commit") < 0) {
        rollback(c);
        return -1;
    }
    return 0;
}

/* What the database recorded, by version (none if the table is missing). */
static int load_applied(PGconn *c, applied_t **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    PGresult *r = PQexec(c, "select to_regclass('apiary.schema_migrations') is not null");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_fail(c, r, "looking for apiary.schema_migrations");
        PQclear(r);
        return -1;
    }
    int exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!exists)
        return 0;
    r = PQexec(c, "select version, name, checksum, "
                  "to_char(applied_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                  "duration_ms from apiary.schema_migrations order by version");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_fail(c, r, "reading apiary.schema_migrations");
        PQclear(r);
        return -1;
    }
    size_t n = (size_t)PQntuples(r);
    applied_t *a = ap_xcalloc(n ? n : 1, sizeof(*a));
    for (size_t i = 0; i < n; i++) {
        a[i].version = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
        a[i].name = ap_xstrdup(PQgetvalue(r, (int)i, 1));
        a[i].checksum = ap_xstrdup(PQgetvalue(r, (int)i, 2));
        a[i].applied_at = ap_xstrdup(PQgetvalue(r, (int)i, 3));
        a[i].duration_ms = ap_xstrdup(PQgetvalue(r, (int)i, 4));
    }
    PQclear(r);
    *out = a;
    *nout = n;
    return 0;
}

static const mfile_t *find_file(const mfile_t *f, size_t n, int64_t version)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].version == version)
            return &f[i];
    return NULL;
}

static const applied_t *find_applied(const applied_t *a, size_t n, int64_t version)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].version == version)
            return &a[i];
    return NULL;
}

/* Every way the directory disagrees with the record, one message each on
 * stderr. Returns how many there are. */
static int check_history(const char *dir, const mfile_t *f, size_t nf, const applied_t *a,
                         size_t na)
{
    int conflicts = 0;
    int64_t max_applied = na ? a[na - 1].version : -1;
    for (size_t i = 0; i < na; i++) {
        const mfile_t *m = find_file(f, nf, a[i].version);
        if (m == NULL) {
            fprintf(stderr,
                    "apiary: migrate: version %04" PRId64 " (%s) was applied on %s, but %s has "
                    "no file for it (the wrong directory? a file removed?)\n",
                    a[i].version, a[i].name, a[i].applied_at, dir);
            conflicts++;
        } else if (strcmp(m->checksum, a[i].checksum) != 0) {
            fprintf(stderr,
                    "apiary: migrate: %s has changed since it was applied on %s (SHA-256 "
                    "%.12s..., recorded %.12s...): an applied migration must not change; "
                    "undo the edit and put the change in a new file\n",
                    m->path, a[i].applied_at, m->checksum, a[i].checksum);
            conflicts++;
        }
    }
    for (size_t i = 0; i < nf; i++) {
        if (find_applied(a, na, f[i].version) == NULL && f[i].version < max_applied) {
            fprintf(stderr,
                    "apiary: migrate: %s is pending, but version %04" PRId64 " is applied "
                    "already: migrations apply in version order; give it a version above "
                    "%04" PRId64 "\n",
                    f[i].path, max_applied, max_applied);
            conflicts++;
        }
    }
    return conflicts;
}

static void print_target(PGconn *c, const char *dir)
{
    const char *host = PQhost(c);
    printf("apiary migrate: database \"%s\" on %s%s%s as %s; directory %s\n", PQdb(c),
           host && *host ? host : "the local socket", PQport(c) && *PQport(c) ? " port " : "",
           PQport(c) ? PQport(c) : "", PQuser(c), dir);
}

/* Runs the statements of f; on failure prints where and returns -1 (the
 * transaction is then aborted). */
static int run_statements(PGconn *c, const mfile_t *f)
{
    for (size_t i = 0; i < f->nst; i++) {
        const ap_sql_stmt_t *st = &f->st[i];
        char *sql = ap_xstrndup(f->text + st->off, st->len);
        cur_path = f->path;
        cur_line = st->line;
        PGresult *r = PQexec(c, sql);
        free(sql);
        ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (s == PGRES_COPY_IN) {
            /* The data of COPY FROM STDIN would follow in the file, as psql
             * reads it; apiary does not. */
            PQclear(r);
            PQputCopyEnd(c, "COPY FROM STDIN is not supported in a migration (use INSERT)");
            r = PQgetResult(c);
            s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        } else if (s == PGRES_COPY_OUT) {
            char *buf;
            while (PQgetCopyData(c, &buf, 0) > 0)
                PQfreemem(buf);
            PQclear(r);
            r = PQgetResult(c);
            s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        }
        int ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY;
        if (!ok)
            stmt_error(f, st, r, c);
        PQclear(r);
        /* Drain what a COPY may leave behind. */
        while ((r = PQgetResult(c)) != NULL)
            PQclear(r);
        cur_path = NULL;
        if (!ok)
            return -1;
    }
    return 0;
}

/* Applies f in a transaction of its own. Returns 0 (applied, or found
 * applied by another run: *skipped), or an AP_MIGRATE_* failure. */
static int apply_one(PGconn *c, const mfile_t *f, int *skipped, uint64_t *ms)
{
    *skipped = 0;
    if (exec_ok(c, "begin", "begin") < 0)
        return AP_MIGRATE_FAILED;
    if (lock(c) < 0) {
        rollback(c);
        return AP_MIGRATE_FAILED;
    }
    /* Under the lock, again: another run may have applied it meanwhile. */
    char vbuf[32];
    snprintf(vbuf, sizeof(vbuf), "%" PRId64, f->version);
    const char *p1[] = {vbuf};
    PGresult *r = PQexecParams(c,
                               "select (select checksum from apiary.schema_migrations "
                               "where version = $1::bigint), "
                               "(select max(version) from apiary.schema_migrations)",
                               1, NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_fail(c, r, "reading apiary.schema_migrations");
        PQclear(r);
        rollback(c);
        return AP_MIGRATE_FAILED;
    }
    int done = !PQgetisnull(r, 0, 0);
    int same = done && strcmp(PQgetvalue(r, 0, 0), f->checksum) == 0;
    int64_t max = PQgetisnull(r, 0, 1) ? -1 : strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    if (done) {
        rollback(c);
        if (!same) {
            fprintf(stderr,
                    "apiary: migrate: %s: another run applied a different file with version "
                    "%04" PRId64 " meanwhile\n",
                    f->path, f->version);
            return AP_MIGRATE_CONFLICT;
        }
        *skipped = 1;
        return 0;
    }
    if (max > f->version) {
        rollback(c);
        fprintf(stderr,
                "apiary: migrate: %s: another run applied version %04" PRId64 " meanwhile; "
                "this one is now out of order\n",
                f->path, max);
        return AP_MIGRATE_CONFLICT;
    }

    uint64_t t0 = ap_clock_mono_ms();
    if (run_statements(c, f) < 0) {
        rollback(c);
        return AP_MIGRATE_FAILED;
    }
    *ms = ap_clock_mono_ms() - t0;
    /* A SET ROLE in the file must not decide who records it. */
    if (exec_ok(c, "reset role", "reset role") < 0) {
        rollback(c);
        return AP_MIGRATE_FAILED;
    }
    char msbuf[32];
    snprintf(msbuf, sizeof(msbuf), "%llu", (unsigned long long)*ms);
    const char *p4[] = {vbuf, f->name, f->checksum, msbuf};
    r = PQexecParams(c,
                     "insert into apiary.schema_migrations (version, name, checksum, duration_ms) "
                     "values ($1::bigint, $2, $3, $4::bigint)",
                     4, NULL, p4, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        db_fail(c, r, "recording it in apiary.schema_migrations");
        PQclear(r);
        rollback(c);
        return AP_MIGRATE_FAILED;
    }
    PQclear(r);
    /* Deferred constraints are checked now: an error here is the file's. */
    r = PQexec(c, "commit");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s: COMMIT failed: %s", f->path,
                r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        PQclear(r);
        rollback(c);
        return AP_MIGRATE_FAILED;
    }
    PQclear(r);
    /* Each file starts from a fresh session: no SET, temporary table or
     * role of one leaks into the next. */
    if (exec_ok(c, "discard all", "discard all") < 0)
        return AP_MIGRATE_FAILED;
    return 0;
}

int ap_migrate_run(const ap_migrate_opts_t *o)
{
    mfile_t *f = NULL;
    size_t nf = 0, na = 0;
    applied_t *a = NULL;
    if (load_dir(o->dir, &f, &nf) < 0)
        return AP_MIGRATE_FAILED;
    PGconn *c = db_connect(o);
    if (c == NULL) {
        files_free(f, nf);
        return AP_MIGRATE_FAILED;
    }
    int rc = AP_MIGRATE_OK;
    print_target(c, o->dir);
    if ((!o->dry_run && ensure_table(c) < 0) || load_applied(c, &a, &na) < 0) {
        rc = AP_MIGRATE_FAILED;
        goto out;
    }
    if (check_history(o->dir, f, nf, a, na) > 0) {
        fprintf(stderr, "apiary: migrate: nothing applied: the directory and the database's "
                        "record disagree (see apiary migrate status)\n");
        rc = AP_MIGRATE_CONFLICT;
        goto out;
    }

    size_t pending = 0, beyond = 0, napplied = 0, nskipped = 0;
    int64_t last = na ? a[na - 1].version : -1;
    for (size_t i = 0; i < nf; i++) {
        if (find_applied(a, na, f[i].version))
            continue;
        if (o->to >= 0 && f[i].version > o->to) {
            beyond++;
            continue;
        }
        pending++;
        if (o->dry_run) {
            printf("would apply %s (%zu statement%s)\n", f[i].file, f[i].nst,
                   f[i].nst == 1 ? "" : "s");
            continue;
        }
        int skipped = 0;
        uint64_t ms = 0;
        rc = apply_one(c, &f[i], &skipped, &ms);
        if (rc != AP_MIGRATE_OK) {
            if (rc == AP_MIGRATE_FAILED)
                fprintf(stderr,
                        "apiary: migrate: %s failed and was rolled back: none of it is applied"
                        "%s\n",
                        f[i].file, napplied ? "; the files before it stay applied" : "");
            break;
        }
        last = f[i].version;
        if (skipped) {
            nskipped++;
            printf("%s: applied by another run meanwhile\n", f[i].file);
        } else {
            napplied++;
            printf("%s: applied (%zu statement%s, %llu ms)\n", f[i].file, f[i].nst,
                   f[i].nst == 1 ? "" : "s", (unsigned long long)ms);
        }
        fflush(stdout);
    }
    if (napplied > 0) {
        /* The event triggers of sql/apiary.sql send this after DDL already;
         * a database without them, or a migration of data and grants only,
         * needs it all the same. */
        if (exec_ok(c, "notify apiary, 'reload schema'", "NOTIFY apiary") == 0)
            printf("NOTIFY apiary, 'reload schema' sent: running workers reload their schema "
                   "cache\n");
        else if (rc == AP_MIGRATE_OK)
            rc = AP_MIGRATE_FAILED;
    }
    if (rc != AP_MIGRATE_OK)
        goto out;
    if (o->dry_run)
        printf("%zu file%s would be applied (dry run: nothing changed)", pending,
               pending == 1 ? "" : "s");
    else if (pending == 0)
        printf("nothing to apply");
    else
        printf("%zu file%s applied", napplied, napplied == 1 ? "" : "s");
    if (last >= 0 && !o->dry_run)
        printf("; schema version %04" PRId64, last);
    if (beyond)
        printf("; %zu file%s after version %04" PRId64 " left pending (--to)", beyond,
               beyond == 1 ? "" : "s", o->to);
    printf("\n");
out:
    applied_free(a, na);
    files_free(f, nf);
    PQfinish(c);
    return rc;
}

int ap_migrate_status(const ap_migrate_opts_t *o)
{
    mfile_t *f = NULL;
    size_t nf = 0, na = 0;
    applied_t *a = NULL;
    if (load_dir(o->dir, &f, &nf) < 0)
        return AP_MIGRATE_FAILED;
    PGconn *c = db_connect(o);
    if (c == NULL) {
        files_free(f, nf);
        return AP_MIGRATE_FAILED;
    }
    print_target(c, o->dir);
    if (load_applied(c, &a, &na) < 0) {
        applied_free(a, na);
        files_free(f, nf);
        PQfinish(c);
        return AP_MIGRATE_FAILED;
    }
    int conflicts = check_history(o->dir, f, nf, a, na);

    /* Versions of both lists, merged in order. */
    int width = 4;
    for (size_t i = 0; i < nf; i++)
        if ((int)strlen(f[i].name) > width)
            width = (int)strlen(f[i].name);
    for (size_t i = 0; i < na; i++)
        if ((int)strlen(a[i].name) > width)
            width = (int)strlen(a[i].name);
    printf("%-8s %-*s  %-12s %-20s %s\n", "version", width, "name", "state", "applied at",
           "duration");
    int64_t max_applied = na ? a[na - 1].version : -1;
    size_t i = 0, j = 0, npending = 0;
    while (i < nf || j < na) {
        int64_t v;
        if (j >= na || (i < nf && f[i].version < a[j].version))
            v = f[i].version;
        else
            v = a[j].version;
        const mfile_t *m = i < nf && f[i].version == v ? &f[i++] : NULL;
        const applied_t *p = j < na && a[j].version == v ? &a[j++] : NULL;
        const char *state;
        if (p && !m)
            state = "missing";
        else if (p && strcmp(p->checksum, m->checksum) != 0)
            state = "changed";
        else if (p)
            state = "applied";
        else if (v < max_applied)
            state = "out of order";
        else
            state = "pending";
        if (!p)
            npending++;
        char vbuf[32];
        snprintf(vbuf, sizeof(vbuf), "%04" PRId64, v);
        if (p) {
            char dur[48];
            snprintf(dur, sizeof(dur), "%s ms", p->duration_ms);
            printf("%-8s %-*s  %-12s %-20s %s\n", vbuf, width, p->name, state, p->applied_at,
                   dur);
        } else {
            printf("%-8s %-*s  %s\n", vbuf, width, m->name, state);
        }
    }
    printf("%zu applied, %zu pending%s", na, npending, conflicts ? "" : "\n");
    if (conflicts)
        printf(", %d conflict%s\n", conflicts, conflicts == 1 ? "" : "s");
    applied_free(a, na);
    files_free(f, nf);
    PQfinish(c);
    return conflicts ? AP_MIGRATE_CONFLICT : AP_MIGRATE_OK;
}
