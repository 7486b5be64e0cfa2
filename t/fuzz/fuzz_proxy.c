/* SPDX-License-Identifier: BSD-2-Clause */
/* libFuzzer target: the PROXY protocol v1/v2 parser, and the same bytes
 * as an X-Forwarded-For and a Forwarded value walked through trusted
 * proxies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "netaddr.h"
#include "proxy_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ap_proxy_info_t info;
    const char *why = NULL;
    int n = ap_proxy_parse(data, size, &info, &why);
    /* A header is never longer than what was given or than the limits;
     * a refusal always says why; an address taken is an IP address. */
    if (n > 0 &&
        ((size_t)n > size || (info.version == 1 && n > AP_PROXY_V1_MAX) || n > AP_PROXY_V2_MAX))
        abort();
    if (n < 0 && why == NULL)
        abort();
    if (n > 0 && !info.local && info.src.family != AF_INET && info.src.family != AF_INET6)
        abort();
    /* Every prefix of an accepted header asks for more, never refuses. */
    if (n > 1) {
        ap_proxy_info_t other;
        if (ap_proxy_parse(data, (size_t)n - 1, &other, &why) != 0)
            abort();
    }

    static ap_cidr_list_t trusted;
    if (trusted.n == 0) {
        const char *w;
        ap_str_t bad;
        if (ap_cidr_list_parse("127.0.0.0/8 10.0.0.0/8 2001:db8::/32", &trusted, &w, &bad) < 0)
            abort();
    }
    ap_addr_t peer = {0}, client;
    peer.family = AF_INET;
    peer.a[0] = 127, peer.a[3] = 1;
    ap_str_t v = ap_str_make((const char *)data, size);
    char text[AP_ADDR_TEXT];
    for (int h = AP_FWD_XFF; h <= AP_FWD_FORWARDED; h++) {
        ap_addr_real_client(&peer, &trusted, (ap_fwd_header_t)h, &v, 1, &client);
        if (client.family != AF_INET && client.family != AF_INET6)
            abort();
        ap_addr_format(&client, text);
    }
    return 0;
}
