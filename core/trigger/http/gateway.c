/* gateway.c - HTTP requests to invocations, results to HTTP responses. */
#include "gateway.h"

#include <ctype.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <uv.h>

#include "clock.h"
#include "error.h"
#include "dispatch.h"
#include "json.h"
#include "accounts_api.h"
#include "apikeys.h"
#include "gwauth.h"
#include "keys_api.h"
#include "log.h"
#include "policy.h"
#include "rcache.h"
#include "scache.h"
#include "text.h"
#include "url.h"
#include "users.h"
#include "vm.h"

struct cr_gateway_s {
  cr_dispatch_t *dispatch;
  cr_gateway_opts_t opts;
  cr_ratelimit_t *ratelimit; /* the functions' rateLimit buckets */
  cr_gwauth_t *auth;         /* the functions' auth */
  cr_rcache_t *rcache;       /* answers of functions with cache = { ... } */
  cr_scache_t *scache;       /* and those of cache = { shared = true } in Redis */
  struct cache_wait_s *cwaits; /* requests waiting on a shared lookup */
  cr_apikeys_t *apikeys;     /* auth = "apikey" (gwauth calls it) */
  cr_keys_api_t *keys_api;   /* /_/api/keys, /_/api/plans */
  cr_buf_t body; /* scratch for encoding response bodies */
  int ext;       /* this trigger's index in an instance's ext[] */
};

#define REPORT_PATH 160

/* What an HTTP call keeps (in cr_call_t.data). */
typedef struct {
  cr_gateway_t *g;
  cr_route_match_t match;
  int rl_set;        /* a rate limit passed it: its headers go on the answer */
  int rl_burst;
  double rl_rps;
  cr_rl_result_t rl;
  cr_identity_t *auth; /* who calls (auth = ...), or NULL */
  struct miss_s *miss; /* a cache miss: where to store the answer (malloc'd), or NULL */
  /* For the report line, written after the answer (when the request may be gone): the method
   * (llhttp's static name) and the path, its first REPORT_PATH bytes. */
  const char *method;
  unsigned short path_len;
  char path[REPORT_PATH];
} http_call_t;
_Static_assert(sizeof(http_call_t) <= CR_CALL_DATA, "an HTTP call's data must fit in a call");

/* A cache miss: what storing its answer needs. */
typedef struct miss_s {
  unsigned ver;          /* the version the key was made for */
  uint64_t epoch;        /* the function's purge epoch when it missed */
  uint64_t began_ns;     /* monotonic, when it missed (path purges after it drop the answer) */
  int stamped;           /* shared: the lookup answered, st is what the store must find */
  cr_scache_stamps_t st;
  size_t klen;
  char key[];
} miss_t;

/* Does ver's cache live in Redis too (shared = true, and a Redis to share in)? */
static int shared_cache(const cr_gateway_t *g, const cr_fnver_t *ver) {
  return ver->settings.cache.shared && cr_scache_enabled(g->scache);
}

/* What the HTTP trigger keeps per instance (its ext[] entry): the strings
 * its events give out (event.method, event.path), kept alive and referenced
 * so they are not hashed and allocated again, the events' metatable, and the
 * current event. */
typedef struct {
  int method_refs[8];
  int path_ref;
  size_t path_len;
  char path[56];
  int event_mt_ref;  /* the events' metatable */
  const void *event; /* the current invocation's event table (lazy fields check it) */
} http_inst_t;

static const cr_trigger_t http_trigger;

static http_call_t *hcall(cr_call_t *call) { return (http_call_t *)(void *)call->data.bytes; }
static cr_http_req_t *hreq(cr_call_t *call) { return call->ctx; }

/* Registry keys (their addresses). */
static char http_error_mt_key;

/* auth = "user": a crescent access token, verified by the accounts service (gwauth's verify_user).
 * -2 while accounts are off (no --accounts). */
static int verify_user(void *ud, const char *tok, size_t len, cr_identity_t *out, char *err, size_t errlen) {
  const cr_accounts_api_t *acc = ud;
  if (!acc || !acc->users) {
    snprintf(err, errlen, "auth = \"user\" needs the accounts service (--accounts)");
    return -2;
  }
  cr_jwt_claims_t c;
  if (cr_users_verify_access(acc->users, tok, len, &c, err, errlen)) return -1;
  snprintf(out->principal, sizeof out->principal, "%s", c.sub);
  out->json = c.claims_json; /* taken over */
  out->json_len = c.claims_len;
  c.claims_json = NULL;
  cr_jwt_claims_free(&c);
  return 0;
}

cr_gateway_t *cr_gateway_new(cr_dispatch_t *dispatch, const cr_gateway_opts_t *opts) {
  int ext = cr_instance_ext_slot(&http_trigger);
  if (ext < 0) return NULL;
  cr_gateway_t *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->dispatch = dispatch;
  g->ext = ext;
  g->opts.max_response = 6u * 1024 * 1024;
  g->opts.max_body = 6u * 1024 * 1024;
  if (opts) g->opts = *opts;
  g->ratelimit = cr_ratelimit_new(g->opts.redis, g->opts.prefix);
  g->rcache = cr_rcache_new(g->opts.cache_size ? g->opts.cache_size : 64u * 1024 * 1024);
  g->apikeys = cr_apikeys_new(g->opts.redis, g->opts.prefix, g->opts.shm);
  cr_gwauth_opts_t ao = {.registry = g->opts.registry, .redis = g->opts.redis, .prefix = g->opts.prefix,
                         .shm = g->opts.shm, .fncalls = g->opts.fncalls, .default_kind = g->opts.default_auth,
                         .apikey_check = cr_apikeys_check_hook, .apikey_ctx = g->apikeys,
                         .verify_user = verify_user, .verify_user_ud = (void *)g->opts.accounts};
  g->auth = cr_gwauth_new(&ao);
  g->scache = g->opts.loop ? cr_scache_new(g->opts.loop, g->opts.redis, g->opts.prefix, g->opts.registry, g->opts.shm)
                           : NULL;
  g->keys_api = cr_keys_api_new(g->opts.redis, g->opts.prefix, g->opts.admin);
  if (!g->ratelimit || !g->rcache || !g->auth || !g->apikeys || !g->keys_api || (g->opts.loop && !g->scache)) {
    cr_ratelimit_free(g->ratelimit);
    cr_rcache_free(g->rcache);
    cr_gwauth_free(g->auth);
    cr_apikeys_free(g->apikeys);
    cr_keys_api_free(g->keys_api);
    cr_scache_free(g->scache);
    free(g);
    return NULL;
  }
  return g;
}

static void cache_waits_free(cr_gateway_t *g);

void cr_gateway_free(cr_gateway_t *g) {
  if (!g) return;
  cr_ratelimit_free(g->ratelimit);
  cr_rcache_free(g->rcache);
  cache_waits_free(g); /* their lookups cancelled first: no callback comes after */
  cr_scache_free(g->scache);
  cr_gwauth_free(g->auth);
  cr_apikeys_free(g->apikeys);
  cr_keys_api_free(g->keys_api);
  cr_buf_free(&g->body);
  free(g);
}

/* --- the event -------------------------------------------------------------------------------- */

/* The HTTP call an event belongs to, if that invocation is still running. */
static cr_call_t *event_call(lua_State *L, int event) {
  cr_instance_t *inst = cr_vm_of(L)->owner;
  cr_call_t *call = inst ? inst->current : NULL;
  if (!call || call->trigger != &http_trigger) return NULL;
  http_inst_t *hi = inst->ext[hcall(call)->g->ext];
  /* An event kept past its invocation is not the current one any more (a
   * live table's address cannot belong to a newer event). */
  if (!hi || lua_topointer(L, event) != hi->event) return NULL;
  return call;
}

static void push_decoded(lua_State *L, const char *s, size_t len, int plus, cr_buf_t *tmp) {
  if (!memchr(s, '%', len) && (!plus || !memchr(s, '+', len))) {
    lua_pushlstring(L, s, len);
    return;
  }
  cr_url_decode(s, len, plus, tmp);
  lua_pushlstring(L, tmp->data, tmp->len);
}

