/* fuzz_cron.c - the cron parser and cron_next (src/core/cron.c), in a time
 * zone with daylight saving time (Europe/Berlin), from instants around
 * both of 2026's transitions and a leap day. A parsed expression's next
 * time must be a whole minute strictly after the given instant, and must
 * match the expression's fields (local time). */
#include "fuzz.h"

#include <time.h>

#include "drd/core/cron.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    setenv("TZ", "Europe/Berlin", 1);
    tzset();
    return 0;
}

static void check_next(const cron_expr *c, const char *s, time_t after)
{
    time_t t = cron_next(c, after);
    struct tm tm;

    if (t == -1)
        return;                   /* never within 4 years (e.g. "0 0 30 2 *") */
    if (t <= after || t % 60 != 0)
        fuzz_fail("\"%s\" after %lld: %lld is not a later whole minute", s,
                  (long long)after, (long long)t);
    if (localtime_r(&t, &tm) == NULL)
        fuzz_fail("localtime_r");
    bool dom = (c->dom >> tm.tm_mday) & 1, dow = (c->dow >> tm.tm_wday) & 1;
    bool day = c->dom_any || c->dow_any ? dom && dow : dom || dow;
    if (!((c->minute >> tm.tm_min) & 1) || !((c->hour >> tm.tm_hour) & 1) ||
        !((c->month >> (tm.tm_mon + 1)) & 1) || !day)
        fuzz_fail("\"%s\" after %lld: %lld (%04d-%02d-%02d %02d:%02d) does not match", s,
                  (long long)after, (long long)t, tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const time_t afters[] = {
        1774744200,   /* 2026-03-29 00:30 UTC: 01:30 CET, clocks go 02:00 -> 03:00 */
        1792888200,   /* 2026-10-25 00:30 UTC: 02:30 CEST, clocks go 03:00 -> 02:00 */
        1792891830,   /* 2026-10-25 01:30:30 UTC: 02:30:30 CET, the second 02:30 */
        1835395199,   /* 2028-02-28 23:59:59 UTC: the day before a leap day */
    };
    char *s = fuzz_str(data, len), err[256];
    cron_expr c;

    if (cron_parse(s, &c, err, sizeof err)) {
        if (!cron_valid(s))
            fuzz_fail("\"%s\" parses but is not valid", s);
        for (size_t i = 0; i < ARRAY_LEN(afters); i++)
            check_next(&c, s, afters[i]);
    } else if (err[0] == '\0') {
        fuzz_fail("\"%s\" refused without a message", s);
    }
    free(s);
    return 0;
}
