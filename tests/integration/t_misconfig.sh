#!/usr/bin/env bash
# t_misconfig.sh - outage vs misconfiguration under `policy = auto`, against
# real clusters with scram authentication (drd's own role, a password file):
#
#  (b) first start with a wrong port in [primary] url: the primary is
#      unreachable, its breaker opens, but drd has never seen it healthy:
#      no failover within 10 probe intervals; status says so.
#      A SIGHUP with the right URL: healthy, seen.
#  (a) a wrong password after SIGHUP: "misconfigured" (auth), the breaker
#      stays closed, no failover within 10 probe intervals; status, drctl,
#      the metric and an event name the cause. The right password and a
#      SIGHUP clear it.
#  (c) an unknown database after SIGHUP: misconfigured (config), no
#      failover; fixed by SIGHUP.
#  (d) a real outage (pg_ctl stop -m immediate) still fails over.
# Notifications go to a local receiver (build/tools/webhook_recv, format json).
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require

for c in primary backup; do
  pg_new "$c" || bail_out "cannot create $c"
  pg_conf "$c" "password_encryption = 'scram-sha-256'"
  pg_start "$c" || bail_out "cannot start $c"
done
# drd's role logs in with a scram password; postgres (the tests) stays trust.
hba=$(pg_datadir primary)/pg_hba.conf
{ echo "host all drd 127.0.0.1/32 scram-sha-256"; _pg_as cat "$hba"; } >"$TEST_TMP/hba" &&
  _pg_as tee "$hba" <"$TEST_TMP/hba" >/dev/null && pg_reload primary || bail_out "cannot write pg_hba.conf"
pg_psql primary "CREATE ROLE drd LOGIN PASSWORD 'right-pw'" >/dev/null || bail_out "cannot create role drd"
is "$(PGPASSWORD=wrong "$PG_BIN/psql" -X -At -w -h 127.0.0.1 -p "$(pg_port primary)" -U drd -d postgres \
        -c 'select 1' 2>&1 | grep -c 'password authentication failed')" 1 \
  "the primary refuses role drd with a wrong password (scram)"

RECV_BIN=$DRD_TOOLS/webhook_recv
[ -x "$RECV_BIN" ] || bail_out "$RECV_BIN is not built (run make)"
HOOKS=$TEST_TMP/hooks.jsonl
RECV_PORT=$(free_port) || bail_out "no free port"
"$RECV_BIN" "$RECV_PORT" "$HOOKS" >"$TEST_TMP/recv.log" 2>&1 &
proc_track $!
poll_until 5 grep -qs "^listening on" "$TEST_TMP/recv.log" || bail_out "the webhook receiver did not start"
# hook_count EVENT: notifications EVENT received; hook_get EVENT FILTER: the last one's FILTER.
hook_count() { [ -s "$HOOKS" ] || { echo 0; return; }; jq -r --arg e "$1" 'select(.event == $e) | .event' "$HOOKS" | wc -l; }
hook_gt() { [ "$(hook_count "$1")" -gt "$2" ]; }
hook_get() { jq -r --arg e "$1" "select(.event == \$e) | $2" "$HOOKS" 2>/dev/null | tail -n 1; }

PORT=$(pg_port primary)
BAD_PORT=$(free_port) || bail_out "no free port"
PW=$TEST_TMP/primary.pw
echo right-pw >"$PW" && chmod 600 "$PW"
# A failover that does nothing but exist: what matters is whether one starts.
cat >"$TEST_TMP/failover.ini" <<'EOF'
[step mark]
action = exec
command = true
EOF
# conf URL: the config with [primary] url = URL (policy auto, no block).
conf() {
  drd_config "$TEST_TMP/drd.conf" "primary.url=$1" "primary.password_file=$PW" \
    failover.policy=auto failover.block=0s "failover.runbook=$TEST_TMP/failover.ini" \
    "notify.webhook=http://127.0.0.1:$RECV_PORT/hook" notify.format=json
}
GOOD_URL="postgresql://drd@127.0.0.1:$PORT/postgres"
# reload URL: rewrite the config and SIGHUP; wait until drd says it reloaded.
reload() {
  local mark; mark=$(drd_log_mark)
  conf "$1" && drd_signal HUP && poll_until 10 drd_log_has "$mark" 'configuration reloaded'
}
runs() { drd_sql "SELECT count(*) FROM runs"; }
metric() { drd_api /metrics | sed -n "s/^$1 //p"; }
probes() { metric 'drd_probes_total{target="primary"}'; }
probes_ge() { local n; n=$(probes); [ -n "$n" ] && [ "$n" -ge "$1" ]; }
# ten_intervals: wait until the primary has been probed 10 more times.
ten_intervals() {
  local n0; n0=$(probes)
  poll_until 30 probes_ge $(( ${n0:-0} + 10 ))
}
events_like() { drd_sql "SELECT count(*) FROM events WHERE message LIKE '$1'"; }
events_gt() { [ "$(events_like "$1")" -gt "$2" ]; }

# ------------------------------------------- (b) a wrong port at first start
conf "postgresql://drd@127.0.0.1:$BAD_PORT/postgres" || bail_out "drd_config"
drd_start || bail_out "drd did not start"
drd_wait_field 15 .targets.primary.breaker open
ok $? "wrong port: the primary is unreachable, its breaker opens (an outage as far as drd can tell)"
is "$(drd_json .targets.primary.error_class)" unreachable "status: error_class unreachable"
ten_intervals; ok $? "10 more probe intervals pass ($(probes) probes of the primary)"
is "$(runs)" 0 "no failover started (drd has never seen the primary healthy)" ||
  diag "$(drd_sql 'SELECT id, kind, started_by, reason FROM runs')"
