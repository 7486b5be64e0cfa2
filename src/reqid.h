/* SPDX-License-Identifier: BSD-2-Clause */
/* Request ids and trace context: X-Request-Id accepted when it is safe to
 * echo and log, otherwise generated from a per-process CSPRNG (ChaCha20
 * keyed from getrandom(2)); W3C traceparent validation. */
#ifndef AP_REQID_H
#define AP_REQID_H

#include <stddef.h>
#include <stdint.h>

#include "str.h"

/* The longest X-Request-Id accepted from a client. */
#define AP_REQID_MAX 128
/* A generated id: 128 random bits as 32 lowercase hex digits. */
#define AP_REQID_GEN_LEN 32

/* Keys the generator from getrandom(2). Every process that generates ids
 * calls it once after fork (a worker at start), so that no two processes
 * share a key stream. Returns 0 or -errno (the generator then falls back
 * to getrandom per id, still unpredictable, only slower). */
int ap_reqid_seed(void);

/* Fills out with n unpredictable bytes from the generator (seeding it on
 * first use). */
void ap_reqid_random(void *out, size_t n);

/* Writes a fresh id (AP_REQID_GEN_LEN hex digits and a NUL) into out. */
void ap_reqid_generate(char out[AP_REQID_GEN_LEN + 1]);

/* Whether a client's X-Request-Id may be used as is: 1 to AP_REQID_MAX
 * characters from [A-Za-z0-9._:-], nothing a header, a JSON string or a
 * combined log line would need to escape. */
int ap_reqid_valid(ap_str_t v);

/* Whether v is a W3C Trace Context traceparent that we pass on:
 * version-trace_id-parent_id-flags in lowercase hex (2-32-16-2 digits),
 * version not ff, ids not all zeros; version 00 is exactly 55 characters,
 * a later version may carry more after a '-' (the spec's rule for
 * versions it does not know). */
int ap_reqid_traceparent_valid(ap_str_t v);

#endif
