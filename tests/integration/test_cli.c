/* test_cli.c - the command line of docs/architecture.md §1: check, new, version, and
 * the argument errors of serve, run as the real binary. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

typedef struct {
  int code;  /* exit status, 128+signal, or -1 on timeout */
  char *out; /* stdout, malloc'd */
  char *err; /* stderr, malloc'd */
} run_t;

/* Runs $CRESCENT_BIN with the NULL-terminated arguments in folder cwd; waits at most 30 s. */
static void run(run_t *r, const char *cwd, ...) {
  const char *bin = getenv("CRESCENT_BIN");
  if (!bin) bin = "./crescent";
  char *argv[32];
  int argc = 0;
  argv[argc++] = (char *)bin;
  va_list ap;
  va_start(ap, cwd);
  const char *a;
  while (argc < 31 && (a = va_arg(ap, const char *))) argv[argc++] = (char *)a;
  va_end(ap);
  argv[argc] = NULL;
  char outp[300], errp[300];
  snprintf(outp, sizeof outp, "%s/.cli-out-%d", cwd, (int)getpid());
  snprintf(errp, sizeof errp, "%s/.cli-err-%d", cwd, (int)getpid());
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || chdir(cwd)) _exit(127);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    close(o);
    close(e);
    setpgid(0, 0);
    execv(bin, argv);
    _exit(127);
  }
  long long deadline = now_ms() + 30000;
  int st = 0;
  r->code = -1;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (now_ms() > deadline) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
  r->out = read_file(outp);
  r->err = read_file(errp);
  unlink(outp);
  unlink(errp);
  if (r->code < 0) fail_msg("crescent %s did not finish within 30 s", argc > 1 ? argv[1] : "");
}

static void run_free(run_t *r) {
  free(r->out);
  free(r->err);
  memset(r, 0, sizeof *r);
}

static void write_file(const char *dir, const char *rel, const char *content) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  for (char *p = path + strlen(dir) + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(path, 0755);
      *p = '/';
    }
  }
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* A scratch folder for commands that need no server (removed with rm -rf by the caller's srv_t
 * or by cleanup()). Uses srv_init so the folder layout matches the server tests. */
static void scratch(srv_t *s) { srv_init(s); }

static void cleanup(srv_t *s) {
  /* No server was started: srv_stop only checks the (absent) log and removes the folder. */
  assert_int_equal(srv_stop(s), 0);
}

/* --- check -------------------------------------------------------------------------------------- */

static void check_good_folder(void **state) {
  (void)state;
  srv_t s;
  scratch(&s);
  write_file(s.fndir, "hello.lua", "return function() return 'hi' end\n");
  write_file(s.fndir, "users/[id].lua",
             "return { routes = { 'GET /users/:id' }, timeout = 3, handler = function(e) return e.params.id end }\n");
  write_file(s.fndir, "_shared.lua", "return {}\n");
  write_file(s.fndir, "lib/util.lua", "this is not lua, but a module is only compiled when required\n");
  run_t r;
  run(&r, s.root, "check", s.fndir, NULL);
  if (r.code != 0) fail_msg("check exited %d; stderr: %s", r.code, r.err);
  assert_non_null(strstr(r.out, "ok"));
  assert_non_null(strstr(r.out, "2 functions"));
  run_free(&r);
  /* Without DIR it checks ./functions. */
  run(&r, s.root, "check", NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "ok"));
  run_free(&r);
  cleanup(&s);
}

