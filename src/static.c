/* SPDX-License-Identifier: BSD-2-Clause */
/* Static files. */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "conn.h"
#include "gzip.h"
#include "log.h"
#include "mime.h"
#include "worker.h"

/* Files above this size are not gzipped on the fly: compressing them (some
 * milliseconds) would hold up the worker's loop. Precompress them instead. */
#define AP_GZIP_STATIC_MAX (1024 * 1024)
/* How often a root directory's real path is looked up again (it may be a
 * symbolic link that a deployment switches). */
#define AP_ROOT_RECHECK_MS 1000

/* One open file (or, for precompressed siblings, the knowledge that there
 * is none) in the open file cache. A response holds a reference for as
 * long as it sends from fd; an entry that leaves the cache meanwhile is
 * closed when the last reference goes. */
typedef struct fc_entry_s {
    struct fc_entry_s *hnext;       /* hash chain */
    struct fc_entry_s *prev, *next; /* LRU list, most recent first */
    char *path;
    size_t pathlen;
    uint32_t hash;
    int root;
    int fd; /* -1: a negative entry (the file does not exist) */
    struct stat st;
    uint64_t checked_ms; /* when the path was last seen to name this file */
    unsigned refs;
    unsigned in_cache : 1;
    unsigned meta_done : 1;    /* content_type and cache_control are set */
    unsigned compressible : 1; /* content_type is one of [gzip] types */
    const char *content_type;  /* for the file as a primary representation */
    const char *cache_control; /* NULL: none */
    char etag[64];
    char last_modified[32];
} fc_entry_t;

typedef struct {
    char *real; /* realpath() of the directory, for the symlink checks */
    uint64_t checked_ms;
} root_state_t;

struct ap_static_s {
    const ap_config_t *conf;
    ap_mime_t *mime;
    root_state_t *roots;
    fc_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;    /* entries in the cache */
    size_t max;      /* open_file_cache, within a quarter of RLIMIT_NOFILE */
    fc_entry_t *lru_head, *lru_tail;
    ap_buf_t rel;  /* the normalised relative path of the request */
    ap_buf_t path; /* file names being opened */
    ap_buf_t body; /* files read for on-the-fly gzip */
    int proc_warned;
};

/* The interesting request headers, found in one pass. */
typedef struct {
    const ap_str_t *if_match, *if_none_match, *if_modified_since, *if_unmodified_since;
    const ap_str_t *range, *if_range, *accept_encoding;
} conds_t;

