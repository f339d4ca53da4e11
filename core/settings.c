/* settings.c - reading, validating and moving function settings. */
#include "settings.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "router.h"
#include "wire.h"

/* t[key] of the table at -1, pushed, without metamethods: a settings table
 * is the user's, and its __index would run code nobody times. */
static void raw_field(lua_State *L, const char *key) {
  lua_pushstring(L, key);
  lua_rawget(L, -2);
}

static const char *const known_keys[] = {"handler", "routes", "timeout", "memory", "concurrency",
                                         "warm",    "idle",   "env",     "triggers"};
#define NKNOWN (sizeof known_keys / sizeof known_keys[0])

void cr_settings_defaults(cr_settings_t *s) {
  memset(s, 0, sizeof *s);
  s->timeout = CR_DEFAULT_TIMEOUT;
  s->memory = CR_DEFAULT_MEMORY;
  s->concurrency = CR_DEFAULT_CONCURRENCY;
  s->warm = 0;
  s->idle = CR_DEFAULT_IDLE;
}

void cr_settings_free(cr_settings_t *s) {
  for (int i = 0; i < s->nroutes; i++) free(s->routes[i].path);
  free(s->routes);
  for (int i = 0; i < 2 * s->nenv; i++) free(s->env[i]);
  free(s->env);
  free(s->triggers);
  cr_settings_defaults(s);
}

const char *cr_settings_env(const cr_settings_t *s, const char *name) {
  for (int i = 0; i < s->nenv; i++)
    if (strcmp(s->env[2 * i], name) == 0) return s->env[2 * i + 1];
  return NULL;
}

/* Levenshtein distance, for "did you mean" on misspelt keys. */
static int distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 31 || lb > 31) return 99;
  int d[32][32];
  for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
      d[i][j] = c;
    }
  return d[la][lb];
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return CR_EINVAL;
}

static int read_number(lua_State *L, const char *key, double lo, double hi, int integer, double *out,
                       char *err, size_t errlen) {
  raw_field(L, key);
  int t = lua_type(L, -1);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (t != LUA_TNUMBER || v != v || v < lo || v > hi || (integer && v != floor(v))) {
    const char *what = integer ? "an integer" : "a number";
    if (t != LUA_TNUMBER)
      return fail(err, errlen, "setting '%s' must be %s from %g to %g, got a %s", key, what, lo, hi,
                  lua_typename(L, t));
    return fail(err, errlen, "setting '%s' must be %s from %g to %g, got %g", key, what, lo, hi, v);
  }
  *out = v;
  return 0;
}

static int read_routes_into(lua_State *L, cr_settings_t *s, int platform, cr_router_t *shapes, char *err,
                            size_t errlen);

static int read_routes(lua_State *L, cr_settings_t *s, int platform, char *err, size_t errlen) {
  cr_router_t *shapes = cr_router_new();
  int rc = read_routes_into(L, s, platform, shapes, err, errlen);
  cr_router_free(shapes);
  return rc;
}

