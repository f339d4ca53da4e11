/* accounts_api.c - /_/auth/ and /_/api/users (the contract is in accounts_api.h).
 *
 * Each request is a flow_t: the parsed body, the user it is about, and the
 * step it waits on (one users.h op or one hook call at a time, so there is
 * one resume path). The request stays until it is answered. */
#include "accounts_api.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "clock.h"
#include "jsonread.h"
#include "jsontext.h"
#include "log.h"
#include "policy.h"
#include "settings.h"
#include "url.h"

enum { R_SIGNUP, R_CONFIRM, R_SIGNIN, R_REFRESH, R_SIGNOUT, R_FORGOT, R_RESET, R_ME };

typedef struct flow_s flow_t;
typedef void (*step_fn)(flow_t *f);

struct flow_s {
  const cr_accounts_api_t *api;
  cr_http_req_t *req;
  int route;
  cr_jr_doc_t *doc;
  const cr_jr_val_t *body;
  const char *login; /* from the body */
  const char *password;
  size_t pwlen;
  const char *code;
  size_t codelen;
  cr_buf_t attrs;    /* the attributes to sign up with (JSON object text) */
  int confirmed;     /* sign-up: auto-confirmed by preSignUp */
  /* the user the flow is about, copied out of the op's answer */
  int have_user;
  cr_user_t user;
  cr_buf_t user_attrs;
  cr_buf_t claims;   /* preTokenGeneration's */
  char refresh[64];
  step_fn next;      /* after a sync hook */
  int hook;          /* the hook waited on */
};

/* --- answers --------------------------------------------------------------------------------- */

/* The CORS spec of /_/auth/ answers (--accounts-cors), or NULL. */
static const cr_cors_spec_t *cors_of(const cr_accounts_api_t *api) {
  return api && api->cors.set ? &api->cors : NULL;
}

static void respond_c(const cr_cors_spec_t *cors, cr_http_req_t *req, int status, const char *body, size_t len) {
  cr_http_respond_start(req, status);
  if (cors) cr_cors_headers(cors, req);
  cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
  if (status == 204) cr_http_respond_finish(req, NULL, "", 0);
  else cr_http_respond_finish(req, "application/json", body, len);
}

static void respond(cr_http_req_t *req, int status, const char *body, size_t len) {
  respond_c(NULL, req, status, body, len);
}

static void respond_error_c(const cr_cors_spec_t *cors, cr_http_req_t *req, int status, const char *msg,
                            long retry_ms) {
  cr_buf_t b = CR_BUF_INIT;
  cr_http_error_body_id(&b, req, msg);
  cr_http_respond_start(req, status);
  if (cors) cr_cors_headers(cors, req);
  cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
  if (status == 429) {
    char t[32];
    int n = snprintf(t, sizeof t, "%ld", retry_ms > 0 ? (retry_ms + 999) / 1000 : 1);
    cr_http_respond_header(req, "Retry-After", 11, t, (size_t)n);
  }
  if (status == 401) cr_http_respond_header(req, "WWW-Authenticate", 16, "Bearer realm=\"crescent\"", 23);
  cr_http_respond_finish(req, "application/json", b.data, b.len);
  cr_buf_free(&b);
}

static void respond_error(cr_http_req_t *req, int status, const char *msg, long retry_ms) {
  respond_error_c(NULL, req, status, msg, retry_ms);
}

static void flow_free(flow_t *f) {
  cr_jr_free(f->doc);
  cr_buf_free(&f->attrs);
  cr_buf_free(&f->user_attrs);
  cr_buf_free(&f->claims);
  free(f);
}

static void flow_error(flow_t *f, int status, const char *msg, long retry_ms) {
  respond_error_c(cors_of(f->api), f->req, status, msg, retry_ms);
  flow_free(f);
}

static void flow_ok(flow_t *f, int status, cr_buf_t *b) {
  respond_c(cors_of(f->api), f->req, status, b ? b->data : "", b ? b->len : 0);
  if (b) cr_buf_free(b);
  flow_free(f);
}

static int keep_user(flow_t *f, const cr_user_t *u) {
  f->user = *u;
  f->user.attrs = NULL;
  f->user_attrs.len = 0;
  if (cr_buf_append(&f->user_attrs, u->attrs ? u->attrs : "{}", u->attrs ? u->attrs_len : 2) ||
      cr_buf_putc(&f->user_attrs, '\0'))
    return -1;
  f->user_attrs.len--;
  f->user.attrs = f->user_attrs.data;
  f->user.attrs_len = f->user_attrs.len;
  f->have_user = 1;
  return 0;
}

