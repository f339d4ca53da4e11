/* httpout.c - the primitive under crescent.http (httpout.h). */
#include "httpout.h"

#include <ctype.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "clock.h"
#include "invoke.h"
#include "pool.h"
#include "registry.h"
#include "vm.h"

#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_REDIRECTS 20

/* One request an invocation waits on. */
typedef struct {
  const cr_http_config_t *cfg;
  cr_invocation_t *inv;
  cr_vm_t *vm;
  cr_outreq_t *req;
  uint64_t t0;
  cr_egress_policy_t policy;
} hreq_t;

static int allow(void *ud, const char *host, const struct sockaddr *addr, char *why, size_t whylen) {
  hreq_t *h = ud;
  return cr_egress_check(&h->policy, host, addr, why, whylen);
}

static int charge(void *ud, long long delta) {
  hreq_t *h = ud;
  return cr_vm_charge(h->vm, delta);
}

static void hreq_detach(void *pending) {
  hreq_t *h = pending;
  cr_outreq_cancel(h->req); /* gives back what it charged */
  free(h);
}

typedef struct {
  const cr_outres_t *res;
  lua_State *co;
} build_t;

/* The answer as a table {status, headers, rawHeaders, body, url, redirects},
 * moved to the coroutine (lua_cpcall: no closure is made per answer). */
static int build_result(lua_State *L) {
  const build_t *bt = lua_touserdata(L, 1);
  const cr_outres_t *res = bt->res;
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, res->status);
  lua_setfield(L, -2, "status");
  lua_createtable(L, 0, res->nheaders);
  lua_createtable(L, 2 * res->nheaders, 0);
  const char *p = res->hdrs;
  for (int i = 0; i < res->nheaders; i++) {
    size_t nl = strlen(p);
    const char *v = p + nl + 1;
    size_t vl = strlen(v);
    lua_pushlstring(L, p, nl);
    lua_rawseti(L, -2, 2 * i + 1);
    lua_pushlstring(L, v, vl);
    lua_rawseti(L, -2, 2 * i + 2);
    /* headers[lower-case name]: repeated fields joined with ", " (RFC 9110 5.3). */
    int upper = 0;
    for (size_t k = 0; k < nl && !upper; k++) upper = p[k] >= 'A' && p[k] <= 'Z';
    if (!upper) {
      lua_rawgeti(L, -1, 2 * i + 1); /* the same string */
    } else if (nl <= 128) {
      char low[128];
      for (size_t k = 0; k < nl; k++) low[k] = (char)tolower((unsigned char)p[k]);
      lua_pushlstring(L, low, nl);
    } else {
      luaL_Buffer lb;
      luaL_buffinit(L, &lb);
      for (size_t k = 0; k < nl; k++) luaL_addchar(&lb, (char)tolower((unsigned char)p[k]));
      luaL_pushresult(&lb);
    }
    lua_pushvalue(L, -1);
    lua_rawget(L, -4);
    if (lua_isstring(L, -1)) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, vl);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, v, vl);
    }
    lua_rawset(L, -4);
    p = v + vl + 1;
  }
  lua_setfield(L, -3, "rawHeaders");
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, res->body, res->body_len);
  lua_setfield(L, -2, "body");
  if (res->redirects) { /* otherwise crescent.http sets the URL asked for, a string already */
    lua_pushstring(L, res->url);
    lua_setfield(L, -2, "url");
  }
  lua_pushinteger(L, res->redirects);
  lua_setfield(L, -2, "redirects");
  lua_xmove(L, bt->co, 1);
  return 0;
}

static void on_done(void *data, const cr_outres_t *res) {
  hreq_t *h = data;
  cr_invocation_t *inv = h->inv;
  cr_vm_t *vm = h->vm;
  inv->http_ns += cr_clock_ns() - h->t0;
  free(h);
  inv->http_bytes_in += res->bytes_in;
  inv->http_bytes_out += res->bytes_out;
  /* The answer's bytes move into the state: give back their charge first. */
  cr_vm_charge(vm, -res->charged);
  lua_State *co = inv->co;
  if (res->err) {
    inv->http_errors++;
    lua_pushnil(co);
    lua_pushstring(co, res->err);
    cr_invoke_resume(inv, 2);
    return;
  }
  lua_State *L = vm->L;
  int top = lua_gettop(L);
  build_t bt = {res, co};
#ifndef CRESCENT_NO_LIMITS
  vm->mem_strict = 1;
#endif
  int rc = lua_cpcall(L, build_result, &bt);
  vm->mem_strict = 0;
  lua_settop(L, top);
  if (rc == 0) {
    cr_invoke_resume(inv, 1);
    return;
  }
  inv->http_errors++;
  lua_pushnil(co);
  lua_pushliteral(co, "memory limit exceeded");
  cr_invoke_resume(inv, 2);
}

static int lower_eq(const char *a, size_t n, const char *b) { return strlen(b) == n && strncasecmp(a, b, n) == 0; }

