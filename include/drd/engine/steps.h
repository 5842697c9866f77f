/* steps.h - one function per runbook action (exec, switch-env,
 * wait-healthy, fence, notify). Each runs on the event loop without
 * blocking it and reports once through the callback, never from inside
 * step_begin. The executor owns approvals and the step state machine;
 * this module only does the work. */
#ifndef DRD_STEPS_H
#define DRD_STEPS_H

#include <stdbool.h>
#include <stdint.h>
#include "drd/conf/config.h"
#include "drd/core/fetch.h"
#include "drd/core/loop.h"
#include "drd/engine/monitor.h"
#include "drd/refresh/refresh.h"
#include "drd/conf/runbook.h"
#include "drd/store/store.h"

typedef struct {
    loop_t *loop;
    const config_t *cfg;         /* the run's; step_begin takes a reference of its own */
    monitor_t *monitor;
    fetch_t *fetch;
    store_t *store;
    refresh_t *refresh;          /* for the refresh action (may be NULL) */
    int64_t run_id;              /* for DRD_RUN_ID in exec's environment (0 outside runs) */
    const char *run_kind;        /* "failover" | "failback" | "" */
    int attempt;                 /* of this step in this run: 1 the first time, more on a retry */
} step_env;

typedef struct {
    bool ok;
    int exit_code;               /* exec: the exit status; -1 otherwise or when killed */
    char error[512];             /* why it failed ("" when ok) */
    char note[256];              /* what happened, for the history ("" if nothing to say) */
    const char *output;          /* masked output (exec, sync report), valid during the callback; may be NULL */
    bool conflicts;              /* sync-back stopped on conflicts, nothing written */
    /* What the step leaves for the policy and the next run: steps never
     * write it themselves; whoever started the step passes the outcome
     * to step_outcome_persist in its callback. */
    enum {
        FENCE_LEFT_ALONE = 0,
        FENCE_APPLIED,           /* fence_target is fenced (its pending fence is done) */
        FENCE_LIFTED,            /* fence_target's fence is lifted (its pending one too) */
        FENCE_PENDING,           /* fence_target could not be reached: fence it when it answers */
    } fence;
    target_id fence_target;
    bool resolution_spent;       /* sync-back succeeded: the operator's conflict decision is used up */
} step_outcome;

typedef void (*step_done_cb)(void *arg, const step_outcome *o);

/* Write what an outcome leaves (fence pending, fenced, the sync
 * resolution) through the store's typed functions. Accepts a NULL store. */
void step_outcome_persist(store_t *st, const step_outcome *o);
typedef struct step_run step_run;

/* Start the work of step s (any action but approve). NULL only on OOM. */
step_run *step_begin(const step_env *env, const runbook_step *s, step_done_cb cb, void *arg);
/* A fence step outside any runbook, [failover] fence's mode, required:
 * the policy's fence-on-return, the executor's lift after a failback that
 * did not finish. NULL only on OOM. */
step_run *step_begin_fence(const step_env *env, const char *name, const char *target, bool lift,
                           int64_t timeout_ms, step_done_cb cb, void *arg);
/* Stop it without a callback (daemon shutting down). Accepts NULL. */
void step_cancel(step_run *r);
/* The output so far of a running step (capture, sync-back, verify: their
 * progress lines), masked, malloc'd; NULL when it has none. Never blocks. */
char *step_progress(const step_run *r);

#endif
