/* egress.c - the outbound-HTTP egress policy (egress.h). */
#include "egress.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 253
#define LABEL_MAX_LEN 63

/* --- classification ------------------------------------------------------------------------- */

/* a (host order) in the block net/bits? */
static int in4(uint32_t a, uint32_t net, int bits) {
  uint32_t mask = bits == 0 ? 0 : 0xFFFFFFFFu << (32 - bits);
  return (a & mask) == net;
}

static cr_addr_class_t classify4(uint32_t a) {
  if (in4(a, 0x00000000u, 8)) return CR_ADDR_UNSPECIFIED;
  if (in4(a, 0x7F000000u, 8)) return CR_ADDR_LOOPBACK;
  if (in4(a, 0x0A000000u, 8) || in4(a, 0xAC100000u, 12) || in4(a, 0xC0A80000u, 16) ||
      in4(a, 0x64400000u, 10) || in4(a, 0xC6120000u, 15))
    return CR_ADDR_PRIVATE;
  if (in4(a, 0xA9FE0000u, 16)) return CR_ADDR_LINKLOCAL;
  if (in4(a, 0xE0000000u, 4)) return CR_ADDR_MULTICAST;
  if (in4(a, 0xF0000000u, 4) || in4(a, 0xC0000000u, 24) || in4(a, 0xC0000200u, 24) ||
      in4(a, 0xC6336400u, 24) || in4(a, 0xCB007100u, 24))
    return CR_ADDR_RESERVED;
  return CR_ADDR_PUBLIC;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

/* The IPv4-mapped ::ffff:a.b.c.d? */
static int is_mapped(const uint8_t *b) {
  return all_zero(b, 10) && b[10] == 0xFF && b[11] == 0xFF;
}

static cr_addr_class_t classify6(const uint8_t *b) {
  if (all_zero(b, 15))
    return b[15] == 0 ? CR_ADDR_UNSPECIFIED : b[15] == 1 ? CR_ADDR_LOOPBACK : classify4(be32(b + 12));
  if (is_mapped(b) || all_zero(b, 12)) return classify4(be32(b + 12));
  static const uint8_t nat64[12] = {0x00, 0x64, 0xFF, 0x9B};
  if (memcmp(b, nat64, 12) == 0) return classify4(be32(b + 12));
  static const uint8_t nat64_local[6] = {0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01};
  if (memcmp(b, nat64_local, 6) == 0) return CR_ADDR_PRIVATE; /* a site's own translator */
  if (b[0] == 0x20 && b[1] == 0x02) return classify4(be32(b + 2));
  if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return CR_ADDR_LINKLOCAL;
  if ((b[0] & 0xFE) == 0xFC) return CR_ADDR_PRIVATE;
  if (b[0] == 0xFE && (b[1] & 0xC0) == 0xC0) return CR_ADDR_PRIVATE;
  if (b[0] == 0xFF) return CR_ADDR_MULTICAST;
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8) return CR_ADDR_RESERVED;
  return CR_ADDR_PUBLIC;
}

cr_addr_class_t cr_addr_classify(const struct sockaddr *sa) {
  if (!sa) return CR_ADDR_RESERVED;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    return classify4(ntohl(s4->sin_addr.s_addr));
  }
  if (sa->sa_family == AF_INET6) return classify6(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
  return CR_ADDR_RESERVED;
}

const char *cr_addr_class_name(cr_addr_class_t c) {
  switch (c) {
    case CR_ADDR_PUBLIC:
      return "public";
    case CR_ADDR_LOOPBACK:
      return "loopback";
    case CR_ADDR_PRIVATE:
      return "private";
    case CR_ADDR_LINKLOCAL:
      return "link-local";
    case CR_ADDR_UNSPECIFIED:
      return "unspecified";
    case CR_ADDR_MULTICAST:
      return "multicast";
    case CR_ADDR_RESERVED:
      return "reserved";
  }
  return "?";
}

/* --- an address in both forms ---------------------------------------------------------------- */