static int read_routes_into(lua_State *L, cr_settings_t *s, int platform, cr_router_t *shapes, char *err,
                            size_t errlen) {
  raw_field(L, "routes");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return fail(err, errlen, "setting 'routes' must be a list of strings like \"GET /users/:id\"");
  }
  int n = (int)lua_objlen(L, -1);
  s->has_routes = 1;
  s->routes = calloc((size_t)(n ? n : 1), sizeof *s->routes);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 2);
      return fail(err, errlen, "setting 'routes': entry %d must be a string like \"GET /users/:id\"", i);
    }
    const char *r = lua_tostring(L, -1);
    const char *sp = strchr(r, ' ');
    unsigned methods = CR_M_ANY;
    const char *path = r;
    if (sp) {
      methods = 0;
      const char *m = r;
      /* "GET,POST /x" or "GET /x" */
      while (m < sp) {
        const char *comma = memchr(m, ',', (size_t)(sp - m));
        const char *me = comma ? comma : sp;
        unsigned bit = cr_method_parse(m, (size_t)(me - m));
        if (!bit) {
          int rc = fail(err, errlen, "setting 'routes': unknown method '%.*s' in \"%s\" (use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or ANY)",
                        (int)(me - m), m, r);
          lua_pop(L, 2);
          return rc;
        }
        methods |= bit;
        m = me + 1;
      }
      path = sp + 1;
      while (*path == ' ') path++;
      if (methods == 0) {
        int rc = fail(err, errlen, "setting 'routes': \"%s\" needs a method before the path (or just the path, for any method)", r);
        lua_pop(L, 2);
        return rc;
      }
    }
    char perr[200];
    if (cr_router_check_pattern(path, perr, sizeof perr)) {
      int rc = fail(err, errlen, "setting 'routes': %s", perr);
      lua_pop(L, 2);
      return rc;
    }
    if (!platform && (strncmp(path, "/_/", 3) == 0 || strcmp(path, "/_") == 0)) {
      int rc = fail(err, errlen, "setting 'routes': \"%s\": paths under /_/ are reserved for the platform", r);
      lua_pop(L, 2);
      return rc;
    }
    /* Two of its own routes with the same shape (parameter names aside) and a
     * common method would leave one unreachable. */
    void *other = NULL;
    char rerr[8];
    if (shapes && cr_router_add(shapes, methods, path, (void *)(intptr_t)(s->nroutes + 1), &other, rerr, sizeof rerr) ==
                      CR_ECONFLICT) {
      const char *prev = s->routes[(intptr_t)other - 1].path;
      int rc = strcmp(prev, path) == 0
                   ? fail(err, errlen, "setting 'routes': \"%s\" is listed twice", r)
                   : fail(err, errlen, "setting 'routes': \"%s\" overlaps \"%s\" (same path shape and method)", r, prev);
      lua_pop(L, 2);
      return rc;
    }
    s->routes[s->nroutes].methods = methods;
    s->routes[s->nroutes].path = strdup(path);
    s->nroutes++;
    lua_pop(L, 1);
  }
  /* A table with non-list keys is a mistake worth naming. */
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 2);
      return fail(err, errlen, "setting 'routes' must be a list (got a table with named keys)");
    }
  }
  lua_pop(L, 1);
  return 0;
}

static int valid_env_name(const char *k) {
  if (!*k || (*k >= '0' && *k <= '9')) return 0;
  for (; *k; k++)
    if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') || *k == '_'))
      return 0;
  return 1;
}

static int read_env(lua_State *L, cr_settings_t *s, char *err, size_t errlen) {
  raw_field(L, "env");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return fail(err, errlen, "setting 'env' must be a table of NAME = \"value\"");
  }
  int cap = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING || !valid_env_name(lua_tostring(L, -2))) {
      lua_pop(L, 3);
      return fail(err, errlen, "setting 'env': names must be identifiers like API_URL");
    }
    int vt = lua_type(L, -1);
    if (vt != LUA_TSTRING && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN) {
      int rc = fail(err, errlen, "setting 'env': '%s' must be a string, number or boolean, got a %s",
                    lua_tostring(L, -2), lua_typename(L, vt));
      lua_pop(L, 3);
      return rc;
    }
    if (s->nenv == cap) {
      cap = cap ? cap * 2 : 8;
      s->env = realloc(s->env, sizeof(char *) * 2 * (size_t)cap);
    }
    const char *v;
    char num[64];
    if (vt == LUA_TBOOLEAN) v = lua_toboolean(L, -1) ? "true" : "false";
    else if (vt == LUA_TNUMBER) {
      cr_buf_t b = CR_BUF_INIT;
      cr_json_number(&b, lua_tonumber(L, -1));
      snprintf(num, sizeof num, "%.*s", (int)b.len, b.data ? b.data : "");
      cr_buf_free(&b);
      v = num;
    } else v = lua_tostring(L, -1);
    s->env[2 * s->nenv] = strdup(lua_tostring(L, -2));
    s->env[2 * s->nenv + 1] = strdup(v);
    s->nenv++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

static const char *const trigger_kinds[] = {"cron", "queue", "storage", "kv"};

