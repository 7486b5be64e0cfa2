/* SPDX-License-Identifier: BSD-2-Clause */
/* GET and HEAD of a table or view, with PostgREST's URL grammar, ranges,
 * counts and representations (JSON array, single object, CSV). */
#ifndef AP_API_READ_H
#define AP_API_READ_H

#include "db.h"
#include "http.h"

/* Answers req for the table or view name (as it appears in the URL). */
void ap_api_read(ap_request_t *req, ap_db_t *db, ap_str_t name);

#endif
