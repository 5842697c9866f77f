#!/usr/bin/env bash
# tests/bench_frozen.sh (`make bench`) - a frozen primary failed over, with
# [refresh] mode = off and mode = logical side by side (issue 13, item 5).
#   The primary is frozen (SIGSTOP of the postmaster and all its children)
#   while a second client, outside the app, still writes to it in big
#   transactions (in logical mode the freeze catches the apply worker in the
#   middle of one). Policy auto, drd's default probe settings, the shipped
#   runbooks. RTO = the first row the restarted app writes on the backup (its
#   server-side `at`) - the wall clock just before the freeze; also when the
#   breaker opened, and the stop-replication step's time (logical).
# Each run is a fresh pair of clusters (a copy of the run's initdb template),
# set up by this script calling itself with --one MODE. BENCH_RUNS runs per
# mode (default 5; BENCH_QUICK=1: 3).
set -u
if [ "${1:-}" != --one ]; then
  if [ "${BENCH_QUICK:-0}" = 1 ]; then RUNS=${BENCH_RUNS:-3}; else RUNS=${BENCH_RUNS:-5}; fi
  LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
  declare -A rto=() det=() sr=()
  for mode in off logical; do
    for (( i = 1; i <= RUNS; i++ )); do
      line=$("$0" --one "$mode" | tail -n 1)
      case $line in
        result*) read -r _ r d s <<<"$line" ;;
        *) echo "bench_frozen: $mode run $i failed: $line" >&2; exit 1 ;;
      esac
      rto[$mode]+="$r "; det[$mode]+="$d "; sr[$mode]+="$s "
      printf '  frozen primary, refresh %s, run %d/%d: RTO %d ms (breaker open %d ms, stop-replication %s ms)\n' \
        "$mode" "$i" "$RUNS" "$r" "$d" "$s"
    done
  done
  med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.2f s (%.2f-%.2f)", m / 1000, v[1] / 1000, v[NR] / 1000 }'; }
  med1() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END {
    printf "%d", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  off_ms=$(med1 "${rto[off]}"); log_ms=$(med1 "${rto[logical]}"); log_det=$(med1 "${det[logical]}")
  echo
  echo "drd bench (frozen primary, a second client writing to it) - $(date -u +%FT%TZ) - $RUNS runs per mode"
  printf '  %-38s %-24s %s\n' "measure" "median (min-max)" "target"
  printf '  %-38s %-24s %s\n' "RTO, refresh off" "$(med "${rto[off]}")" "<= 6 s"
  printf '  %-38s %-24s %s\n' "  breaker open at" "$(med "${det[off]}")" ""
  printf '  %-38s %-24s %s\n' "RTO, refresh logical" "$(med "${rto[logical]}")" "<= 5 s ($([ "$log_ms" -le 5000 ] && echo ok || echo MISSED))"
  printf '  %-38s %-24s %s\n' "  breaker open at" "$(med "${det[logical]}")" ""
  printf '  %-38s %-24s %s\n' "  stop-replication step" "$(med1 "${sr[logical]}") ms" ""
  printf '  %-38s %s\n' "logical vs off (RTO)" \
    "$(awk -v a="$log_ms" -v b="$off_ms" 'BEGIN { printf "%.2fx (%+d ms)", a / (b > 0 ? b : 1), a - b }')"
  printf '  %-38s %s\n' "logical: RTO - breaker open (medians)" "$(( log_ms - log_det )) ms (target <= 500 ms: $([ $(( log_ms - log_det )) -le 500 ] && echo ok || echo MISSED))"
  echo "  Load average at start / end: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)."
  exit 0
fi

# ---- one run: --one off|logical; last line "result RTO_MS OPEN_MS STOPREPL_MS"
MODE=$2
. "$(dirname "$0")/lib/pg.sh"
. "$(dirname "$0")/lib/drd.sh"
. "$(dirname "$0")/lib/failover.sh"
fail() { echo "error: $*"; exit 1; }
RC=$DRD_ROOT/build/tools/refresh_check
[ -x "$RC" ] || fail "$RC not built (run make)"
if [ "$MODE" = logical ]; then
  { pg_new primary && pg_conf primary "wal_level = logical" && pg_start primary && fo_cluster_prepare primary; } >/dev/null ||
    fail "cannot start the primary"
  { pg_new backup && pg_conf backup "wal_retrieve_retry_interval = 1s" && pg_start backup && fo_cluster_prepare backup; } >/dev/null ||
    fail "cannot start the backup"
else
  fo_clusters >/dev/null || fail "cannot create the clusters"
fi
fo_app_init >/dev/null || fail "cannot prepare the app"
cleanup_add "fo_thaw primary"
fo_config "$TEST_TMP/drd.conf" probe.interval= probe.timeout= probe.failures= probe.successes= \
  failover.policy=auto refresh.mode="$MODE" refresh.dir="$TEST_TMP/dumps" \
  refresh.every=24h log.level=info >/dev/null || fail "drd_config"
if [ "$MODE" = logical ]; then
  timeout 60 "$RC" -c "$DRD_CONF" run manual >/dev/null 2>&1 || fail "logical replication set up"
fi
fo_app_start || fail "the app did not start"
drd_start >/dev/null || fail "drd did not start"
drd_wait_healthy 15 || fail "targets not healthy"
poll_until 15 fo_rows_by_gt primary "$(fo_app_pid)" 2 || fail "the app does not write on the primary"
( while :; do
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port primary)" -U app -d appdb \
      -c "INSERT INTO drd_app_writes (writer, seq) SELECT 'other client', g FROM generate_series(1, 50000) g" \
      >/dev/null 2>&1
  done ) &
proc_track $!
# the second client commits on the primary (and, logical, its rows reach the backup)
side=primary; [ "$MODE" = logical ] && side=backup
poll_until 20 eval '[ "$(pg_psql '$side' "SELECT count(*) FROM drd_app_writes WHERE writer = '"'other client'"'" appdb)" -gt 5 ]' ||
  fail "the second client's rows do not reach the $side"
app1=$(fo_app_pid)
sleep "0.$(printf '%03d' $(( RANDOM % 1000 )))"   # a random phase against the probes
t0=$(now_ms)
fo_freeze primary || fail "kill -STOP failed"
poll_until 45 eval '[ "$(fo_last_run)" -ge 1 ] && fo_run_finished 1' || fail "no failover run finished"
[ "$(fo_run_state 1)" = succeeded ] || fail "run 1: $(fo_run_state 1)"
first_write() {
  pg_psql backup "SELECT (extract(epoch FROM min(at)) * 1000)::bigint FROM drd_app_writes
                  WHERE writer LIKE '%:$1' AND at >= to_timestamp($t0 / 1000.0)" appdb 2>/dev/null
}
app2=$(fo_app_pid)
[ -n "$app2" ] && [ "$app2" != "$app1" ] || fail "the app was not restarted"
poll_until 15 eval '[ -n "$(first_write "$app2")" ]' || fail "the app does not write on the backup"
opened=$(drd_sql "SELECT at FROM events WHERE kind='breaker' AND target='primary' AND message LIKE '%-> open%' ORDER BY id LIMIT 1")
srm=$(drd_sql "SELECT finished_at - started_at FROM steps WHERE run_id = 1 AND name = 'stop-replication'")
echo "result $(( $(first_write "$app2") - t0 )) $(( opened - t0 )) ${srm:--}"
