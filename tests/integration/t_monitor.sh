#!/usr/bin/env bash
# t_monitor.sh - drd watching two real PostgreSQL clusters:
#   both up -> healthy; primary stopped (-m immediate) -> breaker open in
#   time, incident + event recorded, backup unaffected; primary back ->
#   half_open -> closed, incident closed; primary postmaster SIGSTOPped ->
#   breaker open in time while the backup's probes keep their cadence and
#   the API keeps answering; drd kill -9 + restart -> history kept, probing
#   resumes, an outage spanning the crash stays one incident.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require

# SLACK absorbs a loaded CI machine (two tests and their clusters on 2
# cores); the figures themselves are measured by make bench.
INTERVAL=250 TIMEOUT=250 FAILURES=3 SLACK=2000
LIMIT_MS=$(( FAILURES * INTERVAL + TIMEOUT + SLACK ))

for c in primary backup; do
  { pg_new $c && pg_start $c; } || bail_out "cannot create cluster $c"
done
drd_config "$TEST_TMP/drd.conf" probe.interval=${INTERVAL}ms probe.timeout=${TIMEOUT}ms \
  probe.failures=$FAILURES probe.successes=2 probe.cooldown=1s || bail_out "drd_config"
drd_start || bail_out "drd did not start"

# last_event_id: the newest event id (0 if none).
last_event_id() { drd_sql "SELECT coalesce(max(id),0) FROM events"; }
# breaker_event_at SINCE_ID TARGET TO: wall ms of the first breaker event of
# TARGET after SINCE_ID whose message says "-> TO".
breaker_event_at() {
  drd_sql "SELECT at FROM events WHERE kind='breaker' AND target='$2' AND id>$1
           AND message LIKE '%-> $3%' ORDER BY id LIMIT 1"
}
open_incidents() { drd_sql "SELECT count(*) FROM incidents WHERE target='primary' AND ended_at IS NULL"; }

# ------------------------------------------------------------ both up ----
drd_wait_healthy 10; ok $? "both targets healthy, breakers closed (${POLL_ELAPSED_MS} ms after start)"
js=$(drd_status_json)
is "$(jq -r .active <<<"$js")" primary "active is primary"
is "$(jq -r .daemon <<<"$js")" running "daemon is running"
is "$(jq -r '[.targets[] | .reachable, .in_recovery] | join(" ")' <<<"$js")" "true false true false" \
  "both reachable, neither in recovery"
jq -e '.targets.primary.latency_ms | type == "number"' <<<"$js" >/dev/null
ok $? "primary latency_ms is a number ($(jq -r .targets.primary.latency_ms <<<"$js") ms)"
is "$(jq -r '.targets.primary.last_error' <<<"$js")" null "no last_error while healthy"
is "$(open_incidents)" 0 "no open incident"

# ------------------------------------------- primary stopped -m immediate ----
since=$(last_event_id)
t_fault=$(now_ms)
pg_crash primary || bail_out "cannot stop the primary"
drd_wait_field 10 .targets.primary.breaker open
ok $? "primary breaker opens after pg_ctl stop -m immediate"
at=$(breaker_event_at "$since" primary open)
if [ -n "$at" ]; then
  det=$(( at - t_fault ))
  diag "detection ${det}ms (stop -m immediate -> breaker open event; limit ${LIMIT_MS}ms)"
  cmp_ok "$det" -le "$LIMIT_MS" "detection within failures x interval + timeout + 2 s"
else
  fail "a breaker event 'closed -> open' for the primary"; diag "$(drd_sql 'SELECT * FROM events')"
fi
msg=$(drd_sql "SELECT message FROM events WHERE kind='breaker' AND target='primary' AND id>$since ORDER BY id LIMIT 1")
like "$msg" "closed -> open" "breaker event message: '$msg'"
is "$(open_incidents)" 1 "an open incident for the primary"
inc=$(drd_sql "SELECT id FROM incidents WHERE target='primary' AND ended_at IS NULL ORDER BY id DESC LIMIT 1")
js=$(drd_status_json)
is "$(jq -r '[.targets.primary.healthy, .targets.primary.reachable] | join(" ")' <<<"$js")" "false false" \
  "primary unhealthy and unreachable"
isnt "$(jq -r .targets.primary.last_error <<<"$js")" null \
  "primary last_error set: $(jq -r .targets.primary.last_error <<<"$js")"
is "$(jq -r '[.targets.backup.healthy, .targets.backup.breaker] | join(" ")' <<<"$js")" "true closed" \
  "backup stays healthy and closed"
is "$(drd_sql "SELECT count(*) FROM events WHERE kind='breaker' AND target='backup'")" 0 \
  "no breaker event for the backup"

