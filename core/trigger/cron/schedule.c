/* schedule.c - schedule triggers (schedule.h).
 *
 * A schedule (sched_t) is one { cron = ... } entry of a function's current
 * version, kept across versions while its expression and zone stay the
 * same (its hash names its Redis keys). Requests in flight and runs hold a
 * reference; a removed schedule is marked dead and freed with its last one. */
#include "schedule.h"

#include <hiredis/hiredis.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "clock.h"
#include "cron.h"
#include "hash.h"
#include "log.h"
#include "modules.h"

#define LEASE_MARGIN_MS 10000 /* past the timeout: the dispatcher's wait, the watchdog's grace */
#define KEEP_MS 86400000LL    /* tick keys outlive the catch-up window by a day */
#define CHECK_AFTER_MS 50

typedef struct sched_s {
  cr_schedules_t *set;
  struct sched_s *next;
  cr_fn_t *fn;
  char *expr, *tz;
  char hash[17];
  double catch_up;
  int overlap;
  double timeout;
  cr_cron_t *cron;
  char *base;          /* "<prefix>{cron:FN}:<hash>" */
  int64_t next_ms;     /* its next tick, -1 none */
  int64_t missed_tick; /* a tick Redis could not be asked about (for catch-up), 0 none */
  int dead, refs, seen;
  cr_shm_trig_t *meters;
} sched_t;

/* A tick to ask about again when a lease ends. */
typedef struct check_s {
  sched_t *s;
  int64_t tick, at;
  struct check_s *next;
} check_t;

struct cr_schedules_s {
  uv_loop_t *loop;
  cr_redis_t *redis;
  cr_dispatch_t *d;
  cr_registry_t *reg;
  cr_shm_t *shm;
  char prefix[64];
  char owner[64];
  int claim_script, done_script;
  uv_timer_t timer;
  sched_t *list;
  check_t *checks;
  int stopped;
  unsigned id_base;
  unsigned long long ncalls;
};

typedef struct {
  sched_t *s;
  int64_t tick;
  int mode;            /* 0 a tick, 1 a check (never claims what nobody claimed) */
} claim_t;

/* A run's data in its dispatcher call. */
typedef struct {
  sched_t *s;
  int64_t tick;
  int attempt;
  uint64_t start_ms;
} run_t;

static const cr_trigger_t cron_trigger;
static void rearm(cr_schedules_t *set);
static void on_timer(uv_timer_t *t);

static run_t *run_of(cr_call_t *call) { return (run_t *)(void *)call->data.bytes; }

static void sched_free(sched_t *s) {
  cr_cron_free(s->cron);
  free(s->expr);
  free(s->tz);
  free(s->base);
  free(s);
}

static void unref(sched_t *s) {
  if (--s->refs > 0 || !s->dead) return;
  for (sched_t **l = &s->set->list; *l; l = &(*l)->next)
    if (*l == s) {
      *l = s->next;
      break;
    }
  sched_free(s);
}

cr_schedules_t *cr_schedules_new(uv_loop_t *loop, cr_redis_t *redis, cr_dispatch_t *d, cr_registry_t *reg,
                                 const cr_schedules_opts_t *opts) {
  cr_schedules_t *set = calloc(1, sizeof *set);
  if (!set) return NULL;
  set->loop = loop;
  set->redis = redis;
  set->d = d;
  set->reg = reg;
  set->shm = opts->shm;
  snprintf(set->prefix, sizeof set->prefix, "%s", opts->prefix ? opts->prefix : "cr:");
  set->id_base = (unsigned)(cr_wall_ms() * 2654435761u) ^ (unsigned)uv_os_getpid();
  snprintf(set->owner, sizeof set->owner, "w%d-%08x", opts->worker, set->id_base);
  set->claim_script = set->done_script = -1;
  for (int i = 0; i < cr_stdlib_nscripts; i++) {
    if (strcmp(cr_stdlib_scripts[i].name, "cron_claim") == 0) set->claim_script = i;
    if (strcmp(cr_stdlib_scripts[i].name, "cron_done") == 0) set->done_script = i;
  }
  uv_timer_init(loop, &set->timer);
  set->timer.data = set;
  uv_unref((uv_handle_t *)&set->timer);
  return set;
}

