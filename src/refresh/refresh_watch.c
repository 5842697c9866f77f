/* refresh_watch.c - logical mode's watcher: the replication lag (a
 * heartbeat written on the primary, read back on the backup), the
 * subscription's errors and worker, and a periodic fingerprint of both
 * sides. Split from refresh_logical.c (set-up and runbook helpers). */
#include "refresh_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/core/util.h"

#define WATCH_EVERY_MS     1000
#define FINGERPRINT_EVERY  60000
#define SAMPLE_TIMEOUT_MS  5000
#define SQL_SHORT_MS       30000
#define NO_WORKER_MS       15000   /* the launcher restarts a worker within ~5 s */

/* ---- the watcher ---------------------------------------------------------------- */

static void watch_tick(loop_t *loop, void *arg);

static void watch_free_conns(rwatch_t *w)
{
    refresh_rconn_free(&w->prim);
    refresh_rconn_free(&w->back);
    free(w->c_prim);
    free(w->c_back);
    free(w->q_beat);
    free(w->q_back);
    free(w->q_fp);
    w->c_prim = w->c_back = w->q_beat = w->q_back = w->q_fp = NULL;
}

static bool watch_build(refresh_t *r)
{
    const config_t *c = r->cfg;
    rwatch_t *w = &r->w;
    char err[256];
    watch_free_conns(w);
    if (!refresh_rconn_parse_target(&c->primary, &w->prim, err, sizeof err) ||
        !refresh_rconn_parse_target(&c->backup, &w->back, err, sizeof err)) {
        log_error("refresh: cannot watch replication: %s", err);
        return false;
    }
    w->c_prim = refresh_rconn_string(&w->prim, NULL, false, w->prim.password != NULL);
    w->c_back = refresh_rconn_string(&w->back, NULL, false, w->back.password != NULL);
    char *sub = refresh_sql_literal(c->refresh_subscription);
    char *inner_hb = refresh_sql_literal("SELECT seq::text || ',' || (extract(epoch FROM at) * 1000)::bigint::text AS v"
                                 " FROM drd_refresh.heartbeat WHERE id = 1");
    if (sub != NULL && inner_hb != NULL) {
        w->q_beat = refresh_xasprintf(
            "WITH hb AS (UPDATE drd_refresh.heartbeat SET seq = seq + 1, at = clock_timestamp() WHERE id = 1 RETURNING seq)"
            " SELECT concat_ws(chr(31), coalesce((SELECT seq FROM hb), -1),"
            " coalesce((SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
            "   FROM pg_replication_slots WHERE slot_name = %s), -1))", sub);
        w->q_back = refresh_xasprintf(
            "SELECT concat_ws(chr(31),"
            " coalesce(CASE WHEN to_regclass('drd_refresh.heartbeat') IS NOT NULL THEN"
            "   (xpath('/row/v/text()', nullif(query_to_xml(%s, false, true, '')::text, '')::xml))[1]::text END, '-1,-1'),"
            " coalesce((SELECT CASE WHEN subenabled THEN 'enabled' ELSE 'disabled' END FROM pg_subscription"
            "   WHERE subname = %s AND subdbid = " CUR_DB_OID "), 'missing'),"
            " (SELECT count(*) FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL AND relid IS NULL),"
            " coalesce(CASE WHEN to_regclass('pg_catalog.pg_stat_subscription_stats') IS NOT NULL THEN"
            "   (xpath('/row/v/text()', nullif(query_to_xml(format('SELECT apply_error_count + sync_error_count AS v"
            " FROM pg_stat_subscription_stats WHERE subname = %%L', %s), false, true, '')::text, '')::xml))[1]::text"
            " END, '0'))",
            inner_hb, sub, sub, sub);
    }
    free(sub);
    free(inner_hb);
    w->q_fp = strdup(
        "SELECT md5(coalesce(string_agg(concat_ws(':', c.table_schema, c.table_name, c.column_name,"
        " c.data_type, c.udt_name), ',' ORDER BY c.table_schema::text COLLATE \"C\","
        " c.table_name::text COLLATE \"C\", c.column_name::text COLLATE \"C\"), ''))"
        " FROM information_schema.columns c JOIN information_schema.tables t"
        "   ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE t.table_type = 'BASE TABLE'"
        "   AND c.table_schema NOT IN ('pg_catalog', 'information_schema', 'drd', 'drd_refresh')"
        "   AND c.table_schema::text NOT LIKE 'pg\\_%'");
    if (w->c_prim == NULL || w->c_back == NULL || w->q_beat == NULL || w->q_back == NULL || w->q_fp == NULL) {
        log_error("refresh: out of memory");
        return false;
    }
    return true;
}

