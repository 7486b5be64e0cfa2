/* SPDX-License-Identifier: BSD-2-Clause */
/* The configuration: directive table, inih parsing, validation. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <netinet/in.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "jwt.h"
#include "log.h"
#include "tls.h"
#include "cors.h"
#include "log.h"
#include "privdrop.h"

#ifndef AP_RUNSTATEDIR
#define AP_RUNSTATEDIR "/run"
#endif
#ifndef AP_PKGDATADIR
#define AP_PKGDATADIR "/usr/share/apiary"
#endif

/* A config file larger than this is surely a mistake. */
#define AP_CONFIG_MAX_BYTES (1024 * 1024)

typedef enum {
    T_LISTEN,   /* repeatable listen line */
    T_ADMIN,    /* the admin listener: an address or "off" */
    T_WORKERS,  /* "auto" or 1..AP_MAX_WORKERS */
    T_STRING,   /* any non-empty text */
    T_DURATION, /* milliseconds */
    T_SIZE,     /* bytes */
    T_UINT,     /* plain integer */
    T_LOGLEVEL, /* level name */
    T_OFFSTR,   /* text, or "off" for NULL */
    T_OPTSTR,   /* text, or empty for NULL */
    T_PREFIX,   /* URL path prefix: "/" or "/x/y" */
    T_ROOT,     /* repeatable [static] root: PREFIX DIR [fallback=FILE] */
    T_CACHECTL, /* repeatable [static] cache_control: PATTERN VALUE */
    T_SYMLINKS, /* off, inside, on */
    T_BOOL,     /* on/off, yes/no, true/false, 1/0 */
    T_CERT,     /* repeatable: "CHAIN_FILE [KEY_FILE]" */
    T_TLSPROTO, /* TLS versions: "TLSv1.2 TLSv1.3" */
    T_HSTS,     /* a Strict-Transport-Security value, or "off" */
    T_RATE,     /* "off" or "Nr/s [burst=B]" (ratelimit.c) */
    T_CIDRS,    /* addresses and prefixes, separated by blanks or commas */
    T_LIST,     /* words separated by blanks or commas */
    T_FWDHDR,   /* x-forwarded-for or forwarded */
} dtype_t;

typedef struct {
    const char *section;
    const char *name;
    dtype_t type;
    size_t offset;
    const char *def;
    uint64_t min, max; /* for numbers, in the stored unit */
} directive_t;

#define OFF(f) offsetof(ap_config_t, f)
/* Media types compressed on the fly by default: text that compresses well.
 * Images, fonts (but SVG), archives and video already are compressed. */
#define AP_GZIP_DEFAULT_TYPES                                                                      \
    "text/* application/javascript application/json application/*+json application/xml "         \
    "application/*+xml image/svg+xml application/wasm"
/* Mozilla's "intermediate" profile (version 5.7): forward secrecy and AEAD
 * only, for TLS 1.2 clients back to 2013 or so. */
#define AP_TLS_CIPHERS                                                                             \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"    \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"      \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define AP_TLS_CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define DAY_MS (24ULL * 3600 * 1000)
#define GIB (1024ULL * 1024 * 1024)

