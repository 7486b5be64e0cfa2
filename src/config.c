/* SPDX-License-Identifier: BSD-2-Clause */
/* The configuration: directive table, inih parsing, validation. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "cors.h"
#include "log.h"
#include "privdrop.h"

#ifndef AP_RUNSTATEDIR
#define AP_RUNSTATEDIR "/run"
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
    T_BOOL,     /* on/off */
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
    {"log", "level", T_LOGLEVEL, OFF(log_level), "info", 0, 0},
    {"log", "error_log", T_STRING, OFF(error_log), "stderr", 0, 0},
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
    if (d->type == T_LISTEN) {
        /* The first listen line replaces the built-in default. */
        if (!ps->seen[idx])
            drop_public_listen(ps->conf);
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
        if (d->type == T_LISTEN) {
            drop_public_listen(ps->conf);
            char *copy = ap_xstrdup(value);
            char *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                set_value(ps, d, tok, where);
            free(copy);
            ps->seen[d - directives] = 1;
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
    char why[128];
    /* Schema names travel as identifiers: keep them to what PostgreSQL
     * takes unquoted or quoted, without separators of their own. */
    for (const char *p = c->api_schemas; *p; p++) {
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
            add_late_error(ps, "api", "schemas", "schema names cannot hold quotes, backslashes or control characters");
            break;
        }
    }
    if (c->api_anon_role && strlen(c->api_anon_role) > 63)
        add_late_error(ps, "api", "anon_role", "longer than PostgreSQL's 63-byte names");

    validate_security(ps);

    /* With no listener left and no error said yet (a bad listen line has
     * said its own), say why. */
    size_t public = 0;
    for (size_t i = 0; i < c->nlisten; i++)
        public += !c->listen[i].admin;
    if (public == 0 && ps->nerrors == 0)
        add_late_error(ps, "server", "listen", "at least one address is needed");
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
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        const directive_t *d = &directives[i];
        void *field = (char *)c + d->offset;
        if (d->type == T_STRING || d->type == T_OFFSTR || d->type == T_OPTSTR ||
            d->type == T_PREFIX)
            free(*(char **)field);
        else if (d->type == T_CIDRS)
            ap_cidr_list_free(field);
        else if (d->type == T_LIST)
            strlist_free(field);
    }
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
