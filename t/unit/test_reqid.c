/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: the ChaCha20 key stream behind request ids (a known answer),
 * generated ids, which X-Request-Id values are kept, and W3C traceparent
 * validation. Includes reqid.c to reach its generator state. */
#include "../../src/reqid.c"

#include <stdio.h>

#include "tap.h"

#define S(lit) AP_STR(lit)

int main(void)
{
    /* ChaCha20 with an all-zero key, nonce and counter: the first block of
     * the published test vector (RFC 7539 draft, test vector 1). */
    static const uint8_t want[64] = {
        0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53,
        0x86, 0xbd, 0x28, 0xbd, 0xd2, 0x19, 0xb8, 0xa0, 0x8d, 0xed, 0x1a, 0xa8, 0x36,
        0xef, 0xcc, 0x8b, 0x77, 0x0d, 0xc7, 0xda, 0x41, 0x59, 0x7c, 0x51, 0x57, 0x48,
        0x8d, 0x77, 0x24, 0xe0, 0x3f, 0xb8, 0xd8, 0x4a, 0x37, 0x6a, 0x43, 0xb8, 0xf4,
        0x15, 0x18, 0xa1, 0x1c, 0xc3, 0x87, 0xb6, 0x69, 0xb2, 0xee, 0x65, 0x86};
    memset(&G, 0, sizeof(G));
    G.used = sizeof(G.block);
    G.seeded = 1;
    uint8_t got[64];
    ap_reqid_random(got, 10);
    ap_reqid_random(got + 10, 54);
    ok(memcmp(got, want, sizeof(want)) == 0, "ChaCha20 block 0 matches the test vector");
    ok(G.counter == 1, "one block used");
    ap_reqid_random(got, 1);
    ok(G.counter == 2, "the next byte starts block 1");

    ok(ap_reqid_seed() == 0, "seeded from getrandom");
    char a[AP_REQID_GEN_LEN + 1], b[AP_REQID_GEN_LEN + 1];
    ap_reqid_generate(a);
    ap_reqid_generate(b);
    is_int(strlen(a), 32, "a generated id has 32 characters");
    ok(strspn(a, "0123456789abcdef") == 32, "lowercase hex");
    ok(strcmp(a, b) != 0, "two ids differ");
    ok(ap_reqid_valid(ap_str_make(a, strlen(a))), "a generated id is valid as a client's");
    /* 10000 ids: no repeat (a broken generator repeats fast). */
    int dup = 0;
    static char seen[10000][AP_REQID_GEN_LEN + 1];
    for (int i = 0; i < 10000; i++) {
        ap_reqid_generate(seen[i]);
        if (i > 0 && strcmp(seen[i], seen[i - 1]) == 0)
            dup++;
    }
    is_int(dup, 0, "10000 ids, no consecutive repeat");
    int ones = 0;
    for (int i = 0; i < 10000; i++)
        for (int k = 0; k < 32; k++) {
            char c = seen[i][k];
            int v = c <= '9' ? c - '0' : c - 'a' + 10;
            ones += __builtin_popcount((unsigned)v);
        }
    /* 1,280,000 bits: half are ones, within a few standard deviations. */
    ok(ones > 640000 - 4000 && ones < 640000 + 4000, "bits balanced (%d ones in 1280000)", ones);

    ok(ap_reqid_valid(S("abc")), "letters");
    ok(ap_reqid_valid(S("A-b_c.d:9")), "the punctuation allowed");
    ok(ap_reqid_valid(S("6f0c4bd2-f1d9-4e4a-b1c2-d3e4f5a6b7c8")), "a UUID");
    ok(!ap_reqid_valid(S("")), "empty: no");
    ok(!ap_reqid_valid(S("a b")), "space: no");
    ok(!ap_reqid_valid(S("a\"b")), "quote: no");
    ok(!ap_reqid_valid(S("a\\b")), "backslash: no");
    ok(!ap_reqid_valid(S("a/b")), "slash: no");
    ok(!ap_reqid_valid(S("a\xc3\xa9")), "non-ASCII: no");
    ok(!ap_reqid_valid(ap_str_make("a\0b", 3)), "NUL: no");
    char long_id[AP_REQID_MAX + 2];
    memset(long_id, 'x', sizeof(long_id));
    ok(ap_reqid_valid(ap_str_make(long_id, AP_REQID_MAX)), "128 characters: yes");
    ok(!ap_reqid_valid(ap_str_make(long_id, AP_REQID_MAX + 1)), "129 characters: no");

    ok(ap_reqid_traceparent_valid(S("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
       "traceparent: the spec's example");
    ok(ap_reqid_traceparent_valid(S("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")),
       "traceparent: not sampled");
    ok(!ap_reqid_traceparent_valid(S("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")),
       "traceparent: upper case: no");
    ok(!ap_reqid_traceparent_valid(S("00-00000000000000000000000000000000-00f067aa0ba902b7-01")),
       "traceparent: zero trace id: no");
    ok(!ap_reqid_traceparent_valid(S("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")),
       "traceparent: zero parent id: no");
    ok(!ap_reqid_traceparent_valid(S("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
       "traceparent: version ff: no");
    ok(!ap_reqid_traceparent_valid(S("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")),
       "traceparent: version 00 with more: no");
    ok(ap_reqid_traceparent_valid(S("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")),
       "traceparent: a later version with more: yes");
    ok(!ap_reqid_traceparent_valid(S("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x")),
       "traceparent: a later version, more without '-': no");
    ok(!ap_reqid_traceparent_valid(S("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-\"")),
       "traceparent: a quote in the rest: no");
    ok(!ap_reqid_traceparent_valid(S("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7")),
       "traceparent: short: no");
    ok(!ap_reqid_traceparent_valid(S("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01")),
       "traceparent: wrong separators: no");
    ok(!ap_reqid_traceparent_valid(S("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
       "traceparent: non-hex version: no");

    return done_testing();
}