void cr_schedules_stop(cr_schedules_t *set) {
  if (!set || set->stopped) return;
  set->stopped = 1;
  set->redis = NULL;
  uv_close((uv_handle_t *)&set->timer, NULL);
}

void cr_schedules_free(cr_schedules_t *set) {
  if (!set) return;
  while (set->checks) {
    check_t *c = set->checks;
    set->checks = c->next;
    free(c);
  }
  while (set->list) {
    sched_t *s = set->list;
    set->list = s->next;
    sched_free(s);
  }
  free(set);
}

/* --- claims ------------------------------------------------------------------------------------ */

static void add_check(sched_t *s, int64_t tick, int64_t at) {
  check_t *c = malloc(sizeof *c);
  if (!c) return;
  c->s = s;
  c->tick = tick;
  c->at = at;
  c->next = s->set->checks;
  s->set->checks = c;
  s->refs++;
}

static void run(sched_t *s, int64_t tick, int attempt);

static void missed(sched_t *s, int64_t tick) {
  if (s->meters) atomic_fetch_add_explicit(&s->meters->cron_missed, 1, memory_order_relaxed);
  if (tick > s->missed_tick) s->missed_tick = tick;
}

/* cron_claim's reply: [code, value]. */
static void on_claim(void *data, redisReply *reply, const char *err) {
  claim_t *c = data;
  sched_t *s = c->s;
  int64_t tick = c->tick;
  int mode = c->mode;
  free(c);
  if (!s->dead && !s->set->stopped) {
    if (err || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
      if (!mode) missed(s, tick);
      else if (s->set->redis) add_check(s, tick, (int64_t)cr_wall_ms() + 1000);
      if (reply && reply->type == REDIS_REPLY_ERROR)
        cr_log(CR_LOG_WARN, s->fn->name, NULL, "schedule %s: claiming a tick: %s", s->expr, reply->str);
    } else {
      long long code = reply->element[0]->integer;
      const redisReply *v = reply->element[1];
      if (code == 1 || code == 2) {
        run(s, tick, code == 2 ? 2 : 1);
      } else if (code == 3) {
        if (s->meters) atomic_fetch_add_explicit(&s->meters->cron_skipped, 1, memory_order_relaxed);
        cr_log(CR_LOG_INFO, s->fn->name, NULL, "schedule %s: a tick skipped: the last run is still going (overlap = false)",
               s->expr);
      } else if (v->type == REDIS_REPLY_STRING && v->len > 4 && memcmp(v->str, "run ", 4) == 0) {
        /* Someone else runs it: ask again when its lease ends, in case it died. */
        long long until = strtoll(v->str + 4, NULL, 10);
        if (until > 0) {
          add_check(s, tick, until + CHECK_AFTER_MS);
          rearm(s->set);
        }
      }
    }
  }
  unref(s);
}

static void claim(sched_t *s, int64_t tick, int mode) {
  cr_schedules_t *set = s->set;
  if (!set->redis || set->claim_script < 0 || !cr_redis_connected(set->redis)) {
    if (!mode) missed(s, tick);
    else if (set->redis) add_check(s, tick, (int64_t)cr_wall_ms() + 1000); /* not connected yet: again in a second */
    return;
  }
  claim_t *c = malloc(sizeof *c);
  if (!c) return;
  c->s = s;
  c->tick = tick;
  c->mode = mode;
  char key[700], running[700], owner[80], now[24], until[24], keep[24], lease[24];
  uint64_t now_ms = cr_wall_ms();
  long long lease_ms = (long long)(s->timeout * 1000) + LEASE_MARGIN_MS;
  snprintf(key, sizeof key, "%s:%lld", s->base, (long long)tick);
  snprintf(running, sizeof running, "%s:running", s->base);
  snprintf(owner, sizeof owner, "%s", set->owner);
  snprintf(now, sizeof now, "%llu", (unsigned long long)now_ms);
  snprintf(until, sizeof until, "%llu", (unsigned long long)now_ms + (unsigned long long)lease_ms);
  snprintf(keep, sizeof keep, "%lld", KEEP_MS + (long long)(s->catch_up * 1000));
  snprintf(lease, sizeof lease, "%lld", lease_ms);
  const char *argv[] = {key, running, owner, now, until, keep, s->overlap ? "1" : "0", lease, mode ? "check" : "tick"};
  size_t lens[9];
  for (int i = 0; i < 9; i++) lens[i] = strlen(argv[i]);
  s->refs++;
  if (!cr_redis_eval(set->redis, set->claim_script, 2, 9, argv, lens, on_claim, c)) {
    free(c);
    s->refs--;
    if (!mode) missed(s, tick);
    else add_check(s, tick, (int64_t)now_ms + 1000);
  }
}

