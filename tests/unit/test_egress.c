/* test_egress.c - the egress policy (core/base/egress.c): address classes at
 * every boundary, entry syntax, matching and the decision, own listener. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "egress.h"

/* A socket address from an IP literal (either family) and a port. */
static struct sockaddr_storage sa(const char *ip, int port) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
  } else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
  } else {
    fail_msg("test bug: '%s' is not an IP address", ip);
  }
  return ss;
}

/* The same as a struct sockaddr pointer, into one of 8 buffers used in turn
 * (a call uses at most two at once). */
static const struct sockaddr *SA(const char *ip, int port) {
  static struct sockaddr_storage ring[8];
  static unsigned next;
  struct sockaddr_storage *o = &ring[next++ % 8];
  *o = sa(ip, port);
  return (const struct sockaddr *)o;
}

static void expect_class(const char *ip, cr_addr_class_t want) {
  cr_addr_class_t got = cr_addr_classify(SA(ip, 80));
  if (got != want)
    fail_msg("%s classified %s, want %s", ip, cr_addr_class_name(got), cr_addr_class_name(want));
}

static void test_class_names(void **state) {
  (void)state;
  assert_string_equal(cr_addr_class_name(CR_ADDR_PUBLIC), "public");
  assert_string_equal(cr_addr_class_name(CR_ADDR_LOOPBACK), "loopback");
  assert_string_equal(cr_addr_class_name(CR_ADDR_PRIVATE), "private");
  assert_string_equal(cr_addr_class_name(CR_ADDR_LINKLOCAL), "link-local");
  assert_string_equal(cr_addr_class_name(CR_ADDR_UNSPECIFIED), "unspecified");
  assert_string_equal(cr_addr_class_name(CR_ADDR_MULTICAST), "multicast");
  assert_string_equal(cr_addr_class_name(CR_ADDR_RESERVED), "reserved");
  assert_string_equal(cr_addr_class_name((cr_addr_class_t)99), "?");
}

/* Each block: the address before it, its first, its last, the one after. */
static void test_classify_v4_boundaries(void **state) {
  (void)state;
  expect_class("0.0.0.0", CR_ADDR_UNSPECIFIED);
  expect_class("0.255.255.255", CR_ADDR_UNSPECIFIED);
  expect_class("1.0.0.0", CR_ADDR_PUBLIC);
  expect_class("9.255.255.255", CR_ADDR_PUBLIC);
  expect_class("10.0.0.0", CR_ADDR_PRIVATE);
  expect_class("10.255.255.255", CR_ADDR_PRIVATE);
  expect_class("11.0.0.0", CR_ADDR_PUBLIC);
  expect_class("100.63.255.255", CR_ADDR_PUBLIC);
  expect_class("100.64.0.0", CR_ADDR_PRIVATE);
  expect_class("100.127.255.255", CR_ADDR_PRIVATE);
  expect_class("100.128.0.0", CR_ADDR_PUBLIC);
  expect_class("126.255.255.255", CR_ADDR_PUBLIC);
  expect_class("127.0.0.0", CR_ADDR_LOOPBACK);
  expect_class("127.0.0.1", CR_ADDR_LOOPBACK);
  expect_class("127.255.255.255", CR_ADDR_LOOPBACK);
  expect_class("128.0.0.0", CR_ADDR_PUBLIC);
  expect_class("169.253.255.255", CR_ADDR_PUBLIC);
  expect_class("169.254.0.0", CR_ADDR_LINKLOCAL);
  expect_class("169.254.169.254", CR_ADDR_LINKLOCAL);
  expect_class("169.254.255.255", CR_ADDR_LINKLOCAL);
  expect_class("169.255.0.0", CR_ADDR_PUBLIC);
  expect_class("172.15.255.255", CR_ADDR_PUBLIC);
  expect_class("172.16.0.0", CR_ADDR_PRIVATE);
  expect_class("172.31.255.255", CR_ADDR_PRIVATE);
  expect_class("172.32.0.0", CR_ADDR_PUBLIC);
  expect_class("191.255.255.255", CR_ADDR_PUBLIC);
  expect_class("192.0.0.0", CR_ADDR_RESERVED);
  expect_class("192.0.0.255", CR_ADDR_RESERVED);
  expect_class("192.0.1.0", CR_ADDR_PUBLIC);
  expect_class("192.0.1.255", CR_ADDR_PUBLIC);
  expect_class("192.0.2.0", CR_ADDR_RESERVED);
  expect_class("192.0.2.255", CR_ADDR_RESERVED);
  expect_class("192.0.3.0", CR_ADDR_PUBLIC);
  expect_class("192.167.255.255", CR_ADDR_PUBLIC);
  expect_class("192.168.0.0", CR_ADDR_PRIVATE);
  expect_class("192.168.255.255", CR_ADDR_PRIVATE);
  expect_class("192.169.0.0", CR_ADDR_PUBLIC);
  expect_class("198.17.255.255", CR_ADDR_PUBLIC);
  expect_class("198.18.0.0", CR_ADDR_PRIVATE);
  expect_class("198.19.255.255", CR_ADDR_PRIVATE);
  expect_class("198.20.0.0", CR_ADDR_PUBLIC);
  expect_class("198.51.99.255", CR_ADDR_PUBLIC);
  expect_class("198.51.100.0", CR_ADDR_RESERVED);
  expect_class("198.51.100.255", CR_ADDR_RESERVED);
  expect_class("198.51.101.0", CR_ADDR_PUBLIC);
  expect_class("203.0.112.255", CR_ADDR_PUBLIC);
  expect_class("203.0.113.0", CR_ADDR_RESERVED);
  expect_class("203.0.113.255", CR_ADDR_RESERVED);
  expect_class("203.0.114.0", CR_ADDR_PUBLIC);
  expect_class("223.255.255.255", CR_ADDR_PUBLIC);
  expect_class("224.0.0.0", CR_ADDR_MULTICAST);
  expect_class("239.255.255.255", CR_ADDR_MULTICAST);
  expect_class("240.0.0.0", CR_ADDR_RESERVED);
  expect_class("255.255.255.254", CR_ADDR_RESERVED);
  expect_class("255.255.255.255", CR_ADDR_RESERVED);
  expect_class("8.8.8.8", CR_ADDR_PUBLIC);
  expect_class("1.1.1.1", CR_ADDR_PUBLIC);
}

