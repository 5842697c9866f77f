/* store: schema and migrations, every query, transactions, read-only
 * handles next to a writer. Each test works in its own temp directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "drd/core/log.h"
#include "drd/store/store.h"
#include "drd/core/util.h"

typedef struct {
    char dir[64];
    char path[PATH_MAX];     /* dir/state/drd.db: the state dir does not exist yet */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    str_copy(f->dir, "/tmp/drd-test-store-XXXXXX", sizeof f->dir);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/state/drd.db", f->dir);
    *state = f;
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static store_t *open_rw(const fixture *f)
{
    char err[256] = "";
    store_t *s = store_open(f->path, err, sizeof err);
    if (s == NULL)
        fail_msg("store_open: %s", err);
    return s;
}

static store_t *open_ro(const fixture *f)
{
    char err[256] = "";
    store_t *s = store_open_readonly(f->path, err, sizeof err);
    if (s == NULL)
        fail_msg("store_open_readonly: %s", err);
    return s;
}

/* Run one SQL statement with a raw connection; returns the first column of
 * the first row as text in out (if any). */
static int raw_sql(const char *path, const char *sql, char *out, size_t n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && out != NULL)
            str_copy(out, (const char *)sqlite3_column_text(st, 0), n);
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* Run a script (several statements) with a raw connection. */
static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* ---- open, migrate, refuse ---- */

static void open_creates_and_migrates(void **state)
{
    fixture *f = *state;
    struct stat sb;
    char v[32];
    char dir[PATH_MAX];

    assert_int_equal(store_latest_version(), 6);
    store_t *s = open_rw(f);
    assert_int_equal(store_schema_version(s), store_latest_version());

    snprintf(dir, sizeof dir, "%s/state", f->dir);
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    store_close(s);

    assert_int_equal(raw_sql(f->path, "PRAGMA user_version", v, sizeof v), SQLITE_OK);
    assert_string_equal(v, "6");
    assert_int_equal(raw_sql(f->path, "PRAGMA journal_mode", v, sizeof v), SQLITE_OK);
    assert_string_equal(v, "wal");
    assert_int_equal(raw_sql(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                             " AND name IN ('targets','probe_minutes','events','incidents','kv',"
                             "              'runs','steps','approvals','requests',"
                             "              'notifications','refreshes')",
                             v, sizeof v), SQLITE_OK);
    assert_string_equal(v, "11");
}

static void file_mode_is_0600_despite_umask(void **state)
{
    fixture *f = *state;
    struct stat sb;
    mode_t old = umask(0);
    store_t *s = store_open(f->path, NULL, 0);
    umask(old);
    assert_non_null(s);
    assert_int_equal(store_kv_set(s, "k", "v"), true);    /* creates the -wal file */
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    store_close(s);
}

static void reopen_keeps_data(void **state)
{
    fixture *f = *state;
    char out[64];
    store_t *s = open_rw(f);
    assert_true(store_kv_set(s, "active", "backup"));
    assert_true(store_event_add(s, 1000, "daemon", NULL, "started") > 0);
    store_close(s);

    s = open_rw(f);
    assert_int_equal(store_schema_version(s), store_latest_version());
    assert_true(store_kv_get(s, "active", out, sizeof out));
    assert_string_equal(out, "backup");
    store_close(s);
}

static void newer_schema_refused(void **state)
{
    fixture *f = *state;
    char sql[64], err[256], want[32];
    store_close(open_rw(f));
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", store_latest_version() + 1);
    assert_int_equal(raw_sql(f->path, sql, NULL, 0), SQLITE_OK);

    err[0] = '\0';
    assert_null(store_open(f->path, err, sizeof err));
    snprintf(want, sizeof want, "version %d", store_latest_version() + 1);
    assert_non_null(strstr(err, want));
    snprintf(want, sizeof want, "(%d)", store_latest_version());
    assert_non_null(strstr(err, want));

    err[0] = '\0';
    assert_null(store_open_readonly(f->path, err, sizeof err));
    snprintf(want, sizeof want, "version %d", store_latest_version() + 1);
    assert_non_null(strstr(err, want));

    /* and the refused database was not touched */
    assert_int_equal(raw_sql(f->path, "PRAGMA user_version", sql, sizeof sql), SQLITE_OK);
    assert_int_equal(strtol(sql, NULL, 10), store_latest_version() + 1);
}

static void readonly_needs_existing_initialised_file(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    struct stat sb;
    assert_null(store_open_readonly(f->path, err, sizeof err));
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "No such file"));
    assert_int_not_equal(stat(f->path, &sb), 0);            /* not created */

    /* an empty SQLite file (schema version 0) is not a drd database yet */
    char plain[PATH_MAX + 16];
    snprintf(plain, sizeof plain, "%s/plain.db", f->dir);
    assert_int_equal(raw_sql(plain, "CREATE TABLE t (x)", NULL, 0), SQLITE_OK);
    err[0] = '\0';
    assert_null(store_open_readonly(plain, err, sizeof err));
    assert_non_null(strstr(err, "not initialised"));
}

/* ---- targets ---- */

static void target_round_trip(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    store_target t = {
        .name = "primary", .healthy = true, .reachable = true, .in_recovery = false,
        .breaker = BREAKER_CLOSED, .latency_ms = 12, .last_error = "",
        .last_probe_at = 1700000000000, .breaker_since = 1690000000000,
    }, out;

    assert_false(store_target_get(s, "primary", &out));
    assert_true(store_target_put(s, &t));
    assert_true(store_target_get(s, "primary", &out));
    assert_string_equal(out.name, "primary");
    assert_true(out.healthy);
    assert_true(out.reachable);
    assert_false(out.in_recovery);
    assert_int_equal(out.breaker, BREAKER_CLOSED);
    assert_int_equal(out.latency_ms, 12);
    assert_string_equal(out.last_error, "");
    assert_int_equal(out.last_probe_at, 1700000000000);
    assert_int_equal(out.breaker_since, 1690000000000);

    /* update in place; a URL password in the error is masked on the way in */
    t.healthy = false;
    t.reachable = false;
    t.in_recovery = true;
    t.breaker = BREAKER_HALF_OPEN;
    t.latency_ms = 1000;
    str_copy(t.last_error, "connect to postgresql://mon:hunter2@db:5432/x failed", sizeof t.last_error);
    t.last_probe_at = 1700000001000;
    assert_true(store_target_put(s, &t));
    assert_true(store_target_get(s, "primary", &out));
    assert_false(out.healthy);
    assert_false(out.reachable);
    assert_true(out.in_recovery);
    assert_int_equal(out.breaker, BREAKER_HALF_OPEN);
    assert_int_equal(out.latency_ms, 1000);
    assert_null(strstr(out.last_error, "hunter2"));
    assert_non_null(strstr(out.last_error, "mon:****@db"));
    assert_int_equal(out.last_probe_at, 1700000001000);
    assert_false(store_target_get(s, "backup", &out));

    str_copy(t.name, "backup", sizeof t.name);
    t.breaker = BREAKER_OPEN;
    assert_true(store_target_put(s, &t));
    assert_true(store_target_get(s, "backup", &out));
    assert_int_equal(out.breaker, BREAKER_OPEN);
    store_close(s);
}

/* ---- probe statistics ---- */

typedef struct {
    store_probe_minute rows[8];
    int n;
} probe_rows;

static bool collect_probe(const store_probe_minute *m, void *arg)
{
    probe_rows *r = arg;
    assert_true(r->n < 8);
    r->rows[r->n++] = *m;
    return true;
}

static void probe_minutes_accumulate_and_prune(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    store_probe_minute a = { .target = "primary", .minute = 100, .probes = 10, .failures = 1,
                             .latency_sum_ms = 50, .latency_max_ms = 20 };
    assert_true(store_probe_minute_add(s, &a));
    a.probes = 5; a.failures = 2; a.latency_sum_ms = 30; a.latency_max_ms = 9;
    assert_true(store_probe_minute_add(s, &a));
    a.minute = 101; a.probes = 1; a.failures = 0; a.latency_sum_ms = 7; a.latency_max_ms = 7;
    assert_true(store_probe_minute_add(s, &a));
    a.minute = 102;
    assert_true(store_probe_minute_add(s, &a));
    store_probe_minute b = { .target = "backup", .minute = 100, .probes = 3 };
    assert_true(store_probe_minute_add(s, &b));

    probe_rows r = { .n = 0 };
    assert_true(store_probe_minutes(s, "primary", 0, collect_probe, &r));
    assert_int_equal(r.n, 3);
    assert_string_equal(r.rows[0].target, "primary");
    assert_int_equal(r.rows[0].minute, 100);
    assert_int_equal(r.rows[0].probes, 15);
    assert_int_equal(r.rows[0].failures, 3);
    assert_int_equal(r.rows[0].latency_sum_ms, 80);
    assert_int_equal(r.rows[0].latency_max_ms, 20);          /* max of maxes */
    assert_int_equal(r.rows[1].minute, 101);
    assert_int_equal(r.rows[2].minute, 102);

    r.n = 0;
    assert_true(store_probe_minutes(s, "primary", 101, collect_probe, &r));
    assert_int_equal(r.n, 2);
    assert_int_equal(r.rows[0].minute, 101);

    /* a minute is pruned once it ended before `before` */
    assert_int_equal(store_probe_prune(s, 101 * 60000 + 59999), 2);   /* minute 100 x2 */
    assert_int_equal(store_probe_prune(s, 101 * 60000 + 59999), 0);
    r.n = 0;
    assert_true(store_probe_minutes(s, "primary", 0, collect_probe, &r));
    assert_int_equal(r.n, 2);
    assert_int_equal(r.rows[0].minute, 101);
    r.n = 0;
    assert_true(store_probe_minutes(s, "backup", 0, collect_probe, &r));
    assert_int_equal(r.n, 0);
    assert_int_equal(store_probe_prune(s, 103 * 60000), 2);
    store_close(s);
}

/* ---- events ---- */

typedef struct {
    store_event ev[8];
    int n, stop_after;
} event_rows;

