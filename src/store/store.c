/* store.c - drd's SQLite state (see include/drd/store.h).
 *
 * One connection per store_t. The daemon's read-write connection is the only
 * writer: WAL, synchronous=FULL, every write inside BEGIN IMMEDIATE (its own
 * short transaction, or the one store_tx() holds). Readers open the file
 * read-only and may run while the writer works.
 *
 * Schema: store_migrations[i] takes user_version i to i+1; all pending ones run in
 * one transaction. To add a schema version, append one element to
 * store_migrations[] (and the statements that use it to store_stmt_sql[]).
 *
 * Every SQL statement is prepared once at open (store_stmt_sql[]) and kept until
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
 * functions, not the one that is calling them.
 *
 * The files of the store: see store_int.h. */
#include "store_int.h"

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
void sq_clean_text(char *out, size_t n, const char *in)
{
    mask_secrets(in ? in : "", out, n);
    utf8_fix(out, n);
}

void sq_col_text(sqlite3_stmt *st, int col, char *dst, size_t n)
{
    copy_text(dst, n, (const char *)sqlite3_column_text(st, col));
}

bool sq_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT) == SQLITE_OK;
}

/* NULL binds SQL NULL (for "keep the current value" in updates). */
bool sq_bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL)
        return sqlite3_bind_null(st, i) == SQLITE_OK;
    return sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) == SQLITE_OK;
}

bool sq_bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(st, i, v) == SQLITE_OK;
}

void sq_stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* The prepared statement id, ready for binding; NULL (logged) if unusable. */
sqlite3_stmt *sq_stmt_use(store_t *s, enum stmt_id id, const char *what)
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

bool sq_fail(store_t *s, sqlite3_stmt *st, const char *what)
{
    log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
    if (st != NULL)
        sq_stmt_done(st);
    return false;
}

