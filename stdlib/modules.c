/* modules.c - the primitives under the crescent.* modules, and their loaders.
 *
 * Rules:
 *   - A call that cannot yield is refused before anything is sent: l_call
 *     checks that the calling coroutine can yield at this point
 *     (lua_isyieldable: not inside a C callback such as a string.gsub
 *     function, a table.sort comparator or a metamethod LuaJIT runs from C)
 *     and, for a user coroutine, that the coroutines the
 *     yield must pass through can too (sandbox.lua's `passes`). Otherwise it
 *     returns nil, "cannot call crescent.X here (inside a C callback)" and
 *     Redis sees nothing: a yield that fails after the command was queued
 *     would leave a write done behind an error.
 *   - The stdlib chunks (and stdlib/args.lua) run with an environment of
 *     their own that raises on any global read or write: everything they
 *     use comes from P (P.lib: the library as sandbox.lua captured it at
 *     boot, before user code could replace string.match, json.encode, ...).
 *   - Keys and names are valid UTF-8 (P.utf8); see stdlib/kv.lua.
 *   - Every C primitive reaches its cr_stdlib_t through an upvalue, set
 *     when cr_stdlib_preload installs the loaders in a state: nothing here
 *     is process-wide but constants, so a worker can hold several. */
#include "modules.h"

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "crypto.h"
#include "error.h"
#include "freelist.h"
#include "hash.h"
#include "auth.h"
#include "httpout.h"
#include "invoke.h"
#include "json.h"
#include "log.h"
#include "vm.h"

#define MAX_ARGS 2048

/* Embedded sources (cmake/embed.cmake). */
#define EMBEDDED(sym)         \
  extern const char sym[];    \
  extern const size_t sym##_len;
EMBEDDED(cr_stdlib_args)
EMBEDDED(cr_stdlib_kv)
EMBEDDED(cr_stdlib_storage)
EMBEDDED(cr_stdlib_queue)
EMBEDDED(cr_stdlib_once)
EMBEDDED(cr_stdlib_queue_admin)
EMBEDDED(cr_stdlib_invoke)
EMBEDDED(cr_stdlib_http)
EMBEDDED(cr_stdlib_auth)
EMBEDDED(cr_redis_kv_put)
EMBEDDED(cr_redis_kv_delete)
EMBEDDED(cr_redis_kv_incr)
EMBEDDED(cr_redis_kv_getmany)
EMBEDDED(cr_redis_kv_list)
EMBEDDED(cr_redis_kv_expire)
EMBEDDED(cr_redis_st_put)
EMBEDDED(cr_redis_st_delete)
EMBEDDED(cr_redis_st_list)
EMBEDDED(cr_redis_st_get)
EMBEDDED(cr_redis_q_send)
EMBEDDED(cr_redis_q_promote)
EMBEDDED(cr_redis_q_claim)
EMBEDDED(cr_redis_q_trim)
EMBEDDED(cr_redis_q_stats)
EMBEDDED(cr_redis_q_redrive)
EMBEDDED(cr_redis_inv_send)
EMBEDDED(cr_redis_inv_done)
EMBEDDED(cr_redis_cron_claim)
EMBEDDED(cr_redis_rate_gcra)
EMBEDDED(cr_redis_cron_done)
EMBEDDED(cr_redis_rc_get)
EMBEDDED(cr_redis_rc_put)
EMBEDDED(cr_redis_rc_purge)
EMBEDDED(cr_redis_apikey_check)
EMBEDDED(cr_redis_apikey_admin)
EMBEDDED(cr_redis_users_create)
EMBEDDED(cr_redis_users_get)
EMBEDDED(cr_redis_users_set)
EMBEDDED(cr_redis_users_delete)
EMBEDDED(cr_redis_users_list)
EMBEDDED(cr_redis_users_rt)
EMBEDDED(cr_redis_users_code)
EMBEDDED(cr_redis_users_throttle)
EMBEDDED(cr_redis_usage_add)
EMBEDDED(cr_redis_usage_read)
EMBEDDED(cr_redis_log_add)
EMBEDDED(cr_redis_log_query)