/* Header names the client writes itself, or that would change the framing. */
static const char *const reserved_headers[] = {"host", "content-length", "transfer-encoding", "connection",
                                               "keep-alive", "upgrade", "te", "trailer", "proxy-connection",
                                               "expect", NULL};

static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c);
}

static int arg_error(lua_State *L, int level, const char *fmt, const char *a) {
  luaL_where(L, level);
  lua_pushfstring(L, fmt, a);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Checks the headers table (index idx), raising on a bad entry; with b, also
 * writes them as "Name: value\r\n" lines (b->len is (size_t)-1 when out of
 * memory). *has_ct: a content-type was given. Call it once without b first:
 * with b it must not raise. */
static void header_lines(lua_State *L, int idx, int level, cr_buf_t *b, int *has_ct) {
  if (b) b->len = 0;
  *has_ct = 0;
  if (lua_isnil(L, idx)) return;
  if (!lua_istable(L, idx))
    arg_error(L, level, "bad argument #1 to 'http.request' (headers: table expected, got %s)",
              luaL_typename(L, idx));
  size_t total = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      arg_error(L, level, "bad argument #1 to 'http.request' (headers: names must be strings, got %s)",
                luaL_typename(L, -2));
    size_t nl, vl;
    const char *name = lua_tolstring(L, -2, &nl);
    int vt = lua_type(L, -1);
    if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
      arg_error(L, level, "bad argument #1 to 'http.request' (headers: the value of '%s' must be a string)", name);
    const char *value = lua_tolstring(L, -1, &vl);
    if (nl == 0 || nl > 256) arg_error(L, level, "bad argument #1 to 'http.request' (headers: bad name '%s')", name);
    for (size_t i = 0; i < nl; i++)
      if (!is_tchar((unsigned char)name[i]))
        arg_error(L, level, "bad argument #1 to 'http.request' (headers: bad name '%s')", name);
    for (size_t i = 0; i < vl; i++) {
      unsigned char c = (unsigned char)value[i];
      if ((c < 0x20 && c != '\t') || c == 0x7f)
        arg_error(L, level,
                  "bad argument #1 to 'http.request' (headers: the value of '%s' holds a control character "
                  "(CR, LF, NUL, ...))",
                  name);
    }
    for (const char *const *r = reserved_headers; *r; r++)
      if (lower_eq(name, nl, *r))
        arg_error(L, level, "bad argument #1 to 'http.request' (headers: '%s' is set by crescent.http)", name);
    if (lower_eq(name, nl, "content-type")) *has_ct = 1;
    total += nl + vl + 4;
    if (total > MAX_HEADER_BYTES)
      arg_error(L, level, "bad argument #1 to 'http.request' (headers: more than %s bytes)", "65536");
    if (b && b->len != (size_t)-1 &&
        (cr_buf_append(b, name, nl) || cr_buf_append(b, ": ", 2) || cr_buf_append(b, value, vl) ||
         cr_buf_append(b, "\r\n", 2))) {
      cr_buf_free(b);
      b->len = (size_t)-1;
    }
    lua_pop(L, 1);
  }
}

/* Does b, "Name: value\r\n" lines, hold a field named name (lower case)? */
static int has_header(const cr_buf_t *b, const char *name) {
  size_t n = strlen(name);
  for (size_t off = 0; off < b->len;) {
    const char *line = b->data + off, *nl = memchr(line, '\n', b->len - off);
    size_t ll = nl ? (size_t)(nl - line) + 1 : b->len - off;
    if (ll > n && line[n] == ':' && strncasecmp(line, name, n) == 0) return 1;
    off += ll;
  }
  return 0;
}

