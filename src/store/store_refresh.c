/* store_refresh.c - backup refreshes, readiness checks and drills. */
#include "store_int.h"

/* ---- backup refreshes (schema v3) ---- */

int64_t store_refresh_add(store_t *s, const store_refresh *r)
{
    char error[sizeof r->error];
    int64_t id = 0;
    sqlite3_stmt *st = sq_stmt_use(s, ST_REFRESH_INSERT, "refresh_add");
    if (st == NULL)
        return 0;
    sq_clean_text(error, sizeof error, r->error);
    if (!sq_bind_text(st, 1, r->mode) || !sq_bind_text(st, 2, r->trigger) || !sq_bind_text(st, 3, r->state)
        || !sq_bind_i64(st, 4, r->started_at != 0 ? r->started_at : wall_ms())
        || !sq_bind_i64(st, 5, r->finished_at) || !sq_bind_i64(st, 6, r->bytes)
        || !sq_bind_text(st, 7, r->file) || !sq_bind_text(st, 8, error)) {
        sq_fail(s, st, "refresh_add");
        return 0;
    }
    return sq_write_step(s, st, "refresh_add", NULL, &id) ? id : 0;
}

bool store_refresh_update(store_t *s, const store_refresh *r)
{
    char error[sizeof r->error];
    int64_t changed = 0;
    sqlite3_stmt *st = sq_stmt_use(s, ST_REFRESH_UPDATE, "refresh_update");
    if (st == NULL)
        return false;
    sq_clean_text(error, sizeof error, r->error);
    if (!sq_bind_i64(st, 1, r->id) || !sq_bind_text(st, 2, r->state) || !sq_bind_i64(st, 3, r->finished_at)
        || !sq_bind_i64(st, 4, r->bytes) || !sq_bind_text(st, 5, r->file) || !sq_bind_text(st, 6, error))
        return sq_fail(s, st, "refresh_update");
    if (!sq_write_step(s, st, "refresh_update", &changed, NULL))
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
    sq_col_text(st, 1, r->mode, sizeof r->mode);
    sq_col_text(st, 2, r->trigger, sizeof r->trigger);
    sq_col_text(st, 3, r->state, sizeof r->state);
    r->started_at = sqlite3_column_int64(st, 4);
    r->finished_at = sqlite3_column_int64(st, 5);
    r->bytes = sqlite3_column_int64(st, 6);
    sq_col_text(st, 7, r->file, sizeof r->file);
    sq_col_text(st, 8, r->error, sizeof r->error);
}

bool store_refreshes_recent(store_t *s, int limit, store_refresh_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_REFRESHES_RECENT, "refreshes_recent");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, limit))
        return sq_fail(s, st, "refreshes_recent");
    int rc;
    while ((rc = sq_read_step(s, st, "refreshes_recent")) == SQLITE_ROW) {
        store_refresh r;
        read_refresh(st, &r);
        if (!cb(&r, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sq_stmt_done(st);
    return rc == SQLITE_DONE;
}

bool store_refresh_last_good(store_t *s, store_refresh *out)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_REFRESH_LAST_GOOD, "refresh_last_good");
    if (st == NULL)
        return false;
    int rc = sq_read_step(s, st, "refresh_last_good");
    if (rc == SQLITE_ROW)
        read_refresh(st, out);
    sq_stmt_done(st);
    return rc == SQLITE_ROW;
}

/* ---- readiness checks and drills (schema v4) ---- */

bool store_check_put(store_t *s, const store_check *c)
{
    char reason[sizeof c->reason], fix[sizeof c->fix];
    sqlite3_stmt *st = sq_stmt_use(s, ST_CHECK_PUT, "check_put");
    if (st == NULL)
        return false;
    sq_clean_text(reason, sizeof reason, c->reason);
    sq_clean_text(fix, sizeof fix, c->fix);
    if (!sq_bind_text(st, 1, c->name) || !sq_bind_text(st, 2, c->status) || !sq_bind_text(st, 3, reason)
        || !sq_bind_text(st, 4, fix) || !sq_bind_i64(st, 5, c->checked_at))
        return sq_fail(s, st, "check_put");
    return sq_write_step(s, st, "check_put", NULL, NULL);
}

bool store_checks_prune(store_t *s, int64_t before)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_CHECK_DELETE_OTHERS, "checks_prune");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, before))
        return sq_fail(s, st, "checks_prune");
    return sq_write_step(s, st, "checks_prune", NULL, NULL);
}

