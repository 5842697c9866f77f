#!/usr/bin/env bash
# t_runbook_failures.sh - failing steps of a custom failover runbook
# (policy manual, `drctl failover --yes`; the runbook file is read when a
# run starts, so each case rewrites it):
#  - an exec step `exit 3` before switch-env: run failed (drctl exit 1, in
#    history, exit code and output kept), later steps never ran, the env
#    file untouched, still active=primary;
#  - on_failure = continue: the next steps run but the run ends failed;
#  - on_failure = ask: the run waits with an attention approval;
#    `drctl approve ID --skip` skips the step and the run goes on; the
#    same with `drctl reject ID` aborts the run;
#  - retries = 2 with a command that succeeds on its third attempt: done,
#    attempts = 3; retries = 1: failed after 2 attempts;
#  - timeout = 300ms on `sleep 10`: failed with a timeout, the whole
#    process group gone at once; a command ignoring SIGTERM is SIGKILLed
#    after the grace period.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
W=$TEST_TMP/rb            # markers written by the steps
mkdir -p "$W"
RB=$TEST_TMP/failover.ini
cat >"$RB" <<EOF
[step nothing]
action  = exec
command = true
EOF
fo_config "$TEST_TMP/drd.conf" failover.policy=manual failover.runbook="$RB" || bail_out "drd_config"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"

# states RUN: the steps' states in order, space separated.
states() { drd_sql "SELECT group_concat(state, ' ') FROM (SELECT state FROM steps WHERE run_id = $1 ORDER BY idx)"; }
# failover: run `drctl failover --yes`; sets OUT, RC and RUN (newest run).
failover() {
  OUT=$(fo_drctl failover --yes 2>&1); RC=$?
  RUN=$(fo_last_run)
}

# -------------------------------------------- a failing step, abort ----
cat >"$RB" <<EOF
[step prepare]
action  = exec
command = echo prepared >$W/a.prepare

[step boom]
action  = exec
command = echo "boom: about to fail"; echo "to stderr" >&2; exit 3

[step switch-env]
action  = switch-env
target  = backup

[step after]
action  = exec
command = touch $W/a.after
EOF
failover
is "$RC" 1 "a failing exec step: drctl failover --yes exits 1" || diag "$OUT"
like "$OUT" "run $RUN failed" "... and says run $RUN failed" || diag "$OUT"
like "$OUT" "boom" "... naming the step"
is "$(fo_run_state "$RUN")" failed "run state: failed"
like "$(drd_sql "SELECT error FROM runs WHERE id = $RUN")" "boom" "the run's error names the step"
is "$(fo_step "$RUN" boom state)|$(fo_step "$RUN" boom exit_code)" "failed|3" "step boom: failed, exit code 3"
like "$(fo_step "$RUN" boom output)" "about to fail" "... its output is kept (stdout)"
like "$(fo_step "$RUN" boom output)" "to stderr" "... and stderr"
is "$(fo_step "$RUN" prepare state)" "done" "the step before it is done"
is "$(fo_step "$RUN" switch-env state)|$(fo_step "$RUN" after state)" "pending|pending" \
  "the steps after it never started"
[ -f "$W/a.prepare" ] && [ ! -e "$W/a.after" ]; ok $? "marker files: prepare ran, after did not"
cmp -s "$FO_ENV" "$FO_APP_DIR/app.env.orig"; ok $? "env file untouched"
[ ! -e "$FO_ENV.drd-prev" ]; ok $? "no .drd-prev"
is "$(drd_json .active)" primary "status: still active=primary"
is "$(drd_json .run)" null "status: no run in progress"
hist=$(drctl history 2>&1)
grep -qE "run $RUN +failover +failed" <<<"$hist"; ok $? "drctl history lists run $RUN as failed" || diag "$hist"
grep -qE "boom +exec +failed" <<<"$hist"; ok $? "... with step boom failed"
js=$(drctl history --json 2>/dev/null)
is "$(jq -r --argjson id "$RUN" '.runs[] | select(.id == $id) | .state' <<<"$js" 2>/dev/null)" failed \
  "drctl history --json: run $RUN failed"
fo_event_has "run $RUN .*failed"; ok $? "an event records the failure"

# ------------------------------------------------ on_failure = continue ----
cat >"$RB" <<EOF
[step soft]
action  = exec
command = exit 5
on_failure = continue

[step after]
action  = exec
command = touch $W/b.after
EOF
failover
is "$RC" 1 "on_failure = continue: drctl failover exits 1" || diag "$OUT"
is "$(states "$RUN")" "done failed done" "the failed step is failed, the next one ran (after drd's preflight)"
[ -f "$W/b.after" ]; ok $? "... (its marker file exists)"
is "$(fo_run_state "$RUN")" failed "the run ends failed, never succeeded"

# ----------------------------------------------------- on_failure = ask ----
cat >"$RB" <<EOF
[step shaky]
action  = exec
command = echo "shaky: no"; exit 7
on_failure = ask

[step after]
action  = exec
command = touch $W/c.after
EOF
failover
is "$RC" 0 "on_failure = ask: drctl failover exits 0 (the run waits)" || diag "$OUT"
aid=$(sed -n 's/.*waits for approval \([0-9][0-9]*\).*/\1/p' <<<"$OUT" | head -n 1)
like "$OUT" "waits for approval [0-9]+" "... it says the run waits for approval ${aid:-?}" || diag "$OUT"
like "$OUT" "--skip" "... and offers --skip"
is "$(fo_run_state "$RUN")" waiting "run state: waiting"
is "$(fo_step "$RUN" shaky state)" needs_attention "step shaky: needs_attention"
is "$(drd_sql "SELECT kind || ' ' || state || ' ' || step_idx FROM approvals WHERE id = ${aid:-0}")" \
  "attention pending 1" "approval ${aid:-?}: kind attention, pending, for step 1 (0 is drd's preflight)"
