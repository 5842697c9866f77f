#!/usr/bin/env bash
# t_sample_app.sh - the sample app (build/tools/sample_app) and its control
# script (tests/app/appctl) against a real PostgreSQL 15 cluster: rows every
# 100 ms, the server crashing (keeps retrying, health 503), coming back
# (writes resume, same URL: the env file is read once), the whole server
# frozen with SIGSTOP (no attempt hangs beyond ~2 s, health answers 503),
# SIGTERM (prompt exit 0), appctl idempotence, passwords never printed, and
# a second instance under valgrind through all of it.  TAP output.
set -u
cd "$(dirname "$0")/../.." || exit 1
# shellcheck disable=SC1094
. tests/lib/pg.sh

APP=${SAMPLE_APP:-$DRD_ROOT/build/tools/sample_app}
APPCTL=$DRD_ROOT/tests/app/appctl
SECRET=s3cr3tPW

[ -x "$APP" ] || bail_out "$APP not built (run make)"
command -v curl >/dev/null || bail_out "curl is needed"

# ---------------------------------------------------------------- helpers --

# Log files grow; a "mark" is a byte offset, checks look at what came after.
log_mark()  { stat -c %s "$1" 2>/dev/null || echo 0; }
log_since() { tail -c +$(( $2 + 1 )) "$1" 2>/dev/null; }
log_has()   { log_since "$1" "$2" | grep -qE "$3"; }          # FILE MARK ERE
log_count() { log_since "$1" "$2" | grep -cE "$3"; }
log_count_ge() { [ "$(log_count "$1" "$2" "$3")" -ge "$4" ]; }  # FILE MARK ERE N

