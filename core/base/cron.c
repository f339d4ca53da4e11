/* cron.c - schedule expressions (cron.h). */
#include "cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tz.h"

#define YEAR_MIN 1970
#define YEAR_MAX 2199

struct cr_cron_s {
  int64_t period_ms;      /* rate(...): > 0 */
  uint64_t minute, hour;  /* bit n: n allowed */
  uint32_t dom;           /* bits 1..31 */
  uint16_t month;         /* bits 1..12 */
  uint8_t dow;            /* bits 0..6, 0 = Sunday */
  int dom_star, dow_star; /* the field started with '*' (or was '?') */
  int hour_star;          /* (the field started with '*') */
  int frequent;           /* every hour allowed: runs by the clock across DST changes (cronie) */
  int has_years;
  uint8_t years[YEAR_MAX - YEAR_MIN + 1];
  cr_tz_t *tz;
};

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

typedef struct {
  const char *name;
  int lo, hi;
  const char *const *names; /* names[i] is lo + i (months from 1, days from 0) */
  int nnames;
  int names_base;
} field_t;

/* A number or a name at *p; advances. -1 if neither. */
static int value(const char **p, const field_t *f) {
  const char *s = *p;
  if (isdigit((unsigned char)*s)) {
    long v = 0;
    while (isdigit((unsigned char)*s) && v < 100000) v = v * 10 + (*s++ - '0');
    *p = s;
    return (int)v;
  }
  for (int i = 0; f->names && i < f->nnames; i++)
    if (strncasecmp(s, f->names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
      *p = s + 3;
      return f->names_base + i;
    }
  return -1;
}

/* Parses one field (text up to its end) into out[lo..hi] flags. 0, or -1 with why. */
static int parse_field(const char *text, const field_t *f, uint8_t *out, int *star, int allow_q, char *why,
                       size_t whylen) {
  *star = text[0] == '*' || (allow_q && text[0] == '?');
  if (allow_q && strcmp(text, "?") == 0) {
    for (int v = f->lo; v <= f->hi; v++) out[v] = 1;
    return 0;
  }
  const char *p = text;
  for (;;) {
    int a, b, step = 1, single = 0;
    if (*p == '*') {
      a = f->lo;
      b = f->hi;
      p++;
    } else {
      if ((a = value(&p, f)) < 0) {
        if (strchr("LW#", *p) && *p)
          snprintf(why, whylen, "'%c' is not supported (AWS's L, W and # are not)", *p);
        else
          snprintf(why, whylen, "'%s' is not a number%s", text, f->names ? " or a name" : "");
        return -1;
      }
      b = a;
      single = *p != '-';
      if (*p == '-') {
        p++;
        if ((b = value(&p, f)) < 0) {
          snprintf(why, whylen, "a range needs an end");
          return -1;
        }
      }
    }
    if (*p == '/') {
      p++;
      if (!isdigit((unsigned char)*p)) {
        snprintf(why, whylen, "a step needs a number");
        return -1;
      }
      step = 0;
      while (isdigit((unsigned char)*p) && step < 100000) step = step * 10 + (*p++ - '0');
      if (step < 1) {
        snprintf(why, whylen, "a step must be at least 1");
        return -1;
      }
      if (single) b = f->hi; /* "5/10": from 5 to the end */
    }
    if (*p && *p != ',') {
      if (strchr("LW#", *p))
        snprintf(why, whylen, "'%c' is not supported (AWS's L, W and # are not)", *p);
      else
        snprintf(why, whylen, "unexpected '%c'", *p);
      return -1;
    }
    if (a < f->lo || a > f->hi || b < f->lo || b > f->hi) {
      snprintf(why, whylen, "%d is out of range %d-%d", a < f->lo || a > f->hi ? a : b, f->lo, f->hi);
      return -1;
    }
    if (b < a) {
      snprintf(why, whylen, "range %d-%d goes backwards", a, b);
      return -1;
    }
    for (int v = a; v <= b; v += step) out[v] = 1;
    if (*p != ',') break;
    p++;
  }
  return 0;
}

void cr_cron_free(cr_cron_t *c) {
  if (!c) return;
  cr_tz_free(c->tz);
  free(c);
}

static int parse_rate(cr_cron_t *c, const char *body, char *err, size_t errlen) {
  char unit[32];
  long long n;
  int used = 0;
  if (sscanf(body, " %lld %31[a-zA-Z] )%n", &n, unit, &used) != 2 || used == 0 || body[used] != '\0') {
    snprintf(err, errlen, "rate must be 'rate(N unit)' with unit seconds, minutes, hours or days");
    return -1;
  }
  static const struct {
    const char *name;
    int64_t ms;
  } units[] = {{"second", 1000}, {"seconds", 1000}, {"minute", 60000}, {"minutes", 60000},
               {"hour", 3600000}, {"hours", 3600000}, {"day", 86400000}, {"days", 86400000}};
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcasecmp(unit, units[i].name) != 0) continue;
    if (n < 1 || n > 3650LL * 86400000 / units[i].ms) {
      snprintf(err, errlen, "rate: %lld %s is out of range (1 second to 3650 days)", n, unit);
      return -1;
    }
    c->period_ms = n * units[i].ms;
    return 0;
  }
  snprintf(err, errlen, "rate: unknown unit '%s' (seconds, minutes, hours or days)", unit);
  return -1;
}

