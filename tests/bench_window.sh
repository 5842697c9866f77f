#!/usr/bin/env bash
# tests/bench_window.sh - the app-stopped window of a failback (issue 13):
# from the start of stop-app to the end of start-app, as drd records its
# steps, with the shipped failback runbook (pre-sync before stop-app) and
# the daemon doing everything, at two sizes of the same table:
#   small  150,000 rows (BENCH_QUICK=1: 15,000)
#   large  1,500,000 rows (BENCH_QUICK=1: 150,000)
# Each run: failover (drctl failover: capture on the backup), the outage's
# writes on the backup as the app's role (12,000 updated and 1,000
# inserted rows; BENCH_QUICK: a tenth), failback (drctl failback). Reported
# per size (medians of BENCH_WINDOW_RUNS, default 3): the stop window, the
# online pre-sync's time, and the steps inside the window; then the ratio
# large / small. Targets: <= 0.5 s at the large size, <= 1.3x the small.
# Both clusters durable (fsync on; BENCH_FSYNC=off for the test settings).
# Exits 1 if a failback fails or a row is missing on the primary (targets
# missed are only reported).
set -u
. "$(dirname "$0")/lib/pg.sh"
. "$(dirname "$0")/lib/drd.sh"
cd "$DRD_ROOT" || exit 1
drd_require

RUNS=${BENCH_WINDOW_RUNS:-3}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  SIZES="15000 150000" UPD=1200 INS=100
else
  SIZES="150000 1500000" UPD=12000 INS=1000
fi
say() { printf '%s\n' "$*"; }
die() { say "bench_window: $*" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
secs() { awk -v m="$1" 'BEGIN { printf "%.2f s", m / 1000 }'; }

say "bench_window: sizes $SIZES rows; outage: $UPD updated + $INS inserted rows; $RUNS runs; fsync ${BENCH_FSYNC:-on}"
for c in primary backup; do
  pg_new "$c" >/dev/null || die "cannot create cluster $c"
  pg_conf "$c" "shared_buffers = 256MB" "max_wal_size = 4GB" "maintenance_work_mem = 256MB" \
    "checkpoint_timeout = 30min" "fsync = ${BENCH_FSYNC:-on}" \
    "synchronous_commit = ${BENCH_FSYNC:-on}" "full_page_writes = ${BENCH_FSYNC:-on}"
  pg_start "$c" || die "cannot start cluster $c"
  pg_psql "$c" "CREATE ROLE app LOGIN" >/dev/null || die "role app on $c"
done
app_url() { echo "$(pg_url "$1" app appdb)?application_name=shop_app"; }
ENV_FILE=$TEST_TMP/app.env

load() {   # CLUSTER ROWS: a fresh appdb with the orders table
  pg_psql "$1" "DROP DATABASE IF EXISTS appdb WITH (FORCE)" >/dev/null 2>&1 &&
  pg_psql "$1" "CREATE DATABASE appdb OWNER app" >/dev/null &&
  pg_psql "$1" "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL,
                  amount numeric(12, 2) NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL,
                  note text);
                ALTER TABLE orders OWNER TO app;
                INSERT INTO orders (customer_id, amount, status, created_at, note)
                  SELECT g % 50000, (g % 10000) / 100.0, (ARRAY['new', 'paid', 'shipped'])[1 + g % 3],
                         '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second',
                         CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END
                    FROM generate_series(1, $2) g" appdb >/dev/null &&
  pg_psql "$1" "VACUUM (ANALYZE) orders" appdb >/dev/null
}
step_ms() {   # RUN STEP started_at|finished_at
  drd_sql "SELECT $3 FROM steps WHERE run_id = $1 AND name = '$2'"
}
last_run() { drd_sql "SELECT coalesce(max(id), 0) FROM runs"; }
run_state() { drd_sql "SELECT state FROM runs WHERE id = $1"; }

