/* http.c - HTTP/1.1 connections: llhttp parsing, limits, responses.
 *
 * llhttp (Debian's 8.1, built without LLHTTP_STRICT_MODE) parses; this file
 * is strict where llhttp is lenient (the rules are in http.h):
 *  - framing is checked here, byte by byte, before llhttp sees the bytes
 *    (fx_scan): the header section, chunk-size lines, the CRLF after chunk
 *    data and the trailer section. llhttp 8.1 skips the two bytes after chunk
 *    data and the byte after a chunk size's CR unchecked, takes bare LF after
 *    the request line and for the final empty line, and takes obs-fold.
 *  - the request line: HTTP/0.9 (no version) is 400, a major version other
 *    than 1 is 505 (llhttp runs with LENIENT_VERSION so that every version
 *    reaches on_version_complete), the target's form is checked
 *    (on_url_complete) and its path normalized in place;
 *  - fields: empty names, Host (RFC 9112 3.2), Transfer-Encoding other than
 *    "chunked", or in HTTP/1.0; trailing whitespace is not part of a value.
 *  - llhttp 8.1 refuses a chunk extension after an unquoted value
 *    ("3;a=b;c=d": it consumes the ';' twice). The parser is paused at the
 *    end of such a value and given the ';' once more (feed).
 * Every check costs no allocation and no syscall; the ones on every request
 * are a pass over the header bytes, one over the target, and a few compares
 * per field. */
#include "http.h"

#include <errno.h>
#include <llhttp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <uv.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "buf.h"
#include "clock.h"
#include "error.h"
#include "jsontext.h"
#include "text.h"
#include "log.h"
#include "router.h"

#define MAX_HEADERS 100
#define MAX_URL 8192
#define READ_BUF_SIZE 65536
/* Keep per-connection buffers up to this size between requests. */
#define KEEP_BUF 16384
/* After an error answer, read and drop what the client still sends for this
 * long, so it sees the answer instead of a reset (nginx's lingering close). */
#define LINGER_MS 2000
#define WRITE_TIMEOUT_MS 60000
/* Back-pressure (http.h): no more requests of a connection are parsed while
 * this much of its output waits to be written. */
#define OUT_HIGH_WATER (4u * 1024 * 1024)
/* A response's status line and the fields its handler adds, at most. */
#define MAX_RESPONSE_HEAD (64u * 1024)

typedef struct {
  size_t name_off, name_len, value_off, value_len;
} hdr_off_t;

struct cr_http_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  cr_http_opts_t opts;
  llhttp_settings_t settings;
  cr_http_conn_t *conns; /* intrusive list */
  int nconns;
  int draining;
  int listener_closed;
  cr_http_drained_cb drained;
  void *drained_data;
  char read_buf[READ_BUF_SIZE];
  char id_prefix[32];
  char id_counter[12]; /* hex text, incremented in place */
  uint64_t request_timeout_ms, keepalive_ms;
};

enum { PHASE_IDLE, PHASE_RECEIVING, PHASE_BUSY };

/* Why llhttp_execute returned HPE_PAUSED. */
enum { PAUSE_MESSAGE, PAUSE_CHUNKED, PAUSE_EXT_SEMI };

/* fx_scan's states (the framing check, see fx_scan). */
enum {
  FX_START = 0,  /* before a request line: empty lines (CRLF) may come first */
  FX_START_CR,   /* ... and a CR of one was seen */
  FX_LINE,       /* inside a line of a header or trailer section */
  FX_LINE_CR,    /* a CR ended it: LF must follow */
  FX_LINE_BEGIN, /* at the start of a field line or of the empty line */
  FX_END_CR,     /* the empty line's CR */
  FX_CSIZE,      /* a chunk-size line (size, extensions) */
  FX_CSIZE_CR,
  FX_CDATA,      /* chunk data: fx_left bytes to go */
  FX_CDATA_CR,   /* the CRLF after chunk data */
  FX_CDATA_LF,
  FX_DONE,       /* the section is checked: llhttp parses the rest alone */
};

struct cr_http_conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  cr_http_server_t *server;
  cr_http_conn_t *next, *prev;
  llhttp_t parser;
  int phase;
  int writing;       /* a uv_write of out is in flight */
  int close_after;   /* close once out is written */
  int closing;       /* uv_close called */
  int closes_pending;
  uint64_t due;      /* loop time (ms) of the connection's deadline, 0: none */
  uint64_t timer_at; /* when the libuv timer is set to fire */
  int timer_armed;   /* the libuv timer is started (uv_is_active, without the call) */
  int reading;       /* uv_read_start is in effect */
  int lingering;
  int in_feed;       /* inside feed(): responses are written at its end */
  int peer_eof;
  int error_status;  /* set by a parser callback that refused the request */
  int doomed;        /* closed while a request waits for its answer: close once answered */
  int headers_done;  /* later header callbacks are trailers: ignored */
  int last_was_value;
  int expect_continue;
  int pause_kind;    /* PAUSE_*: why the parser paused */
  int ext_semi;      /* an unquoted chunk extension value ended at ';' */
  int ext_in_value, ext_quoted; /* inside a chunk extension value; it is quoted */
  size_t ext_len;    /* bytes of the chunk extension name or value being received */
  int is_asterisk;   /* the target is "*" (OPTIONS *) */
  unsigned char fx_state;   /* FX_* */
  unsigned char fx_trailer; /* the section being checked is a chunked trailer */
  unsigned char fx_in_size; /* FX_CSIZE: still reading the size's hex digits */
  unsigned char fx_digits;  /* significant hex digits of the chunk size */
  uint64_t fx_size;         /* the chunk size being read */
  uint64_t fx_left;         /* chunk data bytes still to skip */
  const char *feed_end;     /* end of the bytes llhttp_execute was given */
  const char *error_msg;    /* why a callback refused the request (400s), or NULL */
  size_t field_len;         /* bytes of the field name being received */
  size_t path_off, path_len; /* the (normalized) path in head, after an absolute-form's authority */
  size_t auth_off, auth_len; /* an absolute-form target's authority (0, 0: none) */
  size_t header_bytes;
  size_t body_limit; /* of the request being received */
  cr_buf_t head;     /* request target and header bytes */
  cr_buf_t body;
  cr_buf_t out;      /* response bytes not yet written */
  cr_buf_t wout;     /* bytes of an in-flight uv_write (out keeps growing meanwhile) */
  cr_buf_t pending;  /* received bytes not parsed yet (while busy) */
  size_t pending_off; /* of which the first pending_off are parsed already */
  size_t target_len;
  int nhdrs;
  hdr_off_t hdrs[MAX_HEADERS];
  cr_http_header_t headers[MAX_HEADERS];
  cr_http_req_t req;
  int resp_status;
  size_t resp_mark;  /* out's length when this response started */
  int resp_failed;   /* a piece of it did not fit in memory */
  int resp_head_over; /* its head went over MAX_RESPONSE_HEAD: it becomes a 500 */
  uint64_t req_start_ns; /* when the request's first byte was parsed (the access log's duration) */
  int streaming;     /* cr_http_stream_start: the answer goes on until stream_end */
  cr_http_gone_cb gone;
  void *gone_data;
  char ip[48];
};

static void conn_close(cr_http_conn_t *c);
static void feed(cr_http_conn_t *c, const char *data, size_t len, size_t pending_len);
static void flush(cr_http_conn_t *c);
static void next_step(cr_http_conn_t *c);
static void request_done(cr_http_conn_t *c);

/* --- status texts ----------------------------------------------------------------------------- */

/* The reason phrases of the IANA HTTP Status Code Registry (RFC 9110 and
 * the RFCs it lists), for every registered status. 418 is registered as
 * "(Unused)", reserved because of RFC 2324's teapot: it gets that RFC's
 * phrase, which is what clients expect of it. A status that is not registered
 * (306, 419, 599...) gets its class's name from RFC 9110 section 15. */
const char *cr_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 102: return "Processing";
  case 103: return "Early Hints";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 203: return "Non-Authoritative Information";
  case 204: return "No Content";
  case 205: return "Reset Content";
  case 206: return "Partial Content";
  case 207: return "Multi-Status";
  case 208: return "Already Reported";
  case 226: return "IM Used";
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 305: return "Use Proxy";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 418: return "I'm a teapot";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 423: return "Locked";
  case 424: return "Failed Dependency";
  case 425: return "Too Early";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 451: return "Unavailable For Legal Reasons";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 506: return "Variant Also Negotiates";
  case 507: return "Insufficient Storage";
  case 508: return "Loop Detected";
  case 510: return "Not Extended";
  case 511: return "Network Authentication Required";
  default:
    return status < 200 ? "Informational"
           : status < 300 ? "Successful"
           : status < 400 ? "Redirection"
           : status < 500 ? "Client Error"
                          : "Server Error";
  }
}

