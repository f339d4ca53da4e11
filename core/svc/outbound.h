/* outbound.h - the outbound HTTP/1.1 client functions use (crescent.http),
 * non-blocking on a worker's loop.
 *
 * One cr_outbound_t per loop. A request resolves its host on libuv's thread
 * pool (uv_getaddrinfo; IP literals skip it), asks the caller's allow hook
 * about every resolved address before connecting (the egress policy: the
 * check is on the address a connection is made to, so a name that resolves
 * to a blocked address is refused), connects to the first allowed address
 * that answers, speaks TLS through OpenSSL when the URL is https (the
 * system's certificate store, SNI, the host name or IP checked against the
 * certificate; `insecure` skips the checks, for tests), writes the request
 * and parses the response with llhttp: Content-Length, chunked, or up to
 * the close. Redirects (301, 302, 303, 307, 308) are followed up to
 * max_redirects, each hop a new request through the same checks; 303, and
 * 301/302 after a method other than GET or HEAD, become a GET without a
 * body (what browsers and fetch do), and a hop to another origin drops the
 * authorization, cookie and proxy-authorization headers. Bodies are never
 * decoded (no hidden decompression).
 *
 * Connections are kept per origin (scheme, host, port, insecure) and
 * partition (a function: what one function's request left on a connection,
 * a server it confused, cannot reach another's) for reuse
 * (keep-alive), at most max_idle_per_origin and max_idle in all, each for
 * idle_timeout; an idle one the server closes is dropped at once. Before a
 * connection is reused the allow hook is asked about its address again (the
 * next request may come from a function with another policy). A request
 * that finds its reused connection closed by the server before any byte of
 * the answer is retried once on a new connection when its method is
 * idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE); other methods (POST,
 * PATCH, ...) only reuse connections idle for under 2 s.
 *
 * Memory: the bytes a request holds (its request bytes, the answer's
 * headers and body) are asked of the charge hook as they grow, so a
 * function pays for them within its own memory limit; a refusal ends the
 * request with CR_OUT_EMEMORY. What was charged is given back through the
 * hook when the request is cancelled, or handed to the callback (res->charged)
 * to give back once it copied the answer.
 *
 * Every request ends exactly once: its callback runs (from the loop, never
 * from inside cr_outreq_start), or it is cancelled first (no callback).
 * The deadline (timeout) covers everything: resolving, connecting, TLS,
 * redirects. */
#ifndef CR_OUTBOUND_H
#define CR_OUTBOUND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"

typedef struct uv_loop_s uv_loop_t;
typedef struct cr_outbound_s cr_outbound_t;
typedef struct cr_outreq_s cr_outreq_t;

typedef struct {
  size_t max_header;       /* bytes of an answer's status line and headers (default 64 KB) */
  int max_idle_per_origin; /* idle connections kept per origin (default 32) */
  int max_idle;            /* idle connections kept in all (default 256) */
  double idle_timeout;     /* seconds an idle connection is kept (default 15) */
  const char *user_agent;  /* sent when the request has none (default "crescent"; copied) */
} cr_outbound_opts_t;

/* NULL when out of memory (or OpenSSL cannot make its contexts). */
cr_outbound_t *cr_outbound_new(uv_loop_t *loop, const cr_outbound_opts_t *opts);
/* Cancels what is running (no callbacks), closes every connection; the loop
 * must run once more to release them. */
void cr_outbound_free(cr_outbound_t *ob);

/* The parts of an absolute http(s) URL. */
typedef struct {
  int tls;               /* https */
  char host[256];        /* lower-case; an IPv6 literal without its brackets */
  int port;              /* explicit or the scheme's */
  int ip;                /* 4 or 6 when host is an IP literal, else 0 */
  const char *target;    /* path and query (inside the URL given; "/" when empty: target_len 0) */
  size_t target_len;
} cr_url_parts_t;

/* Parses url (len bytes): "http[s]://host[:port][/path][?query][#fragment]".
 * Refuses credentials (user@), bytes outside printable ASCII and bad hosts
 * or ports. 0, or -1 with err written. */
int cr_outbound_url_parse(const char *url, size_t len, cr_url_parts_t *out, char *err, size_t errlen);

