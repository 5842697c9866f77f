/* cron.h - five-field cron expressions ("min hour dom month dow", with
 * *, lists, ranges and steps), for [refresh] schedule. */
#ifndef DRD_CRON_H
#define DRD_CRON_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

typedef struct {
    uint64_t minute;       /* bit i: minute i (0-59) */
    uint32_t hour;         /* 0-23 */
    uint32_t dom;          /* 1-31 */
    uint16_t month;        /* 1-12 */
    uint8_t dow;           /* 0-6, Sunday = 0 (7 accepted as Sunday) */
    bool dom_any, dow_any; /* for the usual dom/dow OR rule */
} cron_expr;

/* Parse; false with a message in err (also for a day of month that none
 * of the chosen months has, with any day of week: "0 0 30 2 *"). */
bool cron_parse(const char *s, cron_expr *out, char *err, size_t errlen);
bool cron_valid(const char *s);
/* The first matching minute strictly after `after` (local time), or -1
 * if none within 4 years. */
time_t cron_next(const cron_expr *c, time_t after);

#endif
