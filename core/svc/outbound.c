/* outbound.c - the outbound HTTP/1.1 client (outbound.h).
 *
 * Ownership: a request (cr_outreq_t) is freed in its timer's close callback,
 * and nothing but the timer refers to it once it ended: a connection points
 * to the request it serves (conn->req) and forgets it when the request ends
 * or moves on; a DNS lookup (dns_t) is its own allocation whose callback
 * finds dns->req NULL when the request went away first. A connection is
 * freed in its handle's close callback, so write and connect callbacks that
 * libuv runs for it while closing still find it. No callback of a request
 * runs inside an llhttp callback: those record what happened and the code
 * after llhttp_execute acts on it. */
#include "outbound.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "clock.h"
#include "hash.h"
#include "text.h"
#include "log.h"

#define MAX_ADDRS 8
#define MAX_URL 8192
#define READ_BUF (64 * 1024)
/* Methods that are not idempotent (POST, PATCH, any not in RFC 9110's list) are not
 * retried on a connection the server closed, so they only take connections that
 * were idle for less than this. */
#define NONIDEMPOTENT_IDLE_NS (2ull * 1000000000ull)

typedef struct conn_s conn_t;

typedef enum { R_RESOLVING, R_CONNECTING, R_TLS, R_WAITING, R_DONE } rstate_t;

/* A DNS lookup, freed in its own callback. */
typedef struct {
  uv_getaddrinfo_t g;
  cr_outreq_t *req; /* NULL once the request went away */
} dns_t;

struct conn_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  cr_outbound_t *ob;
  char key[600];              /* the origin: scheme://host:port, "!" appended when insecure, then " partition" */
  uint64_t key_hash;
  struct sockaddr_storage peer;
  SSL *ssl;                   /* https: with memory BIOs rb (in) and wb (out) */
  BIO *rb, *wb;
  int handshaking;
  int closing;
  int served;                 /* requests answered on it so far */
  cr_outreq_t *req;           /* the request it serves, NULL when idle */
  conn_t *inext, *iprev;      /* the idle list, most recent first */
  int idle;
  uint64_t idle_since_ns;
  llhttp_t parser;
  int msg_done;               /* on_message_complete ran for the current answer */
};

struct cr_outreq_s {
  uv_timer_t timer;           /* the deadline; or, when the start failed at once, the kick that reports it */
  /* kept when a request is reused (the freelist): the timer and these buffers */
  cr_buf_t url, headers, body, hdrs, rbody;
  /* everything from ob on is cleared for reuse */
  cr_outbound_t *ob;
  cr_outreq_t *lnext, *lprev; /* every live request */
  cr_outreq_cb cb;
  void *data;
  rstate_t state;
  /* the request, copied */
  char method[24];
  int idempotent, head;
  int has_body;
  int starting;               /* inside cr_outreq_start: an end is reported from the loop */
  int deferred;               /* an end waiting for the kick: its error + 1 */
  char okey[600];             /* the origin key (set_origin_key) of the current hop */
  char partition[280];        /* the pool partition (opts.partition) */
  uint64_t okey_hash;
  uint64_t deadline_ns;
  int max_redirects;
  size_t max_body;
  int insecure;
  int has_ua;
  cr_outbound_allow_cb allow;
  cr_outbound_charge_cb charge;
  void *ud;
  /* the current hop */
  cr_url_parts_t u;
  dns_t *dns;
  struct sockaddr_storage addrs[MAX_ADDRS];
  int naddrs, addr_i;
  int last_uv_err;
  conn_t *conn;
  int retried, fresh_only;
  /* the answer */
  int status;
  int nheaders, hstate; /* hstate: 0 none, 1 in a name, 2 in a value */
  int in_trailers;            /* the head is done: header callbacks now are trailer fields */
  size_t header_bytes;
  size_t resp_charged;        /* of charged: the answer's bytes */
  int got_bytes;              /* any byte of the answer arrived on this connection */
  cr_out_error_t perr;        /* an error an llhttp callback found */
  const char *perr_msg;
  int redirects;
  size_t bytes_in, bytes_out;
  long long charged;
  char err[320];
};

struct cr_outbound_s {
  uv_loop_t *loop;
  cr_outbound_opts_t o;
  SSL_CTX *ctx_verify, *ctx_insecure;
  conn_t *idle_head, *idle_tail;
  int nidle, nopen;
  uv_timer_t sweep;
  cr_buf_t head;              /* a request head being written (scratch) */
  cr_outreq_t *live;
  cr_outreq_t *spare;         /* ended requests kept for reuse (their timers open) */
  int nspare;
  int freeing;
  char ua[128];
  char rbuf[READ_BUF];
};

static llhttp_settings_t parser_settings;
static int parser_settings_ready;

