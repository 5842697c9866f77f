#!/usr/bin/env bash
# t_sync_bad.sh - sync-back failing clearly and leaving the primary
# unchanged: capture never installed; a primary role with only CONNECT; a
# table dropped (and one altered) on the backup during the outage; a
# trigger disabled; an unreachable primary; the job's timeout (watchdog) and
# sync_job_free() while a statement is blocked on a lock. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
CONF=$TEST_TMP/s.conf
sync_config "$CONF" sync.schemas="public, other"

# ------------------------------------------------- capture never installed ----
sync_load 2>/dev/null || bail_out "cannot load the schema"
sqf backup "$SQL_DIR/sync_outage.sql" >/dev/null || bail_out "outage writes failed"
sum0=$(db_checksum primary)
sc "$CONF" sync-back
is "$res/$conflicts" "fail/0" "no capture: sync-back fails (not a conflict)"
like "$err" "^no change ledger on the backup: capture was not installed" "... saying capture was not installed"
is "$(db_checksum primary)" "$sum0" "... the primary is unchanged"

# ----------------------------------------------- a role with only CONNECT ----
sync_load 2>/dev/null || bail_out "cannot reload"
sc "$CONF" capture; [ "$res" = ok ] || bail_out "capture failed: $err"
sqf backup "$SQL_DIR/sync_outage.sql" >/dev/null || bail_out "outage writes failed"
sq primary "CREATE ROLE weak LOGIN PASSWORD 'weak-pass-123'; GRANT CONNECT ON DATABASE app TO weak" >/dev/null
sync_config "$TEST_TMP/weak.conf" sync.schemas="public, other" \
  primary.url="$(pg_url primary weak:weak-pass-123 app)"
sum0=$(db_checksum primary)
sc "$TEST_TMP/weak.conf" sync-back
is "$res" fail "a primary role with only CONNECT: sync-back fails"
like "$err" "the primary's role lacks privileges needed by sync-back: other\.things \(DELETE, INSERT, SELECT, UPDATE\), public\.child \(DELETE" \
  "... naming the missing privileges per table"
unlike "$out" "weak-pass-123" "... the password is not printed"
is "$(db_checksum primary)" "$sum0" "... the primary is unchanged"
sc "$TEST_TMP/weak.conf" verify
is "$res" fail "verify with that role fails too"
like "$err" "permission denied" "... permission denied"

# ------------------------------------------- a table dropped on the backup ----
sq backup "DROP TABLE trunc" >/dev/null
sc "$CONF" sync-back
is "$res" fail "a table dropped on the backup during the outage: sync-back fails"
like "$err" "schema changes during the outage are not supported.*table public\.trunc exists only on the primary" \
  "... naming the table"
is "$(db_checksum primary)" "$sum0" "... the primary is unchanged"
sc "$CONF" verify
is "$res" fail "verify fails too"
like "$err" "public\.trunc exists only on the primary" "... naming the table"

# a column added on the backup
sync_load 2>/dev/null || bail_out "cannot reload"
sc "$CONF" capture; [ "$res" = ok ] || bail_out "capture failed: $err"
sqf backup "$SQL_DIR/sync_outage.sql" >/dev/null
sq backup "ALTER TABLE rekey ADD COLUMN extra int" >/dev/null
sum0=$(db_checksum primary)
sc "$CONF" sync-back
is "$res" fail "a column added on the backup: sync-back fails"
like "$err" "columns of public\.rekey differ: backup \(code text, payload text, extra integer\), primary \(code text, payload text\)" \
  "... showing both column lists"
is "$(db_checksum primary)" "$sum0" "... the primary is unchanged"
sq backup "ALTER TABLE rekey DROP COLUMN extra" >/dev/null

# a disabled trigger: that table's writes were not recorded
sq backup "ALTER TABLE composite DISABLE TRIGGER drd_capture" >/dev/null
sc "$CONF" sync-back
is "$res" fail "a table whose capture trigger is disabled: sync-back fails"
like "$err" "tables without the capture trigger on the backup .*: public\.composite" "... naming it"
sq backup "ALTER TABLE composite ENABLE TRIGGER drd_capture" >/dev/null
is "$(db_checksum primary)" "$sum0" "... the primary is unchanged"

# ------------------------------------------------------- unreachable primary ----
sync_config "$TEST_TMP/down.conf" primary.url="postgresql://postgres:hidden-pw@127.0.0.1:$(free_port)/app"
sc "$TEST_TMP/down.conf" sync-back
is "$res" fail "unreachable primary: fails"
like "$err" "cannot connect to the primary" "... cannot connect to the primary"
unlike "$out" "hidden-pw" "... the password in the URL is masked"

# --------------------------------------------------- timeout and cancel ----
# A session on the primary holds a lock sync-back needs.
locker() {
  PGAPPNAME=locker "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port primary)" -U postgres -d app \
    -c "BEGIN; LOCK TABLE child IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60)" >/dev/null 2>&1 &
  LOCKER=$!
  proc_track "$LOCKER"
  poll_until 10 eval '[ "$(sq primary "SELECT count(*) FROM pg_locks WHERE mode = '\''AccessExclusiveLock'\'' AND relation = '\''child'\''::regclass")" = 1 ]'
}
sync_backends() { sq primary "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drd-sync'"; }

locker || bail_out "cannot take the lock"
t0=$(now_ms)
SYNC_CHECK_TIMEOUT_MS=1500 sc "$CONF" sync-back
t=$(( $(now_ms) - t0 ))
is "$res" fail "timeout_ms = 1.5s with a blocked statement: fails"
like "$err" "sync-back timed out after 1\.5s" "... timed out"
cmp_ok "$t" -lt 4000 "... within 4 s ($t ms)"
poll_until 5 eval '[ "$(sync_backends)" = 0 ]'
ok $? "the server ended the cancelled statement (no drd-sync session left, ${POLL_ELAPSED_MS} ms)"

t0=$(now_ms)
SYNC_CHECK_CANCEL_MS=500 sc "$CONF" sync-back
t=$(( $(now_ms) - t0 ))
is "$rc" 3 "sync_job_free() while blocked: cancelled, no callback (exit 3)"
like "$out" "cancelled ms=" "... cancelled"
cmp_ok "$t" -lt 3000 "... sync_job_free returned promptly ($t ms in all)"
poll_until 5 eval '[ "$(sync_backends)" = 0 ]'
ok $? "the server ended that session too"
proc_kill "$LOCKER"
# (its backend would hold the lock until pg_sleep ends)
sq primary "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'locker'" >/dev/null
is "$(db_checksum primary)" "$sum0" "the primary is unchanged after all this"
sc "$CONF" sync-back
is "$res" ok "with the lock gone, sync-back succeeds"

done_testing
