/* steps.c - the work behind each runbook action. See steps.h. */
#include "drd/engine/steps.h"
#include "drd/conf/envfile.h"
#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/pg/pgexec.h"
#include "drd/pg/quote.h"
#include "drd/core/proc.h"
#include "drd/sync/sync.h"
#include "drd/core/util.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEALTH_POLL_MS 250

struct step_run {
    step_env env;                /* env.cfg: a reference of our own, for our whole life */
    runbook_step step;           /* our own copy */
    step_done_cb cb;
    void *arg;
    uint64_t timer;              /* deferred completion, polling, deadline */
    int64_t deadline;            /* monotonic */
    proc_t *proc;
    pgexec_t *pg;
    uint64_t fetch_id;
    sync_job *sync;
    char last_problem[256];      /* wait-healthy: why the last check failed */
    step_outcome out;            /* for deferred completions */
    char *output;                /* masked exec output */
};

static char *xstrdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static void copy_step(runbook_step *dst, const runbook_step *src)
{
    *dst = *src;
    dst->command = xstrdup(src->command);
    dst->target = xstrdup(src->target);
    dst->prompt = xstrdup(src->prompt);
    dst->message = xstrdup(src->message);
    dst->mode = xstrdup(src->mode);
    dst->description = xstrdup(src->description);
    dst->op = xstrdup(src->op);
}

static void run_free(step_run *r)
{
    if (r == NULL)
        return;
    if (r->timer)
        loop_cancel_timer(r->env.loop, r->timer);
    proc_free(r->proc);
    pgexec_free(r->pg);
    sync_job_free(r->sync);
    if (r->step.action == ACT_REFRESH && r->env.refresh != NULL)
        refresh_helper_cancel(r->env.refresh, r);   /* its callback must not come after this */
    if (r->fetch_id && r->env.fetch)
        fetch_cancel(r->env.fetch, r->fetch_id);
    runbook_step_clear(&r->step);
    free(r->output);
    config_free(r->env.cfg);
    free(r);
}

void step_cancel(step_run *r)
{
    run_free(r);
}

void step_outcome_persist(store_t *st, const step_outcome *o)
{
    char pending[16] = "";
    const char *target = target_name(o->fence_target);
    if (st == NULL)
        return;
    if (o->resolution_spent)
        store_sync_resolution_set(st, "");
    switch (o->fence) {
    case FENCE_LEFT_ALONE:
        break;
    case FENCE_PENDING:                /* not fenced yet: the status says pending */
        store_fence_pending_set(st, target);
        break;
    case FENCE_APPLIED:
    case FENCE_LIFTED:
        /* a fence still pending elsewhere (the primary's) stays pending */
        if (store_fence_pending_get(st, pending, sizeof pending) && strcmp(pending, target) == 0)
            store_fence_pending_set(st, "");
        store_fenced_set(st, o->fence == FENCE_LIFTED ? "" : target);
        break;
    }
}

/* Report and free. */
static void finish(step_run *r)
{
    step_done_cb cb = r->cb;
    void *arg = r->arg;
    step_outcome o = r->out;
    o.output = r->output;
    r->timer = 0;            /* already fired or about to be cancelled by run_free */
    cb(arg, &o);
    run_free(r);
}

static void on_finish_timer(loop_t *loop, void *arg)
{
    step_run *r = arg;
    r->timer = 0;
    finish(r);
}

/* Complete from the loop, never synchronously. */
static void finish_later(step_run *r)
{
    if (r->timer)
        loop_cancel_timer(r->env.loop, r->timer);
    r->timer = loop_add_timer(r->env.loop, 0, on_finish_timer, r);
}

/* A fence step's effect, for step_outcome_persist (fence = none and a
 * step without a target leave it alone). */
static void fence_outcome(step_run *r, int effect)
{
    if (r->step.target == NULL || r->step.fence == FENCE_NONE)
        return;
    r->out.fence = effect;
    r->out.fence_target = target_or_primary(r->step.target);
}

