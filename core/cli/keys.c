/* keys.c - crescent keys / crescent plans: API keys and usage plans on a
 * running server, through /_/api/keys and /_/api/plans (keys_api.h).
 *
 *   crescent keys create --name NAME [--functions 'orders/x,reports'] [--plan PLAN]
 *   crescent keys list | revoke NAME | usage NAME
 *   crescent plans create NAME [--rps N] [--burst N] [--quota N] [--per day|month]
 *   crescent plans list | delete NAME
 * each with [--url URL] [--admin-token TOKEN] (as crescent invoke: CRESCENT_URL,
 * CRESCENT_ADMIN_TOKEN) and, for list and usage, --json (the server's answer
 * as it came). `keys create` prints the key alone on stdout (shown once);
 * everything else is for people. Exit status: 0 done, 1 refused or
 * unreachable (the server's error on stderr), 2 a usage error. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "httpc.h"
#include "jsonread.h"
#include "jsontext.h"

const cr_cli_cmd_t cr_cli_keys = {
    .name = "keys",
    .args = "create --name NAME [--functions LIST] [--plan PLAN] | list | revoke NAME | usage NAME",
    .about = "Manages the API keys of a running server (routes with auth = \"apikey\").\n"
             "  create   makes a key and prints it once, alone on stdout (the server keeps only\n"
             "           its SHA-256). --functions: the functions it may call, names or globs\n"
             "           ('*' within one path segment), comma-separated; default every function.\n"
             "           --plan: a usage plan (crescent plans) limiting its rate and quota.\n"
             "  list     names, functions, plans, when created and last used (never the keys)\n"
             "  revoke   the key stops working at once on every worker and node\n"
             "  usage    today's and this month's requests, the quota left, 30 days of history\n"
             "Options: --url URL (else CRESCENT_URL, else http://127.0.0.1:8080), --token (or\n"
             "--admin-token) TOKEN (else CRESCENT_ADMIN_TOKEN), --json (list, usage: the answer as JSON).\n",
    .min_args = 1,
    .max_args = 2,
};

const cr_cli_cmd_t cr_cli_plans = {
    .name = "plans",
    .args = "create NAME [--rps N] [--burst N] [--quota N] [--per day|month] | list | delete NAME",
    .about = "Manages the usage plans of a running server. A plan has a rate (--rps, with\n"
             "--burst requests at once; default burst: rps rounded up) and/or a quota\n"
             "(--quota requests per UTC --per day, the default, or month). A key on a plan\n"
             "past either gets 429 with Retry-After. A plan with keys on it cannot be deleted.\n"
             "Options: --url, --admin-token, --json (list) as for crescent keys.\n",
    .min_args = 1,
    .max_args = 2,
};

typedef struct {
  const cr_cli_cmd_t *cmd;
  const char *url, *token;
  const char *pos[2];
  int npos;
  int json;
  const char *name, *functions, *plan, *rps, *burst, *quota, *per;
} opts_t;

static int usage(const opts_t *o, const char *msg, const char *arg) {
  fprintf(stderr, "crescent %s: %s%s%s%s\n", o->cmd->name, msg, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
  fprintf(stderr, "usage: crescent %s %s\n(crescent %s --help for more)\n", o->cmd->name, o->cmd->args, o->cmd->name);
  return 2;
}

/* Reads argv[2..]: -1 go on, else the exit status. */
static int parse(opts_t *o, int argc, char **argv) {
  o->url = getenv("CRESCENT_URL");
  o->token = getenv("CRESCENT_ADMIN_TOKEN");
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      cr_cli_cmd_usage(o->cmd, stdout);
      return 0;
    }
  static const struct {
    const char *flag;
    size_t off;
  } flags[] = {{"--url", offsetof(opts_t, url)},         {"--admin-token", offsetof(opts_t, token)},
               {"--token", offsetof(opts_t, token)},
               {"--name", offsetof(opts_t, name)},       {"--functions", offsetof(opts_t, functions)},
               {"--plan", offsetof(opts_t, plan)},       {"--rps", offsetof(opts_t, rps)},
               {"--burst", offsetof(opts_t, burst)},     {"--quota", offsetof(opts_t, quota)},
               {"--per", offsetof(opts_t, per)}};
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--json") == 0) {
      o->json = 1;
      continue;
    }
    int found = 0;
    for (size_t f = 0; f < sizeof flags / sizeof flags[0] && !found; f++) {
      size_t fl = strlen(flags[f].flag);
      const char **slot = (const char **)(void *)((char *)o + flags[f].off);
      if (strcmp(a, flags[f].flag) == 0) {
        if (i + 1 >= argc) return usage(o, "missing the value of", a);
        *slot = argv[++i];
        found = 1;
      } else if (strncmp(a, flags[f].flag, fl) == 0 && a[fl] == '=') {
        *slot = a + fl + 1;
        found = 1;
      }
    }
    if (found) continue;
    if (a[0] == '-' && a[1]) return usage(o, "unknown option", a);
    if (o->npos >= 2) return usage(o, "unexpected argument", a);
    o->pos[o->npos++] = a;
  }
  if (!o->npos) return usage(o, "missing", "a subcommand");
  if (!o->url || !o->url[0]) o->url = "http://127.0.0.1:8080";
  return -1;
}

