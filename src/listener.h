/* SPDX-License-Identifier: BSD-2-Clause */
/* Listening sockets: parse listen lines, bind them once in the master. */
#ifndef AP_LISTENER_H
#define AP_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

#define AP_LISTEN_DEFAULT_BACKLOG 511

/* One `listen =` line. */
typedef struct ap_listen_conf_s {
    char *text; /* the address as written, for logs */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int backlog;
    int freebind; /* IP_FREEBIND: bind an address the host does not hold yet */
    int admin;    /* the admin listener ([admin] listen) */
    int tls;      /* connections speak TLS ([tls] certificates) */
    int redirect; /* plain HTTP answered with a redirect to https */
    /* Connections start with a PROXY protocol v1/v2 header. */
    int proxy_protocol;
} ap_listen_conf_t;

/* Parses "ADDR [backlog=N] [freebind] [tls] [redirect] [proxy_protocol]" where ADDR is
 * 127.0.0.1:8080, [::1]:8080,
 * *:8080, 8080 or unix:/path. Returns 0 and fills out (out->text is heap,
 * freed by ap_listen_conf_cleanup), or -1 with *why set to a static
 * explanation. */
int ap_listen_parse(const char *line, ap_listen_conf_t *out, const char **why);
void ap_listen_conf_cleanup(ap_listen_conf_t *lc);

/* Non-zero when both name the same socket address. */
int ap_listen_same(const ap_listen_conf_t *a, const ap_listen_conf_t *b);

/* A bound, listening socket. */
typedef struct ap_listener_s {
    int fd;
    int family;
    int admin;
    int tls;      /* from the listen line: see ap_listen_conf_t */
    int redirect;
    int proxy_protocol; /* from the listen line: see ap_listen_conf_t */
    char *text;
    char *unix_path; /* set for unix sockets: removed when the master exits */
    struct sockaddr_storage addr;
    socklen_t addrlen;
} ap_listener_t;

/* Binds and listens on every address (SO_REUSEADDR, IPV6_V6ONLY for IPv6,
 * a stale unix socket file replaced). Descriptors are blocking-agnostic:
 * workers poll them and accept with SOCK_NONBLOCK. Returns 0, or -errno
 * after logging which address failed (nothing is left open then). */
int ap_listeners_bind(const ap_listen_conf_t *confs, size_t n, ap_listener_t **out);

/* Like ap_listeners_bind, but takes over sockets that are already bound:
 * those in `have` (nhave, from the running master or inherited through
 * LISTEN_FDS) whose address matches a line are reused, the others in
 * `have` are closed (or left open when keep_unmatched is set, for a reload
 * that fails). have may be NULL. Returns 0 or -errno (nothing in `have` is
 * closed then). */
int ap_listeners_adopt(const ap_listen_conf_t *confs, size_t n, ap_listener_t *have, size_t nhave,
                       ap_listener_t **out);

/* Listeners from systemd's convention: LISTEN_PID must be this process;
 * LISTEN_FDS descriptors from 3 on; LISTEN_FDNAMES ignored but for logs.
 * The variables are removed from the environment. Returns how many were
 * found (0 when none), filling *out. */
size_t ap_listeners_inherited(ap_listener_t **out);

/* Closes n listeners and frees the array; unix socket files are removed
 * when unlink_files is set (the master at exit, not a worker). */
void ap_listeners_close(ap_listener_t *ls, size_t n, int unlink_files);

#endif