fails=0
declare -A W P
for n in $SIZES; do
  say "size $n: loading both clusters ..."
  load primary "$n" & lp=$!
  load backup "$n" || die "cannot load the backup"
  wait "$lp" || die "cannot load the primary"
  pg_psql backup "SELECT setval('orders_id_seq', 1000000000)" appdb >/dev/null
  printf 'DATABASE_URL=%s\n' "$(app_url primary)" >"$ENV_FILE"
  rm -f "$TEST_TMP/drd.db"*
  drd_config "$TEST_TMP/drd.conf" primary.app_url="$(app_url primary)" backup.app_url="$(app_url backup)" \
    app.env_file="$ENV_FILE" probe.interval=500ms probe.timeout=500ms log.level=info || die "drd_config"
  drd_start || die "drd did not start"
  poll_until 20 drd_field_is .targets.backup.healthy true || die "drd: backup not healthy"
  poll_until 20 drd_field_is .targets.primary.healthy true || die "drd: primary not healthy"
  ws=() ps=()
  for run in $(seq 1 "$RUNS"); do
    "$DRCTL" -c "$DRD_CONF" failover --yes >/dev/null 2>&1
    fo=$(last_run)
    [ "$(run_state "$fo")" = succeeded ] || { fails=$((fails + 1)); say "  failover $fo: $(run_state "$fo")"; break; }
    k=$(( (run - 1) * UPD ))
    "$PG_BIN/psql" -X -q -d "$(app_url backup)" -v ON_ERROR_STOP=1 -c "
      UPDATE orders SET status = 'refunded', amount = amount + 1
       WHERE id IN (SELECT 1 + ((g + $k) * 7919) % $n FROM generate_series(1, $UPD) g);
      INSERT INTO orders (customer_id, amount, status, created_at)
        SELECT g, 1.5, 'new', now() FROM generate_series(1, $INS) g" >/dev/null ||
      { fails=$((fails + 1)); say "  outage writes failed"; break; }
    t0=$(now_ms)
    "$DRCTL" -c "$DRD_CONF" failback --yes >"$TEST_TMP/failback.out" 2>&1
    t_total=$(( $(now_ms) - t0 ))
    fb=$(last_run)
    if [ "$(run_state "$fb")" != succeeded ]; then
      fails=$((fails + 1)); say "  failback $fb: $(run_state "$fb")"; tail -n 15 "$TEST_TMP/failback.out"; break
    fi
    w=$(( $(step_ms "$fb" start-app finished_at) - $(step_ms "$fb" stop-app started_at) ))
    p=$(( $(step_ms "$fb" pre-sync finished_at) - $(step_ms "$fb" pre-sync started_at) ))
    ws+=("$w") ps+=("$p")
    inside=$(drd_sql "SELECT group_concat(name || ' ' || (finished_at - started_at), ', ') FROM
                        (SELECT * FROM steps WHERE run_id = $fb AND idx >= (SELECT idx FROM steps
                           WHERE run_id = $fb AND name = 'stop-app')
                          AND idx <= (SELECT idx FROM steps WHERE run_id = $fb AND name = 'start-app')
                         ORDER BY idx)")
    say "  run $run: stop window $w ms (pre-sync $p ms, whole failback $t_total ms); steps (ms): $inside"
    [ "$run" = 1 ] && grep -E "pass [0-9]|pre-sync done" "$TEST_TMP/failback.out" | sed 's/^/    drctl failback: /'
    # every outage write is on the primary
    miss=$("$PG_BIN/psql" -X -q -A -t -d "$(app_url backup)" -c "SELECT count(*) FROM orders WHERE status = 'refunded' OR id > 1000000000")
    got=$("$PG_BIN/psql" -X -q -A -t -d "$(app_url primary)" -c "SELECT count(*) FROM orders WHERE status = 'refunded' OR id > 1000000000")
    [ "$miss" = "$got" ] || { fails=$((fails + 1)); say "  backup has $miss outage rows, primary $got"; }
  done
  drd_stop
  [ "${#ws[@]}" -gt 0 ] || die "no successful run at size $n"
  W[$n]=$(median "${ws[@]}") P[$n]=$(median "${ps[@]}")
  say "  size $n: stop window median $(secs "${W[$n]}") (runs: ${ws[*]} ms); pre-sync median $(secs "${P[$n]}")"
done

read -r small large <<<"$SIZES"
ratio=$(awk -v a="${W[$large]}" -v b="${W[$small]}" 'BEGIN { if (b <= 0) print "inf"; else printf "%.2f", a / b }')
say ""
say "== failback stop window (stop-app start -> start-app end; medians of $RUNS runs) =="
say "$small rows:   $(secs "${W[$small]}")    pre-sync (online): $(secs "${P[$small]}")"
say "$large rows: $(secs "${W[$large]}")    pre-sync (online): $(secs "${P[$large]}")"
say "  -> $large rows: $(secs "${W[$large]}") (target <= 0.50 s)" \
    "$(awk -v w="${W[$large]}" 'BEGIN { print (w <= 500) ? "[met]" : "[missed]" }')"
say "  -> ratio $large / $small: ${ratio}x (target <= 1.3x)" \
    "$(awk -v r="$ratio" 'BEGIN { print (r <= 1.3) ? "[met]" : "[missed]" }')"
[ "$fails" -eq 0 ] || { say "bench_window: $fails failure(s)"; exit 1; }
exit 0