cr_cron_t *cr_cron_parse(const char *expr, const char *tz, char *err, size_t errlen) {
  cr_cron_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  char why[200];
  while (*expr == ' ' || *expr == '\t') expr++;
  size_t len = strlen(expr);
  while (len && (expr[len - 1] == ' ' || expr[len - 1] == '\t')) len--;
  if (len == 0 || len > 256) {
    snprintf(err, errlen, "empty or too long (1 to 256 bytes)");
    cr_cron_free(c);
    return NULL;
  }
  char text[260];
  memcpy(text, expr, len);
  text[len] = '\0';
  if (strncasecmp(text, "rate(", 5) == 0) {
    if (parse_rate(c, text + 5, err, errlen)) {
      cr_cron_free(c);
      return NULL;
    }
    return c; /* a rate ignores the zone */
  }
  static const struct {
    const char *name, *expr;
  } macros[] = {{"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
                {"@weekly", "0 0 * * 0"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
                {"@hourly", "0 * * * *"}};
  int aws = 0;
  if (text[0] == '@') {
    size_t i;
    for (i = 0; i < sizeof macros / sizeof macros[0]; i++)
      if (strcasecmp(text, macros[i].name) == 0) break;
    if (i == sizeof macros / sizeof macros[0]) {
      snprintf(err, errlen, "unknown macro '%s' (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)",
               text);
      cr_cron_free(c);
      return NULL;
    }
    snprintf(text, sizeof text, "%s", macros[i].expr);
  } else if (strncasecmp(text, "cron(", 5) == 0) {
    if (text[len - 1] != ')') {
      snprintf(err, errlen, "cron(...) must end with ')'");
      cr_cron_free(c);
      return NULL;
    }
    text[len - 1] = '\0';
    memmove(text, text + 5, len - 4);
    aws = 1;
  }
  char *fields[8];
  int n = 0;
  for (char *save = NULL, *tok = strtok_r(text, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
    if (n == 7) {
      n++;
      break;
    }
    fields[n++] = tok;
  }
  int want = aws ? 6 : 5;
  if (n != want) {
    snprintf(err, errlen, "%s has %d fields, not %d (%s)", aws ? "cron(...)" : "a cron expression", n > 7 ? 8 : n,
             want, aws ? "minute hour day-of-month month day-of-week year" : "minute hour day-of-month month day-of-week");
    cr_cron_free(c);
    return NULL;
  }
  const field_t defs[] = {
      {"minute", 0, 59, NULL, 0, 0},
      {"hour", 0, 23, NULL, 0, 0},
      {"day of month", 1, 31, NULL, 0, 0},
      {"month", 1, 12, month_names, 12, 1},
      aws ? (field_t){"day of week", 1, 7, day_names, 7, 1} : (field_t){"day of week", 0, 7, day_names, 7, 0},
      {"year", YEAR_MIN, YEAR_MAX, NULL, 0, 0},
  };
  uint8_t *bits = calloc(YEAR_MAX + 1, 1);
  if (!bits) {
    snprintf(err, errlen, "out of memory");
    cr_cron_free(c);
    return NULL;
  }
  for (int i = 0; i < want; i++) {
    memset(bits, 0, YEAR_MAX + 1);
    int star = 0;
    int allow_q = aws && (i == 2 || i == 4);
    if (parse_field(fields[i], &defs[i], bits, &star, allow_q, why, sizeof why)) {
      snprintf(err, errlen, "field %d (%s) '%s': %s", i + 1, defs[i].name, fields[i], why);
      free(bits);
      cr_cron_free(c);
      return NULL;
    }
    switch (i) {
    case 0:
      for (int v = 0; v < 60; v++) c->minute |= (uint64_t)bits[v] << v;
      break;
    case 1:
      for (int v = 0; v < 24; v++) c->hour |= (uint64_t)bits[v] << v;
      c->hour_star = star;
      (void)c->hour_star;
      break;
    case 2:
      for (int v = 1; v <= 31; v++) c->dom |= (uint32_t)bits[v] << v;
      c->dom_star = star;
      break;
    case 3:
      for (int v = 1; v <= 12; v++) c->month |= (uint16_t)(bits[v] << v);
      break;
    case 4:
      if (aws)
        for (int v = 1; v <= 7; v++) c->dow |= (uint8_t)(bits[v] << (v - 1)); /* AWS: 1 = SUN */
      else {
        for (int v = 0; v <= 6; v++) c->dow |= (uint8_t)(bits[v] << v);
        if (bits[7]) c->dow |= 1; /* 7 = Sunday */
      }
      c->dow_star = star;
      break;
    case 5:
      c->has_years = 1;
      for (int v = YEAR_MIN; v <= YEAR_MAX; v++) c->years[v - YEAR_MIN] = bits[v];
      break;
    }
  }
  free(bits);
  c->frequent = c->hour == (1ull << 24) - 1;
  if (aws && (strcmp(fields[2], "?") == 0) == (strcmp(fields[4], "?") == 0)) {
    snprintf(err, errlen, "cron(...): exactly one of day-of-month (field 3) and day-of-week (field 5) must be '?'");
    cr_cron_free(c);
    return NULL;
  }
  if (aws) c->dom_star |= strcmp(fields[2], "?") == 0, c->dow_star |= strcmp(fields[4], "?") == 0;
  /* A day of month no allowed month has (Feb 30, Apr 31), when the day of week
   * cannot make up for it: it would never fire. */
  if (c->dow_star || c->dow == 0) {
    static const int longest[] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int any = 0;
    for (int m = 1; m <= 12 && !any; m++)
      if ((c->month >> m) & 1)
        for (int d = 1; d <= longest[m] && !any; d++) any = (c->dom >> d) & 1;
    if (!any) {
      snprintf(err, errlen, "never fires: no allowed month has the day of month (field 3)");
      cr_cron_free(c);
      return NULL;
    }
  }
  if (tz) {
    c->tz = cr_tz_load(tz, why, sizeof why);
    if (!c->tz) {
      snprintf(err, errlen, "%s", why);
      cr_cron_free(c);
      return NULL;
    }
  }
  return c;
}

int64_t cr_cron_period_ms(const cr_cron_t *c) { return c->period_ms; }

#define days_from_civil cr_days_from_civil
#define civil_from_days cr_civil_from_days
#define floor_div cr_floor_div

static int day_matches(const cr_cron_t *c, int64_t days, int d) {
  int dow = (int)((days % 7 + 7 + 4) % 7);
  int dom_ok = (c->dom >> d) & 1, dow_ok = (c->dow >> dow) & 1;
  if (c->dom_star || c->dow_star) return dom_ok && dow_ok;
  return dom_ok || dow_ok;
}

/* The first matching wall-clock minute at or after w (seconds on a clock
 * that counts like UTC), or -1 within the years allowed (30 without a year
 * field). */
static int64_t next_wall(const cr_cron_t *c, int64_t w) {
  int64_t days = floor_div(w, 86400);
  int64_t sod = w - days * 86400;
  int h = (int)(sod / 3600), mi = (int)((sod % 3600 + 59) / 60);
  if (mi == 60) mi = 0, h++;
  if (h == 24) h = 0, days++;
  int64_t y0;
  int m0, d0;
  civil_from_days(days, &y0, &m0, &d0);
  int64_t ylimit = c->has_years ? YEAR_MAX : y0 + 30;
  for (int64_t y = y0; y <= ylimit; y++) {
    if (c->has_years && (y < YEAR_MIN || !c->years[y - YEAR_MIN])) {
      m0 = 1, d0 = 1, h = 0, mi = 0;
      continue;
    }
    for (int m = m0; m <= 12; m++) {
      if (!((c->month >> m) & 1)) {
        d0 = 1, h = 0, mi = 0;
        continue;
      }
      int mdays = (int)(days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) - days_from_civil(y, m, 1));
      for (int d = d0; d <= mdays; d++) {
        int64_t dd = days_from_civil(y, m, d);
        if (!day_matches(c, dd, d)) {
          h = 0, mi = 0;
          continue;
        }
        for (; h < 24; h++, mi = 0) {
          if (!((c->hour >> h) & 1)) continue;
          for (; mi < 60; mi++)
            if ((c->minute >> mi) & 1) return dd * 86400 + h * 3600 + mi * 60;
        }
        h = 0, mi = 0;
      }
      d0 = 1;
    }
    m0 = 1;
  }
  return -1;
}

/* The UTC instants (s) of wall time w in zone z: 0, 1 or 2 of them (out);
 * a time the clocks skip gives the change's instant in *gap. */
static int wall_to_utc(const cr_tz_t *z, int64_t w, int64_t out[2], int64_t *gap) {
  int32_t offs[3] = {cr_tz_offset(z, w - 86400), cr_tz_offset(z, w), cr_tz_offset(z, w + 86400)};
  int n = 0;
  for (int i = 0; i < 3; i++) {
    int64_t u = w - offs[i];
    if (cr_tz_offset(z, u) != offs[i]) continue;
    int dup = 0;
    for (int k = 0; k < n; k++) dup |= out[k] == u;
    if (!dup && n < 2) out[n++] = u;
  }
  if (n == 2 && out[0] > out[1]) {
    int64_t t = out[0];
    out[0] = out[1];
    out[1] = t;
  }
  *gap = -1;
  if (n == 0) {
    int32_t hi = offs[0] > offs[2] ? offs[0] : offs[2];
    *gap = cr_tz_next_change(z, w - hi - 1);
  }
  return n;
}

int64_t cr_cron_next(const cr_cron_t *c, int64_t after_ms) {
  if (c->period_ms) return (floor_div(after_ms, c->period_ms) + 1) * c->period_ms;
  int64_t after = floor_div(after_ms, 1000); /* fire times are whole minutes: > after_ms is > after s */
  if (!c->tz) {
    int64_t w = next_wall(c, after + 1);
    return w < 0 ? -1 : w * 1000;
  }
  /* Wall times from a day before (offsets are under 26 h), in order; the
   * earliest instant after `after` among those up to 3 h past the first
   * (a repeated hour's second instants come after later wall times' first). */
  int64_t w = after + cr_tz_offset(c->tz, after) - 86400, best = -1, stop = -1;
  for (int guard = 0; guard < 200000; guard++) {
    w = next_wall(c, w);
    if (w < 0 || (stop >= 0 && w > stop)) break;
    int64_t u[2], gap;
    int n = wall_to_utc(c->tz, w, u, &gap);
    /* cronie: a job of every hour runs by the clock (a skipped time is skipped, a repeated
     * one runs twice); others run once, at the change or at the first occurrence. */
    if (n == 0 && gap >= 0 && !c->frequent) u[0] = gap, n = 1;
    if (n == 2 && !c->frequent) n = 1;
    for (int i = 0; i < n; i++)
      if (u[i] > after && (best < 0 || u[i] < best)) best = u[i];
    if (best >= 0 && stop < 0) stop = w + 3 * 3600;
    w += 60;
  }
  return best < 0 ? -1 : best * 1000;
}

int64_t cr_cron_last_in(const cr_cron_t *c, int64_t from_ms, int64_t to_ms) {
  if (to_ms <= from_ms) return -1;
  if (c->period_ms) {
    int64_t t = floor_div(to_ms, c->period_ms) * c->period_ms;
    return t > from_ms ? t : -1;
  }
  int64_t last = -1, t = from_ms;
  for (int i = 0; i < 100000; i++) {
    t = cr_cron_next(c, t);
    if (t < 0 || t > to_ms) break;
    last = t;
  }
  return last;
}
