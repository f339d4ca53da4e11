/* schedule.h - schedule triggers: functions run at the ticks of a cron or
 * rate expression (cron.h), each tick once across every worker and every
 * crescent node on the same Redis.
 *
 * Every worker keeps each schedule's next tick (one libuv timer for all of
 * them) and, when it comes, asks Redis for it (script cron_claim): the
 * first to ask claims the tick, SET with NX semantics on
 * "<prefix>{cron:FUNCTION}:<schedule hash>:<tick ms>", whose value is
 * "run <lease end> <owner>". Only the claimer runs it, through the
 * dispatcher (trigger "cron": the function's limits, metering, report line
 * with "schedule" and "scheduledTime"). When it ends (cron_done) the value
 * becomes "done <status>" and the schedule's last result is recorded. Tick
 * keys live a day past the catch-up window.
 *
 * A claimer that dies: its lease ends `timeout` + 5 s after the claim (the
 * run has certainly ended by then, one way or the other). A worker that
 * lost the claim checks the tick again at the lease's end and, if it is
 * still "run" with a past lease, takes it over once (compare and set in the
 * script) and runs it: a tick whose worker died is retried within its
 * timeout + 5 s, not lost, and not run twice by the survivors. A worker that
 * starts checks the latest tick of each schedule the same way, so a lone
 * worker that was killed and restarted retries it too.
 *
 * overlap = false (the default): a running key ("...:running", holding the
 * lease end) is set with each claim and cleared at the end; a tick that
 * comes while it is held is skipped (recorded as "skipped" and counted).
 *
 * catchUp = seconds (default 0): at start, and when Redis comes back after
 * being unreachable at a tick, the latest tick within the last catchUp
 * seconds that nobody claimed is claimed and run: one, never a backlog.
 * Ticks missed (Redis unreachable, or the loop too busy to see them) are
 * counted. Redis unreachable never blocks the loop. */
#ifndef CR_SCHEDULE_H
#define CR_SCHEDULE_H

#include "dispatch.h"
#include "redis.h"
#include "registry.h"
#include "shm.h"

typedef struct uv_loop_s uv_loop_t;
typedef struct cr_schedules_s cr_schedules_t;

typedef struct {
  const char *prefix; /* the key prefix ("cr:"), copied */
  int worker;
  cr_shm_t *shm;      /* the meters (shm.h's cr_shm_trig_t, labelled "cron:EXPR"); NULL: none */
} cr_schedules_opts_t;

/* NULL when out of memory. redis may be NULL: nothing fires. */
cr_schedules_t *cr_schedules_new(uv_loop_t *loop, cr_redis_t *redis, cr_dispatch_t *d, cr_registry_t *reg,
                                 const cr_schedules_opts_t *opts);
/* Makes fn's schedules match its current version's cron triggers. */
void cr_schedules_follow(cr_schedules_t *s, cr_fn_t *fn);
void cr_schedules_follow_all(cr_schedules_t *s);
/* Stops firing and forgets Redis (before it is freed); the loop must run once more. */
void cr_schedules_stop(cr_schedules_t *s);
/* After stop, the dispatcher's and Redis' end, and a loop run. */
void cr_schedules_free(cr_schedules_t *s);

#endif
