/* clock.c - monotonic and wall clocks, cached date strings. */
#include "clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t cr_clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t cr_clock_coarse_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t cr_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t cr_thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *cr_clock_http_date(void) {
  static char cached[CR_HTTP_DATE_LEN + 1];
  static time_t cached_at = -1;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  if (ts.tv_sec != cached_at) {
    struct tm tm;
    char tmp[64];
    gmtime_r(&ts.tv_sec, &tm);
    strftime(tmp, sizeof tmp, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    memcpy(cached, tmp, CR_HTTP_DATE_LEN);
    cached[CR_HTTP_DATE_LEN] = '\0';
    cached_at = ts.tv_sec;
  }
  return cached;
}

void cr_clock_iso8601(uint64_t ms, char *out) {
  time_t sec = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000));
}
