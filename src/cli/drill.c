/* drill.c - `drctl drill`: the drill orchestrator (see below). */
#include "cli_int.h"

/* ------------------------------------------------------------------ */
/* drill                                                              */

/* A rehearsal against the [drill] environment: a drd of its own (drd -D,
 * approvals granted), the operator's fault and restore commands, rows
 * written on the backup during the outage and looked for on the primary
 * after the failback. The report goes to the main drd (POST /api/drill). */

#define DRILL_TABLE "drd_drill_rows"

typedef struct {
    drctl dx;                    /* talks to the drill's drd */
    config_t *dc;
    char dir[PATH_MAX], log_path[PATH_MAX + 16], schema[128];
    int log_fd;
    pid_t drd_pid;
    bool faulted, restored;
    int64_t t_fault, deadline;   /* wall ms; mono ms */
    int64_t tag;                 /* this drill's id in the rows: its start time */
    json_t *rep;
    char err[1024], phase[32];
} drill_t;

static bool dr_fail(drill_t *d, const char *phase, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool dr_fail(drill_t *d, const char *phase, const char *fmt, ...)
{
    char raw[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    mask_secrets(raw, d->err, sizeof d->err);
    str_copy(d->phase, phase, sizeof d->phase);
    return false;
}

static void dr_say(const drill_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dr_say(const drill_t *d, const char *fmt, ...)
{
    char raw[1024], masked[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    mask_secrets(raw, masked, sizeof masked);
    tty_clean(masked, false, raw, sizeof raw);
    fprintf(stderr, "drill: %s\n", raw);
    (void)d;
}

/* /bin/sh -c cmd, output to the drill log, killed (group) after timeout. */
static bool dr_sh(drill_t *d, const char *what, const char *cmd, int64_t timeout_ms)
{
    pid_t pid = fork();
    if (pid < 0)
        return dr_fail(d, what, "%s: fork: %s", what, strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        if (d->log_fd >= 0) {
            dup2(d->log_fd, STDOUT_FILENO);
            dup2(d->log_fd, STDERR_FILENO);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int64_t end = mono_ms() + timeout_ms;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (mono_ms() > end) {
            kill(-pid, SIGTERM);
            sleep_ms(2000);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            return dr_fail(d, what, "%s: `%s` did not finish within %lld s", what, cmd,
                           (long long)(timeout_ms / 1000));
        }
        sleep_ms(20);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return dr_fail(d, what, "%s: `%s` failed (%s %d; output in %s)", what, cmd,
                       WIFEXITED(status) ? "exit" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), d->log_path);
    return true;
}

/* Blocking libpq (drctl is a command, not the loop); dbname: the database
 * to use instead of the URL's (NULL: the URL's). */
static PGconn *dr_connect(drill_t *d, const char *url, const char *dbname, const char *what)
{
    pgconn_opts o = { .dbname = dbname, .app_name = "drd-drill", .connect_ms = 5000 };
    char err[512];
    PGconn *c = pgconn_connect(url, &o, err, sizeof err);
    if (c == NULL) {
        dr_fail(d, what, "cannot connect to %s: %s", what, err);
        return NULL;
    }
    /* drd's own session: a fence (the backup after a failback) is for the app */
    PQclear(PQexec(c, "SET default_transaction_read_only = off"));
    return c;
}

/* drd's role on side t, in the app's database. */
static PGconn *dr_admin(drill_t *d, const config_target *t, const char *what)
{
    char *db = pgconn_dbname(t->app_url);
    PGconn *c = dr_connect(d, t->url, db, what);
    free(db);
    return c;
}

static bool dr_exec(drill_t *d, PGconn *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        dr_fail(d, what, "%s: %s", what, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* The user name in a libpq URL or conninfo ("" if none). */
static void url_user(const char *url, char *out, size_t n)
{
    char db[256];
    pgconn_identity(url, out, n, db, sizeof db);
}

/* The drill's table on one side: fresh, empty, writable by the app's role. */
static bool dr_table(drill_t *d, const config_target *t, const char *side)
{
    char sql[1024], app_user[128], admin_user[128];
    PGconn *c = dr_admin(d, t, side);
    if (c == NULL)
        return false;
    char *qs = PQescapeIdentifier(c, d->schema, strlen(d->schema));
    /* durable before the fault, whatever the server's synchronous_commit */
    snprintf(sql, sizeof sql,
             "SET synchronous_commit = on;"
             "DROP TABLE IF EXISTS %s." DRILL_TABLE ";"
             "CREATE TABLE %s." DRILL_TABLE " (id bigint PRIMARY KEY, drill bigint NOT NULL,"
             " n int NOT NULL, at timestamptz NOT NULL DEFAULT now())", qs, qs);
    bool ok = dr_exec(d, c, sql, "prepare");
    url_user(t->app_url, app_user, sizeof app_user);
    url_user(t->url, admin_user, sizeof admin_user);
    if (ok && app_user[0] && strcmp(app_user, admin_user) != 0) {
        char *qu = PQescapeIdentifier(c, app_user, strlen(app_user));
        snprintf(sql, sizeof sql, "GRANT USAGE ON SCHEMA %s TO %s;"
                 "GRANT SELECT, INSERT ON %s." DRILL_TABLE " TO %s", qs, qu, qs, qu);
        ok = dr_exec(d, c, sql, "prepare");
        PQfreemem(qu);
    }
    PQfreemem(qs);
    PQfinish(c);
    return ok;
}

static void dr_drop_tables(drill_t *d)
{
    const config_target *t[] = { &d->dc->primary, &d->dc->backup };
    for (size_t i = 0; i < 2; i++) {
        PGconn *c = dr_admin(d, t[i], i == 0 ? "primary" : "backup");
        if (c == NULL)
            continue;
        char sql[512], *qs = PQescapeIdentifier(c, d->schema, strlen(d->schema));
        snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s." DRILL_TABLE, qs);
        dr_exec(d, c, sql, "cleanup");
        PQfreemem(qs);
        PQfinish(c);
    }
    d->err[0] = '\0';
}

static bool dr_child_alive(drill_t *d)
{
    int st;
    if (d->drd_pid <= 0)
        return false;
    if (waitpid(d->drd_pid, &st, WNOHANG) == d->drd_pid) {
        d->drd_pid = 0;
        return false;
    }
    return true;
}

static bool dr_start_drd(drill_t *d, const char *config_path)
{
    char exe[PATH_MAX], drd_path[PATH_MAX + 8] = "drd";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(drd_path, sizeof drd_path, "%s/drd", exe);
            if (access(drd_path, X_OK) != 0)
                str_copy(drd_path, "drd", sizeof drd_path);
        }
    }
    pid_t pid = fork();
    if (pid < 0)
        return dr_fail(d, "start", "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        dup2(d->log_fd, STDOUT_FILENO);
        dup2(d->log_fd, STDERR_FILENO);
        execlp(drd_path, "drd", "-f", "-D", "-c", config_path, (char *)NULL);
        _exit(127);
    }
    d->drd_pid = pid;
    return true;
}

static void dr_stop_drd(drill_t *d)
{
    if (!dr_child_alive(d))
        return;
    kill(d->drd_pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (!dr_child_alive(d))
            return;
        sleep_ms(50);
    }
    kill(-d->drd_pid, SIGKILL);
    waitpid(d->drd_pid, NULL, 0);
    d->drd_pid = 0;
}

/* The drill drd's status, quietly (NULL while it does not answer). */
static json_t *dr_status(drill_t *d)
{
    json_t *doc = NULL;
    bool unreachable = false;
    if (get_json(&d->dx, "/api/status", &doc, &unreachable) >= 0)
        return NULL;
    return doc;
}

static const char *breaker_of(json_t *st, const char *t)
{
    return str_or(json_object_get(json_object_get(json_object_get(st, "targets"), t), "breaker"), "");
}

static bool healthy_of(json_t *st, const char *t)
{
    return json_is_true(json_object_get(json_object_get(json_object_get(st, "targets"), t), "healthy"));
}

static bool dr_time_left(drill_t *d, const char *phase, const char *what)
{
    if (mono_ms() < d->deadline && (d->drd_pid == 0 || dr_child_alive(d)))
        return true;
    if (d->drd_pid == 0)
        return dr_fail(d, phase, "the drill's drd exited (see %s)", d->log_path);
    return dr_fail(d, phase, "%s: not within [drill] timeout", what);
}

/* The newest run of kind created at or after since (wall ms): its id, 0 if none. */
static int64_t dr_find_run(drill_t *d, const char *kind, int64_t since)
{
    json_t *doc = NULL, *r;
    size_t i;
    int64_t id = 0;
    if (get_json(&d->dx, "/api/runs?limit=5", &doc, NULL) >= 0)
        return 0;
    json_array_foreach(json_object_get(doc, "runs"), i, r) {
        if (strcmp(str_or(json_object_get(r, "kind"), ""), kind) == 0 &&
            json_integer_value(json_object_get(r, "created_at")) >= since - 1000) {
            id = json_integer_value(json_object_get(r, "id"));
            break;
        }
    }
    json_decref(doc);
    return id;
}

/* Wait for run id to end; an approval that needs a human fails the drill
 * (approve steps are granted by the drill's drd). Returns the run (new
 * reference) whatever its end, NULL on timeout. */
static json_t *dr_wait_run(drill_t *d, int64_t id, const char *phase)
{
    char path[64];
    snprintf(path, sizeof path, "/api/runs/%lld", (long long)id);
    while (dr_time_left(d, phase, "the run did not end")) {
        json_t *run = NULL;
        if (get_json(&d->dx, path, &run, NULL) >= 0) {
            sleep_ms(200);
            continue;
        }
        run_state state = run_state_of(json_string_value(json_object_get(run, "state")));
        if (state != RUN_RUNNING && state != RUN_WAITING)
            return run;
        if (state == RUN_WAITING) {
            json_t *a;
            size_t i;
            json_array_foreach(json_object_get(run, "approvals"), i, a) {
                if (approval_state_of(json_string_value(json_object_get(a, "state"))) == APPROVAL_PENDING &&
                    approval_kind_of(json_string_value(json_object_get(a, "kind"))) != APPROVAL_STEP)
                    return run;      /* needs a human: the drill stops here */
            }
        }
        json_decref(run);
        sleep_ms(100);
    }
    return NULL;
}

/* Steps of a run into the report; *last_healthy: when its last
 * wait-healthy step ended; *sync_ms: its sync-back step's duration. */
static void dr_steps(drill_t *d, json_t *run, const char *kind, int64_t *last_healthy, int64_t *sync_ms)
{
    json_t *steps = json_object_get(d->rep, "steps"), *st;
    size_t i;
    json_array_foreach(json_object_get(run, "steps"), i, st) {
        const char *action = str_or(json_object_get(st, "action"), "");
        json_t *dur = json_object_get(st, "duration_ms");
        json_array_append_new(steps, json_pack("{s:s, s:s, s:s, s:s, s:O}", "run", kind,
                              "name", str_or(json_object_get(st, "name"), "?"), "action", action,
                              "state", str_or(json_object_get(st, "state"), "?"),
                              "ms", json_is_integer(dur) ? dur : json_null()));
        if (last_healthy != NULL && strcmp(action, "wait-healthy") == 0 &&
            step_state_of(json_string_value(json_object_get(st, "state"))) == STEP_DONE)
            *last_healthy = json_integer_value(json_object_get(st, "finished_at"));
        if (sync_ms != NULL && strcmp(action, "sync-back") == 0 && json_is_integer(dur))
            *sync_ms = json_integer_value(dur);
    }
}

/* Why a run did not succeed, from its error, failed step or approval. */
static void dr_run_failure(drill_t *d, json_t *run, const char *phase)
{
    const char *state = str_or(json_object_get(run, "state"), "?");
    json_t *st;
    size_t i;
    const char *why = str_or(json_object_get(run, "error"), "");
    char step[64] = "";
    json_array_foreach(json_object_get(run, "steps"), i, st) {
        step_state s = step_state_of(json_string_value(json_object_get(st, "state")));
        if (s == STEP_FAILED || s == STEP_NEEDS_ATTENTION) {
            str_copy(step, str_or(json_object_get(st, "name"), "?"), sizeof step);
            if (*str_or(json_object_get(st, "detail"), "") != '\0')
                why = str_or(json_object_get(st, "detail"), "");
        }
    }
    dr_fail(d, phase, "%s run %lld %s%s%s%s%s", phase, (long long)json_integer_value(json_object_get(run, "id")),
            run_state_of(state) == RUN_WAITING ? "stopped for a human decision" : state,
            step[0] ? " at step " : "", step, why[0] ? ": " : "", why);
}

static bool dr_wait_breaker(drill_t *d, const char *target, const char *want, const char *phase,
                            int64_t *at)
{
    while (dr_time_left(d, phase, "the breaker did not change")) {
        json_t *st = dr_status(d);
        bool hit = st != NULL && strcmp(breaker_of(st, target), want) == 0;
        json_decref(st);
        if (hit) {
            if (at != NULL)
                *at = wall_ms();
            return true;
        }
        sleep_ms(50);
    }
    return false;
}

static bool dr_write_rows(drill_t *d)
{
    char url[4096], err[512], sql[512];
    if (!envfile_get(d->dc->app_env_file, d->dc->app_env_key, url, sizeof url, err, sizeof err))
        return dr_fail(d, "write", "cannot read %s from %s: %s", d->dc->app_env_key,
                       d->dc->app_env_file, err[0] ? err : "absent");
    if (strcmp(url, d->dc->backup.app_url) != 0)
        return dr_fail(d, "write", "after the failover %s in %s is not the backup's app_url",
                       d->dc->app_env_key, d->dc->app_env_file);
    PGconn *c = dr_connect(d, url, NULL, "the backup (as the app)");
    if (c == NULL)
        return false;
    char *qs = PQescapeIdentifier(c, d->schema, strlen(d->schema));
    int64_t written = 0;
    for (int64_t i = 1; i <= d->dc->drill_rows; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO %s." DRILL_TABLE " (id, drill, n) VALUES (%lld, %lld, %lld)",
                 qs, (long long)i, (long long)d->tag, (long long)i);
        if (!dr_exec(d, c, sql, "write"))
            break;
        written++;
    }
    PQfreemem(qs);
    PQfinish(c);
    json_object_set_new(d->rep, "rows_written", json_integer(written));
    return written == d->dc->drill_rows;
}

static bool dr_count_rows(drill_t *d)
{
    char sql[512];
    PGconn *c = dr_admin(d, &d->dc->primary, "primary");
    if (c == NULL)
        return false;
    char *qs = PQescapeIdentifier(c, d->schema, strlen(d->schema));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s." DRILL_TABLE " WHERE drill = %lld", qs,
             (long long)d->tag);
    PQfreemem(qs);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok)
        json_object_set_new(d->rep, "rows_found", json_integer(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
    else
        dr_fail(d, "count", "counting the rows on the primary: %s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    return ok;
}

/* 1. preflight: the same checks as drctl --drill check */
static bool dr_preflight(drill_t *d)
{
    json_t *checks = check_run(d->dc, NULL, mono_ms() + 2000);
    size_t i;
    json_t *c;
    json_array_foreach(checks, i, c) {
        if (strcmp(str_or(json_object_get(c, "status"), ""), "fail") == 0) {
            dr_fail(d, "preflight", "check %s fails: %s", str_or(json_object_get(c, "name"), "?"),
                    str_or(json_object_get(c, "reason"), ""));
            json_decref(checks);
            return false;
        }
    }
    json_decref(checks);
    return true;
}

/* 2. the drill's table, then its drd, healthy, on the primary */
static bool dr_prepare(drill_t *d, const char *config_path)
{
    json_t *st = NULL;

    dr_say(d, "preparing %s.%s on both sides", d->schema, DRILL_TABLE);
    if (!dr_table(d, &d->dc->primary, "primary") || !dr_table(d, &d->dc->backup, "backup"))
        return false;
    dr_say(d, "starting the drill's drd (log %s)", d->log_path);
    if (!dr_start_drd(d, config_path))
        return false;
    for (;;) {
        if (!dr_time_left(d, "start", "the drill's drd did not become healthy"))
            return false;
        st = dr_status(d);
        if (st != NULL && healthy_of(st, "primary") && healthy_of(st, "backup"))
            break;
        json_decref(st);
        st = NULL;
        sleep_ms(100);
    }
    const char *active = str_or(json_object_get(st, "active"), "?");
    bool busy = json_is_object(json_object_get(st, "run"));
    target_id side;
    if (!target_parse(active, &side) || side != TARGET_PRIMARY || busy) {
        dr_fail(d, "start", "the drill environment is %s (active %s): finish it first "
                "(drctl --drill status, drctl --drill failback)", busy ? "running a runbook" : "not on its primary",
                active);
        json_decref(st);
        return false;
    }
    json_decref(st);
    return true;
}

/* 3. the fault, detected, the failover run */
static bool dr_failover(drill_t *d)
{
    json_t *run = NULL;
    int64_t id, t_open = 0, last_healthy = 0;

    dr_say(d, "fault: %s", d->dc->drill_fault);
    d->t_fault = wall_ms();
    d->faulted = true;
    if (!dr_sh(d, "fault", d->dc->drill_fault, 120000))
        return false;
    if (!dr_wait_breaker(d, "primary", "open", "detect", &t_open))
        return false;
    json_object_set_new(d->rep, "detection_ms", json_integer(t_open - d->t_fault));
    dr_say(d, "detected after %lld ms", (long long)(t_open - d->t_fault));
    int64_t asked = 0;
    while ((id = dr_find_run(d, "failover", d->t_fault)) == 0) {
        if (!dr_time_left(d, "failover", "no failover run started"))
            return false;
        if (asked == 0 && d->dc->failover_policy == FAILOVER_MANUAL) {
            int64_t req;
            if (post_action(&d->dx, "/api/failover", "failover (policy manual)", &req) != EXIT_OK)
                return dr_fail(d, "failover", "the failover could not be requested");
            asked = req;
        }
        sleep_ms(100);
    }
    json_object_set_new(d->rep, "failover_run", json_integer(id));
    if ((run = dr_wait_run(d, id, "failover")) == NULL)
        return false;
    dr_steps(d, run, "failover", &last_healthy, NULL);
    if (run_state_of(json_string_value(json_object_get(run, "state"))) != RUN_SUCCEEDED) {
        dr_run_failure(d, run, "failover");
        json_decref(run);
        return false;
    }
    int64_t healthy_at = last_healthy > 0 ? last_healthy : json_integer_value(json_object_get(run, "finished_at"));
    json_decref(run);
    json_object_set_new(d->rep, "rto_ms", json_integer(healthy_at - d->t_fault));
    dr_say(d, "failover done: the app is healthy on the backup %lld ms after the fault",
           (long long)(healthy_at - d->t_fault));
    return true;
}

/* 5. the primary back, the failback */
static bool dr_failback(drill_t *d)
{
    json_t *run = NULL;
    int64_t id, sync_ms = -1;

    dr_say(d, "restore: %s", d->dc->drill_restore);
    if (!dr_sh(d, "restore", d->dc->drill_restore, 300000))
        return false;
    d->restored = true;
    if (!dr_wait_breaker(d, "primary", "closed", "restore", NULL))
        return false;
    int64_t req = 0, t_back = wall_ms();
    if (post_action(&d->dx, "/api/failback", "failback", &req) != EXIT_OK || req == 0)
        return dr_fail(d, "failback", "the failback could not be requested");
    if (await_request(&d->dx, req, &id) >= 0 || id == 0)
        return dr_fail(d, "failback", "the failback was refused");
    (void)t_back;
    json_object_set_new(d->rep, "failback_run", json_integer(id));
    if ((run = dr_wait_run(d, id, "failback")) == NULL)
        return false;
    dr_steps(d, run, "failback", NULL, &sync_ms);
    if (sync_ms >= 0)
        json_object_set_new(d->rep, "sync_ms", json_integer(sync_ms));
    if (run_state_of(json_string_value(json_object_get(run, "state"))) != RUN_SUCCEEDED) {
        dr_run_failure(d, run, "failback");
        json_decref(run);
        return false;
    }
    json_decref(run);
    return true;
}

/* The drill, phase by phase; each phase reports its own failure. */
static bool dr_run(drill_t *d, const char *config_path)
{
    if (!dr_preflight(d) || !dr_prepare(d, config_path) || !dr_failover(d))
        return false;
    /* 4. the outage's writes, through the app's URL */
    if (!dr_write_rows(d))
        return false;
    dr_say(d, "wrote %lld rows on the backup", (long long)d->dc->drill_rows);
    if (!dr_failback(d))
        return false;

    /* 6. every outage write on the primary? */
    if (!dr_count_rows(d))
        return false;
    int64_t found = json_integer_value(json_object_get(d->rep, "rows_found"));
    if (found != d->dc->drill_rows)
        return dr_fail(d, "verify", "%lld of the %lld rows written during the outage are on the primary",
                       (long long)found, (long long)d->dc->drill_rows);
    return true;
}

static void dr_print(json_t *rep)
{
    char a[32], b[32];
    human(rep);                         /* printed last: already posted */
    const char *res = str_or(json_object_get(rep, "result"), "?");
    format_time(json_object_get(rep, "started_at"), a, sizeof a);
    printf("drill %s: %s\n", a, res);
    static const struct { const char *key, *label, *what; } figs[] = {
        { "detection_ms", "detection", "fault -> primary breaker open" },
        { "rto_ms", "RTO", "fault -> app healthy on the backup" },
        { "sync_ms", "sync-back", "the failback's sync-back step" },
    };
    for (size_t i = 0; i < ARRAY_LEN(figs); i++) {
        json_t *v = json_object_get(rep, figs[i].key);
        if (!json_is_integer(v))
            continue;
        format_duration(json_integer_value(v), b, sizeof b);
        printf("  %-10s %8s   (%s)\n", figs[i].label, b, figs[i].what);
    }
    if (json_is_integer(json_object_get(rep, "rows_written")))
        printf("  %-10s %8" JSON_INTEGER_FORMAT "   written on the backup during the outage, %s found on the primary\n",
               "rows", json_integer_value(json_object_get(rep, "rows_written")),
               json_is_integer(json_object_get(rep, "rows_found"))
                   ? (json_integer_value(json_object_get(rep, "rows_found")) ==
                              json_integer_value(json_object_get(rep, "rows_written")) ? "all" : "NOT all")
                   : "not yet");
    json_t *st;
    size_t i;
    const char *prev = "";
    json_array_foreach(json_object_get(rep, "steps"), i, st) {
        const char *run = str_or(json_object_get(st, "run"), "");
        if (strcmp(run, prev) != 0)
            printf("  %s run:\n", run);
        prev = run;
        b[0] = '\0';
        if (json_is_integer(json_object_get(st, "ms")))
            format_duration(json_integer_value(json_object_get(st, "ms")), b, sizeof b);
        printf("    %-18s %-12s %-15s %8s\n", str_or(json_object_get(st, "name"), "?"),
               str_or(json_object_get(st, "action"), "?"), str_or(json_object_get(st, "state"), "?"), b);
    }
    if (json_is_string(json_object_get(rep, "error")))
        printf("  failed at %s: %s\n", str_or(json_object_get(rep, "phase"), "?"),
               str_or(json_object_get(rep, "error"), ""));
}

/* Both configs (the real one and the drill's), the token, libcurl. -1 to
 * go on, or an exit code (d->dc freed). */
static int dr_load(drctl *x, drill_t *d)
{
    config_errors errs = { 0 };
    int ex;

    x->cfg = config_load(x->config_path, &errs);
    if (x->cfg != NULL) {
        config_errors_free(&errs);
        d->dc = config_load_drill(x->config_path, &errs);
    }
    if (x->cfg == NULL || d->dc == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "drctl: %s\n", errs.msgs[i]);
        config_errors_free(&errs);
        config_free(d->dc);
        return EXIT_BAD_CONFIG;
    }
    config_errors_free(&errs);
    if (d->dc->drill_fault == NULL || d->dc->drill_restore == NULL) {
        fprintf(stderr, "drctl: %s: [drill] needs fault and restore commands (how to make the drill's "
                        "primary unreachable, and how to bring it back)\n", x->config_path);
        config_free(d->dc);
        return EXIT_BAD_CONFIG;
    }
    x->socket_path = x->cfg->http_socket;
    x->state_db = x->cfg->state_db;
    if ((ex = load_token(x)) >= 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        config_free(d->dc);
        return ex >= 0 ? ex : EXIT_FAILURE_;
    }
    return -1;
}

/* The drill's directory and log, the schema of its table. */
static bool dr_open_dir(const drctl *x, drill_t *d)
{
    char *dir = config_drill_dir(x->cfg), err[512] = "", probe[PATH_MAX + 8];
    const char *schemas = d->dc->sync_schemas ? d->dc->sync_schemas : "public";
    size_t sl = strcspn(schemas, ",");

    str_copy(d->dir, dir ? dir : "drill", sizeof d->dir);
    free(dir);
    snprintf(d->log_path, sizeof d->log_path, "%s/drill.log", d->dir);
    snprintf(probe, sizeof probe, "%s/x", d->dir);
    if (!mkdir_parents(probe, 0700, err, sizeof err) ||
        (d->log_fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
        fprintf(stderr, "drctl: drill directory %s: %s\n", d->dir, err[0] ? err : strerror(errno));
        return false;
    }
    snprintf(d->schema, sizeof d->schema, "%.*s", (int)sl, schemas);
    str_copy(d->schema, str_trim(d->schema), sizeof d->schema);
    return true;
}

/* After the phases: the primary restored if the drill left it faulted,
 * its table dropped (when it went well), its drd stopped, the report
 * closed. */
static void dr_finish(drill_t *d, bool ok)
{
    char saved_err[1024], saved_phase[32];

    str_copy(saved_err, d->err, sizeof saved_err);
    str_copy(saved_phase, d->phase, sizeof saved_phase);
    if (d->faulted && !d->restored) {
        dr_say(d, "bringing the primary back: %s", d->dc->drill_restore);
        dr_sh(d, "restore", d->dc->drill_restore, 300000);
    }
    if (ok)
        dr_drop_tables(d);
    dr_stop_drd(d);
    json_object_set_new(d->rep, "ended_at", json_integer(wall_ms()));
    json_object_set_new(d->rep, "result", json_string(ok ? "succeeded" : "failed"));
    if (!ok) {
        json_object_set_new(d->rep, "error", json_string(saved_err));
        json_object_set_new(d->rep, "phase", json_string(saved_phase));
    }
}

/* The report recorded with the real drd, and printed. */
static void dr_record(const drctl *x, drill_t *d, bool ok)
{
    char *body = json_dumps(d->rep, JSON_COMPACT), err[512];
    buffer reply = { 0 };
    long code = 0;
    call_rc rc = body ? http_call(x, "POST", "/api/drill", body, &code, &reply, err, sizeof err)
                      : CALL_UNREACHABLE;

    free(body);
    free(reply.s);
    json_object_set_new(d->rep, "recorded", json_boolean(rc == CALL_OK && code == 202));
    if (x->json)
        print_json(d->rep);
    else
        dr_print(d->rep);
    if (rc != CALL_OK || code != 202)
        fprintf(stderr, "drctl: the drill report was not recorded (drd %s)\n",
                rc != CALL_OK ? "is not running" : "refused it");
    if (!ok)
        fprintf(stderr, "drctl: the drill environment may need attention: drctl -c %s --drill check;\n"
                        "drctl: its drd (stopped; log %s) keeps the run: start it with drd -D -c %s\n"
                        "drctl: to see or finish the run: drctl -c %s --drill status | approve ID | reject ID\n",
                x->config_path, d->log_path, x->config_path, x->config_path);
}

int cmd_drill(drctl *x)
{
    drill_t d;
    char pm[512], bm[512];
    int ex;

    memset(&d, 0, sizeof d);
    d.log_fd = -1;
    if ((ex = dr_load(x, &d)) >= 0)
        return ex;
    d.dx = *x;
    d.dx.url = NULL;
    d.dx.token = NULL;
    d.dx.socket_path = d.dc->http_socket;
    if (!dr_open_dir(x, &d)) {
        config_free(d.dc);
        curl_global_cleanup();
        return EXIT_FAILURE_;
    }
    d.tag = wall_ms();
    d.deadline = mono_ms() + d.dc->drill_timeout_ms;
    d.rep = json_pack("{s:I, s:[]}", "started_at", (json_int_t)d.tag, "steps");
    mask_secrets(d.dc->primary.url, pm, sizeof pm);
    mask_secrets(d.dc->backup.url, bm, sizeof bm);
    json_object_set_new(d.rep, "environment", json_pack("{s:s, s:s}", "primary", pm, "backup", bm));

    bool ok = dr_run(&d, x->config_path);
    dr_finish(&d, ok);
    dr_record(x, &d, ok);
    ex = ok ? EXIT_OK : EXIT_FAILURE_;
    json_decref(d.rep);
    close(d.log_fd);
    config_free(d.dc);
    curl_global_cleanup();
    return ex;
}
