/* SPDX-License-Identifier: BSD-2-Clause */
/* The status view. */
#include "status.h"

#include <stdio.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "clock.h"
#include "json.h"
#include "version.h"

const char *ap_status_state_name(uint32_t state)
{
    switch (state) {
    case AP_WORKER_STARTING:
        return "starting";
    case AP_WORKER_READY:
        return "ready";
    case AP_WORKER_DRAINING:
        return "draining";
    case AP_WORKER_UNHEALTHY:
        return "unhealthy";
    case AP_WORKER_BACKOFF:
        return "backoff";
    default:
        return "free";
    }
}

const char *ap_status_db_name(uint32_t state)
{
    switch (state) {
    case AP_DB_CONNECTING:
        return "connecting";
    case AP_DB_HEALTHY:
        return "healthy";
    case AP_DB_UNHEALTHY:
        return "unhealthy";
    default:
        return "none";
    }
}

int ap_status_ready_workers(ap_shm_t *shm)
{
    int n = 0;
    if (ap_shm_load(shm->draining))
        return 0;
    for (uint32_t i = 0; i < shm->nslots; i++)
        if (ap_shm_load(shm->slots[i].pid) > 0 &&
            ap_shm_load(shm->slots[i].state) == AP_WORKER_READY)
            n++;
    return n;
}

static void append_str_field(ap_buf_t *out, const char *key, const char *v, size_t max)
{
    ap_buf_printf(out, "\"%s\":", key);
    ap_json_append_string(out, v, strnlen(v, max));
}

void ap_status_json(ap_buf_t *out, ap_shm_t *shm)
{
    uint64_t now = ap_clock_wall_ms();
    char config[sizeof(shm->config_path)], result[sizeof(shm->reload_result)],
        message[sizeof(shm->reload_message)];
    uint64_t started, reload_at;
    /* A consistent copy of what the master writes (seqlock). */
    for (int tries = 0; tries < 100; tries++) {
        uint32_t seq = __atomic_load_n(&shm->master_seq, __ATOMIC_ACQUIRE);
        memcpy(config, shm->config_path, sizeof(config));
        memcpy(result, shm->reload_result, sizeof(result));
        memcpy(message, shm->reload_message, sizeof(message));
        started = shm->master_started_ms;
        reload_at = shm->reload_at_ms;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (!(seq & 1) && seq == __atomic_load_n(&shm->master_seq, __ATOMIC_RELAXED))
            break;
    }
    config[sizeof(config) - 1] = result[sizeof(result) - 1] = message[sizeof(message) - 1] = '\0';

    ap_buf_printf(out, "{\"master\":{\"pid\":%d,\"version\":\"%s\",", (int)shm->master_pid,
                  AP_VERSION);
    append_str_field(out, "config", config, sizeof(config));
    ap_buf_printf(out, ",\"uptime_s\":%llu,\"draining\":%s,\"reload\":{",
                  (unsigned long long)(now > started ? (now - started) / 1000 : 0),
                  ap_shm_load(shm->draining) ? "true" : "false");
    append_str_field(out, "result", result, sizeof(result));
    ap_buf_printf(out, ",\"at_ms\":%llu,", (unsigned long long)reload_at);
    append_str_field(out, "message", message, sizeof(message));
    ap_buf_printf(out, "},\"ready_workers\":%d},\"workers\":[", ap_status_ready_workers(shm));

    int first = 1;
    for (uint32_t i = 0; i < shm->nslots; i++) {
        ap_shm_slot_t *s = &shm->slots[i];
        int32_t pid = ap_shm_load(s->pid);
        /* A worker waiting out its back-off has no pid but shows. */
        if (pid <= 0 && ap_shm_load(s->state) != AP_WORKER_BACKOFF)
            continue;
        uint64_t st = ap_shm_load(s->started_ms);
        char reason[sizeof(s->last_reason) + 1];
        memcpy(reason, s->last_reason, sizeof(s->last_reason));
        reason[sizeof(s->last_reason)] = '\0';
        ap_buf_printf(out,
                      "%s{\"id\":%d,\"slot\":%u,\"pid\":%d,\"state\":\"%s\",\"uptime_s\":%llu,"
                      "\"restarts\":%u,",
                      first ? "" : ",", (int)ap_shm_load(s->id), i, (int)pid,
                      ap_status_state_name(ap_shm_load(s->state)),
                      (unsigned long long)(now > st ? (now - st) / 1000 : 0),
                      (unsigned)ap_shm_load(s->restarts));
        append_str_field(out, "last_restart_reason", reason, sizeof(reason));
        ap_buf_printf(out,
                      ",\"requests\":%llu,\"in_flight\":%llu,\"connections\":%llu,"
                      "\"rss_bytes\":%llu,\"db\":\"%s\"}",
                      (unsigned long long)ap_shm_load(s->requests),
                      (unsigned long long)ap_shm_load(s->in_flight),
                      (unsigned long long)ap_shm_load(s->connections),
                      (unsigned long long)ap_shm_load(s->rss_bytes),
                      ap_status_db_name(ap_shm_load(s->db_state)));
        first = 0;
    }
    ap_buf_append_str(out, "]}");
}

