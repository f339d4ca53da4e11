/* test_jsonread.c - the bounded JSON reader (core/base/jsonread.c): the tree
 * it builds, exact decoded strings and numbers, and every refusal with its
 * message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jsonread.h"

static cr_jr_doc_t *parse_ok(const char *s, size_t n) {
  char err[128];
  cr_jr_doc_t *d = cr_jr_parse(s, n, err, sizeof err);
  if (!d) fail_msg("'%.*s' was refused: %s", (int)n, s, err);
  return d;
}

/* s must be refused with exactly want. */
static void refused_n(const char *s, size_t n, const char *want) {
  char err[128] = "unset";
  cr_jr_doc_t *d = cr_jr_parse(s, n, err, sizeof err);
  if (d) {
    cr_jr_free(d);
    fail_msg("'%.*s' was accepted, want '%s'", (int)n, s, want);
  }
  if (strcmp(err, want) != 0) fail_msg("'%.*s': error '%s', want '%s'", (int)n, s, err, want);
}

static void refused(const char *s, const char *want) { refused_n(s, strlen(s), want); }

/* s is one string whose decoded bytes are exactly want (wn bytes). */
static void string_is(const char *s, const char *want, size_t wn) {
  cr_jr_doc_t *d = parse_ok(s, strlen(s));
  const cr_jr_val_t *v = cr_jr_root(d);
  assert_int_equal(v->type, CR_JR_STRING);
  assert_int_equal(v->len, wn);
  assert_memory_equal(v->str, want, wn);
  assert_int_equal(v->str[wn], '\0');
  cr_jr_free(d);
}

static double number_of(const char *s) {
  cr_jr_doc_t *d = parse_ok(s, strlen(s));
  const cr_jr_val_t *v = cr_jr_root(d);
  assert_int_equal(v->type, CR_JR_NUMBER);
  double x = v->num;
  cr_jr_free(d);
  return x;
}

static void test_scalars(void **state) {
  (void)state;
  static const struct {
    const char *text;
    cr_jr_type_t type;
  } cases[] = {{"null", CR_JR_NULL}, {"true", CR_JR_TRUE}, {" \t\r\nfalse \n", CR_JR_FALSE}, {"\"\"", CR_JR_STRING},
               {"0", CR_JR_NUMBER},  {"[]", CR_JR_ARRAY},   {"{}", CR_JR_OBJECT}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cr_jr_doc_t *d = parse_ok(cases[i].text, strlen(cases[i].text));
    const cr_jr_val_t *v = cr_jr_root(d);
    assert_int_equal(v->type, cases[i].type);
    assert_int_equal(v->len, 0);
    assert_null(v->child);
    assert_null(v->next);
    assert_null(v->key);
    cr_jr_free(d);
  }
}

static void test_numbers(void **state) {
  (void)state;
  assert_true(number_of("0") == 0.0);
  assert_true(number_of("-0") == 0.0 && signbit(number_of("-0")));
  assert_true(number_of("1.5") == 1.5);
  assert_true(number_of("-12.5E-2") == -0.125);
  assert_true(number_of("1e3") == 1000.0);
  assert_true(number_of("1E+3") == 1000.0);
  assert_true(number_of("1700000000") == 1700000000.0);
  assert_true(number_of("9007199254740993") == 9007199254740992.0); /* nearest double */
  assert_true(number_of("1.7976931348623157e308") == 1.7976931348623157e308);
  assert_true(number_of("1e-400") == 0.0); /* underflow reads as 0 */
  /* A text longer than the stack copy (64 bytes) reads the same. */
  char big[200] = "1.";
  memset(big + 2, '0', 150);
  strcpy(big + 152, "1e2");
  assert_true(number_of(big) == 100.0);
  refused("1e400", "at byte 0: number out of range");
  refused("-1e400", "at byte 0: number out of range");
  refused("01", "at byte 1: unexpected text after the value");
  refused("1.", "at byte 2: invalid number");
  refused("1.e5", "at byte 2: invalid number");
  refused(".5", "at byte 0: unexpected character");
  refused("+1", "at byte 0: unexpected character");
  refused("-", "at byte 1: invalid number");
  refused("-a", "at byte 1: invalid number");
  refused("1e", "at byte 2: invalid number");
  refused("1e+", "at byte 3: invalid number");
  refused("NaN", "at byte 0: unexpected character");
  refused("Infinity", "at byte 0: unexpected character");
  refused("-Infinity", "at byte 1: invalid number");
  refused("0x10", "at byte 1: unexpected text after the value");
}

