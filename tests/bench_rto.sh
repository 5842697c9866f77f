#!/usr/bin/env bash
# tests/bench_rto.sh (`make bench`) - drd's failover figures (issue 3):
#   RTO: from the fault to the sample app's first successful write on the
#     backup, policy auto, drd's default probe settings (interval 1s,
#     timeout 1s, failures 3), the shipped runbooks. Two faults:
#     `pg_ctl stop -m immediate` of the primary, and the whole primary
#     cluster frozen (SIGSTOP of the postmaster and all its children).
#     Fault time = wall clock ms just before the fault; first write = the
#     `at` (the server's now(), same machine) of the first drd_app_writes
#     row on the backup by the app process the runbook started. Between
#     runs: the backup's sequence moved past the primary's (as a refresh's
#     bump-sequences would: the outage's ids never collide with rows the
#     primary took since the last failback), the primary restarted/thawed,
#     drd fences it, `drctl failback --yes`: sync-back brings the outage's
#     rows back, verify finds every backup row on the primary (which also
#     keeps its older rows, never copied to the backup, not refreshed here)
#     and passes; the app writes on the primary again.
#   preflight: the time of each run's first step, `preflight` (the
#     prerequisites of every step: commands, env file, the target reachable,
#     drd's privileges on both sides), failovers and failbacks; it is part
#     of the RTO above. Target <= 50 ms.
#   executor overhead: per failover run, the run's time (runs.created_at ->
#     finished_at) minus the sum of its steps' times (steps.started_at ->
#     finished_at): the executor's own time between steps. And a runbook of
#     10 `exec` steps running `true`, started by `drctl failover` (policy
#     manual): run time minus the cost of 10 x `/bin/sh -c true` (measured
#     by this script right after each run, under the same load) = all of
#     drd's time outside the commands; and run time minus the sum of the
#     steps' times = the time between steps.
# BENCH_RUNS runs per fault (default 5; BENCH_QUICK=1: 3), BENCH_TRIVIAL_RUNS
# runs of the trivial runbook (default 10). Everything runs in a temporary
# directory removed at exit (clusters, app and drd stopped, frozen thawed).
set -u
. "$(dirname "$0")/lib/pg.sh"
. "$(dirname "$0")/lib/drd.sh"
. "$(dirname "$0")/lib/failover.sh"

if [ "${BENCH_QUICK:-0}" = 1 ]; then RUNS=${BENCH_RUNS:-3}; else RUNS=${BENCH_RUNS:-5}; fi
TRIV_RUNS=${BENCH_TRIVIAL_RUNS:-10}
TRIV_STEPS=10
TARGET_STOP_MS=5000
TARGET_FREEZE_MS=6000
TARGET_OVERHEAD_MS=50
BENCH_LOG=$TEST_TMP/bench.log

for x in "$DRD" "$DRCTL" "$FO_APP_BIN"; do
  [ -x "$x" ] || { echo "bench: $x is not built (run make)" >&2; exit 1; }
done
for x in jq sqlite3 curl; do command -v $x >/dev/null || { echo "bench: $x is missing (make deps)" >&2; exit 1; }; done

