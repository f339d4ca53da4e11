/* logs.c - crescent logs [NAME]: the log lines a running server keeps in
 * Redis (GET /_/api/logs), and with -f the ones that come (the SSE tail,
 * /_/api/logs/tail), the way `wrangler tail` and `faas-cli logs` do.
 *
 * Output: one line per log line, oldest first. --json prints each as the
 * server wrote it (the JSON line of its stdout); otherwise a readable form,
 *   TIME LEVEL FUNCTION MESSAGE key=value...
 * coloured when stdout is a terminal and NO_COLOR is not set. -f follows
 * (after the recent lines when --since is given), resuming where it was
 * (Last-Event-ID) when the connection drops, until interrupted. Exit: 0, 1
 * the server failed or refused (the error is printed), 2 a usage error. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "httpc.h"
#include "jsonread.h"
#include "jsontext.h"

const cr_cli_cmd_t cr_cli_logs = {
    .name = "logs",
    .args = "[NAME] [-f] [--since 10m] [--until T] [--level warn] [--request-id ID] [--trace ID] [-q TEXT] "
            "[--limit N] [--json] [--url URL] [--token TOKEN]",
    .about = "Prints the log lines a running server keeps in Redis: of the function NAME (or\n"
             "@platform for the platform's own lines, access log included), or of all, oldest\n"
             "first. --since/--until: a time ago (30s, 10m, 2h, 7d) or ms since the epoch;\n"
             "--level: the lowest level shown (debug, info, warn, error); --request-id, --trace\n"
             "(a trace id) and -q (a text the line holds) filter; --limit: how many (default 100,\n"
             "at most 1000). -f follows: prints lines as they come until interrupted. --json\n"
             "prints the lines as the server wrote them; otherwise readable, coloured on a\n"
             "terminal (NO_COLOR turns colour off). URL: --url, else CRESCENT_URL, else\n"
             "http://127.0.0.1:8080. The admin token: --token (or --admin-token), else\n"
             "CRESCENT_ADMIN_TOKEN.\n",
    .min_args = 0,
    .max_args = 1,
};

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "crescent logs: %s%s%s%s\n", msg, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
  fprintf(stderr, "usage: crescent logs %s\n(crescent logs --help for more)\n", cr_cli_logs.args);
  return 2;
}

static void put_param(cr_buf_t *b, const char *name, const char *v) {
  static const char hex[] = "0123456789ABCDEF";
  if (!v || !v[0]) return;
  cr_buf_putc(b, b->len && memchr(b->data, '?', b->len) ? '&' : '?');
  cr_buf_append_str(b, name);
  cr_buf_putc(b, '=');
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~@/", *p)) {
      cr_buf_putc(b, (char)*p);
    } else {
      cr_buf_putc(b, '%');
      cr_buf_putc(b, hex[*p >> 4]);
      cr_buf_putc(b, hex[*p & 15]);
    }
  }
}

/* --- printing ------------------------------------------------------------------------------------ */

static int g_json, g_color;

static const char *level_color(const char *l) {
  if (strcmp(l, "error") == 0) return "\033[31m";
  if (strcmp(l, "warn") == 0) return "\033[33m";
  if (strcmp(l, "debug") == 0) return "\033[2m";
  return "\033[32m";
}

/* A value as key=value shows it: strings as they are, the rest as JSON. */
static void put_value(cr_buf_t *b, const cr_jr_val_t *v) {
  switch (v->type) {
  case CR_JR_STRING: cr_buf_append(b, v->str, v->len); break;
  case CR_JR_NUMBER: cr_json_number(b, v->num); break;
  case CR_JR_TRUE: cr_buf_append_str(b, "true"); break;
  case CR_JR_FALSE: cr_buf_append_str(b, "false"); break;
  case CR_JR_NULL: cr_buf_append_str(b, "null"); break;
  case CR_JR_ARRAY:
  case CR_JR_OBJECT: {
    int obj = v->type == CR_JR_OBJECT;
    cr_buf_putc(b, obj ? '{' : '[');
    for (const cr_jr_val_t *c = v->child; c; c = c->next) {
      if (c != v->child) cr_buf_putc(b, ',');
      if (obj) {
        cr_json_escape(b, c->key, c->keylen);
        cr_buf_putc(b, ':');
      }
      if (c->type == CR_JR_STRING) cr_json_escape(b, c->str, c->len);
      else put_value(b, c);
    }
    cr_buf_putc(b, obj ? '}' : ']');
    break;
  }
  }
}

