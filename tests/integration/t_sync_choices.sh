#!/usr/bin/env bash
# t_sync_choices.sh - the documented conflict resolution, end to end through
# the daemon (issue 12, item 4): a failback whose pre-sync finds a row
# changed on both sides waits (ask) before the app is stopped (issue 13:
# it still runs on the backup); then
#   drctl approve ID --choice backup-wins   the backup's row replaces the
#                                           primary's, the run succeeds;
#   drctl approve ID --choice primary-wins  the primary keeps its row (and
#                                           the backup gets it), the run
#                                           succeeds.
# Each choice in its own outage cycle. Before store v5 the state file's
# CHECK refused both choices ("could not be decided"). TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
fo_config "$TEST_TMP/drd.conf" failover.policy=auto failover.block=1s || bail_out "drd_config"

# A table the app never writes, with the same rows on both sides (as a
# refresh would have left them): the rows the test makes conflict.
for n in primary backup; do
  pg_psql "$n" "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
                ALTER TABLE items OWNER TO app;
                INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g" appdb >/dev/null ||
    bail_out "cannot create items on $n"
done
item() { pg_psql "$1" "SELECT name FROM items WHERE id = $2" appdb; }
pending_attention() { [ -n "$(fo_pending_approval attention)" ]; }

fo_app_start; ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"

# cycle CHOICE ROW: an outage, a conflicting change of items ROW on both
# sides, a failback that waits, then approve --choice CHOICE.
cycle() {
  local choice=$1 row=$2 fo fb id out rc
  fo=$(( $(fo_last_run) + 1 ))
  pg_crash primary || bail_out "cannot stop the primary"
  poll_until 30 eval "[ \"\$(fo_last_run)\" -ge $fo ] && fo_run_finished $fo"
  ok $? "$choice: the outage fails over (run $fo)" || fo_diag
  is "$(fo_run_state "$fo")" succeeded "$choice: run $fo succeeded"
  # the outage's write, through the capture triggers on the backup
  pg_psql backup "UPDATE items SET name = 'backup edit $row' WHERE id = $row" appdb >/dev/null
  pg_start primary || bail_out "cannot restart the primary"
  drd_wait_field 15 .targets.primary.breaker closed
  ok $? "$choice: the primary is back" || fo_diag
  # the same row changed on the primary too (a write the backup never got;
  # through the fence, which makes appdb read-only by default)
  is "$(pg_psql primary "BEGIN READ WRITE; UPDATE items SET name = 'primary edit $row' WHERE id = $row;
                          COMMIT" appdb 2>&1)" "" "$choice: the primary's own change of row $row"

  fb=$(( fo + 1 ))
  out=$(fo_drctl failback --yes 2>&1); rc=$?
  like "$out" "waits for approval" "$choice: drctl failback says the run waits" || diag "$out"
  poll_until 10 pending_attention
  ok $? "$choice: pre-sync waits for a decision" || { diag "$out"; fo_diag; }
  is "$(fo_step "$fb" pre-sync state)" needs_attention "$choice: pre-sync needs attention"
  like "$(fo_step "$fb" pre-sync output)" "conflict in public\.items, key \{\"id\": $row\}" \
    "$choice: the report names the conflicting row"
  is "$(fo_step "$fb" stop-app state)" pending "$choice: the app was not stopped (stop-app pending)"
  is "$(item primary "$row")" "primary edit $row" "$choice: nothing written to the primary yet"

  id=$(fo_pending_approval attention)
  out=$(fo_drctl approve "$id" --choice "$choice" --reason "test" 2>&1); rc=$?
  is "$rc" 0 "$choice: drctl approve $id --choice $choice is accepted" || diag "$out"
  unlike "$out" "could not be decided" "$choice: ... not refused by the state file"
  fo_wait_run_state 60 "$fb" succeeded
  ok $? "$choice: failback run $fb succeeded" || { fo_diag; diag "$(drctl history 2>&1 | head -30)"; }
  is "$(drd_sql "SELECT choice FROM approvals WHERE id = $id")" "$choice" "$choice: the choice is recorded"
  is "$(drd_json .active)" primary "$choice: active=primary again"
  poll_until 15 fo_app_running
  ok $? "$choice: the app runs again"
}

cycle backup-wins 3
is "$(item primary 3)" "backup edit 3" "backup-wins: the backup's row is on the primary"
is "$(item backup 3)" "backup edit 3" "backup-wins: ... and still on the backup"
is "$(pg_psql primary "SELECT count(*) FROM items" appdb)" 10 "backup-wins: no row lost or added"

cycle primary-wins 5
is "$(item primary 5)" "primary edit 5" "primary-wins: the primary keeps its row"
is "$(item primary 3)" "backup edit 3" "primary-wins: the earlier cycle's row is untouched"
is "$(pg_psql primary "SELECT count(*) FROM items" appdb)" 10 "primary-wins: no row lost or added"

done_testing
