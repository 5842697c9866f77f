/* sync_back.c - incremental sync-back: the backup's ledger replayed to the
 * primary, conflicts detected before anything is written.
 *
 * Backup (one REPEATABLE READ transaction, so ledger and rows agree):
 *   per changed table, temp table drd_kN: every key the outage touched
 *   (key_new of inserts and updates, key_old of deletes and key-changing
 *   updates; keys normalised through the table's own column types), with
 *   the state before its FIRST outage change (drd_existed, drd_before) and
 *   the backup's current row (drd_bcur, NULL if gone).
 * Primary (one transaction: all or nothing):
 *   the keys with 64-bit hashes of both images (drd_iN) and the backup's
 *   current rows for those keys (staging drd_sN) are COPYed in; each key
 *   is classified (drd_kN) against the hash of the primary's current row
 *   (see row_hash: the before-image goes through the table's types first,
 *   so the app's session settings, e.g. its TimeZone, do not matter):
 *     same      primary row = backup row: nothing to do (a re-run after
 *               success or after a crash finds every done key here)
 *     apply     primary row = the row before the outage: take the backup's
 *     conflict  anything else: changed on both sides
 *   ask + conflicts: the report lists them, the transaction is rolled back.
 *   Else apply: with session_replication_role = replica, delete the keys
 *   and insert the backup's rows (any table order, no triggers); without
 *   it, INSERT ... ON CONFLICT DO UPDATE parents first, then deletes of
 *   the keys gone from the backup children first (foreign keys hold at
 *   every statement, and ON DELETE CASCADE never fires on a row the backup
 *   still has). Changed tables without a key (and, in a ledger of an
 *   older version, tables truncated during the outage: op T) are copied
 *   whole, unless already equal, and only if the primary's copy is still
 *   the one capture saw (keyless_guard). A TRUNCATE is recorded as a
 *   delete per row (sync_capture.c) and handled key by key like one.
 *   Then the sequences, then COMMIT.
 *   primary-wins: the conflicting keys keep the primary's row, and that row
 *   is copied to the backup too, so that verify can pass. */
#include "sync_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"
#include "sync_back_int.h"


/* ---- SQL pieces ------------------------------------------------------------ */

static void keylist(sbuf *b, const stable *t, const char *prefix)
{
    for (size_t i = 0; i < t->nkey; i++) {
        if (i > 0)
            sb_add(b, ", ");
        if (prefix != NULL)
            sb_add(b, prefix);
        sb_ident(b, t->key[i]);
    }
}

static void copy_fmt(sbuf *b, bool text)
{
    if (!text)
        sb_add(b, " (FORMAT binary)");
}

/* ---- steps ------------------------------------------------------------------- */

/* Which tables changed: ledger entries, truncates, flagged keyless tables. */
static bool list_changes(backctx *x)
{
    sync_ctx *c = x->c;
    sbuf *q = &x->q;
    sb_reset(q);
    sb_add(q, "SELECT schema_name, table_name, sum(n), bool_or(whole) FROM ("
              "  SELECT schema_name, table_name, count(*) AS n, bool_or(op = 'T') AS whole"
              "    FROM drd.ledger l WHERE ");
    sync_tail_filter(q, c, "l");
    sb_add(q, " GROUP BY 1, 2"
              "  UNION ALL SELECT schema_name, table_name, 1, true FROM drd.no_pk_tables WHERE changed) s"
              " GROUP BY 1, 2 ORDER BY 1, 2");
    PGresult *r = q->oom ? NULL : sq_exec(&x->b, sb_str(q), "reading the ledger");
    if (r == NULL)
        return false;
    bool ok = false;
    x->ch = calloc((size_t)PQntuples(r) + 1, sizeof(*x->ch));
    if (x->ch == NULL) {
        sync_fail(c, "out of memory");
        goto out;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        const char *schema = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
        stable *t = catalog_find(&x->bcat, schema, name);
        if (t == NULL) {
            /* Not synced any more (config changed), or gone. */
            const char *lit[1];
            sbuf qn;
            sb_init(&qn);
            sb_ident(&qn, schema);
            sb_add(&qn, ".");
            sb_ident(&qn, name);
            lit[0] = sb_str(&qn);
            PGresult *e = sq_params(&x->b, "SELECT to_regclass($1) IS NOT NULL", 1, lit, NULL);
            bool exists = e != NULL && PQgetvalue(e, 0, 0)[0] == 't';
            PQclear(e);
            sb_free(&qn);
            if (e == NULL)
                goto out;
            if (!exists) {
                sync_fail(c, "table %s.%s changed during the outage but no longer exists on the"
                          " backup (dropped or renamed: schema changes are not supported)",
                          schema, name);
                goto out;
            }
            sync_report(c, "%s.%s: %s changes ignored (not in [sync] schemas or excluded)",
                        schema, name, PQgetvalue(r, i, 2));
            continue;
        }
        changed *ch = &x->ch[x->nch++];
        ch->t = t;
        ch->idx = (size_t)(t - x->bcat.t);
        ch->entries = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        ch->whole = PQgetvalue(r, i, 3)[0] == 't' || t->nkey == 0;
        ch->text = catalog_needs_text(t);
    }
    ok = true;
out:
    PQclear(r);
    return ok;
}

/* Whole-table copies are skipped when both sides already hold the same rows
 * (a re-run). */
