#!/usr/bin/env bash
# t_config.sh - `drd -n` config checking: a valid file says "configuration
# OK" (exit 0); each kind of bad file gives "FILE:LINE: message" lines and
# exit 2; drd itself refuses to start on a bad file. No database needed.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require

# mkconf FILE LINE...: one argument per line (so line numbers are known).
mkconf() { local f=$1; shift; printf '%s\n' "$@" >"$f"; }

base=(
  "# drd test config"                                       #  1
  "[primary]"                                               #  2
  "url = postgresql://postgres@127.0.0.1:5999/postgres"     #  3
  "[backup]"                                                #  4
  "url = postgresql://postgres@127.0.0.1:5998/postgres"     #  5
  "[probe]"                                                 #  6
  "interval = 1s"                                           #  7
  "timeout = 500ms"                                         #  8
  "failures = 3"                                            #  9
  "successes = 2"                                           # 10
  "cooldown = 2m"                                           # 11
  "[http]"                                                  # 12
  "socket = drd.sock"                                       # 13
  "[state]"                                                 # 14
  "db = drd.db"                                             # 15
  "[log]"                                                   # 16
  "level = info"                                            # 17
  "[failover]"                                              # 18
  "policy = manual"                                         # 19
  "runbook = $DRD_ROOT/runbooks/failover.ini"               # 20
  "[failback]"                                              # 21
  "runbook = $DRD_ROOT/runbooks/failback.ini"               # 22
  "[app]"                                                   # 23
  "stop = true"                                             # 24
  "start = true"                                            # 25
)
# with_line N TEXT: the base config with line N replaced by TEXT.
with_line() { local a=("${base[@]}"); a[$(( $1 - 1 ))]=$2; printf '%s\n' "${a[@]}"; }
# inserted N TEXT: the base config with TEXT inserted as line N.
inserted() { local a=("${base[@]}"); printf '%s\n' "${a[@]:0:$(( $1 - 1 ))}" "$2" "${a[@]:$(( $1 - 1 ))}"; }

# run_n FILE: run drd -n; sets OUT (stdout+stderr) and RC.
run_n() { OUT=$(timeout 10 "$DRD" -n -c "$1" 2>&1); RC=$?; }

# bad_case DESC FILE LINE [ERE]: exit 2, a "FILE:LINE:" line (matching ERE
# if given), and no "configuration OK".
bad_case() {
  local desc=$1 f=$2 line=$3 re=${4:-}
  run_n "$f"
  is "$RC" 2 "$desc: exit 2" || diag "$OUT"
  if [ -n "$line" ]; then
    if grep -qF -- "$f:$line: " <<<"$OUT"; then pass "$desc: reports $f:$line:"
    else fail "$desc: reports $f:$line:"; diag "output:" "$OUT"; fi
  fi
  if [ -n "$re" ]; then
    like "$OUT" "$re" "$desc: message names the problem"
  fi
  unlike "$OUT" "configuration OK" "$desc: no 'configuration OK'"
}

# ---- valid configs
ok_conf=$TEST_TMP/ok.conf
mkconf "$ok_conf" "${base[@]}"
run_n "$ok_conf"
is "$RC" 0 "valid config: exit 0" || diag "$OUT"
like "$OUT" "^configuration OK" "valid config: prints 'configuration OK'"
vout=$("$DRD" -n -v -c "$ok_conf" 2>&1)
like "$vout" "probe.interval = 1s" "-n -v: prints the effective options (defaults included)"

# Not a test, a note for the reader: the minimal issue-2 config (no
# [failover]/[failback]/[app]) - drd loads the default runbooks too.
f=$TEST_TMP/minimal.conf
printf '%s\n' "${base[@]:0:17}" >"$f"
run_n "$f"
diag "note: minimal config without [failover]/[app]: exit $RC"
[ "$RC" = 0 ] || diag "$OUT"

# a token a guesser could find: refused at the line of token_file, and the
# token itself is not printed
echo "t0ken-for-tests" >"$TEST_TMP/weak-token"
f=$TEST_TMP/weak_token.conf
inserted 14 "token_file = weak-token" >"$f"
bad_case "token shorter than 128 bits" "$f" 14 "about 90 bits of entropy, 128 are needed"
unlike "$OUT" "t0ken-for-tests" "token shorter than 128 bits: the token is not printed"

full=$TEST_TMP/full.conf
echo "0f1e2d3c4b5a69788796a5b4c3d2e1f0" >"$TEST_TMP/token"
mkconf "$full" \
  "; full config, comments and blank lines" "" \
  "[primary]" "url = postgresql://monitor@127.0.0.1:5999/postgres?sslmode=disable" \
  "app_url = postgresql://app@127.0.0.1:5999/postgres" \
  "[backup]" "url = postgresql://monitor@127.0.0.1:5998/postgres" \
  "app_url = postgresql://app@127.0.0.1:5998/postgres" \
  "[probe]" "interval = 1500ms" "timeout = 1s" "failures = 5" "successes = 3" "cooldown = 1h" \
  "[failover]" "policy = approve" "min_outage = 0s" "block = 1h" \
  "runbook = $DRD_ROOT/runbooks/failover.ini" \
  "[failback]" "runbook = $DRD_ROOT/runbooks/failback.ini" \
  "[app]" "env_file = app.env" "stop = true" "start = true" \
  "[http]" "socket = run/drd.sock" "listen = 127.0.0.1:18080" "token_file = token" \
  "[state]" "db = state/drd.db" \
  "[log]" "level = debug"
