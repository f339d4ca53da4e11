/* test_cli_loop.c - the command line's development loop, run as the real binary: new --trigger
 * (every template with its test, accepted by check), test (Lua tests on a throwaway server and
 * Redis: passing, failing with the test file's FILE:LINE, a file that does not compile, tests/
 * beside the functions, none at all), stats and queues against a running server (--json, the
 * table's key lines, --redrive, --watch --count), --url/--token and their environment
 * variables, check --json and version --json, --help of each new command. */
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


/* A scratch folder for commands that need no server (removed with rm -rf by the caller's srv_t
 * or by cleanup()). Uses srv_init so the folder layout matches the server tests. */
static void scratch(srv_t *s) { srv_init(s); }

static void cleanup(srv_t *s) {
  /* No server was started: srv_stop only checks the (absent) log and removes the folder. */
  assert_int_equal(srv_stop(s), 0);
}


#define STARTS(s, lit) (strncmp((s), (lit), sizeof(lit) - 1) == 0)

static void expect_code(const run_t *r, int code, const char *what) {
  if (r->code != code) fail_msg("%s exited %d, not %d\nstdout: %s\nstderr: %s", what, r->code, code, r->out, r->err);
}

/* The line of text starting with prefix (malloc'd, without its newline), or NULL. */
static char *line_of(const char *text, const char *prefix) {
  for (const char *p = text; p && *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    if (strncmp(p, prefix, strlen(prefix)) == 0) {
      char *l = malloc(n + 1);
      memcpy(l, p, n);
      l[n] = '\0';
      return l;
    }
    p = nl ? nl + 1 : NULL;
  }
  return NULL;
}

/* --- new --trigger, check --json, test ---------------------------------------------------------- */

static const char *const TRIGGERS[] = {"auth", "cron", "http", "kv", "queue", "storage"};
static const char *const TEST_NAMES[] = {"allows the right token only", "counts its runs", "answers with a request id",
                                         "counts the puts", "fails the records it cannot read", "reads what was put"};

static void new_every_trigger_passes_its_test(void **state) {
  (void)state;
  srv_t s;
  scratch(&s);
  run_t r;
  char name[64], want[800];
  for (size_t i = 0; i < 6; i++) {
    snprintf(name, sizeof name, "t%s", TRIGGERS[i]);
    run(&r, s.root, "new", name, "--trigger", TRIGGERS[i], "--functions", s.fndir, NULL);
    expect_code(&r, 0, "new --trigger");
    if (strcmp(TRIGGERS[i], "http") == 0)
      snprintf(want, sizeof want,
               "created %s/%s.lua, served at /%s: try curl localhost:8080/%s\ncreated %s/%s_test.lua: run it with "
               "crescent test\n",
               s.fndir, name, name, name, s.fndir, name);
    else
      snprintf(want, sizeof want, "created %s/%s.lua (--trigger %s)\ncreated %s/%s_test.lua: run it with crescent test\n",
               s.fndir, name, TRIGGERS[i], s.fndir, name);
    assert_string_equal(r.out, want);
    run_free(&r);
  }
  /* An unknown trigger, and a name taken: nothing made. */
  run(&r, s.root, "new", "x", "--trigger", "smtp", "--functions", s.fndir, NULL);
  expect_code(&r, 2, "new --trigger smtp");
  assert_string_equal(r.err, "crescent new: --trigger: expected http, cron, queue, storage, kv or auth, got 'smtp'\n");
  run_free(&r);
  run(&r, s.root, "new", "tcron", "--trigger", "cron", "--functions", s.fndir, NULL);
  expect_code(&r, 1, "new of a name taken");
  run_free(&r);

  /* A nested name in a functions folder that does not exist yet: every folder is made. */
  char fresh[400];
  snprintf(fresh, sizeof fresh, "%s/fresh", s.root);
  run(&r, s.root, "new", "deep/er/x", "--trigger", "kv", "--functions", fresh, NULL);
  expect_code(&r, 0, "new into a missing folder");
  run_free(&r);
  snprintf(fresh, sizeof fresh, "%s/fresh/deep/er/x_test.lua", s.root);
  struct stat st;
  assert_int_equal(stat(fresh, &st), 0);

  /* check takes them all (the tests are not functions), and says so as JSON. */
  run(&r, s.root, "check", s.fndir, "--json", NULL);
  expect_code(&r, 0, "check --json");
  snprintf(want, sizeof want, "{\"ok\":true,\"functions\":6,\"dir\":\"%s\",\"problems\":[]}\n", s.fndir);
  assert_string_equal(r.out, want);
  run_free(&r);

  /* Each template's test passes against it, on the real stdlib (kv, storage) and its own Redis. */
  run(&r, s.root, "test", s.fndir, NULL);
  expect_code(&r, 0, "test");
  for (size_t i = 0; i < 6; i++) {
    char line[400];
    snprintf(line, sizeof line, "ok   %s/t%s_test.lua: %s\n", s.fndir, TRIGGERS[i], TEST_NAMES[i]);
    if (!strstr(r.out, line)) fail_msg("no line '%s' in:\n%s", line, r.out);
  }
  char *sum = line_of(r.out, "6 passed, 0 failed (6 files, ");
  assert_non_null(sum);
  free(sum);
  run_free(&r);
  run(&r, s.root, "test", s.fndir, "--json", NULL);
  expect_code(&r, 0, "test --json");
  {
    char *exp = malloc(8192);
    size_t n = (size_t)snprintf(exp, 8192, "{\"passed\":6,\"failed\":0,\"tests\":[");
    for (size_t i = 0; i < 6; i++)
      n += (size_t)snprintf(exp + n, 8192 - n, "%s{\"file\":\"%s/t%s_test.lua\",\"name\":\"%s\",\"ok\":true,\"error\":null}",
                            i ? "," : "", s.fndir, TRIGGERS[i], TEST_NAMES[i]);
    snprintf(exp + n, 8192 - n, "]}\n");
    assert_string_equal(r.out, exp);
    free(exp);
  }
  run_free(&r);
  cleanup(&s);
}

