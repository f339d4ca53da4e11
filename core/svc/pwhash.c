/* pwhash.c - Argon2id on libuv's thread pool (the contract is in pwhash.h). */
#include "pwhash.h"

#include <argon2.h>
#include <pthread.h>
#include <sched.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct cr_pwhash_job_s {
  uv_work_t work;
  uv_loop_t *loop;
  struct cr_pwhash_job_s *next; /* waiting for a slot */
  int queued;                   /* handed to the pool */
  int verify;
  int cancelled;
  cr_pwhash_params_t params;
  char *pw;
  size_t len;
  char encoded[CR_PWHASH_ENCODED_MAX];
  int rc; /* argon2's */
  int ok;
  cr_pwhash_cb cb;
  void *data;
};

static int hash_into(const cr_pwhash_params_t *p, const char *pw, size_t len, char *out, size_t outlen) {
  unsigned char salt[16];
  if (RAND_bytes(salt, sizeof salt) != 1) return ARGON2_MISSING_ARGS;
  return argon2id_hash_encoded(p->t, p->m_kib, p->p, pw, len, salt, sizeof salt, 32, out, outlen);
}

/* The pool thread hashes as SCHED_BATCH: mildly disfavoured against threads
 * that wake up (the loops answering requests), then back to SCHED_OTHER for
 * whatever the pool runs next. Both are ordinary policies an unprivileged
 * thread may switch between. */
static void on_work(uv_work_t *w) {
  cr_pwhash_job_t *j = w->data;
  struct sched_param sp = {0};
  int batch = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) == 0;
  if (j->verify) {
    j->rc = argon2id_verify(j->encoded, j->pw, j->len);
    j->ok = j->rc == ARGON2_OK ? 1 : j->rc == ARGON2_VERIFY_MISMATCH ? 0 : -1;
  } else {
    j->rc = hash_into(&j->params, j->pw, j->len, j->encoded, sizeof j->encoded);
    j->ok = j->rc == ARGON2_OK ? 1 : -1;
  }
  /* The password leaves memory as soon as it is no longer needed. */
  OPENSSL_cleanse(j->pw, j->len);
  if (batch) pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
}

/* Hashes in flight on the pool, per process (a worker has one loop; the
 * jobs are made and finished on its thread): the rest wait here, in order,
 * so the pool keeps threads for the loop's other work (name resolution) and
 * the CPUs are not all taken by hashing. */
static int in_flight;
static cr_pwhash_job_t *wait_head, *wait_tail;

static void on_done(uv_work_t *w, int status);

static int submit(cr_pwhash_job_t *j) {
  if (in_flight >= CR_PWHASH_IN_FLIGHT) {
    j->next = NULL;
    if (wait_tail) wait_tail->next = j;
    else wait_head = j;
    wait_tail = j;
    return 0;
  }
  if (uv_queue_work(j->loop, &j->work, on_work, on_done)) return -1;
  j->queued = 1;
  in_flight++;
  return 0;
}

static void finish(cr_pwhash_job_t *j, int status);

/* A slot came free: the next waiting job goes to the pool. */
static void next_waiting(void) {
  while (wait_head && in_flight < CR_PWHASH_IN_FLIGHT) {
    cr_pwhash_job_t *j = wait_head;
    wait_head = j->next;
    if (!wait_head) wait_tail = NULL;
    if (j->cancelled || submit(j)) finish(j, UV_ECANCELED);
  }
}

static void on_done(uv_work_t *w, int status) {
  cr_pwhash_job_t *j = w->data;
  in_flight--;
  finish(j, status);
  next_waiting();
}

static void finish(cr_pwhash_job_t *j, int status) {
  if (!j->cancelled) {
    if (status) j->cb(j->data, -1, NULL, "hashing was cancelled");
    else if (j->ok < 0) j->cb(j->data, -1, NULL, argon2_error_message(j->rc));
    else j->cb(j->data, j->ok, j->verify ? NULL : j->encoded, NULL);
  }
  free(j->pw);
  free(j);
}

static cr_pwhash_job_t *start(uv_loop_t *loop, int verify, const cr_pwhash_params_t *params, const char *encoded,
                              const char *pw, size_t len, cr_pwhash_cb cb, void *data) {
  if (len > CR_PWHASH_MAX_PASSWORD) return NULL;
  cr_pwhash_job_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->pw = malloc(len ? len : 1);
  if (!j->pw) {
    free(j);
    return NULL;
  }
  memcpy(j->pw, pw, len);
  j->len = len;
  j->verify = verify;
  if (params) j->params = *params;
  if (encoded) {
    size_t n = strlen(encoded);
    if (n >= sizeof j->encoded) n = 0; /* a hash this long is not ours: it fails to verify */
    memcpy(j->encoded, encoded, n);
    j->encoded[n] = '\0';
  }
  j->cb = cb;
  j->data = data;
  j->work.data = j;
  j->loop = loop;
  if (submit(j)) {
    free(j->pw);
    free(j);
    return NULL;
  }
  return j;
}

cr_pwhash_job_t *cr_pwhash_hash(uv_loop_t *loop, const cr_pwhash_params_t *params, const char *pw, size_t len,
                                cr_pwhash_cb cb, void *data) {
  return start(loop, 0, params, NULL, pw, len, cb, data);
}

cr_pwhash_job_t *cr_pwhash_verify(uv_loop_t *loop, const char *encoded, const char *pw, size_t len, cr_pwhash_cb cb,
                                  void *data) {
  return start(loop, 1, NULL, encoded, pw, len, cb, data);
}

void cr_pwhash_cancel(cr_pwhash_job_t *j) {
  if (!j) return;
  j->cancelled = 1;
  /* In the pool's queue, not started yet: taken off it (on_done comes with
   * UV_ECANCELED). Waiting here: dropped when its turn comes. */
  if (j->queued) uv_cancel((uv_req_t *)&j->work);
}

int cr_pwhash_hash_sync(const cr_pwhash_params_t *params, const char *pw, size_t len, char *out, size_t outlen) {
  return hash_into(params, pw, len, out, outlen) == ARGON2_OK ? 0 : -1;
}

int cr_pwhash_verify_sync(const char *encoded, const char *pw, size_t len) {
  return argon2id_verify(encoded, pw, len) == ARGON2_OK;
}
