/* settings.c - reading, validating and moving function settings. */
#include "settings.h"

#include <ctype.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cron.h"
#include "egress.h"
#include "jwt.h"
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

static const char *const known_keys[] = {"handler", "routes",  "timeout",   "memory",   "concurrency", "warm",
                                         "idle",    "env",     "triggers",  "retries",  "onSuccess",   "onFailure",
                                         "egress",  "cors",    "rateLimit", "auth",    "cache"};
#define NKNOWN (sizeof known_keys / sizeof known_keys[0])

void cr_settings_defaults(cr_settings_t *s) {
  memset(s, 0, sizeof *s);
  s->timeout = CR_DEFAULT_TIMEOUT;
  s->memory = CR_DEFAULT_MEMORY;
  s->concurrency = CR_DEFAULT_CONCURRENCY;
  s->warm = 0;
  s->idle = CR_DEFAULT_IDLE;
  s->retries = CR_DEFAULT_RETRIES;
  s->negress = -1;
}

static void trigger_free(cr_trigger_spec_t *t) {
  switch (t->kind) {
  case CR_TRIGGER_CRON:
    free(t->cron.expr);
    free(t->cron.tz);
    break;
  case CR_TRIGGER_QUEUE:
    free(t->queue.name);
    break;
  case CR_TRIGGER_STORAGE:
    free(t->storage.bucket);
    free(t->storage.prefix);
    free(t->storage.suffix);
    break;
  case CR_TRIGGER_KV:
    free(t->kv.prefix);
    free(t->kv.ns);
    break;
  case CR_TRIGGER_AUTH:
    break;
  }
}

void cr_settings_free(cr_settings_t *s) {
  for (int i = 0; i < s->nroutes; i++) free(s->routes[i].path);
  free(s->routes);
  for (int i = 0; i < 2 * s->nenv; i++) free(s->env[i]);
  free(s->env);
  for (int i = 0; i < s->ntriggers; i++) trigger_free(&s->triggers[i]);
  free(s->triggers);
  free(s->on_success);
  free(s->on_failure);
  for (int i = 0; i < s->negress; i++) free(s->egress[i]);
  free(s->egress);
  for (int i = 0; i < s->cors.norigins; i++) free(s->cors.origins[i]);
  free(s->cors.origins);
  free(s->cors.methods);
  free(s->cors.headers);
  free(s->cors.expose);
  free(s->rate.header);
  free(s->auth.authorizer);
  free(s->auth.identity);
  free(s->auth.issuer);
  free(s->auth.audience);
  free(s->auth.keys_file);
  free(s->auth.secret_env);
  for (int i = 0; i < s->cache.nvary; i++) free(s->cache.vary[i]);
  free(s->cache.vary);
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
    /* Strings only, as environment variables are (Lambda's, Workers'): a
     * number or boolean turned into a string silently is a type the handler
     * does not expect, and kept as is it would differ from a value the
     * environment or a secret store sets later. So it is refused, with the
     * spelling that works. */
    int vt = lua_type(L, -1);
    if (vt != LUA_TSTRING) {
      const char *name = lua_tostring(L, -2);
      int rc;
      if (vt == LUA_TNUMBER) {
        cr_buf_t b = CR_BUF_INIT;
        cr_json_number(&b, lua_tonumber(L, -1));
        const char *num = b.data ? b.data : "";
        int nl = (int)b.len;
        rc = fail(err, errlen,
                  "setting 'env': '%s' must be a string, got the number %.*s (env values are strings, as in a "
                  "process environment): write %s = \"%.*s\" and read it with tonumber(ctx.env.%s)",
                  name, nl, num, name, nl, num, name);
        cr_buf_free(&b);
      } else if (vt == LUA_TBOOLEAN) {
        const char *v = lua_toboolean(L, -1) ? "true" : "false";
        rc = fail(err, errlen,
                  "setting 'env': '%s' must be a string, got the boolean %s (env values are strings, as in a "
                  "process environment): write %s = \"%s\" and test ctx.env.%s == \"%s\"",
                  name, v, name, v, name, v);
      } else {
        rc = fail(err, errlen, "setting 'env': '%s' must be a string, got a %s", name, lua_typename(L, vt));
      }
      lua_pop(L, 3);
      return rc;
    }
    if (s->nenv == cap) {
      cap = cap ? cap * 2 : 8;
      s->env = realloc(s->env, sizeof(char *) * 2 * (size_t)cap);
    }
    const char *v = lua_tostring(L, -1);
    s->env[2 * s->nenv] = strdup(lua_tostring(L, -2));
    s->env[2 * s->nenv + 1] = strdup(v);
    s->nenv++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* --- triggers */

/* Character rules, the same as the stdlib module the trigger reads applies
 * to its names: a trigger on a name the module refuses could never fire. */
static int name_ok(const char *v, size_t n, size_t max, const char *extra) {
  if (n < 1 || n > max) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = v[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr(extra, c))))
      return 0;
  }
  return 1;
}
static int queue_name_ok(const char *v, size_t n) { return name_ok(v, n, 128, "_.:-"); }
static int namespace_ok(const char *v, size_t n) { return name_ok(v, n, 64, "_.-"); }
static int bucket_ok(const char *v, size_t n) {
  if (n < 1 || n > 63 || !((v[0] >= 'a' && v[0] <= 'z') || (v[0] >= '0' && v[0] <= '9'))) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '.' || v[i] == '-')) return 0;
  return 1;
}
/* Strings are kept as C strings, so none may hold a NUL. */
static int cron_ok(const char *v, size_t n) { return n >= 1 && n <= 256 && strlen(v) == n; }
static int tz_ok(const char *v, size_t n) {
  if (n < 1 || n > 128) return 0;
  for (size_t i = 0; i < n; i++)
    if (v[i] <= ' ' || v[i] >= 127) return 0;
  return 1;
}
/* Object keys have no control characters, so an affix with one never matches. */
static int affix_ok(const char *v, size_t n) {
  if (n > 1024) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)v[i] < 32 || v[i] == 127) return 0;
  return 1;
}
static int kv_prefix_ok(const char *v, size_t n) { return n <= 1024 && strlen(v) == n; }

typedef int (*string_rule_fn)(const char *v, size_t n);

/* One entry being read: its table is at -1 of L. */
typedef struct {
  lua_State *L;
  int entry;
  char *err;
  size_t errlen;
} entry_t;

static int entry_fail(entry_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int entry_fail(entry_t *e, const char *fmt, ...) {
  int n = snprintf(e->err, e->errlen, "setting 'triggers': entry %d: ", e->entry);
  if (n < 0 || (size_t)n >= e->errlen) return CR_EINVAL;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->err + n, e->errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return CR_EINVAL;
}

/* The value at -1 for an error message: "a <type>", or a short printable
 * string quoted. */
static void describe(lua_State *L, char *out, size_t outlen) {
  int t = lua_type(L, -1);
  if (t == LUA_TSTRING) {
    size_t n;
    const char *v = lua_tolstring(L, -1, &n);
    int printable = n <= 60;
    for (size_t i = 0; i < n && printable; i++)
      if ((unsigned char)v[i] < 32 || v[i] == 127) printable = 0;
    if (printable) snprintf(out, outlen, "\"%s\"", v);
    else snprintf(out, outlen, "a %zu-byte string", n);
    return;
  }
  snprintf(out, outlen, "a %s", lua_typename(L, t));
}

static int entry_string(entry_t *e, const char *key, string_rule_fn ok, const char *rule, char **out) {
  lua_State *L = e->L;
  raw_field(L, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  size_t n = 0;
  const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  if (!v || !ok(v, n)) {
    char got[80];
    describe(L, got, sizeof got);
    lua_pop(L, 1);
    return entry_fail(e, "'%s' must be %s, got %s", key, rule, got);
  }
  free(*out); /* a default */
  *out = strdup(v);
  lua_pop(L, 1);
  return 0;
}

static int entry_number(entry_t *e, const char *key, double lo, double hi, int integer, double *out) {
  lua_State *L = e->L;
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
      return entry_fail(e, "'%s' must be %s from %.15g to %.15g, got a %s", key, what, lo, hi, lua_typename(L, t));
    return entry_fail(e, "'%s' must be %s from %.15g to %.15g, got %.15g", key, what, lo, hi, v);
  }
  *out = v;
  return 0;
}

static int entry_int(entry_t *e, const char *key, int lo, int hi, int *out) {
  double v = *out;
  int rc = entry_number(e, key, lo, hi, 1, &v);
  *out = (int)v;
  return rc;
}

static int entry_bool(entry_t *e, const char *key, int *out) {
  lua_State *L = e->L;
  raw_field(L, key);
  int t = lua_type(L, -1);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN) {
    lua_pop(L, 1);
    return entry_fail(e, "'%s' must be true or false, got a %s", key, lua_typename(L, t));
  }
  if (t == LUA_TBOOLEAN) *out = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return 0;
}

