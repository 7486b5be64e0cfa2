/* SPDX-License-Identifier: BSD-2-Clause */
/* JWT verification with OpenSSL 3's EVP interfaces, and key sets. */
#include "jwt.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

/* A key file larger than this is surely a mistake. */
#define KEYFILE_MAX (1024 * 1024)
/* JSON nested deeper than this in a token is refused before yajl builds
 * (and later frees, recursively) its tree. */
#define MAX_DEPTH 64
/* The smallest RSA modulus accepted, in bits. */
#define RSA_MIN_BITS 2048

typedef enum { KTY_OCT = 1, KTY_RSA, KTY_EC } kty_t;

typedef enum {
    ALG_NONE = 0,
    ALG_HS256,
    ALG_HS384,
    ALG_HS512,
    ALG_RS256,
    ALG_RS384,
    ALG_RS512,
    ALG_ES256,
    ALG_ES384,
    ALG_ES512,
} alg_t;

static const struct {
    const char *name;
    kty_t kty;
    int md;        /* index into the key set's digests: SHA-256, -384, -512 */
    size_t ec_len; /* ES: bytes of one coordinate (r and s each) */
} algs[] = {
    [ALG_HS256] = {"HS256", KTY_OCT, 0, 0}, [ALG_HS384] = {"HS384", KTY_OCT, 1, 0},
    [ALG_HS512] = {"HS512", KTY_OCT, 2, 0}, [ALG_RS256] = {"RS256", KTY_RSA, 0, 0},
    [ALG_RS384] = {"RS384", KTY_RSA, 1, 0}, [ALG_RS512] = {"RS512", KTY_RSA, 2, 0},
    [ALG_ES256] = {"ES256", KTY_EC, 0, 32}, [ALG_ES384] = {"ES384", KTY_EC, 1, 48},
    [ALG_ES512] = {"ES512", KTY_EC, 2, 66},
};
#define NALGS ((int)(sizeof(algs) / sizeof(algs[0])))

static const char *const md_names[3] = {"SHA256", "SHA384", "SHA512"};

typedef struct {
    kty_t kty;
    alg_t alg; /* the only algorithm it verifies, or ALG_NONE for any of its type */
    char *kid; /* NULL when it has none */
    unsigned char *secret;
    size_t secret_len;
    /* HMAC contexts keyed with the secret, one per digest: a request
     * copies one, so the key's padding is hashed once, not per token. */
    EVP_MAC_CTX *mac[3];
    EVP_PKEY *pkey;
} jwt_key_t;

struct ap_jwt_keyset_s {
    jwt_key_t *keys;
    size_t n;
    int jwks;      /* from a JWK or JWKS: a token's kid must name the key */
    EVP_MAC *hmac; /* fetched once: fetching per request is slow */
    EVP_MD *md[3];
};

static alg_t alg_by_name(const char *name)
{
    for (int i = 1; i < NALGS; i++)
        if (strcmp(algs[i].name, name) == 0)
            return (alg_t)i;
    return ALG_NONE;
}

/* --- base64url --- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int ap_jwt_b64url_decode(const char *s, size_t len, ap_buf_t *out)
{
    /* One character left over carries 6 bits: no byte ends there. */
    if (len % 4 == 1)
        return -1;
    ap_buf_reserve(out, len / 4 * 3 + 3);
    unsigned char *o = (unsigned char *)out->data + out->len;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* The bits that complete no byte must be zero: one encoding per value,
     * so a signature cannot be varied without being refused. */
    if (acc != 0)
        return -1;
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}

void ap_jwt_b64url_encode(ap_buf_t *out, const void *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *s = p;
    ap_buf_reserve(out, n / 3 * 4 + 4);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63], tab[v & 63]};
        ap_buf_append(out, q, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        char q[2] = {tab[v >> 18], tab[(v >> 12) & 63]};
        ap_buf_append(out, q, 2);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        char q[3] = {tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63]};
        ap_buf_append(out, q, 3);
    }
}

/* --- JSON --- */

void ap_jwt_json_append(ap_buf_t *out, yajl_val v);

static void json_append_str(ap_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    ap_buf_append_char(out, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            ap_buf_append_char(out, '\\');
            ap_buf_append_char(out, (char)*p);
        } else if (*p < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            ap_buf_append(out, e, 6);
        } else {
            /* yajl has checked the UTF-8 already. */
            ap_buf_append_char(out, (char)*p);
        }
    }
    ap_buf_append_char(out, '"');
}

void ap_jwt_json_append(ap_buf_t *out, yajl_val v)
{
    if (v == NULL) {
        ap_buf_append_str(out, "null");
        return;
    }
    switch (v->type) {
    case yajl_t_string:
        json_append_str(out, v->u.string);
        return;
    case yajl_t_number:
        ap_buf_append_str(out, v->u.number.r);
        return;
    case yajl_t_true:
        ap_buf_append_str(out, "true");
        return;
    case yajl_t_false:
        ap_buf_append_str(out, "false");
        return;
    case yajl_t_object:
        ap_buf_append_char(out, '{');
        for (size_t i = 0; i < v->u.object.len; i++) {
            if (i)
                ap_buf_append_char(out, ',');
            json_append_str(out, v->u.object.keys[i]);
            ap_buf_append_char(out, ':');
            ap_jwt_json_append(out, v->u.object.values[i]);
        }
        ap_buf_append_char(out, '}');
        return;
    case yajl_t_array:
        ap_buf_append_char(out, '[');
        for (size_t i = 0; i < v->u.array.len; i++) {
            if (i)
                ap_buf_append_char(out, ',');
            ap_jwt_json_append(out, v->u.array.values[i]);
        }
        ap_buf_append_char(out, ']');
        return;
    default:
        ap_buf_append_str(out, "null");
        return;
    }
}

