/* store_events.c - what happened: probe statistics, events, incidents and
 * webhook notifications. */
#include "store_int.h"

/* ---- probe statistics ---- */

bool store_probe_minute_add(store_t *s, const store_probe_minute *m)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_PROBE_ADD, "probe_minute_add");
    if (st == NULL)
        return false;
    if (!sq_bind_text(st, 1, m->target) || !sq_bind_i64(st, 2, m->minute)
        || !sq_bind_i64(st, 3, m->probes) || !sq_bind_i64(st, 4, m->failures)
        || !sq_bind_i64(st, 5, m->latency_sum_ms) || !sq_bind_i64(st, 6, m->latency_max_ms))
        return sq_fail(s, st, "probe_minute_add");
    return sq_write_step(s, st, "probe_minute_add", NULL, NULL);
}

int64_t store_probe_prune(store_t *s, int64_t before)
{
    int64_t deleted = 0;
    sqlite3_stmt *st = sq_stmt_use(s, ST_PROBE_PRUNE, "probe_prune");
    if (st == NULL)
        return -1;
    /* Minute m covers [m, m+1) * 60000: it is older than `before` when it
     * ended by then, i.e. m < floor(before / 60000). */
    if (!sq_bind_i64(st, 1, before > 0 ? before / 60000 : 0)) {
        sq_fail(s, st, "probe_prune");
        return -1;
    }
    return sq_write_step(s, st, "probe_prune", &deleted, NULL) ? deleted : -1;
}

bool store_probe_minutes(store_t *s, const char *target, int64_t since_minute,
                         store_probe_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_PROBE_LIST, "probe_minutes");
    if (st == NULL)
        return false;
    if (!sq_bind_text(st, 1, target) || !sq_bind_i64(st, 2, since_minute))
        return sq_fail(s, st, "probe_minutes");
    int rc;
    while ((rc = sq_read_step(s, st, "probe_minutes")) == SQLITE_ROW) {
        store_probe_minute m;
        memset(&m, 0, sizeof m);
        sq_col_text(st, 0, m.target, sizeof m.target);
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
    sq_stmt_done(st);
    return rc == SQLITE_DONE;
}

/* ---- events ---- */

int64_t store_event_add(store_t *s, int64_t at, const char *kind,
                        const char *target, const char *message)
{
    char msg[sizeof ((store_event *)0)->message];
    int64_t id = 0;
    sqlite3_stmt *st = sq_stmt_use(s, ST_EVENT_ADD, "event_add");
    if (st == NULL)
        return 0;
    sq_clean_text(msg, sizeof msg, message);
    if (!sq_bind_i64(st, 1, at) || !sq_bind_text(st, 2, kind) || !sq_bind_text(st, 3, target)
        || !sq_bind_text(st, 4, msg)) {
        sq_fail(s, st, "event_add");
        return 0;
    }
    return sq_write_step(s, st, "event_add", NULL, &id) ? id : 0;
}

static bool list_events(store_t *s, sqlite3_stmt *st, const char *what,
                        store_event_cb cb, void *arg)
{
    int rc;
    while ((rc = sq_read_step(s, st, what)) == SQLITE_ROW) {
        store_event e;
        memset(&e, 0, sizeof e);
        e.id = sqlite3_column_int64(st, 0);
        e.at = sqlite3_column_int64(st, 1);
        sq_col_text(st, 2, e.kind, sizeof e.kind);
        sq_col_text(st, 3, e.target, sizeof e.target);
        sq_col_text(st, 4, e.message, sizeof e.message);
        if (!cb(&e, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sq_stmt_done(st);
    return rc == SQLITE_DONE;
}

bool store_events_since(store_t *s, int64_t since_id, int limit,
                        store_event_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_EVENTS_SINCE, "events_since");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, since_id) || !sq_bind_i64(st, 2, limit))
        return sq_fail(s, st, "events_since");
    return list_events(s, st, "events_since", cb, arg);
}

bool store_events_recent(store_t *s, int limit, store_event_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_EVENTS_RECENT, "events_recent");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, limit))
        return sq_fail(s, st, "events_recent");
    return list_events(s, st, "events_recent", cb, arg);
}

/* ---- incidents ---- */

int64_t store_incident_open(store_t *s, const char *target, int64_t at, const char *reason)
{
    char why[sizeof ((store_incident *)0)->reason];
    int64_t id = 0;
    sqlite3_stmt *st = sq_stmt_use(s, ST_INCIDENT_OPEN, "incident_open");
    if (st == NULL)
        return 0;
    sq_clean_text(why, sizeof why, reason);
    if (!sq_bind_text(st, 1, target) || !sq_bind_i64(st, 2, at) || !sq_bind_text(st, 3, why)) {
        sq_fail(s, st, "incident_open");
        return 0;
    }
    return sq_write_step(s, st, "incident_open", NULL, &id) ? id : 0;
}