/* Shared by queue, storage and kv: see cr_stream_opts_t. */
static int entry_stream(entry_t *e, double timeout, cr_stream_opts_t *o) {
  o->batch = CR_DEFAULT_BATCH;
  o->window = CR_DEFAULT_WINDOW;
  o->visibility = CR_VISIBILITY_TIMEOUTS * timeout;
  o->max_receives = CR_DEFAULT_MAX_RECEIVES;
  o->concurrency = CR_DEFAULT_TRIGGER_CONCURRENCY;
  int rc;
  if ((rc = entry_int(e, "batch", 1, CR_MAX_BATCH, &o->batch)) ||
      (rc = entry_number(e, "window", 0, CR_MAX_WINDOW, 0, &o->window)) ||
      (rc = entry_number(e, "visibility", 0.001, CR_MAX_VISIBILITY, 0, &o->visibility)) ||
      (rc = entry_int(e, "maxReceives", 1, CR_MAX_MAX_RECEIVES, &o->max_receives)) ||
      (rc = entry_int(e, "concurrency", 1, CR_MAX_TRIGGER_CONCURRENCY, &o->concurrency)))
    return rc;
  if (o->visibility < timeout)
    return entry_fail(e,
                      "'visibility' (%.15g) must be at least the function's 'timeout' (%.15g), "
                      "or a batch still running is handed out again",
                      o->visibility, timeout);
  return 0;
}

static int entry_events(entry_t *e, unsigned *out) {
  lua_State *L = e->L;
  static const char rule[] = "a list of \"put\" and \"delete\"";
  raw_field(L, "events");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) {
    char got[80];
    describe(L, got, sizeof got);
    lua_pop(L, 1);
    return entry_fail(e, "'events' must be %s, got %s", rule, got);
  }
  int n = (int)lua_objlen(L, -1);
  unsigned bits = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (v && strcmp(v, "put") == 0) bits |= CR_STORAGE_PUT;
    else if (v && strcmp(v, "delete") == 0) bits |= CR_STORAGE_DELETE;
    else {
      char got[80];
      describe(L, got, sizeof got);
      lua_pop(L, 2);
      return entry_fail(e, "'events' entry %d must be \"put\" or \"delete\", got %s", i, got);
    }
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (k < 1 || k > n || k != floor(k)) {
      lua_pop(L, 2);
      return entry_fail(e, "'events' must be %s, got a table with other keys", rule);
    }
  }
  lua_pop(L, 1);
  if (!bits) return entry_fail(e, "'events' must be %s, got an empty list", rule);
  *out = bits;
  return 0;
}

#define STREAM_KEYS "batch", "window", "visibility", "maxReceives", "concurrency"
static const char *const cron_keys[] = {"cron", "tz", "catchUp", "overlap", NULL};
static const char *const queue_keys[] = {"queue", STREAM_KEYS, NULL};
static const char *const storage_keys[] = {"storage", "events", "prefix", "suffix", STREAM_KEYS, NULL};
static const char *const kv_keys[] = {"kv", "namespace", STREAM_KEYS, NULL};
static const char *const auth_keys[] = {"auth", NULL};

static const char *const auth_hooks[CR_AUTH_NHOOKS + 1] = {
    NULL, "preSignUp", "postConfirmation", "preSignIn", "postSignIn", "preTokenGeneration", "customMessage"};

const char *cr_auth_hook_name(int hook) { return hook >= 1 && hook <= CR_AUTH_NHOOKS ? auth_hooks[hook] : NULL; }

/* Indexed by cr_trigger_kind_t; each kind's key list starts with its name. */
static const char *const *const kind_keys[] = {NULL, cron_keys, queue_keys, storage_keys, kv_keys, auth_keys};
#define NKINDS 5

/* Every key of the entry is a name this kind knows. */
static int entry_keys(entry_t *e, cr_trigger_kind_t kind) {
  lua_State *L = e->L;
  const char *const *keys = kind_keys[kind];
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      int rc = entry_fail(e, "keys must be names, got a key of type %s", lua_typename(L, lua_type(L, -1)));
      lua_pop(L, 1);
      return rc;
    }
    const char *k = lua_tostring(L, -1);
    int known = 0, best = 99;
    const char *suggest = NULL;
    for (int i = 0; keys[i]; i++) {
      if (strcmp(k, keys[i]) == 0) known = 1;
      int d = distance(k, keys[i]);
      if (d < best) {
        best = d;
        suggest = keys[i];
      }
    }
    if (!known) {
      int rc;
      if (best <= 2) {
        rc = entry_fail(e, "unknown key '%s' for a %s trigger (did you mean '%s'?)", k, keys[0], suggest);
      } else {
        char list[200];
        size_t o = 0;
        for (int i = 0; keys[i] && o < sizeof list; i++)
          o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", keys[i]);
        rc = entry_fail(e, "unknown key '%s' for a %s trigger (known: %s)", k, keys[0], list);
      }
      lua_pop(L, 1);
      return rc;
    }
  }
  return 0;
}

/* Which one kind key the entry has. */
static int entry_kind(entry_t *e, cr_trigger_kind_t *kind) {
  lua_State *L = e->L;
  int found = 0;
  const char *first = NULL;
  for (int k = 1; k <= NKINDS; k++) {
    raw_field(L, kind_keys[k][0]);
    int present = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!present) continue;
    if (found)
      return entry_fail(e, "a trigger has exactly one of cron, queue, storage, kv or auth (got '%s' and '%s')", first,
                        kind_keys[k][0]);
    found = k;
    first = kind_keys[k][0];
  }
  if (!found) {
    /* A misspelt kind ({ quue = "orders" }) deserves its name. */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) continue;
      const char *k = lua_tostring(L, -1);
      for (int i = 1; i <= NKINDS; i++)
        if (distance(k, kind_keys[i][0]) <= 1) {
          int rc = entry_fail(e, "a trigger needs one of cron, queue, storage, kv or auth (got '%s': did you mean '%s'?)",
                              k, kind_keys[i][0]);
          lua_pop(L, 1);
          return rc;
        }
    }
    return entry_fail(e, "a trigger needs one of cron, queue, storage, kv or auth");
  }
  *kind = (cr_trigger_kind_t)found;
  return 0;
}

/* Reads the entry at -1 into t (zeroed; on failure what it holds is freed
 * with the settings). */