static bool collect_event(const store_event *e, void *arg)
{
    event_rows *r = arg;
    assert_true(r->n < 8);
    r->ev[r->n++] = *e;
    return r->stop_after == 0 || r->n < r->stop_after;
}

static void events_since_and_recent(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    int64_t ids[5];
    for (int i = 0; i < 5; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "event %d", i);
        ids[i] = store_event_add(s, 1000 + i, i == 0 ? "daemon" : "breaker",
                                 i == 0 ? NULL : "primary", msg);
        assert_true(ids[i] > 0);
        if (i > 0)
            assert_true(ids[i] > ids[i - 1]);
    }

    event_rows r = { .n = 0 };
    assert_true(store_events_since(s, 0, 3, collect_event, &r));
    assert_int_equal(r.n, 3);
    assert_int_equal(r.ev[0].id, ids[0]);
    assert_int_equal(r.ev[2].id, ids[2]);
    assert_int_equal(r.ev[0].at, 1000);
    assert_string_equal(r.ev[0].kind, "daemon");
    assert_string_equal(r.ev[0].target, "");                  /* NULL target */
    assert_string_equal(r.ev[0].message, "event 0");
    assert_string_equal(r.ev[1].target, "primary");

    memset(&r, 0, sizeof r);
    assert_true(store_events_since(s, ids[2], 10, collect_event, &r));
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ev[0].id, ids[3]);
    assert_int_equal(r.ev[1].id, ids[4]);

    memset(&r, 0, sizeof r);
    assert_true(store_events_since(s, ids[4], 10, collect_event, &r));
    assert_int_equal(r.n, 0);

    memset(&r, 0, sizeof r);
    assert_true(store_events_recent(s, 2, collect_event, &r));
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ev[0].id, ids[4]);
    assert_int_equal(r.ev[1].id, ids[3]);

    /* the callback returning false stops the listing */
    memset(&r, 0, sizeof r);
    r.stop_after = 1;
    assert_true(store_events_recent(s, 10, collect_event, &r));
    assert_int_equal(r.n, 1);
    store_close(s);
}

static void event_text_masked_and_truncated_on_char_boundary(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    char msg[1200];
    /* 'x' then 2-byte characters: a cut at 511 bytes would split one */
    msg[0] = 'x';
    size_t n = 1;
    while (n + 2 < sizeof msg) {
        msg[n++] = (char)0xC3;
        msg[n++] = (char)0xA9;                                 /* é */
    }
    msg[n] = '\0';
    assert_true(store_event_add(s, 1, "test", "", msg) > 0);
    assert_true(store_event_add(s, 2, "test", "", "token=abc123 failed") > 0);

    event_rows r = { .n = 0 };
    assert_true(store_events_since(s, 0, 10, collect_event, &r));
    assert_int_equal(r.n, 2);
    size_t len = strlen(r.ev[0].message);
    assert_true(len <= sizeof r.ev[0].message - 1 && len >= sizeof r.ev[0].message - 3);
    assert_int_equal(len % 2, 1);                              /* 'x' + whole characters */
    assert_int_equal((unsigned char)r.ev[0].message[len - 1], 0xA9);
    assert_null(strstr(r.ev[1].message, "abc123"));
    store_close(s);
}

static bool reenter_events(const store_event *e, void *arg)
{
    (void)e;
    store_t *s = arg;
    event_rows r = { .n = 0 };
    assert_false(store_events_recent(s, 1, collect_event, &r));  /* same statement: refused */
    assert_true(store_kv_set(s, "seen", "yes"));                 /* other statements work */
    return false;
}

static void callback_may_not_reenter_its_query(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    char out[8];
    assert_true(store_event_add(s, 1, "test", NULL, "m") > 0);
    assert_true(store_events_recent(s, 10, reenter_events, s));
    assert_true(store_kv_get(s, "seen", out, sizeof out));
    store_close(s);
}

/* ---- incidents ---- */

static bool collect_incident(const store_incident *i, void *arg)
{
    store_incident *arr = arg;
    for (int k = 0; k < 4; k++)
        if (arr[k].id == 0) {
            arr[k] = *i;
            return true;
        }
    fail_msg("too many incidents");
    return false;
}

static void incidents_lifecycle(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    assert_int_equal(store_incident_find_open(s, "primary"), 0);
    int64_t a = store_incident_open(s, "primary", 1000, "3 consecutive failures");
    assert_true(a > 0);
    assert_int_equal(store_incident_find_open(s, "primary"), a);
    assert_int_equal(store_incident_find_open(s, "backup"), 0);
    /* one open incident per target */
    assert_int_equal(store_incident_open(s, "primary", 1500, "again"), 0);

    int64_t b = store_incident_open(s, "backup", 2000, "down");
    assert_true(b > a);
    assert_true(store_incident_close(s, a, 3000));
    assert_int_equal(store_incident_find_open(s, "primary"), 0);
    assert_true(store_incident_close(s, a, 9999));             /* idempotent, keeps 3000 */
    assert_false(store_incident_close(s, 424242, 3000));       /* unknown id */
    int64_t c = store_incident_open(s, "primary", 4000, "again");
    assert_true(c > b);

    store_incident got[4];
    memset(got, 0, sizeof got);
    assert_true(store_incidents_recent(s, 10, collect_incident, got));
    assert_int_equal(got[0].id, c);
    assert_int_equal(got[0].ended_at, 0);
    assert_int_equal(got[1].id, b);
    assert_string_equal(got[1].target, "backup");
    assert_string_equal(got[1].reason, "down");
    assert_int_equal(got[2].id, a);
    assert_int_equal(got[2].started_at, 1000);
    assert_int_equal(got[2].ended_at, 3000);
    assert_string_equal(got[2].reason, "3 consecutive failures");
    assert_int_equal(got[3].id, 0);

    memset(got, 0, sizeof got);
    assert_true(store_incidents_recent(s, 1, collect_incident, got));
    assert_int_equal(got[0].id, c);
    assert_int_equal(got[1].id, 0);
    store_close(s);
}

/* ---- key/value ---- */

static void kv_set_get_absent(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    char out[16] = "junk";
    assert_false(store_kv_get(s, "active", out, sizeof out));
    assert_string_equal(out, "");
    assert_true(store_kv_set(s, "active", "primary"));
    assert_true(store_kv_get(s, "active", out, sizeof out));
    assert_string_equal(out, "primary");
    assert_true(store_kv_set(s, "active", "backup"));
    assert_true(store_kv_get(s, "active", out, sizeof out));
    assert_string_equal(out, "backup");
    assert_true(store_kv_set(s, "long", "0123456789abcdefghij"));
    assert_true(store_kv_get(s, "long", out, sizeof out));
    assert_string_equal(out, "0123456789abcde");              /* truncated to fit */
    assert_false(store_kv_set(s, "", "x"));                   /* CHECK constraint */
    store_close(s);
}

/* ---- transactions ---- */

typedef struct {
    bool result;
    const char *value;
} tx_arg;

static bool tx_write(store_t *s, void *arg)
{
    tx_arg *a = arg;
    assert_true(store_kv_set(s, "k", a->value));
    assert_true(store_event_add(s, 1, "test", NULL, a->value) > 0);
    return a->result;
}

static int count_events(store_t *s)
{
    event_rows r = { .n = 0 };
    assert_true(store_events_since(s, 0, 8, collect_event, &r));
    return r.n;
}

static bool tx_nested(store_t *s, void *arg)
{
    (void)arg;
    tx_arg inner_bad = { false, "inner" };
    assert_true(store_kv_set(s, "outer", "1"));
    assert_false(store_tx(s, tx_write, &inner_bad));          /* savepoint rolled back */
    return true;
}

static void tx_commits_or_rolls_back(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    char out[16];
    tx_arg bad = { false, "bad" }, good = { true, "good" };

    assert_false(store_tx(s, tx_write, &bad));
    assert_false(store_kv_get(s, "k", out, sizeof out));
    assert_int_equal(count_events(s), 0);

    assert_true(store_tx(s, tx_write, &good));
    assert_true(store_kv_get(s, "k", out, sizeof out));
    assert_string_equal(out, "good");
    assert_int_equal(count_events(s), 1);

    assert_true(store_tx(s, tx_nested, NULL));
    assert_true(store_kv_get(s, "outer", out, sizeof out));
    assert_true(store_kv_get(s, "k", out, sizeof out));
    assert_string_equal(out, "good");
    assert_int_equal(count_events(s), 1);

    /* still usable outside a transaction afterwards */
    assert_true(store_kv_set(s, "after", "x"));
    store_close(s);

    /* rolled back work is gone on disk too */
    s = open_rw(f);
    assert_int_equal(count_events(s), 1);
    store_close(s);
}

/* ---- a reader next to the writer ---- */

typedef struct {
    store_t *rw;
    char seen_before[16], seen_after[16];
} snapshot_arg;

static bool ro_snapshot(store_t *ro, void *arg)
{
    snapshot_arg *a = arg;
    assert_true(store_kv_get(ro, "n", a->seen_before, sizeof a->seen_before));
    assert_true(store_kv_set(a->rw, "n", "3"));               /* the writer moves on */
    assert_true(store_kv_get(ro, "n", a->seen_after, sizeof a->seen_after));
    return true;
}

static void readonly_reads_while_writer_works(void **state)
{
    fixture *f = *state;
    char out[16];
    store_t *rw = open_rw(f);
    assert_true(store_kv_set(rw, "n", "1"));
    store_t *ro = open_ro(f);
    assert_int_equal(store_schema_version(ro), store_latest_version());

    assert_true(store_kv_get(ro, "n", out, sizeof out));
    assert_string_equal(out, "1");
    assert_true(store_kv_set(rw, "n", "2"));
    assert_true(store_event_add(rw, 5, "daemon", NULL, "hello") > 0);
    assert_true(store_kv_get(ro, "n", out, sizeof out));
    assert_string_equal(out, "2");
    assert_int_equal(count_events(ro), 1);

    /* the reader cannot write: SQLite refuses it, nothing changes */
    assert_false(store_kv_set(ro, "n", "666"));
    assert_int_equal(store_event_add(ro, 6, "daemon", NULL, "nope"), 0);
    assert_true(store_kv_get(rw, "n", out, sizeof out));
    assert_string_equal(out, "2");
    assert_int_equal(count_events(rw), 1);

    /* store_tx on a reader is a consistent snapshot */
    snapshot_arg a = { .rw = rw };
    assert_true(store_tx(ro, ro_snapshot, &a));
    assert_string_equal(a.seen_before, "2");
    assert_string_equal(a.seen_after, "2");
    assert_true(store_kv_get(ro, "n", out, sizeof out));
    assert_string_equal(out, "3");

    store_close(ro);
    store_close(rw);
}

