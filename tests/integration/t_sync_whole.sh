#!/usr/bin/env bash
# t_sync_whole.sh - whole-table copies are guarded (issue 12, item 5):
# a table without a key ([sync] no_pk = copy) changed during the outage is
# copied whole at failback. Before: always, so rows only the primary had
# (written after the backup's copy) were deleted and verify said equal.
# Now capture records the backup's fingerprint of it (count + order-
# independent hash), and sync-back copies it only if the primary's still
# matches; otherwise it is a conflict: ask writes nothing and reports it,
# backup-wins copies it, primary-wins keeps the primary's (and copies it to
# the backup, so that both sides agree). TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
SYNC_TABLES="events items"
SCHEMA=$TEST_TMP/whole.sql
cat >"$SCHEMA" <<'SQL'
CREATE TABLE events (at int, what text);           -- no key
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO events SELECT g, 'event ' || g FROM generate_series(1, 50) g;
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g;
SQL
CONF=$TEST_TMP/s.conf
sync_config "$CONF" sync.no_pk=copy

setup() {   # setup PRIMARY_TOO: capture, outage writes; the primary's own row if asked
  sync_load "$SCHEMA" 2>/dev/null || return 1
  sc "$CONF" capture; [ "$res" = ok ] || return 1
  sq backup "INSERT INTO events VALUES (100, 'outage'); UPDATE items SET name = 'x' WHERE id = 1" >/dev/null
  [ "$1" = 1 ] && sq primary "INSERT INTO events VALUES (200, 'primary only')" >/dev/null
  return 0
}
count() { sq "$1" "SELECT count(*) FROM events WHERE what = '$2'"; }

setup 0 || bail_out "setup"
sc "$CONF" sync-back
is "$res" ok "the primary's copy unchanged since capture: copied whole"
is "$(count primary outage)" 1 "... the outage's row is on the primary"
same_data "... both sides agree"

setup 1 || bail_out "setup"
sum0=$(db_checksum primary)
sc "$CONF" sync-back
is "$res/$conflicts" "fail/1" "ask: the primary's copy changed too: a conflict"
like "$out" "conflict in public\.events \(no key, changed during the outage\): the primary's copy changed too since capture \(50 rows then, 51 now\)" \
  "... reported with both counts" || diag "$out"
is "$(db_checksum primary)" "$sum0" "... nothing written (the items update waits too)"

sc "$CONF" sync-back --resolution primary-wins
is "$res" ok "primary-wins: ok" || diag "$out"
is "$(count primary 'primary only')/$(count primary outage)" "1/0" "... the primary keeps its rows (its own row kept)"
is "$(sq primary "SELECT name FROM items WHERE id = 1")" x "... the keyed outage write arrived"
like "$out" "public\.events: kept the primary's rows \(no key\); copied to the backup" "... says so"
same_data "... and the backup got the primary's table: both sides agree"

setup 1 || bail_out "setup"
sc "$CONF" sync-back --resolution backup-wins
is "$res" ok "backup-wins: ok" || diag "$out"
is "$(count primary 'primary only')/$(count primary outage)" "0/1" "... the backup's table replaces the primary's"
same_data "... both sides agree"
done_testing