static int read_trigger(entry_t *e, double timeout, cr_trigger_spec_t *t) {
  cr_trigger_kind_t kind;
  int rc;
  if ((rc = entry_kind(e, &kind)) || (rc = entry_keys(e, kind))) return rc;
  t->kind = kind;
  switch (kind) {
  case CR_TRIGGER_CRON:
    if ((rc = entry_string(e, "cron", cron_ok, "a non-empty string of at most 256 bytes", &t->cron.expr)) ||
        (rc = entry_string(e, "tz", tz_ok, "a time zone name such as \"Europe/Berlin\"", &t->cron.tz)) ||
        (rc = entry_number(e, "catchUp", 0, CR_MAX_CATCH_UP, 0, &t->cron.catch_up)) ||
        (rc = entry_bool(e, "overlap", &t->cron.overlap)))
      return rc;
    {
      /* The expression and the zone, as the scheduler will read them (cron.h). */
      char why[300];
      cr_cron_t *c = cr_cron_parse(t->cron.expr, t->cron.tz, why, sizeof why);
      if (!c) return entry_fail(e, "cron '%s'%s%s%s: %s", t->cron.expr, t->cron.tz ? " (tz " : "",
                                t->cron.tz ? t->cron.tz : "", t->cron.tz ? ")" : "", why);
      cr_cron_free(c);
    }
    return 0;
  case CR_TRIGGER_QUEUE:
    if ((rc = entry_string(e, "queue", queue_name_ok, "a queue name (1 to 128 letters, digits, '_', '.', ':' or '-')",
                           &t->queue.name)))
      return rc;
    if (strncmp(t->queue.name, CR_RESERVED_QUEUE_PREFIX, strlen(CR_RESERVED_QUEUE_PREFIX)) == 0)
      return entry_fail(e, "queue '%s' is the platform's (names starting with '" CR_RESERVED_QUEUE_PREFIX "' are reserved)",
                        t->queue.name);
    return entry_stream(e, timeout, &t->queue.opts);
  case CR_TRIGGER_STORAGE:
    t->storage.events = CR_STORAGE_PUT | CR_STORAGE_DELETE;
    if ((rc = entry_string(e, "storage", bucket_ok,
                           "a bucket name (1 to 63 of a-z, 0-9, '.' and '-', starting with a letter or digit)",
                           &t->storage.bucket)) ||
        (rc = entry_events(e, &t->storage.events)) ||
        (rc = entry_string(e, "prefix", affix_ok, "a string of at most 1024 bytes without control characters",
                           &t->storage.prefix)) ||
        (rc = entry_string(e, "suffix", affix_ok, "a string of at most 1024 bytes without control characters",
                           &t->storage.suffix)))
      return rc;
    return entry_stream(e, timeout, &t->storage.opts);
  case CR_TRIGGER_KV:
    t->kv.ns = strdup("default");
    if ((rc = entry_string(e, "kv", kv_prefix_ok, "a key prefix (a string of at most 1024 bytes, without NUL)",
                           &t->kv.prefix)) ||
        (rc = entry_string(e, "namespace", namespace_ok, "a namespace name (1 to 64 letters, digits, '_', '.' or '-')",
                           &t->kv.ns)))
      return rc;
    return entry_stream(e, timeout, &t->kv.opts);
  case CR_TRIGGER_AUTH: {
    lua_State *L = e->L;
    raw_field(L, "auth");
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    for (int h = 1; v && h <= CR_AUTH_NHOOKS; h++)
      if (strcmp(v, auth_hooks[h]) == 0) t->auth.hook = h;
    char got[80];
    describe(L, got, sizeof got);
    lua_pop(L, 1);
    if (!t->auth.hook)
      return entry_fail(e, "'auth' must be one of \"preSignUp\", \"postConfirmation\", \"preSignIn\", "
                           "\"postSignIn\", \"preTokenGeneration\", \"customMessage\", got %s", got);
    return 0;
  }
  }
  return entry_fail(e, "unknown kind"); /* not reached */
}

/* Which kinds this build runs, indexed by cr_trigger_kind_t: each trigger's
 * issue turns its kind on here when the trigger fires. Until then a function
 * declaring the kind fails to load, since a trigger accepted and never fired
 * is worse than a refusal. */
static const int kind_supported[NKINDS + 1] = {
    [CR_TRIGGER_CRON] = 1,    /* core/trigger/cron */
    [CR_TRIGGER_QUEUE] = 1, /* core/trigger/queue */
    [CR_TRIGGER_STORAGE] = 1, /* core/trigger/queue, on the bucket's events stream */
    [CR_TRIGGER_KV] = 1,      /* likewise, on the namespace's changes stream */
    [CR_TRIGGER_AUTH] = 1,    /* the accounts' hooks (core/trigger/http/accounts_api.c) */
};

int cr_trigger_supported(cr_trigger_kind_t kind) {
  return kind >= CR_TRIGGER_CRON && kind <= NKINDS && kind_supported[kind];
}

int cr_settings_check_triggers(const cr_settings_t *s, char *err, size_t errlen) {
  for (int i = 0; i < s->ntriggers; i++) {
    cr_trigger_kind_t kind = s->triggers[i].kind;
    if (!cr_trigger_supported(kind))
      return fail(err, errlen,
                  "setting 'triggers': entry %d: %s triggers are not supported yet (this version runs HTTP, "
                  "queue, storage and kv triggers only); remove the entry",
                  i + 1, kind >= CR_TRIGGER_CRON && kind <= NKINDS ? kind_keys[kind][0] : "unknown");
    /* One consumer group per function and stream: two entries on one
     * bucket or namespace would share it, each seeing part of the records. */
    for (int j = 0; j < i && (kind == CR_TRIGGER_STORAGE || kind == CR_TRIGGER_KV); j++) {
      const cr_trigger_spec_t *a = &s->triggers[j], *b = &s->triggers[i];
      if (a->kind != kind) continue;
      if (kind == CR_TRIGGER_STORAGE && strcmp(a->storage.bucket, b->storage.bucket) == 0)
        return fail(err, errlen,
                    "setting 'triggers': entry %d: bucket '%s' already has a trigger (entry %d): a function reads "
                    "a bucket through one entry",
                    i + 1, b->storage.bucket, j + 1);
      if (kind == CR_TRIGGER_KV && strcmp(a->kv.ns, b->kv.ns) == 0)
        return fail(err, errlen,
                    "setting 'triggers': entry %d: namespace '%s' already has a trigger (entry %d): a function reads "
                    "a namespace through one entry",
                    i + 1, b->kv.ns, j + 1);
    }
  }
  return 0;
}

static const char triggers_like[] = "a list like { { cron = \"0 2 * * *\" }, { queue = \"orders\" } }";

static int read_triggers(lua_State *L, cr_settings_t *s, char *err, size_t errlen) {
  raw_field(L, "triggers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) {
    int rc = fail(err, errlen, "setting 'triggers' must be %s, got a %s", triggers_like,
                  lua_typename(L, lua_type(L, -1)));
    lua_pop(L, 1);
    return rc;
  }
  int n = (int)lua_objlen(L, -1);
  /* A list and nothing else: every key an integer from 1 to n. */
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (k < 1 || k > n || k != floor(k)) {
      lua_pop(L, 2);
      return fail(err, errlen, "setting 'triggers' must be %s (got a table with named keys)", triggers_like);
    }
  }
  if (n > CR_MAX_TRIGGERS) {
    lua_pop(L, 1);
    return fail(err, errlen, "setting 'triggers' has %d entries; at most %d", n, CR_MAX_TRIGGERS);
  }
  if (n) s->triggers = calloc((size_t)n, sizeof *s->triggers);
  for (int i = 1; i <= n; i++) {
    entry_t e = {L, i, err, errlen};
    lua_rawgeti(L, -1, i);
    if (!lua_istable(L, -1)) {
      int rc = entry_fail(&e, "must be a table such as { queue = \"orders\" }, got a %s",
                          lua_typename(L, lua_type(L, -1)));
      lua_pop(L, 2);
      return rc;
    }
    s->ntriggers++; /* counted first: free releases what a failed read left */
    int rc = read_trigger(&e, s->timeout, &s->triggers[i - 1]);
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      return rc;
    }
  }
  lua_pop(L, 1);
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

/* onSuccess / onFailure = { queue = NAME }: an asynchronous invocation's
 * destination (core/trigger/invoke/async.h), a queue name by crescent.queue's rule. */