/* Another process reads (read-only) while this one holds an open write
 * transaction: WAL lets it, it sees only committed data, and does not block.
 * The child is forked before any store is open so that it inherits none. */
typedef struct {
    const fixture *f;
    int go_fd;               /* write end: tells the child to read */
    pid_t child;
} fork_arg;

static int child_reader(const char *path, int go_fd)
{
    char err[256], out[32], c;
    if (read(go_fd, &c, 1) != 1)
        return 9;
    store_t *ro = store_open_readonly(path, err, sizeof err);
    int rc = ro == NULL ? 10
           : !store_kv_get(ro, "n", out, sizeof out) ? 11
           : strcmp(out, "committed") != 0 ? 12
           : store_kv_set(ro, "n", "child") ? 13 : 0;
    store_close(ro);
    return rc;
}

static bool write_then_let_child_read(store_t *rw, void *arg)
{
    fork_arg *a = arg;
    int status = 0;
    assert_true(store_kv_set(rw, "n", "uncommitted"));
    assert_int_equal(write(a->go_fd, "x", 1), 1);
    assert_int_equal(waitpid(a->child, &status, 0), a->child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    return true;
}

static void readonly_in_other_process_during_write_tx(void **state)
{
    fixture *f = *state;
    char out[32];
    int fds[2];
    store_close(open_rw(f));              /* create the database */
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[1]);
        _exit(child_reader(f->path, fds[0]));
    }
    close(fds[0]);
    fork_arg a = { .f = f, .go_fd = fds[1], .child = pid };
    store_t *rw = open_rw(f);
    assert_true(store_kv_set(rw, "n", "committed"));
    bool ok = store_tx(rw, write_then_let_child_read, &a);
    close(fds[1]);
    assert_true(ok);
    assert_true(store_kv_get(rw, "n", out, sizeof out));
    assert_string_equal(out, "uncommitted");
    store_close(rw);
}


/* ---- schema v2: runs, steps, approvals, requests ---- */

static const char *const step_names[] = { "stop-app", "switch-env", "start-app" };
static const char *const step_actions[] = { "exec", "switch-env", "exec" };
static const char *const step_params[] = {
    "{\"command\":\"systemctl stop app\",\"timeout_ms\":60000}",
    "{\"target\":\"backup\",\"url\":\"postgresql://app:s3cret@backup:5432/app\"}",
    "{\"command\":\"systemctl start app\"}",
};

static int64_t make_run(store_t *s, const char *kind, int64_t created_at)
{
    store_run r = { .request_id = 7, .incident_id = 0, .created_at = created_at };
    str_copy(r.kind, kind, sizeof r.kind);
    str_copy(r.reason, "primary down", sizeof r.reason);
    str_copy(r.started_by, "token", sizeof r.started_by);
    str_copy(r.runbook, "runbooks/failover.ini", sizeof r.runbook);
    return store_run_create(s, &r, step_names, step_actions, step_params, 3);
}

typedef struct {
    store_step st[4];        /* params/output strdup'd: freed by the test */
    int n, stop_after;
} step_rows;

static bool collect_step(const store_step *st, void *arg)
{
    step_rows *r = arg;
    assert_true(r->n < 4);
    store_step *c = &r->st[r->n++];
    *c = *st;
    c->params = st->params ? strdup(st->params) : NULL;
    c->output = st->output ? strdup(st->output) : NULL;
    return r->stop_after == 0 || r->n < r->stop_after;
}

static void step_rows_free(step_rows *r)
{
    for (int i = 0; i < r->n; i++)
        store_step_free(&r->st[i]);
    r->n = 0;
}

static int count_steps(store_t *s, int64_t run_id)
{
    step_rows r = { .n = 0 };
    assert_true(store_steps_of(s, run_id, collect_step, &r));
    int n = r.n;
    step_rows_free(&r);
    return n;
}

typedef struct {
    store_run runs[8];
    int n;
} run_rows;

static bool collect_run(const store_run *run, void *arg)
{
    run_rows *r = arg;
    assert_true(r->n < 8);
    r->runs[r->n++] = *run;
    return true;
}

static void migrate_v1_to_v2_keeps_data(void **state)
{
    fixture *f = *state;
    char out[32], v[16];
    store_t *s = open_rw(f);
    int64_t inc = store_incident_open(s, "primary", 1000, "down");
    assert_true(inc > 0);
    assert_true(store_kv_set(s, "active", "backup"));
    assert_true(store_event_add(s, 5, "daemon", NULL, "started") > 0);
    store_close(s);

    /* take the file back to schema v1: v1 tables only, user_version 1 */
    assert_int_equal(raw_exec(f->path, "DROP TABLE checks; DROP TABLE drills;"
                                       " DROP TABLE refreshes; DROP TABLE notifications;"
                                       " DROP TABLE requests; DROP TABLE approvals;"
                                       " DROP TABLE steps; DROP TABLE runs;"
                                       " PRAGMA user_version = 1;"), SQLITE_OK);

    /* a reader of the v1 file: v1 functions work, v2 ones fail cleanly */
    s = open_ro(f);
    assert_int_equal(store_schema_version(s), 1);
    assert_true(store_kv_get(s, "active", out, sizeof out));
    assert_string_equal(out, "backup");
    assert_int_equal(count_events(s), 1);
    assert_int_equal(store_incident_find_open(s, "primary"), inc);
    run_rows rr = { .n = 0 };
    store_run run;
    store_request req;
    assert_int_equal(store_run_active(s), -1);
    assert_false(store_runs_recent(s, 10, collect_run, &rr));
    assert_false(store_run_get(s, 1, &run));
    assert_false(store_request_get(s, 1, &req));
    store_close(s);

    /* the writer migrates it (to the latest) and keeps the v1 data */
    s = open_rw(f);
    assert_int_equal(store_schema_version(s), store_latest_version());
    assert_true(store_kv_get(s, "active", out, sizeof out));
    assert_string_equal(out, "backup");
    assert_int_equal(count_events(s), 1);
    assert_int_equal(store_incident_find_open(s, "primary"), inc);
    assert_int_equal(store_run_active(s), 0);
    int64_t id = make_run(s, "failover", 0);
    assert_true(id > 0);
    assert_int_equal(store_run_active(s), id);
    store_close(s);
    assert_int_equal(raw_sql(f->path, "PRAGMA user_version", v, sizeof v), SQLITE_OK);
    assert_int_equal(strtol(v, NULL, 10), store_latest_version());
}

static void run_create_and_read_back(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    int64_t before = wall_ms();
    int64_t id = make_run(s, "failover", 0);
    assert_true(id > 0);

    store_run r;
    assert_true(store_run_get(s, id, &r));
    assert_int_equal(r.id, id);
    assert_string_equal(r.kind, "failover");
    assert_string_equal(r.state, "running");
    assert_string_equal(r.reason, "primary down");
    assert_string_equal(r.started_by, "token");
    assert_int_equal(r.request_id, 7);
    assert_int_equal(r.incident_id, 0);
    assert_true(r.created_at >= before && r.created_at <= wall_ms());   /* 0 -> now */
    assert_int_equal(r.finished_at, 0);
    assert_int_equal(r.current_step, -1);
    assert_string_equal(r.runbook, "runbooks/failover.ini");
    assert_string_equal(r.error, "");
    assert_false(store_run_get(s, id + 1, &r));

    step_rows rows = { .n = 0 };
    assert_true(store_steps_of(s, id, collect_step, &rows));
    assert_int_equal(rows.n, 3);
    for (int i = 0; i < 3; i++) {
        store_step *st = &rows.st[i];
        assert_int_equal(st->run_id, id);
        assert_int_equal(st->idx, i);
        assert_string_equal(st->name, step_names[i]);
        assert_string_equal(st->action, step_actions[i]);
        assert_string_equal(st->state, "pending");
        assert_int_equal(st->attempts, 0);
        assert_int_equal(st->started_at, 0);
        assert_int_equal(st->finished_at, 0);
        assert_int_equal(st->exit_code, -1);
        assert_string_equal(st->error, "");
        assert_null(st->output);
        assert_non_null(st->params);
    }
    assert_string_equal(rows.st[0].params, step_params[0]);
    /* params are kept exactly as expanded: a resumed run must do what it
     * started with (the API never shows params) */
    assert_string_equal(rows.st[1].params, step_params[1]);
    step_rows_free(&rows);

    /* a callback returning false stops the listing */
    rows.stop_after = 2;
    assert_true(store_steps_of(s, id, collect_step, &rows));
    assert_int_equal(rows.n, 2);
    step_rows_free(&rows);
    assert_int_equal(count_steps(s, id + 1), 0);

    /* given created_at, no steps, NULL params (-> "{}") */
    assert_true(store_run_update(s, id, "succeeded", -1, NULL, 2000));
    store_run r2 = { .created_at = 1234 };
    str_copy(r2.kind, "failback", sizeof r2.kind);
    int64_t id2 = store_run_create(s, &r2, NULL, NULL, NULL, 0);
    assert_true(id2 > id);
    assert_true(store_run_get(s, id2, &r));
    assert_int_equal(r.created_at, 1234);
    assert_string_equal(r.kind, "failback");
    assert_int_equal(count_steps(s, id2), 0);
    assert_true(store_run_update(s, id2, "aborted", -1, NULL, 3000));
    const char *one_name[] = { "x" }, *one_action[] = { "exec" };
    int64_t id3 = store_run_create(s, &r2, one_name, one_action, NULL, 1);
    assert_true(id3 > 0);
    rows.n = 0;
    rows.stop_after = 0;
    assert_true(store_steps_of(s, id3, collect_step, &rows));
    assert_int_equal(rows.n, 1);
    assert_string_equal(rows.st[0].params, "{}");
    step_rows_free(&rows);
    store_close(s);

    /* a reader sees it all */
    s = open_ro(f);
    assert_true(store_run_get(s, id, &r));
    assert_string_equal(r.state, "succeeded");
    assert_int_equal(count_steps(s, id), 3);
    assert_int_equal(store_run_active(s), id3);
    assert_int_equal(make_run(s, "failover", 0), 0);     /* cannot write */
    store_close(s);
}

