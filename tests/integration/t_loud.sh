#!/usr/bin/env bash
# t_loud.sh - failures are loud. A failover whose start-app fails leaves
# the app stopped and waits: `drctl status` says so on its first line and
# exits 4, the status JSON carries "attention" (page banner data), /metrics
# has drd_app_stopped 1, an app_stopped notification is sent; retrying
# after the fix ends it (exit 0, metric 0, the primary "fenced": true). A
# failback that fails after stop-app (on_failure = abort) ends with the app
# stopped: still exit 4. Under policy = approve, the approval states the
# real outage duration (not "0ms") and status names what it is for; the
# policy-started failover leaves a block (status, block_until), the fence of
# the crashed primary is "pending", `drctl unblock` lifts the block, and the
# readiness checks re-run after the run. With drd stopped, history and
# refreshes come from the state file (exit 3).  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require
RECV_BIN=$DRD_TOOLS/webhook_recv
[ -x "$RECV_BIN" ] || bail_out "$RECV_BIN is not built (run make)"

pg_new primary && pg_start primary || bail_out "cannot start the primary"
pg_new backup && pg_start backup || bail_out "cannot start the backup"

HOOKS=$TEST_TMP/hooks.jsonl
RECV_PORT=$(free_port) || bail_out "no free port"
"$RECV_BIN" "$RECV_PORT" "$HOOKS" >"$TEST_TMP/recv.log" 2>&1 &
proc_track $!
poll_until 5 grep -q "^listening on" "$TEST_TMP/recv.log" || bail_out "the webhook receiver did not start"
hook_has() { [ -s "$HOOKS" ] && jq -r --arg e "$1" 'select(.event == $e) | .event' "$HOOKS" 2>/dev/null | grep -q .; }
hook_count() { [ -s "$HOOKS" ] && jq -r --arg e "$1" 'select(.event == $e) | .event' "$HOOKS" 2>/dev/null | wc -l || echo 0; }

cat >"$TEST_TMP/failover.ini" <<'EOF'
[step stop-app]
action  = exec
command = ${app.stop}
timeout = 10s
[step switch-env]
action  = switch-env
target  = backup
[step start-app]
action  = exec
command = ${app.start}
timeout = 10s
on_failure = ask
[step fence-primary]
action  = fence
target  = primary
timeout = 5s
EOF
cat >"$TEST_TMP/failback.ini" <<'EOF'
[step stop-app]
action  = exec
command = ${app.stop}
timeout = 10s
[step switch-env]
action  = switch-env
target  = primary
[step unfence-primary]
action  = fence
target  = primary
lift    = true
required = true
timeout = 10s
[step start-app]
action  = exec
command = ${app.start}
timeout = 10s
on_failure = abort
EOF
ENV_FILE=$TEST_TMP/app.env
printf 'DATABASE_URL=%s\n' "$(pg_url primary)" >"$ENV_FILE"
conf() {
  drd_config "$TEST_TMP/drd.conf" failover.runbook="$TEST_TMP/failover.ini" \
    failback.runbook="$TEST_TMP/failback.ini" app.env_file="$ENV_FILE" \
    app.start="test -f $TEST_TMP/start-ok" notify.webhook="http://127.0.0.1:$RECV_PORT/hook" \
    notify.format=json log.level=info "$@"
}
conf || bail_out "drd_config"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "both databases healthy"

st_out() { drctl status >"$TEST_TMP/st.out" 2>&1; echo $?; }
metric() { drd_api /metrics | awk -v m="$1" '$1 == m { print $2 }'; }

# ------------------------------------------- start-app fails: app stopped ----
drctl failover --yes >"$TEST_TMP/fo.out" 2>&1
drd_wait_field 15 .attention.app_stopped true; ok $? "failover with a failing start-app: attention.app_stopped" \
  || diag_file "$TEST_TMP/fo.out"
is "$(drd_json .attention.step)" start-app "... the step is start-app"
is "$(drd_json .attention.state)" waiting "... the run waits"
APPR=$(drd_json .attention.approval_id)
like "$APPR" '^[0-9]+$' "... with its approval id"
rc=$(st_out)
is "$rc" 4 "drctl status exits 4"
like "$(head -n 1 "$TEST_TMP/st.out")" "^ATTENTION: THE APP IS STOPPED - failover run [0-9]+ waits for a decision at step start-app" \
  "... its first line says the app is stopped" || diag_file "$TEST_TMP/st.out"
like "$(sed -n 2p "$TEST_TMP/st.out")" "drctl approve $APPR \\(retry\\).*--skip.*drctl reject $APPR" "... then how to decide"
poll_until 5 sh -c "[ \"\$(curl -s --unix-socket '$DRD_SOCK' http://localhost/metrics | awk '\$1 == \"drd_app_stopped\" {print \$2}')\" = 1 ]"
ok $? "metric drd_app_stopped 1"
poll_until 10 hook_has app_stopped; ok $? "an app_stopped notification was sent"
like "$(jq -r 'select(.event == "app_stopped") | .text' "$HOOKS" | head -n1)" "APP IS STOPPED.*start-app" "... naming the step"
api=$(drd_api /api/status | head -n 1)
is "$(jq -r '.attention.app_stopped' <<<"$api")" true "GET /api/status: attention for the page's banner"
like "$(drd_api / | tr -d '\n')" 'id="alarm"' "the page has the banner"

# a restart does not notify again, and keeps the state
drd_stop; drd_start || bail_out "drd did not restart"
drd_wait_field 10 .attention.app_stopped true; ok $? "after a restart: still app_stopped"
sleep 0.5   # (not a synchronisation: a second notification would arrive in this time)
is "$(hook_count app_stopped | tr -d ' ')" 1 "... and no second notification"

