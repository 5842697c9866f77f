# shellcheck shell=bash
# tests/integration/t_sync_lib.sh - shared by the t_sync*.sh tests; sourced,
# not a test itself (run directly, it reports 0 tests). After tests/lib/pg.sh:
#
#   . "$(dirname "$0")/t_sync_lib.sh"
#   sync_clusters || bail_out "..."      # clusters primary + backup, role drd_sync
#   sync_load                            # database app on both from tests/sql/sync_schema.sql
#   sync_config "$TEST_TMP/s.conf" sync.no_pk=copy
#   sc capture                           # sync_check: $out $rc $res $err $conflicts $rows
#
if [ "${BASH_SOURCE[0]}" = "$0" ]; then echo "1..0 # SKIP library for t_sync*.sh"; exit 0; fi

SYNC_CHECK=${SYNC_CHECK:-$DRD_ROOT/build/tools/sync_check}
SQL_DIR=$DRD_ROOT/tests/sql
SC_WRAP=()

# sync_clusters: start clusters primary and backup, with a role drd_sync
# (LOGIN, not superuser, password "s3cret-sync") on both.
sync_clusters() {
  local n
  for n in primary backup; do
    pg_new "$n" && pg_start "$n" || return 1
    pg_psql "$n" "CREATE ROLE drd_sync LOGIN PASSWORD 's3cret-sync'" >/dev/null || return 1
  done
}

# psql on database app of a cluster: sq NAME SQL
sq() { pg_psql "$1" "$2" app; }
# psql -f on database app: sqf NAME FILE
sqf() {
  "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(pg_port "$1")" \
    -U postgres -d app -f "$2"
}

# sync_load [SQLFILE [CLUSTERS]]: (re)create database app on both clusters
# (or on CLUSTERS, e.g. "primary") with the same schema and data; drd_sync
# gets every right on it (but no superuser).
sync_load() {
  local n f=${1:-$SQL_DIR/sync_schema.sql}
  for n in ${2:-primary backup}; do
    pg_psql "$n" "DROP DATABASE IF EXISTS app WITH (FORCE)" >/dev/null &&
    pg_psql "$n" "CREATE DATABASE app" >/dev/null &&
    sqf "$n" "$f" >/dev/null &&
    sq "$n" "GRANT ALL ON DATABASE app TO drd_sync;
             DO \$\$DECLARE s text; BEGIN
               FOR s IN SELECT nspname FROM pg_namespace
                         WHERE nspname !~ '^(pg_|information_schema)' LOOP
                 EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO drd_sync', s);
                 EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %I TO drd_sync', s);
                 EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA %I TO drd_sync', s);
               END LOOP; END\$\$" >/dev/null || return 1
  done
}

# sync_config FILE [section.key=value...]: a drd config for database app of
# both clusters as postgres (superuser); primary.url=... etc. override.
sync_config() {
  local file=$1 kv; shift
  declare -A cfg=(
    [primary.url]="$(pg_url primary postgres app)"
    [backup.url]="$(pg_url backup postgres app)"
    [app.stop]=true [app.start]=true
    [state.db]="$TEST_TMP/drd.db" [http.socket]="$TEST_TMP/drd.sock"
    [failover.runbook]="$DRD_ROOT/runbooks/failover.ini"
    [failback.runbook]="$DRD_ROOT/runbooks/failback.ini"
    [sync.no_pk]=copy
  )
  for kv in "$@"; do cfg[${kv%%=*}]=${kv#*=}; done
  local s k
  {
    for s in primary backup app state http failover failback sync; do
      echo "[$s]"
      for k in "${!cfg[@]}"; do
        [ "${k%%.*}" = "$s" ] && [ -n "${cfg[$k]}" ] && echo "${k#*.} = ${cfg[$k]}"
      done
    done
  } >"$file"
}

# sc CONF OP [ARGS...]: run sync_check; sets $out (everything printed),
# $rc, $res (ok|fail), $rows, $tables, $ms, $conflicts, $err.
sc() {
  local line
  out=$(timeout 120 "${SC_WRAP[@]}" "$SYNC_CHECK" "$@" 2>&1)
  rc=$?
  res= rows= tables= ms= conflicts= err=
  line=$(grep -E '^(ok|fail) ' <<<"$out" | tail -n 1)
  if [[ "$line" =~ ^ok\ rows=([0-9]+)\ tables=([0-9]+)\ ms=([0-9]+)$ ]]; then
    res=ok rows=${BASH_REMATCH[1]} tables=${BASH_REMATCH[2]} ms=${BASH_REMATCH[3]}
  elif [[ "$line" =~ ^fail\ conflicts=([01])\ error=(.*)$ ]]; then
    res=fail conflicts=${BASH_REMATCH[1]} err=${BASH_REMATCH[2]}
  fi
}

# The rows of every test table as text, sorted: identical output on both
# sides means identical data (independent of drd's own verify).
# Tables in SYNC_AGG_TABLES (big ones) are summarised server-side instead:
# their row count and an md5 of all their rows in order.
SYNC_TABLES="parent child composite rekey docs nokey trunc other.things"
SYNC_AGG_TABLES=${SYNC_AGG_TABLES:-}
dump_tables() {
  local t
  for t in ${2:-$SYNC_TABLES}; do
    echo "== $t"
    if [[ " $SYNC_AGG_TABLES " == *" $t "* ]]; then
      sq "$1" "SELECT count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM $t t"
    else
      sq "$1" "SET TimeZone = 'UTC'; SELECT t::text FROM $t t ORDER BY 1"
    fi
  done
}

# checksum NAME: one line summarising every table of NAME (for "unchanged").
db_checksum() { dump_tables "$1" | md5sum | cut -d' ' -f1; }

# same_data DESC: the primary holds exactly the backup's rows.
same_data() {
  local a b
  a=$(dump_tables primary) b=$(dump_tables backup)
  if [ "$a" == "$b" ]; then pass "$1"; return 0; fi
  fail "$1"; diag "$(diff <(echo "$b") <(echo "$a") | head -40)"
  return 1
}
