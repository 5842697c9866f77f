#!/usr/bin/env bash
# t_dryrun.sh - `drctl failover --dry-run` and `drctl failback --dry-run`
# against a real sandbox (two clusters, the sample app writing through its
# env file, drd running): every step of the shipped runbook is listed in
# order with its command expanded (${app.stop} -> the appctl line), secrets
# masked (passwords in the config's URLs and in a command never appear),
# what it would change, its prerequisite; exit 0; --json parses and has the
# same steps. Afterwards nothing changed: env file (sha256), the app (same
# pid, running), no run recorded (state db, /api/runs, drctl history), the
# backup without schema drd nor triggers, the primary not read-only, the
# backup's rows, drd's breakers and active side. Then one prerequisite is
# broken at a time (start command removed; env file in a missing
# directory): its step shows fail, exit 1.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
# Passwords the output must never show. The clusters trust loopback, so
# they are accepted and ignored; the app itself keeps its password-less URL.
PW_PROBE=probeS3cret PW_BACKUP_APP=bkAppS3cret PW_CMD=cmdS3cret
backup_app_url="$(pg_url backup "app:$PW_BACKUP_APP" appdb)?application_name=shop_app"
STOP_CMD="DRD_TEST_SINK=postgresql://x:$PW_CMD@127.0.0.1:1/x $FO_APPCTL stop $FO_APP_DIR"
fo_config "$TEST_TMP/drd.conf" \
  primary.url="$(pg_url primary "postgres:$PW_PROBE")" \
  backup.app_url="$backup_app_url" \
  app.stop="$STOP_CMD" || bail_out "fo_config"
GOOD=$DRD_CONF

fo_app_start; ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy" || fo_diag
poll_until 10 fo_rows_gt primary 0; ok $? "the app writes to the primary"

# ---------------------------------------------------------- state ----
backup_sql() { pg_psql backup "$1" appdb 2>&1; }
primary_sql() { pg_psql primary "$1" appdb 2>&1; }
# Everything a dry run must leave alone, one line each.
snapshot() {
  echo "env $(sha256sum <"$FO_ENV" | cut -d' ' -f1)"
  echo "env-prev $(ls "$FO_APP_DIR" | grep -c drd-prev)"
  echo "app pid $(fo_app_pid)"
  echo "runs $(fo_runs) approvals $(drd_sql 'SELECT count(*) FROM approvals')"
  echo "api runs $(drd_api /api/runs | head -n -1 | jq '.runs | length')"
  echo "history runs $(drctl history --json 2>/dev/null | jq '.runs | length')"
  echo "status $(drd_json '[.active, .targets.primary.breaker, .targets.backup.breaker, (.run | tostring)] | join(" ")')"
  echo "backup drd schema $(backup_sql "SELECT to_regnamespace('drd') IS NOT NULL")"
  echo "backup triggers $(backup_sql "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")"
  echo "backup rows $(fo_rows backup)"
  echo "backup settings $(backup_sql "SELECT count(*) FROM pg_db_role_setting")"
  echo "primary settings $(primary_sql "SELECT count(*) FROM pg_db_role_setting")"
  echo "primary app login $(primary_sql "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app'")"
  echo "backup subscriptions $(backup_sql "SELECT count(*) FROM pg_subscription")"
}
before=$(snapshot)
fo_app_insert_works primary; ok $? "the app's role can write on the primary"

# steps NAME of a runbook, in file order
rb_steps() { sed -n 's/^\[step \(.*\)\]$/\1/p' "$1"; }
# the JSON plan's step names, one per line
json_steps() { jq -r '.steps[].name' <<<"$1" 2>/dev/null; }
no_secrets() {   # TEXT DESC
  local s found=
  for s in "$PW_PROBE" "$PW_BACKUP_APP" "$PW_CMD"; do
    [[ "$1" == *"$s"* ]] && found="$found $s"
  done
  is "$found" "" "$2"
}