static void check_bad_folder(void **state) {
  (void)state;
  srv_t s;
  scratch(&s);
  write_file(s.fndir, "good.lua", "return function() return 'hi' end\n");
  write_file(s.fndir, "syntax.lua", "return function()\n  return 1\n  local = 2\nend\n");
  write_file(s.fndir, "settings.lua", "return { timout = 5, handler = function() end }\n");
  write_file(s.fndir, "dup_a.lua", "return { routes = { 'GET /same' }, handler = function() end }\n");
  write_file(s.fndir, "dup_b.lua", "return { routes = { 'POST /other', 'GET /same' }, handler = function() end }\n");
  run_t r;
  run(&r, s.root, "check", s.fndir, NULL);
  assert_int_equal(r.code, 1);
  if (!text_lines_with(r.err, "syntax.lua:3:", NULL)) fail_msg("no syntax.lua:3: in: %s", r.err);
  if (!text_lines_with(r.err, "settings.lua", "'timout'", NULL)) fail_msg("no settings error in: %s", r.err);
  /* Path order decides, as in the server: dup_a.lua keeps the route. */
  if (!text_lines_with(r.err, "dup_b.lua: route conflict: GET /same is also claimed by dup_a.lua, which serves it", NULL))
    fail_msg("no conflict naming both files in: %s", r.err);
  /* Printed once, as text on stderr: no JSON log line besides it. */
  assert_int_equal(text_lines_with(r.err, "route conflict", NULL), 1);
  assert_int_equal(text_lines_with(r.out, "route conflict", NULL), 0);
  assert_string_equal(r.out, "");
  assert_int_equal(text_lines_with(r.err, "3 problems in", NULL), 1);
  assert_false(text_lines_with(r.err, "good.lua", NULL));
  assert_false(text_lines_with(r.out, "ok", NULL));
  run_free(&r);

  /* A folder that does not exist is an error too. */
  char missing[400];
  snprintf(missing, sizeof missing, "%s/nope", s.root);
  run(&r, s.root, "check", missing, NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "nope"));
  run_free(&r);
  cleanup(&s);
}

/* No trigger kind is built yet: a function declaring one fails to load, in
 * check and in the server, naming the kind; its entry's own mistakes (an
 * unknown key, a wrong type) are reported first. */
