#!/usr/bin/env bash
# tests/bench_refresh.sh - the backup refresh's performance figures (issue 5):
#   dump:    drd's dump refresh of the bench database (pgbench, 1.5 M rows in
#            pgbench_accounts) vs the usual `pg_dump | psql` into a dropped
#            and recreated database, same run, BENCH_RUNS runs each
#            alternating (default 5); median times and their ratio.
#            Target: <= 1.0x while never leaving the backup empty.
#   logical: replication lag under a steady write load (pgbench at full
#            speed on the primary, 2 clients), sampled every 100 ms by the
#            refresh module's own watcher (heartbeat every 100 ms);
#            p50 / p99 / max. Target: p99 < 1 s.
# BENCH_QUICK=1: 300 k rows, 1 run, 8 s of load. Everything runs in a
# temporary directory removed at exit.
set -u
. "$(dirname "$0")/lib/pg.sh"
. "$(dirname "$0")/lib/drd.sh"

RC=${REFRESH_CHECK:-$DRD_ROOT/build/tools/refresh_check}
PGBENCH=$PG_BIN/pgbench
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  SCALE=${BENCH_SCALE:-3}; RUNS=${BENCH_RUNS:-1}; LOAD_S=${BENCH_LOAD_SECONDS:-8}
else
  SCALE=${BENCH_SCALE:-15}; RUNS=${BENCH_RUNS:-5}; LOAD_S=${BENCH_LOAD_SECONDS:-30}
fi
CLIENTS=${BENCH_CLIENTS:-2}
RATE=${BENCH_RATE:-}           # pgbench -R (transactions/s); empty = full speed

say() { printf '%s\n' "$*"; }
die() { say "bench_refresh: $*" >&2; exit 1; }
[ -x "$RC" ] || die "$RC is not built (run make)"
[ -x "$PGBENCH" ] || die "$PGBENCH is missing"
command -v jq >/dev/null || die "jq is missing (make deps)"

say "bench_refresh: two PostgreSQL clusters in $TEST_TMP, pgbench scale $SCALE ($(( SCALE * 100 )) k rows)"
{ pg_new primary >/dev/null && pg_conf primary "wal_level = logical" && pg_start primary; } || die "primary"
{ pg_new backup >/dev/null && pg_start backup; } || die "backup"
for c in primary backup; do pg_psql $c "CREATE DATABASE bench" >/dev/null || die "create bench on $c"; done
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$(pg_port primary)" -U postgres bench >"$TEST_TMP/init.log" 2>&1 \
  || { cat "$TEST_TMP/init.log" >&2; die "pgbench -i"; }
# pgbench_history has no key: it is insert-only, REPLICA IDENTITY FULL costs
# nothing there and lets logical mode publish it (see README).
pg_psql primary "ALTER TABLE pgbench_history REPLICA IDENTITY FULL" bench >/dev/null
rows=$(pg_psql primary "SELECT count(*) FROM pgbench_accounts" bench)
size=$(pg_psql primary "SELECT pg_size_pretty(pg_database_size('bench'))")
# the backup starts with an older, smaller copy
"$PGBENCH" -i -q -s 1 -h 127.0.0.1 -p "$(pg_port backup)" -U postgres bench >/dev/null 2>&1

drd_config "$TEST_TMP/dump.conf" primary.url="$(pg_url primary postgres bench)" backup.url="$(pg_url backup postgres bench)" \
  refresh.mode=dump refresh.dir="$TEST_TMP/dumps" refresh.jobs=2 refresh.keep=2 probe.interval=1s probe.timeout=1s \
  log.level=warn || die "config"

ms_since() { echo $(( $(now_ms) - $1 )); }
# the refresh's own duration, as recorded (started_at -> finished_at): the
# tool's start-up (loading, waiting for a first probe) is not part of it
drd_refresh() {
  local out
  out=$("$RC" -c "$TEST_TMP/dump.conf" -q run 2>&1) || { say "$out" >&2; die "drd refresh failed"; }
  grep -E '^\{' <<<"$out" | tail -n 1 | jq -r '.finished_at - .started_at'
}
# the usual way: the backup's database dropped, recreated and reloaded
usual() {
  local t0; t0=$(now_ms)
  pg_psql backup "DROP DATABASE IF EXISTS bench WITH (FORCE)" >/dev/null 2>&1
  pg_psql backup "CREATE DATABASE bench" >/dev/null || die "createdb"
  "$PG_BIN/pg_dump" -h 127.0.0.1 -p "$(pg_port primary)" -U postgres bench |
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port backup)" -U postgres -d bench >/dev/null 2>"$TEST_TMP/usual.err" \
    || die "pg_dump | psql failed"
  ms_since "$t0"
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }

