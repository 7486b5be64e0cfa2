/* SPDX-License-Identifier: BSD-2-Clause */
/* libFuzzer target: the read API's query-string grammar (api_query.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_query.h"

static void check_node(const ap_qnode_t *n, int depth)
{
    if (depth > AP_QUERY_MAX_DEPTH + 1)
        abort();
    if (n->kind == AP_QNODE_FILTER) {
        if (n->field.name == NULL || n->field.nkeys > AP_QUERY_MAX_DEPTH)
            abort();
        if (n->op != AP_QOP_IS && n->value == NULL)
            abort();
    } else if (n->nkids == 0 && depth > 0) {
        abort(); /* or=() is an error, not an empty tree */
    }
    for (size_t i = 0; i < n->nkids; i++)
        check_node(&n->kids[i], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ap_query_t q;
    int rc = ap_query_parse(&q, ap_str_make((const char *)data, size));
    if (rc == 0) {
        /* A parse either succeeds with no error or fails with a full one. */
        if (q.code != NULL || q.message != NULL)
            abort();
        check_node(&q.where, 0);
        if (q.limit < -1 || q.offset < 0)
            abort();
    } else {
        if (q.code == NULL || q.message == NULL || q.status < 400 || q.status > 499)
            abort();
        if (strlen(q.message) > 1024)
            abort(); /* messages quote the input, cut */
    }
    ap_query_free(&q);
    return 0;
}