static bool create_in_tx(store_t *s, void *arg)
{
    int64_t *ids = arg;
    assert_true(store_kv_set(s, "before", "1"));
    ids[0] = make_run(s, "failover", 0);
    ids[1] = make_run(s, "failover", 0);                    /* refused, outer tx goes on */
    assert_true(store_kv_set(s, "after", "1"));
    return true;
}

static void second_active_run_refused(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    char out[8];
    int64_t a = make_run(s, "failover", 0);
    assert_true(a > 0);
    assert_int_equal(make_run(s, "failback", 0), 0);
    assert_int_equal(store_run_active(s), a);
    run_rows rr = { .n = 0 };
    assert_true(store_runs_recent(s, -1, collect_run, &rr));
    assert_int_equal(rr.n, 1);                               /* nothing left behind */

    /* waiting is active too */
    assert_true(store_run_update(s, a, "waiting", 0, NULL, 0));
    assert_int_equal(make_run(s, "failover", 0), 0);
    assert_int_equal(store_run_active(s), a);
    /* the index itself forbids two active runs, whatever the path */
    assert_true(store_run_update(s, a, "failed", 0, "boom", 5000));
    assert_int_equal(store_run_active(s), 0);
    int64_t b = make_run(s, "failback", 0);
    assert_true(b > a);
    assert_false(store_run_update(s, a, "running", 0, NULL, 0));
    assert_int_equal(store_run_active(s), b);
    store_run r;
    assert_true(store_run_get(s, a, &r));
    assert_string_equal(r.state, "failed");
    assert_true(store_run_update(s, b, "succeeded", 2, NULL, 6000));

    /* inside store_tx: the refused create undoes only itself */
    int64_t ids[2] = { -1, -1 };
    assert_true(store_tx(s, create_in_tx, ids));
    assert_true(ids[0] > b);
    assert_int_equal(ids[1], 0);
    assert_int_equal(store_run_active(s), ids[0]);
    assert_int_equal(count_steps(s, ids[0]), 3);
    assert_true(store_kv_get(s, "before", out, sizeof out));
    assert_true(store_kv_get(s, "after", out, sizeof out));
    memset(&rr, 0, sizeof rr);
    assert_true(store_runs_recent(s, -1, collect_run, &rr));
    assert_int_equal(rr.n, 3);

    /* a bad step (duplicate name) rolls back the whole run */
    assert_true(store_run_update(s, ids[0], "aborted", -1, NULL, 7000));
    const char *names[] = { "a", "a" }, *actions[] = { "exec", "exec" };
    store_run r3 = { .created_at = 1 };
    str_copy(r3.kind, "failover", sizeof r3.kind);
    assert_int_equal(store_run_create(s, &r3, names, actions, NULL, 2), 0);
    str_copy(r3.kind, "sideways", sizeof r3.kind);        /* CHECK on kind */
    assert_int_equal(store_run_create(s, &r3, NULL, NULL, NULL, 0), 0);
    assert_int_equal(store_run_active(s), 0);
    memset(&rr, 0, sizeof rr);
    assert_true(store_runs_recent(s, -1, collect_run, &rr));
    assert_int_equal(rr.n, 3);
    store_close(s);
}

static void run_and_step_update_round_trip(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    int64_t id = make_run(s, "failover", 1000);
    store_run r;

    assert_true(store_run_update(s, id, NULL, 1, NULL, 0));      /* NULL state keeps */
    assert_true(store_run_get(s, id, &r));
    assert_string_equal(r.state, "running");
    assert_int_equal(r.current_step, 1);
    assert_true(store_run_update(s, id, "waiting", 2, "waiting for approval 3", 0));
    assert_true(store_run_update(s, id, "running", 2, NULL, 0));  /* NULL error keeps */
    assert_true(store_run_get(s, id, &r));
    assert_string_equal(r.state, "running");
    assert_string_equal(r.error, "waiting for approval 3");
    assert_true(store_run_update(s, id, "running", 2, "", 0));    /* "" clears */
    assert_true(store_run_get(s, id, &r));
    assert_string_equal(r.error, "");
    assert_true(store_run_update(s, id, "failed", -1,
                                 "psql postgresql://app:pw123@db/app: exit 2", 9000));
    assert_true(store_run_get(s, id, &r));
    assert_string_equal(r.state, "failed");
    assert_int_equal(r.current_step, -1);
    assert_int_equal(r.finished_at, 9000);
    assert_null(strstr(r.error, "pw123"));
    assert_non_null(strstr(r.error, "app:****@db"));
    assert_false(store_run_update(s, id, "exploded", -1, NULL, 0)); /* CHECK */
    assert_false(store_run_update(s, id + 100, "failed", -1, NULL, 0)); /* unknown */
    assert_true(store_run_get(s, id, &r));
    assert_string_equal(r.state, "failed");
    assert_true(store_run_update(s, id, "failed", -1, NULL, 0));   /* 0 -> NULL -> 0 */
    assert_true(store_run_get(s, id, &r));
    assert_int_equal(r.finished_at, 0);

    /* steps */
    store_step st = { .run_id = id, .idx = 1, .attempts = 1, .started_at = 2000,
                      .exit_code = -1 };
    str_copy(st.state, "running", sizeof st.state);
    assert_true(store_step_update(s, &st));
    step_rows rows = { .n = 0 };
    assert_true(store_steps_of(s, id, collect_step, &rows));
    assert_string_equal(rows.st[0].state, "pending");
    assert_string_equal(rows.st[1].state, "running");
    assert_int_equal(rows.st[1].attempts, 1);
    assert_int_equal(rows.st[1].started_at, 2000);
    assert_int_equal(rows.st[1].finished_at, 0);
    assert_null(rows.st[1].output);
    assert_string_equal(rows.st[1].name, "switch-env");            /* untouched */
    step_rows_free(&rows);

    /* 100 KiB of output: the last 64 KiB are kept */
    size_t big = 100 * 1024;
    char *out = malloc(big + 1);
    assert_non_null(out);
    for (size_t i = 0; i < big; i++)
        out[i] = (char)('a' + (i * 7 + i / 1000) % 26);
    out[big] = '\0';
    st.output = out;
    str_copy(st.state, "failed", sizeof st.state);
    st.finished_at = 3000;
    st.exit_code = 2;
    str_copy(st.error, "token=abcdef rejected", sizeof st.error);
    assert_true(store_step_update(s, &st));
    assert_true(store_steps_of(s, id, collect_step, &rows));
    assert_string_equal(rows.st[1].state, "failed");
    assert_int_equal(rows.st[1].finished_at, 3000);
    assert_int_equal(rows.st[1].exit_code, 2);
    assert_null(strstr(rows.st[1].error, "abcdef"));
    assert_non_null(rows.st[1].output);
    assert_int_equal(strlen(rows.st[1].output), 64 * 1024);
    assert_memory_equal(rows.st[1].output, out + big - 64 * 1024, 64 * 1024);
    step_rows_free(&rows);

    /* NULL output keeps it; a retry replaces it */
    st.output = NULL;
    st.attempts = 2;
    str_copy(st.state, "running", sizeof st.state);
    assert_true(store_step_update(s, &st));
    assert_true(store_steps_of(s, id, collect_step, &rows));
    assert_int_equal(rows.st[1].attempts, 2);
    assert_int_equal(strlen(rows.st[1].output), 64 * 1024);
    step_rows_free(&rows);
    st.output = "ok\n";
    str_copy(st.state, "done", sizeof st.state);
    st.exit_code = 0;
    st.error[0] = '\0';
    assert_true(store_step_update(s, &st));
    assert_true(store_steps_of(s, id, collect_step, &rows));
    assert_string_equal(rows.st[1].output, "ok\n");
    assert_string_equal(rows.st[1].state, "done");
    assert_string_equal(rows.st[1].error, "");
    step_rows_free(&rows);

    /* a cut inside a UTF-8 character moves past it */
    memset(out, 'x', big);
    for (size_t i = big - 64 * 1024 - 1; i < big; i += 2) {
        out[i] = (char)0xC3;
        out[i + 1] = (char)0xA9;
    }
    out[big] = '\0';
    st.output = out;
    assert_true(store_step_update(s, &st));
    assert_true(store_steps_of(s, id, collect_step, &rows));
    /* ... and the half character left at its end is dropped: valid UTF-8 */
    assert_int_equal(strlen(rows.st[1].output), 64 * 1024 - 2);
    assert_int_equal((unsigned char)rows.st[1].output[0], 0xC3);
    assert_true(utf8_valid(rows.st[1].output, strlen(rows.st[1].output)));
    step_rows_free(&rows);
    free(out);

    /* needs_attention is a state; unknown states and steps are refused */
    st.output = NULL;
    str_copy(st.state, "needs_attention", sizeof st.state);
    assert_true(store_step_update(s, &st));
    str_copy(st.state, "bogus", sizeof st.state);
    assert_false(store_step_update(s, &st));
    str_copy(st.state, "done", sizeof st.state);
    st.idx = 3;
    assert_false(store_step_update(s, &st));
    st.idx = 1;
    st.run_id = id + 1;
    assert_false(store_step_update(s, &st));
    assert_true(store_steps_of(s, id, collect_step, &rows));
    assert_string_equal(rows.st[1].state, "needs_attention");
    step_rows_free(&rows);
    store_close(s);
}

