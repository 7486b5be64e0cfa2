/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: who a request runs as (no token, another scheme, a token
 * with a role, a nested role claim, a role that is a number) and the
 * request.headers and request.cookies settings built from its headers.
 * Refusals answer over HTTP and are tested by t/48-jwt.t. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "api_auth.h"
#include "clock.h"
#include "jwt.h"
#include "tap.h"

static const char secret[] = "unit-test-secret-0123456789abcdef-0123456789";

static char *token(const char *claims)
{
    ap_buf_t t;
    ap_buf_init(&t);
    const char *h = "{\"alg\":\"HS256\"}";
    ap_jwt_b64url_encode(&t, h, strlen(h));
    ap_buf_append_char(&t, '.');
    ap_jwt_b64url_encode(&t, claims, strlen(claims));
    unsigned char mac[32];
    size_t ml = 0;
    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, strlen(secret), (unsigned char *)t.data,
              t.len, mac, sizeof(mac), &ml);
    ap_buf_append_char(&t, '.');
    ap_jwt_b64url_encode(&t, mac, ml);
    return t.data;
}

static ap_config_t *config(const char *dir, const char *extra)
{
    char text[1024];
    snprintf(text, sizeof(text), "[api]\njwt_secret_file = %s/secret\n%s", dir, extra);
    ap_buf_t err;
    ap_buf_init(&err);
    ap_config_t *c = ap_config_parse("unit.conf", text, strlen(text), NULL, &err);
    if (c == NULL)
        printf("# %s\n", err.data);
    ap_buf_cleanup(&err);
    return c;
}

/* Authenticates a request with these headers (name, value pairs). */
static int auth_with(ap_config_t *conf, ap_auth_t *a, const char *const *hdrs, size_t n)
{
    ap_header_t h[8];
    ap_request_t req;
    memset(&req, 0, sizeof(req));
    for (size_t i = 0; i < n; i++) {
        h[i].name = ap_str_make(hdrs[2 * i], strlen(hdrs[2 * i]));
        h[i].value = ap_str_make(hdrs[2 * i + 1], strlen(hdrs[2 * i + 1]));
    }
    req.headers = h;
    req.nheaders = n;
    ap_db_t db;
    memset(&db, 0, sizeof(db));
    db.conf = conf;
    return ap_api_auth(&req, &db, a);
}

