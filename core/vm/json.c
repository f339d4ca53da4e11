/* json.c - JSON encoding (see json.h for why crescent has its own encoder). */
#include "json.h"
#include "jsontext.h"

#include <lauxlib.h>
#include <lua.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "clock.h"
#include "text.h"
#include "budget.h"

#define JSON_MAX_DEPTH 1000

/* The registry key of json.array_mt (users cannot reach the registry). */
static char array_mt_key;
/* json.empty_array: a lightuserdata that is not an address (json.null is
 * NULL), so nothing a function can print says where the binary is. */
#define EMPTY_ARRAY ((void *)(uintptr_t)1)

/* --- encoding ----------------------------------------------------------------------------------- */

/* The encoder reads values raw (no metamethod, no user code runs) and
 * checks every write against a limit on b->len, so the text never grows past
 * it: a table shared many times over (t = {t, t} twenty levels deep) stops at
 * the limit instead of building gigabytes. */
typedef struct {
  lua_State *L;
  cr_buf_t *b;
  size_t limit; /* b->len may not pass this */
  char *err;
  size_t errlen;
  unsigned visits;   /* tables so far */
  uint64_t deadline; /* monotonic ns; 0 until the first clock check */
} encoder_t;

/* Time. A bound on the text bounds the work only where every step writes:
 * it does (an empty table writes {}, nesting stops at 1000), except for
 * walking a table, which costs its slots, not its keys: a table emptied
 * after a million stores keeps its million slots and encodes to "{}", and
 * an array of a million references to it would take hours. So from the
 * ENC_CLOCK_FROM-th table on, every ENC_CLOCK_EVERY tables, the encoder
 * looks at the clock and gives up at the invocation's deadline, or
 * ENC_TIME_NS after it started where none is armed. Small values never read
 * the clock. */
#define ENC_CLOCK_FROM 64
#define ENC_CLOCK_EVERY 16
#define ENC_TIME_NS 2000000000ull

static int enc_value(encoder_t *e, int idx, int depth);

static int enc_fail(encoder_t *e, const char *msg, const char *detail) {
  snprintf(e->err, e->errlen, "%s%s", msg, detail ? detail : "");
  return CR_EINVAL;
}

static inline int enc_put(encoder_t *e, const char *p, size_t n) {
  if (n > e->limit - e->b->len) return CR_ETOOBIG;
  return cr_buf_append(e->b, p, n);
}

static inline int enc_putc(encoder_t *e, char c) {
  if (e->b->len >= e->limit) return CR_ETOOBIG;
  return cr_buf_putc(e->b, c);
}

static int enc_number(encoder_t *e, double v) {
  char text[CR_JSON_NUMBER_MAX];
  int n = cr_json_format_number(v, text);
  if (n < 0) return n;
  return enc_put(e, text, (size_t)n);
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
  if (++e->visits >= ENC_CLOCK_FROM && e->visits % ENC_CLOCK_EVERY == 0) {
    uint64_t now = cr_clock_ns();
    if (!e->deadline) {
      cr_budget_t b;
      e->deadline = cr_budget_get(L, &b) == 0 && b.deadline_ns ? b.deadline_ns : now + ENC_TIME_NS;
    }
    if (now >= e->deadline) return CR_ETIMEDOUT;
  }
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
  int rc;
  if (n > 0 || forced_array) {
    if ((rc = enc_putc(e, '['))) return rc;
    for (long i = 1; i <= n; i++) {
      if (i > 1 && (rc = enc_putc(e, ','))) return rc;
      lua_rawgeti(L, idx, (int)i);
      rc = enc_value(e, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (rc) return rc;
    }
    return enc_putc(e, ']');
  }
  if ((rc = enc_putc(e, '{'))) return rc;
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int ktype = lua_type(L, -2);
    if (!first && (rc = enc_putc(e, ','))) return rc;
    first = 0;
    if (ktype == LUA_TSTRING) {
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      if ((rc = cr_json_escape_limited(e->b, k, kl, e->limit))) return rc;
    } else if (ktype == LUA_TNUMBER) {
      if ((rc = enc_putc(e, '"'))) return rc;
      rc = enc_number(e, lua_tonumber(L, -2));
      if (rc == CR_EINVAL) return enc_fail(e, "cannot encode: table key is NaN or infinite", NULL);
      if (rc || (rc = enc_putc(e, '"'))) return rc;
    } else {
      return enc_fail(e, "cannot encode table key of type ", lua_typename(L, ktype));
    }
    if ((rc = enc_putc(e, ':'))) return rc;
    if ((rc = enc_value(e, lua_gettop(L), depth + 1))) return rc;
    lua_pop(L, 1);
  }
  return enc_putc(e, '}');
}

