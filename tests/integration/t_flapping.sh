#!/usr/bin/env bash
# t_flapping.sh - policy auto, failures=4, interval=300ms:
#  1. the primary hangs (its postmaster SIGSTOPped: probes time out) and
#     comes back (SIGCONT, instant), five times: each outage ends as soon
#     as drd has seen one failed probe, so it lasts 1 or 2 probes, never
#     `failures` (that would take the test ~600 ms late to react) -> the
#     breaker never opens and no run is ever created; the app stays put.
#     (A stopped and restarted server made the outage's length depend on
#     how fast PostgreSQL restarts, and the test skipped on a slow machine.)
#  2. [failover] block = 1h: after an automatic failover and a failback
#     (which completes on its own: its verify step finds every backup row
#     on the primary, which merely has its pre-outage rows too, never
#     copied to the never-refreshed backup), a new outage starts no
#     automatic failover and an event says it is blocked.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

INTERVAL_MS=300
FAILURES=4
fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
cleanup_add "pg_thaw primary"
fo_config "$TEST_TMP/drd.conf" failover.policy=auto failover.block=1h \
  probe.interval=${INTERVAL_MS}ms probe.timeout=${INTERVAL_MS}ms probe.failures=$FAILURES \
  probe.cooldown=1s || bail_out "drd_config"

fo_app_start; ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"
app1=$(fo_app_pid)

# primary_probed_ok_after MS: drd's last probe of the primary is newer than
# MS (wall clock) and succeeded.
primary_probed_ok_after() {
  [ "$(drd_json "(.targets.primary.last_probe_at > $1) and .targets.primary.reachable")" = true ]
}
opened() {
  drd_sql "SELECT count(*) FROM events WHERE kind = 'breaker' AND target = 'primary' AND message LIKE '%-> open%'"
}

# ------------------------------------------------------------ flapping ----
# Each outage lasts until drd has seen a failed probe (so every outage
# counts), then the primary answers again at once (SIGCONT: no restart):
# 1 or 2 failed probes per outage (the probe in flight at the thaw may
# still time out), never `failures` in a row.
max_out=0 seen_all=1 max_fails=0
for i in 1 2 3 4 5; do
  mark=$(drd_log_mark)
  t0=$(now_ms)
  pg_freeze primary || bail_out "cannot freeze the primary"
  poll_until 5 drd_log_has "$mark" 'probe primary: failed'
  pg_thaw primary
  t1=$(now_ms)
  out_ms=$(( t1 - t0 ))
  (( out_ms > max_out )) && max_out=$out_ms
  # the next good probe resets the breaker's count of failures
  poll_until 10 primary_probed_ok_after "$t1" || diag "outage $i: no good probe of the primary after it came back"
  n=$(drd_log_since "$mark" | grep -c 'probe primary: failed')
  (( n >= 1 )) || seen_all=0
  (( n > max_fails )) && max_fails=$n
  diag "outage $i: ${out_ms} ms (freeze, one failed probe seen, thaw); failed probes: $n"
done
is "$seen_all" 1 "drd saw every outage (at least one failed probe each)"
cmp_ok "$max_fails" -lt "$FAILURES" "no outage lasted $FAILURES probes (at most $max_fails failed in a row; longest ${max_out} ms)"
is "$(opened)" 0 "the primary's breaker never opened"
is "$(drd_sql "SELECT count(*) FROM incidents")" 0 "no incident"
is "$(fo_runs)" 0 "no run was ever created"
is "$(fo_pending_approval)" "" "no approval"
cmp -s "$FO_ENV" "$FO_APP_DIR/app.env.orig"; ok $? "env file unchanged"
is "$(fo_app_pid)" "$app1" "the app was never restarted"
is "$(drd_json .active)" primary "status: active=primary"

# --------------------------------------------------------------- block ----
pg_crash primary || bail_out "cannot stop the primary"
poll_until 20 eval '[ "$(fo_last_run)" -ge 1 ] && fo_run_finished 1'
ok $? "a real outage: an automatic failover ran" || fo_diag
is "$(fo_run_state 1)" succeeded "run 1 succeeded"
block=$(drd_sql "SELECT value FROM kv WHERE key = 'policy_block_until'")
now=$(now_ms)
cmp_ok $(( (block - now) / 1000 )) -ge 3500 "policy blocked for about an hour (policy_block_until)"
cmp_ok $(( (block - now) / 1000 )) -le 3600 "... not more"
pg_start primary || bail_out "cannot restart the primary"
poll_until 15 fo_event_has 'answered again and was fenced'
ok $? "the returning primary was fenced" || fo_diag
drd_wait_field 15 .targets.primary.breaker closed; ok $? "primary breaker closed"
out=$(fo_drctl failback --yes 2>&1)
like "$out" "run 2 succeeded" "drctl failback --yes: the failback succeeded on its own" || { diag "$out"; fo_diag; }
unlike "$out" "waits for approval" "... it never waited for an approval"
like "$(drd_sql "SELECT output FROM steps WHERE run_id = 2 AND name = 'pre-sync'")" \
  "public\.drd_app_writes: primary has [0-9]+ more rows? than the backup .*every backup row is on the primary, identical" \
  "... pre-sync's online verify: the primary's older rows (never on the backup) kept, every backup row there"
is "$(drd_json .active)" primary "status: active=primary"
is "$(fo_env_url)" "$(fo_app_url primary)" "env file: the primary"

n_events=$(fo_event_count 'no automatic failover')
pg_crash primary || bail_out "cannot stop the primary"
poll_until 15 eval '[ "$(fo_event_count "no automatic failover")" -gt '"$n_events"' ]'
ok $? "a new outage: an event says no automatic failover (blocked)" ||
  { diag "$(drd_sql "SELECT kind, message FROM events ORDER BY id DESC LIMIT 8")"; fo_diag; }
like "$(drd_sql "SELECT message FROM events WHERE message LIKE '%no automatic failover%' ORDER BY id DESC LIMIT 1")" \
  "block" "... it names the block"
incident=$(drd_sql "SELECT max(id) FROM incidents WHERE target = 'primary' AND ended_at IS NULL")
[ -n "$incident" ]; ok $? "an incident is open (${incident:-none})"
# The policy has decided this outage (kv policy_incident): nothing later.
poll_until 10 eval '[ "$(drd_sql "SELECT value FROM kv WHERE key = '"'policy_incident'"'")" = "${incident:-x}" ]'
ok $? "the policy recorded its decision for incident ${incident:-?}"
is "$(fo_runs)" 2 "no new run"
is "$(drd_json .run)" null "no run in progress"
is "$(fo_env_url)" "$(fo_app_url primary)" "env file: still the primary"
is "$(drd_json .active)" primary "status: still active=primary"
out=$(fo_drctl failover --yes 2>&1)
like "$out" "run 3 (succeeded|failed)" "a manual failover is still possible during the block" || diag "$out"

done_testing
