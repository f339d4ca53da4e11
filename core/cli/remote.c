/* remote.c - the shared part of the commands that talk to a running server (remote.h). */
#include "remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"

static int usage(const cr_remote_t *o, const char *msg, const char *arg) {
  fprintf(stderr, "crescent %s: %s%s%s%s\n", o->cmd->name, msg, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
  fprintf(stderr, "usage: crescent %s %s\n(crescent %s --help for more)\n", o->cmd->name, o->cmd->args, o->cmd->name);
  return 2;
}

int cr_remote_parse(cr_remote_t *o, const cr_cli_cmd_t *cmd, int argc, char **argv, int max_pos, const char *allow) {
  memset(o, 0, sizeof *o);
  o->cmd = cmd;
  o->url = getenv("CRESCENT_URL");
  o->token = getenv("CRESCENT_ADMIN_TOKEN");
  o->interval = 2;
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      cr_cli_cmd_usage(cmd, stdout);
      return 0;
    }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *val = NULL;
    const char **slot = NULL;
    const char *eq = strchr(a, '=');
    size_t fl = eq && a[0] == '-' ? (size_t)(eq - a) : strlen(a);
    char flag[32];
    snprintf(flag, sizeof flag, "%.*s", (int)(fl < sizeof flag ? fl : sizeof flag - 1), a);
    int takes = strcmp(flag, "--url") == 0 || strcmp(flag, "--token") == 0 || strcmp(flag, "--admin-token") == 0 ||
                (strstr(allow, "watch") && (strcmp(flag, "--interval") == 0 || strcmp(flag, "--count") == 0));
    if (takes) {
      if (eq && a[0] == '-') val = eq + 1;
      else if (i + 1 < argc) val = argv[++i];
      else return usage(o, "missing the value of", a);
      if (strcmp(flag, "--url") == 0) slot = &o->url;
      else if (strcmp(flag, "--interval") == 0 || strcmp(flag, "--count") == 0) {
        char *end;
        double v = strtod(val, &end);
        if (*end || end == val || !(v > 0) || v > 86400 || (flag[2] == 'c' && v != (double)(long)v))
          return usage(o, flag[2] == 'c' ? "expected a positive whole number for --count, got" :
                                           "expected seconds (0 to 86400) for --interval, got", val);
        if (flag[2] == 'c') o->count = (long)v;
        else o->interval = v;
        continue;
      } else slot = &o->token;
      *slot = val;
    } else if (strcmp(a, "--json") == 0) o->json = 1;
    else if (strcmp(a, "--watch") == 0 && strstr(allow, "watch")) o->watch = 1;
    else if (strcmp(a, "--redrive") == 0 && strstr(allow, "redrive")) o->redrive = 1;
    else if (a[0] == '-' && a[1]) return usage(o, "unknown option", a);
    else if (o->npos >= max_pos || o->npos >= 4) return usage(o, "unexpected argument", a);
    else o->pos[o->npos++] = a;
  }
  if (!o->url || !o->url[0]) o->url = "http://127.0.0.1:8080";
  return -1;
}

int cr_remote_request(const cr_remote_t *o, const char *method, const char *path, const char *body,
                      cr_httpc_resp_t *r) {
  size_t ulen = strlen(o->url);
  char base[512];
  snprintf(base, sizeof base, "%.*s", (int)(ulen && o->url[ulen - 1] == '/' ? ulen - 1 : ulen), o->url);
  cr_buf_t h = CR_BUF_INIT;
  if (body) cr_buf_append_str(&h, "Content-Type: application/json\r\n");
  if (o->token && o->token[0]) cr_buf_printf(&h, "Authorization: Bearer %s\r\n", o->token);
  cr_buf_putc(&h, '\0');
  char err[600];
  /* A redrive of a big dead-letter queue takes its time: 10 minutes at most. */
  int rc = cr_httpc_request(base, method, path, h.data, body, body ? strlen(body) : 0, 600, r, err, sizeof err);
  cr_buf_free(&h);
  if (rc) {
    fprintf(stderr, "crescent %s: %s\n", o->cmd->name, err);
    return 1;
  }
  return 0;
}

cr_jr_doc_t *cr_remote_answer(const cr_remote_t *o, const cr_httpc_resp_t *r, int want) {
  char err[160];
  cr_jr_doc_t *d = cr_jr_parse(r->body.data ? r->body.data : "", r->body.len, err, sizeof err);
  if (r->status == want && d) return d;
  const cr_jr_val_t *e = d ? cr_jr_get(cr_jr_root(d), "error") : NULL;
  if (e && e->type == CR_JR_STRING) fprintf(stderr, "crescent %s: %s (%d)\n", o->cmd->name, e->str, r->status);
  else if (r->status == 404) fprintf(stderr, "crescent %s: the server has no such API (404)\n", o->cmd->name);
  else fprintf(stderr, "crescent %s: the server answered %d\n", o->cmd->name, r->status);
  cr_jr_free(d);
  return NULL;
}

void cr_remote_encode(cr_buf_t *b, const char *name) {
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
