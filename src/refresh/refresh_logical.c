/* refresh_logical.c - logical mode: set-up and runbook helpers (the watcher is refresh_watch.c).
 *
 * Set-up (a refresh in logical mode, refresh_job.c drives it): on the
 * primary, refuse tables whose UPDATE/DELETE a publication would break (no
 * primary key or replica identity), create drd_refresh.heartbeat and the
 * publication (FOR ALL TABLES; without superuser, FOR TABLE of every
 * existing table); on the backup, drop a disabled or broken subscription
 * and its slot, copy the schema into a scratch database, subscribe it with
 * copy_data = true, wait until every table is copied and caught up, then
 * pause it, swap it in for the live database and resume it. The backup is
 * never seen empty or half-copied, exactly as in dump mode. A subscription
 * already enabled means there is nothing to do.
 *
 * Watching (every second): drd bumps drd_refresh.heartbeat on the primary
 * (seq + 1, and remembers when each seq committed) and reads the seq the
 * backup has. (Its own schema: the sync module's capture owns schema drd
 * on the backup and drops it with CASCADE.) The lag, as of each reading of
 * the backup, is 0 when it has every heartbeat committed by then, else the
 * age of the oldest one it lacks: the backup is missing data that old.
 * Precision is the heartbeat period; it needs no clock agreement between
 * drd and the servers, keeps growing when replication stops (unlike
 * pg_stat_replication.replay_lag), and is not fooled by idle periods (unlike
 * latest_end_time or slot positions). The bytes come from the slot on the
 * primary (pg_current_wal_lsn() - confirmed_flush_lsn). Also watched: the
 * subscription's state, its worker, its error counters (PostgreSQL 15+), and
 * every minute a fingerprint of both sides' table definitions (DDL is not
 * replicated).
 *
 * Runbook helpers: disable the subscription (failover), recreate it without
 * a copy (after a verified failback), bump sequences past the largest used
 * value (sequences are not replicated). */
#include "refresh_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/core/util.h"

#define SAMPLE_TIMEOUT_MS  5000
#define SQL_SHORT_MS       30000
#define SCHEMA_TIMEOUT_MS  (3600LL * 1000)
#define SEQUENCE_MARGIN    1000       /* logical mode: the lag is seconds */
#define SEQUENCE_MARGIN_FAR 1000000    /* other modes: hours or days behind */

/* ---- SQL ------------------------------------------------------------------- */


char *refresh_sql_drop_subscriptions(const char *name)
{
    char *filter = NULL;
    if (name != NULL) {
        char *lit = refresh_sql_literal(name);
        filter = lit ? refresh_xasprintf(" AND subname = %s", lit) : NULL;
        free(lit);
        if (filter == NULL)
            return NULL;
    }
    char *q = refresh_xasprintf(
        "DO $drd$ DECLARE s record; BEGIN\n"
        "  FOR s IN SELECT subname FROM pg_subscription WHERE subdbid = " CUR_DB_OID "%s LOOP\n"
        "    EXECUTE format('ALTER SUBSCRIPTION %%I DISABLE', s.subname);\n"
        "    EXECUTE format('ALTER SUBSCRIPTION %%I SET (slot_name = NONE)', s.subname);\n"
        "    EXECUTE format('DROP SUBSCRIPTION %%I', s.subname);\n"
        "  END LOOP;\n"
        "END $drd$", filter ? filter : "");
    free(filter);
    return q;
}

char *refresh_sql_drop_slot(const char *slot)
{
    char *lit = refresh_sql_literal(slot);
    char *q = lit ? refresh_xasprintf(
        "DO $drd$ DECLARE i int := 0; BEGIN\n"
        "  WHILE i < 100 AND EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active) LOOP\n"
        "    PERFORM pg_sleep(0.1);\n"
        "    i := i + 1;\n"
        "  END LOOP;\n"
        "  IF EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active) THEN\n"
        "    PERFORM pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s;\n"
        "    PERFORM pg_sleep(1);\n"
        "  END IF;\n"
        "  PERFORM pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s;\n"
        "END $drd$", lit, lit, lit, lit) : NULL;
    free(lit);
    return q;
}