/* --- hooks --------------------------------------------------------------------------------- */

/* The function with a trigger { auth = NAME } for hook, or NULL (the first by name order). */
static const char *hook_fn(const cr_accounts_api_t *api, int hook) {
  const cr_registry_t *r = api->registry;
  for (int i = 0; r && i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    if (fn->removed || fn->platform || !fn->current) continue;
    const cr_settings_t *s = &fn->current->settings;
    for (int k = 0; k < s->ntriggers; k++)
      if (s->triggers[k].kind == CR_TRIGGER_AUTH && s->triggers[k].auth.hook == hook) return fn->name;
  }
  return NULL;
}

/* {"trigger":NAME,"requestId":...,"user":{...}  (the caller adds more and the closing brace). */
static int event_begin(flow_t *f, cr_buf_t *b, int hook) {
  const char *name = cr_auth_hook_name(hook);
  int bad = cr_buf_append_str(b, "{\"trigger\":") || cr_json_escape(b, name, strlen(name)) ||
            cr_buf_append_str(b, ",\"requestId\":") || cr_json_escape(b, f->req->id, strlen(f->req->id)) ||
            cr_buf_append_str(b, ",\"ip\":") || cr_json_escape(b, f->req->ip ? f->req->ip : "", f->req->ip ? strlen(f->req->ip) : 0);
  if (!bad && f->have_user) bad = cr_buf_append_str(b, ",\"user\":") || cr_users_user_json(&f->user, b);
  return bad;
}

typedef struct {
  char fn[256];
  char reqid[CR_REQID_MAX + 1];
  int hook;
} notice_t;

static void on_notified(void *data, const cr_fncall_result_t *r) {
  notice_t *n = data;
  if (r->status != CR_FNCALL_OK)
    cr_log(CR_LOG_WARN, n->fn, n->reqid, "%s hook failed: %s", cr_auth_hook_name(n->hook), r->err ? r->err : "error");
  free(n);
}

/* A hook told, not waited for: postConfirmation, postSignIn, customMessage. */
static void notify(flow_t *f, int hook, cr_buf_t *event) {
  const char *name = hook_fn(f->api, hook);
  if (!name || !f->api->fc) {
    cr_buf_free(event);
    return;
  }
  notice_t *n = calloc(1, sizeof *n);
  if (n) {
    snprintf(n->fn, sizeof n->fn, "%s", name);
    snprintf(n->reqid, sizeof n->reqid, "%s", f->req->id);
    n->hook = hook;
    cr_fncall_opts_t o = {.parent_reqid = f->req->id, .auth_hook = cr_auth_hook_name(hook)};
    if (!cr_fncall_start(f->api->fc, name, strlen(name), event->data, event->len, &o, on_notified, n)) free(n);
  }
  cr_buf_free(event);
}

/* What a sync hook answered, as f's state: 0 go on, else the flow was answered. */
static int hook_verdict(flow_t *f, const char *text, size_t len) {
  if (!len) return 0; /* nil: allowed, nothing changed */
  char why[128];
  cr_jr_doc_t *d = cr_jr_parse(text, len, why, sizeof why);
  const cr_jr_val_t *root = d ? cr_jr_root(d) : NULL;
  const char *name = cr_auth_hook_name(f->hook);
  if (!root || root->type == CR_JR_NULL) {
    cr_jr_free(d);
    return 0;
  }
  if (root->type != CR_JR_OBJECT) {
    cr_jr_free(d);
    cr_log(CR_LOG_WARN, NULL, f->req->id, "%s hook returned something other than a table", name);
    char msg[100];
    snprintf(msg, sizeof msg, "%s hook failed: it returned something other than a table", name);
    flow_error(f, 503, msg, 0);
    return 1;
  }
  const cr_jr_val_t *allow = cr_jr_get(root, "allow");
  if (allow && allow->type == CR_JR_FALSE) {
    const cr_jr_val_t *reason = cr_jr_get(root, "reason");
    char msg[300];
    snprintf(msg, sizeof msg, "%s", reason && reason->type == CR_JR_STRING && reason->len && !memchr(reason->str, 0, reason->len)
                                        ? reason->str
                                        : "refused");
    cr_jr_free(d);
    flow_error(f, 403, msg, 0);
    return 1;
  }
  int bad = 0;
  if (f->hook == CR_AUTH_PRE_SIGN_UP) {
    const cr_jr_val_t *ac = cr_jr_get(root, "autoConfirm"), *at = cr_jr_get(root, "attributes");
    if (ac && ac->type == CR_JR_TRUE) f->confirmed = 1;
    if (at && at->type == CR_JR_OBJECT) {
      f->attrs.len = 0;
      bad = cr_jr_write(&f->attrs, at);
    }
  } else if (f->hook == CR_AUTH_PRE_TOKEN_GENERATION) {
    const cr_jr_val_t *c = cr_jr_get(root, "claims");
    if (c && c->type == CR_JR_OBJECT) {
      f->claims.len = 0;
      bad = cr_jr_write(&f->claims, c);
    }
  }
  cr_jr_free(d);
  if (bad) {
    flow_error(f, 503, "server out of memory", 0);
    return 1;
  }
  return 0;
}

