/* states.c - see states.h. */
#include "drd/store/states.h"

#include <string.h>

static const char *const target_names[] = { "primary", "backup", NULL };
static const char *const run_names[] = { "running", "waiting", "succeeded", "failed", "aborted", NULL };
static const char *const step_names[] = { "pending", "running", "done", "failed", "skipped",
                                          "needs_attention", NULL };
static const char *const approval_names[] = { "pending", "approved", "rejected", "expired", NULL };
static const char *const kind_names[] = { "policy", "step", "attention", NULL };
static const char *const refresh_names[] = { "running", "succeeded", "failed", "refused", NULL };

/* The index of s in names, or the table's length when absent. */
static int lookup(const char *const *names, const char *s)
{
    int i = 0;
    for (; names[i] != NULL; i++)
        if (s != NULL && strcmp(names[i], s) == 0)
            break;
    return i;
}

static const char *name_of(const char *const *names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : "?";
}

const char *target_name(target_id t) { return name_of(target_names, TARGET_COUNT, (int)t); }
const char *run_state_name(run_state s) { return name_of(run_names, RUN_STATE_COUNT, (int)s); }
const char *step_state_name(step_state s) { return name_of(step_names, STEP_STATE_COUNT, (int)s); }
const char *approval_state_name(approval_state s) { return name_of(approval_names, APPROVAL_STATE_COUNT, (int)s); }
const char *approval_kind_name(approval_kind k) { return name_of(kind_names, APPROVAL_KIND_COUNT, (int)k); }
const char *refresh_state_name(refresh_state s) { return name_of(refresh_names, REFRESH_STATE_COUNT, (int)s); }

run_state run_state_of(const char *s) { return (run_state)lookup(run_names, s); }
step_state step_state_of(const char *s) { return (step_state)lookup(step_names, s); }
approval_state approval_state_of(const char *s) { return (approval_state)lookup(approval_names, s); }
approval_kind approval_kind_of(const char *s) { return (approval_kind)lookup(kind_names, s); }
refresh_state refresh_state_of(const char *s) { return (refresh_state)lookup(refresh_names, s); }

target_id target_or_primary(const char *s)
{
    return s != NULL && strcmp(s, "backup") == 0 ? TARGET_BACKUP : TARGET_PRIMARY;
}

bool target_parse(const char *s, target_id *out)
{
    int v = lookup(target_names, s);
    if (v >= TARGET_COUNT)
        return false;
    *out = (target_id)v;
    return true;
}

bool run_state_parse(const char *s, run_state *out)
{
    run_state v = run_state_of(s);
    if (v == RUN_STATE_COUNT)
        return false;
    *out = v;
    return true;
}

bool run_state_final(run_state s)
{
    return s != RUN_RUNNING && s != RUN_WAITING;
}

bool step_state_parse(const char *s, step_state *out)
{
    step_state v = step_state_of(s);
    if (v == STEP_STATE_COUNT)
        return false;
    *out = v;
    return true;
}

bool approval_state_parse(const char *s, approval_state *out)
{
    approval_state v = approval_state_of(s);
    if (v == APPROVAL_STATE_COUNT)
        return false;
    *out = v;
    return true;
}

bool approval_kind_parse(const char *s, approval_kind *out)
{
    approval_kind v = approval_kind_of(s);
    if (v == APPROVAL_KIND_COUNT)
        return false;
    *out = v;
    return true;
}
