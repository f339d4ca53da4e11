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

#include "alloc.h"
#include "log.h"

#define MASK                                                                                          \
  (IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_DELETE_SELF | \
   IN_MOVE_SELF)
#define MAX_DEPTH 16

typedef struct {
  int wd;
  char *path; /* absolute or as given, without a trailing slash */
} dirwatch_t;

struct cr_watch_s {
  int fd;
  char *root;
  dirwatch_t *dirs;
  int n, cap;
  char **writing; /* relpaths modified and not closed yet */
  int nwriting, capwriting;
};

static void writing_set(cr_watch_t *w, const char *rel, int on) {
  for (int i = 0; i < w->nwriting; i++) {
    if (strcmp(w->writing[i], rel) == 0) {
      if (!on) {
        free(w->writing[i]);
        w->writing[i] = w->writing[--w->nwriting];
      }
      return;
    }
  }
  if (!on) return;
  if (w->nwriting == w->capwriting) {
    w->capwriting = w->capwriting ? w->capwriting * 2 : 8;
    w->writing = cr_xrealloc(w->writing, sizeof(char *) * (size_t)w->capwriting);
  }
  w->writing[w->nwriting++] = cr_xstrdup(rel);
}

int cr_watch_writing(const cr_watch_t *w, const char *relpath) {
  for (int i = 0; w && i < w->nwriting; i++)
    if (strcmp(w->writing[i], relpath) == 0) return 1;
  return 0;
}

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
  int known = 0;
  for (int i = 0; i < w->n; i++) {
    if (w->dirs[i].wd == wd) {
      /* A watched folder moved here: it keeps its watch, under its new path. */
      if (strcmp(w->dirs[i].path, path) != 0) {
        free(w->dirs[i].path);
        w->dirs[i].path = cr_xstrdup(path);
      }
      known = 1;
    }
  }
  if (!known) {
    if (w->n == w->cap) {
      w->cap = w->cap ? w->cap * 2 : 16;
      w->dirs = cr_xrealloc(w->dirs, sizeof *w->dirs * (size_t)w->cap);
    }
    w->dirs[w->n].wd = wd;
    w->dirs[w->n].path = cr_xstrdup(path);
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
  cr_watch_t *w = cr_xcalloc(1, sizeof *w);
  w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd < 0) {
    free(w);
    return NULL;
  }
  w->root = cr_xstrdup(root);
  add_tree(w, root, 0);
  return w;
}

void cr_watch_free(cr_watch_t *w) {
  if (!w) return;
  close(w->fd);
  for (int i = 0; i < w->n; i++) free(w->dirs[i].path);
  free(w->dirs);
  for (int i = 0; i < w->nwriting; i++) free(w->writing[i]);
  free(w->writing);
  free(w->root);
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
      const char *dir = path_of(w, ev->wd);
      size_t rl = strlen(w->root);
      char rel[PATH_MAX];
      if (dir && strncmp(dir, w->root, rl) == 0 &&
          snprintf(rel, sizeof rel, "%s%s%s", dir[rl] ? dir + rl + 1 : "", dir[rl] ? "/" : "", name) < (int)sizeof rel) {
        if (ev->mask & IN_MODIFY) {
          writing_set(w, rel, 1);
          continue; /* its close is the event that counts */
        }
        writing_set(w, rel, 0);
      }
      relevant = 1;
    }
  }
  return relevant;
}
