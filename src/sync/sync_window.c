/* sync_window.c - failback with the app stopped only for the tail.
 *
 * pre-sync (sync-back step with online = true, before stop-app): while the
 * app still writes to the backup, the ledger is replayed to the primary in
 * passes (sync_op_back; drd's own sessions are exempt from the primary's
 * fence). Each pass reads the backup in one REPEATABLE READ transaction
 * and records, in that transaction, its snapshot (drd.passes, on the
 * backup, committed after the primary's COMMIT). The next pass replays only
 * the ledger entries of transactions that snapshot did not see: per key,
 * row locks order the changes, so the first such entry's before-image is
 * the row the previous pass copied, and the conflict check is the same as
 * for one pass over the whole ledger.
 *   1. pass 1 (everything so far), then catch-up passes while a pass
 *      replays more than PASS_SMALL entries (at most CATCHUP_MAX);
 *   2. the verify pass: a coordinator session exports a snapshot of the
 *      backup, the pass reads in it, and after its COMMIT verify reads
 *      every synced table in the same snapshot while the primary (fenced,
 *      only drd writes there) holds what that snapshot held. The result
 *      per table (equal, or subset: the primary has more rows) goes to
 *      drd.verified, stamped with the run. The stop window's check of the
 *      touched keys then runs in that snapshot too: its time is the
 *      estimate;
 *   3. a last catch-up pass, then the tail (entries not replayed yet) and
 *      the expected stop window are reported.
 * An `ask` conflict or a verify difference fails the step: the app was
 * never stopped.
 *
 * verify after pre-sync (the stop window, same run): no ledger entry may
 * be left after the last pass; every key the outage touched (every entry
 * of the ledger, sync_keys.c) must be identical on both sides, or absent
 * from both; changed tables without a key, keyed tables truncated (an
 * older ledger) and tables without an online result are read whole.
 * Other rows are not read again: they were as verify wants them in the
 * online verify's snapshot, and the ledger shows the backup has not
 * changed them since. A touched row changed on the primary behind the
 * fence at any time is caught; an untouched one changed there after the
 * online verify is not (the fence rules that out). The work follows the
 * outage's keys, not the table. Without an online result of this run,
 * verify reads every table (as before passes existed). */
#include "sync_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"

#define PASS_SMALL 2000      /* a pass this small: catching up further gains little */
#define CATCHUP_MAX 4
#define VERIFY_PASS_TRIES 3  /* a verify pass must not write back (primary-wins) */

static const char *const passes_sql =
    "CREATE TABLE IF NOT EXISTS drd.passes ("
    "  n int PRIMARY KEY,"
    "  snapshot txid_snapshot NOT NULL,"
    "  entries bigint NOT NULL,"
    "  ms bigint NOT NULL,"
    "  run_id bigint NOT NULL DEFAULT 0,"
    "  wrote_back boolean NOT NULL DEFAULT false,"
    "  at timestamptz NOT NULL DEFAULT clock_timestamp());"
    "CREATE TABLE IF NOT EXISTS drd.verified ("
    "  schema_name text NOT NULL,"
    "  table_name text NOT NULL,"
    "  state text NOT NULL,"
    "  backup_rows bigint NOT NULL,"
    "  primary_rows bigint NOT NULL,"
    "  differing bigint NOT NULL,"
    "  run_id bigint NOT NULL,"
    "  pass int NOT NULL,"
    "  at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    "  PRIMARY KEY (schema_name, table_name))";

/* ---- passes (used by sync_op_back) ------------------------------------------- */

void sync_tail_filter(sbuf *q, const sync_ctx *c, const char *alias)
{
    if (!c->window || c->since == NULL || c->since[0] == '\0') {
        sb_add(q, "true");
        return;
    }
    sb_printf(q, "NOT txid_visible_in_snapshot(%s.txid, ", alias);
    sb_literal(q, c->since);
    sb_add(q, "::txid_snapshot)");
}

