/* sync_full.c - the worker pool and verify (full mode: sync_copy.c).
 *
 * verify: per synced table, count(*) and an order-independent checksum
 *   (the sum of 64-bit row hashes, see sync_checksum_sql) computed by each
 *   server, both at once, [sync] parallel tables at a time. A table with a
 *   key whose sums differ is looked at row by row: the backup's keys and
 *   row hashes are streamed into a temporary table on the primary and
 *   joined there. When every backup row is on the primary, identical, and
 *   the primary merely has more (rows it took before the outage that never
 *   reached the backup), the table passes, reported as such; else it
 *   differs, with how many backup rows are missing or different. Then
 *   every foreign key touching a synced table is checked on the primary
 *   (fk_verify, sync_fk.c): extra primary rows pass only while what they
 *   reference is there. */
#include "sync_int.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/log.h"
#include "drd/core/util.h"
#include "drd/core/worker.h"


/* The 64-bit hash of the row of alias t that verify sums: `t.*`, never a
 * bare `t`, which a column named t would shadow. */
void sync_row_hash_sql(sbuf *b, const stable *t, bool by_record)
{
    if (by_record && catalog_hashable(t))
        sb_add(b, "hash_record_extended(t.*, 0)");
    else
        sb_add(b, "hashtextextended((t.*)::text, 0)");
}

void sync_key_cols_sql(sbuf *b, const stable *t, const char *alias)
{
    for (size_t k = 0; k < t->nkey; k++) {
        sb_printf(b, "%s.", alias);
        sb_ident(b, t->key[k]);
        sb_add(b, ", ");
    }
}

void sync_key_table_sql(sbuf *b, const stable *t, const char *name, bool touched)
{
    sb_printf(b, "CREATE TEMP TABLE %s (", name);
    for (size_t k = 0; k < t->nkey; k++)
        sb_printf(b, "k%zu, ", k + 1);
    sb_printf(b, "h%s) ON COMMIT DROP AS SELECT ", touched ? ", touched" : "");
    sync_key_cols_sql(b, t, "t");
    sb_printf(b, "0::bigint%s FROM ONLY %s t WITH NO DATA", touched ? ", true" : "", t->qname);
}

void sync_checksum_sql(sbuf *b, const stable *t, bool by_record)
{
    /* sum(bigint) is numeric: no overflow */
    sb_add(b, "SELECT count(*), coalesce(sum(");
    sync_row_hash_sql(b, t, by_record);
    sb_printf(b, "), 0) FROM ONLY %s t", t->qname);
}

bool sync_record_hash_ok(const sconn *b, const sconn *p)
{
    return b->server_version >= 140000 && p->server_version >= 140000;
}

/* ---- pool ------------------------------------------------------------------------ */

typedef struct {
    sync_ctx *c;
    size_t next, ntasks;
    bool (*open)(sync_ctx *c, sworker *w, void *arg);
    bool (*run)(sync_ctx *c, sworker *w, size_t task, void *arg);
    void *arg;
    int id;
} pool;

typedef struct {
    pool *p;
    int id;
} pool_thread;

static void *pool_main(void *arg)
{
    pool_thread *pt = arg;
    pool *p = pt->p;
    sync_ctx *c = p->c;
    sworker w = { .id = pt->id };
    w.b.slot = w.p.slot = -1;
    if (p->open(c, &w, p->arg)) {
        for (;;) {
            pthread_mutex_lock(&c->mu);
            size_t task = p->next++;
            pthread_mutex_unlock(&c->mu);
            if (task >= p->ntasks || atomic_load(&c->stop))
                break;
            if (!p->run(c, &w, task, p->arg))
                break;
        }
    }
    sconn_close(&w.b);
    sconn_close(&w.p);
    return NULL;
}