/* ------------------------------------------------------------------------
 * Path normalisation
 * ------------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ap_static_normalise(ap_str_t in, ap_buf_t *out, int *dir)
{
    ap_buf_reset(out);
    ap_buf_reserve(out, in.len + 1);
    *dir = in.len == 0 || in.p[in.len - 1] == '/';
    size_t i = 0;
    while (i < in.len) {
        /* One segment: decode it into place at the end of out. */
        while (i < in.len && in.p[i] == '/')
            i++;
        if (i >= in.len)
            break;
        size_t seg = out->len;
        if (seg > 0)
            out->data[out->len++] = '/';
        size_t start = out->len;
        while (i < in.len && in.p[i] != '/') {
            unsigned char c = (unsigned char)in.p[i];
            if (c == '%') {
                int hi = i + 2 < in.len ? hexval(in.p[i + 1]) : -1;
                int lo = hi >= 0 ? hexval(in.p[i + 2]) : -1;
                if (lo < 0)
                    return 400; /* a malformed escape */
                c = (unsigned char)(hi * 16 + lo);
                /* An encoded "/" would let one segment hide another. */
                if (c == '/')
                    return 400;
                i += 3;
            } else {
                i++;
            }
            if (c < 0x20 || c == 0x7f || c == '\\')
                return 400; /* NUL, control characters, Windows separators */
            out->data[out->len++] = (char)c;
        }
        size_t n = out->len - start;
        const char *s = out->data + start;
        int last = i >= in.len;
        if (n == 1 && s[0] == '.') {
            out->len = seg;
            *dir |= last;
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            if (seg == 0)
                return 400; /* above the root */
            /* Drop the previous segment with its separator. */
            size_t k = seg;
            while (k > 0 && out->data[k - 1] != '/')
                k--;
            out->len = k > 0 ? k - 1 : 0;
            *dir |= last;
        }
    }
    out->data[out->len] = '\0';
    /* Hidden files (.git, .env, .htpasswd): refused anywhere in the path,
     * but for .well-known (RFC 8615). */
    for (size_t k = 0; k < out->len; k++) {
        if (out->data[k] == '.' && (k == 0 || out->data[k - 1] == '/')) {
            size_t e = k;
            while (e < out->len && out->data[e] != '/')
                e++;
            if (!(e - k == 11 && memcmp(out->data + k, ".well-known", 11) == 0))
                return 404;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Header values
 * ------------------------------------------------------------------------ */

static int parse_uint64(const char *p, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    *v = x;
    return 0;
}

ap_range_t ap_static_parse_range(ap_str_t v, uint64_t size, uint64_t *first, uint64_t *last)
{
    size_t i = 0;
    if (v.len < 6 || strncasecmp(v.p, "bytes=", 6) != 0)
        return AP_RANGE_NONE;
    i = 6;
    int nranges = 0, satisfiable = 0;
    uint64_t f = 0, l = 0;
    while (i < v.len) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t'))
            i++;
        size_t s = i;
        while (i < v.len && v.p[i] != ',')
            i++;
        size_t e = i;
        if (i < v.len)
            i++; /* the comma */
        while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e == s)
            continue; /* empty list elements are allowed */
        const char *dash = memchr(v.p + s, '-', e - s);
        if (dash == NULL)
            return AP_RANGE_NONE;
        size_t alen = (size_t)(dash - (v.p + s)), blen = (size_t)(v.p + e - dash - 1);
        uint64_t a, b;
        nranges++;
        if (alen == 0) {
            /* A suffix: the last b bytes. */
            if (parse_uint64(dash + 1, blen, &b) < 0)
                return AP_RANGE_NONE;
            if (b == 0 || size == 0)
                continue;
            f = b >= size ? 0 : size - b;
            l = size - 1;
            satisfiable++;
            continue;
        }
        if (parse_uint64(v.p + s, alen, &a) < 0)
            return AP_RANGE_NONE;
        if (blen == 0) {
            b = UINT64_MAX;
        } else if (parse_uint64(dash + 1, blen, &b) < 0 || b < a) {
            return AP_RANGE_NONE;
        }
        if (a >= size)
            continue;
        f = a;
        l = b >= size ? size - 1 : b;
        satisfiable++;
    }
    if (nranges == 0)
        return AP_RANGE_NONE;
    if (satisfiable == 0)
        return AP_RANGE_UNSATISFIABLE;
    /* Several ranges would need multipart/byteranges: the whole file is a
     * valid answer too. */
    if (nranges > 1)
        return AP_RANGE_NONE;
    *first = f;
    *last = l;
    return AP_RANGE_ONE;
}

static int month_of(const char *p)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int m = 0; m < 12; m++)
        if (memcmp(p, months + 3 * m, 3) == 0)
            return m;
    return -1;
}

/* days since the epoch of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    return 0;
}

int64_t ap_static_parse_date(ap_str_t v)
{
    char b[64];
    if (v.len >= sizeof(b))
        return -1;
    memcpy(b, v.p, v.len);
    b[v.len] = '\0';
    int d, mon, y, H, M, S;
    const char *c = strchr(b, ',');
    if (c && v.len == 29 && c - b == 3) {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        const char *p = c + 2;
        if (c[1] != ' ' || digits(p, 2, &d) || p[2] != ' ' || (mon = month_of(p + 3)) < 0 ||
            p[6] != ' ' || digits(p + 7, 4, &y) || p[11] != ' ' || digits(p + 12, 2, &H) ||
            p[14] != ':' || digits(p + 15, 2, &M) || p[17] != ':' || digits(p + 18, 2, &S) ||
            strcmp(p + 20, " GMT") != 0)
            return -1;
    } else if (c) {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        const char *p = c + 2;
        if (c[1] != ' ' || strlen(p) != 22 || digits(p, 2, &d) || p[2] != '-' ||
            (mon = month_of(p + 3)) < 0 || p[6] != '-' || digits(p + 7, 2, &y) || p[9] != ' ' ||
            digits(p + 10, 2, &H) || p[12] != ':' || digits(p + 13, 2, &M) || p[15] != ':' ||
            digits(p + 16, 2, &S) || strcmp(p + 18, " GMT") != 0)
            return -1;
        y += y < 70 ? 2000 : 1900;
    } else if (v.len == 24) {
        /* asctime: Sun Nov  6 08:49:37 1994 */
        const char *p = b + 4;
        if (b[3] != ' ' || (mon = month_of(p)) < 0 || p[3] != ' ' ||
            digits(p + 4 + (p[4] == ' '), 2 - (p[4] == ' '), &d) || p[6] != ' ' ||
            digits(p + 7, 2, &H) || p[9] != ':' || digits(p + 10, 2, &M) || p[12] != ':' ||
            digits(p + 13, 2, &S) || p[15] != ' ' || digits(p + 16, 4, &y))
            return -1;
    } else {
        return -1;
    }
    if (d < 1 || d > 31 || H > 23 || M > 59 || S > 60)
        return -1;
    return days_from_civil(y, mon + 1, d) * 86400 + H * 3600 + M * 60 + S;
}

