/* SPDX-License-Identifier: BSD-2-Clause */
/* A worker process: accept, serve, drain, exit. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access_log.h"
#include "alloc.h"
#include "clock.h"
#include "conn.h"
#include "gzip.h"
#include "log.h"
#include "static.h"
#include "tls.h"
#include "security.h"

/* Connections accepted per readiness event. Every worker polls the same
 * listening sockets; taking a few at a time leaves the rest of a burst to
 * the other workers, which spreads load (nginx's multi_accept off). */
#define AP_ACCEPT_BATCH 4
#define AP_HEARTBEAT_MS 1000
#define AP_ACCEPT_RETRY_MS 100

static void start_accepting(ap_worker_t *w);
static void stop_accepting(ap_worker_t *w);
static void update_accepting(ap_worker_t *w, uint32_t state);

static void finish_if_done(ap_worker_t *w)
{
    if (w->draining && w->nconns == 0 && !w->stopping) {
        w->stopping = 1;
        uv_stop(w->loop);
    }
}

void ap_worker_conn_added(ap_worker_t *w, ap_conn_t *c)
{
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    ap_shm_add(w->slot->connections, 1);
    if (w->nconns >= w->conf->max_connections)
        stop_accepting(w);
}

void ap_worker_conn_closed(ap_worker_t *w, ap_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    ap_shm_sub(w->slot->connections, 1);
    if (!w->draining && !w->accepting && w->nconns < w->conf->max_connections &&
        !uv_is_active((uv_handle_t *)&w->accept_retry))
        update_accepting(w, ap_shm_load(w->slot->state));
    finish_if_done(w);
}

static void on_accept_retry(uv_timer_t *t)
{
    ap_worker_t *w = t->data;
    if (!w->draining)
        update_accepting(w, ap_shm_load(w->slot->state));
}

static void on_listener(uv_poll_t *p, int status, int events)
{
    ap_worker_t *w = p->data;
    ap_listener_t *l = &w->listeners[p - w->polls];
    (void)events;
    if (status < 0) {
        ap_log_errno(AP_LOG_ERR, status, "polling listener %s failed", l->text);
        return;
    }
    for (int i = 0; i < AP_ACCEPT_BATCH && w->accepting; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED)
                return; /* another worker took it, or the client gave up */
            ap_log_errno(AP_LOG_ERR, err, "accept4() on %s failed", l->text);
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                /* Level-triggered polling would spin: back off a little. */
                stop_accepting(w);
                uv_timer_start(&w->accept_retry, on_accept_retry, AP_ACCEPT_RETRY_MS, 0);
            }
            return;
        }
        int rc = ap_conn_accept(w, fd, l);
        if (rc < 0)
            ap_log_errno(AP_LOG_ERR, rc, "setting up a connection on %s failed", l->text);
    }
}

static void start_accepting(ap_worker_t *w)
{
    if (w->accepting || w->draining)
        return;
    for (size_t i = 0; i < w->nlisteners; i++)
        uv_poll_start(&w->polls[i], UV_READABLE, on_listener);
    w->accepting = 1;
}

static void stop_accepting(ap_worker_t *w)
{
    if (!w->accepting)
        return;
    for (size_t i = 0; i < w->nlisteners; i++)
        uv_poll_stop(&w->polls[i]);
    w->accepting = 0;
}

/* A worker takes connections once it can serve them, so that during a
 * rolling restart the old workers keep the traffic until the new one is
 * ready; but when no other worker is ready either (start-up, database
 * down) it takes them anyway, to answer /live and say 503 rather than
 * leave clients in the accept queue. */
static void update_accepting(ap_worker_t *w, uint32_t state)
{
    if (w->draining)
        return;
    int others = 0;
    for (uint32_t i = 0; i < w->shm->nslots; i++) {
        ap_shm_slot_t *s = &w->shm->slots[i];
        if (s != w->slot && ap_shm_load(s->pid) > 0 && ap_shm_load(s->state) == AP_WORKER_READY)
            others++;
    }
    if (state == AP_WORKER_READY || others == 0) {
        if (!w->accepting && !uv_is_active((uv_handle_t *)&w->accept_retry) &&
            w->nconns < w->conf->max_connections)
            start_accepting(w);
    } else if (w->accepting) {
        stop_accepting(w);
    }
}

