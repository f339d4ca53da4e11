/* dashboard.h - the dashboard's files at /_/ (admin.h lists them and who may fetch them). */
#ifndef CR_DASHBOARD_H
#define CR_DASHBOARD_H

#include "admin.h"

/* Answers req if its path (len bytes, a trailing '/' dropped except for
 * "/_/") is one of the dashboard's files: 1, or 0 when it is not one. */
int cr_dashboard_handle(const cr_admin_t *a, cr_http_req_t *req, const char *path, size_t len);

#endif
