#!/usr/bin/env bash
# tests/bench_reconcile.sh - [refresh] mode = reconcile under load (issue 15):
# the daemon reads the primary through a real pgbouncer in transaction
# mode, every = 1s, while pgbench writes 100 times a second to the primary
# (directly, as the app would): 30 % inserts, 70 % updates of a random
# existing row, each setting updated_at = clock_timestamp().
#   lag    per write: from its updated_at on the primary (an AFTER trigger
#          logs every write there, also those a later write overwrites) to
#          the first moment the backup holds that version of the row or a
#          newer one (an ALWAYS trigger on the backup logs every row drd
#          writes with clock_timestamp(); same machine, same clock).
#          Median and p99 against the target every + 1 s.
#   bytes  per pass: what the pass read from the source (drd's egress
#          record: the TCP_INFO count of its connections to pgbouncer)
#          against 2 x the changed rows' bytes + 64 KiB, where the changed
#          rows' bytes = sum of pg_column_size of the rows the pass wrote
#          on the backup (logged by the same trigger, between the pass's
#          start and end). The passes that ran the look-back (at most every
#          10 s) are counted too. Idle passes (no load): their bytes.
#   dump   the baseline beside it, same table, same run: one dump-mode
#          refresh (primary direct: pg_dump needs a session), its time and
#          its egress (the dump file's size), and what that makes per day
#          at reconcile's change rate.
# ROWS rows in the table first (100 k; BENCH_QUICK=1: 20 k), LOAD_S seconds
# of load (40; BENCH_QUICK=1: 15). Prints the figures; exits 1 only when
# the set-up or a tool fails (targets missed are reported, not fatal).
set -u
. "$(dirname "$0")/lib/pg.sh"
. "$(dirname "$0")/lib/drd.sh"
cd "$DRD_ROOT" || exit 1
drd_require

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  ROWS=${BENCH_ROWS:-20000}; LOAD_S=${BENCH_LOAD_SECONDS:-15}
else
  ROWS=${BENCH_ROWS:-100000}; LOAD_S=${BENCH_LOAD_SECONDS:-40}
fi
RATE=${BENCH_RATE:-100}
EVERY_MS=1000
RC=${REFRESH_CHECK:-$DRD_ROOT/build/tools/refresh_check}
PGBENCH=$PG_BIN/pgbench
say() { printf '%s\n' "$*"; }
die() { say "bench_reconcile: $*" >&2; exit 1; }
[ -x "$RC" ] || die "$RC is not built (run make)"
[ -x "$PGBENCH" ] || die "$PGBENCH is missing"
command -v pgbouncer >/dev/null || die "pgbouncer is not installed (make deps)"

say "bench_reconcile: $ROWS rows, $RATE writes/s for $LOAD_S s, every = 1s, through pgbouncer (transaction mode)"
for c in primary backup; do
  { pg_new $c >/dev/null && pg_start $c; } || die "cannot start $c"
  pg_psql $c "CREATE DATABASE app" >/dev/null || die "create app on $c"
  pg_psql $c "
    CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int NOT NULL,
                        payload text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE SCHEMA benchlog;" app >/dev/null || die "schema on $c"
done
# the primary: every write's version (id, updated_at)
pg_psql primary "
  CREATE TABLE benchlog.writes (id bigint, at timestamptz);
  CREATE FUNCTION benchlog.w() RETURNS trigger LANGUAGE plpgsql AS
    \$\$ BEGIN INSERT INTO benchlog.writes VALUES (NEW.id, NEW.updated_at); RETURN NULL; END \$\$;
  CREATE SEQUENCE benchlog.ids START $(( ROWS + 1 ));
  INSERT INTO items SELECT g, 'item ' || g, g % 100, repeat(md5(g::text), 2),
    clock_timestamp() - interval '1 hour' FROM generate_series(1, $ROWS) g;
  CREATE TRIGGER w AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION benchlog.w();" app >/dev/null \
  && pg_psql primary "VACUUM ANALYZE items" app >/dev/null || die "data on the primary"
