#!/usr/bin/env bash
# tests/bench_http.sh (`make bench`) - drd's HTTP figures (issue 6):
#   wrk on loopback against drd's TCP listener, `GET /api/status` (with the
#   bearer token) and then `GET /metrics`, each for BENCH_HTTP_SECONDS
#   (default 30; BENCH_QUICK=1: 10) with 32 connections (drd allows 32 per
#   client address; wrk has only one) and 2 threads:
#   requests/s and p99 latency (wrk --latency);
#   the probes' cadence during each load: drd runs with its default probe
#     settings (interval 1s) and log.level=debug, so it logs one line per
#     probe result ("probe primary: ok in 3ms ...") with a ms timestamp; the
#     max gap between two consecutive results of one target, over a window
#     that starts at the last probe before the load and ends at the first
#     probe after it;
#   drd's memory: VmRSS and RssAnon (/proc/PID/status) before each load and
#     after it, once drd has closed wrk's connections (and, for information,
#     the moment wrk exits).
# Targets: >= 10 000 req/s, p99 < 20 ms, probe gap <= interval + 100 ms, RSS
# within 2 MiB of before. wrk runs on the same machine and competes with
# drd for the same cores. A response other than 2xx, a socket error, drd
# dying or a failed probe is a correctness failure (exit 1); a missed
# target is only reported. Everything runs in a temporary directory removed
# at exit.
set -u
. "$(dirname "$0")/lib/pg.sh"
. "$(dirname "$0")/lib/drd.sh"

if [ "${BENCH_QUICK:-0}" = 1 ]; then DUR=${BENCH_HTTP_SECONDS:-10}; else DUR=${BENCH_HTTP_SECONDS:-30}; fi
CONNS=32                       # drd: at most 32 connections per address
THREADS=2
INTERVAL_MS=1000               # drd's default [probe] interval
TARGET_RPS=10000
TARGET_P99_MS=20
TARGET_GAP_MS=$(( INTERVAL_MS + 100 ))
TARGET_RSS_KIB=2048

for x in "$DRD" "$DRCTL"; do [ -x "$x" ] || { echo "bench: $x is not built (run make)" >&2; exit 1; }; done
for x in wrk jq curl ss; do command -v $x >/dev/null || { echo "bench: $x is missing (make deps)" >&2; exit 1; }; done

say() { printf '%s\n' "$*"; }
die() { say "bench: $*" >&2; [ -f "$DRD_LOG" ] && grep -v ' DEBUG probe ' "$DRD_LOG" | tail -n 20 | sed 's/^/  drd: /' >&2; exit 1; }

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "drd bench (HTTP): setting up two PostgreSQL clusters in $TEST_TMP"
for c in primary backup; do
  { pg_new $c >/dev/null && pg_start $c; } || die "cannot create cluster $c"
done
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOKEN_FILE=$TEST_TMP/token
( umask 077; printf '%s\n' "$TOKEN" >"$TOKEN_FILE" ) || die "cannot write the token file"
PORT=$(free_port) || die "no free port"
BASE=http://127.0.0.1:$PORT
# drd's default probe settings; debug logging for the per-probe lines.
drd_config "$TEST_TMP/drd.conf" probe.interval= probe.timeout= probe.failures= \
  probe.successes= probe.cooldown= http.listen="127.0.0.1:$PORT" \
  http.token_file="$TOKEN_FILE" http.web_root="$DRD_ROOT/web" log.level=debug || die "drd_config"
drd_start || die "drd did not start"
drd_wait_healthy 15 || die "targets not healthy"
pid=$DRD_PID
auth="Authorization: Bearer $TOKEN"
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H "$auth" "$BASE/api/status")
[ "$code" = 200 ] || die "GET /api/status with the token: HTTP $code"
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$BASE/metrics")
[ "$code" = 200 ] || die "GET /metrics: HTTP $code"

