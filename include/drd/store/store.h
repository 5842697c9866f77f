/* store.h - drd's SQLite state. The daemon's connection is the only
 * writer (WAL, BEGIN IMMEDIATE, prepared statements kept for the life of
 * the connection, synchronous=FULL); readers (the HTTP thread, drctl when
 * the daemon is down) open it read-only. Schema migrations run by
 * PRAGMA user_version, all in one transaction; a database whose version is
 * newer than this binary is refused. Times are wall-clock ms since epoch. */
#ifndef DRD_STORE_H
#define DRD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "drd/health/breaker.h"
#include "drd/health/probe.h"
#include "drd/store/states.h"

typedef struct store store_t;

#define STORE_NAME_LEN 16

/* Open read-write, creating the file (and its directory, mode 0700) and
 * migrating as needed. NULL with a message in err on failure. */
store_t *store_open(const char *path, char *err, size_t errlen);
/* Open an existing database read-only (no migration, no creation).
 * Refuses a schema newer than this binary. */
store_t *store_open_readonly(const char *path, char *err, size_t errlen);
void store_close(store_t *s);                       /* accepts NULL */
int store_schema_version(store_t *s);
/* The latest schema version this binary knows. */
int store_latest_version(void);

/* ---- current state of each target (one row per target) ---- */
typedef struct {
    char name[STORE_NAME_LEN];    /* "primary" | "backup" */
    bool healthy;                 /* probed, breaker closed, not misconfigured */
    bool reachable;               /* last probe ok */
    bool in_recovery;
    breaker_state breaker;
    int64_t latency_ms;           /* last probe */
    char last_error[256];         /* masked; "" when none */
    int64_t last_probe_at;        /* 0 = never */
    int64_t breaker_since;        /* when the breaker entered its state */
    /* Not stored (the state file's reader derives the first two from
     * last_error, see status.c): */
    probe_class error_class;      /* the last probe's; PROBE_OK when it succeeded */
    char cause[256];              /* misconfigured: the reason, masked; "" otherwise */
    bool seen_healthy;            /* healthy with a good probe since this drd started */
} store_target;

bool store_target_put(store_t *s, const store_target *t);
/* false if there is no row for name (or on error: then err is logged). */
bool store_target_get(store_t *s, const char *name, store_target *out);

/* ---- probe statistics: per-minute aggregates (bounded by pruning) ---- */
typedef struct {
    char target[STORE_NAME_LEN];
    int64_t minute;               /* wall ms / 60000 */
    int64_t probes, failures;
    int64_t latency_sum_ms, latency_max_ms;
} store_probe_minute;

/* Insert, or add to an existing row for (target, minute). */
bool store_probe_minute_add(store_t *s, const store_probe_minute *m);
/* Delete aggregates older than `before` (wall ms). Returns rows deleted or -1. */
int64_t store_probe_prune(store_t *s, int64_t before);
typedef bool (*store_probe_cb)(const store_probe_minute *m, void *arg);
/* Rows for target with minute >= since_minute, oldest first. */
bool store_probe_minutes(store_t *s, const char *target, int64_t since_minute,
                         store_probe_cb cb, void *arg);

/* ---- events: breaker transitions, incidents, daemon lifecycle ---- */
typedef struct {
    int64_t id;
    int64_t at;
    char kind[32];                /* "breaker" "incident" "daemon" "config" ... */
    char target[STORE_NAME_LEN];  /* "" when not about a target */
    char message[512];            /* masked */
} store_event;

/* Returns the new event id, or 0 on error. */
int64_t store_event_add(store_t *s, int64_t at, const char *kind,
                        const char *target, const char *message);
typedef bool (*store_event_cb)(const store_event *e, void *arg); /* false stops */
/* Events with id > since_id, oldest first, at most limit. */
bool store_events_since(store_t *s, int64_t since_id, int limit,
                        store_event_cb cb, void *arg);
