/* jwt.c - JWT verification (the contract is in jwt.h).
 *
 * Keys are turned into OpenSSL EVP_PKEYs once, when the key set is read; a
 * verification allocates only the decoded header and payload (the payload
 * becomes the claims text it returns) and one digest context per key it
 * tries. Signatures are checked as stdlib/crypto.c checks them (EVP digest
 * verify, SHA-256; ES256's r||s rebuilt as DER), HMAC compared in constant
 * time. Every OpenSSL error is cleared before returning, so none is left on
 * the thread's queue for a later, unrelated caller to find. */
#include "jwt.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonread.h"
#include "text.h"

#define MAX_SIG 1024 /* an RSA-8192 signature, the longest */
#define MAX_KID 256
#define MIN_SECRET 32
#define MAX_SECRET 4096
#define MIN_RSA_BITS 2048
#define MAX_RSA_BITS 8192

typedef struct {
  unsigned alg;     /* the one CR_JWT_* this key verifies */
  char *kid;        /* NULL when the key has none */
  size_t kidlen;
  EVP_PKEY *pkey;   /* RSA, EC P-256, Ed25519 */
  unsigned char *secret; /* HS256 */
  size_t secretlen;
} jkey_t;

struct cr_jwt_keys_s {
  size_t n;
  jkey_t k[CR_JWT_MAX_KEYS];
};

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* --- base64url (RFC 4648 section 5, no padding, canonical) ------------------------------------ */

static int b64val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/* The decoded length of n characters, or SIZE_MAX when no text has n. */
static size_t b64_len(size_t n) {
  if (n % 4 == 1) return SIZE_MAX;
  return n / 4 * 3 + (n % 4 == 2 ? 1 : n % 4 == 3 ? 2 : 0);
}

/* Decodes s (n characters) into out (room for b64_len(n)). -1 on a character
 * outside the alphabet ('=' included) or unused low bits that are not zero
 * (a second spelling of the same bytes). */
static int b64_decode(const char *s, size_t n, unsigned char *out) {
  if (b64_len(n) == SIZE_MAX) return -1;
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val(s[i]);
    if (v < 0) return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  return acc ? -1 : 0;
}

/* --- keys ---------------------------------------------------------------------------------------- */

static unsigned alg_bit(const char *s, size_t n) {
  static const struct {
    const char *name;
    unsigned bit;
  } algs[] = {{"RS256", CR_JWT_RS256}, {"ES256", CR_JWT_ES256}, {"EdDSA", CR_JWT_EDDSA}, {"HS256", CR_JWT_HS256}};
  for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
    if (n == strlen(algs[i].name) && memcmp(s, algs[i].name, n) == 0) return algs[i].bit;
  return 0;
}

static void key_clear(jkey_t *k) {
  free(k->kid);
  EVP_PKEY_free(k->pkey);
  if (k->secret) {
    OPENSSL_cleanse(k->secret, k->secretlen);
    free(k->secret);
  }
  memset(k, 0, sizeof *k);
}

void cr_jwt_keys_free(cr_jwt_keys_t *ks) {
  if (!ks) return;
  for (size_t i = 0; i < ks->n; i++) key_clear(&ks->k[i]);
  free(ks);
}

size_t cr_jwt_keys_count(const cr_jwt_keys_t *ks) { return ks ? ks->n : 0; }

/* An encrypted key is refused, never prompted for. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1;
}

/* True when an EC key is on P-256 (not merely 256 bits: secp256k1 is too). */
static int is_p256(EVP_PKEY *k) {
  char name[64];
  size_t n = 0;
  return EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &n) == 1 &&
         strcmp(name, "prime256v1") == 0;
}

/* The algorithm a key read from PEM verifies, or NULL and *why. */
static unsigned pkey_alg(EVP_PKEY *k, const char **why) {
  int id = EVP_PKEY_get_base_id(k);
  if (id == EVP_PKEY_RSA) {
    int bits = EVP_PKEY_get_bits(k);
    if (bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS) return CR_JWT_RS256;
    *why = "RSA key of fewer than 2048 or more than 8192 bits";
    return 0;
  }
  if (id == EVP_PKEY_EC) {
    if (is_p256(k)) return CR_JWT_ES256;
    *why = "EC key not on P-256";
    return 0;
  }
  if (id == EVP_PKEY_ED25519) return CR_JWT_EDDSA;
  *why = "key type not supported (RSA, EC P-256 or Ed25519 expected)";
  return 0;
}