bool sync_pool(sync_ctx *c, int n, size_t ntasks,
               bool (*open)(sync_ctx *c, sworker *w, void *arg),
               bool (*run)(sync_ctx *c, sworker *w, size_t task, void *arg),
               void *arg)
{
    if (ntasks == 0)
        return true;
    if ((size_t)n > ntasks)
        n = (int)ntasks;
    if (n < 1)
        n = 1;
    pool p = { .c = c, .ntasks = ntasks, .open = open, .run = run, .arg = arg };
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    pool_thread *pt = calloc((size_t)n, sizeof(*pt));
    if (th == NULL || pt == NULL) {
        free(th);
        free(pt);
        sync_fail(c, "out of memory");
        return false;
    }
    int started = 0;
    for (int i = 0; i < n; i++) {
        pt[i] = (pool_thread){ .p = &p, .id = i };
        if (!worker_spawn(&th[i], false, pool_main, &pt[i]))
            break;
        started++;
    }
    if (started == 0)
        sync_fail(c, "cannot start worker threads");
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    free(pt);
    return !sync_failed(c);
}

/* ---- verify ------------------------------------------------------------------------ */

/* What verify found for one table. */
typedef enum {
    V_EQUAL,                 /* same count and checksum */
    V_SUBSET,                /* the primary has every backup row, identical, and more */
    V_DIFFERENT,
    V_SKIPPED,               /* not asked for (c->verify_skip) */
} vstate;

typedef struct {
    char b[2][48];           /* count, checksum on the backup */
    char p[2][48];           /* on the primary */
    vstate state;
    bool checked;            /* the backup's rows were looked up on the primary */
    int64_t missing;         /* backup rows the outage changed whose key the primary lacks */
    int64_t changed;         /* ... whose key the primary has with other content */
    int64_t stale_missing;   /* backup rows the outage never touched, deleted on the primary */
    int64_t stale_changed;   /* ... changed on the primary (the backup was behind) */
    char stale_key[128];     /* the first of those keys, "id=9" (key columns only) */
    char why[300];           /* why they could not be looked up ("" = not tried) */
} vtable;

typedef struct {
    const scatalog *cat;
    bool by_record;
    bool ledger;             /* tell the outage's rows (in drd.ledger) from stale ones */
    vtable *v;               /* per table */
} verify_arg;

/* With c->verify_snapshot, the backup is read in that exported snapshot
 * (the pre-sync pass's): the primary holds what the backup held then. */
