/* SPDX-License-Identifier: BSD-2-Clause */
/* Length-delimited string slices: the way request data travels inside apiary. */
#ifndef AP_STR_H
#define AP_STR_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const char *p;
    size_t len;
} ap_str_t;

#define AP_STR(lit) ((ap_str_t){(lit), sizeof(lit) - 1})

static inline ap_str_t ap_str_make(const char *p, size_t len)
{
    return (ap_str_t){p, len};
}

/* Byte-wise equality. */
static inline int ap_str_eq(ap_str_t a, ap_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* ASCII case-insensitive equality, for header names and tokens. */
static inline int ap_str_caseeq(ap_str_t a, ap_str_t b)
{
    return a.len == b.len && (a.len == 0 || strncasecmp(a.p, b.p, a.len) == 0);
}

#endif
