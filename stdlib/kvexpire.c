/* kvexpire.c - the KV expiry sweeper (kvexpire.h): a round is one SMEMBERS
 * of the registered namespaces, then one kv_expire script per namespace;
 * the next round starts a period after the last reply, or at once when some
 * namespace had more due than one script looks at. */
#include "kvexpire.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "modules.h"

/* A script error is logged once, then at most once a minute while it lasts. */
#define WARN_EVERY_MS 60000ULL

struct cr_kvexpire_s {
  uv_timer_t timer;
  cr_redis_t *redis; /* NULL once stopped */
  int script;        /* kv_expire's index in cr_stdlib_scripts */
  int period_ms;
  long count;
  char prefix[64];
  char count_s[24], maxlen_s[24];
  int outstanding; /* replies this round still waits for (the SMEMBERS counts as one) */
  int more;        /* some namespace had more due than count */
  int closed;
  uint64_t warned_ms; /* when a failure was last logged */
};

static void on_tick(uv_timer_t *t);

static void arm(cr_kvexpire_t *x, int ms) {
  if (x->redis) uv_timer_start(&x->timer, on_tick, (uint64_t)ms, 0);
}

static void warn(cr_kvexpire_t *x, const char *what, const char *err) {
  uint64_t now = cr_wall_ms();
  if (x->warned_ms && now - x->warned_ms < WARN_EVERY_MS) return;
  x->warned_ms = now;
  cr_log(CR_LOG_WARN, NULL, NULL, "kv expiry sweeper: %s: %s (expire records wait until it works)", what, err);
}

/* One reply of the round is in: when it was the last, the next round. */
static void round_step_done(cr_kvexpire_t *x) {
  if (--x->outstanding > 0) return;
  int more = x->more;
  x->more = 0;
  arm(x, more ? 0 : x->period_ms);
}

static void on_swept(void *data, redisReply *reply, const char *err) {
  cr_kvexpire_t *x = data;
  if (!x->redis) return; /* stopped: the round is over */
  if (err) {
    warn(x, "a namespace's sweep", err);
  } else if (reply->type == REDIS_REPLY_ERROR) {
    /* (NOSCRIPT never reaches here: the client loads the scripts again.) */
    warn(x, "a namespace's sweep", reply->str);
  } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
             reply->element[1]->type == REDIS_REPLY_INTEGER && reply->element[1]->integer >= x->count) {
    x->more = 1;
  }
  round_step_done(x);
}

/* A name kv.namespace accepts (1 to 64 letters, digits, '_', '.', '-'):
 * anything else in the set was not written by crescent. */
static int valid_ns(const char *s, size_t n) {
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
          c == '-'))
      return 0;
  }
  return 1;
}

static void on_members(void *data, redisReply *reply, const char *err) {
  cr_kvexpire_t *x = data;
  if (!x->redis) return;
  if (err || reply->type != REDIS_REPLY_ARRAY) {
    if (!err && reply->type == REDIS_REPLY_ERROR) warn(x, "the namespaces", reply->str);
    round_step_done(x);
    return;
  }
  for (size_t i = 0; i < reply->elements; i++) {
    const redisReply *e = reply->element[i];
    if (e->type != REDIS_REPLY_STRING || !valid_ns(e->str, e->len)) continue;
    char exp[160], idx[160], seq[160], changes[160], vpre[160];
    int ns = (int)e->len;
    snprintf(exp, sizeof exp, "%s{kv:%.*s}:exp", x->prefix, ns, e->str);
    snprintf(idx, sizeof idx, "%s{kv:%.*s}:i", x->prefix, ns, e->str);
    snprintf(seq, sizeof seq, "%s{kv:%.*s}:seq", x->prefix, ns, e->str);
    snprintf(changes, sizeof changes, "%s{kv:%.*s}:changes", x->prefix, ns, e->str);
    snprintf(vpre, sizeof vpre, "%s{kv:%.*s}:v:", x->prefix, ns, e->str);
    const char *argv[] = {exp, idx, seq, changes, vpre, x->count_s, x->maxlen_s};
    size_t lens[7];
    for (int k = 0; k < 7; k++) lens[k] = strlen(argv[k]);
    if (cr_redis_eval(x->redis, x->script, 4, 7, argv, lens, on_swept, x)) x->outstanding++;
  }
  round_step_done(x);
}

static void on_tick(uv_timer_t *t) {
  cr_kvexpire_t *x = t->data;
  if (!x->redis) return;
  if (!cr_redis_connected(x->redis)) {
    arm(x, x->period_ms);
    return;
  }
  char key[96];
  snprintf(key, sizeof key, "%skvexp", x->prefix);
  const char *argv[] = {"SMEMBERS", key};
  size_t lens[] = {8, strlen(key)};
  x->outstanding = 1;
  x->more = 0;
  if (!cr_redis_call(x->redis, 2, argv, lens, on_members, x)) {
    x->outstanding = 0;
    arm(x, x->period_ms);
  }
}

cr_kvexpire_t *cr_kvexpire_new(uv_loop_t *loop, cr_redis_t *redis, const cr_kvexpire_opts_t *opts) {
  int script = -1;
  for (int i = 0; i < cr_stdlib_nscripts; i++)
    if (strcmp(cr_stdlib_scripts[i].name, "kv_expire") == 0) script = i;
  if (script < 0 || !redis) return NULL;
  cr_kvexpire_t *x = calloc(1, sizeof *x);
  if (!x) return NULL;
  x->redis = redis;
  x->script = script;
  x->period_ms = opts && opts->period_ms > 0 ? opts->period_ms : 250;
  x->count = opts && opts->count > 0 ? opts->count : 500;
  snprintf(x->prefix, sizeof x->prefix, "%s", opts && opts->prefix ? opts->prefix : "cr:");
  snprintf(x->count_s, sizeof x->count_s, "%ld", x->count);
  snprintf(x->maxlen_s, sizeof x->maxlen_s, "%ld", opts && opts->stream_maxlen > 0 ? opts->stream_maxlen : 100000);
  uv_timer_init(loop, &x->timer);
  x->timer.data = x;
  uv_unref((uv_handle_t *)&x->timer); /* a sweeper alone does not keep the loop running */
  arm(x, x->period_ms);
  return x;
}

void cr_kvexpire_stop(cr_kvexpire_t *x) {
  if (!x) return;
  x->redis = NULL;
  if (!x->closed) {
    x->closed = 1;
    uv_close((uv_handle_t *)&x->timer, NULL);
  }
}

void cr_kvexpire_free(cr_kvexpire_t *x) { free(x); }