/* The publish statements for the primary (NULL-terminated, malloc'd). */
static char **publish_sql(const char *pub)
{
    char *lit = refresh_sql_literal(pub);
    if (lit == NULL)
        return NULL;
    char **q = calloc(7, sizeof *q);
    if (q == NULL) {
        free(lit);
        return NULL;
    }
    q[0] = refresh_xasprintf(
        "DO $drd$ DECLARE bad text; BEGIN\n"
        "  IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = %s) THEN RETURN; END IF;\n"
        "  IF current_setting('wal_level') <> 'logical' THEN\n"
        "    RAISE EXCEPTION 'the primary has wal_level = %%: logical mode needs wal_level = logical (a restart)',\n"
        "      current_setting('wal_level');\n"
        "  END IF;\n"
        "  SELECT string_agg(format('%%I.%%I', n.nspname, c.relname), ', ' ORDER BY n.nspname, c.relname) INTO bad\n"
        "    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace\n"
        "   WHERE c.relkind = 'r' AND c.relpersistence = 'p'\n"
        "     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'\n"
        "     AND (c.relreplident = 'n' OR (c.relreplident IN ('d', 'i') AND NOT EXISTS (\n"
        "          SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid\n"
        "             AND CASE c.relreplident WHEN 'd' THEN i.indisprimary ELSE i.indisreplident END)));\n"
        "  IF bad IS NOT NULL THEN\n"
        "    RAISE EXCEPTION 'not publishing: tables without a primary key or replica identity: %% (once published, "
        "their UPDATE and DELETE would fail on the primary; add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL)', bad;\n"
        "  END IF;\n"
        "END $drd$", lit);
    q[1] = strdup("CREATE SCHEMA IF NOT EXISTS drd_refresh");
    q[2] = strdup("CREATE TABLE IF NOT EXISTS drd_refresh.heartbeat (id int PRIMARY KEY CHECK (id = 1),"
                  " seq bigint NOT NULL DEFAULT 0, at timestamptz NOT NULL DEFAULT now())");
    q[3] = strdup("INSERT INTO drd_refresh.heartbeat (id) VALUES (1) ON CONFLICT (id) DO NOTHING");
    q[4] = refresh_xasprintf(
        "DO $drd$ DECLARE tabs text; BEGIN\n"
        "  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = %s) THEN\n"
        "    BEGIN\n"
        "      EXECUTE format('CREATE PUBLICATION %%I FOR ALL TABLES', %s);\n"
        "    EXCEPTION WHEN insufficient_privilege THEN\n"
        "      SELECT string_agg(format('%%I.%%I', n.nspname, c.relname), ', ') INTO tabs\n"
        "        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace\n"
        "       WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition\n"
        "         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%';\n"
        "      EXECUTE format('CREATE PUBLICATION %%I FOR TABLE %%s', %s, tabs);\n"
        "    END;\n"
        "  ELSIF NOT (SELECT puballtables FROM pg_publication WHERE pubname = %s) AND NOT EXISTS (\n"
        "        SELECT 1 FROM pg_publication_tables WHERE pubname = %s\n"
        "           AND schemaname = 'drd_refresh' AND tablename = 'heartbeat') THEN\n"
        "    EXECUTE format('ALTER PUBLICATION %%I ADD TABLE drd_refresh.heartbeat', %s);\n"
        "  END IF;\n"
        "END $drd$", lit, lit, lit, lit, lit, lit);
    q[5] = refresh_xasprintf("SELECT CASE WHEN puballtables THEN 'all tables' ELSE"
                     " (SELECT count(*) FROM pg_publication_tables WHERE pubname = %s)::text || ' tables'"
                     " END FROM pg_publication WHERE pubname = %s", lit, lit);
    free(lit);
    for (int i = 0; i < 6; i++)
        if (q[i] == NULL) {
            for (int k = 0; k < 6; k++)
                free(q[k]);
            free(q);
            return NULL;
        }
    return q;
}

