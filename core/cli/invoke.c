/* invoke.c - crescent invoke NAME: run a function on a running server and
 * print its result, the way `aws lambda invoke --log-type Tail` does.
 *
 *   crescent invoke NAME [--data JSON|@FILE|@-] [--async] [--url URL] [--admin-token T]
 *
 * POSTs the event to URL/_/invoke/NAME (invoke_api.h). Prints the result on
 * stdout and the report (request id, duration, billed duration, memory,
 * init duration, version) on stderr; with --async, the invocation id. Exit
 * status: 0 it succeeded, 1 it failed (the function raised, timed out, ran
 * out of memory, or the server refused the call: the error is printed), 2
 * a usage error. URL defaults to http://127.0.0.1:8080 (CRESCENT_URL), the
 * token to CRESCENT_ADMIN_TOKEN (needed unless the server is on loopback
 * without one). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "httpc.h"

const cr_cli_cmd_t cr_cli_invoke = {
    .name = "invoke",
    .args = "NAME [--data JSON|@FILE|@-] [--async] [--url URL] [--admin-token TOKEN]",
    .about = "Runs the function NAME on a running server (POST URL/_/invoke/NAME) with the event\n"
             "given as JSON (--data; @FILE reads a file, @- standard input; default: no event),\n"
             "prints its result on stdout and its report (duration, billed duration, memory, init\n"
             "duration) on stderr, and exits 1 when it failed. --async queues it instead\n"
             "(X-Invocation-Type: Event) and prints the invocation id; its status is at\n"
             "URL/_/api/invocations/ID. URL: --url, else CRESCENT_URL, else http://127.0.0.1:8080.\n"
             "The admin token: --token (or --admin-token), else CRESCENT_ADMIN_TOKEN.\n",
    .min_args = 1,
    .max_args = 1,
};

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "crescent invoke: %s%s%s%s\n", msg, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
  fprintf(stderr, "usage: crescent invoke %s\n(crescent invoke --help for more)\n", cr_cli_invoke.args);
  return 2;
}

/* --data's value: the text, a file's (@FILE) or standard input's (@-). */
static int read_data(const char *arg, cr_buf_t *out) {
  if (arg[0] != '@') return cr_buf_append_str(out, arg);
  FILE *f = strcmp(arg, "@-") == 0 ? stdin : fopen(arg + 1, "rb");
  if (!f) {
    fprintf(stderr, "crescent invoke: cannot read %s: %s\n", arg + 1, strerror(errno));
    return -1;
  }
  char chunk[65536];
  size_t n;
  int rc = 0;
  while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) rc = cr_buf_append(out, chunk, n);
  if (f != stdin) fclose(f);
  return rc;
}

/* Percent-encodes what a path segment may not hold as it is. */
static void encode_name(cr_buf_t *b, const char *name) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~/[]", *p))
      cr_buf_putc(b, (char)*p);
    else {
      cr_buf_putc(b, '%');
      cr_buf_putc(b, hex[*p >> 4]);
      cr_buf_putc(b, hex[*p & 15]);
    }
  }
}

static void report(const cr_httpc_resp_t *r) {
  char id[160], dur[40], billed[40], init[40], mem[40], size[40], ver[40];
  if (!cr_httpc_header(r, "X-Crescent-Request-Id", id, sizeof id)) return;
  fprintf(stderr, "REPORT RequestId: %s\tDuration: %s ms\tBilled Duration: %s ms\tMemory Size: %s MB\tMax Memory Used: %s bytes",
          id, cr_httpc_header(r, "X-Crescent-Duration", dur, sizeof dur) ? dur : "?",
          cr_httpc_header(r, "X-Crescent-Billed-Duration", billed, sizeof billed) ? billed : "?",
          cr_httpc_header(r, "X-Crescent-Memory-Size", size, sizeof size) ? size : "?",
          cr_httpc_header(r, "X-Crescent-Max-Memory-Used", mem, sizeof mem) ? mem : "?");
  if (cr_httpc_header(r, "X-Crescent-Init-Duration", init, sizeof init)) fprintf(stderr, "\tInit Duration: %s ms", init);
  if (cr_httpc_header(r, "X-Crescent-Version", ver, sizeof ver)) fprintf(stderr, "\tVersion: %s", ver);
  fputc('\n', stderr);
}

