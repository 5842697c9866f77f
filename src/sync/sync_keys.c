/* sync_keys.c - the stop window's check of the keys the outage touched.
 *
 * For one table: the distinct keys of every ledger entry of the outage
 * (key_new and key_old, typed through the table's key columns), read on
 * the backup in the caller's transaction as one text array per key column
 * (the server prints them: quoting and the canonical session settings are
 * its own). Then one statement, the same text and the same arrays, on both
 * sides at once: each key looked up by index (`= ANY` for a one-column
 * key; else a nested loop over the unnested arrays: the caller turns hash
 * and merge joins off, which would read the whole table), returning the
 * key's text and the row hash verify sums (sync_row_hash_sql) of the rows
 * that are there. C sorts both results by key text (its own order, not a
 * server's collation) and merges them: a key on one side only, or with
 * other hashes, differs. No temporary table, nothing written on either
 * side. The time follows the number of keys the outage touched, not the
 * table's size. */
#include "sync_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"

static const char *key_type(const stable *t, size_t k)
{
    for (size_t j = 0; j < t->ncols; j++)
        if (strcmp(t->cols[j].name, t->key[k]) == 0)
            return t->cols[j].type;
    return "text";
}

/* SELECT count(*), array_agg(k1::text)::text, ... over the distinct keys
 * of the table's ledger entries (every entry: the whole outage). */
static void keys_sql(sbuf *q, const stable *t)
{
    sb_add(q, "SELECT count(*)");
    for (size_t k = 0; k < t->nkey; k++) {
        sb_add(q, ", array_agg(k.");
        sb_ident(q, t->key[k]);
        sb_add(q, "::text)::text");
    }
    sb_add(q, " FROM (SELECT DISTINCT ");
    for (size_t k = 0; k < t->nkey; k++) {
        if (k > 0)
            sb_add(q, ", ");
        sync_key_from_json(q, t, k);
    }
    sb_add(q, " FROM drd.ledger l, LATERAL (VALUES (l.key_new), (l.key_old)) p(k)"
              " WHERE p.k IS NOT NULL AND l.schema_name = ");
    sb_literal(q, t->schema);
    sb_add(q, " AND l.table_name = ");
    sb_literal(q, t->name);
    sb_add(q, ") k");
}

/* The key columns (as text) and the row hash of every row of t whose key
 * is in the arrays: a one-column key by `= ANY` (one index scan, the keys
 * sorted and looked up in index order), a longer one (or an array-typed
 * one) by a nested loop over the unnested arrays. Rows that are not there
 * are simply absent: C tells which side lacks them. */
static void rows_sql(sbuf *q, const stable *t, bool by_record)
{
    const char *type0 = key_type(t, 0);
    size_t tl = strlen(type0);
    bool any = t->nkey == 1 && !(tl > 2 && strcmp(type0 + tl - 2, "[]") == 0);
    sb_add(q, "SELECT ");
    for (size_t k = 0; k < t->nkey; k++) {
        sb_add(q, "t.");
        sb_ident(q, t->key[k]);
        sb_add(q, "::text, ");
    }
    sync_row_hash_sql(q, t, by_record);
    if (any) {
        sb_printf(q, " FROM ONLY %s t WHERE t.", t->qname);
        sb_ident(q, t->key[0]);
        /* the array behind a scalar subquery (an InitPlan): the planner
         * does not estimate the selectivity of each of its elements (10 ms
         * for 13,000 keys), and always takes the index */
        sb_printf(q, " = ANY (CAST((SELECT $1::text[]) AS %s[]))", type0);
        return;
    }
    sb_add(q, " FROM unnest(");
    for (size_t k = 0; k < t->nkey; k++)
        sb_printf(q, "%s$%zu::text[]", k ? ", " : "", k + 1);
    sb_add(q, ") k(");
    for (size_t k = 0; k < t->nkey; k++)
        sb_printf(q, "%sk%zu", k ? ", " : "", k + 1);
    sb_printf(q, ") JOIN ONLY %s t ON ", t->qname);
    for (size_t k = 0; k < t->nkey; k++) {
        sb_printf(q, "%st.", k ? " AND " : "");
        sb_ident(q, t->key[k]);
        sb_printf(q, " = k.k%zu::%s", k + 1, key_type(t, k));
    }
}

/* One side's rows sorted by their key text (C order, whatever the
 * servers' collations), duplicates (a key listed twice) dropped. */
typedef struct {
    const PGresult *r;
    int nkey;
    int *row;                /* row numbers in key order */
    int n;
} side;