void ap_worker_update_state(ap_worker_t *w)
{
    uint32_t now = ap_shm_load(w->slot->state), next;
    const char *why;
    if (w->draining)
        next = AP_WORKER_DRAINING;
    else if (w->db == NULL || ap_db_ready(w->db, &why))
        next = AP_WORKER_READY;
    else if (now == AP_WORKER_READY || now == AP_WORKER_UNHEALTHY)
        next = AP_WORKER_UNHEALTHY;
    else
        next = AP_WORKER_STARTING;
    if (next != now)
        ap_shm_store(w->slot->state, next);
    update_accepting(w, next);
}

/* USR1: the error log and the access log are reopened by path. */
static void reopen_logs(ap_worker_t *w)
{
    w->log_generation = ap_shm_load(w->shm->log_generation);
    int rc = ap_log_reopen();
    if (rc < 0)
        ap_log_errno(AP_LOG_ERR, rc, "reopening the error log failed");
    rc = ap_access_reopen();
    if (rc < 0)
        ap_log_errno(AP_LOG_ERR, rc, "reopening the access log \"%s\" failed",
                     w->conf->access_log);
}

static void on_heartbeat(uv_timer_t *t)
{
    ap_worker_t *w = t->data;
    ap_shm_store(w->slot->heartbeat_ms, ap_clock_mono_ms());
    /* The master bumps the generation before it sends USR1: a worker
     * that missed the signal (it was starting) catches up here. */
    if (ap_shm_load(w->shm->log_generation) != w->log_generation)
        reopen_logs(w);
    ap_worker_update_state(w);
}

static void on_db_change(void *data)
{
    ap_worker_update_state(data);
}

static void on_deadline(uv_timer_t *t)
{
    ap_worker_t *w = t->data;
    ap_log(AP_LOG_WARN, "shutdown_timeout reached with %zu connections open: closing them",
           w->nconns);
    for (ap_conn_t *c = w->conns; c; c = c->next)
        ap_conn_close(c);
}

/* Graceful stop: no new connections; requests in progress finish with
 * "Connection: close"; idle keep-alive connections close after a grace. */
static void drain(ap_worker_t *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    ap_shm_store(w->slot->state, AP_WORKER_DRAINING);
    stop_accepting(w);
    uv_timer_stop(&w->accept_retry);
    ap_log(AP_LOG_INFO, "draining %zu connections", w->nconns);
    ap_conn_t *next;
    for (ap_conn_t *c = w->conns; c; c = next) {
        next = c->next; /* ap_conn_drain may close c, but frees it later */
        ap_conn_drain(c);
    }
    uv_timer_start(&w->deadline, on_deadline, w->conf->shutdown_timeout_ms, 0);
    finish_if_done(w);
}

