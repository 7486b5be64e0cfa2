/* SPDX-License-Identifier: BSD-2-Clause */
/* Client addresses: parsing and formatting IPv4/IPv6 addresses, CIDR
 * lists (trusted proxies, rate-limit allowlists), and finding the real
 * client behind trusted proxies from X-Forwarded-For or Forwarded. */
#ifndef AP_NETADDR_H
#define AP_NETADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "str.h"

/* An IP address. IPv4 is kept in a[0..3]; an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is turned into the IPv4 address it maps, so that one
 * client has one form. family is 0 for "no address" (a unix socket). */
typedef struct ap_addr_s {
    uint8_t family; /* 0, AF_INET or AF_INET6 */
    uint8_t a[16];
} ap_addr_t;

/* Long enough for any text ap_addr_format() writes, NUL included. */
#define AP_ADDR_TEXT 48

typedef struct ap_cidr_s {
    ap_addr_t addr; /* host bits cleared */
    uint8_t bits;   /* prefix length: 0..32 or 0..128 */
} ap_cidr_t;

typedef struct ap_cidr_list_s {
    ap_cidr_t *v;
    size_t n;
} ap_cidr_list_t;

/* Parses an address without port ("192.0.2.1", "2001:db8::1"). 0 or -1. */
int ap_addr_parse(ap_str_t s, ap_addr_t *out);

/* Parses one element of X-Forwarded-For or a Forwarded "for=" value:
 * "192.0.2.1", "192.0.2.1:4711", "2001:db8::1", "[2001:db8::1]" or
 * "[2001:db8::1]:4711", with optional surrounding quotes. 0 or -1 (also
 * for "unknown" and obfuscated identifiers such as "_hidden"). */
int ap_addr_parse_forwarded(ap_str_t s, ap_addr_t *out);

/* From a socket address (AF_INET, AF_INET6; anything else gives family
 * 0). */
void ap_addr_from_sockaddr(const struct sockaddr *sa, ap_addr_t *out);

/* Writes the address as text ("192.0.2.1", "2001:db8::1", "unix" for
 * family 0) into out (AP_ADDR_TEXT bytes). Returns out. */
char *ap_addr_format(const ap_addr_t *a, char *out);

/* Non-zero when both are the same address. */
int ap_addr_eq(const ap_addr_t *x, const ap_addr_t *y);

/* Parses "ADDR" or "ADDR/BITS". 0 or -1 with *why set. */
int ap_cidr_parse(ap_str_t s, ap_cidr_t *out, const char **why);

/* Parses a list of CIDRs separated by commas and/or blanks into out
 * (heap: ap_cidr_list_free). An empty text gives an empty list. 0, or -1
 * with *why set and *bad the offending item (points into text). */
int ap_cidr_list_parse(const char *text, ap_cidr_list_t *out, const char **why, ap_str_t *bad);
void ap_cidr_list_free(ap_cidr_list_t *l);

/* Non-zero when a is inside one of the list's prefixes. */
int ap_cidr_list_match(const ap_cidr_list_t *l, const ap_addr_t *a);

/* Which header carries the chain of client addresses from trusted proxies. */
typedef enum { AP_FWD_XFF = 0, AP_FWD_FORWARDED = 1 } ap_fwd_header_t;

/* The real client of a request whose TCP peer (or PROXY-protocol source)
 * is peer: when peer is in trusted, the addresses of every `header` line
 * (values in order, as received) are walked right to left; each trusted
 * address moves one hop further, and the first untrusted one is the
 * client. A malformed element stops the walk: the last address reached
 * is the client. When every hop is trusted, the leftmost is the client.
 * values/nvalues are the header's values in the order received. Writes
 * the result to *client (peer itself when untrusted or nothing applies);
 * returns the number of hops taken. */
int ap_addr_real_client(const ap_addr_t *peer, const ap_cidr_list_t *trusted,
                        ap_fwd_header_t header, const ap_str_t *values, size_t nvalues,
                        ap_addr_t *client);

#endif
