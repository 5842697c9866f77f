#!/usr/bin/env bash
# t_logical_cycles.sh - [refresh] mode = logical through two full
# failover/failback cycles (issue 12, item 6). A second client writes to the
# primary all along; before each outage the apply worker is paused (ALTER
# SUBSCRIPTION ... DISABLE) while the primary takes inserts, updates and
# deletes the backup never gets (the replication lag), then the primary dies
# (pg_ctl stop -m immediate), drd fails over, the backup takes outage
# writes, the primary comes back and drd fails back.
# Before: the lag-window rows stayed missing (or stale, or deleted rows
# stayed) on the backup forever, later primary updates/deletes of them were
# silently skipped by replication, and a lag-window UPDATE of a row the
# outage never touched stopped verify ("1 backup row different").
# Now: every failback succeeds without a skipped step, verify reports the
# backup's stale rows as such (the primary's version stands), the backup is
# made equal to the primary before the subscription is recreated, later
# updates and deletes of the lag-window rows replicate, status and check
# report the last comparison, and at the end both sides are equal per table
# (md5 of string_agg in key order). Last, a failback whose runbook lacks
# resume-replication: status and check report the rows known to differ
# until a refresh copies the primary whole. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require
RC=${REFRESH_CHECK:-$DRD_ROOT/build/tools/refresh_check}
[ -x "$RC" ] || bail_out "$RC not built (run make)"

# synchronous_commit on: an immediate stop must not lose the primary's
# acknowledged lag-window writes (tests/lib/pg.sh turns it off)
pg_new primary && pg_conf primary "wal_level = logical" && pg_conf primary "synchronous_commit = on" &&
  pg_start primary && fo_cluster_prepare primary ||
  bail_out "cannot start the primary"
{ pg_new backup && pg_start backup && fo_cluster_prepare backup; } || bail_out "cannot start the backup"
pg_psql primary "
  CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int NOT NULL DEFAULT 0);
  INSERT INTO accounts SELECT g, 'o' || g, g FROM generate_series(1, 1000) g;
  CREATE TABLE client_writes (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), n int);
" appdb >/dev/null || bail_out "the primary's tables"
fo_app_init || bail_out "cannot prepare the app"
fo_config "$TEST_TMP/drd.conf" refresh.mode=logical refresh.dir="$TEST_TMP/dumps" refresh.every=24h ||
  bail_out "drd_config"

out=$(timeout 60 "$RC" -c "$DRD_CONF" run manual 2>&1); st=$?
is "$st" 0 "logical replication set up (publication, copy, subscription)" || diag "$(tail -n 15 <<<"$out")"

fo_app_start; ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"

# the second client: inserts into the primary every 50 ms, one session per
# insert, whatever happens (refused while the primary is down or fenced)
( while :; do
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port primary)" -U postgres -d appdb \
      -c "INSERT INTO client_writes (n) VALUES (1)" >/dev/null 2>&1
    sleep 0.05
  done ) &
writer=$!
proc_track "$writer"

