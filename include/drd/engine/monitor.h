/* monitor.h - watches both targets: schedules probes at a fixed cadence,
 * feeds the breakers, opens/closes incidents, persists transitions, keeps
 * per-minute probe statistics, and says when the status changed.
 * Lives on the main loop; the only writer of target state. */
#ifndef DRD_MONITOR_H
#define DRD_MONITOR_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "drd/health/breaker.h"
#include "drd/conf/config.h"
#include "drd/core/loop.h"
#include "drd/engine/metrics.h"
#include "drd/health/probe.h"
#include "drd/store/store.h"
#include "drd/engine/status.h"

typedef struct monitor monitor_t;

/* Called after each breaker transition has been persisted. */
typedef void (*monitor_transition_cb)(void *arg, target_id t, const breaker_transition *tr);
/* Called after each probe result has been applied. */
typedef void (*monitor_probe_cb)(void *arg, target_id t, const probe_result *r);

/* Called when a target becomes misconfigured (its probes are refused for
 * credentials, role, database, pg_hba.conf or TLS) or stops being so;
 * monitor_target() has the new state. */
typedef void (*monitor_misconfig_cb)(void *arg, target_id t, bool misconfigured);

monitor_t *monitor_new(loop_t *loop, store_t *store, const config_t *cfg);
void monitor_free(monitor_t *m);                          /* accepts NULL */
/* Begin probing both targets. */
void monitor_start(monitor_t *m);
/* Apply a reloaded config (probe settings, URLs). cfg must outlive m or
 * the next reconfigure. */
void monitor_reconfigure(monitor_t *m, const config_t *cfg);
/* Called (from the loop) each time what the status shows of the targets
 * changed: a probe, a transition, the active side. The snapshot module
 * (snapshot.h) assembles and publishes the status: the monitor knows
 * nothing of it, nor of HTTP. */
typedef void (*monitor_change_cb)(void *arg);
void monitor_set_change_cb(monitor_t *m, monitor_change_cb cb, void *arg);
void monitor_set_listeners(monitor_t *m, monitor_transition_cb on_transition,
                           monitor_probe_cb on_probe, void *arg);
void monitor_set_misconfig_listener(monitor_t *m, monitor_misconfig_cb cb, void *arg);
/* Count probes, failures, transitions and incidents here (may be NULL). */
void monitor_set_counters(monitor_t *m, metrics_counters *c);
/* Flush per-minute statistics and the current target state (at shutdown). */
void monitor_flush(monitor_t *m);

const store_target *monitor_target(const monitor_t *m, target_id t);
breaker_state monitor_breaker(const monitor_t *m, target_id t);
/* ms the target's breaker has been in its current state. */
int64_t monitor_state_age(const monitor_t *m, target_id t);

/* The active side (the app's database), persisted in kv "active" as its
 * name. */
target_id monitor_active(const monitor_t *m);
bool monitor_set_active(monitor_t *m, target_id side);

/* The targets, the active side and the fences, for the status document
 * (the other parts are the snapshot's). */
void monitor_status_fill(const monitor_t *m, status_snapshot *s);

#endif
