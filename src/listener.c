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
        if (flen > 8 && memcmp(f, "backlog=", 8) == 0) {
            long v = 0;
            size_t i;
            for (i = 8; i < flen && f[i] >= '0' && f[i] <= '9' && v <= 65535; i++)
                v = v * 10 + (f[i] - '0');
            if (i != flen || v < 1 || v > 65535) {
                *why = "backlog must be an integer 1..65535";
                return -1;
            }
            out->backlog = (int)v;
        } else {
            *why = "unknown listen flag (known: backlog=N)";
            return -1;
        }
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
    return 0;
}

int ap_listeners_bind(const ap_listen_conf_t *confs, size_t n, ap_listener_t **out)
{
    ap_listener_t *ls = ap_xcalloc(n, sizeof(*ls));
    for (size_t i = 0; i < n; i++) {
        int rc = bind_one(&confs[i], &ls[i]);
        if (rc < 0) {
            ap_listeners_close(ls, i, 1);
            *out = NULL;
            return rc;
        }
        ap_log(AP_LOG_INFO, "listening on %s", ls[i].text);
    }
    *out = ls;
    return 0;
}

void ap_listeners_close(ap_listener_t *ls, size_t n, int unlink_files)
{
    if (ls == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        if (ls[i].fd >= 0)
            close(ls[i].fd);
        if (unlink_files && ls[i].unix_path)
            unlink(ls[i].unix_path);
        free(ls[i].unix_path);
        free(ls[i].text);
    }
    free(ls);
}