# the backup: every row drd writes there, when, and its size; ALWAYS: drd
# writes with session_replication_role = replica
pg_psql backup "
  CREATE TABLE benchlog.arrivals (id bigint, ver timestamptz, at timestamptz, size int);
  CREATE FUNCTION benchlog.a() RETURNS trigger LANGUAGE plpgsql AS
    \$\$ BEGIN INSERT INTO benchlog.arrivals VALUES (NEW.id, NEW.updated_at, clock_timestamp(), pg_column_size(NEW));
         RETURN NULL; END \$\$;
  CREATE TRIGGER a AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION benchlog.a();
  ALTER TABLE items ENABLE ALWAYS TRIGGER a;
  CREATE TABLE benchlog.writes (id bigint, at timestamptz);
  CREATE TABLE benchlog.passes (id bigint, started_at bigint, finished_at bigint, bytes bigint);" app >/dev/null \
  || die "logs on the backup"

# ------------------------------------------------------------ pgbouncer ----
pgbouncer_start primary app postgres || die "pgbouncer did not start or does not answer"

# ---------------------------------------------------------------- drd ----
drd_config "$TEST_TMP/drd.conf" primary.app_url="$(pg_url primary postgres app)" \
  backup.app_url="$(pg_url backup postgres app)" probe.interval=1s probe.timeout=1s \
  refresh.mode=reconcile refresh.every=1s refresh.source_url="postgresql://postgres@127.0.0.1:$BPORT/app" \
  refresh.dir="$TEST_TMP/dumps" app.env_file="$TEST_TMP/app.env" log.level=warn || die "config"
echo "DATABASE_URL=$(pg_url primary postgres app)" >"$TEST_TMP/app.env"

count() { pg_psql "$1" "SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM items" app; }
same() { [ "$(count primary)" = "$(count backup)" ]; }
t0=$(now_ms)
drd_start || die "drd did not start"
poll_until 300 same || die "the initial copy did not converge in 300 s: $(count primary) / $(count backup)"
copy_ms=$(( $(now_ms) - t0 ))
# the passes to compare: from here on
pass_from=$(now_ms)
pg_psql backup "TRUNCATE benchlog.arrivals" app >/dev/null

# ---------------------------------------------------------------- load ----
cat >"$TEST_TMP/write.sql" <<EOF
\set r random(1, 10)
\set id random(1, $ROWS)
\if :r <= 3
INSERT INTO items (id, name, qty, payload) VALUES (nextval('benchlog.ids'), 'new', 1, repeat(md5(random()::text), 2));
\else
UPDATE items SET qty = qty + 1, updated_at = clock_timestamp() WHERE id = :id;
\endif
EOF
say "load: pgbench -R $RATE, 2 clients, $LOAD_S s (initial copy of $ROWS rows took $(( copy_ms / 1000 )) s)"
load_from=$(now_ms)
"$PGBENCH" -n -c 2 -j 2 -R "$RATE" -T "$LOAD_S" -f "$TEST_TMP/write.sql" \
  -h 127.0.0.1 -p "$(pg_port primary)" -U postgres app >"$TEST_TMP/pgbench.log" 2>&1 \
  || { cat "$TEST_TMP/pgbench.log" >&2; die "pgbench failed"; }
load_to=$(now_ms)
tps=$(awk '/^tps = / { printf "%.0f", $3 }' "$TEST_TMP/pgbench.log")
t1=$(now_ms)
poll_until 60 same || say "  (the backup had not caught up 60 s after the load: $(count primary) / $(count backup))"
catchup_ms=$(( $(now_ms) - t1 ))

# ----------------------------------------------------------- idle passes ----
passes() { sqlite3 -readonly "$DRD_DB" "SELECT count(*) FROM refreshes WHERE mode = 'reconcile' AND state = 'succeeded'"; }
want=$(( $(passes) + 10 ))
poll_until 30 eval '[ "$(passes)" -ge "$want" ]' || say "  (fewer idle passes than expected)"
drd_stop >/dev/null 2>&1

# ------------------------------------------------------------- figures ----
# the writes of the load, the passes from the first load pass on: to the backup
pg_psql primary "COPY (SELECT id, at FROM benchlog.writes WHERE at >= to_timestamp($load_from / 1000.0)) TO STDOUT" app \
  >"$TEST_TMP/writes.tsv"
