#!/usr/bin/env bash
# t_refresh_dump.sh - [refresh] mode = dump against real PostgreSQL 15
# clusters, driven by build/tools/refresh_check (the refresh module with the
# daemon's loop, store, monitor and executor): a scheduled refresh runs at
# start; the backup then matches the primary (checksums), keeps its
# database-level grants and settings, and sessions on it are cut by the
# swap; the dump file is named, private and readable by pg_restore;
# retention keeps `keep` files; the primary's password (scram, from a
# password_file with ':' '\' and a space) reaches pg_dump through a pgpass
# file and is printed nowhere; refused while the app is on the backup; an
# unwritable dir, a read-only dir, a full disk and a primary stopped in the
# middle of the dump each leave the backup and the dump files exactly as
# they were; bad [refresh] settings are reported as FILE:LINE; valgrind.
# TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
cd "$DRD_ROOT" || exit 1

RC=${REFRESH_CHECK:-$DRD_ROOT/build/tools/refresh_check}
[ -x "$RC" ] || bail_out "$RC not built (run make)"
drd_require

for c in primary backup; do { pg_new $c && pg_start $c; } || bail_out "cannot start $c"; done

# ---------------------------------------------------------------- setup ----
PW='Se:cr\et w0rd'
printf '%s\n' "$PW" >"$TEST_TMP/primary.pw"
chmod 600 "$TEST_TMP/primary.pw"
_pg_as sed -i '1i host all drd 127.0.0.1/32 scram-sha-256' "$(pg_datadir primary)/pg_hba.conf" || bail_out "pg_hba"
pg_reload primary
pg_psql primary "CREATE ROLE drd LOGIN SUPERUSER PASSWORD 'Se:cr\\et w0rd'" >/dev/null || bail_out "role"
for c in primary backup; do
  pg_psql $c "CREATE DATABASE app" >/dev/null || bail_out "create app on $c"
  pg_psql $c "CREATE ROLE reader LOGIN" >/dev/null
done
pg_psql primary "
  CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text);
  CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers (id),
                       amount numeric(10,2), at timestamptz DEFAULT '2026-01-01');
  CREATE INDEX orders_customer ON orders (customer_id);
  CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100;
  INSERT INTO customers (name, note) SELECT 'c' || g, md5(g::text) FROM generate_series(1, 2000) g;
  INSERT INTO orders (customer_id, amount) SELECT 1 + g % 2000, g % 500 FROM generate_series(1, 20000) g;
  CREATE TABLE filler (id int PRIMARY KEY, payload text);
  INSERT INTO filler SELECT g, md5(g::text) || md5((g + 7)::text) FROM generate_series(1, 20000) g;
" app >/dev/null || bail_out "primary data"
# the backup: an older copy, with its own database grants and settings
pg_psql backup "CREATE TABLE customers (id int PRIMARY KEY, name text); INSERT INTO customers VALUES (1, 'old')" app >/dev/null
pg_psql backup "ALTER DATABASE app SET work_mem = '8MB'" >/dev/null
pg_psql backup "ALTER DATABASE app SET search_path = \"\$user\", public" >/dev/null
pg_psql backup "REVOKE CONNECT ON DATABASE app FROM PUBLIC; GRANT CONNECT ON DATABASE app TO reader" >/dev/null

PPORT=$(pg_port primary)
DUMPS=$TEST_TMP/dumps
base_cfg=(primary.url="postgresql://drd@127.0.0.1:$PPORT/app" primary.password_file="$TEST_TMP/primary.pw"
          backup.url="$(pg_url backup postgres app)" refresh.mode=dump refresh.keep=2 refresh.jobs=2
          log.level=info)
drd_config "$TEST_TMP/drd.conf" "${base_cfg[@]}" refresh.dir="$DUMPS" refresh.every=1m || bail_out "config"
CONF=$TEST_TMP/drd.conf
OUT=$TEST_TMP/outputs.log

# rc_run ARGS...: refresh_check with this config; stdout+stderr in $out
# (and appended to $OUT), exit status in $st.
rc_run() {
  local conf=$CONF
  if [ "$1" = -c ]; then conf=$2; shift 2; fi
  out=$(timeout 60 "${RC_WRAP[@]}" "$RC" -c "$conf" "$@" 2>&1); st=$?
  printf '%s\n' "$out" >>"$OUT"
}
RC_WRAP=()
json_of() { grep -E '^\{' <<<"$out" | tail -n 1; }

