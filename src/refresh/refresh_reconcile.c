/* refresh_reconcile.c - [refresh] mode = reconcile: one pass that pulls
 * what changed on the primary since the last pass and applies it to the
 * backup's live database, through a connection that may be a
 * transaction-mode pooler ([refresh] source_url).
 *
 * Pooler rules: every statement sent to the source stands alone or inside
 * one BEGIN ... COMMIT sent as one simple query (settings with SET LOCAL,
 * gone at the commit); no session SET, no temporary table, no prepared
 * statement, no replication protocol (pgexec with PGEXEC_POOLED).
 *
 * A pass, one pgexec at a time (the loop never waits):
 *
 *   catalog   source: the keyed tables of [sync] schemas (or [refresh]
 *             tables), their columns, key, change column, delete trigger;
 *             ordered parents first (foreign keys)
 *   backup    backup: superuser? every table there?
 *   install   source: the drd.deleted ledger and its AFTER DELETE /
 *             TRUNCATE triggers, idempotent (only when one is missing);
 *             refused (privileges) with deletes = auto: key comparison
 *             (and not tried again for LEDGER_RETRY_MS)
 *   drain     source: the ledger's oldest entries -> backup: the deletes,
 *             one transaction -> source: those entries pruned
 *   per table (parents first):
 *     copy    source: the next batch in (change column, key) order after
 *             the watermark -> backup: upserted in one transaction ->
 *             the watermark (SQLite) moves to its last row; again until a
 *             batch is short. A table without change column is copied
 *             whole in key order every full_every (resumable the same way).
 *     look-back  count + hash of (key, change) per time bucket of
 *             [watermark - lookback, watermark) on both sides; a bucket
 *             that differs (a row committed late, a skewed clock) is
 *             copied again. Traffic: ~30 small rows when nothing differs.
 *     compare (deletes without triggers, every compare_every) key ranges
 *             hashed on both sides, descending only into ranges that
 *             differ; keys missing on the source are deleted on the backup
 *             (refresh_compare.c), children first, after every table's
 *             copy.
 *
 * The watermark advances only after the batch committed on the backup: a
 * drd killed at any moment copies some rows again (an idempotent upsert),
 * never skips one. Bytes read from the source are counted (pgexec's
 * bytes_in) and recorded as the refresh's egress. */
#include "refresh_reconcile.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

static void step(rec_pass *p);
static void after_setup(rec_pass *p);
static void start_fetch(rec_pass *p, const char *pos);
static void next_table(rec_pass *p);

/* ---- helpers ------------------------------------------------------------ */

static void rt_free(rec_table *t)
{
    free(t->name);
    free(t->qname);
    for (size_t i = 0; i < t->ncols; i++) {
        free(t->cols[i]);
        free(t->types[i]);
    }
    free(t->cols);
    free(t->types);
    free(t->key);
    for (size_t i = 0; i < t->nrefs; i++)
        free(t->refs[i]);
    free(t->refs);
}

void refresh_reconcile_pass_free(rec_pass *p)
{
    if (p == NULL)
        return;
    pgexec_free(p->sql);
    refresh_compare_free(p->cmp);
    for (size_t i = 0; i < p->nt; i++)
        rt_free(&p->t[i]);
    free(p->t);
    refresh_rconn_free(&p->src);
    free(p->c_src);
    free(p->tables);
    free(p->change_columns);
    free(p->schemas);
    free(p->exclude);
    free(p->payload);
    free(p->ledger_ids);
    free(p->bucket_key);
    free(p->lb_cond);
    json_decref(p->lb_src);
    free(p);
}

