/* readiness.h - the daemon's scheduled readiness checks ([check] every):
 * the same checks as `drctl check`, run in a worker thread so the loop
 * never waits, each result stored (store_check_put), a check that turns
 * to fail notified and logged as an event, plus the drill freshness
 * ([drill] warn_after) as one more check. */
#ifndef DRD_READINESS_H
#define DRD_READINESS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "drd/conf/config.h"
#include "drd/core/loop.h"
#include "drd/engine/notify.h"
#include "drd/store/store.h"

typedef struct readiness readiness_t;

/* Returns the current /api/status document (new reference), for the
 * checks that depend on the active side and the backup's lag. */
typedef json_t *(*readiness_status_fn)(void *arg);
/* Called on the loop after a run's results are stored (and after a drill
 * was recorded): republish the status and metrics. */
typedef void (*readiness_changed_fn)(void *arg);

/* config_path: re-read by every run (the `config` check is that load).
 * The first run starts a few seconds after this, then every [check]
 * every; 0 = never (results then stay as stored). */
readiness_t *readiness_new(loop_t *loop, store_t *store, notify_t *notify, const config_t *cfg,
                           const char *config_path, readiness_status_fn status_fn,
                           readiness_changed_fn changed_fn, void *arg);
/* A running check is abandoned (its thread frees itself), not waited for. */
void readiness_free(readiness_t *r);               /* accepts NULL */
void readiness_reconfigure(readiness_t *r, const config_t *cfg);
/* Run the checks now; while they run, once more after them (so results
 * never predate the change that asked). drd calls it after every run,
 * drill, reload and breaker transition. */
void readiness_run_now(readiness_t *r);
/* A drill was recorded: re-read the last one from the store. */
void readiness_drill_recorded(readiness_t *r);

/* 1 ready (no check fails), 0 not ready, -1 never checked. */
int readiness_ready(const readiness_t *r);
/* {"ready": bool|null, "checked_at": ms|null, "every_ms": N, "running": bool,
 *  "checks": [{name, status, reason, fix, since, checked_at}]} (new ref) */
json_t *readiness_json(const readiness_t *r);
/* {"last": {id, started_at, ended_at, result, rto_ms, detection_ms, ...}|null,
 *  "last_ok_at": ms|null, "warn_after_ms": N, "warning": TEXT|null} (new ref) */
json_t *readiness_drill_json(const readiness_t *r);
/* Wall ms of the last successful drill, 0 if none. */
int64_t readiness_drill_ok_at(const readiness_t *r);
/* The checks array (borrowed, may be empty): for /metrics. */
const json_t *readiness_checks(const readiness_t *r);

#endif
