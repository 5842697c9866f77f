#!/usr/bin/env bash
# t_pooler_check.sh - [primary] url itself is a real pgbouncer in
# transaction mode (one server connection: every client shares it), the
# app's URL too, [refresh] mode = reconcile reading through it (its
# default source): the probes see the primary healthy, reconcile copies,
# `drctl check` passes and leaves no session setting behind on the
# pooler's server connection (a session SET statement_timeout there would
# apply to the app's next queries); `check` says that a pooler sits in
# front and what needs a direct connection; a frozen primary behind the
# pooler does not hang `check` (its statements have a client-side
# deadline); the primary down behind the pooler opens the breaker (an
# outage, not a misconfiguration) and closes it when it is back. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
cd "$DRD_ROOT" || exit 1
drd_require
command -v pgbouncer >/dev/null || bail_out "pgbouncer is not installed (make deps)"

for c in primary backup; do { pg_new $c && pg_start $c; } || bail_out "cannot start $c"; done
for c in primary backup; do
  pg_psql $c "CREATE DATABASE app" >/dev/null || bail_out "create app on $c"
  pg_psql $c "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL,
                                  updated_at timestamptz NOT NULL DEFAULT now())" app >/dev/null \
    || bail_out "schema on $c"
done
pg_psql primary "INSERT INTO items (id, name) SELECT g, 'item ' || g FROM generate_series(1, 1000) g" app >/dev/null

# ------------------------------------------------------------ pgbouncer ----
pgbouncer_start primary app postgres 1 || bail_out "pgbouncer did not start or does not answer"
POOLED="postgresql://postgres@127.0.0.1:$BPORT/app"
via_pooler() { psql -X -qAt -h 127.0.0.1 -p "$BPORT" -U postgres -c "$1" app; }

drd_config "$TEST_TMP/drd.conf" primary.url="$POOLED" primary.app_url="$POOLED" \
  backup.url="$(pg_url backup postgres app)" probe.interval=1s probe.timeout=1s \
  refresh.mode=reconcile refresh.every=2s refresh.dir="$TEST_TMP/dumps" \
  app.env_file="$TEST_TMP/app.env" log.level=debug || bail_out "config"
echo "DATABASE_URL=$POOLED" >"$TEST_TMP/app.env"

plan 10

drd_start || bail_out "drd did not start"
if drd_wait_field 15 .targets.primary.breaker closed && drd_wait_field 5 .targets.primary.healthy true; then
  pass "the probes see the primary healthy through the pooler"
else
  fail "primary: $(drd_status_json | jq -c .targets.primary)"; diag_file "$DRD_LOG" 20
fi
same() { [ "$(pg_psql primary "SELECT count(*) FROM items" app)" = "$(pg_psql backup "SELECT count(*) FROM items" app)" ]; }
poll_until 30 same; ok $? "reconcile copies through the pooler (its default source, [primary] url)"

# ---------------------------------------------------------------- check ----
out=$(drctl check 2>&1); st=$?
if [ $st = 0 ] && ! grep -q '^fail' <<<"$out"; then
  pass "drctl check passes with [primary] url a transaction-mode pooler"
else
  fail "drctl check exit $st"; diag "$out"
fi
like "$(grep -E '^(ok|warn) +primary ' <<<"$out")" 'pooler' "check says a pooler sits in front of the primary"
like "$(grep -E '^(ok|warn) +primary ' <<<"$out")" 'fence.*sync-back.*logical' \
  "check says what needs a direct connection"
like "$(grep -E '^ok +privileges-primary ' <<<"$out")" 'every privilege' "the privileges are tested through the pooler"

# the one server connection behind the pooler, as the app gets it next:
# no setting of drd's check left on it
is "$(via_pooler "SELECT current_setting('statement_timeout') || ' ' || current_setting('default_transaction_read_only')")" \
  "0 off" "check leaves no session setting on the pooler's server connection"

# ------------------------------------------ the primary down behind it ----
# pgbouncer still accepts drd's connections; its error for the query must
# count as an outage (breaker), not as a misconfiguration
pg_crash primary
if drd_wait_field 20 .targets.primary.breaker open; then
  pass "the primary down behind the pooler opens the breaker ($(drd_json .targets.primary.error_class))"
else
  fail "primary down: $(drd_status_json | jq -c '.targets.primary | {breaker, error_class, last_error}')"
fi
pg_start primary || bail_out "primary did not restart"
# pgbouncer retries a failed server login after server_login_retry (15 s)
drd_wait_field 60 .targets.primary.breaker closed; ok $? "and closes it again when the primary is back"

# -------------------------------------------- a frozen primary behind it ----
# every process of the cluster (the pooler's server connection is an
# existing backend: stopping the postmaster alone would not freeze it)
freeze_all() {   # STOP|CONT
  local pm; pm=$(pg_pid primary) || return 1
  kill -s "$1" $(ps -o pid= --ppid "$pm") "$pm" 2>/dev/null
}
drd_stop >/dev/null 2>&1
freeze_all STOP
cleanup_add "freeze_all CONT"
t0=$(now_ms)
timeout 30 "$DRCTL" -c "$DRD_CONF" check >"$TEST_TMP/frozen.out" 2>&1; st=$?
ms=$(( $(now_ms) - t0 ))
freeze_all CONT
# correctness, not speed: it returned (not killed by timeout) and failed
if [ $st != 124 ] && [ $st != 0 ] && grep -qE '^fail +primary ' "$TEST_TMP/frozen.out"; then
  pass "a frozen primary behind the pooler: check returns and fails 'primary' (${ms} ms)"
else
  fail "check with the primary frozen: exit $st after ${ms} ms"; diag_file "$TEST_TMP/frozen.out" 20
fi

done_testing
