#!/usr/bin/env bash
# Run every test and print one closing line "N passed, N failed".
# Each test program prints TAP lines ("ok ..." / "not ok ..."); a program
# that exits non-zero without reporting a failure counts as one failure.
# Usage: tests/run.sh [PATTERN]   (PATTERN filters test names)
set -u
cd "$(dirname "$0")/.."
pattern=${1:-}
logs=build/test-logs
mkdir -p "$logs"
passed=0 failed=0
declare -a failures=()

run_one() {       # name, command...
  local name=$1; shift
  [ -n "$pattern" ] && [[ "$name" != *"$pattern"* ]] && return 0
  local log="$logs/${name//\//_}.log" start=$SECONDS rc
  CMOCKA_MESSAGE_OUTPUT=TAP timeout --kill-after=10 300 "$@" >"$log" 2>&1
  rc=$?
  local ok notok
  ok=$(grep -cE '^ok ' "$log")
  notok=$(grep -cE '^not ok ' "$log")
  if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then
    notok=1
    echo "not ok - $name exited with status $rc" >>"$log"
  fi
  passed=$((passed + ok)); failed=$((failed + notok))
  printf '%-44s %3d passed, %d failed  (%ds)\n' "$name" "$ok" "$notok" $((SECONDS - start))
  if [ "$notok" -ne 0 ]; then
    failures+=("$name")
    sed -n '1,400p' "$log" | grep -vE '^ok ' | sed 's/^/    | /' | tail -60
  fi
}

for t in build/tests/test_*; do [ -x "$t" ] && run_one "unit/${t##*/}" "$t"; done
# Sanitizers: abort on the first error, report leaks.
export ASAN_OPTIONS=abort_on_error=0:halt_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in build/tests-san/test_*; do [ -x "$t" ] && run_one "asan/${t##*/}" "$t"; done
unset ASAN_OPTIONS UBSAN_OPTIONS
for t in tests/integration/t_*.sh; do [ -x "$t" ] && run_one "integration/$(basename "$t" .sh)" "$t"; done

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]} (logs in $logs/)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
