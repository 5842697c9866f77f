/* notify.h - webhook notifications, sent through fetch.h (libcurl multi on
 * the loop) so they never block it. A bounded in-memory queue; each
 * notification is retried with exponential backoff (1 s, 2 s, 4 s, ...
 * capped at 5 min) up to [notify] retries times; every notification and
 * its delivery result is recorded in SQLite (store_notification_*).
 * Bodies: [notify] format = slack -> {"text": "..."}; json -> the event's
 * fields {"event":..., "at":..., "text":..., plus the fields given}. */
#ifndef DRD_NOTIFY_H
#define DRD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "drd/conf/config.h"
#include "drd/core/fetch.h"
#include "drd/core/loop.h"
#include "drd/engine/metrics.h"
#include "drd/store/store.h"

typedef struct notify notify_t;

notify_t *notify_new(loop_t *loop, fetch_t *fetch, store_t *store, const config_t *cfg,
                     metrics_counters *counters);
void notify_free(notify_t *n);                 /* drops what is queued; accepts NULL */
void notify_reconfigure(notify_t *n, const config_t *cfg);

/* Queue one notification. event: a short name (incident_start,
 * incident_end, approval_needed, run_started, run_succeeded, run_failed,
 * run_aborted, fence_applied, ...). text: the human sentence (masked
 * before sending and storing). fields: extra JSON fields for format=json
 * (borrowed; may be NULL). Does nothing (returns true) without a webhook. */
bool notify_send(notify_t *n, const char *event, const char *text, json_t *fields);

/* Notifications queued or in flight. */
size_t notify_pending(const notify_t *n);

#endif
