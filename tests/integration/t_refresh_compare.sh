#!/usr/bin/env bash
# t_refresh_compare.sh - [refresh] mode = reconcile where the primary does
# not allow triggers (its role has SELECT only, through a real pgbouncer in
# transaction mode, PostgreSQL 15): deletes = auto falls back to the
# key-range comparison. A 100 k-row table and a composite-key table, 10
# deletes spread over each key space while a client keeps inserting rows
# all over it: after one comparison the deleted keys are gone from the
# backup, the comparison read < 10 % of the table's bytes from the
# primary, and no live row was ever deleted on the backup (an ALWAYS
# trigger there logs every delete). Then deletes = compare with a role
# that could install the ledger: none is installed. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
cd "$DRD_ROOT" || exit 1
drd_require
command -v pgbouncer >/dev/null || bail_out "pgbouncer is not installed (make deps)"

for c in primary backup; do { pg_new $c && pg_start $c; } || bail_out "cannot start $c"; done

SCHEMA="
  CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int,
                      updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE pairs (a int, b text, v int, updated_at timestamptz NOT NULL DEFAULT now(),
                      PRIMARY KEY (a, b));"
for c in primary backup; do
  pg_psql $c "CREATE DATABASE app" >/dev/null || bail_out "create app on $c"
  pg_psql $c "$SCHEMA" app >/dev/null || bail_out "schema on $c"
done
# even ids only: the inserts during the comparison land between them
pg_psql primary "
  INSERT INTO items (id, name, qty, updated_at)
    SELECT 2 * g, 'item ' || g, g % 100, now() - interval '1 hour' + g * interval '1 ms'
    FROM generate_series(1, 100000) g;
  INSERT INTO pairs (a, b, v) SELECT a, 'k' || b, a * b FROM generate_series(1, 200) a, generate_series(1, 100) b;
  CREATE ROLE reader LOGIN;
  GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;" app >/dev/null || bail_out "data"
# the backup logs every row deleted there, whoever deletes it (ALWAYS: also
# under session_replication_role = replica)
pg_psql backup "
  CREATE SCHEMA audit;
  CREATE TABLE audit.gone (tbl text, key text);
  CREATE FUNCTION audit.log_gone() RETURNS trigger LANGUAGE plpgsql AS \$\$
  BEGIN
    IF TG_TABLE_NAME = 'items' THEN
      INSERT INTO audit.gone VALUES ('items', OLD.id::text);
    ELSE
      INSERT INTO audit.gone VALUES ('pairs', OLD.a || '/' || OLD.b);
    END IF;
    RETURN NULL;
  END \$\$;
  CREATE TRIGGER gone AFTER DELETE ON items FOR EACH ROW EXECUTE FUNCTION audit.log_gone();
  CREATE TRIGGER gone AFTER DELETE ON pairs FOR EACH ROW EXECUTE FUNCTION audit.log_gone();
  ALTER TABLE items ENABLE ALWAYS TRIGGER gone;
  ALTER TABLE pairs ENABLE ALWAYS TRIGGER gone;" app >/dev/null || bail_out "audit on the backup"

# ------------------------------------------------------------ pgbouncer ----
pgbouncer_start primary app reader || bail_out "pgbouncer did not start or does not answer"

# every pass compares (compare_every's minimum), so that the test does not
# wait; the look-back is off: it must not mend a live row deleted by mistake
SRC="postgresql://reader@127.0.0.1:$BPORT/app"
drd_config "$TEST_TMP/drd.conf" primary.app_url="$(pg_url primary postgres app)" \
  backup.app_url="$(pg_url backup postgres app)" \
  refresh.mode=reconcile refresh.every=2s refresh.source_url="$SRC" refresh.compare_every=1s \
  refresh.lookback=0 refresh.dir="$TEST_TMP/dumps" \
  app.env_file="$TEST_TMP/app.env" log.level=debug || bail_out "config"
echo "DATABASE_URL=$(pg_url primary postgres app)" >"$TEST_TMP/app.env"

