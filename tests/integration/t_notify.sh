#!/usr/bin/env bash
# t_notify.sh - webhook notifications end to end: drd (policy approve,
# [notify] format = json) posts to a local receiver (build/tools/webhook_recv,
# one JSON body per line in a file). The primary going down sends
# incident_start and approval_needed; approving sends run_started and
# run_succeeded; with the receiver down, drd keeps probing and answering
# while it retries the notifications of what happens meanwhile (the primary
# coming back: incident_end); once the receiver is back (answering 500 to
# its first request) they all arrive. The webhook's URL carries a token
# that must never show in drd's log or state.  TAP output.
#
# Retries are sped up with DRD_NOTIFY_BACKOFF_MS=200 (base delay of the
# exponential backoff, src/engine/notify.c).
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require
RECV_BIN=$DRD_TOOLS/webhook_recv
[ -x "$RECV_BIN" ] || bail_out "$RECV_BIN is not built (run make)"

HOOKS=$TEST_TMP/hooks.jsonl
RECV_PORT=$(free_port) || bail_out "no free port"
SECRET="T0KEN-$RANDOM$RANDOM"
HOOK_URL="http://127.0.0.1:$RECV_PORT/hook/$SECRET"
RECV_PID=
RECV_N=0

# recv_start [FAIL_FIRST]: start the receiver and wait until it listens.
recv_start() {
  RECV_N=$((RECV_N + 1))
  local log=$TEST_TMP/recv.$RECV_N.log
  "$RECV_BIN" "$RECV_PORT" "$HOOKS" ${1:+"$1"} >"$log" 2>&1 &
  RECV_PID=$!
  proc_track "$RECV_PID"
  poll_until 5 grep -q "^listening on" "$log" || { diag_file "$log"; return 1; }
}
recv_stop() {
  [ -n "$RECV_PID" ] || return 0
  kill "$RECV_PID" 2>/dev/null
  { wait "$RECV_PID"; } 2>/dev/null
  RECV_PID=
}

# hook_has EVENT: the receiver got a notification EVENT.
hook_has() {
  [ -s "$HOOKS" ] && jq -r --arg e "$1" 'select(.event == $e) | .event' "$HOOKS" 2>/dev/null | grep -q .
}
# hook_get EVENT FILTER: FILTER applied to the first notification EVENT received.
hook_get() {
  jq -r --arg e "$1" "select(.event == \$e) | $2" "$HOOKS" 2>/dev/null | head -n 1
}
hook_events() { [ -s "$HOOKS" ] && jq -r .event "$HOOKS" 2>/dev/null | tr '\n' ' '; }
notif() { drd_sql "SELECT $1 FROM notifications WHERE $2"; }
nt_diag() {
  diag "received: $(hook_events)"
  diag "notifications (id event state attempts http_status error):"
  diag "$(drd_sql "SELECT id, event, state, attempts, http_status, error FROM notifications ORDER BY id")"
  fo_diag
}

ISO='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$'

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
fo_config "$TEST_TMP/drd.conf" failover.policy=approve \
  notify.webhook="$HOOK_URL" notify.format=json notify.retries=20 notify.timeout=1s \
  || bail_out "drd_config"
recv_start || bail_out "the webhook receiver did not start"
export DRD_NOTIFY_BACKOFF_MS=200

fo_app_start; ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"

# ------------------------------------------- outage: incident, approval ----
pg_crash primary || bail_out "cannot stop the primary"
poll_until 20 hook_has incident_start; ok $? "primary down: incident_start received" || nt_diag
is "$(hook_get incident_start .target)" primary "... target = primary"
like "$(hook_get incident_start .at)" "$ISO" "... at is an ISO-8601 UTC time"
is "$(hook_get incident_start '.at_ms | type')" number "... at_ms is a number"
like "$(hook_get incident_start .text)" "[Pp]rimary" "... its text names the primary"
poll_until 20 hook_has approval_needed; ok $? "approval_needed received" || nt_diag
a=$(fo_pending_approval policy)
[ -n "$a" ] || bail_out "no pending policy approval"
is "$(hook_get approval_needed .approval_id)" "$a" "... approval_id = the pending approval ($a)"
like "$(hook_get approval_needed .text)" "." "... with a text"

