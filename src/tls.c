/* SPDX-License-Identifier: BSD-2-Clause */
/* TLS: contexts, certificate checks, SNI, ALPN, tickets, and the
 * per-connection engine over memory BIOs. */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "alloc.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "shm.h"

/* A PEM file larger than this is not a certificate chain or a key. */
#define AP_TLS_PEM_MAX (1024 * 1024)
/* apiary -t warns about certificates with fewer days left. */
#define AP_TLS_WARN_DAYS 14
/* Plaintext asked of SSL_read per call: one record's worth. */
#define AP_TLS_READ_CHUNK (16 * 1024)

typedef struct {
    SSL_CTX *ctx;
    char **names; /* lower case: the DNS names of the SAN, else the CN */
    size_t nnames;
} tls_cert_t;

struct ap_tls_s {
    tls_cert_t *certs;
    size_t ncerts;
};

struct ap_tls_conn_s {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the client, for OpenSSL to read */
    BIO *wbio; /* ciphertext OpenSSL wrote, for the socket */
    ap_metrics_t *m;
    unsigned got_bytes : 1;   /* the client sent something */
    unsigned established : 1; /* the handshake completed */
    unsigned failed : 1;      /* fatal error, or counted as a failure */
    unsigned shut : 1;        /* close_notify queued */
    unsigned reneg : 1;       /* a renegotiation was refused */
};

/* The worker's shared segment, for the ticket keys. */
static ap_shm_t *ticket_shm;
/* AES-256-CBC, fetched once: EVP_aes_256_cbc() makes OpenSSL 3 look the
 * implementation up again for every ticket. */
static EVP_CIPHER *ticket_cipher;

void ap_tls_worker_init(ap_shm_t *shm)
{
    ticket_shm = shm;
    if (ticket_cipher == NULL)
        ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    ERR_clear_error();
}

/* --- names and SNI --- */

int ap_tls_name_match(const char *pattern, const char *host)
{
    size_t hl = strlen(host);
    if (hl && host[hl - 1] == '.')
        hl--; /* an absolute name: "example.com." */
    if (hl == 0)
        return 0;
    if (pattern[0] == '*' && pattern[1] == '.') {
        /* One whole label, never empty, never spanning a dot (RFC 6125). */
        const char *dot = memchr(host, '.', hl);
        if (dot == NULL || dot == host)
            return 0;
        size_t rest = hl - (size_t)(dot - host);
        return strlen(pattern + 1) == rest && strncasecmp(pattern + 1, dot, rest) == 0;
    }
    return strlen(pattern) == hl && strncasecmp(pattern, host, hl) == 0;
}

size_t ap_tls_select(const ap_tls_t *tls, const char *host)
{
    size_t wildcard = SIZE_MAX;
    for (size_t i = 0; i < tls->ncerts; i++) {
        for (size_t k = 0; k < tls->certs[i].nnames; k++) {
            const char *n = tls->certs[i].names[k];
            if (!ap_tls_name_match(n, host))
                continue;
            if (n[0] != '*')
                return i;
            if (wildcard == SIZE_MAX)
                wildcard = i;
        }
    }
    return wildcard == SIZE_MAX ? 0 : wildcard;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    const ap_tls_t *tls = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    (void)alert;
    /* No name, or no certificate for it: the default one, as nginx does
     * (clients then fail on the name themselves). */
    if (host == NULL || tls->ncerts < 2)
        return SSL_TLSEXT_ERR_OK;
    size_t i = ap_tls_select(tls, host);
    if (i != 0)
        SSL_set_SSL_CTX(ssl, tls->certs[i].ctx);
    return SSL_TLSEXT_ERR_OK;
}