static cr_jwt_keys_t *parse_pem(const char *text, size_t len, char *err, size_t errlen) {
  static const char begin[] = "-----BEGIN PUBLIC KEY-----";
  if (len < sizeof begin - 1 || memcmp(text, begin, sizeof begin - 1) != 0) {
    seterr(err, errlen, "PEM key is not a public key (\"BEGIN PUBLIC KEY\" expected)");
    return NULL;
  }
  BIO *bio = BIO_new_mem_buf(text, (int)len);
  EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL) : NULL;
  BIO_free(bio);
  ERR_clear_error();
  if (!k) {
    seterr(err, errlen, "invalid PEM public key");
    return NULL;
  }
  const char *why = NULL;
  unsigned alg = pkey_alg(k, &why);
  cr_jwt_keys_t *ks = alg ? calloc(1, sizeof *ks) : NULL;
  if (!ks) {
    EVP_PKEY_free(k);
    seterr(err, errlen, "%s", alg ? "out of memory" : why);
    return NULL;
  }
  ks->k[0] = (jkey_t){.alg = alg, .pkey = k};
  ks->n = 1;
  return ks;
}

/* Decodes the base64url string member name of j into buf (at most cap
 * bytes). NULL, or what is wrong with it. */
static const char *b64_member(const cr_jr_val_t *j, const char *name, unsigned char *buf, size_t cap,
                              size_t *outlen) {
  const cr_jr_val_t *v = cr_jr_get(j, name);
  if (!v) return "missing";
  if (v->type != CR_JR_STRING) return "not a string";
  size_t n = b64_len(v->len);
  if (n == SIZE_MAX || n > cap) return n == SIZE_MAX ? "not base64url" : "too long";
  if (b64_decode(v->str, v->len, buf)) return "not base64url";
  *outlen = n;
  return NULL;
}

static EVP_PKEY *rsa_key(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen) {
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
  OSSL_PARAM *params = NULL;
  EVP_PKEY_CTX *ctx = NULL;
  EVP_PKEY *k = NULL;
  if (bld && bn && be && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) && (params = OSSL_PARAM_BLD_to_param(bld)) &&
      (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) && EVP_PKEY_fromdata_init(ctx) == 1 &&
      EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1)
    k = NULL;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn);
  BN_free(be);
  return k;
}

/* A P-256 key from its coordinates; NULL when the point is not on the curve. */
static EVP_PKEY *ec_key(const unsigned char x[32], const unsigned char y[32]) {
  unsigned char pub[65];
  pub[0] = 0x04; /* uncompressed */
  memcpy(pub + 1, x, 32);
  memcpy(pub + 33, y, 32);
  char group[] = "prime256v1";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
                         OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub),
                         OSSL_PARAM_construct_end()};
  EVP_PKEY *k = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
  if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1)
    k = NULL;
  EVP_PKEY_CTX_free(ctx);
  if (k) {
    EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1) {
      EVP_PKEY_free(k);
      k = NULL;
    }
    EVP_PKEY_CTX_free(check);
  }
  return k;
}

