#!/usr/bin/env bash
# t_drill.sh - `drctl drill`: a rehearsal in the [drill] environment (two
# clusters and the sample app, like the make demo sandbox) while the real
# drd watches two other clusters. The drill starts a drd of its own (-D,
# approvals granted), stops the drill's primary (pg_ctl stop -m immediate),
# lets it fail over, writes rows through the app's URL on the backup,
# restarts the primary, fails back (sync-back, verify) and reports the
# figures; the real drd keeps the report (/api/drills, the status, drctl
# history) and its own targets are untouched. A second drill whose restore
# also writes on the primary, behind drd's back, a key the drill writes on
# the backup stops at pre-sync's conflict (the app never stopped), is
# reported failed, and `drctl --drill check` shows the state it left.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

for c in prodp prodb; do
  { pg_new $c && pg_start $c; } || bail_out "cannot start cluster $c"
done
fo_clusters || bail_out "cannot start the drill clusters"
fo_app_init || bail_out "cannot prepare the app"
# a row both drill sides have, identical (as a refresh would leave it)
for c in primary backup; do
  pg_psql $c "CREATE TABLE fixture (id int PRIMARY KEY, v text); INSERT INTO fixture VALUES (1, 'same');
              ALTER TABLE fixture OWNER TO app" appdb >/dev/null || bail_out "fixture on $c"
done

ROWS=40
FAULT="$(pg_ctl_cmd primary) stop -m immediate"
RESTORE="$(pg_ctl_cmd primary) start -w"
drill_conf() {   # FILE [SECTION.KEY=VALUE...]
  local f=$1; shift
  drd_config "$f" primary.url="$(pg_url prodp)" backup.url="$(pg_url prodb)" \
    failover.policy=approve \
    drill.primary_url="$(pg_url primary)" drill.primary_app_url="$(fo_app_url primary)" \
    drill.backup_url="$(pg_url backup)" drill.backup_app_url="$(fo_app_url backup)" \
    drill.env_file="$FO_ENV" drill.stop="$FO_APPCTL stop $FO_APP_DIR" \
    drill.start="$FO_APPCTL start $FO_APP_DIR" \
    drill.health_url="http://127.0.0.1:$FO_HEALTH_PORT/health" \
    drill.fault="$FAULT" drill.restore="$RESTORE" drill.dir="$TEST_TMP/drill" \
    drill.rows=$ROWS drill.timeout=2m "$@"
}
drill_conf "$TEST_TMP/drd.conf" || bail_out "drd_config"
fo_app_start; ok $? "the drill's app runs on the drill primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "the real drd: its own targets healthy"
like "$(drd_json .drill.warning)" "no successful drill" "before any drill: a drill warning in the status"

# ------------------------------------------------------ a good drill ----
env_before=$(fo_env_url)
t0=$(now_ms)
out=$(timeout -k 5 150 "$DRCTL" -c "$DRD_CONF" drill --json 2>"$TEST_TMP/drill.err"); rc=$?
el=$(( $(now_ms) - t0 ))
is "$rc" 0 "drctl drill succeeds (exit 0, ${el} ms)" || { diag "$out"; diag_file "$TEST_TMP/drill.err" 30; diag_file "$TEST_TMP/drill/drill.log" 40; }
is "$(jq -r .result <<<"$out")" succeeded "... result succeeded"
for f in detection_ms rto_ms sync_ms; do
  v=$(jq -r ".$f" <<<"$out")
  [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ]; ok $? "... reports $f ($v)"
done
det=$(jq -r .detection_ms <<<"$out"); rto=$(jq -r .rto_ms <<<"$out")
cmp_ok "$rto" -ge "$det" "... RTO ($rto ms) includes detection ($det ms)"
is "$(jq -r '[.rows_written, .rows_found] | join(" ")' <<<"$out")" "$ROWS $ROWS" \
  "... $ROWS rows written on the backup during the outage, all found on the primary"
is "$(jq -r '[.steps[] | select(.run == "failover")] | length' <<<"$out")" \
  "$(( $(grep -c '^\[step ' "$DRD_ROOT/runbooks/failover.ini") + 1 ))" "... every failover step (and drd's preflight) with its duration"
is "$(jq -r '[.steps[] | select(.run == "failback" and .state != "done" and .state != "skipped")] | length' <<<"$out")" 0 \
  "... every failback step succeeded"
is "$(jq -r .recorded <<<"$out")" true "... the report was recorded by the real drd"
text=$(grep -c . "$TEST_TMP/drill.err"); diag "drill progress: $text lines on stderr"

