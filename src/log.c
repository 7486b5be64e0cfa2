/* SPDX-License-Identifier: BSD-2-Clause */
/* The error log: one JSON object per line, written with a single write(2). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "alloc.h"
#include "buf.h"
#include "clock.h"
#include "json.h"

int ap_log_level = AP_LOG_INFO;

static int log_fd = STDERR_FILENO;
static char *log_path;
static const char *log_proc = "master";
static int log_worker = -1;

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error", "crit", "alert"};

const char *ap_log_level_name(int level)
{
    if (level < 0 || level > AP_LOG_ALERT)
        return "unknown";
    return level_names[level];
}

int ap_log_level_parse(const char *name)
{
    for (int i = 0; i <= AP_LOG_ALERT; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void ap_log_set_process(const char *proc, int worker)
{
    log_proc = proc;
    log_worker = worker;
}

int ap_log_fd(void)
{
    return log_fd;
}

static int open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return fd < 0 ? -errno : fd;
}

int ap_log_open(const char *path)
{
    if (path == NULL || strcmp(path, "stderr") == 0) {
        ap_log_close();
        return 0;
    }
    int fd = open_file(path);
    if (fd < 0)
        return fd;
    ap_log_close();
    log_fd = fd;
    log_path = ap_xstrdup(path);
    return 0;
}

int ap_log_reopen(void)
{
    if (log_path == NULL)
        return 0;
    int fd = open_file(log_path);
    if (fd < 0)
        return fd;
    /* dup2 keeps the descriptor number, so a worker forked later and any
     * code holding ap_log_fd() see the new file. */
    if (dup2(fd, log_fd) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    close(fd);
    return 0;
}

void ap_log_close(void)
{
    if (log_path) {
        close(log_fd);
        free(log_path);
        log_path = NULL;
    }
    log_fd = STDERR_FILENO;
}

void ap_log_write(int level, int err, const char *fmt, ...)
{
    char stamp[32];
    char msg[2048];
    va_list ap;

    ap_clock_rfc3339(ap_clock_wall_ms(), stamp, sizeof(stamp));
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;

    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_reserve(&b, 256 + (size_t)n);
    ap_buf_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"pid\":%ld,\"proc\":\"%s\"", stamp,
                  ap_log_level_name(level), (long)getpid(), log_proc);
    if (log_worker >= 0)
        ap_buf_printf(&b, ",\"worker\":%d", log_worker);
    ap_buf_append_str(&b, ",\"msg\":");
    ap_json_append_string(&b, msg, (size_t)n);
    if (err != 0) {
        const char *text = err < 0 ? uv_strerror(err) : strerror(err);
        ap_buf_append_str(&b, ",\"error\":");
        ap_json_append_string(&b, text, strlen(text));
    }
    ap_buf_append(&b, "}\n", 2);

    int saved = errno;
    size_t off = 0;
    while (off < b.len) {
        ssize_t w = write(log_fd, b.data + off, b.len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        off += (size_t)w;
    }
    errno = saved;
    ap_buf_cleanup(&b);
}