static void free_list(char **q)
{
    if (q == NULL)
        return;
    for (char **p = q; *p; p++)
        free(*p);
    free(q);
}

static size_t list_len(char **q)
{
    size_t n = 0;
    while (q[n] != NULL)
        n++;
    return n;
}

/* Keep the conninfo (with its password) out of the backup's server log
 * should CREATE SUBSCRIPTION fail or statements be logged; ignored when
 * the role may not change these settings. */
static const char QUIET_LOGGING[] =
    "DO $drd$ BEGIN SET log_statement = 'none'; SET log_min_error_statement = 'panic';"
    " EXCEPTION WHEN insufficient_privilege THEN NULL; END $drd$";

static char *create_subscription_sql(const rconn *prim, const char *sub, const char *pub, bool copy)
{
    char *conninfo = refresh_rconn_string(prim, NULL, true, true);
    char *clit = conninfo ? refresh_sql_literal(conninfo) : NULL;
    char *sid = refresh_sql_ident(sub), *pid = refresh_sql_ident(pub);
    char *q = clit && sid && pid
        ? refresh_xasprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (copy_data = %s)",
                    sid, clit, pid, copy ? "true" : "false")
        : NULL;
    if (conninfo != NULL) {
        explicit_bzero(conninfo, strlen(conninfo));
        free(conninfo);
    }
    if (clit != NULL) {
        explicit_bzero(clit, strlen(clit));
        free(clit);
    }
    free(sid);
    free(pid);
    return q;
}

static const char *const HEARTBEAT_ON_BACKUP[] = {
    "CREATE SCHEMA IF NOT EXISTS drd_refresh",
    "CREATE TABLE IF NOT EXISTS drd_refresh.heartbeat (id int PRIMARY KEY CHECK (id = 1),"
    " seq bigint NOT NULL DEFAULT 0, at timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO drd_refresh.heartbeat (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
};

/* ---- set-up phases ------------------------------------------------------------- */

static bool publish_done(job_t *j, const char *value)
{
    if (value != NULL && strcmp(value, "all tables") == 0) {
        log_info("refresh %" PRId64 ": publication %s on the primary covers all tables", j->rec.id, j->pub);
    } else {
        /* FOR ALL TABLES needs a superuser: the fallback names the tables */
        refresh_record_event(j->r, true,
            "publication %s lists %s by name (FOR ALL TABLES needs a superuser on the primary): tables "
            "created later are not replicated until added with ALTER PUBLICATION %s ADD TABLE ...",
            j->pub, value && value[0] ? value : "?", j->pub);
    }
    return true;
}

int refresh_logical_publish_enter(job_t *j)
{
    char **q = publish_sql(j->pub);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    int rc = refresh_job_sql(j, j->c_prim, j->prim.password, (const char *const *)q, list_len(q), SQL_SHORT_MS,
                     publish_done, "primary (publication)", 0);
    free_list(q);
    return rc;
}

int refresh_logical_unsubscribe_enter(job_t *j)
{
    if (j->sub_state == SUB_MISSING)
        return PHASE_OK;
    log_info("refresh %" PRId64 ": the subscription %s is %s: dropping it for a full copy",
             j->rec.id, j->sub, refresh_sub_state_name(j->sub_state));
    char *q = refresh_sql_drop_subscriptions(j->sub);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_back, j->back.password, stmts, 1, SQL_SHORT_MS, NULL,
                     "backup (dropping the old subscription)", 0);
    free(q);
    return rc;
}