static void begin_hop(cr_outreq_t *r);
static void conn_close(conn_t *c);
static void send_request(cr_outreq_t *r);
static void finish(cr_outreq_t *r, cr_out_error_t e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void on_timer_kick(uv_timer_t *t);

/* --- URLs ------------------------------------------------------------------------------------- */

static int url_fail(char *err, size_t errlen, const char *msg) {
  snprintf(err, errlen, "%s", msg);
  return -1;
}

int cr_outbound_url_parse(const char *url, size_t len, cr_url_parts_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (len > MAX_URL) return url_fail(err, errlen, "url: longer than 8192 bytes");
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
      return url_fail(err, errlen, "url: spaces, control characters and non-ASCII bytes must be percent-encoded");
  size_t p;
  if (len >= 7 && strncasecmp(url, "http://", 7) == 0) {
    p = 7;
    out->port = 80;
  } else if (len >= 8 && strncasecmp(url, "https://", 8) == 0) {
    p = 8;
    out->tls = 1;
    out->port = 443;
  } else {
    return url_fail(err, errlen, "url: must start with http:// or https://");
  }
  size_t a = p;
  while (p < len && url[p] != '/' && url[p] != '?' && url[p] != '#') p++;
  const char *auth = url + a;
  size_t alen = p - a;
  if (memchr(auth, '@', alen))
    return url_fail(err, errlen, "url: credentials in the URL are not supported (send an authorization header)");
  const char *host = auth, *port = NULL;
  size_t hlen = alen, plen = 0;
  if (alen && auth[0] == '[') {
    const char *close = memchr(auth, ']', alen);
    if (!close) return url_fail(err, errlen, "url: unclosed '[' in the host");
    host = auth + 1;
    hlen = (size_t)(close - host);
    size_t rest = alen - (size_t)(close + 1 - auth);
    if (rest) {
      if (close[1] != ':') return url_fail(err, errlen, "url: unexpected characters after the IPv6 address");
      port = close + 2;
      plen = rest - 1;
    }
    char tmp[64];
    struct in6_addr a6;
    if (hlen == 0 || hlen >= sizeof tmp) return url_fail(err, errlen, "url: bad IPv6 address");
    memcpy(tmp, host, hlen);
    tmp[hlen] = '\0';
    if (inet_pton(AF_INET6, tmp, &a6) != 1) return url_fail(err, errlen, "url: bad IPv6 address");
    out->ip = 6;
  } else {
    const char *colon = memchr(auth, ':', alen);
    if (colon) {
      hlen = (size_t)(colon - auth);
      port = colon + 1;
      plen = alen - hlen - 1;
    }
  }
  if (hlen == 0) return url_fail(err, errlen, "url: no host");
  if (hlen > 253) return url_fail(err, errlen, "url: host longer than 253 bytes");
  for (size_t i = 0; i < hlen; i++) {
    char c = (char)tolower((unsigned char)host[i]);
    if (!out->ip && !(isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_'))
      return url_fail(err, errlen, "url: bad character in the host");
    out->host[i] = c;
  }
  out->host[hlen] = '\0';
  if (!out->ip) {
    struct in_addr a4;
    if (inet_pton(AF_INET, out->host, &a4) == 1) out->ip = 4;
  }
  if (port) {
    if (plen == 0 || plen > 5) return url_fail(err, errlen, "url: bad port");
    int v = 0;
    for (size_t i = 0; i < plen; i++) {
      if (port[i] < '0' || port[i] > '9') return url_fail(err, errlen, "url: bad port");
      v = v * 10 + (port[i] - '0');
    }
    if (v < 1 || v > 65535) return url_fail(err, errlen, "url: port out of range (1-65535)");
    out->port = v;
  }
  size_t t = p;
  while (p < len && url[p] != '#') p++;
  out->target = url + t;
  out->target_len = p - t;
  return 0;
}

/* scheme://host[:port] of u (the port when not the scheme's). */
static int put_origin(cr_buf_t *b, const cr_url_parts_t *u, int with_scheme) {
  int rc = 0;
  if (with_scheme) rc = cr_buf_append_str(b, u->tls ? "https://" : "http://");
  if (u->ip == 6) rc = rc || cr_buf_putc(b, '[') || cr_buf_append_str(b, u->host) || cr_buf_putc(b, ']');
  else rc = rc || cr_buf_append_str(b, u->host);
  if (u->port != (u->tls ? 443 : 80)) rc = rc || cr_buf_printf(b, ":%d", u->port);
  return rc;
}

/* The absolute URL a Location (loc, n bytes) means from base. */
static int resolve_location(const cr_url_parts_t *base, const char *loc, size_t n, cr_buf_t *out) {
  out->len = 0;
  const char *hash = memchr(loc, '#', n);
  if (hash) n = (size_t)(hash - loc);
  if ((n >= 7 && strncasecmp(loc, "http://", 7) == 0) || (n >= 8 && strncasecmp(loc, "https://", 8) == 0))
    return cr_buf_append(out, loc, n);
  if (n >= 2 && loc[0] == '/' && loc[1] == '/')
    return cr_buf_append_str(out, base->tls ? "https:" : "http:") || cr_buf_append(out, loc, n);
  /* Another scheme: a letter, then letters, digits, '+', '-' or '.', then ':' (RFC 3986 3.1); a
   * ':' later ("?next=a:b", "./a:b") is part of a relative reference. */
  size_t sl = 0;
  while (sl < n && (isalnum((unsigned char)loc[sl]) || loc[sl] == '+' || loc[sl] == '-' || loc[sl] == '.')) sl++;
  if (sl > 0 && sl < n && loc[sl] == ':' && isalpha((unsigned char)loc[0])) return CR_EINVAL;
  if (put_origin(out, base, 1)) return CR_ENOMEM;
  if (n && loc[0] == '/') return cr_buf_append(out, loc, n);
  /* Relative: against the base path's folder (or the base path, for "?q"). */
  const char *t = base->target;
  size_t tl = base->target_len;
  const char *q = memchr(t, '?', tl);
  size_t path_len = q ? (size_t)(q - t) : tl;
  if (path_len == 0) {
    t = "/";
    path_len = 1;
  }
  if (n && loc[0] == '?') return cr_buf_append(out, t, path_len) || cr_buf_append(out, loc, n);
  size_t dir = path_len;
  while (dir > 0 && t[dir - 1] != '/') dir--;
  return cr_buf_append(out, t, dir) || cr_buf_append(out, loc, n);
}

/* --- memory ----------------------------------------------------------------------------------- */

static int charge(cr_outreq_t *r, size_t n, int response) {
  if (!n) return 0;
  if (r->charge && r->charge(r->ud, (long long)n)) return -1;
  r->charged += (long long)n;
  if (response) r->resp_charged += n;
  return 0;
}

static void release_response(cr_outreq_t *r) {
  if (r->resp_charged && r->charge) r->charge(r->ud, -(long long)r->resp_charged);
  r->charged -= (long long)r->resp_charged;
  r->resp_charged = 0;
}

/* --- connections ------------------------------------------------------------------------------ */

static void idle_remove(conn_t *c) {
  cr_outbound_t *ob = c->ob;
  if (!c->idle) return;
  if (c->iprev) c->iprev->inext = c->inext;
  else ob->idle_head = c->inext;
  if (c->inext) c->inext->iprev = c->iprev;
  else ob->idle_tail = c->iprev;
  c->inext = c->iprev = NULL;
  c->idle = 0;
  ob->nidle--;
  uv_ref((uv_handle_t *)&c->tcp);
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (c->ssl) SSL_free(c->ssl); /* and its BIOs */
  free(c);
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  idle_remove(c);
  if (c->req) c->req->conn = NULL;
  c->req = NULL;
  c->ob->nopen--;
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

typedef struct {
  uv_write_t w;
  conn_t *c;
  char data[];
} wr_t;

static void conn_failed(conn_t *c, int status);

static void on_written(uv_write_t *w, int status) {
  wr_t *wr = (wr_t *)w;
  conn_t *c = wr->c;
  free(wr);
  if (status < 0 && !c->closing) conn_failed(c, status);
}

/* Writes bytes on the socket: what the kernel takes now, the rest queued. */
static int conn_write_raw(conn_t *c, const char *data, size_t len) {
  if (!len) return 0;
  if (c->req) c->req->bytes_out += len;
  int n = uv_try_write((uv_stream_t *)&c->tcp, &(uv_buf_t){.base = (char *)data, .len = len}, 1);
  if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
  if (n < 0) return n;
  if ((size_t)n == len) return 0;
  wr_t *wr = malloc(sizeof *wr + (len - (size_t)n));
  if (!wr) return UV_ENOMEM;
  wr->c = c;
  memcpy(wr->data, data + n, len - (size_t)n);
  uv_buf_t b = {.base = wr->data, .len = len - (size_t)n};
  int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc) free(wr);
  return rc;
}

/* Moves what TLS produced (wb) to the socket. */
static int tls_flush(conn_t *c) {
  char buf[16384];
  int n;
  while ((n = BIO_read(c->wb, buf, sizeof buf)) > 0) {
    int rc = conn_write_raw(c, buf, (size_t)n);
    if (rc) return rc;
  }
  return 0;
}

static int conn_write(conn_t *c, const char *data, size_t len) {
  if (!c->ssl) return conn_write_raw(c, data, len);
  while (len) {
    int chunk = len > (1u << 20) ? (1 << 20) : (int)len;
    int n = SSL_write(c->ssl, data, chunk);
    if (n <= 0) return UV_EPROTO;
    data += n;
    len -= (size_t)n;
    int rc = tls_flush(c);
    if (rc) return rc;
  }
  return 0;
}

/* --- the pool --------------------------------------------------------------------------------- */

/* r's origin key for the pool, made once per hop (pool lookups compare its hash first). */
static void set_origin_key(cr_outreq_t *r) {
  char *o = r->okey;
  size_t hl = strlen(r->u.host);
  memcpy(o, r->u.tls ? "https://" : "http://", r->u.tls ? 8 : 7);
  o += r->u.tls ? 8 : 7;
  memcpy(o, r->u.host, hl);
  o += hl;
  *o++ = ':';
  o = cr_put_u64(o, (uint64_t)r->u.port);
  if (r->insecure) *o++ = '!';
  if (r->partition[0]) {
    size_t room = sizeof r->okey - (size_t)(o - r->okey) - 2, pl = strlen(r->partition);
    *o++ = ' ';
    memcpy(o, r->partition, pl < room ? pl : room);
    o += pl < room ? pl : room;
  }
  *o = '\0';
  r->okey_hash = cr_fnv1a(r->okey, (size_t)(o - r->okey));
}

static void on_sweep(uv_timer_t *t) {
  cr_outbound_t *ob = t->data;
  uint64_t now = cr_clock_coarse_ns(), max = (uint64_t)(ob->o.idle_timeout * 1e9);
  while (ob->idle_tail && now - ob->idle_tail->idle_since_ns >= max) conn_close(ob->idle_tail);
  if (!ob->nidle) uv_timer_stop(&ob->sweep);
}

/* Keeps c for the next request to its origin, within the bounds. */
static void conn_park(conn_t *c) {
  cr_outbound_t *ob = c->ob;
  int same = 0;
  conn_t *oldest_same = NULL;
  /* Only when the origin could be at its bound (never more than all idle ones). */
  for (conn_t *i = ob->nidle >= ob->o.max_idle_per_origin ? ob->idle_head : NULL; i; i = i->inext)
    if (i->key_hash == c->key_hash && strcmp(i->key, c->key) == 0) {
      same++;
      oldest_same = i;
    }
  if (same >= ob->o.max_idle_per_origin && oldest_same) conn_close(oldest_same);
  if (ob->nidle >= ob->o.max_idle && ob->idle_tail) conn_close(ob->idle_tail);
  c->req = NULL;
  c->idle = 1;
  /* A kept connection does not keep the loop (a stopping worker) alive. */
  uv_unref((uv_handle_t *)&c->tcp);
  c->idle_since_ns = cr_clock_coarse_ns();
  c->iprev = NULL;
  c->inext = ob->idle_head;
  if (ob->idle_head) ob->idle_head->iprev = c;
  else ob->idle_tail = c;
  ob->idle_head = c;
  ob->nidle++;
  if (!uv_is_active((uv_handle_t *)&ob->sweep)) uv_timer_start(&ob->sweep, on_sweep, 1000, 1000);
}

/* An idle connection of r's origin its policy allows, or NULL. */
static conn_t *pool_take(cr_outreq_t *r) {
  cr_outbound_t *ob = r->ob;
  if (!ob->idle_head) return NULL;
  uint64_t now = cr_clock_coarse_ns();
  for (conn_t *c = ob->idle_head; c; c = c->inext) {
    if (c->key_hash != r->okey_hash || strcmp(c->key, r->okey) != 0) continue;
    if (!r->idempotent && now - c->idle_since_ns >= NONIDEMPOTENT_IDLE_NS) continue;
    /* A partition's requests share one policy (outbound.h): its connection was checked when made. */
    char why[256];
    if (!r->partition[0] && r->allow(r->ud, r->u.host, (const struct sockaddr *)&c->peer, why, sizeof why)) continue;
    idle_remove(c);
    return c;
  }
  return NULL;
}

/* --- the answer (llhttp) ---------------------------------------------------------------------- */

static cr_outreq_t *parser_req(llhttp_t *p) {
  conn_t *c = p->data;
  return c->req;
}

static int perr(cr_outreq_t *r, cr_out_error_t e, const char *msg) {
  r->perr = e;
  r->perr_msg = msg;
  return HPE_USER;
}

static int on_message_begin(llhttp_t *p) {
  cr_outreq_t *r = parser_req(p);
  if (!r) return HPE_USER;
  r->got_bytes = 1;
  return 0;
}

static int header_bytes(cr_outreq_t *r, size_t len) {
  r->header_bytes += len;
  if (r->header_bytes > r->ob->o.max_header) return perr(r, CR_OUT_ETOOBIG, "response headers too large");
  if (charge(r, len + 1, 1)) return perr(r, CR_OUT_EMEMORY, "memory limit exceeded");
  return 0;
}

static int end_value(cr_outreq_t *r) {
  /* Trailing spaces are not part of a value (RFC 9110 5.5). */
  while (r->hdrs.len && (r->hdrs.data[r->hdrs.len - 1] == ' ' || r->hdrs.data[r->hdrs.len - 1] == '\t'))
    r->hdrs.len--;
  if (cr_buf_putc(&r->hdrs, '\0')) return perr(r, CR_OUT_EMEMORY, "memory limit exceeded");
  r->nheaders++;
  return 0;
}

/* Trailer fields (after a chunked body) are not headers (RFC 9110 6.5.1): they count against
 * the head's bound but are not kept. */
static int trailer_bytes(cr_outreq_t *r, size_t len) {
  r->header_bytes += len;
  return r->header_bytes > r->ob->o.max_header ? perr(r, CR_OUT_ETOOBIG, "response headers too large") : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  cr_outreq_t *r = parser_req(p);
  if (!r) return HPE_USER;
  if (r->in_trailers) return trailer_bytes(r, len);
  if (r->hstate == 2 && end_value(r)) return HPE_USER;
  r->hstate = 1;
  if (header_bytes(r, len) || cr_buf_reserve(&r->hdrs, len)) return HPE_USER;
  memcpy(r->hdrs.data + r->hdrs.len, at, len); /* as received: rawHeaders keeps the case */
  r->hdrs.len += len;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  cr_outreq_t *r = parser_req(p);
  if (!r) return HPE_USER;
  if (r->in_trailers) return trailer_bytes(r, len);
  if (r->hstate == 1 && cr_buf_putc(&r->hdrs, '\0')) return perr(r, CR_OUT_EMEMORY, "memory limit exceeded");
  r->hstate = 2;
  if (header_bytes(r, len)) return HPE_USER;
  if (cr_buf_append(&r->hdrs, at, len)) return perr(r, CR_OUT_EMEMORY, "memory limit exceeded");
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  cr_outreq_t *r = parser_req(p);
  if (!r) return HPE_USER;
  if (r->hstate == 1 && cr_buf_putc(&r->hdrs, '\0')) return perr(r, CR_OUT_EMEMORY, "memory limit exceeded");
  if (r->hstate == 1) {
    /* A name without a value (llhttp allows an empty one). */
    r->hstate = 2;
  }
  if (r->hstate == 2 && end_value(r)) return HPE_USER;
  r->hstate = 0;
  r->in_trailers = 1;
  r->status = llhttp_get_status_code(p);
  /* No body follows an answer to HEAD, nor a 1xx, 204 or 304 answer, whatever its fields say
   * (RFC 9112 6.3); bytes there are not this answer's (llhttp: 1 = skip the body). */
  return r->head || (r->status >= 100 && r->status < 200) || r->status == 204 || r->status == 304 ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  cr_outreq_t *r = parser_req(p);
  if (!r) return HPE_USER;
  if (r->rbody.len + len > r->max_body) return perr(r, CR_OUT_ETOOBIG, "response too large");
  if (charge(r, len, 1)) return perr(r, CR_OUT_EMEMORY, "memory limit exceeded");
  if (cr_buf_append(&r->rbody, at, len)) return perr(r, CR_OUT_EMEMORY, "memory limit exceeded");
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  cr_outreq_t *r = c->req;
  if (!r) return HPE_USER;
  if (r->status >= 100 && r->status < 200 && r->status != 101) {
    /* An interim answer (100 Continue, 103 Early Hints): the real one follows. */
    release_response(r);
    r->hdrs.len = 0;
    r->nheaders = 0;
    r->header_bytes = 0;
    r->rbody.len = 0;
    r->status = 0;
    r->in_trailers = 0;
    return 0;
  }
  c->msg_done = 1;
  return HPE_PAUSED;
}

static void settings_init(void) {
  if (parser_settings_ready) return;
  llhttp_settings_init(&parser_settings);
  parser_settings.on_message_begin = on_message_begin;
  parser_settings.on_header_field = on_header_field;
  parser_settings.on_header_value = on_header_value;
  parser_settings.on_headers_complete = on_headers_complete;
  parser_settings.on_body = on_body;
  parser_settings.on_message_complete = on_message_complete;
  parser_settings_ready = 1;
}

/* The value of header name (any case) in r's answer, or NULL. */
static const char *answer_header(const cr_outreq_t *r, const char *name, size_t *len) {
  const char *p = r->hdrs.data, *end = p + r->hdrs.len;
  for (int i = 0; i < r->nheaders && p < end; i++) {
    const char *v = p + strlen(p) + 1;
    if (strcasecmp(p, name) == 0) {
      *len = strlen(v);
      return v;
    }
    p = v + strlen(v) + 1;
  }
  return NULL;
}

static int is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Drops the lines of r->headers whose names are in drop (lower-case, NULL-terminated). */
static void drop_headers(cr_outreq_t *r, const char *const *drop) {
  char *p = r->headers.data, *end = p + r->headers.len, *w = p;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *line_end = nl ? nl + 1 : end;
    char *colon = memchr(p, ':', (size_t)(line_end - p));
    int keep = 1;
    for (const char *const *d = drop; *d && colon; d++)
      if ((size_t)(colon - p) == strlen(*d) && strncasecmp(p, *d, strlen(*d)) == 0) keep = 0;
    if (keep) {
      memmove(w, p, (size_t)(line_end - p));
      w += line_end - p;
    }
    p = line_end;
  }
  r->headers.len = (size_t)(w - r->headers.data);
}

/* The answer is complete on r's connection: park or close the connection,
 * then follow a redirect or end. */
static void answered(cr_outreq_t *r, int keep) {
  conn_t *c = r->conn;
  if (c) {
    c->served++;
    c->req = NULL;
    r->conn = NULL;
    if (keep) conn_park(c);
    else conn_close(c);
  }
  size_t llen = 0;
  const char *loc = is_redirect(r->status) && r->max_redirects > 0 ? answer_header(r, "location", &llen) : NULL;
  if (!loc) {
    finish(r, CR_OUT_OK, NULL);
    return;
  }
  if (r->redirects >= r->max_redirects) {
    finish(r, CR_OUT_EREDIRECTS, "too many redirects");
    return;
  }
  cr_buf_t next = CR_BUF_INIT;
  int rc = resolve_location(&r->u, loc, llen, &next);
  cr_url_parts_t nu;
  char err[200];
  if (rc == CR_EINVAL) {
    cr_buf_free(&next);
    finish(r, CR_OUT_EREDIRECTS, "bad redirect: only http and https locations are followed");
    return;
  }
  if (rc || cr_outbound_url_parse(next.data, next.len, &nu, err, sizeof err)) {
    cr_buf_free(&next);
    if (rc) finish(r, CR_OUT_EMEMORY, "out of memory");
    else finish(r, CR_OUT_EREDIRECTS, "bad redirect: %s", err);
    return;
  }
  int same_origin = nu.tls == r->u.tls && nu.port == r->u.port && strcmp(nu.host, r->u.host) == 0;
  cr_buf_free(&r->url);
  r->url = next;
  cr_outbound_url_parse(r->url.data, r->url.len, &r->u, err, sizeof err); /* parsed above: target into r->url */
  set_origin_key(r);
  if (!same_origin) {
    static const char *const secrets[] = {"authorization", "cookie", "proxy-authorization", NULL};
    drop_headers(r, secrets);
  }
  if (r->status == 303 || ((r->status == 301 || r->status == 302) && strcmp(r->method, "GET") != 0 &&
                           strcmp(r->method, "HEAD") != 0)) {
    if (r->status == 303 && strcmp(r->method, "HEAD") == 0) {
      /* HEAD stays HEAD. */
    } else {
      snprintf(r->method, sizeof r->method, "GET");
      r->idempotent = 1;
      r->head = 0;
    }
    r->has_body = 0;
    r->body.len = 0;
    static const char *const body_headers[] = {"content-type", "content-encoding", "content-language", NULL};
    drop_headers(r, body_headers);
  }
  r->redirects++;
  release_response(r);
  r->hdrs.len = 0;
  r->nheaders = 0;
  r->header_bytes = 0;
  r->rbody.len = 0;
  r->status = 0;
  r->retried = r->fresh_only = 0;
  begin_hop(r);
}

/* Parses plain bytes of the answer. */
static void conn_feed(conn_t *c, const char *data, size_t len) {
  cr_outreq_t *r = c->req;
  if (!r) {
    /* Bytes on an idle connection: the server is not speaking HTTP to us. */
    conn_close(c);
    return;
  }
  if (r->state != R_WAITING) return;
  llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
  if (c->req != r) return;
  if (e == HPE_PAUSED && c->msg_done) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    int extra = pos && pos < data + len;
    /* Not kept while part of the request is still queued to it (the server answered before
     * reading the whole body): the next request would wait behind the rest, which a server that
     * stopped reading never takes, and the queued copy would outlive the request's charge. */
    int writing = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0;
    /* After a 101, or a CONNECT (a 2xx makes it a tunnel), the connection speaks another
     * protocol or to another host: never kept. */
    int switched = r->status == 101 || strcmp(r->method, "CONNECT") == 0;
    answered(r, !extra && !writing && !switched && llhttp_should_keep_alive(&c->parser));
    return;
  }
  if (e == HPE_OK) return;
  if (r->perr) finish(r, r->perr, "%s", r->perr_msg);
  else finish(r, CR_OUT_EPROTO, "bad response: %s", llhttp_errno_name(e));
}

/* The connection ended (EOF or an error) or a write failed. */
static void conn_failed(conn_t *c, int status) {
  cr_outreq_t *r = c->req;
  if (!r) {
    conn_close(c);
    return;
  }
  if (r->state == R_WAITING && status == UV_EOF && r->got_bytes) {
    llhttp_errno_t e = llhttp_finish(&c->parser);
    if (c->req == r && e == HPE_PAUSED && c->msg_done) {
      answered(r, 0);
      return;
    }
  }
  if (c->req != r) return;
  int stale = r->state == R_WAITING && !r->got_bytes && c->served > 0 && r->idempotent && !r->retried;
  conn_close(c);
  if (stale) {
    /* The server closed a kept connection as we reused it: once more, on a new one. */
    r->retried = r->fresh_only = 1;
    begin_hop(r);
    return;
  }
  if (r->state == R_TLS) finish(r, CR_OUT_ETLS, "tls: handshake failed (connection closed)");
  else if (status == UV_EOF) finish(r, CR_OUT_ECLOSED, "connection closed");
  else if (status == UV_ECONNRESET) finish(r, CR_OUT_ENET, "connection reset");
  else finish(r, CR_OUT_ENET, "connection failed: %s", uv_strerror(status));
}

static void tls_handshake(conn_t *c);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  conn_t *c = h->data;
  (void)hint;
  b->base = c->ob->rbuf;
  b->len = sizeof c->ob->rbuf;
}

