/* sync_fk.c - foreign keys in sync-back: conflicts before, a proof after.
 *
 * The primary may hold rows the backup never got (written after the
 * backup's last copy). If the outage deleted (or re-keyed) a row that such
 * primary-only rows still reference, applying the delete would orphan them
 * (session_replication_role = replica fires no foreign-key trigger) or
 * silently cascade to them (without replica). Neither is acceptable, so:
 *
 *   fk_detect (after classification, before anything is written): for every
 *     foreign key on the primary that references a changed table, the keys
 *     the sync would remove there (action apply, no backup row) whose
 *     primary row is still referenced by rows the sync does not itself
 *     replace become conflicts (drd_fkc lists them, with a sample row).
 *     Under ask they are reported and nothing is written; primary-wins
 *     keeps the referenced row (and the write-back copies it to the
 *     backup); backup-wins deletes them with the foreign key's own action
 *     (fk_apply_actions: session_replication_role = origin for that
 *     statement), as PostgreSQL would for the app.
 *     It also keeps, per such foreign key, the referenced values of every
 *     key the sync may change (pg_temp.drd_gone_<oid>), for fk_validate.
 *   fk_validate (after applying, inside the same transaction): every
 *     foreign key touching an applied table is checked for the affected
 *     rows: rows the sync wrote must find their referenced row, and no
 *     row may reference a value the sync removed. Tables copied whole are
 *     checked entirely. A violation fails the sync: the transaction is
 *     rolled back, and the report names the constraint and a row.
 *   fk_verify (verify, read only): every validated foreign key touching a
 *     synced table (either side, or a partitioned ancestor of one) is
 *     checked whole on the primary with a NOT EXISTS anti-join, what
 *     ALTER TABLE ... VALIDATE CONSTRAINT would prove, with plain SELECTs
 *     (ACCESS SHARE locks only). A violation fails verify, naming the
 *     constraint and a row: rows only the primary has are only harmless
 *     while they reference something.
 *
 * Both are DO blocks over pg_temp.drd_map (one row per changed table: its
 * regclass, key columns, key table and staging table), built from the
 * catalog on the server: every name goes through format('%I') or a
 * regclass, so nothing of the app's is spliced in by hand. */
#include "sync_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"

/* Helpers shared by both blocks, as SQL text: the column pairs of a
 * foreign key (conkey -> confkey), and the join of a key list. */
#define FK_COLS                                                                             \
    "(SELECT array_agg(a.attname::text ORDER BY k.n) FROM unnest(c.conkey) WITH ORDINALITY"  \
    " k(att, n) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.att) AS fkcols," \
    " (SELECT array_agg(a.attname::text ORDER BY k.n) FROM unnest(c.confkey) WITH ORDINALITY" \
    " k(att, n) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.att) AS refcols"

/* j(l, lc, r, rc): "l.lc1 = r.rc1 AND ..." ; nn(a, cols): "a.c1 IS NOT NULL AND ..." */
static const char fk_funcs[] =
    "CREATE OR REPLACE FUNCTION pg_temp.drd_j(l text, lc text[], r text, rc text[]) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $f$ SELECT string_agg(format('%s.%I = %s.%I', l, lc[i], r, rc[i]),"
    " ' AND ') FROM generate_subscripts(lc, 1) i $f$;"
    "CREATE OR REPLACE FUNCTION pg_temp.drd_nn(a text, cols text[]) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $f$ SELECT string_agg(format('%s.%I IS NOT NULL', a, c), ' AND ')"
    " FROM unnest(cols) c $f$;"
    "CREATE OR REPLACE FUNCTION pg_temp.drd_kj(a text, cols text[]) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $f$ SELECT 'jsonb_build_object(' || string_agg(format('%L, %s.%I',"
    " c, a, c), ', ') || ')' FROM unnest(cols) c $f$;"
    "CREATE OR REPLACE FUNCTION pg_temp.drd_sel(a text, cols text[]) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $f$ SELECT string_agg(format('%s.%I AS c%s', a, cols[i], i), ', ')"
    " FROM generate_subscripts(cols, 1) i $f$;"
    "CREATE OR REPLACE FUNCTION pg_temp.drd_gj(g text, r text, rc text[]) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $f$ SELECT string_agg(format('%s.%I = %s.c%s', r, rc[i], g, i), ' AND ')"
    " FROM generate_subscripts(rc, 1) i $f$;";