bool sync_pass_begin(sync_ctx *c, sconn *b, char **now)
{
    PGresult *r = sq_exec(b, "SELECT txid_current_snapshot()::text, to_regclass('drd.passes') IS NOT NULL",
                          "reading the backup's snapshot");
    if (r == NULL)
        return false;
    *now = strdup(PQgetvalue(r, 0, 0));
    c->window = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    free(c->since);
    c->since = NULL;
    c->pass_n = 0;
    if (*now == NULL) {
        sync_fail(c, "out of memory");
        return false;
    }
    if (!c->window)
        return true;
    r = sq_exec(b, "SELECT n, snapshot::text FROM drd.passes ORDER BY n DESC LIMIT 1", "reading the last pass");
    if (r == NULL)
        return false;
    bool ok = true;
    if (PQntuples(r) == 1) {
        c->pass_n = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        c->since = strdup(PQgetvalue(r, 0, 1));
        ok = c->since != NULL;
    }
    PQclear(r);
    if (!ok)
        sync_fail(c, "out of memory");
    return ok;
}

bool sync_pass_record(sync_ctx *c, sconn *b, const char *snapshot, int64_t entries, int64_t ms)
{
    char e[32], m[32], run[32];
    snprintf(e, sizeof e, "%" PRId64, entries);
    snprintf(m, sizeof m, "%" PRId64, ms);
    snprintf(run, sizeof run, "%" PRId64, c->run_id);
    const char *v[5] = { snapshot, e, m, run, c->pass_wrote_back ? "true" : "false" };
    PGresult *r = sq_params(b, "INSERT INTO drd.passes (n, snapshot, entries, ms, run_id, wrote_back)"
                               " SELECT coalesce(max(n), 0) + 1, $1::txid_snapshot, $2::bigint, $3::bigint,"
                               " $4::bigint, $5::boolean FROM drd.passes RETURNING n",
                            5, v, "recording the pass");
    if (r == NULL)
        return false;
    c->pass_n = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
    c->pass_entries = entries;
    c->pass_ms = ms;
    PQclear(r);
    return true;
}

/* ---- pre-sync ------------------------------------------------------------------ */

/* The ledger must be there; drd.passes and drd.verified are created next
 * to it (schema drd is drd's own, uncapture removes it). */
static bool ensure_tables(sync_ctx *c)
{
    sconn b = { .slot = -1 };
    bool ok = false;
    PGresult *r = NULL;
    if (!sconn_open(c, &b, false))
        goto cleanup;
    r = sq_exec(&b, "SELECT to_regclass('drd.ledger') IS NOT NULL", "looking for the ledger");
    if (r == NULL)
        goto cleanup;
    if (PQgetvalue(r, 0, 0)[0] != 't') {
        sync_fail(c, "no change ledger on the backup: capture was not installed (the writes"
                  " made during the outage cannot be told apart; use [sync] mode = full)");
        goto cleanup;
    }
    /* an earlier online result is dropped: only this pre-sync's counts.
     * The ledger (the outage's entries, by now) gets its statistics while
     * the app runs: the verifies (read only: no ANALYZE there) join its
     * keys to the tables by index instead of reading them whole. */
    ok = sq_cmd(&b, passes_sql, "creating drd.passes on the backup") &&
         sq_cmd(&b, "ANALYZE drd.ledger", "analyzing the ledger") &&
         sq_cmd(&b, "DELETE FROM drd.verified", "dropping an earlier online verify's result");
cleanup:
    PQclear(r);
    sconn_close(&b);
    return ok;
}

static bool one_pass(sync_ctx *c, const char *what)
{
    if (!sync_op_back(c))
        return false;
    char d[32];
    format_duration(c->pass_ms, d, sizeof d);
    sync_report(c, "pass %d (%s): %" PRId64 " ledger entries replayed in %s", c->pass_n, what,
                c->pass_entries, d);
    return true;
}

