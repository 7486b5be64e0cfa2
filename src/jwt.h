/* SPDX-License-Identifier: BSD-2-Clause */
/* JSON Web Tokens: verifying a compact JWS (HS256/384/512, RS256/384/512,
 * ES256/384/512) against a key set loaded from a raw secret, PEM public keys
 * or certificates, or a JWK/JWKS document; the registered time and audience
 * claims; and the claim path that names the role. Pure: no libuv, no
 * globals, safe to call from any thread. */
#ifndef AP_JWT_H
#define AP_JWT_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#include "buf.h"

/* The longest token accepted, in bytes. The request's header limits apply
 * before this; the bound keeps base64 and JSON work per request small. */
#define AP_JWT_MAX_LEN 16384

/* The shortest HMAC secret accepted, in bytes (PostgREST's rule). */
#define AP_JWT_MIN_SECRET 32

typedef struct ap_jwt_keyset_s ap_jwt_keyset_t;

/* Builds a key set from key material held in memory. What it is follows
 * PostgREST's jwt-secret: JSON (a JWKS {"keys":[...]} or a single JWK) when
 * it starts with '{', PEM (public keys and certificates, any number of
 * them) when it starts with "-----BEGIN", else a raw HMAC secret of at least
 * AP_JWT_MIN_SECRET bytes with one trailing newline dropped. Returns NULL
 * after appending one line saying why to err (without a newline). */
ap_jwt_keyset_t *ap_jwt_keyset_parse(const char *data, size_t len, ap_buf_t *err);

/* Reads path (at most 1 MiB) and parses it as above. A file holding a
 * symmetric secret must not be readable by every user. NULL and err as
 * above; the message names the file. */
ap_jwt_keyset_t *ap_jwt_keyset_load(const char *path, ap_buf_t *err);

void ap_jwt_keyset_free(ap_jwt_keyset_t *ks);

/* How many keys the set holds; *symmetric says whether any is an HMAC
 * secret (may be NULL). */
size_t ap_jwt_keyset_count(const ap_jwt_keyset_t *ks, int *symmetric);

/* What a verification found. */
typedef enum {
    AP_JWT_OK = 0,
    AP_JWT_DECODE, /* the token is malformed, unsigned or wrongly signed (PGRST301) */
    AP_JWT_CLAIMS, /* the claims are not an object, or failed exp/nbf/iat/aud (PGRST303) */
} ap_jwt_status_t;

typedef struct {
    const char *aud;  /* the audience this server is, or NULL for any */
    int64_t leeway_s; /* clock skew allowed on exp, nbf and iat */
} ap_jwt_opts_t;

/* The verified payload: its JSON text (NUL-terminated) and its tree (an
 * object). Caller-owned; release with ap_jwt_claims_cleanup. */
typedef struct {
    char *text;
    size_t len;
    yajl_val tree;
} ap_jwt_claims_t;

/* Why a token was refused: message is PostgREST's text for the error;
 * details says more, for the error body (may be empty). */
typedef struct {
    char message[96];
    char details[160];
} ap_jwt_error_t;

/* Verifies the compact JWS token[0..len) with ks at time now (seconds
 * since the epoch) and checks its claims. On AP_JWT_OK fills claims. The
 * token's header chooses nothing the key set does not allow: "none" is
 * never accepted, and a key's type (and its JWK "alg", when given) decides
 * which algorithms it verifies, so an HS256 token cannot be checked with
 * an RSA public key taken as an HMAC secret. */
ap_jwt_status_t ap_jwt_verify(const ap_jwt_keyset_t *ks, const char *token, size_t len, int64_t now,
                              const ap_jwt_opts_t *opts, ap_jwt_claims_t *claims,
                              ap_jwt_error_t *err);

void ap_jwt_claims_cleanup(ap_jwt_claims_t *claims);

/* A path into the claims that names the role, in PostgREST's JSPath
 * syntax (".role", ".realm_access.roles[0]", ".\"https://x/role\".key")
 * or its RFC 9535 subset ("$.role", "$['https://x/role'].key"); a bare
 * name ("role") is taken as ".role". */
typedef struct ap_jwt_path_s ap_jwt_path_t;

/* Compiles text; NULL with *why set (static text) when it is not a path. */
ap_jwt_path_t *ap_jwt_path_parse(const char *text, const char **why);

void ap_jwt_path_free(ap_jwt_path_t *path);

/* The value at path in root, or NULL when there is none. */
yajl_val ap_jwt_path_get(const ap_jwt_path_t *path, yajl_val root);

/* Decodes unpadded base64url (RFC 7515 section 2) strictly: only the
 * alphabet A-Z a-z 0-9 - _, no '=', no length that cannot occur, and the
 * unused bits of the last character zero. Appends to out; 0 or -1. */
int ap_jwt_b64url_decode(const char *s, size_t len, ap_buf_t *out);

/* Appends the unpadded base64url form of p[0..n). */
void ap_jwt_b64url_encode(ap_buf_t *out, const void *p, size_t n);

/* Appends the JSON text of v (numbers as written in the source). */
void ap_jwt_json_append(ap_buf_t *out, yajl_val v);

#endif
