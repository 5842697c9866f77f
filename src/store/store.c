/* store.c - drd's SQLite state (see include/drd/store.h).
 *
 * One connection per store_t. The daemon's read-write connection is the only
 * writer: WAL, synchronous=FULL, every write inside BEGIN IMMEDIATE (its own
 * short transaction, or the one store_tx() holds). Readers open the file
 * read-only and may run while the writer works.
 *
 * Schema: migrations[i] takes user_version i to i+1; all pending ones run in
 * one transaction. To add a schema version, append one element to
 * migrations[] (and the statements that use it to stmt_sql[]).
 *
 * Every SQL statement is prepared once at open (stmt_sql[]) and kept until
 * store_close(); each use ends with reset + clear_bindings. A read-only
 * handle on an older schema prepares what it can: statements for tables that
 * do not exist yet stay NULL and fail when used.
 *
 * store_tx() inside store_tx() is a SAVEPOINT (an inner false undoes only the
 * inner work). On a read-only handle store_tx() is a read snapshot.
 *
 * Free text (last_error, event messages, incident reasons, run/step errors,
 * approval prompts and reasons, request errors, notification summaries and
 * errors, refresh errors) is stored with secrets masked and bounded to the
 * struct field, cut on a UTF-8 boundary. Step params (JSON) are kept as
 * expanded, secrets included, so that a resumed run does what it started
 * with (see step_insert); step output is stored as given (the executor
 * masks it) but only its last 64 KiB.
 * A negative listing limit means no limit (SQLite's LIMIT -1).
 *
 * Schema v2 (runs): at most one run is running/waiting (a partial unique
 * index; store_run_create checks first to say which run is in the way). A
 * reference that is 0 in a struct (approval.run_id of a policy approval,
 * request.run_id) is NULL in the database so that foreign keys hold; times
 * that have not happened (finished_at, decided_at, expires_at = never) are
 * NULL too and read back as 0. Ownership of store_step.params/output: see
 * "steps" below.
 *
 * Schema v3 (notifications, refreshes): the same conventions. A time of 0
 * on the way in means now for the time a row is about (notification.at,
 * refresh.started_at) and "not yet" for the others (last_attempt_at,
 * finished_at: NULL in the database, 0 when read). An empty state on add is
 * the initial one (pending, running). store_refresh_update changes state,
 * finished_at, bytes, file and error (mode, trigger, started_at are fixed at
 * add). "Newest" and "most recent" mean highest id (insertion order).
 * Pruning: store_notification_add keeps the newest 10000 notifications (by
 * id, in the same transaction as the insert), so the table stays bounded
 * whatever the rate; refreshes (a few a day) are not pruned.
 *
 * A store_t is used by one thread at a time. Callbacks of the listing
 * functions run while their statement is active: they may call other store
 * functions, not the one that is calling them. */
#include "drd/store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

#define BUSY_TIMEOUT_MS 5000

/* ---- schema ---- */

static const char *const migrations[] = {
    /* 0 -> 1: targets, probe statistics, events, incidents, key/value */
    "CREATE TABLE targets ("
    "  name          TEXT PRIMARY KEY NOT NULL CHECK (name <> ''),"
    "  healthy       INTEGER NOT NULL CHECK (healthy IN (0, 1)),"
    "  reachable     INTEGER NOT NULL CHECK (reachable IN (0, 1)),"
    "  in_recovery   INTEGER NOT NULL CHECK (in_recovery IN (0, 1)),"
    "  breaker       TEXT NOT NULL CHECK (breaker IN ('closed', 'open', 'half_open')),"
    "  latency_ms    INTEGER NOT NULL,"
    "  last_error    TEXT NOT NULL DEFAULT '',"
    "  last_probe_at INTEGER NOT NULL DEFAULT 0,"
    "  breaker_since INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE probe_minutes ("
    "  target         TEXT NOT NULL CHECK (target <> ''),"
    "  minute         INTEGER NOT NULL,"
    "  probes         INTEGER NOT NULL CHECK (probes >= 0),"
    "  failures       INTEGER NOT NULL CHECK (failures >= 0),"
    "  latency_sum_ms INTEGER NOT NULL CHECK (latency_sum_ms >= 0),"
    "  latency_max_ms INTEGER NOT NULL CHECK (latency_max_ms >= 0),"
    "  PRIMARY KEY (target, minute)"
    ") WITHOUT ROWID;"
    "CREATE INDEX probe_minutes_minute ON probe_minutes (minute);"
    "CREATE TABLE events ("
    "  id      INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  at      INTEGER NOT NULL,"
    "  kind    TEXT NOT NULL CHECK (kind <> ''),"
    "  target  TEXT NOT NULL DEFAULT '',"
    "  message TEXT NOT NULL DEFAULT ''"
    ");"
    "CREATE INDEX events_at ON events (at);"
    "CREATE TABLE incidents ("
    "  id         INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  target     TEXT NOT NULL CHECK (target <> ''),"
    "  started_at INTEGER NOT NULL,"
    "  ended_at   INTEGER,"                    /* NULL while open */
    "  reason     TEXT NOT NULL DEFAULT ''"
    ");"
    "CREATE INDEX incidents_target_ended ON incidents (target, ended_at);"
    /* An outage is one incident: at most one open per target. */
    "CREATE UNIQUE INDEX incidents_one_open ON incidents (target) WHERE ended_at IS NULL;"
    "CREATE TABLE kv ("
    "  key   TEXT PRIMARY KEY NOT NULL CHECK (key <> ''),"
    "  value TEXT NOT NULL"
    ") WITHOUT ROWID;",

    /* 1 -> 2: runbook runs, their steps, approvals, API requests.
     * Absent references are NULL in the database (0 in the structs):
     * approvals.run_id of a policy approval, requests.run_id, and the
     * finished/started/decided/expires times that have not happened. */
    "CREATE TABLE runs ("
    "  id           INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind         TEXT NOT NULL CHECK (kind IN ('failover', 'failback')),"
    "  state        TEXT NOT NULL"
    "               CHECK (state IN ('running', 'waiting', 'succeeded', 'failed', 'aborted')),"
    "  reason       TEXT NOT NULL DEFAULT '',"
    "  started_by   TEXT NOT NULL DEFAULT '',"
    "  request_id   INTEGER NOT NULL DEFAULT 0,"  /* 0: not started by a request */
    "  incident_id  INTEGER NOT NULL DEFAULT 0,"  /* 0: no incident */
    "  created_at   INTEGER NOT NULL,"
    "  finished_at  INTEGER,"                     /* NULL while active */
    "  current_step INTEGER NOT NULL DEFAULT -1 CHECK (current_step >= -1),"
    "  runbook      TEXT NOT NULL DEFAULT '',"
    "  error        TEXT NOT NULL DEFAULT ''"
    ");"
    /* One run at a time: every active run has the same key (1). */
    "CREATE UNIQUE INDEX runs_one_active ON runs ((1)) WHERE state IN ('running', 'waiting');"
    "CREATE TABLE steps ("
    "  run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  idx         INTEGER NOT NULL CHECK (idx >= 0),"
    "  name        TEXT NOT NULL CHECK (name <> ''),"
    "  action      TEXT NOT NULL CHECK (action <> ''),"
    "  state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running',"
    " 'done', 'failed', 'skipped', 'needs_attention')),"
    "  attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),"
    "  started_at  INTEGER,"
    "  finished_at INTEGER,"
    "  exit_code   INTEGER NOT NULL DEFAULT -1,"
    "  error       TEXT NOT NULL DEFAULT '',"
    "  params      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),"
    "  output      TEXT,"                         /* NULL: nothing captured */
    "  PRIMARY KEY (run_id, idx),"
    "  UNIQUE (run_id, name)"
    ");"
    "CREATE TABLE approvals ("
    "  id         INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  run_id     INTEGER REFERENCES runs (id) ON DELETE CASCADE," /* NULL: policy approval */
    "  step_idx   INTEGER NOT NULL DEFAULT -1 CHECK (step_idx >= -1),"
    "  kind       TEXT NOT NULL CHECK (kind IN ('policy', 'step', 'attention')),"
    "  state      TEXT NOT NULL DEFAULT 'pending'"
    "             CHECK (state IN ('pending', 'approved', 'rejected', 'expired')),"
    "  prompt     TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER,"                       /* NULL: never */
    "  decided_at INTEGER,"
    "  decided_by TEXT NOT NULL DEFAULT '',"
    "  reason     TEXT NOT NULL DEFAULT '',"
    "  choice     TEXT NOT NULL DEFAULT '' CHECK (choice IN ('', 'retry', 'skip', 'abort')),"
    "  CHECK ((state = 'pending') = (decided_at IS NULL))"
    ");"
    "CREATE INDEX approvals_pending ON approvals (created_at, id) WHERE state = 'pending';"
    "CREATE INDEX approvals_run ON approvals (run_id, id);"
    "CREATE TABLE requests ("
    "  id     INTEGER PRIMARY KEY CHECK (id > 0),"   /* assigned by the API */
    "  kind   TEXT NOT NULL CHECK (kind <> ''),"
    "  state  TEXT NOT NULL CHECK (state IN ('accepted', 'refused')),"
    "  actor  TEXT NOT NULL DEFAULT '',"
    "  run_id INTEGER REFERENCES runs (id),"      /* NULL: none */
    "  error  TEXT NOT NULL DEFAULT '',"
    "  at     INTEGER NOT NULL"
    ");",

    /* 2 -> 3: webhook notifications, backup refreshes. Times that have not
     * happened (last_attempt_at, finished_at) are NULL, read back as 0. */
    "CREATE TABLE notifications ("
    "  id              INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  at              INTEGER NOT NULL,"
    "  event           TEXT NOT NULL CHECK (event <> ''),"
    "  summary         TEXT NOT NULL DEFAULT '',"
    "  state           TEXT NOT NULL DEFAULT 'pending'"
    "                  CHECK (state IN ('pending', 'sent', 'failed', 'dropped')),"
    "  attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),"
    "  http_status     INTEGER NOT NULL DEFAULT 0,"   /* 0: no answer */
    "  error           TEXT NOT NULL DEFAULT '',"
    "  last_attempt_at INTEGER"                       /* NULL: never */
    ");"
    "CREATE INDEX notifications_at ON notifications (at);"
    "CREATE TABLE refreshes ("
    "  id          INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  mode        TEXT NOT NULL CHECK (mode IN ('dump', 'logical')),"
    "  \"trigger\"   TEXT NOT NULL CHECK (\"trigger\" IN ('schedule', 'manual')),"
    "  state       TEXT NOT NULL DEFAULT 'running'"
    "              CHECK (state IN ('running', 'succeeded', 'failed', 'refused')),"
    "  started_at  INTEGER NOT NULL,"
    "  finished_at INTEGER,"                          /* NULL while running */
    "  bytes       INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),"
    "  file        TEXT NOT NULL DEFAULT '',"
    "  error       TEXT NOT NULL DEFAULT ''"
    ");"
    /* store_refresh_last_good: the newest succeeded one without a scan */
    "CREATE INDEX refreshes_succeeded ON refreshes (id) WHERE state = 'succeeded';",

    /* 3 -> 4: readiness checks (the latest result of each, and since when
     * it has had that status) and drills (a rehearsal's report, JSON). */
    "CREATE TABLE checks ("
    "  name       TEXT PRIMARY KEY,"
    "  status     TEXT NOT NULL CHECK (status IN ('ok', 'warn', 'fail')),"
    "  reason     TEXT NOT NULL DEFAULT '',"
    "  fix        TEXT NOT NULL DEFAULT '',"
    "  checked_at INTEGER NOT NULL,"
    "  since      INTEGER NOT NULL"
    ");"
    "CREATE TABLE drills ("
    "  id         INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  started_at INTEGER NOT NULL,"
    "  ended_at   INTEGER NOT NULL,"
    "  result     TEXT NOT NULL CHECK (result IN ('succeeded', 'failed')),"
    "  report     TEXT NOT NULL"
    ");"
    "CREATE INDEX drills_succeeded ON drills (id) WHERE result = 'succeeded';",

    /* 4 -> 5: approvals.choice also takes the sync-back conflict decisions
     * (backup-wins, primary-wins) that `drctl approve --choice` documents;
     * v4 refused them. SQLite cannot change a CHECK: rebuild the table
     * (nothing references approvals), keeping ids and the indexes. */
    "CREATE TABLE approvals_v5 ("
    "  id         INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  run_id     INTEGER REFERENCES runs (id) ON DELETE CASCADE,"
    "  step_idx   INTEGER NOT NULL DEFAULT -1 CHECK (step_idx >= -1),"
    "  kind       TEXT NOT NULL CHECK (kind IN ('policy', 'step', 'attention')),"
    "  state      TEXT NOT NULL DEFAULT 'pending'"
    "             CHECK (state IN ('pending', 'approved', 'rejected', 'expired')),"
    "  prompt     TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER,"
    "  decided_at INTEGER,"
    "  decided_by TEXT NOT NULL DEFAULT '',"
    "  reason     TEXT NOT NULL DEFAULT '',"
    "  choice     TEXT NOT NULL DEFAULT '' CHECK (choice IN ('', 'retry', 'skip', 'abort',"
    " 'backup-wins', 'primary-wins')),"
    "  CHECK ((state = 'pending') = (decided_at IS NULL))"
    ");"
    "INSERT INTO approvals_v5 (id, run_id, step_idx, kind, state, prompt, created_at, expires_at,"
    " decided_at, decided_by, reason, choice)"
    " SELECT id, run_id, step_idx, kind, state, prompt, created_at, expires_at,"
    " decided_at, decided_by, reason, choice FROM approvals;"
    "DROP TABLE approvals;"
    "ALTER TABLE approvals_v5 RENAME TO approvals;"
    "CREATE INDEX approvals_pending ON approvals (created_at, id) WHERE state = 'pending';"
    "CREATE INDEX approvals_run ON approvals (run_id, id);",

    /* 5 -> 6: reconcile refreshes (mode 'reconcile': rebuild refreshes for
     * its CHECK, keeping ids), the per-table watermarks of reconcile mode,
     * and the bytes read from the primary per day (the egress budget). */
    "CREATE TABLE refreshes_v6 ("
    "  id          INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  mode        TEXT NOT NULL CHECK (mode IN ('dump', 'logical', 'reconcile')),"
    "  \"trigger\"   TEXT NOT NULL CHECK (\"trigger\" IN ('schedule', 'manual')),"
    "  state       TEXT NOT NULL DEFAULT 'running'"
    "              CHECK (state IN ('running', 'succeeded', 'failed', 'refused')),"
    "  started_at  INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  bytes       INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),"
    "  file        TEXT NOT NULL DEFAULT '',"
    "  error       TEXT NOT NULL DEFAULT ''"
    ");"
    "INSERT INTO refreshes_v6 SELECT id, mode, \"trigger\", state, started_at, finished_at, bytes,"
    " file, error FROM refreshes;"
    "DROP TABLE refreshes;"
    "ALTER TABLE refreshes_v6 RENAME TO refreshes;"
    "CREATE INDEX refreshes_succeeded ON refreshes (id) WHERE state = 'succeeded';"
    "CREATE TABLE IF NOT EXISTS reconcile_tables ("
    "  name       TEXT PRIMARY KEY,"               /* schema.table */
    "  watermark  TEXT NOT NULL DEFAULT '',"        /* JSON [change, key...] of the last applied row */
    "  full_key   TEXT NOT NULL DEFAULT '',"        /* whole copy under way: JSON [key...] applied */
    "  full_at    INTEGER NOT NULL DEFAULT 0,"      /* the last whole copy finished, ms */
    "  updated_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE IF NOT EXISTS egress_days ("
    "  day       TEXT PRIMARY KEY,"                 /* YYYY-MM-DD, UTC */
    "  bytes     INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),"
    "  refreshes INTEGER NOT NULL DEFAULT 0"
    ");",
};

