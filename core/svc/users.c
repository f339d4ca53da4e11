/* users.c - the accounts service's steps (the contract is in users.h). */
#include "users.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "clock.h"
#include "jsonread.h"
#include "jsontext.h"
#include "jwtsign.h"

const char *const cr_users_script_names[CR_USERS_NSCRIPTS] = {
    "users_create", "users_get", "users_set", "users_delete", "users_list", "users_rt", "users_code", "users_throttle"};

struct cr_users_s {
  uv_loop_t *loop;
  cr_redis_t *redis;
  cr_authkeys_t *keys;
  cr_users_opts_t o;
  char base[300];  /* PREFIX{users}: */
  char index[320]; /* PREFIX{users}:login, every script's KEYS[1] */
  char issuer[256];
  uv_timer_t later;         /* answers decided at once, given on a later turn */
  cr_users_op_t *later_ops; /* their list */
  cr_users_op_t *later_tail;
};

typedef enum { K_SIGNUP, K_SIGNIN, K_GET, K_RT_NEW, K_RT_ROTATE, K_SIGNOUT, K_CODE_NEW, K_CODE_USE, K_UPDATE,
               K_DELETE, K_LIST } kind_t;

struct cr_users_op_s {
  cr_users_t *u;
  kind_t kind;
  cr_users_cb cb;
  void *data;
  cr_redis_req_t *rr;
  cr_pwhash_job_t *job;
  int stage;
  int in_later;
  int cancelled;
  /* the answer */
  int status;
  const char *err;
  long retry_ms;
  int have_user;
  cr_user_t user;
  cr_user_t *users;
  int nusers;
  char cursor[CR_USERS_ID_LEN + 1];
  char refresh[64];
  char newrt[64]; /* a rotation's new token, until the rotation succeeded */
  char code[8];
  /* the inputs */
  char login[CR_USERS_MAX_LOGIN + 1];
  char ip[64];
  char uid[CR_USERS_ID_LEN + 1];
  char purpose[8];
  char hash[65]; /* a token's or code's SHA-256, hex */
  char *pw;
  size_t pwlen;
  char *attrs;
  size_t alen;
  int confirmed, disabled;
  int count;
  cr_users_op_t *next;
};

/* --- rules ---------------------------------------------------------------------------------------- */

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int cr_users_normalize_login(const char *in, size_t len, char *out, size_t outlen, const char **err) {
  while (len && is_ws(*in)) in++, len--;
  while (len && is_ws(in[len - 1])) len--;
  if (len == 0) return *err = "login is required", -1;
  const char *at = memchr(in, '@', len);
  size_t max = at ? CR_USERS_MAX_LOGIN : 64;
  if (len > max || len >= outlen) return *err = at ? "e-mail address is too long" : "username is too long", -1;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
    out[i] = (char)c;
    if (at) {
      if (c <= 0x20 || c >= 0x7f || strchr("\"(),:;<>[\\]", c))
        return *err = "e-mail address holds a character that is not allowed", -1;
    } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
      return *err = "username may hold only letters, digits, '.', '_' and '-'", -1;
    }
  }
  out[len] = '\0';
  if (!at) {
    if (len < 3) return *err = "username must be at least 3 characters", -1;
    return 0;
  }
  size_t local = (size_t)(at - in);
  const char *dom = out + local + 1;
  size_t dlen = len - local - 1;
  if (local == 0 || local > 64 || dlen < 3 || memchr(dom, '@', dlen) || !memchr(dom, '.', dlen) || dom[0] == '.' ||
      dom[dlen - 1] == '.' || strstr(dom, ".."))
    return *err = "not an e-mail address", -1;
  return 0;
}

/* A few of the most common passwords of at least 8 characters (public breach lists' top entries). */
static const char *const common[] = {"12345678", "123456789", "1234567890", "password", "password1", "password123",
                                     "qwertyuiop", "qwerty123", "iloveyou", "11111111", "00000000", "abc12345",
                                     "sunshine", "princess", "football", "baseball", "welcome1", "admin123",
                                     "letmein1", "12341234", "87654321", "qwertyui", "1q2w3e4r", "aa123456", NULL};

int cr_users_check_password(const cr_users_t *u, const char *pw, size_t len, const char **err) {
  if (len > CR_PWHASH_MAX_PASSWORD) return *err = "password is too long (at most 1024 bytes)", -1;
  size_t chars = 0;
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)pw[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!n || i + n > len || c == 0) return *err = "password must be valid UTF-8 text", -1;
    for (size_t k = 1; k < n; k++)
      if (((unsigned char)pw[i + k] >> 6) != 2) return *err = "password must be valid UTF-8 text", -1;
    i += n;
    chars++;
  }
  if ((int)chars < u->o.min_password) return *err = "password is too short", -1;
  for (int i = 0; common[i]; i++)
    if (strlen(common[i]) == len && memcmp(common[i], pw, len) == 0) return *err = "password is too common", -1;
  return 0;
}

