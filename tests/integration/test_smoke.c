/* test_smoke.c - the quick start works: a dropped file answers over HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static void hello_answers(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua",
            "return function(event) return 'hello ' .. (event.query.name or 'world') end\n");
  srv_start(&s, "--workers 2");
  http_resp_t r;
  http_get(s.port, "/hello?name=moon", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "hello moon");
  assert_string_equal(http_header(&r, "content-type"), "text/plain; charset=utf-8");
  assert_non_null(http_header(&r, "x-request-id"));
  assert_non_null(strstr(http_header(&r, "server-timing"), "fn;dur="));
  http_free(&r);
  http_get(s.port, "/_/health", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"status\":\"ok\",\"redis\":\"up\"}");
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(hello_answers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
