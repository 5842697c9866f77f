#!/usr/bin/env bash
# t_text.sh - text that drd stores and shows stays whole, valid UTF-8 and
# masked (issue 11, items 3-5), through the real daemon:
#  - a run whose reason holds multi-byte characters and a password that
#    grows under masking ("password=x" -> "password=****") still appears in
#    /api/runs, /api/runs/ID, /api/status (while it runs), drctl history and
#    /api/events (with the events older than it);
#  - an exec step printing more than 64 KiB of multi-byte text that ends
#    with an error line keeps its last 64 KiB: the error line is there, with
#    a marker that the head was cut;
#  - a URL password with '?', '#' and a space: no part of it in
#    `drd -n -v`, in the switch-env step's note (API, SQLite), nor in the log;
#  - shell assignments (PGPASSWORD=, DB_PASSWORD=), curl -u user:pw and an
#    Authorization header printed by a step are masked in its output;
#  - after a SIGHUP, the new configuration's URL password is masked where a
#    step prints it bare.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"

# The app's env file sits in a directory with a long multi-byte name, so the
# switch-env note ("set DATABASE_URL=... in PATH") is long and multi-byte.
EDIR="$TEST_TMP/ünïcødé-€€€€€€€€€€-ünïcødé-€€€€€€€€€€-ünïcødé-€€€€€€€€€€-ünïcødé"
mkdir -p "$EDIR" || bail_out "mkdir $EDIR"
ENVF=$EDIR/app.env
printf 'APP=x\nDATABASE_URL=%s\n' "$(fo_app_url primary)" >"$ENVF"

# A password libpq accepts in a URL (it ends only at the '@').
PW='Sx?Q7#k Lm9'
BPORT=$(pg_port backup)
B_APP_URL="postgresql://app:$PW@127.0.0.1:$BPORT/appdb?application_name=shop_app"

RB=$TEST_TMP/failover.ini
cat >"$RB" <<'EOF'
[step big]
action  = exec
command = seq 1 3000 | sed 's/^/line ünïcødé €€€ ✓ /'; echo 'ERROR: the final line ✓'

[step creds]
action  = exec
command = echo 'PGPASSWORD=pg-sekret-1 DB_PASSWORD="db sekret 2" mytoken=tk-sekret-3'; echo curl -u alice:cu-sekret-4 http://x/; echo 'Authorization: Basic YmFzaWMtc2VrcmV0LTU='

[step switch]
action  = switch-env
target  = backup

[step wait]
action  = approve
prompt  = go on? ✓
EOF
drd_config "$TEST_TMP/drd.conf" failover.policy=manual failover.runbook="$RB" \
  primary.app_url="$(fo_app_url primary)" backup.app_url="$B_APP_URL" \
  app.env_file="$ENVF" || bail_out "drd_config"

# ------------------------------------------------------------ drd -n -v ----
out=$("$DRD" -c "$DRD_CONF" -n -v 2>&1); rc=$?
is "$rc" 0 "drd -n -v accepts a URL password with ?, # and a space" || diag "$out"
leak=0
for frag in 'Sx?Q' 'Q7#k' '#k L' 'Lm9'; do
  [[ "$out" == *"$frag"* ]] && { leak=1; diag "drd -n -v shows '$frag'"; }
done
is "$leak" 0 "drd -n -v prints no part of that password"
like "$out" "app:\\*\\*\\*\\*@127.0.0.1:$BPORT" "... and shows the URL with the password masked" || diag "$out"

# ---------------------------------------------------------- the run ----
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"

# 11 bytes + 81 x 3 bytes = 254 bytes (the API takes at most 255); masked it
# grows by 3 and no longer fits the 256-byte column: the cut falls inside a
# character unless it is made on a character boundary.
REASON="password=x $(printf '€%.0s' $(seq 1 81))"
out=$(fo_drctl failover --yes --reason "$REASON" 2>&1); rc=$?
RUN=$(fo_last_run)
is "$rc" 0 "drctl failover --yes: exit 0 (the run waits for the approve step)" || diag "$out"
cmp_ok "${RUN:-0}" -gt 0 "a run was created"
poll_until 20 fo_step_is "$RUN" wait state running; ok $? "the run reaches its approve step" || fo_diag

st=$(drd_api /api/status)
is "$(sed -n '$p' <<<"$st")" "HTTP 200" "/api/status answers"
is "$(sed '$d' <<<"$st" | jq -r '.run.id')" "$RUN" "/api/status shows the run while it runs" || diag "$st"
is "$(drctl status --json | jq -r '.run.id')" "$RUN" "drctl status --json shows it too"
reason=$(sed '$d' <<<"$st" | jq -r '.run.reason')
like "$reason" '^password=\*\*\*\* €€€' "its reason is masked (password=****), the text kept" || diag "$reason"

runs=$(drd_api /api/runs)
is "$(sed '$d' <<<"$runs" | jq -r --argjson id "$RUN" '[.runs[] | select(.id == $id)] | length')" 1 \
  "/api/runs lists the run" || diag "$runs"
one=$(drd_api "/api/runs/$RUN")
is "$(sed -n '$p' <<<"$one")" "HTTP 200" "/api/runs/$RUN answers 200" || diag "$(tail -c 300 <<<"$one")"
one=$(sed '$d' <<<"$one")
hist=$(drctl history 2>&1)
grep -qE "run $RUN +failover" <<<"$hist"; ok $? "drctl history lists the run" || diag "$hist"
hj=$(drctl history --json 2>/dev/null)
is "$(jq -r --argjson id "$RUN" '[.runs[] | select(.id == $id)] | length' <<<"$hj" 2>/dev/null)" 1 \
  "drctl history --json lists the run"