/* --- timers ----------------------------------------------------------------------------------- */

/* Connection deadlines are lazy: a request sets c->due, and the libuv timer
 * is only moved when it would fire too late. When it fires early it is set
 * again for the rest. Keep-alive requests then cost no timer operations
 * (three heap updates per request showed in profiles). */
static void on_timer(uv_timer_t *t);

static void conn_timer(cr_http_conn_t *c, uint64_t ms) {
  if (c->closing) return;
  uint64_t now = uv_now(c->server->loop);
  c->due = now + ms;
  if (!c->timer_armed || c->timer_at > c->due) {
    uv_timer_start(&c->timer, on_timer, ms, 0);
    c->timer_armed = 1;
    c->timer_at = c->due;
  }
}

static void conn_timer_stop(cr_http_conn_t *c) { c->due = 0; }

static uint64_t secs_ms(double s) { return (uint64_t)(s * 1000.0 + 0.5); }

/* Reading on and off (uv_read_start on a reading stream only answers
 * EALREADY, but it is a call per request). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void read_on(cr_http_conn_t *c) {
  if (c->reading) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

static void read_off(cr_http_conn_t *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

/* --- request ids ------------------------------------------------------------------------------ */

/* "xxxxxxxx-xxxx-4xxx-yxxx-" (random per process) and 12 hex digits of a
 * counter: 36 characters, like a UUID. */
#define ID_PREFIX_LEN 24

static void make_id(cr_http_server_t *s, cr_http_req_t *req) {
  char *out = req->id;
  static const char next_hex[] = "123456789abcdef0";
  for (int i = 11; i >= 0; i--) {
    char d = s->id_counter[i];
    s->id_counter[i] = next_hex[d <= '9' ? d - '0' : d - 'a' + 10];
    if (d != 'f') break; /* no carry */
  }
  memcpy(out, s->id_prefix, ID_PREFIX_LEN);
  memcpy(out + ID_PREFIX_LEN, s->id_counter, 12);
  out[ID_PREFIX_LEN + 12] = '\0';
  req->id_len = ID_PREFIX_LEN + 12;
}

/* The id of a request received whole: the X-Request-Id it brought if that is
 * well-formed (reqid.h), so a request can be traced across services; a new
 * one otherwise. */
static void take_id(cr_http_server_t *s, cr_http_req_t *req) {
  const cr_http_header_t *h = cr_http_req_header(req, "x-request-id", 12);
  if (h && cr_reqid_valid(h->value, h->value_len)) {
    memcpy(req->id, h->value, h->value_len);
    req->id[h->value_len] = '\0';
    req->id_len = h->value_len;
    return;
  }
  make_id(s, req);
}

/* --- parser callbacks ------------------------------------------------------------------------- */

static int refuse(cr_http_conn_t *c, int status) {
  c->error_status = status;
  return HPE_USER;
}

/* A 400 with its own text ("bad request: " + why). */
static int refuse_400(cr_http_conn_t *c, const char *why) {
  c->error_msg = why;
  return refuse(c, 400);
}

/* --- the framing check ---------------------------------------------------------------------- */

static int fx_fail(cr_http_conn_t *c, const char *why) {
  c->error_msg = why;
  return -1;
}

/* Checks the framing bytes of data before llhttp parses them: every line of a
 * header or trailer section ends with CRLF, with no other CR and no bare LF;
 * no field line starts with whitespace (obs-fold); a chunk-size line ends
 * with CRLF and its data with exactly CRLF. It stops where a section ends
 * (FX_DONE): a Content-Length body is data, not framing, and the next
 * message is checked once llhttp has reached it. Bytes other than CR and LF
 * are llhttp's to judge. Returns how many bytes it took (all of them, or up
 * to the end of the section), or -1 with c->error_msg set. */
static ssize_t fx_scan(cr_http_conn_t *c, const char *data, size_t len) {
  const unsigned char *p = (const unsigned char *)data, *end = p + len;
  int st = c->fx_state;
  while (p < end && st != FX_DONE) {
    switch (st) {
    case FX_LINE:
      /* The common bytes, 8 at a time: the lowest byte < 14 (CR, LF, or a
       * control byte llhttp judges) of a word is found exactly (a borrow
       * only reaches the bytes above a real match). A CRLF followed by
       * the next line's first byte is taken here too: the switch only
       * sees lines that end near the end of the data. */
      for (;;) {
#ifdef __SSE2__
        while (end - p >= 16) { /* 16 at a time: bytes < 14 are those min(b, 13) == b */
          __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
          int m = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(13)), v));
          if (m) {
            p += __builtin_ctz((unsigned)m);
            goto special;
          }
          p += 16;
        }
#endif
        while (end - p >= 8) {
          uint64_t x;
          memcpy(&x, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
          x = __builtin_bswap64(x); /* the first byte is the lowest */
#endif
          uint64_t m = (x - 0x0e0e0e0e0e0e0e0eULL) & ~x & 0x8080808080808080ULL;
          if (m) {
            p += __builtin_ctzll(m) >> 3;
            goto special;
          }
          p += 8;
        }
        while (p < end && *p > '\r') p++;
        if (p == end) break;
      special:
        if (*p == '\n') return fx_fail(c, "bare LF as a line ending (CRLF is required)");
        if (*p != '\r') {
          p++;
          continue;
        }
        if (end - p < 3) break; /* the switch takes CR, LF and what follows one by one */
        if (p[1] != '\n') return fx_fail(c, "CR not followed by LF");
        unsigned char next = p[2];
        if (next == '\r' || next == ' ' || next == '\t' || next == '\n') {
          p += 2;
          st = FX_LINE_BEGIN;
          break;
        }
        p += 3; /* a new line has started */
      }
      if (st == FX_LINE && p < end) { /* a CR near the end */
        st = FX_LINE_CR;
        p++;
      }
      break;
    case FX_LINE_CR:
      if (*p != '\n') return fx_fail(c, "CR not followed by LF");
      p++;
      st = FX_LINE_BEGIN;
      break;
    case FX_LINE_BEGIN:
      if (*p == '\r') {
        st = FX_END_CR;
        p++;
      } else if (*p == ' ' || *p == '\t') {
        return fx_fail(c, "a field line starts with whitespace (obsolete line folding)");
      } else if (*p == '\n') {
        return fx_fail(c, "bare LF as a line ending (CRLF is required)");
      } else {
        st = FX_LINE;
      }
      break;
    case FX_END_CR:
      if (*p != '\n') return fx_fail(c, "CR not followed by LF");
      p++;
      st = FX_DONE;
      break;
    case FX_START:
      if (*p == '\r') {
        st = FX_START_CR;
        p++;
      } else if (*p == '\n') {
        return fx_fail(c, "bare LF as a line ending (CRLF is required)");
      } else {
        st = FX_LINE;
      }
      break;
    case FX_START_CR:
      if (*p != '\n') return fx_fail(c, "CR not followed by LF");
      p++;
      st = FX_START;
      break;
    case FX_CSIZE:
      if (c->fx_in_size) {
        int v = cr_hexval((char)*p);
        if (v >= 0) {
          if ((c->fx_size || v) && ++c->fx_digits > 15) return fx_fail(c, "chunk size too large");
          c->fx_size = c->fx_size * 16 + (uint64_t)v;
          p++;
          break;
        }
        c->fx_in_size = 0;
      }
      if (*p == '\r') st = FX_CSIZE_CR;
      else if (*p == '\n') return fx_fail(c, "bare LF after a chunk size (CRLF is required)");
      p++;
      break;
    case FX_CSIZE_CR:
      if (*p != '\n') return fx_fail(c, "chunk size line: CR not followed by LF");
      p++;
      if (c->fx_size == 0) {
        c->fx_trailer = 1; /* the last chunk: the trailer section follows */
        st = FX_LINE_BEGIN;
      } else {
        c->fx_left = c->fx_size;
        st = FX_CDATA;
      }
      break;
    case FX_CDATA: {
      size_t n = (size_t)(end - p);
      if (n > c->fx_left) n = (size_t)c->fx_left;
      p += n;
      c->fx_left -= n;
      if (c->fx_left == 0) st = FX_CDATA_CR;
      break;
    }
    case FX_CDATA_CR:
      if (*p != '\r') return fx_fail(c, "chunk data not followed by CRLF");
      p++;
      st = FX_CDATA_LF;
      break;
    case FX_CDATA_LF:
      if (*p != '\n') return fx_fail(c, "chunk data not followed by CRLF");
      p++;
      st = FX_CSIZE;
      c->fx_in_size = 1;
      c->fx_size = 0;
      c->fx_digits = 0;
      break;
    }
  }
  c->fx_state = (unsigned char)st;
  return (ssize_t)((const char *)p - data);
}

