/* sync_int.h - what the files of the sync module share (not a contract
 * with other modules; see include/drd/sync.h for that).
 *
 *   sync.c          the job: worker thread, watchdog, completion to the loop
 *   sync_pg.c       blocking libpq on worker threads: connect, statements,
 *                   COPY streaming, SQL text building, the report
 *   sync_catalog.c  tables, columns, keys, foreign keys, sequences of the
 *                   synced schemas; comparing both sides; sequence resync
 *   sync_capture.c  capture / uncapture (the ledger on the backup)
 *   sync_back.c     incremental sync-back with conflict detection
 *   sync_back_check.c  its checks (ledger, triggers, privileges) and the
 *                   conflict report (sync_back_int.h: their shared state)
 *   sync_window.c   passes while the app runs (pre-sync) and the stop
 *                   window's verify of the keys the outage touched
 *   sync_keys.c     that check for one table: both sides at once
 *   sync_full.c     the worker pool, verify
 *   sync_copy.c     full copy in one snapshot (full mode)
 *
 * Threads: one job thread runs the operation; full mode and verify start
 * [sync] parallel pool threads. Every connection is registered with its
 * job so that a cancel (sync_job_free, the watchdog) can shut its socket
 * down from another thread: the blocked libpq call returns at once and the
 * server, which checks its client every second
 * (client_connection_check_interval), aborts the statement and rolls the
 * transaction back. */
#ifndef DRD_SYNC_INT_H
#define DRD_SYNC_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "drd/core/strbuf.h"
#include "drd/pg/quote.h"
#include "drd/sync/sync.h"

/* ---- growable strings (SQL text, the report): core/strbuf, pg/quote ---- */

typedef strbuf sbuf;

/* ---- the job context shared by its threads --------------------------- */

typedef struct sync_ctx {
    /* copied from the config and the request */
    char *primary_url, *primary_password;
    char *backup_url, *backup_password;
    char *primary_db, *backup_db;   /* the app's database (from app_url) on each side; NULL = the URL's */
    char backup_app_user[128];      /* the app's role on the backup (app_url's user), "" = unknown */
    char *schemas;           /* comma list */
    char *exclude;           /* comma list of schema.table patterns, or NULL */
    bool no_pk_copy;         /* [sync] no_pk = copy */
    conflicts_mode resolution;
    bool full;               /* [sync] mode = full (sync-back copies whole tables) */
    int parallel;
    sync_op op;
    bool resync;             /* verify: sync-back first (sync_request.resync) */
    bool online;             /* sync-back: passes while the app runs (sync_request.online) */
    int64_t run_id;          /* the run this job belongs to (0 = none) */
    int64_t timeout_ms;

    /* passes (sync_window.c); set by the job thread, read by it only */
    bool window;             /* drd.passes exists: sync-back replays only the tail */
    char *since;             /* window: the last pass's snapshot (NULL = none yet) */
    const char *import_snapshot; /* sync-back reads the backup in this exported snapshot (borrowed) */
    const char *verify_snapshot; /* verify reads the backup in this exported snapshot (borrowed) */
    sbuf *verify_record;     /* verify appends (schema, table, state, rows) tuples here */
    bool (*verify_skip)(const struct sync_ctx *c, const char *schema, const char *name);
    void *verify_skip_arg;
    int pass_n;              /* the pass sync-back just recorded */
    int64_t pass_entries;    /* ledger entries it replayed */
    int64_t pass_ms;
    bool pass_wrote_back;    /* primary-wins wrote to the backup in it */
    int64_t touched_ms;      /* pre-sync: the touched keys' check, measured */

    atomic_bool stop;        /* cancelled, timed out or failed: stop working */

    pthread_mutex_t mu;      /* guards everything below */
    int *fds;                /* sockets of the open connections (-1 = free slot) */
    size_t nfds, capfds;
    bool failed;
    bool conflicts;
    char error[512];
    sbuf report;
    int64_t rows, tables;
    int64_t differing;       /* sync_result.differing */
    bool cancelled;          /* by sync_job_free: failures are expected */
} sync_ctx;

/* Record the job's failure (first one wins: later errors are usually its
 * consequences) and log it once. The text is masked. */
