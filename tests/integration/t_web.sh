#!/usr/bin/env bash
# t_web.sh - drd's HTTP server over TCP against real clusters: the page and
# its assets with their security headers, the API refused without the
# bearer token, the page's login, session cookie and CSRF rules (with curl),
# /metrics, and bad HTTP - oversized bodies, malformed JSON, a garbage
# request line, traversal paths, a client that stalls mid-request - after
# which drd still answers and its memory has not grown.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require

pg_new primary && pg_start primary || bail_out "cannot start the primary"
pg_new backup && pg_start backup || bail_out "cannot start the backup"

TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOKEN_FILE=$TEST_TMP/token
printf '%s\n' "$TOKEN" >"$TOKEN_FILE" && chmod 600 "$TOKEN_FILE"
PORT=$(free_port) || bail_out "no free port"
BASE=http://127.0.0.1:$PORT
drd_config "$TEST_TMP/drd.conf" http.listen="127.0.0.1:$PORT" http.token_file="$TOKEN_FILE" \
  http.web_root="$DRD_ROOT/web" log.level=info || bail_out "drd_config"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both databases healthy"

H=$TEST_TMP/headers
B=$TEST_TMP/body
JAR=$TEST_TMP/cookies

# get PATH [CURL ARGS...]: GET over TCP; headers in $H, body in $B; prints
# the status code.
get() {
  local path=$1; shift
  curl -s -m 10 --path-as-is -D "$H" -o "$B" -w '%{http_code}' "$@" "$BASE$path"
}
# post PATH BODY [CURL ARGS...]
post() {
  local path=$1 body=$2; shift 2
  curl -s -m 10 --path-as-is -D "$H" -o "$B" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary "$body" "$@" "$BASE$path"
}
auth=(-H "Authorization: Bearer $TOKEN")
# header NAME: its value in the last response (first occurrence).
header() { grep -i "^$1:" "$H" | head -n 1 | cut -d: -f2- | sed 's/^ *//; s/\r$//'; }