int cr_users_check_attrs(const char *attrs, size_t len, const char **err) {
  if (!attrs) return 0;
  if (len > CR_USERS_MAX_ATTRS) return *err = "attributes are too large (at most 16 KB)", -1;
  char why[128];
  cr_jr_doc_t *d = cr_jr_parse(attrs, len, why, sizeof why);
  int ok = d && cr_jr_root(d)->type == CR_JR_OBJECT;
  cr_jr_free(d);
  if (!ok) return *err = "attributes must be a JSON object", -1;
  return 0;
}

/* --- the service ---------------------------------------------------------------------------------- */

static void on_later(uv_timer_t *t);

cr_users_t *cr_users_new(uv_loop_t *loop, cr_redis_t *redis, cr_authkeys_t *keys, const cr_users_opts_t *o) {
  cr_users_t *u = calloc(1, sizeof *u);
  if (!u) return NULL;
  u->loop = loop;
  u->redis = redis;
  u->keys = keys;
  u->o = *o;
  if (u->o.min_password <= 0) u->o.min_password = 8;
  if (u->o.access_ttl <= 0) u->o.access_ttl = 900;
  if (u->o.refresh_ttl <= 0) u->o.refresh_ttl = 30 * 86400;
  if (u->o.code_ttl <= 0) u->o.code_ttl = 900;
  if (u->o.code_tries <= 0) u->o.code_tries = 5;
  if (u->o.account_free <= 0) u->o.account_free = 5;
  if (u->o.ip_free <= 0) u->o.ip_free = 20;
  if (u->o.lock_max <= 0) u->o.lock_max = 900;
  if (u->o.lock_window <= 0) u->o.lock_window = 3600;
  if (!u->o.pw.m_kib) u->o.pw = (cr_pwhash_params_t){CR_PWHASH_DEFAULT_M, CR_PWHASH_DEFAULT_T, CR_PWHASH_DEFAULT_P};
  snprintf(u->base, sizeof u->base, "%s{users}:", o->prefix ? o->prefix : "cr:");
  snprintf(u->index, sizeof u->index, "%slogin", u->base);
  snprintf(u->issuer, sizeof u->issuer, "%s", o->issuer && *o->issuer ? o->issuer : "crescent");
  u->o.issuer = u->issuer;
  u->o.prefix = NULL;
  uv_timer_init(loop, &u->later);
  u->later.data = u;
  uv_unref((uv_handle_t *)&u->later);
  return u;
}

static void on_later_closed(uv_handle_t *h) { free(h->data); }

void cr_users_free(cr_users_t *u) {
  if (!u) return;
  cr_authkeys_free(u->keys);
  u->keys = NULL;
  /* Ops still waiting here belong to callers that are gone with the loop. */
  while (u->later_ops) {
    cr_users_op_t *op = u->later_ops;
    u->later_ops = op->next;
    free(op->pw);
    free(op->attrs);
    free(op->user.attrs);
    free(op);
  }
  uv_close((uv_handle_t *)&u->later, on_later_closed);
}

cr_authkeys_t *cr_users_keys(cr_users_t *u) { return u->keys; }
const cr_users_opts_t *cr_users_opts(const cr_users_t *u) { return &u->o; }

/* --- ops -------------------------------------------------------------------------------------------- */

static cr_users_op_t *op_new(cr_users_t *u, kind_t kind, cr_users_cb cb, void *data) {
  cr_users_op_t *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->u = u;
  op->kind = kind;
  op->cb = cb;
  op->data = data;
  return op;
}

static void op_free(cr_users_op_t *op) {
  if (op->pw) {
    OPENSSL_cleanse(op->pw, op->pwlen);
    free(op->pw);
  }
  free(op->attrs);
  free(op->user.attrs);
  for (int i = 0; i < op->nusers; i++) free(op->users[i].attrs);
  free(op->users);
  OPENSSL_cleanse(op->refresh, sizeof op->refresh);
  OPENSSL_cleanse(op->newrt, sizeof op->newrt);
  OPENSSL_cleanse(op->code, sizeof op->code);
  free(op);
}

static void finish(cr_users_op_t *op) {
  cr_users_res_t r = {.status = op->status, .err = op->err, .retry_after_ms = op->retry_ms};
  if (op->have_user) r.user = &op->user;
  if (op->refresh[0]) r.refresh = op->refresh;
  if (op->code[0]) r.code = op->code;
  r.users = op->users;
  r.nusers = op->nusers;
  r.cursor = op->cursor;
  op->cb(op->data, &r);
  op_free(op);
}

