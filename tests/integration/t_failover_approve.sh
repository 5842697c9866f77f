#!/usr/bin/env bash
# t_failover_approve.sh - policy approve: the primary going down creates a
# pending policy approval and nothing else; `drctl reject ID --reason no`
# leaves everything as it was (env file, the app on the primary, no run) and
# the same outage asks no more; the primary recovering withdraws a pending
# approval; a new outage asks again and `drctl approve ID` runs the failover
# to the end.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
B_URL=$(fo_app_url backup)
fo_config "$TEST_TMP/drd.conf" failover.policy=approve || bail_out "drd_config"

fo_app_start; ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"
app1=$(fo_app_pid)

# breaker_events ERE: breaker transitions of the primary matching ERE.
breaker_events() { drd_sql "SELECT count(*) FROM events WHERE kind = 'breaker' AND target = 'primary' AND message LIKE '$1'"; }
breaker_events_gt() { [ "$(breaker_events "$1")" -gt "$2" ]; }

# ------------------------------------------------- outage 1: reject ----
pg_crash primary || bail_out "cannot stop the primary"
poll_until 15 fo_has_pending_approval policy
ok $? "the primary is down: a pending policy approval appears" || fo_diag
a1=$(fo_pending_approval policy)
is "$(drd_sql "SELECT run_id IS NULL FROM approvals WHERE id = ${a1:-0}")" 1 "... not tied to any run"
like "$(drd_sql "SELECT prompt FROM approvals WHERE id = ${a1:-0}")" "[Ff]ail over" "... its prompt asks to fail over"
fo_event_has "approval ${a1:-0} asks whether to fail over"; ok $? "... an event says so"
like "$(fo_status_approval "${a1:-0}")" "^policy " \
  "drctl status --json lists approval ${a1:-?} (kind policy)"
is "$(fo_runs)" 0 "no run started while the approval is pending"
is "$(fo_env_url)" "$(fo_app_url primary)" "the env file is untouched"

opens=$(breaker_events '%half_open -> open%')
out=$(fo_drctl reject "${a1:-0}" --reason no 2>&1); rc=$?
is "$rc" 0 "drctl reject ${a1:-?} --reason no: exit 0" || diag "$out"
like "$out" "rejected" "... says rejected"
is "$(drd_sql "SELECT state || '|' || reason || '|' || (decided_by <> '') FROM approvals WHERE id = ${a1:-0}")" \
  "rejected|no|1" "approval recorded as rejected, with the reason and who decided"
fo_event_has "approval ${a1:-0} rejected"; ok $? "an event records the rejection"
# The outage goes on: wait for the breaker to retry (half-open) and open
# again, which makes the policy look at the outage once more.
poll_until 15 breaker_events_gt '%half_open -> open%' "$opens"
ok $? "the outage goes on (breaker re-opened after a half-open try)" || fo_diag
is "$(fo_runs)" 0 "no run after the rejection"
is "$(fo_pending_approval policy)" "" "no new approval for the same outage"
cmp -s "$FO_ENV" "$FO_APP_DIR/app.env.orig"; ok $? "env file unchanged (byte for byte)"
[ ! -e "$FO_ENV.drd-prev" ]; ok $? "no .drd-prev written"
is "$(fo_app_pid)" "$app1" "the app was not restarted (same pid)"
fo_app_running; ok $? "... and is still running"
is "$(drd_json .active)" primary "status: active=primary"

# --------------------------- outage 2: withdrawn when the primary recovers ----
pg_start primary || bail_out "cannot restart the primary"
drd_wait_field 15 .targets.primary.breaker closed; ok $? "the primary is back: breaker closed"
is "$(drd_sql "SELECT count(*) FROM incidents WHERE target = 'primary' AND ended_at IS NULL")" 0 \
  "incident closed"
pg_crash primary || bail_out "cannot stop the primary"
poll_until 15 fo_has_pending_approval policy
ok $? "a new outage: a new pending policy approval" || fo_diag
a2=$(fo_pending_approval policy)
isnt "$a2" "$a1" "... a different approval (${a2:-none})"
pg_start primary || bail_out "cannot restart the primary"
poll_until 15 eval '[ "$(drd_sql "SELECT state FROM approvals WHERE id = ${a2:-0}")" = expired ]'
ok $? "the primary recovered first: approval ${a2:-?} withdrawn (expired)" || fo_diag
fo_event_has "approval ${a2:-0} withdrawn"; ok $? "... an event says it was withdrawn"
is "$(fo_runs)" 0 "still no run"
drd_wait_field 15 .targets.primary.breaker closed; ok $? "breaker closed again"

# ------------------------------------------------ outage 3: approve ----
pg_crash primary || bail_out "cannot stop the primary"
poll_until 15 fo_has_pending_approval policy
ok $? "a third outage: a pending policy approval" || fo_diag
a3=$(fo_pending_approval policy)
isnt "$a3" "$a2" "... a new one (${a3:-none})"
out=$(fo_drctl approve "${a3:-0}" 2>&1); rc=$?
is "$rc" 0 "drctl approve ${a3:-?}: exit 0" || diag "$out"
like "$out" "run [0-9]+ succeeded" "... follows the failover run to its success" || { diag "$out"; fo_diag; }
run=$(fo_last_run)
is "$(fo_runs)" 1 "exactly one run"
is "$(drd_sql "SELECT kind || ' ' || state FROM runs WHERE id = $run")" "failover succeeded" "run $run: failover succeeded"
is "$(drd_sql "SELECT state FROM approvals WHERE id = ${a3:-0}")" approved "approval ${a3:-?} approved"
is "$(fo_env_url)" "$B_URL" "env file: DATABASE_URL = the backup's app_url"
is "$(drd_json .active)" backup "status: active=backup"
app2=$(fo_app_pid)
poll_until 15 fo_rows_by_gt backup "${app2:-0}" 3
ok $? "the app writes on the backup" || fo_diag
out=$(fo_drctl approve "${a3:-0}" 2>&1); rc=$?
is "$rc" 1 "approving it again: exit 1"
like "$out" "already approved" "... 'already approved'"

done_testing
