/* privs.c - the privileges drd's role needs, per runbook action, and the
 * one implementation that tests them and writes the GRANTs. See privs.h.
 *
 * The rule table below is the list: read from what each step does
 * (steps.c, sync_capture.c, sync_back.c, sync_full.c, sync_copy.c, sync_catalog.c,
 * refresh_logical.c, refresh_job.c):
 *   capture        CREATE SCHEMA drd (CREATE on the database), CREATE
 *                  TRIGGER on every synced table (TRIGGER), and SELECT on
 *                  it (the TRUNCATE trigger records the rows it removes);
 *   sync-back      on the primary: SELECT/INSERT/UPDATE/DELETE on the
 *                  tables (DELETE + INSERT ... ON CONFLICT), SELECT/UPDATE
 *                  on the sequences (read, setval), temporary tables; on
 *                  the backup: SELECT (COPY out, last_value), temporary
 *                  tables, and INSERT/UPDATE/DELETE when primary-wins may
 *                  write the primary's rows back; SET session_replication_role
 *                  (optional: without it the foreign-key order is used);
 *   full mode      SELECT/INSERT/DELETE (TRUNCATE optional: DELETE else);
 *   verify         SELECT on both sides, a temporary table on the primary;
 *   fence          read-only: ALTER DATABASE (the database's owner, or a
 *                  member of the owner role); nologin: CREATEROLE; both end
 *                  the app's sessions (pg_signal_backend, or a member of
 *                  the app's role);
 *   bump-sequences setval on every sequence owned by a column (SELECT,
 *                  UPDATE) after max() of that column (SELECT);
 *   logical        REPLICATION and the publication (CREATE on the database,
 *                  owner of the published tables) on the primary; CREATE /
 *                  ALTER SUBSCRIPTION on the backup (superuser in 15);
 *   dump           pg_dump (SELECT on everything) on the primary;
 *                  CREATE DATABASE and the rename (CREATEDB, owner of the
 *                  app's database) on the backup;
 *   reconcile      SELECT on the tables of the primary, and CREATE on its
 *                  database (schema drd, the ledger) and TRIGGER on the
 *                  tables (deletes = ledger; optional with auto: without
 *                  them deletes are found by comparing key ranges; none
 *                  with compare); SELECT/INSERT/UPDATE/DELETE on the backup's
 *                  tables, SET session_replication_role (optional: without
 *                  it parents are copied before children).
 * Every table or sequence named implies USAGE on its schema.
 *
 * privs_catalog.c tests the list against a side's catalog and writes the
 * GRANTs. */
#include "privs_int.h"
#include "drd/store/states.h"

const char *const priv_names[P_COUNT] = {
    "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "USAGE", "CREATE", "TEMPORARY", "CONNECT",
};

enum { S_PRIMARY, S_BACKUP, S_TARGET };