/* Answers on a later turn (the callback never comes from inside the call). */
static cr_users_op_t *later(cr_users_op_t *op, int status, const char *err) {
  op->status = status;
  op->err = err;
  op->in_later = 1;
  cr_users_t *u = op->u;
  if (u->later_tail) u->later_tail->next = op;
  else u->later_ops = op;
  u->later_tail = op;
  uv_timer_start(&u->later, on_later, 0, 0);
  return op;
}

static void on_later(uv_timer_t *t) {
  cr_users_t *u = t->data;
  cr_users_op_t *list = u->later_ops;
  u->later_ops = u->later_tail = NULL;
  while (list) {
    cr_users_op_t *op = list;
    list = op->next;
    if (op->cancelled) op_free(op);
    else finish(op);
  }
}

static void fail_now(cr_users_op_t *op, int status, const char *err) {
  op->status = status;
  op->err = err;
  finish(op);
}

void cr_users_cancel(cr_users_op_t *op) {
  if (!op) return;
  if (op->in_later) {
    op->cancelled = 1;
    return;
  }
  if (op->rr) cr_redis_cancel(op->rr);
  if (op->job) cr_pwhash_cancel(op->job);
  op_free(op);
}

static const char redis_down[] = "accounts are unavailable (redis)";

/* Runs a users_* script: KEYS[1] the login index, ARGV[1] the base, then args. */
static int eval(cr_users_op_t *op, int script, int nargs, const char **args, const size_t *lens, cr_redis_cb cb) {
  cr_users_t *u = op->u;
  const char *argv[16];
  size_t alen[16];
  argv[0] = u->index;
  alen[0] = strlen(u->index);
  argv[1] = u->base;
  alen[1] = strlen(u->base);
  for (int i = 0; i < nargs && i < 14; i++) {
    argv[2 + i] = args[i];
    alen[2 + i] = lens ? lens[i] : strlen(args[i]);
  }
  op->rr = u->redis ? cr_redis_eval(u->redis, u->o.scripts[script], 1, 2 + nargs, argv, alen, cb, op) : NULL;
  return op->rr ? 0 : -1;
}

/* A user from HGETALL's flat list: 0, or -1 (malformed or out of memory). */
static int user_from(const redisReply *r, cr_user_t *out) {
  memset(out, 0, sizeof *out);
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2) return -1;
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const redisReply *k = r->element[i], *v = r->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    if (strcmp(k->str, "id") == 0) snprintf(out->id, sizeof out->id, "%s", v->str);
    else if (strcmp(k->str, "login") == 0) snprintf(out->login, sizeof out->login, "%s", v->str);
    else if (strcmp(k->str, "pw") == 0) snprintf(out->pw, sizeof out->pw, "%s", v->str);
    else if (strcmp(k->str, "createdAt") == 0) out->created_ms = strtoull(v->str, NULL, 10);
    else if (strcmp(k->str, "confirmed") == 0) out->confirmed = v->str[0] == '1';
    else if (strcmp(k->str, "disabled") == 0) out->disabled = v->str[0] == '1';
    else if (strcmp(k->str, "attrs") == 0) {
      free(out->attrs);
      out->attrs = malloc(v->len + 1);
      if (!out->attrs) return -1;
      memcpy(out->attrs, v->str, v->len + 1);
      out->attrs_len = v->len;
    }
  }
  if (!out->id[0]) return -1;
  if (!out->attrs) {
    out->attrs = strdup("{}");
    if (!out->attrs) return -1;
    out->attrs_len = 2;
  }
  return 0;
}

static void hex(const unsigned char *d, size_t n, char *out) {
  static const char h[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = h[d[i] >> 4];
    out[2 * i + 1] = h[d[i] & 15];
  }
  out[2 * n] = '\0';
}

static void sha256_hex(const char *s, size_t n, char out[65]) {
  unsigned char d[32];
  unsigned int dl = 0;
  EVP_Digest(s, n, d, &dl, EVP_sha256(), NULL);
  hex(d, 32, out);
}

static int copy_pw(cr_users_op_t *op, const char *pw, size_t len) {
  op->pw = malloc(len + 1);
  if (!op->pw) return -1;
  memcpy(op->pw, pw, len);
  op->pw[len] = '\0';
  op->pwlen = len;
  return 0;
}

static void ms_text(double s, char *out, size_t n) { snprintf(out, n, "%.0f", s * 1000); }

/* --- signup ------------------------------------------------------------------------------------------ */

static void on_created(void *data, redisReply *r, const char *err);

