/* store_runs.c - runbook runs, their steps and approvals, and the API
 * requests that started them. */
#include "store_int.h"

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
    sqlite3_stmt *st = sq_stmt_use(s, ST_STEP_INSERT, "run_create");
    if (st == NULL)
        return false;
    /* Kept as expanded: a resumed run must do exactly what it started with,
     * secrets included (the file is mode 0600). Whoever shows params masks
     * them; the API shows none. */
    char *json = strdup(params != NULL ? params : "{}");
    if (json == NULL) {
        log_error("store: run_create: out of memory");
        sq_stmt_done(st);
        return false;
    }
    bool ok = sq_bind_i64(st, 1, run_id) && sq_bind_i64(st, 2, idx) && sq_bind_text(st, 3, name)
              && sq_bind_text(st, 4, action) && sq_bind_text(st, 5, json);
    free(json);
    /* SQLite's constraint messages do not say which step */
    char what[128];
    snprintf(what, sizeof what, "run_create: step %d \"%s\" (action \"%s\")",
             idx, name ? name : "", action ? action : "");
    if (!ok)
        return sq_fail(s, st, what);
    return sq_write_step(s, st, what, NULL, NULL);
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

    sqlite3_stmt *st = sq_stmt_use(s, ST_RUN_INSERT, "run_create");
    if (st == NULL)
        return false;
    sq_clean_text(reason, sizeof reason, r->reason);
    if (!sq_bind_text(st, 1, r->kind) || !sq_bind_text(st, 2, reason) || !sq_bind_text(st, 3, r->started_by)
        || !sq_bind_i64(st, 4, r->request_id) || !sq_bind_i64(st, 5, r->incident_id)
        || !sq_bind_i64(st, 6, r->created_at != 0 ? r->created_at : wall_ms())
        || !sq_bind_text(st, 7, r->runbook))
        return sq_fail(s, st, "run_create");
    if (!sq_write_step(s, st, "run_create", NULL, &a->id))
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
    sqlite3_stmt *st = sq_stmt_use(s, ST_RUN_UPDATE, "run_update");
    if (st == NULL)
        return false;
    if (error != NULL)
        sq_clean_text(why, sizeof why, error);
    if (!sq_bind_i64(st, 1, run_id) || !sq_bind_text_or_null(st, 2, state)
        || !sq_bind_i64(st, 3, current_step) || !sq_bind_text_or_null(st, 4, error ? why : NULL)
        || !sq_bind_i64(st, 5, finished_at))
        return sq_fail(s, st, "run_update");
    if (!sq_write_step(s, st, "run_update", &changed, NULL))
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
    sq_col_text(st, 1, r->kind, sizeof r->kind);
    sq_col_text(st, 2, r->state, sizeof r->state);
    sq_col_text(st, 3, r->reason, sizeof r->reason);
    sq_col_text(st, 4, r->started_by, sizeof r->started_by);
    r->request_id = sqlite3_column_int64(st, 5);
    r->incident_id = sqlite3_column_int64(st, 6);
    r->created_at = sqlite3_column_int64(st, 7);
    r->finished_at = sqlite3_column_int64(st, 8);
    r->current_step = sqlite3_column_int(st, 9);
    sq_col_text(st, 10, r->runbook, sizeof r->runbook);
    sq_col_text(st, 11, r->error, sizeof r->error);
}

bool store_run_get(store_t *s, int64_t run_id, store_run *out)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_RUN_GET, "run_get");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, run_id))
        return sq_fail(s, st, "run_get");
    int rc = sq_read_step(s, st, "run_get");
    if (rc == SQLITE_ROW)
        read_run(st, out);
    sq_stmt_done(st);
    return rc == SQLITE_ROW;
}

int64_t store_run_active(store_t *s)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_RUN_ACTIVE, "run_active");
    if (st == NULL)
        return -1;
    int rc = sq_read_step(s, st, "run_active");
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? 0 : -1;
    sq_stmt_done(st);
    return id;
}

