/* dashboard.h - the dashboard's files at /_/ (admin.h lists them and who may fetch them;
 * admin.c decides access, this only finds and sends the files). */
#ifndef CR_DASHBOARD_H
#define CR_DASHBOARD_H

#include <stddef.h>

#include "http.h"

/* Is path (len bytes, a trailing '/' dropped except for "/_/") one of the
 * dashboard's files? Its index, or -1. */
int cr_dashboard_find(const char *path, size_t len);
/* Answers req with file index (GET or HEAD; other methods get 405). */
void cr_dashboard_serve(cr_http_req_t *req, int index);

#endif
