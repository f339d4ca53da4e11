/* remote.h - what the commands that talk to a running server share (stats, queues):
 * --url URL (else CRESCENT_URL, else http://127.0.0.1:8080), --token / --admin-token TOKEN
 * (else CRESCENT_ADMIN_TOKEN), --json, the requests and the server's errors. */
#ifndef CR_REMOTE_H
#define CR_REMOTE_H

#include "buf.h"
#include "cli.h"
#include "httpc.h"
#include "jsonread.h"

typedef struct {
  const cr_cli_cmd_t *cmd;
  const char *url, *token;
  const char *pos[4];
  int npos;
  int json;
  int watch, redrive;          /* stats --watch, queues --redrive */
  double interval;             /* --interval S (--watch), default 2 */
  long count;                  /* --count N: --watch stops after N rounds (0: never) */
} cr_remote_t;

/* Reads argv[2..] for cmd (at most max_pos positional arguments; the flags
 * of the command's `allow`: a string holding "watch", "redrive"). -1: go on;
 * else the exit status (0 after --help, 2 on a usage error, printed). */
int cr_remote_parse(cr_remote_t *o, const cr_cli_cmd_t *cmd, int argc, char **argv, int max_pos, const char *allow);
/* One request; 0 with *r filled (free it), or 1 (the failure printed). */
int cr_remote_request(const cr_remote_t *o, const char *method, const char *path, const char *body,
                      cr_httpc_resp_t *r);
/* The answer as a JSON document when its status is want; else prints the
 * server's error and returns NULL. */
cr_jr_doc_t *cr_remote_answer(const cr_remote_t *o, const cr_httpc_resp_t *r, int want);
/* Percent-encodes a name for a path (keeps '/' and the unreserved characters). */
void cr_remote_encode(cr_buf_t *b, const char *name);

#endif