/* Newest first, at most limit. */
bool store_events_recent(store_t *s, int limit, store_event_cb cb, void *arg);

/* ---- incidents: one per outage of a target ---- */
typedef struct {
    int64_t id;
    char target[STORE_NAME_LEN];
    int64_t started_at;
    int64_t ended_at;             /* 0 while open */
    char reason[256];
} store_incident;

/* Returns the new id, or 0 on error. */
int64_t store_incident_open(store_t *s, const char *target, int64_t at, const char *reason);
bool store_incident_close(store_t *s, int64_t id, int64_t at);
/* The open incident of target, or 0 if none (-1 on error). */
int64_t store_incident_find_open(store_t *s, const char *target);
typedef bool (*store_incident_cb)(const store_incident *i, void *arg);
/* Newest first. */
bool store_incidents_recent(store_t *s, int limit, store_incident_cb cb, void *arg);

/* ---- small key/value state ("active" = "primary"|"backup", ...) ---- */
bool store_kv_set(store_t *s, const char *key, const char *value);
/* false if absent (out set to ""). */
bool store_kv_get(store_t *s, const char *key, char *out, size_t n);

/* ---- what one run leaves for the next (kept in kv; "" = none) ----
 * fence pending: the target a fence step could not reach, fenced by the
 * policy when it returns ("primary" | "backup"). fenced: the target a fence
 * step has fenced, cleared when a step lifts it. sync resolution: the
 * operator's decision on sync-back conflicts for the next attempt
 * ("backup-wins" | "primary-wins"), cleared once sync-back succeeds. The
 * getters return false when unset (out = ""). */
bool store_fence_pending_get(store_t *s, char *out, size_t n);
bool store_fence_pending_set(store_t *s, const char *target);
bool store_fenced_get(store_t *s, char *out, size_t n);
bool store_fenced_set(store_t *s, const char *target);
bool store_sync_resolution_get(store_t *s, char *out, size_t n);
bool store_sync_resolution_set(store_t *s, const char *choice);

/* What the last comparison of the backup with the primary found (logical
 * mode: verify at a failback, converge before the subscription returns,
 * a refresh's whole copy): rows that still differ, rows that differed when
 * it ran, when (wall ms), by what ("verify" | "converge" | "refresh").
 * get: false when never measured. */
typedef struct {
    int64_t rows;
    int64_t found;
    int64_t at;
    char by[16];
} store_difference;
bool store_difference_get(store_t *s, store_difference *out);
bool store_difference_set(store_t *s, const store_difference *d);

/* Run fn inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK if fn returns false). */
bool store_tx(store_t *s, bool (*fn)(store_t *s, void *arg), void *arg);

/* ---- runbook runs (schema v2) ----
 * Run states:  running | waiting | succeeded | failed | aborted
 * Step states: pending | running | done | failed | skipped | needs_attention
 * Approval states: pending | approved | rejected | expired
 * Every write here is durable (synchronous=FULL) before the function
 * returns: the executor relies on it to resume after kill -9. */
typedef struct {
    int64_t id;
    char kind[16];                /* "failover" | "failback" */
    char state[16];
    char reason[256];
    char started_by[64];          /* "policy", "socket", "token", ... */
    int64_t request_id;           /* API request that started it, 0 if none */
    int64_t incident_id;          /* 0 if none */
    int64_t created_at, finished_at;
    int current_step;             /* index of the step in progress, -1 if none */
    char runbook[256];            /* path */
    char error[512];              /* why it failed, "" otherwise */
} store_run;

typedef struct {
    int64_t run_id;
    int idx;
    char name[64];
    char action[32];
    char state[20];
    int attempts;
    int64_t started_at, finished_at;  /* of the last attempt; 0 = not yet */
    int exit_code;                /* exec steps; -1 when killed or n/a */
    char error[512];
    char *params;                 /* the step as JSON (malloc'd by getters) */
    char *output;                 /* last 64 KiB of output, masked (malloc'd by getters, may be NULL) */
} store_step;