/* One request to the server; 0 with *r filled, or 1 (printed). */
static int request(const opts_t *o, const char *method, const char *path, const char *body, cr_httpc_resp_t *r) {
  size_t ulen = strlen(o->url);
  char base[512];
  snprintf(base, sizeof base, "%.*s", (int)(ulen && o->url[ulen - 1] == '/' ? ulen - 1 : ulen), o->url);
  cr_buf_t h = CR_BUF_INIT;
  if (body) cr_buf_append_str(&h, "Content-Type: application/json\r\n");
  if (o->token && o->token[0]) cr_buf_printf(&h, "Authorization: Bearer %s\r\n", o->token);
  cr_buf_putc(&h, '\0');
  char err[600];
  int rc = cr_httpc_request(base, method, path, h.data, body, body ? strlen(body) : 0, 30, r, err, sizeof err);
  cr_buf_free(&h);
  if (rc) {
    fprintf(stderr, "crescent %s: %s\n", o->cmd->name, err);
    return 1;
  }
  return 0;
}

/* The answer as a JSON document when its status is want; otherwise prints the server's error: NULL. */
static cr_jr_doc_t *answer(const opts_t *o, cr_httpc_resp_t *r, int want) {
  char err[160];
  cr_jr_doc_t *d = cr_jr_parse(r->body.data ? r->body.data : "", r->body.len, err, sizeof err);
  if (r->status == want && d) return d;
  const cr_jr_val_t *e = d ? cr_jr_get(cr_jr_root(d), "error") : NULL;
  if (e && e->type == CR_JR_STRING) fprintf(stderr, "crescent %s: %s (%d)\n", o->cmd->name, e->str, r->status);
  else fprintf(stderr, "crescent %s: the server answered %d\n", o->cmd->name, r->status);
  cr_jr_free(d);
  return NULL;
}

static const char *str(const cr_jr_val_t *o, const char *key, const char *dflt) {
  const cr_jr_val_t *v = cr_jr_get(o, key);
  return v && v->type == CR_JR_STRING ? v->str : dflt;
}

static double numv(const cr_jr_val_t *o, const char *key, double dflt) {
  const cr_jr_val_t *v = cr_jr_get(o, key);
  return v && v->type == CR_JR_NUMBER ? v->num : dflt;
}

/* "2026-12-06T21:15:06.739Z" -> "2026-12-06 21:15:06Z" into out. */
static const char *when(const char *iso, char *out, size_t n) {
  if (!iso) return "never";
  snprintf(out, n, "%.10s %.8sZ", iso, strlen(iso) > 11 ? iso + 11 : "");
  return out;
}

