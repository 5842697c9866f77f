/* policy: the pure decisions of policy_rules.c, with a fake clock (the
 * input's now) and hand-built facts: every branch of policy_evaluate, the
 * fence-on-return and the "policy is manual" notice. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "drd/engine/policy_rules.h"

/* An outage the policy should act on: incident 7 open, primary open for
 * 10 s (min_outage 5 s), backup healthy, app on the primary, nothing in
 * flight, seen healthy, no block. */
static policy_input outage(failover_mode mode)
{
    policy_input in = {
        .now = 1000000, .mode = mode, .min_outage_ms = 5000, .require_seen_healthy = true,
        .incident = 7, .primary_breaker = BREAKER_OPEN, .primary_state_age = 10000,
        .primary_seen_healthy = true, .backup_healthy = true, .app_on_primary = true,
    };
    return in;
}

static policy_decision decide(const policy_input *in)
{
    policy_decision d;
    policy_evaluate(in, &d);
    return d;
}

static void test_auto_fails_over_and_decides(void **state)
{
    (void)state;
    policy_input in = outage(FAILOVER_AUTO);
    policy_decision d = decide(&in);
    assert_int_equal(d.action, POLICY_FAILOVER);
    assert_true(d.decided);
    assert_string_equal(policy_action_name(d.action), "failover");
}

static void test_approve_asks(void **state)
{
    (void)state;
    policy_input in = outage(FAILOVER_APPROVE);
    policy_decision d = decide(&in);
    assert_int_equal(d.action, POLICY_ASK);
    assert_true(d.decided);
}

static void test_manual_never_acts(void **state)
{
    (void)state;
    policy_input in = outage(FAILOVER_MANUAL);
    assert_int_equal(decide(&in).action, POLICY_NOTHING);
    in.primary_state_age = 0;                 /* not even a min_outage timer */
    assert_int_equal(decide(&in).action, POLICY_NOTHING);
    assert_true(policy_says_manual(FAILOVER_MANUAL, BREAKER_CLOSED, BREAKER_OPEN, true));
    assert_false(policy_says_manual(FAILOVER_MANUAL, BREAKER_HALF_OPEN, BREAKER_OPEN, true));
    assert_false(policy_says_manual(FAILOVER_MANUAL, BREAKER_CLOSED, BREAKER_OPEN, false));
    assert_false(policy_says_manual(FAILOVER_AUTO, BREAKER_CLOSED, BREAKER_OPEN, true));
}

/* Nothing to decide: no incident, primary closed, app already on the
 * backup, a run in flight, an approval pending, the incident decided. */
static void test_nothing_to_decide(void **state)
{
    (void)state;
    policy_input in = outage(FAILOVER_AUTO);
    in.incident = 0;
    assert_int_equal(decide(&in).action, POLICY_NOTHING);
    in = outage(FAILOVER_AUTO);
    in.primary_breaker = BREAKER_CLOSED;
    assert_int_equal(decide(&in).action, POLICY_NOTHING);
    in = outage(FAILOVER_AUTO);
    in.app_on_primary = false;
    assert_int_equal(decide(&in).action, POLICY_NOTHING);
    in = outage(FAILOVER_AUTO);
    in.run_active = true;
    assert_int_equal(decide(&in).action, POLICY_NOTHING);
    in = outage(FAILOVER_APPROVE);
    in.approval_pending = true;
    assert_int_equal(decide(&in).action, POLICY_NOTHING);
    in = outage(FAILOVER_AUTO);
    in.decided_incident = 7;                  /* once per incident */
    assert_int_equal(decide(&in).action, POLICY_NOTHING);
    in.decided_incident = 6;                  /* an older one does not count */
    assert_int_equal(decide(&in).action, POLICY_FAILOVER);
}

static void test_min_outage_waits_for_the_rest(void **state)
{
    (void)state;
    policy_input in = outage(FAILOVER_AUTO);
    in.primary_state_age = 1500;
    policy_decision d = decide(&in);
    assert_int_equal(d.action, POLICY_WAIT);
    assert_int_equal(d.wait_ms, 3500);
    assert_false(d.decided);
    in.primary_state_age = 5000;              /* exactly min_outage: go */
    assert_int_equal(decide(&in).action, POLICY_FAILOVER);
    /* Half-open (flapping back): min_outage was already served while open. */
    in.primary_breaker = BREAKER_HALF_OPEN;
    in.primary_state_age = 0;
    assert_int_equal(decide(&in).action, POLICY_FAILOVER);
}