/* Reads JWK j (keys[idx]) into *out: 0 kept, 1 skipped, -1 refused with err. */
static int parse_jwk(const cr_jr_val_t *j, size_t idx, jkey_t *out, char *err, size_t errlen) {
#define BAD(...)                                         \
  do {                                                   \
    char why_[160];                                      \
    snprintf(why_, sizeof why_, __VA_ARGS__);            \
    seterr(err, errlen, "keys[%zu]: %s", idx, why_);     \
    return -1;                                           \
  } while (0)
  if (j->type != CR_JR_OBJECT) BAD("not an object");
  const cr_jr_val_t *kty = cr_jr_get(j, "kty"), *use = cr_jr_get(j, "use"), *alg = cr_jr_get(j, "alg"),
                    *kid = cr_jr_get(j, "kid");
  if (!kty || kty->type != CR_JR_STRING) BAD("\"kty\" missing or not a string");
  if (use && use->type != CR_JR_STRING) BAD("\"use\" not a string");
  if (alg && alg->type != CR_JR_STRING) BAD("\"alg\" not a string");
  if (kid && kid->type != CR_JR_STRING) BAD("\"kid\" not a string");
  if (kid && kid->len > MAX_KID) BAD("\"kid\" longer than %d bytes", MAX_KID);
  if (cr_jr_streq(kty, "oct")) BAD("symmetric (\"oct\") keys are not read from a key file");
  unsigned kind = cr_jr_streq(kty, "RSA") ? CR_JWT_RS256 : cr_jr_streq(kty, "EC") ? CR_JWT_ES256
                  : cr_jr_streq(kty, "OKP")  ? CR_JWT_EDDSA : 0;
  if (!kind) return 1;                               /* a key type not understood: ignored (RFC 7517 5) */
  if (use && !cr_jr_streq(use, "sig")) return 1;     /* an encryption key */
  if (alg) {
    unsigned pin = alg_bit(alg->str, alg->len);
    if (!pin) return 1; /* pinned to an algorithm not supported here (RS384, PS256, ...) */
    if (pin != kind) BAD("\"alg\" %s does not fit kty %s", alg->str, kty->str);
  }
  const char *why;
  EVP_PKEY *k = NULL;
  if (kind == CR_JWT_RS256) {
    unsigned char n[MAX_SIG + 1], e[8];
    size_t nlen = 0, elen = 0, nz = 0, ez = 0;
    if ((why = b64_member(j, "n", n, sizeof n, &nlen))) BAD("\"n\" %s", why);
    if ((why = b64_member(j, "e", e, sizeof e, &elen))) BAD("\"e\" %s", why);
    while (nz < nlen && n[nz] == 0) nz++;
    while (ez < elen && e[ez] == 0) ez++;
    size_t bits = 0;
    if (nz < nlen) {
      bits = (nlen - nz) * 8;
      for (unsigned char top = n[nz]; !(top & 0x80); top <<= 1) bits--;
    }
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) BAD("RSA modulus of %zu bits (2048 to 8192 expected)", bits);
    if (ez == elen || !(e[elen - 1] & 1) || (elen - ez == 1 && e[ez] < 3)) BAD("RSA exponent not an odd number above 1");
    k = rsa_key(n + nz, nlen - nz, e + ez, elen - ez);
  } else if (kind == CR_JWT_ES256) {
    const cr_jr_val_t *crv = cr_jr_get(j, "crv");
    if (!cr_jr_streq(crv, "P-256")) BAD("EC curve is not P-256");
    unsigned char x[32], y[32];
    size_t xl = 0, yl = 0;
    if ((why = b64_member(j, "x", x, sizeof x, &xl))) BAD("\"x\" %s", why);
    if ((why = b64_member(j, "y", y, sizeof y, &yl))) BAD("\"y\" %s", why);
    if (xl != 32 || yl != 32) BAD("EC coordinates are not 32 bytes");
    k = ec_key(x, y);
    if (!k) {
      ERR_clear_error();
      BAD("EC point is not on P-256");
    }
  } else {
    const cr_jr_val_t *crv = cr_jr_get(j, "crv");
    if (!cr_jr_streq(crv, "Ed25519")) BAD("OKP curve is not Ed25519");
    unsigned char x[32];
    size_t xl = 0;
    if ((why = b64_member(j, "x", x, sizeof x, &xl))) BAD("\"x\" %s", why);
    if (xl != 32) BAD("Ed25519 key is not 32 bytes");
    k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, 32);
  }
  ERR_clear_error();
  if (!k) BAD("key not accepted by OpenSSL");
  *out = (jkey_t){.alg = kind, .pkey = k};
  if (kid) {
    out->kid = malloc(kid->len + 1);
    if (!out->kid) {
      key_clear(out);
      BAD("out of memory");
    }
    memcpy(out->kid, kid->str, kid->len + 1);
    out->kidlen = kid->len;
  }
  return 0;
#undef BAD
}