static int read_triggers(lua_State *L, cr_settings_t *s, char *err, size_t errlen) {
  raw_field(L, "triggers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return fail(err, errlen, "setting 'triggers' must be a list like { { cron = \"0 2 * * *\" } }");
  }
  int n = (int)lua_objlen(L, -1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    int kinds = 0;
    if (lua_istable(L, -1)) {
      for (size_t k = 0; k < sizeof trigger_kinds / sizeof trigger_kinds[0]; k++) {
        raw_field(L, trigger_kinds[k]);
        if (!lua_isnil(L, -1)) {
          if (lua_type(L, -1) != LUA_TSTRING) {
            int rc = fail(err, errlen, "setting 'triggers': entry %d: '%s' must be a string", i, trigger_kinds[k]);
            lua_pop(L, 3);
            return rc;
          }
          kinds++;
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    if (kinds != 1) {
      lua_pop(L, 1);
      return fail(err, errlen, "setting 'triggers': entry %d must be a table with exactly one of cron, queue, storage or kv", i);
    }
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 2);
      return fail(err, errlen, "setting 'triggers' must be a list (got a table with named keys)");
    }
  }
  /* Always a JSON array, even empty. */
  cr_buf_t b = CR_BUF_INIT;
  char jerr[160];
  cr_buf_putc(&b, '[');
  for (int i = 1; i <= n; i++) {
    if (i > 1) cr_buf_putc(&b, ',');
    lua_rawgeti(L, -1, i);
    int rc = cr_json_encode(L, -1, &b, jerr, sizeof jerr);
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      cr_buf_free(&b);
      return fail(err, errlen, "setting 'triggers': entry %d: %s", i, jerr);
    }
  }
  cr_buf_putc(&b, ']');
  lua_pop(L, 1);
  s->triggers = strndup(b.data, b.len);
  cr_buf_free(&b);
  return 0;
}

static int read_settings(lua_State *L, int idx, cr_settings_t *s, int platform, char *err, size_t errlen);

int cr_settings_read(lua_State *L, int idx, cr_settings_t *s, char *err, size_t errlen) {
  return read_settings(L, idx, s, 0, err, errlen);
}

int cr_settings_read_platform(lua_State *L, int idx, cr_settings_t *s, char *err, size_t errlen) {
  return read_settings(L, idx, s, 1, err, errlen);
}

int cr_settings_set_env(cr_settings_t *s, const char *name, const char *value) {
  for (int i = 0; i < s->nenv; i++) {
    if (strcmp(s->env[2 * i], name) == 0) {
      char *v = strdup(value);
      if (!v) return CR_ENOMEM;
      free(s->env[2 * i + 1]);
      s->env[2 * i + 1] = v;
      return 0;
    }
  }
  char **env = realloc(s->env, sizeof(char *) * 2 * (size_t)(s->nenv + 1));
  if (!env) return CR_ENOMEM;
  s->env = env;
  s->env[2 * s->nenv] = strdup(name);
  s->env[2 * s->nenv + 1] = strdup(value);
  s->nenv++;
  return 0;
}

static int read_settings(lua_State *L, int idx, cr_settings_t *s, int platform, char *err, size_t errlen) {
  cr_settings_defaults(s);
  int t = lua_type(L, idx);
  if (t == LUA_TFUNCTION) return 0;
  if (t != LUA_TTABLE)
    return fail(err, errlen, "the file must return a handler function or a table with a 'handler' "
                             "(it returned a %s)", lua_typename(L, t));
  int top = lua_gettop(L);
  lua_pushvalue(L, idx);
  int rc = 0;
  /* Every key must be known. */
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      rc = fail(err, errlen, "the returned table has a key of type %s; settings are named keys",
                lua_typename(L, lua_type(L, -1)));
      goto out;
    }
    const char *k = lua_tostring(L, -1);
    int known = 0, best = 99;
    const char *suggest = NULL;
    for (size_t i = 0; i < NKNOWN; i++) {
      if (strcmp(k, known_keys[i]) == 0) known = 1;
      int d = distance(k, known_keys[i]);
      if (d < best) {
        best = d;
        suggest = known_keys[i];
      }
    }
    if (!known) {
      if (best <= 2)
        rc = fail(err, errlen, "unknown setting '%s' (did you mean '%s'?)", k, suggest);
      else
        rc = fail(err, errlen, "unknown setting '%s' (known: handler, routes, timeout, memory, "
                               "concurrency, warm, idle, env, triggers)", k);
      goto out;
    }
  }
  raw_field(L, "handler");
  if (!lua_isfunction(L, -1)) {
    rc = fail(err, errlen, "setting 'handler' must be a function, got %s",
              lua_isnil(L, -1) ? "nothing" : lua_typename(L, lua_type(L, -1)));
    goto out;
  }
  lua_pop(L, 1);
  double v;
  v = s->timeout;
  if ((rc = read_number(L, "timeout", 0.001, CR_MAX_TIMEOUT, 0, &v, err, errlen))) goto out;
  s->timeout = v;
  v = s->memory;
  if ((rc = read_number(L, "memory", 1, CR_MAX_MEMORY, 1, &v, err, errlen))) goto out;
  s->memory = (int)v;
  v = s->concurrency;
  if ((rc = read_number(L, "concurrency", 1, CR_MAX_CONCURRENCY, 1, &v, err, errlen))) goto out;
  s->concurrency = (int)v;
  v = s->warm;
  if ((rc = read_number(L, "warm", 0, 100, 1, &v, err, errlen))) goto out;
  s->warm = (int)v;
  v = s->idle;
  if ((rc = read_number(L, "idle", 1, 86400, 0, &v, err, errlen))) goto out;
  s->idle = v;
  if (s->warm > s->concurrency) {
    rc = fail(err, errlen, "setting 'warm' (%d) cannot exceed 'concurrency' (%d)", s->warm, s->concurrency);
    goto out;
  }
  if ((rc = read_routes(L, s, platform, err, errlen))) goto out;
  if ((rc = read_env(L, s, err, errlen))) goto out;
  if ((rc = read_triggers(L, s, err, errlen))) goto out;
