#!/usr/bin/env bash
# t_sync_conflicts.sh - rows changed on the primary after the backup's copy
# was made AND on the backup during the outage: sync-back with
#   ask           fails with conflicts=1, lists each conflict (table, key,
#                 both rows, the row before the outage), writes nothing;
#   backup-wins   the backup's rows replace the primary's;
#   primary-wins  the primary keeps its rows (copied to the backup so that
#                 verify passes), every other outage write arrives.
# And a change made only on the primary is never overwritten, and verify
# then reports the backup as behind for that table (not a failure). TAP.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
CONF=$TEST_TMP/s.conf
sync_config "$CONF" sync.schemas="public, other"

# setup: same data, capture, outage writes on the backup, and three rows
# the primary changed too (as if it took writes the backup never got):
#   parent 1   updated on both
#   parent 100 inserted on both (did not exist before)
#   docs 4     updated on the primary, deleted on the backup
setup() {
  sync_load 2>/dev/null || return 1
  sc "$CONF" capture; [ "$res" = ok ] || return 1
  sqf backup "$SQL_DIR/sync_outage.sql" >/dev/null || return 1
  sq primary "UPDATE parent SET name = 'primary edit' WHERE id = 1;
              INSERT INTO parent VALUES (100, 'primary 100');
              UPDATE docs SET body = '{\"p\": 1}' WHERE id = 4" >/dev/null
}

# --------------------------------------------------------------------- ask ----
setup || bail_out "setup failed"
sum0=$(db_checksum primary)
sc "$CONF" sync-back
is "$res/$conflicts/$rc" "fail/1/1" "ask: sync-back fails with conflicts=1"
like "$err" "^3 conflicts: .*nothing was written" "... 3 conflicts, nothing written"
like "$out" 'conflict in public\.parent, key \{"id": 1\}:' "the report names table and key"
like "$out" 'primary now: +\{"id": 1, "name": "primary edit"\}' "... the primary's row"
like "$out" 'backup now: +\{"id": 1, "name": "renamed one"\}' "... the backup's row"
like "$out" 'before outage: \{"id": 1, "name": "parent 1"\}' "... and the row before the outage"
like "$out" 'key \{"id": 100\}:.*before outage: \(no row\)' "inserted on both sides: a conflict, no row before"
like "$out" 'key \{"id": 4\}:.*backup now: +\(no row\)' "updated on the primary, deleted on the backup: a conflict"
is "$(db_checksum primary)" "$sum0" "the primary is unchanged"
sc "$CONF" sync-back
is "$res/$conflicts" "fail/1" "asking again: the same conflicts (still nothing written)"
is "$(db_checksum primary)" "$sum0" "... the primary is still unchanged"

# ------------------------------------------------------------- backup-wins ----
sc "$CONF" sync-back --resolution backup-wins
is "$res" ok "backup-wins: ok"
like "$out" "backup-wins: the backup's rows replace the primary's for all 3 conflicting keys" "... says so"
is "$(sq primary "SELECT string_agg(id || '=' || name, ',' ORDER BY id) FROM parent WHERE id IN (1, 100)")" \
  "1=renamed one,100=new parent" "the backup's rows are on the primary"
is "$(sq primary "SELECT count(*) FROM docs WHERE id = 4")" 0 "the row deleted on the backup is deleted"
same_data "the primary holds exactly the backup's rows"
sc "$CONF" verify
is "$res" ok "verify: ok"

# a change only the primary has (no outage write touched that key)
sq primary "UPDATE composite SET val = 'primary only' WHERE region = 'us' AND num = 5" >/dev/null
sc "$CONF" sync-back
is "$res/$rows" "ok/0" "sync-back again: nothing written"
is "$(sq primary "SELECT val FROM composite WHERE region = 'us' AND num = 5")" "primary only" \
  "a row changed only on the primary is never overwritten"
# verify: the outage never touched that key, so the backup was merely
# behind (the primary's version stands): it passes, and says so (issue 12)
sc "$CONF" verify
is "$res" ok "verify: passes (a row only the primary changed is the backup being behind)"
like "$out" "verify public\.composite: the backup was behind the primary: 1 backup row older than the primary's \(1 changed, 0 deleted" \
  "... naming the table and the stale row"
is "$(grep -c '^differing=1$' <<<"$out")" 1 "... one row known to differ"

# ------------------------------------------------------------ primary-wins ----
setup || bail_out "setup failed"
sc "$CONF" sync-back --resolution primary-wins
is "$res" ok "primary-wins: ok"
like "$out" "public\.parent: 2 conflicting keys kept the primary's row; copied to the backup" "... says what it kept"
is "$(sq primary "SELECT string_agg(id || '=' || name, ',' ORDER BY id) FROM parent WHERE id IN (1, 100, 101)")" \
  "1=primary edit,100=primary 100,101=another" "the primary keeps its rows; the others arrive"
is "$(sq primary "SELECT body::text FROM docs WHERE id = 4")" '{"p": 1}' "the primary's docs 4 is kept"
is "$(sq primary "SELECT code FROM rekey WHERE code = 'a2'")/$(sq primary "SELECT count(*) FROM trunc")" \
  "a2/2" "non-conflicting outage writes arrived"
same_data "the backup got the primary's rows for the conflicting keys: both sides agree"
sc "$CONF" verify
is "$res" ok "verify: ok"
sc "$CONF" sync-back
is "$res/$rows" "ok/0" "sync-back again (ask): no conflict left, nothing written"

# ---------------------------------------------- resolution from the config ----
setup || bail_out "setup failed"
sync_config "$TEST_TMP/bw.conf" sync.schemas="public, other" sync.conflicts=backup-wins
sc "$TEST_TMP/bw.conf" sync-back
is "$res" ok "[sync] conflicts = backup-wins: ok without an explicit resolution"
is "$(sq primary "SELECT name FROM parent WHERE id = 1")" "renamed one" "... the backup's row won"
sc "$CONF" sync-back --resolution primary-wins
is "$res/$rows" "ok/0" "a later primary-wins run finds nothing to do" || diag "rc=$rc" "$out"

done_testing