int refresh_logical_drop_slot_enter(job_t *j)
{
    char *q = refresh_sql_drop_slot(j->sub);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_prim, j->prim.password, stmts, 1, SQL_SHORT_MS, NULL,
                     "primary (dropping a stale replication slot)", 0);
    free(q);
    return rc;
}

static bool schema_done(job_t *j, const proc_result *res)
{
    int dump = refresh_job_out_rc(res, "dump"), rest = refresh_job_out_rc(res, "restore");
    if (!res->timed_out && dump == 0 && rest == 0)
        return true;
    char msg[400];
    if (res->timed_out) {
        refresh_job_fail(j, "copying the schema timed out");
    } else if (dump != 0 && dump != 141) {
        refresh_job_out_message(res, "pg_dump", msg, sizeof msg);
        refresh_job_fail(j, "pg_dump --schema-only failed (exit %d): %s", dump, msg[0] ? msg : "no message");
    } else {
        refresh_job_out_message(res, "pg_restore", msg, sizeof msg);
        refresh_job_fail(j, "restoring the schema into the scratch database failed: %s", msg[0] ? msg : "no message");
    }
    return false;
}

int refresh_logical_schema_enter(job_t *j)
{
    char *dump = refresh_job_client(j, "pg_dump", true), *restore = refresh_job_client(j, "pg_restore", false);
    char *src = refresh_sh_quote(j->c_prim), *dst = refresh_sh_quote(j->c_new);
    char *cmd = NULL;
    if (dump && restore && src && dst)
        cmd = refresh_xasprintf(
            "exec 3>&1; "
            "{ %s -Fc -s --no-publications --no-subscriptions -d %s 2>&3; echo \"rc dump $?\" >&3; } | "
            "{ %s --exit-on-error%s -d %s 2>&3; echo \"rc restore $?\" >&3; }",
            dump, src, restore, j->superuser ? "" : " --no-owner --no-privileges", dst);
    free(dump);
    free(restore);
    free(src);
    free(dst);
    if (cmd == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    int rc = refresh_job_cmd(j, cmd, SCHEMA_TIMEOUT_MS, schema_done);
    free(cmd);
    return rc;
}

static bool subscribe_done(job_t *j, const char *value)
{
    log_info("refresh %" PRId64 ": subscription %s created in %s; initial copy started",
             j->rec.id, j->sub, j->new_db);
    return true;
}

int refresh_logical_subscribe_enter(job_t *j)
{
    char *create = create_subscription_sql(&j->prim, j->sub, j->pub, true);
    if (create == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { QUIET_LOGGING, create };
    j->sub_created = true;             /* its slot may exist even if this fails */
    int rc = refresh_job_sql(j, j->c_new, j->back.password, stmts, 2, SQL_SHORT_MS, subscribe_done,
                     "backup (creating the subscription)", 0);
    str_free_secret(create);
    return rc;
}

static bool sync_check(job_t *j, const char *value)
{
    char buf[128], *f[3];
    str_copy(buf, value, sizeof buf);
    if (refresh_split_fields(buf, '\x1f', f, 3) != 3) {
        refresh_job_fail(j, "unexpected answer while waiting for the initial copy");
        return false;
    }
    long pending = strtol(f[0], NULL, 10), total = strtol(f[1], NULL, 10), errors = strtol(f[2], NULL, 10);
    if (errors > 0) {
        refresh_job_fail(j, "the initial copy failed on the backup (%ld replication errors; see the backup's "
                    "server log)", errors);
        return false;
    }
    if (total > 0 && pending == 0) {
        log_info("refresh %" PRId64 ": initial copy done: %ld tables copied and caught up", j->rec.id, total);
        return true;
    }
    int64_t now = loop_now(j->r->loop);
    if (now - j->progress_mono >= 15000) {
        j->progress_mono = now;
        log_info("refresh %" PRId64 ": initial copy: %ld of %ld tables ready", j->rec.id, total - pending, total);
    }
    j->again = true;
    return true;
}

static int sync_poll(job_t *j)
{
    char *lit = refresh_sql_literal(j->sub);
    char *errors = lit && j->back_version >= 150000
        ? refresh_xasprintf("coalesce((SELECT sync_error_count + apply_error_count FROM pg_stat_subscription_stats"
                    " WHERE subname = %s), 0)", lit)
        : strdup("0");
    char *q = lit && errors ? refresh_xasprintf(
        "SELECT concat_ws(chr(31), count(*) FILTER (WHERE r.srsubstate <> 'r'), count(*), %s)"
        " FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid"
        " WHERE s.subname = %s AND s.subdbid = " CUR_DB_OID, errors, lit) : NULL;
    free(lit);
    free(errors);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_new, j->back.password, stmts, 1, SQL_SHORT_MS, sync_check,
                     "backup (initial copy)", 0);
    free(q);
    return rc;
}

int refresh_logical_sync_enter(job_t *j)
{
    j->poll_fn = sync_poll;
    j->progress_mono = loop_now(j->r->loop);
    return sync_poll(j);
}

static int alter_subscription(job_t *j, const char *conninfo, const char *what, const char *verb)
{
    char *id = refresh_sql_ident(j->sub);
    char *q = id ? refresh_xasprintf("ALTER SUBSCRIPTION %s %s", id, verb) : NULL;
    free(id);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, conninfo, j->back.password, stmts, 1, SQL_SHORT_MS, NULL, what, 0);
    free(q);
    return rc;
}

