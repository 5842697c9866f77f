#!/usr/bin/env bash
# t_failback_late.sh - a write that lands on the backup after stop-app
# (issue 16). The app's stop command returns at once while its last
# client keeps inserting into the database for another 500 ms (a killed
# process whose COMMIT was on its way, pm2 workers, a second app host).
# Before: the row landed after sync-back had read the ledger, and verify
# stopped the failback with the app stopped. Now fence-backup makes the
# backup read-only for the app and ends its sessions, waiting until none is
# left, before sync-back: every failback of LATE_CYCLES (default 20)
# failover/failback cycles succeeds, every insert acknowledged on the
# backup is on the primary, and no app session is left on the backup after
# fence-backup. The next failover lifts the fence (unfence-backup). TAP.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require
CYCLES=${LATE_CYCLES:-20}

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
ACKS=$TEST_TMP/acks
: >"$ACKS"
# the late client: reads DATABASE_URL from the env file, inserts for 500 ms
# (one session per insert, as a pool reconnecting would), records each id
# the server acknowledged
{
  echo '#!/usr/bin/env bash'
  echo "url=\$(sed -n 's/^DATABASE_URL=//p' '$FO_ENV' | tail -n 1)"
  echo 'end=$(( $(date +%s%N) + 500000000 ))'
  echo 'while [ "$(date +%s%N)" -lt "$end" ]; do'
  echo "  id=\$('$PG_BIN/psql' -X -q -A -t -d \"\$url\" -c \"INSERT INTO drd_app_writes (writer, seq) VALUES ('late', 0) RETURNING id\" 2>/dev/null) &&"
  echo "    [ -n \"\$id\" ] && echo \"\$id\" >>'$ACKS'"
  echo 'done'
} >"$TEST_TMP/late_writer"
chmod +x "$TEST_TMP/late_writer"
drd_config "$TEST_TMP/drd.conf" \
  primary.app_url="$(fo_app_url primary)" backup.app_url="$(fo_app_url backup)" \
  app.env_file="$FO_ENV" app.start=true \
  app.stop="setsid $TEST_TMP/late_writer </dev/null >/dev/null 2>&1 &" || bail_out "drd_config"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"

acked_on_primary() {   # how many acknowledged ids are on the primary
  local ids; ids=$(paste -sd, "$ACKS")
  [ -n "$ids" ] || { echo 0; return; }
  pg_psql primary "SELECT count(*) FROM drd_app_writes WHERE id IN ($ids)" appdb
}

fails=0 lost=0 fenced=0 acked=0
for (( i = 1; i <= CYCLES; i++ )); do
  out=$(fo_drctl failover --yes 2>&1)
  fo=$(fo_last_run)
  if [ "$(fo_run_state "$fo")" != succeeded ]; then
    fails=$((fails + 1)); diag "cycle $i: failover run $fo: $(fo_run_state "$fo"): $out"; break
  fi
  # the app on the backup (its writes there are outage writes)
  for k in 1 2 3; do fo_app_insert backup >/dev/null; done
  : >"$ACKS"
  out=$(fo_drctl failback --yes 2>&1)
  fb=$(fo_last_run)
  if [ "$(fo_run_state "$fb")" != succeeded ]; then
    fails=$((fails + 1)); diag "cycle $i: failback run $fb: $(fo_run_state "$fb"): $(tail -n 8 <<<"$out")"
    break
  fi
  # the late writer may still be running: wait for its 500 ms to end
  poll_until 5 eval '! pgrep -f "$TEST_TMP/late_writer" >/dev/null'
  n_ack=$(wc -l <"$ACKS")
  n_on=$(acked_on_primary)
  acked=$((acked + n_ack))
  [ "$n_on" = "$n_ack" ] || { lost=$((lost + 1)); diag "cycle $i: $n_ack acknowledged, $n_on on the primary"; }
  [ "$(fo_step "$fb" fence-backup state)" = done ] && fenced=$((fenced + 1))
  (( i == 1 )) && diag "cycle 1 fence-backup: $(fo_step "$fb" fence-backup error)"
done
is "$fails" 0 "$CYCLES failover/failback cycles: every run succeeded"
is "$lost" 0 "every insert acknowledged during the failbacks ($acked) is on the primary"
is "$fenced" "$CYCLES" "fence-backup done in every cycle"
poll_until 5 fo_app_sessions_are backup 0
ok $? "no app session on the backup"
like "$(fo_app_insert backup)" "read-only" "the backup refuses the app's writes after the failback"
fo_drctl failover --yes >/dev/null 2>&1
is "$(fo_run_state "$(fo_last_run)")" succeeded "the next failover succeeds"
fo_app_insert_works backup; ok $? "... and lifted the fence: the app writes on the backup again"

