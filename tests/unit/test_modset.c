/* test_modset.c - module sets as bytes (core/fn/modset.c), and the two messages
 * that carry them: the validator's result (loader.c) and a new version sent
 * to the workers (registry.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "loader.h"
#include "modset.h"
#include "registry.h"
#include "settings.h"
#include "vm.h"
#include "wire.h"

static void sample(cr_vm_modules_t *m) {
  memset(m, 0, sizeof *m);
  assert_int_equal(cr_vm_modules_add(m, "lib.util", "lib/util.lua", "return {}", 9), 0);
  assert_int_equal(cr_vm_modules_add(m, "_empty", "_empty.lua", "", 0), 0);
  assert_int_equal(cr_vm_modules_add(m, "lib.bin", "lib/bin/init.lua", "a\0b\xff", 4), 0);
}

static void expect_same(const cr_vm_modules_t *got, const cr_vm_modules_t *want) {
  assert_int_equal(got->n, want->n);
  for (int i = 0; i < want->n; i++) {
    assert_string_equal(got->items[i].name, want->items[i].name);
    assert_string_equal(got->items[i].relpath, want->items[i].relpath);
    assert_int_equal(got->items[i].len, want->items[i].len);
    assert_memory_equal(got->items[i].source, want->items[i].source, want->items[i].len);
    assert_int_equal(got->items[i].source[got->items[i].len], '\0');
  }
}

static void test_round_trip(void **state) {
  (void)state;
  cr_vm_modules_t m, back = {0};
  sample(&m);
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_modset_pack(&m, &b), 0);
  assert_int_equal(cr_wire_u32(&b, 0xabcdef), 0); /* what follows the set is the caller's */
  /* The format: count, then name, relpath, source per module. */
  uint32_t count;
  memcpy(&count, b.data, 4);
  assert_int_equal(count, 3);
  assert_int_equal(b.len, 4 + (4 + 8 + 4 + 12 + 4 + 9) + (4 + 6 + 4 + 10 + 4) + (4 + 7 + 4 + 16 + 4 + 4) + 4);
  cr_wire_reader_t r;
  cr_wire_reader(&r, b.data, b.len);
  assert_int_equal(cr_modset_unpack_from(&r, &back), 0);
  expect_same(&back, &m);
  assert_int_equal(cr_wire_get_u32(&r), 0xabcdef);
  assert_ptr_equal(r.p, r.end);
  cr_vm_modules_free(&back);
  cr_vm_modules_free(&m);
  cr_buf_free(&b);
}

static void test_empty_set(void **state) {
  (void)state;
  cr_vm_modules_t none = {0}, back = {0};
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_modset_pack(&none, &b), 0);
  assert_int_equal(cr_modset_pack(NULL, &b), 0); /* NULL is the empty set too */
  assert_int_equal(b.len, 8);
  cr_wire_reader_t r;
  cr_wire_reader(&r, b.data, b.len);
  assert_int_equal(cr_modset_unpack_from(&r, &back), 0);
  assert_int_equal(back.n, 0);
  assert_int_equal(cr_modset_unpack_from(&r, &back), 0);
  assert_int_equal(back.n, 0);
  assert_ptr_equal(r.p, r.end);
  cr_buf_free(&b);
}

/* Every proper prefix is refused, leaves the set empty, and reads nothing
 * past the prefix (each one sits in a block of its exact size). */
static void test_truncated_refused(void **state) {
  (void)state;
  cr_vm_modules_t m;
  sample(&m);
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_modset_pack(&m, &b), 0);
  for (size_t cut = 0; cut < b.len; cut++) {
    char *data = malloc(cut ? cut : 1);
    assert_non_null(data);
    memcpy(data, b.data, cut);
    cr_wire_reader_t r;
    cr_wire_reader(&r, data, cut);
    cr_vm_modules_t back = {0};
    int rc = cr_modset_unpack_from(&r, &back);
    if (rc != CR_EINVAL) fail_msg("cut at %zu of %zu: rc %d, want CR_EINVAL", cut, b.len, rc);
    assert_int_equal(r.bad, 1);
    assert_int_equal(back.n, 0);
    assert_null(back.items);
    assert_true(r.p <= r.end);
    free(data);
  }
  cr_vm_modules_free(&m);
  cr_buf_free(&b);
}