static bool whole_equal(backctx *x, changed *ch, bool *equal)
{
    sbuf *q = &x->q;
    sb_reset(q);
    sync_checksum_sql(q, ch->t, sync_record_hash_ok(&x->b, &x->p));
    PGresult *rb = sq_exec(&x->b, sb_str(q), "checksumming a table");
    if (rb == NULL)
        return false;
    PGresult *rp = sq_exec(&x->p, sb_str(q), "checksumming a table");
    if (rp == NULL) {
        PQclear(rb);
        return false;
    }
    *equal = strcmp(PQgetvalue(rb, 0, 0), PQgetvalue(rp, 0, 0)) == 0 &&
             strcmp(PQgetvalue(rb, 0, 1), PQgetvalue(rp, 0, 1)) == 0;
    PQclear(rb);
    PQclear(rp);
    return true;
}

/* COPY rows src -> dst; binary first unless text was asked, falling back to
 * text inside savepoints if binary fails for some type. */
static bool ship(backctx *x, sconn *src, sconn *dst, const char *select_sql,
                 const char *target, bool text, int64_t *rows)
{
    sync_ctx *c = x->c;
    sbuf out, in;
    sb_init(&out);
    sb_init(&in);
    char err[512];
    bool ok = false;
    for (int attempt = text ? 1 : 0; attempt < 2; attempt++) {
        bool bin = attempt == 0;
        sb_reset(&out);
        sb_reset(&in);
        sb_printf(&out, "COPY (%s) TO STDOUT", select_sql);
        copy_fmt(&out, !bin);
        sb_printf(&in, "COPY %s FROM STDIN", target);
        copy_fmt(&in, !bin);
        if (out.oom || in.oom) {
            sync_fail(c, "out of memory");
            goto out;
        }
        if (bin && (!sq_cmd(src, "SAVEPOINT drd_copy", NULL) || !sq_cmd(dst, "SAVEPOINT drd_copy", NULL)))
            goto out;
        if (sq_copy(src, sb_str(&out), dst, sb_str(&in), rows, err, sizeof(err))) {
            if (bin && (!sq_cmd(src, "RELEASE SAVEPOINT drd_copy", NULL) ||
                        !sq_cmd(dst, "RELEASE SAVEPOINT drd_copy", NULL)))
                goto out;
            ok = true;
            goto out;
        }
        if (!bin || atomic_load(&c->stop)) {
            sync_fail(c, "copying %s: %s", target, err);
            goto out;
        }
        if (!sq_cmd(src, "ROLLBACK TO SAVEPOINT drd_copy", NULL) ||
            !sq_cmd(dst, "ROLLBACK TO SAVEPOINT drd_copy", NULL))
            goto out;
        sync_report(c, "binary COPY failed (%s); retrying in text format", err);
    }
out:
    sb_free(&out);
    sb_free(&in);
    return ok;
}

/* How a row is hashed for comparison (64 bits): hash_record_extended()
 * when both servers have it and every column type has a hash function:
 * no printing at all; else hashtextextended() of to_jsonb(row) text, which
 * also survives the trip through the before-image's jsonb for types such
 * as json whose own text would not. Both sessions print values the same
 * way (sconn_open's settings), so equal rows hash equal either way.
 * `row` is a row expression: an alias, or jsonb_populate_record(...). */
static bool by_record(const backctx *x, const stable *t)
{
    return sync_record_hash_ok(&x->b, &x->p) && catalog_hashable(t);
}

static void row_hash(const backctx *x, sbuf *q, const stable *t, const char *row)
{
    if (by_record(x, t))
        sb_printf(q, "hash_record_extended(%s, 0)", row);
    else
        sb_printf(q, "hashtextextended(to_jsonb(%s)::text, 0)", row);
}

static const scol *key_col(const stable *t, size_t k)
{
    for (size_t j = 0; j < t->ncols; j++)
        if (strcmp(t->cols[j].name, t->key[k]) == 0)
            return &t->cols[j];
    return NULL;
}

/* The typed value of key column k from the ledger's jsonb key p.k: a cast
 * of its text for scalars (much cheaper than jsonb_populate_record, which
 * builds the whole row), the record route for arrays and user types. */
void sync_key_from_json(sbuf *q, const stable *t, size_t k)
{
    const scol *col = key_col(t, k);
    const char *type = col != NULL ? col->type : "text";
    size_t tl = strlen(type);
    if (strcmp(type, "jsonb") == 0) {
        sb_add(q, "(p.k -> ");
        sb_literal(q, t->key[k]);
        sb_add(q, ")");
    } else if (col == NULL || col->user_type || (tl > 2 && strcmp(type + tl - 2, "[]") == 0)) {
        sb_printf(q, "(jsonb_populate_record(NULL::%s, p.k)).", t->qname);
        sb_ident(q, t->key[k]);
    } else {
        sb_add(q, "(p.k ->> ");
        sb_literal(q, t->key[k]);
        sb_printf(q, ")::%s", type);
    }
    sb_add(q, " AS ");
    sb_ident(q, t->key[k]);
}

/* Keys of one table: collected on the backup, shipped to the primary with
 * md5 hashes of the row before the outage and of the backup's current row
 * (as to_jsonb text, both sessions printing values the same way), and
 * classified there against md5 of the primary's current row. The full
 * images stay on the backup (drd_kN) for the conflict report. */