static void fail(rec_pass *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(rec_pass *p, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    refresh_job_fail(p->j, "%s", msg);
    p->j->egress = p->bytes;
    refresh_job_phase_done(p->j, false);
}

static void on_sql(void *arg, const pgexec_result *res);

static bool run_sql(rec_pass *p, rstate st, bool source, char *sql)
{
    if (sql == NULL) {
        fail(p, "out of memory");
        return false;
    }
    p->st = st;
    p->on_source = source;
    const char *stmts[] = { sql };
    if (source)
        p->sql = pgexec_start_flags(p->j->r->loop, p->c_src, p->src.password, stmts, 1, REC_SQL_MS,
                                    PGEXEC_POOLED | PGEXEC_KEEP_ROWS, on_sql, p);
    else
        p->sql = pgexec_start_flags(p->j->r->loop, p->j->c_back, p->j->back.password, stmts, 1,
                                    REC_SQL_MS, PGEXEC_KEEP_ROWS, on_sql, p);
    free(sql);
    if (p->sql == NULL) {
        fail(p, "out of memory");
        return false;
    }
    return true;
}

/* The first value of the last result with rows, "" if none. */
static const char *value0(const pgexec_result *res, int col)
{
    const PGresult *r = (const PGresult *)res->rows;
    if (r == NULL || PQntuples(r) < 1 || PQnfields(r) <= col || PQgetisnull(r, 0, col))
        return "";
    return PQgetvalue(r, 0, col);
}

/* ---- catalog ---------------------------------------------------------------- */

static bool load_table(rec_pass *p, json_t *o, rec_table *t)
{
    const char *s = json_string_value(json_object_get(o, "s")), *n = json_string_value(json_object_get(o, "t"));
    json_t *cols = json_object_get(o, "cols"), *key = json_object_get(o, "key"), *refs = json_object_get(o, "refs");
    if (s == NULL || n == NULL || !json_is_array(cols))
        return false;
    char *qs = refresh_sql_ident(s), *qn = refresh_sql_ident(n);
    t->name = refresh_xasprintf("%s.%s", s, n);
    t->qname = qs && qn ? refresh_xasprintf("%s.%s", qs, qn) : NULL;
    free(qs);
    free(qn);
    t->ncols = json_array_size(cols);
    t->cols = calloc(t->ncols + 1, sizeof *t->cols);
    t->types = calloc(t->ncols + 1, sizeof *t->types);
    char **plain = calloc(t->ncols + 1, sizeof *plain);
    t->nkey = json_array_size(key);
    t->key = calloc(t->nkey + 1, sizeof *t->key);
    t->chg = -1;
    t->trigger = json_is_true(json_object_get(o, "trg"));
    bool ok = t->name && t->qname && t->cols && t->types && plain && t->key;
    for (size_t i = 0; ok && i < t->ncols; i++) {
        json_t *c = json_array_get(cols, i);
        const char *q = json_string_value(json_array_get(c, 0)), *pl = json_string_value(json_array_get(c, 1)),
                   *ty = json_string_value(json_array_get(c, 2));
        ok = q && pl && ty && (t->cols[i] = strdup(q)) && (t->types[i] = strdup(ty)) && (plain[i] = strdup(pl));
    }
    for (size_t k = 0; ok && k < t->nkey; k++) {
        const char *kn = json_string_value(json_array_get(key, k));
        ok = false;
        for (size_t i = 0; kn && i < t->ncols; i++)
            if (strcmp(plain[i], kn) == 0) {
                t->key[k] = i;
                ok = true;
            }
    }
    if (ok) {
        t->chg = refresh_change_column(p->change_columns, t->name, plain, t->ncols);
        if (t->chg >= 0)
            for (size_t k = 0; k < t->nkey; k++)
                if (t->key[k] == (size_t)t->chg)
                    t->chg = -1;          /* a key is no change column */
        t->chg_time = t->chg >= 0 && rsql_time_type(t->types[t->chg]);
    }
    t->nrefs = json_array_size(refs);
    t->refs = calloc(t->nrefs + 1, sizeof *t->refs);
    ok = ok && t->refs;
    for (size_t i = 0; ok && i < t->nrefs; i++)
        ok = (t->refs[i] = strdup(json_string_value(json_array_get(refs, i)) ?: "")) != NULL;
    for (size_t i = 0; plain && i < t->ncols; i++)
        free(plain[i]);
    free(plain);
    return ok;
}

/* Parents before children (a table referencing one not yet placed waits;
 * a cycle keeps the catalog's order). */
static void order_tables(rec_pass *p)
{
    rec_table *out = calloc(p->nt + 1, sizeof *out);
    bool *placed = calloc(p->nt + 1, sizeof *placed);
    if (out == NULL || placed == NULL) {
        free(out);
        free(placed);
        return;
    }
    size_t n = 0;
    for (bool progress = true; n < p->nt && progress; ) {
        progress = false;
        for (size_t i = 0; i < p->nt; i++) {
            if (placed[i])
                continue;
            bool ready = true;
            for (size_t r = 0; r < p->t[i].nrefs && ready; r++)
                for (size_t k = 0; k < p->nt; k++)
                    if (!placed[k] && k != i && strcmp(p->t[k].name, p->t[i].refs[r]) == 0)
                        ready = false;
            if (ready) {
                out[n++] = p->t[i];
                placed[i] = progress = true;
            }
        }
    }
    for (size_t i = 0; i < p->nt; i++)
        if (!placed[i])
            out[n++] = p->t[i];
    free(p->t);
    free(placed);
    p->t = out;
}

static bool need_install(const rec_pass *p, json_t *cat)
{
    if (!json_is_true(json_object_get(cat, "ledger")))
        return true;
    for (size_t i = 0; i < p->nt; i++)
        if (!p->t[i].trigger)
            return true;
    return false;
}

/* The catalog (JSON), read now or kept from an earlier pass: the tables
 * and what is to be done first. */
static bool catalog_apply(rec_pass *p, const char *text)
{
    json_t *cat = json_loads(text, 0, NULL);
    json_t *tabs = json_object_get(cat, "tables");
    if (!json_is_array(tabs)) {
        json_decref(cat);
        refresh_job_fail(p->j, "unexpected catalog answer from the primary");
        return false;
    }
    p->t = calloc(json_array_size(tabs) + 1, sizeof *p->t);
    if (p->t == NULL) {
        json_decref(cat);
        refresh_job_fail(p->j, "out of memory");
        return false;
    }
    size_t i;
    json_t *o;
    json_array_foreach(tabs, i, o) {
        rec_table t;
        memset(&t, 0, sizeof t);
        bool ok = load_table(p, o, &t);
        const char *s = json_string_value(json_object_get(o, "s")), *n = json_string_value(json_object_get(o, "t"));
        if (!ok || t.nkey == 0 || !refresh_table_listed(p->tables, t.name) || table_excluded(p->exclude, s, n)) {
            if (ok && t.nkey == 0 && refresh_table_listed(p->tables, t.name))
                log_debug("refresh %" PRId64 ": %s has no primary key: not reconciled", p->j->rec.id, t.name);
            rt_free(&t);
            continue;
        }
        p->t[p->nt++] = t;
    }
    order_tables(p);
    bool install = need_install(p, cat);
    json_decref(cat);
    /* deletes = auto where the ledger was refused: compare until it is tried again */
    refresh_t *r = p->j->r;
    bool compare = p->deletes == DELETES_COMPARE;
    bool refused = p->deletes == DELETES_AUTO && r->rec_no_ledger_at != 0 &&
                   loop_now(r->loop) - r->rec_no_ledger_at < LEDGER_RETRY_MS;
    p->ledger = !install && !compare;
    p->want_install = install && !compare && !refused;
    return true;
}

static void catalog_done(rec_pass *p, const pgexec_result *res)
{
    refresh_t *r = p->j->r;
    const char *text = value0(res, 0);
    if (!catalog_apply(p, text)) {
        p->j->egress = p->bytes;
        refresh_job_phase_done(p->j, false);
        return;
    }
    free(r->rec_catalog);
    r->rec_catalog = strdup(text);
    r->rec_catalog_at = 0;           /* valid once the backup has been checked */
    run_sql(p, RS_BACKUP, false, rsql_backup(p));
}

static void backup_done(rec_pass *p, const pgexec_result *res)
{
    char buf[1024], *f[2] = { NULL, NULL };
    str_copy(buf, value0(res, 0), sizeof buf);
    size_t n = refresh_split_fields(buf, '\x1f', f, 2);
    p->back_super = n >= 1 && (strcmp(f[0], "t") == 0 || strcmp(f[0], "true") == 0);
    if (n >= 2 && f[1][0] != '\0') {
        fail(p, "the backup has no table %s: create the schema there first "
             "(pg_dump --schema-only of the primary, restored into the backup)", f[1]);
        return;
    }
    refresh_t *r = p->j->r;
    r->rec_tables = p->nt;
    r->rec_back_super = p->back_super;
    r->rec_catalog_at = r->rec_catalog != NULL && !p->want_install ? loop_now(r->loop) : 0;
    if (p->want_install)
        run_sql(p, RS_INSTALL, true, rsql_install(p));
    else
        step(p);
}

/* ---- the delete ledger ---------------------------------------------------------- */

static const rec_table *table_named(const rec_pass *p, const char *name)
{
    for (size_t i = 0; i < p->nt; i++)
        if (strcmp(p->t[i].name, name) == 0)
            return &p->t[i];
    return NULL;
}


static void install_failed(rec_pass *p, const char *error)
{
    if (p->deletes == DELETES_LEDGER) {
        fail(p, "cannot install the delete ledger on the primary: %s", error);
        return;
    }
    refresh_t *r = p->j->r;
    r->rec_no_ledger_at = loop_now(r->loop);
    if (!r->rec_warned_ledger) {
        r->rec_warned_ledger = true;
        refresh_record_event(r, true, "reconcile: cannot install the delete triggers on the primary (%s): "
                             "rows deleted there are found by comparing key ranges every %" PRId64 " s instead "
                             "(deletes = compare); for the ledger grant TRIGGER and CREATE, see drctl grants primary",
                             error, p->compare_every_ms / 1000);
    }
    p->ledger = false;
    after_setup(p);
}

static void drain_done(rec_pass *p, const pgexec_result *res)
{
    long count = strtol(value0(res, 0), NULL, 10);
    if (count == 0) {
        p->ti = 0;
        next_table(p);
        return;
    }
    json_t *all = json_loads(value0(res, 1), 0, NULL);
    rsql m, ids;
    if (all == NULL || !rsql_open(&m) || !rsql_open(&ids)) {
        json_decref(all);
        fail(p, "unexpected ledger answer from the primary");
        return;
    }
    fputs(BACK_BEGIN, m.f);
    if (p->back_super)
        fputs(" SET LOCAL session_replication_role = replica;", m.f);
    /* consecutive entries of one table in one statement, in ledger order */
    size_t i = 0, n = json_array_size(all), nid = 0;
    while (i < n) {
        const char *tbl = json_string_value(json_array_get(json_array_get(all, i), 1));
        const rec_table *t = tbl ? table_named(p, tbl) : NULL;
        json_t *keys = json_array();
        bool truncate = false;
        size_t k = i;
        for (; k < n; k++) {
            json_t *e = json_array_get(all, k);
            const char *tk = json_string_value(json_array_get(e, 1));
            if (tk == NULL || tbl == NULL || strcmp(tk, tbl) != 0)
                break;
            fprintf(ids.f, "%s%" JSON_INTEGER_FORMAT, nid++ ? "," : "",
                    json_integer_value(json_array_get(e, 0)));
            json_t *key = json_array_get(e, 2);
            if (json_is_null(key)) {
                truncate = true;
                k++;
                break;
            }
            json_array_append(keys, key);
        }
        if (t != NULL && json_array_size(keys) > 0)
            rsql_delete(&m, t, keys);
        if (t != NULL && truncate)
            rsql_delete(&m, t, NULL);
        if (k == i) {                      /* an entry without a table name */
            fprintf(ids.f, "%s%" JSON_INTEGER_FORMAT, nid++ ? "," : "",
                    json_integer_value(json_array_get(json_array_get(all, i), 0)));
            k++;
        }
        json_decref(keys);
        i = k;
    }
    fputs(" COMMIT", m.f);
    json_decref(all);
    free(p->ledger_ids);
    p->ledger_ids = rsql_close(&ids);
    p->rows_deleted += count;
    p->limit = count;
    run_sql(p, RS_DRAIN_APPLY, false, rsql_close(&m));
}

/* ---- copying batches --------------------------------------------------------------- */

/* The position of the batch's last row: JSON array of its rsql_keyset values. */
static char *last_position(const rec_pass *p, const rec_table *t)
{
    json_t *rows = json_loads(p->payload, 0, NULL);
    json_t *last = json_array_get(rows, json_array_size(rows) - 1);
    size_t idx[65];
    size_t n = rsql_keyset(p, t, idx);
    json_t *pos = json_array();
    bool ok = last != NULL && pos != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *v = json_array_get(last, idx[i]);
        ok = json_is_string(v) && json_array_append(pos, v) == 0;
    }
    char *out = ok ? json_dumps(pos, JSON_COMPACT) : NULL;
    json_decref(pos);
    json_decref(rows);
    return out;
}

