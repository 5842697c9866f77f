/* sync_converge.c - the backup made equal to the primary after a verified
 * failback (logical mode, before the subscription is recreated without a
 * copy: replication only carries changes, so rows the backup missed in the
 * replication lag before the outage would otherwise stay missing, stale or
 * deleted on it forever, and later changes of them would be skipped).
 *
 * The primary is the truth: sync-back has put every outage change on it
 * and verify has checked them. Per synced table, in one backup transaction
 * ([sync] parallel tables at a time):
 *   backup   LOCK the table (EXCLUSIVE: readers go on), stream its keys and
 *            64-bit row hashes (verify's) into a temporary table of the
 *            primary's session (one REPEATABLE READ transaction there,
 *            rolled back at the end);
 *   primary  one hash full join of them with the table by key (each row
 *            hashed once) keeps the keys that differ (pg_temp.drd_cv_diff:
 *            on the backup only, on the primary only, on both with other
 *            content); the backup's among them are streamed back and
 *            deleted on the backup, then the primary's rows among them are
 *            COPYed into the backup's table;
 *   backup   COMMIT.
 * Only the keys and hashes of equal rows cross the network, and nothing
 * is written for a table that is already equal. A table without a key is
 * compared by count and checksum and copied whole when they differ.
 * The backup's session runs with session_replication_role = replica, as the
 * apply worker does: no trigger fires (neither the app's nor the capture's,
 * whose ledger must not record this), and foreign keys are not checked row
 * by row, so the tables can go in any order. Logical mode's subscription
 * needs a superuser on the backup anyway. drd's session is exempt from the
 * backup's fence (sconn_open). */
#include "sync_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

typedef struct {
    int64_t copied, deleted; /* rows written / deleted on the backup */
    int64_t differing;       /* rows that differed: missing, extra or other content */
    bool whole;              /* no key: copied whole */
    int64_t ms;
} ctable;

typedef struct {
    const scatalog *cat;
    bool by_record;
    ctable *t;               /* per table */
} converge_arg;

static bool converge_open(sync_ctx *c, sworker *w, void *arg)
{
    (void)arg;
    if (!sconn_open(c, &w->b, false) || !sconn_open(c, &w->p, true))
        return false;
    /* the keys and hashes of a big table in the primary's temporary
     * tables: in memory rather than spilled (only before the session's
     * first temporary table) */
    if (!sq_cmd(&w->p, "SET temp_buffers = '128MB'", NULL))
        return false;
    if (!sync_try_replica(&w->b)) {
        sync_fail(c, "converge: the backup's role may not set session_replication_role = replica"
                  " (superuser, which logical mode's subscription needs, or GRANT SET ON PARAMETER"
                  " session_replication_role)");
        return false;
    }
    return true;
}

/* "t.k1 = A.k1 AND ..." for the key columns of t against the temporary
 * k1..kn of alias `a` */
static void key_join(sbuf *q, const stable *t, const char *a)
{
    for (size_t k = 0; k < t->nkey; k++) {
        sb_printf(q, "%st.", k ? " AND " : "");
        sb_ident(q, t->key[k]);
        sb_printf(q, " = %s.k%zu", a, k + 1);
    }
}

static bool copy_or_fail(sync_ctx *c, sconn *src, const char *out, sconn *dst, const char *in,
                         int64_t *rows, const stable *t)
{
    char err[512];
    if (sq_copy(src, out, dst, in, rows, err, sizeof(err)))
        return true;
    sync_fail(c, "converge %s: %s", t->label, err);
    return false;
}

/* Phase 1 of a keyed table: the backup's table locked (its transaction
 * open), its keys and row hashes in pg_temp.drd_cv of the primary's
 * REPEATABLE READ transaction. */