/* The lag as of the last sample of the backup; once that sample is stale
 * (the backup stopped answering), it grows with the time since. */
int64_t refresh_watch_lag_ms(const refresh_t *r)
{
    const rwatch_t *w = &r->w;
    if (w->sampled_mono == 0 || w->lag_at_sample < 0)
        return -1;
    int64_t since = wall_ms() - w->sample_at;
    if (since > 3 * w->interval_ms + 1000)
        return w->lag_at_sample + since;
    return w->lag_at_sample;
}

int64_t refresh_watch_good_at(const refresh_t *r)
{
    const rwatch_t *w = &r->w;
    if (w->sampled_mono == 0)
        return 0;
    return refresh_hb_good_at(&w->hb, w->seen_seq, w->seen_at_ms);
}

int64_t refresh_watch_last_beat(const refresh_t *r)
{
    const hb_log *h = &r->w.hb;
    return h->count > 0 ? h->at[(h->head + HB_RING - 1) % HB_RING] : 0;
}

static void set_watch_error(refresh_t *r, const char *msg)
{
    rwatch_t *w = &r->w;
    if (strcmp(w->error, msg) == 0)
        return;
    str_copy(w->error, msg, sizeof w->error);
    if (msg[0] != '\0' && strcmp(w->warned_error, msg) != 0) {
        refresh_record_event(r, true, "logical replication: %s", msg);
        str_copy(w->warned_error, msg, sizeof w->warned_error);
    } else if (msg[0] == '\0' && w->warned_error[0] != '\0') {
        refresh_record_event(r, false, "logical replication is running again");
        w->warned_error[0] = '\0';
    }
}

static void check_max_lag(refresh_t *r)
{
    rwatch_t *w = &r->w;
    int64_t lag = refresh_watch_lag_ms(r), max = r->cfg->refresh_max_lag_ms;
    if (lag < 0 || max <= 0)
        return;
    char a[32], b[32];
    if (lag > max && !w->over_lag) {
        w->over_lag = true;
        refresh_format_age((double)lag / 1000.0, a, sizeof a);
        refresh_format_age((double)max / 1000.0, b, sizeof b);
        refresh_record_event(r, true, "the backup is %s behind the primary, more than [refresh] max_lag (%s)", a, b);
    } else if (lag <= max - max / 4 && w->over_lag) {
        /* Hysteresis: back within 3/4 of max_lag, so a lag hovering at the
         * threshold does not raise a warning per sample. */
        w->over_lag = false;
        refresh_format_age((double)lag / 1000.0, a, sizeof a);
        refresh_record_event(r, false, "the backup is back within [refresh] max_lag (%s behind)", a);
    }
}

static void on_beat(void *arg, const pgexec_result *res)
{
    refresh_t *r = arg;
    rwatch_t *w = &r->w;
    pgexec_free(w->beat_sql);
    w->beat_sql = NULL;
    if (!res->ok) {
        log_debug("refresh: heartbeat on the primary failed: %s", res->error);
        return;
    }
    char buf[128], *f[2];
    str_copy(buf, res->last_value, sizeof buf);
    if (refresh_split_fields(buf, '\x1f', f, 2) != 2)
        return;
    long long seq = strtoll(f[0], NULL, 10), bytes = strtoll(f[1], NULL, 10);
    if (seq > 0)
        refresh_hb_add(&w->hb, seq, wall_ms());
    w->lag_bytes = bytes >= 0 ? bytes : -1;
}

