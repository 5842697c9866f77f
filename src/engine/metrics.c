/* metrics.c - the Prometheus text exposition (format 0.0.4) of GET /metrics.
 *
 * The main loop renders a snapshot whenever something changed and hands
 * it to the HTTP side (api_publish_metrics); this file is pure formatting:
 * no clock, no I/O, no globals, so it is unit-tested on fixed input.
 *
 * Every metric family has one HELP and one TYPE line, names start with
 * drd_, label values are escaped as the format requires (\\, \", \n).
 * Metrics whose value is unknown (the latency of a target never probed,
 * the backup lag before any measurement) are left out rather than given a
 * made-up value. drd_http_requests_total is not rendered here: the HTTP
 * side counts requests itself and appends that family when it serves the
 * text, so the figure is current at every scrape. */
#include "drd/engine/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/conf/runbook.h"
#include "drd/core/strbuf.h"

/* A label value: backslash, double quote and line feed escaped. */
static void buf_label_value(strbuf *b, const char *v)
{
    for (const char *p = v != NULL ? v : ""; *p != '\0'; p++) {
        switch (*p) {
        case '\\': sb_addn(b, "\\\\", 2); break;
        case '"':  sb_addn(b, "\\\"", 2); break;
        case '\n': sb_addn(b, "\\n", 2); break;
        default:   sb_addn(b, p, 1); break;
        }
    }
}

