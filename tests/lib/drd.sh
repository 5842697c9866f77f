# shellcheck shell=bash
# tests/lib/drd.sh - run drd against the clusters of tests/lib/pg.sh.
# Source after pg.sh:
#
#   . "$(dirname "$0")/../lib/pg.sh"
#   . "$(dirname "$0")/../lib/drd.sh"
#   drd_config "$TEST_TMP/drd.conf" probe.interval=500ms probe.timeout=400ms
#   drd_start || bail_out "drd did not start"
#   drd_wait_field 10 .targets.primary.breaker closed
#
# State: DRD_CONF (config in use), DRD_DB (its [state] db), DRD_SOCK,
# DRD_LOG (drd's stdout+stderr, appended across restarts), DRD_PID.
# JSON is read with jq, the SQLite file with the sqlite3 CLI (read-only).

[ -n "${_DRD_DRD_SH:-}" ] && return 0
_DRD_DRD_SH=1

DRD=${DRD:-$DRD_ROOT/bin/drd}
DRCTL=${DRCTL:-$DRD_ROOT/bin/drctl}
DRD_TOOLS=${DRD_TOOLS:-$DRD_ROOT/build/tools}
DRD_LOG=${DRD_LOG:-$TEST_TMP/drd.log}
DRD_CONF=${DRD_CONF:-}
DRD_DB=${DRD_DB:-}
DRD_SOCK=${DRD_SOCK:-}
DRD_PID=
DRD_EXIT=
DRD_STOP_MS=
DRD_START_TIMEOUT=${DRD_START_TIMEOUT:-15}

# drd_require: bail out unless drd, drctl, jq and sqlite3 are there.
drd_require() {
  local x
  for x in "$DRD" "$DRCTL"; do
    [ -x "$x" ] || bail_out "$x is not built (run make)"
  done
  for x in jq sqlite3; do
    command -v "$x" >/dev/null || bail_out "$x is not installed (make deps)"
  done
}

