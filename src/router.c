/* SPDX-License-Identifier: BSD-2-Clause */
/* Request dispatch. Order: built-in endpoints (/live), then 404. */
#include "router.h"

#include <stdio.h>

#include "buf.h"
#include "json.h"

static void handle_live(ap_request_t *req)
{
    static const char body[] = "{\"status\":\"ok\"}";
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        ap_http_add_header(req, "Allow", "GET, HEAD");
        ap_http_respond_error(req, 405, "/live answers GET and HEAD");
        return;
    }
    ap_http_add_header(req, "Cache-Control", "no-store");
    ap_http_respond(req, 200, "application/json", body, sizeof(body) - 1);
}

void ap_router_dispatch(ap_request_t *req)
{
    if (ap_str_eq(req->path, AP_STR("/live"))) {
        handle_live(req);
        return;
    }
    ap_buf_t details;
    ap_buf_init(&details);
    /* The path is shown as sent (bounded by max_uri_size); the JSON writer
     * escapes it. */
    ap_buf_printf(&details, "no route for %.*s %.*s", (int)req->method_name.len,
                  req->method_name.p, (int)req->path.len, req->path.p);
    ap_http_respond_error(req, 404, details.data);
    ap_buf_cleanup(&details);
}
