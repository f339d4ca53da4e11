/* httpc.c - the command line's HTTP client (httpc.h). */
#include "httpc.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

/* http://host[:port] (host a name, an IPv4 address or [IPv6]), no path. */
static int parse_base(const char *base, char *host, size_t hostlen, char *port, size_t portlen) {
  if (strncmp(base, "http://", 7) != 0) return -1;
  const char *h = base + 7, *end = h + strcspn(h, "/");
  const char *colon;
  if (*h == '[') {
    const char *rb = memchr(h, ']', (size_t)(end - h));
    if (!rb) return -1;
    snprintf(host, hostlen, "%.*s", (int)(rb - h - 1), h + 1);
    colon = rb[1] == ':' ? rb + 1 : NULL;
  } else {
    colon = memchr(h, ':', (size_t)(end - h));
    snprintf(host, hostlen, "%.*s", (int)((colon ? colon : end) - h), h);
  }
  if (colon) snprintf(port, portlen, "%.*s", (int)(end - colon - 1), colon + 1);
  else snprintf(port, portlen, "80");
  return host[0] ? 0 : -1;
}

static int wait_fd(int fd, short ev, uint64_t deadline_ns) {
  uint64_t now = cr_clock_ns();
  if (now >= deadline_ns) return 0;
  struct pollfd p = {fd, ev, 0};
  int ms = (int)((deadline_ns - now) / 1000000) + 1;
  return poll(&p, 1, ms) == 1;
}

/* The header section's end, the status and the body's length (-1: to the close). */
static int parse_head(const cr_buf_t *in, size_t *head_end, int *status, long long *clen) {
  const char *e = NULL;
  for (size_t i = 3; i < in->len && !e; i++)
    if (memcmp(in->data + i - 3, "\r\n\r\n", 4) == 0) e = in->data + i + 1;
  if (!e) return 0;
  *head_end = (size_t)(e - in->data);
  if (sscanf(in->data, "HTTP/1.%*d %d", status) != 1) return -1;
  *clen = -1;
  for (const char *p = in->data; p < e;) {
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    if (!nl) break;
    if ((size_t)(nl - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) *clen = atoll(p + 15);
    p = nl + 1;
  }
  return 1;
}

/* Connects to base: a socket, or -1 with err written; host and port as parsed. */
static int connect_base(const char *base, char *host, size_t hostlen, char *port, size_t portlen, char *err,
                        size_t errlen) {
  if (parse_base(base, host, hostlen, port, portlen)) {
    snprintf(err, errlen, "bad URL '%s' (http://HOST:PORT expected)", base);
    return -1;
  }
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_socktype = SOCK_STREAM;
  int g = getaddrinfo(host, port, &hints, &ai);
  if (g) {
    snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    int ok = errno == EINPROGRESS && wait_fd(fd, POLLOUT, cr_clock_ns() + 5000000000ull);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (ok && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) snprintf(err, errlen, "cannot connect to %s (is crescent serving there?)", base);
  return fd;
}

int cr_httpc_stream(const char *base, const char *path, const char *headers, double connect_s, double idle_s,
                    cr_httpc_data_cb on_data, void *data, int *status, char *err, size_t errlen) {
  char host[256], port[16];
  *status = 0;
  int fd = connect_base(base, host, sizeof host, port, sizeof port, err, errlen);
  if (fd < 0) return -1;
  cr_buf_t out = CR_BUF_INIT;
  char line[600];
  snprintf(line, sizeof line, "GET %s HTTP/1.1\r\nHost: %s:%s\r\nAccept: text/event-stream\r\n", path, host, port);
  int rc = cr_buf_append_str(&out, line) || (headers && cr_buf_append_str(&out, headers)) ||
           cr_buf_append_str(&out, "\r\n");
  uint64_t deadline = cr_clock_ns() + (uint64_t)(connect_s * 1e9);
  for (size_t off = 0; !rc && off < out.len;) {
    ssize_t n = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);
    if (n > 0) off += (size_t)n;
    else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd, POLLOUT, deadline)) rc = -1;
    } else rc = -1;
  }
  cr_buf_free(&out);
  cr_buf_t in = CR_BUF_INIT;
  size_t head_end = 0;
  long long clen;
  int have_head = 0;
  while (!rc) {
    if (cr_buf_reserve(&in, 65536)) {
      rc = -1;
      break;
    }
    ssize_t n = recv(fd, in.data + in.len, in.cap - in.len, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) {
        rc = -1;
        break;
      }
      if (!wait_fd(fd, POLLIN, have_head ? cr_clock_ns() + (uint64_t)(idle_s * 1e9) : deadline)) {
        snprintf(err, errlen, "timeout");
        rc = -2;
        break;
      }
      continue;
    }
    in.len += (size_t)n;
    if (!have_head) {
      int h = parse_head(&in, &head_end, status, &clen);
      if (h < 0) rc = -1;
      if (h <= 0) continue;
      have_head = 1;
      if (*status != 200) {
        /* Its (short) error body: read what comes within a moment. */
        while (in.len - head_end < (size_t)(clen >= 0 ? clen : 0) && wait_fd(fd, POLLIN, cr_clock_ns() + 2000000000ull)) {
          if (cr_buf_reserve(&in, 4096)) break;
          ssize_t k = recv(fd, in.data + in.len, in.cap - in.len, 0);
          if (k <= 0) break;
          in.len += (size_t)k;
        }
        snprintf(err, errlen, "%.*s", (int)(in.len - head_end > 400 ? 400 : in.len - head_end), in.data + head_end);
        rc = -3;
        break;
      }
      if (in.len > head_end) rc = on_data(data, in.data + head_end, in.len - head_end);
      in.len = 0;
      continue;
    }
    rc = on_data(data, in.data, in.len);
    in.len = 0;
  }
  close(fd);
  cr_buf_free(&in);
  if (rc == -1 && !have_head) snprintf(err, errlen, "bad or no answer from %s", base);
  if (rc == -1 || rc == -2 || rc == -3) return -1;
  return rc;
}

