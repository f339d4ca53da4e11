/* users.c - crescent users list|get|disable|enable|delete|rotate-key: the
 * accounts' operators' API (/_/api/users, core/trigger/http/accounts_api.h)
 * on a running server started with --accounts.
 *
 *   crescent users list [--cursor C] [--limit N]   one page, as JSON
 *   crescent users get ID|LOGIN                     the user, as JSON
 *   crescent users disable ID | enable ID           the user after the change
 *   crescent users delete ID
 *   crescent users rotate-key                       a new signing key: its kid
 * with --url URL and --admin-token T as crescent invoke takes them. Exit 0
 * done, 1 the server refused (its error printed), 2 a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "httpc.h"

const cr_cli_cmd_t cr_cli_users = {
    .name = "users",
    .args = "list [--cursor C] [--limit N] | get ID|LOGIN | disable ID | enable ID | delete ID | rotate-key "
            "[--url URL] [--admin-token TOKEN]",
    .about = "Manages the accounts of a running server started with --accounts, through its\n"
             "operators' API (URL/_/api/users): lists them a page at a time (--limit, at most 100;\n"
             "--cursor from the last page's \"cursor\"), shows one by id or login, disables one (its\n"
             "sign-ins and refresh tokens are refused; its access tokens stop at /_/auth/me),\n"
             "enables or deletes one, or makes a new signing key (rotate-key: the old one still\n"
             "verifies for --accounts-key-grace). Prints the server's JSON. URL: --url, else\n"
             "CRESCENT_URL, else http://127.0.0.1:8080. The admin token: --admin-token, else\n"
             "CRESCENT_ADMIN_TOKEN.\n",
    .min_args = 1,
    .max_args = 2,
};

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "crescent users: %s%s%s%s\n", msg, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
  fprintf(stderr, "usage: crescent users %s\n(crescent users --help for more)\n", cr_cli_users.args);
  return 2;
}

/* Percent-encodes a path segment or query value. */
static void encode(cr_buf_t *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~@", *p))
      cr_buf_putc(b, (char)*p);
    else {
      cr_buf_putc(b, '%');
      cr_buf_putc(b, hex[*p >> 4]);
      cr_buf_putc(b, hex[*p & 15]);
    }
  }
}

int cr_cmd_users(int argc, char **argv) {
  const char *url = getenv("CRESCENT_URL"), *token = getenv("CRESCENT_ADMIN_TOKEN"), *cursor = NULL, *limit = NULL;
  const char *pos[3] = {NULL, NULL, NULL};
  int npos = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      cr_cli_cmd_usage(&cr_cli_users, stdout);
      return 0;
    }
  }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = strcmp(a, "--url") == 0           ? &url
                        : strcmp(a, "--admin-token") == 0 ? &token
                        : strcmp(a, "--cursor") == 0      ? &cursor
                        : strcmp(a, "--limit") == 0       ? &limit
                                                          : NULL;
    if (slot) {
      if (i + 1 >= argc) return usage("missing the value of", a);
      *slot = argv[++i];
    } else if (a[0] == '-' && a[1]) return usage("unknown option", a);
    else if (npos < 2) pos[npos++] = a;
    else return usage("unexpected argument", a);
  }
  if (!npos) return usage("missing", "list, get, disable, enable, delete or rotate-key");
  const char *cmd = pos[0], *arg = pos[1];
  const char *method = "GET";
  cr_buf_t path = CR_BUF_INIT, headers = CR_BUF_INIT;
  int want_arg = strcmp(cmd, "list") != 0 && strcmp(cmd, "rotate-key") != 0;
  if (want_arg && !arg) return usage("missing", "ID");
  if (!want_arg && arg) return usage("unexpected argument", arg);
  if ((cursor || limit) && strcmp(cmd, "list") != 0) return usage("--cursor and --limit are for", "list");
  if (strcmp(cmd, "list") == 0) {
    cr_buf_append_str(&path, "/_/api/users?limit=");
    encode(&path, limit ? limit : "50");
    if (cursor) {
      cr_buf_append_str(&path, "&cursor=");
      encode(&path, cursor);
    }
  } else if (strcmp(cmd, "rotate-key") == 0) {
    method = "POST";
    cr_buf_append_str(&path, "/_/api/accounts/rotate-key");
  } else if (strcmp(cmd, "get") == 0 || strcmp(cmd, "delete") == 0 || strcmp(cmd, "disable") == 0 ||
             strcmp(cmd, "enable") == 0) {
    cr_buf_append_str(&path, "/_/api/users/");
    encode(&path, arg);
    if (strcmp(cmd, "delete") == 0) method = "DELETE";
    else if (strcmp(cmd, "get") != 0) {
      method = "POST";
      cr_buf_putc(&path, '/');
      cr_buf_append_str(&path, cmd);
    }
  } else {
    cr_buf_free(&path);
    return usage("unknown subcommand", cmd);
  }
  cr_buf_putc(&path, '\0');
  if (token && token[0]) {
    cr_buf_append_str(&headers, "Authorization: Bearer ");
    cr_buf_append_str(&headers, token);
    cr_buf_append_str(&headers, "\r\n");
  }
  cr_buf_putc(&headers, '\0');
  if (!url || !url[0]) url = "http://127.0.0.1:8080";
  size_t ulen = strlen(url);
  char base[512];
  snprintf(base, sizeof base, "%.*s", (int)(ulen && url[ulen - 1] == '/' ? ulen - 1 : ulen), url);
  cr_httpc_resp_t r;
  char err[600];
  int rc = cr_httpc_request(base, method, path.data, headers.data, "", 0, 30, &r, err, sizeof err);
  cr_buf_free(&path);
  cr_buf_free(&headers);
  if (rc) {
    fprintf(stderr, "crescent users: %s\n", err);
    return 1;
  }
  int ok = r.status >= 200 && r.status < 300;
  if (r.status == 204) fprintf(stdout, "deleted\n");
  else {
    fwrite(r.body.data ? r.body.data : "", 1, r.body.len, ok ? stdout : stderr);
    fputc('\n', ok ? stdout : stderr);
  }
  if (!ok) fprintf(stderr, "crescent users: the server answered %d\n", r.status);
  cr_httpc_free(&r);
  return ok ? 0 : 1;
}
