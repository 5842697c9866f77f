/* refresh_reconcile_sql.c - the SQL of a reconcile pass (see
 * refresh_reconcile.c): each statement is one simple query, and every
 * read from the source runs inside BEGIN READ ONLY with its settings made
 * by SET LOCAL, so that nothing depends on, or stays in, a pooler's shared
 * server session. Values travel as text (their output functions under
 * DateStyle ISO, UTC, extra_float_digits 3, bytea hex) inside JSON arrays,
 * and go back in through json_array_elements and a cast to the column's
 * type. */
#include "refresh_reconcile.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"

bool rsql_open(rsql *m)
{
    m->s = NULL;
    m->n = 0;
    m->f = open_memstream(&m->s, &m->n);
    return m->f != NULL;
}

char *rsql_close(rsql *m)
{
    if (m->f == NULL)
        return NULL;
    bool err = ferror(m->f) != 0;
    fclose(m->f);
    m->f = NULL;
    if (err) {
        free(m->s);
        return NULL;
    }
    return m->s;
}

void rsql_lit(rsql *m, const char *s)
{
    char *q = refresh_sql_literal(s);
    if (q == NULL) {
        fputs("\x01", m->f);       /* makes the statement invalid: OOM shows as an error */
        return;
    }
    fputs(q, m->f);
    free(q);
}



/* ", " separated list of the table's columns idx[0..n) (quoted). */
void rsql_cols(rsql *m, const rec_table *t, const size_t *idx, size_t n, const char *prefix,
                    const char *suffix)
{
    for (size_t i = 0; i < n; i++)
        fprintf(m->f, "%s%s%s%s", i ? ", " : "", prefix, t->cols[idx[i]], suffix);
}

/* The rsql_keyset columns of a batch: change column then key (B_INCR), key. */
size_t rsql_keyset(const rec_pass *p, const rec_table *t, size_t *idx)
{
    size_t n = 0;
    if (p->bk == B_INCR)
        idx[n++] = (size_t)t->chg;
    for (size_t i = 0; i < t->nkey && n < 64; i++)
        idx[n++] = t->key[i];
    return n;
}

/* "(c, k) > ('v'::type, 'w'::type)" from a JSON array of strings; "true" when empty. */
bool rsql_after(rsql *m, const rec_table *t, const size_t *idx, size_t n, const char *pos)
{
    if (pos == NULL || pos[0] == '\0') {
        fputs("true", m->f);
        return true;
    }
    json_t *a = json_loads(pos, 0, NULL);
    if (a == NULL || !json_is_array(a) || json_array_size(a) != n) {
        json_decref(a);
        return false;
    }
    fputs("(", m->f);
    rsql_cols(m, t, idx, n, "", "");
    fputs(") > (", m->f);
    for (size_t i = 0; i < n; i++) {
        const char *v = json_string_value(json_array_get(a, i));
        if (v == NULL) {
            json_decref(a);
            return false;
        }
        if (i)
            fputs(", ", m->f);
        rsql_lit(m, v);
        fprintf(m->f, "::%s", t->types[idx[i]]);
    }
    fputs(")", m->f);
    json_decref(a);
    return true;
}



char *rsql_catalog(const rec_pass *p)
{
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    fputs(SRC_BEGIN "SELECT json_build_object("
          "'ledger', to_regclass('drd.deleted') IS NOT NULL,"
          "'tables', coalesce((SELECT json_agg(json_build_object("
          "  's', n.nspname, 't', c.relname,"
          "  'cols', (SELECT json_agg(json_build_array(quote_ident(a.attname), a.attname,"
          "           format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum) FROM pg_attribute a"
          "           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),"
          "  'key', (SELECT json_agg(a.attname ORDER BY k.ord) FROM pg_index i,"
          "           unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a"
          "           WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid AND a.attnum = k.attnum),"
          "  'trg', (SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = c.oid"
          "           AND g.tgname IN ('drd_deleted', 'drd_truncated')) = 2,"
          "  'refs', (SELECT json_agg(DISTINCT rn.nspname || '.' || rc.relname) FROM pg_constraint f"
          "           JOIN pg_class rc ON rc.oid = f.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace"
          "           WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.confrelid <> c.oid)"
          ") ORDER BY n.nspname, c.relname)"
          " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
          " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
          "   AND n.nspname IN (SELECT btrim(x) FROM unnest(string_to_array(", m.f);
    rsql_lit(&m, p->schemas);
    fputs(", ',')) x)), '[]'))::text; COMMIT", m.f);
    return rsql_close(&m);
}

bool refresh_table_listed(const char *list, const char *name)
{
    if (list == NULL || list[0] == '\0')
        return true;
    size_t n = strlen(name);
    for (const char *s = list; *s; ) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t len = strcspn(s, ", ");
        if (len == n && strncmp(s, name, n) == 0)
            return true;
        s += len;
    }
    return false;
}