/* --- runs --------------------------------------------------------------------------------------- */

static void run(sched_t *s, int64_t tick, int attempt) {
  cr_schedules_t *set = s->set;
  char reqid[48];
  int n = snprintf(reqid, sizeof reqid, "%08x-c-%llx", set->id_base, ++set->ncalls);
  cr_call_t *call = cr_dispatch_call(set->d, &cron_trigger, s->fn, s, reqid, (size_t)n);
  if (!call) {
    missed(s, tick);
    return;
  }
  run_t *r = run_of(call);
  r->s = s;
  r->tick = tick;
  r->attempt = attempt;
  r->start_ms = cr_wall_ms();
  s->refs++;
  if (s->meters) atomic_fetch_add_explicit(&s->meters->cron_fired, 1, memory_order_relaxed);
  cr_dispatch_submit(set->d, call);
}

static void on_done(void *data, redisReply *reply, const char *err) {
  (void)reply;
  (void)err;
  unref(data);
}

/* Records how a run ended: the meters, and cron_done. */
static void ended(sched_t *s, const run_t *r, const char *status, int failed) {
  uint64_t now = cr_wall_ms();
  if (s->meters) {
    atomic_store_explicit(&s->meters->cron_last_tick_ms, (uint64_t)r->tick, memory_order_relaxed);
    atomic_store_explicit(&s->meters->cron_last_end_ms, now, memory_order_relaxed);
    atomic_store_explicit(&s->meters->cron_last_failed, (uint32_t)failed, memory_order_relaxed);
    if (failed) atomic_fetch_add_explicit(&s->meters->cron_errors, 1, memory_order_relaxed);
  }
  cr_schedules_t *set = s->set;
  if (!set->redis || set->stopped || set->done_script < 0) return;
  char key[700], running[700], last[700], now_s[24], dur[24], tick[24];
  snprintf(key, sizeof key, "%s:%lld", s->base, (long long)r->tick);
  snprintf(running, sizeof running, "%s:running", s->base);
  snprintf(last, sizeof last, "%s:last", s->base);
  snprintf(now_s, sizeof now_s, "%llu", (unsigned long long)now);
  snprintf(dur, sizeof dur, "%llu", (unsigned long long)(now - r->start_ms));
  snprintf(tick, sizeof tick, "%lld", (long long)r->tick);
  const char *argv[] = {key, running, last, set->owner, status, now_s, dur, tick};
  size_t lens[8];
  for (int i = 0; i < 8; i++) lens[i] = strlen(argv[i]);
  s->refs++;
  if (!cr_redis_eval(set->redis, set->done_script, 3, 8, argv, lens, on_done, s)) s->refs--;
}

static void push_event(cr_call_t *call, lua_State *L) {
  run_t *r = run_of(call);
  char t[32];
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "cron");
  lua_setfield(L, -2, "source");
  lua_pushstring(L, r->s->expr);
  lua_setfield(L, -2, "schedule");
  cr_clock_iso8601((uint64_t)r->tick, t);
  lua_pushstring(L, t);
  lua_setfield(L, -2, "scheduledTime");
  cr_clock_iso8601(cr_wall_ms(), t);
  lua_pushstring(L, t);
  lua_setfield(L, -2, "time");
}

static int finish(cr_call_t *call) {
  run_t *r = run_of(call);
  cr_invocation_t *inv = &call->inv;
  int ok = inv->outcome == CR_OUTCOME_OK;
  const char *status = ok ? "succeeded" : inv->outcome == CR_OUTCOME_TIMEOUT ? "timeout"
                                          : inv->outcome == CR_OUTCOME_MEMORY ? "memory" : "error";
  ended(r->s, r, status, !ok);
  unref(r->s);
  return ok ? 200 : 500;
}