/* A coordinator session on the backup holding a snapshot for the verify
 * pass, the verify and the touched-key check. */
static bool export_snapshot(sync_ctx *c, sconn *coord, char **id)
{
    if (!sconn_open(c, coord, false) ||
        !sq_cmd(coord, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL))
        return false;
    PGresult *r = sq_exec(coord, "SELECT pg_export_snapshot()", "exporting a snapshot of the backup");
    if (r == NULL)
        return false;
    *id = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (*id == NULL)
        sync_fail(c, "out of memory");
    return *id != NULL;
}

/* The online verify's result per table, stamped with the run and pass. */
static bool record_verified(sync_ctx *c, const sbuf *rec)
{
    sconn b = { .slot = -1 };
    sbuf q;
    sb_init(&q);
    bool ok = false;
    sb_printf(&q, "BEGIN; DELETE FROM drd.verified;");
    if (rec->len > 0)
        sb_printf(&q, " INSERT INTO drd.verified (schema_name, table_name, state, backup_rows,"
                      " primary_rows, differing, run_id, pass) SELECT v.*, %" PRId64 ", %d FROM (VALUES %s) v;",
                  c->run_id, c->pass_n, sb_str(rec));
    sb_add(&q, " COMMIT");
    if (q.oom) {
        sync_fail(c, "out of memory");
        goto cleanup;
    }
    ok = sconn_open(c, &b, false) && sq_cmd(&b, sb_str(&q), "recording the verify's result");
cleanup:
    sconn_close(&b);
    sb_free(&q);
    return ok;
}


static bool verify_touched(sync_ctx *c, bool *fallback);

/* Step 2: the verify pass, the full verify and the touched keys' check,
 * in one snapshot of the backup. */
static bool verified_pass(sync_ctx *c)
{
    sconn coord = { .slot = -1 };
    char *id = NULL;
    sbuf rec;
    sb_init(&rec);
    bool ok = false;
    for (int i = 0; i < VERIFY_PASS_TRIES; i++) {
        sconn_close(&coord);
        free(id);
        id = NULL;
        if (!export_snapshot(c, &coord, &id))
            goto cleanup;
        c->import_snapshot = id;
        bool passed = one_pass(c, "the snapshot verify reads");
        c->import_snapshot = NULL;
        if (!passed)
            goto cleanup;
        if (!c->pass_wrote_back)
            break;
    }
    if (c->pass_wrote_back) {
        sync_fail(c, "pre-sync: every pass wrote conflicting rows back to the backup"
                  " (primary-wins); no pass could be verified");
        goto cleanup;
    }
    int verified_pass_n = c->pass_n;
    c->verify_snapshot = id;
    c->verify_record = &rec;
    bool verified = sync_op_verify(c);
    c->verify_record = NULL;
    if (!verified)
        goto cleanup;
    if (rec.oom) {
        sync_fail(c, "out of memory");
        goto cleanup;
    }
    c->pass_n = verified_pass_n;
    if (!record_verified(c, &rec))
        goto cleanup;
    /* the stop window's check of the touched keys, in the same snapshot
     * (the primary still holds what it held): its time is the estimate */
    bool fallback = false;
    if (!verify_touched(c, &fallback))
        goto cleanup;
    ok = true;
cleanup:
    c->verify_snapshot = NULL;
    c->verify_record = NULL;
    free(id);
    sconn_close(&coord);
    sb_free(&rec);
    return ok;
}

