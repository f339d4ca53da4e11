/* test_loader.c - validating function files in process and in a validator process (core/fn/loader.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "loader.h"
#include "modules.h"
#include "router.h"
#include "settings.h"
#include "vm.h"

static char g_root[256];

static int setup(void **state) {
  (void)state;
  snprintf(g_root, sizeof g_root, "/tmp/cr-loader-XXXXXX");
  return mkdtemp(g_root) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
  return system(cmd) == 0 ? 0 : -1;
}

static void put_file(const char *rel, const char *content) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", g_root, rel);
  char *slash = strrchr(path, '/');
  *slash = '\0';
  mkdir(path, 0755);
  *slash = '/';
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
}

static double now_s(void) { return (double)cr_clock_ns() / 1e9; }

/* --- cr_loader_read_module: what require may read ----------------------------------------------- */

static int read_module(const char *rel, char **src, char *err, size_t n) {
  size_t len = 0;
  *src = NULL;
  err[0] = '\0';
  return cr_loader_read_module(g_root, rel, src, &len, err, n);
}

static void test_read_module(void **state) {
  (void)state;
  char err[700], *src, path[600], target[600];
  put_file("billing.lua", "return { env = { KEY = 'secret' } }");
  put_file("sub/fn.lua", "return 1");
  put_file("lib/util.lua", "return 'util'");
  put_file("_priv.lua", "return 'priv'");
  put_file("sub/_h.lua", "return 'h'");
  put_file("lib/notes.txt", "text");
  /* Modules. */
  assert_int_equal(read_module("lib/util.lua", &src, err, sizeof err), 0);
  assert_string_equal(src, "return 'util'");
  free(src);
  assert_int_equal(read_module("_priv.lua", &src, err, sizeof err), 0);
  free(src);
  assert_int_equal(read_module("sub/_h.lua", &src, err, sizeof err), 0);
  free(src);
  assert_int_equal(read_module("lib/missing.lua", &src, err, sizeof err), CR_ENOENT);
  assert_null(src);
  /* Function files: refused without being opened (a missing one too). */
  static const char *const fns[] = {"billing.lua", "sub/fn.lua", "missing.lua", "Lib/util.lua", "sub/init.lua"};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    assert_int_equal(read_module(fns[i], &src, err, sizeof err), CR_EINVAL);
    assert_null(src);
    assert_non_null(strstr(err, "is a function's file, not a module"));
  }
  assert_int_equal(read_module("lib/notes.txt", &src, err, sizeof err), CR_EINVAL);
  /* Symlinks that lead to a function, out of the folder, or to a FIFO. */
  snprintf(path, sizeof path, "%s/lib/link.lua", g_root);
  assert_int_equal(symlink("../billing.lua", path), 0);
  assert_int_equal(read_module("lib/link.lua", &src, err, sizeof err), CR_EINVAL);
  assert_null(src);
  assert_non_null(strstr(err, "leads to billing.lua, which is not a module file"));
  snprintf(path, sizeof path, "%s/lib/up", g_root);
  assert_int_equal(symlink("..", path), 0);
  assert_int_equal(read_module("lib/up/billing.lua", &src, err, sizeof err), CR_EINVAL);
  assert_int_equal(read_module("lib/up/lib/util.lua", &src, err, sizeof err), 0); /* it is lib/util.lua */
  free(src);
  snprintf(path, sizeof path, "%s/lib/etc.lua", g_root);
  assert_int_equal(symlink("/etc/passwd", path), 0);
  assert_int_equal(read_module("lib/etc.lua", &src, err, sizeof err), CR_EINVAL);
  assert_non_null(strstr(err, "outside the functions folder"));
  assert_null(strstr(err, "passwd"));
  snprintf(path, sizeof path, "%s/lib/txt.lua", g_root);
  assert_int_equal(symlink("notes.txt", path), 0);
  assert_int_equal(read_module("lib/txt.lua", &src, err, sizeof err), CR_EINVAL);
  snprintf(path, sizeof path, "%s/lib/fifo.lua", g_root);
  assert_int_equal(mkfifo(path, 0600), 0);
  long long t0 = (long long)cr_clock_ns();
  assert_int_equal(read_module("lib/fifo.lua", &src, err, sizeof err), CR_EINVAL); /* and does not wait */
  assert_true((long long)cr_clock_ns() - t0 < 1000000000LL);
  assert_non_null(strstr(err, "not a regular file"));
  snprintf(path, sizeof path, "%s/lib/dir.lua", g_root);
  assert_int_equal(mkdir(path, 0755), 0);
  assert_int_equal(read_module("lib/dir.lua", &src, err, sizeof err), CR_EINVAL);
  /* The folder reached through a symlink of its own: still inside. */
  snprintf(target, sizeof target, "%s-alias", g_root);
  assert_int_equal(symlink(g_root, target), 0);
  size_t len;
  assert_int_equal(cr_loader_read_module(target, "lib/util.lua", &src, &len, err, sizeof err), 0);
  free(src);
  assert_int_equal(cr_loader_read_module(target, "lib/link.lua", &src, &len, err, sizeof err), CR_EINVAL);
  unlink(target);
  /* No folder (a platform function): nothing. */
  assert_int_equal(cr_loader_read_module(NULL, "lib/util.lua", &src, &len, err, sizeof err), CR_EINVAL);
}