static void start_fetch(rec_pass *p, const char *pos)
{
    const rec_table *t = &p->t[p->ti];
    char *sql = rsql_fetch(p, t, pos);
    if (sql == NULL) {
        fail(p, "%s: the stored position %s cannot be read", t->name, pos ? pos : "");
        return;
    }
    run_sql(p, RS_FETCH, true, sql);
}

static void fetch_done(rec_pass *p, const pgexec_result *res)
{
    p->nrows = strtol(value0(res, 0), NULL, 10);
    free(p->payload);
    p->payload = strdup(value0(res, 1));
    if (p->payload == NULL) {
        fail(p, "out of memory");
        return;
    }
    if (p->nrows == 0) {
        p->limit = 1;               /* a short batch: this part of the table is done */
        step(p);
        return;
    }
    run_sql(p, RS_APPLY, false, rsql_apply(p, &p->t[p->ti]));
}

static bool put_watermark(rec_pass *p)
{
    if (store_watermark_put(p->j->r->store, &p->wm))
        return true;
    fail(p, "cannot record the watermark of %s in the state database", p->wm.name);
    return false;
}

/* The batch committed on the backup: move the position, then go on. */
static void apply_done(rec_pass *p)
{
    const rec_table *t = &p->t[p->ti];
    char *pos = last_position(p, t);
    if (pos == NULL || strlen(pos) >= sizeof p->wm.watermark) {
        free(pos);
        fail(p, "%s: the position of the last row copied does not fit the state database", t->name);
        return;
    }
    p->rows_copied += p->nrows;
    bool ok = true;
    if (p->bk == B_INCR) {
        str_copy(p->wm.watermark, pos, sizeof p->wm.watermark);
        p->wm.updated_at = wall_ms();
        ok = put_watermark(p);
    } else if (p->bk == B_FULL) {
        str_copy(p->wm.full_key, pos, sizeof p->wm.full_key);
        p->wm.updated_at = wall_ms();
        ok = put_watermark(p);
    } else {
        free(p->bucket_key);
        p->bucket_key = strdup(pos);
    }
    if (!ok) {
        free(pos);
        return;
    }
    if (p->nrows < p->limit)
        step(p);
    else
        start_fetch(p, p->bk == B_BUCKET ? p->bucket_key : pos);
    free(pos);
}