const cr_redis_script_t cr_stdlib_scripts[] = {
    {"kv_put", cr_redis_kv_put},       {"kv_delete", cr_redis_kv_delete}, {"kv_incr", cr_redis_kv_incr},
    {"kv_getmany", cr_redis_kv_getmany}, {"kv_list", cr_redis_kv_list},   {"st_put", cr_redis_st_put},
    {"st_delete", cr_redis_st_delete}, {"st_list", cr_redis_st_list},     {"q_send", cr_redis_q_send},
    {"q_promote", cr_redis_q_promote}, {"st_get", cr_redis_st_get},     {"q_trim", cr_redis_q_trim},
    {"q_claim", cr_redis_q_claim}, /* the queue trigger's (core/trigger/queue) */
    {"q_stats", cr_redis_q_stats},     {"q_redrive", cr_redis_q_redrive}, /* crescent.queue_admin's */
    {"inv_send", cr_redis_inv_send},   {"inv_done", cr_redis_inv_done},   /* core/trigger/invoke/async.c's */
    {"rate_gcra", cr_redis_rate_gcra}, /* core/trigger/http/policy.c's */
    {"cron_claim", cr_redis_cron_claim}, {"cron_done", cr_redis_cron_done}, /* core/trigger/cron's */
    {"kv_expire", cr_redis_kv_expire}, /* the expiry sweeper's (stdlib/kvexpire.c) */
    {"rc_get", cr_redis_rc_get},       {"rc_put", cr_redis_rc_put},       {"rc_purge", cr_redis_rc_purge},
    /* the shared response cache's (core/trigger/http/scache.c) */
    {"apikey_check", cr_redis_apikey_check}, {"apikey_admin", cr_redis_apikey_admin}, /* core/trigger/http/apikeys.c, keys_api.c */
    {"users_create", cr_redis_users_create}, {"users_get", cr_redis_users_get}, {"users_set", cr_redis_users_set}, {"users_delete", cr_redis_users_delete}, {"users_list", cr_redis_users_list}, {"users_rt", cr_redis_users_rt}, {"users_code", cr_redis_users_code}, {"users_throttle", cr_redis_users_throttle}, /* core/svc/users.c's */
    {"usage_add", cr_redis_usage_add}, {"usage_read", cr_redis_usage_read}, /* core/exec/usage.c, admin.c */
    {"log_add", cr_redis_log_add},     {"log_query", cr_redis_log_query}, /* core/svc/logstore.c's */
};
const int cr_stdlib_nscripts = sizeof cr_stdlib_scripts / sizeof cr_stdlib_scripts[0];

static int find_script(const char *name) {
  for (int i = 0; i < cr_stdlib_nscripts; i++)
    if (strcmp(cr_stdlib_scripts[i].name, name) == 0) return i;
  return -1;
}

static const cr_stdlib_opts_t default_opts = {"cr:", 1024 * 1024, 16u * 1024 * 1024, 256 * 1024, 100000, 1000000};

struct cr_stdlib_s {
  cr_redis_t *redis;      /* NULL: calls fail with "redis unavailable" */
  cr_stdlib_opts_t opts;  /* opts.prefix points to prefix */
  char prefix[64];
  /* Calls are reused: a request allocates nothing here in steady state. */
  cr_freelist_t free_scalls;
  /* Number arguments are written here, not turned into Lua strings (which
   * would be hashed and collected): one buffer, reused by every call. */
  cr_buf_t numbuf;
  /* The delayed-message promoter: one SMEMBERS at a time. */
  int promoting;
  int promote_script; /* q_promote's index */
  int trim_script;    /* q_trim's index */
  unsigned rounds;    /* promoter rounds: every TRIM_EVERY-th also trims */
  const cr_stdlib_calls_t *calls; /* crescent.invoke's (cr_stdlib_set_calls), or NULL */
  void *calls_ud;
  cr_http_config_t http;          /* crescent.http's (cr_stdlib_set_http); ob NULL: none */
  const cr_stdlib_cache_t *cache; /* ctx.cache.purge's (cr_stdlib_set_cache), or NULL */
  void *cache_ud;
  cr_users_t *users;              /* crescent.auth's (cr_stdlib_set_users), or NULL: off */
};