static void on_back(void *arg, const pgexec_result *res)
{
    refresh_t *r = arg;
    rwatch_t *w = &r->w;
    pgexec_free(w->back_sql);
    w->back_sql = NULL;
    if (!res->ok) {
        log_debug("refresh: reading replication state on the backup failed: %s", res->error);
        return;
    }
    char buf[256], *f[4];
    str_copy(buf, res->last_value, sizeof buf);
    if (refresh_split_fields(buf, '\x1f', f, 4) != 4)
        return;
    char *hb[2];
    int64_t prev_seen = w->seen_seq;
    if (refresh_split_fields(f[0], ',', hb, 2) == 2) {
        w->seen_seq = strtoll(hb[0], NULL, 10);
        w->seen_at_ms = strtoll(hb[1], NULL, 10);
    }
    w->sub_state = refresh_sub_state_of(f[1]);
    long workers = strtol(f[2], NULL, 10);
    long long errors = strtoll(f[3], NULL, 10);
    w->sampled_mono = loop_now(r->loop);
    w->sample_at = w->back_started;
    /* Until drd's first heartbeat has been committed, only the row's time
     * is known, which is as old as the last drd that wrote one: while the
     * primary takes heartbeats, wait for a real measure instead. */
    bool primary_ok = !r->gate.app_on_backup(r->gate.ctx) &&
                      r->gate.primary_breaker(r->gate.ctx) == BREAKER_CLOSED;
    if (w->hb.count == 0 && primary_ok && loop_now(r->loop) - w->started_mono < 10000)
        w->lag_at_sample = -1;
    else
        w->lag_at_sample = refresh_hb_lag_ms(&w->hb, w->seen_seq, w->seen_at_ms, w->sample_at,
                                             3 * w->interval_ms + 500);

    const char *sub = r->cfg->refresh_subscription;
    char msg[512] = "";
    if (w->sub_state == SUB_MISSING && !w->auto_setup_done && r->job == NULL) {
        w->auto_setup_done = true;
        char err[256];
        log_info("refresh: no subscription %s on the backup yet: setting up logical replication", sub);
        if (refresh_request(r, REFRESH_BY_SCHEDULE, err, sizeof err) == 0)
            log_warn("refresh: cannot set up logical replication now: %s", err);
    }
    bool setting_up = r->job != NULL;
    if (w->sub_state == SUB_MISSING) {
        if (!setting_up)
            snprintf(msg, sizeof msg, "there is no subscription %s on the backup: run drctl refresh", sub);
    } else if (w->sub_state == SUB_DISABLED) {
        if (!setting_up)
            snprintf(msg, sizeof msg, "the subscription %s is disabled: the backup is not following the primary",
                     sub);
        w->no_worker_since = 0;
    } else {
        int64_t now = loop_now(r->loop);
        if (workers > 0)
            w->no_worker_since = 0;
        else if (w->no_worker_since == 0)
            w->no_worker_since = now;
        bool no_worker = w->no_worker_since != 0 && now - w->no_worker_since >= NO_WORKER_MS;
        /* new errors, and no heartbeat applied since: replication is stuck
         * on them (the worker fails, restarts, fails again) */
        if (w->errors_seen >= 0 && errors > w->errors_seen)
            w->errors_base = errors;
        else if (w->seen_seq > prev_seen)
            w->errors_base = 0;
        if (w->errors_base > 0)
            snprintf(msg, sizeof msg, "replication errors on the backup, nothing applied since "
                     "(see its server log)");
        else if (no_worker)
            snprintf(msg, sizeof msg, "the replication worker of %s is not running on the backup "
                     "(see its server log)", sub);
    }
    w->errors_seen = errors;
    set_watch_error(r, msg);
    check_max_lag(r);
    refresh_changed(r);
}

static void fingerprint_compare(refresh_t *r)
{
    rwatch_t *w = &r->w;
    if (w->fp_p[0] == '\0' || w->fp_b[0] == '\0' || r->job != NULL)
        return;
    bool differ = strcmp(w->fp_p, w->fp_b) != 0;
    if (differ && !w->drift) {
        w->drift = true;
        refresh_record_event(r, true, "schema drift: the tables of the primary and the backup differ "
                                "(DDL is not replicated: apply it on the backup too)");
    } else if (!differ && w->drift) {
        w->drift = false;
        refresh_record_event(r, false, "schema drift resolved: the primary's and the backup's tables match again");
    }
    refresh_changed(r);
}

