#!/usr/bin/env bash
# Run libFuzzer harnesses (built by `make fuzz-build` into build/fuzz/) and
# print one TAP line per harness:
#   ok - fuzz/config: 9645 runs, 482 exec/s, corpus 37 files
# Each runs for FUZZ_SECONDS (default 10) from its committed seeds in
# tests/fuzz/corpus/NAME; what it finds new goes to build/fuzz/corpus/NAME
# (not committed), a failing input to build/fuzz/artifacts/NAME/, the whole
# output to build/fuzz/logs/NAME.log. Any finding (crash, leak, UBSan,
# timeout, broken property) is "not ok" and the script exits 1.
# FUZZ_FRESH=1 starts from the seeds alone (new inputs then go to
# build/fuzz/fresh/NAME, emptied first): what make check does.
# Without clang (no harness built and no compiler) every harness is a TAP
# skip. Usage: tests/fuzz/run.sh [NAME...]   (default: every harness)
set -u
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-10}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.c; do
    n=${src##*/fuzz_}
    names+=("${n%.c}")
  done
fi

rc=0
for name in "${names[@]}"; do
  bin=build/fuzz/fuzz_$name seeds=tests/fuzz/corpus/$name
  corpus=build/fuzz/corpus/$name artifacts=build/fuzz/artifacts/$name
  if [ -n "${FUZZ_FRESH:-}" ]; then
    # from the seeds alone (make check: the same start every time)
    corpus=build/fuzz/fresh/$name
    rm -rf "$corpus"
  fi
  log=build/fuzz/logs/$name.log
  if [ ! -x "$bin" ]; then
    if ! command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1; then
      echo "ok - fuzz/$name # SKIP clang is not installed"
      continue
    fi
    echo "not ok - fuzz/$name: $bin is not built (make fuzz-build)"
    rc=1
    continue
  fi
  mkdir -p "$corpus" "$artifacts" "${log%/*}" "$seeds"
  # -timeout: one input taking this long is a finding (a hang).
  # -rss_limit_mb: so is a memory blow-up.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$bin" "$corpus" "$seeds" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 </dev/null
  status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  files=$(find "$corpus" -type f | wc -l) nseeds=$(find "$seeds" -type f | wc -l)
  if [ "$status" -eq 0 ] && [ -n "$runs" ]; then
    echo "ok - fuzz/$name: ${runs} runs, ${speed:-?} exec/s, corpus $files new + $nseeds seeds"
  else
    rc=1
    art=$(ls -t "$artifacts" 2>/dev/null | head -1)
    echo "not ok - fuzz/$name: finding (exit $status)${art:+, input $artifacts/$art}; log $log"
    grep -E 'ERROR|SUMMARY|property broken|runtime error|#[0-9]+ 0x' "$log" | head -30 | sed 's/^/# /'
  fi
done
exit $rc