static void refused(cr_call_t *call, cr_refusal_t why) {
  run_t *r = run_of(call);
  static const char *const reasons[] = {"", "not loaded", "throttled", "init failed", "stopping"};
  const char *reason = why >= 1 && why <= 4 ? reasons[why] : "refused";
  cr_log(CR_LOG_WARN, call->fn->name, call->reqid, "schedule %s: a tick did not run (%s)", r->s->expr, reason);
  ended(r->s, r, reason, 1);
  unref(r->s);
}

static void report_fields(cr_call_t *call, cr_buf_t *line) {
  run_t *r = run_of(call);
  char t[32];
  cr_log_str(line, "schedule", r->s->expr, strlen(r->s->expr));
  cr_clock_iso8601((uint64_t)r->tick, t);
  cr_log_str(line, "scheduledTime", t, strlen(t));
  cr_log_int(line, "delay", (long long)(r->start_ms - (uint64_t)r->tick));
  if (r->attempt > 1) cr_log_int(line, "attempt", r->attempt);
}

static const cr_trigger_t cron_trigger = {
    .name = "cron", .push_event = push_event, .finish = finish, .refused = refused, .report_fields = report_fields};

/* --- the timer ---------------------------------------------------------------------------------- */

static void rearm(cr_schedules_t *set) {
  if (set->stopped) return;
  int64_t soonest = -1;
  for (sched_t *s = set->list; s; s = s->next)
    if (!s->dead && s->next_ms >= 0 && (soonest < 0 || s->next_ms < soonest)) soonest = s->next_ms;
  for (check_t *c = set->checks; c; c = c->next)
    if (soonest < 0 || c->at < soonest) soonest = c->at;
  for (sched_t *s = set->list; s; s = s->next)
    if (!s->dead && s->missed_tick && (soonest < 0 || soonest > (int64_t)cr_wall_ms() + 1000))
      soonest = (int64_t)cr_wall_ms() + 1000; /* try the missed tick again in a second */
  if (soonest < 0) {
    uv_timer_stop(&set->timer);
    return;
  }
  int64_t now = (int64_t)cr_wall_ms();
  uv_timer_start(&set->timer, on_timer, soonest > now ? (uint64_t)(soonest - now) : 0, 0);
}

static void on_timer(uv_timer_t *t) {
  cr_schedules_t *set = t->data;
  int64_t now = (int64_t)cr_wall_ms();
  for (sched_t *s = set->list; s; s = s->next) {
    if (s->dead) continue;
    if (s->next_ms >= 0 && s->next_ms <= now) {
      int64_t tick = s->next_ms, after = cr_cron_next(s->cron, tick);
      /* Ticks the loop was too busy to see: the latest runs, the rest are missed. */
      for (int k = 0; k < 1000 && after >= 0 && after <= now; k++) {
        missed(s, tick);
        tick = after;
        after = cr_cron_next(s->cron, tick);
      }
      s->next_ms = after;
      if (s->meters) atomic_store_explicit(&s->meters->cron_next_ms, (uint64_t)(after > 0 ? after : 0), memory_order_relaxed);
      claim(s, tick, 0);
    }
    if (s->missed_tick && set->redis && cr_redis_connected(set->redis)) {
      int64_t m = s->missed_tick;
      s->missed_tick = 0;
      if (s->catch_up > 0 && now - m <= (int64_t)(s->catch_up * 1000)) claim(s, m, 0);
    }
  }
  for (check_t **l = &set->checks; *l;) {
    check_t *c = *l;
    if (c->at > now) {
      l = &c->next;
      continue;
    }
    *l = c->next;
    if (!c->s->dead) claim(c->s, c->tick, 1);
    unref(c->s);
    free(c);
  }
  rearm(set);
}

/* --- following the registry ------------------------------------------------------------------------ */

static void schedule_hash(const char *expr, const char *tz, char out[17]) {
  char buf[400];
  int n = snprintf(buf, sizeof buf, "%s\n%s", expr, tz ? tz : "");
  snprintf(out, 17, "%016llx", (unsigned long long)cr_fnv1a(buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1)));
}