/* Create a run and its steps (params: JSON texts, one per step) in one
 * transaction; the run starts in state "running", current_step -1.
 * Returns the run id, 0 on error. */
int64_t store_run_create(store_t *s, const store_run *r, const char *const *names,
                         const char *const *actions, const char *const *params, int n_steps);
bool store_run_update(store_t *s, int64_t run_id, const char *state, int current_step,
                      const char *error, int64_t finished_at);
bool store_run_get(store_t *s, int64_t run_id, store_run *out);
/* The run in state running or waiting (at most one), 0 if none, -1 on error. */
int64_t store_run_active(store_t *s);
typedef bool (*store_run_cb)(const store_run *r, void *arg);
bool store_runs_recent(store_t *s, int limit, store_run_cb cb, void *arg);

/* Update the mutable columns of one step (state, attempts, times,
 * exit_code, error); output is replaced only when non-NULL. */
bool store_step_update(store_t *s, const store_step *st);
typedef bool (*store_step_cb)(const store_step *st, void *arg);
/* Steps of a run in order; params/output pointers valid during the call. */
bool store_steps_of(store_t *s, int64_t run_id, store_step_cb cb, void *arg);
void store_step_free(store_step *st);          /* frees params/output */

typedef struct {
    int64_t id;
    int64_t run_id;               /* 0 for a policy approval (before any run) */
    int step_idx;                 /* -1 when not about a step */
    char kind[16];                /* "policy" | "step" | "attention" */
    char state[16];
    char prompt[512];
    int64_t created_at, expires_at, decided_at;
    char decided_by[64];
    char reason[256];             /* the decider's reason */
    char choice[16];              /* attention approvals: retry | skip | abort */
} store_approval;

/* Returns the new id, 0 on error. */
int64_t store_approval_create(store_t *s, const store_approval *a);
/* Decide a pending approval; false if it is not pending (then nothing
 * changes) or on error. */
bool store_approval_decide(store_t *s, int64_t id, const char *state, const char *decided_by,
                           const char *reason, const char *choice, int64_t at);
bool store_approval_get(store_t *s, int64_t id, store_approval *out);
typedef bool (*store_approval_cb)(const store_approval *a, void *arg);
bool store_approvals_pending(store_t *s, store_approval_cb cb, void *arg);
bool store_approvals_of_run(store_t *s, int64_t run_id, store_approval_cb cb, void *arg);

/* ---- API requests: what became of a queued mutation ---- */
typedef struct {
    int64_t id;                   /* the request id answered with 202 */
    char kind[16];                /* failover | failback | approve | reject */
    char state[16];               /* accepted | refused */
    char actor[64];
    int64_t run_id;               /* the run it started or touched, 0 if none */
    char error[256];              /* why it was refused */
    int64_t at;
} store_request;
bool store_request_put(store_t *s, const store_request *r);
bool store_request_get(store_t *s, int64_t id, store_request *out);

/* ---- webhook notifications (schema v3) ----
 * state: pending | sent | failed (gave up after retries) | dropped (queue full) */
typedef struct {
    int64_t id;
    int64_t at;                   /* when the event happened */
    char event[32];               /* incident_start, incident_end, approval_needed, run_started, run_succeeded, run_failed, ... */
    char summary[512];            /* the text sent (masked) */
    char state[16];
    int attempts;
    long http_status;             /* last answer, 0 = none */
    char error[256];              /* last error (masked), "" if none */
    int64_t last_attempt_at;      /* 0 = never */
} store_notification;

/* Returns the new id, 0 on error. */
int64_t store_notification_add(store_t *s, const store_notification *n);
/* Update state, attempts, http_status, error, last_attempt_at. */
bool store_notification_update(store_t *s, const store_notification *n);
typedef bool (*store_notification_cb)(const store_notification *n, void *arg);
/* Newest first. */
bool store_notifications_recent(store_t *s, int limit, store_notification_cb cb, void *arg);

