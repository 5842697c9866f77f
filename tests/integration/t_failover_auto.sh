#!/usr/bin/env bash
# t_failover_auto.sh - policy auto end to end with the shipped runbooks and
# the sample app, twice:
#
#  1. The backup holds only the app's schema (no refresh), so the rows the
#     app wrote on the primary before the outage are not on the backup.
#     `pg_ctl stop -m immediate` of the primary -> the failover run
#     succeeds with every step of runbooks/failover.ini done (capture
#     installed schema drd on the backup), the env file points at the
#     backup (the old file kept as .drd-prev, every other line kept), the
#     app's new rows land on the backup, status says active=backup; the
#     primary coming back starts nothing and is fenced (a new app session
#     cannot write: read-only), which the events record.
#     `drctl failback --yes` runs to its end without any approval:
#     sync-back brings every row the app wrote on the backup to the
#     primary, then verify finds the primary holding every backup row,
#     identical, plus its own pre-outage rows (which the backup never had:
#     kept, and said so in the step's output); env file back to the
#     primary, fence lifted, the app writes on the primary again, the
#     backup has no schema drd any more (uncapture), no row was lost.
#  2. The happy path: the app stopped, the backup made an exact copy of the
#     primary (COPY between the clusters, its sequence moved far ahead as a
#     refresh + bump-sequences would), then the primary crashes -> failover;
#     the primary comes back, fenced; `drctl failback --yes` runs to its end
#     without any approval: sync-back, verify passes on its own, the app is
#     back on the primary with the outage's rows, both sides hold the same
#     rows, and schema drd is gone from the backup.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
P_URL=$(fo_app_url primary); B_URL=$(fo_app_url backup)
# block=1s: the second outage (part 2) fails over automatically too.
fo_config "$TEST_TMP/drd.conf" failover.policy=auto failover.block=1s || bail_out "drd_config"

# rb_steps FILE: the number of steps of a run of a runbook (its own, and
# drd's preflight first). all_done N: "done" N times.
rb_steps() { echo $(( $(grep -c '^\[step ' "$1") + 1 )); }
all_done() { local i s=""; for (( i = 0; i < $1; i++ )); do s="$s${s:+ }done"; done; echo "$s"; }
FO_STEPS=$(rb_steps "$DRD_ROOT/runbooks/failover.ini")
FB_STEPS=$(rb_steps "$DRD_ROOT/runbooks/failback.ini")
# states RUN: the steps' states in order.
states() { drd_sql "SELECT group_concat(state, ' ') FROM (SELECT state FROM steps WHERE run_id = $1 ORDER BY idx)"; }
# drd_schema NAME: 1 if appdb on NAME has the schema drd (the capture), else 0.
drd_schema() { pg_psql "$1" "SELECT count(*) FROM pg_namespace WHERE nspname = 'drd'" appdb; }
# rows NAME WHERE: the app's rows on NAME matching WHERE, one per line, by id.
rows() { pg_psql "$1" "SELECT id, writer, seq, at FROM drd_app_writes WHERE $2 ORDER BY id" appdb; }
# rows_sum NAME WHERE: a checksum of those rows ("no rows on NAME" when
# there are none or the query failed: never equal by accident).
rows_sum() {
  local r; r=$(rows "$1" "$2") && [ -n "$r" ] || { echo "no rows on $1"; return 0; }
  md5sum <<<"$r"
}
# missing FROM TO WHERE: how many rows of FROM (matching WHERE) TO lacks
# ("no rows on FROM" when there are none).
missing() {
  local a b; a=$(rows "$1" "$3") && [ -n "$a" ] || { echo "no rows on $1"; return 0; }
  b=$(rows "$2" "$3") || { echo "query failed on $2"; return 0; }
  comm -23 <(sort <<<"$a") <(sort <<<"$b") | wc -l
}
# fences: events recording that a returning primary was fenced.
fences() { fo_event_count 'answered again and was fenced'; }
fences_gt() { [ "$(fences)" -gt "$1" ]; }
# copy_to_backup: the backup's table = the primary's rows (the app must be
# stopped), its sequence 1e9 past the primary's (what a refresh and
# bump-sequences would leave).
copy_to_backup() {
  local last
  # the failback left the backup fenced for the app (read-only by default)
  local PGOPTIONS="-c default_transaction_read_only=off"
  export PGOPTIONS
  set -o pipefail
  pg_psql backup "TRUNCATE drd_app_writes" appdb >/dev/null &&
    pg_psql primary "COPY drd_app_writes TO STDOUT" appdb |
      pg_psql backup "COPY drd_app_writes FROM STDIN" appdb >/dev/null &&
    last=$(pg_psql primary "SELECT last_value FROM drd_app_writes_id_seq" appdb) &&
    pg_psql backup "SELECT setval('drd_app_writes_id_seq', $last::bigint + 1000000000)" appdb >/dev/null
  local rc=$?
  set +o pipefail
  return $rc
}