say() { printf '%s\n' "$*"; }
die() {
  say "bench: $*" >&2
  [ -f "$DRD_LOG" ] && tail -n 25 "$DRD_LOG" | sed 's/^/  drd: /' >&2
  [ -f "$FO_APP_LOG" ] && tail -n 8 "$FO_APP_LOG" | sed 's/^/  app: /' >&2
  [ -f "$BENCH_LOG" ] && tail -n 10 "$BENCH_LOG" | sed 's/^/  drctl: /' >&2
  exit 1
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "drd bench (RTO): setting up two PostgreSQL clusters and the sample app in $TEST_TMP"
fo_clusters || die "cannot create the clusters"
fo_app_init || die "cannot prepare the app"
cleanup_add "fo_thaw primary"
# (fo_clusters created the app's table on both sides, as a real app's
# schema would be: the capture step covers it, and the first write on the
# backup does not include a CREATE.)
FO_STEPS=$(grep -c '^\[step ' "$DRD_ROOT/runbooks/failover.ini")
# drd's default probe settings. cooldown=1s (default 10s) only shortens the
# primary's recovery between runs (OPEN -> HALF_OPEN); block=1s (default 1h)
# lets the next run's outage fail over again. Neither plays a part in a
# failover: detection is interval x failures, the decision is immediate
# (min_outage 0s, the default).
fo_config "$TEST_TMP/drd.conf" probe.interval= probe.timeout= probe.failures= \
  probe.successes= probe.cooldown=1s failover.policy=auto failover.block=1s \
  log.level=info || die "drd_config"
fo_app_start || die "the sample app did not start"
poll_until 15 fo_rows_by_gt primary "$(fo_app_pid)" 2 || die "the app does not write on the primary"
drd_start || die "drd did not start"
drd_wait_healthy 15 || die "targets not healthy"
[ "$(drd_json .active)" = primary ] || die "drd: active is not the primary"

last_event_id() { drd_sql "SELECT coalesce(max(id),0) FROM events"; }
open_event_at() {
  drd_sql "SELECT at FROM events WHERE kind='breaker' AND target='primary' AND id>$1
           AND message LIKE '%-> open%' ORDER BY id LIMIT 1"
}
# first_write_ms NAME PID SINCE_MS: epoch ms of the first row on NAME by the
# app process PID at or after SINCE_MS (empty if none).
first_write_ms() {
  pg_psql "$1" "SELECT (extract(epoch FROM min(at)) * 1000)::bigint FROM drd_app_writes
                WHERE writer LIKE '%:$2' AND at >= to_timestamp($3 / 1000.0)" appdb 2>/dev/null
}
has_first_write() { [ -n "$(first_write_ms "$@")" ]; }
# run_gap ID: the run's time minus the sum of its steps' times (ms).
run_gap() {
  drd_sql "SELECT r.finished_at - r.created_at - coalesce(sum(s.finished_at - s.started_at), 0)
           FROM runs r LEFT JOIN steps s ON s.run_id = r.id AND s.started_at IS NOT NULL
           WHERE r.id = $1 GROUP BY r.id"
}
# preflight_ms ID: the time of run ID's preflight step (ms): started ->
# finished as persisted (with the fsync of its start); preflight_own_ms ID:
# the checks' own time, from the step's output ("preflight: N ms").
preflight_ms() { drd_sql "SELECT finished_at - started_at FROM steps WHERE run_id = $1 AND name = 'preflight'"; }
preflight_own_ms() {
  drd_sql "SELECT output FROM steps WHERE run_id = $1 AND name = 'preflight'" | sed -n 's/^preflight: \([0-9]*\)ms$/\1/p'
}
fence_done() { [ -z "$(drd_sql "SELECT value FROM kv WHERE key = 'fence_pending'")" ]; }
# failback_progress RUN: done when RUN is finished. It needs no human: an
# approval (a conflict, a failed step, a verify difference) stops the bench.
failback_progress() {
  local a step
  fo_run_finished "$1" && return 0
  IFS='|' read -r a step < <(drd_sql "SELECT a.id, s.name FROM approvals a
                                      LEFT JOIN steps s ON s.run_id = a.run_id AND s.idx = a.step_idx
                                      WHERE a.state = 'pending' AND a.run_id = $1 ORDER BY a.id LIMIT 1")
  [ -n "$a" ] &&
    die "failback run $1 waits on step ${step:-?}: $(drd_sql "SELECT prompt FROM approvals WHERE id = $a")"
  return 1
}
# bump_backup_seq: the backup's id sequence 1e9 past the primary's (the
# primary's was moved past the backup's by the last sync-back).
bump_backup_seq() {
  local last
  last=$(pg_psql primary "SELECT last_value FROM drd_app_writes_id_seq" appdb) &&
    PGOPTIONS='-c default_transaction_read_only=off' pg_psql backup "SELECT setval('drd_app_writes_id_seq', $last::bigint + 1000000000)" appdb >/dev/null
}
run_started_after() { [ "$(fo_last_run)" -gt "$1" ]; }

# rto_run MODE: one failover; sets R_RTO R_DETECT R_START R_GAP (ms), then
# puts everything back (app writing on the primary, both targets healthy).
rto_run() {
  local mode=$1 since last run app1 app2 app3 t0 first opened created fb
  drd_wait_healthy 30 || die "targets not healthy before a $mode run"
  app1=$(fo_app_pid)
  poll_until 15 fo_rows_by_gt primary "$app1" 0 || die "the app does not write on the primary"
  bump_backup_seq || die "cannot move the backup's sequence"
  since=$(last_event_id); last=$(fo_last_run)
  # a random phase between the fault and the probe schedule (0-999 ms)
  sleep "0.$(printf '%03d' $(( RANDOM % 1000 )))"
  t0=$(now_ms)
  case $mode in
    stop)   pg_crash primary || die "pg_ctl stop failed" ;;
    freeze) fo_freeze primary || die "kill -STOP failed" ;;
  esac
  poll_until 40 run_started_after "$last" || die "no failover run started ($mode)"
  run=$(fo_last_run)
  fo_wait_run_state 60 "$run" succeeded || die "failover run $run: $(fo_run_state "$run") ($mode)"
  app2=$(fo_app_pid)
  [ -n "$app2" ] && [ "$app2" != "$app1" ] || die "the app was not restarted"
  poll_until 15 has_first_write backup "$app2" "$t0" || die "the new app does not write on the backup"
  first=$(first_write_ms backup "$app2" "$t0")
  opened=$(open_event_at "$since")
  created=$(drd_sql "SELECT created_at FROM runs WHERE id = $run")
  R_RTO=$(( first - t0 )); R_DETECT=$(( opened - t0 )); R_START=$(( created - t0 ))
  R_GAP=$(run_gap "$run")
  R_PRE=$(preflight_ms "$run"); R_PRE_OWN=$(preflight_own_ms "$run")

  # ---- back to the start: primary up, fenced, failback, app on the primary
  case $mode in
    stop)   pg_start primary || die "cannot restart the primary" ;;
    freeze) fo_thaw primary ;;
  esac
  drd_wait_field 30 .targets.primary.breaker closed || die "the primary's breaker did not close"
  poll_until 15 fence_done || die "the returning primary was not fenced"
  fo_drctl failback --yes >>"$BENCH_LOG" 2>&1 || die "drctl failback failed"
  fb=$(fo_last_run)
  [ "$fb" -gt "$run" ] || die "no failback run"
  poll_until 60 failback_progress "$fb" || die "failback run $fb did not finish"
  [ "$(fo_run_state "$fb")" = succeeded ] || die "failback run $fb: $(fo_run_state "$fb")"
  R_PRE_FB=$(preflight_ms "$fb"); R_PRE_FB_OWN=$(preflight_own_ms "$fb")
  app3=$(fo_app_pid)
  poll_until 15 fo_rows_by_gt primary "${app3:-0}" 0 || die "the app does not write on the primary again"
  [ "$(drd_json .active)" = primary ] || die "active is not the primary after the failback"
}