int ap_static_etag_match(ap_str_t list, const char *etag, int strong)
{
    int etag_weak = etag[0] == 'W';
    const char *eo = etag_weak ? etag + 2 : etag; /* the opaque tag, quotes included */
    size_t eol = strlen(eo);
    size_t i = 0;
    while (i < list.len) {
        while (i < list.len && (list.p[i] == ' ' || list.p[i] == '\t' || list.p[i] == ','))
            i++;
        if (i >= list.len)
            break;
        if (list.p[i] == '*')
            return 1;
        int weak = 0;
        if (i + 1 < list.len && list.p[i] == 'W' && list.p[i + 1] == '/') {
            weak = 1;
            i += 2;
        }
        if (i >= list.len || list.p[i] != '"')
            return 0; /* malformed: no match */
        size_t s = i++;
        while (i < list.len && list.p[i] != '"')
            i++;
        if (i >= list.len)
            return 0;
        i++;
        size_t n = i - s;
        if (n == eol && memcmp(list.p + s, eo, n) == 0 && (!strong || (!weak && !etag_weak)))
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Open file cache
 * ------------------------------------------------------------------------ */

static uint32_t hash_path(int root, const char *p, size_t n)
{
    uint32_t h = 2166136261u ^ (uint32_t)root;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static void lru_unlink(ap_static_t *s, fc_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(ap_static_t *s, fc_entry_t *e)
{
    e->prev = NULL;
    e->next = s->lru_head;
    if (s->lru_head)
        s->lru_head->prev = e;
    s->lru_head = e;
    if (s->lru_tail == NULL)
        s->lru_tail = e;
}

static void entry_free(fc_entry_t *e)
{
    if (e->fd >= 0)
        close(e->fd);
    free(e->path);
    free(e);
}

/* Takes e out of the cache; it is freed now, or by its last response. */
static void cache_remove(ap_static_t *s, fc_entry_t *e)
{
    if (!e->in_cache)
        return;
    fc_entry_t **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(s, e);
    e->in_cache = 0;
    s->count--;
    if (e->refs == 0)
        entry_free(e);
}

static void entry_release(ap_static_t *s, fc_entry_t *e)
{
    (void)s;
    if (--e->refs == 0 && !e->in_cache)
        entry_free(e);
}

/* Closes every cached descriptor no response uses (EMFILE relief). */
static void cache_flush_idle(ap_static_t *s)
{
    fc_entry_t *e = s->lru_tail, *prev;
    for (; e; e = prev) {
        prev = e->prev;
        if (e->refs == 0)
            cache_remove(s, e);
    }
}

static void entry_validators(fc_entry_t *e)
{
    uint64_t mtime_ns =
        (uint64_t)e->st.st_mtim.tv_sec * 1000000000u + (uint64_t)e->st.st_mtim.tv_nsec;
    /* Strong: inode, size and modification time to the nanosecond change
     * with any rewrite of the file that a client could see. */
    snprintf(e->etag, sizeof(e->etag), "\"%llx-%llx-%llx\"", (unsigned long long)e->st.st_ino,
             (unsigned long long)e->st.st_size, (unsigned long long)mtime_ns);
    ap_clock_http_date((int64_t)e->st.st_mtim.tv_sec, e->last_modified, sizeof(e->last_modified));
}

static const char *root_real(ap_static_t *s, int ri, int force)
{
    root_state_t *r = &s->roots[ri];
    uint64_t now = ap_clock_mono_ms();
    if (r->real == NULL || force || now - r->checked_ms >= AP_ROOT_RECHECK_MS) {
        char *real = realpath(s->conf->static_roots[ri].dir, NULL);
        if (real) {
            free(r->real);
            r->real = real;
        } else if (r->real == NULL) {
            ap_log_errno(AP_LOG_ERR, errno, "realpath(\"%s\") failed",
                         s->conf->static_roots[ri].dir);
        }
        r->checked_ms = now;
    }
    return r->real;
}

/* follow_symlinks: whether the file behind fd may be served from root ri,
 * opened as rel (relative to the root's directory). The kernel's name for
 * the open file says where the path really led, after every symbolic link
 * and with no race between a check and the open. */
static int path_allowed(ap_static_t *s, int ri, int fd, const char *rel, size_t rlen)
{
    int mode = s->conf->static_symlinks;
    if (mode == AP_SYMLINKS_ON)
        return 1;
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof(real) - 1);
    if (n < 0 || (size_t)n >= sizeof(real) - 1) {
        if (!s->proc_warned) {
            ap_log_errno(AP_LOG_ERR, errno,
                         "readlink(\"%s\") failed: without /proc, files are refused unless "
                         "[static] follow_symlinks = on",
                         link);
            s->proc_warned = 1;
        }
        return 0;
    }
    real[n] = '\0';
    /* A refusal looks at the root again first: a deployment may just have
     * switched the link that is the root. */
    for (int force = 0; force < 2; force++) {
        const char *rr = root_real(s, ri, force);
        if (rr == NULL)
            continue;
        size_t rl = strlen(rr);
        if (rl == 1)
            rl = 0; /* the root directory "/" */
        if (strncmp(real, rr, rl) != 0 || real[rl] != '/')
            continue;
        if (mode == AP_SYMLINKS_INSIDE)
            return 1;
        /* off: the file must be exactly where its name says. */
        if ((size_t)n == rl + 1 + rlen && memcmp(real + rl + 1, rel, rlen) == 0)
            return 1;
    }
    return 0;
}

/* Opens (or finds in the cache) the file at s->path (rel is its part under
 * the root). Returns a referenced entry; NULL with *err: ENOENT (nothing
 * there, or refused), EISDIR, EACCES, EMFILE... A negative entry is
 * cached for missing siblings when `negative`. */
static fc_entry_t *file_open(ap_static_t *s, int ri, const char *rel, size_t rlen, int negative,
                             int *err)
{
    const ap_config_t *conf = s->conf;
    const char *path = s->path.data;
    size_t plen = s->path.len;
    uint32_t h = hash_path(ri, path, plen);
    uint64_t now = ap_clock_mono_ms();
    fc_entry_t *e = NULL;

    if (s->nbuckets) {
        for (e = s->buckets[h & (s->nbuckets - 1)]; e; e = e->hnext)
            if (e->hash == h && e->root == ri && e->pathlen == plen &&
                memcmp(e->path, path, plen) == 0)
                break;
    }
    if (e) {
        int fresh = now - e->checked_ms < conf->open_file_cache_valid_ms;
        if (!fresh && e->fd >= 0) {
            /* Does the name still lead to the same file? */
            struct stat st;
            if (stat(path, &st) == 0 && st.st_dev == e->st.st_dev && st.st_ino == e->st.st_ino) {
                e->checked_ms = now;
                fresh = 1;
            }
        }
        if (!fresh) {
            cache_remove(s, e);
            e = NULL;
        } else if (e->fd < 0) {
            *err = ENOENT;
            return NULL;
        } else {
            /* The descriptor's own metadata, every time: a file rewritten
             * in place gets a new length and validators at once. */
            struct stat st;
            if (fstat(e->fd, &st) == 0 &&
                (st.st_size != e->st.st_size || st.st_mtim.tv_sec != e->st.st_mtim.tv_sec ||
                 st.st_mtim.tv_nsec != e->st.st_mtim.tv_nsec || st.st_nlink == 0)) {
                if (st.st_nlink == 0) {
                    /* Deleted since: look the name up again. */
                    cache_remove(s, e);
                    e = NULL;
                } else {
                    e->st = st;
                    entry_validators(e);
                }
            }
            if (e) {
                lru_unlink(s, e);
                lru_push(s, e);
                e->refs++;
                return e;
            }
        }
    }

    int fd;
    for (int attempt = 0;; attempt++) {
        /* O_NONBLOCK: a FIFO placed in the root must not block the worker. */
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd >= 0 || attempt > 0 || (errno != EMFILE && errno != ENFILE))
            break;
        cache_flush_idle(s);
    }
    if (fd < 0) {
        *err = errno;
        if (*err == ENOTDIR || *err == ENAMETOOLONG || *err == ELOOP)
            *err = ENOENT;
        if (negative && *err == ENOENT && s->max > 0)
            goto cache_negative;
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *err = errno;
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        *err = EISDIR;
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || !path_allowed(s, ri, fd, rel, rlen)) {
        close(fd);
        *err = ENOENT;
        if (negative && s->max > 0)
            goto cache_negative;
        return NULL;
    }
    e = ap_xcalloc(1, sizeof(*e));
    e->fd = fd;
    e->st = st;
    entry_validators(e);
    goto insert;

cache_negative:
    e = ap_xcalloc(1, sizeof(*e));
    e->fd = -1;

insert:
    e->path = ap_xstrndup(path, plen);
    e->pathlen = plen;
    e->hash = h;
    e->root = ri;
    e->checked_ms = now;
    if (s->max > 0) {
        /* Make room: the least recently used entries go first. */
        while (s->count >= s->max && s->lru_tail)
            cache_remove(s, s->lru_tail);
        fc_entry_t **b = &s->buckets[h & (s->nbuckets - 1)];
        e->hnext = *b;
        *b = e;
        lru_push(s, e);
        e->in_cache = 1;
        s->count++;
    }
    if (e->fd < 0) {
        *err = ENOENT;
        return NULL;
    }
    e->refs = 1;
    return e;
}

/* ------------------------------------------------------------------------
 * Set-up
 * ------------------------------------------------------------------------ */

ap_static_t *ap_static_new(const ap_config_t *conf)
{
    if (conf->nstatic_roots == 0)
        return NULL;
    ap_static_t *s = ap_xcalloc(1, sizeof(*s));
    s->conf = conf;
    s->mime = ap_mime_new(conf->mime_types, conf->default_type);
    s->roots = ap_xcalloc(conf->nstatic_roots, sizeof(*s->roots));
    s->max = conf->open_file_cache;
    /* Cached descriptors must leave room for connections: a worker that
     * cannot accept because its cache holds the descriptors is worse than
     * a smaller cache. */
    struct rlimit rl;
    if (s->max > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        s->max > rl.rlim_cur / 4) {
        s->max = rl.rlim_cur / 4;
        ap_log(AP_LOG_NOTICE,
               "[static] open_file_cache lowered from %llu to %zu: a quarter of the open-files "
               "limit (%llu); raise it (ulimit -n, LimitNOFILE=) to cache more",
               (unsigned long long)conf->open_file_cache, s->max, (unsigned long long)rl.rlim_cur);
    }
    if (s->max > 0) {
        s->nbuckets = 16;
        while (s->nbuckets < s->max * 2)
            s->nbuckets *= 2;
        s->buckets = ap_xcalloc(s->nbuckets, sizeof(*s->buckets));
    }
    ap_buf_init(&s->rel);
    ap_buf_init(&s->path);
    ap_buf_init(&s->body);
    for (size_t i = 0; i < conf->nstatic_roots; i++) {
        root_real(s, (int)i, 1);
        ap_log(AP_LOG_DEBUG, "static: %s from %s", conf->static_roots[i].prefix,
               conf->static_roots[i].dir);
    }
    ap_log(AP_LOG_DEBUG, "static: %zu media type extensions", ap_mime_count(s->mime));
    return s;
}

void ap_static_free(ap_static_t *s)
{
    if (s == NULL)
        return;
    while (s->lru_head) {
        fc_entry_t *e = s->lru_head;
        lru_unlink(s, e);
        e->in_cache = 0;
        if (e->refs == 0)
            entry_free(e);
    }
    free(s->buckets);
    for (size_t i = 0; i < s->conf->nstatic_roots; i++)
        free(s->roots[i].real);
    free(s->roots);
    ap_mime_free(s->mime);
    ap_buf_cleanup(&s->rel);
    ap_buf_cleanup(&s->path);
    ap_buf_cleanup(&s->body);
    free(s);
}

int ap_static_match(const ap_config_t *conf, ap_str_t path, size_t *len)
{
    int best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < conf->nstatic_roots; i++) {
        const char *p = conf->static_roots[i].prefix;
        size_t n = strlen(p);
        if (n == 1)
            n = 0; /* "/" covers everything */
        if (path.len < n || memcmp(path.p, p, n) != 0 || (path.len > n && path.p[n] != '/'))
            continue;
        if (best < 0 || n > best_len) {
            best = (int)i;
            best_len = n;
        }
    }
    if (best >= 0)
        *len = best_len;
    return best;
}

/* ------------------------------------------------------------------------
 * Responding
 * ------------------------------------------------------------------------ */

/* The connection is done with the entry's descriptor. */
static void on_file_done(void *data, int complete)
{
    (void)complete;
    entry_release(NULL, data);
}

static void gather(const ap_request_t *req, conds_t *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < req->nheaders; i++) {
        const ap_header_t *h = &req->headers[i];
        ap_str_t n = h->name;
        if (n.len < 5 || (n.p[0] | 0x20) != (n.len == 15 ? 'a' : n.len == 5 ? 'r' : 'i'))
            continue;
        if (ap_str_caseeq(n, AP_STR("if-match")))
            c->if_match = &h->value;
        else if (ap_str_caseeq(n, AP_STR("if-none-match")))
            c->if_none_match = &h->value;
        else if (ap_str_caseeq(n, AP_STR("if-modified-since")))
            c->if_modified_since = &h->value;
        else if (ap_str_caseeq(n, AP_STR("if-unmodified-since")))
            c->if_unmodified_since = &h->value;
        else if (ap_str_caseeq(n, AP_STR("range")))
            c->range = &h->value;
        else if (ap_str_caseeq(n, AP_STR("if-range")))
            c->if_range = &h->value;
        else if (ap_str_caseeq(n, AP_STR("accept-encoding")))
            c->accept_encoding = &h->value;
    }
}

