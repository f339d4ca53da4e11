/* reqid.h - request ids: how long one may be, and which a client may bring.
 *
 * Every invocation has a request id: in its event and ctx, its log lines and
 * report line, and the X-Request-Id of its response. The platform makes one
 * (36 characters, like a UUID) unless the request brings an X-Request-Id
 * that is well-formed: 1 to CR_REQID_MAX characters of [A-Za-z0-9._:-]. So a
 * request can be traced across services. The bound keeps ids small in every
 * buffer and line; the characters need no escaping in a header, a JSON
 * string, a log query or a Redis key. An id that is not well-formed is
 * ignored, not refused: tracing is a courtesy, the request still runs. */
#ifndef CR_REQID_H
#define CR_REQID_H

#include <stddef.h>

#define CR_REQID_MAX 128

/* Is s (n bytes) a well-formed request id a client may bring? */
static inline int cr_reqid_valid(const char *s, size_t n) {
  if (n == 0 || n > CR_REQID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == ':' || c == '-'))
      return 0;
  }
  return 1;
}

#endif
