# shellcheck shell=bash
# tests/lib/failover.sh - shared set-up for the failover/failback
# integration tests (t_failover_auto, t_failover_approve, t_frozen_primary,
# t_flapping, t_runbook_failures, t_crash_resume, t_bad_input).
# Source after pg.sh and drd.sh:
#
#   . tests/lib/pg.sh; . tests/lib/drd.sh; . tests/lib/failover.sh
#   fo_clusters || bail_out "cannot start the clusters"
#   fo_app_init
#   fo_config "$TEST_TMP/drd.conf" failover.policy=auto
#   fo_app_start && drd_start && drd_wait_healthy 15
#
# The app is tests/app/appctl + build/tools/sample_app, connecting as its
# own role `app` to its own database `appdb` on both clusters (so the fence
# - ALTER DATABASE appdb ... and ending the sessions of role app - never
# touches the postgres sessions the tests and drd's probes use).

[ -n "${_DRD_FAILOVER_SH:-}" ] && return 0
_DRD_FAILOVER_SH=1

FO_APPCTL=$DRD_ROOT/tests/app/appctl
FO_APP_BIN=${SAMPLE_APP:-$DRD_ROOT/build/tools/sample_app}
FO_APP_DIR=$TEST_TMP/app
FO_ENV=$FO_APP_DIR/app.env
FO_APP_LOG=$FO_APP_DIR/app.log
FO_HEALTH_PORT=

# fo_require: bail out unless everything the tests use is there.
fo_require() {
  drd_require
  [ -x "$FO_APP_BIN" ] || bail_out "$FO_APP_BIN is not built (run make)"
  command -v curl >/dev/null || bail_out "curl is not installed"
}

# fo_cluster_prepare NAME: role app (LOGIN) and database appdb owned by it.
fo_cluster_prepare() {
  pg_psql "$1" "CREATE ROLE app LOGIN" >/dev/null &&
    pg_psql "$1" "CREATE DATABASE appdb OWNER app" >/dev/null &&
    fo_app_schema "$1"
}

# fo_app_schema NAME: the app's table in appdb, as the backup would have it
# from a refresh of the primary: the same schema on both sides, and on the
# backup a sequence far ahead (what refresh's bump-sequences step does), so
# rows the app writes there during an outage never reuse the primary's ids.
fo_app_schema() {
  local sql="CREATE TABLE IF NOT EXISTS drd_app_writes (id bigserial PRIMARY KEY,
               at timestamptz NOT NULL DEFAULT now(), writer text NOT NULL, seq bigint NOT NULL);
             ALTER TABLE drd_app_writes OWNER TO app;"
  [ "$1" = backup ] && sql="$sql SELECT setval('drd_app_writes_id_seq', 1000000000);"
  pg_psql "$1" "$sql" appdb >/dev/null
}

# fo_clusters: create, start and prepare the clusters primary and backup.
fo_clusters() {
  local n
  for n in primary backup; do
    pg_new "$n" && pg_start "$n" && fo_cluster_prepare "$n" || return 1
  done
}

# fo_app_url NAME: the URL the app uses on cluster NAME. application_name
# is set to a name of the app's own, as a real app's would be (drd's fence
# spares only its own sessions, application_name 'drd' and 'drd-probe').
fo_app_url() { echo "$(pg_url "$1" app appdb)?application_name=shop_app"; }

# fo_app_init: the app's directory, env file (DATABASE_URL = the primary,
# plus lines that must survive every rewrite) and app.conf; the app is
# stopped at exit.
fo_app_init() {
  mkdir -p "$FO_APP_DIR" || return 1
  FO_HEALTH_PORT=$(free_port) || return 1
  cat >"$FO_ENV" <<EOF
# env file of the drd test app
APP_NAME=drd-test
DATABASE_URL=$(fo_app_url primary)
OTHER_SETTING="keep me"   # comment kept
EOF
  printf 'HEALTH_PORT=%s\nAPP_BIN=%s\n' "$FO_HEALTH_PORT" "$FO_APP_BIN" >"$FO_APP_DIR/app.conf"
  cp "$FO_ENV" "$FO_APP_DIR/app.env.orig"
  cleanup_add "'$FO_APPCTL' stop '$FO_APP_DIR'"
}