static bool verify_open(sync_ctx *c, sworker *w, void *arg)
{
    (void)arg;
    if (!sconn_open(c, &w->b, false) || !sconn_open(c, &w->p, true))
        return false;
    if (c->verify_snapshot == NULL)
        return true;
    sbuf q;
    sb_init(&q);
    sb_add(&q, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ");
    sb_literal(&q, c->verify_snapshot);
    bool ok = !q.oom && sq_cmd(&w->b, sb_str(&q), "reading the backup in the pass's snapshot");
    sb_free(&q);
    return ok;
}

/* The lookup could not run: fine for the job (the table stays a difference,
 * saying why) unless the job stopped or a connection is gone. */
static bool subset_soft_fail(sync_ctx *c, sworker *w, const stable *t, vtable *v, const char *err)
{
    if (atomic_load(&c->stop)) {
        sync_fail(c, "cancelled");  /* already failed: only the first failure counts */
        return false;
    }
    if (PQstatus(w->b.pg) == CONNECTION_BAD || PQstatus(w->p.pg) == CONNECTION_BAD) {
        sync_fail(c, "verify %s: %s", t->label, err);
        return false;
    }
    str_copy(v->why, err, sizeof(v->why));
    if (!sq_try(&w->p, "ROLLBACK", NULL, 0) && PQstatus(w->p.pg) == CONNECTION_BAD) {
        sync_fail(c, "verify %s: lost the connection to the primary", t->label);
        return false;
    }
    return true;
}

static bool primary_try(sworker *w, const char *sql, char *err, size_t errlen)
{
    char e[400];
    if (sq_try(&w->p, sql, e, sizeof(e)))
        return true;
    snprintf(err, errlen, "on the primary: %s", e);
    return false;
}

/* On the backup, for each row of alias t: whether the outage changed its
 * key (drd.ledger has it as key_old or key_new, or the table was
 * truncated). touched_col: the boolean column; touched_join: what it needs
 * after "FROM ONLY t t" (the table's ledger keys, distinct, hash-joined:
 * the ledger has no index). Without `ledger` every row counts as changed
 * (full mode, or no capture): then any difference fails. */
static void touched_col(sbuf *b, bool ledger)
{
    sb_add(b, ledger ? "(lk.k IS NOT NULL OR tr.truncated)" : "true");
}

static void touched_join(sbuf *b, const stable *t, bool ledger)
{
    if (!ledger)
        return;
    sbuf which;
    sb_init(&which);
    sb_add(&which, "l.schema_name = ");
    sb_literal(&which, t->schema);
    sb_add(&which, " AND l.table_name = ");
    sb_literal(&which, t->name);
    sb_printf(b, " LEFT JOIN (SELECT DISTINCT v.k FROM drd.ledger l, LATERAL (VALUES (l.key_old), (l.key_new)) v(k)"
                 " WHERE %s AND v.k IS NOT NULL) lk ON lk.k = jsonb_build_object(", sb_str(&which));
    for (size_t k = 0; k < t->nkey; k++) {
        sb_printf(b, "%s", k ? ", " : "");
        sb_literal(b, t->key[k]);
        sb_add(b, ", t.");
        sb_ident(b, t->key[k]);
    }
    sb_printf(b, ") CROSS JOIN (SELECT EXISTS (SELECT 1 FROM drd.ledger l WHERE %s AND l.op = 'T')"
                 " AS truncated) tr", sb_str(&which));
    if (which.oom)
        b->oom = true;
    sb_free(&which);
}

/* On the primary: the backup's rows (drd_verify_rows) missing there and
 * different there, touched by the outage, then not, and the first stale
 * key. Key columns are NOT NULL (primary key, replica identity index): a
 * NULL one is a missing row. */
static void missing_changed_sql(sbuf *q, const stable *t, bool by_record)
{
    for (int touched = 1; touched >= 0; touched--) {
        sb_printf(q, "%scount(*) FILTER (WHERE %sk.touched AND t.", touched ? "SELECT " : ", ",
                  touched ? "" : "NOT ");
        sb_ident(q, t->key[0]);
        sb_printf(q, " IS NULL), count(*) FILTER (WHERE %sk.touched AND t.", touched ? "" : "NOT ");
        sb_ident(q, t->key[0]);
        sb_add(q, " IS NOT NULL AND ");
        sync_row_hash_sql(q, t, by_record);
        sb_add(q, " <> k.h)");
    }
    /* the first stale key, named by its key columns (never another value) */
    sb_add(q, ", min(concat(");
    for (size_t k = 0; k < t->nkey; k++) {
        sb_literal(q, t->key[k]);
        sb_printf(q, ", '=', k.k%zu%s", k + 1, k + 1 < t->nkey ? ", ', ', " : "");
    }
    sb_add(q, ")) FILTER (WHERE NOT k.touched AND (t.");
    sb_ident(q, t->key[0]);
    sb_add(q, " IS NULL OR ");
    sync_row_hash_sql(q, t, by_record);
    sb_add(q, " <> k.h))");
    sb_printf(q, " FROM pg_temp.drd_verify_rows k LEFT JOIN ONLY %s t ON ", t->qname);
    for (size_t k = 0; k < t->nkey; k++) {
        sb_printf(q, "%st.", k ? " AND " : "");
        sb_ident(q, t->key[k]);
        sb_printf(q, " = k.k%zu", k + 1);
    }
}

/* Is every row of the backup's table t on the primary, identical? The
 * backup's key columns and row hashes (the checksum's, one per row), with
 * whether the outage changed the row (touched_col), are streamed by COPY
 * into a temporary table of the primary session (created in a READ WRITE
 * transaction, which a fence by default_transaction_read_only allows: a
 * temporary table writes none of the database's tables; rolled back at the
 * end), then joined there to the table by key: the backup rows whose key
 * the primary lacks, and those whose row hashes differ, are counted, apart
 * for the rows the outage changed (which sync-back must have applied) and
 * the others (the backup was behind the primary: its replication lag, or
 * its last copy's age; the primary's version stands). Nothing is buffered
 * here: COPY passes chunk by chunk. False only when the job fails
 * (cancelled, a connection lost). */
static bool verify_subset(sync_ctx *c, sworker *w, const stable *t, const verify_arg *va, vtable *v)
{
    bool by_record = va->by_record;
    sbuf create, out, q;
    sb_init(&create);
    sb_init(&out);
    sb_init(&q);
    char err[512];
    bool ok = true;
    PGresult *r = NULL;

    sync_key_table_sql(&create, t, "drd_verify_rows", true);

    sb_add(&out, "COPY (SELECT ");
    sync_key_cols_sql(&out, t, "t");
    sync_row_hash_sql(&out, t, by_record);
    sb_add(&out, ", ");
    touched_col(&out, va->ledger);
    sb_printf(&out, " FROM ONLY %s t", t->qname);
    touched_join(&out, t, va->ledger);
    sb_add(&out, ") TO STDOUT");

    missing_changed_sql(&q, t, by_record);
    if (create.oom || out.oom || q.oom) {
        sync_fail(c, "out of memory");
        ok = false;
        goto out;
    }

    int64_t rows = 0;
    if (!primary_try(w, "BEGIN READ WRITE", err, sizeof(err)) ||
        !primary_try(w, sb_str(&create), err, sizeof(err))) {
        ok = subset_soft_fail(c, w, t, v, err);
        goto out;
    }
    if (!sq_copy(&w->b, sb_str(&out), &w->p, "COPY pg_temp.drd_verify_rows FROM STDIN", &rows,
                 err, sizeof(err))) {
        ok = subset_soft_fail(c, w, t, v, err);
        goto out;
    }
    if (!primary_try(w, "ANALYZE pg_temp.drd_verify_rows", err, sizeof(err))) {
        ok = subset_soft_fail(c, w, t, v, err);
        goto out;
    }
    log_debug("sync: primary: %.300s", sb_str(&q));
    r = PQexec(w->p.pg, sb_str(&q));
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char e[400];
        sq_errtext(r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(w->p.pg), e, sizeof(e));
        snprintf(err, sizeof(err), "on the primary: %s", e);
        ok = subset_soft_fail(c, w, t, v, err);
        goto out;
    }
    v->missing = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    v->changed = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    v->stale_missing = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    v->stale_changed = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    str_copy(v->stale_key, PQgetvalue(r, 0, 4), sizeof(v->stale_key));
    v->checked = true;
    if (!primary_try(w, "ROLLBACK", err, sizeof(err))) {
        v->checked = false;
        ok = subset_soft_fail(c, w, t, v, err);
        goto out;
    }
    log_debug("sync: verify %s: %" PRId64 " backup rows looked up on the primary: %" PRId64
              " missing, %" PRId64 " different, %" PRId64 " stale", t->label, rows, v->missing,
              v->changed, v->stale_missing + v->stale_changed);
out:
    PQclear(r);
    sb_free(&create);
    sb_free(&out);
    sb_free(&q);
    return ok;
}