static void functions_text(const cr_jr_val_t *o, cr_buf_t *b) {
  const cr_jr_val_t *f = cr_jr_get(o, "functions");
  if (!f || f->type != CR_JR_ARRAY) {
    cr_buf_append_str(b, "(all)");
    return;
  }
  for (const cr_jr_val_t *v = f->child; v; v = v->next) {
    if (v != f->child) cr_buf_putc(b, ',');
    if (v->type == CR_JR_STRING) cr_buf_append(b, v->str, v->len);
  }
}

static void rate_text(const cr_jr_val_t *p, cr_buf_t *b) {
  char n[CR_JSON_NUMBER_MAX + 1];
  double rps = numv(p, "rps", 0), quota = numv(p, "quota", 0);
  if (rps > 0) {
    int l = cr_json_format_number(rps, n);
    n[l > 0 ? l : 0] = '\0';
    cr_buf_printf(b, "%s rps, burst %.0f", n, numv(p, "burst", 0));
  }
  if (quota > 0) cr_buf_printf(b, "%s%.0f per %s", rps > 0 ? ", " : "", quota, str(p, "per", "day"));
}

static int print_raw(const cr_httpc_resp_t *r) {
  fwrite(r->body.data ? r->body.data : "", 1, r->body.len, stdout);
  fputc('\n', stdout);
  return 0;
}

/* --- keys ------------------------------------------------------------------------------------------ */

static int keys_create(const opts_t *o) {
  if (!o->name) return usage(o, "missing", "--name NAME");
  if (o->rps || o->burst || o->quota || o->per) return usage(o, "a plan's options belong to", "crescent plans create");
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "{\"name\":");
  cr_json_escape(&b, o->name, strlen(o->name));
  if (o->functions) {
    cr_buf_append_str(&b, ",\"functions\":");
    cr_json_escape(&b, o->functions, strlen(o->functions));
  }
  if (o->plan) {
    cr_buf_append_str(&b, ",\"plan\":");
    cr_json_escape(&b, o->plan, strlen(o->plan));
  }
  cr_buf_putc(&b, '}');
  cr_httpc_resp_t r;
  int rc = request(o, "POST", "/_/api/keys", cr_buf_cstr(&b), &r);
  cr_buf_free(&b);
  if (rc) return 1;
  cr_jr_doc_t *d = answer(o, &r, 201);
  cr_httpc_free(&r);
  if (!d) return 1;
  const cr_jr_val_t *root = cr_jr_root(d);
  const char *key = str(root, "key", NULL);
  if (!key) {
    cr_jr_free(d);
    fprintf(stderr, "crescent keys: the server's answer has no key\n");
    return 1;
  }
  printf("%s\n", key);
  cr_buf_t f = CR_BUF_INIT;
  functions_text(root, &f);
  fprintf(stderr,
          "crescent keys: created key '%s' (functions: %s; plan: %s). This is the only time it is shown:\n"
          "store it now. Send it as X-Api-Key: KEY or Authorization: Bearer KEY.\n",
          str(root, "name", o->name), cr_buf_cstr(&f), str(root, "plan", "none"));
  cr_buf_free(&f);
  cr_jr_free(d);
  return 0;
}

/* Prints rows of ncols columns (cells[row * ncols + col]) aligned, the first row a header. */
static void table(char **cells, int nrows, int ncols) {
  size_t w[8] = {0};
  for (int r = 0; r < nrows; r++)
    for (int c = 0; c < ncols; c++)
      if (strlen(cells[r * ncols + c]) > w[c]) w[c] = strlen(cells[r * ncols + c]);
  for (int r = 0; r < nrows; r++) {
    for (int c = 0; c < ncols; c++) {
      if (c == ncols - 1) printf("%s\n", cells[r * ncols + c]);
      else printf("%-*s  ", (int)w[c], cells[r * ncols + c]);
    }
  }
}

