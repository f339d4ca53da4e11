/* test_json.c - JSON escaping, numbers and the Lua value encoder (core/vm/json.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "error.h"
#include "json.h"
#include "vm.h"

int luaopen_cjson(lua_State *L);

/* --- helpers ------------------------------------------------------------------------------------ */

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  assert_non_null(L);
  luaL_openlibs(L);
  cr_json_open(L);
  lua_setglobal(L, "json");
  assert_int_equal(lua_gettop(L), 0);
  return L;
}

/* Runs chunk (which returns one value) and pushes its result. */
static void push_value(lua_State *L, const char *chunk) {
  if (luaL_loadstring(L, chunk) || lua_pcall(L, 0, 1, 0))
    fail_msg("chunk failed: %s\n%s", lua_tostring(L, -1), chunk);
}

static char out_text[1 << 16];
static char out_err[256];

/* Encodes what chunk returns. Returns the rc; the text or the error is in
 * out_text / out_err. Checks the stack is left alone. */
static int encode(lua_State *L, const char *chunk) {
  push_value(L, chunk);
  int top = lua_gettop(L);
  cr_buf_t b = CR_BUF_INIT;
  out_err[0] = '\0';
  int rc = cr_json_encode(L, -1, &b, out_err, sizeof out_err);
  assert_int_equal(lua_gettop(L), top);
  snprintf(out_text, sizeof out_text, "%.*s", (int)b.len, b.data ? b.data : "");
  if (rc) assert_int_equal(b.len, 0);
  cr_buf_free(&b);
  lua_pop(L, 1);
  return rc;
}

static void encodes_to(lua_State *L, const char *chunk, const char *want) {
  int rc = encode(L, chunk);
  if (rc) fail_msg("encoding failed (%d: %s): %s", rc, out_err, chunk);
  if (strcmp(out_text, want) != 0) fail_msg("%s\n  gave %s\n  want %s", chunk, out_text, want);
}

static void fails_with(lua_State *L, const char *chunk, const char *needle) {
  int rc = encode(L, chunk);
  if (rc == 0) fail_msg("encoding should fail: %s (gave %s)", chunk, out_text);
  if (!strstr(out_err, needle)) fail_msg("%s: error '%s' lacks '%s'", chunk, out_err, needle);
}

static const char *number(double v) {
  static char s[64];
  cr_buf_t b = CR_BUF_INIT;
  int rc = cr_json_number(&b, v);
  assert_int_equal(rc, 0);
  snprintf(s, sizeof s, "%.*s", (int)b.len, b.data);
  cr_buf_free(&b);
  return s;
}

static const char *escape(const char *s, size_t len) {
  static char o[1024];
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_json_escape(&b, s, len), 0);
  assert_true(b.len < sizeof o);
  memcpy(o, b.data, b.len);
  o[b.len] = '\0';
  cr_buf_free(&b);
  return o;
}

/* --- cr_json_escape ------------------------------------------------------------------------------- */

