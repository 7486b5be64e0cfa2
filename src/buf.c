/* SPDX-License-Identifier: BSD-2-Clause */
/* Growable byte buffers. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void ap_buf_init(ap_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void ap_buf_cleanup(ap_buf_t *b)
{
    free(b->data);
    ap_buf_init(b);
}

void ap_buf_reserve(ap_buf_t *b, size_t n)
{
    size_t need = b->len + n;
    if (need < b->len || need + 1 < need) {
        fprintf(stderr, "apiary: buffer size overflow\n");
        abort();
    }
    need += 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > ((size_t)-1) / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    b->data = ap_xrealloc(b->data, cap);
    b->cap = cap;
}

void ap_buf_append(ap_buf_t *b, const void *p, size_t n)
{
    ap_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ap_buf_append_str(ap_buf_t *b, const char *s)
{
    ap_buf_append(b, s, strlen(s));
}

void ap_buf_append_char(ap_buf_t *b, char c)
{
    ap_buf_append(b, &c, 1);
}

void ap_buf_vprintf(ap_buf_t *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    ap_buf_reserve(b, 64);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, cp);
    va_end(cp);
    if (n < 0)
        return;
    if ((size_t)n >= b->cap - b->len) {
        ap_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    }
    b->len += (size_t)n;
}

void ap_buf_printf(ap_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ap_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void ap_buf_append_u64(ap_buf_t *b, unsigned long long v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ap_buf_append(b, tmp + i, sizeof(tmp) - i);
}

void ap_buf_consume(ap_buf_t *b, size_t n)
{
    if (n >= b->len) {
        ap_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}
