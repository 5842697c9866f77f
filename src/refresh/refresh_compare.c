/* refresh_compare.c - reconcile's key comparison: rows deleted on the
 * primary found without triggers there ([refresh] deletes = compare, or
 * auto where the ledger cannot be installed), every compare_every, at the
 * end of a pass (after its copies).
 *
 * Per table (children first, so that a parent's delete does not meet its
 * children), the digest (below) of every key on both sides: the table is
 * done when they agree (an idle table costs one short row). Else a stack
 * of key ranges, starting with the whole key space:
 *
 *   split    backup: each range cut into at most CMP_FANOUT tiles of equal
 *            size by key order (row_number over the key: the boundaries
 *            come from the backup, which is local), each with its count
 *            and an order-independent hash of its keys; the ranges of a
 *            level together, up to about CMP_BATCH_TILES tiles
 *   hash     source: the same digest of the same tiles, one row each
 *   ...      a tile whose digests differ is split again, or, at most
 *            CMP_LEAF keys on the backup, becomes a leaf
 *   keys     backup: the leaves' keys (up to about CMP_LEAF_BATCH)
 *   missing  source: those of the keys it does not have
 *   delete   backup: those keys, one transaction
 *
 * What crosses from the primary is a short row per compared tile and the
 * missing keys: traffic grows with the differences, not the table (rows
 * the backup lacks also make tiles differ; the upserts copy them, this
 * only descends and finds nothing to delete there).
 *
 * No live row is deleted: the backup only holds rows read from the
 * primary by this or earlier passes, and every statement of the
 * comparison runs after them. A key the source lacks in the snapshot of
 * the "missing" statement - taken after every copy the backup holds, with
 * nothing else writing to the backup in between (one statement at a time
 * per pass, one pass at a time) - was deleted on the primary after it was
 * copied; a row inserted meanwhile is not on the backup, so never
 * considered. A key deleted and inserted again is present, so kept. */
#include "refresh_reconcile.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

struct rec_cmp {
    size_t ti;               /* tables left: p->t[0..ti) (walked down) */
    json_t *todo;            /* ranges to split [lo, hi, backup keys], a stack */
    json_t *batch;           /* those being split */
    json_t *tiles;           /* the batch's tiles on the backup, [[range, last key, n, hash]...] */
    json_t *tile_ranges;     /* and the ranges [lo, hi, n] they cover */
    json_t *leaves;          /* differing ranges small enough to check key by key */
    int64_t leaf_keys;       /* the backup's keys in them */
    json_t *missing;         /* keys the source lacks, being deleted */
    json_t *whole;           /* the backup's digest of the table's keys, [[n, hash]] */
    int64_t bytes0;          /* p->bytes when the comparison started */
    rec_compare_stats st;
};

static void cmp_next(rec_pass *p);

void refresh_compare_free(rec_cmp *c)
{
    if (c == NULL)
        return;
    json_decref(c->todo);
    json_decref(c->batch);
    json_decref(c->tiles);
    json_decref(c->tile_ranges);
    json_decref(c->leaves);
    json_decref(c->missing);
    json_decref(c->whole);
    free(c);
}

bool refresh_compare_due(const rec_pass *p)
{
    const refresh_t *r = p->j->r;
    return r->rec_cmp_at == 0 || loop_now(r->loop) - r->rec_cmp_at >= p->compare_every_ms;
}

/* The last result's first value, "" if none. */
static const char *answer(const pgexec_result *res)
{
    const PGresult *r = (const PGresult *)res->rows;
    if (r == NULL || PQntuples(r) < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0))
        return "";
    return PQgetvalue(r, 0, 0);
}

