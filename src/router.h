/* SPDX-License-Identifier: BSD-2-Clause */
/* Dispatch of a complete request: built-in endpoints first, then (as later
 * issues add them) static files and the API. */
#ifndef AP_ROUTER_H
#define AP_ROUTER_H

#include "http.h"

/* Hands req to its handler, which answers it with ap_http_respond*(), now
 * or later. */
void ap_router_dispatch(ap_request_t *req);

#endif