run_n "$full"
is "$RC" 0 "config with every issue-2 section, ms/s/h durations: exit 0" || diag "$OUT"
like "$OUT" "configuration OK" "... prints 'configuration OK'"

# ---- bad configs: each kind of error, with its line
f=$TEST_TMP/unknown_key.conf
inserted 10 "bogus_key = 1" >"$f"
bad_case "unknown key" "$f" 10 "bogus_key"

f=$TEST_TMP/unknown_section.conf
mkconf "$f" "${base[@]}" "[bogus]" "x = 1"
bad_case "unknown section" "$f" $(( ${#base[@]} + 1 )) "bogus"

f=$TEST_TMP/bad_duration.conf
with_line 7 "interval = 10 parsecs" >"$f"
bad_case "bad duration '10 parsecs'" "$f" 7

f=$TEST_TMP/bad_duration_unit.conf
with_line 11 "cooldown = 3d" >"$f"
bad_case "bad duration unit '3d'" "$f" 11

f=$TEST_TMP/bad_duration_neg.conf
with_line 8 "timeout = -1s" >"$f"
bad_case "negative duration" "$f" 8

f=$TEST_TMP/bad_int.conf
with_line 9 "failures = three" >"$f"
bad_case "non-numeric failures" "$f" 9

f=$TEST_TMP/no_primary_url.conf
with_line 3 "app_url = postgresql://app@127.0.0.1:5999/postgres" >"$f"
bad_case "missing [primary] url" "$f" "" "url"
if grep -qE -- "^$f(:[0-9]+)?: .*url" <<<"$OUT"; then
  pass "missing [primary] url: reported as '${f}[:LINE]: ...url...'"
else
  fail "missing [primary] url: reported as '${f}[:LINE]: ...url...'"; diag "$OUT"
fi
grep -qF -- "$f:" <<<"$OUT" && ! grep -qE -- "^$f:[0-9]+:" <<<"$OUT" &&
  diag "note: the missing-key error has no line number"

f=$TEST_TMP/no_primary.conf
printf '%s\n' "${base[@]:3}" >"$f"
bad_case "no [primary] section at all" "$f" ""

f=$TEST_TMP/two_errors.conf
a=("${base[@]}"); a[6]="interval = soon"; a[9]="bogus = 1"
printf '%s\n' "${a[@]}" >"$f"
run_n "$f"
is "$RC" 2 "two errors: exit 2"
if grep -qF -- "$f:7:" <<<"$OUT" && grep -qF -- "$f:10:" <<<"$OUT"; then
  pass "two errors: both reported (lines 7 and 10)"
else
  fail "two errors: both reported (lines 7 and 10)"; diag "$OUT"
fi

# ---- unreadable files
run_n "$TEST_TMP/does-not-exist.conf"
is "$RC" 2 "missing file: exit 2"
like "$OUT" "does-not-exist\.conf" "missing file: the message names the file"

run_n "$TEST_TMP"
is "$RC" 2 "a directory as the config file: exit 2"

if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
  f=$TEST_TMP/secret.conf
  mkconf "$f" "${base[@]}"; chmod 000 "$f"
  OUT=$(cd / && timeout 10 runuser -u nobody -- "$DRD" -n -c "$f" 2>&1); RC=$?
  is "$RC" 2 "file not readable by the user (mode 000, as nobody): exit 2"
  like "$OUT" "secret\.conf" "... the message names the file"
elif [ "$(id -u)" != 0 ]; then
  f=$TEST_TMP/secret.conf
  mkconf "$f" "${base[@]}"; chmod 000 "$f"
  run_n "$f"
  is "$RC" 2 "file not readable (mode 000): exit 2"
  like "$OUT" "secret\.conf" "... the message names the file"
else
  skip "mode 000 file" "no 'nobody' user"
  skip "mode 000 file message" "no 'nobody' user"
fi

# ---- drd refuses to start with a bad config
f=$TEST_TMP/start_bad.conf
a=("${base[@]}"); a[6]="interval = soon"
a[12]="socket = $TEST_TMP/start_bad.sock"; a[14]="db = $TEST_TMP/start_bad.db"
printf '%s\n' "${a[@]}" >"$f"
t0=$(now_ms)
OUT=$(timeout 10 "$DRD" -c "$f" -f 2>&1); RC=$?
is "$RC" 2 "drd -f with a bad config exits 2 ($(( $(now_ms) - t0 )) ms)"
grep -qF -- "$f:7:" <<<"$OUT"; ok $? "... and says $f:7:"
[ ! -e "$TEST_TMP/start_bad.sock" ] && [ ! -e "$TEST_TMP/start_bad.db" ]
ok $? "... without creating its socket or state db"

OUT=$(timeout 10 "$DRD" --no-such-option 2>&1); RC=$?
is "$RC" 2 "drd with an unknown option: exit 2"

done_testing