int refresh_logical_pause_enter(job_t *j)
{
    return alter_subscription(j, j->c_new, "backup (pausing the subscription for the swap)", "DISABLE");
}

int refresh_logical_resume_enter(job_t *j)
{
    /* A failover may have started during the swap: the backup must then
     * not follow the primary; the subscription stays disabled. */
    char why[256];
    if (!refresh_interlock(j->r, why, sizeof why)) {
        refresh_job_fail(j, "swapped, but the subscription was left disabled: %s", why);
        return PHASE_FAILED;
    }
    return alter_subscription(j, j->c_back, "backup (resuming the subscription)", "ENABLE");
}

int refresh_logical_clean_scrub_enter(job_t *j)
{
    if (j->kind != JOB_LOGICAL || !j->new_created || j->swapped || j->c_new == NULL)
        return PHASE_OK;
    char *q = refresh_sql_drop_subscriptions(NULL);
    if (q == NULL)
        return PHASE_FAILED;
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_new, j->back.password, stmts, 1, SQL_SHORT_MS, NULL,
                     "backup (dropping the scratch subscription)", JOB_SQL_MISSING_OK);
    free(q);
    return rc;
}

int refresh_logical_clean_slot_enter(job_t *j)
{
    if (j->kind != JOB_LOGICAL || !j->sub_created || j->swapped)
        return PHASE_OK;
    return refresh_logical_drop_slot_enter(j);
}

/* ---- runbook helpers ----------------------------------------------------------- */

typedef struct {
    bool on_primary;
    char **stmts;            /* NULL-terminated */
} op_step;

struct helper_op {
    refresh_t *r;
    helper_op *next;
    const char *name;
    refresh_step_cb cb;
    void *arg;
    op_step steps[4];
    int n_steps, cur;
    pgexec_t *sql;
    uint64_t timer;
    rconn prim, back;
    char *c_prim, *c_back;
    char result[256];
};

static void op_free(helper_op *op)
{
    pgexec_free(op->sql);
    loop_cancel_timer(op->r->loop, op->timer);
    for (int i = 0; i < op->n_steps; i++) {
        for (char **p = op->steps[i].stmts; p && *p; p++)
            str_free_secret(*p);
        free(op->steps[i].stmts);
    }
    refresh_rconn_free(&op->prim);
    refresh_rconn_free(&op->back);
    free(op->c_prim);
    free(op->c_back);
    free(op);
}