# drd_config FILE [SECTION.KEY=VALUE ...]: write a config for the clusters
# `primary` and `backup` (which must exist: pg_new), a unix socket and a
# state db in $TEST_TMP, and fast probe settings:
#   interval=250ms timeout=250ms failures=3 successes=2 cooldown=1s,
#   log level debug; failover policy manual with the repo's runbooks, and
#   no-op app stop/start commands (the runbooks need them to load).
# Each argument overrides or adds a key; "section.key=" (empty) drops it, so
# `probe.interval= probe.timeout=` gives drd's defaults. Sets DRD_CONF,
# DRD_DB and DRD_SOCK (absolute, as written). Sections are written in a
# fixed order: primary backup probe failover failback app http state log,
# then the others.
drd_config() {
  local file=$1 kv val order s k
  shift
  declare -A cfg=()
  local -a keys=()
  _drd_cfg_set() {   # section.key value
    [[ -v cfg["$1"] ]] || keys+=("$1")
    cfg[$1]=$2
  }
  _drd_cfg_set primary.url "$(pg_url primary)" || return 1
  _drd_cfg_set backup.url "$(pg_url backup)" || return 1
  _drd_cfg_set probe.interval 250ms
  _drd_cfg_set probe.timeout 250ms
  _drd_cfg_set probe.failures 3
  _drd_cfg_set probe.successes 2
  _drd_cfg_set probe.cooldown 1s
  _drd_cfg_set failover.policy manual
  _drd_cfg_set failover.runbook "$DRD_ROOT/runbooks/failover.ini"
  _drd_cfg_set failback.runbook "$DRD_ROOT/runbooks/failback.ini"
  _drd_cfg_set app.stop true
  _drd_cfg_set app.start true
  _drd_cfg_set http.socket "$TEST_TMP/drd.sock"
  _drd_cfg_set state.db "$TEST_TMP/drd.db"
  _drd_cfg_set log.level debug
  for kv in "$@"; do
    [[ "$kv" == *.*=* ]] || { echo "drd_config: bad argument '$kv'" >&2; return 1; }
    _drd_cfg_set "${kv%%=*}" "${kv#*=}"
  done
  order="primary backup probe failover failback app http state log"
  for kv in "${keys[@]}"; do
    s=${kv%%.*}
    [[ " $order " == *" $s "* ]] || order="$order $s"
  done
  {
    echo "# written by tests/lib/drd.sh"
    for s in $order; do
      local hdr=0
      for kv in "${keys[@]}"; do
        [ "${kv%%.*}" = "$s" ] || continue
        k=${kv#*.}; val=${cfg[$kv]}
        [ -n "$val" ] || continue
        [ $hdr = 1 ] || { echo; echo "[$s]"; hdr=1; }
        echo "$k = $val"
      done
    done
  } >"$file" || return 1
  unset -f _drd_cfg_set
  DRD_CONF=$file
  DRD_DB=${cfg[state.db]:-}
  DRD_SOCK=${cfg[http.socket]:-}
  # relative paths resolve against the config file's directory
  [ -n "$DRD_DB" ] && [[ "$DRD_DB" != /* ]] && DRD_DB="$(dirname "$file")/$DRD_DB"
  [ -n "$DRD_SOCK" ] && [[ "$DRD_SOCK" != /* ]] && DRD_SOCK="$(dirname "$file")/$DRD_SOCK"
  return 0
}

_drd_cleanup_registered=0
_drd_pids=()

# drd_start [CONF]: start `drd -c CONF -f` in the background (stdout and
# stderr appended to $DRD_LOG) and wait until `drctl status` answers, at
# most DRD_START_TIMEOUT seconds. Returns 1 (with the log tail as TAP
# comments) if drd exits or does not answer in time. The environment is
# passed on (e.g. NOTIFY_SOCKET=... drd_start).
drd_start() {
  local conf=${1:-$DRD_CONF}
  [ -n "$conf" ] || { echo "drd_start: no config" >&2; return 1; }
  DRD_CONF=$conf
  if [ "$_drd_cleanup_registered" = 0 ]; then
    cleanup_add '_drd_cleanup'
    cleanup_report '_drd_crash_report'
    _drd_cleanup_registered=1
  fi
  [[ " ${_drd_logs[*]} " == *" $DRD_LOG "* ]] || _drd_logs+=("$DRD_LOG")
  echo "----- $(date -u +%FT%T.%3NZ) drd_start -c $conf" >>"$DRD_LOG"
  "$DRD" -c "$conf" -f >>"$DRD_LOG" 2>&1 &
  DRD_PID=$!
  _drd_pids+=("$DRD_PID")
  DRD_EXIT=
  # until drctl gets an answer, or drd dies (no point waiting then)
  if ! poll_until "$DRD_START_TIMEOUT" _drd_answers_or_died || ! proc_alive "$DRD_PID"; then
    if proc_alive "$DRD_PID"; then
      diag "drd (pid $DRD_PID) did not answer drctl status within ${DRD_START_TIMEOUT}s"
    else
      { wait "$DRD_PID"; } 2>/dev/null; DRD_EXIT=$?
      diag "drd exited with status $DRD_EXIT during start-up"
    fi
    diag_file "$DRD_LOG" 20
    return 1
  fi
  return 0
}

_drd_answers_or_died() {
  proc_alive "$DRD_PID" || return 0
  "$DRCTL" -c "$DRD_CONF" status --json >/dev/null 2>&1
  local rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 4 ]    # 4: it answers, and says the app is stopped
}

_drd_cleanup() {
  local p
  for p in "${_drd_pids[@]}"; do proc_kill "$p" 3; done
}

# At exit: a drd that died of a fatal signal wrote a backtrace into its log
# (src/core/crash.c). Each is shown as TAP comments, drd's own frames
# symbolised (function at file:line, addr2line), and counted as a failure:
# a crash never goes unseen, even in a test whose checks all passed.
_drd_logs=()
declare -gA _drd_crash_ok=()
_drd_crashes() { grep -c '^\(<2>\)\?drd: FATAL: signal' "$1" 2>/dev/null; }
# drd_crash_expected: the crashes in $DRD_LOG so far were on purpose (a
# test of the trace itself); only later ones fail the test.
drd_crash_expected() { _drd_crash_ok[$DRD_LOG]=$(_drd_crashes "$DRD_LOG"); }
_drd_crash_report() {
  local log n rc=0
  for log in "${_drd_logs[@]}"; do
    [ -f "$log" ] || continue
    n=$(( $(_drd_crashes "$log") - ${_drd_crash_ok[$log]:-0} ))
    [ "$n" -gt 0 ] || continue
    fail "drd died of a fatal signal ($n in $log): backtrace below"
    drd_backtrace <"$log" | sed 's/^/# /'
    rc=1
  done
  return $rc
}

# drd_backtrace: the crash blocks of a drd log (stdin), each frame of an
# executable (not a shared library) followed by its symbolised lines.
drd_backtrace() {
  local line in=0 bin off sym
  while IFS= read -r line; do
    line=${line#<2>}
    case $line in
      'drd: FATAL: signal'*) in=1; echo "$line"; continue ;;
      'drd: end of backtrace'*) [ $in = 1 ] && echo "$line"; in=0; continue ;;
    esac
    [ $in = 1 ] || continue
    echo "  $line"
    # /path/bin/drd(+0x1f6e6)[0x...]: an offset in the executable; the
    # return address - 1 is the call's line
    if [[ "$line" =~ ^([^\(]+)\(\+0x([0-9a-f]+)\) ]] && [[ "${BASH_REMATCH[1]}" != *.so* ]]; then
      bin=${BASH_REMATCH[1]}; off=$(( 16#${BASH_REMATCH[2]} - 1 ))
      command -v addr2line >/dev/null && [ -f "$bin" ] || continue
      sym=$(addr2line -f -i -p -C -e "$bin" "$(printf '0x%x' "$off")" 2>/dev/null)
      [ -n "$sym" ] && sed 's/^/      -> /' <<<"$sym"
    fi
  done
}

# drd_running: the current drd process is alive.
drd_running() { [ -n "$DRD_PID" ] && proc_alive "$DRD_PID"; }

# drd_signal SIG: send SIG to the current drd.
drd_signal() { kill -s "$1" "$DRD_PID"; }

# drd_wait_exit TIMEOUT_S: wait for drd to exit; KILL it after TIMEOUT_S.
# Sets DRD_EXIT (its exit status; 137 when it had to be killed) and
# DRD_STOP_MS (time from the call to the exit). Returns 0 if it exited by
# itself in time.
drd_wait_exit() {
  local t0 watchdog rc=0
  t0=$(now_ms)
  ( sleep "$1"; kill -KILL "$DRD_PID" 2>/dev/null ) &
  watchdog=$!
  { wait "$DRD_PID"; } 2>/dev/null; DRD_EXIT=$?
  DRD_STOP_MS=$(( $(now_ms) - t0 ))
  if proc_alive "$watchdog"; then
    kill "$watchdog" 2>/dev/null; { wait "$watchdog"; } 2>/dev/null
  else
    rc=1
  fi
  DRD_PID=
  return $rc
}

# drd_stop [SIG] [TIMEOUT_S]: SIGTERM (or SIG) and wait (default 5 s, then
# KILL). DRD_STOP_MS is measured from the signal. Returns drd's exit status.
drd_stop() {
  local sig=${1:-TERM} t=${2:-5} t0
  [ -n "$DRD_PID" ] || return 0
  t0=$(now_ms)
  kill -s "$sig" "$DRD_PID" 2>/dev/null
  drd_wait_exit "$t"
  DRD_STOP_MS=$(( $(now_ms) - t0 ))
  return "$DRD_EXIT"
}

# drd_kill9: SIGKILL drd (a crash) and reap it.
drd_kill9() {
  [ -n "$DRD_PID" ] || return 0
  kill -KILL "$DRD_PID" 2>/dev/null
  { wait "$DRD_PID"; } 2>/dev/null
  DRD_PID=
  return 0
}

# drctl ARGS...: bin/drctl -c $DRD_CONF ARGS...
drctl() { "$DRCTL" -c "$DRD_CONF" "$@"; }

# drd_status_json: the status document (drctl status --json).
drd_status_json() { "$DRCTL" -c "$DRD_CONF" status --json; }

# drd_json FILTER: apply a jq filter to the status, raw output.
drd_json() {
  local js
  js=$("$DRCTL" -c "$DRD_CONF" status --json 2>/dev/null)
  [ -n "$js" ] || return 1
  jq -r "$1" <<<"$js"
}

# drd_field_is FILTER VALUE: the status field equals VALUE (for poll_until).
drd_field_is() { [ "$(drd_json "$1")" = "$2" ]; }

# drd_wait_field TIMEOUT_S FILTER VALUE: poll the status until FILTER gives
# VALUE. Returns 1 on timeout; POLL_ELAPSED_MS as in poll_until.
drd_wait_field() { poll_until "$1" drd_field_is "$2" "$3"; }

# drd_wait_healthy [TIMEOUT_S]: both targets healthy with breakers closed.
drd_wait_healthy() {
  poll_until "${1:-10}" drd_field_is \
    '[.targets.primary.healthy, .targets.backup.healthy, .targets.primary.breaker, .targets.backup.breaker] | join(" ")' \
    "true true closed closed"
}

# drd_sql SQL: query the state db read-only ("|" separated, no header).
drd_sql() {
  sqlite3 -readonly -batch -noheader -cmd '.timeout 5000' "$DRD_DB" "$1"
}

# drd_log_mark: the current size of the log (for drd_log_since).
drd_log_mark() { stat -c %s "$DRD_LOG" 2>/dev/null || echo 0; }
# drd_log_since MARK: the log written after MARK.
drd_log_since() { tail -c +"$(( $1 + 1 ))" "$DRD_LOG" 2>/dev/null; }
# drd_log_has MARK ERE: the log since MARK has a line matching ERE.
drd_log_has() { drd_log_since "$1" | grep -qE -- "$2"; }

# drd_api PATH [CURL ARGS...]: GET PATH over the unix socket; prints the
# body then a last line "HTTP NNN".
drd_api() {
  local path=$1; shift
  curl -s -m 5 --unix-socket "$DRD_SOCK" -w '\nHTTP %{http_code}\n' "$@" "http://localhost$path"
}
