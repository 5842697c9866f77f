/* fuzz_duration.c - parse_duration_ms and format_duration (src/core/util.c),
 * the durations of every config option and runbook timeout. A duration
 * that parses is never negative and reads the same when written back as
 * "<N>ms"; format_duration fits any buffer size. */
#include "fuzz.h"

#include <inttypes.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    char *s = fuzz_str(data, len), buf[64];
    int64_t ms = -1, again = -1;

    if (parse_duration_ms(s, &ms)) {
        if (ms < 0)
            fuzz_fail("\"%s\" is %" PRId64 " ms", s, ms);
        snprintf(buf, sizeof buf, "%" PRId64 "ms", ms);
        if (!parse_duration_ms(buf, &again) || again != ms)
            fuzz_fail("\"%s\" is %" PRId64 " ms but \"%s\" is not", s, ms, buf);
        for (size_t n = 0; n <= sizeof buf; n += 7) {
            memset(buf, 'x', sizeof buf);
            format_duration(ms, buf, n);
            if (n > 0 && memchr(buf, '\0', n) == NULL)
                fuzz_fail("format_duration(%" PRId64 ") not terminated in %zu bytes", ms, n);
        }
    }
    free(s);
    return 0;
}
