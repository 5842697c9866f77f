#!/usr/bin/env bash
# t_drctl_tty.sh - drctl never prints the daemon's text raw to a terminal
# (issue 11 item 8). An API client starts a failover whose reason holds
# ESC [2K and CR (erase the line, rewrite it: a fake "requested by socket")
# and an 8-bit CSI (U+009B), and rejects the run's approval with an OSC
# title sequence and a BEL. `drctl status` and `drctl history` show them as
# visible escapes, with no control byte but \n in their output; `--json`
# gives the exact strings back.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require
command -v jq >/dev/null || bail_out "jq is not installed"
command -v curl >/dev/null || bail_out "curl is not installed"

for c in primary backup; do pg_new $c >/dev/null && pg_start $c || bail_out "cluster $c"; done
RB=$TEST_TMP/failover.ini
cat >"$RB" <<EOF
[step ask]
action = approve
prompt = go on?
EOF
drd_config "$TEST_TMP/drd.conf" failover.runbook="$RB" || bail_out "config"
drd_start || bail_out "drd did not start"
drd_wait_healthy 20; ok $? "both targets healthy"

REASON=$'\e[2K\rfailover requested by socket \xc2\x9b31m(red)'
body=$(jq -cn --arg r "$REASON" '{reason: $r}')
r=$(drd_api /api/failover -X POST -H 'Content-Type: application/json' --data-binary "$body")
like "${r##*$'\n'}" "HTTP 20[02]" "an API client starts a failover with escapes in its reason" || diag "$r"
waiting() { [ "$(drd_json '.approvals | length')" -gt 0 ]; }
poll_until 15 waiting; ok $? "the run waits for its approval"

# raw_controls TEXT: 1 if TEXT holds a control byte (but \n) or a C1 control, else 0.
raw_controls() { printf '%s' "$1" | LC_ALL=C tr -d '\n' | LC_ALL=C grep -caP '[\x00-\x1f\x7f]|\xc2[\x80-\x9f]'; }

out=$(drctl status 2>&1)
is "$(raw_controls "$out")" 0 "drctl status: no raw control byte"
js=$(drctl status --json 2>/dev/null)
is "$(jq -r '.run.reason' <<<"$js")" "$REASON" "drctl status --json: the exact reason" || diag "$js"

out=$(drctl history 2>&1)
is "$(raw_controls "$out")" 0 "drctl history: no raw control byte" || diag "$(printf '%q' "$out")"
like "$out" 'by socket +\\x1b\[2K\\x0dfailover requested by socket \\u009b31m\(red\)' \
  "... the reason shown with visible escapes" || diag "$out"
js=$(drctl history --json 2>/dev/null)
is "$(jq -r '.runs[0].reason' <<<"$js")" "$REASON" "drctl history --json: the exact reason"

# An approval rejected with a title-setting OSC and a BEL.
aid=$(drd_json '.approvals[0].id')
REJECT=$'\e]0;pwned\a\e[1A\e[2Kall good'
out=$(drctl reject "$aid" --reason "$REJECT" 2>&1)
is "$(raw_controls "$out")" 0 "drctl reject: no raw control byte while it follows the run" ||
  diag "$(printf '%q' "$out")"
run_over() { [ "$(drd_json .run)" = null ]; }
poll_until 15 run_over; ok $? "the run ends"
out=$(drctl history 2>&1)
is "$(raw_controls "$out")" 0 "drctl history after the reject: no raw control byte" ||
  diag "$(printf '%q' "$out")"
js=$(drctl history --json 2>/dev/null)
jq -e --arg r "$REJECT" '[.. | strings | select(contains($r))] | length > 0' <<<"$js" >/dev/null
ok $? "drctl history --json: the reject reason, exact" || diag "$js"
jq -e --arg r "$REASON" '[.. | strings | select(contains($r))] | length > 0' <<<"$js" >/dev/null
ok $? "... and the failover's reason"
done_testing