void cr_stdlib_set_cache(cr_stdlib_t *S, const cr_stdlib_cache_t *ops, void *ud) {
  S->cache = ops;
  S->cache_ud = ud;
}

void cr_stdlib_set_users(cr_stdlib_t *S, cr_users_t *users) { S->users = users; }

void cr_stdlib_set_http(cr_stdlib_t *S, const cr_http_config_t *cfg) {
  S->http = *cfg;
  if (!S->http.max_response) S->http.max_response = CR_HTTP_DEFAULT_MAX_RESPONSE;
  if (S->http.max_requests <= 0) S->http.max_requests = CR_HTTP_DEFAULT_MAX_REQUESTS;
}

void cr_stdlib_set_calls(cr_stdlib_t *S, const cr_stdlib_calls_t *ops, void *ud) {
  S->calls = ops;
  S->calls_ud = ud;
}

cr_stdlib_t *cr_stdlib_new(cr_redis_t *redis, const cr_stdlib_opts_t *opts) {
  cr_stdlib_t *S = calloc(1, sizeof *S);
  if (!S) return NULL;
  S->redis = redis;
  S->opts = opts ? *opts : default_opts;
  snprintf(S->prefix, sizeof S->prefix, "%s", S->opts.prefix ? S->opts.prefix : "cr:");
  S->opts.prefix = S->prefix;
  if (S->opts.queue_max_depth <= 0) S->opts.queue_max_depth = default_opts.queue_max_depth;
  S->free_scalls = (cr_freelist_t)CR_FREELIST_INIT(256);
  S->http.max_response = CR_HTTP_DEFAULT_MAX_RESPONSE;
  S->http.max_requests = CR_HTTP_DEFAULT_MAX_REQUESTS;
  S->promote_script = find_script("q_promote");
  S->trim_script = find_script("q_trim");
  return S;
}

void cr_stdlib_detach(cr_stdlib_t *S) {
  if (S) S->redis = NULL;
}

void cr_stdlib_free(cr_stdlib_t *S) {
  if (!S) return;
  cr_freelist_drain(&S->free_scalls);
  cr_buf_free(&S->numbuf);
  free(S);
}

/* The cr_stdlib_t a primitive was made for (its upvalue `i`). */
static cr_stdlib_t *stdlib_at(lua_State *L, int i) { return lua_touserdata(L, lua_upvalueindex(i)); }

/* --- the call primitive ------------------------------------------------------------------------- */

/* A Redis call an invocation waits on. */
typedef struct scall_s {
  cr_stdlib_t *S;       /* whose freelist it goes back to */
  cr_invocation_t *inv; /* NULL once detached */
  cr_redis_req_t *req;
  int spread;           /* an array reply comes back as several values */
} scall_t;

static scall_t *scall_new(cr_stdlib_t *S) {
  scall_t *c = cr_freelist_take(&S->free_scalls, sizeof *c);
  if (c) {
    memset(c, 0, sizeof *c);
    c->S = S;
  }
  return c;
}

static void scall_free(scall_t *c) { cr_freelist_give(&c->S->free_scalls, c); }

/* Pushes a reply as a Lua value: strings and statuses as strings, integers
 * as numbers, arrays as tables (a nil element as false, so # still works),
 * errors inside arrays as strings. */
static void push_reply(lua_State *L, const redisReply *r, int depth) {
  switch (r->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
  case REDIS_REPLY_ERROR:
    lua_pushlstring(L, r->str, r->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushnumber(L, (double)r->integer);
    break;
  case REDIS_REPLY_ARRAY:
    lua_createtable(L, (int)r->elements, 0);
    if (depth < 8) {
      for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type == REDIS_REPLY_NIL) lua_pushboolean(L, 0);
        else push_reply(L, r->element[i], depth + 1);
        lua_rawseti(L, -2, (int)i + 1);
      }
    }
    break;
  default:
    lua_pushnil(L);
  }
}

static void scall_detach(void *pending) {
  scall_t *c = pending;
  cr_redis_cancel(c->req);
  scall_free(c);
}