# ------------------------------------------------------ failover ----
t0=$(now_ms)
OUT=$(drctl failover --dry-run 2>"$TEST_TMP/dry.err"); RC=$?
el=$(( $(now_ms) - t0 ))
ERR=$(cat "$TEST_TMP/dry.err")
is "$RC" 0 "failover --dry-run on a healthy sandbox: exit 0" || diag "$OUT" "$ERR"
cmp_ok "$el" -lt 5000 "... in under 5 s (${el} ms)"
mapfile -t want < <(rb_steps "$DRD_ROOT/runbooks/failover.ini")
cmp_ok "${#want[@]}" -gt 5 "... the shipped runbook has its steps (${#want[@]})"
got=$(grep -E '^ *[0-9]+\. ' <<<"$OUT" | sed -E 's/^ *[0-9]+\. ([^ ]+) .*/\1/')
is "$got" "$(printf '%s\n' "${want[@]}")" "... every step of runbooks/failover.ini, in order" || diag "$OUT"
like "$OUT" "stops the app: runs \`DRD_TEST_SINK=postgresql://x:\*\*\*\*@127.0.0.1:1/x $FO_APPCTL stop $FO_APP_DIR\`" \
  "... stop-app shows \${app.stop} expanded, its URL's password masked"
like "$OUT" "command: +$FO_APPCTL start $FO_APP_DIR" "... start-app shows \${app.start} expanded"
unlike "$OUT" '\$\{' "... no unexpanded \${...} left"
like "$OUT" "sets DATABASE_URL in $FO_ENV from postgresql://app@127.0.0.1:[0-9]+/appdb.* to the backup's app_url postgresql://app:\*\*\*\*@" \
  "... switch-env: from the current value to the backup's app_url (masked)"
like "$OUT" "installs the change ledger and triggers on the backup" "... capture described"
like "$OUT" "ALTER DATABASE \"appdb\" SET default_transaction_read_only = on" "... the fence described"
like "$OUT" "prerequisite: ok \(env-file\)" "... switch-env's prerequisite: the env-file check"
like "$OUT" "prerequisite: ok \(app-commands\)" "... the app commands' prerequisite: app-commands"
like "$OUT" "active side: primary \(according to drd\)" "... the active side, from drd"
is "$(tail -n 1 <<<"$OUT")" "dry run: nothing was run or changed" "... last line says nothing was run"
no_secrets "$OUT$ERR" "... no password anywhere in the output"

JS=$(drctl failover --dry-run --json 2>"$TEST_TMP/dry.err"); RC=$?
is "$RC" 0 "failover --dry-run --json: exit 0" || diag "$JS" "$(cat "$TEST_TMP/dry.err")"
jq -e . >/dev/null <<<"$JS"; ok $? "... parses as JSON"
is "$(json_steps "$JS")" "$(printf '%s\n' "${want[@]}")" "... .steps: every step, in order"
is "$(jq -r '[.kind, .active, .ok, (.steps | map(.n) | join(","))] | map(tostring) | join(" ")' <<<"$JS")" \
  "failover primary true $(seq -s, 1 ${#want[@]})" "... kind, active, ok, numbered"
is "$(jq -r '.steps[] | select(.name == "stop-app") | .command' <<<"$JS")" \
  "DRD_TEST_SINK=postgresql://x:****@127.0.0.1:1/x $FO_APPCTL stop $FO_APP_DIR" "... stop-app's command, expanded and masked"
is "$(jq -r '.steps[] | select(.name == "switch-env") | [.command, .prerequisite.check, .prerequisite.status] | map(tostring) | join(" ")' <<<"$JS")" \
  "null env-file ok" "... switch-env: no command, prerequisite env-file ok"
is "$(jq -r '[.steps[] | select(.prerequisite.status == "fail")] | length' <<<"$JS")" 0 "... no prerequisite fails"
is "$(jq -r '[.steps[] | select(.changes == "" or .changes == null)] | length' <<<"$JS")" 0 "... every step says what it changes"
no_secrets "$JS" "... no password in the JSON"

# ------------------------------------------------------ failback ----
OUT=$(drctl failback --dry-run 2>"$TEST_TMP/dry.err"); RC=$?
ERR=$(cat "$TEST_TMP/dry.err")
is "$RC" 0 "failback --dry-run: exit 0 (every prerequisite met)" || diag "$OUT" "$ERR"
mapfile -t wantb < <(rb_steps "$DRD_ROOT/runbooks/failback.ini")
got=$(grep -E '^ *[0-9]+\. ' <<<"$OUT" | sed -E 's/^ *[0-9]+\. ([^ ]+) .*/\1/')
is "$got" "$(printf '%s\n' "${wantb[@]}")" "... every step of runbooks/failback.ini, in order" || diag "$OUT"
like "$OUT" "note: the app is already on the primary" "... the header says it does not fit the current state"
like "$OUT" "copies the rows changed on the backup during the outage to the primary.*conflicts: ask" "... sync-back described"
like "$OUT" "compares every synced table on both sides" "... verify described"
like "$OUT" "already set: no change" "... switch-env primary: already set"
like "$OUT" "RESET default_transaction_read_only" "... unfence described"
is "$(tail -n 1 <<<"$OUT")" "dry run: nothing was run or changed" "... last line says nothing was run"
no_secrets "$OUT$ERR" "... no password anywhere in the output"
JS=$(drctl failback --dry-run --json 2>/dev/null)
is "$(json_steps "$JS")" "$(printf '%s\n' "${wantb[@]}")" "failback --json: every step, in order"
is "$(jq -r '[.kind, .fits] | map(tostring) | join(" ")' <<<"$JS")" "failback false" "... kind failback, fits false"