/* --- ALPN: HTTP/1.1 only --- */

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    unsigned char sellen;
    (void)ssl;
    (void)arg;
    /* A client that offers ALPN without http/1.1 (h2 only) would speak a
     * protocol we do not: refuse now rather than misread it later. */
    if (SSL_select_next_proto(&sel, &sellen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    *outlen = sellen;
    return SSL_TLSEXT_ERR_OK;
}

/* --- renegotiation --- */

static void on_info(const SSL *ssl, int where, int ret)
{
    /* SSL_OP_NO_RENEGOTIATION answers a TLS 1.2 client's new ClientHello
     * with a no_renegotiation warning and carries on; we close the
     * connection as well (nginx does too), and this is how we know. */
    if ((where & SSL_CB_WRITE_ALERT) && (ret & 0xff) == SSL_AD_NO_RENEGOTIATION) {
        ap_tls_conn_t *t = SSL_get_app_data(ssl);
        if (t)
            t->reneg = 1;
    }
}

/* --- session tickets --- */

/* Seals or opens a ticket with the keys in shared memory. OpenSSL's
 * contract: for a new ticket (enc = 1) fill key_name and iv and set up
 * both contexts, 1 on success (0: no ticket); to open one, find the key
 * by name (0: unknown, full handshake), 1 when it is usable as is, 2 when
 * the client should get a fresh ticket. */
static int on_ticket_key(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    ap_ticket_key_t keys[2];
    const EVP_CIPHER *cipher = ticket_cipher ? ticket_cipher : EVP_aes_256_cbc();
    if (ticket_shm == NULL)
        return 0;
    uint32_t n = ap_shm_tickets_get(ticket_shm, keys);
    const ap_ticket_key_t *k = NULL;
    int rc = 0;
    if (enc) {
        if (n > 0 && RAND_bytes(iv, 16) == 1) {
            k = &keys[0];
            memcpy(key_name, k->name, 16);
            rc = EVP_EncryptInit_ex(cctx, cipher, NULL, k->aes_key, iv) == 1 ? 1 : -1;
        }
    } else {
        for (uint32_t i = 0; i < n && k == NULL; i++)
            if (memcmp(key_name, keys[i].name, 16) == 0)
                k = &keys[i];
        /* 2 asks for a fresh ticket: when the key is the previous one,
         * and always in TLS 1.3, where clients use a ticket once (OpenSSL
         * sends none after a resumption unless asked). */
        if (k)
            rc = EVP_DecryptInit_ex(cctx, cipher, NULL, k->aes_key, iv) == 1
                     ? (k == &keys[0] && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2)
                     : -1;
    }
    if (k && rc > 0) {
        OSSL_PARAM params[3];
        params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac_key,
                                                      sizeof(k->hmac_key));
        params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
        params[2] = OSSL_PARAM_construct_end();
        if (EVP_MAC_CTX_set_params(hctx, params) != 1)
            rc = -1;
    }
    OPENSSL_cleanse(keys, sizeof(keys));
    return rc;
}

/* --- loading --- */

