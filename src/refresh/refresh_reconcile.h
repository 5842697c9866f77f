/* refresh_reconcile.h - internals of reconcile mode, shared by
 * refresh_reconcile.c (the pass: catalog, ledger, batches, look-back) and
 * refresh_reconcile_sql.c (the SQL each step sends). Not a contract. */
#ifndef DRD_REFRESH_RECONCILE_H
#define DRD_REFRESH_RECONCILE_H

#include <stdio.h>

#include <jansson.h>

#include "refresh_int.h"

#define REC_SQL_MS        120000
#define COPY_BATCH_MIN    5000      /* rows per batch of an initial or whole copy */
#define LEDGER_BATCH      5000
#define LB_BUCKETS        30
#define MAX_BAD_BUCKETS   64
#define LB_EVERY_MS       10000     /* the look-back at most this often */
#define CATALOG_KEEP_MS   60000     /* the catalogs are read again after this */
#define LEDGER_RETRY_MS   3600000   /* deletes = auto: a refused ledger is tried again after this */
#define CMP_FANOUT        64        /* the key comparison: tiles a range is cut into, at most */
#define CMP_LEAF          256       /* a differing range this small is checked key by key */
#define CMP_LEAF_BATCH    4096      /* keys checked on the source in one statement, about */
#define CMP_BATCH_TILES   512       /* tiles (of several ranges) digested in one statement, about */

/* Every source transaction starts with these: output that does not depend
 * on what another client of a pooler left in the server's session. */
#define SRC_BEGIN "BEGIN READ ONLY; SET LOCAL DateStyle = ISO; SET LOCAL IntervalStyle = postgres;" \
                  " SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 3;" \
                  " SET LOCAL bytea_output = hex; "
#define BACK_BEGIN "BEGIN; SET LOCAL DateStyle = ISO; SET LOCAL IntervalStyle = postgres;" \
                   " SET LOCAL TimeZone = 'UTC'; "

typedef enum { B_INCR, B_FULL, B_BUCKET } batch_kind;

typedef enum {
    RS_CATALOG, RS_BACKUP, RS_INSTALL, RS_DRAIN, RS_DRAIN_APPLY, RS_DRAIN_PRUNE,
    RS_FETCH, RS_APPLY, RS_LB_SRC, RS_LB_BACK,
    RS_CMP_WHOLE_BACK, RS_CMP_WHOLE_SRC,            /* refresh_compare.c */
    RS_CMP_SPLIT, RS_CMP_HASH, RS_CMP_KEYS, RS_CMP_MISSING, RS_CMP_DELETE,
} rstate;

typedef struct rec_cmp rec_cmp;

struct rec_pass {
    job_t *j;
    rstate st;
    pgexec_t *sql;
    rconn src;
    char *c_src;
    rec_table *t;
    size_t nt, ti;
    bool ledger;             /* deletes come from the ledger */
    bool want_install;       /* the ledger or a trigger is missing */
    bool on_source;          /* the running pgexec talks to the source */
    bool back_super;
    bool do_lookback;        /* this pass compares the look-back windows */
    int64_t batch, lookback_ms, full_every_ms, compare_every_ms;
    deletes_mode deletes;
    char *tables, *change_columns, *schemas, *exclude;
    int64_t started_at;
    /* the table being worked on */
    store_watermark wm;
    batch_kind bk;
    int64_t limit;
    char *payload;           /* the fetched batch, JSON [[col text...]...] */
    long nrows;
    char *ledger_ids;        /* drained entries to prune, "1,2,3" */
    json_t *lb_src;          /* the source's buckets */
    int64_t bucket_s;
    int64_t bad[MAX_BAD_BUCKETS];
    size_t nbad, bi;
    char *bucket_key;        /* keyset position inside the bucket being copied again */
    char *lb_cond;           /* the look-back window of the table, a WHERE fragment */
    rec_cmp *cmp;            /* the key comparison under way (refresh_compare.c) */
    /* what the pass did */
    int64_t bytes, rows_copied, rows_deleted, buckets_again;
    size_t tables_whole;
};

/* A growing string (open_memstream); NULL on OOM. */
typedef struct {
    FILE *f;
    char *s;
    size_t n;
} rsql;

bool rsql_open(rsql *m);
char *rsql_close(rsql *m);                 /* the string (malloc'd), NULL on OOM */
void rsql_lit(rsql *m, const char *s);      /* a quoted literal */
/* ", " separated columns idx[0..n) of t, each between prefix and suffix. */
void rsql_cols(rsql *m, const rec_table *t, const size_t *idx, size_t n, const char *prefix, const char *suffix);
/* The keyset columns of the pass's batch kind (change column then key, or key). */
size_t rsql_keyset(const rec_pass *p, const rec_table *t, size_t *idx);
/* "(c, k) > ('v'::type, ...)" after the JSON position pos; "true" without one. */
bool rsql_after(rsql *m, const rec_table *t, const size_t *idx, size_t n, const char *pos);
bool rsql_time_type(const char *type);

/* The statements (malloc'd, NULL on OOM), each one simple query: */
char *rsql_catalog(const rec_pass *p);      /* source: tables, columns, keys, triggers, references */
char *rsql_backup(const rec_pass *p);       /* backup: superuser? tables missing? */
char *rsql_install(const rec_pass *p);      /* source: the ledger, its function, the triggers */
char *rsql_drain(void);                     /* source: the ledger's oldest entries */
void rsql_delete(rsql *m, const rec_table *t, json_t *keys);   /* backup: one table's deletes */
char *rsql_fetch(rec_pass *p, const rec_table *t, const char *pos);   /* source: the next batch */
char *rsql_apply(const rec_pass *p, const rec_table *t);   /* backup: upsert the batch */
char *rsql_lookback(const rec_pass *p, const rec_table *t);   /* either side: the buckets */

/* For refresh_compare.c: run one statement (takes sql; false: the pass
 * failed and was reported), fail the pass, end it successfully. */
bool rec_run_sql(rec_pass *p, rstate st, bool source, char *sql);
void rec_fail(rec_pass *p, const char *msg);
void rec_pass_finish(rec_pass *p);

/* The key comparison (refresh_compare.c): deletes without the ledger.
 * due: this pass compares (every compare_every); start: after the tables'
 * copies, ends the pass; result: a statement of the comparison answered. */
bool refresh_compare_due(const rec_pass *p);
void refresh_compare_start(rec_pass *p);
void refresh_compare_result(rec_pass *p, const pgexec_result *res);
void refresh_compare_free(rec_cmp *c);                  /* accepts NULL */

/* Its statements (refresh_compare_sql.c; malloc'd, NULL on OOM or a bad
 * range). A range: JSON [lo, hi, ...], key tuples (arrays of text) or null. */
char *csql_split(const rec_table *t, json_t *ranges);  /* backup: tiles [[range, last key, n, hash]...] */
char *csql_hash(const rec_table *t, json_t *ranges);   /* source: [[n, hash]...] per range */
char *csql_keys(const rec_table *t, json_t *ranges);   /* backup: the ranges' keys */
char *csql_missing(const rec_table *t, json_t *keys);  /* source: those of keys it lacks */
char *csql_delete(const rec_pass *p, const rec_table *t, json_t *keys);   /* backup */

#endif
