/* refresh.h - keeping the backup fresh, and knowing how fresh it is.
 *
 *   dump     on a schedule ([refresh] every or schedule) or on request:
 *            pg_dump -Fc of the primary into [refresh] dir
 *            (backup-YYYY-MM-DD-HHMMSS.dump), checked with pg_restore --list,
 *            pruned by keep/max_age, then restored into the backup so that it
 *            is never seen empty or half-restored; a failure leaves the
 *            backup and the existing dumps exactly as they were.
 *   logical  a publication on the primary and a subscription on the backup,
 *            watched for lag (seconds, bytes) and errors.
 *
 * Interlock: nothing runs while the app is on the backup, while a runbook
 * run is in progress, or while the primary's breaker is not closed; a
 * refused request says why. Child processes (pg_dump, pg_restore) run
 * through proc.h and SQL through pgexec.h, so the loop never blocks; the
 * password reaches them through a mode-0600 pgpass file, never argv. */
#ifndef DRD_REFRESH_H
#define DRD_REFRESH_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "drd/conf/config.h"
#include "drd/core/cron.h"
#include "drd/core/loop.h"
#include "drd/health/breaker.h"
#include "drd/store/store.h"

typedef struct refresh refresh_t;

/* What refresh needs to know of the engine for its interlock, injected so
 * that refresh depends on nothing above it: whether the app runs on the
 * backup, whether a runbook run is in progress, the primary's breaker. */
typedef struct refresh_gate {
    void *ctx;
    bool (*app_on_backup)(void *ctx);
    bool (*run_active)(void *ctx);
    breaker_state (*primary_breaker)(void *ctx);
    /* Optional: send a notification (event name, one line of text). */
    void (*notify)(void *ctx, const char *event, const char *text);
} refresh_gate;

refresh_t *refresh_new(loop_t *loop, store_t *store, const refresh_gate *gate,
                       const config_t *cfg);
void refresh_free(refresh_t *r);               /* kills a running refresh's children; accepts NULL */
/* Arm the schedule / start watching the subscription. */
void refresh_start(refresh_t *r);
void refresh_reconfigure(refresh_t *r, const config_t *cfg);

/* Who asked for a refresh: the schedule, or an operator (drctl/API); the
 * names ("schedule", "manual") are store_refresh.trigger's. */
typedef enum { REFRESH_BY_SCHEDULE = 0, REFRESH_BY_HAND } refresh_trigger;
const char *refresh_trigger_name(refresh_trigger t);
/* The mode a refresh record was made in (store_refresh.mode), REFRESH_OFF
 * when unknown. */
refresh_mode refresh_mode_of(const store_refresh *rec);

/* Start one now. Returns the refresh id, or 0 with the reason it was
 * refused in err (the refusal is recorded too). */
int64_t refresh_request(refresh_t *r, refresh_trigger trigger, char *err, size_t errlen);
bool refresh_busy(const refresh_t *r);

/* How far behind the primary the backup is, in seconds: logical mode, the
 * replication lag; dump mode, the age of the last good copy; -1 unknown. */
double refresh_lag_seconds(const refresh_t *r);
/* Wall ms of the last good copy (dump finished / logical caught up), 0 = never. */
int64_t refresh_last_good_at(const refresh_t *r);
/* {"mode":..., "running":bool, "lag_seconds":n|null, "lag_bytes":n|null,
 *  "last_good_at":n|null, "next_at":n|null, "error":str|null,
 *  "difference":{"rows":n,"found":n,"at":n,"by":str}|null, ...} */
json_t *refresh_status_json(const refresh_t *r);
/* One line for the failover approval prompt, e.g. "the backup is 42 s
 * behind the primary" or "the backup's last copy is 3 h old". */
void refresh_window_text(const refresh_t *r, char *buf, size_t n);

/* Runbook helpers for logical mode (called by steps): disable the
 * subscription (the backup must not follow an old primary that returns),
 * recreate it without copying data (after a verified failback), and bump
 * every sequence on the backup past the largest used value. Each runs
 * asynchronously and calls cb(arg, ok, error) once from the loop. cfg: the
 * configuration of the run the step belongs to (NULL: refresh's current
 * one); what the helper needs from it is copied when it starts. */