# What an application sees on the backup meanwhile: a query every 200 ms
# (during both methods, so that both pay for it). "empty" = connected, but
# the table is missing or has no rows; "down" = no connection (the database
# does not exist, or the session was cut).
watch_backup() {
  local empty=0 down=0 n=0 c rc
  while [ ! -f "$TEST_TMP/stop-watch" ]; do
    c=$("$PG_BIN/psql" -X -A -t -h 127.0.0.1 -p "$(pg_port backup)" -U postgres -d bench \
        -c "SELECT count(*) FROM pgbench_branches" 2>/dev/null); rc=$?
    n=$((n + 1))
    if [ $rc = 0 ] && [[ "$c" =~ ^[1-9][0-9]*$ ]]; then :
    elif [ $rc = 0 ] || [ $rc = 1 ]; then empty=$((empty + 1))
    else down=$((down + 1)); fi
    sleep 0.2
  done
  echo "$n $empty $down" >"$TEST_TMP/watch.result"
}
# watched CMD: run CMD (prints ms) with the watcher; sets $ms $wn $wempty $wdown
watched() {
  rm -f "$TEST_TMP/stop-watch"
  watch_backup & local wpid=$!
  ms=$("$@")
  touch "$TEST_TMP/stop-watch"; wait "$wpid"
  read -r wn wempty wdown <"$TEST_TMP/watch.result"
}

say "dump: $RUNS run(s) of each, alternating; the backup is queried every 200 ms meanwhile"
d=(); u=(); dn=0; de=0; dd=0; un=0; ue=0; ud=0
for (( i = 1; i <= RUNS; i++ )); do
  for m in $( (( i % 2 )) && echo "drd usual" || echo "usual drd" ); do
    if [ "$m" = drd ]; then
      watched drd_refresh; d+=("$ms"); dn=$((dn + wn)); de=$((de + wempty)); dd=$((dd + wdown))
      say "  run $i: drd refresh      $(secs "$ms") s; backup: $wempty/$wn queries found no data, $wdown no connection"
    else
      watched usual; u+=("$ms"); un=$((un + wn)); ue=$((ue + wempty)); ud=$((ud + wdown))
      say "  run $i: pg_dump | psql   $(secs "$ms") s; backup: $wempty/$wn queries found no data, $wdown no connection"
    fi
  done
done
dm=$(median "${d[@]}"); um=$(median "${u[@]}")
ratio=$(awk -v a="$dm" -v b="$um" 'BEGIN { printf "%.2f", a / b }')
"$RC" -c "$TEST_TMP/dump.conf" -q run >/dev/null 2>&1 || die "drd refresh failed"
same=$( [ "$(pg_psql backup "SELECT count(*) FROM pgbench_accounts" bench)" = "$rows" ] && echo yes || echo NO )
dump_file=$(ls -1 "$TEST_TMP/dumps" | tail -n 1)
dump_size=$(du -h "$TEST_TMP/dumps/$dump_file" | cut -f1)

say "logical: set-up (initial copy) ..."
drd_config "$TEST_TMP/logical.conf" primary.url="$(pg_url primary postgres bench)" backup.url="$(pg_url backup postgres bench)" \
  refresh.mode=logical refresh.dir="$TEST_TMP/dumps" probe.interval=1s probe.timeout=1s log.level=warn || die "config"
t0=$(now_ms)
out=$("$RC" -c "$TEST_TMP/logical.conf" -q run 2>&1) || { say "$out" >&2; die "logical set-up failed"; }
setup_ms=$(ms_since "$t0")
# after the swap PostgreSQL's launcher restarts the apply worker (it waits
# up to wal_retrieve_retry_interval, 5 s): the load starts once it runs
t0=$(now_ms)
poll_until 30 eval '[ "$(pg_psql backup "SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL" bench)" -ge 1 ]' \
  || die "the subscription's worker did not start"