/* Incremental mode with capture installed: verify can tell the outage's
 * rows from stale ones. */
static bool verify_has_ledger(sconn *b, bool *out)
{
    PGresult *r = sq_exec(b, "SELECT to_regclass('drd.ledger') IS NOT NULL", "looking for the ledger");
    if (r == NULL)
        return false;
    *out = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return true;
}

static bool verify_run(sync_ctx *c, sworker *w, size_t task, void *arg)
{
    verify_arg *va = arg;
    const stable *t = &va->cat->t[task];
    vtable *v = &va->v[task];
    if (v->state == V_SKIPPED)
        return true;
    sbuf q;
    sb_init(&q);
    sync_checksum_sql(&q, t, va->by_record);
    PGresult *rb, *rp;
    bool ok = !q.oom && sq_exec_both(&w->b, sb_str(&q), &w->p, sb_str(&q), &rb, &rp, "checksumming");
    if (ok) {
        str_copy(v->b[0], PQgetvalue(rb, 0, 0), sizeof(v->b[0]));
        str_copy(v->b[1], PQgetvalue(rb, 0, 1), sizeof(v->b[1]));
        str_copy(v->p[0], PQgetvalue(rp, 0, 0), sizeof(v->p[0]));
        str_copy(v->p[1], PQgetvalue(rp, 0, 1), sizeof(v->p[1]));
        PQclear(rb);
        PQclear(rp);
    } else if (q.oom) {
        sync_fail(c, "out of memory");
    }
    sb_free(&q);
    if (!ok)
        return false;
    if (strcmp(v->b[0], v->p[0]) == 0 && strcmp(v->b[1], v->p[1]) == 0) {
        v->state = V_EQUAL;
        return true;
    }
    v->state = V_DIFFERENT;
    if (t->nkey == 0)
        return true;
    if (!verify_subset(c, w, t, va, v))
        return false;
    /* every row the outage changed is on the primary, identical, and the
     * primary has more rows or other versions of rows the outage never
     * touched: what it took before the outage that never reached the
     * backup. (Equal counts without stale rows cannot get here: the
     * checksums would agree, unless a table changed during verify.) */
    if (v->checked && v->missing == 0 && v->changed == 0 &&
        (v->stale_missing + v->stale_changed > 0 ||
         strtoll(v->p[0], NULL, 10) > strtoll(v->b[0], NULL, 10)))
        v->state = V_SUBSET;
    return true;
}