static void on_scall_reply(void *data, redisReply *reply, const char *err) {
  scall_t *c = data;
  cr_invocation_t *inv = c->inv;
  int spread = c->spread;
  scall_free(c);
  if (!inv) return;
  lua_State *co = inv->co;
  int n;
  if (err) {
    lua_pushnil(co);
    lua_pushstring(co, err);
    n = 2;
  } else if (reply->type == REDIS_REPLY_ERROR) {
    lua_pushnil(co);
    if (strncmp(reply->str, "NOSCRIPT", 8) == 0) lua_pushliteral(co, "redis unavailable (its script cache was flushed)");
    else lua_pushfstring(co, "redis error: %s", reply->str);
    n = 2;
  } else if (reply->type == REDIS_REPLY_NIL) {
    lua_pushnil(co);
    n = 1;
  } else if (spread && reply->type == REDIS_REPLY_ARRAY && reply->elements <= 16) {
    /* A short array as values, without a table: evalv's replies. */
    for (size_t i = 0; i < reply->elements; i++) {
      if (reply->element[i]->type == REDIS_REPLY_NIL) lua_pushnil(co);
      else push_reply(co, reply->element[i], 1);
    }
    n = (int)reply->elements;
    if (n == 0) {
      lua_pushnil(co);
      n = 1;
    }
  } else {
    push_reply(co, reply, 0);
    n = 1;
  }
  cr_invoke_resume(inv, n);
}


/* cmd(name, ...), and the functions script() makes: f(nkeys, ...), which
 * runs its script; send, then yield until the reply. Upvalues: the mode
 * (0 cmd, 1 a script, 2 a script whose array reply comes back as several
 * values), the script's index, the module's name (for messages) and the
 * cr_stdlib_t. */
static int l_call(lua_State *L) {
  int mode = (int)lua_tointeger(L, lua_upvalueindex(1));
  cr_stdlib_t *S = stdlib_at(L, 4);
  cr_buf_t *numbuf = &S->numbuf;
  int is_eval = mode >= 1;
  cr_invocation_t *inv = cr_invoke_for_call(L, "crescent stdlib calls are", lua_tostring(L, lua_upvalueindex(3)));
  if (!inv) return 2;
  int top = lua_gettop(L);
  int first = is_eval ? 2 : 1;
  int argc = top - first + 1;
  if (argc < 1 || argc > MAX_ARGS) return luaL_error(L, "bad stdlib call: %d arguments", argc);
  int script = -1, nkeys = 0;
  if (is_eval) {
    script = (int)lua_tointeger(L, lua_upvalueindex(2));
    nkeys = (int)luaL_checkinteger(L, 1);
  }
  const char *small_argv[32];
  size_t small_lens[32];
  const char **argv = small_argv;
  size_t *lens = small_lens;
  if (argc > 32) {
    argv = malloc(sizeof *argv * (size_t)argc);
    lens = malloc(sizeof *lens * (size_t)argc);
    if (!argv || !lens) {
      free(argv);
      free(lens);
      return luaL_error(L, "out of memory");
    }
  }
  /* Numbers are written in numbuf one after another (argv NULL until all
   * are there: the buffer may move while it grows). */
  numbuf->len = 0;
  int bad = 0, bad_type = LUA_TNONE;
  const char *bad_num = NULL;
  for (int i = 0; i < argc && !bad; i++) {
    int t = lua_type(L, first + i);
    if (t == LUA_TSTRING) {
      argv[i] = lua_tolstring(L, first + i, &lens[i]);
    } else if (t == LUA_TNUMBER) {
      double v = lua_tonumber(L, first + i);
      size_t before = numbuf->len;
      /* NaN and infinities have no text a script could read (cr_json_number
       * refuses them): sent as "", an expected version would mean "any". */
      if (isnan(v) || isinf(v)) bad_num = isnan(v) ? "NaN" : "infinite";
      else if (cr_json_number(numbuf, v)) bad_num = "out of memory";
      if (bad_num) bad = i + 1;
      argv[i] = NULL;
      lens[i] = numbuf->len - before;
    } else {
      bad = i + 1;
      bad_type = t;
    }
  }
  if (bad) {
    if (argv != small_argv) {
      free(argv);
      free(lens);
    }
    if (bad_type != LUA_TNONE)
      return luaL_error(L, "bad stdlib call: argument %d is a %s", bad, lua_typename(L, bad_type));
    return luaL_error(L, "bad stdlib call: argument %d is %s (numbers must be finite)", bad, bad_num);
  }
  for (size_t i = 0, off = 0; i < (size_t)argc; i++) {
    if (argv[i]) continue;
    argv[i] = numbuf->data + off;
    off += lens[i];
  }
  scall_t *c = scall_new(S);
  cr_redis_req_t *req = NULL;
  if (c && S->redis) {
    c->inv = inv;
    c->spread = mode == 2;
    req = is_eval ? cr_redis_eval(S->redis, script, nkeys, argc, argv, lens, on_scall_reply, c)
                  : cr_redis_call(S->redis, argc, argv, lens, on_scall_reply, c);
  }
  if (argv != small_argv) {
    free(argv);
    free(lens);
  }
  if (!req) {
    if (c) scall_free(c);
    lua_pushnil(L);
    lua_pushliteral(L, "redis unavailable");
    return 2;
  }
  c->req = req;
  return cr_invoke_yield(L, inv, c, scall_detach);
}

