#!/usr/bin/env bash
# t_sync_truncate.sh - a TRUNCATE of a keyed table during the outage obeys
# the rules of deletes (issue 12, item 5). Before: the table was copied
# whole to the primary with no check, so the rows only the primary had
# (written after the backup's copy) and its pre-failover updates were
# deleted, the run succeeded and verify said equal. Now capture records a
# TRUNCATE as a delete of every row it removes, with its before-image, and
# sync-back handles them key by key:
#   ask           a row the primary changed since is a conflict; nothing written
#   primary-wins  that row keeps the primary's version (and goes back to the backup)
#   backup-wins   it is deleted, as the outage asked
# and in every case the rows only the primary has are kept, as for deletes,
# also those of a child table emptied by TRUNCATE ... CASCADE (a
# primary-only child of a truncated parent is a foreign-key conflict).
# Checked as a superuser (session_replication_role = replica) and as a plain
# role, against an independent comparison. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
SYNC_TABLES="items parent child"
SCHEMA=$TEST_TMP/trunc.sql
cat >"$SCHEMA" <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, name text);
CREATE TABLE parent (id int PRIMARY KEY, name text);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id), note text);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g;
INSERT INTO parent SELECT g, 'parent ' || g FROM generate_series(1, 5) g;
INSERT INTO child SELECT g, 1 + g % 5, 'child ' || g FROM generate_series(1, 10) g;
SQL

# md5 of one table's rows in key order: an independent comparison
tsum() { sq "$1" "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '-') FROM $2 t"; }
row() { sq "$1" "SELECT coalesce((SELECT name FROM items WHERE id = $2), '(none)')"; }

# setup [PRIMARY_CHANGED]: capture; the primary's row written after the
# backup's copy (id 100), and if asked its own update of item 2 (both
# never reached the backup); the outage truncates items and writes two rows
setup() {
  sync_load "$SCHEMA" 2>/dev/null || return 1
  sc "$CONF" capture; [ "$res" = ok ] || return 1
  sq primary "INSERT INTO items VALUES (100, 'primary only')" >/dev/null || return 1
  [ "${1:-0}" = 1 ] && { sq primary "UPDATE items SET name = 'primary update' WHERE id = 2" >/dev/null || return 1; }
  sq backup "TRUNCATE items; INSERT INTO items VALUES (1, 'after truncate'), (50, 'new')" >/dev/null
}

