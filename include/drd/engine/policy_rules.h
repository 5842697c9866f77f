/* policy_rules.h - the failover policy's decisions as pure functions, like
 * breaker.h: the caller gathers the facts into an input struct (the clock
 * is one of them), the function says what to do, and the shell (policy.c)
 * does it (timers, store, executor, events, notifications). No clock, no
 * I/O here: test_policy.c covers every decision.
 *
 * evaluate, in order (the first that applies wins):
 *   manual policy, no open primary incident, primary breaker closed,
 *   app not on the primary, a run active, an approval pending,
 *   incident already decided                               -> NOTHING
 *   breaker open for less than min_outage                  -> WAIT (wait_ms)
 *   primary misconfigured / not seen healthy (required)    -> HOLD (why; say
 *                                                             once per incident and reason)
 *   block after the last policy failover still on          -> BLOCKED (decided)
 *   backup not healthy                                     -> WAIT_BACKUP
 *   auto                                                   -> FAILOVER (decided)
 *   approve                                                -> ASK (decided) */
#ifndef DRD_POLICY_RULES_H
#define DRD_POLICY_RULES_H

#include <stdbool.h>
#include <stdint.h>
#include "drd/conf/choices.h"
#include "drd/health/breaker.h"

typedef enum {
    POLICY_NOTHING = 0,
    POLICY_WAIT,          /* min_outage not reached: decide again in wait_ms */
    POLICY_HOLD,          /* an outage drd cannot vouch for: no failover (not decided) */
    POLICY_BLOCKED,       /* the block after the last failover: decided, no failover */
    POLICY_WAIT_BACKUP,   /* decide again when the backup's breaker closes */
    POLICY_FAILOVER,      /* start the failover now (auto) */
    POLICY_ASK,           /* create the approval (approve) */
} policy_action;

typedef enum { POLICY_HOLD_NONE = 0, POLICY_HOLD_NOT_SEEN = 1, POLICY_HOLD_MISCONFIGURED = 2 } policy_hold;

typedef struct {
    int64_t now;                  /* wall ms */
    failover_mode mode;
    int64_t min_outage_ms;
    bool require_seen_healthy;
    int64_t incident;             /* the primary's open incident, 0 = none */
    breaker_state primary_breaker;
    int64_t primary_state_age;    /* ms in its current breaker state */
    bool primary_misconfigured;
    bool primary_seen_healthy;
    bool backup_healthy;
    bool app_on_primary;
    bool run_active;
    bool approval_pending;        /* a policy approval waits for a decision */
    int64_t decided_incident;     /* the incident last decided, 0 = none */
    int64_t block_until;          /* wall ms, 0 = no block */
    int64_t held_incident;        /* the hold last said: for which incident */
    policy_hold held_why;         /* ... and why */
} policy_input;

typedef struct {
    policy_action action;
    int64_t wait_ms;              /* WAIT: time left of min_outage */
    policy_hold hold;             /* HOLD: why */
    bool announce;                /* HOLD: not said yet for this incident and reason */
    int64_t blocked_ms;           /* BLOCKED: time left of the block */
    bool decided;                 /* the incident counts as decided from now on */
} policy_decision;

void policy_evaluate(const policy_input *in, policy_decision *out);
const char *policy_action_name(policy_action a);

/* Fence-on-return: the old primary answers a probe again while a fence of
 * it is pending and the app is on the backup. */
typedef struct {
    bool primary_probe_ok;
    bool fence_pending_primary;   /* store_fence_pending names the primary */
    bool app_on_backup;
    bool fence_in_flight;
    bool in_backoff;              /* a failed attempt was too recent */
} policy_fence_input;

bool policy_fence_now(const policy_fence_input *in);

/* Say "policy is manual" when the primary's breaker opens from closed while
 * the app is on it and the policy is manual. */
bool policy_says_manual(failover_mode mode, breaker_state from, breaker_state to, bool app_on_primary);

#endif