sqlite3 -readonly -separator $'\t' "$DRD_DB" "SELECT id, started_at, coalesce(finished_at, 0), bytes FROM refreshes
  WHERE mode = 'reconcile' AND state = 'succeeded' AND started_at >= $pass_from ORDER BY id" >"$TEST_TMP/passes.tsv"
copy_in() {   # TABLE FILE: the file's rows into the backup's table
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(pg_port backup)" -U postgres -d app \
    -c "COPY $1 FROM STDIN" <"$2" >/dev/null
}
copy_in benchlog.writes "$TEST_TMP/writes.tsv" || die "cannot load the writes"
copy_in benchlog.passes "$TEST_TMP/passes.tsv" || die "cannot load the passes"
nwrites=$(wc -l <"$TEST_TMP/writes.tsv")

# lag per write: its version, or a newer one of the row, arrived on the backup
read -r lag_n lag_missing lag_p50 lag_p99 lag_max <<<"$(pg_psql backup "
  WITH l AS (
    SELECT w.id, w.at, (SELECT min(a.at) FROM benchlog.arrivals a WHERE a.id = w.id AND a.ver >= w.at) AS seen
      FROM benchlog.writes w)
  SELECT count(seen), count(*) - count(seen),
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM seen - at) * 1000)),
         round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM seen - at) * 1000)),
         round(max(extract(epoch FROM seen - at) * 1000))
    FROM l" app | tr '|' ' ')"

# per pass: bytes read, and the rows it wrote (their bytes)
pg_psql backup "
  CREATE TABLE benchlog.per_pass AS
  SELECT p.id, p.bytes, p.started_at, p.finished_at,
         count(a.id) AS rows, coalesce(sum(a.size), 0) AS row_bytes,
         2 * coalesce(sum(a.size), 0) + 65536 AS allowed
    FROM benchlog.passes p LEFT JOIN benchlog.arrivals a
      ON a.at >= to_timestamp(p.started_at / 1000.0) AND a.at <= to_timestamp(p.finished_at / 1000.0)
   GROUP BY p.id, p.bytes, p.started_at, p.finished_at" app >/dev/null || die "per pass"
read -r busy_n busy_rows busy_p50 busy_max over ratio_p50 ratio_max pass_ms per_row <<<"$(pg_psql backup "
  SELECT count(*), round(avg(rows)), percentile_disc(0.5) WITHIN GROUP (ORDER BY bytes), max(bytes),
         count(*) FILTER (WHERE bytes > allowed),
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY bytes::numeric / allowed)::numeric, 2),
         round(max(bytes::numeric / allowed), 2),
         percentile_disc(0.5) WITHIN GROUP (ORDER BY finished_at - started_at),
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY bytes::numeric / nullif(row_bytes, 0))::numeric, 2)
    FROM benchlog.per_pass
   WHERE started_at >= $load_from AND started_at < $load_to" app | tr '|' ' ')"
read -r rb_p50 <<<"$(pg_psql backup "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY row_bytes)
    FROM benchlog.per_pass WHERE started_at >= $load_from AND started_at < $load_to" app)"
read -r idle_n idle_p50 idle_max <<<"$(pg_psql backup "
  SELECT count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY bytes), max(bytes)
    FROM benchlog.per_pass WHERE rows = 0 AND started_at > $load_to + 5000" app | tr '|' ' ')"
