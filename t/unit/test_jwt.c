/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: JWT verification. Every token is made here with OpenSSL,
 * keys included: every algorithm accepted, and each way a token must be
 * refused (alg none, algorithm confusion, bad base64, truncation, a wrong
 * signature, bad JSON, time claims, audience, kid), key loading and its
 * refusals, base64url and the role claim's path. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jwt.h"
#include "tap.h"

#define NOW 1700000000LL

static const char secret[] = "0123456789abcdef0123456789ABCDEF-test-secret";

static char *b64(const void *p, size_t n)
{
    ap_buf_t b;
    ap_buf_init(&b);
    ap_jwt_b64url_encode(&b, p, n);
    ap_buf_append_char(&b, '\0');
    return b.data;
}

static char *b64s(const char *s)
{
    return b64(s, strlen(s));
}

static const char *md_of(const char *alg)
{
    return strstr(alg, "256") ? "SHA256" : strstr(alg, "384") ? "SHA384" : "SHA512";
}

/* The signature of input by alg with an HMAC secret or a private key, as
 * JWS carries it. */
static ap_buf_t sign(const char *alg, const void *hkey, size_t hlen, EVP_PKEY *pkey,
                     const char *input)
{
    ap_buf_t sig;
    ap_buf_init(&sig);
    if (alg[0] == 'H') {
        unsigned char mac[64];
        size_t mlen = 0;
        EVP_Q_mac(NULL, "HMAC", NULL, md_of(alg), NULL, hkey, hlen, (const unsigned char *)input,
                  strlen(input), mac, sizeof(mac), &mlen);
        ap_buf_append(&sig, mac, mlen);
        return sig;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[1024];
    size_t dlen = sizeof(der);
    EVP_DigestSignInit_ex(ctx, NULL, md_of(alg), NULL, NULL, pkey, NULL);
    EVP_DigestSign(ctx, der, &dlen, (const unsigned char *)input, strlen(input));
    EVP_MD_CTX_free(ctx);
    if (alg[0] == 'R') {
        ap_buf_append(&sig, der, dlen);
        return sig;
    }
    /* ES: DER to r || s, each the coordinate's size. */
    size_t cl = strstr(alg, "256") ? 32 : strstr(alg, "384") ? 48 : 66;
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    unsigned char rs[132];
    BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, (int)cl);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + cl, (int)cl);
    ECDSA_SIG_free(es);
    ap_buf_append(&sig, rs, 2 * cl);
    return sig;
}

/* header.payload.signature from JSON texts. */
static char *token(const char *alg, const char *header, const char *payload, const void *hkey,
                   size_t hlen, EVP_PKEY *pkey)
{
    char *h = b64s(header), *p = b64s(payload);
    ap_buf_t t;
    ap_buf_init(&t);
    ap_buf_printf(&t, "%s.%s", h, p);
    ap_buf_t sig = sign(alg, hkey, hlen, pkey, t.data);
    char *s = b64(sig.data, sig.len);
    ap_buf_printf(&t, ".%s", s);
    free(h);
    free(p);
    free(s);
    ap_buf_cleanup(&sig);
    return t.data;
}

static char *hs(const char *alg, const char *payload)
{
    char header[64];
    snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    return token(alg, header, payload, secret, strlen(secret), NULL);
}

static char *pk(const char *alg, const char *header, const char *payload, EVP_PKEY *key)
{
    char h[256];
    if (header == NULL) {
        snprintf(h, sizeof(h), "{\"alg\":\"%s\"}", alg);
        header = h;
    }
    return token(alg, header, payload, NULL, 0, key);
}

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

static char *privpem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static char *bn_b64(EVP_PKEY *k, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    EVP_PKEY_get_bn_param(k, param, &bn);
    unsigned char buf[600];
    int n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
    BN_free(bn);
    return b64(buf, (size_t)n);
}

static char *rsa_jwk(EVP_PKEY *k, const char *kid, const char *alg)
{
    char *n = bn_b64(k, OSSL_PKEY_PARAM_RSA_N, 0), *e = bn_b64(k, OSSL_PKEY_PARAM_RSA_E, 0);
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_printf(&b, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"", n, e);
    if (kid)
        ap_buf_printf(&b, ",\"kid\":\"%s\"", kid);
    if (alg)
        ap_buf_printf(&b, ",\"alg\":\"%s\"", alg);
    ap_buf_append_char(&b, '}');
    free(n);
    free(e);
    return b.data;
}

static char *ec_jwk(EVP_PKEY *k, const char *kid)
{
    char *x = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, 32), *y = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    ap_buf_t b;
    ap_buf_init(&b);
    ap_buf_printf(&b, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":\"%s\"}",
                  x, y, kid);
    free(x);
    free(y);
    return b.data;
}

