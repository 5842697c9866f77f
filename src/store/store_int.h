/* store_int.h - what the files of the store share (not a contract with
 * other modules; see include/drd/store/store.h for that).
 *
 *   store.c          open/close, transactions, statement helpers, targets,
 *                    key/value
 *   store_schema.c   migrations and the prepared statements' SQL
 *   store_events.c   probe statistics, events, incidents, notifications
 *   store_runs.c     runs, steps, approvals, API requests
 *   store_refresh.c  refreshes, readiness checks, drills
 */
#ifndef DRD_STORE_INT_H
#define DRD_STORE_INT_H

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

/* ---- prepared statements (SQL in store_schema.c) ---- */

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

extern const char *const store_migrations[];
extern const char *const store_stmt_sql[ST_COUNT];

struct store {
    sqlite3 *db;
    bool readonly;
    int version;             /* user_version seen at open */
    int tx_depth;            /* store_tx nesting: 0 = no transaction held */
    sqlite3_stmt *st[ST_COUNT];
};

/* ---- statement helpers (store.c) ---- */

void sq_clean_text(char *out, size_t n, const char *in);
void sq_col_text(sqlite3_stmt *st, int col, char *dst, size_t n);
bool sq_bind_text(sqlite3_stmt *st, int i, const char *v);
bool sq_bind_text_or_null(sqlite3_stmt *st, int i, const char *v);
bool sq_bind_i64(sqlite3_stmt *st, int i, int64_t v);
void sq_stmt_done(sqlite3_stmt *st);
sqlite3_stmt *sq_stmt_use(store_t *s, enum stmt_id id, const char *what);
bool sq_fail(store_t *s, sqlite3_stmt *st, const char *what);
bool sq_write_step(store_t *s, sqlite3_stmt *st, const char *what,
                int64_t *changes, int64_t *rowid);
int sq_read_step(store_t *s, sqlite3_stmt *st, const char *what);


#endif