/* --- gateway policies: cors, rateLimit */

/* Checks that the table at -1 (setting `what`) has only the keys in known. */
static int only_keys(lua_State *L, const char *what, const char *const *known, const char *list, char *err,
                     size_t errlen) {
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    int ok = 0;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (const char *const *k = known; *k; k++) ok |= strcmp(lua_tostring(L, -1), *k) == 0;
    if (!ok) {
      int rc = fail(err, errlen, "setting '%s': unknown key '%s' (known: %s)", what,
                    lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : lua_typename(L, lua_type(L, -1)), list);
      lua_pop(L, 1);
      return rc;
    }
  }
  return 0;
}

static int sub_number(lua_State *L, const char *what, const char *key, double lo, double hi, int integer,
                      double *out, char *err, size_t errlen) {
  raw_field(L, key);
  int t = lua_type(L, -1);
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return 0;
  if (t != LUA_TNUMBER || v != v || v < lo || v > hi || (integer && v != floor(v)))
    return fail(err, errlen, "setting '%s': '%s' must be %s from %g to %g", what, key,
                integer ? "an integer" : "a number", lo, hi);
  *out = v;
  return 0;
}

static int sub_bool(lua_State *L, const char *what, const char *key, int *out, char *err, size_t errlen) {
  raw_field(L, key);
  int t = lua_type(L, -1);
  if (t == LUA_TBOOLEAN) *out = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN) return fail(err, errlen, "setting '%s': '%s' must be true or false", what, key);
  return 0;
}

static int is_token_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c);
}

/* A list of HTTP tokens (header names or methods) at key, joined with ", "
 * into *out (upper-case when upper, else lower-case); absent: *out NULL. */
static int sub_tokens(lua_State *L, const char *what, const char *key, int upper, char **out, char *err,
                      size_t errlen) {
  raw_field(L, key);
  int rc = 0;
  if (lua_isnil(L, -1)) goto done;
  if (!lua_istable(L, -1)) {
    rc = fail(err, errlen, "setting '%s': '%s' must be a list of names like { \"%s\" }", what, key,
              upper ? "GET" : "x-custom");
    goto done;
  }
  cr_buf_t b = CR_BUF_INIT;
  int n = (int)lua_objlen(L, -1);
  for (int i = 1; i <= n && !rc; i++) {
    lua_rawgeti(L, -1, i);
    size_t len;
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    int ok = v && len > 0 && len <= 64;
    for (size_t k = 0; ok && k < len; k++) ok = is_token_char((unsigned char)v[k]);
    if (!ok) {
      rc = fail(err, errlen, "setting '%s': '%s' entry %d must be a name (1 to 64 token characters)", what, key, i);
    } else {
      if (b.len) cr_buf_append_str(&b, ", ");
      for (size_t k = 0; k < len; k++) cr_buf_putc(&b, (char)(upper ? toupper((unsigned char)v[k]) : tolower((unsigned char)v[k])));
    }
    lua_pop(L, 1);
  }
  if (!rc) *out = strdup(b.len ? cr_buf_cstr(&b) : "");
  if (!rc && !*out) rc = CR_ENOMEM;
  cr_buf_free(&b);
done:
  lua_pop(L, 1);
  return rc;
}

/* An origin pattern: "scheme://host[:port]", the same with "*.suffix" as the host, or "*.suffix". */
static int origin_ok(const char *o, size_t n) {
  if (n == 0 || n > 300) return 0;
  const char *host = o;
  const char *sep = strstr(o, "://");
  if (sep) {
    if (!((sep - o == 4 && strncasecmp(o, "http", 4) == 0) || (sep - o == 5 && strncasecmp(o, "https", 5) == 0)))
      return 0;
    host = sep + 3;
  } else if (o[0] != '*') return 0; /* a bare host ("app.example.com", "null") is no pattern: it would never match */
  if (host[0] == '*') {
    if (host[1] != '.' || !host[2]) return 0;
    host += 2;
  }
  int port = 0, labels = 0;
  for (const char *p = host; *p; p++) {
    if (*p == ':') {
      if (!sep || port || !p[1]) return 0; /* a port only with a scheme */
      port = 1;
      continue;
    }
    if (port) {
      if (*p < '0' || *p > '9') return 0;
    } else if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_')) {
      return 0;
    }
    labels = 1;
  }
  return labels;
}

static int read_cors(lua_State *L, cr_settings_t *s, char *err, size_t errlen) {
  raw_field(L, "cors");
  int rc = 0;
  cr_cors_spec_t *c = &s->cors;
  if (lua_isnil(L, -1)) goto done;
  if (!lua_istable(L, -1)) {
    rc = fail(err, errlen, "setting 'cors' must be a table like { origins = { \"https://app.example.com\" } }, got %s",
              lua_typename(L, lua_type(L, -1)));
    goto done;
  }
  static const char *const known[] = {"origins", "methods", "headers", "exposeHeaders", "credentials", "maxAge", NULL};
  if ((rc = only_keys(L, "cors", known, "origins, methods, headers, exposeHeaders, credentials, maxAge", err, errlen)))
    goto done;
  c->set = 1;
  c->max_age = 600;
  raw_field(L, "origins");
  if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "*") == 0) {
    c->any_origin = 1;
  } else if (lua_istable(L, -1)) {
    int n = (int)lua_objlen(L, -1);
    if (n < 1 || n > 64) rc = fail(err, errlen, "setting 'cors': 'origins' must list 1 to 64 origins");
    if (!rc && !(c->origins = calloc((size_t)n, sizeof(char *)))) rc = CR_ENOMEM;
    for (int i = 1; i <= n && !rc; i++) {
      lua_rawgeti(L, -1, i);
      size_t len;
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      if (v && len == 1 && v[0] == '*')
        rc = fail(err, errlen, "setting 'cors': write origins = \"*\" (not in a list) to allow any origin");
      else if (!v || !origin_ok(v, len))
        rc = fail(err, errlen,
                  "setting 'cors': origins entry %d must be an origin like \"https://app.example.com\", "
                  "\"https://*.example.com\" or \"*.example.com\"",
                  i);
      else if (!(c->origins[c->norigins] = strdup(v))) rc = CR_ENOMEM;
      else {
        for (char *p = c->origins[c->norigins]; *p; p++) *p = (char)tolower((unsigned char)*p);
        c->norigins++;
      }
      lua_pop(L, 1);
    }
  } else {
    rc = fail(err, errlen, "setting 'cors': 'origins' must be \"*\" or a list of origins like { \"https://app.example.com\" }");
  }
  lua_pop(L, 1);
  double v = c->max_age;
  if (!rc) rc = sub_tokens(L, "cors", "methods", 1, &c->methods, err, errlen);
  if (!rc) rc = sub_tokens(L, "cors", "headers", 0, &c->headers, err, errlen);
  if (!rc) rc = sub_tokens(L, "cors", "exposeHeaders", 0, &c->expose, err, errlen);
  if (!rc) rc = sub_bool(L, "cors", "credentials", &c->credentials, err, errlen);
  if (!rc) rc = sub_number(L, "cors", "maxAge", 0, 86400, 1, &v, err, errlen);
  c->max_age = (int)v;
  if (!rc && c->credentials && c->any_origin)
    rc = fail(err, errlen, "setting 'cors': credentials = true cannot go with origins = \"*\" (browsers refuse it): "
                           "list the origins");
done:
  lua_pop(L, 1);
  return rc;
}

