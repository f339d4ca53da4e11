/* test_cron.c - core/base/cron.c and tz.c: expressions and their next fire times, exactly (month
 * ends, leap years, the day-of-month / day-of-week rule, Sunday as 0 and 7, steps, lists of ranges,
 * names, macros, AWS's cron() and rate(), time zones across DST changes both ways and in the
 * southern hemisphere), and every kind of error message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cron.h"
#include "tz.h"

/* "2026-12-02T10:07:13Z" -> Unix ms (the tests' times are UTC). */
static int64_t at(const char *iso) {
  int y, mo, d, h, mi, s = 0, ms = 0;
  int n = sscanf(iso, "%d-%d-%dT%d:%d:%d.%d", &y, &mo, &d, &h, &mi, &s, &ms);
  assert_true(n >= 5);
  return (cr_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000 + ms;
}

static void refused(const char *expr, const char *tz, const char *want);

static void next_is(const char *expr, const char *tz, const char *after, const char *want) {
  char err[300];
  cr_cron_t *c = cr_cron_parse(expr, tz, err, sizeof err);
  if (!c) fail_msg("%s: %s", expr, err);
  int64_t got = cr_cron_next(c, at(after));
  int64_t w = want ? at(want) : -1;
  if (got != w) {
    time_t g = (time_t)(got / 1000);
    struct tm tm;
    char buf[64] = "-1";
    if (got >= 0) strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&g, &tm));
    fail_msg("%s (tz %s) after %s: got %s, want %s", expr, tz ? tz : "UTC", after, buf, want ? want : "none");
  }
  cr_cron_free(c);
}

static void refused(const char *expr, const char *tz, const char *want) {
  char err[300];
  cr_cron_t *c = cr_cron_parse(expr, tz, err, sizeof err);
  if (c) fail_msg("accepted: %s", expr);
  if (strcmp(err, want) != 0) fail_msg("%s:\n   got: %s\n  want: %s", expr, err, want);
}

static void test_standard(void **state) {
  (void)state;
  next_is("0 2 * * *", NULL, "2026-12-02T10:00", "2026-12-03T02:00");
  next_is("0 2 * * *", NULL, "2026-12-03T01:59:59.999", "2026-12-03T02:00");
  next_is("0 2 * * *", NULL, "2026-12-03T02:00", "2026-12-04T02:00"); /* strictly after */
  next_is("*/15 * * * *", NULL, "2026-12-02T10:07", "2026-12-02T10:15");
  next_is("*/15 * * * *", NULL, "2026-12-02T23:59", "2026-12-03T00:00");
  next_is("5/20 * * * *", NULL, "2026-12-02T10:26", "2026-12-02T10:45");
  next_is("1-10/3,50-52 * * * *", NULL, "2026-12-02T10:08", "2026-12-02T10:10");
  next_is("1-10/3,50-52 * * * *", NULL, "2026-12-02T10:11", "2026-12-02T10:50");
  next_is("0 9-17/4,20 * * mon-fri", NULL, "2026-12-05T00:00", "2026-12-07T09:00"); /* Sat -> Mon */
  next_is("0 9-17/4,20 * * mon-fri", NULL, "2026-12-07T13:00", "2026-12-07T17:00");
  next_is("0 9-17/4,20 * * mon-fri", NULL, "2026-12-07T17:00", "2026-12-07T20:00");
  /* Month ends and leap years. */
  next_is("0 0 31 * *", NULL, "2026-04-01T00:00", "2026-05-31T00:00");
  next_is("0 0 30 * *", NULL, "2026-01-31T00:00", "2026-03-30T00:00");
  next_is("0 0 29 2 *", NULL, "2026-01-01T00:00", "2028-02-29T00:00");
  next_is("0 0 29 2 *", NULL, "2096-03-01T00:00", "2104-02-29T00:00"); /* 2100 is not a leap year */
  refused("0 0 30 2 *", NULL, "never fires: no allowed month has the day of month (field 3)");
  refused("0 0 31 4,6 *", NULL, "never fires: no allowed month has the day of month (field 3)");
  next_is("0 0 31 4,6 MON", NULL, "2026-04-01T00:00", "2026-04-06T00:00"); /* the day of week still fires */
  next_is("59 23 31 12 *", NULL, "2026-12-31T23:59", "2027-12-31T23:59");
  /* Sunday as 0 and 7, names in any case, months by name. */
  next_is("0 0 * * 0", NULL, "2026-12-02T00:00", "2026-12-06T00:00");
  next_is("0 0 * * 7", NULL, "2026-12-02T00:00", "2026-12-06T00:00");
  next_is("0 0 * * Sun", NULL, "2026-12-02T00:00", "2026-12-06T00:00");
  next_is("0 0 1 jan,JUL *", NULL, "2026-02-01T00:00", "2026-07-01T00:00");
  /* Day of month OR day of week when both are restricted; AND when one starts with '*'. */
  next_is("0 0 1 * MON", NULL, "2026-12-02T00:00", "2026-12-07T00:00");
  next_is("0 0 1 * MON", NULL, "2026-12-28T00:00", "2027-01-01T00:00");
  next_is("0 0 */2 * MON", NULL, "2026-12-02T00:00", "2026-12-07T00:00"); /* odd days and Mondays: 7 */
  next_is("0 0 13 * 5", NULL, "2026-12-01T00:00", "2026-12-04T00:00");   /* Friday the 4th first */
  /* Macros. */
  next_is("@yearly", NULL, "2026-12-02T10:07:13", "2027-01-01T00:00");
  next_is("@annually", NULL, "2026-12-02T10:07:13", "2027-01-01T00:00");
  next_is("@monthly", NULL, "2026-12-02T10:07:13", "2027-01-01T00:00");
  next_is("@weekly", NULL, "2026-12-02T10:07:13", "2026-12-06T00:00");
  next_is("@daily", NULL, "2026-12-02T10:07:13", "2026-12-03T00:00");
  next_is("@midnight", NULL, "2026-12-02T10:07:13", "2026-12-03T00:00");
  next_is("@hourly", NULL, "2026-12-02T10:07:13", "2026-12-02T11:00");
  next_is("  0 2 * * *  ", NULL, "2026-12-02T10:00", "2026-12-03T02:00");
}