/* On failure the stack may hold leftovers: cr_json_encode_max resets it. */
static int enc_value(encoder_t *e, int idx, int depth) {
  lua_State *L = e->L;
  int rc;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return enc_put(e, "null", 4);
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? enc_put(e, "true", 4) : enc_put(e, "false", 5);
  case LUA_TNUMBER:
    rc = enc_number(e, lua_tonumber(L, idx));
    return rc == CR_EINVAL ? enc_fail(e, "cannot encode number: NaN or infinity", NULL) : rc;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return cr_json_escape_limited(e->b, s, len, e->limit);
  }
  case LUA_TTABLE:
    return enc_table(e, idx, depth);
  case LUA_TLIGHTUSERDATA: {
    void *p = lua_touserdata(L, idx);
    if (p == NULL) return enc_put(e, "null", 4); /* json.null / cjson.null */
    if (p == EMPTY_ARRAY) return enc_put(e, "[]", 2);
  }
  /* fall through */
  default:
    return enc_fail(e, "cannot encode a value of type ", lua_typename(L, lua_type(L, idx)));
  }
}

/* The bytes the state L may still allocate under its memory limit (a
 * string of the text will need them), or SIZE_MAX for a state without a
 * budget (not a vm's). */
static size_t mem_bound(lua_State *L) {
  cr_budget_t b;
  return cr_budget_get(L, &b) == 0 ? b.mem_left : SIZE_MAX;
}

/* mem: max is what the state's memory allows, say so when it is passed. */
static int encode_run(lua_State *L, int idx, cr_buf_t *b, size_t max, int mem, uint64_t deadline_ns, char *err,
                      size_t errlen) {
  size_t mark = b->len;
  encoder_t e = {L, b, max > SIZE_MAX - mark ? SIZE_MAX : mark + max, err, errlen, 0, deadline_ns};
  int top = lua_gettop(L);
  if (idx < 0) idx = top + idx + 1;
  int rc = enc_value(&e, idx, 0);
  lua_settop(L, top);
  if (rc) {
    if (rc == CR_ENOMEM) snprintf(err, errlen, "cannot encode: out of memory");
    else if (rc == CR_ETOOBIG && mem)
      snprintf(err, errlen, "cannot encode: the text would pass the function's memory limit (%zu bytes left)", max);
    else if (rc == CR_ETOOBIG) snprintf(err, errlen, "cannot encode: the text is over the limit of %zu bytes", max);
    else if (rc == CR_ETIMEDOUT)
      snprintf(err, errlen, "cannot encode: out of time after %u tables (a table shared or walked too often?)",
               e.visits);
    b->len = mark;
  }
  return rc;
}

int cr_json_encode_max(lua_State *L, int idx, cr_buf_t *b, size_t max, char *err, size_t errlen) {
  return encode_run(L, idx, b, max, 0, 0, err, errlen);
}

int cr_json_encode_until(lua_State *L, int idx, cr_buf_t *b, size_t max, uint64_t deadline_ns, char *err,
                         size_t errlen) {
  return encode_run(L, idx, b, max, 0, deadline_ns, err, errlen);
}

