/* log.c - leveled logging to stderr. One line per message, secrets masked.
 * Under systemd (JOURNAL_STREAM set) lines carry "<N>" priority prefixes and
 * no timestamp, since the journal adds its own. */
#include "drd/core/log.h"
#include "drd/core/mask.h"
#include "drd/core/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* set by the loop (a reload), read by every thread that logs */
static _Atomic log_level g_level = LOG_LVL_INFO;
static bool g_journal = false;

const char *const log_level_names[] = { "debug", "info", "warn", "error", NULL };
static const char *const level_names[] = { "DEBUG", "INFO", "WARN", "ERROR" };
static const int level_prio[] = { 7, 6, 4, 3 };

void log_set_level(log_level lvl) { g_level = lvl; }
void log_set_journal(bool journal) { g_journal = journal; }

bool log_parse_level(const char *s, log_level *out)
{
    for (size_t i = 0; log_level_names[i] != NULL; i++)
        if (strcasecmp(s, log_level_names[i]) == 0) {
            *out = (log_level)i;
            return true;
        }
    return false;
}

void log_add_secret(const char *secret)
{
    mask_add_secret(secret);
}

void log_clear_secrets(void)
{
    mask_clear_secrets();
}

void log_mask(char *buf, size_t n)
{
    if (n == 0)
        return;
    buf[n - 1] = '\0';
    char *m = mask_dup(buf);
    str_copy(buf, m != NULL ? m : "****", n);   /* out of memory: nothing shown */
    free(m);
}

void log_msg(log_level lvl, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;

    if (lvl < g_level)
        return;
    va_start(ap, fmt);
    mask_vformat(msg, sizeof msg, "\xE2\x80\xA6", fmt, ap);   /* masked whole, then cut ("…") */
    va_end(ap);
    /* One line per message: fold embedded newlines. */
    for (char *p = msg; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';

    if (g_journal) {
        fprintf(stderr, "<%d>%s\n", level_prio[lvl], msg);
    } else {
        struct timespec ts;
        struct tm tm;
        char when[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(stderr, "%s.%03ldZ %-5s %s\n", when, ts.tv_nsec / 1000000, level_names[lvl], msg);
    }
}
