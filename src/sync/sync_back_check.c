/* sync_back_check.c - sync-back's checks and reports (see sync_back.c):
 * the ledger and its triggers on the backup, the privileges the primary's
 * role lacks, the conflicts listed with both rows and the before-image,
 * and, between passes, the fingerprints of keyless tables. */
#include "sync_back_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"

#define MAX_CONFLICTS_LISTED 20
#define VALUE_CAP 300

/* jsonb_build_object('k1', k.k1, ...): a key for the report */
static void keyjson(sbuf *b, const stable *t, const char *prefix)
{
    sb_add(b, "jsonb_build_object(");
    for (size_t i = 0; i < t->nkey; i++) {
        if (i > 0)
            sb_add(b, ", ");
        sb_literal(b, t->key[i]);
        sb_printf(b, ", %s.", prefix);
        sb_ident(b, t->key[i]);
    }
    sb_add(b, ")");
}

bool back_check_ledger(backctx *x)
{
    PGresult *r = sq_exec(&x->b, "SELECT to_regclass('drd.ledger') IS NOT NULL,"
                          " to_regclass('drd.no_pk_tables') IS NOT NULL", "looking for the ledger");
    if (r == NULL)
        return false;
    bool ok = PQgetvalue(r, 0, 0)[0] == 't' && PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    if (!ok)
        sync_fail(x->c, "no change ledger on the backup: capture was not installed (the writes"
                  " made during the outage cannot be told apart; use [sync] mode = full)");
    return ok;
}

/* Every synced table must have had its trigger all along: a table without
 * one changed unseen. */
bool back_check_triggers(backctx *x)
{
    PGresult *r = sq_exec(&x->b,
        "SELECT n.nspname, c.relname FROM pg_trigger t"
        "  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE t.tgname = 'drd_capture' AND t.tgenabled <> 'D'", "looking for the capture triggers");
    if (r == NULL)
        return false;
    sbuf miss;
    sb_init(&miss);
    int n = 0;
    for (size_t i = 0; i < x->bcat.n; i++) {
        bool found = false;
        for (int k = 0; k < PQntuples(r) && !found; k++)
            found = strcmp(PQgetvalue(r, k, 0), x->bcat.t[i].schema) == 0 &&
                    strcmp(PQgetvalue(r, k, 1), x->bcat.t[i].name) == 0;
        if (!found)
            sb_printf(&miss, "%s%s", n++ ? ", " : "", x->bcat.t[i].label);
    }
    PQclear(r);
    if (n > 0)
        sync_fail(x->c, "tables without the capture trigger on the backup (their outage writes"
                  " were not recorded; use [sync] mode = full): %s", sb_str(&miss));
    sb_free(&miss);
    return n == 0;
}

/* Missing privileges on the primary, all named at once (by oid: a name
 * in a schema without USAGE would fail to resolve). */
static void priv_row(sbuf *q, bool *any, char kind, const char *oid, const char *label)
{
    sb_printf(q, "%s('%c', %s::oid, ", *any ? ", " : "", kind, oid);
    sb_literal(q, label);
    sb_add(q, ")");
    *any = true;
}