/* # HELP and # TYPE of one family (help texts are ours: no escaping needed). */
static void family(strbuf *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A float in the format's syntax: NaN, +Inf, -Inf or a decimal number. */
static void buf_double(strbuf *b, double v)
{
    if (isnan(v))
        sb_add(b, "NaN");
    else if (isinf(v))
        sb_add(b, v > 0 ? "+Inf" : "-Inf");
    else {
        /* the shortest of %.15g / %.17g that reads back as v */
        char tmp[40];
        snprintf(tmp, sizeof(tmp), "%.15g", v);
        if (strtod(tmp, NULL) != v)
            snprintf(tmp, sizeof(tmp), "%.17g", v);
        sb_add(b, tmp);
    }
}

/* One sample: name{k1="v1",k2="v2"} value. labels: NULL-terminated
 * key/value pairs, or NULL. */
static void sample_start(strbuf *b, const char *name, const char *const *labels)
{
    sb_add(b, name);
    if (labels != NULL && labels[0] != NULL) {
        sb_add(b, "{");
        for (size_t i = 0; labels[i] != NULL && labels[i + 1] != NULL; i += 2) {
            if (i > 0)
                sb_add(b, ",");
            sb_add(b, labels[i]);
            sb_add(b, "=\"");
            buf_label_value(b, labels[i + 1]);
            sb_add(b, "\"");
        }
        sb_add(b, "}");
    }
    sb_add(b, " ");
}

static void sample_int(strbuf *b, const char *name, const char *const *labels, int64_t v)
{
    sample_start(b, name, labels);
    sb_printf(b, "%" PRId64 "\n", v);
}

static void sample_double(strbuf *b, const char *name, const char *const *labels, double v)
{
    sample_start(b, name, labels);
    buf_double(b, v);
    sb_add(b, "\n");
}

static const char *const target_names[2] = { "primary", "backup" };
static const char *const run_kinds[2] = { "failover", "failback" };
static const char *const run_results[3] = { "succeeded", "failed", "aborted" };
static const char *const notify_results[3] = { "sent", "failed", "dropped" };
static const char *const breaker_states[3] = { "closed", "open", "half_open" };

static breaker_state breaker_of_name(size_t i)
{
    static const breaker_state s[3] = { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };
    return s[i];
}

static double ms_to_s(int64_t ms)
{
    return (double)ms / 1000.0;
}

/* drd itself: version, start, readiness, drills. */
static void render_daemon(strbuf *b, const metrics_input *in)
{
    family(b, "drd_build_info", "gauge", "drd's version (always 1).");
    {
        const char *l[] = { "version", in->version != NULL ? in->version : "unknown", NULL };
        sample_int(b, "drd_build_info", l, 1);
    }
    family(b, "drd_start_time_seconds", "gauge", "When this drd process started, seconds since the epoch.");
    sample_double(b, "drd_start_time_seconds", NULL, ms_to_s(in->started_at));
    family(b, "drd_ready", "gauge",
           "1 when no readiness check fails ([check] every), 0 when one does; absent before the first run.");
    if (in->ready >= 0)
        sample_int(b, "drd_ready", NULL, in->ready ? 1 : 0);
    family(b, "drd_check_status", "gauge",
           "Each readiness check's last result: 0 ok, 1 warn, 2 fail.");
    if (in->checks != NULL) {
        size_t i;
        const json_t *ck;
        json_array_foreach(in->checks, i, ck) {
            const char *name = json_string_value(json_object_get(ck, "name"));
            const char *st = json_string_value(json_object_get(ck, "status"));
            if (name == NULL || st == NULL)
                continue;
            const char *l[] = { "check", name, NULL };
            sample_int(b, "drd_check_status", l,
                       strcmp(st, "ok") == 0 ? 0 : strcmp(st, "warn") == 0 ? 1 : 2);
        }
    }
    family(b, "drd_drill_last_success_timestamp_seconds", "gauge",
           "When the last successful drill (drctl drill) ended, seconds since the epoch; 0 if none.");
    sample_double(b, "drd_drill_last_success_timestamp_seconds", NULL, ms_to_s(in->last_drill_ok_at));
}

/* Each database: active, up, healthy, misconfigured, probes, breaker. */
static void render_targets(strbuf *b, const metrics_input *in)
{
    family(b, "drd_active", "gauge", "1 for the database the app uses now, 0 for the other.");
    for (size_t i = 0; i < 2; i++) {
        const char *l[] = { "side", target_names[i], NULL };
        sample_int(b, "drd_active", l,
                   in->active != NULL && strcmp(in->active, target_names[i]) == 0 ? 1 : 0);
    }

    family(b, "drd_target_up", "gauge", "1 when the last probe of the database succeeded.");
    for (size_t i = 0; i < 2; i++) {
        const store_target *t = in->target[i];
        const char *l[] = { "target", target_names[i], NULL };
        sample_int(b, "drd_target_up", l,
                   t != NULL && t->last_probe_at > 0 && t->reachable ? 1 : 0);
    }
    family(b, "drd_target_healthy", "gauge",
           "1 when the database is healthy (breaker closed, last probe good).");
    for (size_t i = 0; i < 2; i++) {
        const store_target *t = in->target[i];
        const char *l[] = { "target", target_names[i], NULL };
        sample_int(b, "drd_target_healthy", l, t != NULL && t->healthy ? 1 : 0);
    }
    family(b, "drd_target_misconfigured", "gauge",
           "1 when the database refuses drd for a misconfiguration (credentials, role, database, "
           "pg_hba.conf, TLS): not an outage, never a failover.");
    for (size_t i = 0; i < 2; i++) {
        const store_target *t = in->target[i];
        const char *l[] = { "target", target_names[i], NULL };
        sample_int(b, "drd_target_misconfigured", l,
                   t != NULL && !t->reachable && PROBE_MISCONFIGURED(t->error_class) ? 1 : 0);
    }
    family(b, "drd_probe_latency_seconds", "gauge",
           "Duration of the last probe of the database (absent until probed).");
    for (size_t i = 0; i < 2; i++) {
        const store_target *t = in->target[i];
        const char *l[] = { "target", target_names[i], NULL };
        if (t != NULL && t->last_probe_at > 0 && t->latency_ms >= 0)
            sample_double(b, "drd_probe_latency_seconds", l, ms_to_s(t->latency_ms));
    }
    family(b, "drd_last_probe_timestamp_seconds", "gauge",
           "When the database was last probed, seconds since the epoch (absent until probed).");
    for (size_t i = 0; i < 2; i++) {
        const store_target *t = in->target[i];
        const char *l[] = { "target", target_names[i], NULL };
        if (t != NULL && t->last_probe_at > 0)
            sample_double(b, "drd_last_probe_timestamp_seconds", l, ms_to_s(t->last_probe_at));
    }
    family(b, "drd_breaker_state", "gauge",
           "Circuit breaker of each database: 1 for its current state, 0 for the others.");
    for (size_t i = 0; i < 2; i++) {
        const store_target *t = in->target[i];
        for (size_t s = 0; s < 3; s++) {
            const char *l[] = { "target", target_names[i], "state", breaker_states[s], NULL };
            sample_int(b, "drd_breaker_state", l,
                       t != NULL && t->breaker == breaker_of_name(s) ? 1 : 0);
        }
    }
}

/* What happened to each database since drd started. */
static void render_target_counters(strbuf *b, const metrics_counters *c)
{
    family(b, "drd_probes_total", "counter", "Probes of each database since drd started.");
    for (size_t i = 0; i < 2; i++) {
        const char *l[] = { "target", target_names[i], NULL };
        sample_int(b, "drd_probes_total", l, c->probes_total[i]);
    }
    family(b, "drd_probe_failures_total", "counter",
           "Failed probes of each database since drd started.");
    for (size_t i = 0; i < 2; i++) {
        const char *l[] = { "target", target_names[i], NULL };
        sample_int(b, "drd_probe_failures_total", l, c->probe_failures_total[i]);
    }
    family(b, "drd_breaker_transitions_total", "counter",
           "Circuit breaker transitions of each database since drd started.");
    for (size_t i = 0; i < 2; i++) {
        const char *l[] = { "target", target_names[i], NULL };
        sample_int(b, "drd_breaker_transitions_total", l, c->breaker_transitions_total[i]);
    }
    family(b, "drd_incidents_total", "counter",
           "Outages (incidents) of each database since drd started.");
    for (size_t i = 0; i < 2; i++) {
        const char *l[] = { "target", target_names[i], NULL };
        sample_int(b, "drd_incidents_total", l, c->incidents_total[i]);
    }
}

/* Runs, steps, approvals, the backup's freshness, notifications. */
static void render_runs(strbuf *b, const metrics_input *in, const metrics_counters *c)
{
    family(b, "drd_runs_total", "counter", "Finished runbook runs by kind and result since drd started.");
    for (size_t k = 0; k < 2; k++) {
        for (size_t r = 0; r < 3; r++) {
            const char *l[] = { "kind", run_kinds[k], "result", run_results[r], NULL };
            sample_int(b, "drd_runs_total", l, c->runs_total[k][r]);
        }
    }
    family(b, "drd_run_in_progress", "gauge", "1 while a failover or failback run is in progress.");
    sample_int(b, "drd_run_in_progress", NULL, in->run_in_progress ? 1 : 0);
    family(b, "drd_app_stopped", "gauge",
           "1 while a run that failed or waits for a decision has left the app stopped.");
    sample_int(b, "drd_app_stopped", NULL, in->app_stopped ? 1 : 0);

    family(b, "drd_step_duration_seconds", "summary",
           "Duration of finished runbook steps by action since drd started.");
    for (size_t a = 0; a < METRICS_ACTIONS; a++) {
        const char *name = step_action_name((step_action)a);
        const char *l[] = { "action", name != NULL ? name : "unknown", NULL };
        sample_double(b, "drd_step_duration_seconds_sum", l, c->step_seconds_sum[a]);
        sample_int(b, "drd_step_duration_seconds_count", l, c->step_seconds_count[a]);
    }

    family(b, "drd_approvals_pending", "gauge", "Approvals waiting for a human decision.");
    sample_int(b, "drd_approvals_pending", NULL, in->approvals_pending);

    if (in->backup_lag_seconds >= 0) {
        family(b, "drd_backup_lag_seconds", "gauge",
               "How far the backup's data is behind the primary's (the data-loss window).");
        sample_double(b, "drd_backup_lag_seconds", NULL, in->backup_lag_seconds);
    }
    if (in->last_refresh_at > 0) {
        family(b, "drd_last_refresh_timestamp_seconds", "gauge",
               "When the backup last received a good copy of the primary, seconds since the epoch.");
        sample_double(b, "drd_last_refresh_timestamp_seconds", NULL, ms_to_s(in->last_refresh_at));
    }

    if (in->egress_month_bytes >= 0) {
        family(b, "drd_refresh_egress_month_bytes", "gauge",
               "Bytes refreshes read from the primary this calendar month (UTC).");
        sample_int(b, "drd_refresh_egress_month_bytes", NULL, in->egress_month_bytes);
        family(b, "drd_refresh_egress_projected_bytes", "gauge",
               "This month's egress projected to its end at the current schedule and change rate.");
        sample_int(b, "drd_refresh_egress_projected_bytes", NULL, in->egress_projected_bytes);
        if (in->egress_budget_bytes > 0) {
            family(b, "drd_refresh_egress_budget_bytes", "gauge", "[refresh] egress_budget, per month.");
            sample_int(b, "drd_refresh_egress_budget_bytes", NULL, in->egress_budget_bytes);
        }
    }

    family(b, "drd_notifications_total", "counter",
           "Webhook notifications by result since drd started.");
    for (size_t i = 0; i < 3; i++) {
        const char *l[] = { "result", notify_results[i], NULL };
        sample_int(b, "drd_notifications_total", l, c->notifications_total[i]);
    }
}

char *metrics_render(const metrics_input *in)
{
    static const metrics_counters zero;
    const metrics_counters *c = in != NULL && in->c != NULL ? in->c : &zero;
    strbuf b = STRBUF_INIT;

    if (in == NULL)
        return NULL;
    render_daemon(&b, in);
    render_targets(&b, in);
    render_target_counters(&b, c);
    render_runs(&b, in, c);
    return sb_take(&b);
}
