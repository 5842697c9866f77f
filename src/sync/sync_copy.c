/* sync_copy.c - full mode (sync_op_full), on the worker pool of
 * sync_full.c.
 *
 * full: whole tables backup -> primary from ONE snapshot: a coordinator
 *   connection on the backup exports it (REPEATABLE READ, read only) and
 *   every pool worker's backup connection imports it. The primary's tables
 *   are emptied in one transaction (TRUNCATE of all of them at once, or
 *   DELETE without the TRUNCATE privilege), then each task (a table, or a
 *   ctid page range of a big table, servers >= 14) is one COPY streamed
 *   from the backup into the primary in its own transaction. With
 *   session_replication_role = replica any order works; without it tables
 *   are loaded level by level (parents first) and a foreign-key cycle is
 *   refused. Not atomic across tables: a failure leaves some tables
 *   empty or partly loaded; running it again starts over. */
#include "sync_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

#define CHUNK_MIN_BYTES (8LL * 1024 * 1024)

/* ---- full ------------------------------------------------------------------------------ */

typedef struct {
    size_t table;
    int64_t page_from, page_to;   /* -1 = open end */
    int64_t bytes;
} ftask;

typedef struct {
    const scatalog *cat;
    char snapshot[128];
    bool replica;
    ftask *tasks;                 /* this pool run's tasks */
    int64_t *rows;                /* per table */
    int64_t *ms;                  /* per table, summed over its pieces */
    int *pieces;                  /* per table */
} full_arg;