/* ACT_COUNT stands for [refresh] mode itself (not a step). */
static const struct {
    step_action action;
    const char *when;            /* '+'-separated tags the step must have; NULL = always */
    int side;
    priv_object object;
    unsigned privs;
    const char *name;            /* ATTR / PARAMETER */
    bool optional;               /* a warning, not a failure */
} rules[] = {
    { ACT_CAPTURE,   "install",               S_BACKUP,  PO_DATABASE,    P_CREATE, NULL, false },
    { ACT_CAPTURE,   "install",               S_BACKUP,  PO_TABLES,      P_SELECT | P_TRIGGER, NULL, false },
    { ACT_SYNC_BACK, "incremental",           S_PRIMARY, PO_TABLES,      P_SELECT | P_INSERT | P_UPDATE | P_DELETE, NULL, false },
    { ACT_SYNC_BACK, "full",                  S_PRIMARY, PO_TABLES,      P_SELECT | P_INSERT | P_DELETE, NULL, false },
    { ACT_SYNC_BACK, "full",                  S_PRIMARY, PO_TABLES,      P_TRUNCATE, NULL, true },
    { ACT_SYNC_BACK, NULL,                    S_PRIMARY, PO_SEQUENCES,   P_SELECT | P_UPDATE, NULL, false },
    { ACT_SYNC_BACK, NULL,                    S_PRIMARY, PO_DATABASE,    P_TEMPORARY, NULL, false },
    { ACT_SYNC_BACK, NULL,                    S_PRIMARY, PO_PARAMETER,   0, "session_replication_role", true },
    { ACT_SYNC_BACK, NULL,                    S_BACKUP,  PO_TABLES,      P_SELECT, NULL, false },
    { ACT_SYNC_BACK, NULL,                    S_BACKUP,  PO_SEQUENCES,   P_SELECT, NULL, false },
    { ACT_SYNC_BACK, NULL,                    S_BACKUP,  PO_DATABASE,    P_TEMPORARY, NULL, false },
    { ACT_SYNC_BACK, "incremental+primary-wins", S_BACKUP, PO_TABLES,    P_INSERT | P_UPDATE | P_DELETE, NULL, false },
    { ACT_VERIFY,    NULL,                    S_PRIMARY, PO_TABLES,      P_SELECT, NULL, false },
    { ACT_VERIFY,    NULL,                    S_PRIMARY, PO_DATABASE,    P_TEMPORARY, NULL, false },
    { ACT_VERIFY,    NULL,                    S_BACKUP,  PO_TABLES,      P_SELECT, NULL, false },
    { ACT_FENCE,     "read-only",             S_TARGET,  PO_DB_OWNER,    0, NULL, false },
    { ACT_FENCE,     "nologin",               S_TARGET,  PO_ATTR,        0, "CREATEROLE", false },
    { ACT_FENCE,     "read-only+on",          S_TARGET,  PO_SIGNAL_APP,  0, NULL, false },
    { ACT_FENCE,     "nologin+on",            S_TARGET,  PO_SIGNAL_APP,  0, NULL, false },
    { ACT_REFRESH,   "bump-sequences",        S_BACKUP,  PO_SEQ_OWNED,   P_SELECT | P_UPDATE, NULL, false },
    { ACT_REFRESH,   "disable-subscription+logical",  S_BACKUP,  PO_ATTR, 0, "SUPERUSER", false },
    { ACT_REFRESH,   "recreate-subscription+logical", S_BACKUP,  PO_ATTR, 0, "SUPERUSER", false },
    { ACT_REFRESH,   "recreate-subscription+logical", S_PRIMARY, PO_ATTR, 0, "REPLICATION", false },
    { ACT_COUNT,     "logical",               S_PRIMARY, PO_ATTR,        0, "REPLICATION", false },
    { ACT_COUNT,     "logical",               S_PRIMARY, PO_DATABASE,    P_CREATE, NULL, false },
    { ACT_COUNT,     "logical",               S_PRIMARY, PO_TABLE_OWNER, 0, NULL, false },
    { ACT_COUNT,     "logical",               S_BACKUP,  PO_ATTR,        0, "SUPERUSER", false },
    { ACT_COUNT,     "dump",                  S_PRIMARY, PO_ALL,         P_SELECT, NULL, false },
    { ACT_COUNT,     "dump",                  S_BACKUP,  PO_ATTR,        0, "CREATEDB", false },
    { ACT_COUNT,     "dump",                  S_BACKUP,  PO_DB_OWNER,    0, NULL, false },
    /* reconcile: the ledger and its triggers ([refresh] deletes: the tag);
     * optional with auto (without them the key comparison finds deletes) */
    { ACT_COUNT,     "reconcile",             S_PRIMARY, PO_TABLES,      P_SELECT, NULL, false },
    { ACT_COUNT,     "reconcile+ledger",      S_PRIMARY, PO_DATABASE,    P_CREATE, NULL, false },
    { ACT_COUNT,     "reconcile+ledger",      S_PRIMARY, PO_TABLES,      P_TRIGGER, NULL, false },
    { ACT_COUNT,     "reconcile+auto",        S_PRIMARY, PO_DATABASE,    P_CREATE, NULL, true },
    { ACT_COUNT,     "reconcile+auto",        S_PRIMARY, PO_TABLES,      P_TRIGGER, NULL, true },
    { ACT_COUNT,     "reconcile",             S_BACKUP,  PO_TABLES,      P_SELECT | P_INSERT | P_UPDATE | P_DELETE, NULL, false },
    { ACT_COUNT,     "reconcile",             S_BACKUP,  PO_PARAMETER,   0, "session_replication_role", true },
};

