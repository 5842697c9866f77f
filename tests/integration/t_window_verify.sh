#!/usr/bin/env bash
# t_window_verify.sh - what each verify of a failback catches (issue 13),
# with the daemon, real clusters and the shipped failback runbook plus one
# exec step between sync-back and verify (the stop window) that changes a
# row on the primary behind the fence when told to (a superuser session
# with default_transaction_read_only off: what the fence cannot stop).
#   (a) a row the outage touched (before pre-sync), changed on the primary
#       after pre-sync's online verify: the stop window's verify catches
#       it. The run waits with the app stopped, the env file still on the
#       backup, the primary not switched to; the table, the counts and the
#       key are named, never a value. Putting the row back and approving
#       the retry finishes the failback.
#   (b) a row the outage never touched, changed on the primary before the
#       failback (the backup was behind: issue 12's rule, the primary's
#       version stands): pre-sync's online verify names the table, the
#       count and the key, before the app is stopped; its note, drctl
#       failback's progress, an event and the run in status (checked while
#       (a)'s run waits) say "1 row differs that the outage never touched:
#       the primary's version stands"; the failback succeeds, the
#       primary's row is unchanged and the backup keeps its older one
#       (refresh off: reported, not copied).
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
for n in primary backup; do   # the backup a copy of the primary
  pg_psql "$n" "INSERT INTO drd_app_writes (id, at, writer, seq) SELECT g, '2026-01-01 00:00:00+00', 'seed', g FROM generate_series(1, 20) g" \
    appdb >/dev/null || bail_out "seed rows on $n"
done
SU_PRIMARY=$(pg_url primary postgres appdb)
# behind the fence: a superuser session that turns the fence's setting off
behind() { PGOPTIONS='-c default_transaction_read_only=off' pg_psql primary "$1" appdb; }
CORRUPT=$TEST_TMP/corrupt.sql      # run by the step when present, then removed
{
  echo '#!/usr/bin/env bash'
  echo "[ -f '$CORRUPT' ] || exit 0"
  echo "PGOPTIONS='-c default_transaction_read_only=off' '$PG_BIN/psql' -X -q -v ON_ERROR_STOP=1 -d '$SU_PRIMARY' -f '$CORRUPT' || exit 1"
  echo "rm -f '$CORRUPT'"
} >"$TEST_TMP/corrupt"
chmod +x "$TEST_TMP/corrupt"
awk -v cmd="$TEST_TMP/corrupt" '
  /^\[step verify\]/ { print "[step behind-the-fence]"; print "action = exec"; print "command = " cmd; print "" }
  { print }' "$DRD_ROOT/runbooks/failback.ini" >"$TEST_TMP/fb.ini"
grep -q '^\[step behind-the-fence\]' "$TEST_TMP/fb.ini" || bail_out "cannot build the test runbook"
drd_config "$TEST_TMP/drd.conf" \
  primary.app_url="$(fo_app_url primary)" backup.app_url="$(fo_app_url backup)" \
  app.env_file="$FO_ENV" app.start=true app.stop=true failback.runbook="$TEST_TMP/fb.ini" || bail_out "drd_config"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"

outage() {   # the app's writes on the backup: row 5 (or $1) updated, one row inserted
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$(fo_app_url backup)" \
    -c "UPDATE drd_app_writes SET seq = seq * 100 WHERE id = ${1:-5}" \
    -c "INSERT INTO drd_app_writes (writer, seq) VALUES ('outage', 1)" >/dev/null
}
seq_of() { pg_psql "$1" "SELECT seq FROM drd_app_writes WHERE id = $2" appdb; }
pre_sync_detail() { drd_json '.run.steps[] | select(.name == "pre-sync") | .detail'; }

# ------------------------------------ (a) the stop window's verify ----
fo_drctl failover --yes >/dev/null 2>&1
is "$(fo_run_state "$(fo_last_run)")" succeeded "(a) a failover"
behind "UPDATE drd_app_writes SET seq = 1212 WHERE id = 12" >/dev/null   # the backup is behind in row 12 (b)
outage 5 || bail_out "the outage's writes"
echo "UPDATE drd_app_writes SET seq = -1 WHERE id = 5" >"$CORRUPT"
out=$(fo_drctl failback --yes 2>&1)
fb=$(fo_last_run)
poll_until 10 fo_has_pending_approval attention
ok $? "(a) a touched row changed on the primary after the online verify: the failback waits" || diag "$out"
is "$(fo_step "$fb" pre-sync state)/$(fo_step "$fb" behind-the-fence state)" "done/done" \
  "(a) ... after pre-sync's online verify passed and the row was changed"