static int no_password(char *buf, int size, int rwflag, void *u)
{
    /* Never prompt on a terminal: an encrypted key is an error. */
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The text of OpenSSL's latest error, and the queue cleared. */
static const char *ssl_error_text(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, size, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

/* Reads a whole PEM file into out. A key file (is_key) may not be
 * readable by everyone. Returns 0, or -1 with why filled in. */
static int read_pem(const char *path, int is_key, ap_buf_t *out, char *why, size_t size)
{
    /* O_NONBLOCK: a FIFO named by mistake must not hang the master. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, size, "cannot open \"%s\": %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > AP_TLS_PEM_MAX) {
        snprintf(why, size, "\"%s\" is not a regular file of at most %d bytes", path,
                 AP_TLS_PEM_MAX);
        close(fd);
        return -1;
    }
    if (is_key && (st.st_mode & S_IROTH)) {
        snprintf(why, size,
                 "the private key file \"%s\" is readable by everyone (mode %03o): "
                 "chmod o-rwx it",
                 path, (unsigned)(st.st_mode & 0777));
        close(fd);
        return -1;
    }
    ap_buf_reserve(out, (size_t)st.st_size + 1);
    for (;;) {
        ap_buf_reserve(out, 4096);
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(why, size, "cannot read \"%s\": %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len > AP_TLS_PEM_MAX) {
            snprintf(why, size, "\"%s\" is larger than %d bytes", path, AP_TLS_PEM_MAX);
            close(fd);
            return -1;
        }
    }
    close(fd);
    return 0;
}

static void format_time(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) == 1)
        strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
    else
        snprintf(buf, size, "(unreadable date)");
}

static void add_name(tls_cert_t *tc, const unsigned char *p, size_t len)
{
    /* A name with a NUL inside is an attack on C string handling. */
    if (len == 0 || memchr(p, '\0', len) != NULL)
        return;
    char *n = ap_xstrndup((const char *)p, len);
    for (char *q = n; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    tc->names = ap_xrealloc(tc->names, (tc->nnames + 1) * sizeof(char *));
    tc->names[tc->nnames++] = n;
}

/* The names SNI matches: the DNS names of the subjectAltName, or the
 * common name when there are none (as browsers did before RFC 6125). */
static void collect_names(tls_cert_t *tc, X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type == GEN_DNS)
            add_name(tc, ASN1_STRING_get0_data(gn->d.dNSName),
                     (size_t)ASN1_STRING_length(gn->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (tc->nnames)
        return;
    const X509_NAME *subj = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0)
        return;
    unsigned char *cn = NULL;
    int len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
    if (len > 0)
        add_name(tc, cn, (size_t)len);
    OPENSSL_free(cn);
}

/* Everything but the certificate: the same in every context, since SNI
 * switches a connection from the default context to another. */
static int configure(SSL_CTX *ctx, const ap_config_t *conf, ap_tls_t *tls)
{
    int ok = 1;
    ok &= SSL_CTX_set_min_proto_version(
        ctx, (conf->tls_protocols & AP_TLS_PROTO_12) ? TLS1_2_VERSION : TLS1_3_VERSION);
    ok &= SSL_CTX_set_max_proto_version(
        ctx, (conf->tls_protocols & AP_TLS_PROTO_13) ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* An idle keep-alive connection holds no read or write buffer. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    ok &= SSL_CTX_set_cipher_list(ctx, conf->tls_ciphers);
    ok &= SSL_CTX_set_ciphersuites(ctx, conf->tls_ciphersuites);
    ok &= (int)SSL_CTX_set_dh_auto(ctx, 1);
    /* No per-process session cache: a session cached by one worker could
     * not be resumed on another. Tickets carry the session instead. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    ok &= SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"apiary", 6);
    /* A ticket stays valid while its key is the current or the previous
     * one: never less than one rotation period. */
    SSL_CTX_set_timeout(ctx, (long)(conf->tls_ticket_rotate_ms / 1000));
    if (conf->tls_session_tickets) {
        ok &= (int)SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        ok &= SSL_CTX_set_num_tickets(ctx, 0);
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, tls);
    SSL_CTX_set_info_callback(ctx, on_info);
    return ok ? 0 : -1;
}

typedef struct {
    const ap_tls_cert_conf_t *cc;
    ap_buf_t *errors, *warnings;
    int nerrors;
} report_t;

static void report(report_t *r, int warning, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(report_t *r, int warning, const char *fmt, ...)
{
    ap_buf_t *b = warning ? r->warnings : r->errors;
    va_list ap;
    ap_buf_printf(b, "%s: tls.certificate: %s", r->cc->where, warning ? "warning: " : "");
    va_start(ap, fmt);
    ap_buf_vprintf(b, fmt, ap);
    va_end(ap);
    ap_buf_append_char(b, '\n');
    if (!warning)
        r->nerrors++;
}

/* The validity dates of the leaf: expired is an error, close to expiry
 * or not valid yet a warning. */
static void check_dates(report_t *r, X509 *leaf)
{
    char when[64];
    int days = 0, secs = 0;
    const ASN1_TIME *na = X509_get0_notAfter(leaf), *nb = X509_get0_notBefore(leaf);
    if (ASN1_TIME_diff(&days, &secs, NULL, na) != 1) {
        report(r, 0, "the certificate in \"%s\" has an unreadable expiry date", r->cc->chain);
        return;
    }
    format_time(na, when, sizeof(when));
    if (days < 0 || secs < 0 || (days == 0 && secs == 0))
        report(r, 0, "the certificate in \"%s\" expired on %s", r->cc->chain, when);
    else if (days < AP_TLS_WARN_DAYS)
        report(r, 1, "the certificate in \"%s\" expires in %d days, on %s: renew it",
               r->cc->chain, days, when);
    if (ASN1_TIME_diff(&days, &secs, NULL, nb) == 1 && (days > 0 || secs > 0)) {
        format_time(nb, when, sizeof(when));
        report(r, 1, "the certificate in \"%s\" is not valid before %s", r->cc->chain, when);
    }
}

static void load_one(report_t *r, tls_cert_t *tc, const ap_config_t *conf, ap_tls_t *tls)
{
    const ap_tls_cert_conf_t *cc = r->cc;
    char why[512], err[256];
    ap_buf_t pem, kpem;
    ap_buf_init(&pem);
    ap_buf_init(&kpem);
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    BIO *b = NULL;
    int same = strcmp(cc->chain, cc->key) == 0;

    ERR_clear_error();
    if (read_pem(cc->chain, same, &pem, why, sizeof(why)) < 0) {
        report(r, 0, "%s", why);
        goto done;
    }
    b = BIO_new_mem_buf(pem.data, (int)pem.len);
    leaf = b ? PEM_read_bio_X509_AUX(b, NULL, no_password, NULL) : NULL;
    if (leaf == NULL) {
        report(r, 0, "no PEM certificate in \"%s\" (%s)", cc->chain,
               ssl_error_text(err, sizeof(err)));
        goto done;
    }
    chain = sk_X509_new_null();
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, no_password, NULL);
        if (x == NULL)
            break;
        sk_X509_push(chain, x);
    }
    /* The loop ends on "no start line" at the end of the file; anything
     * else is a broken certificate in the chain. */
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        report(r, 0, "a broken certificate in the chain of \"%s\" (%s)", cc->chain,
               ssl_error_text(err, sizeof(err)));
        goto done;
    }
    ERR_clear_error();
    check_dates(r, leaf);

    if (!same && read_pem(cc->key, 1, &kpem, why, sizeof(why)) < 0) {
        report(r, 0, "%s", why);
        goto done;
    }
    BIO_free(b);
    b = same ? BIO_new_mem_buf(pem.data, (int)pem.len) : BIO_new_mem_buf(kpem.data, (int)kpem.len);
    key = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
    if (key == NULL) {
        report(r, 0, "no usable PEM private key in \"%s\" (%s; a key with a passphrase is not "
                     "supported)",
               cc->key, ssl_error_text(err, sizeof(err)));
        goto done;
    }
    if (X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        report(r, 0, "the private key in \"%s\" does not match the certificate in \"%s\"",
               cc->key, cc->chain);
        goto done;
    }
    if (r->nerrors)
        goto done; /* expired: reported, no context */

    tc->ctx = SSL_CTX_new(TLS_server_method());
    if (tc->ctx == NULL || configure(tc->ctx, conf, tls) < 0 ||
        SSL_CTX_use_certificate(tc->ctx, leaf) != 1 || SSL_CTX_set1_chain(tc->ctx, chain) != 1 ||
        SSL_CTX_use_PrivateKey(tc->ctx, key) != 1 || SSL_CTX_check_private_key(tc->ctx) != 1) {
        report(r, 0, "setting up TLS with \"%s\" failed: %s", cc->chain,
               ssl_error_text(err, sizeof(err)));
        goto done;
    }
    collect_names(tc, leaf);
done:
    BIO_free(b);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    /* The key's text: wipe it before the memory goes back to malloc. */
    OPENSSL_cleanse(pem.data, pem.cap);
    OPENSSL_cleanse(kpem.data, kpem.cap);
    ap_buf_cleanup(&pem);
    ap_buf_cleanup(&kpem);
    ERR_clear_error();
}

ap_tls_t *ap_tls_new(const ap_config_t *conf, ap_buf_t *errors, ap_buf_t *warnings,
                     int *nerrors)
{
    ap_tls_t *tls = ap_xcalloc(1, sizeof(*tls));
    tls->certs = ap_xcalloc(conf->ntls_certs ? conf->ntls_certs : 1, sizeof(*tls->certs));
    tls->ncerts = conf->ntls_certs;
    int n = 0;
    for (size_t i = 0; i < conf->ntls_certs; i++) {
        report_t r = {&conf->tls_certs[i], errors, warnings, 0};
        load_one(&r, &tls->certs[i], conf, tls);
        n += r.nerrors;
    }
    *nerrors += n;
    if (n || conf->ntls_certs == 0) {
        ap_tls_free(tls);
        return NULL;
    }
    return tls;
}

void ap_tls_free(ap_tls_t *tls)
{
    if (tls == NULL)
        return;
    for (size_t i = 0; i < tls->ncerts; i++) {
        SSL_CTX_free(tls->certs[i].ctx);
        for (size_t k = 0; k < tls->certs[i].nnames; k++)
            free(tls->certs[i].names[k]);
        free(tls->certs[i].names);
    }
    free(tls->certs);
    free(tls);
}

int ap_tls_check_ciphers(const char *list, int tls13, char *why, size_t size)
{
    char err[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(why, size, "OpenSSL: %s", ssl_error_text(err, sizeof(err)));
        return -1;
    }
    int ok = tls13 ? SSL_CTX_set_ciphersuites(ctx, list) : SSL_CTX_set_cipher_list(ctx, list);
    SSL_CTX_free(ctx);
    if (ok == 1) {
        ERR_clear_error();
        return 0;
    }
    snprintf(why, size, "OpenSSL takes no %s from \"%s\" (%s)",
             tls13 ? "TLS 1.3 cipher suite" : "cipher", list, ssl_error_text(err, sizeof(err)));
    return -1;
}

/* --- the engine --- */

ap_tls_conn_t *ap_tls_conn_new(ap_tls_t *tls, ap_metrics_t *m)
{
    ap_tls_conn_t *t = ap_xcalloc(1, sizeof(*t));
    t->m = m;
    t->ssl = SSL_new(tls->certs[0].ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "more later", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_app_data(t->ssl, t);
    SSL_set_accept_state(t->ssl);
    return t;
}

void ap_tls_conn_free(ap_tls_conn_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* and both BIOs */
    free(t);
}

static int classify(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return AP_TLS_FAIL_PROTOCOL;
    int r = ERR_GET_REASON(e);
    switch (r) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return AP_TLS_FAIL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
        return AP_TLS_FAIL_CIPHER;
    case SSL_R_NO_APPLICATION_PROTOCOL:
        return AP_TLS_FAIL_ALPN;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return AP_TLS_FAIL_PLAIN_HTTP;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        return AP_TLS_FAIL_CERTIFICATE;
    default:
        return AP_TLS_FAIL_PROTOCOL;
    }
}

static void fail(ap_tls_conn_t *t, int reason, const char *what, unsigned long e)
{
    char err[256] = "";
    if (e)
        ERR_error_string_n(e, err, sizeof(err));
    if (!t->established)
        ap_metrics_tls_failure(t->m, reason);
    ap_log(AP_LOG_INFO, "%s (%s)%s%s", what, ap_metrics_tls_fail_names[reason], e ? ": " : "",
           err);
    t->failed = 1;
    ERR_clear_error();
}

int ap_tls_conn_read(ap_tls_conn_t *t, const char *data, size_t len, ap_buf_t *plain)
{
    if (t->failed)
        return AP_TLS_FAILED;
    if (len && !t->got_bytes) {
        t->got_bytes = 1;
        /* A TLS record starts with its content type (22 for a handshake);
         * a request line starts with an upper-case method name. */
        if (data[0] >= 'A' && data[0] <= 'Z') {
            ap_metrics_tls_failure(t->m, AP_TLS_FAIL_PLAIN_HTTP);
            t->failed = 1;
            return AP_TLS_PLAIN_HTTP;
        }
    }
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        int n = BIO_write(t->rbio, data, chunk);
        if (n <= 0) {
            fail(t, AP_TLS_FAIL_PROTOCOL, "buffering TLS input failed", ERR_peek_last_error());
            return AP_TLS_FAILED;
        }
        data += n;
        len -= (size_t)n;
    }
    /* SSL_get_error needs an empty error queue; errors are cleared where
     * they are handled, and once here against anyone else's leftovers. */
    ERR_clear_error();
    if (!t->established) {
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            int e = SSL_get_error(t->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return AP_TLS_AGAIN;
            unsigned long err = ERR_peek_last_error();
            fail(t, classify(err), "TLS handshake failed", err);
            return AP_TLS_FAILED;
        }
        t->established = 1;
        ap_metrics_tls_handshake(t->m, SSL_version(t->ssl) == TLS1_3_VERSION,
                                 SSL_session_reused(t->ssl));
    }
    for (;;) {
        ap_buf_reserve(plain, AP_TLS_READ_CHUNK);
        size_t room = plain->cap - plain->len - 1;
        int n = SSL_read(t->ssl, plain->data + plain->len, room > INT_MAX ? INT_MAX : (int)room);
        if (n > 0) {
            plain->len += (size_t)n;
            plain->data[plain->len] = '\0';
            /* Nothing buffered on either side: no need to ask again only
             * to hear "want read". */
            if (SSL_pending(t->ssl) == 0 && BIO_ctrl_pending(t->rbio) == 0 && !t->reneg)
                return AP_TLS_OK;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (t->reneg) {
            ap_metrics_tls_failure(t->m, AP_TLS_FAIL_RENEGOTIATION);
            fail(t, AP_TLS_FAIL_RENEGOTIATION, "TLS renegotiation refused", 0);
            return AP_TLS_FAILED;
        }
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return AP_TLS_OK;
        if (e == SSL_ERROR_ZERO_RETURN)
            return AP_TLS_CLOSED;
        fail(t, AP_TLS_FAIL_PROTOCOL, "reading TLS failed", ERR_peek_last_error());
        return AP_TLS_FAILED;
    }
}

int ap_tls_conn_write(ap_tls_conn_t *t, const void *data, size_t len)
{
    const char *p = data;
    if (!t->established || t->failed || t->shut)
        return -1;
    ERR_clear_error();
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        /* The write BIO grows as needed: SSL_write takes it all. */
        int n = SSL_write(t->ssl, p, chunk);
        if (n <= 0) {
            fail(t, AP_TLS_FAIL_PROTOCOL, "writing TLS failed", ERR_peek_last_error());
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

size_t ap_tls_conn_output(ap_tls_conn_t *t, char *buf, size_t cap)
{
    if (BIO_ctrl_pending(t->wbio) == 0)
        return 0;
    int n = BIO_read(t->wbio, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    return n > 0 ? (size_t)n : 0;
}

void ap_tls_conn_shutdown(ap_tls_conn_t *t)
{
    if (!t->established || t->failed || t->shut)
        return;
    t->shut = 1;
    ERR_clear_error();
    /* 0: close_notify is written and the client's is not awaited. */
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

void ap_tls_conn_abort(ap_tls_conn_t *t, int reason)
{
    if (t->established || t->failed)
        return;
    if (reason == AP_TLS_FAIL_EOF && !t->got_bytes)
        return; /* a port probe, not a handshake */
    t->failed = 1;
    ap_metrics_tls_failure(t->m, reason);
    ap_log(AP_LOG_INFO, "TLS handshake failed (%s)", ap_metrics_tls_fail_names[reason]);
}