int main(void)
{
    char dir[] = "/tmp/apiary-auth-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256];
    snprintf(path, sizeof(path), "%s/secret", dir);
    FILE *f = fopen(path, "w");
    fputs(secret, f);
    fclose(f);
    chmod(path, 0600);
    ap_config_t *conf = config(dir, "");
    ok(conf != NULL, "configuration with a secret file");
    ap_config_t *nested = config(dir, "jwt_role_claim = .app.roles[1]\n");
    ok(nested != NULL, "configuration with a nested role claim");
    if (!conf || !nested)
        return done_testing();

    long long now = (long long)(ap_clock_wall_ms() / 1000);
    char claims[256];
    ap_auth_t a;

    ok(auth_with(conf, &a, NULL, 0) == 0, "no header: 0");
    is_str(a.role, "anon", "no header: anon");
    is_str(a.claims, "{\"role\":\"anon\"}", "no header: claims are the role");
    ok(!a.authenticated, "no header: not authenticated");
    ap_auth_cleanup(&a);

    const char *basic[] = {"Authorization", "Basic dXNlcjpwYXNz"};
    ok(auth_with(conf, &a, basic, 1) == 0 && strcmp(a.role, "anon") == 0, "Basic: anon");
    ap_auth_cleanup(&a);
    const char *bearerx[] = {"Authorization", "Bearerx abc"};
    ok(auth_with(conf, &a, bearerx, 1) == 0 && strcmp(a.role, "anon") == 0,
       "\"Bearerx\" is another scheme: anon");
    ap_auth_cleanup(&a);

    snprintf(claims, sizeof(claims), "{\"role\":\"webuser\",\"user_id\":7,\"exp\":%lld}", now + 60);
    char *tok = token(claims);
    char hv[1024];
    snprintf(hv, sizeof(hv), "bearer   %s  ", tok);
    const char *bearer[] = {"authorization", hv};
    ok(auth_with(conf, &a, bearer, 1) == 0, "a valid token: 0");
    is_str(a.role, "webuser", "the role claim");
    is_str(a.claims, claims, "claims passed as signed");
    ok(a.authenticated, "authenticated");
    ap_auth_cleanup(&a);
    free(tok);

    snprintf(claims, sizeof(claims), "{\"exp\":%lld,\"sub\":\"x\"}", now + 60);
    tok = token(claims);
    snprintf(hv, sizeof(hv), "Bearer %s", tok);
    ok(auth_with(conf, &a, bearer, 1) == 0, "no role claim: 0");
    is_str(a.role, "anon", "no role claim: anon");
    char want[256];
    snprintf(want, sizeof(want), "{\"role\":\"anon\",\"exp\":%lld,\"sub\":\"x\"}", now + 60);
    is_str(a.claims, want, "no role claim: claims with role anon");
    ok(!a.authenticated, "no role claim: not authenticated");
    ap_auth_cleanup(&a);
    free(tok);

    snprintf(claims, sizeof(claims), "{\"role\":5,\"exp\":%lld}", now + 60);
    tok = token(claims);
    snprintf(hv, sizeof(hv), "Bearer %s", tok);
    ok(auth_with(conf, &a, bearer, 1) == 0, "a numeric role: 0");
    is_str(a.role, "5", "a numeric role is its JSON text");
    snprintf(want, sizeof(want), "{\"role\":\"5\",\"exp\":%lld}", now + 60);
    is_str(a.claims, want, "and the claims' role is that string");
    ap_auth_cleanup(&a);
    free(tok);

    snprintf(claims, sizeof(claims),
             "{\"role\":\"anon\",\"app\":{\"roles\":[\"x\",\"webuser\"]},\"exp\":%lld}", now + 60);
    tok = token(claims);
    snprintf(hv, sizeof(hv), "Bearer %s", tok);
    ok(auth_with(nested, &a, bearer, 1) == 0, "nested role claim: 0");
    is_str(a.role, "webuser", "nested role claim: .app.roles[1]");
    snprintf(want, sizeof(want),
             "{\"role\":\"webuser\",\"app\":{\"roles\":[\"x\",\"webuser\"]},\"exp\":%lld}",
             now + 60);
    is_str(a.claims, want, "nested role claim: claims' role replaced");
    ap_auth_cleanup(&a);
    free(tok);

    /* The settings. */
    {
        ap_header_t h[6] = {
            {AP_STR("Host"), AP_STR("example.com")},
            {AP_STR("X-Thing"), AP_STR("one")},
            {AP_STR("Cookie"), AP_STR(" a=1;b = two ; bad; =x; c=3=4;")},
            {AP_STR("x-THING"), AP_STR("two \"quoted\"")},
            {AP_STR("cookie"), AP_STR("a=last")},
            {AP_STR("User-Agent"), AP_STR("t\x01")},
        };
        ap_request_t req;
        memset(&req, 0, sizeof(req));
        req.headers = h;
        req.nheaders = 6;
        req.method_name = AP_STR("GET");
        req.path = AP_STR("/rpc/x");
        ap_auth_t anon = {"anon", "{\"role\":\"anon\"}", 0};
        ap_pg_query_t *q = ap_pg_query_new(0);
        ap_api_query_settings(q, &req, &anon);
        is_str(q->settings[AP_PG_SET_HEADERS],
               "{\"host\":\"example.com\",\"x-thing\":\"two "
               "\\\"quoted\\\"\",\"user-agent\":\"t\\u0001\"}",
               "request.headers: lower-cased, the last of a repeated one, no cookie, escaped");
        is_str(q->settings[AP_PG_SET_COOKIES], "{\"b\":\"two\",\"c\":\"3=4\",\"a\":\"last\"}",
               "request.cookies: trimmed pairs, the last of a name, bad pairs skipped");
        is_str(q->settings[AP_PG_SET_ROLE], "anon", "role");
        is_str(q->settings[AP_PG_SET_METHOD], "GET", "request.method");
        is_str(q->settings[AP_PG_SET_PATH], "/rpc/x", "request.path");
        ok(q->with_settings && q->pre_request && !q->with_response, "flags set");
        for (int i = 0; i < AP_PG_NSETTINGS; i++)
            free(q->settings[i]);
        free(q->params);
        free(q);
    }

    ap_config_free(conf);
    ap_config_free(nested);
    unlink(path);
    rmdir(dir);
    return done_testing();
}
