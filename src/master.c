/* SPDX-License-Identifier: BSD-2-Clause */
/* The master: worker table, spawn/reap/respawn with back-off, signals,
 * reload by generations. Signals arrive through a signalfd and timers are
 * the poll timeout, so the master runs no event library: after fork a
 * worker inherits nothing of the master's machinery but what it is given. */
#include "master.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "listener.h"
#include "log.h"
#include "shm.h"
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
/* How often the master looks at the workers' health in shared memory. */
#define AP_HEALTH_CHECK_MS 1000
/* Slots: a full set of workers plus the set a reload replaces. */
#define AP_SLOTS (2 * AP_MAX_WORKERS)

typedef enum {
    W_EMPTY = 0,
    W_RUNNING,  /* forked; serving (or starting) */
    W_STOPPING, /* told to stop; its exit is expected */
    W_RESPAWN,  /* died; waiting out its back-off */
} wstate_t;

typedef struct {
    wstate_t state;
    pid_t pid;
    int id;              /* the worker's number, 0..workers-1 */
    unsigned generation; /* the config generation it runs */
    uint64_t started_ms; /* monotonic */
    uint64_t respawn_at; /* monotonic, W_RESPAWN */
    uint64_t backoff_ms;
    uint32_t restarts;
} wslot_t;

typedef enum { M_RUNNING, M_QUITTING, M_TERMINATING } mstate_t;

static struct {
    ap_config_t *conf;
    char *pidfile; /* as written at start: a reload does not move it */
    ap_listener_t *listeners;
    size_t nlisteners;
    ap_shm_t *shm;
    wslot_t slots[AP_SLOTS];
    unsigned generation;
    int sigfd;
    mstate_t state;
    uint64_t kill_at; /* monotonic; 0 = none */
    uint64_t health_at; /* monotonic: the next look at the workers' health */
    int pidfile_written;
} M;

static const int handled_signals[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1,
                                      SIGUSR2, SIGCHLD, SIGTTIN, SIGTTOU};

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