static const directive_t directives[] = {
    {"server", "listen", T_LISTEN, 0, "127.0.0.1:8080", 0, 0},
    {"server", "workers", T_WORKERS, OFF(workers), "auto", 1, AP_MAX_WORKERS},
    {"server", "pidfile", T_STRING, OFF(pidfile), AP_RUNSTATEDIR "/apiary.pid", 0, 0},
    {"server", "min_uptime", T_DURATION, OFF(min_uptime_ms), "2s", 0, DAY_MS},
    {"server", "shutdown_timeout", T_DURATION, OFF(shutdown_timeout_ms), "30s", 0, DAY_MS},
    {"server", "header_timeout", T_DURATION, OFF(header_timeout_ms), "10s", 100, DAY_MS},
    {"server", "body_timeout", T_DURATION, OFF(body_timeout_ms), "30s", 100, DAY_MS},
    {"server", "send_timeout", T_DURATION, OFF(send_timeout_ms), "60s", 100, DAY_MS},
    {"server", "keepalive_timeout", T_DURATION, OFF(keepalive_timeout_ms), "75s", 0, DAY_MS},
    {"server", "keepalive_requests", T_UINT, OFF(keepalive_requests), "1000", 1, UINT32_MAX},
    {"server", "max_uri_size", T_SIZE, OFF(max_uri_size), "8k", 64, 1024 * 1024},
    {"server", "max_header_size", T_SIZE, OFF(max_header_size), "16k", 256, 1024 * 1024},
    {"server", "max_headers", T_UINT, OFF(max_headers), "100", 1, 10000},
    {"server", "max_body_size", T_SIZE, OFF(max_body_size), "1m", 0, 4 * GIB},
    {"server", "max_connections", T_UINT, OFF(max_connections), "4096", 1, 1000000},
    {"server", "server_header", T_OFFSTR, OFF(server_header), "apiary", 0, 0},
    {"server", "worker_ready_timeout", T_DURATION, OFF(worker_ready_timeout_ms), "30s", 100, DAY_MS},
    {"server", "worker_timeout", T_DURATION, OFF(worker_timeout_ms), "10s", 0, DAY_MS},
    {"server", "max_requests", T_UINT, OFF(max_requests), "0", 0, UINT32_MAX},
    {"server", "max_requests_jitter", T_UINT, OFF(max_requests_jitter), "0", 0, UINT32_MAX},
    {"server", "max_worker_memory", T_SIZE, OFF(max_worker_memory), "0", 0, 1024 * GIB},
    {"server", "drain_delay", T_DURATION, OFF(drain_delay_ms), "5s", 0, DAY_MS},
    {"server", "control_socket", T_STRING, OFF(control_socket), AP_RUNSTATEDIR "/apiary.sock", 0, 0},
    {"server", "user", T_OPTSTR, OFF(user), "", 0, 0},
    {"server", "group", T_OPTSTR, OFF(group), "", 0, 0},
    {"server", "min_body_rate", T_SIZE, OFF(min_body_rate), "500", 0, GIB},
    {"admin", "listen", T_ADMIN, 0, "127.0.0.1:9091", 0, 0},
    {"database", "uri", T_OPTSTR, OFF(db_uri), "", 0, 0},
    {"database", "listen_uri", T_OPTSTR, OFF(db_listen_uri), "", 0, 0},
    {"database", "migrate_uri", T_OPTSTR, OFF(db_migrate_uri), "", 0, 0},
    {"database", "migrations_dir", T_STRING, OFF(db_migrations_dir), AP_PKGDATADIR "/sql/migrations",
     0, 0},
    {"database", "pool_size", T_UINT, OFF(db_pool_size), "4", 1, 256},
    {"database", "queue_size", T_UINT, OFF(db_queue_size), "1024", 0, 1000000},
    {"database", "pool_timeout", T_DURATION, OFF(db_pool_timeout_ms), "5s", 0, DAY_MS},
    {"database", "connect_timeout", T_DURATION, OFF(db_connect_timeout_ms), "5s", 100, DAY_MS},
    {"database", "statement_timeout", T_DURATION, OFF(db_statement_timeout_ms), "30s", 0, DAY_MS},
    {"database", "request_timeout", T_DURATION, OFF(db_request_timeout_ms), "60s", 100, DAY_MS},
    {"database", "unhealthy_grace", T_DURATION, OFF(db_unhealthy_grace_ms), "10s", 0, DAY_MS},
    {"api", "schemas", T_STRING, OFF(api_schemas), "api", 0, 0},
    {"api", "anon_role", T_OPTSTR, OFF(api_anon_role), "anon", 0, 0},
    {"api", "prefix", T_PREFIX, OFF(api_prefix), "/", 0, 0},
    {"api", "max_rows", T_UINT, OFF(api_max_rows), "0", 0, UINT32_MAX},
    {"api", "jwt_secret_file", T_OPTSTR, OFF(api_jwt_secret_file), "", 0, 0},
    {"api", "jwt_aud", T_OPTSTR, OFF(api_jwt_aud), "", 0, 0},
    {"api", "jwt_role_claim", T_STRING, OFF(api_jwt_role_claim), "role", 0, 0},
    {"api", "jwt_leeway", T_DURATION, OFF(api_jwt_leeway_ms), "30s", 0, 3600 * 1000},
    {"api", "pre_request", T_OPTSTR, OFF(api_pre_request), "", 0, 0},
    {"static", "root", T_ROOT, 0, "", 0, 0},
    {"static", "index", T_OFFSTR, OFF(static_index), "index.html", 0, 0},
    {"static", "follow_symlinks", T_SYMLINKS, OFF(static_symlinks), "inside", 0, 0},
    {"static", "precompressed", T_BOOL, OFF(static_precompressed), "on", 0, 0},
    {"static", "cache_control", T_CACHECTL, 0, "", 0, 0},
    {"static", "mime_types", T_OPTSTR, OFF(mime_types), "/etc/mime.types", 0, 0},
    {"static", "default_type", T_STRING, OFF(default_type), "application/octet-stream", 0, 0},
    {"static", "open_file_cache", T_UINT, OFF(open_file_cache), "1000", 0, 100000},
    {"static", "open_file_cache_valid", T_DURATION, OFF(open_file_cache_valid_ms), "2s", 0, DAY_MS},
    {"gzip", "enable", T_BOOL, OFF(gzip), "off", 0, 0},
    {"gzip", "min_length", T_SIZE, OFF(gzip_min_length), "1k", 0, GIB},
    {"gzip", "level", T_UINT, OFF(gzip_level), "1", 1, 9},
    {"gzip", "types", T_STRING, OFF(gzip_types), AP_GZIP_DEFAULT_TYPES, 0, 0},
    {"log", "level", T_LOGLEVEL, OFF(log_level), "info", 0, 0},
    {"log", "error_log", T_STRING, OFF(error_log), "stderr", 0, 0},
    {"log", "access", T_OFFSTR, OFF(access_log), "off", 0, 0},
    {"log", "access_format", T_STRING, OFF(access_format), "json", 0, 0},
    {"log", "access_query", T_STRING, OFF(access_query), "on", 0, 0},
    {"log", "slow_ms", T_UINT, OFF(slow_ms), "0", 0, DAY_MS},
    {"tls", "certificate", T_CERT, 0, "", 0, 0},
    {"tls", "protocols", T_TLSPROTO, OFF(tls_protocols), "TLSv1.2 TLSv1.3", 0, 0},
    {"tls", "ciphers", T_STRING, OFF(tls_ciphers), AP_TLS_CIPHERS, 0, 0},
    {"tls", "ciphersuites", T_STRING, OFF(tls_ciphersuites), AP_TLS_CIPHERSUITES, 0, 0},
    {"tls", "session_tickets", T_BOOL, OFF(tls_session_tickets), "on", 0, 0},
    {"tls", "ticket_rotate", T_DURATION, OFF(tls_ticket_rotate_ms), "1h", 1000, 7 * DAY_MS},
    {"tls", "hsts", T_HSTS, OFF(tls_hsts), "max-age=63072000", 0, 0},
    {"security", "x_content_type_options", T_OFFSTR, OFF(sec_content_type_options), "nosniff", 0,
     0},
    {"security", "x_frame_options", T_OFFSTR, OFF(sec_frame_options), "DENY", 0, 0},
    {"security", "referrer_policy", T_OFFSTR, OFF(sec_referrer_policy),
     "strict-origin-when-cross-origin", 0, 0},
    {"security", "content_security_policy", T_OFFSTR, OFF(sec_csp),
     "default-src 'none'; frame-ancestors 'none'", 0, 0},
    {"security", "static_content_security_policy", T_OFFSTR, OFF(sec_csp_static),
     "frame-ancestors 'none'; object-src 'none'; base-uri 'self'", 0, 0},
    {"security", "permissions_policy", T_OFFSTR, OFF(sec_permissions_policy),
     "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
     "microphone=(), payment=(), usb=()",
     0, 0},
    {"security", "cross_origin_opener_policy", T_OFFSTR, OFF(sec_coop), "same-origin", 0, 0},
    {"security", "cors_origins", T_LIST, OFF(cors_origins), "", 0, 0},
    {"security", "cors_credentials", T_BOOL, OFF(cors_credentials), "off", 0, 0},
    {"security", "cors_allow_methods", T_STRING, OFF(cors_allow_methods),
     "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", 0, 0},
    {"security", "cors_allow_headers", T_STRING, OFF(cors_allow_headers), AP_CORS_ALLOW_HEADERS, 0,
     0},
    {"security", "cors_expose_headers", T_OFFSTR, OFF(cors_expose_headers), AP_CORS_EXPOSE_HEADERS,
     0, 0},
    {"security", "cors_max_age", T_DURATION, OFF(cors_max_age_ms), "24h", 0, 7 * DAY_MS},
    {"security", "rate_limit_api", T_RATE, OFF(rate_limit[AP_RL_API]), "off", 0, 0},
    {"security", "rate_limit_rpc", T_RATE, OFF(rate_limit[AP_RL_RPC]), "off", 0, 0},
    {"security", "rate_limit_rpc_paths", T_LIST, OFF(rate_limit_rpc_paths), "", 0, 0},
    {"security", "rate_limit_static", T_RATE, OFF(rate_limit[AP_RL_STATIC]), "off", 0, 0},
    {"security", "rate_limit_allow", T_CIDRS, OFF(rate_limit_allow), "", 0, 0},
    {"security", "rate_limit_table_size", T_UINT, OFF(rate_limit_table_size), "65536", 64,
     16 * 1024 * 1024},
    {"security", "max_connections_per_address", T_UINT, OFF(max_connections_per_address), "0", 0,
     1000000},
    {"security", "max_connections_total", T_UINT, OFF(max_connections_total), "0", 0, 10000000},
    {"security", "trusted_proxies", T_CIDRS, OFF(trusted_proxies), "", 0, 0},
    {"security", "forwarded_header", T_FWDHDR, OFF(forwarded_header), "x-forwarded-for", 0, 0},
};
#define NDIRECTIVES (sizeof(directives) / sizeof(directives[0]))

/* Parser state shared by the reader and the handler. */
typedef struct {
    const char *name; /* file name for messages */
    const char *p;    /* unread text */
    const char *end;
    int line;          /* number of the line last handed to inih */
    int long_line;     /* that line was too long and got cut */
    ap_config_t *conf;
    ap_buf_t *errors;
    int nerrors;
    unsigned char seen[NDIRECTIVES]; /* set once a line gave a value */
    int lines[NDIRECTIVES];          /* where: a line, 0 for the default, -1 for env */
} parse_t;