/* The next message's framing is checked from its first byte. */
static void fx_reset(cr_http_conn_t *c) {
  c->fx_state = FX_START;
  c->fx_trailer = 0;
}

static int on_message_begin(llhttp_t *p) {
  cr_http_conn_t *c = p->data;
  c->phase = PHASE_RECEIVING;
  c->headers_done = 0;
  c->header_bytes = 0;
  c->nhdrs = 0;
  c->target_len = 0;
  c->last_was_value = 0;
  c->expect_continue = 0;
  c->field_len = 0;
  c->ext_semi = 0;
  c->ext_in_value = 0;
  c->ext_len = 0;
  c->is_asterisk = 0;
  c->path_off = c->path_len = 0;
  c->auth_off = c->auth_len = 0;
  c->head.len = 0;
  c->body.len = 0;
  c->req_start_ns = cr_clock_ns();
  conn_timer(c, c->server->request_timeout_ms);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  cr_http_conn_t *c = p->data;
  c->header_bytes += len;
  if (c->target_len + len > MAX_URL) return refuse(c, 414);
  if (c->header_bytes > c->server->opts.max_header) return refuse(c, 431);
  if (cr_buf_append(&c->head, at, len)) return refuse(c, 503);
  c->target_len += len;
  return 0;
}

/* A Host value (trimmed): uri-host [":" port], so the characters of a
 * reg-name, an IPv4 address or an IP-literal, and ':'; may be empty. */
static const unsigned char host_ok[256] = {
#define R8(a) [a] = 1, [a + 1] = 1, [a + 2] = 1, [a + 3] = 1, [a + 4] = 1, [a + 5] = 1, [a + 6] = 1, [a + 7] = 1
    R8('a'), R8('i'), R8('q'), ['y'] = 1, ['z'] = 1, R8('A'), R8('I'), R8('Q'), ['Y'] = 1, ['Z'] = 1,
    R8('0'), ['8'] = 1, ['9'] = 1,
#undef R8
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['%'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1,
    ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1, [':'] = 1, ['['] = 1, [']'] = 1,
};

static int host_valid(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!host_ok[(unsigned char)v[i]]) return 0;
  return 1;
}

/* Bytes of a target: 0 plain, 1 '%', 2 '?', 3 refused (control bytes, SP,
 * DEL, '#'). */
static const unsigned char url_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    ['\x20'] = 3, ['#'] = 3, ['%'] = 1, ['?'] = 2, [0x7f] = 3,
};

/* RFC 3986 unreserved characters: a %XX of one of these is the character itself. */
static int is_unreserved(int ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
         ch == '.' || ch == '_' || ch == '~';
}

/* The target is complete (and alone in c->head: fields come after it).
 * Checks its form, finds the path, and normalizes the path in place. */
static int on_url_complete(llhttp_t *p) {
  cr_http_conn_t *c = p->data;
  /* llhttp sets 0.9 before this callback when the line ended after the
   * target; a version, when there is one, is read after it. */
  if (p->http_major == 0 && p->http_minor == 9) return refuse_400(c, "HTTP/0.9 request line (no HTTP version)");
  char *t = c->head.data;
  size_t n = c->target_len;
  if (!t || n == 0) return refuse_400(c, "an empty target");
  if (p->method == HTTP_CONNECT) return 0; /* authority-form: refused with 405 once the fields are in */
  size_t start = 0;
  if (t[0] == '*') {
    if (n != 1 || p->method != HTTP_OPTIONS) return refuse_400(c, "the target * is for OPTIONS only");
    c->is_asterisk = 1;
    c->path_off = 0;
    c->path_len = 1;
    return 0;
  }
  if (t[0] != '/') {
    /* absolute-form (RFC 9112 3.2.2): http or https, an authority without
     * userinfo; routed by its path, and its authority is the Host. */
    if (n >= 7 && cr_ieq(t, 7, "http://")) start = 7;
    else if (n >= 8 && cr_ieq(t, 8, "https://")) start = 8;
    else return refuse_400(c, "the target is neither a path nor an http(s) URI");
    size_t a = start;
    while (a < n && t[a] != '/' && t[a] != '?') {
      if (t[a] == '@') return refuse_400(c, "userinfo in the target URI");
      a++;
    }
    if (a == start) return refuse_400(c, "the target URI has no host");
    if (!host_valid(t + start, a - start)) return refuse_400(c, "an invalid host in the target URI");
    c->auth_off = start;
    c->auth_len = a - start;
    start = a;
  }
  /* The path: up to '?'. No fragment and no control bytes in a target;
   * %XX of an unreserved character is decoded (RFC 3986 6.2.2.2). Plain
   * bytes are skipped by table; bytes are moved only once one was decoded. */
  size_t i = start, o = start;
  for (;;) {
    if (o == i) { /* nothing decoded yet: only look */
      while (i < n && url_class[(unsigned char)t[i]] == 0) i++;
      o = i;
    } else {
      while (i < n && url_class[(unsigned char)t[i]] == 0) t[o++] = t[i++];
    }
    if (i == n) break;
    unsigned char ch = (unsigned char)t[i];
    if (ch == '?') break;
    if (ch != '%') return refuse_400(c, ch == '#' ? "a fragment (#) in the target" : "a control byte in the target");
    int hi = i + 2 < n ? cr_hexval(t[i + 1]) : -1, lo = i + 2 < n ? cr_hexval(t[i + 2]) : -1;
    if (hi >= 0 && lo >= 0 && is_unreserved(hi * 16 + lo)) {
      t[o++] = (char)(hi * 16 + lo);
      i += 3;
    } else {
      t[o++] = t[i++];
    }
  }
  c->path_off = start;
  c->path_len = o - start;
  for (size_t q = i; q < n; q++) {
    unsigned char ch = (unsigned char)t[q];
    if (url_class[ch] == 3)
      return refuse_400(c, ch == '#' ? "a fragment (#) in the target" : "a control byte in the target");
  }
  if (o < i) {
    memmove(t + o, t + i, n - i); /* the query moves up */
    c->target_len = n - (i - o);
    c->head.len = c->target_len;
  }
  return 0;
}

