/* policy.h - when a primary outage starts a failover.
 *   auto:    after the primary's breaker has been open for min_outage and
 *            the backup is healthy, start the failover runbook;
 *   approve: the same moment creates an approval; approving starts it;
 *   manual:  only `drctl failover` (or the page) starts it.
 * Never towards an unhealthy backup; never an automatic failback; after a
 * policy-started failover no other starts by policy for `block`. One
 * decision per incident. Also applies a pending fence to the old primary
 * the moment it answers again while the app is on the backup. */
#ifndef DRD_POLICY_H
#define DRD_POLICY_H

#include <stdbool.h>
#include <stdint.h>
#include "drd/engine/executor.h"
#include "drd/engine/monitor.h"
#include "drd/engine/notify.h"

typedef struct policy policy_t;

policy_t *policy_new(loop_t *loop, store_t *store, monitor_t *monitor, executor_t *ex,
                     fetch_t *fetch, const config_t *cfg);
void policy_free(policy_t *p);                 /* accepts NULL */
void policy_reconfigure(policy_t *p, const config_t *cfg);
/* Called after anything the status shows changed (an approval created,
 * withdrawn or expired). */
void policy_set_change_cb(policy_t *p, void (*cb)(void *arg), void *arg);
/* Withdraw a pending policy approval (e.g. an operator started the
 * failover by hand). */
void policy_withdraw(policy_t *p, const char *why);
/* The refresh module: its data-loss window goes into the approval prompt,
 * and a running refresh is stopped before a failover starts (may be NULL). */
struct refresh;
void policy_set_refresh(policy_t *p, struct refresh *r);
/* Where the fence-on-return's duration is counted and who is told about
 * policy approvals and fences (either may be NULL). */
void policy_set_observers(policy_t *p, metrics_counters *c, notify_t *n);
/* Re-evaluate after a restart (an outage may be in progress). */
void policy_start(policy_t *p);

/* Feed from the monitor and the executor. */
void policy_on_transition(policy_t *p, target_id t, const breaker_transition *tr);
void policy_on_probe(policy_t *p, target_id t, const probe_result *r);
void policy_on_run_done(policy_t *p, int64_t run_id, const char *kind, run_state state);

/* Wall ms when the block after the last policy failover ends; 0 if none
 * is active. */
int64_t policy_block_until(policy_t *p);
/* The same, read from a state database (drctl, daemon down). */
int64_t policy_block_until_stored(store_t *st);
/* Lift an active block (drctl unblock); an outage left undecided because of
 * it is decided again at once. false with err if no block is active. */
bool policy_unblock(policy_t *p, const char *by, char *err, size_t errlen);

/* Start a failover asked for by an operator (by: the actor): the same
 * preconditions as the policy's own (a refresh in progress is stopped
 * first; a pending policy approval is withdrawn once it started). Returns
 * the run id, or 0 with err. No block follows it. */
int64_t policy_failover(policy_t *p, const char *reason, const char *by, int64_t request_id,
                        char *err, size_t errlen);

/* Decide a policy approval (kind "policy"). false with err if it is not one
 * of ours or not pending. *run_id gets the started run, if any. */
bool policy_decide(policy_t *p, int64_t approval_id, bool approve, const char *by,
                   const char *reason, int64_t *run_id, char *err, size_t errlen);

#endif
