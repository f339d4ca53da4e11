/* jwtsign.c - compact JWS signed with Ed25519 (the contract is in jwtsign.h). */
#include "jwtsign.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <string.h>

#include "jsontext.h"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int cr_b64url_append(cr_buf_t *out, const unsigned char *d, size_t n) {
  if (cr_buf_reserve(out, (n + 2) / 3 * 4 + 1)) return -1;
  char *o = out->data + out->len;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
    *o++ = b64url[v >> 18];
    *o++ = b64url[(v >> 12) & 63];
    *o++ = b64url[(v >> 6) & 63];
    *o++ = b64url[v & 63];
  }
  if (n - i == 1) {
    unsigned v = (unsigned)d[i] << 16;
    *o++ = b64url[v >> 18];
    *o++ = b64url[(v >> 12) & 63];
  } else if (n - i == 2) {
    unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8;
    *o++ = b64url[v >> 18];
    *o++ = b64url[(v >> 12) & 63];
    *o++ = b64url[(v >> 6) & 63];
  }
  out->len = (size_t)(o - out->data);
  out->data[out->len] = '\0';
  return 0;
}

int cr_b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen) {
  if (n % 4 == 1) return -1;
  size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
  if (need > cap) return -1;
  unsigned v = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    const char *p = s[i] ? memchr(b64url, s[i], 64) : NULL;
    if (!p) return -1;
    v = v << 6 | (unsigned)(p - b64url);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(v >> bits);
    }
  }
  /* Canonical: the bits left over are zero. */
  if (v & ((1u << bits) - 1)) return -1;
  *outlen = o;
  return 0;
}

int cr_ed25519_public(const unsigned char seed[32], unsigned char pub[32]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
  size_t n = 32;
  int rc = k && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == 32 ? 0 : -1;
  EVP_PKEY_free(k);
  ERR_clear_error();
  return rc;
}

int cr_jws_sign_ed25519(const unsigned char seed[32], const char *header, size_t hlen, const char *payload,
                        size_t plen, cr_buf_t *out) {
  size_t start = out->len;
  if (cr_b64url_append(out, (const unsigned char *)header, hlen) || cr_buf_putc(out, '.') ||
      cr_b64url_append(out, (const unsigned char *)payload, plen))
    goto fail;
  unsigned char sig[64];
  size_t siglen = sizeof sig;
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = k && ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) == 1 &&
           EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)out->data + start, out->len - start) == 1 &&
           siglen == 64;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(k);
  ERR_clear_error();
  if (!ok || cr_buf_putc(out, '.') || cr_b64url_append(out, sig, siglen)) goto fail;
  return 0;
fail:
  out->len = start;
  return -1;
}

int cr_jws_ed25519_jwk(const unsigned char seed[32], const char *kid, cr_buf_t *out) {
  unsigned char pub[32];
  if (cr_ed25519_public(seed, pub)) return -1;
  size_t start = out->len;
  if (cr_buf_append_str(out, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"") || cr_b64url_append(out, pub, 32) ||
      cr_buf_append_str(out, "\",\"kid\":") || cr_json_escape(out, kid, strlen(kid)) ||
      cr_buf_append_str(out, ",\"alg\":\"EdDSA\",\"use\":\"sig\"}")) {
    out->len = start;
    return -1;
  }
  return 0;
}