# ------------------------- a retry of verify applies a late row first ----
# A runbook without fence-backup, and a row landing on the backup between
# sync-back and verify: verify fails (a backup row missing on the primary);
# approving the retry replays the ledger first, so it passes.
drd_stop
sed '/^\[step fence-backup\]/,/^$/d' "$DRD_ROOT/runbooks/failback.ini" |
  awk -v cmd="$PG_BIN/psql -X -q -d '$(fo_app_url backup)' -c \"INSERT INTO drd_app_writes (writer, seq) VALUES ('between', 0)\"" '
    /^\[step verify\]/ { print "[step late-write]"; print "action = exec"; print "command = " cmd; print "" }
    { print }' >"$TEST_TMP/fb_late.ini"
grep -q '^\[step late-write\]' "$TEST_TMP/fb_late.ini" || bail_out "cannot build the test runbook"
drd_config "$TEST_TMP/drd.conf" \
  primary.app_url="$(fo_app_url primary)" backup.app_url="$(fo_app_url backup)" \
  app.env_file="$FO_ENV" app.start=true app.stop=true failback.runbook="$TEST_TMP/fb_late.ini" || bail_out "drd_config"
drd_start || bail_out "drd did not restart"
drd_wait_healthy 15; ok $? "drd restarted with a failback runbook that lets a late row in"
out=$(fo_drctl failback --yes 2>&1)
fb=$(fo_last_run)
poll_until 10 fo_has_pending_approval attention
ok $? "verify stops the failback: the late row is not on the primary" || diag "$out"
like "$(fo_step "$fb" verify error)" "missing on the primary|differ" "... verify names the difference"
out=$(fo_drctl approve "$(fo_pending_approval attention)" 2>&1)
fo_wait_run_state 60 "$fb" succeeded
ok $? "approving the retry: verify replays the ledger first, and the failback succeeds" ||
  diag "$(fo_step "$fb" verify state): $(fo_step "$fb" verify error)"
is "$(pg_psql primary "SELECT count(*) FROM drd_app_writes WHERE writer = 'between'" appdb)" 1 \
  "the late row is on the primary"

# ------------------- an aborted failback leaves the backup writable ----
# A runbook of before pre-sync (issue 13; with it, a conflict stops the run
# before stop-app and fence-backup): the conflict is met by sync-back, with
# the app stopped and the backup fenced. Old runbook files keep working.
drd_stop
sed '/^\[step pre-sync\]/,/^$/d' "$DRD_ROOT/runbooks/failback.ini" >"$TEST_TMP/fb_old.ini"
grep -q '^\[step pre-sync\]' "$TEST_TMP/fb_old.ini" && bail_out "cannot build the old runbook"
drd_config "$TEST_TMP/drd.conf" \
  primary.app_url="$(fo_app_url primary)" backup.app_url="$(fo_app_url backup)" \
  app.env_file="$FO_ENV" app.start=true app.stop=true failback.runbook="$TEST_TMP/fb_old.ini" || bail_out "drd_config"
drd_start || bail_out "drd did not restart"
drd_wait_healthy 15
fo_drctl failover --yes >/dev/null 2>&1
is "$(fo_run_state "$(fo_last_run)")" succeeded "a failover"
id=$(pg_psql primary "SELECT max(id) FROM drd_app_writes WHERE writer = 'between'" appdb)
pg_psql backup "UPDATE drd_app_writes SET seq = 7 WHERE id = $id" appdb >/dev/null
pg_psql primary "BEGIN READ WRITE; UPDATE drd_app_writes SET seq = 8 WHERE id = $id; COMMIT" appdb >/dev/null
fo_drctl failback --yes >/dev/null 2>&1
fb=$(fo_last_run)
poll_until 10 fo_has_pending_approval attention
ok $? "a failback that meets a conflict waits, the backup fenced" || fo_diag
like "$(fo_app_insert backup)" "read-only" "... the backup refuses the app's writes meanwhile"
drctl reject "$(fo_pending_approval attention)" --reason "not now" >/dev/null 2>&1
fo_wait_run_state 10 "$fb" aborted
ok $? "rejecting it aborts the failback"
poll_until 10 fo_app_insert_works backup
ok $? "... and the backup's fence is lifted: the app, still on the backup, can write there" ||
  diag "$(fo_app_insert backup)"
like "$(drd_sql "SELECT message FROM events WHERE message LIKE '%fence is lifted again%'")" "lifted" \
  "an event says so"
done_testing
