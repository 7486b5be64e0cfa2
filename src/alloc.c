/* SPDX-License-Identifier: BSD-2-Clause */
/* Allocation wrappers that abort on exhaustion, as Kore and h2o do. */
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void oom(size_t size)
{
    char msg[96];
    int n = snprintf(msg, sizeof(msg), "apiary: out of memory allocating %zu bytes\n", size);
    /* stdio may itself need memory: write(2) does not. */
    if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0) {
        /* Nothing more can be done. */
    }
    abort();
}

void *ap_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *ap_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL)
        oom(nmemb * size);
    return p;
}

void *ap_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
        oom(size);
    return q;
}

char *ap_xstrdup(const char *s)
{
    return ap_xstrndup(s, strlen(s));
}

char *ap_xstrndup(const char *s, size_t n)
{
    char *p = ap_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