sum_of() {
  pg_psql "$1" "SELECT (SELECT count(*) FROM customers) || ':' ||
    (SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM customers c) || ':' ||
    (SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o) || ':' ||
    (SELECT count(*) FROM filler) || ':' || (SELECT last_value FROM orders_id_seq)" app 2>&1
}
dumps_list() { ls -1 "$DUMPS" 2>/dev/null | tr '\n' ' '; }
scratch_dbs() { pg_psql backup "SELECT count(*) FROM pg_database WHERE datname LIKE 'app_drd_%'"; }

check "drd -n accepts the [refresh] section" "$DRD" -c "$CONF" -n

# --------------------------------------------------- a scheduled refresh ----
t0=$(now_ms)
rc_run daemon 40 1
ok $st "the scheduled refresh ran at start (every = 1m, never refreshed yet)"
diag "$(grep -E 'refresh [0-9]+|window' <<<"$out" | tail -n 4)"
row=$(drd_sql "SELECT trigger || ' ' || state FROM refreshes ORDER BY id DESC LIMIT 1")
is "$row" "schedule succeeded" "recorded: trigger schedule, state succeeded"
diag "first refresh took $(( $(now_ms) - t0 )) ms (tool start included)"
like "$out" '"lag_seconds":[0-9.]+' "status: lag_seconds is the age of the copy"
like "$out" '"next_at":[0-9]+' "status: the next scheduled refresh is known"
like "$out" "window: the backup's last copy is [0-9.]+ s old" "window text states the copy's age"

want=$(sum_of primary)
is "$(sum_of backup)" "$want" "the backup matches the primary (counts, checksums, sequence)"
is "$(pg_psql backup "SELECT array_to_string(setconfig, ';') FROM pg_db_role_setting s
      JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'app'")" \
   'work_mem=8MB;search_path="$user", public' "the backup database's settings are kept"
is "$(pg_psql backup "SELECT has_database_privilege('reader', 'app', 'CONNECT')::text || ' ' ||
      has_database_privilege('public', 'app', 'CONNECT')::text")" "true false" "its grants are kept"
is "$(scratch_dbs)" 0 "no scratch database left on the backup"

files=($(ls -1 "$DUMPS"))
is "${#files[@]}" 1 "one dump file in [refresh] dir"
like "${files[0]:-}" '^backup-[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{6}\.dump$' "named backup-YYYY-MM-DD-HHMMSS.dump"
is "$(stat -c %a "$DUMPS/${files[0]:-x}" 2>&1)" 600 "the dump file is private (0600)"
like "$("$PG_BIN/pg_restore" --list "$DUMPS/${files[0]:-x}" 2>&1)" 'TABLE DATA public orders' \
  "pg_restore --list reads it"
is "$(find "$TEST_TMP" -name '*.pgpass' -o -name '.drd-refresh-*' | wc -l)" 0 "no pgpass file or temp dir left"
is "$(grep -cF "$PW" "$OUT" "$DRD_DB" 2>/dev/null | awk -F: '{s+=$2} END {print s+0}')" 0 \
  "the password appears in no output and not in the state db"

# ------------------------------------------- retention, fresh data, sessions ----
pg_psql primary "INSERT INTO orders (customer_id, amount) SELECT 1, 1 FROM generate_series(1, 100)" app >/dev/null
( "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port backup)" -U postgres -d app -c "SELECT pg_sleep(60)" >/dev/null 2>&1 ) &
sleeper=$!; proc_track $sleeper
poll_until 5 eval '[ "$(pg_psql backup "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '"'"'SELECT pg_sleep(60)%'"'"'")" = 1 ]'
rc_run run
ok $st "a manual refresh succeeds"
is "$(jq -r .trigger <<<"$(json_of)")" manual "recorded as manual"
poll_until 5 eval "! proc_alive $sleeper"; ok $? "a session on the backup database was cut by the swap"
is "$(sum_of backup)" "$(sum_of primary)" "the backup has the primary's new rows"
sleep 1
rc_run run
ok $st "a third refresh succeeds"
last_file=$(jq -r .file <<<"$(json_of)")
files=($(ls -1 "$DUMPS"))
is "${#files[@]}" 2 "retention: keep = 2 files"
is "$(ls -1t "$DUMPS" | head -n 1)" "$(basename "$last_file")" "the newest file is the last refresh's"
cmp_ok "$(jq -r .bytes <<<"$(json_of)")" -gt 100000 "its size is recorded"

