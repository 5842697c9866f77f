#!/usr/bin/env bash
# t_sync.sh - capture / sync-back / verify / uncapture (src/sync*.c, driven
# by build/tools/sync_check) against two real clusters that start as
# copies of each other (tests/sql/sync_schema.sql), with every kind of
# outage write on the backup (tests/sql/sync_outage.sql):
#   - capture refuses tables without a key when no_pk = refuse, installs
#     the ledger and triggers otherwise, and a second run changes nothing;
#   - sync-back as a superuser (session_replication_role = replica) puts
#     every outage write on the primary, sequences ahead, verify passes,
#     and a second run writes nothing;
#   - uncapture leaves the backup plain, twice;
#   - the same as an ordinary role owning nothing (no replica role: FK
#     order, ON DELETE CASCADE must not fire), with the app writing as yet
#     another role through the triggers.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
sync_load 2>/dev/null || bail_out "cannot load the schema"
CONF=$TEST_TMP/s.conf
sync_config "$CONF" sync.schemas="public, other"
sync_config "$TEST_TMP/refuse.conf" sync.schemas="public, other" sync.no_pk=refuse
sync_config "$TEST_TMP/user.conf" sync.schemas="public, other" \
  primary.url="$(pg_url primary drd_sync:s3cret-sync app)" \
  backup.url="$(pg_url backup drd_sync:s3cret-sync app)"

# ------------------------------------------------------------------ usage ----
"$SYNC_CHECK" >/dev/null 2>&1; is "$?" 2 "no arguments: usage error (exit 2)"
"$SYNC_CHECK" "$CONF" bogus >/dev/null 2>&1; is "$?" 2 "unknown operation: exit 2"
sc "$CONF" sync-back --resolution sometimes
is "$rc/$res" "2/fail" "unknown resolution: refused at start (exit 2)"
like "$err" "unknown conflict resolution 'sometimes'" "... saying which"

# ---------------------------------------------------------------- capture ----
ntrig() { sq backup "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"; }
has_drd() { sq backup "SELECT count(*) FROM pg_namespace WHERE nspname = 'drd'"; }

sc "$TEST_TMP/refuse.conf" capture
is "$res/$rc" "fail/1" "no_pk = refuse: capture fails"
like "$err" "without a primary key.*public\.nokey" "... naming the table without a key"
is "$(has_drd)/$(ntrig)" "0/0" "... and installs nothing"

sc "$CONF" capture
is "$res/$tables" "ok/8" "capture: ok on 8 tables (public and other)"
like "$out" "tables without a primary key or replica identity: public\.nokey" \
  "the table without a key is listed up front"
is "$(ntrig)" 15 "15 triggers: row + truncate on 7 keyed tables, one on the keyless one"
is "$(sq backup "SELECT count(*) FROM drd.no_pk_tables")" 1 "the keyless table is marked in drd.no_pk_tables"
before_defs=$(sq backup "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1")
sc "$CONF" capture
is "$res" ok "capture again: ok"
like "$out" "0 created, 15 already there, 0 removed" "... changes no trigger"
is "$(sq backup "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1")" \
  "$before_defs" "... the trigger definitions are the same"

# ----------------------------------------------------------------- outage ----
sqf backup "$SQL_DIR/sync_outage.sql" >/dev/null || bail_out "outage writes failed"
cmp_ok "$(sq backup "SELECT count(*) FROM drd.ledger")" -ge 40 "the ledger recorded the outage writes"
is "$(sq backup "SELECT count(*) FROM drd.ledger WHERE op = 'D' AND table_name = 'trunc' AND before_image IS NOT NULL")" 10 \
  "... including the TRUNCATE, as a delete of each of its 10 rows with its before-image"
is "$(sq backup "SELECT before_image->>'name' FROM drd.ledger WHERE table_name = 'parent' AND op = 'U' ORDER BY id LIMIT 1")" \
  "parent 1" "an update's before-image is the row before it"

# -------------------------------------------------------------- sync-back ----
sc "$CONF" sync-back
is "$res/$rc" "ok/0" "sync-back: ok"
[ "$res" = ok ] || diag "$out"
like "$out" "session_replication_role = replica" "a superuser uses session_replication_role = replica"
like "$out" "public\.child: [0-9]+ keys changed: [0-9]+ applied" "progress per table (keys, rows)"
like "$out" "public\.trunc: 11 keys changed: 11 applied" "the truncated table is synced key by key, like deletes"
like "$out" "public\.nokey: no key, changed, copied whole" "the keyless table is copied whole"
like "$out" "sequence public\.child_id_seq: 200 -> 203" "sequences move to the backup's value"
same_data "every outage write is on the primary (all rows of all tables equal)"
is "$(sq primary "SELECT name FROM parent WHERE id IN (1, 100) ORDER BY id" | tr '\n' ,)" \
  "renamed one,new parent," "parent: update and insert arrived"