/* A socket address as the matching sees it: the IPv4 form when it is IPv4 or
 * IPv4-mapped, and the IPv6 form always (an IPv4 address as ::ffff:a.b.c.d). */
typedef struct {
  int has4;
  uint8_t a4[4];
  uint8_t a6[16];
  int port;
} ipaddr_t;

static int ipaddr_from(const struct sockaddr *sa, ipaddr_t *o) {
  memset(o, 0, sizeof *o);
  if (!sa) return -1;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    o->has4 = 1;
    memcpy(o->a4, &s4->sin_addr, 4);
    o->a6[10] = o->a6[11] = 0xFF;
    memcpy(o->a6 + 12, o->a4, 4);
    o->port = ntohs(s4->sin_port);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    memcpy(o->a6, s6->sin6_addr.s6_addr, 16);
    if (is_mapped(o->a6)) {
      o->has4 = 1;
      memcpy(o->a4, o->a6 + 12, 4);
    }
    o->port = ntohs(s6->sin6_port);
    return 0;
  }
  return -1;
}

/* The bits of byte i that a prefix of bits covers. */
static uint8_t prefix_mask(int bits, size_t i) {
  int from = (int)i * 8;
  if (bits <= from) return 0;
  if (bits - from >= 8) return 0xFF;
  return (uint8_t)(0xFF << (8 - (bits - from)));
}

/* Are the first bits of a and b equal? */
static int prefix_eq(const uint8_t *a, const uint8_t *b, int bits) {
  for (size_t i = 0; (int)i * 8 < bits; i++)
    if ((a[i] ^ b[i]) & prefix_mask(bits, i)) return 0;
  return 1;
}

/* "1.2.3.4:80", "[::1]:80", or the family for anything else. */
static void format_addr(const struct sockaddr *sa, char *out, size_t outlen) {
  char ip[INET6_ADDRSTRLEN];
  if (sa && sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
    snprintf(out, outlen, "%s:%d", ip, ntohs(s4->sin_port));
  } else if (sa && sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
    snprintf(out, outlen, "[%s]:%d", ip, ntohs(s6->sin6_port));
  } else if (sa) {
    snprintf(out, outlen, "an address of family %d", (int)sa->sa_family);
  } else {
    snprintf(out, outlen, "no address");
  }
}

/* Writes a message into why, when there is one (the check parses entries
 * without wanting to know why one does not parse). */
__attribute__((format(printf, 3, 4))) static void say(char *why, size_t whylen, const char *fmt, ...) {
  if (!why || !whylen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, whylen, fmt, ap);
  va_end(ap);
}

/* --- entries ---------------------------------------------------------------------------------- */

enum { E_STAR, E_NAME, E_WILD, E_IP, E_CIDR };

typedef struct {
  int kind;
  const char *name; /* E_NAME: the name; E_WILD: the domain after "*."; no trailing dot */
  size_t namelen;
  int port; /* 0: any */
  int family;
  uint8_t addr[16];
  int prefix; /* E_IP: 32 or 128 */
} entry_t;

static int is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
static int is_name_char(char c) {
  return is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
}
static int is_digit(char c) {
  return c >= '0' && c <= '9';
}
static int is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char lower(char c) {
  return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static int ieq_n(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (lower(a[i]) != lower(b[i])) return 0;
  return 1;
}

/* Is s (n bytes) a number as the WHATWG URL parser's "ends in a number"
 * sees a label: all digits, or 0x/0X and hex digits (none included)? */
static int label_is_number(const char *s, size_t n) {
  if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    for (size_t i = 2; i < n; i++)
      if (!is_hex(s[i])) return 0;
    return 1;
  }
  for (size_t i = 0; i < n; i++)
    if (!is_digit(s[i])) return 0;
  return n > 0;
}

/* Checks the host name s (n bytes, a trailing dot allowed); *outlen is its
 * length without that dot. 0, or -1 with why (no prefix). */
