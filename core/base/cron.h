/* cron.h - schedule expressions and their fire times (schedule triggers).
 *
 * Forms (README "Schedules"):
 *   "m h dom mon dow"       standard 5-field cron: *, lists (1,5), ranges
 *                           (1-5), steps (*\/15, 1-30/2, 5/10 = 5-max/10),
 *                           names JAN-DEC and SUN-SAT (any case), Sunday 0
 *                           or 7. Day of month and day of week: when both
 *                           are restricted (neither starts with '*'), a day
 *                           matching either fires (Vixie cron / cronie);
 *                           otherwise both must match.
 *   "@yearly" "@annually" "@monthly" "@weekly" "@daily" "@midnight" "@hourly"
 *   "cron(m h dom mon dow year)"  AWS's 6 fields: one of dom and dow is
 *                           '?', dow is 1-7 with 1 = SUN (AWS's numbering),
 *                           year 1970-2199; L, W and # are refused.
 *   "rate(N unit)"          unit minute(s), hour(s), day(s), and second(s)
 *                           (a crescent extension; N >= 1): fires at every
 *                           multiple of the period counted from the Unix
 *                           epoch, so every worker and node agrees without
 *                           talking (rate(5 minutes): :00, :05, ...).
 * Times are UTC, or wall-clock time in a zone (tz.h) when one is given;
 * there the DST rule is cronie's: a job whose hour field allows every hour
 * runs by the clock (a time the clocks skip is skipped, a repeated time runs
 * at both instants); any other runs a skipped time once, at the change, and
 * a repeated time once, at its first instant. Rates ignore the zone.
 *
 * An expression that can never fire (day 30 of February only) is refused.
 * Errors name the field: "field 2 (hour) '25': 25 is out of range 0-23". */
#ifndef CR_CRON_H
#define CR_CRON_H

#include <stddef.h>
#include <stdint.h>

typedef struct cr_cron_s cr_cron_t;

/* Parses expr (tz: a zone name, or NULL for UTC). NULL with a message in
 * err when it is not valid (or out of memory). */
cr_cron_t *cr_cron_parse(const char *expr, const char *tz, char *err, size_t errlen);
void cr_cron_free(cr_cron_t *c);

/* The first fire time strictly after after_ms (Unix ms), or -1 when there is
 * none (a year list in the past, a date that never comes). */
int64_t cr_cron_next(const cr_cron_t *c, int64_t after_ms);
/* The last fire time in (from_ms, to_ms], or -1. */
int64_t cr_cron_last_in(const cr_cron_t *c, int64_t from_ms, int64_t to_ms);
/* Whether it is a rate(...) (period_ms > 0), and its period. */
int64_t cr_cron_period_ms(const cr_cron_t *c);

#endif