static int read_ratelimit(lua_State *L, cr_settings_t *s, char *err, size_t errlen) {
  raw_field(L, "rateLimit");
  int rc = 0;
  cr_ratelimit_spec_t *r = &s->rate;
  if (lua_isnil(L, -1)) goto done;
  if (!lua_istable(L, -1)) {
    rc = fail(err, errlen, "setting 'rateLimit' must be a table like { rps = 100, burst = 200 }, got %s",
              lua_typename(L, lua_type(L, -1)));
    goto done;
  }
  static const char *const known[] = {"rps", "burst", "by", NULL};
  if ((rc = only_keys(L, "rateLimit", known, "rps, burst, by", err, errlen))) goto done;
  raw_field(L, "rps");
  int has_rps = lua_type(L, -1) != LUA_TNIL;
  lua_pop(L, 1);
  if (!has_rps) {
    rc = fail(err, errlen, "setting 'rateLimit': 'rps' (requests per second) is required");
    goto done;
  }
  double rps = 0, burst = 0;
  if ((rc = sub_number(L, "rateLimit", "rps", 0.001, 1e6, 0, &rps, err, errlen))) goto done;
  burst = ceil(rps) < 1 ? 1 : ceil(rps);
  if ((rc = sub_number(L, "rateLimit", "burst", 1, 1e6, 1, &burst, err, errlen))) goto done;
  r->rps = rps;
  r->burst = (int)burst;
  r->by = CR_RL_BY_IP;
  raw_field(L, "by");
  if (!lua_isnil(L, -1)) {
    size_t n;
    const char *by = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (by && strcmp(by, "ip") == 0) {
      r->by = CR_RL_BY_IP;
    } else if (by && n > 7 && n <= 7 + 64 && strncmp(by, "header.", 7) == 0) {
      int ok = 1;
      for (size_t k = 7; k < n; k++) ok &= is_token_char((unsigned char)by[k]);
      if (!ok || !(r->header = strdup(by + 7))) {
        rc = ok ? CR_ENOMEM : fail(err, errlen, "setting 'rateLimit': 'by' header name '%s' is not a token", by + 7);
      } else {
        for (char *p = r->header; *p; p++) *p = (char)tolower((unsigned char)*p);
        r->by = CR_RL_BY_HEADER;
      }
    } else if (by && strcmp(by, "key") == 0) {
      r->by = CR_RL_BY_KEY;
    } else if (by && strcmp(by, "principal") == 0) {
      r->by = CR_RL_BY_PRINCIPAL;
    } else {
      rc = fail(err, errlen, "setting 'rateLimit': 'by' must be \"ip\", \"key\", \"principal\" or \"header.NAME\"");
    }
  }
  lua_pop(L, 1);
done:
  lua_pop(L, 1);
  return rc;
}

static int sub_string(lua_State *L, const char *what, const char *key, size_t max, char **out, char *err,
                      size_t errlen) {
  raw_field(L, key);
  int rc = 0;
  if (!lua_isnil(L, -1)) {
    size_t n;
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (!v || n == 0 || n > max || memchr(v, '\0', n))
      rc = fail(err, errlen, "setting '%s': '%s' must be a string of 1 to %zu bytes", what, key, max);
    else if (!(*out = strdup(v)))
      rc = CR_ENOMEM;
  }
  lua_pop(L, 1);
  return rc;
}

/* A path inside the functions folder: relative, no "." or ".." segment, no '\\'. */
static int inside_path(const char *p) {
  if (!*p || *p == '/' || strchr(p, '\\')) return 0;
  for (const char *seg = p; *seg;) {
    const char *e = strchr(seg, '/');
    size_t n = e ? (size_t)(e - seg) : strlen(seg);
    if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) return 0;
    seg += n + (e ? 1 : 0);
  }
  return 1;
}

/* A rate limit by key or principal needs a route auth that can find one. */
static int check_auth_rules(const cr_settings_t *s, char *err, size_t errlen) {
  const cr_auth_kind_t k = s->auth.kind;
  if (s->rate.rps > 0 && s->rate.by == CR_RL_BY_KEY && k != CR_AUTH_DEFAULT && k != CR_AUTH_APIKEY)
    return fail(err, errlen, "setting 'rateLimit': by = \"key\" needs auth = \"apikey\"");
  if (s->rate.rps > 0 && s->rate.by == CR_RL_BY_PRINCIPAL && k == CR_AUTH_NONE)
    return fail(err, errlen, "setting 'rateLimit': by = \"principal\" needs an 'auth' other than \"none\"");
  return 0;
}

/* auth = { authorizer = "auth/check", ttl = 300, identity = "header.authorization" } (the table on
 * the stack top). */
static int read_authorizer(lua_State *L, cr_auth_spec_t *a, char *err, size_t errlen) {
  static const char *const known[] = {"authorizer", "ttl", "identity", NULL};
  int rc = only_keys(L, "auth", known, "authorizer, ttl, identity", err, errlen);
  if (rc) return rc;
  a->kind = CR_AUTH_AUTHORIZER;
  a->ttl = 300;
  if ((rc = sub_string(L, "auth", "authorizer", 255, &a->authorizer, err, errlen)) ||
      (rc = sub_number(L, "auth", "ttl", 0, 3600, 0, &a->ttl, err, errlen)) ||
      (rc = sub_string(L, "auth", "identity", 7 + 64, &a->identity, err, errlen)))
    return rc;
  if (!a->authorizer || a->authorizer[0] == '_' || a->authorizer[0] == '/' || strstr(a->authorizer, ".."))
    return fail(err, errlen, "setting 'auth': 'authorizer' must name a function, like \"auth/check\"");
  if (!a->identity && !(a->identity = strdup("header.authorization"))) return CR_ENOMEM;
  char *id = a->identity;
  size_t skip = strncmp(id, "header.", 7) == 0 ? 7 : strncmp(id, "query.", 6) == 0 ? 6 : 0;
  int ok = skip && id[skip];
  for (char *p = id + skip; ok && *p; p++) ok = is_token_char((unsigned char)*p);
  if (!ok)
    return fail(err, errlen, "setting 'auth': 'identity' must be \"header.NAME\" or \"query.NAME\", got \"%s\"", id);
  if (skip == 7)
    for (char *p = id + skip; *p; p++) *p = (char)tolower((unsigned char)*p);
  return 0;
}

