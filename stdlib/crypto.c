/* crypto.c - crescent.crypto's functions (see crypto.h and the README).
 *
 * Rules:
 *   - Arguments are checked before anything is allocated; errors name the
 *     argument the way Lua does ("bad argument #2 to 'crypto.hmac' (string
 *     expected, got nil)").
 *   - Scratch space for large outputs is a Lua userdata (metered, collected
 *     even if a later push raises a memory error). OpenSSL objects (keys,
 *     contexts) never live across a call that can raise: results are copied
 *     to a stack buffer, the objects freed, then the string is pushed.
 *   - Nothing here reads globals or user tables: the module table is made
 *     fresh by the loader. */
#include "crypto.h"

#include <lauxlib.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <string.h>

#define MAX_PEM (16 * 1024)
#define MAX_RANDOM 65536
/* RSA up to 8192 bits: a private-key operation on a larger key runs long in
 * one C call, where the deadline's hook cannot stop it. */
#define MAX_SIG 1024

static int bad_arg(lua_State *L, int i, const char *fn, const char *what) {
  return luaL_error(L, "bad argument #%d to '%s' (%s)", i, fn, what);
}

static const char *arg_str(lua_State *L, int i, const char *fn, size_t *len) {
  if (lua_type(L, i) != LUA_TSTRING) {
    lua_pushfstring(L, "string expected, got %s", luaL_typename(L, i));
    bad_arg(L, i, fn, lua_tostring(L, -1));
  }
  return lua_tolstring(L, i, len);
}

static const EVP_MD *md_by_name(const char *name) {
  if (strcmp(name, "sha1") == 0) return EVP_sha1();
  if (strcmp(name, "sha256") == 0) return EVP_sha256();
  if (strcmp(name, "sha512") == 0) return EVP_sha512();
  if (strcmp(name, "md5") == 0) return EVP_md5();
  return NULL;
}

static int digest(lua_State *L, const EVP_MD *md, const char *fn) {
  size_t len;
  const char *s = arg_str(L, 1, fn, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(s, len, out, &n, md, NULL)) return luaL_error(L, "%s: digest failed", fn);
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}
static int l_sha1(lua_State *L) { return digest(L, EVP_sha1(), "crypto.sha1"); }
static int l_sha256(lua_State *L) { return digest(L, EVP_sha256(), "crypto.sha256"); }
static int l_sha512(lua_State *L) { return digest(L, EVP_sha512(), "crypto.sha512"); }
static int l_md5(lua_State *L) { return digest(L, EVP_md5(), "crypto.md5"); }

static int l_hmac(lua_State *L) {
  static const char fn[] = "crypto.hmac";
  size_t alen, klen, mlen;
  const char *alg = arg_str(L, 1, fn, &alen);
  const char *key = arg_str(L, 2, fn, &klen);
  const char *msg = arg_str(L, 3, fn, &mlen);
  const EVP_MD *md = md_by_name(alg);
  if (!md) return bad_arg(L, 1, fn, "\"sha1\", \"sha256\", \"sha512\" or \"md5\" expected");
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(md, klen ? key : "", (int)klen, (const unsigned char *)msg, mlen, out, &n))
    return luaL_error(L, "%s: hmac failed", fn);
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

static lua_Integer arg_int(lua_State *L, int i, const char *fn, lua_Integer lo, lua_Integer hi, const char *what) {
  if (lua_type(L, i) != LUA_TNUMBER) {
    lua_pushfstring(L, "number expected, got %s", luaL_typename(L, i));
    bad_arg(L, i, fn, lua_tostring(L, -1));
  }
  lua_Number x = lua_tonumber(L, i);
  if (!(x >= (lua_Number)lo && x <= (lua_Number)hi) || x != (lua_Number)(lua_Integer)x) bad_arg(L, i, fn, what);
  return (lua_Integer)x;
}

static int l_random(lua_State *L) {
  static const char fn[] = "crypto.randomBytes";
  size_t n = (size_t)arg_int(L, 1, fn, 1, MAX_RANDOM, "n: a whole number, 1 to 65536");
  unsigned char *buf = lua_newuserdata(L, n);
  if (RAND_bytes(buf, (int)n) != 1) return luaL_error(L, "%s: the random generator failed", fn);
  lua_pushlstring(L, (const char *)buf, n);
  return 1;
}

static const char hexd[] = "0123456789abcdef";

static int l_uuid(lua_State *L) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return luaL_error(L, "crypto.uuid: the random generator failed");
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  char s[36];
  int j = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s[j++] = '-';
    s[j++] = hexd[b[i] >> 4];
    s[j++] = hexd[b[i] & 15];
  }
  lua_pushlstring(L, s, sizeof s);
  return 1;
}