static void on_hook(void *data, const cr_fncall_result_t *r) {
  flow_t *f = data;
  if (r->status != CR_FNCALL_OK) {
    /* Fail closed: nothing was written yet. */
    cr_log(CR_LOG_WARN, NULL, f->req->id, "%s hook failed: %s", cr_auth_hook_name(f->hook), r->err ? r->err : "error");
    char msg[200];
    snprintf(msg, sizeof msg, "%s hook failed%s", cr_auth_hook_name(f->hook),
             r->error_type && strcmp(r->error_type, "timeout") == 0 ? ": timeout" : "");
    flow_error(f, 503, msg, 0);
    return;
  }
  if (hook_verdict(f, r->result, r->result_len)) return;
  f->next(f);
}

/* Runs a sync hook with event, then next (directly when no function has the hook). */
static void await_hook(flow_t *f, int hook, cr_buf_t *event, step_fn next) {
  const char *name = hook_fn(f->api, hook);
  if (!name || !f->api->fc) {
    cr_buf_free(event);
    next(f);
    return;
  }
  f->hook = hook;
  f->next = next;
  double t = f->api->hook_timeout > 0 ? f->api->hook_timeout : 5;
  cr_fncall_opts_t o = {.parent_reqid = f->req->id, .deadline_ns = cr_clock_ns() + (uint64_t)(t * 1e9),
                        .auth_hook = cr_auth_hook_name(hook)};
  cr_fncall_t *c = cr_fncall_start(f->api->fc, name, strlen(name), event->data, event->len, &o, on_hook, f);
  cr_buf_free(event);
  if (!c) flow_error(f, 503, "server out of memory", 0);
}

/* --- steps ---------------------------------------------------------------------------------- */

static void send_code(flow_t *f, const char *purpose, const char *code) {
  cr_buf_t e = CR_BUF_INIT;
  if (event_begin(f, &e, CR_AUTH_CUSTOM_MESSAGE) || cr_buf_append_str(&e, ",\"purpose\":") ||
      cr_json_escape(&e, purpose, strlen(purpose)) || cr_buf_append_str(&e, ",\"code\":") ||
      cr_json_escape(&e, code, strlen(code)) || cr_buf_putc(&e, '}')) {
    cr_buf_free(&e);
    return;
  }
  if (!hook_fn(f->api, CR_AUTH_CUSTOM_MESSAGE))
    cr_log(CR_LOG_WARN, NULL, f->req->id, "a %s code was made but no function has the customMessage trigger to send it",
           purpose);
  notify(f, CR_AUTH_CUSTOM_MESSAGE, &e);
}

static void notify_user(flow_t *f, int hook) {
  cr_buf_t e = CR_BUF_INIT;
  if (event_begin(f, &e, hook) || cr_buf_putc(&e, '}')) {
    cr_buf_free(&e);
    return;
  }
  notify(f, hook, &e);
}

static void user_answer(flow_t *f, int status) {
  cr_buf_t b = CR_BUF_INIT;
  if (cr_buf_append_str(&b, "{\"user\":") || cr_users_user_json(&f->user, &b) || cr_buf_putc(&b, '}')) {
    cr_buf_free(&b);
    flow_error(f, 503, "server out of memory", 0);
    return;
  }
  flow_ok(f, status, &b);
}

/* signup: preSignUp -> create -> (a confirmation code -> customMessage | postConfirmation) -> 201 */
static void on_signup_code(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status == 0 && r->code) send_code(f, "confirm", r->code);
  else cr_log(CR_LOG_WARN, NULL, f->req->id, "could not make a confirmation code: %s", r->err ? r->err : "?");
  user_answer(f, 201);
}

