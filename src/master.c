/* SPDX-License-Identifier: BSD-2-Clause */
/* The master: worker table, spawn/reap/respawn with back-off, replacement
 * of one worker by another (reload, health, recycling), the control
 * socket, binary upgrade and signals. Signals arrive through a signalfd
 * and timers are the poll timeout, so the master runs no event library:
 * after fork a worker inherits nothing of the master's machinery but what
 * it is given. */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access_log.h"
#include "alloc.h"
#include "clock.h"
#include "control.h"
#include "json.h"
#include "listener.h"
#include "log.h"
#include "sd_notify.h"
#include "security.h"
#include "shm.h"
#include "status.h"
#include "version.h"
#include "worker.h"

extern char **environ;

/* Restart back-off for workers that die within min_uptime. */
#define AP_BACKOFF_FIRST_MS 100
#define AP_BACKOFF_MAX_MS 10000
/* After TERM, workers that have not exited in this time are killed. */
#define AP_FAST_SHUTDOWN_MS 3000
/* After QUIT, on top of shutdown_timeout (which the workers enforce). */
#define AP_GRACEFUL_MARGIN_MS 2000
/* How often the master looks at the workers in shared memory. */
#define AP_TICK_MS 1000
/* ... and while it waits for a new worker to become ready. */
#define AP_FAST_TICK_MS 50
/* A new master of an upgrade has worker_ready_timeout and this to take
 * over, or it is stopped. */
#define AP_UPGRADE_MARGIN_MS 5000
/* Slots: a full set of workers plus the set a reload replaces. */
#define AP_SLOTS (2 * AP_MAX_WORKERS)
#define AP_MAX_CLIENTS 16

typedef enum {
    W_EMPTY = 0,
    W_RUNNING,  /* forked; serving (or starting) */
    W_STOPPING, /* told to stop; its exit is expected */
    W_RESPAWN,  /* died; waiting out its back-off */
} wstate_t;

typedef struct {
    wstate_t state;
    pid_t pid;
    int id;               /* the worker's number, 0..workers-1 */
    unsigned generation;  /* the config generation it runs */
    uint64_t started_ms;  /* monotonic */
    uint64_t respawn_at;  /* monotonic, W_RESPAWN */
    uint64_t backoff_ms;
    uint32_t restarts;
    const char *reason;   /* why its predecessor was replaced */
    const char *kill_reason; /* set when the master kills it */
    uint64_t max_requests; /* with jitter; 0 = off */
    int replacing;        /* slot this new worker replaces, or -1 */
    int replaced_by;      /* slot of the new worker replacing this one, or -1 */
    uint64_t ready_by;    /* monotonic: worker_ready_timeout for a replacement */
} wslot_t;

typedef enum { M_RUNNING, M_QUITTING, M_TERMINATING } mstate_t;

typedef enum { WAIT_NONE, WAIT_RELOAD, WAIT_UPGRADE } wait_t;

typedef struct {
    int fd;
    char buf[256];
    size_t len;
    wait_t waiting;
    unsigned reload_seq; /* WAIT_RELOAD: the reload whose outcome it waits for */
} client_t;

static struct {
    ap_config_t *conf;
    char *pidfile; /* as written at start: a reload does not move it */
    char *exe;     /* the binary to exec for an upgrade */
    char **argv;
    ap_listener_t *listeners;
    size_t nlisteners;
    ap_shm_t *shm;
    wslot_t slots[AP_SLOTS];
    unsigned generation;
    uint32_t nworkers; /* wanted now: conf->workers, changed by TTIN/TTOU */
    int sigfd;
    int ctlfd;
    char *ctl_path; /* where ctlfd listens */
    client_t clients[AP_MAX_CLIENTS];
    mstate_t state;
    uint64_t kill_at;  /* monotonic; 0 = none */
    uint64_t tick_at;  /* monotonic: the next look at the workers */
    uint64_t drain_at; /* monotonic: graceful quit after a drain; 0 = none */
    uint64_t tickets_at; /* monotonic: the next TLS ticket key rotation */
    int rollout;       /* a rolling restart is in progress */
    int reload_again;  /* a HUP came during the rollout */
    int notified_ready;
    pid_t upgrade_pid; /* the new master, during an upgrade */
    uint64_t upgrade_by; /* monotonic: it must take over by then */
    ap_config_t *prev_conf; /* during a rollout: what the old workers run */
    unsigned reload_seq;  /* reloads started */
    int upgraded;      /* a new master took over: leave its files alone */
    pid_t old_master;  /* we are the new master of an upgrade: QUIT it when ready */
    int pidfile_written;
} M;

static const int handled_signals[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1,
                                      SIGUSR2, SIGCHLD, SIGTTIN, SIGTTOU};

static void reply_waiting(wait_t what, int ok, const char *message);

/* What loading the configuration found worth a warning (a certificate
 * close to expiry), one log line each. */
static void log_warnings(const ap_config_t *conf, const char *prefix)
{
    const char *p = conf->warnings;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        ap_log(AP_LOG_WARN, "%s%.*s", prefix, len, p);
        p += len + (nl != NULL);
    }
}

/* A new key seals TLS session tickets from now on; the one it replaces
 * still opens tickets for one more period. */
static void rotate_tickets(uint64_t now)
{
    int rc = ap_shm_tickets_rotate(M.shm);
    if (rc < 0)
        ap_log_errno(AP_LOG_ERR, rc, "rotating the TLS session ticket keys failed");
    else
        ap_log(AP_LOG_DEBUG, "TLS session ticket keys rotated");
    M.tickets_at = now + M.conf->tls_ticket_rotate_ms;
}

