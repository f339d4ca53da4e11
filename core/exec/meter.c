/* meter.c - per-loop meters, report lines, the flush to shared memory. */
#include "meter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "invoke.h"
#include "log.h"

#define FLUSH_AFTER_NS 1000000

typedef struct {
  uint64_t invocations, errors, client_errors, timeouts, cold_starts, duration_ns, billed_ms, mb_ms;
  uint64_t hist[CR_SHM_HIST_BUCKETS];
  uint64_t http_requests, http_errors, http_bytes_in, http_bytes_out, http_ns;
  uint64_t hist_cold[CR_SHM_HIST_BUCKETS], duration_cold_ns, init_hist[CR_SHM_HIST_BUCKETS], init_ns;
  uint64_t mem_hist[CR_SHM_MEM_BUCKETS], mem_sum;
  int dirty;
} fn_meter_t;

struct cr_meter_s {
  cr_shm_t *shm;
  cr_usage_t *usage;       /* or NULL */
  fn_meter_t *fns;         /* by function slot */
  int nfns;
  int *dirty;              /* slots with meters to flush */
  int ndirty;
  uint64_t dirty_since_ns; /* end of the oldest invocation not flushed */
};

cr_meter_t *cr_meter_new(cr_shm_t *shm) {
  cr_meter_t *m = calloc(1, sizeof *m);
  if (m) m->shm = shm;
  return m;
}

void cr_meter_set_usage(cr_meter_t *m, cr_usage_t *usage) {
  if (m) m->usage = usage;
}

void cr_meter_free(cr_meter_t *m) {
  if (!m) return;
  cr_meter_flush(m);
  free(m->fns);
  free(m->dirty);
  free(m);
}

/* The slot's meters, marked dirty; NULL without shared memory (or memory). */
static fn_meter_t *meter_for(cr_meter_t *m, int slot) {
  if (!cr_shm_fn(m->shm, slot)) return NULL;
  if (slot >= m->nfns) {
    int n = m->nfns ? m->nfns : 16;
    while (n <= slot) n *= 2;
    fn_meter_t *f = realloc(m->fns, sizeof *f * (size_t)n);
    if (!f) return NULL;
    m->fns = f;
    int *d = realloc(m->dirty, sizeof *d * (size_t)n);
    if (!d) return NULL;
    m->dirty = d;
    memset(f + m->nfns, 0, sizeof *f * (size_t)(n - m->nfns));
    m->nfns = n;
  }
  fn_meter_t *f = &m->fns[slot];
  if (!f->dirty) {
    f->dirty = 1;
    m->dirty[m->ndirty++] = slot;
  }
  return f;
}

void cr_meter_flush(cr_meter_t *m) {
  for (int i = 0; i < m->ndirty; i++) {
    fn_meter_t *f = &m->fns[m->dirty[i]];
    cr_shm_fn_t *s = &m->shm->fns[m->dirty[i]];
    atomic_fetch_add_explicit(&s->invocations, f->invocations, memory_order_relaxed);
    if (f->errors) atomic_fetch_add_explicit(&s->errors, f->errors, memory_order_relaxed);
    if (f->client_errors) atomic_fetch_add_explicit(&s->client_errors, f->client_errors, memory_order_relaxed);
    if (f->timeouts) atomic_fetch_add_explicit(&s->timeouts, f->timeouts, memory_order_relaxed);
    if (f->cold_starts) atomic_fetch_add_explicit(&s->cold_starts, f->cold_starts, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->duration_ns, f->duration_ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->billed_ms, f->billed_ms, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->mb_ms, f->mb_ms, memory_order_relaxed);
    for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++)
      if (f->hist[k]) atomic_fetch_add_explicit(&s->hist[k], f->hist[k], memory_order_relaxed);
    if (f->cold_starts) {
      for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) {
        if (f->hist_cold[k]) atomic_fetch_add_explicit(&s->hist_cold[k], f->hist_cold[k], memory_order_relaxed);
        if (f->init_hist[k]) atomic_fetch_add_explicit(&s->init_hist[k], f->init_hist[k], memory_order_relaxed);
      }
      atomic_fetch_add_explicit(&s->duration_cold_ns, f->duration_cold_ns, memory_order_relaxed);
      atomic_fetch_add_explicit(&s->init_ns, f->init_ns, memory_order_relaxed);
    }
    for (int k = 0; k < CR_SHM_MEM_BUCKETS; k++)
      if (f->mem_hist[k]) atomic_fetch_add_explicit(&s->mem_hist[k], f->mem_hist[k], memory_order_relaxed);
    atomic_fetch_add_explicit(&s->mem_sum, f->mem_sum, memory_order_relaxed);
    if (f->http_requests) {
      atomic_fetch_add_explicit(&s->http_requests, f->http_requests, memory_order_relaxed);
      atomic_fetch_add_explicit(&s->http_errors, f->http_errors, memory_order_relaxed);
      atomic_fetch_add_explicit(&s->http_bytes_in, f->http_bytes_in, memory_order_relaxed);
      atomic_fetch_add_explicit(&s->http_bytes_out, f->http_bytes_out, memory_order_relaxed);
      atomic_fetch_add_explicit(&s->http_ns, f->http_ns, memory_order_relaxed);
    }
    memset(f, 0, sizeof *f);
  }
  m->ndirty = 0;
}

void cr_meter_flush_if_late(cr_meter_t *m, uint64_t now_ns) {
  if (m->ndirty && now_ns - m->dirty_since_ns >= FLUSH_AFTER_NS) {
    cr_meter_flush(m);
    cr_log_flush();
  }
}