void sync_fail(sync_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool sync_failed(sync_ctx *c);
/* Append one line to the report (also logged at info). */
void sync_report(sync_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Stop: shut every registered socket down (no-op for closed ones). */
void sync_shutdown_conns(sync_ctx *c);
void sync_add_counts(sync_ctx *c, int64_t rows, int64_t tables);

/* ---- blocking connections on worker threads -------------------------- */

typedef struct {
    PGconn *pg;
    sync_ctx *ctx;
    const char *side;        /* "primary" | "backup": for messages */
    int slot;                /* index in ctx->fds, -1 when not registered */
    int server_version;
} sconn;

/* Connect (a 15 s bound, stops early when the job stops), register the
 * socket, and apply the session settings every sync connection shares
 * (UTC, ISO dates, text output settings that make to_jsonb() and row text
 * the same on both sides, search_path = pg_catalog, pg_temp, writes
 * allowed even on a database fenced with default_transaction_read_only). */
bool sconn_open(sync_ctx *c, sconn *s, bool primary);
void sconn_close(sconn *s);  /* accepts a closed one */

/* Run one statement; the result when it succeeded (caller PQclear()s),
 * else NULL with the job failed ("on the primary: <server message>" plus
 * `what` as context when not NULL). */
PGresult *sq_exec(sconn *s, const char *sql, const char *what);
/* Same with text parameters. */
PGresult *sq_params(sconn *s, const char *sql, int n, const char *const *values, const char *what);
/* A statement whose result is not needed. */
bool sq_cmd(sconn *s, const char *sql, const char *what);
/* A statement that may fail without failing the job (e.g. trying SET
 * session_replication_role). Returns whether it worked; the error text in
 * err when err is not NULL. */
bool sq_try(sconn *s, const char *sql, char *err, size_t errlen);

/* The same kind of statement on two connections at once (both servers
 * work in parallel); both results or NULLs with the job failed. */
bool sq_exec_both(sconn *a, const char *sql_a, sconn *b, const char *sql_b,
                  PGresult **ra, PGresult **rb, const char *what);

/* One statement with text parameters on two connections at once (the
 * same text and values on both); both results or NULLs with the job failed. */
bool sq_params_both(sconn *a, sconn *b, const char *sql, int n, const char *const *values,
                    PGresult **ra, PGresult **rb, const char *what);

/* Stream `out_sql` (a COPY ... TO STDOUT) from src into `in_sql` (a COPY
 * ... FROM STDIN) on dst; *rows = rows written. On failure the job is NOT
 * failed: err gets the text, both connections are back to idle (within
 * their transaction, which is aborted if the error was on that side). */
bool sq_copy(sconn *src, const char *out_sql, sconn *dst, const char *in_sql,
             int64_t *rows, char *err, size_t errlen);

/* One-line, masked text of a libpq message. */
void sq_errtext(const char *msg, char *out, size_t n);

/* ---- catalog ---------------------------------------------------------- */

typedef struct {
    char *name;
    char *type;              /* format_type() */
    bool generated;          /* GENERATED ALWAYS AS (...) STORED: not written */
    bool user_type;          /* type (or element type) not built in: COPY text */
    bool identity_always;    /* GENERATED ALWAYS AS IDENTITY: never in an UPDATE SET */
    bool hashable;           /* its type has a hash function (hash_record_extended works) */
} scol;

typedef struct {
    char *schema, *name;
    char *qname;             /* "schema"."name" */
    char *label;             /* schema.name, for messages */
    char oid[16];            /* on the side it was read from */
    scol *cols;
    size_t ncols;
    char **key;              /* primary key or replica identity columns */
    size_t nkey;
    int64_t bytes;           /* pg_relation_size */
    char **refs;             /* labels of the synced tables this one references (FK) */
    size_t nrefs;
    int level;               /* FK depth: 0 references nothing synced */
    bool cyclic;             /* part of an FK cycle */
} stable;

typedef struct {
    char *schema, *name, *qname, *label;
    char oid[16];
    int64_t increment;
} sseq;

typedef struct {
    stable *t;
    size_t n;
    sseq *seq;
    size_t nseq;
} scatalog;

/* Tables (relkind r) and sequences of ctx->schemas minus schema drd and
 * ctx->exclude, sorted by schema and name, with levels computed. */
bool catalog_load(sconn *s, scatalog *out);
void catalog_free(scatalog *cat);
stable *catalog_find(const scatalog *cat, const char *schema, const char *name);
/* Connect to both sides and load both catalogs, then catalog_compare;
 * false = the job failed. */
bool sync_open_both(sync_ctx *c, sconn *b, scatalog *bcat, sconn *p, scatalog *pcat);
/* Same tables with the same columns (names, types, order) on both sides;
 * else fail naming the differences (DDL during the outage). */
bool catalog_compare(sync_ctx *c, const scatalog *backup, const scatalog *primary);
/* The non-generated columns as a quoted list: "a", "b" (prefix e.g. "t."). */
void catalog_collist(sbuf *b, const stable *t, const char *prefix, bool with_generated);
/* t.k1 = k.k1 AND t.k2 = k.k2 */
void catalog_keyjoin(sbuf *b, const stable *t, const char *l, const char *r);
/* Any column whose type is not built in (binary COPY would carry OIDs). */
bool catalog_needs_text(const stable *t);
/* Every column hashable: rows can be hashed with hash_record_extended()
 * (servers >= 14), by the types' own hash functions, without printing. */
bool catalog_hashable(const stable *t);

/* SELECT count(*), checksum FROM t: the order-independent row checksum
 * verify compares: the sum of 64-bit row hashes, hash_record_extended()
 * when `by_record` (both servers >= 14, t hashable), else
 * hashtextextended() of the row's text. */
void sync_checksum_sql(sbuf *b, const stable *t, bool by_record);
/* The 64-bit hash of the row of alias t that verify sums (and converge
 * compares): `t.*`, never a bare `t`, which a column named t would shadow. */
void sync_row_hash_sql(sbuf *b, const stable *t, bool by_record);
/* "a.k1, a.k2, ": the key columns of alias a, each followed by ", ". */
void sync_key_cols_sql(sbuf *b, const stable *t, const char *alias);
/* CREATE TEMP TABLE name (k1.., h[, touched]) ON COMMIT DROP, typed like
 * t's key columns, a bigint row hash h (and a boolean touched): where the
 * other side's keys and row hashes are streamed by COPY, then joined. */
void sync_key_table_sql(sbuf *b, const stable *t, const char *name, bool touched);
/* Both servers have hash_record_extended (>= 14). */
bool sync_record_hash_ok(const sconn *b, const sconn *p);

/* Every sequence to at least the backup's value (greatest/least by the
 * sign of the increment), on the primary connection. */
bool sync_sequences(sync_ctx *c, sconn *b, sconn *p, const scatalog *cat);

/* The ledger entries of one pass (sync_window.c): the whole ledger, or
 * with passes recorded only those after the last pass's snapshot (alias
 * l for drd.ledger). "true" when not in window mode. */
void sync_tail_filter(sbuf *q, const sync_ctx *c, const char *alias);
/* At the start of a sync-back in b's REPEATABLE READ transaction: window
 * mode (drd.passes exists) and the last pass's snapshot into c; the
 * transaction's own snapshot into *now (malloc'd). False on error. */
bool sync_pass_begin(sync_ctx *c, sconn *b, char **now);
/* Record the pass (in b's transaction, before its COMMIT). */
bool sync_pass_record(sync_ctx *c, sconn *b, const char *snapshot, int64_t entries, int64_t ms);
/* The typed value of key column k from the ledger's jsonb key p.k, AS its name. */
void sync_key_from_json(sbuf *q, const stable *t, size_t k);

/* The stop window's check of the keys the outage touched (sync_keys.c):
 * every key of t's ledger entries looked up on both sides at once (b in
 * its transaction; hash and merge joins off on both), row hashes compared. */
typedef struct {
    int64_t keys;            /* distinct keys the ledger has for the table */
    int64_t missing;         /* a backup row, none on the primary */
    int64_t different;       /* rows on both sides, different */
    int64_t primary_only;    /* no backup row, a primary one */
    char sample[200];        /* the first key that differs, "id=42" ("" = none) */
} key_diff;
bool sync_keys_compare(sync_ctx *c, sconn *b, sconn *p, const stable *t, bool by_record, key_diff *out);

/* Try SET session_replication_role = replica (superuser, or a role granted
 * SET on it); false leaves the session as it was. */
bool sync_try_replica(sconn *p);

/* ---- foreign keys in sync-back (sync_fk.c) ----------------------------- */

/* A changed table as the foreign-key checks see it: its key table
 * pg_temp.drd_k<idx> (absent when copied whole) and staging drd_s<idx>. */
typedef struct {
    const stable *t;
    size_t idx;
    bool whole;
} fk_table;

/* pg_temp.drd_map and the helper functions, on the primary (q: scratch). */
bool fk_map(sconn *p, const fk_table *tabs, size_t n, sbuf *q);
/* Keys the sync would remove that primary-only rows still reference
 * become conflicts (reported); returns how many, -1 on error. */
int64_t fk_detect(sconn *p);
/* backup-wins: delete those keys with the foreign keys' own actions. */
bool fk_apply_actions(sconn *p, bool replica);
/* After applying: no foreign key touching an applied table is violated
 * by the affected rows; false (with the constraint and a row) if one is. */
bool fk_validate(sconn *p);
/* verify: every validated foreign key touching a synced table (cat: the
 * primary's) checked whole on the primary, on a connection of its own;
 * *nbad violated ones, each appended to bad. false only on an error. */
bool fk_verify(sync_ctx *c, const scatalog *cat, int *nbad, sbuf *bad);

/* ---- operations (run on the job thread; true = ok) ---------------------- */

bool sync_op_capture(sync_ctx *c);
/* Was the backup writable for the app when capture was first installed
 * (not fenced: then writes made there before are not in the ledger)?
 * *known = false when there is no capture or it predates the record;
 * *at = when it was installed. false only on an error. */
bool capture_was_writable(sconn *b, bool *known, bool *writable, char *at, size_t atlen);
bool sync_op_uncapture(sync_ctx *c);
bool sync_op_back(sync_ctx *c);
bool sync_op_full(sync_ctx *c);
bool sync_op_verify(sync_ctx *c);
/* sync_window.c: passes while the app runs, ending with a full verify
 * against one snapshot of the backup; and the stop window's verify. */
bool sync_op_presync(sync_ctx *c);
bool sync_op_verify_window(sync_ctx *c);
bool sync_op_converge(sync_ctx *c);

/* Worker pool: n threads, each opening its own connections with `open`,
 * taking task indexes 0..ntasks-1 in order and running `run` on them, until
 * done or the job stops. */
typedef struct {
    sconn b, p;
    int id;
} sworker;

bool sync_pool(sync_ctx *c, int n, size_t ntasks,
               bool (*open)(sync_ctx *c, sworker *w, void *arg),
               bool (*run)(sync_ctx *c, sworker *w, size_t task, void *arg),
               void *arg);

#endif