/* Checks what yajl's tree would hide or choke on: nesting deeper than
 * MAX_DEPTH, and \u0000 in a string (which would cut the C string short,
 * so that the role PostgreSQL is given differs from the one signed).
 * 0 when the text is fine. */
static int json_prescan(const char *s, size_t len)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '\0')
            return -1;
        if (in_str) {
            if (c == '\\') {
                if (i + 5 < len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0)
                    return -1;
                i++;
            } else if (c == '"') {
                in_str = 0;
            }
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH)
                return -1;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 0;
}

static yajl_val obj_get(yajl_val obj, const char *key)
{
    if (!YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

static size_t obj_count(yajl_val obj, const char *key)
{
    size_t n = 0;
    for (size_t i = 0; i < obj->u.object.len; i++)
        n += strcmp(obj->u.object.keys[i], key) == 0;
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first member name that occurs twice in obj, or NULL. RFC 7519
 * leaves a parser the choice between refusing duplicates and taking the
 * last one; PostgreSQL takes the last, yajl's tree would give us the
 * first, so refusing is the only consistent answer. */
static const char *obj_duplicate(yajl_val obj)
{
    size_t n = obj->u.object.len;
    if (n < 2)
        return NULL;
    const char **k = ap_xmalloc(n * sizeof(*k));
    memcpy(k, obj->u.object.keys, n * sizeof(*k));
    qsort(k, n, sizeof(*k), cmp_str);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(k[i - 1], k[i]) == 0)
            dup = k[i];
    free(k);
    return dup;
}

/* Parses text[0..len) (NUL-terminated at len) into an object tree, or NULL. */
static yajl_val parse_object(const char *text, size_t len)
{
    if (json_prescan(text, len) < 0)
        return NULL;
    yajl_val v = yajl_tree_parse(text, NULL, 0);
    if (v && !YAJL_IS_OBJECT(v)) {
        yajl_tree_free(v);
        return NULL;
    }
    return v;
}

/* --- key sets --- */

static void key_cleanup(jwt_key_t *k)
{
    if (k->secret) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        free(k->secret);
    }
    free(k->kid);
    for (int i = 0; i < 3; i++)
        EVP_MAC_CTX_free(k->mac[i]);
    EVP_PKEY_free(k->pkey);
}

void ap_jwt_keyset_free(ap_jwt_keyset_t *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n; i++)
        key_cleanup(&ks->keys[i]);
    free(ks->keys);
    EVP_MAC_free(ks->hmac);
    for (int i = 0; i < 3; i++)
        EVP_MD_free(ks->md[i]);
    free(ks);
}

size_t ap_jwt_keyset_count(const ap_jwt_keyset_t *ks, int *symmetric)
{
    if (symmetric) {
        *symmetric = 0;
        for (size_t i = 0; i < ks->n; i++)
            if (ks->keys[i].kty == KTY_OCT)
                *symmetric = 1;
    }
    return ks->n;
}

static ap_jwt_keyset_t *keyset_new(ap_buf_t *err)
{
    ap_jwt_keyset_t *ks = ap_xcalloc(1, sizeof(*ks));
    ks->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    for (int i = 0; i < 3; i++)
        ks->md[i] = EVP_MD_fetch(NULL, md_names[i], NULL);
    if (ks->hmac == NULL || !ks->md[0] || !ks->md[1] || !ks->md[2]) {
        ap_buf_append_str(err, "OpenSSL lacks HMAC or SHA-2 (is the default provider loaded?)");
        ap_jwt_keyset_free(ks);
        return NULL;
    }
    return ks;
}

static jwt_key_t *keyset_add(ap_jwt_keyset_t *ks)
{
    ks->keys = ap_xrealloc(ks->keys, (ks->n + 1) * sizeof(*ks->keys));
    jwt_key_t *k = &ks->keys[ks->n++];
    memset(k, 0, sizeof(*k));
    return k;
}

/* The last OpenSSL error as text, for key-loading messages. */
static void ssl_reason(ap_buf_t *err)
{
    unsigned long e = ERR_peek_last_error();
    if (e) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        ap_buf_printf(err, " (%s)", buf);
    }
    ERR_clear_error();
}

/* A secret nobody should run with: the placeholders of sample files and
 * the example of PostgREST's documentation. */
static const char *weak_secret(const unsigned char *s, size_t n)
{
    static const char *const placeholders[] = {"change_me", "changeme", "change-me",
                                               "reallyreallyreallyreallyverysafe"};
    size_t same = 1;
    for (size_t i = 1; i < n; i++)
        same += s[i] == s[0];
    if (same == n)
        return "it is one character repeated";
    for (size_t i = 0; i < sizeof(placeholders) / sizeof(placeholders[0]); i++) {
        size_t pl = strlen(placeholders[i]);
        for (size_t j = 0; j + pl <= n; j++)
            if (strncasecmp((const char *)s + j, placeholders[i], pl) == 0)
                return "it holds a placeholder (such as CHANGE_ME) or a documentation example";
    }
    return NULL;
}

