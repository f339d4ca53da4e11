/* shm.c - the shared counters region, and what each worker holds in it. */
#include "shm.h"

#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "clock.h"
#include "error.h"
#include "hash.h"

/* How long a worker waits for a function's admission lock before it answers
 * "at the limit": the lock is held for a few instructions, so only a holder
 * that was preempted, or died and is not reaped yet, makes anyone wait. */
#define LOCK_SPINS 64
#define LOCK_WAIT_NS 2000000ULL

const double cr_shm_hist_bounds_ms[CR_SHM_HIST_BUCKETS] = {0.1, 0.25, 0.5, 1,   2.5,  5,    10,
                                                            25,  50,   100, 250, 1000, 5000, 1e300};

const double cr_shm_mem_bounds[CR_SHM_MEM_BUCKETS] = {65536,     262144,    1048576,    4194304, 16777216,
                                                      67108864,  268435456, 1073741824, 1e300};

int cr_shm_mem_bucket(double bytes) {
  int i = 0;
  while (i < CR_SHM_MEM_BUCKETS - 1 && bytes > cr_shm_mem_bounds[i]) i++;
  return i;
}

cr_shm_t *cr_shm_create(int nworkers) {
  void *p = mmap(NULL, sizeof(cr_shm_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  cr_shm_t *shm = p;
  shm->magic = 0x6372657363656e74ULL; /* "crescent" */
  shm->nworkers = nworkers < 1 ? 1 : nworkers > CR_SHM_MAX_WORKERS ? CR_SHM_MAX_WORKERS : nworkers;
  return shm;
}

void cr_shm_destroy(cr_shm_t *shm) {
  if (shm) munmap(shm, sizeof *shm);
}

static _Atomic uint64_t *purge_cell(cr_shm_t *shm, int slot, const char *path, size_t len) {
  uint64_t h = cr_fnv1a_more(cr_fnv1a(&slot, sizeof slot), path, len);
  return &shm->cache_purged[h % CR_SHM_CACHE_PURGES];
}

void cr_shm_cache_purge(cr_shm_t *shm, int slot, const char *path, size_t len, uint64_t now_ns) {
  if (!shm) return;
  _Atomic uint64_t *c = purge_cell(shm, slot, path, len);
  uint64_t old = atomic_load(c);
  /* the larger time wins: a purge racing an older one is never undone */
  while (old < now_ns && !atomic_compare_exchange_weak(c, &old, now_ns)) {
  }
}

uint64_t cr_shm_cache_purged(cr_shm_t *shm, int slot, const char *path, size_t len) {
  return shm ? atomic_load_explicit(purge_cell(shm, slot, path, len), memory_order_acquire) : 0;
}

int cr_shm_hist_bucket(double ms) {
  int i = 0;
  while (i < CR_SHM_HIST_BUCKETS - 1 && ms > cr_shm_hist_bounds_ms[i]) i++;
  return i;
}

static cr_shm_held_t *held_of(cr_shm_t *shm, int slot, int worker) {
  if (!shm || slot < 0 || slot >= CR_SHM_MAX_FUNCTIONS || worker < 0 || worker >= shm->nworkers) return NULL;
  return &shm->held[slot];
}

static void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static int lock_take(_Atomic uint32_t *lock, uint32_t me) {
  uint64_t give_up = 0;
  for (int i = 0;; i++) {
    uint32_t expect = 0;
    if (atomic_load_explicit(lock, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_weak_explicit(lock, &expect, me, memory_order_acquire, memory_order_relaxed))
      return 0;
    if (i < LOCK_SPINS) {
      relax();
      continue;
    }
    uint64_t now = cr_clock_ns();
    if (!give_up) give_up = now + LOCK_WAIT_NS;
    else if (now >= give_up) return CR_ELIMIT;
    sched_yield();
  }
}

int cr_shm_take(cr_shm_t *shm, int slot, int worker, int limit) {
  cr_shm_held_t *h = held_of(shm, slot, worker);
  if (!h) return CR_EINVAL;
  if (lock_take(&h->lock, (uint32_t)worker + 1)) return CR_ELIMIT;
  /* Under the lock no other worker takes a place of this function; places
   * given back meanwhile only make the sum an overestimate. */
  int64_t total = 0;
  for (int w = 0; w < shm->nworkers; w++) total += atomic_load_explicit(&h->places[w], memory_order_relaxed);
  int rc = CR_ELIMIT;
  if (total < limit) {
    int32_t mine = atomic_load_explicit(&h->places[worker], memory_order_relaxed);
    atomic_store_explicit(&h->places[worker], mine + 1, memory_order_relaxed);
    rc = 0;
  }
  atomic_store_explicit(&h->lock, 0, memory_order_release);
  return rc;
}

void cr_shm_give(cr_shm_t *shm, int slot, int worker) {
  cr_shm_held_t *h = held_of(shm, slot, worker);
  if (!h) return;
  int32_t mine = atomic_load_explicit(&h->places[worker], memory_order_relaxed);
  if (mine > 0) atomic_store_explicit(&h->places[worker], mine - 1, memory_order_release);
}

void cr_shm_instances_add(cr_shm_t *shm, int slot, int worker, int delta) {
  cr_shm_held_t *h = held_of(shm, slot, worker);
  if (!h) return;
  int32_t mine = atomic_load_explicit(&h->instances[worker], memory_order_relaxed);
  atomic_store_explicit(&h->instances[worker], mine + delta, memory_order_relaxed);
}

int64_t cr_shm_busy(cr_shm_t *shm, int slot) {
  if (!shm || slot < 0 || slot >= CR_SHM_MAX_FUNCTIONS) return 0;
  int64_t n = 0;
  for (int w = 0; w < shm->nworkers; w++) n += atomic_load_explicit(&shm->held[slot].places[w], memory_order_relaxed);
  return n;
}

int64_t cr_shm_instances(cr_shm_t *shm, int slot) {
  if (!shm || slot < 0 || slot >= CR_SHM_MAX_FUNCTIONS) return 0;
  int64_t n = 0;
  for (int w = 0; w < shm->nworkers; w++)
    n += atomic_load_explicit(&shm->held[slot].instances[w], memory_order_relaxed);
  return n;
}

cr_shm_trig_t *cr_shm_trig(cr_shm_t *shm, int slot, const char *label) {
  if (!shm || slot < 0 || slot >= CR_SHM_MAX_FUNCTIONS || strlen(label) >= CR_SHM_TRIGGER_LABEL) return NULL;
  for (int i = 0; i < CR_SHM_TRIGGERS; i++) {
    cr_shm_trig_t *t = &shm->trig[slot][i];
    uint32_t free_ = 0;
    if (atomic_compare_exchange_strong_explicit(&t->state, &free_, 1, memory_order_acquire, memory_order_acquire)) {
      strcpy(t->label, label);
      atomic_store_explicit(&t->state, 2, memory_order_release);
      return t;
    }
    /* Another worker is writing its label (a few instructions): wait for it,
     * or skip it if that worker died there. */
    uint64_t give_up = 0;
    while (atomic_load_explicit(&t->state, memory_order_acquire) == 1) {
      uint64_t now = cr_clock_ns();
      if (!give_up) give_up = now + LOCK_WAIT_NS;
      else if (now >= give_up) break;
      sched_yield();
    }
    if (atomic_load_explicit(&t->state, memory_order_acquire) == 2 && strcmp(t->label, label) == 0) return t;
  }
  return NULL;
}

int cr_shm_trigs(cr_shm_t *shm, int slot, cr_shm_trig_t **out, int max) {
  int n = 0;
  if (!shm || slot < 0 || slot >= CR_SHM_MAX_FUNCTIONS) return 0;
  for (int i = 0; i < CR_SHM_TRIGGERS && n < max; i++)
    if (atomic_load_explicit(&shm->trig[slot][i].state, memory_order_acquire) == 2) out[n++] = &shm->trig[slot][i];
  return n;
}

/* t's places, if t is an entry of shm and worker one of its workers. */
static cr_shm_trig_held_t *trig_held_of(cr_shm_t *shm, const cr_shm_trig_t *t, int worker) {
  if (!shm || !t || worker < 0 || worker >= shm->nworkers) return NULL;
  const cr_shm_trig_t *first = &shm->trig[0][0];
  if (t < first || t >= first + (size_t)CR_SHM_MAX_FUNCTIONS * CR_SHM_TRIGGERS) return NULL;
  return &shm->trig_held[0][0] + (t - first);
}

int cr_shm_trig_take(cr_shm_t *shm, cr_shm_trig_t *t, int worker, int limit) {
  cr_shm_trig_held_t *h = trig_held_of(shm, t, worker);
  if (!h) return CR_EINVAL;
  if (lock_take(&h->lock, (uint32_t)worker + 1)) return CR_ELIMIT;
  int64_t total = 0;
  for (int w = 0; w < shm->nworkers; w++) total += atomic_load_explicit(&h->places[w], memory_order_relaxed);
  int rc = CR_ELIMIT;
  uint16_t mine = atomic_load_explicit(&h->places[worker], memory_order_relaxed);
  if (total < limit && mine < UINT16_MAX) {
    atomic_store_explicit(&h->places[worker], (uint16_t)(mine + 1), memory_order_relaxed);
    rc = 0;
  }
  atomic_store_explicit(&h->lock, 0, memory_order_release);
  return rc;
}

void cr_shm_trig_give(cr_shm_t *shm, cr_shm_trig_t *t, int worker) {
  cr_shm_trig_held_t *h = trig_held_of(shm, t, worker);
  if (!h) return;
  uint16_t mine = atomic_load_explicit(&h->places[worker], memory_order_relaxed);
  if (mine > 0) atomic_store_explicit(&h->places[worker], (uint16_t)(mine - 1), memory_order_release);
}

int64_t cr_shm_trig_busy(cr_shm_t *shm, cr_shm_trig_t *t) {
  cr_shm_trig_held_t *h = trig_held_of(shm, t, 0);
  if (!h) return 0;
  int64_t n = 0;
  for (int w = 0; w < shm->nworkers; w++) n += atomic_load_explicit(&h->places[w], memory_order_relaxed);
  return n;
}

void cr_shm_reclaim(cr_shm_t *shm, int worker, int nslots, cr_shm_reclaimed_t *out) {
  cr_shm_reclaimed_t r = {0, 0, 0, 0};
  if (shm && worker >= 0 && worker < shm->nworkers) {
    if (nslots > CR_SHM_MAX_FUNCTIONS) nslots = CR_SHM_MAX_FUNCTIONS;
    for (int f = 0; f < nslots; f++) {
      cr_shm_held_t *h = &shm->held[f];
      int32_t p = atomic_exchange_explicit(&h->places[worker], 0, memory_order_acq_rel);
      int32_t i = atomic_exchange_explicit(&h->instances[worker], 0, memory_order_acq_rel);
      r.places += p;
      r.instances += i;
      /* After its places are zero: whoever takes the lock next sees them gone. */
      uint32_t me = (uint32_t)worker + 1;
      if (atomic_compare_exchange_strong_explicit(&h->lock, &me, 0, memory_order_release, memory_order_relaxed))
        r.lock++;
      /* Its stream trigger places: only labelled entries can have any (and
       * the others' pages are left untouched). */
      for (int k = 0; k < CR_SHM_TRIGGERS; k++) {
        if (atomic_load_explicit(&shm->trig[f][k].state, memory_order_acquire) != 2) continue;
        cr_shm_trig_held_t *th = &shm->trig_held[f][k];
        r.trigger_places += atomic_exchange_explicit(&th->places[worker], 0, memory_order_acq_rel);
        me = (uint32_t)worker + 1;
        if (atomic_compare_exchange_strong_explicit(&th->lock, &me, 0, memory_order_release, memory_order_relaxed))
          r.lock++;
      }
    }
    cr_shm_worker_t *w = &shm->workers[worker];
    atomic_store(&w->busy_since_ns, 0);
    atomic_store(&w->deadline_ns, 0);
    atomic_store(&w->busy_fn, -1);
    atomic_store(&w->conns_open, 0); /* its connections closed with it */
  }
  if (out) *out = r;
}
