/* SPDX-License-Identifier: BSD-2-Clause */
/* Writing JSON text. */
#include "json.h"

#include <stdint.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void ap_json_append_string(ap_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    ap_buf_reserve(b, len + 2);
    ap_buf_append_char(b, '"');
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        /* Copy plain ASCII runs in one go. */
        while (run < len && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            ap_buf_append(b, p + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = p[i];
        switch (c) {
        case '"':
            ap_buf_append(b, "\\\"", 2);
            i++;
            continue;
        case '\\':
            ap_buf_append(b, "\\\\", 2);
            i++;
            continue;
        case '\n':
            ap_buf_append(b, "\\n", 2);
            i++;
            continue;
        case '\r':
            ap_buf_append(b, "\\r", 2);
            i++;
            continue;
        case '\t':
            ap_buf_append(b, "\\t", 2);
            i++;
            continue;
        default:
            break;
        }
        if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ap_buf_append(b, esc, 6);
            i++;
            continue;
        }
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            ap_buf_append(b, "\xef\xbf\xbd", 3);
            i++;
        } else {
            ap_buf_append(b, p + i, n);
            i += n;
        }
    }
    ap_buf_append_char(b, '"');
}

static void append_nullable(ap_buf_t *b, const char *s)
{
    if (s)
        ap_json_append_string(b, s, strlen(s));
    else
        ap_buf_append(b, "null", 4);
}

void ap_json_append_error(ap_buf_t *b, const char *code, const char *message, const char *details,
                          const char *hint)
{
    ap_buf_append_str(b, "{\"code\":");
    append_nullable(b, code);
    ap_buf_append_str(b, ",\"message\":");
    append_nullable(b, message);
    ap_buf_append_str(b, ",\"details\":");
    append_nullable(b, details);
    ap_buf_append_str(b, ",\"hint\":");
    append_nullable(b, hint);
    ap_buf_append_char(b, '}');
}
