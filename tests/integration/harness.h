/* harness.h - integration tests: the real crescent binary, real HTTP on loopback.
 *
 * A test makes a server (a temporary folder with functions/ inside), writes
 * function files, starts `crescent serve` on 127.0.0.1 port 0 (the port is
 * read from the server's "listening" log line), talks HTTP to it with plain
 * sockets, and stops it. The server's stdout (JSON log lines) goes to a file
 * the test can search; srv_stop() fails the test if the log holds an error
 * line the test did not declare expected (srv_expect_errors). Every wait is
 * bounded. The binary is $CRESCENT_BIN (set by ctest). */
#ifndef CR_HARNESS_H
#define CR_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
  pid_t pid;
  int port;
  char root[256];   /* temporary folder */
  char fndir[300];  /* root/functions */
  char logpath[300];
  int expected_errors; /* error lines the test provokes on purpose */
  int stopped;
  int exit_status;
} srv_t;

/* Creates the temporary folder (with functions/). */
void srv_init(srv_t *s);
/* Writes root/functions/relpath (folders made on the way). */
void srv_write(srv_t *s, const char *relpath, const char *content);
void srv_remove(srv_t *s, const char *relpath);
/* Starts `crescent serve --functions ... --listen 127.0.0.1:0` plus args (a
 * space-separated string, may be NULL) and waits until it listens. */
void srv_start(srv_t *s, const char *args);
/* Like srv_start, but returns -1 instead of failing when the server exits. */
int srv_try_start(srv_t *s, const char *args, int timeout_ms);
/* SIGTERM and wait (bounded); returns the exit status. Checks the log for
 * unexpected errors, then removes the folder. */
int srv_stop(srv_t *s);
/* Sends sig to the master. */
void srv_signal(srv_t *s, int sig);
/* Waits for the master to exit (bounded); returns its exit status or -1. */
int srv_wait_exit(srv_t *s, int timeout_ms);
void srv_expect_errors(srv_t *s, int n);

/* The whole log so far (malloc'd, NUL-terminated). */
char *srv_log(srv_t *s);
/* Lines of the log containing every one of the given substrings (NULL-terminated list). */
int srv_log_count(srv_t *s, const char *needle, ...);
/* Waits until srv_log_count(needle...) >= n; returns the count. */
int srv_log_wait(srv_t *s, int n, int timeout_ms, const char *needle, ...);
/* pids of the workers, from /proc (children of the master). Returns how many. */
int srv_worker_pids(srv_t *s, pid_t *out, int max);

/* --- HTTP --------------------------------------------------------------------------------------- */

typedef struct {
  int status;
  char *head;       /* status line and headers, NUL-terminated */
  char *body;       /* NUL-terminated (binary-safe with body_len) */
  size_t body_len;
  int closed;       /* the server closed the connection after this response */
} http_resp_t;

int http_connect(int port);
void http_send(int fd, const void *data, size_t len);
void http_sends(int fd, const char *data);
/* Reads one response. head_only: a response to HEAD (no body). Returns 0, or
 * -1 when the connection closed or timed out before a full response. */
int http_read(int fd, http_resp_t *r, int head_only, int timeout_ms);
/* One request on a new connection (Connection: close). headers: extra header
 * lines each ending in \r\n, or NULL. */
int http_request(int port, const char *method, const char *path, const char *headers, const char *body,
                 size_t body_len, http_resp_t *r);
/* GET shortcut; fails the test on a transport error. */
void http_get(int port, const char *path, http_resp_t *r);
/* A header's value (case-insensitive name) copied into a static buffer, or NULL. */
const char *http_header(const http_resp_t *r, const char *name);
void http_free(http_resp_t *r);
/* Closes a connection made with http_connect (and forgets its buffered bytes). */
void http_close(int fd);
/* Waits until the server closes fd (returns 1) or timeout (returns 0). */
int http_wait_closed(int fd, int timeout_ms);

/* Milliseconds on the monotonic clock. */
long long now_ms(void);

/* --- writing files the other ways (test_reload.c) ------------------------------------------------ */

/* Writes root/functions/relpath in place, as `echo > file` or cp does: open
 * with O_TRUNC, write, close (folders made on the way). */
void srv_write_inplace(srv_t *s, const char *relpath, const char *content);
/* Opens root/functions/relpath for an in-place write (O_WRONLY|O_CREAT|O_TRUNC,
 * folders made on the way), for a test that writes it in pieces; the caller
 * closes it. */
int srv_open_inplace(srv_t *s, const char *relpath);
/* mv root/functions/from root/functions/to (one rename). */
void srv_rename(srv_t *s, const char *from, const char *to);
/* mkdir -p root/functions/relpath */
void srv_mkdir(srv_t *s, const char *relpath);

#endif
