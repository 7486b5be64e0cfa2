/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: buffers and JSON writing. */
#include <stdlib.h>

#include "buf.h"
#include "json.h"
#include "tap.h"

int main(void)
{
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_append_str(&b, "hello");
    ap_buf_append_char(&b, ' ');
    ap_buf_printf(&b, "%d-%s", 42, "x");
    is_str(b.data, "hello 42-x", "append and printf");
    ap_buf_consume(&b, 6);
    is_str(b.data, "42-x", "consume drops the front");
    ap_buf_reset(&b);
    ap_buf_append_u64(&b, 0);
    ap_buf_append_char(&b, ',');
    ap_buf_append_u64(&b, 18446744073709551615ULL);
    is_str(b.data, "0,18446744073709551615", "append_u64 bounds");

    /* A long printf goes through the second vsnprintf. */
    ap_buf_reset(&b);
    char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ap_buf_printf(&b, "<%s>", big);
    is_int(b.len, sizeof(big) + 1, "printf grows the buffer");

    ap_buf_reset(&b);
    ap_json_append_string(&b, "a\"b\\c\n\x01", 7);
    is_str(b.data, "\"a\\\"b\\\\c\\n\\u0001\"", "JSON escapes quotes, backslashes, controls");
    ap_buf_reset(&b);
    ap_json_append_string(&b, "caf\xc3\xa9 \xff \xed\xa0\x80", 11);
    is_str(b.data, "\"caf\xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
           "valid UTF-8 kept, invalid bytes and surrogates replaced");
    ap_buf_reset(&b);
    ap_json_append_error(&b, "AP404", "Not Found", NULL, "try /live");
    is_str(b.data, "{\"code\":\"AP404\",\"message\":\"Not Found\",\"details\":null,\"hint\":\"try /live\"}",
           "error body shape");
    ap_buf_cleanup(&b);
    return done_testing();
}
