/* stats.c - crescent stats [NAME] [--watch] [--json]: the meters of /_/api/functions as a table.
 *
 * One row per function (the platform's own left out): its version, invocations, errors,
 * throttles, timeouts, cold starts, p50/p99 latency (from the latency histogram, interpolated
 * inside its bucket), instances busy and idle, GB-seconds and estimated cost, and a load error
 * under its row. --watch draws it again every --interval seconds (2) until interrupted, or
 * --count times. --json prints the server's answer as it came (NAME: that function's entry).
 * Exit status: 0, 1 (unreachable, refused, no such function), 2 (usage). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remote.h"

const cr_cli_cmd_t cr_cli_stats = {
    .name = "stats",
    .args = "[NAME] [--watch [--interval S] [--count N]] [--json] [--url URL] [--token TOKEN]",
    .about = "Prints every function's meters from a running server (GET /_/api/functions) as a table:\n"
             "version, invocations, errors, throttles, timeouts, cold starts, p50 and p99 latency,\n"
             "instances busy and idle, GB-seconds and the estimated cost, and a load error under its\n"
             "row. NAME: that function only. --watch draws it again every --interval seconds\n"
             "(default 2) until interrupted (or --count times). --json: the server's answer as JSON.\n"
             "URL: --url, else CRESCENT_URL, else http://127.0.0.1:8080. The admin token: --token\n"
             "(or --admin-token), else CRESCENT_ADMIN_TOKEN.\n",
    .max_args = 1,
};

static double num(const cr_jr_val_t *o, const char *key) {
  const cr_jr_val_t *v = cr_jr_get(o, key);
  return v && v->type == CR_JR_NUMBER ? v->num : 0;
}

/* The q-quantile of a {"0.1":n,...,"+Inf":n} histogram; -1 when it is empty. */
static double quantile(const cr_jr_val_t *hist, double q) {
  double total = 0, seen = 0, lo = 0;
  for (const cr_jr_val_t *b = hist ? hist->child : NULL; b; b = b->next) total += b->type == CR_JR_NUMBER ? b->num : 0;
  if (total <= 0) return -1;
  for (const cr_jr_val_t *b = hist->child; b; b = b->next) {
    double c = b->type == CR_JR_NUMBER ? b->num : 0;
    int inf = strcmp(b->key, "+Inf") == 0;
    double hi = inf ? lo : strtod(b->key, NULL);
    if (c > 0 && seen + c >= q * total) return inf ? lo : lo + (hi - lo) * ((q * total - seen) / c);
    seen += c;
    lo = hi;
  }
  return lo;
}

static void ms(char *out, size_t n, double v) {
  if (v < 0) snprintf(out, n, "-");
  else snprintf(out, n, v < 10 ? "%.2f" : "%.0f", v);
}

