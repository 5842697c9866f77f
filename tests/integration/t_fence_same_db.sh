#!/usr/bin/env bash
# t_fence_same_db.sh - drd's url and the app's app_url name the same database
# (one database, as on many hosted services). The read-only fence then
# applies to drd's own new sessions too: fencing again and lifting the fence
# must still work. A manual failover fences the (reachable) primary; the
# failback syncs back, verifies, lifts the fence and succeeds on its own.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require

plan 9
for c in primary backup; do pg_new $c >/dev/null && pg_start $c || bail_out "cluster $c"; done
env=$TEST_TMP/app.env
echo "DATABASE_URL=$(pg_url primary)" >"$env"
drd_config "$TEST_TMP/drd.conf" app.env_file="$env" app.stop=true app.start=true failover.policy=manual \
  || bail_out "config"
drd_start; ok $? "drd starts"
drd_wait_healthy 20; ok $? "both targets healthy"

out=$("$DRCTL" -c "$DRD_CONF" failover --yes 2>&1); rc=$?
is "$rc" 0 "manual failover succeeds" || diag "$out"
ro=$(pg_psql primary "SHOW default_transaction_read_only")
is "$ro" on "the primary (drd's own database) is fenced read-only"

out=$("$DRCTL" -c "$DRD_CONF" failback --yes 2>&1); rc=$?
is "$rc" 0 "failback succeeds without any question" || diag "$out"
like "$out" "unfence-primary +fence +done" "... unfence-primary done"
ro=$(pg_psql primary "SHOW default_transaction_read_only")
is "$ro" off "the fence is lifted"
is "$(grep -c "$(pg_url primary)" "$env")" 1 "the env file points at the primary again"
is "$(drd_json .active)" primary "active: primary"
done_testing
