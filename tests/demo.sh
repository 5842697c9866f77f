#!/usr/bin/env bash
# tests/demo.sh (`make demo`) - a local sandbox: two PostgreSQL clusters
# (primary, backup) on loopback under ./demo/, a config pointing at them,
# and `drd -f` in the foreground. Prints how to watch it and how to cause an
# outage. Ctrl-C stops drd and both clusters; the data stays in ./demo/ and
# the next `make demo` reuses it (DEMO_FRESH=1, or rm -rf demo, starts over).
# Works as root (the clusters then run as the postgres user) and as a
# normal user.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
demo=$root/demo
rel=${demo#"$PWD"/}            # how to spell demo/ from the caller's cwd

# The clusters live in demo/ unless the postgres user cannot reach it or
# the path is too long for a unix socket; then in /var/tmp (linked).
pgdir=$demo
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$root" 2>/dev/null; then
  pgdir=/var/tmp/drd-demo-$(echo "$demo" | md5sum | cut -c1-8)
elif [ $(( ${#demo} + 30 )) -gt 100 ]; then
  pgdir=/var/tmp/drd-demo-$(id -u)-$(echo "$demo" | md5sum | cut -c1-8)
fi

if [ "${DEMO_FRESH:-0}" = 1 ] && [ -d "$demo" ]; then
  echo "demo: DEMO_FRESH=1, removing the previous demo"
  (TEST_TMP=$pgdir; . "$root/tests/lib/pg.sh"; PG_CLEANUP_MODE=fast; exit 0)
  rm -rf "$demo" "$pgdir"
fi
mkdir -p "$demo" || exit 1
[ "$pgdir" != "$demo" ] && { mkdir -p "$pgdir" && ln -sfn "$pgdir" "$demo/clusters"; }

TEST_TMP=$pgdir              # pg.sh: never removed since we chose it
PG_CLEANUP_MODE=fast         # Ctrl-C: a clean shutdown of both clusters
. "$root/tests/lib/pg.sh"
. "$root/tests/lib/drd.sh"
for x in "$DRD" "$DRCTL"; do
  [ -x "$x" ] || { echo "demo: $x is not built (run make)" >&2; exit 1; }
done

# primary, backup: what drd watches; stage-primary, stage-backup: a staging
# copy of them, the [drill] environment that `drctl drill` rehearses on.
for c in primary backup stage-primary stage-backup; do
  if pg_exists "$c"; then
    echo "demo: reusing cluster $c ($(pg_datadir "$c"))"
  else
    rm -rf "$(pg_dir "$c")"
    echo "demo: creating cluster $c"
    pg_new "$c" >/dev/null || { echo "demo: initdb failed for $c" >&2; exit 1; }
  fi
  pg_thaw "$c"
  if pg_running "$c"; then
    echo "demo: $c is already running (port $(pg_port "$c"))"
    continue
  fi
  if ! pg_start "$c" 2>/dev/null; then
    # a reused cluster whose port got taken meanwhile: move it
    pg_set_port "$c" "$(free_port)" && pg_start "$c" ||
      { echo "demo: cannot start $c; see $(pg_log "$c")" >&2; exit 1; }
  fi
done

# The app's table on both sides, as a real app's schema would be (the
# failover's capture step records changes to the tables that exist then;
# one the app created on the backup during the outage would not be synced
# back), and the backup's sequence far past the primary's, as a refresh's
# bump-sequences step would leave it, so that rows written there during an
# outage never take ids the primary has used. Idempotent (reused clusters).
app_table="CREATE TABLE IF NOT EXISTS drd_app_writes (id bigserial PRIMARY KEY,
           at timestamptz NOT NULL DEFAULT now(), writer text NOT NULL, seq bigint NOT NULL)"
for c in primary backup stage-primary stage-backup; do
  [ "$(pg_psql "$c" "SELECT to_regclass('drd_app_writes') IS NOT NULL")" = t ] ||
    pg_psql "$c" "$app_table" >/dev/null || { echo "demo: cannot create the app's table on $c" >&2; exit 1; }
done
for pair in "primary backup" "stage-primary stage-backup"; do
  set -- $pair
  last=$(pg_psql "$1" "SELECT last_value FROM drd_app_writes_id_seq") &&
    pg_psql "$2" "SELECT setval('drd_app_writes_id_seq', greatest(last_value, $last::bigint + 1000000000))
                  FROM drd_app_writes_id_seq" >/dev/null ||
    { echo "demo: cannot move the sequence of $2" >&2; exit 1; }
done

# The sample app: writes a row every 100 ms through DATABASE_URL of its env
# file; drd's runbooks stop/start it with tests/app/appctl.
app=$demo/app
mkdir -p "$app"
[ -f "$app/app.conf" ] || echo "HEALTH_PORT=$(free_port)" >"$app/app.conf"
. "$app/app.conf"
[ -f "$app/app.env" ] || printf '# the sample app reads DATABASE_URL from here\nDATABASE_URL=%s\n' \
  "$(pg_url primary)" >"$app/app.env"
# the staging app: the same sample app on the staging clusters (drill)
stage=$demo/stage-app
mkdir -p "$stage"
[ -f "$stage/app.conf" ] || echo "HEALTH_PORT=$(free_port)" >"$stage/app.conf"
STAGE_PORT=$(sed -n 's/^HEALTH_PORT=//p' "$stage/app.conf")
[ -f "$stage/app.env" ] || printf '# the staging app reads DATABASE_URL from here\nDATABASE_URL=%s\n' \
  "$(pg_url stage-primary)" >"$stage/app.env"
[ -f "$demo/token" ] || { head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$demo/token"; chmod 600 "$demo/token"; }
[ -f "$demo/http_port" ] || free_port >"$demo/http_port"
http_port=$(cat "$demo/http_port")

conf=$demo/drd.conf
drd_config "$conf" \
  probe.interval= probe.timeout= probe.failures= probe.successes= probe.cooldown= \
  failover.policy=approve \
  app.env_file="$app/app.env" app.stop="$root/tests/app/appctl stop $app" \
  app.start="$root/tests/app/appctl start $app" app.health_url="http://127.0.0.1:$HEALTH_PORT/health" \
  http.socket="$demo/drd.sock" http.listen="127.0.0.1:$http_port" http.token_file="$demo/token" \
  http.web_root="$root/web" state.db="$demo/drd.db" log.level=info \
  drill.primary_url="$(pg_url stage-primary)" drill.backup_url="$(pg_url stage-backup)" \
  drill.env_file="$stage/app.env" drill.stop="$root/tests/app/appctl stop $stage" \
  drill.start="$root/tests/app/appctl start $stage" \
  drill.health_url="http://127.0.0.1:$STAGE_PORT/health" \
  drill.fault="$(pg_ctl_cmd stage-primary) stop -m immediate" \
  drill.restore="$(pg_ctl_cmd stage-primary) start -w" drill.dir="$demo/drill" || exit 1
{
  echo "# drd demo config, written by tests/demo.sh (make demo) at each start."
  echo "# No [probe] section: drd's defaults (interval 1s, timeout 1s, failures 3,"
  echo "# successes 2, cooldown 10s). policy = approve: an outage asks first."
  tail -n +2 "$conf"
} >"$conf.new" && mv "$conf.new" "$conf"

"$root/tests/app/appctl" start "$app" >/dev/null || { echo "demo: the sample app did not start; see $app/app.log" >&2; exit 1; }
cleanup_add "'$root/tests/app/appctl' stop '$app' >/dev/null 2>&1"
"$root/tests/app/appctl" start "$stage" >/dev/null || { echo "demo: the staging app did not start; see $stage/app.log" >&2; exit 1; }
cleanup_add "'$root/tests/app/appctl' stop '$stage' >/dev/null 2>&1"

pgctl_p=$(pg_ctl_cmd primary)
pidfile=$(pg_datadir primary)/postmaster.pid
dctl="${DRCTL#"$PWD"/} -c $rel/drd.conf"
cat <<EOF

=== drd demo ===========================================================
  primary   $(pg_url primary)    data $(pg_datadir primary)
  backup    $(pg_url backup)    data $(pg_datadir backup)
  app       $rel/app (env file app.env, log app.log, health :$HEALTH_PORT)
  config    $rel/drd.conf        state $rel/drd.db
  page      http://127.0.0.1:$http_port/   token: $rel/token

In another terminal (from $PWD):
  status            $dctl status        (--json for JSON)
  cause an outage   $pgctl_p stop -m immediate
                    -> the primary's breaker opens within ~3 s and drd asks:
  approve it        $dctl status                 (shows the approval ID)
                    $dctl approve ID             (follows the failover step by step)
                    -> the app is stopped, DATABASE_URL in $rel/app/app.env
                       points at the backup, the app writes there
  bring it back     $pgctl_p start
                    -> drd fences it (read-only) while the app is on the backup
  fail back         $dctl failback               (asks to confirm, then follows the run)
                    -> the app is stopped, the rows it wrote on the backup are
                       copied to the primary (sync-back), then both sides are
                       compared (verify): every backup row is on the primary;
                       the primary's older rows, which the demo never copied
                       to the backup, are kept and reported, not a difference
                    -> the app is back on the primary (no approval needed)
  freeze instead    kill -STOP \$(head -1 $pidfile)   (thaw: kill -CONT ...)
  history           $dctl history
  readiness         $dctl check                  (what drd also checks hourly)
  plan only         $dctl failover --dry-run     (what a failover would do; runs nothing)
  rehearse          $dctl drill                  (a whole failover + failback on the
                    staging clusters stage-primary/stage-backup and the staging
                    app in $rel/stage-app; reports detection, RTO, rows, sync-back)

Ctrl-C stops drd, the app and both clusters (data kept in $rel/;
DEMO_FRESH=1 make demo starts afresh).
========================================================================

EOF

# Once drd has probed both targets, show the status once (in the background).
_demo_probed() {
  [ "$(drd_json '[.targets[].last_probe_at | select(. != null)] | length' 2>/dev/null)" = 2 ]
}
( poll_until 15 _demo_probed && { echo; "$DRCTL" -c "$conf" status; echo; } ) &
proc_track $!

# drd runs in the foreground of the terminal (Ctrl-C reaches it directly);
# the script waits for it and forwards INT/TERM sent to the script itself.
"$DRD" -c "$conf" -f &
drd_pid=$!
trap 'kill -INT $drd_pid 2>/dev/null' INT
trap 'kill -TERM $drd_pid 2>/dev/null' TERM
rc=0
while :; do
  wait "$drd_pid"; rc=$?
  proc_alive "$drd_pid" || break
done
{ wait "$drd_pid"; } 2>/dev/null; r=$?; [ "$r" != 127 ] && rc=$r
trap 'exit 130' INT
trap 'exit 143' TERM
echo
echo "demo: drd exited ($rc); stopping the clusters (data kept in $rel/)"
exit $rc
