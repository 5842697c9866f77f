#!/usr/bin/env bash
# t_browser.sh - the page in a real browser: two clusters, the sample app,
# drd with policy = approve and the page on a loopback port; the browser
# (tests/browser/scenario.mjs: headless Chromium driven by playwright-core)
# logs in and sees both databases healthy; this script then stops the
# primary; the browser sees the approval appear, clicks Approve, and sees
# the run succeed and the active side become the backup. Screenshots go to
# build/test-artifacts/. The decision is recorded as made by the browser's
# session. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

BROWSER_DIR=$DRD_ROOT/tests/browser
ART=$DRD_ROOT/build/test-artifacts
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
command -v node >/dev/null || bail_out "node is not installed (make deps: nodejs)"
[ -x "$CHROMIUM" ] || bail_out "$CHROMIUM is not installed (make deps: chromium)"
if [ ! -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ]; then
  # the version pinned in package-lock.json, from the npm registry
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error) >"$TEST_TMP/npm.log" 2>&1 ||
    { diag_file "$TEST_TMP/npm.log"; bail_out "npm ci in tests/browser failed"; }
fi

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$TOKEN" >"$TEST_TMP/token" && chmod 600 "$TEST_TMP/token"
PORT=$(free_port) || bail_out "no free port"
URL=http://127.0.0.1:$PORT/
fo_config "$TEST_TMP/drd.conf" failover.policy=approve http.listen="127.0.0.1:$PORT" \
  http.token_file="$TEST_TMP/token" http.web_root="$DRD_ROOT/web" || bail_out "drd_config"
# (a start that fails under load is retried once, with the app's log shown)
fo_app_start || { diag_file "$FO_APP_LOG" 10; sleep 1; fo_app_start; }
ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both databases healthy"

mkdir -p "$ART"
rm -f "$ART"/browser-*.png
READY=$TEST_TMP/browser-ready
NODE_OUT=$TEST_TMP/scenario.out
t0=$(now_ms)
DRD_READY_FILE=$READY CHROMIUM=$CHROMIUM timeout -k 5 90 \
  node "$BROWSER_DIR/scenario.mjs" "$URL" "$TOKEN" "$ART" >"$NODE_OUT" 2>&1 &
NODE_PID=$!
proc_track "$NODE_PID"

# The browser says when it has seen both databases healthy.
if poll_until 40 test -e "$READY"; then
  pass "the browser is logged in and sees both databases healthy"
  pg_crash primary || bail_out "cannot stop the primary"
  pass "the primary is stopped (pg_ctl stop -m immediate)"
else
  fail "the browser did not get to the healthy page"
fi
wait "$NODE_PID"; node_rc=$?
elapsed=$(( $(now_ms) - t0 ))

# The browser's TAP lines, renumbered into ours.
while IFS= read -r line; do
  case $line in
    "ok "*)     pass "browser: ${line#ok * - }" ;;
    "not ok "*) fail "browser: ${line#not ok * - }" ;;
    "#"*)       diag "${line#\# }" ;;
    1..*)       ;;
    *)          [ -n "$line" ] && diag "$line" ;;
  esac
done <"$NODE_OUT"
is "$node_rc" 0 "the browser scenario exits 0"
cmp_ok "$elapsed" -le 60000 "the browser part took at most 60 s (${elapsed} ms)"
[ "$node_rc" = 0 ] || fo_diag

# What the daemon recorded.
run=$(fo_last_run)
is "$(drd_sql "SELECT kind || ' ' || state FROM runs WHERE id = ${run:-0}")" "failover succeeded" \
  "run ${run:-?}: failover succeeded"
decided=$(drd_sql "SELECT decided_by FROM approvals WHERE kind = 'policy' AND state = 'approved' ORDER BY id DESC LIMIT 1")
like "$decided" '^session:[0-9a-f]{8}$' "the approval was decided by the browser's session ($decided)"
is "$(drd_sql "SELECT started_by FROM runs WHERE id = ${run:-0}")" "$decided" "... which the run records as its starter"
is "$(fo_env_url)" "$(fo_app_url backup)" "the env file points at the backup"
is "$(drd_json .active)" backup "drctl status: active = backup"
for f in browser-1-healthy browser-2-approval browser-3-failed-over browser-4-phone; do
  [ -s "$ART/$f.png" ]; ok $? "screenshot build/test-artifacts/$f.png"
done

done_testing