static int add_secret(ap_jwt_keyset_t *ks, const unsigned char *s, size_t n, alg_t alg,
                      const char *kid, ap_buf_t *err)
{
    if (n < AP_JWT_MIN_SECRET) {
        ap_buf_printf(err, "the secret is %zu bytes long; at least %d are needed", n,
                      AP_JWT_MIN_SECRET);
        return -1;
    }
    const char *weak = weak_secret(s, n);
    if (weak) {
        ap_buf_printf(err, "the secret is not one: %s", weak);
        return -1;
    }
    jwt_key_t *k = keyset_add(ks);
    k->kty = KTY_OCT;
    k->alg = alg;
    k->kid = kid ? ap_xstrdup(kid) : NULL;
    k->secret = ap_xmalloc(n);
    memcpy(k->secret, s, n);
    k->secret_len = n;
    for (int i = 0; i < 3; i++) {
        OSSL_PARAM params[2];
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md_names[i], 0);
        params[1] = OSSL_PARAM_construct_end();
        k->mac[i] = EVP_MAC_CTX_new(ks->hmac);
        if (k->mac[i] == NULL || EVP_MAC_init(k->mac[i], s, n, params) != 1) {
            ap_buf_append_str(err, "OpenSSL cannot make an HMAC context");
            ssl_reason(err);
            return -1;
        }
    }
    return 0;
}

/* Checks an RSA or EC public key and adds it. Takes pkey. */
static int add_pkey(ap_jwt_keyset_t *ks, EVP_PKEY *pkey, alg_t alg, const char *kid, ap_buf_t *err)
{
    kty_t kty;
    alg_t curve_alg = ALG_NONE;
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        kty = KTY_RSA;
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < RSA_MIN_BITS) {
            ap_buf_printf(err, "an RSA key of %d bits; at least %d are needed", bits, RSA_MIN_BITS);
            EVP_PKEY_free(pkey);
            return -1;
        }
    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        kty = KTY_EC;
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1)
            group[0] = '\0';
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
            curve_alg = ALG_ES256;
        else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
            curve_alg = ALG_ES384;
        else if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
            curve_alg = ALG_ES512;
        else {
            ap_buf_printf(err,
                          "an EC key on the curve \"%s\"; P-256, P-384 and P-521 are supported",
                          group[0] ? group : "?");
            EVP_PKEY_free(pkey);
            return -1;
        }
    } else {
        ap_buf_append_str(err,
                          "a public key of a type JWS cannot use here (RSA and EC are supported)");
        EVP_PKEY_free(pkey);
        return -1;
    }
    if (alg != ALG_NONE && (algs[alg].kty != kty || (curve_alg && alg != curve_alg))) {
        ap_buf_printf(err, "alg \"%s\" does not fit %s key", algs[alg].name,
                      kty == KTY_RSA ? "an RSA" : "this EC");
        EVP_PKEY_free(pkey);
        return -1;
    }
    jwt_key_t *k = keyset_add(ks);
    k->kty = kty;
    /* An EC key verifies the one algorithm of its curve. */
    k->alg = curve_alg ? curve_alg : alg;
    k->kid = kid ? ap_xstrdup(kid) : NULL;
    k->pkey = pkey;
    return 0;
}

static int parse_pem(ap_jwt_keyset_t *ks, const char *data, size_t len, ap_buf_t *err)
{
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (bio == NULL) {
        ap_buf_append_str(err, "out of memory");
        return -1;
    }
    int rc = 0, blocks = 0;
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long dlen = 0;
        if (PEM_read_bio(bio, &name, &header, &der, &dlen) != 1) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE && blocks > 0) {
                ERR_clear_error();
                break;
            }
            ap_buf_printf(err, "PEM block %d cannot be read", blocks + 1);
            ssl_reason(err);
            rc = -1;
            break;
        }
        blocks++;
        const unsigned char *p = der;
        EVP_PKEY *pkey = NULL;
        if (strcmp(name, "PUBLIC KEY") == 0) {
            pkey = d2i_PUBKEY(NULL, &p, dlen);
        } else if (strcmp(name, "RSA PUBLIC KEY") == 0) {
            pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, dlen);
        } else if (strcmp(name, "CERTIFICATE") == 0) {
            X509 *x = d2i_X509(NULL, &p, dlen);
            if (x) {
                pkey = X509_get_pubkey(x);
                X509_free(x);
            }
        } else if (strstr(name, "PRIVATE KEY")) {
            ap_buf_printf(err,
                          "PEM block %d is a private key: give apiary the public key only "
                          "(openssl pkey -in KEY -pubout)",
                          blocks);
            rc = -1;
        } else if (strcmp(name, "EC PARAMETERS") == 0) {
            /* openssl ecparam -genkey writes these before the key. */
        } else {
            ap_buf_printf(err, "PEM block %d is \"%.40s\"; expected PUBLIC KEY or CERTIFICATE",
                          blocks, name);
            rc = -1;
        }
        int parsed = strcmp(name, "EC PARAMETERS") != 0 && rc == 0;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        if (rc < 0)
            break;
        if (!parsed)
            continue;
        if (pkey == NULL) {
            ap_buf_printf(err, "PEM block %d is not a valid key", blocks);
            ssl_reason(err);
            rc = -1;
            break;
        }
        ap_buf_t why;
        ap_buf_init(&why);
        if (add_pkey(ks, pkey, ALG_NONE, NULL, &why) < 0) {
            ap_buf_printf(err, "PEM block %d: %s", blocks, why.data);
            ap_buf_cleanup(&why);
            rc = -1;
            break;
        }
        ap_buf_cleanup(&why);
    }
    BIO_free(bio);
    if (rc == 0 && ks->n == 0) {
        ap_buf_append_str(err, "no key in the PEM text");
        rc = -1;
    }
    return rc;
}