static void check_triggers_not_supported(void **state) {
  (void)state;
  srv_t s;
  scratch(&s);
  write_file(s.fndir, "nightly.lua",
             "return { triggers = { { cron = '61 * * * *' } }, handler = function() return 'n' end }\n");
  write_file(s.fndir, "jobs.lua",
             "return { triggers = { { queue = 'jobs', bogus = 1 } }, handler = function() return 'j' end }\n");
  write_file(s.fndir, "cronint.lua", "return { triggers = { { cron = 5 } }, handler = function() return 'c' end }\n");
  write_file(s.fndir, "http.lua", "return { triggers = {}, handler = function() return 'h' end }\n");
  run_t r;
  run(&r, s.root, "check", s.fndir, NULL);
  assert_int_equal(r.code, 1);
  const char *want =
      "cronint.lua: setting 'triggers': entry 1: 'cron' must be a non-empty string of at most 256 bytes, got a number\n"
      "jobs.lua: setting 'triggers': entry 1: unknown key 'bogus' for a queue trigger (known: queue, batch, window, "
      "visibility, maxReceives, concurrency)\n"
      "nightly.lua: setting 'triggers': entry 1: cron '61 * * * *': field 1 (minute) '61': 61 is out of range 0-59\n";
  if (strncmp(r.err, want, strlen(want)) != 0) fail_msg("check said:\n%s\nwant:\n%s", r.err, want);
  assert_non_null(strstr(r.err + strlen(want), "3 problems in"));
  assert_string_equal(r.out, "");
  run_free(&r);

  /* The server refuses it the same way: a function that failed to load, its error in the API. */
  srv_start(&s, "--workers 1 --redis none");
  http_expect(s.port, "/http", 200, "h");
  http_resp_t h;
  http_get(s.port, "/nightly", &h);
  assert_int_equal(h.status, 503);
  assert_non_null(strstr(h.body, "\"error\":\"function failed to load\""));
  http_free(&h);
  http_get(s.port, "/_/api/functions", &h);
  assert_int_equal(h.status, 200);
  char *e = api_fn_entry(h.body, "nightly");
  assert_non_null(e);
  assert_non_null(strstr(e, "\"version\":null"));
  if (!strstr(e, "field 1 (minute) '61': 61 is out of range 0-59")) fail_msg("nightly: %s", e);
  free(e);
  http_free(&h);
  srv_expect_errors(&s, 3);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- invoke ------------------------------------------------------------------------------------ */

/* crescent invoke NAME: result on stdout, report on stderr, exit 1 when the function failed. */
static void invoke_command(void **state) {
  (void)state;
  srv_t s;
  scratch(&s);
  write_file(s.fndir, "add.lua", "return function(e) return { sum = e.a + e.b } end\n");
  write_file(s.fndir, "boom.lua", "return function() error('kaput') end\n");
  write_file(s.fndir, "none.lua", "return function(e) return e == nil and 'no event' or 'event' end\n");
  write_file(s.root, "event.json", "{\"a\":40,\"b\":2}\n");
  srv_start(&s, "--workers 1");
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
  run_t r;
  run(&r, s.root, "invoke", "add", "--data", "{\"a\":1,\"b\":2}", "--url", url, NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "{\"sum\":3}\n");
  if (strncmp(r.err, "REPORT RequestId: ", 18) != 0 || !strstr(r.err, "\tBilled Duration: 1 ms\tMemory Size: 128 MB") ||
      !strstr(r.err, "\tInit Duration: ") || !strstr(r.err, "\tVersion: 1-"))
    fail_msg("stderr: %s", r.err);
  run_free(&r);
  run(&r, s.root, "invoke", "add", "--data=@event.json", "--url", url, NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "{\"sum\":42}\n");
  assert_null(strstr(r.err, "Init Duration")); /* warm */
  run_free(&r);
  run(&r, s.root, "invoke", "none", "--url", url, NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "\"no event\"\n");
  run_free(&r);
  /* Failed: the error on stdout, exit 1. */
  run(&r, s.root, "invoke", "boom", "--url", url, NULL);
  assert_int_equal(r.code, 1);
  if (!strstr(r.out, "\"errorMessage\":\"error: boom.lua:1: kaput\"")) fail_msg("stdout: %s", r.out);
  if (!strstr(r.err, "crescent invoke: the function failed (error)")) fail_msg("stderr: %s", r.err);
  run_free(&r);
  run(&r, s.root, "invoke", "nope", "--url", url, NULL);
  assert_int_equal(r.code, 1);
  if (!strstr(r.err, "function not found") || !strstr(r.err, "the server answered 404")) fail_msg("stderr: %s", r.err);
  run_free(&r);
  /* --async: the invocation id; it runs. */
  run(&r, s.root, "invoke", "add", "--async", "--data", "{\"a\":2,\"b\":3}", "--url", url, NULL);
  assert_int_equal(r.code, 0);
  if (strncmp(r.out, "{\"invocationId\":\"", 17) != 0) fail_msg("stdout: %s", r.out);
  run_free(&r);
  assert_int_equal(srv_log_wait(&s, 1, 5000, "\"msg\":\"report\"", "\"function\":\"add\"", "\"invocationId\":", NULL), 1);
  /* Nothing listening; a bad URL; usage errors. */
  run(&r, s.root, "invoke", "add", "--url", "http://127.0.0.1:1", NULL);
  assert_int_equal(r.code, 1);
  if (!strstr(r.err, "cannot connect to http://127.0.0.1:1")) fail_msg("stderr: %s", r.err);
  run_free(&r);
  run(&r, s.root, "invoke", "add", "--url", "https://x", NULL);
  assert_int_equal(r.code, 1);
  run_free(&r);
  run(&r, s.root, "invoke", NULL);
  assert_int_equal(r.code, 2);
  run_free(&r);
  run(&r, s.root, "invoke", "a", "b", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "unexpected argument 'b'"));
  run_free(&r);
  run(&r, s.root, "invoke", "a", "--bogus", NULL);
  assert_int_equal(r.code, 2);
  run_free(&r);
  run(&r, s.root, "invoke", "--help", NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "usage: crescent invoke NAME"));
  run_free(&r);
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  assert_int_equal(srv_stop(&s), 0);
}

/* --- new ---------------------------------------------------------------------------------------- */