static int read_auth(lua_State *L, cr_settings_t *s, char *err, size_t errlen) {
  raw_field(L, "auth");
  int rc = 0;
  cr_auth_spec_t *a = &s->auth;
  int t = lua_type(L, -1);
  if (t == LUA_TNIL) goto done;
  if (t == LUA_TSTRING) {
    const char *v = lua_tostring(L, -1);
    if (strcmp(v, "none") == 0) a->kind = CR_AUTH_NONE;
    else if (strcmp(v, "apikey") == 0) a->kind = CR_AUTH_APIKEY;
    else if (strcmp(v, "user") == 0) a->kind = CR_AUTH_USER;
    else rc = fail(err, errlen, "setting 'auth' must be \"none\", \"apikey\", \"user\", { jwt = { ... } } or "
                                "{ authorizer = NAME }, got \"%s\"", v);
    goto done;
  }
  if (t != LUA_TTABLE) {
    rc = fail(err, errlen, "setting 'auth' must be \"none\", \"apikey\", \"user\", { jwt = { ... } } or "
                           "{ authorizer = NAME }, got %s", lua_typename(L, t));
    goto done;
  }
  static const char *const known[] = {"jwt", NULL};
  raw_field(L, "authorizer");
  int authorizer = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (authorizer) {
    rc = read_authorizer(L, a, err, errlen);
    goto done;
  }
  if ((rc = only_keys(L, "auth", known, "jwt", err, errlen))) goto done;
  raw_field(L, "jwt");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    rc = fail(err, errlen, "setting 'auth': 'jwt' must be a table { issuer =, audience =, keys = | secretEnv =, ... }");
    goto done;
  }
  static const char *const jknown[] = {"issuer", "audience", "keys", "secretEnv", "algorithms", "leeway", NULL};
  a->kind = CR_AUTH_JWT;
  a->leeway = 30;
  double lw = 30;
  if ((rc = only_keys(L, "auth.jwt", jknown, "issuer, audience, keys, secretEnv, algorithms, leeway", err, errlen)) ||
      (rc = sub_string(L, "auth.jwt", "issuer", 1024, &a->issuer, err, errlen)) ||
      (rc = sub_string(L, "auth.jwt", "audience", 1024, &a->audience, err, errlen)) ||
      (rc = sub_string(L, "auth.jwt", "keys", 1024, &a->keys_file, err, errlen)) ||
      (rc = sub_string(L, "auth.jwt", "secretEnv", 128, &a->secret_env, err, errlen)) ||
      (rc = sub_number(L, "auth.jwt", "leeway", 0, 600, 0, &lw, err, errlen))) {
    lua_pop(L, 1);
    goto done;
  }
  a->leeway = lw;
  if (!a->keys_file == !a->secret_env)
    rc = fail(err, errlen, "setting 'auth.jwt': give exactly one of 'keys' (a JWKS or PEM file) and 'secretEnv'");
  else if (a->keys_file && !inside_path(a->keys_file))
    rc = fail(err, errlen, "setting 'auth.jwt': 'keys' must be a path inside the functions folder, like "
                           "\"keys/jwks.json\"");
  else if (a->secret_env && !valid_env_name(a->secret_env))
    rc = fail(err, errlen, "setting 'auth.jwt': 'secretEnv' must be an environment variable name like JWT_SECRET");
  else if (a->secret_env && strncmp(a->secret_env, "CRESCENT_", 9) == 0)
    /* the server's own settings (CRESCENT_ADMIN_TOKEN, ...) are never a function's secret */
    rc = fail(err, errlen, "setting 'auth.jwt': 'secretEnv' cannot name one of the server's CRESCENT_* variables");
  if (!rc) {
    raw_field(L, "algorithms");
    if (lua_isnil(L, -1)) {
      a->algorithms = a->keys_file ? (CR_JWT_RS256 | CR_JWT_ES256 | CR_JWT_EDDSA) : CR_JWT_HS256;
    } else if (!lua_istable(L, -1) || lua_objlen(L, -1) == 0) {
      rc = fail(err, errlen, "setting 'auth.jwt': 'algorithms' must be a list like { \"RS256\", \"ES256\" }");
    } else {
      int n = (int)lua_objlen(L, -1);
      for (int i = 1; i <= n && !rc; i++) {
        lua_rawgeti(L, -1, i);
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        unsigned bit = strcmp(v, "RS256") == 0   ? CR_JWT_RS256
                       : strcmp(v, "ES256") == 0 ? CR_JWT_ES256
                       : strcmp(v, "EdDSA") == 0 ? CR_JWT_EDDSA
                       : strcmp(v, "HS256") == 0 ? CR_JWT_HS256
                                                 : 0;
        if (!bit)
          rc = fail(err, errlen, "setting 'auth.jwt': algorithms entry %d must be one of RS256, ES256, EdDSA, HS256", i);
        a->algorithms |= bit;
        lua_pop(L, 1);
      }
      /* An HMAC secret and public keys never mix: the key decides the algorithm family. */
      if (!rc && a->keys_file && (a->algorithms & CR_JWT_HS256))
        rc = fail(err, errlen, "setting 'auth.jwt': HS256 needs 'secretEnv', not a key file");
      if (!rc && a->secret_env && (a->algorithms & ~CR_JWT_HS256))
        rc = fail(err, errlen, "setting 'auth.jwt': with 'secretEnv' the only algorithm is HS256");
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
done:
  lua_pop(L, 1);
  return rc;
}

static int read_cache(lua_State *L, cr_settings_t *s, char *err, size_t errlen) {
  raw_field(L, "cache");
  int rc = 0;
  cr_cache_spec_t *c = &s->cache;
  if (lua_isnil(L, -1)) goto done;
  if (!lua_istable(L, -1)) {
    rc = fail(err, errlen, "setting 'cache' must be a table like { ttl = 30 }, got %s", lua_typename(L, lua_type(L, -1)));
    goto done;
  }
  static const char *const known[] = {"ttl", "vary", "staleWhileRevalidate", "shared", NULL};
  if ((rc = only_keys(L, "cache", known, "ttl, vary, staleWhileRevalidate, shared", err, errlen))) goto done;
  raw_field(L, "shared");
  int st = lua_type(L, -1);
  c->shared = st == LUA_TBOOLEAN && lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (st != LUA_TNIL && st != LUA_TBOOLEAN) {
    rc = fail(err, errlen, "setting 'cache': 'shared' must be true or false, got %s", lua_typename(L, st));
    goto done;
  }
  raw_field(L, "ttl");
  int has_ttl = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!has_ttl) {
    rc = fail(err, errlen, "setting 'cache': 'ttl' (seconds) is required");
    goto done;
  }
  double ttl = 0, swr = 0;
  if ((rc = sub_number(L, "cache", "ttl", 0.001, 86400, 0, &ttl, err, errlen)) ||
      (rc = sub_number(L, "cache", "staleWhileRevalidate", 0, 86400, 0, &swr, err, errlen)))
    goto done;
  c->ttl = ttl;
  c->swr = swr;
  raw_field(L, "vary");
  if (!lua_isnil(L, -1)) {
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : -1;
    if (n < 0 || n > CR_MAX_CACHE_VARY) {
      rc = fail(err, errlen, "setting 'cache': 'vary' must be a list of at most %d entries like { \"query.page\", "
                             "\"header.accept-language\" }", CR_MAX_CACHE_VARY);
    } else if (n && !(c->vary = calloc((size_t)n, sizeof(char *)))) {
      rc = CR_ENOMEM;
    }
    for (int i = 1; i <= n && !rc; i++) {
      lua_rawgeti(L, -1, i);
      size_t len;
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      int q = v && len > 6 && strncmp(v, "query.", 6) == 0, h = v && len > 7 && strncmp(v, "header.", 7) == 0;
      int ok = (q || h) && len <= 7 + 64;
      for (size_t k = q ? 6 : 7; ok && k < len; k++) ok = is_token_char((unsigned char)v[k]) && v[k] != '=' && v[k] != '&';
      if (!ok) {
        rc = fail(err, errlen, "setting 'cache': vary entry %d must be \"query.NAME\" or \"header.NAME\"", i);
      } else if (!(c->vary[c->nvary] = strdup(v))) {
        rc = CR_ENOMEM;
      } else {
        if (h)
          for (char *p = c->vary[c->nvary] + 7; *p; p++) *p = (char)tolower((unsigned char)*p);
        c->nvary++;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
done:
  lua_pop(L, 1);
  return rc;
}

/* egress = { "api.example.com", "*.stripe.com", "127.0.0.1:9000", "*" }: the
 * hosts crescent.http may reach (core/base/egress.h); absent: the default. */
static int read_egress(lua_State *L, cr_settings_t *s, char *err, size_t errlen) {
  raw_field(L, "egress");
  int rc = 0;
  if (lua_isnil(L, -1)) goto done;
  if (!lua_istable(L, -1)) {
    rc = fail(err, errlen, "setting 'egress' must be a list of hosts like { \"api.example.com\", \"*.stripe.com\", "
                           "\"127.0.0.1:9000\" }, got %s", lua_typename(L, lua_type(L, -1)));
    goto done;
  }
  int n = (int)lua_objlen(L, -1);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) < 1 || lua_tonumber(L, -1) > n ||
        lua_tonumber(L, -1) != (int)lua_tonumber(L, -1)) {
      lua_pop(L, 1);
      rc = fail(err, errlen, "setting 'egress' must be a list (an array of strings), not a table with other keys");
      goto done;
    }
  }
  if (n > CR_MAX_EGRESS) {
    rc = fail(err, errlen, "setting 'egress': at most %d entries", CR_MAX_EGRESS);
    goto done;
  }
  s->egress = calloc((size_t)n + 1, sizeof(char *));
  if (!s->egress) {
    rc = CR_ENOMEM;
    goto done;
  }
  s->negress = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    char why[200];
    if (lua_type(L, -1) != LUA_TSTRING) {
      rc = fail(err, errlen, "setting 'egress': entry %d must be a string, got %s", i, lua_typename(L, lua_type(L, -1)));
    } else if (cr_egress_entry_check(lua_tostring(L, -1), why, sizeof why)) {
      rc = fail(err, errlen, "setting 'egress': entry %d (\"%s\"): %s", i, lua_tostring(L, -1), why);
    } else if (!(s->egress[s->negress] = strdup(lua_tostring(L, -1)))) {
      rc = CR_ENOMEM;
    } else {
      s->negress++;
    }
    lua_pop(L, 1);
    if (rc) break;
  }