/* A base64url member of a JWK, decoded into out. */
static int jwk_bytes(yajl_val jwk, const char *name, ap_buf_t *out, ap_buf_t *err)
{
    yajl_val v = obj_get(jwk, name);
    if (!YAJL_IS_STRING(v)) {
        ap_buf_printf(err, "\"%s\" is missing or not a string", name);
        return -1;
    }
    ap_buf_reset(out);
    if (ap_jwt_b64url_decode(v->u.string, strlen(v->u.string), out) < 0 || out->len == 0) {
        ap_buf_printf(err, "\"%s\" is not base64url", name);
        return -1;
    }
    return 0;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *jwk_rsa(yajl_val jwk, ap_buf_t *err)
{
    ap_buf_t n, e;
    ap_buf_init(&n);
    ap_buf_init(&e);
    EVP_PKEY *pkey = NULL;
    if (jwk_bytes(jwk, "n", &n, err) == 0 && jwk_bytes(jwk, "e", &e, err) == 0) {
        BIGNUM *bn = BN_bin2bn((unsigned char *)n.data, (int)n.len, NULL);
        BIGNUM *be = BN_bin2bn((unsigned char *)e.data, (int)e.len, NULL);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
            pkey = pkey_fromdata("RSA", bld);
        if (pkey == NULL) {
            ap_buf_append_str(err, "\"n\" and \"e\" do not make an RSA key");
            ssl_reason(err);
        }
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn);
        BN_free(be);
    }
    ap_buf_cleanup(&n);
    ap_buf_cleanup(&e);
    return pkey;
}

static EVP_PKEY *jwk_ec(yajl_val jwk, ap_buf_t *err)
{
    yajl_val crv = obj_get(jwk, "crv");
    const char *group;
    size_t clen;
    if (!YAJL_IS_STRING(crv)) {
        ap_buf_append_str(err, "\"crv\" is missing or not a string");
        return NULL;
    }
    if (strcmp(crv->u.string, "P-256") == 0) {
        group = "prime256v1";
        clen = 32;
    } else if (strcmp(crv->u.string, "P-384") == 0) {
        group = "secp384r1";
        clen = 48;
    } else if (strcmp(crv->u.string, "P-521") == 0) {
        group = "secp521r1";
        clen = 66;
    } else {
        ap_buf_printf(err, "curve \"%.40s\" is not supported (P-256, P-384, P-521 are)",
                      crv->u.string);
        return NULL;
    }
    ap_buf_t x, y, pub;
    ap_buf_init(&x);
    ap_buf_init(&y);
    ap_buf_init(&pub);
    EVP_PKEY *pkey = NULL;
    if (jwk_bytes(jwk, "x", &x, err) == 0 && jwk_bytes(jwk, "y", &y, err) == 0) {
        if (x.len != clen || y.len != clen) {
            ap_buf_printf(err, "\"x\" and \"y\" must be %zu bytes each on %s", clen, crv->u.string);
        } else {
            /* The uncompressed point: 0x04 || x || y. */
            ap_buf_append_char(&pub, 4);
            ap_buf_append(&pub, x.data, x.len);
            ap_buf_append(&pub, y.data, y.len);
            OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
            if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
                OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub.data, pub.len))
                pkey = pkey_fromdata("EC", bld);
            OSSL_PARAM_BLD_free(bld);
            /* A point off the curve is not a key. */
            if (pkey) {
                EVP_PKEY_CTX *cx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
                if (cx == NULL || EVP_PKEY_public_check(cx) != 1) {
                    EVP_PKEY_free(pkey);
                    pkey = NULL;
                }
                EVP_PKEY_CTX_free(cx);
            }
            if (pkey == NULL) {
                ap_buf_append_str(err, "\"x\" and \"y\" are not a point of the curve");
                ssl_reason(err);
            }
        }
    }
    ap_buf_cleanup(&x);
    ap_buf_cleanup(&y);
    ap_buf_cleanup(&pub);
    return pkey;
}

/* Adds one JWK. Returns 0 when added, 1 when skipped on purpose (a key
 * for encryption, or of a type JWS here cannot use), -1 on error. */
static int add_jwk(ap_jwt_keyset_t *ks, yajl_val jwk, ap_buf_t *err)
{
    if (!YAJL_IS_OBJECT(jwk)) {
        ap_buf_append_str(err, "not a JSON object");
        return -1;
    }
    yajl_val kty = obj_get(jwk, "kty"), kid = obj_get(jwk, "kid"), alg = obj_get(jwk, "alg");
    yajl_val use = obj_get(jwk, "use"), ops = obj_get(jwk, "key_ops");
    if (!YAJL_IS_STRING(kty)) {
        ap_buf_append_str(err, "\"kty\" is missing or not a string");
        return -1;
    }
    if (kid && !YAJL_IS_STRING(kid)) {
        ap_buf_append_str(err, "\"kid\" is not a string");
        return -1;
    }
    if (use && (!YAJL_IS_STRING(use) || strcmp(use->u.string, "sig") != 0))
        return 1;
    if (ops) {
        int verify = 0;
        if (YAJL_IS_ARRAY(ops))
            for (size_t i = 0; i < ops->u.array.len; i++)
                if (YAJL_IS_STRING(ops->u.array.values[i]) &&
                    strcmp(ops->u.array.values[i]->u.string, "verify") == 0)
                    verify = 1;
        if (!verify)
            return 1;
    }
    alg_t a = ALG_NONE;
    if (alg) {
        if (!YAJL_IS_STRING(alg)) {
            ap_buf_append_str(err, "\"alg\" is not a string");
            return -1;
        }
        a = alg_by_name(alg->u.string);
        if (a == ALG_NONE) {
            /* An algorithm apiary does not verify (PS256, EdDSA, RSA-OAEP...):
             * the key is for someone else. */
            return 1;
        }
    }
    const char *kids = kid ? kid->u.string : NULL;
    const char *t = kty->u.string;
    if (a != ALG_NONE && strcmp(t, a <= ALG_HS512 ? "oct" : a <= ALG_RS512 ? "RSA" : "EC") != 0) {
        ap_buf_printf(err, "alg \"%s\" does not fit kty \"%.20s\"", algs[a].name, t);
        return -1;
    }
    if (strcmp(t, "oct") == 0) {
        ap_buf_t k;
        ap_buf_init(&k);
        int rc = jwk_bytes(jwk, "k", &k, err);
        if (rc == 0)
            rc = add_secret(ks, (unsigned char *)k.data, k.len, a, kids, err);
        if (k.data)
            OPENSSL_cleanse(k.data, k.cap);
        ap_buf_cleanup(&k);
        return rc;
    }
    if (strcmp(t, "RSA") == 0 || strcmp(t, "EC") == 0) {
        EVP_PKEY *pkey = t[0] == 'R' ? jwk_rsa(jwk, err) : jwk_ec(jwk, err);
        if (pkey == NULL)
            return -1;
        return add_pkey(ks, pkey, a, kids, err);
    }
    /* OKP and whatever comes next: not ours to verify. */
    return 1;
}

