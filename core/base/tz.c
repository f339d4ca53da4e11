/* tz.c - TZif zones and their POSIX TZ footer rule (tz.h). */
#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* A POSIX TZ rule: std (and dst) offsets east of UTC, and when dst starts
 * and ends (a month-week-day, or a Julian day, and a local time). */
typedef struct {
  int kind;      /* 'M', 'J' (1-365, no Feb 29) or 'D' (0-365) */
  int m, w, d;   /* M: month 1-12, week 1-5 (5 = last), weekday 0-6; J, D: d */
  int32_t secs;  /* local time of day (may be negative or past 24 h) */
} rule_date_t;

typedef struct {
  int valid;
  int has_dst;
  int32_t std_off, dst_off;
  rule_date_t start, end;
} rule_t;

struct cr_tz_s {
  int n;           /* transitions */
  int64_t *at;     /* transition times (s), ascending */
  int32_t *off;    /* the offset from each transition on */
  int32_t first;   /* the offset before the first transition */
  rule_t rule;     /* after the last transition (or always, when n == 0) */
};

/* --- the calendar ---------------------------------------------------------------------------------- */

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's algorithm). */
int64_t cr_days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int month_days(int64_t y, int m) {
  static const int md[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : md[m - 1];
}

void cr_civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

int64_t cr_floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

#define days_from_civil cr_days_from_civil
#define floor_div cr_floor_div

/* The year of Unix day n. */
static int64_t year_of_day(int64_t n) {
  int64_t y;
  int m, d;
  cr_civil_from_days(n, &y, &m, &d);
  return y;
}

/* --- the POSIX TZ rule --------------------------------------------------------------------------- */

static const char *parse_name(const char *p) {
  if (*p == '<') {
    const char *e = strchr(p, '>');
    return e && e - p >= 4 ? e + 1 : NULL;
  }
  const char *s = p;
  while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')) p++;
  return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]] -> seconds */
static const char *parse_time(const char *p, int32_t *out) {
  int sign = 1;
  if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
  if (*p < '0' || *p > '9') return NULL;
  int h = 0, m = 0, s = 0;
  while (*p >= '0' && *p <= '9') h = h * 10 + (*p++ - '0');
  if (*p == ':') {
    p++;
    while (*p >= '0' && *p <= '9') m = m * 10 + (*p++ - '0');
    if (*p == ':') {
      p++;
      while (*p >= '0' && *p <= '9') s = s * 10 + (*p++ - '0');
    }
  }
  if (h > 167 || m > 59 || s > 59) return NULL;
  *out = sign * (h * 3600 + m * 60 + s);
  return p;
}

static const char *parse_date(const char *p, rule_date_t *r) {
  r->secs = 7200;
  if (*p == 'M') {
    r->kind = 'M';
    if (sscanf(p + 1, "%d.%d.%d", &r->m, &r->w, &r->d) != 3 || r->m < 1 || r->m > 12 || r->w < 1 || r->w > 5 ||
        r->d < 0 || r->d > 6)
      return NULL;
    p++;
    while ((*p >= '0' && *p <= '9') || *p == '.') p++;
  } else {
    r->kind = *p == 'J' ? 'J' : 'D';
    if (*p == 'J') p++;
    if (*p < '0' || *p > '9') return NULL;
    r->d = 0;
    while (*p >= '0' && *p <= '9') r->d = r->d * 10 + (*p++ - '0');
    if (r->d > 365 || (r->kind == 'J' && r->d < 1)) return NULL;
  }
  if (*p == '/') {
    p = parse_time(p + 1, &r->secs);
    if (!p) return NULL;
  }
  return p;
}

static int parse_rule(const char *p, rule_t *r) {
  memset(r, 0, sizeof *r);
  int32_t t;
  if (!(p = parse_name(p)) || !(p = parse_time(p, &t))) return -1;
  r->std_off = -t;
  if (*p == '\0') {
    r->valid = 1;
    return 0;
  }
  if (!(p = parse_name(p))) return -1;
  r->has_dst = 1;
  r->dst_off = r->std_off + 3600;
  if (*p != ',' && *p != '\0') {
    if (!(p = parse_time(p, &t))) return -1;
    r->dst_off = -t;
  }
  if (*p != ',') return -1; /* no rule given: POSIX's default is not assumed */
  if (!(p = parse_date(p + 1, &r->start)) || *p != ',' || !(p = parse_date(p + 1, &r->end)) || *p) return -1;
  r->valid = 1;
  return 0;
}

