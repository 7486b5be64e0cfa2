/* SPDX-License-Identifier: BSD-2-Clause */
/* Privileges: the master, started as root, binds the listeners and keeps
 * root (to bind new listeners on reload and to fork); each worker drops to
 * [server] user/group right after fork, for good, before it touches a
 * client byte. */
#ifndef AP_PRIVDROP_H
#define AP_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

struct ap_config_s;

/* Looks up user (a name or a number) and group (NULL: the user's primary
 * group). 0 with *uid and *gid set, or -1 with a message in why and *key set to
 * "user" or "group" (the key to blame). */
int ap_privdrop_resolve(const char *user, const char *group, uid_t *uid, gid_t *gid, char *why,
                        size_t size, const char **key);

/* In a worker, right after fork: when conf->run_as is set and the process
 * runs as root, sets the supplementary groups (the user's, with
 * initgroups), the gid and the uid, then checks that root cannot be
 * regained. Returns 0, or -1 after logging why: the caller must not serve
 * (a worker that should have dropped privileges never runs as root).
 * Not root and already the user: nothing to do (0). Not root and another
 * user: a warning (once per process), 0. */
int ap_privdrop_worker(const struct ap_config_s *conf);

/* In the master: gives path (a log file the workers open themselves, on
 * USR1) to the workers' user and group, creating it if needed (mode 0640),
 * so that a worker can reopen it after the drop. Nothing when no drop is
 * configured or the master is not root. 0 or -errno (logged). */
int ap_privdrop_own_file(const struct ap_config_s *conf, const char *path);

/* In the master at start: warns when a user is configured but the master
 * is not root (workers then keep the master's identity), or when workers
 * will run as root. */
void ap_privdrop_master_check(const struct ap_config_s *conf);

#endif
