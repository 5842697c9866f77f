#!/usr/bin/env bash
# t_sync_window.sh - failback with the app stopped only for the tail
# (issue 13, src/sync/sync_window.c), driven by build/tools/sync_check:
#   - pre-sync (sync-back online = true) replays the ledger in passes while
#     the app still writes, verifies every table against one snapshot of
#     the backup, keeps the result per table, reports the passes, the tail
#     and the expected stop window;
#   - the stop window's sync-back replays only the entries after the last
#     pass; verify checks every key the outage touched (plus changed
#     keyless tables) and says so: a touched row changed on the primary
#     behind the fence after the online verify fails it (table, count,
#     key; never a value), so does a key the outage deleted found again
#     on the primary;
#   - a row the outage did not touch that the primary changed is reported
#     by the online verify (the backup was behind: verify's rule); a
#     touched row changed on the primary after a pass fails pre-sync's
#     online verify (the app is never stopped); a row of the tail changed
#     on the primary after sync-back fails the stop window's verify; a
#     write left after the last pass fails it too;
#   - a conflict found online stops pre-sync, nothing written;
#   - writes going on during pre-sync all arrive (snapshot-exact tails);
#   - a keyless table copied online is not a conflict in the next pass;
#   - without an online result of this run, verify reads every table.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
CONF=$TEST_TMP/s.conf
sync_config "$CONF" sync.schemas="public, other"
export SYNC_CHECK_RUN_ID=7

fresh() {   # the schema on both, capture, the outage's writes on the backup
  sync_load 2>/dev/null || return 1
  sc "$CONF" capture; [ "$res" = ok ] || return 1
  sqf backup "$SQL_DIR/sync_outage.sql" >/dev/null
}

# ------------------------------------------------------------- pre-sync ----
fresh || bail_out "setup"
sc "$CONF" pre-sync
is "$res/$rc" "ok/0" "pre-sync: ok"
[ "$res" = ok ] || diag "$out"
like "$out" "pass 1 \(online\): [0-9]+ ledger entries replayed" "it reports the first pass"
like "$out" "pass 2 \(the snapshot verify reads\)" "... the pass verify reads"
like "$out" "verify public\.parent: [0-9]+ rows, equal" "... the online verify, per table"
like "$out" "pre-sync done: passes 1 to 3 .*tail now: 0 ledger entries not replayed yet" \
  "... the passes and the tail"
like "$out" "expected stop window: about [0-9.]+ ?m?s" "... and the expected stop window"
same_data "after pre-sync the primary holds every outage write"
is "$(sq backup "SELECT count(*) FROM drd.verified WHERE run_id = 7 AND state IN ('equal', 'subset')")" 8 \
  "the online verify's result is kept per table (8 tables, this run)"

# the app keeps writing on the backup after pre-sync
sq backup "UPDATE parent SET name = 'late rename' WHERE id = 3;
           INSERT INTO child (parent_id, note) VALUES (100, 'after pre-sync');
           UPDATE other.things SET v = 'again' WHERE id = 1" >/dev/null
sc "$CONF" sync-back
is "$res" ok "the stop window's sync-back: ok"
like "$out" "public\.parent: 1 keys changed: 1 applied" "... it replays only the entries after the last pass"
like "$out" "public\.child: 1 keys changed: 1 applied" "... (one key per table)"
same_data "every write is on the primary"
sc "$CONF" verify
is "$res" ok "the stop window's verify: ok"
[ "$res" = ok ] || diag "$out"
like "$out" "verify public\.parent: the 6 keys the outage touched are identical" \
  "... it checks every key the outage touched (not only the tail's)"
like "$out" "verify public\.docs: the 6 keys the outage touched are identical" \
  "... also in a table the tail left alone"
like "$out" "verify public\.nokey: [0-9]+ rows, equal" "... reads a keyless table whole"
unlike "$out" "verify public\.child: [0-9]+ rows, equal" "... and does not read a keyed table whole"

# a row the outage touched before the online verify (not in the tail),
# changed on the primary behind the fence after it: the stop window's verify
sq primary "SET default_transaction_read_only = off; UPDATE parent SET name = 'behind the fence' WHERE id = 1" >/dev/null
sc "$CONF" verify
is "$res" fail "a touched row (not in the tail) changed on the primary after the online verify: verify fails"
like "$err" "public\.parent \(0 missing, 1 different, 0 only on the primary, of the 6 keys the outage touched; first: id=1\)" \
  "... naming the table, the count and the key"
unlike "$err" "behind the fence" "... never a value of the row"
sq primary "SET default_transaction_read_only = off; UPDATE parent SET name = 'renamed one' WHERE id = 1" >/dev/null
# a key the outage deleted, back on the primary
sq primary "SET default_transaction_read_only = off;
            INSERT INTO composite VALUES ('eu', 2, 'resurrected')" >/dev/null
