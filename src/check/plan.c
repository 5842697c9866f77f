/* plan.c - `drctl failover|failback --dry-run`: what the runbook would do,
 * step by step, without doing any of it. Each step gets its command as it
 * would run (${section.key} expanded by runbook_load, secrets masked), what
 * it would change in words taken from the config and the current state
 * (the env file is only read), and its prerequisite: the matching result
 * of check_run(), or a check of our own where none applies (an exec
 * command's program must resolve). See plan.h. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "drd/check/check.h"
#include "drd/conf/envfile.h"
#include "drd/pg/pgconn.h"
#include "drd/check/plan.h"
#include "drd/check/privs.h"
#include "drd/conf/runbook.h"
#include "drd/store/store.h"
#include "drd/core/strbuf.h"
#include "drd/core/util.h"

#define ENV_VALUE_MAX 8192

/* ------------------------------------------------------------------ */
/* masking                                                            */

/* in with every secret masked (mask.c), as a new JSON string (NULL in:
 * null). NULL on OOM. */
static json_t *masked_json(const char *in)
{
    if (in == NULL)
        return json_null();
    char *m = mask_dup(in);
    json_t *j = m != NULL ? json_text(m) : NULL;
    free(m);
    return j;
}

/* in, masked, appended to out. */
static void sb_masked(strbuf *out, const char *in)
{
    json_t *j = masked_json(in);
    if (j == NULL) {
        out->oom = true;
        return;
    }
    sb_printf(out, "%s", json_is_string(j) ? json_string_value(j) : "");
    json_decref(j);
}

/* ------------------------------------------------------------------ */
/* context                                                            */

typedef struct {
    const config_t *cfg;
    const json_t *checks;
    const json_t *status;
    bool failback;
    char active[16];             /* primary | backup | unknown */
    char active_source[32];      /* where active came from */
    bool env_read;               /* env_value holds the env file's value */
    char env_error[512];         /* why it could not be read ("" = key absent) */
    char *env_value;
    char sync_resolution[32];    /* an operator's pending conflict decision */
} plan_ctx;

static const config_target *target_of(const config_t *cfg, const char *side)
{
    return target_or_primary(side) == TARGET_BACKUP ? &cfg->backup : &cfg->primary;
}

static const char *app_url_of(const config_target *t)
{
    return t->app_url != NULL ? t->app_url : t->url;
}

static const char *env_key(const config_t *cfg)
{
    return cfg->app_env_key != NULL ? cfg->app_env_key : "DATABASE_URL";
}

static const json_t *find_check(const plan_ctx *x, const char *name)
{
    size_t i;
    json_t *c;

    json_array_foreach(x->checks, i, c)
        if (str_eq(json_string_value(json_object_get(c, "name")), name))
            return c;
    return NULL;
}

/* A privileges-* check that could test (it has items) speaks for each
 * step through its items (privs_prereq): for the steps it lists none
 * of, it is ok. */
static bool tested_privileges(const plan_ctx *x, const char *name)
{
    return json_array_size(json_object_get(find_check(x, name), "items")) > 0;
}

static const char *check_status(const plan_ctx *x, const char *name)
{
    const char *s = json_string_value(json_object_get(find_check(x, name), "status"));
    if (tested_privileges(x, name))
        return "ok";
    return s != NULL ? s : "unknown";
}

static const char *check_reason(const plan_ctx *x, const char *name)
{
    if (tested_privileges(x, name))
        return "drd's role has the privileges this step needs";
    return json_string_value(json_object_get(find_check(x, name), "reason"));
}

/* The daemon's view of a target ("closed", "open", ...), or NULL. */
static const char *breaker_of(const plan_ctx *x, const char *side)
{
    return json_string_value(json_object_get(
        json_object_get(json_object_get(x->status, "targets"), side), "breaker"));
}

/* The env file's value (read only), the active side and the state db's
 * pending operator decisions. */