int ap_master_read_pidfile(const char *pidfile, pid_t *pid)
{
    char buf[32];
    int fd = open(pidfile, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return -err;
    buf[n] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    if (end == buf || (*end != '\n' && *end != '\0') || v <= 1)
        return -ESRCH;
    *pid = (pid_t)v;
    return 0;
}

static int write_pidfile(const char *path)
{
    char tmp[4096];
    char line[32];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    if (write(fd, line, (size_t)n) != n || close(fd) < 0) {
        int err = errno ? errno : EIO;
        unlink(tmp);
        return -err;
    }
    /* rename(2) is atomic: a reader sees the old file or the whole new one. */
    if (rename(tmp, path) < 0) {
        int err = errno;
        unlink(tmp);
        return -err;
    }
    return 0;
}

static void oldbin_path(char *out, size_t size)
{
    snprintf(out, size, "%s.oldbin", M.pidfile);
}

static void remove_pidfile(void)
{
    pid_t pid;
    char old[4096];
    oldbin_path(old, sizeof(old));
    /* Only our own: a newer master may have taken the name over. */
    if (M.pidfile_written && ap_master_read_pidfile(M.pidfile, &pid) == 0 && pid == getpid())
        unlink(M.pidfile);
    if (ap_master_read_pidfile(old, &pid) == 0 && pid == getpid())
        unlink(old);
    M.pidfile_written = 0;
}

/* Status fields the master owns in shared memory, under a seqlock. */
static void publish_reload(const char *result, const char *message)
{
    __atomic_add_fetch(&M.shm->master_seq, 1, __ATOMIC_RELEASE);
    snprintf(M.shm->reload_result, sizeof(M.shm->reload_result), "%s", result);
    snprintf(M.shm->reload_message, sizeof(M.shm->reload_message), "%s", message ? message : "");
    M.shm->reload_at_ms = ap_clock_wall_ms();
    __atomic_add_fetch(&M.shm->master_seq, 1, __ATOMIC_RELEASE);
}

static void publish_master(void)
{
    __atomic_add_fetch(&M.shm->master_seq, 1, __ATOMIC_RELEASE);
    M.shm->master_pid = (int32_t)getpid();
    M.shm->master_started_ms = ap_clock_wall_ms();
    snprintf(M.shm->config_path, sizeof(M.shm->config_path), "%s", M.conf->path);
    __atomic_add_fetch(&M.shm->master_seq, 1, __ATOMIC_RELEASE);
}

/* In the child: close every descriptor but stdio, the listeners and the
 * log, so nothing of the master's leaks into a worker. */
static void close_inherited_fds(void)
{
    int keep[AP_MAX_WORKERS + 8];
    size_t nkeep = 0;
    keep[nkeep++] = ap_log_fd();
    for (size_t i = 0; i < M.nlisteners && nkeep < sizeof(keep) / sizeof(keep[0]); i++)
        keep[nkeep++] = M.listeners[i].fd;
    /* Sort (insertion: the list is short) and close the gaps between. */
    for (size_t i = 1; i < nkeep; i++)
        for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    unsigned lo = 3;
    for (size_t i = 0; i <= nkeep; i++) {
        unsigned hi = i < nkeep ? (unsigned)keep[i] : ~0U;
        if (i < nkeep && keep[i] < 3)
            continue;
        if (hi > lo && close_range(lo, hi - 1, 0) < 0) {
            /* Kernels before 5.9: close one by one. */
            long max = sysconf(_SC_OPEN_MAX);
            for (long fd = lo; fd < (long)hi && fd < max; fd++)
                close((int)fd);
        }
        if (i < nkeep)
            lo = (unsigned)keep[i] + 1;
    }
}

static size_t free_slot(void)
{
    for (size_t i = 0; i < AP_SLOTS; i++)
        if (M.slots[i].state == W_EMPTY)
            return i;
    return AP_SLOTS;
}

/* Forks worker id into slot; reason says why its predecessor went. */
static void spawn(size_t slot, int id, const char *reason, uint32_t restarts)
{
    wslot_t *s = &M.slots[slot];
    ap_shm_slot_t *shs = &M.shm->slots[slot];
    memset(shs, 0, sizeof(*shs));
    shs->state = AP_WORKER_STARTING;
    shs->id = id;
    shs->restarts = restarts;
    snprintf(shs->last_reason, sizeof(shs->last_reason), "%s", reason ? reason : "");
    shs->started_ms = ap_clock_wall_ms();
    shs->heartbeat_ms = ap_clock_mono_ms();

    uint64_t backoff = s->backoff_ms;
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->generation = M.generation;
    s->restarts = restarts;
    s->reason = reason;
    s->backoff_ms = backoff;
    s->replacing = -1;
    s->replaced_by = -1;
    if (M.conf->max_requests)
        s->max_requests = M.conf->max_requests +
                          (M.conf->max_requests_jitter
                               ? (uint64_t)random() % (M.conf->max_requests_jitter + 1)
                               : 0);

    pid_t pid = fork();
    if (pid < 0) {
        ap_log_errno(AP_LOG_ALERT, errno, "fork() for worker %d failed", id);
        s->state = W_RESPAWN;
        s->backoff_ms = s->backoff_ms ? s->backoff_ms : AP_BACKOFF_FIRST_MS;
        s->respawn_at = ap_clock_mono_ms() + s->backoff_ms;
        return;
    }
    if (pid == 0) {
        close(M.sigfd);
        close_inherited_fds();
        ap_worker_main(M.conf, M.shm, (int)slot, id, M.listeners, M.nlisteners);
    }
    s->state = W_RUNNING;
    s->pid = pid;
    s->started_ms = ap_clock_mono_ms();
    ap_shm_store(shs->pid, (int32_t)pid);
    ap_log(AP_LOG_INFO, "worker %d started (pid %ld)%s%s", id, (long)pid, reason ? ": " : "",
           reason ? reason : "");
}

static void count_restart(const char *reason)
{
    int r = ap_restart_reason_index(reason);
    if (r >= 0)
        ap_shm_add(M.shm->restarts[r], 1);
}

static int slot_ready(size_t i)
{
    return ap_shm_load(M.shm->slots[i].state) == AP_WORKER_READY;
}

/* Starts a worker that will take slot old's place: old is stopped only
 * once the new one is ready, so capacity never drops. */
static int replace(size_t old, const char *reason)
{
    wslot_t *o = &M.slots[old];
    if (o->replaced_by >= 0 || o->state != W_RUNNING)
        return 0;
    size_t slot = free_slot();
    if (slot == AP_SLOTS) {
        ap_log(AP_LOG_ERR, "no free worker slot to replace worker %d", o->id);
        return -1;
    }
    spawn(slot, o->id, reason, o->restarts + 1);
    if (M.slots[slot].state != W_RUNNING)
        return -1;
    count_restart(reason);
    M.slots[slot].replacing = (int)old;
    M.slots[slot].ready_by = ap_clock_mono_ms() + M.conf->worker_ready_timeout_ms;
    o->replaced_by = (int)slot;
    return 0;
}

static void stop_worker(size_t i, int sig)
{
    wslot_t *s = &M.slots[i];
    if (s->state == W_RESPAWN) {
        s->state = W_EMPTY;
        ap_shm_store(M.shm->slots[i].state, AP_WORKER_FREE);
        return;
    }
    if (s->state != W_RUNNING && s->state != W_STOPPING)
        return;
    if (kill(s->pid, sig) < 0 && errno != ESRCH)
        ap_log_errno(AP_LOG_ERR, errno, "kill(%ld, %d) failed", (long)s->pid, sig);
    s->state = W_STOPPING;
}

static void signal_all(int sig, int stop)
{
    for (size_t i = 0; i < AP_SLOTS; i++) {
        if (stop) {
            stop_worker(i, sig);
        } else if (M.slots[i].state == W_RUNNING || M.slots[i].state == W_STOPPING) {
            if (kill(M.slots[i].pid, sig) < 0 && errno != ESRCH)
                ap_log_errno(AP_LOG_ERR, errno, "kill(%ld, %d) failed", (long)M.slots[i].pid,
                             sig);
        }
    }
}

static size_t alive_workers(void)
{
    size_t n = 0;
    for (size_t i = 0; i < AP_SLOTS; i++)
        if (M.slots[i].state == W_RUNNING || M.slots[i].state == W_STOPPING)
            n++;
    return n;
}

/* A replacement did not come up: it goes, the worker it was to replace
 * stays. */
static void abort_replacement(size_t slot, const char *why)
{
    wslot_t *n = &M.slots[slot];
    int old = n->replacing;
    ap_log(AP_LOG_ERR, "new worker %d (pid %ld) %s: keeping the worker it was to replace", n->id,
           (long)n->pid, why);
    if (old >= 0)
        M.slots[old].replaced_by = -1;
    n->replacing = -1;
    if (n->state == W_RUNNING) {
        n->kill_reason = "not ready";
        stop_worker(slot, SIGKILL);
    }
    if (M.rollout) {
        M.rollout = 0;
        /* The old workers keep serving with the configuration they run:
         * the master goes back to it too (replacements of workers that
         * die, the next reload's comparison). */
        if (M.prev_conf) {
            ap_config_free(M.conf);
            M.conf = M.prev_conf;
            M.prev_conf = NULL;
            M.nworkers = M.conf->workers;
            M.generation--;
            for (size_t i = 0; i < AP_SLOTS; i++)
                if (M.slots[i].state == W_RUNNING && M.slots[i].generation > M.generation)
                    M.slots[i].generation = M.generation;
        }
        char msg[256];
        snprintf(msg, sizeof(msg), "rollout aborted: a new worker %s; the old workers keep serving",
                 why);
        publish_reload("failed", msg);
        reply_waiting(WAIT_RELOAD, 0, msg);
        ap_sd_notify("READY=1\nSTATUS=reload failed: old workers keep serving");
    }
}

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == M.upgrade_pid) {
            /* The new master died before it took over. */
            char how[96], old[4096];
            snprintf(how, sizeof(how), "the new master (pid %ld) exited with status %d",
                     (long)pid, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            M.upgrade_pid = 0;
            oldbin_path(old, sizeof(old));
            if (rename(old, M.pidfile) < 0)
                ap_log_errno(AP_LOG_ERR, errno, "restoring pidfile %s failed", M.pidfile);
            ap_log(AP_LOG_ERR, "upgrade failed: %s; this master keeps serving", how);
            reply_waiting(WAIT_UPGRADE, 0, how);
            ap_sd_notify("READY=1\nSTATUS=upgrade failed: the old master keeps serving");
            continue;
        }
        size_t i;
        for (i = 0; i < AP_SLOTS; i++)
            if ((M.slots[i].state == W_RUNNING || M.slots[i].state == W_STOPPING) &&
                M.slots[i].pid == pid)
                break;
        if (i == AP_SLOTS)
            continue;
        wslot_t *s = &M.slots[i];
        ap_shm_slot_t *shs = &M.shm->slots[i];
        /* What it counted stays in the totals. */
        ap_metrics_fold(&M.shm->retired, &shs->metrics);
        ap_shm_add(M.shm->retired_bytes_out, ap_shm_load(shs->bytes_out));
        ap_shm_add(M.shm->retired_schema_reloads, ap_shm_load(shs->schema_reloads));
        memset(&shs->metrics, 0, sizeof(shs->metrics));
        ap_shm_store(shs->bytes_out, 0);
        ap_shm_store(shs->schema_reloads, 0);
        ap_shm_store(shs->state, AP_WORKER_FREE);
        ap_shm_store(shs->pid, 0);
        ap_security_worker_exited(pid, WIFEXITED(status) && WEXITSTATUS(status) == 0);

        char how[64];
        if (WIFEXITED(status))
            snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            snprintf(how, sizeof(how), "was killed by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else
            snprintf(how, sizeof(how), "ended (status 0x%x)", status);

        /* A replacement (or a worker a rollout added) that dies before it
         * is ready. */
        if (s->replacing != -1) {
            abort_replacement(i, "exited before it was ready");
        }
        /* The worker it replaced is gone: the new one stands alone. */
        if (s->replaced_by >= 0) {
            M.slots[s->replaced_by].replacing = -1;
            s->replaced_by = -1;
        }
        int expected = s->state == W_STOPPING || M.state != M_RUNNING;
        /* Wanted: its number is still in use and nobody else holds it (a
         * worker of an older generation counts until a rollout replaces it). */
        int wanted = M.state == M_RUNNING && s->state == W_RUNNING &&
                     (uint32_t)s->id < M.nworkers;
        for (size_t k = 0; wanted && k < AP_SLOTS; k++)
            if (k != i && M.slots[k].id == s->id &&
                (M.slots[k].state == W_RUNNING || M.slots[k].state == W_RESPAWN))
                wanted = 0;
        if (expected || (s->kill_reason && strcmp(s->kill_reason, "not ready") == 0)) {
            ap_log(AP_LOG_INFO, "worker %d (pid %ld) %s", s->id, (long)pid, how);
            s->state = W_EMPTY;
            continue;
        }
        const char *reason = s->kill_reason ? s->kill_reason : "crash";
        ap_log(AP_LOG_ERR, "worker %d (pid %ld) %s unexpectedly", s->id, (long)pid, how);
        if (!wanted) {
            s->state = W_EMPTY;
            continue;
        }
        uint64_t now = ap_clock_mono_ms();
        s->restarts++;
        count_restart(reason);
        if (now - s->started_ms < M.conf->min_uptime_ms) {
            /* It died young: a broken deploy must not fork-bomb the host. */
            s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : AP_BACKOFF_FIRST_MS;
            if (s->backoff_ms > AP_BACKOFF_MAX_MS)
                s->backoff_ms = AP_BACKOFF_MAX_MS;
            s->state = W_RESPAWN;
            s->respawn_at = now + s->backoff_ms;
            s->reason = reason;
            ap_shm_store(shs->restarts, s->restarts);
            ap_shm_store(shs->pid, 0);
            ap_shm_store(shs->id, s->id);
            snprintf(shs->last_reason, sizeof(shs->last_reason), "%s", reason);
            ap_shm_store(shs->state, AP_WORKER_BACKOFF);
            ap_log(AP_LOG_WARN, "worker %d died within min_uptime: restarting in %llu ms", s->id,
                   (unsigned long long)s->backoff_ms);
        } else {
            s->backoff_ms = 0;
            spawn(i, s->id, reason, s->restarts);
        }
    }
}

