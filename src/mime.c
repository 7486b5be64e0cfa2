/* SPDX-License-Identifier: BSD-2-Clause */
/* Media types by file name extension. */
#include "mime.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

/* Extensions longer than this are not looked up (no type has one). */
#define AP_MIME_EXT_MAX 24

typedef struct {
    char ext[AP_MIME_EXT_MAX + 1]; /* lower case; "" marks a free slot */
    const char *type;              /* into the type pool */
} slot_t;

struct ap_mime_s {
    slot_t *slots;
    size_t cap; /* power of two */
    size_t n;
    char **types; /* every distinct Content-Type value, owned */
    size_t ntypes, types_cap;
    char *default_type;
};

/* What a browser needs right when mime.types is missing or old. */
static const char *const builtin[][2] = {
    {"html", "text/html"},        {"htm", "text/html"},
    {"css", "text/css"},          {"js", "text/javascript"},
    {"mjs", "text/javascript"},   {"json", "application/json"},
    {"map", "application/json"},  {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain"},        {"md", "text/markdown"},
    {"csv", "text/csv"},          {"xml", "application/xml"},
    {"svg", "image/svg+xml"},     {"png", "image/png"},
    {"jpg", "image/jpeg"},        {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},         {"webp", "image/webp"},
    {"avif", "image/avif"},       {"ico", "image/vnd.microsoft.icon"},
    {"woff", "font/woff"},        {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},          {"otf", "font/otf"},
    {"wasm", "application/wasm"}, {"pdf", "application/pdf"},
    {"mp4", "video/mp4"},         {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},        {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},         {"zip", "application/zip"},
    {"gz", "application/gzip"},   {"br", "application/x-brotli"},
    {"tar", "application/x-tar"}, {"txt", "text/plain"},
};

static uint32_t hash_ext(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int ap_mime_is_text(const char *type, size_t len)
{
    static const char *const text[] = {
        "application/javascript",    "application/json",    "application/xml",
        "application/xhtml+xml",     "application/rss+xml", "application/atom+xml",
        "application/manifest+json", "image/svg+xml",
    };
    const char *semi = memchr(type, ';', len);
    if (semi)
        len = (size_t)(semi - type);
    while (len && (type[len - 1] == ' ' || type[len - 1] == '\t'))
        len--;
    if (len > 5 && strncasecmp(type, "text/", 5) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
        if (strlen(text[i]) == len && strncasecmp(type, text[i], len) == 0)
            return 1;
    return 0;
}

/* The pooled Content-Type value for a media type, charset added for text. */
static const char *intern(ap_mime_t *m, const char *type, size_t len)
{
    char v[256];
    int n = snprintf(v, sizeof(v), "%.*s%s", (int)len, type,
                     ap_mime_is_text(type, len) ? "; charset=utf-8" : "");
    if (n < 0 || (size_t)n >= sizeof(v))
        return NULL;
    for (size_t i = 0; i < m->ntypes; i++)
        if (strcmp(m->types[i], v) == 0)
            return m->types[i];
    if (m->ntypes == m->types_cap) {
        m->types_cap = m->types_cap ? m->types_cap * 2 : 64;
        m->types = ap_xrealloc(m->types, m->types_cap * sizeof(*m->types));
    }
    m->types[m->ntypes] = ap_xstrdup(v);
    return m->types[m->ntypes++];
}

static slot_t *find(const ap_mime_t *m, const char *ext, size_t n)
{
    size_t mask = m->cap - 1;
    for (size_t i = hash_ext(ext, n) & mask;; i = (i + 1) & mask) {
        slot_t *s = &m->slots[i];
        if (s->ext[0] == '\0' || (strlen(s->ext) == n && memcmp(s->ext, ext, n) == 0))
            return s;
    }
}

static void grow(ap_mime_t *m)
{
    slot_t *old = m->slots;
    size_t ocap = m->cap;
    m->cap = ocap ? ocap * 2 : 1024;
    m->slots = ap_xcalloc(m->cap, sizeof(*m->slots));
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].ext[0])
            *find(m, old[i].ext, strlen(old[i].ext)) = old[i];
    }
    free(old);
}

/* The first mapping of an extension wins. */
static void add(ap_mime_t *m, const char *ext, size_t n, const char *type, size_t tlen)
{
    char low[AP_MIME_EXT_MAX + 1];
    if (n == 0 || n > AP_MIME_EXT_MAX)
        return;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)ext[i]);
    if ((m->n + 1) * 2 > m->cap)
        grow(m);
    slot_t *s = find(m, low, n);
    if (s->ext[0])
        return;
    const char *t = intern(m, type, tlen);
    if (t == NULL)
        return;
    memcpy(s->ext, low, n);
    s->ext[n] = '\0';
    s->type = t;
    m->n++;
}

static void load_file(ap_mime_t *m, const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        ap_log_errno(AP_LOG_WARN, errno, "cannot read %s: using the built-in media types", path);
        return;
    }
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\0')
            continue;
        const char *type = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        size_t tlen = (size_t)(p - type);
        /* type/subtype of printable characters only: it becomes a header. */
        int ok = memchr(type, '/', tlen) != NULL;
        for (size_t i = 0; i < tlen; i++)
            if ((unsigned char)type[i] <= 0x20 || type[i] == 0x7f)
                ok = 0;
        if (!ok)
            continue;
        for (;;) {
            while (*p && isspace((unsigned char)*p))
                p++;
            if (*p == '\0' || *p == '#')
                break;
            const char *ext = p;
            while (*p && !isspace((unsigned char)*p))
                p++;
            add(m, ext, (size_t)(p - ext), type, tlen);
        }
    }
    fclose(f);
}

ap_mime_t *ap_mime_new(const char *path, const char *default_type)
{
    ap_mime_t *m = ap_xcalloc(1, sizeof(*m));
    grow(m);
    if (path)
        load_file(m, path);
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
        add(m, builtin[i][0], strlen(builtin[i][0]), builtin[i][1], strlen(builtin[i][1]));
    const char *d = intern(m, default_type, strlen(default_type));
    m->default_type = ap_xstrdup(d ? d : "application/octet-stream");
    return m;
}

void ap_mime_free(ap_mime_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->ntypes; i++)
        free(m->types[i]);
    free(m->types);
    free(m->slots);
    free(m->default_type);
    free(m);
}

const char *ap_mime_type(const ap_mime_t *m, const char *name, size_t len)
{
    size_t i = len;
    while (i > 0 && name[i - 1] != '.' && name[i - 1] != '/')
        i--;
    /* No dot, or a dot that starts the name: no extension. */
    if (i == 0 || name[i - 1] != '.' || i == 1 || name[i - 2] == '/')
        return m->default_type;
    size_t n = len - i;
    if (n == 0 || n > AP_MIME_EXT_MAX)
        return m->default_type;
    char low[AP_MIME_EXT_MAX + 1];
    for (size_t k = 0; k < n; k++)
        low[k] = (char)tolower((unsigned char)name[i + k]);
    const slot_t *s = find(m, low, n);
    return s->ext[0] ? s->type : m->default_type;
}

size_t ap_mime_count(const ap_mime_t *m)
{
    return m->n;
}