static ap_jwt_keyset_t *keys(const char *text, const char *name)
{
    ap_buf_t err;
    ap_buf_init(&err);
    ap_jwt_keyset_t *ks = ap_jwt_keyset_parse(text, strlen(text), &err);
    ok(ks != NULL, "keys load: %s", name);
    if (ks == NULL)
        printf("#   %s\n", err.data);
    ap_buf_cleanup(&err);
    return ks;
}

static void keys_refused(const char *text, size_t len, const char *want, const char *name)
{
    ap_buf_t err;
    ap_buf_init(&err);
    if (len == 0)
        len = strlen(text);
    ap_jwt_keyset_t *ks = ap_jwt_keyset_parse(text, len, &err);
    ok(ks == NULL && err.data && strstr(err.data, want), "keys refused: %s", name);
    if (ks || !err.data || !strstr(err.data, want))
        printf("#   got \"%s\", want \"%s\"\n", err.data ? err.data : "", want);
    ap_jwt_keyset_free(ks);
    ap_buf_cleanup(&err);
}

static const ap_jwt_opts_t opts = {NULL, 30};

/* Verifies tok and checks the outcome and, when refused, the message. */
static void check(const ap_jwt_keyset_t *ks, const char *tok, const ap_jwt_opts_t *o,
                  ap_jwt_status_t want, const char *want_msg, const char *name)
{
    ap_jwt_claims_t c;
    ap_jwt_error_t e;
    ap_jwt_status_t st = ap_jwt_verify(ks, tok, strlen(tok), NOW, o ? o : &opts, &c, &e);
    int good = st == want && (st == AP_JWT_OK ? c.tree != NULL && c.text != NULL
                                              : strcmp(e.message, want_msg) == 0);
    ok(good, "%s", name);
    if (!good)
        printf("#   status %d (want %d): %s (%s)\n", st, want, st ? e.message : "ok",
               st ? e.details : "");
    ap_jwt_claims_cleanup(&c);
}

#define ACCEPT(ks, tok, name) check(ks, tok, NULL, AP_JWT_OK, NULL, name)
#define REFUSE(ks, tok, st, msg, name) check(ks, tok, NULL, st, msg, name)

static char *replace_part(const char *tok, int part, const char *with)
{
    const char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    ap_buf_t b;
    ap_buf_init(&b);
    if (part == 0)
        ap_buf_printf(&b, "%s%s", with, d1);
    else if (part == 1)
        ap_buf_printf(&b, "%.*s.%s%s", (int)(d1 - tok), tok, with, d2);
    else
        ap_buf_printf(&b, "%.*s.%s", (int)(d2 - tok), tok, with);
    return b.data;
}

static void test_b64(void)
{
    ap_buf_t b;
    ap_buf_init(&b);
    char *e = b64("\xfb\xff\xfe", 3);
    is_str(e, "-__-", "base64url uses - and _");
    free(e);
    ok(ap_jwt_b64url_decode("-__-", 4, &b) == 0 && b.len == 3 &&
           memcmp(b.data, "\xfb\xff\xfe", 3) == 0,
       "decodes - and _");
    ap_buf_reset(&b);
    ok(ap_jwt_b64url_decode("QQ", 2, &b) == 0 && b.len == 1 && b.data[0] == 'A',
       "unpadded QQ is A");
    ap_buf_reset(&b);
    ok(ap_jwt_b64url_decode("QQ==", 4, &b) < 0, "padding refused");
    ok(ap_jwt_b64url_decode("QR", 2, &b) < 0, "non-zero unused bits refused");
    ok(ap_jwt_b64url_decode("Q", 1, &b) < 0, "a length of 4n+1 refused");
    ok(ap_jwt_b64url_decode("+/+/", 4, &b) < 0, "+ and / (plain base64) refused");
    ok(ap_jwt_b64url_decode("QU JD", 5, &b) < 0, "a space refused");
    ok(ap_jwt_b64url_decode("QUJ\0", 4, &b) < 0, "a NUL refused");
    ap_buf_reset(&b);
    ok(ap_jwt_b64url_decode("", 0, &b) == 0 && b.len == 0, "empty is empty");
    for (size_t n = 0; n < 40; n++) {
        unsigned char in[40];
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)(i * 37 + n);
        char *s = b64(in, n);
        ap_buf_reset(&b);
        if (ap_jwt_b64url_decode(s, strlen(s), &b) < 0 || b.len != n || memcmp(b.data, in, n)) {
            ok(0, "round trip of %zu bytes", n);
            free(s);
            break;
        }
        free(s);
        if (n == 39)
            ok(1, "base64url round trips, 0..39 bytes");
    }
    ap_buf_cleanup(&b);
}