static void test_escape_basic(void **state) {
  (void)state;
  assert_string_equal(escape("", 0), "\"\"");
  assert_string_equal(escape("hello", 5), "\"hello\"");
  assert_string_equal(escape("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
  assert_string_equal(escape("\n\r\t\b\f", 5), "\"\\n\\r\\t\\b\\f\"");
  assert_string_equal(escape("/", 1), "\"/\"");
  assert_string_equal(escape("\x7f", 1), "\"\x7f\"");
}

static void test_escape_control_and_binary(void **state) {
  (void)state;
  /* Every control character comes out escaped, none raw. */
  for (int c = 0; c < 0x20; c++) {
    char in[1] = {(char)c};
    const char *o = escape(in, 1);
    for (const char *p = o; *p; p++) assert_true((unsigned char)*p >= 0x20);
    assert_int_equal(o[1], '\\');
  }
  /* NUL is data, not the end of the string. */
  assert_string_equal(escape("a\0b", 3), "\"a\\u0000b\"");
  assert_string_equal(escape("\x01\x1f", 2), "\"\\u0001\\u001f\"");
  /* Bytes >= 0x80 (UTF-8) pass through unchanged. */
  assert_string_equal(escape("caf\xc3\xa9", 5), "\"caf\xc3\xa9\"");
  /* Every byte value: the worst case (all \u00XX) fits the reservation. */
  char all[256];
  for (int i = 0; i < 256; i++) all[i] = (char)i;
  cr_buf_t b = CR_BUF_INIT;
  for (int k = 0; k < 20; k++) assert_int_equal(cr_json_escape(&b, all, 32), 0); /* 32 * 6 + 2 each */
  assert_int_equal(b.len, 20 * (32 * 6 + 2 - 5 * 4)); /* the b, t, n, f and r escapes take 2 bytes, not 6 */
  cr_buf_reset(&b, 0);
  assert_int_equal(cr_json_escape(&b, all, 256), 0);
  assert_int_equal(b.data[0], '"');
  assert_int_equal(b.data[b.len - 1], '"');
  cr_buf_free(&b);
  /* Appends after what the buffer holds. */
  cr_buf_append_str(&b, "x=");
  cr_json_escape(&b, "y", 1);
  assert_string_equal(cr_buf_cstr(&b), "x=\"y\"");
  cr_buf_free(&b);
}

/* --- cr_json_number ----------------------------------------------------------------------------- */

static void test_number_integers(void **state) {
  (void)state;
  assert_string_equal(number(0), "0");
  assert_string_equal(number(-0.0), "-0");
  assert_string_equal(number(1), "1");
  assert_string_equal(number(-1), "-1");
  assert_string_equal(number(100), "100");
  assert_string_equal(number(1e15), "1000000000000000");
  assert_string_equal(number(123456789012345678.0), "123456789012345680"); /* the double's exact value */
  assert_string_equal(number(9007199254740992.0), "9007199254740992");     /* 2^53 */
  assert_string_equal(number(9007199254740994.0), "9007199254740994");     /* 2^53 + 2 */
  assert_string_equal(number(-9007199254740992.0), "-9007199254740992");
  assert_string_equal(number(1152921504606846976.0), "1152921504606846976"); /* 2^60 */
  assert_string_equal(number(1e18), "1000000000000000000");
  /* Past the 64-bit range: still reads back exactly. */
  double bigs[] = {9223372036854775808.0, 1e19, 1.8446744073709552e19, 1e300, -1e300, 1.7976931348623157e308};
  for (size_t i = 0; i < sizeof bigs / sizeof bigs[0]; i++) {
    const char *s = number(bigs[i]);
    if (strtod(s, NULL) != bigs[i]) fail_msg("%.17g printed as %s", bigs[i], s);
  }
}

static void test_number_shortest(void **state) {
  (void)state;
  assert_string_equal(number(0.1), "0.1");
  assert_string_equal(number(0.5), "0.5");
  assert_string_equal(number(-2.5), "-2.5");
  assert_string_equal(number(3.14), "3.14");
  assert_string_equal(number(0.1 + 0.2), "0.30000000000000004");
  assert_string_equal(number(1.0 / 3.0), "0.3333333333333333");
  assert_string_equal(number(100.25), "100.25");
  assert_string_equal(number(1e-7), "1e-07");
  assert_string_equal(number(1.5e300), "1.5e+300");
  /* Round trip over many values. */
  unsigned long long x = 88172645463325252ULL;
  for (int i = 0; i < 20000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    double v;
    uint64_t bits = x;
    memcpy(&v, &bits, sizeof v);
    if (isnan(v) || isinf(v)) continue;
    const char *s = number(v);
    if (strtod(s, NULL) != v && !(v == 0 && strtod(s, NULL) == 0)) fail_msg("%.17g printed as %s", v, s);
    /* and JSON-shaped: no "inf", "nan", no leading '+' */
    assert_true(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'));
    assert_null(strstr(s, "inf"));
    assert_null(strstr(s, "nan"));
  }
  for (int i = 0; i < 2000; i++) {
    double v = (double)i / 100.0; /* 0.01 .. 19.99 */
    char want[32];
    snprintf(want, sizeof want, "%.15g", v);
    assert_string_equal(number(v), want);
  }
}

/* "the shortest form that reads back to the same double" also for the
 * smallest (subnormal) doubles. */
static void test_number_shortest_subnormal(void **state) {
  (void)state;
  assert_string_equal(number(5e-324), "5e-324");
  assert_string_equal(number(-5e-324), "-5e-324");
  assert_string_equal(number(1e-320), "1e-320");
}

static void test_number_nan_inf(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "ab");
  assert_int_equal(cr_json_number(&b, NAN), CR_EINVAL);
  assert_int_equal(cr_json_number(&b, INFINITY), CR_EINVAL);
  assert_int_equal(cr_json_number(&b, -INFINITY), CR_EINVAL);
  assert_int_equal(b.len, 2);
  cr_buf_free(&b);
}

/* --- cr_json_encode ------------------------------------------------------------------------------- */

static void test_encode_scalars(void **state) {
  (void)state;
  lua_State *L = new_state();
  encodes_to(L, "return nil", "null");
  encodes_to(L, "return true", "true");
  encodes_to(L, "return false", "false");
  encodes_to(L, "return 42", "42");
  encodes_to(L, "return 2^53", "9007199254740992");
  encodes_to(L, "return 0.1", "0.1");
  encodes_to(L, "return 'a\\0b\\n\"'", "\"a\\u0000b\\n\\\"\"");
  encodes_to(L, "return json.null", "null");
  encodes_to(L, "return json.empty_array", "[]");
  fails_with(L, "return 0/0", "NaN");
  fails_with(L, "return math.huge", "NaN or infinity");
  fails_with(L, "return -math.huge", "infinity");
  fails_with(L, "return print", "function");
  fails_with(L, "return coroutine.create(print)", "thread");
  fails_with(L, "return io.stdout", "userdata");
  lua_close(L);
}

static void test_encode_tables(void **state) {
  (void)state;
  lua_State *L = new_state();
  encodes_to(L, "return {}", "{}");
  encodes_to(L, "return {1, 2, 3}", "[1,2,3]");
  encodes_to(L, "return {'a', true, false, 1.5}", "[\"a\",true,false,1.5]");
  encodes_to(L, "return {a = 1}", "{\"a\":1}");
  encodes_to(L, "return {[''] = 'e'}", "{\"\":\"e\"}");
  encodes_to(L, "return {['k\"\\n'] = 1}", "{\"k\\\"\\n\":1}");
  encodes_to(L, "return {a = {b = {1, {c = true}, {}}}}", "{\"a\":{\"b\":[1,{\"c\":true},{}]}}");
  encodes_to(L, "return {{}, {{}}, {1}}", "[{},[{}],[1]]");
  encodes_to(L, "return {json.null, 1}", "[null,1]");
  encodes_to(L, "return {x = json.empty_array}", "{\"x\":[]}");
  /* Number keys that are not an array become string keys. */
  encodes_to(L, "return {[-1] = 1}", "{\"-1\":1}");
  encodes_to(L, "return {[1.5] = 1}", "{\"1.5\":1}");
  encodes_to(L, "return {[0] = 'z'}", "{\"0\":\"z\"}");
  encodes_to(L, "return {[2^31] = 1}", "{\"2147483648\":1}");
  /* Mixed tables are objects with every key. */
  int rc = encode(L, "return {1, 2, x = 3}");
  assert_int_equal(rc, 0);
  assert_int_equal(out_text[0], '{');
  assert_non_null(strstr(out_text, "\"1\":1"));
  assert_non_null(strstr(out_text, "\"2\":2"));
  assert_non_null(strstr(out_text, "\"x\":3"));
  /* Object output reads back as the same table. */
  push_value(L, "local t = {a = 1, b = {c = 'd', e = {1, 2}}, f = 0.25, g = false}\n"
                "local u = json.decode(json.encode(t))\n"
                "return u.a == 1 and u.b.c == 'd' and u.b.e[2] == 2 and u.f == 0.25 and u.g == false");
  assert_true(lua_toboolean(L, -1));
  lua_pop(L, 1);
  fails_with(L, "return {[true] = 1}", "key of type boolean");
  fails_with(L, "return {[{}] = 1}", "key of type table");
  fails_with(L, "return {[math.huge] = 1}", "NaN or infinite");
  fails_with(L, "return {1, 2, 0/0}", "NaN");
  fails_with(L, "return {a = {b = {c = print}}}", "function");
  lua_close(L);
}

static void test_encode_sparse_arrays(void **state) {
  (void)state;
  lua_State *L = new_state();
  encodes_to(L, "return {[1] = 1, [3] = 3}", "[1,null,3]");
  encodes_to(L, "return {nil, nil, 'x'}", "[null,null,\"x\"]");
  encodes_to(L, "return {[10] = 1}", "[null,null,null,null,null,null,null,null,null,1]");
  encodes_to(L, "return {[20] = 1}", "{\"20\":1}");
  int rc = encode(L, "return {[1] = 1, [11] = 1}");
  assert_int_equal(rc, 0);
  assert_int_equal(out_text[0], '{');
  /* Dense enough past 10 slots: an array. */
  encodes_to(L, "local t = {} for i = 1, 12 do t[i] = i end t[6] = nil return t",
             "[1,2,3,4,5,null,7,8,9,10,11,12]");
  /* A big array. */
  rc = encode(L, "local t = {} for i = 1, 5000 do t[i] = i end return t");
  assert_int_equal(rc, 0);
  assert_memory_equal(out_text, "[1,2,3,", 7);
  assert_non_null(strstr(out_text, ",4999,5000]"));
  lua_close(L);
}

static void test_encode_array_mt(void **state) {
  (void)state;
  lua_State *L = new_state();
  encodes_to(L, "return setmetatable({}, json.array_mt)", "[]");
  encodes_to(L, "return setmetatable({1, 2}, json.array_mt)", "[1,2]");
  assert_int_equal(encode(L, "return {list = setmetatable({}, json.array_mt), obj = {}}"), 0);
  assert_non_null(strstr(out_text, "\"list\":[]")); /* key order is the table's */
  assert_non_null(strstr(out_text, "\"obj\":{}"));
  assert_int_equal(strlen(out_text), strlen("{\"list\":[],\"obj\":{}}"));
  fails_with(L, "return setmetatable({a = 1}, json.array_mt)", "non-index keys");
  /* Another metatable means nothing. */
  encodes_to(L, "return setmetatable({}, {})", "{}");
  encodes_to(L, "return setmetatable({}, {__index = function() return 1 end})", "{}");
  /* json.safe shares the marker. */
  encodes_to(L, "return setmetatable({}, json.safe.array_mt)", "[]");
  encodes_to(L, "return json.safe.empty_array", "[]");
  lua_close(L);
}

static void test_encode_cycles(void **state) {
  (void)state;
  lua_State *L = new_state();
  fails_with(L, "local t = {} t.self = t return t", "deeper");
  fails_with(L, "local t = {} t[1] = t return t", "deeper");
  fails_with(L, "local a, b = {}, {} a.b = b b.a = a return {a}", "deeper");
  /* Deep but finite nesting works up to the limit. */
  encodes_to(L, "local t = {} for i = 1, 5 do t = {t} end return t", "[[[[[{}]]]]]");
  assert_int_equal(encode(L, "local t = 1 for i = 1, 900 do t = {t} end return t"), 0);
  assert_int_equal(strlen(out_text), 901 + 900);
  fails_with(L, "local t = 1 for i = 1, 1200 do t = {t} end return t", "deeper");
  lua_close(L);
}

static void test_encode_restores_len(void **state) {
  (void)state;
  lua_State *L = new_state();
  const char *bad[] = {
      "return {1, 2, {a = print}}",
      "return {a = 1, b = 2, c = {d = {e = 0/0}}}",
      "local t = {x = 1} t.y = t return t",
      "return {[true] = 1, a = 'long string that was already written maybe'}",
      "return setmetatable({a = 1}, json.array_mt)",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    push_value(L, bad[i]);
    int top = lua_gettop(L);
    cr_buf_t b = CR_BUF_INIT;
    cr_buf_append_str(&b, "PREFIX");
    char err[128];
    err[0] = '\0';
    assert_true(cr_json_encode(L, top, &b, err, sizeof err) < 0);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "PREFIX", 6);
    assert_true(err[0] != '\0');
    assert_int_equal(lua_gettop(L), top);
    /* The buffer goes on being usable. */
    assert_true(cr_json_encode(L, top, &b, err, sizeof err) < 0);
    assert_int_equal(b.len, 6);
    lua_pushinteger(L, 7);
    assert_int_equal(cr_json_encode(L, -1, &b, err, sizeof err), 0);
    assert_string_equal(cr_buf_cstr(&b), "PREFIX7");
    cr_buf_free(&b);
    lua_settop(L, 0);
  }
  /* A small err buffer is not overrun. */
  push_value(L, "return print");
  char tiny[8];
  memset(tiny, 'Z', sizeof tiny);
  cr_buf_t b = CR_BUF_INIT;
  assert_true(cr_json_encode(L, -1, &b, tiny, 4) < 0);
  assert_int_equal(tiny[3], '\0');
  assert_int_equal(tiny[4], 'Z');
  cr_buf_free(&b);
  lua_close(L);
}

/* The Lua side: json.encode raises, json.safe.encode returns nil, err,
 * numbers keep their precision (unlike lua-cjson's 14 digits). */
static void test_lua_module(void **state) {
  (void)state;
  lua_State *L = new_state();
  push_value(L, "return json.encode({id = 2^53 + 2, t = 1700000000123456})");
  const char *s = lua_tostring(L, -1);
  assert_non_null(strstr(s, "\"id\":9007199254740994"));
  assert_non_null(strstr(s, "\"t\":1700000000123456"));
  lua_pop(L, 1);
  push_value(L, "local ok, err = pcall(json.encode, {f = print}) return (not ok) and err");
  assert_non_null(strstr(lua_tostring(L, -1), "function"));
  lua_pop(L, 1);
  push_value(L, "local v, err = json.safe.encode({f = print}) return v == nil and err");
  assert_non_null(strstr(lua_tostring(L, -1), "function"));
  lua_pop(L, 1);
  push_value(L, "return json.safe.encode({1})");
  assert_string_equal(lua_tostring(L, -1), "[1]");
  lua_pop(L, 1);
  push_value(L, "return json.decode('[1,{\"a\":null}]')[2].a == json.null");
  assert_true(lua_toboolean(L, -1));
  lua_pop(L, 1);
  push_value(L, "local v, err = json.safe.decode('{bad') return v == nil and type(err) == 'string'");
  assert_true(lua_toboolean(L, -1));
  lua_pop(L, 1);
  push_value(L, "return select('#', pcall(json.encode))");
  assert_int_equal(lua_tointeger(L, -1), 2); /* false, "bad argument" */
  lua_pop(L, 1);
  lua_close(L);
}

/* cr_json_encode_max: max counts the bytes this call appends; the text stops
 * at the limit (exactly at it is fine), b is left as it was. */
static void max_case(lua_State *L, const char *chunk, size_t max, int want_rc, const char *want) {
  push_value(L, chunk);
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append(&b, "prefix", 6);
  char err[200] = "";
  int rc = cr_json_encode_max(L, -1, &b, max, err, sizeof err);
  lua_pop(L, 1);
  if (rc != want_rc) fail_msg("%s with max %zu: rc %d (%s)", chunk, max, rc, err);
  if (rc == 0) {
    assert_int_equal(b.len, 6 + strlen(want));
    assert_memory_equal(b.data + 6, want, strlen(want));
  } else {
    assert_int_equal(b.len, 6);
    assert_string_equal(err, want);
  }
  cr_buf_free(&b);
}

static void test_encode_max(void **state) {
  (void)state;
  lua_State *L = new_state();
  max_case(L, "return {a = 1}", 7, 0, "{\"a\":1}");
  max_case(L, "return {a = 1}", 6, CR_ETOOBIG, "cannot encode: the text is over the limit of 6 bytes");
  max_case(L, "return {1, 2, 3}", 7, 0, "[1,2,3]");
  char msg[100];
  /* Every cut: in a number, at a comma, in a string, in an escape, a key. */
  static const struct { const char *chunk, *text; } cases[] = {
      {"return {1, 22, 333}", "[1,22,333]"},
      {"return {'ab\\1c', true, false, json.null, json.empty_array}", "[\"ab\\u0001c\",true,false,null,[]]"},
      {"return {k = {['q\"'] = 'x'}}", "{\"k\":{\"q\\\"\":\"x\"}}"},
      {"return {[1.5] = 2}", "{\"1.5\":2}"},
      {"return 'plain'", "\"plain\""},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    size_t n = strlen(cases[c].text);
    max_case(L, cases[c].chunk, n, 0, cases[c].text);
    max_case(L, cases[c].chunk, n + 100, 0, cases[c].text);
    for (size_t m = 0; m < n; m++) {
      snprintf(msg, sizeof msg, "cannot encode: the text is over the limit of %zu bytes", m);
      max_case(L, cases[c].chunk, m, CR_ETOOBIG, msg);
    }
  }
  /* The Lua side: an optional second argument. */
  push_value(L, "return json.encode({1, 2}, 5) == '[1,2]' and json.safe.encode({1, 2}, 5) == '[1,2]'");
  assert_true(lua_toboolean(L, -1));
  lua_pop(L, 1);
  push_value(L, "local ok, err = pcall(json.encode, {1, 2}, 4) return ok or err");
  assert_string_equal(lua_tostring(L, -1), "cannot encode: the text is over the limit of 4 bytes");
  lua_pop(L, 1);
  push_value(L, "local v, err = json.safe.encode({1, 2}, 4) return v == nil and err");
  assert_string_equal(lua_tostring(L, -1), "cannot encode: the text is over the limit of 4 bytes");
  lua_pop(L, 1);
  push_value(L, "return json.encode('x', nil) .. json.safe.encode('y')");
  assert_string_equal(lua_tostring(L, -1), "\"x\"\"y\"");
  lua_pop(L, 1);
  push_value(L, "local a, e1 = pcall(json.encode, 1, -1) local b, e2 = pcall(json.safe.encode, 1, 'big') "
                "local c, e3 = pcall(json.encode, 1, 0/0) return not a and not b and not c and e1 .. '|' .. e2 .. '|' .. e3");
  assert_non_null(strstr(lua_tostring(L, -1), "bad argument #2 to '?' (max must be a number of bytes >= 0)|"));
  lua_pop(L, 1);
  lua_close(L);
}

/* --- cr_json_decode ----------------------------------------------------------------------------- */

static char dec_err[256];

/* Decodes text (len bytes), checking the stack grows by one on success and
 * is left alone on failure. */
static int decode(lua_State *L, const char *text, size_t len) {
  int top = lua_gettop(L);
  dec_err[0] = '\0';
  int rc = cr_json_decode(L, text, len, dec_err, sizeof dec_err);
  assert_int_equal(lua_gettop(L), rc ? top : top + 1);
  if (rc) assert_true(dec_err[0] != '\0');
  return rc;
}

/* Decodes text and encodes the value back: the canonical form must be want. */
static void roundtrips(lua_State *L, const char *text, const char *want) {
  if (decode(L, text, strlen(text))) fail_msg("decoding failed (%s): %s", dec_err, text);
  cr_buf_t b = CR_BUF_INIT;
  char err[160];
  if (cr_json_encode(L, -1, &b, err, sizeof err)) fail_msg("re-encoding %s failed: %s", text, err);
  lua_pop(L, 1);
  if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0)
    fail_msg("%s\n  gave %.*s\n  want %s", text, (int)b.len, b.data, want);
  cr_buf_free(&b);
}

