#!/usr/bin/env bash
# t_bad_input.sh - bad runbooks and bad API requests get clear errors and
# the daemon keeps running:
#  - `drd -n` with a failover (or failback) runbook that has an unknown
#    action, a missing key, an unknown variable, a duplicate step name, an
#    unknown key, a bad value -> FILE:LINE: message, exit 2; a runbook
#    broken after the start -> the run is refused with that message; a
#    SIGHUP with a broken runbook keeps the old configuration;
#  - API: unknown run (404), a bad run id (400), approving an approval
#    already decided (drctl exits 1, "already approved"), an unknown
#    approval, malformed JSON / a non-object / a bad field (400), a body
#    over 64 KiB (413), no or a wrong token over TCP (401, also for POST),
#    wrong methods (405), failback while on the primary (refused);
#    none of them starts a run, and `drctl status` still works.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
RB=$TEST_TMP/failover.ini
CONF=$TEST_TMP/drd.conf
TOKEN="tok-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$TOKEN" >"$TEST_TMP/token"; chmod 600 "$TEST_TMP/token"
HPORT=$(free_port) || bail_out "no free port"
conf() { fo_config "$CONF" failover.policy=manual failover.runbook="$RB" \
           http.listen="127.0.0.1:$HPORT" http.token_file="$TEST_TMP/token" "$@"; }

# check_bad NAME LINE ERE: `drd -n` on the runbook just written to $RB
# exits 2 and reports $RB:LINE: with a message matching ERE.
check_bad() {
  local out rc
  out=$("$DRD" -c "$CONF" -n 2>&1); rc=$?
  is "$rc" 2 "$1: drd -n exits 2" || diag "$out"
  like "$out" "$RB:$2: .*$3" "$1: reported as FILE:$2: message" || diag "$out"
}

conf || bail_out "drd_config"
# ------------------------------------------------------------ runbooks ----
printf '[step a]\naction = exec\ncommand = true\n\n[step b]\naction = frobnicate\n' >"$RB"
check_bad "unknown action" 6 'unknown action "frobnicate"'
printf '[step a]\naction = exec\ncommand = true\n\n[step b]\naction = exec\ntimeout = 5s\n' >"$RB"
check_bad "missing key (exec without command)" 5 'command'
printf '[step a]\naction = exec\ncommand = ${app.stop} && ${app.nope}\n' >"$RB"
check_bad "unknown variable" 3 'app\.nope'
printf '[step a]\naction = exec\ncommand = ${nodot}\n' >"$RB"
check_bad "malformed variable" 3 'nodot'
printf '[step a]\naction = exec\ncommand = true\n\n[step a]\naction = exec\ncommand = false\n' >"$RB"
check_bad "duplicate step name" 5 'duplicate step name "a"'
printf '[step a]\naction = exec\ncommand = true\ncolour = blue\n' >"$RB"
check_bad "unknown key" 4 'unknown key "colour"'
printf '[step a]\naction = exec\ncommand = true\non_failure = maybe\n' >"$RB"
check_bad "bad on_failure" 4 'on_failure'
printf '[step a]\naction = switch-env\ntarget = moon\n' >"$RB"
check_bad "bad target" 3 'moon'
printf '[stp a]\naction = exec\ncommand = true\n' >"$RB"
check_bad "not a [step NAME] section" 1 'section'
# the failback runbook is checked too
printf '[step a]\naction = exec\ncommand = true\n' >"$RB"
printf '[step back]\naction = wait-healthy\ntarget = primary\nretries = lots\n' >"$TEST_TMP/failback.ini"
conf failback.runbook="$TEST_TMP/failback.ini"
out=$("$DRD" -c "$CONF" -n 2>&1); rc=$?
is "$rc" 2 "a bad failback runbook: drd -n exits 2"
like "$out" "$TEST_TMP/failback.ini:4: " "... reported as failback.ini:4:" || diag "$out"
# and a good pair
conf
out=$("$DRD" -c "$CONF" -n 2>&1); rc=$?
is "$rc" 0 "a valid runbook: drd -n exits 0" || diag "$out"
like "$out" "configuration OK" "... configuration OK"

