#!/usr/bin/env bash
# tests/bench_sync.sh - sync-back figures (issue 4), on two local clusters:
#   data      orders (1M rows) and events (500k rows, jsonb) on both sides,
#             capture on the backup, then outage writes there: 10k updates,
#             1k inserts, 1k deletes (half on each table).
#   sync      sync-back + verify (build/tools/sync_check) against the usual
#             manual procedure: drop and recreate the primary database,
#             pg_dump of the backup piped into psql. Checked: verify passes
#             (every outage write is on the primary) and the primary rows
#             the outage did not touch keep their xmin (not rewritten).
#   full      full mode (parallel COPY from one snapshot) against the same
#             pg_dump | psql.
#   trigger   the capture trigger's cost: pgbench single-row updates on the
#             backup without and with capture, alternated.
# Both clusters run durable (fsync, synchronous_commit, full_page_writes
# on; BENCH_FSYNC=off for the test suite's fast settings).
# BENCH_SYNC_RUNS (default 3) runs of each, medians printed; BENCH_QUICK=1:
# a tenth of the data and 3 s pgbench runs. Exits 1 if a correctness check
# fails (targets missed are only reported).
set -u
. "$(dirname "$0")/lib/pg.sh"
cd "$DRD_ROOT" || exit 1

SYNC_CHECK=${SYNC_CHECK:-build/tools/sync_check}
PGB=/usr/lib/postgresql/15/bin
[ -x "$PGB/pg_dump" ] || PGB=$PG_BIN
RUNS=${BENCH_SYNC_RUNS:-3}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  ORDERS=100000 EVENTS=50000 UPD=1000 INS=100 DEL=100 PGBENCH_S=3
else
  ORDERS=1000000 EVENTS=500000 UPD=10000 INS=1000 DEL=1000 PGBENCH_S=10
fi
PGBENCH_S=${BENCH_PGBENCH_SECONDS:-$PGBENCH_S}

say() { printf '%s\n' "$*"; }
die() { say "bench_sync: $*" >&2; exit 1; }
[ -x "$SYNC_CHECK" ] || die "$SYNC_CHECK is not built (run make)"

# median of the arguments (integers)
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
# ratio A/B with one decimal
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "inf"; else printf "%.1f", a / b }'; }
secs() { awk -v m="$1" 'BEGIN { printf "%.2f s", m / 1000 }'; }

psql_on() {   # CLUSTER [DB] -- SQL on stdin or -c
  local c=$1 db=$2; shift 2
  "$PGB/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(pg_port "$c")" -U postgres -d "$db" "$@"
}

say "bench_sync: two clusters in $TEST_TMP; orders $ORDERS rows, events $EVENTS rows;"
say "  outage writes: $UPD updates, $INS inserts, $DEL deletes; $RUNS runs; fsync ${BENCH_FSYNC:-on}"
for c in primary backup; do
  pg_new "$c" >/dev/null || die "cannot create cluster $c"
  # the same settings for drd and for the manual procedure: roomier than
  # the test defaults, and durable like a production server (the test
  # clusters run with fsync off, which flatters a bulk restore)
  pg_conf "$c" "shared_buffers = 256MB" "max_wal_size = 4GB" "maintenance_work_mem = 256MB" \
    "max_connections = 60" "checkpoint_timeout = 30min" \
    "fsync = ${BENCH_FSYNC:-on}" "synchronous_commit = ${BENCH_FSYNC:-on}" "full_page_writes = ${BENCH_FSYNC:-on}"
  pg_start "$c" || die "cannot start cluster $c"
done

CONF=$TEST_TMP/drd.conf
cat >"$CONF" <<EOF
[primary]
url = $(pg_url primary postgres app)
[backup]
url = $(pg_url backup postgres app)
[app]
stop = true
start = true
[state]
db = $TEST_TMP/drd.db
[http]
socket = $TEST_TMP/drd.sock
[failover]
runbook = $DRD_ROOT/runbooks/failover.ini
[failback]
runbook = $DRD_ROOT/runbooks/failback.ini
[sync]
parallel = ${BENCH_SYNC_PARALLEL:-4}
EOF

cat >"$TEST_TMP/schema.sql" <<EOF
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL,
    amount numeric(12, 2) NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    note text
);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE TABLE events (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    at timestamptz NOT NULL
);
INSERT INTO orders (customer_id, amount, status, created_at, note)
  SELECT g % 50000, (g % 10000) / 100.0, (ARRAY['new', 'paid', 'shipped'])[1 + g % 3],
         '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second',
         CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END
    FROM generate_series(1, $ORDERS) g;