/* One line: JSON as it is, or TIME LEVEL FUNCTION MESSAGE key=value... */
static void print_line(const char *line, size_t len) {
  if (g_json) {
    fwrite(line, 1, len, stdout);
    fputc('\n', stdout);
    return;
  }
  char err[128];
  cr_jr_doc_t *d = cr_jr_parse(line, len, err, sizeof err);
  const cr_jr_val_t *o = d ? cr_jr_root(d) : NULL;
  if (!o || o->type != CR_JR_OBJECT) {
    fwrite(line, 1, len, stdout);
    fputc('\n', stdout);
    cr_jr_free(d);
    return;
  }
  const cr_jr_val_t *t = cr_jr_get(o, "time"), *l = cr_jr_get(o, "level"), *m = cr_jr_get(o, "msg"),
                    *f = cr_jr_get(o, "function");
  const char *level = l && l->type == CR_JR_STRING ? l->str : "info";
  cr_buf_t b = CR_BUF_INIT;
  if (g_color) cr_buf_append_str(&b, "\033[2m");
  cr_buf_append_str(&b, t && t->type == CR_JR_STRING ? t->str : "-");
  if (g_color) cr_buf_append_str(&b, "\033[0m");
  cr_buf_putc(&b, ' ');
  if (g_color) cr_buf_append_str(&b, level_color(level));
  cr_buf_printf(&b, "%-5s", level);
  if (g_color) cr_buf_append_str(&b, "\033[0m");
  cr_buf_putc(&b, ' ');
  if (g_color) cr_buf_append_str(&b, "\033[36m");
  cr_buf_append_str(&b, f && f->type == CR_JR_STRING ? f->str : "-");
  if (g_color) cr_buf_append_str(&b, "\033[0m");
  cr_buf_putc(&b, ' ');
  if (m) put_value(&b, m);
  for (const cr_jr_val_t *c = o->child; c; c = c->next) {
    if (c == t || c == l || c == m || c == f) continue;
    cr_buf_putc(&b, ' ');
    if (g_color) cr_buf_append_str(&b, "\033[2m");
    cr_buf_append(&b, c->key, c->keylen);
    cr_buf_putc(&b, '=');
    if (g_color) cr_buf_append_str(&b, "\033[0m");
    put_value(&b, c);
  }
  cr_buf_putc(&b, '\n');
  fwrite(b.data, 1, b.len, stdout);
  cr_buf_free(&b);
  cr_jr_free(d);
}

/* --- the query ------------------------------------------------------------------------------------ */

/* The end of the JSON value at p (the server's own text: well-formed). */
static const char *skip_value(const char *p, const char *e) {
  int depth = 0;
  while (p < e) {
    char ch = *p;
    if (ch == '"') {
      p++;
      while (p < e && *p != '"') p += *p == '\\' ? 2 : 1;
      p++;
      if (depth == 0) return p;
      continue;
    }
    if (ch == '{' || ch == '[') depth++;
    else if (ch == '}' || ch == ']') {
      if (depth == 0) return p;
      if (--depth == 0) return p + 1;
    } else if (depth == 0 && ch == ',') {
      return p;
    }
    p++;
  }
  return e;
}

/* The raw text of each entry's "line", newest first as the server sent them; the newest
 * entry's cursor ("<id>:<stream>") into newest (when there is one). */
static int line_spans(const char *s, size_t n, const char **starts, size_t *lens, int max, char *newest,
                      size_t newest_len) {
  char id[64] = "", stream[400] = "";
  const char *e = s + n, *p = strstr(s, "\"logs\":[");
  int k = 0;
  if (!p) return -1;
  p += 8;
  while (p < e && *p == '{' && k < max) {
    p++;
    while (p < e && *p == '"') {
      const char *ks = p;
      p = skip_value(p, e);
      int is_line = p - ks == 6 && memcmp(ks, "\"line\"", 6) == 0;
      if (p >= e || *p != ':') return -1;
      p++;
      const char *vs = p;
      p = skip_value(p, e);
      if (is_line) {
        starts[k] = vs;
        lens[k] = (size_t)(p - vs);
      }
      /* The id and the stream name need no unescaping: digits, and a function's name. */
      if (k == 0 && p - ks == 4 && memcmp(ks, "\"id\"", 4) == 0 && p - vs >= 2 && (size_t)(p - vs) < sizeof id)
        snprintf(id, sizeof id, "%.*s", (int)(p - vs - 2), vs + 1);
      if (k == 0 && p - ks == 8 && memcmp(ks, "\"stream\"", 8) == 0 && p - vs >= 2 && (size_t)(p - vs) < sizeof stream)
        snprintf(stream, sizeof stream, "%.*s", (int)(p - vs - 2), vs + 1);
      if (p < e && *p == ',') p++;
    }
    if (p >= e || *p != '}') return -1;
    p++;
    k++;
    if (p < e && *p == ',') p++;
  }
  if (k > 0 && id[0] && stream[0]) snprintf(newest, newest_len, "%s:%s", id, stream);
  return k;
}