int cr_json_encode(lua_State *L, int idx, cr_buf_t *b, char *err, size_t errlen) {
  return encode_run(L, idx, b, mem_bound(L), 1, 0, err, errlen);
}

/* --- decoding ----------------------------------------------------------------------------------- */

/* A strict RFC 8259 parser that builds Lua values straight on the stack.
 * Why not lua-cjson's decode: profiles of a small JSON echo put half of the
 * request's CPU in it (a per-character state machine, strtod for every
 * number, tables grown key by key). Here members are pushed on the stack and
 * the table is made once with its exact size; strings without escapes are
 * pushed from the input; everyday numbers are read without strtod.
 *
 * Lua API calls may raise (the state's memory limit): nothing in here owns
 * memory across them except the scratch buffer, which is static and reused. */

typedef struct {
  lua_State *L;
  const char *s, *p, *end;
  int depth;
  int top0;     /* the stack's top when decoding began */
  int array_mt; /* registry has the array marker: empty arrays get it, and encode back to [] */
  char *err;
  size_t errlen;
} decoder_t;

/* Unescaped strings of up to DEC_SCRATCH_MAX bytes; the decoder never
 * re-enters. It never grows past that, so no document leaves it big. */
static cr_buf_t dec_scratch;
#define DEC_SCRATCH_MAX 65536

static int dec_value(decoder_t *d);

static int dec_fail(decoder_t *d, const char *what) {
  size_t pos = (size_t)(d->p - d->s) + 1;
  if (d->p >= d->end) snprintf(d->err, d->errlen, "unexpected end of input (%s) at character %zu", what, pos);
  else if ((unsigned char)*d->p >= 0x20 && (unsigned char)*d->p < 0x7f)
    snprintf(d->err, d->errlen, "%s at character %zu ('%c')", what, pos, *d->p);
  else snprintf(d->err, d->errlen, "%s at character %zu (byte 0x%02x)", what, pos, (unsigned char)*d->p);
  return CR_EINVAL;
}

static inline void skip_ws(decoder_t *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t')) d->p++;
}

static int hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int h = cr_hexval(p[i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

static char *put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    *o++ = (char)cp;
  } else if (cp < 0x800) {
    *o++ = (char)(0xc0 | cp >> 6);
    *o++ = (char)(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    *o++ = (char)(0xe0 | cp >> 12);
    *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
    *o++ = (char)(0x80 | (cp & 0x3f));
  } else {
    *o++ = (char)(0xf0 | cp >> 18);
    *o++ = (char)(0x80 | (cp >> 12 & 0x3f));
    *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
    *o++ = (char)(0x80 | (cp & 0x3f));
  }
  return o;
}

/* At the opening quote. Pushes the string. */
static int dec_string(decoder_t *d) {
  const char *start = ++d->p, *q = start;
  while (q < d->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
  if (q < d->end && *q == '"') {
    lua_pushlstring(d->L, start, (size_t)(q - start));
    d->p = q + 1;
    return 0;
  }
  /* Escapes: the result is never longer than the string's text, found
   * first. Up to DEC_SCRATCH_MAX bytes it is unescaped in the scratch buffer,
   * beyond in a userdata of the state (metered, and collected whatever
   * happens next). */
  const char *close = q;
  while (close < d->end && *close != '"') close += *close == '\\' ? 2 : 1;
  if (close > d->end) close = d->end;
  size_t room = (size_t)(close - start);
  char *out;
  if (room <= DEC_SCRATCH_MAX) {
    dec_scratch.len = 0;
    if (cr_buf_reserve(&dec_scratch, room ? room : 1)) {
      snprintf(d->err, d->errlen, "out of memory");
      return CR_ENOMEM;
    }
    out = dec_scratch.data;
  } else {
    out = lua_newuserdata(d->L, room);
  }
  char *o = out;
  memcpy(o, start, (size_t)(q - start));
  o += q - start;
  d->p = q;
  for (;;) {
    if (d->p >= d->end) return dec_fail(d, "unterminated string");
    unsigned char c = (unsigned char)*d->p;
    if (c == '"') break;
    if (c < 0x20) return dec_fail(d, "control character in string");
    if (c != '\\') {
      *o++ = (char)c;
      d->p++;
      continue;
    }
    if (d->end - d->p < 2) {
      d->p = d->end;
      return dec_fail(d, "unterminated string");
    }
    char e = d->p[1];
    switch (e) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      int cp = d->end - d->p >= 6 ? hex4(d->p + 2) : -1;
      if (cp < 0) return dec_fail(d, "invalid \\u escape");
      if (cp >= 0xdc00 && cp <= 0xdfff) return dec_fail(d, "lone low surrogate in \\u escape");
      if (cp >= 0xd800 && cp <= 0xdbff) {
        int lo = d->end - d->p >= 12 && d->p[6] == '\\' && d->p[7] == 'u' ? hex4(d->p + 8) : -1;
        if (lo < 0xdc00 || lo > 0xdfff) return dec_fail(d, "lone high surrogate in \\u escape");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        d->p += 6;
      }
      o = put_utf8(o, (unsigned)cp);
      d->p += 6;
      continue;
    }
    default:
      d->p++;
      return dec_fail(d, "invalid escape in string");
    }
    d->p += 2;
  }
  d->p++;
  lua_pushlstring(d->L, out, (size_t)(o - out));
  if (out != dec_scratch.data) lua_remove(d->L, -2);
  return 0;
}