static int parse_jwks(ap_jwt_keyset_t *ks, const char *data, size_t len, ap_buf_t *err)
{
    char *text = ap_xstrndup(data, len);
    char ebuf[256];
    if (memchr(data, '\0', len)) {
        ap_buf_append_str(err, "a NUL byte in the JSON text");
        free(text);
        return -1;
    }
    yajl_val root = yajl_tree_parse(text, ebuf, sizeof(ebuf));
    OPENSSL_cleanse(text, len);
    free(text);
    if (root == NULL) {
        /* yajl's message goes on with the text and an arrow: keep its
         * first line (the text may be a secret). */
        size_t n = strcspn(ebuf, "\n");
        ebuf[n] = '\0';
        while (n && ebuf[n - 1] == ' ')
            ebuf[--n] = '\0';
        ap_buf_printf(err, "not valid JSON: %s", ebuf);
        return -1;
    }
    ks->jwks = 1;
    int rc = 0;
    yajl_val keys = obj_get(root, "keys");
    if (!YAJL_IS_OBJECT(root)) {
        ap_buf_append_str(err, "not a JSON object (a JWK or a JWKS {\"keys\": [...]})");
        rc = -1;
    } else if (keys) {
        if (!YAJL_IS_ARRAY(keys)) {
            ap_buf_append_str(err, "\"keys\" is not an array");
            rc = -1;
        }
        for (size_t i = 0; rc == 0 && i < keys->u.array.len; i++) {
            ap_buf_t why;
            ap_buf_init(&why);
            if (add_jwk(ks, keys->u.array.values[i], &why) < 0) {
                ap_buf_printf(err, "key %zu of \"keys\": %s", i + 1, why.data);
                rc = -1;
            }
            ap_buf_cleanup(&why);
        }
    } else {
        rc = add_jwk(ks, root, err) < 0 ? -1 : 0;
    }
    yajl_tree_free(root);
    if (rc == 0 && ks->n == 0) {
        ap_buf_append_str(err, "no key that verifies signatures (kty oct, RSA or EC with "
                               "alg HS*, RS* or ES*, use \"sig\")");
        rc = -1;
    }
    return rc;
}

ap_jwt_keyset_t *ap_jwt_keyset_parse(const char *data, size_t len, ap_buf_t *err)
{
    ap_jwt_keyset_t *ks = keyset_new(err);
    if (ks == NULL)
        return NULL;
    size_t skip = 0;
    while (skip < len &&
           (data[skip] == ' ' || data[skip] == '\t' || data[skip] == '\n' || data[skip] == '\r'))
        skip++;
    int rc;
    if (skip < len && data[skip] == '{') {
        rc = parse_jwks(ks, data, len, err);
    } else if (len - skip >= 10 && memcmp(data + skip, "-----BEGIN", 10) == 0) {
        rc = parse_pem(ks, data, len, err);
    } else {
        /* A secret is taken as it is, but for the newline an editor or
         * "echo" leaves at the end. */
        size_t n = len;
        if (n && data[n - 1] == '\n')
            n--;
        if (n && data[n - 1] == '\r')
            n--;
        rc = add_secret(ks, (const unsigned char *)data, n, ALG_NONE, NULL, err);
    }
    if (rc < 0) {
        ap_jwt_keyset_free(ks);
        return NULL;
    }
    return ks;
}

