#!/usr/bin/env bash
# t_envfile.sh - drd (root) never writes through a link planted by the app's
# user (issue 11 item 2), through the real daemon:
#  - the app's directory belongs to the app's user (nobody), and its env
#    file is a link to a root-owned file elsewhere: `drctl check` fails the
#    env-file check naming the rule; a failover stops in its preflight
#    before the app is stopped, and with the preflight skipped switch-env
#    itself refuses: the run is failed, the root-owned file is untouched
#    (bytes, inode, mode),
#    and no .drd-prev or temporary file appears anywhere; still on the
#    primary;
#  - a deploy tool's layout (app.env -> shared/app.env, all the app's):
#    check passes, the failover succeeds, the link stays a link, the shared
#    file is rewritten and its .drd-prev kept next to it, owned by the app.
# Needs root (another user owns the app's directory).
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require
command -v jq >/dev/null || bail_out "jq is not installed"
if [ "$(id -u)" != 0 ]; then
  echo "1..0 # SKIP needs root (the app's directory must belong to another user)"
  exit 0
fi
APP_USER=nobody
id "$APP_USER" >/dev/null 2>&1 || bail_out "no user $APP_USER"

for c in primary backup; do pg_new $c >/dev/null && pg_start $c || bail_out "cluster $c"; done

APPDIR=$TEST_TMP/app          # the app's, as on a server: /srv/app
ETC=$TEST_TMP/etc             # root's
mkdir -p "$APPDIR" "$ETC" && chmod 0755 "$APPDIR" "$ETC" && chown "$APP_USER" "$APPDIR" ||
  bail_out "cannot prepare the directories"
VICTIM=$ETC/victim.conf
printf 'DATABASE_URL=%s\n# root-only settings\nroot_only=1\n' "$(pg_url primary)" >"$VICTIM"
chmod 0644 "$VICTIM"
cp -p "$VICTIM" "$TEST_TMP/victim.orig"
ENV=$APPDIR/app.env
ln -s ../etc/victim.conf "$ENV" && chown -h "$APP_USER" "$ENV" || bail_out "cannot plant the link"

RB=$TEST_TMP/failover.ini
cat >"$RB" <<EOF
[step stop-app]
action  = exec
command = true

[step switch-env]
action  = switch-env
target  = backup

[step start-app]
action  = exec
command = true
EOF
drd_config "$TEST_TMP/drd.conf" app.env_file="$ENV" failover.runbook="$RB" || bail_out "config"
drd_start || bail_out "drd did not start"
drd_wait_healthy 20; ok $? "both targets healthy"

# temps DIR...: the temporary or backup files drd left in DIRs.
leftovers() { find "$@" -maxdepth 1 \( -name '*.drd-tmp*' -o -name '*.drd-prev' \) 2>/dev/null; }

# ------------------------------------------------------ the planted link ----
js=$("$DRCTL" -c "$DRD_CONF" check --json 2>/dev/null)
is "$(jq -r '.[] | select(.name == "env-file") | .status' <<<"$js")" fail \
  "drctl check: env-file fails for a link planted in the app's directory"
reason=$(jq -r '.[] | select(.name == "env-file") | .reason' <<<"$js")
like "$reason" "refusing to write $ENV" "... naming the path" || diag "$reason"
like "$reason" "belongs to $APP_USER" "... and who could redirect it"

ino=$(stat -c %i "$VICTIM")
# run_json: the newest run as GET /api/runs/ID gives it.
run_over() { local s; s=$(drd_sql "SELECT state FROM runs WHERE id = $1"); [ "$s" = failed ] || [ "$s" = succeeded ]; }
run_json() { local r; r=$(drd_api "/api/runs/$(drd_sql "SELECT max(id) FROM runs")"); echo "${r%$'\n'*}"; }
out=$("$DRCTL" -c "$DRD_CONF" failover --yes 2>&1)
run=$(drd_sql "SELECT max(id) FROM runs")
st=$(drd_sql "SELECT state FROM runs WHERE id = $run")
[ "$st" = failed ] || [ "$st" = waiting ]; ok $? "failover through the planted link: run $run stops ($st)" || diag "$out"
like "$(run_json | jq -c . 2>/dev/null)" "refusing to write $ENV" "the API shows why (the rule, the path)" ||
  diag "$(run_json)"
is "$(drd_sql "SELECT state FROM steps WHERE run_id = $run AND name = 'stop-app'")" pending \
  "the app was not stopped (the run's preflight applies the rule)"
# Skip the preflight: switch-env itself must refuse too.
aid=$(drd_sql "SELECT id FROM approvals WHERE run_id = $run AND state = 'pending' ORDER BY id LIMIT 1")
if [ -n "$aid" ]; then
  out=$("$DRCTL" -c "$DRD_CONF" approve "$aid" --skip 2>&1)
  poll_until 15 run_over "$run"
fi
is "$(drd_sql "SELECT state FROM steps WHERE run_id = $run AND name = 'switch-env'")" failed \
  "switch-env (preflight skipped) refuses: failed" || diag "$out"
like "$(run_json | jq -r '.steps[] | select(.name == "switch-env") | .detail')" \
  "refusing to write $ENV" "... with the rule and the path"
is "$(drd_sql "SELECT state FROM runs WHERE id = $run")" failed "the run is failed"
cmp -s "$VICTIM" "$TEST_TMP/victim.orig"; ok $? "the root-owned target is byte for byte unchanged"
is "$(stat -c '%i %a %U' "$VICTIM")" "$ino 644 root" "... same inode, mode and owner"
is "$(leftovers "$ETC" "$APPDIR" | tr '\n' ' ')" "" "no .drd-prev, no temporary file anywhere"
[ -L "$ENV" ]; ok $? "the planted link is left as it was"
is "$(drd_json .active)" primary "still active: primary"

# ------------------------------------------------ a deploy tool's layout ----
mkdir "$APPDIR/shared" && chown "$APP_USER" "$APPDIR/shared" && chmod 0755 "$APPDIR/shared"
printf 'APP=1\nDATABASE_URL=%s\n' "$(pg_url primary)" >"$APPDIR/shared/app.env"
chown "$APP_USER" "$APPDIR/shared/app.env" && chmod 0600 "$APPDIR/shared/app.env"
rm "$ENV" && ln -s shared/app.env "$ENV" && chown -h "$APP_USER" "$ENV" || bail_out "cannot relink"

js=$("$DRCTL" -c "$DRD_CONF" check --json 2>/dev/null)
st=$(jq -r '.[] | select(.name == "env-file") | .status + ": " + .reason' <<<"$js")
unlike "$st" "refusing" "drctl check: no refusal for current -> shared, all the app's" || diag "$st"
out=$("$DRCTL" -c "$DRD_CONF" failover --yes 2>&1); rc=$?
is "$rc" 0 "failover through the deploy tool's link succeeds" || diag "$out"
[ -L "$ENV" ]; ok $? "the link stays a link"
is "$(sed -n 's/^DATABASE_URL=//p' "$APPDIR/shared/app.env")" "$(pg_url backup)" "the shared file points at the backup"
is "$(stat -c '%U %a' "$APPDIR/shared/app.env.drd-prev" 2>&1)" "$APP_USER 600" \
  ".drd-prev next to the real file, the app's, same mode"
cmp -s "$VICTIM" "$TEST_TMP/victim.orig"; ok $? "the root-owned file is still unchanged"
done_testing