static int query(const char *base, const char *path, const char *headers, char *newest, size_t newest_len) {
  cr_httpc_resp_t r;
  char err[600];
  if (cr_httpc_request(base, "GET", path, headers, NULL, 0, 30, &r, err, sizeof err)) {
    fprintf(stderr, "crescent logs: %s\n", err);
    return 1;
  }
  if (r.status != 200) {
    fprintf(stderr, "crescent logs: the server answered %d: %.*s\n", r.status, (int)r.body.len, r.body.data ? r.body.data : "");
    cr_httpc_free(&r);
    return 1;
  }
  cr_buf_putc(&r.body, '\0');
  r.body.len--;
  const char *starts[1000];
  size_t lens[1000];
  int n = line_spans(r.body.data, r.body.len, starts, lens, 1000, newest, newest_len);
  if (n < 0) {
    fprintf(stderr, "crescent logs: the server's answer is not the logs API's\n");
    cr_httpc_free(&r);
    return 1;
  }
  for (int i = n - 1; i >= 0; i--) print_line(starts[i], lens[i]);
  fflush(stdout);
  cr_httpc_free(&r);
  return 0;
}

/* --- following ------------------------------------------------------------------------------------ */

typedef struct {
  cr_buf_t in;            /* what came and is not a whole event yet */
  char last_id[512];      /* the last event's id: where a reconnection resumes */
} follow_t;

/* Takes the events out of what came: "id: X\ndata: LINE\n\n" (comments and retry skipped). */
static int on_sse(void *data, const char *p, size_t n) {
  follow_t *f = data;
  if (cr_buf_append(&f->in, p, n)) return 1;
  size_t off = 0;
  for (;;) {
    const char *s = f->in.data + off, *end = NULL;
    size_t left = f->in.len - off;
    for (size_t i = 1; i < left && !end; i++)
      if (s[i - 1] == '\n' && s[i] == '\n') end = s + i + 1;
    if (!end) break;
    for (const char *q = s; q < end;) {
      const char *nl = memchr(q, '\n', (size_t)(end - q));
      size_t ll = (size_t)(nl - q);
      if (ll > 4 && memcmp(q, "id: ", 4) == 0 && ll - 4 < sizeof f->last_id)
        snprintf(f->last_id, sizeof f->last_id, "%.*s", (int)(ll - 4), q + 4);
      else if (ll > 6 && memcmp(q, "data: ", 6) == 0)
        print_line(q + 6, ll - 6);
      q = nl + 1;
    }
    fflush(stdout);
    off = (size_t)(end - f->in.data);
  }
  cr_buf_consume(&f->in, off);
  return 0;
}

/* after: the cursor of the last line printed already ("" none): the tail starts after it. */
static int follow(const char *base, const char *path, const char *headers, const char *after) {
  follow_t f;
  memset(&f, 0, sizeof f);
  snprintf(f.last_id, sizeof f.last_id, "%s", after);
  int failures = 0;
  for (;;) {
    cr_buf_t h = CR_BUF_INIT;
    cr_buf_append_str(&h, headers);
    if (f.last_id[0]) {
      cr_buf_append_str(&h, "Last-Event-ID: ");
      cr_buf_append_str(&h, f.last_id);
      cr_buf_append_str(&h, "\r\n");
    }
    cr_buf_putc(&h, '\0');
    int status = 0;
    char err[600];
    f.in.len = 0;
    /* The server writes a comment every 15 s: 45 s of silence is a lost connection. */
    int rc = cr_httpc_stream(base, path, h.data, 10, 45, on_sse, &f, &status, err, sizeof err);
    cr_buf_free(&h);
    if (rc < 0 && status && status != 200 && status != 503) {
      fprintf(stderr, "crescent logs: the server answered %d: %s\n", status, err);
      cr_buf_free(&f.in);
      return 1;
    }
    if (rc < 0) {
      if (++failures == 1 || failures % 30 == 0)
        fprintf(stderr, "crescent logs: %s; trying again\n", status ? "the server is busy" : err);
    } else {
      failures = 0;
    }
    sleep(1);
  }
}