# ------------------------------------------------------------ the app up ----
fo_app_start; ok $? "the sample app starts on the primary"
poll_until 15 fo_rows_gt primary 5
ok $? "the app writes on the primary ($(fo_rows primary) rows)" || fo_diag
is "$(fo_rows backup)" 0 "the backup has the app's table, empty (no refresh)"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"
is "$(drd_json .active)" primary "status: active=primary"

# ----------------------------------------------------- the primary dies ----
app1=$(fo_app_pid)
t0=$(now_ms)
pg_crash primary || bail_out "cannot stop the primary"
poll_until 30 eval '[ "$(fo_last_run)" -ge 1 ] && fo_run_finished 1'
ok $? "a run was started and finished after the crash" || fo_diag
took=$(( $(now_ms) - t0 ))
diag "from pg_ctl stop -m immediate to the end of the run: ${took} ms"
is "$(fo_run_state 1)" succeeded "run 1 succeeded" || { fo_diag; diag "$(drctl history 2>&1 | head -30)"; }
is "$(drd_sql "SELECT kind || ' ' || started_by FROM runs WHERE id = 1")" "failover policy" \
  "run 1 is a failover started by the policy"
is "$(states 1)" "$(all_done "$FO_STEPS")" "all $FO_STEPS steps of runbooks/failover.ini done"
is "$(fo_step 1 capture state)" "done" "capture is one of them"
is "$(drd_schema backup)" 1 "the backup has schema drd (the change ledger)"
like "$(fo_step 1 fence-primary error)" "fence pending" \
  "fence-primary notes 'fence pending' (the primary is unreachable)"
is "$(drd_sql "SELECT value FROM kv WHERE key = 'fence_pending'")" primary "kv: fence pending on the primary"

is "$(fo_env_url)" "$B_URL" "env file: DATABASE_URL = the backup's app_url"
is "$(fo_env_others)" "$(fo_env_others "$FO_APP_DIR/app.env.orig")" "env file: every other line kept"
cmp -s "$FO_ENV.drd-prev" "$FO_APP_DIR/app.env.orig"
ok $? "env file: the previous content kept as app.env.drd-prev"
is "$(drd_json .active)" backup "status: active=backup"

app2=$(fo_app_pid)
isnt "$app2" "$app1" "the app was restarted (pid $app1 -> ${app2:-none})"
poll_until 15 fo_rows_by_gt backup "$app2" 5
ok $? "the restarted app writes on the backup ($(fo_rows_by backup "$app2") rows)" || fo_diag
n1=$(fo_rows backup)
poll_until 10 fo_rows_gt backup "$((n1 + 5))"
ok $? "... and keeps writing there (row count grows past $((n1 + 5)))"

# ------------------------------------------------ the primary comes back ----
pg_start primary || bail_out "cannot restart the primary"
drd_wait_field 15 .targets.primary.breaker closed
ok $? "the primary is back: breaker closed" || fo_diag
poll_until 15 fo_app_insert_refused primary
ok $? "the returning primary is fenced: a new app session cannot INSERT (read-only)" ||
  diag "insert as app: $(fo_app_insert primary)"