static int keys_list(const opts_t *o) {
  cr_httpc_resp_t r;
  if (request(o, "GET", "/_/api/keys", NULL, &r)) return 1;
  cr_jr_doc_t *d = answer(o, &r, 200);
  if (d && o->json) print_raw(&r);
  cr_httpc_free(&r);
  if (!d) return 1;
  const cr_jr_val_t *keys = cr_jr_get(cr_jr_root(d), "keys");
  if (!o->json && (!keys || keys->type != CR_JR_ARRAY || !keys->len)) {
    printf("no keys\n");
  } else if (!o->json) {
    int n = (int)keys->len + 1;
    char **cells = calloc((size_t)n * 5, sizeof *cells);
    const char *head[] = {"NAME", "FUNCTIONS", "PLAN", "CREATED", "LAST USED"};
    for (int c = 0; cells && c < 5; c++) cells[c] = strdup(head[c]);
    int row = 1;
    for (const cr_jr_val_t *k = keys->child; cells && k; k = k->next, row++) {
      cr_buf_t f = CR_BUF_INIT;
      functions_text(k, &f);
      char t1[40], t2[40];
      cells[row * 5] = strdup(str(k, "name", "?"));
      cells[row * 5 + 1] = strdup(cr_buf_cstr(&f));
      cells[row * 5 + 2] = strdup(str(k, "plan", "-"));
      cells[row * 5 + 3] = strdup(when(str(k, "created", NULL), t1, sizeof t1));
      cells[row * 5 + 4] = strdup(when(str(k, "lastUsed", NULL), t2, sizeof t2));
      cr_buf_free(&f);
    }
    int ok = cells != NULL;
    for (int i = 0; ok && i < n * 5; i++) ok = cells[i] != NULL;
    if (ok) table(cells, n, 5);
    else fprintf(stderr, "crescent keys: out of memory\n");
    for (int i = 0; cells && i < n * 5; i++) free(cells[i]);
    free(cells);
  }
  cr_jr_free(d);
  return 0;
}

/* A name goes into the path as it is: letters, digits, '.', '_', '-' only (what the server takes). */
static int name_ok(const char *n) {
  if (!*n || strlen(n) > 64) return 0;
  for (; *n; n++)
    if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') || strchr("._-", *n)))
      return 0;
  return 1;
}

static int by_name(const opts_t *o, const char *method, const char *fmt, const char *done) {
  if (o->npos < 2) return usage(o, "missing", "NAME");
  if (!name_ok(o->pos[1])) return usage(o, "not a name (1-64 letters, digits, '.', '_', '-'):", o->pos[1]);
  cr_buf_t p = CR_BUF_INIT;
  cr_buf_printf(&p, fmt, o->pos[1]);
  cr_httpc_resp_t r;
  int rc = request(o, method, cr_buf_cstr(&p), NULL, &r);
  cr_buf_free(&p);
  if (rc) return 1;
  cr_jr_doc_t *d = answer(o, &r, 200);
  cr_httpc_free(&r);
  if (!d) return 1;
  printf("%s %s\n", done, o->pos[1]);
  cr_jr_free(d);
  return 0;
}

static void duration(long long s, char *out, size_t n) {
  if (s >= 86400) snprintf(out, n, "%lldd %lldh", s / 86400, s % 86400 / 3600);
  else if (s >= 3600) snprintf(out, n, "%lldh %lldm", s / 3600, s % 3600 / 60);
  else snprintf(out, n, "%lldm %llds", s / 60, s % 60);
}