static void add_error(parse_t *ps, const char *where, const directive_t *d, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error(parse_t *ps, const char *where, const directive_t *d, const char *fmt, ...)
{
    va_list ap;
    if (where)
        ap_buf_printf(ps->errors, "%s: ", where);
    else
        ap_buf_printf(ps->errors, "%s:%d: ", ps->name, ps->line);
    if (d)
        ap_buf_printf(ps->errors, "%s.%s: ", d->section, d->name);
    va_start(ap, fmt);
    ap_buf_vprintf(ps->errors, fmt, ap);
    va_end(ap);
    ap_buf_append_char(ps->errors, '\n');
    ps->nerrors++;
}

int ap_config_parse_duration(const char *s, uint64_t *ms)
{
    const char *p = s;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    uint64_t mul;
    if (*p == '\0' || strcmp(p, "s") == 0)
        mul = 1000;
    else if (strcmp(p, "ms") == 0)
        mul = 1;
    else if (strcmp(p, "m") == 0)
        mul = 60 * 1000;
    else if (strcmp(p, "h") == 0)
        mul = 3600 * 1000;
    else
        return -1;
    if (v > UINT64_MAX / mul)
        return -1;
    *ms = v * mul;
    return 0;
}

int ap_config_parse_size(const char *s, uint64_t *bytes)
{
    const char *p = s;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    uint64_t mul = 1;
    if (*p == 'k' || *p == 'K')
        mul = 1024;
    else if (*p == 'm' || *p == 'M')
        mul = 1024 * 1024;
    else if (*p == 'g' || *p == 'G')
        mul = GIB;
    if (mul != 1)
        p++;
    if (*p != '\0' || v > UINT64_MAX / mul)
        return -1;
    *bytes = v * mul;
    return 0;
}

static int parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static void strlist_free(ap_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void free_listen(ap_config_t *c)
{
    for (size_t i = 0; i < c->nlisten; i++)
        ap_listen_conf_cleanup(&c->listen[i]);
    free(c->listen);
    c->listen = NULL;
    c->nlisten = 0;
}

static void free_static(ap_config_t *c)
{
    for (size_t i = 0; i < c->nstatic_roots; i++) {
        free(c->static_roots[i].prefix);
        free(c->static_roots[i].dir);
        free(c->static_roots[i].fallback);
    }
    free(c->static_roots);
    c->static_roots = NULL;
    c->nstatic_roots = 0;
}

static void free_cache_rules(ap_config_t *c)
{
    for (size_t i = 0; i < c->ncache_rules; i++) {
        free(c->cache_rules[i].pattern);
        free(c->cache_rules[i].value);
    }
    free(c->cache_rules);
    c->cache_rules = NULL;
    c->ncache_rules = 0;
}

/* "/" or "/x/y" without "//", "?", "#" or blanks; the length without
 * trailing slashes (but for "/"), or 0 if it is not such a path. */
static size_t url_prefix_len(const char *value)
{
    size_t n = strlen(value);
    if (n == 0 || value[0] != '/' || strstr(value, "//") || strpbrk(value, "?# \t"))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)value[i] < 0x21 || value[i] == 0x7f || value[i] == '\\')
            return 0;
    while (n > 1 && value[n - 1] == '/')
        n--;
    return n;
}

/* A file name inside a [static] root: relative, no empty, "." or ".."
 * segment, no control characters; a leading "/" is dropped. NULL if bad. */
static char *root_relative(const char *v)
{
    while (*v == '/')
        v++;
    if (*v == '\0' || v[strlen(v) - 1] == '/')
        return NULL;
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
            return NULL;
    const char *seg = v;
    for (const char *p = v;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - seg);
            if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return NULL;
            if (*p == '\0')
                break;
            seg = p + 1;
        }
    }
    return ap_xstrdup(v);
}

/* [static] root = PREFIX DIR [fallback=FILE]; the directory (and the
 * fallback file) must exist now, so that apiary -t catches a typo. */
static void set_root(parse_t *ps, const directive_t *d, const char *value, const char *where)
{
    ap_config_t *c = ps->conf;
    char *copy = ap_xstrdup(value), *save = NULL;
    char *prefix = strtok_r(copy, " \t", &save);
    char *dir = prefix ? strtok_r(NULL, " \t", &save) : NULL;
    char *opt, *fallback = NULL;
    struct stat st;
    size_t plen, dlen;

    if (prefix == NULL || dir == NULL) {
        add_error(ps, where, d, "expected \"URL-PREFIX DIRECTORY [fallback=FILE]\", got \"%s\"", value);
        goto out;
    }
    if ((plen = url_prefix_len(prefix)) == 0) {
        add_error(ps, where, d, "expected a URL path such as / or /assets, got \"%s\"", prefix);
        goto out;
    }
    while ((opt = strtok_r(NULL, " \t", &save)) != NULL) {
        if (strncmp(opt, "fallback=", 9) == 0 && fallback == NULL) {
            if ((fallback = root_relative(opt + 9)) == NULL) {
                add_error(ps, where, d,
                          "fallback: expected a file name inside the directory, got \"%s\"", opt + 9);
                goto out;
            }
        } else {
            add_error(ps, where, d, "unknown option \"%s\" (expected fallback=FILE)", opt);
            goto out;
        }
    }
    dlen = strlen(dir);
    if (dir[0] != '/') {
        add_error(ps, where, d, "the directory must be an absolute path, got \"%s\"", dir);
        goto out;
    }
    while (dlen > 1 && dir[dlen - 1] == '/')
        dir[--dlen] = '\0';
    if (stat(dir, &st) < 0) {
        add_error(ps, where, d, "%s: %s", dir, strerror(errno));
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        add_error(ps, where, d, "%s: not a directory", dir);
        goto out;
    }
    if (fallback) {
        char path[4096];
        int n = snprintf(path, sizeof(path), "%s/%s", dlen == 1 ? "" : dir, fallback);
        if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &st) < 0) {
            add_error(ps, where, d, "fallback %s: %s", path,
                      n >= 0 && (size_t)n < sizeof(path) ? strerror(errno) : "path too long");
            goto out;
        }
        if (!S_ISREG(st.st_mode)) {
            add_error(ps, where, d, "fallback %s: not a regular file", path);
            goto out;
        }
    }
    for (size_t i = 0; i < c->nstatic_roots; i++) {
        if (strlen(c->static_roots[i].prefix) == plen &&
            memcmp(c->static_roots[i].prefix, prefix, plen) == 0) {
            add_error(ps, where, d, "the prefix %.*s is mapped twice", (int)plen, prefix);
            goto out;
        }
    }
    c->static_roots =
        ap_xrealloc(c->static_roots, (c->nstatic_roots + 1) * sizeof(*c->static_roots));
    ap_static_root_t *r = &c->static_roots[c->nstatic_roots++];
    r->prefix = ap_xstrndup(prefix, plen);
    r->dir = ap_xstrdup(dir);
    r->fallback = fallback;
    r->line = where ? 0 : ps->line;
    fallback = NULL;
out:
    free(fallback);
    free(copy);
}

