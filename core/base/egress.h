/* egress.h - the outbound-HTTP egress policy (crescent.http, against SSRF).
 *
 * The HTTP client asks cr_egress_check before every connection it makes,
 * redirect hops included, with the address it resolved and is about to
 * connect to: the decision is on that address (so a name that resolves to
 * a public address when checked and to 127.0.0.1 when connected, DNS
 * rebinding, gains nothing) and on the host as written in the URL.
 *
 * Address classes (cr_addr_classify; everything not listed is public):
 *   IPv4  0.0.0.0/8 unspecified (a connection to 0.0.0.0 reaches the local
 *           host on Linux); 127.0.0.0/8 loopback; 10.0.0.0/8, 172.16.0.0/12,
 *           192.168.0.0/16, 100.64.0.0/10 (CGNAT), 198.18.0.0/15 private;
 *           169.254.0.0/16 link-local (169.254.169.254 is the cloud metadata
 *           service); 224.0.0.0/4 multicast; 240.0.0.0/4 (255.255.255.255
 *           included), 192.0.0.0/24, 192.0.2.0/24, 198.51.100.0/24,
 *           203.0.113.0/24 reserved (future use, IETF, documentation).
 *   IPv6  ::/128 unspecified; ::1/128 loopback; fe80::/10 link-local;
 *           fc00::/7 (ULA), fec0::/10 (site-local) and 64:ff9b:1::/48 (local-use
 *           NAT64, RFC 8215: a site's own translator) private; ff00::/8
 *           multicast; 2001:db8::/32 reserved (documentation). Addresses
 *           that embed an IPv4 address take that address's class:
 *           IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d (the
 *           first 96 bits zero, other than :: and ::1), NAT64 64:ff9b::/96
 *           (the last 32 bits) and 6to4 2002:AABB:CCDD::/48 (bits 16-47).
 *           So ::ffff:127.0.0.1, ::127.0.0.1, 64:ff9b::7f00:1 and
 *           2002:7f00:1:: are loopback.
 *   Any other family (or NULL) is reserved.
 *
 * Egress entries (cr_egress_entry_check), a function's `egress = { ... }`:
 *   "*"                  any host at a public address (as the default, below)
 *   "api.example.com"    that host name, any port; "api.example.com:443" that
 *                        host and port
 *   "*.stripe.com"       any name one or more labels below stripe.com
 *                        (a.stripe.com, a.b.stripe.com), not stripe.com itself
 *                        nor evilstripe.com; may take a port ("*.x.com:443")
 *   "127.0.0.1", "127.0.0.1:9000", "[::1]", "[::1]:9000"
 *                        an IP literal, any port or that port (IPv6 in brackets)
 *   "10.0.0.0/8", "fd00::/8"
 *                        a CIDR block (IPv6 without brackets), no port; the
 *                        bits after the prefix must be zero
 *   Host names: 1-253 characters (a trailing dot not counted, and ignored),
 *   labels of 1-63 letters, digits, '-' and '_', not starting or ending with
 *   '-'; compared case-insensitively. A name whose last label is a number
 *   (all digits, or 0x and hex digits: "1.2.3", "1.2.3.4.5", "0x7f") is
 *   refused: a URL parser reads those as IPv4 addresses. Ports are decimal,
 *   1-65535. Refused too: an empty entry, spaces, URLs ("http://x"), '*'
 *   anywhere but as the whole first label of a name, "*" with a port, an
 *   IPv6 address without brackets, a port on a CIDR block.
 *
 * The decision (cr_egress_check), with addr's class C and port P:
 *  1. addr is crescent's own listener (cr_egress_is_self): refused ("... is
 *     crescent's own listener") unless an IP-literal entry with a port names
 *     exactly that address and port (then 2/3 still apply).
 *  2. No entries (entries NULL, the default policy): allowed iff C is public,
 *     or allow_private is set and C is loopback or private.
 *  3. Entries: allowed iff one entry allows it:
 *     - "*" as in 2;
 *     - a name entry whose name (or wildcard) matches host (host itself a
 *       valid name as above, so an IP-literal host never matches a name),
 *       and whose port, if it has one, is P: C may be anything but
 *       link-local, unspecified, multicast and reserved (a listed name is
 *       trusted with what it resolves to, loopback and private included;
 *       the metadata service needs an IP literal);
 *     - an IP-literal or CIDR entry containing addr, with the port if it
 *       has one: C may be anything but unspecified and multicast.
 *     An empty list (nentries 0, or below) allows nothing. An entry that does not
 *     parse matches nothing (settings are checked when a function loads).
 *     IPv4-mapped addresses are the same host as their IPv4 address: an
 *     IPv4 entry contains ::ffff:a.b.c.d when it contains a.b.c.d, an IPv6
 *     entry contains a.b.c.d when it contains ::ffff:a.b.c.d.
 *  Refusals say why: "127.0.0.1:9000 is not allowed (loopback)" when the
 *  default, "*" or a matching entry refused the class; "10.1.2.3:80 is not
 *  in the function's egress list" when no entry matched; IPv6 addresses are
 *  written "[::1]:80".
 *
 * Own listener (cr_egress_self_new): a concrete listen host (an IPv4 or IPv6
 * address, or "localhost" = 127.0.0.1, as config.c accepts) is that address
 * on that port; a wildcard ("0.0.0.0", "::", "", NULL, or anything that is
 * not an address: erring on the side of refusing) is every local address on
 * that port: any loopback address (127.0.0.0/8, ::1) and the addresses of
 * the interfaces when the listener was made (getifaddrs, a snapshot). Either
 * way, an unspecified address (0.0.0.0, ::) on that port is self too: a
 * connection to it reaches the local host. IPv4-mapped addresses are
 * compared as their IPv4 address; a wildcard of either family covers both.
 *
 * cr_egress_check allocates nothing and parses the entries on each call (they
 * are few and short); it is safe from any thread while the self it is given
 * lives. */