static cr_jwt_keys_t *parse_jwks(const char *text, size_t len, char *err, size_t errlen) {
  char jerr[96];
  cr_jr_doc_t *doc = cr_jr_parse(text, len, jerr, sizeof jerr);
  if (!doc) {
    seterr(err, errlen, "JWKS is not JSON (%s)", jerr);
    return NULL;
  }
  const cr_jr_val_t *keys = cr_jr_get(cr_jr_root(doc), "keys");
  cr_jwt_keys_t *ks = NULL;
  if (!keys || keys->type != CR_JR_ARRAY) {
    seterr(err, errlen, "JWKS has no \"keys\" array");
  } else if (keys->len > CR_JWT_MAX_KEYS) {
    seterr(err, errlen, "JWKS has more than %d keys", CR_JWT_MAX_KEYS);
  } else if (!(ks = calloc(1, sizeof *ks))) {
    seterr(err, errlen, "out of memory");
  } else {
    size_t i = 0;
    for (const cr_jr_val_t *j = keys->child; j; j = j->next, i++) {
      int r = parse_jwk(j, i, &ks->k[ks->n], err, errlen);
      if (r < 0) {
        cr_jwt_keys_free(ks);
        ks = NULL;
        break;
      }
      if (r == 0) ks->n++;
    }
    if (ks && ks->n == 0) {
      seterr(err, errlen, "JWKS has no usable signature key (RSA, EC P-256 or Ed25519 with use \"sig\")");
      cr_jwt_keys_free(ks);
      ks = NULL;
    }
  }
  cr_jr_free(doc);
  return ks;
}

cr_jwt_keys_t *cr_jwt_keys_parse(const char *text, size_t len, char *err, size_t errlen) {
  if (len > CR_JWT_MAX_KEYS_TEXT) {
    seterr(err, errlen, "key text larger than %d KB", CR_JWT_MAX_KEYS_TEXT / 1024);
    return NULL;
  }
  size_t i = 0;
  while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) i++;
  if (len - i >= 5 && memcmp(text + i, "-----", 5) == 0) return parse_pem(text + i, len - i, err, errlen);
  return parse_jwks(text, len, err, errlen);
}

cr_jwt_keys_t *cr_jwt_keys_secret(const char *secret, size_t len, char *err, size_t errlen) {
  if (len < MIN_SECRET || len > MAX_SECRET) {
    seterr(err, errlen, "HS256 secret of %zu bytes (%d to %d expected)", len, MIN_SECRET, MAX_SECRET);
    return NULL;
  }
  cr_jwt_keys_t *ks = calloc(1, sizeof *ks);
  unsigned char *s = ks ? malloc(len) : NULL;
  if (!s) {
    free(ks);
    seterr(err, errlen, "out of memory");
    return NULL;
  }
  memcpy(s, secret, len);
  ks->k[0] = (jkey_t){.alg = CR_JWT_HS256, .secret = s, .secretlen = len};
  ks->n = 1;
  return ks;
}

/* --- verification -------------------------------------------------------------------------------- */

static int verify_with(const jkey_t *k, unsigned alg, const char *input, size_t inlen, const unsigned char *sig,
                       size_t siglen) {
  if (alg == CR_JWT_HS256) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (siglen != 32 ||
        !HMAC(EVP_sha256(), k->secret, (int)k->secretlen, (const unsigned char *)input, inlen, mac, &maclen) ||
        maclen != 32)
      return 0;
    return CRYPTO_memcmp(mac, sig, 32) == 0;
  }
  unsigned char der[80];
  if (alg == CR_JWT_RS256 && siglen != (size_t)EVP_PKEY_get_size(k->pkey)) return 0;
  if (alg == CR_JWT_EDDSA && siglen != 64) return 0;
  if (alg == CR_JWT_ES256) { /* r||s -> DER */
    if (siglen != 64) return 0;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
      BN_free(r);
      BN_free(s);
      ECDSA_SIG_free(es);
      return 0;
    }
    int n = i2d_ECDSA_SIG(es, NULL);
    unsigned char *p = der;
    if (n > 0 && n <= (int)sizeof der) n = i2d_ECDSA_SIG(es, &p);
    else n = -1;
    ECDSA_SIG_free(es);
    if (n <= 0) return 0;
    sig = der;
    siglen = (size_t)n;
  }
  int ok = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx && EVP_DigestVerifyInit(ctx, NULL, alg == CR_JWT_EDDSA ? NULL : EVP_sha256(), NULL, k->pkey) == 1 &&
      EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)input, inlen) == 1)
    ok = 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

