/* sha1.h - SHA-1 of a buffer, as hex. Used to name Lua scripts for Redis'
 * EVALSHA without asking Redis first (FIPS 180-4). Not for security. */
#ifndef CR_SHA1_H
#define CR_SHA1_H

#include <stddef.h>

/* Writes 40 hex digits and a NUL into out. */
void cr_sha1_hex(const void *data, size_t len, char out[41]);

#endif