static int check_name(const char *s, size_t n, size_t *outlen, char *why, size_t whylen) {
  if (n && s[n - 1] == '.') n--;
  if (n == 0) {
    say(why, whylen, "the host name is empty");
    return -1;
  }
  if (n > NAME_MAX_LEN) {
    say(why, whylen, "the host name is %zu characters long, more than %d", n, NAME_MAX_LEN);
    return -1;
  }
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != '.') {
      if (!is_name_char(s[i])) {
        if (s[i] == '*')
          say(why, whylen, "'*' may only be the whole first label ('*.example.com')");
        else if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7F)
          say(why, whylen, "byte 0x%02x is not allowed in a host name", (unsigned char)s[i]);
        else
          say(why, whylen, "'%c' is not allowed in a host name (letters, digits, '-', '_' and '.')", s[i]);
        return -1;
      }
      continue;
    }
    size_t len = i - start;
    if (len == 0) {
      say(why, whylen, "the host name has an empty label");
      return -1;
    }
    if (len > LABEL_MAX_LEN) {
      say(why, whylen, "label '%.*s...' is %zu characters long, more than %d", 16, s + start, len,
          LABEL_MAX_LEN);
      return -1;
    }
    if (s[start] == '-' || s[i - 1] == '-') {
      say(why, whylen, "label '%.*s' starts or ends with '-'", (int)len, s + start);
      return -1;
    }
    if (i == n && label_is_number(s + start, len)) {
      say(why, whylen, "not a valid IP address, and a host name's last label cannot be a number");
      return -1;
    }
    start = i + 1;
  }
  *outlen = n;
  return 0;
}

/* The port in s (n bytes): 1-65535, or -1 with why. */
static int parse_port(const char *s, size_t n, char *why, size_t whylen) {
  if (n == 0) {
    say(why, whylen, "the port after ':' is empty");
    return -1;
  }
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!is_digit(s[i])) {
      say(why, whylen, "port '%.*s' is not a number", (int)n, s);
      return -1;
    }
    if (v <= 65535) v = v * 10 + (s[i] - '0');
  }
  if (v < 1 || v > 65535) {
    say(why, whylen, "port %.*s is out of range 1-65535", (int)n, s);
    return -1;
  }
  return (int)v;
}

/* An IP address in s (n bytes) of family fam (0: either); the family, or 0. */
static int parse_ip(const char *s, size_t n, int fam, uint8_t *out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (n == 0 || n >= sizeof buf) return 0;
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (fam != AF_INET6 && inet_pton(AF_INET, buf, out) == 1) return AF_INET;
  if (fam != AF_INET && inet_pton(AF_INET6, buf, out) == 1) return AF_INET6;
  return 0;
}