int store_latest_version(void)
{
    return (int)ARRAY_LEN(migrations);
}

/* ---- prepared statements ---- */

enum stmt_id {
    ST_BEGIN, ST_BEGIN_READ, ST_COMMIT, ST_ROLLBACK,
    ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
    ST_TARGET_PUT, ST_TARGET_GET,
    ST_PROBE_ADD, ST_PROBE_PRUNE, ST_PROBE_LIST,
    ST_EVENT_ADD, ST_EVENTS_SINCE, ST_EVENTS_RECENT,
    ST_INCIDENT_OPEN, ST_INCIDENT_CLOSE, ST_INCIDENT_FIND_OPEN, ST_INCIDENTS_RECENT,
    ST_KV_SET, ST_KV_GET,
    /* schema v2 */
    ST_RUN_INSERT, ST_RUN_UPDATE, ST_RUN_GET, ST_RUN_ACTIVE, ST_RUNS_RECENT,
    ST_STEP_INSERT, ST_STEP_UPDATE, ST_STEPS_OF,
    ST_APPROVAL_INSERT, ST_APPROVAL_DECIDE, ST_APPROVAL_GET, ST_APPROVALS_PENDING,
    ST_APPROVALS_OF_RUN,
    ST_REQUEST_PUT, ST_REQUEST_GET,
    /* schema v3 */
    ST_NOTIFICATION_INSERT, ST_NOTIFICATION_UPDATE, ST_NOTIFICATIONS_PRUNE,
    ST_NOTIFICATIONS_RECENT,
    ST_REFRESH_INSERT, ST_REFRESH_UPDATE, ST_REFRESHES_RECENT, ST_REFRESH_LAST_GOOD,
    /* schema v4 */
    ST_CHECK_PUT, ST_CHECK_DELETE_OTHERS, ST_CHECKS_ALL,
    ST_DRILL_INSERT, ST_DRILLS_RECENT, ST_DRILL_LAST_GOOD,
    /* schema v6 */
    ST_WATERMARK_GET, ST_WATERMARK_PUT, ST_WATERMARKS_RESET, ST_EGRESS_ADD, ST_EGRESS_SUM,
    ST_REFRESHES_PRUNE,
    ST_COUNT
};

#define EVENT_COLS    "id, at, kind, target, message"
#define INCIDENT_COLS "id, target, started_at, coalesce(ended_at, 0), reason"
#define RUN_COLS      "id, kind, state, reason, started_by, request_id, incident_id," \
                      " created_at, coalesce(finished_at, 0), current_step, runbook, error"
#define STEP_COLS     "run_id, idx, name, action, state, attempts, coalesce(started_at, 0)," \
                      " coalesce(finished_at, 0), exit_code, error, params, output"
#define APPROVAL_COLS "id, coalesce(run_id, 0), step_idx, kind, state, prompt, created_at," \
                      " coalesce(expires_at, 0), coalesce(decided_at, 0), decided_by, reason, choice"
#define REQUEST_COLS  "id, kind, state, actor, coalesce(run_id, 0), error, at"
#define NOTIFICATION_COLS "id, at, event, summary, state, attempts, http_status, error," \
                          " coalesce(last_attempt_at, 0)"
