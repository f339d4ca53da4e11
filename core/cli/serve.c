/* serve.c - crescent serve: run the master (and its workers) until stopped. */
#include <stdio.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "cli.h"

const cr_cli_cmd_t cr_cli_serve = {
    .name = "serve",
    .args = "",
    .about = "Serves the functions folder over HTTP until SIGTERM or SIGINT (SIGHUP rescans the folder).\n"
             "Exits 1 if it cannot start (the log says why).\n",
    .reads_config = 1,
    .flags = NULL, /* every flag */
};

int cr_cmd_serve(int argc, char **argv) {
  cr_config_t cfg;
  char *rest[64];
  int nrest;
  int rc = cr_cli_start(&cr_cli_serve, &cfg, argc, argv, rest, &nrest);
  if (rc >= 0) return rc;
  rc = cr_master_run(&cfg);
  cr_log_flush();
  cr_config_free(&cfg);
  return rc;
}
