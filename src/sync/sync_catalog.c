/* sync_catalog.c - what is synced: the tables (columns, key, size, foreign
 * keys) and sequences of [sync] schemas minus schema drd and [sync]
 * exclude; comparing both sides (DDL during the outage is not supported);
 * the sequence resync; session_replication_role. */
#include "sync_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"

static const char *const tables_sql =
    "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),"
    "       a.attgenerated <> '', (a.atttypid >= 16384 OR ty.typelem >= 16384),"
    "       coalesce(k.pos, 0), pg_relation_size(c.oid), a.attidentity = 'a', c.oid,"
    /* hashable: a base type with a default hash opclass whose hash does
     * not depend on the cluster: not enums (hashed by their label's OID,
     * which differs between clusters), not oid and its reg* aliases; and
     * so not json, point, composites, ranges either */
    "       ht.typtype = 'b' AND ht.oid NOT IN ('oid'::regtype, 'regclass'::regtype, 'regtype'::regtype,"
    "                                           'regproc'::regtype, 'regprocedure'::regtype, 'regoper'::regtype,"
    "                                           'regoperator'::regtype, 'regconfig'::regtype,"
    "                                           'regdictionary'::regtype, 'regnamespace'::regtype,"
    "                                           'regrole'::regtype)"
    "       AND EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod"
    "                    WHERE am.amname = 'hash' AND oc.opcdefault AND oc.opcintype = ht.oid)"
    "  FROM pg_class c"
    "  JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    "  LEFT JOIN pg_type ty ON ty.oid = a.atttypid"
    "  LEFT JOIN pg_type bt ON bt.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END"
    "  LEFT JOIN pg_type ht ON ht.oid = CASE WHEN bt.typcategory = 'A' THEN bt.typelem ELSE bt.oid END"
    "  LEFT JOIN LATERAL ("
    "       SELECT u.ord AS pos"
    "         FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS u(attnum, ord)"
    "        WHERE i.indexrelid = (SELECT i2.indexrelid FROM pg_index i2"
    "                               WHERE i2.indrelid = c.oid"
    "                                 AND (i2.indisprimary OR (i2.indisreplident AND c.relreplident = 'i'))"
    "                               ORDER BY i2.indisprimary DESC LIMIT 1)"
    "          AND u.attnum = a.attnum) k ON true"
    " WHERE c.relkind = 'r' AND n.nspname <> 'drd'"
    "   AND n.nspname = ANY (string_to_array($1, ','))"
    " ORDER BY n.nspname, c.relname, a.attnum";

static const char *const fkeys_sql =
    "SELECT n.nspname, c.relname, rn.nspname, rc.relname"
    "  FROM pg_constraint f"
    "  JOIN pg_class c ON c.oid = f.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_class rc ON rc.oid = f.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace"
    " WHERE f.contype = 'f' AND n.nspname = ANY (string_to_array($1, ','))";

static const char *const seqs_sql =
    "SELECT n.nspname, c.relname, s.seqincrement, c.oid"
    "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_sequence s ON s.seqrelid = c.oid"
    " WHERE c.relkind = 'S' AND n.nspname <> 'drd'"
    "   AND n.nspname = ANY (string_to_array($1, ','))"
    " ORDER BY n.nspname, c.relname";

static char *qualified(const char *schema, const char *name)
{
    sbuf b;
    sb_init(&b);
    sb_ident(&b, schema);
    sb_add(&b, ".");
    sb_ident(&b, name);
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    return b.s;
}

static char *label_of(const char *schema, const char *name)
{
    sbuf b;
    sb_init(&b);
    sb_printf(&b, "%s.%s", schema, name);
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    return b.s;
}

static void table_free(stable *t)
{
    free(t->schema);
    free(t->name);
    free(t->qname);
    free(t->label);
    for (size_t i = 0; i < t->ncols; i++) {
        free(t->cols[i].name);
        free(t->cols[i].type);
    }
    free(t->cols);
    for (size_t i = 0; i < t->nkey; i++)
        free(t->key[i]);
    free(t->key);
    for (size_t i = 0; i < t->nrefs; i++)
        free(t->refs[i]);
    free(t->refs);
}

void catalog_free(scatalog *cat)
{
    if (cat == NULL)
        return;
    for (size_t i = 0; i < cat->n; i++)
        table_free(&cat->t[i]);
    free(cat->t);
    for (size_t i = 0; i < cat->nseq; i++) {
        free(cat->seq[i].schema);
        free(cat->seq[i].name);
        free(cat->seq[i].qname);
        free(cat->seq[i].label);
    }
    free(cat->seq);
    *cat = (scatalog){ 0 };
}

stable *catalog_find(const scatalog *cat, const char *schema, const char *name)
{
    for (size_t i = 0; i < cat->n; i++)
        if (strcmp(cat->t[i].schema, schema) == 0 && strcmp(cat->t[i].name, name) == 0)
            return &cat->t[i];
    return NULL;
}

