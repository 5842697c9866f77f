#!/usr/bin/env bash
# t_pgexec.sh - pgexec (SQL statements on the event loop, one deadline)
# against a real PostgreSQL 15 cluster: statements in order with the last
# value and row count; a failing statement stops the run with its index and
# the server's message; secrets never printed; read-only database (what
# fencing does); a statement outlasting the deadline; a frozen postmaster
# (SIGSTOP); a stopped cluster; valgrind on the ok, fail and timeout paths.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
cd "$DRD_ROOT" || exit 1

PGEXEC=${PGEXEC_CHECK:-build/tools/pgexec_check}
[ -x "$PGEXEC" ] || bail_out "$PGEXEC not built (run make)"

plan 50

{ pg_new main && pg_start main; } || bail_out "cannot start a cluster"
URL=$(pg_url main) || bail_out "no URL"
PORT=$(pg_port main)

# pgx [-u URL] TIMEOUT_MS SQL...: run pgexec_check; its output (stdout and
# stderr) in $out, exit status in $rc, wall time in $wall_ms; the fields of
# the result line in $res (ok|fail), $connected, $rows, $value, $index,
# $err, $ms.
pgx() {
  local url=$URL t0 line
  if [ "$1" = -u ]; then url=$2; shift 2; fi
  t0=$(now_ms)
  out=$(timeout 20 "${PGX_WRAP[@]}" "$PGEXEC" "$url" "$@" 2>&1)
  rc=$?
  wall_ms=$(( $(now_ms) - t0 ))
  diag "$out"
  res= connected= rows= value= index= err= ms=
  line=$(grep -E '^(ok|fail) ' <<<"$out" | head -n 1)
  if [[ "$line" =~ ^ok\ connected=([01])\ rows=(-?[0-9]+)\ value=(.*)\ ms=([0-9]+)$ ]]; then
    res=ok connected=${BASH_REMATCH[1]} rows=${BASH_REMATCH[2]}
    value=${BASH_REMATCH[3]} ms=${BASH_REMATCH[4]}
  elif [[ "$line" =~ ^fail\ connected=([01])\ index=(-?[0-9]+)\ error=(.*)\ ms=([0-9]+)$ ]]; then
    res=fail connected=${BASH_REMATCH[1]} index=${BASH_REMATCH[2]}
    err=${BASH_REMATCH[3]} ms=${BASH_REMATCH[4]}
  fi
}
PGX_WRAP=()

# ------------------------------------------------------------- usage ----
"$PGEXEC" "$URL" >/dev/null 2>&1; is "$?" 2 "usage error: exit 2"
"$PGEXEC" "$URL" 0 'SELECT 1' >/dev/null 2>&1; is "$?" 2 "timeout 0: usage error"

# ---------------------------------------------------- statements run ----
pgx 5000 'CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL)' \
         "INSERT INTO t (v) VALUES ('a') RETURNING id"
is "$res $connected" "ok 1" "CREATE TABLE + INSERT RETURNING: ok, connected"
is "$rows/$value" "1/1" "INSERT RETURNING: rows=1, value is the new id"
is "$rc" 0 "pgexec_check exits 0"
cmp_ok "${ms:-99999}" -lt 1000 "took ${ms:-?} ms (< 1000)"

pgx 5000 "INSERT INTO t (v) VALUES ('b'), ('c')" 'SELECT count(*) FROM t'
is "$res/$rows/$value" "ok/1/3" "INSERT + SELECT count(*): value=3, rows=1"

pgx 5000 "UPDATE t SET v = v || 'x' WHERE id > 1"
is "$res/$rows/$value" "ok/2/" "UPDATE: rows from the command tag (2), empty value"

pgx 5000 'SELECT v FROM t WHERE false'
is "$res/$rows/$value" "ok/0/" "SELECT with no row: rows=0, empty value"

pgx 5000 'BEGIN' "INSERT INTO t (v) VALUES ('tx')" 'ROLLBACK' "SELECT count(*) FROM t WHERE v = 'tx'"
is "$res/$value" "ok/0" "BEGIN ... ROLLBACK in the list: one session, rolled back"