/* The module a script belongs to, by its name's prefix (for messages). */
static const char *script_module(const char *name) {
  if (strncmp(name, "kv_", 3) == 0) return "crescent.kv";
  if (strncmp(name, "st_", 3) == 0) return "crescent.storage";
  if (strncmp(name, "q_", 2) == 0) return "crescent.queue";
  return "crescent stdlib";
}

/* script(name [, spread]) -> f(nkeys, keys..., args...): runs one of the
 * scripts; with spread, an array reply of up to 16 elements comes back as
 * that many values. The name is looked up once, here. Upvalue: the
 * cr_stdlib_t, handed on to f. */
static int l_script(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int script = find_script(name);
  if (script < 0) return luaL_error(L, "no such script: %s", name);
  lua_pushinteger(L, lua_toboolean(L, 2) ? 2 : 1);
  lua_pushinteger(L, script);
  lua_pushstring(L, script_module(name));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, l_call, 4);
  return 1;
}

/* command(module) -> cmd(name, ...): sends one Redis command for module
 * ("crescent.kv"; named in messages). Upvalue: the cr_stdlib_t. */
static int l_command(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_pushinteger(L, 0);
  lua_pushinteger(L, -1);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, l_call, 4);
  return 1;
}

/* --- calls to other functions ------------------------------------------------------------------ */

/* One crescent.invoke call an invocation waits on. */
typedef struct {
  cr_stdlib_t *S;
  cr_invocation_t *inv;
  void *handle;
} icall_t;

static void icall_detach(void *pending) {
  icall_t *c = pending;
  c->S->calls->cancel(c->S->calls_ud, c->handle);
  free(c);
}

/* The reply: text, nil | nil, err. The text is at most the payload limit,
 * well within the slack a state has between resumes (vm.h). */
static void on_icall_done(void *data, const char *err, const char *text, size_t len) {
  icall_t *c = data;
  cr_invocation_t *inv = c->inv;
  free(c);
  lua_State *co = inv->co;
  if (err) {
    lua_pushnil(co);
    lua_pushstring(co, err);
  } else {
    lua_pushlstring(co, text, len);
    lua_pushnil(co);
  }
  cr_invoke_resume(inv, 2);
}

/* call(name, event_json) / async(name, event_json, delay): upvalues the
 * cr_stdlib_t and the kind (0 call, 1 async). stdlib/invoke.lua checks the
 * arguments. */