static int on_version_complete(llhttp_t *p) {
  cr_http_conn_t *c = p->data;
  if (p->http_major != 1) return refuse(c, 505);
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  cr_http_conn_t *c = p->data;
  c->field_len += len;
  if (c->headers_done) {
    /* A chunked trailer: checked like a field, but the request's headers are fixed. */
    for (size_t i = 0; i < len; i++)
      if (at[i] == ' ' || at[i] == '\t') return refuse_400(c, "whitespace in a field name");
    return 0;
  }
  c->header_bytes += len;
  if (c->header_bytes > c->server->opts.max_header) return refuse(c, 431);
  if (c->nhdrs == 0 || c->last_was_value) {
    if (c->nhdrs == MAX_HEADERS) return refuse(c, 431);
    hdr_off_t *h = &c->hdrs[c->nhdrs++];
    h->name_off = c->head.len;
    h->name_len = 0;
    h->value_off = 0;
    h->value_len = 0;
    c->last_was_value = 0;
  }
  if (cr_buf_reserve(&c->head, len)) return refuse(c, 503);
  char *o = c->head.data + c->head.len;
  for (size_t i = 0; i < len; i++) {
    char ch = at[i];
    /* llhttp lets "Name : v" through; RFC 9112 §5.1 says 400 (it smuggles). */
    if (ch == ' ' || ch == '\t') return refuse_400(c, "whitespace in a field name");
    o[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
  }
  c->head.len += len;
  c->hdrs[c->nhdrs - 1].name_len += len;
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  cr_http_conn_t *c = p->data;
  if (c->field_len == 0) return refuse_400(c, "a field with an empty name");
  c->field_len = 0;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  cr_http_conn_t *c = p->data;
  if (c->headers_done) return 0;
  c->header_bytes += len;
  if (c->header_bytes > c->server->opts.max_header) return refuse(c, 431);
  hdr_off_t *h = &c->hdrs[c->nhdrs - 1];
  if (!c->last_was_value) {
    h->value_off = c->head.len;
    c->last_was_value = 1;
  }
  if (cr_buf_append(&c->head, at, len)) return refuse(c, 503);
  h->value_len += len;
  return 0;
}

static unsigned method_bit(uint8_t m) {
  switch (m) {
  case HTTP_GET: return CR_M_GET;
  case HTTP_HEAD: return CR_M_HEAD;
  case HTTP_POST: return CR_M_POST;
  case HTTP_PUT: return CR_M_PUT;
  case HTTP_PATCH: return CR_M_PATCH;
  case HTTP_DELETE: return CR_M_DELETE;
  case HTTP_OPTIONS: return CR_M_OPTIONS;
  default: return CR_M_OTHER;
  }
}

static int on_headers_complete(llhttp_t *p) {
  cr_http_conn_t *c = p->data;
  cr_http_server_t *s = c->server;
  c->headers_done = 1;
  /* llhttp ended the section where the framing check did (it checked every
   * byte llhttp has parsed). */
  if (c->fx_state != FX_DONE || c->fx_trailer) return refuse_400(c, "malformed header section");
  /* The head buffer no longer grows: offsets can become pointers. */
  int host = -1, nhost = 0, te = -1;
  for (int i = 0; i < c->nhdrs; i++) {
    hdr_off_t *h = &c->hdrs[i];
    cr_http_header_t *o = &c->headers[i];
    o->name = c->head.data + h->name_off;
    o->name_len = h->name_len;
    size_t vl = h->value_len;
    const char *v = vl ? c->head.data + h->value_off : "";
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--; /* OWS is not part of the value */
    o->value = v;
    o->value_len = vl;
    switch (o->name_len) {
    case 4:
      if (memcmp(o->name, "host", 4) == 0) host = i, nhost++;
      break;
    case 6:
      if (memcmp(o->name, "expect", 6) == 0) {
        if (!cr_ieq(o->value, o->value_len, "100-continue")) return refuse(c, 417);
        c->expect_continue = p->http_minor >= 1;
      }
      break;
    case 17:
      if (memcmp(o->name, "transfer-encoding", 17) == 0) te = i;
      break;
    }
  }
  if (p->method == HTTP_CONNECT) return refuse(c, 405);
  const char *path = c->is_asterisk || c->path_len ? c->head.data + c->path_off : "/";
  size_t plen = c->is_asterisk || c->path_len ? c->target_len - c->path_off : 1;
  c->body_limit = s->opts.body_limit ? s->opts.body_limit(path, plen, s->opts.data) : s->opts.max_body;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->body_limit) return refuse(c, 413);
  /* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in 1.0, valid. */
  if (nhost > 1) return refuse_400(c, "more than one Host field");
  if (nhost == 0 && p->http_minor >= 1) return refuse_400(c, "an HTTP/1.1 request without a Host field");
  if (host >= 0) {
    cr_http_header_t *h = &c->headers[host];
    if (!host_valid(h->value, h->value_len)) return refuse_400(c, "an invalid Host field");
    if (c->auth_len) { /* absolute-form: the target's authority is the host (3.2.2) */
      h->value = c->head.data + c->auth_off;
      h->value_len = c->auth_len;
    }
  }
  if (te >= 0) {
    /* RFC 9112 6.1: Transfer-Encoding in 1.0 is faulty framing; a coding we
     * do not implement is 501; without chunked last, llhttp refuses (400). */
    if (p->http_minor == 0) return refuse_400(c, "Transfer-Encoding in an HTTP/1.0 request");
    if ((p->flags & F_CHUNKED) && !cr_ieq(c->headers[te].value, c->headers[te].value_len, "chunked"))
      return refuse(c, 501);
  }
  /* Written when feed() is done (next_step): never from inside the parser. */
  if (c->expect_continue && ((p->flags & F_CHUNKED) || p->content_length > 0))
    cr_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
  if (p->flags & F_CHUNKED) {
    /* Pause so that feed() checks the chunked framing before llhttp parses it. */
    c->pause_kind = PAUSE_CHUNKED;
    return HPE_PAUSED;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  cr_http_conn_t *c = p->data;
  if (c->body.len + len > c->body_limit) return refuse(c, 413);
  if (cr_buf_append(&c->body, at, len)) return refuse(c, 503);
  return 0;
}

/* Chunk extensions (RFC 9112 7.1.1): names and values are tokens (or a
 * quoted value), so never empty; llhttp 8.1 lets empty ones through. */
static int on_chunk_extension_name(llhttp_t *p, const char *at, size_t len) {
  (void)at;
  cr_http_conn_t *c = p->data;
  c->ext_len += len;
  return 0;
}

static int on_chunk_extension_name_complete(llhttp_t *p) {
  cr_http_conn_t *c = p->data;
  if (c->ext_len == 0) return refuse_400(c, "an empty chunk extension name");
  c->ext_len = 0;
  return 0;
}

static int on_chunk_extension_value(llhttp_t *p, const char *at, size_t len) {
  cr_http_conn_t *c = p->data;
  c->ext_len += len;
  if (!c->ext_in_value) { /* its first span: a quoted value starts with '"' */
    c->ext_in_value = 1;
    c->ext_quoted = len > 0 && at[0] == '"';
  }
  /* The byte that ended the value is in this buffer when the span ended there. */
  if (!c->ext_quoted && at + len < c->feed_end && at[len] == ';') c->ext_semi = 1;
  return 0;
}

static int on_chunk_extension_value_complete(llhttp_t *p) {
  cr_http_conn_t *c = p->data;
  c->ext_in_value = 0;
  if (c->ext_len == 0) return refuse_400(c, "an empty chunk extension value");
  c->ext_len = 0;
  if (!c->ext_semi) return 0;
  c->ext_semi = 0;
  c->pause_kind = PAUSE_EXT_SEMI; /* feed() gives llhttp the ';' it lost */
  return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p) {
  cr_http_conn_t *c = p->data;
  cr_http_req_t *r = &c->req;
  /* A chunked message ends where its framing check ended. */
  if ((p->flags & F_CHUNKED) && !(c->fx_state == FX_DONE && c->fx_trailer))
    return refuse_400(c, "malformed chunked body");
  fx_reset(c);
  memset(r, 0, sizeof *r);
  r->conn = c;
  r->method = method_bit(p->method);
  r->method_name = llhttp_method_name((llhttp_method_t)p->method);
  r->head = p->method == HTTP_HEAD;
  r->target = c->head.data ? c->head.data : "";
  r->target_len = c->target_len;
  if (c->path_len || c->is_asterisk) {
    r->path = r->target + c->path_off;
    r->path_len = c->path_len;
  } else {
    r->path = "/"; /* http://host or http://host?q */
    r->path_len = 1;
  }
  size_t qo = c->path_off + c->path_len;
  if (qo < r->target_len && r->target[qo] == '?') {
    r->query = r->target + qo + 1;
    r->query_len = r->target_len - qo - 1;
  } else {
    r->query = "";
  }
  r->http_minor = p->http_minor > 1 ? 1 : p->http_minor;
  r->nheaders = c->nhdrs;
  r->headers = c->headers;
  r->body = c->body.data ? c->body.data : "";
  r->body_len = c->body.len;
  r->ip = c->ip;
  if (!llhttp_should_keep_alive(p) || p->upgrade) c->close_after = 1;
  c->phase = PHASE_BUSY;
  conn_timer_stop(c);
  c->pause_kind = PAUSE_MESSAGE;
  return HPE_PAUSED;
}

/* --- responses -------------------------------------------------------------------------------- */

/* Responses are written straight into the output buffer after one reserve
 * per piece, with text.h's cr_put (many small appends showed in profiles). */

/* "HTTP/1.1 200 OK" and the Date line, made again when the date changes:
 * most answers start with these 54 bytes. */
static struct {
  char text[64];
  size_t len;
  char date_copy[CR_HTTP_DATE_LEN]; /* the date text was made with */
  uint64_t checked_ms;              /* loop time the date was last looked at */
} ok_head;

static void respond_ok_start(cr_http_conn_t *c, cr_buf_t *o) {
  /* The clock is read once per loop time tick at most (as nginx does). */
  uint64_t now = uv_now(c->server->loop);
  if (ok_head.len == 0 || now != ok_head.checked_ms) {
    ok_head.checked_ms = now;
    const char *date = cr_clock_http_date();
    if (ok_head.len == 0 || memcmp(ok_head.date_copy, date, CR_HTTP_DATE_LEN) != 0) {
      memcpy(ok_head.date_copy, date, CR_HTTP_DATE_LEN);
      char *p = cr_put(ok_head.text, "HTTP/1.1 200 OK\r\nDate: ", 23);
      p = cr_put(p, date, CR_HTTP_DATE_LEN);
      p = cr_put(p, "\r\n", 2);
      ok_head.len = (size_t)(p - ok_head.text);
    }
  }
  if (cr_buf_reserve(o, ok_head.len)) {
    c->resp_failed = 1;
    return;
  }
  memcpy(o->data + o->len, ok_head.text, ok_head.len);
  o->len += ok_head.len;
}

void cr_http_respond_start(cr_http_req_t *req, int status) {
  cr_http_conn_t *c = req->conn;
  cr_buf_t *o = &c->out;
  if (c->server->opts.meters && status >= 100 && status <= 599)
    atomic_fetch_add_explicit(&c->server->opts.meters->responses[status / 100 - 1], 1, memory_order_relaxed);
  c->resp_status = status;
  c->resp_mark = o->len;
  c->resp_failed = 0;
  c->resp_head_over = 0;
  if (status == 200) {
    respond_ok_start(c, o);
    return;
  }
  const char *reason = cr_http_reason(status);
  size_t rl = strlen(reason);
  if (cr_buf_reserve(o, 32 + rl + CR_HTTP_DATE_LEN)) {
    c->resp_failed = 1;
    return;
  }
  char *p = o->data + o->len;
  p = cr_put(p, "HTTP/1.1 ", 9);
  p = cr_put_u64(p, (unsigned)status);
  *p++ = ' ';
  p = cr_put(p, reason, rl);
  p = cr_put(p, "\r\nDate: ", 8);
  p = cr_put(p, cr_clock_http_date(), CR_HTTP_DATE_LEN);
  p = cr_put(p, "\r\n", 2);
  o->len = (size_t)(p - o->data);
}

/* Would n more bytes take this response's head over MAX_RESPONSE_HEAD? Then
 * nothing more is added, and finish answers 500 instead. */
static int head_over(cr_http_conn_t *c, size_t n) {
  if (c->out.len - c->resp_mark + n <= MAX_RESPONSE_HEAD && !c->resp_head_over) return 0;
  c->resp_head_over = 1;
  return 1;
}

void cr_http_respond_header(cr_http_req_t *req, const char *name, size_t nlen, const char *value,
                            size_t vlen) {
  cr_buf_t *o = &req->conn->out;
  if (head_over(req->conn, nlen + vlen + 4)) return;
  if (cr_buf_reserve(o, nlen + vlen + 4)) {
    req->conn->resp_failed = 1;
    return;
  }
  char *p = o->data + o->len;
  p = cr_put(p, name, nlen);
  p = cr_put(p, ": ", 2);
  p = cr_put(p, value, vlen);
  p = cr_put(p, "\r\n", 2);
  o->len = (size_t)(p - o->data);
}

void cr_http_respond_lines(cr_http_req_t *req, const char *lines, size_t len) {
  if (head_over(req->conn, len)) return;
  if (cr_buf_append(&req->conn->out, lines, len)) req->conn->resp_failed = 1;
}

/* The access log's line for the answer being finished. */
static void access_line(cr_http_conn_t *c, const cr_http_req_t *req, int status, size_t bytes) {
  int mode = c->server->opts.access_log;
  if (mode == CR_ACCESS_LOG_OFF || (mode == CR_ACCESS_LOG_ERRORS && status < 400)) return;
  cr_buf_t *b = cr_log_begin(status >= 500 ? CR_LOG_WARN : CR_LOG_INFO, "access", 6, NULL, req->id[0] ? req->id : NULL);
  if (!b) return;
  const char *m = req->method_name ? req->method_name : "-";
  cr_log_str(b, "method", m, strlen(m));
  if (req->path) cr_log_str(b, "path", req->path, req->path_len > 2048 ? 2048 : req->path_len);
  else cr_log_str(b, "path", "-", 1);
  cr_log_int(b, "status", status);
  cr_log_int(b, "bytes", (long long)bytes);
  uint64_t t0 = c->req_start_ns, now = cr_clock_ns();
  cr_log_num(b, "duration", t0 && now > t0 ? round((double)(now - t0) / 1e3) / 1000 : 0);
  cr_log_str(b, "ip", c->ip, strlen(c->ip));
  const cr_http_header_t *ua = req->nheaders ? cr_http_req_header(req, "user-agent", 10) : NULL;
  if (ua) cr_log_str(b, "userAgent", ua->value, ua->value_len > 512 ? 512 : ua->value_len);
  cr_log_end(b);
}

void cr_http_respond_finish(cr_http_req_t *req, const char *content_type, const char *body, size_t len) {
  cr_http_conn_t *c = req->conn;
  cr_buf_t *o = &c->out;
  if (c->resp_head_over && !c->resp_failed) {
    /* The head went over its limit: what it wrote is dropped, and the answer
     * is a 500 of our own (its head is small: this does not come back). */
    o->len = c->resp_mark < o->len ? c->resp_mark : o->len;
    cr_log(CR_LOG_ERROR, NULL, req->id,
           "the response's header fields are over the limit of %u bytes: answering 500 instead",
           MAX_RESPONSE_HEAD);
    cr_buf_t b = CR_BUF_INIT;
    cr_http_error_body(&b, req, 500, "internal error: response headers too large");
    cr_http_respond_start(req, 500);
    if (b.len) {
      cr_http_respond_finish(req, "application/json", b.data, b.len);
    } else {
      c->resp_failed = 1; /* no memory for the body: finish drops the answer and closes */
      cr_http_respond_finish(req, NULL, "", 0);
    }
    cr_buf_free(&b);
    return;
  }
  int status = c->resp_status;
  int bodyless = status == 204 || status == 304 || (status >= 100 && status < 200);
  int with_body = !bodyless && !req->head;
  if (c->server->draining) c->close_after = 1;
  size_t ctl = content_type && !bodyless ? strlen(content_type) : 0;
  size_t idl = req->id[0] ? req->id_len : 0;
  access_line(c, req, status, with_body ? len : 0);
  if (!c->resp_failed && cr_buf_reserve(o, 128 + ctl + idl + (with_body ? len : 0)) == 0) {
    char *p = o->data + o->len;
    if (ctl) {
      p = cr_put(p, "Content-Type: ", 14);
      p = cr_put(p, content_type, ctl);
      p = cr_put(p, "\r\n", 2);
    }
    if (!bodyless) {
      p = cr_put(p, "Content-Length: ", 16);
      p = cr_put_u64(p, len);
      p = cr_put(p, "\r\n", 2);
    }
    p = cr_put(p, "X-Request-Id: ", 14);
    p = cr_put(p, req->id, idl);
    if (c->close_after) p = cr_put(p, "\r\nConnection: close\r\n\r\n", 23);
    else if (req->http_minor == 0) p = cr_put(p, "\r\nConnection: keep-alive\r\n\r\n", 28);
    else p = cr_put(p, "\r\n\r\n", 4);
    if (with_body) p = cr_put(p, body, len);
    o->len = (size_t)(p - o->data);
  } else {
    /* Out of memory: drop what this response wrote (the answers before it
     * still go out) and close: the client sees the connection end, never a
     * half-written response. */
    o->len = c->resp_mark < o->len ? c->resp_mark : o->len;
    c->close_after = 1;
  }
  request_done(c);
  if (c->doomed) {
    /* The connection was lost while this was being answered. */
    c->out.len = 0;
    conn_close(c);
    return;
  }
  next_step(c);
}

void cr_http_error_body(cr_buf_t *b, const cr_http_req_t *req, int status, const char *msg) {
  cr_buf_append_str(b, "{\"error\":");
  cr_json_escape(b, msg, strlen(msg));
  if (status >= 500 || status < 0) {
    cr_buf_append_str(b, ",\"requestId\":");
    cr_json_escape(b, req->id, strlen(req->id));
  }
  cr_buf_putc(b, '}');
}

void cr_http_respond_error(cr_http_req_t *req, int status, const char *msg) {
  cr_buf_t b = CR_BUF_INIT;
  cr_http_error_body(&b, req, status, msg);
  cr_http_respond_start(req, status);
  cr_http_respond_finish(req, "application/json", b.data, b.len);
  cr_buf_free(&b);
}

/* --- streamed answers ------------------------------------------------------------------------ */

#define STREAM_MAX_QUEUED (1024 * 1024)

void cr_http_stream_start(cr_http_req_t *req, const char *content_type, cr_http_gone_cb gone, void *data) {
  cr_http_conn_t *c = req->conn;
  cr_buf_t *o = &c->out;
  c->close_after = 1;
  access_line(c, req, c->resp_status, 0);
  size_t ctl = strlen(content_type), idl = req->id[0] ? req->id_len : 0;
  if (c->resp_failed || c->resp_head_over || cr_buf_reserve(o, 64 + ctl + idl)) {
    o->len = c->resp_mark < o->len ? c->resp_mark : o->len;
    c->resp_failed = 1;
  } else {
    char *p = o->data + o->len;
    p = cr_put(p, "Content-Type: ", 14);
    p = cr_put(p, content_type, ctl);
    p = cr_put(p, "\r\nX-Request-Id: ", 16);
    p = cr_put(p, req->id, idl);
    p = cr_put(p, "\r\nConnection: close\r\n\r\n", 23);
    o->len = (size_t)(p - o->data);
  }
  c->streaming = 1;
  c->gone = gone;
  c->gone_data = data;
  if (c->resp_failed || c->doomed) {
    /* Nothing can go out: the handler hears it from the loop, not from inside this call. */
    conn_timer(c, 0);
    return;
  }
  flush(c);
  if (!c->closing && !c->writing) read_on(c);
}

/* The client went (or must go): the handler is told once. */
static void stream_gone(cr_http_conn_t *c) {
  cr_http_gone_cb cb = c->gone;
  c->gone = NULL;
  if (cb) cb(c->gone_data);
}

int cr_http_stream_write(cr_http_req_t *req, const char *p, size_t n) {
  cr_http_conn_t *c = req->conn;
  if (!c->streaming || c->doomed || c->closing || c->resp_failed) return -1;
  if (c->out.len + c->wout.len + n > STREAM_MAX_QUEUED) return -1;
  if (cr_buf_append(&c->out, p, n)) return -1;
  flush(c);
  return 0;
}

void cr_http_stream_end(cr_http_req_t *req) {
  cr_http_conn_t *c = req->conn;
  if (!c->streaming) return;
  c->streaming = 0;
  c->gone = NULL;
  if (c->resp_failed) c->out.len = c->resp_mark < c->out.len ? c->resp_mark : c->out.len;
  request_done(c);
  if (c->doomed) {
    c->out.len = 0;
    conn_close(c);
    return;
  }
  next_step(c);
}

/* Every stream ends (the server is draining: a tail would hold it forever). */
static void end_streams(cr_http_server_t *s) {
  cr_http_conn_t *c = s->conns;
  while (c) {
    cr_http_conn_t *next = c->next;
    if (c->streaming) stream_gone(c);
    c = next;
  }
}

const cr_http_header_t *cr_http_req_header(const cr_http_req_t *req, const char *name, size_t len) {
  for (int i = 0; i < req->nheaders; i++)
    if (req->headers[i].name_len == len && memcmp(req->headers[i].name, name, len) == 0)
      return &req->headers[i];
  return NULL;
}

/* --- writing ---------------------------------------------------------------------------------- */

static void on_write(uv_write_t *w, int status) {
  cr_http_conn_t *c = w->data;
  c->writing = 0;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  cr_buf_reset(&c->wout, KEEP_BUF);
  conn_timer_stop(c);
  next_step(c);
  if (c->streaming && !c->closing && !c->writing) read_on(c); /* to see the client go */
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)req;
  (void)status;
}