like "$(fo_app_insert primary)" "read-only transaction" "... the error says read-only"
poll_until 10 fo_event_has 'answered again and was fenced'
ok $? "an event records the fence on return" || diag "$(drd_sql 'SELECT kind, message FROM events')"
like "$(drctl history 2>&1)" "fenced" "drctl history shows the fence"
is "$(drd_sql "SELECT value FROM kv WHERE key = 'fence_pending'")" "" "no fence pending any more"
is "$(fo_runs)" 1 "the primary coming back started no run"
is "$(drd_json .active)" backup "status: still active=backup"
is "$(fo_env_url)" "$B_URL" "env file: still the backup"
is "$(fo_app_sessions primary)" 0 "no app sessions on the old primary"
pre=$(rows_sum primary "writer LIKE '%:$app1'")
n_pre=$(fo_rows_by primary "$app1")
cmp_ok "$n_pre" -gt 0 "the primary has the app's rows from before the outage ($n_pre)"

# ---------------------- failback: the primary's pre-outage rows are kept ----
out=$(fo_drctl failback --yes 2>&1); rc=$?
is "$rc" 0 "drctl failback --yes: exit 0" || diag "$out"
like "$out" "run 2 succeeded" "... run 2 succeeded on its own" || { diag "$out"; fo_diag; }
unlike "$out" "waits for approval" "... it never waited for an approval"
is "$(fo_run_state 2)" succeeded "run 2 state: succeeded"
is "$(states 2)" "$(all_done "$FB_STEPS")" "all $FB_STEPS steps of runbooks/failback.ini done, verify included"
is "$(drd_sql "SELECT count(*) FROM approvals WHERE run_id = 2")" 0 "no approval for run 2"
nb=$(fo_rows backup)    # the app wrote there until stop-app, never after
# pre-sync verified every table online, while the app still ran; verify,
# with the app stopped, every key the outage touched
pout=$(drd_sql "SELECT output FROM steps WHERE run_id = 2 AND name = 'pre-sync'")
like "$pout" "verify public\.drd_app_writes: primary has $n_pre more rows? than the backup \(written there before the outage, never copied to the backup\); every backup row is on the primary, identical" \
  "pre-sync's online verify: the primary has its $n_pre pre-outage rows more, every backup row is there, identical" || diag "$pout"
like "$pout" "verify: 1 tables?, [0-9]+ rows, all backup rows on the primary \(1 table with $n_pre extra primary rows?, kept\)" \
  "... its summary: all backup rows on the primary, $n_pre extra primary rows kept" || diag "$pout"
vout=$(drd_sql "SELECT output FROM steps WHERE run_id = 2 AND name = 'verify'")
like "$vout" "verify public\.drd_app_writes: the [0-9]+ keys the outage touched are identical on both sides; the rest was verified online \(subset\)" \
  "verify, app stopped: every key the outage touched is identical, the rest verified online" || diag "$vout"
out_rows=$(fo_rows_by backup "$app2")
cmp_ok "$out_rows" -gt 5 "the app wrote $out_rows rows on the backup during the outage"
is "$(missing backup primary "writer LIKE '%:$app2'")" 0 \
  "every one of them is on the primary now, identical (id, writer, seq, at)"
is "$(fo_rows_by primary "$app2")" "$out_rows" "... and no more (the same count)"
is "$(pg_psql primary "SELECT last_value >= (SELECT max(id) FROM drd_app_writes WHERE writer LIKE '%:$app2') FROM drd_app_writes_id_seq" appdb)" t \
  "the primary's sequence was moved past their ids"
is "$(rows_sum primary "writer LIKE '%:$app1'")" "$pre" \
  "the primary's own rows from before the outage are untouched ($n_pre)"
is "$(fo_env_url)" "$P_URL" "env file: DATABASE_URL = the primary's app_url again"
is "$(fo_env_others)" "$(fo_env_others "$FO_APP_DIR/app.env.orig")" "env file: other lines still kept"
is "$(drd_json .active)" primary "status: active=primary"
is "$(drd_json '"\(.run) \(.approvals | length)"')" "null 0" "status: no run in progress, no approval pending"
fo_app_insert_works primary; ok $? "the fence is lifted: a new app session can INSERT on the primary" ||
  diag "$(fo_app_insert primary)"
