#!/usr/bin/env bash
# t_failover_auto.sh - policy auto end to end with the shipped runbooks and
# the sample app: `pg_ctl stop -m immediate` of the primary -> the failover
# run succeeds, the env file points at the backup (the old file kept as
# .drd-prev, every other line kept), the app's new rows land on the backup,
# status says active=backup; the primary coming back starts nothing and is
# fenced (a new app session cannot write: read-only), which the events
# record; `drctl failback --yes` waits on confirm-data, `drctl approve ID`
# completes it: env file back to the primary, fence lifted, the app writes
# on the primary again, active=primary.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
P_URL=$(fo_app_url primary); B_URL=$(fo_app_url backup)
fo_config "$TEST_TMP/drd.conf" failover.policy=auto || bail_out "drd_config"

# ------------------------------------------------------------ the app up ----
fo_app_start; ok $? "the sample app starts on the primary"
poll_until 15 fo_rows_gt primary 5
ok $? "the app writes on the primary ($(fo_rows primary) rows)" || fo_diag
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"
is "$(drd_json .active)" primary "status: active=primary"

# ----------------------------------------------------- the primary dies ----
app1=$(fo_app_pid)
t0=$(now_ms)
pg_crash primary || bail_out "cannot stop the primary"
poll_until 30 eval '[ "$(fo_last_run)" -ge 1 ] && fo_run_finished 1'
ok $? "a run was started and finished after the crash" || fo_diag
took=$(( $(now_ms) - t0 ))
diag "from pg_ctl stop -m immediate to the end of the run: ${took} ms"
is "$(fo_run_state 1)" succeeded "run 1 succeeded" || fo_diag
is "$(drd_sql "SELECT kind || ' ' || started_by FROM runs WHERE id = 1")" "failover policy" \
  "run 1 is a failover started by the policy"
is "$(drd_sql "SELECT group_concat(state, ' ') FROM (SELECT state FROM steps WHERE run_id = 1 ORDER BY idx)")" \
  "done done done done done done" "all six steps done"
like "$(fo_step 1 fence-primary error)" "fence pending" \
  "fence-primary notes 'fence pending' (the primary is unreachable)"
is "$(drd_sql "SELECT value FROM kv WHERE key = 'fence_pending'")" primary "kv: fence pending on the primary"

is "$(fo_env_url)" "$B_URL" "env file: DATABASE_URL = the backup's app_url"
is "$(fo_env_others)" "$(fo_env_others "$FO_APP_DIR/app.env.orig")" "env file: every other line kept"
cmp -s "$FO_ENV.drd-prev" "$FO_APP_DIR/app.env.orig"
ok $? "env file: the previous content kept as app.env.drd-prev"
is "$(drd_json .active)" backup "status: active=backup"

app2=$(fo_app_pid)
isnt "$app2" "$app1" "the app was restarted (pid $app1 -> ${app2:-none})"
poll_until 15 fo_rows_by_gt backup "$app2" 5
ok $? "the restarted app writes on the backup ($(fo_rows_by backup "$app2") rows)" || fo_diag
n1=$(fo_rows backup)
poll_until 10 fo_rows_gt backup "$((n1 + 5))"
ok $? "... and keeps writing there (row count grows past $((n1 + 5)))"

# ------------------------------------------------ the primary comes back ----
pg_start primary || bail_out "cannot restart the primary"
drd_wait_field 15 .targets.primary.breaker closed
ok $? "the primary is back: breaker closed" || fo_diag
poll_until 15 fo_app_insert_refused primary
ok $? "the returning primary is fenced: a new app session cannot INSERT (read-only)" ||
  diag "insert as app: $(fo_app_insert primary)"
like "$(fo_app_insert primary)" "read-only transaction" "... the error says read-only"
poll_until 10 fo_event_has 'answered again and was fenced'
ok $? "an event records the fence on return" || diag "$(drd_sql 'SELECT kind, message FROM events')"
like "$(drctl history 2>&1)" "fenced" "drctl history shows the fence"
is "$(drd_sql "SELECT value FROM kv WHERE key = 'fence_pending'")" "" "no fence pending any more"
is "$(fo_runs)" 1 "the primary coming back started no run"
is "$(drd_json .active)" backup "status: still active=backup"
is "$(fo_env_url)" "$B_URL" "env file: still the backup"
is "$(fo_app_sessions primary)" 0 "no app sessions on the old primary"

# ------------------------------------------------------------- failback ----
out=$(fo_drctl failback --yes 2>&1); rc=$?
is "$rc" 0 "drctl failback --yes: exit 0 (waits for an approval)" || diag "$out"
like "$out" "run 2 waits for approval [0-9]+" "... it says run 2 waits for an approval" || diag "$out"
like "$out" "confirm-data" "... at confirm-data"
aid=$(sed -n 's/.*waits for approval \([0-9][0-9]*\).*/\1/p' <<<"$out" | head -n 1)
is "$(fo_run_state 2)" waiting "run 2 is waiting"
is "$(fo_step 2 confirm-data state)" running "confirm-data is the step waiting"
is "$(drd_sql "SELECT kind || ' ' || state FROM approvals WHERE id = ${aid:-0}")" "step pending" \
  "approval ${aid:-?} is a pending step approval"
is "$(drd_json "[.approvals[] | select(.id == ${aid:-0}) | .kind] | join(\",\")")" step \
  "status lists approval ${aid:-?} (kind step)"
is "$(drd_json '"\(.run.id) \(.run.state) \(.run.steps | length)"')" "2 waiting 7" \
  "status: run 2 waiting, with its 7 steps"
is "$(fo_env_url)" "$B_URL" "env file not touched before the approval"

out=$(fo_drctl approve "${aid:-0}" 2>&1); rc=$?
is "$rc" 0 "drctl approve ${aid:-?}: exit 0" || diag "$out"
like "$out" "run 2 succeeded" "... the failback run succeeded" || { diag "$out"; fo_diag; }
is "$(fo_run_state 2)" succeeded "run 2 state: succeeded"
is "$(drd_sql "SELECT decided_by <> '' AND state = 'approved' FROM approvals WHERE id = ${aid:-0}")" 1 \
  "the approval is recorded as approved, with who decided"
is "$(fo_env_url)" "$P_URL" "env file: DATABASE_URL = the primary's app_url again"
is "$(fo_env_others)" "$(fo_env_others "$FO_APP_DIR/app.env.orig")" "env file: other lines still kept"
is "$(drd_json .active)" primary "status: active=primary"
is "$(drd_json '"\(.run) \(.approvals | length)"')" "null 0" "status: no run in progress, no approval pending"
fo_app_insert_works primary; ok $? "the fence is lifted: a new app session can INSERT on the primary" ||
  diag "$(fo_app_insert primary)"
app3=$(fo_app_pid)
isnt "$app3" "$app2" "the app was restarted again"
poll_until 15 fo_rows_by_gt primary "$app3" 5
ok $? "the app writes on the primary again ($(fo_rows_by primary "$app3") rows)" || fo_diag
is "$(fo_rows_by backup "$app3")" 0 "... and not on the backup"
is "$(fo_runs)" 2 "two runs in all"

done_testing
