/* SPDX-License-Identifier: BSD-2-Clause */
/* CORS: an allowlist of origins ([security] cors_origins), the headers of
 * actual responses, and preflight requests answered before routing. */
#ifndef AP_CORS_H
#define AP_CORS_H

#include "buf.h"
#include "http.h"

struct ap_config_s;

/* The request headers a browser may send (answered to preflights). */
#define AP_CORS_ALLOW_HEADERS                                                                      \
    "Authorization, Content-Type, Accept, Accept-Language, Content-Language, Accept-Profile, "     \
    "Content-Profile, Prefer, Range, Range-Unit, X-Request-Id, X-Client-Info"
/* The response headers scripts may read, beyond the safelisted ones: what
 * PostgREST's clients read (Content-Range for counts, Location after an
 * insert, Preference-Applied, Content-Profile), and the rate-limit and
 * request-id headers. */
#define AP_CORS_EXPOSE_HEADERS                                                                     \
    "Content-Encoding, Content-Location, Content-Range, Content-Type, Content-Profile, Date, "     \
    "Location, Preference-Applied, Range-Unit, Retry-After, RateLimit-Limit, "                     \
    "RateLimit-Remaining, RateLimit-Reset, X-Request-Id"

/* NULL when origin is a serialised origin ("https://app.example.com",
 * "http://localhost:5173"), else why it is not. */
const char *ap_cors_origin_check(const char *origin);

/* Whether req is a CORS preflight: OPTIONS with Origin and
 * Access-Control-Request-Method. */
int ap_cors_is_preflight(const ap_request_t *req);

/* When CORS is on and req is a preflight, answers it (204; the
 * Access-Control-Allow-* headers only for an allowed origin) and returns
 * 1; else 0. */
int ap_cors_preflight(ap_request_t *req, const struct ap_config_s *conf);

/* Appends the CORS headers of a response to req to out: Vary: Origin
 * whenever the answer depends on the origin, and for an allowed origin
 * Access-Control-Allow-Origin, -Allow-Credentials and -Expose-Headers.
 * Nothing when CORS is off or out already allows an origin. */
void ap_cors_headers(ap_buf_t *out, const ap_request_t *req, const struct ap_config_s *conf);

#endif
