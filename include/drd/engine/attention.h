/* attention.h - does a run need a human while the app is stopped?
 *
 * The app-stopped state: after a successful stop-app step (an exec step
 * running [app] stop) and before a successful start-app step (one running
 * [app] start) of the same run. The newest run needs attention when
 *   - it failed or was aborted in that state, or
 *   - it waits for a decision in that state, or waits on a step that needs
 *     attention (a failure with on_failure = ask, conflicts, a crash).
 * Computed from the store (the newest run, its steps and approvals), so the
 * daemon and drctl (daemon down) always agree; a later run replaces it. */
#ifndef DRD_ATTENTION_H
#define DRD_ATTENTION_H

#include <jansson.h>
#include "drd/conf/config.h"
#include "drd/store/store.h"

/* {"run_id", "kind", "state", "step", "app_stopped": bool, "stopped_at",
 *  "approval_id": n|null, "reason"}, or JSON null (new reference; NULL
 * only on OOM). cfg (may be NULL) tells which exec steps run [app] stop and
 * [app] start; without it, or when both are the same command, the step's
 * name decides ("stop"/"start" in it). */
json_t *attention_from_store(store_t *st, const config_t *cfg);

#endif