sum_of() {
  pg_psql "$1" "SELECT (SELECT count(*) FROM items) || ':' ||
    (SELECT md5(string_agg(id || '/' || name || '/' || qty, ',' ORDER BY id)) FROM items) || ':' ||
    (SELECT count(*) FROM pairs) || ':' ||
    (SELECT md5(string_agg(a || '/' || b || '/' || v, ',' ORDER BY a, b)) FROM pairs)" app 2>&1
}
same() { [ "$(sum_of primary)" = "$(sum_of backup)" ]; }
cmp_field() { drd_json ".refresh.reconcile.compare.$1 // empty"; }
# compare_after MS: a comparison that started at or after MS has finished
compare_after() { local s; s=$(cmp_field started_at); [ -n "$s" ] && [ "$s" -ge "$1" ]; }

plan 11

# ---------------------------------------------------------- initial copy ----
t0=$(now_ms)
drd_start || bail_out "drd did not start"
if poll_until 90 same; then
  pass "the initial copy through pgbouncer as a SELECT-only role converges ($(( $(now_ms) - t0 )) ms)"
else
  fail "initial copy: primary $(sum_of primary) backup $(sum_of backup)"; diag_file "$DRD_LOG" 30
fi
poll_until 10 drd_field_is .refresh.reconcile.deletes compare
is "$(pg_psql primary "SELECT to_regclass('drd.deleted') IS NULL" app)/$(drd_json .refresh.reconcile.deletes)" \
  "t/compare" "no ledger on the primary (no CREATE, no TRIGGER): deletes are found by comparing"

# --------------------------------------------------- an idle comparison ----
t0=$(now_ms)
if poll_until 30 compare_after "$t0"; then
  idle=$(cmp_field bytes)
  # one digest per table when nothing differs (the bytes are the protocol's, not the machine's)
  if [ "$(cmp_field deleted)" = 0 ] && [ "$(cmp_field ranges)" = 2 ] && [ "$idle" -gt 0 ] && [ "$idle" -lt 4096 ]; then
    pass "a comparison that finds nothing reads one digest per table, < 4 KiB from the primary ($idle bytes)"
  else
    fail "idle comparison: $(drd_json .refresh.reconcile.compare -c)"
  fi
else
  fail "no comparison within 30 s: $(drd_json .refresh.reconcile -c)"; diag_file "$DRD_LOG" 30
fi

# ------------------------------- 10 deletes each, inserts all the while ----
STOP=$TEST_TMP/stop-inserts
inserter() {
  local i=0
  while [ ! -e "$STOP" ]; do
    i=$((i + 1))
    # odd ids all over the key space and past its end; new (a, b) pairs
    echo "INSERT INTO items (id, name, qty) VALUES ($(( (RANDOM * 32768 + RANDOM) % 100000 * 2 + 1 )), 'live $i', 1),
            ($(( 300000 + i )), 'tail $i', 1) ON CONFLICT DO NOTHING;
          INSERT INTO pairs (a, b, v) VALUES ($(( RANDOM % 200 + 1 )), 'n$i', $i);
          SELECT pg_sleep(0.02);"
  done | "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port primary)" -U postgres -d app >/dev/null 2>&1
}
inserter &
INS_PID=$!
proc_track "$INS_PID"
cleanup_add "touch '$STOP'"
poll_until 10 eval '[ "$(pg_psql primary "SELECT count(*) FROM items WHERE id % 2 = 1" app)" -gt 20 ]' \
  || diag "the inserter is slow to start"

ITEMS="2, 20000, 40000, 60000, 80000, 100000, 120000, 140000, 160000, 199998"
PAIRS="(1, 'k1'), (21, 'k11'), (41, 'k21'), (61, 'k31'), (81, 'k41'), (101, 'k51'), (121, 'k61'),
       (141, 'k71'), (161, 'k81'), (200, 'k100')"
pg_psql primary "DELETE FROM items WHERE id IN ($ITEMS); DELETE FROM pairs WHERE (a, b) IN ($PAIRS)" app >/dev/null \
  || bail_out "deletes on the primary"