sc "$CONF" verify
is "$res" fail "a key the outage deleted, inserted again on the primary: verify fails"
like "$err" "public\.composite \(0 missing, 0 different, 1 only on the primary, of the 5 keys the outage touched; first: region=eu, num=2\)" \
  "... a composite key named column by column"
sq primary "SET default_transaction_read_only = off; DELETE FROM composite WHERE region = 'eu' AND num = 2" >/dev/null
sc "$CONF" verify
is "$res" ok "put back: verify passes"

# a row of the tail corrupted on the primary after sync-back: the stop window's verify
sq primary "SET default_transaction_read_only = off; UPDATE parent SET name = 'corrupt' WHERE id = 3" >/dev/null
sc "$CONF" verify
is "$res" fail "a touched row changed on the primary behind drd's back: verify fails"
like "$err" "public\.parent \(0 missing, 1 different, 0 only on the primary, of the 6 keys the outage touched; first: id=3\)" \
  "... naming the table, the difference and the key"
sq primary "UPDATE parent SET name = 'late rename' WHERE id = 3" >/dev/null

# a write after the last pass: not on the primary, verify says so
sq backup "UPDATE parent SET name = 'too late' WHERE id = 6" >/dev/null
sc "$CONF" verify
is "$res" fail "a write after the last pass: verify fails"
like "$err" "1 ledger entries were written on the backup after the last sync-back pass" "... saying why"
sc "$CONF" sync-back
sc "$CONF" verify
is "$res" ok "after one more sync-back: verify passes"

# another run's online result does not count: every table is read
SYNC_CHECK_RUN_ID=8 sc "$CONF" verify
is "$res" ok "verify of another run: ok"
like "$out" "verify: 8 tables, [0-9]+ rows, all equal" "... reading every table whole"

# ------------------- rows changed on the primary before the online verify ----
fresh || bail_out "setup"
# a row the outage did not touch: the backup was behind (verify's rule:
# the primary's version stands), reported, not a failure
sq primary "UPDATE parent SET name = 'primary only' WHERE id = 9" >/dev/null
sc "$CONF" pre-sync
is "$res" ok "an untouched row the primary changed: pre-sync passes"
like "$out" "verify public\.parent: the backup was behind the primary: 1 backup row" \
  "... its online verify reports the row (the primary's version stands)"
sc "$CONF" sync-back
sc "$CONF" verify
is "$res" ok "the stop window's verify passes"
# a touched row changed on the primary after a pass copied it: the next
# online verify catches it, before the app is ever stopped
sq primary "UPDATE parent SET name = 'corrupt' WHERE id = 1" >/dev/null
sc "$CONF" pre-sync
is "$res/$conflicts" "fail/0" "a touched row changed on the primary after a pass: pre-sync fails (the app still runs)"
like "$err" "verify: 1 of 8 tables differ: public\.parent" "... its online verify names the table"
is "$(sq backup "SELECT count(*) FROM drd.verified")" 0 "... and keeps no result"
SYNC_CHECK_RUN_ID=7 sc "$CONF" verify
is "$res" fail "the stop window's verify (full, no online result) fails too"

# ------------------------------------------------------ conflict online ----
fresh || bail_out "setup"
sq primary "UPDATE child SET note = 'primary too' WHERE id = 3" >/dev/null
before=$(db_checksum primary)
sc "$CONF" pre-sync
is "$res/$conflicts" "fail/1" "a conflict in the first pass stops pre-sync, waiting for a decision"
is "$(db_checksum primary)" "$before" "... nothing written on the primary"
sc "$CONF" pre-sync --resolution backup-wins
is "$res" ok "backup-wins: pre-sync goes on"
same_data "... and the primary holds the backup's rows"

# ------------------------------------ writes going on during pre-sync ----
fresh || bail_out "setup"
stop=$TEST_TMP/stop-writer
writer() {
  local i=0
  while [ ! -e "$stop" ]; do
    i=$((i + 1))
    sq backup "BEGIN; UPDATE parent SET name = 'busy $i' WHERE id = 1 + $i % 9;
               INSERT INTO child (parent_id, note) VALUES (1, 'busy $i');
               DELETE FROM child WHERE note = 'busy $((i - 3))';
               UPDATE nokey SET b = 'busy $i' WHERE a = 4; COMMIT" >/dev/null 2>&1
  done
}
writer & wpid=$!
sc "$CONF" pre-sync
pre_res=$res pre_out=$out
touch "$stop"; wait "$wpid"
is "$pre_res" ok "pre-sync while the app writes: ok"
[ "$pre_res" = ok ] || diag "$pre_out"
unlike "$pre_out" "conflict in|[1-9][0-9]* conflicts" "... no false conflict (keyless table included)"
sc "$CONF" sync-back
is "$res" ok "the tail: ok"
[ "$res" = ok ] || diag "$out"
same_data "every write made during pre-sync is on the primary"
sc "$CONF" verify
is "$res" ok "verify: ok"
[ "$res" = ok ] || diag "$out"

done_testing