/* ---- the look-back -------------------------------------------------------------------- */

/* [watermark - lookback, watermark) of the table's change column. */
static bool lb_start(rec_pass *p)
{
    const rec_table *t = &p->t[p->ti];
    json_t *a = json_loads(p->wm.watermark, 0, NULL);
    const char *w = json_string_value(json_array_get(a, 0));
    char *lit = w ? refresh_sql_literal(w) : NULL;
    json_decref(a);
    if (lit == NULL)
        return false;
    const char *c = t->cols[t->chg], *ty = t->types[t->chg];
    free(p->lb_cond);
    p->lb_cond = refresh_xasprintf("%s >= (%s::%s - interval '%" PRId64 " milliseconds') AND %s < %s::%s",
                                   c, lit, ty, p->lookback_ms, c, lit, ty);
    free(lit);
    p->bucket_s = p->lookback_ms / 1000 / LB_BUCKETS;
    if (p->bucket_s < 1)
        p->bucket_s = 1;
    return p->lb_cond != NULL && run_sql(p, RS_LB_SRC, true, rsql_lookback(p, t));
}

static bool bucket_same(json_t *a, json_t *b)
{
    return json_integer_value(json_array_get(a, 1)) == json_integer_value(json_array_get(b, 1)) &&
           str_eq(json_string_value(json_array_get(a, 2)), json_string_value(json_array_get(b, 2)));
}