INSERT INTO events (order_id, kind, payload, at)
  SELECT 1 + g % $ORDERS, (ARRAY['click', 'view', 'buy'])[1 + g % 3],
         jsonb_build_object('g', g, 'tags', jsonb_build_array('a', 'b', g % 7), 'price', g % 1000,
                            'ua', 'Mozilla/5.0 (X11; Linux x86_64) bench ' || g % 97),
         '2024-01-01 00:00:00+00'::timestamptz + g * interval '2 seconds'
    FROM generate_series(1, $EVENTS) g;
ANALYZE orders; ANALYZE events;
EOF
# outage writes, half on each table; keys spread over the whole table
OU=$((UPD / 2)) OI=$((INS / 2)) OD=$((DEL / 2))
cat >"$TEST_TMP/outage.sql" <<EOF
UPDATE orders SET status = 'refunded', amount = amount + 1
 WHERE id IN (SELECT 1 + (g * 7919) % $ORDERS FROM generate_series(1, $OU) g);
UPDATE events SET payload = payload || '{"seen": true}'
 WHERE id IN (SELECT 1 + (g * 7919) % $EVENTS FROM generate_series(1, $OU) g);
DELETE FROM orders WHERE id IN (SELECT 3 + (g * 104729) % ($ORDERS - 3) FROM generate_series(1, $OD) g);
DELETE FROM events WHERE id IN (SELECT 3 + (g * 104729) % ($EVENTS - 3) FROM generate_series(1, $OD) g);
INSERT INTO orders (customer_id, amount, status, created_at)
  SELECT g, 1.5, 'new', now() FROM generate_series(1, $OI) g;
INSERT INTO events (order_id, kind, payload, at)
  SELECT g, 'buy', '{"outage": true}', now() FROM generate_series(1, $OI) g;
EOF

load() {   # CLUSTER: fresh database app with the data
  psql_on "$1" postgres -c "DROP DATABASE IF EXISTS app WITH (FORCE)" 2>/dev/null &&
  psql_on "$1" postgres -c "CREATE DATABASE app" &&
  psql_on "$1" app -f "$TEST_TMP/schema.sql" >/dev/null
}
sc() {     # OP: run sync_check, die unless ok; sets $sc_out
  sc_out=$("$SYNC_CHECK" "$CONF" "$@" 2>&1) || { say "$sc_out" | tail -n 20 >&2; die "sync_check $* failed"; }
}

fails=0
t_sync=() t_back=() t_manual=() t_full=() t_capture=() untouched=()
for run in $(seq 1 "$RUNS"); do
  say "run $run/$RUNS: loading both clusters ..."
  load primary & lp=$!
  load backup || die "cannot load the backup"
  wait "$lp" || die "cannot load the primary"
  psql_on primary app -c "VACUUM (FREEZE, ANALYZE) orders, events" >/dev/null
  # every row of the loaded primary has this xmin (one INSERT per table)
  load_xmin=$(psql_on primary app -c "SELECT min(xmin::text::bigint) FROM orders")
  b_xmin=$(psql_on backup app -c "SELECT min(xmin::text::bigint) FROM orders")

  t0=$(now_ms); sc capture; t_capture+=($(( $(now_ms) - t0 )))
  psql_on backup app -f "$TEST_TMP/outage.sql" >/dev/null || die "outage writes failed"

  # sync-back + verify
  t0=$(now_ms)
  sc sync-back; sync_out=$sc_out
  t_back+=($(( $(now_ms) - t0 )))
  sc verify
  t=$(( $(now_ms) - t0 )); t_sync+=("$t")
  rewritten=$(psql_on primary app -c "SELECT count(*) FROM orders WHERE xmin::text::bigint <> $load_xmin")
  # the orders rows the outage wrote (updated or inserted, not deleted since)
  expected=$(psql_on backup app -c "SELECT count(*) FROM orders WHERE xmin::text::bigint <> $b_xmin")
  if [ "$rewritten" = "$expected" ]; then untouched+=(yes); else untouched+=(no); fails=$((fails + 1)); fi
  say "  sync-back + verify: $(secs "$t") (sync-back $(secs "${t_back[-1]}")); verify ok;" \
      "orders rows rewritten on the primary:" \
      "$rewritten (the $expected the outage changed)"
  [ "$run" = 1 ] && say "$sync_out" | grep -E "^public\.|sync-back done" | sed 's/^/    /'

  # full mode onto the (now equal) primary: truncates and copies everything
  t0=$(now_ms)
  sc full; full_out=$sc_out
  t=$(( $(now_ms) - t0 )); t_full+=("$t")
  sc verify
  say "  full: $(secs "$t"); verify ok"
  [ "$run" = 1 ] && say "$full_out" | grep -E "^public\.|full copy done" | sed 's/^/    /'

  # the manual procedure: recreate the primary database, dump | restore
  t0=$(now_ms)
  psql_on primary postgres -c "DROP DATABASE app WITH (FORCE)" >/dev/null &&
  psql_on primary postgres -c "CREATE DATABASE app" >/dev/null &&
  "$PGB/pg_dump" -h 127.0.0.1 -p "$(pg_port backup)" -U postgres app 2>"$TEST_TMP/dump.err" |
    psql_on primary app >/dev/null 2>"$TEST_TMP/restore.err" || { cat "$TEST_TMP/dump.err" "$TEST_TMP/restore.err" >&2; die "pg_dump | psql failed"; }
  t=$(( $(now_ms) - t0 )); t_manual+=("$t")
  say "  pg_dump | psql into a recreated database: $(secs "$t")"