static void on_signed_up(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status) {
    flow_error(f, r->status, r->err, 0);
    return;
  }
  if (keep_user(f, r->user)) {
    flow_error(f, 503, "server out of memory", 0);
    return;
  }
  if (f->user.confirmed) {
    notify_user(f, CR_AUTH_POST_CONFIRMATION);
    user_answer(f, 201);
    return;
  }
  if (!cr_users_code_new(f->api->users, f->user.id, "confirm", on_signup_code, f)) user_answer(f, 201);
}

static void signup_create(flow_t *f) {
  if (!cr_users_signup(f->api->users, f->login, f->password, f->pwlen, f->attrs.data, f->attrs.len, f->confirmed,
                       on_signed_up, f))
    flow_error(f, 503, "server out of memory", 0);
}

static void signup(flow_t *f) {
  const cr_jr_val_t *at = cr_jr_get(f->body, "attributes");
  if (at && at->type != CR_JR_OBJECT && at->type != CR_JR_NULL) {
    flow_error(f, 400, "attributes must be a JSON object", 0);
    return;
  }
  if (at && at->type == CR_JR_OBJECT ? cr_jr_write(&f->attrs, at) : cr_buf_append_str(&f->attrs, "{}")) {
    flow_error(f, 503, "server out of memory", 0);
    return;
  }
  /* The rules first, so preSignUp only sees sign-ups that can happen. */
  char norm[CR_USERS_MAX_LOGIN + 1];
  const char *why = NULL;
  if (cr_users_normalize_login(f->login, strlen(f->login), norm, sizeof norm, &why) ||
      cr_users_check_password(f->api->users, f->password, f->pwlen, &why) ||
      cr_users_check_attrs(f->attrs.data, f->attrs.len, &why)) {
    flow_error(f, 400, why, 0);
    return;
  }
  cr_buf_t e = CR_BUF_INIT;
  if (event_begin(f, &e, CR_AUTH_PRE_SIGN_UP) || cr_buf_append_str(&e, ",\"login\":") ||
      cr_json_escape(&e, norm, strlen(norm)) || cr_buf_append_str(&e, ",\"attributes\":") ||
      cr_buf_append(&e, f->attrs.data, f->attrs.len) || cr_buf_putc(&e, '}')) {
    cr_buf_free(&e);
    flow_error(f, 503, "server out of memory", 0);
    return;
  }
  await_hook(f, CR_AUTH_PRE_SIGN_UP, &e, signup_create);
}

/* tokens: preTokenGeneration -> access token + a refresh token (new family, or the rotated one) */
static void tokens_answer(flow_t *f) {
  cr_buf_t at = CR_BUF_INIT, b = CR_BUF_INIT;
  double ttl = 0;
  if (cr_users_access_token(f->api->users, &f->user, f->claims.data, f->claims.len, &at, &ttl) ||
      cr_buf_append_str(&b, "{\"accessToken\":") || cr_json_escape(&b, at.data, at.len) ||
      cr_buf_append_str(&b, ",\"refreshToken\":") || cr_json_escape(&b, f->refresh, strlen(f->refresh)) ||
      cr_buf_printf(&b, ",\"expiresIn\":%.0f,\"tokenType\":\"Bearer\"}", ttl)) {
    cr_buf_free(&at);
    cr_buf_free(&b);
    flow_error(f, 503, "could not sign the token", 0);
    return;
  }
  cr_buf_free(&at);
  if (f->route == R_SIGNIN) notify_user(f, CR_AUTH_POST_SIGN_IN);
  flow_ok(f, 200, &b);
}

static void on_refresh_new(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status) {
    flow_error(f, r->status, r->err, 0);
    return;
  }
  snprintf(f->refresh, sizeof f->refresh, "%s", r->refresh);
  tokens_answer(f);
}

static void tokens_after_hook(flow_t *f) {
  if (f->route == R_REFRESH) {
    tokens_answer(f);
    return;
  }
  if (!cr_users_refresh_new(f->api->users, f->user.id, on_refresh_new, f)) flow_error(f, 503, "server out of memory", 0);
}

static void tokens(flow_t *f) {
  cr_buf_t e = CR_BUF_INIT;
  if (event_begin(f, &e, CR_AUTH_PRE_TOKEN_GENERATION) || cr_buf_putc(&e, '}')) {
    cr_buf_free(&e);
    flow_error(f, 503, "server out of memory", 0);
    return;
  }
  await_hook(f, CR_AUTH_PRE_TOKEN_GENERATION, &e, tokens_after_hook);
}