worker_ms=$(ms_since "$t0")
say "logical: pgbench ($CLIENTS clients, ${RATE:+$RATE tps }${RATE:-full speed}) for $(( LOAD_S + 4 )) s, lag sampled every 100 ms for $LOAD_S s"
"$PGBENCH" -n -c "$CLIENTS" -j "$CLIENTS" ${RATE:+-R "$RATE"} -T $(( LOAD_S + 4 )) -h 127.0.0.1 -p "$(pg_port primary)" -U postgres bench \
  >"$TEST_TMP/pgbench.log" 2>&1 &
pgb=$!; proc_track $pgb
sleep 1
# the first 2 s are the watcher's warm-up (its first heartbeats): not counted
"$RC" -c "$TEST_TMP/logical.conf" -q watch $(( LOAD_S + 2 )) 100 >"$TEST_TMP/lag.all" 2>&1
grep '^lag_ms' "$TEST_TMP/lag.all" | tail -n +21 >"$TEST_TMP/lag.log"
wait "$pgb" || { cat "$TEST_TMP/pgbench.log" >&2; die "pgbench failed"; }
tps=$(awk '/^tps = / { printf "%d", $3 }' "$TEST_TMP/pgbench.log")
grep '^lag_ms' "$TEST_TMP/lag.log" | awk '$2 >= 0 { print $2 }' | sort -n >"$TEST_TMP/lag.sorted"
n=$(wc -l <"$TEST_TMP/lag.sorted")
[ "$n" -gt 0 ] || { cat "$TEST_TMP/lag.all" >&2; die "no lag samples"; }
pct() { awk -v p="$1" -v n="$n" 'NR == int((n - 1) * p / 100) + 1 { print; exit }' "$TEST_TMP/lag.sorted"; }
p50=$(pct 50); p99=$(pct 99); pmax=$(tail -n 1 "$TEST_TMP/lag.sorted")
# catch-up: the backup has every pgbench_history row soon after the load stops
t0=$(now_ms)
want=$(pg_psql primary "SELECT count(*) FROM pgbench_history" bench)
poll_until 30 eval '[ "$(pg_psql backup "SELECT count(*) FROM pgbench_history" bench)" = "$want" ]' || say "  (the backup did not catch up within 30 s)"
catchup=$(ms_since "$t0")
bytes=$(grep '^lag_ms' "$TEST_TMP/lag.log" | awk '$4 >= 0 { print $4 }' | sort -n | awk '{ v[NR] = $1 } END { print v[int(NR / 2) + 1] + 0 }')

verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "ok" : "MISSED" }'; }
row() { printf '  %-44s %-26s %-10s %s\n' "$@"; }
say ""
say "drd refresh bench - $(date -u +%FT%TZ) - $(nproc) CPUs - database $size, $rows rows in pgbench_accounts"
say ""
row "measure" "result" "target" ""
row "dump refresh, drd (median of $RUNS)" "$(secs "$dm") s" "" ""
row "drop, create, pg_dump | psql (median of $RUNS)" "$(secs "$um") s" "" ""
row "ratio drd / usual" "${ratio}x" "<= 1.0x" "$(verdict "$ratio" 1.0)"
row "backup seen empty / unreachable, drd" "$de / $dd of $dn queries" "0" "$( [ "$de" = 0 ] && echo ok || echo MISSED)"
row "backup seen empty / unreachable, usual" "$ue / $ud of $un queries" "" ""
row "backup complete after the refresh" "$same" "" ""
row "dump file kept" "$dump_size ($dump_file)" "" ""
row "logical set-up (initial copy + swap)" "$(secs "$setup_ms") s" "" ""
row "  then until the apply worker runs again" "$(secs "$worker_ms") s" "" ""
row "logical lag p50, pgbench ${tps} tps" "${p50} ms" "" ""
row "logical lag p99" "${p99} ms" "< 1000 ms" "$(verdict "$p99" 999)"
row "logical lag max ($n samples, 100 ms apart)" "${pmax} ms" "" ""
row "logical lag in bytes, median (slot)" "$bytes" "" ""
row "catch-up after the load stopped" "$(secs "$catchup") s" "" ""
say ""
say "  drd: pg_dump -Fc -Z1 | tee FILE | pg_restore (pre-data, data) into <db>_drd_new, then"
say "  pg_restore --section=post-data -j 2 from FILE, then both databases renamed in one transaction."
say "  usual: DROP DATABASE; CREATE DATABASE; pg_dump | psql (the backup is empty meanwhile)."
say "  lag: age of the oldest heartbeat the backup has not applied yet (0 when it has the newest)."
