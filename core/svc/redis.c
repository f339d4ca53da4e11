/* redis.c - Redis URLs, a blocking ping, and the worker's async connection. */
#include "redis.h"

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "clock.h"
#include "error.h"
#include "freelist.h"
#include "log.h"
#include "url.h"

#include <openssl/sha.h>

/* A script's SHA-1 as 40 hex digits: the name EVALSHA knows it by. */
static void script_sha(const char *src, char out[41]) {
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)src, strlen(src), d);
  for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
#define SWEEP_MS 50

/* --- URLs --------------------------------------------------------------------------------------- */

/* Percent-decodes s (n bytes) into out, NUL-terminated: 0, -1 if it does not
 * fit, -2 if it holds a NUL byte (AUTH takes C strings: it would be cut). */
static int decode_into(const char *s, size_t n, char *out, size_t outlen) {
  cr_buf_t b = CR_BUF_INIT;
  int rc = cr_url_decode(s, n, 0, &b) == 0 && b.len < outlen ? 0 : -1;
  if (rc == 0 && b.len && memchr(b.data, '\0', b.len)) rc = -2;
  if (rc == 0) {
    if (b.len) memcpy(out, b.data, b.len);
    out[b.len] = '\0';
  }
  cr_buf_free(&b);
  return rc;
}

/* A decimal number in [min, max] filling s..end exactly (digits only: no
 * sign, no space); -1 otherwise. */
static long parse_number(const char *s, const char *end, long min, long max) {
  if (s >= end || *s < '0' || *s > '9') return -1;
  long v = 0;
  for (; s < end; s++) {
    if (*s < '0' || *s > '9') return -1;
    v = v * 10 + (*s - '0');
    if (v > max) return -1;
  }
  return v < min ? -1 : v;
}

/* The URL as errors show it: a password (what follows "user:" before '@')
 * becomes "***", so a typo in --redis never prints the secret to the log. */
static const char *shown_url(const char *url, char *out, size_t outlen) {
  const char *scheme = strstr(url, "://");
  const char *start = scheme ? scheme + 3 : url;
  const char *at = strrchr(start, '@');
  const char *colon = at ? memchr(start, ':', (size_t)(at - start)) : NULL;
  if (!colon) return url;
  snprintf(out, outlen, "%.*s***%s", (int)(colon + 1 - url), url, at);
  return out;
}

