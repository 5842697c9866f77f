#!/usr/bin/env bash
# t_sync_full.sh - full mode: whole tables backup -> primary from one
# snapshot, several at once, a big table split in page ranges; on a
# truncated primary and on one with different data, as a superuser and as
# an ordinary role (tables loaded parents first); [sync] mode = full makes
# sync-back copy whole. Then valgrind: capture, sync-back (with a
# conflict), full (the worker pool) and a cancel are leak- and error-free.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
# the test schema plus a table big enough to be copied in several pieces
{ cat "$SQL_DIR/sync_schema.sql"
  echo "CREATE TABLE big (id bigint PRIMARY KEY, parent_id int REFERENCES parent (id) ON DELETE SET NULL, pad text);"
  echo "INSERT INTO big SELECT g, 1 + g % 20, repeat(md5(g::text), 4) FROM generate_series(1, 60000) g;"
} >"$TEST_TMP/full.sql"
SYNC_TABLES="$SYNC_TABLES big"
SYNC_AGG_TABLES=big
CONF=$TEST_TMP/s.conf
sync_config "$CONF" sync.schemas="public, other" sync.parallel=3
sync_config "$TEST_TMP/user.conf" sync.schemas="public, other" \
  primary.url="$(pg_url primary drd_sync:s3cret-sync app)" \
  backup.url="$(pg_url backup drd_sync:s3cret-sync app)"

sync_load "$TEST_TMP/full.sql" 2>/dev/null || bail_out "cannot load"
sqf backup "$SQL_DIR/sync_outage.sql" >/dev/null || bail_out "outage writes failed"
sq backup "UPDATE big SET pad = 'changed' WHERE id % 1000 = 0" >/dev/null

# ---------------------------------------------------- a truncated primary ----
sq primary "TRUNCATE parent, child, composite, rekey, docs, nokey, trunc, other.things, big" >/dev/null
sc "$CONF" full
is "$res/$tables" "ok/9" "full onto a truncated primary: ok, 9 tables"
[ "$res" = ok ] || diag "$out"
like "$out" "from one snapshot of the backup, 3 at a time; foreign keys: session_replication_role = replica" \
  "one snapshot, 3 workers, replica role"
like "$out" "public\.big: 60000 rows copied \([2-9] pieces in parallel\)" \
  "the big table (over 8 MB): all its rows, copied in page ranges in parallel"
is "$rows" "$(( $(sq backup "SELECT (SELECT count(*) FROM parent) + (SELECT count(*) FROM child)
  + (SELECT count(*) FROM composite) + (SELECT count(*) FROM rekey) + (SELECT count(*) FROM docs)
  + (SELECT count(*) FROM nokey) + (SELECT count(*) FROM trunc) + (SELECT count(*) FROM other.things)
  + (SELECT count(*) FROM big)") ))" "rows = every row of the backup"
same_data "the primary holds exactly the backup's rows"
is "$(sq primary "INSERT INTO docs (body) VALUES ('{}') RETURNING id")" 53 "sequences follow"
sq primary "DELETE FROM docs WHERE id = 53" >/dev/null
sc "$CONF" verify
is "$res/$tables" "ok/9" "verify: ok"
sc "$CONF" full
is "$res" ok "full again onto the now-equal primary: ok (starts over)"
same_data "... still equal"

# ------------------------------------------- different data, ordinary role ----
sq primary "UPDATE parent SET name = 'x'; DELETE FROM big WHERE id < 500; INSERT INTO trunc VALUES (77, 'p')" >/dev/null
sc "$TEST_TMP/user.conf" full
is "$res" ok "full as an ordinary role onto a primary with other data: ok"
[ "$res" = ok ] || diag "$out"
like "$out" "foreign keys: tables loaded parents first" "... parents first (no replica role)"
same_data "the primary holds exactly the backup's rows"

# ------------------------------------------- [sync] mode = full, sync-back ----
sq primary "UPDATE rekey SET payload = 'p'" >/dev/null
sync_config "$TEST_TMP/mode.conf" sync.schemas="public, other" sync.mode=full
sc "$TEST_TMP/mode.conf" sync-back
is "$res" ok "[sync] mode = full: sync-back copies whole tables (no capture needed)"
like "$out" "full copy done" "... it was a full copy"
same_data "... equal again"

# --------------------------------------------------------------- valgrind ----
if ! command -v valgrind >/dev/null; then
  skip "valgrind runs" "valgrind not installed"
else
  SC_WRAP=(valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible
           --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99)
  sync_load 2>/dev/null || bail_out "cannot reload"
  sc "$CONF" capture
  is "$rc/$res" "0/ok" "valgrind: capture clean"
  sqf backup "$SQL_DIR/sync_outage.sql" >/dev/null
  sq primary "UPDATE parent SET name = 'p' WHERE id = 1" >/dev/null
  sc "$CONF" sync-back --resolution backup-wins
  is "$rc/$res" "0/ok" "valgrind: sync-back (with a conflict, backup-wins) clean"
  sc "$CONF" full
  is "$rc/$res" "0/ok" "valgrind: full clean"
  SYNC_CHECK_CANCEL_MS=100 sc "$CONF" full
  is "$rc" 3 "valgrind: a cancelled job clean"
  SC_WRAP=()
fi

done_testing