# ------------------------------------------------------------- interlock ----
"$RC" -c "$CONF" set-active backup || bail_out "set-active"
before=$(dumps_list)
rc_run run
is "$st" 1 "refused while the app is on the backup"
like "$out" 'refused: the app is on the backup' "with the reason"
is "$(drd_sql "SELECT state || ': ' || error FROM refreshes ORDER BY id DESC LIMIT 1")" \
   "refused: the app is on the backup: a refresh would overwrite what it writes there" "the refusal is recorded"
"$RC" -c "$CONF" set-active primary

# --------------------------------------------------------- failures ----
want=$(sum_of backup)
# fail_case NAME CONF: the refresh fails; backup, dump files and scratch dbs untouched
fail_case() {
  local name=$1 conf=$2 why=$3
  rc_run -c "$conf" run
  is "$st" 1 "$name: the refresh fails"
  like "$(jq -r '.state + ": " + .error' <<<"$(json_of)")" "^failed: .*$why" "$name: recorded failed with the reason"
  is "$(sum_of backup)" "$want" "$name: the backup is unchanged"
  is "$(dumps_list)" "$before" "$name: the dump files are unchanged"
  is "$(scratch_dbs)" 0 "$name: the scratch database was dropped"
}
before=$(dumps_list)
: >"$TEST_TMP/afile"
drd_config "$TEST_TMP/bad-dir.conf" "${base_cfg[@]}" refresh.dir="$TEST_TMP/afile/dumps" || bail_out "config"
fail_case "dir below a file" "$TEST_TMP/bad-dir.conf" "afile"

mnt=$TEST_TMP/mnt
mkdir -p "$mnt/ro" "$mnt/full"
if mount -t tmpfs -o ro,size=64k tmpfs "$mnt/ro" 2>/dev/null; then
  cleanup_add "umount '$mnt/ro'"
  drd_config "$TEST_TMP/ro.conf" "${base_cfg[@]}" refresh.dir="$mnt/ro" || bail_out "config"
  fail_case "read-only dir" "$TEST_TMP/ro.conf" "Read-only file system"
else
  for i in 1 2 3 4 5; do skip "read-only dir" "cannot mount a tmpfs here"; done
fi
if mount -t tmpfs -o size=256k tmpfs "$mnt/full" 2>/dev/null; then
  cleanup_add "umount '$mnt/full'"
  drd_config "$TEST_TMP/full.conf" "${base_cfg[@]}" refresh.dir="$mnt/full" || bail_out "config"
  fail_case "disk full" "$TEST_TMP/full.conf" "No space left"
  is "$(ls -A "$mnt/full" | wc -l)" 0 "disk full: nothing left in the full directory"
else
  for i in 1 2 3 4 5 6; do skip "disk full" "cannot mount a tmpfs here"; done
fi

# A session holds a lock that pg_dump waits for: the refresh is cancelled
# in the middle; then the primary is stopped in the middle of another.
( pg_psql primary "BEGIN; LOCK TABLE filler IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(40)" app >/dev/null 2>&1 ) &
locker=$!; proc_track $locker
poll_until 5 eval '[ "$(pg_psql primary "SELECT count(*) FROM pg_locks WHERE mode = '"'"'AccessExclusiveLock'"'"' AND relation = '"'"'filler'"'"'::regclass" app)" = 1 ]' \
  || diag "the lock was not taken"
# cancelled (what a failover starting does): children killed, nothing left
rc_run cancel-after 2500
is "$st" 1 "cancelled mid-way: the refresh fails"
like "$(jq -r '.state + ": " + .error' <<<"$(json_of)")" '^failed: stopped during copying: cancelled' \
  "cancelled mid-way: recorded with the reason"
