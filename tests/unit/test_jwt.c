/* test_jwt.c - JWT verification (core/svc/jwt.c): the RFC 7515 A.1-A.3 and
 * RFC 8037 A.4 vectors bit for bit, then tokens signed here with keys made
 * at test time (OpenSSL EVP), each check's exact error, and the key-set
 * readers' refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jwt.h"

#define NOW 1700000000.0
#define ISS "https://id.example.com"
#define ALL (CR_JWT_RS256 | CR_JWT_ES256 | CR_JWT_EDDSA | CR_JWT_HS256)
static const char SECRET[] = "0123456789abcdef0123456789abcdef-shared"; /* 39 bytes */

static EVP_PKEY *rsa, *rsa2, *ec, *ed;

/* --- helpers ------------------------------------------------------------------------------------ */

static void b64url(cr_buf_t *b, const void *p, size_t n) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
    char q[4] = {abc[v >> 18], abc[v >> 12 & 63], abc[v >> 6 & 63], abc[v & 63]};
    assert_int_equal(cr_buf_append(b, q, n - i >= 3 ? 4 : n - i + 1), 0);
  }
}

/* The JOSE signature of input with key k (or the HMAC secret) for alg. */
static void sign(cr_buf_t *out, unsigned alg, EVP_PKEY *k, const char *secret, size_t slen, const char *input,
                 size_t inlen) {
  unsigned char sig[1024];
  size_t siglen = sizeof sig;
  if (alg == CR_JWT_HS256) {
    unsigned int n = 0;
    assert_non_null(HMAC(EVP_sha256(), secret, (int)slen, (const unsigned char *)input, inlen, sig, &n));
    siglen = n;
  } else {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, alg == CR_JWT_EDDSA ? NULL : EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input, inlen), 1);
    EVP_MD_CTX_free(ctx);
    if (alg == CR_JWT_ES256) { /* DER -> r||s */
      const unsigned char *p = sig;
      ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
      assert_non_null(es);
      const BIGNUM *r, *s;
      ECDSA_SIG_get0(es, &r, &s);
      assert_int_equal(BN_bn2binpad(r, sig, 32), 32);
      assert_int_equal(BN_bn2binpad(s, sig + 32, 32), 32);
      siglen = 64;
      ECDSA_SIG_free(es);
    }
  }
  b64url(out, sig, siglen);
}

/* A compact JWS of header and payload (JSON texts), malloc'd. */
static char *token_with(const char *header, const char *payload, unsigned alg, EVP_PKEY *k, const char *secret,
                        size_t slen) {
  cr_buf_t b = CR_BUF_INIT;
  b64url(&b, header, strlen(header));
  assert_int_equal(cr_buf_append(&b, ".", 1), 0);
  b64url(&b, payload, strlen(payload));
  size_t inlen = b.len;
  assert_int_equal(cr_buf_append(&b, ".", 1), 0);
  char *input = strndup(b.data, inlen);
  sign(&b, alg, k, secret, slen, input, inlen);
  free(input);
  assert_int_equal(cr_buf_append(&b, "", 1), 0);
  return b.data;
}

static char *token(const char *header, const char *payload, unsigned alg, EVP_PKEY *k) {
  return token_with(header, payload, alg, k, SECRET, strlen(SECRET));
}

/* The usual claims, with extra members appended. */
static const char *claims(const char *extra) {
  static char s[64 * 1024];
  snprintf(s, sizeof s, "{\"iss\":\"" ISS "\",\"aud\":\"api\",\"sub\":\"user-1\",\"exp\":%.0f,\"iat\":%.0f%s}",
           NOW + 300, NOW, extra);
  return s;
}

static cr_jwt_opts_t opts(void) {
  return (cr_jwt_opts_t){.algorithms = ALL, .issuer = ISS, .audience = "api", .leeway = 30, .now = NOW};
}

static cr_jwt_keys_t *keys_ok(const char *text) {
  char err[256] = "";
  cr_jwt_keys_t *ks = cr_jwt_keys_parse(text, strlen(text), err, sizeof err);
  if (!ks) fail_msg("key text refused: %s\n%s", err, text);
  return ks;
}

static void keys_refused(const char *text, const char *want) {
  char err[256] = "";
  cr_jwt_keys_t *ks = cr_jwt_keys_parse(text, strlen(text), err, sizeof err);
  if (ks) {
    cr_jwt_keys_free(ks);
    fail_msg("key text accepted, want '%s':\n%s", want, text);
  }
  if (strcmp(err, want) != 0) fail_msg("key error '%s', want '%s'", err, want);
}

/* Verifies and checks the claims came back exactly. */
static void accepted_n(const cr_jwt_keys_t *ks, const cr_jwt_opts_t *o, const char *tok, size_t len,
                       const char *want_claims, const char *want_sub) {
  cr_jwt_claims_t c;
  char err[128] = "";
  if (cr_jwt_verify(ks, o, tok, len, &c, err, sizeof err) != 0) fail_msg("token refused: %s\n%.*s", err, (int)len, tok);
  if (want_claims) {
    assert_int_equal(c.claims_len, strlen(want_claims));
    assert_string_equal(c.claims_json, want_claims);
  }
  assert_string_equal(c.sub, want_sub);
  cr_jwt_claims_free(&c);
  assert_null(c.claims_json);
}

static void accepted(const cr_jwt_keys_t *ks, const cr_jwt_opts_t *o, const char *tok) {
  accepted_n(ks, o, tok, strlen(tok), NULL, "user-1");
}

static void refused_n(const cr_jwt_keys_t *ks, const cr_jwt_opts_t *o, const char *tok, size_t len, const char *want) {
  cr_jwt_claims_t c;
  memset(&c, 0x5a, sizeof c);
  char err[128] = "";
  if (cr_jwt_verify(ks, o, tok, len, &c, err, sizeof err) == 0) {
    cr_jwt_claims_free(&c);
    fail_msg("token accepted, want '%s'\n%.*s", want, (int)len, tok);
  }
  if (strcmp(err, want) != 0) fail_msg("error '%s', want '%s'\n%.*s", err, want, (int)len, tok);
  /* Left empty, and safe to free. */
  assert_null(c.claims_json);
  assert_int_equal(c.claims_len, 0);
  assert_string_equal(c.sub, "");
  cr_jwt_claims_free(&c);
}

static void refused(const cr_jwt_keys_t *ks, const cr_jwt_opts_t *o, const char *tok, const char *want) {
  refused_n(ks, o, tok, strlen(tok), want);
}

static void bn_b64(cr_buf_t *b, EVP_PKEY *k, const char *param, int pad) {
  BIGNUM *bn = NULL;
  assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
  unsigned char v[1024];
  int n = pad ? BN_bn2binpad(bn, v, pad) : BN_bn2bin(bn, v);
  assert_true(n > 0);
  b64url(b, v, (size_t)n);
  BN_free(bn);
}