/* ------------------------------------------------------------------ */
/* needs                                                              */

static bool has_tag(const char *tags, const char *tag, size_t len)
{
    for (const char *p = tags; *p != '\0';) {
        size_t l = strcspn(p, "+");
        if (l == len && strncmp(p, tag, len) == 0)
            return true;
        p += l;
        if (*p == '+')
            p++;
    }
    return false;
}

static bool matches(const char *when, const char *tags)
{
    if (when == NULL)
        return true;
    for (const char *p = when; *p != '\0';) {
        size_t l = strcspn(p, "+");
        if (!has_tag(tags, p, l))
            return false;
        p += l;
        if (*p == '+')
            p++;
    }
    return true;
}

static bool add_need(privs_list *l, privs_side side, size_t rule, bool required, const char *label)
{
    privs_need *g = realloc(l->v, (l->n + 1) * sizeof *g);
    if (g == NULL)
        return false;
    l->v = g;
    privs_need *n = &g[l->n++];
    memset(n, 0, sizeof *n);
    n->side = side;
    n->object = rules[rule].object;
    n->privs = rules[rule].privs;
    n->name = rules[rule].name;
    n->optional = rules[rule].optional;
    n->required = required;
    str_copy(n->label, label, sizeof n->label);
    return true;
}

static const char *dflt(const char *v, const char *d)
{
    return v != NULL && *v != '\0' ? v : d;
}

static bool list_init(privs_list *l, const config_t *cfg)
{
    if (l->schemas != NULL)
        return true;
    char user[128], db[128];
    l->schemas = strdup(dflt(cfg->sync_schemas, "public"));
    l->exclude = strdup(dflt(cfg->sync_exclude, ""));
    const config_target *t[2] = { &cfg->primary, &cfg->backup };
    for (int i = 0; i < 2; i++)
        if (pgconn_identity(dflt(t[i]->app_url, t[i]->url), user, sizeof user, db, sizeof db))
            l->app_user[i] = strdup(user);
    return l->schemas != NULL && l->exclude != NULL;
}

/* The needs of one step (action ACT_COUNT: [refresh] mode). */
static bool add_step(privs_list *l, const config_t *cfg, const char *kind, const runbook_step *s)
{
    char tags[160] = "", label[96];
    const char *refresh = refresh_mode_name(cfg->refresh_mode);
    bool required = true;
    int target = S_PRIMARY;

    switch (s->action) {
    case ACT_CAPTURE:
        str_copy(tags, s->remove ? "remove" : "install", sizeof tags);
        break;
    case ACT_SYNC_BACK:
        snprintf(tags, sizeof tags, "%s%s", sync_mode_name(cfg->sync_mode),
                 cfg->sync_conflicts == CONFLICTS_BACKUP_WINS ? "" : "+primary-wins");
        break;
    case ACT_FENCE:
        snprintf(tags, sizeof tags, "%s%s", fence_mode_name(s->fence), s->lift ? "+off" : "+on");
        target = target_or_primary(s->target) == TARGET_BACKUP ? S_BACKUP : S_PRIMARY;
        required = s->lift || s->required;
        break;
    case ACT_REFRESH:
        snprintf(tags, sizeof tags, "%s+%s", dflt(s->op, ""), refresh);
        break;
    case ACT_COUNT:
        snprintf(tags, sizeof tags, "%s+%s", refresh, deletes_mode_name(cfg->refresh_deletes));
        break;
    default:
        break;
    }
    if (s->action == ACT_COUNT)
        snprintf(label, sizeof label, "[refresh] mode = %s", refresh);
    else
        snprintf(label, sizeof label, "%s: %s", kind, s->name);
    for (size_t i = 0; i < ARRAY_LEN(rules); i++) {
        if (rules[i].action != s->action || !matches(rules[i].when, tags))
            continue;
        int side = rules[i].side == S_TARGET ? target : rules[i].side;
        if (!add_need(l, side == S_BACKUP ? PRIV_BACKUP : PRIV_PRIMARY, i, required, label))
            return false;
    }
    return true;
}