int cr_meter_client_error(cr_outcome_t outcome, int status) {
  return outcome == CR_OUTCOME_ERROR && status >= 400 && status <= 499;
}

void cr_meter_report(cr_meter_t *m, const cr_fnver_t *ver, const cr_invocation_t *inv, double init_ms,
                     const char *trigger, int status, cr_meter_fields_cb fields, void *data) {
  double dur_ms = (double)(inv->end_ns - inv->start_ns) / 1e6;
  uint64_t billed = (uint64_t)ceil(dur_ms);
  if (billed == 0) billed = 1;
  if (m->ndirty == 0) m->dirty_since_ns = inv->end_ns;
  int client = cr_meter_client_error(inv->outcome, status);
  fn_meter_t *f = meter_for(m, ver->fn->slot);
  if (f) {
    f->invocations++;
    if (client) f->client_errors++;
    else if (inv->outcome != CR_OUTCOME_OK || status >= 500) f->errors++;
    if (inv->outcome == CR_OUTCOME_TIMEOUT) f->timeouts++;
    if (inv->cold) {
      f->cold_starts++;
      f->hist_cold[cr_shm_hist_bucket(dur_ms)]++;
      f->duration_cold_ns += inv->end_ns - inv->start_ns;
      f->init_hist[cr_shm_hist_bucket(init_ms)]++;
      f->init_ns += (uint64_t)(init_ms * 1e6);
    }
    f->mem_hist[cr_shm_mem_bucket((double)inv->mem_peak)]++;
    f->mem_sum += inv->mem_peak;
    f->duration_ns += inv->end_ns - inv->start_ns;
    f->billed_ms += billed;
    f->mb_ms += billed * (uint64_t)ver->settings.memory;
    f->hist[cr_shm_hist_bucket(dur_ms)]++;
    f->http_requests += inv->http_requests;
    f->http_errors += inv->http_errors;
    f->http_bytes_in += inv->http_bytes_in;
    f->http_bytes_out += inv->http_bytes_out;
    f->http_ns += inv->http_ns;
  }
  if (m->usage) {
    const char *st = client                                 ? "client_error"
                     : inv->outcome == CR_OUTCOME_TIMEOUT   ? "timeout"
                     : inv->outcome == CR_OUTCOME_MEMORY    ? "memory"
                     : inv->outcome != CR_OUTCOME_OK || status >= 500 ? "error"
                                                                      : "ok";
    cr_usage_inv_t u = {.fn = ver->fn->name, .trigger = trigger, .status = st, .cold = inv->cold,
                        .memory_mb = ver->settings.memory, .dur_ns = inv->end_ns - inv->start_ns,
                        .billed_ms = billed, .mem_peak = inv->mem_peak, .outbound = (uint64_t)inv->http_requests,
                        .wall_ms = cr_wall_ms()};
    cr_usage_add(m->usage, &u);
  }

  cr_buf_t *b = cr_log_begin(CR_LOG_INFO, "report", 6, ver->fn->name, inv->reqid);
  if (!b) return;
  cr_log_trace(b, inv->trace);
  cr_log_int(b, "version", ver->number);
  cr_log_str(b, "trigger", trigger, strlen(trigger));
  cr_log_str(b, "start", inv->cold ? "cold" : "warm", 4);
  if (inv->cold) cr_log_num(b, "initDuration", round(init_ms * 1000) / 1000);
  cr_log_num(b, "duration", round(dur_ms * 1000) / 1000);
  cr_log_int(b, "billedDuration", (long long)billed);
  cr_log_num(b, "cpuTime", round((double)inv->cpu_ns / 1e3) / 1000);
  cr_log_int(b, "maxMemoryUsed", (long long)inv->mem_peak);
  cr_log_int(b, "memorySize", ver->settings.memory);
  cr_log_int(b, "status", status);
  if (inv->outcome == CR_OUTCOME_TIMEOUT) cr_log_str(b, "outcome", "timeout", 7);
  else if (inv->outcome == CR_OUTCOME_MEMORY) cr_log_str(b, "outcome", "memory", 6);
  else if (client) cr_log_str(b, "outcome", "client_error", 12);
  else if (inv->outcome == CR_OUTCOME_ERROR) cr_log_str(b, "outcome", "error", 5);
  if (inv->http_requests) {
    cr_log_int(b, "httpRequests", inv->http_requests);
    if (inv->http_errors) cr_log_int(b, "httpErrors", inv->http_errors);
    cr_log_int(b, "httpBytesOut", (long long)inv->http_bytes_out);
    cr_log_int(b, "httpBytesIn", (long long)inv->http_bytes_in);
    cr_log_num(b, "httpTime", round((double)inv->http_ns / 1e3) / 1000);
  }
  if (fields) fields(data, b);
  cr_log_end(b);
}

void cr_meter_init_failed(cr_meter_t *m, const cr_fn_t *fn, const char *trigger) {
  fn_meter_t *f = meter_for(m, fn->slot);
  if (f) {
    f->invocations++;
    f->errors++;
  }
  /* Nothing ran: no duration, nothing billed (as the meters above). */
  cr_usage_inv_t u = {.fn = fn->name, .trigger = trigger, .status = "init_error", .wall_ms = cr_wall_ms()};
  cr_usage_add(m->usage, &u);
}

void cr_meter_throttled(cr_meter_t *m, const cr_fn_t *fn, const char *trigger) {
  cr_shm_fn_t *s = cr_shm_fn(m->shm, fn->slot);
  if (s) atomic_fetch_add_explicit(&s->throttles, 1, memory_order_relaxed);
  cr_usage_throttled(m->usage, fn->name, trigger, cr_wall_ms());
}
