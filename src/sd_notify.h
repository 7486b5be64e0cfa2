/* SPDX-License-Identifier: BSD-2-Clause */
/* systemd's notification protocol (sd_notify(3)): datagrams of
 * "KEY=VALUE" lines to the socket named by $NOTIFY_SOCKET. */
#ifndef AP_SD_NOTIFY_H
#define AP_SD_NOTIFY_H

/* Sends state ("READY=1\nSTATUS=...") when NOTIFY_SOCKET is set; does
 * nothing otherwise. Returns 0, or -errno. */
int ap_sd_notify(const char *state);

#endif
