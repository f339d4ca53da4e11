/* invoke_api.c - POST /_/invoke/{function}, GET /_/api/invocations/{id} (invoke_api.h). */
#include "invoke_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "jsontext.h"
#include "router.h"
#include "text.h"
#include "url.h"

static const char invoke_prefix[] = "/_/invoke/";
static const char status_prefix[] = "/_/api/invocations/";

static int starts(const cr_http_req_t *req, const char *p, size_t n) {
  return req->path_len > n && memcmp(req->path, p, n) == 0;
}

static void respond_json(cr_http_req_t *req, int status, const char *body, size_t len) {
  cr_http_respond_start(req, status);
  cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
  cr_http_respond_finish(req, "application/json", body, len);
}

static void respond_error(cr_http_req_t *req, int status, const char *msg) {
  cr_buf_t b = CR_BUF_INIT;
  cr_http_error_body(&b, req, status, msg);
  if (status == 429) {
    cr_http_respond_start(req, status);
    cr_http_respond_header(req, "Retry-After", 11, "1", 1);
    cr_http_respond_finish(req, "application/json", b.data, b.len);
  } else {
    respond_json(req, status, b.data, b.len);
  }
  cr_buf_free(&b);
}

static void header_num(cr_http_req_t *req, const char *name, double v, int decimals) {
  char t[48];
  int n = snprintf(t, sizeof t, "%.*f", decimals, v);
  cr_http_respond_header(req, name, strlen(name), t, (size_t)n);
}

static void report_headers(cr_http_req_t *req, const cr_fncall_result_t *r) {
  if (!r->reqid || !r->reqid[0] || !r->version || !r->version[0]) return;
  cr_http_respond_header(req, "X-Crescent-Request-Id", 21, r->reqid, strlen(r->reqid));
  header_num(req, "X-Crescent-Duration", r->duration_ms, 3);
  header_num(req, "X-Crescent-Billed-Duration", r->billed_ms, 0);
  if (r->cold) header_num(req, "X-Crescent-Init-Duration", r->init_ms, 3);
  header_num(req, "X-Crescent-Max-Memory-Used", (double)r->max_memory, 0);
  header_num(req, "X-Crescent-Memory-Size", r->memory_mb, 0);
  cr_http_respond_header(req, "X-Crescent-Version", 18, r->version, strlen(r->version));
}

static void on_called(void *data, const cr_fncall_result_t *r) {
  cr_http_req_t *req = data;
  if (r->status == CR_FNCALL_OK) {
    cr_http_respond_start(req, 200);
    report_headers(req, r);
    if (r->result_len) cr_http_respond_finish(req, "application/json", r->result, r->result_len);
    else cr_http_respond_finish(req, "application/json", "null", 4);
    return;
  }
  const char *type = r->error_type ? r->error_type : "error";
  if (r->status == CR_FNCALL_FAILED && strcmp(type, "badevent") == 0) {
    respond_error(req, 400, r->err);
    return;
  }
  if (r->status == CR_FNCALL_FAILED) {
    cr_buf_t b = CR_BUF_INIT;
    cr_buf_append_str(&b, "{\"errorMessage\":");
    cr_json_escape(&b, r->err, strlen(r->err));
    cr_buf_append_str(&b, ",\"errorType\":");
    cr_json_escape(&b, type, strlen(type));
    cr_buf_append_str(&b, ",\"requestId\":");
    cr_json_escape(&b, r->reqid, strlen(r->reqid));
    cr_buf_putc(&b, '}');
    cr_http_respond_start(req, 200);
    report_headers(req, r);
    cr_http_respond_header(req, "X-Crescent-Function-Error", 25, type, strlen(type));
    cr_http_respond_finish(req, "application/json", b.data, b.len);
    cr_buf_free(&b);
    return;
  }
  int status = strcmp(type, "notfound") == 0    ? 404
               : strcmp(type, "throttled") == 0 ? 429
               : strcmp(type, "stopping") == 0 || strcmp(type, "memory") == 0 ? 503
               : strcmp(r->err, "error: function failed to load") == 0 ? 503
                                                                        : 500;
  respond_error(req, status, r->err);
}

static void on_sent(void *data, const char *err, const char *id) {
  cr_http_req_t *req = data;
  if (err) {
    respond_error(req, strcmp(err, "function not found") == 0 ? 404 : strcmp(err, "event too large") == 0 ? 413 : 503,
                  err);
    return;
  }
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "{\"invocationId\":");
  cr_json_escape(&b, id, strlen(id));
  cr_buf_putc(&b, '}');
  respond_json(req, 202, b.data, b.len);
  cr_buf_free(&b);
}

