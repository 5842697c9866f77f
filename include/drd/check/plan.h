/* plan.h - `drctl failover|failback --dry-run`: the runbook's plan, step
 * by step, with its expanded command (secrets masked), what it would
 * change, and the result of its prerequisite check. Changes nothing. */
#ifndef DRD_PLAN_H
#define DRD_PLAN_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "drd/conf/config.h"

/* Build the plan of cfg's failover (failback=false) or failback runbook.
 * checks: the array check_run() returned for cfg (names as check.c gives
 * them), used for each step's prerequisite; may be NULL (prerequisites
 * then "unknown"). status: the daemon's /api/status or NULL.
 * Returns
 *   {"kind": "failover"|"failback", "runbook": PATH, "active": SIDE,
 *    "steps": [{"n": 1, "name", "action", "command": masked or null,
 *               "changes": "what it would change, in words",
 *               "prerequisite": {"status": "ok"|"warn"|"fail"|"unknown",
 *                                "check": NAME or null, "reason": TEXT}}],
 *    "ok": true when no prerequisite fails}
 * or NULL with err set (runbook does not load: its FILE:LINE messages). */
json_t *plan_build(const config_t *cfg, bool failback, const json_t *checks,
                   const json_t *status, char *err, size_t errlen);

/* Readable form: a header, one block per step, a last line saying that
 * nothing was run. */
void plan_print(const json_t *plan, FILE *out);

#endif
