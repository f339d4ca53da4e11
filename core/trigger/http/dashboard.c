/* dashboard.c - serves the dashboard's files, compiled into the binary.
 *
 * dashboard/index.html, app.js and app.css are the project's; chart.js is
 * Debian's libjs-chart.js (/usr/share/javascript/chart.js/chart.min.js),
 * embedded at build time by CMake, never copied into the tree. The page
 * holds no data: everything it shows comes from the /_/api/ endpoints, with the token
 * the user gave it (admin.h). */
#include "dashboard.h"
#include "router.h"

#include <string.h>


extern const char cr_dash_index_html[], cr_dash_app_js[], cr_dash_app_css[], cr_dash_chart_js[];
extern const size_t cr_dash_index_html_len, cr_dash_app_js_len, cr_dash_app_css_len, cr_dash_chart_js_len;

typedef struct {
  const char *path;
  const char *type;
  const char *data;
  const size_t *len;
} asset_t;

static const asset_t assets[] = {
    {"/_/", "text/html; charset=utf-8", cr_dash_index_html, &cr_dash_index_html_len},
    {"/_/dashboard/app.js", "text/javascript; charset=utf-8", cr_dash_app_js, &cr_dash_app_js_len},
    {"/_/dashboard/app.css", "text/css; charset=utf-8", cr_dash_app_css, &cr_dash_app_css_len},
    {"/_/dashboard/chart.js", "text/javascript; charset=utf-8", cr_dash_chart_js, &cr_dash_chart_js_len},
};

/* Everything the page loads is its own: no inline script, no other origin,
 * no frame around it (the token is typed into it). */
static const char csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                          "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

int cr_dashboard_find(const char *path, size_t len) {
  for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++)
    if (strlen(assets[i].path) == len && memcmp(assets[i].path, path, len) == 0) return (int)i;
  return -1;
}

void cr_dashboard_serve(cr_http_req_t *req, int index) {
  if (index < 0 || index >= (int)(sizeof assets / sizeof assets[0])) {
    cr_http_respond_error(req, 404, "not found");
    return;
  }
  const asset_t *hit = &assets[index];
  if (req->method != CR_M_GET && req->method != CR_M_HEAD) {
    cr_http_respond_start(req, 405);
    cr_http_respond_header(req, "Allow", 5, "GET, HEAD", 9);
    cr_http_respond_finish(req, "application/json", "{\"error\":\"method not allowed\"}", 30);
    return;
  }
  cr_http_respond_start(req, 200);
  cr_http_respond_header(req, "Cache-Control", 13, "no-cache", 8);
  cr_http_respond_header(req, "Content-Security-Policy", 23, csp, sizeof csp - 1);
  cr_http_respond_header(req, "X-Content-Type-Options", 22, "nosniff", 7);
  cr_http_respond_header(req, "Referrer-Policy", 15, "no-referrer", 11);
  cr_http_respond_finish(req, hit->type, hit->data, *hit->len);
}