# --------------------------------------------------------- primary back ----
since2=$(last_event_id)
pg_start primary || bail_out "cannot restart the primary"
drd_wait_field 15 .targets.primary.breaker closed
ok $? "primary breaker closes again after restart (${POLL_ELAPSED_MS} ms)"
ho=$(breaker_event_at "$since2" primary half_open)
cl=$(breaker_event_at "$since2" primary closed)
[ -n "$ho" ]; ok $? "breaker event '-> half_open' recorded"
[ -n "$cl" ] && [ -n "$ho" ] && [ "$cl" -ge "$ho" ]; ok $? "breaker event 'half_open -> closed' recorded after it"
drd_sql "SELECT id, message FROM events WHERE kind='breaker' AND target='primary' ORDER BY id" |
  sed 's/^/# event /'
is "$(open_incidents)" 0 "no open incident"
ended=$(drd_sql "SELECT coalesce(ended_at,'') FROM incidents WHERE id=${inc:-0}")
started=$(drd_sql "SELECT started_at FROM incidents WHERE id=${inc:-0}")
[ -n "$ended" ] && [ "$ended" -ge "$started" ]
ok $? "the incident is closed (ended_at $ended >= started_at $started)"
is "$(drd_json .targets.primary.healthy)" true "primary healthy again"