bool store_incident_close(store_t *s, int64_t id, int64_t at)
{
    int64_t changed = 0;
    sqlite3_stmt *st = sq_stmt_use(s, ST_INCIDENT_CLOSE, "incident_close");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, id) || !sq_bind_i64(st, 2, at))
        return sq_fail(s, st, "incident_close");
    if (!sq_write_step(s, st, "incident_close", &changed, NULL))
        return false;
    if (changed == 0) {
        log_error("store: incident_close: no incident %lld", (long long)id);
        return false;
    }
    return true;
}

int64_t store_incident_find_open(store_t *s, const char *target)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_INCIDENT_FIND_OPEN, "incident_find_open");
    if (st == NULL)
        return -1;
    if (!sq_bind_text(st, 1, target)) {
        sq_fail(s, st, "incident_find_open");
        return -1;
    }
    int rc = sq_read_step(s, st, "incident_find_open");
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? 0 : -1;
    sq_stmt_done(st);
    return id;
}

bool store_incidents_recent(store_t *s, int limit, store_incident_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_INCIDENTS_RECENT, "incidents_recent");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, limit))
        return sq_fail(s, st, "incidents_recent");
    int rc;
    while ((rc = sq_read_step(s, st, "incidents_recent")) == SQLITE_ROW) {
        store_incident i;
        memset(&i, 0, sizeof i);
        i.id = sqlite3_column_int64(st, 0);
        sq_col_text(st, 1, i.target, sizeof i.target);
        i.started_at = sqlite3_column_int64(st, 2);
        i.ended_at = sqlite3_column_int64(st, 3);
        sq_col_text(st, 4, i.reason, sizeof i.reason);
        if (!cb(&i, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sq_stmt_done(st);
    return rc == SQLITE_DONE;
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
    sqlite3_stmt *st = sq_stmt_use(s, ST_NOTIFICATION_INSERT, "notification_add");
    if (st == NULL)
        return false;
    sq_clean_text(summary, sizeof summary, n->summary);
    sq_clean_text(error, sizeof error, n->error);
    if (!sq_bind_i64(st, 1, n->at != 0 ? n->at : wall_ms()) || !sq_bind_text(st, 2, n->event)
        || !sq_bind_text(st, 3, summary) || !sq_bind_text(st, 4, n->state)
        || !sq_bind_i64(st, 5, n->attempts) || !sq_bind_i64(st, 6, (int64_t)n->http_status)
        || !sq_bind_text(st, 7, error) || !sq_bind_i64(st, 8, n->last_attempt_at))
        return sq_fail(s, st, "notification_add");
    if (!sq_write_step(s, st, "notification_add", NULL, &a->id))
        return false;

    st = sq_stmt_use(s, ST_NOTIFICATIONS_PRUNE, "notification_add: prune");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, a->id - NOTIFICATIONS_KEEP))
        return sq_fail(s, st, "notification_add: prune");
    if (!sq_write_step(s, st, "notification_add: prune", &pruned, NULL))
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
    sqlite3_stmt *st = sq_stmt_use(s, ST_NOTIFICATION_UPDATE, "notification_update");
    if (st == NULL)
        return false;
    sq_clean_text(error, sizeof error, n->error);
    if (!sq_bind_i64(st, 1, n->id) || !sq_bind_text(st, 2, n->state) || !sq_bind_i64(st, 3, n->attempts)
        || !sq_bind_i64(st, 4, (int64_t)n->http_status) || !sq_bind_text(st, 5, error)
        || !sq_bind_i64(st, 6, n->last_attempt_at))
        return sq_fail(s, st, "notification_update");
    if (!sq_write_step(s, st, "notification_update", &changed, NULL))
        return false;
    if (changed == 0) {
        log_error("store: notification_update: no notification %lld", (long long)n->id);
        return false;
    }
    return true;
}

bool store_notifications_recent(store_t *s, int limit, store_notification_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_NOTIFICATIONS_RECENT, "notifications_recent");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, limit))
        return sq_fail(s, st, "notifications_recent");
    int rc;
    while ((rc = sq_read_step(s, st, "notifications_recent")) == SQLITE_ROW) {
        store_notification n;
        memset(&n, 0, sizeof n);
        n.id = sqlite3_column_int64(st, 0);
        n.at = sqlite3_column_int64(st, 1);
        sq_col_text(st, 2, n.event, sizeof n.event);
        sq_col_text(st, 3, n.summary, sizeof n.summary);
        sq_col_text(st, 4, n.state, sizeof n.state);
        n.attempts = sqlite3_column_int(st, 5);
        n.http_status = (long)sqlite3_column_int64(st, 6);
        sq_col_text(st, 7, n.error, sizeof n.error);
        n.last_attempt_at = sqlite3_column_int64(st, 8);
        if (!cb(&n, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sq_stmt_done(st);
    return rc == SQLITE_DONE;
}