/* Writes out: at once when the socket takes it (no allocation, no callback),
 * else through uv_write of the rest moved to wout, with reading paused until
 * it completes. */
static void flush(cr_http_conn_t *c) {
  if (c->writing || c->closing || c->out.len == 0) return;
  uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)c->out.len) {
    c->out.len = 0;
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    conn_close(c);
    return;
  }
  if (n > 0) cr_buf_consume(&c->out, (size_t)n);
  cr_buf_t t = c->wout;
  c->wout = c->out;
  c->out = t;
  c->out.len = 0;
  b = uv_buf_init(c->wout.data, (unsigned)c->wout.len);
  c->write_req.data = c;
  if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
    conn_close(c);
    return;
  }
  c->writing = 1;
  read_off(c);
  conn_timer(c, WRITE_TIMEOUT_MS);
}

static void start_lingering(cr_http_conn_t *c) {
  c->lingering = 1;
  read_on(c);
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown)) {
    conn_close(c);
    return;
  }
  conn_timer(c, LINGER_MS);
}

/* The request has been answered: its bytes are in out. */
static void request_done(cr_http_conn_t *c) {
  c->phase = PHASE_IDLE;
  c->head.len = 0;
  c->body.len = 0;
  cr_buf_reset(&c->head, KEEP_BUF);
  cr_buf_reset(&c->body, KEEP_BUF);
}

