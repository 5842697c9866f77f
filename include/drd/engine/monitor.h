/* monitor.h - watches both targets: schedules probes at a fixed cadence,
 * feeds the breakers, opens/closes incidents, persists transitions, keeps
 * per-minute probe statistics, and publishes the status snapshot.
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
/* Where the status document goes each time it changes (the HTTP side's
 * api_publish_status in drd): the monitor knows nothing of HTTP. */
typedef void (*monitor_publish_cb)(void *arg, const char *status_json);
void monitor_set_publisher(monitor_t *m, monitor_publish_cb cb, void *arg);
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

/* Extra pieces of the status document owned by other modules (the run,
 * pending approvals); the monitor keeps a reference until the next call.
 * Then republish. */
void monitor_set_status_extras(monitor_t *m, json_t *run, json_t *approvals);
/* The refresh status object (referenced until the next call; NULL = none). */
void monitor_set_status_refresh(monitor_t *m, json_t *refresh);
void monitor_publish(monitor_t *m);
/* The /api/status document as monitor_publish would publish it (new reference). */
json_t *monitor_status_json(monitor_t *m);
/* Set (or replace) a top-level key of the status, e.g. "readiness";
 * value borrowed (a reference is taken); NULL sets null. */
void monitor_set_status_key(monitor_t *m, const char *key, json_t *value);

#endif
