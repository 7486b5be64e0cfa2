/* SPDX-License-Identifier: BSD-2-Clause */
/* The security layer's hooks into the master, the connection and the
 * request cycle: security headers on every response, CORS, the real
 * client address (PROXY protocol, trusted proxies), per-client rate and
 * connection limits, the global connection limit, and the privilege drop
 * of workers. Each hook is one call from the shared code. */
#ifndef AP_SECURITY_H
#define AP_SECURITY_H

#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "buf.h"
#include "http.h"

struct ap_config_s;
struct ap_conn_s;

/* --- In the master --- */

/* At start, before the first fork: maps the shared rate-limit table,
 * checks the privilege settings, gives the error log to the workers'
 * user. 0, or -1 after logging why (the master must not start). */
int ap_security_master_start(const struct ap_config_s *conf);

/* After a reload's configuration is accepted (old is the running one). */
void ap_security_master_reload(const struct ap_config_s *old, const struct ap_config_s *conf);

/* After USR1 reopened the logs in the master, before the workers reopen
 * theirs: a new file goes to the workers' user. */
void ap_security_master_reopen(const struct ap_config_s *conf);

/* A worker was reaped; clean is set when it exited with status 0 (it had
 * closed its connections). */
void ap_security_worker_exited(pid_t pid, int clean);

/* At exit. */
void ap_security_master_stop(void);

/* --- In a worker --- */

/* Right after fork, before anything else: drops privileges. 0, or -1 when
 * the worker must exit (it would run as root against the configuration). */
int ap_security_worker_start(const struct ap_config_s *conf);

/* --- Connections (conn.c) --- */

/* A connection was accepted on a listener: sets c->client_ip and
 * c->client_addr from the socket and, with proxy_protocol, c->proxy_wait
 * (the client's address comes in a PROXY header first). */
void ap_security_conn_accepted(struct ap_conn_s *c, int fd, int proxy_protocol);

/* Looks for the PROXY header at the start of the unparsed input: 1 when
 * it was read (consumed from c->in; c->client_ip is the client now), 0 when
 * more bytes are needed, -1 when the connection must be closed (a bad or
 * missing header: logged and counted). */
int ap_security_proxy_input(struct ap_conn_s *c);

/* Once the client's address is known: the per-address and global
 * connection limits. 0 to serve, or an HTTP status (503) to answer with
 * *detail before closing. */
int ap_security_conn_admit(struct ap_conn_s *c, const char **detail);

/* The connection is gone (its handles are closed). */
void ap_security_conn_closed(struct ap_conn_s *c);

/* For body reads: how long (ms) the body may take before its next bytes,
 * from server.body_timeout (a stall) and server.min_body_rate (the
 * average rate since the body began). *rate_limited says which applies. */
uint64_t ap_security_body_timeout(const struct ap_conn_s *c, int *rate_limited);

/* --- Requests (router.c, conn.c) --- */

/* Before routing: finds the real client (trusted proxies), shows it to
 * handlers as X-Real-IP, and answers CORS preflights. Returns 1 when req
 * was answered. */
int ap_security_request(ap_request_t *req);

/* After routing, before the handler: the rate limit of req->route (rest
 * is the path below the API prefix, matched against
 * security.rate_limit_rpc_paths). Adds the RateLimit-* headers; returns 1
 * when req was answered with 429. */
int ap_security_admit(ap_request_t *req, ap_str_t rest);

/* Just before a response's head is serialised (every response, errors
 * too): appends the security and CORS headers to req->resp_headers,
 * except those already there (a handler's own value wins). */
void ap_security_response(ap_request_t *req, int status);

/* The client's address as text, for logs: the request's real client once
 * known, else the connection's. */
const char *ap_security_client_addr(const ap_request_t *req);

/* Whether head lines in buf (as ap_http_add_header writes them) include
 * one named name (case-insensitive). */
static inline int ap_security_has_header(const ap_buf_t *buf, const char *name)
{
    size_t n = strlen(name);
    const char *p = buf->data, *end = buf->data + buf->len;
    while (p && p + n < end) {
        if (strncasecmp(p, name, n) == 0 && p[n] == ':')
            return 1;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

#endif