int refresh_change_column(const char *list, const char *table, char *const *cols, size_t ncols)
{
    char buf[1024];
    str_copy(buf, list != NULL ? list : "", sizeof buf);
    int found = -1, override = -1;
    for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
        char *eq = strchr(tok, '=');
        const char *col = tok;
        if (eq != NULL) {
            *eq = '\0';
            if (strcmp(tok, table) != 0)
                continue;
            col = eq + 1;
        }
        for (size_t i = 0; i < ncols; i++) {
            if (strcmp(cols[i], col) != 0)
                continue;
            if (eq != NULL)
                override = (int)i;
            else if (found < 0)
                found = (int)i;
        }
    }
    return override >= 0 ? override : found;
}

bool rsql_time_type(const char *type)
{
    return strncmp(type, "timestamp", 9) == 0 || strcmp(type, "date") == 0;
}



char *rsql_backup(const rec_pass *p)
{
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    fputs("SELECT concat_ws(chr(31), (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
          " (SELECT string_agg(x, ', ') FROM unnest(ARRAY[''", m.f);
    for (size_t i = 0; i < p->nt; i++) {
        fputs(", ", m.f);
        rsql_lit(&m, p->t[i].qname);
    }
    fputs("]) x WHERE x <> '' AND to_regclass(x) IS NULL))", m.f);
    return rsql_close(&m);
}



char *rsql_install(const rec_pass *p)
{
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    fputs("BEGIN; CREATE SCHEMA IF NOT EXISTS drd;"
          " CREATE TABLE IF NOT EXISTS drd.deleted (id bigserial PRIMARY KEY, tbl text NOT NULL,"
          "  key jsonb NOT NULL, at timestamptz NOT NULL DEFAULT now());"
          " CREATE OR REPLACE FUNCTION drd.log_deleted() RETURNS trigger LANGUAGE plpgsql"
          "  SECURITY DEFINER SET search_path = pg_catalog AS $drd$"
          " BEGIN"
          "  IF TG_OP = 'TRUNCATE' THEN"
          "   INSERT INTO drd.deleted (tbl, key) VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'null');"
          "   RETURN NULL;"
          "  END IF;"
          "  INSERT INTO drd.deleted (tbl, key) SELECT TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,"
          "   jsonb_agg(to_jsonb(OLD) ->> k ORDER BY i) FROM unnest(TG_ARGV) WITH ORDINALITY u(k, i);"
          "  RETURN NULL;"
          " END $drd$;"
          " REVOKE ALL ON FUNCTION drd.log_deleted() FROM PUBLIC;", m.f);
    for (size_t i = 0; i < p->nt; i++) {
        const rec_table *t = &p->t[i];
        if (t->trigger)
            continue;
        fprintf(m.f, " CREATE OR REPLACE TRIGGER drd_deleted AFTER DELETE ON %s FOR EACH ROW"
                " EXECUTE FUNCTION drd.log_deleted(", t->qname);
        for (size_t k = 0; k < t->nkey; k++) {
            /* trigger arguments are string literals: the plain column name */
            char *plain = refresh_xasprintf("%s", t->cols[t->key[k]]);
            size_t len = plain ? strlen(plain) : 0;
            if (plain && len >= 2 && plain[0] == '"') {       /* unquote "a""b" -> a"b */
                size_t o = 0;
                for (size_t c = 1; c + 1 < len; c++) {
                    plain[o++] = plain[c];
                    if (plain[c] == '"')
                        c++;
                }
                plain[o] = '\0';
            }
            if (k)
                fputs(", ", m.f);
            rsql_lit(&m, plain ? plain : "");
            free(plain);
        }
        fprintf(m.f, "); CREATE OR REPLACE TRIGGER drd_truncated AFTER TRUNCATE ON %s"
                " FOR EACH STATEMENT EXECUTE FUNCTION drd.log_deleted();", t->qname);
    }
    fputs(" COMMIT", m.f);
    return rsql_close(&m);
}



char *rsql_drain(void)
{
    return refresh_xasprintf(SRC_BEGIN "SELECT count(*), coalesce(json_agg(json_build_array(id, tbl, key)"
                             " ORDER BY id), '[]')::text FROM (SELECT id, tbl, key FROM drd.deleted"
                             " ORDER BY id LIMIT %d) s; COMMIT", LEDGER_BATCH);
}


/* One DELETE per entry group: "DELETE FROM t WHERE (k) IN (SELECT (drd_a.value->>0)::type ...
 * FROM json_array_elements('[[...],...]') drd_a)" (qualified: a bare name would be the
 * table's column of that name first); a truncate entry deletes every row. */