/* headers: name -> value; repeated headers joined with ", " ("; " for cookie).
 * multiHeaders: name -> { values } */
static void push_headers(lua_State *L, cr_http_req_t *req, int multi) {
  lua_createtable(L, 0, req->nheaders);
  int t = lua_gettop(L);
  for (int i = 0; i < req->nheaders; i++) {
    const cr_http_header_t *h = &req->headers[i];
    lua_pushlstring(L, h->name, h->name_len);
    lua_pushvalue(L, -1);
    lua_rawget(L, t);
    if (multi) {
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, t);
      }
      lua_pushlstring(L, h->value, h->value_len);
      lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
      lua_pop(L, 2);
      continue;
    }
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, h->value, h->value_len);
    } else {
      const char *sep = (h->name_len == 6 && memcmp(h->name, "cookie", 6) == 0) ? "; " : ", ";
      lua_pushstring(L, sep);
      lua_pushlstring(L, h->value, h->value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, t);
  }
}

/* query: name -> first value; multiQuery: name -> { values } */
static void push_query(lua_State *L, cr_http_req_t *req, int multi, cr_buf_t *tmp) {
  lua_newtable(L);
  int t = lua_gettop(L);
  const char *p = req->query, *end = req->query + req->query_len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    if (pe > p) {
      const char *eq = memchr(p, '=', (size_t)(pe - p));
      const char *ke = eq ? eq : pe;
      push_decoded(L, p, (size_t)(ke - p), 1, tmp);
      if (eq) push_decoded(L, eq + 1, (size_t)(pe - eq - 1), 1, tmp);
      else lua_pushliteral(L, "");
      /* stack: key, value */
      lua_pushvalue(L, -2);
      lua_rawget(L, t);
      if (multi) {
        if (lua_isnil(L, -1)) {
          lua_pop(L, 1);
          lua_newtable(L);
          lua_pushvalue(L, -3);
          lua_pushvalue(L, -2);
          lua_rawset(L, t);
        }
        lua_insert(L, -2);
        lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
        lua_pop(L, 2);
      } else if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_rawset(L, t);
      } else {
        lua_pop(L, 3);
      }
    }
    p = pe + 1;
  }
}

static void push_params(lua_State *L, const cr_route_match_t *m, cr_buf_t *tmp) {
  lua_createtable(L, 0, m->nparams);
  for (int i = 0; i < m->nparams; i++) {
    lua_pushlstring(L, m->params[i].name, m->params[i].name_len);
    push_decoded(L, m->params[i].value, m->params[i].value_len, 0, tmp);
    lua_rawset(L, -3);
  }
}

/* Raises the platform's "bad request" error: the gateway answers it with its
 * status instead of 500. */
static int raise_http_error(lua_State *L, int status, const char *msg) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_pushlightuserdata(L, &http_error_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setmetatable(L, -2);
  return lua_error(L);
}

/* event.json(): the body decoded as JSON (cached); nil for an empty body; a
 * body that is not JSON raises an error answered with 400. */
static int event_json(lua_State *L) {
  int ev = lua_upvalueindex(1);
  lua_pushvalue(L, lua_upvalueindex(2)); /* the value decoded before */
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  /* Straight from the request: no Lua string for the body unless asked for. */
  cr_call_t *call = event_call(L, ev);
  size_t len = 0;
  const char *body = NULL;
  if (call) {
    body = hreq(call)->body;
    len = hreq(call)->body_len;
  }
  if (!body || len == 0) {
    lua_pushnil(L);
    return 1;
  }
  char err[200];
  if (cr_json_decode(L, body, len, err, sizeof err)) {
    char msg[300];
    snprintf(msg, sizeof msg, "invalid JSON in request body: %s", err);
    return raise_http_error(L, 400, msg);
  }
  lua_pushvalue(L, -1);
  lua_replace(L, lua_upvalueindex(2));
  return 1;
}

/* Pushes s, reusing the string held by *ref when it is the same (cache
 * holds its bytes). Most requests to a function have the same method and path. */
static void push_cached(lua_State *L, int *ref, char *cache, size_t cap, size_t *cache_len, const char *s, size_t n) {
  if (*ref > 0 && *cache_len == n && memcmp(cache, s, n) == 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
    return;
  }
  lua_pushlstring(L, s, n);
  if (n > cap) return;
  if (*ref > 0) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  lua_pushvalue(L, -1);
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  memcpy(cache, s, n);
  *cache_len = n;
}

static int method_index(unsigned bit) {
  int i = 0;
  while (bit > 1 && i < 7) {
    bit >>= 1;
    i++;
  }
  return i;
}

/* Pushes the method's name, one string per state for each known method. */
static void push_method(lua_State *L, http_inst_t *inst, const cr_http_req_t *req) {
  int *ref = &inst->method_refs[method_index(req->method)];
  if (*ref > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
    return;
  }
  lua_pushstring(L, req->method_name);
  lua_pushvalue(L, -1);
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static int event_index(lua_State *L) {
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  size_t kl;
  const char *k = lua_tolstring(L, 2, &kl);
  if (kl == 4 && memcmp(k, "json", 4) == 0) {
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    lua_pushcclosure(L, event_json, 2);
    goto cache;
  }
  if (kl == 6 && memcmp(k, "source", 6) == 0) {
    lua_pushliteral(L, "http");
    goto cache;
  }
  cr_call_t *call = event_call(L, 1);
  if (!call) return 0; /* the invocation is over: its request is gone */
  if (kl == 9 && memcmp(k, "requestId", 9) == 0) {
    /* Made on first use: a new string per request costs more than the call. */
    lua_pushstring(L, call->reqid);
    goto cache;
  }
  cr_http_req_t *req = hreq(call);
  http_inst_t *inst = call->inv.inst->ext[hcall(call)->g->ext];
  if (kl == 6 && memcmp(k, "method", 6) == 0) {
    if (req->method != CR_M_OTHER) push_method(L, inst, req);
    else lua_pushstring(L, req->method_name);
    goto cache;
  }
  if (kl == 4 && memcmp(k, "path", 4) == 0) {
    push_cached(L, &inst->path_ref, inst->path, sizeof inst->path, &inst->path_len, req->path, req->path_len);
    goto cache;
  }
  cr_buf_t tmp = CR_BUF_INIT;
  if (kl == 4 && memcmp(k, "body", 4) == 0) lua_pushlstring(L, req->body, req->body_len);
  else if (kl == 2 && memcmp(k, "ip", 2) == 0) lua_pushstring(L, req->ip);
  else if (kl == 7 && memcmp(k, "headers", 7) == 0) push_headers(L, req, 0);
  else if (kl == 12 && memcmp(k, "multiHeaders", 12) == 0) push_headers(L, req, 1);
  else if (kl == 5 && memcmp(k, "query", 5) == 0) push_query(L, req, 0, &tmp);
  else if (kl == 10 && memcmp(k, "multiQuery", 10) == 0) push_query(L, req, 1, &tmp);
  else if (kl == 8 && memcmp(k, "rawQuery", 8) == 0) lua_pushlstring(L, req->query, req->query_len);
  else if (kl == 6 && memcmp(k, "params", 6) == 0) push_params(L, &hcall(call)->match, &tmp);
  else if (kl == 4 && memcmp(k, "auth", 4) == 0) {
    const cr_identity_t *a = hcall(call)->auth;
    if (!a) {
      cr_buf_free(&tmp);
      return 0;
    }
    cr_identity_push(L, a);
  }
  else {
    cr_buf_free(&tmp);
    return 0;
  }
  cr_buf_free(&tmp);
cache:
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

/* tostring() of a platform HTTP error: its message (what a handler that
 * caught it with pcall wants to print or concatenate), read raw. */
static int http_error_tostring(lua_State *L) {
  if (lua_istable(L, 1)) {
    lua_pushliteral(L, "message");
    lua_rawget(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) return 1;
    lua_pushliteral(L, "status");
    lua_rawget(L, 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_pushfstring(L, "HTTP error %d", (int)lua_tointeger(L, -1));
      return 1;
    }
  }
  lua_pushliteral(L, "HTTP error");
  return 1;
}

/* "..." .. err and err .. "...": its message, like tostring(). */
static int http_error_concat(lua_State *L) {
  for (int i = 1; i <= 2; i++) {
    int t = lua_type(L, i);
    if (t == LUA_TTABLE) {
      lua_pushcfunction(L, http_error_tostring);
      lua_pushvalue(L, i);
      lua_call(L, 1, 1);
    } else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
      lua_pushvalue(L, i);
    } else {
      return luaL_error(L, "attempt to concatenate a %s value", lua_typename(L, t));
    }
  }
  lua_concat(L, 2);
  return 1;
}

/* Makes the events' metatable (once per state; HTTP errors' one with it). */
static int make_event_mt(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, event_index);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "event");
  lua_setfield(L, -2, "__metatable");
  lua_pushlightuserdata(L, &http_error_mt_key);
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "crescent.http_error");
  lua_setfield(L, -2, "__metatable");
  lua_pushcfunction(L, http_error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, http_error_concat);
  lua_setfield(L, -2, "__concat");
  lua_rawset(L, LUA_REGISTRYINDEX);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The event starts as an empty table with a metatable: every field, method
 * and path too, is made on first use and kept in it. A handler that never
 * reads the event (most small ones) costs one table and no hash part. */