static json_t *bucket_find(json_t *list, json_int_t b)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
        if (json_integer_value(json_array_get(e, 0)) == b)
            return e;
    return NULL;
}

static void add_bad(rec_pass *p, json_int_t b)
{
    for (size_t i = 0; i < p->nbad; i++)
        if (p->bad[i] == b)
            return;
    if (p->nbad < MAX_BAD_BUCKETS)
        p->bad[p->nbad++] = b;
}

static void lb_back_done(rec_pass *p, const pgexec_result *res)
{
    json_t *back = json_loads(value0(res, 0), 0, NULL);
    if (!json_is_array(back) || !json_is_array(p->lb_src)) {
        json_decref(back);
        fail(p, "unexpected look-back answer");
        return;
    }
    p->nbad = 0;
    size_t i;
    json_t *e;
    json_array_foreach(p->lb_src, i, e) {
        json_t *o = bucket_find(back, json_integer_value(json_array_get(e, 0)));
        if (o == NULL || !bucket_same(e, o))
            add_bad(p, json_integer_value(json_array_get(e, 0)));
    }
    json_array_foreach(back, i, e)
        if (bucket_find(p->lb_src, json_integer_value(json_array_get(e, 0))) == NULL)
            add_bad(p, json_integer_value(json_array_get(e, 0)));
    json_decref(back);
    json_decref(p->lb_src);
    p->lb_src = NULL;
    if (p->nbad == 0) {
        p->ti++;
        next_table(p);
        return;
    }
    log_debug("refresh %" PRId64 ": %s: %zu look-back bucket(s) differ: copying them again",
              p->j->rec.id, p->t[p->ti].name, p->nbad);
    p->buckets_again += (int64_t)p->nbad;
    p->bk = B_BUCKET;
    p->bi = 0;
    p->limit = p->batch > COPY_BATCH_MIN ? p->batch : COPY_BATCH_MIN;
    free(p->bucket_key);
    p->bucket_key = NULL;
    start_fetch(p, NULL);
}

