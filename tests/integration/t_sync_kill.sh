#!/usr/bin/env bash
# t_sync_kill.sh - kill -9 of the sync-back process while it writes to the
# primary (about 60k changed keys; SYNC_KILL_ROWS=100000 for 200k), then
# run it again: the killed run left
# nothing behind (one transaction), the second completes, verify passes, no
# key twice, no row lost. Then the same as an ordinary role (no replica
# role: upserts in FK order), killed during the upserts. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

N=${SYNC_KILL_ROWS:-30000}
sync_clusters || bail_out "cannot start the clusters"
cat >"$TEST_TMP/big.sql" <<EOF
CREATE TABLE big (id bigserial PRIMARY KEY, grp int NOT NULL, payload text, doc jsonb);
CREATE TABLE big_child (id bigserial PRIMARY KEY, big_id bigint REFERENCES big (id) ON DELETE CASCADE, v int);
INSERT INTO big (grp, payload, doc)
  SELECT g % 100, md5(g::text), jsonb_build_object('g', g) FROM generate_series(1, $N) g;
INSERT INTO big_child (big_id, v) SELECT g, g FROM generate_series(1, $N, 10) g;
EOF
# ~2N changed keys: every row updated, N new rows, 1% deleted
cat >"$TEST_TMP/big_outage.sql" <<EOF
UPDATE big SET payload = payload || '+', doc = doc || '{"upd": true}';
INSERT INTO big (grp, payload, doc)
  SELECT g % 100, 'new ' || g, jsonb_build_object('new', g) FROM generate_series(1, $N) g;
DELETE FROM big WHERE id % 100 = 7;
INSERT INTO big_child (big_id, v) SELECT id, 0 FROM big WHERE id > $N AND id % 50 = 0;
EOF
SYNC_TABLES="big big_child"
SYNC_AGG_TABLES=$SYNC_TABLES     # compared server-side, not printed
CONF=$TEST_TMP/s.conf
sync_config "$CONF"
# the same backup role (it owns the ledger), an ordinary role on the primary
sync_config "$TEST_TMP/user.conf" primary.url="$(pg_url primary drd_sync:s3cret-sync app)"

sync_backends() { sq primary "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drd-sync'"; }
# writing to the real table (not the temp tables): the apply phase
applying() {
  [ "$(sq primary "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drd-sync'
                     AND state = 'active' AND query ~ '^(DELETE FROM ONLY|INSERT INTO) \"public\"'")" -ge 1 ]
}

# The outage once: ~2N changed keys in the ledger.
sync_load "$TEST_TMP/big.sql" 2>/dev/null || bail_out "cannot load"
sc "$CONF" capture; [ "$res" = ok ] || bail_out "capture failed: $err"
sqf backup "$TEST_TMP/big_outage.sql" >/dev/null || bail_out "outage writes failed"

# kill_mid_apply CONF DESC: from a primary as it was before the outage
kill_mid_apply() {
  local conf=$1 desc=$2 pid sum0
  sync_load "$TEST_TMP/big.sql" primary 2>/dev/null || bail_out "cannot load the primary"
  sum0=$(db_checksum primary)
  "$SYNC_CHECK" "$conf" sync-back >"$TEST_TMP/killed.out" 2>&1 &
  pid=$!
  proc_track "$pid"
  # as tight as psql allows: the apply lasts about a second
  local deadline=$(( $(now_ms) + 60000 )) seen=1
  until applying; do
    (( $(now_ms) < deadline )) && proc_alive "$pid" || { seen=0; break; }
  done
  if [ "$seen" = 1 ]; then
    kill -KILL "$pid"
    pass "$desc: sync-back killed (-9) while writing to the primary"
  else
    fail "$desc: never saw sync-back write to the primary"
    diag_file "$TEST_TMP/killed.out"
  fi
  { wait "$pid"; } 2>/dev/null
  poll_until 30 eval '[ "$(sync_backends)" = 0 ]'
  ok $? "$desc: the server rolled the killed session back (${POLL_ELAPSED_MS} ms)"
  is "$(db_checksum primary)" "$sum0" "$desc: the killed run left nothing on the primary"
  SYNC_CHECK_PROGRESS_MS=100 sc "$conf" sync-back
  is "$res" ok "$desc: sync-back again: ok ($ms ms)"
  [ "$res" = ok ] || diag "$out"
  like "$(grep -m1 -E '^progress lines=[1-9]' <<<"$out")" "progress lines=[1-9]" \
    "$desc: progress lines could be read while it ran (sync_job_progress)"
  sc "$conf" verify
  is "$res" ok "$desc: verify passes"
  same_data "$desc: the primary holds exactly the backup's rows (nothing lost)"
  is "$(sq primary "SELECT count(*) - count(DISTINCT id) FROM big")" 0 "$desc: no key twice"
  is "$(sq primary "SELECT count(*) FROM big")" "$(sq backup "SELECT count(*) FROM big")" \
    "$desc: same row count ($(sq backup "SELECT count(*) FROM big"))"
}

kill_mid_apply "$CONF" "superuser"
kill_mid_apply "$TEST_TMP/user.conf" "ordinary role"

done_testing
