/* admin.c - /_/ endpoints: health and the functions API. */
#include "admin.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "json.h"
#include "router.h"

int cr_admin_owns(const char *path, size_t len) {
  return (len >= 3 && memcmp(path, "/_/", 3) == 0) || (len == 2 && memcmp(path, "/_", 2) == 0);
}

static void respond_json(cr_http_req_t *req, int status, cr_buf_t *b) {
  cr_http_respond_start(req, status);
  cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
  cr_http_respond_finish(req, "application/json", b->data ? b->data : "", b->len);
}

static void iso(cr_buf_t *b, uint64_t ms) {
  char t[32];
  cr_clock_iso8601(ms, t);
  cr_json_escape(b, t, strlen(t));
}

static void functions_json(const cr_admin_t *a, cr_buf_t *b) {
  const cr_registry_t *r = a->registry;
  cr_buf_append_str(b, "{\"functions\":[");
  for (int i = 0; i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    const cr_fnver_t *v = fn->current;
    if (i) cr_buf_putc(b, ',');
    cr_buf_append_str(b, "{\"name\":");
    cr_json_escape(b, fn->name, strlen(fn->name));
    cr_buf_append_str(b, ",\"file\":");
    cr_json_escape(b, fn->relpath, strlen(fn->relpath));
    cr_buf_append_str(b, ",\"routed\":");
    cr_buf_append_str(b, fn->routed ? "true" : "false");
    if (v) {
      cr_buf_append_str(b, ",\"version\":");
      cr_buf_append_u64(b, v->number);
      cr_buf_append_str(b, ",\"hash\":");
      cr_json_escape(b, v->hash, strlen(v->hash));
      cr_buf_append_str(b, ",\"loadedAt\":");
      iso(b, v->loaded_ms);
      const cr_settings_t *s = &v->settings;
      cr_buf_append_str(b, ",\"routes\":[");
      if (s->has_routes) {
        for (int k = 0; k < s->nroutes; k++) {
          char m[80], route[1200];
          if (s->routes[k].methods == CR_M_ANY) snprintf(m, sizeof m, "ANY");
          else cr_method_list(s->routes[k].methods, m, sizeof m);
          snprintf(route, sizeof route, "%s %s", m, s->routes[k].path);
          if (k) cr_buf_putc(b, ',');
          cr_json_escape(b, route, strlen(route));
        }
      } else {
        char def[1024], route[1100];
        if (cr_registry_default_route(fn->name, def, sizeof def) == 0) {
          snprintf(route, sizeof route, "ANY %s", def);
          cr_json_escape(b, route, strlen(route));
        }
      }
      cr_buf_printf(b, "],\"settings\":{\"timeout\":%g,\"memory\":%d,\"concurrency\":%d,\"warm\":%d,\"idle\":%g}",
                    s->timeout, s->memory, s->concurrency, s->warm, s->idle);
    } else {
      cr_buf_append_str(b, ",\"version\":null");
    }
    cr_buf_append_str(b, ",\"error\":");
    if (fn->error) {
      cr_json_escape(b, fn->error, strlen(fn->error));
      cr_buf_append_str(b, ",\"errorAt\":");
      iso(b, fn->error_ms);
    } else {
      cr_buf_append_str(b, "null");
    }
    if (a->shm && fn->slot < CR_SHM_MAX_FUNCTIONS) {
      cr_shm_fn_t *f = &a->shm->fns[fn->slot];
      uint64_t inv = atomic_load(&f->invocations);
      cr_buf_printf(b, ",\"metrics\":{\"invocations\":%llu,\"errors\":%llu,\"timeouts\":%llu,\"throttles\":%llu,"
                       "\"coldStarts\":%llu,\"durationMsSum\":%.3f,\"billedMsSum\":%llu,\"gbSeconds\":%.6f}",
                    (unsigned long long)inv, (unsigned long long)atomic_load(&f->errors),
                    (unsigned long long)atomic_load(&f->timeouts), (unsigned long long)atomic_load(&f->throttles),
                    (unsigned long long)atomic_load(&f->cold_starts), (double)atomic_load(&f->duration_us) / 1000.0,
                    (unsigned long long)atomic_load(&f->billed_ms), (double)atomic_load(&f->mb_ms) / 1024.0 / 1000.0);
    }
    cr_buf_putc(b, '}');
  }
  cr_buf_append_str(b, "]}");
}

void cr_admin_handle(const cr_admin_t *a, cr_http_req_t *req) {
  cr_buf_t b = CR_BUF_INIT;
  const char *p = req->path;
  size_t n = req->path_len;
  if (n > 3 && p[n - 1] == '/') n--;
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(p, lit, n) == 0)
  int get = req->method == CR_M_GET || req->method == CR_M_HEAD;
  if (IS("/_/health")) {
    if (!get) goto not_allowed;
    cr_buf_append_str(&b, "{\"status\":\"ok\"}");
    respond_json(req, 200, &b);
  } else if (IS("/_/api/functions")) {
    if (!get) goto not_allowed;
    functions_json(a, &b);
    respond_json(req, 200, &b);
  } else {
    cr_http_respond_error(req, 404, "not found");
  }
  cr_buf_free(&b);
  return;
not_allowed:
  cr_http_respond_start(req, 405);
  cr_http_respond_header(req, "Allow", 5, "GET, HEAD", 9);
  cr_http_respond_finish(req, "application/json", "{\"error\":\"method not allowed\"}", 30);
  cr_buf_free(&b);
#undef IS
}