ap_jwt_keyset_t *ap_jwt_keyset_load(const char *path, ap_buf_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ap_buf_printf(err, "cannot open \"%s\": %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > KEYFILE_MAX) {
        ap_buf_printf(err, "\"%s\" is not a regular file of at most %d bytes", path, KEYFILE_MAX);
        close(fd);
        return NULL;
    }
    ap_buf_t text;
    ap_buf_init(&text);
    ap_buf_reserve(&text, (size_t)st.st_size + 1);
    int failed = 0;
    for (;;) {
        if (text.len >= KEYFILE_MAX) {
            ap_buf_printf(err, "\"%s\" is larger than %d bytes", path, KEYFILE_MAX);
            failed = 1;
            break;
        }
        ap_buf_reserve(&text, 4096);
        ssize_t n = read(fd, text.data + text.len, text.cap - text.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ap_buf_printf(err, "cannot read \"%s\": %s", path, strerror(errno));
            failed = 1;
            break;
        }
        if (n == 0)
            break;
        text.len += (size_t)n;
    }
    close(fd);
    ap_jwt_keyset_t *ks = NULL;
    if (!failed) {
        text.data[text.len] = '\0';
        ap_buf_t why;
        ap_buf_init(&why);
        ks = ap_jwt_keyset_parse(text.data, text.len, &why);
        if (ks == NULL) {
            ap_buf_printf(err, "\"%s\": %s", path, why.data ? why.data : "invalid");
        } else {
            int symmetric;
            ap_jwt_keyset_count(ks, &symmetric);
            if (symmetric && (st.st_mode & S_IROTH)) {
                ap_buf_printf(err,
                              "\"%s\" holds a secret and every user may read it "
                              "(chmod o-r \"%s\")",
                              path, path);
                ap_jwt_keyset_free(ks);
                ks = NULL;
            }
        }
        ap_buf_cleanup(&why);
    }
    if (text.data)
        OPENSSL_cleanse(text.data, text.cap);
    ap_buf_cleanup(&text);
    return ks;
}

/* --- verification --- */

static int verify_hmac(const ap_jwt_keyset_t *ks, const jwt_key_t *k, alg_t alg, const char *input,
                       size_t ilen, const unsigned char *sig, size_t slen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mlen = 0;
    (void)ks;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(k->mac[algs[alg].md]);
    if (ctx == NULL)
        return 0;
    int ok = EVP_MAC_update(ctx, (const unsigned char *)input, ilen) == 1 &&
             EVP_MAC_final(ctx, mac, &mlen, sizeof(mac)) == 1;
    EVP_MAC_CTX_free(ctx);
    /* Constant time: how much of a guess matched must not show. */
    ok = ok && mlen == slen && CRYPTO_memcmp(mac, sig, mlen) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

static int verify_pkey(const ap_jwt_keyset_t *ks, const jwt_key_t *k, alg_t alg, const char *input,
                       size_t ilen, const unsigned char *sig, size_t slen)
{
    unsigned char *der = NULL;
    int dlen = 0;
    if (k->kty == KTY_EC) {
        /* JWS carries r || s, each the curve's size (RFC 7518 3.4);
         * EVP wants the DER form. */
        size_t cl = algs[alg].ec_len;
        if (slen != 2 * cl)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)cl, NULL), *s = BN_bin2bn(sig + cl, (int)cl, NULL);
        if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return 0;
        }
        dlen = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (dlen <= 0)
            return 0;
        sig = der;
        slen = (size_t)dlen;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, ks->md[algs[alg].md], NULL, k->pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, slen, (const unsigned char *)input, ilen) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

static int key_allows(const jwt_key_t *k, alg_t alg)
{
    return algs[alg].kty == k->kty && (k->alg == ALG_NONE || k->alg == alg);
}

