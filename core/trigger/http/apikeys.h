/* apikeys.h - API keys on gateway routes (auth = "apikey"), checked in the
 * gateway before an instance is taken (gwauth.c's CR_AUTH_APIKEY case).
 *
 * A key is "crk_" and 43 base64url characters (32 bytes from getrandom):
 * CR_APIKEY_LEN characters in all. It is shown once, when it is made
 * (keys_api.c); Redis holds only its SHA-256 (hex) and a record under it
 * (stdlib/redis/apikey_admin.lua has the layout, all under one hash tag
 * "{keys}" after the server's prefix).
 *
 * A request brings it in X-Api-Key or, failing that, Authorization: Bearer.
 * gwauth.c calls it through cr_gwauth_opts_t.apikey_check, which the
 * gateway sets (this module uses gwauth's identity and refusals).
 * The answers (gwauth.h's rules, JSON {"error", "requestId"}):
 *   no key                          401 "missing credentials", WWW-Authenticate
 *   not a key's shape, unknown,
 *   revoked                         401 "invalid API key", WWW-Authenticate
 *   valid, function not in scope    403 "this key may not call this function"
 *   past its plan's rate            429 "rate limit exceeded", Retry-After, RateLimit-Policy, RateLimit
 *   past its plan's quota           429 "quota exceeded", Retry-After (to the period's end), the same
 *   Redis unreachable or failing    503 "authentication unavailable", Retry-After: 1 (fail closed;
 *                                   counted in authUnavailable / crescent_auth_unavailable_total)
 * The challenge is `ApiKey realm="crescent", Bearer realm="crescent"`.
 *
 * Each request costs one Redis round trip (apikey_check.lua: the record,
 * the plan's rate and quota, the count), so a revocation is seen by the
 * very next request on every worker and node. What a worker keeps of a key
 * is only what never changes while it exists (its name, scopes and plan
 * name, by its hash: a key is never edited, only revoked), so the scope is
 * checked before anything is counted; a hash seen for the first time costs
 * one more round trip (apikey_check's "peek"). lastUsed is written by that
 * same script at most once a minute per key per worker.
 *
 * Scopes: a key may call every function (no --functions), or those whose
 * name matches one of its comma-separated patterns: a name ("reports"), or
 * a glob in which '*' matches any run of characters within one path
 * segment: "orders/" then '*' matches orders/list, not orders nor
 * orders/a/b; '*' alone matches every top-level function. (The README
 * spells the patterns out; a C comment cannot hold a slash before a star.) */
#ifndef CR_APIKEYS_H
#define CR_APIKEYS_H

#include <stddef.h>

#include "buf.h"
#include "gwauth.h"
#include "redis.h"
#include "registry.h"
#include "shm.h"

#define CR_APIKEY_PREFIX "crk_"
#define CR_APIKEY_LEN 47     /* "crk_" + 43 base64url characters (32 bytes) */
#define CR_APIKEY_NAME_MAX 64
#define CR_APIKEY_SCOPES_MAX 32       /* patterns per key */
#define CR_APIKEY_PATTERN_MAX 255     /* bytes per pattern (a function name's limit) */

/* --- the pure parts (unit-tested) ------------------------------------------------------------- */

/* Is key (len bytes) of a key's shape ("crk_" and 43 base64url characters)? */
int cr_apikey_wellformed(const char *key, size_t len);
/* A new key from the OS's randomness, NUL-terminated: 0, or -1 when getrandom failed. */
int cr_apikey_make(char out[CR_APIKEY_LEN + 1]);
/* Its SHA-256 in lower-case hex, NUL-terminated. */
void cr_apikey_hash(const char *key, size_t len, char hex[65]);
/* Is name a valid key or plan name: 1-64 of [A-Za-z0-9._-], starting with a letter or digit? */
int cr_apikey_name_ok(const char *name, size_t len);
/* Does name match pattern ('*': any run of characters other than '/')? */
int cr_apikey_glob(const char *pat, size_t plen, const char *name, size_t nlen);
/* Reads a list of scopes ("orders/x, reports": spaces around the commas
 * ignored) into out as a comma-joined list; an empty list (or only spaces)
 * is no scope: every function. 0, or -1 with err: an empty pattern between
 * commas, a character a function name never has (control, space, beyond
 * ASCII), more than CR_APIKEY_SCOPES_MAX patterns or a longer one. */
int cr_apikey_scopes_parse(const char *list, size_t len, cr_buf_t *out, char *err, size_t errlen);
/* May a key with scopes (as cr_apikey_scopes_parse wrote them) call fn? */
int cr_apikey_in_scope(const char *scopes, const char *fn);

/* --- the check --------------------------------------------------------------------------------- */

typedef struct cr_apikeys_s cr_apikeys_t;

/* redis NULL: every check answers 503. prefix: the server's key prefix. */
cr_apikeys_t *cr_apikeys_new(cr_redis_t *redis, const char *prefix, cr_shm_t *shm);
/* Cancels the checks that wait (their callbacks do not run). */
void cr_apikeys_free(cr_apikeys_t *k);
/* Checks req's key for fn (version ver, held by the caller until cb runs):
 * cb(data, 1, NULL) when it answered req, cb(data, 0, identity) when it
 * passed; exactly once, now or when Redis answers (unless k is freed). */
void cr_apikeys_check(cr_apikeys_t *k, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_gwauth_cb cb,
                      void *data);
/* The same as cr_gwauth_opts_t.apikey_check (k a cr_apikeys_t). */
void cr_apikeys_check_hook(void *k, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_gwauth_cb cb,
                           void *data);

#endif
