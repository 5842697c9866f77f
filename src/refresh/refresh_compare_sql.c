/* refresh_compare_sql.c - the SQL of reconcile's key comparison (see
 * refresh_compare.c). Each statement is one simple query; reads run inside
 * BEGIN READ ONLY with SRC_BEGIN's SET LOCAL settings on both sides, so
 * that a key's text (and so its hash) is the same on the two servers.
 *
 * A range is a JSON array [lo, hi]: the keys k with lo < k <= hi in the
 * key's row order, lo and hi key tuples (JSON arrays of the columns'
 * text) or null for an open end. A range's digest is count(*) and the sum
 * of hashtextextended(ROW(key)::text, 0) over its keys: order-independent,
 * computed by the server, one short row per range. */
#include "refresh_reconcile.h"

#include <stdlib.h>
#include <string.h>

/* Every statement: no JIT. A statement of a few hundred small ranges
 * costs enough to be compiled, and compiling it took 5.5 s of its 5.7
 * (PostgreSQL 15, 308 ranges of a 100 k-row table; 0.23 s without). */
#define CMP_BEGIN SRC_BEGIN "SET LOCAL jit = off; "

/* The key tuple's digest term and its text form, for a SELECT list. */
#define KEY_HASH_OPEN "hashtextextended(ROW("
#define KEY_HASH_CLOSE ")::text, 0)"

/* "(k1, k2) OP ('v1'::t1, 'v2'::t2)" from a JSON key tuple. */
static bool key_cmp(rsql *m, const rec_table *t, json_t *key, const char *op)
{
    if (!json_is_array(key) || json_array_size(key) != t->nkey)
        return false;
    fputs("(", m->f);
    rsql_cols(m, t, t->key, t->nkey, "", "");
    fprintf(m->f, ") %s (", op);
    for (size_t k = 0; k < t->nkey; k++) {
        const char *v = json_string_value(json_array_get(key, k));
        if (v == NULL)
            return false;
        if (k)
            fputs(", ", m->f);
        rsql_lit(m, v);
        fprintf(m->f, "::%s", t->types[t->key[k]]);
    }
    fputs(")", m->f);
    return true;
}

/* The WHERE condition of a range [lo, hi]. */
static bool range_cond(rsql *m, const rec_table *t, json_t *range)
{
    json_t *lo = json_array_get(range, 0), *hi = json_array_get(range, 1);
    bool ok = true;
    if (json_is_null(lo) && json_is_null(hi)) {
        fputs("true", m->f);
        return json_array_size(range) >= 2;
    }
    if (!json_is_null(lo))
        ok = key_cmp(m, t, lo, ">");
    if (ok && !json_is_null(lo) && !json_is_null(hi))
        fputs(" AND ", m->f);
    if (ok && !json_is_null(hi))
        ok = key_cmp(m, t, hi, "<=");
    return ok;
}

/* Statements on key ranges: index scans. The planner estimates a row
 * comparison on a composite key from its first column alone, so a narrow
 * range of (a, b) inside one value of a looks like most of the table and
 * would be read whole, once per range (seconds for 500 ranges of a
 * 20 k-row table); the whole table's digest keeps its sequential scan. */
static void index_scans(rsql *m, json_t *ranges)
{
    size_t i;
    json_t *r;
    json_array_foreach(ranges, i, r)
        if (!json_is_null(json_array_get(r, 0)) || !json_is_null(json_array_get(r, 1))) {
            fputs("SET LOCAL enable_seqscan = off; ", m->f);
            return;
        }
}

static char *close_if(rsql *m, bool ok)
{
    char *sql = rsql_close(m);
    if (!ok) {
        free(sql);
        return NULL;
    }
    return sql;
}

/* One range's tiles, a UNION ALL branch tagged r. */
static bool split_one(rsql *m, const rec_table *t, json_t *range, size_t r)
{
    fprintf(m->f, "%sSELECT %zu AS drd_r, drd_tile, count(*) AS drd_n, sum(drd_h)::text AS drd_h,"
            " max(drd_b) AS drd_b FROM (SELECT drd_tile, drd_h, CASE WHEN lead(drd_tile) OVER (ORDER BY ",
            r ? " UNION ALL " : "", r);
    for (size_t k = 0; k < t->nkey; k++)
        fprintf(m->f, "%sdrd_k%zu", k ? ", " : "", k);
    fputs(") IS DISTINCT FROM drd_tile THEN drd_kj END AS drd_b FROM (SELECT (row_number() OVER (ORDER BY ", m->f);
    rsql_cols(m, t, t->key, t->nkey, "", "");
    fprintf(m->f, ") - 1) * least(%d, ceil(count(*) OVER () / %d.0)::bigint) / count(*) OVER () AS drd_tile, "
            KEY_HASH_OPEN, CMP_FANOUT, CMP_LEAF);
    rsql_cols(m, t, t->key, t->nkey, "", "");
    fputs(KEY_HASH_CLOSE " AS drd_h, json_build_array(", m->f);
    rsql_cols(m, t, t->key, t->nkey, "", "::text");
    fputs(")::text AS drd_kj", m->f);
    for (size_t k = 0; k < t->nkey; k++)
        fprintf(m->f, ", %s AS drd_k%zu", t->cols[t->key[k]], k);
    fprintf(m->f, " FROM %s WHERE ", t->qname);
    bool ok = range_cond(m, t, range);
    fputs(") s1) s2 GROUP BY drd_tile", m->f);
    return ok;
}

