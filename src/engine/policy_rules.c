/* policy_rules.c - the policy's decisions, pure. See policy_rules.h. */
#include "drd/engine/policy_rules.h"

#include <string.h>

const char *policy_action_name(policy_action a)
{
    static const char *const names[] = { "nothing", "wait", "hold", "blocked", "wait-backup",
                                         "failover", "ask" };
    return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

void policy_evaluate(const policy_input *in, policy_decision *out)
{
    memset(out, 0, sizeof *out);
    out->action = POLICY_NOTHING;
    if (in->mode == FAILOVER_MANUAL || in->incident == 0 || in->primary_breaker == BREAKER_CLOSED)
        return;
    if (!in->app_on_primary || in->run_active || in->approval_pending)
        return;
    if (in->decided_incident == in->incident)
        return;                          /* this outage was already decided */
    if (in->primary_breaker == BREAKER_OPEN && in->primary_state_age < in->min_outage_ms) {
        out->action = POLICY_WAIT;
        out->wait_ms = in->min_outage_ms - in->primary_state_age;
        return;
    }
    /* Not an outage drd can vouch for: a primary that refuses drd's
     * credentials (or database, TLS) now, or one never seen healthy since
     * drd started (a typo in its URL looks exactly like an outage). Not
     * decided: a real outage later in the same incident still counts. */
    policy_hold why = in->primary_misconfigured ? POLICY_HOLD_MISCONFIGURED
                    : in->require_seen_healthy && !in->primary_seen_healthy ? POLICY_HOLD_NOT_SEEN
                    : POLICY_HOLD_NONE;
    if (why != POLICY_HOLD_NONE) {
        out->action = POLICY_HOLD;
        out->hold = why;
        out->announce = in->held_incident != in->incident || in->held_why != why;
        return;
    }
    if (in->block_until > in->now) {
        out->action = POLICY_BLOCKED;
        out->blocked_ms = in->block_until - in->now;
        out->decided = true;
        return;
    }
    if (!in->backup_healthy) {
        out->action = POLICY_WAIT_BACKUP;    /* decided again when the backup's breaker closes */
        return;
    }
    out->decided = true;
    out->action = in->mode == FAILOVER_AUTO ? POLICY_FAILOVER : POLICY_ASK;
}

bool policy_fence_now(const policy_fence_input *in)
{
    return in->primary_probe_ok && in->fence_pending_primary && in->app_on_backup &&
           !in->fence_in_flight && !in->in_backoff;
}

bool policy_says_manual(failover_mode mode, breaker_state from, breaker_state to, bool app_on_primary)
{
    return mode == FAILOVER_MANUAL && from == BREAKER_CLOSED && to == BREAKER_OPEN && app_on_primary;
}