/* --- cr_loader_read -------------------------------------------------------------------------------- */

static void test_read(void **state) {
  (void)state;
  char err[512] = "";
  char *src = (char *)0x1;
  size_t len = 99;
  assert_int_equal(cr_loader_read(g_root, "missing.lua", &src, &len, err, sizeof err), CR_EIO);
  assert_non_null(strstr(err, "missing.lua"));
  assert_non_null(strstr(err, "cannot open"));
  put_file("dir.lua/x.lua", "");
  assert_int_equal(cr_loader_read(g_root, "dir.lua", &src, &len, err, sizeof err), CR_EIO);
  assert_non_null(strstr(err, "dir.lua"));
  assert_non_null(strstr(err, "regular file"));
  put_file("hello.lua", "return function() return 'hi' end\n");
  assert_int_equal(cr_loader_read(g_root, "hello.lua", &src, &len, err, sizeof err), 0);
  assert_int_equal(len, strlen("return function() return 'hi' end\n"));
  assert_string_equal(src, "return function() return 'hi' end\n");
  free(src);
  put_file("empty.lua", "");
  assert_int_equal(cr_loader_read(g_root, "empty.lua", &src, &len, err, sizeof err), 0);
  assert_int_equal(len, 0);
  assert_non_null(src);
  assert_string_equal(src, "");
  free(src);
  put_file("sub/deep.lua", "x");
  assert_int_equal(cr_loader_read(g_root, "sub/deep.lua", &src, &len, err, sizeof err), 0);
  assert_int_equal(len, 1);
  free(src);
}

/* --- cr_loader_validate ------------------------------------------------------------------------------ */

static int validate(const char *rel, const char *src, cr_settings_t *s, char *err, size_t errlen) {
  err[0] = '\0';
  return cr_loader_validate(g_root, rel, src, strlen(src), 5.0, s, err, errlen);
}

static void test_validate(void **state) {
  (void)state;
  cr_settings_t s;
  char err[1024];
  assert_int_equal(validate("ok.lua", "return { handler = function() end, memory = 64, routes = { 'GET /ok' } }", &s, err, sizeof err), 0);
  assert_int_equal(s.memory, 64);
  assert_int_equal(s.nroutes, 1);
  assert_int_equal(s.routes[0].methods, CR_M_GET);
  cr_settings_free(&s);
  assert_int_equal(validate("bare.lua", "return function() end", &s, err, sizeof err), 0);
  assert_int_equal(s.has_routes, 0);
  cr_settings_free(&s);
  assert_int_equal(validate("api/syntax.lua", "local x =\nreturn function(", &s, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "api/syntax.lua:2:"));
  assert_int_equal(validate("rt.lua", "local t\nt.x = 1\nreturn print", &s, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "rt.lua:2:"));
  assert_int_equal(validate("thrown.lua", "error('init refuses', 0)", &s, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "init refuses"));
  assert_int_equal(validate("set.lua", "return { handler = print, timout = 3 }", &s, err, sizeof err), CR_EINVAL);
  assert_non_null(strstr(err, "set.lua: "));
  assert_non_null(strstr(err, "unknown setting 'timout'"));
  assert_non_null(strstr(err, "did you mean 'timeout'"));
  assert_int_equal(validate("num.lua", "return 5", &s, err, sizeof err), CR_EINVAL);
  assert_non_null(strstr(err, "num.lua"));
  assert_non_null(strstr(err, "handler"));
  /* require() looks beside the function. */
  put_file("lib/helper.lua", "return { answer = 42 }");
  assert_int_equal(validate("uses.lua", "local h = require('lib.helper') assert(h.answer == 42) return print", &s, err, sizeof err), 0);
  cr_settings_free(&s);
  assert_int_equal(validate("missing_mod.lua", "local h = require('lib.nope') return print", &s, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "not found"));
  /* Bytecode is not a function file. */
  assert_int_equal(cr_loader_validate(g_root, "bc.lua", "\x1bLJ\x02\x00", 5, 5.0, &s, err, sizeof err), CR_ELUA);
  assert_string_equal(err, "bc.lua: is Lua bytecode: functions are loaded from source only, bytecode is refused");
  /* Nor is it a module: the error names the file instead of LuaJIT's "wrong mode". */
  put_file("lib/bc.lua", "\x1bLJ\x02\x00");
  assert_int_equal(validate("uses_bc.lua", "local m = require('lib.bc') return print", &s, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "module 'lib.bc' cannot be required: lib/bc.lua is Lua bytecode: modules are loaded "
                              "from source only, bytecode is refused"));
  assert_null(strstr(err, "wrong mode"));
  /* Memory: the default limit (128 MB) holds during init. */
  assert_int_equal(validate("hog.lua", "local t = {} for i = 1, 1e9 do t[i] = i end return print", &s, err, sizeof err), CR_ENOMEM);
  assert_non_null(strstr(err, "hog.lua"));
}