static void rejects(lua_State *L, const char *text, size_t len, const char *needle) {
  if (decode(L, text, len) == 0) fail_msg("decoding should fail: %.*s", (int)len, text);
  if (!strstr(dec_err, needle)) fail_msg("%.*s: error '%s' lacks '%s'", (int)len, text, dec_err, needle);
}

static void test_decode_values(void **state) {
  (void)state;
  lua_State *L = new_state();
  roundtrips(L, "{\"a\":1}", "{\"a\":1}");
  roundtrips(L, " \t\r\n[1, 2 ,3]\n", "[1,2,3]");
  roundtrips(L, "\"x\"", "\"x\"");
  roundtrips(L, "true", "true");
  roundtrips(L, "false", "false");
  roundtrips(L, "null", "null");
  roundtrips(L, "{}", "{}");
  roundtrips(L, "[]", "[]"); /* empty arrays stay arrays */
  roundtrips(L, "[[ ],{ },{\"list\":[]}]", "[[],{},{\"list\":[]}]");
  roundtrips(L, "[null,1]", "[null,1]");
  roundtrips(L, "[[[[\"deep\"]]]]", "[[[[\"deep\"]]]]");
  roundtrips(L, "{\"a\":{\"b\":[true,false,null,{\"c\":\"d\"}]}}", "{\"a\":{\"b\":[true,false,null,{\"c\":\"d\"}]}}");
  /* Duplicate keys: the last one wins. */
  roundtrips(L, "{\"k\":1,\"k\":2}", "{\"k\":2}");
  /* Escapes, \u with surrogate pairs, UTF-8 passed through. */
  roundtrips(L, "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\"");
  roundtrips(L, "\"\\u00e9\\u20AC\\ud83d\\ude00\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  roundtrips(L, "\"\xc3\xa9 raw\"", "\"\xc3\xa9 raw\"");
  assert_int_equal(decode(L, "\"a\\u0000b\"", 10), 0);
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  assert_int_equal(n, 3);
  assert_memory_equal(s, "a\0b", 3);
  lua_pop(L, 1);
  /* Numbers. */
  roundtrips(L, "[0,-0,1e2,1E+2,98.6,9.99,0.1,-1.5e-7,2.5E-3,100e-2]", "[0,-0,100,100,98.6,9.99,0.1,-1.5e-07,0.0025,1]");
  roundtrips(L, "[9007199254740993,123456789012345678901234567890]", "[9007199254740992,1.2345678901234568e+29]");
  roundtrips(L, "[0.30000000000000004,5e-324,2.2250738585072014e-308,1.7976931348623157e308]",
             "[0.30000000000000004,5e-324,2.2250738585072014e-308,1.7976931348623157e+308]");
  roundtrips(L, "0.000000000000000000000000000001", "1e-30");
  lua_close(L);
}

