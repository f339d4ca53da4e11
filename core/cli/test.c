/* test.c - crescent test [DIR]: runs the functions' tests on a throwaway server.
 *
 * Tests are Lua files named NAME_test.lua, under DIR (the functions folder; the server never
 * takes them for functions, registry.h) or under a tests/ folder beside it. Each runs the way
 * production would run the code it tests: this command copies DIR into a temporary folder,
 * adds the assertion library (lua/testing.lua, as lib/crescent_test_runner.lua) and one
 * wrapper function per test file (crescent-test/N.lua: the file's text inside a function, on
 * its own line numbers), starts `crescent serve` on it (one worker, a port of its own on
 * 127.0.0.1, its own managed redis-server on a unix socket in the temporary folder: a Redis
 * nobody else uses, gone afterwards), invokes each wrapper through POST /_/invoke and reads
 * back which tests passed. The functions under test run with their own settings, instances
 * and limits (t.invoke is crescent.invoke.call) against the real stdlib.
 *
 * Output: one line per test ("ok", or "FAIL" and the error with the test file's FILE:LINE),
 * then "N passed, M failed (F files, T s)". --json: {"passed","failed","tests":[{"file",
 * "name","ok","error"}]}. Exit status: 0 every test passed, 1 a test failed (or none was
 * found, or the server could not start), 2 a usage error. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "httpc.h"
#include "jsonread.h"
#include "jsontext.h"
#include "cli.h"

extern const char cr_lua_testing[];
extern const size_t cr_lua_testing_len;

static const char *const test_flags[] = {"functions", NULL};

const cr_cli_cmd_t cr_cli_test = {
    .name = "test",
    .args = "[DIR] [--json]",
    .about = "Runs the tests of the functions in DIR (default: the --functions folder, ./functions):\n"
             "every NAME_test.lua under DIR, or under a tests/ folder beside it. Each runs on a\n"
             "throwaway server (DIR copied to a temporary folder, one worker, its own redis-server),\n"
             "with the real stdlib; t.invoke runs a function as the server does. Prints a line per\n"
             "test and a summary; --json prints them as JSON. Exit status: 0 all passed, 1 a test\n"
             "failed (or there were none, or the server did not start), 2 a usage error.\n"
             "The API (local t = require \"crescent.test\"): t.test(name, fn), t.invoke(name, event),\n"
             "t.call(name, event), t.equal(got, want[, msg]), t.ok(v[, msg]), t.raises(fn[, pattern]),\n"
             "t.fail(msg). See README, \"The command line\".\n",
    .max_args = 1,
    .reads_config = 1,
    .flags = test_flags,
};

typedef struct {
  char **v;
  int n, cap;
} list_t;

static void push(list_t *l, const char *s) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 16;
    l->v = cr_xrealloc(l->v, sizeof(char *) * (size_t)l->cap);
  }
  l->v[l->n++] = cr_xstrdup(s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every NAME_test.lua under dir (not in a folder starting with '.' or '_'), at most 16 deep. */
static void find_tests(const char *dir, int depth, list_t *out) {
  DIR *d = depth < 16 ? opendir(dir) : NULL;
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' || e->d_name[0] == '_') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st)) continue;
    size_t n = strlen(e->d_name);
    if (S_ISDIR(st.st_mode)) find_tests(path, depth + 1, out);
    else if (S_ISREG(st.st_mode) && n > 9 && strcmp(e->d_name + n - 9, "_test.lua") == 0) push(out, path);
  }
  closedir(d);
}

static int run(char *const argv[]) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDIN_FILENO);
    }
    execvp(argv[0], argv);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, len, f);
  return fclose(f) == 0 && w == len ? 0 : -1;
}

/* The test file's text inside a function, its lines where they were (the wrapper's own code
 * is on the file's first line and after its last). */
