#!/usr/bin/env bash
# t_slow_clients.sh - drd's HTTP front against slow clients (issue 11 #6):
# 60 connections (10 from each of 127.0.0.2..7) trickle one header line
# every 2 s and never finish their request. The whole request has 10 s from
# accept, so the server closes every one of them within 15 s, while the
# page (GET / from 127.0.0.1) keeps answering within 2 s. One address gets
# at most 32 connections at once. No database needed: the targets are
# closed ports.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require
TRICKLE=$DRD_TOOLS/trickle
[ -x "$TRICKLE" ] || bail_out "$TRICKLE is not built (run make)"

PORT=$(free_port) || bail_out "no free port"
DEAD=$(free_port) || bail_out "no free port"
BASE=http://127.0.0.1:$PORT
openssl rand -hex 32 >"$TEST_TMP/token" && chmod 600 "$TEST_TMP/token" || bail_out "token"
cat >"$TEST_TMP/drd.conf" <<EOF || bail_out "config"
[primary]
url = postgresql://postgres@127.0.0.1:$DEAD/postgres
[backup]
url = postgresql://postgres@127.0.0.2:$DEAD/postgres
[failover]
policy = manual
runbook = $DRD_ROOT/runbooks/failover.ini
[failback]
runbook = $DRD_ROOT/runbooks/failback.ini
[app]
stop = true
start = true
[http]
socket = $TEST_TMP/drd.sock
listen = 127.0.0.1:$PORT
token_file = $TEST_TMP/token
web_root = $DRD_ROOT/web
[state]
db = $TEST_TMP/drd.db
[log]
level = info
EOF
drd_start "$TEST_TMP/drd.conf" || bail_out "drd did not start"
is "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$BASE/")" 200 "GET / answers before the slow clients"

# ------------------------------------------------ 60 trickling clients ----
OUT=$TEST_TMP/trickle.out
"$TRICKLE" -n 60 -i 2000 -t 15000 -s 127.0.0.2 -k 10 127.0.0.1 "$PORT" >"$OUT" 2>&1 &
TPID=$!
proc_track "$TPID"
poll_until 10 grep -q '^connected 60' "$OUT"; ok $? "60 trickling connections are open" || diag_file "$OUT" 5

# The page, from another address, every 250 ms while they trickle.
samples=0 slow=0 bad=0 worst=0
while proc_alive "$TPID"; do
  read -r code secs < <(curl -s -m 5 -o /dev/null -w '%{http_code} %{time_total}\n' "$BASE/")
  ms=$(_secs_to_ms "${secs:-5}")
  samples=$((samples + 1))
  [ "$code" = 200 ] || bad=$((bad + 1))
  (( ms < 2000 )) || slow=$((slow + 1))
  (( ms > worst )) && worst=$ms
  (( samples < 200 )) || break
  sleep 0.25
done
wait "$TPID"; trc=$?
result=$(grep '^closed' "$OUT")
diag "trickle: $result; page: $samples samples, worst ${worst} ms"
is "$trc" 0 "the server closed every trickling connection within 15 s ($result)"
like "$result" "^closed 60/60 " "... all 60 of them"
min=$(awk '/^closed/ {print $3 == "min_ms" ? $4 : -1}' "$OUT")
cmp_ok "${min:--1}" -ge 8000 "... none before its 10 s (they were served, not refused: min ${min} ms)"
cmp_ok "$samples" -ge 10 "the page was asked $samples times meanwhile"
is "$bad" 0 "... and answered 200 every time"
is "$slow" 0 "... within 2 s every time (worst ${worst} ms)"
is "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$BASE/")" 200 "GET / answers after the slow clients"
m=$(curl -s -m 5 "$BASE/metrics" | awk '/^drd_http_slow_connections_closed_total / {print $2}')
cmp_ok "${m:-0}" -ge 60 "/metrics counts the closed slow connections ($m)"
like "$(grep 'slow connection' "$DRD_LOG")" "closed [0-9]+ slow connection" "drd logs that it closed slow connections"
cmp_ok "$(grep -c 'slow connection' "$DRD_LOG")" -le 2 "... in one or two lines, not one per connection"
lines=$(grep -c 'http:' "$DRD_LOG")
cmp_ok "$lines" -le 25 "the slow clients did not flood the log ($lines http lines)" ||
  diag "$(grep 'http:' "$DRD_LOG" | tail -5)"

# ------------------------------------------------ per-address limit ----
# 40 connections from one address: 32 are served, 8 are closed at once.
"$TRICKLE" -n 40 -i 2000 -t 3000 -s 127.0.0.50 127.0.0.1 "$PORT" >"$OUT" 2>&1
result=$(grep '^closed' "$OUT")
like "$result" "^closed 8/40 " "one address gets 32 connections at once, the other 8 are closed ($result)"
is "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$BASE/")" 200 "... while another address is served"

drd_running; ok $? "drd is still running"
done_testing
