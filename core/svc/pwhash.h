/* pwhash.h - password hashing for the accounts service: Argon2id (Debian's
 * libargon2), run on libuv's thread pool so a sign-in storm never stalls the
 * loop that serves HTTP.
 *
 * Hashes are PHC strings ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash"), so a
 * hash made under older parameters still verifies after they change. A
 * verification compares in constant time (libargon2's argon2_verify). The
 * defaults are OWASP's recommendation for Argon2id: m = 19 MiB, t = 2, p = 1.
 *
 * Memory and CPU: each hash in flight holds m KiB on a pool thread; at most
 * CR_PWHASH_IN_FLIGHT run at once per worker process (the rest wait, in
 * order), so libuv's pool keeps threads for other work and the loop keeps
 * CPU to answer requests; a hashing thread runs as SCHED_BATCH. A caller that goes away
 * cancels its job: the callback then never comes (the work itself, if it
 * started, runs to its end and is dropped). */
#ifndef CR_PWHASH_H
#define CR_PWHASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct uv_loop_s uv_loop_t;

#define CR_PWHASH_DEFAULT_M 19456u /* KiB: 19 MiB */
#define CR_PWHASH_DEFAULT_T 2u
#define CR_PWHASH_DEFAULT_P 1u
#define CR_PWHASH_MAX_PASSWORD 1024 /* bytes: longer ones are refused before any work */
#define CR_PWHASH_ENCODED_MAX 160
/* Hashes on the pool at once per process; more wait in order. */
#define CR_PWHASH_IN_FLIGHT 2

typedef struct {
  uint32_t m_kib; /* memory, KiB (at least 8 * p) */
  uint32_t t;     /* passes, at least 1 */
  uint32_t p;     /* lanes, at least 1 */
} cr_pwhash_params_t;

typedef struct cr_pwhash_job_s cr_pwhash_job_t;

/* hash: ok 1 and encoded the PHC string; verify: ok 1 when the password
 * matches (encoded NULL). ok -1: it could not be done (err says why). Called
 * on the loop's thread. */
typedef void (*cr_pwhash_cb)(void *data, int ok, const char *encoded, const char *err);

/* Hashes pw under params with a fresh 16-byte salt. NULL when out of memory
 * or the loop refused the work (cb will not come). */
cr_pwhash_job_t *cr_pwhash_hash(uv_loop_t *loop, const cr_pwhash_params_t *params, const char *pw, size_t len,
                                cr_pwhash_cb cb, void *data);
/* Verifies pw against an encoded Argon2id hash (any parameters). */
cr_pwhash_job_t *cr_pwhash_verify(uv_loop_t *loop, const char *encoded, const char *pw, size_t len, cr_pwhash_cb cb,
                                  void *data);
/* The callback will not come. */
void cr_pwhash_cancel(cr_pwhash_job_t *j);

/* The same, synchronously (for tests and the command line). */
int cr_pwhash_hash_sync(const cr_pwhash_params_t *params, const char *pw, size_t len, char *out, size_t outlen);
int cr_pwhash_verify_sync(const char *encoded, const char *pw, size_t len);

#endif