/* The Cache-Control value for a file served at url (its URL path). */
static const char *cache_control_for(const ap_config_t *conf, const char *url)
{
    const char *base = strrchr(url, '/');
    base = base ? base + 1 : url;
    for (size_t i = 0; i < conf->ncache_rules; i++) {
        const ap_cache_rule_t *r = &conf->cache_rules[i];
        const char *subject = strchr(r->pattern, '/') ? url : base;
        if (fnmatch(r->pattern, subject, 0) == 0)
            return r->value;
    }
    return NULL;
}

/* Content type and Cache-Control of the file at rel, served from root ri. */
static void entry_meta(ap_static_t *s, fc_entry_t *e, int ri, const char *rel)
{
    if (e->meta_done)
        return;
    const char *prefix = s->conf->static_roots[ri].prefix;
    char url[PATH_MAX + 256];
    snprintf(url, sizeof(url), "%s/%s", strcmp(prefix, "/") == 0 ? "" : prefix, rel);
    e->content_type = ap_mime_type(s->mime, rel, strlen(rel));
    e->cache_control = cache_control_for(s->conf, url);
    e->compressible = ap_gzip_type_ok(s->conf, e->content_type) != 0;
    e->meta_done = 1;
}

/* s->path = dir "/" rel suffix; 0, or -1 when that is longer than PATH_MAX. */
static int make_path(ap_static_t *s, int ri, const char *rel, size_t rlen, const char *suffix)
{
    const char *dir = s->conf->static_roots[ri].dir;
    size_t dlen = strlen(dir);
    if (dlen == 1)
        dlen = 0; /* "/" */
    size_t slen = strlen(suffix);
    if (dlen + 1 + rlen + slen >= PATH_MAX)
        return -1;
    ap_buf_reset(&s->path);
    ap_buf_append(&s->path, dir, dlen);
    ap_buf_append_char(&s->path, '/');
    ap_buf_append(&s->path, rel, rlen);
    ap_buf_append(&s->path, suffix, slen);
    return 0;
}