static void finish(rec_pass *p)
{
    rec_cmp *c = p->cmp;
    refresh_t *r = p->j->r;
    c->st.finished_at = wall_ms();
    c->st.bytes = p->bytes - c->bytes0;
    r->cmp = c->st;
    p->rows_deleted += c->st.deleted;
    log_info("refresh %" PRId64 ": key comparison of %zu table(s) in %" PRId64 " ms: %" PRId64 " range(s) compared, %"
             PRId64 " differ(s), %" PRId64 " key(s) checked, %" PRId64 " deleted on the backup, %" PRId64
             " bytes read from the primary", p->j->rec.id, c->st.tables, c->st.finished_at - c->st.started_at,
             c->st.ranges, c->st.differ, c->st.keys_checked, c->st.deleted, c->st.bytes);
    refresh_compare_free(c);
    p->cmp = NULL;
    rec_pass_finish(p);
}

void refresh_compare_start(rec_pass *p)
{
    refresh_t *r = p->j->r;
    rec_cmp *c = calloc(1, sizeof *c);
    if (c == NULL || (c->todo = json_array()) == NULL || (c->leaves = json_array()) == NULL) {
        refresh_compare_free(c);
        rec_fail(p, "out of memory");
        return;
    }
    p->cmp = c;
    r->rec_cmp_at = loop_now(r->loop);    /* a failed comparison is tried again after compare_every too */
    c->ti = p->nt;
    c->bytes0 = p->bytes;
    c->st.started_at = wall_ms();
    c->st.tables = p->nt;
    cmp_next(p);
}

static bool push_range(json_t *list, json_t *lo, json_t *hi, json_int_t n)
{
    return json_array_append_new(list, json_pack("[OOI]", lo ? lo : json_null(), hi ? hi : json_null(), n)) == 0;
}

/* The tiles csql_split cuts a range of n keys into. */
static int64_t tiles_of(json_int_t n)
{
    int64_t k = (n + CMP_LEAF - 1) / CMP_LEAF;
    return k < 1 ? 1 : k > CMP_FANOUT ? CMP_FANOUT : k;
}

/* Ranges off the stack, up to about CMP_BATCH_TILES tiles. */
static json_t *take_batch(rec_cmp *c)
{
    json_t *batch = json_array();
    int64_t tiles = 0;
    for (size_t n = json_array_size(c->todo); batch != NULL && n > 0 && tiles < CMP_BATCH_TILES; n--) {
        json_t *r = json_array_get(c->todo, n - 1);
        tiles += tiles_of(json_integer_value(json_array_get(r, 2)));
        if (json_array_append(batch, r) != 0) {
            json_decref(batch);
            return NULL;
        }
        json_array_remove(c->todo, n - 1);
    }
    return batch;
}

/* What to do next: check the leaves, split a range, the next table, done. */
static void cmp_next(rec_pass *p)
{
    rec_cmp *c = p->cmp;
    size_t ntodo = json_array_size(c->todo);
    if (c->leaf_keys >= CMP_LEAF_BATCH || (ntodo == 0 && json_array_size(c->leaves) > 0)) {
        rec_run_sql(p, RS_CMP_KEYS, false, csql_keys(&p->t[c->ti], c->leaves));
        return;
    }
    if (ntodo > 0) {
        json_decref(c->batch);
        c->batch = take_batch(c);
        rec_run_sql(p, RS_CMP_SPLIT, false, c->batch ? csql_split(&p->t[c->ti], c->batch) : NULL);
        return;
    }
    if (c->ti == 0) {
        finish(p);
        return;
    }
    c->ti--;
    json_t *all = json_array();
    if (all == NULL || !push_range(all, NULL, NULL, 0)) {
        json_decref(all);
        rec_fail(p, "out of memory");
        return;
    }
    char *sql = csql_hash(&p->t[c->ti], all);
    json_decref(all);
    rec_run_sql(p, RS_CMP_WHOLE_BACK, false, sql);
}

