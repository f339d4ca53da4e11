/* gwauth.c - auth on routes (gwauth.h). */
#include "gwauth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "authorizer.h"
#include "buf.h"
#include "clock.h"
#include "error.h"
#include "jwt.h"
#include "log.h"

/* A function's JWT keys (auth = { jwt = ... }), by function slot: made for
 * one version, from its key file (looked at again, by stat, at most once a
 * second: a changed file is read again) or its secret's environment
 * variable. keys NULL: unusable (err says why, logged once). */
typedef struct {
  unsigned version;
  int made;
  cr_jwt_keys_t *keys;
  struct timespec mtime;
  off_t size;
  ino_t ino;
  uint64_t checked_ns;
  char err[240];
} jwt_keys_entry_t;

struct cr_gwauth_s {
  cr_gwauth_opts_t opts;
  jwt_keys_entry_t *jwt; /* by function slot */
  int njwt;
  cr_authz_t *authz;     /* authorizer functions: their calls and decisions */
};

cr_gwauth_t *cr_gwauth_new(const cr_gwauth_opts_t *opts) {
  cr_gwauth_t *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  if (opts) a->opts = *opts;
  if (a->opts.default_kind != CR_AUTH_APIKEY) a->opts.default_kind = CR_AUTH_NONE;
  cr_authz_opts_t zo = {.registry = a->opts.registry, .fncalls = a->opts.fncalls, .shm = a->opts.shm};
  if (!(a->authz = cr_authz_new(&zo))) {
    free(a);
    return NULL;
  }
  return a;
}

void cr_gwauth_free(cr_gwauth_t *a) {
  if (!a) return;
  cr_authz_free(a->authz);
  for (int i = 0; i < a->njwt; i++) cr_jwt_keys_free(a->jwt[i].keys);
  free(a->jwt);
  free(a);
}

cr_auth_kind_t cr_gwauth_kind(const cr_gwauth_t *a, const cr_fnver_t *ver) {
  cr_auth_kind_t k = ver->settings.auth.kind;
  return k == CR_AUTH_DEFAULT ? a->opts.default_kind : k;
}

/* --- auth = { jwt = ... } ------------------------------------------------------------------- */

static jwt_keys_entry_t *jwt_entry(cr_gwauth_t *g, int slot) {
  if (slot < 0) return NULL;
  if (slot >= g->njwt) {
    int n = g->njwt ? g->njwt : 16;
    while (n <= slot) n *= 2;
    jwt_keys_entry_t *e = realloc(g->jwt, sizeof *e * (size_t)n);
    if (!e) return NULL;
    memset(e + g->njwt, 0, sizeof *e * (size_t)(n - g->njwt));
    g->jwt = e;
    g->njwt = n;
  }
  return &g->jwt[slot];
}

/* The keys of ver's function, (re)made when its version or key file changed. */
static const cr_jwt_keys_t *jwt_keys(cr_gwauth_t *g, const cr_fn_t *fn, const cr_fnver_t *ver, const char **why) {
  const cr_auth_spec_t *a = &ver->settings.auth;
  jwt_keys_entry_t *e = jwt_entry(g, fn->slot);
  if (!e) {
    *why = "out of memory";
    return NULL;
  }
  uint64_t now = cr_clock_coarse_ns();
  int remake = !e->made || e->version != ver->number;
  char path[1400];
  struct stat st;
  int have_st = 0;
  if (a->keys_file && (remake || now - e->checked_ns >= 1000000000ull)) {
    e->checked_ns = now;
    snprintf(path, sizeof path, "%s/%s", g->opts.registry ? g->opts.registry->root : ".", a->keys_file);
    have_st = stat(path, &st) == 0;
    /* Still missing (size -1) is no change: one error line per change, not one per look. */
    if (!have_st ? e->size != -1
                 : (st.st_mtim.tv_sec != e->mtime.tv_sec || st.st_mtim.tv_nsec != e->mtime.tv_nsec ||
                    st.st_size != e->size || st.st_ino != e->ino))
      remake = 1;
  }
  if (!remake) {
    *why = e->err;
    return e->keys;
  }
  cr_jwt_keys_free(e->keys);
  e->keys = NULL;
  e->made = 1;
  e->version = ver->number;
  e->checked_ns = now;
  char err[200] = "";
  if (a->keys_file) {
    e->mtime = have_st ? st.st_mtim : (struct timespec){0, 0};
    e->size = have_st ? st.st_size : -1;
    e->ino = have_st ? st.st_ino : 0;
    char *text = NULL;
    size_t len = 0;
    int rc = have_st ? cr_read_file(path, CR_JWT_MAX_KEYS_TEXT, &text, &len) : -1;
    if (rc) snprintf(err, sizeof err, "cannot read %s (%s)", a->keys_file, have_st ? cr_strerror(rc) : "missing");
    else e->keys = cr_jwt_keys_parse(text, len, err, sizeof err);
    free(text);
  } else {
    const char *secret = getenv(a->secret_env);
    if (!secret) snprintf(err, sizeof err, "the environment variable %s is not set", a->secret_env);
    else e->keys = cr_jwt_keys_secret(secret, strlen(secret), err, sizeof err);
  }
  snprintf(e->err, sizeof e->err, "%s", e->keys ? "" : err);
  if (!e->keys) cr_log(CR_LOG_ERROR, fn->name, NULL, "auth: JWT keys unusable: %s", e->err);
  *why = e->err;
  return e->keys;
}