static void op_unlink(helper_op *op)
{
    for (helper_op **p = &op->r->ops; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            return;
        }
}

void refresh_helper_cancel(refresh_t *r, void *arg)
{
    for (helper_op *op = r->ops; op != NULL; op = op->next)
        if (op->arg == arg)
            op->cb = NULL;
}

void refresh_helpers_free(refresh_t *r)
{
    while (r->ops != NULL) {
        helper_op *op = r->ops;
        r->ops = op->next;
        op_free(op);
    }
}

static void op_finish(helper_op *op, bool ok, const char *error)
{
    refresh_t *r = op->r;
    char masked[512] = "";
    if (!ok) {
        mask_secrets(error ? error : "failed", masked, sizeof masked);
        log_mask(masked, sizeof masked);
        refresh_record_event(r, true, "%s failed: %s", op->name, masked);
    } else {
        refresh_record_event(r, false, "%s%s%s", op->name, op->result[0] ? ": " : "", op->result);
    }
    refresh_step_cb cb = op->cb;
    void *arg = op->arg;
    op_unlink(op);
    op_free(op);
    if (cb != NULL)
        cb(arg, ok, ok ? NULL : masked);
}

static void op_next(helper_op *op);

static void op_on_sql(void *arg, const pgexec_result *res)
{
    helper_op *op = arg;
    pgexec_free(op->sql);
    op->sql = NULL;
    if (!res->ok) {
        char e[600];
        snprintf(e, sizeof e, "%s: %s", op->steps[op->cur].on_primary ? "primary" : "backup", res->error);
        op_finish(op, false, e);
        return;
    }
    if (op->cur == op->n_steps - 1 && res->last_value[0] != '\0' && op->result[0] == '\0')
        snprintf(op->result, sizeof op->result, "%s", res->last_value);
    op->cur++;
    op_next(op);
}

static void op_on_timer(loop_t *loop, void *arg)
{
    helper_op *op = arg;
    op->timer = 0;
    op_next(op);
}

static void op_next(helper_op *op)
{
    if (op->cur >= op->n_steps) {
        op_finish(op, true, NULL);
        return;
    }
    op_step *s = &op->steps[op->cur];
    op->sql = pgexec_start(op->r->loop, s->on_primary ? op->c_prim : op->c_back,
                           s->on_primary ? op->prim.password : op->back.password,
                           (const char *const *)s->stmts, list_len(s->stmts), SQL_SHORT_MS, op_on_sql, op);
    if (op->sql == NULL)
        op_finish(op, false, "out of memory");
}

/* cfg: what the helper connects with (copied now); the caller's run's. */
static helper_op *op_new(refresh_t *r, const config_t *c, const char *name, refresh_step_cb cb, void *arg)
{
    helper_op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return NULL;
    op->r = r;
    op->name = name;
    op->cb = cb;
    op->arg = arg;
    char err[256];
    if (!refresh_rconn_parse_target(&c->primary, &op->prim, err, sizeof err) ||
        !refresh_rconn_parse_target(&c->backup, &op->back, err, sizeof err) ||
        (op->c_prim = refresh_rconn_string(&op->prim, NULL, false, op->prim.password != NULL)) == NULL ||
        (op->c_back = refresh_rconn_string(&op->back, NULL, false, op->back.password != NULL)) == NULL) {
        log_error("refresh: %s: %s", name, err);
        op_free(op);
        return NULL;
    }
    return op;
}

