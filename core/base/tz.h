/* tz.h - time zones from the system's zoneinfo (Debian's tzdata), read by
 * crescent itself: no setenv("TZ")/tzset, whose zone is process-wide.
 *
 * A zone is loaded from /usr/share/zoneinfo/NAME (TZif version 2 or later:
 * its 64-bit transitions, then its footer's POSIX TZ rule for the times
 * after the last one, e.g. "CET-1CEST,M3.5.0,M10.5.0/3"). Names are
 * IANA's: 1-128 of letters, digits, '/', '_', '-', '+', no segment
 * starting with '.' (so no path escapes the folder). */
#ifndef CR_TZ_H
#define CR_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct cr_tz_s cr_tz_t;

/* Loads zone name; NULL with a message in err ("unknown time zone 'X'"...). */
cr_tz_t *cr_tz_load(const char *name, char *err, size_t errlen);
/* The same from a folder other than /usr/share/zoneinfo (tests). */
cr_tz_t *cr_tz_load_from(const char *dir, const char *name, char *err, size_t errlen);
void cr_tz_free(cr_tz_t *z);

/* The zone's offset from UTC (seconds, east positive) at Unix time t (s). */
int32_t cr_tz_offset(const cr_tz_t *z, int64_t t);
/* The first instant after t (s) where the offset changes, or INT64_MAX if
 * none within 400 years. */
int64_t cr_tz_next_change(const cr_tz_t *z, int64_t t);

/* The proleptic Gregorian calendar (H. Hinnant's algorithms), for cron.c:
 * days since 1970-01-01 of y-m-d, and back; and a division rounding down. */
int64_t cr_days_from_civil(int64_t y, int m, int d);
void cr_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
int64_t cr_floor_div(int64_t a, int64_t b);

#endif
