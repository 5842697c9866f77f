/* runbook.h - runbook files: INI, one "[step NAME]" section per step, run
 * in file order. Each step has a typed action and its keys; ${section.key}
 * references to the drd config are expanded at load, so a run's steps are
 * fixed (and persisted) the moment it starts. */
#ifndef DRD_RUNBOOK_H
#define DRD_RUNBOOK_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "drd/conf/config.h"

typedef enum {
    ACT_EXEC = 0, ACT_SWITCH_ENV, ACT_WAIT_HEALTHY, ACT_APPROVE, ACT_FENCE,
    ACT_CAPTURE, ACT_SYNC_BACK, ACT_VERIFY, ACT_NOTIFY, ACT_REFRESH,
    ACT_PREFLIGHT,               /* added by drd as every run's first step; not in runbook files */
    ACT_COUNT
} step_action;

typedef enum { ON_FAILURE_ABORT = 0, ON_FAILURE_CONTINUE, ON_FAILURE_ASK } step_on_failure;

#define STEP_NAME_LEN 64

typedef struct {
    char name[STEP_NAME_LEN];
    step_action action;
    int line;                    /* of the [step] header, for messages */
    int64_t timeout_ms;          /* deadline of one attempt */
    int64_t retries;             /* extra attempts after a failure */
    int64_t retry_delay_ms;
    step_on_failure on_failure;
    char *command;               /* exec; fence with mode=command */
    char *target;                /* switch-env: primary|backup; wait-healthy: app|primary|backup; fence: primary|backup */
    char *prompt;                /* approve */
    int64_t expires_ms;          /* approve: undecided after this = rejected */
    char *message;               /* notify */
    char *mode;                  /* fence: read-only|nologin|command|none; sync-back: online */
    /* mode, parsed (runbook_load, runbook_step_from_json): */
    fence_mode fence;            /* fence */
    bool online;                 /* sync-back: mode = online (pre-sync) */
    bool lift;                   /* fence: lift the fence instead */
    bool required;               /* fence: fail when unreachable */
    bool remove;                 /* capture: remove the ledger and triggers instead */
    char *op;                    /* refresh: disable-subscription | recreate-subscription | bump-sequences */
    char *description;
} runbook_step;

typedef struct {
    char *path;
    runbook_step *steps;
    size_t n_steps;
} runbook_t;

/* Load and validate; errors as "FILE:LINE: message" (unknown action,
 * missing key, unknown key, unknown variable, duplicate step name, bad
 * value). NULL if any error. */
runbook_t *runbook_load(const char *path, const config_t *cfg, config_errors *errs);
void runbook_free(runbook_t *rb);                     /* accepts NULL */

const char *step_action_name(step_action a);
bool step_action_parse(const char *s, step_action *out);
/* Safe to run again after a crash in the middle of it. */
bool step_action_idempotent(step_action a);
const char *step_on_failure_name(step_on_failure f);

/* A step as JSON (persisted with the run), and back. */
json_t *runbook_step_to_json(const runbook_step *s);
bool runbook_step_from_json(json_t *j, runbook_step *out);
void runbook_step_clear(runbook_step *s);             /* frees the strings */

#endif
