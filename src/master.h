/* SPDX-License-Identifier: BSD-2-Clause */
/* The master process: binds, forks, supervises; never touches a request. */
#ifndef AP_MASTER_H
#define AP_MASTER_H

#include "config.h"

/* Runs the master with conf (ownership passes to the master) until it is
 * told to stop. ready_fd, when >= 0, gets one byte once the listeners are
 * bound, the pidfile written and the workers forked, and is then closed:
 * the daemonizing parent waits on it. Returns the process exit status. */
int ap_master_run(ap_config_t *conf, int ready_fd);

/* Reads the pid in pidfile; 0 or -errno (-ESRCH when the file holds no
 * usable pid). */
int ap_master_read_pidfile(const char *pidfile, pid_t *pid);

#endif