ev=$(drd_api '/api/events?since=0&limit=1000')
is "$(sed '$d' <<<"$ev" | jq -r '[.events[].id] | min')" 1 "/api/events?since=0 still starts at event 1" || diag "$ev"
is "$(sed '$d' <<<"$ev" | jq -r --arg r "run $RUN " '[.events[] | select(.message | startswith($r))] | length > 0')" \
  true "... and has the run's events"
ev=$(drd_api '/api/events')
is "$(sed '$d' <<<"$ev" | jq -r --arg r "run $RUN " '[.events[] | select(.message | startswith($r))] | length > 0')" \
  true "/api/events (newest) has the run's events"

# ------------------------------------------------------- output tail ----
big=$(jq -r '.steps[] | select(.name == "big") | .output' <<<"$one")
like "$(tail -n 1 <<<"$big")" '^ERROR: the final line ✓$' "exec output > 64 KiB keeps its last line" \
  || diag "$(tail -c 200 <<<"$big")"
like "$(head -n 1 <<<"$big")" 'cut' "... after a marker line that the head was cut" || diag "$(head -c 200 <<<"$big")"
like "$big" 'line ünïcødé €€€ ✓ 2999' "... and the lines before the last one"
n=$(printf '%s' "$big" | wc -c)
(( n > 60000 && n <= 65536 )); ok $? "... about 64 KiB of it ($n bytes)"
dbout=$(fo_step "$RUN" big output)
like "$(tail -n 1 <<<"$dbout")" '^ERROR: the final line ✓$' "the stored output (SQLite) ends with the last line too"

# ------------------------------------------------------------ masking ----
creds=$(jq -r '.steps[] | select(.name == "creds") | .output' <<<"$one")
leak=0
for frag in pg-sekret-1 'db sekret 2' 'sekret 2' tk-sekret-3 cu-sekret-4 YmFzaWMtc2VrcmV0LTU; do
  [[ "$creds" == *"$frag"* ]] && { leak=1; diag "step output shows '$frag'"; }
done
is "$leak" 0 "PGPASSWORD=, DB_PASSWORD=\"...\", *token=, curl -u, Authorization: Basic are masked in step output" \
  || diag "$creds"
like "$creds" 'curl -u alice:\*\*\*\* http://x/' "... curl -u keeps the user" || diag "$creds"

note=$(jq -r '.steps[] | select(.name == "switch") | .detail' <<<"$one")
like "$note" "app:\\*\\*\\*\\*@127.0.0.1:$BPORT" "the switch-env note shows the URL masked" || diag "$note"
dbnote=$(fo_step "$RUN" switch error)
leak=0
for frag in 'Sx?Q' 'Q7#k' '#k L' 'Lm9'; do
  [[ "$note$dbnote" == *"$frag"* ]] && { leak=1; diag "the switch-env note shows '$frag'"; }
done
is "$leak" 0 "the switch-env note (API and SQLite) has no part of the password"
grep -q 'Lm9\|Q7#k\|Sx?Q' "$DRD_LOG"; is "$?" 1 "the log has no part of it either"
grep -q 'sekret' "$DRD_LOG"; is "$?" 1 "nor any of the step's secrets"
grep -qF "postgresql://app:$PW@" "$ENVF"; ok $? "the env file got the real URL" || diag "$(sed "s/:[^@]*@/:…@/" "$ENVF")"

# Every JSON drd served was valid: the run's bytes never break a view.
aid=$(fo_pending_approval "")
out=$(fo_drctl reject "${aid:-0}" --reason "non ✓ $(printf 'é%.0s' $(seq 1 120))" 2>&1); rc=$?
like "$out" "approval ${aid:-?} rejected" "drctl reject with a long multi-byte reason" || diag "$out"
fo_wait_run_state 10 "$RUN" aborted; ok $? "the run ends (aborted)" || diag "$(fo_run_state "$RUN")"
runs=$(drd_api /api/runs)
is "$(sed '$d' <<<"$runs" | jq -r --argjson id "$RUN" '[.runs[] | select(.id == $id)] | length')" 1 \
  "/api/runs still lists the finished run"

# ------------------------------------------------ secrets after a reload ----
# A new URL password (SIGHUP) is masked wherever it shows up bare, not only
# in a URL: it is registered when the new configuration is accepted.
PW2='R3load-Pw-7731'
cat >"$RB" <<EOF
[step echo]
action  = exec
command = echo "pw is $PW2, again:$PW2."
EOF
drd_config "$TEST_TMP/drd.conf" failover.policy=manual failover.runbook="$RB" failback.runbook="$RB" \
  primary.app_url="$(fo_app_url primary)" \
  backup.app_url="postgresql://app:$PW2@127.0.0.1:$BPORT/appdb" \
  app.env_file="$ENVF" || bail_out "drd_config"
mark=$(drd_log_mark)
drd_signal HUP
poll_until 10 drd_log_has "$mark" "reload: configuration reloaded"; ok $? "SIGHUP: the new configuration is accepted"
out=$(fo_drctl failback --yes 2>&1)   # the app is on the backup since the first run
RUN2=$(fo_last_run)
isnt "$RUN2" "$RUN" "a failback starts" || diag "$out"
poll_until 10 fo_run_finished "$RUN2"; ok $? "a run after the reload finishes" || diag "$out"
o2=$(fo_step "$RUN2" echo output)
like "$o2" '^pw is \*\*\*\*, again:\*\*\*\*\.$' "the new password is masked where it shows bare" || diag "$o2"
grep -q "$PW2" "$DRD_LOG"; is "$?" 1 "... and is not in the log"

done_testing