# ------------------------------------------------ approve: the run ----
out=$(fo_drctl approve "$a" 2>&1)
like "$out" "run [0-9]+ succeeded" "drctl approve $a: the failover run succeeds" || { diag "$out"; nt_diag; }
run=$(fo_last_run)
poll_until 20 hook_has run_started; ok $? "run_started received" || nt_diag
is "$(hook_get run_started '"\(.run_id) \(.kind)"')" "$run failover" "... run_id $run, kind failover"
poll_until 20 hook_has run_succeeded; ok $? "run_succeeded received" || nt_diag
is "$(hook_get run_succeeded '"\(.run_id) \(.kind)"')" "$run failover" "... run_id $run, kind failover"
for e in incident_start approval_needed run_started run_succeeded; do
  is "$(notif "state || ' ' || attempts || ' ' || http_status" "event = '$e' ORDER BY id LIMIT 1")" \
    "sent 1 200" "state db: $e sent at the first attempt (HTTP 200)"
done

# ----------------------------------------- the receiver down meanwhile ----
n0=$(drd_sql "SELECT coalesce(max(id), 0) FROM notifications")
recv_stop
lines0=$(wc -l <"$HOOKS")
pg_start primary || bail_out "cannot restart the primary"
retried() { [ "$(notif "count(*)" "id > $n0 AND state = 'pending' AND attempts >= 2")" -gt 0 ]; }
poll_until 30 retried; ok $? "receiver down: a notification is retried (pending, attempts >= 2)" || nt_diag
p1=$(drd_json .targets.backup.last_probe_at)
probe_advanced() { [ "$(drd_json ".targets.backup.last_probe_at > ${p1:-0}")" = true ]; }
poll_until 5 probe_advanced; ok $? "... drd keeps probing (the backup's last_probe_at advances)"
drd_wait_field 20 .targets.primary.breaker closed; ok $? "... and sees the primary back (breaker closed)"
poll_until 20 eval '[ "$(notif "count(*)" "id > $n0 AND event = '"'incident_end'"'")" -gt 0 ]'
ok $? "... incident_end recorded while the receiver is down" || nt_diag
out=$(drctl status --json 2>&1); rc=$?
is "$rc" 0 "... drctl status answers" || diag "$out"
still_retrying=$(notif "count(*)" "id > $n0 AND state = 'pending'")
cmp_ok "$still_retrying" -gt 0 "... notifications still pending, not given up"
is "$(wc -l <"$HOOKS")" "$lines0" "... nothing delivered meanwhile"

# ----------------------------------- the receiver back: they arrive ----
recv_start 1 || bail_out "the webhook receiver did not restart"
all_sent() {
  [ "$(notif "count(*)" "id > $n0")" -gt 0 ] && [ "$(notif "count(*)" "id > $n0 AND state <> 'sent'")" = 0 ]
}
poll_until 30 all_sent; ok $? "receiver back (first answer 500): every pending notification is sent" || nt_diag
missing=
for e in $(notif "event" "id > $n0 ORDER BY id"); do
  hook_has "$e" || missing="$missing $e"
done
is "$missing" "" "... and every one of them was received"
is "$(hook_get incident_end .target)" primary "incident_end received, target = primary"
cmp_ok "$(notif "attempts" "id > $n0 AND event = 'incident_end' ORDER BY id LIMIT 1")" -ge 2 \
  "... after more than one attempt"
[ -s "$HOOKS.failed" ]; ok $? "the receiver's 500 answer was retried"

# ------------------------------------------------------------- secrets ----
drd_running; ok $? "drd is still running"
grep -q -- "$SECRET" "$DRD_LOG"; st=$?
isnt "$st" 0 "the webhook URL's token never appears in drd's log" || diag "$(grep -- "$SECRET" "$DRD_LOG" | head -3)"
is "$(notif "count(*)" "summary LIKE '%$SECRET%' OR error LIKE '%$SECRET%'")" 0 \
  "... nor in the recorded notifications"

recv_stop
done_testing