#define REFRESH_COLS  "id, mode, \"trigger\", state, started_at, coalesce(finished_at, 0)," \
                      " bytes, file, error"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN]       = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ]  = "BEGIN DEFERRED",
    [ST_COMMIT]      = "COMMIT",
    [ST_ROLLBACK]    = "ROLLBACK",
    [ST_SAVEPOINT]   = "SAVEPOINT store_tx",
    [ST_RELEASE]     = "RELEASE store_tx",
    [ST_ROLLBACK_TO] = "ROLLBACK TO store_tx",
    [ST_TARGET_PUT] =
        "INSERT INTO targets (name, healthy, reachable, in_recovery, breaker, latency_ms,"
        "                     last_error, last_probe_at, breaker_since)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        " ON CONFLICT (name) DO UPDATE SET healthy = excluded.healthy,"
        "   reachable = excluded.reachable, in_recovery = excluded.in_recovery,"
        "   breaker = excluded.breaker, latency_ms = excluded.latency_ms,"
        "   last_error = excluded.last_error, last_probe_at = excluded.last_probe_at,"
        "   breaker_since = excluded.breaker_since",
    [ST_TARGET_GET] =
        "SELECT name, healthy, reachable, in_recovery, breaker, latency_ms, last_error,"
        "       last_probe_at, breaker_since FROM targets WHERE name = ?1",
    [ST_PROBE_ADD] =
        "INSERT INTO probe_minutes (target, minute, probes, failures, latency_sum_ms, latency_max_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        " ON CONFLICT (target, minute) DO UPDATE SET"
        "   probes = probes + excluded.probes,"
        "   failures = failures + excluded.failures,"
        "   latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms,"
        "   latency_max_ms = max(latency_max_ms, excluded.latency_max_ms)",
    [ST_PROBE_PRUNE] = "DELETE FROM probe_minutes WHERE minute < ?1",
    [ST_PROBE_LIST] =
        "SELECT target, minute, probes, failures, latency_sum_ms, latency_max_ms"
        " FROM probe_minutes WHERE target = ?1 AND minute >= ?2 ORDER BY minute",
    [ST_EVENT_ADD] = "INSERT INTO events (at, kind, target, message) VALUES (?1, ?2, ?3, ?4)",
    [ST_EVENTS_SINCE] =
        "SELECT " EVENT_COLS " FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_EVENTS_RECENT] = "SELECT " EVENT_COLS " FROM events ORDER BY id DESC LIMIT ?1",
    [ST_INCIDENT_OPEN] = "INSERT INTO incidents (target, started_at, reason) VALUES (?1, ?2, ?3)",
    /* Closing a closed incident keeps its first end (and still "finds" it). */
    [ST_INCIDENT_CLOSE] =
        "UPDATE incidents SET ended_at = coalesce(ended_at, ?2) WHERE id = ?1",
    [ST_INCIDENT_FIND_OPEN] =
        "SELECT id FROM incidents WHERE target = ?1 AND ended_at IS NULL ORDER BY id DESC LIMIT 1",
    [ST_INCIDENTS_RECENT] = "SELECT " INCIDENT_COLS " FROM incidents ORDER BY id DESC LIMIT ?1",
    [ST_KV_SET] =
        "INSERT INTO kv (key, value) VALUES (?1, ?2)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [ST_KV_GET] = "SELECT value FROM kv WHERE key = ?1",
    [ST_RUN_INSERT] =
        "INSERT INTO runs (kind, state, reason, started_by, request_id, incident_id, created_at,"
        "                  current_step, runbook, error)"
        " VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, -1, ?7, '')",
    /* NULL state or error keeps the current one; finished_at 0 is NULL. */
    [ST_RUN_UPDATE] =
        "UPDATE runs SET state = coalesce(?2, state), current_step = ?3,"
        "  error = coalesce(?4, error), finished_at = nullif(?5, 0) WHERE id = ?1",
    [ST_RUN_GET] = "SELECT " RUN_COLS " FROM runs WHERE id = ?1",
    [ST_RUN_ACTIVE] =
        "SELECT id FROM runs WHERE state IN ('running', 'waiting') ORDER BY id DESC LIMIT 1",
    [ST_RUNS_RECENT] = "SELECT " RUN_COLS " FROM runs ORDER BY id DESC LIMIT ?1",
    [ST_STEP_INSERT] =
        "INSERT INTO steps (run_id, idx, name, action, params) VALUES (?1, ?2, ?3, ?4, ?5)",
    /* NULL output keeps the stored one. */
    [ST_STEP_UPDATE] =
        "UPDATE steps SET state = ?3, attempts = ?4, started_at = nullif(?5, 0),"
        "  finished_at = nullif(?6, 0), exit_code = ?7, error = ?8,"
        "  output = coalesce(?9, output) WHERE run_id = ?1 AND idx = ?2",
    [ST_STEPS_OF] = "SELECT " STEP_COLS " FROM steps WHERE run_id = ?1 ORDER BY idx",
    [ST_APPROVAL_INSERT] =
        "INSERT INTO approvals (run_id, step_idx, kind, state, prompt, created_at, expires_at)"
        " VALUES (nullif(?1, 0), ?2, ?3, 'pending', ?4, ?5, nullif(?6, 0))",
    [ST_APPROVAL_DECIDE] =
        "UPDATE approvals SET state = ?2, decided_by = ?3, reason = ?4, choice = ?5,"
        "  decided_at = ?6 WHERE id = ?1 AND state = 'pending'",
    [ST_APPROVAL_GET] = "SELECT " APPROVAL_COLS " FROM approvals WHERE id = ?1",
    [ST_APPROVALS_PENDING] =
        "SELECT " APPROVAL_COLS " FROM approvals WHERE state = 'pending' ORDER BY created_at, id",
    /* run_id 0: the policy approvals (made before any run). */
    [ST_APPROVALS_OF_RUN] =
        "SELECT " APPROVAL_COLS " FROM approvals WHERE run_id IS nullif(?1, 0) ORDER BY id",
    [ST_REQUEST_PUT] =
        "INSERT INTO requests (id, kind, state, actor, run_id, error, at)"
        " VALUES (?1, ?2, ?3, ?4, nullif(?5, 0), ?6, ?7)"
        " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, state = excluded.state,"
        "   actor = excluded.actor, run_id = excluded.run_id, error = excluded.error,"
        "   at = excluded.at",
    [ST_REQUEST_GET] = "SELECT " REQUEST_COLS " FROM requests WHERE id = ?1",
    /* "" state is the initial one; 0 times are NULL. */
    [ST_NOTIFICATION_INSERT] =
        "INSERT INTO notifications (at, event, summary, state, attempts, http_status, error,"
        "                           last_attempt_at)"
        " VALUES (?1, ?2, ?3, coalesce(nullif(?4, ''), 'pending'), ?5, ?6, ?7, nullif(?8, 0))",
    [ST_NOTIFICATION_UPDATE] =
        "UPDATE notifications SET state = ?2, attempts = ?3, http_status = ?4, error = ?5,"
        "  last_attempt_at = nullif(?6, 0) WHERE id = ?1",
    /* ids only grow (AUTOINCREMENT, only pruning deletes): keeping ids
     * above newest - N keeps at most the newest N rows. */
    [ST_NOTIFICATIONS_PRUNE] = "DELETE FROM notifications WHERE id <= ?1",
    [ST_NOTIFICATIONS_RECENT] =
        "SELECT " NOTIFICATION_COLS " FROM notifications ORDER BY id DESC LIMIT ?1",
    [ST_REFRESH_INSERT] =
        "INSERT INTO refreshes (mode, \"trigger\", state, started_at, finished_at, bytes, file,"
        "                       error)"
        " VALUES (?1, ?2, coalesce(nullif(?3, ''), 'running'), ?4, nullif(?5, 0), ?6, ?7, ?8)",
    [ST_REFRESH_UPDATE] =
        "UPDATE refreshes SET state = ?2, finished_at = nullif(?3, 0), bytes = ?4, file = ?5,"
        "  error = ?6 WHERE id = ?1",
    [ST_REFRESHES_RECENT] = "SELECT " REFRESH_COLS " FROM refreshes ORDER BY id DESC LIMIT ?1",
    [ST_REFRESH_LAST_GOOD] =
        "SELECT " REFRESH_COLS " FROM refreshes WHERE state = 'succeeded' ORDER BY id DESC LIMIT 1",
    /* since moves only when the status changes. */
    [ST_CHECK_PUT] =
        "INSERT INTO checks (name, status, reason, fix, checked_at, since)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?5)"
        " ON CONFLICT (name) DO UPDATE SET reason = excluded.reason, fix = excluded.fix,"
        "   checked_at = excluded.checked_at,"
        "   since = CASE WHEN status = excluded.status THEN since ELSE excluded.checked_at END,"
        "   status = excluded.status",
    /* a check no longer run (a newer drd dropped it): gone with the run */
    [ST_CHECK_DELETE_OTHERS] = "DELETE FROM checks WHERE checked_at < ?1",
    [ST_CHECKS_ALL] =
        "SELECT name, status, reason, fix, checked_at, since FROM checks ORDER BY rowid",
    [ST_DRILL_INSERT] =
        "INSERT INTO drills (started_at, ended_at, result, report) VALUES (?1, ?2, ?3, ?4)",
    [ST_DRILLS_RECENT] =
        "SELECT id, started_at, ended_at, result, report FROM drills ORDER BY id DESC LIMIT ?1",
    [ST_DRILL_LAST_GOOD] =
        "SELECT id, started_at, ended_at, result, report FROM drills WHERE result = 'succeeded'"
        " ORDER BY id DESC LIMIT 1",
    [ST_WATERMARK_GET] =
        "SELECT name, watermark, full_key, full_at, updated_at FROM reconcile_tables WHERE name = ?1",
    [ST_WATERMARK_PUT] =
        "INSERT INTO reconcile_tables (name, watermark, full_key, full_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5)"
        " ON CONFLICT (name) DO UPDATE SET watermark = excluded.watermark,"
        "   full_key = excluded.full_key, full_at = excluded.full_at, updated_at = excluded.updated_at",
    [ST_WATERMARKS_RESET] = "DELETE FROM reconcile_tables",
    [ST_EGRESS_ADD] =
        "INSERT INTO egress_days (day, bytes, refreshes) VALUES (strftime('%Y-%m-%d', ?1 / 1000, 'unixepoch'), ?2, 1)"
        " ON CONFLICT (day) DO UPDATE SET bytes = bytes + excluded.bytes, refreshes = refreshes + 1",
    [ST_EGRESS_SUM] =
        "SELECT coalesce(sum(bytes), 0), coalesce(sum(refreshes), 0) FROM egress_days"
        " WHERE day >= strftime('%Y-%m-%d', ?1 / 1000, 'unixepoch')"
        "   AND day < strftime('%Y-%m-%d', ?2 / 1000, 'unixepoch')",
    /* a frequent mode's routine rows: keep the newest ?2 of ?1 (failures stay) */
    [ST_REFRESHES_PRUNE] =
        "DELETE FROM refreshes WHERE mode = ?1 AND state IN ('succeeded', 'refused') AND id <"
        " (SELECT coalesce(min(id), 0) FROM (SELECT id FROM refreshes WHERE mode = ?1"
        "  ORDER BY id DESC LIMIT ?2))",
};

struct store {
    sqlite3 *db;
    bool readonly;
    int version;             /* user_version seen at open */
    int tx_depth;            /* store_tx nesting: 0 = no transaction held */
    sqlite3_stmt *st[ST_COUNT];
};

/* ---- helpers ---- */