static void test_reports_failures(void **state) {
  (void)state;
  srv_t s;
  scratch(&s);
  run_t r;
  /* No tests at all is a failure, not a pass. */
  write_file(s.fndir, "hello.lua", "return function(event) return { n = (event.n or 0) + 1 } end\n");
  run(&r, s.root, "test", s.fndir, NULL);
  expect_code(&r, 1, "test without tests");
  assert_non_null(strstr(r.err, "crescent test: no tests (NAME_test.lua) under"));
  run_free(&r);

  write_file(s.fndir, "hello_test.lua",
             "local t = require \"crescent.test\"\n"
             "local kv = require \"crescent.kv\"\n"
             "t.test(\"adds one\", function() t.equal(t.invoke(\"hello\", { n = 1 }).n, 2) end)\n"
             "t.test(\"wrong on line 4\", function() t.equal(t.invoke(\"hello\", { n = 1 }), { n = 3 }, \"sum\") end)\n"
             "t.test(\"kv is real\", function() kv.put(\"k\", \"v\"); t.equal(kv.get(\"k\"), \"v\") end)\n"
             "t.test(\"a missing function\", function() local r, err = t.call(\"nope\", {}); t.equal(err, \"function not found\") end)\n"
             "t.test(\"raises\", function() t.raises(function() error(\"bang\") end, \"bang\") end)\n");
  write_file(s.fndir, "broken_test.lua", "local t = require \"crescent.test\"\nt.test(\"x\", function( end)\n");
  /* A tests/ folder beside the functions counts too. */
  write_file(s.root, "tests/beside_test.lua", "local t = require \"crescent.test\"\nt.test(\"beside\", function() t.ok(1) end)\n");
  run(&r, s.root, "test", s.fndir, NULL);
  expect_code(&r, 1, "test with failures");
  char want[1200];
  snprintf(want, sizeof want, "FAIL %s/broken_test.lua\n     %s/broken_test.lua:2: <name> or '...' expected near 'end'\n",
           s.fndir, s.fndir);
  if (!strstr(r.out, want)) fail_msg("no '%s' in:\n%s", want, r.out);
  snprintf(want, sizeof want, "ok   %s/hello_test.lua: adds one\n", s.fndir);
  assert_non_null(strstr(r.out, want));
  snprintf(want, sizeof want, "FAIL %s/hello_test.lua: wrong on line 4\n     %s/hello_test.lua:4: sum: expected { n = 3 }, got { n = 2 }\n",
           s.fndir, s.fndir);
  if (!strstr(r.out, want)) fail_msg("no '%s' in:\n%s", want, r.out);
  snprintf(want, sizeof want, "ok   %s/hello_test.lua: kv is real\n", s.fndir);
  if (!strstr(r.out, want)) fail_msg("no '%s' in:\n%s", want, r.out);
  snprintf(want, sizeof want, "ok   %s/hello_test.lua: a missing function\n", s.fndir);
  assert_non_null(strstr(r.out, want));
  snprintf(want, sizeof want, "ok   %s/hello_test.lua: raises\n", s.fndir);
  assert_non_null(strstr(r.out, want));
  snprintf(want, sizeof want, "ok   %s/tests/beside_test.lua: beside\n", s.root);
  if (!strstr(r.out, want)) fail_msg("no '%s' in:\n%s", want, r.out);
  char *sum = line_of(r.out, "5 passed, 2 failed (3 files, ");
  if (!sum) fail_msg("no summary line in:\n%s", r.out);
  free(sum);
  run_free(&r);
  /* Usage errors. */
  run(&r, s.root, "test", s.fndir, "--bogus", NULL);
  expect_code(&r, 2, "test --bogus");
  run_free(&r);
  run(&r, s.root, "test", "/nonexistent-folder", NULL);
  expect_code(&r, 1, "test of a missing folder");
  assert_string_equal(r.err, "crescent test: /nonexistent-folder: not a folder\n");
  run_free(&r);
  cleanup(&s);
}

