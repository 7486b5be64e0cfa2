/* SPDX-License-Identifier: BSD-2-Clause */
/* Who a request runs as: the Bearer JWT verified against [api]
 * jwt_secret_file, its role claim or [api] anon_role, and the per-request
 * transaction settings PostgREST defines (role, request.jwt.claims,
 * request.method, request.path, request.headers, request.cookies, the
 * pre_request call), plus the response.headers and response.status a
 * transaction may set. */
#ifndef AP_API_AUTH_H
#define AP_API_AUTH_H

#include <libpq-fe.h>

#include "db.h"
#include "http.h"
#include "pg_pool.h"

typedef struct {
    char *role;        /* the role to SET LOCAL ROLE to */
    char *claims;      /* JSON text of the claims object, "role" set to role */
    int authenticated; /* the role came from a valid JWT (42501 is then 403, else 401) */
} ap_auth_t;

/* Authenticates req: no Bearer token gives [api] anon_role; a token is
 * verified (signature, exp/nbf/iat with [api] jwt_leeway, [api] jwt_aud)
 * and its role taken from [api] jwt_role_claim, anon_role when it has
 * none. Returns 0 with *auth filled (release with ap_auth_cleanup), or -1
 * when an error response has been sent and req must not be touched again:
 * 500 PGRST300 (a token, but no jwt_secret_file), 401 PGRST301 (the token
 * cannot be decoded or verified), 401 PGRST303 (its claims fail), each with
 * WWW-Authenticate: Bearer error="invalid_token", error_description="...",
 * or 401 PGRST302 (no role and no anon_role) with WWW-Authenticate: Bearer. */
int ap_api_auth(ap_request_t *req, ap_db_t *db, ap_auth_t *auth);

void ap_auth_cleanup(ap_auth_t *auth);

/* Fills q's transaction settings from req and auth (copies; q owns them):
 * role, request.jwt.claims, request.method, request.path (as sent, prefix
 * included), request.headers (a JSON object of the lower-cased header
 * names, Cookie left out, the last of repeated headers winning),
 * request.cookies (a JSON object of the Cookie header's pairs); sets
 * with_settings and pre_request ([api] pre_request runs after the
 * settings, when configured, and response.headers and response.status
 * are then read back after the statement). A handler whose statement may
 * set those itself (a function call) sets q->with_response too; either
 * way it passes q to ap_api_response_settings. */
void ap_api_query_settings(ap_pg_query_t *q, ap_request_t *req, const ap_auth_t *auth);

/* Applies what the transaction set in response.headers (a JSON array of
 * one-key objects {"Name": "value"}) and response.status (a number) to
 * req's response, from q->response (NULL: nothing to apply). *status is
 * the status the handler meant to send and becomes the one set; a
 * Content-Type header goes into content_type (caller-owned, left empty
 * when none was set) for the handler to send instead of its own.
 * Framing headers (Content-Length, Transfer-Encoding, Connection,
 * Keep-Alive, Date, Server) are the server's and left out. Returns 0, or
 * -1 after answering 500 PGRST111 or PGRST112 (a value of the wrong
 * shape, or a header that would split the response). */
int ap_api_response_settings(ap_request_t *req, const ap_pg_query_t *q, int *status,
                             ap_buf_t *content_type);

#endif