int cr_cmd_logs(int argc, char **argv) {
  const char *name = NULL, *url = getenv("CRESCENT_URL"), *token = getenv("CRESCENT_ADMIN_TOKEN");
  const char *since = NULL, *until = NULL, *level = NULL, *reqid = NULL, *trace = NULL, *text = NULL, *limit = NULL;
  int json = 0, follow_on = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      cr_cli_cmd_usage(&cr_cli_logs, stdout);
      return 0;
    }
  }
  static const struct {
    const char *flag;
    int off;
  } valued[] = {{"--url", 0}, {"--token", 1}, {"--admin-token", 1}, {"--since", 2}, {"--until", 3}, {"--level", 4},
                {"--request-id", 5}, {"--trace", 6}, {"-q", 7}, {"--limit", 8}};
  const char **slots[] = {&url, &token, &since, &until, &level, &reqid, &trace, &text, &limit};
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    int taken = 0;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0] && !taken; k++) {
      size_t fl = strlen(valued[k].flag);
      if (strcmp(a, valued[k].flag) == 0) {
        if (i + 1 >= argc) return usage("missing the value of", a);
        *slots[valued[k].off] = argv[++i];
        taken = 1;
      } else if (strncmp(a, valued[k].flag, fl) == 0 && a[fl] == '=') {
        *slots[valued[k].off] = a + fl + 1;
        taken = 1;
      }
    }
    if (taken) continue;
    if (strcmp(a, "--json") == 0) json = 1;
    else if (strcmp(a, "-f") == 0 || strcmp(a, "--follow") == 0) follow_on = 1;
    else if (a[0] == '-' && a[1]) return usage("unknown option", a);
    else if (!name) name = a;
    else return usage("unexpected argument", a);
  }
  if (level && strcmp(level, "debug") && strcmp(level, "info") && strcmp(level, "warn") && strcmp(level, "error"))
    return usage("--level: expected debug, info, warn or error, got", level);
  if (limit) {
    char *end;
    long l = strtol(limit, &end, 10);
    if (*end || l < 1 || l > 1000) return usage("--limit: expected 1 to 1000, got", limit);
  }
  if (!url || !url[0]) url = "http://127.0.0.1:8080";
  size_t ulen = strlen(url);
  char base[512];
  snprintf(base, sizeof base, "%.*s", (int)(ulen && url[ulen - 1] == '/' ? ulen - 1 : ulen), url);
  g_json = json;
  const char *nc = getenv("NO_COLOR");
  g_color = !json && isatty(STDOUT_FILENO) && !(nc && nc[0]);
  cr_buf_t headers = CR_BUF_INIT;
  if (token && token[0]) {
    cr_buf_append_str(&headers, "Authorization: Bearer ");
    cr_buf_append_str(&headers, token);
    cr_buf_append_str(&headers, "\r\n");
  }
  cr_buf_putc(&headers, '\0');
  cr_buf_t filters = CR_BUF_INIT;
  cr_buf_append_str(&filters, "x");
  put_param(&filters, "function", name);
  put_param(&filters, "level", level);
  put_param(&filters, "requestId", reqid);
  put_param(&filters, "trace", trace);
  put_param(&filters, "q", text);
  int rc = 0;
  char newest[512] = "";
  if (!follow_on || since) {
    cr_buf_t path = CR_BUF_INIT;
    cr_buf_append_str(&path, "/_/api/logs");
    cr_buf_append(&path, filters.data + 1, filters.len - 1);
    if (path.len == 11) cr_buf_putc(&path, '?');
    else cr_buf_putc(&path, '&');
    cr_buf_append_str(&path, "limit=");
    cr_buf_append_str(&path, limit ? limit : "100");
    put_param(&path, "since", since);
    put_param(&path, "until", until);
    cr_buf_putc(&path, '\0');
    rc = query(base, path.data, headers.data, newest, sizeof newest);
    cr_buf_free(&path);
  }
  if (!rc && follow_on) {
    signal(SIGPIPE, SIG_DFL);
    cr_buf_t path = CR_BUF_INIT;
    cr_buf_append_str(&path, "/_/api/logs/tail");
    cr_buf_append(&path, filters.data + 1, filters.len - 1);
    cr_buf_putc(&path, '\0');
    rc = follow(base, path.data, headers.data, newest);
    cr_buf_free(&path);
  }
  cr_buf_free(&filters);
  cr_buf_free(&headers);
  return rc;
}