static void runs_recent_newest_first(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    int64_t ids[4];
    for (int i = 0; i < 4; i++) {
        ids[i] = make_run(s, i % 2 ? "failback" : "failover", 1000 + i);
        assert_true(ids[i] > 0);
        assert_true(store_run_update(s, ids[i], "succeeded", -1, NULL, 1500 + i));
    }
    run_rows rr = { .n = 0 };
    assert_true(store_runs_recent(s, 10, collect_run, &rr));
    assert_int_equal(rr.n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rr.runs[i].id, ids[3 - i]);
    assert_string_equal(rr.runs[0].kind, "failback");
    assert_int_equal(rr.runs[0].created_at, 1003);
    assert_int_equal(rr.runs[0].finished_at, 1503);
    memset(&rr, 0, sizeof rr);
    assert_true(store_runs_recent(s, 2, collect_run, &rr));
    assert_int_equal(rr.n, 2);
    assert_int_equal(rr.runs[0].id, ids[3]);
    assert_int_equal(rr.runs[1].id, ids[2]);
    store_close(s);
}

typedef struct {
    store_approval a[8];
    int n;
    store_t *expire_with;    /* decide each one "expired" from the callback */
} approval_rows;

static bool collect_approval(const store_approval *a, void *arg)
{
    approval_rows *r = arg;
    assert_true(r->n < 8);
    r->a[r->n++] = *a;
    if (r->expire_with != NULL)
        assert_true(store_approval_decide(r->expire_with, a->id, "expired", "drd", NULL, NULL, 50));
    return true;
}

/* v4 -> v5: approvals rebuilt with the wider choice CHECK; rows, ids and
 * decisions kept; the sync-back choices accepted afterwards. */
static void migrate_v4_to_v5_keeps_approvals(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    int64_t run = make_run(s, "failback", 100);
    store_approval att = { .run_id = run, .step_idx = 2, .created_at = 10 };
    str_copy(att.kind, "attention", sizeof att.kind);
    int64_t a = store_approval_create(s, &att);
    int64_t b = store_approval_create(s, &att);
    assert_true(a > 0 && b > a);
    assert_true(store_approval_decide(s, a, "approved", "socket", "ok", "skip", 20));
    store_close(s);

    /* the v4 table: the narrow CHECK, user_version 4 */
    assert_int_equal(raw_exec(f->path,
        "CREATE TABLE a4 (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " run_id INTEGER REFERENCES runs (id) ON DELETE CASCADE,"
        " step_idx INTEGER NOT NULL DEFAULT -1, kind TEXT NOT NULL,"
        " state TEXT NOT NULL DEFAULT 'pending', prompt TEXT NOT NULL DEFAULT '',"
        " created_at INTEGER NOT NULL, expires_at INTEGER, decided_at INTEGER,"
        " decided_by TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',"
        " choice TEXT NOT NULL DEFAULT '' CHECK (choice IN ('', 'retry', 'skip', 'abort')));"
        " INSERT INTO a4 SELECT * FROM approvals; DROP TABLE approvals;"
        " ALTER TABLE a4 RENAME TO approvals; PRAGMA user_version = 4;"), SQLITE_OK);

    s = open_rw(f);
    assert_int_equal(store_schema_version(s), store_latest_version());
    store_approval g;
    assert_true(store_approval_get(s, a, &g));
    assert_string_equal(g.state, "approved");
    assert_string_equal(g.choice, "skip");
    assert_string_equal(g.reason, "ok");
    assert_true(store_approval_get(s, b, &g));
    assert_string_equal(g.state, "pending");
    assert_true(store_approval_decide(s, b, "approved", "token", NULL, "backup-wins", 30));
    assert_true(store_approval_get(s, b, &g));
    assert_string_equal(g.choice, "backup-wins");
    int64_t c = store_approval_create(s, &att);
    assert_true(c > b);                                   /* AUTOINCREMENT kept going */
    store_close(s);
}

static void approvals_lifecycle(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    int64_t run = make_run(s, "failover", 100);

    store_approval pol = { .run_id = 0, .step_idx = -1, .created_at = 30, .expires_at = 90 };
    str_copy(pol.kind, "policy", sizeof pol.kind);
    str_copy(pol.prompt, "fail over to backup? (postgresql://u:pw@b/db)", sizeof pol.prompt);
    int64_t p = store_approval_create(s, &pol);
    assert_true(p > 0);
    store_approval stp = { .run_id = run, .step_idx = 1, .created_at = 20 };
    str_copy(stp.kind, "step", sizeof stp.kind);
    str_copy(stp.prompt, "switch now?", sizeof stp.prompt);
    int64_t a = store_approval_create(s, &stp);
    assert_true(a > p);
    store_approval att = { .run_id = run, .step_idx = 2, .created_at = 0 };
    str_copy(att.kind, "attention", sizeof att.kind);
    int64_t t = store_approval_create(s, &att);
    assert_true(t > a);
    /* refused: unknown run (foreign key), bad kind */
    stp.run_id = run + 50;
    assert_int_equal(store_approval_create(s, &stp), 0);
    stp.run_id = run;
    str_copy(stp.kind, "whim", sizeof stp.kind);
    assert_int_equal(store_approval_create(s, &stp), 0);

    store_approval g;
    assert_true(store_approval_get(s, p, &g));
    assert_int_equal(g.id, p);
    assert_int_equal(g.run_id, 0);
    assert_int_equal(g.step_idx, -1);
    assert_string_equal(g.kind, "policy");
    assert_string_equal(g.state, "pending");
    assert_null(strstr(g.prompt, ":pw@"));
    assert_non_null(strstr(g.prompt, "u:****@b"));
    assert_int_equal(g.created_at, 30);
    assert_int_equal(g.expires_at, 90);
    assert_int_equal(g.decided_at, 0);
    assert_string_equal(g.decided_by, "");
    assert_string_equal(g.choice, "");
    assert_true(store_approval_get(s, t, &g));
    assert_true(g.created_at > 1000);                            /* 0 -> now */
    assert_int_equal(g.expires_at, 0);
    assert_false(store_approval_get(s, t + 1, &g));

    /* pending: oldest first */
    approval_rows rows = { .n = 0 };
    assert_true(store_approvals_pending(s, collect_approval, &rows));
    assert_int_equal(rows.n, 3);
    assert_int_equal(rows.a[0].id, a);                           /* created at 20 */
    assert_int_equal(rows.a[1].id, p);                           /* 30 */
    assert_int_equal(rows.a[2].id, t);                           /* now */

    /* decide once; the second decision changes nothing */
    assert_true(store_approval_decide(s, a, "approved", "socket", "looks fine", NULL, 200));
    assert_false(store_approval_decide(s, a, "rejected", "token", "changed my mind", NULL, 300));
    assert_true(store_approval_get(s, a, &g));
    assert_string_equal(g.state, "approved");
    assert_string_equal(g.decided_by, "socket");
    assert_string_equal(g.reason, "looks fine");
    assert_int_equal(g.decided_at, 200);
    assert_false(store_approval_decide(s, t + 10, "approved", "x", NULL, NULL, 1)); /* unknown */
    assert_false(store_approval_decide(s, t, "pending", "x", NULL, NULL, 1));       /* not a decision */
    assert_false(store_approval_decide(s, t, "retry", "x", NULL, NULL, 1));         /* CHECK */
    assert_false(store_approval_decide(s, t, "approved", "x", NULL, "later", 1));   /* bad choice */
    assert_true(store_approval_get(s, t, &g));
    assert_string_equal(g.state, "pending");
    assert_true(store_approval_decide(s, t, "approved", "token", NULL, "skip", 0));
    assert_true(store_approval_get(s, t, &g));
    assert_string_equal(g.choice, "skip");
    assert_true(g.decided_at > 1000);                            /* 0 -> now */

    memset(&rows, 0, sizeof rows);
    assert_true(store_approvals_pending(s, collect_approval, &rows));
    assert_int_equal(rows.n, 1);
    assert_int_equal(rows.a[0].id, p);

    /* of a run, in order; run 0 = the policy approvals */
    memset(&rows, 0, sizeof rows);
    assert_true(store_approvals_of_run(s, run, collect_approval, &rows));
    assert_int_equal(rows.n, 2);
    assert_int_equal(rows.a[0].id, a);
    assert_int_equal(rows.a[1].id, t);
    memset(&rows, 0, sizeof rows);
    assert_true(store_approvals_of_run(s, 0, collect_approval, &rows));
    assert_int_equal(rows.n, 1);
    assert_int_equal(rows.a[0].id, p);
    memset(&rows, 0, sizeof rows);
    assert_true(store_approvals_of_run(s, run + 1, collect_approval, &rows));
    assert_int_equal(rows.n, 0);

    /* expiring from inside the pending listing (what the main loop does) */
    pol.created_at = 40;
    int64_t p2 = store_approval_create(s, &pol);
    assert_true(p2 > 0);
    memset(&rows, 0, sizeof rows);
    rows.expire_with = s;
    assert_true(store_approvals_pending(s, collect_approval, &rows));
    assert_int_equal(rows.n, 2);
    memset(&rows, 0, sizeof rows);
    assert_true(store_approvals_pending(s, collect_approval, &rows));
    assert_int_equal(rows.n, 0);
    assert_true(store_approval_get(s, p2, &g));
    assert_string_equal(g.state, "expired");
    assert_string_equal(g.decided_by, "drd");
    /* the sync-back conflict decisions are choices too (v5) */
    store_approval att2 = { .run_id = run, .step_idx = 3, .created_at = 40 };
    str_copy(att2.kind, "attention", sizeof att2.kind);
    int64_t t2 = store_approval_create(s, &att2);
    assert_true(t2 > t);
    assert_true(store_approval_decide(s, t2, "approved", "x", NULL, "backup-wins", 1));
    assert_true(store_approval_get(s, t2, &g));
    assert_string_equal(g.choice, "backup-wins");
    int64_t t3 = store_approval_create(s, &att2);
    assert_true(store_approval_decide(s, t3, "approved", "x", NULL, "primary-wins", 1));
    assert_true(store_approval_get(s, t3, &g));
    assert_string_equal(g.choice, "primary-wins");
    store_close(s);

    /* durable: a new connection sees the decisions */
    s = open_ro(f);
    assert_true(store_approval_get(s, a, &g));
    assert_string_equal(g.state, "approved");
    assert_false(store_approval_decide(s, p, "approved", "ro", NULL, NULL, 1)); /* reader */
    store_close(s);
}