static void tls_read(conn_t *c) {
  cr_outbound_t *ob = c->ob;
  for (;;) {
    int n = SSL_read(c->ssl, ob->rbuf, sizeof ob->rbuf);
    if (n > 0) {
      conn_feed(c, ob->rbuf, (size_t)n);
      if (c->closing) return;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ) {
      if (tls_flush(c)) conn_failed(c, UV_EPIPE); /* a key update's answer, say */
      return;
    }
    conn_failed(c, e == SSL_ERROR_ZERO_RETURN ? UV_EOF : UV_EPROTO);
    return;
  }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn_t *c = s->data;
  if (c->closing) return;
  if (n < 0) {
    conn_failed(c, (int)n);
    return;
  }
  if (n == 0) return;
  if (c->req) c->req->bytes_in += (size_t)n;
  if (!c->ssl) {
    conn_feed(c, b->base, (size_t)n);
    return;
  }
  if (BIO_write(c->rb, b->base, (int)n) != (int)n) {
    conn_failed(c, UV_ENOMEM);
    return;
  }
  if (c->handshaking) tls_handshake(c);
  else tls_read(c);
}

/* --- TLS ---------------------------------------------------------------------------------------- */

static void tls_handshake(conn_t *c) {
  cr_outreq_t *r = c->req;
  int rc = SSL_do_handshake(c->ssl);
  if (tls_flush(c)) {
    conn_failed(c, UV_EPIPE);
    return;
  }
  if (rc == 1) {
    c->handshaking = 0;
    if (r) send_request(r);
    /* Application data may have come with the last handshake bytes. */
    if (!c->closing && c->req) tls_read(c);
    return;
  }
  int e = SSL_get_error(c->ssl, rc);
  if (e == SSL_ERROR_WANT_READ) {
    ERR_clear_error();
    return;
  }
  long v = SSL_get_verify_result(c->ssl);
  unsigned long oe = ERR_get_error();
  ERR_clear_error();
  if (!r) {
    conn_close(c);
    return;
  }
  if (v != X509_V_OK) {
    cr_log(CR_LOG_WARN, NULL, NULL, "https://%s:%d: certificate verify failed: %s", r->u.host, r->u.port,
           X509_verify_cert_error_string(v));
    finish(r, CR_OUT_ETLS, "tls: certificate verify failed");
  } else {
    const char *why = oe ? ERR_reason_error_string(oe) : NULL;
    finish(r, CR_OUT_ETLS, "tls: handshake failed (%s)", why ? why : "protocol error");
  }
}