/* Appends k as a JWK, with extra members ("" or ",\"kid\":\"a\"..."). */
static void jwk(cr_buf_t *b, EVP_PKEY *k, const char *extra) {
  int id = EVP_PKEY_get_base_id(k);
  if (id == EVP_PKEY_RSA) {
    assert_int_equal(cr_buf_printf(b, "{\"kty\":\"RSA\",\"n\":\""), 0);
    bn_b64(b, k, OSSL_PKEY_PARAM_RSA_N, 0);
    assert_int_equal(cr_buf_printf(b, "\",\"e\":\""), 0);
    bn_b64(b, k, OSSL_PKEY_PARAM_RSA_E, 0);
  } else if (id == EVP_PKEY_EC) {
    assert_int_equal(cr_buf_printf(b, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\""), 0);
    bn_b64(b, k, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    assert_int_equal(cr_buf_printf(b, "\",\"y\":\""), 0);
    bn_b64(b, k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
  } else {
    unsigned char x[32];
    size_t n = sizeof x;
    assert_int_equal(EVP_PKEY_get_raw_public_key(k, x, &n), 1);
    assert_int_equal(cr_buf_printf(b, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\""), 0);
    b64url(b, x, n);
  }
  assert_int_equal(cr_buf_printf(b, "\"%s}", extra), 0);
}

/* A JWKS of the keys given, each with its extra members; malloc'd. */
static char *jwks(int n, EVP_PKEY **ks, const char **extras) {
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_buf_printf(&b, "{\"keys\":["), 0);
  for (int i = 0; i < n; i++) {
    if (i) assert_int_equal(cr_buf_append(&b, ",", 1), 0);
    jwk(&b, ks[i], extras ? extras[i] : "");
  }
  assert_int_equal(cr_buf_printf(&b, "]}"), 0);
  assert_int_equal(cr_buf_append(&b, "", 1), 0);
  return b.data;
}

static char *pem_of(EVP_PKEY *k, int priv) {
  BIO *bio = BIO_new(BIO_s_mem());
  assert_int_equal(priv ? PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) : PEM_write_bio_PUBKEY(bio, k), 1);
  char *p;
  long n = BIO_get_mem_data(bio, &p);
  char *s = strndup(p, (size_t)n);
  BIO_free(bio);
  return s;
}

static int setup(void **state) {
  (void)state;
  rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  return rsa && rsa2 && ec && ed ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(rsa2);
  EVP_PKEY_free(ec);
  EVP_PKEY_free(ed);
  return 0;
}

/* --- the RFC vectors --------------------------------------------------------------------------- */

#define RFC_PAYLOAD "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
#define RFC_PAYLOAD_B64 "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
static const char A1[] = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." RFC_PAYLOAD_B64
                         ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
static const char A2[] =
    "eyJhbGciOiJSUzI1NiJ9." RFC_PAYLOAD_B64
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1"
    "dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzD"
    "wusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77"
    "Rw";
