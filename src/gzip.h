/* SPDX-License-Identifier: BSD-2-Clause */
/* Content codings: Accept-Encoding negotiation with q-values, and
 * on-the-fly gzip (zlib) of response bodies ([gzip] in apiary.conf) for
 * the API's JSON and for static files without a precompressed sibling. */
#ifndef AP_GZIP_H
#define AP_GZIP_H

#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "http.h"
#include "str.h"

/* The q-value, in thousandths (0..1000), that an Accept-Encoding value
 * gives a content coding: its own entry (x-gzip counts as gzip), else the
 * one of "*", else 0. A malformed q-value counts as 0. */
int ap_gzip_accept_q(ap_str_t accept_encoding, ap_str_t coding);

/* Whether a media type (parameters ignored) matches one of the globs of
 * [gzip] types. */
int ap_gzip_type_ok(const ap_config_t *conf, const char *content_type);

typedef enum {
    AP_GZIP_NO = 0, /* not a candidate: gzip off, status, type or size */
    AP_GZIP_VARY,   /* a candidate, but this client does not take gzip */
    AP_GZIP_YES,    /* compress it */
} ap_gzip_verdict_t;

/* Decides for a response of len bytes with this status and type: gzip
 * enabled, a status with a body that is not partial (not 1xx, 204, 206,
 * 304), a type of [gzip] types, at least min_length bytes, and gzip
 * accepted by the request. */
ap_gzip_verdict_t ap_gzip_decide(const ap_request_t *req, int status, const char *content_type,
                                 size_t len);

/* Compresses in[0..len) into out as a gzip member at the given level
 * (1..9), replacing out's content. Returns 0, or -1 (out is then empty). */
int ap_gzip_compress(ap_buf_t *out, const void *in, size_t len, int level);

/* The hook of ap_http_respond(): when ap_gzip_decide() says YES,
 * compresses body into out, adds "Content-Encoding: gzip" and "Vary:
 * Accept-Encoding" to the response, and returns 1; on VARY adds only the
 * Vary header; otherwise (and when compression fails) returns 0. */
int ap_gzip_response(ap_request_t *req, int status, const char *content_type, const void *body,
                     size_t len, ap_buf_t *out);

/* Adds "Vary: Accept-Encoding" unless the response already has a Vary. */
void ap_gzip_add_vary(ap_request_t *req);

/* Frees the compressor a process keeps between responses. */
void ap_gzip_cleanup(void);

#endif
