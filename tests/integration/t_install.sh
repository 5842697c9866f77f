#!/usr/bin/env bash
# t_install.sh - drd as installed: `make install PREFIX=<tmp>` with the
# configuration in another directory serves the page (GET / is the page's
# HTML) without any web_root; `drd -n` fails (exit 2, FILE:LINE) when
# listen is set and web_root cannot be served; the unit file names PREFIX's
# paths and everything it references is installed; drd --help and
# drctl --help print usage and exit 0.  TAP output.
set -u
. "$(dirname "$0")/../lib/pg.sh"

PREFIX=$TEST_TMP/prefix
make -s -C "$DRD_ROOT" install PREFIX="$PREFIX" DESTDIR= >"$TEST_TMP/install.log" 2>&1
ok $? "make install PREFIX=$PREFIX" || diag_file "$TEST_TMP/install.log" 20
DRD=$PREFIX/bin/drd
DRCTL=$PREFIX/bin/drctl

# ---------------------------------------------------------------- --help ----
out=$("$DRD" --help 2>&1); rc=$?
is "$rc" 0 "drd --help: exit 0"
like "$out" "usage: drd -c FILE" "... prints the usage"
out=$("$DRD" -h 2>&1); is "$?" 0 "drd -h: exit 0"
out=$("$DRCTL" --help 2>&1); rc=$?
is "$rc" 0 "drctl --help: exit 0"
like "$out" "usage: drctl" "... prints the usage"
like "$out" "unblock" "... lists unblock"
like "$out" "4 \(status\) a run failed or waits while the app is stopped" "... documents exit 4"
"$DRD" --bogus >/dev/null 2>&1; is "$?" 2 "drd --bogus: exit 2"

# ------------------------------------------------------------- unit file ----
unit=$PREFIX/lib/systemd/system/drd.service
[ -f "$unit" ]; ok $? "the unit file is installed in PREFIX/lib/systemd/system"
unlike "$(grep -v '^#' "$unit")" "/usr/local" "... it names no /usr/local path"
for p in $(grep -oE "$PREFIX/[^ ]+" "$unit" | sed 's|^file://||' | sort -u); do
  [ -e "$p" ]; ok $? "... $p (referenced by the unit) is installed"
done
like "$(grep '^ExecStart=' "$unit")" "^ExecStart=$PREFIX/bin/drd " "... ExecStart runs PREFIX/bin/drd"
[ -f "$PREFIX/share/doc/drd/README.md" ]; ok $? "README is installed in share/doc/drd"

# ---------------------------------------------- the page, config elsewhere ----
ETC=$TEST_TMP/etc/drd
mkdir -p "$ETC" && chmod 700 "$ETC"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ETC/token"; chmod 600 "$ETC/token"
PORT=$(free_port) || bail_out "no free port"
DEAD=$(free_port) || bail_out "no free port"
conf() {   # conf FILE [EXTRA HTTP LINE]
  cat >"$1" <<EOF
[primary]
url = postgresql://drd@127.0.0.1:$DEAD/app
[backup]
url = postgresql://drd@127.0.0.1:$DEAD/app2
[failover]
policy = manual
runbook = $PREFIX/share/drd/runbooks/failover.ini
[failback]
runbook = $PREFIX/share/drd/runbooks/failback.ini
[app]
stop = true
start = true
[http]
listen = 127.0.0.1:$PORT
socket = $TEST_TMP/drd.sock
token_file = token
$2
[state]
db = $TEST_TMP/state/drd.db
EOF
}
conf "$ETC/drd.conf" ""
out=$("$DRD" -c "$ETC/drd.conf" -n 2>&1); rc=$?
is "$rc" 0 "drd -n with no web_root and the config outside the tree: exit 0" || diag "$out"
out=$("$DRD" -c "$ETC/drd.conf" -n -v 2>&1)
like "$out" "web_root.*$PREFIX/share/drd/web" "... web_root is the installed page"

"$DRD" -c "$ETC/drd.conf" -f >"$TEST_TMP/drd.log" 2>&1 &
DRD_PID=$!
proc_track "$DRD_PID"
page() { curl -s -m 5 -o "$TEST_TMP/page" -w '%{http_code}' "http://127.0.0.1:$PORT/" 2>/dev/null | grep -qx 200; }
poll_until 15 page; ok $? "GET / answers 200" || diag_file "$TEST_TMP/drd.log" 20
cmp -s "$TEST_TMP/page" "$PREFIX/share/drd/web/index.html"; ok $? "... with the installed index.html"
like "$(cat "$TEST_TMP/page")" "<html" "... which is HTML"
kill -TERM "$DRD_PID"; { wait "$DRD_PID"; } 2>/dev/null

# the old default ("web" next to the config) still wins when it is there
mkdir -p "$ETC/web" && printf '<html>local</html>\n' >"$ETC/web/index.html"
out=$("$DRD" -c "$ETC/drd.conf" -n -v 2>&1)
like "$out" "web_root.*$ETC/web" "a web/ next to the config is still used (backward compatible)"
rm -rf "$ETC/web"

# ------------------------------------------------ an unservable web_root ----
conf "$ETC/bad.conf" "web_root = $TEST_TMP/nowhere"
line=$(grep -n '^web_root' "$ETC/bad.conf" | cut -d: -f1)
out=$("$DRD" -c "$ETC/bad.conf" -n 2>&1); rc=$?
is "$rc" 2 "drd -n with listen and an absolute web_root without the page: exit 2"
like "$out" "$ETC/bad.conf:$line: web_root" "... names FILE:LINE of web_root" || diag "$out"
unlike "$out" "configuration OK" "... and does not say OK"

# nothing to serve at all: the error is at listen's line
mv "$PREFIX/share/drd/web" "$PREFIX/share/drd/web.away"
out=$("$DRD" -c "$ETC/drd.conf" -n 2>&1); rc=$?
mv "$PREFIX/share/drd/web.away" "$PREFIX/share/drd/web"
line=$(grep -n '^listen' "$ETC/drd.conf" | cut -d: -f1)
is "$rc" 2 "drd -n with listen and no page anywhere: exit 2"
like "$out" "$ETC/drd.conf:$line: listen" "... names FILE:LINE of listen" || diag "$out"

# without listen there is nothing to serve: OK
grep -v '^listen' "$ETC/bad.conf" >"$ETC/nolisten.conf"
out=$("$DRD" -c "$ETC/nolisten.conf" -n 2>&1); rc=$?
is "$rc" 0 "drd -n without listen ignores an unservable web_root" || diag "$out"

done_testing