/* Copy src into dst[n] as valid UTF-8, cut on a character boundary (JSON
 * encoders reject anything else: a run must never vanish from a view
 * because of its bytes). Used for what is written and what is read back. */
static void copy_text(char *dst, size_t n, const char *src)
{
    if (n == 0)
        return;
    str_copy(dst, src ? src : "", n);
    utf8_fix(dst, n);
}

/* Free text as stored: secrets masked first, then cut to what readers can
 * hold. */
static void clean_text(char *out, size_t n, const char *in)
{
    mask_secrets(in ? in : "", out, n);
    utf8_fix(out, n);
}

static void col_text(sqlite3_stmt *st, int col, char *dst, size_t n)
{
    copy_text(dst, n, (const char *)sqlite3_column_text(st, col));
}

static bool bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT) == SQLITE_OK;
}

/* NULL binds SQL NULL (for "keep the current value" in updates). */
static bool bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL)
        return sqlite3_bind_null(st, i) == SQLITE_OK;
    return sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) == SQLITE_OK;
}

static bool bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(st, i, v) == SQLITE_OK;
}

static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* The prepared statement id, ready for binding; NULL (logged) if unusable. */
static sqlite3_stmt *stmt_use(store_t *s, enum stmt_id id, const char *what)
{
    if (s == NULL) {
        log_error("store: %s: no database", what);
        return NULL;
    }
    sqlite3_stmt *st = s->st[id];
    if (st == NULL) {
        log_error("store: %s: not available in schema version %d", what, s->version);
        return NULL;
    }
    if (sqlite3_stmt_busy(st)) {
        log_error("store: %s: called again from its own callback", what);
        return NULL;
    }
    return st;
}

static bool fail(store_t *s, sqlite3_stmt *st, const char *what)
{
    log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
    if (st != NULL)
        stmt_done(st);
    return false;
}

/* Step a statement that returns no rows (transaction control). */
static bool run_simple(store_t *s, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = stmt_use(s, id, what);
    if (st == NULL)
        return false;
    if (sqlite3_step(st) != SQLITE_DONE)
        return fail(s, st, what);
    stmt_done(st);
    return true;
}

/* End the transaction begun by BEGIN: COMMIT if ok, else ROLLBACK. A failed
 * COMMIT is rolled back. Returns whether the work was committed. */
static bool tx_end(store_t *s, bool ok, const char *what)
{
    if (sqlite3_get_autocommit(s->db)) {          /* SQLite already rolled back */
        if (ok)
            log_error("store: %s: transaction was rolled back by SQLite", what);
        return false;
    }
    if (ok && run_simple(s, ST_COMMIT, what))
        return true;
    if (!sqlite3_get_autocommit(s->db))
        run_simple(s, ST_ROLLBACK, what);
    return false;
}

/* Execute a bound write statement: inside the caller's store_tx, or in a
 * BEGIN IMMEDIATE transaction of its own. Always resets the statement. */
static bool write_step(store_t *s, sqlite3_stmt *st, const char *what,
                       int64_t *changes, int64_t *rowid)
{
    bool own = s->tx_depth == 0;
    if (!own && sqlite3_get_autocommit(s->db)) {
        /* SQLite rolled store_tx's transaction back after an error: do not
         * let the rest of the callback's writes commit one by one. */
        log_error("store: %s: transaction was rolled back by SQLite", what);
        stmt_done(st);
        return false;
    }
    if (own && !run_simple(s, ST_BEGIN, what)) {
        stmt_done(st);
        return false;
    }
    bool ok = sqlite3_step(st) == SQLITE_DONE;
    if (!ok)
        log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
    else {
        if (changes != NULL)
            *changes = sqlite3_changes64(s->db);
        if (rowid != NULL)
            *rowid = sqlite3_last_insert_rowid(s->db);
    }
    stmt_done(st);
    if (own)
        ok = tx_end(s, ok, what);
    return ok;
}

/* Step a query: SQLITE_ROW, SQLITE_DONE, or another code (logged). */
static int read_step(store_t *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
    return rc;
}

/* ---- open / close ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (err != NULL && errlen > 0)
        str_copy(err, buf, errlen);
    else
        log_error("%s", buf);              /* nobody else will see it */
}


static bool read_user_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st = NULL;
    bool ok = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK
              && sqlite3_step(st) == SQLITE_ROW;
    if (ok)
        *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return ok;
}

/* Refuse a schema newer than this binary knows. */
static bool check_not_newer(const char *path, int version, char *err, size_t errlen)
{
    if (version <= store_latest_version())
        return true;
    set_err(err, errlen, "database %s has schema version %d, newer than this drd knows (%d); "
            "upgrade drd", path, version, store_latest_version());
    return false;
}

static bool pragma_exec(sqlite3 *db, const char *sql, const char *path, char *err, size_t errlen)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK)
        return true;
    set_err(err, errlen, "database %s: %s: %s", path, sql, sqlite3_errmsg(db));
    return false;
}

static bool set_wal(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK
        || sqlite3_step(st) != SQLITE_ROW) {
        set_err(err, errlen, "database %s: cannot enable WAL: %s", path, sqlite3_errmsg(db));
        goto cleanup;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    /* An in-memory database (tests) reports "memory". */
    ok = mode != NULL && (strcmp(mode, "wal") == 0 || strcmp(mode, "memory") == 0);
    if (!ok)
        set_err(err, errlen, "database %s: cannot enable WAL (journal mode is %s)",
                path, mode ? mode : "unknown");
cleanup:
    sqlite3_finalize(st);
    return ok;
}

/* Apply every pending migration in one transaction. */
static bool migrate(store_t *s, const char *path, char *err, size_t errlen)
{
    int from = 0, latest = store_latest_version();
    char sql[64];
    if (!pragma_exec(s->db, "BEGIN IMMEDIATE", path, err, errlen))
        return false;
    /* Read again under the write lock: another process may have migrated. */
    if (!read_user_version(s->db, &from)) {
        set_err(err, errlen, "database %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (!check_not_newer(path, from, err, errlen))
        goto fail;
    for (int v = from; v < latest; v++)
        if (sqlite3_exec(s->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
            set_err(err, errlen, "database %s: migration from schema version %d to %d failed: %s",
                    path, v, v + 1, sqlite3_errmsg(s->db));
            goto fail;
        }
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", latest);
    if (!pragma_exec(s->db, sql, path, err, errlen) || !pragma_exec(s->db, "COMMIT", path, err, errlen))
        goto fail;
    if (from < latest)
        log_info("store: %s migrated from schema version %d to %d", path, from, latest);
    s->version = latest;
    return true;
fail:
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return false;
}

static bool prepare_all(store_t *s, const char *path, char *err, size_t errlen)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->st[i], NULL) == SQLITE_OK)
            continue;
        if (!s->readonly) {
            set_err(err, errlen, "database %s: cannot prepare \"%s\": %s",
                    path, stmt_sql[i], sqlite3_errmsg(s->db));
            return false;
        }
        /* read-only on an older schema: this one fails when used */
        log_debug("store: %s: statement %d unavailable: %s", path, i, sqlite3_errmsg(s->db));
        s->st[i] = NULL;
    }
    return true;
}

/* Open the connection and apply the settings shared by both modes. */
static store_t *open_common(const char *path, bool readonly, char *err, size_t errlen)
{
    store_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    s->readonly = readonly;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        set_err(err, errlen, "cannot open database %s: %s", path,
                s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    if (!read_user_version(s->db, &s->version)) {
        set_err(err, errlen, "cannot read database %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (!check_not_newer(path, s->version, err, errlen)
        || !pragma_exec(s->db, "PRAGMA foreign_keys=ON", path, err, errlen))
        goto fail;
    return s;
fail:
    store_close(s);
    return NULL;
}

store_t *store_open(const char *path, char *err, size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        set_err(err, errlen, "no database path");
        return NULL;
    }
    bool memory = strcmp(path, ":memory:") == 0;
    if (!memory) {
        if (!mkdir_parents(path, 0700, err, errlen))
            return NULL;
        /* Create the file ourselves so that it (and SQLite's -wal and -shm,
         * which copy its mode) is 0600 whatever the umask. */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            set_err(err, errlen, "cannot open database %s: %s", path, strerror(errno));
            return NULL;
        }
        close(fd);
    }
    store_t *s = open_common(path, false, err, errlen);
    if (s == NULL)
        return NULL;
    if (!set_wal(s->db, path, err, errlen)
        || !pragma_exec(s->db, "PRAGMA synchronous=FULL", path, err, errlen)
        || !migrate(s, path, err, errlen)
        || !prepare_all(s, path, err, errlen)) {
        store_close(s);
        return NULL;
    }
    return s;
}

store_t *store_open_readonly(const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (path == NULL || path[0] == '\0') {
        set_err(err, errlen, "no database path");
        return NULL;
    }
    if (stat(path, &sb) != 0) {
        set_err(err, errlen, "cannot open database %s: %s", path, strerror(errno));
        return NULL;
    }
    store_t *s = open_common(path, true, err, errlen);
    if (s == NULL)
        return NULL;
    if (s->version == 0) {
        set_err(err, errlen, "database %s is not initialised (schema version 0)", path);
        goto fail;
    }
    if (!prepare_all(s, path, err, errlen))
        goto fail;
    return s;
fail:
    store_close(s);
    return NULL;
}

void store_close(store_t *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db != NULL && sqlite3_close(s->db) != SQLITE_OK)
        log_error("store: close: %s", sqlite3_errmsg(s->db));
    free(s);
}

int store_schema_version(store_t *s)
{
    return s ? s->version : -1;
}

/* ---- transactions ---- */

bool store_tx(store_t *s, bool (*fn)(store_t *s, void *arg), void *arg)
{
    if (s == NULL || fn == NULL)
        return false;
    bool nested = s->tx_depth > 0;
    /* A read-only handle gets a consistent snapshot instead of a write lock. */
    enum stmt_id begin = nested ? ST_SAVEPOINT : s->readonly ? ST_BEGIN_READ : ST_BEGIN;
    if (!run_simple(s, begin, "begin transaction"))
        return false;
    s->tx_depth++;
    bool ok = fn(s, arg);
    s->tx_depth--;
    if (!nested)
        return tx_end(s, ok, "commit");
    if (sqlite3_get_autocommit(s->db)) {          /* the whole transaction is gone */
        if (ok)
            log_error("store: transaction was rolled back by SQLite");
        return false;
    }
    if (!ok)
        run_simple(s, ST_ROLLBACK_TO, "rollback to savepoint");
    return run_simple(s, ST_RELEASE, "release savepoint") && ok;
}