static void signin_pre(flow_t *f) {
  cr_buf_t e = CR_BUF_INIT;
  if (event_begin(f, &e, CR_AUTH_PRE_SIGN_IN) || cr_buf_putc(&e, '}')) {
    cr_buf_free(&e);
    flow_error(f, 503, "server out of memory", 0);
    return;
  }
  await_hook(f, CR_AUTH_PRE_SIGN_IN, &e, tokens);
}

static void on_signed_in(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status) {
    flow_error(f, r->status, r->err, r->retry_after_ms);
    return;
  }
  if (keep_user(f, r->user)) {
    flow_error(f, 503, "server out of memory", 0);
    return;
  }
  signin_pre(f);
}

static void on_rotated(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status) {
    flow_error(f, r->status, r->err, 0);
    return;
  }
  snprintf(f->refresh, sizeof f->refresh, "%s", r->refresh);
  if (keep_user(f, r->user)) {
    flow_error(f, 503, "server out of memory", 0);
    return;
  }
  tokens(f);
}

static void on_signed_out(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status) flow_error(f, r->status, r->err, 0);
  else flow_ok(f, 204, NULL);
}

/* confirm, forgot, reset: the user by login first */
static void on_code_used(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status) {
    flow_error(f, r->status, r->err, 0);
    return;
  }
  if (f->route == R_RESET) {
    cr_buf_t b = CR_BUF_INIT;
    cr_buf_append_str(&b, "{\"ok\":true}");
    flow_ok(f, 200, &b);
    return;
  }
  f->user.confirmed = 1;
  notify_user(f, CR_AUTH_POST_CONFIRMATION);
  user_answer(f, 200);
}

static void on_code_made(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status == 0 && r->code) send_code(f, f->route == R_FORGOT ? "reset" : "confirm", r->code);
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "{\"ok\":true}");
  flow_ok(f, 202, &b);
}

static void on_login_user(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status && r->status != 404) {
    flow_error(f, r->status, r->err, 0);
    return;
  }
  int found = r->status == 0 && keep_user(f, r->user) == 0;
  cr_users_t *u = f->api->users;
  if (f->route == R_FORGOT || (f->route == R_CONFIRM && !f->code)) {
    /* The same answer whether or not the login exists (no enumeration). */
    int send = found && !f->user.disabled && (f->route == R_FORGOT || !f->user.confirmed);
    if (!send || !cr_users_code_new(u, f->user.id, f->route == R_FORGOT ? "reset" : "confirm", on_code_made, f)) {
      cr_buf_t b = CR_BUF_INIT;
      cr_buf_append_str(&b, "{\"ok\":true}");
      flow_ok(f, 202, &b);
    }
    return;
  }
  if (!found) {
    flow_error(f, 400, "no valid code: request a new one", 0);
    return;
  }
  if (f->route == R_CONFIRM && f->user.confirmed) {
    user_answer(f, 200);
    return;
  }
  if (!cr_users_code_use(u, f->user.id, f->route == R_RESET ? "reset" : "confirm", f->code, f->codelen, f->password,
                         f->pwlen, on_code_used, f))
    flow_error(f, 503, "server out of memory", 0);
}

static void on_me(void *data, const cr_users_res_t *r) {
  flow_t *f = data;
  if (r->status == 404) flow_error(f, 401, "invalid token: no such user", 0);
  else if (r->status) flow_error(f, r->status, r->err, 0);
  else if (r->user->disabled) flow_error(f, 403, "user is disabled", 0);
  else if (keep_user(f, r->user)) flow_error(f, 503, "server out of memory", 0);
  else user_answer(f, 200);
}

/* The bearer token of the Authorization header, or NULL. */
static const char *bearer(const cr_http_req_t *req, size_t *len) {
  const cr_http_header_t *h = cr_http_req_header(req, "authorization", 13);
  if (!h || h->value_len < 8 || strncasecmp(h->value, "Bearer ", 7) != 0) return NULL;
  size_t i = 7;
  while (i < h->value_len && h->value[i] == ' ') i++;
  *len = h->value_len - i;
  return *len ? h->value + i : NULL;
}