/* Percent-encodes a decoded path for a Location header. */
static void append_url_path(ap_buf_t *b, const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~!$&'()*+,;=:@/", c) != NULL) {
            ap_buf_append_char(b, (char)c);
        } else {
            ap_buf_append_char(b, '%');
            ap_buf_append_char(b, hex[c >> 4]);
            ap_buf_append_char(b, hex[c & 15]);
        }
    }
}

/* A directory named without its trailing slash: relative links in its
 * index page need one, so send the client there (nginx does the same).
 * The Location is rebuilt from the normalised path, so that "//host"
 * cannot turn into a redirect to another site. */
static void redirect_dir(ap_static_t *s, ap_request_t *req, int ri, const char *rel, size_t rlen)
{
    const char *prefix = s->conf->static_roots[ri].prefix;
    ap_buf_t loc;
    ap_buf_init(&loc);
    if (strcmp(prefix, "/") != 0)
        ap_buf_append_str(&loc, prefix);
    ap_buf_append_char(&loc, '/');
    append_url_path(&loc, rel, rlen);
    if (rlen)
        ap_buf_append_char(&loc, '/');
    /* The query goes along, as the client sent it. */
    if (req->query.len) {
        ap_buf_append_char(&loc, '?');
        ap_buf_append(&loc, req->query.p, req->query.len);
    }
    ap_http_add_header(req, "Location", loc.data);
    ap_http_respond_error(req, 301, NULL);
    ap_buf_cleanup(&loc);
}