for who in superuser role; do
  CONF=$TEST_TMP/$who.conf
  if [ "$who" = superuser ]; then
    sync_config "$CONF"
  else
    sync_config "$CONF" primary.url="$(pg_url primary drd_sync:s3cret-sync app)" \
      backup.url="$(pg_url backup drd_sync:s3cret-sync app)"
  fi

  # ------------------------------------- the primary never touched a truncated row ----
  setup 0 || bail_out "setup"
  sc "$CONF" sync-back
  is "$res" ok "$who: truncate, no conflict: ok" || diag "$out"
  is "$(row primary 100)" "primary only" "$who: ... the row only the primary has is kept"
  is "$(row primary 1)/$(row primary 50)/$(row primary 3)" "after truncate/new/(none)" \
    "$who: ... the truncate and the rows written after it arrived"
  is "$(sq primary "SELECT string_agg(id::text, ',' ORDER BY id) FROM items")" "1,50,100" \
    "$who: ... the primary holds the backup's rows plus its own"
  is "$(sq backup "SELECT count(*) FROM items")" 2 "$who: ... the backup is untouched"
  sc "$CONF" verify
  is "$res" ok "$who: ... verify: ok (the primary's extra row reported, kept)" || diag "$out"

  # ------------------------------------------- the primary updated a truncated row ----
  setup 1 || bail_out "setup"
  p0=$(tsum primary items)
  sc "$CONF" sync-back
  is "$res/$conflicts" "fail/1" "$who, ask: a truncated row the primary changed is a conflict"
  like "$out" 'conflict in public\.items, key \{"id": 2\}' "$who, ask: ... naming its key" || diag "$out"
  like "$out" 'primary update' "$who, ask: ... with the primary's row"
  is "$(tsum primary items)" "$p0" "$who, ask: nothing written"

  sc "$CONF" sync-back --resolution primary-wins
  is "$res" ok "$who, primary-wins: ok" || diag "$out"
  is "$(row primary 2)/$(row primary 100)/$(row primary 3)" "primary update/primary only/(none)" \
    "$who, primary-wins: the primary's update and its own row stay, the rest is truncated"
  is "$(row backup 2)" "primary update" "$who, primary-wins: ... the kept row went back to the backup"

  setup 1 || bail_out "setup"
  sc "$CONF" sync-back --resolution backup-wins
  is "$res" ok "$who, backup-wins: ok" || diag "$out"
  is "$(sq primary "SELECT string_agg(id::text, ',' ORDER BY id) FROM items")" "1,50,100" \
    "$who, backup-wins: the truncate wins over the primary's update; its own row is kept"

  # --------------------------------------------------------- TRUNCATE ... CASCADE ----
  sync_load "$SCHEMA" 2>/dev/null || bail_out "load"
  sc "$CONF" capture
  sq primary "INSERT INTO child VALUES (100, 3, 'primary only')" >/dev/null
  sq backup "TRUNCATE parent CASCADE; INSERT INTO parent VALUES (1, 'back')" >/dev/null
  p0=$(tsum primary parent)/$(tsum primary child)
  sc "$CONF" sync-back
  is "$res/$conflicts" "fail/1" "$who, cascade: a truncated parent a primary-only child references is a conflict"
  like "$out" 'conflict in public\.parent, key \{"id": 3\}: deleted or re-keyed on the backup, but 1 rows of public\.child' \
    "$who, cascade: ... naming the key and the referencing table" || diag "$out"
  is "$(tsum primary parent)/$(tsum primary child)" "$p0" "$who, cascade: nothing written"
  sc "$CONF" sync-back --resolution primary-wins
  is "$res" ok "$who, cascade, primary-wins: ok" || diag "$out"
  is "$(sq primary "SELECT string_agg(id::text, ',' ORDER BY id) FROM parent")/$(sq primary "SELECT string_agg(id::text, ',' ORDER BY id) FROM child")" \
    "1,3/100" "$who, cascade, primary-wins: the truncates arrived, parent 3 and the primary's child kept"
  is "$(sq primary "SELECT count(*) FROM child c WHERE NOT EXISTS (SELECT 1 FROM parent p WHERE p.id = c.parent_id)")" 0 \
    "$who, cascade: no orphan on the primary"
done

# ------------------------------ a ledger of an older capture (op T, no rows) ----
# It only said that a table was truncated: copying the backup's whole table
# would delete what only the primary has, so that table is a conflict.
CONF=$TEST_TMP/superuser.conf
old_ledger() {
  sync_load "$SCHEMA" 2>/dev/null || return 1
  sc "$CONF" capture; [ "$res" = ok ] || return 1
  sq primary "INSERT INTO items VALUES (100, 'primary only')" >/dev/null || return 1
  sq backup "ALTER TABLE items DISABLE TRIGGER drd_capture_truncate; TRUNCATE items;
             INSERT INTO drd.ledger (schema_name, table_name, op) VALUES ('public', 'items', 'T');
             ALTER TABLE items ENABLE TRIGGER drd_capture_truncate;
             INSERT INTO items VALUES (1, 'after truncate')" >/dev/null
}
old_ledger || bail_out "setup"
p0=$(tsum primary items)
sc "$CONF" sync-back
is "$res/$conflicts" "fail/1" "old ledger, ask: a truncated table is a conflict"
like "$out" "conflict in public\.items \(truncated during the outage, recorded by an older capture" "... saying why" || diag "$out"
is "$(tsum primary items)" "$p0" "... nothing written"
sc "$CONF" sync-back --resolution primary-wins
is "$res" ok "old ledger, primary-wins: ok" || diag "$out"
is "$(tsum primary items)" "$p0" "... the primary's table is kept"
is "$(tsum backup items)" "$p0" "... and copied to the backup (rows it lacked written, its own deleted)"
old_ledger || bail_out "setup"
sc "$CONF" sync-back --resolution backup-wins
is "$res" ok "old ledger, backup-wins: ok" || diag "$out"
is "$(sq primary "SELECT string_agg(id::text, ',' ORDER BY id) FROM items")" "1" "... the backup's table replaces the primary's"

done_testing
