#!/usr/bin/env bash
# t_check.sh - `drctl check`: against a healthy sandbox (two clusters, the
# sample app with its env file and health URL, drd running) every check is
# ok (backup-lag only warns: [refresh] mode = off, so nobody measures the
# backup's freshness), exit 0, in under 2 s; then one thing is broken at a
# time (each in its own copy of the config, drd keeps running on the good
# one) and exactly that check fails, with its reason, exit 1: env file
# missing, env file not writable (drctl run as `nobody`), start command
# removed, backup role without CREATE/TRIGGER, health URL down, stale
# backup (logical mode without a subscription). A broken config is one
# failing `config` check with FILE:LINE. Nothing is changed.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
. "$(dirname "$0")/../lib/failover.sh"
fo_require

fo_clusters || bail_out "cannot start the clusters"
fo_app_init || bail_out "cannot prepare the app"
fo_config "$TEST_TMP/drd.conf" || bail_out "fo_config"
GOOD=$DRD_CONF
fo_app_start; ok $? "the sample app starts on the primary"
drd_start || bail_out "drd did not start"
drd_wait_healthy 15; ok $? "drd: both targets healthy"

# run_check CONF [PREFIX...]: drctl check --json into $OUT, exit into $RC.
run_check() {
  local conf=$1; shift
  OUT=$("$@" "$DRCTL" -c "$conf" check --json 2>"$TEST_TMP/check.err"); RC=$?
}
# names with status S in $OUT, space-separated
with_status() { jq -r --arg s "$1" '[.[] | select(.status == $s) | .name] | join(" ")' <<<"$OUT" 2>/dev/null; }
reason_of() { jq -r --arg n "$1" '.[] | select(.name == $n) | .reason' <<<"$OUT" 2>/dev/null; }
# variant NAME KEY=VALUE...: a copy of the good config with overrides
variant() {
  local f=$TEST_TMP/$1.conf; shift
  fo_config "$f" "$@" >/dev/null || return 1
  DRD_CONF=$GOOD
  echo "$f"
}
show() { diag "exit $RC" "$OUT" "$(cat "$TEST_TMP/check.err")"; }

env_sum=$(md5sum <"$FO_ENV")

# ------------------------------------------------------------ healthy ----
t0=$(now_ms)
run_check "$GOOD"
el=$(( $(now_ms) - t0 ))
is "$RC" 0 "healthy sandbox: drctl check exits 0" || show
is "$(with_status fail)" "" "... nothing fails"
is "$(with_status warn)" "backup-lag" "... only backup-lag warns ([refresh] mode = off)" || show
like "$(reason_of backup-lag)" "^unknown" "... its reason: unknown"
is "$(jq length <<<"$OUT")" 15 "... fifteen checks"
# the budget is 2 s (make bench measures it); slack for a loaded CI machine
cmp_ok "$el" -lt 4000 "... within its 2 s budget plus slack (${el} ms)"
text=$("$DRCTL" -c "$GOOD" check 2>&1)
grep -qE '^ok +env-file +.*points at the active side' <<<"$text"
ok $? "plain output: one line per check (ok  env-file ...)" || diag "$text"
like "$text" "warn +backup-lag +unknown.*\(fix: " "... a warning carries its fix"

# --------------------------------------------------- one thing broken ----
# expect_only CONF CHECK REASON_ERE DESC [PREFIX...]
expect_only() {
  local conf=$1 name=$2 ere=$3 desc=$4; shift 4
  run_check "$conf" "$@"
  is "$RC" 1 "$desc: exit 1" || show
  is "$(with_status fail)" "$name" "... only $name fails" || show
  like "$(reason_of "$name")" "$ere" "... reason: $ere"
}

c=$(variant missing_env app.env_file="$TEST_TMP/nodir/app.env")
expect_only "$c" env-file "nodir/app.env is missing" "env file in a missing directory"

if id nobody >/dev/null 2>&1 && runuser -u nobody -- test -x "$DRCTL" -a -r "$GOOD"; then
  expect_only "$GOOD" env-file "is not writable" "env file not writable by the user running drctl (nobody)" \
    runuser -u nobody --
else
  skip "env file not writable: cannot run drctl as nobody" "runuser/nobody unavailable"
fi

c=$(variant no_start app.start="$TEST_TMP/gone/appctl start $FO_APP_DIR")
expect_only "$c" app-commands "gone/appctl is not an executable file" "start command removed"

pg_psql backup "CREATE ROLE weak LOGIN" >/dev/null || bail_out "cannot create role weak"
c=$(variant weak_backup backup.url="$(pg_url backup weak)")
expect_only "$c" privileges-backup "lacks .*CREATE on database appdb" "backup role with only CONNECT"

c=$(variant health_down app.health_url="http://127.0.0.1:$(free_port)/health")
expect_only "$c" health-url "does not answer" "health URL down (closed port)"

c=$(variant stale refresh.mode=logical refresh.max_lag=1s)
expect_only "$c" backup-lag "stale: .*no subscription drd_sub" "stale backup (logical mode, no subscription)"

# the app's tables in a schema the backup's app database lacks (e.g. a
# refresh that copied another database): a failover would land on nothing
pg_psql primary "CREATE SCHEMA extra; CREATE TABLE extra.things (id int PRIMARY KEY);
                 CREATE TABLE extra.more (id int PRIMARY KEY)" appdb >/dev/null
c=$(variant no_tables sync.schemas="public, extra")
expect_only "$c" backup-schema "lacks 2 of the primary's 3 tables: extra\.more, extra\.things" \
  "the backup's app database lacks tables of the primary's"

printf '[primary]\nurl = x\nbogus_key = 1\n' >"$TEST_TMP/bad.conf"
run_check "$TEST_TMP/bad.conf"
is "$RC" 1 "broken config: exit 1"
is "$(jq -r '.[0].name + " " + .[0].status' <<<"$OUT")" "config fail" "... one failing config check" || show
like "$(reason_of config)" "bad.conf:[0-9]+: " "... with FILE:LINE"

# ------------------------------------------------------- no secrets -----
pg_psql primary "ALTER ROLE postgres PASSWORD 's3cretpw'" >/dev/null
c=$(variant secret primary.url="postgresql://postgres:s3cretpw@127.0.0.1:1/postgres")
run_check "$c"
unlike "$OUT" "s3cretpw" "a password in a URL is never printed" || show
like "$(reason_of primary)" "cannot connect" "... the unreachable primary fails"

is "$(md5sum <"$FO_ENV")" "$env_sum" "the env file is unchanged"
fo_app_running; ok $? "the app still runs"
done_testing
