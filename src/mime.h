/* SPDX-License-Identifier: BSD-2-Clause */
/* Media types of static files by file name extension: the system's
 * mime.types (Debian's media-types package), read once per worker, with a
 * built-in table of the web's common types for what it lacks. */
#ifndef AP_MIME_H
#define AP_MIME_H

#include <stddef.h>

typedef struct ap_mime_s ap_mime_t;

/* Builds the table: path (NULL for none) is read in mime.types(5) format
 * ("type ext ext ..."); a file that cannot be read is logged and the
 * built-in table used alone. default_type answers unknown extensions.
 * Never NULL. */
ap_mime_t *ap_mime_new(const char *path, const char *default_type);
void ap_mime_free(ap_mime_t *m);

/* The Content-Type value for a file name (only its last extension
 * counts, case-insensitively), "; charset=utf-8" added for text. The
 * string belongs to m. */
const char *ap_mime_type(const ap_mime_t *m, const char *name, size_t len);

/* Whether a media type (parameters ignored) is text that gets
 * "; charset=utf-8": text/ types, JavaScript, JSON, XML and SVG. */
int ap_mime_is_text(const char *type, size_t len);

/* Number of extensions known (for the log and the tests). */
size_t ap_mime_count(const ap_mime_t *m);

#endif