int cr_redis_url_parse(const char *url, cr_redis_url_t *u, char *err, size_t errlen) {
  char shown[600];
  memset(u, 0, sizeof *u);
  if (strncmp(url, "unix://", 7) == 0) {
    const char *path = url + 7;
    const char *q = strchr(path, '?');
    size_t pl = q ? (size_t)(q - path) : strlen(path);
    if (pl == 0 || pl >= sizeof u->path || path[0] != '/') {
      snprintf(err, errlen, "bad Redis URL '%s': expected unix:///absolute/path.sock", shown_url(url, shown, sizeof shown));
      return CR_EINVAL;
    }
    memcpy(u->path, path, pl);
    u->is_unix = 1;
    if (q) {
      if (strncmp(q, "?db=", 4) != 0) {
        snprintf(err, errlen, "bad Redis URL '%s': expected unix:///absolute/path.sock[?db=N]", shown_url(url, shown, sizeof shown));
        return CR_EINVAL;
      }
      long db = parse_number(q + 4, q + strlen(q), 0, 65535);
      if (db < 0) {
        snprintf(err, errlen, "bad Redis URL '%s': bad database number", shown_url(url, shown, sizeof shown));
        return CR_EINVAL;
      }
      u->db = (int)db;
    }
    return 0;
  }
  if (strncmp(url, "redis://", 8) != 0) {
    snprintf(err, errlen, "bad Redis URL '%s': expected redis://[:password@]host:port[/db] or unix:///path", shown_url(url, shown, sizeof shown));
    return CR_EINVAL;
  }
  const char *p = url + 8;
  const char *at = strrchr(p, '@');
  if (at) {
    /* redis://user:pass@ (an ACL user), redis://:pass@ or redis://pass@ (the default user) */
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon ? colon + 1 : p;
    int rc = colon ? decode_into(p, (size_t)(colon - p), u->user, sizeof u->user) : 0;
    if (rc) {
      snprintf(err, errlen, "bad Redis URL: %s",
               rc == -2 ? "the user name contains a NUL byte (%00)" : "user name too long");
      return CR_EINVAL;
    }
    if ((rc = decode_into(pw, (size_t)(at - pw), u->password, sizeof u->password))) {
      snprintf(err, errlen, "bad Redis URL: %s",
               rc == -2 ? "the password contains a NUL byte (%00)" : "password too long");
      return CR_EINVAL;
    }
    p = at + 1;
  }
  const char *slash = strchr(p, '/');
  const char *hend = slash ? slash : p + strlen(p);
  const char *host = p, *colon = NULL;
  size_t hl;
  if (*p == '[') {
    /* [IPv6]; what follows the ']' can only be the port. */
    const char *rb = memchr(p, ']', (size_t)(hend - p));
    if (!rb) {
      snprintf(err, errlen, "bad Redis URL '%s': no ']' after the IPv6 address", shown_url(url, shown, sizeof shown));
      return CR_EINVAL;
    }
    host = p + 1;
    hl = (size_t)(rb - host);
    if (rb + 1 < hend) {
      if (rb[1] != ':') {
        snprintf(err, errlen, "bad Redis URL '%s': bad port", shown_url(url, shown, sizeof shown));
        return CR_EINVAL;
      }
      colon = rb + 1;
    }
  } else {
    colon = memchr(p, ':', (size_t)(hend - p));
    hl = (size_t)((colon ? colon : hend) - p);
  }
  if (hl == 0 || hl >= sizeof u->host) {
    snprintf(err, errlen, "bad Redis URL '%s': %s", shown_url(url, shown, sizeof shown), hl ? "host name too long" : "no host");
    return CR_EINVAL;
  }
  memcpy(u->host, host, hl);
  u->port = 6379;
  if (colon) {
    long port = parse_number(colon + 1, hend, 1, 65535);
    if (port < 0) {
      snprintf(err, errlen, "bad Redis URL '%s': bad port", shown_url(url, shown, sizeof shown));
      return CR_EINVAL;
    }
    u->port = (int)port;
  }
  if (slash && slash[1]) {
    long db = parse_number(slash + 1, slash + strlen(slash), 0, 65535);
    if (db < 0) {
      snprintf(err, errlen, "bad Redis URL '%s': bad database number", shown_url(url, shown, sizeof shown));
      return CR_EINVAL;
    }
    u->db = (int)db;
  }
  return 0;
}

void cr_redis_url_describe(const cr_redis_url_t *u, char *out, size_t outlen) {
  if (u->is_unix) snprintf(out, outlen, "unix://%s%s", u->path, u->db ? "?db=" : "");
  else if (strchr(u->host, ':')) snprintf(out, outlen, "redis://[%s]:%d", u->host, u->port); /* IPv6 */
  else snprintf(out, outlen, "redis://%s:%d", u->host, u->port);
  if (u->db) {
    size_t n = strlen(out);
    snprintf(out + n, outlen - n, u->is_unix ? "%d" : "/%d", u->db);
  }
}

/* AUTH and SELECT on a blocking context. */
static int hello_sync(redisContext *c, const cr_redis_url_t *u, char *err, size_t errlen) {
  redisReply *r;
  if (u->user[0] || u->password[0]) {
    if (u->user[0]) r = redisCommand(c, "AUTH %s %s", u->user, u->password); /* an ACL user */
    else r = redisCommand(c, "AUTH %s", u->password);
    if (!r || r->type == REDIS_REPLY_ERROR) {
      snprintf(err, errlen, "authentication failed: %s", r ? r->str : c->errstr);
      if (r) freeReplyObject(r);
      return -1;
    }
    freeReplyObject(r);
  }
  if (u->db) {
    r = redisCommand(c, "SELECT %d", u->db);
    if (!r || r->type == REDIS_REPLY_ERROR) {
      snprintf(err, errlen, "SELECT %d failed: %s", u->db, r ? r->str : c->errstr);
      if (r) freeReplyObject(r);
      return -1;
    }
    freeReplyObject(r);
  }
  return 0;
}