/* A valid number text too long for a small buffer (thousands of digits):
 * read as its first 800 significant digits, a 1 after them if any later
 * digit is not 0, and the exponent. That rounds as the whole text would (the
 * exact decimal of a double has at most 767 significant digits, so only
 * "more than this" matters past them), in bounded time and stack memory. */
static double long_number(const char *p, const char *end) {
  char buf[840];
  int o = 0, kept = 0, frac = 0, sticky = 0;
  long long exp = 0;
  if (*p == '-') buf[o++] = *p++;
  for (; p < end && *p != 'e' && *p != 'E'; p++) {
    char c = *p;
    if (c == '.') {
      frac = 1;
    } else if (kept == 0 && c == '0') {
      if (frac) exp--;
    } else if (kept < 800) {
      buf[o++] = c;
      kept++;
      if (frac) exp--;
    } else {
      if (c != '0') sticky = 1;
      if (!frac) exp++;
    }
  }
  if (kept == 0) return buf[0] == '-' ? -0.0 : 0.0;
  if (sticky) {
    buf[o++] = '1';
    exp--;
  }
  if (p < end) { /* the exponent: digits past 10^15 cannot change the result */
    int eneg = 0;
    long long e = 0;
    if (*++p == '+' || *p == '-') eneg = *p++ == '-';
    for (; p < end; p++)
      if (e < 1000000000000000ll) e = e * 10 + (*p - '0');
    exp += eneg ? -e : e;
  }
  snprintf(buf + o, sizeof buf - (size_t)o, "e%lld", exp);
  return strtod(buf, NULL);
}

/* Pushes a number. Everyday ones (up to 15 significant digits, a decimal
 * exponent within +-22) are exact in one multiplication or division of two
 * exactly represented doubles, so correctly rounded (Clinger's fast path);
 * the rest go to strtod. */
