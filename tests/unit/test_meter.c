/* test_meter.c - how core/exec/meter.c counts an invocation: errors and
 * client errors apart, and the report line's outcome. The HTTP side (a bad
 * body through event.json()) is in tests/integration/test_observe.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "meter.h"

static void test_client_error_rule(void **state) {
  (void)state;
  assert_true(cr_meter_client_error(CR_OUTCOME_ERROR, 400));
  assert_true(cr_meter_client_error(CR_OUTCOME_ERROR, 499));
  assert_false(cr_meter_client_error(CR_OUTCOME_ERROR, 500));
  assert_false(cr_meter_client_error(CR_OUTCOME_ERROR, 399));
  /* A function that returns a 4xx answered as it meant to. */
  assert_false(cr_meter_client_error(CR_OUTCOME_OK, 404));
  assert_false(cr_meter_client_error(CR_OUTCOME_TIMEOUT, 408));
  assert_false(cr_meter_client_error(CR_OUTCOME_MEMORY, 400));
}

/* Reports one invocation of ver that ended with outcome and status; returns its report line (static). */
static const char *report(cr_meter_t *m, cr_fnver_t *ver, cr_outcome_t outcome, int status) {
  static char line[2048];
  char path[] = "/tmp/cr-meter-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  cr_log_flush();
  fflush(stdout);
  int saved = dup(1);
  assert_int_equal(dup2(fd, 1), 1);
  cr_invocation_t inv;
  memset(&inv, 0, sizeof inv);
  inv.reqid = "req-m";
  inv.start_ns = 1000000;
  inv.end_ns = 3500000;
  inv.outcome = outcome;
  cr_meter_report(m, ver, &inv, 0, "fake", status, NULL, NULL);
  cr_log_flush();
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  ssize_t n = pread(fd, line, sizeof line - 1, 0);
  close(fd);
  unlink(path);
  assert_true(n > 0);
  line[n] = '\0';
  return line;
}

static void test_counters_and_outcomes(void **state) {
  (void)state;
  cr_shm_t *shm = cr_shm_create(1);
  assert_non_null(shm);
  cr_meter_t *m = cr_meter_new(shm);
  cr_fn_t fn;
  memset(&fn, 0, sizeof fn);
  fn.name = "f";
  fn.slot = 3;
  cr_fnver_t ver;
  memset(&ver, 0, sizeof ver);
  ver.fn = &fn;
  ver.number = 1;
  ver.settings.memory = 128;

  const char *l = report(m, &ver, CR_OUTCOME_ERROR, 400);
  assert_non_null(strstr(l, "\"status\":400,\"outcome\":\"client_error\""));
  l = report(m, &ver, CR_OUTCOME_OK, 404);
  assert_null(strstr(l, "\"outcome\""));
  l = report(m, &ver, CR_OUTCOME_ERROR, 500);
  assert_non_null(strstr(l, "\"status\":500,\"outcome\":\"error\""));
  l = report(m, &ver, CR_OUTCOME_OK, 503);
  assert_null(strstr(l, "\"outcome\""));
  l = report(m, &ver, CR_OUTCOME_TIMEOUT, 504);
  assert_non_null(strstr(l, "\"outcome\":\"timeout\""));
  cr_meter_flush(m);

  cr_shm_fn_t *f = &shm->fns[3];
  assert_int_equal(atomic_load(&f->invocations), 5);
  assert_int_equal(atomic_load(&f->client_errors), 1); /* the raised error answered 400 */
  assert_int_equal(atomic_load(&f->errors), 3);        /* raised (500), answered 503, timed out */
  assert_int_equal(atomic_load(&f->timeouts), 1);
  cr_meter_free(m);
  cr_shm_destroy(shm);
}

int main(void) {
  cr_log_setup(-1, 0);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_client_error_rule),
      cmocka_unit_test(test_counters_and_outcomes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
