#!/usr/bin/env bash
# t_crash_resume.sh - "crash at every step": a failover runbook of slow
# steps that leave marker files (exec one, exec two, switch-env, exec
# three). For each step in turn, a fresh run is started (policy manual, POST
# /api/failover), drd is killed with SIGKILL while that step is `running`,
# and restarted:
#  - an exec step -> needs_attention with a pending attention approval, the
#    step not run again meanwhile; `drctl approve ID --skip` (it did run)
#    or `drctl approve ID` (retry: it runs once more, on purpose) -> the
#    run completes; every marker file has exactly one line per run of its
#    step, i.e. no exec step ran twice without a human saying so;
#  - switch-env on an env file that is a FIFO -> fails at once, drd's loop
#    never blocks on it;
#  - switch-env killed right after its rename (strace delays the return of
#    drd's 2nd rename(2) - the 1st writes .drd-prev; skipped without
#    strace) -> the re-run is a no-op and .drd-prev still holds the
#    original content.
#  - an approve step waiting for a human -> the same approval is still
#    pending after the restart; approving it completes the run.
# Each iteration starts from a fresh state database and the original env
# file.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
B_URL=$(fo_app_url backup)
W=$TEST_TMP/markers
RB=$TEST_TMP/failover.ini
STEP_S=1
cat >"$RB" <<EOF
[step one]
action  = exec
command = echo ran >>$W/one; sleep $STEP_S

[step two]
action  = exec
command = echo ran >>$W/two; sleep $STEP_S

[step switch]
action  = switch-env
target  = backup

[step three]
action  = exec
command = echo ran >>$W/three; sleep $STEP_S
EOF

lines() { [ -f "$W/$1" ] && wc -l <"$W/$1" || echo 0; }
markers() { echo "one=$(lines one) two=$(lines two) three=$(lines three)"; }
step_running() { [ "$(fo_step "$RUN" "$1" state)" = running ]; }

# fresh ITER: a new state database, the original env file, no markers, drd
# started and healthy.
fresh() {
  drd_stop TERM 5 >/dev/null 2>&1
  rm -rf "$W"; mkdir -p "$W"
  rm -f "$FO_ENV" "$FO_ENV.drd-prev"
  cp "$FO_APP_DIR/app.env.orig" "$FO_ENV"
  fo_config "$TEST_TMP/drd.conf" failover.policy=manual failover.runbook="$RB" \
    state.db="$TEST_TMP/drd-$1.db" || bail_out "drd_config"
  drd_start || bail_out "drd did not start ($1)"
  drd_wait_healthy 15 || { diag "$1: targets not healthy"; return 1; }
}

# start_run: POST /api/failover over the socket; waits for the run to
# exist; sets RUN.
start_run() {
  local r
  r=$(drd_api /api/failover -X POST -H 'Content-Type: application/json' -d '{"reason":"crash test"}')
  [ "${r##*$'\n'}" = "HTTP 202" ] || { diag "POST /api/failover: $r"; return 1; }
  poll_until 10 eval '[ "$(fo_last_run)" -ge 1 ]' || return 1
  RUN=$(fo_last_run)
}

# kill_at STEP: wait until STEP runs, then SIGKILL drd.
kill_at() {
  poll_until 20 step_running "$1" || { diag "step $1 never ran"; fo_diag; return 1; }
  drd_kill9
}
# crash_at STEP: kill_at STEP, then start drd again.
crash_at() { kill_at "$1" && drd_start; }

# ------------------------------------------------ crash during an exec ----
# crash_exec STEP CHOICE(skip|retry)
crash_exec() {
  local step=$1 choice=$2 aid out rc want
  fresh "$step-$choice" || { fail "$step: set-up"; return; }
  start_run || { fail "$step: the run starts"; return; }
  crash_at "$step"; ok $? "[$step] drd killed (-9) while $step was running, restarted"
  poll_until 15 fo_step_is "$RUN" "$step" state needs_attention
  ok $? "[$step] after the restart $step needs attention" || { fo_diag; return; }
  aid=$(fo_pending_approval attention)
  [ -n "$aid" ]; ok $? "[$step] a pending attention approval (${aid:-none})"
  is "$(drd_sql "SELECT step_idx FROM approvals WHERE id = ${aid:-0}")" \
     "$(drd_sql "SELECT idx FROM steps WHERE run_id = $RUN AND name = '$step'")" "[$step] ... for that step"
  is "$(fo_run_state "$RUN")" waiting "[$step] the run waits"
  is "$(lines "$step")" 1 "[$step] the step was not run again by itself (1 line in its marker)"
  # the steps after it have not started
  is "$(drd_sql "SELECT count(*) FROM steps WHERE run_id = $RUN AND idx > (SELECT idx FROM steps
        WHERE run_id = $RUN AND name = '$step') AND state <> 'pending'")" 0 "[$step] nothing after it started"
  if [ "$choice" = skip ]; then
    out=$(fo_drctl approve "${aid:-0}" --skip 2>&1); rc=$?
  else
    out=$(fo_drctl approve "${aid:-0}" 2>&1); rc=$?
  fi
  local how="drctl approve $aid"
  [ "$choice" = skip ] && how="$how --skip"
  like "$out" "run $RUN succeeded" "[$step] $how: the run completes" ||
    { diag "$out"; fo_diag; }
  if [ "$choice" = skip ]; then
    is "$(fo_step "$RUN" "$step" state)" skipped "[$step] the step is skipped"
  else
    is "$(fo_step "$RUN" "$step" state)|$(fo_step "$RUN" "$step" attempts)" "done|2" \
      "[$step] the step ran again (retry): done, attempts 2"
  fi
  want="one=1 two=1 three=1"
  [ "$choice" = retry ] && want=${want/$step=1/$step=2}
  is "$(markers)" "$want" "[$step] markers: each step ran once$([ "$choice" = retry ] && echo ", $step twice (retry approved)")"
  is "$(fo_env_url)" "$B_URL" "[$step] env file: the backup"
  is "$(drd_json .active)" backup "[$step] status: active=backup"
}