typedef void (*refresh_step_cb)(void *arg, bool ok, const char *error);
bool refresh_subscription_disable(refresh_t *r, const config_t *cfg, refresh_step_cb cb, void *arg);
bool refresh_subscription_recreate(refresh_t *r, const config_t *cfg, refresh_step_cb cb, void *arg);
bool refresh_bump_sequences(refresh_t *r, const config_t *cfg, refresh_step_cb cb, void *arg);
/* What the last comparison of the two sides found, in logical mode (the
 * steps report verify's and converge's; a refresh that copies the whole
 * database resets it): `rows` still differ, `found` differed when it ran,
 * `by` "verify" | "converge" | "refresh". Kept in the state file; shown in
 * the status ("difference", and targets.backup.differing_rows) and by
 * `drctl check` (backup-converged). Ignored in other modes. */
void refresh_note_difference(refresh_t *r, int64_t rows, int64_t found, const char *by);

/* Forget the callbacks of the helpers started with arg (a step being
 * cancelled): their SQL finishes, cb is not called. */
void refresh_helper_cancel(refresh_t *r, void *arg);

/* Stop the running refresh, if any (it ends failed with reason, its scratch
 * database is dropped; the backup is left as it was). Returns whether one
 * was stopped: false when none runs, or when it is in its final swap (a
 * fraction of a second; it then completes, but leaves a logical
 * subscription disabled if a runbook run has started). E.g. before a
 * failover starts. */
bool refresh_cancel(refresh_t *r, const char *reason);
/* Check the [refresh] settings that the parser cannot (the dump directory
 * exists or can be created, and is writable), adding "FILE:LINE: ..." to
 * errs; for drd -n and reloads. true when fine (or mode = off). */
bool refresh_check_config(const config_t *cfg, config_errors *errs);
/* ---- egress: bytes read from the primary, per calendar month (UTC) ---- */
typedef struct {
    int64_t budget;          /* [refresh] egress_budget, bytes; 0 = none */
    int64_t month_bytes;     /* read so far this month */
    int64_t per_run;         /* a typical refresh (median of the recent ones), -1 unknown */
    int64_t runs_left;       /* refreshes the schedule still has this month */
    int64_t projected;       /* month_bytes + per_run x runs_left */
    bool over;               /* projected > budget */
} refresh_egress;
bool refresh_egress_get(const refresh_t *r, int64_t now_ms, refresh_egress *out);
/* {"month_bytes", "budget_bytes"|null, "per_refresh_bytes"|null,
 *  "refreshes_left", "projected_bytes", "over_budget"} */
json_t *refresh_egress_json(const refresh_egress *e);
/* Pure parts, for check and tests: the month around now (UTC); the
 * scheduled starts in [from, to); month + per_run x runs, true when over
 * budget (> 0). */
void refresh_month_bounds(int64_t now_ms, int64_t *start_ms, int64_t *end_ms);
int64_t refresh_runs_between(int64_t every_ms, const cron_expr *cron, int64_t from_ms, int64_t to_ms);
bool refresh_egress_project(int64_t budget, int64_t month_bytes, int64_t per_run, int64_t runs_left,
                            int64_t *projected);
/* [refresh] every as it applies (reconcile without every or schedule: 30 s), 0 none. */
int64_t refresh_every_effective(const config_t *cfg);
/* [refresh] egress_budget in bytes, 0 = none. */
int64_t refresh_budget_bytes(const config_t *cfg);
/* The median bytes of the recent succeeded refreshes of mode, -1 none. */
int64_t refresh_typical_bytes(store_t *store, refresh_mode mode);

/* Reconcile mode: the change column of table (schema.table) among its
 * columns cols[0..n): a "schema.table=column" entry of the
 * [refresh] change_columns list, else its first plain candidate the table
 * has; -1 none (the table is copied whole every full_every). */
/* Is schema.table in [refresh] tables, a comma-separated list (NULL or
 * empty: every table)? */
bool refresh_table_listed(const char *list, const char *name);
int refresh_change_column(const char *list, const char *table, char *const *cols, size_t ncols);

/* Logical mode's sampling period (default 1 s; tests and benchmarks). */
void refresh_set_watch_interval(refresh_t *r, int64_t ms);
/* Called (from the loop) when what refresh_status_json() shows changed: a
 * refresh started or ended, a logical-mode sample (every second), a new
 * replication error or drift. For republishing the status. */
void refresh_set_listener(refresh_t *r, void (*changed)(void *arg), void *arg);

#endif
