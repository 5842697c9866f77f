/* choices.c - see choices.h. */
#include "drd/conf/choices.h"

#include <string.h>

const char *const failover_mode_names[] = { "auto", "approve", "manual", NULL };
const char *const fence_mode_names[] = { "read-only", "nologin", "command", "none", NULL };
const char *const metrics_access_names[] = { "open", "token", NULL };
const char *const notify_format_names[] = { "slack", "json", NULL };
const char *const no_pk_mode_names[] = { "copy", "refuse", NULL };
const char *const conflicts_mode_names[] = { "ask", "backup-wins", "primary-wins", NULL };
const char *const sync_mode_names[] = { "incremental", "full", NULL };
const char *const refresh_mode_names[] = { "off", "dump", "logical", "reconcile", NULL };
const char *const deletes_mode_names[] = { "auto", "ledger", "compare", NULL };

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

/* names[v], or "?" when v is past the table's end. */
static const char *choice_name(const char *const *names, int v)
{
    for (int i = 0; v >= 0 && names[i] != NULL; i++)
        if (i == v)
            return names[i];
    return "?";
}

const char *failover_mode_name(failover_mode m) { return choice_name(failover_mode_names, (int)m); }
const char *fence_mode_name(fence_mode m) { return choice_name(fence_mode_names, (int)m); }
const char *no_pk_mode_name(no_pk_mode m) { return choice_name(no_pk_mode_names, (int)m); }
const char *conflicts_mode_name(conflicts_mode m) { return choice_name(conflicts_mode_names, (int)m); }
const char *sync_mode_name(sync_mode m) { return choice_name(sync_mode_names, (int)m); }
const char *refresh_mode_name(refresh_mode m) { return choice_name(refresh_mode_names, (int)m); }
const char *deletes_mode_name(deletes_mode m) { return choice_name(deletes_mode_names, (int)m); }

bool refresh_mode_parse(const char *s, refresh_mode *out)
{
    int v;
    if (!choice_parse(refresh_mode_names, s, &v))
        return false;
    *out = (refresh_mode)v;
    return true;
}

bool conflicts_mode_parse(const char *s, conflicts_mode *out)
{
    int v;
    if (!choice_parse(conflicts_mode_names, s, &v))
        return false;
    *out = (conflicts_mode)v;
    return true;
}
