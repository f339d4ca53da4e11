/* cost.c - crescent cost: requests, GB-seconds and cost from a running server's usage.
 *
 *   crescent cost [--from T] [--to T] [--by function|day] [--free-tier] [--json]
 *                 [--url URL] [--admin-token TOKEN]
 *
 * Reads GET URL/_/api/usage (usage_api.c: the hourly usage kept in Redis, so it covers every
 * worker and node and outlives restarts) and prints a table, then the right-size advice per
 * function; --json prints the server's answer as it came. T: YYYY-MM-DD[THH[:MM[:SS]]] (UTC)
 * or a time ago, Nd / Nh / Nm (7d: seven days ago); default from the start of this month to
 * now. Exit status: 0 printed, 1 the server could not be reached or refused, 2 usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "httpc.h"
#include "jsonread.h"

const cr_cli_cmd_t cr_cli_cost = {
    .name = "cost",
    .args = "[--from T] [--to T] [--by function|day] [--free-tier] [--json] [--url URL] [--admin-token TOKEN]",
    .about = "Prints what the functions of a running server cost: requests, GB-seconds and cost\n"
             "at the server's prices (--price-request, --price-gb-second), per function (--by\n"
             "function, the default) or per UTC day (--by day), then per function the memory it\n"
             "used at most against its memory setting and the cost at the smallest 128 MB step\n"
             "that holds it. The usage is kept in Redis per hour (every worker and node, across\n"
             "restarts). --free-tier subtracts the monthly free tier (1M requests, 400,000 GB-s).\n"
             "T: YYYY-MM-DD[THH[:MM[:SS]]] in UTC, or a time ago: 7d, 12h, 30m. Default: from the\n"
             "start of this month to now. --json prints the server's JSON (GET /_/api/usage).\n"
             "URL: --url, else CRESCENT_URL, else http://127.0.0.1:8080. The admin token:\n"
             "--admin-token (or --token), else CRESCENT_ADMIN_TOKEN.\n"
             "Exit status: 0 done, 1 the server failed or refused, 2 a usage error.\n",
    .min_args = 0,
    .max_args = 0,
};

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "crescent cost: %s%s%s%s\n", msg, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
  fprintf(stderr, "usage: crescent cost %s\n(crescent cost --help for more)\n", cr_cli_cost.args);
  return 2;
}

/* T as the API takes it: a time ago becomes a UTC time; anything else is passed on (the
 * server checks it). 0, or -1 for a malformed time ago. */
