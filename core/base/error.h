/* error.h - the one error style of crescent.
 *
 * Functions return 0 on success or a negative CR_E* code. cr_strerror() turns
 * any code into a message. CR_EAGAIN is not a failure: it means "pending, a
 * callback will follow" (nginx's NGX_AGAIN). Negative errno values from libuv
 * or the kernel pass through unchanged and cr_strerror() describes them too. */
#ifndef CR_ERROR_H
#define CR_ERROR_H

#define CR_ERRNO_MAP(XX)                                      \
  XX(NOMEM,    -10001, "out of memory")                       \
  XX(INVAL,    -10002, "invalid argument")                    \
  XX(AGAIN,    -10003, "pending")                             \
  XX(NOENT,    -10004, "not found")                           \
  XX(TOOBIG,   -10005, "too large")                           \
  XX(TIMEDOUT, -10006, "timed out")                           \
  XX(LUA,      -10007, "Lua error")                           \
  XX(CONFLICT, -10008, "conflict")                            \
  XX(IO,       -10009, "input/output error")                  \
  XX(CLOSED,   -10010, "closed")                              \
  XX(LIMIT,    -10011, "limit reached")

enum {
#define XX(name, code, msg) CR_E##name = (code),
  CR_ERRNO_MAP(XX)
#undef XX
};

/* Describes a CR_E* code or a negative errno. Never returns NULL. */
const char *cr_strerror(int err);

#endif