/* How many keys of a changed table are apply, same, conflict. */
static bool count_actions(backctx *x, changed *ch)
{
    sbuf *q = &x->q;
    sb_reset(q);
    sb_printf(q, "SELECT count(*) FILTER (WHERE drd_action = 'apply'),"
                 " count(*) FILTER (WHERE drd_action = 'same'),"
                 " count(*) FILTER (WHERE drd_action = 'conflict') FROM pg_temp.drd_k%zu", ch->idx);
    PGresult *r = sq_exec(&x->p, sb_str(q), "counting");
    if (r == NULL)
        return false;
    ch->n_apply = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    ch->n_same = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    ch->n_conflict = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    PQclear(r);
    return true;
}

/* The foreign keys' part of the classification (sync_fk.c): the map of
 * changed tables, then keys whose removal would orphan primary-only rows
 * become conflicts. Sets *fk_conflicts; recounts the tables it touched. */
static bool foreign_keys(backctx *x, int64_t *fk_conflicts)
{
    fk_table *tabs = calloc(x->nch + 1, sizeof(*tabs));
    if (tabs == NULL) {
        sync_fail(x->c, "out of memory");
        return false;
    }
    size_t n = 0;
    for (size_t i = 0; i < x->nch; i++)
        if (!x->ch[i].skip)
            tabs[n++] = (fk_table){ .t = x->ch[i].t, .idx = x->ch[i].idx, .whole = x->ch[i].whole };
    bool ok = fk_map(&x->p, tabs, n, &x->q);
    free(tabs);
    if (!ok || (*fk_conflicts = fk_detect(&x->p)) < 0)
        return false;
    for (size_t i = 0; *fk_conflicts > 0 && i < x->nch; i++)
        if (!x->ch[i].skip && !x->ch[i].whole && !count_actions(x, &x->ch[i]))
            return false;
    return true;
}

/* A keyless table is copied whole: only if the primary's copy is still
 * what the backup held when capture was installed (its fingerprint then);
 * else copying would delete rows the primary alone has: a conflict
 * (ch->whole_conflict). A keyed table is copied whole only for a ledger
 * of an older version (op T: its truncates were not recorded row by row):
 * there is no fingerprint, so always a conflict. false only on an error. */
static bool keyless_guard(backctx *x, changed *ch)
{
    const stable *t = ch->t;
    const char *params[2] = { t->schema, t->name };
    PGresult *f = sq_params(&x->b, "SELECT fp_rows, fp_sum FROM drd.no_pk_tables"
                                   " WHERE schema_name = $1 AND table_name = $2", 2, params,
                            "reading the capture's fingerprint");
    if (f == NULL)
        return false;
    bool have = PQntuples(f) == 1 && !PQgetisnull(f, 0, 0);
    sbuf *q = &x->q;
    sb_reset(q);
    sync_checksum_sql(q, t, false);
    PGresult *p = sq_exec(&x->p, sb_str(q), "checksumming a table");
    if (p == NULL) {
        PQclear(f);
        return false;
    }
    bool same = have && strcmp(PQgetvalue(f, 0, 0), PQgetvalue(p, 0, 0)) == 0 &&
                strcmp(PQgetvalue(f, 0, 1), PQgetvalue(p, 0, 1)) == 0;
    if (!same) {
        ch->whole_conflict = true;
        if (t->nkey > 0)
            sync_report(x->c, "conflict in %s (truncated during the outage, recorded by an older"
                        " capture without its rows): copying the backup's whole table would delete"
                        " what only the primary has (%s rows there now)", t->label,
                        PQgetvalue(p, 0, 0));
        else if (have)
            sync_report(x->c, "conflict in %s (no key, changed during the outage): the primary's copy"
                        " changed too since capture (%s rows then, %s now); copying the backup's whole"
                        " would delete what only the primary has", t->label, PQgetvalue(f, 0, 0),
                        PQgetvalue(p, 0, 0));
        else
            sync_report(x->c, "conflict in %s (no key, changed during the outage): no fingerprint of"
                        " it from capture, so the primary's %s rows cannot be shown unchanged", t->label,
                        PQgetvalue(p, 0, 0));
    }
    PQclear(f);
    PQclear(p);
    return true;
}

/* A keyless table changed during the outage: unless it is equal on both
 * (skip), its whole backup copy staged on the primary in st. */
static bool prepare_whole(backctx *x, changed *ch, const char *st)
{
    const stable *t = ch->t;
    sbuf *q = &x->q;
    int64_t rows = 0;
    bool eq = false;
    if (!whole_equal(x, ch, &eq))
        return false;
    if (eq) {
        ch->skip = true;
        return true;
    }
    if (!keyless_guard(x, ch))
        return false;
    sb_reset(q);
    sb_printf(q, "CREATE TEMP TABLE %s (LIKE %s)", st + 8, t->qname);
    if (!sq_cmd(&x->p, sb_str(q), "creating a staging table"))
        return false;
    sb_reset(q);
    sb_printf(q, "SELECT * FROM ONLY %s", t->qname);
    if (!ship(x, &x->b, &x->p, sb_str(q), st, ch->text, &rows))
        return false;
    sb_reset(q);
    sb_printf(q, "ANALYZE %s", st);
    return sq_cmd(&x->p, sb_str(q), NULL);
}

/* On the backup, kt: the touched keys, each with the state before its
 * first outage change, and the backup's current row. */