static void read_state(plan_ctx *x)
{
    const config_t *cfg = x->cfg;
    const char *a = json_string_value(json_object_get(x->status, "active"));
    char err[256], v[32] = "";
    store_t *st = NULL;

    x->env_value = calloc(1, ENV_VALUE_MAX);
    if (x->env_value != NULL && cfg->app_env_file != NULL && *cfg->app_env_file != '\0')
        x->env_read = envfile_get(cfg->app_env_file, env_key(cfg), x->env_value, ENV_VALUE_MAX,
                                  x->env_error, sizeof x->env_error);
    else
        str_copy(x->env_error, "no [app] env_file", sizeof x->env_error);

    if (cfg->state_db != NULL && access(cfg->state_db, R_OK) == 0)
        st = store_open_readonly(cfg->state_db, err, sizeof err);
    if (st != NULL) {
        if (!store_sync_resolution_get(st, x->sync_resolution, sizeof x->sync_resolution))
            x->sync_resolution[0] = '\0';
        target_id t;
        if (a == NULL && store_kv_get(st, "active", v, sizeof v) && target_parse(v, &t)) {
            str_copy(x->active, v, sizeof x->active);
            str_copy(x->active_source, "drd's state db", sizeof x->active_source);
        }
    }
    store_close(st);

    if (a != NULL) {
        str_copy(x->active, a, sizeof x->active);
        str_copy(x->active_source, "drd", sizeof x->active_source);
    } else if (x->active[0] == '\0' && x->env_read) {
        if (strcmp(x->env_value, app_url_of(&cfg->backup)) == 0)
            str_copy(x->active, target_name(TARGET_BACKUP), sizeof x->active);
        else if (strcmp(x->env_value, app_url_of(&cfg->primary)) == 0)
            str_copy(x->active, target_name(TARGET_PRIMARY), sizeof x->active);
        if (x->active[0] != '\0')
            str_copy(x->active_source, "the env file", sizeof x->active_source);
    }
    if (x->active[0] == '\0') {
        str_copy(x->active, "unknown", sizeof x->active);
        str_copy(x->active_source, "nothing says", sizeof x->active_source);
    }
}

/* ------------------------------------------------------------------ */
/* prerequisites                                                      */

static json_t *prereq(const char *status, const char *check, const char *reason)
{
    json_t *r = masked_json(reason != NULL ? reason : "");
    if (r == NULL)
        return NULL;
    return json_pack("{s:s, s:o, s:o}", "status", status,
                     "check", check != NULL ? json_string(check) : json_null(), "reason", r);
}

static int rank(const char *status)
{
    if (str_eq(status, "fail"))
        return 3;
    if (str_eq(status, "warn"))
        return 2;
    if (str_eq(status, "ok"))
        return 0;
    return 1;                                /* unknown */
}

/* The worst of the named checks decides; when all are ok, their reasons
 * are joined ("name: reason; ..."). */
static json_t *from_checks(const plan_ctx *x, const char *const *names, size_t n)
{
    strbuf reason = { 0 };
    size_t worst = 0;
    json_t *out;

    if (x->checks == NULL)
        return prereq("unknown", names[0], "no checks were run");
    for (size_t i = 1; i < n; i++)
        if (rank(check_status(x, names[i])) > rank(check_status(x, names[worst])))
            worst = i;
    const char *st = check_status(x, names[worst]);
    if (rank(st) > 0 || n == 1) {
        const json_t *c = find_check(x, names[worst]);
        if (c == NULL)
            return prereq("unknown", names[worst], "this check did not run");
        sb_printf(&reason, "%s", check_reason(x, names[worst]));
        const char *fix = json_string_value(json_object_get(c, "fix"));
        if (rank(st) > 0 && fix != NULL && *fix != '\0')
            sb_printf(&reason, " (fix: %s)", fix);
    } else {
        for (size_t i = 0; i < n; i++)
            sb_printf(&reason, "%s%s: %s", i > 0 ? "; " : "", names[i], check_reason(x, names[i]));
    }
    out = prereq(st, names[worst], sb_str(&reason));
    sb_free(&reason);
    return out;
}

static json_t *from_check(const plan_ctx *x, const char *name)
{
    return from_checks(x, &name, 1);
}

/* Which [app] command (stop, start) cmd is, or NULL. When both are the
 * same command, the step's name decides ("stop-app", "start-app"). */