static int l_invoke(lua_State *L) {
  cr_stdlib_t *S = stdlib_at(L, 1);
  int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
  size_t nlen, elen;
  const char *name = luaL_checklstring(L, 1, &nlen);
  const char *event = luaL_checklstring(L, 2, &elen);
  double delay = luaL_optnumber(L, 3, 0);
  cr_invocation_t *inv = cr_invoke_for_call(L, "crescent.invoke calls are", "crescent.invoke");
  if (!inv) return 2;
  if (!S->calls) {
    lua_pushnil(L);
    lua_pushliteral(L, "invocation unavailable");
    return 2;
  }
  icall_t *c = malloc(sizeof *c);
  if (!c) {
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
  }
  c->S = S;
  c->inv = inv;
  char err[256];
  c->handle = S->calls->start(S->calls_ud, inv, kind, name, nlen, event, elen, delay, on_icall_done, c, err, sizeof err);
  if (!c->handle) {
    free(c);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return cr_invoke_yield(L, inv, c, icall_detach);
}

/* --- ctx.cache.purge ---------------------------------------------------------------------------- */

/* One purge an invocation waits on. */
typedef struct {
  cr_stdlib_t *S;
  cr_invocation_t *inv;
  void *handle;
} pcall_t;

static void pcall_detach(void *pending) {
  pcall_t *c = pending;
  c->S->cache->cancel(c->S->cache_ud, c->handle);
  free(c);
}

static void on_purge_done(void *data, const char *err) {
  pcall_t *c = data;
  cr_invocation_t *inv = c->inv;
  free(c);
  lua_State *co = inv->co;
  if (err) {
    lua_pushnil(co);
    lua_pushstring(co, err);
  } else {
    lua_pushboolean(co, 1);
    lua_pushnil(co);
  }
  cr_invoke_resume(inv, 2);
}

/* cache_purge(path) -> true | nil, err; stdlib/once.lua checks the argument.
 * Upvalue: the cr_stdlib_t. */
static int l_cache_purge(lua_State *L) {
  cr_stdlib_t *S = stdlib_at(L, 1);
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  cr_invocation_t *inv = cr_invoke_for_call(L, "ctx.cache.purge is", "ctx.cache.purge");
  if (!inv) return 2;
  if (!S->cache) {
    lua_pushnil(L);
    lua_pushliteral(L, "cache unavailable");
    return 2;
  }
  pcall_t *c = malloc(sizeof *c);
  if (!c) {
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
  }
  c->S = S;
  c->inv = inv;
  c->handle = NULL;
  char err[256] = "";
  int rc = S->cache->purge(S->cache_ud, path, len, on_purge_done, c, &c->handle, err, sizeof err);
  if (rc != 0) {
    free(c);
    if (rc > 0) {
      lua_pushboolean(L, 1);
      return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return cr_invoke_yield(L, inv, c, pcall_detach);
}

/* Is s[0..n) valid UTF-8 (RFC 3629: shortest forms only, no surrogates,
 * at most U+10FFFF)? */
static int valid_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;      /* overlong */
      else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;      /* overlong */
      else if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
    } else
      return 0;
    if (n - i < len) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
    i += len;
  }
  return 1;
}

/* utf8(s) -> whether the string s is valid UTF-8 (false for a non-string). */
static int l_utf8(lua_State *L) {
  size_t n;
  const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &n) : NULL;
  lua_pushboolean(L, s && valid_utf8((const unsigned char *)s, n));
  return 1;
}

/* The environment of the stdlib chunks: reading or writing a global is a
 * bug in the stdlib (it would see what user code put there). */
static int l_no_global(lua_State *L) {
  return luaL_error(L, "crescent stdlib: global '%s' used (platform code must use P.lib)", luaL_optstring(L, 2, "?"));
}

/* One per state, made on first use (registry key below). */
static char env_key;

static void push_stdlib_env(lua_State *L) {
  lua_pushlightuserdata(L, &env_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, l_no_global);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_no_global);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pushlightuserdata(L, &env_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* hash(data) -> 16 hex digits of a 64-bit FNV-1a hash (entity tags). */
static int l_hash(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  uint64_t h = cr_fnv1a(s, n);
  char out[17];
  snprintf(out, sizeof out, "%016llx", (unsigned long long)h);
  lua_pushlstring(L, out, 16);
  return 1;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (double)cr_wall_ms());
  return 1;
}

/* --- module loaders ------------------------------------------------------------------------------ */

/* Registry key of the primitives table, made once per state (a state has
 * one cr_stdlib_t: the one its preload was installed with). */
static char prims_key;