static bool collect_keys(backctx *x, const stable *t, const char *kt)
{
    sync_ctx *c = x->c;
    sbuf *q = &x->q, *q2 = &x->q2;
    sb_reset(q2);
    sb_add(q2, "l.schema_name = ");
    sb_literal(q2, t->schema);
    sb_add(q2, " AND l.table_name = ");
    sb_literal(q2, t->name);
    sb_add(q2, " AND ");
    sync_tail_filter(q2, c, "l");
    sb_reset(q);
    sb_printf(q, "CREATE TEMP TABLE %s AS SELECT ", kt + 8);
    keylist(q, t, "q.");
    /* drd_bcur: the backup's row itself, typed */
    sb_add(q, ", q.drd_existed, q.drd_before, CASE WHEN t.");
    sb_ident(q, t->key[0]);
    sb_add(q, " IS NULL THEN NULL ELSE t END AS drd_bcur FROM (SELECT DISTINCT ON (");
    keylist(q, t, "x.");
    sb_add(q, ") x.* FROM (SELECT ");
    for (size_t k = 0; k < t->nkey; k++) {
        sync_key_from_json(q, t, k);
        sb_add(q, ", ");
    }
    /* one pass over the ledger; each entry gives one or two (key, state
     * before) pairs: I (key_new, absent), U and D (key_old, before_image),
     * and a key-changing U also (key_new, absent) */
    sb_add(q, "p.id AS drd_id, p.drd_existed, p.drd_before FROM (");
    sb_printf(q, "SELECT l.id, v.k, v.drd_existed, v.drd_before FROM drd.ledger l, LATERAL (VALUES"
                 " (l.key_new, false, NULL::jsonb, l.op = 'I'),"
                 " (l.key_old, true, l.before_image, l.op IN ('U', 'D')),"
                 " (l.key_new, false, NULL::jsonb, l.op = 'U' AND l.key_new <> l.key_old))"
                 " v(k, drd_existed, drd_before, keep) WHERE %s AND v.keep", sb_str(q2));
    sb_add(q, ") p) x ORDER BY ");
    keylist(q, t, "x.");
    sb_printf(q, ", x.drd_id) q LEFT JOIN ONLY %s t ON ", t->qname);
    catalog_keyjoin(q, t, "t", "q");
    sb_printf(q, "; ANALYZE %s", kt);
    if (q->oom) {
        sync_fail(c, "out of memory");
        return false;
    }
    return sq_cmd(&x->b, sb_str(q), "collecting the changed keys");
}

/* On the primary, it: the keys with the two hashes (before the outage,
 * the backup's now), typed from the catalog. */
static bool ship_key_hashes(backctx *x, const stable *t, const char *kt, const char *it)
{
    sbuf *q = &x->q, *q2 = &x->q2;
    int64_t rows = 0;
    sb_reset(q);
    sb_printf(q, "CREATE TEMP TABLE %s (", it + 8);
    for (size_t k = 0; k < t->nkey; k++) {
        const scol *col = key_col(t, k);
        sb_ident(q, t->key[k]);
        sb_printf(q, " %s, ", col != NULL ? col->type : "text");
    }
    sb_add(q, "drd_existed boolean, drd_h0 bigint, drd_hb bigint)");
    if (q->oom || !sq_cmd(&x->p, sb_str(q), "creating a key table"))
        return false;
    sb_reset(q);
    sb_add(q, "SELECT ");
    keylist(q, t, NULL);
    sb_add(q, ", drd_existed, CASE WHEN drd_existed THEN ");
    sb_reset(q2);
    sb_printf(q2, "jsonb_populate_record(NULL::%s, drd_before)", t->qname);
    row_hash(x, q, t, sb_str(q2));
    sb_add(q, " END, ");
    row_hash(x, q, t, "drd_bcur");
    sb_printf(q, " FROM %s", kt);
    return !q->oom && ship(x, &x->b, &x->p, sb_str(q), it, true, &rows);
}

/* Classify against the primary's current rows, into kt on the primary:
 *   same      primary = backup now
 *   apply     primary = before the outage (or absent, for a key that
 *             did not exist then)
 *   conflict  anything else */
static bool classify_keys(backctx *x, const stable *t, const char *kt, const char *st,
                          const char *it)
{
    sbuf *q = &x->q;
    sb_reset(q);
    sb_printf(q, "ANALYZE %s; CREATE TEMP TABLE %s AS SELECT ", it, kt + 8);
    keylist(q, t, "i.");
    sb_add(q, ", i.drd_existed, CASE WHEN i.drd_hp IS NOT DISTINCT FROM i.drd_hb THEN 'same'"
              " WHEN CASE WHEN i.drd_existed THEN i.drd_hp IS NOT DISTINCT FROM i.drd_h0"
              " ELSE i.drd_hp IS NULL END THEN 'apply' ELSE 'conflict' END AS drd_action"
              " FROM (SELECT k.*, CASE WHEN t.");
    sb_ident(q, t->key[0]);
    sb_add(q, " IS NULL THEN NULL ELSE ");
    row_hash(x, q, t, "t");
    sb_add(q, " END AS drd_hp");
    sb_printf(q, " FROM %s k LEFT JOIN ONLY %s t ON ", it, t->qname);
    catalog_keyjoin(q, t, "t", "k");
    sb_printf(q, ") i; ANALYZE %s; ANALYZE %s", kt, st);
    return !q->oom && sq_cmd(&x->p, sb_str(q), "comparing with the primary's rows");
}

