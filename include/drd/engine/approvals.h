/* approvals.h - what deciding an approval means, as pure functions (the
 * executor and the policy keep the timers and the store writes):
 *   which decisions are allowed (pending; a choice only for a step that
 *   needs attention; backup-wins/primary-wins only for a sync-back step),
 *   and what a decision does to the step it is about:
 *     step approval:      approve -> DONE            reject/expire -> ABORT
 *     attention approval: approve -> RETRY (choice retry, backup-wins,
 *                         primary-wins: retry with that resolution), SKIP
 *                         (skip), ABORT (abort); reject/expire -> ABORT. */
#ifndef DRD_APPROVALS_H
#define DRD_APPROVALS_H

#include <stdbool.h>
#include <stddef.h>
#include "drd/store/store.h"

typedef enum {
    CHOICE_NONE = 0, CHOICE_RETRY, CHOICE_SKIP, CHOICE_ABORT, CHOICE_BACKUP_WINS, CHOICE_PRIMARY_WINS,
    CHOICE_COUNT
} approval_choice;
const char *approval_choice_name(approval_choice c);          /* "" for CHOICE_NONE */
/* NULL or "" is CHOICE_NONE; false for an unknown word. */
bool approval_choice_parse(const char *s, approval_choice *out);

typedef enum { EFFECT_DONE = 0, EFFECT_ABORT, EFFECT_SKIP, EFFECT_RETRY } approval_effect;

typedef struct {
    approval_effect effect;
    approval_choice resolution;   /* BACKUP_WINS / PRIMARY_WINS: for the next sync-back; else NONE */
} approval_outcome;

/* May approval a be decided with choice (text as the API got it)?
 * sync_step: the step it is about is a sync-back. false with err. */
bool approval_check(const store_approval *a, const char *choice, bool sync_step, char *err, size_t errlen);
/* What the decision does (approve false = rejected or expired). */
approval_outcome approval_outcome_of(approval_kind kind, bool approve, approval_choice choice);

#endif
