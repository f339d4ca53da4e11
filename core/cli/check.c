/* check.c - crescent check [DIR]: load every function as the server would and report. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <llhttp.h>
#include <luajit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <hiredis/hiredis.h>

#include "alloc.h"
#include "config.h"
#include "error.h"
#include "jsontext.h"
#include "loader.h"
#include "log.h"
#include "master.h"
#include "modules.h"
#include "registry.h"
#include "shm.h"
#include "vm.h"
#include "cli.h"

static const char *const check_flags[] = {"functions", "init-timeout", NULL};

const cr_cli_cmd_t cr_cli_check = {
    .name = "check",
    .args = "[DIR] [--json]",
    .about = "Loads every function in DIR (default: the --functions folder, ./functions) as the server\n"
             "would, and prints each problem as FILE: message on stderr. Exits 0 when every function\n"
             "loads and routes, 1 otherwise. --json: {\"ok\",\"functions\",\"dir\",\"problems\":[...]} on stdout.\n",
    .max_args = 1,
    .reads_config = 1,
    .flags = check_flags,
};

/* One problem: on stderr, or (--json) into the array of messages. */
static void problem(int json, cr_buf_t *list, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(int json, cr_buf_t *list, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!json) {
    fprintf(stderr, "%s\n", msg);
    return;
  }
  if (list->len) cr_buf_putc(list, ',');
  cr_json_escape(list, msg, strlen(msg));
}

int cr_cmd_check(int argc, char **argv) {
  cr_config_t cfg;
  char *rest[64];
  int nrest;
  /* --json is check's own, not a server flag. */
  int json = 0;
  char *args[72];
  int nargs = 0;
  for (int i = 0; i < argc && nargs < 70; i++) {
    if (i >= 2 && strcmp(argv[i], "--json") == 0) json = 1;
    else args[nargs++] = argv[i];
  }
  args[nargs] = NULL;
  argc = nargs;
  argv = args;
  cr_buf_t list = CR_BUF_INIT;
  int rc = cr_cli_start(&cr_cli_check, &cfg, argc, argv, rest, &nrest);
  if (rc >= 0) return rc;
  const char *dir = nrest > 0 ? rest[0] : cfg.functions_dir;
  cr_log_set_level(CR_LOG_WARN);
  struct stat st;
  if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "%s: not a folder\n", dir);
    cr_config_free(&cfg);
    return 1;
  }
  char **paths = NULL;
  int n = 0;
  if (cr_registry_list(dir, &paths, &n)) {
    fprintf(stderr, "%s: cannot read the folder\n", dir);
    cr_config_free(&cfg);
    return 1;
  }
  cr_load_t *loads = cr_xcalloc((size_t)n, sizeof *loads);
  char **sources = cr_xcalloc((size_t)n, sizeof *sources);
  char **read_errors = cr_xcalloc((size_t)n, sizeof *read_errors);
  int problems = 0;
  for (int i = 0; i < n; i++) {
    char err[512];
    size_t len = 0;
    loads[i].relpath = paths[i];
    loads[i].source = "";
    if (cr_loader_read(dir, paths[i], &sources[i], &len, err, sizeof err) == 0) {
      loads[i].source = sources[i];
      loads[i].len = len;
    } else {
      read_errors[i] = cr_xstrdup(err[0] ? err : "out of memory");
    }
  }
  cr_loader_run(dir, loads, n, cfg.init_timeout);
  cr_registry_t *reg = cr_registry_new(dir);
  for (int i = 0; i < n; i++) {
    cr_fn_t *fn = cr_registry_add(reg, paths[i]);
    if (read_errors[i]) {
      problem(json, &list, "%s", read_errors[i]);
      problems++;
    } else if (!fn) {
      problem(json, &list, "%s: not checked: more than %d functions", paths[i], CR_SHM_MAX_FUNCTIONS);
      problems++;
    } else if (loads[i].ok) {
      cr_registry_publish(reg, fn, sources[i], loads[i].len, &loads[i].settings);
      sources[i] = NULL;
    } else {
      problem(json, &list, "%s", loads[i].error ? loads[i].error : paths[i]);
      problems++;
    }
    cr_load_clear(&loads[i]);
  }
  /* Route conflicts, exactly as the server decides them (path order),
   * printed once below: the registry's own error log line stays quiet. */
  cr_log_setup(-1, 0);
  reg->quiet = 1;
  for (int i = 0; i < reg->nfns; i++) {
    cr_fn_t *fn = reg->fns[i];
    free(fn->error);
    fn->error = NULL;
  }
  cr_registry_route(reg);
  for (int i = 0; i < reg->nfns; i++) {
    cr_fn_t *fn = reg->fns[i];
    if (fn->current && fn->error) {
      problem(json, &list, "%s: %s", fn->relpath, fn->error);
      problems++;
    }
  }
  if (json) {
    cr_buf_t out = CR_BUF_INIT;
    cr_buf_printf(&out, "{\"ok\":%s,\"functions\":%d,\"dir\":", problems ? "false" : "true", n);
    cr_json_escape(&out, dir, strlen(dir));
    cr_buf_printf(&out, ",\"problems\":[%.*s]}\n", (int)list.len, list.data ? list.data : "");
    fwrite(out.data, 1, out.len, stdout);
    cr_buf_free(&out);
  } else if (problems == 0) printf("ok: %d function%s in %s\n", n, n == 1 ? "" : "s", dir);
  else fprintf(stderr, "%d problem%s in %s\n", problems, problems == 1 ? "" : "s", dir);
  for (int i = 0; i < n; i++) {
    free(sources[i]);
    free(read_errors[i]);
    free(paths[i]);
  }
  free(sources);
  free(read_errors);
  free(loads);
  free(paths);
  cr_registry_free(reg);
  cr_config_free(&cfg);
  cr_buf_free(&list);
  return problems ? 1 : 0;
}
