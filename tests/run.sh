#!/usr/bin/env bash
# Run every test and print one closing line "N passed, N failed".
# Each test program prints TAP lines ("ok ..." / "not ok ..."); a program
# that exits non-zero without reporting a failure counts as one failure.
# Unit tests and fuzzers run one after the other; integration scripts run JOBS at a
# time (each uses its own temp dir and free ports; default 2, or 3 on a
# machine with 4 or more cores). Clusters are copies of one initdb template
# per run (build/pg-template, see tests/lib/pg.sh), rebuilt at each run.
# Usage: tests/run.sh [PATTERN]   (PATTERN filters test names)
set -u
cd "$(dirname "$0")/.."
pattern=${1:-}
cores=$(nproc 2>/dev/null || echo 2)
jobs=${JOBS:-$(( cores >= 4 ? 3 : 2 ))}
logs=build/test-logs
mkdir -p "$logs"
rm -f "$logs"/*.result
passed=0 failed=0
declare -a failures=()

selected() { [ -z "$pattern" ] || [[ "$1" == *"$pattern"* ]]; }

# Run one test into its log and write "ok notok seconds" to its .result.
run_one() {
  local name=$1; shift
  local log="$logs/${name//\//_}.log" start=$SECONDS rc ok notok
  CMOCKA_MESSAGE_OUTPUT=TAP timeout --kill-after=10 300 "$@" >"$log" 2>&1 </dev/null
  rc=$?
  ok=$(grep -cE '^ok ' "$log")
  notok=$(grep -cE '^not ok ' "$log")
  if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then
    notok=1
    echo "not ok - $name exited with status $rc" >>"$log"
  fi
  echo "$ok $notok $((SECONDS - start))" >"$log.result"
}

report() {
  local name=$1 log="$logs/${1//\//_}.log" ok notok secs
  read -r ok notok secs <"$log.result"
  passed=$((passed + ok)); failed=$((failed + notok))
  printf '%-44s %3d passed, %d failed  (%ds)\n' "$name" "$ok" "$notok" "$secs"
  if [ "$notok" -ne 0 ]; then
    failures+=("$name")
    grep -vE '^ok ' "$log" | sed 's/^/    | /' | tail -60
  fi
}

for t in build/tests/test_*; do
  [ -x "$t" ] && selected "unit/${t##*/}" && { run_one "unit/${t##*/}" "$t"; report "unit/${t##*/}"; }
done
# Sanitizers: stop at the first error, report leaks.
for t in build/tests-san/test_*; do
  [ -x "$t" ] && selected "asan/${t##*/}" && {
    ASAN_OPTIONS=abort_on_error=0:halt_on_error=1:detect_leaks=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 run_one "asan/${t##*/}" "$t"
    report "asan/${t##*/}"; }
done

# The rooms of src/: no include cycle between them (tests/layering.sh).
selected "lint/layering" && { run_one "lint/layering" tests/layering.sh; report "lint/layering"; }
# No function over 80 lines without a reason in a comment (tests/funclen.sh).
selected "lint/funclen" && { run_one "lint/funclen" tests/funclen.sh; report "lint/funclen"; }

# Fuzzers (tests/fuzz, built by make check when clang is there): each
# harness briefly from its seed corpus, one TAP line each.
for src in tests/fuzz/fuzz_*.c; do
  f=${src##*/fuzz_}; f=${f%.c}
  selected "fuzz/$f" && {
    FUZZ_FRESH=1 FUZZ_SECONDS=${FUZZ_SECONDS:-2} run_one "fuzz/$f" tests/fuzz/run.sh "$f"
    report "fuzz/$f"; }
done

declare -a names=() running=()
for t in tests/integration/t_*.sh; do
  name="integration/$(basename "$t" .sh)"
  [ -x "$t" ] && selected "$name" && names+=("$name")
done
# A fresh template per run (a new PostgreSQL build, a changed pg.sh).
export PG_TEMPLATE_DIR=$PWD/build/pg-template
[ ${#names[@]} -gt 0 ] && rm -rf "$PG_TEMPLATE_DIR"
for name in "${names[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  run_one "$name" "tests/integration/${name#integration/}.sh" &
done
wait
for name in "${names[@]}"; do report "$name"; done

# Again at the end, where a CI log that keeps only its tail still shows why.
for name in ${failures[@]+"${failures[@]}"}; do
  echo "why $name failed:"
  grep -E '^(not ok|Bail out|#)' "$logs/${name//\//_}.log" | grep -vE '^#   ' | tail -12 | sed 's/^/    | /'
done
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]} (logs in $logs/)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
