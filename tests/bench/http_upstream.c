/*
 * http_upstream.c - the upstream of tests/bench/http_out.sh: the cheapest HTTP/1.1 server that
 * the three peers (crescent.http, nginx + lua's proxy_pass, Node's fetch) can all call, so
 * that what is measured is the peer, not the upstream.
 *
 * Contract:
 *   http_upstream PORT [BODY]    listens on 127.0.0.1:PORT until SIGTERM or SIGINT.
 *   Every request (a request line and headers, ended by an empty line; a request body is not
 *   expected and not read) is answered, in order, with
 *     200, Content-Type: text/plain, Content-Length, BODY (default "hello")
 *   on the same connection, which stays open (keep-alive) until the client closes it.
 *   Pipelined requests are answered in order.
 *   One exception: a request whose line starts with "GET /_stats " is answered with the text
 *   "REQUESTS CONNECTIONS\n": the other requests answered and the connections accepted since
 *   the start. The benchmark reads it before and after each run (upstream calls per request,
 *   and whether the peer reused its connections); /_stats itself is not counted.
 *   A connection that sends more than BUF_SIZE bytes without an empty line, or that cannot take
 *   its answers (more than OUT_SIZE bytes waiting), is closed.
 * One thread, level-triggered epoll, no allocation per request. Loopback only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, memmem */
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

enum { MAX_FDS = 8192, BUF_SIZE = 8192, OUT_SIZE = 65536, MAX_BODY = 4096 };

struct conn {
  char in[BUF_SIZE];
  size_t in_len;
  char *out; /* OUT_SIZE bytes, allocated with the connection */
  size_t out_len;
  int want_out; /* EPOLLOUT registered */
};

static struct conn *conns[MAX_FDS];
static volatile sig_atomic_t stop;
static unsigned long long served, accepted;
static char reply[256 + MAX_BODY];
static size_t reply_len;
static int ep;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void conn_close(int fd) {
  struct conn *c = conns[fd];
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  if (c) {
    free(c->out);
    free(c);
    conns[fd] = NULL;
  }
}

/* Appends n bytes to c's output; 0 when it does not fit. */
static int out_add(struct conn *c, const char *p, size_t n) {
  if (c->out_len + n > OUT_SIZE) return 0;
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
  return 1;
}

/* Writes what it can of c's output; -1 when the connection is to be closed. */
static int conn_flush(int fd, struct conn *c) {
  size_t off = 0;
  while (off < c->out_len) {
    ssize_t w = write(fd, c->out + off, c->out_len - off);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return -1;
  }
  memmove(c->out, c->out + off, c->out_len - off);
  c->out_len -= off;
  int want = c->out_len > 0;
  if (want != c->want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0) return -1;
    c->want_out = want;
  }
  return 0;
}

/* Answers every complete request in c's input; -1 when the connection is to be closed. */
static int conn_answer(struct conn *c) {
  size_t start = 0;
  for (;;) {
    char *end = memmem(c->in + start, c->in_len - start, "\r\n\r\n", 4);
    if (!end) break;
    const char *req = c->in + start;
    size_t req_len = (size_t)(end - req) + 4;
    if (req_len >= 12 && memcmp(req, "GET /_stats ", 12) == 0) {
      char body[64], head[160];
      int bl = snprintf(body, sizeof body, "%llu %llu\n", served, accepted);
      int hl = snprintf(head, sizeof head,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", bl);
      if (!out_add(c, head, (size_t)hl) || !out_add(c, body, (size_t)bl)) return -1;
    } else {
      if (!out_add(c, reply, reply_len)) return -1;
      served++;
    }
    start += req_len;
  }
  memmove(c->in, c->in + start, c->in_len - start);
  c->in_len -= start;
  return c->in_len == BUF_SIZE ? -1 : 0;
}

static void on_readable(int fd) {
  struct conn *c = conns[fd];
  for (;;) {
    size_t room = BUF_SIZE - c->in_len;
    ssize_t r = read(fd, c->in + c->in_len, room);
    if (r > 0) {
      c->in_len += (size_t)r;
      if (conn_answer(c) != 0) {
        conn_close(fd);
        return;
      }
      if ((size_t)r < room) break; /* drained: level-triggered epoll says if more comes */
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    conn_close(fd); /* EOF or error */
    return;
  }
  if (conn_flush(fd, c) != 0) conn_close(fd);
}

static void on_accept(int lfd) {
  for (int i = 0; i < 256; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return; /* EAGAIN, or out of descriptors for now */
    if (fd >= MAX_FDS) {
      close(fd);
      continue;
    }
    struct conn *c = calloc(1, sizeof *c);
    char *out = malloc(OUT_SIZE);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (!c || !out || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      free(c);
      free(out);
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->out = out;
    conns[fd] = c;
    accepted++;
  }
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s PORT [BODY]\n", argv[0]);
    return 2;
  }
  long port = strtol(argv[1], NULL, 10);
  const char *body = argc == 3 ? argv[2] : "hello";
  size_t body_len = strlen(body);
  if (port < 1 || port > 65535 || body_len > MAX_BODY) {
    fprintf(stderr, "http_upstream: bad port or body longer than %d bytes\n", MAX_BODY);
    return 2;
  }
  int hl = snprintf(reply, sizeof reply,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n", body_len);
  memcpy(reply + hl, body, body_len);
  reply_len = (size_t)hl + body_len;

  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(lfd, 1024) != 0) {
    perror("http_upstream: bind/listen");
    return 1;
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0) {
    perror("http_upstream: epoll");
    return 1;
  }
  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(ep, evs, 256, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("http_upstream: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        on_accept(lfd);
        continue;
      }
      struct conn *c = conns[fd];
      if (!c) continue;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        on_readable(fd);
      } else if ((evs[i].events & EPOLLOUT) && conn_flush(fd, c) != 0) {
        conn_close(fd);
      }
    }
  }
  for (int fd = 0; fd < MAX_FDS; fd++)
    if (conns[fd]) conn_close(fd);
  close(lfd);
  fprintf(stderr, "http_upstream: %llu requests, %llu connections\n", served, accepted);
  return 0;
}