static void on_signup_hash(void *data, int ok, const char *encoded, const char *err) {
  cr_users_op_t *op = data;
  op->job = NULL;
  if (ok != 1) {
    fail_now(op, 503, "could not hash the password");
    return;
  }
  unsigned char rid[16];
  if (RAND_bytes(rid, sizeof rid) != 1) {
    fail_now(op, 503, "could not make a user id");
    return;
  }
  hex(rid, sizeof rid, op->user.id);
  snprintf(op->user.login, sizeof op->user.login, "%s", op->login);
  snprintf(op->user.pw, sizeof op->user.pw, "%s", encoded);
  op->user.created_ms = cr_wall_ms();
  op->user.confirmed = op->confirmed;
  op->user.attrs = op->attrs;
  op->user.attrs_len = op->alen;
  op->attrs = NULL;
  char created[32];
  snprintf(created, sizeof created, "%llu", (unsigned long long)op->user.created_ms);
  const char *args[] = {op->login, op->user.id, op->user.pw, op->user.attrs, created, op->confirmed ? "1" : "0"};
  size_t lens[] = {strlen(op->login), strlen(op->user.id), strlen(op->user.pw), op->user.attrs_len, strlen(created), 1};
  if (eval(op, CR_USERS_S_CREATE, 6, args, lens, on_created)) fail_now(op, 503, redis_down);
}

static void on_created(void *data, redisReply *r, const char *err) {
  cr_users_op_t *op = data;
  op->rr = NULL;
  if (err || !r || r->type != REDIS_REPLY_INTEGER) {
    fail_now(op, 503, redis_down);
    return;
  }
  if (r->integer == 0) {
    fail_now(op, 409, "login is already taken");
    return;
  }
  op->have_user = 1;
  finish(op);
}

cr_users_op_t *cr_users_signup(cr_users_t *u, const char *login, const char *pw, size_t pwlen, const char *attrs,
                               size_t alen, int confirmed, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_SIGNUP, cb, data);
  if (!op) return NULL;
  const char *why = NULL;
  if (cr_users_normalize_login(login, strlen(login), op->login, sizeof op->login, &why) ||
      cr_users_check_password(u, pw, pwlen, &why) || cr_users_check_attrs(attrs, alen, &why))
    return later(op, 400, why);
  op->attrs = attrs ? malloc(alen + 1) : strdup("{}");
  if (!op->attrs) return op_free(op), NULL;
  if (attrs) {
    memcpy(op->attrs, attrs, alen);
    op->attrs[alen] = '\0';
    op->alen = alen;
  } else {
    op->alen = 2;
  }
  op->confirmed = confirmed;
  if (!u->redis || !cr_redis_connected(u->redis)) return later(op, 503, redis_down);
  op->job = cr_pwhash_hash(u->loop, &u->o.pw, pw, pwlen, on_signup_hash, op);
  if (!op->job) return op_free(op), NULL;
  return op;
}

/* --- signin ------------------------------------------------------------------------------------------ */

static void throttle(cr_users_op_t *op, const char *mode, cr_redis_cb cb) {
  cr_users_t *u = op->u;
  char af[16], ipf[16], mx[32], win[32];
  snprintf(af, sizeof af, "%d", u->o.account_free);
  snprintf(ipf, sizeof ipf, "%d", u->o.ip_free);
  ms_text(u->o.lock_max, mx, sizeof mx);
  ms_text(u->o.lock_window, win, sizeof win);
  const char *args[] = {mode, op->login, op->ip, af, ipf, mx, win};
  if (eval(op, CR_USERS_S_THROTTLE, 7, args, NULL, cb)) fail_now(op, 503, redis_down);
}

static void on_verified(void *data, int ok, const char *encoded, const char *err);
static void on_signin_user(void *data, redisReply *r, const char *err);

static void on_signin_checked(void *data, redisReply *r, const char *err) {
  cr_users_op_t *op = data;
  op->rr = NULL;
  if (err || !r || r->type != REDIS_REPLY_INTEGER) {
    fail_now(op, 503, redis_down);
    return;
  }
  if (r->integer > 0) {
    op->retry_ms = (long)r->integer;
    fail_now(op, 429, "too many failed sign-ins: try again later");
    return;
  }
  const char *args[] = {"login", op->login};
  if (eval(op, CR_USERS_S_GET, 2, args, NULL, on_signin_user)) fail_now(op, 503, redis_down);
}