pgx -u "$URL?application_name=other" 5000 "SELECT current_setting('application_name')"
is "$res/$value" "ok/drd" "application_name is drd even when the URL says otherwise"

pgx 5000 'SHOW client_connection_check_interval'
is "$res/$value" "ok/1s" "session asks the server to check the client connection every second"

pgx 5000 'CREATE TABLE IF NOT EXISTS t (id int)'
is "$res" ok "a statement with a NOTICE succeeds"
unlike "$out" 'NOTICE' "the NOTICE does not reach stderr"

# --------------------------------------------------- failing statement ----
pgx 5000 "INSERT INTO t (v) VALUES ('before')" 'SELECT * FROM no_such_table' \
         "INSERT INTO t (v) VALUES ('after')"
is "$res $connected $index" "fail 1 1" "failing second statement: fail connected=1 index=1"
like "$err" 'relation "no_such_table" does not exist' "error is the server's message"
is "$(grep -c . <<<"$out")" 1 "error is one line"
is "$(pg_psql main "SELECT string_agg(v, ',' ORDER BY id) FROM t WHERE v IN ('before', 'after')")" \
   before "statements before the failure ran, those after it did not"

pgx 5000 'SELECT 1/0'
is "$res $connected $index" "fail 1 0" "failing first statement: index=0"
like "$err" 'division by zero' "error says division by zero"

pgx 5000 ''
is "$res $index" "fail 0" "an empty statement fails (not COMMAND_OK/TUPLES_OK)"

pgx -u "postgresql://postgres@127.0.0.1:$PORT/no_such_db" 5000 'SELECT 1'
is "$res $connected $index" "fail 0 -1" "nonexistent database: fail connected=0 index=-1"
like "$err" 'no_such_db' "error names the database"

# ------------------------------------------------------------ secrets ----
leaked=0
for u in "postgresql://postgres:secret123@127.0.0.1:$PORT/no_such_db" \
         "host=127.0.0.1 port=$PORT user=postgres password=secret123 dbname=no_such_db" \
         "postgresql://postgres:secret123@127.0.0.1:notaport/postgres" \
         "postgresql://postgres:secret123%zz@127.0.0.1:$PORT/postgres" \
         "host=127.0.0.1 port=$PORT password=sec ret123"; do
  PGEXEC_CHECK_DEBUG=1 pgx -u "$u" 5000 'SELECT 1'
  [ "$res" = fail ] || { diag "expected a failure for $u"; leaked=1; }
  grep -q ret123 <<<"$out" && leaked=1
done
is "$leaked" 0 "failing URLs with a password never print it (result and debug log)"

pgx 5000 "ALTER ROLE postgres PASSWORD 'secret123' VALID UNTILL 'x'"
like "$res $index $err" "^fail 0 ERROR:  syntax error" "syntax error: reported"
pgx 5000 "ALTER ROLE postgres PASSWORD secret123"
unlike "$out" 'ret123' "syntax errors never echo the statement text"

# ------------------------------------------------- read-only database ----
pg_psql main 'CREATE DATABASE fenced' >/dev/null || bail_out "CREATE DATABASE failed"
pg_psql main 'CREATE TABLE w (x int)' fenced >/dev/null || bail_out "CREATE TABLE failed"
FENCED=$(pg_url main postgres fenced)
pgx 5000 'ALTER DATABASE fenced SET default_transaction_read_only = on'
is "$res" ok "ALTER DATABASE ... SET default_transaction_read_only = on"
pgx -u "$FENCED" 5000 'INSERT INTO w VALUES (1)'
is "$res $connected $index" "fail 1 0" "new connection to the read-only database: INSERT fails"
like "$err" 'read-only' "error says read-only"
pgx -u "$FENCED" 5000 'SET default_transaction_read_only = off' \
    'ALTER DATABASE fenced RESET default_transaction_read_only'