t_del=$(now_ms)     # committed: a comparison that starts now sees them
left() {
  pg_psql backup "SELECT (SELECT count(*) FROM items WHERE id IN ($ITEMS)) || '/' ||
                         (SELECT count(*) FROM pairs WHERE (a, b) IN ($PAIRS))" app
}
if poll_until 30 compare_after "$t_del"; then
  is "$(left) $(pg_psql backup "SELECT count(*) FROM audit.gone" app)" "0/0 20" \
    "after one comparison the 10 deleted items and 10 deleted pairs (composite key) are gone from the backup, and nothing else"
else
  fail "no comparison after the deletes within 30 s: $(drd_json .refresh.reconcile -c)"; diag_file "$DRD_LOG" 30
fi
bytes=$(cmp_field bytes)
size=$(pg_psql primary "SELECT sum(pg_column_size(i.*)) FROM items i" app)
diag "that comparison: $(drd_json .refresh.reconcile.compare -c); items' rows: $size bytes"
if [ -n "$bytes" ] && [ "$bytes" -gt 0 ] && [ $(( bytes * 10 )) -lt "$size" ]; then
  pass "the comparison read < 10 % of the table's bytes from the primary ($bytes of $size)"
else
  fail "the comparison read $bytes bytes, the table is $size"
fi
poll_until 30 compare_after "$(now_ms)"
is "$(left)" "0/0" "the next comparison, inserts still running, deletes nothing else wrongly (keys still gone)"

# ----------------------------------------------------------- converged ----
touch "$STOP"
proc_kill "$INS_PID" 10
inserted=$(pg_psql primary "SELECT count(*) FROM items WHERE id % 2 = 1 OR id > 200000" app)
t0=$(now_ms)
if poll_until 30 same; then
  pass "inserts stopped: the backup equals the primary ($inserted rows inserted during the comparisons, $(( $(now_ms) - t0 )) ms)"
else
  fail "no convergence: primary $(sum_of primary) backup $(sum_of backup)"; diag_file "$DRD_LOG" 30
fi
want=$(for i in ${ITEMS//,/ }; do echo "items $i"; done
       for k in 0 1 2 3 4 5 6 7 8; do echo "pairs $(( 1 + 20 * k ))/k$(( 1 + 10 * k ))"; done
       echo "pairs 200/k100")
got=$(pg_psql backup "SELECT tbl || ' ' || key FROM audit.gone ORDER BY 1" app)
is "$(sort <<<"$got")" "$(sort <<<"$want")" "only the 20 deleted keys were ever deleted on the backup: no live row"
like "$(grep -E 'key comparison' "$DRD_LOG" | tail -n 1)" "bytes" "each comparison is logged with the bytes it read"

# ------------------------- deletes = compare where triggers are allowed ----
# the primary's superuser, directly: compare is chosen, so no ledger
drd_config "$TEST_TMP/drd.conf" primary.app_url="$(pg_url primary postgres app)" \
  backup.app_url="$(pg_url backup postgres app)" \
  refresh.mode=reconcile refresh.every=2s refresh.deletes=compare refresh.compare_every=1s \
  refresh.lookback=0 refresh.dir="$TEST_TMP/dumps" \
  app.env_file="$TEST_TMP/app.env" log.level=debug || bail_out "config"
drd_signal HUP
pg_psql primary "DELETE FROM items WHERE id = 50000; DELETE FROM pairs WHERE (a, b) = (100, 'k50')" app >/dev/null
t_del=$(now_ms)
poll_until 30 compare_after "$t_del"
is "$(pg_psql backup "SELECT (SELECT count(*) FROM items WHERE id = 50000) + (SELECT count(*) FROM pairs
                      WHERE (a, b) = (100, 'k50'))" app)" 0 "deletes = compare: the next comparison finds the deletes"
is "$(pg_psql primary "SELECT to_regclass('drd.deleted') IS NULL AND NOT EXISTS (SELECT 1 FROM pg_trigger
                       WHERE tgname = 'drd_deleted')" app)/$(drd_json .refresh.reconcile.deletes)" "t/compare" \
  "deletes = compare with a role that could install the ledger: none installed"

done_testing
