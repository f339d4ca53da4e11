/* test_crypto.c - crescent.crypto in a Lua state, bit-exact against published vectors:
 * FIPS 180 (SHA-1, SHA-256, SHA-512), RFC 1321 (MD5), RFC 4231 and RFC 2202 (HMAC), RFC 8032
 * (Ed25519, keys as PEM built from the RFC's raw bytes); RS256/ES256 round trips with keys made
 * by the openssl command at test time; the encoders, uuid, equal and the argument errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modules.h"
#include "vm.h"

static cr_stdlib_t *stdlib;
static cr_vm_t *vm;

static const char prelude[] = "local c = require 'crescent.crypto' local H, U = c.hex, c.unhex local R = string.rep ";

/* Runs prelude..body with nargs string arguments; the result (or error) is left on top. */
static int run(const char *body, int nargs, const char **args) {
  lua_settop(vm->L, 0);
  size_t n = strlen(prelude) + strlen(body) + 1;
  char *src = malloc(n);
  snprintf(src, n, "%s%s", prelude, body);
  int rc = luaL_loadstring(vm->L, src);
  free(src);
  if (rc) return rc;
  for (int i = 0; i < nargs; i++) lua_pushstring(vm->L, args[i]);
  return lua_pcall(vm->L, nargs, 1, 0);
}

static void expect(const char *body, const char *want) {
  int rc = run(body, 0, NULL);
  if (rc) print_error("%s: %s\n", body, lua_tostring(vm->L, -1));
  assert_int_equal(rc, 0);
  assert_string_equal(lua_tostring(vm->L, -1), want);
}

static void expect_error(const char *body, const char *want) {
  assert_int_not_equal(run(body, 0, NULL), 0);
  const char *msg = lua_tostring(vm->L, -1);
  if (!strstr(msg, want)) print_error("got %s\n", msg);
  assert_non_null(strstr(msg, want));
}

static int setup(void **state) {
  (void)state;
  stdlib = cr_stdlib_new(NULL, NULL);
  const cr_vm_opts_t opts = {.preload = cr_stdlib_preload, .preload_ud = stdlib};
  vm = cr_vm_new(&opts);
  return vm ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  cr_vm_free(vm);
  cr_stdlib_free(stdlib);
  return 0;
}

#define M448 "'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'"