# stats N...: "median min max"
stats() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%d %d %d\n", m, v[1], v[NR] }'
}
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }

declare -A res=() det=() start=()
all_gaps=(); all_pre=(); own_pre=()
t_bench=$(now_ms)
for mode in stop freeze; do
  label=$([ $mode = stop ] && echo "pg_ctl stop -m immediate" || echo "kill -STOP (whole cluster)")
  rto=(); d=(); s=()
  for (( i = 1; i <= RUNS; i++ )); do
    rto_run $mode
    rto+=("$R_RTO"); d+=("$R_DETECT"); s+=("$R_START"); all_gaps+=("$R_GAP")
    all_pre+=("${R_PRE:-0}" "${R_PRE_FB:-0}"); own_pre+=("${R_PRE_OWN:-0}" "${R_PRE_FB_OWN:-0}")
    say "  $label, run $i/$RUNS: RTO $(secs "$R_RTO") s (breaker open $(secs "$R_DETECT") s," \
        "run started $(secs "$R_START") s; executor between steps ${R_GAP} ms;" \
        "preflight ${R_PRE} ms (checks ${R_PRE_OWN} ms), failback's ${R_PRE_FB} ms (${R_PRE_FB_OWN} ms))"
  done
  res[$mode]=$(stats "${rto[@]}"); det[$mode]=$(stats "${d[@]}"); start[$mode]=$(stats "${s[@]}")
