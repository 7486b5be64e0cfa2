/* SPDX-License-Identifier: BSD-2-Clause */
/* Request ids: a ChaCha20 key stream per process, and the checks on ids
 * and trace context that clients send. */
#include "reqid.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

/* ChaCha20 (RFC 8439's block function) with a 64-bit block counter: the
 * key comes from getrandom(2) once per process, then each 64-byte block
 * costs a few hundred cycles and serves four ids, where a getrandom(2)
 * call per request would cost a system call each. The counter cannot
 * wrap in a process's lifetime (2^64 blocks). */
static struct {
    uint32_t key[8];
    uint64_t counter;
    uint8_t block[64];
    size_t used; /* bytes of block handed out */
    int seeded;
} G = {.used = 64};

#define ROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define QR(a, b, c, d)                                                                             \
    do {                                                                                           \
        a += b;                                                                                    \
        d ^= a;                                                                                    \
        d = ROTL(d, 16);                                                                           \
        c += d;                                                                                    \
        b ^= c;                                                                                    \
        b = ROTL(b, 12);                                                                           \
        a += b;                                                                                    \
        d ^= a;                                                                                    \
        d = ROTL(d, 8);                                                                            \
        c += d;                                                                                    \
        b ^= c;                                                                                    \
        b = ROTL(b, 7);                                                                            \
    } while (0)

static void chacha_block(void)
{
    uint32_t in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
    memcpy(in + 4, G.key, sizeof(G.key));
    in[12] = (uint32_t)G.counter;
    in[13] = (uint32_t)(G.counter >> 32);
    in[14] = in[15] = 0;
    G.counter++;
    uint32_t x[16];
    memcpy(x, in, sizeof(x));
    for (int i = 0; i < 10; i++) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) {
        uint32_t v = x[i] + in[i];
        G.block[4 * i] = (uint8_t)v;
        G.block[4 * i + 1] = (uint8_t)(v >> 8);
        G.block[4 * i + 2] = (uint8_t)(v >> 16);
        G.block[4 * i + 3] = (uint8_t)(v >> 24);
    }
    G.used = 0;
}

static int fill_getrandom(void *out, size_t n)
{
    uint8_t *p = out;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int ap_reqid_seed(void)
{
    int rc = fill_getrandom(G.key, sizeof(G.key));
    G.counter = 0;
    G.used = sizeof(G.block);
    G.seeded = rc == 0 ? 1 : -1;
    return rc;
}

void ap_reqid_random(void *out, size_t n)
{
    uint8_t *p = out;
    if (G.seeded == 0)
        ap_reqid_seed();
    if (G.seeded < 0 && fill_getrandom(out, n) == 0)
        return;
    while (n > 0) {
        if (G.used == sizeof(G.block))
            chacha_block();
        size_t k = sizeof(G.block) - G.used;
        if (k > n)
            k = n;
        memcpy(p, G.block + G.used, k);
        /* What was handed out does not stay behind in memory. */
        memset(G.block + G.used, 0, k);
        G.used += k;
        p += k;
        n -= k;
    }
}

void ap_reqid_generate(char out[AP_REQID_GEN_LEN + 1])
{
    /* Two hex digits per byte from one table: this runs for every
     * request without an id of its own. */
    static char pairs[256][2];
    if (pairs[255][0] == 0) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < 256; i++) {
            pairs[i][0] = hex[i >> 4];
            pairs[i][1] = hex[i & 15];
        }
    }
    uint8_t r[AP_REQID_GEN_LEN / 2];
    ap_reqid_random(r, sizeof(r));
    for (size_t i = 0; i < sizeof(r); i++)
        memcpy(out + 2 * i, pairs[r[i]], 2);
    out[AP_REQID_GEN_LEN] = '\0';
}

int ap_reqid_valid(ap_str_t v)
{
    if (v.len == 0 || v.len > AP_REQID_MAX)
        return 0;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

/* n lowercase hex digits at p; *nonzero is set if any is not '0'. */
static int lower_hex(const char *p, size_t n, int *nonzero)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        if (c != '0')
            *nonzero = 1;
    }
    return 1;
}

int ap_reqid_traceparent_valid(ap_str_t v)
{
    /* 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 */
    const char *p = v.p;
    int nz = 0, trace_nz = 0, parent_nz = 0;
    if (v.len < 55 || v.len > 512)
        return 0;
    if (!lower_hex(p, 2, &nz) || p[2] != '-' || (p[0] == 'f' && p[1] == 'f'))
        return 0;
    if (!lower_hex(p + 3, 32, &trace_nz) || p[35] != '-')
        return 0;
    if (!lower_hex(p + 36, 16, &parent_nz) || p[52] != '-')
        return 0;
    if (!lower_hex(p + 53, 2, &nz) || !trace_nz || !parent_nz)
        return 0;
    if (p[0] == '0' && p[1] == '0')
        return v.len == 55;
    if (v.len == 55)
        return 1;
    if (p[55] != '-')
        return 0;
    /* Whatever a later version adds must still be harmless to log. */
    for (size_t i = 56; i < v.len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}