/* [static] cache_control = PATTERN VALUE */
static void set_cache_rule(parse_t *ps, const directive_t *d, const char *value, const char *where)
{
    ap_config_t *c = ps->conf;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    const char *pat = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    size_t patlen = (size_t)(p - pat);
    while (*p == ' ' || *p == '\t')
        p++;
    size_t vlen = strlen(p);
    while (vlen && (p[vlen - 1] == ' ' || p[vlen - 1] == '\t'))
        vlen--;
    if (patlen == 0 || vlen == 0) {
        add_error(ps, where, d, "expected \"PATTERN VALUE\" such as \"*.html no-cache\", got \"%s\"",
                  value);
        return;
    }
    for (size_t i = 0; i < vlen; i++) {
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) {
            add_error(ps, where, d, "control character in the value");
            return;
        }
    }
    c->cache_rules = ap_xrealloc(c->cache_rules, (c->ncache_rules + 1) * sizeof(*c->cache_rules));
    c->cache_rules[c->ncache_rules].pattern = ap_xstrndup(pat, patlen);
    c->cache_rules[c->ncache_rules].value = ap_xstrndup(p, vlen);
    c->ncache_rules++;
}

static void free_certs(ap_config_t *c)
{
    for (size_t i = 0; i < c->ntls_certs; i++) {
        free(c->tls_certs[i].chain);
        free(c->tls_certs[i].key);
        free(c->tls_certs[i].where);
    }
    free(c->tls_certs);
    c->tls_certs = NULL;
    c->ntls_certs = 0;
}

/* "max-age=N[; includeSubDomains][; preload]" in any case, separated by
 * semicolons or blanks, written back in the canonical form. Returns NULL
 * with *why set. */
static char *parse_hsts(const char *value, const char **why)
{
    uint64_t max_age = 0;
    int have_age = 0, subdomains = 0, preload = 0;
    char *copy = ap_xstrdup(value), *save = NULL;
    *why = NULL;
    /* Blanks separate as semicolons do: in the file, a blank before a
     * semicolon would start a comment (inih). */
    for (char *tok = strtok_r(copy, "; \t", &save); tok && !*why;
         tok = strtok_r(NULL, "; \t", &save)) {
        if (strncasecmp(tok, "max-age=", 8) == 0) {
            const char *d = tok + 8;
            max_age = 0;
            if (!isdigit((unsigned char)*d))
                *why = "max-age must be a number of seconds";
            for (; *d && !*why; d++) {
                if (!isdigit((unsigned char)*d) || max_age > 1000000000ULL)
                    *why = "max-age must be a number of seconds (at most 1000000000)";
                else
                    max_age = max_age * 10 + (uint64_t)(*d - '0');
            }
            have_age = 1;
        } else if (strcasecmp(tok, "includeSubDomains") == 0) {
            subdomains = 1;
        } else if (strcasecmp(tok, "preload") == 0) {
            preload = 1;
        } else {
            *why = "expected off, or max-age=SECONDS with optional includeSubDomains and preload";
        }
    }
    free(copy);
    if (*why)
        return NULL;
    if (!have_age) {
        *why = "max-age=SECONDS is required (or off)";
        return NULL;
    }
    /* The browsers' preload list takes only sites that ask for a year
     * or more, subdomains included (hstspreload.org). */
    if (preload && (!subdomains || max_age < 31536000)) {
        *why = "preload needs includeSubDomains and a max-age of at least 31536000 (one year)";
        return NULL;
    }
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_printf(&b, "max-age=%llu%s%s", (unsigned long long)max_age,
                  subdomains ? "; includeSubDomains" : "", preload ? "; preload" : "");
    return b.data;
}

/* Drops the public listen lines (the first listen line of the file, or
 * APIARY_SERVER_LISTEN, replaces the default); the admin one stays. */
static void drop_public_listen(ap_config_t *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->nlisten; i++) {
        if (c->listen[i].admin)
            c->listen[k++] = c->listen[i];
        else
            ap_listen_conf_cleanup(&c->listen[i]);
    }
    c->nlisten = k;
}

/* Stores value into the snapshot, or reports why it cannot. where is NULL
 * for a file line (the parser's current position) or names the source. */
