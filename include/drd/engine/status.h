/* status.h - the status document of DESIGN.md §3 (drctl status --json,
 * GET /api/status), built from the daemon's live state or, when the daemon
 * is down, from the SQLite file. One builder so both always agree. */
#ifndef DRD_STATUS_H
#define DRD_STATUS_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "drd/store/store.h"

typedef struct {
    char active[16];              /* "primary" | "backup" */
    bool daemon_running;
    int64_t generated_at;         /* wall ms */
    int64_t started_at;           /* daemon start, wall ms (0 if unknown) */
    store_target primary, backup;
    json_t *run;                  /* borrowed; NULL -> "run": null */
    json_t *approvals;            /* borrowed array; NULL -> [] */
    json_t *refresh;              /* borrowed; refresh_status_json(), or NULL (omitted) */
    json_t *attention;            /* borrowed; attention_from_store(), NULL -> null */
    int64_t block_until;          /* wall ms of a policy block's end; <= generated_at -> null */
    char fenced[2][8];            /* primary, backup: "true" | "false" | "pending" ("" = false) */
} status_snapshot;

/* With a refresh object, targets.backup also gets "lag_seconds" (n|null)
 * and "last_copy_at" (n|null), and the root a "refresh" object.
 * {"active":..., "daemon":"running"|"not running", "generated_at":...,
 *  "started_at":n|null,
 *  "targets":{"primary":{"healthy":b,"breaker":"closed"|"open"|"half_open",
 *  "latency_ms":n,"last_error":str|null,"in_recovery":b,"reachable":b,
 *  "last_probe_at":n|null,"breaker_since":n|null,"fenced":true|false|"pending",
 *  "error_class":null|"unreachable"|"auth"|"config",
 *  "probe":{"state":"ok"|"unreachable"|"misconfigured"|"not probed","cause":str|null},
 *  "seen_healthy":b (null when the daemon is down)},
 *  "backup":{...}}, "run":{...}|null, "approvals":[...],
 *  "attention":{...}|null, "block_until":n|null} */
json_t *status_to_json(const status_snapshot *s);
/* The fence state of both targets (kv fenced / fence_pending) into s. */
void status_fence_from_store(store_t *st, status_snapshot *s);
/* Fill a snapshot from the store (daemon_running=false). */
bool status_from_store(store_t *st, status_snapshot *out);

#endif