is "$(drd_json .targets.primary.seen_healthy)" false "status: seen_healthy false"
like "$(drctl status 2>&1)" "never seen healthy since drd started" "drctl status says the primary was never seen healthy"
cmp_ok "$(events_like '%has not seen the primary healthy since it started%drctl failover%')" -ge 1 \
  "an event says why there is no failover, and that drctl failover still works"
poll_until 10 hook_gt failover_held 0; ok $? "a failover_held notification is sent"
like "$(hook_get failover_held .text)" "not seen the primary healthy" "... saying why"

reload "$GOOD_URL"; ok $? "SIGHUP with the right port"
drd_wait_field 15 '[.targets.primary.healthy, .targets.primary.seen_healthy] | join(" ")' "true true"
ok $? "the primary is healthy and seen healthy" || diag "$(drctl status 2>&1)"
unlike "$(drctl status 2>&1)" "never seen healthy" "drctl status no longer says never seen healthy"

# ------------------------------------------- (a) a wrong password after SIGHUP
echo wrong-pw >"$PW"
nev=$(events_like '%primary misconfigured%')
reload "$GOOD_URL"; ok $? "SIGHUP with a wrong password in the password file"
drd_wait_field 10 .targets.primary.probe.state misconfigured
ok $? "status: probe state misconfigured" || diag "$(drd_json .targets.primary)"
ten_intervals; ok $? "10 more probe intervals pass"
is "$(runs)" 0 "no failover started"
is "$(drd_json .targets.primary.breaker)" closed "the breaker stays closed"
is "$(drd_sql "SELECT count(*) FROM incidents")" 1 "no new incident (only the wrong port's)"
is "$(drd_json .targets.primary.error_class)" auth "status: error_class auth"
like "$(drd_json .targets.primary.probe.cause)" '^password authentication failed for user "drd"$' \
  "status: the cause names the refusal"
is "$(drd_json .targets.primary.healthy)" false "status: not healthy"
is "$(metric 'drd_target_misconfigured{target="primary"}')" 1 "metric drd_target_misconfigured{target=primary} 1"
is "$(metric 'drd_target_misconfigured{target="backup"}')" 0 "... and 0 for the backup"
out=$(drctl status 2>&1)
like "$out" 'primary: MISCONFIGURED \(auth\): password authentication failed for user "drd"' \
  "drctl status has a MISCONFIGURED line with the cause" || diag "$out"
unlike "$out" "wrong-pw" "... and no password"
unlike "$(drd_api /api/status)" "wrong-pw" "the API never shows the password"
is "$(events_like '%primary misconfigured (auth): password authentication failed%')" "$((nev + 1))" \
  "one event records it"
poll_until 10 hook_gt misconfigured 0; ok $? "a misconfigured notification is sent"
is "$(hook_count misconfigured)" 1 "... once"
is "$(hook_get misconfigured '"\(.target) \(.cause)"')" 'primary password authentication failed for user "drd"' \
  "... naming the target and the cause"
is "$(hook_count incident_start)" 1 "no incident_start for it (only the wrong port's)"

echo right-pw >"$PW"
reload "$GOOD_URL"; ok $? "SIGHUP with the right password"
drd_wait_field 10 .targets.primary.probe.state ok; ok $? "status: probe state ok again"
is "$(drd_json '[.targets.primary.healthy, .targets.primary.error_class] | join(" ")')" "true " \
  "healthy, no error class"
is "$(metric 'drd_target_misconfigured{target="primary"}')" 0 "metric back to 0"
cmp_ok "$(events_like '%primary no longer misconfigured%')" -ge 1 "an event records the end"
poll_until 10 hook_gt misconfigured_end 0; ok $? "a misconfigured_end notification is sent"

# ---------------------------------------------- (c) an unknown database
reload "postgresql://drd@127.0.0.1:$PORT/no_such_db"; ok $? "SIGHUP with an unknown database"
drd_wait_field 10 .targets.primary.probe.state misconfigured
ok $? "status: misconfigured" || diag "$(drd_json .targets.primary)"
ten_intervals; ok $? "10 more probe intervals pass"
is "$(runs)" 0 "no failover started"
is "$(drd_json .targets.primary.breaker)" closed "the breaker stays closed"
is "$(drd_json .targets.primary.error_class)" config "status: error_class config"
like "$(drd_json .targets.primary.probe.cause)" 'database "no_such_db" does not exist' "the cause names the database"
reload "$GOOD_URL"; ok $? "SIGHUP with the right database"
drd_wait_field 10 .targets.primary.healthy true; ok $? "healthy again"

# ---------------------------------------------- (d) a real outage
pg_crash primary || bail_out "cannot stop the primary"
poll_until 15 eval '[ "$(runs)" -ge 1 ]'
ok $? "pg_ctl stop -m immediate: a failover starts (${POLL_ELAPSED_MS} ms)" || diag_file "$DRD_LOG" 20
is "$(drd_sql "SELECT kind || ' ' || started_by FROM runs WHERE id = 1")" "failover policy" \
  "it is a failover started by the policy"
is "$(drd_json .targets.primary.error_class)" unreachable "status: error_class unreachable"
is "$(metric 'drd_target_misconfigured{target="primary"}')" 0 "metric: not misconfigured"

unlike "$(cat "$HOOKS")" "wrong-pw|right-pw" "no notification carries a password"

done_testing