like "$(fo_status_approval "${aid:-0}")" "^attention $RUN " \
  "drctl status --json lists the attention approval"
[ ! -e "$W/c.after" ]; ok $? "the next step did not run"
out=$(fo_drctl approve "${aid:-0}" --skip 2>&1); rc=$?
is "$rc" 0 "drctl approve ${aid:-?} --skip: exit 0" || diag "$out"
like "$out" "run $RUN succeeded" "... the run goes on and succeeds" || diag "$out"
is "$(states "$RUN")" "done skipped done" "step shaky skipped, the next one done"
[ -f "$W/c.after" ]; ok $? "... (its marker file exists)"
is "$(drd_sql "SELECT state || ' ' || choice FROM approvals WHERE id = ${aid:-0}")" "approved skip" \
  "approval recorded: approved, choice skip"

# the same, rejected: the run is aborted
rm -f "$W/c.after"
failover
aid=$(fo_pending_approval attention)
[ -n "$aid" ]; ok $? "again: waits with attention approval ${aid:-?}" || diag "$OUT"
out=$(fo_drctl reject "${aid:-0}" --reason "not now" 2>&1); rc=$?
poll_until 10 fo_run_finished "$RUN"
is "$(fo_run_state "$RUN")" aborted "drctl reject: the run is aborted" || diag "$out"
[ ! -e "$W/c.after" ]; ok $? "... and the next step never ran"
isnt "$(fo_step "$RUN" shaky state)" "done" "... step shaky is not done ($(fo_step "$RUN" shaky state))"

# -------------------------------------------------------------- retries ----
rm -f "$W/count"
cat >"$RB" <<EOF
[step flaky]
action  = exec
command = n=\$(cat $W/count 2>/dev/null || echo 0); n=\$((n + 1)); echo \$n >$W/count; echo "attempt \$n"; [ \$n -ge 3 ]
retries = 2
retry_delay = 100ms
EOF
failover
is "$RC" 0 "retries = 2, succeeding on the 3rd attempt: drctl exits 0" || diag "$OUT"
is "$(fo_run_state "$RUN")" succeeded "run succeeded"
is "$(fo_step "$RUN" flaky state)|$(fo_step "$RUN" flaky attempts)" "done|3" "step done with attempts = 3"
is "$(cat "$W/count")" 3 "the command ran exactly 3 times"
like "$(fo_step "$RUN" flaky output)" "attempt 3" "the output is the last attempt's"

rm -f "$W/count"
sed -i 's/^retries = 2/retries = 1/' "$RB"
failover
is "$(fo_run_state "$RUN")|$(fo_step "$RUN" flaky state)|$(fo_step "$RUN" flaky attempts)" "failed|failed|2" \
  "retries = 1: the step fails after 2 attempts, the run fails"
is "$(cat "$W/count")" 2 "the command ran exactly 2 times"

# -------------------------------------------------------------- timeout ----
rm -f "$W/pgid" "$W/finished"
cat >"$RB" <<EOF
[step slow]
action  = exec
command = echo \$\$\$\$ >$W/pgid; sleep 10; touch $W/finished
timeout = 300ms
EOF
t0=$(now_ms)
failover
took=$(( $(now_ms) - t0 ))
is "$(fo_run_state "$RUN")|$(fo_step "$RUN" slow state)" "failed|failed" "timeout = 300ms on sleep 10: step and run failed"
like "$(fo_step "$RUN" slow error)" "tim(ed|e) ?out" "... the error says timeout: $(fo_step "$RUN" slow error)"
cmp_ok "$took" -lt 4000 "... within seconds, not 10 s (${took} ms)"
pg=$(cat "$W/pgid" 2>/dev/null)
[ -n "$pg" ]; ok $? "the command recorded its process group (${pg:-none})"
poll_until 3 eval '! pgrep -g "${pg:-1}" >/dev/null'
ok $? "its process group is gone (the sleep was killed too)" || ps -o pid,pgid,stat,cmd -g "${pg:-1}" | sed 's/^/# /'
[ ! -e "$W/finished" ]; ok $? "the command never finished"

rm -f "$W/pgid" "$W/finished"
cat >"$RB" <<EOF
[step stubborn]
action  = exec
command = trap '' TERM; echo \$\$\$\$ >$W/pgid; sleep 10; touch $W/finished
timeout = 300ms
EOF
t0=$(now_ms)
failover
took=$(( $(now_ms) - t0 ))
is "$(fo_run_state "$RUN")" failed "a command ignoring SIGTERM: the run failed"
cmp_ok "$took" -ge 4000 "... after the grace period (${took} ms)"
cmp_ok "$took" -lt 9000 "... and before the command would have ended"
pg=$(cat "$W/pgid" 2>/dev/null)
poll_until 3 eval '! pgrep -g "${pg:-1}" >/dev/null'
ok $? "its process group is gone (SIGKILL)"
[ ! -e "$W/finished" ]; ok $? "the command never finished"

# ------------------------------------------------------------ aftermath ----
is "$(drd_json .active)" primary "after all that: still active=primary"
cmp -s "$FO_ENV" "$FO_APP_DIR/app.env.orig"; ok $? "env file untouched throughout"
drd_running; ok $? "drd is still running"

done_testing