static bool add_ref(stable *t, const char *label)
{
    for (size_t i = 0; i < t->nrefs; i++)
        if (strcmp(t->refs[i], label) == 0)
            return true;
    char **r = realloc(t->refs, (t->nrefs + 1) * sizeof(*r));
    if (r == NULL)
        return false;
    t->refs = r;
    if ((t->refs[t->nrefs] = strdup(label)) == NULL)
        return false;
    t->nrefs++;
    return true;
}

/* level = 1 + the highest level among the tables it references (self
 * references do not count); tables in a cycle get one level above all. */
static void compute_levels(scatalog *cat)
{
    for (size_t i = 0; i < cat->n; i++)
        cat->t[i].level = -1;
    bool progress = true;
    int maxlevel = 0;
    while (progress) {
        progress = false;
        for (size_t i = 0; i < cat->n; i++) {
            stable *t = &cat->t[i];
            if (t->level >= 0)
                continue;
            int lvl = 0;
            bool ready = true;
            for (size_t r = 0; r < t->nrefs && ready; r++) {
                if (strcmp(t->refs[r], t->label) == 0)
                    continue;
                for (size_t j = 0; j < cat->n; j++)
                    if (strcmp(cat->t[j].label, t->refs[r]) == 0) {
                        if (cat->t[j].level < 0)
                            ready = false;
                        else if (cat->t[j].level + 1 > lvl)
                            lvl = cat->t[j].level + 1;
                    }
            }
            if (ready) {
                t->level = lvl;
                if (lvl > maxlevel)
                    maxlevel = lvl;
                progress = true;
            }
        }
    }
    for (size_t i = 0; i < cat->n; i++)
        if (cat->t[i].level < 0) {
            cat->t[i].level = maxlevel + 1;
            cat->t[i].cyclic = true;
        }
}

/* A new table from row i of tables_sql; NULL when out of memory. */
static stable *table_of_row(scatalog *out, PGresult *r, int i)
{
    const char *schema = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
    stable *t = realloc(out->t, (out->n + 1) * sizeof(*t));
    if (t == NULL)
        return NULL;
    out->t = t;
    stable *cur = &out->t[out->n++];
    *cur = (stable){ 0 };
    cur->schema = strdup(schema);
    cur->name = strdup(name);
    cur->qname = qualified(schema, name);
    cur->label = label_of(schema, name);
    cur->bytes = strtoll(PQgetvalue(r, i, 7), NULL, 10);
    str_copy(cur->oid, PQgetvalue(r, i, 9), sizeof(cur->oid));
    if (cur->schema == NULL || cur->name == NULL || cur->qname == NULL || cur->label == NULL)
        return NULL;
    return cur;
}

/* The column in row i of tables_sql, added to cur (and to its key when it
 * is a key column); false when out of memory. */
static bool column_of_row(stable *cur, PGresult *r, int i)
{
    scol *cols = realloc(cur->cols, (cur->ncols + 1) * sizeof(*cols));
    if (cols == NULL)
        return false;
    cur->cols = cols;
    scol *col = &cur->cols[cur->ncols++];
    *col = (scol){ 0 };
    col->name = strdup(PQgetvalue(r, i, 2));
    col->type = strdup(PQgetvalue(r, i, 3));
    col->generated = PQgetvalue(r, i, 4)[0] == 't';
    col->user_type = PQgetvalue(r, i, 5)[0] == 't';
    col->identity_always = PQgetvalue(r, i, 8)[0] == 't';
    col->hashable = PQgetvalue(r, i, 10)[0] == 't';
    if (col->name == NULL || col->type == NULL)
        return false;
    long pos = strtol(PQgetvalue(r, i, 6), NULL, 10);
    if (pos <= 0)
        return true;
    if ((size_t)pos > cur->nkey) {
        char **k = realloc(cur->key, (size_t)pos * sizeof(*k));
        if (k == NULL)
            return false;
        for (size_t j = cur->nkey; j < (size_t)pos; j++)
            k[j] = NULL;
        cur->key = k;
        cur->nkey = (size_t)pos;
    }
    return (cur->key[pos - 1] = strdup(col->name)) != NULL;
}

/* A key column we did not see: the table has no key. */
static void drop_partial_keys(scatalog *out)
{
    for (size_t i = 0; i < out->n; i++)
        for (size_t j = 0; j < out->t[i].nkey; j++)
            if (out->t[i].key[j] == NULL) {
                for (size_t k = 0; k < out->t[i].nkey; k++)
                    free(out->t[i].key[k]);
                free(out->t[i].key);
                out->t[i].key = NULL;
                out->t[i].nkey = 0;
                break;
            }
}

/* The synced tables with their columns and keys (tables_sql: one row per
 * column, a table's rows together). */