crash_exec one skip
crash_exec two retry
crash_exec three skip

# ------------------------------- switch-env on a FIFO never blocks ----
# An env file that is not a regular file (here a FIFO, which a blocking
# open would wait on forever) fails the step at once and leaves drd's loop
# free; the crash inside switch-env itself is the strace case below.
fresh switch-fifo || fail "switch: set-up"
rm -f "$FO_ENV"; mkfifo "$FO_ENV"
start_run || fail "switch: the run starts"
# the run's preflight sees it first and waits before anything ran; skip
# it, so that switch-env itself meets the FIFO
poll_until 20 fo_has_pending_approval attention
ok $? "[switch] the preflight stops the run before any step" || fo_diag
like "$(fo_step "$RUN" preflight error)" "not a regular file" "[switch] ... naming the env file"
is "$(markers)" "one=0 two=0 three=0" "[switch] ... nothing ran"
drctl approve "$(fo_pending_approval attention)" --skip >/dev/null 2>&1
poll_until 20 fo_run_finished "$RUN"
is "$(fo_run_state "$RUN")" failed "[switch] the run failed at switch-env" || fo_diag
like "$(fo_step "$RUN" switch error)" "not a regular file" "[switch] ... saying the env file is not a regular file"
t0=$(now_ms)
drctl_status_ok() { "$DRCTL" -c "$DRD_CONF" status >/dev/null 2>&1; }
drctl_status_ok; ok $? "[switch] drd still answers"
cmp_ok $(( $(now_ms) - t0 )) -lt 2000 "[switch] ... at once"
is "$(markers)" "one=1 two=1 three=0" "[switch] markers: the steps before it ran once, the one after never"
[ -p "$FO_ENV" ]; ok $? "[switch] the FIFO was left alone"
rm -f "$FO_ENV"; cp "$FO_APP_DIR/app.env.orig" "$FO_ENV"

# ----------------------------- crash right after switch-env's rename ----
if command -v strace >/dev/null 2>&1; then
  fresh switch-rename || fail "rename: set-up"
  strace -f -qq -o /dev/null -p "$DRD_PID" -e trace=rename,renameat,renameat2 \
    -e inject=rename,renameat,renameat2:delay_exit=30s:when=2 2>"$TEST_TMP/strace.err" &
  st_pid=$!
  proc_track "$st_pid"
  poll_until 10 eval '[ "$(awk "/^TracerPid/ {print \$2}" /proc/$DRD_PID/status)" != 0 ]'
  ok $? "[rename] strace attached to drd" || diag "$(cat "$TEST_TMP/strace.err")"
  start_run || fail "rename: the run starts"
  poll_until 20 eval 'step_running switch && [ "$(fo_env_url)" = "$B_URL" ]'
  ok $? "[rename] switch-env renamed the new env file in place, its state still running" || fo_diag
  # SIGKILL drd, then its tracer (which would otherwise hold the dead
  # tracee until the delay ends); drd_kill9 reaps it.
  kill -KILL "$DRD_PID"; kill -KILL "$st_pid" 2>/dev/null
  drd_kill9
  { wait "$st_pid"; } 2>/dev/null
  drd_start; ok $? "[rename] drd killed (-9) there, restarted"
  poll_until 20 fo_run_finished "$RUN"
  is "$(fo_run_state "$RUN")" succeeded "[rename] the run completed by itself" || fo_diag
  is "$(fo_step "$RUN" switch state)|$(fo_step "$RUN" switch attempts)" "done|2" "[rename] switch-env re-ran"
  is "$(fo_env_url)" "$B_URL" "[rename] env file: the backup"
  cmp -s "$FO_ENV.drd-prev" "$FO_APP_DIR/app.env.orig"
  ok $? "[rename] .drd-prev still holds the original file (the re-run did not overwrite it)" ||
    diag "$(cat "$FO_ENV.drd-prev")"
  is "$(markers)" "one=1 two=1 three=1" "[rename] markers: each exec step ran exactly once"
else
  skip "[rename] crash right after switch-env's rename" "strace is not installed"
fi

# -------------------------------------- crash while waiting on a human ----
cat >"$RB" <<EOF
[step ask]
action  = approve
prompt  = go on?

[step after]
action  = exec
command = echo ran >>$W/after
EOF
fresh approve || fail "approve: set-up"
start_run || fail "approve: the run starts"
poll_until 15 fo_has_pending_approval step; ok $? "[approve] the run waits on its approve step"
aid=$(fo_pending_approval step)
drd_kill9
drd_start; ok $? "[approve] drd killed (-9) while waiting, restarted"
poll_until 10 drd_log_has 0 "run $RUN: still waiting for approval ${aid:-0}"
ok $? "[approve] after the restart the run still waits for approval ${aid:-?}" || fo_diag
is "$(drd_sql "SELECT count(*) FROM approvals")|$(fo_pending_approval step)" "1|${aid:-?}" \
  "[approve] the same approval, no second one"
is "$(fo_run_state "$RUN")" waiting "[approve] the run waits"
is "$(lines after)" 0 "[approve] the next step has not run"
out=$(fo_drctl approve "${aid:-0}" 2>&1)
like "$out" "run $RUN succeeded" "[approve] drctl approve ${aid:-?}: the run completes" || diag "$out"
is "$(lines after)" 1 "[approve] the next step ran once"

drd_running; ok $? "drd is running at the end"
done_testing