static void me(flow_t *f) {
  size_t len = 0;
  const char *tok = bearer(f->req, &len);
  if (!tok) {
    flow_error(f, 401, "missing bearer token", 0);
    return;
  }
  cr_jwt_claims_t c;
  char err[128];
  if (cr_users_verify_access(f->api->users, tok, len, &c, err, sizeof err)) {
    char msg[160];
    snprintf(msg, sizeof msg, "invalid token: %s", err);
    flow_error(f, 401, msg, 0);
    return;
  }
  char sub[sizeof c.sub];
  memcpy(sub, c.sub, sizeof sub);
  cr_jwt_claims_free(&c);
  if (!cr_users_get(f->api->users, sub, 0, on_me, f)) flow_error(f, 503, "server out of memory", 0);
}

/* --- the body --------------------------------------------------------------------------------- */

/* A string member without NULs, or NULL; *len its bytes. */
static const char *str_member(const cr_jr_val_t *o, const char *name, size_t *len) {
  const cr_jr_val_t *v = cr_jr_get(o, name);
  if (!v || v->type != CR_JR_STRING || memchr(v->str, '\0', v->len)) return NULL;
  if (len) *len = v->len;
  return v->str;
}

static int parse_body(flow_t *f) {
  char why[128], msg[200];
  f->doc = cr_jr_parse(f->req->body, f->req->body_len, why, sizeof why);
  if (!f->doc || cr_jr_root(f->doc)->type != CR_JR_OBJECT) {
    snprintf(msg, sizeof msg, "the body must be a JSON object%s%s", f->doc ? "" : ": ", f->doc ? "" : why);
    flow_error(f, 400, msg, 0);
    return -1;
  }
  f->body = cr_jr_root(f->doc);
  f->login = str_member(f->body, "login", NULL);
  f->password = str_member(f->body, "password", &f->pwlen);
  f->code = str_member(f->body, "code", &f->codelen);
  int needs_login = f->route != R_REFRESH && f->route != R_SIGNOUT;
  int needs_pw = f->route == R_SIGNUP || f->route == R_SIGNIN || f->route == R_RESET;
  if (needs_login && !f->login) return flow_error(f, 400, "login is required (a string)", 0), -1;
  if (needs_pw && !f->password) return flow_error(f, 400, "password is required (a string)", 0), -1;
  if (f->route == R_RESET && !f->code) return flow_error(f, 400, "code is required (a string)", 0), -1;
  return 0;
}

static void start(flow_t *f) {
  cr_users_t *u = f->api->users;
  size_t rl = 0;
  const char *rt = NULL;
  if (f->route != R_ME && parse_body(f)) return;
  if (f->route == R_REFRESH || f->route == R_SIGNOUT) {
    rt = str_member(f->body, "refreshToken", &rl);
    if (!rt) {
      flow_error(f, 400, "refreshToken is required (a string)", 0);
      return;
    }
  }
  cr_users_op_t *op = (cr_users_op_t *)1;
  switch (f->route) {
  case R_SIGNUP: signup(f); return;
  case R_SIGNIN: op = cr_users_signin(u, f->login, f->password, f->pwlen, f->req->ip, on_signed_in, f); break;
  case R_REFRESH: op = cr_users_refresh_rotate(u, rt, rl, on_rotated, f); break;
  case R_SIGNOUT: op = cr_users_signout(u, rt, rl, on_signed_out, f); break;
  case R_CONFIRM:
  case R_FORGOT:
  case R_RESET: op = cr_users_get(u, f->login, 1, on_login_user, f); break;
  case R_ME: me(f); return;
  }
  if (!op) flow_error(f, 503, "server out of memory", 0);
}

/* --- operators: /_/api/users ------------------------------------------------------------------- */

typedef struct {
  cr_http_req_t *req;
  int del;
} admin_t_;

static void on_admin_user(void *data, const cr_users_res_t *r) {
  admin_t_ *a = data;
  if (r->status) respond_error(a->req, r->status, r->err, 0);
  else if (a->del) respond(a->req, 204, "", 0);
  else {
    cr_buf_t b = CR_BUF_INIT;
    if (cr_users_user_json(r->user, &b)) respond_error(a->req, 503, "server out of memory", 0);
    else respond(a->req, 200, b.data, b.len);
    cr_buf_free(&b);
  }
  free(a);
}