bool privs_for_steps(privs_list *l, const config_t *cfg, const char *kind,
                     const runbook_step *steps, size_t n)
{
    if (!list_init(l, cfg))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!add_step(l, cfg, kind, &steps[i]))
            return false;
    return true;
}

bool privs_for_config(privs_list *l, const config_t *cfg, char *err, size_t errlen)
{
    const char *paths[2] = { cfg->failover_runbook, cfg->failback_runbook };
    const char *kinds[2] = { "failover", "failback" };
    runbook_step mode = { .action = ACT_COUNT };

    err[0] = '\0';
    if (!list_init(l, cfg))
        goto oom;
    for (int k = 0; k < 2; k++) {
        config_errors errs = { 0 };
        runbook_t *rb = paths[k] != NULL ? runbook_load(paths[k], cfg, &errs) : NULL;
        if (rb == NULL) {
            snprintf(err, errlen, "the %s runbook does not load: %s", kinds[k],
                     errs.n > 0 ? errs.msgs[0] : "no runbook configured");
            config_errors_free(&errs);
            return false;
        }
        config_errors_free(&errs);
        bool ok = privs_for_steps(l, cfg, kinds[k], rb->steps, rb->n_steps);
        runbook_free(rb);
        if (!ok)
            goto oom;
    }
    if (!add_step(l, cfg, "", &mode))
        goto oom;
    return true;
oom:
    snprintf(err, errlen, "out of memory");
    return false;
}

void privs_list_free(privs_list *l)
{
    if (l == NULL)
        return;
    free(l->v);
    free(l->schemas);
    free(l->exclude);
    free(l->app_user[0]);
    free(l->app_user[1]);
    memset(l, 0, sizeof *l);
}

bool privs_side_used(const privs_list *l, privs_side side, bool *required)
{
    bool used = false;
    *required = false;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].side == side) {
            used = true;
            if (l->v[i].required)
                *required = true;
        }
    return used;
}

/* ------------------------------------------------------------------ */
/* connecting                                                         */

PGconn *privs_connect(const config_target *t, const char *dbname, int64_t timeout_ms,
                      const char *app_name, char *err, size_t errlen)
{
    pgconn_opts o = { .dbname = dbname, .password = t->password, .app_name = app_name,
                      .connect_ms = timeout_ms };
    PGconn *c = pgconn_connect(t->url, &o, err, errlen);

    if (c == NULL)
        return NULL;
    /* Every statement of this connection within the same time, kept by
     * the client (pgconn_exec): a session SET statement_timeout would stay
     * on a transaction-mode pooler's server connection for its next client
     * (the app: every query of it cut at 2 s). */
    if (!pgconn_set_timeout(c, timeout_ms)) {
        str_copy(err, "out of memory", errlen);
        PQfinish(c);
        return NULL;
    }
    return c;
}

void privs_role(const config_target *t, char *out, size_t n)
{
    char db[128];
    if (!pgconn_identity(t->url, out, n, db, sizeof db))
        out[0] = '\0';
}