/* Numbers past the largest double are refused (infinity has no JSON text,
 * it could not be encoded back); below the smallest they read as 0 / -0,
 * the nearest double. */
static void test_decode_number_range(void **state) {
  (void)state;
  lua_State *L = new_state();
  static const struct { const char *text, *err; } bad[] = {
      {"1e400", "number out of range at character 1 ('1')"},
      {"-1e400", "number out of range at character 1 ('-')"},
      {"[0, 1.8e308]", "number out of range at character 5 ('1')"},
      {"{\"a\": -2E+999999999999999999999}", "number out of range at character 7 ('-')"},
      {"[1797693134862315807937289714053034150799341327710961186899936190489213443584000000000000"
       "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
       "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
       "0000000000000000000000000000000000000000000000000000000000000000000000000000000]",
       "number out of range at character 2 ('1')"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_not_equal(decode(L, bad[i].text, strlen(bad[i].text)), 0);
    assert_string_equal(dec_err, bad[i].err);
  }
  /* The largest double and what rounds to it still read. */
  roundtrips(L, "[1.7976931348623157e308,-1.7976931348623158e308]", "[1.7976931348623157e+308,-1.7976931348623157e+308]");
  /* Underflow: 0, keeping the sign. */
  roundtrips(L, "[1e-400,-1e-400,0e999999999,-0.0e-5]", "[0,-0,0,-0]");
  /* The Lua side says the same. */
  push_value(L, "local ok, err = pcall(json.decode, '[1e400]') local v, err2 = json.safe.decode('-1e400') "
                "return err .. '|' .. err2");
  assert_non_null(strstr(lua_tostring(L, -1), "invalid JSON: number out of range at character 2 ('1')|"
                                               "invalid JSON: number out of range at character 1 ('-')"));
  lua_pop(L, 1);
  lua_close(L);
}

static const char half_min_digits[] = /* 2^-1075, halfway between 0 and the least double */
    "247032822920623272088284396434110686182529901307162382212792841250337753635104375932649918"
    "180817996189898282347722858865463328355177969898199387398005390939063150356595155702263922"
    "908583924491051844359318028499365361525003193704576782492193656236698636584807570015857692"
    "699037063119282795585513329278343384093519780155312465972635795746227664652728272200563740"
    "064854999770965994704540208281662262378573934507363390079677619305775067401763246736009689"
    "513405355374585166611342237666786041621596804619144672918403005300575308490487653917113865"
    "916462395249126236538818796362393732804238910186723484976682350898633885879256283027559956"
    "575244555072551893136908362547791869486679949683240497058210285131854513962138377228261454"
    "37693412532098591327667236328125";

/* Number texts too long for a small buffer (hundreds or thousands of
 * digits) read as strtod reads the whole text, rounding included, without
 * a buffer the size of the text. */
static void test_decode_long_numbers(void **state) {
  (void)state;
  lua_State *L = new_state();
  static char text[8192];
  const char *d = half_min_digits;
  /* 2^-1075 exactly: a tie, to even (0); a hair above it: 5e-324, whether
   * the hair is right after the digits or 3000 zeros later. */
  const char *tails[] = {"", "1", "0000000000000000000000000001", NULL};
  for (int t = 0; t < 4; t++) {
    int n = snprintf(text, sizeof text, "%c.%s", d[0], d + 1);
    if (t < 3) n += snprintf(text + n, sizeof text - (size_t)n, "%s", tails[t]);
    else {
      for (int z = 0; z < 3000; z++) text[n++] = '0';
      text[n++] = '7';
    }
    n += snprintf(text + n, sizeof text - (size_t)n, "e-324");
    assert_int_equal(decode(L, text, (size_t)n), 0);
    double want = strtod(text, NULL);
    assert_true(lua_tonumber(L, -1) == want);
    assert_true(t == 0 ? want == 0 : want == 5e-324);
    lua_pop(L, 1);
  }
  /* Random long texts, every shape: integer digits, fraction, leading
   * zeros, exponents, signs. */
  srand(7);
  for (int i = 0; i < 3000; i++) {
    int n = 0;
    if (rand() % 2) text[n++] = '-';
    int lead = rand() % 3 == 0;
    if (lead) text[n++] = '0';
    else {
      text[n++] = (char)('1' + rand() % 9);
      int k = rand() % 1200;
      for (int j = 0; j < k; j++) text[n++] = (char)('0' + (rand() % 5 ? rand() % 10 : 0));
    }
    if (lead || rand() % 2) {
      text[n++] = '.';
      int z = lead ? rand() % 400 : 0, k = 1 + rand() % 1200;
      for (int j = 0; j < z; j++) text[n++] = '0';
      for (int j = 0; j < k; j++) text[n++] = (char)('0' + rand() % 10);
    }
    if (rand() % 2) n += snprintf(text + n, sizeof text - (size_t)n, "e%d", rand() % 1400 - 900);
    text[n] = '\0';
    double want = strtod(text, NULL);
    int rc = decode(L, text, (size_t)n);
    if (isinf(want)) {
      assert_int_not_equal(rc, 0);
      continue;
    }
    if (rc) fail_msg("%s: %s", dec_err, text);
    double got = lua_tonumber(L, -1);
    if (memcmp(&got, &want, sizeof got) != 0) fail_msg("%.17g != strtod's %.17g for %s", got, want, text);
    lua_pop(L, 1);
  }
  lua_close(L);
}

/* The fast number path must agree with strtod bit for bit. */
static void test_decode_numbers_match_strtod(void **state) {
  (void)state;
  lua_State *L = new_state();
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  char text[64];
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    switch (i % 4) {
    case 0: /* short decimals, the everyday kind */
      snprintf(text, sizeof text, "%s%llu.%0*llu", (x >> 63) ? "-" : "", (unsigned long long)(x % 100000),
               (int)(1 + (x >> 20) % 8), (unsigned long long)((x >> 24) % 100000000));
      break;
    case 1: /* mantissa and exponent around the fast path's edges */
      snprintf(text, sizeof text, "%llue%d", (unsigned long long)(x % 10000000000000000ULL), (int)((x >> 40) % 60) - 30);
      break;
    case 2: { /* any double, shortest-ish and full precision */
      double v;
      memcpy(&v, &x, sizeof v);
      if (isnan(v) || isinf(v)) continue;
      snprintf(text, sizeof text, (x & 1) ? "%.17g" : "%.15g", v);
      break;
    }
    default: /* integers up to and past 2^53 */
      snprintf(text, sizeof text, "%llu", (unsigned long long)(x >> (x % 40)));
    }
    if (decode(L, text, strlen(text))) fail_msg("%s: %s", text, dec_err);
    double got = lua_tonumber(L, -1), want = strtod(text, NULL);
    lua_pop(L, 1);
    if (memcmp(&got, &want, sizeof got) != 0) fail_msg("%s: decoded %.17g, strtod %.17g", text, got, want);
  }
  lua_close(L);
}