static void on_admin_list(void *data, const cr_users_res_t *r) {
  admin_t_ *a = data;
  if (r->status) {
    respond_error(a->req, r->status, r->err, 0);
    free(a);
    return;
  }
  cr_buf_t b = CR_BUF_INIT;
  int bad = cr_buf_append_str(&b, "{\"users\":[");
  for (int i = 0; i < r->nusers && !bad; i++) {
    if (i) bad |= cr_buf_putc(&b, ',');
    bad |= cr_users_user_json(&r->users[i], &b);
  }
  bad |= cr_buf_append_str(&b, "],\"cursor\":");
  if (r->cursor && *r->cursor) bad |= cr_json_escape(&b, r->cursor, strlen(r->cursor));
  else bad |= cr_buf_append_str(&b, "null");
  bad |= cr_buf_putc(&b, '}');
  if (bad) respond_error(a->req, 503, "server out of memory", 0);
  else respond(a->req, 200, b.data, b.len);
  cr_buf_free(&b);
  free(a);
}

/* The value of ?name= in the query (percent-decoded) into out, or "" . */
static void query_param(const cr_http_req_t *req, const char *name, char *out, size_t n) {
  out[0] = '\0';
  size_t nl = strlen(name);
  const char *q = req->query, *end = req->query + req->query_len;
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *e = amp ? amp : end;
    if ((size_t)(e - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
      cr_buf_t b = CR_BUF_INIT;
      if (cr_url_decode(q + nl + 1, (size_t)(e - q - nl - 1), 1, &b) == 0 && b.len < n && !memchr(b.data, 0, b.len)) {
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
      }
      cr_buf_free(&b);
      return;
    }
    q = e + 1;
  }
}

