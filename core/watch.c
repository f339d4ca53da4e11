/* watch.c - recursive inotify on the functions folder. */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF)
#define MAX_DEPTH 16

typedef struct {
  int wd;
  char *path; /* absolute or as given, without a trailing slash */
} dirwatch_t;

struct cr_watch_s {
  int fd;
  dirwatch_t *dirs;
  int n, cap;
};

static const char *path_of(cr_watch_t *w, int wd) {
  for (int i = 0; i < w->n; i++)
    if (w->dirs[i].wd == wd) return w->dirs[i].path;
  return NULL;
}

static void add_tree(cr_watch_t *w, const char *path, int depth) {
  if (depth > MAX_DEPTH) return;
  int wd = inotify_add_watch(w->fd, path, MASK | IN_ONLYDIR);
  if (wd < 0) {
    if (errno == ENOSPC)
      cr_log(CR_LOG_WARN, NULL, NULL, "cannot watch %s: out of inotify watches (raise fs.inotify.max_user_watches)", path);
    return;
  }
  if (!path_of(w, wd)) {
    if (w->n == w->cap) {
      int cap = w->cap ? w->cap * 2 : 16;
      dirwatch_t *d = realloc(w->dirs, sizeof *d * (size_t)cap);
      if (!d) return;
      w->dirs = d;
      w->cap = cap;
    }
    w->dirs[w->n].wd = wd;
    w->dirs[w->n].path = strdup(path);
    w->n++;
  }
  DIR *d = opendir(path);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char child[PATH_MAX];
    if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child) continue;
    struct stat st;
    if (stat(child, &st) == 0 && S_ISDIR(st.st_mode)) add_tree(w, child, depth + 1);
  }
  closedir(d);
}

cr_watch_t *cr_watch_new(const char *root) {
  cr_watch_t *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd < 0) {
    free(w);
    return NULL;
  }
  add_tree(w, root, 0);
  return w;
}

void cr_watch_free(cr_watch_t *w) {
  if (!w) return;
  close(w->fd);
  for (int i = 0; i < w->n; i++) free(w->dirs[i].path);
  free(w->dirs);
  free(w);
}

int cr_watch_fd(const cr_watch_t *w) { return w->fd; }

int cr_watch_read(cr_watch_t *w) {
  char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
  int relevant = 0;
  for (;;) {
    ssize_t n = read(w->fd, buf, sizeof buf);
    if (n <= 0) break;
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *ev = (struct inotify_event *)p;
      p += sizeof *ev + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        relevant = 1; /* events were lost: a rescan sorts it out */
        continue;
      }
      if (ev->mask & IN_IGNORED) {
        for (int i = 0; i < w->n; i++) {
          if (w->dirs[i].wd == ev->wd) {
            free(w->dirs[i].path);
            w->dirs[i] = w->dirs[--w->n];
            break;
          }
        }
        continue;
      }
      const char *name = ev->len ? ev->name : "";
      if (ev->mask & IN_ISDIR) {
        relevant = 1;
        if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
          const char *dir = path_of(w, ev->wd);
          char child[PATH_MAX];
          if (dir && name[0] != '.' && snprintf(child, sizeof child, "%s/%s", dir, name) < (int)sizeof child)
            add_tree(w, child, 1);
        }
        continue;
      }
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        relevant = 1;
        continue;
      }
      /* A file: only .lua files matter, and a new one only once written. */
      size_t len = strlen(name);
      if (len < 5 || strcmp(name + len - 4, ".lua") != 0) continue;
      if (ev->mask & IN_CREATE) continue;
      relevant = 1;
    }
  }
  return relevant;
}