int cr_redis_ping(const cr_redis_url_t *u, int timeout_ms, char *err, size_t errlen) {
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  redisContext *c = u->is_unix ? redisConnectUnixWithTimeout(u->path, tv) : redisConnectWithTimeout(u->host, u->port, tv);
  if (!c || c->err) {
    snprintf(err, errlen, "%s", c ? c->errstr : "out of memory");
    if (c) redisFree(c);
    return CR_EIO;
  }
  redisSetTimeout(c, tv);
  if (hello_sync(c, u, err, errlen)) {
    redisFree(c);
    return CR_EIO;
  }
  redisReply *r = redisCommand(c, "PING");
  int ok = r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING);
  if (!ok) snprintf(err, errlen, "PING failed: %s", r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
  if (r) freeReplyObject(r);
  redisFree(c);
  return ok ? 0 : CR_EIO;
}

/* --- the async connection ----------------------------------------------------------------------- */

struct cr_redis_req_s {
  cr_redis_t *r;
  cr_redis_cb cb;
  void *data;
  uint64_t deadline_ns;
  int finished; /* the callback ran (or will never run: cancelled) */
  int internal; /* our own commands (AUTH, SELECT, SCRIPT LOAD) */
  int retried;  /* an EVALSHA sent again after NOSCRIPT */
  char *cmd;    /* an EVALSHA as sent (hiredis' format), kept to send again */
  size_t cmd_len;
  cr_redis_req_t *next, *prev;
};

/* Our hiredis event adapter (see the file comment in redis.h). */
typedef struct {
  cr_redis_t *r;
  redisAsyncContext *ac;
  uv_poll_t poll;
  int reading;
  int want_write;    /* hiredis has bytes to write */
  int need_writable; /* a flush could not write them all: wait for the socket */
  int events;        /* what poll watches now */
} ev_t;

struct cr_redis_s {
  uv_loop_t *loop;
  cr_shm_worker_t *meters; /* or NULL */
  cr_redis_url_t url;
  double call_timeout;
  redisAsyncContext *ac;
  ev_t *ev;
  int connected;
  int closing;
  int handles_open;
  uint64_t backoff_ms;
  int logged_down;
  uv_timer_t reconnect;
  uv_timer_t sweeper;
  uv_prepare_t flusher;
  int flusher_on;
  cr_redis_req_t *head, *tail; /* pending, oldest first */
  int nscripts;
  const cr_redis_script_t *scripts;
  char (*shas)[41];
  int reloading; /* SCRIPT LOADs in flight after a NOSCRIPT */
};

static void ev_update(ev_t *e);
static void on_poll(uv_poll_t *h, int status, int events);

static void ev_poll_closed(uv_handle_t *h) { free(h->data); }

static void ev_add_read(void *p) {
  ev_t *e = p;
  e->reading = 1;
  ev_update(e);
}

static void ev_del_read(void *p) {
  ev_t *e = p;
  e->reading = 0;
  ev_update(e);
}

static void on_flush(uv_prepare_t *h);

static void ev_add_write(void *p) {
  ev_t *e = p;
  e->want_write = 1;
  cr_redis_t *r = e->r;
  if (r->connected && !e->need_writable && !r->flusher_on) {
    /* Flush just before the loop blocks, with everything issued until then. */
    uv_prepare_start(&r->flusher, on_flush);
    r->flusher_on = 1;
  }
  ev_update(e);
}

static void ev_del_write(void *p) {
  ev_t *e = p;
  e->want_write = 0;
  e->need_writable = 0;
  ev_update(e);
}

static void ev_cleanup(void *p) {
  ev_t *e = p;
  if (e->r && e->r->ev == e) e->r->ev = NULL;
  e->ac = NULL;
  uv_poll_stop(&e->poll);
  uv_close((uv_handle_t *)&e->poll, ev_poll_closed);
}