static bool stage_hashes(sync_ctx *c, sworker *w, const stable *t, bool by_record)
{
    sbuf q;
    sb_init(&q);
    bool ok = false;
    int64_t rows = 0;
    sb_printf(&q, "LOCK TABLE ONLY %s IN EXCLUSIVE MODE", t->qname);
    if (q.oom || !sq_cmd(&w->b, "BEGIN", NULL) || !sq_cmd(&w->b, sb_str(&q), "locking the table"))
        goto out;
    sb_reset(&q);
    sync_key_table_sql(&q, t, "drd_cv", false);
    if (q.oom || !sq_cmd(&w->p, "BEGIN ISOLATION LEVEL REPEATABLE READ READ WRITE", NULL) ||
        !sq_cmd(&w->p, sb_str(&q), "preparing the comparison"))
        goto out;
    sb_reset(&q);
    sb_add(&q, "COPY (SELECT ");
    for (size_t k = 0; k < t->nkey; k++) {
        sb_add(&q, "t.");
        sb_ident(&q, t->key[k]);
        sb_add(&q, ", ");
    }
    sync_row_hash_sql(&q, t, by_record);
    sb_printf(&q, " FROM ONLY %s t) TO STDOUT", t->qname);
    ok = !q.oom && copy_or_fail(c, &w->b, sb_str(&q), &w->p, "COPY pg_temp.drd_cv FROM STDIN", &rows, t) &&
         sq_cmd(&w->p, "ANALYZE pg_temp.drd_cv", NULL);
out:
    sb_free(&q);
    return ok;
}

/* Phase 2: the keys that differ, in one pass over both (a hash full
 * join, each primary row hashed once) into pg_temp.drd_cv_diff on the
 * primary: on_backup (the backup has the key), on_primary (the primary
 * has it); both = other content. Then how many there are. */
static bool find_differing(sworker *w, const stable *t, bool by_record, ctable *ct)
{
    sbuf q;
    sb_init(&q);
    sb_add(&q, "CREATE TEMP TABLE drd_cv_diff ON COMMIT DROP AS SELECT ");
    for (size_t k = 0; k < t->nkey; k++) {
        sb_printf(&q, "coalesce(k.k%zu, t.", k + 1);
        sb_ident(&q, t->key[k]);
        sb_printf(&q, ") AS k%zu, ", k + 1);
    }
    sb_add(&q, "k.k1 IS NOT NULL AS on_backup, t.");
    sb_ident(&q, t->key[0]);
    sb_printf(&q, " IS NOT NULL AS on_primary FROM pg_temp.drd_cv k FULL JOIN ONLY %s t ON ", t->qname);
    key_join(&q, t, "k");
    sb_add(&q, " WHERE k.k1 IS NULL OR t.");
    sb_ident(&q, t->key[0]);
    sb_add(&q, " IS NULL OR ");
    sync_row_hash_sql(&q, t, by_record);
    sb_add(&q, " <> k.h");
    bool ok = !q.oom && sq_cmd(&w->p, sb_str(&q), "comparing");
    sb_free(&q);
    PGresult *r = ok ? sq_exec(&w->p, "SELECT count(*) FROM pg_temp.drd_cv_diff", "comparing") : NULL;
    if (r == NULL)
        return false;
    ct->differing = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return true;
}

/* Phase 3: the backup's differing rows go (their keys streamed back from
 * the primary), then the primary's differing rows come. */