static void new_makes_a_function(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  run_t r;
  run(&r, s.root, "new", "greet", "--functions", s.fndir, NULL);
  if (r.code != 0) fail_msg("new exited %d; stderr: %s", r.code, r.err);
  run_free(&r);
  char path[600];
  snprintf(path, sizeof path, "%s/greet.lua", s.fndir);
  assert_true(file_exists(path));
  char *orig = read_file(path);
  assert_true(strlen(orig) > 0);

  /* Nested names make their folders. */
  run(&r, s.root, "new", "api/items", "--functions", s.fndir, NULL);
  assert_int_equal(r.code, 0);
  run_free(&r);
  char nested[600];
  snprintf(nested, sizeof nested, "%s/api/items.lua", s.fndir);
  assert_true(file_exists(nested));

  run(&r, s.root, "check", s.fndir, NULL);
  if (r.code != 0) fail_msg("check of new functions exited %d; stderr: %s", r.code, r.err);
  assert_non_null(strstr(r.out, "ok"));
  run_free(&r);

  /* It refuses to overwrite, and leaves the file as it was. */
  write_file(s.fndir, "greet.lua", "return function() return 'mine' end\n");
  run(&r, s.root, "new", "greet", "--functions", s.fndir, NULL);
  assert_int_not_equal(r.code, 0);
  assert_true(strlen(r.err) > 0);
  run_free(&r);
  char *now = read_file(path);
  assert_string_equal(now, "return function() return 'mine' end\n");
  free(now);
  /* Put the template back, to serve it below. */
  write_file(s.fndir, "greet.lua", orig);
  free(orig);

  /* It refuses names that escape the folder or are not functions. */
  const char *bad[] = {"../x", "a/../../x", "/abs", "_private", ".hidden"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    run(&r, s.root, "new", bad[i], "--functions", s.fndir, NULL);
    if (r.code == 0) fail_msg("new '%s' succeeded", bad[i]);
    assert_true(strlen(r.err) > 0);
    run_free(&r);
  }
  char escaped[600];
  snprintf(escaped, sizeof escaped, "%s/x.lua", s.root);
  assert_false(file_exists(escaped));
  snprintf(path, sizeof path, "%s/_private.lua", s.fndir);
  assert_false(file_exists(path));

  /* What new made serves. */
  srv_start(&s, "--workers 1");
  http_resp_t h;
  http_get(s.port, "/greet?name=moon", &h);
  assert_int_equal(h.status, 200);
  assert_non_null(strstr(h.body, "hello moon"));
  http_free(&h);
  http_get(s.port, "/api/items", &h);
  assert_int_equal(h.status, 200);
  assert_non_null(strstr(h.body, "hello world"));
  http_free(&h);
  assert_int_equal(srv_stop(&s), 0);
}

/* new checks the name as check will, before making anything; drops a .lua
 * suffix; takes -h as help; a template for a route with parameters answers
 * them and names the URL that reaches it. */
