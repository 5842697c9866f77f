#!/usr/bin/env bash
# t_refresh_reconcile.sh - [refresh] mode = reconcile through a real
# pgbouncer in transaction mode in front of the primary (PostgreSQL 15):
# the initial copy of 100 k rows; inserts, updates (updated_at moved),
# deletes (the drd.deleted ledger and its triggers, installed by drd) and
# a truncate converge within every + 5 s; an idle pass reads < 1 MiB; a
# row whose updated_at is behind the watermark (a skewed clock) but
# inside the look-back is still copied; kill -9 of drd in the middle of a
# pass loses and duplicates nothing; a table without change column is
# copied whole every full_every and check says so; the egress shows in
# status and /metrics; the failover and failback runbooks work unchanged.
# Deletes without triggers (the key comparison): t_refresh_compare.sh.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
cd "$DRD_ROOT" || exit 1
drd_require
command -v pgbouncer >/dev/null || bail_out "pgbouncer is not installed (make deps)"

for c in primary backup; do { pg_new $c && pg_start $c; } || bail_out "cannot start $c"; done

SCHEMA="
  CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int,
                      created_at timestamptz NOT NULL DEFAULT now(),
                      updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE notes (id serial PRIMARY KEY, item_id bigint REFERENCES items ON DELETE CASCADE,
                      body text, created_at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE tags (code text PRIMARY KEY, label text);
  CREATE TABLE keyless (x int);"
for c in primary backup; do
  pg_psql $c "CREATE DATABASE app" >/dev/null || bail_out "create app on $c"
  pg_psql $c "$SCHEMA" app >/dev/null || bail_out "schema on $c"
done
pg_psql primary "
  INSERT INTO items (id, name, qty, updated_at)
    SELECT g, 'item ' || g, g % 100, now() - interval '1 hour' + g * interval '1 ms' FROM generate_series(1, 100000) g;
  INSERT INTO notes (item_id, body) SELECT g, 'note ' || g FROM generate_series(1, 500) g;
  INSERT INTO tags VALUES ('a', 'first'), ('b', 'second');" app >/dev/null || bail_out "data"

# ------------------------------------------------------------ pgbouncer ----
pgbouncer_start primary app postgres || bail_out "pgbouncer did not start or does not answer"

SRC="postgresql://postgres@127.0.0.1:$BPORT/app"
drd_config "$TEST_TMP/drd.conf" primary.app_url="$(pg_url primary postgres app)" \
  backup.app_url="$(pg_url backup postgres app)" \
  refresh.mode=reconcile refresh.every=2s refresh.source_url="$SRC" refresh.full_every=4s \
  refresh.lookback=5m refresh.egress_budget=5GB refresh.dir="$TEST_TMP/dumps" \
  sync.no_pk=copy app.env_file="$TEST_TMP/app.env" log.level=debug || bail_out "config"
echo "DATABASE_URL=$(pg_url primary postgres app)" >"$TEST_TMP/app.env"

# sum NAME: a checksum of every reconciled table on one side
sum_of() {
  pg_psql "$1" "SELECT (SELECT count(*) FROM items) || ':' ||
    (SELECT md5(string_agg(i::text, ',' ORDER BY id)) FROM items i) || ':' ||
    (SELECT md5(coalesce(string_agg(n::text, ',' ORDER BY id), '')) FROM notes n) || ':' ||
    (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY code), '')) FROM tags t)" app 2>&1
}
same() { [ "$(sum_of primary)" = "$(sum_of backup)" ]; }
backup_count() { pg_psql backup "SELECT count(*) FROM items" app; }
last_pass() {   # the newest finished reconcile refresh: state bytes
  sqlite3 -readonly "$DRD_DB" "SELECT state || ' ' || bytes FROM refreshes WHERE mode = 'reconcile'
    AND state <> 'running' ORDER BY id DESC LIMIT 1" 2>/dev/null
}
passes_done() { sqlite3 -readonly "$DRD_DB" "SELECT count(*) FROM refreshes WHERE mode = 'reconcile'
    AND state = 'succeeded'" 2>/dev/null || echo 0; }
wait_passes() {   # wait_passes N TIMEOUT: N more passes succeed
  local want=$(( $(passes_done) + $1 ))
  poll_until "$2" test_ge_passes "$want"
}
test_ge_passes() { [ "$(passes_done)" -ge "$1" ]; }

plan 13

# ---------------------------------------------------------- initial copy ----
t0=$(now_ms)
drd_start || bail_out "drd did not start"
if poll_until 60 same; then
  pass "the initial copy of 100 k rows through pgbouncer (transaction mode) converges ($(( $(now_ms) - t0 )) ms)"
else
  fail "initial copy: primary $(sum_of primary) backup $(sum_of backup)"; diag_file "$DRD_LOG" 30
fi
is "$(pg_psql backup "SELECT count(*) FROM keyless" app)" 0 "a keyless table is not reconciled"

# ----------------------------------------------- inserts, updates, deletes ----
pg_psql primary "
  INSERT INTO items (id, name, qty) SELECT g, 'new ' || g, 1 FROM generate_series(100001, 100200) g;
  UPDATE items SET name = name || ' changed', updated_at = now() WHERE id % 1000 = 0;
  DELETE FROM items WHERE id BETWEEN 500 AND 520;
  INSERT INTO notes (item_id, body) VALUES (100001, 'fresh');
  DELETE FROM notes WHERE id = 7;" app >/dev/null
t0=$(now_ms)
if poll_until 7 same; then
  pass "inserts, updates and deletes converge within every + 5 s ($(( $(now_ms) - t0 )) ms)"
else
  fail "no convergence: primary $(sum_of primary) backup $(sum_of backup)"; diag_file "$DRD_LOG" 30
fi
ledger_empty() { [ "$(pg_psql primary "SELECT count(*) FROM drd.deleted" app)" = 0 ]; }
poll_until 5 ledger_empty; ok $? "the delete ledger is pruned once applied"

# ------------------------------------------------------------- idle pass ----
wait_passes 2 20
read -r st bytes <<<"$(last_pass)"
if [ "$st" = succeeded ] && [ "$bytes" -gt 0 ] && [ "$bytes" -lt 1048576 ]; then
  pass "an idle pass reads < 1 MiB from the primary ($bytes bytes)"
else
  fail "idle pass: $st $bytes bytes"
fi

# ---------------------------------------------------- a skewed updated_at ----
# the watermark is past now() - 1 min: this row's updated_at is behind it
pg_psql primary "INSERT INTO items (id, name, qty, updated_at) VALUES (300000, 'skewed', 1, now() - interval '2 minutes')" app >/dev/null
# the look-back runs at most every 10 s (and every pass when passes are rarer)
if poll_until 20 same; then
  pass "a row 2 min behind the watermark (inside the 5 min look-back) is copied"
else
  fail "the skewed row was not copied: $(pg_psql backup "SELECT count(*) FROM items WHERE id = 300000" app)"
fi

# ------------------------------------------------------- truncate, tags ----
pg_psql primary "UPDATE tags SET label = 'changed' WHERE code = 'a'; INSERT INTO tags VALUES ('c', 'third')" app >/dev/null
if poll_until 10 same; then pass "a table without change column is copied whole every full_every"
else fail "tags: $(pg_psql backup "SELECT string_agg(code || '=' || label, ',') FROM tags" app)"; fi

# ------------------------------------------------------ kill -9 in a pass ----
pg_psql primary "UPDATE items SET qty = qty + 1, updated_at = now() WHERE id <= 60000" app >/dev/null
running() { [ "$(sqlite3 -readonly "$DRD_DB" "SELECT count(*) FROM refreshes WHERE state = 'running'" 2>/dev/null)" = 1 ] \
  && [ "$(sqlite3 -readonly "$DRD_DB" "SELECT count(*) FROM reconcile_tables WHERE name = 'public.items'
          AND updated_at > $(now_ms) - 2000" 2>/dev/null)" = 1 ]; }
if poll_until 20 running; then
  kill -9 "$DRD_PID"; { wait "$DRD_PID"; } 2>/dev/null
  wm=$(sqlite3 -readonly "$DRD_DB" "SELECT watermark FROM reconcile_tables WHERE name = 'public.items'")
  diag "killed during a pass; the items watermark was $wm"
  drd_start || bail_out "drd did not restart"
  if poll_until 30 same; then pass "kill -9 during a pass: after a restart nothing is lost or duplicated"
  else fail "after kill -9: primary $(sum_of primary) backup $(sum_of backup)"; fi
else
  fail "no pass was seen running with 60 k changed rows"
fi
is "$(sqlite3 -readonly "$DRD_DB" "SELECT state FROM refreshes WHERE error LIKE 'drd stopped%' ORDER BY id DESC LIMIT 1")" \
  failed "the interrupted pass is recorded as failed"

# ------------------------------------------------------- status, metrics ----
eg=$(drd_status_json | jq -r '.refresh.egress.month_bytes')
if [ -n "$eg" ] && [ "$eg" != null ] && [ "$eg" -gt 1000000 ]; then pass "status shows this month's egress ($eg bytes)"
else fail "status egress: $eg"; fi
m=$(drd_api /metrics)
like "$m" 'drd_refresh_egress_month_bytes [0-9]+' "/metrics has the month's egress and its projection"

# ---------------------------------------------------------------- check ----
out=$(drctl check 2>&1)
like "$(grep -E '^(ok|warn|fail) +refresh ' <<<"$out")" 'public.tags' "check says which table is copied whole (no change column)"

# ------------------------------------------------- failover and failback ----
pg_psql primary "INSERT INTO items (id, name, qty) VALUES (400000, 'before failover', 1)" app >/dev/null
poll_until 10 same
drctl failover --yes >"$TEST_TMP/failover.out" 2>&1; fst=$?
pg_psql backup "INSERT INTO items (id, name, qty) VALUES (400001, 'on the backup', 1)" app >/dev/null
drctl failback --yes >"$TEST_TMP/failback.out" 2>&1; bst=$?
if [ $fst = 0 ] && [ $bst = 0 ] && [ "$(pg_psql primary "SELECT count(*) FROM items WHERE id = 400001" app)" = 1 ]; then
  pass "the failover and failback runbooks work unchanged in reconcile mode"
else
  fail "failover $fst failback $bst"; diag_file "$TEST_TMP/failover.out" 15; diag_file "$TEST_TMP/failback.out" 15
fi

done_testing
