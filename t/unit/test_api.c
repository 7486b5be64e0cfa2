/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: SQLSTATE to HTTP status, URL decoding, identifier quoting,
 * the schema cache built from the catalog query's JSON. */
#include <stdlib.h>

#include "api.h"
#include "api_rpc.h"
#include "schema.h"
#include "tap.h"

int main(void)
{
    is_int(ap_api_status_for_sqlstate("23505", 0), 409, "unique violation: 409");
    is_int(ap_api_status_for_sqlstate("23503", 0), 409, "foreign key violation: 409");
    is_int(ap_api_status_for_sqlstate("P0001", 0), 400, "raise: 400");
    is_int(ap_api_status_for_sqlstate("P0002", 0), 500, "other PL/pgSQL errors: 500");
    is_int(ap_api_status_for_sqlstate("42501", 0), 401, "insufficient privilege, anonymous: 401");
    is_int(ap_api_status_for_sqlstate("42501", 1), 403, "insufficient privilege, with a JWT: 403");
    is_int(ap_api_status_for_sqlstate("57014", 0), 504, "statement cancelled: 504");
    is_int(ap_api_status_for_sqlstate("57P01", 0), 500, "admin shutdown: 500");
    is_int(ap_api_status_for_sqlstate("08006", 0), 503, "connection failure: 503");
    is_int(ap_api_status_for_sqlstate("25006", 0), 405, "read-only transaction: 405");
    is_int(ap_api_status_for_sqlstate("42883", 0), 404, "undefined function: 404");
    is_int(ap_api_status_for_sqlstate("42P01", 0), 404, "undefined table: 404");
    is_int(ap_api_status_for_sqlstate("22P02", 0), 400, "anything else: 400");
    is_int(ap_api_status_for_sqlstate(NULL, 0), 500, "no SQLSTATE: 500");
    is_int(ap_api_status_for_sqlstate("PT402", 0), 402, "PT402: 402");
    is_int(ap_api_status_for_sqlstate("PT299", 1), 299, "PT299: 299");
    is_int(ap_api_status_for_sqlstate("PT100", 0), 500, "PT100: not a final status, 500");
    is_int(ap_api_status_for_sqlstate("PTxyz", 0), 500, "PTxyz: 500");

    ap_buf_t b;
    ap_buf_init(&b);
    ok(ap_api_url_decode(&b, AP_STR("a%20b+c%2B"), 1) == 0 && strcmp(b.data, "a b c+") == 0,
       "percent and plus decoding");
    ap_buf_reset(&b);
    ok(ap_api_url_decode(&b, AP_STR("a+b"), 0) == 0 && strcmp(b.data, "a+b") == 0,
       "plus kept in paths");
    ap_buf_reset(&b);
    ok(ap_api_url_decode(&b, AP_STR("%zz"), 1) < 0, "bad escape rejected");
    ap_buf_reset(&b);
    ok(ap_api_url_decode(&b, AP_STR("ab%2"), 1) < 0, "truncated escape rejected");
    ap_buf_reset(&b);
    ok(ap_api_url_decode(&b, AP_STR("a%00"), 1) < 0, "NUL rejected");
    ap_buf_reset(&b);
    ap_api_quote_ident(&b, "we\"ird");
    is_str(b.data, "\"we\"\"ird\"", "identifier quoting doubles quotes");

    const char *why = NULL;
    ap_schema_t *s = ap_schema_from_json(
        "{\"functions\":[{\"schema\":\"api\",\"name\":\"add\",\"ndefaults\":1,\"retset\":false,"
        "\"volatility\":\"i\",\"rettype\":\"integer\",\"kind\":\"s\",\"args\":[{\"name\":\"a\","
        "\"type\":\"integer\"},{\"name\":\"b\",\"type\":\"integer\"}]}],\"tables\":[{\"schema\":"
        "\"api\",\"name\":\"t\",\"view\":false,\"columns\":[{\"name\":\"id\",\"type\":\"bigint\","
        "\"nullable\":false,\"default\":true}],\"pk\":[\"id\"]}]}",
        &why);
    ok(s != NULL, "schema cache from JSON");
    if (s) {
        size_t n;
        const ap_schema_func_t **f = ap_schema_funcs(s, "api", AP_STR("add"), &n);
        ok(n == 1 && f[0]->nargs == 2 && f[0]->ndefaults == 1 && f[0]->volatility == 'i',
           "function with its parameters");
        free(f);
        f = ap_schema_funcs(s, "public", AP_STR("add"), &n);
        ok(n == 0, "other schemas are not searched");
        free(f);
        const ap_schema_table_t *t = ap_schema_table(s, "api", AP_STR("t"));
        ok(t && t->ncolumns == 1 && t->npk == 1 && strcmp(t->pk[0], "id") == 0, "table with pk");
        ap_schema_free(s);
    }
    ok(ap_schema_from_json("{\"functions\":[{}],\"tables\":[]}", &why) == NULL && why,
       "malformed entries rejected");
    ok(ap_schema_from_json("[1,2", &why) == NULL, "invalid JSON rejected");
    ap_buf_cleanup(&b);
    return done_testing();
}