static void set_value(parse_t *ps, const directive_t *d, const char *value, const char *where)
{
    ap_config_t *c = ps->conf;
    void *field = (char *)c + d->offset;
    uint64_t v;

    switch (d->type) {
    case T_ADMIN:
    case T_LISTEN: {
        ap_listen_conf_t lc;
        const char *why;
        if (d->type == T_ADMIN) {
            /* One admin listener: a new value replaces the old. */
            for (size_t i = 0; i < c->nlisten; i++) {
                if (c->listen[i].admin) {
                    ap_listen_conf_cleanup(&c->listen[i]);
                    c->listen[i] = c->listen[--c->nlisten];
                    break;
                }
            }
            if (strcmp(value, "off") == 0)
                return;
        }
        if (ap_listen_parse(value, &lc, &why) < 0) {
            add_error(ps, where, d, "%s: \"%s\"", why, value);
            return;
        }
        if (d->type == T_ADMIN && (lc.tls || lc.redirect)) {
            add_error(ps, where, d, "the admin listener is plain HTTP: no tls or redirect flag");
            ap_listen_conf_cleanup(&lc);
            return;
        }
        for (size_t i = 0; i < c->nlisten; i++) {
            if (ap_listen_same(&c->listen[i], &lc)) {
                add_error(ps, where, d, "duplicate address \"%s\"", lc.text);
                ap_listen_conf_cleanup(&lc);
                return;
            }
        }
        lc.admin = d->type == T_ADMIN;
        c->listen = ap_xrealloc(c->listen, (c->nlisten + 1) * sizeof(*c->listen));
        c->listen[c->nlisten++] = lc;
        return;
    }
    case T_WORKERS:
        if (strcmp(value, "auto") == 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            *(uint32_t *)field = (uint32_t)(n < 1 ? 1 : n > AP_MAX_WORKERS ? AP_MAX_WORKERS : n);
            return;
        }
        if (parse_uint(value, &v) < 0 || v < d->min || v > d->max) {
            add_error(ps, where, d, "expected \"auto\" or an integer %llu..%llu, got \"%s\"",
                      (unsigned long long)d->min, (unsigned long long)d->max, value);
            return;
        }
        *(uint32_t *)field = (uint32_t)v;
        return;
    case T_STRING:
    case T_OFFSTR:
        if (value[0] == '\0') {
            add_error(ps, where, d, "a value is required");
            return;
        }
        free(*(char **)field);
        *(char **)field =
            (d->type == T_OFFSTR && strcmp(value, "off") == 0) ? NULL : ap_xstrdup(value);
        return;
    case T_OPTSTR:
        free(*(char **)field);
        *(char **)field = value[0] ? ap_xstrdup(value) : NULL;
        return;
    case T_ROOT:
        if (value[0] == '\0' && where && strcmp(where, "default") == 0)
            return; /* no root by default */
        set_root(ps, d, value, where);
        return;
    case T_CACHECTL:
        if (value[0] == '\0' && where && strcmp(where, "default") == 0)
            return;
        set_cache_rule(ps, d, value, where);
        return;
    case T_BOOL:
        if (strcmp(value, "on") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 ||
            strcmp(value, "1") == 0) {
            *(int *)field = 1;
        } else if (strcmp(value, "off") == 0 || strcmp(value, "no") == 0 ||
                   strcmp(value, "false") == 0 || strcmp(value, "0") == 0) {
            *(int *)field = 0;
        } else {
            add_error(ps, where, d, "expected on or off, got \"%s\"", value);
        }
        return;
    case T_SYMLINKS:
        if (strcmp(value, "off") == 0)
            *(int *)field = AP_SYMLINKS_OFF;
        else if (strcmp(value, "inside") == 0)
            *(int *)field = AP_SYMLINKS_INSIDE;
        else if (strcmp(value, "on") == 0)
            *(int *)field = AP_SYMLINKS_ON;
        else
            add_error(ps, where, d, "expected off, inside or on, got \"%s\"", value);
        return;
    case T_PREFIX: {
        size_t n = strlen(value);
        if (n == 0 || value[0] != '/' || strstr(value, "//") || strchr(value, '?') ||
            strchr(value, '#') || strchr(value, ' ')) {
            add_error(ps, where, d, "expected a URL path such as / or /api, got \"%s\"", value);
            return;
        }
        while (n > 1 && value[n - 1] == '/')
            n--;
        free(*(char **)field);
        *(char **)field = ap_xstrndup(value, n);
        return;
    }
    case T_DURATION:
        if (ap_config_parse_duration(value, &v) < 0) {
            add_error(ps, where, d,
                      "expected a duration such as 500ms, 10s, 2m or 1h, got \"%s\"", value);
            return;
        }
        if (v < d->min || v > d->max) {
            add_error(ps, where, d, "must be between %llums and %llums, got \"%s\"",
                      (unsigned long long)d->min, (unsigned long long)d->max, value);
            return;
        }
        *(uint64_t *)field = v;
        return;
    case T_SIZE:
        if (ap_config_parse_size(value, &v) < 0) {
            add_error(ps, where, d, "expected a size such as 512, 16k or 1m, got \"%s\"", value);
            return;
        }
        if (v < d->min || v > d->max) {
            add_error(ps, where, d, "must be between %llu and %llu bytes, got \"%s\"",
                      (unsigned long long)d->min, (unsigned long long)d->max, value);
            return;
        }
        *(uint64_t *)field = v;
        return;
    case T_UINT:
        if (parse_uint(value, &v) < 0 || v < d->min || v > d->max) {
            add_error(ps, where, d, "expected an integer %llu..%llu, got \"%s\"",
                      (unsigned long long)d->min, (unsigned long long)d->max, value);
            return;
        }
        *(uint64_t *)field = v;
        return;
    case T_CERT: {
        /* The default is no certificate at all. */
        if (value[0] == '\0' && where && strcmp(where, "default") == 0)
            return;
        char *copy = ap_xstrdup(value), *save = NULL;
        char *chain = strtok_r(copy, " \t", &save);
        char *key = chain ? strtok_r(NULL, " \t", &save) : NULL;
        char *extra = key ? strtok_r(NULL, " \t", &save) : NULL;
        if (chain == NULL || extra != NULL || chain[0] != '/' || (key && key[0] != '/')) {
            add_error(ps, where, d,
                      "expected CERTIFICATE_FILE [KEY_FILE], absolute paths, got \"%s\"", value);
            free(copy);
            return;
        }
        ap_tls_cert_conf_t cc = {ap_xstrdup(chain), ap_xstrdup(key ? key : chain), NULL};
        ap_buf_t w;
        ap_buf_init(&w);
        if (where)
            ap_buf_append_str(&w, where);
        else
            ap_buf_printf(&w, "%s:%d", ps->name, ps->line);
        cc.where = w.data;
        c->tls_certs = ap_xrealloc(c->tls_certs, (c->ntls_certs + 1) * sizeof(*c->tls_certs));
        c->tls_certs[c->ntls_certs++] = cc;
        free(copy);
        return;
    }
    case T_TLSPROTO: {
        uint32_t bits = 0;
        char *copy = ap_xstrdup(value), *save = NULL;
        for (char *tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
            if (strcmp(tok, "TLSv1.2") == 0) {
                bits |= AP_TLS_PROTO_12;
            } else if (strcmp(tok, "TLSv1.3") == 0) {
                bits |= AP_TLS_PROTO_13;
            } else {
                add_error(ps, where, d,
                          "\"%s\": only TLSv1.2 and TLSv1.3 are supported (older versions are "
                          "broken)",
                          tok);
                free(copy);
                return;
            }
        }
        free(copy);
        if (bits == 0) {
            add_error(ps, where, d, "expected TLSv1.2, TLSv1.3 or both");
            return;
        }
        *(uint32_t *)field = bits;
        return;
    }
    case T_HSTS: {
        const char *why;
        char *hsts = NULL;
        if (strcmp(value, "off") != 0 && (hsts = parse_hsts(value, &why)) == NULL) {
            add_error(ps, where, d, "%s, got \"%s\"", why, value);
            return;
        }
        free(*(char **)field);
        *(char **)field = hsts;
        return;
    }
    case T_RATE: {
        ap_rate_t r;
        const char *why;
        if (ap_rate_parse(value, &r, &why) < 0) {
            add_error(ps, where, d, "%s, got \"%s\"", why, value);
            return;
        }
        *(ap_rate_t *)field = r;
        return;
    }
    case T_CIDRS: {
        ap_cidr_list_t l;
        const char *why;
        ap_str_t bad;
        if (ap_cidr_list_parse(value, &l, &why, &bad) < 0) {
            add_error(ps, where, d, "%s, got \"%.*s\"", why, (int)bad.len, bad.p);
            return;
        }
        ap_cidr_list_free((ap_cidr_list_t *)field);
        *(ap_cidr_list_t *)field = l;
        return;
    }
    case T_LIST: {
        ap_strlist_t *l = field;
        strlist_free(l);
        for (const char *p = value;;) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            if (*p == '\0')
                break;
            const char *start = p;
            while (*p && *p != ' ' && *p != '\t' && *p != ',')
                p++;
            l->v = ap_xrealloc(l->v, (l->n + 1) * sizeof(char *));
            l->v[l->n++] = ap_xstrndup(start, (size_t)(p - start));
        }
        return;
    }
    case T_FWDHDR:
        if (strcasecmp(value, "x-forwarded-for") == 0)
            *(int *)field = AP_FWD_XFF;
        else if (strcasecmp(value, "forwarded") == 0)
            *(int *)field = AP_FWD_FORWARDED;
        else
            add_error(ps, where, d, "expected x-forwarded-for or forwarded, got \"%s\"", value);
        return;
    case T_LOGLEVEL: {
        int level = ap_log_level_parse(value);
        if (level < 0) {
            add_error(ps, where, d,
                      "expected one of debug, info, notice, warn, error, crit, alert, got \"%s\"",
                      value);
            return;
        }
        *(int *)field = level;
        return;
    }
    }
}

static const directive_t *find_directive(const char *section, const char *name)
{
    for (size_t i = 0; i < NDIRECTIVES; i++)
        if (strcmp(directives[i].section, section) == 0 && strcmp(directives[i].name, name) == 0)
            return &directives[i];
    return NULL;
}

static int known_section(const char *section)
{
    for (size_t i = 0; i < NDIRECTIVES; i++)
        if (strcmp(directives[i].section, section) == 0)
            return 1;
    return 0;
}