/* --- the rolling restart --- */

/* One step: replace the next worker of an older generation, once no
 * replacement is pending; then fill up or trim to nworkers. */
static void rollout_step(void)
{
    if (!M.rollout || M.state != M_RUNNING)
        return;
    for (size_t i = 0; i < AP_SLOTS; i++)
        if (M.slots[i].state == W_RUNNING && M.slots[i].replacing != -1)
            return; /* wait for it */
    for (size_t i = 0; i < AP_SLOTS; i++) {
        wslot_t *s = &M.slots[i];
        if (s->state != W_RUNNING || s->generation == M.generation)
            continue;
        if ((uint32_t)s->id < M.nworkers) {
            replace(i, "reload");
        } else {
            ap_log(AP_LOG_INFO, "worker %d (pid %ld) is not in the new configuration: stopping it",
                   s->id, (long)s->pid);
            stop_worker(i, SIGQUIT);
            continue;
        }
        return;
    }
    /* Every old worker is replaced; add the ones the new config wants. */
    for (uint32_t id = 0; id < M.nworkers; id++) {
        int have = 0;
        for (size_t i = 0; i < AP_SLOTS; i++)
            if ((M.slots[i].state == W_RUNNING || M.slots[i].state == W_RESPAWN) &&
                M.slots[i].generation == M.generation && M.slots[i].id == (int)id)
                have = 1;
        if (!have) {
            size_t slot = free_slot();
            if (slot == AP_SLOTS)
                break;
            memset(&M.slots[slot], 0, sizeof(M.slots[slot]));
            spawn(slot, (int)id, "reload", 0);
            M.slots[slot].replacing = -2; /* a new one: wait for it all the same */
            M.slots[slot].ready_by = ap_clock_mono_ms() + M.conf->worker_ready_timeout_ms;
            return;
        }
    }
    M.rollout = 0;
    ap_config_free(M.prev_conf);
    M.prev_conf = NULL;
    ap_log(AP_LOG_NOTICE, "reload: generation %u is serving with %u workers", M.generation,
           M.nworkers);
    publish_reload("ok", "");
    reply_waiting(WAIT_RELOAD, 1, "");
    ap_sd_notify("READY=1\nSTATUS=serving");
    if (M.reload_again) {
        M.reload_again = 0;
        kill(getpid(), SIGHUP);
    }
}