/* The bearer token of req (trimmed), or NULL. */
static const char *bearer_token(const cr_http_req_t *req, size_t *len) {
  const cr_http_header_t *h = cr_http_req_header(req, "authorization", 13);
  if (!h || h->value_len <= 7 || strncasecmp(h->value, "bearer ", 7) != 0) return NULL;
  const char *tok = h->value + 7;
  size_t tl = h->value_len - 7;
  while (tl && *tok == ' ') tok++, tl--;
  while (tl && tok[tl - 1] == ' ') tl--;
  *len = tl;
  return tl ? tok : NULL;
}

/* auth = "user": a crescent accounts access token. 0 with *out, or -1 when it answered. */
static int check_user(cr_gwauth_t *g, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver,
                      cr_identity_t **out) {
  size_t tl = 0;
  const char *tok = bearer_token(req, &tl);
  if (!tok) {
    cr_gwauth_refuse(req, ver, 401, "Bearer realm=\"crescent\"", "missing credentials", 0);
    return -1;
  }
  cr_identity_t *id = g->opts.verify_user ? calloc(1, sizeof *id) : NULL;
  if (!id && g->opts.verify_user) {
    cr_http_respond_error(req, 503, "server out of memory");
    return -1;
  }
  char err[160] = "auth = \"user\" needs the accounts service (--accounts)";
  int rc = id ? g->opts.verify_user(g->opts.verify_user_ud, tok, tl, id, err, sizeof err) : -2;
  if (rc) {
    cr_identity_free(id);
    if (rc == -2) {
      /* The server's fault, not the token's: said once per request in the log, never to the client. */
      cr_log(CR_LOG_ERROR, fn->name, req->id, "auth: %s", err);
      cr_gwauth_refuse(req, ver, 503, NULL, "authentication is misconfigured", 0);
    } else {
      cr_log(CR_LOG_INFO, fn->name, req->id, "auth: token refused: %s", err);
      cr_gwauth_refuse(req, ver, 401, "Bearer realm=\"crescent\", error=\"invalid_token\"", "invalid token", 0);
    }
    return -1;
  }
  id->method = CR_AUTH_USER;
  *out = id;
  return 0;
}

/* Checks req's bearer token for ver's function: 0 with *out (NULL or the
 * identity), or -1 when it answered (401, 503). */
static int check_jwt(cr_gwauth_t *g, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_identity_t **out) {
  size_t tl = 0;
  const char *tok = bearer_token(req, &tl);
  if (!tok || !tl) {
    cr_gwauth_refuse(req, ver, 401, "Bearer realm=\"crescent\"", "missing credentials", 0);
    return -1;
  }
  const char *why;
  const cr_jwt_keys_t *keys = jwt_keys(g, fn, ver, &why);
  if (!keys) {
    cr_gwauth_refuse(req, ver, 503, NULL, "authentication is misconfigured", 0);
    return -1;
  }
  const cr_auth_spec_t *a = &ver->settings.auth;
  cr_jwt_opts_t o = {.algorithms = a->algorithms, .issuer = a->issuer, .audience = a->audience,
                     .leeway = a->leeway, .now = (double)cr_wall_ms() / 1000.0};
  cr_jwt_claims_t c;
  char err[160];
  if (cr_jwt_verify(keys, &o, tok, tl, &c, err, sizeof err)) {
    cr_log(CR_LOG_INFO, fn->name, req->id, "auth: token refused: %s", err);
    cr_gwauth_refuse(req, ver, 401, "Bearer realm=\"crescent\", error=\"invalid_token\"", "invalid token", 0);
    return -1;
  }
  cr_identity_t *id = calloc(1, sizeof *id);
  if (!id) {
    cr_jwt_claims_free(&c);
    cr_http_respond_error(req, 503, "server out of memory");
    return -1;
  }
  id->method = CR_AUTH_JWT;
  snprintf(id->principal, sizeof id->principal, "%s", c.sub);
  id->json = c.claims_json; /* taken over */
  id->json_len = c.claims_len;
  c.claims_json = NULL;
  cr_jwt_claims_free(&c);
  *out = id;
  return 0;
}

void cr_gwauth_check(cr_gwauth_t *a, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_gwauth_cb cb,
                     void *data) {
  cr_identity_t *id = NULL;
  switch (cr_gwauth_kind(a, ver)) {
  case CR_AUTH_DEFAULT:
  case CR_AUTH_NONE:
    cb(data, 0, NULL);
    return;
  case CR_AUTH_JWT:
    if (check_jwt(a, req, fn, ver, &id)) cb(data, 1, NULL);
    else cb(data, 0, id);
    return;
  case CR_AUTH_USER:
    if (check_user(a, req, fn, ver, &id)) cb(data, 1, NULL);
    else cb(data, 0, id);
    return;
  case CR_AUTH_AUTHORIZER:
    cr_authz_check(a->authz, req, fn, ver, cb, data);
    return;
  case CR_AUTH_APIKEY:
    if (!a->opts.apikey_check) break;
    a->opts.apikey_check(a->opts.apikey_ctx, req, fn, ver, cb, data);
    return;
  }
  /* Only API keys without their checker (no gateway made one) come here. */
  cr_log(CR_LOG_ERROR, fn->name, req->id, "auth: this build cannot check the route's auth method");
  cr_gwauth_refuse(req, ver, 503, NULL, "authentication is misconfigured", 0);
  cb(data, 1, NULL);
}
