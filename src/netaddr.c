/* SPDX-License-Identifier: BSD-2-Clause */
/* Client addresses, CIDR lists and the walk through trusted proxies. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* Elements of a forwarding chain looked at, at most: the walk goes from
 * the right, so a longer chain only loses hops that a real deployment of
 * trusted proxies never has. */
#define AP_FWD_MAX_HOPS 64

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* IPv4-mapped IPv6 becomes plain IPv4. */
static void normalise(ap_addr_t *a)
{
    if (a->family == AF_INET6 && memcmp(a->a, v4mapped, 12) == 0) {
        memmove(a->a, a->a + 12, 4);
        memset(a->a + 4, 0, 12);
        a->family = AF_INET;
    }
}

int ap_addr_parse(ap_str_t s, ap_addr_t *out)
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (s.len == 0 || s.len >= sizeof(buf))
        return -1;
    memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    memset(out, 0, sizeof(*out));
    if (memchr(buf, ':', s.len) != NULL) {
        /* A zone index ("fe80::1%eth0") names an interface of the sender,
         * not a client: refused. */
        if (inet_pton(AF_INET6, buf, out->a) != 1)
            return -1;
        out->family = AF_INET6;
        normalise(out);
        return 0;
    }
    if (inet_pton(AF_INET, buf, out->a) != 1)
        return -1;
    out->family = AF_INET;
    return 0;
}

static int all_digits(const char *p, size_t n)
{
    if (n == 0 || n > 5)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

int ap_addr_parse_forwarded(ap_str_t s, ap_addr_t *out)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    if (s.len >= 2 && s.p[0] == '"' && s.p[s.len - 1] == '"') {
        s.p++;
        s.len -= 2;
    }
    if (s.len == 0)
        return -1;
    if (s.p[0] == '[') {
        const char *end = memchr(s.p, ']', s.len);
        if (end == NULL)
            return -1;
        size_t rest = s.len - (size_t)(end + 1 - s.p);
        if (rest && !(end[1] == ':' && all_digits(end + 2, rest - 1)))
            return -1;
        ap_str_t inner = ap_str_make(s.p + 1, (size_t)(end - s.p - 1));
        if (memchr(inner.p, ':', inner.len) == NULL)
            return -1;
        return ap_addr_parse(inner, out);
    }
    const char *colon = memchr(s.p, ':', s.len);
    if (colon && memchr(colon + 1, ':', s.len - (size_t)(colon + 1 - s.p)) == NULL) {
        /* One colon: IPv4 with a port. */
        size_t plen = s.len - (size_t)(colon + 1 - s.p);
        if (!all_digits(colon + 1, plen))
            return -1;
        if (ap_addr_parse(ap_str_make(s.p, (size_t)(colon - s.p)), out) < 0 ||
            out->family != AF_INET)
            return -1;
        return 0;
    }
    return ap_addr_parse(s, out);
}