static int dec_number(decoder_t *d) {
  static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const char *start = d->p, *p = d->p, *end = d->end;
  int neg = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  uint64_t m = 0;
  int digits = 0, exp10 = 0;
  if (p < end && *p == '0') {
    p++;
  } else if (p < end && *p >= '1' && *p <= '9') {
    while (p < end && *p >= '0' && *p <= '9') {
      if (digits < 19) m = m * 10 + (uint64_t)(*p - '0');
      else exp10++;
      digits++;
      p++;
    }
  } else {
    d->p = p;
    return dec_fail(d, "invalid number");
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || *p < '0' || *p > '9') {
      d->p = p;
      return dec_fail(d, "invalid number");
    }
    while (p < end && *p >= '0' && *p <= '9') {
      if (m == 0 && *p == '0') { /* leading zeros are not significant */
        exp10--;
      } else if (digits < 19) {
        m = m * 10 + (uint64_t)(*p - '0');
        exp10--;
        digits++;
      } else {
        digits++;
      }
      p++;
    }
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    int eneg = 0, e = 0;
    if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    if (p >= end || *p < '0' || *p > '9') {
      d->p = p;
      return dec_fail(d, "invalid number");
    }
    while (p < end && *p >= '0' && *p <= '9') {
      if (e < 100000) e = e * 10 + (*p - '0');
      p++;
    }
    exp10 += eneg ? -e : e;
  }
  d->p = p;
  double v;
  if (digits <= 15 && exp10 >= -22 && exp10 <= 22) {
    v = (double)m;
    v = exp10 < 0 ? v / pow10[-exp10] : v * pow10[exp10];
  } else {
    char tmp[64];
    size_t n = (size_t)(p - start);
    if (n < sizeof tmp) {
      memcpy(tmp, start, n);
      tmp[n] = '\0';
      v = strtod(tmp, NULL);
    } else {
      v = long_number(start, p);
    }
    neg = 0; /* strtod read the sign */
  }
  /* Past the largest double strtod gives infinity, which no JSON text can
   * say (it could not be encoded back): refused. Below the smallest it gives
   * 0 (or -0), the nearest double, as every reader does: kept. */
  if (isinf(v)) {
    d->p = start;
    return dec_fail(d, "number out of range");
  }
  lua_pushnumber(d->L, neg ? -v : v);
  return 0;
}

/* Members wait on the stack and go into a table made with their exact
 * count at the end, or earlier for huge or deeply nested documents: when a
 * level holds DEC_FLUSH_AT of them, or the stack holds DEC_STACK_HIGH slots
 * (LuaJIT allows a C function 8000), they go into a table made for what is
 * there, which grows after. Every level then holds a table, a key and a
 * value: 1000 levels fit. */
#define DEC_FLUSH_AT 512
#define DEC_STACK_HIGH 2048

static void dec_flush(lua_State *L, int base, int *made, int *pending, int per, int *next_index) {
  if (!*made) {
    if (per == 2) lua_createtable(L, 0, *pending);
    else lua_createtable(L, *pending, 0);
    lua_insert(L, base + 1);
    *made = 1;
  }
  int first = base + 2;
  for (int i = 0; i < *pending; i++) {
    if (per == 2) {
      lua_pushvalue(L, first + 2 * i);
      lua_pushvalue(L, first + 2 * i + 1);
      lua_rawset(L, base + 1);
    } else {
      lua_pushvalue(L, first + i);
      lua_rawseti(L, base + 1, (*next_index)++);
    }
  }
  lua_settop(L, base + 1);
  *pending = 0;
}