/* Decodes a base64url part into a malloc'd, NUL-terminated buffer: 0, -1 (not
 * base64url) or -2 (out of memory). */
static int decode_part(const char *s, size_t n, char **out, size_t *outlen) {
  size_t dl = b64_len(n);
  if (dl == SIZE_MAX) return -1;
  char *b = malloc(dl + 1);
  if (!b) return -2;
  if (b64_decode(s, n, (unsigned char *)b)) {
    free(b);
    return -1;
  }
  b[dl] = '\0';
  *out = b;
  *outlen = dl;
  return 0;
}

static int is_number(const cr_jr_val_t *v) { return v->type == CR_JR_NUMBER; }

/* The claims checks; NULL or the reason. */
static const char *check_claims(const cr_jr_val_t *c, const cr_jwt_opts_t *o, cr_jwt_claims_t *out) {
  if (c->type != CR_JR_OBJECT) return "malformed token";
  const cr_jr_val_t *exp = cr_jr_get(c, "exp"), *nbf = cr_jr_get(c, "nbf"), *iat = cr_jr_get(c, "iat"),
                    *iss = cr_jr_get(c, "iss"), *aud = cr_jr_get(c, "aud"), *sub = cr_jr_get(c, "sub");
  if ((exp && !is_number(exp)) || (nbf && !is_number(nbf)) || (iat && !is_number(iat))) return "malformed token";
  if (iss && iss->type != CR_JR_STRING) return "malformed token";
  if (sub && (sub->type != CR_JR_STRING || sub->len >= sizeof out->sub || memchr(sub->str, 0, sub->len)))
    return "malformed token";
  if (aud && aud->type == CR_JR_ARRAY) {
    for (const cr_jr_val_t *a = aud->child; a; a = a->next)
      if (a->type != CR_JR_STRING) return "malformed token";
  } else if (aud && aud->type != CR_JR_STRING) {
    return "malformed token";
  }
  double leeway = o->leeway > 0 ? o->leeway : 0; /* NaN too */
  if (exp && !(exp->num > o->now - leeway)) return "expired";
  if (nbf && !(nbf->num <= o->now + leeway)) return "not yet valid";
  if (o->issuer && !cr_jr_streq(iss, o->issuer)) return "wrong issuer";
  if (o->audience) {
    int found = 0;
    if (aud && aud->type == CR_JR_STRING) found = cr_jr_streq(aud, o->audience);
    else if (aud)
      for (const cr_jr_val_t *a = aud->child; a && !found; a = a->next) found = cr_jr_streq(a, o->audience);
    if (!found) return "wrong audience";
  }
  if (sub) memcpy(out->sub, sub->str, sub->len + 1);
  out->exp = exp ? exp->num : 0;
  return NULL;
}

/* The keys to try, in the set's order: 0 and *n, or the reason. */
static const char *pick_keys(const cr_jwt_keys_t *ks, unsigned alg, const cr_jr_val_t *kid,
                             const jkey_t *picked[CR_JWT_MAX_TRIES], size_t *n) {
  size_t named = 0, fit = 0;
  *n = 0;
  if (!ks) return "no key for algorithm";
  if (kid) { /* the keys with that kid; when there are none, the keys with no kid */
    for (size_t i = 0; i < ks->n; i++)
      if (ks->k[i].kid && ks->k[i].kidlen == kid->len && memcmp(ks->k[i].kid, kid->str, kid->len) == 0) named++;
  }
  for (size_t i = 0; i < ks->n && *n < CR_JWT_MAX_TRIES; i++) {
    const jkey_t *k = &ks->k[i];
    if (kid) {
      int match = named ? k->kid && k->kidlen == kid->len && memcmp(k->kid, kid->str, kid->len) == 0 : !k->kid;
      if (!match) continue;
    }
    fit++;
    if (k->alg == alg) picked[(*n)++] = k;
  }
  if (kid && !fit) return "unknown key id";
  if (!*n) return "no key for algorithm";
  return NULL;
}

