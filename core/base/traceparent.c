/* traceparent.c - W3C traceparent values (traceparent.h). */
#include "traceparent.h"

#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static int lhex(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
  return 1;
}

static int zeros(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != '0') return 0;
  return 1;
}

int cr_trace_parse(const char *v, size_t len, char trace_id[33], char flags[3]) {
  if (!v || len < CR_TRACE_LEN) return 0;
  if (!lhex(v, 2) || memcmp(v, "ff", 2) == 0) return 0;
  if (memcmp(v, "00", 2) == 0 ? len != CR_TRACE_LEN : len > CR_TRACE_LEN && v[CR_TRACE_LEN] != '-') return 0;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') return 0;
  if (!lhex(v + 3, 32) || zeros(v + 3, 32) || !lhex(v + 36, 16) || zeros(v + 36, 16) || !lhex(v + 53, 2)) return 0;
  if (trace_id) {
    memcpy(trace_id, v + 3, 32);
    trace_id[32] = '\0';
  }
  if (flags) {
    memcpy(flags, v + 53, 2);
    flags[2] = '\0';
  }
  return 1;
}

/* Random bytes from a per-process pool, filled by getrandom 4 KB at a time
 * (not a system call per invocation), refilled in a child after fork. */
static void random_bytes(unsigned char *out, size_t n) {
  static unsigned char pool[4096];
  static size_t left;
  static pid_t owner;
  pid_t me = getpid();
  if (owner != me) {
    owner = me;
    left = 0;
  }
  while (n > 0) {
    if (left == 0) {
      ssize_t got = getrandom(pool, sizeof pool, 0);
      if (got != (ssize_t)sizeof pool) {
        /* No entropy source: ids must still differ, not be secret. */
        static unsigned long long x = 0x9e3779b97f4a7c15ull;
        x ^= (unsigned long long)me << 32 ^ (unsigned long long)(size_t)&n;
        for (size_t i = 0; i < sizeof pool; i++) {
          x ^= x << 13;
          x ^= x >> 7;
          x ^= x << 17;
          pool[i] = (unsigned char)x;
        }
      }
      left = sizeof pool;
    }
    size_t k = n < left ? n : left;
    memcpy(out, pool + sizeof pool - left, k);
    memset(pool + sizeof pool - left, 0, k); /* used once */
    left -= k;
    out += k;
    n -= k;
  }
}

static void random_hex(char *out, size_t nhex) {
  static const char hex[] = "0123456789abcdef";
  unsigned char b[16];
  do {
    random_bytes(b, nhex / 2);
    for (size_t i = 0; i < nhex / 2; i++) {
      out[2 * i] = hex[b[i] >> 4];
      out[2 * i + 1] = hex[b[i] & 15];
    }
  } while (zeros(out, nhex)); /* all zeros is invalid */
}

void cr_trace_child(const char *parent, size_t len, char out[CR_TRACE_LEN + 1]) {
  char tid[33], flags[3];
  memcpy(out, "00-", 3);
  if (parent && cr_trace_parse(parent, len, tid, flags)) {
    memcpy(out + 3, tid, 32);
  } else {
    random_hex(out + 3, 32);
    memcpy(flags, "01", 3);
  }
  out[35] = '-';
  random_hex(out + 36, 16);
  out[52] = '-';
  memcpy(out + 53, flags, 2);
  out[55] = '\0';
}