done

# ------------------------------------------- executor: 10 x exec true ----
say "  executor: $TRIV_RUNS runs of a runbook of $TRIV_STEPS exec steps running 'true'..."
drd_stop >/dev/null || true
fo_app_stop
TRIV_RB=$TEST_TMP/trivial.ini
{
  echo "# tests/bench_rto.sh: $TRIV_STEPS trivial exec steps"
  for (( i = 1; i <= TRIV_STEPS; i++ )); do
    printf '\n[step true-%d]\naction  = exec\ncommand = true\ntimeout = 10s\n' "$i"
  done
} >"$TRIV_RB"
drd_config "$TEST_TMP/trivial.conf" probe.interval= probe.timeout= probe.failures= \
  probe.successes= failover.policy=manual failover.runbook="$TRIV_RB" \
  state.db="$TEST_TMP/trivial.db" http.socket="$TEST_TMP/trivial.sock" log.level=info ||
  die "drd_config (trivial)"
drd_start || die "drd did not start (trivial runbook)"
drd_wait_healthy 15 || die "targets not healthy (trivial runbook)"
# The commands' own cost, measured right after each run (under the same
# load): $TRIV_STEPS x `/bin/sh -c true` one after the other, from fork to
# reaped, as this shell runs them (what drd runs for each step), in us.
sh_cost_us() {
  local a b j
  a=${EPOCHREALTIME//[!0-9]/}
  for (( j = 0; j < TRIV_STEPS; j++ )); do /bin/sh -c true; done
  b=${EPOCHREALTIME//[!0-9]/}
  echo $(( 10#$b - 10#$a ))
}
t_over=(); t_between=(); t_total=(); t_cmd=()
for (( i = 1; i <= TRIV_RUNS; i++ )); do
  fo_drctl failover --yes --reason "bench $i" >>"$BENCH_LOG" 2>&1 || die "drctl failover (trivial run $i) failed"
  n=$(fo_last_run)
  fo_wait_run_state 10 "$n" succeeded || die "trivial run $n: $(fo_run_state "$n")"
  cmd_us=$(sh_cost_us)
  IFS='|' read -r tot sum < <(drd_sql "SELECT r.finished_at - r.created_at, sum(s.finished_at - s.started_at)
                                        FROM runs r JOIN steps s ON s.run_id = r.id WHERE r.id = $n GROUP BY r.id")
  [ -n "$tot" ] && [ -n "$sum" ] || die "trivial run $n: no timings in the state db"
  pre=$(preflight_ms "$n")
  t_total+=("$tot"); t_cmd+=("$cmd_us")
  t_between+=($(( tot - sum )))
  # the preflight step (reported above) is not the executor's overhead
  t_over+=($(( tot - ${pre:-0} - (cmd_us + 500) / 1000 )))
done
drd_stop >/dev/null || true
read -r cmd_med _ _ <<<"$(stats "${t_cmd[@]}")"
bench_s=$(( ($(now_ms) - t_bench) / 1000 ))

# ------------------------------------------------------------- report ----
verdict() { [ "$1" -le "$2" ] && echo "ok" || echo "MISSED"; }
faster() { awk -v b="$1" 'BEGIN { b = b > 0 ? b : 1; printf "%.0f-%.0fx faster", 20000 / b, 40000 / b }'; }
row() { printf '  %-36s %-22s %-9s %-7s %s\n' "$@"; }
read -r sm smin smax <<<"${res[stop]}"
read -r fm fmin fmax <<<"${res[freeze]}"
read -r gm gmin gmax <<<"$(stats "${all_gaps[@]}")"
read -r om omin omax <<<"$(stats "${t_over[@]}")"
read -r pm pmin pmax <<<"$(stats "${all_pre[@]}")"
read -r qm qmin qmax <<<"$(stats "${own_pre[@]}")"
read -r bm bmin bmax <<<"$(stats "${t_between[@]}")"
read -r tm _ _ <<<"$(stats "${t_total[@]}")"
secs_ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
rng() { echo "$(secs "$1") s ($(secs "$2")-$(secs "$3"))"; }
med_s() { local m; read -r m _ _ <<<"$1"; secs "$m"; }

say ""
say "drd bench (RTO) - $(date -u +%FT%TZ) - $("$DRD" -V 2>/dev/null | head -1) - ${bench_s} s"
say "policy auto, drd's default probe settings (interval 1s, timeout 1s, failures 3),"
say "min_outage 0s; cooldown=1s and block=1s only speed up the reset between runs"
say "(neither affects a failover). Shipped runbooks, sample app writing every 100 ms."
say "RTO = the first row the restarted app writes on the backup (its server-side"
say "\`at\`) - the wall clock just before the fault; $RUNS runs each, random phase."
say ""
row "measure" "median (min-max)" "target" "" "vs baseline*"
row "RTO, pg_ctl stop -m immediate" "$(rng "$sm" "$smin" "$smax")" "<= 5 s" \
    "$(verdict "$sm" $TARGET_STOP_MS)" "$(faster "$sm")"
row "  breaker open / run started at" "$(med_s "${det[stop]}") s / $(med_s "${start[stop]}") s" "" "" ""
row "RTO, kill -STOP of the whole cluster" "$(rng "$fm" "$fmin" "$fmax")" "<= 6 s" \
    "$(verdict "$fm" $TARGET_FREEZE_MS)" "$(faster "$fm")"
row "  breaker open / run started at" "$(med_s "${det[freeze]}") s / $(med_s "${start[freeze]}") s" "" "" ""
row "preflight step (failover, failback)" "$pm ms ($pmin-$pmax)" "<= 50 ms" \
    "$(verdict "$pm" $TARGET_OVERHEAD_MS)" "$(( RUNS * 4 )) runs, part of the RTO"
row "  of which its checks" "$qm ms ($qmin-$qmax)" "" "" "the rest: persisting the step"
row "executor, failover run, between steps" "$gm ms ($gmin-$gmax)" "<= 50 ms" \
    "$(verdict "$gm" $TARGET_OVERHEAD_MS)" "$(( RUNS * 2 )) runs of $FO_STEPS steps"
row "executor, 10 x exec true, per run" "$om ms ($omin-$omax)" "<= 50 ms" \
    "$(verdict "$om" $TARGET_OVERHEAD_MS)" "run $tm ms - commands $(secs_ms "$cmd_med") ms"
row "  of which between steps" "$bm ms ($bmin-$bmax)" "" "" ""
say ""
say "  executor, 10 x exec true: $TRIV_RUNS runs; run time (created_at -> finished_at in"
say "  drd's SQLite file) minus the cost of 10 x \`/bin/sh -c true\` measured by this"
say "  script right after each run ($(secs_ms "$cmd_med") ms, median): drd's own work - the"
say "  step states persisted with synchronous=FULL, spawning, reaping, scheduling."
say "  'between steps' = run time - the sum of the steps' times (started -> finished)."
say "  Every run starts with drd's preflight step (its time is reported on its own"
say "  line and not counted as the executor's overhead)."
say "  Load average at start / end: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs):"
say "  these timings grow with the machine's load (fsync and scheduling latency)."
say "* baseline: a manual procedure budgets 5-10 minutes; pg_auto_failover and Patroni"
say "  take 20-40 s with their default settings (the ratio is against 20 s and 40 s)."