# mem: "VmRSS RssAnon" in KiB.
mem() { awk '/^VmRSS:/ { v = $2 } /^RssAnon:/ { a = $2 } END { print v, a }' "/proc/$pid/status"; }
cpu_ticks() { local s; read -r s <"/proc/$pid/stat"; s=${s##*) }; set -- $s; echo $(( ${12} + ${13} )); }
hz=$(getconf CLK_TCK)

# no_connections: nothing is connected to drd's TCP port any more.
no_connections() { [ -z "$(ss -Htn state established "( sport = :$PORT )" 2>/dev/null)" ]; }
# probed_since MARK: both targets have logged a probe result since MARK.
probed_since() {
  local log; log=$(drd_log_since "$1")
  grep -qE ' probe primary: (ok|failed) in ' <<<"$log" && grep -qE ' probe backup: (ok|failed) in ' <<<"$log"
}
# probe_stats MARK: per target "TARGET probes failed max_gap_ms
# max_latency_ms max_start_gap_ms" from drd's probe lines since MARK
# (2024-01-02T03:04:05.678Z DEBUG probe primary: ok in 3ms ...): the gap
# between two results (log times), and between two starts (log time minus
# the probe's latency: drd's schedule without PostgreSQL's response time).
probe_stats() {
  drd_log_since "$1" | awk '
    function days(y, m, d) {                       # days since 0000-03-01
      if (m <= 2) { y--; m += 12 }
      return y * 365 + int(y / 4) - int(y / 100) + int(y / 400) + int((153 * (m - 3) + 2) / 5) + d
    }
    $3 == "probe" && ($4 == "primary:" || $4 == "backup:") && $6 == "in" && ($5 == "ok" || $5 == "failed") {
      t = substr($4, 1, length($4) - 1)
      split(substr($1, 1, 10), ymd, "-")
      split(substr($1, 12, 12), hms, ":")          # HH MM SS.mmm
      ms = days(ymd[1] + 0, ymd[2] + 0, ymd[3] + 0) * 86400000 + \
           (hms[1] * 3600 + hms[2] * 60) * 1000 + int(hms[3] * 1000 + 0.5)
      l = $7; sub(/ms.*/, "", l); l += 0
      if (t in last) {
        g = ms - last[t]; if (g > gap[t]) gap[t] = g
        g = (ms - l) - lasts[t]; if (g > sgap[t]) sgap[t] = g
      }
      last[t] = ms; lasts[t] = ms - l
      n[t]++; if ($5 == "failed") f[t]++
      if (l > lat[t]) lat[t] = l
    }
    END { for (t in n) printf "%s %d %d %d %d %d\n", t, n[t], f[t] + 0, gap[t] + 0, lat[t] + 0, sgap[t] + 0 }' | sort
}
# to_ms VALUE: wrk's "850.00us" / "12.34ms" / "1.02s" / "2.00m" in ms.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) printf "%.2f", v / 1000
    else if (v ~ /ms$/) printf "%.2f", v + 0
    else if (v ~ /m$/) printf "%.2f", v * 60000
    else printf "%.2f", v * 1000 }'
}

declare -A R=()
# load NAME PATH: one wrk run; results in R[NAME.*].
load() {
  local name=$1 path=$2 out=$TEST_TMP/wrk_$1.txt m0 m1 c0 c1 t0 t1 st line
  local -a args=(-t "$THREADS" -c "$CONNS" -d "${DUR}s" --latency -H "$auth")
  R[$name.mem0]=$(mem)
  m0=$(drd_log_mark)
  # the window starts at a probe of each target before the load ...
  poll_until 5 probed_since "$m0" || die "no probe logged before the $path load (log.level=debug?)"
  say "  wrk -t$THREADS -c$CONNS -d${DUR}s --latency $path ..."
  c0=$(cpu_ticks); t0=$(now_ms)
  wrk "${args[@]}" "$BASE$path" >"$out" 2>&1; st=$?
  c1=$(cpu_ticks); t1=$(now_ms)
  R[$name.memx]=$(mem)
  [ $st = 0 ] || { cat "$out" >&2; die "wrk failed on $path (exit $st)"; }
  drd_running || die "drd died during the $path load"
  # memory once drd has closed wrk's connections
  poll_until 15 no_connections || die "drd still holds connections 15 s after the $path load"
  R[$name.mem1]=$(mem)
  # ... and ends at a probe of each after it
  m1=$(drd_log_mark)
  poll_until 5 probed_since "$m1" || die "no probe logged after the $path load"
  R[$name.probes]=$(probe_stats "$m0")
  R[$name.rps]=$(awk '/^Requests\/sec:/ { printf "%d", $2 + 0.5 }' "$out")
  R[$name.total]=$(awk '/requests in/ { print $1 }' "$out")
  R[$name.p50]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  R[$name.p99]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  R[$name.non2xx]=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
  R[$name.sockerr]=$(awk '/Socket errors:/ { sub(/.*Socket errors: /, ""); print }' "$out")
  R[$name.cpu]=$(awk -v t=$(( c1 - c0 )) -v hz="$hz" -v ms=$(( t1 - t0 )) 'BEGIN { printf "%.0f", t / hz / (ms / 1000) * 100 }')
  [ -n "${R[$name.rps]}" ] && [ -n "${R[$name.p99]}" ] || { cat "$out" >&2; die "cannot read wrk's output for $path"; }
  line=$(awk '/Requests\/sec:/ || /Latency / && !/Distribution/' "$out" | tr -s ' ' | paste -sd';')
  say "    ${R[$name.total]} requests, $line"
}