/* ---- targets ---- */

bool store_target_put(store_t *s, const store_target *t)
{
    char error[sizeof t->last_error];
    sqlite3_stmt *st = stmt_use(s, ST_TARGET_PUT, "target_put");
    if (st == NULL)
        return false;
    clean_text(error, sizeof error, t->last_error);
    if (!bind_text(st, 1, t->name) || !bind_i64(st, 2, t->healthy)
        || !bind_i64(st, 3, t->reachable) || !bind_i64(st, 4, t->in_recovery)
        || !bind_text(st, 5, breaker_state_name(t->breaker)) || !bind_i64(st, 6, t->latency_ms)
        || !bind_text(st, 7, error) || !bind_i64(st, 8, t->last_probe_at)
        || !bind_i64(st, 9, t->breaker_since))
        return fail(s, st, "target_put");
    return write_step(s, st, "target_put", NULL, NULL);
}

bool store_target_get(store_t *s, const char *name, store_target *out)
{
    sqlite3_stmt *st = stmt_use(s, ST_TARGET_GET, "target_get");
    if (st == NULL)
        return false;
    if (!bind_text(st, 1, name))
        return fail(s, st, "target_get");
    int rc = read_step(s, st, "target_get");
    if (rc == SQLITE_ROW) {
        char breaker[16];
        memset(out, 0, sizeof *out);
        col_text(st, 0, out->name, sizeof out->name);
        out->healthy = sqlite3_column_int(st, 1) != 0;
        out->reachable = sqlite3_column_int(st, 2) != 0;
        out->in_recovery = sqlite3_column_int(st, 3) != 0;
        col_text(st, 4, breaker, sizeof breaker);
        if (!breaker_state_parse(breaker, &out->breaker)) {
            log_warn("store: target %s has unknown breaker state \"%s\"", out->name, breaker);
            out->breaker = BREAKER_OPEN;
        }
        out->latency_ms = sqlite3_column_int64(st, 5);
        col_text(st, 6, out->last_error, sizeof out->last_error);
        out->last_probe_at = sqlite3_column_int64(st, 7);
        out->breaker_since = sqlite3_column_int64(st, 8);
    }
    stmt_done(st);
    return rc == SQLITE_ROW;
}

/* ---- probe statistics ---- */

bool store_probe_minute_add(store_t *s, const store_probe_minute *m)
{
    sqlite3_stmt *st = stmt_use(s, ST_PROBE_ADD, "probe_minute_add");
    if (st == NULL)
        return false;
    if (!bind_text(st, 1, m->target) || !bind_i64(st, 2, m->minute)
        || !bind_i64(st, 3, m->probes) || !bind_i64(st, 4, m->failures)
        || !bind_i64(st, 5, m->latency_sum_ms) || !bind_i64(st, 6, m->latency_max_ms))
        return fail(s, st, "probe_minute_add");
    return write_step(s, st, "probe_minute_add", NULL, NULL);
}

int64_t store_probe_prune(store_t *s, int64_t before)
{
    int64_t deleted = 0;
    sqlite3_stmt *st = stmt_use(s, ST_PROBE_PRUNE, "probe_prune");
    if (st == NULL)
        return -1;
    /* Minute m covers [m, m+1) * 60000: it is older than `before` when it
     * ended by then, i.e. m < floor(before / 60000). */
    if (!bind_i64(st, 1, before > 0 ? before / 60000 : 0)) {
        fail(s, st, "probe_prune");
        return -1;
    }
    return write_step(s, st, "probe_prune", &deleted, NULL) ? deleted : -1;
}

bool store_probe_minutes(store_t *s, const char *target, int64_t since_minute,
                         store_probe_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_PROBE_LIST, "probe_minutes");
    if (st == NULL)
        return false;
    if (!bind_text(st, 1, target) || !bind_i64(st, 2, since_minute))
        return fail(s, st, "probe_minutes");
    int rc;
    while ((rc = read_step(s, st, "probe_minutes")) == SQLITE_ROW) {
        store_probe_minute m;
        memset(&m, 0, sizeof m);
        col_text(st, 0, m.target, sizeof m.target);
        m.minute = sqlite3_column_int64(st, 1);
        m.probes = sqlite3_column_int64(st, 2);
        m.failures = sqlite3_column_int64(st, 3);
        m.latency_sum_ms = sqlite3_column_int64(st, 4);
        m.latency_max_ms = sqlite3_column_int64(st, 5);
        if (!cb(&m, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

/* ---- events ---- */

int64_t store_event_add(store_t *s, int64_t at, const char *kind,
                        const char *target, const char *message)
{
    char msg[sizeof ((store_event *)0)->message];
    int64_t id = 0;
    sqlite3_stmt *st = stmt_use(s, ST_EVENT_ADD, "event_add");
    if (st == NULL)
        return 0;
    clean_text(msg, sizeof msg, message);
    if (!bind_i64(st, 1, at) || !bind_text(st, 2, kind) || !bind_text(st, 3, target)
        || !bind_text(st, 4, msg)) {
        fail(s, st, "event_add");
        return 0;
    }
    return write_step(s, st, "event_add", NULL, &id) ? id : 0;
}

static bool list_events(store_t *s, sqlite3_stmt *st, const char *what,
                        store_event_cb cb, void *arg)
{
    int rc;
    while ((rc = read_step(s, st, what)) == SQLITE_ROW) {
        store_event e;
        memset(&e, 0, sizeof e);
        e.id = sqlite3_column_int64(st, 0);
        e.at = sqlite3_column_int64(st, 1);
        col_text(st, 2, e.kind, sizeof e.kind);
        col_text(st, 3, e.target, sizeof e.target);
        col_text(st, 4, e.message, sizeof e.message);
        if (!cb(&e, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

bool store_events_since(store_t *s, int64_t since_id, int limit,
                        store_event_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_EVENTS_SINCE, "events_since");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, since_id) || !bind_i64(st, 2, limit))
        return fail(s, st, "events_since");
    return list_events(s, st, "events_since", cb, arg);
}

bool store_events_recent(store_t *s, int limit, store_event_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_EVENTS_RECENT, "events_recent");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, limit))
        return fail(s, st, "events_recent");
    return list_events(s, st, "events_recent", cb, arg);
}

/* ---- incidents ---- */

int64_t store_incident_open(store_t *s, const char *target, int64_t at, const char *reason)
{
    char why[sizeof ((store_incident *)0)->reason];
    int64_t id = 0;
    sqlite3_stmt *st = stmt_use(s, ST_INCIDENT_OPEN, "incident_open");
    if (st == NULL)
        return 0;
    clean_text(why, sizeof why, reason);
    if (!bind_text(st, 1, target) || !bind_i64(st, 2, at) || !bind_text(st, 3, why)) {
        fail(s, st, "incident_open");
        return 0;
    }
    return write_step(s, st, "incident_open", NULL, &id) ? id : 0;
}

bool store_incident_close(store_t *s, int64_t id, int64_t at)
{
    int64_t changed = 0;
    sqlite3_stmt *st = stmt_use(s, ST_INCIDENT_CLOSE, "incident_close");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, id) || !bind_i64(st, 2, at))
        return fail(s, st, "incident_close");
    if (!write_step(s, st, "incident_close", &changed, NULL))
        return false;
    if (changed == 0) {
        log_error("store: incident_close: no incident %lld", (long long)id);
        return false;
    }
    return true;
}

int64_t store_incident_find_open(store_t *s, const char *target)
{
    sqlite3_stmt *st = stmt_use(s, ST_INCIDENT_FIND_OPEN, "incident_find_open");
    if (st == NULL)
        return -1;
    if (!bind_text(st, 1, target)) {
        fail(s, st, "incident_find_open");
        return -1;
    }
    int rc = read_step(s, st, "incident_find_open");
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? 0 : -1;
    stmt_done(st);
    return id;
}