load_bytes=$(pg_psql backup "SELECT coalesce(sum(bytes), 0) FROM benchlog.per_pass
    WHERE started_at >= $load_from AND started_at < $load_to" app)

# ------------------------------------------------ baseline: one dump refresh ----
drd_config "$TEST_TMP/dump.conf" primary.url="$(pg_url primary postgres app)" backup.url="$(pg_url backup postgres app)" \
  refresh.mode=dump refresh.dir="$TEST_TMP/dumps" refresh.jobs=2 refresh.keep=1 probe.interval=1s probe.timeout=1s \
  state.db="$TEST_TMP/dump.db" http.socket="$TEST_TMP/dump.sock" log.level=warn || die "dump config"
out=$("$RC" -c "$TEST_TMP/dump.conf" -q run 2>&1) || { say "$out" >&2; die "the dump refresh failed"; }
rec=$(grep -E '^\{' <<<"$out" | tail -n 1)
dump_ms=$(jq -r '.finished_at - .started_at' <<<"$rec")
dump_bytes=$(jq -r '.bytes' <<<"$rec")
db_size=$(pg_psql primary "SELECT pg_database_size('app')")

# ------------------------------------------------------------------ print ----
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "" && a <= b) ? "MET" : "MISSED" }'; }
row() { printf '  %-50s %-30s %-16s %s\n' "$@"; }
kb() { awk -v b="$1" 'BEGIN { printf "%.1f kB", b / 1000 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f s", ms / 1000 }'; }
per_day_reconcile=$(awk -v b="$load_bytes" -v s="$(( (load_to - load_from) / 1000 ))" \
  'BEGIN { printf "%.0f", (s > 0 ? b / s : 0) * 86400 }')
say ""
say "drd reconcile bench - $(date -u +%FT%TZ) - $(nproc) CPUs - $ROWS rows ($(mb "$db_size") database), pgbouncer $(pgbouncer --version | awk 'NR == 1 { print $2 }') transaction mode"
say ""
row "measure" "result" "target" ""
row "initial copy of $ROWS rows (drd start -> equal)" "$(secs "$copy_ms")" "" ""
row "load: pgbench -R $RATE (30 % inserts, 70 % updates)" "$tps writes/s, $nwrites writes" "100 writes/s" ""
row "lag per write, median" "${lag_p50:-?} ms" "" ""
row "lag per write, p99" "${lag_p99:-?} ms" "<= $(( EVERY_MS + 1000 )) ms" "$(verdict "${lag_p99:-}" $(( EVERY_MS + 1000 )))"
row "lag per write, max ($lag_n seen, $lag_missing never)" "${lag_max:-?} ms" "" "$([ "${lag_missing:-1}" = 0 ] && echo "" || echo "MISSED")"
row "passes during the load" "$busy_n, $(secs "${pass_ms:-0}") each (median)" "" ""
row "  rows written per pass (mean)" "$busy_rows" "" ""
row "  changed rows' bytes per pass (median)" "$(kb "${rb_p50:-0}")" "" ""
row "  bytes read per pass, median / max" "$(kb "${busy_p50:-0}") / $(kb "${busy_max:-0}")" "" ""
row "  bytes read / changed rows' bytes, median" "${per_row:-?}x" "" ""
row "  ratio to 2 x changed + 64 KiB, median / max" "${ratio_p50}x / ${ratio_max}x" "<= 1.00x" "$(verdict "${ratio_max:-}" 1.0)"
row "  passes over that allowance" "$over of $busy_n" "0" "$([ "${over:-1}" = 0 ] && echo MET || echo MISSED)"
row "idle passes: bytes read, median / max ($idle_n)" "$(kb "${idle_p50:-0}") / $(kb "${idle_max:-0}")" "< 1 MiB" "$(verdict "${idle_max:-}" 1048576)"
row "catch-up after the load" "$(secs "$catchup_ms")" "" ""
row "dump refresh of the same database (baseline)" "$(secs "$dump_ms"), $(mb "$dump_bytes") file" "" ""
row "reconcile at this load, egress per day" "$(mb "$per_day_reconcile")" "" ""
row "reconcile idle (every = 1s), egress per day" "$(mb "$(( ${idle_p50:-0} * 86400 ))")" "" ""
row "dump every day, egress per day" "$(mb "$dump_bytes")" "" ""
say ""
say "  lag: a write's updated_at on the primary -> its version (or a newer one) written on the"
say "  backup by drd (trigger clock, same machine). bytes read: drd's egress record per pass"
say "  (TCP_INFO bytes received from pgbouncer). changed rows' bytes: pg_column_size of the"
say "  rows the pass wrote on the backup. A dump's egress is its file (pg_dump -Fc -Z1)."
