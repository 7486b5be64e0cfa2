/* SPDX-License-Identifier: BSD-2-Clause */
/* The configuration: a directive table, parsing with inih, validation, and
 * an immutable snapshot. A reload builds a new snapshot; nothing mutates a
 * live one. */
#ifndef AP_CONFIG_H
#define AP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>

#include "buf.h"
#include "listener.h"
#include "netaddr.h"
#include "ratelimit.h"

#define AP_MAX_WORKERS 512

/* [static] root: a URL prefix served from a directory (nginx's alias). */
typedef struct ap_static_root_s {
    char *prefix;   /* "/" or "/x/y", no trailing slash */
    char *dir;      /* absolute, no trailing slash but for "/" */
    char *fallback; /* SPA fallback, relative to dir without a leading "/"; NULL: none */
    int line;       /* where it was set (0: environment), for messages */
} ap_static_root_t;

/* [static] cache_control: the first rule whose pattern matches a served
 * file gives its Cache-Control value. */
typedef struct ap_cache_rule_s {
    char *pattern; /* fnmatch(3) glob: on the URL path with a "/", else on the file name */
    char *value;
} ap_cache_rule_t;

enum { AP_SYMLINKS_OFF, AP_SYMLINKS_INSIDE, AP_SYMLINKS_ON };
/* [tls] protocols, as bits. */
#define AP_TLS_PROTO_12 1u
#define AP_TLS_PROTO_13 2u

/* One [tls] certificate line. */
typedef struct ap_tls_cert_conf_s {
    char *chain; /* PEM: the certificate, then its intermediates */
    char *key;   /* PEM: its private key (the chain file when not given) */
    char *where; /* "file:line" or "env:NAME", for messages */
} ap_tls_cert_conf_t;

struct ap_tls_s;
/* A list of words from one key ("a, b c"). */
typedef struct ap_strlist_s {
    char **v;
    size_t n;
} ap_strlist_t;