/* Step 3's figures: entries not replayed yet, entries in the whole ledger. */
static bool tail_now(sync_ctx *c, int64_t *tail, int64_t *total)
{
    sconn b = { .slot = -1 };
    PGresult *r = NULL;
    sbuf q;
    sb_init(&q);
    bool ok = false;
    if (!sconn_open(c, &b, false))
        goto cleanup;
    sb_add(&q, "SELECT count(*) FILTER (WHERE NOT txid_visible_in_snapshot(l.txid, p.snapshot)), count(*)"
               " FROM drd.ledger l, (SELECT snapshot FROM drd.passes ORDER BY n DESC LIMIT 1) p");
    if (q.oom || (r = sq_exec(&b, sb_str(&q), "measuring the tail")) == NULL)
        goto cleanup;
    *tail = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *total = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    ok = true;
cleanup:
    PQclear(r);
    sconn_close(&b);
    sb_free(&q);
    return ok;
}

bool sync_op_presync(sync_ctx *c)
{
    int64_t t0 = mono_ms(), tail = 0, total = 0;
    if (c->full) {
        sync_report(c, "[sync] mode = full: nothing to do before the app stops (sync-back copies"
                    " every table then)");
        return true;
    }
    if (!ensure_tables(c) || !one_pass(c, "online"))
        return false;
    int first = c->pass_n;
    for (int i = 0; i < CATCHUP_MAX && c->pass_entries > PASS_SMALL; i++)
        if (!one_pass(c, "catching up"))
            return false;
    if (!verified_pass(c))
        return false;
    int64_t before_last = mono_ms();
    if (!one_pass(c, "catching up after verify") || !tail_now(c, &tail, &total))
        return false;
    int64_t last_ms = mono_ms() - before_last;
    char d[32], e[32];
    format_duration(mono_ms() - t0, d, sizeof d);
    /* the stop window: the tail's pass (about what the last, small, pass
     * took) and the check of the keys the outage touched (measured in the
     * verify's snapshot); stop-app, the fences, switch-env and start-app
     * come on top */
    format_duration(last_ms + c->touched_ms, e, sizeof e);
    sync_report(c, "pre-sync done: passes %d to %d in %s; tail now: %" PRId64 " ledger entries not"
                " replayed yet (of %" PRId64 "); expected stop window: about %s (the tail's pass and"
                " the check of the keys the outage touched) plus stop-app, the fences, switch-env"
                " and start-app", first, c->pass_n, d, tail, total, e);
    return true;
}

/* ---- verify after pre-sync -------------------------------------------------------- */

typedef struct {
    char **labels;           /* schema.name of the tables read whole */
    size_t n;
} whole_list;

static bool skip_unlisted(const sync_ctx *c, const char *schema, const char *name)
{
    const whole_list *w = c->verify_skip_arg;
    for (size_t i = 0; i < w->n; i++) {
        size_t sl = strlen(schema);
        if (strncmp(w->labels[i], schema, sl) == 0 && w->labels[i][sl] == '.' &&
            strcmp(w->labels[i] + sl + 1, name) == 0)
            return false;
    }
    return true;
}

/* What the ledger says of one table: whether it changed, and whether it
 * must be read whole (truncated, or keyless and changed). */
typedef struct {
    bool changed, whole;
    bool verified;           /* drd.verified has it for this run */
    char state[16];
    int64_t brows, prows;
    int64_t differing;       /* rows the backup was behind in (the primary's stand) */
} tinfo;