/* Add a step; takes ownership of the strings (NULL entries = OOM). */
static bool op_add(helper_op *op, bool on_primary, char **stmts, size_t n)
{
    /* First, in every session: drd's own work is never stopped by a fence
     * (the backup is read-only for the app after a failback, the primary
     * after a failover), as in sync's and the fence's own sessions. */
    char **list = calloc(n + 2, sizeof *list);
    bool ok = list != NULL && op->n_steps < (int)ARRAY_LEN(op->steps);
    if (list != NULL && (list[0] = strdup("SET default_transaction_read_only = off")) == NULL)
        ok = false;
    for (size_t i = 0; i < n; i++) {
        if (stmts[i] == NULL)
            ok = false;
        if (list != NULL)
            list[i + 1] = stmts[i];
        else
            str_free_secret(stmts[i]);
    }
    if (!ok) {
        if (list != NULL)
            for (size_t i = 0; i <= n; i++)
                str_free_secret(list[i]);
        free(list);
        return false;
    }
    op->steps[op->n_steps].on_primary = on_primary;
    op->steps[op->n_steps].stmts = list;
    op->n_steps++;
    return true;
}

/* Start the op from the loop (never call back from inside the request). */
static bool op_launch(refresh_t *r, helper_op *op)
{
    if (r->job != NULL)
        refresh_job_abort(r->job, "a runbook step needs the backup");
    op->timer = loop_add_timer(r->loop, 0, op_on_timer, op);
    if (op->timer == 0) {
        op_free(op);
        return false;
    }
    op->next = r->ops;
    r->ops = op;
    return true;
}

static bool logical_mode(const config_t *c)
{
    return c->refresh_mode == REFRESH_LOGICAL;
}

bool refresh_subscription_disable(refresh_t *r, const config_t *c, refresh_step_cb cb, void *arg)
{
    if (c == NULL)
        c = r->cfg;
    helper_op *op = op_new(r, c, "disable the subscription", cb, arg);
    if (op == NULL)
        return false;
    if (logical_mode(c)) {
        const char *sub = c->refresh_subscription;
        char *lit = refresh_sql_literal(sub);
        char *q[2] = { NULL, NULL };
        if (lit != NULL) {
            q[0] = refresh_xasprintf(
                "DO $drd$ BEGIN\n"
                "  IF EXISTS (SELECT 1 FROM pg_subscription WHERE subname = %s AND subdbid = " CUR_DB_OID ") THEN\n"
                "    EXECUTE format('ALTER SUBSCRIPTION %%I DISABLE', %s);\n"
                "  END IF;\n"
                "END $drd$", lit, lit);
            /* DISABLE returns before the worker has stopped; it stops at
             * its next look at the catalog, within milliseconds, unless it
             * is in the middle of a transaction from a primary that no
             * longer sends (a frozen host): then it would wait for
             * wal_receiver_timeout. Give it 200 ms, then end it (the
             * disabled subscription keeps the launcher from starting
             * another) and confirm it gone, so that nothing is applied
             * once the step reports done. Its unfinished transaction is
             * rolled back: rows the backup never committed, the
             * replication lag a failover accepts. */
            q[1] = refresh_xasprintf(
                "DO $drd$ DECLARE i int := 0; n int; BEGIN\n"
                "  WHILE i < 20 AND EXISTS (SELECT 1 FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL) LOOP\n"
                "    PERFORM pg_sleep(0.01);\n"
                "    i := i + 1;\n"
                "  END LOOP;\n"
                "  SELECT count(*) INTO n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_subscription\n"
                "                              WHERE subname = %s AND pid IS NOT NULL) t;\n"
                "  IF n > 0 THEN RAISE LOG 'drd: ended %% replication worker(s) of %% after DISABLE', n, %s; END IF;\n"
                "  i := 0;\n"
                "  WHILE i < 300 AND EXISTS (SELECT 1 FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL) LOOP\n"
                "    PERFORM pg_sleep(0.01);\n"
                "    i := i + 1;\n"
                "  END LOOP;\n"
                "  IF EXISTS (SELECT 1 FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL) THEN\n"
                "    RAISE EXCEPTION 'the replication worker of %% still runs after DISABLE and pg_terminate_backend', %s;\n"
                "  END IF;\n"
                "END $drd$", lit, lit, lit, lit, lit, lit);
        }
        free(lit);
        snprintf(op->result, sizeof op->result, "the backup no longer follows the primary");
        if (!op_add(op, false, q, 2)) {
            op_free(op);
            return false;
        }
    } else {
        snprintf(op->result, sizeof op->result, "nothing to do ([refresh] mode is not logical)");
    }
    return op_launch(r, op);
}