/* Before the connection is up, writability means "connected"; after, we only
 * poll for writing when a flush could not write everything. */
static void ev_update(ev_t *e) {
  if (!e->ac) return;
  int events = e->reading ? UV_READABLE : 0;
  if (e->want_write && (!e->r->connected || e->need_writable)) events |= UV_WRITABLE;
  if (events == e->events) return;
  e->events = events;
  if (events) uv_poll_start(&e->poll, events, on_poll);
  else uv_poll_stop(&e->poll);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  ev_t *e = h->data;
  if (!e->ac) return;
  if (status < 0) events = UV_READABLE | UV_WRITABLE; /* let hiredis see the error */
  if (events & UV_READABLE) redisAsyncHandleRead(e->ac);
  if (e->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
}

static void on_flush(uv_prepare_t *h) {
  cr_redis_t *r = h->data;
  uv_prepare_stop(h);
  r->flusher_on = 0;
  ev_t *e = r->ev;
  if (e && e->ac && e->want_write) {
    e->need_writable = 1; /* hiredis' addWrite during the write must not re-arm the flusher */
    redisAsyncHandleWrite(e->ac);
    e = r->ev;
    if (e) {
      /* Still bytes left: the socket is full, wait until it is writable. */
      e->need_writable = e->want_write;
      ev_update(e);
    }
  }
}

/* Requests are reused: a command allocates none here in steady state. */
static cr_freelist_t free_reqs = CR_FREELIST_INIT(256);

static cr_redis_req_t *req_new(void) {
  cr_redis_req_t *q = cr_freelist_take(&free_reqs, sizeof *q);
  if (q) memset(q, 0, sizeof *q);
  return q;
}

static void req_free(cr_redis_req_t *q) {
  if (q->cmd) {
    redisFreeCommand(q->cmd);
    q->cmd = NULL;
  }
  cr_freelist_give(&free_reqs, q);
}

static void req_unlink(cr_redis_t *r, cr_redis_req_t *q) {
  if (q->prev) q->prev->next = q->next;
  else if (r->head == q) r->head = q->next;
  if (q->next) q->next->prev = q->prev;
  else if (r->tail == q) r->tail = q->prev;
  q->next = q->prev = NULL;
}

static int retry_noscript(redisAsyncContext *ac, cr_redis_req_t *q, const redisReply *rep);

/* A reply (NULL: the connection dropped) into the worker's Redis meters. */
static void meter_reply(cr_redis_t *r, const cr_redis_req_t *q, const redisReply *rep) {
  cr_shm_worker_t *m = r->meters;
  if (!rep) {
    atomic_fetch_add_explicit(&m->redis_unavailable, 1, memory_order_relaxed);
    return;
  }
  uint64_t now = cr_clock_ns(), start = q->deadline_ns - (uint64_t)(r->call_timeout * 1e9);
  uint64_t ns = now > start ? now - start : 0;
  atomic_fetch_add_explicit(&m->redis_hist[cr_shm_hist_bucket((double)ns / 1e6)], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->redis_ns, ns, memory_order_relaxed);
  if (rep->type == REDIS_REPLY_ERROR) atomic_fetch_add_explicit(&m->redis_error_replies, 1, memory_order_relaxed);
}

/* hiredis' callback for every command we send. privdata is our request;
 * hiredis calls it with reply NULL when the connection goes down. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  cr_redis_req_t *q = privdata;
  if (!q) return;
  cr_redis_t *r = q->r;
  if (!q->finished && retry_noscript(ac, q, reply)) return; /* on_reply comes again, for the retry */
  if (!q->finished) {
    req_unlink(r, q);
    q->finished = 1;
    if (r->meters && !q->internal) meter_reply(r, q, reply);
    if (q->cb) {
      redisReply *rep = reply;
      if (!rep) q->cb(q->data, NULL, "redis unavailable");
      else q->cb(q->data, rep, NULL);
    }
  }
  req_free(q);
}

