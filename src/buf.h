/* SPDX-License-Identifier: BSD-2-Clause */
/* Growable byte buffers. */
#ifndef AP_BUF_H
#define AP_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "str.h"

/* A heap buffer: data[0..len) is content, cap is the allocation. The struct
 * is caller-owned (_init/_cleanup); data is owned by the buffer. data is
 * always NUL-terminated when cap > 0, so it can be handed to libc. */
typedef struct ap_buf_s {
    char *data;
    size_t len;
    size_t cap;
} ap_buf_t;

void ap_buf_init(ap_buf_t *b);
void ap_buf_cleanup(ap_buf_t *b);

/* Makes room for at least n more bytes (plus the terminating NUL). Aborts on
 * size overflow or exhaustion: callers check client-controlled sizes against
 * configured limits before they get here. */
void ap_buf_reserve(ap_buf_t *b, size_t n);

void ap_buf_append(ap_buf_t *b, const void *p, size_t n);
void ap_buf_append_str(ap_buf_t *b, const char *s);
void ap_buf_append_char(ap_buf_t *b, char c);
void ap_buf_printf(ap_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ap_buf_vprintf(ap_buf_t *b, const char *fmt, va_list ap);

/* Appends the decimal form of v. */
void ap_buf_append_u64(ap_buf_t *b, unsigned long long v);

/* Drops the first n bytes, moving the rest to the front. */
void ap_buf_consume(ap_buf_t *b, size_t n);

static inline void ap_buf_reset(ap_buf_t *b)
{
    b->len = 0;
    if (b->cap)
        b->data[0] = '\0';
}

static inline ap_str_t ap_buf_str(const ap_buf_t *b)
{
    return ap_str_make(b->data, b->len);
}

#endif