static int keys_usage(const opts_t *o) {
  if (o->npos < 2) return usage(o, "missing", "NAME");
  if (!name_ok(o->pos[1])) return usage(o, "not a name (1-64 letters, digits, '.', '_', '-'):", o->pos[1]);
  cr_buf_t p = CR_BUF_INIT;
  cr_buf_printf(&p, "/_/api/keys/%s/usage", o->pos[1]);
  cr_httpc_resp_t r;
  int rc = request(o, "GET", cr_buf_cstr(&p), NULL, &r);
  cr_buf_free(&p);
  if (rc) return 1;
  cr_jr_doc_t *d = answer(o, &r, 200);
  if (d && o->json) print_raw(&r);
  cr_httpc_free(&r);
  if (!d) return 1;
  if (o->json) {
    cr_jr_free(d);
    return 0;
  }
  const cr_jr_val_t *u = cr_jr_root(d), *plan = cr_jr_get(u, "plan");
  char t[40];
  printf("key:        %s\n", str(u, "name", "?"));
  if (plan && plan->type == CR_JR_OBJECT) {
    cr_buf_t b = CR_BUF_INIT;
    rate_text(plan, &b);
    printf("plan:       %s (%s)\n", str(plan, "name", "?"), cr_buf_cstr(&b));
    cr_buf_free(&b);
  } else {
    printf("plan:       none\n");
  }
  printf("last used:  %s\n", when(str(u, "lastUsed", NULL), t, sizeof t));
  printf("today:      %.0f\n", numv(u, "today", 0));
  printf("this month: %.0f\n", numv(u, "month", 0));
  double quota = numv(u, "quota", 0);
  if (quota > 0) {
    char left[40];
    duration((long long)numv(u, "resetsIn", 0), left, sizeof left);
    printf("quota:      %.0f per %s, %.0f used, %.0f remaining, resets in %s\n", quota, str(u, "per", "day"),
           numv(u, "used", 0), numv(u, "remaining", 0), left);
  }
  const cr_jr_val_t *days = cr_jr_get(u, "days");
  if (days && days->type == CR_JR_ARRAY) {
    printf("\nDATE        REQUESTS\n");
    for (const cr_jr_val_t *v = days->child; v; v = v->next)
      printf("%-10s  %.0f\n", str(v, "date", "?"), numv(v, "count", 0));
  }
  cr_jr_free(d);
  return 0;
}

int cr_cmd_keys(int argc, char **argv) {
  opts_t o = {.cmd = &cr_cli_keys};
  int rc = parse(&o, argc, argv);
  if (rc >= 0) return rc;
  const char *sub = o.pos[0];
  if (strcmp(sub, "create") == 0) return o.npos > 1 ? usage(&o, "unexpected argument", o.pos[1]) : keys_create(&o);
  if (o.name || o.functions || o.plan || o.rps || o.burst || o.quota || o.per)
    return usage(&o, "those options belong to", "crescent keys create");
  if (strcmp(sub, "list") == 0) return o.npos > 1 ? usage(&o, "unexpected argument", o.pos[1]) : keys_list(&o);
  if (strcmp(sub, "revoke") == 0) return by_name(&o, "DELETE", "/_/api/keys/%s", "revoked");
  if (strcmp(sub, "usage") == 0) return keys_usage(&o);
  return usage(&o, "unknown subcommand", sub);
}

/* --- plans ----------------------------------------------------------------------------------------- */

/* A number option as JSON ("rps": 10) into b: 0, or 2 (usage error printed). */
static int num_opt(const opts_t *o, cr_buf_t *b, const char *field, const char *v) {
  if (!v) return 0;
  char *end;
  double x = strtod(v, &end);
  if (!*v || *end || !isfinite(x) || x < 0) return usage(o, "not a number >= 0:", v);
  cr_buf_printf(b, ",\"%s\":", field);
  cr_json_number(b, x);
  return 0;
}