static int l_hex(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)arg_str(L, 1, "crypto.hex", &len);
  if (len > ((size_t)-1) / 2) return luaL_error(L, "crypto.hex: input too large");
  char *out = lua_newuserdata(L, len * 2 + 1);
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = hexd[s[i] >> 4];
    out[2 * i + 1] = hexd[s[i] & 15];
  }
  lua_pushlstring(L, out, len * 2);
  return 1;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int l_unhex(lua_State *L) {
  size_t len;
  const char *s = arg_str(L, 1, "crypto.unhex", &len);
  if (len % 2) {
    lua_pushnil(L);
    lua_pushliteral(L, "invalid hex: odd length");
    return 2;
  }
  unsigned char *out = lua_newuserdata(L, len / 2 + 1);
  for (size_t i = 0; i < len; i += 2) {
    int h = hexval((unsigned char)s[i]), l = hexval((unsigned char)s[i + 1]);
    if (h < 0 || l < 0) {
      lua_pushnil(L);
      lua_pushfstring(L, "invalid hex: bad digit at byte %d", (int)(h < 0 ? i + 1 : i + 2));
      return 2;
    }
    out[i / 2] = (unsigned char)(h << 4 | l);
  }
  lua_pushlstring(L, (const char *)out, len / 2);
  return 1;
}

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64enc(lua_State *L, const char *alpha, int pad, const char *fn) {
  size_t len;
  const unsigned char *s = (const unsigned char *)arg_str(L, 1, fn, &len);
  if (len > ((size_t)-1) / 2) return luaL_error(L, "%s: input too large", fn);
  char *out = lua_newuserdata(L, (len + 2) / 3 * 4 + 1);
  size_t j = 0, i = 0;
  for (; i + 2 < len; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
    out[j++] = alpha[v >> 18];
    out[j++] = alpha[(v >> 12) & 63];
    out[j++] = alpha[(v >> 6) & 63];
    out[j++] = alpha[v & 63];
  }
  if (len - i == 1) {
    unsigned v = (unsigned)s[i] << 16;
    out[j++] = alpha[v >> 18];
    out[j++] = alpha[(v >> 12) & 63];
    if (pad) out[j++] = '=', out[j++] = '=';
  } else if (len - i == 2) {
    unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8;
    out[j++] = alpha[v >> 18];
    out[j++] = alpha[(v >> 12) & 63];
    out[j++] = alpha[(v >> 6) & 63];
    if (pad) out[j++] = '=';
  }
  lua_pushlstring(L, out, j);
  return 1;
}

static int b64val(int c, int url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

/* Standard: padded, length a multiple of 4. URL: unpadded (padding also
 * accepted when complete). Bits past the last byte must be zero. */
static int b64dec(lua_State *L, int url, const char *fn) {
  size_t len;
  const char *s = arg_str(L, 1, fn, &len);
  size_t n = len;
  if (!url && len % 4) goto bad;
  if (url && len % 4 == 0 && len >= 2) {
    if (s[n - 1] == '=') n--;
    if (s[n - 1] == '=') n--;
  } else if (!url) {
    if (n && s[n - 1] == '=') n--;
    if (n && s[n - 1] == '=') n--;
  }
  if (n % 4 == 1) goto bad;
  unsigned char *out = lua_newuserdata(L, n / 4 * 3 + 3);
  size_t j = 0;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val((unsigned char)s[i], url);
    if (v < 0) goto bad;
    acc = (acc << 6 | (unsigned)v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (unsigned char)(acc >> bits);
    }
  }
  if (bits && (acc & ((1u << bits) - 1))) goto bad;
  lua_pushlstring(L, (const char *)out, j);
  return 1;
bad:
  lua_pushnil(L);
  lua_pushstring(L, url ? "invalid base64url" : "invalid base64");
  return 2;
}

static int l_base64(lua_State *L) { return b64enc(L, b64std, 1, "crypto.base64"); }
static int l_base64url(lua_State *L) { return b64enc(L, b64url, 0, "crypto.base64url"); }
static int l_unbase64(lua_State *L) { return b64dec(L, 0, "crypto.unbase64"); }
static int l_unbase64url(lua_State *L) { return b64dec(L, 1, "crypto.unbase64url"); }

static int l_equal(lua_State *L) {
  size_t la, lb;
  const char *a = arg_str(L, 1, "crypto.equal", &la);
  const char *b = arg_str(L, 2, "crypto.equal", &lb);
  lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
  return 1;
}

/* --- signatures (JWS algorithms) ---------------------------------------------------------------- */

enum { ALG_RS256, ALG_ES256, ALG_EDDSA };

static int arg_alg(lua_State *L, const char *fn) {
  size_t n;
  const char *a = arg_str(L, 1, fn, &n);
  if (strcmp(a, "RS256") == 0) return ALG_RS256;
  if (strcmp(a, "ES256") == 0) return ALG_ES256;
  if (strcmp(a, "EdDSA") == 0) return ALG_EDDSA;
  return bad_arg(L, 1, fn, "\"RS256\", \"ES256\" or \"EdDSA\" expected");
}

/* An encrypted key is refused, never prompted for (OpenSSL's default
 * callback would read a passphrase from the terminal). */
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