static void test_strings(void **state) {
  (void)state;
  string_is("\"abc\"", "abc", 3);
  string_is("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t", 15);
  string_is("\"\\u0041\\u00e9\\u00E9\"", "A\xC3\xA9\xC3\xA9", 5);
  string_is("\"\\u20AC\"", "\xE2\x82\xAC", 3);
  string_is("\"\\ud83d\\ude00\"", "\xF0\x9F\x98\x80", 4); /* a surrogate pair */
  string_is("\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF", 4); /* U+10FFFF */
  string_is("\"a\\u0000b\"", "a\0b", 3);                 /* NUL inside: len counts it */
  string_is("\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"", "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 9);
  refused("\"abc", "at byte 4: unterminated string");
  refused("\"abc\\", "at byte 4: unterminated string");
  refused("\"a\nb\"", "at byte 2: control character in string");
  refused_n("\"a\0b\"", 5, "at byte 2: control character in string");
  refused("\"\\x\"", "at byte 1: invalid escape");
  refused("\"\\'\"", "at byte 1: invalid escape");
  refused("'a'", "at byte 0: unexpected character");
  refused("\"\\u12G4\"", "at byte 3: invalid \\u escape");
  refused("\"\\u12\"", "at byte 3: truncated \\u escape");
  refused("\"\\u12", "at byte 3: truncated \\u escape");
  refused("\"\\ud83d\"", "at byte 7: high surrogate not followed by a low one");
  refused("\"\\ud83dx\"", "at byte 7: high surrogate not followed by a low one");
  refused("\"\\ud83d\\u0041\"", "at byte 13: high surrogate not followed by a low one");
  refused("\"\\ud83d\\ud83d\"", "at byte 13: high surrogate not followed by a low one");
  refused("\"\\ude00\"", "at byte 7: lone low surrogate in \\u escape");
  /* Invalid UTF-8 in the text: overlong forms, encoded surrogates, past U+10FFFF, truncated, stray continuation. */
  refused("\"\xC0\x80\"", "at byte 1: invalid UTF-8");
  refused("\"\xC1\xBF\"", "at byte 1: invalid UTF-8");
  refused("\"\xE0\x80\x80\"", "at byte 1: invalid UTF-8");
  refused("\"\xED\xA0\x80\"", "at byte 1: invalid UTF-8");
  refused("\"\xF0\x80\x80\x80\"", "at byte 1: invalid UTF-8");
  refused("\"\xF4\x90\x80\x80\"", "at byte 1: invalid UTF-8");
  refused("\"\xF5\x80\x80\x80\"", "at byte 1: invalid UTF-8");
  refused("\"\xE2\x82\"", "at byte 1: invalid UTF-8");
  refused("\"\xE2\x82", "at byte 1: invalid UTF-8");
  refused("\"\x80\"", "at byte 1: invalid UTF-8");
  refused("\"a\xFF\"", "at byte 2: invalid UTF-8");
  refused("\xEF\xBB\xBF\"a\"", "at byte 0: unexpected character"); /* a byte-order mark */
}

static void test_tree(void **state) {
  (void)state;
  const char *s = "{\"a\": [1, \"two\", {\"x\": null}, []], \"b\\u00e9\": true, \"\": {}}";
  cr_jr_doc_t *d = parse_ok(s, strlen(s));
  const cr_jr_val_t *r = cr_jr_root(d);
  assert_int_equal(r->type, CR_JR_OBJECT);
  assert_int_equal(r->len, 3);
  const cr_jr_val_t *a = r->child;
  assert_string_equal(a->key, "a");
  assert_int_equal(a->keylen, 1);
  assert_int_equal(a->type, CR_JR_ARRAY);
  assert_int_equal(a->len, 4);
  const cr_jr_val_t *i0 = a->child, *i1 = i0->next, *i2 = i1->next, *i3 = i2->next;
  assert_null(i0->key);
  assert_true(i0->type == CR_JR_NUMBER && i0->num == 1.0);
  assert_true(cr_jr_streq(i1, "two"));
  assert_false(cr_jr_streq(i1, "tw"));
  assert_false(cr_jr_streq(i0, "1"));
  assert_int_equal(i2->type, CR_JR_OBJECT);
  assert_int_equal(cr_jr_get(i2, "x")->type, CR_JR_NULL);
  assert_true(i3->type == CR_JR_ARRAY && i3->len == 0 && i3->child == NULL);
  assert_null(i3->next);
  const cr_jr_val_t *b = a->next;
  assert_string_equal(b->key, "b\xC3\xA9");
  assert_int_equal(b->type, CR_JR_TRUE);
  assert_ptr_equal(cr_jr_get(r, "b\xC3\xA9"), b);
  const cr_jr_val_t *e = b->next;
  assert_int_equal(e->keylen, 0);
  assert_string_equal(e->key, "");
  assert_ptr_equal(cr_jr_get(r, ""), e);
  assert_null(e->next);
  assert_null(cr_jr_get(r, "c"));
  assert_null(cr_jr_get(r, "b")); /* a prefix is not a match */
  assert_null(cr_jr_get(a, "a")); /* not an object */
  assert_null(cr_jr_get(NULL, "a"));
  cr_jr_free(d);
  cr_jr_free(NULL);
}