done

# ---------------------------------------------------------------- trigger ----
say "trigger overhead: pgbench, single-row updates on orders, ${PGBENCH_S}s per run, 1 client"
cat >"$TEST_TMP/upd.sql" <<EOF
\set id random(1, $ORDERS)
UPDATE orders SET amount = amount + 1 WHERE id = :id;
EOF
load backup || die "cannot load the backup"
pgb() {
  "$PGB/pgbench" -n -h 127.0.0.1 -p "$(pg_port backup)" -U postgres -c 1 -T "$PGBENCH_S" \
    -f "$TEST_TMP/upd.sql" app 2>&1 | awk '/^tps = / { printf "%d", $3 }'
}
tps_off=() tps_on=()
for run in $(seq 1 "$RUNS"); do
  sc uncapture; tps_off+=("$(pgb)")
  sc capture;   tps_on+=("$(pgb)")
  say "  run $run: without capture ${tps_off[-1]} tps, with capture ${tps_on[-1]} tps"
done

# ---------------------------------------------------------------- summary ----
ms_sync=$(median "${t_sync[@]}") ms_manual=$(median "${t_manual[@]}") ms_full=$(median "${t_full[@]}")
off=$(median "${tps_off[@]}") on=$(median "${tps_on[@]}")
r_sync=$(ratio "$ms_manual" "$ms_sync") r_full=$(ratio "$ms_manual" "$ms_full")
say ""
say "== sync-back figures (medians of $RUNS runs; orders $ORDERS, events $EVENTS rows) =="
say "capture (backup):              $(secs "$(median "${t_capture[@]}")")"
say "sync-back + verify:            $(secs "$ms_sync")    runs: ${t_sync[*]} ms"
say "pg_dump | psql (recreated db): $(secs "$ms_manual")    runs: ${t_manual[*]} ms"
say "  -> sync-back + verify is ${r_sync}x faster (target >= 20x)" \
    "$(awk -v r="$r_sync" 'BEGIN { print (r >= 20) ? "[met]" : "[missed]" }')"
ms_back=$(median "${t_back[@]}")
say "  (sync-back alone: $(secs "$ms_back"), $(ratio "$ms_manual" "$ms_back")x faster; verify reads every" \
    "row on both sides, so it costs about what a dump costs on this machine)"
say "  every outage write on the primary: yes (verify passed every run)"
say "  unchanged primary rows untouched: ${untouched[*]}"
say "full mode:                     $(secs "$ms_full")    runs: ${t_full[*]} ms"
say "  -> full is ${r_full}x pg_dump | psql (target >= 1.0x, ideally >= 2x)" \
    "$(awk -v r="$r_full" 'BEGIN { print (r >= 2) ? "[met, >= 2x]" : (r >= 1) ? "[met]" : "[missed]" }')"
say "trigger: single-row updates    without capture $off tps, with capture $on tps" \
    "-> $(ratio "$off" "$on")x slower with capture (runs: ${tps_off[*]} / ${tps_on[*]})"
[ "$fails" -eq 0 ] || { say "bench_sync: $fails correctness check(s) failed"; exit 1; }
exit 0
