#!/usr/bin/env bash
# t_login_throttle.sh - wrong tokens against drd's TCP API (issue 11 #7):
# the right token always gets in at once, even after 20 wrong ones from the
# same address; wrong ones are throttled (429 with Retry-After) per address
# and, across many addresses (127.0.0.10.. via curl --interface), for
# everyone together. The same holds for the bearer token. No database
# needed: the targets are closed ports.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require

PORT=$(free_port) || bail_out "no free port"
DEAD=$(free_port) || bail_out "no free port"
BASE=http://127.0.0.1:$PORT
TOKEN=$(openssl rand -hex 32) || bail_out "openssl"
printf '%s\n' "$TOKEN" >"$TEST_TMP/token" && chmod 600 "$TEST_TMP/token" || bail_out "token"
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
[state]
db = $TEST_TMP/drd.db
[log]
level = info
EOF
drd_start "$TEST_TMP/drd.conf" || bail_out "drd did not start"

H=$TEST_TMP/headers
# login FROM TOKEN: POST /api/login from source address FROM; prints the
# status code (headers in $H).
login() {
  curl -s -m 5 --interface "$1" -D "$H" -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary "{\"token\":\"$2\"}" "$BASE/api/login"
}
# bearer FROM TOKEN: GET /api/status with the bearer token.
bearer() {
  curl -s -m 5 --interface "$1" -D "$H" -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer $2" "$BASE/api/status"
}
retry_after() { grep -i '^Retry-After:' "$H" | head -n 1 | tr -dc '0-9'; }

# ------------------------------------------------- one address ----
codes=() ra_ok=1
for i in $(seq 1 20); do
  c=$(login 127.0.0.1 "wrong-$i-$TOKEN")
  codes+=("$c")
  if [ "$c" = 429 ]; then ra=$(retry_after); (( ${ra:-0} >= 1 )) || ra_ok=0; fi
done
diag "20 wrong logins from 127.0.0.1: ${codes[*]}"
n401=$(printf '%s\n' "${codes[@]}" | grep -c '^401$')
n429=$(printf '%s\n' "${codes[@]}" | grep -c '^429$')
is "$n401" 5 "20 wrong logins from one address: the first 5 are answered 401"
is "$n429" 15 "... the other 15 are throttled: 429"
is "$ra_ok" 1 "... each 429 with a Retry-After of at least 1 s"
t0=$(now_ms)
is "$(login 127.0.0.1 "$TOKEN")" 200 "then the right token from the same address: 200 at once"
cmp_ok $(( $(now_ms) - t0 )) -lt 1000 "... in under a second"
grep -qi '^Set-Cookie: drd_session=' "$H"; ok $? "... with a session cookie"
is "$(login 127.0.0.1 "wrong-again")" 429 "a wrong token afterwards is still throttled (no reset by a login)"
is "$(bearer 127.0.0.1 "wrong-bearer")" 429 "a wrong bearer token from that address: 429"
ra=$(retry_after); (( ${ra:-0} >= 1 )); ok $? "... with Retry-After"
is "$(bearer 127.0.0.1 "$TOKEN")" 200 "the right bearer token from that address: 200"

# ------------------------------------------------- many addresses ----
# Up to 3 wrong logins from each of 127.0.0.10.. (below the per-address
# budget of 5) until one is refused: the global budget is spent.
glob=0 tries=0 from=
for oct in $(seq 10 60); do
  for k in 1 2 3; do
    tries=$((tries + 1))
    c=$(login "127.0.0.$oct" "wrong-$oct-$k")
    if [ "$c" = 429 ]; then glob=1; from=127.0.0.$oct; break 2; fi
    [ "$c" = 401 ] || { diag "unexpected $c from 127.0.0.$oct"; break 2; }
  done
done
is "$glob" 1 "wrong logins spread over many addresses are throttled too (429 after $tries from $from)"
cmp_ok "$tries" -le 40 "... after at most 40 of them"
# The global budget refills one attempt every 3 s: on a loaded machine the
# next curl may come after a refill. Spend it again (fresh addresses, so
# only the global budget refuses) right before each fresh attempt.
spend_global() {
  local oct k c
  for oct in $(seq 100 180); do
    for k in 1 2 3; do
      c=$(login "127.0.0.$oct" "spend-$oct-$k")
      [ "$c" = 429 ] && return 0
    done
  done
  return 1
}
fresh_login=0 fresh_bearer=0
for attempt in 1 2 3; do
  c=$(login 127.0.0.99 "wrong-fresh")
  [ "$c" = 429 ] && { fresh_login=1; ra=$(retry_after); break; }
  diag "attempt $attempt: $c (the global budget refilled meanwhile); spending it again"
  spend_global
done
is "$fresh_login" 1 "a fresh address's first wrong login is then throttled: 429"
(( ${ra:-0} >= 1 )); ok $? "... with Retry-After"
for attempt in 1 2 3; do
  spend_global
  [ "$(bearer 127.0.0.98 "wrong-fresh")" = 429 ] && { fresh_bearer=1; break; }
done
is "$fresh_bearer" 1 "... and so is its first wrong bearer token"
is "$(login 127.0.0.99 "$TOKEN")" 200 "the right token from it still gets in: 200"
is "$(bearer 127.0.0.97 "$TOKEN")" 200 "... and the right bearer token: 200"

m=$(curl -s -m 5 "$BASE/metrics" | awk '/^drd_http_login_throttled_total / {print $2}')
cmp_ok "${m:-0}" -ge 17 "/metrics counts the throttled attempts ($m)"
n=$(grep -c 'failed login\|wrong bearer' "$DRD_LOG")
cmp_ok "$n" -le 30 "only the counted failures are logged ($n lines)"
grep -qF "$TOKEN" "$DRD_LOG" && fail "the token appears in drd's log" || pass "the token never appears in drd's log"
drd_running; ok $? "drd is still running"
done_testing