/* *pending: ledger entries the last pass did not see (late writes). */
static bool load_info(sync_ctx *c, sconn *b, const scatalog *cat, tinfo *info, bool *any_verified,
                      int64_t *pending)
{
    char run[32];
    snprintf(run, sizeof run, "%" PRId64, c->run_id);
    const char *v[1] = { run };
    /* every ledger entry: the keys the whole outage touched */
    PGresult *r = sq_params(b, "SELECT 'v', schema_name, table_name, state, backup_rows, primary_rows,"
                               " differing FROM drd.verified WHERE run_id = $1::bigint AND run_id <> 0"
                               " UNION ALL SELECT 'l', schema_name, table_name, bool_or(op = 'T')::text,"
                               " 0, 0, 0 FROM drd.ledger GROUP BY 2, 3"
                               " UNION ALL SELECT 'l', schema_name, table_name, 'true', 0, 0, 0"
                               " FROM drd.no_pk_tables WHERE changed"
                               " UNION ALL SELECT 'p', '', '', count(*)::text, 0, 0, 0 FROM drd.ledger l,"
                               " (SELECT snapshot FROM drd.passes ORDER BY n DESC LIMIT 1) p"
                               " WHERE NOT txid_visible_in_snapshot(l.txid, p.snapshot)",
                            1, v, "reading the online verify's result");
    if (r == NULL)
        return false;
    *any_verified = false;
    *pending = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetvalue(r, i, 0)[0] == 'p') {
            *pending = strtoll(PQgetvalue(r, i, 3), NULL, 10);
            continue;
        }
        stable *t = catalog_find(cat, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
        if (t == NULL)
            continue;
        tinfo *ti = &info[t - cat->t];
        if (PQgetvalue(r, i, 0)[0] == 'v') {
            ti->verified = *any_verified = true;
            str_copy(ti->state, PQgetvalue(r, i, 3), sizeof ti->state);
            ti->brows = strtoll(PQgetvalue(r, i, 4), NULL, 10);
            ti->prows = strtoll(PQgetvalue(r, i, 5), NULL, 10);
            ti->differing = strtoll(PQgetvalue(r, i, 6), NULL, 10);
        } else {
            ti->changed = true;
            ti->whole = ti->whole || strcmp(PQgetvalue(r, i, 3), "true") == 0 || t->nkey == 0;
        }
    }
    PQclear(r);
    /* measuring in the online verify's own snapshot (pre-sync): its
     * result, just recorded, is not visible there; every table passed */
    for (size_t i = 0; c->verify_snapshot != NULL && i < cat->n; i++) {
        info[i].verified = *any_verified = true;
        str_copy(info[i].state, "online", sizeof info[i].state);
    }
    return true;
}

/* Nothing may be left after the last pass (a late write): its keys would
 * not be on the primary. Not when reading in a pass's snapshot. */
static bool nothing_pending(sync_ctx *c, int64_t n)
{
    if (c->verify_snapshot != NULL || n == 0)
        return true;
    sync_fail(c, "verify: %" PRId64 " ledger entries were written on the backup after the last"
              " sync-back pass (late writes): their rows are missing on the primary; a retry"
              " replays them first", n);
    return false;
}

/* A keyless table that changed: both sides' count and checksum must be
 * equal (no key: the rows cannot be told apart), on our connections. */
static bool check_keyless(sync_ctx *c, sconn *b, sconn *p, const stable *t, int *nbad, sbuf *bad)
{
    sbuf q;
    sb_init(&q);
    sync_checksum_sql(&q, t, sync_record_hash_ok(b, p));
    PGresult *rb = NULL, *rp = NULL;
    bool ok = !q.oom && sq_exec_both(b, sb_str(&q), p, sb_str(&q), &rb, &rp, "checksumming");
    sb_free(&q);
    if (!ok)
        return false;
    if (strcmp(PQgetvalue(rb, 0, 0), PQgetvalue(rp, 0, 0)) == 0 &&
        strcmp(PQgetvalue(rb, 0, 1), PQgetvalue(rp, 0, 1)) == 0) {
        sync_report(c, "verify %s: %s rows, equal (no key: read whole)", t->label, PQgetvalue(rb, 0, 0));
    } else {
        sync_report(c, "verify %s: DIFFERENT: backup %s rows (checksum %s), primary %s rows (checksum %s);"
                    " no primary key: its rows cannot be looked up one by one", t->label,
                    PQgetvalue(rb, 0, 0), PQgetvalue(rb, 0, 1), PQgetvalue(rp, 0, 0), PQgetvalue(rp, 0, 1));
        sb_printf(bad, "%s%s (backup %s rows, primary %s rows)", (*nbad)++ ? "; " : "", t->label,
                  PQgetvalue(rb, 0, 0), PQgetvalue(rp, 0, 0));
    }
    PQclear(rb);
    PQclear(rp);
    return true;
}

