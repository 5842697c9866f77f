/* Cron expressions: parsing and the next matching minute. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drd/core/cron.h"

static time_t at(int y, int mo, int d, int h, int mi)
{
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                     .tm_isdst = -1 };
    return mktime(&tm);
}

static void parses_valid(void **st)
{
    (void)st;
    static const char *const ok[] = { "* * * * *", "0 2 * * 0", "*/15 * * * *", "0 0 1,15 * *",
                                      "30 4 * * 1-5", "0 0 * * 7", "5/10 * * * *", " 0  2 * * * " };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_true(cron_valid(ok[i]));
}

static void rejects_invalid(void **st)
{
    (void)st;
    char err[128];
    cron_expr c;
    assert_false(cron_parse("0 2 * *", &c, err, sizeof err));
    assert_non_null(strstr(err, "5 fields"));
    assert_false(cron_parse("60 * * * *", &c, err, sizeof err));
    assert_non_null(strstr(err, "minute"));
    assert_false(cron_parse("* 24 * * *", &c, err, sizeof err));
    assert_false(cron_parse("* * 0 * *", &c, err, sizeof err));
    assert_false(cron_parse("* * * 13 *", &c, err, sizeof err));
    assert_false(cron_parse("* * * * 8", &c, err, sizeof err));
    assert_false(cron_parse("*/0 * * * *", &c, err, sizeof err));
    assert_false(cron_parse("5-1 * * * *", &c, err, sizeof err));
    assert_false(cron_parse("a * * * *", &c, err, sizeof err));
    assert_false(cron_parse("* * * * * *", &c, err, sizeof err));
}

static void next_minute(void **st)
{
    (void)st;
    setenv("TZ", "UTC", 1);
    tzset();
    cron_expr c;
    char err[128];
    assert_true(cron_parse("0 2 * * 0", &c, err, sizeof err));          /* Sundays 02:00 */
    /* 2026-11-21 is a Saturday */
    assert_int_equal(cron_next(&c, at(2026, 11, 21, 20, 15)), at(2026, 11, 22, 2, 0));
    assert_int_equal(cron_next(&c, at(2026, 11, 22, 2, 0)), at(2026, 11, 29, 2, 0));
    assert_true(cron_parse("*/15 * * * *", &c, err, sizeof err));
    assert_int_equal(cron_next(&c, at(2026, 11, 21, 20, 15)), at(2026, 11, 21, 20, 30));
    assert_true(cron_parse("0 0 1 * *", &c, err, sizeof err));
    assert_int_equal(cron_next(&c, at(2026, 12, 15, 0, 0)), at(2027, 1, 1, 0, 0));
    /* dom and dow both restricted: either matches (the 13th, or a Friday) */
    assert_true(cron_parse("0 12 13 * 5", &c, err, sizeof err));
    assert_int_equal(cron_next(&c, at(2026, 11, 21, 0, 0)), at(2026, 11, 27, 12, 0));
    /* Feb 29 only: the next leap year */
    assert_true(cron_parse("0 0 29 2 *", &c, err, sizeof err));
    assert_int_equal(cron_next(&c, at(2026, 11, 21, 0, 0)), at(2028, 2, 29, 0, 0));
}

/* A day of the month that no chosen month has never comes: refused, so
 * that [refresh] schedule cannot silently never run. */
static void never_refused(void **st)
{
    (void)st;
    char err[128];
    cron_expr c;
    assert_false(cron_parse("0 0 30 2 *", &c, err, sizeof err));
    assert_non_null(strstr(err, "never"));
    assert_false(cron_parse("0 0 31 4,6,9,11 *", &c, err, sizeof err));
    assert_false(cron_parse("* * 30-31 2 *", &c, err, sizeof err));
    /* either day field may match when both are restricted: fine */
    assert_true(cron_parse("0 0 31 2 1", &c, err, sizeof err));
    assert_true(cron_parse("0 0 31 1-2 *", &c, err, sizeof err));
}

/* cron_next gives up after 4 years of time, not 4 years of iterations: an
 * expression that never matches cost ~5 s of the main loop (Europe/Berlin,
 * found by fuzz/cron). */
static void never_is_quick(void **st)
{
    (void)st;
    struct timespec t0, t1;
    cron_expr c = { .minute = 1, .hour = 1, .dom = 1u << 31, .month = 1u << 2,
                    .dow = 0x7f, .dom_any = false, .dow_any = true };
    setenv("TZ", "Europe/Berlin", 1);
    tzset();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(cron_next(&c, at(2026, 1, 1, 0, 0)), -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms < 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_valid),
        cmocka_unit_test(rejects_invalid),
        cmocka_unit_test(next_minute),
        cmocka_unit_test(never_refused),
        cmocka_unit_test(never_is_quick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
