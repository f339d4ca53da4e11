/* cron_tool.c - cron.h on standard input, for the cross-check against croniter (crosscheck.py):
 * each line "EXPR<TAB>TZ or -<TAB>AFTER_MS" prints "NEXT_MS" (-1: none) or "error: MESSAGE". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"

int main(void) {
  char line[1024];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = '\0';
    char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
    if (!tab2) {
      printf("error: bad line\n");
      continue;
    }
    *tab1 = *tab2 = '\0';
    const char *tz = strcmp(tab1 + 1, "-") == 0 ? NULL : tab1 + 1;
    char err[300];
    cr_cron_t *c = cr_cron_parse(line, tz, err, sizeof err);
    if (!c) {
      printf("error: %s\n", err);
      continue;
    }
    printf("%lld\n", (long long)cr_cron_next(c, strtoll(tab2 + 1, NULL, 10)));
    cr_cron_free(c);
  }
  return 0;
}