/* The keyed, changed tables: their touched keys. Differences counted in
 * *nbad and listed in bad. */
static bool check_keys(sync_ctx *c, sconn *b, sconn *p, const scatalog *cat, const tinfo *info,
                       int *nbad, sbuf *bad, int64_t *nkeys)
{
    bool by_record = sync_record_hash_ok(b, p);
    bool quiet = c->verify_snapshot != NULL;   /* measuring: differences only */
    for (size_t i = 0; i < cat->n; i++) {
        const stable *t = &cat->t[i];
        const tinfo *ti = &info[i];
        if (ti->verified && ti->whole && t->nkey == 0) {
            if (!check_keyless(c, b, p, t, nbad, bad))
                return false;
            continue;
        }
        if (!ti->verified || ti->whole)
            continue;
        if (!ti->changed && quiet)
            continue;
        if (!ti->changed) {
            sync_report(c, "verify %s: untouched by the outage (%" PRId64
                        " backup rows, %s online)", t->label, ti->brows, ti->state);
            continue;
        }
        key_diff kd;
        if (!sync_keys_compare(c, b, p, t, by_record, &kd))
            return false;
        *nkeys += kd.keys;
        if (!quiet)
            sync_add_counts(c, kd.keys, 1);
        if (kd.missing + kd.different + kd.primary_only == 0) {
            if (!quiet)
                sync_report(c, "verify %s: the %" PRId64 " keys the outage touched are identical on both"
                            " sides; the rest was verified online (%s)", t->label, kd.keys, ti->state);
            continue;
        }
        sync_report(c, "verify %s: DIFFERENT: of the %" PRId64 " keys the outage touched, %" PRId64
                    " backup rows missing on the primary, %" PRId64 " different there, %" PRId64
                    " on the primary only (first: %s)", t->label, kd.keys, kd.missing, kd.different,
                    kd.primary_only, kd.sample);
        sb_printf(bad, "%s%s (%" PRId64 " missing, %" PRId64 " different, %" PRId64
                  " only on the primary, of the %" PRId64 " keys the outage touched; first: %s)",
                  (*nbad)++ ? "; " : "", t->label, kd.missing, kd.different, kd.primary_only, kd.keys,
                  kd.sample);
    }
    return true;
}

/* The tables to read whole with verify's own rules: keyed ones truncated
 * (a ledger of an older version) or without an online result. */
static bool whole_tables(sync_ctx *c, const scatalog *cat, const tinfo *info)
{
    whole_list w = { 0 };
    w.labels = calloc(cat->n + 1, sizeof(*w.labels));
    if (w.labels == NULL) {
        sync_fail(c, "out of memory");
        return false;
    }
    for (size_t i = 0; i < cat->n; i++)
        if (!info[i].verified || (info[i].whole && cat->t[i].nkey > 0))
            w.labels[w.n++] = cat->t[i].label;
    bool ok = true;
    if (w.n > 0) {
        c->verify_skip = skip_unlisted;
        c->verify_skip_arg = &w;
        ok = sync_op_verify(c);
        c->verify_skip = NULL;
        c->verify_skip_arg = NULL;
    }
    free(w.labels);
    return ok;
}

/* The backup's REPEATABLE READ transaction (in c->verify_snapshot when
 * measuring); hash and merge joins off on both sides: the touched keys
 * are few next to the tables, looked up by index (sync_keys.c), never by a
 * join reading a table whole. */