static int reload(void)
{
    ap_buf_t errors;
    ap_buf_init(&errors);
    M.reload_seq++;
    ap_log(AP_LOG_NOTICE, "reloading configuration %s", M.conf->path);
    char notify[96];
    snprintf(notify, sizeof(notify), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)ap_clock_mono_ms() * 1000);
    ap_sd_notify(notify);
    ap_config_t *conf = ap_config_load(M.conf->path, environ, &errors);
    if (conf == NULL) {
        char *save = NULL;
        for (char *line = strtok_r(errors.data, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            ap_log(AP_LOG_ERR, "reload: %s", line);
        ap_log(AP_LOG_ERR, "reload failed: configuration is invalid; keeping the running one");
        /* strtok_r cut the lines: join them again for the message. */
        for (size_t i = 0; i < errors.len; i++)
            if (errors.data[i] == '\0')
                errors.data[i] = '\n';
        publish_reload("failed", errors.data);
        reply_waiting(WAIT_RELOAD, 0, errors.data);
        ap_sd_notify("READY=1\nSTATUS=reload failed: invalid configuration");
        ap_buf_cleanup(&errors);
        return -1;
    }
    ap_buf_cleanup(&errors);
    log_warnings(conf, "reload: ");

    /* New workers open the access log: one they could not open fails the
     * reload, as a listener that cannot be bound does. */
    int arc = ap_access_check(conf);
    if (arc < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "cannot open [log] access \"%s\": %s", conf->access_log,
                 strerror(-arc));
        ap_log(AP_LOG_ERR, "reload failed: %s; keeping the running configuration", msg);
        ap_config_free(conf);
        publish_reload("failed", msg);
        reply_waiting(WAIT_RELOAD, 0, msg);
        ap_sd_notify("READY=1\nSTATUS=reload failed: access log");
        return -1;
    }

    /* Listeners added are bound, removed ones closed (old workers keep
     * their copies until they exit); the rest stay as they are, so no
     * connection is refused. */
    ap_listener_t *ls;
    if (ap_listeners_adopt(conf->listen, conf->nlisten, M.listeners, M.nlisteners, &ls) < 0) {
        ap_config_free(conf);
        publish_reload("failed", "binding a new listener failed (see the error log)");
        reply_waiting(WAIT_RELOAD, 0, "binding a new listener failed (see the error log)");
        ap_sd_notify("READY=1\nSTATUS=reload failed: listener");
        return -1;
    }
    ap_listeners_close(M.listeners, M.nlisteners, 0);
    M.listeners = ls;
    M.nlisteners = conf->nlisten;

    if (strcmp(conf->pidfile, M.pidfile) != 0)
        ap_log(AP_LOG_WARN, "reload: server.pidfile changes take effect at the next restart");
    if (strcmp(conf->control_socket, M.conf->control_socket) != 0)
        ap_log(AP_LOG_WARN, "reload: server.control_socket changes take effect at the next restart");
    if (strcmp(conf->error_log, M.conf->error_log) != 0) {
        int rc = ap_log_open(conf->error_log);
        if (rc < 0)
            ap_log_errno(AP_LOG_ERR, rc, "reload: opening error_log \"%s\" failed",
                         conf->error_log);
    }
    ap_log_level = conf->log_level;
    ap_security_master_reload(M.conf, conf);

    /* Keep the old control socket path: clients may be talking to it. */
    free(conf->control_socket);
    conf->control_socket = ap_xstrdup(M.conf->control_socket);
    if (conf->tls_ticket_rotate_ms != M.conf->tls_ticket_rotate_ms)
        M.tickets_at = ap_clock_mono_ms() + conf->tls_ticket_rotate_ms;
    M.prev_conf = M.conf;
    M.conf = conf;
    M.nworkers = conf->workers;
    M.generation++;
    M.rollout = 1;
    publish_reload("in progress", "");
    ap_log(AP_LOG_NOTICE, "reload: rolling restart to generation %u with %u workers", M.generation,
           M.nworkers);
    rollout_step();
    return 0;
}

