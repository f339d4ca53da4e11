/* watch.h - noticing changes under the functions folder (inotify, recursive).
 *
 * Every folder under the root is watched, folders made later too. The watch
 * only says "something changed" (cr_watch_read returns 1); the master then
 * waits for the changes to settle (an editor's write-rename dance, a cp of a
 * big file) and rescans, comparing contents. Files are noticed when a writer
 * closes them or they are moved in, never while half written. */
#ifndef CR_WATCH_H
#define CR_WATCH_H

typedef struct cr_watch_s cr_watch_t;

/* Watches root and every folder under it. NULL if inotify is unavailable. */
cr_watch_t *cr_watch_new(const char *root);
void cr_watch_free(cr_watch_t *w);
/* The inotify descriptor, to poll for input. */
int cr_watch_fd(const cr_watch_t *w);
/* Reads pending events (new folders get watched). Returns 1 if any is about
 * a .lua file or a folder, 0 otherwise. */
int cr_watch_read(cr_watch_t *w);
/* Is relpath (relative to the root) being written: modified, not closed
 * yet? A rescan leaves such a file alone; its close brings another. */
int cr_watch_writing(const cr_watch_t *w, const char *relpath);

#endif