is "$(sq primary "SELECT count(*) FROM parent WHERE id = 2")/$(sq primary "SELECT count(*) FROM child WHERE parent_id = 2")" \
  "0/0" "parent 2 and its (cascaded) children are deleted"
is "$(sq primary "SELECT code || '=' || payload FROM rekey WHERE code IN ('a', 'a2', 'b', 'c') ORDER BY 1" | tr '\n' ,)" \
  "a2=moved and changed,c=payload 2," "key updates: a -> a2, b -> c (old c deleted)"
is "$(sq primary "SELECT val FROM composite WHERE region = 'asia' AND num = 99")" "eu-3" \
  "composite key change arrived"
is "$(sq primary "SELECT body->>'edited', blob IS NULL, body_size > 0 FROM docs WHERE id = 1")" \
  'yes "quoted"|t|t' "jsonb edit, bytea set to NULL, generated column recomputed"
is "$(sq primary "SELECT encode(blob, 'hex') || ' ' || array_to_string(tags, ',', '?') FROM docs WHERE id = 2")" \
  "deadbeef x,?" "bytea and an array with a NULL"
is "$(sq primary "SELECT count(*) FROM docs WHERE id = 52 AND body IS NULL AND blob IS NULL AND feeling IS NULL")" 1 \
  "a row of NULLs arrived"
is "$(sq primary "SELECT string_agg(id || v, ',' ORDER BY id) FROM trunc")" "1after truncate,50new" \
  "truncated table: only the rows written after the TRUNCATE"

sc "$CONF" verify
is "$res/$tables" "ok/8" "verify: ok, 8 tables"

# re-run: nothing to do
sum1=$(db_checksum primary)
sc "$CONF" sync-back
is "$res/$rows" "ok/0" "sync-back again: ok, 0 rows written (idempotent)"
like "$out" "16 already in sync" "... every key found already in sync"
is "$(db_checksum primary)" "$sum1" "... the primary is unchanged"

# sequences are ahead of every used id: inserts with defaults work there
is "$(sq primary "INSERT INTO child (parent_id) VALUES (1) RETURNING id > (SELECT max(id) FROM child)")" \
  "t" "child: an insert with the default id works on the primary, above every id"
is "$(sq primary "INSERT INTO docs (body) VALUES ('{}') RETURNING id")" 53 "docs: next id 53 (backup used 52)"
sq primary "DELETE FROM child WHERE parent_id = 1 AND note IS NULL AND amount IS NULL AND id > 203; DELETE FROM docs WHERE id = 53" >/dev/null

# -------------------------------------------------------------- uncapture ----
sc "$CONF" uncapture
is "$res" ok "uncapture: ok"
like "$out" "15 triggers and schema drd removed" "... 15 triggers removed"
is "$(has_drd)/$(ntrig)" "0/0" "the backup is plain again: no schema drd, no trigger"
sc "$CONF" uncapture
is "$res" ok "uncapture again: ok (idempotent)"
sc "$CONF" sync-back
is "$res" fail "sync-back after uncapture fails"
like "$err" "no change ledger on the backup: capture was not installed" "... clearly"

# --------------------------------------------- an ordinary role (no replica) ----
sync_load 2>/dev/null || bail_out "cannot reload the schema"
sq backup "CREATE ROLE app_user LOGIN;
           GRANT USAGE ON SCHEMA other TO app_user;
           GRANT ALL ON ALL TABLES IN SCHEMA public, other TO app_user;
           GRANT ALL ON ALL SEQUENCES IN SCHEMA public, other TO app_user" >/dev/null
sc "$TEST_TMP/user.conf" capture
is "$res" ok "capture as drd_sync (has TRIGGER, owns no table): ok"
sc "$TEST_TMP/user.conf" capture
is "$res" ok "capture again as drd_sync: ok (keeps its triggers, needs no ownership)"
# the app writes as app_user: no right on schema drd needed (SECURITY DEFINER)
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(pg_port backup)" -U app_user -d app \
  -f "$SQL_DIR/sync_outage.sql" >/dev/null 2>"$TEST_TMP/app.err"
ok $? "the app, as a role without rights on schema drd, writes through the triggers"
[ -s "$TEST_TMP/app.err" ] && diag_file "$TEST_TMP/app.err"
sc "$TEST_TMP/user.conf" sync-back
is "$res" ok "sync-back as drd_sync: ok"
[ "$res" = ok ] || diag "$out"
like "$out" "tables ordered by their foreign keys" "... without the replica role: ordered by foreign keys"
same_data "every outage write is on the primary"
is "$(sq primary "SELECT count(*) FROM child WHERE parent_id = 1")" \
  "$(sq backup "SELECT count(*) FROM child WHERE parent_id = 1")" \
  "the updated parent's children are all there (no cascade on the primary)"