/* ---- the driver --------------------------------------------------------------------------- */

static void finish_pass(rec_pass *p)
{
    refresh_t *r = p->j->r;
    r->rec_deletes_by = p->ledger ? REC_DELETES_LEDGER : REC_DELETES_COMPARE;
    r->rec_rows = p->rows_copied;
    r->rec_deleted = p->rows_deleted;
    r->rec_whole = p->tables_whole;
    p->j->egress = p->bytes;
    log_debug("refresh %" PRId64 ": pass done: %" PRId64 " row(s) copied, %" PRId64 " deleted, %" PRId64
              " look-back bucket(s) again, %zu table(s) copied whole, %" PRId64 " bytes read",
              p->j->rec.id, p->rows_copied, p->rows_deleted, p->buckets_again, p->tables_whole, p->bytes);
    refresh_job_phase_done(p->j, true);
}

static void next_table(rec_pass *p)
{
    for (; p->ti < p->nt; p->ti++) {
        const rec_table *t = &p->t[p->ti];
        if (!store_watermark_get(p->j->r->store, t->name, &p->wm))
            str_copy(p->wm.name, t->name, sizeof p->wm.name);
        int64_t big = p->batch > COPY_BATCH_MIN ? p->batch : COPY_BATCH_MIN;
        if (t->chg >= 0) {
            p->bk = B_INCR;
            p->limit = p->wm.watermark[0] ? p->batch : big;
            start_fetch(p, p->wm.watermark);
            return;
        }
        if (p->wm.full_key[0] != '\0' || p->wm.full_at == 0 ||
            p->started_at - p->wm.full_at >= p->full_every_ms) {
            p->bk = B_FULL;
            p->limit = big;
            start_fetch(p, p->wm.full_key);
            return;
        }
    }
    /* every table copied: without the ledger, the key comparison when due */
    if (!p->ledger && refresh_compare_due(p))
        refresh_compare_start(p);
    else
        finish_pass(p);
}

/* A part of the table is done (a short batch): what comes next. */
static void part_done(rec_pass *p)
{
    const rec_table *t = &p->t[p->ti];
    if (p->bk == B_INCR) {
        if (t->chg_time && p->lookback_ms > 0 && p->do_lookback && p->wm.watermark[0] != '\0') {
            if (!lb_start(p))
                fail(p, "out of memory");
            return;
        }
    } else if (p->bk == B_FULL) {
        p->wm.full_key[0] = '\0';
        p->wm.full_at = p->started_at;
        p->wm.updated_at = wall_ms();
        if (!put_watermark(p))
            return;
        p->tables_whole++;
    } else if (++p->bi < p->nbad) {
        free(p->bucket_key);
        p->bucket_key = NULL;
        start_fetch(p, NULL);
        return;
    }
    p->ti++;
    next_table(p);
}