static void on_signin_user(void *data, redisReply *r, const char *err) {
  cr_users_op_t *op = data;
  op->rr = NULL;
  if (err || !r) {
    fail_now(op, 503, redis_down);
    return;
  }
  if (r->type == REDIS_REPLY_ARRAY && user_from(r, &op->user) == 0) op->have_user = 1;
  else if (r->type != REDIS_REPLY_NIL) {
    fail_now(op, 503, redis_down);
    return;
  }
  /* No such user: the same work as a wrong password (a hash of the given
   * password under the current parameters), so the answer's timing does not
   * tell which logins exist. */
  if (op->have_user) op->job = cr_pwhash_verify(op->u->loop, op->user.pw, op->pw, op->pwlen, on_verified, op);
  else op->job = cr_pwhash_hash(op->u->loop, &op->u->o.pw, op->pw, op->pwlen, on_verified, op);
  if (!op->job) fail_now(op, 503, "server out of memory");
}

static void on_recorded(void *data, redisReply *r, const char *err) {
  cr_users_op_t *op = data;
  op->rr = NULL;
  if (op->stage == 1) { /* a failure: counted against the IP */
    op->have_user = 0;
    fail_now(op, 401, "wrong login or password");
    return;
  }
  if (op->user.disabled) fail_now(op, 403, "user is disabled");
  else if (!op->user.confirmed) fail_now(op, 403, "user is not confirmed");
  else finish(op);
}

static void on_verified(void *data, int ok, const char *encoded, const char *err) {
  cr_users_op_t *op = data;
  op->job = NULL;
  if (ok < 0 && op->have_user) {
    fail_now(op, 503, "could not verify the password");
    return;
  }
  int good = op->have_user && ok == 1;
  op->stage = good ? 2 : 1;
  throttle(op, good ? "ok" : "fail", on_recorded);
}

cr_users_op_t *cr_users_signin(cr_users_t *u, const char *login, const char *pw, size_t pwlen, const char *ip,
                               cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_SIGNIN, cb, data);
  if (!op) return NULL;
  const char *why = NULL;
  if (cr_users_normalize_login(login, strlen(login), op->login, sizeof op->login, &why))
    return later(op, 401, "wrong login or password");
  if (pwlen > CR_PWHASH_MAX_PASSWORD) return later(op, 401, "wrong login or password");
  snprintf(op->ip, sizeof op->ip, "%s", ip && *ip ? ip : "-");
  if (copy_pw(op, pw, pwlen)) return op_free(op), NULL;
  if (!u->redis || !cr_redis_connected(u->redis)) return later(op, 503, redis_down);
  char af[16], ipf[16], mx[32], win[32];
  snprintf(af, sizeof af, "%d", u->o.account_free);
  snprintf(ipf, sizeof ipf, "%d", u->o.ip_free);
  ms_text(u->o.lock_max, mx, sizeof mx);
  ms_text(u->o.lock_window, win, sizeof win);
  const char *args[] = {"attempt", op->login, op->ip, af, ipf, mx, win};
  if (eval(op, CR_USERS_S_THROTTLE, 7, args, NULL, on_signin_checked)) return later(op, 503, redis_down);
  return op;
}

/* --- get, update, delete, list ------------------------------------------------------------------------ */

static void on_user_reply(void *data, redisReply *r, const char *err) {
  cr_users_op_t *op = data;
  op->rr = NULL;
  if (err || !r) fail_now(op, 503, redis_down);
  else if (r->type == REDIS_REPLY_NIL) fail_now(op, 404, "no such user");
  else if (r->type == REDIS_REPLY_ARRAY && user_from(r, &op->user) == 0) {
    op->have_user = 1;
    finish(op);
  } else fail_now(op, 503, redis_down);
}

static int valid_id(const char *id) {
  size_t n = strlen(id);
  if (n != CR_USERS_ID_LEN) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return 0;
  return 1;
}

cr_users_op_t *cr_users_get(cr_users_t *u, const char *key, int by_login, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_GET, cb, data);
  if (!op) return NULL;
  const char *why;
  if (by_login ? cr_users_normalize_login(key, strlen(key), op->login, sizeof op->login, &why) != 0
               : !valid_id(key))
    return later(op, 404, "no such user");
  const char *args[] = {by_login ? "login" : "id", by_login ? op->login : key};
  if (eval(op, CR_USERS_S_GET, 2, args, NULL, on_user_reply)) return later(op, 503, redis_down);
  return op;
}

cr_users_op_t *cr_users_update(cr_users_t *u, const char *uid, const char *attrs, size_t alen, int disabled,
                               int confirmed, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_UPDATE, cb, data);
  if (!op) return NULL;
  const char *why = NULL;
  if (!valid_id(uid)) return later(op, 404, "no such user");
  if (cr_users_check_attrs(attrs, alen, &why)) return later(op, 400, why);
  const char *args[9];
  size_t lens[9];
  int n = 0;
  args[n] = uid, lens[n++] = strlen(uid);
  args[n] = disabled == 1 ? "1" : "0", lens[n++] = 1;
  if (attrs) args[n] = "attrs", lens[n++] = 5, args[n] = attrs, lens[n++] = alen;
  if (disabled >= 0) args[n] = "disabled", lens[n++] = 8, args[n] = disabled ? "1" : "0", lens[n++] = 1;
  if (confirmed >= 0) args[n] = "confirmed", lens[n++] = 9, args[n] = confirmed ? "1" : "0", lens[n++] = 1;
  if (eval(op, CR_USERS_S_SET, n, args, lens, on_user_reply)) return later(op, 503, redis_down);
  return op;
}

