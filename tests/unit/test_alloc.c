/* test_alloc.c - set-up allocation (core/base/alloc.c): what it returns, and
 * that running out of memory logs one line and aborts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"

static void test_allocations(void **state) {
  (void)state;
  char *p = cr_xmalloc(0); /* one byte, not NULL */
  assert_non_null(p);
  free(p);
  int *z = cr_xcalloc(100, sizeof *z);
  for (int i = 0; i < 100; i++) assert_int_equal(z[i], 0);
  free(z);
  assert_non_null(z = cr_xcalloc(0, 8));
  free(z);
  p = cr_xmalloc(4);
  memcpy(p, "abcd", 4);
  p = cr_xrealloc(p, 1 << 20);
  assert_memory_equal(p, "abcd", 4);
  p[(1 << 20) - 1] = 'x';
  p = cr_xrealloc(p, 0);
  assert_non_null(p);
  free(p);
  p = cr_xrealloc(NULL, 16); /* realloc(NULL) is malloc */
  assert_non_null(p);
  free(p);
  p = cr_xstrdup("");
  assert_string_equal(p, "");
  free(p);
  p = cr_xstrdup("hello");
  assert_string_equal(p, "hello");
  free(p);
  p = cr_xstrndup("hello", 3);
  assert_string_equal(p, "hel");
  free(p);
  p = cr_xstrndup("hi", 10); /* n past the end: the whole string */
  assert_string_equal(p, "hi");
  free(p);
  p = cr_xstrndup("a\0b", 3); /* stops at the NUL */
  assert_string_equal(p, "a");
  free(p);
}

/* Runs what(arg) in a child with stdout on a pipe: it must die of SIGABRT
 * after writing exactly one log line, returned in out. */
static void expect_abort(void (*what)(size_t), size_t arg, char *out, size_t outlen) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(stdout);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGABRT, SIG_DFL);
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    what(arg);
    _exit(0); /* not reached */
  }
  close(fds[1]);
  size_t got = 0;
  ssize_t n;
  while (got < outlen - 1 && (n = read(fds[0], out + got, outlen - 1 - got)) > 0) got += (size_t)n;
  out[got] = '\0';
  close(fds[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) fail_msg("the child did not abort (status %d): %s", status, out);
  const char *nl = strchr(out, '\n');
  if (!nl || nl[1] != '\0') fail_msg("not exactly one line: %s", out);
}

static void call_oom(size_t n) { cr_oom(n); }

#ifndef CRESCENT_SANITIZE
static void call_xmalloc(size_t n) {
  void *p = cr_xmalloc(n);
  free(p);
}
#endif

static void test_oom_logs_and_aborts(void **state) {
  (void)state;
  char out[512];
  expect_abort(call_oom, 12345, out, sizeof out);
  if (strncmp(out, "{\"time\":\"", 9) != 0 ||
      !strstr(out, "\",\"level\":\"error\",\"msg\":\"out of memory allocating 12345 bytes: aborting\"}\n"))
    fail_msg("the line: %s", out);
#ifndef CRESCENT_SANITIZE
  /* An allocation no machine can satisfy (ASan would report it itself). */
  expect_abort(call_xmalloc, SIZE_MAX / 2, out, sizeof out);
  char want[100];
  snprintf(want, sizeof want, "out of memory allocating %zu bytes: aborting", SIZE_MAX / 2);
  if (!strstr(out, want)) fail_msg("the line: %s", out);
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_allocations),
      cmocka_unit_test(test_oom_logs_and_aborts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
