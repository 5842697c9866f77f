/* sync_capture.c - the change ledger on the backup.
 *
 * capture installs, in one transaction and idempotently:
 *   drd.ledger        one row per changed row: table, op (I/U/D; a TRUNCATE
 *                     is a D per row it removes; T only in ledgers of older
 *                     versions), key_old/key_new (the key columns as jsonb),
 *                     before_image (OLD as jsonb: the row before THIS
 *                     change; NULL for an insert), txid, at. No index: it is
 *                     only appended to during the outage and read whole once.
 *   drd.no_pk_tables  tables without a key (no_pk = copy): a changed flag,
 *                     set by a statement trigger; copied whole at sync-back.
 *   drd.meta          when capture was installed.
 *   triggers          drd_capture (AFTER INSERT OR UPDATE OR DELETE, FOR
 *                     EACH ROW, calling drd.capture_<table oid>(), a
 *                     function generated for the table's key) and
 *                     drd_capture_truncate (BEFORE TRUNCATE, FOR EACH
 *                     STATEMENT, drd.capture_trunc_<oid>(): every row
 *                     about to go is recorded as a delete) on every synced
 *                     table with a key.
 * The trigger functions are SECURITY DEFINER (the app's role needs no
 * right on schema drd) and qualify every name they use.
 *
 * uncapture drops schema drd with CASCADE: its triggers go with their
 * functions. Both are idempotent. */
#include "sync_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"

static const char *const ledger_sql =
    "CREATE SCHEMA IF NOT EXISTS drd;"
    "CREATE TABLE IF NOT EXISTS drd.ledger ("
    "  id bigserial NOT NULL,"
    "  schema_name text NOT NULL,"
    "  table_name text NOT NULL,"
    "  op text NOT NULL,"
    "  key_old jsonb,"
    "  key_new jsonb,"
    "  before_image jsonb,"
    "  txid bigint NOT NULL DEFAULT txid_current(),"
    "  at timestamptz NOT NULL DEFAULT clock_timestamp());"
    "CREATE TABLE IF NOT EXISTS drd.no_pk_tables ("
    "  schema_name text NOT NULL,"
    "  table_name text NOT NULL,"
    "  changed boolean NOT NULL DEFAULT false,"
    "  PRIMARY KEY (schema_name, table_name));"
    "CREATE TABLE IF NOT EXISTS drd.meta (name text PRIMARY KEY, value text NOT NULL);"
    /* the backup's contents of a keyless table when capture was installed
     * (row count, order-independent sum of row-text hashes): sync-back
     * copies such a table whole only if the primary's still matches */
    "ALTER TABLE drd.no_pk_tables ADD COLUMN IF NOT EXISTS fp_rows bigint,"
    " ADD COLUMN IF NOT EXISTS fp_sum numeric;"
    "INSERT INTO drd.meta VALUES ('installed_at', clock_timestamp()::text) ON CONFLICT DO NOTHING;"
    /* SECURITY DEFINER (the app's role needs no right on schema drd)
     * without a SET search_path clause, which costs a GUC save and restore
     * per call: every name in the bodies is schema-qualified instead, so
     * the caller's search_path cannot redirect anything. */
    /* Tables without a key: only whether they changed. After the first
     * change the UPDATE matches nothing and takes no lock. */
    "CREATE OR REPLACE FUNCTION drd.capture_whole() RETURNS trigger"
    " LANGUAGE plpgsql SECURITY DEFINER AS $drd$\n"
    "BEGIN\n"
    "  UPDATE drd.no_pk_tables SET changed = true\n"
    "   WHERE schema_name OPERATOR(pg_catalog.=) TG_TABLE_SCHEMA\n"
    "     AND table_name OPERATOR(pg_catalog.=) TG_TABLE_NAME AND NOT changed;\n"
    "  RETURN NULL;\n"
    "END $drd$;"
    "REVOKE ALL ON FUNCTION drd.capture_whole() FROM PUBLIC";

/* Whether the app could write on the backup when capture was first
 * installed: its database fenced read-only (the fence's ALTER DATABASE
 * ... SET default_transaction_read_only) or its role ($1) NOLOGIN. Kept
 * from the first install, like installed_at. */