static int tls_start(conn_t *c, cr_outreq_t *r) {
  cr_outbound_t *ob = c->ob;
  c->ssl = SSL_new(r->insecure ? ob->ctx_insecure : ob->ctx_verify);
  if (!c->ssl) return -1;
  c->rb = BIO_new(BIO_s_mem());
  c->wb = BIO_new(BIO_s_mem());
  if (!c->rb || !c->wb) {
    BIO_free(c->rb);
    BIO_free(c->wb);
    c->rb = c->wb = NULL;
    return -1;
  }
  SSL_set_bio(c->ssl, c->rb, c->wb);
  SSL_set_connect_state(c->ssl);
  if (!r->u.ip && !SSL_set_tlsext_host_name(c->ssl, r->u.host)) return -1;
  if (!r->insecure) {
    int ok = r->u.ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), r->u.host)
                     : SSL_set1_host(c->ssl, r->u.host);
    if (!ok) return -1;
  }
  c->handshaking = 1;
  r->state = R_TLS;
  tls_handshake(c);
  return 0;
}

/* --- a hop: connect, send ------------------------------------------------------------------------ */

static void send_request(cr_outreq_t *r) {
  conn_t *c = r->conn;
  cr_buf_t *hb = &r->ob->head;
  hb->len = 0;
  /* An empty path is sent as "/" (RFC 9112 3.2.1), a query-only target ("?x=1") too. */
  int rc = cr_buf_reserve(hb, 256 + r->u.target_len + r->headers.len) || cr_buf_append_str(hb, r->method) ||
           cr_buf_putc(hb, ' ') || (!r->u.target_len || r->u.target[0] != '/' ? cr_buf_putc(hb, '/') : 0) ||
           cr_buf_append(hb, r->u.target, r->u.target_len) ||
           cr_buf_append(hb, " HTTP/1.1\r\nHost: ", 17) || put_origin(hb, &r->u, 0) ||
           cr_buf_append(hb, "\r\n", 2) || cr_buf_append(hb, r->headers.data, r->headers.len);
  if (!r->has_ua)
    rc = rc || cr_buf_append(hb, "User-Agent: ", 12) || cr_buf_append_str(hb, r->ob->o.user_agent) ||
         cr_buf_append(hb, "\r\n", 2);
  if (r->has_body)
    rc = rc || cr_buf_append(hb, "Content-Length: ", 16) || cr_buf_append_u64(hb, r->body.len) ||
         cr_buf_append(hb, "\r\n", 2);
  rc = rc || cr_buf_append(hb, "\r\n", 2);
  if (rc) {
    finish(r, CR_OUT_EMEMORY, "out of memory");
    return;
  }
  llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
  c->parser.data = c;
  c->msg_done = 0;
  r->got_bytes = 0;
  r->hstate = r->in_trailers = 0;
  r->state = R_WAITING;
  /* Small bodies go with the head in one write. */
  if (r->has_body && r->body.len && r->body.len <= 16384) {
    rc = cr_buf_append(hb, r->body.data, r->body.len);
    if (rc) {
      finish(r, CR_OUT_EMEMORY, "out of memory");
      return;
    }
    rc = conn_write(c, hb->data, hb->len);
  } else {
    rc = conn_write(c, hb->data, hb->len);
    if (!rc && r->has_body) rc = conn_write(c, r->body.data, r->body.len);
  }
  cr_buf_reset(hb, 64 * 1024);
  if (rc) conn_failed(c, rc);
}

