/* users.h - the accounts service (issue 17): a user directory in Redis,
 * Argon2id passwords (pwhash.h), EdDSA access tokens (authkeys.h), rotating
 * refresh tokens, confirmation and reset codes, brute-force throttling. One
 * cr_users_t per worker loop; the flows with their hooks are the trigger
 * layer's (core/trigger/http/accounts_api.c), this module does each step.
 *
 * Redis (every key under PREFIX{users}: so multi-key scripts stay on one
 * slot; the scripts are stdlib/redis/users_*.lua):
 *   login            hash  normalised login -> user id
 *   u:ID             hash  id, login, pw (PHC string), attrs (JSON object text),
 *                          createdAt (ms), confirmed 0|1, disabled 0|1
 *   ids              zset  every id (score 0, listed in id order)
 *   rt:SHA256        hash  a refresh token: uid, fam, used 0|1 (expires with it)
 *   fam:FAM          str   a family's user id, or "revoked"
 *   rtu:FAM          list  the family's 16 most recent used tokens' hashes (older rt: keys deleted)
 *   ufam:ID          zset  the user's families by last use, at most 64 (revoked on disable, reset, delete)
 *   code:PURPOSE:ID  hash  h (the code's SHA-256, "" once out of tries), tries (expires with the code)
 *   fail:a:LOGIN, fail:i:IP  hash n, until: the throttle (users_throttle.lua)
 *
 * Logins: leading and trailing whitespace trimmed; with an '@' an e-mail
 * address (lower-cased, at most 254 bytes, one '@', a local part of 1-64 and
 * a domain with a dot, printable ASCII without spaces, quotes, commas or
 * angle brackets), else a username (lower-cased, 3-64 of a-z 0-9 . _ -).
 * Passwords: at least min_password characters (UTF-8 code points), at most
 * CR_PWHASH_MAX_PASSWORD bytes, valid UTF-8, not one of a short list of the
 * most common passwords.
 *
 * Every callback comes once, on a later turn of the loop (never from inside
 * the call that started it), unless the op was cancelled. */
#ifndef CR_USERS_H
#define CR_USERS_H

#include <stddef.h>
#include <stdint.h>

#include "authkeys.h"
#include "buf.h"
#include "jwt.h"
#include "pwhash.h"
#include "redis.h"

#define CR_USERS_MAX_LOGIN 254
#define CR_USERS_MAX_ATTRS (16 * 1024) /* bytes of a user's attributes JSON */
#define CR_USERS_ID_LEN 32             /* hex characters */

/* The scripts, in this order, as indexes into the connection's script list. */
enum { CR_USERS_S_CREATE, CR_USERS_S_GET, CR_USERS_S_SET, CR_USERS_S_DELETE, CR_USERS_S_LIST,
       CR_USERS_S_RT, CR_USERS_S_CODE, CR_USERS_S_THROTTLE, CR_USERS_NSCRIPTS };
extern const char *const cr_users_script_names[CR_USERS_NSCRIPTS];

typedef struct {
  const char *prefix;          /* Redis key prefix ("cr:") */
  int scripts[CR_USERS_NSCRIPTS];
  cr_pwhash_params_t pw;       /* for new hashes */
  int min_password;            /* characters, default 8 */
  double access_ttl;           /* s, default 900 */
  double refresh_ttl;          /* s, default 30 days */
  double code_ttl;             /* s, default 900 */
  int code_tries;              /* wrong tries before a code is dropped, default 5 */
  const char *issuer;          /* iss of the access tokens, default "crescent" */
  int account_free;            /* failed sign-ins per login before the back-off, default 5 */
  int ip_free;                 /* per IP, default 20 */
  double lock_max;             /* s: the longest back-off, default 900 */
  double lock_window;          /* s: failures are forgotten this long after the last, default 3600 */
} cr_users_opts_t;

typedef struct {
  char id[CR_USERS_ID_LEN + 1];
  char login[CR_USERS_MAX_LOGIN + 1];
  char pw[CR_PWHASH_ENCODED_MAX];
  char *attrs;      /* JSON object text, NUL-terminated (owned by the op that hands it out) */
  size_t attrs_len;
  uint64_t created_ms;
  int confirmed, disabled;
} cr_user_t;

typedef struct {
  int status;            /* 0, or the HTTP status a client gets: 400 401 403 404 409 429 503 */
  const char *err;       /* a message fit for the client */
  long retry_after_ms;   /* 429 */
  const cr_user_t *user; /* the user the op found or made */
  const char *refresh;   /* a new refresh token */
  const char *code;      /* a new code (signup unconfirmed, code_new) */
  const cr_user_t *users; /* list: a page */
  int nusers;
  const char *cursor;    /* list: "" after the last page */
} cr_users_res_t;

typedef void (*cr_users_cb)(void *data, const cr_users_res_t *r);

typedef struct cr_users_s cr_users_t;
typedef struct cr_users_op_s cr_users_op_t;