/* --- stats, queues ------------------------------------------------------------------------------ */

static void stats_and_queues(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", "return function() return 'hi' end\n");
  srv_write(&s, "idle.lua", "return function() return 'zzz' end\n");
  srv_write(&s, "send.lua", srv_queue_sender);
  srv_start(&s, "--workers 1 --admin-token tok");
  char url[64];
  snprintf(url, sizeof url, "--url=http://127.0.0.1:%d", s.port);
  for (int i = 0; i < 3; i++) {
    http_resp_t h;
    assert_int_equal(http_request(s.port, "GET", "/hello", NULL, NULL, 0, &h), 0);
    assert_int_equal(h.status, 200);
    http_free(&h);
  }
  run_t r;
  /* The token: refused without it, taken from --token, --admin-token or the environment. */
  run(&r, s.root, "stats", url, NULL);
  expect_code(&r, 1, "stats without the token");
  assert_non_null(strstr(r.err, "crescent stats: unauthorized"));
  assert_non_null(strstr(r.err, "(401)"));
  run_free(&r);
  run(&r, s.root, "stats", url, "--token", "tok", NULL);
  expect_code(&r, 0, "stats --token");
  assert_non_null(strstr(r.out, "FUNCTION                 VERSION INVOCATIONS  ERRORS THROTTLES TIMEOUTS   COLD   P50_MS"));
  char *row = line_of(r.out, "hello ");
  assert_non_null(row);
  char fn[64], ver[16];
  double inv, errs;
  assert_int_equal(sscanf(row, "%63s %15s %lf %lf", fn, ver, &inv, &errs), 4);
  assert_string_equal(ver, "v1");
  assert_true(inv == 3 && errs == 0);
  free(row);
  row = line_of(r.out, "idle ");
  assert_non_null(row);
  assert_non_null(strstr(row, "        -        -")); /* no latency yet */
  free(row);
  assert_null(line_of(r.out, "_/")); /* the platform's own are left out */
  run_free(&r);

  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", s.port);
  setenv("CRESCENT_URL", base, 1);
  setenv("CRESCENT_ADMIN_TOKEN", "tok", 1);
  /* --json: the server's answer as it came; with NAME, its entry. */
  http_resp_t api;
  assert_int_equal(http_request(s.port, "GET", "/_/api/functions", "Authorization: Bearer tok\r\n", NULL, 0, &api), 0);
  run(&r, s.root, "stats", "--json", NULL);
  expect_code(&r, 0, "stats --json");
  size_t bl = strlen(api.body);
  assert_int_equal(strlen(r.out), bl + 1);
  assert_memory_equal(r.out, api.body, bl);
  http_free(&api);
  run_free(&r);
  run(&r, s.root, "stats", "idle", "--json", NULL);
  expect_code(&r, 0, "stats idle --json");
  if (!STARTS(r.out, "{\"name\":\"idle\",\"file\":\"idle.lua\",\"routed\":true,\"version\":1,"))
    fail_msg("stats idle --json: %s", r.out);
  assert_non_null(strstr(r.out, "\"metrics\":{\"invocations\":0,\"errors\":0,"));
  run_free(&r);
  run(&r, s.root, "stats", "nope", NULL);
  expect_code(&r, 1, "stats nope");
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "crescent stats: no function 'nope' on the server\n");
  run_free(&r);
  run(&r, s.root, "stats", "hello", "--watch", "--count", "2", "--interval", "0.1", NULL);
  expect_code(&r, 0, "stats --watch --count 2");
  assert_int_equal(text_lines_with(r.out, "(every 0.1s, Ctrl-C to stop)", NULL), 2);
  assert_int_equal(text_lines_with(r.out, "hello ", NULL), 2);
  run_free(&r);
  run(&r, s.root, "stats", "--count", "2", NULL);
  expect_code(&r, 2, "stats --count without --watch");
  run_free(&r);

  /* Queues: two messages in orders and a dead letter in orders.dlq. */
  srv_send_msg(&s, "orders", "a");
  srv_send_msg(&s, "orders", "b");
  free(srv_rcli(&s, "XADD", "cr:{q:orders.dlq}:s", "500-1", "type", "s", "body", "dead", "time", "400",
                "receiveCount", "5", "sourceId", "400-1", "deadAt", "500", NULL));
  run(&r, s.root, "queues", NULL);
  expect_code(&r, 0, "queues");
  assert_non_null(strstr(r.out, "QUEUE                                DEPTH  DELAYED IN_FLIGHT     OLDEST       DLQ\n"));
  row = line_of(r.out, "orders ");
  assert_non_null(row);
  char q[64], oldest[32];
  double depth, delayed, inflight, dlq;
  assert_int_equal(sscanf(row, "%63s %lf %lf %lf %31s %lf", q, &depth, &delayed, &inflight, oldest, &dlq), 6);
  assert_true(depth == 2 && delayed == 0 && inflight == 0 && dlq == 1);
  free(row);
  run_free(&r);
  run(&r, s.root, "queues", "orders.dlq", "--json", NULL);
  expect_code(&r, 0, "queues orders.dlq --json");
  if (!STARTS(r.out, "{\"name\":\"orders.dlq\",\"depth\":1,\"delayed\":0,\"inFlight\":0,\"oldestSentAt\":400,"))
    fail_msg("queues orders.dlq --json: %s", r.out);
  run_free(&r);
  run(&r, s.root, "queues", "--redrive", "orders", NULL);
  expect_code(&r, 0, "queues --redrive orders");
  assert_string_equal(r.out, "orders.dlq -> orders: 1 moved\n");
  assert_string_equal(r.err, "redriving orders.dlq into orders ...\n");
  run_free(&r);
  run(&r, s.root, "queues", "--redrive", "orders", "--json", NULL);
  expect_code(&r, 0, "queues --redrive --json");
  assert_string_equal(r.out, "{\"moved\":0}\n");
  run_free(&r);
  run(&r, s.root, "queues", "orders", "--json", NULL);
  expect_code(&r, 0, "queues orders --json");
  assert_non_null(strstr(r.out, "\"depth\":3,"));
  assert_non_null(strstr(r.out, "\"dlqDepth\":0,"));
  run_free(&r);
  run(&r, s.root, "queues", "missing", NULL);
  expect_code(&r, 1, "queues missing");
  assert_string_equal(r.err, "crescent queues: no queue 'missing' on the server\n");
  run_free(&r);
  run(&r, s.root, "queues", "--redrive", NULL);
  expect_code(&r, 2, "queues --redrive without a name");
  run_free(&r);
  /* A server that is not there. */
  run(&r, s.root, "queues", "--url", "http://127.0.0.1:1", NULL);
  expect_code(&r, 1, "queues of no server");
  assert_true(strlen(r.err) > 0);
  run_free(&r);
  unsetenv("CRESCENT_URL");
  unsetenv("CRESCENT_ADMIN_TOKEN");
  assert_int_equal(srv_stop(&s), 0);
}

