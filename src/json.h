/* SPDX-License-Identifier: BSD-2-Clause */
/* Writing JSON text: string escaping and the error body every error response carries. */
#ifndef AP_JSON_H
#define AP_JSON_H

#include "buf.h"

/* Appends s as a JSON string literal, quotes included. Control characters
 * are escaped; bytes that are not valid UTF-8 become U+FFFD, so the output
 * is always valid JSON whatever a client sent. */
void ap_json_append_string(ap_buf_t *b, const char *s, size_t len);

/* Appends {"code":...,"message":...,"details":...,"hint":...}; a NULL
 * details or hint is written as null. */
void ap_json_append_error(ap_buf_t *b, const char *code, const char *message, const char *details,
                          const char *hint);

#endif
