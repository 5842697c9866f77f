#!/usr/bin/env bash
# t_sync_fk.sh - foreign keys are part of sync-back's conflict detection
# (issue 12, item 1). The primary has child rows the backup never got
# (written after its last copy); the outage deletes their parent on the
# backup. Before: with session_replication_role = replica the parent was
# deleted on the primary and its primary-only children orphaned (verify
# called them harmless extra rows); without it they were silently
# cascade-deleted. Now, as a superuser (replica) and as a plain role:
#   ask           a conflict naming the parent key and the referencing
#                 rows; nothing written
#   primary-wins  the parent stays (and goes back to the backup), the
#                 primary-only child stays, the rest of the outage arrives
#   backup-wins   the parent is deleted with the foreign key's own action
#                 (CASCADE here; RESTRICT refuses and rolls back)
# and in no case does ALTER TABLE ... VALIDATE CONSTRAINT fail afterwards.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
SYNC_TABLES="parent child strict_parent strict_child"
SCHEMA=$TEST_TMP/fk.sql
cat >"$SCHEMA" <<'SQL'
CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id) ON DELETE CASCADE,
                    note text);
CREATE TABLE strict_parent (id int PRIMARY KEY);
CREATE TABLE strict_child (id int PRIMARY KEY, parent_id int REFERENCES strict_parent (id) ON DELETE RESTRICT);
INSERT INTO parent SELECT g, 'parent ' || g FROM generate_series(1, 5) g;
INSERT INTO child SELECT g, 1 + g % 5, 'child ' || g FROM generate_series(1, 20) g;
INSERT INTO strict_parent SELECT g FROM generate_series(1, 5) g;
SQL

# fk_valid NAME: every foreign key of database app on NAME re-validates
fk_valid() {
  sq "$1" "ALTER TABLE child DROP CONSTRAINT child_parent_id_fkey;
           ALTER TABLE child ADD CONSTRAINT child_parent_id_fkey FOREIGN KEY (parent_id)
             REFERENCES parent (id) ON DELETE CASCADE NOT VALID;
           ALTER TABLE child VALIDATE CONSTRAINT child_parent_id_fkey;
           ALTER TABLE strict_child DROP CONSTRAINT strict_child_parent_id_fkey;
           ALTER TABLE strict_child ADD CONSTRAINT strict_child_parent_id_fkey FOREIGN KEY (parent_id)
             REFERENCES strict_parent (id) ON DELETE RESTRICT NOT VALID;
           ALTER TABLE strict_child VALIDATE CONSTRAINT strict_child_parent_id_fkey" 2>&1
}
orphans() {
  sq "$1" "SELECT count(*) FROM child c WHERE NOT EXISTS (SELECT 1 FROM parent p WHERE p.id = c.parent_id)"
}

# setup: same data, capture, a primary-only child of parent 3 (id 100),
# then the outage: parent 3 deleted on the backup (its backup children
# cascade there), and an unrelated update
setup() {
  sync_load "$SCHEMA" 2>/dev/null || return 1
  sc "$CONF" capture; [ "$res" = ok ] || return 1
  sq primary "INSERT INTO child VALUES (100, 3, 'primary only')" >/dev/null || return 1
  sq backup "DELETE FROM parent WHERE id = 3; UPDATE parent SET name = 'renamed' WHERE id = 1" >/dev/null
}