# the fix, then retry
touch "$TEST_TMP/start-ok"
drctl approve "$APPR" >"$TEST_TMP/ap.out" 2>&1
drd_wait_field 15 '.attention' null; ok $? "retry after the fix: attention is null" || diag_file "$TEST_TMP/ap.out"
RUN1=$(drd_sql "SELECT id FROM runs ORDER BY id DESC LIMIT 1")
is "$(drd_sql "SELECT state FROM runs WHERE id = $RUN1")" succeeded "... the run succeeded"
rc=$(st_out); is "$rc" 0 "drctl status exits 0"
unlike "$(cat "$TEST_TMP/st.out")" "ATTENTION" "... and says nothing about attention"
is "$(metric drd_app_stopped)" 0 "metric drd_app_stopped 0"
is "$(drd_json .targets.primary.fenced)" true "the old primary: fenced true"
is "$(drd_json .targets.backup.fenced)" false "the backup: fenced false"
like "$(cat "$TEST_TMP/st.out")" "fence: the primary is fenced" "drctl status says the primary is fenced"

# ------------------------------------- failback fails after stop-app: ended ----
rm -f "$TEST_TMP/start-ok"
drctl failback --yes >"$TEST_TMP/fb.out" 2>&1
drd_wait_field 15 '.attention.state' failed; ok $? "failback with start-app failing (abort): attention, state failed" \
  || diag_file "$TEST_TMP/fb.out"
is "$(drd_json .attention.app_stopped)" true "... app_stopped"
rc=$(st_out); is "$rc" 4 "drctl status exits 4 after the run ended"
like "$(head -n 1 "$TEST_TMP/st.out")" "^ATTENTION: THE APP IS STOPPED - failback run [0-9]+ failed at step start-app" "... first line"
is "$(drd_json .targets.primary.fenced)" false "the fence was lifted: fenced false"

# ------------------------------------ policy approve: prompt, block, unblock ----
touch "$TEST_TMP/start-ok"
conf failover.policy=approve probe.failures=4 || bail_out "drd_config"
drd_signal HUP
poll_until 5 grep -q "configuration reloaded" "$DRD_LOG"
CHECKED0=$(drd_json '.readiness.checked_at // 0')
pg_crash primary
drd_wait_field 15 '.approvals | length' 1; ok $? "primary down under policy approve: an approval"
prompt=$(drd_json '.approvals[0].prompt')
dur=$(sed -nE 's/.*unavailable for ([0-9.]+)(ms|s).*/\1 \2/p' <<<"$prompt")
read -r n unit <<<"$dur"
ok "$([ "$unit" = s ] || { [ "$unit" = ms ] && [ "${n%.*}" -ge 500 ]; }; echo $?)" \
  "the prompt states the outage's duration (>= 3 probe intervals), not 0ms: '$dur'" || diag "$prompt"
rc=$(st_out)
PA=$(drd_json '.approvals[0].id')
like "$(cat "$TEST_TMP/st.out")" "#$PA \\(policy: start a failover\\?\\)" "drctl status names what the approval is for"
unlike "$(cat "$TEST_TMP/st.out")" "run 0, step \\?" "... not 'run 0, step ?'"
drctl approve "$PA" >"$TEST_TMP/pa.out" 2>&1
drd_wait_field 20 .active backup; ok $? "approved: the failover ran" || diag_file "$TEST_TMP/pa.out"
drd_wait_field 10 '.run' null
is "$(drd_json .targets.primary.fenced)" pending "the crashed primary: fenced pending"
BU=$(drd_json .block_until)
like "$BU" '^[0-9]+$' "status: block_until after the policy failover"
rc=$(st_out)
like "$(cat "$TEST_TMP/st.out")" "policy block: no automatic failover until .*drctl unblock" "drctl status shows the block"
RUN3_END=$(drd_sql "SELECT finished_at FROM runs ORDER BY id DESC LIMIT 1")
poll_until 10 sh -c "[ \"\$('$DRCTL' -c '$DRD_CONF' status --json | jq -r '.readiness.checked_at // 0')\" -ge $RUN3_END ]"
ok $? "the readiness checks ran again after the run (checked_at $CHECKED0 -> after $RUN3_END)"
out=$(drctl unblock 2>&1); rc=$?
is "$rc" 0 "drctl unblock: exit 0" || diag "$out"
drd_wait_field 5 .block_until null; ok $? "... block_until is null"
grep -q "policy block .* lifted by socket" <(drd_sql "SELECT message FROM events WHERE kind = 'policy'")
ok $? "... recorded as an event"
out=$(drctl unblock 2>&1); rc=$?
is "$rc" 1 "drctl unblock without a block: exit 1"
like "$out" "no policy block is active" "... says why"
pg_start primary || bail_out "cannot restart the primary"
drd_wait_field 20 .targets.primary.fenced true; ok $? "the primary answers again: fenced true"

# ------------------------------------------------ drd down: from the file ----
drd_stop
out=$(drctl history 2>"$TEST_TMP/h.err"); rc=$?
is "$rc" 3 "drd stopped: drctl history exits 3"
like "$out" "RUNS" "... and prints the runs from the state file"
like "$out" "run $RUN1 +failover +succeeded" "... with run $RUN1"
like "$(cat "$TEST_TMP/h.err")" "drd is not running" "... saying drd is not running (stderr)"
js=$(drctl history --json 2>/dev/null)
is "$(jq '.runs | length' <<<"$js")" 3 "history --json: 3 runs"
out=$(drctl refreshes 2>/dev/null); rc=$?
is "$rc" 3 "drctl refreshes exits 3"
like "$out" "no refreshes" "... and prints the (empty) list"
rc=$(st_out); is "$rc" 3 "drctl status exits 3"

done_testing