static void test_aws(void **state) {
  (void)state;
  next_is("cron(0 2 * * ? *)", NULL, "2026-12-02T10:00", "2026-12-03T02:00");
  next_is("cron(0 12 ? * 1 2027)", NULL, "2026-12-02T10:00", "2027-01-03T12:00"); /* 1 = Sunday */
  next_is("cron(0 12 ? * SUN 2027)", NULL, "2026-12-02T10:00", "2027-01-03T12:00");
  next_is("cron(0 0 1 1 ? 2030-2032)", NULL, "2026-12-02T10:00", "2030-01-01T00:00");
  next_is("cron(0 0 1 1 ? 2030-2032)", NULL, "2032-01-01T00:00", NULL);
  next_is("cron(0 2 * * ? 1999)", NULL, "2026-12-02T00:00", NULL);
  next_is("cron(0/30 8-9 ? * MON-FRI *)", NULL, "2026-12-04T09:45", "2026-12-07T08:00");
}

static void test_rate(void **state) {
  (void)state;
  next_is("rate(5 minutes)", NULL, "2026-12-02T10:07:13", "2026-12-02T10:10");
  next_is("rate(1 minute)", NULL, "2026-12-02T10:07:00", "2026-12-02T10:08");
  next_is("rate(1 hour)", NULL, "2026-12-02T10:07:00", "2026-12-02T11:00");
  next_is("rate(7 days)", NULL, "2026-12-02T10:07:00", "2026-12-03T00:00"); /* epoch + 7k days: Thursdays */
  next_is("rate(1 second)", NULL, "2026-12-02T10:07:13.500", "2026-12-02T10:07:14");
  next_is("rate(1 second)", NULL, "2026-12-02T10:07:14", "2026-12-02T10:07:15");
  next_is("rate(10 seconds)", "Europe/Berlin", "2026-12-02T10:07:14", "2026-12-02T10:07:20"); /* zone ignored */
  char err[200];
  cr_cron_t *c = cr_cron_parse("rate(3 seconds)", NULL, err, sizeof err);
  assert_non_null(c);
  assert_int_equal(cr_cron_period_ms(c), 3000);
  assert_int_equal(cr_cron_last_in(c, at("2026-12-02T10:00"), at("2026-12-02T10:00:10")), at("2026-12-02T10:00:09"));
  assert_int_equal(cr_cron_last_in(c, at("2026-12-02T10:00:09"), at("2026-12-02T10:00:10")), -1);
  cr_cron_free(c);
  c = cr_cron_parse("0 2 * * *", NULL, err, sizeof err);
  assert_int_equal(cr_cron_period_ms(c), 0);
  assert_int_equal(cr_cron_last_in(c, at("2026-11-30T00:00"), at("2026-12-02T10:00")), at("2026-12-02T02:00"));
  assert_int_equal(cr_cron_last_in(c, at("2026-12-02T02:00"), at("2026-12-02T10:00")), -1);
  cr_cron_free(c);
}