/* --- cr_loader_run ------------------------------------------------------------------------------------ */

static void load_init(cr_load_t *l, const char *rel, const char *src) {
  memset(l, 0x5a, sizeof *l); /* "out" fields start as garbage */
  l->relpath = rel;
  l->source = src;
  l->len = strlen(src);
  l->platform = 0;
}

static void test_run_several(void **state) {
  (void)state;
  cr_load_t loads[5];
  load_init(&loads[0], "good.lua", "return { handler = print, timeout = 3, env = { A = 'b' } }");
  load_init(&loads[1], "bad.lua", "return {");
  load_init(&loads[2], "rt.lua", "local x = nil + 1");
  load_init(&loads[3], "bare.lua", "return function() end");
  load_init(&loads[4], "set.lua", "return { handler = print, warm = 500 }");
  assert_int_equal(cr_loader_run(g_root, loads, 5, 10.0), 0);
  assert_true(loads[0].ok);
  assert_null(loads[0].error);
  assert_true(loads[0].settings.timeout == 3);
  assert_string_equal(cr_settings_env(&loads[0].settings, "A"), "b");
  assert_false(loads[1].ok);
  assert_non_null(loads[1].error);
  assert_non_null(strstr(loads[1].error, "bad.lua:1:"));
  assert_false(loads[2].ok);
  assert_non_null(strstr(loads[2].error, "rt.lua:1:"));
  assert_true(loads[3].ok);
  assert_int_equal(loads[3].settings.memory, CR_DEFAULT_MEMORY);
  assert_false(loads[4].ok);
  assert_non_null(strstr(loads[4].error, "set.lua"));
  assert_non_null(strstr(loads[4].error, "'warm'"));
  for (int i = 0; i < 5; i++) {
    cr_load_clear(&loads[i]);
    assert_null(loads[i].error);
    assert_false(loads[i].ok);
    assert_null(loads[i].settings.routes);
  }
  /* No files: nothing to do. */
  assert_int_equal(cr_loader_run(g_root, loads, 0, 1.0), 0);
}

/* A file stuck inside C (a pathological string.find) costs the validator
 * process; it fails with "did not finish" and the files after it are still
 * validated. */
static void test_run_stuck_in_c(void **state) {
  (void)state;
  cr_load_t loads[5];
  load_init(&loads[0], "first.lua", "return function() end");
  load_init(&loads[1], "stuck.lua",
            "local s = string.rep('a', 40)\n"
            "s:find(string.rep('a?', 40) .. string.rep('a', 40))\n"
            "return function() end");
  load_init(&loads[2], "after.lua", "return { handler = print, memory = 32 }");
  load_init(&loads[3], "after_bad.lua", "return {{");
  load_init(&loads[4], "last.lua", "return function() end");
  alarm(60);
  double t0 = now_s();
  assert_int_equal(cr_loader_run(g_root, loads, 5, 0.5), 0); /* killed after 0.5 + 5 s */
  double dt = now_s() - t0;
  alarm(0);
  assert_true(loads[0].ok);
  assert_false(loads[1].ok);
  assert_non_null(loads[1].error);
  assert_non_null(strstr(loads[1].error, "stuck.lua"));
  assert_non_null(strstr(loads[1].error, "did not finish"));
  assert_true(loads[2].ok);
  assert_int_equal(loads[2].settings.memory, 32);
  assert_false(loads[3].ok);
  assert_non_null(strstr(loads[3].error, "after_bad.lua:1:"));
  assert_true(loads[4].ok);
  assert_true(dt >= 5.4);
  assert_true(dt < 15.0);
  for (int i = 0; i < 5; i++) cr_load_clear(&loads[i]);
}