static const char *const fenced_sql =
    "INSERT INTO drd.meta SELECT 'fenced_at_capture', (EXISTS (SELECT 1 FROM pg_db_role_setting s,"
    "   unnest(s.setconfig) v WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database"
    "   WHERE datname = current_database()) AND lower(v) IN ('default_transaction_read_only=on',"
    "   'default_transaction_read_only=true', 'default_transaction_read_only=1'))"
    " OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1 AND NOT rolcanlogin))::text"
    " ON CONFLICT DO NOTHING";

bool capture_was_writable(sconn *b, bool *known, bool *writable, char *at, size_t atlen)
{
    *known = *writable = false;
    at[0] = '\0';
    PGresult *r = sq_exec(b, "SELECT to_regclass('drd.meta') IS NOT NULL", "looking for the capture");
    if (r == NULL)
        return false;
    bool have = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!have)
        return true;
    r = sq_exec(b, "SELECT (SELECT value FROM drd.meta WHERE name = 'fenced_at_capture'),"
                " (SELECT value FROM drd.meta WHERE name = 'installed_at')", "reading the capture's record");
    if (r == NULL)
        return false;
    *known = !PQgetisnull(r, 0, 0);
    *writable = *known && strcmp(PQgetvalue(r, 0, 0), "false") == 0;
    str_copy(at, PQgetvalue(r, 0, 1), atlen);
    PQclear(r);
    return true;
}

/* drd's triggers as they are: table, name, function, arguments (hex of
 * tgargs: each argument followed by a NUL byte), enabled. */
static const char *const our_triggers_sql =
    "SELECT n.nspname, c.relname, t.tgname, p.proname, encode(t.tgargs, 'hex'), t.tgenabled <> 'D'"
    "  FROM pg_trigger t"
    "  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace"
    " WHERE pn.nspname = 'drd' AND NOT t.tgisinternal"
    " ORDER BY 1, 2, 3";

typedef struct {
    const char *tg, *fn;
    char args[8];            /* hex, as in our_triggers_sql: none */
    char fnbuf[32];
    bool present;
} want_trigger;

/* The triggers table t should have (2 with a key, 1 without). A table
 * with a key has its own row function, capture_<oid> (see row_function). */
static size_t wanted(const stable *t, want_trigger w[2])
{
    if (t->nkey == 0) {
        w[0] = (want_trigger){ .tg = "drd_capture", .fn = "capture_whole" };
        return 1;
    }
    w[0] = (want_trigger){ .tg = "drd_capture" };
    snprintf(w[0].fnbuf, sizeof(w[0].fnbuf), "capture_%s", t->oid);
    w[0].fn = w[0].fnbuf;
    w[1] = (want_trigger){ .tg = "drd_capture_truncate" };
    snprintf(w[1].fnbuf, sizeof(w[1].fnbuf), "capture_trunc_%s", t->oid);
    w[1].fn = w[1].fnbuf;
    return 2;
}

/* The before-images are jsonb, and to_jsonb() prints floats, intervals,
 * bytea, money and times with the session's settings: recorded in the
 * app's session (extra_float_digits = 0 printing 0.1 + 0.2 as 0.3, say),
 * a row the primary never touched would compare as changed. The trigger
 * functions fix them to what sync-back's own sessions use (sync_pg.c
 * session_sql), whatever the app's session says; a GUC save and restore
 * per call is the price of an image that means the same on both sides. */
static const char image_settings[] =
    "SET extra_float_digits = 1 SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD'"
    " SET IntervalStyle = 'postgres' SET bytea_output = 'hex' SET lc_monetary = 'C'";

/* The row trigger function of one table, generated: the key columns are
 * read straight from OLD/NEW (no to_jsonb of the whole new row, no loop
 * over trigger arguments), which makes the trigger noticeably cheaper.
 * key_old/key_new: the key as jsonb; before_image: OLD (the row before
 * THIS change). Every name is qualified (see ledger_sql). */