/* Parses entry into e: 0, or -1 with why (no prefix). */
static int parse_entry(const char *s, entry_t *e, char *why, size_t whylen) {
  memset(e, 0, sizeof *e);
  size_t n = strlen(s);
  if (n == 0) {
    say(why, whylen, "it is empty");
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\v' || s[i] == '\f') {
      say(why, whylen, "it contains a space");
      return -1;
    }
  if (strstr(s, "://")) {
    say(why, whylen, "it is a URL: give the host name (and port) only, e.g. 'api.example.com:443'");
    return -1;
  }
  if (strcmp(s, "*") == 0) {
    e->kind = E_STAR;
    return 0;
  }
  const char *slash = strchr(s, '/');
  if (slash) {
    size_t al = (size_t)(slash - s);
    const char *bits = slash + 1;
    if (s[0] == '[') {
      say(why, whylen, "a CIDR block is written without brackets, e.g. 'fd00::/8'");
      return -1;
    }
    if (strchr(bits, ':')) {
      say(why, whylen, "a CIDR block takes no port");
      return -1;
    }
    e->family = parse_ip(s, al, 0, e->addr);
    if (!e->family) {
      say(why, whylen, "'%.*s' is not an IP address (a CIDR block is ADDRESS/BITS)", (int)al, s);
      return -1;
    }
    int max = e->family == AF_INET ? 32 : 128;
    size_t bl = strlen(bits);
    long v = 0;
    int ok = bl > 0 && bl <= 3;
    for (size_t i = 0; ok && i < bl; i++) {
      if (!is_digit(bits[i])) ok = 0;
      v = v * 10 + (bits[i] - '0');
    }
    if (!ok || v > max) {
      say(why, whylen, "the prefix length '%s' is not a number 0-%d", bits, max);
      return -1;
    }
    e->prefix = (int)v;
    size_t nb = e->family == AF_INET ? 4 : 16;
    uint8_t net[16];
    for (size_t i = 0; i < nb; i++) net[i] = e->addr[i] & prefix_mask(e->prefix, i);
    if (memcmp(net, e->addr, nb) != 0) {
      char ns[INET6_ADDRSTRLEN];
      inet_ntop(e->family, net, ns, sizeof ns);
      say(why, whylen, "bits are set after the prefix (the block is %s/%d)", ns, e->prefix);
      return -1;
    }
    e->kind = E_CIDR;
    return 0;
  }
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close) {
      say(why, whylen, "'[' without a closing ']'");
      return -1;
    }
    e->family = parse_ip(s + 1, (size_t)(close - s - 1), AF_INET6, e->addr);
    if (!e->family) {
      say(why, whylen, "'%.*s' is not an IPv6 address", (int)(close - s - 1), s + 1);
      return -1;
    }
    e->kind = E_IP;
    e->prefix = 128;
    if (close[1] == '\0') return 0;
    if (close[1] != ':') {
      say(why, whylen, "expected ':PORT' or the end after ']'");
      return -1;
    }
    const char *p = close + 2;
    if ((e->port = parse_port(p, strlen(p), why, whylen)) < 0) return -1;
    return 0;
  }
  const char *colon = strchr(s, ':');
  if (colon && strchr(colon + 1, ':')) {
    uint8_t tmp[16];
    if (parse_ip(s, n, AF_INET6, tmp))
      say(why, whylen, "an IPv6 address is written in brackets: '[%s]'", s);
    else
      say(why, whylen, "it is not a host name, a host:port or an IP address");
    return -1;
  }
  size_t hl = colon ? (size_t)(colon - s) : n;
  if (colon && (e->port = parse_port(colon + 1, strlen(colon + 1), why, whylen)) < 0) return -1;
  if (hl == 1 && s[0] == '*') {
    say(why, whylen, "'*' takes no port");
    return -1;
  }
  if ((e->family = parse_ip(s, hl, AF_INET, e->addr))) {
    e->kind = E_IP;
    e->prefix = 32;
    return 0;
  }
  const char *name = s;
  e->kind = E_NAME;
  if (hl >= 2 && s[0] == '*' && s[1] == '.') {
    name = s + 2;
    hl -= 2;
    e->kind = E_WILD;
    if (hl == 0 || (hl == 1 && name[0] == '.')) {
      say(why, whylen, "no domain after '*.'");
      return -1;
    }
  }
  if (check_name(name, hl, &e->namelen, why, whylen) < 0) return -1;
  e->name = name;
  return 0;
}

int cr_egress_entry_check(const char *entry, char *err, size_t errlen) {
  char why[160];
  entry_t e;
  if (!entry) {
    if (err && errlen) snprintf(err, errlen, "egress entry missing (NULL)");
    return -1;
  }
  if (parse_entry(entry, &e, why, sizeof why) == 0) return 0;
  if (err && errlen)
    snprintf(err, errlen, "egress entry '%.80s%s': %s", entry, strlen(entry) > 80 ? "..." : "", why);
  return -1;
}

/* Does the entry's address or block contain a? */
static int entry_contains(const entry_t *e, const ipaddr_t *a) {
  if (e->family == AF_INET) return a->has4 && prefix_eq(e->addr, a->a4, e->prefix);
  return prefix_eq(e->addr, a->a6, e->prefix);
}