/* Step a statement that returns no rows (transaction control). */
static bool run_simple(store_t *s, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = sq_stmt_use(s, id, what);
    if (st == NULL)
        return false;
    if (sqlite3_step(st) != SQLITE_DONE)
        return sq_fail(s, st, what);
    sq_stmt_done(st);
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
bool sq_write_step(store_t *s, sqlite3_stmt *st, const char *what,
                   int64_t *changes, int64_t *rowid)
{
    bool own = s->tx_depth == 0;
    if (!own && sqlite3_get_autocommit(s->db)) {
        /* SQLite rolled store_tx's transaction back after an error: do not
         * let the rest of the callback's writes commit one by one. */
        log_error("store: %s: transaction was rolled back by SQLite", what);
        sq_stmt_done(st);
        return false;
    }
    if (own && !run_simple(s, ST_BEGIN, what)) {
        sq_stmt_done(st);
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
    sq_stmt_done(st);
    if (own)
        ok = tx_end(s, ok, what);
    return ok;
}

/* Step a query: SQLITE_ROW, SQLITE_DONE, or another code (logged). */
int sq_read_step(store_t *s, sqlite3_stmt *st, const char *what)
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
        if (sqlite3_exec(s->db, store_migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
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
        if (sqlite3_prepare_v3(s->db, store_stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->st[i], NULL) == SQLITE_OK)
            continue;
        if (!s->readonly) {
            set_err(err, errlen, "database %s: cannot prepare \"%s\": %s",
                    path, store_stmt_sql[i], sqlite3_errmsg(s->db));
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
    sqlite3_stmt *st = sq_stmt_use(s, ST_TARGET_PUT, "target_put");
    if (st == NULL)
        return false;
    sq_clean_text(error, sizeof error, t->last_error);
    if (!sq_bind_text(st, 1, t->name) || !sq_bind_i64(st, 2, t->healthy)
        || !sq_bind_i64(st, 3, t->reachable) || !sq_bind_i64(st, 4, t->in_recovery)
        || !sq_bind_text(st, 5, breaker_state_name(t->breaker)) || !sq_bind_i64(st, 6, t->latency_ms)
        || !sq_bind_text(st, 7, error) || !sq_bind_i64(st, 8, t->last_probe_at)
        || !sq_bind_i64(st, 9, t->breaker_since))
        return sq_fail(s, st, "target_put");
    return sq_write_step(s, st, "target_put", NULL, NULL);
}

bool store_target_get(store_t *s, const char *name, store_target *out)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_TARGET_GET, "target_get");
    if (st == NULL)
        return false;
    if (!sq_bind_text(st, 1, name))
        return sq_fail(s, st, "target_get");
    int rc = sq_read_step(s, st, "target_get");
    if (rc == SQLITE_ROW) {
        char breaker[16];
        memset(out, 0, sizeof *out);
        sq_col_text(st, 0, out->name, sizeof out->name);
        out->healthy = sqlite3_column_int(st, 1) != 0;
        out->reachable = sqlite3_column_int(st, 2) != 0;
        out->in_recovery = sqlite3_column_int(st, 3) != 0;
        sq_col_text(st, 4, breaker, sizeof breaker);
        if (!breaker_state_parse(breaker, &out->breaker)) {
            log_warn("store: target %s has unknown breaker state \"%s\"", out->name, breaker);
            out->breaker = BREAKER_OPEN;
        }
        out->latency_ms = sqlite3_column_int64(st, 5);
        sq_col_text(st, 6, out->last_error, sizeof out->last_error);
        out->last_probe_at = sqlite3_column_int64(st, 7);
        out->breaker_since = sqlite3_column_int64(st, 8);
    }
    sq_stmt_done(st);
    return rc == SQLITE_ROW;
}

/* ---- key/value ---- */

bool store_kv_set(store_t *s, const char *key, const char *value)
{
    sqlite3_stmt *st = sq_stmt_use(s, ST_KV_SET, "kv_set");
    if (st == NULL)
        return false;
    if (!sq_bind_text(st, 1, key) || !sq_bind_text(st, 2, value))
        return sq_fail(s, st, "kv_set");
    return sq_write_step(s, st, "kv_set", NULL, NULL);
}

bool store_kv_get(store_t *s, const char *key, char *out, size_t n)
{
    if (n > 0)
        out[0] = '\0';
    sqlite3_stmt *st = sq_stmt_use(s, ST_KV_GET, "kv_get");
    if (st == NULL)
        return false;
    if (!sq_bind_text(st, 1, key))
        return sq_fail(s, st, "kv_get");
    int rc = sq_read_step(s, st, "kv_get");
    if (rc == SQLITE_ROW)
        sq_col_text(st, 0, out, n);
    sq_stmt_done(st);
    return rc == SQLITE_ROW;
}

/* The kv keys below are this file's alone: the rest of drd goes through
 * the typed functions (store.h). */
#define FENCE_PENDING_KEY "fence_pending"
#define FENCED_KEY "fenced"
#define SYNC_RESOLUTION_KEY "sync_resolution"
#define DIFFERENCE_KEY "backup_difference"

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

/* "rows found at by" */
bool store_difference_get(store_t *s, store_difference *out)
{
    char v[128], by[16] = "";
    long long rows, found, at;
    memset(out, 0, sizeof *out);
    if (!store_kv_get(s, DIFFERENCE_KEY, v, sizeof v) ||
        sscanf(v, "%lld %lld %lld %15s", &rows, &found, &at, by) != 4)
        return false;
    out->rows = rows;
    out->found = found;
    out->at = at;
    str_copy(out->by, by, sizeof out->by);
    return true;
}

bool store_difference_set(store_t *s, const store_difference *d)
{
    char v[128];
    snprintf(v, sizeof v, "%lld %lld %lld %s", (long long)d->rows, (long long)d->found,
             (long long)d->at, d->by[0] ? d->by : "?");
    return store_kv_set(s, DIFFERENCE_KEY, v);
}