static void new_names_and_templates(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  run_t r;
  char path[700], want[900];

  run(&r, s.root, "new", "sp ace", "--functions", s.fndir, NULL);
  assert_int_equal(r.code, 2);
  assert_string_equal(r.err, "crescent new: 'sp ace' is not a valid function name: route path '/sp ace' has a "
                             "character not allowed in a path\n");
  assert_string_equal(r.out, "");
  run_free(&r);
  snprintf(path, sizeof path, "%s/sp ace.lua", s.fndir);
  assert_false(file_exists(path));
  run(&r, s.root, "new", "users/[bad-name]", "--functions", s.fndir, NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "bad parameter name ':bad-name'"));
  run_free(&r);
  snprintf(path, sizeof path, "%s/users", s.fndir);
  assert_false(file_exists(path)); /* no folder made on the way either */

  /* A .lua suffix is the file's, not the name's. */
  run(&r, s.root, "new", "foo.lua", "--functions", s.fndir, NULL);
  assert_int_equal(r.code, 0);
  snprintf(want, sizeof want,
           "created %s/foo.lua, served at /foo: try curl localhost:8080/foo\n"
           "created %s/foo_test.lua: run it with crescent test\n",
           s.fndir, s.fndir);
  assert_string_equal(r.out, want);
  run_free(&r);
  snprintf(path, sizeof path, "%s/foo.lua.lua", s.fndir);
  assert_false(file_exists(path));

  /* -h and --help are help, not names. */
  const char *helps[] = {"-h", "--help"};
  for (size_t i = 0; i < 2; i++) {
    run(&r, s.root, "new", helps[i], "--functions", s.fndir, NULL);
    assert_int_equal(r.code, 0);
    static const char syn[] = "usage: crescent new NAME [flags]\n";
    assert_memory_equal(r.out, syn, sizeof syn - 1);
    assert_string_equal(r.err, "");
    run_free(&r);
    snprintf(path, sizeof path, "%s/%s.lua", s.fndir, helps[i]);
    assert_false(file_exists(path));
  }

  /* Parameters: the handler returns them, and the URL has a value for each. */
  run(&r, s.root, "new", "users/[id]", "--functions", s.fndir, NULL);
  assert_int_equal(r.code, 0);
  snprintf(want, sizeof want,
           "created %s/users/[id].lua, served at /users/:id: try curl localhost:8080/users/42\n"
           "created %s/users/[id]_test.lua: run it with crescent test\n",
           s.fndir, s.fndir);
  assert_string_equal(r.out, want);
  run_free(&r);
  snprintf(path, sizeof path, "%s/users/[id].lua", s.fndir);
  char *text = read_file(path);
  assert_memory_equal(text, "-- users/[id]: an HTTP function. Try: curl localhost:8080/users/42\n", 67);
  assert_non_null(strstr(text, "id = event.params.id"));
  free(text);
  run(&r, s.root, "new", "docs/[...path]", "--functions", s.fndir, "--listen", "0.0.0.0:9000", NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "served at /docs/*path: try curl localhost:9000/docs/a/b\n"));
  run_free(&r);

  run(&r, s.root, "check", s.fndir, NULL);
  if (r.code != 0) fail_msg("check of new functions exited %d; stderr: %s", r.code, r.err);
  snprintf(want, sizeof want, "ok: 3 functions in %s\n", s.fndir);
  assert_string_equal(r.out, want);
  run_free(&r);

  srv_start(&s, "--workers 1 --redis none");
  http_resp_t h;
  http_get(s.port, "/users/42", &h);
  assert_int_equal(h.status, 200);
  if (!strstr(h.body, "\"id\":\"42\"")) fail_msg("GET /users/42: %s", h.body);
  http_free(&h);
  http_get(s.port, "/docs/a/b", &h);
  assert_int_equal(h.status, 200);
  if (!strstr(h.body, "\"path\":\"a/b\"")) fail_msg("GET /docs/a/b: %s", h.body);
  http_free(&h);
  assert_int_equal(srv_stop(&s), 0);
}

/* Every command answers -h/--help with its usage and exit 0, and refuses
 * what it does not take with exit 2 and a message naming it. */