/* inih's line reader, fgets-like: counting lines is how we know where each
 * key was written (Debian's libinih is built without INI_HANDLER_LINENO). */
static char *read_line(char *str, int num, void *stream)
{
    parse_t *ps = stream;
    if (ps->p >= ps->end || num < 2)
        return NULL;
    const char *nl = memchr(ps->p, '\n', (size_t)(ps->end - ps->p));
    const char *stop = nl ? nl + 1 : ps->end;
    size_t len = (size_t)(stop - ps->p);
    ps->line++;
    ps->long_line = 0;
    if (len > (size_t)num - 1) {
        /* inih would read the rest as a new line: report it and hand inih a
         * blank line instead. */
        ps->long_line = 1;
        add_error(ps, NULL, NULL, "line too long (at most %d bytes)", num - 2);
        str[0] = '\n';
        str[1] = '\0';
    } else {
        memcpy(str, ps->p, len);
        str[len] = '\0';
        /* A NUL inside the line would silently cut it short. */
        if (memchr(str, '\0', len) != NULL)
            add_error(ps, NULL, NULL, "NUL byte in line");
    }
    ps->p = stop;
    return str;
}

static int handle(void *user, const char *section, const char *name, const char *value)
{
    parse_t *ps = user;
    const directive_t *d = find_directive(section, name);
    if (d == NULL) {
        if (!known_section(section))
            add_error(ps, NULL, NULL, "unknown section [%s] (key \"%s\")", section, name);
        else
            add_error(ps, NULL, NULL, "%s.%s: unknown key", section, name);
        return 1;
    }
    size_t idx = (size_t)(d - directives);
    if (d->type == T_ROOT || d->type == T_CACHECTL) {
        /* Repeatable, and empty by default. */
    } else if (d->type == T_LISTEN) {
        /* The first listen line replaces the built-in default. */
        if (!ps->seen[idx])
            drop_public_listen(ps->conf);
    } else if (d->type == T_CERT) {
        /* Repeatable: each line adds a certificate. */
    } else if (ps->seen[idx]) {
        add_error(ps, NULL, d, "duplicate key (it may appear once)");
        return 1;
    }
    ps->seen[idx] = 1;
    ps->lines[idx] = ps->line;
    set_value(ps, d, value, NULL);
    return 1;
}

/* APIARY_SERVER_WORKERS=4 overrides [server] workers; for listen, a
 * comma-separated list replaces every line. Variables that name no known
 * section are left alone: they may belong to someone else. */
static void apply_env(parse_t *ps, char *const *envp)
{
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, "APIARY_", 7) != 0)
            continue;
        const char *eq = strchr(e, '=');
        if (eq == NULL)
            continue;
        char var[128];
        size_t vlen = (size_t)(eq - e);
        if (vlen >= sizeof(var))
            continue;
        memcpy(var, e, vlen);
        var[vlen] = '\0';
        const char *value = eq + 1;
        char where[160];
        snprintf(where, sizeof(where), "env:%s", var);

        const directive_t *d = NULL;
        int section_known = 0;
        for (size_t i = 0; i < NDIRECTIVES; i++) {
            char want[128];
            size_t n = (size_t)snprintf(want, sizeof(want), "APIARY_%s_", directives[i].section);
            for (size_t k = 0; k < n; k++)
                want[k] = (char)toupper((unsigned char)want[k]);
            if (strncmp(var, want, n) != 0)
                continue;
            section_known = 1;
            const char *key = var + n;
            const char *name = directives[i].name;
            size_t k = 0;
            while (key[k] && name[k] && toupper((unsigned char)name[k]) == key[k])
                k++;
            if (key[k] == '\0' && name[k] == '\0') {
                d = &directives[i];
                break;
            }
        }
        if (d == NULL) {
            if (section_known)
                add_error(ps, where, NULL, "unknown configuration variable");
            continue;
        }
        if (d->type == T_LISTEN || d->type == T_CERT) {
            if (d->type == T_LISTEN)
                drop_public_listen(ps->conf);
            else
                free_certs(ps->conf);
            char *copy = ap_xstrdup(value);
            char *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                set_value(ps, d, tok, where);
            free(copy);
            ps->seen[d - directives] = 1;
        } else if (d->type == T_ROOT || d->type == T_CACHECTL) {
            /* The list replaces every line of the file: roots are
             * separated by commas, cache rules (whose values hold commas)
             * by semicolons. */
            const char *sep = d->type == T_ROOT ? "," : ";";
            if (d->type == T_ROOT)
                free_static(ps->conf);
            else
                free_cache_rules(ps->conf);
            char *copy = ap_xstrdup(value);
            char *save = NULL;
            for (char *tok = strtok_r(copy, sep, &save); tok; tok = strtok_r(NULL, sep, &save)) {
                while (*tok == ' ')
                    tok++;
                if (*tok)
                    set_value(ps, d, tok, where);
            }
            free(copy);
        } else {
            set_value(ps, d, value, where);
        }
        ps->lines[d - directives] = -1;
    }
}

/* Reports a problem found after parsing at the place the key was set: its
 * line, its environment variable, or the file when it is the default. */
static void add_late_error(parse_t *ps, const char *section, const char *name, const char *why)
{
    const directive_t *d = find_directive(section, name);
    int line = ps->lines[d - directives];
    char where[600];
    if (line > 0) {
        ps->line = line;
        add_error(ps, NULL, d, "%s", why);
        return;
    }
    if (line < 0) {
        char var[128];
        size_t n = (size_t)snprintf(var, sizeof(var), "APIARY_%s_%s", section, name);
        for (size_t k = 0; k < n && k < sizeof(var); k++)
            var[k] = (char)toupper((unsigned char)var[k]);
        snprintf(where, sizeof(where), "env:%s", var);
    } else {
        snprintf(where, sizeof(where), "%s", ps->name);
    }
    add_error(ps, where, d, "%s", why);
}

/* A name for SQL that the configuration may hold: no quotes, backslashes
 * or control characters, 1 to 63 bytes. */
static int plain_ident(const char *p, size_t n)
{
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '"' || p[i] == '\\' || (unsigned char)p[i] < 0x20)
            return 0;
    return 1;
}

/* The [api] keys of authentication: the role claim's path, pre_request
 * (its SQL, qualified with the first schema when it names none), and the
 * key file, read now so that -t and a reload catch a bad one. */