/* The table's digests on both sides: done if they agree, else its ranges. */
static void whole_done(rec_pass *p, const char *text)
{
    rec_cmp *c = p->cmp;
    json_t *d = json_loads(text, 0, NULL);
    if (!json_is_array(d) || json_array_size(d) != 1) {
        json_decref(d);
        rec_fail(p, p->st == RS_CMP_WHOLE_BACK ? "unexpected answer from the backup (digest)"
                                               : "unexpected answer from the primary (digest)");
        return;
    }
    if (p->st == RS_CMP_WHOLE_BACK) {
        json_decref(c->whole);
        c->whole = d;
        json_t *all = json_array();
        char *sql = all != NULL && push_range(all, NULL, NULL, 0) ? csql_hash(&p->t[c->ti], all) : NULL;
        json_decref(all);
        rec_run_sql(p, RS_CMP_WHOLE_SRC, true, sql);
        return;
    }
    json_t *b = json_array_get(c->whole, 0), *s = json_array_get(d, 0);
    bool same = json_integer_value(json_array_get(s, 0)) == json_integer_value(json_array_get(b, 0)) &&
                str_eq(json_string_value(json_array_get(s, 1)), json_string_value(json_array_get(b, 1)));
    json_int_t n = json_integer_value(json_array_get(b, 0));
    json_decref(d);
    c->st.ranges++;
    if (!same)
        c->st.differ++;
    if (!same && n > 0 && !push_range(c->todo, NULL, NULL, n)) {
        rec_fail(p, "out of memory");
        return;
    }
    cmp_next(p);               /* an empty backup table has nothing to delete */
}

/* The backup's tiles of each range of the batch, [[r, last key, n, hash]...]
 * in range and key order: the range (lo, hi] becomes (lo, b1], (b1, b2],
 * ..., (bn-1, hi] (a range without keys on the backup has no tile: there
 * is nothing to delete in it). */
static void split_done(rec_pass *p, const char *text)
{
    rec_cmp *c = p->cmp;
    json_t *batch = c->batch, *tiles = json_loads(text, 0, NULL), *ranges = json_array();
    c->batch = NULL;
    bool ok = json_is_array(tiles) && ranges != NULL;
    size_t n = json_array_size(tiles);
    for (size_t i = 0; ok && i < n; i++) {
        json_t *tile = json_array_get(tiles, i), *prev = i > 0 ? json_array_get(tiles, i - 1) : NULL,
               *next = json_array_get(tiles, i + 1);
        json_int_t r = json_integer_value(json_array_get(tile, 0));
        json_t *range = json_array_get(batch, (size_t)r);
        bool first = prev == NULL || json_integer_value(json_array_get(prev, 0)) != r;
        bool last = next == NULL || json_integer_value(json_array_get(next, 0)) != r;
        json_t *lo = first ? json_array_get(range, 0) : json_array_get(prev, 1);
        json_t *hi = last ? json_array_get(range, 1) : json_array_get(tile, 1);
        ok = range != NULL && r >= 0 && lo != NULL && hi != NULL &&
             push_range(ranges, lo, hi, json_integer_value(json_array_get(tile, 2)));
    }
    json_decref(batch);
    if (!ok) {
        json_decref(tiles);
        json_decref(ranges);
        rec_fail(p, "unexpected answer from the backup (key ranges)");
        return;
    }
    if (n == 0) {                      /* nothing on the backup there: nothing to delete */
        json_decref(tiles);
        json_decref(ranges);
        cmp_next(p);
        return;
    }
    json_decref(c->tiles);
    c->tiles = tiles;
    c->tile_ranges = ranges;
    rec_run_sql(p, RS_CMP_HASH, true, csql_hash(&p->t[c->ti], ranges));
}