/* If-Match / If-Unmodified-Since, then If-None-Match / If-Modified-Since
 * (RFC 9110 13.2.2). Returns 0 to go on, 304 or 412. */
static int preconditions(const conds_t *c, const char *etag, time_t mtime)
{
    if (c->if_match) {
        if (!ap_static_etag_match(*c->if_match, etag, 1))
            return 412;
    } else if (c->if_unmodified_since) {
        int64_t t = ap_static_parse_date(*c->if_unmodified_since);
        if (t >= 0 && (int64_t)mtime > t)
            return 412;
    }
    if (c->if_none_match) {
        if (ap_static_etag_match(*c->if_none_match, etag, 0))
            return 304;
    } else if (c->if_modified_since) {
        int64_t t = ap_static_parse_date(*c->if_modified_since);
        if (t >= 0 && (int64_t)mtime <= t)
            return 304;
    }
    return 0;
}

/* If-Range: the range applies only to the representation the client
 * holds part of, named by a strong ETag or its exact Last-Modified. */
static int if_range_holds(ap_str_t v, const char *etag, const char *last_modified)
{
    while (v.len && (v.p[0] == ' ' || v.p[0] == '\t')) {
        v.p++;
        v.len--;
    }
    if (v.len && (v.p[0] == '"' || v.p[0] == 'W'))
        return etag[0] == '"' && v.len == strlen(etag) && memcmp(v.p, etag, v.len) == 0;
    return ap_str_eq(v, ap_str_make(last_modified, strlen(last_modified)));
}

