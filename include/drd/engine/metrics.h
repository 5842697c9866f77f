/* metrics.h - Prometheus text for GET /metrics. The main loop owns the
 * counters (they count since this process started, as Prometheus counters
 * do) and renders a snapshot whenever something changed; the HTTP thread
 * only serves the last snapshot (api_publish_metrics). */
#ifndef DRD_METRICS_H
#define DRD_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "drd/store/store.h"

#define METRICS_ACTIONS 11           /* one slot per runbook action (ACT_COUNT) */

typedef struct {
    /* counters */
    int64_t probes_total[2], probe_failures_total[2];   /* [0] primary, [1] backup */
    int64_t breaker_transitions_total[2];
    int64_t incidents_total[2];
    int64_t runs_total[2][3];         /* [failover|failback][succeeded|failed|aborted] */
    double step_seconds_sum[METRICS_ACTIONS];
    int64_t step_seconds_count[METRICS_ACTIONS];
    int64_t notifications_total[3];   /* sent, failed, dropped */
    int64_t http_requests_total;      /* filled by the HTTP side, see api.c */
} metrics_counters;

typedef struct {
    const metrics_counters *c;
    const store_target *target[2];    /* primary, backup */
    const char *active;               /* "primary" | "backup" */
    bool run_in_progress;
    int64_t approvals_pending;
    double backup_lag_seconds;        /* < 0: unknown */
    int64_t last_refresh_at;          /* wall ms of the last good copy, 0 = none */
    /* bytes refreshes read from the primary this calendar month, the
     * projection for the month, [refresh] egress_budget (0 none); -1: unknown */
    int64_t egress_month_bytes, egress_projected_bytes, egress_budget_bytes;
    int64_t started_at;               /* wall ms */
    const char *version;
    int ready;                        /* readiness: 1 ready, 0 not, -1 never checked */
    const json_t *checks;             /* [{name, status}] or NULL */
    int64_t last_drill_ok_at;         /* wall ms, 0 = none */
    bool app_stopped;                 /* a run failed or waits while the app is stopped */
} metrics_input;

/* Render the exposition text (malloc'd, NUL-terminated), or NULL on OOM.
 * Metric names start with drd_; every metric has HELP and TYPE lines. */
char *metrics_render(const metrics_input *in);

#endif
