/* json.c - JSON encoding (see json.h for why crescent has its own encoder). */
#include "json.h"

#include <lauxlib.h>
#include <lua.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include "error.h"

#define JSON_MAX_DEPTH 1000

/* Addresses used as unique registry keys and sentinel values. */
static char array_mt_key;
static char empty_array_sentinel;

int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);

int cr_json_escape(cr_buf_t *b, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  /* Worst case every byte becomes \u00XX. */
  if (cr_buf_reserve(b, len * 6 + 2)) return CR_ENOMEM;
  char *o = b->data + b->len;
  *o++ = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') {
      *o++ = (char)c;
      continue;
    }
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    default:
      *o++ = 'u';
      *o++ = '0';
      *o++ = '0';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    }
  }
  *o++ = '"';
  b->len = (size_t)(o - b->data);
  return 0;
}

int cr_json_number(cr_buf_t *b, double v) {
  if (isnan(v) || isinf(v)) return CR_EINVAL;
  if (v == floor(v) && fabs(v) < 9.2e18) {
    if (v == 0 && signbit(v)) return cr_buf_append(b, "-0", 2);
    return cr_buf_append_i64(b, (long long)v);
  }
  /* Fast path, no printf: the fewest decimals k (up to 15) such that
   * m = round(v * 10^k) gives back v as m / 10^k. Division by an exact power
   * of ten is correctly rounded, and so is reading the decimal "m e-k", so the
   * text reads back to v. Covers everyday numbers (98.6, 9.99, 0.1). */
  static const double pow10[] = {1,    1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  double a = fabs(v);
  if (a >= 1e-6 && a < 1e15) {
    for (int k = 1; k <= 15; k++) {
      double scaled = a * pow10[k];
      if (scaled >= 9007199254740992.0) break;
      double m = floor(scaled + 0.5);
      if (m / pow10[k] == a) {
        char tmp[40], digits[24];
        uint64_t im = (uint64_t)m;
        int nd = 0;
        do {
          digits[nd++] = (char)('0' + im % 10);
          im /= 10;
        } while (im);
        while (nd <= k) digits[nd++] = '0'; /* at least one digit before the point */
        int o = 0;
        if (v < 0) tmp[o++] = '-';
        for (int i = nd - 1; i >= k; i--) tmp[o++] = digits[i];
        tmp[o++] = '.';
        for (int i = k - 1; i >= 0; i--) tmp[o++] = digits[i];
        return cr_buf_append(b, tmp, (size_t)o);
      }
    }
  }
  char tmp[32];
  /* 15 digits round-trip for most doubles; subnormals carry fewer digits, so
   * look for their shortest form from 1. */
  int first = fabs(v) < DBL_MIN ? 1 : 15;
  for (int prec = first; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (prec == 17 || strtod(tmp, NULL) == v) break;
  }
  return cr_buf_append_str(b, tmp);
}

typedef struct {
  lua_State *L;
  cr_buf_t *b;
  char *err;
  size_t errlen;
} encoder_t;

static int enc_value(encoder_t *e, int idx, int depth);

static int enc_fail(encoder_t *e, const char *msg, const char *detail) {
  snprintf(e->err, e->errlen, "%s%s", msg, detail ? detail : "");
  return CR_EINVAL;
}

/* Returns the array length if the table at idx is an array (all keys positive
 * integers, not excessively sparse), 0 for an empty table, -1 otherwise. */
static long table_array_len(lua_State *L, int idx) {
  double max = 0;
  long count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      double k = lua_tonumber(L, -1);
      if (k >= 1 && k == floor(k) && k < 2147483647.0) {
        if (k > max) max = k;
        count++;
        continue;
      }
    }
    lua_pop(L, 1);
    return -1;
  }
  /* Like lua-cjson: an array with more than half holes (and over 10 slots) is an object. */
  if (max > 10 && max > (double)count * 2) return -1;
  return (long)max;
}