static bool begin_read(sync_ctx *c, sconn *b, sconn *p)
{
    sbuf q;
    sb_init(&q);
    sb_add(&q, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (c->verify_snapshot != NULL) {
        sb_add(&q, "; SET TRANSACTION SNAPSHOT ");
        sb_literal(&q, c->verify_snapshot);
    }
    sb_add(&q, "; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off");
    bool ok = !q.oom && sq_cmd(b, sb_str(&q), NULL) &&
              sq_cmd(p, "SET enable_hashjoin = off; SET enable_mergejoin = off", NULL);
    if (q.oom)
        sync_fail(c, "out of memory");
    sb_free(&q);
    return ok;
}

/* After the keys: the tables read whole, the rows the backup was behind
 * in (as the online verify found them; tables read whole now: as found
 * now), the summary. */
static bool finish_touched(sync_ctx *c, const scatalog *cat, const tinfo *info, int64_t nkeys, int64_t t0)
{
    char d[32];
    if (c->verify_snapshot != NULL) {
        format_duration(mono_ms() - t0, d, sizeof d);
        sync_report(c, "the stop window's verify, measured now in this snapshot: the %" PRId64 " keys the"
                    " outage touched are identical on both sides (%s)", nkeys, d);
        c->touched_ms = mono_ms() - t0;
        return true;
    }
    if (!whole_tables(c, cat, info))
        return false;
    int64_t differing = 0;
    for (size_t i = 0; i < cat->n; i++)
        if (info[i].verified && (!info[i].whole || cat->t[i].nkey == 0))
            differing += info[i].differing;
    pthread_mutex_lock(&c->mu);
    c->differing += differing;
    pthread_mutex_unlock(&c->mu);
    format_duration(mono_ms() - t0, d, sizeof d);
    sync_report(c, "verify: %zu tables: every key the outage touched (%" PRId64 ") is identical on both"
                " sides, the rest verified online (%s)", cat->n, nkeys, d);
    return true;
}

/* *fallback: there is no online result of this run (verify every table).
 * With c->verify_snapshot (pre-sync, right after the online verify): the
 * same check in that snapshot, to measure the stop window's. */
static bool verify_touched(sync_ctx *c, bool *fallback)
{
    sconn b = { .slot = -1 }, p = { .slot = -1 };
    scatalog bcat = { 0 }, pcat = { 0 };
    tinfo *info = NULL;
    sbuf bad;
    sb_init(&bad);
    bool ok = false, any = false;
    int64_t t0 = mono_ms(), pending = 0, nkeys = 0;
    int nbad = 0;
    *fallback = false;
    if (!sync_open_both(c, &b, &bcat, &p, &pcat))
        goto cleanup;
    PGresult *r = sq_exec(&b, "SELECT to_regclass('drd.verified') IS NOT NULL", "looking for passes");
    if (r == NULL)
        goto cleanup;
    *fallback = PQgetvalue(r, 0, 0)[0] != 't' || c->run_id == 0;
    PQclear(r);
    if (*fallback) {
        ok = true;
        goto cleanup;
    }
    if (!begin_read(c, &b, &p))
        goto cleanup;
    info = calloc(bcat.n + 1, sizeof(*info));
    if (info == NULL) {
        sync_fail(c, "out of memory");
        goto cleanup;
    }
    if (!load_info(c, &b, &bcat, info, &any, &pending))
        goto cleanup;
    if (!any) {
        *fallback = true;
        ok = true;
        goto cleanup;
    }
    if (!nothing_pending(c, pending) || !check_keys(c, &b, &p, &bcat, info, &nbad, &bad, &nkeys))
        goto cleanup;
    if (nbad > 0) {
        sync_fail(c, "verify: %d tables differ: %s", nbad, sb_str(&bad));
        goto cleanup;
    }
    sconn_close(&b);
    sconn_close(&p);
    ok = finish_touched(c, &bcat, info, nkeys, t0);
cleanup:
    sconn_close(&b);
    sconn_close(&p);
    catalog_free(&bcat);
    catalog_free(&pcat);
    free(info);
    sb_free(&bad);
    return ok;
}

bool sync_op_verify_window(sync_ctx *c)
{
    bool fallback = false;
    if (!verify_touched(c, &fallback))
        return false;
    return !fallback || sync_op_verify(c);
}
