/* SPDX-License-Identifier: BSD-2-Clause */
/* The master's control socket: a unix socket (mode 0600) that takes one
 * command line and answers one JSON document, then closes. Commands:
 * status, check, reload, upgrade, drain. reload and upgrade answer when
 * the outcome is known. */
#ifndef AP_CONTROL_H
#define AP_CONTROL_H

#include "buf.h"

/* Client side: sends cmd to the socket at path and reads the answer into
 * reply, waiting up to timeout_ms. Returns 0, or -errno (-ETIMEDOUT). */
int ap_control_request(const char *path, const char *cmd, ap_buf_t *reply, int timeout_ms);

/* Server side: a listening socket at path, owner-only; stale socket files
 * are replaced. Returns the descriptor or -errno. */
int ap_control_listen(const char *path);

#endif