done:
  lua_pop(L, 1);
  return rc;
}

static int read_destination(lua_State *L, const char *key, char **out, char *err, size_t errlen) {
  raw_field(L, key);
  int rc = 0;
  if (lua_isnil(L, -1)) goto done;
  if (!lua_istable(L, -1)) {
    rc = fail(err, errlen, "setting '%s' must be a table { queue = NAME }, got %s", key, lua_typename(L, lua_type(L, -1)));
    goto done;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "queue") != 0) {
      rc = fail(err, errlen, "setting '%s': unknown key '%s' (known: queue)", key,
                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : lua_typename(L, lua_type(L, -1)));
      lua_pop(L, 1);
      goto done;
    }
  }
  raw_field(L, "queue");
  size_t n = 0;
  const char *q = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  if (!q || !queue_name_ok(q, n))
    rc = fail(err, errlen, "setting '%s': 'queue' must be a queue name (1 to 128 letters, digits, '_', '.', ':' or '-')", key);
  else if (strncmp(q, CR_RESERVED_QUEUE_PREFIX, strlen(CR_RESERVED_QUEUE_PREFIX)) == 0)
    rc = fail(err, errlen, "setting '%s': queue '%s' is the platform's (names starting with '" CR_RESERVED_QUEUE_PREFIX
              "' are reserved)", key, q);
  else if (!(*out = strdup(q))) rc = CR_ENOMEM;
  lua_pop(L, 1);
done:
  lua_pop(L, 1);
  return rc;
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
                               "concurrency, warm, idle, env, triggers, retries, onSuccess, onFailure)", k);
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
  v = s->retries;
  if ((rc = read_number(L, "retries", 0, CR_MAX_RETRIES, 1, &v, err, errlen))) goto out;
  s->retries = (int)v;
  if ((rc = read_destination(L, "onSuccess", &s->on_success, err, errlen))) goto out;
  if ((rc = read_destination(L, "onFailure", &s->on_failure, err, errlen))) goto out;
  if ((rc = read_egress(L, s, err, errlen))) goto out;
  if ((rc = read_cors(L, s, err, errlen))) goto out;
  if ((rc = read_ratelimit(L, s, err, errlen))) goto out;
  if ((rc = read_auth(L, s, err, errlen))) goto out;
  if ((rc = check_auth_rules(s, err, errlen))) goto out;
  if ((rc = read_cache(L, s, err, errlen))) goto out;
out:
  lua_settop(L, top);
  if (rc) cr_settings_free(s);
  return rc;
}

/* --- pack / unpack (wire.h) */

static int pack_stream(cr_buf_t *b, const cr_stream_opts_t *o) {
  return cr_wire_u32(b, (uint32_t)o->batch) || cr_wire_f64(b, o->window) || cr_wire_f64(b, o->visibility) ||
         cr_wire_u32(b, (uint32_t)o->max_receives) || cr_wire_u32(b, (uint32_t)o->concurrency);
}

static int pack_trigger(cr_buf_t *b, const cr_trigger_spec_t *t) {
  if (cr_wire_u32(b, (uint32_t)t->kind)) return -1;
  switch (t->kind) {
  case CR_TRIGGER_CRON:
    return cr_wire_str(b, t->cron.expr) || cr_wire_str(b, t->cron.tz) || cr_wire_f64(b, t->cron.catch_up) ||
           cr_wire_u32(b, (uint32_t)t->cron.overlap);
  case CR_TRIGGER_QUEUE:
    return cr_wire_str(b, t->queue.name) || pack_stream(b, &t->queue.opts);
  case CR_TRIGGER_STORAGE:
    return cr_wire_str(b, t->storage.bucket) || cr_wire_u32(b, t->storage.events) ||
           cr_wire_str(b, t->storage.prefix) || cr_wire_str(b, t->storage.suffix) ||
           pack_stream(b, &t->storage.opts);
  case CR_TRIGGER_KV:
    return cr_wire_str(b, t->kv.prefix) || cr_wire_str(b, t->kv.ns) || pack_stream(b, &t->kv.opts);
  case CR_TRIGGER_AUTH:
    return cr_wire_u32(b, (uint32_t)t->auth.hook);
  }
  return -1;
}

int cr_settings_pack(const cr_settings_t *s, cr_buf_t *b) {
  int rc = cr_wire_u32(b, (uint32_t)s->has_routes) || cr_wire_u32(b, (uint32_t)s->nroutes);
  for (int i = 0; i < s->nroutes && !rc; i++)
    rc = cr_wire_u32(b, s->routes[i].methods) || cr_wire_str(b, s->routes[i].path) ||
         cr_wire_u32(b, s->routes[i].policy.flags);
  rc = rc || cr_wire_f64(b, s->timeout) || cr_wire_u32(b, (uint32_t)s->memory) ||
       cr_wire_u32(b, (uint32_t)s->concurrency) || cr_wire_u32(b, (uint32_t)s->warm) || cr_wire_f64(b, s->idle) ||
       cr_wire_u32(b, (uint32_t)s->nenv);
  for (int i = 0; i < 2 * s->nenv && !rc; i++) rc = cr_wire_str(b, s->env[i]);
  rc = rc || cr_wire_u32(b, (uint32_t)s->retries) || cr_wire_str(b, s->on_success) || cr_wire_str(b, s->on_failure);
  rc = rc || cr_wire_u32(b, (uint32_t)(s->negress + 1));
  for (int i = 0; i < s->negress && !rc; i++) rc = cr_wire_str(b, s->egress[i]);
  rc = rc || cr_wire_u32(b, (uint32_t)s->cors.set);
  if (s->cors.set) {
    const cr_cors_spec_t *c = &s->cors;
    rc = rc || cr_wire_u32(b, (uint32_t)c->any_origin) || cr_wire_u32(b, (uint32_t)c->norigins);
    for (int i = 0; i < c->norigins && !rc; i++) rc = cr_wire_str(b, c->origins[i]);
    rc = rc || cr_wire_str(b, c->methods) || cr_wire_str(b, c->headers) || cr_wire_str(b, c->expose) ||
         cr_wire_u32(b, (uint32_t)c->credentials) || cr_wire_u32(b, (uint32_t)c->max_age);
  }
  rc = rc || cr_wire_f64(b, s->rate.rps) || cr_wire_u32(b, (uint32_t)s->rate.burst) ||
       cr_wire_u32(b, (uint32_t)s->rate.by) || cr_wire_str(b, s->rate.header);
  rc = rc || cr_wire_u32(b, (uint32_t)s->auth.kind) || cr_wire_str(b, s->auth.issuer) ||
       cr_wire_str(b, s->auth.audience) || cr_wire_str(b, s->auth.keys_file) || cr_wire_str(b, s->auth.secret_env) ||
       cr_wire_u32(b, s->auth.algorithms) || cr_wire_f64(b, s->auth.leeway) || cr_wire_str(b, s->auth.authorizer) ||
       cr_wire_f64(b, s->auth.ttl) || cr_wire_str(b, s->auth.identity);
  rc = rc || cr_wire_f64(b, s->cache.ttl) || cr_wire_f64(b, s->cache.swr) || cr_wire_u32(b, (uint32_t)s->cache.nvary);
  for (int i = 0; i < s->cache.nvary && !rc; i++) rc = cr_wire_str(b, s->cache.vary[i]);
  rc = rc || cr_wire_u32(b, (uint32_t)s->cache.shared);
  /* The triggers last: the tests build frames that end with them. */
  rc = rc || cr_wire_u32(b, (uint32_t)s->ntriggers);
  for (int i = 0; i < s->ntriggers && !rc; i++) rc = pack_trigger(b, &s->triggers[i]);
  return rc ? CR_ENOMEM : 0;
}