/* An init looping in Lua is stopped by the validator's own watchdog at
 * init_timeout (no process killed), and the files after it are validated. */
static void test_run_init_loop(void **state) {
  (void)state;
  cr_load_t loads[3];
  load_init(&loads[0], "fine.lua", "return function() end");
  load_init(&loads[1], "loops.lua", "while true do end");
  load_init(&loads[2], "after.lua", "return function() end");
  alarm(60);
  double t0 = now_s();
  assert_int_equal(cr_loader_run(g_root, loads, 3, 0.5), 0);
  double dt = now_s() - t0;
  alarm(0);
  assert_true(dt >= 0.45 && dt < 5.0);
  assert_true(loads[0].ok);
  assert_false(loads[1].ok);
  assert_non_null(strstr(loads[1].error, "loops.lua"));
  assert_non_null(strstr(loads[1].error, "timed out after 0.50 seconds"));
  assert_true(loads[2].ok);
  for (int i = 0; i < 3; i++) cr_load_clear(&loads[i]);
}

/* The stuck-in-C file is the last one: it still gets its error. */
static void test_run_stuck_last(void **state) {
  (void)state;
  cr_load_t loads[2];
  load_init(&loads[0], "fine.lua", "return function() end");
  load_init(&loads[1], "stuck.lua", "local s = string.rep('a', 40) s:find(string.rep('a?', 40) .. string.rep('a', 40))");
  alarm(60);
  assert_int_equal(cr_loader_run(g_root, loads, 2, 0.2), 0);
  alarm(0);
  assert_true(loads[0].ok);
  assert_false(loads[1].ok);
  assert_non_null(strstr(loads[1].error, "stuck.lua"));
  assert_non_null(strstr(loads[1].error, "did not finish"));
  for (int i = 0; i < 2; i++) cr_load_clear(&loads[i]);
}

/* Platform functions may route under /_/, user functions may not. */
static void test_platform_routes(void **state) {
  (void)state;
  const char *src = "return { handler = print, routes = { 'GET /_/status' } }";
  cr_settings_t s;
  char err[512];
  assert_int_equal(cr_loader_validate_platform("status.lua", src, strlen(src), &s, err, sizeof err), 0);
  assert_int_equal(s.nroutes, 1);
  assert_string_equal(s.routes[0].path, "/_/status");
  cr_settings_free(&s);
  assert_int_equal(cr_loader_validate(g_root, "status.lua", src, strlen(src), 5.0, &s, err, sizeof err), CR_EINVAL);
  assert_non_null(strstr(err, "reserved"));
  cr_load_t loads[2];
  load_init(&loads[0], "user.lua", src);
  load_init(&loads[1], "platform.lua", src);
  loads[1].platform = 1;
  assert_int_equal(cr_loader_run(g_root, loads, 2, 5.0), 0);
  assert_false(loads[0].ok);
  assert_non_null(strstr(loads[0].error, "reserved"));
  assert_true(loads[1].ok);
  assert_string_equal(loads[1].settings.routes[0].path, "/_/status");
  for (int i = 0; i < 2; i++) cr_load_clear(&loads[i]);
}

/* In process, the init limit holds too (run in a child: the watchdog thread
 * it needs is then not part of this test process). */