/* At '{' or '['. Pushes the table. */
static int dec_container(decoder_t *d) {
  lua_State *L = d->L;
  int object = *d->p == '{';
  char close = object ? '}' : ']';
  int per = object ? 2 : 1;
  if (++d->depth > JSON_MAX_DEPTH) return dec_fail(d, "nesting deeper than 1000");
  d->p++;
  int base = lua_gettop(L), made = 0, pending = 0, next_index = 1;
  skip_ws(d);
  if (d->p < d->end && *d->p == close) {
    d->p++;
  } else {
    for (;;) {
      if (pending >= DEC_FLUSH_AT || (pending && lua_gettop(L) - d->top0 > DEC_STACK_HIGH) || !lua_checkstack(L, 4)) {
        dec_flush(L, base, &made, &pending, per, &next_index);
        if (!lua_checkstack(L, 4)) return dec_fail(d, "nesting too deep for the Lua stack");
      }
      skip_ws(d);
      if (object) {
        if (d->p >= d->end || *d->p != '"') return dec_fail(d, "expected a string key");
        int rc = dec_string(d);
        if (rc) return rc;
        skip_ws(d);
        if (d->p >= d->end || *d->p != ':') return dec_fail(d, "expected ':'");
        d->p++;
        skip_ws(d);
      }
      int rc = dec_value(d);
      if (rc) return rc;
      pending++;
      skip_ws(d);
      if (d->p < d->end && *d->p == ',') {
        d->p++;
        continue;
      }
      if (d->p < d->end && *d->p == close) {
        d->p++;
        break;
      }
      return dec_fail(d, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
  }
  int empty = !made && pending == 0;
  dec_flush(L, base, &made, &pending, per, &next_index);
  if (empty && !object && d->array_mt) {
    lua_pushlightuserdata(L, &array_mt_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_setmetatable(L, -2);
  }
  d->depth--;
  return 0;
}

static int dec_literal(decoder_t *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) return dec_fail(d, "invalid value");
  d->p += n;
  return 0;
}

static int dec_value(decoder_t *d) {
  if (d->p >= d->end) return dec_fail(d, "expected a value");
  switch (*d->p) {
  case '"': return dec_string(d);
  case '{':
  case '[': return dec_container(d);
  case 't':
    if (dec_literal(d, "true", 4)) return CR_EINVAL;
    lua_pushboolean(d->L, 1);
    return 0;
  case 'f':
    if (dec_literal(d, "false", 5)) return CR_EINVAL;
    lua_pushboolean(d->L, 0);
    return 0;
  case 'n':
    if (dec_literal(d, "null", 4)) return CR_EINVAL;
    lua_pushlightuserdata(d->L, NULL); /* json.null */
    return 0;
  default:
    if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) return dec_number(d);
    return dec_fail(d, "expected a value");
  }
}

int cr_json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen) {
  decoder_t d = {L, s, s, s + len, 0, 0, 0, err, errlen};
  lua_pushlightuserdata(L, &array_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  d.array_mt = lua_istable(L, -1);
  lua_pop(L, 1);
  int top = lua_gettop(L);
  d.top0 = top;
  if (!lua_checkstack(L, 8)) {
    snprintf(err, errlen, "Lua stack exhausted");
    return CR_ENOMEM;
  }
  skip_ws(&d);
  int rc = dec_value(&d);
  if (rc == 0) {
    skip_ws(&d);
    if (d.p < d.end) rc = dec_fail(&d, "unexpected text after the value");
  }
  if (rc) {
    lua_settop(L, top);
    return rc;
  }
  return 0;
}

/* json.decode(s) -> value; raises on text that is not JSON. */
static int l_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char err[200];
  if (cr_json_decode(L, s, len, err, sizeof err)) return luaL_error(L, "invalid JSON: %s", err);
  return 1;
}

