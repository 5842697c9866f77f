/* preflight.h - a run's first step: the prerequisites of all its steps,
 * before any of them changes anything (before stop-app):
 *   - every exec command (and a fence command) resolves (check.c's
 *     check_command_resolves);
 *   - the env file exists and drd may rewrite it (check_env_writable);
 *   - the run's target side answers, and drd's role has there (and on the
 *     other side, when a step needs it and it is up) every privilege the
 *     run's steps need (privs.c: the same list as drctl check and grants).
 * The files and commands are checked on the loop (stat/access only); the
 * databases on a worker thread with its own connections (2 s deadlines),
 * so the loop never blocks. The callback runs once, from the loop, never
 * from inside preflight_start. */
#ifndef DRD_PREFLIGHT_H
#define DRD_PREFLIGHT_H

#include <stdbool.h>
#include <stddef.h>

#include "drd/conf/config.h"
#include "drd/core/loop.h"
#include "drd/conf/runbook.h"

typedef struct preflight preflight_t;

/* ok; error: the first failing item and its fix (masked); report: one
 * line per item checked. Both valid during the callback. */
typedef void (*preflight_cb)(void *arg, bool ok, const char *error, const char *report);

/* kind: "failover" | "failback"; steps: the run's steps (copied from what
 * is needed); up[side]: the monitor thinks that side is healthy (a side
 * that is down is skipped when only a fence that may stay pending needs
 * it). NULL on out of memory. */
preflight_t *preflight_start(loop_t *loop, const config_t *cfg, const char *kind,
                             const runbook_step *steps, size_t n, const bool up[2],
                             preflight_cb cb, void *arg);
/* No callback after this. Accepts NULL. */
void preflight_cancel(preflight_t *p);

#endif