/* A user's code tries used up (users_code.lua): no code is made or taken until the exhausted one expires. */
static const char too_many_codes[] = "too many wrong codes: try again later";

static void on_int_reply(void *data, redisReply *r, const char *err) {
  cr_users_op_t *op = data;
  op->rr = NULL;
  if (err || !r || r->type != REDIS_REPLY_INTEGER) fail_now(op, 503, redis_down);
  else if (r->integer == 0 && op->kind == K_DELETE) fail_now(op, 404, "no such user");
  else if (r->integer == 2 && op->kind == K_CODE_NEW) fail_now(op, 429, too_many_codes);
  else finish(op);
}

cr_users_op_t *cr_users_delete(cr_users_t *u, const char *uid, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_DELETE, cb, data);
  if (!op) return NULL;
  if (!valid_id(uid)) return later(op, 404, "no such user");
  const char *args[] = {uid};
  if (eval(op, CR_USERS_S_DELETE, 1, args, NULL, on_int_reply)) return later(op, 503, redis_down);
  return op;
}

static void on_list(void *data, redisReply *r, const char *err) {
  cr_users_op_t *op = data;
  op->rr = NULL;
  if (err || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING) {
    fail_now(op, 503, redis_down);
    return;
  }
  snprintf(op->cursor, sizeof op->cursor, "%s", r->element[0]->str);
  op->users = calloc(r->elements, sizeof *op->users);
  if (!op->users) {
    fail_now(op, 503, "server out of memory");
    return;
  }
  for (size_t i = 1; i < r->elements; i++)
    if (user_from(r->element[i], &op->users[op->nusers]) == 0) op->nusers++;
    else free(op->users[op->nusers].attrs), op->users[op->nusers].attrs = NULL;
  finish(op);
}

cr_users_op_t *cr_users_list(cr_users_t *u, const char *cursor, int count, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_LIST, cb, data);
  if (!op) return NULL;
  if (cursor && *cursor && !valid_id(cursor)) return later(op, 400, "bad cursor");
  if (count < 1 || count > 100) count = count < 1 ? 50 : 100;
  char n[16];
  snprintf(n, sizeof n, "%d", count);
  const char *args[] = {cursor ? cursor : "", n};
  if (eval(op, CR_USERS_S_LIST, 2, args, NULL, on_list)) return later(op, 503, redis_down);
  return op;
}

/* --- refresh tokens --------------------------------------------------------------------------------------- */

/* A new random refresh token in op->refresh and its hash in op->hash. */
static int make_refresh(cr_users_op_t *op) {
  unsigned char r[32];
  if (RAND_bytes(r, sizeof r) != 1) return -1;
  cr_buf_t b = CR_BUF_INIT;
  int bad = cr_b64url_append(&b, r, sizeof r);
  if (!bad) {
    snprintf(op->refresh, sizeof op->refresh, "%s", b.data);
    sha256_hex(op->refresh, strlen(op->refresh), op->hash);
    OPENSSL_cleanse(b.data, b.len);
  }
  cr_buf_free(&b);
  OPENSSL_cleanse(r, sizeof r);
  return bad ? -1 : 0;
}

static int plausible_refresh(const char *t, size_t len) { return len == 43 && !memchr(t, '\0', len); }

cr_users_op_t *cr_users_refresh_new(cr_users_t *u, const char *uid, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_RT_NEW, cb, data);
  if (!op) return NULL;
  unsigned char f[12];
  char fam[25], ttl[32];
  if (!valid_id(uid) || make_refresh(op) || RAND_bytes(f, sizeof f) != 1) return later(op, 503, "no randomness");
  hex(f, sizeof f, fam);
  ms_text(u->o.refresh_ttl, ttl, sizeof ttl);
  const char *args[] = {"new", op->hash, uid, fam, ttl};
  if (eval(op, CR_USERS_S_RT, 5, args, NULL, on_int_reply)) return later(op, 503, redis_down);
  return op;
}