static void fail(step_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(step_run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mask_vformat(r->out.error, sizeof r->out.error, "\xE2\x80\xA6", fmt, ap);
    va_end(ap);
    r->out.ok = false;
}

static const config_target *target_of(const config_t *c, const char *name)
{
    return target_or_primary(name) == TARGET_BACKUP ? &c->backup : &c->primary;
}

/* ---------------------------------------------------------------- exec */

/* What is kept of a step's output: masked first, then its last
 * STEP_OUTPUT_KEEP bytes (cut on a UTF-8 boundary, from a line start when
 * one is near) after a marker line saying the head was cut. head_cut: the
 * text is already the tail of a longer output (its first, partial line is
 * dropped: it may hold the end of a secret that can no longer be parsed).
 * malloc'd; NULL on OOM. */
#define STEP_OUTPUT_KEEP (64 * 1024)
#define STEP_OUTPUT_MARK "[drd: the start of this output was cut; its last 64 KiB follow]\n"
static char *output_kept(const char *text, size_t len, bool head_cut)
{
    if (text == NULL)
        text = "";
    if (head_cut) {
        const char *nl = memchr(text, '\n', len);
        if (nl != NULL) {
            len -= (size_t)(nl + 1 - text);
            text = nl + 1;
        }
    }
    char *plain = strndup(text, len);
    char *masked = plain != NULL ? mask_dup(plain) : NULL;
    free(plain);
    if (masked == NULL)
        return NULL;
    size_t mlen = strlen(masked);
    if (!head_cut && mlen <= STEP_OUTPUT_KEEP)
        return masked;
    size_t room = STEP_OUTPUT_KEEP - strlen(STEP_OUTPUT_MARK);
    size_t from = utf8_tail(masked, mlen, room);
    const char *nl = mlen > room ? memchr(masked + from, '\n', mlen - from < 4096 ? mlen - from : 4096) : NULL;
    if (nl != NULL && (size_t)(nl + 1 - masked) < mlen)
        from = (size_t)(nl + 1 - masked);
    size_t keep = mlen - from;
    char *out = malloc(strlen(STEP_OUTPUT_MARK) + keep + 1);
    if (out != NULL) {
        memcpy(out, STEP_OUTPUT_MARK, strlen(STEP_OUTPUT_MARK));
        memcpy(out + strlen(STEP_OUTPUT_MARK), masked + from, keep + 1);
    }
    free(masked);
    return out;
}

static void on_proc_done(void *arg, const proc_result *pr)
{
    step_run *r = arg;
    r->output = output_kept(pr->output, pr->output ? pr->output_len : 0, pr->output_truncated);
    r->out.exit_code = pr->exit_code;
    if (pr->timed_out)
        fail(r, "timed out after %lldms (process group killed)", (long long)r->step.timeout_ms);
    else if (pr->exit_code == -1)
        fail(r, "killed by signal %d", pr->term_signal);
    else if (pr->exit_code != 0)
        fail(r, "exited with status %d", pr->exit_code);
    else
        r->out.ok = true;
    proc_free(r->proc);
    r->proc = NULL;
    finish(r);
}

static void begin_exec(step_run *r)
{
    char run_id[32], kind[48], step[96], key[128], envf[4200], err[256];
    snprintf(run_id, sizeof run_id, "DRD_RUN_ID=%lld", (long long)r->env.run_id);
    snprintf(kind, sizeof kind, "DRD_RUN_KIND=%s", r->env.run_kind ? r->env.run_kind : "");
    snprintf(step, sizeof step, "DRD_STEP=%s", r->step.name);
    snprintf(key, sizeof key, "DRD_ENV_KEY=%s", r->env.cfg->app_env_key ? r->env.cfg->app_env_key : "");
    snprintf(envf, sizeof envf, "DRD_ENV_FILE=%s", r->env.cfg->app_env_file ? r->env.cfg->app_env_file : "");
    char *const envv[] = { run_id, kind, step, key, envf, NULL };
    proc_spec spec = {
        .command = r->step.command,
        .env = envv,
        .timeout_ms = r->step.timeout_ms,
        .cwd = r->env.cfg->dir,
        .user = r->env.cfg->app_user,
    };
    r->proc = proc_spawn(r->env.loop, &spec, on_proc_done, r, err, sizeof err);
    if (r->proc == NULL) {
        fail(r, "cannot start command: %s", err);
        finish_later(r);
    }
}

/* ---------------------------------------------------------- switch-env */

static void begin_switch_env(step_run *r)
{
    const config_t *c = r->env.cfg;
    char err[512];
    bool changed = false;

    if (c->app_env_file == NULL || c->app_env_key == NULL) {
        fail(r, "[app] env_file is not set");
    } else {
        const char *url = target_of(c, r->step.target)->app_url;
        if (envfile_set(c->app_env_file, c->app_env_key, url, &changed, err, sizeof err)) {
            r->out.ok = true;
            char shown[256];
            mask_secrets(url, shown, sizeof shown);
            snprintf(r->out.note, sizeof r->out.note, "%s %s=%s in %s", changed ? "set" : "already", 
                     c->app_env_key, shown, c->app_env_file);
            log_info("switch-env: %s", r->out.note);
        } else {
            fail(r, "%s", err);
        }
    }
    finish_later(r);
}

/* -------------------------------------------------------- wait-healthy */

static void health_poll(loop_t *loop, void *arg);

static void schedule_poll(step_run *r)
{
    int64_t now = loop_now(r->env.loop);
    if (now >= r->deadline) {
        fail(r, "%s not healthy after %lldms%s%s", r->step.target, (long long)r->step.timeout_ms,
             r->last_problem[0] ? ": " : "", r->last_problem);
        finish_later(r);
        return;
    }
    int64_t d = HEALTH_POLL_MS;
    if (now + d > r->deadline)
        d = r->deadline - now;
    r->timer = loop_add_timer(r->env.loop, d, health_poll, r);
}

static void on_health_fetch(void *arg, const fetch_result *fr)
{
    step_run *r = arg;
    r->fetch_id = 0;
    if (fr->status >= 200 && fr->status < 300) {
        r->out.ok = true;
        snprintf(r->out.note, sizeof r->out.note, "app healthy (HTTP %ld in %lldms)", fr->status,
                 (long long)fr->duration_ms);
        finish_later(r);
        return;
    }
    if (fr->status != 0)
        snprintf(r->last_problem, sizeof r->last_problem, "HTTP %ld", fr->status);
    else
        mask_secrets(fr->error, r->last_problem, sizeof r->last_problem);
    schedule_poll(r);
}

static void health_poll(loop_t *loop, void *arg)
{
    step_run *r = arg;
    r->timer = 0;
    if (strcmp(r->step.target, "app") == 0) {
        char err[256];
        int64_t left = r->deadline - loop_now(loop);
        r->fetch_id = fetch_start(r->env.fetch, "GET", r->env.cfg->app_health_url, NULL, NULL,
                                  left < 2000 ? (left > 100 ? left : 100) : 2000,
                                  on_health_fetch, r, err, sizeof err);
        if (r->fetch_id == 0) {
            fail(r, "health check: %s", err);
            finish_later(r);
        }
        return;
    }
    target_id t = target_or_primary(r->step.target);
    const store_target *st = monitor_target(r->env.monitor, t);
    if (st->healthy && st->reachable) {
        r->out.ok = true;
        snprintf(r->out.note, sizeof r->out.note, "%s healthy (latency %lldms)", r->step.target,
                 (long long)st->latency_ms);
        finish_later(r);
        return;
    }
    snprintf(r->last_problem, sizeof r->last_problem, "breaker %s%s%s",
             breaker_state_name(monitor_breaker(r->env.monitor, t)),
             st->last_error[0] ? ", last error: " : "", st->last_error);
    schedule_poll(r);
}

static void begin_wait_healthy(step_run *r)
{
    if (strcmp(r->step.target, "app") == 0 &&
        (r->env.cfg->app_health_url == NULL || r->env.cfg->app_health_url[0] == '\0')) {
        r->out.ok = true;
        str_copy(r->out.note, "no [app] health_url configured: nothing to check", sizeof r->out.note);
        finish_later(r);
        return;
    }
    r->deadline = loop_now(r->env.loop) + r->step.timeout_ms;
    r->timer = loop_add_timer(r->env.loop, 0, health_poll, r);
}

/* --------------------------------------------------------------- fence */

/* The role and database the app uses on a target, from its app_url. */
static bool app_identity(const config_target *t, char *user, size_t un, char *db, size_t dn)
{
    return pgconn_identity(t->app_url, user, un, db, dn);
}

static void on_fence_sql(void *arg, const pgexec_result *pr)
{
    step_run *r = arg;
    const char *what = r->step.lift ? "lifted the fence on" : "fenced";
    pgexec_free(r->pg);
    r->pg = NULL;
    if (pr->ok && !r->step.lift && strstr(pr->last_value, "still open") != NULL) {
        /* an app session that did not end within the deadline could still write */
        fail(r, "fenced %s, but app sessions terminated: %s", r->step.target, pr->last_value);
    } else if (pr->ok) {
        r->out.ok = true;
        snprintf(r->out.note, sizeof r->out.note, "%s %s (%s)%s%s", what, r->step.target, r->step.mode,
                 r->step.lift ? "" : "; app sessions terminated: ", r->step.lift ? "" : pr->last_value);
        fence_outcome(r, r->step.lift ? FENCE_LIFTED : FENCE_APPLIED);
        log_info("fence: %s", r->out.note);
    } else if (!pr->connected && !r->step.lift && !r->step.required) {
        /* Unreachable now: not fatal, but fenced the moment it answers. */
        r->out.ok = true;
        snprintf(r->out.note, sizeof r->out.note,
                 "%s unreachable (%.150s): fence pending, applied as soon as it answers", r->step.target, pr->error);
        fence_outcome(r, FENCE_PENDING);
        log_warn("fence: %s", r->out.note);
    } else {
        fail(r, "%s %s failed: %s", r->step.lift ? "lifting the fence on" : "fencing", r->step.target, pr->error);
    }
    finish(r);
}

/* fence = none, or a target known to be down: the step ends without
 * reaching it (true). Known to be down: trying to reach it would only cost
 * the timeout (a frozen server answers nothing); the fence is applied the
 * moment it answers again (policy.c), which is the same guarantee. */
static bool fence_without_server(step_run *r)
{
    if (r->step.fence == FENCE_NONE) {
        r->out.ok = true;
        str_copy(r->out.note, "fence = none: nothing to do", sizeof r->out.note);
        finish_later(r);
        return true;
    }
    target_id tid = target_or_primary(r->step.target);
    if (r->step.lift || r->step.required || monitor_breaker(r->env.monitor, tid) != BREAKER_OPEN)
        return false;
    r->out.ok = true;
    snprintf(r->out.note, sizeof r->out.note,
             "%s is down (breaker open): fence pending, applied as soon as it answers", r->step.target);
    fence_outcome(r, FENCE_PENDING);
    log_warn("fence: %s", r->out.note);
    finish_later(r);
    return true;
}

/* fence = command: an operator's command, with DRD_FENCE=on|off. */
static void begin_fence_command(step_run *r)
{
    size_t n = strlen(r->step.command) + 64;
    char *cmd = malloc(n);
    if (cmd == NULL) {
        fail(r, "out of memory");
        finish_later(r);
        return;
    }
    snprintf(cmd, n, "DRD_FENCE=%s DRD_TARGET=%s; export DRD_FENCE DRD_TARGET; %s",
             r->step.lift ? "off" : "on", r->step.target, r->step.command);
    free(r->step.command);
    r->step.command = cmd;
    begin_exec(r);
}

/* The fence's statements: s1 fences (or lifts) the app's role or
 * database, s2 ends the app's sessions and waits for them to go. false
 * (after fail) when the names do not fit. */
static bool fence_statements(step_run *r, const config_target *t, char *s1, size_t n1, char *s2,
                             size_t n2)
{
    char user[128], db[128], qu[300], qd[300], ql[300], qdl[300], filter[800];
    if (!app_identity(t, user, sizeof user, db, sizeof db)) {
        fail(r, "cannot tell the app's role from [%s] app_url (it needs a user)", r->step.target);
        return false;
    }
    /* Quoted whole or not at all (never a cut name). */
    if (!pg_ident_buf(qu, sizeof qu, user) || !pg_ident_buf(qd, sizeof qd, db) ||
        !pg_literal_buf(ql, sizeof ql, user) || !pg_literal_buf(qdl, sizeof qdl, db)) {
        fail(r, "role or database name too long");
        return false;
    }
    if (r->step.fence == FENCE_NOLOGIN) {
        snprintf(s1, n1, "ALTER ROLE %s %s", qu, r->step.lift ? "LOGIN" : "NOLOGIN");
    } else {
        if (r->step.lift)
            snprintf(s1, n1, "ALTER DATABASE %s RESET default_transaction_read_only", qd);
        else
            snprintf(s1, n1, "ALTER DATABASE %s SET default_transaction_read_only = on", qd);
    }
    /* Sessions opened before the fence keep their settings: end them. */
    /* End them, then wait (3 s at most) until none is left, so that when
     * the step is done no app session can write any more (a write of an
     * old app instance reaching the backup after stop-app). The count
     * goes to the last statement through a session setting; any version
     * (pg_terminate_backend's own timeout needs PostgreSQL 14), and the
     * activity snapshot is cleared before each look. */
    int f = snprintf(filter, sizeof filter,
             "usename = %s AND datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
             " AND application_name NOT IN ('drd', 'drd-probe', 'drd-watch')", ql, qdl);
    int w = f < 0 || (size_t)f >= sizeof filter ? -1 : snprintf(s2, n2,
             "DO $drd$ DECLARE n int; i int := 0; left_ int; BEGIN\n"
             "  SELECT count(pg_terminate_backend(pid)) INTO n FROM pg_stat_activity WHERE %s;\n"
             "  LOOP\n"
             "    PERFORM pg_stat_clear_snapshot();\n"
             "    SELECT count(*) INTO left_ FROM pg_stat_activity WHERE %s;\n"
             "    EXIT WHEN left_ = 0 OR i >= 300;\n"
             "    PERFORM pg_sleep(0.01);\n"
             "    i := i + 1;\n"
             "  END LOOP;\n"
             "  PERFORM set_config('drd.fence_ended', n::text ||\n"
             "    CASE WHEN left_ > 0 THEN ' (' || left_ || ' still open after 3 s)' ELSE '' END, false);\n"
             "END $drd$", filter, filter);
    if (w < 0 || (size_t)w >= n2) {
        fail(r, "role or database name too long");
        return false;
    }
    return true;
}

static void begin_fence(step_run *r)
{
    const config_target *t = target_of(r->env.cfg, r->step.target);
    char s1[1024], s2[4096];
    /* The read-only fence applies to drd's own new sessions too when its
     * url names the fenced database (one database, as on many hosted
     * services): turn it off for this session first, on its own. */
    const char *stmts[4] = { "SET default_transaction_read_only = off", s1, s2,
                             "SELECT current_setting('drd.fence_ended')" };

    if (fence_without_server(r))
        return;
    if (r->step.fence == FENCE_COMMAND) {
        begin_fence_command(r);
        return;
    }
    if (!fence_statements(r, t, s1, sizeof s1, s2, sizeof s2)) {
        finish_later(r);
        return;
    }
    r->pg = pgexec_start(r->env.loop, t->url, t->password, stmts, r->step.lift ? 2 : 4,
                         r->step.timeout_ms, on_fence_sql, r);
    if (r->pg == NULL) {
        fail(r, "out of memory");
        finish_later(r);
    }
}

/* -------------------------------------------------------------- notify */

static void on_notify_fetch(void *arg, const fetch_result *fr)
{
    step_run *r = arg;
    r->fetch_id = 0;
    if (fr->status >= 200 && fr->status < 300) {
        r->out.ok = true;
        snprintf(r->out.note, sizeof r->out.note, "webhook answered %ld", fr->status);
    } else if (fr->status != 0) {
        fail(r, "webhook answered HTTP %ld", fr->status);
    } else {
        fail(r, "webhook: %s", fr->error);
    }
    finish_later(r);
}

static void begin_notify(step_run *r)
{
    const char *hook = r->env.cfg->notify_webhook;
    if (hook == NULL || hook[0] == '\0') {
        r->out.ok = true;
        str_copy(r->out.note, "no [notify] webhook configured", sizeof r->out.note);
        finish_later(r);
        return;
    }
    json_t *body = json_pack("{s:s}", "text", r->step.message);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char err[256];
    if (text != NULL)
        r->fetch_id = fetch_start(r->env.fetch, "POST", hook, text, "application/json",
                                  r->step.timeout_ms, on_notify_fetch, r, err, sizeof err);
    free(text);
    if (r->fetch_id == 0) {
        fail(r, "webhook: %s", text ? err : "out of memory");
        finish_later(r);
    }
}

/* ---------------------------------------------- capture, sync-back, verify */

char *step_progress(const step_run *r)
{
    return r != NULL && r->sync != NULL ? sync_job_progress(r->sync) : NULL;
}

/* Rows the outage never touched that differ (the backup was behind):
 * the primary's version stands (issue 12), but the step's note says so
 * (drctl failback's progress, the run in status), and pre-sync, which
 * finds them before the app is stopped, records an event. */
static void note_differing(step_run *r, const sync_result *sr)
{
    if (sr->differing <= 0 || (r->step.action != ACT_VERIFY && !str_eq(r->step.mode, "online")))
        return;
    char line[200];
    snprintf(line, sizeof line, "%lld %s that the outage never touched: the primary's version stands",
             (long long)sr->differing, sr->differing == 1 ? "row differs" : "rows differ");
    size_t n = strlen(r->out.note);
    snprintf(r->out.note + n, sizeof r->out.note - n, "; %s", line);
    if (r->step.action != ACT_VERIFY) {
        char msg[300];
        snprintf(msg, sizeof msg, "run %lld, %s: %s (the step's output names them)", (long long)r->env.run_id,
                 r->step.name, line);
        store_event_add(r->env.store, wall_ms(), "run", "", msg);
    }
}

static void on_sync_done(void *arg, const sync_result *sr)
{
    step_run *r = arg;
    r->output = output_kept(sr->report, sr->report ? strlen(sr->report) : 0, false);
    r->out.conflicts = sr->conflicts;
    if (sr->ok) {
        r->out.ok = true;
        snprintf(r->out.note, sizeof r->out.note, "%lld rows, %lld tables in %lldms", (long long)sr->rows,
                 (long long)sr->tables, (long long)sr->duration_ms);
        note_differing(r, sr);
        r->out.resolution_spent = r->step.action == ACT_SYNC_BACK;
        /* the rows the backup was behind in (the primary's stand): known
         * to differ until converge (resume-replication) copies them */
        if (r->step.action == ACT_VERIFY && r->env.refresh != NULL)
            refresh_note_difference(r->env.refresh, sr->differing, sr->differing, "verify");
    } else {
        fail(r, "%s", sr->error);
    }
    sync_job_free(r->sync);
    r->sync = NULL;
    finish(r);
}

static void begin_sync(step_run *r)
{
    char err[512], resolution[32] = "";
    sync_request req = { .timeout_ms = r->step.timeout_ms, .run_id = r->env.run_id };
    switch (r->step.action) {
    case ACT_CAPTURE:
        req.op = r->step.remove ? SYNC_UNCAPTURE : SYNC_CAPTURE;
        break;
    case ACT_VERIFY:
        req.op = SYNC_VERIFY;
        /* A retry: replay first what the ledger got since sync-back read
         * it (a late write), so that it is applied rather than reported
         * again; sync-back is idempotent, its conflicts still stop it. */
        req.resync = r->env.attempt > 1;
        if (req.resync && store_sync_resolution_get(r->env.store, resolution, sizeof resolution) &&
            resolution[0])
            req.resolution = resolution;
        break;
    default:
        req.online = r->step.online;
        req.op = r->env.cfg->sync_mode == SYNC_MODE_FULL && !req.online ? SYNC_FULL : SYNC_BACK;
        if (store_sync_resolution_get(r->env.store, resolution, sizeof resolution) && resolution[0])
            req.resolution = resolution;
        break;
    }
    r->sync = sync_start(r->env.loop, r->env.cfg, &req, on_sync_done, r, err, sizeof err);
    if (r->sync == NULL) {
        fail(r, "%s", err);
        finish_later(r);
    }
}

/* ------------------------------------------------------------- refresh */

static void on_refresh_step(void *arg, bool ok, const char *error)
{
    step_run *r = arg;
    if (ok) {
        r->out.ok = true;
        snprintf(r->out.note, sizeof r->out.note, "%s: done", r->step.op);
    } else {
        fail(r, "%s: %s", r->step.op, error ? error : "failed");
    }
    finish_later(r);
}

/* recreate-subscription, first part: converge (the backup made equal to
 * the primary, see sync.h); the subscription is recreated only then. */
static void on_converge_done(void *arg, const sync_result *sr)
{
    step_run *r = arg;
    r->output = output_kept(sr->report, sr->report ? strlen(sr->report) : 0, false);
    bool ok = sr->ok;
    if (ok)
        refresh_note_difference(r->env.refresh, 0, sr->differing, "converge");
    else
        fail(r, "converge: %s", sr->error);
    sync_job_free(r->sync);
    r->sync = NULL;
    if (!ok) {
        finish(r);
        return;
    }
    if (!refresh_subscription_recreate(r->env.refresh, r->env.cfg, on_refresh_step, r)) {
        fail(r, "%s could not start", r->step.op);
        finish(r);
    }
}

static void begin_converge(step_run *r)
{
    char err[512];
    sync_request req = { .op = SYNC_CONVERGE, .timeout_ms = r->step.timeout_ms };
    r->sync = sync_start(r->env.loop, r->env.cfg, &req, on_converge_done, r, err, sizeof err);
    if (r->sync == NULL) {
        fail(r, "converge: %s", err);
        finish_later(r);
    }
}

static void begin_refresh(step_run *r)
{
    refresh_mode mode = r->env.cfg->refresh_mode;
    /* bump-sequences helps in every mode: without logical replication the
     * backup is further behind (a dump's age, or never copied), and a
     * second outage after a failback would otherwise hand out ids the
     * primary took since (sync-back would stop on them as conflicts). */
    bool bump = r->env.refresh != NULL && strcmp(r->step.op, "bump-sequences") == 0;
    if (!bump && (r->env.refresh == NULL || mode != REFRESH_LOGICAL)) {
        r->out.ok = true;
        snprintf(r->out.note, sizeof r->out.note, "[refresh] mode is %s: nothing to do",
                 refresh_mode_name(mode));
        finish_later(r);
        return;
    }
    bool started;
    if (strcmp(r->step.op, "disable-subscription") == 0)
        started = refresh_subscription_disable(r->env.refresh, r->env.cfg, on_refresh_step, r);
    else if (strcmp(r->step.op, "recreate-subscription") == 0) {
        begin_converge(r);
        return;
    }
    else
        started = refresh_bump_sequences(r->env.refresh, r->env.cfg, on_refresh_step, r);
    if (!started) {
        fail(r, "%s could not start", r->step.op);
        finish_later(r);
    }
}

step_run *step_begin_fence(const step_env *env, const char *name, const char *target, bool lift,
                           int64_t timeout_ms, step_done_cb cb, void *arg)
{
    runbook_step s;
    memset(&s, 0, sizeof s);
    str_copy(s.name, name, sizeof s.name);
    s.action = ACT_FENCE;
    s.timeout_ms = timeout_ms;
    s.target = (char *)target;
    s.lift = lift;
    s.mode = (char *)fence_mode_name(env->cfg->failover_fence);
    s.fence = env->cfg->failover_fence;
    s.command = env->cfg->failover_fence_command;
    s.required = true;                   /* it answers: failing now is a failure */
    return step_begin(env, &s, cb, arg);
}

step_run *step_begin(const step_env *env, const runbook_step *s, step_done_cb cb, void *arg)
{
    step_run *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->env = *env;
    r->env.cfg = config_ref(env->cfg);   /* a reload must not free it under us */
    copy_step(&r->step, s);
    r->cb = cb;
    r->arg = arg;
    r->out.exit_code = -1;

    switch (s->action) {
    case ACT_EXEC:         begin_exec(r); break;
    case ACT_SWITCH_ENV:   begin_switch_env(r); break;
    case ACT_WAIT_HEALTHY: begin_wait_healthy(r); break;
    case ACT_FENCE:        begin_fence(r); break;
    case ACT_NOTIFY:       begin_notify(r); break;
    case ACT_CAPTURE:
    case ACT_SYNC_BACK:
    case ACT_VERIFY:       begin_sync(r); break;
    case ACT_REFRESH:      begin_refresh(r); break;
    default:
        fail(r, "action %s cannot run here", step_action_name(s->action));
        finish_later(r);
        break;
    }
    return r;
}