/* --- binary upgrade --- */

static void upgrade(void)
{
    char old[4096];
    if (M.upgrade_pid) {
        ap_log(AP_LOG_WARN, "upgrade already in progress (new master pid %ld)",
               (long)M.upgrade_pid);
        return;
    }
    oldbin_path(old, sizeof(old));
    if (rename(M.pidfile, old) < 0) {
        ap_log_errno(AP_LOG_ERR, errno, "upgrade: renaming pidfile to %s failed", old);
        reply_waiting(WAIT_UPGRADE, 0, "renaming the pidfile failed");
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        ap_log_errno(AP_LOG_ERR, errno, "upgrade: fork() failed");
        rename(old, M.pidfile);
        reply_waiting(WAIT_UPGRADE, 0, "fork failed");
        return;
    }
    if (pid == 0) {
        /* The listeners become descriptors 3.. of the new binary, as
         * systemd's socket activation passes them. */
        char names[4096] = "", buf[32];
        int n = (int)M.nlisteners;
        int *fds = ap_xcalloc((size_t)n + 1, sizeof(int));
        /* First move every listener above the target range, then into
         * place: dup2 onto a descriptor still in use would close it. */
        for (int i = 0; i < n; i++)
            fds[i] = fcntl(M.listeners[i].fd, F_DUPFD, 3 + n);
        for (int i = 0; i < n; i++) {
            dup2(fds[i], 3 + i);
            close(fds[i]);
            size_t len = strlen(names);
            snprintf(names + len, sizeof(names) - len, "%s%s", i ? ":" : "",
                     M.listeners[i].text);
        }
        close_range(3 + (unsigned)n, ~0U, 0);
        snprintf(buf, sizeof(buf), "%d", n);
        setenv("LISTEN_FDS", buf, 1);
        snprintf(buf, sizeof(buf), "%ld", (long)getpid());
        setenv("LISTEN_PID", buf, 1);
        setenv("LISTEN_FDNAMES", names, 1);
        snprintf(buf, sizeof(buf), "%ld", (long)getppid());
        setenv("APIARY_UPGRADE_FROM", buf, 1);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(M.exe, M.argv);
        fprintf(stderr, "apiary: upgrade: execv(%s) failed: %s\n", M.exe, strerror(errno));
        _exit(127);
    }
    M.upgrade_pid = pid;
    M.upgrade_by = ap_clock_mono_ms() + M.conf->worker_ready_timeout_ms + AP_UPGRADE_MARGIN_MS;
    ap_log(AP_LOG_NOTICE, "upgrade: started %s as pid %ld", M.exe, (long)pid);
}

/* --- the control socket --- */

static void client_close(client_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = 0;
    c->waiting = WAIT_NONE;
}

static void client_send(client_t *c, const char *text, size_t len)
{
    /* Replies are small and the socket local: a short blocking write. */
    int fl = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = 1};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (len > 0) {
        ssize_t n = write(c->fd, text, len);
        if (n <= 0)
            break;
        text += n;
        len -= (size_t)n;
    }
    client_close(c);
}

static void client_result(client_t *c, int ok, const char *message)
{
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_printf(&b, "{\"ok\":%s,\"message\":", ok ? "true" : "false");
    ap_json_append_string(&b, message ? message : "", message ? strlen(message) : 0);
    ap_buf_append_str(&b, "}\n");
    client_send(c, b.data, b.len);
    ap_buf_cleanup(&b);
}

static void reply_waiting(wait_t what, int ok, const char *message)
{
    for (int i = 0; i < AP_MAX_CLIENTS; i++) {
        client_t *c = &M.clients[i];
        /* A reload asked for during a rollout waits for the next one. */
        if (c->fd >= 0 && c->waiting == what &&
            (what != WAIT_RELOAD || (int)(c->reload_seq - M.reload_seq) <= 0))
            client_result(c, ok, message);
    }
}

static void start_drain(void)
{
    if (ap_shm_load(M.shm->draining))
        return;
    ap_shm_store(M.shm->draining, 1);
    M.drain_at = ap_clock_mono_ms() + M.conf->drain_delay_ms;
    ap_log(AP_LOG_NOTICE, "draining: /ready fails now; graceful shutdown in %llu ms",
           (unsigned long long)M.conf->drain_delay_ms);
    ap_sd_notify("STATUS=draining");
}

static void graceful_shutdown(void)
{
    if (M.state != M_RUNNING)
        return;
    ap_log(AP_LOG_NOTICE, "graceful shutdown");
    /* After a handover the service goes on under the new master: systemd
     * must not hear that it stops. */
    if (!M.upgraded)
        ap_sd_notify("STOPPING=1");
    M.state = M_QUITTING;
    signal_all(SIGQUIT, 1);
    M.kill_at = ap_clock_mono_ms() + M.conf->shutdown_timeout_ms + AP_GRACEFUL_MARGIN_MS;
    reply_waiting(WAIT_RELOAD, 0, "the master is shutting down");
}