static ap_jwt_status_t fail(ap_jwt_error_t *err, ap_jwt_status_t st, const char *message,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static ap_jwt_status_t failm(ap_jwt_error_t *err, ap_jwt_status_t st, const char *message)
{
    snprintf(err->message, sizeof(err->message), "%s", message);
    err->details[0] = '\0';
    return st;
}

static ap_jwt_status_t fail(ap_jwt_error_t *err, ap_jwt_status_t st, const char *message,
                            const char *fmt, ...)
{
    va_list ap;
    snprintf(err->message, sizeof(err->message), "%s", message);
    va_start(ap, fmt);
    vsnprintf(err->details, sizeof(err->details), fmt, ap);
    va_end(ap);
    return st;
}

#define DECODE_MSG "JWT couldn't be decoded"
#define ALG_MSG "Wrong or unsupported encoding algorithm"
#define KEY_MSG "No suitable key or wrong key type"
#define CRYPTO_MSG "JWT cryptographic operation failed"
#define CLAIMS_MSG "Parsing claims failed"

/* A NumericDate claim as whole seconds; -1 when it is not a number. */
static int numeric_date(yajl_val v, int64_t *out)
{
    if (!YAJL_IS_NUMBER(v))
        return -1;
    double d = strtod(v->u.number.r, NULL);
    if (d != d)
        return -1;
    if (d >= 9.2e18 || d <= -9.2e18) {
        *out = d > 0 ? INT64_MAX : INT64_MIN;
        return 0;
    }
    /* Whole seconds, rounded down (a fraction of a second is allowed). */
    int64_t t = (int64_t)d;
    if ((double)t > d)
        t--;
    *out = t;
    return 0;
}

static ap_jwt_status_t check_claims(yajl_val c, int64_t now, const ap_jwt_opts_t *o,
                                    ap_jwt_error_t *err)
{
    int64_t t, skew = o->leeway_s;
    yajl_val v;
    if ((v = obj_get(c, "exp")) != NULL) {
        if (numeric_date(v, &t) < 0)
            return failm(err, AP_JWT_CLAIMS, "The JWT 'exp' claim must be a number");
        if (now - skew > t)
            return failm(err, AP_JWT_CLAIMS, "JWT expired");
    }
    if ((v = obj_get(c, "nbf")) != NULL) {
        if (numeric_date(v, &t) < 0)
            return failm(err, AP_JWT_CLAIMS, "The JWT 'nbf' claim must be a number");
        if (now + skew < t)
            return failm(err, AP_JWT_CLAIMS, "JWT not yet valid");
    }
    if ((v = obj_get(c, "iat")) != NULL) {
        if (numeric_date(v, &t) < 0)
            return failm(err, AP_JWT_CLAIMS, "The JWT 'iat' claim must be a number");
        if (now + skew < t)
            return failm(err, AP_JWT_CLAIMS, "JWT issued at future");
    }
    if ((v = obj_get(c, "aud")) != NULL && !YAJL_IS_NULL(v)) {
        static const char shape[] = "The JWT 'aud' claim must be a string or an array of strings";
        int match = o->aud == NULL;
        if (YAJL_IS_STRING(v)) {
            match = match || strcmp(v->u.string, o->aud) == 0;
        } else if (YAJL_IS_ARRAY(v)) {
            /* An empty list names no audience in particular: any will do. */
            if (v->u.array.len == 0)
                match = 1;
            for (size_t i = 0; i < v->u.array.len; i++) {
                yajl_val e = v->u.array.values[i];
                if (!YAJL_IS_STRING(e))
                    return failm(err, AP_JWT_CLAIMS, shape);
                match = match || strcmp(e->u.string, o->aud) == 0;
            }
        } else {
            return failm(err, AP_JWT_CLAIMS, shape);
        }
        if (!match)
            return failm(err, AP_JWT_CLAIMS, "JWT not in audience");
    }
    return AP_JWT_OK;
}

ap_jwt_status_t ap_jwt_verify(const ap_jwt_keyset_t *ks, const char *token, size_t len, int64_t now,
                              const ap_jwt_opts_t *opts, ap_jwt_claims_t *claims,
                              ap_jwt_error_t *err)
{
    memset(claims, 0, sizeof(*claims));
    if (len == 0)
        return failm(err, AP_JWT_DECODE, "Empty JWT is sent in Authorization header");
    if (len > AP_JWT_MAX_LEN)
        return fail(err, AP_JWT_DECODE, DECODE_MSG, "the token is longer than %d bytes",
                    AP_JWT_MAX_LEN);
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    size_t parts = 1;
    for (size_t i = 0; i < len; i++)
        parts += token[i] == '.';
    if (parts != 3) {
        failm(err, AP_JWT_DECODE, "Expected 3 parts in JWT; got ");
        snprintf(err->message + strlen(err->message), sizeof(err->message) - strlen(err->message),
                 "%zu", parts);
        return AP_JWT_DECODE;
    }
    const char *hdr = token, *pay = dot1 + 1, *sigp = dot2 + 1;
    size_t hlen = (size_t)(dot1 - token), plen = (size_t)(dot2 - pay);
    size_t slen = len - (size_t)(sigp - token);

    ap_buf_t hb, pb, sb;
    ap_buf_init(&hb);
    ap_buf_init(&pb);
    ap_buf_init(&sb);
    yajl_val header = NULL, payload = NULL;
    ap_jwt_status_t st = AP_JWT_OK;

    if (hlen == 0 || ap_jwt_b64url_decode(hdr, hlen, &hb) < 0) {
        st = fail(err, AP_JWT_DECODE, DECODE_MSG, "the header is not base64url");
        goto out;
    }
    if ((header = parse_object(hb.data, hb.len)) == NULL) {
        st = fail(err, AP_JWT_DECODE, DECODE_MSG, "the header is not a JSON object");
        goto out;
    }
    yajl_val alg = obj_get(header, "alg"), kid = obj_get(header, "kid");
    if (!YAJL_IS_STRING(alg) || obj_count(header, "alg") != 1) {
        st = fail(err, AP_JWT_DECODE, ALG_MSG, "the header needs one \"alg\", a string");
        goto out;
    }
    alg_t a = alg_by_name(alg->u.string);
    if (a == ALG_NONE) {
        st = fail(err, AP_JWT_DECODE, ALG_MSG,
                  strcasecmp(alg->u.string, "none") == 0
                      ? "unsigned tokens (alg \"%.40s\") are never accepted"
                      : "alg \"%.40s\" is not supported (HS256/384/512, RS256/384/512, "
                        "ES256/384/512 are)",
                  alg->u.string);
        goto out;
    }
    if (kid && (!YAJL_IS_STRING(kid) || obj_count(header, "kid") != 1)) {
        st = fail(err, AP_JWT_DECODE, DECODE_MSG, "\"kid\" in the header is not one string");
        goto out;
    }
    if (obj_get(header, "crit")) {
        st = fail(err, AP_JWT_DECODE, DECODE_MSG,
                  "the header has \"crit\" extensions, which apiary does not implement");
        goto out;
    }
    if (slen == 0 || ap_jwt_b64url_decode(sigp, slen, &sb) < 0) {
        st = fail(err, AP_JWT_DECODE, DECODE_MSG, "the signature is not base64url");
        goto out;
    }
    /* The payload must decode too, before anything is verified. */
    if (ap_jwt_b64url_decode(pay, plen, &pb) < 0) {
        st = fail(err, AP_JWT_DECODE, DECODE_MSG, "the payload is not base64url");
        goto out;
    }

    /* The key set decides which keys may verify this algorithm; the
     * token only picks among them. */
    const char *want_kid = kid && ks->jwks ? kid->u.string : NULL;
    int candidates = 0, verified = 0, kid_seen = 0;
    for (size_t i = 0; i < ks->n && !verified; i++) {
        const jwt_key_t *k = &ks->keys[i];
        if (want_kid) {
            if (k->kid == NULL || strcmp(k->kid, want_kid) != 0)
                continue;
            kid_seen = 1;
        }
        if (!key_allows(k, a))
            continue;
        candidates++;
        size_t ilen = (size_t)(dot2 - token);
        verified = k->kty == KTY_OCT
                       ? verify_hmac(ks, k, a, token, ilen, (unsigned char *)sb.data, sb.len)
                       : verify_pkey(ks, k, a, token, ilen, (unsigned char *)sb.data, sb.len);
    }
    if (!candidates) {
        if (want_kid && !kid_seen)
            st = fail(err, AP_JWT_DECODE, KEY_MSG, "no key has the kid \"%.60s\"", want_kid);
        else
            st = fail(err, AP_JWT_DECODE, KEY_MSG, "no key%s verifies %s signatures",
                      want_kid ? " with this kid" : "", algs[a].name);
        goto out;
    }
    if (!verified) {
        st = failm(err, AP_JWT_DECODE, CRYPTO_MSG);
        goto out;
    }

    if ((payload = parse_object(pb.data, pb.len)) == NULL) {
        st = fail(err, AP_JWT_CLAIMS, CLAIMS_MSG, "the payload is not a JSON object");
        goto out;
    }
    const char *dup = obj_duplicate(payload);
    if (dup) {
        st = fail(err, AP_JWT_CLAIMS, CLAIMS_MSG, "the claim \"%.60s\" appears twice", dup);
        goto out;
    }
    st = check_claims(payload, now, opts, err);
    if (st != AP_JWT_OK)
        goto out;
    claims->text = pb.data;
    claims->len = pb.len;
    claims->tree = payload;
    pb.data = NULL;
    payload = NULL;
out:
    yajl_tree_free(header);
    yajl_tree_free(payload);
    ap_buf_cleanup(&hb);
    ap_buf_cleanup(&pb);
    ap_buf_cleanup(&sb);
    return st;
}

void ap_jwt_claims_cleanup(ap_jwt_claims_t *c)
{
    free(c->text);
    yajl_tree_free(c->tree);
    memset(c, 0, sizeof(*c));
}

/* --- the role claim's path --- */

typedef struct {
    char *key; /* NULL for an index */
    size_t index;
} seg_t;

struct ap_jwt_path_s {
    seg_t *segs;
    size_t n;
};

static void path_add(ap_jwt_path_t *p, char *key, size_t index)
{
    p->segs = ap_xrealloc(p->segs, (p->n + 1) * sizeof(*p->segs));
    p->segs[p->n].key = key;
    p->segs[p->n].index = index;
    p->n++;
}

void ap_jwt_path_free(ap_jwt_path_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->segs[i].key);
    free(p->segs);
    free(p);
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || c == '@' || c == '-';
}