static void row_function(sbuf *q, const stable *t)
{
    char fn[32], tfn[40];
    snprintf(fn, sizeof(fn), "capture_%s", t->oid);
    snprintf(tfn, sizeof(tfn), "capture_trunc_%s", t->oid);
    const char *rec[3] = { "OLD", "NEW", "t" };
    char key[3][4096];
    for (int r = 0; r < 3; r++) {
        sbuf k;
        sb_init(&k);
        sb_add(&k, "pg_catalog.jsonb_build_object(");
        for (size_t i = 0; i < t->nkey; i++) {
            if (i > 0)
                sb_add(&k, ", ");
            sb_literal(&k, t->key[i]);
            sb_printf(&k, ", %s.", rec[r]);
            sb_ident(&k, t->key[i]);
        }
        sb_add(&k, ")");
        str_copy(key[r], sb_str(&k), sizeof(key[r]));
        sb_free(&k);
    }
    sb_printf(q, "CREATE OR REPLACE FUNCTION drd.%s() RETURNS trigger LANGUAGE plpgsql"
                 " SECURITY DEFINER %s AS $drd$\n"
                 "BEGIN\n"
                 "  IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN\n"
                 "    INSERT INTO drd.ledger (schema_name, table_name, op, key_old, key_new, before_image)\n"
                 "      VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, 'U', %s, %s, pg_catalog.to_jsonb(OLD));\n"
                 "  ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN\n"
                 "    INSERT INTO drd.ledger (schema_name, table_name, op, key_new)\n"
                 "      VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, 'I', %s);\n"
                 "  ELSE\n"
                 "    INSERT INTO drd.ledger (schema_name, table_name, op, key_old, before_image)\n"
                 "      VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, 'D', %s, pg_catalog.to_jsonb(OLD));\n"
                 "  END IF;\n"
                 "  RETURN NULL;\n"
                 "END $drd$; REVOKE ALL ON FUNCTION drd.%s() FROM PUBLIC;",
              fn, image_settings, key[0], key[1], key[1], key[0], fn);
    /* TRUNCATE: a delete of every row it removes, with its before-image,
     * written BEFORE the rows go; sync-back then treats them as it treats
     * deletes (see the README: a row the primary changed since is a
     * conflict, rows only the primary has are kept). Reading the table
     * needs SELECT on it for drd's role (the function's owner). */
    sb_printf(q, "CREATE OR REPLACE FUNCTION drd.%s() RETURNS trigger LANGUAGE plpgsql"
                 " SECURITY DEFINER %s AS $drd$\n"
                 "BEGIN\n"
                 "  INSERT INTO drd.ledger (schema_name, table_name, op, key_old, before_image)\n"
                 "    SELECT TG_TABLE_SCHEMA, TG_TABLE_NAME, 'D', %s, pg_catalog.to_jsonb(t)\n"
                 "      FROM ONLY %s t;\n"
                 "  RETURN NULL;\n"
                 "END $drd$; REVOKE ALL ON FUNCTION drd.%s() FROM PUBLIC;",
              tfn, image_settings, key[2], t->qname, tfn);
}

static void create_trigger(sbuf *q, const stable *t, const want_trigger *w)
{
    if (strcmp(w->tg, "drd_capture") == 0 && t->nkey > 0) {
        sb_printf(q, "CREATE TRIGGER drd_capture AFTER INSERT OR UPDATE OR DELETE ON %s"
                  " FOR EACH ROW EXECUTE FUNCTION drd.%s();", t->qname, w->fn);
    } else if (strcmp(w->tg, "drd_capture_truncate") == 0) {
        sb_printf(q, "CREATE TRIGGER drd_capture_truncate BEFORE TRUNCATE ON %s"
                  " FOR EACH STATEMENT EXECUTE FUNCTION drd.%s();", t->qname, w->fn);
    } else {
        sb_add(q, "INSERT INTO drd.no_pk_tables (schema_name, table_name) VALUES (");
        sb_literal(q, t->schema);
        sb_add(q, ", ");
        sb_literal(q, t->name);
        sb_add(q, ") ON CONFLICT DO NOTHING; UPDATE drd.no_pk_tables SET (fp_rows, fp_sum) = (");
        sync_checksum_sql(q, t, false);
        sb_add(q, ") WHERE fp_rows IS NULL AND schema_name = ");
        sb_literal(q, t->schema);
        sb_add(q, " AND table_name = ");
        sb_literal(q, t->name);
        sb_printf(q, "; CREATE TRIGGER drd_capture"
                  " AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s"
                  " FOR EACH STATEMENT EXECUTE FUNCTION drd.capture_whole();", t->qname);
    }
}

/* The triggers each table should have, and which of them are there. */
typedef struct {
    want_trigger (*want)[2];
    size_t *nwant;
    int kept, dropped, created;
} trigger_plan;

/* Keyless tables are reported; they fail capture unless no_pk = copy.
 * n_nokey: how many there are. */
