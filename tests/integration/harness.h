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

/* A whole file (malloc'd, NUL-terminated; "" when it cannot be read). */
char *read_file(const char *path);
/* The whole log so far (malloc'd, NUL-terminated). */
char *srv_log(srv_t *s);
/* Lines of the log containing every one of the given substrings (NULL-terminated list). */
int srv_log_count(srv_t *s, const char *needle, ...);
/* How many lines of text contain every one of the (NULL-terminated) needles. */
int text_lines_with(const char *text, const char *needle, ...);
/* Waits until srv_log_count(needle...) >= n; returns the count. */
int srv_log_wait(srv_t *s, int n, int timeout_ms, const char *needle, ...);
/* pids of the workers, from /proc: children of the master named "cr-worker N"
 * (not the validator, not a managed redis-server). Returns how many. */
int srv_worker_pids(srv_t *s, pid_t *out, int max);
/* srv_worker_pids once there are `want` workers, or whatever there is at the timeout. */
int srv_workers_wait(srv_t *s, pid_t *out, int max, int want, int timeout_ms);
/* The index N of the worker pid, from its name "cr-worker N" in /proc; -1 if gone. */
int worker_index(pid_t pid);
/* Do a and b hold the same pids (in any order)? */
int pids_same(const pid_t *a, int na, const pid_t *b, int nb);
/* The first complete log line holding every needle (NULL-terminated list),
 * malloc'd, or NULL. */
char *srv_log_line(srv_t *s, const char *needle, ...);
/* The report line of request rid (waits for it, at most 5 s; fails the test
 * without one), malloc'd. */
char *srv_report_of(srv_t *s, const char *rid);

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
/* The same without "Connection: close" (keep-alive, which we close after the
 * response), waiting at most timeout_ms. */
int http_request_ka(int port, const char *method, const char *path, const char *headers, const char *body,
                    size_t body_len, http_resp_t *r, int timeout_ms);
/* GET shortcut; fails the test on a transport error. */
void http_get(int port, const char *path, http_resp_t *r);
/* GET of the printf-formatted path that must answer 200 (any body). */
void http_get_ok(int port, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* GET that must answer 200 with exactly want as the body. */
void http_expect_body(int port, const char *path, const char *want);
/* GET that must answer status with exactly body (any body when body is NULL). */
void http_expect(int port, const char *path, int status, const char *body);
/* r's X-Request-Id (must be there), copied into out. */
void http_request_id(const http_resp_t *r, char *out, size_t n);
/* A header's value (case-insensitive name) copied into a static buffer, or NULL. */
const char *http_header(const http_resp_t *r, const char *name);
void http_free(http_resp_t *r);
/* Closes a connection made with http_connect (and forgets its buffered bytes). */
void http_close(int fd);
/* Waits until the server closes fd (returns 1) or timeout (returns 0). */
int http_wait_closed(int fd, int timeout_ms);

/* Milliseconds on the monotonic clock. */
long long now_ms(void);
/* Milliseconds since the epoch (the wall clock, as the server's times). */
long long wall_ms(void);
void sleep_ms(int ms);

/* Runs `redis-cli args...` (args NULL-terminated) and returns its output,
 * stdout and stderr (malloc'd); bounded at 5 s. *status gets the exit status
 * when status is not NULL; otherwise a failure fails the test. */
char *redis_cli(int *status, const char *const *args);
/* The managed Redis' socket of a server started by srv_start. */
void srv_redis_sock(const srv_t *s, char *out, size_t n);
/* redis-cli -s sock args... (NULL-terminated): its output (malloc'd); a
 * failure fails the test. */
char *redis_cli_sock(const char *sock, ...);
/* redis-cli on the managed Redis of s (srv_redis_sock) with args (NULL-terminated): its
 * output with the trailing newlines cut (malloc'd); a failure fails the test. */
char *srv_rcli(const srv_t *s, const char *first, ...);
/* The same, but NULL when redis-cli failed, could not connect or Redis answered ERR (Redis is
 * down, or being restarted). */
char *srv_rcli_try(const srv_t *s, const char *first, ...);
/* The integer srv_rcli printed (strtoll of its output). */
long long srv_rcli_ll(const srv_t *s, const char *first, ...);
/* srv_rcli whose output must be exactly want. */
void srv_rcli_expect(const srv_t *s, const char *want, const char *first, ...);
/* Waits (at most 5 s) until the stream key holds want entries; fails the test past it. */
void srv_wait_xlen(const srv_t *s, const char *key, long want);

/* --- queues (the queue, storage and kv trigger tests) -------------------------------------------- */

/* A function that sends: GET /send?q=NAME&b=BODY sends one string message and answers its id
 * (or the error); /send?q=NAME&batch=N sends N tables { n = i } in one sendBatch and answers how
 * many went. Write it as "send.lua" for srv_send_msg. */
extern const char srv_queue_sender[];
/* GET /send?q=queue&b=body through srv_queue_sender; fails unless an id comes back. */
void srv_send_msg(srv_t *s, const char *queue, const char *body);
/* Waits (at most 10 s) for n log lines whose "msg" is exactly msg; fails the test past it. */
void srv_wait_msg(srv_t *s, int n, const char *msg);
/* Log lines whose "msg" is exactly msg. */
int srv_count_msg(srv_t *s, const char *msg);

/* --- JSON text (log lines, /_/api/functions) ----------------------------------------------------- */

/* Where "key": starts its value in json, or NULL. */
const char *json_val(const char *json, const char *key);
/* The number after "key":; fails the test if absent or not a number. */
double json_num(const char *json, const char *key);
/* The entry of function name in a /_/api/functions answer (malloc'd), or NULL. */
char *api_fn_entry(const char *json, const char *name);
/* Splits s (modified) at '|' into at most max fields; returns how many. */
int split_fields(char *s, char **f, int max);

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

/* Waits (at most 5 s) until function fn's consumer group exists on stream key: a new storage or kv
 * trigger reads the writes made from then on. */
void srv_wait_group(srv_t *s, const char *key, const char *fn);

#endif