static bool prepare_table(backctx *x, changed *ch)
{
    const stable *t = ch->t;
    sbuf *q = &x->q;
    char kt[32], st[32], it[32];
    snprintf(kt, sizeof(kt), "pg_temp.drd_k%zu", ch->idx);
    snprintf(st, sizeof(st), "pg_temp.drd_s%zu", ch->idx);
    snprintf(it, sizeof(it), "pg_temp.drd_i%zu", ch->idx);
    int64_t rows = 0;

    if (ch->whole)
        return prepare_whole(x, ch, st);
    /* staging for the backup's rows */
    sb_reset(q);
    sb_printf(q, "CREATE TEMP TABLE %s (LIKE %s)", st + 8, t->qname);
    if (!sq_cmd(&x->p, sb_str(q), "creating a staging table"))
        return false;
    if (!collect_keys(x, t, kt) || !ship_key_hashes(x, t, kt, it))
        return false;
    /* the backup's current rows for those keys */
    sb_reset(q);
    sb_printf(q, "SELECT t.* FROM ONLY %s t JOIN %s k ON ", t->qname, kt);
    catalog_keyjoin(q, t, "t", "k");
    if (q->oom || !ship(x, &x->b, &x->p, sb_str(q), st, ch->text, &rows))
        return false;
    return classify_keys(x, t, kt, st, it) && count_actions(x, ch);
}

/* Run q on dst and add the rows it touched to *n. */
static bool exec_count(sconn *dst, sbuf *q, const char *what, int64_t *n)
{
    PGresult *r = q->oom ? NULL : sq_exec(dst, sb_str(q), what);
    if (r == NULL)
        return false;
    *n += strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return true;
}

/* The upsert of the staged rows (all of them when whole, else those of
 * kt matching filter): every column but the key, generated and identity
 * ALWAYS columns is updated on a key conflict. */
static void upsert_sql(sbuf *q, const stable *t, bool whole, const char *kt, const char *st,
                       const char *filter)
{
    sb_printf(q, "INSERT INTO %s AS t (", t->qname);
    catalog_collist(q, t, NULL, false);
    sb_add(q, ") OVERRIDING SYSTEM VALUE SELECT ");
    catalog_collist(q, t, "s.", false);
    if (whole) {
        sb_printf(q, " FROM %s s", st);
    } else {
        sb_printf(q, " FROM %s s JOIN %s k ON ", st, kt);
        catalog_keyjoin(q, t, "s", "k");
        sb_printf(q, " WHERE %s", filter);
    }
    sb_add(q, " ON CONFLICT (");
    keylist(q, t, NULL);
    sb_add(q, ") DO ");
    bool any = false;
    for (size_t i = 0; i < t->ncols; i++) {
        const scol *col = &t->cols[i];
        bool iskey = false;
        for (size_t k = 0; k < t->nkey; k++)
            iskey = iskey || strcmp(t->key[k], col->name) == 0;
        if (iskey || col->generated || col->identity_always)
            continue;
        sb_add(q, any ? ", " : "UPDATE SET ");
        sb_ident(q, col->name);
        sb_add(q, " = EXCLUDED.");
        sb_ident(q, col->name);
        any = true;
    }
    if (!any)
        sb_add(q, "NOTHING");
}

/* The apply statements for one table on dst: keys table kt (rows matching
 * `filter`), staging st. phase 0 = all (replica: delete + insert),
 * 1 = upsert, 2 = delete of keys the source no longer has. */
static bool apply_table(backctx *x, sconn *dst, const stable *t, bool whole, const char *kt,
                        const char *st, const char *filter, bool replica, int phase,
                        int64_t *written, int64_t *deleted)
{
    sbuf *q = &x->q;
    if (t->nkey == 0 || (whole && replica)) {
        if (phase == 2)
            return true;
        sb_reset(q);
        sb_printf(q, "DELETE FROM ONLY %s", t->qname);
        if (!exec_count(dst, q, "deleting rows", deleted))
            return false;
        sb_reset(q);
        sb_printf(q, "INSERT INTO %s (", t->qname);
        catalog_collist(q, t, NULL, false);
        sb_add(q, ") OVERRIDING SYSTEM VALUE SELECT ");
        catalog_collist(q, t, NULL, false);
        sb_printf(q, " FROM %s", st);
        return exec_count(dst, q, "inserting rows", written);
    }
    if (replica) {
        sb_reset(q);
        sb_printf(q, "DELETE FROM ONLY %s t USING %s k WHERE %s AND ", t->qname, kt, filter);
        catalog_keyjoin(q, t, "t", "k");
        if (!exec_count(dst, q, "deleting rows", deleted))
            return false;
        sb_reset(q);
        sb_printf(q, "INSERT INTO %s (", t->qname);
        catalog_collist(q, t, NULL, false);
        sb_add(q, ") OVERRIDING SYSTEM VALUE SELECT ");
        catalog_collist(q, t, "s.", false);
        sb_printf(q, " FROM %s s JOIN %s k ON ", st, kt);
        catalog_keyjoin(q, t, "s", "k");
        sb_printf(q, " WHERE %s", filter);
        return exec_count(dst, q, "inserting rows", written);
    }
    sb_reset(q);
    if (phase == 1) {
        upsert_sql(q, t, whole, kt, st, filter);
        return exec_count(dst, q, "writing rows", written);
    }
    if (whole) {
        sb_printf(q, "DELETE FROM ONLY %s t WHERE NOT EXISTS (SELECT 1 FROM %s s WHERE ", t->qname, st);
        catalog_keyjoin(q, t, "s", "t");
        sb_add(q, ")");
    } else {
        sb_printf(q, "DELETE FROM ONLY %s t USING %s k WHERE %s AND ", t->qname, kt, filter);
        catalog_keyjoin(q, t, "t", "k");
        sb_printf(q, " AND NOT EXISTS (SELECT 1 FROM %s s WHERE ", st);
        catalog_keyjoin(q, t, "s", "k");
        sb_add(q, ")");
    }
    return exec_count(dst, q, "deleting rows", deleted);
}