static bool check_keyless(sync_ctx *c, const scatalog *cat, size_t *n_nokey)
{
    sbuf nokey;
    sb_init(&nokey);
    *n_nokey = 0;
    for (size_t i = 0; i < cat->n; i++)
        if (cat->t[i].nkey == 0)
            sb_printf(&nokey, "%s%s", (*n_nokey)++ ? ", " : "", cat->t[i].label);
    if (*n_nokey > 0)
        sync_report(c, "tables without a primary key or replica identity: %s", sb_str(&nokey));
    bool ok = *n_nokey == 0 || c->no_pk_copy;
    if (!ok)
        sync_fail(c, "tables without a primary key or replica identity (add one, exclude them,"
                  " or set [sync] no_pk = copy): %s", sb_str(&nokey));
    sb_free(&nokey);
    return ok;
}

/* Whether drd's trigger in row i of our_triggers_sql is one t wants (then
 * marked present). */
static bool trigger_right(const trigger_plan *tp, const scatalog *cat, const stable *t,
                          PGresult *r, int i)
{
    bool right = false;
    if (t == NULL)
        return false;
    size_t ti = (size_t)(t - cat->t);
    for (size_t k = 0; k < tp->nwant[ti]; k++) {
        want_trigger *w = &tp->want[ti][k];
        if (strcmp(w->tg, PQgetvalue(r, i, 2)) == 0 && strcmp(w->fn, PQgetvalue(r, i, 3)) == 0 &&
            strcmp(w->args, PQgetvalue(r, i, 4)) == 0 && PQgetvalue(r, i, 5)[0] == 't')
            right = w->present = true;
    }
    return right;
}

/* Drop drd's triggers that are wrong (replaced below) or on tables no
 * longer synced (a warning when the owner's right is missing). */
static bool drop_wrong_triggers(sync_ctx *c, sconn *b, const scatalog *cat, trigger_plan *tp)
{
    bool ok = false;
    sbuf q;
    sb_init(&q);
    PGresult *r = sq_exec(b, our_triggers_sql, "listing drd's triggers");
    if (r == NULL)
        goto cleanup;
    for (int i = 0; i < PQntuples(r); i++) {
        stable *t = catalog_find(cat, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        if (trigger_right(tp, cat, t, r, i)) {
            tp->kept++;
            continue;
        }
        sb_reset(&q);
        sb_add(&q, "DROP TRIGGER IF EXISTS ");
        sb_ident(&q, PQgetvalue(r, i, 2));
        sb_add(&q, " ON ");
        sb_ident(&q, PQgetvalue(r, i, 0));
        sb_add(&q, ".");
        sb_ident(&q, PQgetvalue(r, i, 1));
        if (q.oom) {
            sync_fail(c, "out of memory");
            goto cleanup;
        }
        if (t != NULL) {
            if (!sq_cmd(b, sb_str(&q), "replacing an outdated capture trigger"))
                goto cleanup;
        } else {
            char err[512];
            if (!sq_cmd(b, "SAVEPOINT drd_drop", NULL))
                goto cleanup;
            if (!sq_try(b, sb_str(&q), err, sizeof(err))) {
                sync_report(c, "warning: cannot remove trigger %s from %s.%s, which is no longer"
                            " synced: %s", PQgetvalue(r, i, 2), PQgetvalue(r, i, 0),
                            PQgetvalue(r, i, 1), err);
                if (!sq_cmd(b, "ROLLBACK TO SAVEPOINT drd_drop", NULL))
                    goto cleanup;
                continue;
            }
        }
        tp->dropped++;
    }
    ok = true;
cleanup:
    PQclear(r);
    sb_free(&q);
    return ok;
}

/* The row functions and the missing triggers. Batched: one round trip per
 * few tables, not per statement. */
static bool create_triggers(sync_ctx *c, sconn *b, const scatalog *cat, trigger_plan *tp)
{
    bool ok = false;
    sbuf q;
    sb_init(&q);
    for (size_t i = 0; i < cat->n; i++) {
        if (cat->t[i].nkey > 0)
            row_function(&q, &cat->t[i]);
        for (size_t k = 0; k < tp->nwant[i]; k++)
            if (!tp->want[i][k].present) {
                create_trigger(&q, &cat->t[i], &tp->want[i][k]);
                tp->created++;
            }
        if (q.len > 64 * 1024 || (i + 1 == cat->n && q.len > 0)) {
            if (q.oom) {
                sync_fail(c, "out of memory");
                goto cleanup;
            }
            if (!sq_cmd(b, sb_str(&q), "creating the capture triggers"))
                goto cleanup;
            sb_reset(&q);
        }
    }
    ok = true;
cleanup:
    sb_free(&q);
    return ok;
}

/* Record whether the backup was fenced, commit, and say what capture did. */
static bool finish_capture(sync_ctx *c, sconn *b, const scatalog *cat, const trigger_plan *tp,
                           size_t n_nokey)
{
    const char *app_user[1] = { c->backup_app_user };
    PGresult *r = sq_params(b, fenced_sql, 1, app_user, "recording whether the backup was fenced");
    if (r == NULL)
        return false;
    PQclear(r);
    r = sq_exec(b, "SELECT count(*), (SELECT value FROM drd.meta WHERE name = 'installed_at'),"
                " (SELECT value FROM drd.meta WHERE name = 'fenced_at_capture') FROM drd.ledger", NULL);
    if (r == NULL || !sq_cmd(b, "COMMIT", "committing the capture")) {
        PQclear(r);
        return false;
    }
    sync_report(c, "capture on the backup: %zu tables (%zu with a key, %zu copied whole when"
                " changed); triggers: %d created, %d already there, %d removed; installed at %s;"
                " %s entries in the ledger", cat->n, cat->n - n_nokey, n_nokey, tp->created,
                tp->kept, tp->dropped, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0));
    if (strcmp(PQgetvalue(r, 0, 2), "false") == 0)
        sync_report(c, "warning: the backup was not fenced when capture was installed: writes the"
                    " app (or anyone) made there before %s are not in the ledger; verify cannot"
                    " tell them from the backup having been behind the primary, whose version"
                    " stands", PQgetvalue(r, 0, 1));
    PQclear(r);
    return true;
}