/* keys is taken (freed with the service). NULL when out of memory. */
cr_users_t *cr_users_new(uv_loop_t *loop, cr_redis_t *redis, cr_authkeys_t *keys, const cr_users_opts_t *o);
void cr_users_free(cr_users_t *u);
cr_authkeys_t *cr_users_keys(cr_users_t *u);
const cr_users_opts_t *cr_users_opts(const cr_users_t *u);

/* Login and password rules (above): 0, or -1 with a message for the client. */
int cr_users_normalize_login(const char *in, size_t len, char *out, size_t outlen, const char **err);
int cr_users_check_password(const cr_users_t *u, const char *pw, size_t len, const char **err);
/* attrs: a JSON object of at most CR_USERS_MAX_ATTRS bytes, or (NULL, 0) for {}. */
int cr_users_check_attrs(const char *attrs, size_t len, const char **err);

/* The steps. Each returns NULL when out of memory (cb will not come). */
/* A new user (login already normalised, password and attrs checked by the caller or here). 409 when taken. */
cr_users_op_t *cr_users_signup(cr_users_t *u, const char *login, const char *pw, size_t pwlen, const char *attrs,
                               size_t alen, int confirmed, cr_users_cb cb, void *data);
/* Throttle (the attempt is counted against the login before the password is
 * checked, and the login's count cleared when it succeeds; a failure is
 * counted against the IP), look up, verify (an unknown login still costs one
 * hash). 401 wrong login or password, 429
 * throttled (retry_after_ms), 403 disabled or not confirmed. */
cr_users_op_t *cr_users_signin(cr_users_t *u, const char *login, const char *pw, size_t pwlen, const char *ip,
                               cr_users_cb cb, void *data);
/* By id (by_login 0) or by normalised login. 404 when not found. */
cr_users_op_t *cr_users_get(cr_users_t *u, const char *key, int by_login, cr_users_cb cb, void *data);
/* A refresh token starting a new family for the user: r->refresh. */
cr_users_op_t *cr_users_refresh_new(cr_users_t *u, const char *uid, cr_users_cb cb, void *data);
/* Rotates a refresh token: r->refresh the new one, r->user its user. 401
 * unknown/expired/revoked, or reused (the family is revoked); 403 disabled. */
cr_users_op_t *cr_users_refresh_rotate(cr_users_t *u, const char *token, size_t len, cr_users_cb cb, void *data);
/* Revokes a refresh token's family (sign-out). 0 even when unknown. */
cr_users_op_t *cr_users_signout(cr_users_t *u, const char *token, size_t len, cr_users_cb cb, void *data);
/* A new code for purpose "confirm" or "reset": r->code. */
cr_users_op_t *cr_users_code_new(cr_users_t *u, const char *uid, const char *purpose, cr_users_cb cb, void *data);
/* Uses a "confirm" code (the user becomes confirmed) or a "reset" one with
 * a new password (hashed first; every refresh family revoked). 400 wrong or
 * expired code (or the password's rule). */
cr_users_op_t *cr_users_code_use(cr_users_t *u, const char *uid, const char *purpose, const char *code,
                                 size_t clen, const char *newpw, size_t pwlen, cr_users_cb cb, void *data);
/* Sets attributes (JSON object text, NULL: unchanged), disabled (-1:
 * unchanged), confirmed (-1: unchanged). Disabling revokes the refresh
 * families. 404 when not found. */
cr_users_op_t *cr_users_update(cr_users_t *u, const char *uid, const char *attrs, size_t alen, int disabled,
                               int confirmed, cr_users_cb cb, void *data);
cr_users_op_t *cr_users_delete(cr_users_t *u, const char *uid, cr_users_cb cb, void *data);
/* A page of at most count (1..100) users after cursor ("" first). */
cr_users_op_t *cr_users_list(cr_users_t *u, const char *cursor, int count, cr_users_cb cb, void *data);
void cr_users_cancel(cr_users_op_t *op);

/* An access token for the user, extra claims (a JSON object's text, or
 * NULL) added except the registered ones crescent sets (iss, sub, aud, exp,
 * nbf, iat, jti, login, token_use). Appends to out; *expires_in its lifetime
 * in s. 0, or -1. Synchronous. */
int cr_users_access_token(cr_users_t *u, const cr_user_t *user, const char *extra, size_t elen, cr_buf_t *out,
                          double *expires_in);

/* Verifies an access token synchronously, for the gateway (`auth = "user"`):
 * EdDSA with one of the current keys (re-read at most once a second when
 * rotated), iss the issuer, not expired (5 s leeway). 0 and *out filled
 * (cr_jwt_claims_free), or -1 with a short reason in err. */
int cr_users_verify_access(cr_users_t *u, const char *tok, size_t len, cr_jwt_claims_t *out, char *err,
                           size_t errlen);

/* Appends the user's public JSON: {"id","login","attributes","createdAt" (ISO 8601),"confirmed","disabled"}. */
int cr_users_user_json(const cr_user_t *user, cr_buf_t *out);

#endif
