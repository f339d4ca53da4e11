#!/bin/sh
# conflict_markers.sh DIR - fails when a file under DIR (its tracked sources and docs) still holds a
# merge's conflict markers: a line starting with seven '<', '=' between them, or '>'.
# Run by ctest (lint_conflict_markers) so a half-resolved merge cannot pass the suite.
set -eu
cd "$1"
found=$(grep -rnE '^(<<<<<<<|>>>>>>>)( |$)' --include='*.c' --include='*.h' --include='*.lua' \
  --include='*.md' --include='*.txt' --include='*.sh' --include='*.py' --include='Makefile' \
  --exclude-dir=build --exclude-dir=.git . || true)
if [ -n "$found" ]; then
  echo "conflict markers left by a merge:"
  echo "$found"
  exit 1
fi
echo "no conflict markers"
