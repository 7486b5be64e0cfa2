/* SPDX-License-Identifier: BSD-2-Clause */
/* Listening sockets. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"

static int parse_port(const char *s, size_t len, unsigned short *port)
{
    if (len == 0 || len > 5)
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = (unsigned short)v;
    return 0;
}

static int parse_addr(const char *a, size_t len, ap_listen_conf_t *out, const char **why)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
    char host[INET6_ADDRSTRLEN + 1];
    unsigned short port;

    memset(&out->addr, 0, sizeof(out->addr));
    if (len > 5 && memcmp(a, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&out->addr;
        size_t plen = len - 5;
        if (plen == 0 || a[5] != '/') {
            *why = "a unix socket path must be absolute (unix:/path)";
            return -1;
        }
        if (plen >= sizeof(sun->sun_path)) {
            *why = "unix socket path too long";
            return -1;
        }
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, a + 5, plen);
        out->addrlen = (socklen_t)sizeof(*sun);
        return 0;
    }

    const char *colon = NULL;
    const char *hp = a;
    size_t hlen = 0;
    if (a[0] == '[') {
        const char *end = memchr(a, ']', len);
        if (end == NULL || end + 1 >= a + len || end[1] != ':') {
            *why = "expected [IPv6]:port";
            return -1;
        }
        hp = a + 1;
        hlen = (size_t)(end - hp);
        colon = end + 1;
        if (hlen == 0 || hlen > INET6_ADDRSTRLEN) {
            *why = "invalid IPv6 address";
            return -1;
        }
        memcpy(host, hp, hlen);
        host[hlen] = '\0';
        if (parse_port(colon + 1, (size_t)(a + len - colon - 1), &port) < 0) {
            *why = "invalid port (1..65535)";
            return -1;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            *why = "invalid IPv6 address";
            return -1;
        }
        out->addrlen = (socklen_t)sizeof(*sin6);
        return 0;
    }

    for (size_t i = 0; i < len; i++)
        if (a[i] == ':')
            colon = a + i;
    if (colon == NULL) {
        /* A bare port listens on every IPv4 address, as nginx's does. */
        strcpy(host, "0.0.0.0");
        if (parse_port(a, len, &port) < 0) {
            *why = "invalid port (1..65535)";
            return -1;
        }
    } else {
        hlen = (size_t)(colon - a);
        if (memchr(a, ':', hlen) != NULL) {
            *why = "an IPv6 address must be in brackets: [::1]:8080";
            return -1;
        }
        if (hlen == 0 || hlen > INET_ADDRSTRLEN) {
            *why = "invalid IPv4 address";
            return -1;
        }
        if (hlen == 1 && a[0] == '*') {
            strcpy(host, "0.0.0.0");
        } else {
            memcpy(host, a, hlen);
            host[hlen] = '\0';
        }
        if (parse_port(colon + 1, len - hlen - 1, &port) < 0) {
            *why = "invalid port (1..65535)";
            return -1;
        }
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        *why = "invalid IPv4 address (host names are not resolved)";
        return -1;
    }
    out->addrlen = (socklen_t)sizeof(*sin);
    return 0;
}

int ap_listen_parse(const char *line, ap_listen_conf_t *out, const char **why)
{
    const char *p = line;
    memset(out, 0, sizeof(*out));
    out->backlog = AP_LISTEN_DEFAULT_BACKLOG;

    while (*p == ' ' || *p == '\t')
        p++;
    const char *a = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    size_t alen = (size_t)(p - a);
    if (alen == 0) {
        *why = "an address is required";
        return -1;
    }
    if (parse_addr(a, alen, out, why) < 0)
        return -1;

    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        const char *f = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        size_t flen = (size_t)(p - f);
        if (flen == 8 && memcmp(f, "freebind", 8) == 0) {
            if (out->addr.ss_family == AF_UNIX) {
                *why = "freebind applies to IP addresses only";
                return -1;
            }
            out->freebind = 1;
        } else if (flen > 8 && memcmp(f, "backlog=", 8) == 0) {
            long v = 0;
            size_t i;
            for (i = 8; i < flen && f[i] >= '0' && f[i] <= '9' && v <= 65535; i++)
                v = v * 10 + (f[i] - '0');
            if (i != flen || v < 1 || v > 65535) {
                *why = "backlog must be an integer 1..65535";
                return -1;
            }
            out->backlog = (int)v;
        } else if (flen == 3 && memcmp(f, "tls", 3) == 0) {
            out->tls = 1;
        } else if (flen == 8 && memcmp(f, "redirect", 8) == 0) {
            out->redirect = 1;
        } else if (flen == 14 && memcmp(f, "proxy_protocol", 14) == 0) {
            out->proxy_protocol = 1;
        } else {
            *why = "unknown listen flag (known: backlog=N, freebind, tls, redirect, proxy_protocol)";
            return -1;
        }
    }
    if (out->tls && out->redirect) {
        *why = "tls and redirect exclude each other (redirect sends plain HTTP clients to https)";
        return -1;
    }
    if (out->tls && out->proxy_protocol) {
        *why = "proxy_protocol on a tls listener is not supported yet (terminate TLS at the "
               "balancer, or pass TCP through without the PROXY header)";
        return -1;
    }
    out->text = ap_xstrndup(a, alen);
    return 0;
}