static bool apply_differing(sync_ctx *c, sworker *w, const stable *t, ctable *ct)
{
    sbuf q, q2;
    sb_init(&q);
    sb_init(&q2);
    bool ok = false;
    int64_t rows = 0;
    PGresult *r = NULL;
    sb_add(&q, "CREATE TEMP TABLE drd_cv_del ON COMMIT DROP AS SELECT ");
    for (size_t k = 0; k < t->nkey; k++) {
        sb_printf(&q, "%st.", k ? ", " : "");
        sb_ident(&q, t->key[k]);
        sb_printf(&q, " AS k%zu", k + 1);
    }
    sb_printf(&q, " FROM ONLY %s t WITH NO DATA", t->qname);
    sb_add(&q2, "COPY (SELECT ");
    for (size_t k = 0; k < t->nkey; k++)
        sb_printf(&q2, "%sk%zu", k ? ", " : "", k + 1);
    sb_add(&q2, " FROM pg_temp.drd_cv_diff WHERE on_backup) TO STDOUT");
    if (q.oom || q2.oom || !sq_cmd(&w->b, sb_str(&q), "preparing the deletes") ||
        !copy_or_fail(c, &w->p, sb_str(&q2), &w->b, "COPY pg_temp.drd_cv_del FROM STDIN", &rows, t))
        goto out;
    sb_reset(&q);
    sb_printf(&q, "DELETE FROM ONLY %s t USING pg_temp.drd_cv_del k WHERE ", t->qname);
    key_join(&q, t, "k");
    if (q.oom || (r = sq_exec(&w->b, sb_str(&q), "deleting the backup's differing rows")) == NULL)
        goto out;
    ct->deleted = strtoll(PQcmdTuples(r), NULL, 10);

    sb_reset(&q);
    sb_reset(&q2);
    sb_add(&q, "COPY (SELECT ");
    catalog_collist(&q, t, "t.", false);
    sb_printf(&q, " FROM ONLY %s t JOIN pg_temp.drd_cv_diff d ON ", t->qname);
    key_join(&q, t, "d");
    sb_add(&q, " WHERE d.on_primary) TO STDOUT");
    sb_printf(&q2, "COPY %s (", t->qname);
    catalog_collist(&q2, t, NULL, false);
    sb_add(&q2, ") FROM STDIN");
    ok = !q.oom && !q2.oom && copy_or_fail(c, &w->p, sb_str(&q), &w->b, sb_str(&q2), &ct->copied, t);
out:
    PQclear(r);
    sb_free(&q);
    sb_free(&q2);
    return ok;
}

/* A table with a key: see the file's comment. Nothing is written when
 * nothing differs. */
static bool converge_keyed(sync_ctx *c, sworker *w, const stable *t, bool by_record, ctable *ct)
{
    if (!stage_hashes(c, w, t, by_record) || !find_differing(w, t, by_record, ct))
        return false;
    if (ct->differing > 0 && !apply_differing(c, w, t, ct))
        return false;
    if (!sq_cmd(&w->b, "COMMIT", "committing on the backup"))
        return false;
    return sq_cmd(&w->p, "ROLLBACK", NULL);
}

/* A table without a key: compared by count and checksum, copied whole
 * when they differ. */
static bool converge_whole(sync_ctx *c, sworker *w, const stable *t, bool by_record, ctable *ct)
{
    sbuf q, q2;
    sb_init(&q);
    sb_init(&q2);
    bool ok = false;
    PGresult *rb = NULL, *rp = NULL;
    sync_checksum_sql(&q, t, by_record);
    if (q.oom || !sq_cmd(&w->b, "BEGIN", NULL))
        goto out;
    sb_printf(&q2, "LOCK TABLE ONLY %s IN EXCLUSIVE MODE", t->qname);
    if (q2.oom || !sq_cmd(&w->b, sb_str(&q2), "locking the table") ||
        !sq_exec_both(&w->b, sb_str(&q), &w->p, sb_str(&q), &rb, &rp, "checksumming"))
        goto out;
    if (strcmp(PQgetvalue(rb, 0, 0), PQgetvalue(rp, 0, 0)) == 0 &&
        strcmp(PQgetvalue(rb, 0, 1), PQgetvalue(rp, 0, 1)) == 0) {
        ok = sq_cmd(&w->b, "COMMIT", NULL);
        goto out;
    }
    ct->whole = true;
    sb_reset(&q);
    sb_printf(&q, "DELETE FROM ONLY %s", t->qname);
    PGresult *r = q.oom ? NULL : sq_exec(&w->b, sb_str(&q), "emptying the backup's table");
    if (r == NULL)
        goto out;
    ct->deleted = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    sb_reset(&q);
    sb_reset(&q2);
    sb_add(&q, "COPY (SELECT ");
    catalog_collist(&q, t, NULL, false);
    sb_printf(&q, " FROM ONLY %s) TO STDOUT", t->qname);
    sb_printf(&q2, "COPY %s (", t->qname);
    catalog_collist(&q2, t, NULL, false);
    sb_add(&q2, ") FROM STDIN");
    if (q.oom || q2.oom || !copy_or_fail(c, &w->p, sb_str(&q), &w->b, sb_str(&q2), &ct->copied, t) ||
        !sq_cmd(&w->b, "COMMIT", "committing on the backup"))
        goto out;
    ct->differing = ct->deleted > ct->copied ? ct->deleted : ct->copied;
    ok = true;
out:
    PQclear(rb);
    PQclear(rp);
    sb_free(&q);
    sb_free(&q2);
    return ok;
}