static void requests_put_get_replace(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    int64_t run = make_run(s, "failover", 100);
    store_request r = { .id = 41, .run_id = 0, .at = 500 }, g;
    str_copy(r.kind, "failover", sizeof r.kind);
    str_copy(r.state, "refused", sizeof r.state);
    str_copy(r.actor, "token", sizeof r.actor);
    str_copy(r.error, "backup unhealthy: postgresql://u:pw@b/db", sizeof r.error);

    assert_false(store_request_get(s, 41, &g));
    assert_true(store_request_put(s, &r));
    assert_true(store_request_get(s, 41, &g));
    assert_int_equal(g.id, 41);
    assert_string_equal(g.kind, "failover");
    assert_string_equal(g.state, "refused");
    assert_string_equal(g.actor, "token");
    assert_int_equal(g.run_id, 0);
    assert_null(strstr(g.error, ":pw@"));
    assert_int_equal(g.at, 500);

    /* the same id again: updated in place */
    str_copy(r.state, "accepted", sizeof r.state);
    r.error[0] = '\0';
    r.run_id = run;
    r.at = 600;
    assert_true(store_request_put(s, &r));
    assert_true(store_request_get(s, 41, &g));
    assert_string_equal(g.state, "accepted");
    assert_string_equal(g.error, "");
    assert_int_equal(g.run_id, run);
    assert_int_equal(g.at, 600);
    char n[8];
    assert_int_equal(raw_sql(f->path, "SELECT count(*) FROM requests", n, sizeof n), SQLITE_OK);
    assert_string_equal(n, "1");

    /* refused: bad state, unknown run, id 0 */
    str_copy(r.state, "maybe", sizeof r.state);
    assert_false(store_request_put(s, &r));
    str_copy(r.state, "accepted", sizeof r.state);
    r.run_id = run + 9;
    assert_false(store_request_put(s, &r));
    r.run_id = 0;
    r.id = 0;
    assert_false(store_request_put(s, &r));
    r.id = 42;
    r.at = 0;
    str_copy(r.kind, "approve", sizeof r.kind);
    assert_true(store_request_put(s, &r));
    assert_true(store_request_get(s, 42, &g));
    assert_true(g.at > 1000);                                    /* 0 -> now */
    assert_true(store_request_get(s, 41, &g));
    assert_int_equal(g.run_id, run);
    store_close(s);
}

/* ---- schema v3: webhook notifications, backup refreshes ---- */

typedef struct {
    store_notification n[8];
    int n_rows, stop_after;
} notification_rows;

static bool collect_notification(const store_notification *n, void *arg)
{
    notification_rows *r = arg;
    assert_true(r->n_rows < 8);
    r->n[r->n_rows++] = *n;
    return r->stop_after == 0 || r->n_rows < r->stop_after;
}

typedef struct {
    store_refresh r[8];
    int n;
} refresh_rows;

static bool collect_refresh(const store_refresh *x, void *arg)
{
    refresh_rows *r = arg;
    assert_true(r->n < 8);
    r->r[r->n++] = *x;
    return true;
}

static int64_t add_notification(store_t *s, int64_t at, const char *event, const char *state)
{
    store_notification n = { .at = at };
    str_copy(n.event, event, sizeof n.event);
    str_copy(n.state, state, sizeof n.state);
    snprintf(n.summary, sizeof n.summary, "%s at %lld", event, (long long)at);
    return store_notification_add(s, &n);
}

static int64_t add_refresh(store_t *s, const char *mode, const char *trigger, const char *state,
                           int64_t started_at, int64_t finished_at)
{
    store_refresh r = { .started_at = started_at, .finished_at = finished_at };
    str_copy(r.mode, mode, sizeof r.mode);
    str_copy(r.trigger, trigger, sizeof r.trigger);
    str_copy(r.state, state, sizeof r.state);
    return store_refresh_add(s, &r);
}

static int count_rows(const fixture *f, const char *table)
{
    char sql[96], n[32];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    assert_int_equal(raw_sql(f->path, sql, n, sizeof n), SQLITE_OK);
    return (int)strtol(n, NULL, 10);
}

static void migrate_v2_to_v3_keeps_data(void **state)
{
    fixture *f = *state;
    char out[32], v[16];
    store_t *s = open_rw(f);
    int64_t run = make_run(s, "failover", 100);
    assert_true(run > 0);
    store_request req = { .id = 5, .run_id = run, .at = 200 };
    str_copy(req.kind, "failover", sizeof req.kind);
    str_copy(req.state, "accepted", sizeof req.state);
    assert_true(store_request_put(s, &req));
    assert_true(store_kv_set(s, "active", "backup"));
    store_close(s);

    /* take the file back to schema v2: v2 tables only, user_version 2 */
    assert_int_equal(raw_exec(f->path, "DROP TABLE checks; DROP TABLE drills;"
                                       " DROP TABLE refreshes; DROP TABLE notifications;"
                                       " PRAGMA user_version = 2;"), SQLITE_OK);

    /* a reader of the v2 file: v2 functions work, v3 ones fail cleanly */
    s = open_ro(f);
    assert_int_equal(store_schema_version(s), 2);
    store_run r;
    assert_true(store_run_get(s, run, &r));
    assert_string_equal(r.kind, "failover");
    notification_rows nr = { .n_rows = 0 };
    refresh_rows rr = { .n = 0 };
    store_refresh good;
    assert_false(store_notifications_recent(s, 10, collect_notification, &nr));
    assert_int_equal(add_notification(s, 1, "run_started", "pending"), 0);
    assert_false(store_refreshes_recent(s, 10, collect_refresh, &rr));
    assert_false(store_refresh_last_good(s, &good));
    assert_int_equal(add_refresh(s, "dump", "manual", "running", 1, 0), 0);
    store_close(s);

    /* the writer migrates it and keeps the v2 data */
    s = open_rw(f);
    assert_int_equal(store_schema_version(s), store_latest_version());
    assert_true(store_run_get(s, run, &r));
    assert_int_equal(r.created_at, 100);
    assert_int_equal(count_steps(s, run), 3);
    store_request g;
    assert_true(store_request_get(s, 5, &g));
    assert_int_equal(g.run_id, run);
    assert_true(store_kv_get(s, "active", out, sizeof out));
    assert_string_equal(out, "backup");
    assert_int_equal(store_run_active(s), run);
    /* and the v3 functions work */
    assert_true(add_notification(s, 300, "run_started", "pending") > 0);
    assert_true(store_notifications_recent(s, 10, collect_notification, &nr));
    assert_int_equal(nr.n_rows, 1);
    assert_true(add_refresh(s, "dump", "manual", "running", 400, 0) > 0);
    assert_true(store_refreshes_recent(s, 10, collect_refresh, &rr));
    assert_int_equal(rr.n, 1);
    store_close(s);
    assert_int_equal(raw_sql(f->path, "PRAGMA user_version", v, sizeof v), SQLITE_OK);
    assert_string_equal(v, "6");
}

static void notifications_add_update_recent(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    int64_t before = wall_ms();
    int64_t ids[4];
    ids[0] = add_notification(s, 1000, "incident_start", "pending");
    ids[1] = add_notification(s, 2000, "run_started", "");       /* "" -> pending */
    ids[2] = add_notification(s, 3000, "run_failed", "dropped");
    ids[3] = add_notification(s, 0, "incident_end", "pending");   /* 0 -> now */
    for (int i = 0; i < 4; i++) {
        assert_true(ids[i] > 0);
        if (i > 0)
            assert_true(ids[i] > ids[i - 1]);
    }

    /* newest first */
    notification_rows r = { .n_rows = 0 };
    assert_true(store_notifications_recent(s, 10, collect_notification, &r));
    assert_int_equal(r.n_rows, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r.n[i].id, ids[3 - i]);
    assert_true(r.n[0].at >= before && r.n[0].at <= wall_ms());
    assert_string_equal(r.n[0].event, "incident_end");
    assert_int_equal(r.n[1].at, 3000);
    assert_string_equal(r.n[1].state, "dropped");
    assert_string_equal(r.n[2].state, "pending");
    assert_string_equal(r.n[3].event, "incident_start");
    assert_string_equal(r.n[3].summary, "incident_start at 1000");
    assert_string_equal(r.n[3].state, "pending");
    assert_int_equal(r.n[3].attempts, 0);
    assert_int_equal(r.n[3].http_status, 0);
    assert_string_equal(r.n[3].error, "");
    assert_int_equal(r.n[3].last_attempt_at, 0);

    /* limit, and a callback returning false stops */
    memset(&r, 0, sizeof r);
    assert_true(store_notifications_recent(s, 2, collect_notification, &r));
    assert_int_equal(r.n_rows, 2);
    assert_int_equal(r.n[0].id, ids[3]);
    assert_int_equal(r.n[1].id, ids[2]);
    memset(&r, 0, sizeof r);
    r.stop_after = 1;
    assert_true(store_notifications_recent(s, -1, collect_notification, &r));
    assert_int_equal(r.n_rows, 1);

    /* update: a failed attempt (masked error), then success */
    store_notification n = { .id = ids[0], .attempts = 1, .http_status = 502,
                             .last_attempt_at = 1100 };
    str_copy(n.state, "pending", sizeof n.state);
    str_copy(n.error, "POST https://hook:t0psecret@hooks.example/x: 502", sizeof n.error);
    str_copy(n.summary, "ignored by update", sizeof n.summary);
    assert_true(store_notification_update(s, &n));
    memset(&r, 0, sizeof r);
    assert_true(store_notifications_recent(s, -1, collect_notification, &r));
    assert_int_equal(r.n[3].id, ids[0]);
    assert_int_equal(r.n[3].attempts, 1);
    assert_int_equal(r.n[3].http_status, 502);
    assert_int_equal(r.n[3].last_attempt_at, 1100);
    assert_null(strstr(r.n[3].error, "t0psecret"));
    assert_non_null(strstr(r.n[3].error, "hook:****@hooks.example"));
    assert_string_equal(r.n[3].summary, "incident_start at 1000");  /* not updated */
    assert_int_equal(r.n[3].at, 1000);

    str_copy(n.state, "sent", sizeof n.state);
    n.attempts = 2;
    n.http_status = 204;
    n.error[0] = '\0';
    n.last_attempt_at = 1200;
    assert_true(store_notification_update(s, &n));
    memset(&r, 0, sizeof r);
    assert_true(store_notifications_recent(s, -1, collect_notification, &r));
    assert_string_equal(r.n[3].state, "sent");
    assert_int_equal(r.n[3].attempts, 2);
    assert_int_equal(r.n[3].http_status, 204);
    assert_string_equal(r.n[3].error, "");
    assert_int_equal(r.n[3].last_attempt_at, 1200);

    /* refused: unknown id, unknown state, negative attempts, empty event */
    n.id = ids[3] + 10;
    assert_false(store_notification_update(s, &n));
    n.id = ids[0];
    str_copy(n.state, "lost", sizeof n.state);
    assert_false(store_notification_update(s, &n));
    str_copy(n.state, "failed", sizeof n.state);
    n.attempts = -1;
    assert_false(store_notification_update(s, &n));
    assert_int_equal(add_notification(s, 1, "", "pending"), 0);
    assert_int_equal(add_notification(s, 1, "run_started", "bogus"), 0);
    memset(&r, 0, sizeof r);
    assert_true(store_notifications_recent(s, -1, collect_notification, &r));
    assert_int_equal(r.n_rows, 4);
    assert_string_equal(r.n[3].state, "sent");
    store_close(s);
}