/* ---- backup refreshes (schema v3) ----
 * mode: dump | logical | reconcile; trigger: schedule | manual;
 * state: running | succeeded | failed | refused */
typedef struct {
    int64_t id;
    char mode[16];
    char trigger[16];
    char state[16];
    int64_t started_at, finished_at;   /* finished_at 0 while running */
    int64_t bytes;                     /* dump size, 0 if n/a */
    char file[512];                    /* dump file, "" if n/a */
    char error[512];                   /* masked, "" if none */
} store_refresh;

/* Returns the new id, 0 on error. */
int64_t store_refresh_add(store_t *s, const store_refresh *r);
bool store_refresh_update(store_t *s, const store_refresh *r);
typedef bool (*store_refresh_cb)(const store_refresh *r, void *arg);
/* Newest first. */
bool store_refreshes_recent(store_t *s, int limit, store_refresh_cb cb, void *arg);
/* The most recent succeeded refresh; false if none. */
bool store_refresh_last_good(store_t *s, store_refresh *out);
/* Delete mode's succeeded and refused refreshes but the newest keep (a
 * reconcile pass every 30 s must not grow the file without end). */
bool store_refreshes_prune(store_t *s, const char *mode, int keep);

/* ---- reconcile mode's per-table watermarks (schema v6) ----
 * watermark: JSON array of strings [change value, key...] of the last row
 * applied on the backup (in change, key order), "" = nothing copied yet;
 * full_key: a whole copy under way, JSON [key...] of the last row applied,
 * "" = none; full_at: when the last whole copy ended (wall ms). Written only
 * after the batch committed on the backup. */
typedef struct {
    char name[256];
    char watermark[2048];
    char full_key[2048];
    int64_t full_at;
    int64_t updated_at;
} store_watermark;
/* false when the table has none yet (out zeroed). */
bool store_watermark_get(store_t *s, const char *name, store_watermark *out);
bool store_watermark_put(store_t *s, const store_watermark *w);
bool store_watermarks_reset(store_t *s);

/* ---- egress: bytes read from the primary, per UTC day (schema v6) ---- */
bool store_egress_add(store_t *s, int64_t at_ms, int64_t bytes);
/* Sum of the days from from_ms's up to (excluding) to_ms's. */
bool store_egress_sum(store_t *s, int64_t from_ms, int64_t to_ms, int64_t *bytes, int64_t *refreshes);

/* ---- readiness checks (schema v4): the latest result of each ----
 * status: ok | warn | fail; since: when it got that status. */
typedef struct {
    char name[32];
    char status[8];
    char reason[512];             /* masked */
    char fix[512];
    int64_t checked_at, since;
} store_check;

/* Insert or update by name (since kept while the status stays). */
bool store_check_put(store_t *s, const store_check *c);
/* Delete the checks last run before `before` (no longer run). */
bool store_checks_prune(store_t *s, int64_t before);
typedef bool (*store_check_cb)(const store_check *c, void *arg);
bool store_checks_all(store_t *s, store_check_cb cb, void *arg);

/* ---- drills (schema v4): one row per rehearsal, its report as JSON ---- */
typedef struct {
    int64_t id;
    int64_t started_at, ended_at;
    char result[16];              /* succeeded | failed */
    const char *report;           /* JSON text; valid during the callback */
} store_drill;

/* Returns the new id, 0 on error. */
int64_t store_drill_add(store_t *s, const store_drill *d);
typedef bool (*store_drill_cb)(const store_drill *d, void *arg);
/* Newest first. */
bool store_drills_recent(store_t *s, int limit, store_drill_cb cb, void *arg);
/* The newest succeeded drill (cb not called if none). */
bool store_drill_last_good(store_t *s, store_drill_cb cb, void *arg);

#endif