#define SEND_INTERNAL 1 /* our own command: may go before the connection is up */
#define SEND_KEEP 2     /* keep the command, to send it again (EVALSHA) */

static cr_redis_req_t *send_argv(cr_redis_t *r, int argc, const char **argv, const size_t *lens, cr_redis_cb cb,
                                 void *data, int flags) {
  int internal = (flags & SEND_INTERNAL) != 0;
  if (!r->ac || (!r->connected && !internal) || r->closing) {
    if (r->meters && !internal) atomic_fetch_add_explicit(&r->meters->redis_unavailable, 1, memory_order_relaxed);
    return NULL;
  }
  cr_redis_req_t *q = req_new();
  if (!q) return NULL;
  q->r = r;
  q->cb = cb;
  q->data = data;
  q->internal = internal;
  /* The clock, not the loop's time: that is the start of this iteration, and
   * a handler may have computed for a while since (the sweeper compares with
   * the clock too). */
  q->deadline_ns = cr_clock_ns() + (uint64_t)(r->call_timeout * 1e9);
  int rc;
  if (flags & SEND_KEEP) {
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) {
      req_free(q);
      return NULL;
    }
    q->cmd = cmd;
    q->cmd_len = (size_t)len;
    rc = redisAsyncFormattedCommand(r->ac, on_reply, q, cmd, (size_t)len);
  } else {
    rc = redisAsyncCommandArgv(r->ac, on_reply, q, argc, argv, lens);
  }
  if (rc != REDIS_OK) {
    req_free(q);
    return NULL;
  }

  q->prev = r->tail;
  if (r->tail) r->tail->next = q;
  else r->head = q;
  r->tail = q;
  return q;
}

static void on_internal(void *data, redisReply *reply, const char *err) {
  cr_redis_t *r = data;
  /* A connection going down fails these too; on_disconnect reports that. */
  if (err || r->closing) return;
  if (reply && reply->type == REDIS_REPLY_ERROR) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "Redis refused the connection set-up: %s", err ? err : reply->str);
    if (r->ac && !err) redisAsyncDisconnect(r->ac);
  }
}

/* A SCRIPT LOAD sent after a NOSCRIPT. */
static void on_reloaded(void *data, redisReply *reply, const char *err) {
  cr_redis_t *r = data;
  r->reloading--;
  if (!err && reply && reply->type == REDIS_REPLY_ERROR)
    cr_log(CR_LOG_WARN, NULL, NULL, "Redis refused to load a script again: %s", reply->str);
}

/* An EVALSHA came back NOSCRIPT: Redis lost its scripts (SCRIPT FLUSH, a
 * restart behind a proxy, a failover). Load them all again, once for all the
 * calls answered so, and send this call again: on the same connection it runs
 * after the loads. One retry per call; returns 1 if it was sent. */
static int retry_noscript(redisAsyncContext *ac, cr_redis_req_t *q, const redisReply *rep) {
  cr_redis_t *r = q->r;
  if (!q->cmd || q->retried || !rep || rep->type != REDIS_REPLY_ERROR || strncmp(rep->str, "NOSCRIPT", 8) != 0 ||
      !ac || ac != r->ac || r->closing)
    return 0;
  if (!r->reloading) {
    cr_log(CR_LOG_WARN, NULL, NULL, "Redis lost crescent's scripts (SCRIPT FLUSH?); loading them again");
    for (int i = 0; i < r->nscripts; i++) {
      const char *argv[] = {"SCRIPT", "LOAD", r->scripts[i].source};
      size_t lens[] = {6, 4, strlen(r->scripts[i].source)};
      if (send_argv(r, 3, argv, lens, on_reloaded, r, SEND_INTERNAL)) r->reloading++;
    }
  }
  q->retried = 1;
  return redisAsyncFormattedCommand(ac, on_reply, q, q->cmd, q->cmd_len) == REDIS_OK;
}

static void connect_now(cr_redis_t *r);

static void on_reconnect(uv_timer_t *t) { connect_now(t->data); }