# ------------------------------------------------ primary postmaster frozen ----
since=$(last_event_id)
mark=$(drd_log_mark)
t_fault=$(now_ms)
pg_freeze primary || bail_out "cannot freeze the primary"
# Sample for ~3 s: the backup's last_probe_at (its cadence while the primary
# hangs), how long each status call takes, and when the primary opens.
declare -a stamps=()
max_call=0 max_period=0 samples=0 opened=0 prev_c1=0
t_end=$(( t_fault + 3000 ))
while (( $(now_ms) < t_end )); do
  c0=$(now_ms)
  row=$(drd_json '[.targets.backup.last_probe_at, .targets.primary.breaker] | @tsv')
  c1=$(now_ms)
  (( c1 - c0 > max_call )) && max_call=$(( c1 - c0 ))
  (( prev_c1 > 0 && c1 - prev_c1 > max_period )) && max_period=$(( c1 - prev_c1 ))
  prev_c1=$c1
  samples=$(( samples + 1 ))
  IFS=$'\t' read -r lp br <<<"$row"
  if [[ "$lp" =~ ^[0-9]+$ ]] && { [ ${#stamps[@]} -eq 0 ] || [ "$lp" != "${stamps[-1]}" ]; }; then
    stamps+=("$lp")
  fi
  [ "$br" = open ] && opened=1
  sleep 0.1
done
# (once open it cycles open -> half_open -> open every cooldown: any of
# those is fine now; what matters is that it opened)
[ "$opened" = 1 ] || drd_wait_field 10 .targets.primary.breaker open
opened=$(( opened || $? == 0 ))
is "$opened" 1 "primary breaker opens while its postmaster is stopped (SIGSTOP)"
at=$(breaker_event_at "$since" primary open)
if [ -n "$at" ]; then
  det=$(( at - t_fault ))
  diag "detection ${det}ms (kill -STOP -> breaker open event; limit ${LIMIT_MS}ms)"
  cmp_ok "$det" -le "$LIMIT_MS" "hung-server detection within failures x interval + timeout + 2 s"
else
  fail "a breaker open event for the frozen primary"
fi
maxgap=0
for (( i = 1; i < ${#stamps[@]}; i++ )); do
  g=$(( stamps[i] - stamps[i-1] )); (( g > maxgap )) && maxgap=$g
done
diag "backup via the API: ${#stamps[@]} probes seen in $samples samples over 3 s, max gap ${maxgap}ms; slowest status call ${max_call}ms, longest sampling period ${max_period}ms"
cmp_ok "${#stamps[@]}" -ge 5 "the backup keeps being probed while the primary hangs (API)"

# Exact cadences from drd's debug log ("<ISO ts> DEBUG probe TARGET: ok|failed
# ..."), independent of how fast this machine runs drctl + jq.
# log_probe_gaps TARGET [STOP_ERE]: gaps (ms) between TARGET's probes in the
# log since $mark, up to the first line matching STOP_ERE, within 3 s.
log_probe_gaps() {
  drd_log_since "$mark" | awk -v tgt="$1" -v stop="${2:-^$}" '
    stop != "^$" && $0 ~ stop { exit }
    $2 == "DEBUG" && $3 == "probe" && $4 == tgt ":" && ($5 == "ok" || $5 == "failed") {
      split(substr($1, 12, 12), t, /[:.]/)
      ms = ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4]
      if (n++ > 0) { g = ms - prev; if (g < 0) g += 86400000; printf "%d ", g; if ((tot += g) > 3000) exit }
      prev = ms
    }'
}
max_of() { tr ' ' '\n' <<<"$1" | grep . | sort -n | tail -1; }
median_of() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] + 0 }'; }
# cadence_ok GAPS WHAT: the cadence is the interval (median within 50 ms)
# and no probe was skipped (no gap reaches two intervals plus a 200 ms
# scheduling hiccup of a loaded machine).
cadence_ok() {
  cmp_ok "$(median_of "$1")" -le $(( INTERVAL + 50 )) "$2: median gap <= interval + 50 ms"
  cmp_ok "$(max_of "$1")" -lt $(( 2 * INTERVAL + 200 )) "$2: no probe skipped (max gap < 2 x interval + 200 ms)"
}

bgaps=$(log_probe_gaps backup)
diag "backup probe gaps while the primary hangs (drd log): ${bgaps:-none} ms"
if [ -n "$bgaps" ]; then
  cadence_ok "$bgaps" "backup probe cadence kept while the primary hangs (log)"
else
  diag "no 'probe backup:' debug lines in the log: using the API samples"
  cadence_ok "$maxgap" "backup probe cadence kept while the primary hangs (API)"
fi
# A hung probe must cost at most `timeout`: with timeout <= interval the
# hung primary is still probed every interval until its breaker opens.
pgaps=$(log_probe_gaps primary 'primary: breaker closed -> open')
diag "hung primary probe gaps until its breaker opened (drd log): ${pgaps:-none} ms"
if [ -z "$pgaps" ]; then
  skip "hung primary probed every interval" "no 'probe primary:' debug lines in the log"
else
  cadence_ok "$pgaps" "hung primary still probed every interval (a hung probe costs at most timeout)"
fi
cmp_ok "$max_call" -le 2000 "drctl status answers within 2 s while the primary hangs (slowest ${max_call} ms)"
is "$(drd_json '[.targets.backup.healthy, .targets.backup.breaker] | join(" ")')" "true closed" \
  "backup healthy and closed during the hang"
is "$(open_incidents)" 1 "an incident opened for the hung primary"

pg_thaw primary
drd_wait_field 15 .targets.primary.breaker closed
ok $? "primary breaker closes after the postmaster is resumed (${POLL_ELAPSED_MS} ms)"
is "$(open_incidents)" 0 "its incident is closed"

# ---------------------------------------------------- drd kill -9 / restart ----
drd_wait_healthy 10 || diag "not both healthy before kill -9"
n_events=$(drd_sql "SELECT count(*) FROM events")
n_inc=$(drd_sql "SELECT count(*) FROM incidents")
sum_events=$(drd_sql "SELECT id, at, kind, target, message FROM events ORDER BY id" | md5sum)
sum_inc=$(drd_sql "SELECT id, target, started_at, ended_at, reason FROM incidents ORDER BY id" | md5sum)
max_id=$(last_event_id)
max_inc=$(drd_sql "SELECT coalesce(max(id),0) FROM incidents")
lp_b=$(drd_json .targets.backup.last_probe_at)
lp_p=$(drd_json .targets.primary.last_probe_at)
diag "before kill -9: $n_events events, $n_inc incidents"
drd_kill9
drd_start || bail_out "drd did not restart after kill -9"
pass "drd restarts after kill -9 (stale socket and db handled)"
is "$(drd_sql "SELECT id, at, kind, target, message FROM events WHERE id <= $max_id ORDER BY id" | md5sum)" \
  "$sum_events" "all $n_events events recorded before the crash are still there, unchanged"
is "$(drd_sql "SELECT id, target, started_at, ended_at, reason FROM incidents WHERE id <= $max_inc ORDER BY id" | md5sum)" \
  "$sum_inc" "all $n_inc incidents are still there, unchanged"
poll_until 5 eval '[ "$(drd_json .targets.backup.last_probe_at)" -gt "$lp_b" ] 2>/dev/null'
ok $? "backup probing resumes (last_probe_at advances past $lp_b)"
poll_until 5 eval '[ "$(drd_json .targets.primary.last_probe_at)" -gt "$lp_p" ] 2>/dev/null'
ok $? "primary probing resumes (last_probe_at advances past $lp_p)"
drd_wait_healthy 10; ok $? "both healthy after the restart"

# An outage that spans a crash of drd stays one incident.
pg_crash primary || bail_out "cannot stop the primary"
drd_wait_field 10 .targets.primary.breaker open; ok $? "primary down again: breaker open"
is "$(open_incidents)" 1 "one open incident"
drd_kill9
t_restart=$(now_ms)
drd_start || bail_out "drd did not restart (second kill -9)"
# Whether drd restores the open breaker or re-detects the outage, wait until
# it has probed the dead primary long enough to have opened it again.
poll_until 10 eval '[ "$(drd_json .targets.primary.last_probe_at)" -gt $(( t_restart + FAILURES * INTERVAL + TIMEOUT )) ] 2>/dev/null'
ok $? "restarted during the outage: the primary is being probed"
drd_wait_field 10 .targets.primary.breaker open
ok $? "after restart during the outage the primary breaker is open"
is "$(open_incidents)" 1 "still exactly one open incident (none duplicated, none lost)"
pg_start primary || bail_out "cannot restart the primary"
drd_wait_field 15 .targets.primary.breaker closed; ok $? "primary back: breaker closed"
is "$(open_incidents)" 0 "no incident left open"
is "$(drd_json .active)" primary "active is still primary"

drd_stop; is "$?" 0 "drd stops cleanly (exit 0)"
diag "drd log: $(grep -c . "$DRD_LOG") lines, $(grep -c ' ERROR ' "$DRD_LOG") ERROR"
done_testing