int cr_jwt_verify(const cr_jwt_keys_t *keys, const cr_jwt_opts_t *o, const char *token, size_t len,
                  cr_jwt_claims_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  size_t max = o->max_len ? o->max_len : CR_JWT_DEFAULT_MAX_LEN;
  if (len > max) {
    seterr(err, errlen, "token too long");
    return -1;
  }
  const char *why = "malformed token", *end = token + len;
  char *header = NULL, *payload = NULL;
  size_t hlen = 0, plen = 0;
  cr_jr_doc_t *hdoc = NULL, *pdoc = NULL;
  const char *d1 = len ? memchr(token, '.', len) : NULL;
  const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
  if (!d2 || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) || d1 == token || d2 == d1 + 1) goto done;
  int r = decode_part(token, (size_t)(d1 - token), &header, &hlen);
  if (r) {
    if (r == -2) why = "out of memory";
    goto done;
  }
  hdoc = cr_jr_parse(header, hlen, NULL, 0);
  const cr_jr_val_t *h = hdoc ? cr_jr_root(hdoc) : NULL;
  if (!h || h->type != CR_JR_OBJECT) goto done;
  const cr_jr_val_t *alg = cr_jr_get(h, "alg"), *typ = cr_jr_get(h, "typ"), *kid = cr_jr_get(h, "kid");
  if (!alg || alg->type != CR_JR_STRING) goto done;
  unsigned bit = alg_bit(alg->str, alg->len);
  if (!bit || !(o->algorithms & bit)) { /* "none", in any case, has no bit */
    why = "algorithm not allowed";
    goto done;
  }
  if (typ && typ->type != CR_JR_STRING) goto done;
  if (typ && !cr_ieq(typ->str, typ->len, "jwt") && !cr_ieq(typ->str, typ->len, "at+jwt")) {
    why = "unsupported token type";
    goto done;
  }
  if (cr_jr_get(h, "crit")) {
    why = "critical header not supported";
    goto done;
  }
  if (kid && kid->type != CR_JR_STRING) goto done;
  /* The payload is decoded now (a bad part is a malformed token, whichever
   * it is), read as JSON only once the signature holds. */
  r = decode_part(d1 + 1, (size_t)(d2 - d1 - 1), &payload, &plen);
  if (r) {
    if (r == -2) why = "out of memory";
    goto done;
  }
  /* The signature. */
  size_t slen = (size_t)(end - d2 - 1), siglen = b64_len(slen);
  unsigned char sig[MAX_SIG];
  if (siglen == SIZE_MAX) goto done;
  if (siglen > sizeof sig) {
    why = "bad signature";
    goto done;
  }
  if (b64_decode(d2 + 1, slen, sig)) goto done;
  const jkey_t *picked[CR_JWT_MAX_TRIES];
  size_t npicked;
  if ((why = pick_keys(keys, bit, kid, picked, &npicked))) goto done;
  int ok = 0;
  for (size_t i = 0; i < npicked && !ok; i++) ok = verify_with(picked[i], bit, token, (size_t)(d2 - token), sig, siglen);
  ERR_clear_error();
  if (!ok) {
    why = "bad signature";
    goto done;
  }
  /* The claims. */
  why = "malformed token";
  pdoc = cr_jr_parse(payload, plen, NULL, 0);
  if (!pdoc) goto done;
  if ((why = check_claims(cr_jr_root(pdoc), o, out))) goto done;
  out->claims_json = payload;
  out->claims_len = plen;
  payload = NULL;
done:
  cr_jr_free(hdoc);
  cr_jr_free(pdoc);
  free(header);
  free(payload);
  if (why) {
    memset(out, 0, sizeof *out);
    seterr(err, errlen, "%s", why);
    return -1;
  }
  return 0;
}

void cr_jwt_claims_free(cr_jwt_claims_t *c) {
  if (!c) return;
  free(c->claims_json);
  memset(c, 0, sizeof *c);
}
