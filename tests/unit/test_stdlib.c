/* test_stdlib.c - the stdlib as a per-worker object (stdlib/modules.c): each state reaches the
 * cr_stdlib_t its preload was installed with, so one process can hold several with their own
 * limits. Without Redis and without an invocation (no network here), what can be observed is
 * what the modules decide before a call is sent, and that a call during init raises. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <string.h>

#include "modules.h"
#include "vm.h"

/* Runs chunk in vm; returns the pcall rc, leaving the result (or error) on top. */
static int run(cr_vm_t *vm, const char *chunk) {
  if (luaL_loadstring(vm->L, chunk)) return -1;
  return lua_pcall(vm->L, 0, 1, 0);
}

static cr_vm_t *vm_with(cr_stdlib_t *stdlib) {
  const cr_vm_opts_t opts = {.preload = cr_stdlib_preload, .preload_ud = stdlib};
  cr_vm_t *vm = cr_vm_new(&opts);
  assert_non_null(vm);
  return vm;
}

/* A value of 18 bytes: too large under a 10-byte limit, fine under the default (1 MB), where
 * the put goes on to its Redis call, which raises during init. */
static const char put20[] = "local kv = require 'crescent.kv' return select(2, kv.put('k', string.rep('x', 18)))";

static void test_two_stdlibs_own_limits(void **state) {
  (void)state;
  cr_stdlib_opts_t small = {.prefix = "t:", .kv_max_value = 10, .max_object = 10, .queue_max_body = 10,
                            .stream_maxlen = 10};
  cr_stdlib_t *a = cr_stdlib_new(NULL, &small);
  cr_stdlib_t *b = cr_stdlib_new(NULL, NULL);
  assert_non_null(a);
  assert_non_null(b);
  cr_vm_t *va = vm_with(a), *vb = vm_with(b);
  assert_int_equal(run(va, put20), 0);
  assert_string_equal(lua_tostring(va->L, -1), "value too large");
  assert_int_not_equal(run(vb, put20), 0);
  assert_non_null(strstr(lua_tostring(vb->L, -1), "crescent stdlib calls are only possible inside a handler"));
  /* Every crescent.* module is there, each loaded once per state. */
  assert_int_equal(run(vb, "for _, m in ipairs({'crescent.kv', 'crescent.storage', 'crescent.queue', 'crescent.log'}) do\n"
                           "  if type(require(m)) ~= 'table' or require(m) ~= require(m) then return m end\n"
                           "end\n"
                           "return 'all'"),
                   0);
  assert_string_equal(lua_tostring(vb->L, -1), "all");
  cr_vm_free(va);
  cr_vm_free(vb);
  cr_stdlib_free(a);
  cr_stdlib_free(b);
}

/* The options are copied: changing the caller's struct afterwards changes nothing. */
static void test_opts_copied(void **state) {
  (void)state;
  cr_stdlib_opts_t o = {.prefix = "p:", .kv_max_value = 10, .max_object = 10, .queue_max_body = 10,
                        .stream_maxlen = 10};
  cr_stdlib_t *s = cr_stdlib_new(NULL, &o);
  assert_non_null(s);
  o.kv_max_value = 1u << 20;
  cr_vm_t *vm = vm_with(s);
  assert_int_equal(run(vm, put20), 0);
  assert_string_equal(lua_tostring(vm->L, -1), "value too large");
  cr_vm_free(vm);
  /* Detached (its Redis connection about to go), it is still a stdlib: the same answers. */
  cr_stdlib_detach(s);
  vm = vm_with(s);
  assert_int_equal(run(vm, put20), 0);
  assert_string_equal(lua_tostring(vm->L, -1), "value too large");
  cr_vm_free(vm);
  cr_stdlib_free(s);
}

/* The preload needs its object: without one the boot fails instead of a later crash. */
static void test_preload_without_stdlib(void **state) {
  (void)state;
  const cr_vm_opts_t opts = {.preload = cr_stdlib_preload};
  assert_null(cr_vm_new(&opts));
  cr_stdlib_free(NULL);
  cr_stdlib_detach(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_two_stdlibs_own_limits),
      cmocka_unit_test(test_opts_copied),
      cmocka_unit_test(test_preload_without_stdlib),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
