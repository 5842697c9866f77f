#!/usr/bin/env bash
# t_crash_trace.sh - a drd that dies of a fatal signal leaves its
# backtrace in its log (src/core/crash.c), which tests/lib/drd.sh
# symbolises and, at a test's exit, reports as a failure (issue 13: the
# one crash seen had left nothing to read). The signals here are sent on
# purpose (drd_crash_expected); a fault on a worker thread is
# tests/unit/test_crash.c's. No clusters: the targets are closed ports. TAP.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require
command -v addr2line >/dev/null || bail_out "addr2line is not installed (binutils)"

conf=$TEST_TMP/drd.conf
cat >"$conf" <<CONF
[primary]
url = postgresql://drd@127.0.0.1:1/postgres
[backup]
url = postgresql://drd@127.0.0.1:2/postgres
[failover]
runbook = $DRD_ROOT/runbooks/failover.ini
[failback]
runbook = $DRD_ROOT/runbooks/failback.ini
[app]
stop = true
start = true
[http]
socket = $TEST_TMP/drd.sock
[state]
db = $TEST_TMP/drd.db
CONF
DRD_CONF=$conf DRD_DB=$TEST_TMP/drd.db DRD_SOCK=$TEST_TMP/drd.sock

drd_start || bail_out "drd did not start"
kill -SEGV "$DRD_PID"
drd_wait_exit 10
is "$DRD_EXIT" 139 "SIGSEGV: drd dies of it (128 + 11), the default action after the trace"
like "$(grep 'FATAL' "$DRD_LOG")" "^drd: FATAL: signal 11 \(SIGSEGV\), sent by pid [0-9]+, thread [0-9]+ \(drd\)$" \
  "its log names the signal, the sender and the thread"
trace=$(drd_backtrace <"$DRD_LOG")
like "$trace" "-> loop_run at [^ ]*src/core/loop\.c:[0-9]+" "the frames are symbolised: the loop's poll"
like "$trace" "drd: end of backtrace" "... to the end of the trace"
drd_crash_expected

# under systemd: every line of the trace is critical (<2>) in the journal
JOURNAL_STREAM=1:1 drd_start || bail_out "drd did not restart"
kill -ABRT "$DRD_PID"
drd_wait_exit 10
is "$DRD_EXIT" 134 "SIGABRT: drd dies of it (128 + 6)"
like "$(grep 'SIGABRT' "$DRD_LOG")" "^<2>drd: FATAL: signal 6 \(SIGABRT\), sent by pid [0-9]+" \
  "with JOURNAL_STREAM the lines carry the journal's critical priority"
unlike "$(sed -n '/^<2>drd: FATAL: signal 6/,/end of backtrace/p' "$DRD_LOG" | grep -v '^<2>')" "." \
  "... every one of them"
drd_crash_expected
done_testing
