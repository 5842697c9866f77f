#!/usr/bin/env bash
# t_refresh_kill.sh - drd killed (kill -9) while a dump refresh's pg_dump
# runs: the pg_dump | pg_restore pipeline outlives it; the restarted drd
# ends that process group (recorded in its state), marks the refresh
# failed, and the backup keeps its data. A recorded group that is no longer
# drd's (here: a process of the test's own) is left alone.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require

for c in primary backup; do
  { pg_new $c && pg_start $c; } || bail_out "cannot create cluster $c"
  pg_psql $c "CREATE DATABASE app" >/dev/null || bail_out "database app on $c"
done
pg_psql primary "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000)" app >/dev/null
pg_psql backup "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (42)" app >/dev/null
drd_config "$TEST_TMP/drd.conf" primary.url="$(pg_url primary postgres app)" \
  backup.url="$(pg_url backup postgres app)" refresh.mode=dump refresh.dir="$TEST_TMP/dumps" \
  check.every=0s || bail_out "drd_config"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd up, both healthy"

# A session holding an exclusive lock on t: pg_dump waits for it forever.
port=$(pg_port primary)
"$PG_BIN/psql" -qAt -h 127.0.0.1 -p "$port" -U postgres -d app \
  -c "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120)" >/dev/null 2>&1 &
locker=$!
proc_track $locker
poll_until 10 eval "[ \"\$(pg_psql primary \"SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 't'::regclass\" app)\" = 1 ]"
ok $? "a session holds an exclusive lock on t"

"$DRCTL" -c "$DRD_CONF" refresh >/dev/null 2>&1 &
proc_track $!
poll_until 10 eval '[ -n "$(drd_sql "SELECT value FROM kv WHERE key = '"'refresh_pgid'"'")" ]' &&
  pgid=$(drd_sql "SELECT value FROM kv WHERE key = 'refresh_pgid'")
like "${pgid:-}" '^[0-9]+:[0-9]+$' "drd recorded its refresh's process group (${pgid:-none})"
leader=${pgid%%:*}
poll_until 10 eval '[ -n "$(pgrep -g '"$leader"' -x pg_dump)" ]'
ok $? "the refresh's pg_dump runs in that group (waiting for the lock)"

drd_kill9
proc_alive "$leader"; ok $? "after kill -9 of drd the pipeline is still running (group $leader)"
pgrep -g "$leader" -x pg_dump >/dev/null; ok $? "... pg_dump among it"

mark=$(drd_log_mark)
drd_start || bail_out "drd did not restart"
poll_until 10 eval '! proc_alive '"$leader"' && [ -z "$(pgrep -g '"$leader"')" ]'
ok $? "the restarted drd ended the leftover group: no pg_dump left"
drd_log_has "$mark" "ended process group $leader"; ok $? "... and says so"
is "$(drd_sql "SELECT state FROM refreshes ORDER BY id DESC LIMIT 1")" failed "the refresh is recorded failed"
like "$(drd_sql "SELECT error FROM refreshes ORDER BY id DESC LIMIT 1")" "drd stopped" "... because drd stopped"
is "$(pg_psql backup "SELECT string_agg(id::text, ',') FROM t" app)" 42 "the backup kept its data"
is "$(drd_sql "SELECT value FROM kv WHERE key = 'refresh_pgid'")" "" "the record is cleared"

# A recorded group that is not drd's any more is left alone.
sleep 300 &
other=$!
proc_track $other
drd_stop
sqlite3 "$DRD_DB" "UPDATE kv SET value = '$other:1' WHERE key = 'refresh_pgid'" 2>/dev/null ||
  sqlite3 "$DRD_DB" "INSERT INTO kv (key, value) VALUES ('refresh_pgid', '$other:1')"
drd_start || bail_out "drd did not restart"
drd_wait_healthy 15
proc_alive "$other"; ok $? "a recorded pid that is not the process drd started is not killed"
kill "$locker" "$other" 2>/dev/null
drd_stop; is "$?" 0 "drd stops cleanly"
done_testing
