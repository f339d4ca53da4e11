/* authorizer.h - auth = { authorizer = "auth/check", ttl = 300, identity = "header.authorization" }:
 * a function decides who may call a route (Lambda's request authorizers).
 *
 * A request's identity is the value of the header NAME (repeated fields
 * joined with ", ", as event.headers has them) or of the query parameter
 * NAME (its first occurrence, percent-decoded). Missing or empty: 401 with
 * WWW-Authenticate, and no call. Otherwise the authorizer function runs
 * through the "invoke" trigger (fncall.h: its limits, its report line with
 * the request's id as parentRequestId) with the event
 *   { source = "authorizer", identity =, method =, path =, headers = }
 * and its answer decides (cr_authz_parse):
 *   { allow = true, principal = "user-1", context = { ... } }   passes:
 *       event.auth = { method = "authorizer", sub = principal, context = }
 *   { allow = false }                                             403
 * Anything else fails closed with 503 {"error":"authorization unavailable"}
 * and an error line naming the route's function, the authorizer and its
 * request id: it raised, timed out, was not found or throttled, or answered
 * something that is not one of the two (see cr_authz_parse for the rules).
 * Its time is its own timeout, at most CR_AUTHZ_TIMEOUT_S.
 *
 * Decisions, allow and deny, are kept per worker for the route's ttl
 * seconds (0: never kept), keyed by the authorizer's name, its version
 * label and the SHA-256 of the identity (never the identity itself), in a
 * table bounded in entries and bytes, least recently used out first. A
 * decision is the authorizer's, not the route's: every route with the same
 * authorizer uses it, each for at most its own ttl (as API Gateway's
 * authorizer cache, an authorizer that decides by path or method needs
 * ttl = 0). A new version of the authorizer starts with nothing kept.
 * Failures are never kept. Requests with the same identity that come while
 * its call runs wait for that call (at most CR_AUTHZ_MAX_WAITERS of them;
 * past that, 503) instead of making their own, when their ttl is not 0.
 *
 * Counters per route function (shm.h): authorizer calls made, requests
 * decided without a call of their own (kept, or waiting for one), 403s and
 * fail-closed 503s. */
#ifndef CR_AUTHORIZER_H
#define CR_AUTHORIZER_H

#include <stddef.h>

#include "identity.h"
#include "shm.h"

typedef struct cr_fncalls_s cr_fncalls_t;

#define CR_AUTHZ_TIMEOUT_S 5
#define CR_AUTHZ_MAX_PRINCIPAL 255
#define CR_AUTHZ_MAX_CONTEXT (8u * 1024) /* bytes of the context's JSON text */
#define CR_AUTHZ_MAX_ANSWER (64u * 1024) /* bytes of the whole answer's JSON text */
#define CR_AUTHZ_MAX_WAITERS 1000
#define CR_AUTHZ_CACHE_ENTRIES 10000
#define CR_AUTHZ_CACHE_BYTES (8u * 1024 * 1024)

typedef struct cr_authz_s cr_authz_t;

typedef struct {
  cr_registry_t *registry; /* the authorizer's current version (the cache key) */
  cr_fncalls_t *fncalls;   /* runs the authorizers, or NULL (then every check is a 503) */
  cr_shm_t *shm;           /* counters, or NULL */
  size_t max_entries;      /* 0: CR_AUTHZ_CACHE_ENTRIES */
  size_t max_bytes;        /* 0: CR_AUTHZ_CACHE_BYTES */
} cr_authz_opts_t;

/* NULL when out of memory. */
cr_authz_t *cr_authz_new(const cr_authz_opts_t *opts);
/* Cancels the calls in flight; the checks waiting for them never call back. */
void cr_authz_free(cr_authz_t *z);

/* Checks req against ver's auth = { authorizer = ... } (gwauth.h's cr_gwauth_check contract:
 * cb exactly once, now or later, unless z is freed first). */
void cr_authz_check(cr_authz_t *z, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_gwauth_cb cb,
                    void *data);

/* --- the pure parts (unit tests) --------------------------------------------------------------- */

typedef struct {
  int allow;
  char principal[CR_AUTHZ_MAX_PRINCIPAL + 1];
  char *context; /* allow: the context's JSON object text, malloc'd ("{}" when it gave none) */
  size_t context_len;
} cr_authz_decision_t;

/* Reads an authorizer's answer (the JSON text of its return value, len 0
 * for nil): 0 with *out, or -1 with err (a short reason for the log) when it
 * is neither decision. The rules: a JSON object of at most
 * CR_AUTHZ_MAX_ANSWER bytes whose `allow` is exactly true or false (not 1,
 * not "true"); with false nothing else is read; with true, `principal` is a
 * string of 1 to CR_AUTHZ_MAX_PRINCIPAL bytes without NUL, and `context`
 * absent, null, or an object whose JSON text is at most CR_AUTHZ_MAX_CONTEXT
 * bytes. Other members are ignored. CR_ENOMEM-style failures are -1 too
 * ("out of memory"). */
int cr_authz_parse(const char *json, size_t len, cr_authz_decision_t *out, char *err, size_t errlen);
void cr_authz_decision_free(cr_authz_decision_t *d);

/* The table of decisions alone (what cr_authz_check uses; no call is made):
 * keeps d for the authorizer's version and identity, or finds what is kept
 * there younger than ttl seconds (copied into *out, its context malloc'd):
 * 1 found, 0 not. cr_authz_kept_count: how many are kept, and their bytes. */
void cr_authz_keep(cr_authz_t *z, const char *authorizer, const char *version, const char *identity, size_t ilen,
                   const cr_authz_decision_t *d);
int cr_authz_kept(cr_authz_t *z, const char *authorizer, const char *version, const char *identity, size_t ilen,
                  double ttl, cr_authz_decision_t *out);
size_t cr_authz_kept_count(const cr_authz_t *z, size_t *bytes);

/* The identity of req for spec ("header.NAME" or "query.NAME"), into out
 * (replaced): 0, or -1 when req has none or an empty one (or out of memory). */
int cr_authz_identity(const cr_http_req_t *req, const char *spec, cr_buf_t *out);

#endif
