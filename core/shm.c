/* shm.c - the shared counters region. */
#include "shm.h"

#include <string.h>
#include <sys/mman.h>

const double cr_shm_hist_bounds_ms[CR_SHM_HIST_BUCKETS] = {0.1, 0.25, 0.5, 1,   2.5,  5,    10,
                                                            25,  50,   100, 250, 1000, 5000, 1e300};

cr_shm_t *cr_shm_create(int nworkers) {
  void *p = mmap(NULL, sizeof(cr_shm_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  cr_shm_t *shm = p;
  shm->magic = 0x6372657363656e74ULL; /* "crescent" */
  shm->nworkers = nworkers;
  return shm;
}

void cr_shm_destroy(cr_shm_t *shm) {
  if (shm) munmap(shm, sizeof *shm);
}

void cr_shm_observe(cr_shm_fn_t *fn, double ms) {
  int i = 0;
  while (i < CR_SHM_HIST_BUCKETS - 1 && ms > cr_shm_hist_bounds_ms[i]) i++;
  atomic_fetch_add_explicit(&fn->hist[i], 1, memory_order_relaxed);
}