static int is_id(const char *s) {
  size_t n = strlen(s);
  if (n != CR_USERS_ID_LEN) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

static void method_not_allowed(cr_http_req_t *req, const char *allow) {
  cr_http_respond_start(req, 405);
  cr_http_respond_header(req, "Allow", 5, allow, strlen(allow));
  static const char body[] = "{\"error\":\"method not allowed\"}";
  cr_http_respond_finish(req, "application/json", body, sizeof body - 1);
}

static void admin_users(const cr_accounts_api_t *api, cr_http_req_t *req, const char *rest, size_t rlen) {
  if (cr_admin_guard(api->admin, req)) return;
  admin_t_ *a = calloc(1, sizeof *a);
  if (!a) {
    respond_error(req, 503, "server out of memory", 0);
    return;
  }
  a->req = req;
  cr_users_op_t *op = (cr_users_op_t *)1;
  if (rlen == 0) {
    if (req->method != CR_M_GET) {
      free(a);
      method_not_allowed(req, "GET");
      return;
    }
    char cursor[64], limit[16];
    query_param(req, "cursor", cursor, sizeof cursor);
    query_param(req, "limit", limit, sizeof limit);
    op = cr_users_list(api->users, cursor, limit[0] ? atoi(limit) : 50, on_admin_list, a);
  } else if (rlen == SIZE_MAX) { /* /_/api/accounts/rotate-key */
    free(a);
    if (req->method != CR_M_POST) {
      method_not_allowed(req, "POST");
      return;
    }
    char kid[64], err[300];
    if (cr_authkeys_rotate(cr_users_keys(api->users), kid, sizeof kid, err, sizeof err)) {
      cr_log(CR_LOG_ERROR, NULL, req->id, "rotating the accounts' signing key: %s", err);
      respond_error(req, 503, "could not rotate the signing key", 0);
      return;
    }
    cr_log(CR_LOG_INFO, NULL, req->id, "accounts: new signing key %s", kid);
    cr_buf_t b = CR_BUF_INIT;
    cr_buf_append_str(&b, "{\"kid\":");
    cr_json_escape(&b, kid, strlen(kid));
    cr_buf_putc(&b, '}');
    respond(req, 200, b.data, b.len);
    cr_buf_free(&b);
    return;
  } else {
    /* /{key}[/disable|/enable] */
    const char *seg = rest + 1;
    size_t slen = rlen - 1;
    const char *slash = memchr(seg, '/', slen);
    size_t klen = slash ? (size_t)(slash - seg) : slen;
    const char *action = slash ? slash + 1 : NULL;
    size_t alen = slash ? slen - klen - 1 : 0;
    char key[CR_USERS_MAX_LOGIN + 1];
    cr_buf_t kb = CR_BUF_INIT;
    int ok = klen && cr_url_decode(seg, klen, 0, &kb) == 0 && kb.len < sizeof key && !memchr(kb.data, 0, kb.len);
    if (ok) {
      memcpy(key, kb.data, kb.len);
      key[kb.len] = '\0';
    }
    cr_buf_free(&kb);
    if (!ok) {
      free(a);
      respond_error(req, 404, "no such user", 0);
      return;
    }
    if (action) {
      int dis = alen == 7 && memcmp(action, "disable", 7) == 0 ? 1 : alen == 6 && memcmp(action, "enable", 6) == 0 ? 0 : -1;
      if (dis < 0 || !is_id(key)) {
        free(a);
        respond_error(req, 404, dis < 0 ? "not found" : "no such user (use the id)", 0);
        return;
      }
      if (req->method != CR_M_POST) {
        free(a);
        method_not_allowed(req, "POST");
        return;
      }
      op = cr_users_update(api->users, key, NULL, 0, dis, -1, on_admin_user, a);
    } else if (req->method == CR_M_DELETE) {
      if (!is_id(key)) {
        free(a);
        respond_error(req, 404, "no such user (use the id)", 0);
        return;
      }
      a->del = 1;
      op = cr_users_delete(api->users, key, on_admin_user, a);
    } else if (req->method == CR_M_GET) {
      op = cr_users_get(api->users, key, !is_id(key), on_admin_user, a);
    } else {
      free(a);
      method_not_allowed(req, "GET, DELETE");
      return;
    }
  }
  if (!op) {
    free(a);
    respond_error(req, 503, "server out of memory", 0);
  }
}

/* --- routing ------------------------------------------------------------------------------------ */

static const struct {
  const char *path;
  int route;
  unsigned method;
} routes[] = {
    {"/_/auth/signup", R_SIGNUP, CR_M_POST}, {"/_/auth/confirm", R_CONFIRM, CR_M_POST},
    {"/_/auth/signin", R_SIGNIN, CR_M_POST}, {"/_/auth/refresh", R_REFRESH, CR_M_POST},
    {"/_/auth/signout", R_SIGNOUT, CR_M_POST}, {"/_/auth/forgot", R_FORGOT, CR_M_POST},
    {"/_/auth/reset", R_RESET, CR_M_POST},   {"/_/auth/me", R_ME, CR_M_GET},
};

static int path_is(const cr_http_req_t *req, const char *p) {
  size_t n = strlen(p);
  return req->path_len == n && memcmp(req->path, p, n) == 0;
}

int cr_accounts_api_handle(const cr_accounts_api_t *api, cr_http_req_t *req) {
  if (!api || !api->users) return 0;
  static const char users_prefix[] = "/_/api/users";
  size_t upl = sizeof users_prefix - 1;
  if (req->path_len >= upl && memcmp(req->path, users_prefix, upl) == 0 &&
      (req->path_len == upl || req->path[upl] == '/')) {
    size_t rl = req->path_len - upl;
    if (rl == 1) rl = 0; /* a trailing slash */
    admin_users(api, req, req->path + upl, rl);
    return 1;
  }
  if (path_is(req, "/_/api/accounts/rotate-key")) {
    admin_users(api, req, NULL, SIZE_MAX);
    return 1;
  }
  if (req->path_len < 8 || memcmp(req->path, "/_/auth/", 8) != 0) return 0;
  unsigned asked = 0;
  if (api->cors.set && cr_cors_is_preflight(req, &asked)) {
    cr_cors_preflight(&api->cors, req, 1);
    return 1;
  }
  if (path_is(req, "/_/auth/.well-known/jwks.json")) {
    if (req->method != CR_M_GET && req->method != CR_M_HEAD) {
      method_not_allowed(req, "GET, HEAD");
      return 1;
    }
    char err[200];
    cr_authkeys_t *k = cr_users_keys(api->users);
    cr_authkeys_refresh(k, 0, err, sizeof err);
    size_t len = 0;
    const char *text = cr_authkeys_jwks(k, &len);
    cr_http_respond_start(req, 200);
    if (api->cors.set) cr_cors_headers(&api->cors, req);
    cr_http_respond_header(req, "Cache-Control", 13, "public, max-age=60", 18);
    cr_http_respond_finish(req, "application/json", text, len);
    return 1;
  }
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    if (!path_is(req, routes[i].path)) continue;
    if (!(req->method & routes[i].method)) {
      method_not_allowed(req, routes[i].method == CR_M_GET ? "GET" : "POST");
      return 1;
    }
    flow_t *f = calloc(1, sizeof *f);
    if (!f) {
      respond_error(req, 503, "server out of memory", 0);
      return 1;
    }
    f->api = api;
    f->req = req;
    f->route = routes[i].route;
    start(f);
    return 1;
  }
  respond_error(req, 404, "not found", 0);
  return 1;
}