/* Catalogs read (and the ledger installed, or refused): deletes, then tables. */
static void after_setup(rec_pass *p)
{
    if (p->ledger) {
        run_sql(p, RS_DRAIN, true, rsql_drain());
        return;
    }
    p->ti = 0;
    next_table(p);
}

static void step(rec_pass *p)
{
    switch (p->st) {
    case RS_BACKUP:
        after_setup(p);
        return;
    case RS_INSTALL:
        p->ledger = true;
        p->j->r->rec_no_ledger_at = 0;
        after_setup(p);
        return;
    case RS_DRAIN_PRUNE:
        if (p->limit >= LEDGER_BATCH) {
            run_sql(p, RS_DRAIN, true, rsql_drain());
            return;
        }
        p->ti = 0;
        next_table(p);
        return;
    case RS_FETCH:
    case RS_APPLY:
        part_done(p);
        return;
    default:
        fail(p, "internal error: step in state %d", (int)p->st);
        return;
    }
}

static const char *state_what(rstate st)
{
    switch (st) {
    case RS_CATALOG: return "primary (catalog)";
    case RS_BACKUP: return "backup (catalog)";
    case RS_INSTALL: return "primary (delete ledger)";
    case RS_DRAIN: return "primary (reading the delete ledger)";
    case RS_DRAIN_APPLY: return "backup (applying deletes)";
    case RS_DRAIN_PRUNE: return "primary (pruning the delete ledger)";
    case RS_FETCH: return "primary (reading changed rows)";
    case RS_APPLY: return "backup (applying changed rows)";
    case RS_LB_SRC: return "primary (look-back)";
    case RS_LB_BACK: return "backup (look-back)";
    case RS_CMP_WHOLE_BACK: return "backup (the keys' digest)";
    case RS_CMP_WHOLE_SRC: return "primary (the keys' digest)";
    case RS_CMP_SPLIT: return "backup (key ranges)";
    case RS_CMP_HASH: return "primary (key ranges)";
    case RS_CMP_KEYS: return "backup (keys of differing ranges)";
    case RS_CMP_MISSING: return "primary (keys of differing ranges)";
    case RS_CMP_DELETE: return "backup (deleting keys the primary no longer has)";
    default: return "reconcile";
    }
}

static void on_sql(void *arg, const pgexec_result *res)
{
    rec_pass *p = arg;
    pgexec_t *done = p->sql;
    p->sql = NULL;
    if (p->on_source)
        p->bytes += res->bytes_in;
    if (!res->ok) {
        char error[512];
        str_copy(error, res->error, sizeof error);
        pgexec_free(done);
        if (p->st == RS_INSTALL)
            install_failed(p, error);
        else
            fail(p, "%s%s%s: %s", state_what(p->st), p->ti < p->nt ? " " : "",
                 p->ti < p->nt ? p->t[p->ti].name : "", error);
        return;
    }
    /* done (and the rows it holds) lives until the handler has read them;
     * a handler may end the pass (and free p): p is not used after it */
    switch (p->st) {
    case RS_CATALOG: catalog_done(p, res); break;
    case RS_BACKUP: backup_done(p, res); break;
    case RS_INSTALL: step(p); break;
    case RS_DRAIN: drain_done(p, res); break;
    case RS_DRAIN_APPLY: {
        char *sql = refresh_xasprintf("DELETE FROM drd.deleted WHERE id IN (%s)", p->ledger_ids);
        run_sql(p, RS_DRAIN_PRUNE, true, sql);
        break;
    }
    case RS_DRAIN_PRUNE: step(p); break;
    case RS_FETCH: fetch_done(p, res); break;
    case RS_APPLY: apply_done(p); break;
    case RS_LB_SRC:
        p->lb_src = json_loads(value0(res, 0), 0, NULL);
        run_sql(p, RS_LB_BACK, false, rsql_lookback(p, &p->t[p->ti]));
        break;
    case RS_LB_BACK: lb_back_done(p, res); break;
    case RS_CMP_WHOLE_BACK: case RS_CMP_WHOLE_SRC:
    case RS_CMP_SPLIT: case RS_CMP_HASH: case RS_CMP_KEYS: case RS_CMP_MISSING: case RS_CMP_DELETE:
        refresh_compare_result(p, res);
        break;
    default: fail(p, "internal error: result in state %d", (int)p->st); break;
    }
    pgexec_free(done);
}