static void unpack_stream(cr_wire_reader_t *r, cr_stream_opts_t *o) {
  o->batch = (int)cr_wire_get_u32(r);
  o->window = cr_wire_get_f64(r);
  o->visibility = cr_wire_get_f64(r);
  o->max_receives = (int)cr_wire_get_u32(r);
  o->concurrency = (int)cr_wire_get_u32(r);
}

/* The packer is this binary, so values are not range-checked again; what
 * the structure relies on is (a known kind, the strings that may not be
 * NULL), so a bad message cannot hand a worker a spec it would misread. */
static void unpack_trigger(cr_wire_reader_t *r, cr_trigger_spec_t *t) {
  uint32_t kind = cr_wire_get_u32(r);
  if (r->bad || kind < CR_TRIGGER_CRON || kind > CR_TRIGGER_AUTH) {
    r->bad = 1;
    return;
  }
  t->kind = (cr_trigger_kind_t)kind;
  switch (t->kind) {
  case CR_TRIGGER_CRON:
    t->cron.expr = cr_wire_get_bytes(r, NULL);
    t->cron.tz = cr_wire_get_bytes(r, NULL);
    t->cron.catch_up = cr_wire_get_f64(r);
    t->cron.overlap = cr_wire_get_u32(r) != 0;
    if (!t->cron.expr) r->bad = 1;
    break;
  case CR_TRIGGER_QUEUE:
    t->queue.name = cr_wire_get_bytes(r, NULL);
    unpack_stream(r, &t->queue.opts);
    if (!t->queue.name) r->bad = 1;
    break;
  case CR_TRIGGER_STORAGE:
    t->storage.bucket = cr_wire_get_bytes(r, NULL);
    t->storage.events = cr_wire_get_u32(r);
    t->storage.prefix = cr_wire_get_bytes(r, NULL);
    t->storage.suffix = cr_wire_get_bytes(r, NULL);
    unpack_stream(r, &t->storage.opts);
    if (!t->storage.bucket || !t->storage.events || (t->storage.events & ~(CR_STORAGE_PUT | CR_STORAGE_DELETE)))
      r->bad = 1;
    break;
  case CR_TRIGGER_KV:
    t->kv.prefix = cr_wire_get_bytes(r, NULL);
    t->kv.ns = cr_wire_get_bytes(r, NULL);
    unpack_stream(r, &t->kv.opts);
    if (!t->kv.prefix || !t->kv.ns) r->bad = 1;
    break;
  case CR_TRIGGER_AUTH:
    t->auth.hook = (int)cr_wire_get_u32(r);
    if (!cr_auth_hook_name(t->auth.hook)) r->bad = 1;
    break;
  }
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
  s->retries = (int)cr_wire_get_u32(r);
  s->on_success = cr_wire_get_bytes(r, NULL);
  s->on_failure = cr_wire_get_bytes(r, NULL);
  uint32_t negress = cr_wire_get_u32(r); /* count + 1: 0 is "none" */
  if (!r->bad && negress >= 1 && negress <= CR_MAX_EGRESS + 1) {
    s->egress = calloc(negress, sizeof(char *));
    s->negress = 0;
    for (uint32_t i = 0; i + 1 < negress && !r->bad && s->egress; i++) {
      s->egress[i] = cr_wire_get_bytes(r, NULL);
      if (!s->egress[i]) r->bad = 1;
      else s->negress++;
    }
    if (!s->egress) r->bad = 1;
  } else if (negress != 0) {
    r->bad = 1;
  }
  s->cors.set = cr_wire_get_u32(r) != 0;
  if (s->cors.set && !r->bad) {
    cr_cors_spec_t *c = &s->cors;
    c->any_origin = cr_wire_get_u32(r) != 0;
    uint32_t n = cr_wire_get_u32(r);
    if (!r->bad && n <= 64) {
      c->origins = calloc(n ? n : 1, sizeof(char *));
      for (uint32_t i = 0; i < n && !r->bad && c->origins; i++) {
        c->origins[i] = cr_wire_get_bytes(r, NULL);
        if (!c->origins[i]) r->bad = 1;
        else c->norigins++;
      }
      if (!c->origins) r->bad = 1;
    } else {
      r->bad = 1;
    }
    c->methods = cr_wire_get_bytes(r, NULL);
    c->headers = cr_wire_get_bytes(r, NULL);
    c->expose = cr_wire_get_bytes(r, NULL);
    c->credentials = cr_wire_get_u32(r) != 0;
    c->max_age = (int)cr_wire_get_u32(r);
  }
  s->rate.rps = cr_wire_get_f64(r);
  s->rate.burst = (int)cr_wire_get_u32(r);
  s->rate.by = (cr_rl_by_t)cr_wire_get_u32(r);
  s->rate.header = cr_wire_get_bytes(r, NULL);
  if (s->rate.rps > 0 && (s->rate.burst < 1 || s->rate.by < CR_RL_BY_IP || s->rate.by > CR_RL_BY_PRINCIPAL ||
                          (s->rate.by == CR_RL_BY_HEADER && !s->rate.header)))
    r->bad = 1;
  uint32_t akind = cr_wire_get_u32(r);
  s->auth.issuer = cr_wire_get_bytes(r, NULL);
  s->auth.audience = cr_wire_get_bytes(r, NULL);
  s->auth.keys_file = cr_wire_get_bytes(r, NULL);
  s->auth.secret_env = cr_wire_get_bytes(r, NULL);
  s->auth.algorithms = cr_wire_get_u32(r);
  s->auth.leeway = cr_wire_get_f64(r);
  s->auth.authorizer = cr_wire_get_bytes(r, NULL);
  s->auth.ttl = cr_wire_get_f64(r);
  s->auth.identity = cr_wire_get_bytes(r, NULL);
  if (akind > CR_AUTH_KIND_MAX ||
      (akind == CR_AUTH_JWT && (!s->auth.keys_file == !s->auth.secret_env || !s->auth.algorithms)) ||
      (akind == CR_AUTH_AUTHORIZER && (!s->auth.authorizer || !s->auth.identity)))
    r->bad = 1;
  s->auth.kind = (cr_auth_kind_t)akind;
  s->cache.ttl = cr_wire_get_f64(r);
  s->cache.swr = cr_wire_get_f64(r);
  uint32_t nvary = cr_wire_get_u32(r);
  if (!r->bad && nvary <= CR_MAX_CACHE_VARY) {
    if (nvary && !(s->cache.vary = calloc(nvary, sizeof(char *)))) r->bad = 1;
    for (uint32_t i = 0; i < nvary && !r->bad; i++) {
      s->cache.vary[i] = cr_wire_get_bytes(r, NULL);
      if (!s->cache.vary[i]) r->bad = 1;
      else s->cache.nvary++;
    }
  } else {
    r->bad = 1;
  }
  s->cache.shared = cr_wire_get_u32(r) != 0;
  uint32_t ntriggers = cr_wire_get_u32(r);
  if (!r->bad && ntriggers <= CR_MAX_TRIGGERS) {
    if (ntriggers) s->triggers = calloc(ntriggers, sizeof *s->triggers);
    for (uint32_t i = 0; i < ntriggers && !r->bad; i++) {
      s->ntriggers++;
      unpack_trigger(r, &s->triggers[i]);
    }
  } else {
    r->bad = 1;
  }
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
