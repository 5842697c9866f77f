# shellcheck shell=bash
# tests/lib/pg.sh - throwaway PostgreSQL clusters, process tracking, cleanup
# and TAP helpers for drd's shell tests. Source it from a test:
#
#   . "$(dirname "$0")/../lib/pg.sh"
#   pg_new primary && pg_start primary || bail_out "cannot start primary"
#   is "$(pg_psql primary 'select 1')" 1 "primary answers"
#   done_testing
#
# Everything lives under $TEST_TMP (mktemp -d in $TMPDIR, or /dev/shm when
# it has room, else /tmp; removed at exit). Set TEST_TMP
# before sourcing to use your own directory instead (it is then never
# removed); TEST_KEEP=1 keeps a mktemp directory too (for debugging).
#
# Clusters: $TEST_TMP/NAME/{data/,postgres.log,port,.s.PGSQL.PORT}. When the
# tests run as root, initdb/pg_ctl run as the `postgres` user (runuser) and
# NAME/ is owned by postgres. Each cluster gets a free loopback port once and
# keeps it across restarts; its settings (port, listen_addresses=127.0.0.1,
# the private socket dir, fsync=off, max_connections=50, shared_buffers=16MB)
# are written to data/drd_test.conf, included from postgresql.conf, so a
# plain `pg_ctl -D DATA start` (e.g. typed by a human in the demo) restarts
# it identically.
#
# At exit (normal, failure, INT/TERM): the commands registered with
# cleanup_add run (newest first), then those of cleanup_report (their
# output kept: e.g. drd's crash backtraces), tracked processes are killed, every
# cluster under $TEST_TMP is thawed and stopped (-m immediate, or
# $PG_CLEANUP_MODE), and $TEST_TMP is removed if this file created it.

[ -n "${_DRD_PG_SH:-}" ] && return 0
_DRD_PG_SH=1

DRD_ROOT=${DRD_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$PG_BIN/pg_ctl" ] && command -v pg_config >/dev/null 2>&1; then
  PG_BIN=$(pg_config --bindir)
fi
PG_CLEANUP_MODE=${PG_CLEANUP_MODE:-immediate}
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}

# _test_tmp_base: $TMPDIR if set; otherwise /dev/shm when it is a writable
# tmpfs with room (creating a file costs ~1 ms on some disks, and a cluster
# is ~1,000 files), else /tmp.
_test_tmp_base() {
  local avail
  if [ -n "${TMPDIR:-}" ]; then echo "$TMPDIR"; return 0; fi
  if [ -d /dev/shm ] && [ -w /dev/shm ] &&
     avail=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }') &&
     [[ "$avail" =~ ^[0-9]+$ ]] && (( avail > 2 * 1024 * 1024 )); then
    echo /dev/shm; return 0
  fi
  echo /tmp
}

if [ -z "${TEST_TMP:-}" ]; then
  TEST_TMP=$(mktemp -d "$(_test_tmp_base)/drd-test.XXXXXX") || {
    echo "not ok - cannot create a temporary directory"; exit 1; }
  _TEST_TMP_OWNED=1
else
  mkdir -p "$TEST_TMP" || { echo "not ok - cannot create $TEST_TMP"; exit 1; }
  TEST_TMP=$(cd "$TEST_TMP" && pwd)
  _TEST_TMP_OWNED=0
fi
# postgres (when we are root) must be able to reach its cluster dirs.
chmod 0755 "$TEST_TMP" 2>/dev/null || true

# ---------------------------------------------------------------- time ----