static const char fk_detect_sql[] =
    "CREATE TEMP TABLE drd_fkc (idx int, key jsonb, fk text, referencing text, nrows bigint, sample text);"
    "DO $drd$\n"
    "DECLARE m record; f record; rm record; excl text;\n"
    "BEGIN\n"
    "  FOR m IN SELECT * FROM pg_temp.drd_map WHERE kt IS NOT NULL LOOP\n"
    "    FOR f IN SELECT c.oid, c.conname::text AS conname, c.conrelid::regclass AS r, " FK_COLS "\n"
    "               FROM pg_catalog.pg_constraint c WHERE c.contype = 'f' AND c.confrelid = m.rel LOOP\n"
    /* the referenced values of every key the sync may change, for fk_validate */
    "      EXECUTE format('CREATE TEMP TABLE %I AS SELECT DISTINCT %s FROM ONLY %s p JOIN %s k ON %s"
    "                       WHERE k.drd_action IN (''apply'', ''conflict'')',\n"
    "                     'drd_gone_' || f.oid, pg_temp.drd_sel('p', f.refcols), m.rel, m.kt,\n"
    "                     pg_temp.drd_j('p', m.keycols, 'k', m.keycols));\n"
    /* rows the sync replaces itself are not primary-only */
    "      excl := '';\n"
    "      SELECT * INTO rm FROM pg_temp.drd_map WHERE rel = f.r AND kt IS NOT NULL;\n"
    "      IF FOUND THEN\n"
    "        excl := format(' AND NOT EXISTS (SELECT 1 FROM %s kr WHERE %s AND kr.drd_action = ''apply'')',\n"
    "                       rm.kt, pg_temp.drd_j('kr', rm.keycols, 'r', rm.keycols));\n"
    "      END IF;\n"
    "      EXECUTE format('INSERT INTO pg_temp.drd_fkc SELECT %s, %s, %L, %L, count(*), min(r::text)"
    "                       FROM %s k JOIN ONLY %s p ON %s JOIN ONLY %s r ON %s"
    "                      WHERE k.drd_action = ''apply'' AND NOT EXISTS (SELECT 1 FROM %s s WHERE %s)%s"
    "                      GROUP BY 2',\n"
    "                     m.idx, pg_temp.drd_kj('k', m.keycols), f.conname, f.r::text,\n"
    "                     m.kt, m.rel, pg_temp.drd_j('p', m.keycols, 'k', m.keycols),\n"
    "                     f.r, pg_temp.drd_j('r', f.fkcols, 'p', f.refcols),\n"
    "                     m.st, pg_temp.drd_j('s', m.keycols, 'k', m.keycols), excl);\n"
    "    END LOOP;\n"
    "    EXECUTE format('UPDATE %s k SET drd_action = ''conflict'' FROM pg_temp.drd_fkc c"
    "                    WHERE c.idx = %s AND c.key = %s AND k.drd_action = ''apply''',\n"
    "                   m.kt, m.idx, pg_temp.drd_kj('k', m.keycols));\n"
    "  END LOOP;\n"
    "END $drd$";

static const char fk_actions_sql[] =
    "DO $drd$\n"
    "DECLARE m record;\n"
    "BEGIN\n"
    "  FOR m IN SELECT * FROM pg_temp.drd_map WHERE idx IN (SELECT idx FROM pg_temp.drd_fkc) LOOP\n"
    "    EXECUTE format('DELETE FROM ONLY %s t USING pg_temp.drd_fkc c WHERE c.idx = %s AND c.key = %s',\n"
    "                   m.rel, m.idx, pg_temp.drd_kj('t', m.keycols));\n"
    "  END LOOP;\n"
    "END $drd$";

