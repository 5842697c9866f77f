/* log.c - leveled logging to stderr. One line per message, secrets masked.
 * Under systemd (JOURNAL_STREAM set) lines carry "<N>" priority prefixes and
 * no timestamp, since the journal adds its own. */
#include "drd/log.h"
#include "drd/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_SECRETS 16

static log_level g_level = LOG_LVL_INFO;
static bool g_journal = false;
static char *g_secrets[MAX_SECRETS];
static size_t g_n_secrets;
/* The HTTP thread logs too: serialise access to the secret list. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = { "DEBUG", "INFO", "WARN", "ERROR" };
static const int level_prio[] = { 7, 6, 4, 3 };

void log_set_level(log_level lvl) { g_level = lvl; }
void log_set_journal(bool journal) { g_journal = journal; }

bool log_parse_level(const char *s, log_level *out)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (strcasecmp(s, names[i]) == 0) {
            *out = (log_level)i;
            return true;
        }
    return false;
}

void log_add_secret(const char *secret)
{
    if (secret == NULL || strlen(secret) < 3)   /* too short to mask meaningfully */
        return;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_n_secrets; i++)
        if (strcmp(g_secrets[i], secret) == 0)
            goto out;
    if (g_n_secrets < MAX_SECRETS) {
        char *copy = strdup(secret);
        if (copy != NULL)
            g_secrets[g_n_secrets++] = copy;
    }
out:
    pthread_mutex_unlock(&g_mu);
}

void log_clear_secrets(void)
{
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_n_secrets; i++)
        free(g_secrets[i]);
    g_n_secrets = 0;
    pthread_mutex_unlock(&g_mu);
}

void log_mask(char *buf, size_t n)
{
    char tmp[4096];
    size_t o = 0;
    if (n == 0)
        return;
    if (n > sizeof tmp)
        n = sizeof tmp;
    buf[n - 1] = '\0';
    /* Replace every registered literal secret by ****, then URL passwords
     * and key=value secrets. */
    pthread_mutex_lock(&g_mu);
    for (const char *p = buf; *p != '\0' && o + 1 < n;) {
        size_t hit = 0;
        for (size_t i = 0; i < g_n_secrets && hit == 0; i++) {
            size_t sl = strlen(g_secrets[i]);
            if (strncmp(p, g_secrets[i], sl) == 0)
                hit = sl;
        }
        if (hit > 0) {
            for (size_t k = 0; k < 4 && o + 1 < n; k++)
                tmp[o++] = '*';
            p += hit;
        } else {
            tmp[o++] = *p++;
        }
    }
    pthread_mutex_unlock(&g_mu);
    tmp[o] = '\0';
    mask_secrets(tmp, buf, n);
}

void log_msg(log_level lvl, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;

    if (lvl < g_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One line per message: fold embedded newlines. */
    for (char *p = msg; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    log_mask(msg, sizeof msg);

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