static void test_zones(void **state) {
  (void)state;
  /* Europe/Berlin: CET +1, CEST +2 from 2026-03-29 01:00Z to 2026-10-25 01:00Z. */
  next_is("0 2 * * *", "Europe/Berlin", "2026-12-02T10:00", "2026-12-03T01:00");
  next_is("0 2 * * *", "Europe/Berlin", "2026-07-02T10:00", "2026-07-03T00:00");
  /* Spring forward: 02:30 does not exist on 2026-03-29: once, at the change. */
  next_is("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00", "2026-03-28T01:30");
  next_is("30 2 * * *", "Europe/Berlin", "2026-03-28T01:30", "2026-03-29T01:00");
  next_is("30 2 * * *", "Europe/Berlin", "2026-03-29T01:00", "2026-03-30T00:30");
  /* every minute of the skipped hour fires once, at the change */
  next_is("*/20 2 * * *", "Europe/Berlin", "2026-03-29T00:59", "2026-03-29T01:00");
  next_is("*/20 2 * * *", "Europe/Berlin", "2026-03-29T01:00", "2026-03-30T00:00");
  /* Fall back: 02:30 happens twice on 2026-10-25 (00:30Z CEST, 01:30Z CET): the first only. */
  next_is("30 2 * * *", "Europe/Berlin", "2026-10-24T23:00", "2026-10-25T00:30");
  next_is("30 2 * * *", "Europe/Berlin", "2026-10-25T00:30", "2026-10-26T01:30");
  /* ... but a job of every hour runs by the clock: in both, and not in a skipped hour. */
  next_is("30 * * * *", "Europe/Berlin", "2026-03-29T00:30", "2026-03-29T01:30"); /* 03:30 CEST: 02:30 skipped */
  next_is("*/10 */2 * * *", "Europe/Berlin", "2026-03-29T00:55", "2026-03-29T01:00"); /* every 2 h: at the change */
  next_is("30 * * * *", "Europe/Berlin", "2026-10-25T00:30", "2026-10-25T01:30");
  next_is("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:10", "2026-10-25T00:30");
  next_is("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:30", "2026-10-25T01:00");
  next_is("*/30 * * * *", "Europe/Berlin", "2026-10-25T01:00", "2026-10-25T01:30");
  /* America/New_York: EDT starts 2026-03-08 07:00Z, ends 2026-11-01 06:00Z. */
  next_is("0 9 * * *", "America/New_York", "2026-03-07T15:00", "2026-03-08T13:00");
  next_is("30 2 * * *", "America/New_York", "2026-03-08T05:00", "2026-03-08T07:00");
  next_is("30 1 * * *", "America/New_York", "2026-11-01T04:00", "2026-11-01T05:30");
  next_is("30 1 * * *", "America/New_York", "2026-11-01T05:30", "2026-11-02T06:30");
  /* Australia/Sydney: AEDT +11 until 2026-04-05 16:00Z, AEST +10, AEDT again from 2026-10-03 16:00Z. */
  next_is("0 0 * * *", "Australia/Sydney", "2026-12-02T00:00", "2026-12-02T13:00");
  next_is("0 0 * * *", "Australia/Sydney", "2026-06-02T00:00", "2026-06-02T14:00");
  next_is("30 2 * * *", "Australia/Sydney", "2026-10-03T00:00", "2026-10-03T16:00"); /* skipped: at the change */
  next_is("30 2 * * *", "Australia/Sydney", "2026-04-04T00:00", "2026-04-04T15:30"); /* first 02:30 */
  /* Past the zone file's last transition: its footer rule (2100). */
  next_is("0 12 1 7 *", "Europe/Berlin", "2100-01-01T00:00", "2100-07-01T10:00");
  next_is("0 12 1 12 *", "Europe/Berlin", "2100-01-01T00:00", "2100-12-01T11:00");
  next_is("0 0 * * *", "UTC", "2026-12-02T10:00", "2026-12-03T00:00");
  next_is("0 0 * * *", "Asia/Kolkata", "2026-12-02T10:00", "2026-12-02T18:30");
}

static void test_tz_offsets(void **state) {
  (void)state;
  char err[200];
  cr_tz_t *z = cr_tz_load("Europe/Berlin", err, sizeof err);
  assert_non_null(z);
  assert_int_equal(cr_tz_offset(z, at("2026-03-29T00:59:59") / 1000), 3600);
  assert_int_equal(cr_tz_offset(z, at("2026-03-29T01:00") / 1000), 7200);
  assert_int_equal(cr_tz_next_change(z, at("2026-03-01T00:00") / 1000), at("2026-03-29T01:00") / 1000);
  assert_int_equal(cr_tz_next_change(z, at("2026-03-29T01:00") / 1000), at("2026-10-25T01:00") / 1000);
  assert_int_equal(cr_tz_offset(z, at("2150-07-01T00:00") / 1000), 7200);
  assert_int_equal(cr_tz_offset(z, at("2150-01-01T00:00") / 1000), 3600);
  cr_tz_free(z);
}