static bool full_open(sync_ctx *c, sworker *w, void *arg)
{
    full_arg *fa = arg;
    if (!sconn_open(c, &w->b, false) || !sconn_open(c, &w->p, true))
        return false;
    sbuf q;
    sb_init(&q);
    sb_add(&q, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ");
    sb_literal(&q, fa->snapshot);
    bool ok = !q.oom && sq_cmd(&w->b, sb_str(&q), "importing the snapshot");
    sb_free(&q);
    if (ok && fa->replica)
        ok = sq_cmd(&w->p, "SET session_replication_role = replica", NULL);
    return ok;
}

static bool full_run(sync_ctx *c, sworker *w, size_t task, void *arg)
{
    full_arg *fa = arg;
    const ftask *ft = &fa->tasks[task];
    const stable *t = &fa->cat->t[ft->table];
    sbuf out, in;
    sb_init(&out);
    sb_init(&in);
    bool ok = false;
    int64_t t0 = mono_ms(), rows = 0;
    char err[512];
    for (int attempt = catalog_needs_text(t) ? 1 : 0; attempt < 2; attempt++) {
        bool bin = attempt == 0;
        sb_reset(&out);
        sb_reset(&in);
        sb_add(&out, "COPY (SELECT ");
        catalog_collist(&out, t, NULL, false);
        sb_printf(&out, " FROM ONLY %s", t->qname);
        if (ft->page_from > 0 || ft->page_to >= 0) {
            sb_printf(&out, " WHERE ctid >= '(%" PRId64 ",0)'::tid", ft->page_from);
            if (ft->page_to >= 0)
                sb_printf(&out, " AND ctid < '(%" PRId64 ",0)'::tid", ft->page_to);
        }
        sb_add(&out, ") TO STDOUT");
        sb_printf(&in, "COPY %s (", t->qname);
        catalog_collist(&in, t, NULL, false);
        sb_add(&in, ") FROM STDIN");
        if (bin) {
            sb_add(&out, " (FORMAT binary)");
            sb_add(&in, " (FORMAT binary)");
        }
        if (out.oom || in.oom) {
            sync_fail(c, "out of memory");
            goto out;
        }
        if (!sq_cmd(&w->b, "SAVEPOINT drd_copy", NULL) || !sq_cmd(&w->p, "BEGIN", NULL))
            goto out;
        if (sq_copy(&w->b, sb_str(&out), &w->p, sb_str(&in), &rows, err, sizeof(err))) {
            if (!sq_cmd(&w->p, "COMMIT", "committing a table") ||
                !sq_cmd(&w->b, "RELEASE SAVEPOINT drd_copy", NULL))
                goto out;
            ok = true;
            break;
        }
        if (!bin || atomic_load(&c->stop)) {
            sync_fail(c, "copying %s: %s", t->label, err);
            goto out;
        }
        if (!sq_cmd(&w->p, "ROLLBACK", NULL) || !sq_cmd(&w->b, "ROLLBACK TO SAVEPOINT drd_copy", NULL))
            goto out;
        sync_report(c, "%s: binary COPY failed (%s); retrying in text format", t->label, err);
    }
out:
    if (ok) {
        pthread_mutex_lock(&c->mu);
        fa->rows[ft->table] += rows;
        fa->ms[ft->table] += mono_ms() - t0;
        pthread_mutex_unlock(&c->mu);
    }
    sb_free(&out);
    sb_free(&in);
    return ok;
}

static int cmp_task_size(const void *a, const void *b)
{
    const ftask *x = a, *y = b;
    return (x->bytes < y->bytes) - (x->bytes > y->bytes);
}

/* Empty the primary's synced tables, in one transaction. */
static bool empty_primary(sync_ctx *c, sconn *p, const scatalog *cat, bool replica)
{
    sbuf q;
    sb_init(&q);
    bool ok = false;
    char err[512];
    sb_add(&q, "SELECT count(*) FROM (VALUES ");
    for (size_t i = 0; i < cat->n; i++) {
        sb_printf(&q, "%s(", i ? ", " : "");
        sb_literal(&q, cat->t[i].qname);
        sb_add(&q, ")");
    }
    sb_add(&q, ") v(o) WHERE NOT has_table_privilege(o, 'TRUNCATE')");
    PGresult *r = q.oom ? NULL : sq_exec(p, sb_str(&q), "checking privileges");
    if (r == NULL)
        goto out;
    bool can_truncate = strcmp(PQgetvalue(r, 0, 0), "0") == 0;
    PQclear(r);
    sb_reset(&q);
    if (can_truncate) {
        sb_add(&q, "TRUNCATE ONLY ");
        for (size_t i = 0; i < cat->n; i++)
            sb_printf(&q, "%s%s", i ? ", " : "", cat->t[i].qname);
        if (q.oom || !sq_cmd(p, "BEGIN", NULL))
            goto out;
        if (!sq_try(p, sb_str(&q), err, sizeof(err))) {
            sync_fail(c, "cannot empty the primary's tables (TRUNCATE: %s); a table outside"
                      " [sync] schemas/exclude may reference them: full mode refuses to CASCADE", err);
            goto out;
        }
    } else {
        /* DELETE, children first (any order with replica) */
        if (!sq_cmd(p, "BEGIN", NULL))
            goto out;
        int maxlevel = 0;
        for (size_t i = 0; i < cat->n; i++)
            if (cat->t[i].level > maxlevel)
                maxlevel = cat->t[i].level;
        for (int lvl = maxlevel; lvl >= 0; lvl--)
            for (size_t i = 0; i < cat->n; i++) {
                if (cat->t[i].level != lvl)
                    continue;
                sb_reset(&q);
                sb_printf(&q, "DELETE FROM ONLY %s", cat->t[i].qname);
                if (!sq_cmd(p, sb_str(&q), "emptying a table (no TRUNCATE privilege)"))
                    goto out;
            }
        (void)replica;
    }
    ok = sq_cmd(p, "COMMIT", "emptying the primary's tables");
out:
    if (!ok && p->pg != NULL)
        sq_try(p, "ROLLBACK", NULL, 0);
    sb_free(&q);
    return ok;
}

/* Open a read-only transaction on the backup and export its snapshot for
 * the workers; block: the backup's page size. */
static bool export_snapshot(sconn *b, full_arg *fa, int64_t *block)
{
    if (!sq_cmd(b, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL))
        return false;
    PGresult *r = sq_exec(b, "SELECT pg_export_snapshot(), current_setting('block_size')::bigint",
                          "exporting a snapshot");
    if (r == NULL)
        return false;
    str_copy(fa->snapshot, PQgetvalue(r, 0, 0), sizeof(fa->snapshot));
    *block = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    if (*block <= 0)
        *block = 8192;
    PQclear(r);
    return true;
}

/* Without replica, tables are loaded parents first: a cycle cannot be. */
static bool refuse_cycles(sync_ctx *c, const scatalog *cat, bool replica)
{
    for (size_t i = 0; !replica && i < cat->n; i++)
        if (cat->t[i].cyclic) {
            sync_fail(c, "full copy: %s is part of a foreign-key cycle and the primary's role"
                      " may not set session_replication_role = replica (superuser, or GRANT"
                      " SET ON PARAMETER session_replication_role): refusing", cat->t[i].label);
            return false;
        }
    return true;
}

/* The tasks: big tables in page ranges (TID range scans: servers >= 14);
 * fa->pieces counts each table's. */
static bool plan_tasks(sync_ctx *c, full_arg *fa, int64_t block, bool tid_ranges,
                       ftask **tasks, size_t *ntasks)
{
    const scatalog *cat = fa->cat;
    int64_t total = 0;
    for (size_t i = 0; i < cat->n; i++)
        total += cat->t[i].bytes;
    int64_t chunk = total / (c->parallel * 2);
    if (chunk < CHUNK_MIN_BYTES)
        chunk = CHUNK_MIN_BYTES;
    for (size_t i = 0; i < cat->n; i++) {
        int64_t bytes = cat->t[i].bytes;
        int64_t pieces = tid_ranges ? (bytes + chunk - 1) / chunk : 1;
        if (pieces < 1)
            pieces = 1;
        int64_t pages = bytes / block;
        ftask *nt = realloc(*tasks, (*ntasks + (size_t)pieces) * sizeof(*nt));
        if (nt == NULL) {
            sync_fail(c, "out of memory");
            return false;
        }
        *tasks = nt;
        for (int64_t k = 0; k < pieces; k++) {
            ftask *ft = &(*tasks)[(*ntasks)++];
            ft->table = i;
            ft->page_from = pieces == 1 ? 0 : pages * k / pieces;
            ft->page_to = k == pieces - 1 ? -1 : pages * (k + 1) / pieces;
            ft->bytes = bytes / pieces;
        }
    }
    fa->rows = calloc(cat->n + 1, sizeof(*fa->rows));
    fa->ms = calloc(cat->n + 1, sizeof(*fa->ms));
    fa->pieces = calloc(cat->n + 1, sizeof(*fa->pieces));
    if (fa->rows == NULL || fa->ms == NULL || fa->pieces == NULL) {
        sync_fail(c, "out of memory");
        return false;
    }
    for (size_t i = 0; i < *ntasks; i++)
        fa->pieces[(*tasks)[i].table]++;
    return true;
}

/* Run the tasks: with replica one run, biggest first; else level by level. */
static bool run_tasks(sync_ctx *c, full_arg *fa, const ftask *tasks, size_t ntasks)
{
    const scatalog *cat = fa->cat;
    int maxlevel = 0;
    if (!fa->replica)
        for (size_t i = 0; i < cat->n; i++)
            if (cat->t[i].level > maxlevel)
                maxlevel = cat->t[i].level;
    ftask *run = calloc(ntasks + 1, sizeof(*run));
    if (run == NULL) {
        sync_fail(c, "out of memory");
        return false;
    }
    fa->tasks = run;
    bool ok = true;
    for (int lvl = 0; ok && lvl <= maxlevel; lvl++) {
        size_t n = 0;
        for (size_t i = 0; i < ntasks; i++)
            if (fa->replica || cat->t[tasks[i].table].level == lvl)
                run[n++] = tasks[i];
        qsort(run, n, sizeof(*run), cmp_task_size);
        ok = sync_pool(c, c->parallel, n, full_open, full_run, fa);
    }
    free(run);
    fa->tasks = NULL;
    return ok;
}

/* One line per table; returns the rows copied in all. */
static int64_t report_tables(sync_ctx *c, const full_arg *fa)
{
    int64_t rows = 0;
    for (size_t i = 0; i < fa->cat->n; i++) {
        char d[32];
        format_duration(fa->ms[i], d, sizeof(d));
        if (fa->pieces[i] > 1)
            sync_report(c, "%s: %" PRId64 " rows copied (%d pieces in parallel), %s",
                        fa->cat->t[i].label, fa->rows[i], fa->pieces[i], d);
        else
            sync_report(c, "%s: %" PRId64 " rows copied, %s", fa->cat->t[i].label, fa->rows[i], d);
        rows += fa->rows[i];
    }
    return rows;
}

bool sync_op_full(sync_ctx *c)
{
    sconn b = { .slot = -1 }, p = { .slot = -1 };
    scatalog bcat = { 0 }, pcat = { 0 };
    full_arg fa = { 0 };
    ftask *tasks = NULL;
    size_t ntasks = 0;
    bool ok = false;
    int64_t t0 = mono_ms();
    int64_t block = 8192;

    if (!sconn_open(c, &b, false) || !sconn_open(c, &p, true) || !export_snapshot(&b, &fa, &block))
        goto cleanup;
    if (!catalog_load(&b, &bcat) || !catalog_load(&p, &pcat) || !catalog_compare(c, &bcat, &pcat))
        goto cleanup;
    fa.cat = &bcat;
    fa.replica = sync_try_replica(&p);
    if (!refuse_cycles(c, &bcat, fa.replica))
        goto cleanup;
    sync_report(c, "full copy of %zu tables from one snapshot of the backup, %d at a time;"
                " foreign keys: %s", bcat.n, c->parallel,
                fa.replica ? "session_replication_role = replica" : "tables loaded parents first");
    if (!plan_tasks(c, &fa, block, b.server_version >= 140000, &tasks, &ntasks) ||
        !empty_primary(c, &p, &bcat, fa.replica) || !run_tasks(c, &fa, tasks, ntasks))
        goto cleanup;
    int64_t rows = report_tables(c, &fa);
    if (!sync_sequences(c, &b, &p, &bcat))
        goto cleanup;
    sq_try(&b, "COMMIT", NULL, 0);
    sync_add_counts(c, rows, (int64_t)bcat.n);
    char d[32];
    format_duration(mono_ms() - t0, d, sizeof(d));
    sync_report(c, "full copy done: %" PRId64 " rows in %zu tables in %s", rows, bcat.n, d);
    ok = true;
cleanup:
    sconn_close(&b);
    sconn_close(&p);
    catalog_free(&bcat);
    catalog_free(&pcat);
    free(tasks);
    free(fa.rows);
    free(fa.ms);
    free(fa.pieces);
    return ok;
}