sc "$TEST_TMP/user.conf" verify
is "$res" ok "verify as drd_sync: ok"
sc "$TEST_TMP/user.conf" sync-back
is "$res/$rows" "ok/0" "sync-back again: 0 rows"
unlike "$out" "s3cret-sync" "the password never appears in the output"
sc "$TEST_TMP/user.conf" uncapture
is "$res" ok "uncapture as drd_sync (not the tables' owner): ok"
is "$(has_drd)/$(ntrig)" "0/0" "... the backup is plain again"

# ------------------------------------------ verify: rows only the primary has ----
# After a correct failback the primary may hold rows the backup never had
# (written there before the outage, never copied): verify passes, saying
# so, when every backup row is on the primary, identical; any backup row
# missing or different there, or a keyless table that differs, fails.
sync_load 2>/dev/null || bail_out "cannot reload the schema"
sq primary "INSERT INTO parent VALUES (500, 'before the outage'), (501, 'before the outage');
            INSERT INTO composite VALUES ('eu', 500, 'before the outage')" >/dev/null
# the primary fenced as drd fences it: verify still works (it writes nothing there)
sq primary "ALTER DATABASE app SET default_transaction_read_only = on" >/dev/null
sum1=$(db_checksum primary)
sc "$TEST_TMP/user.conf" verify
is "$res/$tables" "ok/8" "verify: the primary has extra rows only -> ok (fenced primary, ordinary role)"
[ "$res" = ok ] || diag "$out"
like "$out" "verify public\.parent: primary has 2 more rows than the backup \(written there before the outage, never copied to the backup\); every backup row is on the primary, identical" \
  "... public.parent: 2 more rows on the primary, every backup row there"
like "$out" "verify public\.composite: primary has 1 more row than the backup" "... public.composite: 1 more row"
like "$out" "verify: 8 tables, [0-9]+ rows, all backup rows on the primary \(2 tables with 3 extra primary rows, kept\)" \
  "... the summary line counts them"
is "$(db_checksum primary)" "$sum1" "... the primary is unchanged (its extra rows kept)"
is "$(sq primary "SELECT count(*) FROM pg_class WHERE relname = 'drd_verify_rows'")" 0 \
  "... no temporary table left behind"
unfenced() { PGOPTIONS="-c default_transaction_read_only=off" sq "$@"; }

unfenced backup "INSERT INTO parent VALUES (600, 'only on the backup')" >/dev/null
sc "$CONF" verify
is "$res" fail "verify: a backup row the primary lacks -> fails"
like "$err" "public\.parent \(backup 21 rows, primary 22 rows\): 1 backup row missing on the primary" \
  "... naming the table and the missing row" || diag "$err"
unlike "$err" "composite" "... the table with extra primary rows only is not a difference"
unfenced backup "DELETE FROM parent WHERE id = 600" >/dev/null

unfenced primary "UPDATE rekey SET payload = 'edited on the primary' WHERE code = 'a'" >/dev/null
sc "$CONF" verify
is "$res" fail "verify: same key, different content -> fails"
like "$err" "public\.rekey \(backup 10 rows, primary 10 rows, same count, different rows\): 1 backup row different on the primary" \
  "... naming the table and the different row" || diag "$err"
unfenced primary "UPDATE rekey SET payload = 'payload 1' WHERE code = 'a'" >/dev/null

unfenced primary "INSERT INTO nokey VALUES (99, 'before the outage')" >/dev/null
sc "$CONF" verify
is "$res" fail "verify: a table without a key that differs -> fails (as before)"
like "$err" "public\.nokey \(backup 10 rows, primary 11 rows\)" "... naming it" || diag "$err"
like "$out" "verify public\.nokey: DIFFERENT: .*no primary key" "... the report says it has no key"
unfenced primary "DELETE FROM nokey WHERE a = 99" >/dev/null

# without the right to create temporary tables on the primary: a difference, saying why
unfenced primary "REVOKE TEMP ON DATABASE app FROM PUBLIC, drd_sync" >/dev/null
sc "$TEST_TMP/user.conf" verify
is "$res" fail "verify without TEMP on the primary: extra primary rows stay a difference"
like "$err" "could not be looked up on the primary: .*permission denied to create temporary tables" \
  "... saying why" || diag "$err"
sc "$CONF" verify
is "$res" ok "... as a superuser: ok again"
unfenced primary "ALTER DATABASE app RESET default_transaction_read_only" >/dev/null

done_testing