TABLES="accounts client_writes drd_app_writes"
sum_of() { pg_psql "$1" "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '')
                        FROM $2 t" appdb 2>&1; }
same() { [ "$(sum_of primary "$1")" = "$(sum_of backup "$1")" ]; }
row_of() { pg_psql "$1" "SELECT coalesce((SELECT owner || ':' || balance FROM accounts WHERE id = $2), 'none')" appdb 2>&1; }
run_ok() {   # run ID: succeeded, no approval asked, every step done
  local id=$1 what=$2
  poll_until 120 eval 'fo_run_finished '"$id"' || fo_has_pending_approval'
  if fo_has_pending_approval; then
    fail "$what: run $id succeeded without a decision"
    diag "run $id waits: $(drd_sql "SELECT name || ': ' || error FROM steps WHERE run_id = $id AND state <> 'done'")"
    while fo_has_pending_approval; do        # let the test go on
      drctl approve "$(fo_pending_approval)" --skip >/dev/null 2>&1
      poll_until 120 eval 'fo_run_finished '"$id"' || fo_has_pending_approval'
    done
    return 1
  fi
  is "$(fo_run_state "$id")" succeeded "$what: run $id succeeded" || fo_diag
  is "$(drd_sql "SELECT count(*) FROM steps WHERE run_id = $id AND state <> 'done'")" 0 \
    "$what: every step of run $id done (none skipped)"
}

# cycle N LAG_SQL OUTAGE_SQL
cycle() {
  local n=$1 lag=$2 outage=$3 t
  poll_until 30 eval 'same accounts && same client_writes'
  ok $? "cycle $n: the backup follows the primary"
  # the replication lag: the apply worker pauses while the primary takes writes
  PGOPTIONS='-c default_transaction_read_only=off' pg_psql backup "ALTER SUBSCRIPTION drd_sub DISABLE" appdb >/dev/null
  poll_until 10 eval '[ "$(pg_psql backup "SELECT count(*) FROM pg_stat_subscription WHERE subname = '"'drd_sub'"' AND pid IS NOT NULL" appdb)" = 0 ]'
  ok $? "cycle $n: the apply worker paused"
  pg_psql primary "$lag" appdb >/dev/null; ok $? "cycle $n: lag-window writes on the primary"
  pg_crash primary; ok $? "cycle $n: the primary dies (immediate stop)"
  fo_drctl failover --yes >/dev/null 2>&1
  t=$(fo_last_run)
  is "$(fo_run_state "$t")" succeeded "cycle $n: failover run $t succeeded" || fo_diag
  pg_psql backup "$outage" appdb >/dev/null; ok $? "cycle $n: outage writes on the backup"
  app=$(fo_app_pid)
  poll_until 15 fo_rows_by_gt backup "${app:-0}" 3
  ok $? "cycle $n: the app writes on the backup"
  pg_start primary; ok $? "cycle $n: the primary is back"
  drd_wait_field 30 '.targets.primary.healthy' true
  ok $? "cycle $n: drd sees it healthy"
  drd_wait_field 15 '.targets.primary.fenced' true
  ok $? "cycle $n: ... and fenced"
  fo_drctl failback --yes >/dev/null 2>&1
  t=$(fo_last_run)
  run_ok "$t" "cycle $n: failback"
  is "$(drd_json .active)" primary "cycle $n: the app is on the primary again"
  is "$(pg_psql backup "SELECT subenabled FROM pg_subscription WHERE subname = 'drd_sub'" appdb)" t \
    "cycle $n: the subscription is back"
  FB=$t
}

# ------------------------------------------------------------- cycle 1 ----
cycle 1 "
  INSERT INTO accounts SELECT g, 'lag' || g, g FROM generate_series(1001, 1004) g;
  UPDATE accounts SET balance = balance + 100 WHERE id = 5;
  DELETE FROM accounts WHERE id = 7;
  UPDATE accounts SET owner = 'lag-moved' WHERE id = 9;" "
  UPDATE accounts SET owner = 'outage' WHERE id = 10;
  INSERT INTO accounts VALUES (5001, 'outage-new', 1);
  DELETE FROM accounts WHERE id = 30;"
# verify (or the online verify of pre-sync, which leaves verify only the
# keys the outage touched) reports the stale rows as the backup being behind
vout="$(fo_step "$FB" pre-sync output 2>/dev/null)
$(fo_step "$FB" verify output)"
like "$vout" "accounts: .*(older|behind)" "cycle 1: verify reports the backup's stale rows as such"
diag "cycle 1 verify: $(grep 'verify public.accounts' <<<"$vout")"
diag "cycle 1 resume-replication: $(fo_step "$FB" resume-replication output)"
is "$(row_of primary 5)" "o5:105" "cycle 1: the lag-window update stands on the primary"
is "$(row_of primary 10)" "outage:10" "cycle 1: the outage update reached the primary"
is "$(row_of primary 30)" "none" "cycle 1: the outage delete reached the primary"
is "$(row_of backup 1001)" "lag1001:1001" "cycle 1: a lag-window insert is on the backup"
is "$(row_of backup 5)" "o5:105" "cycle 1: a lag-window update is on the backup"
is "$(row_of backup 7)" "none" "cycle 1: a lag-window delete is on the backup"
is "$(drd_json .targets.backup.differing_rows)" 0 "status: no known difference left"
cmp_ok "$(drd_json '.refresh.difference.found // 0')" -ge 7 \
  "status: the comparison before the subscription found the lag-window rows"
is "$(drd_json .refresh.difference.by)" converge "status: ... by the converge before the subscription"
chk=$(fo_drctl check --json 2>/dev/null)
is "$(jq -r '.[] | select(.name == "backup-converged") | .status' <<<"$chk")" ok "check: backup-converged ok"

# later primary updates and deletes of the lag-window rows replicate
pg_psql primary "UPDATE accounts SET balance = -1 WHERE id IN (1001, 5, 9); DELETE FROM accounts WHERE id = 1002" \
  appdb >/dev/null
poll_until 15 eval '[ "$(row_of backup 1001)" = "lag1001:-1" ] && [ "$(row_of backup 1002)" = none ] &&
                   [ "$(row_of backup 9)" = "lag-moved:-1" ]'
ok $? "later updates and deletes of the lag-window rows replicate" ||
  diag "backup: 1001=$(row_of backup 1001) 1002=$(row_of backup 1002) 9=$(row_of backup 9)"

# ------------------------------------------------------------- cycle 2 ----
cycle 2 "
  INSERT INTO accounts SELECT g, 'lag' || g, g FROM generate_series(1101, 1103) g;
  UPDATE accounts SET balance = 7 WHERE id IN (15, 1003);
  DELETE FROM accounts WHERE id IN (17, 1004);" "
  UPDATE accounts SET owner = 'outage2' WHERE id = 20;
  INSERT INTO accounts VALUES (5002, 'outage-new2', 2);
  DELETE FROM accounts WHERE id = 31;"
is "$(row_of backup 1003)" "lag1003:7" "cycle 2: the second lag window's update of a first-window row is on the backup"

# ----------------------------------------------------------------- end ----
pg_psql primary "UPDATE accounts SET balance = -2 WHERE id IN (1101, 15); DELETE FROM accounts WHERE id = 1102" \
  appdb >/dev/null
kill "$writer" 2>/dev/null
wait "$writer" 2>/dev/null
fo_app_stop
for t in $TABLES; do
  poll_until 30 same "$t"
  ok $? "the end: $t is equal on both sides ($(sum_of primary "$t"))" ||
    diag "backup: $(sum_of backup "$t")"
done
cmp_ok "$(pg_psql primary "SELECT count(*) FROM client_writes" appdb)" -gt 20 "the second client wrote all along"
is "$(drd_sql "SELECT count(*) FROM approvals WHERE choice = 'skip'")" 0 "no step needed --skip"

# ------------------------------------ a failback that does not converge ----
# A failback runbook without resume-replication (an older custom one): verify
# knows the rows the backup was behind in, nothing copies them. Status and
# check say so (not "backup-lag ok") until a refresh copies the primary whole.
sed '/^\[step resume-replication\]/,/^$/d' "$DRD_ROOT/runbooks/failback.ini" >"$TEST_TMP/fb_noresume.ini"
grep -q resume-replication "$TEST_TMP/fb_noresume.ini" && bail_out "cannot build the test runbook"
drd_stop
fo_config "$TEST_TMP/drd.conf" refresh.mode=logical refresh.dir="$TEST_TMP/dumps" refresh.every=24h \
  failback.runbook="$TEST_TMP/fb_noresume.ini" || bail_out "drd_config"
drd_start || bail_out "drd did not restart"
drd_wait_healthy 15; ok $? "drd restarted with a failback runbook without resume-replication"
fo_drctl failover --yes >/dev/null 2>&1
t=$(fo_last_run)
is "$(fo_run_state "$t")" succeeded "a planned failover (run $t)"
# rows in flight when it stopped replication: on the primary only
PGOPTIONS='-c default_transaction_read_only=off' pg_psql primary "
  INSERT INTO accounts VALUES (7001, 'late', 1), (7002, 'late', 2); UPDATE accounts SET balance = 3 WHERE id = 40" \
  appdb >/dev/null; ok $? "rows the backup never got, on the primary"
pg_psql backup "UPDATE accounts SET owner = 'outage3' WHERE id = 50" appdb >/dev/null
fo_drctl failback --yes >/dev/null 2>&1
t=$(fo_last_run)
run_ok "$t" "failback without resume-replication"
is "$(drd_json .targets.backup.differing_rows)" 3 "status: 3 rows known to differ"
is "$(drd_json .refresh.difference.by)" verify "status: ... found by verify"
like "$(drctl status 2>/dev/null)" "backup: 3 rows differ from the primary \(found by verify" "drctl status says so"
chk=$(fo_drctl check --json 2>/dev/null)
is "$(jq -r '.[] | select(.name == "backup-converged") | .status' <<<"$chk")" fail "check: backup-converged fails"
like "$(jq -r '.[] | select(.name == "backup-converged") | .reason' <<<"$chk")" "differs from the primary in 3 rows" \
  "... saying how many rows"
isnt "$(jq -r '.[] | select(.name == "backup-lag") | .status' <<<"$chk")" ok "check: backup-lag is not ok"
out=$(fo_drctl refresh 2>&1); ok $? "drctl refresh copies the primary whole" || diag "$out"
drd_wait_field 15 .targets.backup.differing_rows 0
ok $? "status: no difference left after the refresh"
poll_until 30 same accounts; ok $? "accounts equal on both sides again"
chk=$(fo_drctl check --json 2>/dev/null)
is "$(jq -r '.[] | select(.name == "backup-converged") | .status' <<<"$chk")" ok "check: backup-converged ok again"
done_testing
