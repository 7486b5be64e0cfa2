/* SPDX-License-Identifier: BSD-2-Clause */
/* libFuzzer target: the configuration parser and validator. */
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ap_buf_t err;
    ap_buf_init(&err);
    ap_config_t *c = ap_config_parse("fuzz.conf", (const char *)data, size, NULL, &err);
    /* Either a snapshot or at least one located error, never both. */
    if ((c == NULL) == (err.len == 0))
        abort();
    ap_config_free(c);
    ap_buf_cleanup(&err);
    return 0;
}
