/* SPDX-License-Identifier: BSD-2-Clause */
/* Clocks: monotonic milliseconds for timeouts, wall time for logs and Date. */
#ifndef AP_CLOCK_H
#define AP_CLOCK_H

#include <stdint.h>
#include <stddef.h>

/* Milliseconds from CLOCK_MONOTONIC: for durations and deadlines. */
uint64_t ap_clock_mono_ms(void);

/* Microseconds from CLOCK_MONOTONIC: for request durations. */
uint64_t ap_clock_mono_us(void);

/* Milliseconds since the epoch, from CLOCK_REALTIME. */
uint64_t ap_clock_wall_ms(void);

/* Formats epoch milliseconds as RFC 3339 UTC with milliseconds
 * ("2026-11-22T02:26:11.123Z") into out (at least 25 bytes). */
void ap_clock_rfc3339(uint64_t wall_ms, char *out, size_t size);

/* Formats epoch seconds as an HTTP date ("Sun, 22 Nov 2026 02:26:11 GMT")
 * into out (at least 30 bytes). */
void ap_clock_http_date(int64_t secs, char *out, size_t size);

#endif