bool store_runs_recent(store_t *s, int limit, store_run_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_RUNS_RECENT, "runs_recent");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, limit))
        return sq_fail(s, st, "runs_recent");
    int rc;
    while ((rc = sq_read_step(s, st, "runs_recent")) == SQLITE_ROW) {
        store_run r;
        read_run(st, &r);
        if (!cb(&r, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sq_stmt_done(st);
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
    sqlite3_stmt *st = sq_stmt_use(s, ST_STEP_UPDATE, "step_update");
    if (st == NULL)
        return false;
    sq_clean_text(error, sizeof error, stp->error);
    bool ok = sq_bind_i64(st, 1, stp->run_id) && sq_bind_i64(st, 2, stp->idx)
              && sq_bind_text(st, 3, stp->state) && sq_bind_i64(st, 4, stp->attempts)
              && sq_bind_i64(st, 5, stp->started_at) && sq_bind_i64(st, 6, stp->finished_at)
              && sq_bind_i64(st, 7, stp->exit_code) && sq_bind_text(st, 8, error);
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
        return sq_fail(s, st, "step_update");
    if (!sq_write_step(s, st, "step_update", &changed, NULL))
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
    sqlite3_stmt *st = sq_stmt_use(s, ST_STEPS_OF, "steps_of");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, run_id))
        return sq_fail(s, st, "steps_of");
    int rc;
    while ((rc = sq_read_step(s, st, "steps_of")) == SQLITE_ROW) {
        store_step x;
        memset(&x, 0, sizeof x);
        x.run_id = sqlite3_column_int64(st, 0);
        x.idx = sqlite3_column_int(st, 1);
        sq_col_text(st, 2, x.name, sizeof x.name);
        sq_col_text(st, 3, x.action, sizeof x.action);
        sq_col_text(st, 4, x.state, sizeof x.state);
        x.attempts = sqlite3_column_int(st, 5);
        x.started_at = sqlite3_column_int64(st, 6);
        x.finished_at = sqlite3_column_int64(st, 7);
        x.exit_code = sqlite3_column_int(st, 8);
        sq_col_text(st, 9, x.error, sizeof x.error);
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
    sq_stmt_done(st);
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
    sqlite3_stmt *st = sq_stmt_use(s, ST_APPROVAL_INSERT, "approval_create");
    if (st == NULL)
        return 0;
    sq_clean_text(prompt, sizeof prompt, a->prompt);
    if (!sq_bind_i64(st, 1, a->run_id) || !sq_bind_i64(st, 2, a->step_idx) || !sq_bind_text(st, 3, a->kind)
        || !sq_bind_text(st, 4, prompt)
        || !sq_bind_i64(st, 5, a->created_at != 0 ? a->created_at : wall_ms())
        || !sq_bind_i64(st, 6, a->expires_at)) {
        sq_fail(s, st, "approval_create");
        return 0;
    }
    return sq_write_step(s, st, "approval_create", NULL, &id) ? id : 0;
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
    sqlite3_stmt *st = sq_stmt_use(s, ST_APPROVAL_DECIDE, "approval_decide");
    if (st == NULL)
        return false;
    sq_clean_text(why, sizeof why, reason);
    if (!sq_bind_i64(st, 1, id) || !sq_bind_text(st, 2, state) || !sq_bind_text(st, 3, decided_by)
        || !sq_bind_text(st, 4, why) || !sq_bind_text(st, 5, choice)
        || !sq_bind_i64(st, 6, at != 0 ? at : wall_ms()))
        return sq_fail(s, st, "approval_decide");
    if (!sq_write_step(s, st, "approval_decide", &changed, NULL))
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
    sq_col_text(st, 3, a->kind, sizeof a->kind);
    sq_col_text(st, 4, a->state, sizeof a->state);
    sq_col_text(st, 5, a->prompt, sizeof a->prompt);
    a->created_at = sqlite3_column_int64(st, 6);
    a->expires_at = sqlite3_column_int64(st, 7);
    a->decided_at = sqlite3_column_int64(st, 8);
    sq_col_text(st, 9, a->decided_by, sizeof a->decided_by);
    sq_col_text(st, 10, a->reason, sizeof a->reason);
    sq_col_text(st, 11, a->choice, sizeof a->choice);
}

bool store_approval_get(store_t *s, int64_t id, store_approval *out)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_APPROVAL_GET, "approval_get");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, id))
        return sq_fail(s, st, "approval_get");
    int rc = sq_read_step(s, st, "approval_get");
    if (rc == SQLITE_ROW)
        read_approval(st, out);
    sq_stmt_done(st);
    return rc == SQLITE_ROW;
}

static bool list_approvals(store_t *s, sqlite3_stmt *st, const char *what,
                           store_approval_cb cb, void *arg)
{
    int rc;
    while ((rc = sq_read_step(s, st, what)) == SQLITE_ROW) {
        store_approval a;
        read_approval(st, &a);
        if (!cb(&a, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sq_stmt_done(st);
    return rc == SQLITE_DONE;
}

bool store_approvals_pending(store_t *s, store_approval_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_APPROVALS_PENDING, "approvals_pending");
    if (st == NULL)
        return false;
    return list_approvals(s, st, "approvals_pending", cb, arg);
}

bool store_approvals_of_run(store_t *s, int64_t run_id, store_approval_cb cb, void *arg)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_APPROVALS_OF_RUN, "approvals_of_run");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, run_id))
        return sq_fail(s, st, "approvals_of_run");
    return list_approvals(s, st, "approvals_of_run", cb, arg);
}

/* ---- API requests ---- */

bool store_request_put(store_t *s, const store_request *r)
{
    char error[sizeof r->error];
    sqlite3_stmt *st = sq_stmt_use(s, ST_REQUEST_PUT, "request_put");
    if (st == NULL)
        return false;
    sq_clean_text(error, sizeof error, r->error);
    if (!sq_bind_i64(st, 1, r->id) || !sq_bind_text(st, 2, r->kind) || !sq_bind_text(st, 3, r->state)
        || !sq_bind_text(st, 4, r->actor) || !sq_bind_i64(st, 5, r->run_id) || !sq_bind_text(st, 6, error)
        || !sq_bind_i64(st, 7, r->at != 0 ? r->at : wall_ms()))
        return sq_fail(s, st, "request_put");
    return sq_write_step(s, st, "request_put", NULL, NULL);
}

bool store_request_get(store_t *s, int64_t id, store_request *out)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_REQUEST_GET, "request_get");
    if (st == NULL)
        return false;
    if (!sq_bind_i64(st, 1, id))
        return sq_fail(s, st, "request_get");
    int rc = sq_read_step(s, st, "request_get");
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->id = sqlite3_column_int64(st, 0);
        sq_col_text(st, 1, out->kind, sizeof out->kind);
        sq_col_text(st, 2, out->state, sizeof out->state);
        sq_col_text(st, 3, out->actor, sizeof out->actor);
        out->run_id = sqlite3_column_int64(st, 4);
        sq_col_text(st, 5, out->error, sizeof out->error);
        out->at = sqlite3_column_int64(st, 6);
    }
    sq_stmt_done(st);
    return rc == SQLITE_ROW;
}