static const char *app_command_name(const config_t *cfg, const char *cmd, const char *step)
{
    const char *names[] = { "stop", "start" };
    const char *cmds[] = { cfg->app_stop, cfg->app_start };
    bool match[2] = { false, false };

    for (size_t i = 0; i < 2; i++) {
        if (cmds[i] == NULL)
            continue;
        char err[256];
        char *e = config_expand(cfg, cmds[i], err, sizeof err);
        match[i] = strcmp(cmd, cmds[i]) == 0 || (e != NULL && strcmp(str_trim(e), cmd) == 0);
        free(e);
    }
    if (match[0] && match[1]) {
        bool stop = strstr(step, "stop") != NULL, start = strstr(step, "start") != NULL;
        if (stop != start)
            return stop ? names[0] : names[1];
        return "stop/start";
    }
    return match[0] ? names[0] : match[1] ? names[1] : NULL;
}

/* exec (and fence mode=command): the program must resolve; an [app]
 * command is also the app-commands check's business. */
static json_t *exec_prereq(const plan_ctx *x, const char *cmd, const char *step)
{
    char why[8400];
    const char *which = app_command_name(x->cfg, cmd, step);
    const char *check = which != NULL ? "app-commands" : NULL;

    if (!check_command_resolves(x->cfg, cmd, why, sizeof why))
        return prereq("fail", check, why);
    if (which != NULL && x->checks != NULL && str_eq(check_status(x, "app-commands"), "fail")) {
        const char *r = json_string_value(json_object_get(find_check(x, "app-commands"), "reason"));
        char tag[32];
        snprintf(tag, sizeof tag, "[app] %s", which);
        if (r != NULL && (strstr(r, tag) != NULL || strchr(which, '/') != NULL))
            return prereq("fail", check, r);
    }
    return prereq("ok", check, why);
}

/* ------------------------------------------------------------------ */
/* one step                                                           */