/* NULL and *err set when the key is unreadable or not of the algorithm's type. */
static EVP_PKEY *read_key(const char *pem, size_t len, int priv, int alg, const char **err) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio) {
    *err = "out of memory";
    return NULL;
  }
  EVP_PKEY *k = priv ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
  BIO_free(bio);
  if (!k) {
    ERR_clear_error();
    *err = priv ? "invalid private key (PEM expected, not encrypted)" : "invalid public key (PEM expected)";
    return NULL;
  }
  int id = EVP_PKEY_get_base_id(k), ok = 0;
  if (alg == ALG_RS256) ok = id == EVP_PKEY_RSA && EVP_PKEY_get_size(k) <= MAX_SIG;
  if (alg == ALG_ES256) ok = id == EVP_PKEY_EC && is_p256(k);
  if (alg == ALG_EDDSA) ok = id == EVP_PKEY_ED25519;
  if (!ok) {
    EVP_PKEY_free(k);
    *err = alg == ALG_RS256 ? "key is not an RSA key of at most 8192 bits" : alg == ALG_ES256 ? "key is not a P-256 EC key" : "key is not an Ed25519 key";
    return NULL;
  }
  return k;
}

static const char *arg_pem(lua_State *L, int i, const char *fn, size_t *len) {
  const char *pem = arg_str(L, i, fn, len);
  if (*len > MAX_PEM) bad_arg(L, i, fn, "PEM key larger than 16 KB");
  return pem;
}

static int l_sign(lua_State *L) {
  static const char fn[] = "crypto.sign";
  int alg = arg_alg(L, fn);
  size_t plen, mlen;
  const char *pem = arg_pem(L, 2, fn, &plen);
  const char *msg = arg_str(L, 3, fn, &mlen);
  const char *err = NULL;
  EVP_PKEY *k = read_key(pem, plen, 1, alg, &err);
  if (!k) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  unsigned char sig[MAX_SIG];
  size_t slen = sizeof sig;
  int ok = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx && EVP_DigestSignInit(ctx, NULL, alg == ALG_EDDSA ? NULL : EVP_sha256(), NULL, k) == 1 &&
      EVP_DigestSign(ctx, sig, &slen, (const unsigned char *)msg, mlen) == 1)
    ok = 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(k);
  if (ok && alg == ALG_ES256) { /* DER -> r||s */
    const unsigned char *p = sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)slen);
    ok = 0;
    if (es) {
      const BIGNUM *r, *s;
      ECDSA_SIG_get0(es, &r, &s);
      ok = BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32;
      slen = 64;
      ECDSA_SIG_free(es);
    }
  }
  if (!ok) {
    ERR_clear_error();
    return luaL_error(L, "%s: signing failed", fn);
  }
  lua_pushlstring(L, (const char *)sig, slen);
  return 1;
}

static int l_verify(lua_State *L) {
  static const char fn[] = "crypto.verify";
  int alg = arg_alg(L, fn);
  size_t plen, mlen, slen;
  const char *pem = arg_pem(L, 2, fn, &plen);
  const char *msg = arg_str(L, 3, fn, &mlen);
  const unsigned char *sig = (const unsigned char *)arg_str(L, 4, fn, &slen);
  const char *err = NULL;
  EVP_PKEY *k = read_key(pem, plen, 0, alg, &err);
  if (!k) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  unsigned char der[128];
  int ok = 0;
  if (alg == ALG_ES256) { /* r||s -> DER */
    if (slen != 64) goto done;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
      BN_free(r);
      BN_free(s);
      ECDSA_SIG_free(es);
      goto done;
    }
    int n = i2d_ECDSA_SIG(es, NULL);
    unsigned char *p = der;
    if (n > 0 && n <= (int)sizeof der) n = i2d_ECDSA_SIG(es, &p);
    else n = -1;
    ECDSA_SIG_free(es);
    if (n <= 0) goto done;
    sig = der;
    slen = (size_t)n;
  }
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx && EVP_DigestVerifyInit(ctx, NULL, alg == ALG_EDDSA ? NULL : EVP_sha256(), NULL, k) == 1 &&
      EVP_DigestVerify(ctx, sig, slen, (const unsigned char *)msg, mlen) == 1)
    ok = 1;
  EVP_MD_CTX_free(ctx);
done:
  EVP_PKEY_free(k);
  ERR_clear_error();
  lua_pushboolean(L, ok);
  return 1;
}

int cr_crypto_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"sha1", l_sha1},         {"sha256", l_sha256},       {"sha512", l_sha512},     {"md5", l_md5},
      {"hmac", l_hmac},         {"randomBytes", l_random}, {"uuid", l_uuid},         {"hex", l_hex},
      {"unhex", l_unhex},       {"base64", l_base64},       {"unbase64", l_unbase64}, {"base64url", l_base64url},
      {"unbase64url", l_unbase64url}, {"equal", l_equal},  {"sign", l_sign},         {"verify", l_verify},
      {NULL, NULL},
  };
  lua_createtable(L, 0, 16);
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
  return 1;
}