/* Does the name entry match host (hl bytes, no trailing dot)? */
static int entry_matches_name(const entry_t *e, const char *host, size_t hl) {
  if (e->kind == E_NAME) return hl == e->namelen && ieq_n(host, e->name, hl);
  return hl > e->namelen + 1 && host[hl - e->namelen - 1] == '.' &&
         ieq_n(host + hl - e->namelen, e->name, e->namelen);
}

/* --- the decision ------------------------------------------------------------------------------ */

static int default_allows(cr_addr_class_t c, int allow_private) {
  return c == CR_ADDR_PUBLIC || (allow_private && (c == CR_ADDR_LOOPBACK || c == CR_ADDR_PRIVATE));
}

/* Writes "ADDR what" or "ADDR what (class)" into why; -1. */
static int refuse(char *why, size_t whylen, const struct sockaddr *addr, const char *what, const char *cls) {
  if (why && whylen) {
    char as[INET6_ADDRSTRLEN + 16];
    format_addr(addr, as, sizeof as);
    if (cls)
      say(why, whylen, "%s %s (%s)", as, what, cls);
    else
      say(why, whylen, "%s %s", as, what);
  }
  return -1;
}

int cr_egress_check(const cr_egress_policy_t *p, const char *host, const struct sockaddr *addr, char *why,
                    size_t whylen) {
  static const cr_egress_policy_t dflt = {NULL, 0, 0, NULL};
  if (!p) p = &dflt;
  cr_addr_class_t c = cr_addr_classify(addr);
  ipaddr_t a;
  if (ipaddr_from(addr, &a) < 0) return refuse(why, whylen, addr, "is not allowed", cr_addr_class_name(c));
  entry_t e;
  int n = p->entries ? (p->nentries > 0 ? p->nentries : 0) : 0;

  if (p->self && cr_egress_is_self(p->self, addr)) {
    int exempt = 0;
    for (int i = 0; i < n && !exempt; i++)
      if (p->entries[i] && parse_entry(p->entries[i], &e, NULL, 0) == 0 && e.kind == E_IP && e.port &&
          e.port == a.port && entry_contains(&e, &a))
        exempt = 1;
    if (!exempt) return refuse(why, whylen, addr, "is crescent's own listener", NULL);
  }

  if (!p->entries) {
    if (default_allows(c, p->allow_private)) return 0;
    return refuse(why, whylen, addr, "is not allowed", cr_addr_class_name(c));
  }

  size_t hl = 0;
  int have_name = 0;
  if (host) {
    size_t hn = strlen(host);
    have_name = check_name(host, hn, &hl, NULL, 0) == 0;
  }
  int class_refused = 0;
  for (int i = 0; i < n; i++) {
    if (!p->entries[i] || parse_entry(p->entries[i], &e, NULL, 0) < 0) continue;
    int match, ok;
    switch (e.kind) {
      case E_STAR:
        match = 1;
        ok = default_allows(c, p->allow_private);
        break;
      case E_NAME:
      case E_WILD:
        match = have_name && (!e.port || e.port == a.port) && entry_matches_name(&e, host, hl);
        ok = c != CR_ADDR_LINKLOCAL && c != CR_ADDR_UNSPECIFIED && c != CR_ADDR_MULTICAST &&
             c != CR_ADDR_RESERVED;
        break;
      default:
        match = (!e.port || e.port == a.port) && entry_contains(&e, &a);
        ok = c != CR_ADDR_UNSPECIFIED && c != CR_ADDR_MULTICAST;
        break;
    }
    if (!match) continue;
    if (ok) return 0;
    class_refused = 1;
  }
  if (class_refused) return refuse(why, whylen, addr, "is not allowed", cr_addr_class_name(c));
  return refuse(why, whylen, addr, "is not in the function's egress list", NULL);
}

/* --- own listener ------------------------------------------------------------------------------ */

typedef struct {
  int family; /* AF_INET (a4 used) or AF_INET6 (a6) */
  uint8_t a[16];
} self_addr_t;