static void client_command(client_t *c, const char *cmd)
{
    if (strcmp(cmd, "status") == 0) {
        ap_buf_t b;
        ap_buf_init(&b);
        ap_status_json(&b, M.shm);
        ap_buf_append_char(&b, '\n');
        client_send(c, b.data, b.len);
        ap_buf_cleanup(&b);
    } else if (strcmp(cmd, "check") == 0) {
        char out[96];
        int n = snprintf(out, sizeof(out), "{\"ok\":true,\"ready_workers\":%d}\n",
                         ap_status_ready_workers(M.shm));
        client_send(c, out, (size_t)n);
    } else if (strcmp(cmd, "reload") == 0) {
        c->waiting = WAIT_RELOAD;
        /* The reload that will answer it: the next one to start. */
        c->reload_seq = M.reload_seq + 1;
        if (M.rollout)
            M.reload_again = 1;
        else
            reload();
    } else if (strcmp(cmd, "upgrade") == 0) {
        c->waiting = WAIT_UPGRADE;
        upgrade();
    } else if (strcmp(cmd, "drain") == 0) {
        start_drain();
        client_result(c, 1, "");
    } else {
        client_result(c, 0, "unknown command (status, check, reload, upgrade, drain)");
    }
}

static void client_read(client_t *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        client_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *nl = strchr(c->buf, '\n');
    if (nl == NULL) {
        if (c->len == sizeof(c->buf) - 1)
            client_result(c, 0, "command too long");
        return;
    }
    *nl = '\0';
    if (c->waiting == WAIT_NONE)
        client_command(c, c->buf);
}