/* The local day (Unix days) a rule date falls on in year y. */
static int64_t rule_day(const rule_date_t *r, int64_t y) {
  if (r->kind == 'J') {
    int d = r->d; /* 1-365, Feb 29 never counted */
    int64_t day = days_from_civil(y, 1, 1) + d - 1;
    if (is_leap(y) && d >= 60) day++;
    return day;
  }
  if (r->kind == 'D') return days_from_civil(y, 1, 1) + r->d;
  int64_t first = days_from_civil(y, r->m, 1);
  int dow1 = (int)((first % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
  int day = 1 + (r->d - dow1 + 7) % 7 + 7 * (r->w - 1);
  while (day > month_days(y, r->m)) day -= 7;
  return first + day - 1;
}

/* The rule's two changes in year y, as Unix times. */
static void rule_changes(const rule_t *r, int64_t y, int64_t *start, int64_t *end) {
  /* The start is given in standard time, the end in daylight time. */
  *start = rule_day(&r->start, y) * 86400 + r->start.secs - r->std_off;
  *end = rule_day(&r->end, y) * 86400 + r->end.secs - r->dst_off;
}

static int32_t rule_offset(const rule_t *r, int64_t t) {
  if (!r->has_dst) return r->std_off;
  int64_t y = year_of_day(floor_div(t + r->std_off, 86400));
  int64_t s, e;
  rule_changes(r, y, &s, &e);
  int dst = s < e ? (t >= s && t < e) : !(t >= e && t < s);
  return dst ? r->dst_off : r->std_off;
}

static int64_t rule_next(const rule_t *r, int64_t t) {
  if (!r->has_dst) return INT64_MAX;
  int64_t y = year_of_day(floor_div(t, 86400)), best = INT64_MAX;
  for (int64_t k = y - 1; k <= y + 1; k++) {
    int64_t s, e;
    rule_changes(r, k, &s, &e);
    if (s > t && s < best) best = s;
    if (e > t && e < best) best = e;
  }
  return best;
}

/* --- TZif -------------------------------------------------------------------------------------- */

static int64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  if (n == 4) return (int32_t)(uint32_t)v;
  return (int64_t)v;
}

static int valid_name(const char *name) {
  size_t n = strlen(name);
  if (n < 1 || n > 128) return 0;
  const char *seg = name;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '_' ||
          c == '-' || c == '+'))
      return 0;
    if (name + i == seg && (c == '.' || c == '/')) return 0;
    if (c == '/') seg = name + i + 1;
  }
  return name[n - 1] != '/';
}

void cr_tz_free(cr_tz_t *z) {
  if (!z) return;
  free(z->at);
  free(z->off);
  free(z);
}