void ap_listen_conf_cleanup(ap_listen_conf_t *lc)
{
    free(lc->text);
    lc->text = NULL;
}

int ap_listen_same(const ap_listen_conf_t *a, const ap_listen_conf_t *b)
{
    return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

static int bind_one(const ap_listen_conf_t *lc, ap_listener_t *l)
{
    int family = lc->addr.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        ap_log_errno(AP_LOG_CRIT, err, "socket() for \"%s\" failed", lc->text);
        return -err;
    }
    int on = 1;
    if (family != AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0)
        ap_log_errno(AP_LOG_WARN, errno, "setsockopt(SO_REUSEADDR) on \"%s\" failed", lc->text);
    /* [::]:80 and 0.0.0.0:80 are separate lines in the config; let them be. */
    if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0)
        ap_log_errno(AP_LOG_WARN, errno, "setsockopt(IPV6_V6ONLY) on \"%s\" failed", lc->text);
    /* A BACKUP node of a VRRP pair listens on the VIP before it holds it. */
    if (lc->freebind && setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &on, sizeof(on)) < 0)
        ap_log_errno(AP_LOG_WARN, errno, "setsockopt(IP_FREEBIND) on \"%s\" failed", lc->text);

    l->unix_path = NULL;
    if (family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&lc->addr;
        struct stat st;
        /* A socket file left by a crashed run would make bind fail; remove
         * it, but never another kind of file. */
        if (lstat(sun->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(sun->sun_path);
        l->unix_path = ap_xstrdup(sun->sun_path);
    }
    if (bind(fd, (const struct sockaddr *)&lc->addr, lc->addrlen) < 0) {
        int err = errno;
        ap_log_errno(AP_LOG_CRIT, err, "bind() to \"%s\" failed", lc->text);
        close(fd);
        free(l->unix_path);
        l->unix_path = NULL;
        return -err;
    }
    if (listen(fd, lc->backlog) < 0) {
        int err = errno;
        ap_log_errno(AP_LOG_CRIT, err, "listen() on \"%s\" failed", lc->text);
        close(fd);
        if (l->unix_path)
            unlink(l->unix_path);
        free(l->unix_path);
        l->unix_path = NULL;
        return -err;
    }
    l->fd = fd;
    l->family = family;
    l->text = ap_xstrdup(lc->text);
    l->admin = lc->admin;
    l->tls = lc->tls;
    l->redirect = lc->redirect;
    l->proxy_protocol = lc->proxy_protocol;
    l->addr = lc->addr;
    l->addrlen = lc->addrlen;
    return 0;
}

int ap_listeners_bind(const ap_listen_conf_t *confs, size_t n, ap_listener_t **out)
{
    return ap_listeners_adopt(confs, n, NULL, 0, out);
}

static int same_addr(const ap_listen_conf_t *lc, const ap_listener_t *l)
{
    return l->fd >= 0 && lc->addrlen == l->addrlen && memcmp(&lc->addr, &l->addr, l->addrlen) == 0;
}

int ap_listeners_adopt(const ap_listen_conf_t *confs, size_t n, ap_listener_t *have, size_t nhave,
                       ap_listener_t **out)
{
    ap_listener_t *ls = ap_xcalloc(n ? n : 1, sizeof(*ls));
    int *taken = ap_xcalloc(nhave ? nhave : 1, sizeof(int));
    for (size_t i = 0; i < n; i++) {
        size_t k;
        for (k = 0; k < nhave; k++)
            if (!taken[k] && same_addr(&confs[i], &have[k]))
                break;
        if (k < nhave) {
            taken[k] = 1;
            ls[i].fd = have[k].fd;
            ls[i].family = have[k].family;
            ls[i].text = ap_xstrdup(confs[i].text);
            ls[i].unix_path = have[k].unix_path ? ap_xstrdup(have[k].unix_path) : NULL;
            ls[i].admin = confs[i].admin;
            ls[i].tls = confs[i].tls;
            ls[i].redirect = confs[i].redirect;
            ls[i].proxy_protocol = confs[i].proxy_protocol;
            ls[i].addr = confs[i].addr;
            ls[i].addrlen = confs[i].addrlen;
            continue;
        }
        int rc = bind_one(&confs[i], &ls[i]);
        if (rc < 0) {
            /* Close only what this call bound. */
            for (size_t j = 0; j < i; j++) {
                int adopted = 0;
                for (k = 0; k < nhave; k++)
                    if (taken[k] && have[k].fd == ls[j].fd)
                        adopted = 1;
                if (adopted)
                    ls[j].fd = -1;
            }
            ap_listeners_close(ls, i, 1);
            free(taken);
            *out = NULL;
            return rc;
        }
        ap_log(AP_LOG_INFO, "listening on %s%s", ls[i].text,
               ls[i].admin ? " (admin)" : ls[i].tls ? " (tls)" : ls[i].redirect ? " (redirect)" : "");
    }
    /* What the new set does not use is closed; a unix socket file stays
     * when some listener of the new set still has its path. */
    for (size_t k = 0; k < nhave; k++) {
        if (taken[k] || have[k].fd < 0)
            continue;
        ap_log(AP_LOG_INFO, "closing listener %s", have[k].text ? have[k].text : "(inherited)");
        close(have[k].fd);
        have[k].fd = -1;
        if (have[k].unix_path)
            unlink(have[k].unix_path);
    }
    for (size_t k = 0; k < nhave; k++)
        if (taken[k])
            have[k].fd = -1; /* now owned by the new set */
    free(taken);
    *out = ls;
    return 0;
}

size_t ap_listeners_inherited(ap_listener_t **out)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    size_t n = 0;
    *out = NULL;
    if (pid && fds && strtol(pid, NULL, 10) == (long)getpid()) {
        long v = strtol(fds, NULL, 10);
        n = v > 0 && v < 1024 ? (size_t)v : 0;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (n == 0)
        return 0;
    ap_listener_t *ls = ap_xcalloc(n, sizeof(*ls));
    for (size_t i = 0; i < n; i++) {
        int fd = 3 + (int)i;
        ls[i].fd = fd;
        ls[i].addrlen = sizeof(ls[i].addr);
        if (getsockname(fd, (struct sockaddr *)&ls[i].addr, &ls[i].addrlen) < 0) {
            ap_log_errno(AP_LOG_WARN, errno, "inherited descriptor %d is not a socket", fd);
            ls[i].fd = -1;
            continue;
        }
        ls[i].family = ls[i].addr.ss_family;
        /* A unix socket's address is its path: keep the file at exit only
         * if a listener still uses it (ap_listeners_adopt copies it). */
        if (ls[i].family == AF_UNIX) {
            const struct sockaddr_un *sun = (const struct sockaddr_un *)&ls[i].addr;
            ls[i].unix_path = ap_xstrdup(sun->sun_path);
            /* getsockname's length is shorter than a parsed line's. */
            ls[i].addrlen = (socklen_t)sizeof(struct sockaddr_un);
            memset((char *)&ls[i].addr + offsetof(struct sockaddr_un, sun_path) +
                       strlen(sun->sun_path),
                   0,
                   sizeof(struct sockaddr_un) - offsetof(struct sockaddr_un, sun_path) -
                       strlen(sun->sun_path));
        } else {
            ls[i].addrlen = ls[i].family == AF_INET6 ? (socklen_t)sizeof(struct sockaddr_in6)
                                                     : (socklen_t)sizeof(struct sockaddr_in);
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    *out = ls;
    return n;
}

void ap_listeners_close(ap_listener_t *ls, size_t n, int unlink_files)
{
    if (ls == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        if (ls[i].fd >= 0)
            close(ls[i].fd);
        if (unlink_files && ls[i].unix_path && ls[i].fd >= 0)
            unlink(ls[i].unix_path);
        free(ls[i].unix_path);
        free(ls[i].text);
    }
    free(ls);
}
