#!/usr/bin/env bash
# tests/bench.sh (`make bench`) - drd's performance figures (issue 2):
#   detection: fault -> breaker OPEN, with the default probe settings
#     (interval 1s, timeout 1s, failures 3), for `pg_ctl stop -m immediate`
#     and for a hung server (postmaster SIGSTOP), BENCH_RUNS runs each
#     (default 5). OPEN time = the `at` of the breaker event in drd's SQLite
#     file, fault time = wall clock ms at injection.
#   footprint: drd's RSS and CPU over BENCH_IDLE_SECONDS (default 60) idle
#     with both targets up.
# Everything runs in a temporary directory removed at exit.
set -u
. "$(dirname "$0")/lib/pg.sh"
. "$(dirname "$0")/lib/drd.sh"

RUNS=${BENCH_RUNS:-5}
IDLE=${BENCH_IDLE_SECONDS:-60}
BASELINE_MS=20000          # pg_auto_failover's default detection, ~20 s
TARGET_STOP_MS=3500
TARGET_FREEZE_MS=4500
TARGET_RSS_KIB=$(( 8 * 1024 ))
TARGET_CPU_PCT=1

for x in "$DRD" "$DRCTL"; do [ -x "$x" ] || { echo "bench: $x is not built (run make)" >&2; exit 1; }; done
for x in jq sqlite3; do command -v $x >/dev/null || { echo "bench: $x is missing (make deps)" >&2; exit 1; }; done

say() { printf '%s\n' "$*"; }
die() { say "bench: $*" >&2; [ -f "$DRD_LOG" ] && tail -n 20 "$DRD_LOG" | sed 's/^/  drd: /' >&2; exit 1; }

say "drd bench: setting up two PostgreSQL clusters in $TEST_TMP"
for c in primary backup; do
  { pg_new $c >/dev/null && pg_start $c; } || die "cannot create cluster $c"
done
# Probe settings: drd's defaults. cooldown=1s only shortens the recovery
# between runs (OPEN -> HALF_OPEN); it plays no part in detection.
drd_config "$TEST_TMP/drd.conf" probe.interval= probe.timeout= probe.failures= \
  probe.successes= probe.cooldown=1s log.level=info || die "drd_config"
drd_start || die "drd did not start"
drd_wait_healthy 15 || die "targets not healthy"
pid=$DRD_PID

last_event_id() { drd_sql "SELECT coalesce(max(id),0) FROM events"; }
open_event_at() {
  drd_sql "SELECT at FROM events WHERE kind='breaker' AND target='primary' AND id>$1
           AND message LIKE '%-> open%' ORDER BY id LIMIT 1"
}
has_open_event() { [ -n "$(open_event_at "$1")" ]; }

# measure MODE: one detection run; prints the detection time in ms.
measure() {
  local mode=$1 since t0 at
  drd_wait_healthy 30 || die "primary did not recover before a $mode run"
  # a random phase between the fault and the probe schedule (0-999 ms)
  sleep "0.$(printf '%03d' $(( RANDOM % 1000 )))"
  since=$(last_event_id)
  t0=$(now_ms)
  case $mode in
    stop)   pg_crash primary || die "pg_ctl stop failed" ;;
    freeze) pg_freeze primary || die "kill -STOP failed" ;;
  esac
  poll_until 30 has_open_event "$since" || die "breaker did not open ($mode)"
  at=$(open_event_at "$since")
  case $mode in
    stop)   pg_start primary || die "cannot restart the primary" ;;
    freeze) pg_thaw primary ;;
  esac
  echo $(( at - t0 ))
}

# stats N...: "median min max" (ms)
stats() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%d %d %d\n", m, v[1], v[NR] }'
}
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }

declare -A res=()
for mode in stop freeze; do
  label=$([ $mode = stop ] && echo "pg_ctl stop -m immediate" || echo "kill -STOP postmaster")
  vals=()
  for (( i = 1; i <= RUNS; i++ )); do
    v=$(measure $mode) || exit 1
    vals+=("$v")
    say "  $label, run $i/$RUNS: $(secs "$v") s"
  done
  res[$mode]=$(stats "${vals[@]}")
done