bool back_check_privileges(backctx *x)
{
    sbuf *q = &x->q;
    sb_reset(q);
    sb_add(q, "SELECT l, string_agg(p, ', ' ORDER BY p) FROM (SELECT l, p FROM (VALUES ");
    bool any = false;
    for (size_t i = 0; i < x->nch; i++) {
        const stable *t = catalog_find(&x->pcat, x->ch[i].t->schema, x->ch[i].t->name);
        if (t != NULL)
            priv_row(q, &any, 't', t->oid, t->label);
    }
    for (size_t i = 0; i < x->pcat.nseq; i++)
        priv_row(q, &any, 's', x->pcat.seq[i].oid, x->pcat.seq[i].label);
    if (!any)
        return true;
    sb_add(q, ") v(k, o, l), unnest(CASE k WHEN 't' THEN ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']"
              " ELSE ARRAY['SELECT', 'UPDATE'] END) p"
              " WHERE NOT CASE k WHEN 't' THEN has_table_privilege(o, p)"
              " ELSE has_sequence_privilege(o, p) END"
              " UNION ALL SELECT DISTINCT 'schema ' || n.nspname, 'USAGE' FROM (VALUES ");
    any = false;
    for (size_t i = 0; i < x->nch; i++) {
        const stable *t = catalog_find(&x->pcat, x->ch[i].t->schema, x->ch[i].t->name);
        if (t != NULL)
            priv_row(q, &any, 't', t->oid, t->label);
    }
    for (size_t i = 0; i < x->pcat.nseq; i++)
        priv_row(q, &any, 's', x->pcat.seq[i].oid, x->pcat.seq[i].label);
    sb_add(q, ") v(k, o, l) JOIN pg_class c ON c.oid = v.o JOIN pg_namespace n ON n.oid = c.relnamespace"
              " WHERE NOT has_schema_privilege(n.oid, 'USAGE')) m GROUP BY l ORDER BY l");
    if (q->oom) {
        sync_fail(x->c, "out of memory");
        return false;
    }
    PGresult *r = sq_exec(&x->p, sb_str(q), "checking privileges");
    if (r == NULL)
        return false;
    bool ok = PQntuples(r) == 0;
    if (!ok) {
        sbuf m;
        sb_init(&m);
        for (int i = 0; i < PQntuples(r) && i < 20; i++)
            sb_printf(&m, "%s%s (%s)", i ? ", " : "", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        if (PQntuples(r) > 20)
            sb_printf(&m, " and %d more", PQntuples(r) - 20);
        sync_fail(x->c, "the primary's role lacks privileges needed by sync-back: %s", sb_str(&m));
        sb_free(&m);
    }
    PQclear(r);
    return ok;
}

static void add_capped(sbuf *b, const char *label, const char *v, bool isnull)
{
    sb_printf(b, "\n    %-15s", label);
    if (isnull) {
        sb_add(b, "(no row)");
        return;
    }
    size_t n = strlen(v);
    if (n > VALUE_CAP) {
        sb_addn(b, v, VALUE_CAP);
        sb_printf(b, "... (%zu bytes)", n);
    } else {
        sb_add(b, v);
    }
}

/* The conflicts, at most MAX_CONFLICTS_LISTED: keys and the primary's rows
 * from the primary, the backup's row and the before-image from the
 * backup's key table. */
bool back_report_conflicts(backctx *x, int64_t total)
{
    sync_ctx *c = x->c;
    sbuf *q = &x->q;
    sbuf out;
    sb_init(&out);
    bool ok = false;
    int64_t listed = 0;
    PGresult *rp = NULL, *rb = NULL;
    for (size_t i = 0; i < x->nch && listed < MAX_CONFLICTS_LISTED; i++) {
        changed *ch = &x->ch[i];
        if (ch->n_conflict == 0)
            continue;
        sb_reset(q);
        sb_add(q, "SELECT ");
        keyjson(q, ch->t, "k");
        sb_printf(q, "::text, to_jsonb(t)::text FROM pg_temp.drd_k%zu k LEFT JOIN ONLY %s t ON ",
                  ch->idx, ch->t->qname);
        catalog_keyjoin(q, ch->t, "t", "k");
        sb_printf(q, " WHERE drd_action = 'conflict' ORDER BY 1 LIMIT %" PRId64,
                  MAX_CONFLICTS_LISTED - listed);
        if (q->oom || (rp = sq_exec(&x->p, sb_str(q), "listing conflicts")) == NULL)
            goto out;
        sb_reset(q);
        sb_add(q, "SELECT ");
        keyjson(q, ch->t, "k");
        sb_printf(q, "::text, to_jsonb(drd_bcur)::text, CASE WHEN drd_existed THEN"
                     " to_jsonb(jsonb_populate_record(NULL::%s, drd_before))::text END"
                     " FROM pg_temp.drd_k%zu k WHERE ", ch->t->qname, ch->idx);
        keyjson(q, ch->t, "k");
        sb_add(q, " IN (");
        for (int k = 0; k < PQntuples(rp); k++) {
            if (k > 0)
                sb_add(q, ", ");
            sb_literal(q, PQgetvalue(rp, k, 0));
            sb_add(q, "::jsonb");
        }
        sb_add(q, ")");
        if (q->oom || (rb = sq_exec(&x->b, sb_str(q), "listing conflicts")) == NULL)
            goto out;
        for (int k = 0; k < PQntuples(rp); k++) {
            int m = -1;
            for (int j = 0; j < PQntuples(rb) && m < 0; j++)
                if (strcmp(PQgetvalue(rb, j, 0), PQgetvalue(rp, k, 0)) == 0)
                    m = j;
            sb_printf(&out, "conflict in %s, key %s:", ch->t->label, PQgetvalue(rp, k, 0));
            add_capped(&out, "primary now:", PQgetvalue(rp, k, 1), PQgetisnull(rp, k, 1));
            add_capped(&out, "backup now:", m >= 0 ? PQgetvalue(rb, m, 1) : "",
                       m < 0 || PQgetisnull(rb, m, 1));
            add_capped(&out, "before outage:", m >= 0 ? PQgetvalue(rb, m, 2) : "",
                       m < 0 || PQgetisnull(rb, m, 2));
            sb_add(&out, "\n");
            listed++;
        }
        PQclear(rp);
        PQclear(rb);
        rp = rb = NULL;
    }
    if (total > listed)
        sb_printf(&out, "... and %" PRId64 " more conflicts\n", total - listed);
    if (out.len > 0 && out.s[out.len - 1] == '\n')
        out.s[--out.len] = '\0';
    sync_report(c, "%s", sb_str(&out));
    ok = true;
out:
    PQclear(rp);
    PQclear(rb);
    sb_free(&out);
    return ok;
}

/* Passes: a keyless table copied whole (or kept, primary-wins) now holds
 * on the primary what the backup holds in this transaction: that is its
 * fingerprint for the next pass's guard. */
bool back_keyless_fingerprints(backctx *x)
{
    sbuf *q = &x->q;
    for (size_t i = 0; i < x->nch; i++) {
        const stable *t = x->ch[i].t;
        if (t->nkey > 0)
            continue;
        sb_reset(q);
        sb_add(q, "UPDATE drd.no_pk_tables SET (fp_rows, fp_sum) = (");
        sync_checksum_sql(q, t, false);
        sb_add(q, ") WHERE schema_name = ");
        sb_literal(q, t->schema);
        sb_add(q, " AND table_name = ");
        sb_literal(q, t->name);
        if (q->oom || !sq_cmd(&x->b, sb_str(q), "recording a keyless table's fingerprint"))
            return false;
    }
    return true;
}