static const char fk_validate_sql[] =
    "DO $drd$\n"
    "DECLARE f record; rm record; tm record; n bigint; sample text; what text;\n"
    "BEGIN\n"
    "  FOR f IN SELECT c.oid, c.conname::text AS conname, c.conrelid::regclass AS r,"
    "                  c.confrelid::regclass AS t, " FK_COLS "\n"
    "             FROM pg_catalog.pg_constraint c\n"
    "            WHERE c.contype = 'f' AND (c.conrelid IN (SELECT rel FROM pg_temp.drd_map)\n"
    "                                       OR c.confrelid IN (SELECT rel FROM pg_temp.drd_map)) LOOP\n"
    "    n := 0;\n"
    "    SELECT * INTO rm FROM pg_temp.drd_map WHERE rel = f.r;\n"
    "    SELECT * INTO tm FROM pg_temp.drd_map WHERE rel = f.t;\n"
    "    IF (rm.rel IS NOT NULL AND rm.kt IS NULL) OR (tm.rel IS NOT NULL AND tm.kt IS NULL)\n"
    "       OR (tm.rel IS NOT NULL AND to_regclass('pg_temp.drd_gone_' || f.oid) IS NULL) THEN\n"
    /* a table copied whole (or no record of what changed): all of it */
    "      EXECUTE format('SELECT count(*), min(r::text) FROM ONLY %s r WHERE %s"
    "                       AND NOT EXISTS (SELECT 1 FROM ONLY %s t WHERE %s)',\n"
    "                     f.r, pg_temp.drd_nn('r', f.fkcols), f.t,\n"
    "                     pg_temp.drd_j('t', f.refcols, 'r', f.fkcols)) INTO n, sample;\n"
    "    ELSE\n"
    "      IF rm.rel IS NOT NULL THEN\n"
    /* the rows the sync wrote find their referenced row */
    "        EXECUTE format('SELECT count(*), min(r::text) FROM %s k JOIN ONLY %s r ON %s"
    "                         WHERE k.drd_action = ''apply'' AND %s"
    "                           AND NOT EXISTS (SELECT 1 FROM ONLY %s t WHERE %s)',\n"
    "                       rm.kt, f.r, pg_temp.drd_j('r', rm.keycols, 'k', rm.keycols),\n"
    "                       pg_temp.drd_nn('r', f.fkcols), f.t,\n"
    "                       pg_temp.drd_j('t', f.refcols, 'r', f.fkcols)) INTO n, sample;\n"
    "      END IF;\n"
    "      IF n = 0 AND tm.rel IS NOT NULL THEN\n"
    /* nothing references a value the sync removed */
    "        EXECUTE format('SELECT count(*), min(r::text) FROM %I g JOIN ONLY %s r ON %s"
    "                         WHERE NOT EXISTS (SELECT 1 FROM ONLY %s t WHERE %s)',\n"
    "                       'drd_gone_' || f.oid, f.r, pg_temp.drd_gj('g', 'r', f.fkcols), f.t,\n"
    "                       pg_temp.drd_gj('g', 't', f.refcols)) INTO n, sample;\n"
    "      END IF;\n"
    "    END IF;\n"
    "    IF n > 0 THEN\n"
    "      RAISE EXCEPTION 'foreign key % of %: % rows would reference a row of % that is not there,"
    " e.g. %', f.conname, f.r, n, f.t, left(sample, 300);\n"
    "    END IF;\n"
    "  END LOOP;\n"
    "END $drd$";