is "$res" ok "unfence from inside: SET ... off, then ALTER DATABASE ... RESET"
pgx -u "$FENCED" 5000 'INSERT INTO w VALUES (1)' 'SELECT count(*) FROM w'
is "$res/$value" "ok/1" "after the reset a new connection writes again"

# ------------------------------------------- statement past the deadline ----
pgx 500 'SELECT 1' 'SELECT pg_sleep(5)'
is "$res $connected $index" "fail 1 1" "pg_sleep(5) with timeout 500 ms: fail connected=1 index=1"
like "$err" '^timeout after 500 ms while running statement 1$' "error: timeout while running statement 1"
cmp_ok "${ms:-0}" -ge 490 "failed after ${ms:-?} ms (>= 490)"
cmp_ok "$wall_ms" -lt 2500 "the client returned in time, not after the 5 s sleep (wall $wall_ms ms < 2500)"
sleepers() {
  pg_psql main "SELECT count(*) FROM pg_stat_activity
                WHERE application_name = 'drd' AND query LIKE '%pg_sleep(5)%'"
}
poll_until 3 eval '[ "$(sleepers)" = 0 ]'
ok $? "the server ends the abandoned statement ($POLL_ELAPSED_MS ms, well before its 5 s)"

# ------------------------------------------------ pgexec_free mid-run ----
PGEXEC_CHECK_CANCEL_MS=300 pgx 5000 'SELECT 1' 'SELECT pg_sleep(5)'
like "$out" '^cancelled ms=[0-9]+$' "pgexec_free while running: no callback, nothing printed but 'cancelled'"
is "$rc" 0 "cancelled run: pgexec_check exits 0"
poll_until 3 eval '[ "$(sleepers)" = 0 ]'
ok $? "the server ends the cancelled statement ($POLL_ELAPSED_MS ms)"

# ----------------------------------------------------------- valgrind ----
if command -v valgrind >/dev/null 2>&1; then
  PGX_WRAP=(valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible
            --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99)
  pgx 10000 "INSERT INTO t (v) VALUES ('vg') RETURNING v"
  is "$rc/$res/$value" "0/ok/vg" "valgrind: ok run is clean"
  pgx 10000 'SELECT 1' 'SELECT * FROM no_such_table'
  is "$rc/$res/$index" "0/fail/1" "valgrind: failing run is clean"
  pgx 1500 'SELECT pg_sleep(5)'
  is "$rc/$res" "0/fail" "valgrind: timed-out run is clean"
  PGEXEC_CHECK_CANCEL_MS=1000 pgx 5000 'SELECT pg_sleep(5)'
  like "$rc/$out" '^0/cancelled' "valgrind: cancelled run is clean"
  PGX_WRAP=()
else
  for d in ok fail timeout cancelled; do skip "valgrind: $d run" "valgrind not installed"; done
fi

# --------------------------------------------------- frozen postmaster ----
pg_freeze main || bail_out "cannot freeze the postmaster"
pgx 1000 'SELECT 1'
is "$res $connected $index" "fail 0 -1" "frozen postmaster: fail connected=0"
like "$err" '^timeout after 1000 ms while connecting$' "error: timeout while connecting"
cmp_ok "${ms:-0}" -ge 990 "failed after ${ms:-?} ms (>= 990)"
cmp_ok "$wall_ms" -le 3000 "and returned, not hung (wall $wall_ms ms <= 3000)"
pg_thaw main
poll_until 10 pg_ready main || bail_out "the server did not come back after SIGCONT"

# ----------------------------------------------------- stopped cluster ----
pg_stop main immediate || bail_out "cannot stop the cluster"
pgx 5000 'SELECT 1'
is "$res $connected $index" "fail 0 -1" "stopped cluster: fail connected=0 index=-1"
like "$err" 'Connection refused' "error says connection refused"
cmp_ok "$wall_ms" -lt 2500 "fails without waiting for its 5 s deadline (wall $wall_ms ms < 2500)"

done_testing
