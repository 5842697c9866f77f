#!/usr/bin/env bash
# t_tsan.sh - drd's threads under ThreadSanitizer (bin/drd-tsan, `make
# bin/drd-tsan`): a failover and a failback with pre-sync (the sync job,
# its watchdog and verify pool, the preflight and its side thread), the
# readiness checks (5 s after the start), reloads (SIGHUP) during the
# failback and after it, and a clean stop while the checks the last reload
# started still run. Any ThreadSanitizer report fails the test and is shown. Issue 13:
# the loop freed a finished preflight job while the job's thread still
# held its mutex, so the thread's unlock wrote into freed (maybe reused)
# memory - a heap corruption that crashed drd once during pre-sync, under
# load. ASan cannot see it (the write is inside libc); TSan reports it on
# every failover. TAP.
set -u
. "$(dirname "$0")/../lib/pg.sh"
DRD=${DRD:-$DRD_ROOT/bin/drd-tsan}
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require
# every report in its own file (TSAN.PID), the run goes on after one
export TSAN_OPTIONS="log_path=$TEST_TMP/tsan halt_on_error=0 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
DRD_START_TIMEOUT=30

tsan_reports() { cat "$TEST_TMP"/tsan.* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer'; }

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
drd_config "$TEST_TMP/drd.conf" \
  primary.app_url="$(fo_app_url primary)" backup.app_url="$(fo_app_url backup)" \
  app.env_file="$FO_ENV" app.start=true app.stop=true || bail_out "drd_config"
drd_start || bail_out "$DRD did not start"
drd_wait_healthy 30; ok $? "drd-tsan: both targets healthy" || fo_diag

fo_drctl failover --yes >/dev/null 2>&1
is "$(fo_run_state "$(fo_last_run)")" succeeded "a failover (preflight, fence, switch)"
for k in 1 2 3; do fo_app_insert backup >/dev/null; done
# reloads while the failback runs: the loop swaps the configuration and
# the log level while the sync job's threads log
( while :; do kill -HUP "$DRD_PID" 2>/dev/null || exit 0; sleep 0.5; done ) &
hup=$!
proc_track "$hup"
out=$(fo_drctl failback --yes 2>&1)
fb=$(fo_last_run)
kill "$hup" 2>/dev/null; wait "$hup" 2>/dev/null
is "$(fo_run_state "$fb")" succeeded "a failback (pre-sync passes and online verify, sync-back, verify)" ||
  diag "$(tail -n 8 <<<"$out")"
is "$(fo_step "$fb" pre-sync state)" done "... pre-sync ran"
is "$(pg_psql primary "SELECT count(*) FROM drd_app_writes" appdb)" \
  "$(PGOPTIONS='-c default_transaction_read_only=off' pg_psql backup "SELECT count(*) FROM drd_app_writes" appdb)" \
  "... the backup's rows are on the primary"
# the readiness checks ran (5 s after the start) on their thread
poll_until 30 eval '[ -n "$(drd_sql "SELECT 1 FROM checks LIMIT 1" 2>/dev/null)" ]'
ok $? "the readiness checks ran"
# a reload starts the readiness checks again: the stop right after finds
# their threads inside libpq (exit() used to run libkrb5's destructors
# under them: SIGABRT)
mark=$(drd_log_mark)
drd_signal HUP
poll_until 10 drd_log_has "$mark" "configuration reloaded"
ok $? "a reload (SIGHUP)"
drd_stop TERM 30
is "$DRD_EXIT" 0 "drd-tsan stops cleanly (exit 0: ThreadSanitizer exits 66 after a report)"

n=$(tsan_reports)
is "$n" 0 "no ThreadSanitizer report"
if [ "$n" != 0 ]; then
  for f in "$TEST_TMP"/tsan.*; do
    diag "--- $f"
    # each report's summary and its first frames
    grep -E '^(WARNING|SUMMARY)|^  (Write|Read|Previous|Location|Mutex|Thread)|^    #[0-5] ' "$f" | head -n 80 |
      sed 's/^/  /' | while IFS= read -r line; do diag "$line"; done
  done
fi
done_testing