static const char A2_JWKS[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-"
    "Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5"
    "z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_"
    "h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ\"}]}";
static const char A3[] = "eyJhbGciOiJFUzI1NiJ9." RFC_PAYLOAD_B64
                         ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
static const char A3_JWKS[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                              "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";
static const char A4[] = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
                         "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
static const char A4_JWKS[] =
    "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}";

static cr_jwt_opts_t rfc_opts(void) {
  return (cr_jwt_opts_t){.algorithms = ALL, .issuer = "joe", .leeway = 0, .now = 1300819000};
}

/* A copy of tok with the character at i changed to c. */
static char *changed(const char *tok, size_t i, char c) {
  char *s = strdup(tok);
  assert_true(s[i] != c);
  s[i] = c;
  return s;
}

static void test_rfc7515_a1_hs256(void **state) {
  (void)state;
  /* The A.1 key, the JWK "k" decoded. */
  static const unsigned char k[64] = {
      3,   35,  53,  75,  43,  15,  165, 188, 131, 126, 6,   101, 119, 123, 166, 143, 90,  179, 40,  230, 240, 84,
      201, 40,  169, 15,  132, 178, 210, 80,  46,  191, 211, 251, 90,  146, 210, 6,   71,  239, 150, 138, 180, 195,
      119, 98,  61,  34,  61,  46,  33,  114, 5,   46,  79,  8,   192, 205, 154, 245, 103, 208, 128, 163};
  char err[128];
  cr_jwt_keys_t *ks = cr_jwt_keys_secret((const char *)k, sizeof k, err, sizeof err);
  assert_non_null(ks);
  cr_jwt_opts_t o = rfc_opts();
  cr_jwt_claims_t c;
  assert_int_equal(cr_jwt_verify(ks, &o, A1, strlen(A1), &c, err, sizeof err), 0);
  assert_string_equal(c.claims_json, RFC_PAYLOAD);
  assert_int_equal(c.claims_len, strlen(RFC_PAYLOAD));
  assert_true(c.exp == 1300819380.0);
  assert_string_equal(c.sub, "");
  cr_jwt_claims_free(&c);
  /* exp is 1300819380: valid until then, and within the leeway after. */
  o.now = 1300819379;
  accepted_n(ks, &o, A1, strlen(A1), RFC_PAYLOAD, "");
  o.now = 1300819380;
  refused(ks, &o, A1, "expired");
  o.leeway = 30;
  o.now = 1300819380 + 29;
  accepted_n(ks, &o, A1, strlen(A1), RFC_PAYLOAD, "");
  o.now = 1300819380 + 30;
  refused(ks, &o, A1, "expired");
  o = rfc_opts();
  /* One bit of the MAC, of the payload, of the key. */
  char *t = changed(A1, strlen(A1) - 2, 'Y');
  refused(ks, &o, t, "bad signature");
  free(t);
  t = changed(A1, strlen("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.") + 3, 'z');
  refused(ks, &o, t, "bad signature");
  free(t);
  cr_jwt_keys_free(ks);
  unsigned char k2[64];
  memcpy(k2, k, sizeof k2);
  k2[63] ^= 1;
  ks = cr_jwt_keys_secret((const char *)k2, sizeof k2, err, sizeof err);
  refused(ks, &o, A1, "bad signature");
  /* Not allowed by the options: refused before any key is tried. */
  o.algorithms = CR_JWT_RS256;
  refused(ks, &o, A1, "algorithm not allowed");
  cr_jwt_keys_free(ks);
}

static void test_rfc7515_a2_rs256(void **state) {
  (void)state;
  cr_jwt_keys_t *ks = keys_ok(A2_JWKS);
  assert_int_equal(cr_jwt_keys_count(ks), 1);
  cr_jwt_opts_t o = rfc_opts();
  accepted_n(ks, &o, A2, strlen(A2), RFC_PAYLOAD, "");
  char *t = changed(A2, strlen(A2) - 3, 'A');
  refused(ks, &o, t, "bad signature");
  free(t);
  /* One byte short: not the modulus length. */
  refused_n(ks, &o, A2, strlen(A2) - 2, "bad signature");
  o.algorithms = CR_JWT_ES256 | CR_JWT_EDDSA | CR_JWT_HS256;
  refused(ks, &o, A2, "algorithm not allowed");
  /* The A.3 token (ES256) against the RSA key. */
  o = rfc_opts();
  refused(ks, &o, A3, "no key for algorithm");
  cr_jwt_keys_free(ks);
}

static void test_rfc7515_a3_es256(void **state) {
  (void)state;
  cr_jwt_keys_t *ks = keys_ok(A3_JWKS);
  cr_jwt_opts_t o = rfc_opts();
  accepted_n(ks, &o, A3, strlen(A3), RFC_PAYLOAD, "");
  char *t = changed(A3, strlen(A3) - 40, 'A');
  refused(ks, &o, t, "bad signature");
  free(t);
  /* r||s must be 64 bytes: 63 (the last 2 characters dropped, 1 more byte) is refused. */
  refused_n(ks, &o, A3, strlen(A3) - 2, "bad signature");
  o.issuer = "someone else";
  refused(ks, &o, A3, "wrong issuer");
  cr_jwt_keys_free(ks);
}

static void test_rfc8037_a4_eddsa(void **state) {
  (void)state;
  cr_jwt_keys_t *ks = keys_ok(A4_JWKS);
  cr_jwt_opts_t o = rfc_opts();
  o.issuer = NULL;
  /* The signature verifies; the payload ("Example of Ed25519 signing") is
   * not a claims object, which is checked only after. */
  refused(ks, &o, A4, "malformed token");
  char *t = changed(A4, strlen(A4) - 5, 'A');
  refused(ks, &o, t, "bad signature");
  free(t);
  o.algorithms = CR_JWT_RS256;
  refused(ks, &o, A4, "algorithm not allowed");
  cr_jwt_keys_free(ks);
}

/* --- tokens signed here ---------------------------------------------------------------------- */

static void test_each_algorithm(void **state) {
  (void)state;
  EVP_PKEY *all[] = {rsa, ec, ed};
  const char *extras[] = {",\"kid\":\"r\",\"use\":\"sig\",\"alg\":\"RS256\"", ",\"kid\":\"e\"", ",\"kid\":\"d\""};
  char *set = jwks(3, all, extras);
  cr_jwt_keys_t *ks = keys_ok(set);
  assert_int_equal(cr_jwt_keys_count(ks), 3);
  char err[128];
  cr_jwt_keys_t *hs = cr_jwt_keys_secret(SECRET, strlen(SECRET), err, sizeof err);
  assert_non_null(hs);
  cr_jwt_opts_t o = opts();
  const char *cl = claims(",\"scope\":\"read write\"");
  char want[1024];
  strcpy(want, cl);
  struct {
    const char *header;
    unsigned alg;
    EVP_PKEY *k;
    cr_jwt_keys_t *ks;
  } cases[] = {
      {"{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"r\"}", CR_JWT_RS256, rsa, ks},
      {"{\"alg\":\"ES256\",\"kid\":\"e\"}", CR_JWT_ES256, ec, ks},
      {"{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"d\"}", CR_JWT_EDDSA, ed, ks},
      {"{\"alg\":\"RS256\"}", CR_JWT_RS256, rsa, ks}, /* no kid: every key of the type */
      {"{\"alg\":\"ES256\",\"typ\":\"jwt\"}", CR_JWT_ES256, ec, ks},
      {"{\"alg\":\"EdDSA\",\"typ\":\"AT+JWT\"}", CR_JWT_EDDSA, ed, ks},
      {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", CR_JWT_HS256, NULL, hs},
      {"{\"alg\":\"HS256\",\"kid\":\"whatever\"}", CR_JWT_HS256, NULL, hs}, /* a secret has no kid: any matches */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *t = token(cases[i].header, cl, cases[i].alg, cases[i].k);
    accepted_n(cases[i].ks, &o, t, strlen(t), want, "user-1");
    /* Only its own algorithm allowed still passes; every other one alone refuses it. */
    o.algorithms = cases[i].alg;
    accepted(cases[i].ks, &o, t);
    o.algorithms = ALL & ~cases[i].alg;
    refused(cases[i].ks, &o, t, "algorithm not allowed");
    o = opts();
    free(t);
  }
  /* exp comes back. */
  char *t = token("{\"alg\":\"ES256\"}", cl, CR_JWT_ES256, ec);
  cr_jwt_claims_t c;
  assert_int_equal(cr_jwt_verify(ks, &o, t, strlen(t), &c, NULL, 0), 0);
  assert_true(c.exp == NOW + 300);
  cr_jwt_claims_free(&c);
  cr_jwt_claims_free(NULL);
  free(t);
  cr_jwt_keys_free(hs);
  cr_jwt_keys_free(ks);
  free(set);
}

static void test_time_claims(void **state) {
  (void)state;
  char *pem = pem_of(ec, 0);
  cr_jwt_keys_t *ks = keys_ok(pem);
  cr_jwt_opts_t o = opts(); /* leeway 30 */
  char p[512];
  static const struct {
    const char *fmt;
    double at;
    const char *want; /* NULL: accepted */
  } cases[] = {
      {"\"exp\":%.0f", NOW - 1, NULL},             /* expired a second ago: within the leeway */
      {"\"exp\":%.0f", NOW - 29, NULL},
      {"\"exp\":%.3f", NOW - 29.999, NULL},
      {"\"exp\":%.0f", NOW - 30, "expired"},       /* exp must be > now - leeway */
      {"\"exp\":%.0f", NOW - 31, "expired"},
      {"\"exp\":%.0f", 0, "expired"},
      {"\"nbf\":%.0f", NOW + 30, NULL},
      {"\"nbf\":%.0f", NOW + 31, "not yet valid"},
      {"\"nbf\":%.0f", NOW - 1000, NULL},
      {"\"iat\":%.0f", NOW + 1e6, NULL},            /* iat: only its type is checked */
      {"\"exp\":\"%.0f\"", NOW + 100, "malformed token"},
      {"\"nbf\":\"%.0f\"", NOW, "malformed token"},
      {"\"iat\":[%.0f]", NOW, "malformed token"},
      {"\"exp\":null", 0, "malformed token"}, /* no conversion: the extra argument is ignored */
      {"\"exp\":true", 0, "malformed token"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char member[128];
    snprintf(member, sizeof member, cases[i].fmt, cases[i].at);
    snprintf(p, sizeof p, "{\"iss\":\"" ISS "\",\"aud\":\"api\",\"sub\":\"user-1\",%s}", member);
    char *t = token("{\"alg\":\"ES256\"}", p, CR_JWT_ES256, ec);
    if (cases[i].want) refused(ks, &o, t, cases[i].want);
    else accepted(ks, &o, t);
    free(t);
  }
  /* No exp at all: accepted (exp is not required), exp reads 0. */
  char *t = token("{\"alg\":\"ES256\"}", "{\"sub\":\"x\"}", CR_JWT_ES256, ec);
  o.issuer = o.audience = NULL;
  cr_jwt_claims_t c;
  assert_int_equal(cr_jwt_verify(ks, &o, t, strlen(t), &c, NULL, 0), 0);
  assert_true(c.exp == 0);
  assert_string_equal(c.sub, "x");
  cr_jwt_claims_free(&c);
  /* No leeway, and a negative one counts as none. */
  free(t);
  snprintf(p, sizeof p, "{\"exp\":%.0f}", NOW + 1);
  t = token("{\"alg\":\"ES256\"}", p, CR_JWT_ES256, ec);
  o.leeway = 0;
  accepted_n(ks, &o, t, strlen(t), p, "");
  o.now = NOW + 1;
  refused(ks, &o, t, "expired");
  o.now = NOW;
  o.leeway = -100;
  accepted_n(ks, &o, t, strlen(t), p, "");
  free(t);
  cr_jwt_keys_free(ks);
  free(pem);
}

static void test_issuer_audience_subject(void **state) {
  (void)state;
  char *pem = pem_of(ed, 0);
  cr_jwt_keys_t *ks = keys_ok(pem);
  cr_jwt_opts_t o = opts();
  static const struct {
    const char *payload;
    const char *want;
  } cases[] = {
      {"{\"iss\":\"" ISS "\",\"aud\":\"api\"}", NULL},
      {"{\"iss\":\"https://id.example.com/\",\"aud\":\"api\"}", "wrong issuer"},
      {"{\"iss\":\"HTTPS://ID.EXAMPLE.COM\",\"aud\":\"api\"}", "wrong issuer"},
      {"{\"aud\":\"api\"}", "wrong issuer"},
      {"{\"iss\":\"" ISS "\\u0000\",\"aud\":\"api\"}", "wrong issuer"},
      {"{\"iss\":7,\"aud\":\"api\"}", "malformed token"},
      {"{\"iss\":\"" ISS "\",\"aud\":\"apis\"}", "wrong audience"},
      {"{\"iss\":\"" ISS "\",\"aud\":\"\"}", "wrong audience"},
      {"{\"iss\":\"" ISS "\"}", "wrong audience"},
      {"{\"iss\":\"" ISS "\",\"aud\":[]}", "wrong audience"},
      {"{\"iss\":\"" ISS "\",\"aud\":[\"web\",\"mobile\"]}", "wrong audience"},
      {"{\"iss\":\"" ISS "\",\"aud\":[\"web\",\"api\"]}", NULL},
      {"{\"iss\":\"" ISS "\",\"aud\":[\"api\",1]}", "malformed token"},
      {"{\"iss\":\"" ISS "\",\"aud\":{\"api\":true}}", "malformed token"},
      {"{\"iss\":\"" ISS "\",\"aud\":\"api\",\"sub\":12}", "malformed token"},
      {"{\"iss\":\"" ISS "\",\"aud\":\"api\",\"sub\":\"a\\u0000b\"}", "malformed token"},
      {"{\"iss\":\"" ISS "\",\"aud\":\"api\",\"exp\":1,\"exp\":9999999999}", "malformed token"}, /* duplicate */
      {"[\"iss\"]", "malformed token"},
      {"\"x\"", "malformed token"},
      {"{\"iss\":\"" ISS "\",\"aud\":\"api\",}", "malformed token"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *t = token("{\"alg\":\"EdDSA\"}", cases[i].payload, CR_JWT_EDDSA, ed);
    if (cases[i].want) refused(ks, &o, t, cases[i].want);
    else accepted_n(ks, &o, t, strlen(t), cases[i].payload, "");
    free(t);
  }
  /* Not checked when the options name none. */
  o.issuer = o.audience = NULL;
  char *t = token("{\"alg\":\"EdDSA\"}", "{\"iss\":\"other\",\"aud\":[\"web\"]}", CR_JWT_EDDSA, ed);
  accepted_n(ks, &o, t, strlen(t), "{\"iss\":\"other\",\"aud\":[\"web\"]}", "");
  free(t);
  /* sub: up to 255 bytes, one more refused. */
  char p[600], sub[300];
  memset(sub, 's', 256);
  sub[255] = '\0';
  snprintf(p, sizeof p, "{\"sub\":\"%s\"}", sub);
  t = token("{\"alg\":\"EdDSA\"}", p, CR_JWT_EDDSA, ed);
  accepted_n(ks, &o, t, strlen(t), p, sub);
  free(t);
  sub[255] = 's';
  sub[256] = '\0';
  snprintf(p, sizeof p, "{\"sub\":\"%s\"}", sub);
  t = token("{\"alg\":\"EdDSA\"}", p, CR_JWT_EDDSA, ed);
  refused(ks, &o, t, "malformed token");
  free(t);
  cr_jwt_keys_free(ks);
  free(pem);
}

static void test_alg_none_and_header(void **state) {
  (void)state;
  char *pem = pem_of(rsa, 0);
  cr_jwt_keys_t *ks = keys_ok(pem);
  cr_jwt_opts_t o = opts();
  o.algorithms = ~0u; /* every bit: still never "none" */
  cr_buf_t b = CR_BUF_INIT;
  const char *nones[] = {"{\"alg\":\"none\"}", "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}", "{\"alg\":\"nOnE\",\"typ\":\"JWT\"}"};
  for (size_t i = 0; i < sizeof nones / sizeof nones[0]; i++) {
    b.len = 0;
    b64url(&b, nones[i], strlen(nones[i]));
    assert_int_equal(cr_buf_append(&b, ".", 1), 0);
    b64url(&b, claims(""), strlen(claims("")));
    assert_int_equal(cr_buf_append(&b, ".", 1), 0);
    refused_n(ks, &o, b.data, b.len, "algorithm not allowed"); /* empty signature */
    assert_int_equal(cr_buf_append(&b, "c2ln", 4), 0);
    refused_n(ks, &o, b.data, b.len, "algorithm not allowed");
  }
  cr_buf_free(&b);
  o = opts();
  static const struct {
    const char *header;
    const char *want;
  } cases[] = {
      {"{\"alg\":\"rs256\"}", "algorithm not allowed"}, /* names are case-sensitive */
      {"{\"alg\":\"RS512\"}", "algorithm not allowed"},
      {"{\"alg\":\"PS256\"}", "algorithm not allowed"},
      {"{\"alg\":\"\"}", "algorithm not allowed"},
      {"{\"alg\":\"RS256\\u0000\"}", "algorithm not allowed"},
      {"{\"typ\":\"JWT\"}", "malformed token"},
      {"{\"alg\":256}", "malformed token"},
      {"{\"alg\":[\"RS256\"]}", "malformed token"},
      {"{\"alg\":\"RS256\",\"typ\":\"JWS\"}", "unsupported token type"},
      {"{\"alg\":\"RS256\",\"typ\":\"application/jwt\"}", "unsupported token type"},
      {"{\"alg\":\"RS256\",\"typ\":1}", "malformed token"},
      {"{\"alg\":\"RS256\",\"crit\":[\"exp\"],\"exp\":1}", "critical header not supported"},
      {"{\"alg\":\"RS256\",\"crit\":[]}", "critical header not supported"},
      {"{\"alg\":\"RS256\",\"b64\":false,\"crit\":[\"b64\"]}", "critical header not supported"},
      {"{\"alg\":\"RS256\",\"kid\":5}", "malformed token"},
      {"{\"alg\":\"RS256\",\"alg\":\"RS256\"}", "malformed token"}, /* duplicate */
      {"[\"RS256\"]", "malformed token"},
      {"\"RS256\"", "malformed token"},
      {"{\"alg\":\"RS256\"", "malformed token"},
      {"", "malformed token"},
      {"{\"alg\":\"RS256\",\"jwk\":{\"kty\":\"oct\",\"k\":\"AAAA\"}}", NULL}, /* embedded keys: ignored */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *t = token(cases[i].header, claims(""), CR_JWT_RS256, rsa);
    if (cases[i].want) refused(ks, &o, t, cases[i].want);
    else accepted(ks, &o, t);
    free(t);
  }
  cr_jwt_keys_free(ks);
  free(pem);
}

static void test_algorithm_confusion(void **state) {
  (void)state;
  char *pem = pem_of(rsa, 0);
  cr_jwt_keys_t *pemks = keys_ok(pem);
  EVP_PKEY *one[] = {rsa};
  char *set = jwks(1, one, NULL);
  cr_jwt_keys_t *jwksks = keys_ok(set);
  cr_jwt_opts_t o = opts();
  /* HS256 keyed with the RSA public key's own PEM text, and its JWKS text. */
  char *t = token_with("{\"alg\":\"HS256\"}", claims(""), CR_JWT_HS256, NULL, pem, strlen(pem));
  refused(pemks, &o, t, "no key for algorithm");
  refused(jwksks, &o, t, "no key for algorithm");
  free(t);
  t = token_with("{\"alg\":\"HS256\"}", claims(""), CR_JWT_HS256, NULL, set, strlen(set));
  refused(jwksks, &o, t, "no key for algorithm");
  free(t);
  /* Even with only HS256 allowed. */
  o.algorithms = CR_JWT_HS256;
  t = token_with("{\"alg\":\"HS256\"}", claims(""), CR_JWT_HS256, NULL, pem, strlen(pem));
  refused(pemks, &o, t, "no key for algorithm");
  free(t);
  /* And the other way: a secret never verifies RS/ES/EdDSA. */
  o = opts();
  char err[128];
  cr_jwt_keys_t *hs = cr_jwt_keys_secret(pem, strlen(pem), err, sizeof err);
  assert_non_null(hs);
  t = token("{\"alg\":\"RS256\"}", claims(""), CR_JWT_RS256, rsa);
  refused(hs, &o, t, "no key for algorithm");
  accepted(pemks, &o, t);
  free(t);
  t = token("{\"alg\":\"ES256\"}", claims(""), CR_JWT_ES256, ec);
  refused(hs, &o, t, "no key for algorithm");
  refused(pemks, &o, t, "no key for algorithm");
  free(t);
  /* An RS256 header on an EdDSA signature. */
  t = token("{\"alg\":\"RS256\"}", claims(""), CR_JWT_EDDSA, ed);
  refused(pemks, &o, t, "bad signature");
  refused(NULL, &o, t, "no key for algorithm"); /* no key set at all */
  free(t);
  cr_jwt_keys_free(hs);
  cr_jwt_keys_free(pemks);
  cr_jwt_keys_free(jwksks);
  free(set);
  free(pem);
}

/* The same signature on another header or payload. */
static void test_tampering(void **state) {
  (void)state;
  EVP_PKEY *two[] = {rsa, ec};
  const char *extras[] = {",\"kid\":\"a\"", ",\"kid\":\"b\""};
  char *set = jwks(2, two, extras);
  cr_jwt_keys_t *ks = keys_ok(set);
  cr_jwt_opts_t o = opts();
  char *good = token("{\"alg\":\"RS256\",\"kid\":\"a\"}", claims(""), CR_JWT_RS256, rsa);
  accepted(ks, &o, good);
  const char *sig = strrchr(good, '.');
  const char *pay = strchr(good, '.');
  cr_buf_t b = CR_BUF_INIT;
  /* Payload: sub changed. */
  assert_int_equal(cr_buf_append(&b, good, (size_t)(pay + 1 - good)), 0);
  const char *evil = "{\"iss\":\"" ISS "\",\"aud\":\"api\",\"sub\":\"admin\",\"exp\":1700000300,\"iat\":1700000000}";
  b64url(&b, evil, strlen(evil));
  assert_int_equal(cr_buf_append(&b, sig, strlen(sig)), 0);
  refused_n(ks, &o, b.data, b.len, "bad signature");
  /* Header: typ added, kid kept. */
  b.len = 0;
  const char *h = "{\"alg\":\"RS256\",\"kid\":\"a\",\"typ\":\"JWT\"}";
  b64url(&b, h, strlen(h));
  assert_int_equal(cr_buf_append(&b, pay, strlen(pay)), 0);
  refused_n(ks, &o, b.data, b.len, "bad signature");
  /* Header: the kid of the EC key, alg left RS256 (that key is not RSA). */
  b.len = 0;
  h = "{\"alg\":\"RS256\",\"kid\":\"b\"}";
  b64url(&b, h, strlen(h));
  assert_int_equal(cr_buf_append(&b, pay, strlen(pay)), 0);
  refused_n(ks, &o, b.data, b.len, "no key for algorithm");
  cr_buf_free(&b);
  free(good);
  cr_jwt_keys_free(ks);
  free(set);
}

static void test_key_ids(void **state) {
  (void)state;
  EVP_PKEY *two[] = {rsa, rsa2};
  const char *kids[] = {",\"kid\":\"k1\"", ",\"kid\":\"k2\""};
  char *set = jwks(2, two, kids);
  cr_jwt_keys_t *ks = keys_ok(set);
  cr_jwt_opts_t o = opts();
  char *t = token("{\"alg\":\"RS256\",\"kid\":\"k3\"}", claims(""), CR_JWT_RS256, rsa);
  refused(ks, &o, t, "unknown key id");
  free(t);
  t = token("{\"alg\":\"RS256\",\"kid\":\"k\"}", claims(""), CR_JWT_RS256, rsa);
  refused(ks, &o, t, "unknown key id");
  free(t);
  t = token("{\"alg\":\"RS256\",\"kid\":\"\"}", claims(""), CR_JWT_RS256, rsa);
  refused(ks, &o, t, "unknown key id");
  free(t);
  /* A kid names the one key tried: signed by k1, naming k2. */
  t = token("{\"alg\":\"RS256\",\"kid\":\"k2\"}", claims(""), CR_JWT_RS256, rsa);
  refused(ks, &o, t, "bad signature");
  free(t);
  t = token("{\"alg\":\"RS256\",\"kid\":\"k2\"}", claims(""), CR_JWT_RS256, rsa2);
  accepted(ks, &o, t);
  free(t);
  /* No kid with two keys: both tried, the second one verifies. */
  t = token("{\"alg\":\"RS256\"}", claims(""), CR_JWT_RS256, rsa2);
  accepted(ks, &o, t);
  free(t);
  t = token("{\"alg\":\"RS256\"}", claims(""), CR_JWT_RS256, rsa);
  accepted(ks, &o, t);
  free(t);
  cr_jwt_keys_free(ks);
  free(set);
  /* A key without kid (from PEM) serves tokens naming any kid. */
  char *pem = pem_of(rsa2, 0);
  ks = keys_ok(pem);
  t = token("{\"alg\":\"RS256\",\"kid\":\"2024-01\"}", claims(""), CR_JWT_RS256, rsa2);
  accepted(ks, &o, t);
  free(t);
  cr_jwt_keys_free(ks);
  free(pem);
  /* In a mixed set, a kid that matches selects that key only; one that
   * matches none falls to the keys without kid. */
  EVP_PKEY *mixed[] = {rsa, rsa2};
  const char *mk[] = {",\"kid\":\"k1\"", ""};
  set = jwks(2, mixed, mk);
  ks = keys_ok(set);
  t = token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", claims(""), CR_JWT_RS256, rsa2);
  refused(ks, &o, t, "bad signature");
  free(t);
  t = token("{\"alg\":\"RS256\",\"kid\":\"zz\"}", claims(""), CR_JWT_RS256, rsa2);
  accepted(ks, &o, t);
  free(t);
  t = token("{\"alg\":\"RS256\",\"kid\":\"zz\"}", claims(""), CR_JWT_RS256, rsa);
  refused(ks, &o, t, "bad signature");
  free(t);
  cr_jwt_keys_free(ks);
  free(set);
}

/* Without a kid, at most CR_JWT_MAX_TRIES keys are tried. */
static void test_tries_bounded(void **state) {
  (void)state;
  EVP_PKEY *ks20[20];
  for (int i = 0; i < 20; i++) assert_non_null(ks20[i] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
  char *set = jwks(20, ks20, NULL);
  cr_jwt_keys_t *ks = keys_ok(set);
  assert_int_equal(cr_jwt_keys_count(ks), 20);
  cr_jwt_opts_t o = opts();
  char *t = token("{\"alg\":\"ES256\"}", claims(""), CR_JWT_ES256, ks20[CR_JWT_MAX_TRIES - 1]);
  accepted(ks, &o, t);
  free(t);
  t = token("{\"alg\":\"ES256\"}", claims(""), CR_JWT_ES256, ks20[CR_JWT_MAX_TRIES]);
  refused(ks, &o, t, "bad signature");
  free(t);
  for (int i = 0; i < 20; i++) EVP_PKEY_free(ks20[i]);
  cr_jwt_keys_free(ks);
  free(set);
}

static void test_structure(void **state) {
  (void)state;
  char *pem = pem_of(ec, 0);
  cr_jwt_keys_t *ks = keys_ok(pem);
  cr_jwt_opts_t o = opts();
  char *good = token("{\"alg\":\"ES256\"}", claims(""), CR_JWT_ES256, ec);
  size_t n = strlen(good);
  accepted(ks, &o, good);
  const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
  char buf[2048];
  /* Truncated: 2 parts, the signature cut, one part only, empty. */
  refused_n(ks, &o, good, (size_t)(d2 - good), "malformed token");
  refused_n(ks, &o, good, (size_t)(d2 - good) + 1, "bad signature");
  refused_n(ks, &o, good, n - 2, "bad signature"); /* 84 characters: 63 bytes, not 64 */
  refused_n(ks, &o, good, n - 6, "bad signature"); /* 60 bytes */
  refused_n(ks, &o, good, n - 1, "malformed token"); /* 85 characters: no base64url text has that length */
  refused_n(ks, &o, good, (size_t)(d1 - good), "malformed token");
  refused_n(ks, &o, good, 0, "malformed token");
  refused_n(ks, &o, "..", 2, "malformed token");
  refused_n(ks, &o, d1, strlen(d1), "malformed token"); /* no header */
  /* 4 parts; 5 parts. */
  snprintf(buf, sizeof buf, "%s.", good);
  refused(ks, &o, buf, "malformed token");
  snprintf(buf, sizeof buf, "%s.e30", good);
  refused(ks, &o, buf, "malformed token");
  snprintf(buf, sizeof buf, "%s..", good);
  refused(ks, &o, buf, "malformed token");
  /* Padding, in each part. */
  snprintf(buf, sizeof buf, "%s=", good);
  refused(ks, &o, buf, "malformed token");
  snprintf(buf, sizeof buf, "%s==", good);
  refused(ks, &o, buf, "malformed token");
  snprintf(buf, sizeof buf, "%.*s=%s", (int)(d1 - good), good, d1);
  refused(ks, &o, buf, "malformed token");
  snprintf(buf, sizeof buf, "%.*s=%s", (int)(d2 - good), good, d2);
  refused(ks, &o, buf, "malformed token");
  /* Bad base64url: the standard alphabet's '+' and '/', a space, a NUL, non-ASCII. */
  const char bad[] = {'+', '/', ' ', '\0', '\n', '\xC3', '*'};
  for (size_t i = 0; i < sizeof bad; i++) {
    size_t at[] = {1, (size_t)(d1 - good) + 2, (size_t)(d2 - good) + 2};
    for (size_t j = 0; j < 3; j++) {
      memcpy(buf, good, n);
      buf[at[j]] = bad[i];
      refused_n(ks, &o, buf, n, "malformed token");
    }
  }
  /* A second spelling of the same bytes is refused: the 64-byte signature
   * ends in a character holding 4 unused bits, all zero; set one. */
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  int last = (int)(strchr(abc, good[n - 1]) - abc);
  assert_int_equal(last & 15, 0);
  memcpy(buf, good, n);
  buf[n - 1] = abc[last | 1];
  refused_n(ks, &o, buf, n, "malformed token");
  /* Headers that are not JSON objects. */
  const char *headers[] = {"[1]", "null", "{}", "{\"alg\":\"ES256\"} ", "not json", "{\"alg\":\"ES256\"}{}"};
  for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
    char *t = token(headers[i], claims(""), CR_JWT_ES256, ec);
    if (i == 3) accepted(ks, &o, t); /* whitespace after the object is JSON */
    else refused(ks, &o, t, "malformed token");
    free(t);
  }
  /* Huge: one byte over the limit, a custom limit, and right at it. */
  char *huge = malloc(CR_JWT_DEFAULT_MAX_LEN + 2);
  memset(huge, 'A', CR_JWT_DEFAULT_MAX_LEN + 1);
  huge[CR_JWT_DEFAULT_MAX_LEN + 1] = '\0';
  refused(ks, &o, huge, "token too long");
  refused_n(ks, &o, huge, CR_JWT_DEFAULT_MAX_LEN, "malformed token");
  free(huge);
  o.max_len = n - 1;
  refused(ks, &o, good, "token too long");
  o.max_len = n;
  accepted(ks, &o, good);
  /* A large but allowed payload. */
  o = opts();
  o.max_len = 64 * 1024;
  char *big = malloc(32 * 1024);
  char *pad = malloc(20 * 1024);
  memset(pad, 'x', 20 * 1024 - 1);
  pad[20 * 1024 - 1] = '\0';
  snprintf(big, 32 * 1024, ",\"pad\":\"%s\"", pad);
  char *t = token("{\"alg\":\"ES256\"}", claims(big), CR_JWT_ES256, ec);
  accepted(ks, &o, t);
  o.max_len = 0; /* the default 8192 */
  refused(ks, &o, t, "token too long");
  free(t);
  free(pad);
  free(big);
  /* Deep nesting in the claims (past jsonread's 32) is malformed, after the signature. */
  char deep[256] = ",\"x\":";
  for (int i = 0; i < 40; i++) strcat(deep, "[");
  for (int i = 0; i < 40; i++) strcat(deep, "]");
  o = opts();
  t = token("{\"alg\":\"ES256\"}", claims(deep), CR_JWT_ES256, ec);
  refused(ks, &o, t, "malformed token");
  free(t);
  free(good);
  cr_jwt_keys_free(ks);
  free(pem);
}

/* --- key sets ----------------------------------------------------------------------------------- */

static void test_jwks_errors(void **state) {
  (void)state;
  keys_refused("", "JWKS is not JSON (at byte 0: unexpected end of text)");
  keys_refused("keys", "JWKS is not JSON (at byte 0: unexpected character)");
  keys_refused("{\"keys\":[],}", "JWKS is not JSON (at byte 11: expected a member name)");
  keys_refused("{}", "JWKS has no \"keys\" array");
  keys_refused("[]", "JWKS has no \"keys\" array");
  keys_refused("{\"keys\":{}}", "JWKS has no \"keys\" array");
  keys_refused("{\"keys\":[]}", "JWKS has no usable signature key (RSA, EC P-256 or Ed25519 with use \"sig\")");
  keys_refused("{\"keys\":[1]}", "keys[0]: not an object");
  keys_refused("{\"keys\":[{}]}", "keys[0]: \"kty\" missing or not a string");
  keys_refused("{\"keys\":[{\"kty\":1}]}", "keys[0]: \"kty\" missing or not a string");
  keys_refused("{\"keys\":[{\"kty\":\"oct\",\"k\":\"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ\"}]}",
               "keys[0]: symmetric (\"oct\") keys are not read from a key file");
  /* RSA: n and e. */
  const char *rsa_cases[][2] = {
      {"{\"kty\":\"RSA\",\"e\":\"AQAB\"}", "keys[0]: \"n\" missing"},
      {"{\"kty\":\"RSA\",\"n\":7,\"e\":\"AQAB\"}", "keys[0]: \"n\" not a string"},
      {"{\"kty\":\"RSA\",\"n\":\"@@@@\",\"e\":\"AQAB\"}", "keys[0]: \"n\" not base64url"},
      {"{\"kty\":\"RSA\",\"n\":\"AQAB=\",\"e\":\"AQAB\"}", "keys[0]: \"n\" not base64url"},
      {"{\"kty\":\"RSA\",\"n\":\"\",\"e\":\"AQAB\"}", "keys[0]: RSA modulus of 0 bits (2048 to 8192 expected)"},
      {"{\"kty\":\"RSA\",\"n\":\"AAAA\",\"e\":\"AQAB\"}", "keys[0]: RSA modulus of 0 bits (2048 to 8192 expected)"},
      {"{\"kty\":\"RSA\",\"n\":\"wQ\",\"e\":\"AQAB\"}", "keys[0]: RSA modulus of 8 bits (2048 to 8192 expected)"},
  };
  char buf[4096];
  for (size_t i = 0; i < sizeof rsa_cases / sizeof rsa_cases[0]; i++) {
    snprintf(buf, sizeof buf, "{\"keys\":[%s]}", rsa_cases[i][0]);
    keys_refused(buf, rsa_cases[i][1]);
  }
  /* A real modulus with bad exponents, and a 1024-bit key. */
  EVP_PKEY *one[] = {rsa};
  char *set = jwks(1, one, NULL);
  const char *ecut = strstr(set, ",\"e\":\"AQAB\"");
  assert_non_null(ecut);
  const char *exps[][2] = {
      {"", "keys[0]: \"e\" missing"},
      {",\"e\":\"AQAA\"", "keys[0]: RSA exponent not an odd number above 1"},
      {",\"e\":\"AQ\"", "keys[0]: RSA exponent not an odd number above 1"},
      {",\"e\":\"AAAB\"", "keys[0]: RSA exponent not an odd number above 1"},
      {",\"e\":\"AAAA\"", "keys[0]: RSA exponent not an odd number above 1"},
      {",\"e\":\"AQABAQABAQAB\"", "keys[0]: \"e\" too long"},
      {",\"e\":\"AQAB\",\"alg\":\"ES256\"", "keys[0]: \"alg\" ES256 does not fit kty RSA"},
      {",\"e\":\"AQAB\",\"alg\":5", "keys[0]: \"alg\" not a string"},
      {",\"e\":\"AQAB\",\"use\":[\"sig\"]", "keys[0]: \"use\" not a string"},
      {",\"e\":\"AQAB\",\"kid\":{}", "keys[0]: \"kid\" not a string"},
  };
  for (size_t i = 0; i < sizeof exps / sizeof exps[0]; i++) {
    snprintf(buf, sizeof buf, "%.*s%s}]}", (int)(ecut - set), set, exps[i][0]);
    keys_refused(buf, exps[i][1]);
  }
  /* A bad key second in the set: the index is named. */
  size_t objlen = strlen(set) - 9 - 2; /* between {"keys":[ and ]} */
  snprintf(buf, sizeof buf, "{\"keys\":[%.*s,%.*s,\"e\":\"AQAA\"}]}", (int)objlen, set + 9, (int)(ecut - set - 9), set + 9);
  keys_refused(buf, "keys[1]: RSA exponent not an odd number above 1");
  free(set);
  EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
  assert_non_null(small);
  one[0] = small;
  set = jwks(1, one, NULL);
  keys_refused(set, "keys[0]: RSA modulus of 1024 bits (2048 to 8192 expected)");
  free(set);
  char *pem = pem_of(small, 0);
  keys_refused(pem, "RSA key of fewer than 2048 or more than 8192 bits");
  free(pem);
  EVP_PKEY_free(small);
  /* EC: curve, coordinates, a point off the curve. */
  const char *ec_cases[][2] = {
      {"{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}", "keys[0]: EC curve is not P-256"},
      {"{\"kty\":\"EC\",\"crv\":\"secp256k1\",\"x\":\"AA\",\"y\":\"AA\"}", "keys[0]: EC curve is not P-256"},
      {"{\"kty\":\"EC\",\"x\":\"AA\",\"y\":\"AA\"}", "keys[0]: EC curve is not P-256"},
      {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\"}", "keys[0]: \"y\" missing"},
      {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}",
       "keys[0]: EC coordinates are not 32 bytes"},
      {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEUA\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}",
       "keys[0]: \"x\" too long"},
      {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1\"}",
       "keys[0]: \"y\" not base64url"}, /* unused low bits set */
      {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a4\"}",
       "keys[0]: EC point is not on P-256"},
      {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\",\"alg\":\"EdDSA\"}",
       "keys[0]: \"alg\" EdDSA does not fit kty EC"},
      {"{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}", "keys[0]: OKP curve is not Ed25519"},
      {"{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AA\"}", "keys[0]: OKP curve is not Ed25519"},
      {"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}", "keys[0]: Ed25519 key is not 32 bytes"},
      {"{\"kty\":\"OKP\",\"crv\":\"Ed25519\"}", "keys[0]: \"x\" missing"},
  };
  for (size_t i = 0; i < sizeof ec_cases / sizeof ec_cases[0]; i++) {
    snprintf(buf, sizeof buf, "{\"keys\":[%s]}", ec_cases[i][0]);
    keys_refused(buf, ec_cases[i][1]);
  }
  /* More than 64 keys. */
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_buf_printf(&b, "{\"keys\":["), 0);
  for (int i = 0; i < CR_JWT_MAX_KEYS + 1; i++) assert_int_equal(cr_buf_printf(&b, "%s{\"kty\":\"x\"}", i ? "," : ""), 0);
  assert_int_equal(cr_buf_printf(&b, "]}"), 0);
  keys_refused(cr_buf_cstr(&b), "JWKS has more than 64 keys");
  cr_buf_free(&b);
  /* Too long a text. */
  char *long_text = malloc(CR_JWT_MAX_KEYS_TEXT + 2);
  memset(long_text, ' ', CR_JWT_MAX_KEYS_TEXT + 1);
  long_text[CR_JWT_MAX_KEYS_TEXT + 1] = '\0';
  keys_refused(long_text, "key text larger than 256 KB");
  free(long_text);
}

static void test_jwks_skips(void **state) {
  (void)state;
  /* use "enc", an unknown kty, an unsupported alg: skipped, and the good key kept. */
  EVP_PKEY *all[] = {rsa, rsa2, ec, ec, ed};
  const char *extras[] = {",\"use\":\"enc\",\"kid\":\"enc\"", ",\"alg\":\"PS256\",\"kid\":\"pss\"", ",\"alg\":\"ES384\"",
                          ",\"use\":\"sig\",\"alg\":\"ES256\",\"kid\":\"good\"", ",\"use\":\"enc\""};
  char *set = jwks(5, all, extras);
  /* Append an unknown key type before the closing brackets. */
  size_t n = strlen(set);
  char *with = malloc(n + 64);
  snprintf(with, n + 64, "%.*s,{\"kty\":\"AKP\",\"pub\":\"AA\"}]}", (int)(n - 2), set);
  cr_jwt_keys_t *ks = keys_ok(with);
  assert_int_equal(cr_jwt_keys_count(ks), 1);
  cr_jwt_opts_t o = opts();
  char *t = token("{\"alg\":\"ES256\",\"kid\":\"good\"}", claims(""), CR_JWT_ES256, ec);
  accepted(ks, &o, t);
  free(t);
  t = token("{\"alg\":\"RS256\",\"kid\":\"enc\"}", claims(""), CR_JWT_RS256, rsa);
  refused(ks, &o, t, "unknown key id"); /* the encryption key is not in the set */
  free(t);
  t = token("{\"alg\":\"RS256\"}", claims(""), CR_JWT_RS256, rsa2);
  refused(ks, &o, t, "no key for algorithm");
  free(t);
  cr_jwt_keys_free(ks);
  free(with);
  free(set);
  /* Only an encryption key: nothing usable. */
  EVP_PKEY *encs[] = {rsa};
  const char *enc[] = {",\"use\":\"enc\""};
  set = jwks(1, encs, enc);
  keys_refused(set, "JWKS has no usable signature key (RSA, EC P-256 or Ed25519 with use \"sig\")");
  free(set);
  /* Whitespace around, and other members of the set, are fine. */
  ks = keys_ok(" \n{\"other\":1,\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\",\"d\":\"ignored\"}]}\n");
  assert_int_equal(cr_jwt_keys_count(ks), 1);
  cr_jwt_keys_free(ks);
  cr_jwt_keys_free(NULL);
  assert_int_equal(cr_jwt_keys_count(NULL), 0);
}

static void test_pem(void **state) {
  (void)state;
  EVP_PKEY *keys[] = {rsa, ec, ed};
  unsigned algs[] = {CR_JWT_RS256, CR_JWT_ES256, CR_JWT_EDDSA};
  const char *headers[] = {"{\"alg\":\"RS256\"}", "{\"alg\":\"ES256\"}", "{\"alg\":\"EdDSA\"}"};
  cr_jwt_opts_t o = opts();
  for (int i = 0; i < 3; i++) {
    char *pem = pem_of(keys[i], 0);
    cr_jwt_keys_t *ks = keys_ok(pem);
    assert_int_equal(cr_jwt_keys_count(ks), 1);
    for (int j = 0; j < 3; j++) {
      char *t = token(headers[j], claims(""), algs[j], keys[j]);
      if (i == j) accepted(ks, &o, t);
      else refused(ks, &o, t, "no key for algorithm");
      free(t);
    }
    cr_jwt_keys_free(ks);
    /* With whitespace before it. */
    size_t n = strlen(pem);
    char *ws = malloc(n + 3);
    snprintf(ws, n + 3, "\n\n%s", pem);
    ks = keys_ok(ws);
    cr_jwt_keys_free(ks);
    free(ws);
    /* A private key is not a public one. */
    char *priv = pem_of(keys[i], 1);
    keys_refused(priv, "PEM key is not a public key (\"BEGIN PUBLIC KEY\" expected)");
    free(priv);
    /* A damaged body. */
    pem[40] = pem[40] == 'A' ? 'B' : 'A';
    pem[41] = '!';
    keys_refused(pem, "invalid PEM public key");
    free(pem);
  }
  keys_refused("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n", "invalid PEM public key");
  keys_refused("-----BEGIN PUBLIC KEY-----\nMIIB\n", "invalid PEM public key");
  keys_refused("-----BEGIN RSA PUBLIC KEY-----\nMIIB\n-----END RSA PUBLIC KEY-----\n",
               "PEM key is not a public key (\"BEGIN PUBLIC KEY\" expected)");
  keys_refused("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
               "PEM key is not a public key (\"BEGIN PUBLIC KEY\" expected)");
  /* Another key type (X25519 is for key agreement, not signatures). */
  EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
  assert_non_null(x);
  char *pem = pem_of(x, 0);
  keys_refused(pem, "key type not supported (RSA, EC P-256 or Ed25519 expected)");
  free(pem);
  EVP_PKEY_free(x);
  /* An EC key on another curve. */
  x = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
  assert_non_null(x);
  pem = pem_of(x, 0);
  keys_refused(pem, "EC key not on P-256");
  free(pem);
  EVP_PKEY_free(x);
}

static void test_secret(void **state) {
  (void)state;
  char err[128];
  assert_null(cr_jwt_keys_secret("0123456789abcdef0123456789abcde", 31, err, sizeof err));
  assert_string_equal(err, "HS256 secret of 31 bytes (32 to 4096 expected)");
  assert_null(cr_jwt_keys_secret("", 0, err, sizeof err));
  assert_string_equal(err, "HS256 secret of 0 bytes (32 to 4096 expected)");
  cr_jwt_keys_t *ks = cr_jwt_keys_secret("0123456789abcdef0123456789abcdef", 32, err, sizeof err);
  assert_non_null(ks);
  cr_jwt_opts_t o = opts();
  char *t = token_with("{\"alg\":\"HS256\"}", claims(""), CR_JWT_HS256, NULL, "0123456789abcdef0123456789abcdef", 32);
  accepted(ks, &o, t);
  free(t);
  /* A secret differing in its last byte. */
  t = token_with("{\"alg\":\"HS256\"}", claims(""), CR_JWT_HS256, NULL, "0123456789abcdef0123456789abcdeF", 32);
  refused(ks, &o, t, "bad signature");
  free(t);
  /* A truncated MAC. */
  t = token_with("{\"alg\":\"HS256\"}", claims(""), CR_JWT_HS256, NULL, "0123456789abcdef0123456789abcdef", 32);
  refused_n(ks, &o, t, strlen(t) - 3, "bad signature");
  free(t);
  cr_jwt_keys_free(ks);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc7515_a1_hs256),
      cmocka_unit_test(test_rfc7515_a2_rs256),
      cmocka_unit_test(test_rfc7515_a3_es256),
      cmocka_unit_test(test_rfc8037_a4_eddsa),
      cmocka_unit_test(test_each_algorithm),
      cmocka_unit_test(test_time_claims),
      cmocka_unit_test(test_issuer_audience_subject),
      cmocka_unit_test(test_alg_none_and_header),
      cmocka_unit_test(test_algorithm_confusion),
      cmocka_unit_test(test_tampering),
      cmocka_unit_test(test_key_ids),
      cmocka_unit_test(test_tries_bounded),
      cmocka_unit_test(test_structure),
      cmocka_unit_test(test_jwks_errors),
      cmocka_unit_test(test_jwks_skips),
      cmocka_unit_test(test_pem),
      cmocka_unit_test(test_secret),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