static void test_malformed_refused(void **state) {
  (void)state;
  cr_vm_modules_t back = {0};
  cr_wire_reader_t r;
  /* A count past CR_MODSET_MAX is not believed (nor read on). */
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_wire_u32(&b, CR_MODSET_MAX + 1), 0);
  for (int i = 0; i < 3; i++) assert_int_equal(cr_wire_str(&b, "x"), 0);
  cr_wire_reader(&r, b.data, b.len);
  assert_int_equal(cr_modset_unpack_from(&r, &back), CR_EINVAL);
  assert_int_equal(back.n, 0);
  /* A NULL in place of any of the three strings. */
  for (int k = 0; k < 3; k++) {
    b.len = 0;
    assert_int_equal(cr_wire_u32(&b, 2), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(cr_wire_str(&b, "ok"), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(cr_wire_str(&b, i == k ? NULL : "x"), 0);
    cr_wire_reader(&r, b.data, b.len);
    if (cr_modset_unpack_from(&r, &back) != CR_EINVAL) fail_msg("a NULL field %d was taken", k);
    assert_int_equal(back.n, 0); /* the first, good module is not kept */
    assert_null(back.items);
  }
  cr_buf_free(&b);
}

/* The master's message to the workers carries the set: a worker's registry
 * gets the same modules (and the same version hash) as the master's. */
static void test_publish_message(void **state) {
  (void)state;
  cr_registry_t *master = cr_registry_new("/nonexistent"), *worker = cr_registry_new("/nonexistent");
  cr_fn_t *fn = cr_registry_add(master, "uses.lua");
  assert_non_null(fn);
  cr_vm_modules_t m;
  sample(&m);
  cr_settings_t s;
  cr_settings_defaults(&s);
  const char *src = "return require('lib.util')";
  cr_buf_t msg = CR_BUF_INIT;
  assert_int_equal(cr_registry_op_publish(&msg, fn, src, strlen(src), &s, &m), 0);
  int op;
  cr_fn_t *got;
  assert_int_equal(cr_registry_apply(master, msg.data, msg.len, &op, &got), 0);
  assert_int_equal(op, CR_OP_PUBLISH);
  assert_ptr_equal(got, fn);
  assert_int_equal(cr_registry_apply(worker, msg.data, msg.len, &op, &got), 0);
  assert_non_null(got->current);
  expect_same(&got->current->modules, &m);
  expect_same(&fn->current->modules, &m);
  assert_string_equal(got->current->hash, fn->current->hash);
  char want[13];
  cr_registry_version_hash(src, strlen(src), &m, want);
  assert_string_equal(got->current->hash, want);
  /* The same message cut short is refused, and changes nothing. */
  cr_fnver_t *before = got->current;
  for (size_t cut = msg.len - 1; cut > msg.len - 40; cut--) {
    if (cr_registry_apply(worker, msg.data, cut, &op, &got) != CR_EINVAL)
      fail_msg("a publish cut at %zu was taken", cut);
    assert_ptr_equal(got->current, before);
  }
  cr_buf_free(&msg);
  cr_vm_modules_free(&m);
  cr_registry_free(master);
  cr_registry_free(worker);
}

/* The validator's result carries the set: a function requiring modules gets
 * them back in the master, sources as they were read. */
static void test_validator_result(void **state) {
  (void)state;
  char root[] = "/tmp/cr-modset-XXXXXX";
  assert_non_null(mkdtemp(root));
  char path[256];
  snprintf(path, sizeof path, "%s/lib", root);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/lib/util.lua", root);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("return { x = 1 }\n", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/_helper.lua", root);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs("return 2\n", f);
  fclose(f);
  cr_load_t l;
  memset(&l, 0, sizeof l);
  l.relpath = "uses.lua";
  l.source =
      "local u = require 'lib.util'\nlocal h = require '_helper'\nreturn function() return u.x + h end\n";
  l.len = strlen(l.source);
  assert_int_equal(cr_loader_run(root, &l, 1, 10.0), 0);
  if (!l.ok) fail_msg("not loaded: %s", l.error ? l.error : "?");
  assert_int_equal(l.modules.n, 2);
  assert_string_equal(l.modules.items[0].name, "lib.util");
  assert_string_equal(l.modules.items[0].relpath, "lib/util.lua");
  assert_string_equal(l.modules.items[0].source, "return { x = 1 }\n");
  assert_string_equal(l.modules.items[1].name, "_helper");
  assert_string_equal(l.modules.items[1].relpath, "_helper.lua");
  assert_string_equal(l.modules.items[1].source, "return 2\n");
  cr_load_clear(&l);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),        cmocka_unit_test(test_empty_set),
      cmocka_unit_test(test_truncated_refused), cmocka_unit_test(test_malformed_refused),
      cmocka_unit_test(test_publish_message),   cmocka_unit_test(test_validator_result),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