/* Error kinds; res->err holds the message. */
typedef enum {
  CR_OUT_OK = 0,
  CR_OUT_ETIMEOUT,   /* "timeout" */
  CR_OUT_EREFUSED,   /* "connection refused" */
  CR_OUT_ECLOSED,    /* "connection closed": the server closed before the whole answer */
  CR_OUT_ENET,       /* "connection failed: <why>" (reset, unreachable, ...) */
  CR_OUT_EDNS,       /* "dns: <host>: <why>" */
  CR_OUT_EEGRESS,    /* "egress: <why>" (the allow hook's) */
  CR_OUT_ETLS,       /* "tls: certificate verify failed", "tls: handshake failed (...)" */
  CR_OUT_ETOOBIG,    /* "response too large", "response headers too large" */
  CR_OUT_EPROTO,     /* "bad response: <llhttp's reason>" */
  CR_OUT_EREDIRECTS, /* "too many redirects", "bad redirect: ..." */
  CR_OUT_EMEMORY,    /* "memory limit exceeded" (the charge hook refused) */
} cr_out_error_t;

/* May a connection to addr be made for host (lower-case, as in the URL, no
 * brackets)? 0 yes; otherwise nonzero with why written (NUL-terminated). */
typedef int (*cr_outbound_allow_cb)(void *ud, const char *host, const struct sockaddr *addr, char *why,
                                    size_t whylen);
/* delta > 0: may the request hold delta more bytes? 0 yes, -1 no (nothing
 * charged). delta < 0: gives back -delta bytes (returns 0). */
typedef int (*cr_outbound_charge_cb)(void *ud, long long delta);

typedef struct {
  const char *method;       /* upper-case token, e.g. "GET" */
  const char *url;          /* absolute http:// or https:// URL (cr_outbound_url_parse) */
  size_t url_len;
  const cr_url_parts_t *parts; /* url parsed already (its target pointing into url), or NULL */
  const char *headers;      /* "Name: value\r\n" lines, checked by the caller, without Host, Content-Length,
                               Transfer-Encoding, Connection (the client writes those); may be NULL */
  size_t headers_len;
  const char *body;         /* may be NULL */
  size_t body_len;
  int has_body;             /* send Content-Length (even 0) */
  uint64_t deadline_ns;     /* monotonic (cr_clock_ns); the request ends with "timeout" there */
  int max_redirects;        /* 0: answer a redirect as it is */
  size_t max_body;          /* bytes of the answer's body; more is "response too large" */
  int insecure;             /* https without certificate checks */
  cr_outbound_allow_cb allow;   /* required */
  cr_outbound_charge_cb charge; /* may be NULL (nothing is charged) */
  const char *partition;    /* kept connections are shared only among requests of the same partition,
                               which must share one allow policy (a connection is checked when it is
                               made, not again at each reuse); crescent.http: the function's version.
                               NULL: one shared pool, every reuse checked */
  void *ud;                 /* for allow and charge */
} cr_outreq_opts_t;

typedef struct {
  cr_out_error_t error;
  const char *err;          /* NULL when OK */
  int status;
  /* Headers as received: nheaders pairs, each name NUL value NUL, in hdrs (names in their case). */
  int nheaders;
  const char *hdrs;
  size_t hdrs_len;
  const char *body;
  size_t body_len;
  const char *url;          /* the URL that answered (after redirects), NUL-terminated */
  int redirects;            /* followed */
  size_t bytes_out, bytes_in; /* on the wire (TLS included), every hop */
  long long charged;        /* bytes still charged, for the callback to give back */
} cr_outres_t;

/* res and what it points to are valid during the call only. */
typedef void (*cr_outreq_cb)(void *data, const cr_outres_t *res);

/* Starts a request (opts and what it points to are copied). NULL with err
 * written when it cannot start: out of memory, a URL that does not parse,
 * or the charge hook refused the request's bytes. */
cr_outreq_t *cr_outreq_start(cr_outbound_t *ob, const cr_outreq_opts_t *opts, cr_outreq_cb cb, void *data,
                             char *err, size_t errlen);
/* Ends a request before its callback; the callback will not run. Gives
 * back what it had charged. */
void cr_outreq_cancel(cr_outreq_t *r);


/* Connections: open now, idle in the pool (for tests and metrics). */
void cr_outbound_counts(const cr_outbound_t *ob, int *open, int *idle);

#endif
