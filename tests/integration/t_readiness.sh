#!/usr/bin/env bash
# t_readiness.sh - drd's scheduled readiness checks ([check] every) against
# real clusters and the sample app (set up as in t_check.sh), every URL
# carrying a password (trust auth ignores it) and the webhook a token:
#  1. healthy, started with check.every=0 (no run ever): readiness.ready is
#     null and drd_ready absent before the first run, whatever the machine's
#     speed; reloaded with check.every=2s (a reload runs them at once, then
#     every 2 s): then ready = true, nothing
#     fails (only backup-lag and drill warn), drd_ready 1 and one
#     drd_check_status line per check in /metrics, one row per check in the
#     state db's checks table, and drd's status keeps answering quickly;
#  2. the env file moved away: at the next run env-file fails, ready =
#     false, drd_ready 0, an event "check env-file: ok -> fail" and a
#     check_failed notification at the webhook receiver; the `since` of
#     every other check did not move;
#  3. the env file back: env-file ok, ready = true, an event "fail -> ok";
#  4. drills: the drill warning with no drill on record; POST /api/drill
#     with a succeeded report clears it (status.drill.last_ok_at, warning
#     null, GET /api/drills, drd_drill_last_success_timestamp_seconds, and
#     the drill check turns ok); a failed drill changes last, not
#     last_ok_at; malformed reports get 400 and drd keeps running;
#  5. secrets: the env file pointing at the backup makes env-file fail
#     with both URLs in its reason, masked: no password anywhere in the
#     status, the checks/events/notifications/drills tables, the webhook
#     bodies or drd's log;
#  6. drd restarted with check.every=1h and a webhook that never answers
#     (a SIGSTOPped receiver: each run lasts ~2 s): the first run comes
#     5 s after the start (not before); POST /api/checks gives
#     202 and a new checked_at soon; while that run is in progress the
#     status answers quickly and the probes go on.  TAP output.
#
# Notification retries are sped up with DRD_NOTIFY_BACKOFF_MS=200.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require
RECV_BIN=$DRD_TOOLS/webhook_recv
[ -x "$RECV_BIN" ] || bail_out "$RECV_BIN is not built (run make)"

PW="pw-$RANDOM$RANDOM-secret"          # in every database URL
TOKEN="T0KEN-$RANDOM$RANDOM"           # in the webhook URL
HOOKS=$TEST_TMP/hooks.jsonl
RECV_PORT=$(free_port) || bail_out "no free port"
HOOK_URL="http://127.0.0.1:$RECV_PORT/hook/$TOKEN"
export DRD_NOTIFY_BACKOFF_MS=200

# recv_start PORT FILE LOG: a webhook receiver; prints its pid.
recv_start() {
  "$RECV_BIN" "$1" "$2" >"$3" 2>&1 &
  local pid=$!
  poll_until 5 grep -q "^listening on" "$3" || { diag_file "$3"; kill "$pid"; return 1; }
  echo "$pid"
}

# ------------------------------------------------------------- helpers ----
# db_url NAME: the cluster's postgres URL with the password.
db_url() { echo "postgresql://postgres:$PW@127.0.0.1:$(pg_port "$1")/postgres"; }
# app_url NAME: the app's URL with the password.
app_url() { echo "postgresql://app:$PW@127.0.0.1:$(pg_port "$1")/appdb?application_name=shop_app"; }
set_env_url() {
  local tmp=$FO_ENV.tmp
  sed "s|^DATABASE_URL=.*|DATABASE_URL=$1|" "$FO_ENV" >"$tmp" && mv "$tmp" "$FO_ENV"
}

