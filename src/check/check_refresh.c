/* check_refresh.c - the `refresh` check: what [refresh] will do and cost.
 *
 *   reconcile  the source answers (through its pooler: no startup
 *              options, settings with SET LOCAL); which tables are kept
 *              by change column, which are copied whole every full_every
 *              (no change column), which are not refreshed (no key)
 *   egress     with [refresh] egress_budget: the refreshes the schedule
 *              makes in a 30-day month times a typical one (the median of
 *              the recorded ones, else the database's size for a dump)
 *              against the budget: a warning when the schedule alone
 *              exceeds it. */
#include "drd/check/check_refresh.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "drd/core/util.h"
#include "drd/pg/pgconn.h"
#include "drd/refresh/refresh.h"
#include "drd/store/store.h"

#define MONTH_MS (30LL * 86400 * 1000)

/* A connection to the reconcile source (or the primary's app database):
 * no "options" startup parameter, which a pooler refuses, and no session
 * state: its statements (pgconn_exec) end within timeout_ms by the
 * client's clock. */
static PGconn *source_connect(const config_t *cfg, int64_t timeout_ms, char *err, size_t n)
{
    const char *url = cfg->refresh_source_url != NULL ? cfg->refresh_source_url : cfg->primary.url;
    char *db = cfg->refresh_source_url == NULL && cfg->primary.app_url != NULL
             ? pgconn_dbname(cfg->primary.app_url) : NULL;
    pgconn_opts o = { .dbname = db != NULL && db[0] != '\0' ? db : NULL, .password = cfg->primary.password,
                      .app_name = "drd-check", .connect_ms = timeout_ms };
    PGconn *c = pgconn_connect(url, &o, err, n);
    free(db);
    if (c != NULL && !pgconn_set_timeout(c, timeout_ms)) {
        str_copy(err, "out of memory", n);
        PQfinish(c);
        c = NULL;
    }
    return c;
}

static void add(char *buf, size_t n, const char *sep, const char *text)
{
    if (buf[0] != '\0')
        str_append(buf, n, sep);
    str_append(buf, n, text);
}

/* The tables of [sync] schemas: "name\x1fhas_key\x1fcol,col,..." per row;
 * NULL with err. */
static PGresult *tables_of(PGconn *c, const config_t *cfg, char *err, size_t errlen)
{
    const char *params[1] = { cfg->sync_schemas != NULL ? cfg->sync_schemas : "public" };
    return pgconn_exec(c,
        "SELECT n.nspname || '.' || c.relname, n.nspname, c.relname,"
        "  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),"
        "  (SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a"
        "    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)"
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
        "   AND n.nspname IN (SELECT btrim(x) FROM unnest(string_to_array($1, ',')) x)"
        " ORDER BY 1", 1, params, err, errlen);
}

/* Which tables reconcile keeps and how; false (and err) when the source
 * does not answer. */
static bool reconcile_tables(const config_t *cfg, int64_t timeout_ms, char *reason, size_t n,
                             bool *warn, char *err, size_t errlen)
{
    PGconn *c = source_connect(cfg, timeout_ms, err, errlen);
    if (c == NULL)
        return false;
    PGresult *r = tables_of(c, cfg, err, errlen);
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (r != NULL)
            str_copy(err, "no rows", errlen);
        PQclear(r);
        PQfinish(c);
        return false;
    }
    char whole[1024] = "", keyless[1024] = "", line[256];
    int by_change = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        if (!refresh_table_listed(cfg->refresh_tables, name) || table_excluded(cfg->sync_exclude, PQgetvalue(r, i, 1),
                                                                 PQgetvalue(r, i, 2)))
            continue;
        if (strcmp(PQgetvalue(r, i, 3), "t") != 0) {
            add(keyless, sizeof keyless, ", ", name);
            continue;
        }
        char cols[4096], *v[256];
        str_copy(cols, PQgetvalue(r, i, 4), sizeof cols);
        size_t nc = 0;
        for (char *save = NULL, *t = strtok_r(cols, ",", &save); t != NULL && nc < 256; t = strtok_r(NULL, ",", &save))
            v[nc++] = t;
        if (refresh_change_column(cfg->refresh_change_columns, name, v, nc) >= 0)
            by_change++;
        else
            add(whole, sizeof whole, ", ", name);
    }
    PQclear(r);
    PQfinish(c);
    char every[32];
    format_duration(cfg->refresh_full_every_ms, every, sizeof every);
    snprintf(line, sizeof line, "reconcile: %d table(s) by change column", by_change);
    add(reason, n, "; ", line);
    if (whole[0] != '\0') {
        snprintf(line, sizeof line, "no change column, copied whole every full_every (%s): ", every);
        add(reason, n, "; ", line);
        str_append(reason, n, whole);
    }
    if (keyless[0] != '\0') {
        add(reason, n, "; ", "no primary key, not refreshed: ");
        str_append(reason, n, keyless);
        *warn = true;
    }
    return true;
}