bool fk_map(sconn *p, const fk_table *tabs, size_t n, sbuf *q)
{
    sb_reset(q);
    sb_add(q, fk_funcs);
    sb_add(q, "CREATE TEMP TABLE drd_map (idx int, rel regclass, keycols text[], kt text, st text);");
    for (size_t i = 0; i < n; i++) {
        const fk_table *t = &tabs[i];
        sb_printf(q, "INSERT INTO pg_temp.drd_map VALUES (%zu, ", t->idx);
        sb_literal(q, t->t->qname);
        sb_add(q, "::regclass, ARRAY[");
        for (size_t k = 0; k < t->t->nkey; k++) {
            if (k > 0)
                sb_add(q, ", ");
            sb_literal(q, t->t->key[k]);
        }
        sb_add(q, "]::text[], ");
        if (t->whole) {
            sb_add(q, "NULL");
        } else {
            sb_printf(q, "'pg_temp.drd_k%zu'", t->idx);
        }
        sb_printf(q, ", 'pg_temp.drd_s%zu');", t->idx);
    }
    if (q->oom) {
        sync_fail(p->ctx, "out of memory");
        return false;
    }
    return sq_cmd(p, sb_str(q), "listing the synced tables for the foreign-key checks");
}

int64_t fk_detect(sconn *p)
{
    sync_ctx *c = p->ctx;
    if (!sq_cmd(p, fk_detect_sql, "checking the foreign keys that reference the changed rows"))
        return -1;
    PGresult *r = sq_exec(p, "SELECT m.rel::text, c.key::text, c.fk, c.referencing, c.nrows, left(c.sample, 300)"
                             "  FROM pg_temp.drd_fkc c JOIN pg_temp.drd_map m USING (idx)"
                             " ORDER BY 1, 2 LIMIT 20", "listing the foreign-key conflicts");
    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        sync_report(c, "conflict in %s, key %s: deleted or re-keyed on the backup, but %s rows of %s"
                    " on the primary still reference it (foreign key %s), e.g. %s",
                    PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 4), PQgetvalue(r, i, 3),
                    PQgetvalue(r, i, 2), PQgetvalue(r, i, 5));
    }
    PQclear(r);
    r = sq_exec(p, "SELECT count(DISTINCT (idx, key)) FROM pg_temp.drd_fkc", "counting");
    if (r == NULL)
        return -1;
    int64_t n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

bool fk_apply_actions(sconn *p, bool replica)
{
    /* origin for this statement: the foreign keys' own actions fire */
    if (replica && !sq_cmd(p, "SET LOCAL session_replication_role = origin", NULL))
        return false;
    if (!sq_cmd(p, fk_actions_sql, "deleting the conflicting keys with their foreign keys' actions"))
        return false;
    return !replica || sq_cmd(p, "SET LOCAL session_replication_role = replica", NULL);
}

bool fk_validate(sconn *p)
{
    return sq_cmd(p, fk_validate_sql, "checking the foreign keys after applying");
}

/* One check query per foreign key, built on the server (every name through
 * format('%I') or a regclass): MATCH SIMPLE skips a row with any NULL
 * column, MATCH FULL only an all-NULL one. Constraints inherited by
 * partitions (conparentid <> 0) are covered by their parent's. */