# fo_config FILE [SECTION.KEY=VALUE...]: drd_config with the app's URLs, env
# file, appctl stop/start and health URL (then the overrides).
fo_config() {
  local file=$1; shift
  drd_config "$file" \
    primary.app_url="$(fo_app_url primary)" \
    backup.app_url="$(fo_app_url backup)" \
    app.env_file="$FO_ENV" \
    app.stop="$FO_APPCTL stop $FO_APP_DIR" \
    app.start="$FO_APPCTL start $FO_APP_DIR" \
    app.health_url="http://127.0.0.1:$FO_HEALTH_PORT/health" \
    "$@"
}

fo_app_start() { "$FO_APPCTL" start "$FO_APP_DIR" >/dev/null 2>&1; }
fo_app_stop()  { "$FO_APPCTL" stop "$FO_APP_DIR" >/dev/null 2>&1; }
fo_app_running() { "$FO_APPCTL" status "$FO_APP_DIR" >/dev/null 2>&1; }
fo_app_pid() { cat "$FO_APP_DIR/app.pid" 2>/dev/null; }

# fo_env_url: the DATABASE_URL the env file holds now.
fo_env_url() { sed -n 's/^DATABASE_URL=//p' "$FO_ENV" | tail -n 1; }
# fo_env_others: every line of the env file but DATABASE_URL's.
fo_env_others() { grep -v '^DATABASE_URL=' "${1:-$FO_ENV}"; }