/* The table of the functions in root (NAME only if given); 1 when NAME is not there. */
static int table(const cr_remote_t *o, const cr_jr_val_t *root) {
  const cr_jr_val_t *fns = cr_jr_get(root, "functions");
  const char *only = o->npos ? o->pos[0] : NULL;
  int rows = 0;
  if (only) {
    int found = 0;
    for (const cr_jr_val_t *f = fns ? fns->child : NULL; f && !found; f = f->next)
      found = cr_jr_streq(cr_jr_get(f, "name"), only);
    if (!found) {
      fprintf(stderr, "crescent stats: no function '%s' on the server\n", only);
      return 1;
    }
  }
  printf("%-24s %7s %11s %7s %9s %8s %6s %8s %8s %5s %5s %10s %11s\n", "FUNCTION", "VERSION", "INVOCATIONS",
         "ERRORS", "THROTTLES", "TIMEOUTS", "COLD", "P50_MS", "P99_MS", "BUSY", "IDLE", "GB_S", "COST_USD");
  for (const cr_jr_val_t *f = fns ? fns->child : NULL; f; f = f->next) {
    const cr_jr_val_t *name = cr_jr_get(f, "name"), *plat = cr_jr_get(f, "platform");
    if (!name || name->type != CR_JR_STRING || (plat && plat->type == CR_JR_TRUE)) continue;
    if (only && strcmp(only, name->str) != 0) continue;
    rows++;
    const cr_jr_val_t *m = cr_jr_get(f, "metrics"), *ver = cr_jr_get(f, "version"), *err = cr_jr_get(f, "error");
    const cr_jr_val_t *inst = cr_jr_get(m, "instances"), *cost = cr_jr_get(m, "cost");
    char v[24], p50[24], p99[24];
    if (ver && ver->type == CR_JR_NUMBER) snprintf(v, sizeof v, "v%.0f", ver->num);
    else snprintf(v, sizeof v, "-");
    ms(p50, sizeof p50, quantile(cr_jr_get(m, "latencyMs"), 0.5));
    ms(p99, sizeof p99, quantile(cr_jr_get(m, "latencyMs"), 0.99));
    printf("%-24s %7s %11.0f %7.0f %9.0f %8.0f %6.0f %8s %8s %5.0f %5.0f %10.4f %11.6f\n", name->str, v,
           num(m, "invocations"), num(m, "errors"), num(m, "throttles"), num(m, "timeouts"), num(m, "coldStarts"), p50,
           p99, num(inst, "busy"), num(inst, "idle"), num(m, "gbSeconds"), num(cost, "total"));
    if (err && err->type == CR_JR_STRING) printf("  load error: %s\n", err->str);
  }
  if (only && !rows) {
    fprintf(stderr, "crescent stats: no function '%s' on the server\n", only);
    return 1;
  }
  return 0;
}

/* --json with NAME: its entry alone. */
static int json_of(const cr_remote_t *o, const cr_jr_val_t *root, const cr_httpc_resp_t *r) {
  if (!o->npos) {
    fwrite(r->body.data ? r->body.data : "", 1, r->body.len, stdout);
    fputc('\n', stdout);
    return 0;
  }
  const cr_jr_val_t *fns = cr_jr_get(root, "functions");
  for (const cr_jr_val_t *f = fns ? fns->child : NULL; f; f = f->next) {
    if (!cr_jr_streq(cr_jr_get(f, "name"), o->pos[0])) continue;
    cr_buf_t b = CR_BUF_INIT;
    cr_jr_write(&b, f);
    fwrite(b.data, 1, b.len, stdout);
    fputc('\n', stdout);
    cr_buf_free(&b);
    return 0;
  }
  fprintf(stderr, "crescent stats: no function '%s' on the server\n", o->pos[0]);
  return 1;
}

int cr_cmd_stats(int argc, char **argv) {
  cr_remote_t o;
  int rc = cr_remote_parse(&o, &cr_cli_stats, argc, argv, 1, "watch");
  if (rc >= 0) return rc;
  if ((o.count || o.interval != 2) && !o.watch) {
    fprintf(stderr, "crescent stats: --interval and --count go with --watch\n");
    return 2;
  }
  int tty = isatty(STDOUT_FILENO);
  for (long round = 1;; round++) {
    cr_httpc_resp_t r;
    if (cr_remote_request(&o, "GET", "/_/api/functions", NULL, &r)) return 1;
    cr_jr_doc_t *d = cr_remote_answer(&o, &r, 200);
    if (!d) {
      cr_httpc_free(&r);
      return 1;
    }
    if (o.watch && tty && !o.json) fputs("\033[H\033[2J", stdout); /* clear the screen */
    if (o.watch && !o.json) {
      time_t now = time(NULL);
      char t[32];
      strftime(t, sizeof t, "%Y-%m-%d %H:%M:%SZ", gmtime(&now));
      printf("%s  (every %gs, Ctrl-C to stop)\n", t, o.interval);
    }
    rc = o.json ? json_of(&o, cr_jr_root(d), &r) : table(&o, cr_jr_root(d));
    cr_jr_free(d);
    cr_httpc_free(&r);
    fflush(stdout);
    if (rc || !o.watch || (o.count && round >= o.count)) return rc;
    struct timespec ts = {(time_t)o.interval, (long)((o.interval - floor(o.interval)) * 1e9)};
    nanosleep(&ts, NULL);
  }
}
