/* SPDX-License-Identifier: BSD-2-Clause */
/* Cross-origin resource sharing (the Fetch standard's CORS protocol). */
#include "cors.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "security.h"

const char *ap_cors_origin_check(const char *o)
{
    const char *p = o;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return "expected scheme://host[:port], such as https://app.example.com";
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    if (strncmp(p, "://", 3) != 0)
        return "expected scheme://host[:port], such as https://app.example.com";
    p += 3;
    const char *host = p;
    if (*p == '[') {
        while (*p && *p != ']')
            p++;
        if (*p != ']')
            return "unterminated IPv6 address";
        p++;
    } else {
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
               *p == '-' || *p == '.')
            p++;
    }
    if (p == host)
        return "an origin needs a host";
    if (*p == ':') {
        p++;
        const char *port = p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == port || p - port > 5)
            return "invalid port";
    }
    if (*p == '/')
        return "an origin has no path (not even a trailing /)";
    if (*p != '\0')
        return "an origin is scheme://host[:port] and nothing else";
    return NULL;
}

static int enabled(const ap_config_t *conf)
{
    return conf->cors_origins.n > 0;
}

/* The Origin of req when the configuration allows it, else NULL. */
static const ap_str_t *allowed_origin(const ap_request_t *req, const ap_config_t *conf)
{
    const ap_str_t *o = ap_http_header(req, AP_STR("origin"));
    if (o == NULL || o->len == 0)
        return NULL;
    if (conf->cors_any)
        return o;
    for (size_t i = 0; i < conf->cors_origins.n; i++) {
        const char *want = conf->cors_origins.v[i];
        if (ap_str_caseeq(*o, ap_str_make(want, strlen(want))))
            return o;
    }
    return NULL;
}

int ap_cors_is_preflight(const ap_request_t *req)
{
    return req->method == HTTP_OPTIONS && ap_http_header(req, AP_STR("origin")) != NULL &&
           ap_http_header(req, AP_STR("access-control-request-method")) != NULL;
}

static void allow_origin(ap_buf_t *out, const ap_str_t *origin, const ap_config_t *conf)
{
    if (conf->cors_any)
        ap_buf_append_str(out, "Access-Control-Allow-Origin: *\r\n");
    else
        ap_buf_printf(out, "Access-Control-Allow-Origin: %.*s\r\n", (int)origin->len, origin->p);
    if (conf->cors_credentials)
        ap_buf_append_str(out, "Access-Control-Allow-Credentials: true\r\n");
}

int ap_cors_preflight(ap_request_t *req, const ap_config_t *conf)
{
    if (!enabled(conf) || !ap_cors_is_preflight(req))
        return 0;
    const ap_str_t *origin = allowed_origin(req, conf);
    if (origin) {
        /* ap_cors_headers adds Allow-Origin and Vary to every response. */
        ap_buf_printf(&req->resp_headers,
                      "Access-Control-Allow-Methods: %s\r\n"
                      "Access-Control-Allow-Headers: %s\r\n"
                      "Access-Control-Max-Age: %llu\r\n",
                      conf->cors_allow_methods, conf->cors_allow_headers,
                      (unsigned long long)(conf->cors_max_age_ms / 1000));
    }
    ap_http_add_header(req, "Cache-Control", "no-store");
    ap_http_respond(req, 204, NULL, NULL, 0);
    return 1;
}

void ap_cors_headers(ap_buf_t *out, const ap_request_t *req, const ap_config_t *conf)
{
    if (!enabled(conf) || ap_security_has_header(out, "Access-Control-Allow-Origin"))
        return;
    /* With a list, the answer depends on the Origin: caches must know,
     * whether or not this request had one. "*" is the same for all. */
    if (!conf->cors_any)
        ap_buf_append_str(out, "Vary: Origin\r\n");
    const ap_str_t *origin = allowed_origin(req, conf);
    if (origin == NULL)
        return;
    allow_origin(out, origin, conf);
    if (conf->cors_expose_headers && !ap_cors_is_preflight(req))
        ap_buf_printf(out, "Access-Control-Expose-Headers: %s\r\n", conf->cors_expose_headers);
}
