/* cron.c - five-field cron expressions: minute hour day-of-month month
 * day-of-week; each field is *, N, A-B, a comma list of those, and any of
 * them with /STEP. Day-of-week 0 or 7 is Sunday. As in Vixie cron, when both
 * day fields are restricted a day matches if either matches. */
#include "drd/core/cron.h"
#include "drd/core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int lo, hi;
} field_spec;

static const field_spec fields[5] = {
    { "minute", 0, 59 }, { "hour", 0, 23 }, { "day of month", 1, 31 },
    { "month", 1, 12 }, { "day of week", 0, 7 },
};

static bool parse_num(const char **p, int *out)
{
    char *end;
    if (**p < '0' || **p > '9')
        return false;
    long v = strtol(*p, &end, 10);
    if (v > 1000)
        return false;
    *out = (int)v;
    *p = end;
    return true;
}

/* One field into a bit set; *any tells whether it was a bare "*". */
static bool parse_field(const char *s, size_t len, const field_spec *f, uint64_t *bits, bool *any,
                        char *err, size_t errlen)
{
    char buf[128];
    if (len == 0 || len >= sizeof buf) {
        snprintf(err, errlen, "bad %s field", f->name);
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    *bits = 0;
    *any = strcmp(buf, "*") == 0;
    for (char *item = buf, *next; item != NULL; item = next) {
        next = strchr(item, ',');
        if (next != NULL)
            *next++ = '\0';
        const char *p = item;
        int lo, hi, step = 1;
        if (*p == '*') {
            lo = f->lo;
            hi = f->hi;
            p++;
        } else {
            if (!parse_num(&p, &lo))
                goto bad;
            hi = lo;
            if (*p == '-') {
                p++;
                if (!parse_num(&p, &hi))
                    goto bad;
            }
        }
        if (*p == '/') {
            p++;
            if (!parse_num(&p, &step) || step < 1)
                goto bad;
            if (lo == hi && item[0] != '*')
                hi = f->hi;              /* "5/15" = from 5 on, every 15 */
        }
        if (*p != '\0' || lo < f->lo || hi > f->hi || lo > hi)
            goto bad;
        for (int v = lo; v <= hi; v += step)
            *bits |= 1ULL << v;
    }
    return true;
bad:
    snprintf(err, errlen, "bad %s field \"%s\" (allowed %d-%d)", f->name, buf, f->lo, f->hi);
    return false;
}

bool cron_parse(const char *s, cron_expr *out, char *err, size_t errlen)
{
    const char *p = s;
    uint64_t bits[5];
    bool any[5];
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 5; i++) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, " \t");
        if (len == 0) {
            snprintf(err, errlen, "expected 5 fields (minute hour day-of-month month day-of-week), got %d", i);
            return false;
        }
        if (!parse_field(p, len, &fields[i], &bits[i], &any[i], err, errlen))
            return false;
        p += len;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0') {
        snprintf(err, errlen, "expected 5 fields, got more: \"%s\"", p);
        return false;
    }
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->dom = (uint32_t)bits[2];
    out->month = (uint16_t)bits[3];
    out->dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f);   /* 7 -> 0 */
    out->dom_any = any[2];
    out->dow_any = any[4];
    /* With the day of week unrestricted, a day of month must exist in some
     * chosen month ("0 0 30 2 *" would never run). */
    if (!out->dom_any && out->dow_any) {
        static const int mdays[13] = { 0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        bool meet = false;
        for (int m = 1; m <= 12 && !meet; m++)
            for (int d = 1; d <= mdays[m] && !meet; d++)
                meet = ((out->month >> m) & 1) && ((out->dom >> d) & 1);
        if (!meet) {
            snprintf(err, errlen, "the day of month never comes in the chosen months (e.g. 30 2)");
            return false;
        }
    }
    return true;
}

bool cron_valid(const char *s)
{
    cron_expr c;
    char err[128];
    return cron_parse(s, &c, err, sizeof err);
}

static bool day_matches(const cron_expr *c, const struct tm *tm)
{
    bool dom = (c->dom >> tm->tm_mday) & 1, dow = (c->dow >> tm->tm_wday) & 1;
    if (c->dom_any || c->dow_any)
        return dom && dow;
    return dom || dow;
}

time_t cron_next(const cron_expr *c, time_t after)
{
    struct tm tm;
    time_t t = after - after % 60 + 60;         /* the next whole minute */
    const time_t limit = t + (time_t)4 * 366 * 86400;
    /* At most 4 years ahead (Feb 29), skipping whole days and hours that
     * cannot match; the guard only stops a clock that does not advance. */
    for (int guard = 0; guard < 4 * 366 * 24 * 60 && t <= limit; guard++) {
        if (localtime_r(&t, &tm) == NULL)
            return -1;
        if (!((c->month >> (tm.tm_mon + 1)) & 1) || !day_matches(c, &tm)) {
            tm.tm_hour = 0;
            tm.tm_min = 0;
            tm.tm_sec = 0;
            tm.tm_mday++;
            tm.tm_isdst = -1;
            t = mktime(&tm);
            continue;
        }
        if (!((c->hour >> tm.tm_hour) & 1)) {
            tm.tm_min = 0;
            tm.tm_sec = 0;
            tm.tm_hour++;
            tm.tm_isdst = -1;
            t = mktime(&tm);
            continue;
        }
        if ((c->minute >> tm.tm_min) & 1)
            return t;
        t += 60;
    }
    return -1;
}