static void connect_next(cr_outreq_t *r);

static void on_connect(uv_connect_t *cr, int status) {
  conn_t *c = cr->data;
  if (c->closing) return;
  cr_outreq_t *r = c->req;
  if (!r) {
    conn_close(c);
    return;
  }
  if (status < 0) {
    r->last_uv_err = status;
    conn_close(c);
    r->addr_i++;
    connect_next(r);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r->u.tls) {
    if (tls_start(c, r)) finish(r, CR_OUT_ETLS, "tls: cannot set up the connection");
    return;
  }
  send_request(r);
}

static void connect_next(cr_outreq_t *r) {
  cr_outbound_t *ob = r->ob;
  if (r->addr_i >= r->naddrs) {
    if (r->last_uv_err == UV_ECONNREFUSED) finish(r, CR_OUT_EREFUSED, "connection refused");
    else finish(r, CR_OUT_ENET, "connection failed: %s", uv_strerror(r->last_uv_err ? r->last_uv_err : UV_EAI_FAIL));
    return;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    finish(r, CR_OUT_EMEMORY, "out of memory");
    return;
  }
  c->ob = ob;
  memcpy(c->key, r->okey, sizeof c->key);
  c->key_hash = r->okey_hash;
  c->peer = r->addrs[r->addr_i];
  uv_tcp_init(ob->loop, &c->tcp);
  c->tcp.data = c;
  c->connect.data = c;
  ob->nopen++;
  c->req = r;
  r->conn = c;
  r->state = R_CONNECTING;
  uv_tcp_nodelay(&c->tcp, 1);
  int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&c->peer, on_connect);
  if (rc) {
    r->last_uv_err = rc;
    conn_close(c);
    r->addr_i++;
    connect_next(r);
  }
}