static void test_syntax_errors(void **state) {
  (void)state;
  refused("", "at byte 0: unexpected end of text");
  refused("   ", "at byte 3: unexpected end of text");
  refused("[1,]", "at byte 3: unexpected character");
  refused("[1 2]", "at byte 3: expected ',' or ']'");
  refused("[1", "at byte 2: expected ',' or ']'");
  refused("[", "at byte 1: unexpected end of text");
  refused("{\"a\":1,}", "at byte 7: expected a member name");
  refused("{\"a\" 1}", "at byte 5: expected ':'");
  refused("{\"a\":1 \"b\":2}", "at byte 7: expected ',' or '}'");
  refused("{a:1}", "at byte 1: expected a member name");
  refused("{\"a\":}", "at byte 5: unexpected character");
  refused("{\"a\":1", "at byte 6: expected ',' or '}'");
  refused("[1] /* c */", "at byte 4: unexpected text after the value");
  refused("// c\n1", "at byte 0: unexpected character");
  refused("1 2", "at byte 2: unexpected text after the value");
  refused("{}x", "at byte 2: unexpected text after the value");
  refused("tru", "at byte 0: invalid literal");
  refused("True", "at byte 0: unexpected character");
  refused("nulls", "at byte 4: unexpected text after the value");
  refused_n("[1,\0]", 5, "at byte 3: unexpected character");
  refused("[1,\f2]", "at byte 3: unexpected character"); /* form feed is not JSON whitespace */
  /* The error buffer is optional and bounded. */
  assert_null(cr_jr_parse("[", 1, NULL, 0));
  char small[8];
  assert_null(cr_jr_parse("[", 1, small, sizeof small));
  assert_string_equal(small, "at byte");
}

static void test_duplicates(void **state) {
  (void)state;
  refused("{\"a\":1,\"a\":2}", "at byte 12: duplicate member name");
  refused("{\"a\":1,\"\\u0061\":2}", "at byte 17: duplicate member name"); /* equal once unescaped */
  refused("{\"x\":{\"k\":1,\"k\":1}}", "at byte 17: duplicate member name");
  cr_jr_doc_t *d = parse_ok("{\"a\":1,\"A\":2,\"a \":3,\"ab\":{\"a\":4}}", 33);
  assert_int_equal(cr_jr_root(d)->len, 4);
  cr_jr_free(d);
  /* Many members (the sorted check): none repeated, then the first repeated last. */
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_buf_append(&b, "{", 1), 0);
  for (int i = 0; i < 5000; i++) assert_int_equal(cr_buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i), 0);
  size_t open_len = b.len;
  assert_int_equal(cr_buf_append(&b, "}", 1), 0);
  d = parse_ok(b.data, b.len);
  assert_int_equal(cr_jr_root(d)->len, 5000);
  assert_true(cr_jr_get(cr_jr_root(d), "k4999")->num == 4999.0);
  cr_jr_free(d);
  b.len = open_len;
  assert_int_equal(cr_buf_printf(&b, ",\"k0\":1}"), 0);
  char want[64];
  snprintf(want, sizeof want, "at byte %zu: duplicate member name", b.len - 1);
  refused_n(b.data, b.len, want);
  cr_buf_free(&b);
}

static void test_depth(void **state) {
  (void)state;
  char s[200];
  /* 32 nested arrays are read. */
  memset(s, '[', 32);
  memset(s + 32, ']', 32);
  cr_jr_doc_t *d = parse_ok(s, 64);
  const cr_jr_val_t *v = cr_jr_root(d);
  int depth = 0;
  for (; v; v = v->child) depth++;
  assert_int_equal(depth, 32);
  cr_jr_free(d);
  /* The 33rd is refused, at its bracket. */
  memset(s, '[', 33);
  memset(s + 33, ']', 33);
  refused_n(s, 66, "at byte 32: nested deeper than 32");
  /* Objects count the same. */
  size_t n = 0;
  for (int i = 0; i < 33; i++) n += (size_t)snprintf(s + n, sizeof s - n, "{\"a\":");
  s[n++] = '1';
  memset(s + n, '}', 33);
  refused_n(s, n + 33, "at byte 160: nested deeper than 32");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scalars),  cmocka_unit_test(test_numbers),    cmocka_unit_test(test_strings),
      cmocka_unit_test(test_tree),     cmocka_unit_test(test_syntax_errors), cmocka_unit_test(test_duplicates),
      cmocka_unit_test(test_depth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