static const char *jstr(yajl_val o, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(o, path, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : "";
}

static long long jnum(yajl_val o, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(o, path, yajl_t_number);
    return v && YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v) : 0;
}

int ap_status_table(ap_buf_t *out, const char *json)
{
    char err[128];
    yajl_val root = yajl_tree_parse(json, err, sizeof(err));
    const char *mp[] = {"master", NULL}, *wp[] = {"workers", NULL}, *rp[] = {"reload", NULL};
    yajl_val m = root ? yajl_tree_get(root, mp, yajl_t_object) : NULL;
    yajl_val ws = root ? yajl_tree_get(root, wp, yajl_t_array) : NULL;
    if (m == NULL || ws == NULL) {
        yajl_tree_free(root);
        return -1;
    }
    yajl_val r = yajl_tree_get(m, rp, yajl_t_object);
    ap_buf_printf(out, "master pid %lld, apiary %s, config %s, up %llds%s\n", jnum(m, "pid"),
                  jstr(m, "version"), jstr(m, "config"), jnum(m, "uptime_s"),
                  YAJL_IS_TRUE(yajl_tree_get(m, (const char *[]){"draining", NULL}, yajl_t_any))
                      ? ", DRAINING"
                      : "");
    if (r && jstr(r, "result")[0])
        ap_buf_printf(out, "last reload: %s%s%s\n", jstr(r, "result"),
                      jstr(r, "message")[0] ? ": " : "", jstr(r, "message"));
    ap_buf_printf(out, "%-4s %-8s %-10s %8s %8s %-13s %10s %9s %10s %-10s\n", "id", "pid", "state",
                  "uptime", "restarts", "last reason", "requests", "in-flight", "rss", "db");
    for (size_t i = 0; i < YAJL_GET_ARRAY(ws)->len; i++) {
        yajl_val w = YAJL_GET_ARRAY(ws)->values[i];
        long long rss = jnum(w, "rss_bytes");
        char rss_text[32];
        snprintf(rss_text, sizeof(rss_text), "%.1fM", (double)rss / (1024.0 * 1024.0));
        ap_buf_printf(out, "%-4lld %-8lld %-10s %7llds %8lld %-13s %10lld %9lld %10s %-10s\n",
                      jnum(w, "id"), jnum(w, "pid"), jstr(w, "state"), jnum(w, "uptime_s"),
                      jnum(w, "restarts"),
                      jstr(w, "last_restart_reason")[0] ? jstr(w, "last_restart_reason") : "-",
                      jnum(w, "requests"), jnum(w, "in_flight"), rss_text, jstr(w, "db"));
    }
    yajl_tree_free(root);
    return 0;
}
