/* checkhook_bench.c - the CPU cost of LuaJIT's CHECKHOOK build on CPU-heavy Lua.
 *
 * A plain LuaJIT state (luaL_newstate + luaL_openlibs, no crescent code, no
 * hook set: crescent sets one only past a deadline) runs a few kernels, each
 * JIT-compiled: a numeric loop, table inserts and reads, string building, a
 * recursive fib, a sieve. Built once against the project's LuaJIT (with
 * -DLUAJIT_ENABLE_CHECKHOOK) and once against the same source without it
 * (tests/bench/checkhook.sh), the difference is what CHECKHOOK costs.
 *
 * Usage: checkhook_bench [rounds]   (default 5)
 *        checkhook_bench --probe    prints "checkhook: yes" if a count hook set from another
 *                                   thread stops a JIT-compiled `while true do end`, else
 *                                   "checkhook: no" (after 2 s)
 * Prints each kernel's median time over the rounds, then a line
 *   TOTAL <ms> CHECKSUM <n>
 * (the sum of the medians; the checksum must be the same for both builds). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char KERNELS[] =
    "local floor = math.floor\n"
    "local concat, insert = table.concat, table.insert\n"
    "local K = {}\n"
    "K[#K + 1] = { 'numeric loop', function()\n"
    "  local s, x = 0, 0.5\n"
    "  for i = 1, 60000000 do\n"
    "    x = x * 1.0000001 + 1e-9\n"
    "    s = s + (i % 7) * x\n"
    "  end\n"
    "  return floor(s % 1000003)\n"
    "end }\n"
    "K[#K + 1] = { 'table insert/read', function()\n"
    "  local total = 0\n"
    "  for r = 1, 8 do\n"
    "    local a, h = {}, {}\n"
    "    for i = 1, 400000 do a[#a + 1] = i * 3; h[i % 5003] = i end\n"
    "    for i = 1, #a do total = total + a[i] % 11 end\n"
    "    for k, v in pairs(h) do total = total + (v - k) % 13 end\n"
    "    local t = {}\n"
    "    for i = 1, 100000 do insert(t, { id = i, name = 'n' .. (i % 100) }) end\n"
    "    for i = 1, #t do total = total + t[i].id % 3 end\n"
    "  end\n"
    "  return total\n"
    "end }\n"
    "K[#K + 1] = { 'string building', function()\n"
    "  local n = 0\n"
    "  for r = 1, 20 do\n"
    "    local parts = {}\n"
    "    for i = 1, 50000 do\n"
    "      parts[#parts + 1] = 'item-' .. i .. ':' .. (i * 7 % 1000)\n"
    "    end\n"
    "    local s = concat(parts, ',')\n"
    "    n = n + #s + #s:upper():sub(1, 100) + select(2, s:gsub('item', 'x'))\n"
    "  end\n"
    "  return n\n"
    "end }\n"
    "K[#K + 1] = { 'recursive fib(36)', function()\n"
    "  local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end\n"
    "  return fib(36)\n"
    "end }\n"
    "K[#K + 1] = { 'sieve (2e6) x 5', function()\n"
    "  local count = 0\n"
    "  for r = 1, 5 do\n"
    "    local n, comp = 2000000, {}\n"
    "    for i = 2, n do comp[i] = false end\n"
    "    for i = 2, n do\n"
    "      if not comp[i] then\n"
    "        count = count + 1\n"
    "        for j = i * i, n, i do comp[j] = true end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  return count\n"
    "end }\n"
    "return K\n";

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* --probe: does a hook set from another thread stop compiled code? */
static void probe_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "stopped");
}

static void *probe_thread(void *arg) {
  struct timespec ts = {0, 100 * 1000000L};
  nanosleep(&ts, NULL);
  lua_sethook((lua_State *)arg, probe_hook, LUA_MASKCOUNT, 1);
  return NULL;
}

static void probe_alarm(int sig) {
  (void)sig;
  static const char msg[] = "checkhook: no\n";
  if (write(1, msg, sizeof msg - 1) < 0) _exit(3);
  _exit(0);
}

static int probe(void) {
  lua_State *L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  if (luaL_loadstring(L, "while true do end")) return 1;
  signal(SIGALRM, probe_alarm);
  alarm(2);
  pthread_t t;
  if (pthread_create(&t, NULL, probe_thread, L)) return 1;
  int rc = lua_pcall(L, 0, 0, 0);
  alarm(0);
  pthread_join(t, NULL);
  printf("checkhook: %s\n", rc ? "yes" : "no");
  lua_close(L);
  return 0;
}

#define MAX_KERNELS 16
#define MAX_ROUNDS 50

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--probe") == 0) return probe();
  int rounds = argc > 1 ? atoi(argv[1]) : 5;
  if (rounds < 1 || rounds > MAX_ROUNDS) {
    fprintf(stderr, "usage: %s [rounds 1..%d]\n", argv[0], MAX_ROUNDS);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  if (luaL_loadstring(L, KERNELS) || lua_pcall(L, 0, 1, 0)) {
    fprintf(stderr, "kernels: %s\n", lua_tostring(L, -1));
    return 1;
  }
  int kernels = (int)lua_objlen(L, -1);
  if (kernels > MAX_KERNELS) kernels = MAX_KERNELS;
  static double t[MAX_KERNELS][MAX_ROUNDS];
  double checksum = 0;
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < kernels; k++) {
      lua_rawgeti(L, -1, k + 1);
      lua_rawgeti(L, -1, 2);
      double t0 = now_ms();
      if (lua_pcall(L, 0, 1, 0)) {
        fprintf(stderr, "kernel %d: %s\n", k + 1, lua_tostring(L, -1));
        return 1;
      }
      t[k][r] = now_ms() - t0;
      if (r == 0) checksum += lua_tonumber(L, -1);
      lua_pop(L, 2);
    }
  }
  double total = 0;
  for (int k = 0; k < kernels; k++) {
    lua_rawgeti(L, -1, k + 1);
    lua_rawgeti(L, -1, 1);
    qsort(t[k], (size_t)rounds, sizeof t[k][0], cmp_double);
    double med = rounds % 2 ? t[k][rounds / 2] : (t[k][rounds / 2 - 1] + t[k][rounds / 2]) / 2;
    printf("%-22s %9.1f ms\n", lua_tostring(L, -1), med);
    total += med;
    lua_pop(L, 2);
  }
  printf("TOTAL %.1f CHECKSUM %.0f\n", total, checksum);
  lua_close(L);
  return 0;
}