static int cmp_level_up(const void *a, const void *b)
{
    const changed *x = *(const changed *const *)a, *y = *(const changed *const *)b;
    return (x->t->level > y->t->level) - (x->t->level < y->t->level);
}

/* Apply on the primary: order by foreign keys unless replica. */
static bool apply_all(backctx *x)
{
    sync_ctx *c = x->c;
    bool ok = false;
    changed **order = calloc(x->nch + 1, sizeof(*order));
    if (order == NULL) {
        sync_fail(c, "out of memory");
        return false;
    }
    size_t n = 0;
    for (size_t i = 0; i < x->nch; i++)
        if (!x->ch[i].skip && (x->ch[i].whole || x->ch[i].n_apply > 0))
            order[n++] = &x->ch[i];
    qsort(order, n, sizeof(*order), cmp_level_up);
    if (!x->replica)
        for (size_t i = 0; i < n; i++)
            if (order[i]->t->cyclic)
                sync_report(c, "%s is part of a foreign-key cycle and session_replication_role ="
                            " replica is not allowed: the apply may fail on those keys",
                            order[i]->t->label);
    char kt[32], st[32];
    int phases = x->replica ? 1 : 2;
    for (int ph = 1; ph <= phases; ph++) {
        for (size_t j = 0; j < n; j++) {
            /* upserts parents first, deletes children first */
            changed *ch = order[ph == 2 ? n - 1 - j : j];
            snprintf(kt, sizeof(kt), "pg_temp.drd_k%zu", ch->idx);
            snprintf(st, sizeof(st), "pg_temp.drd_s%zu", ch->idx);
            int64_t t0 = mono_ms();
            if (!apply_table(x, &x->p, ch->t, ch->whole, kt, st, "k.drd_action = 'apply'",
                             x->replica, x->replica ? 0 : ph, &ch->written, &ch->deleted))
                goto out;
            ch->ms += mono_ms() - t0;
        }
    }
    ok = true;
out:
    free(order);
    return ok;
}

/* primary-wins on a keyless table: the primary's rows replace the
 * backup's (inside the backup's transaction), so that both sides agree. */
static bool write_back_whole(backctx *x, changed *ch)
{
    const stable *t = ch->t;
    sbuf *q = &x->q;
    char ws[32];
    int64_t rows = 0, w = 0, d = 0;
    snprintf(ws, sizeof(ws), "pg_temp.drd_ws%zu", ch->idx);
    sb_reset(q);
    sb_printf(q, "CREATE TEMP TABLE %s (LIKE %s)", ws + 8, t->qname);
    if (q->oom || !sq_cmd(&x->b, sb_str(q), "preparing the write-back"))
        return false;
    sb_reset(q);
    sb_printf(q, "SELECT * FROM ONLY %s", t->qname);
    if (q->oom || !ship(x, &x->p, &x->b, sb_str(q), ws, ch->text, &rows))
        return false;
    for (int ph = 1; ph <= (t->nkey > 0 ? 2 : 1); ph++)
        if (!apply_table(x, &x->b, t, true, NULL, ws, "true", false, ph, &w, &d))
            return false;
    sync_report(x->c, "%s: kept the primary's rows (%s); copied to the backup (%" PRId64
                " written, %" PRId64 " deleted there)", t->label,
                t->nkey > 0 ? "truncated, older capture" : "no key", w, d);
    return true;
}

/* primary-wins: the primary's rows for the conflicting keys go to the
 * backup (inside the backup's transaction), so that both sides agree. */
static bool write_back(backctx *x)
{
    sync_ctx *c = x->c;
    sbuf *q = &x->q;
    char kt[32], wt[32], ws[32];
    int64_t rows = 0;
    for (size_t i = 0; i < x->nch; i++) {
        changed *ch = &x->ch[i];
        if (ch->n_conflict == 0)
            continue;
        const stable *t = ch->t;
        snprintf(kt, sizeof(kt), "pg_temp.drd_k%zu", ch->idx);
        snprintf(wt, sizeof(wt), "pg_temp.drd_w%zu", ch->idx);
        snprintf(ws, sizeof(ws), "pg_temp.drd_ws%zu", ch->idx);
        sb_reset(q);
        sb_printf(q, "CREATE TEMP TABLE %s AS SELECT ", wt + 8);
        keylist(q, t, NULL);
        sb_printf(q, " FROM %s WITH NO DATA; CREATE TEMP TABLE %s (LIKE %s)", kt, ws + 8, t->qname);
        if (q->oom || !sq_cmd(&x->b, sb_str(q), "preparing the write-back"))
            return false;
        sb_reset(q);
        sb_add(q, "SELECT ");
        keylist(q, t, NULL);
        sb_printf(q, " FROM %s WHERE drd_action = 'conflict'", kt);
        if (q->oom || !ship(x, &x->p, &x->b, sb_str(q), wt, true, &rows))
            return false;
        sb_reset(q);
        sb_printf(q, "SELECT t.* FROM ONLY %s t JOIN %s k ON ", t->qname, kt);
        catalog_keyjoin(q, t, "t", "k");
        sb_add(q, " WHERE k.drd_action = 'conflict'");
        if (q->oom || !ship(x, &x->p, &x->b, sb_str(q), ws, ch->text, &rows))
            return false;
        int64_t w = 0, d = 0;
        /* the backup's capture triggers are off when replica is allowed
         * there; if not, they record these writes, which is harmless: the
         * first before-image of each key stays the one from the outage */
        for (int ph = 1; ph <= 2; ph++)
            if (!apply_table(x, &x->b, t, false, wt, ws, "true", false, ph, &w, &d))
                return false;
        sync_report(c, "%s: %" PRId64 " conflicting keys kept the primary's row; copied to the"
                    " backup (%" PRId64 " written, %" PRId64 " deleted there)",
                    t->label, ch->n_conflict, w, d);
    }
    return true;
}