# ------------------------------------------------------------ the page ----
is "$(get /)" 200 "GET / without a token: 200 (the page is public)"
is "$(header Content-Type)" "text/html; charset=utf-8" "... text/html"
csp=$(header Content-Security-Policy)
like "$csp" "default-src 'self'" "... CSP default-src 'self'"
like "$csp" "script-src 'self'" "... CSP script-src 'self'"
like "$csp" "frame-ancestors 'none'" "... CSP frame-ancestors 'none'"
like "$csp" "base-uri 'none'" "... CSP base-uri 'none'"
unlike "$csp" "unsafe-inline|unsafe-eval" "... CSP allows no inline script or eval"
is "$(header X-Content-Type-Options)" nosniff "... X-Content-Type-Options: nosniff"
is "$(header Referrer-Policy)" no-referrer "... Referrer-Policy: no-referrer"
is "$(header Cache-Control)" no-cache "... Cache-Control: no-cache"
cmp -s "$B" "$DRD_ROOT/web/index.html"; ok $? "... the body is web/index.html"
unlike "$(tr -d '\n' <"$B")" "<script[^>]*>[^<]" "index.html has no inline script"
unlike "$(cat "$B")" " style=| on[a-z]+=" "index.html has no inline style or event handler"
for f in app.js:text/javascript style.css:text/css favicon.svg:image/svg+xml; do
  name=${f%%:*}; type=${f#*:}
  code=$(get "/$name")
  is "$code" 200 "GET /$name: 200"
  [[ "$(header Content-Type)" == "$type"* ]]; ok $? "... Content-Type $type"
  cmp -s "$B" "$DRD_ROOT/web/$name"; ok $? "... the body is web/$name"
  is "$(header X-Content-Type-Options)" nosniff "... nosniff"
done
etag=$(get / >/dev/null; header ETag)
is "$(get / -H "If-None-Match: $etag")" 304 "a revalidation with the ETag: 304"
is "$(get /index.html -I)" 200 "HEAD /index.html: 200"

# -------------------------------------------------- the API and tokens ----
is "$(get /healthz)" 200 "GET /healthz without a token: 200"
for p in /api/status /api/runs /api/events /api/incidents /api/session "/api/probes?target=primary"; do
  is "$(get "$p")" 401 "GET $p without a token: 401"
done
is "$(header WWW-Authenticate)" Bearer "... WWW-Authenticate: Bearer"
is "$(get /api/status -H 'Authorization: Bearer wrong')" 401 "GET /api/status with a wrong token: 401"
is "$(post /api/failover '{}')" 401 "POST /api/failover without a token: 401"
is "$(post /api/approvals/1/approve '{}')" 401 "POST /api/approvals/1/approve without a token: 401"
is "$(get /api/status "${auth[@]}")" 200 "GET /api/status with the bearer token: 200"
is "$(jq -r .active "$B")" primary "... a status document (active = primary)"
is "$(get "/api/probes?target=primary" "${auth[@]}")" 200 "GET /api/probes with the token: 200"
is "$(jq -r .target "$B")" primary "... per-minute probe statistics"

# ------------------------------------------------------------ /metrics ----
is "$(get /metrics)" 200 "GET /metrics (metrics = open): 200 without a token"
like "$(header Content-Type)" "^text/plain; version=0.0.4" "... Prometheus text format 0.0.4"
bad_lines=$(grep -v '^#' "$B" | grep -cvE '^[a-z_:][a-z0-9_:]*(\{[a-z_][a-z0-9_]*="([^"\\]|\\.)*"(,[a-z_][a-z0-9_]*="([^"\\]|\\.)*")*\})? [-+]?([0-9.eE+-]+|NaN|Inf)$')
is "$bad_lines" 0 "... every sample line parses" || grep -v '^#' "$B" | head -5 | while read -r l; do diag "$l"; done
# metric 'NAME{LABELS}': the value of that sample in $B.
metric() { awk -v n="$1" 'index($0, n " ") == 1 { print $NF; exit }' "$B"; }
is "$(metric 'drd_target_up{target="primary"}')" 1 "... drd_target_up{target=\"primary\"} 1"
is "$(metric 'drd_active{side="primary"}')" 1 "... drd_active{side=\"primary\"} 1"
is "$(metric 'drd_breaker_state{target="backup",state="closed"}')" 1 "... the backup's breaker closed"
like "$(grep '^drd_build_info{version="' "$B")" ' 1$' "... drd_build_info"
n1=$(metric drd_http_requests_total)
get /metrics >/dev/null
n2=$(metric drd_http_requests_total)
cmp_ok "${n2:-0}" -gt "${n1:-0}" "... drd_http_requests_total counts requests ($n1 -> $n2)"

# ---------------------------------------------- login, session, CSRF ----
rm -f "$JAR"
is "$(post /api/login '{"token":"not-the-token"}')" 401 "login with a wrong token: 401"
is "$(post /api/login "{\"token\":\"$TOKEN\"}" -H 'Origin: http://evil.example')" 403 \
  "login from another origin: 403"
is "$(post /api/login "{\"token\":\"$TOKEN\"}" -c "$JAR" -H "Origin: $BASE")" 200 "login with the token: 200"
cookie=$(header Set-Cookie)
like "$cookie" "^drd_session=[0-9a-f]{64};" "... sets drd_session (32 random bytes, hex)"
like "$cookie" "HttpOnly" "... HttpOnly"
like "$cookie" "SameSite=Strict" "... SameSite=Strict"
like "$cookie" "Path=/" "... Path=/"
CSRF=$(jq -r .csrf "$B")
like "$CSRF" "^[0-9a-f]{64}$" "... and returns a CSRF token"
SID=$(sed -n 's/^drd_session=\([0-9a-f]*\);.*/\1/p' <<<"$cookie")
is "$(get /api/status -b "$JAR")" 200 "GET /api/status with the session cookie: 200"
is "$(get /api/session -b "$JAR")" 200 "GET /api/session with the cookie: 200"
is "$(jq -r .csrf "$B")" "$CSRF" "... gives the same CSRF token back"
is "$(post /api/approvals/999999/reject '{}' -b "$JAR")" 403 "POST with the cookie but no CSRF token: 403"
is "$(post /api/approvals/999999/reject '{}' -b "$JAR" -H "X-CSRF-Token: ${CSRF//[0-9]/a}")" 403 \
  "POST with a wrong CSRF token: 403"
is "$(post /api/approvals/999999/reject '{}' -b "$JAR" -H "X-CSRF-Token: $CSRF" \
      -H 'Origin: http://evil.example')" 403 "POST with the right CSRF token from another origin: 403"
is "$(post /api/approvals/999999/reject '{}' -b "$JAR" -H "X-CSRF-Token: $CSRF" -H 'Origin: null')" 403 \
  "POST with Origin: null: 403"
is "$(post /api/failover '{}' -b "$JAR" -H "X-CSRF-Token: $CSRF" -H "Origin: $BASE" \
      -H 'Authorization: Bearer wrong')" 401 "a wrong bearer token is not rescued by the cookie: 401"
is "$(drd_sql "SELECT count(*) FROM requests")" 0 "none of these reached the daemon's queue"
code=$(post /api/approvals/999999/reject '{"reason":"test"}' -b "$JAR" -H "X-CSRF-Token: $CSRF" -H "Origin: $BASE")
is "$code" 202 "POST with the cookie, the CSRF token and our Origin: 202"
rid=$(jq -r .request_id "$B")
poll_until 10 eval '[ "$(get "/api/requests/$rid" "${auth[@]}")" = 200 ]'
ok $? "... request $rid was handled by the daemon"
is "$(jq -r '.actor + " " + .state' "$B")" "session:${SID:0:8} refused" \
  "... recorded as made by session:${SID:0:8} (refused: no such approval)"
is "$(post /api/logout '{}' -b "$JAR" -c "$JAR" -H "X-CSRF-Token: $CSRF")" 200 "logout: 200"
like "$(header Set-Cookie)" "^drd_session=;.*Max-Age=0" "... clears the cookie"
is "$(get /api/status -b "drd_session=$SID")" 401 "the old session cookie is refused after logout"

# ------------------------------------------------------------ bad HTTP ----
# A client that sends half a request and then nothing: cut off by the
# connection timeout (10 s). Runs in the background meanwhile.
slow_client() {
  local t0 line rc
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || { echo "connect-failed"; return; }
  printf 'GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' >&3
  t0=$(now_ms)
  # read returns at EOF (the server closed) or after 30 s
  IFS= read -r -t 30 -u 3 line; rc=$?
  exec 3<&-
  echo "$rc $(( $(now_ms) - t0 ))"
}
slow_client >"$TEST_TMP/slow.out" 2>&1 &
SLOW_PID=$!
proc_track $SLOW_PID

# raw REQUEST_TEXT: send it on a fresh connection, print the status line.
raw() {
  local line
  exec 4<>"/dev/tcp/127.0.0.1/$PORT" || return 1
  printf '%b' "$1" >&4
  IFS= read -r -t 5 -u 4 line
  exec 4<&-
  printf '%s\n' "${line%$'\r'}"
}
# raw_answer REQUEST_TEXT: like raw, but tries up to 3 connections: a
# server that answers an error and closes at once while part of the request
# is still unread may have its answer destroyed by the TCP reset.
raw_answer() {
  local i out
  for i in 1 2 3; do
    out=$(raw "$1")
    [ -n "$out" ] && break
  done
  printf '%s\n' "$out"
}

big=$TEST_TMP/big.json
{ printf '{"reason":"'; head -c 70000 /dev/zero | tr '\0' x; printf '"}'; } >"$big"
is "$(post /api/failover "@$big" "${auth[@]}")" 413 "a 70 KB body: 413"
is "$(post /api/failover "@$big" "${auth[@]}" -H 'Expect:')" 413 "... also without Expect: 100-continue"
is "$(post /api/failover '{"reason":' "${auth[@]}")" 400 "malformed JSON: 400"
is "$(post /api/failover '[1]' "${auth[@]}")" 400 "a JSON array instead of an object: 400"
is "$(post /api/login '{"token":' )" 400 "malformed JSON on login: 400"
is "$(get /nope "${auth[@]}")" 404 "unknown route: 404"
is "$(get /api/failover "${auth[@]}")" 405 "GET on a POST route: 405"
is "$(header Allow)" POST "... Allow: POST"
is "$(post /api/status '{}' "${auth[@]}")" 405 "POST on a GET route: 405"
is "$(post / '{}')" 405 "POST on the page: 405"
like "$(raw_answer 'GARBAGE GARBAGE GARBAGE\r\n\r\n')" "^HTTP/1\.[01] 400" "a garbage request line: 400"
like "$(raw_answer 'GET /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n')" "^HTTP/1\.1 (400|401|413)" \
  "a negative Content-Length: refused"
is "$(raw 'GARBAGE\r\n\r\n')" "" "a one-word request line: the connection is closed"
for p in '/..' '/../etc/passwd' '/../../../../etc/passwd' '/%2e%2e/%2e%2e/etc/passwd' \
         '/..%2f..%2fetc%2fpasswd' '/web/../etc/passwd' '//etc/passwd' '/./index.html' \
         '/index.html/..' '/app.js%00.txt' '/%2fetc%2fpasswd' '/.git/config' '/drd.conf'; do
  is "$(get "$p" "${auth[@]}")" 404 "GET $p: 404"
done
like "$(raw_answer 'GET /../../etc/passwd HTTP/1.0\r\n\r\n')" "^HTTP/1\.[01] 40[14]" "raw GET /../../etc/passwd: refused"
grep -q 'root:' "$B" && fail "a traversal served /etc/passwd" || pass "no traversal served a file"

# -------------------------------------------- 2000 bad requests, memory ----
cfg=$TEST_TMP/bad.curl
{
  for i in $(seq 1 40); do
    for u in "/../etc/passwd$i" /%2e%2e/%2e%2e/etc/shadow /api/status "/nope/$i" "/api/runs/x$i"; do
      printf 'url = "%s%s"\noutput = "/dev/null"\n' "$BASE" "$u"
    done
  done
} >"$cfg"
bad_round() {   # 1000 HTTP requests over keep-alive + 100 big + 100 raw
  local i
  for i in 1 2 3 4 5; do
    curl -s -m 30 --path-as-is -K "$cfg" "${auth[@]}" -H 'X-Junk: 1' >/dev/null
  done
  for i in $(seq 1 50); do
    curl -s -m 10 -o /dev/null -X POST --data-binary "@$big" -H 'Content-Type: application/json' \
      "${auth[@]}" "$BASE/api/failover"
    curl -s -m 10 -o /dev/null -X POST --data-binary '{"reason":' -H 'Content-Type: application/json' \
      "${auth[@]}" "$BASE/api/failover"
  done
  for i in $(seq 1 100); do
    raw 'GARBAGE GARBAGE GARBAGE\r\n\r\n' >/dev/null
  done
}
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$DRD_PID/status"; }
bad_round   # warm-up: allocator arenas, MHD pools
rss0=$(rss)
t0=$(now_ms)
bad_round
bad_round
rss1=$(rss)
diag "2 x 1200 bad requests in $(( $(now_ms) - t0 )) ms; VmRSS ${rss0} kB -> ${rss1} kB"
drd_running; ok $? "drd is still running after the bad requests"
is "$(get /healthz)" 200 "... and answers /healthz"
is "$(drctl status --json | jq -r .daemon)" running "... and drctl status"
cmp_ok $(( ${rss1:-999999} - ${rss0:-0} )) -le 3072 "... its RSS grew by at most 3 MiB (${rss0} -> ${rss1} kB)"
is "$(drd_sql "SELECT count(*) FROM runs")" 0 "none of it started a run"

wait "$SLOW_PID" 2>/dev/null
read -r slow_rc slow_ms <"$TEST_TMP/slow.out"
cmp_ok "${slow_ms:-0}" -ge 8000 "a client stalling mid-request is cut off after the timeout (${slow_ms:-?} ms)..."
cmp_ok "${slow_ms:-99999}" -le 20000 "... not later than 20 s"
is "$(get /healthz)" 200 "drd answers after the slow client"

lines=$(grep -c 'http:' "$DRD_LOG")
cmp_ok "$lines" -le 60 "the bad requests did not flood the log ($lines http lines)"
grep -qF "$TOKEN" "$DRD_LOG" && fail "the token appears in drd's log" || pass "the token never appears in drd's log"

done_testing
