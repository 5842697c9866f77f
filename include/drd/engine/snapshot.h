/* snapshot.h - the status document (DESIGN.md §3, GET /api/status),
 * assembled here and only here from the engine's parts, and handed to
 * whoever publishes it (the HTTP side, in drd: the HTTP thread reads the
 * published text, never the engine's live state).
 *
 * Modules say what changed; every change of one loop turn is published
 * once, at the end of the turn: a probe that moves a breaker gives one
 * document, not two. A probe changes only the targets (and the backup's
 * lag): the engine's parts (run, approvals, attention, block, readiness,
 * drill) are read again only when the engine says it changed. */
#ifndef DRD_SNAPSHOT_H
#define DRD_SNAPSHOT_H

#include <stdbool.h>
#include <jansson.h>
#include "drd/core/loop.h"
#include "drd/engine/executor.h"
#include "drd/engine/monitor.h"
#include "drd/engine/policy.h"
#include "drd/engine/readiness.h"
#include "drd/refresh/refresh.h"

typedef struct snapshot snapshot_t;

typedef struct {
    monitor_t *monitor;
    executor_t *executor;
    policy_t *policy;
    refresh_t *refresh;
    readiness_t *readiness;          /* may be NULL (drill) */
    store_t *store;
    const config_t *const *cfg;      /* the daemon's current configuration (a reload swaps it) */
    bool drill;                      /* drd -D: "drill_mode": true */
} snapshot_parts;

typedef enum {
    SNAPSHOT_TARGETS = 1,            /* a probe: targets, active side, the backup's lag */
    SNAPSHOT_ENGINE = 2,             /* a run, an approval, the policy, a refresh, readiness */
} snapshot_change;

/* The published document: its text and the document itself (borrowed,
 * valid during the call); engine: the engine's parts were read again. */
typedef void (*snapshot_publish_cb)(void *arg, const char *text, const json_t *doc, bool engine);

snapshot_t *snapshot_new(loop_t *loop, const snapshot_parts *parts, snapshot_publish_cb cb, void *arg);
void snapshot_free(snapshot_t *s);                 /* accepts NULL */
/* Something changed: publish once at the end of this loop turn. */
void snapshot_changed(snapshot_t *s, snapshot_change what);
/* The document as it is now (new reference), every part read again. */
json_t *snapshot_status(snapshot_t *s);

#endif
