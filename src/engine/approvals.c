/* approvals.c - see approvals.h. */
#include "drd/engine/approvals.h"

#include <stdio.h>
#include <string.h>

static const char *const choice_names[] = { "", "retry", "skip", "abort", "backup-wins", "primary-wins" };

const char *approval_choice_name(approval_choice c)
{
    return (unsigned)c < CHOICE_COUNT ? choice_names[c] : "?";
}

bool approval_choice_parse(const char *s, approval_choice *out)
{
    if (s == NULL || *s == '\0') {
        *out = CHOICE_NONE;
        return true;
    }
    for (int i = 1; i < CHOICE_COUNT; i++)
        if (strcmp(s, choice_names[i]) == 0) {
            *out = (approval_choice)i;
            return true;
        }
    return false;
}

bool approval_check(const store_approval *a, const char *choice, bool sync_step, char *err, size_t errlen)
{
    approval_choice c;
    if (approval_state_of(a->state) != APPROVAL_PENDING) {
        snprintf(err, errlen, "approval %lld is already %s%s%s", (long long)a->id, a->state,
                 a->decided_by[0] ? " by " : "", a->decided_by);
        return false;
    }
    if (choice == NULL || *choice == '\0')
        return true;
    if (approval_kind_of(a->kind) != APPROVAL_ATTENTION) {
        snprintf(err, errlen, "a choice (%s) only applies to a step that needs attention", choice);
        return false;
    }
    if (!approval_choice_parse(choice, &c)) {
        snprintf(err, errlen, "choice must be retry, skip, abort, backup-wins or primary-wins");
        return false;
    }
    if ((c == CHOICE_BACKUP_WINS || c == CHOICE_PRIMARY_WINS) && !sync_step) {
        snprintf(err, errlen, "%s only applies to a sync-back step with conflicts", choice);
        return false;
    }
    return true;
}

approval_outcome approval_outcome_of(approval_kind kind, bool approve, approval_choice choice)
{
    approval_outcome o = { .effect = EFFECT_ABORT, .resolution = CHOICE_NONE };
    if (!approve)
        return o;
    if (kind != APPROVAL_ATTENTION) {
        o.effect = EFFECT_DONE;
        return o;
    }
    switch (choice) {
    case CHOICE_SKIP:
        o.effect = EFFECT_SKIP;
        break;
    case CHOICE_ABORT:
        o.effect = EFFECT_ABORT;
        break;
    case CHOICE_BACKUP_WINS:
    case CHOICE_PRIMARY_WINS:
        o.effect = EFFECT_RETRY;
        o.resolution = choice;
        break;
    default:
        o.effect = EFFECT_RETRY;
        break;
    }
    return o;
}