static void validate_auth(parse_t *ps)
{
    ap_config_t *c = ps->conf;
    const char *why;
    c->api_jwt_role_path = ap_jwt_path_parse(c->api_jwt_role_claim, &why);
    if (c->api_jwt_role_path == NULL)
        add_late_error(ps, "api", "jwt_role_claim", why);

    if (c->api_pre_request) {
        const char *fn = c->api_pre_request, *dot = strchr(fn, '.');
        const char *schema = c->api_schemas;
        size_t slen = strcspn(schema, ",");
        if (dot) {
            schema = fn;
            slen = (size_t)(dot - fn);
            fn = dot + 1;
        }
        while (slen && (*schema == ' ' || *schema == '\t')) {
            schema++;
            slen--;
        }
        while (slen && (schema[slen - 1] == ' ' || schema[slen - 1] == '\t'))
            slen--;
        if (!plain_ident(schema, slen) || !plain_ident(fn, strlen(fn)) || strchr(fn, '.')) {
            add_late_error(ps, "api", "pre_request",
                           "expected a function name, or schema.function (names without quotes, "
                           "backslashes or control characters, 63 bytes at most)");
        } else {
            ap_buf_t sql;
            ap_buf_init(&sql);
            ap_buf_printf(&sql, "select \"%.*s\".\"%s\"()", (int)slen, schema, fn);
            c->api_pre_request_sql = sql.data;
        }
    }

    if (c->api_jwt_secret_file) {
        /* A relative path is taken from the configuration file's directory,
         * not from wherever apiary was started. */
        ap_buf_t path, err;
        ap_buf_init(&path);
        ap_buf_init(&err);
        const char *slash = strrchr(ps->name, '/');
        if (c->api_jwt_secret_file[0] != '/' && slash)
            ap_buf_printf(&path, "%.*s/", (int)(slash - ps->name), ps->name);
        ap_buf_append_str(&path, c->api_jwt_secret_file);
        c->api_jwt_keys = ap_jwt_keyset_load(path.data, &err);
        if (c->api_jwt_keys == NULL)
            add_late_error(ps, "api", "jwt_secret_file", err.data ? err.data : "invalid");
        ap_buf_cleanup(&path);
        ap_buf_cleanup(&err);
    }
}

/* [security] and [server] user/group: checks that need several keys or
 * the system (user and group names). */
static void validate_security(parse_t *ps)
{
    ap_config_t *c = ps->conf;
    char why[512];
    c->cors_any = 0;
    for (size_t i = 0; i < c->cors_origins.n; i++) {
        const char *o = c->cors_origins.v[i];
        if (strcmp(o, "*") == 0) {
            c->cors_any = 1;
            continue;
        }
        const char *bad = ap_cors_origin_check(o);
        if (bad) {
            snprintf(why, sizeof(why), "\"%s\": %s", o, bad);
            add_late_error(ps, "security", "cors_origins", why);
        }
    }
    if (c->cors_any && c->cors_origins.n > 1)
        add_late_error(ps, "security", "cors_origins",
                       "\"*\" allows every origin: list origins or give \"*\" alone");
    if (c->cors_any && c->cors_credentials)
        add_late_error(ps, "security",
                       ps->lines[find_directive("security", "cors_credentials") - directives] > 0
                           ? "cors_credentials"
                           : "cors_origins",
                       "credentials cannot be allowed for every origin (\"*\"): list the "
                       "origins in security.cors_origins");
    for (size_t i = 0; i < c->rate_limit_rpc_paths.n; i++) {
        if (c->rate_limit_rpc_paths.v[i][0] != '/') {
            snprintf(why, sizeof(why),
                     "\"%s\": a pattern is a path below the API prefix, such as /rpc/login",
                     c->rate_limit_rpc_paths.v[i]);
            add_late_error(ps, "security", "rate_limit_rpc_paths", why);
        }
    }
    c->run_as = 0;
    if (c->group && !c->user)
        add_late_error(ps, "server", "group", "needs server.user (the user to run workers as)");
    if (c->user) {
        const char *key = "user";
        if (ap_privdrop_resolve(c->user, c->group, &c->run_uid, &c->run_gid, why, sizeof(why),
                                &key) < 0)
            add_late_error(ps, "server", key, why);
        else
            c->run_as = 1;
    }
}

static void validate(parse_t *ps)
{
    ap_config_t *c = ps->conf;
    char why[256];
    /* Schema names travel as identifiers: keep them to what PostgreSQL
     * takes unquoted or quoted, without separators of their own. */
    for (const char *p = c->api_schemas; *p; p++) {
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
            add_late_error(ps, "api", "schemas", "schema names cannot hold quotes, backslashes or control characters");
            break;
        }
    }
    /* [log] access_format and access_query: a word from a short list. */
    if (strcmp(c->access_format, "json") == 0 || strcmp(c->access_format, "combined") == 0)
        c->access_combined = c->access_format[0] == 'c';
    else {
        snprintf(why, sizeof(why), "expected json or combined, got \"%.64s\"", c->access_format);
        add_late_error(ps, "log", "access_format", why);
    }
    if (strcmp(c->access_query, "on") == 0 || strcmp(c->access_query, "off") == 0)
        c->access_log_query = c->access_query[1] == 'n';
    else {
        snprintf(why, sizeof(why), "expected on or off, got \"%.64s\"", c->access_query);
        add_late_error(ps, "log", "access_query", why);
    }
    /* [static]: a root on the API's own prefix would hide one of them. */
    for (size_t i = 0; i < c->nstatic_roots; i++) {
        const ap_static_root_t *r = &c->static_roots[i];
        if (c->db_uri == NULL || strcmp(r->prefix, c->api_prefix) != 0)
            continue;
        snprintf(why, sizeof(why), "the prefix %s is also api.prefix: give one of them another",
                 r->prefix);
        if (r->line > 0) {
            ps->line = r->line;
            add_error(ps, NULL, find_directive("static", "root"), "%s", why);
        } else {
            add_late_error(ps, "static", "root", why);
        }
    }
    if (c->static_index && (strchr(c->static_index, '/') || c->static_index[0] == '.'))
        add_late_error(ps, "static", "index", "a file name without \"/\" and not starting with \".\"");
    if (c->mime_types && ps->lines[find_directive("static", "mime_types") - directives] != 0 &&
        access(c->mime_types, R_OK) < 0) {
        snprintf(why, sizeof(why), "%.80s: %s", c->mime_types, strerror(errno));
        add_late_error(ps, "static", "mime_types", why);
    }
    {
        const char *t = c->default_type, *slash = strchr(t, '/');
        int bad = slash == NULL || slash == t || slash[1] == '\0';
        for (const char *p = t; *p; p++)
            if ((unsigned char)*p <= 0x20 && *p != ' ')
                bad = 1;
        if (bad)
            add_late_error(ps, "static", "default_type", "expected a media type such as application/octet-stream");
    }

    if (c->api_anon_role && strlen(c->api_anon_role) > 63)
        add_late_error(ps, "api", "anon_role", "longer than PostgreSQL's 63-byte names");
    validate_auth(ps);

    validate_security(ps);

    /* With no listener left and no error said yet (a bad listen line has
     * said its own), say why. */
    size_t public = 0;
    for (size_t i = 0; i < c->nlisten; i++)
        public += !c->listen[i].admin;
    if (public == 0 && ps->nerrors == 0)
        add_late_error(ps, "server", "listen", "at least one address is needed");
    /* TLS listeners need a certificate; redirect listeners send clients
     * to the first TLS listener's port (443 without one: TLS terminated
     * in front, on the standard port). */
    c->https_port = 443;
    int have_tls = 0;
    for (size_t i = 0; i < c->nlisten; i++) {
        const ap_listen_conf_t *l = &c->listen[i];
        if (!l->tls)
            continue;
        if (!have_tls && l->addr.ss_family == AF_INET)
            c->https_port = ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
        else if (!have_tls && l->addr.ss_family == AF_INET6)
            c->https_port = ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
        have_tls |= l->addr.ss_family != AF_UNIX;
        /* (A certificate line that was wrong has said so already.) */
        if (c->ntls_certs == 0 && !ps->seen[find_directive("tls", "certificate") - directives]) {
            snprintf(why, sizeof(why), "\"%s\" is a tls listener: [tls] certificate is needed",
                     l->text);
            add_late_error(ps, "server", "listen", why);
            break;
        }
    }
    if (c->ntls_certs) {
        char detail[256];
        if (ap_tls_check_ciphers(c->tls_ciphers, 0, detail, sizeof(detail)) < 0)
            add_late_error(ps, "tls", "ciphers", detail);
        if (ap_tls_check_ciphers(c->tls_ciphersuites, 1, detail, sizeof(detail)) < 0)
            add_late_error(ps, "tls", "ciphersuites", detail);
    }
    if (c->max_uri_size > c->max_header_size) {
        snprintf(why, sizeof(why), "must not exceed server.max_header_size (%llu)",
                 (unsigned long long)c->max_header_size);
        add_late_error(ps, "server", ps->lines[find_directive("server", "max_uri_size") -
                                                directives] != 0
                                         ? "max_uri_size"
                                         : "max_header_size",
                       why);
    }
}