/* A quoted name from s (at the quote); sets *end past the closing quote. */
static char *quoted(const char *s, const char **end)
{
    char q = *s++;
    const char *close = strchr(s, q);
    if (close == NULL || close == s)
        return NULL;
    for (const char *p = s; p < close; p++)
        if ((unsigned char)*p < 0x20 || *p == '\\')
            return NULL;
    *end = close + 1;
    return ap_xstrndup(s, (size_t)(close - s));
}

ap_jwt_path_t *ap_jwt_path_parse(const char *text, const char **why)
{
    ap_jwt_path_t *p = ap_xcalloc(1, sizeof(*p));
    const char *s = text;
    *why = NULL;
    if (s[0] == '$')
        s++;
    else if (s[0] != '.' && s[0] != '\0') {
        /* "role": the bare name of a top-level claim. */
        const char *e = s;
        while (name_char(*e))
            e++;
        if (*e == '\0' && e > s) {
            path_add(p, ap_xstrdup(s), 0);
            return p;
        }
        *why = "expected a claim name (role) or a path such as .role, .realm_access.roles[0] "
               "or $.app.role";
        ap_jwt_path_free(p);
        return NULL;
    }
    while (*s && !*why) {
        if (s[0] == '.' && (s[1] == '"' || s[1] == '\'')) {
            char *k = quoted(s + 1, &s);
            if (k == NULL)
                *why = "an unterminated or empty quoted name";
            else
                path_add(p, k, 0);
        } else if (s[0] == '.') {
            const char *e = ++s;
            while (name_char(*e))
                e++;
            if (e == s)
                *why = "a name is expected after \".\" (letters, digits, _ $ @ -, or quoted)";
            else
                path_add(p, ap_xstrndup(s, (size_t)(e - s)), 0);
            s = e;
        } else if (s[0] == '[' && (s[1] == '"' || s[1] == '\'')) {
            char *k = quoted(s + 1, &s);
            if (k == NULL || *s != ']') {
                free(k);
                *why = "expected ['name'] or [\"name\"]";
            } else {
                path_add(p, k, 0);
                s++;
            }
        } else if (s[0] == '[') {
            s++;
            size_t idx = 0;
            const char *e = s;
            while (*e >= '0' && *e <= '9' && e - s < 9)
                idx = idx * 10 + (size_t)(*e++ - '0');
            if (e == s || *e != ']') {
                *why = "expected an array index such as [0]";
                break;
            }
            path_add(p, NULL, idx);
            s = e + 1;
        } else {
            *why = "expected .name, .\"name\", ['name'] or [N]";
        }
    }
    if (!*why && p->n == 0)
        *why = "the path names no claim";
    if (*why) {
        ap_jwt_path_free(p);
        return NULL;
    }
    return p;
}

yajl_val ap_jwt_path_get(const ap_jwt_path_t *p, yajl_val v)
{
    for (size_t i = 0; i < p->n && v; i++) {
        if (p->segs[i].key)
            v = obj_get(v, p->segs[i].key);
        else if (YAJL_IS_ARRAY(v) && p->segs[i].index < v->u.array.len)
            v = v->u.array.values[p->segs[i].index];
        else
            v = NULL;
    }
    return v;
}
