/* store_schema.c - the state database's schema: the migrations (one per
 * user_version) and the text of every prepared statement (see store.c). */
#include "store_int.h"

/* ---- schema ---- */

const char *const store_migrations[] = {
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
    return (int)ARRAY_LEN(store_migrations);
}

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

const char *const store_stmt_sql[ST_COUNT] = {
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