bool store_incidents_recent(store_t *s, int limit, store_incident_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_INCIDENTS_RECENT, "incidents_recent");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, limit))
        return fail(s, st, "incidents_recent");
    int rc;
    while ((rc = read_step(s, st, "incidents_recent")) == SQLITE_ROW) {
        store_incident i;
        memset(&i, 0, sizeof i);
        i.id = sqlite3_column_int64(st, 0);
        col_text(st, 1, i.target, sizeof i.target);
        i.started_at = sqlite3_column_int64(st, 2);
        i.ended_at = sqlite3_column_int64(st, 3);
        col_text(st, 4, i.reason, sizeof i.reason);
        if (!cb(&i, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

/* ---- key/value ---- */

bool store_kv_set(store_t *s, const char *key, const char *value)
{
    sqlite3_stmt *st = stmt_use(s, ST_KV_SET, "kv_set");
    if (st == NULL)
        return false;
    if (!bind_text(st, 1, key) || !bind_text(st, 2, value))
        return fail(s, st, "kv_set");
    return write_step(s, st, "kv_set", NULL, NULL);
}

bool store_kv_get(store_t *s, const char *key, char *out, size_t n)
{
    if (n > 0)
        out[0] = '\0';
    sqlite3_stmt *st = stmt_use(s, ST_KV_GET, "kv_get");
    if (st == NULL)
        return false;
    if (!bind_text(st, 1, key))
        return fail(s, st, "kv_get");
    int rc = read_step(s, st, "kv_get");
    if (rc == SQLITE_ROW)
        col_text(st, 0, out, n);
    stmt_done(st);
    return rc == SQLITE_ROW;
}

/* The kv keys below are this file's alone: the rest of drd goes through
 * the typed functions (store.h). */
#define FENCE_PENDING_KEY "fence_pending"
#define FENCED_KEY "fenced"
#define SYNC_RESOLUTION_KEY "sync_resolution"

bool store_fence_pending_get(store_t *s, char *out, size_t n)
{
    return store_kv_get(s, FENCE_PENDING_KEY, out, n) && out[0] != '\0';
}

bool store_fence_pending_set(store_t *s, const char *target)
{
    return store_kv_set(s, FENCE_PENDING_KEY, target);
}

bool store_fenced_get(store_t *s, char *out, size_t n)
{
    return store_kv_get(s, FENCED_KEY, out, n) && out[0] != '\0';
}

bool store_fenced_set(store_t *s, const char *target)
{
    return store_kv_set(s, FENCED_KEY, target);
}

bool store_sync_resolution_get(store_t *s, char *out, size_t n)
{
    return store_kv_get(s, SYNC_RESOLUTION_KEY, out, n) && out[0] != '\0';
}

bool store_sync_resolution_set(store_t *s, const char *choice)
{
    return store_kv_set(s, SYNC_RESOLUTION_KEY, choice);
}

/* ---- runbook runs (schema v2) ---- */

typedef struct {
    const store_run *r;
    const char *const *names, *const *actions, *const *params;
    int n_steps;
    int64_t id;              /* out */
} run_create_arg;

static bool step_insert(store_t *s, int64_t run_id, int idx, const char *name,
                        const char *action, const char *params)
{
    sqlite3_stmt *st = stmt_use(s, ST_STEP_INSERT, "run_create");
    if (st == NULL)
        return false;
    /* Kept as expanded: a resumed run must do exactly what it started with,
     * secrets included (the file is mode 0600). Whoever shows params masks
     * them; the API shows none. */
    char *json = strdup(params != NULL ? params : "{}");
    if (json == NULL) {
        log_error("store: run_create: out of memory");
        stmt_done(st);
        return false;
    }
    bool ok = bind_i64(st, 1, run_id) && bind_i64(st, 2, idx) && bind_text(st, 3, name)
              && bind_text(st, 4, action) && bind_text(st, 5, json);
    free(json);
    /* SQLite's constraint messages do not say which step */
    char what[128];
    snprintf(what, sizeof what, "run_create: step %d \"%s\" (action \"%s\")",
             idx, name ? name : "", action ? action : "");
    if (!ok)
        return fail(s, st, what);
    return write_step(s, st, what, NULL, NULL);
}

static bool run_create_tx(store_t *s, void *argp)
{
    run_create_arg *a = argp;
    const store_run *r = a->r;
    char reason[sizeof r->reason];

    /* One run at a time (runs_one_active enforces it too): say which. Under
     * the write lock that store_tx holds, nobody can start one meanwhile. */
    int64_t active = store_run_active(s);
    if (active < 0)
        return false;
    if (active > 0) {
        store_run other;
        if (store_run_get(s, active, &other))
            log_error("store: cannot start a %s run: another run is active (run %lld, %s, %s)",
                      r->kind, (long long)active, other.kind, other.state);
        else
            log_error("store: cannot start a %s run: another run is active (run %lld)",
                      r->kind, (long long)active);
        return false;
    }

    sqlite3_stmt *st = stmt_use(s, ST_RUN_INSERT, "run_create");
    if (st == NULL)
        return false;
    clean_text(reason, sizeof reason, r->reason);
    if (!bind_text(st, 1, r->kind) || !bind_text(st, 2, reason) || !bind_text(st, 3, r->started_by)
        || !bind_i64(st, 4, r->request_id) || !bind_i64(st, 5, r->incident_id)
        || !bind_i64(st, 6, r->created_at != 0 ? r->created_at : wall_ms())
        || !bind_text(st, 7, r->runbook))
        return fail(s, st, "run_create");
    if (!write_step(s, st, "run_create", NULL, &a->id))
        return false;
    for (int i = 0; i < a->n_steps; i++)
        if (!step_insert(s, a->id, i, a->names[i], a->actions[i],
                         a->params != NULL ? a->params[i] : NULL))
            return false;
    return true;
}

int64_t store_run_create(store_t *s, const store_run *r, const char *const *names,
                         const char *const *actions, const char *const *params, int n_steps)
{
    if (r == NULL || n_steps < 0 || (n_steps > 0 && (names == NULL || actions == NULL))) {
        log_error("store: run_create: invalid arguments");
        return 0;
    }
    run_create_arg a = { .r = r, .names = names, .actions = actions, .params = params,
                         .n_steps = n_steps, .id = 0 };
    /* Its own transaction, or a savepoint inside the caller's store_tx. */
    if (!store_tx(s, run_create_tx, &a))
        return 0;
    log_debug("store: run %lld (%s) created with %d steps", (long long)a.id, r->kind, n_steps);
    return a.id;
}

bool store_run_update(store_t *s, int64_t run_id, const char *state, int current_step,
                      const char *error, int64_t finished_at)
{
    char why[sizeof ((store_run *)0)->error];
    int64_t changed = 0;
    sqlite3_stmt *st = stmt_use(s, ST_RUN_UPDATE, "run_update");
    if (st == NULL)
        return false;
    if (error != NULL)
        clean_text(why, sizeof why, error);
    if (!bind_i64(st, 1, run_id) || !bind_text_or_null(st, 2, state)
        || !bind_i64(st, 3, current_step) || !bind_text_or_null(st, 4, error ? why : NULL)
        || !bind_i64(st, 5, finished_at))
        return fail(s, st, "run_update");
    if (!write_step(s, st, "run_update", &changed, NULL))
        return false;
    if (changed == 0) {
        log_error("store: run_update: no run %lld", (long long)run_id);
        return false;
    }
    return true;
}

static void read_run(sqlite3_stmt *st, store_run *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, r->kind, sizeof r->kind);
    col_text(st, 2, r->state, sizeof r->state);
    col_text(st, 3, r->reason, sizeof r->reason);
    col_text(st, 4, r->started_by, sizeof r->started_by);
    r->request_id = sqlite3_column_int64(st, 5);
    r->incident_id = sqlite3_column_int64(st, 6);
    r->created_at = sqlite3_column_int64(st, 7);
    r->finished_at = sqlite3_column_int64(st, 8);
    r->current_step = sqlite3_column_int(st, 9);
    col_text(st, 10, r->runbook, sizeof r->runbook);
    col_text(st, 11, r->error, sizeof r->error);
}

bool store_run_get(store_t *s, int64_t run_id, store_run *out)
{
    sqlite3_stmt *st = stmt_use(s, ST_RUN_GET, "run_get");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, run_id))
        return fail(s, st, "run_get");
    int rc = read_step(s, st, "run_get");
    if (rc == SQLITE_ROW)
        read_run(st, out);
    stmt_done(st);
    return rc == SQLITE_ROW;
}

int64_t store_run_active(store_t *s)
{
    sqlite3_stmt *st = stmt_use(s, ST_RUN_ACTIVE, "run_active");
    if (st == NULL)
        return -1;
    int rc = read_step(s, st, "run_active");
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? 0 : -1;
    stmt_done(st);
    return id;
}