int cr_cmd_invoke(int argc, char **argv) {
  const char *name = NULL, *data = NULL, *url = getenv("CRESCENT_URL"), *token = getenv("CRESCENT_ADMIN_TOKEN");
  int async = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      cr_cli_cmd_usage(&cr_cli_invoke, stdout);
      return 0;
    }
  }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = strcmp(a, "--data") == 0 || strcmp(a, "-d") == 0 ? &data
                        : strcmp(a, "--url") == 0                       ? &url
                        : strcmp(a, "--admin-token") == 0 || strcmp(a, "--token") == 0 ? &token
                                                                        : NULL;
    if (slot) {
      if (i + 1 >= argc) return usage("missing the value of", a);
      *slot = argv[++i];
    } else if (strncmp(a, "--data=", 7) == 0) data = a + 7;
    else if (strncmp(a, "--url=", 6) == 0) url = a + 6;
    else if (strncmp(a, "--admin-token=", 14) == 0) token = a + 14;
    else if (strncmp(a, "--token=", 8) == 0) token = a + 8;
    else if (strcmp(a, "--async") == 0) async = 1;
    else if (a[0] == '-' && a[1]) return usage("unknown option", a);
    else if (!name) name = a;
    else return usage("unexpected argument", a);
  }
  if (!name || !name[0]) return usage("missing", "NAME");
  if (!url || !url[0]) url = "http://127.0.0.1:8080";
  size_t ulen = strlen(url);
  char base[512];
  snprintf(base, sizeof base, "%.*s", (int)(ulen && url[ulen - 1] == '/' ? ulen - 1 : ulen), url);
  cr_buf_t body = CR_BUF_INIT, path = CR_BUF_INIT, headers = CR_BUF_INIT;
  if (data && read_data(data, &body)) return 1;
  cr_buf_append_str(&path, "/_/invoke/");
  encode_name(&path, name);
  cr_buf_putc(&path, '\0');
  if (body.len) cr_buf_append_str(&headers, "Content-Type: application/json\r\n");
  if (async) cr_buf_append_str(&headers, "X-Invocation-Type: Event\r\n");
  if (token && token[0]) {
    cr_buf_append_str(&headers, "Authorization: Bearer ");
    cr_buf_append_str(&headers, token);
    cr_buf_append_str(&headers, "\r\n");
  }
  cr_buf_putc(&headers, '\0');
  cr_httpc_resp_t r;
  char err[600];
  /* The longest a function may run (900 s) and some. */
  int rc = cr_httpc_request(base, "POST", path.data, headers.data, body.data, body.len, 960, &r, err, sizeof err);
  cr_buf_free(&body);
  cr_buf_free(&path);
  cr_buf_free(&headers);
  if (rc) {
    fprintf(stderr, "crescent invoke: %s\n", err);
    return 1;
  }
  char ferr[64];
  int failed = r.status != 200 && r.status != 202;
  int fn_error = cr_httpc_header(&r, "X-Crescent-Function-Error", ferr, sizeof ferr) != NULL;
  fwrite(r.body.data ? r.body.data : "", 1, r.body.len, failed ? stderr : stdout);
  fputc('\n', failed ? stderr : stdout);
  report(&r);
  if (failed) fprintf(stderr, "crescent invoke: the server answered %d\n", r.status);
  else if (fn_error) fprintf(stderr, "crescent invoke: the function failed (%s)\n", ferr);
  cr_httpc_free(&r);
  return failed || fn_error ? 1 : 0;
}
