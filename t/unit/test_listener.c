/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: listen line parsing. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "listener.h"
#include "tap.h"

static int parses(const char *line, int family, const char **why)
{
    ap_listen_conf_t lc;
    *why = NULL;
    if (ap_listen_parse(line, &lc, why) < 0)
        return 0;
    int ok_ = lc.addr.ss_family == family;
    ap_listen_conf_cleanup(&lc);
    return ok_;
}

int main(void)
{
    const char *why;
    ok(parses("127.0.0.1:8080", AF_INET, &why), "IPv4");
    ok(parses("*:80", AF_INET, &why), "wildcard");
    ok(parses("8080", AF_INET, &why), "bare port");
    ok(parses("[::1]:8080", AF_INET6, &why), "IPv6");
    ok(parses("[::]:8080 backlog=16", AF_INET6, &why), "IPv6 with backlog");
    ok(parses("unix:/run/apiary.sock", AF_UNIX, &why), "unix socket");
    ok(!parses("unix:relative.sock", AF_UNIX, &why) && why, "relative unix path rejected");
    ok(!parses("127.0.0.1:0", AF_INET, &why), "port 0 rejected");
    ok(!parses("127.0.0.1:65536", AF_INET, &why), "port 65536 rejected");
    ok(!parses("::1:80", AF_INET6, &why) && strstr(why, "brackets"), "bare IPv6 rejected");
    ok(!parses("localhost:80", AF_INET, &why), "host names rejected");
    ok(!parses("127.0.0.1:80 ssl", AF_INET, &why) && strstr(why, "unknown listen flag"),
       "unknown flag rejected");
    ok(parses("127.0.0.1:443 tls", AF_INET, &why), "tls flag");
    ok(parses("[::]:80 redirect backlog=10", AF_INET6, &why), "redirect flag");
    ok(!parses("127.0.0.1:80 tls redirect", AF_INET, &why) && strstr(why, "exclude"),
       "tls with redirect rejected");
    {
        ap_listen_conf_t lc;
        ok(ap_listen_parse("127.0.0.1:8443 backlog=7 tls", &lc, &why) == 0 && lc.tls &&
               !lc.redirect && lc.backlog == 7,
           "tls flag recorded");
        ap_listen_conf_cleanup(&lc);
        ok(ap_listen_parse("127.0.0.1:80 redirect", &lc, &why) == 0 && lc.redirect && !lc.tls,
           "redirect flag recorded");
        ap_listen_conf_cleanup(&lc);
    }
    ok(!parses("127.0.0.1:80 backlog=0", AF_INET, &why), "backlog 0 rejected");
    ok(!parses("", AF_INET, &why), "empty rejected");

    ap_listen_conf_t a, b;
    ap_listen_parse("127.0.0.1:80", &a, &why);
    ap_listen_parse("127.0.0.1:80 backlog=5", &b, &why);
    ok(ap_listen_same(&a, &b), "same address with other flags is the same socket");
    ap_listen_conf_cleanup(&a);
    ap_listen_conf_cleanup(&b);
    return done_testing();
}