bool store_runs_recent(store_t *s, int limit, store_run_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_RUNS_RECENT, "runs_recent");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, limit))
        return fail(s, st, "runs_recent");
    int rc;
    while ((rc = read_step(s, st, "runs_recent")) == SQLITE_ROW) {
        store_run r;
        read_run(st, &r);
        if (!cb(&r, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

/* ---- steps ----
 * Ownership of store_step.params/output: store_steps_of() malloc's both
 * (output may be NULL) for each row, passes the step to the callback and
 * frees them with store_step_free() when the callback returns, so the
 * pointers are valid only during the callback. A caller that keeps a step
 * copies the struct and strdup()s params/output itself, and releases its
 * copy with store_step_free(). store_step_update() only reads them. */

/* Output is kept to its last STEP_OUTPUT_MAX bytes (cut on a UTF-8
 * boundary). It is stored as given: the executor masks it. */
#define STEP_OUTPUT_MAX (64 * 1024)

bool store_step_update(store_t *s, const store_step *stp)
{
    char error[sizeof stp->error];
    int64_t changed = 0;
    sqlite3_stmt *st = stmt_use(s, ST_STEP_UPDATE, "step_update");
    if (st == NULL)
        return false;
    clean_text(error, sizeof error, stp->error);
    bool ok = bind_i64(st, 1, stp->run_id) && bind_i64(st, 2, stp->idx)
              && bind_text(st, 3, stp->state) && bind_i64(st, 4, stp->attempts)
              && bind_i64(st, 5, stp->started_at) && bind_i64(st, 6, stp->finished_at)
              && bind_i64(st, 7, stp->exit_code) && bind_text(st, 8, error);
    if (ok && stp->output == NULL)
        ok = sqlite3_bind_null(st, 9) == SQLITE_OK;
    else if (ok) {
        const char *out = stp->output;
        size_t len = strlen(out);
        if (len > STEP_OUTPUT_MAX) {
            out += utf8_tail(out, len, STEP_OUTPUT_MAX);
            len = strlen(out);                    /* no half character first */
        }
        char *valid = utf8_valid(out, len) ? NULL : utf8_dup_valid(out, len);
        if (valid != NULL) {
            out = valid;
            len = strlen(valid);
        }
        ok = sqlite3_bind_text(st, 9, out, (int)len, SQLITE_TRANSIENT) == SQLITE_OK;
        free(valid);
    }
    if (!ok)
        return fail(s, st, "step_update");
    if (!write_step(s, st, "step_update", &changed, NULL))
        return false;
    if (changed == 0) {
        log_error("store: step_update: no step %d in run %lld", stp->idx, (long long)stp->run_id);
        return false;
    }
    return true;
}

/* malloc'd copy of a text column; *out NULL for SQL NULL. false if out of memory. */
static bool col_dup(sqlite3_stmt *st, int col, char **out)
{
    *out = NULL;
    const char *v = (const char *)sqlite3_column_text(st, col);
    if (v == NULL)
        return sqlite3_column_type(st, col) == SQLITE_NULL;
    size_t len = strlen(v);
    *out = utf8_valid(v, len) ? strdup(v) : utf8_dup_valid(v, len);
    return *out != NULL;
}

bool store_steps_of(store_t *s, int64_t run_id, store_step_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_STEPS_OF, "steps_of");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, run_id))
        return fail(s, st, "steps_of");
    int rc;
    while ((rc = read_step(s, st, "steps_of")) == SQLITE_ROW) {
        store_step x;
        memset(&x, 0, sizeof x);
        x.run_id = sqlite3_column_int64(st, 0);
        x.idx = sqlite3_column_int(st, 1);
        col_text(st, 2, x.name, sizeof x.name);
        col_text(st, 3, x.action, sizeof x.action);
        col_text(st, 4, x.state, sizeof x.state);
        x.attempts = sqlite3_column_int(st, 5);
        x.started_at = sqlite3_column_int64(st, 6);
        x.finished_at = sqlite3_column_int64(st, 7);
        x.exit_code = sqlite3_column_int(st, 8);
        col_text(st, 9, x.error, sizeof x.error);
        /* params is NOT NULL in the schema; output NULL: none captured */
        if (!col_dup(st, 10, &x.params) || !col_dup(st, 11, &x.output)) {
            log_error("store: steps_of: out of memory");
            store_step_free(&x);
            rc = SQLITE_NOMEM;
            break;
        }
        bool more = cb(&x, arg);
        store_step_free(&x);
        if (!more) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

void store_step_free(store_step *st)
{
    if (st == NULL)
        return;
    free(st->params);
    free(st->output);
    st->params = NULL;
    st->output = NULL;
}

/* ---- approvals ---- */

int64_t store_approval_create(store_t *s, const store_approval *a)
{
    char prompt[sizeof a->prompt];
    int64_t id = 0;
    sqlite3_stmt *st = stmt_use(s, ST_APPROVAL_INSERT, "approval_create");
    if (st == NULL)
        return 0;
    clean_text(prompt, sizeof prompt, a->prompt);
    if (!bind_i64(st, 1, a->run_id) || !bind_i64(st, 2, a->step_idx) || !bind_text(st, 3, a->kind)
        || !bind_text(st, 4, prompt)
        || !bind_i64(st, 5, a->created_at != 0 ? a->created_at : wall_ms())
        || !bind_i64(st, 6, a->expires_at)) {
        fail(s, st, "approval_create");
        return 0;
    }
    return write_step(s, st, "approval_create", NULL, &id) ? id : 0;
}

bool store_approval_decide(store_t *s, int64_t id, const char *state, const char *decided_by,
                           const char *reason, const char *choice, int64_t at)
{
    char why[sizeof ((store_approval *)0)->reason];
    int64_t changed = 0;
    if (state == NULL || strcmp(state, "pending") == 0) {
        log_error("store: approval_decide: \"%s\" is not a decision", state ? state : "(null)");
        return false;
    }
    sqlite3_stmt *st = stmt_use(s, ST_APPROVAL_DECIDE, "approval_decide");
    if (st == NULL)
        return false;
    clean_text(why, sizeof why, reason);
    if (!bind_i64(st, 1, id) || !bind_text(st, 2, state) || !bind_text(st, 3, decided_by)
        || !bind_text(st, 4, why) || !bind_text(st, 5, choice)
        || !bind_i64(st, 6, at != 0 ? at : wall_ms()))
        return fail(s, st, "approval_decide");
    if (!write_step(s, st, "approval_decide", &changed, NULL))
        return false;
    if (changed == 1)
        return true;
    /* Not pending: a normal outcome (decided meanwhile, or a wrong id) that
     * the caller reports; not an error of the store. */
    store_approval cur;
    if (store_approval_get(s, id, &cur))
        log_debug("store: approval %lld is already %s", (long long)id, cur.state);
    else
        log_debug("store: approval %lld: no such approval", (long long)id);
    return false;
}

static void read_approval(sqlite3_stmt *st, store_approval *a)
{
    memset(a, 0, sizeof *a);
    a->id = sqlite3_column_int64(st, 0);
    a->run_id = sqlite3_column_int64(st, 1);
    a->step_idx = sqlite3_column_int(st, 2);
    col_text(st, 3, a->kind, sizeof a->kind);
    col_text(st, 4, a->state, sizeof a->state);
    col_text(st, 5, a->prompt, sizeof a->prompt);
    a->created_at = sqlite3_column_int64(st, 6);
    a->expires_at = sqlite3_column_int64(st, 7);
    a->decided_at = sqlite3_column_int64(st, 8);
    col_text(st, 9, a->decided_by, sizeof a->decided_by);
    col_text(st, 10, a->reason, sizeof a->reason);
    col_text(st, 11, a->choice, sizeof a->choice);
}

bool store_approval_get(store_t *s, int64_t id, store_approval *out)
{
    sqlite3_stmt *st = stmt_use(s, ST_APPROVAL_GET, "approval_get");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, id))
        return fail(s, st, "approval_get");
    int rc = read_step(s, st, "approval_get");
    if (rc == SQLITE_ROW)
        read_approval(st, out);
    stmt_done(st);
    return rc == SQLITE_ROW;
}

static bool list_approvals(store_t *s, sqlite3_stmt *st, const char *what,
                           store_approval_cb cb, void *arg)
{
    int rc;
    while ((rc = read_step(s, st, what)) == SQLITE_ROW) {
        store_approval a;
        read_approval(st, &a);
        if (!cb(&a, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

bool store_approvals_pending(store_t *s, store_approval_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_APPROVALS_PENDING, "approvals_pending");
    if (st == NULL)
        return false;
    return list_approvals(s, st, "approvals_pending", cb, arg);
}

bool store_approvals_of_run(store_t *s, int64_t run_id, store_approval_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_APPROVALS_OF_RUN, "approvals_of_run");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, run_id))
        return fail(s, st, "approvals_of_run");
    return list_approvals(s, st, "approvals_of_run", cb, arg);
}

/* ---- API requests ---- */

bool store_request_put(store_t *s, const store_request *r)
{
    char error[sizeof r->error];
    sqlite3_stmt *st = stmt_use(s, ST_REQUEST_PUT, "request_put");
    if (st == NULL)
        return false;
    clean_text(error, sizeof error, r->error);
    if (!bind_i64(st, 1, r->id) || !bind_text(st, 2, r->kind) || !bind_text(st, 3, r->state)
        || !bind_text(st, 4, r->actor) || !bind_i64(st, 5, r->run_id) || !bind_text(st, 6, error)
        || !bind_i64(st, 7, r->at != 0 ? r->at : wall_ms()))
        return fail(s, st, "request_put");
    return write_step(s, st, "request_put", NULL, NULL);
}

bool store_request_get(store_t *s, int64_t id, store_request *out)
{
    sqlite3_stmt *st = stmt_use(s, ST_REQUEST_GET, "request_get");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, id))
        return fail(s, st, "request_get");
    int rc = read_step(s, st, "request_get");
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->id = sqlite3_column_int64(st, 0);
        col_text(st, 1, out->kind, sizeof out->kind);
        col_text(st, 2, out->state, sizeof out->state);
        col_text(st, 3, out->actor, sizeof out->actor);
        out->run_id = sqlite3_column_int64(st, 4);
        col_text(st, 5, out->error, sizeof out->error);
        out->at = sqlite3_column_int64(st, 6);
    }
    stmt_done(st);
    return rc == SQLITE_ROW;
}

/* ---- webhook notifications (schema v3) ---- */

/* store_notification_add keeps the newest NOTIFICATIONS_KEEP rows (by id):
 * a notification storm cannot grow the table without bound. */
#define NOTIFICATIONS_KEEP 10000

typedef struct {
    const store_notification *n;
    int64_t id;              /* out */
} notification_add_arg;

static bool notification_add_tx(store_t *s, void *argp)
{
    notification_add_arg *a = argp;
    const store_notification *n = a->n;
    char summary[sizeof n->summary], error[sizeof n->error];
    int64_t pruned = 0;
    sqlite3_stmt *st = stmt_use(s, ST_NOTIFICATION_INSERT, "notification_add");
    if (st == NULL)
        return false;
    clean_text(summary, sizeof summary, n->summary);
    clean_text(error, sizeof error, n->error);
    if (!bind_i64(st, 1, n->at != 0 ? n->at : wall_ms()) || !bind_text(st, 2, n->event)
        || !bind_text(st, 3, summary) || !bind_text(st, 4, n->state)
        || !bind_i64(st, 5, n->attempts) || !bind_i64(st, 6, (int64_t)n->http_status)
        || !bind_text(st, 7, error) || !bind_i64(st, 8, n->last_attempt_at))
        return fail(s, st, "notification_add");
    if (!write_step(s, st, "notification_add", NULL, &a->id))
        return false;

    st = stmt_use(s, ST_NOTIFICATIONS_PRUNE, "notification_add: prune");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, a->id - NOTIFICATIONS_KEEP))
        return fail(s, st, "notification_add: prune");
    if (!write_step(s, st, "notification_add: prune", &pruned, NULL))
        return false;
    if (pruned > 0)
        log_debug("store: pruned %lld old notification(s)", (long long)pruned);
    return true;
}

int64_t store_notification_add(store_t *s, const store_notification *n)
{
    if (s == NULL || n == NULL) {
        log_error("store: notification_add: invalid arguments");
        return 0;
    }
    notification_add_arg a = { .n = n, .id = 0 };
    /* insert and prune together: its own transaction, or a savepoint */
    if (!store_tx(s, notification_add_tx, &a))
        return 0;
    return a.id;
}

bool store_notification_update(store_t *s, const store_notification *n)
{
    char error[sizeof n->error];
    int64_t changed = 0;
    sqlite3_stmt *st = stmt_use(s, ST_NOTIFICATION_UPDATE, "notification_update");
    if (st == NULL)
        return false;
    clean_text(error, sizeof error, n->error);
    if (!bind_i64(st, 1, n->id) || !bind_text(st, 2, n->state) || !bind_i64(st, 3, n->attempts)
        || !bind_i64(st, 4, (int64_t)n->http_status) || !bind_text(st, 5, error)
        || !bind_i64(st, 6, n->last_attempt_at))
        return fail(s, st, "notification_update");
    if (!write_step(s, st, "notification_update", &changed, NULL))
        return false;
    if (changed == 0) {
        log_error("store: notification_update: no notification %lld", (long long)n->id);
        return false;
    }
    return true;
}