static void test_require_seen_healthy_holds_once(void **state)
{
    (void)state;
    policy_input in = outage(FAILOVER_AUTO);
    in.primary_seen_healthy = false;
    policy_decision d = decide(&in);
    assert_int_equal(d.action, POLICY_HOLD);
    assert_int_equal(d.hold, POLICY_HOLD_NOT_SEEN);
    assert_true(d.announce);
    assert_false(d.decided);                  /* a real outage later still counts */
    in.held_incident = 7;
    in.held_why = POLICY_HOLD_NOT_SEEN;
    d = decide(&in);
    assert_int_equal(d.action, POLICY_HOLD);
    assert_false(d.announce);                 /* said once per incident */
    in.incident = 8;
    assert_true(decide(&in).announce);        /* a new incident is said again */
    in = outage(FAILOVER_AUTO);
    in.primary_seen_healthy = false;
    in.require_seen_healthy = false;          /* [failover] require_seen_healthy = false */
    assert_int_equal(decide(&in).action, POLICY_FAILOVER);
}

static void test_misconfigured_holds_before_anything(void **state)
{
    (void)state;
    policy_input in = outage(FAILOVER_APPROVE);
    in.primary_misconfigured = true;
    in.primary_seen_healthy = false;          /* misconfigured wins over not seen */
    in.block_until = in.now + 60000;          /* and over the block */
    policy_decision d = decide(&in);
    assert_int_equal(d.action, POLICY_HOLD);
    assert_int_equal(d.hold, POLICY_HOLD_MISCONFIGURED);
    assert_true(d.announce);
    in.held_incident = 7;
    in.held_why = POLICY_HOLD_NOT_SEEN;       /* said, but for another reason */
    assert_true(decide(&in).announce);
}

/* Flapping: after a policy failover the block decides the next outage as
 * "no failover" until it ends; after it, the next incident fails over. */
static void test_block_after_a_failover(void **state)
{
    (void)state;
    policy_input in = outage(FAILOVER_AUTO);
    in.block_until = in.now + 90000;
    policy_decision d = decide(&in);
    assert_int_equal(d.action, POLICY_BLOCKED);
    assert_int_equal(d.blocked_ms, 90000);
    assert_true(d.decided);
    in.now = in.block_until;                  /* the block has ended */
    assert_int_equal(decide(&in).action, POLICY_FAILOVER);
}

static void test_unhealthy_backup_waits(void **state)
{
    (void)state;
    policy_input in = outage(FAILOVER_AUTO);
    in.backup_healthy = false;
    policy_decision d = decide(&in);
    assert_int_equal(d.action, POLICY_WAIT_BACKUP);
    assert_false(d.decided);                  /* decided when the backup closes */
    in.backup_healthy = true;
    assert_int_equal(decide(&in).action, POLICY_FAILOVER);
}

static void test_fence_on_return(void **state)
{
    (void)state;
    policy_fence_input in = { .primary_probe_ok = true, .fence_pending_primary = true, .app_on_backup = true };
    assert_true(policy_fence_now(&in));
    policy_fence_input no = in;
    no.primary_probe_ok = false;
    assert_false(policy_fence_now(&no));
    no = in;
    no.fence_pending_primary = false;
    assert_false(policy_fence_now(&no));
    no = in;
    no.app_on_backup = false;                 /* failed back: the primary is the app's again */
    assert_false(policy_fence_now(&no));
    no = in;
    no.fence_in_flight = true;
    assert_false(policy_fence_now(&no));
    no = in;
    no.in_backoff = true;
    assert_false(policy_fence_now(&no));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto_fails_over_and_decides),
        cmocka_unit_test(test_approve_asks),
        cmocka_unit_test(test_manual_never_acts),
        cmocka_unit_test(test_nothing_to_decide),
        cmocka_unit_test(test_min_outage_waits_for_the_rest),
        cmocka_unit_test(test_require_seen_healthy_holds_once),
        cmocka_unit_test(test_misconfigured_holds_before_anything),
        cmocka_unit_test(test_block_after_a_failover),
        cmocka_unit_test(test_unhealthy_backup_waits),
        cmocka_unit_test(test_fence_on_return),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
