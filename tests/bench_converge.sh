#!/usr/bin/env bash
# tests/bench_converge.sh - converge figures (issue 12, item 6): the backup
# made equal to the primary after a failback in logical mode, on two local
# clusters. orders (ROWS rows, default 1M) on both sides, then on the
# primary what a replication lag keeps from the backup: 1000 updates, 500
# inserts, 500 deletes. Measured (build/tools/sync_check converge): the
# converge that moves them, a second one with nothing to move (the price of
# the comparison alone), against copying the table whole (COPY primary ->
# backup, what a new logical set-up's initial copy does per table).
# Checked: both sides equal afterwards (md5 of the rows in key order), and
# the backup rows that did not differ keep their xmin (not rewritten).
# BENCH_QUICK=1: 100k rows. Exits 1 if a correctness check fails.
set -u
. "$(dirname "$0")/lib/pg.sh"
cd "$DRD_ROOT" || exit 1

SYNC_CHECK=${SYNC_CHECK:-build/tools/sync_check}
ROWS=1000000
[ "${BENCH_QUICK:-0}" = 1 ] && ROWS=100000
say() { printf '%s\n' "$*"; }
die() { say "bench_converge: $*" >&2; exit 1; }
[ -x "$SYNC_CHECK" ] || die "$SYNC_CHECK is not built (run make)"

for c in primary backup; do
  pg_new "$c" && pg_start "$c" || die "cannot start $c"
  pg_psql "$c" "CREATE DATABASE app" >/dev/null || die "database on $c"
  pg_psql "$c" "CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount numeric(12,2),
                note text, at timestamptz NOT NULL DEFAULT '2026-01-01');
                INSERT INTO orders SELECT g, g % 1000, g * 0.5, 'order ' || g FROM generate_series(1, $ROWS) g" \
    app >/dev/null && pg_psql "$c" "VACUUM ANALYZE orders" app >/dev/null || die "data on $c"
done
conf=$TEST_TMP/sync.conf
cat >"$conf" <<EOF
[primary]
url = $(pg_url primary postgres app)
[backup]
url = $(pg_url backup postgres app)
[state]
db = $TEST_TMP/drd.db
[http]
socket = $TEST_TMP/drd.sock
EOF
sum_of() { pg_psql "$1" "SELECT count(*) || ':' || md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o" app; }

n_upd=$(pg_psql primary "WITH w AS (UPDATE orders SET amount = amount + 1 WHERE id % ($ROWS / 1000) = 0
                         RETURNING 1) SELECT count(*) FROM w" app) &&
n_del=$(pg_psql primary "WITH w AS (DELETE FROM orders WHERE id % ($ROWS / 500) = 1 RETURNING 1)
                         SELECT count(*) FROM w" app) &&
n_ins=$(pg_psql primary "WITH w AS (INSERT INTO orders SELECT g, 1, 1, 'lag'
                         FROM generate_series($ROWS + 1, $ROWS + 500) g RETURNING 1) SELECT count(*) FROM w" app) || die "lag writes"
untouched_xmin=$(pg_psql backup "SELECT xmin FROM orders WHERE id = 2" app)

out=$("$SYNC_CHECK" "$conf" converge 2>&1) || die "converge failed: $out"
ms1=$(sed -n 's/^ok .* ms=\([0-9]*\)$/\1/p' <<<"$out")
diff1=$(sed -n 's/^differing=//p' <<<"$out")
[ "$(sum_of primary)" = "$(sum_of backup)" ] || die "the sides differ after converge"
[ "$diff1" = $(( n_upd + n_ins + n_del )) ] ||
  die "converge counted $diff1 differing rows, the primary changed $n_upd + $n_ins + $n_del"
[ "$(pg_psql backup "SELECT xmin FROM orders WHERE id = 2" app)" = "$untouched_xmin" ] ||
  die "a row that did not differ was rewritten"
out=$("$SYNC_CHECK" "$conf" converge 2>&1) || die "second converge failed: $out"
ms2=$(sed -n 's/^ok .* ms=\([0-9]*\)$/\1/p' <<<"$out")
diff2=$(sed -n 's/^differing=//p' <<<"$out")
[ "$diff2" = 0 ] || die "the second converge found $diff2 differing rows"

t0=$(now_ms)
pg_psql backup "TRUNCATE orders" app >/dev/null
"$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port primary)" -U postgres -d app -c "COPY orders TO STDOUT" |
  "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port backup)" -U postgres -d app -c "COPY orders FROM STDIN" ||
  die "whole copy"
ms3=$(( $(now_ms) - t0 ))

say "converge, $ROWS rows, $diff1 differing ($n_upd updated, $n_ins inserted, $n_del deleted on the primary): ${ms1} ms"
say "converge, $ROWS rows, nothing to move (the comparison alone): ${ms2} ms"
say "copying the table whole (COPY primary -> backup): ${ms3} ms"
