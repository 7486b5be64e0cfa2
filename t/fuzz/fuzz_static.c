/* SPDX-License-Identifier: BSD-2-Clause */
/* libFuzzer target: what static files make of client input: path
 * normalisation (never a way out of the root), Range, HTTP dates, entity
 * tag lists and Accept-Encoding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "gzip.h"
#include "static.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ap_str_t in = ap_str_make((const char *)data, size);
    ap_buf_t out;
    ap_buf_init(&out);
    int dir;
    if (ap_static_normalise(in, &out, &dir) == 0) {
        /* A relative name of clean segments: no "", ".", ".." or hidden
         * segment, no NUL, backslash or control character. */
        const char *p = out.data ? out.data : "";
        if (strlen(p) != out.len || p[0] == '/' || (out.len && p[out.len - 1] == '/'))
            abort();
        for (size_t i = 0; i < out.len; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
                abort();
        const char *seg = p;
        for (size_t i = 0; i <= out.len; i++) {
            if (i == out.len || p[i] == '/') {
                size_t n = (size_t)(p + i - seg);
                if (out.len && (n == 0 || (seg[0] == '.' &&
                                           !(n == 11 && memcmp(seg, ".well-known", 11) == 0))))
                    abort();
                seg = p + i + 1;
            }
        }
    }
    ap_buf_cleanup(&out);

    uint64_t sizes[] = {0, 1, 1000, UINT64_MAX / 2};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint64_t f = 0, l = 0;
        if (ap_static_parse_range(in, sizes[k], &f, &l) == AP_RANGE_ONE &&
            !(f <= l && l < sizes[k]))
            abort();
    }
    (void)ap_static_parse_date(in);
    (void)ap_static_etag_match(in, "\"1-2-3\"", 1);
    (void)ap_static_etag_match(in, "W/\"1-2-3\"", 0);
    int q = ap_gzip_accept_q(in, AP_STR("gzip"));
    if (q < 0 || q > 1000)
        abort();
    return 0;
}