void rsql_delete(rsql *m, const rec_table *t, json_t *keys)
{
    if (keys == NULL) {
        fprintf(m->f, " DELETE FROM %s;", t->qname);
        return;
    }
    char *js = json_dumps(keys, JSON_COMPACT);
    fprintf(m->f, " DELETE FROM %s WHERE (", t->qname);
    rsql_cols(m, t, t->key, t->nkey, "", "");
    fputs(") IN (SELECT ", m->f);
    for (size_t k = 0; k < t->nkey; k++)
        fprintf(m->f, "%s(drd_a.value->>%zu)::%s", k ? ", " : "", k, t->types[t->key[k]]);
    fputs(" FROM json_array_elements(", m->f);
    rsql_lit(m, js ? js : "[]");
    fputs("::json) drd_a);", m->f);
    free(js);
}



char *rsql_fetch(rec_pass *p, const rec_table *t, const char *pos)
{
    size_t idx[65];
    size_t n = rsql_keyset(p, t, idx);
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    fputs(SRC_BEGIN "SELECT count(*), coalesce(json_agg(json_build_array(", m.f);
    for (size_t i = 0; i < t->ncols; i++)
        fprintf(m.f, "%s%s::text", i ? ", " : "", t->cols[i]);
    fputs(") ORDER BY ", m.f);
    rsql_cols(&m, t, idx, n, "", "");
    fprintf(m.f, "), '[]')::text FROM (SELECT * FROM %s WHERE ", t->qname);
    bool ok = rsql_after(&m, t, idx, n, pos);
    if (p->bk == B_INCR) {
        fprintf(m.f, " AND %s IS NOT NULL", t->cols[t->chg]);
    } else if (p->bk == B_BUCKET) {
        fprintf(m.f, " AND %s AND floor(extract(epoch FROM %s) / %" PRId64 ")::bigint = %" PRId64,
                p->lb_cond, t->cols[t->chg], p->bucket_s, p->bad[p->bi]);
    }
    fputs(" ORDER BY ", m.f);
    rsql_cols(&m, t, idx, n, "", "");
    fprintf(m.f, " LIMIT %" PRId64 ") s; COMMIT", p->limit);
    char *sql = rsql_close(&m);
    if (!ok) {
        free(sql);
        return NULL;
    }
    return sql;
}

char *rsql_apply(const rec_pass *p, const rec_table *t)
{
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    fputs(BACK_BEGIN, m.f);
    if (p->back_super)
        fputs(" SET LOCAL session_replication_role = replica;", m.f);
    fprintf(m.f, " INSERT INTO %s (", t->qname);
    for (size_t i = 0; i < t->ncols; i++)
        fprintf(m.f, "%s%s", i ? ", " : "", t->cols[i]);
    fputs(") OVERRIDING SYSTEM VALUE SELECT ", m.f);
    for (size_t i = 0; i < t->ncols; i++)
        fprintf(m.f, "%s(a->>%zu)::%s", i ? ", " : "", i, t->types[i]);
    fputs(" FROM json_array_elements(", m.f);
    rsql_lit(&m, p->payload);
    fputs("::json) a ON CONFLICT (", m.f);
    rsql_cols(&m, t, t->key, t->nkey, "", "");
    fputs(") DO ", m.f);
    bool any = false;
    for (size_t i = 0; i < t->ncols; i++) {
        bool is_key = false;
        for (size_t k = 0; k < t->nkey; k++)
            is_key = is_key || t->key[k] == i;
        if (is_key)
            continue;
        fprintf(m.f, "%s%s = EXCLUDED.%s", any ? ", " : "UPDATE SET ", t->cols[i], t->cols[i]);
        any = true;
    }
    if (!any)
        fputs("NOTHING", m.f);
    fputs("; COMMIT", m.f);
    return rsql_close(&m);
}



char *rsql_lookback(const rec_pass *p, const rec_table *t)
{
    rsql m;
    if (!rsql_open(&m))
        return NULL;
    const char *c = t->cols[t->chg];
    fprintf(m.f, SRC_BEGIN "SELECT coalesce(json_agg(json_build_array(b, n, h) ORDER BY b), '[]')::text"
            " FROM (SELECT floor(extract(epoch FROM %s) / %" PRId64 ")::bigint AS b, count(*) AS n,"
            " sum(hashtext(concat_ws('|', ", c, p->bucket_s);
    rsql_cols(&m, t, t->key, t->nkey, "", "::text");
    fprintf(m.f, ", extract(epoch FROM %s)::text)))::text AS h FROM %s WHERE %s GROUP BY 1) s; COMMIT",
            c, t->qname, p->lb_cond);
    return rsql_close(&m);
}