static int write_wrapper(const char *path, const char *test_path) {
  FILE *f = fopen(test_path, "rb");
  if (!f) return -1;
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "local __t = require(\"lib.crescent_test_runner\") local function __suite(require) ");
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) cr_buf_append(&b, chunk, n);
  fclose(f);
  cr_buf_append_str(&b, "\nend\nreturn { timeout = 300, memory = 256, handler = function(event, ctx)\n"
                        "  return __t.run(__suite, require)\nend }\n");
  int rc = write_file(path, b.data, b.len);
  cr_buf_free(&b);
  return rc;
}

/* The server's port, from its "listening" line (10 s at most); -1 when it exited or never said. */
static int wait_listening(pid_t pid, const char *log) {
  for (uint64_t until = cr_clock_ns() + 20000000000ull; cr_clock_ns() < until;) {
    FILE *f = fopen(log, "r");
    if (f) {
      char line[8192];
      while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "\"msg\":\"listening\"");
        char *q = p ? strstr(line, "\"port\":") : NULL;
        if (q) {
          fclose(f);
          return atoi(q + 7);
        }
      }
      fclose(f);
    }
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return -1;
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

static void stop_server(pid_t pid) {
  kill(pid, SIGTERM);
  for (int i = 0; i < 200; i++) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return;
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

/* The server's error lines (at most 20) on stderr: what a failing test's functions logged. */
static void print_errors(const char *log) {
  FILE *f = fopen(log, "r");
  if (!f) return;
  char line[8192];
  int n = 0;
  while (fgets(line, sizeof line, f) && n < 20)
    if (strstr(line, "\"level\":\"error\"")) {
      if (!n++) fputs("the server's error lines:\n", stderr);
      fputs(line, stderr);
    }
  fclose(f);
}

/* The load error the server keeps for function name (from /_/api/functions) into out; 0 if found. */
static int load_error(const char *base, const char *name, cr_buf_t *out) {
  cr_httpc_resp_t r;
  char err[300];
  if (cr_httpc_request(base, "GET", "/_/api/functions", NULL, NULL, 0, 30, &r, err, sizeof err)) return -1;
  cr_jr_doc_t *d = cr_jr_parse(r.body.data ? r.body.data : "", r.body.len, err, sizeof err);
  const cr_jr_val_t *fns = d ? cr_jr_get(cr_jr_root(d), "functions") : NULL;
  int rc = -1;
  for (const cr_jr_val_t *f = fns ? fns->child : NULL; f && rc; f = f->next) {
    const cr_jr_val_t *e = cr_jr_get(f, "error");
    if (cr_jr_streq(cr_jr_get(f, "name"), name) && e && e->type == CR_JR_STRING) {
      cr_buf_append(out, e->str, e->len);
      rc = 0;
    }
  }
  cr_jr_free(d);
  cr_httpc_free(&r);
  return rc;
}

/* Replaces the wrapper's name in msg with the test file's path, into out. */
static void real_place(cr_buf_t *out, const char *msg, const char *wrapper, const char *file) {
  size_t wl = strlen(wrapper);
  for (const char *p = msg; *p;) {
    const char *hit = strstr(p, wrapper);
    if (!hit) {
      cr_buf_append_str(out, p);
      break;
    }
    cr_buf_append(out, p, (size_t)(hit - p));
    cr_buf_append_str(out, file);
    p = hit + wl;
  }
}

int cr_cmd_test(int argc, char **argv) {
  cr_config_t cfg;
  char *rest[64];
  int nrest;
  /* --json is this command's own, not a server flag. */
  int json = 0;
  char *args[72];
  int nargs = 0;
  for (int i = 0; i < argc && nargs < 70; i++) {
    if (i >= 2 && strcmp(argv[i], "--json") == 0) json = 1;
    else args[nargs++] = argv[i];
  }
  args[nargs] = NULL;
  int rc = cr_cli_start(&cr_cli_test, &cfg, nargs, args, rest, &nrest);
  if (rc >= 0) return rc;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", nrest ? rest[0] : cfg.functions_dir);
  cr_config_free(&cfg);
  size_t dl = strlen(dir);
  while (dl > 1 && dir[dl - 1] == '/') dir[--dl] = '\0';
  struct stat st;
  if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "crescent test: %s: not a folder\n", dir);
    return 1;
  }
  list_t tests = {0};
  find_tests(dir, 0, &tests);
  char beside[4200];
  const char *slash = strrchr(dir, '/');
  if (slash) snprintf(beside, sizeof beside, "%.*s/tests", (int)(slash - dir), dir);
  else snprintf(beside, sizeof beside, "tests");
  find_tests(beside, 0, &tests);
  if (!tests.n) {
    fprintf(stderr, "crescent test: no tests (NAME_test.lua) under %s or %s\n", dir, beside);
    return 1;
  }
  qsort(tests.v, (size_t)tests.n, sizeof *tests.v, cmp_str);

  uint64_t t0 = cr_clock_ns();
  char tmp[] = "/tmp/crescent-lua-tests-XXXXXX"; /* removed when done */
  if (!mkdtemp(tmp)) {
    fprintf(stderr, "crescent test: cannot make a temporary folder: %s\n", strerror(errno));
    return 1;
  }
  char fns[200], src[4200], lib[300], wdir[300], log[300], data[300];
  snprintf(fns, sizeof fns, "%s/functions", tmp);
  snprintf(src, sizeof src, "%s/.", dir);
  snprintf(lib, sizeof lib, "%s/lib", fns);
  snprintf(wdir, sizeof wdir, "%s/crescent-test", fns);
  snprintf(log, sizeof log, "%s/server.log", tmp);
  snprintf(data, sizeof data, "%s/data", tmp);
  char *cp[] = {"cp", "-R", src, fns, NULL};
  mkdir(fns, 0755);
  int failed_setup = run(cp) != 0;
  mkdir(lib, 0755);
  mkdir(wdir, 0755);
  char libfile[400];
  snprintf(libfile, sizeof libfile, "%s/crescent_test_runner.lua", lib);
  if (!failed_setup) failed_setup = write_file(libfile, cr_lua_testing, cr_lua_testing_len) != 0;
  for (int i = 0; i < tests.n && !failed_setup; i++) {
    char w[400];
    snprintf(w, sizeof w, "%s/%d.lua", wdir, i + 1);
    failed_setup = write_wrapper(w, tests.v[i]) != 0;
  }
  int port = -1;
  pid_t pid = -1;
  if (!failed_setup) {
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl > 0) self[sl] = '\0';
    else snprintf(self, sizeof self, "%s", argv[0]);
    pid = fork();
    if (pid == 0) {
      int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      /* The user's crescent.conf and CRESCENT_* are not this server's. */
      if (chdir(tmp) != 0) _exit(126);
      extern char **environ;
      for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++)
          if (strncmp(*e, "CRESCENT_", 9) == 0) {
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
            unsetenv(name);
            again = 1;
            break;
          }
      }
      execl(self, self, "serve", "--functions", fns, "--listen", "127.0.0.1:0", "--workers", "1", "--redis", "auto",
            "--data", data, "--no-watch", "--egress-private", (char *)NULL);
      _exit(127);
    }
    if (pid > 0) port = wait_listening(pid, log);
  }
  if (port <= 0) {
    fprintf(stderr, "crescent test: the test server did not start%s\n", failed_setup ? " (copying the folder failed)" : "");
    print_errors(log);
    if (pid > 0) stop_server(pid);
    char *rm[] = {"rm", "-rf", tmp, NULL};
    run(rm);
    return 1;
  }
  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
  int passed = 0, failed = 0;
  cr_buf_t out = CR_BUF_INIT;
  cr_buf_append_str(&out, "[");
  int first = 1;
  for (int i = 0; i < tests.n; i++) {
    char path[64], wrapper[64];
    snprintf(path, sizeof path, "/_/invoke/crescent-test/%d", i + 1);
    snprintf(wrapper, sizeof wrapper, "crescent-test/%d.lua", i + 1);
    const char *file = tests.v[i];
    cr_httpc_resp_t r;
    char err[600];
    cr_jr_doc_t *d = NULL;
    const cr_jr_val_t *results = NULL;
    cr_buf_t problem = CR_BUF_INIT;
    if (cr_httpc_request(base, "POST", path, "Content-Type: application/json\r\n", "{}", 2, 960, &r, err, sizeof err)) {
      cr_buf_append_str(&problem, err);
    } else {
      char perr[160];
      d = cr_jr_parse(r.body.data ? r.body.data : "", r.body.len, perr, sizeof perr);
      results = d ? cr_jr_get(cr_jr_root(d), "results") : NULL;
      if (r.status != 200 || !results || results->type != CR_JR_ARRAY) {
        const cr_jr_val_t *e = d ? cr_jr_get(cr_jr_root(d), "error") : NULL;
        cr_buf_t why = CR_BUF_INIT;
        char fname[64];
        snprintf(fname, sizeof fname, "crescent-test/%d", i + 1);
        /* A file that does not compile: the server's load error says where. */
        if (load_error(base, fname, &why) != 0)
          cr_buf_append_str(&why, e && e->type == CR_JR_STRING ? e->str : "the test file did not run");
        real_place(&problem, cr_buf_cstr(&why), wrapper, file);
        cr_buf_free(&why);
        results = NULL;
      }
      cr_httpc_free(&r);
    }
    if (!results) {
      failed++;
      if (!json) printf("FAIL %s\n     %s\n", file, cr_buf_cstr(&problem));
      cr_buf_append_str(&out, first ? "" : ",");
      first = 0;
      cr_buf_append_str(&out, "{\"file\":");
      cr_json_escape(&out, file, strlen(file));
      cr_buf_append_str(&out, ",\"name\":null,\"ok\":false,\"error\":");
      cr_json_escape(&out, problem.data ? problem.data : "", problem.len);
      cr_buf_append_str(&out, "}");
    }
    for (const cr_jr_val_t *t = results ? results->child : NULL; t; t = t->next) {
      const cr_jr_val_t *name = cr_jr_get(t, "name"), *ok = cr_jr_get(t, "ok"), *e = cr_jr_get(t, "error");
      int pass = ok && ok->type == CR_JR_TRUE;
      const char *nm = name && name->type == CR_JR_STRING ? name->str : "?";
      cr_buf_t msg = CR_BUF_INIT;
      if (!pass) real_place(&msg, e && e->type == CR_JR_STRING ? e->str : "failed", wrapper, file);
      if (pass) passed++;
      else failed++;
      if (!json && pass) printf("ok   %s: %s\n", file, nm);
      else if (!json) printf("FAIL %s: %s\n     %s\n", file, nm, cr_buf_cstr(&msg));
      cr_buf_append_str(&out, first ? "" : ",");
      first = 0;
      cr_buf_append_str(&out, "{\"file\":");
      cr_json_escape(&out, file, strlen(file));
      cr_buf_append_str(&out, ",\"name\":");
      cr_json_escape(&out, nm, strlen(nm));
      cr_buf_append_str(&out, pass ? ",\"ok\":true,\"error\":null}" : ",\"ok\":false,\"error\":");
      if (!pass) {
        cr_json_escape(&out, msg.data ? msg.data : "", msg.len);
        cr_buf_putc(&out, '}');
      }
      cr_buf_free(&msg);
    }
    cr_buf_free(&problem);
    cr_jr_free(d);
    fflush(stdout); /* each file's lines as it ends */
  }
  cr_buf_append_str(&out, "]");
  if (json) printf("{\"passed\":%d,\"failed\":%d,\"tests\":%s}\n", passed, failed, cr_buf_cstr(&out));
  else
    printf("%d passed, %d failed (%d file%s, %.1f s)\n", passed, failed, tests.n, tests.n == 1 ? "" : "s",
           (double)(cr_clock_ns() - t0) / 1e9);
  fflush(stdout);
  if (failed) print_errors(log);
  cr_buf_free(&out);
  stop_server(pid);
  char *rm[] = {"rm", "-rf", tmp, NULL};
  run(rm);
  for (int i = 0; i < tests.n; i++) free(tests.v[i]);
  free(tests.v);
  return failed ? 1 : 0;
}