/* Re-running capture leaves the triggers that are already right alone
 * (dropping a trigger needs the table's owner; creating one only the
 * TRIGGER privilege), replaces wrong ones, and drops those on tables no
 * longer synced (a warning when it may not). */
bool sync_op_capture(sync_ctx *c)
{
    sconn b = { .slot = -1 };
    scatalog cat = { 0 };
    trigger_plan tp = { 0 };
    size_t n_nokey = 0;
    bool ok = false;

    if (!sconn_open(c, &b, false) || !catalog_load(&b, &cat) || !check_keyless(c, &cat, &n_nokey))
        goto cleanup;
    tp.want = calloc(cat.n + 1, sizeof(*tp.want));
    tp.nwant = calloc(cat.n + 1, sizeof(*tp.nwant));
    if (tp.want == NULL || tp.nwant == NULL) {
        sync_fail(c, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < cat.n; i++)
        tp.nwant[i] = wanted(&cat.t[i], tp.want[i]);
    if (!sq_cmd(&b, "BEGIN", NULL) || !sq_cmd(&b, ledger_sql, "creating the ledger") ||
        !drop_wrong_triggers(c, &b, &cat, &tp) || !create_triggers(c, &b, &cat, &tp) ||
        !finish_capture(c, &b, &cat, &tp, n_nokey))
        goto cleanup;
    sync_add_counts(c, 0, (int64_t)cat.n);
    ok = true;
cleanup:
    catalog_free(&cat);
    sconn_close(&b);
    free(tp.want);
    free(tp.nwant);
    return ok;
}

bool sync_op_uncapture(sync_ctx *c)
{
    sconn b = { .slot = -1 };
    bool ok = false;
    PGresult *r = NULL;
    if (!sconn_open(c, &b, false) || !sq_cmd(&b, "BEGIN", NULL))
        goto cleanup;
    r = sq_exec(&b, our_triggers_sql, "listing drd's triggers");
    /* The triggers depend on drd's functions: CASCADE drops them, which
     * (unlike DROP TRIGGER) does not need the tables' owner. */
    if (r == NULL || !sq_cmd(&b, "DROP SCHEMA IF EXISTS drd CASCADE", "removing the capture") ||
        !sq_cmd(&b, "COMMIT", NULL))
        goto cleanup;
    sync_report(c, "uncapture on the backup: %d triggers and schema drd removed", PQntuples(r));
    ok = true;
cleanup:
    PQclear(r);
    sconn_close(&b);
    return ok;
}