ap_config_t *ap_config_parse(const char *name, const char *text, size_t len, char *const *envp,
                             ap_buf_t *errors)
{
    parse_t ps;
    memset(&ps, 0, sizeof(ps));
    ps.name = name;
    ps.errors = errors;
    ps.conf = ap_xcalloc(1, sizeof(ap_config_t));
    ps.conf->path = ap_xstrdup(name);

    /* Defaults go through the same parser as the file's values. */
    for (size_t i = 0; i < NDIRECTIVES; i++)
        set_value(&ps, &directives[i], directives[i].def, "default");

    ps.p = text;
    ps.end = text + len;
    int rc = ini_parse_stream(read_line, &ps, handle, &ps);
    if (rc > 0) {
        ps.line = rc;
        add_error(&ps, NULL, NULL, "syntax error (expected [section], key = value or a comment)");
    } else if (rc < 0) {
        add_error(&ps, name, NULL, "cannot parse (out of memory)");
    }
    apply_env(&ps, envp);
    validate(&ps);

    /* Certificates are read and checked only when the rest is valid: the
     * protocols and ciphers go into every context. */
    if (ps.nerrors == 0 && ps.conf->ntls_certs) {
        ap_buf_t warnings;
        ap_buf_init(&warnings);
        int n = 0;
        ps.conf->tls = ap_tls_new(ps.conf, errors, &warnings, &n);
        ps.nerrors += n;
        if (warnings.len && ps.nerrors)
            ap_buf_append(errors, warnings.data, warnings.len);
        ps.conf->warnings = warnings.len ? ap_xstrdup(warnings.data) : NULL;
        ap_buf_cleanup(&warnings);
    }

    if (ps.nerrors) {
        ap_config_free(ps.conf);
        return NULL;
    }
    return ps.conf;
}

ap_config_t *ap_config_load(const char *path, char *const *envp, ap_buf_t *errors)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ap_buf_printf(errors, "%s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > AP_CONFIG_MAX_BYTES) {
        ap_buf_printf(errors, "%s: not a regular file of at most %d bytes\n", path,
                      AP_CONFIG_MAX_BYTES);
        close(fd);
        return NULL;
    }
    ap_buf_t text;
    ap_buf_init(&text);
    ap_buf_reserve(&text, (size_t)st.st_size);
    for (;;) {
        ap_buf_reserve(&text, 4096);
        ssize_t n = read(fd, text.data + text.len, text.cap - text.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ap_buf_printf(errors, "%s: cannot read: %s\n", path, strerror(errno));
            close(fd);
            ap_buf_cleanup(&text);
            return NULL;
        }
        if (n == 0)
            break;
        text.len += (size_t)n;
        if (text.len > AP_CONFIG_MAX_BYTES) {
            ap_buf_printf(errors, "%s: larger than %d bytes\n", path, AP_CONFIG_MAX_BYTES);
            close(fd);
            ap_buf_cleanup(&text);
            return NULL;
        }
    }
    close(fd);
    ap_config_t *c = ap_config_parse(path, text.data, text.len, envp, errors);
    ap_buf_cleanup(&text);
    return c;
}

void ap_config_free(ap_config_t *c)
{
    if (c == NULL)
        return;
    free_listen(c);
    free_static(c);
    free_cache_rules(c);
    free_certs(c);
    ap_tls_free(c->tls);
    free(c->warnings);
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        const directive_t *d = &directives[i];
        void *field = (char *)c + d->offset;
        if (d->type == T_STRING || d->type == T_OFFSTR || d->type == T_OPTSTR ||
            d->type == T_PREFIX || d->type == T_HSTS)
            free(*(char **)field);
        else if (d->type == T_CIDRS)
            ap_cidr_list_free(field);
        else if (d->type == T_LIST)
            strlist_free(field);
    }
    ap_jwt_keyset_free(c->api_jwt_keys);
    ap_jwt_path_free(c->api_jwt_role_path);
    free(c->api_pre_request_sql);
    free(c->path);
    free(c);
}

/* The first "key = value" of [section] in the text, copied into out. */
static int peek(const char *text, const char *section, const char *key, char *out, size_t size)
{
    char cur[64] = "";
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[1024];
        if (len < sizeof(line)) {
            memcpy(line, p, len);
            line[len] = '\0';
            char *l = line;
            while (*l == ' ' || *l == '\t')
                l++;
            char *end;
            if (*l == '[' && (end = strchr(l, ']')) != NULL) {
                size_t n = (size_t)(end - l - 1);
                if (n < sizeof(cur)) {
                    memcpy(cur, l + 1, n);
                    cur[n] = '\0';
                }
            } else if (strcmp(cur, section) == 0 && strncmp(l, key, strlen(key)) == 0) {
                char *v = l + strlen(key);
                while (*v == ' ' || *v == '\t')
                    v++;
                if (*v == '=') {
                    v++;
                    while (*v == ' ' || *v == '\t')
                        v++;
                    size_t vl = strlen(v);
                    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t' || v[vl - 1] == '\r'))
                        vl--;
                    if (vl && vl < size) {
                        memcpy(out, v, vl);
                        out[vl] = '\0';
                        return 0;
                    }
                }
            }
        }
        if (!eol)
            break;
        p = eol + 1;
    }
    return -1;
}

ap_config_t *ap_config_for_control(const char *path, char *const *envp)
{
    ap_buf_t errors, text;
    ap_buf_init(&errors);
    ap_buf_init(&text);
    /* Defaults plus whatever of the environment is valid. */
    ap_config_t *c = ap_config_parse(path, "", 0, envp, &errors);
    if (c == NULL)
        c = ap_config_parse(path, "", 0, NULL, &errors);
    FILE *f = fopen(path, "re");
    if (f) {
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && text.len < AP_CONFIG_MAX_BYTES)
            ap_buf_append(&text, chunk, n);
        fclose(f);
    }
    char v[1024];
    if (text.len && peek(text.data, "server", "pidfile", v, sizeof(v)) == 0) {
        free(c->pidfile);
        c->pidfile = ap_xstrdup(v);
    }
    if (text.len && peek(text.data, "server", "control_socket", v, sizeof(v)) == 0) {
        free(c->control_socket);
        c->control_socket = ap_xstrdup(v);
    }
    ap_buf_cleanup(&errors);
    ap_buf_cleanup(&text);
    return c;
}