static void push_event(cr_call_t *call, lua_State *L) {
  cr_instance_t *inst = call->inv.inst;
  void **ext = &inst->ext[hcall(call)->g->ext];
  if (!*ext && !(*ext = calloc(1, sizeof(http_inst_t)))) {
    lua_pushnil(L); /* out of memory: the handler gets no event */
    return;
  }
  http_inst_t *hi = *ext;
  lua_createtable(L, 0, 0);
  hi->event = lua_topointer(L, -1);
  if (hi->event_mt_ref <= 0) hi->event_mt_ref = make_event_mt(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, hi->event_mt_ref);
  lua_setmetatable(L, -2);
}

/* --- the response ----------------------------------------------------------------------------- */

static int valid_header_name(const char *s, size_t n) {
  if (n == 0 || n > 256) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          (c && strchr("!#$%&'*+-.^_`|~", c)))) /* strchr finds the NUL too */
      return 0;
  }
  return 1;
}

static int valid_header_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

/* Is the table at idx a response object: only status/headers/body keys, at
 * least one of them, and status (if present) a number? Raw: lua_next and
 * lua_rawget never run a metamethod. */
static int is_response(lua_State *L, int idx) {
  int found = 0, ok = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    size_t kl;
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &kl) : NULL;
    if (k && ((kl == 6 && memcmp(k, "status", 6) == 0) || (kl == 7 && memcmp(k, "headers", 7) == 0) ||
              (kl == 4 && memcmp(k, "body", 4) == 0))) {
      found = 1;
      continue;
    }
    ok = 0;
    lua_pop(L, 1);
    break;
  }
  if (!ok || !found) return 0;
  lua_pushliteral(L, "status");
  lua_rawget(L, idx);
  int st = lua_type(L, -1);
  lua_pop(L, 1);
  return st == LUA_TNIL || st == LUA_TNUMBER;
}

/* The one check of a status a function produces. A result's status may be
 * 200-599 (a final response: no 1xx, nothing past 599); a platform HTTP
 * error raised again by the function (event.json()'s, see finish()) may carry
 * 400-599. Returns the status, or 0 when v is not an integer in [lo, 599]. */
static int fn_status(double v, int lo) {
  if (!(v >= lo && v <= 599) || v != floor(v)) return 0; /* NaN fails the first test */
  return (int)v;
}

typedef struct {
  int status;
  const char *ctype;
  const char *body;
  size_t body_len;
  char ctype_num[CR_JSON_NUMBER_MAX + 1]; /* a Content-Type given as a number (odd, but allowed) */
  long long head_length; /* an answer to HEAD: the Content-Length the function gave (GET's), or -1 */
  int object;            /* the result is a {status, headers, body} object */
  int headers_idx;       /* where build_response() left its headers value on the stack */
  uint64_t deadline_ns;  /* encoding a table body gives up then (walking tables costs time) */
  cr_buf_t *capture;     /* emitting headers: also copy them here as lines (the cache), or NULL */
  int nostore;           /* the function's headers keep the answer out of caches (Set-Cookie, no-store, ...) */
  double max_age;        /* its Cache-Control max-age / s-maxage, or -1 */
  char err[300];
} resp_t;

/* What a function's Cache-Control says to a shared cache: no-store, private
 * and no-cache keep the answer out; s-maxage (first) or max-age set its
 * time to live. */
static void cache_control(resp_t *r, const char *v, size_t n) {
  char low[256];
  if (n >= sizeof low) {
    r->nostore = 1; /* a huge directive list: not worth guessing */
    return;
  }
  for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)v[i]);
  low[n] = '\0';
  if (strstr(low, "no-store") || strstr(low, "private") || strstr(low, "no-cache")) r->nostore = 1;
  const char *m = strstr(low, "s-maxage=");
  if (m) m += 9;
  else if ((m = strstr(low, "max-age="))) m += 8;
  if (m) r->max_age = strtod(m, NULL);
}

/* Encodes the body value at idx into r (strings as they are, tables as JSON). */
static int take_body(cr_gateway_t *g, lua_State *L, int idx, resp_t *r, const char *default_ctype) {
  char num[CR_JSON_NUMBER_MAX];
  int nl;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
  case LUA_TNONE:
    r->body = "";
    r->body_len = 0;
    return 0;
  case LUA_TSTRING:
    r->body = lua_tolstring(L, idx, &r->body_len);
    if (!r->ctype) r->ctype = default_ctype;
    return 0;
  case LUA_TNUMBER:
    nl = cr_json_format_number(lua_tonumber(L, idx), num);
    if (nl < 0) {
      snprintf(r->err, sizeof r->err, "the handler returned a number that is NaN or infinite");
      return CR_EINVAL;
    }
    g->body.len = 0;
    cr_buf_append(&g->body, num, (size_t)nl);
    r->body = g->body.data;
    r->body_len = g->body.len;
    if (!r->ctype) r->ctype = default_ctype;
    return 0;
  case LUA_TTABLE:
  case LUA_TBOOLEAN:
  case LUA_TLIGHTUSERDATA: {
    g->body.len = 0;
    char jerr[200];
    /* Bounded as it goes: a table shared many times over (a DAG) cannot
     * make the worker build more than the response limit allows. */
    int rc = cr_json_encode_until(L, idx, &g->body, g->opts.max_response, r->deadline_ns, jerr, sizeof jerr);
    if (rc) {
      snprintf(r->err, sizeof r->err, "the response body could not be encoded as JSON: %s", jerr);
      return rc == CR_ETOOBIG ? CR_ETOOBIG : CR_EINVAL;
    }
    r->body = g->body.data ? g->body.data : "";
    r->body_len = g->body.len;
    if (!r->ctype) r->ctype = "application/json";
    return 0;
  }
  default:
    snprintf(r->err, sizeof r->err, "the handler returned a %s as the body; return a string or a table",
             lua_typename(L, lua_type(L, idx)));
    return CR_EINVAL;
  }
}