/* sync_op_back, step 1: both sides open, the backup's REPEATABLE READ
 * transaction (in the verify pass's exported snapshot when asked), the
 * pass's start, the ledger's checks and changes, the primary's
 * transaction. *now = the backup transaction's snapshot. */
static bool back_begin(backctx *x, char **now, int64_t *entries)
{
    sync_ctx *c = x->c;
    if (!sync_open_both(c, &x->b, &x->bcat, &x->p, &x->pcat) || !back_check_ledger(x))
        return false;
    x->replica = sync_try_replica(&x->p);
    /* on the backup only for the primary-wins write-back: no capture of it */
    sync_try_replica(&x->b);
    sync_report(c, "sync-back: %zu tables synced; foreign keys: %s", x->bcat.n,
                x->replica ? "session_replication_role = replica"
                           : "replica role not allowed, tables ordered by their foreign keys");
    if (!sq_cmd(&x->b, "BEGIN ISOLATION LEVEL REPEATABLE READ", NULL))
        return false;
    if (c->import_snapshot != NULL) {
        sb_reset(&x->q);
        sb_add(&x->q, "SET TRANSACTION SNAPSHOT ");
        sb_literal(&x->q, c->import_snapshot);
        if (x->q.oom || !sq_cmd(&x->b, sb_str(&x->q), "reading the backup in the verify's snapshot"))
            return false;
    }
    if (!sync_pass_begin(c, &x->b, now) || !back_check_triggers(x) || !list_changes(x))
        return false;
    *entries = 0;
    for (size_t i = 0; i < x->nch; i++)
        *entries += x->ch[i].entries;
    /* A big ledger: statistics for the planner (it was only appended to;
     * autovacuum may not have looked yet), and an index when many tables
     * each read their part. Both on the backup, inside its transaction. */
    if (*entries > 50000 && !sq_cmd(&x->b, "ANALYZE drd.ledger", NULL))
        return false;
    if (*entries > 50000 && x->nch > 4 &&
        !sq_cmd(&x->b, "CREATE INDEX IF NOT EXISTS ledger_table ON drd.ledger (schema_name, table_name)", NULL))
        return false;
    return back_check_privileges(x) && sq_cmd(&x->p, "BEGIN", NULL) &&
           sq_cmd(&x->p, "SET CONSTRAINTS ALL DEFERRED", NULL);
}

static int64_t back_conflicts(const backctx *x)
{
    int64_t n = 0;
    for (size_t i = 0; i < x->nch; i++)
        n += x->ch[i].n_conflict + (x->ch[i].whole_conflict ? 1 : 0);
    return n;
}

/* Step 2: every changed table classified (same, apply, conflict), then
 * the foreign keys; *conflicts = what is left to decide. */
static bool back_classify(backctx *x, int64_t entries, int64_t *conflicts, int64_t *fk_conflicts)
{
    for (size_t i = 0; i < x->nch; i++) {
        int64_t t1 = mono_ms();
        if (!prepare_table(x, &x->ch[i]))
            return false;
        x->ch[i].ms = mono_ms() - t1;
    }
    sync_report(x->c, "ledger: %" PRId64 " entries on %zu tables", entries, x->nch);
    *fk_conflicts = 0;
    /* nothing changed (an empty tail): no key to check or apply */
    if (x->nch > 0 && !foreign_keys(x, fk_conflicts))
        return false;
    *conflicts = back_conflicts(x);
    return true;
}

/* Step 3: conflicts reported; with ask the job fails (nothing written),
 * backup-wins turns them into applies. */
