#!/usr/bin/env bash
# t_confirm.sh - [probe] confirm_interval: an idle connection per target;
# when the server drops it, drd probes again at once and every
# confirm_interval, so a crashed primary opens its breaker long before
# failures x interval. With interval = 2s and failures = 3, probes alone need
# at least 4 s; with confirm_interval = 200ms it must take well under 2 s.
set -u
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/drd.sh"
drd_require

plan 7
for c in primary backup; do pg_new $c >/dev/null && pg_start $c || bail_out "cluster $c"; done
drd_config "$TEST_TMP/drd.conf" probe.interval=2s probe.timeout=1s probe.failures=3 \
  probe.cooldown=1s probe.confirm_interval=200ms || bail_out "config"
drd_start; ok $? "drd starts with confirm_interval = 200ms"
drd_wait_healthy 20; ok $? "both targets healthy"

watch_up() { pg_psql primary "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drd-watch'" | grep -qx 1; }
poll_until 10 watch_up; ok $? "drd holds one idle connection to the primary (application_name drd-watch)"

opened() { drd_sql "SELECT count(*) FROM events WHERE kind = 'breaker' AND target = 'primary' AND message LIKE 'closed -> open%'" | grep -qx 1; }
t0=$(now_ms)
pg_crash primary
poll_until 10 opened; ok $? "the primary's breaker opens"
at=$(drd_sql "SELECT at FROM events WHERE kind = 'breaker' AND message LIKE 'closed -> open%' ORDER BY id LIMIT 1")
diag "detection with confirm_interval=200ms: $(( at - t0 )) ms (probes alone: >= 4000 ms)"
cmp_ok $(( at - t0 )) -lt 2000 "... within 2 s of the crash (3 failed probes 200 ms apart)"
drd_log_has 0 "dropped its idle connection"; ok $? "the log says the idle connection was dropped"

pg_start primary
closed() { [ "$(drd_json '.targets.primary.breaker')" = closed ]; }
poll_until 20 closed; ok $? "the primary recovers (breaker closed again)"
done_testing