# fo_rows NAME: rows the app wrote on NAME (0 if it never created its table).
fo_rows() {
  local n
  n=$(pg_psql "$1" "SELECT CASE WHEN to_regclass('drd_app_writes') IS NULL THEN 0
                     ELSE (SELECT count(*) FROM drd_app_writes) END" appdb 2>/dev/null) || return 1
  echo "${n:-0}"
}
# fo_rows_gt NAME N: more than N rows on NAME (for poll_until).
fo_rows_gt() { local n; n=$(fo_rows "$1") && [ "$n" -gt "$2" ]; }
# fo_rows_since NAME WRITER_PID: rows by the app process WRITER_PID on NAME.
fo_rows_by() {
  pg_psql "$1" "SELECT count(*) FROM drd_app_writes WHERE writer LIKE '%:$2'" appdb 2>/dev/null
}
fo_rows_by_gt() { local n; n=$(fo_rows_by "$1" "$2") && [ "${n:-0}" -gt "$3" ]; }

# fo_app_insert NAME: a new session as the app's role inserts one row;
# prints psql's output (errors included); exit status psql's.
fo_app_insert() {
  local port; port=$(pg_port "$1") || return 1
  "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U app -d appdb \
    -c "INSERT INTO drd_app_writes (writer, seq) VALUES ('test-probe', 0)" 2>&1
}
# fo_app_insert_refused NAME: that insert fails because the database is
# read-only (the fence), not for another reason.
fo_app_insert_refused() {
  local out
  out=$(fo_app_insert "$1") && return 1
  [[ "$out" == *read-only* ]]
}
# fo_app_insert_works NAME
fo_app_insert_works() { fo_app_insert "$1" >/dev/null; }

# fo_app_sessions NAME: client sessions of the app's role on NAME (drd's own
# sessions, application_name drd and drd-probe, excluded).
fo_app_sessions() {
  pg_psql "$1" "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'
                AND backend_type = 'client backend'
                AND coalesce(application_name, '') NOT IN ('drd', 'drd-probe')"
}
fo_app_sessions_are() { [ "$(fo_app_sessions "$1" 2>/dev/null)" = "$2" ]; }

# fo_runs: number of runs recorded. fo_run_state ID. fo_last_run: newest id.
fo_runs() { drd_sql "SELECT count(*) FROM runs"; }
fo_run_state() { drd_sql "SELECT state FROM runs WHERE id = $1"; }
fo_run_state_is() { [ "$(fo_run_state "$1")" = "$2" ]; }
fo_last_run() { drd_sql "SELECT coalesce(max(id), 0) FROM runs"; }
# fo_step ID NAME COLUMN: a column of a step of run ID.
fo_step() { drd_sql "SELECT $3 FROM steps WHERE run_id = $1 AND name = '$2'"; }
fo_step_is() { [ "$(fo_step "$1" "$2" "$3")" = "$4" ]; }

# fo_pending_approval [KIND]: id of the oldest pending approval (of KIND:
# policy, step, attention), from the state database; empty if none.
fo_pending_approval() {
  drd_sql "SELECT id FROM approvals WHERE state = 'pending'${1:+ AND kind = '$1'} ORDER BY id LIMIT 1"
}
fo_has_pending_approval() { [ -n "$(fo_pending_approval "${1:-}")" ]; }
# fo_status_approval ID: "kind run_id step" of approval ID as `drctl status
# --json` lists it (empty if it is not listed).
fo_status_approval() {
  drd_json "[.approvals[] | select(.id == $1) | \"\\(.kind) \\(.run_id) \\(.step)\"][0] // empty"
}

# fo_event_count ERE: events whose "kind: message" matches ERE.
fo_event_count() {
  drd_sql "SELECT kind || ': ' || message FROM events" | grep -cE -- "$1"
}
fo_event_has() { [ "$(fo_event_count "$1")" -gt 0 ]; }

# fo_run_finished ID: run ID is finished (any final state).
fo_run_finished() {
  local st; st=$(fo_run_state "$1")
  [ "$st" = succeeded ] || [ "$st" = failed ] || [ "$st" = aborted ]
}

# fo_freeze NAME / fo_thaw NAME: SIGSTOP / SIGCONT every process of the
# cluster: the postmaster first (so it forks no one meanwhile), then all its
# children - a hung host; freezing the postmaster alone would leave the
# existing backends serving their sessions.
fo_freeze() {
  local pm list; pm=$(pg_pid "$1") || return 1
  list=$(pg_dir "$1")/frozen.pids
  echo "$pm" >"$list"
  kill -STOP "$pm" || return 1
  pgrep -P "$pm" >>"$list"
  # shellcheck disable=SC2046
  kill -STOP $(tail -n +2 "$list") 2>/dev/null
  return 0
}
fo_thaw() {
  local list; list=$(pg_dir "$1")/frozen.pids
  [ -s "$list" ] || return 0
  # children first, the postmaster last
  # shellcheck disable=SC2046
  kill -CONT $(tail -n +2 "$list") 2>/dev/null
  kill -CONT "$(head -n 1 "$list")" 2>/dev/null
  rm -f "$list"
  return 0
}

# fo_wait_run_state TIMEOUT_S ID STATE
fo_wait_run_state() { poll_until "$1" fo_run_state_is "$2" "$3"; }

# fo_diag: drd's log tail and the app's log tail, as TAP comments.
fo_diag() {
  diag_file "$DRD_LOG" "${1:-40}"
  diag_file "$FO_APP_LOG" 10
}

# fo_drctl ARGS...: drctl with a hard deadline (FO_DRCTL_TIMEOUT, 60 s), so
# a hanging follow never hangs the test.
FO_DRCTL_TIMEOUT=${FO_DRCTL_TIMEOUT:-60}
fo_drctl() { timeout -k 5 "$FO_DRCTL_TIMEOUT" "$DRCTL" -c "$DRD_CONF" "$@"; }
