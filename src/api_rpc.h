/* SPDX-License-Identifier: BSD-2-Clause */
/* RPC as PostgREST does it: POST /rpc/fn with a JSON object of named
 * arguments (or the whole body for one unnamed json/jsonb parameter),
 * GET /rpc/fn?arg=value, results rendered as JSON by PostgreSQL. */
#ifndef AP_API_RPC_H
#define AP_API_RPC_H

#include "db.h"
#include "http.h"

/* Calls function name (as it appears in the URL) for req. */
void ap_api_rpc(ap_request_t *req, ap_db_t *db, ap_str_t name);

/* Decodes %XX escapes (and '+' as a space when plus is set) of s into
 * out; returns -1 on a malformed escape or a NUL byte. */
int ap_api_url_decode(ap_buf_t *out, ap_str_t s, int plus);

#endif