is "$(sum_of backup)" "$want" "cancelled mid-way: the backup is unchanged"
is "$(dumps_list)" "$before" "cancelled mid-way: the dump files are unchanged"
is "$(scratch_dbs)" 0 "cancelled mid-way: the scratch database was dropped"
poll_until 5 eval "! pgrep -f \"pg_(dump|restore) .*port='(\$PPORT|$(pg_port backup))'\" >/dev/null"
ok $? "cancelled mid-way: no pg_dump or pg_restore process left"
# its server session waits for the lock until it notices: end it, so that
# the next check sees only the next pg_dump
pg_psql primary "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pg_dump'" >/dev/null
poll_until 5 eval '[ "$(pg_psql primary "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"'"'pg_dump'"'"'")" = 0 ]'
rc_out=$TEST_TMP/midway.out
( timeout 60 "$RC" -c "$CONF" run >"$rc_out" 2>&1; echo $? >"$rc_out.rc" ) &
runner=$!; proc_track $runner
poll_until 20 eval '[ "$(pg_psql primary "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"'"'pg_dump'"'"' AND wait_event_type = '"'"'Lock'"'"'")" = 1 ]'
ok $? "pg_dump is running (waiting for the lock)"
pg_crash primary
poll_until 30 eval "! proc_alive $runner"
out=$(<"$rc_out"); printf '%s\n' "$out" >>"$OUT"
is "$(cat "$rc_out.rc" 2>/dev/null)" 1 "primary stopped mid-way: the refresh fails"
like "$(jq -r '.state + ": " + .error' <<<"$(json_of)")" '^failed: .*(pg_dump|primary)' \
  "primary stopped mid-way: recorded failed with the reason"
is "$(sum_of backup)" "$want" "primary stopped mid-way: the backup is unchanged"
is "$(dumps_list)" "$before" "primary stopped mid-way: the dump files are unchanged"
is "$(scratch_dbs)" 0 "primary stopped mid-way: the scratch database was dropped"
is "$(find "$DUMPS" -name '.drd-refresh-*' | wc -l)" 0 "primary stopped mid-way: no temp dir left"
pg_start primary || bail_out "primary restart"

# ------------------------------------------------------------- valgrind ----
if command -v valgrind >/dev/null; then
  RC_WRAP=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
           --show-leak-kinds=definite)
  # slow probes: under valgrind, short probes time out and open the breaker
  drd_config "$TEST_TMP/vg.conf" "${base_cfg[@]}" refresh.dir="$DUMPS" probe.interval=3s probe.timeout=3s probe.failures=5 \
    || bail_out "config"
  rc_run -c "$TEST_TMP/vg.conf" run
  is "$st" 0 "valgrind: a refresh is clean (no errors, nothing definitely lost)"
  [ "$st" = 0 ] || diag "$(grep -vE 'syscall: 434|handler|README_MISSING|Nevertheless|valgrind.org' <<<"$out" | tail -n 15)"
  drd_config "$TEST_TMP/vg-bad.conf" "${base_cfg[@]}" refresh.dir="$TEST_TMP/afile/dumps" probe.interval=3s \
    probe.timeout=3s probe.failures=5 || bail_out "config"
  rc_run -c "$TEST_TMP/vg-bad.conf" run
  is "$st:$(jq -r .state <<<"$(json_of)")" 1:failed "valgrind: a failed refresh is clean" ||
    diag "$(grep -vE 'syscall: 434|handler|README_MISSING|Nevertheless|valgrind.org' <<<"$out" | tail -n 15)"
  RC_WRAP=()
else
  skip "valgrind" "not installed"; skip "valgrind" "not installed"
fi

# ------------------------------------------------------------ bad config ----
bad() {   # NAME KEY=VALUE ERE
  drd_config "$TEST_TMP/bad.conf" "${base_cfg[@]}" refresh.dir="$DUMPS" "$2" || bail_out "config"
  local o; o=$("$DRD" -c "$TEST_TMP/bad.conf" -n 2>&1); local s=$?
  is "$s" 2 "$1: drd -n exits 2"
  like "$o" "$3" "$1: FILE:LINE error"
}
bad "unknown mode" refresh.mode=rsync "bad\.conf:[0-9]+: .*mode"
bad "bad schedule" "refresh.schedule=0 25 * * *" "bad\.conf:[0-9]+: .*schedule"
bad "unwritable dir" refresh.dir="$TEST_TMP/afile/dumps" "bad\.conf:[0-9]+: \[refresh\] dir: .*afile"
rc_run -c "$TEST_TMP/bad-dir.conf" check-config
is "$st" 2 "unwritable dir: refresh_check_config fails"
like "$out" "bad-dir\.conf:[0-9]+: \[refresh\] dir: .*afile" "unwritable dir: FILE:LINE error"

done_testing
