#!/usr/bin/env bash
# t_refresh_appdb.sh - refresh keeps the APP's database fresh (issue 12,
# item 3): with [primary]/[backup] url naming the maintenance database
# `postgres` and app_url naming `appdb`, a dump refresh used to copy
# `postgres` and leave the backup's appdb empty ("succeeded", lag ok), so a
# failover would land on an empty database. Now refresh works in app_url's
# database, like capture, sync-back and bump-sequences. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
cd "$DRD_ROOT" || exit 1
RC=${REFRESH_CHECK:-$DRD_ROOT/build/tools/refresh_check}
[ -x "$RC" ] || bail_out "$RC not built (run make)"
drd_require

for c in primary backup; do
  { pg_new $c && pg_start $c && pg_psql $c "CREATE DATABASE appdb" >/dev/null; } || bail_out "cannot start $c"
done
pg_psql primary "CREATE TABLE items (id int PRIMARY KEY, name text);
                 INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g" appdb >/dev/null ||
  bail_out "primary data"
# something in postgres on the primary that must NOT end up in the backup's appdb
pg_psql primary "CREATE TABLE not_the_app (x int)" postgres >/dev/null

drd_config "$TEST_TMP/drd.conf" \
  primary.url="$(pg_url primary postgres postgres)" primary.app_url="$(pg_url primary postgres appdb)" \
  backup.url="$(pg_url backup postgres postgres)" backup.app_url="$(pg_url backup postgres appdb)" \
  refresh.mode=dump refresh.dir="$TEST_TMP/dumps" refresh.every=1h || bail_out "config"
check "drd -n accepts url=postgres with app_url=appdb" "$DRD" -c "$TEST_TMP/drd.conf" -n

out=$(timeout 60 "$RC" -c "$TEST_TMP/drd.conf" run manual 2>&1); st=$?
is "$st" 0 "a manual dump refresh succeeds" || diag "$out"
is "$(pg_psql backup "SELECT count(*) FROM items" appdb 2>&1)" 500 "the backup's appdb has the app's table and rows"
is "$(pg_psql backup "SELECT md5(string_agg(i::text, ',' ORDER BY id)) FROM items i" appdb)" \
   "$(pg_psql primary "SELECT md5(string_agg(i::text, ',' ORDER BY id)) FROM items i" appdb)" \
   "... identical to the primary's"
is "$(pg_psql backup "SELECT to_regclass('not_the_app') IS NULL" appdb)" t \
   "the primary's postgres database was not copied into appdb"
is "$(pg_psql backup "SELECT to_regclass('not_the_app') IS NULL" postgres)" t \
   "... nor over the backup's postgres database"
done_testing
