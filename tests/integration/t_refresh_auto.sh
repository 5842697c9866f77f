#!/usr/bin/env bash
# t_refresh_auto.sh - what the refresh module does on its own, driven by
# build/tools/refresh_check's `daemon` (refresh_start as in drd): logical
# mode sets replication up by itself at start when there is no subscription
# yet (trigger "schedule"), and reports the lag; with the primary down, a
# refresh is refused because of its breaker (recorded), and the window text
# still states how far behind the backup is; `every` counts from the last
# start: a restart right after a refresh does not run another; replication
# errors (a conflicting row on the backup) are reported. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
cd "$DRD_ROOT" || exit 1

RC=${REFRESH_CHECK:-$DRD_ROOT/build/tools/refresh_check}
[ -x "$RC" ] || bail_out "$RC not built (run make)"
drd_require

pg_new primary && pg_conf primary "wal_level = logical" && pg_start primary || bail_out "cannot start primary"
# the backup's launcher retries a failed apply worker every 1 s (default 5 s)
{ pg_new backup && pg_conf backup "wal_retrieve_retry_interval = 1s" && pg_start backup; } || bail_out "cannot start backup"
pg_psql primary "CREATE TABLE t (id serial PRIMARY KEY, v text);
                 INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 1000) g" >/dev/null || bail_out "data"
# dump mode works on another database (a subscription in its database would
# make it refuse)
for c in primary backup; do pg_psql $c "CREATE DATABASE app" >/dev/null || bail_out "app on $c"; done
pg_psql primary "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 10)" app >/dev/null

drd_config "$TEST_TMP/logical.conf" refresh.mode=logical refresh.dir="$TEST_TMP/dumps" log.level=info || bail_out "config"
drd_config "$TEST_TMP/dump.conf" primary.url="$(pg_url primary postgres app)" backup.url="$(pg_url backup postgres app)" \
  refresh.mode=dump refresh.dir="$TEST_TMP/dumps" refresh.every=1h log.level=info || bail_out "config"
OUT=$TEST_TMP/outputs.log
rc_run() {
  local conf=$1; shift
  out=$(timeout 60 "$RC" -c "$conf" "$@" 2>&1); st=$?
  printf '%s\n' "$out" >>"$OUT"
}
json_of() { grep -E '^\{' <<<"$out" | tail -n 1; }

# ------------------------------------------------ logical: set up at start ----
rc_run "$TEST_TMP/logical.conf" daemon 30 1
ok $st "logical mode, no subscription yet: set up by itself at start"
is "$(drd_sql "SELECT mode || ' ' || trigger || ' ' || state FROM refreshes ORDER BY id DESC LIMIT 1")" \
   "logical schedule succeeded" "recorded as a scheduled logical refresh"
is "$(pg_psql backup "SELECT count(*) FROM t")" 1000 "the backup has the rows"
pg_psql primary "INSERT INTO t (v) VALUES ('later')" >/dev/null
poll_until 15 eval '[ "$(pg_psql backup "SELECT count(*) FROM t")" = 1001 ]'
ok $? "and follows the primary"
rc_run "$TEST_TMP/logical.conf" daemon 10 0 "lag_seconds>-1"   # until its first sample
like "$(json_of)" '"subscription":"enabled"' "a restart finds the subscription in place"
like "$out" 'listener: [1-9][0-9]* calls' "the status listener is called (every sample)"
like "$(json_of)" '"lag_seconds":[0-9.]+,' "and measures the lag"
is "$(drd_sql "SELECT count(*) FROM refreshes")" 1 "without another refresh"

# ------------------------------------------------- replication errors ----
# a row the backup already has: applying the primary's insert fails, again
# and again (the worker restarts every second here)
pg_psql backup "INSERT INTO t (id, v) VALUES (9000, 'on the backup')" >/dev/null
pg_psql primary "INSERT INTO t (id, v) VALUES (9000, 'on the primary')" >/dev/null
rc_run "$TEST_TMP/logical.conf" daemon 20 0 "error~replication errors"
like "$(json_of)" '"error":"replication errors on the backup' "replication errors are reported"
is "$(drd_sql "SELECT count(*) FROM events WHERE kind = 'refresh' AND message LIKE 'logical replication: replication errors%'")" 1 \
  "as one warning event"
pg_psql backup "DELETE FROM t WHERE id = 9000" >/dev/null
poll_until 20 eval '[ "$(pg_psql backup "SELECT v FROM t WHERE id = 9000")" = "on the primary" ]'
ok $? "once the conflict is removed, replication goes on"
rc_run "$TEST_TMP/logical.conf" daemon 3
like "$(json_of)" '"error":null' "and no error is reported"

# ----------------------------------------------- dump: every, interlock ----
rc_run "$TEST_TMP/dump.conf" daemon 30 1
is "$st:$(drd_sql "SELECT trigger || ' ' || state FROM refreshes WHERE mode = 'dump'")" "0:schedule succeeded" \
  "dump mode, every = 1h: a first refresh at start"
like "$out" 'listener: [2-9][0-9]* calls' "the status listener is called (start and end)"
is "$(pg_psql backup "SELECT count(*) FROM a" app)" 10 "the backup has the data"
# scheduled at start, one hour after the last start (checked below): no run before
rc_run "$TEST_TMP/dump.conf" daemon 10 0 "next_at>0"
is "$(drd_sql "SELECT count(*) FROM refreshes WHERE mode = 'dump'")" 1 "a restart right after it does not run another"
like "$(json_of)" '"next_at":[0-9]+' "the next one is scheduled"
next=$(jq -r .next_at <<<"$(json_of)"); last=$(drd_sql "SELECT started_at FROM refreshes WHERE mode = 'dump'")
is "$(( (next - last) / 1000 ))" 3600 "one hour after the last start"

pg_crash primary
rc_run "$TEST_TMP/dump.conf" run
is "$st" 1 "primary down: a refresh is refused"
like "$out" "refused: the primary's breaker is open" "because of the primary's breaker"
is "$(drd_sql "SELECT state || ': ' || error FROM refreshes ORDER BY id DESC LIMIT 1")" \
   "refused: the primary's breaker is open" "the refusal is recorded"
rc_run "$TEST_TMP/dump.conf" daemon 10 0 "next_at>0"
like "$out" "window: the backup's last copy is [0-9.]+ s old" "the window text still states the copy's age"
rc_run "$TEST_TMP/logical.conf" daemon 10 0 "lag_seconds>-1"
like "$out" "window: the backup is [0-9.]+ s behind the primary" "logical: the window text states the lag"
done_testing