/* Emits the user's headers from the table at idx (validated first). */
static int take_headers(lua_State *L, int idx, cr_http_req_t *req, resp_t *r, int emit) {
  if (lua_isnil(L, idx)) return 0;
  if (!lua_istable(L, idx)) {
    snprintf(r->err, sizeof r->err, "response 'headers' must be a table, got a %s", lua_typename(L, lua_type(L, idx)));
    return CR_EINVAL;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t nl;
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      snprintf(r->err, sizeof r->err, "response header names must be strings");
      return CR_EINVAL;
    }
    const char *name = lua_tolstring(L, -2, &nl);
    if (!valid_header_name(name, nl)) {
      snprintf(r->err, sizeof r->err, "invalid response header name '%.100s'", name);
      lua_pop(L, 2);
      return CR_EINVAL;
    }
    /* The platform owns framing and these. */
    int managed = cr_ieq(name, nl, "content-length") || cr_ieq(name, nl, "transfer-encoding") ||
                  cr_ieq(name, nl, "connection") || cr_ieq(name, nl, "date") || cr_ieq(name, nl, "x-request-id") ||
                  cr_ieq(name, nl, "keep-alive") || cr_ieq(name, nl, "upgrade");
    int is_ctype = cr_ieq(name, nl, "content-type");
    int vt = lua_type(L, -1);
    int count = vt == LUA_TTABLE ? (int)lua_objlen(L, -1) : 1;
    for (int i = 1; i <= count; i++) {
      if (vt == LUA_TTABLE) lua_rawgeti(L, -1, i);
      else lua_pushvalue(L, -1);
      char num[CR_JSON_NUMBER_MAX + 1];
      size_t vl = 0;
      const char *v = NULL;
      if (lua_type(L, -1) == LUA_TSTRING) v = lua_tolstring(L, -1, &vl);
      else if (lua_type(L, -1) == LUA_TNUMBER) {
        int n = cr_json_format_number(lua_tonumber(L, -1), num);
        if (n >= 0) {
          num[n] = '\0';
          v = num;
          vl = (size_t)n;
        }
      } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
        v = lua_toboolean(L, -1) ? "true" : "false";
        vl = strlen(v);
      }
      if (!v || !valid_header_value(v, vl)) {
        snprintf(r->err, sizeof r->err, "response header '%.100s' must be a string without CR or LF (or a list of them)", name);
        lua_pop(L, 3);
        return CR_EINVAL;
      }
      if (!emit && req->head && cr_ieq(name, nl, "content-length")) {
        /* HEAD answers without a body but with GET's length: the function
         * may say what it is (storage's HEAD does) instead of making a body. */
        char *end;
        char text[32];
        snprintf(text, sizeof text, "%.*s", (int)(vl < 31 ? vl : 31), v);
        long long n = strtoll(text, &end, 10);
        if (vl == 0 || vl > 18 || *end || n < 0) {
          snprintf(r->err, sizeof r->err, "response header 'content-length' must be a byte count");
          lua_pop(L, 3);
          return CR_EINVAL;
        }
        r->head_length = n;
      }
      if (is_ctype) {
        if (v == num) v = memcpy(r->ctype_num, num, vl + 1);
        r->ctype = v; /* a string stays valid: the result is on the stack until we are done */
      }
      else if (emit && !managed) {
        cr_http_respond_header(req, name, nl, v, vl);
        if (r->capture) {
          cr_buf_append(r->capture, name, nl);
          cr_buf_append(r->capture, ": ", 2);
          cr_buf_append(r->capture, v, vl);
          cr_buf_append(r->capture, "\r\n", 2);
          /* Set-Cookie is one client's; a Vary of the function's own names inputs the key does not hold. */
          if (cr_ieq(name, nl, "set-cookie") || cr_ieq(name, nl, "vary")) r->nostore = 1;
          else if (cr_ieq(name, nl, "cache-control")) cache_control(r, v, vl);
        }
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* Reads the handler's result (at idx, or none) into r: status, content type
 * and body, with the headers validated, so a bad result never leaves half a
 * response. emit_headers() then writes the headers.
 *
 * The rule for results (the invocation is over: no user code may run now):
 * every value is read with raw access (lua_rawget, lua_next, lua_rawgeti,
 * never a metamethod: a result's __index, __tostring, __len... are ignored),
 * and each field once. build_response() pushes the headers and body values it
 * read on L's stack, above the result, where they stay referenced until the
 * response's bytes are written and the caller drops the stack; r's pointers
 * point into those values. emit_headers() walks the same headers table, raw,
 * again: no Lua code ran in between, so it is the table that was checked. */
static int build_response(cr_gateway_t *g, lua_State *L, int idx, resp_t *r, cr_http_req_t *req) {
  r->status = 200;
  r->ctype = NULL;
  r->head_length = -1;
  r->object = 0;
  r->headers_idx = 0;
  int t = idx ? lua_type(L, idx) : LUA_TNONE;
  if (t == LUA_TNONE || t == LUA_TNIL) {
    r->status = 204;
    r->body = "";
    r->body_len = 0;
    return 0;
  }
  if (!lua_checkstack(L, 8)) {
    snprintf(r->err, sizeof r->err, "out of memory reading the result");
    return CR_ENOMEM;
  }
  if (t == LUA_TTABLE && is_response(L, idx)) {
    r->object = 1;
    lua_pushliteral(L, "status");
    lua_rawget(L, idx);
    if (!lua_isnil(L, -1)) {
      double s = lua_tonumber(L, -1);
      r->status = fn_status(s, 200);
      if (!r->status) {
        snprintf(r->err, sizeof r->err, "response status must be an integer from 200 to 599, got %.17g", s);
        lua_pop(L, 1);
        return CR_EINVAL;
      }
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "headers");
    lua_rawget(L, idx); /* stays on the stack: the values r points into */
    r->headers_idx = lua_gettop(L);
    int rc = take_headers(L, r->headers_idx, req, r, 0);
    if (rc) return rc;
    lua_pushliteral(L, "body");
    lua_rawget(L, idx); /* stays on the stack too: r->body may point into it */
    return take_body(g, L, lua_gettop(L), r, "text/plain; charset=utf-8");
  }
  if (t == LUA_TTABLE || t == LUA_TBOOLEAN) return take_body(g, L, idx, r, "application/json");
  if (t == LUA_TSTRING || t == LUA_TNUMBER) return take_body(g, L, idx, r, "text/plain; charset=utf-8");
  snprintf(r->err, sizeof r->err, "the handler returned a %s; return a string, a table or nothing",
           lua_typename(L, t));
  return CR_EINVAL;
}

static void emit_headers(lua_State *L, cr_http_req_t *req, resp_t *r) {
  if (r->object) take_headers(L, r->headers_idx, req, r, 1);
}

/* --- the invocation ---------------------------------------------------------------------------- */

/* ms with three decimals, without printf (it showed in profiles). */
static char *put_ms(char *o, double ms) {
  if (ms < 0) ms = 0;
  uint64_t us = (uint64_t)(ms * 1000 + 0.5);
  uint64_t whole = us / 1000, frac = us % 1000;
  o = cr_put_u64(o, whole);
  *o++ = '.';
  *o++ = (char)('0' + frac / 100);
  *o++ = (char)('0' + frac / 10 % 10);
  *o++ = (char)('0' + frac % 10);
  return o;
}

/* The policies' headers on an answer of ver's function (CORS, rate limit). */
static void policy_headers(cr_http_req_t *req, const cr_fnver_t *ver, const http_call_t *hc) {
  if (ver && ver->settings.cors.set) cr_cors_headers(&ver->settings.cors, req);
  if (hc && hc->rl_set) {
    cr_ratelimit_spec_t spec = {.rps = hc->rl_rps, .burst = hc->rl_burst};
    cr_ratelimit_headers(&spec, &hc->rl, req);
  }
}

/* Server-Timing and X-Crescent-Version, written in one piece, and the policies' headers. */
static void fn_headers(cr_http_req_t *req, int cold, double init_ms, double fn_ms, const cr_fnver_t *ver,
                       const http_call_t *hc) {
  char h[240], *o = h;
  if (hc) {
    /* The invocation's traceparent goes back to the client: its trace id names the logs. */
    const cr_call_t *call = (const cr_call_t *)(const void *)((const char *)hc - offsetof(cr_call_t, data));
    o = cr_put(o, "traceparent: ", 13);
    o = cr_put(o, call->trace, strlen(call->trace));
    o = cr_put(o, "\r\n", 2);
  }
  o = cr_put(o, "Server-Timing: ", 15);
  if (cold) {
    o = cr_put(o, "init;dur=", 9);
    o = put_ms(o, init_ms);
    *o++ = ',';
    *o++ = ' ';
  }
  o = cr_put(o, "fn;dur=", 7);
  o = put_ms(o, fn_ms);
  o = cr_put(o, "\r\nX-Crescent-Version: ", 22);
  o = cr_put(o, ver->label, (size_t)ver->label_len);
  *o++ = '\r';
  *o++ = '\n';
  cr_http_respond_lines(req, h, (size_t)(o - h));
  policy_headers(req, ver, hc);
}

/* An error answer for a function's request, with its timing and version. */
static void respond_fn_error(cr_http_req_t *req, int status, const char *msg, const cr_fnver_t *ver,
                             int cold, double init_ms, double fn_ms, const http_call_t *hc) {
  cr_buf_t b = CR_BUF_INIT;
  cr_http_error_body(&b, req, status, msg);
  cr_http_respond_start(req, status);
  if (ver) fn_headers(req, cold, init_ms, fn_ms, ver, hc);
  cr_http_respond_finish(req, "application/json", b.data, b.len);
  cr_buf_free(&b);
}

/* The invocation ended: answer from its result. */
static int http_finish(cr_call_t *call) {
  cr_gateway_t *g = hcall(call)->g;
  cr_http_req_t *req = hreq(call);
  cr_fnver_t *ver = call->ver;
  cr_fn_t *fn = ver->fn;
  cr_invocation_t *inv = &call->inv;
  lua_State *co = inv->co;
  int cold = inv->cold;
  double init_ms = call->init_ms;
  double fn_ms = (double)(inv->end_ns - inv->start_ns) / 1e6;
  int status, rc;
  if (inv->outcome == CR_OUTCOME_OK) {
    resp_t r;
    int top = lua_gettop(co);
    int idx = inv->nresults > 0 ? 1 : 0;
    /* The result is encoded within the function's own time, and at most a
     * second of the worker's. */
    uint64_t cap = cr_clock_ns() + 1000000000ull;
    r.deadline_ns = inv->deadline_ns && inv->deadline_ns < cap ? inv->deadline_ns : cap;
    rc = build_response(g, co, idx, &r, req);
    /* The platform's functions answer with objects (/_/storage): what it
     * accepted, up to max_object, it must be able to serve. */
    size_t max = fn->platform && g->opts.max_object > g->opts.max_response ? g->opts.max_object : g->opts.max_response;
    if (rc == 0 && r.body_len > max) {
      snprintf(r.err, sizeof r.err, "the response body (%zu bytes) is over the limit of %zu bytes", r.body_len, max);
      rc = CR_ETOOBIG;
    }
    if (rc == 0) {
      status = r.status;
      http_call_t *hc = hcall(call);
      cr_buf_t lines = CR_BUF_INIT;
      miss_t *miss = hc->miss;
      r.capture = miss ? &lines : NULL;
      r.nostore = 0;
      r.max_age = -1;
      cr_http_respond_start(req, r.status);
      fn_headers(req, cold, init_ms, fn_ms, ver, hc);
      if (miss) cr_http_respond_header(req, "X-Cache", 7, "miss", 4);
      emit_headers(co, req, &r);
      if (miss && r.status == 200 && req->method == CR_M_GET && ver->number == miss->ver && !r.nostore &&
          r.max_age != 0) {
        int shared = shared_cache(g, ver);
        cr_rcache_entry_t e = {.status = r.status, .ctype = r.ctype, .lines = lines.data ? lines.data : "",
                               .lines_len = lines.len, .body = r.body, .body_len = r.body_len,
                               .stored_ms = cr_wall_ms(), .ttl = r.max_age > 0 ? r.max_age : ver->settings.cache.ttl,
                               .swr = ver->settings.cache.swr, .epoch = miss->epoch, .began_ns = miss->began_ns,
                               .until_ns = shared ? cr_clock_ns() + CR_SCACHE_LOCAL_MS * 1000000ull : 0};
        if (shared && miss->stamped)
          cr_scache_put(g->scache, ver, req->path, req->path_len, miss->key, miss->klen, &miss->st, &e);
        if (cr_rcache_put(g->rcache, miss->key, miss->klen, &e) == 0) {
          free(miss); /* kept: nothing left to undo below */
          hc->miss = NULL;
        }
      }
      cr_buf_free(&lines);
      cr_http_respond_finish(req, r.ctype, r.body, r.head_length >= 0 ? (size_t)r.head_length : r.body_len);
    } else {
      cr_log(CR_LOG_ERROR, fn->name, call->reqid, "bad result from the handler: %s", r.err);
      status = 500;
      respond_fn_error(req, status, "internal error", ver, cold, init_ms, fn_ms, hcall(call));
    }
    lua_settop(co, top); /* only now: r pointed into what build_response() pushed */
    cr_buf_reset(&g->body, 64 * 1024); /* a big body does not stay held */
  } else if (inv->outcome == CR_OUTCOME_TIMEOUT) {
    status = 504;
    cr_log(CR_LOG_ERROR, fn->name, call->reqid, "%s", inv->error);
    respond_fn_error(req, status, inv->error, ver, cold, init_ms, fn_ms, hcall(call));
  } else if (inv->outcome == CR_OUTCOME_MEMORY) {
    status = 500;
    cr_log(CR_LOG_ERROR, fn->name, call->reqid, "%s", inv->error);
    respond_fn_error(req, status, "memory limit exceeded", ver, cold, init_ms, fn_ms, hcall(call));
  } else {
    /* A platform HTTP error (event.json() on a bad body) answers with its status. */
    int http_status = 0;
    const char *msg = NULL;
    if (lua_checkstack(co, 4) && lua_istable(co, -1) && lua_getmetatable(co, -1)) {
      lua_pushlightuserdata(co, &http_error_mt_key);
      lua_rawget(co, LUA_REGISTRYINDEX);
      int is = lua_rawequal(co, -1, -2);
      lua_pop(co, 2);
      if (is) { /* raw, and checked: the function may have changed its fields */
        lua_pushliteral(co, "status");
        lua_rawget(co, -2);
        http_status = lua_type(co, -1) == LUA_TNUMBER ? fn_status(lua_tonumber(co, -1), 400) : 0;
        lua_pushliteral(co, "message");
        lua_rawget(co, -3);
        msg = lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : "bad request";
        /* both stay on the stack (msg points into one) until the end */
      }
    }
    if (http_status) {
      status = http_status;
      respond_fn_error(req, status, msg, ver, cold, init_ms, fn_ms, hcall(call));
    } else {
      status = 500;
      cr_buf_t *lb = cr_log_begin(CR_LOG_ERROR, inv->error, strlen(inv->error), fn->name, call->reqid);
      if (lb) {
        cr_log_trace(lb, call->trace);
        cr_log_str(lb, "source", "handler", 7);
        cr_log_end(lb);
      }
      respond_fn_error(req, status, "internal error", ver, cold, init_ms, fn_ms, hcall(call));
    }
  }
  cr_identity_free(hcall(call)->auth);
  hcall(call)->auth = NULL;
  /* A miss whose answer was not kept (an error, a timeout, not cacheable): if it was a stale
   * entry's refresh, the next request tries again. */
  if (hcall(call)->miss)
    cr_rcache_refresh_failed(g->rcache, hcall(call)->miss->key, hcall(call)->miss->klen);
  free(hcall(call)->miss);
  hcall(call)->miss = NULL;
  /* req is not ours any more: the connection may already parse the next one. */
  return status;
}

static void respond_unloaded(cr_http_req_t *req, const cr_fn_t *fn) {
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "{\"error\":\"function failed to load\",\"function\":");
  cr_json_escape(&b, fn->name, strlen(fn->name));
  cr_buf_append_str(&b, ",\"requestId\":");
  cr_json_escape(&b, req->id, strlen(req->id));
  cr_buf_putc(&b, '}');
  cr_http_respond_start(req, 503);
  cr_http_respond_finish(req, "application/json", b.data, b.len);
  cr_buf_free(&b);
}

static void respond_throttled(cr_http_req_t *req, const cr_fn_t *fn) {
  static const char body[] = "{\"error\":\"too many requests\"}";
  cr_http_respond_start(req, 429);
  policy_headers(req, fn->current, NULL);
  cr_http_respond_header(req, "Retry-After", 11, "1", 1);
  cr_http_respond_finish(req, "application/json", body, sizeof body - 1);
}

static void http_refused(cr_call_t *call, cr_refusal_t why) {
  cr_http_req_t *req = hreq(call);
  cr_identity_free(hcall(call)->auth);
  hcall(call)->auth = NULL;
  if (hcall(call)->miss)
    cr_rcache_refresh_failed(hcall(call)->g->rcache, hcall(call)->miss->key, hcall(call)->miss->klen);
  free(hcall(call)->miss);
  hcall(call)->miss = NULL;
  switch (why) {
  case CR_REFUSED_UNLOADED:
    respond_unloaded(req, call->fn);
    break;
  case CR_REFUSED_THROTTLED:
    respond_throttled(req, call->fn);
    break;
  case CR_REFUSED_INIT:
    respond_fn_error(req, 500,
                     call->init_rc == CR_ETIMEDOUT ? "function init timed out" : "function initialization failed",
                     call->ver, 1, 0, 0, hcall(call));
    break;
  case CR_REFUSED_STOPPING:
    cr_http_respond_error(req, 503, "server stopping");
    break;
  }
}

/* The report line's method and path. */
static void http_report_fields(cr_call_t *call, cr_buf_t *line) {
  const http_call_t *hc = hcall(call);
  if (hc->method) cr_log_str(line, "method", hc->method, strlen(hc->method));
  cr_log_str(line, "path", hc->path, hc->path_len);
}

static const cr_trigger_t http_trigger = {
    .name = "http",
    .push_event = push_event,
    .finish = http_finish,
    .refused = http_refused,
    .report_fields = http_report_fields,
};

/* The value of query parameter name (n bytes) in req's raw query, or NULL. */
static const char *query_value(const cr_http_req_t *req, const char *name, size_t n, size_t *vl) {
  const char *q = req->query, *end = q + req->query_len;
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *pe = amp ? amp : end;
    const char *eq = memchr(q, '=', (size_t)(pe - q));
    size_t kl = (size_t)((eq ? eq : pe) - q);
    if (kl == n && memcmp(q, name, n) == 0) {
      *vl = eq ? (size_t)(pe - eq - 1) : 0;
      return eq ? eq + 1 : "";
    }
    q = pe + 1;
  }
  return NULL;
}

/* The cache key of req for ver (its function's slot and version, path, the
 * query or the varied parts of it, the varied headers, the principal): 0, or
 * -1 when the answer must not be cached (an authenticated route without a
 * principal to keep it apart). */
static int cache_key(cr_buf_t *k, const cr_fnver_t *ver, const cr_http_req_t *req, cr_auth_kind_t auth_kind,
                     const cr_identity_t *auth) {
  const cr_cache_spec_t *c = &ver->settings.cache;
  int rc = cr_buf_printf(k, "%d:%u:", ver->fn->slot, ver->number) || cr_buf_append(k, req->path, req->path_len);
  int by_query = 0;
  for (int i = 0; i < c->nvary; i++) by_query |= c->vary[i][0] == 'q';
  if (!by_query) rc = rc || cr_buf_putc(k, '?') || cr_buf_append(k, req->query, req->query_len);
  for (int i = 0; i < c->nvary && !rc; i++) {
    const char *v = c->vary[i];
    size_t vl = 0;
    const char *val;
    if (v[0] == 'q') {
      val = query_value(req, v + 6, strlen(v + 6), &vl);
    } else {
      const cr_http_header_t *h = cr_http_req_header(req, v + 7, strlen(v + 7));
      val = h ? h->value : NULL;
      vl = h ? h->value_len : 0;
    }
    /* length-prefixed, so no value can pass for another's */
    rc = cr_buf_printf(k, "\n%d:%zu:", i, val ? vl : (size_t)-1 >> 1) || (val && cr_buf_append(k, val, vl));
  }
  if (auth_kind != CR_AUTH_NONE) {
    if (!auth || !auth->principal[0]) return -1;
    rc = rc || cr_buf_printf(k, "\nsub:%d:", (int)auth->method) || cr_buf_append_str(k, auth->principal);
  }
  return rc ? -1 : 0;
}

/* Answers req from a cache entry. */
static void answer_cached(cr_http_req_t *req, const cr_fnver_t *ver, const cr_rcache_entry_t *e, int stale,
                          const cr_ratelimit_spec_t *rate, const cr_rl_result_t *rl) {
  cr_http_respond_start(req, e->status);
  cr_http_respond_lines(req, e->lines, e->lines_len);
  cr_http_respond_header(req, "X-Cache", 7, stale ? "stale" : "hit", stale ? 5 : 3);
  char age[24];
  uint64_t now = cr_wall_ms();
  int al = snprintf(age, sizeof age, "%llu", (unsigned long long)(now > e->stored_ms ? (now - e->stored_ms) / 1000 : 0));
  cr_http_respond_header(req, "Age", 3, age, (size_t)al);
  if (ver->settings.cors.set) cr_cors_headers(&ver->settings.cors, req);
  if (rl) cr_ratelimit_headers(rate, rl, req);
  cr_http_respond_finish(req, e->ctype, e->body, e->body_len);
}

/* Hands req to fn's invocation; miss (taken over) is where a cache miss's answer goes, or NULL. */
static void submit_call(cr_gateway_t *g, cr_http_req_t *req, cr_fn_t *fn, const cr_route_match_t *m,
                        const cr_ratelimit_spec_t *rate, const cr_rl_result_t *rl, cr_identity_t *auth, miss_t *miss) {
  cr_call_t *call = cr_dispatch_call(g->dispatch, &http_trigger, fn, req, req->id, req->id_len);
  if (!call) {
    cr_identity_free(auth);
    free(miss);
    cr_http_respond_error(req, 503, "server out of memory");
    return;
  }
  http_call_t *hc = hcall(call);
  hc->g = g;
  hc->method = req->method_name;
  hc->path_len = (unsigned short)(req->path_len < REPORT_PATH ? req->path_len : REPORT_PATH);
  memcpy(hc->path, req->path, hc->path_len);
  /* W3C trace context: continue the client's trace when it sent a well-formed traceparent. */
  const cr_http_header_t *tp = cr_http_req_header(req, "traceparent", 11);
  if (tp) cr_trace_child(tp->value, tp->value_len, call->trace);
  hc->auth = auth;
  hc->miss = miss;
  cr_route_match_copy(&hc->match, m);
  hc->rl_set = rl != NULL;
  if (rl) {
    hc->rl = *rl;
    hc->rl_rps = rate->rps;
    hc->rl_burst = rate->burst;
  }
  cr_dispatch_submit(g->dispatch, call);
}

/* A request of a shared function that missed locally, waiting on Redis (its version held). */
typedef struct cache_wait_s {
  struct cache_wait_s *prev, *next; /* the gateway's cwaits */
  cr_gateway_t *g;
  cr_http_req_t *req;
  cr_fn_t *fn;
  cr_fnver_t *ver;
  cr_route_match_t match;
  int rl_set;
  cr_ratelimit_spec_t rate; /* rps and burst only: what the answer's headers need */
  cr_rl_result_t rl;
  cr_identity_t *auth;
  miss_t *miss;
  cr_scache_get_t *get;
} cache_wait_t;

static void cache_wait_unlink(cache_wait_t *w) {
  if (w->prev) w->prev->next = w->next;
  else w->g->cwaits = w->next;
  if (w->next) w->next->prev = w->prev;
}

static void cache_waits_free(cr_gateway_t *g) {
  while (g->cwaits) {
    cache_wait_t *w = g->cwaits;
    cache_wait_unlink(w);
    cr_scache_get_cancel(w->get);
    cr_identity_free(w->auth);
    free(w->miss);
    cr_fnver_unref(w->ver);
    free(w);
  }
}

/* Redis answered a shared lookup (or failed to). A hit is kept locally (for CR_SCACHE_LOCAL_MS)
 * and answered; a stale one is kept too, this request refreshing it; anything else goes to the
 * function, as a miss. */
static void invoke(cr_gateway_t *g, cr_http_req_t *req, cr_fn_t *fn, const cr_route_match_t *m, int restarts);
/* Checks a reload may make again before one is answered: a function reloaded without end is not the
 * client's fault, but it must not hold the request forever either. */
#define POLICY_RESTARTS_MAX 3

static void on_shared(void *data, int result, const cr_rcache_entry_t *e, const cr_scache_stamps_t *st) {
  cache_wait_t *w = data;
  cr_gateway_t *g = w->g;
  cache_wait_unlink(w);
  if (w->fn->current != w->ver) {
    /* Reloaded while Redis was asked: the checks were made for the old version, the new one's
     * auth or rate limit may differ; they run again under it (no further restart of the checks). */
    cr_identity_free(w->auth);
    cr_rcache_refresh_failed(g->rcache, w->miss->key, w->miss->klen); /* if it was the refresher */
    free(w->miss);
    invoke(g, w->req, w->fn, &w->match, POLICY_RESTARTS_MAX);
    cr_fnver_unref(w->ver);
    free(w);
    return;
  }
  miss_t *miss = w->miss;
  cr_shm_fn_t *f = g->opts.shm ? cr_shm_fn(g->opts.shm, w->fn->slot) : NULL;
  const cr_ratelimit_spec_t *rate = w->rl_set ? &w->rate : NULL;
  const cr_rl_result_t *rl = w->rl_set ? &w->rl : NULL;
  if (st) {
    miss->stamped = 1;
    miss->st = *st;
  }
  int served = 0;
  if (result == CR_SCACHE_HIT) {
    /* Purged on this node while Redis was asked: the entry may be older than the purge. */
    uint64_t epoch = f ? atomic_load_explicit(&f->cache_epoch, memory_order_relaxed) : 0;
    uint64_t purged = cr_shm_cache_purged(g->opts.shm, w->fn->slot, w->req->path, w->req->path_len);
    uint64_t now = cr_wall_ms();
    double age = now > e->stored_ms ? (double)(now - e->stored_ms) / 1000.0 : 0;
    if (epoch == miss->epoch && purged < miss->began_ns && age < e->ttl + e->swr) {
      cr_rcache_entry_t local = *e;
      local.epoch = miss->epoch;
      local.began_ns = miss->began_ns;
      local.until_ns = cr_clock_ns() + CR_SCACHE_LOCAL_MS * 1000000ull;
      int kept = cr_rcache_put(g->rcache, miss->key, miss->klen, &local) == 0;
      if (age < e->ttl) {
        if (f) {
          atomic_fetch_add_explicit(&f->cache_hits, 1, memory_order_relaxed);
          atomic_fetch_add_explicit(&f->cache_shared_hits, 1, memory_order_relaxed);
        }
        answer_cached(w->req, w->ver, e, 0, rate, rl);
        served = 1;
      } else if (kept) {
        cr_rcache_refreshing(g->rcache, miss->key, miss->klen); /* this request refreshes it */
      }
    }
  }
  if (served) {
    cr_identity_free(w->auth);
    free(miss);
  } else {
    if (f) {
      atomic_fetch_add_explicit(&f->cache_misses, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(result == CR_SCACHE_ERROR ? &f->cache_shared_errors : &f->cache_shared_misses, 1,
                                memory_order_relaxed);
    }
    submit_call(g, w->req, w->fn, &w->match, rate, rl, w->auth, miss);
  }
  cr_fnver_unref(w->ver);
  free(w);
}

/* Asks Redis for a shared function's answer after a local miss: 0 when the request now waits
 * (on_shared answers it), -1 when it could not (the caller goes on with a miss). */
static int ask_shared(cr_gateway_t *g, cr_http_req_t *req, cr_fn_t *fn, cr_fnver_t *ver, const cr_route_match_t *m,
                      const cr_ratelimit_spec_t *rate, const cr_rl_result_t *rl, cr_identity_t *auth, miss_t *miss) {
  cache_wait_t *w = g->scache ? malloc(sizeof *w) : NULL;
  if (!w) return -1;
  w->g = g;
  w->req = req;
  w->fn = fn;
  w->ver = ver;
  cr_route_match_copy(&w->match, m);
  w->rl_set = rl != NULL;
  if (rl) {
    w->rl = *rl;
    w->rate = (cr_ratelimit_spec_t){.rps = rate->rps, .burst = rate->burst, .by = rate->by};
  }
  w->auth = auth;
  w->miss = miss;
  w->get = cr_scache_get(g->scache, ver, req->path, req->path_len, miss->key, miss->klen, on_shared, w);
  if (!w->get) {
    free(w);
    return -1;
  }
  cr_fnver_ref(ver);
  w->prev = NULL;
  w->next = g->cwaits;
  if (g->cwaits) g->cwaits->prev = w;
  g->cwaits = w;
  return 0;
}

static void submit(cr_gateway_t *g, cr_http_req_t *req, cr_fn_t *fn, const cr_route_match_t *m,
                   const cr_ratelimit_spec_t *rate, const cr_rl_result_t *rl, cr_identity_t *auth) {
  cr_fnver_t *ver = fn->current;
  miss_t *miss = NULL;
  if (ver && !fn->platform && ver->settings.cache.ttl > 0 && (req->method == CR_M_GET || req->method == CR_M_HEAD)) {
    cr_shm_fn_t *f = g->opts.shm ? cr_shm_fn(g->opts.shm, fn->slot) : NULL;
    uint64_t epoch = f ? atomic_load_explicit(&f->cache_epoch, memory_order_relaxed) : 0;
    uint64_t purged = cr_shm_cache_purged(g->opts.shm, fn->slot, req->path, req->path_len);
    uint64_t mono = cr_clock_ns();
    cr_buf_t k = CR_BUF_INIT;
    if (cache_key(&k, ver, req, cr_gwauth_kind(g->auth, ver), auth) == 0) {
      cr_rcache_entry_t e;
      int st = cr_rcache_get(g->rcache, k.data, k.len, cr_wall_ms(), epoch, purged, mono, &e);
      /* Stale: one request refreshes it, the others are answered stale meanwhile. */
      if (st == CR_RCACHE_FRESH || (st == CR_RCACHE_STALE && cr_rcache_refreshing(g->rcache, k.data, k.len))) {
        if (f) atomic_fetch_add_explicit(&f->cache_hits, 1, memory_order_relaxed);
        answer_cached(req, ver, &e, st == CR_RCACHE_STALE, rate, rl);
        cr_buf_free(&k);
        cr_identity_free(auth);
        return;
      }
      miss = malloc(sizeof *miss + k.len);
      if (miss) {
        memset(miss, 0, sizeof *miss);
        miss->ver = ver->number;
        miss->epoch = epoch;
        miss->began_ns = mono;
        miss->klen = k.len;
        memcpy(miss->key, k.data, k.len);
      }
      /* A shared function's local miss (or the refresh of a stale local copy) asks Redis first:
       * another worker or node may have a fresher answer. */
      if (miss && shared_cache(g, ver) && ask_shared(g, req, fn, ver, m, rate, rl, auth, miss) == 0) {
        cr_buf_free(&k);
        return;
      }
      if (f) {
        atomic_fetch_add_explicit(&f->cache_misses, 1, memory_order_relaxed);
        if (shared_cache(g, ver))
          atomic_fetch_add_explicit(&f->cache_shared_errors, 1, memory_order_relaxed);
      }
    }
    cr_buf_free(&k);
  }
  submit_call(g, req, fn, m, rate, rl, auth, miss);
}

/* A request between its policies (auth, then the rate limit): each may
 * answer later (Redis, an authorizer); the version is held meanwhile. */
typedef struct {
  cr_gateway_t *g;
  cr_http_req_t *req;
  cr_fn_t *fn;
  cr_fnver_t *ver;
  cr_identity_t *auth;
  cr_route_match_t match;
  int restarts; /* times the checks began again for a newer version */
} policy_wait_t;

static void wait_end(policy_wait_t *w) {
  cr_fnver_unref(w->ver);
  free(w);
}

/* A reload came while w's checks waited (Redis, an authorizer): they were made for a version that
 * is no longer the one that will run, and the new one's auth or rate limit may differ (auth added,
 * other keys), so they begin again under it. 1 when w was ended that way, 0 when w->ver is current. */
static int version_changed(policy_wait_t *w) {
  if (w->fn->current == w->ver) return 0;
  cr_identity_free(w->auth);
  w->auth = NULL;
  if (w->restarts >= POLICY_RESTARTS_MAX)
    cr_http_respond_error(w->req, 503, "the function changed while the request was checked: try again");
  else invoke(w->g, w->req, w->fn, &w->match, w->restarts + 1);
  wait_end(w);
  return 1;
}

static void on_rate(void *data, const cr_rl_result_t *r) {
  policy_wait_t *w = data;
  const cr_settings_t *s = &w->ver->settings;
  if (r->allowed && version_changed(w)) return;
  if (r->allowed) {
    submit(w->g, w->req, w->fn, &w->match, &s->rate, r, w->auth);
  } else {
    cr_identity_free(w->auth);
    cr_shm_fn_t *f = w->g->opts.shm ? cr_shm_fn(w->g->opts.shm, w->fn->slot) : NULL;
    if (f) atomic_fetch_add_explicit(&f->rate_limited, 1, memory_order_relaxed);
    cr_buf_t b = CR_BUF_INIT;
    cr_http_error_body_id(&b, w->req, "rate limit exceeded");
    cr_http_respond_start(w->req, 429);
    if (s->cors.set) cr_cors_headers(&s->cors, w->req);
    cr_ratelimit_headers(&s->rate, r, w->req);
    cr_http_respond_finish(w->req, "application/json", b.data, b.len);
    cr_buf_free(&b);
  }
  wait_end(w);
}

static void on_auth(void *data, int answered, cr_identity_t *id) {
  policy_wait_t *w = data;
  if (answered) {
    wait_end(w);
    return;
  }
  w->auth = id;
  if (version_changed(w)) return;
  const cr_ratelimit_spec_t *rate = &w->ver->settings.rate;
  if (rate->rps <= 0) {
    submit(w->g, w->req, w->fn, &w->match, NULL, NULL, id);
    wait_end(w);
    return;
  }
  const char *client = NULL; /* by key / principal: who auth found (else the address) */
  if (id && rate->by == CR_RL_BY_KEY && id->key[0]) client = id->key;
  else if (id && rate->by == CR_RL_BY_PRINCIPAL && id->principal[0]) client = id->principal;
  cr_ratelimit_check(w->g->ratelimit, w->fn->name, rate, w->req, client, on_rate, w);
}

void cr_gateway_invoke(cr_gateway_t *g, cr_http_req_t *req, cr_fn_t *fn, const cr_route_match_t *m) {
  invoke(g, req, fn, m, 0);
}

static void invoke(cr_gateway_t *g, cr_http_req_t *req, cr_fn_t *fn, const cr_route_match_t *m, int restarts) {
  cr_fnver_t *ver = fn->current;
  cr_auth_kind_t kind = ver && !fn->platform ? cr_gwauth_kind(g->auth, ver) : CR_AUTH_NONE;
  if (!ver || fn->platform || (kind == CR_AUTH_NONE && ver->settings.rate.rps <= 0)) {
    submit(g, req, fn, m, NULL, NULL, NULL);
    return;
  }
  policy_wait_t *w = calloc(1, sizeof *w);
  if (!w) {
    cr_http_respond_error(req, 503, "server out of memory");
    return;
  }
  w->g = g;
  w->req = req;
  w->fn = fn;
  w->ver = ver;
  w->restarts = restarts;
  cr_fnver_ref(ver);
  cr_route_match_copy(&w->match, m);
  cr_gwauth_check(g->auth, req, fn, ver, on_auth, w);
}

/* --- routing ------------------------------------------------------------------------------------ */

void cr_gateway_handle(cr_gateway_t *g, cr_http_req_t *req) {
  cr_route_match_t m;
  cr_router_t *router = g->opts.registry ? g->opts.registry->router : NULL;
  /* A CORS preflight for a function with cors is the gateway's to answer:
   * found by the method it asks about, whatever OPTIONS itself routes to. */
  unsigned asked;
  if (router && cr_cors_is_preflight(req, &asked)) {
    /* The function that owns the path: by the method asked, or else by any method it routes. */
    static const unsigned methods[] = {CR_M_GET, CR_M_POST, CR_M_PUT, CR_M_PATCH, CR_M_DELETE, CR_M_OPTIONS, CR_M_HEAD};
    int routed = asked && cr_router_match(router, asked, req->path, req->path_len, &m) == 0;
    for (size_t i = 0; !routed && i < sizeof methods / sizeof methods[0]; i++) {
      if (cr_router_match(router, methods[i], req->path, req->path_len, &m) != 0) continue;
      const cr_fn_t *of = m.target;
      if (!of->platform && of->current && of->current->settings.cors.set) {
        cr_cors_preflight(&of->current->settings.cors, req, 0);
        return;
      }
      break; /* the path's function has no cors: not the gateway's to answer */
    }
    const cr_fn_t *pf = routed ? m.target : NULL;
    if (pf && !pf->platform && pf->current && pf->current->settings.cors.set) {
      cr_cors_preflight(&pf->current->settings.cors, req, 1);
      return;
    }
  }
  int rc = router ? cr_router_match(router, req->method, req->path, req->path_len, &m) : CR_ENOENT;
  if (rc == 0) {
    /* A platform function routed under /_/api/ (the queues API) keeps the
     * admin API's access rule, which admin.c applies only to what it answers
     * itself. By the matched pattern, not the path: static segments match
     * percent-decoded (/%5F/api/... is routed here too). */
    if (m.pattern && (strncmp(m.pattern, "/_/api/", 7) == 0 || strcmp(m.pattern, "/_/api") == 0) &&
        cr_admin_guard(g->opts.admin, req))
      return;
    cr_gateway_invoke(g, req, m.target, &m);
    return;
  }
  /* /_/ is the platform's: its functions (storage) routed above, the rest here. */
  if (rc == CR_ENOENT && g->opts.invoke_api && cr_invoke_api_handle(g->opts.invoke_api, req)) return;
  if (rc == CR_ENOENT && cr_keys_api_handle(g->keys_api, req)) return;
  if (rc == CR_ENOENT && g->opts.accounts && cr_accounts_api_handle(g->opts.accounts, req)) return;
  if (rc == CR_ENOENT && g->opts.admin && cr_admin_owns(req->path, req->path_len)) {
    if (g->opts.meter) cr_meter_flush(g->opts.meter); /* the numbers include this worker's latest */
    cr_admin_handle(g->opts.admin, req);
    return;
  }
  if (rc == CR_EINVAL) {
    char allow[120];
    cr_method_list(m.allowed, allow, sizeof allow);
    if (req->method == CR_M_OPTIONS) {
      /* No OPTIONS route: say what the path answers. */
      cr_http_respond_start(req, 204);
      cr_http_respond_header(req, "Allow", 5, allow, strlen(allow));
      cr_http_respond_finish(req, NULL, "", 0);
      return;
    }
    static const char body[] = "{\"error\":\"method not allowed\"}";
    cr_http_respond_start(req, 405);
    cr_http_respond_header(req, "Allow", 5, allow, strlen(allow));
    cr_http_respond_finish(req, "application/json", body, sizeof body - 1);
    return;
  }
  cr_http_respond_error(req, 404, "not found");
}

struct cr_scache_s *cr_gateway_scache(cr_gateway_t *g) { return g->scache; }

size_t cr_gateway_body_limit(const cr_gateway_t *g, const char *target, size_t len) {
  static const char storage[] = "/_/storage/";
  if (len > sizeof storage - 1 && target[1] == '_' && memcmp(target, storage, sizeof storage - 1) == 0 &&
      g->opts.max_object > g->opts.max_body)
    return g->opts.max_object;
  return g->opts.max_body;
}