# rd FILTER: a jq filter on .readiness of the status.
rd() { drd_json ".readiness$1"; }
# ck NAME FIELD: a field of check NAME in the status' readiness.checks.
ck() { drd_json "[.readiness.checks[] | select(.name == \"$1\") | .$2][0] // empty"; }
ck_is() { [ "$(ck "$1" status)" = "$2" ]; }
# with_status S: names of the checks with status S (status document), sorted.
with_status() { drd_json "[.readiness.checks[] | select(.status == \"$1\") | .name] | sort | join(\" \")"; }
# checked_after MS: readiness.checked_at > MS and no run in progress.
checked_after() { [ "$(rd "| (.checked_at // 0) > $1 and .running == false")" = true ]; }
# metric NAME: the value of sample NAME (with its labels) in /metrics.
metric() { drd_api /metrics | awk -v n="$1" '$1 == n { print $2; f = 1 } END { exit !f }'; }
metric_is() { [ "$(metric "$1")" = "$2" ]; }
# since_snapshot: "name since" of every check but env-file (state db).
since_snapshot() { drd_sql "SELECT name || ' ' || since FROM checks WHERE name <> 'env-file' ORDER BY name"; }
ev_count() { fo_event_count "$1"; }
ev_has() { [ "$(ev_count "$1")" -gt 0 ]; }
hook_has() {
  [ -s "$HOOKS" ] && jq -r --arg e "$1" 'select(.event == $e) | .event' "$HOOKS" 2>/dev/null | grep -q .
}
hook_get() { jq -r --arg e "$1" "select(.event == \$e) | $2" "$HOOKS" 2>/dev/null | head -n 1; }
# post PATH BODY: POST over the unix socket; body then "HTTP NNN".
post() { drd_api "$1" -X POST -H 'Content-Type: application/json' --data-binary "$2"; }
code_of() { tail -n 1 <<<"$1" | sed 's/^HTTP //'; }
body_of() { sed '$d' <<<"$1"; }
rd_diag() {
  diag "$(drd_json '.readiness | del(.checks)' 2>&1)"
  diag "$(drd_json '.readiness.checks[] | "\(.status) \(.name): \(.reason)"' 2>&1)"
  diag "events:" "$(drd_sql "SELECT kind || ': ' || message FROM events ORDER BY id" | tail -n 15)"
  diag_file "$DRD_LOG" 25
}

# --------------------------------------------------------------- set-up ----
fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
set_env_url "$(app_url primary)" || bail_out "cannot write the env file"
RECV_PID=$(recv_start "$RECV_PORT" "$HOOKS" "$TEST_TMP/recv.log") || bail_out "the webhook receiver did not start"
proc_track "$RECV_PID"
CONF_ARGS=(primary.url="$(db_url primary)" backup.url="$(db_url backup)"
           primary.app_url="$(app_url primary)" backup.app_url="$(app_url backup)"
           notify.webhook="$HOOK_URL" notify.format=json notify.retries=20 notify.timeout=1s)
fo_config "$TEST_TMP/drd.conf" "${CONF_ARGS[@]}" check.every=0 || bail_out "fo_config"

fo_app_start; ok $? "the sample app starts on the primary (env file URL with a password)"
drd_start || bail_out "drd did not start"

# ------------------------------------------------ 1. healthy sandbox ----
# check.every=0: no run is ever scheduled, so this is "before the first
# run" however long drd took to start.
before=$(drd_json '"\(.readiness.ready) \(.readiness.checked_at) \(.readiness.every_ms)"')
is "$before" "null null 0" "before the first run: ready and checked_at null (check.every=0)"
m=$(drd_api /metrics)
unlike "$m" $'(^|\n)drd_ready ' "... /metrics has no drd_ready sample yet"
like "$m" $'(^|\n)# TYPE drd_ready gauge' "... but declares the family"
fo_config "$TEST_TMP/drd.conf" "${CONF_ARGS[@]}" check.every=2s || bail_out "fo_config"
t_start=$(now_ms)
drd_signal HUP
drd_wait_field 10 .readiness.every_ms 2000; ok $? "reloaded with check.every=2s: every_ms 2000" || rd_diag
drd_wait_healthy 15; ok $? "drd: both targets healthy"

drd_wait_field 20 .readiness.ready true; ok $? "within 20 s of the reload: readiness.ready = true" || rd_diag
t_first=$(rd .checked_at)
cmp_ok "$t_first" -ge "$t_start" "... the first run came after the reload (a reload runs the checks at once: $(( t_first - t_start )) ms)"
is "$(with_status fail)" "" "... no check fails"
is "$(with_status warn)" "backup-lag drill" "... only backup-lag ([refresh] mode = off) and drill (none on record) warn" || rd_diag
is "$(with_status ok)" "app-commands backup backup-converged backup-schema backup-writable config dump-disk env-file health-url primary privileges-backup privileges-primary refresh webhook" \
  "... every other check is ok"
is "$(ck drill reason)" "no successful drill on record" "... drill's reason"
is "$(rd '.checks | map(select((.since | type) == "number" and (.checked_at | type) == "number" and (.fix | type) == "string")) | length')" 16 \
  "... each item has since, checked_at and fix"
poll_until 5 metric_is drd_ready 1; ok $? "/metrics: drd_ready 1" || diag "$(drd_api /metrics | grep -E '^drd_(ready|check)')"
m=$(drd_api /metrics)
is "$(grep -c '^drd_check_status{check="[a-z-]*"} [012]$' <<<"$m")" 16 "... one drd_check_status line per check"
like "$m" $'\ndrd_check_status\\{check="env-file"\\} 0\n' "... env-file 0 (ok)"
like "$m" $'\ndrd_check_status\\{check="backup-lag"\\} 1\n' "... backup-lag 1 (warn)"
like "$m" $'\ndrd_drill_last_success_timestamp_seconds 0\n' "... drd_drill_last_success_timestamp_seconds 0 (no drill)"
is "$(drd_sql "SELECT count(*) FROM checks")" 16 "state db: 16 rows in checks"
is "$(drd_sql "SELECT status FROM checks WHERE name = 'env-file'")" ok "... env-file ok"
is "$(drd_sql "SELECT count(*) FROM checks WHERE status NOT IN ('ok', 'warn') OR checked_at < since")" 0 \
  "... none fails, since <= checked_at"

# the runs go on every 2 s, and the status answers quickly meanwhile:
# asked every 50 ms until another run has finished (10 s at most)
t1=$(rd .checked_at)
max=0 runs_seen=0 t2=$t1
t0=$(now_ms)
while (( $(now_ms) - t0 < 10000 )) && (( t2 - t1 < 1500 )); do
  s=$(now_ms); r=$(rd ' | "\(.running) \(.checked_at)"'); d=$(( $(now_ms) - s ))
  (( d > max )) && max=$d
  [ "${r% *}" = true ] && runs_seen=$((runs_seen + 1))
  t2=${r#* }
  sleep 0.05
done
cmp_ok "$(( t2 - t1 ))" -ge 1500 "the checks ran again (checked_at moved by $(( t2 - t1 )) ms in $(( $(now_ms) - t0 )) ms)"
cmp_ok "$max" -lt 2000 "... drctl status answered each time in under 2 s (max ${max} ms; saw a run in progress $runs_seen times)"
drd_wait_healthy 2; ok $? "... the probes see both targets healthy"
is "$(ev_count '^check: check (env-file|primary|backup):')" 0 "... no event for a check that started ok"
is "$(ev_count '^check: check drill: \(new\) -> warn')" 1 "... one event for drill's first warn"
is "$(ev_count '^check: ')" 2 "... two check events in all (backup-lag and drill, new -> warn)" ||
  diag "$(drd_sql "SELECT message FROM events WHERE kind = 'check'")"

# ----------------------------------------------- 2. the env file broken ----
snap=$(since_snapshot)
env_since=$(ck env-file since)
n_fail0=$(ev_count '^check: check env-file: ok -> fail')
mv "$FO_ENV" "$FO_ENV.away" || bail_out "cannot move the env file"
t_break=$(now_ms)
poll_until 10 ck_is env-file fail; ok $? "env file moved away: env-file fails at the next run ($POLL_ELAPSED_MS ms)" || rd_diag
like "$(ck env-file reason)" "app\.env is missing" "... reason: the env file is missing"
like "$(ck env-file fix)" "create the env file" "... with a fix"
is "$(rd .ready)" false "... readiness.ready = false"
is "$(with_status fail)" "env-file" "... env-file is the only failing check"
poll_until 5 metric_is drd_ready 0; ok $? "/metrics: drd_ready 0"
poll_until 5 metric_is 'drd_check_status{check="env-file"}' 2; ok $? '... drd_check_status{check="env-file"} 2'
is "$(drd_sql "SELECT status FROM checks WHERE name = 'env-file'")" fail "state db: env-file fail"
new_since=$(ck env-file since)
cmp_ok "$new_since" -gt "$t_break" "... env-file's since moved to the failing run"
is "$(drd_sql "SELECT since FROM checks WHERE name = 'env-file'")" "$new_since" "... the same since in the state db"
is "$(ev_count '^check: check env-file: ok -> fail: .*app\.env is missing')" $((n_fail0 + 1)) \
  "event: check env-file: ok -> fail: ... is missing"
poll_until 15 hook_has check_failed; ok $? "webhook: a check_failed notification arrives" || {
  diag "notifications: $(drd_sql "SELECT id, event, state, attempts, http_status, error FROM notifications")"; rd_diag; }
is "$(hook_get check_failed .check)" env-file "... check = env-file"
like "$(hook_get check_failed .reason)" "app\.env is missing" "... its reason"
like "$(hook_get check_failed .text)" "env-file.*missing" "... its text names the check and the reason"
is "$(drd_sql "SELECT count(*) FROM notifications WHERE event = 'check_failed' AND state = 'sent'")" 1 \
  "state db: one check_failed notification, sent"
# at least one more run with env-file still failing: no new event, no new notification
poll_until 10 checked_after "$(rd .checked_at)"; ok $? "another run with the env file still missing"
is "$(ev_count '^check: check env-file: ok -> fail')" $((n_fail0 + 1)) "... no second event (status unchanged)"
is "$(ck env-file since)" "$new_since" "... env-file's since unchanged"
is "$(drd_sql "SELECT count(*) FROM notifications WHERE event = 'check_failed'")" 1 "... no second notification"
is "$(since_snapshot)" "$snap" "the since of every other check did not move" || diag "before:" "$snap"
drd_running; ok $? "drd runs on"

# -------------------------------------------------------- 3. fixed ----
mv "$FO_ENV.away" "$FO_ENV" || bail_out "cannot restore the env file"
poll_until 10 ck_is env-file ok; ok $? "env file back: env-file ok at the next run" || rd_diag
is "$(rd .ready)" true "... readiness.ready = true"
poll_until 5 metric_is drd_ready 1; ok $? "... drd_ready 1"
poll_until 5 metric_is 'drd_check_status{check="env-file"}' 0; ok $? '... drd_check_status{check="env-file"} 0'
is "$(ev_count '^check: check env-file: fail -> ok: ')" 1 "event: check env-file: fail -> ok"
cmp_ok "$(ck env-file since)" -gt "$new_since" "... env-file's since moved again"
is "$(since_snapshot)" "$snap" "... the since of the other checks still did not move"
is "$(drd_sql "SELECT count(*) FROM notifications WHERE event = 'check_failed'")" 1 "... no notification for a recovery"

# ------------------------------------------------------------ 4. drills ----
like "$(drd_json .drill.warning)" "no successful drill" "no drill on record: status.drill.warning set"
is "$(drd_json '"\(.drill.last) \(.drill.last_ok_at) \(.drill.warn_after_ms)"')" "null null 2592000000" \
  "... last and last_ok_at null, warn_after_ms = 30 days"
is "$(drd_api /api/drills | head -n 1)" '{"drills":[]}' "GET /api/drills: none"
t_end=$(( $(now_ms) - 1000 ))
t_begin=$(( t_end - 60000 ))
r=$(post /api/drill "{\"started_at\":$t_begin,\"ended_at\":$t_end,\"result\":\"succeeded\",\"rto_ms\":4200,\"detection_ms\":900,\"primary_url\":\"postgresql://drill:$PW@127.0.0.1:5/db\"}")
is "$(code_of "$r")" 202 "POST /api/drill (succeeded): 202" || diag "$r"
like "$(body_of "$r")" '"request_id": *[0-9]+' "... with a request id"
drd_wait_field 5 .drill.last_ok_at "$t_end"; ok $? "status.drill.last_ok_at = the drill's ended_at" || diag "$(drd_json .drill)"
is "$(drd_json .drill.warning)" null "... warning null"
is "$(drd_json '"\(.drill.last.result) \(.drill.last.rto_ms) \(.drill.last.detection_ms) \(.drill.last.started_at)"')" \
  "succeeded 4200 900 $t_begin" "... last: result, rto_ms, detection_ms, started_at"
d=$(drd_api /api/drills)
is "$(code_of "$d")" 200 "GET /api/drills: 200"
is "$(body_of "$d" | jq -r '.drills | length')" 1 "... one drill"
is "$(body_of "$d" | jq -r '.drills[0] | "\(.result) \(.started_at) \(.ended_at) \(.report.rto_ms)"')" \
  "succeeded $t_begin $t_end 4200" "... with its result, times and report"
unlike "$d" "$PW" "... the password in the report's URL is masked"
poll_until 5 eval 'awk "BEGIN { exit !(\"$(metric drd_drill_last_success_timestamp_seconds)\" + 0 > 0) }"'
ok $? "/metrics: drd_drill_last_success_timestamp_seconds > 0"
v=$(metric drd_drill_last_success_timestamp_seconds)
is "$(awk -v v="$v" 'BEGIN { printf "%d", v }')" "$(( t_end / 1000 ))" "... = the drill's ended_at ($v)"
poll_until 10 ck_is drill ok; ok $? "the drill check turns ok at the next run" || rd_diag
like "$(ck drill reason)" "last successful drill was .* ago" "... reason: how long ago"
is "$(ev_count '^check: check drill: warn -> ok')" 1 "... event: check drill: warn -> ok"
is "$(ev_count '^drill: drill [0-9]+ recorded: succeeded')" 1 "event: drill recorded: succeeded"
is "$(with_status warn)" "backup-lag" "only backup-lag warns now"

r=$(post /api/drill "{\"started_at\":$(( t_end + 100 )),\"ended_at\":$(( t_end + 500 )),\"result\":\"failed\",\"error\":\"the app did not come back\"}")
is "$(code_of "$r")" 202 "POST /api/drill (failed): 202" || diag "$r"
drd_wait_field 5 .drill.last.result failed; ok $? "... status.drill.last is the failed drill"
is "$(drd_json '"\(.drill.last_ok_at) \(.drill.warning) \(.drill.last.error)"')" "$t_end null the app did not come back" \
  "... last_ok_at still the succeeded drill, no warning, the error shown"

bad_codes=
for b in '{bad' '' '[]' '{"started_at":1,"ended_at":2}' '{"started_at":1,"ended_at":2,"result":"maybe"}' \
         '{"started_at":"1","ended_at":2,"result":"succeeded"}' '{"started_at":1,"result":"succeeded"}' \
         '{"started_at":1,"ended_at":2.5,"result":"succeeded"}' '{"started_at":1,"ended_at":2,"result":"succeeded","result":"failed"}'; do
  r=$(post /api/drill "$b")
  bad_codes="$bad_codes $(code_of "$r")"
  [ "$(code_of "$r")" = 400 ] || diag "body '$b': $r"
done
is "$bad_codes" " 400 400 400 400 400 400 400 400 400" "malformed drill reports: 400 each"
like "$(body_of "$(post /api/drill '{"started_at":1,"ended_at":2}')")" '"error"' "... with an error message"
drd_running; ok $? "... drd keeps running"
drd_wait_healthy 5; ok $? "... and answers, both targets healthy"
is "$(drd_api /api/drills | head -n 1 | jq '.drills | length')" 2 "... nothing recorded for them (2 drills)"
is "$(drd_json .drill.last_ok_at)" "$t_end" "... last_ok_at unchanged"

# ----------------------------------------------------------- 5. secrets ----
set_env_url "$(app_url backup)" || bail_out "cannot rewrite the env file"
poll_until 10 ck_is env-file fail; ok $? "env file pointing at the backup: env-file fails" || rd_diag
reason=$(ck env-file reason)
like "$reason" "DATABASE_URL=postgresql://app:\*\*\*\*@.* but the active side \(primary\) has app_url postgresql://app:\*\*\*\*@" \
  "... its reason shows both URLs, masked" || diag "$reason"
poll_until 15 eval '[ "$(drd_sql "SELECT count(*) FROM notifications WHERE event = '"'check_failed'"' AND state = '"'sent'"'")" = 2 ]'
ok $? "... a second check_failed notification is sent"
st=$(drd_status_json)
unlike "$(jq -c '{readiness, drill}' <<<"$st")" "$PW" "no password in the status' readiness or drill"
unlike "$st" "$PW|$TOKEN" "... nor anywhere in the status"
for t in checks events notifications drills; do
  dump=$(sqlite3 -readonly -cmd '.timeout 5000' "$DRD_DB" ".dump $t")
  [[ "$dump" == *"INSERT INTO"* ]] || diag "the $t table is empty"
  unlike "$dump" "$PW|$TOKEN" "... nor in the state db's $t table"
done
is "$(drd_sql "SELECT count(*) FROM checks WHERE reason LIKE '%app:****@%'")" 1 "... whose env-file reason has the masked URL"
grep -q -- "$PW" "$HOOKS"; isnt $? 0 "... nor in the webhook bodies"
grep -qE -- "$PW|$TOKEN" "$DRD_LOG"; isnt $? 0 "... nor in drd's log" || diag "$(grep -E -- "$PW|$TOKEN" "$DRD_LOG" | head -3)"
set_env_url "$(app_url primary)" || bail_out "cannot restore the env file"
poll_until 10 ck_is env-file ok; ok $? "env file restored: env-file ok again" || rd_diag

# --------------------- 6. every = 1h, POST /api/checks, a slow run ----
HOLE_PORT=$(free_port) || bail_out "no free port"
HOLE_PID=$(recv_start "$HOLE_PORT" "$TEST_TMP/hole.jsonl" "$TEST_TMP/hole.log") || bail_out "cannot start the silent receiver"
proc_track "$HOLE_PID"
kill -STOP "$HOLE_PID" || bail_out "cannot stop the silent receiver"
drd_stop; ok $? "drd stops"
fo_config "$TEST_TMP/drd.conf" "${CONF_ARGS[@]}" check.every=1h \
  notify.webhook="http://127.0.0.1:$HOLE_PORT/hook/$TOKEN" || bail_out "fo_config"
t_restart=$(now_ms)
drd_start || bail_out "drd did not restart"
is "$(rd ' | "\(.ready) \(.every_ms)"')" "true 3600000" "restarted with check.every=1h: the stored results (ready) are shown, every_ms 3600000"
drd_wait_healthy 15; ok $? "... both targets healthy"
poll_until 15 checked_after "$t_restart"; ok $? "... the first run comes after ~5 s all the same" || rd_diag
cmp_ok "$(( $(rd .checked_at) - t_restart ))" -ge 4500 "... not before 5 s after the start ($(( $(rd .checked_at) - t_restart )) ms)"
is "$(ck webhook status)" warn "... the webhook that never answers only warns"
like "$(ck webhook reason)" "unreachable" "... unreachable (timed out)"
t_post=$(now_ms)
mark=$(drd_log_mark)
r=$(post /api/checks '')
is "$(code_of "$r")" 202 "POST /api/checks: 202" || diag "$r"
rid=$(body_of "$r" | jq -r .request_id 2>/dev/null)
like "$rid" '^[0-9]+$' "... with a request id"
drd_wait_field 3 .readiness.running true; ok $? "... a run is in progress at once" || rd_diag
p1=$(drd_json .targets.backup.last_probe_at)
max=0
for i in 1 2 3 4 5; do
  s=$(now_ms); drd_status_json >/dev/null; d=$(( $(now_ms) - s ))
  (( d > max )) && max=$d
done
still=$(rd .running)
is "$still" true "... while it runs (the webhook check waits 2 s)"
cmp_ok "$max" -lt 2000 "... drctl status answers in under 2 s (max ${max} ms)"
probe_advanced() { [ "$(drd_json ".targets.backup.last_probe_at > ${p1:-0}")" = true ]; }
poll_until 2 probe_advanced; ok $? "... and the probes go on (the backup's last_probe_at advances)"
poll_until 8 checked_after "$t_post"; ok $? "a new checked_at after the POST (in $POLL_ELAPSED_MS ms)" || rd_diag
# drd's log: the first probe of the backup after the run started, before the
# run stored its results (drd's own timestamps: no race with this script)
ts=$(drd_log_since "$mark" | awk '/readiness: checks started/ { s = 1; next } s && /probe backup: ok/ { print $1; exit }')
p2=$( [ -n "$ts" ] && date -d "$ts" +%s%3N)
cmp_ok "${p2:-0}" -gt 0 "... drd's log has a probe of the backup after the run started ($ts)" ||
  diag "$(drd_log_since "$mark" | grep -E 'readiness|probe backup' | head -n 8)"
cmp_ok "${p2:-0}" -lt "$(rd .checked_at)" "... that probe came while the run was still going"
is "$(rd .ready)" true "... ready = true"
is "$(drd_sql "SELECT state FROM requests WHERE id = $rid")" accepted "... the request is recorded as accepted"
r=$(post /api/checks '{bad')
is "$(code_of "$r")" 400 "POST /api/checks with a malformed body: 400"
drd_running; ok $? "drd runs on"
kill -CONT "$HOLE_PID" 2>/dev/null
done_testing
