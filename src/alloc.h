/* SPDX-License-Identifier: BSD-2-Clause */
/* Allocation that never returns NULL: out of memory aborts with a message. */
#ifndef AP_ALLOC_H
#define AP_ALLOC_H

#include <stddef.h>

/* Each aborts the process, after writing a message to stderr, when the
 * allocator fails. ap_xcalloc checks nmemb * size for overflow. */
void *ap_xmalloc(size_t size);
void *ap_xcalloc(size_t nmemb, size_t size);
void *ap_xrealloc(void *p, size_t size);
char *ap_xstrdup(const char *s);
char *ap_xstrndup(const char *s, size_t n);

#endif
