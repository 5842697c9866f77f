#!/usr/bin/env bash
# The rooms of src/ and the one-way dependencies between them.
# Every `#include "drd/ROOM/x.h"` in src/FROM/ is an edge FROM -> ROOM; the
# edges must form no cycle (tsort finds one). Prints the graph as TAP, so
# tests/run.sh counts it; `make lint` runs it too.
set -u
cd "$(dirname "$0")/.."
edges=$(for f in src/*/*.[ch] include/drd/*/*.h; do
  case $f in include/*) from=${f#include/drd/} ;; *) from=${f#src/} ;; esac
  from=${from%%/*}
  grep -oE '^#include "drd/[a-z]+/' "$f" | sed -E 's|.*"drd/([a-z]+)/|\1|' |
    while read -r to; do [ "$to" != "$from" ] && echo "$from $to"; done
done | sort -u)
echo "1..2"
if loops=$(echo "$edges" | tsort 2>&1 >/dev/null) && [ -z "$loops" ]; then
  echo "ok 1 - no include cycle between the rooms of src/"
else
  echo "not ok 1 - include cycle between the rooms of src/:"
  echo "$loops" | sed 's/^/#   /'
fi
echo "$edges" | awk '{a[$1]=a[$1] " " $2} END {for (k in a) print "#   " k " ->" a[k]}' | sort
flat=$(ls src/*.c src/*.h include/drd/*.h 2>/dev/null)
if [ -z "$flat" ]; then echo "ok 2 - every source file sits in a room"
else echo "not ok 2 - files outside a room: $flat"; fi