# ------------------------------------------------- nothing changed ----
after=$(snapshot)
is "$after" "$before" "nothing changed: env file, app pid, runs, breakers, backup, primary" || diag "$(diff <(echo "$before") <(echo "$after"))"
fo_app_running; ok $? "the app still runs"
fo_app_insert_works primary; ok $? "the primary still takes the app's writes (not fenced)"
drd_running; ok $? "drd still runs"

# --------------------------------------------- one thing broken ----
# variant NAME KEY=VALUE...: a copy of the good config with overrides
variant() {
  local f=$TEST_TMP/$1.conf; shift
  fo_config "$f" primary.url="$(pg_url primary "postgres:$PW_PROBE")" \
    backup.app_url="$backup_app_url" app.stop="$STOP_CMD" "$@" >/dev/null || return 1
  DRD_CONF=$GOOD
  echo "$f"
}
# expect_fail CONF KIND STEP CHECK REASON_ERE DESC
expect_fail() {
  local conf=$1 kind=$2 step=$3 check=$4 ere=$5 desc=$6 js txt rc
  js=$("$DRCTL" -c "$conf" "$kind" --dry-run --json 2>/dev/null); rc=$?
  is "$rc" 1 "$desc: $kind --dry-run exits 1" || diag "$js"
  is "$(jq -r '[.steps[] | select(.prerequisite.status == "fail") | .name] | join(" ")' <<<"$js")" "$step" \
    "... only step $step fails"
  is "$(jq -r --arg s "$step" '.steps[] | select(.name == $s) | .prerequisite.check // "null"' <<<"$js")" "$check" \
    "... mapped to check $check"
  like "$(jq -r --arg s "$step" '.steps[] | select(.name == $s) | .prerequisite.reason' <<<"$js")" "$ere" \
    "... reason: $ere"
  is "$(jq -r .ok <<<"$js")" false "... ok false"
  txt=$("$DRCTL" -c "$conf" "$kind" --dry-run 2>&1); rc=$?
  is "$rc" 1 "... plain output: exit 1 too"
  grep -A4 -E "^ *[0-9]+\. $step " <<<"$txt" | grep -qE "prerequisite: fail"
  ok $? "... plain output marks $step fail" || diag "$txt"
  is "$(tail -n 1 <<<"$txt")" "dry run: nothing was run or changed" "... and still ran nothing"
}

c=$(variant no_start app.start="$TEST_TMP/gone/appctl start $FO_APP_DIR")
expect_fail "$c" failover start-app app-commands "gone/appctl is not an executable file" "start command removed"

c=$(variant missing_env app.env_file="$TEST_TMP/nodir/app.env")
expect_fail "$c" failover switch-env env-file "nodir/app.env is missing" "env file in a missing directory"

if id nobody >/dev/null 2>&1 && runuser -u nobody -- test -x "$DRCTL" -a -r "$GOOD"; then
  js=$(runuser -u nobody -- "$DRCTL" -c "$GOOD" failover --dry-run --json 2>/dev/null); rc=$?
  is "$rc" 1 "env file not writable by the user running drctl (nobody): exit 1"
  is "$(jq -r '.steps[] | select(.name == "switch-env") | .prerequisite.status' <<<"$js")" fail \
    "... switch-env fails" || diag "$js"
else
  skip "env file not writable: cannot run drctl as nobody" "runuser/nobody unavailable"
  skip "env file not writable" "runuser/nobody unavailable"
fi

after=$(snapshot)
is "$after" "$before" "after the broken variants: still nothing changed" || diag "$(diff <(echo "$before") <(echo "$after"))"
fo_app_running; ok $? "the app still runs"
done_testing
