/* SPDX-License-Identifier: BSD-2-Clause */
/* The PostgREST-compatible API: routing under [api] prefix, the request's
 * role, and errors in PostgREST's shape and status codes. */
#ifndef AP_API_H
#define AP_API_H

#include <libpq-fe.h>

#include "db.h"
#include "http.h"

/* If path is under the API prefix, sets *rest to the part after it
 * (starting with '/') and returns 1. */
int ap_api_match(const ap_config_t *conf, ap_str_t path, ap_str_t *rest);

/* Answers a request for the API; rest as ap_api_match gave it. */
void ap_api_dispatch(ap_request_t *req, ap_db_t *db, ap_str_t rest);

/* Sends {"code","message","details","hint"} with status. */
void ap_api_error(ap_request_t *req, int status, const char *code, const char *message,
                  const char *details, const char *hint);

/* Sends the error in a failed statement's result, with PostgREST's mapping
 * of SQLSTATE to HTTP status. authenticated: the request carried a JWT
 * (42501 is then 403, else 401). */
void ap_api_pg_error(ap_request_t *req, const PGresult *res, int authenticated);

/* The HTTP status PostgREST gives a SQLSTATE. */
int ap_api_status_for_sqlstate(const char *sqlstate, int authenticated);

/* Answers a pool failure (no connection, pool timeout, deadline...). */
void ap_api_pool_error(ap_request_t *req, ap_pg_status_t st);

/* Appends the identifier quoted for SQL ("a""b"). Names come from the
 * schema cache only. */
void ap_api_quote_ident(ap_buf_t *b, const char *name);

#endif