static void notification_summary_masked_and_bounded(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    store_notification n = { .at = 10, .attempts = 3, .http_status = 500, .last_attempt_at = 20 };
    str_copy(n.event, "run_failed", sizeof n.event);
    str_copy(n.state, "failed", sizeof n.state);
    str_copy(n.summary, "failover failed: psql postgresql://app:pw123@db/app exit 2",
             sizeof n.summary);
    str_copy(n.error, "token=abc123 rejected", sizeof n.error);
    assert_true(store_notification_add(s, &n) > 0);
    /* a summary filling the field with 2-byte characters: cut between them */
    memset(n.summary, 0, sizeof n.summary);
    n.summary[0] = 'x';
    for (size_t i = 1; i + 2 < sizeof n.summary; i += 2) {
        n.summary[i] = (char)0xC3;
        n.summary[i + 1] = (char)0xA9;                          /* é */
    }
    n.error[0] = '\0';
    assert_true(store_notification_add(s, &n) > 0);

    notification_rows r = { .n_rows = 0 };
    assert_true(store_notifications_recent(s, -1, collect_notification, &r));
    assert_int_equal(r.n_rows, 2);
    assert_null(strstr(r.n[1].summary, "pw123"));
    assert_non_null(strstr(r.n[1].summary, "app:****@db"));
    assert_null(strstr(r.n[1].error, "abc123"));
    assert_string_equal(r.n[1].state, "failed");
    assert_int_equal(r.n[1].attempts, 3);
    assert_int_equal(r.n[1].http_status, 500);
    assert_int_equal(r.n[1].last_attempt_at, 20);
    size_t len = strlen(r.n[0].summary);
    assert_true(len < sizeof r.n[0].summary && len >= sizeof r.n[0].summary - 3);
    assert_int_equal(len % 2, 1);                               /* 'x' + whole characters */
    assert_int_equal((unsigned char)r.n[0].summary[len - 1], 0xA9);
    store_close(s);
}

static bool tx_add_notification_then_fail(store_t *s, void *arg)
{
    int64_t *id = arg;
    *id = add_notification(s, 5, "run_started", "pending");
    assert_true(*id > 0);
    return false;
}

static void notifications_pruned_to_newest_10000(void **state)
{
    fixture *f = *state;
    char out[32];
    store_close(open_rw(f));
    /* 10005 old rows, ids 1..10005 */
    assert_int_equal(raw_exec(f->path,
                              "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c"
                              "                        WHERE i < 10005)"
                              " INSERT INTO notifications (at, event, state)"
                              " SELECT i, 'run_started', 'sent' FROM c;"), SQLITE_OK);
    assert_int_equal(count_rows(f, "notifications"), 10005);

    store_t *s = open_rw(f);
    int64_t id = add_notification(s, 20000, "incident_start", "pending");
    assert_int_equal(id, 10006);
    assert_int_equal(count_rows(f, "notifications"), 10000);
    assert_int_equal(raw_sql(f->path, "SELECT min(id) FROM notifications", out, sizeof out),
                     SQLITE_OK);
    assert_string_equal(out, "7");                              /* 1..6 pruned */
    assert_true(add_notification(s, 20001, "incident_end", "pending") > id);
    assert_int_equal(count_rows(f, "notifications"), 10000);
    assert_int_equal(raw_sql(f->path, "SELECT min(id) FROM notifications", out, sizeof out),
                     SQLITE_OK);
    assert_string_equal(out, "8");

    /* the newest are the ones kept and listed */
    notification_rows r = { .n_rows = 0 };
    assert_true(store_notifications_recent(s, 2, collect_notification, &r));
    assert_int_equal(r.n_rows, 2);
    assert_string_equal(r.n[0].event, "incident_end");
    assert_int_equal(r.n[1].id, id);

    /* insert and prune are one unit: a rolled back caller transaction undoes both */
    int64_t rolled = 0;
    assert_false(store_tx(s, tx_add_notification_then_fail, &rolled));
    assert_true(rolled > id);
    assert_int_equal(count_rows(f, "notifications"), 10000);
    assert_int_equal(raw_sql(f->path, "SELECT min(id) FROM notifications", out, sizeof out),
                     SQLITE_OK);
    assert_string_equal(out, "8");
    store_close(s);
}

static void refreshes_lifecycle_and_last_good(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    store_refresh g;
    refresh_rows rows = { .n = 0 };
    int64_t before = wall_ms();

    /* none at all */
    assert_false(store_refresh_last_good(s, &g));
    assert_true(store_refreshes_recent(s, 10, collect_refresh, &rows));
    assert_int_equal(rows.n, 0);

    /* a running one is not good */
    int64_t a = add_refresh(s, "dump", "schedule", "", 0, 0);   /* "" -> running, 0 -> now */
    assert_true(a > 0);
    assert_false(store_refresh_last_good(s, &g));
    assert_true(store_refreshes_recent(s, 10, collect_refresh, &rows));
    assert_int_equal(rows.n, 1);
    assert_int_equal(rows.r[0].id, a);
    assert_string_equal(rows.r[0].mode, "dump");
    assert_string_equal(rows.r[0].trigger, "schedule");
    assert_string_equal(rows.r[0].state, "running");
    assert_true(rows.r[0].started_at >= before && rows.r[0].started_at <= wall_ms());
    assert_int_equal(rows.r[0].finished_at, 0);
    assert_int_equal(rows.r[0].bytes, 0);
    assert_string_equal(rows.r[0].file, "");
    assert_string_equal(rows.r[0].error, "");

    /* it fails, with a password in the error: masked */
    store_refresh u = rows.r[0];
    str_copy(u.state, "failed", sizeof u.state);
    u.finished_at = u.started_at + 10;
    str_copy(u.error, "pg_dump: connection to postgresql://dump:hunter2@primary/app failed",
             sizeof u.error);
    assert_true(store_refresh_update(s, &u));
    assert_false(store_refresh_last_good(s, &g));
    memset(&rows, 0, sizeof rows);
    assert_true(store_refreshes_recent(s, 10, collect_refresh, &rows));
    assert_string_equal(rows.r[0].state, "failed");
    assert_int_equal(rows.r[0].finished_at, u.finished_at);
    assert_null(strstr(rows.r[0].error, "hunter2"));
    assert_non_null(strstr(rows.r[0].error, "dump:****@primary"));

    /* a refused one is not good either */
    int64_t b = add_refresh(s, "logical", "manual", "refused", 2000, 2000);
    assert_true(b > a);
    assert_false(store_refresh_last_good(s, &g));

    /* a success */
    int64_t c = add_refresh(s, "dump", "manual", "running", 3000, 0);
    assert_true(c > b);
    store_refresh ok = { .id = c, .finished_at = 3500, .bytes = 123456789012 };
    str_copy(ok.state, "succeeded", sizeof ok.state);
    str_copy(ok.file, "/var/lib/drd/dumps/app-3000.dump", sizeof ok.file);
    str_copy(ok.mode, "logical", sizeof ok.mode);               /* fixed at add: ignored */
    assert_true(store_refresh_update(s, &ok));
    assert_true(store_refresh_last_good(s, &g));
    assert_int_equal(g.id, c);
    assert_string_equal(g.mode, "dump");
    assert_string_equal(g.trigger, "manual");
    assert_string_equal(g.state, "succeeded");
    assert_int_equal(g.started_at, 3000);
    assert_int_equal(g.finished_at, 3500);
    assert_int_equal(g.bytes, 123456789012);
    assert_string_equal(g.file, "/var/lib/drd/dumps/app-3000.dump");
    assert_string_equal(g.error, "");

    /* later failures and a running one leave the last good as it is */
    assert_true(add_refresh(s, "dump", "schedule", "failed", 4000, 4100) > c);
    int64_t d = add_refresh(s, "dump", "schedule", "running", 5000, 0);
    assert_true(d > c);
    assert_true(store_refresh_last_good(s, &g));
    assert_int_equal(g.id, c);
    /* a newer success replaces it */
    store_refresh ok2 = { .id = d, .finished_at = 5600, .bytes = 7 };
    str_copy(ok2.state, "succeeded", sizeof ok2.state);
    assert_true(store_refresh_update(s, &ok2));
    assert_true(store_refresh_last_good(s, &g));
    assert_int_equal(g.id, d);
    assert_int_equal(g.bytes, 7);

    /* newest first, with a limit */
    memset(&rows, 0, sizeof rows);
    assert_true(store_refreshes_recent(s, 10, collect_refresh, &rows));
    assert_int_equal(rows.n, 5);
    assert_int_equal(rows.r[0].id, d);
    assert_int_equal(rows.r[1].id, d - 1);
    assert_int_equal(rows.r[2].id, c);
    assert_int_equal(rows.r[3].id, b);
    assert_string_equal(rows.r[3].state, "refused");
    assert_string_equal(rows.r[3].trigger, "manual");
    assert_int_equal(rows.r[4].id, a);
    memset(&rows, 0, sizeof rows);
    assert_true(store_refreshes_recent(s, 2, collect_refresh, &rows));
    assert_int_equal(rows.n, 2);
    assert_int_equal(rows.r[1].id, d - 1);

    /* refused: bad mode, trigger, state, negative bytes, unknown id */
    assert_int_equal(add_refresh(s, "rsync", "manual", "running", 1, 0), 0);
    assert_int_equal(add_refresh(s, "dump", "cron", "running", 1, 0), 0);
    assert_int_equal(add_refresh(s, "dump", "manual", "done", 1, 0), 0);
    ok2.bytes = -1;
    assert_false(store_refresh_update(s, &ok2));
    ok2.bytes = 7;
    str_copy(ok2.state, "exploded", sizeof ok2.state);
    assert_false(store_refresh_update(s, &ok2));
    str_copy(ok2.state, "failed", sizeof ok2.state);
    ok2.id = d + 100;
    assert_false(store_refresh_update(s, &ok2));
    assert_int_equal(count_rows(f, "refreshes"), 5);
    assert_true(store_refresh_last_good(s, &g));
    assert_int_equal(g.id, d);
    store_close(s);

    /* a reader sees the same */
    s = open_ro(f);
    assert_true(store_refresh_last_good(s, &g));
    assert_int_equal(g.id, d);
    assert_int_equal(add_refresh(s, "dump", "manual", "running", 1, 0), 0);
    store_close(s);
}