typedef struct ap_config_s {
    char *path; /* the file it was read from */

    /* [server] */
    ap_listen_conf_t *listen;
    size_t nlisten;
    uint32_t workers;
    char *pidfile;
    uint64_t min_uptime_ms;
    uint64_t shutdown_timeout_ms;
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t send_timeout_ms;
    uint64_t keepalive_timeout_ms;
    uint64_t keepalive_requests;
    uint64_t max_uri_size;
    uint64_t max_header_size;
    uint64_t max_headers;
    uint64_t max_body_size;
    uint64_t max_connections;
    char *server_header; /* NULL: no Server header */
    uint64_t worker_ready_timeout_ms;
    uint64_t worker_timeout_ms;    /* 0: off */
    uint64_t max_requests;         /* 0: off */
    uint64_t max_requests_jitter;
    uint64_t max_worker_memory;    /* bytes; 0: off */
    uint64_t drain_delay_ms;
    char *control_socket;
    /* [server] user/group and min_body_rate (privdrop.c, conn.c) */
    char *user;             /* NULL: workers keep the master's identity */
    char *group;            /* NULL: the user's primary group */
    uint64_t min_body_rate; /* bytes per second; 0: off */

    /* [database]: no uri, no database (the API is off, /ready needs nothing) */
    char *db_uri;
    char *db_listen_uri;
    char *db_migrate_uri;     /* apiary migrate only */
    char *db_migrations_dir;  /* apiary migrate only */
    uint64_t db_pool_size;
    uint64_t db_queue_size;
    uint64_t db_pool_timeout_ms;
    uint64_t db_connect_timeout_ms;
    uint64_t db_statement_timeout_ms;
    uint64_t db_request_timeout_ms;
    uint64_t db_unhealthy_grace_ms;

    /* [api] */
    char *api_schemas; /* comma-separated; the first is the default */
    char *api_anon_role;
    char *api_prefix;  /* "/" or "/api": no trailing slash but for "/" */
    uint64_t api_max_rows; /* 0: no limit */
    char *api_jwt_secret_file;  /* NULL: no JWT is accepted */
    char *api_jwt_aud;          /* NULL: any audience */
    char *api_jwt_role_claim;
    uint64_t api_jwt_leeway_ms;
    char *api_pre_request;      /* "fn" or "schema.fn"; NULL: none */
    /* Derived from the above when the file is read, so that every worker
     * of a generation verifies with the same keys, and a reload (HUP)
     * picks up a rotated key file. */
    struct ap_jwt_keyset_s *api_jwt_keys;     /* NULL without jwt_secret_file */
    struct ap_jwt_path_s *api_jwt_role_path;
    char *api_pre_request_sql;  /* select "schema"."fn"(), or NULL */

    /* [static] */
    ap_static_root_t *static_roots;
    size_t nstatic_roots;
    ap_cache_rule_t *cache_rules;
    size_t ncache_rules;
    char *static_index;         /* NULL: no index files */
    int static_symlinks;        /* AP_SYMLINKS_* */
    int static_precompressed;   /* look for .br and .gz siblings */
    char *mime_types;           /* NULL: the built-in table only */
    char *default_type;
    uint64_t open_file_cache;   /* entries per worker; 0: off */
    uint64_t open_file_cache_valid_ms;

    /* [gzip]: on-the-fly compression of API and static responses */
    int gzip;
    uint64_t gzip_min_length;
    uint64_t gzip_level;
    char *gzip_types;           /* space-separated media type globs */

    /* [log] */
    int log_level;
    char *error_log; /* "stderr" or a path */
    /* [log] access log and slow-request log (access_log.c) */
    char *access_log;      /* NULL: off; "stderr"; or a path */
    char *access_format;   /* "json" or "combined" (validated) */
    char *access_query;    /* "on" or "off" (validated) */
    uint64_t slow_ms;      /* 0: off */
    int access_combined;   /* from access_format */
    int access_log_query;  /* from access_query */

    /* [tls] */
    ap_tls_cert_conf_t *tls_certs; /* the first is the default (no SNI match) */
    size_t ntls_certs;
    uint32_t tls_protocols; /* AP_TLS_PROTO_* */
    char *tls_ciphers;      /* TLS 1.2 cipher list */
    char *tls_ciphersuites; /* TLS 1.3 suites */
    int tls_session_tickets;
    uint64_t tls_ticket_rotate_ms;
    char *tls_hsts; /* the Strict-Transport-Security value; NULL: off */

    /* Derived while loading. */
    unsigned https_port;  /* where redirect listeners send clients */
    struct ap_tls_s *tls; /* the loaded certificates; NULL without any */
    char *warnings;       /* "file:line: key: warning: ..." lines, or NULL */

    /* [security]: security headers, CORS, rate and connection limits,
     * trusted proxies (security.c, cors.c, ratelimit.c, netaddr.c). Each
     * header value is NULL when "off". */
    char *sec_content_type_options;
    char *sec_frame_options;
    char *sec_referrer_policy;
    char *sec_csp;
    char *sec_csp_static;
    char *sec_permissions_policy;
    char *sec_coop;
    ap_strlist_t cors_origins; /* empty: CORS off */
    int cors_credentials;
    char *cors_allow_methods;
    char *cors_allow_headers;
    char *cors_expose_headers;
    uint64_t cors_max_age_ms;
    ap_rate_t rate_limit[AP_RL_NKINDS]; /* AP_RL_API, AP_RL_RPC, AP_RL_STATIC */
    ap_strlist_t rate_limit_rpc_paths;  /* fnmatch(3) patterns below the API prefix */
    ap_cidr_list_t rate_limit_allow;
    uint64_t rate_limit_table_size;
    uint64_t max_connections_per_address; /* 0: off */
    uint64_t max_connections_total;       /* 0: off */
    ap_cidr_list_t trusted_proxies;
    int forwarded_header; /* ap_fwd_header_t */
    /* Derived while loading. */
    int cors_any; /* cors_origins is "*" */
    int run_as;   /* user is set: workers switch to run_uid/run_gid */
    uid_t run_uid;
    gid_t run_gid;
} ap_config_t;

/* Reads and validates path, then applies APIARY_<SECTION>_<KEY> variables
 * from envp (may be NULL). Returns the snapshot, or NULL after appending one
 * line per problem to errors: "file:line: section.key: why". Loading
 * includes reading and checking the [tls] certificates and keys; what
 * deserves a warning only (a certificate about to expire) is kept in
 * conf->warnings, for the caller to show. */
ap_config_t *ap_config_load(const char *path, char *const *envp, ap_buf_t *errors);

/* Same for text held in memory; name stands for the file in messages. */
ap_config_t *ap_config_parse(const char *name, const char *text, size_t len, char *const *envp,
                             ap_buf_t *errors);

void ap_config_free(ap_config_t *conf);

/* The configuration a command needs to find a running master when the
 * file is (now) invalid: the built-in defaults and the environment, with
 * server.pidfile and server.control_socket taken from the file if it
 * names them. Never NULL. */
ap_config_t *ap_config_for_control(const char *path, char *const *envp);

/* Parses "10s", "250ms", "2m", "1h" or a bare number of seconds into
 * milliseconds; 0 or -1. */
int ap_config_parse_duration(const char *s, uint64_t *ms);

/* Parses "512", "16k", "1m", "1g" (1024-based) into bytes; 0 or -1. */
int ap_config_parse_size(const char *s, uint64_t *bytes);

#endif