/* The source's digests of the same tiles: descend where they differ. */
static void hash_done(rec_pass *p, const char *text)
{
    rec_cmp *c = p->cmp;
    json_t *src = json_loads(text, 0, NULL);
    size_t n = json_array_size(c->tiles);
    bool ok = json_is_array(src) && json_array_size(src) == n;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *b = json_array_get(c->tiles, i), *s = json_array_get(src, i);
        json_int_t bn = json_integer_value(json_array_get(b, 2));
        c->st.ranges++;
        if (json_integer_value(json_array_get(s, 0)) == bn &&
            str_eq(json_string_value(json_array_get(s, 1)), json_string_value(json_array_get(b, 3))))
            continue;
        c->st.differ++;
        json_t *range = json_array_get(c->tile_ranges, i);
        if (bn <= CMP_LEAF) {
            ok = json_array_append(c->leaves, range) == 0;
            c->leaf_keys += bn;
        } else {
            ok = json_array_append(c->todo, range) == 0;
        }
    }
    json_decref(src);
    json_decref(c->tiles);
    json_decref(c->tile_ranges);
    c->tiles = c->tile_ranges = NULL;
    if (!ok) {
        rec_fail(p, "unexpected answer from the primary (key ranges)");
        return;
    }
    cmp_next(p);
}

static void keys_done(rec_pass *p, const char *text)
{
    rec_cmp *c = p->cmp;
    json_t *keys = json_loads(text, 0, NULL);
    json_array_clear(c->leaves);
    c->leaf_keys = 0;
    if (!json_is_array(keys)) {
        json_decref(keys);
        rec_fail(p, "unexpected answer from the backup (keys)");
        return;
    }
    c->st.keys_checked += (int64_t)json_array_size(keys);
    if (json_array_size(keys) == 0) {
        json_decref(keys);
        cmp_next(p);
        return;
    }
    char *sql = csql_missing(&p->t[c->ti], keys);
    json_decref(keys);
    rec_run_sql(p, RS_CMP_MISSING, true, sql);
}

static void missing_done(rec_pass *p, const char *text)
{
    rec_cmp *c = p->cmp;
    json_t *keys = json_loads(text, 0, NULL);
    if (!json_is_array(keys)) {
        json_decref(keys);
        rec_fail(p, "unexpected answer from the primary (missing keys)");
        return;
    }
    if (json_array_size(keys) == 0) {
        json_decref(keys);
        cmp_next(p);
        return;
    }
    log_debug("refresh %" PRId64 ": %s: %zu key(s) no longer on the primary: deleting them on the backup",
              p->j->rec.id, p->t[c->ti].name, json_array_size(keys));
    json_decref(c->missing);
    c->missing = keys;
    rec_run_sql(p, RS_CMP_DELETE, false, csql_delete(p, &p->t[c->ti], keys));
}

void refresh_compare_result(rec_pass *p, const pgexec_result *res)
{
    rec_cmp *c = p->cmp;
    const char *text = answer(res);
    switch (p->st) {
    case RS_CMP_WHOLE_BACK: case RS_CMP_WHOLE_SRC: whole_done(p, text); break;
    case RS_CMP_SPLIT: split_done(p, text); break;
    case RS_CMP_HASH: hash_done(p, text); break;
    case RS_CMP_KEYS: keys_done(p, text); break;
    case RS_CMP_MISSING: missing_done(p, text); break;
    case RS_CMP_DELETE:
        c->st.deleted += (int64_t)json_array_size(c->missing);
        json_decref(c->missing);
        c->missing = NULL;
        cmp_next(p);
        break;
    default:
        rec_fail(p, "internal error: key comparison in another state");
        break;
    }
}

json_t *refresh_compare_json(const rec_compare_stats *s)
{
    if (s->started_at == 0)
        return json_null();
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "started_at", (json_int_t)s->started_at,
                     "finished_at", (json_int_t)s->finished_at, "tables", (json_int_t)s->tables,
                     "ranges", (json_int_t)s->ranges, "ranges_differ", (json_int_t)s->differ,
                     "keys_checked", (json_int_t)s->keys_checked, "deleted", (json_int_t)s->deleted,
                     "bytes", (json_int_t)s->bytes);
}
