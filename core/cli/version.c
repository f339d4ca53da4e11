/* version.c - crescent version: crescent and its libraries. */
#include <llhttp.h>
#include <luajit.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>
#include <hiredis/hiredis.h>

#include "cli.h"

const cr_cli_cmd_t cr_cli_version = {
    .name = "version",
    .args = "[--json]",
    .about = "Prints crescent's version and its libraries' (--json: as a JSON object).\n",
};

int cr_cmd_version(int argc, char **argv) {
  char *rest[64];
  int nrest, json = 0;
  char *args[72];
  int nargs = 0;
  for (int i = 0; i < argc && nargs < 70; i++) {
    if (i >= 2 && strcmp(argv[i], "--json") == 0) json = 1;
    else args[nargs++] = argv[i];
  }
  args[nargs] = NULL;
  int rc = cr_cli_start(&cr_cli_version, NULL, nargs, args, rest, &nrest);
  if (rc >= 0) return rc;
  if (json) {
    printf("{\"crescent\":\"%s\",\"luajit\":\"%s\",\"libuv\":\"%s\",\"llhttp\":\"%d.%d.%d\",\"hiredis\":\"%d.%d.%d\"}\n",
           CRESCENT_VERSION, LUAJIT_VERSION, uv_version_string(), LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
           LLHTTP_VERSION_PATCH, HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    return 0;
  }
  printf("crescent %s (%s, libuv %s, llhttp %d.%d.%d, hiredis %d.%d.%d)\n", CRESCENT_VERSION, LUAJIT_VERSION,
         uv_version_string(), LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, HIREDIS_MAJOR,
         HIREDIS_MINOR, HIREDIS_PATCH);
  return 0;
}