/* A request was answered, a write finished, or feed() is done: decide what
 * the connection does next. A request still being handled (waiting for a
 * concurrency place or on I/O) keeps the connection as it is. */
static void next_step(cr_http_conn_t *c) {
  if (c->closing) return;
  if (c->in_feed) return; /* feed() goes on with the next pipelined request, then flushes */
  flush(c);
  if (c->writing || c->closing) return;
  if (c->phase == PHASE_BUSY) return;
  if (c->close_after) {
    if (c->error_status && !c->peer_eof) start_lingering(c);
    else conn_close(c);
    return;
  }
  /* Parse what arrived while we were busy, then read on. The bytes stay
   * where they are: pipelined requests that each wait are parsed from one
   * buffer, not copied again for each (that was quadratic in the batch). */
  if (c->pending.len) {
    size_t len = c->pending.len, off = c->pending_off;
    c->pending.len = 0; /* feed() puts it back if a request must wait again */
    c->pending_off = 0;
    feed(c, c->pending.data + off, len - off, len);
    if (c->closing || c->phase == PHASE_BUSY || c->writing) return;
    cr_buf_reset(&c->pending, KEEP_BUF);
  }
  if (c->peer_eof) {
    conn_close(c);
    return;
  }
  if (c->server->draining && c->phase == PHASE_IDLE) {
    conn_close(c);
    return;
  }
  if (c->phase == PHASE_IDLE) conn_timer(c, c->server->keepalive_ms);
  read_on(c);
}

/* Answers a request the parser refused (or that timed out) and closes. */
static void respond_refusal(cr_http_conn_t *c, int status, const char *msg) {
  cr_http_req_t *r = &c->req;
  memset(r, 0, sizeof *r);
  r->conn = c;
  r->ip = c->ip;
  r->http_minor = 1;
  make_id(c->server, r);
  c->close_after = 1;
  c->error_status = status;
  c->phase = PHASE_BUSY;
  cr_log(CR_LOG_INFO, NULL, r->id, "refused a request from %s: %d %s", c->ip, status, msg);
  cr_http_respond_error(r, status, msg);
}

static const char *refusal_text(int status) {
  switch (status) {
  case 408: return "request timeout: the request was not received in time";
  case 413: return "request body too large";
  case 414: return "request URI too long";
  case 417: return "expectation failed: only 100-continue is supported";
  case 431: return "request header fields too large";
  case 405: return "method not allowed";
  case 501: return "transfer coding not implemented: only chunked is";
  case 503: return "server out of memory";
  case 505: return "HTTP version not supported: only HTTP/1.x is";
  default: return "bad request";
  }
}

/* --- reading ---------------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  cr_http_conn_t *c = h->data;
  buf->base = c->server->read_buf;
  buf->len = sizeof c->server->read_buf;
}

/* OPTIONS * (asterisk-form) is the server's own: 204 with the methods it serves. */
static void respond_options_star(cr_http_conn_t *c) {
  static const char allow[] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
  cr_http_respond_start(&c->req, 204);
  cr_http_respond_header(&c->req, "Allow", 5, allow, sizeof allow - 1);
  cr_http_respond_finish(&c->req, NULL, "", 0);
}

/* Parses data. pending_len is 0 for bytes just read, or c->pending's length
 * when data lies in c->pending (next_step). */
