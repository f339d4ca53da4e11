/* invoke.h - running a function's handler in an instance: the handler
 * protocol on the C side.
 *
 * Each invocation runs in the instance's coroutine, so the handler can yield
 * (stdlib calls) while the worker serves others; the coroutine is reused
 * while it ends cleanly. Around every resume the deadline is armed with the
 * watchdog (vm.h) and the CPU time, memory peak and shared-memory "busy"
 * slot are kept. The trigger (gateway.c for HTTP) builds the event; this
 * module calls handler(event, ctx) and reports how it ended.
 *
 * ctx is one table per instance: functionName, version, versionHash, env,
 * memoryLimitInMB, log.{debug,info,warn,error}(msg, fields), remaining() (ms
 * left), and per invocation requestId and cold. */
#ifndef CR_INVOKE_H
#define CR_INVOKE_H

#include <stddef.h>
#include <stdint.h>

#include "pool.h"
#include "shm.h"

typedef enum {
  CR_OUTCOME_OK = 0,
  CR_OUTCOME_ERROR,   /* the handler raised an error */
  CR_OUTCOME_TIMEOUT, /* past its timeout */
  CR_OUTCOME_MEMORY,  /* past its memory limit */
} cr_outcome_t;

typedef struct cr_invocation_s {
  cr_instance_t *inst;
  lua_State *co;
  const char *reqid;
  int cold;
  uint64_t serial;
  uint64_t start_ns;
  uint64_t deadline_ns;
  uint64_t end_ns;
  uint64_t cpu_ns;
  size_t mem_peak;
  cr_outcome_t outcome;
  int nresults;          /* results on co's stack, when OK */
  char error[4096];      /* message and traceback, when not OK */
} cr_invocation_t;

/* Completes a new instance: its init left the file's result (a handler or a
 * settings table) on the stack. Makes the ctx table and the coroutine. */
int cr_invoke_prepare(cr_instance_t *inst, char *err, size_t errlen);

/* Starts an invocation in inst: pushes the handler onto the coroutine and
 * returns it, for the caller to push the event. */
lua_State *cr_invoke_begin(cr_invocation_t *inv, cr_instance_t *inst, const char *reqid, int cold);
/* Calls handler(event, ctx). Returns 0 when it ended (see inv->outcome), or
 * CR_EAGAIN when it waits on I/O. */
int cr_invoke_run(cr_invocation_t *inv);
/* Clears the coroutine after the caller read the results. Marks the instance
 * broken after a timeout or memory error. */
void cr_invoke_end(cr_invocation_t *inv);

/* Where this worker publishes "busy since / deadline" for the master's
 * supervisor (shared memory), or NULL. */
void cr_invoke_set_busy_slot(cr_shm_worker_t *slot);

#endif