static void schedule_reconnect(cr_redis_t *r) {
  if (r->closing) return;
  r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_FIRST_MS;
  if (r->backoff_ms > BACKOFF_MAX_MS) r->backoff_ms = BACKOFF_MAX_MS;
  uv_timer_start(&r->reconnect, on_reconnect, r->backoff_ms, 0);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  cr_redis_t *r = ac->data;
  if (status != REDIS_OK) {
    if (!r->logged_down) cr_log(CR_LOG_WARN, NULL, NULL, "cannot connect to Redis: %s", ac->errstr);
    r->logged_down = 1;
    r->ac = NULL; /* hiredis frees the context after this callback */
    schedule_reconnect(r);
    return;
  }
  r->connected = 1;
  r->backoff_ms = 0;
  if (r->logged_down) cr_log(CR_LOG_INFO, NULL, NULL, "connected to Redis again");
  r->logged_down = 0;
  if (r->ev && r->ev->want_write) ev_add_write(r->ev);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  cr_redis_t *r = ac->data;
  r->connected = 0;
  r->ac = NULL;
  if (r->closing) return;
  if (!r->logged_down)
    cr_log(CR_LOG_WARN, NULL, NULL, "lost the Redis connection%s%s; reconnecting", status == REDIS_OK ? "" : ": ",
           status == REDIS_OK ? "" : (ac->errstr[0] ? ac->errstr : "closed"));
  r->logged_down = 1;
  schedule_reconnect(r);
}

static void connect_now(cr_redis_t *r) {
  if (r->closing || r->ac) return;
  redisAsyncContext *ac = r->url.is_unix ? redisAsyncConnectUnix(r->url.path) : redisAsyncConnect(r->url.host, r->url.port);
  if (!ac || ac->err) {
    if (!r->logged_down) cr_log(CR_LOG_WARN, NULL, NULL, "cannot connect to Redis: %s", ac ? ac->errstr : "out of memory");
    r->logged_down = 1;
    if (ac) redisAsyncFree(ac);
    schedule_reconnect(r);
    return;
  }
  ev_t *e = calloc(1, sizeof *e);
  if (!e) {
    redisAsyncFree(ac);
    schedule_reconnect(r);
    return;
  }
  e->r = r;
  e->ac = ac;
  uv_poll_init(r->loop, &e->poll, ac->c.fd);
  e->poll.data = e;
  ac->ev.data = e;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  ac->data = r;
  r->ac = ac;
  r->ev = e;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  /* Queued now, sent first once connected: everything else comes after. */
  if (r->url.user[0]) {
    const char *argv[] = {"AUTH", r->url.user, r->url.password};
    size_t lens[] = {4, strlen(r->url.user), strlen(r->url.password)};
    send_argv(r, 3, argv, lens, on_internal, r, SEND_INTERNAL);
  } else if (r->url.password[0]) {
    const char *argv[] = {"AUTH", r->url.password};
    size_t lens[] = {4, strlen(r->url.password)};
    send_argv(r, 2, argv, lens, on_internal, r, SEND_INTERNAL);
  }
  if (r->url.db) {
    char db[16];
    snprintf(db, sizeof db, "%d", r->url.db);
    const char *argv[] = {"SELECT", db};
    size_t lens[] = {6, strlen(db)};
    send_argv(r, 2, argv, lens, on_internal, r, SEND_INTERNAL);
  }
  for (int i = 0; i < r->nscripts; i++) {
    const char *argv[] = {"SCRIPT", "LOAD", r->scripts[i].source};
    size_t lens[] = {6, 4, strlen(r->scripts[i].source)};
    send_argv(r, 3, argv, lens, on_internal, r, SEND_INTERNAL);
  }
}

/* Calls whose reply is overdue fail with "timeout"; their replies, if they
 * come, are dropped. */
static void on_sweep(uv_timer_t *t) {
  cr_redis_t *r = t->data;
  uint64_t now = cr_clock_ns();
  while (r->head && r->head->deadline_ns <= now) {
    cr_redis_req_t *q = r->head;
    req_unlink(r, q);
    q->finished = 1;
    if (r->meters && !q->internal) atomic_fetch_add_explicit(&r->meters->redis_timeouts, 1, memory_order_relaxed);
    if (q->cb) q->cb(q->data, NULL, "timeout");
  }
}

