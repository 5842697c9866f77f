/* executor.h - runs one runbook at a time as an explicit state machine.
 * Every step state change is written to SQLite (synchronous=FULL) before
 * the work it announces begins or after it ends, so kill -9 at any moment
 * leaves a state executor_resume() continues from:
 *   - a step found "running" whose action is idempotent is run again;
 *   - any other goes to "needs_attention" and waits for a decision
 *     (approve = retry, approve with choice skip = skip, reject = abort).
 * A run with a failed step never ends as succeeded.
 * A run holds a reference to the configuration it started (or was resumed)
 * with until it ends, and its steps see only that one: a reload
 * (executor_reconfigure) changes the configuration of the next run. */
#ifndef DRD_EXECUTOR_H
#define DRD_EXECUTOR_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "drd/conf/config.h"
#include "drd/core/fetch.h"
#include "drd/core/loop.h"
#include "drd/engine/metrics.h"
#include "drd/engine/notify.h"
#include "drd/engine/monitor.h"
#include "drd/store/store.h"
#include "drd/conf/runbook.h"
#include "drd/engine/steps.h"

typedef struct executor executor_t;

/* Called when a run reaches a final state. */
typedef void (*executor_done_cb)(void *arg, int64_t run_id, const char *kind, run_state state);
/* Called whenever what the status shows changed (step started, approval...). */
typedef void (*executor_change_cb)(void *arg);

executor_t *executor_new(loop_t *loop, store_t *store, monitor_t *monitor, fetch_t *fetch,
                         const config_t *cfg);
void executor_free(executor_t *ex);                 /* accepts NULL; running work is abandoned, state stays as persisted */
void executor_reconfigure(executor_t *ex, const config_t *cfg);
void executor_set_listeners(executor_t *ex, executor_done_cb done, executor_change_cb change, void *arg);

/* Where runs and step durations are counted, and who is told about runs
 * and approvals (either may be NULL). */
void executor_set_observers(executor_t *ex, metrics_counters *c, notify_t *n);
/* The refresh module, for runbook steps of action refresh (may be NULL). */
struct refresh;
void executor_set_refresh(executor_t *ex, struct refresh *r);

/* What does a step's work (the seam test_executor.c fakes): begin starts
 * step s (the preflight too) and reports once through cb, from the loop,
 * never from inside begin (like step_begin); cancel stops it without a
 * report. By default step_begin/step_cancel (and preflight_start for the
 * preflight step). */
typedef struct {
    void *arg;
    void *(*begin)(void *arg, const runbook_step *s, int attempt, void (*cb)(void *, const step_outcome *),
                   void *cb_arg);
    void (*cancel)(void *arg, void *work);
} executor_work;
void executor_set_work(executor_t *ex, const executor_work *w);

/* Continue the run left active by a previous process, if any. */
bool executor_resume(executor_t *ex);

/* Start kind ("failover" | "failback"). Returns the run id, or 0 with a
 * reason in err (another run active, bad runbook, wrong side, ...). */
int64_t executor_start(executor_t *ex, const char *kind, const char *reason, const char *started_by,
                       int64_t request_id, int64_t incident_id, char *err, size_t errlen);

/* Decide an approval of kind "step" or "attention" belonging to the active
 * run. choice: NULL, "retry", "skip" or "abort" (attention approvals).
 * Returns false with err if it is unknown, not pending, or not ours. */
bool executor_decide(executor_t *ex, int64_t approval_id, bool approve, const char *choice,
                     const char *by, const char *reason, char *err, size_t errlen);

bool executor_busy(const executor_t *ex);
int64_t executor_run_id(const executor_t *ex);


#endif