static void test_classify_v6_boundaries(void **state) {
  (void)state;
  expect_class("::", CR_ADDR_UNSPECIFIED);
  expect_class("::1", CR_ADDR_LOOPBACK);
  expect_class("2606:4700::1111", CR_ADDR_PUBLIC);
  expect_class("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CR_ADDR_PUBLIC);
  expect_class("fc00::", CR_ADDR_PRIVATE);
  expect_class("fd00::1", CR_ADDR_PRIVATE);
  expect_class("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CR_ADDR_PRIVATE);
  expect_class("fe00::", CR_ADDR_PUBLIC);
  expect_class("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CR_ADDR_PUBLIC);
  expect_class("fe80::", CR_ADDR_LINKLOCAL);
  expect_class("fe80::1", CR_ADDR_LINKLOCAL);
  expect_class("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CR_ADDR_LINKLOCAL);
  expect_class("fec0::", CR_ADDR_PRIVATE);
  expect_class("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CR_ADDR_PRIVATE);
  expect_class("ff00::", CR_ADDR_MULTICAST);
  expect_class("ff02::1", CR_ADDR_MULTICAST);
  expect_class("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CR_ADDR_MULTICAST);
  expect_class("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", CR_ADDR_PUBLIC);
  expect_class("2001:db8::", CR_ADDR_RESERVED);
  expect_class("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", CR_ADDR_RESERVED);
  expect_class("2001:db9::", CR_ADDR_PUBLIC);
  expect_class("64:ff9b:1::", CR_ADDR_PRIVATE); /* local-use NAT64 */
  expect_class("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", CR_ADDR_PRIVATE);
  expect_class("64:ff9b:2::", CR_ADDR_PUBLIC);
  expect_class("64:ff9b:0:0:0:1::", CR_ADDR_PUBLIC); /* not the /96: no embedding */
}

static void test_classify_v6_embedded_v4(void **state) {
  (void)state;
  /* IPv4-mapped */
  expect_class("::ffff:127.0.0.1", CR_ADDR_LOOPBACK);
  expect_class("::ffff:10.0.0.1", CR_ADDR_PRIVATE);
  expect_class("::ffff:172.32.0.0", CR_ADDR_PUBLIC);
  expect_class("::ffff:169.254.169.254", CR_ADDR_LINKLOCAL);
  expect_class("::ffff:0.0.0.0", CR_ADDR_UNSPECIFIED);
  expect_class("::ffff:224.0.0.1", CR_ADDR_MULTICAST);
  expect_class("::ffff:192.0.2.1", CR_ADDR_RESERVED);
  expect_class("::ffff:8.8.8.8", CR_ADDR_PUBLIC);
  /* IPv4-compatible */
  expect_class("::127.0.0.1", CR_ADDR_LOOPBACK);
  expect_class("::10.1.2.3", CR_ADDR_PRIVATE);
  expect_class("::169.254.169.254", CR_ADDR_LINKLOCAL);
  expect_class("::8.8.8.8", CR_ADDR_PUBLIC);
  expect_class("::2", CR_ADDR_UNSPECIFIED); /* 0.0.0.2 */
  /* NAT64 64:ff9b::/96 */
  expect_class("64:ff9b::7f00:1", CR_ADDR_LOOPBACK);
  expect_class("64:ff9b::127.0.0.1", CR_ADDR_LOOPBACK);
  expect_class("64:ff9b::a9fe:a9fe", CR_ADDR_LINKLOCAL);
  expect_class("64:ff9b::c0a8:101", CR_ADDR_PRIVATE);
  expect_class("64:ff9b::808:808", CR_ADDR_PUBLIC);
  /* 6to4 2002:AABB:CCDD::/48 */
  expect_class("2002:7f00:1::", CR_ADDR_LOOPBACK);
  expect_class("2002:7f00:1:ffff:ffff:ffff:ffff:ffff", CR_ADDR_LOOPBACK);
  expect_class("2002:a9fe:a9fe::1", CR_ADDR_LINKLOCAL);
  expect_class("2002:ac10::", CR_ADDR_PRIVATE);
  expect_class("2002:ac20::", CR_ADDR_PUBLIC);
  expect_class("2002:808:808::1", CR_ADDR_PUBLIC);
  expect_class("2002::", CR_ADDR_UNSPECIFIED);
}

static void test_classify_other_families(void **state) {
  (void)state;
  struct sockaddr_un un;
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  assert_int_equal(cr_addr_classify((const struct sockaddr *)&un), CR_ADDR_RESERVED);
  assert_int_equal(cr_addr_classify(NULL), CR_ADDR_RESERVED);
}

/* --- entries -------------------------------------------------------------------------------------- */

static void expect_valid(const char *entry) {
  char err[256] = "";
  if (cr_egress_entry_check(entry, err, sizeof err) != 0) fail_msg("'%s' refused: %s", entry, err);
}

static void expect_invalid(const char *entry, const char *want) {
  char err[256] = "";
  if (cr_egress_entry_check(entry, err, sizeof err) != -1) fail_msg("'%s' accepted", entry);
  if (want && strcmp(err, want) != 0) fail_msg("'%s': message\n  %s\nwant\n  %s", entry, err, want);
}

static void test_entries_valid(void **state) {
  (void)state;
  expect_valid("*");
  expect_valid("api.example.com");
  expect_valid("api.example.com:443");
  expect_valid("API.Example.COM");
  expect_valid("api.example.com.");
  expect_valid("api.example.com.:8443");
  expect_valid("localhost");
  expect_valid("redis:6379");
  expect_valid("my_service-1.internal");
  expect_valid("*.stripe.com");
  expect_valid("*.stripe.com:443");
  expect_valid("*.com");
  expect_valid("127.0.0.1");
  expect_valid("127.0.0.1:9000");
  expect_valid("169.254.169.254:80");
  expect_valid("[::1]");
  expect_valid("[::1]:9000");
  expect_valid("[fd00::1]:1");
  expect_valid("[::ffff:10.0.0.1]:65535");
  expect_valid("10.0.0.0/8");
  expect_valid("0.0.0.0/0");
  expect_valid("10.1.2.3/32");
  expect_valid("172.16.0.0/12");
  expect_valid("fd00::/8");
  expect_valid("::/0");
  expect_valid("::1/128");
  expect_valid("2001:db8::/32");
  expect_valid("1a.example.com"); /* a label may start with a digit */
  expect_valid("x.0y");           /* a last label that is not a number */
  /* Exactly the limits: a 63-character label, a 253-character name. */
  char label[64];
  memset(label, 'a', 63);
  label[63] = '\0';
  expect_valid(label);
  char name[300];
  /* 3 labels of 63 + 1 of 61 and 3 dots = 253 */
  memset(name, 'b', 253);
  name[63] = name[127] = name[191] = '.';
  name[253] = '\0';
  expect_valid(name);
  name[253] = '.'; /* a trailing dot is not counted */
  name[254] = '\0';
  expect_valid(name);
}

static void test_entries_invalid(void **state) {
  (void)state;
  expect_invalid(NULL, "egress entry missing (NULL)");
  expect_invalid("", "egress entry '': it is empty");
  expect_invalid("*.", "egress entry '*.': no domain after '*.'");
  expect_invalid("*..", "egress entry '*..': no domain after '*.'");
  expect_invalid("*...", "egress entry '*...': the host name has an empty label");
  expect_invalid("a..b", "egress entry 'a..b': the host name has an empty label");
  expect_invalid(".a", "egress entry '.a': the host name has an empty label");
  expect_invalid(".", "egress entry '.': the host name is empty");
  expect_invalid("host:0", "egress entry 'host:0': port 0 is out of range 1-65535");
  expect_invalid("host:65536", "egress entry 'host:65536': port 65536 is out of range 1-65535");
  expect_invalid("host:99999999999999999999", NULL);
  expect_invalid("host:", "egress entry 'host:': the port after ':' is empty");
  expect_invalid("host:80a", "egress entry 'host:80a': port '80a' is not a number");
  expect_invalid("host:-1", "egress entry 'host:-1': port '-1' is not a number");
  expect_invalid("host:+80", NULL);
  expect_invalid("1.2.3.4/33", "egress entry '1.2.3.4/33': the prefix length '33' is not a number 0-32");
  expect_invalid("fd00::/129", "egress entry 'fd00::/129': the prefix length '129' is not a number 0-128");
  expect_invalid("10.0.0.0/", NULL);
  expect_invalid("10.0.0.0/x", NULL);
  expect_invalid("10.0.0.0/-1", NULL);
  expect_invalid("10.0.0.0/8:80", "egress entry '10.0.0.0/8:80': a CIDR block takes no port");
  expect_invalid("10.1.0.0/8",
                 "egress entry '10.1.0.0/8': bits are set after the prefix (the block is 10.0.0.0/8)");
  expect_invalid("fd00::1/8",
                 "egress entry 'fd00::1/8': bits are set after the prefix (the block is fd00::/8)");
  expect_invalid("[fd00::]/8",
                 "egress entry '[fd00::]/8': a CIDR block is written without brackets, e.g. 'fd00::/8'");
  expect_invalid("example.com/8", NULL);
  expect_invalid(
      "http://x",
      "egress entry 'http://x': it is a URL: give the host name (and port) only, e.g. 'api.example.com:443'");
  expect_invalid("https://api.example.com/v1", NULL);
  expect_invalid("x/y", NULL);
  expect_invalid(" api.example.com", "egress entry ' api.example.com': it contains a space");
  expect_invalid("api.example.com ", "egress entry 'api.example.com ': it contains a space");
  expect_invalid("a b", NULL);
  expect_invalid("a\tb", NULL);
  expect_invalid("*:443", "egress entry '*:443': '*' takes no port");
  expect_invalid("**.x.com", NULL);
  expect_invalid("a.*.com",
                 "egress entry 'a.*.com': '*' may only be the whole first label ('*.example.com')");
  expect_invalid("*x.com", NULL);
  expect_invalid("*.*.com", NULL);
  expect_invalid("::1", "egress entry '::1': an IPv6 address is written in brackets: '[::1]'");
  expect_invalid("fd00::1:8080", NULL);
  expect_invalid("[::1", "egress entry '[::1': '[' without a closing ']'");
  expect_invalid("[::1]:", NULL);
  expect_invalid("[::1]:0", NULL);
  expect_invalid("[::1]x", NULL);
  expect_invalid("[1.2.3.4]", NULL);
  expect_invalid("[example.com]", NULL);
  expect_invalid("a:b:c", NULL);
  expect_invalid("-a.com", "egress entry '-a.com': label '-a' starts or ends with '-'");
  expect_invalid("a-.com", NULL);
  expect_invalid("a.com:80:80", NULL);
  expect_invalid("exa!mple.com", NULL);
  expect_invalid("ex\xc3\xa4mple.com", NULL); /* not ASCII: IDNs are given as xn-- */
  /* Looks like an IP address, is not one (URL parsers read these as IPv4). */
  expect_invalid("1.2.3.4.5", NULL);
  expect_invalid("256.1.1.1", NULL);
  expect_invalid("1.2.3", NULL);
  expect_invalid("0x7f000001", NULL);
  expect_invalid("127.1", NULL);
  expect_invalid("01.2.3.4", NULL);
  /* Over-long labels and names. */
  char label[65];
  memset(label, 'a', 64);
  label[64] = '\0';
  expect_invalid(label, NULL);
  char name[300];
  memset(name, 'b', 254); /* 254 characters: 3 labels of 63 and one of 62 */
  name[63] = name[127] = name[191] = '.';
  name[254] = '\0';
  expect_invalid(
      name,
      "egress entry 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.bbbbbbbbbbbbbbbb...': "
      "the host name is 254 characters long, more than 253");
  /* err may be NULL. */
  assert_int_equal(cr_egress_entry_check("", NULL, 0), -1);
  assert_int_equal(cr_egress_entry_check("*", NULL, 0), 0);
}

/* --- the decision ---------------------------------------------------------------------------------- */

static void expect_ok(const cr_egress_policy_t *p, const char *host, const char *ip, int port) {
  char why[256] = "";
  if (cr_egress_check(p, host, SA(ip, port), why, sizeof why) != 0)
    fail_msg("host %s at %s port %d refused: %s", host ? host : "(none)", ip, port, why);
}

static void expect_no(const cr_egress_policy_t *p, const char *host, const char *ip, int port,
                      const char *want) {
  char why[256] = "";
  if (cr_egress_check(p, host, SA(ip, port), why, sizeof why) != -1)
    fail_msg("host %s at %s port %d allowed", host ? host : "(none)", ip, port);
  if (want && strcmp(why, want) != 0) fail_msg("host %s at %s: why\n  %s\nwant\n  %s", host, ip, why, want);
}

#define POLICY(name, ...)                              \
  static const char *const name##_e[] = {__VA_ARGS__}; \
  cr_egress_policy_t name = {name##_e, (int)(sizeof name##_e / sizeof name##_e[0]), 0, NULL}

static void test_default_policy(void **state) {
  (void)state;
  cr_egress_policy_t d = {NULL, 0, 0, NULL};
  expect_ok(&d, "example.com", "93.184.216.34", 443);
  expect_ok(&d, "v6.example.com", "2606:4700::1111", 443);
  expect_no(&d, "localhost", "127.0.0.1", 9000, "127.0.0.1:9000 is not allowed (loopback)");
  expect_no(&d, "x", "::1", 80, "[::1]:80 is not allowed (loopback)");
  expect_no(&d, "x", "::ffff:127.0.0.1", 80, "[::ffff:127.0.0.1]:80 is not allowed (loopback)");
  expect_no(&d, "x", "2002:7f00:1::", 80, "[2002:7f00:1::]:80 is not allowed (loopback)");
  expect_no(&d, "x", "10.1.2.3", 80, "10.1.2.3:80 is not allowed (private)");
  expect_no(&d, "169.254.169.254", "169.254.169.254", 80, "169.254.169.254:80 is not allowed (link-local)");
  expect_no(&d, "x", "0.0.0.0", 80, "0.0.0.0:80 is not allowed (unspecified)");
  expect_no(&d, "x", "224.0.0.1", 80, "224.0.0.1:80 is not allowed (multicast)");
  expect_no(&d, "x", "192.0.2.1", 80, "192.0.2.1:80 is not allowed (reserved)");
  /* p NULL is the default policy; why may be NULL. */
  assert_int_equal(cr_egress_check(NULL, "x", SA("8.8.8.8", 53), NULL, 0), 0);
  assert_int_equal(cr_egress_check(NULL, "x", SA("127.0.0.1", 53), NULL, 0), -1);
  /* Not an IP family. */
  struct sockaddr_un un;
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  char why[128];
  assert_int_equal(cr_egress_check(&d, "x", (const struct sockaddr *)&un, why, sizeof why), -1);
  assert_string_equal(why, "an address of family 1 is not allowed (reserved)");
  assert_int_equal(cr_egress_check(&d, "x", NULL, why, sizeof why), -1);
  assert_string_equal(why, "no address is not allowed (reserved)");

  /* allow_private: loopback and private too, never link-local and the rest. */
  cr_egress_policy_t dev = {NULL, 0, 1, NULL};
  expect_ok(&dev, "localhost", "127.0.0.1", 9000);
  expect_ok(&dev, "x", "::1", 9000);
  expect_ok(&dev, "x", "10.1.2.3", 80);
  expect_ok(&dev, "x", "fd00::1", 80);
  expect_ok(&dev, "x", "8.8.8.8", 80);
  expect_no(&dev, "x", "169.254.169.254", 80, "169.254.169.254:80 is not allowed (link-local)");
  expect_no(&dev, "x", "fe80::1", 80, "[fe80::1]:80 is not allowed (link-local)");
  expect_no(&dev, "x", "0.0.0.0", 80, "0.0.0.0:80 is not allowed (unspecified)");
  expect_no(&dev, "x", "ff02::1", 80, "[ff02::1]:80 is not allowed (multicast)");
  expect_no(&dev, "x", "240.0.0.1", 80, "240.0.0.1:80 is not allowed (reserved)");
}

static void test_star_entry(void **state) {
  (void)state;
  POLICY(p, "*");
  expect_ok(&p, "example.com", "93.184.216.34", 80);
  expect_no(&p, "x", "127.0.0.1", 80, "127.0.0.1:80 is not allowed (loopback)");
  expect_no(&p, "x", "172.16.0.1", 80, "172.16.0.1:80 is not allowed (private)");
  p.allow_private = 1;
  expect_ok(&p, "x", "127.0.0.1", 80);
  expect_ok(&p, "x", "172.16.0.1", 80);
  expect_no(&p, "x", "169.254.169.254", 80, "169.254.169.254:80 is not allowed (link-local)");
}

static void test_empty_list(void **state) {
  (void)state;
  cr_egress_policy_t p = {(const char *const[]){"unused"}, 0, 0, NULL};
  expect_no(&p, "example.com", "93.184.216.34", 80, "93.184.216.34:80 is not in the function's egress list");
  p.allow_private = 1;
  expect_no(&p, "x", "10.1.2.3", 80, "10.1.2.3:80 is not in the function's egress list");
}

static void test_name_entries(void **state) {
  (void)state;
  POLICY(p, "api.example.com", "pay.example.com:443");
  expect_ok(&p, "api.example.com", "93.184.216.34", 80);
  expect_ok(&p, "api.example.com", "93.184.216.34", 8443);
  expect_ok(&p, "pay.example.com", "93.184.216.34", 443);
  expect_no(&p, "pay.example.com", "93.184.216.34", 80,
            "93.184.216.34:80 is not in the function's egress list");
  expect_no(&p, "example.com", "93.184.216.34", 80, "93.184.216.34:80 is not in the function's egress list");
  expect_no(&p, "x.api.example.com", "93.184.216.34", 80, NULL);
  expect_no(&p, "api.example.co", "93.184.216.34", 80, NULL);
  expect_no(&p, "api.example.comm", "93.184.216.34", 80, NULL);
  expect_no(&p, NULL, "93.184.216.34", 80, NULL);
  expect_no(&p, "93.184.216.34", "93.184.216.34", 80, NULL);
  /* Case and trailing dots, on either side. */
  expect_ok(&p, "API.Example.Com", "93.184.216.34", 80);
  expect_ok(&p, "api.example.com.", "93.184.216.34", 80);
  POLICY(q, "Api.EXAMPLE.com.");
  expect_ok(&q, "api.example.com", "93.184.216.34", 80);
  expect_ok(&q, "api.example.com.", "93.184.216.34", 80);
  expect_no(&q, "api.example.com..", "93.184.216.34", 80, NULL);
  /* A listed name is trusted with loopback and private, not with the rest. */
  POLICY(r, "internal.corp", "localhost:9000");
  expect_ok(&r, "internal.corp", "10.1.2.3", 80);
  expect_ok(&r, "internal.corp", "fd00::5", 80);
  expect_ok(&r, "internal.corp", "127.0.0.1", 80);
  expect_ok(&r, "localhost", "127.0.0.1", 9000);
  expect_ok(&r, "localhost", "::1", 9000);
  expect_no(&r, "localhost", "127.0.0.1", 9001, "127.0.0.1:9001 is not in the function's egress list");
  expect_no(&r, "internal.corp", "169.254.169.254", 80, "169.254.169.254:80 is not allowed (link-local)");
  expect_no(&r, "internal.corp", "::ffff:169.254.169.254", 80,
            "[::ffff:169.254.169.254]:80 is not allowed (link-local)");
  expect_no(&r, "internal.corp", "0.0.0.0", 80, "0.0.0.0:80 is not allowed (unspecified)");
  expect_no(&r, "internal.corp", "239.1.1.1", 80, "239.1.1.1:80 is not allowed (multicast)");
  expect_no(&r, "internal.corp", "203.0.113.7", 80, "203.0.113.7:80 is not allowed (reserved)");
  /* Another name resolving to the same private address is not listed. */
  expect_no(&r, "evil.example", "10.1.2.3", 80, "10.1.2.3:80 is not in the function's egress list");
  /* An invalid entry matches nothing (not even as a prefix of a name). */
  POLICY(bad, "a..b", "", "host:0", "http://x");
  expect_no(&bad, "a..b", "8.8.8.8", 80, "8.8.8.8:80 is not in the function's egress list");
  expect_no(&bad, "host", "8.8.8.8", 80, NULL);
  expect_no(&bad, "x", "8.8.8.8", 80, NULL);
}

static void test_wildcard_entries(void **state) {
  (void)state;
  POLICY(p, "*.stripe.com");
  expect_ok(&p, "a.stripe.com", "93.184.216.34", 443);
  expect_ok(&p, "a.b.stripe.com", "93.184.216.34", 443);
  expect_ok(&p, "A.Stripe.COM.", "93.184.216.34", 443);
  expect_no(&p, "stripe.com", "93.184.216.34", 443, "93.184.216.34:443 is not in the function's egress list");
  expect_no(&p, "evilstripe.com", "93.184.216.34", 443, NULL);
  expect_no(&p, "a.evilstripe.com", "93.184.216.34", 443, NULL);
  expect_no(&p, "stripe.com.evil.com", "93.184.216.34", 443, NULL);
  expect_no(&p, ".stripe.com", "93.184.216.34", 443, NULL);
  expect_no(&p, "a..stripe.com", "93.184.216.34", 443, NULL);
  expect_no(&p, "a.stripe.co", "93.184.216.34", 443, NULL);
  expect_ok(&p, "a.stripe.com", "10.0.0.1", 443); /* as a name entry: private allowed */
  expect_no(&p, "a.stripe.com", "169.254.169.254", 443, "169.254.169.254:443 is not allowed (link-local)");
  POLICY(q, "*.stripe.com:443");
  expect_ok(&q, "a.stripe.com", "93.184.216.34", 443);
  expect_no(&q, "a.stripe.com", "93.184.216.34", 80, NULL);
}

static void test_ip_entries(void **state) {
  (void)state;
  POLICY(p, "127.0.0.1:9000", "169.254.169.254", "[::1]:9001", "[fd00::7]");
  expect_ok(&p, "127.0.0.1", "127.0.0.1", 9000);
  expect_ok(&p, "anything", "127.0.0.1", 9000); /* the address decides, whatever the name */
  expect_ok(&p, "x", "::ffff:127.0.0.1", 9000); /* the same host through a dual-stack socket */
  expect_no(&p, "127.0.0.1", "127.0.0.1", 9001, "127.0.0.1:9001 is not in the function's egress list");
  expect_no(&p, "x", "127.0.0.2", 9000, NULL);
  expect_no(&p, "x", "::127.0.0.1", 9000, NULL);           /* IPv4-compatible is another address */
  expect_ok(&p, "169.254.169.254", "169.254.169.254", 80); /* the metadata service, listed as an IP literal */
  expect_ok(&p, "x", "169.254.169.254", 1);
  expect_no(&p, "x", "169.254.169.253", 80, NULL);
  expect_ok(&p, "::1", "::1", 9001);
  expect_no(&p, "::1", "::1", 9000, "[::1]:9000 is not in the function's egress list");
  expect_ok(&p, "x", "fd00::7", 1234);
  expect_no(&p, "x", "fd00::8", 1234, NULL);
  /* An IPv6 literal entry of a mapped address contains the IPv4 address. */
  POLICY(m, "[::ffff:10.0.0.1]:80");
  expect_ok(&m, "x", "10.0.0.1", 80);
  expect_ok(&m, "x", "::ffff:10.0.0.1", 80);
  expect_no(&m, "x", "10.0.0.2", 80, NULL);
  /* Never unspecified nor multicast, even listed. */
  POLICY(u, "0.0.0.0", "[::]", "224.0.0.1", "[ff02::1]");
  expect_no(&u, "x", "0.0.0.0", 80, "0.0.0.0:80 is not allowed (unspecified)");
  expect_no(&u, "x", "::", 80, "[::]:80 is not allowed (unspecified)");
  expect_no(&u, "x", "224.0.0.1", 80, "224.0.0.1:80 is not allowed (multicast)");
  expect_no(&u, "x", "ff02::1", 80, "[ff02::1]:80 is not allowed (multicast)");
  /* Reserved is allowed when listed by address. */
  POLICY(r, "192.0.2.10");
  expect_ok(&r, "x", "192.0.2.10", 80);
}

static void test_cidr_entries(void **state) {
  (void)state;
  POLICY(p, "10.0.0.0/8", "172.16.0.0/12", "fd00::/8", "192.168.1.128/25");
  expect_ok(&p, "x", "10.0.0.0", 80);
  expect_ok(&p, "x", "10.255.255.255", 80);
  expect_ok(&p, "x", "::ffff:10.1.2.3", 80);
  expect_no(&p, "x", "9.255.255.255", 80, "9.255.255.255:80 is not in the function's egress list");
  expect_no(&p, "x", "11.0.0.0", 80, "11.0.0.0:80 is not in the function's egress list");
  expect_ok(&p, "x", "172.16.0.0", 80);
  expect_ok(&p, "x", "172.31.255.255", 80);
  expect_no(&p, "x", "172.15.255.255", 80, NULL);
  expect_no(&p, "x", "172.32.0.0", 80, NULL);
  expect_ok(&p, "x", "192.168.1.128", 80);
  expect_ok(&p, "x", "192.168.1.255", 80);
  expect_no(&p, "x", "192.168.1.127", 80, NULL);
  expect_no(&p, "x", "192.168.2.128", 80, NULL);
  expect_ok(&p, "x", "fd00::", 80);
  expect_ok(&p, "x", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80);
  expect_no(&p, "x", "fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, NULL);
  expect_no(&p, "x", "fe00::", 80, NULL);
  POLICY(odd, "2001:db8:8000::/33");
  expect_ok(&odd, "x", "2001:db8:8000::", 80);
  expect_ok(&odd, "x", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 80);
  expect_no(&odd, "x", "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff", 80, NULL);
  expect_no(&odd, "x", "2001:db9::", 80, NULL);
  POLICY(host32, "8.8.8.8/32");
  expect_ok(&host32, "x", "8.8.8.8", 53);
  expect_no(&host32, "x", "8.8.8.9", 53, NULL);
  /* /0: every address of the family, link-local too (an explicit choice), never unspecified or multicast. */
  POLICY(all4, "0.0.0.0/0");
  expect_ok(&all4, "x", "169.254.169.254", 80);
  expect_ok(&all4, "x", "127.0.0.1", 80);
  expect_ok(&all4, "x", "::ffff:8.8.8.8", 80);
  expect_no(&all4, "x", "2606:4700::1111", 80, NULL);
  expect_no(&all4, "x", "0.0.0.0", 80, "0.0.0.0:80 is not allowed (unspecified)");
  expect_no(&all4, "x", "224.0.0.1", 80, "224.0.0.1:80 is not allowed (multicast)");
  POLICY(all6, "::/0");
  expect_ok(&all6, "x", "2606:4700::1111", 80);
  expect_ok(&all6, "x", "8.8.8.8", 80); /* as ::ffff:8.8.8.8 */
  /* An IPv6 block over the mapped range contains the IPv4 addresses. */
  POLICY(mapped, "::ffff:10.0.0.0/104");
  expect_ok(&mapped, "x", "10.9.9.9", 80);
  expect_no(&mapped, "x", "11.0.0.0", 80, NULL);
}

static void test_first_allowing_entry_wins(void **state) {
  (void)state;
  /* "*" refuses a private address, the name entry allows it. */
  POLICY(p, "*", "internal.corp");
  expect_ok(&p, "internal.corp", "10.1.2.3", 80);
  expect_no(&p, "other.corp", "10.1.2.3", 80, "10.1.2.3:80 is not allowed (private)");
  expect_ok(&p, "other.corp", "8.8.8.8", 80);
  /* The name refuses link-local, the IP literal allows it. */
  POLICY(q, "meta.internal", "169.254.169.254:80");
  expect_ok(&q, "meta.internal", "169.254.169.254", 80);
  expect_no(&q, "meta.internal", "169.254.169.254", 8080, "169.254.169.254:8080 is not allowed (link-local)");
}

/* --- own listener ---------------------------------------------------------------------------------- */

static void test_self_concrete(void **state) {
  (void)state;
  cr_egress_self_t *s = cr_egress_self_new("127.0.0.1", 8080);
  assert_non_null(s);
  assert_int_equal(cr_egress_is_self(s, SA("127.0.0.1", 8080)), 1);
  assert_int_equal(cr_egress_is_self(s, SA("::ffff:127.0.0.1", 8080)), 1);
  assert_int_equal(cr_egress_is_self(s, SA("0.0.0.0", 8080)), 1); /* reaches the local host */
  assert_int_equal(cr_egress_is_self(s, SA("::", 8080)), 1);
  assert_int_equal(cr_egress_is_self(s, SA("127.0.0.1", 8081)), 0);
  assert_int_equal(cr_egress_is_self(s, SA("127.0.0.2", 8080)), 0);
  assert_int_equal(cr_egress_is_self(s, SA("::1", 8080)), 0);
  assert_int_equal(cr_egress_is_self(s, SA("8.8.8.8", 8080)), 0);
  assert_int_equal(cr_egress_is_self(NULL, SA("127.0.0.1", 8080)), 0);
  assert_int_equal(cr_egress_is_self(s, NULL), 0);

  /* Refused even where loopback is allowed, unless listed exactly with its port. */
  cr_egress_policy_t dev = {NULL, 0, 1, s};
  expect_no(&dev, "localhost", "127.0.0.1", 8080, "127.0.0.1:8080 is crescent's own listener");
  expect_ok(&dev, "localhost", "127.0.0.1", 8081);
  POLICY(byname, "localhost", "localhost:8080", "127.0.0.1", "127.0.0.0/8");
  byname.self = s;
  expect_no(&byname, "localhost", "127.0.0.1", 8080, "127.0.0.1:8080 is crescent's own listener");
  expect_ok(&byname, "localhost", "127.0.0.1", 8081);
  POLICY(exact, "127.0.0.1:8080");
  exact.self = s;
  expect_ok(&exact, "localhost", "127.0.0.1", 8080);
  expect_ok(&exact, "x", "::ffff:127.0.0.1", 8080);
  expect_no(&exact, "x", "0.0.0.0", 8080, "0.0.0.0:8080 is crescent's own listener");
  cr_egress_self_free(s);

  /* "localhost" is 127.0.0.1; an IPv6 listener, bracketed or not. */
  s = cr_egress_self_new("localhost", 3000);
  assert_int_equal(cr_egress_is_self(s, SA("127.0.0.1", 3000)), 1);
  assert_int_equal(cr_egress_is_self(s, SA("::1", 3000)), 0);
  cr_egress_self_free(s);
  s = cr_egress_self_new("[::1]", 3000);
  assert_int_equal(cr_egress_is_self(s, SA("::1", 3000)), 1);
  assert_int_equal(cr_egress_is_self(s, SA("127.0.0.1", 3000)), 0);
  POLICY(v6, "[::1]:3000");
  v6.self = s;
  expect_ok(&v6, "x", "::1", 3000);
  cr_egress_policy_t d = {NULL, 0, 1, s};
  expect_no(&d, "x", "::1", 3000, "[::1]:3000 is crescent's own listener");
  cr_egress_self_free(s);
  s = cr_egress_self_new("10.0.0.5", 80);
  assert_int_equal(cr_egress_is_self(s, SA("10.0.0.5", 80)), 1);
  assert_int_equal(cr_egress_is_self(s, SA("127.0.0.1", 80)), 0);
  cr_egress_self_free(s);
  cr_egress_self_free(NULL);
}

/* Every interface address of this machine, on port, is self (at most 256 checked). */
static int check_interfaces(const cr_egress_self_t *s, int port, int want) {
  struct ifaddrs *ifs;
  assert_int_equal(getifaddrs(&ifs), 0);
  int n = 0;
  for (struct ifaddrs *i = ifs; i && n < 256; i = i->ifa_next) {
    if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (i->ifa_addr->sa_family == AF_INET) {
      memcpy(&ss, i->ifa_addr, sizeof(struct sockaddr_in));
      ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    } else {
      memcpy(&ss, i->ifa_addr, sizeof(struct sockaddr_in6));
      ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    }
    if (cr_egress_is_self(s, (const struct sockaddr *)&ss) != want) {
      char ip[INET6_ADDRSTRLEN];
      inet_ntop(ss.ss_family,
                ss.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
                                        : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr,
                ip, sizeof ip);
      freeifaddrs(ifs);
      fail_msg("interface %s address %s port %d: is_self not %d", i->ifa_name, ip, port, want);
    }
    n++;
  }
  freeifaddrs(ifs);
  return n;
}

/* Is ip one of this machine's interface addresses? */
static int is_local(const char *ip) {
  struct ifaddrs *ifs;
  assert_int_equal(getifaddrs(&ifs), 0);
  char buf[INET6_ADDRSTRLEN];
  int found = 0;
  for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    if (i->ifa_addr->sa_family == AF_INET)
      inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, buf, sizeof buf);
    else if (i->ifa_addr->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, buf, sizeof buf);
    else
      continue;
    found = strcmp(buf, ip) == 0;
  }
  freeifaddrs(ifs);
  return found;
}

static void test_self_wildcard(void **state) {
  (void)state;
  const char *hosts[] = {"0.0.0.0", "::", "", NULL, "[::]", "not-an-address"};
  for (size_t h = 0; h < sizeof hosts / sizeof hosts[0]; h++) {
    cr_egress_self_t *s = cr_egress_self_new(hosts[h], 18080);
    assert_non_null(s);
    assert_int_equal(cr_egress_is_self(s, SA("127.0.0.1", 18080)), 1);
    assert_int_equal(cr_egress_is_self(s, SA("127.1.2.3", 18080)), 1); /* all of 127/8 reaches it */
    assert_int_equal(cr_egress_is_self(s, SA("::1", 18080)), 1);
    assert_int_equal(cr_egress_is_self(s, SA("::ffff:127.0.0.1", 18080)), 1);
    assert_int_equal(cr_egress_is_self(s, SA("0.0.0.0", 18080)), 1);
    assert_int_equal(cr_egress_is_self(s, SA("::", 18080)), 1);
    assert_int_equal(cr_egress_is_self(s, SA("127.0.0.1", 18081)), 0);
    assert_int_equal(cr_egress_is_self(s, SA("::1", 18081)), 0);
    /* Every interface address: self on the port, not on another. The loopback
     * interface is always there, so at least one is checked. */
    assert_true(check_interfaces(s, 18080, 1) >= 1);
    assert_true(check_interfaces(s, 18081, 0) >= 1);
    /* An address no interface has (documentation range) is not self. */
    assert_false(is_local("192.0.2.77"));
    assert_int_equal(cr_egress_is_self(s, SA("192.0.2.77", 18080)), 0);
    assert_int_equal(cr_egress_is_self(s, SA("2001:db8::77", 18080)), 0);
    cr_egress_self_free(s);
  }

  /* Through the policy: refused on the port, an exact literal opens it. */
  cr_egress_self_t *s = cr_egress_self_new("0.0.0.0", 18080);
  cr_egress_policy_t dev = {NULL, 0, 1, s};
  expect_no(&dev, "localhost", "127.0.0.1", 18080, "127.0.0.1:18080 is crescent's own listener");
  expect_no(&dev, "localhost", "::1", 18080, "[::1]:18080 is crescent's own listener");
  expect_ok(&dev, "localhost", "127.0.0.1", 18081);
  POLICY(exact, "127.0.0.1:18080");
  exact.self = s;
  expect_ok(&exact, "x", "127.0.0.1", 18080);
  expect_no(&exact, "x", "127.0.0.2", 18080, "127.0.0.2:18080 is crescent's own listener");
  cr_egress_self_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_class_names),
      cmocka_unit_test(test_classify_v4_boundaries),
      cmocka_unit_test(test_classify_v6_boundaries),
      cmocka_unit_test(test_classify_v6_embedded_v4),
      cmocka_unit_test(test_classify_other_families),
      cmocka_unit_test(test_entries_valid),
      cmocka_unit_test(test_entries_invalid),
      cmocka_unit_test(test_default_policy),
      cmocka_unit_test(test_star_entry),
      cmocka_unit_test(test_empty_list),
      cmocka_unit_test(test_name_entries),
      cmocka_unit_test(test_wildcard_entries),
      cmocka_unit_test(test_ip_entries),
      cmocka_unit_test(test_cidr_entries),
      cmocka_unit_test(test_first_allowing_entry_wins),
      cmocka_unit_test(test_self_concrete),
      cmocka_unit_test(test_self_wildcard),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