/* Reads the whole file for on-the-fly compression; -1 on a read error. */
static int read_all(ap_static_t *s, fc_entry_t *e)
{
    size_t size = (size_t)e->st.st_size;
    ap_buf_reset(&s->body);
    ap_buf_reserve(&s->body, size);
    while (s->body.len < size) {
        ssize_t n =
            pread(e->fd, s->body.data + s->body.len, size - s->body.len, (off_t)s->body.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break; /* shrank since fstat: what was read is consistent */
        s->body.len += (size_t)n;
    }
    return 0;
}

/* ap_http_add_header() without printf: this runs for every file. */
static void add_header(ap_request_t *req, const char *line, const char *value)
{
    ap_buf_append_str(&req->resp_headers, line);
    ap_buf_append_str(&req->resp_headers, value);
    ap_buf_append(&req->resp_headers, "\r\n", 2);
}

static void serve(ap_static_t *s, ap_request_t *req, int ri, fc_entry_t *e, const char *rel,
                  const conds_t *c)
{
    const ap_config_t *conf = s->conf;
    entry_meta(s, e, ri, rel);
    const char *ctype = e->content_type;
    fc_entry_t *body = e; /* the representation sent */
    const char *encoding = NULL;
    int vary = e->compressible && (conf->gzip || conf->static_precompressed);

    /* A precompressed sibling the client accepts, br before gzip at the
     * same q. */
    if (conf->static_precompressed && c->accept_encoding) {
        static const struct {
            const char *coding, *suffix;
        } sib[2] = {{"br", ".br"}, {"gzip", ".gz"}};
        int q[2] = {ap_gzip_accept_q(*c->accept_encoding, AP_STR("br")),
                    ap_gzip_accept_q(*c->accept_encoding, AP_STR("gzip"))};
        int order[2] = {0, 1};
        if (q[1] > q[0]) {
            order[0] = 1;
            order[1] = 0;
        }
        size_t rlen = strlen(rel);
        for (int k = 0; k < 2 && body == e; k++) {
            int i = order[k];
            int err;
            if (q[i] <= 0 || make_path(s, ri, rel, rlen, sib[i].suffix) < 0)
                continue;
            char srel[PATH_MAX];
            snprintf(srel, sizeof(srel), "%s%s", rel, sib[i].suffix);
            fc_entry_t *se = file_open(s, ri, srel, strlen(srel), 1, &err);
            if (se) {
                body = se;
                encoding = sib[i].coding;
                vary = 1;
            }
        }
    }

    /* On the fly: a compressible file without a sibling, not too large,
     * and not a range request (ranges address the identity bytes). */
    int gz = body == e && conf->gzip && e->compressible && !(c->range && req->method == HTTP_GET) &&
             e->st.st_size > 0 && (uint64_t)e->st.st_size >= conf->gzip_min_length &&
             e->st.st_size <= AP_GZIP_STATIC_MAX && c->accept_encoding &&
             ap_gzip_accept_q(*c->accept_encoding, AP_STR("gzip")) > 0;

    char etag[sizeof(body->etag) + 2];
    if (gz) {
        /* Another representation, equivalent: weak (nginx does the same). */
        memcpy(etag, "W/", 2);
        strcpy(etag + 2, body->etag);
    } else {
        strcpy(etag, body->etag);
    }

    int pre = preconditions(c, etag, body->st.st_mtim.tv_sec);
    add_header(req, "ETag: ", etag);
    add_header(req, "Last-Modified: ", body->last_modified);
    if (e->cache_control)
        add_header(req, "Cache-Control: ", e->cache_control);
    if (vary)
        add_header(req, "Vary: ", "Accept-Encoding");
    if (pre) {
        if (pre == 412)
            ap_http_respond_error(req, 412, "the file does not match the request's preconditions");
        else
            ap_http_respond(req, 304, NULL, NULL, 0);
        goto release;
    }

    if (gz) {
        if (read_all(s, e) < 0) {
            ap_log_errno(AP_LOG_ERR, errno, "reading %s failed", e->path);
            ap_http_respond_error(req, 500, "the file could not be read");
        } else {
            /* ap_http_respond() compresses it (src/gzip.c). */
            ap_http_respond(req, 200, ctype, s->body.data, s->body.len);
        }
        if (s->body.cap > 256 * 1024)
            ap_buf_cleanup(&s->body);
        goto release;
    }

    if (encoding)
        add_header(req, "Content-Encoding: ", encoding);
    add_header(req, "Accept-Ranges: ", "bytes");
    uint64_t size = (uint64_t)body->st.st_size, first = 0, last = size ? size - 1 : 0;
    int status = 200;
    if (c->range && req->method == HTTP_GET &&
        (c->if_range == NULL || if_range_holds(*c->if_range, etag, body->last_modified))) {
        switch (ap_static_parse_range(*c->range, size, &first, &last)) {
        case AP_RANGE_NONE:
            first = 0;
            last = size ? size - 1 : 0;
            break;
        case AP_RANGE_ONE: {
            char cr[96];
            snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)first,
                     (unsigned long long)last, (unsigned long long)size);
            ap_http_add_header(req, "Content-Range", cr);
            status = 206;
            break;
        }
        case AP_RANGE_UNSATISFIABLE: {
            char cr[48];
            snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
            ap_http_add_header(req, "Content-Range", cr);
            ap_http_respond_error(req, 416, "the range is outside the file");
            goto release;
        }
        }
    }
    uint64_t len = size ? last - first + 1 : 0;
    if (body != e)
        entry_release(s, e);
    ap_http_respond_file(req, status, ctype, body->fd, first, len, on_file_done, body);
    return;