static void test_digests(void **state) {
  (void)state;
  expect("return H(c.sha256('abc'))", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  expect("return H(c.sha256(''))", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  expect("return H(c.sha256(" M448 "))", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  expect("return H(c.sha512('abc'))", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                                       "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  expect("return H(c.sha512(''))", "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                                    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e");
  expect("return H(c.sha512(" M448 "))", "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
                                          "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445");
  expect("return H(c.sha1('abc'))", "a9993e364706816aba3e25717850c26c9cd0d89d");
  expect("return H(c.sha1(''))", "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  expect("return H(c.sha1(" M448 "))", "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  expect("return H(c.md5(''))", "d41d8cd98f00b204e9800998ecf8427e");
  expect("return H(c.md5('abc'))", "900150983cd24fb0d6963f7d28e17f72");
  expect("return H(c.md5('message digest'))", "f96b697d7cb7938d525a2f31aaf161d0");
  expect("return #c.sha256(R('x', 1000000))", "32");
}

static void test_hmac_vectors(void **state) {
  (void)state;
  static const struct {
    const char *key, *msg, *sha256, *sha512;
  } rfc4231[] = {
      {"R('\\11', 20)", "'Hi There'", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
       "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
      {"'Jefe'", "'what do ya want for nothing?'", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
       "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
      {"R('\\170', 20)", "R('\\221', 50)", "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
       "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb"},
      {"U('0102030405060708090a0b0c0d0e0f10111213141516171819')", "R('\\205', 50)",
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
       "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd"},
      {"R('\\170', 131)", "'Test Using Larger Than Block-Size Key - Hash Key First'",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
       "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"},
      {"R('\\170', 131)",
       "'This is a test using a larger than block-size key and a larger than block-size data. The key needs to be "
       "hashed before being used by the HMAC algorithm.'",
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
       "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58"},
  };
  char body[512];
  for (size_t i = 0; i < sizeof rfc4231 / sizeof rfc4231[0]; i++) {
    snprintf(body, sizeof body, "return H(c.hmac('sha256', %s, %s))", rfc4231[i].key, rfc4231[i].msg);
    expect(body, rfc4231[i].sha256);
    snprintf(body, sizeof body, "return H(c.hmac('sha512', %s, %s))", rfc4231[i].key, rfc4231[i].msg);
    expect(body, rfc4231[i].sha512);
  }
  /* RFC 2202 cases 1 and 2. */
  expect("return H(c.hmac('sha1', R('\\11', 20), 'Hi There'))", "b617318655057264e28bc0b6fb378c8ef146be00");
  expect("return H(c.hmac('sha1', 'Jefe', 'what do ya want for nothing?'))", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
  expect("return H(c.hmac('md5', R('\\11', 16), 'Hi There'))", "9294727a3638bb1c13f48ef8158bfc9d");
  expect("return H(c.hmac('md5', 'Jefe', 'what do ya want for nothing?'))", "750c783e6ab0b503eaa86e310a5db738");
  expect_error("return c.hmac('sha3', 'k', 'm')", "bad argument #1 to 'crypto.hmac'");
  expect_error("return c.hmac('sha256', nil, 'm')", "bad argument #2 to 'crypto.hmac' (string expected, got nil)");
  expect_error("return c.hmac('sha256', 'k')", "bad argument #3 to 'crypto.hmac' (string expected, got no value)");
}

/* Ed25519 PEM from raw RFC 8032 bytes: the PKCS#8 and SPKI DER prefixes for Ed25519. */
#define ED_KEYS                                                                                              \
  "local function pem(kind, der) return '-----BEGIN '..kind..'-----\\n'..c.base64(der)..'\\n-----END '..kind" \
  "..'-----\\n' end "                                                                                        \
  "local function priv(seed) return pem('PRIVATE KEY', U('302e020100300506032b657004220420'..seed)) end "  \
  "local function pub(pk) return pem('PUBLIC KEY', U('302a300506032b6570032100'..pk)) end "

static void test_ed25519_rfc8032(void **state) {
  (void)state;
  expect(ED_KEYS "return H(c.sign('EdDSA', priv('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'), ''))",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
         "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  expect(ED_KEYS "return H(c.sign('EdDSA', priv('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb'), U('72')))",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
         "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
  expect(ED_KEYS "local k = pub('3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c') "
                 "local s = U('92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                 "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00') "
                 "return tostring(c.verify('EdDSA', k, U('72'), s)) .. tostring(c.verify('EdDSA', k, 's', s)) .. "
                 "tostring(c.verify('EdDSA', k, U('72'), s:sub(1, 63)))",
         "truefalsefalse");
  expect(ED_KEYS "local ok, err = c.verify('EdDSA', 'not a key', 'm', 's') return tostring(ok) .. ' ' .. err",
         "nil invalid public key (PEM expected)");
  expect(ED_KEYS "local ok, err = c.verify('RS256', pub('3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c'), 'm', 's') "
                 "return tostring(ok) .. ' ' .. err",
         "nil key is not an RSA key of at most 8192 bits");
  expect_error("return c.sign('HS256', 'k', 'm')", "bad argument #1 to 'crypto.sign'");
  expect_error("return c.sign('EdDSA', R('x', 16385), 'm')", "bad argument #2 to 'crypto.sign' (PEM key larger than 16 KB)");
  expect_error("return c.verify('EdDSA', 'k', 'm')", "bad argument #4 to 'crypto.verify' (string expected, got no value)");
}

/* Reads a whole file into a malloc'd string. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char buf[16384];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return strdup(buf);
}

static void round_trip(const char *alg, const char *genopts, size_t siglen) {
  char dir[] = "/tmp/crcryptoXXXXXX";
  assert_non_null(mkdtemp(dir));
  char cmd[512], kp[64], pp[64];
  snprintf(kp, sizeof kp, "%s/k.pem", dir);
  snprintf(pp, sizeof pp, "%s/p.pem", dir);
  snprintf(cmd, sizeof cmd, "openssl genpkey %s -out %s 2>/dev/null && openssl pkey -in %s -pubout -out %s 2>/dev/null",
           genopts, kp, kp, pp);
  assert_int_equal(system(cmd), 0);
  char *k = slurp(kp), *p = slurp(pp);
  unlink(kp);
  unlink(pp);
  rmdir(dir);
  const char *args[] = {alg, k, p};
  assert_int_equal(run("local alg, k, p = ... local s = c.sign(alg, k, 'hello') local s2 = c.sign(alg, k, 'hello') "
                       "local t = s:sub(1, 10) .. string.char((s:byte(11) + 1) % 256) .. s:sub(12) "
                       "return #s .. ' ' .. tostring(c.verify(alg, p, 'hello', s)) .. ' ' .. "
                       "tostring(c.verify(alg, p, 'hellO', s)) .. ' ' .. tostring(c.verify(alg, p, 'hello', t)) .. ' ' .. "
                       "tostring(c.verify(alg, p, 'hello', s2)) .. ' ' .. tostring((c.verify(alg, k, 'hello', s)))",
                       3, args),
                   0);
  char want[64];
  snprintf(want, sizeof want, "%zu true false false true nil", siglen);
  assert_string_equal(lua_tostring(vm->L, -1), want);
  free(k);
  free(p);
}

static void test_rs256_round_trip(void **state) {
  (void)state;
  round_trip("RS256", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048", 256);
}

/* An encrypted key and a 256-bit curve that is not P-256 are refused as keys (no passphrase prompt). */
static void test_refused_keys(void **state) {
  (void)state;
  static const char *gen[] = {
      "openssl genpkey -algorithm ED25519 -aes-128-cbc -pass pass:x 2>/dev/null",
      "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 2>/dev/null",
  };
  static const char *want[] = {"EdDSA nil invalid private key (PEM expected, not encrypted)",
                               "ES256 nil key is not a P-256 EC key"};
  for (int i = 0; i < 2; i++) {
    FILE *p = popen(gen[i], "r");
    assert_non_null(p);
    char pem[4096];
    size_t n = fread(pem, 1, sizeof pem - 1, p);
    assert_int_equal(pclose(p), 0);
    pem[n] = 0;
    const char *args[] = {i ? "ES256" : "EdDSA", pem};
    assert_int_equal(run("local alg, k = ... local s, e = c.sign(alg, k, 'm') return alg .. ' ' .. tostring(s) .. ' ' .. e", 2, args), 0);
    assert_string_equal(lua_tostring(vm->L, -1), want[i]);
  }
}

static void test_es256_round_trip(void **state) {
  (void)state;
  round_trip("ES256", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256", 64);
}

static void test_encodings(void **state) {
  (void)state;
  expect("return c.hex('\\0\\1\\171\\255')", "0001abff");
  expect("return H(U('0001ABff'))", "0001abff");
  expect("local s, e = U('abc') return tostring(s) .. ' ' .. e", "nil invalid hex: odd length");
  expect("local s, e = U('zz') return tostring(s) .. ' ' .. e", "nil invalid hex: bad digit at byte 1");
  /* RFC 4648 section 10 */
  expect("local t = {} for _, s in ipairs{'', 'f', 'fo', 'foo', 'foob', 'fooba', 'foobar'} do t[#t+1] = c.base64(s) end "
         "return table.concat(t, ',')",
         ",Zg==,Zm8=,Zm9v,Zm9vYg==,Zm9vYmE=,Zm9vYmFy");
  expect("local t = {} for _, s in ipairs{'', 'Zg==', 'Zm8=', 'Zm9v', 'Zm9vYg==', 'Zm9vYmE=', 'Zm9vYmFy'} do "
         "t[#t+1] = c.unbase64(s) end return table.concat(t, ',')",
         ",f,fo,foo,foob,fooba,foobar");
  expect("return c.base64url('\\251\\255\\254') .. ' ' .. c.base64url('f') .. ' ' .. c.base64('\\251\\255\\254')", "-__- Zg +//+");
  expect("return c.unbase64url('-__-') == '\\251\\255\\254' and c.unbase64url('Zg') .. c.unbase64url('Zg==')", "ff");
  expect("local r = {} for _, s in ipairs{'Zg', 'Zg=', 'Z===', 'Zm9v!', 'Zh==', '-__-'} do local v, e = c.unbase64(s) "
         "r[#r+1] = tostring(v) .. ':' .. tostring(e) end return table.concat(r, ' ')",
         "nil:invalid base64 nil:invalid base64 nil:invalid base64 nil:invalid base64 nil:invalid base64 nil:invalid base64");
  expect("local v, e = c.unbase64url('Zm9v+') return tostring(v) .. ':' .. e", "nil:invalid base64url");
  expect("local s = c.randomBytes(1000) return tostring(c.unbase64(c.base64(s)) == s and c.unbase64url(c.base64url(s)) == s "
         "and U(H(s)) == s)",
         "true");
  expect_error("return c.base64(12)", "bad argument #1 to 'crypto.base64' (string expected, got number)");
}

static void test_random_and_uuid(void **state) {
  (void)state;
  expect("return #c.randomBytes(1) .. ' ' .. #c.randomBytes(65536)", "1 65536");
  expect("return tostring(c.randomBytes(32) ~= c.randomBytes(32))", "true");
  expect_error("return c.randomBytes(0)", "bad argument #1 to 'crypto.randomBytes' (n: a whole number, 1 to 65536)");
  expect_error("return c.randomBytes(65537)", "bad argument #1 to 'crypto.randomBytes'");
  expect_error("return c.randomBytes(1.5)", "bad argument #1 to 'crypto.randomBytes'");
  expect_error("return c.randomBytes('8')", "bad argument #1 to 'crypto.randomBytes' (number expected, got string)");
  expect("local seen, bad = {}, 0 for i = 1, 1000 do local u = c.uuid() "
         "if not u:match('^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$') "
         "or u:lower() ~= u or seen[u] then bad = bad + 1 end seen[u] = true end return tostring(bad)",
         "0");
}

static void test_equal(void **state) {
  (void)state;
  expect("return tostring(c.equal('abc', 'abc')) .. tostring(c.equal('abc', 'abd')) .. tostring(c.equal('abc', 'ab')) .. "
         "tostring(c.equal('', '')) .. tostring(c.equal('\\0', ''))",
         "truefalsefalsetruefalse");
  expect_error("return c.equal('a')", "bad argument #2 to 'crypto.equal' (string expected, got no value)");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_digests),          cmocka_unit_test(test_hmac_vectors),
      cmocka_unit_test(test_ed25519_rfc8032),  cmocka_unit_test(test_rs256_round_trip),
      cmocka_unit_test(test_es256_round_trip), cmocka_unit_test(test_refused_keys),cmocka_unit_test(test_encodings),
      cmocka_unit_test(test_random_and_uuid),  cmocka_unit_test(test_equal),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