# Wall clock in ms (like `date +%s%3N`, without a fork).
now_ms() {
  local t=${EPOCHREALTIME//[!0-9]/}
  echo $(( 10#$t / 1000 ))
}

# "2.5" / "2" / "0.3" seconds -> ms.
_secs_to_ms() {
  local s=$1 int frac
  int=${s%%.*}; [ -z "$int" ] && int=0
  if [[ "$s" == *.* ]]; then frac=${s#*.}000; frac=${frac:0:3}; else frac=000; fi
  echo $(( 10#$int * 1000 + 10#$frac ))
}

# poll_until TIMEOUT_S CMD [ARGS...]: run CMD every 100 ms until it succeeds
# (returns 0) or TIMEOUT_S seconds have passed (returns 1). Sets
# POLL_ELAPSED_MS. CMD's output is not hidden: redirect it if needed.
poll_until() {
  local limit start now
  limit=$(_secs_to_ms "$1"); shift
  start=$(now_ms)
  while :; do
    if "$@"; then POLL_ELAPSED_MS=$(( $(now_ms) - start )); return 0; fi
    now=$(now_ms)
    if (( now - start >= limit )); then POLL_ELAPSED_MS=$(( now - start )); return 1; fi
    sleep 0.1
  done
}

# ------------------------------------------------------------------ TAP ----

_TAP_N=0
_TAP_FAILED=0
_TAP_PLAN=

plan() { _TAP_PLAN=$1; echo "1..$1"; }

# diag MSG...: TAP comments, one per argument and per line ("# " prefix).
diag() {
  local arg line
  for arg in "$@"; do
    while IFS= read -r line; do echo "# $line"; done <<<"$arg"
  done
}
# diag_file FILE [LINES]: the last LINES (default 30) of FILE as comments.
diag_file() {
  [ -f "$1" ] || { diag "($1 does not exist)"; return 0; }
  diag "--- tail of $1:"
  tail -n "${2:-30}" "$1" | sed 's/^/#   /'
}

pass() { _TAP_N=$((_TAP_N + 1)); echo "ok $_TAP_N - $*"; }
fail() { _TAP_N=$((_TAP_N + 1)); _TAP_FAILED=$((_TAP_FAILED + 1)); echo "not ok $_TAP_N - $*"; return 1; }
skip() { _TAP_N=$((_TAP_N + 1)); echo "ok $_TAP_N - $1 # SKIP ${2:-}"; }

# ok STATUS DESC: pass when STATUS (an exit status) is 0.  `cmd; ok $? "cmd works"`
ok() {
  local st=$1; shift
  if [ "$st" = 0 ]; then pass "$*"; else fail "$*"; fi
}
# check DESC CMD [ARGS...]: pass when CMD exits 0; otherwise show its output.
check() {
  local desc=$1 out st; shift
  out=$("$@" 2>&1); st=$?
  if [ $st -eq 0 ]; then pass "$desc"; return 0; fi
  fail "$desc"; diag "command: $* (exit $st)"; [ -n "$out" ] && diag "$out"
  return 1
}
# is GOT WANT DESC
is() {
  if [ "$1" == "$2" ]; then pass "$3"; return 0; fi
  fail "$3"; diag "got:      '$1'" "expected: '$2'"
  return 1
}
isnt() {
  if [ "$1" != "$2" ]; then pass "$3"; return 0; fi
  fail "$3"; diag "got '$1', expected anything else"
  return 1
}
# like GOT ERE DESC / unlike GOT ERE DESC  (bash =~, extended regex)
like() {
  if [[ "$1" =~ $2 ]]; then pass "$3"; return 0; fi
  fail "$3"; diag "does not match /$2/:" "${1:0:2000}"
  return 1
}
unlike() {
  if ! [[ "$1" =~ $2 ]]; then pass "$3"; return 0; fi
  fail "$3"; diag "unexpectedly matches /$2/ ('${BASH_REMATCH[0]}')"
  return 1
}
# cmp_ok A OP B DESC: integer comparison, OP one of -lt -le -eq -ne -ge -gt.
cmp_ok() {
  if [[ "$1" =~ ^-?[0-9]+$ && "$3" =~ ^-?[0-9]+$ ]] && test "$1" "$2" "$3"; then
    pass "$4"; return 0
  fi
  fail "$4"; diag "expected: '$1' $2 '$3'"
  return 1
}

# bail_out MSG: stop the test now (cleanup still runs).
bail_out() {
  _TAP_N=$((_TAP_N + 1)); _TAP_FAILED=$((_TAP_FAILED + 1))
  echo "not ok $_TAP_N - bail out: $*"
  [ -z "$_TAP_PLAN" ] && echo "1..$_TAP_N"
  exit 1
}

# done_testing: print the plan if none was given, check it otherwise, and
# exit 0 only if every test passed.
done_testing() {
  if [ -z "$_TAP_PLAN" ]; then
    echo "1..$_TAP_N"
  elif [ "$_TAP_PLAN" != "$_TAP_N" ]; then
    _TAP_N=$((_TAP_N + 1)); _TAP_FAILED=$((_TAP_FAILED + 1))
    echo "not ok $_TAP_N - planned $_TAP_PLAN tests but ran $((_TAP_N - 1))"
  fi
  [ "$_TAP_FAILED" -eq 0 ] && exit 0
  diag "$_TAP_FAILED of $_TAP_N failed"
  exit 1
}

# ------------------------------------------------- processes and cleanup ----

_CLEANUP_CMDS=()
_TRACKED_PIDS=()

# cleanup_add CMD: run CMD (a string, eval'd) at exit, newest first.
# Call it from the test's own shell, not from a $(...) or a pipeline.
cleanup_add() { _CLEANUP_CMDS+=("$1"); }

# cleanup_report CMD: run CMD at exit after the cleanup_add commands, its
# output kept (TAP lines and comments); a non-zero status fails the test.
_REPORT_CMDS=()
cleanup_report() { _REPORT_CMDS+=("$1"); }

# proc_track PID: kill PID (TERM, then KILL after 3 s) at exit if still alive.
proc_track() { _TRACKED_PIDS+=("$1"); }

# proc_alive PID: the process exists and is not a zombie.
proc_alive() {
  local st
  read -r st 2>/dev/null <"/proc/$1/stat" || return 1
  st=${st##*) }; st=${st%% *}
  [ "$st" != Z ] && [ "$st" != X ]
}

# proc_kill PID [TIMEOUT_S]: TERM, wait up to TIMEOUT_S (default 3), KILL.
# Reaps the process if it is our child. Returns its exit status if known.
proc_kill() {
  local pid=$1 t=${2:-3} rc=0
  [ -n "$pid" ] || return 0
  if proc_alive "$pid"; then
    kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    poll_until "$t" eval "! proc_alive $pid" || kill -KILL "$pid" 2>/dev/null
  fi
  { wait "$pid"; } 2>/dev/null; rc=$?
  return $rc
}

_TEST_MAIN_PID=$BASHPID

_test_cleanup() {
  local rc=$? i d
  # Only the test's own shell cleans up (never a subshell that inherited
  # the trap, e.g. a command substitution inside this function).
  [ "$BASHPID" = "$_TEST_MAIN_PID" ] || return 0
  trap - EXIT INT TERM HUP
  for (( i = ${#_CLEANUP_CMDS[@]} - 1; i >= 0; i-- )); do
    eval "${_CLEANUP_CMDS[$i]}" >/dev/null 2>&1 || true
  done
  for i in "${_REPORT_CMDS[@]}"; do
    eval "$i" || { [ "$rc" = 0 ] && rc=1; }
  done
  for i in "${_TRACKED_PIDS[@]}"; do proc_kill "$i" 3 >/dev/null 2>&1; done
  # Every cluster under TEST_TMP (state is kept in files: pg_start may have
  # run in a subshell, e.g. `check "..." pg_start x`).
  for d in "$TEST_TMP"/*/data/PG_VERSION; do
    [ -f "$d" ] || continue
    d=${d%/data/PG_VERSION}; d=${d##*/}
    pg_thaw "$d" >/dev/null 2>&1
    pg_stop "$d" "$PG_CLEANUP_MODE" >/dev/null 2>&1 || {
      i=$(pg_pid "$d" 2>/dev/null)
      [ -n "$i" ] && kill -KILL "$i" 2>/dev/null
    }
  done
  if [ "$_TEST_TMP_OWNED" = 1 ] && [ "${TEST_KEEP:-0}" != 1 ]; then
    rm -rf "$TEST_TMP"
  elif [ "$_TEST_TMP_OWNED" = 1 ]; then
    echo "# kept $TEST_TMP"
  fi
  exit $rc
}
trap _test_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ------------------------------------------------------------- clusters ----

_pg_root() { [ "$(id -u)" = 0 ]; }

# _pg_as CMD...: run a PostgreSQL server command as the cluster owner,
# from / (postgres may not be allowed into the caller's cwd).
_pg_as() {
  if _pg_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

pg_dir()     { echo "$TEST_TMP/$1"; }
pg_datadir() { echo "$TEST_TMP/$1/data"; }
pg_log()     { echo "$TEST_TMP/$1/postgres.log"; }

# Ports in use on this machine (any state) plus those of our clusters.
_port_taken() {
  local p=$1 hex f
  printf -v hex ':%04X ' "$p"
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] && grep -q "^ *[0-9]*: [0-9A-F]*$hex" "$f" && return 0
  done
  for f in "$TEST_TMP"/*/port; do
    [ -r "$f" ] && [ "$(<"$f")" = "$p" ] && return 0
  done
  return 1
}

# free_port: print a loopback TCP port nothing uses now, below the
# ephemeral range (so outgoing connections never grab it meanwhile).
free_port() {
  local lo=15000 hi=32767 range p i
  if range=$(cat /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null); then
    range=${range%%[[:space:]]*}
    [[ "$range" =~ ^[0-9]+$ ]] && (( range > lo + 1000 )) && hi=$(( range - 1 ))
  fi
  for (( i = 0; i < 200; i++ )); do
    p=$(( lo + (RANDOM * 32768 + RANDOM) % (hi - lo) ))
    _port_taken "$p" || { echo "$p"; return 0; }
  done
  return 1
}

_pg_write_conf() {   # name port
  local dir; dir=$(pg_dir "$1")
  _pg_as tee "$dir/data/drd_test.conf" >/dev/null <<EOF
# written by tests/lib/pg.sh; pg_conf NAME adds lines below
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = 16MB
logging_collector = off
log_line_prefix = '%m [%p] '
EOF
  [ -f "$dir/extra.conf" ] && _pg_as tee -a "$dir/data/drd_test.conf" <"$dir/extra.conf" >/dev/null
  return 0
}

# Template data directories: initdb runs once per PostgreSQL version and
# set of initdb options, and every cluster is a copy of that template
# (`cp -a`, ~10x faster than initdb). They live under $PG_TEMPLATE_DIR
# (default build/pg-template, emptied by tests/run.sh at the start of each
# run), are built under a lock (flock) so parallel tests never race, and
# are owned by postgres when we are root. Copies share the template's
# system identifier (nothing in drd reads it); PG_TEMPLATE=0 makes pg_new
# run initdb for every cluster instead.
PG_TEMPLATE_DIR=${PG_TEMPLATE_DIR:-$DRD_ROOT/build/pg-template}

_PG_INITDB_OPTS=(-A trust -N --no-instructions --no-locale -E UTF8 -U postgres)

# _pg_template_key [INITDB ARGS...]: a directory name for this PostgreSQL
# build and these initdb options (version, uid, options hashed).
_pg_template_key() {
  local ver sum
  ver=$("$PG_BIN/initdb" --version 2>/dev/null) || return 1
  sum=$(printf '%s\n' "$ver" "$(id -u)" "$PG_BIN" "${_PG_INITDB_OPTS[@]}" "$@" | cksum)
  ver=${ver#*) }; ver=${ver%% *}
  echo "pg${ver//[^0-9.]/}-${sum%% *}"
}

# _pg_template [INITDB ARGS...]: print the path of a finished template data
# directory for these options, creating it (under a lock) if needed.
_pg_template() {
  local key base stage rc=0
  key=$(_pg_template_key "$@") || return 1
  base=$PG_TEMPLATE_DIR/$key
  [ -f "$base/data/drd_template.done" ] && { echo "$base/data"; return 0; }
  mkdir -p "$PG_TEMPLATE_DIR" && chmod 0755 "$PG_TEMPLATE_DIR" || return 1
  (
    flock -w 120 9 || { echo "pg_new: template lock timed out" >&2; exit 1; }
    [ -f "$base/data/drd_template.done" ] && exit 0
    rm -rf "$base" "$base.tmp"
    stage=$base.tmp
    mkdir -p "$stage" && chmod 0755 "$stage" || exit 1
    _pg_root && chown postgres:postgres "$stage"
    if ! _pg_as "$PG_BIN/initdb" -D "$stage/data" "${_PG_INITDB_OPTS[@]}" "$@" \
          >"$stage/initdb.log" 2>&1; then
      echo "pg_new: initdb failed for the template:" >&2; cat "$stage/initdb.log" >&2
      exit 1
    fi
    echo "include_if_exists = 'drd_test.conf'" | _pg_as tee -a "$stage/data/postgresql.conf" >/dev/null &&
      _pg_as touch "$stage/data/drd_template.done" && mv "$stage" "$base"
  ) 9>"$base.lock" || rc=1
  [ "$rc" = 0 ] && [ -f "$base/data/drd_template.done" ] || return 1
  echo "$base/data"
}

# pg_new NAME [INITDB ARGS...]: create a cluster (initdb -A trust -N, user
# postgres, no locale; a copy of the template for these options). Fails if
# NAME already exists (see pg_reuse).
pg_new() {
  local name=$1 dir port tpl; shift
  dir=$(pg_dir "$name")
  [ -e "$dir/data/PG_VERSION" ] && { echo "pg_new: $dir already exists" >&2; return 1; }
  mkdir -p "$dir" || return 1
  _pg_root && chown postgres:postgres "$dir"
  chmod 0755 "$dir"
  if [ "${PG_TEMPLATE:-1}" != 0 ] && tpl=$(_pg_template "$@"); then
    # cp as the caller: root keeps postgres as the owner, others own both.
    cp -a --reflink=auto "$tpl" "$dir/data" && rm -f "$dir/data/drd_template.done" || {
      echo "pg_new: cannot copy the template $tpl for $name" >&2; return 1; }
  else
    if ! _pg_as "$PG_BIN/initdb" -D "$dir/data" "${_PG_INITDB_OPTS[@]}" "$@" \
          >"$dir/initdb.log" 2>&1; then
      echo "pg_new: initdb failed for $name:" >&2; cat "$dir/initdb.log" >&2
      return 1
    fi
    echo "include_if_exists = 'drd_test.conf'" | _pg_as tee -a "$dir/data/postgresql.conf" >/dev/null
  fi
  port=$(free_port) || { echo "pg_new: no free port" >&2; return 1; }
  echo "$port" >"$dir/port"
  rm -f "$dir/port.published"
  _pg_write_conf "$name" "$port" || return 1
}

# pg_exists NAME: a cluster NAME was created (e.g. by an earlier demo run).
pg_exists() { [ -f "$(pg_datadir "$1")/PG_VERSION" ] && [ -f "$(pg_dir "$1")/port" ]; }

# pg_conf NAME 'key = value'...: extra server settings (applied at the next
# start, or now with pg_reload).
pg_conf() {
  local name=$1 dir; shift
  dir=$(pg_dir "$name")
  printf '%s\n' "$@" >>"$dir/extra.conf"
  _pg_write_conf "$name" "$(<"$dir/port")"
}

# pg_set_port NAME PORT: move a stopped cluster to another port (e.g. a
# reused demo cluster whose old port got taken meanwhile).
pg_set_port() {
  pg_running "$1" && { echo "pg_set_port: $1 is running" >&2; return 1; }
  echo "$2" >"$(pg_dir "$1")/port" && _pg_write_conf "$1" "$2"
}

# pg_port NAME: the cluster's port (fixed from now on).
pg_port() {
  local dir; dir=$(pg_dir "$1")
  [ -f "$dir/port" ] || { echo "pg_port: no cluster $1" >&2; return 1; }
  touch "$dir/port.published" 2>/dev/null
  cat "$dir/port"
}

# pg_url NAME [USER[:PASSWORD]] [DB]: postgresql://USER@127.0.0.1:PORT/DB
pg_url() {
  local port; port=$(pg_port "$1") || return 1
  echo "postgresql://${2:-postgres}@127.0.0.1:$port/${3:-postgres}"
}

# pg_pid NAME: the postmaster's pid (postmaster.pid line 1), if running.
pg_pid() {
  local f; f="$(pg_datadir "$1")/postmaster.pid"
  [ -r "$f" ] || return 1
  head -n 1 "$f"
}

# pg_running NAME: the postmaster process is alive (maybe frozen).
pg_running() { local pid; pid=$(pg_pid "$1") && [ -n "$pid" ] && proc_alive "$pid"; }

# pg_start NAME: start and wait until it accepts connections. On the first
# start a port that turned out to be taken is replaced (unless already
# handed out by pg_port/pg_url).
pg_start() {
  local name=$1 dir try port
  dir=$(pg_dir "$name")
  [ -f "$dir/port" ] || { echo "pg_start: no cluster $name" >&2; return 1; }
  for try in 1 2 3 4 5; do
    if _pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null 2>&1; then
      touch "$dir/started"
      return 0
    fi
    if [ ! -f "$dir/started" ] && [ ! -f "$dir/port.published" ] &&
       grep -q 'could not bind\|Address already in use' "$dir/postgres.log" 2>/dev/null; then
      port=$(free_port) || break
      echo "$port" >"$dir/port"
      _pg_write_conf "$name" "$port"
      continue
    fi
    break
  done
  echo "pg_start: $name failed to start; tail of $dir/postgres.log:" >&2
  tail -n 20 "$dir/postgres.log" >&2
  return 1
}

# pg_stop NAME [MODE]: pg_ctl stop (-m fast by default). A frozen postmaster
# is thawed first. Succeeds if the cluster is (now) stopped.
pg_stop() {
  local name=$1 mode=${2:-fast}
  pg_running "$name" || return 0
  pg_thaw "$name"
  _pg_as "$PG_BIN/pg_ctl" -D "$(pg_datadir "$name")" -m "$mode" -w -t 30 stop >/dev/null 2>&1 && return 0
  ! pg_running "$name"
}

# pg_crash NAME: stop -m immediate (the server dies without a checkpoint).
pg_crash() { pg_stop "$1" immediate; }

# pg_restart NAME: stop (fast) and start again.
pg_restart() { pg_stop "$1" && pg_start "$1"; }

# pg_reload NAME: re-read the configuration.
pg_reload() { _pg_as "$PG_BIN/pg_ctl" -D "$(pg_datadir "$1")" reload >/dev/null; }

# pg_freeze NAME / pg_thaw NAME: SIGSTOP / SIGCONT the postmaster: TCP
# connects still complete (kernel backlog) but nobody answers - a hung server.
pg_freeze() {
  local pid; pid=$(pg_pid "$1") || return 1
  kill -STOP "$pid" && touch "$(pg_dir "$1")/frozen"
}
pg_thaw() {
  local pid dir; dir=$(pg_dir "$1")
  rm -f "$dir/frozen"
  pid=$(pg_pid "$1") || return 0
  kill -CONT "$pid" 2>/dev/null
  return 0
}

# pg_psql NAME SQL [DB]: run SQL over TCP as postgres; unaligned, tuples only.
pg_psql() {
  local port; port=$(pg_port "$1") || return 1
  "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" \
    -U postgres -d "${3:-postgres}" -c "$2"
}

# pg_ready NAME: the server accepts connections (1 s timeout).
pg_ready() {
  local port; port=$(pg_port "$1") || return 1
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1
}

# pg_ctl_cmd NAME: the pg_ctl command line a human would type for NAME
# (runuser prefix when root), e.g. "$(pg_ctl_cmd primary) stop -m immediate".
pg_ctl_cmd() {
  local pre=""
  _pg_root && pre="runuser -u postgres -- "
  echo "${pre}$PG_BIN/pg_ctl -D $(pg_datadir "$1") -l $(pg_log "$1")"
}

# pgbouncer_start NAME DB USER [POOL_SIZE]: a real pgbouncer in transaction
# mode in front of cluster NAME's database DB, trust auth for USER, pool of
# POOL_SIZE server connections (default 4). Sets BDIR (its dir: .ini, .log,
# .pid) and BPORT; stopped at the test's exit. Returns 1 if it does not answer.
pgbouncer_start() {
  local name=$1 db=$2 user=$3 pool=${4:-4}
  BDIR=$TEST_TMP/bouncer
  mkdir -p "$BDIR" && chmod 0777 "$BDIR" || return 1
  BPORT=$(free_port) || return 1
  echo "$BPORT" >"$BDIR/port"
  cat >"$BDIR/pgbouncer.ini" <<INI
[databases]
$db = host=127.0.0.1 port=$(pg_port "$name") dbname=$db
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
auth_type = trust
auth_file = $BDIR/users.txt
pool_mode = transaction
default_pool_size = $pool
max_client_conn = 100
server_reset_query =
logfile = $BDIR/pgbouncer.log
pidfile = $BDIR/pgbouncer.pid
INI
  printf '"%s" ""\n' "$user" >"$BDIR/users.txt"
  chmod 0644 "$BDIR"/*
  _pg_as pgbouncer -d "$BDIR/pgbouncer.ini" || return 1
  cleanup_add "kill \$(cat '$BDIR/pgbouncer.pid' 2>/dev/null) 2>/dev/null"
  poll_until 10 "$PG_BIN/psql" -X -qAt -h 127.0.0.1 -p "$BPORT" -U "$user" -c 'SELECT 1' "$db" \
    >/dev/null 2>&1
}