health_code() { curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1/${2:-health}"; }
health_is()   { [ "$(health_code "$1")" = "$2" ]; }
rows_of()     { pg_psql db "SELECT count(*) FROM drd_app_writes WHERE writer = '$1'"; }
rows_ge()     { local n; n=$(rows_of "$1" 2>/dev/null) && [ "${n:-0}" -ge "$2" ]; }
app_pids()    { pgrep -f -- "$appdir/app.env" | sort; }

# Freeze the whole server (postmaster and every backend: a hung host), not
# only the postmaster, whose existing backends would keep serving the app.
frozen_list=$TEST_TMP/frozen.pids
freeze_all() {
  local pm; pm=$(pg_pid db) || return 1
  { echo "$pm"; pgrep -P "$pm"; } >"$frozen_list"
  # shellcheck disable=SC2046
  kill -STOP $(cat "$frozen_list")
}
thaw_all() {
  # shellcheck disable=SC2046
  [ -s "$frozen_list" ] && kill -CONT $(cat "$frozen_list") 2>/dev/null
  rm -f "$frozen_list"
  return 0
}

# ------------------------------------------------------------------ setup --

plan 39

{ pg_new db && pg_start db; } || bail_out "cannot start a cluster"
port=$(pg_port db)
appdir=$TEST_TMP/app
mkdir -p "$appdir"
hport=$(free_port) || bail_out "no free port"
cat >"$appdir/app.env" <<EOF
# the sample app's settings
# DATABASE_URL=postgresql://postgres@127.0.0.1:1/commented_out
OTHER_URL=postgresql://nobody@127.0.0.1:1/x
export DATABASE_URL="postgresql://postgres:$SECRET@127.0.0.1:$port/postgres"   # used
EOF
printf 'HEALTH_PORT=%s\nAPP_BIN=%s\n' "$hport" "$APP" >"$appdir/app.conf"
log=$appdir/app.log
cleanup_add "thaw_all"
cleanup_add "'$APPCTL' stop '$appdir'"
cleanup_add "thaw_all"

# ---------------------------------------------------- appctl start, rows --

"$APPCTL" start "$appdir" >/dev/null 2>&1
ok $? "appctl start exits 0"
pid=$(cat "$appdir/app.pid" 2>/dev/null)
"$APPCTL" status "$appdir" >/dev/null 2>&1
ok $? "appctl status: running (pid ${pid:-none})"
"$APPCTL" start "$appdir" >/dev/null 2>&1
ok $? "appctl start again exits 0"
is "$(app_pids | tr '\n' ' ')" "$pid " "still exactly one app process, the same pid"

poll_until 3 health_is "$hport" 200
ok $? "GET /health answers 200 within 3 s of the start"
like "$(cat "$log")" "connected to 127\\.0\\.0\\.1:$port/postgres" \
  "log: connected to 127.0.0.1:$port/postgres (export + quotes + comments parsed)"
is "$(health_code "$hport" nope)" 404 "GET /nope answers 404"

writer="${HOSTNAME:-$(hostname)}:$pid"
poll_until 6 rows_ge "$writer" 20
ok $? "rows accumulate in drd_app_writes with writer = $writer"
rate=$(pg_psql db "SELECT round((count(*) - 1) / extract(epoch FROM max(at) - min(at)))
                   FROM drd_app_writes WHERE writer = '$writer'")
cmp_ok "$rate" -ge 7 "about 10 rows a second (got $rate/s, >= 7)"
cmp_ok "$rate" -le 11 "about 10 rows a second (got $rate/s, <= 11)"
is "$(pg_psql db "SELECT bool_and(seq > 0) AND count(DISTINCT seq) = count(*)
                  FROM drd_app_writes WHERE writer = '$writer'")" t "seq values are distinct counters"

# A second instance under valgrind (plain when valgrind is missing) goes
# through the same outages; it is stopped while the server is frozen.
vg=()
if command -v valgrind >/dev/null; then
  # shellcheck disable=SC2054
  vg=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect
      --error-exitcode=99 --log-file="$TEST_TMP/valgrind.log")
fi
hport2=$(free_port) || bail_out "no free port"
log2=$TEST_TMP/second.log
"${vg[@]}" "$APP" "$appdir/app.env" --health-port "$hport2" --log "$log2" \
  >"$TEST_TMP/second.out" 2>&1 &
pid2=$!
proc_track "$pid2"
poll_until 15 log_has "$log2" 0 'writing \(seq 1\)'
ok $? "second instance${vg:+ (under valgrind)} writes too"

# The env file is read at start only: a later edit changes nothing until
# a restart (the app comes back to the same server below).
sed -i "s/:$port\\/postgres/:1\\/postgres/" "$appdir/app.env"

# ------------------------------------------------------- server crashes --

mark=$(log_mark "$log"); mark2=$(log_mark "$log2")
pg_crash db || bail_out "cannot stop the cluster"
poll_until 3 log_has "$log" "$mark" '^[0-9: .-]+write failed: '
ok $? "pg_ctl stop -m immediate: 'write failed' logged within 3 s"
poll_until 2 health_is "$hport" 503
ok $? "health answers 503 while the server is down"
poll_until 6 log_count_ge "$log" "$mark" 'write failed: connect: ' 3
ok $? "the app keeps retrying (3 failed connects logged)"
"$APPCTL" status "$appdir" >/dev/null 2>&1
ok $? "the app is still running"
is "$(log_since "$log" "$mark" | grep -cvE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]{12} ')" 0 \
  "every log line (failures included) is one timestamped line"

pg_start db || bail_out "cannot restart the cluster"
poll_until 5 log_has "$log" "$mark" 'writing again \(seq [0-9]+\)'
ok $? "cluster back: 'writing again' within 5 s (same URL, env file not re-read)"
poll_until 2 health_is "$hport" 200
ok $? "health answers 200 again"
# (not a row count: with synchronous_commit = off the crash may eat the last rows)
again=$(log_since "$log" "$mark" | sed -nE 's/.*writing again \(seq ([0-9]+)\).*/\1/p' | head -n 1)
is "$(pg_psql db "SELECT count(*) FROM drd_app_writes WHERE writer = '$writer' AND seq = ${again:-0}")" 1 \
  "the row of 'writing again (seq ${again:-?})' is in the table"
poll_until 5 log_has "$log2" "$mark2" 'writing again'
ok $? "second instance writes again too"

# ------------------------------------------------ whole server frozen --

mark=$(log_mark "$log"); mark2=$(log_mark "$log2")
freeze_all || bail_out "cannot freeze the cluster"
frozen_at=$(now_ms)
poll_until 3 log_has "$log" "$mark" 'write failed: .*timeout after'
ok $? "frozen server: a timeout is logged within 3 s (after $(( $(now_ms) - frozen_at )) ms)"
first_at=$(now_ms)
poll_until 2 health_is "$hport" 503
ok $? "frozen server: health answers 503"
poll_until 4 log_count_ge "$log" "$mark" 'write failed: .*timeout after' 2
ok $? "frozen server: the next attempt also gives up"
gap=$(( $(now_ms) - first_at ))
cmp_ok "$gap" -le 3000 "frozen server: no attempt hangs beyond ~2 s (${gap} ms between failures)"
slow=0
for _ in 1 2 3 4 5; do
  t=$(curl -s -o /dev/null -m 2 -w '%{time_total}' "http://127.0.0.1:$hport/health")
  [ "$(_secs_to_ms "${t:-2}")" -lt 1500 ] || slow=$((slow + 1))
done
is "$slow" 0 "frozen server: the health endpoint answers without waiting on the database (5 requests < 1.5 s)"

poll_until 5 log_has "$log2" "$mark2" 'timeout after'
ok $? "second instance notices the frozen server too"
t0=$(now_ms)
kill -TERM "$pid2"
wait "$pid2"; rc2=$?
elapsed=$(( $(now_ms) - t0 ))
is "$rc2" 0 "SIGTERM while the server is frozen: exit status 0"
cmp_ok "$elapsed" -le 4000 "SIGTERM while the server is frozen: exits, not hung on it (${elapsed} ms <= 4000)"
if [ ${#vg[@]} -gt 0 ]; then
  if [ "$rc2" = 0 ] && [ -f "$TEST_TMP/valgrind.log" ] && [ ! -s "$TEST_TMP/valgrind.log" ]; then
    pass "valgrind: no errors, no leaks"
  else
    fail "valgrind: no errors, no leaks"; diag_file "$TEST_TMP/valgrind.log" 40
  fi
else
  skip "valgrind: no errors, no leaks" "valgrind not installed"
fi

mark=$(log_mark "$log")
thaw_all
poll_until 6 log_has "$log" "$mark" 'writing again'
ok $? "thawed server: writes resume"

# --------------------------------------------------- secrets, stop, misc --

bad=$TEST_TMP/bad.env
leak=0
for u in "postgresql://postgres:$SECRET@127.0.0.1:notaport/postgres" \
         "postgresql://postgres:${SECRET}%zz@127.0.0.1:$port/postgres" \
         "host=127.0.0.1 port=$port password=$SECRET dbname=nodb" \
         "postgresql://postgres@127.0.0.1:$port/nodb?password=$SECRET"; do
  printf 'DATABASE_URL=%s\n' "$u" >"$bad"
  mark=$(log_mark "$TEST_TMP/bad.log")
  "$APP" "$bad" --log "$TEST_TMP/bad.log" >/dev/null 2>&1 &
  p=$!
  poll_until 3 log_has "$TEST_TMP/bad.log" "$mark" 'write failed' || { leak=1; diag "no failure for $u"; }
  proc_kill "$p" 2
done
grep -q "$SECRET" "$log" "$log2" "$TEST_TMP/bad.log" && leak=1
is "$leak" 0 "passwords are never printed (logs of the app, bad URLs)"

t0=$(now_ms)
"$APPCTL" stop "$appdir" >/dev/null 2>&1
ok $? "appctl stop exits 0"
elapsed=$(( $(now_ms) - t0 ))
cmp_ok "$elapsed" -le 4000 "SIGTERM: the app is gone within 4 s (${elapsed} ms)"
ok "$( [ -z "$(app_pids)" ] && [ ! -e "$appdir/app.pid" ]; echo $?)" \
  "no app process left, pid file removed"
like "$(tail -n 1 "$log")" 'stopping: [0-9]+ writes ok' "clean exit logged"
"$APPCTL" status "$appdir" >/dev/null 2>&1
is $? 3 "appctl status: 3 when not running"
"$APPCTL" stop "$appdir" >/dev/null 2>&1
ok $? "appctl stop when not running exits 0"

printf 'OTHER=1\n' >"$bad"
out=$("$APP" "$bad" 2>&1); rc=$?
ok "$( [ "$rc" = 2 ] && [[ "$out" == *"DATABASE_URL is not set in $bad"* ]]; echo $?)" \
  "a missing key: exit 2 with a clear message"

done_testing