static void on_rotated(void *data, redisReply *r, const char *err) {
  cr_users_op_t *op = data;
  op->rr = NULL;
  if (err || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER) {
    fail_now(op, 503, redis_down);
    return;
  }
  long long v = r->element[0]->integer;
  OPENSSL_cleanse(op->refresh, sizeof op->refresh);
  op->refresh[0] = '\0';
  if (v == -1) fail_now(op, 401, "refresh token was already used: every token of its sign-in is revoked");
  else if (v == -2) fail_now(op, 403, "user is disabled");
  else if (v != 1 || r->elements < 2 || user_from(r->element[1], &op->user)) fail_now(op, 401, "invalid refresh token");
  else {
    op->have_user = 1;
    memcpy(op->refresh, op->newrt, sizeof op->refresh);
    finish(op);
  }
}

cr_users_op_t *cr_users_refresh_rotate(cr_users_t *u, const char *token, size_t len, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_RT_ROTATE, cb, data);
  if (!op) return NULL;
  if (!plausible_refresh(token, len)) return later(op, 401, "invalid refresh token");
  char old[65], ttl[32];
  sha256_hex(token, len, old);
  if (make_refresh(op)) return later(op, 503, "no randomness");
  memcpy(op->newrt, op->refresh, sizeof op->newrt);
  op->refresh[0] = '\0';
  ms_text(u->o.refresh_ttl, ttl, sizeof ttl);
  const char *args[] = {"rotate", old, op->hash, ttl};
  if (eval(op, CR_USERS_S_RT, 4, args, NULL, on_rotated)) return later(op, 503, redis_down);
  return op;
}

cr_users_op_t *cr_users_signout(cr_users_t *u, const char *token, size_t len, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_SIGNOUT, cb, data);
  if (!op) return NULL;
  if (!plausible_refresh(token, len)) return later(op, 0, NULL);
  sha256_hex(token, len, op->hash);
  const char *args[] = {"revoke", op->hash};
  if (eval(op, CR_USERS_S_RT, 2, args, NULL, on_int_reply)) return later(op, 503, redis_down);
  return op;
}

/* --- codes -------------------------------------------------------------------------------------------------- */

static int purpose_ok(const char *p) { return strcmp(p, "confirm") == 0 || strcmp(p, "reset") == 0; }

cr_users_op_t *cr_users_code_new(cr_users_t *u, const char *uid, const char *purpose, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_CODE_NEW, cb, data);
  if (!op) return NULL;
  if (!valid_id(uid) || !purpose_ok(purpose)) return later(op, 404, "no such user");
  /* Six decimal digits, uniform (rejection sampling). */
  uint32_t v;
  do {
    if (RAND_bytes((unsigned char *)&v, sizeof v) != 1) return later(op, 503, "no randomness");
  } while (v >= 4294000000u);
  snprintf(op->code, sizeof op->code, "%06u", v % 1000000u);
  char h[65], ttl[32];
  sha256_hex(op->code, 6, h);
  ms_text(u->o.code_ttl, ttl, sizeof ttl);
  const char *args[] = {"new", purpose, uid, h, ttl};
  if (eval(op, CR_USERS_S_CODE, 5, args, NULL, on_int_reply)) return later(op, 503, redis_down);
  return op;
}

static void on_code_used(void *data, redisReply *r, const char *err) {
  cr_users_op_t *op = data;
  op->rr = NULL;
  if (err || !r || r->type != REDIS_REPLY_INTEGER) fail_now(op, 503, redis_down);
  else if (r->integer == 1) finish(op);
  else if (r->integer == -2) fail_now(op, 429, too_many_codes);
  else fail_now(op, 400, r->integer == 0 ? "no valid code: request a new one" : "wrong code");
}

static int use_code(cr_users_op_t *op, const char *encoded) {
  char tries[16];
  snprintf(tries, sizeof tries, "%d", op->u->o.code_tries);
  const char *args[] = {"use", op->purpose, op->uid, op->hash, tries,
                        strcmp(op->purpose, "reset") == 0 ? "reset" : "confirm", encoded ? encoded : ""};
  return eval(op, CR_USERS_S_CODE, 7, args, NULL, on_code_used);
}

static void on_reset_hash(void *data, int ok, const char *encoded, const char *err) {
  cr_users_op_t *op = data;
  op->job = NULL;
  if (ok != 1) fail_now(op, 503, "could not hash the password");
  else if (use_code(op, encoded)) fail_now(op, 503, redis_down);
}