static bool load_tables(sconn *s, scatalog *out, const char *const *params)
{
    sync_ctx *c = s->ctx;
    PGresult *r = sq_params(s, tables_sql, 1, params, "listing the tables");
    if (r == NULL)
        return false;
    stable *cur = NULL;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *schema = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
        if (table_excluded(c->exclude, schema, name))
            continue;
        if ((cur == NULL || strcmp(cur->schema, schema) != 0 || strcmp(cur->name, name) != 0) &&
            (cur = table_of_row(out, r, i)) == NULL)
            goto oom;
        if (PQgetisnull(r, i, 2))
            continue;                            /* a table without columns */
        if (!column_of_row(cur, r, i))
            goto oom;
    }
    PQclear(r);
    drop_partial_keys(out);
    return true;
oom:
    sync_fail(c, "out of memory");
    PQclear(r);
    return false;
}

/* The foreign keys between synced tables, and the load levels they give. */
static bool load_fkeys(sconn *s, scatalog *out, const char *const *params)
{
    PGresult *r = sq_params(s, fkeys_sql, 1, params, "listing the foreign keys");
    if (r == NULL)
        return false;
    for (int i = 0; i < PQntuples(r); i++) {
        stable *t = catalog_find(out, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        stable *p = catalog_find(out, PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
        if (t != NULL && p != NULL && !add_ref(t, p->label)) {
            sync_fail(s->ctx, "out of memory");
            PQclear(r);
            return false;
        }
    }
    PQclear(r);
    compute_levels(out);
    return true;
}

static bool load_sequences(sconn *s, scatalog *out, const char *const *params)
{
    sync_ctx *c = s->ctx;
    PGresult *r = sq_params(s, seqs_sql, 1, params, "listing the sequences");
    if (r == NULL)
        return false;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *schema = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
        if (table_excluded(c->exclude, schema, name))
            continue;
        sseq *q = realloc(out->seq, (out->nseq + 1) * sizeof(*q));
        if (q == NULL)
            goto oom;
        out->seq = q;
        sseq *sq = &out->seq[out->nseq++];
        *sq = (sseq){ 0 };
        sq->schema = strdup(schema);
        sq->name = strdup(name);
        sq->qname = qualified(schema, name);
        sq->label = label_of(schema, name);
        sq->increment = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        str_copy(sq->oid, PQgetvalue(r, i, 3), sizeof(sq->oid));
        if (sq->schema == NULL || sq->name == NULL || sq->qname == NULL || sq->label == NULL)
            goto oom;
    }
    PQclear(r);
    return true;
oom:
    sync_fail(c, "out of memory");
    PQclear(r);
    return false;
}

bool catalog_load(sconn *s, scatalog *out)
{
    const char *params[1] = { s->ctx->schemas };
    *out = (scatalog){ 0 };
    if (load_tables(s, out, params) && load_fkeys(s, out, params) && load_sequences(s, out, params))
        return true;
    catalog_free(out);
    return false;
}

static void describe_cols(sbuf *b, const stable *t)
{
    for (size_t i = 0; i < t->ncols; i++)
        sb_printf(b, "%s%s %s", i ? ", " : "", t->cols[i].name, t->cols[i].type);
}

bool catalog_compare(sync_ctx *c, const scatalog *backup, const scatalog *primary)
{
    sbuf diff;
    sb_init(&diff);
    int n = 0;
    for (size_t i = 0; i < backup->n; i++) {
        const stable *b = &backup->t[i];
        const stable *p = catalog_find(primary, b->schema, b->name);
        if (p == NULL) {
            sb_printf(&diff, "%stable %s exists only on the backup", n++ ? "; " : "", b->label);
            continue;
        }
        bool same = b->ncols == p->ncols;
        for (size_t j = 0; same && j < b->ncols; j++)
            same = strcmp(b->cols[j].name, p->cols[j].name) == 0 &&
                   strcmp(b->cols[j].type, p->cols[j].type) == 0 &&
                   b->cols[j].generated == p->cols[j].generated;
        if (!same) {
            sb_printf(&diff, "%scolumns of %s differ: backup (", n++ ? "; " : "", b->label);
            describe_cols(&diff, b);
            sb_add(&diff, "), primary (");
            describe_cols(&diff, p);
            sb_add(&diff, ")");
            continue;
        }
        bool samekey = b->nkey == p->nkey;
        for (size_t j = 0; samekey && j < b->nkey; j++)
            samekey = strcmp(b->key[j], p->key[j]) == 0;
        if (!samekey)
            sb_printf(&diff, "%sthe primary key of %s differs", n++ ? "; " : "", b->label);
    }
    for (size_t i = 0; i < primary->n; i++)
        if (catalog_find(backup, primary->t[i].schema, primary->t[i].name) == NULL)
            sb_printf(&diff, "%stable %s exists only on the primary", n++ ? "; " : "",
                      primary->t[i].label);
    if (n > 0)
        sync_fail(c, "the two databases do not have the same tables (schema changes during the"
                  " outage are not supported): %s", sb_str(&diff));
    sb_free(&diff);
    return n == 0;
}

void catalog_collist(sbuf *b, const stable *t, const char *prefix, bool with_generated)
{
    bool first = true;
    for (size_t i = 0; i < t->ncols; i++) {
        if (t->cols[i].generated && !with_generated)
            continue;
        if (!first)
            sb_add(b, ", ");
        first = false;
        if (prefix != NULL)
            sb_add(b, prefix);
        sb_ident(b, t->cols[i].name);
    }
}

void catalog_keyjoin(sbuf *b, const stable *t, const char *l, const char *r)
{
    for (size_t i = 0; i < t->nkey; i++) {
        if (i > 0)
            sb_add(b, " AND ");
        sb_printf(b, "%s.", l);
        sb_ident(b, t->key[i]);
        sb_printf(b, " = %s.", r);
        sb_ident(b, t->key[i]);
    }
}

bool catalog_hashable(const stable *t)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (!t->cols[i].hashable)
            return false;
    return true;
}