static int enc_table(encoder_t *e, int idx, int depth) {
  lua_State *L = e->L;
  if (depth > JSON_MAX_DEPTH) return enc_fail(e, "cannot encode: nesting deeper than 1000 (a cycle?)", NULL);
  if (!lua_checkstack(L, 4)) return enc_fail(e, "cannot encode: Lua stack exhausted", NULL);
  int forced_array = 0;
  if (lua_getmetatable(L, idx)) {
    lua_pushlightuserdata(L, &array_mt_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    forced_array = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  long n = table_array_len(L, idx);
  if (forced_array && n < 0) return enc_fail(e, "cannot encode: table with json.array_mt has non-index keys", NULL);
  if (n > 0 || forced_array) {
    if (cr_buf_putc(e->b, '[')) return CR_ENOMEM;
    for (long i = 1; i <= n; i++) {
      if (i > 1 && cr_buf_putc(e->b, ',')) return CR_ENOMEM;
      lua_rawgeti(L, idx, (int)i);
      int rc = enc_value(e, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (rc) return rc;
    }
    return cr_buf_putc(e->b, ']');
  }
  if (cr_buf_putc(e->b, '{')) return CR_ENOMEM;
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int ktype = lua_type(L, -2);
    if (!first && cr_buf_putc(e->b, ',')) return CR_ENOMEM;
    first = 0;
    if (ktype == LUA_TSTRING) {
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      if (cr_json_escape(e->b, k, kl)) return CR_ENOMEM;
    } else if (ktype == LUA_TNUMBER) {
      if (cr_buf_putc(e->b, '"')) return CR_ENOMEM;
      if (cr_json_number(e->b, lua_tonumber(L, -2))) {
        lua_pop(L, 2);
        return enc_fail(e, "cannot encode: table key is NaN or infinite", NULL);
      }
      if (cr_buf_putc(e->b, '"')) return CR_ENOMEM;
    } else {
      const char *tn = lua_typename(L, ktype);
      lua_pop(L, 2);
      return enc_fail(e, "cannot encode table key of type ", tn);
    }
    if (cr_buf_putc(e->b, ':')) return CR_ENOMEM;
    int rc = enc_value(e, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      return rc;
    }
  }
  return cr_buf_putc(e->b, '}');
}

static int enc_value(encoder_t *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return cr_buf_append(e->b, "null", 4);
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? cr_buf_append(e->b, "true", 4) : cr_buf_append(e->b, "false", 5);
  case LUA_TNUMBER:
    if (cr_json_number(e->b, lua_tonumber(L, idx)))
      return enc_fail(e, "cannot encode number: NaN or infinity", NULL);
    return 0;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return cr_json_escape(e->b, s, len);
  }
  case LUA_TTABLE:
    return enc_table(e, idx, depth);
  case LUA_TLIGHTUSERDATA: {
    void *p = lua_touserdata(L, idx);
    if (p == NULL) return cr_buf_append(e->b, "null", 4); /* json.null / cjson.null */
    if (p == &empty_array_sentinel) return cr_buf_append(e->b, "[]", 2);
  }
  /* fall through */
  default:
    return enc_fail(e, "cannot encode a value of type ", lua_typename(L, lua_type(L, idx)));
  }
}

int cr_json_encode(lua_State *L, int idx, cr_buf_t *b, char *err, size_t errlen) {
  encoder_t e = {L, b, err, errlen};
  size_t mark = b->len;
  int top = lua_gettop(L);
  if (idx < 0) idx = top + idx + 1;
  int rc = enc_value(&e, idx, 0);
  lua_settop(L, top);
  if (rc) {
    if (rc == CR_ENOMEM) snprintf(err, errlen, "cannot encode: out of memory");
    b->len = mark;
  }
  return rc;
}

/* json.encode(v) -> string; raises on values JSON cannot hold. */
static int l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  cr_buf_t b = CR_BUF_INIT;
  char err[160];
  int rc = cr_json_encode(L, 1, &b, err, sizeof err);
  if (rc) {
    cr_buf_free(&b);
    return luaL_error(L, "%s", err);
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  cr_buf_free(&b);
  return 1;
}

/* json.safe.encode(v) -> string | nil, err */
static int l_encode_safe(lua_State *L) {
  cr_buf_t b = CR_BUF_INIT;
  char err[160];
  int rc = cr_json_encode(L, 1, &b, err, sizeof err);
  if (rc) {
    cr_buf_free(&b);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  cr_buf_free(&b);
  return 1;
}

/* Builds { encode, decode, null, empty_array, array_mt } over a lua-cjson table at -1. */
static void decorate(lua_State *L, lua_CFunction encode) {
  lua_pushcfunction(L, encode);
  lua_setfield(L, -2, "encode");
  lua_pushlightuserdata(L, &empty_array_sentinel);
  lua_setfield(L, -2, "empty_array");
  lua_pushlightuserdata(L, &array_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "array_mt");
}

int cr_json_open(lua_State *L) {
  /* The marker metatable for tables that must encode as arrays (even empty). */
  lua_pushlightuserdata(L, &array_mt_key);
  lua_newtable(L);
  lua_rawset(L, LUA_REGISTRYINDEX);

  lua_pushcfunction(L, luaopen_cjson);
  lua_call(L, 0, 1);
  decorate(L, l_encode);
  lua_pushcfunction(L, luaopen_cjson_safe);
  lua_call(L, 0, 1);
  decorate(L, l_encode_safe);
  lua_setfield(L, -2, "safe");
  return 1;
}
