/* Every transition of the circuit breaker, with an injected clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "drd/health/breaker.h"

static const breaker_params P = { .failures = 3, .successes = 2, .cooldown_ms = 10000 };

static void closed_stays_closed_below_threshold(void **st)
{
    (void)st;
    breaker_t b;
    breaker_transition t;
    breaker_init(&b, &P, BREAKER_CLOSED, 0);
    assert_false(breaker_record(&b, false, 1000, &t));
    assert_false(breaker_record(&b, false, 2000, &t));
    assert_false(breaker_record(&b, true, 3000, &t));   /* a success resets the streak */
    assert_false(breaker_record(&b, false, 4000, &t));
    assert_false(breaker_record(&b, false, 5000, &t));
    assert_int_equal(b.state, BREAKER_CLOSED);
}

static void closed_opens_after_failures(void **st)
{
    (void)st;
    breaker_t b;
    breaker_transition t;
    breaker_init(&b, &P, BREAKER_CLOSED, 0);
    breaker_record(&b, false, 1000, &t);
    breaker_record(&b, false, 2000, &t);
    assert_true(breaker_record(&b, false, 3000, &t));
    assert_int_equal(t.from, BREAKER_CLOSED);
    assert_int_equal(t.to, BREAKER_OPEN);
    assert_string_equal(t.reason, "3 consecutive failures");
    assert_int_equal(b.state, BREAKER_OPEN);
    assert_int_equal(b.since, 3000);
}

static void open_ignores_results_until_cooldown(void **st)
{
    (void)st;
    breaker_t b;
    breaker_transition t;
    breaker_init(&b, &P, BREAKER_OPEN, 0);
    assert_false(breaker_record(&b, true, 1000, &t));
    assert_false(breaker_record(&b, true, 2000, &t));
    assert_false(breaker_record(&b, true, 3000, &t));
    assert_false(breaker_tick(&b, 9999, &t));
    assert_int_equal(b.state, BREAKER_OPEN);
    assert_int_equal(breaker_next_deadline(&b, 4000), 6000);
    assert_true(breaker_tick(&b, 10000, &t));
    assert_int_equal(t.from, BREAKER_OPEN);
    assert_int_equal(t.to, BREAKER_HALF_OPEN);
    assert_int_equal(b.state, BREAKER_HALF_OPEN);
    assert_int_equal(breaker_next_deadline(&b, 10000), -1);
}

static void half_open_closes_after_successes(void **st)
{
    (void)st;
    breaker_t b;
    breaker_transition t;
    breaker_init(&b, &P, BREAKER_HALF_OPEN, 0);
    assert_false(breaker_record(&b, true, 1000, &t));
    assert_true(breaker_record(&b, true, 2000, &t));
    assert_int_equal(t.from, BREAKER_HALF_OPEN);
    assert_int_equal(t.to, BREAKER_CLOSED);
    assert_int_equal(b.state, BREAKER_CLOSED);
}

static void half_open_reopens_on_one_failure(void **st)
{
    (void)st;
    breaker_t b;
    breaker_transition t;
    breaker_init(&b, &P, BREAKER_HALF_OPEN, 0);
    assert_false(breaker_record(&b, true, 1000, &t));
    assert_true(breaker_record(&b, false, 2000, &t));
    assert_int_equal(t.to, BREAKER_OPEN);
    assert_int_equal(b.since, 2000);
    /* The cooldown restarts from the new opening. */
    assert_false(breaker_tick(&b, 11999, &t));
    assert_true(breaker_tick(&b, 12000, &t));
}

static void successes_counted_in_open_do_not_carry_into_half_open(void **st)
{
    (void)st;
    breaker_t b;
    breaker_transition t;
    breaker_init(&b, &P, BREAKER_OPEN, 0);
    breaker_record(&b, true, 1000, &t);
    breaker_record(&b, true, 2000, &t);
    assert_true(breaker_tick(&b, 10000, &t));
    /* needs two fresh successes */
    assert_false(breaker_record(&b, true, 11000, &t));
    assert_true(breaker_record(&b, true, 12000, &t));
}

static void params_clamped_and_reloadable(void **st)
{
    (void)st;
    breaker_t b;
    breaker_transition t;
    breaker_params zero = { 0, 0, -5 };
    breaker_init(&b, &zero, BREAKER_CLOSED, 0);
    assert_true(breaker_record(&b, false, 1, &t));   /* failures clamped to 1 */
    assert_true(breaker_tick(&b, 1, &t));            /* cooldown clamped to 0 */
    breaker_set_params(&b, &P);
    assert_int_equal(b.state, BREAKER_HALF_OPEN);    /* reload keeps the state */
}

static void names_round_trip(void **st)
{
    (void)st;
    breaker_state s;
    for (int i = 0; i < 3; i++) {
        assert_true(breaker_state_parse(breaker_state_name((breaker_state)i), &s));
        assert_int_equal(s, i);
    }
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
    assert_false(breaker_state_parse("ajar", &s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(closed_stays_closed_below_threshold),
        cmocka_unit_test(closed_opens_after_failures),
        cmocka_unit_test(open_ignores_results_until_cooldown),
        cmocka_unit_test(half_open_closes_after_successes),
        cmocka_unit_test(half_open_reopens_on_one_failure),
        cmocka_unit_test(successes_counted_in_open_do_not_carry_into_half_open),
        cmocka_unit_test(params_clamped_and_reloadable),
        cmocka_unit_test(names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
