/* SPDX-License-Identifier: BSD-2-Clause */
/* The error log: JSON lines with levels, to stderr or a file that USR1 reopens. */
#ifndef AP_LOG_H
#define AP_LOG_H

typedef enum {
    AP_LOG_DEBUG = 0,
    AP_LOG_INFO,
    AP_LOG_NOTICE,
    AP_LOG_WARN,
    AP_LOG_ERR,
    AP_LOG_CRIT,
    AP_LOG_ALERT,
} ap_log_level_t;

/* Messages below this level are dropped before they are formatted. */
extern int ap_log_level;

/* Logs one line: {"time","level","pid","proc","worker"?,"msg"}. */
#define ap_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((int)(level) >= ap_log_level)                                                          \
            ap_log_write((level), 0, __VA_ARGS__);                                                 \
    } while (0)

/* Same, adding "error": strerror(err) for a positive errno or a negative
 * libuv-style error code. */
#define ap_log_errno(level, err, ...)                                                              \
    do {                                                                                           \
        if ((int)(level) >= ap_log_level)                                                          \
            ap_log_write((level), (err), __VA_ARGS__);                                             \
    } while (0)

void ap_log_write(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Opens the log destination: "stderr" or a file path (created 0640,
 * appended to). On failure the previous destination is kept and a negative
 * errno is returned. */
int ap_log_open(const char *path);

/* Reopens the current file (after logrotate moved it); 0 or -errno. */
int ap_log_reopen(void);

/* The descriptor log lines go to: a worker keeps it across fork. */
int ap_log_fd(void);

/* Closes a log file (not stderr); further lines go to stderr. */
void ap_log_close(void);

/* Names this process in every line: "master" or "worker" with its id
 * (worker < 0 omits the id). */
void ap_log_set_process(const char *proc, int worker);

/* Level names: "debug" ... "alert". ap_log_level_parse returns -1 for an
 * unknown name. */
const char *ap_log_level_name(int level);
int ap_log_level_parse(const char *name);

#endif