bool refresh_subscription_recreate(refresh_t *r, const config_t *c, refresh_step_cb cb, void *arg)
{
    if (c == NULL)
        c = r->cfg;
    helper_op *op = op_new(r, c, "recreate the subscription", cb, arg);
    if (op == NULL)
        return false;
    if (logical_mode(c)) {
        char *drop[1] = { refresh_sql_drop_subscriptions(c->refresh_subscription) };
        char **pub = publish_sql(c->refresh_publication);
        bool ok = op_add(op, false, drop, 1) && pub != NULL;
        if (ok) {
            size_t n = list_len(pub);
            char *stmts[8] = { NULL };
            for (size_t i = 0; i < n && i < 6; i++)
                stmts[i] = pub[i];
            stmts[n] = refresh_sql_drop_slot(c->refresh_subscription);
            free(pub);             /* the strings moved to stmts */
            pub = NULL;
            ok = op_add(op, true, stmts, n + 1);
        }
        free_list(pub);
        if (ok) {
            char *sub[5] = {
                strdup(HEARTBEAT_ON_BACKUP[0]), strdup(HEARTBEAT_ON_BACKUP[1]),
                strdup(HEARTBEAT_ON_BACKUP[2]), strdup(QUIET_LOGGING),
                create_subscription_sql(&op->prim, c->refresh_subscription, c->refresh_publication, false),
            };
            ok = op_add(op, false, sub, 5);
        }
        if (!ok) {
            op_free(op);
            return false;
        }
        snprintf(op->result, sizeof op->result, "replication resumed without a copy (the sides were verified equal)");
    } else {
        snprintf(op->result, sizeof op->result, "nothing to do ([refresh] mode is not logical)");
    }
    return op_launch(r, op);
}

bool refresh_bump_sequences(refresh_t *r, const config_t *c, refresh_step_cb cb, void *arg)
{
    if (c == NULL)
        c = r->cfg;
    helper_op *op = op_new(r, c, "bump sequences on the backup", cb, arg);
    if (op == NULL)
        return false;
    int margin = c->refresh_mode == REFRESH_LOGICAL ? SEQUENCE_MARGIN : SEQUENCE_MARGIN_FAR;
    /* the sequences the app uses: op_new connects in the app's database */
    /* For every sequence owned by a column (serial, identity): at least the
     * largest value in the column and the sequence's own position, plus a
     * margin for the ids the primary handed out that never reached the
     * backup; capped at the sequence's maximum. */
    char *q[1] = { refresh_xasprintf(
        "SELECT count(setval(q.seq, least(greatest(q.last_value, coalesce(q.maxv, 0)) + %d, q.seqmax)::bigint, true))"
        "::text || ' sequences bumped past their largest used value (+%d)'"
        " FROM (SELECT s.oid::regclass AS seq, ps.seqmax::numeric AS seqmax,"
        "   coalesce(pg_sequence_last_value(s.oid::regclass), ps.seqstart)::numeric AS last_value,"
        "   (xpath('/row/m/text()', query_to_xml(format('SELECT max(%%I) AS m FROM %%I.%%I',"
        "      a.attname, n.nspname, c.relname), false, true, '')))[1]::text::numeric AS maxv"
        "  FROM pg_class s JOIN pg_sequence ps ON ps.seqrelid = s.oid"
        "  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid"
        "   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')"
        "  JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid"
        "  WHERE s.relkind = 'S' AND ps.seqincrement > 0) q", margin, margin) };
    if (!op_add(op, false, q, 1)) {
        op_free(op);
        return false;
    }
    return op_launch(r, op);
}