for who in superuser role; do
  CONF=$TEST_TMP/$who.conf
  if [ "$who" = superuser ]; then
    sync_config "$CONF"
  else
    sync_config "$CONF" primary.url="$(pg_url primary drd_sync:s3cret-sync app)" \
      backup.url="$(pg_url backup drd_sync:s3cret-sync app)"
  fi

  # ------------------------------------------------------------------ ask ----
  setup || bail_out "setup failed"
  sum0=$(db_checksum primary)
  sc "$CONF" sync-back
  is "$res/$conflicts" "fail/1" "$who, ask: the deleted parent still referenced on the primary is a conflict"
  like "$out" 'conflict in public\.parent, key \{"id": 3\}: deleted or re-keyed on the backup, but 1 rows of public\.child on the primary still reference it \(foreign key child_parent_id_fkey\)' \
    "$who, ask: the report names the key, the referencing table and the constraint" || diag "$out"
  like "$out" '\(100,3,"primary only"\)' "$who, ask: ... and a referencing row"
  is "$(db_checksum primary)" "$sum0" "$who, ask: nothing was written"

  # --------------------------------------------------------- primary-wins ----
  sc "$CONF" sync-back --resolution primary-wins
  is "$res" ok "$who, primary-wins: ok" || diag "$out"
  is "$(sq primary "SELECT count(*) FROM parent WHERE id = 3")/$(sq primary "SELECT note FROM child WHERE id = 100")" \
    "1/primary only" "$who, primary-wins: the parent and its primary-only child stay"
  is "$(sq primary "SELECT name FROM parent WHERE id = 1")" renamed "$who, primary-wins: the rest of the outage arrived"
  is "$(sq backup "SELECT count(*) FROM parent WHERE id = 3")" 1 "$who, primary-wins: the parent went back to the backup"
  is "$(orphans primary)" 0 "$who, primary-wins: no orphan on the primary"
  is "$(fk_valid primary)" "" "$who, primary-wins: every foreign key re-validates"

  # ---------------------------------------------------------- backup-wins ----
  setup || bail_out "setup failed"
  sc "$CONF" sync-back --resolution backup-wins
  is "$res" ok "$who, backup-wins: ok" || diag "$out"
  is "$(sq primary "SELECT count(*) FROM parent WHERE id = 3")/$(sq primary "SELECT count(*) FROM child WHERE id = 100")" \
    "0/0" "$who, backup-wins: the parent is deleted, its child with it (ON DELETE CASCADE)"
  is "$(orphans primary)" 0 "$who, backup-wins: no orphan on the primary"
  is "$(fk_valid primary)" "" "$who, backup-wins: every foreign key re-validates"
  same_data "$who, backup-wins: the primary holds exactly the backup's rows"

  # ------------------------------------------- backup-wins with RESTRICT ----
  sync_load "$SCHEMA" 2>/dev/null || bail_out "load"
  sc "$CONF" capture
  sq primary "INSERT INTO strict_child VALUES (1, 4)" >/dev/null
  sq backup "DELETE FROM strict_parent WHERE id = 4; UPDATE parent SET name = 'x' WHERE id = 2" >/dev/null
  sum0=$(db_checksum primary)
  sc "$CONF" sync-back --resolution backup-wins
  is "$res" fail "$who, RESTRICT + backup-wins: refused"
  like "$err$out" "strict_child|foreign key" "$who, RESTRICT + backup-wins: ... naming the foreign key" || diag "$out"
  is "$(db_checksum primary)" "$sum0" "$who, RESTRICT + backup-wins: nothing written (rolled back)"
  is "$(fk_valid primary)" "" "$who, RESTRICT: every foreign key re-validates"
done

# ------------------------------------------- verify re-checks foreign keys ----
# A primary-only row that violates a foreign key (here an orphan written
# with triggers off, as an older sync-back could leave one) used to pass
# verify as a harmless "extra primary row". Now verify checks every foreign
# key touching a synced table and names the violating rows.
CONF=$TEST_TMP/superuser.conf
setup || bail_out "setup failed"
sc "$CONF" sync-back --resolution primary-wins
is "$res" ok "verify setup: sync-back ok" || diag "$out"
sc "$CONF" verify
is "$res" ok "verify: foreign keys hold, the primary's extra child is kept: ok" || diag "$out"
like "$out" "foreign keys: [0-9]+ checked on the primary, none violated" "verify: ... says it checked the foreign keys"
sq primary "SET session_replication_role = replica; INSERT INTO child VALUES (300, 99, 'orphan')" >/dev/null
is "$(orphans primary)" 1 "an orphan on the primary (foreign key not enforced while written)"
sc "$CONF" verify
is "$res" fail "verify: a violated foreign key fails verify"
like "$err" "foreign key child_parent_id_fkey of public\.child: 1 rows? reference" "verify: ... naming the constraint" || diag "$out"
like "$out" '\(300,99,orphan\)' "verify: ... and the violating row"
sq primary "DELETE FROM child WHERE id = 300" >/dev/null
sc "$CONF" verify
is "$res" ok "verify: orphan gone, ok again" || diag "$out"

done_testing
