/* gwauth.h - auth on routes: who is calling, decided in the gateway before
 * anything else runs for the request (after a CORS preflight, which never
 * carries credentials).
 *
 * A function's `auth` setting (settings.h cr_auth_spec_t), or the server's
 * --default-auth when it has none, picks the method:
 *   none        public: no identity
 *   jwt         a bearer JWT verified against the function's keys or secret
 *               (jwt.h): event.auth = { method = "jwt", sub =, claims = }
 *   apikey      an API key (X-Api-Key or Authorization: Bearer), looked up
 *               in Redis: event.auth = { method = "apikey", sub = key name,
 *               key = key name }
 *   authorizer  a function's decision, cached by identity (authorizer.h):
 *               event.auth = { method = "authorizer", sub = principal,
 *               context = }
 *   user        a crescent accounts access token: { method = "user", sub =,
 *               claims = }
 * Answers when it refuses (JSON {"error": ..., "requestId": ...}, with the
 * function's CORS headers): 401 with WWW-Authenticate for missing
 * credentials, 401 for invalid or revoked ones, 403 for valid ones not
 * allowed to call this function, 429 past an API key's plan, 503 when the
 * route's auth cannot be checked (misconfigured keys, an authorizer that
 * is missing or fails). What failed beyond that is logged, never told the client. */
#ifndef CR_GWAUTH_H
#define CR_GWAUTH_H

#include <stddef.h>

#include "http.h"
#include "identity.h"
#include "redis.h"
#include "registry.h"
#include "settings.h"
#include "shm.h"

typedef struct cr_gwauth_s cr_gwauth_t;
typedef struct cr_fncalls_s cr_fncalls_t;

typedef struct {
  cr_registry_t *registry; /* the functions folder (JWT key files are read from it) */
  cr_redis_t *redis;       /* API keys, or NULL */
  const char *prefix;      /* Redis key prefix */
  cr_shm_t *shm;           /* counters, or NULL */
  cr_fncalls_t *fncalls;   /* runs authorizer functions, or NULL */
  cr_auth_kind_t default_kind; /* for functions without the setting: CR_AUTH_NONE or CR_AUTH_APIKEY */
  /* auth = "user": verifies a crescent access token (tok, len bytes): 0 with out's principal and
   * json (the claims, malloc'd) filled; -1 with err (for the log) for a token refused, -2 when it
   * cannot be checked (accounts off: 503). NULL: accounts are off. */
  int (*verify_user)(void *ud, const char *tok, size_t len, cr_identity_t *out, char *err, size_t errlen);
  void *verify_user_ud;
  /* auth = "apikey": checks req's key as cr_gwauth_check does (apikeys.h; given by the gateway,
   * since apikeys uses this module), or NULL (503) */
  void (*apikey_check)(void *ctx, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_gwauth_cb cb,
                       void *data);
  void *apikey_ctx;
} cr_gwauth_opts_t;

/* NULL when out of memory. */
cr_gwauth_t *cr_gwauth_new(const cr_gwauth_opts_t *opts);
/* Cancels the checks that wait (their callbacks do not run). */
void cr_gwauth_free(cr_gwauth_t *a);

/* The method that applies to ver: its setting, or the default (never CR_AUTH_DEFAULT). */
cr_auth_kind_t cr_gwauth_kind(const cr_gwauth_t *a, const cr_fnver_t *ver);

/* Checks req against the auth of fn's version ver (held by the caller until
 * cb runs). cb runs exactly once, now or later (unless a is freed first). */
void cr_gwauth_check(cr_gwauth_t *a, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_gwauth_cb cb,
                     void *data);

#endif