static const char *plural(int64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* "3 backup rows missing on the primary, 1 different there" etc.; "" when
 * there is nothing to add. */
static void verify_detail(sbuf *b, const vtable *v, const stable *t)
{
    if (t->nkey == 0) {
        sb_add(b, "no primary key: its rows cannot be looked up one by one");
    } else if (!v->checked) {
        if (v->why[0] != '\0')
            sb_printf(b, "could not look the backup's rows up on the primary: %s", v->why);
    } else if (v->missing > 0 && v->changed > 0) {
        sb_printf(b, "%" PRId64 " backup %s missing on the primary, %" PRId64 " different there",
                  v->missing, plural(v->missing, "row", "rows"), v->changed);
    } else if (v->missing > 0) {
        sb_printf(b, "%" PRId64 " backup %s missing on the primary", v->missing,
                  plural(v->missing, "row", "rows"));
    } else if (v->changed > 0) {
        sb_printf(b, "%" PRId64 " backup %s different on the primary", v->changed,
                  plural(v->changed, "row", "rows"));
    } else {
        sb_add(b, "every backup row is on the primary, identical, yet the counts do not show"
                  " extra primary rows: did the table change during verify?");
    }
}

/* The online verify's result of one table (not a difference), for
 * drd.verified: rows only the primary has and stale rows, as counted in
 * verify_report_table. */
static void verify_record_table(sync_ctx *c, const stable *t, const vtable *v, int64_t nb, int64_t np)
{
    int64_t dif = v->state == V_SUBSET ? np - nb + 2 * v->stale_missing + v->stale_changed : 0;
    sb_printf(c->verify_record, "%s(", c->verify_record->len ? ", " : "");
    sb_literal(c->verify_record, t->schema);
    sb_add(c->verify_record, ", ");
    sb_literal(c->verify_record, t->name);
    sb_printf(c->verify_record, ", '%s', %" PRId64 ", %" PRId64 ", %" PRId64 ")",
              v->state == V_EQUAL ? "equal" : "subset", nb, np, dif);
}

/* What verify found, summed over the tables. */
typedef struct {
    int nbad, nsubset;
    const char *why;         /* the first reason a lookup could not run */
    int64_t rows, extra, differing;
    bool writable;           /* the backup was not fenced when capture was installed */
    char installed[64];
    char first_stale[300];   /* "public.parent id=9": the first row the backup was behind in */
    sbuf bad, line;
} vsum;

static void verify_report_subset(sync_ctx *c, const stable *t, const vtable *v, int64_t nb, int64_t np,
                                 vsum *s)
{
    /* rows only the primary has: its count minus the backup rows it has */
    int64_t more = np - (nb - v->stale_missing);
    int64_t stale = v->stale_missing + v->stale_changed;
    s->nsubset++;
    s->extra += more;
    s->differing += more + stale;
    if (stale > 0 && s->first_stale[0] == '\0')
        snprintf(s->first_stale, sizeof s->first_stale, "%s %s", t->label, v->stale_key);
    const char *w1 = s->writable ? "; but the backup was not fenced when capture was installed (" : "";
    const char *w2 = s->writable ? s->installed : "";
    if (stale > 0)
        sync_report(c, "verify %s: the backup was behind the primary: %" PRId64 " backup %s"
                    " older than the primary's (%" PRId64 " changed, %" PRId64 " deleted there"
                    " before the outage; the outage never touched them: the primary's version"
                    " stands; first: %s), %" PRId64 " %s only on the primary; every row the outage"
                    " changed is on the primary, identical%s%s%s", t->label, stale,
                    plural(stale, "row", "rows"), v->stale_changed, v->stale_missing, v->stale_key, more,
                    plural(more, "row", "rows"), w1, w2,
                    s->writable ? "): some may be changes made there before it, which the"
                                  " ledger does not have" : "");
    else
        sync_report(c, "verify %s: primary has %" PRId64 " more %s than the backup (written there"
                    " before the outage, never copied to the backup); every backup row is on the"
                    " primary, identical%s%s%s", t->label, more, plural(more, "row", "rows"), w1, w2,
                    s->writable ? "): some may be rows deleted there before it, which the ledger"
                                  " does not have" : "");
}

/* One table's line of the report; a difference is added to s->bad. */
static void verify_report_table(sync_ctx *c, const stable *t, const vtable *v, vsum *s)
{
    if (v->state == V_SKIPPED)
        return;
    int64_t nb = strtoll(v->b[0], NULL, 10), np = strtoll(v->p[0], NULL, 10);
    s->rows += nb;
    if (c->verify_record != NULL && v->state != V_DIFFERENT)
        verify_record_table(c, t, v, nb, np);
    switch (v->state) {
    case V_SKIPPED:          /* not reached */
        break;
    case V_EQUAL:
        sync_report(c, "verify %s: %s rows, equal", t->label, v->b[0]);
        break;
    case V_SUBSET:
        verify_report_subset(c, t, v, nb, np, s);
        break;
    case V_DIFFERENT:
        sb_reset(&s->line);
        verify_detail(&s->line, v, t);
        sync_report(c, "verify %s: DIFFERENT: backup %s rows (checksum %s), primary %s rows"
                    " (checksum %s)%s%s", t->label, v->b[0], v->b[1], v->p[0], v->p[1],
                    s->line.len ? "; " : "", sb_str(&s->line));
        sb_printf(&s->bad, "%s%s (backup %s rows, primary %s rows%s)", s->nbad++ ? "; " : "",
                  t->label, v->b[0], v->p[0],
                  strcmp(v->b[0], v->p[0]) == 0 ? ", same count, different rows" : "");
        if (t->nkey > 0 && v->checked)
            sb_printf(&s->bad, ": %s", sb_str(&s->line));
        else if (t->nkey > 0 && v->why[0] != '\0' && s->why == NULL)
            s->why = v->why;
        break;
    }
}

/* The last line: the verdict over all tables (differences and violated
 * foreign keys fail the job). */
static bool verify_verdict(sync_ctx *c, const vsum *s, size_t nverify, size_t ntables, int nfk,
                           const sbuf *fkbad, int64_t t0)
{
    char d[32];
    format_duration(mono_ms() - t0, d, sizeof(d));
    if (s->nbad > 0) {
        sync_fail(c, "verify: %d of %zu tables differ: %s%s%s%s%s%s", s->nbad, nverify, sb_str(&s->bad),
                  s->why ? " (the backup's rows could not be looked up on the primary: " : "",
                  s->why ? s->why : "", s->why ? ")" : "", nfk ? "; " : "", sb_str(fkbad));
        return false;
    }
    if (nfk > 0) {
        sync_fail(c, "verify: %d foreign %s violated on the primary: %s", nfk,
                  plural(nfk, "key", "keys"), sb_str(fkbad));
        return false;
    }
    if (nverify < ntables)
        sync_report(c, "verify: %zu of %zu tables read whole, %" PRId64 " rows, all backup rows on the"
                    " primary (%s)", nverify, ntables, s->rows, d);
    else if (s->nsubset > 0 && s->differing > s->extra)
        sync_report(c, "verify: %zu tables, %" PRId64 " rows, every row the outage changed is on the"
                    " primary; the backup was behind in %d %s (%" PRId64 " %s differ, the primary's"
                    " kept) (%s)", ntables, s->rows, s->nsubset, plural(s->nsubset, "table", "tables"),
                    s->differing, plural(s->differing, "row", "rows"), d);
    else if (s->nsubset > 0)
        sync_report(c, "verify: %zu tables, %" PRId64 " rows, all backup rows on the primary (%d %s with"
                    " %" PRId64 " extra primary %s, kept) (%s)", ntables, s->rows, s->nsubset,
                    plural(s->nsubset, "table", "tables"), s->extra, plural(s->extra, "row", "rows"), d);
    else
        sync_report(c, "verify: %zu tables, %" PRId64 " rows, all equal (%s)", ntables, s->rows, d);
    /* issue 12's rule: not a failure (a backup behind its primary, e.g.
     * after a dump refresh), but said in one line the run shows */
    if (s->differing > 0)
        sync_report(c, "verify: %" PRId64 " %s that the outage never touched: the primary's"
                    " version stands (%s%s%s)", s->differing, plural(s->differing, "row differs", "rows differ"),
                    s->first_stale[0] ? "first: " : "rows only the primary has", s->first_stale,
                    s->writable ? "; the backup was not fenced when capture was installed: some may be"
                                  " writes made there before it" : "");
    return true;
}

/* Both catalogs, whether the ledger tells the outage's rows apart, and
 * whether capture found the backup writable; the connections are closed
 * again (the pool opens its own). */
static bool verify_prepare(sync_ctx *c, scatalog *bcat, scatalog *pcat, verify_arg *va, vsum *s)
{
    sconn b = { .slot = -1 }, p = { .slot = -1 };
    bool known = false;
    bool ok = sync_open_both(c, &b, bcat, &p, pcat);
    if (ok) {
        va->by_record = sync_record_hash_ok(&b, &p);
        ok = (c->full || verify_has_ledger(&b, &va->ledger)) &&
             /* extra primary rows may also be deletes the ledger could not see */
             capture_was_writable(&b, &known, &s->writable, s->installed, sizeof s->installed);
    }
    sconn_close(&b);
    sconn_close(&p);
    return ok;
}

bool sync_op_verify(sync_ctx *c)
{
    scatalog bcat = { 0 }, pcat = { 0 };
    verify_arg va = { 0 };
    vsum s = { 0 };
    sbuf fkbad;
    sb_init(&s.bad);
    sb_init(&s.line);
    sb_init(&fkbad);
    bool ok = false;
    int64_t t0 = mono_ms();
    if (!verify_prepare(c, &bcat, &pcat, &va, &s))
        goto cleanup;
    va.cat = &bcat;
    va.v = calloc(bcat.n + 1, sizeof(*va.v));
    if (va.v == NULL) {
        sync_fail(c, "out of memory");
        goto cleanup;
    }
    size_t nverify = 0;
    for (size_t i = 0; i < bcat.n; i++) {
        if (c->verify_skip != NULL && c->verify_skip(c, bcat.t[i].schema, bcat.t[i].name))
            va.v[i].state = V_SKIPPED;
        else
            nverify++;
    }
    if (nverify > 0 && !sync_pool(c, c->parallel, bcat.n, verify_open, verify_run, &va))
        goto cleanup;
    for (size_t i = 0; i < bcat.n; i++)
        verify_report_table(c, &bcat.t[i], &va.v[i], &s);
    int nfk = 0;
    /* verify_skip (the stop window after pre-sync): the foreign keys were
     * verified whole online, and sync-back checked the tail's rows */
    if (c->verify_skip == NULL && !fk_verify(c, &pcat, &nfk, &fkbad))
        goto cleanup;
    if (s.bad.oom || s.line.oom || fkbad.oom) {
        sync_fail(c, "out of memory");
        goto cleanup;
    }
    if (!verify_verdict(c, &s, nverify, bcat.n, nfk, &fkbad, t0))
        goto cleanup;
    sync_add_counts(c, s.rows, (int64_t)nverify);
    pthread_mutex_lock(&c->mu);
    c->differing = s.differing;
    pthread_mutex_unlock(&c->mu);
    ok = true;
cleanup:
    catalog_free(&bcat);
    catalog_free(&pcat);
    free(va.v);
    sb_free(&s.bad);
    sb_free(&s.line);
    sb_free(&fkbad);
    return ok;
}
