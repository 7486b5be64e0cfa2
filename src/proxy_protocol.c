/* SPDX-License-Identifier: BSD-2-Clause */
/* PROXY protocol v1 (text) and v2 (binary) headers. The specification is
 * HAProxy's doc/proxy-protocol.txt; what it leaves open is refused. */
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v2sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                  0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static int fail(const char **why, const char *text)
{
    *why = text;
    return -1;
}

/* A decimal port 0..65535 without leading zeros (the spec's form). */
static int v1_port(const char *p, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

static int parse_v1(const uint8_t *p, size_t len, ap_proxy_info_t *info, const char **why)
{
    /* Everything up to CRLF, within 107 bytes. */
    size_t end = 0;
    while (end < len && end < AP_PROXY_V1_MAX && p[end] != '\n')
        end++;
    if (end == len && len < AP_PROXY_V1_MAX)
        return 0;
    if (end >= AP_PROXY_V1_MAX || end == 0 || p[end - 1] != '\r')
        return fail(why, "PROXY v1 header longer than 107 bytes or not ended by CRLF");
    const char *line = (const char *)p;
    size_t n = end - 1; /* without CRLF */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] > 0x7e)
            return fail(why, "PROXY v1 header with a control or non-ASCII byte");

    memset(info, 0, sizeof(*info));
    info->version = 1;
    if (n >= 13 && memcmp(line, "PROXY UNKNOWN", 13) == 0 && (n == 13 || line[13] == ' ')) {
        /* "PROXY UNKNOWN" may be followed by anything (ignored). */
        info->local = 1;
        return (int)end + 1;
    }

    /* Fields separated by single spaces. */
    const char *f[6];
    size_t fl[6];
    size_t nf = 0, i = 0;
    while (i <= n && nf < 6) {
        size_t s = i;
        while (i < n && line[i] != ' ')
            i++;
        f[nf] = line + s;
        fl[nf] = i - s;
        nf++;
        if (i == n)
            break;
        i++;
    }
    if (i != n || nf < 2 || fl[0] != 5 || memcmp(f[0], "PROXY", 5) != 0)
        return fail(why, "malformed PROXY v1 header");
    int family;
    if (fl[1] == 4 && memcmp(f[1], "TCP4", 4) == 0)
        family = AF_INET;
    else if (fl[1] == 4 && memcmp(f[1], "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return fail(why, "PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN");
    if (nf != 6)
        return fail(why, "PROXY v1 header needs source, destination and both ports");
    ap_addr_t src, dst;
    /* ap_addr_parse would take an IPv4 address for TCP6 and map ::ffff:
     * forms to IPv4: check the written form against the family. */
    for (int k = 2; k <= 3; k++) {
        int has_colon = memchr(f[k], ':', fl[k]) != NULL;
        if ((family == AF_INET) == has_colon)
            return fail(why, "PROXY v1 address does not match its protocol");
    }
    if (ap_addr_parse(ap_str_make(f[2], fl[2]), &src) < 0 ||
        ap_addr_parse(ap_str_make(f[3], fl[3]), &dst) < 0)
        return fail(why, "PROXY v1 header with an invalid address");
    if (v1_port(f[4], fl[4], &info->src_port) < 0 || v1_port(f[5], fl[5], &info->dst_port) < 0)
        return fail(why, "PROXY v1 header with an invalid port");
    info->src = src;
    info->dst = dst;
    return (int)end + 1;
}

static int parse_v2(const uint8_t *p, size_t len, ap_proxy_info_t *info, const char **why)
{
    if (len < 16)
        return 0;
    uint8_t ver_cmd = p[12], fam = p[13];
    size_t body = ((size_t)p[14] << 8) | p[15];
    if ((ver_cmd >> 4) != 2)
        return fail(why, "PROXY v2 header with a version other than 2");
    int cmd = ver_cmd & 0x0f;
    if (cmd > 1)
        return fail(why, "PROXY v2 header with an unknown command");
    if (16 + body > AP_PROXY_V2_MAX)
        return fail(why, "PROXY v2 header larger than 4096 bytes");
    if (len < 16 + body)
        return 0;
    memset(info, 0, sizeof(*info));
    info->version = 2;
    const uint8_t *a = p + 16;
    int af = fam >> 4, proto = fam & 0x0f;
    if (af > 3 || proto > 2)
        return fail(why, "PROXY v2 header with an unknown address family or protocol");
    if (cmd == 0) {
        /* LOCAL: the balancer's own connection (health checks); the
         * addresses, if any, are to be ignored. */
        info->local = 1;
        return (int)(16 + body);
    }
    if (af == 1) { /* AF_INET */
        if (body < 12)
            return fail(why, "PROXY v2 IPv4 header shorter than its addresses");
        info->src.family = info->dst.family = AF_INET;
        memcpy(info->src.a, a, 4);
        memcpy(info->dst.a, a + 4, 4);
        info->src_port = (uint16_t)((a[8] << 8) | a[9]);
        info->dst_port = (uint16_t)((a[10] << 8) | a[11]);
    } else if (af == 2) { /* AF_INET6 */
        if (body < 36)
            return fail(why, "PROXY v2 IPv6 header shorter than its addresses");
        struct sockaddr_in6 s6;
        memset(&s6, 0, sizeof(s6));
        s6.sin6_family = AF_INET6;
        memcpy(&s6.sin6_addr, a, 16);
        ap_addr_from_sockaddr((const struct sockaddr *)&s6, &info->src);
        memcpy(&s6.sin6_addr, a + 16, 16);
        ap_addr_from_sockaddr((const struct sockaddr *)&s6, &info->dst);
        info->src_port = (uint16_t)((a[32] << 8) | a[33]);
        info->dst_port = (uint16_t)((a[34] << 8) | a[35]);
    } else {
        /* UNSPEC or AF_UNIX: nothing an address-based rule can use; the
         * connection is taken as the balancer's own. */
        info->local = 1;
    }
    if (!info->local && proto != 1)
        info->local = 1; /* UDP or unspecified transport: not a TCP client */
    if (info->local)
        memset(&info->src, 0, sizeof(info->src));
    return (int)(16 + body);
}

int ap_proxy_parse(const uint8_t *p, size_t len, ap_proxy_info_t *info, const char **why)
{
    *why = NULL;
    if (len == 0)
        return 0;
    /* Which version: decided on as few bytes as possible, so that a
     * client that sends no header at all is refused at its first bytes. */
    size_t n = len < sizeof(v2sig) ? len : sizeof(v2sig);
    if (memcmp(p, v2sig, n) == 0)
        return n < sizeof(v2sig) ? 0 : parse_v2(p, len, info, why);
    n = len < 6 ? len : 6;
    if (memcmp(p, "PROXY ", n) == 0)
        return n < 6 ? 0 : parse_v1(p, len, info, why);
    return fail(why, "the connection did not start with a PROXY protocol header");
}