static cr_tz_t *parse(const unsigned char *d, size_t len) {
  if (len < 44 || memcmp(d, "TZif", 4) != 0 || d[4] < '2') return NULL;
  /* Skip the version 1 block (32-bit times). */
  int64_t isut = be(d + 20, 4), isstd = be(d + 24, 4), leap = be(d + 28, 4), timecnt = be(d + 32, 4),
          typecnt = be(d + 36, 4), charcnt = be(d + 40, 4);
  if (isut < 0 || isstd < 0 || leap < 0 || timecnt < 0 || typecnt < 1 || charcnt < 0 || timecnt > 100000 ||
      typecnt > 256 || leap > 1000 || charcnt > 10000)
    return NULL;
  size_t v1 = 44 + (size_t)(timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut);
  if (len < v1 + 44 || memcmp(d + v1, "TZif", 4) != 0) return NULL;
  const unsigned char *h = d + v1;
  isut = be(h + 20, 4), isstd = be(h + 24, 4), leap = be(h + 28, 4), timecnt = be(h + 32, 4);
  typecnt = be(h + 36, 4), charcnt = be(h + 40, 4);
  if (isut < 0 || isstd < 0 || leap < 0 || timecnt < 0 || typecnt < 1 || charcnt < 0 || timecnt > 100000 ||
      typecnt > 256 || leap > 1000 || charcnt > 10000)
    return NULL;
  const unsigned char *p = h + 44;
  size_t body = (size_t)(timecnt * 9 + typecnt * 6 + charcnt + leap * 12 + isstd + isut);
  if ((size_t)(d + len - p) < body) return NULL;
  cr_tz_t *z = calloc(1, sizeof *z);
  if (!z) return NULL;
  z->n = (int)timecnt;
  z->at = malloc(sizeof *z->at * (size_t)(timecnt ? timecnt : 1));
  z->off = malloc(sizeof *z->off * (size_t)(timecnt ? timecnt : 1));
  if (!z->at || !z->off) {
    cr_tz_free(z);
    return NULL;
  }
  const unsigned char *idx = p + timecnt * 8, *types = idx + timecnt;
  for (int64_t i = 0; i < timecnt; i++) {
    z->at[i] = be(p + i * 8, 8);
    int t = idx[i];
    if (t >= typecnt || (i > 0 && z->at[i] <= z->at[i - 1])) {
      cr_tz_free(z);
      return NULL;
    }
    z->off[i] = (int32_t)be(types + t * 6, 4);
  }
  /* Before the first transition: the first standard-time type (RFC 8536 3.2), else type 0. */
  z->first = (int32_t)be(types, 4);
  for (int64_t t = 0; t < typecnt; t++)
    if (!types[t * 6 + 4]) {
      z->first = (int32_t)be(types + t * 6, 4);
      break;
    }
  /* The footer: "\nTZ\n" */
  const unsigned char *f = p + body;
  if (f < d + len && *f == '\n') {
    const unsigned char *e = memchr(f + 1, '\n', (size_t)(d + len - f - 1));
    if (e && e - f - 1 < 128) {
      char rule[128];
      memcpy(rule, f + 1, (size_t)(e - f - 1));
      rule[e - f - 1] = '\0';
      if (rule[0] && parse_rule(rule, &z->rule) != 0) memset(&z->rule, 0, sizeof z->rule);
    }
  }
  return z;
}

cr_tz_t *cr_tz_load_from(const char *dir, const char *name, char *err, size_t errlen) {
  if (!name || !valid_name(name)) {
    snprintf(err, errlen, "'%s' is not a time zone name (like Europe/Berlin)", name ? name : "");
    return NULL;
  }
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    snprintf(err, errlen, "unknown time zone '%s' (no %s)", name, path);
    return NULL;
  }
  unsigned char buf[1 << 17];
  size_t len = fread(buf, 1, sizeof buf, fp);
  int more = fgetc(fp) != EOF;
  fclose(fp);
  cr_tz_t *z = more ? NULL : parse(buf, len);
  if (!z) snprintf(err, errlen, "time zone '%s': %s is not a zoneinfo (TZif 2+) file", name, path);
  return z;
}

cr_tz_t *cr_tz_load(const char *name, char *err, size_t errlen) {
  return cr_tz_load_from("/usr/share/zoneinfo", name, err, errlen);
}

/* The index of the last transition at or before t, or -1. */
static int last_at(const cr_tz_t *z, int64_t t) {
  int lo = 0, hi = z->n - 1, r = -1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    if (z->at[mid] <= t) {
      r = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return r;
}

int32_t cr_tz_offset(const cr_tz_t *z, int64_t t) {
  if (z->n > 0 && t < z->at[z->n - 1]) {
    int i = last_at(z, t);
    return i < 0 ? z->first : z->off[i];
  }
  if (z->rule.valid) return rule_offset(&z->rule, t);
  return z->n > 0 ? z->off[z->n - 1] : z->first;
}

int64_t cr_tz_next_change(const cr_tz_t *z, int64_t t) {
  int32_t now = cr_tz_offset(z, t);
  int i = last_at(z, t) + 1;
  for (; i < z->n; i++)
    if (z->off[i] != now) return z->at[i];
    else now = z->off[i];
  if (!z->rule.valid) return INT64_MAX;
  int64_t from = z->n > 0 && z->at[z->n - 1] > t ? z->at[z->n - 1] : t;
  for (int k = 0; k < 800; k++) {
    int64_t c = rule_next(&z->rule, from);
    if (c == INT64_MAX) return INT64_MAX;
    if (rule_offset(&z->rule, c) != cr_tz_offset(z, c - 1)) return c;
    from = c;
  }
  return INT64_MAX;
}