static int cmp_key(const PGresult *ra, int a, const PGresult *rb, int b, int nkey)
{
    for (int k = 0; k < nkey; k++) {
        int d = strcmp(PQgetvalue(ra, a, k), PQgetvalue(rb, b, k));
        if (d != 0)
            return d;
    }
    return 0;
}

static int cmp_rows(const void *x, const void *y, void *arg)
{
    const side *s = arg;
    return cmp_key(s->r, *(const int *)x, s->r, *(const int *)y, s->nkey);
}

static bool side_sort(side *s, const PGresult *r, int nkey)
{
    s->r = r;
    s->nkey = nkey;
    s->n = 0;
    s->row = malloc(((size_t)PQntuples(r) + 1) * sizeof *s->row);
    if (s->row == NULL)
        return false;
    for (int i = 0; i < PQntuples(r); i++)
        s->row[i] = i;
    qsort_r(s->row, (size_t)PQntuples(r), sizeof *s->row, cmp_rows, s);   /* glibc (_GNU_SOURCE) */
    for (int i = 0; i < PQntuples(r); i++)
        if (s->n == 0 || cmp_key(r, s->row[s->n - 1], r, s->row[i], nkey) != 0)
            s->row[s->n++] = s->row[i];
    return true;
}

/* "id=42" from row i of r. */
static void sample_of(key_diff *out, const stable *t, const PGresult *r, int i)
{
    size_t len = 0;
    for (size_t k = 0; k < t->nkey && len < sizeof out->sample; k++) {
        int n = snprintf(out->sample + len, sizeof out->sample - len, "%s%s=%s", k ? ", " : "", t->key[k],
                         PQgetvalue(r, i, (int)k));
        if (n < 0)
            break;
        len += (size_t)n;
    }
    if (len >= sizeof out->sample)
        str_copy(out->sample + sizeof out->sample - 4, "...", 4);
}

/* Sorted merge of both sides' rows: a key on one side only, or with
 * other row hashes. The first difference (in key order) is the sample. */
static void merge(const side *b, const side *p, const stable *t, key_diff *out)
{
    int i = 0, j = 0, hcol = b->nkey;
    while (i < b->n || j < p->n) {
        int d = i >= b->n ? 1 : j >= p->n ? -1 : cmp_key(b->r, b->row[i], p->r, p->row[j], b->nkey);
        const PGresult *sr = d <= 0 ? b->r : p->r;
        int si = d <= 0 ? b->row[i] : p->row[j];
        bool differs = true;
        if (d < 0) {
            out->missing++;
            i++;
        } else if (d > 0) {
            out->primary_only++;
            j++;
        } else {
            differs = strcmp(PQgetvalue(b->r, b->row[i], hcol), PQgetvalue(p->r, p->row[j], hcol)) != 0;
            out->different += differs;
            i++;
            j++;
        }
        if (differs && out->sample[0] == '\0')
            sample_of(out, t, sr, si);
    }
}

bool sync_keys_compare(sync_ctx *c, sconn *b, sconn *p, const stable *t, bool by_record, key_diff *out)
{
    sbuf q;
    sb_init(&q);
    PGresult *rk = NULL, *rb = NULL, *rp = NULL;
    const char **arrays = NULL;
    side sb = { 0 }, sp = { 0 };
    bool ok = false;
    memset(out, 0, sizeof *out);
    keys_sql(&q, t);
    if (q.oom || (rk = sq_exec(b, sb_str(&q), "listing the keys the outage touched")) == NULL)
        goto cleanup;
    out->keys = strtoll(PQgetvalue(rk, 0, 0), NULL, 10);
    if (out->keys == 0) {
        ok = true;
        goto cleanup;
    }
    arrays = calloc(t->nkey, sizeof *arrays);
    if (arrays == NULL)
        goto oom;
    for (size_t k = 0; k < t->nkey; k++)
        arrays[k] = PQgetvalue(rk, 0, (int)k + 1);
    sb_reset(&q);
    rows_sql(&q, t, by_record);
    if (q.oom)
        goto oom;
    if (!sq_params_both(b, p, sb_str(&q), (int)t->nkey, arrays, &rb, &rp, "comparing the touched keys"))
        goto cleanup;
    if (!side_sort(&sb, rb, (int)t->nkey) || !side_sort(&sp, rp, (int)t->nkey))
        goto oom;
    merge(&sb, &sp, t, out);
    ok = true;
    goto cleanup;
oom:
    sync_fail(c, "out of memory");
cleanup:
    PQclear(rk);
    PQclear(rb);
    PQclear(rp);
    free(sb.row);
    free(sp.row);
    free(arrays);
    sb_free(&q);
    return ok;
}