/* A duration as a runbook would write it: 1h, 90m, 30s, 250ms. */
static void dur(int64_t ms, char *buf, size_t n)
{
    if (ms <= 0)
        snprintf(buf, n, "none");
    else if (ms % 3600000 == 0)
        snprintf(buf, n, "%lldh", (long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(buf, n, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, n, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, n, "%lldms", (long long)ms);
}

static void describe_exec(const plan_ctx *x, const runbook_step *s, strbuf *c)
{
    char t[32];
    const char *which = app_command_name(x->cfg, s->command, s->name);

    dur(s->timeout_ms, t, sizeof t);
    if (which != NULL && strchr(which, '/') == NULL)
        sb_printf(c, "%s the app: ", strcmp(which, "stop") == 0 ? "stops" : "starts");
    sb_printf(c, "runs `");
    sb_masked(c, s->command);
    sb_printf(c, "` with /bin/sh in %s", x->cfg->dir != NULL ? x->cfg->dir : ".");
    if (x->cfg->app_user != NULL && *x->cfg->app_user != '\0')
        sb_printf(c, " as user %s", x->cfg->app_user);
    sb_printf(c, " (timeout %s, retries %lld)", t, (long long)s->retries);
}

static void describe_switch_env(const plan_ctx *x, const runbook_step *s, strbuf *c)
{
    const config_t *cfg = x->cfg;
    const char *key = env_key(cfg);
    const char *want = app_url_of(target_of(cfg, s->target));

    if (cfg->app_env_file == NULL || *cfg->app_env_file == '\0') {
        sb_printf(c, "nothing: there is no [app] env_file, so the step fails");
        return;
    }
    if (x->env_read && strcmp(x->env_value, want) == 0) {
        sb_printf(c, "%s in %s already is the %s's app_url ", key, cfg->app_env_file, s->target);
        sb_masked(c, want);
        sb_printf(c, " (already set: no change); drd records the %s as active", s->target);
        return;
    }
    if (x->env_read) {
        sb_printf(c, "sets %s in %s from ", key, cfg->app_env_file);
        sb_masked(c, x->env_value);
        sb_printf(c, " to the %s's app_url ", s->target);
    } else if (x->env_error[0] == '\0') {
        sb_printf(c, "appends %s (absent now) to %s, set to the %s's app_url ", key, cfg->app_env_file,
                  s->target);
    } else {
        sb_printf(c, "sets %s in %s (unreadable now: ", key, cfg->app_env_file);
        sb_masked(c, x->env_error);
        sb_printf(c, ") to the %s's app_url ", s->target);
    }
    sb_masked(c, want);
    sb_printf(c, ", atomically, every other line kept (previous file kept as %s.drd-prev); "
                 "drd then records the %s as active", cfg->app_env_file, s->target);
}

static void describe_wait_healthy(const plan_ctx *x, const runbook_step *s, strbuf *c)
{
    char t[32];

    dur(s->timeout_ms, t, sizeof t);
    if (strcmp(s->target, "app") == 0) {
        if (x->cfg->app_health_url == NULL || *x->cfg->app_health_url == '\0') {
            sb_printf(c, "nothing: no [app] health_url, the step passes at once");
            return;
        }
        sb_printf(c, "waits up to %s for the app to be healthy (GET ", t);
        sb_masked(c, x->cfg->app_health_url);
        sb_printf(c, " answers 2xx, tried every 250ms); changes nothing");
        return;
    }
    sb_printf(c, "waits up to %s for the %s to be healthy (drd's probes: breaker closed, last probe good); "
                 "changes nothing", t, s->target);
    const char *b = breaker_of(x, s->target);
    if (b != NULL)
        sb_printf(c, "; now: breaker %s", b);
}

static void describe_approve(const runbook_step *s, strbuf *c)
{
    char t[32];

    dur(s->expires_ms, t, sizeof t);
    sb_printf(c, "asks for an approval: ");
    sb_masked(c, s->prompt);
    sb_printf(c, " (expires after %s; undecided = rejected); changes nothing", t);
}

/* The app's role and database on a target, from its app_url (as steps.c
 * fences them). false when the URL names no user. */
static bool app_identity(const config_target *t, char *user, size_t un, char *db, size_t dn)
{
    return pgconn_identity(app_url_of(t), user, un, db, dn);
}

static void describe_fence(const plan_ctx *x, const runbook_step *s, strbuf *c)
{
    char t[32], user[128], db[128];
    const char *tg = s->target;

    dur(s->timeout_ms, t, sizeof t);
    if (s->fence == FENCE_NONE) {
        sb_printf(c, "nothing (fence mode none)");
        return;
    }
    if (s->fence == FENCE_COMMAND) {
        sb_printf(c, "%s the %s: runs `", s->lift ? "lifts the fence on" : "fences", tg);
        sb_masked(c, s->command);
        sb_printf(c, "` with DRD_FENCE=%s DRD_TARGET=%s (timeout %s)", s->lift ? "off" : "on", tg, t);
    } else if (!app_identity(target_of(x->cfg, tg), user, sizeof user, db, sizeof db)) {
        sb_printf(c, "nothing: it cannot tell the app's role from [%s] app_url (it needs a user), "
                     "so the step fails", tg);
        return;
    } else if (s->fence == FENCE_NOLOGIN) {
        if (s->lift)
            sb_printf(c, "lifts the fence on the %s: ALTER ROLE \"%s\" LOGIN", tg, user);
        else
            sb_printf(c, "fences the %s: ALTER ROLE \"%s\" NOLOGIN, then ends the role's sessions in "
                         "database %s (drd's own kept)", tg, user, db);
        sb_printf(c, " (timeout %s)", t);
    } else {
        if (s->lift)
            sb_printf(c, "lifts the fence on the %s: ALTER DATABASE \"%s\" RESET "
                         "default_transaction_read_only, so the app may write there again", tg, db);
        else
            sb_printf(c, "fences the %s: ALTER DATABASE \"%s\" SET default_transaction_read_only = on, "
                         "then ends the sessions of role %s in it (drd's own kept)", tg, db, user);
        sb_printf(c, " (timeout %s)", t);
    }
    if (s->lift)
        return;
    if (s->required) {
        sb_printf(c, "; required: the step fails if the %s is unreachable", tg);
    } else {
        sb_printf(c, "; if the %s is unreachable the fence is left pending and applied as soon as it answers", tg);
        if (str_eq(breaker_of(x, tg), "open"))
            sb_printf(c, " (now: the %s is down, breaker open: it would be left pending)", tg);
    }
}

static void describe_sync(const plan_ctx *x, const runbook_step *s, strbuf *c)
{
    const config_t *cfg = x->cfg;
    const char *schemas = cfg->sync_schemas != NULL ? cfg->sync_schemas : "public";
    char *db = pgconn_dbname(app_url_of(s->action == ACT_CAPTURE ? &cfg->backup : &cfg->primary));
    char t[32];

    dur(s->timeout_ms, t, sizeof t);
    switch (s->action) {
    case ACT_CAPTURE:
        if (s->remove) {
            sb_printf(c, "removes the change ledger and its triggers from the backup (DROP SCHEMA drd "
                         "CASCADE in database %s)", db != NULL ? db : "(the URL's)");
        } else {
            sb_printf(c, "installs the change ledger and triggers on the backup (schema drd in database %s), "
                         "schemas %s", db != NULL ? db : "(the URL's)", schemas);
            if (cfg->sync_exclude != NULL && *cfg->sync_exclude != '\0')
                sb_printf(c, " minus %s", cfg->sync_exclude);
            sb_printf(c, "; tables without a primary key: %s",
                      no_pk_mode_name(cfg->sync_no_pk));
        }
        break;
    case ACT_SYNC_BACK: {
        const char *conflicts = x->sync_resolution[0] != '\0' ? x->sync_resolution
                              : conflicts_mode_name(cfg->sync_conflicts);
        if (s->online)
            sb_printf(c, "while the app still runs on the backup, replays the ledger to the primary "
                         "(database %s) in passes and verifies every table against one snapshot of the "
                         "backup, so that the app is stopped only for the tail (conflicts: %s)",
                      db != NULL ? db : "(the URL's)", conflicts);
        else if (cfg->sync_mode == SYNC_MODE_FULL)
            sb_printf(c, "copies every table of schemas %s whole from the backup to the primary "
                         "(database %s), replacing the primary's rows, %lld tables at a time",
                      schemas, db != NULL ? db : "(the URL's)", (long long)cfg->sync_parallel);
        else
            sb_printf(c, "copies the rows changed on the backup during the outage to the primary "
                         "(database %s) in one transaction, and moves the primary's sequences to at least "
                         "the backup's (conflicts: %s%s)", db != NULL ? db : "(the URL's)", conflicts,
                      x->sync_resolution[0] != '\0' ? ", an operator's decision from an earlier attempt" : "");
        break;
    }
    default:
        sb_printf(c, "compares every synced table on both sides (count+checksum, computed by each server), "
                     "schemas %s; changes nothing", schemas);
        break;
    }
    sb_printf(c, " (timeout %s)", t);
    free(db);
}

static void describe_notify(const plan_ctx *x, const runbook_step *s, strbuf *c)
{
    const char *w = x->cfg->notify_webhook;
    char host[256];

    if (w == NULL || *w == '\0') {
        sb_printf(c, "nothing: no [notify] webhook configured");
        return;
    }
    /* only the host: the URL usually embeds a token */
    const char *p = strstr(w, "://");
    p = p != NULL ? p + 3 : w;
    const char *at = strchr(p, '@'), *end = p + strcspn(p, "/?#");
    if (at != NULL && at < end)
        p = at + 1;
    size_t hl = strcspn(p, "/?#");
    if (hl >= sizeof host)
        hl = sizeof host - 1;
    memcpy(host, p, hl);
    host[hl] = '\0';
    sb_printf(c, "posts to the webhook at %s: ", host);
    sb_masked(c, s->message);
}

static void describe_refresh(const plan_ctx *x, const runbook_step *s, strbuf *c)
{
    const config_t *cfg = x->cfg;
    refresh_mode rm = cfg->refresh_mode;
    const char *mode = refresh_mode_name(rm);
    const char *sub = cfg->refresh_subscription != NULL ? cfg->refresh_subscription : "drd_sub";
    const char *pub = cfg->refresh_publication != NULL ? cfg->refresh_publication : "drd_pub";

    bool bump = strcmp(s->op, "bump-sequences") == 0;
    if (bump) {
        sb_printf(c, "moves every sequence of the app's database on the backup past the largest id in use "
                     "+%s (setval)", rm == REFRESH_LOGICAL ? "1000" : "1000000");
        return;
    }
    if (rm != REFRESH_LOGICAL) {
        sb_printf(c, "nothing: %s only acts with [refresh] mode = logical (mode is %s)", s->op, mode);
        return;
    }
    if (strcmp(s->op, "disable-subscription") == 0)
        sb_printf(c, "disables subscription %s on the backup (ALTER SUBSCRIPTION ... DISABLE), so it never "
                     "follows an old primary that comes back", sub);
    else if (strcmp(s->op, "recreate-subscription") == 0)
        sb_printf(c, "makes the backup equal to the primary (converge: only the rows that differ, those the "
                     "replication lag kept from it, are copied or deleted on the backup), then recreates "
                     "subscription %s on the backup to publication %s on the primary, without copying data "
                     "(copy_data = false)", sub, pub);
    else
        sb_printf(c, "moves every sequence on the backup past the largest id in use (setval)");
}

/* The privileges this step needs (privs.c's list, tested by the
 * privileges-* checks): the failing ones with their fixes; NULL when none
 * fails. */
static json_t *privs_prereq(const plan_ctx *x, const runbook_step *s)
{
    static const char *const names[] = { "privileges-primary", "privileges-backup" };
    char label[96], reason[4096], fix[4096], why[8400];

    snprintf(label, sizeof label, "%s: %s", x->failback ? "failback" : "failover", s->name);
    for (int opt = 0; opt < 2; opt++)
        for (size_t i = 0; i < ARRAY_LEN(names); i++) {
            privs_summary(json_object_get(find_check(x, names[i]), "items"), label, opt == 1,
                          reason, sizeof reason, fix, sizeof fix);
            if (reason[0] == '\0')
                continue;
            snprintf(why, sizeof why, "drd's role lacks %s%s (fix: %s)", opt ? "(optional) " : "", reason, fix);
            return prereq(opt ? "warn" : "fail", names[i], why);
        }
    return NULL;
}

static json_t *step_prereq(const plan_ctx *x, const runbook_step *s)
{
    json_t *p = x->checks != NULL ? privs_prereq(x, s) : NULL;
    if (p != NULL)
        return p;
    switch (s->action) {
    case ACT_EXEC:
        return exec_prereq(x, s->command, s->name);
    case ACT_SWITCH_ENV:
        return from_check(x, "env-file");
    case ACT_WAIT_HEALTHY:
        if (strcmp(s->target, "app") == 0)
            return from_check(x, "health-url");
        if (target_or_primary(s->target) == TARGET_BACKUP) {
            static const char *const b[] = { "backup", "backup-writable" };
            return from_checks(x, b, ARRAY_LEN(b));
        }
        return from_check(x, "primary");
    case ACT_FENCE: {
        char user[128], db[128];
        if (s->fence == FENCE_NONE)
            return prereq("ok", NULL, "nothing to check (fence mode none)");
        if (s->fence == FENCE_COMMAND)
            return exec_prereq(x, s->command, s->name);
        if (!app_identity(target_of(x->cfg, s->target), user, sizeof user, db, sizeof db))
            return prereq("fail", NULL, "the target's app_url names no user: the fence cannot tell the app's role");
        if (!s->lift && !s->required && x->checks != NULL &&
            (str_eq(check_status(x, s->target), "fail") || str_eq(breaker_of(x, s->target), "open"))) {
            char why[2600];
            const char *r = json_string_value(json_object_get(find_check(x, s->target), "reason"));
            snprintf(why, sizeof why, "the %s is unreachable now (%s): the fence would be left pending "
                     "and applied as soon as it answers", s->target,
                     r != NULL && str_eq(check_status(x, s->target), "fail") ? r : "breaker open");
            return prereq("warn", s->target, why);
        }
        return from_check(x, target_or_primary(s->target) == TARGET_PRIMARY ? "privileges-primary" : "backup");
    }
    case ACT_CAPTURE:
        return from_check(x, "privileges-backup");
    case ACT_SYNC_BACK: {
        static const char *const b[] = { "privileges-primary", "backup" };
        return from_checks(x, b, ARRAY_LEN(b));
    }
    case ACT_VERIFY: {
        static const char *const b[] = { "primary", "backup" };
        return from_checks(x, b, ARRAY_LEN(b));
    }
    case ACT_NOTIFY:
        return from_check(x, "webhook");
    case ACT_REFRESH: {
        refresh_mode rm = x->cfg->refresh_mode;
        if (strcmp(s->op, "bump-sequences") == 0)
            return from_check(x, "backup-writable");
        if (rm != REFRESH_LOGICAL)
            return prereq("ok", NULL, "nothing to check: the step does nothing in this mode");
        if (strcmp(s->op, "recreate-subscription") == 0) {
            static const char *const b[] = { "backup", "primary" };
            return from_checks(x, b, ARRAY_LEN(b));
        }
        return from_check(x, "backup");
    }
    default:
        return prereq("unknown", NULL, "no check applies");
    }
}

static json_t *step_json(const plan_ctx *x, const runbook_step *s, size_t n)
{
    strbuf c = { 0 };
    json_t *o = NULL, *cmd = NULL, *pre = NULL, *desc = NULL, *changes = NULL;
    const char *command = s->action == ACT_EXEC ||
                          (s->action == ACT_FENCE && s->fence == FENCE_COMMAND) ? s->command : NULL;

    switch (s->action) {
    case ACT_EXEC:         describe_exec(x, s, &c); break;
    case ACT_SWITCH_ENV:   describe_switch_env(x, s, &c); break;
    case ACT_WAIT_HEALTHY: describe_wait_healthy(x, s, &c); break;
    case ACT_APPROVE:      describe_approve(s, &c); break;
    case ACT_FENCE:        describe_fence(x, s, &c); break;
    case ACT_CAPTURE:
    case ACT_SYNC_BACK:
    case ACT_VERIFY:       describe_sync(x, s, &c); break;
    case ACT_NOTIFY:       describe_notify(x, s, &c); break;
    case ACT_REFRESH:      describe_refresh(x, s, &c); break;
    default:               sb_printf(&c, "unknown action"); break;
    }
    if (s->on_failure != ON_FAILURE_ABORT)
        sb_printf(&c, "; on failure: %s", step_on_failure_name(s->on_failure));
    if (c.oom)
        goto cleanup;
    cmd = masked_json(command);
    changes = masked_json(sb_str(&c));
    desc = masked_json(s->description);
    pre = step_prereq(x, s);
    if (cmd == NULL || changes == NULL || desc == NULL || pre == NULL)
        goto cleanup;
    o = json_pack("{s:I, s:s, s:s, s:O, s:O, s:O, s:s, s:I, s:O}", "n", (json_int_t)n, "name", s->name,
                  "action", step_action_name(s->action), "command", cmd, "changes", changes,
                  "description", desc, "on_failure", step_on_failure_name(s->on_failure),
                  "timeout_ms", (json_int_t)s->timeout_ms, "prerequisite", pre);
cleanup:
    json_decref(cmd);
    json_decref(changes);
    json_decref(desc);
    json_decref(pre);
    sb_free(&c);
    return o;
}

/* Why drd would not start this run now, as notes for the header. */
static void add_notes(const plan_ctx *x, json_t *notes, bool *fits)
{
    char buf[512];
    const json_t *run = json_object_get(x->status, "run");
    const char *to = x->failback ? "primary" : "backup";

    *fits = true;
    if (x->status == NULL)
        json_array_append_new(notes, json_string("drd is not running (or does not answer): "
                                                 "it must run to carry out the runbook"));
    if (json_is_object(run)) {
        snprintf(buf, sizeof buf, "run %lld (%s) is in progress (%s): drd would refuse to start another",
                 (long long)json_integer_value(json_object_get(run, "id")),
                 json_string_value(json_object_get(run, "kind")) ? json_string_value(json_object_get(run, "kind")) : "?",
                 json_string_value(json_object_get(run, "state")) ? json_string_value(json_object_get(run, "state")) : "?");
        json_array_append_new(notes, json_text(buf));
        *fits = false;
    }
    if (strcmp(x->active, to) == 0) {
        snprintf(buf, sizeof buf, "the app is already on the %s: this %s does not fit the current state "
                 "(drd would refuse it)", to, x->failback ? "failback" : "failover");
        json_array_append_new(notes, json_text(buf));
        *fits = false;
    }
    if (str_eq(breaker_of(x, to), "open")) {
        snprintf(buf, sizeof buf, "the %s is not healthy (breaker open): drd would refuse to move the app there", to);
        json_array_append_new(notes, json_text(buf));
        *fits = false;
    }
}

json_t *plan_build(const config_t *cfg, bool failback, const json_t *checks,
                   const json_t *status, char *err, size_t errlen)
{
    const char *path = failback ? cfg->failback_runbook : cfg->failover_runbook;
    config_errors errs = { 0 };
    plan_ctx x = { .cfg = cfg, .checks = json_is_array(checks) ? checks : NULL,
                   .status = json_is_object(status) ? status : NULL, .failback = failback };
    runbook_t *rb = NULL;
    json_t *plan = NULL, *steps = NULL, *notes = NULL;
    bool ok = true, fits = true;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (path == NULL || *path == '\0') {
        snprintf(err, errlen, "no [%s] runbook", failback ? "failback" : "failover");
        return NULL;
    }
    rb = runbook_load(path, cfg, &errs);
    if (rb == NULL) {
        for (size_t i = 0; i < errs.n; i++) {
            if (i > 0)
                str_append(err, errlen, "\n");
            str_append(err, errlen, errs.msgs[i]);
        }
        if (errs.n == 0)
            snprintf(err, errlen, "%s: cannot load the runbook", path);
        config_errors_free(&errs);
        return NULL;
    }
    config_errors_free(&errs);
    read_state(&x);

    steps = json_array();
    notes = json_array();
    if (steps == NULL || notes == NULL)
        goto oom;
    for (size_t i = 0; i < rb->n_steps; i++) {
        json_t *s = step_json(&x, &rb->steps[i], i + 1);
        if (s == NULL || json_array_append_new(steps, s) != 0)
            goto oom;
        if (str_eq(json_string_value(json_object_get(json_object_get(s, "prerequisite"), "status")), "fail"))
            ok = false;
    }
    add_notes(&x, notes, &fits);
    plan = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:o, s:b}", "kind", failback ? "failback" : "failover",
                     "runbook", path, "active", x.active, "active_from", x.active_source, "fits", fits,
                     "notes", notes, "steps", steps, "ok", ok);
    notes = steps = NULL;                    /* owned by plan (or freed by json_pack on failure) */
    if (plan == NULL)
        goto oom;
    goto cleanup;
oom:
    snprintf(err, errlen, "out of memory");
    json_decref(plan);
    plan = NULL;
cleanup:
    json_decref(steps);
    json_decref(notes);
    runbook_free(rb);
    if (x.env_value != NULL) {
        explicit_bzero(x.env_value, ENV_VALUE_MAX);
        free(x.env_value);
    }
    return plan;
}