static void on_fp(refresh_t *r, const pgexec_result *res, char *dst)
{
    dst[0] = '\0';
    if (res->ok)
        str_copy(dst, res->last_value, 64);
    else
        log_debug("refresh: schema fingerprint failed: %s", res->error);
    if (--r->w.fp_pending == 0)
        fingerprint_compare(r);
}

static void on_fp_prim(void *arg, const pgexec_result *res)
{
    refresh_t *r = arg;
    pgexec_free(r->w.fp_prim);
    r->w.fp_prim = NULL;
    on_fp(r, res, r->w.fp_p);
}

static void on_fp_back(void *arg, const pgexec_result *res)
{
    refresh_t *r = arg;
    pgexec_free(r->w.fp_back);
    r->w.fp_back = NULL;
    on_fp(r, res, r->w.fp_b);
}

static void watch_tick(loop_t *loop, void *arg)
{
    refresh_t *r = arg;
    rwatch_t *w = &r->w;
    w->timer = loop_add_timer(loop, w->interval_ms, watch_tick, r);
    /* Heartbeats only while the app is on the primary and it is healthy:
     * a fenced primary refuses writes, and a dead one cannot take them. */
    bool primary_ok = !r->gate.app_on_backup(r->gate.ctx) &&
                      r->gate.primary_breaker(r->gate.ctx) == BREAKER_CLOSED;
    const char *q;
    if (w->beat_sql == NULL && primary_ok) {
        q = w->q_beat;
        w->beat_sql = pgexec_start(loop, w->c_prim, w->prim.password, &q, 1, SAMPLE_TIMEOUT_MS, on_beat, r);
    }
    if (w->back_sql == NULL) {
        q = w->q_back;
        w->back_started = wall_ms();
        w->back_sql = pgexec_start(loop, w->c_back, w->back.password, &q, 1, SAMPLE_TIMEOUT_MS, on_back, r);
    }
    int64_t now = loop_now(loop);
    if (primary_ok && w->fp_pending == 0 && now >= w->next_fp_mono && r->job == NULL) {
        w->next_fp_mono = now + FINGERPRINT_EVERY;
        q = w->q_fp;
        w->fp_pending = 2;
        w->fp_prim = pgexec_start(loop, w->c_prim, w->prim.password, &q, 1, SQL_SHORT_MS, on_fp_prim, r);
        w->fp_back = pgexec_start(loop, w->c_back, w->back.password, &q, 1, SQL_SHORT_MS, on_fp_back, r);
        if (w->fp_prim == NULL || w->fp_back == NULL) {
            pgexec_free(w->fp_prim);
            pgexec_free(w->fp_back);
            w->fp_prim = w->fp_back = NULL;
            w->fp_pending = 0;
        }
    }
    check_max_lag(r);
}

void refresh_watch_stop(refresh_t *r)
{
    rwatch_t *w = &r->w;
    loop_cancel_timer(r->loop, w->timer);
    pgexec_free(w->beat_sql);
    pgexec_free(w->back_sql);
    pgexec_free(w->fp_prim);
    pgexec_free(w->fp_back);
    watch_free_conns(w);
    int64_t interval = w->interval_ms;
    memset(w, 0, sizeof *w);
    w->interval_ms = interval;
    w->seen_seq = w->seen_at_ms = w->lag_bytes = w->errors_seen = w->lag_at_sample = -1;
}

void refresh_watch_start(refresh_t *r)
{
    refresh_watch_stop(r);
    rwatch_t *w = &r->w;
    w->interval_ms = r->watch_interval_ms > 0 ? r->watch_interval_ms : WATCH_EVERY_MS;
    if (!watch_build(r))
        return;
    w->enabled = true;
    w->started_mono = loop_now(r->loop);
    w->next_fp_mono = loop_now(r->loop) + 5000;
    w->timer = loop_add_timer(r->loop, 0, watch_tick, r);
}
