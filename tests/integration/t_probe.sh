#!/usr/bin/env bash
# t_probe.sh - the non-blocking libpq probe against a real PostgreSQL 15
# cluster: healthy, wrong database, secrets never printed, postmaster frozen
# with SIGSTOP (deadline), stopped (connection refused).  TAP output.
set -u
cd "$(dirname "$0")/../.."

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PROBE=${PROBE_CHECK:-build/tools/probe_check}
PLAN=18
n=0 failures=0

ok()     { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"; }
check()  { local desc=$1; shift; if "$@"; then ok "$desc"; else not_ok "$desc"; fi; }
diag()   { printf '# %s\n' "$@"; }
bail()   { echo "Bail out! $*"; exit 1; }

echo "1..$PLAN"
[ -x "$PROBE" ] || bail "$PROBE not built (run make)"
[ -x "$PGBIN/initdb" ] || bail "PostgreSQL binaries not found in $PGBIN"

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

tmp=$(mktemp -d /tmp/drd-t_probe.XXXXXX) || bail "mktemp failed"
data=$tmp/data
if [ "$(id -u)" -eq 0 ]; then
  chmod 755 "$tmp" && chown postgres:postgres "$tmp" || bail "cannot hand $tmp to postgres"
fi

cleanup() {
  if [ -f "$data/postmaster.pid" ]; then
    local pid
    pid=$(head -1 "$data/postmaster.pid" 2>/dev/null)
    [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
port=
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 20001))
  if ! port_in_use "$p"; then port=$p; break; fi
done
[ -n "$port" ] || bail "no free port found"

as_pg "$PGBIN/initdb" -A trust -N -D "$data" >"$tmp/initdb.log" 2>&1 \
  || { cat "$tmp/initdb.log"; bail "initdb failed"; }
as_pg "$PGBIN/pg_ctl" -D "$data" -l "$tmp/server.log" -w -t 30 \
  -o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
  || { cat "$tmp/server.log"; bail "pg_ctl start failed"; }

URL="postgresql://postgres@127.0.0.1:$port/postgres"

# probe URL TIMEOUT COUNT INTERVAL: run probe_check, output in $out
# (stdout and stderr), wall time in $wall_ms.
probe() {
  local t0 t1
  t0=$(date +%s%N)
  out=$(timeout 20 "$PROBE" "$@" 2>&1)
  rc=$?
  t1=$(date +%s%N)
  wall_ms=$(( (t1 - t0) / 1000000 ))
  printf '%s\n' "$out" | sed 's/^/#   /'
}
# field NAME [LINE]: value of NAME=... in line LINE (default 1) of $out
field() { printf '%s\n' "$out" | grep -E '^(ok|fail) ' | sed -n "${2:-1}p" |
          sed -nE "s/.*(^| )$1=([^ ]*).*/\2/p"; }
first_word() { printf '%s\n' "$out" | grep -E '^(ok|fail) ' | sed -n "${1:-1}p" | cut -d' ' -f1; }
lt() { [ -n "$1" ] && [ "$1" -lt "$2" ]; }
between() { [ -n "$1" ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

# (a) healthy cluster -------------------------------------------------------
probe "$URL" 2000 3 0
check "running cluster: probe_check exits 0" [ "$rc" -eq 0 ]
check "running cluster: 3 probes ok, in_recovery=0" \
  [ "$(printf '%s\n' "$out" | grep -c '^ok .*in_recovery=0')" -eq 3 ]
lat=$(field latency_ms 1)
check "running cluster: latency < 2000 ms, the deadline (got ${lat:-?})" lt "$lat" 2000

# (d) wrong database; secrets are never printed -----------------------------
probe "postgresql://postgres@127.0.0.1:$port/no_such_db" 2000 1 0
check "nonexistent database: probe fails" [ "$(first_word)" = fail ]
check "nonexistent database: error names the database" \
  grep -q 'no_such_db' <<<"$out"

leaked=0
for u in "postgresql://postgres:secret123@127.0.0.1:$port/no_such_db" \
         "host=127.0.0.1 port=$port user=postgres password=secret123 dbname=no_such_db" \
         "postgresql://postgres:secret123@127.0.0.1:notaport/postgres" \
         "postgresql://postgres@127.0.0.1:$port/postgres?password=secret123&bogus=1" \
         "host=127.0.0.1 port=$port password=secret123 oops" \
         "postgresql://postgres:secret123%zz@127.0.0.1:$port/postgres" \
         "host=127.0.0.1 port=$port password=sec ret123"; do
  probe "$u" 2000 1 0
  [ "$(first_word)" = fail ] || { diag "expected a failure for a bad URL"; leaked=1; }
  # "ret123" also catches the tail of a password split at a space
  grep -q ret123 <<<"$out" && leaked=1
done
PROBE_CHECK_DEBUG=1 probe "postgresql://postgres:secret123@127.0.0.1:$port/no_such_db" 2000 1 0
grep -q secret123 <<<"$out" && leaked=1
check "failing URLs with a password never print it (output and debug log)" [ "$leaked" -eq 0 ]

# (e) the query itself hangs: deadline while waiting for the result --------
# A role whose search_path puts a schema before pg_catalog resolves the
# probe's pg_is_in_recovery() to a function that sleeps.
as_pg "$PGBIN/psql" -X -q -h "$tmp" -p "$port" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL' \
  || bail "cannot create the slow role"
CREATE ROLE slow LOGIN;
CREATE SCHEMA hang AUTHORIZATION slow;
CREATE FUNCTION hang.pg_is_in_recovery() RETURNS boolean
  LANGUAGE sql AS 'SELECT pg_sleep(30) IS NULL';
ALTER ROLE slow SET search_path = hang, pg_catalog;
SQL
probe "postgresql://slow@127.0.0.1:$port/postgres" 1000 1 0
lat=$(field latency_ms 1)
check "hanging query: probe fails with a timeout waiting for the result" \
  grep -qE '^fail .*timeout after 1000ms waiting for the query' <<<"$out"
check "hanging query: latency between 950 and 2500 ms (got ${lat:-?})" between "$lat" 950 2500
check "hanging query: closing does not block (wall ${wall_ms} ms < 5000, the sleep is 30 s)" lt "$wall_ms" 5000

# (c) postmaster frozen with SIGSTOP: the deadline fires ---------------------
pid=$(head -1 "$data/postmaster.pid")
kill -STOP "$pid"
probe "$URL" 1000 1 0
lat=$(field latency_ms 1)
check "frozen server: probe fails with a timeout" \
  grep -qE '^fail .*timeout after 1000ms' <<<"$out"
check "frozen server: latency between 950 and 2500 ms (got ${lat:-?})" between "$lat" 950 2500
probe "$URL" 1000 2 0
check "frozen server: two probes back to back both time out" \
  [ "$(printf '%s\n' "$out" | grep -c '^fail .*timeout')" -eq 2 ]
check "frozen server: two probes take < 6 s in total, not a hang (got ${wall_ms} ms)" lt "$wall_ms" 6000
kill -CONT "$pid"

# After SIGCONT the server answers again (poll with a deadline).
deadline=$((SECONDS + 10)); recovered=no
while [ $SECONDS -lt $deadline ]; do
  probe "$URL" 1000 1 0
  [ "$(first_word)" = ok ] && { recovered=yes; break; }
done
check "resumed server: probe is ok again" [ "$recovered" = yes ]

# (b) stopped cluster: connection refused, fast ------------------------------
as_pg "$PGBIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null
probe "$URL" 1000 1 0
lat=$(field latency_ms 1)
check "stopped cluster: probe fails with connection refused" \
  grep -qE '^fail .*Connection refused' <<<"$out"
check "stopped cluster: fails before the 1000 ms deadline (got ${lat:-?})" lt "$lat" 950
check "stopped cluster: probe_check still exits 0" [ "$rc" -eq 0 ]
check "error text is one line" [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]

[ "$n" -eq "$PLAN" ] || diag "planned $PLAN tests but ran $n"
[ "$failures" -eq 0 ] && [ "$n" -eq "$PLAN" ]