/* ------------------------------------------------------------------ */

static const char *jstr(const json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : dflt;
}

void plan_print(const json_t *plan, FILE *out)
{
    size_t i, failing = 0;
    json_t *s, *n;
    const json_t *steps = json_object_get(plan, "steps");

    fprintf(out, "%s plan (dry run) from %s\n", jstr(plan, "kind", "?"), jstr(plan, "runbook", "?"));
    fprintf(out, "active side: %s (according to %s)\n", jstr(plan, "active", "unknown"),
            jstr(plan, "active_from", "nothing"));
    json_array_foreach(json_object_get(plan, "notes"), i, n)
        fprintf(out, "note: %s\n", json_string_value(n));
    json_array_foreach(steps, i, s)
        if (str_eq(jstr(json_object_get(s, "prerequisite"), "status", ""), "fail"))
            failing++;
    if (failing == 0)
        fprintf(out, "prerequisites: none fails (%zu steps)\n", json_array_size(steps));
    else
        fprintf(out, "prerequisites: %zu of %zu steps would fail\n", failing, json_array_size(steps));
    fprintf(out, "a run checks them again in its first step, preflight, before it changes anything\n");

    json_array_foreach(steps, i, s) {
        const json_t *p = json_object_get(s, "prerequisite");
        const char *check = jstr(p, "check", NULL);
        fprintf(out, "\n%2lld. %s (%s)\n", (long long)json_integer_value(json_object_get(s, "n")),
                jstr(s, "name", "?"), jstr(s, "action", "?"));
        fprintf(out, "    command:      %s\n", jstr(s, "command", "-"));
        fprintf(out, "    changes:      %s\n", jstr(s, "changes", ""));
        fprintf(out, "    prerequisite: %s%s%s%s %s\n", jstr(p, "status", "unknown"),
                check != NULL ? " (" : "", check != NULL ? check : "", check != NULL ? ")" : "",
                jstr(p, "reason", ""));
    }
    fprintf(out, "\n%s\n", json_is_true(json_object_get(plan, "ok"))
                               ? "result: every prerequisite is met"
                               : "result: a prerequisite fails (see the steps marked fail)");
    fprintf(out, "dry run: nothing was run or changed\n");
}