static void set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  else ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* Keeps the addresses r's policy allows; the first refusal is the error
 * when none is left. */
static int add_address(cr_outreq_t *r, const struct sockaddr *sa, char *first_why, size_t whylen) {
  if (r->naddrs >= MAX_ADDRS) return 0;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
  set_port(&ss, r->u.port);
  char why[256];
  if (r->allow(r->ud, r->u.host, (const struct sockaddr *)&ss, why, sizeof why)) {
    if (!first_why[0]) snprintf(first_why, whylen, "%s", why);
    return 0;
  }
  r->addrs[r->naddrs++] = ss;
  return 1;
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
  dns_t *d = (dns_t *)g;
  cr_outreq_t *r = d->req;
  free(d);
  if (!r) {
    uv_freeaddrinfo(res);
    return;
  }
  r->dns = NULL;
  if (status < 0) {
    uv_freeaddrinfo(res);
    if (status == UV_EAI_NONAME || status == UV_EAI_NODATA) finish(r, CR_OUT_EDNS, "dns: %s: unknown host", r->u.host);
    else finish(r, CR_OUT_EDNS, "dns: %s: %s", r->u.host, uv_strerror(status));
    return;
  }
  char why[256] = "";
  r->naddrs = r->addr_i = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
    if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) add_address(r, ai->ai_addr, why, sizeof why);
  uv_freeaddrinfo(res);
  if (!r->naddrs) {
    if (why[0]) finish(r, CR_OUT_EEGRESS, "egress: %s", why);
    else finish(r, CR_OUT_EDNS, "dns: %s: no address", r->u.host);
    return;
  }
  connect_next(r);
}