bool rec_run_sql(rec_pass *p, rstate st, bool source, char *sql)
{
    return run_sql(p, st, source, sql);
}

void rec_fail(rec_pass *p, const char *msg)
{
    fail(p, "%s", msg);
}

void rec_pass_finish(rec_pass *p)
{
    finish_pass(p);
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* A pass on the catalogs kept from the last one (a poll function: any
 * failure has been reported through the driver already). */
static int cached_start(job_t *j)
{
    rec_pass *p = j->rp;
    refresh_t *r = j->r;
    p->st = RS_BACKUP;
    if (!catalog_apply(p, r->rec_catalog))
        return PHASE_FAILED;
    p->back_super = r->rec_back_super;
    r->rec_tables = p->nt;
    if (p->want_install)
        run_sql(p, RS_INSTALL, true, rsql_install(p));
    else
        step(p);
    return PHASE_ASYNC;
}

int refresh_reconcile_pass_enter(job_t *j)
{
    const config_t *c = j->r->cfg;
    rec_pass *p = calloc(1, sizeof *p);
    if (p == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    j->rp = p;
    p->j = j;
    p->started_at = j->rec.started_at;
    p->batch = c->refresh_batch > 0 ? c->refresh_batch : 500;
    p->lookback_ms = c->refresh_lookback_ms;
    p->full_every_ms = c->refresh_full_every_ms > 0 ? c->refresh_full_every_ms : 24 * 3600 * 1000LL;
    p->compare_every_ms = c->refresh_compare_every_ms;
    p->deletes = c->refresh_deletes;
    p->tables = dup_or_null(c->refresh_tables);
    p->change_columns = strdup(c->refresh_change_columns != NULL ? c->refresh_change_columns : "updated_at, created_at");
    p->schemas = strdup(c->sync_schemas != NULL ? c->sync_schemas : "public");
    p->exclude = dup_or_null(c->sync_exclude);
    if (p->change_columns == NULL || p->schemas == NULL ||
        (c->refresh_tables && !p->tables) || (c->sync_exclude && !p->exclude)) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    char err[256];
    if (c->refresh_source_url != NULL) {
        if (!refresh_rconn_parse(c->refresh_source_url, NULL, &p->src, err, sizeof err)) {
            refresh_job_fail(j, "[refresh] source_url: %s", err);
            return PHASE_FAILED;
        }
        if (p->src.password == NULL && c->primary.password != NULL &&
            (p->src.password = strdup(c->primary.password)) == NULL) {
            refresh_job_fail(j, "out of memory");
            return PHASE_FAILED;
        }
    } else if (!refresh_rconn_parse_target(&c->primary, &p->src, err, sizeof err)) {
        refresh_job_fail(j, "[primary] url: %s", err);
        return PHASE_FAILED;
    }
    p->c_src = refresh_rconn_string(&p->src, NULL, false, p->src.password != NULL);
    if (p->c_src == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    /* the look-back at most every LB_EVERY_MS (every pass when passes are rarer) */
    refresh_t *r = j->r;
    int64_t now = loop_now(r->loop);
    p->do_lookback = r->rec_lb_at == 0 || now - r->rec_lb_at >= LB_EVERY_MS;
    if (p->do_lookback)
        r->rec_lb_at = now;
    /* the catalogs, as the last good pass read them, for CATALOG_KEEP_MS */
    if (r->rec_catalog != NULL && r->rec_catalog_at > 0 && now - r->rec_catalog_at < CATALOG_KEEP_MS)
        return refresh_job_poll_later(j, 0, cached_start);
    /* not run_sql: a failure here is returned, not reported through the driver */
    char *sql = rsql_catalog(p);
    const char *stmts[] = { sql };
    p->st = RS_CATALOG;
    p->on_source = true;
    p->sql = sql ? pgexec_start_flags(j->r->loop, p->c_src, p->src.password, stmts, 1, REC_SQL_MS,
                                      PGEXEC_POOLED | PGEXEC_KEEP_ROWS, on_sql, p) : NULL;
    free(sql);
    if (p->sql == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    return PHASE_ASYNC;
}