is "$(fo_env_url)" "$env_before" "the drill's env file points at its primary again"
fo_app_running; ok $? "the drill's app is running again"
poll_until 10 fo_app_sessions_are primary 1
ok $? "... connected to the drill primary"
is "$(pg_psql primary "SELECT to_regclass('drd_drill_rows') IS NULL" appdb)" t "the drill's table is gone from the primary"
is "$(pg_psql backup "SELECT to_regclass('drd_drill_rows') IS NULL" appdb)" t "... and from the backup"
is "$(pg_psql primary "SHOW default_transaction_read_only" appdb)" off "the drill primary is not left fenced"

d=$(drd_api /api/drills); code=$(tail -1 <<<"$d"); d=$(sed '$d' <<<"$d")
is "$code" "HTTP 200" "GET /api/drills"
is "$(jq -r '.drills | length' <<<"$d")" 1 "... one drill"
is "$(jq -r '.drills[0].result' <<<"$d")" succeeded "... succeeded"
is "$(jq -r '.drills[0].report.rto_ms' <<<"$d")" "$rto" "... with its report"
is "$(drd_json .drill.last.result)" succeeded "the status shows the last drill"
is "$(drd_json .drill.warning)" null "... and no drill warning any more"
hist=$("$DRCTL" -c "$DRD_CONF" history 2>&1)
like "$hist" "DRILLS" "drctl history lists drills"
is "$(drd_sql "SELECT count(*) FROM incidents")" 0 "the real drd saw no incident (its targets were never touched)"
is "$(drd_sql "SELECT count(*) FROM runs")" 0 "... and ran nothing"

# ------------------------------------------- a drill that stops at a conflict ----
# The restore also writes on the primary, behind drd's back, a row with the
# key of the first row the drill writes on the backup during the outage:
# the failback's pre-sync finds the same key written on both sides, asks
# (a conflict is a human's decision) before the app is stopped, and the
# drill is reported failed. (A row changed on the primary only is the
# backup having been behind: the primary's version stands, no failure.)
drill_conf "$TEST_TMP/bad.conf" \
  drill.restore="$RESTORE && $PG_BIN/psql -qAt -h 127.0.0.1 -p $(pg_port primary) -U postgres -d appdb -c \"BEGIN READ WRITE; INSERT INTO public.drd_drill_rows (id, drill, n) VALUES (1, 0, 0); COMMIT\"" \
  || bail_out "drd_config bad"
# (The first drill's failback moved the primary's sequence past the
# backup's and the app wrote there since: the failover's bump-sequences
# step moves the backup's ahead again, so no id collides - no conflict.)
out=$(timeout -k 5 150 "$DRCTL" -c "$TEST_TMP/bad.conf" drill --json 2>"$TEST_TMP/bad.err"); rc=$?
is "$rc" 1 "a drill whose failback meets a conflict exits 1" || { diag "$out"; diag_file "$TEST_TMP/bad.err" 30; }
is "$(jq -r .result <<<"$out")" failed "... reported failed"
like "$(jq -r .error <<<"$out")" "human decision at step pre-sync" "... at the pre-sync step, before the app is stopped: $(jq -r .error <<<"$out" | cut -c1-160)"
is "$(jq -r .rows_written <<<"$out")" "$ROWS" "... after writing its rows"
is "$(jq -r .recorded <<<"$out")" true "... and recorded"
DRD_CONF=$TEST_TMP/drd.conf
d=$(drd_api /api/drills | sed '$d')
is "$(jq -r '[.drills[].result] | join(" ")' <<<"$d")" "failed succeeded" "the real drd keeps both, newest first"
is "$(drd_json .drill.last.result)" failed "the status shows the failed drill"
is "$(drd_json .drill.warning)" null "... the last successful one is recent: no warning"
chk=$("$DRCTL" -c "$TEST_TMP/bad.conf" --drill check 2>&1); rc=$?
is "$rc" 0 "drctl --drill check: the state the stopped drill left is sound" || diag "$chk"
like "$chk" "ok +health-url" "... the app still answers: pre-sync stopped before the app was"
like "$chk" "env-file .*points at the active side \(backup\)" "... and it still runs on the backup"
like "$(cat "$TEST_TMP/bad.err")" "--drill check" "drctl drill says how to inspect the drill environment"

drd_stop; is "$?" 0 "the real drd stops cleanly"
done_testing