cr_users_op_t *cr_users_code_use(cr_users_t *u, const char *uid, const char *purpose, const char *code,
                                 size_t clen, const char *newpw, size_t pwlen, cr_users_cb cb, void *data) {
  cr_users_op_t *op = op_new(u, K_CODE_USE, cb, data);
  if (!op) return NULL;
  if (!valid_id(uid) || !purpose_ok(purpose)) return later(op, 400, "no valid code: request a new one");
  snprintf(op->uid, sizeof op->uid, "%s", uid);
  snprintf(op->purpose, sizeof op->purpose, "%s", purpose);
  if (clen == 0 || clen > 64) return later(op, 400, "wrong code");
  sha256_hex(code, clen, op->hash);
  if (strcmp(purpose, "reset") == 0) {
    const char *why = NULL;
    if (!newpw || cr_users_check_password(u, newpw, pwlen, &why)) return later(op, 400, why ? why : "password is required");
    if (!u->redis || !cr_redis_connected(u->redis)) return later(op, 503, redis_down);
    op->job = cr_pwhash_hash(u->loop, &u->o.pw, newpw, pwlen, on_reset_hash, op);
    if (!op->job) return op_free(op), NULL;
    return op;
  }
  if (!u->redis || !cr_redis_connected(u->redis)) return later(op, 503, redis_down);
  if (use_code(op, NULL)) return later(op, 503, redis_down);
  return op;
}

/* --- tokens -------------------------------------------------------------------------------------------------- */

static const char *const reserved[] = {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "login", "token_use", NULL};

int cr_users_access_token(cr_users_t *u, const cr_user_t *user, const char *extra, size_t elen, cr_buf_t *out,
                          double *expires_in) {
  char err[200];
  cr_authkeys_refresh(u->keys, 0, err, sizeof err); /* a failure keeps the keys held */
  uint64_t now = cr_wall_ms() / 1000;
  unsigned char j[12];
  if (RAND_bytes(j, sizeof j) != 1) return -1;
  char jti[25];
  hex(j, sizeof j, jti);
  cr_buf_t p = CR_BUF_INIT;
  int bad = cr_buf_append_str(&p, "{\"iss\":") || cr_json_escape(&p, u->issuer, strlen(u->issuer)) ||
            cr_buf_append_str(&p, ",\"sub\":") || cr_json_escape(&p, user->id, strlen(user->id)) ||
            cr_buf_append_str(&p, ",\"login\":") || cr_json_escape(&p, user->login, strlen(user->login)) ||
            cr_buf_printf(&p, ",\"iat\":%llu,\"exp\":%llu,\"jti\":\"%s\",\"token_use\":\"access\"",
                          (unsigned long long)now, (unsigned long long)(now + (uint64_t)u->o.access_ttl), jti);
  if (!bad && extra && elen) {
    char why[100];
    cr_jr_doc_t *d = cr_jr_parse(extra, elen, why, sizeof why);
    const cr_jr_val_t *root = d ? cr_jr_root(d) : NULL;
    for (const cr_jr_val_t *c = root && root->type == CR_JR_OBJECT ? root->child : NULL; c && !bad; c = c->next) {
      int skip = 0;
      for (int i = 0; reserved[i]; i++) skip |= strcmp(c->key, reserved[i]) == 0;
      if (skip) continue;
      bad |= cr_buf_putc(&p, ',') || cr_json_escape(&p, c->key, c->keylen) || cr_buf_putc(&p, ':') || cr_jr_write(&p, c);
    }
    cr_jr_free(d);
  }
  bad = bad || cr_buf_putc(&p, '}') || cr_authkeys_sign(u->keys, p.data, p.len, out);
  cr_buf_free(&p);
  if (expires_in) *expires_in = u->o.access_ttl;
  return bad ? -1 : 0;
}

int cr_users_verify_access(cr_users_t *u, const char *tok, size_t len, cr_jwt_claims_t *out, char *err,
                           size_t errlen) {
  char why[200];
  cr_authkeys_refresh(u->keys, 0, why, sizeof why);
  cr_jwt_opts_t o = {.algorithms = CR_JWT_EDDSA, .issuer = u->issuer, .leeway = 5, .now = (double)cr_wall_ms() / 1000};
  return cr_jwt_verify(cr_authkeys_verifier(u->keys), &o, tok, len, out, err, errlen);
}

int cr_users_user_json(const cr_user_t *user, cr_buf_t *out) {
  char t[32];
  cr_clock_iso8601(user->created_ms, t);
  return cr_buf_append_str(out, "{\"id\":") || cr_json_escape(out, user->id, strlen(user->id)) ||
         cr_buf_append_str(out, ",\"login\":") || cr_json_escape(out, user->login, strlen(user->login)) ||
         cr_buf_append_str(out, ",\"attributes\":") ||
         cr_buf_append(out, user->attrs ? user->attrs : "{}", user->attrs ? user->attrs_len : 2) ||
         cr_buf_append_str(out, ",\"createdAt\":") || cr_json_escape(out, t, strlen(t)) ||
         cr_buf_printf(out, ",\"confirmed\":%s,\"disabled\":%s}", user->confirmed ? "true" : "false",
                       user->disabled ? "true" : "false");
}