drd_wait_healthy 30 || die "targets not healthy before the idle measurement"
say "  footprint: measuring drd (pid $pid) idle for $IDLE s..."
hz=$(getconf CLK_TCK)
cpu_ticks() { local s; read -r s <"/proc/$pid/stat"; s=${s##*) }; set -- $s; echo $(( ${12} + ${13} )); }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status"; }
c0=$(cpu_ticks); t0=$(now_ms); rss_max=0
while (( $(now_ms) - t0 < IDLE * 1000 )); do
  r=$(rss_kib); (( r > rss_max )) && rss_max=$r
  sleep 1
done
c1=$(cpu_ticks); t1=$(now_ms)
rss=$(rss_kib); hwm=$(hwm_kib)
# RSS counts the shared libraries' resident pages (libcrypto, libc, sqlite,
# gnutls ... are shared with every other process that maps them); the
# private part (RssAnon) and the proportional share (Pss) say what drd costs.
anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status")
pss=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null)
cpu_pct=$(awk -v t=$(( c1 - c0 )) -v hz="$hz" -v ms=$(( t1 - t0 )) 'BEGIN { printf "%.3f", t / hz / (ms / 1000) * 100 }')
drd_stop >/dev/null

# The same crash with [probe] confirm_interval = 200ms: an idle connection
# per target, and quick confirmation probes when the server drops it.
drd_config "$TEST_TMP/drd.conf" probe.interval= probe.timeout= probe.failures= \
  probe.successes= probe.cooldown=1s probe.confirm_interval=200ms log.level=info || die "drd_config"
drd_start || die "drd did not start (confirm_interval)"
drd_wait_healthy 15 || die "targets not healthy (confirm_interval)"
sleep 1                          # let the idle watch connections come up
vals=()
for (( i = 1; i <= RUNS; i++ )); do
  v=$(measure stop) || exit 1
  vals+=("$v")
  say "  pg_ctl stop -m immediate, confirm_interval=200ms, run $i/$RUNS: $(secs "$v") s"
done
res[fast]=$(stats "${vals[@]}")
drd_stop >/dev/null
lat=$(drd_sql "SELECT target || ' ' || (sum(latency_sum_ms) * 1.0 / max(sum(probes), 1))
               FROM probe_minutes GROUP BY target ORDER BY target" 2>/dev/null | awk '{ printf "%s %.1f ms, ", $1, $2 }')
[ -n "$lat" ] || lat="n/a (no per-minute aggregates written yet)"

verdict() { [ "$1" -le "$2" ] && echo "ok" || echo "MISSED"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
faster() { awk -v a=$BASELINE_MS -v b="$1" 'BEGIN { printf "%.1fx", a / (b > 0 ? b : 1) }'; }
read -r sm smin smax <<<"${res[stop]}"
read -r fm fmin fmax <<<"${res[freeze]}"
cpu_ok=$(awk -v c="$cpu_pct" -v t=$TARGET_CPU_PCT 'BEGIN { print (c <= t) ? "ok" : "MISSED" }')
row() { printf '  %-30s %-26s %-10s %-7s %s\n' "$@"; }

say ""
say "drd bench - $(date -u +%FT%TZ) - $("$DRD" -V 2>/dev/null | head -1)"
say "probe settings: drd's defaults (interval 1s, timeout 1s, failures 3), cooldown=1s"
say "(cooldown only shortens the recovery between runs; it does not affect detection)."
say "detection = breaker OPEN event time (drd's SQLite file) - fault injection time;"
say "$RUNS runs each, random phase between fault and probe schedule."
say ""
row "measure" "median (min-max)" "target" "" "vs baseline*"
row "detection, stop -m immediate" "$(secs "$sm") s ($(secs "$smin")-$(secs "$smax"))" \
    "<= 3.5 s" "$(verdict "$sm" $TARGET_STOP_MS)" "$(faster "$sm") faster"
row "detection, kill -STOP (hung)" "$(secs "$fm") s ($(secs "$fmin")-$(secs "$fmax"))" \
    "<= 4.5 s" "$(verdict "$fm" $TARGET_FREEZE_MS)" "$(faster "$fm") faster"
read -r qm qmin qmax <<<"${res[fast]}"
row "  stop, confirm_interval=200ms" "$(secs "$qm") s ($(secs "$qmin")-$(secs "$qmax"))" \
    "< 1 s (stretch)" "$(verdict "$qm" 1000)" "$(faster "$qm") faster"
row "RSS, idle ${IDLE} s" "$(mib "$rss") MiB (max $(mib "$rss_max"))" \
    "<= 8 MiB" "$(verdict "$rss_max" $TARGET_RSS_KIB)" "peak VmHWM $(mib "$hwm") MiB"
row "  of which private (RssAnon)" "$(mib "$anon") MiB" "" "" "Pss $(mib "${pss:-0}") MiB"
row "CPU, idle ${IDLE} s" "$cpu_pct % of one core" "<= ${TARGET_CPU_PCT} %" "$cpu_ok" "$(( c1 - c0 )) ticks at $hz Hz"
row "probe latency, mean" "${lat%, }" "" "" ""
say ""
say "  (probe latency: all probes, the primary's include its faults - timeouts count 1 s)"
say "* baseline: pg_auto_failover's default detection, about 20 s (Patroni ~30 s, repmgr ~60 s)."