static void begin_hop(cr_outreq_t *r) {
  conn_t *c = r->fresh_only ? NULL : pool_take(r);
  if (c) {
    c->req = r;
    r->conn = c;
    send_request(r);
    return;
  }
  r->naddrs = r->addr_i = 0;
  r->last_uv_err = 0;
  if (r->u.ip) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (r->u.ip == 4) {
      struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
      s4->sin_family = AF_INET;
      inet_pton(AF_INET, r->u.host, &s4->sin_addr);
    } else {
      struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
      s6->sin6_family = AF_INET6;
      inet_pton(AF_INET6, r->u.host, &s6->sin6_addr);
    }
    char why[256] = "";
    if (!add_address(r, (const struct sockaddr *)&ss, why, sizeof why)) {
      finish(r, CR_OUT_EEGRESS, "egress: %s", why);
      return;
    }
    connect_next(r);
    return;
  }
  dns_t *d = calloc(1, sizeof *d);
  if (!d) {
    finish(r, CR_OUT_EMEMORY, "out of memory");
    return;
  }
  d->req = r;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  r->state = R_RESOLVING;
  r->dns = d;
  int rc = uv_getaddrinfo(r->ob->loop, &d->g, on_resolved, r->u.host, NULL, &hints);
  if (rc) {
    free(d);
    r->dns = NULL;
    finish(r, CR_OUT_EDNS, "dns: %s: %s", r->u.host, uv_strerror(rc));
  }
}

/* --- a request's life ----------------------------------------------------------------------------- */

#define MAX_SPARE 64

static void on_timer_closed(uv_handle_t *h) {
  cr_outreq_t *r = h->data;
  cr_buf_free(&r->url);
  cr_buf_free(&r->headers);
  cr_buf_free(&r->body);
  cr_buf_free(&r->hdrs);
  cr_buf_free(&r->rbody);
  free(r);
}

/* Unlinks r from everything; its memory stays until release(). */
static void retire(cr_outreq_t *r) {
  cr_outbound_t *ob = r->ob;
  r->state = R_DONE;
  if (r->dns) {
    r->dns->req = NULL;
    uv_cancel((uv_req_t *)&r->dns->g);
    r->dns = NULL;
  }
  if (r->conn) conn_close(r->conn); /* an unfinished exchange: not reusable */
  if (r->lprev) r->lprev->lnext = r->lnext;
  else ob->live = r->lnext;
  if (r->lnext) r->lnext->lprev = r->lprev;
  r->lnext = r->lprev = NULL;
  uv_timer_stop(&r->timer);
}

/* Keeps a retired request for reuse (its timer stays open), or frees it. */
static void release(cr_outreq_t *r) {
  cr_outbound_t *ob = r->ob;
  if (ob->freeing || ob->nspare >= MAX_SPARE) {
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
    return;
  }
  cr_buf_reset(&r->url, 4096);
  cr_buf_reset(&r->headers, 4096);
  cr_buf_reset(&r->body, 16384);
  cr_buf_reset(&r->hdrs, 4096);
  cr_buf_reset(&r->rbody, 16384);
  r->lnext = ob->spare;
  ob->spare = r;
  ob->nspare++;
}

static void finish(cr_outreq_t *r, cr_out_error_t e, const char *fmt, ...) {
  if (r->state == R_DONE) return;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
  }
  if (r->starting) {
    /* Ended inside cr_outreq_start: the callback comes from the loop. */
    if (!r->deferred) {
      r->deferred = (int)e + 1;
      uv_timer_start(&r->timer, on_timer_kick, 0, 0);
    }
    return;
  }
  if (e != CR_OUT_OK) release_response(r);
  cr_outreq_cb cb = r->cb;
  void *data = r->data;
  cr_outres_t res = {
      .error = e,
      .err = e == CR_OUT_OK ? NULL : r->err,
      .status = r->status,
      .nheaders = e == CR_OUT_OK ? r->nheaders : 0,
      .hdrs = r->hdrs.data,
      .hdrs_len = r->hdrs.len,
      .body = r->rbody.data ? r->rbody.data : "",
      .body_len = e == CR_OUT_OK ? r->rbody.len : 0,
      .url = cr_buf_cstr(&r->url),
      .redirects = r->redirects,
      .bytes_out = r->bytes_out,
      .bytes_in = r->bytes_in,
      .charged = r->charged,
  };
  if (!res.url) res.url = "";
  retire(r);
  r->charged = 0;
  cb(data, &res); /* res points into r's buffers: released only after */
  release(r);
}

static void on_timer_kick(uv_timer_t *t) {
  cr_outreq_t *r = t->data;
  cr_out_error_t e = (cr_out_error_t)(r->deferred - 1);
  r->deferred = 0;
  finish(r, e, NULL);
}

static void on_timer(uv_timer_t *t) {
  cr_outreq_t *r = t->data;
  uint64_t now = cr_clock_ns();
  if (now + 1000000 < r->deadline_ns) {
    /* Woken early (the timer's ms rounding): wait the rest. */
    uv_timer_start(&r->timer, on_timer, (r->deadline_ns - now + 999999) / 1000000, 0);
    return;
  }
  finish(r, CR_OUT_ETIMEOUT, "timeout");
}

static int is_token_method(const char *m) {
  size_t n = strlen(m);
  if (n == 0 || n >= 24) return 0;
  for (size_t i = 0; i < n; i++)
    if (!(m[i] >= 'A' && m[i] <= 'Z') && m[i] != '-' && m[i] != '_') return 0;
  return 1;
}

/* A request object: a spare one (its timer open) or a new one. */
static cr_outreq_t *take_req(cr_outbound_t *ob) {
  cr_outreq_t *r = ob->spare;
  if (r) {
    ob->spare = r->lnext;
    ob->nspare--;
    memset(&r->ob, 0, sizeof *r - offsetof(cr_outreq_t, ob));
    return r;
  }
  r = calloc(1, sizeof *r);
  if (!r) return NULL;
  uv_timer_init(ob->loop, &r->timer);
  r->timer.data = r;
  return r;
}