out:
  lua_settop(L, top);
  if (rc) cr_settings_free(s);
  return rc;
}

/* --- pack / unpack (wire.h) */

int cr_settings_pack(const cr_settings_t *s, cr_buf_t *b) {
  int rc = cr_wire_u32(b, (uint32_t)s->has_routes) || cr_wire_u32(b, (uint32_t)s->nroutes);
  for (int i = 0; i < s->nroutes && !rc; i++)
    rc = cr_wire_u32(b, s->routes[i].methods) || cr_wire_str(b, s->routes[i].path) ||
         cr_wire_u32(b, s->routes[i].policy.flags);
  rc = rc || cr_wire_f64(b, s->timeout) || cr_wire_u32(b, (uint32_t)s->memory) ||
       cr_wire_u32(b, (uint32_t)s->concurrency) || cr_wire_u32(b, (uint32_t)s->warm) || cr_wire_f64(b, s->idle) ||
       cr_wire_u32(b, (uint32_t)s->nenv);
  for (int i = 0; i < 2 * s->nenv && !rc; i++) rc = cr_wire_str(b, s->env[i]);
  rc = rc || cr_wire_str(b, s->triggers);
  return rc ? CR_ENOMEM : 0;
}

int cr_settings_unpack_from(cr_wire_reader_t *r, cr_settings_t *s) {
  cr_settings_defaults(s);
  s->has_routes = (int)cr_wire_get_u32(r);
  uint32_t nroutes = cr_wire_get_u32(r);
  if (r->bad || nroutes > 10000) return CR_EINVAL;
  s->routes = calloc(nroutes ? nroutes : 1, sizeof *s->routes);
  for (uint32_t i = 0; i < nroutes && !r->bad; i++) {
    s->routes[i].methods = cr_wire_get_u32(r);
    s->routes[i].path = cr_wire_get_bytes(r, NULL);
    s->routes[i].policy.flags = cr_wire_get_u32(r);
    s->nroutes++;
    if (!s->routes[i].path || (s->routes[i].policy.flags & ~CR_POLICY_KNOWN)) r->bad = 1;
  }
  s->timeout = cr_wire_get_f64(r);
  s->memory = (int)cr_wire_get_u32(r);
  s->concurrency = (int)cr_wire_get_u32(r);
  s->warm = (int)cr_wire_get_u32(r);
  s->idle = cr_wire_get_f64(r);
  uint32_t nenv = cr_wire_get_u32(r);
  if (!r->bad && nenv <= 10000) {
    s->env = calloc(2 * (size_t)nenv + 1, sizeof(char *));
    for (uint32_t i = 0; i < nenv && !r->bad; i++) {
      s->env[2 * i] = cr_wire_get_bytes(r, NULL);
      s->env[2 * i + 1] = cr_wire_get_bytes(r, NULL);
      s->nenv++;
      if (!s->env[2 * i] || !s->env[2 * i + 1]) r->bad = 1;
    }
  } else {
    r->bad = 1;
  }
  s->triggers = cr_wire_get_bytes(r, NULL);
  if (r->bad) {
    cr_settings_free(s);
    return CR_EINVAL;
  }
  return 0;
}

int cr_settings_unpack(const char *data, size_t len, cr_settings_t *s) {
  cr_wire_reader_t r;
  cr_wire_reader(&r, data, len);
  int rc = cr_settings_unpack_from(&r, s);
  if (rc == 0 && r.p != r.end) {
    cr_settings_free(s);
    return CR_EINVAL;
  }
  return rc;
}
