#!/usr/bin/env bash
# t_frozen_logical.sh - [refresh] mode = logical, a frozen primary (every
# process SIGSTOPped) while a second client still writes to it, policy
# auto (issue 13, item 4). stop-replication used to wait 10 s for an apply
# worker stuck on the frozen primary, then fail, and the run ended failed
# with the app stopped for those 10 s. Now it ends the worker after DISABLE
# and confirms it gone: the run succeeds, stop-replication takes well under
# a second, and nothing is applied on the backup once it is done. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require
RC=${REFRESH_CHECK:-$DRD_ROOT/build/tools/refresh_check}
[ -x "$RC" ] || bail_out "$RC not built (run make)"

pg_new primary && pg_conf primary "wal_level = logical" && pg_start primary && fo_cluster_prepare primary ||
  bail_out "cannot start the primary"
{ pg_new backup && pg_start backup && fo_cluster_prepare backup; } || bail_out "cannot start the backup"
fo_app_init || bail_out "cannot prepare the app"
cleanup_add "fo_thaw primary"
fo_config "$TEST_TMP/drd.conf" failover.policy=auto refresh.mode=logical refresh.dir="$TEST_TMP/dumps" \
  refresh.every=24h || bail_out "drd_config"

# the subscription: set up once by the refresh module (what drd does at its
# first scheduled refresh), then the backup follows the primary
out=$(timeout 60 "$RC" -c "$DRD_CONF" run manual 2>&1); st=$?
is "$st" 0 "logical replication set up (publication, copy, subscription)" || diag "$(tail -n 15 <<<"$out")"
is "$(pg_psql backup "SELECT subenabled FROM pg_subscription WHERE subname = 'drd_sub'" appdb)" t \
  "the backup's appdb subscribes to the primary's"

fo_app_start; ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"
# a second client still writing to the primary, outside the app, in big
# transactions: the freeze catches the apply worker in the middle of one
( while :; do
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port primary)" -U app -d appdb \
      -c "INSERT INTO drd_app_writes (writer, seq) SELECT 'other client', g FROM generate_series(1, 50000) g" \
      >/dev/null 2>&1
  done ) &
writer=$!
proc_track "$writer"
poll_until 15 eval '[ "$(pg_psql backup "SELECT count(*) FROM drd_app_writes WHERE writer = '"'other client'"'" appdb)" -gt 5 ]'
ok $? "the second client's rows reach the backup through replication"

t0=$(now_ms)
fo_freeze primary || bail_out "cannot freeze the primary"
poll_until 45 eval '[ "$(fo_last_run)" -ge 1 ] && fo_run_finished 1'
ok $? "a failover run started and finished while the primary is frozen" || fo_diag
took=$(( $(now_ms) - t0 ))
is "$(fo_run_state 1)" succeeded "run 1 succeeded" ||
  diag "stop-replication: $(fo_step 1 stop-replication state): $(fo_step 1 stop-replication error)"
is "$(fo_step 1 stop-replication state)" done "stop-replication done"
sr_ms=$(drd_sql "SELECT finished_at - started_at FROM steps WHERE run_id = 1 AND name = 'stop-replication'")
diag "stop-replication took ${sr_ms} ms; SIGSTOP to the end of the run: ${took} ms"
cmp_ok "${sr_ms:-99999}" -lt 3000 "stop-replication does not wait on the frozen primary (${sr_ms} ms)"
is "$(pg_psql backup "SELECT count(*) FROM pg_stat_subscription WHERE subname = 'drd_sub' AND pid IS NOT NULL" appdb)" 0 \
  "no replication worker left on the backup"
is "$(pg_psql backup "SELECT subenabled FROM pg_subscription WHERE subname = 'drd_sub'" appdb)" f \
  "the subscription is disabled"
is "$(drd_json .active)" backup "status: active=backup"
app2=$(fo_app_pid)
poll_until 15 fo_rows_by_gt backup "${app2:-0}" 3
ok $? "the app writes on the backup" || fo_diag
kill "$writer" 2>/dev/null
done_testing