static int plans_create(const opts_t *o) {
  if (o->npos < 2) return usage(o, "missing", "NAME");
  if (o->name || o->functions || o->plan) return usage(o, "those options belong to", "crescent keys create");
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "{\"name\":");
  cr_json_escape(&b, o->pos[1], strlen(o->pos[1]));
  int rc = num_opt(o, &b, "rps", o->rps);
  if (!rc) rc = num_opt(o, &b, "burst", o->burst);
  if (!rc) rc = num_opt(o, &b, "quota", o->quota);
  if (!rc && o->per) {
    cr_buf_append_str(&b, ",\"per\":");
    cr_json_escape(&b, o->per, strlen(o->per));
  }
  cr_buf_putc(&b, '}');
  cr_httpc_resp_t r;
  if (!rc) rc = request(o, "POST", "/_/api/plans", cr_buf_cstr(&b), &r) ? 1 : -1;
  cr_buf_free(&b);
  if (rc >= 0) return rc;
  cr_jr_doc_t *d = answer(o, &r, 201);
  cr_httpc_free(&r);
  if (!d) return 1;
  cr_buf_t t = CR_BUF_INIT;
  rate_text(cr_jr_root(d), &t);
  printf("created plan %s: %s\n", str(cr_jr_root(d), "name", o->pos[1]), cr_buf_cstr(&t));
  cr_buf_free(&t);
  cr_jr_free(d);
  return 0;
}

static int plans_list(const opts_t *o) {
  cr_httpc_resp_t r;
  if (request(o, "GET", "/_/api/plans", NULL, &r)) return 1;
  cr_jr_doc_t *d = answer(o, &r, 200);
  if (d && o->json) print_raw(&r);
  cr_httpc_free(&r);
  if (!d) return 1;
  const cr_jr_val_t *plans = cr_jr_get(cr_jr_root(d), "plans");
  if (!o->json && (!plans || plans->type != CR_JR_ARRAY || !plans->len)) {
    printf("no plans\n");
  } else if (!o->json) {
    int n = (int)plans->len + 1;
    char **cells = calloc((size_t)n * 4, sizeof *cells);
    const char *head[] = {"NAME", "LIMITS", "KEYS", "CREATED"};
    for (int c = 0; cells && c < 4; c++) cells[c] = strdup(head[c]);
    int row = 1;
    for (const cr_jr_val_t *p = plans->child; cells && p; p = p->next, row++) {
      cr_buf_t l = CR_BUF_INIT;
      rate_text(p, &l);
      char k[24], t[40];
      snprintf(k, sizeof k, "%.0f", numv(p, "keys", 0));
      cells[row * 4] = strdup(str(p, "name", "?"));
      cells[row * 4 + 1] = strdup(cr_buf_cstr(&l));
      cells[row * 4 + 2] = strdup(k);
      cells[row * 4 + 3] = strdup(when(str(p, "created", NULL), t, sizeof t));
      cr_buf_free(&l);
    }
    int ok = cells != NULL;
    for (int i = 0; ok && i < n * 4; i++) ok = cells[i] != NULL;
    if (ok) table(cells, n, 4);
    else fprintf(stderr, "crescent plans: out of memory\n");
    for (int i = 0; cells && i < n * 4; i++) free(cells[i]);
    free(cells);
  }
  cr_jr_free(d);
  return 0;
}

int cr_cmd_plans(int argc, char **argv) {
  opts_t o = {.cmd = &cr_cli_plans};
  int rc = parse(&o, argc, argv);
  if (rc >= 0) return rc;
  const char *sub = o.pos[0];
  if (strcmp(sub, "create") == 0) return plans_create(&o);
  if (o.name || o.functions || o.plan || o.rps || o.burst || o.quota || o.per)
    return usage(&o, "those options belong to", "crescent plans create");
  if (strcmp(sub, "list") == 0) return o.npos > 1 ? usage(&o, "unexpected argument", o.pos[1]) : plans_list(&o);
  if (strcmp(sub, "delete") == 0) return by_name(&o, "DELETE", "/_/api/plans/%s", "deleted plan");
  return usage(&o, "unknown subcommand", sub);
}
