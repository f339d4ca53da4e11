/* auth.c - crescent.auth's primitive (the contract is in auth.h). */
#include "auth.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "invoke.h"
#include "jsontext.h"

enum { OP_SIGNUP, OP_SIGNIN, OP_VERIFY, OP_GET, OP_UPDATE, OP_DISABLE, OP_ENABLE, OP_DELETE, OP_LIST,
       OP_SIGNIN_RT /* sign-in's second step: its refresh token */ };
static const char *const op_names[] = {"signUp", "signIn", "verify", "getUser", "updateUser", "disableUser",
                                       "enableUser", "deleteUser", "listUsers", NULL};

/* One call an invocation waits on; its op is the step in flight. */
typedef struct {
  cr_invocation_t *inv;
  cr_users_t *u;
  cr_users_op_t *op;
  int kind;
  cr_buf_t partial; /* sign-in: the answer's text so far */
} acall_t;

static void acall_free(acall_t *c) {
  cr_buf_free(&c->partial);
  free(c);
}

static void acall_detach(void *pending) {
  acall_t *c = pending;
  cr_users_cancel(c->op);
  acall_free(c);
}

/* Resumes with text, nil | nil, err | nil, nil (not found). */
static void resume(acall_t *c, const char *text, size_t len, const char *err) {
  cr_invocation_t *inv = c->inv;
  lua_State *co = inv->co;
  if (text) lua_pushlstring(co, text, len);
  else lua_pushnil(co);
  if (err) lua_pushstring(co, err);
  else lua_pushnil(co);
  acall_free(c);
  cr_invoke_resume(inv, 2);
}

static void on_done(void *data, const cr_users_res_t *r) {
  acall_t *c = data;
  c->op = NULL;
  if (r->status == 404 && c->kind == OP_GET) {
    resume(c, NULL, 0, NULL);
    return;
  }
  if (r->status) {
    resume(c, NULL, 0, r->err ? r->err : "failed");
    return;
  }
  cr_buf_t b = CR_BUF_INIT;
  int bad = 0;
  switch (c->kind) {
  case OP_SIGNIN: {
    /* Signed in: the access token now, a refresh token (its own family) next. */
    cr_buf_t at = CR_BUF_INIT;
    double ttl = 0;
    bad = cr_users_access_token(c->u, r->user, NULL, 0, &at, &ttl) ||
          cr_buf_append_str(&c->partial, "{\"accessToken\":") || cr_json_escape(&c->partial, at.data, at.len) ||
          cr_buf_printf(&c->partial, ",\"expiresIn\":%.0f,\"tokenType\":\"Bearer\",\"refreshToken\":", ttl);
    cr_buf_free(&at);
    c->kind = OP_SIGNIN_RT;
    if (!bad && (c->op = cr_users_refresh_new(c->u, r->user->id, on_done, c))) return;
    resume(c, NULL, 0, "out of memory");
    return;
  }
  case OP_SIGNIN_RT:
    bad = cr_json_escape(&c->partial, r->refresh, strlen(r->refresh)) || cr_buf_putc(&c->partial, '}');
    if (bad) resume(c, NULL, 0, "out of memory");
    else {
      cr_buf_t p = c->partial;
      c->partial = (cr_buf_t)CR_BUF_INIT;
      resume(c, p.data, p.len, NULL);
      cr_buf_free(&p);
    }
    return;
  case OP_DELETE: bad = cr_buf_append_str(&b, "true"); break;
  case OP_LIST:
    bad = cr_buf_append_str(&b, "{\"users\":[");
    for (int i = 0; i < r->nusers && !bad; i++) {
      if (i) bad |= cr_buf_putc(&b, ',');
      bad |= cr_users_user_json(&r->users[i], &b);
    }
    bad |= cr_buf_append_str(&b, "],\"cursor\":");
    bad |= r->cursor && *r->cursor ? cr_json_escape(&b, r->cursor, strlen(r->cursor)) : cr_buf_append_str(&b, "null");
    bad |= cr_buf_putc(&b, '}');
    break;
  default: bad = cr_users_user_json(r->user, &b);
  }
  if (bad) resume(c, NULL, 0, "out of memory");
  else resume(c, b.data, b.len, NULL);
  cr_buf_free(&b);
}

static const char *opt_str(lua_State *L, int i, size_t *len) {
  *len = 0;
  return lua_type(L, i) == LUA_TSTRING ? lua_tolstring(L, i, len) : NULL;
}

/* auth_call(op, a, b, c, d): the arguments are strings (or nil) checked by
 * stdlib/auth.lua. Upvalue: the cr_users_t ** . */
static int l_auth(lua_State *L) {
  cr_users_t *const *up = lua_touserdata(L, lua_upvalueindex(1));
  cr_users_t *u = up ? *up : NULL;
  int kind = luaL_checkoption(L, 1, NULL, op_names);
  if (!u) {
    lua_pushnil(L);
    lua_pushliteral(L, "accounts are off (start the server with --accounts)");
    return 2;
  }
  size_t l2, l3, l4, l5;
  const char *a = opt_str(L, 2, &l2), *b = opt_str(L, 3, &l3), *c4 = opt_str(L, 4, &l4), *d = opt_str(L, 5, &l5);
  if (kind == OP_VERIFY) {
    cr_jwt_claims_t cl;
    char err[128];
    if (!a || cr_users_verify_access(u, a, l2, &cl, err, sizeof err)) {
      lua_pushnil(L);
      lua_pushstring(L, a ? err : "malformed token");
      return 2;
    }
    lua_pushlstring(L, cl.claims_json, cl.claims_len);
    cr_jwt_claims_free(&cl);
    return 1;
  }
  cr_invocation_t *inv = cr_invoke_for_call(L, "crescent.auth calls are", "crescent.auth");
  if (!inv) return 2;
  acall_t *c = calloc(1, sizeof *c);
  if (!c) {
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
  }
  c->inv = inv;
  c->u = u;
  c->kind = kind;
  switch (kind) {
  case OP_SIGNUP: /* login, password, attributes JSON or nil, "1" confirmed */
    c->op = cr_users_signup(u, a ? a : "", b ? b : "", l3, c4, l4, d && d[0] == '1', on_done, c);
    break;
  case OP_SIGNIN: c->op = cr_users_signin(u, a ? a : "", b ? b : "", l3, "function", on_done, c); break;
  case OP_GET: {
    /* An id, or else a login. */
    int is_id = a && l2 == CR_USERS_ID_LEN && strspn(a, "0123456789abcdef") == l2;
    c->op = cr_users_get(u, a ? a : "", !is_id, on_done, c);
    break;
  }
  case OP_UPDATE: c->op = cr_users_update(u, a ? a : "", b, l3, -1, -1, on_done, c); break;
  case OP_DISABLE: c->op = cr_users_update(u, a ? a : "", NULL, 0, 1, -1, on_done, c); break;
  case OP_ENABLE: c->op = cr_users_update(u, a ? a : "", NULL, 0, 0, -1, on_done, c); break;
  case OP_DELETE: c->op = cr_users_delete(u, a ? a : "", on_done, c); break;
  case OP_LIST: c->op = cr_users_list(u, a ? a : "", b ? atoi(b) : 50, on_done, c); break;
  }
  if (!c->op) {
    acall_free(c);
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
  }
  return cr_invoke_yield(L, inv, c, acall_detach);
}

void cr_auth_push_primitive(lua_State *L, cr_users_t *const *users) {
  lua_pushlightuserdata(L, (void *)users);
  lua_pushcclosure(L, l_auth, 1);
}
