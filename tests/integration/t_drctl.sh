#!/usr/bin/env bash
# t_drctl.sh - drctl status (table and --json), the HTTP API on the unix
# socket and on TCP with a bearer token, the fallback to the SQLite file
# when the daemon is down (exit 3), usage errors (exit 2), and secrets
# (a password in the target URLs, the API token) never shown anywhere.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require
command -v curl >/dev/null || bail_out "curl is not installed"

SECRET=s3cretpw
for c in primary backup; do
  { pg_new $c && pg_start $c; } || bail_out "cannot create cluster $c"
done
TOKEN="tok-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$TOKEN" >"$TEST_TMP/token"
chmod 600 "$TEST_TMP/token"
HPORT=$(free_port) || bail_out "no free port"
drd_config "$TEST_TMP/drd.conf" \
  "primary.url=postgresql://postgres:$SECRET@127.0.0.1:$(pg_port primary)/postgres" \
  "backup.url=postgresql://postgres:$SECRET@127.0.0.1:$(pg_port backup)/postgres" \
  "http.listen=127.0.0.1:$HPORT" "http.token_file=$TEST_TMP/token" \
  probe.cooldown=10m || bail_out "drd_config"   # the breaker stays open until drd is stopped
drd_start || bail_out "drd did not start"
drd_wait_healthy 10; ok $? "both targets healthy (trust auth ignores the password)"

# ---------------------------------------------------------- status table ----
out=$(drctl status 2>&1); rc=$?
is "$rc" 0 "drctl status: exit 0"
like "$out" "[Aa]ctive:? +primary" "table says 'active: primary'"
grep -qE 'primary.*(yes|true|healthy).*closed|primary.*closed.*(yes|true|healthy)' <<<"$out"
ok $? "table has a primary row (healthy, closed)"
grep -qE 'backup.*(yes|true|healthy).*closed|backup.*closed.*(yes|true|healthy)' <<<"$out"
ok $? "table has a backup row (healthy, closed)"
like "$out" "[Rr]unning" "table says the daemon is running"
diag "drctl status:" "$out"

# ----------------------------------------------------------- status json ----
js=$(drctl status --json); rc=$?
is "$rc" 0 "drctl status --json: exit 0"
jq -e . <<<"$js" >/dev/null; ok $? "--json output parses with jq"
is "$(jq -r '[.active, .daemon, (.run|tostring), (.approvals|type), (.generated_at|type)] | join(" ")' <<<"$js")" \
  "primary running null array number" "active, daemon, run, approvals, generated_at"