static void test_decode_rejects(void **state) {
  (void)state;
  lua_State *L = new_state();
  rejects(L, "", 0, "end of input");
  rejects(L, "  ", 2, "end of input");
  rejects(L, "{", 1, "end of input");
  rejects(L, "[1,]", 4, "expected a value at character 4");
  rejects(L, "[1 2]", 5, "expected ',' or ']' at character 4");
  rejects(L, "{\"a\"}", 5, "expected ':'");
  rejects(L, "{\"a\":}", 6, "expected a value");
  rejects(L, "{\"a\":1,}", 8, "expected a string key");
  rejects(L, "{a:1}", 5, "expected a string key at character 2");
  rejects(L, "01", 2, "unexpected text after the value at character 2");
  rejects(L, "1.", 2, "invalid number");
  rejects(L, "1.e5", 4, "invalid number");
  rejects(L, "1e", 2, "invalid number");
  rejects(L, ".5", 2, "expected a value");
  rejects(L, "-", 1, "invalid number");
  rejects(L, "+1", 2, "expected a value");
  rejects(L, "tru", 3, "invalid value");
  rejects(L, "nul", 3, "invalid value");
  rejects(L, "NaN", 3, "expected a value");
  rejects(L, "Infinity", 8, "expected a value");
  rejects(L, "\"abc", 4, "unterminated string");
  rejects(L, "\"a\\", 3, "unterminated string");
  rejects(L, "\"\\x\"", 4, "invalid escape");
  rejects(L, "\"\\u12\"", 6, "invalid \\u escape");
  rejects(L, "\"\\ud800\"", 8, "lone high surrogate");
  rejects(L, "\"\\ud800\\u0041\"", 14, "lone high surrogate");
  rejects(L, "\"\\udc00\"", 8, "lone low surrogate");
  rejects(L, "\"a\tb\"", 5, "control character in string at character 3");
  rejects(L, "\"a\nb\"", 5, "control character");
  rejects(L, "[1]x", 4, "unexpected text after the value at character 4 ('x')");
  rejects(L, "[1]\x01", 4, "byte 0x01");
  rejects(L, "{\"a\":1}}", 8, "unexpected text");
  rejects(L, "[\"a\\u00\"]", 9, "invalid \\u escape");
  lua_close(L);
}