static void test_path(void)
{
    const char *why;
    yajl_val v = yajl_tree_parse("{\"role\":\"a\",\"realm_access\":{\"roles\":[\"x\",\"y\"]},"
                                 "\"https://ex.com/claims\":{\"role\":\"z\"}}",
                                 NULL, 0);
    static const struct {
        const char *path, *want;
    } cases[] = {
        {"role", "a"},
        {".role", "a"},
        {"$.role", "a"},
        {".realm_access.roles[1]", "y"},
        {"$.realm_access.roles[0]", "x"},
        {".\"https://ex.com/claims\".role", "z"},
        {"$['https://ex.com/claims'].role", "z"},
        {"$[\"https://ex.com/claims\"][\"role\"]", "z"},
        {".realm_access.roles[2]", NULL},
        {".nothing", NULL},
        {".role[0]", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ap_jwt_path_t *p = ap_jwt_path_parse(cases[i].path, &why);
        yajl_val got = p ? ap_jwt_path_get(p, v) : NULL;
        const char *s = YAJL_IS_STRING(got) ? got->u.string : NULL;
        ok(p != NULL && ((s == NULL && cases[i].want == NULL) ||
                         (s && cases[i].want && strcmp(s, cases[i].want) == 0)),
           "path %s -> %s", cases[i].path, cases[i].want ? cases[i].want : "nothing");
        ap_jwt_path_free(p);
    }
    static const char *const bad[] = {"",       ".",    "..role", ".role.",
                                      "role x", "[x]",  ".a[",    ".\"unterminated",
                                      "$$",     ".a[1", "$['x'"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ap_jwt_path_t *p = ap_jwt_path_parse(bad[i], &why);
        ok(p == NULL && why != NULL, "path \"%s\" refused", bad[i]);
        ap_jwt_path_free(p);
    }
    yajl_tree_free(v);
}

static void test_keys(EVP_PKEY *rsa, EVP_PKEY *ec)
{
    ap_jwt_keyset_t *ks;
    int sym;
    keys_refused("short secret", 12, "12 bytes long; at least 32", "a 12-byte secret");
    keys_refused("0123456789abcdef0123456789abcde\n", 32, "31 bytes long",
                 "31 bytes and a newline: the newline does not count");
    ks = keys("0123456789abcdef0123456789abcdef\n", "32 bytes and a newline");
    ok(ks && ap_jwt_keyset_count(ks, &sym) == 1 && sym, "one symmetric key");
    ap_jwt_keyset_free(ks);
    keys_refused("CHANGE_ME_CHANGE_ME_CHANGE_ME_CHANGE_ME", 39, "placeholder", "CHANGE_ME");
    keys_refused("reallyreallyreallyreallyverysafe", 32, "placeholder",
                 "PostgREST's documentation example");
    keys_refused("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 38, "repeated",
                 "one character repeated");

    char *pem = pubpem(rsa);
    ks = keys(pem, "an RSA public key (PEM)");
    ok(ks && ap_jwt_keyset_count(ks, &sym) == 1 && !sym, "one asymmetric key");
    ap_jwt_keyset_free(ks);
    char *pem2 = pubpem(ec), both[8192];
    snprintf(both, sizeof(both), "%s%s", pem, pem2);
    ks = keys(both, "two PEM public keys (rotation)");
    ok(ks && ap_jwt_keyset_count(ks, NULL) == 2, "both are loaded");
    ap_jwt_keyset_free(ks);
    free(pem2);
    char *priv = privpem(rsa);
    keys_refused(priv, strlen(priv), "private key", "a private key (PEM)");
    free(priv);
    keys_refused("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", 56, "PEM block 1",
                 "PEM with garbage");
    keys_refused("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", 42, "PEM block 1",
                 "a PEM block of another kind");
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    char *spem = pubpem(small);
    keys_refused(spem, strlen(spem), "1024 bits", "an RSA key of 1024 bits");
    free(spem);
    EVP_PKEY_free(small);
    free(pem);

    keys_refused("{\"keys\": [", 0, "not valid JSON", "bad JSON");
    keys_refused("{\"keys\": []}", 0, "no key", "an empty JWKS");
    keys_refused("{\"keys\": {}}", 0, "not an array", "keys not an array");
    keys_refused("{\"kty\":\"oct\",\"k\":\"c2hvcnQ\"}", 0, "5 bytes long", "a short oct key");
    keys_refused("{\"kty\":\"oct\",\"alg\":\"RS256\",\"k\":\"c2hvcnQ\"}", 0, "does not fit",
                 "alg RS256 on an oct key");
    keys_refused("{\"kty\":\"RSA\",\"n\":\"AQAB\"}", 0, "\"e\" is missing", "RSA without e");
    keys_refused("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQAB\",\"y\":\"AQAB\"}", 0, "32 bytes",
                 "EC coordinates of the wrong size");
    {
        /* 32-byte x and y that are not a point of P-256. */
        char *x = b64("\x01\x02\x03\x04\x05\x06\x07\x08\x01\x02\x03\x04\x05\x06\x07\x08"
                      "\x01\x02\x03\x04\x05\x06\x07\x08\x01\x02\x03\x04\x05\x06\x07\x08",
                      32);
        char j[256];
        snprintf(j, sizeof(j), "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", x,
                 x);
        keys_refused(j, strlen(j), "not a point", "an EC point off the curve");
        free(x);
    }
    keys_refused("{\"kty\":\"EC\",\"crv\":\"secp256k1\",\"x\":\"AQAB\",\"y\":\"AQAB\"}", 0,
                 "not supported", "an unsupported curve");
    keys_refused("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AQAB\"}]}", 0, "no key",
                 "only an OKP key: none usable");
    keys_refused("{\"keys\":[{\"kty\":\"oct\",\"use\":\"enc\",\"k\":\"AQAB\"}]}", 0, "no key",
                 "a key for encryption only is skipped");
    keys_refused("[1]", 0, "3 bytes", "no '{': a 3-byte raw secret");
    keys_refused("{\"keys\":[\"x\"]}", 0, "key 1 of \"keys\"", "a key that is not an object");
}

int main(void)
{
    test_b64();
    test_path();

    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    ok(rsa && rsa2 && ec && ec384, "test keys generated");
    test_keys(rsa, ec);

    const char *claims = "{\"role\":\"webuser\",\"exp\":1700003600}";
    ap_jwt_keyset_t *hk = keys(secret, "the HMAC secret");
    char *rsapem = pubpem(rsa), *ecpem = pubpem(ec), *ec384pem = pubpem(ec384);
    ap_jwt_keyset_t *rk = keys(rsapem, "RSA PEM");
    ap_jwt_keyset_t *ek = keys(ecpem, "EC P-256 PEM");
    ap_jwt_keyset_t *ek384 = keys(ec384pem, "EC P-384 PEM");

    /* Every algorithm, accepted with its key. */
    char *t;
    static const char *const hss[] = {"HS256", "HS384", "HS512"};
    for (int i = 0; i < 3; i++) {
        t = hs(hss[i], claims);
        char name[64];
        snprintf(name, sizeof(name), "%s accepted", hss[i]);
        ACCEPT(hk, t, name);
        REFUSE(rk, t, AP_JWT_DECODE, "No suitable key or wrong key type",
               "an HS token against an RSA key: refused (no confusion)");
        free(t);
    }
    static const char *const rss[] = {"RS256", "RS384", "RS512"};
    for (int i = 0; i < 3; i++) {
        t = pk(rss[i], NULL, claims, rsa);
        char name[64];
        snprintf(name, sizeof(name), "%s accepted", rss[i]);
        ACCEPT(rk, t, name);
        REFUSE(hk, t, AP_JWT_DECODE, "No suitable key or wrong key type",
               "an RS token against an HMAC secret: refused");
        REFUSE(ek, t, AP_JWT_DECODE, "No suitable key or wrong key type",
               "an RS token against an EC key: refused");
        free(t);
    }
    t = pk("ES256", NULL, claims, ec);
    ACCEPT(ek, t, "ES256 accepted");
    REFUSE(rk, t, AP_JWT_DECODE, "No suitable key or wrong key type", "ES256 against RSA: refused");
    REFUSE(ek384, t, AP_JWT_DECODE, "No suitable key or wrong key type",
           "ES256 against a P-384 key: refused");
    {
        /* The same signature in DER, as a careless signer would send it. */
        char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
        ap_buf_t in;
        ap_buf_init(&in);
        ap_buf_append(&in, t, (size_t)(d2 - t));
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned char der[256];
        size_t dlen = sizeof(der);
        EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, ec, NULL);
        EVP_DigestSign(ctx, der, &dlen, (unsigned char *)in.data, in.len);
        EVP_MD_CTX_free(ctx);
        char *s = b64(der, dlen);
        char *td = replace_part(t, 2, s);
        REFUSE(ek, td, AP_JWT_DECODE, "JWT cryptographic operation failed",
               "ES256 with a DER signature: refused");
        free(s);
        free(td);
        ap_buf_cleanup(&in);
    }
    free(t);
    t = pk("ES384", NULL, claims, ec384);
    ACCEPT(ek384, t, "ES384 accepted");
    REFUSE(ek, t, AP_JWT_DECODE, "No suitable key or wrong key type",
           "ES384 against P-256: refused");
    free(t);

    /* The classic confusion: an HS256 token whose "secret" is the RSA
     * public key's PEM text. */
    t = token("HS256", "{\"alg\":\"HS256\"}", claims, rsapem, strlen(rsapem), NULL);
    REFUSE(rk, t, AP_JWT_DECODE, "No suitable key or wrong key type",
           "HS256 signed with the public key's PEM as secret: refused");
    free(t);

    /* alg none, in every spelling, and unknown algorithms. */
    static const char *const nones[] = {"none", "None", "NONE", "nOnE"};
    for (int i = 0; i < 4; i++) {
        char h[64], name[64];
        snprintf(h, sizeof(h), "{\"alg\":\"%s\"}", nones[i]);
        char *hb = b64s(h), *pb = b64s(claims);
        ap_buf_t b;
        ap_buf_init(&b);
        ap_buf_printf(&b, "%s.%s.", hb, pb);
        snprintf(name, sizeof(name), "alg %s with no signature: refused", nones[i]);
        REFUSE(hk, b.data, AP_JWT_DECODE, "Wrong or unsupported encoding algorithm", name);
        ap_buf_printf(&b, "c2ln");
        snprintf(name, sizeof(name), "alg %s with a signature: refused", nones[i]);
        REFUSE(hk, b.data, AP_JWT_DECODE, "Wrong or unsupported encoding algorithm", name);
        ap_buf_cleanup(&b);
        free(hb);
        free(pb);
    }
    t = token("HS256", "{\"alg\":\"PS256\"}", claims, secret, strlen(secret), NULL);
    REFUSE(hk, t, AP_JWT_DECODE, "Wrong or unsupported encoding algorithm", "alg PS256: refused");
    free(t);
    t = token("HS256", "{\"typ\":\"JWT\"}", claims, secret, strlen(secret), NULL);
    REFUSE(hk, t, AP_JWT_DECODE, "Wrong or unsupported encoding algorithm", "no alg: refused");
    free(t);
    t = token("HS256", "{\"alg\":\"HS256\",\"alg\":\"none\"}", claims, secret, strlen(secret),
              NULL);
    REFUSE(hk, t, AP_JWT_DECODE, "Wrong or unsupported encoding algorithm", "alg twice: refused");
    free(t);
    t = token("HS256", "{\"alg\":256}", claims, secret, strlen(secret), NULL);
    REFUSE(hk, t, AP_JWT_DECODE, "Wrong or unsupported encoding algorithm",
           "alg a number: refused");
    free(t);
    t = token("HS256", "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims, secret, strlen(secret),
              NULL);
    REFUSE(hk, t, AP_JWT_DECODE, "JWT couldn't be decoded", "crit: refused");
    free(t);

    /* Shape and encoding. */
    t = hs("HS256", claims);
    REFUSE(hk, "", AP_JWT_DECODE, "Empty JWT is sent in Authorization header", "empty token");
    REFUSE(hk, "abc", AP_JWT_DECODE, "Expected 3 parts in JWT; got 1", "one part");
    REFUSE(hk, "a.b", AP_JWT_DECODE, "Expected 3 parts in JWT; got 2", "two parts");
    {
        char four[4096];
        snprintf(four, sizeof(four), "%s.x", t);
        REFUSE(hk, four, AP_JWT_DECODE, "Expected 3 parts in JWT; got 4", "four parts");
        size_t n = strlen(t);
        char *cut = strndup(t, n - 1);
        REFUSE(hk, cut, AP_JWT_DECODE, "JWT couldn't be decoded",
               "the last character cut off: refused");
        free(cut);
        cut = strndup(t, n - 2);
        REFUSE(hk, cut, AP_JWT_DECODE, "JWT couldn't be decoded",
               "two characters cut off: not base64url (4n+1)");
        free(cut);
        cut = strndup(t, (size_t)(strrchr(t, '.') - t) + 1);
        REFUSE(hk, cut, AP_JWT_DECODE, "JWT couldn't be decoded", "the signature cut off");
        free(cut);
        cut = strndup(t, (size_t)(strrchr(t, '.') - t) - 3);
        REFUSE(hk, cut, AP_JWT_DECODE, "Expected 3 parts in JWT; got 2",
               "truncated in the payload");
        free(cut);
        char *padded = malloc(n + 2);
        snprintf(padded, n + 2, "%s=", t);
        REFUSE(hk, padded, AP_JWT_DECODE, "JWT couldn't be decoded", "a padded signature");
        free(padded);
        char *bad = strdup(t);
        bad[2] = '+';
        REFUSE(hk, bad, AP_JWT_DECODE, "JWT couldn't be decoded", "+ in the header");
        free(bad);
        bad = strdup(t);
        bad[strchr(t, '.') - t + 3] = '/';
        REFUSE(hk, bad, AP_JWT_DECODE, "JWT couldn't be decoded", "/ in the payload");
        free(bad);
        bad = strdup(t);
        bad[n - 4] = '!';
        REFUSE(hk, bad, AP_JWT_DECODE, "JWT couldn't be decoded", "! in the signature");
        free(bad);
        /* A flipped bit in the signature and in the payload. */
        bad = strdup(t);
        bad[n - 5] = bad[n - 5] == 'A' ? 'B' : 'A';
        REFUSE(hk, bad, AP_JWT_DECODE, "JWT cryptographic operation failed", "a wrong signature");
        free(bad);
        char *p2 = b64s("{\"role\":\"admin\",\"exp\":1700003600}");
        bad = replace_part(t, 1, p2);
        REFUSE(hk, bad, AP_JWT_DECODE, "JWT cryptographic operation failed",
               "another payload under the same signature");
        free(bad);
        free(p2);
        char big[AP_JWT_MAX_LEN + 10];
        memset(big, 'A', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        big[10] = '.';
        big[20] = '.';
        REFUSE(hk, big, AP_JWT_DECODE, "JWT couldn't be decoded", "a token over the size limit");
    }
    free(t);
    ap_jwt_keyset_t *hk2 = keys("another-secret-of-more-than-32-bytes!!", "another secret");
    t = hs("HS256", claims);
    REFUSE(hk2, t, AP_JWT_DECODE, "JWT cryptographic operation failed",
           "signed with another secret");
    free(t);
    ap_jwt_keyset_free(hk2);
    t = pk("RS256", NULL, claims, rsa2);
    REFUSE(rk, t, AP_JWT_DECODE, "JWT cryptographic operation failed", "signed by another RSA key");
    free(t);

    /* JSON. */
    t = token("HS256", "not json", claims, secret, strlen(secret), NULL);
    REFUSE(hk, t, AP_JWT_DECODE, "JWT couldn't be decoded", "a header that is not JSON");
    free(t);
    t = token("HS256", "[\"HS256\"]", claims, secret, strlen(secret), NULL);
    REFUSE(hk, t, AP_JWT_DECODE, "JWT couldn't be decoded", "a header that is an array");
    free(t);
    t = hs("HS256", "{\"role\":");
    REFUSE(hk, t, AP_JWT_CLAIMS, "Parsing claims failed", "a payload that is not JSON");
    free(t);
    t = hs("HS256", "[1,2]");
    REFUSE(hk, t, AP_JWT_CLAIMS, "Parsing claims failed", "a payload that is an array");
    free(t);
    t = hs("HS256", "{\"role\":\"anon\",\"role\":\"postgres\"}");
    REFUSE(hk, t, AP_JWT_CLAIMS, "Parsing claims failed", "a claim given twice");
    free(t);
    t = hs("HS256", "{\"role\":\"webuser\\u0000x\"}");
    REFUSE(hk, t, AP_JWT_CLAIMS, "Parsing claims failed", "\\u0000 in a claim");
    free(t);
    t = hs("HS256", "{\"role\":\"\xff\xfe\"}");
    REFUSE(hk, t, AP_JWT_CLAIMS, "Parsing claims failed", "invalid UTF-8 in a claim");
    free(t);
    {
        char deep[400];
        int n = 0;
        n += snprintf(deep + n, sizeof(deep) - (size_t)n, "{\"a\":");
        for (int i = 0; i < 100; i++)
            deep[n++] = '[';
        for (int i = 0; i < 100; i++)
            deep[n++] = ']';
        snprintf(deep + n, sizeof(deep) - (size_t)n, "}");
        t = hs("HS256", deep);
        REFUSE(hk, t, AP_JWT_CLAIMS, "Parsing claims failed", "claims nested 100 deep");
        free(t);
    }
    t = hs("HS256", "{\"s\":\"a \\\\u0000 is text here\",\"role\":\"x\"}");
    ACCEPT(hk, t, "an escaped backslash before u0000 is fine");
    free(t);

    /* Time claims, with 30 s of leeway. */
    struct {
        const char *claims;
        ap_jwt_status_t st;
        const char *msg, *name;
    } tc[] = {
        {"{\"exp\":1699999969}", AP_JWT_CLAIMS, "JWT expired", "expired 31 s ago: refused"},
        {"{\"exp\":1699999970}", AP_JWT_OK, NULL, "expired 30 s ago: within the leeway"},
        {"{\"exp\":1699999970.9}", AP_JWT_OK, NULL, "a fractional exp"},
        {"{\"exp\":\"1800000000\"}", AP_JWT_CLAIMS, "The JWT 'exp' claim must be a number",
         "exp as a string: refused"},
        {"{\"nbf\":1700000031}", AP_JWT_CLAIMS, "JWT not yet valid", "nbf 31 s ahead: refused"},
        {"{\"nbf\":1700000030}", AP_JWT_OK, NULL, "nbf 30 s ahead: within the leeway"},
        {"{\"nbf\":null}", AP_JWT_CLAIMS, "The JWT 'nbf' claim must be a number", "nbf null"},
        {"{\"iat\":1700000100}", AP_JWT_CLAIMS, "JWT issued at future", "iat ahead: refused"},
        {"{\"iat\":1600000000,\"nbf\":1600000000,\"exp\":1800000000}", AP_JWT_OK, NULL,
         "iat, nbf and exp all fine"},
        {"{\"exp\":1e400}", AP_JWT_OK, NULL, "an exp past every date"},
        {"{\"exp\":-1e400}", AP_JWT_CLAIMS, "JWT expired", "an exp before every date"},
        {"{\"exp\":1,\"nbf\":9999999999}", AP_JWT_CLAIMS, "JWT expired", "exp is checked first"},
        {"{\"aud\":\"other\"}", AP_JWT_OK, NULL, "any aud, none configured"},
        {"{\"aud\":5}", AP_JWT_CLAIMS,
         "The JWT 'aud' claim must be a string or an array of strings",
         "aud a number, none configured: refused"},
    };
    for (size_t i = 0; i < sizeof(tc) / sizeof(tc[0]); i++) {
        t = hs("HS256", tc[i].claims);
        check(hk, t, NULL, tc[i].st, tc[i].msg, tc[i].name);
        free(t);
    }
    ap_jwt_opts_t strict = {NULL, 0};
    t = hs("HS256", "{\"exp\":1699999999}");
    check(hk, t, &strict, AP_JWT_CLAIMS, "JWT expired", "no leeway: a second late is expired");
    free(t);

    /* Audience. */
    ap_jwt_opts_t ao = {"apiary", 30};
    struct {
        const char *claims;
        ap_jwt_status_t st;
        const char *name;
    } ac[] = {
        {"{\"aud\":\"apiary\"}", AP_JWT_OK, "aud matches"},
        {"{\"aud\":\"apiary2\"}", AP_JWT_CLAIMS, "aud differs: refused"},
        {"{\"aud\":[\"x\",\"apiary\"]}", AP_JWT_OK, "aud list with ours"},
        {"{\"aud\":[\"x\",\"y\"]}", AP_JWT_CLAIMS, "aud list without ours: refused"},
        {"{\"aud\":[]}", AP_JWT_OK, "empty aud list: any"},
        {"{\"aud\":null}", AP_JWT_OK, "aud null: any"},
        {"{}", AP_JWT_OK, "no aud: any"},
        {"{\"aud\":[\"apiary\",1]}", AP_JWT_CLAIMS, "aud list with a number: refused"},
        {"{\"aud\":{\"apiary\":1}}", AP_JWT_CLAIMS, "aud an object: refused"},
    };
    for (size_t i = 0; i < sizeof(ac) / sizeof(ac[0]); i++) {
        t = hs("HS256", ac[i].claims);
        ap_jwt_claims_t c;
        ap_jwt_error_t e;
        ok(ap_jwt_verify(hk, t, strlen(t), NOW, &ao, &c, &e) == ac[i].st, "%s", ac[i].name);
        ap_jwt_claims_cleanup(&c);
        free(t);
    }

    /* JWKS: kid chooses the key; a key's alg limits it. */
    {
        char *j1 = rsa_jwk(rsa, "r1", "RS256"), *j2 = rsa_jwk(rsa2, "r2", NULL),
             *j3 = ec_jwk(ec, "e1");
        char *ks64 = b64s(secret);
        ap_buf_t jwks;
        ap_buf_init(&jwks);
        ap_buf_printf(&jwks,
                      "{\"keys\":[%s,%s,%s,{\"kty\":\"oct\",\"kid\":\"h1\",\"k\":\"%s\"},"
                      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AQAB\"}]}",
                      j1, j2, j3, ks64);
        ap_jwt_keyset_t *jk = keys(jwks.data, "a JWKS with RSA, EC and oct keys (OKP skipped)");
        ok(jk && ap_jwt_keyset_count(jk, NULL) == 4, "four keys in it");
        t = pk("RS256", "{\"alg\":\"RS256\",\"kid\":\"r1\"}", claims, rsa);
        ACCEPT(jk, t, "JWKS: RS256 with kid r1");
        free(t);
        t = pk("RS256", "{\"alg\":\"RS256\",\"kid\":\"r2\"}", claims, rsa);
        REFUSE(jk, t, AP_JWT_DECODE, "JWT cryptographic operation failed",
               "JWKS: kid r2 but signed by r1's key");
        free(t);
        t = pk("RS256", "{\"alg\":\"RS256\",\"kid\":\"nope\"}", claims, rsa);
        REFUSE(jk, t, AP_JWT_DECODE, "No suitable key or wrong key type", "JWKS: unknown kid");
        free(t);
        t = pk("RS256", "{\"alg\":\"RS256\",\"kid\":7}", claims, rsa);
        REFUSE(jk, t, AP_JWT_DECODE, "JWT couldn't be decoded", "JWKS: kid a number");
        free(t);
        t = pk("RS256", NULL, claims, rsa2);
        ACCEPT(jk, t, "JWKS: no kid, the key that fits is found");
        free(t);
        t = pk("RS384", "{\"alg\":\"RS384\",\"kid\":\"r1\"}", claims, rsa);
        REFUSE(jk, t, AP_JWT_DECODE, "No suitable key or wrong key type",
               "JWKS: r1 is RS256 only, an RS384 token is refused");
        free(t);
        t = pk("RS384", "{\"alg\":\"RS384\",\"kid\":\"r2\"}", claims, rsa2);
        ACCEPT(jk, t, "JWKS: r2 has no alg, RS384 is fine");
        free(t);
        t = pk("ES256", "{\"alg\":\"ES256\",\"kid\":\"e1\"}", claims, ec);
        ACCEPT(jk, t, "JWKS: ES256 with kid e1");
        free(t);
        t = token("HS512", "{\"alg\":\"HS512\",\"kid\":\"h1\"}", claims, secret, strlen(secret),
                  NULL);
        ACCEPT(jk, t, "JWKS: HS512 with kid h1");
        free(t);
        t = token("HS256", "{\"alg\":\"HS256\",\"kid\":\"r1\"}", claims, secret, strlen(secret),
                  NULL);
        REFUSE(jk, t, AP_JWT_DECODE, "No suitable key or wrong key type",
               "JWKS: an HS token naming an RSA key's kid");
        free(t);
        ap_jwt_keyset_free(jk);
        free(j1);
        free(j2);
        free(j3);
        free(ks64);
        ap_buf_cleanup(&jwks);
    }
    /* A single JWK, and a raw secret that ignores kid. */
    {
        char *j = rsa_jwk(rsa, NULL, NULL);
        ap_jwt_keyset_t *jk = keys(j, "a single RSA JWK");
        t = pk("RS512", NULL, claims, rsa);
        ACCEPT(jk, t, "single JWK: RS512");
        free(t);
        ap_jwt_keyset_free(jk);
        free(j);
        t = token("HS256", "{\"alg\":\"HS256\",\"kid\":\"whatever\"}", claims, secret,
                  strlen(secret), NULL);
        ACCEPT(hk, t, "a raw secret: kid is not looked at");
        free(t);
    }
    /* The claims come back as sent. */
    {
        t = hs("HS256", claims);
        ap_jwt_claims_t c;
        ap_jwt_error_t e;
        ap_jwt_verify(hk, t, strlen(t), NOW, &opts, &c, &e);
        is_str(c.text, claims, "the claims' text is the payload");
        ap_buf_t b;
        ap_buf_init(&b);
        ap_jwt_json_append(&b, c.tree);
        is_str(b.data, claims, "and re-serialises the same");
        ap_buf_cleanup(&b);
        ap_jwt_claims_cleanup(&c);
        free(t);
    }

    /* Files: mode and errors. */
    {
        char dir[] = "/tmp/apiary-jwt-XXXXXX";
        if (mkdtemp(dir)) {
            char path[256];
            snprintf(path, sizeof(path), "%s/secret", dir);
            FILE *f = fopen(path, "w");
            fprintf(f, "%s\n", secret);
            fclose(f);
            chmod(path, 0644);
            ap_buf_t err;
            ap_buf_init(&err);
            ap_jwt_keyset_t *k = ap_jwt_keyset_load(path, &err);
            ok(k == NULL && err.data && strstr(err.data, "every user may read it"),
               "a world-readable secret file: refused");
            ap_buf_reset(&err);
            chmod(path, 0600);
            k = ap_jwt_keyset_load(path, &err);
            ok(k != NULL, "mode 0600: loaded");
            ap_jwt_keyset_free(k);
            snprintf(path, sizeof(path), "%s/pub.pem", dir);
            f = fopen(path, "w");
            fputs(rsapem, f);
            fclose(f);
            chmod(path, 0644);
            k = ap_jwt_keyset_load(path, &err);
            ok(k != NULL, "a world-readable public key: fine");
            ap_jwt_keyset_free(k);
            unlink(path);
            snprintf(path, sizeof(path), "%s/secret", dir);
            unlink(path);
            ap_buf_reset(&err);
            k = ap_jwt_keyset_load(path, &err);
            ok(k == NULL && strstr(err.data, "No such file"), "a missing file: refused, says why");
            ap_buf_reset(&err);
            k = ap_jwt_keyset_load(dir, &err);
            ok(k == NULL && strstr(err.data, "regular file"), "a directory: refused");
            ap_buf_cleanup(&err);
            rmdir(dir);
        } else {
            ok(0, "mkdtemp");
        }
    }

    ap_jwt_keyset_free(hk);
    ap_jwt_keyset_free(rk);
    ap_jwt_keyset_free(ek);
    ap_jwt_keyset_free(ek384);
    free(rsapem);
    free(ecpem);
    free(ec384pem);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec384);
    return done_testing();
}
