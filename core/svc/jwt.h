/* jwt.h - verifying JSON Web Tokens (RFC 7519) for the HTTP gateway's
 * `auth = { jwt = ... }` setting: pure (no I/O, no loop), OpenSSL for the
 * signatures as stdlib/crypto.c does, jsonread for the JSON.
 *
 * Keys: a JWKS document (RFC 7517: RSA n/e, EC P-256 x/y, OKP Ed25519 x;
 * "use" other than "sig" skipped, a key's "alg" pins it; a key of another
 * kty or pinned to an algorithm not supported here is skipped; "oct" keys
 * are refused: a shared secret comes from cr_jwt_keys_secret, never from a
 * key file), one PEM public key (SPKI, "BEGIN PUBLIC KEY"), or an HS256
 * secret of at least 32 bytes. RSA keys have 2048 to 8192 bits; EC points
 * are checked to be on the curve. A JWKS holds at most CR_JWT_MAX_KEYS
 * entries (skipped ones counted), and at least one usable key. Private
 * members ("d", ...) are ignored, and so is "key_ops". A key set is
 * read-only once made: threads may share one (OpenSSL allows concurrent
 * operations on an EVP_PKEY nobody modifies).
 *
 * A token is accepted only when all of these hold:
 *   - it is a compact JWS: three base64url parts (no padding, canonical),
 *     at most max_len bytes (default CR_JWT_DEFAULT_MAX_LEN);
 *   - its header is a JSON object with "alg" one of RS256, ES256, EdDSA,
 *     HS256 and allowed by the options ("none" is never accepted, in any
 *     case); "typ", if present, is "JWT" or "at+jwt" (any case); no "crit";
 *     "kid", if present, a string. Embedded keys (jwk, jku, x5u, x5c) are
 *     never used;
 *   - the signature verifies with a key of the alg's type (an RSA, EC or
 *     Ed25519 key never serves as an HMAC secret, a secret never verifies
 *     RS/ES/EdDSA). With a kid, the keys with that kid are tried, or when
 *     none has it the keys that have no kid (a single PEM key or secret);
 *     without one, every key of the alg's type: at most CR_JWT_MAX_TRIES.
 *     ES256 signatures are JOSE's 64-byte r||s;
 *   - the payload is a JSON object; exp, nbf, iat, when present, numbers;
 *     exp > now - leeway, nbf <= now + leeway; iss, sub strings; aud a
 *     string or an array of strings; iss equal to the issuer and aud
 *     holding the audience when the options name them.
 * Errors are short texts for the server log; which check failed is told,
 * never a key or the token. */
#ifndef CR_JWT_H
#define CR_JWT_H

#include <stddef.h>

#define CR_JWT_MAX_KEYS 64
#define CR_JWT_MAX_TRIES 16
#define CR_JWT_DEFAULT_MAX_LEN 8192
/* Key texts (JWKS or PEM) longer than this are refused. */
#define CR_JWT_MAX_KEYS_TEXT (256 * 1024)

typedef struct cr_jwt_keys_s cr_jwt_keys_t;
/* From a JWKS document or one PEM public key; NULL with err on anything
 * malformed (err says what, naming the key: "keys[2]: EC curve is not P-256"). */
cr_jwt_keys_t *cr_jwt_keys_parse(const char *text, size_t len, char *err, size_t errlen);
/* An HS256 shared secret (at least 32 bytes, at most 4096, else NULL with err). */
cr_jwt_keys_t *cr_jwt_keys_secret(const char *secret, size_t len, char *err, size_t errlen);
void cr_jwt_keys_free(cr_jwt_keys_t *k);
/* How many keys were kept (skipped ones not counted). */
size_t cr_jwt_keys_count(const cr_jwt_keys_t *k);

#define CR_JWT_RS256 1u
#define CR_JWT_ES256 2u
#define CR_JWT_EDDSA 4u
#define CR_JWT_HS256 8u
typedef struct {
  unsigned algorithms;  /* allowed CR_JWT_* bits (never "none"); 0 allows nothing */
  const char *issuer;   /* NULL: not checked; else iss must equal */
  const char *audience; /* NULL: not checked; else aud (string or array) must contain it */
  double leeway;        /* seconds for exp/nbf (a negative one counts as 0) */
  double now;           /* seconds since the epoch */
  size_t max_len;       /* token bytes (0: CR_JWT_DEFAULT_MAX_LEN) */
} cr_jwt_opts_t;
typedef struct {
  char sub[256];     /* "" when absent (sub must be a string without NULs, of at most 255 bytes, when present) */
  char *claims_json; /* the payload JSON text, malloc'd, NUL-terminated (the gateway decodes it into event.auth.claims) */
  size_t claims_len;
  double exp; /* 0 when absent */
} cr_jwt_claims_t;
/* 0 and *out filled (free with cr_jwt_claims_free), or -1 with err set to a
 * short reason ("expired", "not yet valid", "bad signature", "algorithm not
 * allowed", "unknown key id", "no key for algorithm", "wrong issuer", "wrong
 * audience", "malformed token", "token too long", "unsupported token type",
 * "critical header not supported", "out of memory"); *out is then empty (and
 * safe to free). */
int cr_jwt_verify(const cr_jwt_keys_t *keys, const cr_jwt_opts_t *o, const char *token, size_t len,
                  cr_jwt_claims_t *out, char *err, size_t errlen);
void cr_jwt_claims_free(cr_jwt_claims_t *c);

#endif