req='["breaker","breaker_since","healthy","in_recovery","last_error","last_probe_at","latency_ms","reachable"]'
for t in primary backup; do
  is "$(jq -c --argjson req "$req" ".targets.$t | (\$req - keys)" <<<"$js")" "[]" "targets.$t has every field"
  jq -e ".targets.$t | (.healthy == true) and (.breaker == \"closed\") and (.latency_ms|type == \"number\")
         and (.last_error == null) and (.in_recovery == false) and (.reachable == true)
         and (.last_probe_at|type == \"number\") and (.breaker_since|type == \"number\" or . == null)" \
    <<<"$js" >/dev/null
  ok $? "targets.$t values: healthy, closed, latency number, no error"
done
now=$(now_ms); gen=$(jq -r .generated_at <<<"$js")
cmp_ok $(( now - gen < 0 ? gen - now : now - gen )) -le 5000 "generated_at is wall-clock ms (now)"

# ------------------------------------------------------ API, unix socket ----
r=$(drd_api /healthz); is "${r##*$'\n'}" "HTTP 200" "GET /healthz on the socket: 200"
r=$(drd_api /api/status)
is "${r##*$'\n'}" "HTTP 200" "GET /api/status on the socket: 200 without a token"
is "$(jq -r '.active + " " + .targets.primary.breaker' <<<"${r%$'\n'*}")" "primary closed" "... the same status document"
r=$(drd_api /api/no-such-route); is "${r##*$'\n'}" "HTTP 404" "unknown route: 404"
r=$(drd_api /api/status -X DELETE); is "${r##*$'\n'}" "HTTP 405" "wrong method: 405"

# -------------------------------------------------- API, TCP with token ----
turl=http://127.0.0.1:$HPORT
code() { curl -s -m 5 -o /dev/null -w '%{http_code}' "$@"; }
is "$(code "$turl/healthz")" 200 "TCP GET /healthz without a token: 200"
is "$(code "$turl/api/status")" 401 "TCP GET /api/status without a token: 401"
is "$(code -H "Authorization: Bearer wrong-$TOKEN" "$turl/api/status")" 401 "... with a wrong token: 401"
is "$(code -H "Authorization: Bearer $TOKEN" "$turl/api/status")" 200 "... with the token: 200"
out=$("$DRCTL" --url "$turl" --token-file "$TEST_TMP/token" status --json 2>&1); rc=$?
is "$rc" 0 "drctl --url --token-file status --json: exit 0"
is "$(jq -r .daemon <<<"$out" 2>/dev/null)" running "... reports the running daemon"

# ------------------------------------- secrets, also in error messages ----
pg_crash primary || bail_out "cannot stop the primary"
drd_wait_field 10 .targets.primary.breaker open; ok $? "primary down: breaker open"
err=$(drd_json .targets.primary.last_error)
isnt "$err" null "primary has a last_error: $err"
declare -A seen=()
seen["drd log"]=$(cat "$DRD_LOG")
seen["drctl status"]=$(drctl status 2>&1)
seen["drctl status --json"]=$(drctl status --json 2>&1)
seen["GET /api/status (socket)"]=$(drd_api /api/status)
seen["GET /api/status (TCP)"]=$(curl -s -m 5 -H "Authorization: Bearer $TOKEN" "$turl/api/status")
seen["GET /api/events"]=$(drd_api '/api/events?since=0')
seen["GET /metrics"]=$(drd_api /metrics)
seen["drd -n"]=$("$DRD" -n -c "$DRD_CONF" 2>&1)
seen["state db"]=$(sqlite3 -readonly "$DRD_DB" .dump 2>&1)
for k in "drd log" "drctl status" "drctl status --json" "GET /api/status (socket)" \
         "GET /api/status (TCP)" "GET /api/events" "GET /metrics" "drd -n" "state db"; do
  unlike "${seen[$k]}" "$SECRET" "$k: no password"
done
masked=""
for k in "${!seen[@]}"; do [[ "${seen[$k]}" == *'****'* ]] && masked="$masked, $k"; done
diag "'****' (a masked secret) appears in: ${masked#, }"
diag "GET /api/events: ${seen[GET /api/events]##*$'\n'}, GET /metrics: ${seen[GET /metrics]##*$'\n'}"
unlike "${seen[drd log]}" "$TOKEN" "drd log: no API token"
like "${seen[drd log]}" "primary" "(the log was captured: $(grep -c . "$DRD_LOG") lines)"

# ------------------------------------------------------ daemon stopped ----
drd_stop; is "$?" 0 "drd stops (exit 0)"
js=$(drctl status --json 2>/dev/null); rc=$?
is "$rc" 3 "daemon down: drctl status --json exits 3"
is "$(jq -r .daemon <<<"$js" 2>/dev/null)" "not running" '... and says "daemon":"not running"'
is "$(jq -r '[.active, .targets.primary.breaker, .targets.primary.healthy, .targets.backup.breaker, .targets.backup.healthy] | join(" ")' <<<"$js" 2>/dev/null)" \
  "primary open false closed true" "... with the last known state from the SQLite file"
unlike "$js" "$SECRET" "... and no password"
out=$(drctl status 2>&1); rc=$?
is "$rc" 3 "daemon down: drctl status (table) exits 3"
like "$out" "[Nn]ot running" "... and says the daemon is not running"
like "$out" "backup" "... and still shows the targets"

# -------------------------------------------------------- usage errors ----
"$DRCTL" -c "$DRD_CONF" no-such-command >/dev/null 2>&1; is "$?" 2 "unknown command: exit 2"
"$DRCTL" -c "$DRD_CONF" status --no-such-flag >/dev/null 2>&1; is "$?" 2 "unknown option: exit 2"
"$DRCTL" -c "$DRD_CONF" >/dev/null 2>&1; is "$?" 2 "no command: exit 2"
"$DRCTL" -c "$TEST_TMP/missing.conf" status >/dev/null 2>&1; is "$?" 2 "missing config file: exit 2"
"$DRCTL" -c "$DRD_CONF" failover --yes >/dev/null 2>&1; is "$?" 3 "failover --yes with the daemon down: exit 3"
"$DRCTL" --url "http://127.0.0.1:$HPORT" --token-file "$TEST_TMP/token" status --json >/dev/null 2>&1
is "$?" 3 "drctl --url to a port nobody listens on: exit 3"

done_testing
