/* SPDX-License-Identifier: BSD-2-Clause */
/* Static files ([static] in apiary.conf): URL prefixes mapped to
 * directories, path normalisation and its refusals, index files and the
 * SPA fallback, media types, validators and conditional requests, single
 * byte ranges, precompressed siblings, Cache-Control rules, and an open
 * file cache; the bytes go out through ap_http_respond_file() (sendfile). */
#ifndef AP_STATIC_H
#define AP_STATIC_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "str.h"

typedef struct ap_static_s ap_static_t;

/* Per-worker state: the media type table (mime_types read now) and the
 * open file cache. NULL when the configuration maps no root. */
ap_static_t *ap_static_new(const ap_config_t *conf);

/* Closes every cached descriptor; responses still sending keep theirs
 * until they finish. */
void ap_static_free(ap_static_t *s);

/* The root whose prefix covers path, on segment boundaries ("/assets"
 * covers "/assets" and "/assets/x", not "/assetsx"), the longest when
 * several do; *len gets the prefix's length ("/" counts 0). -1 if none. */
int ap_static_match(const ap_config_t *conf, ap_str_t path, size_t *len);

/* Answers req from root number `root` (as ap_static_match() gave it). */
void ap_static_handle(ap_static_t *s, ap_request_t *req, int root);

/* --- Exposed for the unit tests. --- */

/* Normalises the part of a URL path after the prefix: percent-escapes
 * decoded once, "." and ".." resolved, empty segments dropped; out gets
 * the relative file name ("a/b.txt", "" for the root). Returns 0; 400 for
 * a malformed escape, an encoded "/", a backslash, NUL or another control
 * character, or ".." above the root; 404 for a segment starting with "."
 * (but ".well-known"). *dir is set when the path names a directory (it
 * ends with "/", ".", or ".."). */
int ap_static_normalise(ap_str_t in, ap_buf_t *out, int *dir);

typedef enum {
    AP_RANGE_NONE = 0, /* no usable Range: send the whole file */
    AP_RANGE_ONE,      /* one satisfiable range: *first .. *last */
    AP_RANGE_UNSATISFIABLE,
} ap_range_t;

/* Reads a Range header value against a file of size bytes. Malformed
 * values, other units and multiple ranges give AP_RANGE_NONE (RFC 9110
 * lets a server ignore them). */
ap_range_t ap_static_parse_range(ap_str_t v, uint64_t size, uint64_t *first, uint64_t *last);

/* An HTTP date (IMF-fixdate, RFC 850 or asctime form) in epoch seconds,
 * or -1. */
int64_t ap_static_parse_date(ap_str_t v);

/* Whether an If-Match / If-None-Match list holds etag ("\"...\"" or
 * "W/\"...\""): "*" matches anything; strong compares weak tags as
 * different. */
int ap_static_etag_match(ap_str_t list, const char *etag, int strong);

#endif