static sched_t *sched_new(cr_schedules_t *set, cr_fn_t *fn, const cr_trigger_spec_t *t) {
  char err[300];
  cr_cron_t *cron = cr_cron_parse(t->cron.expr, t->cron.tz, err, sizeof err);
  if (!cron) {
    cr_log(CR_LOG_ERROR, fn->name, NULL, "schedule %s: %s", t->cron.expr, err); /* validated at load: not reached */
    return NULL;
  }
  sched_t *s = calloc(1, sizeof *s);
  if (!s) {
    cr_cron_free(cron);
    return NULL;
  }
  s->set = set;
  s->fn = fn;
  s->cron = cron;
  s->expr = strdup(t->cron.expr);
  s->tz = t->cron.tz ? strdup(t->cron.tz) : NULL;
  schedule_hash(t->cron.expr, t->cron.tz, s->hash);
  size_t n = strlen(set->prefix) + strlen(fn->name) + 40;
  s->base = malloc(n);
  if (!s->expr || (t->cron.tz && !s->tz) || !s->base) {
    sched_free(s);
    return NULL;
  }
  snprintf(s->base, n, "%s{cron:%s}:%s", set->prefix, fn->name, s->hash);
  s->refs = 1; /* the list's */
  char label[CR_SHM_TRIGGER_LABEL];
  if (strlen(t->cron.expr) + 6 < sizeof label) snprintf(label, sizeof label, "cron:%s", t->cron.expr);
  else snprintf(label, sizeof label, "cron:%.100s...%s", t->cron.expr, s->hash);
  s->meters = cr_shm_trig(set->shm, fn->slot, label);
  return s;
}

void cr_schedules_follow(cr_schedules_t *set, cr_fn_t *fn) {
  if (!set || set->stopped) return;
  cr_fnver_t *ver = fn->removed ? NULL : fn->current;
  for (sched_t *s = set->list; s; s = s->next)
    if (s->fn == fn) s->seen = 0;
  int64_t now = (int64_t)cr_wall_ms();
  for (int i = 0; ver && i < ver->settings.ntriggers; i++) {
    const cr_trigger_spec_t *t = &ver->settings.triggers[i];
    if (t->kind != CR_TRIGGER_CRON) continue;
    char h[17];
    schedule_hash(t->cron.expr, t->cron.tz, h);
    sched_t *s = NULL;
    for (sched_t *x = set->list; x && !s; x = x->next)
      if (x->fn == fn && !x->dead && !x->seen && strcmp(x->hash, h) == 0) s = x;
    int fresh = !s;
    if (fresh && !(s = sched_new(set, fn, t))) continue;
    s->seen = 1;
    s->catch_up = t->cron.catch_up;
    s->overlap = t->cron.overlap;
    s->timeout = ver->settings.timeout;
    if (!fresh) continue;
    s->next = set->list;
    set->list = s;
    s->next_ms = cr_cron_next(s->cron, now);
    if (s->meters) atomic_store_explicit(&s->meters->cron_next_ms, (uint64_t)(s->next_ms > 0 ? s->next_ms : 0), memory_order_relaxed);
    /* A tick whose worker died just before we came (a lone worker restarted), and the
     * catch-up window's latest tick. */
    int64_t window = (int64_t)(s->timeout * 1000) + LEASE_MARGIN_MS + 1000;
    int64_t last = cr_cron_last_in(s->cron, now - window, now);
    int64_t catchup = s->catch_up > 0 ? cr_cron_last_in(s->cron, now - (int64_t)(s->catch_up * 1000), now) : -1;
    if (catchup > 0) claim(s, catchup, 0);
    if (last > 0 && last != catchup) claim(s, last, 1);
  }
  /* The schedules it no longer has (removing one may free it: start over each time). */
  for (int again = 1; again;) {
    again = 0;
    for (sched_t *s = set->list; s; s = s->next)
      if (s->fn == fn && !s->seen && !s->dead) {
        s->dead = 1;
        unref(s);
        again = 1;
        break;
      }
  }
  rearm(set);
}

void cr_schedules_follow_all(cr_schedules_t *set) {
  for (int i = 0; i < set->reg->nfns; i++) cr_schedules_follow(set, set->reg->fns[i]);
}
