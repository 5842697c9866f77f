/* Cron expressions: parsing and the next matching minute. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drd/cron.h"

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
    assert_true(cron_parse("0 0 30 2 *", &c, err, sizeof err));         /* never */
    assert_int_equal(cron_next(&c, at(2026, 1, 1, 0, 0)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_valid),
        cmocka_unit_test(rejects_invalid),
        cmocka_unit_test(next_minute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