release:
    if (body != e)
        entry_release(s, body);
    entry_release(s, e);
}

static void not_found(ap_request_t *req)
{
    ap_http_respond_error(req, 404, "no such file");
}

void ap_static_handle(ap_static_t *s, ap_request_t *req, int ri)
{
    const ap_config_t *conf = s->conf;
    const ap_static_root_t *root = &conf->static_roots[ri];
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        ap_http_add_header(req, "Allow", "GET, HEAD");
        ap_http_respond_error(req, 405, "static files answer GET and HEAD");
        return;
    }
    size_t plen = strcmp(root->prefix, "/") == 0 ? 0 : strlen(root->prefix);
    ap_str_t rest = ap_str_make(req->path.p + plen, req->path.len - plen);
    if (plen > 0 && rest.len == 0 && conf->static_index) {
        /* "/app" is the directory "/app/". */
        redirect_dir(s, req, ri, "", 0);
        return;
    }
    int dir;
    int bad = ap_static_normalise(rest, &s->rel, &dir);
    if (bad == 400) {
        ap_http_respond_error(req, 400, "the path is malformed or leaves the root");
        return;
    }
    if (bad) {
        not_found(req);
        return;
    }
    conds_t c;
    gather(req, &c);

    const char *rel = s->rel.data;
    size_t rlen = s->rel.len;
    char irel[PATH_MAX];
    fc_entry_t *e = NULL;
    int err = ENOENT;
    if (dir || rlen == 0) {
        /* A directory: its index file, never a listing. */
        if (conf->static_index) {
            int n =
                snprintf(irel, sizeof(irel), "%s%s%s", rel, rlen ? "/" : "", conf->static_index);
            if (n > 0 && (size_t)n < sizeof(irel) && make_path(s, ri, irel, (size_t)n, "") == 0) {
                e = file_open(s, ri, irel, (size_t)n, 0, &err);
                if (e)
                    rel = irel;
            }
        }
    } else if (make_path(s, ri, rel, rlen, "") == 0) {
        e = file_open(s, ri, rel, rlen, 0, &err);
        if (e == NULL && err == EISDIR && conf->static_index) {
            redirect_dir(s, req, ri, rel, rlen);
            return;
        }
    }
    if (e == NULL && (err == EMFILE || err == ENFILE || err == ENOMEM)) {
        ap_log_errno(AP_LOG_ERR, err, "opening a static file failed");
        ap_http_add_header(req, "Retry-After", "1");
        ap_http_respond_error(req, 503, "too many open files");
        return;
    }
    if (e == NULL && err == EACCES) {
        ap_http_respond_error(req, 403, "the file is not readable");
        return;
    }
    if (e == NULL && root->fallback) {
        /* The SPA fallback: the application routes the path itself. */
        size_t flen = strlen(root->fallback);
        if (make_path(s, ri, root->fallback, flen, "") == 0)
            e = file_open(s, ri, root->fallback, flen, 0, &err);
        if (e)
            rel = root->fallback;
        else
            ap_log_errno(AP_LOG_WARN, err, "the fallback %s of %s cannot be served", root->fallback,
                         root->prefix);
    }
    if (e == NULL) {
        not_found(req);
        return;
    }
    serve(s, req, ri, e, rel, &c);
}