static void feed(cr_http_conn_t *c, const char *data, size_t len, size_t pending_len) {
  c->in_feed = 1;
  const char *scanned = data; /* fx_scan has seen the bytes before this */
  while (len > 0 && !c->closing) {
    if (c->phase == PHASE_BUSY || c->writing || c->out.len >= OUT_HIGH_WATER) {
      /* The current request is not answered yet, or its answers wait to be
       * written (back-pressure): keep the rest for later. */
      if (pending_len) {
        c->pending.len = pending_len;
        c->pending_off = (size_t)(data - c->pending.data);
      } else {
        cr_buf_append(&c->pending, data, len);
      }
      read_off(c);
      break;
    }
    if (c->close_after && c->phase == PHASE_IDLE) break; /* nothing after a closing request */
    if (c->fx_state != FX_DONE) {
      const char *from = scanned > data ? scanned : data;
      ssize_t k = fx_scan(c, from, (size_t)(data + len - from));
      if (k < 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "bad request: %s", c->error_msg);
        respond_refusal(c, 400, msg);
        break;
      }
      scanned = from + k;
    }
    c->feed_end = data + len;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err == HPE_OK) break;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      const char *pos = llhttp_get_error_pos(&c->parser);
      size_t used = pos ? (size_t)(pos - data) : len;
      data += used;
      len -= used;
      if (err == HPE_PAUSED) llhttp_resume(&c->parser);
      else c->close_after = 1;
      if (c->closing) break;
      if (err == HPE_PAUSED && c->pause_kind == PAUSE_CHUNKED) {
        /* The fields are in: check the chunked framing from here on (where
         * the header section's check ended). */
        if (data != scanned) {
          c->error_status = 400;
          c->error_msg = "malformed header section";
          err = HPE_USER;
          goto refused;
        }
        c->fx_state = FX_CSIZE;
        c->fx_in_size = 1;
        c->fx_size = 0;
        c->fx_digits = 0;
        continue;
      }
      if (err == HPE_PAUSED && c->pause_kind == PAUSE_EXT_SEMI) {
        /* llhttp consumed the ';' that ended an unquoted extension value as
         * part of the value: give it the ';' again (its state expects one). */
        static const char semi = ';';
        c->feed_end = &semi + 1;
        err = llhttp_execute(&c->parser, &semi, 1);
        if (err == HPE_OK) continue;
      } else {
        cr_http_server_t *s = c->server;
        take_id(s, &c->req);
        if (c->is_asterisk) respond_options_star(c);
        else s->opts.on_request(&c->req, s->opts.data);
        continue;
      }
    }
  refused:;
    int status = c->error_status ? c->error_status : 400;
    char msg[200];
    if (status == 400)
      snprintf(msg, sizeof msg, "bad request: %s", c->error_msg ? c->error_msg : llhttp_get_error_reason(&c->parser));
    else
      snprintf(msg, sizeof msg, "%s", refusal_text(status));
    respond_refusal(c, status, msg);
    break;
  }
  c->in_feed = 0;
  if (!c->closing) next_step(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  cr_http_conn_t *c = s->data;
  if (c->lingering) {
    if (nread < 0) conn_close(c);
    return;
  }
  if (c->streaming) {
    /* A stream's client has nothing more to say: what it sends is dropped, its end ends the stream. */
    if (nread < 0) {
      c->peer_eof = 1;
      read_off(c);
      c->doomed = 1;
      stream_gone(c);
    }
    return;
  }
  if (nread > 0) {
    feed(c, buf->base, (size_t)nread, 0);
    return;
  }
  if (nread == 0) return;
  /* EOF or error. A request being answered still gets its answer written. */
  c->peer_eof = 1;
  if (nread != UV_EOF || c->phase == PHASE_RECEIVING) {
    /* A request cut short (a request body never runs to EOF in HTTP/1.1). */
    conn_close(c);
    return;
  }
  read_off(c);
  if (c->phase == PHASE_IDLE && !c->writing && c->out.len == 0) conn_close(c);
}

/* --- connection lifecycle --------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  cr_http_conn_t *c = t->data;
  c->timer_armed = 0; /* a one-shot timer that fired */
  if (c->closing || c->due == 0) return;
  uint64_t now = uv_now(c->server->loop);
  if (now < c->due) {
    uv_timer_start(&c->timer, on_timer, c->due - now, 0);
    c->timer_armed = 1;
    c->timer_at = c->due;
    return;
  }
  c->due = 0;
  if (c->streaming) {
    /* A write made no progress in time, or the stream could not start. */
    c->doomed = 1;
    stream_gone(c);
    return;
  }
  if (c->lingering || c->writing) {
    conn_close(c);
    return;
  }
  if (c->phase == PHASE_RECEIVING) {
    respond_refusal(c, 408, refusal_text(408));
    return;
  }
  if (c->phase == PHASE_IDLE) conn_close(c);
}

static void on_closed(uv_handle_t *h) {
  cr_http_conn_t *c = h->data;
  if (--c->closes_pending > 0) return;
  cr_buf_free(&c->head);
  cr_buf_free(&c->body);
  cr_buf_free(&c->out);
  cr_buf_free(&c->wout);
  cr_buf_free(&c->pending);
  free(c);
}

static void maybe_drained(cr_http_server_t *s) {
  if (s->draining && s->nconns == 0 && s->listener_closed && s->drained) {
    cr_http_drained_cb cb = s->drained;
    s->drained = NULL;
    cb(s->drained_data);
  }
}

static void conn_close(cr_http_conn_t *c) {
  if (c->closing) return;
  if (c->phase == PHASE_BUSY) {
    /* A handler still holds the request: the connection must outlive it.
     * Stop everything; close once the answer comes (cr_http_respond_finish). */
    c->doomed = 1;
    read_off(c);
    uv_timer_stop(&c->timer);
    c->timer_armed = 0;
    if (c->streaming) stream_gone(c); /* a stream's handler ends it now */
    return;
  }
  c->closing = 1;
  cr_http_server_t *s = c->server;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  c->closes_pending = 2;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
  uv_close((uv_handle_t *)&c->timer, on_closed);
  maybe_drained(s);
}

static void on_connection(uv_stream_t *ls, int status) {
  cr_http_server_t *s = ls->data;
  if (status < 0 || s->draining) return;
  cr_http_conn_t *c = calloc(1, sizeof *c);
  if (!c) return;
  c->server = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp)) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  snprintf(c->ip, sizeof c->ip, "unknown");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, c->ip, sizeof c->ip);
    else if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->ip, sizeof c->ip);
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
  c->parser.data = c;
  /* Every version reaches on_version_complete, which answers 505 or goes on. */
  c->parser.lenient_flags |= LENIENT_VERSION;
  if (s->nconns > s->opts.max_connections) {
    cr_log(CR_LOG_WARN, NULL, NULL, "connection limit (%d per worker) reached: answering 503",
           s->opts.max_connections);
    c->phase = PHASE_BUSY;
    c->close_after = 1;
    cr_http_req_t *r = &c->req;
    r->conn = c;
    r->ip = c->ip;
    r->http_minor = 1;
    make_id(s, r);
    cr_http_respond_error(r, 503, "server busy: too many connections");
    return;
  }
  conn_timer(c, s->request_timeout_ms);
  read_on(c);
}

static void on_failed_listener_closed(uv_handle_t *h) { free(h->data); }

int cr_http_server_start(cr_http_server_t **out, uv_loop_t *loop, int fd, const cr_http_opts_t *opts) {
  cr_http_server_t *s = calloc(1, sizeof *s);
  if (!s) return CR_ENOMEM;
  s->loop = loop;
  s->opts = *opts;
  s->request_timeout_ms = secs_ms(opts->request_timeout);
  s->keepalive_ms = secs_ms(opts->keepalive_timeout);
  memset(s->id_counter, '0', sizeof s->id_counter);
  llhttp_settings_init(&s->settings);
  s->settings.on_message_begin = on_message_begin;
  s->settings.on_url = on_url;
  s->settings.on_url_complete = on_url_complete;
  s->settings.on_version_complete = on_version_complete;
  s->settings.on_header_field = on_header_field;
  s->settings.on_header_field_complete = on_header_field_complete;
  s->settings.on_header_value = on_header_value;
  s->settings.on_headers_complete = on_headers_complete;
  s->settings.on_body = on_body;
  s->settings.on_chunk_extension_name = on_chunk_extension_name;
  s->settings.on_chunk_extension_name_complete = on_chunk_extension_name_complete;
  s->settings.on_chunk_extension_value = on_chunk_extension_value;
  s->settings.on_chunk_extension_value_complete = on_chunk_extension_value_complete;
  s->settings.on_message_complete = on_message_complete;
  /* Request ids look like UUIDs: random per process, then a counter. */
  unsigned char rnd[8];
  if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
    uint64_t t = cr_clock_ns() ^ (uint64_t)getpid() << 32;
    memcpy(rnd, &t, sizeof rnd);
  }
  snprintf(s->id_prefix, sizeof s->id_prefix, "%02x%02x%02x%02x-%02x%02x-4%x%02x-%x%x%02x-", rnd[0], rnd[1],
           rnd[2], rnd[3], rnd[4], rnd[5], rnd[6] & 15, rnd[7], 8 | (rnd[6] >> 6), (rnd[6] >> 4) & 3,
           rnd[0] ^ rnd[7]);
  int rc = uv_tcp_init(loop, &s->listener);
  if (rc) {
    free(s);
    return rc;
  }
  s->listener.data = s;
  rc = uv_tcp_open(&s->listener, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
  if (rc) {
    /* The handle is known to the loop now: free the server once it is closed. */
    uv_close((uv_handle_t *)&s->listener, on_failed_listener_closed);
    return rc;
  }
  *out = s;
  return 0;
}

