/* SPDX-License-Identifier: BSD-2-Clause */
/* TLS with OpenSSL 3 over memory BIOs: the contexts built from [tls] (one
 * per certificate, chosen by SNI) and the checks apiary -t makes on them,
 * session tickets sealed with the keys the master keeps in shared memory,
 * and a per-connection engine that turns ciphertext into plaintext and
 * back without touching the socket: conn.c moves the bytes, on its
 * existing non-blocking read and write path. */
#ifndef AP_TLS_H
#define AP_TLS_H

#include <stddef.h>

#include "buf.h"

struct ap_config_s;
struct ap_shm_s;
struct ap_metrics_s;

/* The loaded certificates of one configuration snapshot (immutable once
 * built; a worker inherits it from the master through fork). */
typedef struct ap_tls_s ap_tls_t;
/* One connection's TLS state. */
typedef struct ap_tls_conn_s ap_tls_conn_t;

/* Reads every [tls] certificate and key of conf and builds a context for
 * each, with conf's protocols, ciphers, tickets and ALPN. Rejects, one
 * line each in errors as "WHERE: tls.certificate: why" (WHERE being the
 * certificate line's file:line): a file that cannot be read or holds no
 * PEM certificate or key, a key that does not match its certificate, an
 * expired certificate, and a key file anyone may read. A certificate with
 * less than 14 days left, or not valid yet, goes to warnings. Returns the
 * set, or NULL with *nerrors raised by the number of lines added. */
ap_tls_t *ap_tls_new(const struct ap_config_s *conf, ap_buf_t *errors, ap_buf_t *warnings,
                     int *nerrors);
void ap_tls_free(ap_tls_t *tls);

/* Checks an OpenSSL cipher list (tls13 = 0) or TLS 1.3 suite list
 * (tls13 = 1). Returns 0, or -1 with why filled in. */
int ap_tls_check_ciphers(const char *list, int tls13, char *why, size_t size);

/* Whether host (an SNI name) matches a certificate name: equal ignoring
 * case, or "*.example.com" for exactly one label before example.com. */
int ap_tls_name_match(const char *pattern, const char *host);

/* The index of the certificate SNI picks for host: the first with an
 * exact name, else the first with a matching wildcard, else 0. */
size_t ap_tls_select(const ap_tls_t *tls, const char *host);

/* In a worker after fork: session tickets are sealed with the keys of
 * this segment. */
void ap_tls_worker_init(struct ap_shm_s *shm);

/* What ap_tls_conn_read found. */
enum {
    AP_TLS_AGAIN = 0,   /* the handshake goes on: wait for more bytes */
    AP_TLS_OK,          /* established; plaintext (maybe none) appended */
    AP_TLS_CLOSED,      /* the client sent close_notify: no more input */
    AP_TLS_FAILED,      /* fatal: close (an alert may be in the output) */
    AP_TLS_PLAIN_HTTP,  /* the client speaks plain HTTP: answer it in clear */
};

/* A server-side connection on tls's default certificate; handshake
 * outcomes are counted in m. NULL when OpenSSL cannot allocate. */
ap_tls_conn_t *ap_tls_conn_new(ap_tls_t *tls, struct ap_metrics_s *m);
void ap_tls_conn_free(ap_tls_conn_t *t);

/* Feeds len bytes read from the socket; drives the handshake and appends
 * the plaintext to plain (NUL-terminated, as conn.c's input buffer is).
 * Send ap_tls_conn_output afterwards whatever the result: the handshake,
 * alerts and tickets are written there. */
int ap_tls_conn_read(ap_tls_conn_t *t, const char *data, size_t len, ap_buf_t *plain);

/* Encrypts len bytes into the output. 0, or -1 when the connection is not
 * established or failed (close it). */
int ap_tls_conn_write(ap_tls_conn_t *t, const void *data, size_t len);

/* Moves up to cap bytes of ciphertext waiting for the socket into buf;
 * returns how many (0: nothing waits). */
size_t ap_tls_conn_output(ap_tls_conn_t *t, char *buf, size_t cap);

/* Queues close_notify (once; only on an established connection that has
 * not failed). */
void ap_tls_conn_shutdown(ap_tls_conn_t *t);

/* The connection goes before its handshake finished: counts why
 * (AP_TLS_FAIL_TIMEOUT, or AP_TLS_FAIL_EOF when the client sent part of a
 * handshake and closed). Nothing is counted for an established or
 * already failed connection, or for a client that closed without a byte. */
void ap_tls_conn_abort(ap_tls_conn_t *t, int reason);

#endif
