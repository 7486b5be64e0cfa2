/* SPDX-License-Identifier: BSD-2-Clause */
/* The request's role: the anonymous role (JWT verification comes with
 * [api] jwt_secret_file). */
#include "api_auth.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "api.h"
#include "json.h"

int ap_api_auth(ap_request_t *req, ap_db_t *db, ap_auth_t *auth)
{
    memset(auth, 0, sizeof(*auth));
    const ap_config_t *conf = db->conf;
    if (ap_http_header(req, AP_STR("authorization")) != NULL) {
        ap_api_error(req, 500, "PGRST300", "Server lacks JWT secret", NULL, NULL);
        return -1;
    }
    if (conf->api_anon_role == NULL) {
        ap_api_error(req, 401, "PGRST302", "Anonymous access is disabled", NULL, NULL);
        return -1;
    }
    auth->role = ap_xstrdup(conf->api_anon_role);
    ap_buf_t claims;
    ap_buf_init(&claims);
    ap_buf_append_str(&claims, "{\"role\":");
    ap_json_append_string(&claims, auth->role, strlen(auth->role));
    ap_buf_append_char(&claims, '}');
    auth->claims = claims.data;
    return 0;
}

void ap_auth_cleanup(ap_auth_t *auth)
{
    free(auth->role);
    free(auth->claims);
    memset(auth, 0, sizeof(*auth));
}

void ap_api_query_settings(ap_pg_query_t *q, ap_request_t *req, const ap_auth_t *auth)
{
    q->with_settings = 1;
    q->settings[AP_PG_SET_ROLE] = ap_xstrdup(auth->role);
    q->settings[AP_PG_SET_CLAIMS] = ap_xstrdup(auth->claims);
    q->settings[AP_PG_SET_METHOD] = ap_xstrndup(req->method_name.p, req->method_name.len);
    q->settings[AP_PG_SET_PATH] = ap_xstrndup(req->path.p, req->path.len);
}