bool store_notifications_recent(store_t *s, int limit, store_notification_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_NOTIFICATIONS_RECENT, "notifications_recent");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, limit))
        return fail(s, st, "notifications_recent");
    int rc;
    while ((rc = read_step(s, st, "notifications_recent")) == SQLITE_ROW) {
        store_notification n;
        memset(&n, 0, sizeof n);
        n.id = sqlite3_column_int64(st, 0);
        n.at = sqlite3_column_int64(st, 1);
        col_text(st, 2, n.event, sizeof n.event);
        col_text(st, 3, n.summary, sizeof n.summary);
        col_text(st, 4, n.state, sizeof n.state);
        n.attempts = sqlite3_column_int(st, 5);
        n.http_status = (long)sqlite3_column_int64(st, 6);
        col_text(st, 7, n.error, sizeof n.error);
        n.last_attempt_at = sqlite3_column_int64(st, 8);
        if (!cb(&n, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

/* ---- backup refreshes (schema v3) ---- */

int64_t store_refresh_add(store_t *s, const store_refresh *r)
{
    char error[sizeof r->error];
    int64_t id = 0;
    sqlite3_stmt *st = stmt_use(s, ST_REFRESH_INSERT, "refresh_add");
    if (st == NULL)
        return 0;
    clean_text(error, sizeof error, r->error);
    if (!bind_text(st, 1, r->mode) || !bind_text(st, 2, r->trigger) || !bind_text(st, 3, r->state)
        || !bind_i64(st, 4, r->started_at != 0 ? r->started_at : wall_ms())
        || !bind_i64(st, 5, r->finished_at) || !bind_i64(st, 6, r->bytes)
        || !bind_text(st, 7, r->file) || !bind_text(st, 8, error)) {
        fail(s, st, "refresh_add");
        return 0;
    }
    return write_step(s, st, "refresh_add", NULL, &id) ? id : 0;
}

bool store_refresh_update(store_t *s, const store_refresh *r)
{
    char error[sizeof r->error];
    int64_t changed = 0;
    sqlite3_stmt *st = stmt_use(s, ST_REFRESH_UPDATE, "refresh_update");
    if (st == NULL)
        return false;
    clean_text(error, sizeof error, r->error);
    if (!bind_i64(st, 1, r->id) || !bind_text(st, 2, r->state) || !bind_i64(st, 3, r->finished_at)
        || !bind_i64(st, 4, r->bytes) || !bind_text(st, 5, r->file) || !bind_text(st, 6, error))
        return fail(s, st, "refresh_update");
    if (!write_step(s, st, "refresh_update", &changed, NULL))
        return false;
    if (changed == 0) {
        log_error("store: refresh_update: no refresh %lld", (long long)r->id);
        return false;
    }
    return true;
}

static void read_refresh(sqlite3_stmt *st, store_refresh *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, r->mode, sizeof r->mode);
    col_text(st, 2, r->trigger, sizeof r->trigger);
    col_text(st, 3, r->state, sizeof r->state);
    r->started_at = sqlite3_column_int64(st, 4);
    r->finished_at = sqlite3_column_int64(st, 5);
    r->bytes = sqlite3_column_int64(st, 6);
    col_text(st, 7, r->file, sizeof r->file);
    col_text(st, 8, r->error, sizeof r->error);
}

bool store_refreshes_recent(store_t *s, int limit, store_refresh_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_REFRESHES_RECENT, "refreshes_recent");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, limit))
        return fail(s, st, "refreshes_recent");
    int rc;
    while ((rc = read_step(s, st, "refreshes_recent")) == SQLITE_ROW) {
        store_refresh r;
        read_refresh(st, &r);
        if (!cb(&r, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

bool store_refresh_last_good(store_t *s, store_refresh *out)
{
    sqlite3_stmt *st = stmt_use(s, ST_REFRESH_LAST_GOOD, "refresh_last_good");
    if (st == NULL)
        return false;
    int rc = read_step(s, st, "refresh_last_good");
    if (rc == SQLITE_ROW)
        read_refresh(st, out);
    stmt_done(st);
    return rc == SQLITE_ROW;
}

/* ---- readiness checks and drills (schema v4) ---- */

bool store_check_put(store_t *s, const store_check *c)
{
    char reason[sizeof c->reason], fix[sizeof c->fix];
    sqlite3_stmt *st = stmt_use(s, ST_CHECK_PUT, "check_put");
    if (st == NULL)
        return false;
    clean_text(reason, sizeof reason, c->reason);
    clean_text(fix, sizeof fix, c->fix);
    if (!bind_text(st, 1, c->name) || !bind_text(st, 2, c->status) || !bind_text(st, 3, reason)
        || !bind_text(st, 4, fix) || !bind_i64(st, 5, c->checked_at))
        return fail(s, st, "check_put");
    return write_step(s, st, "check_put", NULL, NULL);
}

bool store_checks_prune(store_t *s, int64_t before)
{
    sqlite3_stmt *st = stmt_use(s, ST_CHECK_DELETE_OTHERS, "checks_prune");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, before))
        return fail(s, st, "checks_prune");
    return write_step(s, st, "checks_prune", NULL, NULL);
}

bool store_checks_all(store_t *s, store_check_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_CHECKS_ALL, "checks_all");
    if (st == NULL)
        return false;
    int rc;
    while ((rc = read_step(s, st, "checks_all")) == SQLITE_ROW) {
        store_check c;
        memset(&c, 0, sizeof c);
        col_text(st, 0, c.name, sizeof c.name);
        col_text(st, 1, c.status, sizeof c.status);
        col_text(st, 2, c.reason, sizeof c.reason);
        col_text(st, 3, c.fix, sizeof c.fix);
        c.checked_at = sqlite3_column_int64(st, 4);
        c.since = sqlite3_column_int64(st, 5);
        if (!cb(&c, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

int64_t store_drill_add(store_t *s, const store_drill *d)
{
    int64_t id = 0;
    sqlite3_stmt *st = stmt_use(s, ST_DRILL_INSERT, "drill_add");
    if (st == NULL)
        return 0;
    if (!bind_i64(st, 1, d->started_at) || !bind_i64(st, 2, d->ended_at)
        || !bind_text(st, 3, d->result) || !bind_text(st, 4, d->report ? d->report : "{}")) {
        fail(s, st, "drill_add");
        return 0;
    }
    return write_step(s, st, "drill_add", NULL, &id) ? id : 0;
}

static bool read_drills(store_t *s, sqlite3_stmt *st, const char *what, store_drill_cb cb, void *arg)
{
    int rc;
    while ((rc = read_step(s, st, what)) == SQLITE_ROW) {
        store_drill d;
        memset(&d, 0, sizeof d);
        d.id = sqlite3_column_int64(st, 0);
        d.started_at = sqlite3_column_int64(st, 1);
        d.ended_at = sqlite3_column_int64(st, 2);
        col_text(st, 3, d.result, sizeof d.result);
        d.report = (const char *)sqlite3_column_text(st, 4);
        if (!cb(&d, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    stmt_done(st);
    return rc == SQLITE_DONE;
}

bool store_drills_recent(store_t *s, int limit, store_drill_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_DRILLS_RECENT, "drills_recent");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, limit))
        return fail(s, st, "drills_recent");
    return read_drills(s, st, "drills_recent", cb, arg);
}

bool store_drill_last_good(store_t *s, store_drill_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt_use(s, ST_DRILL_LAST_GOOD, "drill_last_good");
    if (st == NULL)
        return false;
    return read_drills(s, st, "drill_last_good", cb, arg);
}

/* ---- reconcile watermarks and egress (schema v6) ---- */

bool store_watermark_get(store_t *s, const char *name, store_watermark *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = stmt_use(s, ST_WATERMARK_GET, "watermark_get");
    if (st == NULL)
        return false;
    if (!bind_text(st, 1, name))
        return fail(s, st, "watermark_get");
    int rc = read_step(s, st, "watermark_get");
    if (rc == SQLITE_ROW) {
        col_text(st, 0, out->name, sizeof out->name);
        col_text(st, 1, out->watermark, sizeof out->watermark);
        col_text(st, 2, out->full_key, sizeof out->full_key);
        out->full_at = sqlite3_column_int64(st, 3);
        out->updated_at = sqlite3_column_int64(st, 4);
    }
    stmt_done(st);
    return rc == SQLITE_ROW;
}

bool store_watermark_put(store_t *s, const store_watermark *w)
{
    sqlite3_stmt *st = stmt_use(s, ST_WATERMARK_PUT, "watermark_put");
    if (st == NULL)
        return false;
    if (!bind_text(st, 1, w->name) || !bind_text(st, 2, w->watermark) || !bind_text(st, 3, w->full_key)
        || !bind_i64(st, 4, w->full_at) || !bind_i64(st, 5, w->updated_at ? w->updated_at : wall_ms()))
        return fail(s, st, "watermark_put");
    return write_step(s, st, "watermark_put", NULL, NULL);
}

bool store_watermarks_reset(store_t *s)
{
    sqlite3_stmt *st = stmt_use(s, ST_WATERMARKS_RESET, "watermarks_reset");
    return st != NULL && write_step(s, st, "watermarks_reset", NULL, NULL);
}

bool store_egress_add(store_t *s, int64_t at_ms, int64_t bytes)
{
    sqlite3_stmt *st = stmt_use(s, ST_EGRESS_ADD, "egress_add");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, at_ms) || !bind_i64(st, 2, bytes < 0 ? 0 : bytes))
        return fail(s, st, "egress_add");
    return write_step(s, st, "egress_add", NULL, NULL);
}

bool store_egress_sum(store_t *s, int64_t from_ms, int64_t to_ms, int64_t *bytes, int64_t *refreshes)
{
    *bytes = 0;
    if (refreshes != NULL)
        *refreshes = 0;
    sqlite3_stmt *st = stmt_use(s, ST_EGRESS_SUM, "egress_sum");
    if (st == NULL)
        return false;
    if (!bind_i64(st, 1, from_ms) || !bind_i64(st, 2, to_ms))
        return fail(s, st, "egress_sum");
    int rc = read_step(s, st, "egress_sum");
    if (rc == SQLITE_ROW) {
        *bytes = sqlite3_column_int64(st, 0);
        if (refreshes != NULL)
            *refreshes = sqlite3_column_int64(st, 1);
    }
    stmt_done(st);
    return rc == SQLITE_ROW;
}

bool store_refreshes_prune(store_t *s, const char *mode, int keep)
{
    sqlite3_stmt *st = stmt_use(s, ST_REFRESHES_PRUNE, "refreshes_prune");
    if (st == NULL)
        return false;
    if (!bind_text(st, 1, mode) || !bind_i64(st, 2, keep))
        return fail(s, st, "refreshes_prune");
    return write_step(s, st, "refreshes_prune", NULL, NULL);
}