app3=$(fo_app_pid)
isnt "$app3" "$app2" "the app was restarted again"
poll_until 15 fo_rows_by_gt primary "$app3" 5
ok $? "the app writes on the primary again ($(fo_rows_by primary "$app3") rows)" || fo_diag
is "$(fo_rows_by backup "$app3")" 0 "... and not on the backup"
is "$(drd_schema backup)" 0 "uncapture: the backup has no schema drd any more"
is "$(missing backup primary "writer LIKE '%:$app2'")" 0 "the outage's rows are still all on the primary"
is "$(fo_runs)" 2 "two runs in all"

# ------------------------- part 2: identical data, a failback on its own ----
fo_app_stop; ok $? "the app is stopped for a moment"
copy_to_backup; ok $? "the backup is made a copy of the primary (COPY between the clusters)"
is "$(rows_sum backup true)" "$(rows_sum primary true)" "... both sides hold the same rows ($(fo_rows primary))"
nf=$(fences)
pg_crash primary || bail_out "cannot stop the primary"
poll_until 30 eval '[ "$(fo_last_run)" -ge 3 ] && fo_run_finished 3'
ok $? "a second outage: run 3 started and finished" || fo_diag
is "$(drd_sql "SELECT kind || ' ' || started_by || ' ' || state FROM runs WHERE id = 3")" \
  "failover policy succeeded" "run 3: a failover by the policy, succeeded"
is "$(states 3)" "$(all_done "$FO_STEPS")" "all its steps done"
app4=$(fo_app_pid)
poll_until 15 fo_rows_by_gt backup "${app4:-0}" 10
ok $? "the app writes on the backup" || fo_diag
pg_start primary || bail_out "cannot restart the primary"
drd_wait_field 15 .targets.primary.breaker closed; ok $? "the primary is back" || fo_diag
poll_until 15 fences_gt "$nf"; ok $? "... and fenced again" || fo_diag

out=$(fo_drctl failback --yes 2>&1); rc=$?
is "$rc" 0 "drctl failback --yes: exit 0" || diag "$out"
like "$out" "run 4 succeeded" "... run 4 succeeded, with no approval" || { diag "$out"; fo_diag; }
unlike "$out" "waits for approval" "... it never waited"
is "$(states 4)" "$(all_done "$FB_STEPS")" "all $FB_STEPS steps of runbooks/failback.ini done (verify passed)"
is "$(drd_sql "SELECT count(*) FROM approvals WHERE run_id = 4")" 0 "no approval for run 4"
like "$(drd_sql "SELECT output FROM steps WHERE run_id = 4 AND name = 'pre-sync'")" "all equal" \
  "pre-sync's online verify: all equal"
like "$(drd_sql "SELECT output FROM steps WHERE run_id = 4 AND name = 'verify'")" "verified online \(equal\)" \
  "verify's output: the tail identical, the rest verified online and equal"
app5=$(fo_app_pid)
isnt "$app5" "$app4" "the app was restarted"
n4=$(fo_rows_by backup "${app4:-0}")
is "$(missing backup primary "writer LIKE '%:${app4:-0}'")" 0 \
  "the $n4 rows the app wrote on the backup are on the primary"
is "$(rows_sum backup "writer NOT LIKE '%:${app5:-0}'")" "$(rows_sum primary "writer NOT LIKE '%:${app5:-0}'")" \
  "both sides hold the same rows (but the restarted app's new ones on the primary)"
is "$(fo_env_url)" "$P_URL" "env file: the primary"
is "$(drd_json .active)" primary "status: active=primary"
poll_until 15 fo_rows_by_gt primary "${app5:-0}" 5
ok $? "the app writes on the primary (the fence is lifted)" || fo_diag
is "$(drd_schema backup)" 0 "the backup has no schema drd"
is "$(fo_runs)" 4 "four runs in all"

done_testing