static bool converge_run(sync_ctx *c, sworker *w, size_t task, void *arg)
{
    converge_arg *ca = arg;
    const stable *t = &ca->cat->t[task];
    ctable *ct = &ca->t[task];
    bool by_record = ca->by_record && catalog_hashable(t);
    int64_t t0 = mono_ms();
    bool ok = t->nkey > 0 ? converge_keyed(c, w, t, by_record, ct) : converge_whole(c, w, t, by_record, ct);
    ct->ms = mono_ms() - t0;
    if (!ok && !sync_failed(c))
        sync_fail(c, "converge %s failed", t->label);
    return ok;
}

bool sync_op_converge(sync_ctx *c)
{
    sconn b = { .slot = -1 }, p = { .slot = -1 };
    scatalog bcat = { 0 }, pcat = { 0 };
    converge_arg ca = { 0 };
    bool ok = false;
    int64_t t0 = mono_ms();
    if (!sconn_open(c, &b, false) || !sconn_open(c, &p, true))
        goto cleanup;
    if (!catalog_load(&b, &bcat) || !catalog_load(&p, &pcat) || !catalog_compare(c, &bcat, &pcat))
        goto cleanup;
    ca.by_record = sync_record_hash_ok(&b, &p);
    sconn_close(&b);
    sconn_close(&p);
    ca.cat = &bcat;
    ca.t = calloc(bcat.n + 1, sizeof(*ca.t));
    if (ca.t == NULL) {
        sync_fail(c, "out of memory");
        goto cleanup;
    }
    if (!sync_pool(c, c->parallel, bcat.n, converge_open, converge_run, &ca))
        goto cleanup;
    int64_t differing = 0, moved = 0, tables = 0;
    for (size_t i = 0; i < bcat.n; i++) {
        const ctable *ct = &ca.t[i];
        if (ct->differing == 0)
            continue;
        char d[32];
        format_duration(ct->ms, d, sizeof(d));
        differing += ct->differing;
        moved += ct->copied + ct->deleted;
        tables++;
        if (ct->whole)
            sync_report(c, "converge %s: no key, differed: copied whole to the backup (%" PRId64
                        " rows deleted, %" PRId64 " copied), %s", bcat.t[i].label, ct->deleted, ct->copied, d);
        else
            sync_report(c, "converge %s: %" PRId64 " rows differed: %" PRId64 " deleted on the backup,"
                        " %" PRId64 " copied from the primary, %s", bcat.t[i].label, ct->differing,
                        ct->deleted, ct->copied, d);
    }
    char d[32];
    format_duration(mono_ms() - t0, d, sizeof(d));
    if (differing == 0)
        sync_report(c, "converge: %zu tables, the backup already equals the primary (%s)", bcat.n, d);
    else
        sync_report(c, "converge: %zu tables, %" PRId64 " rows differed in %" PRId64 " of them;"
                    " the backup now equals the primary (%s)", bcat.n, differing, tables, d);
    sync_add_counts(c, moved, tables);
    pthread_mutex_lock(&c->mu);
    c->differing = differing;
    pthread_mutex_unlock(&c->mu);
    ok = true;
cleanup:
    sconn_close(&b);
    sconn_close(&p);
    catalog_free(&bcat);
    catalog_free(&pcat);
    free(ca.t);
    return ok;
}