is "$(fo_step "$fb" verify state)" needs_attention "(a) ... at the stop window's verify"
like "$(fo_step "$fb" verify error)" \
  "public\.drd_app_writes \(0 missing, 1 different, 0 only on the primary, of the 2 keys the outage touched; first: id=5\)" \
  "(a) ... naming the table, the counts and the key" || diag "$(fo_step "$fb" verify output)"
unlike "$(fo_step "$fb" verify output)" "seq|-1\b" "(a) ... never a value of the row"
is "$(drd_json .attention.app_stopped)/$(drd_json .attention.step)" "true/verify" \
  "(a) status: attention, the app stopped, at verify"
like "$(pre_sync_detail)" "1 row differs that the outage never touched: the primary's version stands" \
  "(b) status shows the online verify's rows the outage never touched (the run's pre-sync step)"
is "$(drd_json .active)" backup "(a) the app stays on the backup"
like "$(fo_env_url)" ":$(pg_port backup)/" "(a) ... the env file still points at the backup"
is "$(fo_step "$fb" switch-env state)" pending "(a) ... switch-env has not run"
# resumable: put the backup's row back on the primary, approve the retry
behind "UPDATE drd_app_writes SET seq = 500 WHERE id = 5" >/dev/null
fo_drctl approve "$(fo_pending_approval attention)" >/dev/null 2>&1
fo_wait_run_state 60 "$fb" succeeded
ok $? "(a) the row put back, approving the retry finishes the failback" ||
  diag "$(fo_step "$fb" verify state): $(fo_step "$fb" verify error)"
like "$(fo_env_url)" ":$(pg_port primary)/" "(a) ... the env file points at the primary"
is "$(seq_of primary 5)" 500 "(a) ... with the outage's row"

# ------------------------------------ (b) pre-sync's online verify ----
fo_drctl failover --yes >/dev/null 2>&1
is "$(fo_run_state "$(fo_last_run)")" succeeded "(b) a failover"
# the backup is still behind in row 12 (changed on the primary before (a))
outage 6 || bail_out "the outage's writes"
out=$(fo_drctl failback --yes 2>&1)
fb=$(fo_last_run)
is "$(fo_run_state "$fb")" succeeded "(b) an untouched row the primary changed: the failback succeeds" || diag "$out"
pout=$(fo_step "$fb" pre-sync output)
like "$pout" "verify public\.drd_app_writes: the backup was behind the primary: 1 backup row older than the primary's \(1 changed, 0 deleted there before the outage; the outage never touched them: the primary's version stands; first: id=12\)" \
  "(b) pre-sync's online verify names the table, the count and the key" || diag "$pout"
like "$pout" "verify: 1 row differs that the outage never touched: the primary's version stands \(first: public\.drd_app_writes id=12\)" \
  "(b) ... and says it in one line"
unlike "$pout" "1212" "(b) ... never a value of the row"
like "$(fo_step "$fb" pre-sync error)" "1 row differs that the outage never touched: the primary's version stands" \
  "(b) the pre-sync step's note says so"
cmp_ok "$(fo_step "$fb" pre-sync finished_at)" -le "$(fo_step "$fb" stop-app started_at)" \
  "(b) ... before the app was stopped"
like "$out" "pre-sync .*1 row differs that the outage never touched: the primary's version stands" \
  "(b) drctl failback's progress shows it"
like "$out" "pre-sync done: passes .* expected stop window: about [0-9.]+ ?m?s" \
  "(b) ... and pre-sync's last lines: the passes, the tail, the expected stop window"
like "$out" "the stop window's verify, measured now in this snapshot: the [0-9]+ keys the outage touched are identical" \
  "(b) ... the stop window's key check, measured online"
fo_event_has "run: run $fb, pre-sync: 1 row differs that the outage never touched: the primary's version stands"
ok $? "(b) an event is recorded"
is "$(seq_of primary 12)" 1212 "(b) the primary's row is unchanged after the failback"
is "$(seq_of backup 12)" 12 "(b) the backup keeps its older row (refresh off: reported, not copied)"
is "$(seq_of primary 6)" 600 "(b) the outage's row is on the primary"
done_testing