sleep 2                         # let start-up settle before the first RSS figure
MEM_START=$(mem)
load status /api/status
load metrics /metrics
MEM_END=$(mem)
drd_wait_healthy 5 || die "targets not healthy after the load"
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H "$auth" "$BASE/api/status")
[ "$code" = 200 ] || die "GET /api/status after the load: HTTP $code"
drd_stop >/dev/null

# ---------------------------------------------------------------- summary ----
fails=0
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
  ok = (op == ">=") ? v >= t : (op == "<") ? v < t : (op == "<=") ? v <= t : (v <= t && -v <= t)
  print ok ? "ok" : "MISSED" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%+.2f", k / 1024 }'; }
row() { printf '  %-32s %-24s %-14s %-7s %s\n' "$@"; }

say ""
say "drd bench (HTTP) - $(date -u +%FT%TZ) - $("$DRD" -V 2>/dev/null | head -1)"
say "wrk -t$THREADS -c$CONNS -d${DUR}s on loopback, bearer token; drd's default probe settings"
say "(interval ${INTERVAL_MS} ms), log.level=debug. NOTE: wrk, drd and the two PostgreSQL servers it"
say "probes share this machine's $(nproc) core(s) (wrk alone keeps about one busy): req/s, latency and"
say "the probes' response times are lower bounds for drd on its own machine. Load average at"
say "start / end: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg) (anything else running counts too)."
say ""
row "measure" "value" "target" "" "note"
for name in status metrics; do
  path=/api/status; [ $name = metrics ] && path=/metrics
  non2xx=${R[$name.non2xx]:-0}; sockerr=${R[$name.sockerr]:-"connect 0, read 0, write 0, timeout 0"}
  row "GET $path" "${R[$name.rps]} req/s" ">= $TARGET_RPS" "$(verdict "${R[$name.rps]}" ">=" $TARGET_RPS)" \
      "${R[$name.total]} requests, drd CPU ${R[$name.cpu]} % of one core"
  row "  latency p99" "${R[$name.p99]} ms" "< $TARGET_P99_MS ms" "$(verdict "${R[$name.p99]}" "<" $TARGET_P99_MS)" \
      "p50 ${R[$name.p50]} ms"
  if [ "$non2xx" != 0 ] || [ "$sockerr" != "connect 0, read 0, write 0, timeout 0" ]; then
    row "  errors" "non-2xx $non2xx" "0" "FAILED" "socket errors: $sockerr"; fails=$(( fails + 1 ))
  fi
  while read -r t n f gap lat sgap; do
    [ -n "$t" ] || continue
    row "  probe gap, $t" "max $gap ms" "<= $TARGET_GAP_MS ms" "$(verdict "$gap" "<=" $TARGET_GAP_MS)" \
        "$n probes, $f failed, slowest ${lat} ms, max gap between starts $sgap ms"
    [ "$f" = 0 ] || fails=$(( fails + 1 ))
  done <<<"${R[$name.probes]}"
  [ "$(wc -l <<<"${R[$name.probes]}")" = 2 ] || { row "  probe gap" "a target has no probe" "" "FAILED" ""; fails=$(( fails + 1 )); }
  read -r v0 a0 <<<"${R[$name.mem0]}"; read -r v1 a1 <<<"${R[$name.mem1]}"; read -r vx ax <<<"${R[$name.memx]}"
  row "  VmRSS before -> after" "$v0 -> $v1 KiB" "within 2 MiB" "$(verdict $(( v1 - v0 )) "+-" $TARGET_RSS_KIB)" \
      "$(mib $(( v1 - v0 ))) MiB (as wrk exits: $(mib $(( vx - v0 ))) MiB)"
  row "  RssAnon before -> after" "$a0 -> $a1 KiB" "within 2 MiB" "$(verdict $(( a1 - a0 )) "+-" $TARGET_RSS_KIB)" \
      "$(mib $(( a1 - a0 ))) MiB (as wrk exits: $(mib $(( ax - a0 ))) MiB)"
done
read -r v0 a0 <<<"$MEM_START"; read -r v1 a1 <<<"$MEM_END"
row "VmRSS, start -> end (both)" "$v0 -> $v1 KiB" "within 2 MiB" "$(verdict $(( v1 - v0 )) "+-" $TARGET_RSS_KIB)" \
    "$(mib $(( v1 - v0 ))) MiB"
row "RssAnon, start -> end (both)" "$a0 -> $a1 KiB" "within 2 MiB" "$(verdict $(( a1 - a0 )) "+-" $TARGET_RSS_KIB)" \
    "$(mib $(( a1 - a0 ))) MiB"
say ""
say "  (probe gap: between two consecutive probe results of one target in drd's log, from the last"
say "   probe before the load to the first after it; RSS after = once drd has closed wrk's connections)"
[ "$fails" -eq 0 ] || { say "bench_http: $fails correctness check(s) failed"; exit 1; }
exit 0
