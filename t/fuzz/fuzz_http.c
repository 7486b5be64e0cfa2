/* SPDX-License-Identifier: BSD-2-Clause */
/* libFuzzer target: the HTTP parser glue. The first byte chooses how the
 * input is cut into reads; every request found is checked and the parser
 * moves on to the next, as a keep-alive connection does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"

static ap_config_t *conf;

static void init(void)
{
    static const char text[] = "[server]\nmax_uri_size = 512\nmax_header_size = 2k\n"
                               "max_headers = 20\nmax_body_size = 4k\n";
    ap_buf_t err;
    ap_buf_init(&err);
    conf = ap_config_parse("fuzz.conf", text, sizeof(text) - 1, NULL, &err);
    ap_buf_cleanup(&err);
    if (conf == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (conf == NULL)
        init();
    if (size < 1)
        return 0;
    size_t chunk = data[0] % 16 + 1;
    data++;
    size--;

    ap_http_parser_t hp;
    ap_http_parser_init(&hp, conf);
    size_t off = 0, end = 0;
    while (off < size) {
        if (end <= off)
            end = off + chunk < size ? off + chunk : size;
        size_t used = 0;
        ap_http_event_t ev = ap_http_parse(&hp, (const char *)data + off, end - off, &used);
        if (used > end - off)
            abort();
        off += used;
        if (ev == AP_HTTP_ERROR) {
            if (hp.error_status < 400 || hp.error_status > 599)
                abort();
            break;
        }
        if (ev == AP_HTTP_MESSAGE) {
            const ap_request_t *r = &hp.req;
            /* Slices stay inside what the parser holds. */
            if (r->path.len > r->target.len + 1 || r->body.len > conf->max_body_size)
                abort();
            for (size_t i = 0; i < r->nheaders; i++)
                if (r->headers[i].name.len == 0)
                    abort();
            ap_http_parser_next(&hp);
        }
    }
    ap_http_parser_cleanup(&hp);
    return 0;
}
