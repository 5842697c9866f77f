#!/usr/bin/env bash
# t_sync_precapture.sh - writes on the backup before capture (issue 12,
# item 7): what drd can still tell. A delete made on a backup that was not
# fenced, before capture, is in no ledger; at failback the primary keeps
# the row and verify used to pass calling it a row "written there before
# the outage" with no word of doubt. Now capture records whether the
# backup was fenced (read-only database, or the app's role NOLOGIN) when it
# was installed, warns when it was not, and verify then says that extra
# primary rows (or backup rows older than the primary's) may be such
# writes. A fenced backup gets no warning. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
SYNC_TABLES="items"
SCHEMA=$TEST_TMP/pre.sql
cat >"$SCHEMA" <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g;
SQL
pg_psql backup "CREATE ROLE shop LOGIN" >/dev/null
CONF=$TEST_TMP/s.conf
sync_config "$CONF" backup.app_url="$(pg_url backup shop app)"

# ------------------------------------------- not fenced, a delete before capture ----
sync_load "$SCHEMA" 2>/dev/null || bail_out "load"
sq backup "DELETE FROM items WHERE id = 3" >/dev/null
sc "$CONF" capture
is "$res" ok "capture on a backup that was not fenced: ok"
like "$out" "warning: the backup was not fenced when capture was installed" "... with a warning" || diag "$out"
sq backup "UPDATE items SET name = 'outage' WHERE id = 1" >/dev/null
sc "$CONF" sync-back
is "$res" ok "sync-back: ok" || diag "$out"
sc "$CONF" verify
is "$res" ok "verify: ok (every backup row is on the primary)" || diag "$out"
like "$out" "verify public\.items: primary has 1 more row .*but the backup was not fenced when capture was installed \([^)]*\): some may be rows deleted there before it" \
  "... saying the extra primary row may be a delete made before capture" || diag "$out"

# ------------------------------------------------- fenced read-only before capture ----
sync_load "$SCHEMA" 2>/dev/null || bail_out "load"
sq backup "ALTER DATABASE app SET default_transaction_read_only = on" >/dev/null
sc "$CONF" capture
is "$res" ok "capture on a backup fenced read-only: ok"
unlike "$out" "not fenced" "... no warning" || diag "$out"
is "$(sq backup "SELECT value FROM drd.meta WHERE name = 'fenced_at_capture'")" true "... recorded as fenced"
PGOPTIONS='-c default_transaction_read_only=off' sq backup "ALTER DATABASE app RESET default_transaction_read_only" >/dev/null
sq primary "INSERT INTO items VALUES (100, 'primary only')" >/dev/null
sc "$CONF" verify
is "$res" ok "verify: ok"
unlike "$out" "not fenced" "... extra primary rows without the doubt" || diag "$out"

# ---------------------------------------------------- fenced by NOLOGIN of the app ----
sync_load "$SCHEMA" backup 2>/dev/null || bail_out "load"
sq backup "ALTER ROLE shop NOLOGIN" >/dev/null
sc "$CONF" capture
is "$res" ok "capture with the app's role NOLOGIN: ok"
unlike "$out" "not fenced" "... counts as fenced" || diag "$out"
sq backup "ALTER ROLE shop LOGIN" >/dev/null

# ------------------------------- an update before capture, not fenced ----
# (verify takes a backup row the ledger does not have for the backup being
# behind: the primary's version stands; it says it may be such a write)
sync_load "$SCHEMA" 2>/dev/null || bail_out "load"
sq backup "UPDATE items SET name = 'before capture' WHERE id = 2" >/dev/null
sc "$CONF" capture
sc "$CONF" sync-back
sc "$CONF" verify
is "$res" ok "an update made on the unfenced backup before capture: verify passes (the primary's version stands)" || diag "$out"
like "$out" "verify public\.items: the backup was behind the primary: 1 backup row .*but the backup was not fenced when capture was installed \([^)]*\): some may be changes made there before it" \
  "... saying the row may be a change made there before capture" || diag "$out"
is "$(sq primary "SELECT name FROM items WHERE id = 2")" "item 2" "... the primary's row is kept"
done_testing