static const char fk_verify_sql[] =
    "WITH s AS (SELECT rel AS relid FROM unnest($1::regclass[]) t(rel)"
    "           UNION SELECT a.relid FROM unnest($1::regclass[]) t(rel),"
    "             pg_partition_ancestors(t.rel) a(relid)),"
    " f AS (SELECT c.conname::text AS conname, c.conrelid::regclass::text AS r,"
    "              c.confrelid::regclass::text AS t, c.confmatchtype,"
    "              CASE WHEN rc.relkind = 'p' THEN '' ELSE 'ONLY ' END AS ro,"
    "              CASE WHEN tc.relkind = 'p' THEN '' ELSE 'ONLY ' END AS tonly,"
    "              (SELECT string_agg(format('t.%I = r.%I', ta.attname, ra.attname), ' AND ')"
    "                 FROM unnest(c.conkey, c.confkey) k(ra_n, ta_n)"
    "                 JOIN pg_attribute ra ON ra.attrelid = c.conrelid AND ra.attnum = k.ra_n"
    "                 JOIN pg_attribute ta ON ta.attrelid = c.confrelid AND ta.attnum = k.ta_n) AS j,"
    "              (SELECT string_agg(format('r.%I IS NOT NULL', a.attname), ' AND ')"
    "                 FROM unnest(c.conkey) k(n) JOIN pg_attribute a"
    "                   ON a.attrelid = c.conrelid AND a.attnum = k.n) AS nn,"
    "              (SELECT string_agg(format('r.%I IS NULL', a.attname), ' AND ')"
    "                 FROM unnest(c.conkey) k(n) JOIN pg_attribute a"
    "                   ON a.attrelid = c.conrelid AND a.attnum = k.n) AS an"
    "         FROM pg_constraint c JOIN pg_class rc ON rc.oid = c.conrelid"
    "         JOIN pg_class tc ON tc.oid = c.confrelid"
    "        WHERE c.contype = 'f' AND c.convalidated AND c.conparentid = 0"
    "          AND (c.conrelid IN (SELECT relid FROM s) OR c.confrelid IN (SELECT relid FROM s)))"
    " SELECT conname, r, t, format('SELECT count(*), left(min(r::text), 300) FROM %s%s r WHERE %s', ro, r,"
    "          CASE WHEN confmatchtype = 'f' THEN format('NOT (%s) AND (NOT (%s) OR %s)', an, nn, ne)"
    "               ELSE format('%s AND %s', nn, ne) END)"
    "   FROM (SELECT f.*, format('NOT EXISTS (SELECT 1 FROM %s%s t WHERE %s)', tonly, t, j) AS ne"
    "           FROM f) f ORDER BY r, conname";

bool fk_verify(sync_ctx *c, const scatalog *cat, int *nbad, sbuf *bad)
{
    sconn p = { .slot = -1 };
    sbuf arr;
    sb_init(&arr);
    PGresult *r = NULL, *v = NULL;
    bool ok = false;
    *nbad = 0;
    sb_add(&arr, "{");
    for (size_t i = 0; i < cat->n; i++)
        sb_printf(&arr, "%s%s", i ? "," : "", cat->t[i].oid);
    sb_add(&arr, "}");
    if (arr.oom) {
        sync_fail(c, "out of memory");
        goto cleanup;
    }
    const char *params[1] = { sb_str(&arr) };
    if (!sconn_open(c, &p, true) ||
        (r = sq_params(&p, fk_verify_sql, 1, params, "listing the foreign keys")) == NULL)
        goto cleanup;
    for (int i = 0; i < PQntuples(r); i++) {
        if ((v = sq_exec(&p, PQgetvalue(r, i, 3), "checking a foreign key")) == NULL)
            goto cleanup;
        if (strcmp(PQgetvalue(v, 0, 0), "0") != 0) {
            sync_report(c, "verify: foreign key %s of %s: %s rows reference a row of %s that is not"
                        " there, e.g. %s", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                        PQgetvalue(v, 0, 0), PQgetvalue(r, i, 2), PQgetvalue(v, 0, 1));
            sb_printf(bad, "%sforeign key %s of %s: %s rows reference a row of %s that is not"
                      " there, e.g. %s", (*nbad)++ ? "; " : "", PQgetvalue(r, i, 0),
                      PQgetvalue(r, i, 1), PQgetvalue(v, 0, 0), PQgetvalue(r, i, 2),
                      PQgetvalue(v, 0, 1));
        }
        PQclear(v);
        v = NULL;
    }
    if (*nbad == 0)
        sync_report(c, "verify: foreign keys: %d checked on the primary, none violated", PQntuples(r));
    ok = true;
cleanup:
    PQclear(v);
    PQclear(r);
    sconn_close(&p);
    sb_free(&arr);
    return ok;
}
