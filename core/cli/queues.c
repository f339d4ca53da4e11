/* queues.c - crescent queues [NAME] [--redrive] [--json]: the queues of a running server
 * (GET /_/api/queues) as a table, and the redrive of a dead-letter queue
 * (POST /_/api/queues/NAME/redrive: NAME.dlq back into NAME).
 * Exit status: 0, 1 (unreachable, refused, no such queue, a redrive stopped by a full
 * queue), 2 (usage). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote.h"

const cr_cli_cmd_t cr_cli_queues = {
    .name = "queues",
    .args = "[NAME] [--redrive] [--json] [--url URL] [--token TOKEN]",
    .about = "Prints the queues of a running server (GET /_/api/queues) as a table: depth, delayed,\n"
             "in flight, the age of the oldest message a consumer still needs, and the dead-letter\n"
             "queue's depth. NAME: that queue only. --redrive NAME moves every message of NAME.dlq back\n"
             "into NAME (storage.BUCKET, kv.NAMESPACE: a trigger's dead letters) and prints how many\n"
             "moved; exit 1 when a full queue stopped it (what moved stays moved). --json: the server's\n"
             "answer as JSON. URL, token: as crescent stats.\n",
    .max_args = 1,
};

static double num(const cr_jr_val_t *o, const char *key, int *null) {
  const cr_jr_val_t *v = cr_jr_get(o, key);
  if (null) *null = !v || v->type != CR_JR_NUMBER;
  return v && v->type == CR_JR_NUMBER ? v->num : 0;
}

static void age(char *out, size_t n, const cr_jr_val_t *q) {
  int null;
  double ms = num(q, "oldestAgeMs", &null);
  if (null) snprintf(out, n, "-");
  else if (ms < 1000) snprintf(out, n, "%.0fms", ms);
  else if (ms < 120000) snprintf(out, n, "%.1fs", ms / 1000);
  else snprintf(out, n, "%.1fm", ms / 60000);
}

static int redrive(const cr_remote_t *o) {
  if (!o->npos) {
    fprintf(stderr, "crescent queues: --redrive needs the queue's NAME\n");
    return 2;
  }
  cr_buf_t path = CR_BUF_INIT;
  cr_buf_append_str(&path, "/_/api/queues/");
  cr_remote_encode(&path, o->pos[0]);
  cr_buf_append_str(&path, "/redrive");
  cr_buf_putc(&path, '\0');
  if (!o->json) fprintf(stderr, "redriving %s.dlq into %s ...\n", o->pos[0], o->pos[0]);
  cr_httpc_resp_t r;
  int rc = cr_remote_request(o, "POST", path.data, "", &r);
  cr_buf_free(&path);
  if (rc) return 1;
  char err[160];
  cr_jr_doc_t *d = cr_jr_parse(r.body.data ? r.body.data : "", r.body.len, err, sizeof err);
  const cr_jr_val_t *root = d ? cr_jr_root(d) : NULL;
  int null;
  double moved = num(root, "moved", &null);
  if (o->json && d) {
    fwrite(r.body.data, 1, r.body.len, stdout);
    fputc('\n', stdout);
  } else if (!null) {
    int skipped_null;
    double skipped = num(root, "skipped", &skipped_null);
    printf("%s.dlq -> %s: %.0f moved", o->pos[0], o->pos[0], moved);
    if (!skipped_null) printf(", %.0f skipped", skipped);
    putchar('\n');
  }
  if (r.status != 200) {
    const cr_jr_val_t *e = root ? cr_jr_get(root, "error") : NULL;
    fprintf(stderr, "crescent queues: %s (%d)\n", e && e->type == CR_JR_STRING ? e->str : "the redrive failed", r.status);
    rc = 1;
  }
  cr_jr_free(d);
  cr_httpc_free(&r);
  return rc;
}

int cr_cmd_queues(int argc, char **argv) {
  cr_remote_t o;
  int rc = cr_remote_parse(&o, &cr_cli_queues, argc, argv, 1, "redrive");
  if (rc >= 0) return rc;
  if (o.redrive) return redrive(&o);
  cr_httpc_resp_t r;
  if (cr_remote_request(&o, "GET", "/_/api/queues", NULL, &r)) return 1;
  cr_jr_doc_t *d = cr_remote_answer(&o, &r, 200);
  if (!d) {
    cr_httpc_free(&r);
    return 1;
  }
  const cr_jr_val_t *qs = cr_jr_get(cr_jr_root(d), "queues");
  const char *only = o.npos ? o.pos[0] : NULL;
  int rows = 0;
  if (o.json && !only) {
    fwrite(r.body.data, 1, r.body.len, stdout);
    fputc('\n', stdout);
    rows = 1;
  } else if (!o.json) {
    printf("%-32s %9s %8s %9s %10s %9s\n", "QUEUE", "DEPTH", "DELAYED", "IN_FLIGHT", "OLDEST", "DLQ");
  }
  for (const cr_jr_val_t *q = qs ? qs->child : NULL; q && !(o.json && !only); q = q->next) {
    const cr_jr_val_t *name = cr_jr_get(q, "name");
    if (!name || name->type != CR_JR_STRING || (only && strcmp(name->str, only) != 0)) continue;
    rows++;
    if (o.json) {
      cr_buf_t b = CR_BUF_INIT;
      cr_jr_write(&b, q);
      fwrite(b.data, 1, b.len, stdout);
      fputc('\n', stdout);
      cr_buf_free(&b);
      continue;
    }
    char a[32], dl[32] = "";
    age(a, sizeof a, q);
    size_t nl = strlen(name->str);
    /* A dead-letter queue has no DLQ of its own: its row leaves the column empty. */
    if (!(nl > 4 && strcmp(name->str + nl - 4, ".dlq") == 0)) snprintf(dl, sizeof dl, "%.0f", num(q, "dlqDepth", NULL));
    printf("%-32s %9.0f %8.0f %9.0f %10s %9s\n", name->str, num(q, "depth", NULL), num(q, "delayed", NULL),
           num(q, "inFlight", NULL), a, dl);
  }
  if (only && !rows) {
    fprintf(stderr, "crescent queues: no queue '%s' on the server\n", only);
    rc = 1;
  } else {
    rc = 0;
  }
  cr_jr_free(d);
  cr_httpc_free(&r);
  return rc;
}