/* json.safe.decode(s) -> value | nil, err */
static int l_decode_safe(lua_State *L) {
  size_t len;
  const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
  char err[200];
  if (!s) {
    lua_pushnil(L);
    lua_pushfstring(L, "invalid JSON: expected a string, got %s", luaL_typename(L, 1));
    return 2;
  }
  if (cr_json_decode(L, s, len, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushfstring(L, "invalid JSON: %s", err);
    return 2;
  }
  return 1;
}

/* json.encode's text. One per process: the encoder runs no Lua code, so it
 * is never re-entered. Kept small between calls: a big text is pushed as a
 * string under a protected call, so a memory error there (the string takes
 * the bytes again, in the state) cannot leave it big, and it is trimmed
 * before anything else happens. */
static cr_buf_t enc_scratch;
#define SCRATCH_KEEP 65536

static void scratch_done(void) {
  if (enc_scratch.cap > SCRATCH_KEEP) cr_buf_reset(&enc_scratch, SCRATCH_KEEP);
  enc_scratch.len = 0;
}

static int push_scratch(lua_State *L) {
  lua_pushlstring(L, enc_scratch.data, enc_scratch.len);
  return 1;
}

/* json.encode(v [, max]) and json.safe.encode: encodes argument 1 and pushes
 * the string, or returns the code with the message in err. max (argument 2:
 * bytes of text, or nil) and the memory the function has left both bound the
 * text. Upvalue 1 is push_scratch. */
static int encode_arg(lua_State *L, char *err, size_t errlen) {
  size_t bound = mem_bound(L), max = bound;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number m = lua_type(L, 2) == LUA_TNUMBER ? lua_tonumber(L, 2) : -1;
    if (!(m >= 0)) luaL_argerror(L, 2, "max must be a number of bytes >= 0");
    if (m < (lua_Number)bound) max = (size_t)m;
  }
  enc_scratch.len = 0;
  int rc = encode_run(L, 1, &enc_scratch, max, max == bound, 0, err, errlen);
  if (rc) {
    scratch_done();
    return rc;
  }
  if (enc_scratch.cap <= SCRATCH_KEEP) { /* a memory error here leaves nothing big */
    lua_pushlstring(L, enc_scratch.len ? enc_scratch.data : "", enc_scratch.len);
    enc_scratch.len = 0;
    return 0;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  int st = lua_pcall(L, 0, 1, 0);
  scratch_done();
  if (st) lua_error(L); /* the memory error, again, now that the text is gone */
  return 0;
}

/* json.encode(v [, max]) -> string; raises on values JSON cannot hold. */
static int l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  char err[160];
  if (encode_arg(L, err, sizeof err)) return luaL_error(L, "%s", err);
  return 1;
}

/* json.safe.encode(v [, max]) -> string | nil, err */
static int l_encode_safe(lua_State *L) {
  char err[160];
  if (encode_arg(L, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int name_tostring(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

/* tostring() of any lightuserdata (they share one metatable): a fixed name,
 * never an address. */
static int lightud_tostring(lua_State *L) {
  void *p = lua_touserdata(L, 1);
  lua_pushstring(L, p == NULL ? "json.null" : p == EMPTY_ARRAY ? "json.empty_array" : "userdata");
  return 1;
}

/* The json table: exactly what the README documents (encode, decode, null,
 * empty_array, array_mt), no more: lua-cjson's own functions (new, with a
 * private buffer per instance outside the memory meter; encode_keep_buffer,
 * encode_max_depth and the other settings) are not reachable. */
static void json_table(lua_State *L, lua_CFunction encode, lua_CFunction decode) {
  lua_createtable(L, 0, 6);
  lua_pushcfunction(L, push_scratch);
  lua_pushcclosure(L, encode, 1);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, decode);
  lua_setfield(L, -2, "decode");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_pushlightuserdata(L, EMPTY_ARRAY);
  lua_setfield(L, -2, "empty_array");
  lua_pushlightuserdata(L, &array_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "array_mt");
}

int cr_json_open(lua_State *L) {
  /* The marker metatable for tables that must encode as arrays (even empty).
   * Its own metatable only names it for tostring (metamethods of the tables
   * it marks are looked up in it, not in its metatable). */
  lua_pushlightuserdata(L, &array_mt_key);
  lua_newtable(L);
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "json.array_mt");
  lua_pushcclosure(L, name_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);

  /* Every lightuserdata of the state: a name for tostring, locked. */
  lua_pushlightuserdata(L, NULL);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, lightud_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);

  json_table(L, l_encode, l_decode);
  json_table(L, l_encode_safe, l_decode_safe);
  lua_setfield(L, -2, "safe");
  return 1;
}