/* --- help, version ------------------------------------------------------------------------------ */

static void help_json_and_exit_codes(void **state) {
  (void)state;
  srv_t s;
  scratch(&s);
  run_t r;
  const char *cmds[] = {"stats", "queues", "test", "new", "check", "version", "invoke", "keys"};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    run(&r, s.root, cmds[i], "--help", NULL);
    expect_code(&r, 0, cmds[i]);
    char want[64];
    snprintf(want, sizeof want, "usage: crescent %s", cmds[i]);
    assert_int_equal(strncmp(r.out, want, strlen(want)), 0);
    run_free(&r);
  }
  run(&r, s.root, "--help", NULL);
  expect_code(&r, 0, "--help");
  assert_non_null(strstr(r.out, "  crescent stats [NAME] [--watch]"));
  assert_non_null(strstr(r.out, "  crescent queues [NAME] [--redrive]"));
  assert_non_null(strstr(r.out, "  crescent test [DIR]"));
  assert_non_null(strstr(r.out, "exit status: 0 done, 1 failed"));
  run_free(&r);
  run(&r, s.root, "version", "--json", NULL);
  expect_code(&r, 0, "version --json");
  assert_int_equal(strncmp(r.out, "{\"crescent\":\"", 13), 0);
  assert_non_null(strstr(r.out, "\",\"luajit\":\"LuaJIT "));
  assert_non_null(strstr(r.out, "\",\"libuv\":\""));
  assert_non_null(strstr(r.out, "\",\"hiredis\":\""));
  assert_string_equal(r.out + strlen(r.out) - 3, "\"}\n");
  run_free(&r);
  run(&r, s.root, "stats", "a", "b", NULL);
  expect_code(&r, 2, "stats a b");
  assert_non_null(strstr(r.err, "crescent stats: unexpected argument 'b'"));
  run_free(&r);
  cleanup(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(new_every_trigger_passes_its_test),
      cmocka_unit_test(test_reports_failures),
      cmocka_unit_test(stats_and_queues),
      cmocka_unit_test(help_json_and_exit_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