static void test_decode_depth_and_size(void **state) {
  (void)state;
  lua_State *L = new_state();
  cr_buf_t b = CR_BUF_INIT;
  /* 1000 levels decode, 1001 do not. */
  for (int i = 0; i < 1000; i++) cr_buf_putc(&b, '[');
  for (int i = 0; i < 1000; i++) cr_buf_putc(&b, ']');
  assert_int_equal(decode(L, b.data, b.len), 0);
  lua_pop(L, 1);
  b.len = 0;
  for (int i = 0; i < 1001; i++) cr_buf_append(&b, "{\"a\":", 5);
  assert_int_not_equal(decode(L, b.data, b.len), 0);
  assert_non_null(strstr(dec_err, "nesting deeper than 1000"));
  /* Wide levels under deep ones: members are moved into their tables when
   * the stack runs short, in order. */
  b.len = 0;
  for (int level = 0; level < 300; level++) {
    cr_buf_putc(&b, '[');
    for (int i = 1; i <= 40; i++) cr_buf_printf(&b, "%d,", i);
  }
  cr_buf_putc(&b, '0');
  for (int level = 0; level < 300; level++) cr_buf_putc(&b, ']');
  assert_int_equal(decode(L, b.data, b.len), 0);
  for (int level = 0; level < 300; level++) {
    assert_int_equal(lua_objlen(L, -1), 41);
    for (int i = 1; i <= 40; i++) {
      lua_rawgeti(L, -1, i);
      assert_int_equal(lua_tointeger(L, -1), i);
      lua_pop(L, 1);
    }
    lua_rawgeti(L, -1, 41);
    lua_replace(L, -2);
  }
  assert_int_equal(lua_tointeger(L, -1), 0);
  lua_pop(L, 1);
  /* A big array and a big object keep order and the last duplicate. */
  b.len = 0;
  cr_buf_putc(&b, '[');
  for (int i = 1; i <= 100000; i++) cr_buf_printf(&b, i > 1 ? ",%d" : "%d", i);
  cr_buf_putc(&b, ']');
  assert_int_equal(decode(L, b.data, b.len), 0);
  assert_int_equal(lua_objlen(L, -1), 100000);
  for (int i = 1; i <= 100000; i += 997) {
    lua_rawgeti(L, -1, i);
    assert_int_equal(lua_tointeger(L, -1), i);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  b.len = 0;
  cr_buf_putc(&b, '{');
  for (int i = 0; i < 5000; i++) cr_buf_printf(&b, "\"k%d\":%d,", i, i);
  cr_buf_append_str(&b, "\"k3\":\"last\"}");
  assert_int_equal(decode(L, b.data, b.len), 0);
  lua_getfield(L, -1, "k4999");
  assert_int_equal(lua_tointeger(L, -1), 4999);
  lua_getfield(L, -2, "k3");
  assert_string_equal(lua_tostring(L, -1), "last");
  lua_pop(L, 3);
  cr_buf_free(&b);
  assert_int_equal(lua_gettop(L), 0);
  lua_close(L);
}

/* Random documents decode to the same values as with lua-cjson's decoder
 * (which crescent links; its decode is what json.decode used to be). */
static void test_decode_matches_cjson(void **state) {
  (void)state;
  lua_State *L = new_state();
  lua_pushcfunction(L, luaopen_cjson);
  lua_call(L, 0, 1);
  lua_setglobal(L, "cjson");
  push_value(L,
             "local seed = 12345\n"
             "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end\n"
             "local pieces = {'a', 'Z', ' ', '\\\\\"', '\\\\\\\\', '\\\\/', '\\\\n', '\\\\t', '\\\\u00e9', '\\\\u0000',\n"
             "  '\\\\ud83d\\\\ude00', '\\\\uFFFF', '\\195\\169', 'long text with spaces', '\\\\b\\\\f\\\\r'}\n"
             "local numbers = {'0', '-0', '1', '-17', '98.6', '9.99', '0.1', '1e10', '1E-5', '-2.5e+3',\n"
             "  '123456789012345678', '3.141592653589793', '5e-324', '1.7976931348623157e308', '0.000123'}\n"
             "local function str() local t = {'\"'} for i = 1, rnd(6) do t[#t + 1] = pieces[rnd(#pieces) + 1] end\n"
             "  t[#t + 1] = '\"' return table.concat(t) end\n"
             "local gen\n"
             "gen = function(depth)\n"
             "  local k = rnd(depth > 4 and 5 or 7)\n"
             "  if k == 0 then return numbers[rnd(#numbers) + 1] elseif k == 1 then return str()\n"
             "  elseif k == 2 then return ({'true', 'false', 'null'})[rnd(3) + 1]\n"
             "  elseif k == 3 then return numbers[rnd(#numbers) + 1] .. ' '\n"
             "  elseif k == 4 then return ' ' .. str()\n"
             "  elseif k == 5 then local t = {} for i = 1, rnd(6) do t[i] = gen(depth + 1) end\n"
             "    return '[' .. table.concat(t, ',') .. ']'\n"
             "  else local t = {} for i = 1, rnd(6) do t[i] = str() .. ':' .. gen(depth + 1) end\n"
             "    return '{ ' .. table.concat(t, ' , ') .. '}' end\n"
             "end\n"
             "local function same(a, b)\n"
             "  if type(a) ~= type(b) then return false end\n"
             "  if type(a) ~= 'table' then return a == b end\n"
             "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
             "  for k in pairs(b) do if a[k] == nil then return false end end\n"
             "  return true\n"
             "end\n"
             "for i = 1, 3000 do\n"
             "  local text = gen(0)\n"
             "  local want = cjson.decode(text)\n"
             "  local got = json.decode(text)\n"
             "  if not same(got, want) then return text end\n"
             "end\n"
             "return 'same'");
  if (strcmp(lua_tostring(L, -1), "same") != 0) fail_msg("decoders differ on %s", lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_close(L);
}

/* json.decode raises, json.safe.decode answers nil and the reason. */
static void test_decode_lua_api(void **state) {
  (void)state;
  lua_State *L = new_state();
  push_value(L, "local ok, err = pcall(json.decode, '{\"a\":') return not ok and err");
  assert_non_null(strstr(lua_tostring(L, -1), "invalid JSON: unexpected end of input"));
  lua_pop(L, 1);
  push_value(L, "local v, err = json.safe.decode('[1,]') return v == nil and err");
  assert_non_null(strstr(lua_tostring(L, -1), "invalid JSON: expected a value at character 4"));
  lua_pop(L, 1);
  push_value(L, "local v, err = json.safe.decode(nil) return v == nil and err");
  assert_non_null(strstr(lua_tostring(L, -1), "expected a string"));
  lua_pop(L, 1);
  push_value(L, "local t = json.decode('{\"a\":null,\"b\":[]}') "
                "return t.a == json.null and getmetatable(t.b) == json.array_mt and json.encode(t.b) == '[]'");
  assert_true(lua_toboolean(L, -1));
  lua_pop(L, 1);
  lua_close(L);
}

/* In a sandboxed vm, json is a global and require("json") / "cjson". */
static void test_in_vm(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  assert_non_null(vm);
  lua_State *L = vm->L;
  push_value(L, "return json.encode({a = {json.null, json.empty_array, setmetatable({}, json.array_mt)}})");
  assert_string_equal(lua_tostring(L, -1), "{\"a\":[null,[],[]]}");
  lua_pop(L, 1);
  push_value(L, "return require('json') == json and require('cjson') == json and require('cjson.safe') == json.safe");
  assert_true(lua_toboolean(L, -1));
  lua_pop(L, 1);
  cr_vm_free(vm);
}

/* --- limits: memory, time, what user code can see ---------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define MALLOC_COUNTED 0 /* ASan's allocator: mallinfo2 says nothing */
#else
#define MALLOC_COUNTED 1
#endif

/* Bytes malloc has handed out (heap and mmap'd), outside any Lua state's meter. */
static size_t malloc_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

/* A vm under a function's limit, as during an invocation. */
static cr_vm_t *limited_vm(size_t mb) {
  cr_vm_t *vm = cr_vm_new(NULL);
  assert_non_null(vm);
  cr_vm_bind(vm, "t", NULL, mb << 20);
  vm->mem_strict = 1;
  return vm;
}

/* Item 4: pcall(json.encode, string.rep("\1", 12 * 2^20)) under memory = 64
 * kept ~72 MB of malloc'd buffer per call (the string push raised a memory
 * error and the buffer was never freed). Now the text is bounded by the
 * memory the state has left, and nothing stays behind. */
static void test_encode_memory_bound(void **state) {
  (void)state;
  cr_vm_t *vm = limited_vm(64);
  lua_State *L = vm->L;
  size_t before = malloc_in_use();
  push_value(L, "local errs = {} for i = 1, 5 do "
                "  local ok, err = pcall(json.encode, string.rep('\\1', 12 * 2^20)) errs[i] = ok and 'ok' or err "
                "end return errs[5]");
  assert_non_null(strstr(lua_tostring(L, -1), "cannot encode: the text would pass the function's memory limit ("));
  lua_pop(L, 1);
  if (MALLOC_COUNTED) assert_true(malloc_in_use() < before + (1u << 20));
  /* The safe variant says the same, and an explicit max under the memory bound wins. */
  push_value(L, "local s = string.rep('\\1', 2^20) local v, e = json.safe.encode(s) local w, e2 = json.safe.encode(s, 1000) "
                "return (v and #v or 'nil') .. '|' .. tostring(e2)");
  assert_string_equal(lua_tostring(L, -1), "6291458|cannot encode: the text is over the limit of 1000 bytes");
  lua_pop(L, 1);
  cr_vm_free(vm);
}

/* The text fits the bound but the string that copies it into the state does
 * not: the memory error comes out of json.encode, and the text's buffer is
 * not kept (it was leaked before). */
static void test_encode_push_fails(void **state) {
  (void)state;
  for (int safe = 0; safe < 2; safe++) {
    cr_vm_t *vm = limited_vm(64);
    lua_State *L = vm->L;
    push_value(L, "local s = string.rep('x', 4 * 2^20) return function() return s end");
    lua_setglobal(L, "get");
    lua_gc(L, LUA_GCCOLLECT, 0);
    size_t before = malloc_in_use();
    for (int i = 0; i < 5; i++) {
      lua_getglobal(L, "json");
      lua_getfield(L, -1, "safe");
      lua_getfield(L, safe ? -1 : -2, "encode");
      lua_getglobal(L, "get");
      lua_call(L, 0, 1);
      lua_gc(L, LUA_GCCOLLECT, 0);
      vm->mem_limit = vm->mem_used + (4u << 20) + 16; /* room for the text, not for its string */
      int rc = lua_pcall(L, 1, 1, 0);
      vm->mem_limit = 64u << 20;
      assert_int_not_equal(rc, 0);
      assert_string_equal(lua_tostring(L, -1), "not enough memory");
      assert_true(vm->mem_exceeded);
      vm->mem_exceeded = 0;
      lua_settop(L, 0);
    }
    if (MALLOC_COUNTED) assert_true(malloc_in_use() < before + (1u << 20));
    /* And the next encode works. */
    push_value(L, "return json.encode({get():sub(1, 3)})");
    assert_string_equal(lua_tostring(L, -1), "[\"xxx\"]");
    cr_vm_free(vm);
  }
}

/* A shared sub-table DAG (t = {t, t} twenty levels over a 1 KB string) is 1 GB
 * of text: it fails at the bound, fast, and builds nothing past it. */
static void test_encode_dag(void **state) {
  (void)state;
  cr_vm_t *vm = limited_vm(64);
  lua_State *L = vm->L;
  size_t before = malloc_in_use();
  uint64_t t0 = cr_clock_ns();
  push_value(L, "local t = string.rep('a', 1024) for i = 1, 20 do t = {t, t} end "
                "local ok, err = pcall(json.encode, t) local ok2, err2 = pcall(json.encode, t, 6 * 2^20) "
                "return err .. '|' .. err2");
  /* Not a speed check (what it builds is checked below): a guard against
   * walking the whole DAG, which takes minutes. */
  assert_true(cr_clock_ns() - t0 < 30000000000ull);
  const char *msg = lua_tostring(L, -1);
  assert_non_null(strstr(msg, "cannot encode: the text would pass the function's memory limit ("));
  assert_non_null(strstr(msg, "|cannot encode: the text is over the limit of 6291456 bytes"));
  lua_pop(L, 1);
  if (MALLOC_COUNTED) assert_true(malloc_in_use() < before + (1u << 20));
  /* cr_json_encode_max into a caller's buffer: stops within the limit. */
  push_value(L, "local t = string.rep('a', 1024) for i = 1, 20 do t = {t, t} end return t");
  cr_buf_t b = CR_BUF_INIT;
  char err[200];
  assert_int_equal(cr_json_encode_max(L, -1, &b, 1u << 20, err, sizeof err), CR_ETOOBIG);
  assert_int_equal(b.len, 0);
  assert_true(b.cap <= (2u << 20));
  assert_string_equal(err, "cannot encode: the text is over the limit of 1048576 bytes");
  cr_buf_free(&b);
  cr_vm_free(vm);
}

/* Walking a table costs its slots: a table emptied after a million stores
 * encodes to "[1]" but takes a millisecond to walk, and an array of 200,000
 * references to it took minutes while the text stayed small. The encoder
 * stops at the invocation's deadline, or after its own time where none is
 * armed. */
static void test_encode_time_bound(void **state) {
  (void)state;
  static const char *hollow = "local t = {} for i = 1, 2^20 do t[i] = i end for i = 2, 2^20 do t[i] = nil end "
                              "local h = {} for i = 1, 2^20 do h['k' .. i] = i end for i = 1, 2^20 do h['k' .. i] = nil end "
                              "h.x = 1 local a = {} for i = 1, 200000 do a[i] = i % 2 == 0 and t or h end return a";
  cr_vm_t *vm = limited_vm(256);
  lua_State *L = vm->L;
  push_value(L, hollow);
  char err[200];
  cr_buf_t b = CR_BUF_INIT;
  vm->deadline_ns = cr_clock_ns() + 200000000ull; /* an invocation with 0.2 s left */
  uint64_t t0 = cr_clock_ns();
  int rc = cr_json_encode_max(L, -1, &b, SIZE_MAX, err, sizeof err);
  uint64_t took = cr_clock_ns() - t0;
  vm->deadline_ns = 0;
  assert_int_equal(rc, CR_ETIMEDOUT);
  assert_int_equal(b.len, 0);
  assert_true(took >= 150000000ull && took < 1000000000ull);
  assert_non_null(strstr(err, "cannot encode: out of time after "));
  /* No deadline (platform code after an invocation): the encoder's own 2 s. */
  t0 = cr_clock_ns();
  rc = cr_json_encode_max(L, -1, &b, SIZE_MAX, err, sizeof err);
  took = cr_clock_ns() - t0;
  assert_int_equal(rc, CR_ETIMEDOUT);
  assert_true(took >= 1900000000ull && took < 3000000000ull);
  /* The same from Lua, under a deadline. */
  lua_setglobal(L, "a");
  vm->deadline_ns = cr_clock_ns() + 100000000ull;
  push_value(L, "local ok, err = pcall(json.encode, a) return err");
  vm->deadline_ns = 0;
  assert_non_null(strstr(lua_tostring(L, -1), "cannot encode: out of time after "));
  lua_pop(L, 1);
  /* Many small tables, honestly: no clock trouble, and the text is exact. */
  push_value(L, "local a = {} for i = 1, 100000 do a[i] = {} end return #json.encode(a)");
  assert_int_equal(lua_tointeger(L, -1), 2 + 100000 * 3 - 1);
  cr_buf_free(&b);
  cr_vm_free(vm);
}

/* The decoder's scratch buffer: a big escaped string whose push fails left
 * it at the string's size (malloc'd, outside the meter) until the next
 * document. Now long strings are unescaped in the state's own memory. */
static void test_decode_memory(void **state) {
  (void)state;
  cr_vm_t *vm = limited_vm(64);
  lua_State *L = vm->L;
  push_value(L, "return '\"' .. string.rep('ab\\\\n', 2^20) .. '\"'");
  lua_setglobal(L, "big");
  lua_gc(L, LUA_GCCOLLECT, 0);
  size_t before = malloc_in_use();
  for (int i = 0; i < 3; i++) {
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "decode");
    lua_getglobal(L, "big");
    lua_gc(L, LUA_GCCOLLECT, 0);
    vm->mem_limit = vm->mem_used + (1u << 20); /* not enough for the 3 MB string */
    int rc = lua_pcall(L, 1, 1, 0);
    vm->mem_limit = 64u << 20;
    assert_int_not_equal(rc, 0);
    vm->mem_exceeded = 0;
    lua_settop(L, 0);
  }
  if (MALLOC_COUNTED) assert_true(malloc_in_use() < before + (256u << 10));
  /* With room it decodes, exactly. */
  push_value(L, "local s = json.decode(big) return #s == 3 * 2^20 and s:sub(1, 4) == 'ab\\na' and s:sub(-3) == 'ab\\n'");
  assert_true(lua_toboolean(L, -1));
  lua_pop(L, 1);
  if (MALLOC_COUNTED) assert_true(malloc_in_use() < before + (256u << 10));
  /* Escapes near the end of a long string, and an unterminated one. */
  push_value(L, "local s = string.rep('x', 70000) .. '\\\\u00e9\\\\\"' return json.decode('\"' .. s .. '\"') == "
                "string.rep('x', 70000) .. '\\195\\169\"' and select(2, json.safe.decode('\"' .. s))");
  assert_string_equal(lua_tostring(L, -1), "invalid JSON: unexpected end of input (unterminated string) at character 70010");
  lua_pop(L, 1);
  cr_vm_free(vm);
}

/* Item 16: nothing user code can print shows an address in the binary. */
static void test_platform_objects_print_names(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  assert_non_null(vm);
  lua_State *L = vm->L;
  push_value(L, "local d = json.decode('[null]') return table.concat({tostring(json.empty_array), tostring(json.null), "
                "tostring(d[1]), tostring(json.array_mt), tostring(json.safe.empty_array), tostring(json.safe.null), "
                "string.format('%s %s', json.empty_array, json.null), tostring(require('cjson').null), "
                "tostring(require('cjson.safe').empty_array)}, ',')");
  assert_string_equal(lua_tostring(L, -1),
                      "json.empty_array,json.null,json.null,json.array_mt,json.empty_array,json.null,"
                      "json.empty_array json.null,json.null,json.empty_array");
  lua_pop(L, 1);
  /* Locked, and the sentinels are not addresses at all. */
  push_value(L, "return getmetatable(json.null) == false and getmetatable(json.empty_array) == false and "
                "getmetatable(json.array_mt) == false and not pcall(setmetatable, json.array_mt, {})");
  assert_true(lua_toboolean(L, -1));
  lua_pop(L, 1);
  lua_getglobal(L, "json");
  lua_getfield(L, -1, "empty_array");
  assert_true((uintptr_t)lua_touserdata(L, -1) < 4096);
  lua_pop(L, 2);
  /* Error messages: no address either. */
  push_value(L, "local _, e1 = pcall(function() return 'x' .. json.null end) "
                "local _, e2 = pcall(function() return json.empty_array.x end) "
                "local _, e3 = pcall(error, json.empty_array) return e1 .. '|' .. e2 .. '|' .. tostring(e3)");
  const char *m = lua_tostring(L, -1);
  assert_null(strstr(m, "0x"));
  assert_non_null(strstr(m, "|json.empty_array"));
  lua_pop(L, 1);
  /* The json table holds what the README documents, nothing of lua-cjson's. */
  push_value(L, "local keys = {} for _, t in ipairs({json, json.safe, require('cjson')}) do "
                "  local ks = {} for k in pairs(t) do ks[#ks + 1] = k end table.sort(ks) keys[#keys + 1] = table.concat(ks, ' ') "
                "end return table.concat(keys, '|')");
  assert_string_equal(lua_tostring(L, -1), "array_mt decode empty_array encode null safe|"
                                           "array_mt decode empty_array encode null|"
                                           "array_mt decode empty_array encode null safe");
  lua_pop(L, 1);
  push_value(L, "return json.new == nil and json.encode_keep_buffer == nil and json.safe.new == nil");
  assert_true(lua_toboolean(L, -1));
  lua_pop(L, 1);
  cr_vm_free(vm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_escape_basic),
      cmocka_unit_test(test_escape_control_and_binary),
      cmocka_unit_test(test_number_integers),
      cmocka_unit_test(test_number_shortest),
      cmocka_unit_test(test_number_shortest_subnormal),
      cmocka_unit_test(test_number_nan_inf),
      cmocka_unit_test(test_encode_scalars),
      cmocka_unit_test(test_encode_tables),
      cmocka_unit_test(test_encode_sparse_arrays),
      cmocka_unit_test(test_encode_array_mt),
      cmocka_unit_test(test_encode_cycles),
      cmocka_unit_test(test_encode_restores_len),
      cmocka_unit_test(test_lua_module),
      cmocka_unit_test(test_encode_max),
      cmocka_unit_test(test_decode_values),
      cmocka_unit_test(test_decode_numbers_match_strtod),
      cmocka_unit_test(test_decode_number_range),
      cmocka_unit_test(test_decode_long_numbers),
      cmocka_unit_test(test_decode_rejects),
      cmocka_unit_test(test_decode_depth_and_size),
      cmocka_unit_test(test_decode_matches_cjson),
      cmocka_unit_test(test_decode_lua_api),
      cmocka_unit_test(test_in_vm),
      cmocka_unit_test(test_encode_memory_bound),
      cmocka_unit_test(test_encode_push_fails),
      cmocka_unit_test(test_encode_dag),
      cmocka_unit_test(test_encode_time_bound),
      cmocka_unit_test(test_decode_memory),
      cmocka_unit_test(test_platform_objects_print_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
