/* jwtsign.h - making JSON Web Tokens: compact JWS (RFC 7515) signed with
 * Ed25519 ("EdDSA", RFC 8037), for the accounts' access tokens. The other
 * half, verification, is jwt.h's (the tokens made here verify there with the
 * public key as a JWKS entry, cr_jws_ed25519_jwk).
 *
 * Pure: no I/O. Ed25519 is deterministic, so a header, a payload and a key
 * always give the same token (the unit test checks RFC 8037 A.4's). */
#ifndef CR_JWTSIGN_H
#define CR_JWTSIGN_H

#include <stddef.h>

#include "buf.h"

/* base64url without padding (RFC 7515 §2), appended to out: 0, or -1 when out of memory. */
int cr_b64url_append(cr_buf_t *out, const unsigned char *data, size_t len);

/* Decodes base64url without padding into out (cap bytes): 0 and *outlen, or
 * -1 (not canonical base64url, or longer than cap). */
int cr_b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen);

/* Appends BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature)
 * to out, the signature Ed25519 under the 32-byte private key seed. header
 * and payload are taken as given (the caller makes them JSON). 0, or -1. */
int cr_jws_sign_ed25519(const unsigned char seed[32], const char *header, size_t hlen, const char *payload,
                        size_t plen, cr_buf_t *out);

/* The public key of seed: 0, or -1. */
int cr_ed25519_public(const unsigned char seed[32], unsigned char pub[32]);

/* Appends the public JWK of seed: {"kty":"OKP","crv":"Ed25519","x":...,
 * "kid":kid,"alg":"EdDSA","use":"sig"}. 0, or -1. */
int cr_jws_ed25519_jwk(const unsigned char seed[32], const char *kid, cr_buf_t *out);

#endif