/* A typical refresh's bytes: the state file's median, else (dump) the
 * primary's database size; -1 unknown. */
static int64_t typical_bytes(const config_t *cfg, refresh_mode mode, int64_t timeout_ms)
{
    int64_t b = -1;
    char err[256];
    if (cfg->state_db != NULL && access(cfg->state_db, R_OK) == 0) {
        store_t *s = store_open_readonly(cfg->state_db, err, sizeof err);
        if (s != NULL)
            b = refresh_typical_bytes(s, mode);
        store_close(s);
    }
    if (b >= 0 || mode != REFRESH_DUMP)
        return b;
    PGconn *c = source_connect(cfg, timeout_ms, err, sizeof err);
    if (c == NULL)
        return -1;
    PGresult *r = pgconn_exec(c, "SELECT pg_database_size(current_database())", 0, NULL, err, sizeof err);
    if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        b = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return b;
}

int check_refresh_eval(const config_t *cfg, int64_t timeout_ms, char *reason, size_t n, char *fix, size_t fn)
{
    refresh_mode rm = cfg->refresh_mode;
    const char *mode = refresh_mode_name(rm);
    int64_t budget = refresh_budget_bytes(cfg);
    bool warn = false;
    reason[0] = fix[0] = '\0';
    if (rm == REFRESH_RECONCILE) {
        char err[512];
        if (!reconcile_tables(cfg, timeout_ms, reason, n, &warn, err, sizeof err)) {
            snprintf(reason, n, "reconcile: the source does not answer: %s", err);
            str_copy(fix, "check [refresh] source_url (or [primary] url) and the pooler", fn);
            return 2;
        }
        if (warn)
            str_copy(fix, "add a primary key to the tables listed, or exclude them ([sync] exclude)", fn);
    }
    if (budget > 0 && rm != REFRESH_OFF && rm != REFRESH_LOGICAL) {
        cron_expr cron;
        char cerr[64], a[32], b[32], line[256];
        bool has_cron = cfg->refresh_schedule != NULL && cron_parse(cfg->refresh_schedule, &cron, cerr, sizeof cerr);
        int64_t now = wall_ms();
        int64_t runs = refresh_runs_between(refresh_every_effective(cfg), has_cron ? &cron : NULL, now,
                                            now + MONTH_MS);
        int64_t per = typical_bytes(cfg, rm, timeout_ms), month;
        format_bytes(budget, b, sizeof b);
        if (per < 0) {
            snprintf(line, sizeof line, "egress: %lld refreshes a month, their size unknown yet (budget %s)",
                     (long long)runs, b);
        } else if (refresh_egress_project(budget, 0, per, runs, &month)) {
            format_bytes(month, a, sizeof a);
            snprintf(line, sizeof line, "egress: the schedule alone reads ~%s a month (%lld refreshes), "
                     "over [refresh] egress_budget (%s)", a, (long long)runs, b);
            warn = true;
            str_copy(fix, "refresh less often ([refresh] every / schedule), or raise egress_budget", fn);
        } else {
            format_bytes(month, a, sizeof a);
            snprintf(line, sizeof line, "egress: the schedule reads ~%s a month, within %s", a, b);
        }
        add(reason, n, "; ", line);
    }
    if (reason[0] == '\0')
        snprintf(reason, n, "[refresh] mode = %s%s", mode, budget > 0 ? "" : ", no egress_budget");
    return warn ? 1 : 0;
}
