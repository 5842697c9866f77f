#!/usr/bin/env bash
# t_daemon.sh - drd as a daemon: sd_notify READY=1 only once the API
# listens; SIGHUP with a broken file keeps the running config (and says
# FILE:LINE), SIGHUP with a good file applies it; a second drd on the same
# state refuses to run; SIGTERM and SIGINT stop it (exit 0) within 1 s, also
# while a probe hangs on a frozen server; relative paths resolve against
# the config file's directory.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require

for c in primary backup; do
  { pg_new $c && pg_start $c; } || bail_out "cannot create cluster $c"
done

# notify_recv: built by make into build/tools; compile it here otherwise.
NOTIFY_RECV=$DRD_TOOLS/notify_recv
if [ ! -x "$NOTIFY_RECV" ]; then
  NOTIFY_RECV=$TEST_TMP/notify_recv
  cc -std=c11 -D_GNU_SOURCE -O2 -o "$NOTIFY_RECV" "$DRD_ROOT/tests/tools/notify_recv.c" ||
    bail_out "cannot build notify_recv"
fi

# backup_stamps N TIMEOUT_S: print up to N distinct successive values of the
# backup's last_probe_at seen within TIMEOUT_S (sampled every 100 ms).
backup_stamps() {
  local n=$1 end last="" v count=0
  end=$(( $(now_ms) + $(_secs_to_ms "$2") ))
  while (( count < n && $(now_ms) < end )); do
    v=$(drd_json .targets.backup.last_probe_at)
    if [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" != "$last" ]; then
      echo "$v"; last=$v; count=$(( count + 1 ))
    fi
    sleep 0.1
  done
}
# gaps: successive differences of the numbers on stdin
gaps() { awk 'NR > 1 { printf "%d ", $1 - prev } { prev = $1 }'; }

conf=$TEST_TMP/drd.conf
drd_config "$conf" probe.interval=250ms probe.timeout=200ms || bail_out "drd_config"

# ----------------------------------------------------------- sd_notify ----
nsock=$TEST_TMP/notify.sock
"$NOTIFY_RECV" "$nsock" 15000 "$DRD_SOCK" >"$TEST_TMP/notify.out" 2>&1 &
npid=$!
proc_track "$npid"
poll_until 5 test -S "$nsock" || bail_out "notify_recv did not bind $nsock"
NOTIFY_SOCKET=$nsock drd_start || bail_out "drd did not start"
{ wait "$npid"; } 2>/dev/null; nrc=$?
is "$nrc" 0 "with NOTIFY_SOCKET set, drd sends READY=1"
grep -q '^notify: READY=1$' "$TEST_TMP/notify.out"; ok $? "... the datagram has the line READY=1"
grep -q '^check: connected$' "$TEST_TMP/notify.out"
ok $? "... and the API socket already accepts connections when READY=1 arrives"
[ "$nrc" = 0 ] || diag_file "$TEST_TMP/notify.out"
drd_wait_healthy 10; ok $? "both targets healthy"

# ------------------------------------------- a second drd, same state db ----
OUT=$(timeout 10 "$DRD" -c "$conf" -f 2>&1); RC=$?
isnt "$RC" 0 "a second drd with the same state refuses to run (exit $RC)"
[ "$RC" = 124 ] && diag "it was still running after 10 s"
like "$OUT" "already running|lock" "... and says why"
drd_running; ok $? "the first drd keeps running"
check "... and still answers drctl status" drctl status --json

# ------------------------------------------------ SIGHUP, broken config ----
cp "$conf" "$TEST_TMP/good.conf"
sed -i 's/^interval = 250ms$/interval = soon/' "$conf"
bad_line=$(grep -n '^interval = soon$' "$conf" | cut -d: -f1)
mark=$(drd_log_mark)
drd_signal HUP
poll_until 5 drd_log_has "$mark" "$conf:$bad_line:"
ok $? "SIGHUP with a broken config: the log names $conf:$bad_line:"
drd_log_since "$mark" | grep -F "$conf:$bad_line:" | sed 's/^/# log: /'
drd_running; ok $? "... drd keeps running"
# drctl reads the config file too: point it at the good copy meanwhile.
DRD_CONF=$TEST_TMP/good.conf
check "... and still answers drctl status" drctl status --json
stamps=$(backup_stamps 4 3)
g=$(gaps <<<"$stamps")
diag "backup probe gaps after the failed reload: $g ms"
maxg=$(tr ' ' '\n' <<<"$g" | sort -n | tail -1)
cmp_ok "${maxg:-99999}" -le 550 "... and keeps probing with the old 250 ms interval"

# ---------------------------------------------- SIGHUP, changed config ----
DRD_CONF=$conf
sed 's/^interval = 250ms$/interval = 1s/' "$TEST_TMP/good.conf" >"$conf"
grep -q '^interval = 1s$' "$conf" || bail_out "could not edit $conf"
mark=$(drd_log_mark)
drd_signal HUP
poll_until 5 drd_log_has "$mark" '[Rr]eload.*([Rr]eloaded|[Aa]pplied)'
ok $? "SIGHUP with a valid new config: the log says it was reloaded"
drd_log_since "$mark" | grep -iE 'reload' | sed 's/^/# log: /'
drd_log_has "$mark" ' ERROR ' && { fail "no ERROR logged by the good reload"; drd_log_since "$mark" | sed 's/^/# /'; } ||
  pass "no ERROR logged by the good reload"
stamps=$(backup_stamps 4 6)
g=$(gaps <<<"$stamps")
diag "backup probe gaps after the reload to interval=1s: $g ms"
lastg=$(tr ' ' '\n' <<<"$g" | grep . | tail -1)
cmp_ok "${lastg:-0}" -ge 800 "the new 1 s probe interval is in effect"
drd_running; ok $? "drd still running"

# ------------------------------------------------------------- SIGTERM ----
drd_stop TERM 5; rc=$?
is "$rc" 0 "SIGTERM: exit status 0"
diag "SIGTERM -> exit in ${DRD_STOP_MS} ms"
cmp_ok "$DRD_STOP_MS" -le 1000 "SIGTERM: drd exits within 1 s"
grep -q "FATAL\|Sanitizer\|runtime error" "$DRD_LOG" && fail "no crash report in the log" || pass "no crash report in the log"

# ------------- relative paths; SIGINT while a probe hangs on a frozen server ----
mkdir -p "$TEST_TMP/rel"
rconf=$TEST_TMP/rel/drd.conf
drd_config "$rconf" http.socket=run.sock state.db=state/drd.db probe.interval=3s \
  probe.timeout=3s || bail_out "drd_config rel"
pushd / >/dev/null || bail_out "cd /"
if drd_start "$rconf"; then
  pass "drd starts with db = state/drd.db (state/ does not exist yet), from cwd /"
else
  fail "drd starts with db = state/drd.db (state/ does not exist yet), from cwd /"
  mkdir -p "$TEST_TMP/rel/state"
  drd_start "$rconf" || bail_out "drd (relative paths) did not start"
  diag "(started once $TEST_TMP/rel/state was created by the test)"
fi
popd >/dev/null || bail_out "cd back"
[ -S "$TEST_TMP/rel/run.sock" ]; ok $? "socket = run.sock is created next to the config file"
[ -f "$TEST_TMP/rel/state/drd.db" ]; ok $? "db = state/drd.db is created next to the config file"
(cd / && "$DRCTL" -c "$rconf" status --json >/dev/null); ok $? "drctl -c finds the relative socket from another cwd"
drd_wait_healthy 10; ok $? "both healthy (relative-path instance)"

pport=$(pg_port primary)
pg_freeze primary || bail_out "cannot freeze the primary"
# Wait until a probe connection to the frozen primary is in flight (TCP
# established in the listen backlog, nobody answering).
hexport=$(printf '%04X' "$pport")
poll_until 6 grep -qE "^ *[0-9]+: 0100007F:[0-9A-F]{4} 0100007F:$hexport 01 " /proc/net/tcp
ok $? "a probe to the frozen primary is in flight"
drd_stop INT 8; rc=$?
is "$rc" 0 "SIGINT while a probe hangs (timeout 3s): exit status 0"
diag "SIGINT -> exit in ${DRD_STOP_MS} ms"
cmp_ok "$DRD_STOP_MS" -le 1000 "SIGINT: drd exits within 1 s even with a probe hanging"
pg_thaw primary

done_testing
