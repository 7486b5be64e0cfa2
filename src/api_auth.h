/* SPDX-License-Identifier: BSD-2-Clause */
/* The request's role and claims, and the transaction settings that carry
 * them to PostgreSQL. */
#ifndef AP_API_AUTH_H
#define AP_API_AUTH_H

#include "db.h"
#include "http.h"
#include "pg_pool.h"

typedef struct {
    char *role;
    char *claims; /* JSON text of the claims object */
    int authenticated;
} ap_auth_t;

/* 0 with auth filled; -1 when an error response was already sent. */
int ap_api_auth(ap_request_t *req, ap_db_t *db, ap_auth_t *auth);
void ap_auth_cleanup(ap_auth_t *auth);

/* Fills q's settings: role, request.jwt.claims, method, path. */
void ap_api_query_settings(ap_pg_query_t *q, ap_request_t *req, const ap_auth_t *auth);

#endif
