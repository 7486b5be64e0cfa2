/* SPDX-License-Identifier: BSD-2-Clause */
/* The PROXY protocol (HAProxy's, versions 1 and 2): the header a load
 * balancer sends before the client's bytes to say who the client is. A
 * pure parser: no I/O, no allocation, so it can be fuzzed on its own. */
#ifndef AP_PROXY_PROTOCOL_H
#define AP_PROXY_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

/* A version 1 header is at most 107 bytes, CRLF included. */
#define AP_PROXY_V1_MAX 107
/* A version 2 header is 16 bytes and up to 65535 more; apiary takes up to
 * this many in all (addresses and the TLVs balancers add: AWS, Azure and
 * HAProxy send well under 1 KiB). */
#define AP_PROXY_V2_MAX 4096

typedef struct ap_proxy_info_s {
    int version;   /* 1 or 2 */
    int local;     /* no address to take: v1 UNKNOWN, v2 LOCAL, or an
                      address family other than TCP over IPv4/IPv6 */
    ap_addr_t src; /* the client (family 0 when local) */
    ap_addr_t dst;
    uint16_t src_port;
    uint16_t dst_port;
} ap_proxy_info_t;

/* Parses a header at the start of p[0..len). Returns the number of bytes
 * it takes (> 0) and fills *info; 0 when the bytes so far are a valid
 * beginning but more are needed; -1 when they are not a PROXY header (or
 * a malformed one), with *why set to a static explanation. */
int ap_proxy_parse(const uint8_t *p, size_t len, ap_proxy_info_t *info, const char **why);

#endif