struct cr_egress_self_s {
  int port;
  int wildcard;
  size_t n;
  self_addr_t addrs[]; /* the concrete address, or the interfaces' */
};

/* addr as an ipaddr_t's form: IPv4 (mapped included) as AF_INET. */
static void self_addr_set(self_addr_t *o, int family, const void *bytes) {
  memset(o, 0, sizeof *o);
  if (family == AF_INET6 && is_mapped(bytes)) {
    o->family = AF_INET;
    memcpy(o->a, (const uint8_t *)bytes + 12, 4);
  } else {
    o->family = family;
    memcpy(o->a, bytes, family == AF_INET ? 4 : 16);
  }
}

cr_egress_self_t *cr_egress_self_new(const char *listen_host, int port) {
  char h[INET6_ADDRSTRLEN + 2];
  uint8_t bytes[16];
  int family = 0;
  if (listen_host) {
    size_t n = strlen(listen_host);
    if (n >= 2 && listen_host[0] == '[' && listen_host[n - 1] == ']') {
      listen_host++;
      n -= 2;
    }
    if (n < sizeof h) {
      memcpy(h, listen_host, n);
      h[n] = '\0';
      if (strcmp(h, "localhost") == 0) {
        family = AF_INET;
        bytes[0] = 127, bytes[1] = 0, bytes[2] = 0, bytes[3] = 1;
      } else if (inet_pton(AF_INET, h, bytes) == 1) {
        family = AF_INET;
      } else if (inet_pton(AF_INET6, h, bytes) == 1) {
        family = AF_INET6;
      }
    }
  }
  if (family && !all_zero(bytes, family == AF_INET ? 4 : 16)) {
    cr_egress_self_t *s = malloc(sizeof *s + sizeof(self_addr_t));
    if (!s) return NULL;
    s->port = port;
    s->wildcard = 0;
    s->n = 1;
    self_addr_set(&s->addrs[0], family, bytes);
    return s;
  }
  /* A wildcard (or not an address): every local address. */
  struct ifaddrs *ifs = NULL;
  size_t count = 0;
  if (getifaddrs(&ifs) == 0)
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
      if (i->ifa_addr && (i->ifa_addr->sa_family == AF_INET || i->ifa_addr->sa_family == AF_INET6)) count++;
  cr_egress_self_t *s = malloc(sizeof *s + count * sizeof(self_addr_t));
  if (!s) {
    if (ifs) freeifaddrs(ifs);
    return NULL;
  }
  s->port = port;
  s->wildcard = 1;
  s->n = 0;
  for (struct ifaddrs *i = ifs; i && s->n < count; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    if (i->ifa_addr->sa_family == AF_INET)
      self_addr_set(&s->addrs[s->n++], AF_INET, &((const struct sockaddr_in *)i->ifa_addr)->sin_addr);
    else if (i->ifa_addr->sa_family == AF_INET6)
      self_addr_set(&s->addrs[s->n++], AF_INET6,
                    ((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr.s6_addr);
  }
  if (ifs) freeifaddrs(ifs);
  return s;
}

void cr_egress_self_free(cr_egress_self_t *s) {
  free(s);
}

int cr_egress_is_self(const cr_egress_self_t *s, const struct sockaddr *addr) {
  ipaddr_t a;
  if (!s || ipaddr_from(addr, &a) < 0 || a.port != s->port) return 0;
  const uint8_t *bytes = a.has4 ? a.a4 : a.a6;
  size_t len = a.has4 ? 4 : 16;
  int family = a.has4 ? AF_INET : AF_INET6;
  if (all_zero(bytes, len)) return 1; /* 0.0.0.0, ::: the local host */
  if (s->wildcard) {
    if (a.has4 ? bytes[0] == 127 : (all_zero(bytes, 15) && bytes[15] == 1)) return 1;
  }
  for (size_t i = 0; i < s->n; i++)
    if (s->addrs[i].family == family && memcmp(s->addrs[i].a, bytes, len) == 0) return 1;
  return 0;
}