static void test_validate_init_timeout(void **state) {
  (void)state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(20);
    if (cr_vm_watchdog_start()) _exit(10);
    cr_settings_t s;
    char err[512] = "";
    const char *src = "while true do end";
    double t0 = now_s();
    int rc = cr_loader_validate(g_root, "spin.lua", src, strlen(src), 0.3, &s, err, sizeof err);
    double dt = now_s() - t0;
    if (rc != CR_ETIMEDOUT) _exit(11);
    if (!strstr(err, "spin.lua") || !strstr(err, "timed out")) _exit(12);
    if (dt < 0.29 || dt > 5.0) _exit(13);
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("child failed: %s %d", WIFEXITED(status) ? "exit" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* Settings larger than a pipe's buffer come back whole, and the records
 * after them too. */
static void test_run_large_settings(void **state) {
  (void)state;
  cr_load_t loads[3];
  load_init(&loads[0], "many.lua",
            "local r = {} for i = 1, 4000 do r[i] = 'GET /route/' .. i .. '/' .. string.rep('x', 30) end\n"
            "local e = {} for i = 1, 200 do e['K' .. i] = string.rep('v', 500) end\n"
            "return { handler = print, routes = r, env = e }");
  load_init(&loads[1], "small.lua", "return function() end");
  load_init(&loads[2], "err.lua", "error(string.rep('e', 100000))");
  alarm(60);
  assert_int_equal(cr_loader_run(g_root, loads, 3, 10.0), 0);
  alarm(0);
  if (!loads[0].ok) fail_msg("many.lua: %s", loads[0].error ? loads[0].error : "?");
  assert_int_equal(loads[0].settings.nroutes, 4000);
  assert_string_equal(loads[0].settings.routes[3999].path, "/route/4000/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  assert_int_equal(loads[0].settings.nenv, 200);
  assert_int_equal(strlen(cr_settings_env(&loads[0].settings, "K200")), 500);
  assert_true(loads[1].ok);
  assert_false(loads[2].ok);
  assert_non_null(loads[2].error);
  assert_non_null(strstr(loads[2].error, "err.lua:1:"));
  for (int i = 0; i < 3; i++) cr_load_clear(&loads[i]);
}

/* --- the validators' platform modules (cr_loader_set_preload) --------------------------------------- */

/* The stdlib's modules exist in the validators' states only once the process gave them (the
 * loader is below the stdlib); then a stdlib without Redis behaves as a worker's does in init. */
static void test_validator_preload(void **state) {
  (void)state;
  cr_settings_t s;
  char err[1024];
  const char *uses_kv = "local kv = require 'crescent.kv' assert(type(kv.get) == 'function') return print";
  const char *calls_kv = "local kv = require 'crescent.kv'\nkv.get('k')\nreturn print";
  assert_int_equal(validate("kv.lua", uses_kv, &s, err, sizeof err), CR_ELUA);
  /* (read as a file, crescent/kv.lua would be a function's) */
  assert_non_null(strstr(err, "module 'crescent.kv' cannot be required: crescent/kv.lua is a function's file"));
  cr_stdlib_t *stdlib = cr_stdlib_new(NULL, NULL);
  assert_non_null(stdlib);
  cr_loader_set_preload(cr_stdlib_preload, stdlib);
  assert_int_equal(validate("kv.lua", uses_kv, &s, err, sizeof err), 0);
  cr_settings_free(&s);
  assert_int_equal(validate("call.lua", calls_kv, &s, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "call.lua:2: crescent stdlib calls are only possible inside a handler"));
  /* The same in the forked validator: the hook's ud is valid there. */
  cr_load_t loads[3];
  load_init(&loads[0], "kv.lua", uses_kv);
  load_init(&loads[1], "call.lua", calls_kv);
  load_init(&loads[2], "all.lua",
            "for _, m in ipairs({'crescent.kv', 'crescent.storage', 'crescent.queue', 'crescent.log'}) do\n"
            "  assert(type(require(m)) == 'table', m)\nend\nreturn print");
  assert_int_equal(cr_loader_run(g_root, loads, 3, 5.0), 0);
  if (!loads[0].ok) fail_msg("kv.lua: %s", loads[0].error ? loads[0].error : "?");
  assert_false(loads[1].ok);
  assert_non_null(strstr(loads[1].error, "call.lua:2: crescent stdlib calls are only possible inside a handler"));
  if (!loads[2].ok) fail_msg("all.lua: %s", loads[2].error ? loads[2].error : "?");
  for (int i = 0; i < 3; i++) cr_load_clear(&loads[i]);
  cr_loader_set_preload(NULL, NULL);
  cr_stdlib_free(stdlib);
  assert_int_equal(validate("kv.lua", uses_kv, &s, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "module 'crescent.kv' cannot be required"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_read, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_module, setup, teardown),
      cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run_several, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run_stuck_in_c, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run_init_loop, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run_stuck_last, setup, teardown),
      cmocka_unit_test_setup_teardown(test_platform_routes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_validate_init_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run_large_settings, setup, teardown),
      cmocka_unit_test_setup_teardown(test_validator_preload, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