#ifndef CR_EGRESS_H
#define CR_EGRESS_H

#include <stddef.h>
#include <sys/socket.h>

typedef enum {
  CR_ADDR_PUBLIC = 0,
  CR_ADDR_LOOPBACK,
  CR_ADDR_PRIVATE,
  CR_ADDR_LINKLOCAL,
  CR_ADDR_UNSPECIFIED,
  CR_ADDR_MULTICAST,
  CR_ADDR_RESERVED
} cr_addr_class_t;

/* The class of an AF_INET / AF_INET6 address; other families and NULL:
 * CR_ADDR_RESERVED. */
cr_addr_class_t cr_addr_classify(const struct sockaddr *sa);
/* "public", "loopback", "private", "link-local", "unspecified", "multicast",
 * "reserved" ("?" for a value outside the enum). */
const char *cr_addr_class_name(cr_addr_class_t c);

/* Whether entry is a valid egress entry: 0, or -1 with a message in err
 * naming the entry and the problem ("egress entry 'host:0': port 0 is out of
 * range 1-65535"). */
int cr_egress_entry_check(const char *entry, char *err, size_t errlen);

typedef struct cr_egress_self_s cr_egress_self_t;

typedef struct {
  const char *const *entries; /* a function's egress setting; NULL: it has none (the default policy) */
  int nentries;
  int allow_private;                   /* server flag for local development: the default ("*") also allows
                                          loopback and private addresses */
  const struct cr_egress_self_s *self; /* crescent's own listener(s), may be NULL */
} cr_egress_policy_t;

/* May a connection to addr (the resolved address, its port inside it) be
 * made for a URL whose host is host (as written in the URL, without
 * brackets: a name or an IP literal; NULL: no name)? 0: allowed; otherwise
 * -1 with why written (why may be NULL). p NULL is the default policy. */
int cr_egress_check(const cr_egress_policy_t *p, const char *host, const struct sockaddr *addr, char *why,
                    size_t whylen);

/* crescent's own listener at listen_host:port (config.h's listen_host and
 * listen_port). Snapshots the interface addresses when the host is a
 * wildcard. NULL only when out of memory. */
cr_egress_self_t *cr_egress_self_new(const char *listen_host, int port);
void cr_egress_self_free(cr_egress_self_t *s);
/* Whether a connection to addr would reach that listener (1) or not (0). */
int cr_egress_is_self(const cr_egress_self_t *s, const struct sockaddr *addr);

#endif