/* ---- readiness checks and drills (v4) ---- */

typedef struct { int n; store_check c[8]; } check_rows;
static bool collect_check(const store_check *c, void *arg)
{
    check_rows *r = arg;
    if (r->n < 8)
        r->c[r->n++] = *c;
    return true;
}

static store_check mk_check(const char *name, const char *status, int64_t at)
{
    store_check c;
    memset(&c, 0, sizeof c);
    str_copy(c.name, name, sizeof c.name);
    str_copy(c.status, status, sizeof c.status);
    str_copy(c.reason, "cannot reach postgresql://app:hunter2@db/app", sizeof c.reason);
    str_copy(c.fix, "start it", sizeof c.fix);
    c.checked_at = at;
    return c;
}

static void checks_keep_since_until_status_changes(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    store_check a = mk_check("primary", "ok", 1000), b = mk_check("backup", "ok", 1000);
    assert_true(store_check_put(s, &a));
    assert_true(store_check_put(s, &b));
    a.checked_at = 2000;
    assert_true(store_check_put(s, &a));            /* same status: since stays */
    b = mk_check("backup", "fail", 2000);
    assert_true(store_check_put(s, &b));            /* changed: since moves */
    check_rows r = { 0 };
    assert_true(store_checks_all(s, collect_check, &r));
    assert_int_equal(r.n, 2);
    assert_string_equal(r.c[0].name, "primary");
    assert_int_equal(r.c[0].since, 1000);
    assert_int_equal(r.c[0].checked_at, 2000);
    assert_string_equal(r.c[1].status, "fail");
    assert_int_equal(r.c[1].since, 2000);
    assert_null(strstr(r.c[1].reason, "hunter2"));  /* masked */
    b = mk_check("backup", "maybe", 3000);
    assert_false(store_check_put(s, &b));           /* bad status refused */
    /* a check not run any more goes */
    b = mk_check("primary", "ok", 3000);
    assert_true(store_check_put(s, &b));
    assert_true(store_checks_prune(s, 3000));
    memset(&r, 0, sizeof r);
    assert_true(store_checks_all(s, collect_check, &r));
    assert_int_equal(r.n, 1);
    assert_string_equal(r.c[0].name, "primary");
    store_close(s);
}

typedef struct { int n; int64_t id[4]; char result[4][16]; } drill_rows;
static bool collect_drill(const store_drill *d, void *arg)
{
    drill_rows *r = arg;
    if (r->n < 4) {
        r->id[r->n] = d->id;
        str_copy(r->result[r->n], d->result, sizeof r->result[0]);
        assert_non_null(strstr(d->report, "rto_ms"));
        r->n++;
    }
    return true;
}

static void drills_recent_and_last_good(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    drill_rows r = { 0 };
    assert_true(store_drill_last_good(s, collect_drill, &r));
    assert_int_equal(r.n, 0);
    store_drill d = { .started_at = 1, .ended_at = 2, .report = "{\"rto_ms\": 5}" };
    str_copy(d.result, "succeeded", sizeof d.result);
    int64_t a = store_drill_add(s, &d);
    str_copy(d.result, "failed", sizeof d.result);
    int64_t b = store_drill_add(s, &d);
    assert_true(a > 0 && b > a);
    str_copy(d.result, "maybe", sizeof d.result);
    assert_int_equal(store_drill_add(s, &d), 0);
    assert_true(store_drills_recent(s, 10, collect_drill, &r));
    assert_int_equal(r.n, 2);
    assert_int_equal(r.id[0], b);
    assert_string_equal(r.result[0], "failed");
    memset(&r, 0, sizeof r);
    assert_true(store_drill_last_good(s, collect_drill, &r));
    assert_int_equal(r.n, 1);
    assert_int_equal(r.id[0], a);
    store_close(s);
}

/* schema v6: reconcile watermarks (absent, put, replace, reset), egress
 * summed per UTC day over a range, and the pruning of routine passes */
static void watermarks_and_egress(void **state)
{
    fixture *f = *state;
    store_t *s = open_rw(f);
    store_watermark w;
    assert_false(store_watermark_get(s, "public.items", &w));
    assert_string_equal(w.watermark, "");
    str_copy(w.name, "public.items", sizeof w.name);
    str_copy(w.watermark, "[\"2026-12-03 12:00:00+00\",\"7\"]", sizeof w.watermark);
    w.updated_at = 5;
    assert_true(store_watermark_put(s, &w));
    str_copy(w.full_key, "[\"9\"]", sizeof w.full_key);
    w.full_at = 77;
    assert_true(store_watermark_put(s, &w));
    store_watermark g;
    assert_true(store_watermark_get(s, "public.items", &g));
    assert_string_equal(g.watermark, "[\"2026-12-03 12:00:00+00\",\"7\"]");
    assert_string_equal(g.full_key, "[\"9\"]");
    assert_int_equal(g.full_at, 77);
    assert_true(store_watermarks_reset(s));
    assert_false(store_watermark_get(s, "public.items", &g));

    const int64_t day = 86400000LL, dec1 = 1796083200000LL;   /* 2026-12-01 00:00 UTC */
    assert_true(store_egress_add(s, dec1 - 1, 1000));           /* November 30th */
    assert_true(store_egress_add(s, dec1, 10));
    assert_true(store_egress_add(s, dec1 + day - 1, 20));
    assert_true(store_egress_add(s, dec1 + 2 * day, 300));
    int64_t bytes, n;
    assert_true(store_egress_sum(s, dec1, dec1 + 31 * day, &bytes, &n));
    assert_int_equal(bytes, 330);
    assert_int_equal(n, 3);
    assert_true(store_egress_sum(s, dec1, dec1 + day, &bytes, &n));   /* the 1st only */
    assert_int_equal(bytes, 30);
    assert_true(store_egress_sum(s, dec1 - day, dec1 + 31 * day, &bytes, NULL));
    assert_int_equal(bytes, 1330);

    for (int i = 0; i < 10; i++)
        assert_true(add_refresh(s, "reconcile", "schedule", i == 3 ? "failed" : "succeeded", 100 + i, 101 + i) > 0);
    assert_true(add_refresh(s, "dump", "schedule", "succeeded", 50, 60) > 0);
    assert_true(store_refreshes_prune(s, "reconcile", 4));
    /* the newest 4 reconcile rows, the failed one and the dump stay */
    assert_int_equal(count_rows(f, "refreshes"), 6);
    store_close(s);
}

int main(void)
{
    log_set_level(LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(open_creates_and_migrates),
        T(checks_keep_since_until_status_changes),
        T(drills_recent_and_last_good),
        T(file_mode_is_0600_despite_umask),
        T(reopen_keeps_data),
        T(newer_schema_refused),
        T(readonly_needs_existing_initialised_file),
        T(target_round_trip),
        T(probe_minutes_accumulate_and_prune),
        T(events_since_and_recent),
        T(event_text_masked_and_truncated_on_char_boundary),
        T(callback_may_not_reenter_its_query),
        T(incidents_lifecycle),
        T(kv_set_get_absent),
        T(tx_commits_or_rolls_back),
        T(readonly_reads_while_writer_works),
        T(readonly_in_other_process_during_write_tx),
        T(migrate_v1_to_v2_keeps_data),
        T(run_create_and_read_back),
        T(second_active_run_refused),
        T(run_and_step_update_round_trip),
        T(runs_recent_newest_first),
        T(approvals_lifecycle),
        T(migrate_v4_to_v5_keeps_approvals),
        T(requests_put_get_replace),
        T(migrate_v2_to_v3_keeps_data),
        T(notifications_add_update_recent),
        T(notification_summary_masked_and_bounded),
        T(notifications_pruned_to_newest_10000),
        T(refreshes_lifecycle_and_last_good),
        T(watermarks_and_egress),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