static bool back_resolve(backctx *x, int64_t conflicts, int64_t fk_conflicts)
{
    sync_ctx *c = x->c;
    if (conflicts > 0) {
        if (!back_report_conflicts(x, conflicts))
            return false;
        if (!x->backup_wins && !x->primary_wins) {
            pthread_mutex_lock(&c->mu);
            c->conflicts = true;
            pthread_mutex_unlock(&c->mu);
            sync_fail(c, "%" PRId64 " conflicts: rows changed both on the primary and on the"
                      " backup during the outage%s; nothing was written. Decide: backup-wins"
                      " (take the backup's rows) or primary-wins (keep the primary's)", conflicts,
                      fk_conflicts > 0 ? ", or deleted on the backup while rows only the primary"
                                         " has still reference them" : "");
            return false;
        }
        if (x->backup_wins) {
            for (size_t i = 0; i < x->nch; i++) {
                if (x->ch[i].n_conflict == 0)
                    continue;
                sb_reset(&x->q);
                sb_printf(&x->q, "UPDATE pg_temp.drd_k%zu SET drd_action = 'apply'"
                          " WHERE drd_action = 'conflict'", x->ch[i].idx);
                if (!sq_cmd(&x->p, sb_str(&x->q), NULL))
                    return false;
                x->ch[i].n_apply += x->ch[i].n_conflict;
            }
            sync_report(c, "backup-wins: the backup's rows replace the primary's for all"
                        " %" PRId64 " conflicting keys", conflicts);
            if (fk_conflicts > 0 && !fk_apply_actions(&x->p, x->replica))
                return false;
        }
    }
    if (x->primary_wins)
        for (size_t i = 0; i < x->nch; i++)
            if (x->ch[i].whole_conflict)
                x->ch[i].skip = true;       /* kept: written back to the backup below */
    return true;
}

/* Step 4's report: one line per changed table; the rows and tables
 * written. */
static void back_report_tables(backctx *x, int64_t *rows, int64_t *tables)
{
    sync_ctx *c = x->c;
    *rows = *tables = 0;
    for (size_t i = 0; i < x->nch; i++) {
        changed *ch = &x->ch[i];
        char d[32];
        format_duration(ch->ms, d, sizeof(d));
        if (ch->skip) {
            if (!ch->whole_conflict)
                sync_report(c, "%s: copied whole before; already equal, nothing to do", ch->t->label);
            continue;
        }
        if (ch->whole)
            sync_report(c, "%s: %s, copied whole: %" PRId64 " rows written, %" PRId64
                        " deleted, %s", ch->t->label,
                        ch->t->nkey == 0 ? "no key, changed" : "truncated during the outage",
                        ch->written, ch->deleted, d);
        else
            sync_report(c, "%s: %" PRId64 " keys changed: %" PRId64 " applied (%" PRId64
                        " rows written, %" PRId64 " deleted), %" PRId64 " already in sync, %"
                        PRId64 " conflicts%s, %s", ch->t->label,
                        ch->n_apply + ch->n_same + (x->backup_wins ? 0 : ch->n_conflict),
                        ch->n_apply, ch->written, ch->deleted, ch->n_same,
                        x->backup_wins ? 0 : ch->n_conflict,
                        ch->n_conflict > 0 ? (x->backup_wins ? "" : " kept") : "", d);
        *rows += ch->written + ch->deleted;
        if (ch->written + ch->deleted > 0)
            (*tables)++;
    }
}

/* Step 5: sequences, the primary-wins write-back, the keyless tables'
 * fingerprints, then both COMMITs (the primary first: a crash between
 * the two leaves the pass unrecorded, and the next one replays it again;
 * its keys are found in sync, or changed since: a conflict to decide,
 * never a loss). */
static bool back_commit(backctx *x, int64_t conflicts, const char *now, int64_t entries, int64_t t0)
{
    sync_ctx *c = x->c;
    if (!sync_sequences(c, &x->b, &x->p, &x->bcat))
        return false;
    if (x->primary_wins && conflicts > 0 && !write_back(x))
        return false;
    for (size_t i = 0; x->primary_wins && i < x->nch; i++)
        if (x->ch[i].whole_conflict && !write_back_whole(x, &x->ch[i]))
            return false;
    if (c->window && !back_keyless_fingerprints(x))
        return false;
    c->pass_wrote_back = x->primary_wins && conflicts > 0;
    if (!sq_cmd(&x->p, "COMMIT", "committing on the primary"))
        return false;
    if (c->window && !sync_pass_record(c, &x->b, now, entries, mono_ms() - t0))
        return false;
    return sq_cmd(&x->b, "COMMIT", "committing on the backup");
}

bool sync_op_back(sync_ctx *c)
{
    backctx x = { .c = c };
    char *now = NULL;            /* the backup transaction's snapshot */
    sb_init(&x.q);
    sb_init(&x.q2);
    bool ok = false;
    int64_t t0 = mono_ms(), entries = 0, conflicts = 0, fk_conflicts = 0, rows = 0, tables = 0;
    x.backup_wins = c->resolution == CONFLICTS_BACKUP_WINS;
    x.primary_wins = c->resolution == CONFLICTS_PRIMARY_WINS;

    if (!back_begin(&x, &now, &entries) || !back_classify(&x, entries, &conflicts, &fk_conflicts) ||
        !back_resolve(&x, conflicts, fk_conflicts))
        goto cleanup;
    if (x.nch > 0 && (!apply_all(&x) || !fk_validate(&x.p)))
        goto cleanup;
    back_report_tables(&x, &rows, &tables);
    if (!back_commit(&x, conflicts, now, entries, t0))
        goto cleanup;
    sync_add_counts(c, rows, tables);
    char d[32];
    format_duration(mono_ms() - t0, d, sizeof(d));
    sync_report(c, "sync-back done: %" PRId64 " rows written or deleted on %" PRId64
                " tables in %s", rows, tables, d);
    ok = true;
cleanup:
    /* an open transaction is rolled back by closing the connection */
    sconn_close(&x.p);
    sconn_close(&x.b);
    catalog_free(&x.bcat);
    catalog_free(&x.pcat);
    free(x.ch);
    free(now);
    sb_free(&x.q);
    sb_free(&x.q2);
    return ok;
}
