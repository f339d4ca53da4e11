/* crypto.h - crescent.crypto: hashes, HMAC, random bytes, UUIDs, encodings,
 * constant-time comparison and JWS signatures, all through OpenSSL.
 *
 * Contracts: every result is a Lua string made in the calling state (so
 * within the function's memory meter); what OpenSSL allocates is freed
 * before the call returns or raises. Wrong arguments raise errors naming
 * the argument; a bad signature is false, a bad key nil, err. */
#ifndef CR_CRYPTO_H
#define CR_CRYPTO_H

#include <lua.h>

/* Pushes the crescent.crypto module table (a package.preload loader). */
int cr_crypto_open(lua_State *L);

#endif
