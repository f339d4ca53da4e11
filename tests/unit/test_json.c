/* test_json.c - JSON escaping, numbers and the Lua value encoder (core/json.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "json.h"
#include "vm.h"

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

/* In a sandboxed vm, json is a global and require("json") / "cjson". */
static void test_in_vm(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new();
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
      cmocka_unit_test(test_in_vm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
