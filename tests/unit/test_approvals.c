/* approvals: which decisions are allowed and what each does to its step
 * (approvals.c, pure), and the state names the store and the API carry. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "drd/engine/approvals.h"
#include "drd/core/util.h"

static store_approval approval(const char *kind, const char *state)
{
    store_approval a;
    memset(&a, 0, sizeof a);
    a.id = 12;
    a.step_idx = 3;
    str_copy(a.kind, kind, sizeof a.kind);
    str_copy(a.state, state, sizeof a.state);
    return a;
}

static void test_only_pending_is_decided(void **state)
{
    (void)state;
    char err[256] = "";
    store_approval a = approval("step", "pending");
    assert_true(approval_check(&a, NULL, false, err, sizeof err));
    a = approval("step", "approved");
    str_copy(a.decided_by, "alice", sizeof a.decided_by);
    assert_false(approval_check(&a, NULL, false, err, sizeof err));
    assert_string_equal(err, "approval 12 is already approved by alice");
    a = approval("policy", "expired");
    assert_false(approval_check(&a, NULL, false, err, sizeof err));
    assert_string_equal(err, "approval 12 is already expired");
    a = approval("attention", "rejected");
    assert_false(approval_check(&a, "skip", false, err, sizeof err));
}

static void test_choices_only_for_attention(void **state)
{
    (void)state;
    char err[256] = "";
    store_approval a = approval("step", "pending");
    assert_false(approval_check(&a, "skip", false, err, sizeof err));
    assert_string_equal(err, "a choice (skip) only applies to a step that needs attention");
    a = approval("policy", "pending");
    assert_false(approval_check(&a, "retry", false, err, sizeof err));
    a = approval("attention", "pending");
    assert_true(approval_check(&a, "retry", false, err, sizeof err));
    assert_true(approval_check(&a, "skip", false, err, sizeof err));
    assert_true(approval_check(&a, "abort", false, err, sizeof err));
    assert_true(approval_check(&a, "", false, err, sizeof err));
    assert_false(approval_check(&a, "yes", false, err, sizeof err));
    assert_string_equal(err, "choice must be retry, skip, abort, backup-wins or primary-wins");
    /* The conflict resolutions only for a sync-back step. */
    assert_false(approval_check(&a, "backup-wins", false, err, sizeof err));
    assert_string_equal(err, "backup-wins only applies to a sync-back step with conflicts");
    assert_true(approval_check(&a, "backup-wins", true, err, sizeof err));
    assert_true(approval_check(&a, "primary-wins", true, err, sizeof err));
}

static void test_what_a_decision_does(void **state)
{
    (void)state;
    approval_outcome o;
    /* approve steps */
    o = approval_outcome_of(APPROVAL_STEP, true, CHOICE_NONE);
    assert_int_equal(o.effect, EFFECT_DONE);
    o = approval_outcome_of(APPROVAL_STEP, false, CHOICE_NONE);     /* rejected or expired */
    assert_int_equal(o.effect, EFFECT_ABORT);
    /* steps that need attention */
    o = approval_outcome_of(APPROVAL_ATTENTION, true, CHOICE_NONE);
    assert_int_equal(o.effect, EFFECT_RETRY);
    assert_int_equal(o.resolution, CHOICE_NONE);
    o = approval_outcome_of(APPROVAL_ATTENTION, true, CHOICE_RETRY);
    assert_int_equal(o.effect, EFFECT_RETRY);
    o = approval_outcome_of(APPROVAL_ATTENTION, true, CHOICE_SKIP);
    assert_int_equal(o.effect, EFFECT_SKIP);
    o = approval_outcome_of(APPROVAL_ATTENTION, true, CHOICE_ABORT);
    assert_int_equal(o.effect, EFFECT_ABORT);
    o = approval_outcome_of(APPROVAL_ATTENTION, false, CHOICE_SKIP);  /* reject wins over a choice */
    assert_int_equal(o.effect, EFFECT_ABORT);
    o = approval_outcome_of(APPROVAL_ATTENTION, true, CHOICE_BACKUP_WINS);
    assert_int_equal(o.effect, EFFECT_RETRY);
    assert_int_equal(o.resolution, CHOICE_BACKUP_WINS);
    o = approval_outcome_of(APPROVAL_ATTENTION, true, CHOICE_PRIMARY_WINS);
    assert_int_equal(o.resolution, CHOICE_PRIMARY_WINS);
    assert_string_equal(approval_choice_name(o.resolution), "primary-wins");
}

static void test_choice_names_round_trip(void **state)
{
    (void)state;
    approval_choice c;
    for (int i = 0; i < CHOICE_COUNT; i++) {
        assert_true(approval_choice_parse(approval_choice_name((approval_choice)i), &c));
        assert_int_equal(c, i);
    }
    assert_true(approval_choice_parse(NULL, &c));
    assert_int_equal(c, CHOICE_NONE);
    assert_false(approval_choice_parse("Skip", &c));
}

/* The text of each state is the contract (SQLite, API, page): fixed. */
static void test_state_names_are_the_contract(void **state)
{
    (void)state;
    static const char *const runs[] = { "running", "waiting", "succeeded", "failed", "aborted" };
    static const char *const steps[] = { "pending", "running", "done", "failed", "skipped", "needs_attention" };
    static const char *const apps[] = { "pending", "approved", "rejected", "expired" };
    static const char *const kinds[] = { "policy", "step", "attention" };
    run_state r;
    step_state s;
    approval_state a;
    approval_kind k;
    target_id t;
    for (int i = 0; i < RUN_STATE_COUNT; i++) {
        assert_string_equal(run_state_name((run_state)i), runs[i]);
        assert_true(run_state_parse(runs[i], &r));
        assert_int_equal(r, i);
    }
    for (int i = 0; i < STEP_STATE_COUNT; i++) {
        assert_string_equal(step_state_name((step_state)i), steps[i]);
        assert_true(step_state_parse(steps[i], &s));
        assert_int_equal(s, i);
    }
    for (int i = 0; i < APPROVAL_STATE_COUNT; i++) {
        assert_string_equal(approval_state_name((approval_state)i), apps[i]);
        assert_true(approval_state_parse(apps[i], &a));
        assert_int_equal(a, i);
    }
    for (int i = 0; i < APPROVAL_KIND_COUNT; i++) {
        assert_string_equal(approval_kind_name((approval_kind)i), kinds[i]);
        assert_true(approval_kind_parse(kinds[i], &k));
        assert_int_equal(k, i);
    }
    assert_string_equal(target_name(TARGET_PRIMARY), "primary");
    assert_string_equal(target_name(TARGET_BACKUP), "backup");
    assert_true(target_parse("backup", &t));
    assert_int_equal(t, TARGET_BACKUP);
    assert_false(target_parse("Backup", &t));
    assert_int_equal(target_or_primary(NULL), TARGET_PRIMARY);
    assert_int_equal(target_or_primary("app"), TARGET_PRIMARY);
    assert_false(run_state_parse("", &r));
    assert_int_equal(run_state_of(NULL), RUN_STATE_COUNT);
    assert_true(run_state_final(RUN_ABORTED));
    assert_false(run_state_final(RUN_WAITING));
    assert_string_equal(run_state_name((run_state)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_pending_is_decided),
        cmocka_unit_test(test_choices_only_for_attention),
        cmocka_unit_test(test_what_a_decision_does),
        cmocka_unit_test(test_choice_names_round_trip),
        cmocka_unit_test(test_state_names_are_the_contract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
