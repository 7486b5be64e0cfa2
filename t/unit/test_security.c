/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: client addresses and CIDR lists, the walk through trusted
 * proxies (X-Forwarded-For, Forwarded), PROXY protocol v1/v2 headers,
 * rates and the shared token-bucket table (across processes too), CORS
 * origins. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cors.h"
#include "netaddr.h"
#include "proxy_protocol.h"
#include "tap.h"
/* The table's insides, for the tests of a lock holder that dies. */
#include "ratelimit.c"

static ap_addr_t addr(const char *s)
{
    ap_addr_t a;
    if (ap_addr_parse(ap_str_make(s, strlen(s)), &a) < 0)
        memset(&a, 0xee, sizeof(a));
    return a;
}

static const char *fmt(const ap_addr_t *a)
{
    static char buf[4][AP_ADDR_TEXT];
    static int i;
    i = (i + 1) % 4;
    return ap_addr_format(a, buf[i]);
}

static int fwd_ok(const char *s, const char *want)
{
    ap_addr_t a;
    if (ap_addr_parse_forwarded(ap_str_make(s, strlen(s)), &a) < 0)
        return want == NULL;
    return want && strcmp(fmt(&a), want) == 0;
}

static void test_addresses(void)
{
    ap_addr_t a = addr("192.0.2.1");
    is_int(a.family, AF_INET, "IPv4 parses");
    is_str(fmt(&a), "192.0.2.1", "IPv4 formats");
    a = addr("2001:db8::1");
    is_int(a.family, AF_INET6, "IPv6 parses");
    is_str(fmt(&a), "2001:db8::1", "IPv6 formats");
    a = addr("::ffff:10.1.2.3");
    is_int(a.family, AF_INET, "IPv4-mapped IPv6 becomes IPv4");
    is_str(fmt(&a), "10.1.2.3", "... and formats as IPv4");
    ap_addr_t b;
    ok(ap_addr_parse(AP_STR("300.1.1.1"), &b) < 0, "bad IPv4 refused");
    ok(ap_addr_parse(AP_STR("fe80::1%eth0"), &b) < 0, "zone index refused");
    ok(ap_addr_parse(AP_STR(""), &b) < 0, "empty refused");
    ok(ap_addr_parse(AP_STR("1.2.3.4 "), &b) < 0, "trailing blank refused");

    ok(fwd_ok("192.0.2.60", "192.0.2.60"), "forwarded: IPv4");
    ok(fwd_ok(" 192.0.2.60:4711 ", "192.0.2.60"), "forwarded: IPv4 with port and blanks");
    ok(fwd_ok("\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
       "forwarded: quoted bracketed IPv6 with port");
    ok(fwd_ok("[2001:db8::1]", "2001:db8::1"), "forwarded: bracketed IPv6");
    ok(fwd_ok("2001:db8::1", "2001:db8::1"), "forwarded: bare IPv6");
    ok(fwd_ok("unknown", NULL), "forwarded: unknown refused");
    ok(fwd_ok("_hidden", NULL), "forwarded: obfuscated identifier refused");
    ok(fwd_ok("192.0.2.1:x", NULL), "forwarded: bad port refused");
    ok(fwd_ok("[192.0.2.1]", NULL), "forwarded: IPv4 in brackets refused");
    ok(fwd_ok("[2001:db8::1]x", NULL), "forwarded: junk after brackets refused");
}

static void test_cidrs(void)
{
    ap_cidr_list_t l;
    const char *why;
    ap_str_t bad;
    ok(ap_cidr_list_parse("10.0.0.0/8, 192.168.1.5 2001:db8::/32,::1", &l, &why, &bad) == 0,
       "a CIDR list parses");
    is_int(l.n, 4, "four items");
    ap_addr_t a = addr("10.200.3.4");
    ok(ap_cidr_list_match(&l, &a), "10.200.3.4 in 10.0.0.0/8");
    a = addr("11.0.0.1");
    ok(!ap_cidr_list_match(&l, &a), "11.0.0.1 not in the list");
    a = addr("192.168.1.5");
    ok(ap_cidr_list_match(&l, &a), "a single address matches itself");
    a = addr("192.168.1.6");
    ok(!ap_cidr_list_match(&l, &a), "... and not its neighbour");
    a = addr("2001:db8:ffff::9");
    ok(ap_cidr_list_match(&l, &a), "IPv6 prefix matches");
    a = addr("2001:db9::1");
    ok(!ap_cidr_list_match(&l, &a), "IPv6 outside the prefix");
    a = addr("::ffff:10.0.0.1");
    ok(ap_cidr_list_match(&l, &a), "IPv4-mapped client matches the IPv4 prefix");
    ap_addr_t none = {0};
    ok(!ap_cidr_list_match(&l, &none), "no address matches nothing");
    ap_cidr_list_free(&l);

    ok(ap_cidr_list_parse("10.0.0.0/33", &l, &why, &bad) < 0 && strstr(why, "32"),
       "/33 refused for IPv4");
    ok(ap_cidr_list_parse("1.2.3.4 nonsense", &l, &why, &bad) < 0 &&
           ap_str_eq(bad, AP_STR("nonsense")),
       "the bad item is named");
    ok(ap_cidr_list_parse("::/129", &l, &why, &bad) < 0, "/129 refused");
    ok(ap_cidr_list_parse("10.0.0.0/", &l, &why, &bad) < 0, "empty prefix length refused");
    ok(ap_cidr_list_parse("", &l, &why, &bad) == 0 && l.n == 0, "empty list");
    ok(ap_cidr_list_parse("10.1.2.3/8", &l, &why, &bad) == 0, "host bits are allowed");
    a = addr("10.9.9.9");
    ok(ap_cidr_list_match(&l, &a), "... and cleared");
    ap_cidr_list_free(&l);
    ok(ap_cidr_list_parse("::ffff:10.0.0.0/104", &l, &why, &bad) == 0, "mapped prefix");
    a = addr("10.3.3.3");
    ok(ap_cidr_list_match(&l, &a), "... matches the IPv4 network");
    ap_cidr_list_free(&l);
    ok(ap_cidr_list_parse("0.0.0.0/0", &l, &why, &bad) == 0, "/0");
    a = addr("8.8.8.8");
    ok(ap_cidr_list_match(&l, &a), "/0 matches every IPv4 address");
    a = addr("2001:db8::1");
    ok(!ap_cidr_list_match(&l, &a), "... and no IPv6 one");
    ap_cidr_list_free(&l);
}

static const char *walk(const char *peer, const char *trusted, ap_fwd_header_t h, const char *v1,
                        const char *v2)
{
    ap_cidr_list_t l;
    const char *why;
    ap_str_t bad;
    ap_cidr_list_parse(trusted, &l, &why, &bad);
    ap_str_t vals[2];
    size_t n = 0;
    if (v1)
        vals[n++] = ap_str_make(v1, strlen(v1));
    if (v2)
        vals[n++] = ap_str_make(v2, strlen(v2));
    ap_addr_t p = addr(peer), client;
    ap_addr_real_client(&p, &l, h, vals, n, &client);
    ap_cidr_list_free(&l);
    return fmt(&client);
}

static void test_real_client(void)
{
    const char *t = "127.0.0.1 10.0.0.0/8";
    is_str(walk("127.0.0.1", t, AP_FWD_XFF, "198.51.100.7", NULL), "198.51.100.7",
           "trusted peer: the XFF address");
    is_str(walk("127.0.0.2", t, AP_FWD_XFF, "198.51.100.7", NULL), "127.0.0.2",
           "untrusted peer: XFF ignored");
    is_str(walk("127.0.0.1", "", AP_FWD_XFF, "198.51.100.7", NULL), "127.0.0.1",
           "no trusted proxies: XFF ignored");
    is_str(walk("127.0.0.1", t, AP_FWD_XFF, "203.0.113.9, 198.51.100.7, 10.1.1.1", NULL),
           "198.51.100.7", "right to left: stops at the first untrusted hop");
    is_str(walk("127.0.0.1", t, AP_FWD_XFF, "10.2.2.2, 10.1.1.1", NULL), "10.2.2.2",
           "all trusted: the leftmost");
    is_str(walk("127.0.0.1", t, AP_FWD_XFF, "203.0.113.9", "198.51.100.7, 10.1.1.1"),
           "198.51.100.7", "several header lines form one list");
    is_str(walk("127.0.0.1", t, AP_FWD_XFF, "203.0.113.9, garbage, 10.1.1.1", NULL), "10.1.1.1",
           "garbage stops the walk at the last trusted hop");
    is_str(walk("127.0.0.1", t, AP_FWD_XFF, "203.0.113.9,,, 10.1.1.1,", NULL), "203.0.113.9",
           "empty list elements are skipped");
    is_str(walk("127.0.0.1", t, AP_FWD_XFF, "198.51.100.7:5555", NULL), "198.51.100.7",
           "a port is dropped");
    is_str(walk("127.0.0.1", t, AP_FWD_XFF, "", NULL), "127.0.0.1", "an empty header: the peer");
    is_str(walk("127.0.0.1", t, AP_FWD_FORWARDED,
                "for=203.0.113.9;proto=https, for=\"[2001:db8::5]:80\";by=10.0.0.1", NULL),
           "2001:db8::5", "Forwarded: for= of the rightmost element");
    is_str(walk("127.0.0.1", t, AP_FWD_FORWARDED, "For=10.3.3.3;proto=http", NULL), "10.3.3.3",
           "Forwarded: the parameter name is case-insensitive");
    is_str(walk("127.0.0.1", t, AP_FWD_FORWARDED, "proto=http;by=1.2.3.4", NULL), "127.0.0.1",
           "Forwarded without for=: the peer");
    is_str(walk("127.0.0.1", t, AP_FWD_FORWARDED, "for=unknown", NULL), "127.0.0.1",
           "Forwarded for=unknown: the peer");
    is_str(walk("127.0.0.1", t, AP_FWD_FORWARDED, "for=\"a,b\";x=1, for=198.51.100.1", NULL),
           "198.51.100.1", "Forwarded: a comma inside quotes does not split");

    /* A chain longer than the hops looked at: the rightmost count. */
    char chain[64 * 12 + 200] = "";
    strcat(chain, "203.0.113.1");
    for (int i = 0; i < 70; i++)
        strcat(chain, ", 10.0.0.1");
    is_str(walk("127.0.0.1", t, AP_FWD_XFF, chain, NULL), "10.0.0.1",
           "a chain of 71 trusted hops: bounded walk, no overflow");
}

static int pp(const char *bytes, size_t len, ap_proxy_info_t *info)
{
    const char *why;
    return ap_proxy_parse((const uint8_t *)bytes, len, info, &why);
}

static void test_proxy_protocol(void)
{
    ap_proxy_info_t info;
    const char v1[] = "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET /";
    int n = pp(v1, sizeof(v1) - 1, &info);
    is_int(n, (int)strlen("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"), "v1 TCP4: length");
    is_int(info.version, 1, "v1: version");
    is_str(fmt(&info.src), "203.0.113.7", "v1: source");
    is_int(info.src_port, 56324, "v1: source port");
    is_int(info.dst_port, 443, "v1: destination port");
    for (size_t k = 0; k < strlen("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r"); k++)
        if (pp(v1, k, &info) != 0) {
            ok(0, "v1: every prefix asks for more (failed at %zu)", k);
            break;
        } else if (k + 1 == strlen("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r")) {
            ok(1, "v1: every prefix asks for more");
        }
    const char v1six[] = "PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n";
    ok(pp(v1six, sizeof(v1six) - 1, &info) > 0 && strcmp(fmt(&info.src), "2001:db8::7") == 0,
       "v1 TCP6");
    const char unk[] = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    ok(pp(unk, sizeof(unk) - 1, &info) > 0 && info.local, "v1 UNKNOWN with junk: local");
    ok(pp("PROXY UNKNOWN\r\n", 15, &info) == 15 && info.local, "v1 UNKNOWN alone");
    ok(pp("GET / HTTP/1.1\r\n", 16, &info) < 0, "no header: refused at once");
    ok(pp("G", 1, &info) < 0, "no header: refused at the first byte");
    ok(pp("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31, &info) < 0, "v1 without CR refused");
    ok(pp("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 33, &info) < 0, "v1 double space refused");
    ok(pp("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 33, &info) < 0, "v1 leading zero refused");
    ok(pp("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", 36, &info) < 0, "v1 port 65536 refused");
    ok(pp("PROXY TCP4 ::1 ::1 1 2\r\n", 24, &info) < 0, "v1 TCP4 with IPv6 refused");
    ok(pp("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", 32, &info) < 0, "v1 TCP6 with IPv4 refused");
    ok(pp("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 32, &info) < 0, "v1 UDP refused");
    ok(pp("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 30, &info) < 0, "v1 missing port refused");
    ok(pp("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 34, &info) < 0, "v1 extra field refused");
    ok(pp("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x01\r\n", 33, &info) < 0, "v1 control byte refused");
    char longv1[200];
    memset(longv1, 'A', sizeof(longv1));
    memcpy(longv1, "PROXY ", 6);
    ok(pp(longv1, sizeof(longv1), &info) < 0, "v1 over 107 bytes refused");
    ok(pp(longv1, 100, &info) == 0, "v1 at 100 bytes without CRLF: more needed");

    /* v2 */
    uint8_t v2[16 + 36 + 8];
    static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    memcpy(v2, sig, 12);
    v2[12] = 0x21; /* v2, PROXY */
    v2[13] = 0x11; /* TCP over IPv4 */
    v2[14] = 0;
    v2[15] = 12 + 8; /* addresses and 8 bytes of TLV */
    uint8_t *a = v2 + 16;
    a[0] = 198, a[1] = 51, a[2] = 100, a[3] = 42;
    a[4] = 10, a[5] = 0, a[6] = 0, a[7] = 1;
    a[8] = 0x12, a[9] = 0x34, a[10] = 0, a[11] = 80;
    memset(a + 12, 0, 8);
    n = ap_proxy_parse(v2, 16 + 20, &info, &(const char *){NULL});
    is_int(n, 36, "v2 TCP4 with a TLV: length");
    is_str(fmt(&info.src), "198.51.100.42", "v2 TCP4: source");
    is_int(info.src_port, 0x1234, "v2 TCP4: source port");
    ok(info.version == 2 && !info.local, "v2: version, not local");
    int more = 1;
    for (size_t k = 0; k < 36; k++)
        more &= ap_proxy_parse(v2, k, &info, &(const char *){NULL}) == 0;
    ok(more, "v2: every prefix asks for more");
    v2[12] = 0x20; /* LOCAL */
    ok(ap_proxy_parse(v2, 36, &info, &(const char *){NULL}) == 36 && info.local,
       "v2 LOCAL: local, addresses ignored");
    v2[12] = 0x22;
    ok(ap_proxy_parse(v2, 36, &info, &(const char *){NULL}) < 0, "v2 unknown command refused");
    v2[12] = 0x11;
    ok(ap_proxy_parse(v2, 36, &info, &(const char *){NULL}) < 0, "v2 version 1 refused");
    v2[12] = 0x21;
    v2[15] = 11;
    ok(ap_proxy_parse(v2, 27, &info, &(const char *){NULL}) < 0, "v2 IPv4 too short refused");
    v2[14] = 0x20, v2[15] = 0;
    ok(ap_proxy_parse(v2, 36, &info, &(const char *){NULL}) < 0, "v2 over 4096 bytes refused");
    v2[14] = 0;
    v2[13] = 0x21; /* TCP over IPv6 */
    v2[15] = 36;
    memset(a, 0, 36);
    a[0] = 0x20, a[1] = 0x01, a[2] = 0x0d, a[3] = 0xb8, a[15] = 9;
    a[32] = 0, a[33] = 99;
    ok(ap_proxy_parse(v2, 52, &info, &(const char *){NULL}) == 52 &&
           strcmp(fmt(&info.src), "2001:db8::9") == 0 && info.src_port == 99,
       "v2 TCP6");
    v2[13] = 0x31; /* unix */
    ok(ap_proxy_parse(v2, 52, &info, &(const char *){NULL}) == 52 && info.local,
       "v2 AF_UNIX: local");
    v2[13] = 0x12; /* UDP over IPv4 */
    v2[15] = 12;
    ok(ap_proxy_parse(v2, 28, &info, &(const char *){NULL}) == 28 && info.local, "v2 UDP: local");
    v2[13] = 0x41;
    ok(ap_proxy_parse(v2, 28, &info, &(const char *){NULL}) < 0, "v2 unknown family refused");
    uint8_t badsig[16];
    memcpy(badsig, sig, 12);
    badsig[5] = 'X';
    ok(ap_proxy_parse(badsig, 16, &info, &(const char *){NULL}) < 0, "v2 bad signature refused");
}

static void test_rates(void)
{
    ap_rate_t r;
    const char *why;
    ok(ap_rate_parse("off", &r, &why) == 0 && r.interval_us == 0, "off");
    ok(ap_rate_parse("10r/s", &r, &why) == 0 && r.interval_us == 100000 && r.burst == 10,
       "10r/s: 100 ms, burst 10 by default");
    ok(ap_rate_parse("30r/m burst=5", &r, &why) == 0 && r.interval_us == 2000000 && r.burst == 5,
       "30r/m burst=5");
    ok(ap_rate_parse("1r/h", &r, &why) == 0 && r.interval_us == 3600000000ULL, "1r/h");
    ok(ap_rate_parse("0r/s", &r, &why) < 0, "0r/s refused");
    ok(ap_rate_parse("10r/d", &r, &why) < 0, "unknown unit refused");
    ok(ap_rate_parse("10r/s burst=0", &r, &why) < 0, "burst 0 refused");
    ok(ap_rate_parse("10r/s burst=x", &r, &why) < 0, "burst x refused");
    ok(ap_rate_parse("10r/s burst=3 more", &r, &why) < 0, "trailing text refused");
    ok(ap_rate_parse("99999999r/s", &r, &why) < 0, "absurd rate refused");
    char d[96];
    ap_rate_parse("10r/s burst=20", &r, &why);
    ap_rate_describe(&r, d, sizeof(d));
    is_str(d, "10 requests per second, burst 20", "described");
}

static void test_buckets(void)
{
    ap_rl_table_t *t = ap_rl_create(64);
    ok(t != NULL, "a table maps");
    is_int(ap_rl_capacity(t), 64, "64 entries");
    ap_rate_t r;
    const char *why;
    ap_rate_parse("10r/s burst=10", &r, &why);
    ap_addr_t a = addr("192.0.2.1"), b = addr("192.0.2.2");
    ap_rl_result_t res;
    uint64_t now = 1000000000ULL;
    int allowed = 0;
    for (int i = 0; i < 11; i++) {
        ap_rl_take(t, &a, AP_RL_API, &r, now, &res);
        allowed += res.allowed;
        if (i == 0)
            ok(res.remaining == 9 && res.limit == 10, "first: 9 remaining of 10");
    }
    is_int(allowed, 10, "a burst of 11 at one instant: 10 allowed");
    ok(!res.allowed && res.retry_after_s == 1 && res.remaining == 0, "the 11th: retry in 1 s");
    ap_rl_take(t, &b, AP_RL_API, &r, now, &res);
    ok(res.allowed, "another address has its own bucket");
    ap_rl_take(t, &a, AP_RL_RPC, &r, now, &res);
    ok(res.allowed, "another kind has its own bucket");
    ap_rl_take(t, &a, AP_RL_API, &r, now + 100000, &res);
    ok(res.allowed, "100 ms later: one more");
    ap_rl_take(t, &a, AP_RL_API, &r, now + 100000, &res);
    ok(!res.allowed, "... and only one");

    /* Accuracy: a client asking every millisecond for 10 s gets the burst
     * plus 10 per second, exactly. */
    ap_addr_t c = addr("192.0.2.3");
    allowed = 0;
    for (uint64_t us = 0; us <= 10000000; us += 1000) {
        ap_rl_take(t, &c, AP_RL_API, &r, now + us, &res);
        allowed += res.allowed;
    }
    is_int(allowed, 10 + 100, "10 s of 1000 r/s against 10r/s burst=10: 110 allowed");

    /* IPv6: one bucket per /64. */
    ap_addr_t v6a = addr("2001:db8:1:2::1"), v6b = addr("2001:db8:1:2:ffff::9"),
              v6c = addr("2001:db8:1:3::1");
    ap_rate_parse("1r/m burst=1", &r, &why);
    ap_rl_take(t, &v6a, AP_RL_API, &r, now, &res);
    ok(res.allowed, "IPv6 first request");
    ap_rl_take(t, &v6b, AP_RL_API, &r, now, &res);
    ok(!res.allowed, "same /64: same bucket");
    ap_rl_take(t, &v6c, AP_RL_API, &r, now, &res);
    ok(res.allowed, "another /64: its own");

    /* Connections. */
    ap_addr_t d = addr("192.0.2.4");
    ok(ap_rl_conn_open(t, &d, 2, now) == 0 && ap_rl_conn_open(t, &d, 2, now) == 0,
       "two connections within a limit of 2");
    ok(ap_rl_conn_open(t, &d, 2, now) < 0, "the third refused");
    ap_rl_conn_close(t, &d, now);
    ok(ap_rl_conn_open(t, &d, 2, now) == 0, "after a close, one more");

    /* Eviction: far more clients than entries. */
    ap_rl_stats_t st;
    ap_rate_parse("10r/s", &r, &why);
    ap_addr_t x = addr("198.51.100.1");
    for (int i = 0; i < 10; i++)
        ap_rl_take(t, &x, AP_RL_API, &r, now, &res);
    ap_rl_take(t, &x, AP_RL_API, &r, now, &res);
    ok(!res.allowed, "198.51.100.1 is out of tokens");
    for (int i = 0; i < 5000; i++) {
        ap_addr_t y = {0};
        y.family = AF_INET;
        y.a[0] = 100, y.a[1] = (uint8_t)(i >> 16), y.a[2] = (uint8_t)(i >> 8), y.a[3] = (uint8_t)i;
        ap_rl_take(t, &y, AP_RL_API, &r, now + 1 + (uint64_t)i, &res);
    }
    ap_rl_stats(t, &st);
    ok(st.used <= 64, "the table never holds more than its 64 entries (%llu)",
       (unsigned long long)st.used);
    ok(st.evictions >= 5000 - 64, "evictions counted (%llu)", (unsigned long long)st.evictions);
    ap_rl_take(t, &x, AP_RL_API, &r, now + 10000, &res);
    ok(res.allowed, "the oldest client was forgotten: a fresh bucket");
    ok(ap_rl_conn_open(t, &d, 100, now + 20000) == 0, "an evicted client's connections start over");

    /* The table is shared: children count in the same buckets. */
    ap_rl_table_t *s = ap_rl_create(1024);
    ap_rate_parse("1r/h burst=100", &r, &why);
    ap_addr_t z = addr("203.0.113.1");
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            int got = 0;
            ap_rl_result_t rr;
            for (int i = 0; i < 50; i++) {
                ap_rl_take(s, &z, AP_RL_API, &r, now, &rr);
                got += rr.allowed;
            }
            _exit(got);
        }
    }
    int total = 0;
    for (int k = 0; k < 4; k++) {
        int status;
        waitpid(kids[k], &status, 0);
        total += WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    }
    is_int(total, 100, "4 processes x 50 requests against one bucket of 100: exactly 100 allowed");

    /* A holder that dies inside the lock does not wedge the others: a
     * reaped one loses it at once, ... */
    uint8_t key[16];
    make_key(&z, key);
    rl_set_t *set = set_of(s, key);
    pid_t dead = fork();
    if (dead == 0) {
        set_lock(s, set);
        _exit(0);
    }
    waitpid(dead, NULL, 0);
    ok(__atomic_load_n(&set->lock, __ATOMIC_RELAXED) == (uint32_t)dead,
       "a dead child holds a lock");
    uint64_t t0 = ap_clock_mono_ms();
    ap_rl_take(s, &z, AP_RL_API, &r, now, &res);
    ok(!res.allowed && ap_clock_mono_ms() - t0 < 1000, "the lock is taken over, the bucket intact");
    ap_rl_stats(s, &st);
    is_int(st.steals, 1, "one steal counted");
    /* ... and the master frees a dead worker's locks when it reaps it. */
    dead = fork();
    if (dead == 0) {
        set_lock(s, set);
        _exit(0);
    }
    while (__atomic_load_n(&set->lock, __ATOMIC_RELAXED) != (uint32_t)dead)
        usleep(1000);
    ap_rl_worker_died(s, dead);
    waitpid(dead, NULL, 0);
    ok(__atomic_load_n(&set->lock, __ATOMIC_RELAXED) == 0, "ap_rl_worker_died releases its locks");
    ap_rl_stats(s, &st);
    is_int(st.steals, 1, "without a steal");
    ap_rl_destroy(s);
    ap_rl_destroy(t);
}

static void test_cors(void)
{
    ok(ap_cors_origin_check("https://app.example.com") == NULL, "https origin");
    ok(ap_cors_origin_check("http://localhost:5173") == NULL, "origin with port");
    ok(ap_cors_origin_check("http://[::1]:8080") == NULL, "IPv6 origin");
    ok(ap_cors_origin_check("https://app.example.com/") != NULL, "trailing slash refused");
    ok(ap_cors_origin_check("https://app.example.com/x") != NULL, "path refused");
    ok(ap_cors_origin_check("app.example.com") != NULL, "no scheme refused");
    ok(ap_cors_origin_check("https://") != NULL, "no host refused");
    ok(ap_cors_origin_check("https://a:99999999") != NULL, "long port refused");
    ok(ap_cors_origin_check("https://user@host") != NULL, "userinfo refused");
    ok(ap_cors_origin_check("null") != NULL, "null refused");
}

int main(void)
{
    test_addresses();
    test_cidrs();
    test_real_client();
    test_proxy_protocol();
    test_rates();
    test_buckets();
    test_cors();
    return done_testing();
}