cr_redis_t *cr_redis_new(uv_loop_t *loop, const cr_redis_url_t *u, double call_timeout,
                         const cr_redis_script_t *scripts, int nscripts) {
  cr_redis_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->loop = loop;
  r->url = *u;
  r->call_timeout = call_timeout > 0 ? call_timeout : 5;
  r->scripts = scripts;
  r->nscripts = nscripts;
  r->shas = calloc((size_t)(nscripts ? nscripts : 1), sizeof *r->shas);
  for (int i = 0; i < nscripts; i++) script_sha(scripts[i].source, r->shas[i]);
  uv_timer_init(loop, &r->reconnect);
  r->reconnect.data = r;
  uv_timer_init(loop, &r->sweeper);
  r->sweeper.data = r;
  uv_timer_start(&r->sweeper, on_sweep, SWEEP_MS, SWEEP_MS);
  uv_unref((uv_handle_t *)&r->sweeper);
  uv_prepare_init(loop, &r->flusher);
  r->flusher.data = r;
  connect_now(r);
  return r;
}

int cr_redis_connected(const cr_redis_t *r) { return r && r->connected; }

cr_redis_req_t *cr_redis_call(cr_redis_t *r, int argc, const char **argv, const size_t *lens, cr_redis_cb cb,
                              void *data) {
  return send_argv(r, argc, argv, lens, cb, data, 0);
}

cr_redis_req_t *cr_redis_eval(cr_redis_t *r, int script, int nkeys, int argc, const char **argv,
                              const size_t *lens, cr_redis_cb cb, void *data) {
  if (script < 0 || script >= r->nscripts || argc < 0) return NULL;
  const char *small_av[67];
  size_t small_al[67];
  const char **av = small_av;
  size_t *al = small_al;
  if (argc > 64) {
    av = malloc(sizeof *av * (size_t)(argc + 3));
    al = malloc(sizeof *al * (size_t)(argc + 3));
    if (!av || !al) {
      free(av);
      free(al);
      return NULL;
    }
  }
  char nk[16];
  snprintf(nk, sizeof nk, "%d", nkeys);
  av[0] = "EVALSHA";
  al[0] = 7;
  av[1] = r->shas[script];
  al[1] = 40;
  av[2] = nk;
  al[2] = strlen(nk);
  for (int i = 0; i < argc; i++) {
    av[3 + i] = argv[i];
    al[3 + i] = lens[i];
  }
  cr_redis_req_t *q = send_argv(r, argc + 3, av, al, cb, data, SEND_KEEP);
  if (av != small_av) {
    free(av);
    free(al);
  }
  return q;
}

void cr_redis_cancel(cr_redis_req_t *q) {
  if (!q || q->finished) return;
  req_unlink(q->r, q);
  q->finished = 1;
  q->cb = NULL;
}

static void on_handle_closed(uv_handle_t *h) {
  cr_redis_t *r = h->data;
  if (--r->handles_open == 0) {
    free(r->shas);
    free(r);
  }
}

void cr_redis_set_meters(cr_redis_t *r, cr_shm_worker_t *meters) {
  if (r) r->meters = meters;
}

void cr_redis_free(cr_redis_t *r) {
  if (!r) return;
  r->closing = 1;
  if (r->ac) {
    /* Pending callbacks run now with reply NULL: "redis unavailable". */
    redisAsyncFree(r->ac);
    r->ac = NULL;
  }
  while (r->head) {
    cr_redis_req_t *q = r->head;
    req_unlink(r, q);
    q->finished = 1;
    if (q->cb) q->cb(q->data, NULL, "redis unavailable");
  }
  r->handles_open = 3;
  uv_close((uv_handle_t *)&r->reconnect, on_handle_closed);
  uv_close((uv_handle_t *)&r->sweeper, on_handle_closed);
  uv_close((uv_handle_t *)&r->flusher, on_handle_closed);
}