static void remove_pidfile(void)
{
    pid_t pid;
    /* Only our own: a newer master may have taken the name over. */
    if (M.pidfile_written && ap_master_read_pidfile(M.pidfile, &pid) == 0 && pid == getpid())
        unlink(M.pidfile);
    M.pidfile_written = 0;
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

static void spawn(size_t slot, int id)
{
    wslot_t *s = &M.slots[slot];
    ap_shm_slot_t *shs = &M.shm->slots[slot];
    memset(shs, 0, sizeof(*shs));
    shs->state = AP_WORKER_STARTING;
    shs->started_ms = ap_clock_wall_ms();
    shs->heartbeat_ms = ap_clock_mono_ms();

    pid_t pid = fork();
    if (pid < 0) {
        ap_log_errno(AP_LOG_ALERT, errno, "fork() for worker %d failed", id);
        s->state = W_RESPAWN;
        s->id = id;
        s->generation = M.generation;
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
    s->id = id;
    s->generation = M.generation;
    s->started_ms = ap_clock_mono_ms();
    ap_shm_store(shs->pid, (int32_t)pid);
    ap_log(AP_LOG_INFO, "worker %d started (pid %ld)", id, (long)pid);
}

static size_t free_slot(void)
{
    for (size_t i = 0; i < AP_SLOTS; i++)
        if (M.slots[i].state == W_EMPTY)
            return i;
    return AP_SLOTS;
}

/* Starts workers 0..workers-1 of the current generation. */
static void spawn_generation(void)
{
    for (uint32_t id = 0; id < M.conf->workers; id++) {
        size_t slot = free_slot();
        if (slot == AP_SLOTS) {
            ap_log(AP_LOG_ALERT, "no free worker slot for worker %u", id);
            return;
        }
        memset(&M.slots[slot], 0, sizeof(M.slots[slot]));
        spawn(slot, (int)id);
    }
}

static void signal_workers(int sig, int new_state)
{
    for (size_t i = 0; i < AP_SLOTS; i++) {
        wslot_t *s = &M.slots[i];
        if (s->state == W_RESPAWN && new_state == W_STOPPING) {
            s->state = W_EMPTY;
            continue;
        }
        if (s->state != W_RUNNING && s->state != W_STOPPING)
            continue;
        if (kill(s->pid, sig) < 0 && errno != ESRCH)
            ap_log_errno(AP_LOG_ERR, errno, "kill(%ld, %d) failed", (long)s->pid, sig);
        if (new_state)
            s->state = (wstate_t)new_state;
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

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        size_t i;
        for (i = 0; i < AP_SLOTS; i++)
            if ((M.slots[i].state == W_RUNNING || M.slots[i].state == W_STOPPING) &&
                M.slots[i].pid == pid)
                break;
        if (i == AP_SLOTS)
            continue;
        wslot_t *s = &M.slots[i];
        ap_shm_slot_t *shs = &M.shm->slots[i];
        ap_shm_store(shs->state, AP_WORKER_FREE);
        ap_shm_store(shs->pid, 0);
        ap_shm_store(shs->in_flight, 0);
        ap_shm_store(shs->connections, 0);

        char how[64];
        if (WIFEXITED(status))
            snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            snprintf(how, sizeof(how), "was killed by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else
            snprintf(how, sizeof(how), "ended (status 0x%x)", status);

        int expected = s->state == W_STOPPING || M.state != M_RUNNING;
        int wanted = M.state == M_RUNNING && s->state == W_RUNNING &&
                     s->generation == M.generation && (uint32_t)s->id < M.conf->workers;
        if (expected) {
            ap_log(AP_LOG_INFO, "worker %d (pid %ld) %s", s->id, (long)pid, how);
            s->state = W_EMPTY;
            continue;
        }
        ap_log(AP_LOG_ERR, "worker %d (pid %ld) %s unexpectedly", s->id, (long)pid, how);
        if (!wanted) {
            s->state = W_EMPTY;
            continue;
        }
        uint64_t now = ap_clock_mono_ms();
        s->restarts++;
        if (now - s->started_ms < M.conf->min_uptime_ms) {
            /* It died young: a broken deploy must not fork-bomb the host. */
            s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : AP_BACKOFF_FIRST_MS;
            if (s->backoff_ms > AP_BACKOFF_MAX_MS)
                s->backoff_ms = AP_BACKOFF_MAX_MS;
            s->state = W_RESPAWN;
            s->respawn_at = now + s->backoff_ms;
            ap_log(AP_LOG_WARN, "worker %d died within min_uptime: restarting in %llu ms", s->id,
                   (unsigned long long)s->backoff_ms);
        } else {
            s->backoff_ms = 0;
            spawn(i, s->id);
        }
    }
}

static void reload(void)
{
    ap_buf_t errors;
    ap_buf_init(&errors);
    ap_log(AP_LOG_NOTICE, "reloading configuration %s", M.conf->path);
    ap_config_t *conf = ap_config_load(M.conf->path, environ, &errors);
    if (conf == NULL) {
        char *save = NULL;
        for (char *line = strtok_r(errors.data, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            ap_log(AP_LOG_ERR, "reload: %s", line);
        ap_log(AP_LOG_ERR, "reload failed: configuration is invalid; keeping the running one");
        ap_buf_cleanup(&errors);
        return;
    }
    ap_buf_cleanup(&errors);

    /* The listeners stay bound across a reload; changing them needs a
     * restart for now. */
    int same = conf->nlisten == M.conf->nlisten;
    for (size_t i = 0; same && i < conf->nlisten; i++)
        same = ap_listen_same(&conf->listen[i], &M.conf->listen[i]);
    if (!same)
        ap_log(AP_LOG_WARN, "reload: server.listen changes take effect at the next restart");
    if (strcmp(conf->pidfile, M.pidfile) != 0)
        ap_log(AP_LOG_WARN, "reload: server.pidfile changes take effect at the next restart");
    if (strcmp(conf->error_log, M.conf->error_log) != 0) {
        int rc = ap_log_open(conf->error_log);
        if (rc < 0)
            ap_log_errno(AP_LOG_ERR, rc, "reload: opening error_log \"%s\" failed",
                         conf->error_log);
    }
    ap_log_level = conf->log_level;

    ap_config_free(M.conf);
    M.conf = conf;
    M.generation++;
    /* Old workers finish what they hold while the new ones take over the
     * same listening sockets: no connection is refused. */
    signal_workers(SIGQUIT, W_STOPPING);
    spawn_generation();
    ap_log(AP_LOG_NOTICE, "reload: generation %u started with %u workers", M.generation,
           M.conf->workers);
}

static void handle_signal(int sig)
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
        M.state = M_TERMINATING;
        signal_workers(SIGTERM, W_STOPPING);
        M.kill_at = now + AP_FAST_SHUTDOWN_MS;
        break;
    case SIGQUIT:
        if (M.state != M_RUNNING)
            break;
        ap_log(AP_LOG_NOTICE, "graceful shutdown");
        M.state = M_QUITTING;
        signal_workers(SIGQUIT, W_STOPPING);
        M.kill_at = now + M.conf->shutdown_timeout_ms + AP_GRACEFUL_MARGIN_MS;
        break;
    case SIGHUP:
        if (M.state == M_RUNNING)
            reload();
        break;
    case SIGUSR1: {
        int rc = ap_log_reopen();
        if (rc < 0)
            ap_log_errno(AP_LOG_ERR, rc, "reopening the error log failed");
        ap_log(AP_LOG_NOTICE, "log files reopened");
        signal_workers(SIGUSR1, 0);
        break;
    }
    default:
        ap_log(AP_LOG_INFO, "signal %d ignored", sig);
        break;
    }
}

/* A worker whose database pool has had no connection for unhealthy_grace
 * while other workers' pools are fine has a fault of its own: replace it.
 * When every pool is down the database is, and replacing workers would
 * only add churn: /ready already tells the balancer. */
static void check_health(uint64_t now)
{
    if (M.state != M_RUNNING || M.conf->db_uri == NULL)
        return;
    int healthy = 0;
    for (size_t i = 0; i < AP_SLOTS; i++)
        if (M.slots[i].state == W_RUNNING && M.slots[i].generation == M.generation &&
            ap_shm_load(M.shm->slots[i].db_state) == AP_DB_HEALTHY)
            healthy++;
    if (healthy == 0)
        return;
    for (size_t i = 0; i < AP_SLOTS; i++) {
        wslot_t *s = &M.slots[i];
        ap_shm_slot_t *shs = &M.shm->slots[i];
        if (s->state != W_RUNNING || s->generation != M.generation ||
            ap_shm_load(shs->db_state) != AP_DB_UNHEALTHY ||
            now - ap_shm_load(shs->db_since_ms) < M.conf->db_unhealthy_grace_ms)
            continue;
        size_t slot = free_slot();
        if (slot == AP_SLOTS)
            return;
        ap_log(AP_LOG_WARN,
               "worker %d (pid %ld): database pool unhealthy for over %llu ms while %d other "
               "workers are healthy: replacing it",
               s->id, (long)s->pid, (unsigned long long)M.conf->db_unhealthy_grace_ms, healthy);
        if (kill(s->pid, SIGQUIT) < 0 && errno != ESRCH)
            ap_log_errno(AP_LOG_ERR, errno, "kill(%ld, QUIT) failed", (long)s->pid);
        s->state = W_STOPPING;
        memset(&M.slots[slot], 0, sizeof(M.slots[slot]));
        M.slots[slot].restarts = s->restarts + 1;
        spawn(slot, s->id);
    }
}

static void run_timers(void)
{
    uint64_t now = ap_clock_mono_ms();
    if (now >= M.health_at) {
        check_health(now);
        M.health_at = now + AP_HEALTH_CHECK_MS;
    }
    for (size_t i = 0; i < AP_SLOTS; i++) {
        wslot_t *s = &M.slots[i];
        if (s->state == W_RESPAWN && now >= s->respawn_at) {
            if (M.state == M_RUNNING && s->generation == M.generation &&
                (uint32_t)s->id < M.conf->workers)
                spawn(i, s->id);
            else
                s->state = W_EMPTY;
        }
    }
    if (M.kill_at && now >= M.kill_at) {
        ap_log(AP_LOG_WARN, "%zu workers did not stop in time: killing them", alive_workers());
        signal_workers(SIGKILL, 0);
        M.kill_at = 0;
    }
}

static int next_timeout(void)
{
    uint64_t now = ap_clock_mono_ms();
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < AP_SLOTS; i++)
        if (M.slots[i].state == W_RESPAWN && M.slots[i].respawn_at < next)
            next = M.slots[i].respawn_at;
    if (M.kill_at && M.kill_at < next)
        next = M.kill_at;
    if (M.state == M_RUNNING && M.conf->db_uri && M.health_at < next)
        next = M.health_at;
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
    remove_pidfile();
    ap_listeners_close(M.listeners, M.nlisteners, 1);
    M.listeners = NULL;
    ap_shm_destroy(M.shm);
    M.shm = NULL;
    if (M.sigfd >= 0)
        close(M.sigfd);
    free(M.pidfile);
    ap_config_free(M.conf);
    M.conf = NULL;
}

int ap_master_run(ap_config_t *conf, int ready_fd)
{
    memset(&M, 0, sizeof(M));
    M.conf = conf;
    M.sigfd = -1;
    M.pidfile = ap_xstrdup(conf->pidfile);

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
    rc = ap_listeners_bind(conf->listen, conf->nlisten, &M.listeners);
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
    rc = write_pidfile(M.pidfile);
    if (rc < 0) {
        ap_log_errno(AP_LOG_CRIT, rc, "writing pidfile \"%s\" failed", M.pidfile);
        cleanup();
        return 1;
    }
    M.pidfile_written = 1;
    ap_log(AP_LOG_NOTICE, "apiary %s started: master pid %ld, %u workers", AP_VERSION,
           (long)getpid(), conf->workers);
    if (ready_fd >= 0) {
        /* Daemonized: the parent exits 0 on this byte; from now on nobody
         * reads our terminal, so stdio goes to /dev/null. */
        if (write(ready_fd, "1", 1) < 0)
            ap_log_errno(AP_LOG_WARN, errno, "telling the parent we started failed");
        close(ready_fd);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            close(null);
        }
    }
    spawn_generation();

    for (;;) {
        if (M.state != M_RUNNING && alive_workers() == 0)
            break;
        struct pollfd pfd = {.fd = M.sigfd, .events = POLLIN};
        int n = poll(&pfd, 1, next_timeout());
        if (n < 0 && errno != EINTR) {
            ap_log_errno(AP_LOG_ALERT, errno, "poll() failed");
            break;
        }
        if (n > 0) {
            struct signalfd_siginfo si;
            while (read(M.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                handle_signal((int)si.ssi_signo);
        }
        run_timers();
    }
    ap_log(AP_LOG_NOTICE, "exiting");
    cleanup();
    return 0;
}
