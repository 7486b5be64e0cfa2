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

    /* [log] */
    int log_level;
    char *error_log; /* "stderr" or a path */

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
 * line per problem to errors: "file:line: section.key: why". */
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