/* Backup: each range cut into at most CMP_FANOUT tiles of about equal size
 * (none larger than CMP_LEAF when it has at most CMP_FANOUT * CMP_LEAF
 * keys), in key order: [[range index, last key, count, hash], ...]; a
 * range without keys has no tile. */
char *csql_split(const rec_table *t, json_t *ranges)
{
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    fputs(CMP_BEGIN, m.f);
    index_scans(&m, ranges);
    fputs("SELECT coalesce(json_agg(json_build_array(drd_r, drd_b::json, drd_n, drd_h)"
          " ORDER BY drd_r, drd_tile), '[]')::text FROM (", m.f);
    bool ok = json_array_size(ranges) > 0;
    for (size_t r = 0; ok && r < json_array_size(ranges); r++)
        ok = split_one(&m, t, json_array_get(ranges, r), r);
    fputs(") s3; COMMIT", m.f);
    return close_if(&m, ok);
}

/* Source: the digest of each range, in order: [[count, hash], ...]. */
char *csql_hash(const rec_table *t, json_t *ranges)
{
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    fputs(CMP_BEGIN, m.f);
    index_scans(&m, ranges);
    fputs("SELECT coalesce(json_agg(drd_d ORDER BY drd_i), '[]')::text FROM (", m.f);
    bool ok = json_array_size(ranges) > 0;
    size_t i;
    json_t *r;
    json_array_foreach(ranges, i, r) {
        if (!ok)
            break;
        fprintf(m.f, "%sSELECT %zu AS drd_i, json_build_array(count(*), coalesce(sum(" KEY_HASH_OPEN,
                i ? " UNION ALL " : "", i);
        rsql_cols(&m, t, t->key, t->nkey, "", "");
        fprintf(m.f, KEY_HASH_CLOSE "), 0)::text) AS drd_d FROM %s WHERE ", t->qname);
        ok = range_cond(&m, t, r);
    }
    fputs(") s; COMMIT", m.f);
    return close_if(&m, ok);
}

/* Backup: every key of the ranges, [[text...], ...]. */
char *csql_keys(const rec_table *t, json_t *ranges)
{
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    fputs(CMP_BEGIN, m.f);
    index_scans(&m, ranges);
    fputs("SELECT coalesce(json_agg(drd_k), '[]')::text FROM (", m.f);
    bool ok = json_array_size(ranges) > 0;
    size_t i;
    json_t *r;
    json_array_foreach(ranges, i, r) {
        if (!ok)
            break;
        fprintf(m.f, "%sSELECT json_build_array(", i ? " UNION ALL " : "");
        rsql_cols(&m, t, t->key, t->nkey, "", "::text");
        fprintf(m.f, ") AS drd_k FROM %s WHERE ", t->qname);
        ok = range_cond(&m, t, r);
    }
    fputs(") s; COMMIT", m.f);
    return close_if(&m, ok);
}

/* Source: those of the keys it does not have (now), [[text...], ...]. */
char *csql_missing(const rec_table *t, json_t *keys)
{
    char *js = json_dumps(keys, JSON_COMPACT);
    rsql m;
    if (js == NULL || !rsql_open(&m)) {
        free(js);
        return NULL;
    }
    /* one index probe per key, not a scan of the table (a hash anti-join) */
    fputs(CMP_BEGIN "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;"
          " SELECT coalesce(json_agg(drd_a.value), '[]')::text FROM json_array_elements(", m.f);
    rsql_lit(&m, js);
    fprintf(m.f, "::json) drd_a WHERE NOT EXISTS (SELECT 1 FROM %s WHERE (", t->qname);
    rsql_cols(&m, t, t->key, t->nkey, "", "");
    fputs(") = (", m.f);
    for (size_t k = 0; k < t->nkey; k++)
        fprintf(m.f, "%s(drd_a.value->>%zu)::%s", k ? ", " : "", k, t->types[t->key[k]]);
    fputs(")); COMMIT", m.f);
    free(js);
    return rsql_close(&m);
}

/* Backup: delete those keys, one transaction. */
char *csql_delete(const rec_pass *p, const rec_table *t, json_t *keys)
{
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    fputs(BACK_BEGIN, m.f);
    if (p->back_super)
        fputs(" SET LOCAL session_replication_role = replica;", m.f);
    rsql_delete(&m, t, keys);
    fputs(" COMMIT", m.f);
    return rsql_close(&m);
}