bool store_checks_all(store_t *s, store_check_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_CHECKS_ALL, "checks_all");
    if (st == NULL)
        return false;
    int rc;
    while ((rc = sq_read_step(s, st, "checks_all")) == SQLITE_ROW) {
        store_check c;
        memset(&c, 0, sizeof c);
        sq_col_text(st, 0, c.name, sizeof c.name);
        sq_col_text(st, 1, c.status, sizeof c.status);
        sq_col_text(st, 2, c.reason, sizeof c.reason);
        sq_col_text(st, 3, c.fix, sizeof c.fix);
        c.checked_at = sqlite3_column_int64(st, 4);
        c.since = sqlite3_column_int64(st, 5);
        if (!cb(&c, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sq_stmt_done(st);
    return rc == SQLITE_DONE;
}

int64_t store_drill_add(store_t *s, const store_drill *d)
{
    int64_t id = 0;
    sqlite3_stmt *st = sq_stmt_use(s, ST_DRILL_INSERT, "drill_add");
    if (st == NULL)
        return 0;
    if (!sq_bind_i64(st, 1, d->started_at) || !sq_bind_i64(st, 2, d->ended_at)
        || !sq_bind_text(st, 3, d->result) || !sq_bind_text(st, 4, d->report ? d->report : "{}")) {
        sq_fail(s, st, "drill_add");
        return 0;
    }
    return sq_write_step(s, st, "drill_add", NULL, &id) ? id : 0;
}

static bool read_drills(store_t *s, sqlite3_stmt *st, const char *what, store_drill_cb cb, void *arg)
{
    int rc;
    while ((rc = sq_read_step(s, st, what)) == SQLITE_ROW) {
        store_drill d;
        memset(&d, 0, sizeof d);
        d.id = sqlite3_column_int64(st, 0);
        d.started_at = sqlite3_column_int64(st, 1);
        d.ended_at = sqlite3_column_int64(st, 2);
        sq_col_text(st, 3, d.result, sizeof d.result);
        d.report = (const char *)sqlite3_column_text(st, 4);
        if (!cb(&d, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sq_stmt_done(st);
    return rc == SQLITE_DONE;
}

bool store_drills_recent(store_t *s, int limit, store_drill_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_DRILLS_RECENT, "drills_recent");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, limit))
        return sq_fail(s, st, "drills_recent");
    return read_drills(s, st, "drills_recent", cb, arg);
}

bool store_drill_last_good(store_t *s, store_drill_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_DRILL_LAST_GOOD, "drill_last_good");
    if (st == NULL)
        return false;
    return read_drills(s, st, "drill_last_good", cb, arg);
}

/* ---- reconcile watermarks and egress (schema v6) ---- */

bool store_watermark_get(store_t *s, const char *name, store_watermark *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = sq_stmt_use(s, ST_WATERMARK_GET, "watermark_get");
    if (st == NULL)
        return false;
    if (!sq_bind_text(st, 1, name))
        return sq_fail(s, st, "watermark_get");
    int rc = sq_read_step(s, st, "watermark_get");
    if (rc == SQLITE_ROW) {
        sq_col_text(st, 0, out->name, sizeof out->name);
        sq_col_text(st, 1, out->watermark, sizeof out->watermark);
        sq_col_text(st, 2, out->full_key, sizeof out->full_key);
        out->full_at = sqlite3_column_int64(st, 3);
        out->updated_at = sqlite3_column_int64(st, 4);
    }
    sq_stmt_done(st);
    return rc == SQLITE_ROW;
}

bool store_watermark_put(store_t *s, const store_watermark *w)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_WATERMARK_PUT, "watermark_put");
    if (st == NULL)
        return false;
    if (!sq_bind_text(st, 1, w->name) || !sq_bind_text(st, 2, w->watermark) || !sq_bind_text(st, 3, w->full_key)
        || !sq_bind_i64(st, 4, w->full_at) || !sq_bind_i64(st, 5, w->updated_at ? w->updated_at : wall_ms()))
        return sq_fail(s, st, "watermark_put");
    return sq_write_step(s, st, "watermark_put", NULL, NULL);
}

bool store_watermarks_reset(store_t *s)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_WATERMARKS_RESET, "watermarks_reset");
    return st != NULL && sq_write_step(s, st, "watermarks_reset", NULL, NULL);
}

bool store_egress_add(store_t *s, int64_t at_ms, int64_t bytes)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_EGRESS_ADD, "egress_add");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, at_ms) || !sq_bind_i64(st, 2, bytes < 0 ? 0 : bytes))
        return sq_fail(s, st, "egress_add");
    return sq_write_step(s, st, "egress_add", NULL, NULL);
}

bool store_egress_sum(store_t *s, int64_t from_ms, int64_t to_ms, int64_t *bytes, int64_t *refreshes)
{
    *bytes = 0;
    if (refreshes != NULL)
        *refreshes = 0;
    sqlite3_stmt *st = sq_stmt_use(s, ST_EGRESS_SUM, "egress_sum");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, from_ms) || !sq_bind_i64(st, 2, to_ms))
        return sq_fail(s, st, "egress_sum");
    int rc = sq_read_step(s, st, "egress_sum");
    if (rc == SQLITE_ROW) {
        *bytes = sqlite3_column_int64(st, 0);
        if (refreshes != NULL)
            *refreshes = sqlite3_column_int64(st, 1);
    }
    sq_stmt_done(st);
    return rc == SQLITE_ROW;
}

bool store_refreshes_prune(store_t *s, const char *mode, int keep)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_REFRESHES_PRUNE, "refreshes_prune");
    if (st == NULL)
        return false;
    if (!sq_bind_text(st, 1, mode) || !sq_bind_i64(st, 2, keep))
        return sq_fail(s, st, "refreshes_prune");
    return sq_write_step(s, st, "refreshes_prune", NULL, NULL);
}