static void push_prims(lua_State *L, cr_stdlib_t *S) {
  lua_pushlightuserdata(L, &prims_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 16);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_script, 1);
  lua_setfield(L, -2, "script");
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_command, 1);
  lua_setfield(L, -2, "command");
  lua_pushcfunction(L, l_utf8);
  lua_setfield(L, -2, "utf8");
  lua_pushcfunction(L, l_hash);
  lua_setfield(L, -2, "hash");
  lua_pushcfunction(L, l_now);
  lua_setfield(L, -2, "now");
  lua_pushstring(L, S->prefix);
  lua_setfield(L, -2, "prefix");
  for (int kind = 0; kind < 2; kind++) {
    lua_pushlightuserdata(L, S);
    lua_pushinteger(L, kind);
    lua_pushcclosure(L, l_invoke, 2);
    lua_setfield(L, -2, kind ? "invoke_async" : "invoke_call");
  }
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_cache_purge, 1);
  lua_setfield(L, -2, "cache_purge");
  cr_http_push_primitive(L, &S->http);
  lua_setfield(L, -2, "http_request");
  cr_auth_push_primitive(L, &S->users);
  lua_setfield(L, -2, "auth_call");
  lua_pushnumber(L, (double)S->http.max_response);
  lua_setfield(L, -2, "http_max_response");
  lua_pushnumber(L, (double)S->opts.kv_max_value);
  lua_setfield(L, -2, "kv_max_value");
  lua_pushnumber(L, (double)S->opts.max_object);
  lua_setfield(L, -2, "max_object");
  lua_pushnumber(L, (double)S->opts.queue_max_body);
  lua_setfield(L, -2, "queue_max_body");
  lua_pushnumber(L, (double)S->opts.stream_maxlen);
  lua_setfield(L, -2, "stream_maxlen");
  lua_pushnumber(L, (double)S->opts.queue_max_depth);
  lua_setfield(L, -2, "queue_max_depth");
  /* The library as it was at boot, before any user code (sandbox.lua). */
  cr_vm_push_sandbox(L, "lib");
  lua_setfield(L, -2, "lib");
  /* The argument checks the modules share (stdlib/args.lua), given the table so far. */
  if (luaL_loadbufferx(L, cr_stdlib_args, cr_stdlib_args_len, "=crescent.args", "t")) lua_error(L);
  push_stdlib_env(L);
  lua_setfenv(L, -2);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 1);
  lua_setfield(L, -2, "args");
  lua_pushlightuserdata(L, &prims_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* The loaders' upvalue is the cr_stdlib_t (cr_stdlib_preload). */
static int load_embedded(lua_State *L, const char *src, size_t len, const char *name) {
  if (luaL_loadbufferx(L, src, len, name, "t")) return lua_error(L);
  push_stdlib_env(L);
  lua_setfenv(L, -2);
  push_prims(L, stdlib_at(L, 1));
  lua_call(L, 1, 1);
  return 1;
}

static int open_kv(lua_State *L) { return load_embedded(L, cr_stdlib_kv, cr_stdlib_kv_len, "=crescent.kv"); }
static int open_storage(lua_State *L) {
  return load_embedded(L, cr_stdlib_storage, cr_stdlib_storage_len, "=crescent.storage");
}
static int open_queue(lua_State *L) { return load_embedded(L, cr_stdlib_queue, cr_stdlib_queue_len, "=crescent.queue"); }
/* crescent.queue_admin reads every queue and moves messages between them
 * (the queues API, lua/queues_api.lua): only the platform's own functions
 * may load it. Theirs are the only names starting with "_/": a function
 * file's path has no segment starting with '_' (registry.c). To anyone
 * else it answers as a module that does not exist. */
static int open_queue_admin(lua_State *L) {
  const cr_vm_t *vm = cr_vm_find(L);
  if (!vm || !vm->fn_name || strncmp(vm->fn_name, "_/", 2) != 0) {
    lua_pushliteral(L, "module 'crescent.queue_admin' not found");
    return lua_error(L);
  }
  return load_embedded(L, cr_stdlib_queue_admin, cr_stdlib_queue_admin_len, "=crescent.queue_admin");
}
static int open_invoke(lua_State *L) {
  return load_embedded(L, cr_stdlib_invoke, cr_stdlib_invoke_len, "=crescent.invoke");
}
static int open_http(lua_State *L) { return load_embedded(L, cr_stdlib_http, cr_stdlib_http_len, "=crescent.http"); }
static int open_auth(lua_State *L) { return load_embedded(L, cr_stdlib_auth, cr_stdlib_auth_len, "=crescent.auth"); }
static int open_crypto(lua_State *L) { return cr_crypto_open(L); }
static int open_log(lua_State *L) {
  cr_invoke_push_log(L);
  return 1;
}

/* Registry key of the ctx extender once.lua returns, loaded on first use. */
static char ctx_extend_key;

/* extend(ctx): adds the stdlib's fields to an instance's ctx (ctx.once),
 * for invoke.c's prepare, which finds it in the registry under
 * CR_CTX_EXTEND. Upvalue: the cr_stdlib_t. */
static int l_ctx_extend(lua_State *L) {
  lua_pushlightuserdata(L, &ctx_extend_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    load_embedded(L, cr_stdlib_once, cr_stdlib_once_len, "=crescent.once");
    lua_pushlightuserdata(L, &ctx_extend_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, 1);
  lua_call(L, 1, 0);
  return 0;
}

void cr_stdlib_preload(lua_State *L, void *stdlib) {
  if (!stdlib) luaL_error(L, "crescent stdlib: preloaded without a cr_stdlib_t");
  static const struct {
    const char *name;
    lua_CFunction open;
  } loaders[] = {
      {"crescent.kv", open_kv},
      {"crescent.storage", open_storage},
      {"crescent.queue", open_queue},
      {"crescent.queue_admin", open_queue_admin},
      {"crescent.log", open_log},
      {"crescent.invoke", open_invoke},
      {"crescent.crypto", open_crypto},
      {"crescent.http", open_http},
      {"crescent.auth", open_auth},
  };
  for (size_t i = 0; i < sizeof loaders / sizeof loaders[0]; i++) {
    lua_pushlightuserdata(L, stdlib);
    lua_pushcclosure(L, loaders[i].open, 1);
    lua_setfield(L, -2, loaders[i].name);
  }
  lua_pushlightuserdata(L, stdlib);
  lua_pushcclosure(L, l_ctx_extend, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, CR_CTX_EXTEND);
}

/* --- delayed queue messages, trimming acknowledged ones ---------------------------------------- */

/* Trimming reads every consumer group of a queue: once a second (every
 * 10th round of a 100 ms promoter) is enough, as the depth bound counts
 * acknowledged entries only until they are trimmed. */
#define TRIM_EVERY 10

static void on_chore_done(void *data, redisReply *reply, const char *err) {
  (void)data;
  (void)reply;
  (void)err;
}

static void on_queues(void *data, redisReply *reply, const char *err) {
  cr_stdlib_t *S = data;
  S->promoting = 0;
  if (err || !reply || reply->type != REDIS_REPLY_ARRAY || !S->redis) return;
  int trim = S->rounds++ % TRIM_EVERY == 0;
  char now[32];
  snprintf(now, sizeof now, "%llu", (unsigned long long)cr_wall_ms());
  for (size_t i = 0; i < reply->elements; i++) {
    const redisReply *e = reply->element[i];
    if (e->type != REDIS_REPLY_STRING || e->len > 200) continue;
    char dkey[300], skey[300];
    snprintf(dkey, sizeof dkey, "%s{q:%.*s}:d", S->prefix, (int)e->len, e->str);
    snprintf(skey, sizeof skey, "%s{q:%.*s}:s", S->prefix, (int)e->len, e->str);
    const char *argv[] = {dkey, skey, now};
    size_t lens[] = {strlen(dkey), strlen(skey), strlen(now)};
    cr_redis_eval(S->redis, S->promote_script, 2, 3, argv, lens, on_chore_done, NULL);
    if (trim) cr_redis_eval(S->redis, S->trim_script, 1, 1, argv + 1, lens + 1, on_chore_done, NULL);
  }
}

void cr_stdlib_promote_delayed(cr_stdlib_t *S) {
  if (!S->redis || S->promoting || !cr_redis_connected(S->redis)) return;
  char key[96];
  snprintf(key, sizeof key, "%squeues", S->prefix);
  const char *argv[] = {"SMEMBERS", key};
  size_t lens[] = {8, strlen(key)};
  if (cr_redis_call(S->redis, 2, argv, lens, on_queues, S)) S->promoting = 1;
}