static void on_status(void *data, int status, const char *text, size_t len) {
  cr_http_req_t *req = data;
  if (status == 200) respond_json(req, 200, text, len);
  else respond_error(req, status, status == 404 ? "no such invocation" : text ? text : "redis unavailable");
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static void invoke(const cr_invoke_api_t *api, cr_http_req_t *req) {
  if (req->method != CR_M_POST) {
    cr_http_respond_start(req, 405);
    cr_http_respond_header(req, "Allow", 5, "POST", 4);
    static const char body[] = "{\"error\":\"method not allowed\"}";
    cr_http_respond_finish(req, "application/json", body, sizeof body - 1);
    return;
  }
  /* The name as a path segment may carry it: percent-decoded. */
  char nbuf[512];
  cr_buf_t nb = CR_BUF_INIT;
  size_t rawlen = req->path_len - (sizeof invoke_prefix - 1);
  if (cr_url_decode(req->path + sizeof invoke_prefix - 1, rawlen, 0, &nb) || nb.len == 0 || nb.len >= sizeof nbuf ||
      memchr(nb.data, '\0', nb.len)) {
    cr_buf_free(&nb);
    respond_error(req, 404, "function not found");
    return;
  }
  memcpy(nbuf, nb.data, nb.len);
  size_t nlen = nb.len;
  nbuf[nlen] = '\0';
  cr_buf_free(&nb);
  const char *name = nbuf;
  /* An event of only whitespace is no event. */
  const char *ev = req->body;
  size_t elen = req->body_len;
  while (elen && is_space(*ev)) ev++, elen--;
  while (elen && is_space(ev[elen - 1])) elen--;
  const cr_http_header_t *type = cr_http_req_header(req, "x-invocation-type", 17);
  if (type && type->value_len == 5 && strncasecmp(type->value, "Event", 5) == 0) {
    if (!api->async) {
      respond_error(req, 503, "redis unavailable");
      return;
    }
    if (!cr_async_send(api->async, name, nlen, ev, elen, 0, req->id, NULL, on_sent, req))
      respond_error(req, 503, "server out of memory");
    return;
  }
  if (type && type->value_len == 6 && strncasecmp(type->value, "DryRun", 6) == 0) {
    char n[300];
    snprintf(n, sizeof n, "%.*s", (int)(nlen < sizeof n - 1 ? nlen : sizeof n - 1), name);
    cr_fn_t *fn = n[0] != '_' && nlen < sizeof n - 1 ? cr_registry_find(api->registry, n) : NULL;
    if (!fn || fn->removed || fn->platform) respond_error(req, 404, "function not found");
    else {
      cr_http_respond_start(req, 204);
      cr_http_respond_finish(req, NULL, "", 0);
    }
    return;
  }
  if (type && !(type->value_len == 15 && strncasecmp(type->value, "RequestResponse", 15) == 0)) {
    respond_error(req, 400, "X-Invocation-Type must be RequestResponse, Event or DryRun");
    return;
  }
  cr_fncall_opts_t o = {.parent_reqid = req->id};
  if (!cr_fncall_start(api->fc, name, nlen, ev, elen, &o, on_called, req))
    respond_error(req, 503, "server out of memory");
}

int cr_invoke_api_handle(const cr_invoke_api_t *api, cr_http_req_t *req) {
  int is_invoke = starts(req, invoke_prefix, sizeof invoke_prefix - 1);
  int is_status = !is_invoke && starts(req, status_prefix, sizeof status_prefix - 1);
  if (!api || (!is_invoke && !is_status)) return 0;
  if (cr_admin_guard(api->admin, req)) return 1;
  if (is_invoke) {
    invoke(api, req);
    return 1;
  }
  if (req->method != CR_M_GET && req->method != CR_M_HEAD) {
    cr_http_respond_start(req, 405);
    cr_http_respond_header(req, "Allow", 5, "GET, HEAD", 9);
    static const char body[] = "{\"error\":\"method not allowed\"}";
    cr_http_respond_finish(req, "application/json", body, sizeof body - 1);
    return 1;
  }
  const char *id = req->path + sizeof status_prefix - 1;
  size_t len = req->path_len - (sizeof status_prefix - 1);
  int rc = cr_async_status(api->async, id, len, on_status, req);
  if (rc) respond_error(req, rc, rc == 404 ? "no such invocation" : "redis unavailable");
  return 1;
}