# a runbook with an approve step, for the approval cases below
cat >"$RB" <<'EOF'
[step ask]
action = approve
prompt = go on?

[step done]
action = exec
command = true
EOF
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"
runs0=$(fo_runs)

# a runbook broken while drd runs: the run is refused, with the message
cp "$RB" "$TEST_TMP/good.ini"
printf '[step a]\naction = exec\ncommand = true\nbogus = 1\n' >"$RB"
out=$(fo_drctl failover --yes 2>&1); rc=$?
is "$rc" 1 "failover with a runbook broken since the start: drctl exits 1" || diag "$out"
like "$out" "$RB:4:" "... and shows FILE:LINE" || diag "$out"
is "$(fo_runs)" "$runs0" "... no run was created"
# SIGHUP with it: the old configuration stays
mark=$(drd_log_mark)
drd_signal HUP
poll_until 10 drd_log_has "$mark" "$RB:4:"
ok $? "SIGHUP with a broken runbook: the error is logged as FILE:LINE" || diag "$(drd_log_since "$mark")"
drd_running; ok $? "... and drd keeps running"
cp "$TEST_TMP/good.ini" "$RB"

# ------------------------------------------------------------------ API ----
# api METHOD PATH [CURL ARGS]: over the unix socket; sets CODE and BODY.
api() {
  local m=$1 p=$2 r; shift 2
  r=$(curl -s -m 10 --unix-socket "$DRD_SOCK" -X "$m" -w '\n%{http_code}' "$@" "http://localhost$p")
  CODE=${r##*$'\n'}; BODY=${r%$'\n'*}
}
api GET /api/runs/999
is "$CODE" 404 "GET /api/runs/999: 404"
like "$BODY" '"error"' "... with a JSON error"
api GET /api/runs/abc
is "$CODE" 400 "GET /api/runs/abc: 400"
api GET /api/requests/12345
is "$CODE" 404 "GET /api/requests/12345 (unknown): 404"
api GET /api/nothing-here
is "$CODE" 404 "unknown route: 404"

# approvals: approve one, then approve/reject it again
out=$(fo_drctl failover --yes 2>&1)
aid=$(fo_pending_approval step)
[ -n "$aid" ]; ok $? "a run waits on an approve step (approval ${aid:-?})" || diag "$out"
run=$(fo_last_run)
out=$(fo_drctl approve "${aid:-0}" 2>&1)
like "$out" "run $run succeeded" "drctl approve ${aid:-?}: the run succeeds" || diag "$out"
out=$(fo_drctl approve "${aid:-0}" 2>&1); rc=$?
is "$rc" 1 "approving it again: drctl exits 1"
like "$out" "already approved" "... 'already approved'" || diag "$out"
out=$(fo_drctl reject "${aid:-0}" 2>&1); rc=$?
is "$rc" 1 "rejecting it now: drctl exits 1"
like "$out" "already approved" "... 'already approved'" || diag "$out"
out=$(fo_drctl approve 424242 2>&1); rc=$?
is "$rc" 1 "approving an unknown approval: exit 1"
like "$out" "424242" "... the message names it" || diag "$out"
out=$(fo_drctl approve abc 2>&1); rc=$?
is "$rc" 2 "drctl approve abc: usage error, exit 2"
api POST "/api/approvals/${aid:-0}/approve" -H 'Content-Type: application/json' -d '{}'
is "$CODE" 202 "POST approve over the API: 202 (queued)..."
req=$(jq -r .request_id <<<"$BODY" 2>/dev/null)
poll_until 10 eval 'api GET /api/requests/${req:-0}; [ "$CODE" = 200 ]'
is "$(jq -r .state <<<"$BODY" 2>/dev/null)" refused "... and then refused (GET /api/requests/${req:-?})" || diag "$BODY"
like "$(jq -r .error <<<"$BODY" 2>/dev/null)" "already approved" "... 'already approved'"
api POST "/api/approvals/${aid:-0}/frobnicate" -d '{}'
is "$CODE" 404 "POST /api/approvals/ID/frobnicate: 404"
api POST "/api/approvals/${aid:-0}/reject" -H 'Content-Type: application/json' -d '{"choice":"skip"}'
is "$CODE" 400 "reject with a choice: 400"
api POST "/api/approvals/${aid:-0}/approve" -H 'Content-Type: application/json' -d '{"choice":"maybe"}'
is "$CODE" 400 "approve with an unknown choice: 400"
runs1=$(fo_runs)

# bodies
api POST /api/failover -H 'Content-Type: application/json' -d '{"reason": "x"'
is "$CODE" 400 "malformed JSON to POST /api/failover: 400"
like "$BODY" '"error"' "... with a JSON error: $BODY"
api POST /api/failover -H 'Content-Type: application/json' -d '[1, 2]'
is "$CODE" 400 "a JSON array instead of an object: 400"
api POST /api/failover -H 'Content-Type: application/json' -d '{"reason": 5}'
is "$CODE" 400 "reason not a string: 400"
head -c 70000 /dev/zero | tr '\0' a | sed 's/^/{"reason":"/; s/$/"}/' >"$TEST_TMP/big.json"
api POST /api/failover -H 'Content-Type: application/json' --data-binary "@$TEST_TMP/big.json"
is "$CODE" 413 "a 70 kB body: 413"
head -c 200000 /dev/zero | tr '\0' a >"$TEST_TMP/huge.bin"
api POST /api/failback -H 'Content-Type: application/json' --data-binary "@$TEST_TMP/huge.bin"
is "$CODE" 413 "a 200 kB body: 413"
api GET /api/failover
is "$CODE" 405 "GET /api/failover: 405"
api DELETE /api/runs
is "$CODE" 405 "DELETE /api/runs: 405"
api PUT "/api/approvals/${aid:-0}/approve" -d '{}'
is "$CODE" 405 "PUT /api/approvals/ID/approve: 405"
api POST /api/status -d '{}'
is "$CODE" 405 "POST /api/status: 405"

# TCP: token
T=http://127.0.0.1:$HPORT
tcp() { curl -s -m 10 -o /dev/null -w '%{http_code}' "$@"; }
is "$(tcp "$T/api/status")" 401 "TCP without a token: 401"
is "$(tcp -H "Authorization: Bearer nope" "$T/api/runs")" 401 "TCP with a wrong token: 401"
is "$(tcp -X POST -H 'Content-Type: application/json' -d '{}' "$T/api/failover")" 401 "TCP POST /api/failover without a token: 401"
is "$(tcp -X POST -d '{}' "$T/api/approvals/${aid:-0}/approve")" 401 "TCP POST approve without a token: 401"
is "$(tcp -H "Authorization: Bearer $TOKEN" "$T/api/runs/999")" 404 "TCP with the token, unknown run: 404"
is "$(tcp -H "Authorization: Bearer $TOKEN" -X POST -d '{bad' "$T/api/failover")" 400 "TCP with the token, malformed JSON: 400"
is "$(fo_runs)" "$runs1" "none of these bad requests started a run"

out=$(fo_drctl failback --yes 2>&1); rc=$?
is "$rc" 1 "failback while the app is on the primary: drctl exits 1"
like "$out" "already on the primary" "... refused: already on the primary" || diag "$out"

# ------------------------------------------------------- still alive ----
drd_running; ok $? "drd is still running"
out=$(drctl status 2>&1); rc=$?
is "$rc" 0 "drctl status works (exit 0)" || diag "$out"
is "$(drd_json '.daemon + " " + .active')" "running primary" "status: running, active=primary"
is "$(fo_runs)" "$runs1" "runs: only the one approved above"

done_testing
