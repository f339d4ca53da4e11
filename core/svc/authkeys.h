/* authkeys.h - the accounts' token-signing keys: Ed25519 keys crescent makes
 * itself and keeps in a file under the data folder (--data), shared by the
 * workers (and the command line) of one server.
 *
 * The file (DIR/accounts/keys.json, mode 0600) lists keys with their kid and
 * creation time; the newest signs. Rotation adds a new key: the ones before
 * it still verify for the grace period after they were replaced, then are
 * dropped at the next rotation (and never accepted past their grace in the
 * meantime). Rotation happens when the newest key is older than the period
 * (checked by whoever holds the keys, at most once a second), or on demand
 * (cr_authkeys_rotate, `crescent accounts rotate-key`). Every writer holds
 * an flock on DIR/accounts/keys.lock and replaces the file by rename, so two
 * workers noticing the same due rotation make one key, and a reader never
 * sees half a file.
 *
 * A holder re-reads the file when it changed (its mtime, size or inode),
 * checked at most once a second: a rotation made elsewhere is seen within a
 * second. Verification is synchronous and pure (jwt.h on the cached keys). */
#ifndef CR_AUTHKEYS_H
#define CR_AUTHKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "jwt.h"

#define CR_AUTHKEYS_MAX 16

typedef struct cr_authkeys_s cr_authkeys_t;

typedef struct {
  double rotate_after; /* s: the newest key's age that makes a new one (0: only on demand) */
  double grace;        /* s: a replaced key still verifies this long */
} cr_authkeys_opts_t;

/* Opens (and makes, the first time) the keys under data_dir. NULL with err. */
cr_authkeys_t *cr_authkeys_open(const char *data_dir, const cr_authkeys_opts_t *o, char *err, size_t errlen);
void cr_authkeys_free(cr_authkeys_t *k);

/* Re-reads a changed file and rotates a due key; cheap when called often
 * (does anything at most once a second, unless force). 0, or -1 with err
 * (the keys held stay in use). */
int cr_authkeys_refresh(cr_authkeys_t *k, int force, char *err, size_t errlen);
/* Adds a new key now (under the lock). 0, or -1 with err; kid_out (may be
 * NULL) gets the new key's kid. */
int cr_authkeys_rotate(cr_authkeys_t *k, char *kid_out, size_t kidlen, char *err, size_t errlen);

/* Signs header.payload with the current key: {"alg":"EdDSA","typ":"JWT","kid":...}. 0, or -1. */
int cr_authkeys_sign(cr_authkeys_t *k, const char *payload, size_t plen, cr_buf_t *out);
/* The key set that verifies (current and in-grace keys), for jwt.h. Valid until the next refresh. */
const cr_jwt_keys_t *cr_authkeys_verifier(cr_authkeys_t *k);
/* The JWKS text of the same keys (public parts only), NUL-terminated; *len its bytes. */
const char *cr_authkeys_jwks(cr_authkeys_t *k, size_t *len);
/* The current key's kid. */
const char *cr_authkeys_kid(const cr_authkeys_t *k);

#endif
