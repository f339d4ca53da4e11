/* redis.h - crescent's Redis client: URLs, a blocking check for the master,
 * and a worker's asynchronous connection on its libuv loop (hiredis).
 *
 * A worker holds one connection; every invocation's commands go through it,
 * pipelined: commands issued during one loop iteration leave in one write
 * just before the loop blocks (our own hiredis event adapter, below, instead
 * of hiredis' libuv one, which costs two epoll_ctl calls per command).
 *
 * Failure is part of the contract. cr_redis_call() returns NULL at once when
 * the connection is down ("redis unavailable"); otherwise its callback comes
 * exactly once: with the reply, with "redis unavailable" if the connection
 * drops, or with "timeout" when no reply came within call_timeout. A dropped
 * connection is retried with backoff (100 ms doubling to 2 s). cr_redis_cancel()
 * guarantees the callback never comes (the reply, if any, is dropped).
 *
 * Scripts are named by their SHA-1, computed here, and sent with EVALSHA;
 * they are loaded (SCRIPT LOAD) first thing on every connection. Should Redis
 * lose them (SCRIPT FLUSH, a failover), an EVALSHA answered NOSCRIPT loads
 * them again and is sent once more, behind the loads: the caller only sees
 * the reply of the second try. */
#ifndef CR_REDIS_H
#define CR_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "shm.h"

typedef struct uv_loop_s uv_loop_t;
struct redisReply;

typedef struct {
  int is_unix;
  char host[256];
  int port;
  char path[512];
  char user[256];     /* ACL user ("": the default user) */
  char password[256];
  int db;
} cr_redis_url_t;

/* redis://[[user]:password@]host[:port][/db] or unix:///path/to.sock[?db=N];
 * host may be an IPv6 address in brackets ([::1]); port (1..65535, 6379 when
 * left out) and db (0..65535) are plain digits; user and password may be
 * percent-encoded, but not hold a NUL byte. Anything else is refused with a
 * message in err. */
int cr_redis_url_parse(const char *url, cr_redis_url_t *u, char *err, size_t errlen);
/* Writes the URL back, without the password, for messages. */
void cr_redis_url_describe(const cr_redis_url_t *u, char *out, size_t outlen);

/* Connects, authenticates, selects the db and PINGs, waiting at most
 * timeout_ms. Returns 0, or an error described in err. */
int cr_redis_ping(const cr_redis_url_t *u, int timeout_ms, char *err, size_t errlen);

typedef struct cr_redis_s cr_redis_t;
typedef struct cr_redis_req_s cr_redis_req_t;

/* reply is hiredis' (valid during the call only), or NULL with err set. */
typedef void (*cr_redis_cb)(void *data, struct redisReply *reply, const char *err);

/* The scripts crescent runs; their source is in stdlib (cr_redis_scripts). */
typedef struct {
  const char *name;
  const char *source;
} cr_redis_script_t;

cr_redis_t *cr_redis_new(uv_loop_t *loop, const cr_redis_url_t *u, double call_timeout,
                         const cr_redis_script_t *scripts, int nscripts);
/* Fails every pending call ("redis unavailable"), disconnects, and frees once
 * the loop has run. */
void cr_redis_free(cr_redis_t *r);
int cr_redis_connected(const cr_redis_t *r);
/* Counts every call from now on into meters (shm.h: latency, unavailable, timeouts, error
 * replies); NULL stops. Our own commands (AUTH, SELECT, SCRIPT LOAD) are not counted. */
void cr_redis_set_meters(cr_redis_t *r, cr_shm_worker_t *meters);

/* Sends argv; NULL when not connected (the callback will not come). */
cr_redis_req_t *cr_redis_call(cr_redis_t *r, int argc, const char **argv, const size_t *lens, cr_redis_cb cb,
                              void *data);
/* Runs script number `script` (EVALSHA): keys then args in argv. */
cr_redis_req_t *cr_redis_eval(cr_redis_t *r, int script, int nkeys, int argc, const char **argv,
                              const size_t *lens, cr_redis_cb cb, void *data);
void cr_redis_cancel(cr_redis_req_t *req);

#endif