int cr_httpc_request(const char *base, const char *method, const char *path, const char *headers,
                     const char *body, size_t len, double timeout_s, cr_httpc_resp_t *resp, char *err,
                     size_t errlen) {
  memset(resp, 0, sizeof *resp);
  char host[256], port[16];
  if (parse_base(base, host, sizeof host, port, sizeof port)) {
    snprintf(err, errlen, "bad URL '%s' (http://HOST:PORT expected)", base);
    return -1;
  }
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_socktype = SOCK_STREAM;
  int g = getaddrinfo(host, port, &hints, &ai);
  if (g) {
    snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
    return -1;
  }
  uint64_t deadline = cr_clock_ns() + (uint64_t)(timeout_s * 1e9);
  int fd = -1;
  for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    int ok = errno == EINPROGRESS && wait_fd(fd, POLLOUT, cr_clock_ns() + 5000000000ull);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (ok && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) {
    snprintf(err, errlen, "cannot connect to %s (is crescent serving there?)", base);
    return -1;
  }
  cr_buf_t out = CR_BUF_INIT;
  char line[600];
  snprintf(line, sizeof line, "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\nContent-Length: %zu\r\n",
           method, path, host, port, len);
  int rc = cr_buf_append_str(&out, line) || (headers && cr_buf_append_str(&out, headers)) ||
           cr_buf_append_str(&out, "\r\n") || (len && cr_buf_append(&out, body, len));
  for (size_t off = 0; !rc && off < out.len;) {
    ssize_t n = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);
    if (n > 0) off += (size_t)n;
    else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd, POLLOUT, deadline)) rc = -1;
    } else rc = -1;
  }
  cr_buf_free(&out);
  cr_buf_t in = CR_BUF_INIT;
  size_t head_end = 0;
  long long clen = -1;
  int have_head = 0, done = 0;
  while (!rc && !done) {
    if (cr_buf_reserve(&in, 65536)) rc = -1;
    if (rc) break;
    ssize_t n = recv(fd, in.data + in.len, in.cap - in.len, 0);
    if (n > 0) in.len += (size_t)n;
    else if (n == 0) done = 1;
    else if (errno == EAGAIN || errno == EINTR) {
      if (!wait_fd(fd, POLLIN, deadline)) {
        snprintf(err, errlen, "no answer within %.0f s", timeout_s);
        close(fd);
        cr_buf_free(&in);
        return -1;
      }
    } else rc = -1;
    if (!have_head) {
      int h = parse_head(&in, &head_end, &resp->status, &clen);
      if (h < 0) rc = -1;
      have_head = h > 0;
    }
    if (have_head && clen >= 0 && in.len - head_end >= (size_t)clen) done = 1;
  }
  close(fd);
  if (rc || !have_head) {
    snprintf(err, errlen, "bad or no answer from %s", base);
    cr_buf_free(&in);
    return -1;
  }
  size_t blen = clen >= 0 && (size_t)clen < in.len - head_end ? (size_t)clen : in.len - head_end;
  if (cr_buf_append(&resp->head, in.data, head_end) || cr_buf_append(&resp->body, in.data + head_end, blen)) {
    cr_buf_free(&in);
    cr_httpc_free(resp);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  cr_buf_free(&in);
  return 0;
}

const char *cr_httpc_header(const cr_httpc_resp_t *resp, const char *name, char *out, size_t outlen) {
  size_t n = strlen(name);
  const char *p = resp->head.data, *e = p + resp->head.len;
  while (p && p < e) {
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    if (!nl) break;
    if ((size_t)(nl - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
      const char *v = p + n + 1;
      while (v < nl && (*v == ' ' || *v == '\t')) v++;
      const char *ve = nl;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
      snprintf(out, outlen, "%.*s", (int)(ve - v), v);
      return out;
    }
    p = nl + 1;
  }
  return NULL;
}

void cr_httpc_free(cr_httpc_resp_t *resp) {
  cr_buf_free(&resp->head);
  cr_buf_free(&resp->body);
}