static void test_errors(void **state) {
  (void)state;
  refused("", NULL, "empty or too long (1 to 256 bytes)");
  refused("0 25 * * *", NULL, "field 2 (hour) '25': 25 is out of range 0-23");
  refused("60 * * * *", NULL, "field 1 (minute) '60': 60 is out of range 0-59");
  refused("* * 0 * *", NULL, "field 3 (day of month) '0': 0 is out of range 1-31");
  refused("* * * 13 *", NULL, "field 4 (month) '13': 13 is out of range 1-12");
  refused("* * * * 8", NULL, "field 5 (day of week) '8': 8 is out of range 0-7");
  refused("* * * FOO *", NULL, "field 4 (month) 'FOO': 'FOO' is not a number or a name");
  refused("5-1 * * * *", NULL, "field 1 (minute) '5-1': range 5-1 goes backwards");
  refused("*/0 * * * *", NULL, "field 1 (minute) '*/0': a step must be at least 1");
  refused("*/ * * * *", NULL, "field 1 (minute) '*/': a step needs a number");
  refused("1- * * * *", NULL, "field 1 (minute) '1-': a range needs an end");
  refused("1x * * * *", NULL, "field 1 (minute) '1x': unexpected 'x'");
  refused("0 2 L * *", NULL, "field 3 (day of month) 'L': 'L' is not supported (AWS's L, W and # are not)");
  refused("0 2 * * 5#3", NULL, "field 5 (day of week) '5#3': '#' is not supported (AWS's L, W and # are not)");
  refused("0 2 * * ?", NULL, "field 5 (day of week) '?': '?' is not a number or a name");
  refused("0 2 * *", NULL,
          "a cron expression has 4 fields, not 5 (minute hour day-of-month month day-of-week)");
  refused("0 2 * * * *", NULL,
          "a cron expression has 6 fields, not 5 (minute hour day-of-month month day-of-week)");
  refused("cron(0 2 * * ?)", NULL,
          "cron(...) has 5 fields, not 6 (minute hour day-of-month month day-of-week year)");
  refused("cron(0 2 * * * *)", NULL,
          "cron(...): exactly one of day-of-month (field 3) and day-of-week (field 5) must be '?'");
  refused("cron(0 2 ? * ? *)", NULL,
          "cron(...): exactly one of day-of-month (field 3) and day-of-week (field 5) must be '?'");
  refused("cron(0 2 * * 0 *)", NULL, "field 5 (day of week) '0': 0 is out of range 1-7");
  refused("cron(0 2 * * ? 2300)", NULL, "field 6 (year) '2300': 2300 is out of range 1970-2199");
  refused("cron(0 2 * * ? *", NULL, "cron(...) must end with ')'");
  refused("cron(15 10 ? * 6L 2027)", NULL, "field 5 (day of week) '6L': 'L' is not supported (AWS's L, W and # are not)");
  refused("@reboot", NULL, "unknown macro '@reboot' (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)");
  refused("rate(0 minutes)", NULL, "rate: 0 minutes is out of range (1 second to 3650 days)");
  refused("rate(5 fortnights)", NULL, "rate: unknown unit 'fortnights' (seconds, minutes, hours or days)");
  refused("rate(5)", NULL, "rate must be 'rate(N unit)' with unit seconds, minutes, hours or days");
  refused("rate(1.5 minutes)", NULL, "rate must be 'rate(N unit)' with unit seconds, minutes, hours or days");
  refused("0 2 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus' (no /usr/share/zoneinfo/Mars/Olympus)");
  refused("0 2 * * *", "../../etc/passwd", "'../../etc/passwd' is not a time zone name (like Europe/Berlin)");
  refused("0 2 * * *", "Europe/../../etc", "'Europe/../../etc' is not a time zone name (like Europe/Berlin)");
  refused("0 2 * * *", "/etc/passwd", "'/etc/passwd' is not a time zone name (like Europe/Berlin)");
  refused("0 2 * * *", "Europe", "time zone 'Europe': /usr/share/zoneinfo/Europe is not a zoneinfo (TZif 2+) file");
  refused("0 2 * * *", "", "'' is not a time zone name (like Europe/Berlin)");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_standard), cmocka_unit_test(test_aws), cmocka_unit_test(test_rate),
      cmocka_unit_test(test_zones),    cmocka_unit_test(test_tz_offsets), cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