static void on_signal(uv_signal_t *s, int signum)
{
    ap_worker_t *w = s->data;
    switch (signum) {
    case SIGQUIT:
        drain(w);
        break;
    case SIGTERM:
        ap_log(AP_LOG_INFO, "fast shutdown: closing %zu connections", w->nconns);
        drain(w);
        for (ap_conn_t *c = w->conns; c; c = c->next)
            ap_conn_close(c);
        break;
    case SIGUSR1:
        reopen_logs(w);
        break;
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void ap_worker_main(const ap_config_t *conf, ap_shm_t *shm, int slot, int id,
                    ap_listener_t *listeners, size_t nlisteners)
{
    ap_worker_t w;
    memset(&w, 0, sizeof(w));
    w.conf = conf;
    w.id = id;
    w.shm = shm;
    w.slot = &shm->slots[slot];
    w.listeners = listeners;
    w.nlisteners = nlisteners;
    ap_log_set_process("worker", id);

    /* Signals the master handles through signalfd arrive here blocked and
     * with the master's dispositions: start from a clean slate. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the master, which tells us */
    signal(SIGHUP, SIG_IGN);
    /* A USR1 sent before the handler below is in place must not kill the
     * worker (its default action); the heartbeat catches up on it. */
    signal(SIGUSR1, SIG_IGN);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);

    /* [server] user/group: before anything else, and before the death
     * signal below, which a change of credentials clears. */
    if (ap_security_worker_start(conf) < 0)
        _exit(2);

    /* Orphaned workers would keep the listeners and refuse nobody while
     * nothing supervises them, and keep a restarted master from binding:
     * when the master dies, finish what is in progress and exit. */
    pid_t master = (pid_t)shm->master_pid;
    if (prctl(PR_SET_PDEATHSIG, SIGQUIT) < 0)
        ap_log_errno(AP_LOG_WARN, errno, "prctl(PR_SET_PDEATHSIG) failed");
    if (getppid() != master) {
        ap_log(AP_LOG_ERR, "the master exited before this worker started");
        _exit(1);
    }

    /* A test hook: APIARY_TEST_WORKER_EXIT=1 makes every worker exit at
     * once, as a broken deploy would, so that the tests can watch the
     * master's back-off. */
    const char *hook = getenv("APIARY_TEST_WORKER_EXIT");
    if (hook && strcmp(hook, "1") == 0) {
        ap_log(AP_LOG_ERR, "APIARY_TEST_WORKER_EXIT: exiting at start on purpose");
        _exit(3);
    }

    /* libuv: after fork, a child makes a loop of its own. */
    w.loop = &w.loop_storage;
    int rc = uv_loop_init(w.loop);
    if (rc < 0) {
        ap_log_errno(AP_LOG_CRIT, rc, "uv_loop_init() failed");
        _exit(2);
    }
    uv_timer_init(w.loop, &w.heartbeat);
    uv_timer_init(w.loop, &w.deadline);
    uv_timer_init(w.loop, &w.accept_retry);
    w.heartbeat.data = w.deadline.data = w.accept_retry.data = &w;
    uv_signal_t *sigs[] = {&w.sig_term, &w.sig_quit, &w.sig_usr1};
    int signums[] = {SIGTERM, SIGQUIT, SIGUSR1};
    for (size_t i = 0; i < 3; i++) {
        uv_signal_init(w.loop, sigs[i]);
        sigs[i]->data = &w;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }

    /* After the USR1 handler: a rotation from here on is seen. */
    w.log_generation = ap_shm_load(shm->log_generation);
    ap_access_init(w.loop, conf, id);
    /* Session tickets are sealed with the keys the master rotates. */
    ap_tls_worker_init(shm);

    w.polls = ap_xcalloc(nlisteners, sizeof(*w.polls));
    for (size_t i = 0; i < nlisteners; i++) {
        rc = uv_poll_init(w.loop, &w.polls[i], listeners[i].fd);
        if (rc < 0) {
            ap_log_errno(AP_LOG_CRIT, rc, "uv_poll_init() on %s failed", listeners[i].text);
            _exit(2);
        }
        w.polls[i].data = &w;
    }

    w.db = ap_db_new(w.loop, conf, w.slot, id);
    if (w.db) {
        w.db->on_change = on_db_change;
        w.db->on_change_data = &w;
    }

    w.statics = ap_static_new(conf);

    on_heartbeat(&w.heartbeat);
    uv_timer_start(&w.heartbeat, on_heartbeat, AP_HEARTBEAT_MS, AP_HEARTBEAT_MS);
    ap_worker_update_state(&w);

    uv_run(w.loop, UV_RUN_DEFAULT);

    ap_db_close(w.db);
    ap_static_free(w.statics);
    ap_gzip_cleanup();
    /* Close every handle and let their callbacks run, so that the process
     * exits with nothing leaked. */
    ap_access_stop();
    uv_walk(w.loop, close_walk, NULL);
    uv_run(w.loop, UV_RUN_DEFAULT);
    /* Responses still queued were logged as their writes were cancelled. */
    ap_access_close();
    rc = uv_loop_close(w.loop);
    if (rc < 0)
        ap_log_errno(AP_LOG_WARN, rc, "uv_loop_close() failed");
    free(w.polls);
    ap_shm_store(w.slot->state, AP_WORKER_FREE);
    ap_log(AP_LOG_DEBUG, "worker exiting");
    exit(0);
}