/* Gives back a request that never started. */
static void drop_req(cr_outreq_t *r) {
  r->state = R_DONE;
  release(r);
}

cr_outreq_t *cr_outreq_start(cr_outbound_t *ob, const cr_outreq_opts_t *o, cr_outreq_cb cb, void *data, char *err,
                             size_t errlen) {
  if (!is_token_method(o->method)) {
    snprintf(err, errlen, "method: must be an upper-case token like GET");
    return NULL;
  }
  cr_url_parts_t parsed;
  const cr_url_parts_t *u = o->parts;
  if (!u) {
    if (cr_outbound_url_parse(o->url, o->url_len, &parsed, err, errlen)) return NULL;
    u = &parsed;
  }
  cr_outreq_t *r = take_req(ob);
  if (!r) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  r->ob = ob;
  r->cb = cb;
  r->data = data;
  size_t ml = strlen(o->method); /* < 24: is_token_method */
  memcpy(r->method, o->method, ml + 1);
  r->head = strcmp(r->method, "HEAD") == 0;
  /* RFC 9110 9.2.2; a method crescent does not know may have effects, as POST does. */
  static const char *const idempotent[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL};
  for (const char *const *m = idempotent; *m; m++)
    if (strcmp(r->method, *m) == 0) r->idempotent = 1;
  r->has_body = o->has_body;
  r->deadline_ns = o->deadline_ns;
  r->max_redirects = o->max_redirects;
  r->max_body = o->max_body;
  r->insecure = o->insecure;
  r->allow = o->allow;
  r->charge = o->charge;
  r->ud = o->ud;
  r->ob = ob;
  if (o->partition) {
    size_t pl = strlen(o->partition);
    if (pl >= sizeof r->partition) pl = sizeof r->partition - 1;
    memcpy(r->partition, o->partition, pl);
    r->partition[pl] = '\0';
  }
  if (charge(r, o->url_len + o->headers_len + o->body_len, 0)) {
    snprintf(err, errlen, "memory limit exceeded");
    drop_req(r);
    return NULL;
  }
  if (cr_buf_append(&r->url, o->url, o->url_len) || cr_buf_append(&r->headers, o->headers, o->headers_len) ||
      cr_buf_append(&r->body, o->body, o->body_len) || !cr_buf_cstr(&r->url)) {
    if (r->charge) r->charge(r->ud, -r->charged);
    snprintf(err, errlen, "out of memory");
    drop_req(r);
    return NULL;
  }
  /* The parts, their target pointing into the copy. */
  r->u = *u;
  r->u.target = r->url.data + (u->target - o->url);
  set_origin_key(r);
  for (const char *p = r->headers.data, *end = p ? p + r->headers.len : NULL; p && p < end;) {
    if ((size_t)(end - p) >= 11 && strncasecmp(p, "user-agent:", 11) == 0) r->has_ua = 1;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    p = nl ? nl + 1 : end;
  }
  r->lnext = ob->live;
  if (ob->live) ob->live->lprev = r;
  ob->live = r;
  uint64_t now = cr_clock_ns();
  r->starting = 1;
  if (now >= r->deadline_ns) {
    finish(r, CR_OUT_ETIMEOUT, "timeout");
  } else {
    uv_timer_start(&r->timer, on_timer, (r->deadline_ns - now + 999999) / 1000000, 0);
    begin_hop(r);
  }
  r->starting = 0;
  return r;
}

void cr_outreq_cancel(cr_outreq_t *r) {
  if (!r || r->state == R_DONE) return;
  if (r->charge && r->charged) r->charge(r->ud, -r->charged);
  r->charged = 0;
  retire(r);
  release(r);
}

/* --- the client ------------------------------------------------------------------------------------ */

static SSL_CTX *make_ctx(int verify) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return NULL;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
  if (verify) {
    /* The system's store (ca-certificates), or SSL_CERT_FILE / SSL_CERT_DIR when set. */
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      SSL_CTX_free(ctx);
      return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  }
  return ctx;
}

cr_outbound_t *cr_outbound_new(uv_loop_t *loop, const cr_outbound_opts_t *opts) {
  settings_init();
  cr_outbound_t *ob = calloc(1, sizeof *ob);
  if (!ob) return NULL;
  ob->loop = loop;
  if (opts) ob->o = *opts;
  if (!ob->o.max_header) ob->o.max_header = 64 * 1024;
  if (ob->o.max_idle_per_origin <= 0) ob->o.max_idle_per_origin = 32;
  if (ob->o.max_idle <= 0) ob->o.max_idle = 256;
  if (ob->o.idle_timeout <= 0) ob->o.idle_timeout = 15;
  snprintf(ob->ua, sizeof ob->ua, "%s", ob->o.user_agent ? ob->o.user_agent : "crescent");
  ob->o.user_agent = ob->ua;
  ob->ctx_verify = make_ctx(1);
  ob->ctx_insecure = make_ctx(0);
  if (!ob->ctx_verify || !ob->ctx_insecure) {
    SSL_CTX_free(ob->ctx_verify);
    SSL_CTX_free(ob->ctx_insecure);
    ERR_clear_error();
    free(ob);
    return NULL;
  }
  uv_timer_init(loop, &ob->sweep);
  ob->sweep.data = ob;
  uv_unref((uv_handle_t *)&ob->sweep);
  return ob;
}

static void on_sweep_closed(uv_handle_t *h) {
  cr_outbound_t *ob = h->data;
  SSL_CTX_free(ob->ctx_verify);
  SSL_CTX_free(ob->ctx_insecure);
  free(ob);
}

void cr_outbound_free(cr_outbound_t *ob) {
  if (!ob) return;
  ob->freeing = 1;
  while (ob->live) cr_outreq_cancel(ob->live);
  while (ob->spare) {
    cr_outreq_t *r = ob->spare;
    ob->spare = r->lnext;
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
  }
  cr_buf_free(&ob->head);
  while (ob->idle_head) conn_close(ob->idle_head);
  uv_close((uv_handle_t *)&ob->sweep, on_sweep_closed);
}

void cr_outbound_counts(const cr_outbound_t *ob, int *open, int *idle) {
  if (open) *open = ob->nopen;
  if (idle) *idle = ob->nidle;
}