static void help_and_unexpected_arguments(void **state) {
  (void)state;
  srv_t s;
  scratch(&s);
  run_t r;
  const char *cmds[] = {"serve", "check", "new", "version"};
  const char *synopsis[] = {"usage: crescent serve [flags]\n", "usage: crescent check [DIR] [--json] [flags]\n",
                            "usage: crescent new NAME [flags]\n",
                            "usage: crescent version [--json]\n"};
  for (size_t i = 0; i < 4; i++) {
    const char *forms[][3] = {{cmds[i], "--help", NULL}, {cmds[i], "-h", NULL}, {"help", cmds[i], NULL}};
    for (size_t k = 0; k < 3; k++) {
      run(&r, s.root, forms[k][0], forms[k][1], NULL);
      if (r.code != 0) fail_msg("%s %s exited %d: %s", forms[k][0], forms[k][1], r.code, r.err);
      if (strncmp(r.out, synopsis[i], strlen(synopsis[i])) != 0)
        fail_msg("%s %s printed: %s", forms[k][0], forms[k][1], r.out);
      assert_string_equal(r.err, "");
      run_free(&r);
    }
  }
  /* check's help lists its flags only; serve's lists them all. */
  run(&r, s.root, "check", "--help", NULL);
  assert_non_null(strstr(r.out, "--functions V"));
  assert_null(strstr(r.out, "--workers"));
  run_free(&r);
  run(&r, s.root, "serve", "--workers", "2", "--help", NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "--workers V"));
  assert_non_null(strstr(r.out, "--max-object V"));
  run_free(&r);

  struct {
    const char *a[4];
    const char *err;
  } bad[] = {
      {{"check", "a", "b", NULL}, "crescent check: unexpected argument 'b'\nusage: crescent check [DIR] [--json] [flags]\n"},
      {{"check", "-x", NULL}, "crescent check: unknown option '-x'\n"},
      {{"version", "extra", NULL}, "crescent version: unexpected argument 'extra'\nusage: crescent version [--json]\n"},
      {{"version", "--workers", "2", NULL}, "crescent version: unexpected argument '--workers'\n"},
      {{"serve", "extra", NULL}, "crescent serve: unexpected argument 'extra'\n"},
      {{"new", "a", "b", NULL}, "crescent new: unexpected argument 'b'\n"},
      {{"new", NULL}, "crescent new: missing 'NAME'\nusage: crescent new NAME [flags]\n"},
      {{"help", "nope", NULL}, "crescent: unknown command 'nope'\n"},
      {{"serve", "--listen", "nothost:1", NULL},
       "crescent: --listen: 'nothost' is not an IP address or localhost (names are not resolved: use e.g. 127.0.0.1 "
       "or 0.0.0.0)\n"},
      {{"serve", "--log-level", "loud", NULL}, "crescent: --log-level: expected debug, info, warn or error, got 'loud'\n"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    run(&r, s.root, bad[i].a[0], bad[i].a[1], bad[i].a[2], bad[i].a[3], NULL);
    if (r.code != 2) fail_msg("%s %s: exit %d, want 2 (%s)", bad[i].a[0], bad[i].a[1] ? bad[i].a[1] : "", r.code, r.err);
    if (strncmp(r.err, bad[i].err, strlen(bad[i].err)) != 0)
      fail_msg("%s %s said:\n%s\nwant:\n%s", bad[i].a[0], bad[i].a[1] ? bad[i].a[1] : "", r.err, bad[i].err);
    assert_string_equal(r.out, "");
    run_free(&r);
  }
  /* A log level in another case is the same level. */
  write_file(s.fndir, "hello.lua", "return function() return 'hi' end\n");
  run(&r, s.root, "check", "--log-level", "WARN", s.fndir, NULL);
  if (r.code != 0) fail_msg("check --log-level WARN exited %d: %s", r.code, r.err);
  run_free(&r);
  cleanup(&s);
}

/* --- version, unknown commands, serve's argument errors ------------------------------------------ */

static void version_and_usage_errors(void **state) {
  (void)state;
  srv_t s;
  scratch(&s);
  run_t r;
  run(&r, s.root, "version", NULL);
  assert_int_equal(r.code, 0);
  assert_memory_equal(r.out, "crescent ", 9);
  assert_non_null(strstr(r.out, "LuaJIT"));
  run_free(&r);

  run(&r, s.root, "frobnicate", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "frobnicate"));
  run_free(&r);

  run(&r, s.root, NULL);
  assert_int_equal(r.code, 2);
  assert_true(strlen(r.err) > 0);
  run_free(&r);

  run(&r, s.root, "serve", "--functions", s.fndir, "--listen", "127.0.0.1:0", "--workers", "0", NULL);
  assert_int_equal(r.code, 2);
  if (!strstr(r.err, "--workers")) fail_msg("no mention of --workers in: %s", r.err);
  run_free(&r);

  run(&r, s.root, "serve", "--functions", s.fndir, "--listen", "127.0.0.1:0", "--no-such-flag", "1", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "no-such-flag"));
  run_free(&r);

  char missing[400];
  snprintf(missing, sizeof missing, "%s/absent", s.root);
  run(&r, s.root, "serve", "--functions", missing, "--listen", "127.0.0.1:0", "--workers", "1", NULL);
  assert_int_equal(r.code, 1);
  /* The server's log (stdout) says it; nothing goes to stderr. */
  char msg[600];
  snprintf(msg, sizeof msg, "the functions folder '%s' does not exist: create it or pass --functions DIR", missing);
  if (!strstr(r.out, msg)) fail_msg("no \"%s\" in the log: %s", msg, r.out);
  assert_string_equal(r.err, "");
  run_free(&r);
  cleanup(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(check_good_folder),
      cmocka_unit_test(check_bad_folder),
      cmocka_unit_test(check_triggers_not_supported),
      cmocka_unit_test(new_makes_a_function),
      cmocka_unit_test(new_names_and_templates),
      cmocka_unit_test(help_and_unexpected_arguments),
      cmocka_unit_test(version_and_usage_errors),
      cmocka_unit_test(invoke_command),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