static int time_arg(const char *t, char *out, size_t n) {
  size_t len = strlen(t);
  char unit = len ? t[len - 1] : 0;
  if (len >= 2 && (unit == 'd' || unit == 'h' || unit == 'm') && strspn(t, "0123456789") == len - 1) {
    long long v = strtoll(t, NULL, 10);
    if (v > 100000) return -1;
    time_t now = time(NULL), at = now - (time_t)(v * (unit == 'd' ? 86400 : unit == 'h' ? 3600 : 60));
    struct tm tm;
    gmtime_r(&at, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    return 0;
  }
  if (len == 0 || len >= n || strspn(t, "0123456789-T:Z ") != len) return -1;
  snprintf(out, n, "%s", t);
  return 0;
}

static double num(const cr_jr_val_t *o, const char *k) {
  const cr_jr_val_t *v = cr_jr_get(o, k);
  return v && v->type == CR_JR_NUMBER ? v->num : 0;
}

static const char *str(const cr_jr_val_t *o, const char *k) {
  const cr_jr_val_t *v = cr_jr_get(o, k);
  return v && v->type == CR_JR_STRING ? v->str : "";
}

/* A price as people write it: 0.0000166667, not 1.66667e-05. */
static const char *fixed(double v, char *out, size_t n) {
  snprintf(out, n, "%.12f", v);
  char *e = out + strlen(out) - 1;
  while (e > out && *e == '0') *e-- = '\0';
  if (e > out && *e == '.') *e = '\0';
  return out;
}

static double cost_total(const cr_jr_val_t *o) { return num(cr_jr_get(o, "cost"), "total"); }

static void line(const char *label, const cr_jr_val_t *o) {
  printf("%-32s %12.0f %14.6f %14.8f\n", label, num(o, "invocations"), num(o, "gbSeconds"), cost_total(o));
}

static int print_table(const char *body, size_t len, int by_day) {
  char err[200];
  cr_jr_doc_t *d = cr_jr_parse(body, len, err, sizeof err);
  if (!d) {
    fprintf(stderr, "crescent cost: the server's answer is not JSON (%s)\n", err);
    return 1;
  }
  const cr_jr_val_t *r = cr_jr_root(d), *prices = cr_jr_get(r, "prices"), *ft = cr_jr_get(r, "freeTier");
  char pr[40], pg[40];
  printf("usage from %s to %s (UTC), at $%s per million requests and $%s per GB-second\n", str(r, "from"),
         str(r, "to"), fixed(num(prices, "request"), pr, sizeof pr), fixed(num(prices, "gbSecond"), pg, sizeof pg));
  printf("%-32s %12s %14s %14s\n", by_day ? "DAY" : "FUNCTION", "REQUESTS", "GB-S", "COST (USD)");
  const cr_jr_val_t *list = cr_jr_get(r, by_day ? "buckets" : "functions");
  for (const cr_jr_val_t *v = list ? list->child : NULL; v; v = v->next) {
    char day[16];
    snprintf(day, sizeof day, "%.10s", str(v, "start"));
    line(by_day ? day : str(v, "name"), v);
  }
  line("TOTAL", cr_jr_get(r, "total"));
  if (ft && ft->type == CR_JR_OBJECT)
    printf("free tier applied (per month, %.0f requests and %.0f GB-s): %.0f requests and %.6f GB-s of it used in "
           "this range\n",
           num(ft, "requests"), num(ft, "gbSeconds"), num(ft, "usedRequests"), num(ft, "usedGbSeconds"));
  const cr_jr_val_t *fns = cr_jr_get(r, "functions");
  if (fns && fns->child) printf("\nright-size (the largest memory one invocation used, against its memory setting):\n");
  for (const cr_jr_val_t *v = fns ? fns->child : NULL; v; v = v->next) {
    const cr_jr_val_t *rs = cr_jr_get(v, "rightSize");
    double mem = num(rs, "memory"), sug = num(rs, "suggested"), used = num(rs, "maxMemoryUsed") / 1048576.0;
    if (sug < mem)
      printf("  %s: memory %.0f MB, used at most %.1f MB: %.0f MB would have held it, compute $%.8f instead of "
             "$%.8f (saves $%.8f)\n",
             str(v, "name"), mem, used, sug, num(rs, "computeCostAtSuggested"), num(rs, "computeCost"),
             num(rs, "savings"));
    else
      printf("  %s: memory %.0f MB, used at most %.1f MB: the right size (no smaller 128 MB step holds it)\n",
             str(v, "name"), mem, used);
  }
  cr_jr_free(d);
  return 0;
}

int cr_cmd_cost(int argc, char **argv) {
  const char *from = NULL, *to = NULL, *by = "function", *url = getenv("CRESCENT_URL"),
             *token = getenv("CRESCENT_ADMIN_TOKEN");
  int free_tier = 0, json = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      cr_cli_cmd_usage(&cr_cli_cost, stdout);
      return 0;
    }
  }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = strcmp(a, "--from") == 0                                        ? &from
                        : strcmp(a, "--to") == 0                                        ? &to
                        : strcmp(a, "--by") == 0                                        ? &by
                        : strcmp(a, "--url") == 0                                       ? &url
                        : strcmp(a, "--admin-token") == 0 || strcmp(a, "--token") == 0 ? &token
                                                                                        : NULL;
    if (slot) {
      if (i + 1 >= argc) return usage("missing the value of", a);
      *slot = argv[++i];
    } else if (strcmp(a, "--free-tier") == 0) free_tier = 1;
    else if (strcmp(a, "--json") == 0) json = 1;
    else if (a[0] == '-') return usage("unknown option", a);
    else return usage("unexpected argument", a);
  }
  if (strcmp(by, "function") != 0 && strcmp(by, "day") != 0) return usage("--by takes function or day, not", by);
  char f[40] = "", t[40] = "";
  if (from && time_arg(from, f, sizeof f)) return usage("--from: expected YYYY-MM-DD[THH[:MM[:SS]]] or 7d/12h/30m, not", from);
  if (to && time_arg(to, t, sizeof t)) return usage("--to: expected YYYY-MM-DD[THH[:MM[:SS]]] or 7d/12h/30m, not", to);
  if (!url || !url[0]) url = "http://127.0.0.1:8080";
  size_t ulen = strlen(url);
  char base[512], path[256], headers[1200] = "";
  snprintf(base, sizeof base, "%.*s", (int)(ulen && url[ulen - 1] == '/' ? ulen - 1 : ulen), url);
  snprintf(path, sizeof path, "/_/api/usage?by=%s%s%s%s%s%s", strcmp(by, "day") == 0 ? "day" : "hour",
           f[0] ? "&from=" : "", f, t[0] ? "&to=" : "", t, free_tier ? "&freeTier=1" : "");
  if (token && token[0]) {
    if (strlen(token) > 1000 || strpbrk(token, "\r\n")) return usage("the admin token is malformed", NULL);
    snprintf(headers, sizeof headers, "Authorization: Bearer %s\r\n", token);
  }
  cr_httpc_resp_t r;
  char err[600];
  if (cr_httpc_request(base, "GET", path, headers, NULL, 0, 30, &r, err, sizeof err)) {
    fprintf(stderr, "crescent cost: %s\n", err);
    return 1;
  }
  int rc = 0;
  if (r.status != 200) {
    fprintf(stderr, "crescent cost: the server answered %d: %.*s\n", r.status, (int)r.body.len,
            r.body.data ? r.body.data : "");
    rc = 1;
  } else if (json) {
    fwrite(r.body.data ? r.body.data : "", 1, r.body.len, stdout);
    fputc('\n', stdout);
  } else {
    rc = print_table(r.body.data ? r.body.data : "", r.body.len, strcmp(by, "day") == 0);
  }
  cr_httpc_free(&r);
  return rc;
}
