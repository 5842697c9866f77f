#!/usr/bin/env bash
# t_sync_gap.sh - no capture gap (issue 12, item 7). A write on the backup
# between the start of a failover and its capture step (a stray app
# instance, another client: the backup was never fenced) was neither in
# the ledger nor reported: a delete made there was silently lost at
# failback. Now the failover runbook fences the backup (fence-backup, after
# stop-app and stop-replication) before capture, and lifts it only after
# capture (unfence-backup): such a write is refused. The failover is held
# at bump-sequences (a lock on the backup's table) while a client writes.
# Also, capture records whether the backup was writable when it was
# installed, and verify then says that extra primary rows may be deletes
# made on the backup before capture. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
for n in primary backup; do
  pg_psql "$n" "CREATE TABLE other (id int PRIMARY KEY, v text); ALTER TABLE other OWNER TO app;
                INSERT INTO other SELECT g, 'v' || g FROM generate_series(1, 5) g" appdb >/dev/null ||
    bail_out "cannot create the table"
done
fo_app_init || bail_out "app dir"
fo_config "$TEST_TMP/drd.conf" failover.policy=manual
fo_app_start; ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"

# hold bump-sequences: an ACCESS EXCLUSIVE lock on the backup's app table
pg_psql backup "SET application_name = 'gap_lock'; BEGIN; LOCK TABLE drd_app_writes IN ACCESS EXCLUSIVE MODE;
                SELECT pg_sleep(60); COMMIT" appdb >/dev/null 2>&1 &
lock_pid=$!
poll_until 10 eval '[ "$(pg_psql backup "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"'gap_lock'"' AND state = '"'active'"'")" = 1 ]' ||
  bail_out "the lock is not held"
fo_drctl failover --yes --reason "gap test" >"$TEST_TMP/failover.out" 2>&1 &
drctl_pid=$!
waiting_backup() {
  [ "$(pg_psql backup "SELECT pg_stat_clear_snapshot(); SELECT count(*) FROM pg_stat_activity
                        WHERE wait_event_type = 'Lock' AND datname = 'appdb'" | tail -n 1)" -gt 0 ]
}
poll_until 30 waiting_backup; ok $? "the failover is held before capture (bump-sequences waits on the lock)" || fo_diag
is "$(pg_psql backup "SELECT count(*) FROM pg_namespace WHERE nspname = 'drd'" appdb)" 0 "... capture has not run yet"

# a client as the app's role deletes a row on the backup now
out=$(PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -A -t "$(fo_app_url backup)" -c "DELETE FROM other WHERE id = 3" 2>&1)
rc=$?
isnt "$rc" 0 "a delete on the backup before capture is refused" || diag "$out"
like "$out" "read-only transaction" "... because the backup is fenced (read-only)"
is "$(pg_psql backup "SELECT count(*) FROM other WHERE id = 3" appdb)" 1 "... the row is still there"

pg_psql backup "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gap_lock'" >/dev/null
wait "$lock_pid" 2>/dev/null
poll_until 60 eval '[ "$(fo_last_run)" -ge 1 ] && fo_run_finished 1'
is "$(fo_run_state 1)" succeeded "the failover then succeeds" || { fo_diag; cat "$TEST_TMP/failover.out"; }
wait "$drctl_pid" 2>/dev/null
is "$(fo_step 1 fence-backup state)/$(fo_step 1 unfence-backup state)" "done/done" \
  "fence-backup before capture, unfence-backup after it"
out=$("$PG_BIN/psql" -X -q -A -t "$(fo_app_url backup)" -c "DELETE FROM other WHERE id = 4" 2>&1)
is "$?" 0 "after unfence-backup the app may write on the backup" || diag "$out"
is "$(pg_psql backup "SELECT count(*) FROM drd.ledger WHERE table_name = 'other' AND op = 'D'" appdb)" 1 \
  "... and that delete is in the ledger"
drd_stop
done_testing
