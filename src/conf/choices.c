/* choices.c - see choices.h. */
#include "drd/conf/choices.h"
#include "drd/conf/config.h"

#include <string.h>

const char *const failover_mode_names[] = { "auto", "approve", "manual", NULL };
const char *const fence_mode_names[] = { "read-only", "nologin", "command", "none", NULL };
const char *const metrics_access_names[] = { "open", "token", NULL };
const char *const notify_format_names[] = { "slack", "json", NULL };
const char *const no_pk_mode_names[] = { "copy", "refuse", NULL };
const char *const conflicts_mode_names[] = { "ask", "backup-wins", "primary-wins", NULL };
const char *const sync_mode_names[] = { "incremental", "full", NULL };
const char *const refresh_mode_names[] = { "off", "dump", "logical", "reconcile", NULL };

bool choice_parse(const char *const *names, const char *s, int *out)
{
    if (s == NULL)
        return false;
    for (int i = 0; names[i] != NULL; i++)
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return true;
        }
    return false;
}

/* The choice named s, or dflt when s is unset or unknown. */
static int choice_or(const char *const *names, const char *s, int dflt)
{
    int v;
    return choice_parse(names, s, &v) ? v : dflt;
}

const char *failover_mode_name(failover_mode m)
{
    return (unsigned)m <= FAILOVER_MANUAL ? failover_mode_names[m] : "?";
}

bool failover_mode_parse(const char *s, failover_mode *out)
{
    int v;
    if (!choice_parse(failover_mode_names, s, &v))
        return false;
    *out = (failover_mode)v;
    return true;
}

const char *refresh_mode_name(refresh_mode m)
{
    return (unsigned)m <= REFRESH_RECONCILE ? refresh_mode_names[m] : "?";
}

bool refresh_mode_parse(const char *s, refresh_mode *out)
{
    int v;
    if (!choice_parse(refresh_mode_names, s, &v))
        return false;
    *out = (refresh_mode)v;
    return true;
}

const char *conflicts_mode_name(conflicts_mode m)
{
    return (unsigned)m <= CONFLICTS_PRIMARY_WINS ? conflicts_mode_names[m] : "?";
}

bool conflicts_mode_parse(const char *s, conflicts_mode *out)
{
    int v;
    if (!choice_parse(conflicts_mode_names, s, &v))
        return false;
    *out = (conflicts_mode)v;
    return true;
}

/* The defaults are the option table's (config.c). */
failover_mode config_failover_mode(const config_t *c)
{
    return (failover_mode)choice_or(failover_mode_names, c->failover_policy, FAILOVER_APPROVE);
}

fence_mode config_fence_mode(const config_t *c)
{
    return (fence_mode)choice_or(fence_mode_names, c->failover_fence, FENCE_READ_ONLY);
}

metrics_access config_metrics_access(const config_t *c)
{
    return (metrics_access)choice_or(metrics_access_names, c->http_metrics, METRICS_OPEN);
}

notify_format config_notify_format(const config_t *c)
{
    return (notify_format)choice_or(notify_format_names, c->notify_format, NOTIFY_SLACK);
}

no_pk_mode config_no_pk(const config_t *c)
{
    return (no_pk_mode)choice_or(no_pk_mode_names, c->sync_no_pk, NO_PK_REFUSE);
}

conflicts_mode config_conflicts(const config_t *c)
{
    return (conflicts_mode)choice_or(conflicts_mode_names, c->sync_conflicts, CONFLICTS_ASK);
}

sync_mode config_sync_mode(const config_t *c)
{
    return (sync_mode)choice_or(sync_mode_names, c->sync_mode, SYNC_MODE_INCREMENTAL);
}

refresh_mode config_refresh_mode(const config_t *c)
{
    return (refresh_mode)choice_or(refresh_mode_names, c->refresh_mode, REFRESH_OFF);
}