static void on_listener_closed(uv_handle_t *h) {
  cr_http_server_t *s = h->data;
  s->listener_closed = 1;
  maybe_drained(s);
}

void cr_http_server_drain(cr_http_server_t *s, cr_http_drained_cb done, void *data) {
  if (s->draining) return;
  s->draining = 1;
  s->drained = done;
  s->drained_data = data;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  end_streams(s);
  cr_http_conn_t *c = s->conns;
  while (c) {
    cr_http_conn_t *next = c->next;
    if (c->phase == PHASE_IDLE && !c->writing) conn_close(c);
    else c->close_after = 1;
    c = next;
  }
}

void cr_http_server_free(cr_http_server_t *s) { free(s); }

int cr_http_server_connections(const cr_http_server_t *s) { return s->nconns; }

/* --- draining without losing a received request (issue 10, item 11; engineer B) ----------------- */

/* The rule: a drain answers every request whose bytes the server has
 * received, then closes each connection. The caller has taken in the
 * listener's accept queue first (worker.c), so connections the kernel had
 * accepted are among s->conns. At the drain, per connection:
 *   - idle with nothing received: closed at once (an idle keep-alive);
 *   - what the kernel holds for it is read into pending now: those bytes
 *     were received (the client sent them before the drain), later ones are
 *     not read;
 *   - a request being received (its head or body in transit) is read to its
 *     end and answered, with "Connection: close";
 *   - the request being handled (running, or waiting for a concurrency
 *     place) is answered, then the complete requests pipelined behind it, in
 *     order; the last of them says "Connection: close" (the ones before it
 *     cannot: the server must not answer after a close). An incomplete
 *     request behind complete ones is dropped with the connection.
 * The drain counts the complete requests behind the current one with a
 * scratch parser; where that parser disagrees (llhttp refusing what this
 * file accepts), the connection is answered to the end of what was received
 * and closed after its last answer, without the header.
 * While this drain runs, s->draining stays 0 (it would close every
 * connection after its next answer) and s->drained_data holds its state. */

#include <sys/ioctl.h>
#include <sys/socket.h>

typedef struct {
  cr_http_conn_t *c;
  int left; /* complete requests still to come; the last one closes */
} drain_left_t;

typedef struct {
  uv_timer_t timer;
  cr_http_server_t *s;
  cr_http_drained_cb done;
  void *done_data;
  cr_http_request_cb on_request; /* the server's own, wrapped */
  drain_left_t *left;
  int nleft;
} drain_all_t;

typedef struct {
  int complete;
  int in_message;
} drain_count_t;

static int drain_count_begin(llhttp_t *p) {
  ((drain_count_t *)p->data)->in_message = 1;
  return 0;
}

static int drain_count_complete(llhttp_t *p) {
  drain_count_t *n = p->data;
  n->complete++;
  n->in_message = 0;
  return 0;
}

/* Complete requests in data (the parser of c is at a message boundary), or
 * -1 when llhttp stops on them. *partial: an incomplete one follows. */
static int drain_count(const cr_http_conn_t *c, const char *data, size_t len, int *partial) {
  llhttp_settings_t st;
  llhttp_settings_init(&st);
  st.on_message_begin = drain_count_begin;
  st.on_message_complete = drain_count_complete;
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &st);
  p.lenient_flags = c->parser.lenient_flags;
  drain_count_t n = {0, 0};
  p.data = &n;
  *partial = 0;
  if (len && llhttp_execute(&p, data, len) != HPE_OK) return -1;
  *partial = n.in_message;
  return n.complete;
}

/* Reads what the kernel holds for c into c->pending. Returns 1 at the
 * peer's EOF, -1 on an error (the connection is lost), else 0. */
static int drain_slurp(cr_http_conn_t *c) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd)) return 0;
  for (int i = 0; i < 1024; i++) {
    if (cr_buf_reserve(&c->pending, 65536)) return 0;
    ssize_t n = recv(fd, c->pending.data + c->pending.len, c->pending.cap - c->pending.len, MSG_DONTWAIT);
    if (n > 0) {
      c->pending.len += (size_t)n;
      continue;
    }
    if (n == 0) return 1;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
  return 0;
}

static void drain_on_request(cr_http_req_t *req, void *data) {
  cr_http_server_t *s = req->conn->server;
  drain_all_t *d = s->drained_data;
  for (int i = 0; i < d->nleft; i++) {
    if (d->left[i].c != req->conn) continue;
    if (--d->left[i].left <= 0) {
      req->conn->close_after = 1; /* its answer says so, and nothing after it is parsed */
      d->left[i].c = NULL;
    }
    break;
  }
  d->on_request(req, data);
}

static void drain_freed(uv_handle_t *h) {
  drain_all_t *d = h->data;
  free(d->left);
  free(d);
}

/* Every connection closed (connections close on their own: this only looks). */
static void drain_poll(uv_timer_t *t) {
  drain_all_t *d = t->data;
  cr_http_server_t *s = d->s;
  if (s->nconns > 0 || !s->listener_closed) return;
  uv_timer_stop(t);
  s->opts.on_request = d->on_request;
  s->draining = 1;
  s->drained = NULL;
  s->drained_data = NULL;
  cr_http_drained_cb done = d->done;
  void *data = d->done_data;
  uv_close((uv_handle_t *)t, drain_freed);
  if (done) done(data);
}

/* Starts a drain by the rule above; done is called once every connection is closed. */
void cr_http_server_drain_received(cr_http_server_t *s, cr_http_drained_cb done, void *data) {
  if (s->draining || s->drained_data) return;
  drain_all_t *d = calloc(1, sizeof *d);
  if (d) d->left = calloc((size_t)(s->nconns > 0 ? s->nconns : 1), sizeof *d->left);
  if (!d || !d->left) {
    if (d) free(d);
    cr_http_server_drain(s, done, data); /* out of memory: the plain drain */
    return;
  }
  d->s = s;
  d->done = done;
  d->done_data = data;
  d->on_request = s->opts.on_request;
  s->opts.on_request = drain_on_request;
  s->drained_data = d;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  end_streams(s);
  /* Decide for every connection first, then set the idle ones with work
   * going (their handlers may run now, and take their time). */
  int nkick = 0;
  cr_http_conn_t **kick = calloc((size_t)(s->nconns > 0 ? s->nconns : 1), sizeof *kick);
  cr_http_conn_t *c = s->conns;
  while (c) {
    cr_http_conn_t *next = c->next;
    if (c->lingering || c->doomed) {
      c = next;
      continue;
    }
    if (c->phase == PHASE_RECEIVING) {
      c->close_after = 1; /* read on to its end, answer, close */
      c = next;
      continue;
    }
    int eof = drain_slurp(c);
    if (eof < 0) {
      conn_close(c);
      c = next;
      continue;
    }
    if (eof) {
      c->peer_eof = 1;
      read_off(c);
    }
    size_t off = c->pending_off < c->pending.len ? c->pending_off : c->pending.len;
    int partial = 0;
    int n = drain_count(c, c->pending.data + off, c->pending.len - off, &partial);
    int busy = c->phase == PHASE_BUSY || c->writing;
    if (n == 0 && !partial) {
      c->pending.len = c->pending_off = 0;
      if (busy || c->out.len) {
        c->close_after = 1; /* its answer goes out, says close, and the connection closes */
        if (!busy && kick) kick[nkick++] = c;
      } else {
        conn_close(c);
      }
    } else if (n == 0) {
      /* Only the start of a request: read it to its end and answer it. */
      d->left[d->nleft++] = (drain_left_t){c, 1};
      if (!busy && kick) kick[nkick++] = c;
    } else {
      /* Complete requests: answer them, read nothing more. */
      c->peer_eof = 1;
      read_off(c);
      if (n > 0) d->left[d->nleft++] = (drain_left_t){c, n}; /* n < 0: llhttp disagrees, see above */
      if (!busy && kick) kick[nkick++] = c;
    }
    c = next;
  }
  uv_timer_init(s->loop, &d->timer);
  d->timer.data = d;
  uv_timer_start(&d->timer, drain_poll, 5, 5);
  for (int i = 0; i < nkick; i++) next_step(kick[i]);
  free(kick);
}