void ap_addr_from_sockaddr(const struct sockaddr *sa, ap_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        out->family = AF_INET;
        memcpy(out->a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        out->family = AF_INET6;
        memcpy(out->a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        normalise(out);
    }
}

char *ap_addr_format(const ap_addr_t *a, char *out)
{
    if (a->family == AF_INET)
        inet_ntop(AF_INET, a->a, out, AP_ADDR_TEXT);
    else if (a->family == AF_INET6)
        inet_ntop(AF_INET6, a->a, out, AP_ADDR_TEXT);
    else
        strcpy(out, "unix");
    return out;
}

int ap_addr_eq(const ap_addr_t *x, const ap_addr_t *y)
{
    return x->family == y->family && memcmp(x->a, y->a, x->family == AF_INET ? 4 : 16) == 0;
}

static void clear_host_bits(ap_addr_t *a, unsigned bits)
{
    unsigned total = a->family == AF_INET ? 32 : 128;
    for (unsigned i = bits; i < total; i++)
        a->a[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
}

int ap_cidr_parse(ap_str_t s, ap_cidr_t *out, const char **why)
{
    const char *slash = memchr(s.p, '/', s.len);
    ap_str_t addr = slash ? ap_str_make(s.p, (size_t)(slash - s.p)) : s;
    memset(out, 0, sizeof(*out));
    if (ap_addr_parse(addr, &out->addr) < 0) {
        *why = "expected an IPv4 or IPv6 address, optionally with /prefix-length";
        return -1;
    }
    /* "::ffff:10.0.0.0/104" is the IPv4 network 10.0.0.0/8. */
    int mapped = memchr(addr.p, ':', addr.len) != NULL && out->addr.family == AF_INET;
    unsigned max = out->addr.family == AF_INET ? 32 : 128;
    unsigned bits = max;
    if (slash) {
        size_t n = s.len - (size_t)(slash + 1 - s.p);
        if (n == 0 || n > 3 || !all_digits(slash + 1, n)) {
            *why = "the prefix length must be a number";
            return -1;
        }
        bits = 0;
        for (size_t i = 0; i < n; i++)
            bits = bits * 10 + (unsigned)(slash[1 + i] - '0');
        if (mapped) {
            if (bits < 96) {
                *why = "an IPv4-mapped prefix must be /96 or longer";
                return -1;
            }
            bits -= 96;
        }
        if (bits > max) {
            *why = out->addr.family == AF_INET ? "an IPv4 prefix length is at most 32"
                                               : "an IPv6 prefix length is at most 128";
            return -1;
        }
    }
    out->bits = (uint8_t)bits;
    clear_host_bits(&out->addr, bits);
    return 0;
}

int ap_cidr_list_parse(const char *text, ap_cidr_list_t *out, const char **why, ap_str_t *bad)
{
    out->v = NULL;
    out->n = 0;
    const char *p = text;
    size_t cap = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return 0;
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t' && *p != ',')
            p++;
        ap_str_t item = ap_str_make(start, (size_t)(p - start));
        ap_cidr_t c;
        if (ap_cidr_parse(item, &c, why) < 0) {
            *bad = item;
            ap_cidr_list_free(out);
            return -1;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 4;
            out->v = ap_xrealloc(out->v, cap * sizeof(*out->v));
        }
        out->v[out->n++] = c;
    }
}

void ap_cidr_list_free(ap_cidr_list_t *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int cidr_match(const ap_cidr_t *c, const ap_addr_t *a)
{
    if (c->addr.family != a->family)
        return 0;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr.a, a->a, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (c->addr.a[full] & mask) == (a->a[full] & mask);
}

int ap_cidr_list_match(const ap_cidr_list_t *l, const ap_addr_t *a)
{
    if (a->family == 0)
        return 0;
    for (size_t i = 0; i < l->n; i++)
        if (cidr_match(&l->v[i], a))
            return 1;
    return 0;
}

/* The "for=" value of one Forwarded element ("for=1.2.3.4;proto=https"),
 * or an empty slice. */
static ap_str_t forwarded_for(ap_str_t elem)
{
    size_t i = 0;
    while (i < elem.len) {
        while (i < elem.len && (elem.p[i] == ' ' || elem.p[i] == '\t' || elem.p[i] == ';'))
            i++;
        size_t start = i;
        int quoted = 0;
        while (i < elem.len && (quoted || elem.p[i] != ';')) {
            if (elem.p[i] == '"')
                quoted = !quoted;
            i++;
        }
        ap_str_t pair = ap_str_make(elem.p + start, i - start);
        if (pair.len > 4 && ap_str_caseeq(ap_str_make(pair.p, 4), AP_STR("for=")))
            return ap_str_make(pair.p + 4, pair.len - 4);
    }
    return ap_str_make(elem.p, 0);
}

int ap_addr_real_client(const ap_addr_t *peer, const ap_cidr_list_t *trusted,
                        ap_fwd_header_t header, const ap_str_t *values, size_t nvalues,
                        ap_addr_t *client)
{
    *client = *peer;
    if (trusted->n == 0 || nvalues == 0 || !ap_cidr_list_match(trusted, peer))
        return 0;

    /* The chain's elements in order; only the rightmost AP_FWD_MAX_HOPS
     * are kept. Commas inside quoted strings do not split. */
    ap_str_t hops[AP_FWD_MAX_HOPS];
    size_t nhops = 0, first = 0;
    for (size_t v = 0; v < nvalues; v++) {
        ap_str_t s = values[v];
        size_t i = 0;
        while (i <= s.len) {
            size_t start = i;
            int quoted = 0;
            while (i < s.len && (quoted || s.p[i] != ',')) {
                if (s.p[i] == '"')
                    quoted = !quoted;
                i++;
            }
            ap_str_t elem = ap_str_make(s.p + start, i - start);
            i++;
            /* Empty list elements are allowed by the list syntax (RFC 9110
             * 5.6.1) and mean nothing. */
            size_t k = 0;
            while (k < elem.len && (elem.p[k] == ' ' || elem.p[k] == '\t'))
                k++;
            if (k == elem.len)
                continue;
            hops[(first + nhops) % AP_FWD_MAX_HOPS] = elem;
            if (nhops < AP_FWD_MAX_HOPS)
                nhops++;
            else
                first = (first + 1) % AP_FWD_MAX_HOPS;
        }
    }

    int taken = 0;
    ap_addr_t cur = *peer;
    for (size_t k = nhops; k-- > 0;) {
        ap_str_t elem = hops[(first + k) % AP_FWD_MAX_HOPS];
        if (header == AP_FWD_FORWARDED)
            elem = forwarded_for(elem);
        ap_addr_t next;
        if (ap_addr_parse_forwarded(elem, &next) < 0)
            break; /* garbage: trust nothing further left */
        cur = next;
        taken++;
        if (!ap_cidr_list_match(trusted, &cur))
            break;
    }
    *client = cur;
    return taken;
}
