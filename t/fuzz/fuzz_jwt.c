/* SPDX-License-Identifier: BSD-2-Clause */
/* libFuzzer target: JWT parsing. The first byte chooses what the rest is:
 *   0  a token, verified against a secret, PEM keys and a JWKS;
 *   1  "header<TAB>payload" as JSON texts, which the harness encodes and
 *      signs with the secret, so that the header, claims and role-path
 *      code past the signature check is reached too;
 *   2  key material for ap_jwt_keyset_parse;
 *   3  a role claim path, applied to a fixed claims object.
 * Whatever the input, the verifier answers OK with an object of claims or
 * refuses with a message; it never crashes, leaks or reads out of bounds. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"

static const char secret[] = "fuzzing-secret-0123456789abcdef-0123456789";
static ap_jwt_keyset_t *sets[3];
static ap_jwt_path_t *paths[3];
static yajl_val fixed_claims;

static char *pubpem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static void init(void)
{
    ap_buf_t err, text;
    ap_buf_init(&err);
    ap_buf_init(&text);
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char *r = pubpem(rsa), *e = pubpem(ec);
    sets[0] = ap_jwt_keyset_parse(secret, sizeof(secret) - 1, &err);
    ap_buf_printf(&text, "%s%s", r, e);
    sets[1] = ap_jwt_keyset_parse(text.data, text.len, &err);
    ap_buf_reset(&text);
    ap_buf_append_str(&text, "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"");
    ap_jwt_b64url_encode(&text, secret, sizeof(secret) - 1);
    ap_buf_append_str(&text, "\"}]}");
    sets[2] = ap_jwt_keyset_parse(text.data, text.len, &err);
    if (!sets[0] || !sets[1] || !sets[2])
        abort();
    const char *why;
    paths[0] = ap_jwt_path_parse("role", &why);
    paths[1] = ap_jwt_path_parse(".realm_access.roles[0]", &why);
    paths[2] = ap_jwt_path_parse("$['https://x'].role", &why);
    fixed_claims =
        yajl_tree_parse("{\"role\":\"a\",\"realm_access\":{\"roles\":[\"b\",{\"c\":[1]}]},"
                        "\"https://x\":{\"role\":null}}",
                        NULL, 0);
    free(r);
    free(e);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    ap_buf_cleanup(&err);
    ap_buf_cleanup(&text);
}

static void verify(const ap_jwt_keyset_t *ks, const char *tok, size_t len, const char *aud)
{
    ap_jwt_opts_t o = {aud, 30};
    ap_jwt_claims_t c;
    ap_jwt_error_t e;
    ap_jwt_status_t st = ap_jwt_verify(ks, tok, len, 1700000000, &o, &c, &e);
    if (st == AP_JWT_OK) {
        if (!YAJL_IS_OBJECT(c.tree) || c.text == NULL || strlen(c.text) != c.len)
            abort();
        for (int i = 0; i < 3; i++)
            (void)ap_jwt_path_get(paths[i], c.tree);
        ap_buf_t b;
        ap_buf_init(&b);
        ap_jwt_json_append(&b, c.tree);
        /* What the claims re-serialise to must parse again. */
        yajl_val again = yajl_tree_parse(b.data, NULL, 0);
        if (!YAJL_IS_OBJECT(again))
            abort();
        yajl_tree_free(again);
        ap_buf_cleanup(&b);
    } else if (e.message[0] == '\0' || (st != AP_JWT_DECODE && st != AP_JWT_CLAIMS)) {
        abort();
    }
    ap_jwt_claims_cleanup(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sets[0] == NULL)
        init();
    if (size < 1)
        return 0;
    int mode = data[0] % 4;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    switch (mode) {
    case 0:
        for (int i = 0; i < 3; i++)
            verify(sets[i], in, n, i == 2 ? "aud" : NULL);
        break;
    case 1: {
        const char *tab = memchr(in, '\t', n);
        size_t hl = tab ? (size_t)(tab - in) : 0;
        const char *p = tab ? tab + 1 : in;
        size_t pl = n - (size_t)(p - in);
        ap_buf_t tok;
        ap_buf_init(&tok);
        if (tab)
            ap_jwt_b64url_encode(&tok, in, hl);
        else
            ap_buf_append_str(&tok, "eyJhbGciOiJIUzI1NiJ9"); /* {"alg":"HS256"} */
        ap_buf_append_char(&tok, '.');
        ap_jwt_b64url_encode(&tok, p, pl);
        unsigned char mac[32];
        size_t ml = 0;
        if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, sizeof(secret) - 1,
                      (unsigned char *)tok.data, tok.len, mac, sizeof(mac), &ml) == NULL)
            abort();
        ap_buf_append_char(&tok, '.');
        ap_jwt_b64url_encode(&tok, mac, ml);
        verify(sets[0], tok.data, tok.len, NULL);
        verify(sets[2], tok.data, tok.len, "aud");
        ap_buf_cleanup(&tok);
        break;
    }
    case 2: {
        ap_buf_t err;
        ap_buf_init(&err);
        ap_jwt_keyset_t *ks = ap_jwt_keyset_parse(in, n, &err);
        if ((ks == NULL) == (err.len == 0))
            abort();
        ap_jwt_keyset_free(ks);
        ap_buf_cleanup(&err);
        break;
    }
    default: {
        char *s = strndup(in, n);
        const char *why = NULL;
        ap_jwt_path_t *p = ap_jwt_path_parse(s, &why);
        if ((p == NULL) != (why != NULL))
            abort();
        if (p)
            (void)ap_jwt_path_get(p, fixed_claims);
        ap_jwt_path_free(p);
        free(s);
        break;
    }
    }
    return 0;
}