bool catalog_needs_text(const stable *t)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (t->cols[i].user_type)
            return true;
    return false;
}

/* ---- sequences ------------------------------------------------------------ */

typedef struct {
    bool called;
    int64_t value;
} seqval;

static bool read_seqs(sconn *s, const scatalog *cat, seqval *out)
{
    sbuf q;
    sb_init(&q);
    for (size_t i = 0; i < cat->nseq; i++)
        sb_printf(&q, "%sSELECT %zu, last_value, is_called FROM %s", i ? " UNION ALL " : "", i,
                  cat->seq[i].qname);
    PGresult *r = q.oom ? NULL : sq_exec(s, sb_str(&q), "reading the sequences");
    sb_free(&q);
    if (r == NULL)
        return false;
    for (int i = 0; i < PQntuples(r); i++) {
        size_t k = (size_t)strtoull(PQgetvalue(r, i, 0), NULL, 10);
        if (k < cat->nseq) {
            out[k].value = strtoll(PQgetvalue(r, i, 1), NULL, 10);
            out[k].called = PQgetvalue(r, i, 2)[0] == 't';
        }
    }
    PQclear(r);
    return true;
}

bool sync_sequences(sync_ctx *c, sconn *b, sconn *p, const scatalog *cat)
{
    if (cat->nseq == 0)
        return true;
    bool ok = false;
    seqval *bv = calloc(cat->nseq, sizeof(*bv)), *pv = calloc(cat->nseq, sizeof(*pv));
    sbuf q;
    sb_init(&q);
    if (bv == NULL || pv == NULL) {
        sync_fail(c, "out of memory");
        goto cleanup;
    }
    if (!read_seqs(b, cat, bv) || !read_seqs(p, cat, pv))
        goto cleanup;
    int moved = 0;
    for (size_t i = 0; i < cat->nseq; i++) {
        if (!bv[i].called)
            continue;                 /* never used on the backup: nothing to carry */
        bool up = cat->seq[i].increment > 0;
        if (pv[i].called && (up ? pv[i].value >= bv[i].value : pv[i].value <= bv[i].value))
            continue;                 /* the primary is already at or past it */
        sb_reset(&q);
        sb_add(&q, "SELECT setval(");
        sb_literal(&q, cat->seq[i].qname);
        sb_printf(&q, ", %" PRId64 ", true)", bv[i].value);
        if (q.oom || !sq_cmd(p, sb_str(&q), "setting a sequence"))
            goto cleanup;
        sync_report(c, "sequence %s: %" PRId64 " -> %" PRId64, cat->seq[i].label,
                    pv[i].called ? pv[i].value : 0, bv[i].value);
        moved++;
    }
    sync_report(c, "sequences: %zu checked, %d advanced on the primary", cat->nseq, moved);
    ok = true;
cleanup:
    free(bv);
    free(pv);
    sb_free(&q);
    return ok;
}

bool sync_try_replica(sconn *p)
{
    return sq_try(p, "SET session_replication_role = replica", NULL, 0);
}

/* ---- both sides ------------------------------------------------------------------- */

/* Connect to both sides, load both catalogs, compare them: what every
 * operation starts with. (One after the other: a version doing the
 * primary's on a thread of its own crashed once in the benchmark and was
 * not kept.) */
bool sync_open_both(sync_ctx *c, sconn *b, scatalog *bcat, sconn *p, scatalog *pcat)
{
    return sconn_open(c, b, false) && sconn_open(c, p, true) && catalog_load(b, bcat) &&
           catalog_load(p, pcat) && catalog_compare(c, bcat, pcat);
}
