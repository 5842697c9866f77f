/* refresh_egress.c - the bytes refreshes read from the primary, against
 * [refresh] egress_budget (per calendar month, UTC).
 *
 * Every refresh adds what it read to the day's total in the state database
 * (egress_days): a reconcile pass the bytes its connections to the source
 * received, a dump the size of its file. The projection for the month is
 * what was read so far plus a typical refresh (the median of the recent
 * ones of the current mode: one initial copy does not make every pass look
 * big) times the refreshes the schedule still has this month. Crossing the
 * budget raises one warning event and one notification (egress_budget);
 * falling back below 90 % of it clears the state. */
#include "refresh_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

#define MEDIAN_OF      21
#define CRON_MAX_RUNS  100000

void refresh_month_bounds(int64_t now_ms, int64_t *start_ms, int64_t *end_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    *start_ms = (int64_t)timegm(&tm) * 1000;
    tm.tm_mon += 1;                 /* timegm normalises December + 1 */
    *end_ms = (int64_t)timegm(&tm) * 1000;
}

int64_t refresh_runs_between(int64_t every_ms, const cron_expr *cron, int64_t from_ms, int64_t to_ms)
{
    if (to_ms <= from_ms)
        return 0;
    int64_t n = 0;
    if (every_ms > 0)
        n += (to_ms - from_ms) / every_ms;
    if (cron != NULL) {
        time_t t = (time_t)(from_ms / 1000);
        for (int i = 0; i < CRON_MAX_RUNS; i++) {
            t = cron_next(cron, t);
            if (t <= 0 || (int64_t)t * 1000 >= to_ms)
                break;
            n++;
        }
    }
    return n;
}

bool refresh_egress_project(int64_t budget, int64_t month_bytes, int64_t per_run, int64_t runs_left,
                            int64_t *projected)
{
    int64_t p = month_bytes;
    if (per_run > 0 && runs_left > 0)
        p += per_run > (INT64_MAX - p) / runs_left ? INT64_MAX - p : per_run * runs_left;
    *projected = p;
    return budget > 0 && p > budget;
}

int64_t refresh_every_effective(const config_t *cfg)
{
    if (cfg->refresh_every_ms > 0)
        return cfg->refresh_every_ms;
    bool cron = cfg->refresh_schedule != NULL && cfg->refresh_schedule[0] != '\0';
    /* every = 0 written out: no interval (passes from cron, drctl refresh --once) */
    if (!cron && cfg->refresh_mode == REFRESH_RECONCILE && config_get(cfg, "refresh", "every") == NULL)
        return 30000;              /* reconcile's default */
    return 0;
}

int64_t refresh_budget_bytes(const config_t *cfg)
{
    int64_t b = 0;
    if (cfg->refresh_egress_budget == NULL || !parse_bytes(cfg->refresh_egress_budget, &b))
        return 0;
    return b;
}

typedef struct {
    refresh_mode mode;
    int64_t v[MEDIAN_OF];
    int n;
} median_ctx;

static bool median_cb(const store_refresh *rec, void *arg)
{
    median_ctx *m = arg;
    if (refresh_mode_of(rec) == m->mode && refresh_state_of(rec->state) == REFRESH_SUCCEEDED)
        m->v[m->n++] = rec->bytes;
    return m->n < MEDIAN_OF;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The median bytes of the recent succeeded refreshes of mode, -1 none. */
int64_t refresh_typical_bytes(store_t *store, refresh_mode mode)
{
    median_ctx m = { .mode = mode, .n = 0 };
    store_refreshes_recent(store, 400, median_cb, &m);
    if (m.n == 0)
        return -1;
    qsort(m.v, (size_t)m.n, sizeof m.v[0], cmp_i64);
    return m.v[m.n / 2];
}

bool refresh_egress_get(const refresh_t *r, int64_t now_ms, refresh_egress *out)
{
    memset(out, 0, sizeof *out);
    const config_t *cfg = r->cfg;
    out->budget = refresh_budget_bytes(cfg);
    int64_t start, end;
    refresh_month_bounds(now_ms, &start, &end);
    /* days from the month's first up to and including today */
    if (!store_egress_sum(r->store, start, now_ms + 86400000LL, &out->month_bytes, NULL))
        return false;
    refresh_mode rm = cfg->refresh_mode;
    out->per_run = rm == REFRESH_OFF ? 0 : refresh_typical_bytes(r->store, rm);
    out->runs_left = rm == REFRESH_OFF || rm == REFRESH_LOGICAL ? 0
                   : refresh_runs_between(refresh_every_effective(cfg), r->has_cron ? &r->cron : NULL,
                                          now_ms, end);
    out->over = refresh_egress_project(out->budget, out->month_bytes, out->per_run, out->runs_left,
                                       &out->projected);
    return true;
}

json_t *refresh_egress_json(const refresh_egress *e)
{
    return json_pack("{s:I, s:o, s:o, s:I, s:I, s:b}",
                     "month_bytes", (json_int_t)e->month_bytes,
                     "budget_bytes", e->budget > 0 ? json_integer(e->budget) : json_null(),
                     "per_refresh_bytes", e->per_run >= 0 ? json_integer(e->per_run) : json_null(),
                     "refreshes_left", (json_int_t)e->runs_left,
                     "projected_bytes", (json_int_t)e->projected,
                     "over_budget", e->over);
}

void refresh_egress_watch(refresh_t *r, int64_t now_ms)
{
    refresh_egress e;
    if (!refresh_egress_get(r, now_ms, &e) || e.budget <= 0)
        return;
    char used[32], proj[32], budget[32];
    format_bytes(e.month_bytes, used, sizeof used);
    format_bytes(e.projected, proj, sizeof proj);
    format_bytes(e.budget, budget, sizeof budget);
    if (e.over && !r->egress_over) {
        r->egress_over = true;
        char text[512];
        snprintf(text, sizeof text, "refresh egress: %s read from the primary this month, %s projected "
                 "by the month's end at the current schedule: over [refresh] egress_budget (%s)",
                 used, proj, budget);
        refresh_record_event(r, true, "%s", text);
        if (r->gate.notify != NULL)
            r->gate.notify(r->gate.ctx, "egress_budget", text);
    } else if (!e.over && r->egress_over && e.projected <= e.budget - e.budget / 10) {
        r->egress_over = false;
        refresh_record_event(r, false, "refresh egress: %s projected this month, within [refresh] "
                             "egress_budget (%s) again", proj, budget);
    }
}