static void accept_clients(void)
{
    for (;;) {
        int fd = accept4(M.ctlfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int i;
        for (i = 0; i < AP_MAX_CLIENTS; i++)
            if (M.clients[i].fd < 0)
                break;
        if (i == AP_MAX_CLIENTS) {
            close(fd);
            continue;
        }
        M.clients[i].fd = fd;
        M.clients[i].len = 0;
        M.clients[i].waiting = WAIT_NONE;
    }
}

/* --- signals and timers --- */

static void handle_signal(int sig, pid_t sender)
{
    uint64_t now = ap_clock_mono_ms();
    switch (sig) {
    case SIGCHLD:
        reap();
        break;
    case SIGTERM:
    case SIGINT:
        if (M.state == M_TERMINATING)
            break;
        ap_log(AP_LOG_NOTICE, "fast shutdown (signal %d)", sig);
        ap_sd_notify("STOPPING=1");
        M.state = M_TERMINATING;
        signal_all(SIGTERM, 1);
        M.kill_at = now + AP_FAST_SHUTDOWN_MS;
        break;
    case SIGQUIT:
        if (M.upgrade_pid && sender == M.upgrade_pid) {
            /* The new master's workers are ready: it takes over. */
            ap_log(AP_LOG_NOTICE, "upgrade: the new master (pid %ld) is serving; quitting",
                   (long)M.upgrade_pid);
            M.upgraded = 1;
            unsetenv("NOTIFY_SOCKET");
            char msg[64];
            snprintf(msg, sizeof(msg), "new master pid %ld", (long)M.upgrade_pid);
            reply_waiting(WAIT_UPGRADE, 1, msg);
            M.upgrade_pid = 0;
        }
        graceful_shutdown();
        break;
    case SIGHUP:
        if (M.state != M_RUNNING)
            break;
        if (M.rollout)
            M.reload_again = 1;
        else
            reload();
        break;
    case SIGUSR1: {
        int rc = ap_log_reopen();
        if (rc < 0)
            ap_log_errno(AP_LOG_ERR, rc, "reopening the error log failed");
        ap_security_master_reopen(M.conf);
        ap_log(AP_LOG_NOTICE, "log files reopened");
        /* Workers reopen theirs (the access log too) on the signal; one
         * that misses it (still starting) sees the generation move at its
         * next heartbeat. */
        ap_shm_add(M.shm->log_generation, 1);
        signal_all(SIGUSR1, 0);
        break;
    }
    case SIGUSR2:
        if (M.state == M_RUNNING)
            upgrade();
        break;
    case SIGTTIN:
        if (M.state == M_RUNNING && M.nworkers < AP_MAX_WORKERS) {
            size_t slot = free_slot();
            if (slot < AP_SLOTS) {
                memset(&M.slots[slot], 0, sizeof(M.slots[slot]));
                spawn(slot, (int)M.nworkers, NULL, 0);
                M.nworkers++;
                ap_log(AP_LOG_NOTICE, "TTIN: %u workers", M.nworkers);
            }
        }
        break;
    case SIGTTOU:
        if (M.state == M_RUNNING && M.nworkers > 1) {
            M.nworkers--;
            for (size_t i = 0; i < AP_SLOTS; i++)
                if ((M.slots[i].state == W_RUNNING || M.slots[i].state == W_RESPAWN) &&
                    (uint32_t)M.slots[i].id >= M.nworkers)
                    stop_worker(i, SIGQUIT);
            ap_log(AP_LOG_NOTICE, "TTOU: %u workers", M.nworkers);
        }
        break;
    default:
        ap_log(AP_LOG_INFO, "signal %d ignored", sig);
        break;
    }
}

static uint64_t read_rss(pid_t pid)
{
    char path[64], buf[128];
    snprintf(path, sizeof(path), "/proc/%ld/statm", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return 0;
    return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The look at every worker, once a second: hung (heartbeat), recycled
 * (requests, memory), unhealthy while others are healthy. */
static void check_workers(uint64_t now)
{
    int healthy = 0;
    for (size_t i = 0; i < AP_SLOTS; i++)
        if (M.slots[i].state == W_RUNNING && M.slots[i].generation == M.generation &&
            ap_shm_load(M.shm->slots[i].db_state) == AP_DB_HEALTHY)
            healthy++;
    for (size_t i = 0; i < AP_SLOTS; i++) {
        wslot_t *s = &M.slots[i];
        ap_shm_slot_t *shs = &M.shm->slots[i];
        if (s->state != W_RUNNING)
            continue;
        uint64_t rss = read_rss(s->pid);
        ap_shm_store(shs->rss_bytes, rss);
        uint64_t beat = ap_shm_load(shs->heartbeat_ms);
        if (M.conf->worker_timeout_ms && now > beat && now - beat > M.conf->worker_timeout_ms) {
            ap_log(AP_LOG_ERR, "worker %d (pid %ld): no heartbeat for %llu ms: killing it", s->id,
                   (long)s->pid, (unsigned long long)(now - beat));
            s->kill_reason = "timeout";
            kill(s->pid, SIGKILL);
            continue;
        }
        if (s->replaced_by >= 0 || s->replacing >= 0 || M.state != M_RUNNING)
            continue;
        if (s->max_requests && ap_shm_load(shs->requests) >= s->max_requests) {
            ap_log(AP_LOG_NOTICE, "worker %d (pid %ld) served %llu requests: recycling it", s->id,
                   (long)s->pid, (unsigned long long)ap_shm_load(shs->requests));
            replace(i, "max_requests");
        } else if (M.conf->max_worker_memory && rss > M.conf->max_worker_memory) {
            ap_log(AP_LOG_WARN, "worker %d (pid %ld) uses %llu bytes: recycling it", s->id,
                   (long)s->pid, (unsigned long long)rss);
            replace(i, "memory");
        } else if (M.conf->db_uri && healthy > 0 && s->generation == M.generation &&
                   ap_shm_load(shs->db_state) == AP_DB_UNHEALTHY &&
                   now - ap_shm_load(shs->db_since_ms) >= M.conf->db_unhealthy_grace_ms) {
            /* A fault of its own; when every pool is down the database is,
             * and replacing workers would only add churn. */
            ap_log(AP_LOG_WARN,
                   "worker %d (pid %ld): database pool unhealthy for over %llu ms while %d other "
                   "workers are healthy: replacing it",
                   s->id, (long)s->pid, (unsigned long long)M.conf->db_unhealthy_grace_ms,
                   healthy);
            /* It cannot serve the API anyway: stop it now rather than
             * when its successor is ready (which may never be). */
            if (replace(i, "unhealthy") == 0 && s->replaced_by >= 0) {
                M.slots[s->replaced_by].replacing = -1;
                s->replaced_by = -1;
                stop_worker(i, SIGQUIT);
            }
        }
    }
}

/* Replacements that became ready retire their predecessor; those past
 * worker_ready_timeout are abandoned. */
static void check_replacements(uint64_t now)
{
    for (size_t i = 0; i < AP_SLOTS; i++) {
        wslot_t *s = &M.slots[i];
        if (s->state != W_RUNNING || s->replacing == -1)
            continue;
        if (slot_ready(i)) {
            int old = s->replacing;
            s->replacing = -1;
            if (old >= 0) {
                M.slots[old].replaced_by = -1;
                ap_log(AP_LOG_INFO, "worker %d (pid %ld) is ready: stopping pid %ld", s->id,
                       (long)s->pid, (long)M.slots[old].pid);
                stop_worker((size_t)old, SIGQUIT);
            }
        } else if (now >= s->ready_by) {
            abort_replacement(i, "was not ready within worker_ready_timeout");
        }
    }
}

static int replacements_pending(void)
{
    for (size_t i = 0; i < AP_SLOTS; i++)
        if (M.slots[i].state == W_RUNNING && M.slots[i].replacing != -1)
            return 1;
    return 0;
}

static int all_ready(void)
{
    int n = 0;
    for (size_t i = 0; i < AP_SLOTS; i++) {
        if (M.slots[i].state != W_RUNNING || M.slots[i].generation != M.generation)
            continue;
        if (!slot_ready(i))
            return 0;
        n++;
    }
    return n >= (int)M.nworkers;
}

static void run_timers(void)
{
    uint64_t now = ap_clock_mono_ms();
    for (size_t i = 0; i < AP_SLOTS; i++) {
        wslot_t *s = &M.slots[i];
        if (s->state == W_RESPAWN && now >= s->respawn_at) {
            if (M.state == M_RUNNING && (uint32_t)s->id < M.nworkers)
                spawn(i, s->id, s->reason, s->restarts);
            else {
                s->state = W_EMPTY;
                ap_shm_store(M.shm->slots[i].state, AP_WORKER_FREE);
            }
        }
    }
    check_replacements(now);
    rollout_step();
    if (now >= M.tick_at) {
        check_workers(now);
        M.tick_at = now + AP_TICK_MS;
    }
    if (!M.notified_ready && all_ready()) {
        M.notified_ready = 1;
        ap_sd_notify("READY=1\nSTATUS=serving");
        if (M.old_master > 0) {
            /* We are the new master of an upgrade, and serving. */
            char msg[64];
            snprintf(msg, sizeof(msg), "MAINPID=%ld", (long)getpid());
            ap_sd_notify(msg);
            ap_log(AP_LOG_NOTICE, "upgrade: workers ready; telling the old master (pid %ld) to quit",
                   (long)M.old_master);
            if (rename(M.ctl_path, M.conf->control_socket) == 0)
                strcpy(M.ctl_path, M.conf->control_socket);
            else
                ap_log_errno(AP_LOG_ERR, errno, "upgrade: moving the control socket into place failed");
            kill(M.old_master, SIGQUIT);
            M.old_master = 0;
        }
    }
    if (M.upgrade_pid && now >= M.upgrade_by) {
        ap_log(AP_LOG_ERR, "upgrade: the new master (pid %ld) did not take over in time: stopping it",
               (long)M.upgrade_pid);
        kill(M.upgrade_pid, SIGTERM);
        M.upgrade_by = now + AP_FAST_SHUTDOWN_MS + 1000;
    }
    if (M.drain_at && now >= M.drain_at) {
        M.drain_at = 0;
        graceful_shutdown();
    }
    if (now >= M.tickets_at)
        rotate_tickets(now);
    if (M.kill_at && now >= M.kill_at) {
        ap_log(AP_LOG_WARN, "%zu workers did not stop in time: killing them", alive_workers());
        signal_all(SIGKILL, 0);
        M.kill_at = 0;
    }
}

static int next_timeout(void)
{
    uint64_t now = ap_clock_mono_ms();
    uint64_t next = M.state == M_RUNNING ? M.tick_at : UINT64_MAX;
    for (size_t i = 0; i < AP_SLOTS; i++)
        if (M.slots[i].state == W_RESPAWN && M.slots[i].respawn_at < next)
            next = M.slots[i].respawn_at;
    if (replacements_pending() || !M.notified_ready)
        next = now + AP_FAST_TICK_MS < next ? now + AP_FAST_TICK_MS : next;
    if (M.kill_at && M.kill_at < next)
        next = M.kill_at;
    if (M.drain_at && M.drain_at < next)
        next = M.drain_at;
    if (M.tickets_at < next)
        next = M.tickets_at;
    if (M.upgrade_pid && M.upgrade_by < next)
        next = M.upgrade_by;
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
}

static int setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(handled_signals) / sizeof(handled_signals[0]); i++)
        sigaddset(&set, handled_signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    M.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (M.sigfd < 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static void cleanup(void)
{
    for (int i = 0; i < AP_MAX_CLIENTS; i++)
        client_close(&M.clients[i]);
    if (M.ctlfd >= 0) {
        close(M.ctlfd);
        /* After a handover the path is the new master's. */
        if (!M.upgraded)
            unlink(M.ctl_path);
    }
    free(M.ctl_path);
    M.ctl_path = NULL;
    remove_pidfile();
    ap_listeners_close(M.listeners, M.nlisteners, !M.upgraded);
    M.listeners = NULL;
    ap_shm_destroy(M.shm);
    M.shm = NULL;
    ap_security_master_stop();
    if (M.sigfd >= 0)
        close(M.sigfd);
    free(M.pidfile);
    ap_config_free(M.conf);
    M.conf = NULL;
}

int ap_master_run(ap_config_t *conf, const ap_master_opts_t *opts)
{
    memset(&M, 0, sizeof(M));
    M.conf = conf;
    M.sigfd = -1;
    M.ctlfd = -1;
    M.pidfile = ap_xstrdup(conf->pidfile);
    M.exe = opts->exe;
    M.argv = opts->argv;
    M.nworkers = conf->workers;
    M.old_master = opts->upgrade_from;
    for (int i = 0; i < AP_MAX_CLIENTS; i++)
        M.clients[i].fd = -1;
    srandom((unsigned)getpid() ^ (unsigned)ap_clock_wall_ms());

    pid_t other;
    if (ap_master_read_pidfile(M.pidfile, &other) == 0 && other != getpid() &&
        (kill(other, 0) == 0 || errno == EPERM)) {
        ap_log(AP_LOG_CRIT, "already running: pid %ld in %s", (long)other, M.pidfile);
        cleanup();
        return 1;
    }
    int rc = setup_signals();
    if (rc < 0) {
        ap_log_errno(AP_LOG_CRIT, rc, "setting up signal handling failed");
        cleanup();
        return 1;
    }
    rc = ap_listeners_adopt(conf->listen, conf->nlisten, opts->inherited, opts->ninherited,
                            &M.listeners);
    if (rc < 0) {
        cleanup();
        return 1;
    }
    M.nlisteners = conf->nlisten;
    M.shm = ap_shm_create(AP_SLOTS);
    if (M.shm == NULL) {
        ap_log_errno(AP_LOG_CRIT, errno, "creating the shared memory segment failed");
        cleanup();
        return 1;
    }
    publish_master();
    rotate_tickets(ap_clock_mono_ms());
    log_warnings(conf, "");
    if (ap_security_master_start(conf) < 0) {
        cleanup();
        return 1;
    }
    /* The new master of an upgrade must not take the old one's control
     * socket before it takes over: it listens beside it until then. */
    M.ctl_path = ap_xmalloc(strlen(conf->control_socket) + 8);
    sprintf(M.ctl_path, "%s%s", conf->control_socket, M.old_master > 0 ? ".new" : "");
    M.ctlfd = ap_control_listen(M.ctl_path);
    if (M.ctlfd < 0) {
        ap_log_errno(AP_LOG_CRIT, M.ctlfd, "control socket \"%s\" failed", M.ctl_path);
        M.ctlfd = -1;
        cleanup();
        return 1;
    }
    rc = write_pidfile(M.pidfile);
    if (rc < 0) {
        ap_log_errno(AP_LOG_CRIT, rc, "writing pidfile \"%s\" failed", M.pidfile);
        cleanup();
        return 1;
    }
    M.pidfile_written = 1;
    ap_log(AP_LOG_NOTICE, "apiary %s started: master pid %ld, %u workers", AP_VERSION,
           (long)getpid(), conf->workers);

    if (opts->ready_fd >= 0) {
        /* Daemonized: the parent exits 0 on this byte; from now on nobody
         * reads our terminal, so stdio goes to /dev/null. */
        if (write(opts->ready_fd, "1", 1) < 0)
            ap_log_errno(AP_LOG_WARN, errno, "telling the parent we started failed");
        close(opts->ready_fd);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            close(null);
        }
    }
    for (uint32_t id = 0; id < M.nworkers; id++) {
        size_t slot = free_slot();
        memset(&M.slots[slot], 0, sizeof(M.slots[slot]));
        spawn(slot, (int)id, NULL, 0);
    }
    M.tick_at = ap_clock_mono_ms() + AP_TICK_MS;

    for (;;) {
        if (M.state != M_RUNNING && alive_workers() == 0)
            break;
        struct pollfd pfd[2 + AP_MAX_CLIENTS];
        int clients[AP_MAX_CLIENTS];
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = M.sigfd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = M.ctlfd, .events = POLLIN};
        for (int i = 0; i < AP_MAX_CLIENTS; i++) {
            if (M.clients[i].fd < 0)
                continue;
            clients[n - 2] = i;
            pfd[n++] = (struct pollfd){.fd = M.clients[i].fd, .events = POLLIN};
        }
        int r = poll(pfd, n, next_timeout());
        if (r < 0 && errno != EINTR) {
            ap_log_errno(AP_LOG_ALERT, errno, "poll() failed");
            break;
        }
        if (r > 0) {
            if (pfd[0].revents) {
                struct signalfd_siginfo si;
                while (read(M.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                    handle_signal((int)si.ssi_signo, (pid_t)si.ssi_pid);
            }
            for (nfds_t k = 2; k < n; k++)
                if (pfd[k].revents && M.clients[clients[k - 2]].fd == pfd[k].fd)
                    client_read(&M.clients[clients[k - 2]]);
            if (pfd[1].revents)
                accept_clients();
        }
        run_timers();
    }
    ap_log(AP_LOG_NOTICE, "exiting");
    reply_waiting(WAIT_RELOAD, 0, "the master exited");
    reply_waiting(WAIT_UPGRADE, 0, "the master exited");
    cleanup();
    return 0;
}
