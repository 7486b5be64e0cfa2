/* SPDX-License-Identifier: BSD-2-Clause */
/* The master process: binds, forks, supervises; never touches a request. */
#ifndef AP_MASTER_H
#define AP_MASTER_H

#include <sys/types.h>

#include "config.h"
#include "listener.h"

typedef struct ap_master_opts_s {
    /* When >= 0, gets one byte once the listeners are bound and the
     * pidfile written, and is then closed: the daemonizing parent waits on
     * it. */
    int ready_fd;
    char *exe;    /* the binary an upgrade runs (absolute path) */
    char **argv;  /* its arguments */
    ap_listener_t *inherited; /* listening sockets from LISTEN_FDS */
    size_t ninherited;
    pid_t upgrade_from; /* the old master of an upgrade: QUIT it once ready */
} ap_master_opts_t;

/* Runs the master with conf (ownership passes to the master) until it is
 * told to stop. Returns the process exit status. */
int ap_master_run(ap_config_t *conf, const ap_master_opts_t *opts);

/* Reads the pid in pidfile; 0 or -errno (-ESRCH when the file holds no
 * usable pid). */
int ap_master_read_pidfile(const char *pidfile, pid_t *pid);

#endif
