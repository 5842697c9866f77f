#!/usr/bin/env bash
# t_sync_session.sh - the app's own session settings never create a false
# conflict nor hide a real one (issue 12, item 2). The before-images that
# capture records on the backup must not depend on how the app's session
# prints values: with extra_float_digits = 0 a float8 0.1 + 0.2 printed as
# 0.3 used to look changed against the primary's 0.30000000000000004, so a
# row the primary never touched became a conflict under ask, and under
# primary-wins the app's outage update was dropped on both sides.
# For each setting: the app (on the backup, in a session with that setting)
# updates another column of rows holding a value whose text depends on it;
# the primary never touched them. Then sync-back (ask) applies them with no
# conflict, and primary-wins keeps the outage's update. And a real change
# of the same row on the primary is still a conflict. TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/t_sync_lib.sh"
cd "$DRD_ROOT" || exit 1
[ -x "$SYNC_CHECK" ] || bail_out "$SYNC_CHECK not built (run make)"

sync_clusters || bail_out "cannot start the clusters"
CONF=$TEST_TMP/s.conf
sync_config "$CONF"
SCHEMA=$TEST_TMP/sess.sql
cat >"$SCHEMA" <<'EOF'
CREATE TABLE vals (
    id int PRIMARY KEY,
    f8 float8, f4 float4, ts timestamptz, d date, iv interval, b bytea, m money,
    note text
);
INSERT INTO vals SELECT g, 0.1::float8 + 0.2, 0.1::float4 + 0.2::float4,
       '2024-01-01 12:34:56.789+00', '2024-02-29', '1 year 2 mons 3 days 04:05:06.5',
       '\x00ff10', 12.34, 'orig'
  FROM generate_series(1, 20) g;
EOF

# settings: "name=value" the app's session uses on the backup
SETTINGS=("extra_float_digits=0" "extra_float_digits=-15" "TimeZone=Asia/Kolkata"
          "DateStyle=SQL, DMY" "IntervalStyle=sql_standard" "IntervalStyle=iso_8601"
          "bytea_output=escape")

app_update() {   # app_update SETTING WHERE NOTE: on the backup, in a session with SETTING
  local name=${1%%=*} value=${1#*=}
  sq backup "SET $name = '$value'; UPDATE vals SET note = '$3' WHERE $2" >/dev/null
}

for mode in ask primary-wins; do
  sync_load "$SCHEMA" || bail_out "cannot load the schema"
  sc "$CONF" capture; [ "$res" = ok ] || bail_out "capture failed: $out"
  i=0
  for s in "${SETTINGS[@]}"; do
    i=$((i + 1))
    app_update "$s" "id = $i" "outage $i" || bail_out "update with $s failed"
  done
  sum0=$(db_checksum primary)
  if [ "$mode" = ask ]; then sc "$CONF" sync-back; else sc "$CONF" sync-back --resolution primary-wins; fi
  is "$res/$conflicts" "ok/" "$mode: sync-back finds no conflict in rows the primary never touched" ||
    diag "$(grep -E 'conflict|before outage|now:' <<<"$out" | head -12)"
  i=0
  for s in "${SETTINGS[@]}"; do
    i=$((i + 1))
    is "$(sq primary "SELECT note FROM vals WHERE id = $i")" "outage $i" \
      "$mode: the outage's update made with $s is on the primary"
  done
  same_data "$mode: both sides agree"
  sc "$CONF" verify
  is "$res" ok "$mode: verify ok"
done

# A real conflict stays one whatever the app's session prints: the primary
# changed f8 of row 15 after the copy; the app updated row 15 with
# extra_float_digits = 0.
sync_load "$SCHEMA" || bail_out "cannot load the schema"
sc "$CONF" capture
app_update "extra_float_digits=0" "id = 15" "outage 15"
sq primary "UPDATE vals SET f8 = 0.7 WHERE id = 15" >/dev/null
sum0=$(db_checksum primary)
sc "$CONF" sync-back
is "$res/$conflicts" "fail/1" "a row changed on both sides is still a conflict"
like "$out" 'conflict in public\.vals, key \{"id": 15\}' "... naming the row"
is "$(db_checksum primary)" "$sum0" "... and nothing was written"

done_testing