static int nil_err(lua_State *L, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* http_request(level, method, url, headers, body, json, timeout, redirects, maxBody, insecure):
 * upvalue the cr_http_config_t. stdlib/http.lua checked the types of all
 * but headers. */
static int l_request(lua_State *L) {
  const cr_http_config_t *cfg = lua_touserdata(L, lua_upvalueindex(1));
  int level = (int)lua_tointeger(L, 1);
  cr_invocation_t *inv = cr_invoke_current(L);
  if (!inv) {
    luaL_where(L, level);
    lua_pushliteral(L, "crescent.http calls are only possible inside a handler, not during init (module top level)");
    lua_concat(L, 2);
    return lua_error(L);
  }
  size_t ulen, blen = 0;
  const char *method = luaL_checkstring(L, 2);
  const char *url = luaL_checklstring(L, 3, &ulen);
  const char *body = lua_isnil(L, 5) ? NULL : luaL_checklstring(L, 5, &blen);
  int json = lua_toboolean(L, 6);
  double timeout = luaL_optnumber(L, 7, 0);
  int redirects = (int)luaL_optinteger(L, 8, 5);
  double max_body = luaL_optnumber(L, 9, -1);
  int insecure = lua_toboolean(L, 10);
  cr_url_parts_t u;
  char err[256];
  if (cr_outbound_url_parse(url, ulen, &u, err, sizeof err)) {
    luaL_where(L, level);
    lua_pushfstring(L, "bad argument #1 to 'http.request' (%s)", err);
    lua_concat(L, 2);
    return lua_error(L);
  }
  int has_ct;
  header_lines(L, 4, level, NULL, &has_ct); /* raises on a bad header: nothing allocated yet */
  cr_buf_t hb = CR_BUF_INIT;
  header_lines(L, 4, level, &hb, &has_ct);
  if (hb.len != (size_t)-1 && inv->trace && !has_header(&hb, "traceparent")) {
    /* W3C trace context: the upstream continues the invocation's trace (a
     * traceparent the function set itself is sent instead). */
    if (cr_buf_append_str(&hb, "traceparent: ") || cr_buf_append_str(&hb, inv->trace) || cr_buf_append_str(&hb, "\r\n")) {
      cr_buf_free(&hb);
      hb.len = (size_t)-1;
    }
  }
  if (hb.len == (size_t)-1 || (json && !has_ct && cr_buf_append_str(&hb, "Content-Type: application/json\r\n"))) {
    cr_buf_free(&hb);
    return nil_err(L, "out of memory");
  }
  uint64_t now = cr_clock_ns();
  if (now >= inv->deadline_ns) {
    cr_buf_free(&hb);
    inv->http_requests++;
    inv->http_errors++;
    return nil_err(L, "timeout");
  }
  if (!cfg || !cfg->ob) {
    cr_buf_free(&hb);
    return nil_err(L, "http unavailable");
  }
  if ((int)inv->http_requests >= cfg->max_requests) {
    cr_buf_free(&hb);
    char msg[64];
    snprintf(msg, sizeof msg, "too many requests (%d per invocation)", cfg->max_requests);
    return nil_err(L, msg);
  }
  if (!cr_invoke_can_yield(L, inv)) {
    cr_buf_free(&hb);
    return nil_err(L, "cannot call crescent.http here (inside a C callback)");
  }
  hreq_t *h = calloc(1, sizeof *h);
  if (!h) {
    cr_buf_free(&hb);
    return nil_err(L, "out of memory");
  }
  cr_instance_t *inst = inv->inst;
  const cr_settings_t *s = &inst->ver->settings;
  h->cfg = cfg;
  h->inv = inv;
  h->vm = inst->vm;
  h->t0 = now;
  h->policy.entries = s->negress >= 0 ? (const char *const *)s->egress : NULL;
  h->policy.nentries = s->negress >= 0 ? s->negress : 0;
  h->policy.allow_private = cfg->allow_private;
  h->policy.self = cfg->self;
  /* The deadline: the call's timeout, within the invocation's time less a
   * margin (a tenth of what is left, at most 50 ms) to answer "timeout" in. */
  uint64_t left = inv->deadline_ns - now, margin = left / 10;
  if (margin > 50000000u) margin = 50000000u;
  uint64_t deadline = inv->deadline_ns - margin;
  if (timeout > 0 && now + (uint64_t)(timeout * 1e9) < deadline) deadline = now + (uint64_t)(timeout * 1e9);
  size_t maxb = cfg->max_response;
  if (max_body >= 0 && (size_t)max_body < maxb) maxb = (size_t)max_body;
  /* The pool's partition: this version of the function (one egress policy). */
  char partition[280];
  size_t fl = strlen(inst->ver->fn->name), ll = (size_t)inst->ver->label_len;
  if (fl > sizeof partition - ll - 2) fl = sizeof partition - ll - 2;
  memcpy(partition, inst->ver->fn->name, fl);
  partition[fl] = '@';
  memcpy(partition + fl + 1, inst->ver->label, ll);
  partition[fl + 1 + ll] = '\0';
  cr_outreq_opts_t o = {.method = method,
                        .url = url,
                        .url_len = ulen,
                        .parts = &u,
                        .headers = hb.data,
                        .headers_len = hb.len,
                        .body = body,
                        .body_len = blen,
                        .has_body = body != NULL,
                        .deadline_ns = deadline,
                        .max_redirects = redirects < 0 ? 0 : redirects > MAX_REDIRECTS ? MAX_REDIRECTS : redirects,
                        .max_body = maxb,
                        .insecure = insecure,
                        .allow = allow,
                        .charge = charge,
                        .partition = partition,
                        .ud = h};
  inv->http_requests++;
  h->req = cr_outreq_start(cfg->ob, &o, on_done, h, err, sizeof err);
  cr_buf_free(&hb);
  if (!h->req) {
    free(h);
    inv->http_errors++;
    return nil_err(L, err);
  }
  return cr_invoke_yield(L, inv, h, hreq_detach);
}

void cr_http_push_primitive(lua_State *L, const cr_http_config_t *cfg) {
  lua_pushlightuserdata(L, (void *)cfg);
  lua_pushcclosure(L, l_request, 1);
}
