/* check.c - `drctl check`: every check a failover and a failback need,
 * run concurrently (one short-lived thread per check, each bounded by its
 * own 2 s deadline: the connect's and each statement's (kept by the
 * client: no session SET, which a transaction-mode pooler would leave
 * behind for its next client), libcurl timeouts). Nothing is changed: writes are tried in rolled-back
 * transactions, files are only stat'ed and read. */
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>

#include "drd/check/check.h"
#include "drd/check/check_refresh.h"
#include "drd/conf/envfile.h"
#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/check/privs.h"
#include "drd/refresh/refresh.h"
#include "drd/conf/runbook.h"
#include "drd/store/store.h"
#include "drd/core/util.h"
#include "drd/core/worker.h"

#define CHECK_TIMEOUT_MS 2000
#define DUMP_MIN_FREE    (1024.0 * 1024.0 * 1024.0)
#define REASON_LEN       8192
#define FIX_LEN          8192

typedef enum { ST_OK, ST_WARN, ST_FAIL } check_status;

typedef struct check_job check_job;
struct check_job {
    const char *name;
    void (*fn)(check_job *j);
    const config_t *cfg;
    const json_t *status;        /* /api/status or NULL */
    const char *active;          /* "primary" | "backup" */
    int64_t deadline_ms;
    check_status st;
    char reason[REASON_LEN];
    char fix[FIX_LEN];
    json_t *items;               /* privileges: the lacking objects (privs_check) */
    pthread_t thread;
    bool started;
};

static void set(check_job *j, check_status st, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set(check_job *j, check_status st, const char *fix, const char *fmt, ...)
{
    va_list ap;
    j->st = st;
    va_start(ap, fmt);
    vsnprintf(j->reason, sizeof j->reason, fmt, ap);
    va_end(ap);
    str_copy(j->fix, fix != NULL ? fix : "", sizeof j->fix);
}

/* Milliseconds this check may still use (at least 1). */
static long budget_ms(const check_job *j)
{
    int64_t left = j->deadline_ms - mono_ms();
    if (left > CHECK_TIMEOUT_MS)
        left = CHECK_TIMEOUT_MS;
    return left < 1 ? 1 : (long)left;
}

/* ------------------------------------------------------------------ */
/* PostgreSQL                                                         */

/* Blocking connection with the configured url/password, to dbname (NULL:
 * the URL's). The connect and every statement within the budget. */
static PGconn *db_connect(check_job *j, const config_target *t, const char *dbname,
                          char *err, size_t errlen)
{
    return privs_connect(t, dbname, budget_ms(j), "drd-check", err, errlen);
}

/* Run sql (one optional text parameter) within the connection's timeout
 * (privs_connect); the first value of the first row into out (may be
 * NULL). false with err set on error. */
static bool db_value(PGconn *c, const char *sql, const char *param, char *out, size_t n,
                     char *err, size_t errlen)
{
    const char *params[1] = { param };
    PGresult *r = pgconn_exec(c, sql, param != NULL ? 1 : 0, params, err, errlen);

    if (r != NULL && out != NULL)
        str_copy(out, (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
                      ? PQgetvalue(r, 0, 0) : "", n);
    PQclear(r);
    return r != NULL;
}

static const config_target *target_of(const config_t *cfg, const char *side)
{
    target_id t;
    return target_parse(side, &t) && t == TARGET_PRIMARY ? &cfg->primary : &cfg->backup;
}

static const char *app_url_of(const config_target *t)
{
    return t->app_url != NULL ? t->app_url : t->url;
}

/* Whether a connection pooler sits between drd and the server: PostgreSQL
 * takes the startup parameter "options" (here a custom setting) and shows
 * it; pgbouncer refuses it ("unsupported startup parameter") or, told to
 * ignore it, drops it. 1 yes (how says which), 0 no, -1 unknown. */
static int behind_pooler(check_job *j, const config_target *t, char *how, size_t n)
{
    pgconn_opts o = { .password = t->password, .app_name = "drd-check", .connect_ms = budget_ms(j),
                      .options = "-c drd.check_direct=on" };
    char err[512], v[16] = "";
    PGconn *c = pgconn_connect(t->url, &o, err, sizeof err);
    if (c == NULL) {
        if (strstr(err, "unsupported startup parameter") == NULL)
            return -1;
        str_copy(how, "it refused the startup parameter \"options\"", n);
        return 1;
    }
    bool got = pgconn_set_timeout(c, budget_ms(j)) &&
               db_value(c, "SELECT current_setting('drd.check_direct', true)", NULL, v, sizeof v, err, sizeof err);
    PQfinish(c);
    if (!got)
        return -1;
    if (strcmp(v, "on") == 0)
        return 0;
    str_copy(how, "it dropped the startup parameter \"options\"", n);
    return 1;
}

static void check_reachable(check_job *j, const char *side)
{
    char err[1024], ver[64], how[128];
    const config_target *t = target_of(j->cfg, side);
    PGconn *c = db_connect(j, t, NULL, err, sizeof err);
    if (c == NULL) {
        set(j, ST_FAIL, "start the server, or fix the URL, role or password in the config",
            "cannot connect with [%s] url: %s", side, err);
        return;
    }
    if (!db_value(c, "SHOW server_version", NULL, ver, sizeof ver, err, sizeof err)) {
        set(j, ST_FAIL, "check the server", "connected but a query failed: %s", err);
    } else if (behind_pooler(j, t, how, sizeof how) != 1) {
        set(j, ST_OK, NULL, "connected (PostgreSQL %s)", ver);
    } else {
        /* What works through a (transaction-mode) pooler and what needs a
         * session: the fence's and the sync's session settings and
         * temporary tables would land on whichever server connection the
         * pooler picks, and stay there for its next client (the app). A
         * session-mode pooler refuses "options" too: this cannot tell the
         * two apart, hence warn, not fail. */
        bool logical = j->cfg->refresh_mode == REFRESH_LOGICAL;
        char fix[512];
        snprintf(fix, sizeof fix, "point [%s] url at the server itself or at a session-mode pooler"
                 "%s", side, logical ? "" : "; keep the transaction-mode pooler for reconcile in [refresh] source_url");
        set(j, logical ? ST_FAIL : ST_WARN, fix,
            "connected (PostgreSQL %s) through a connection pooler (%s): the probes, check and "
            "[refresh] mode = reconcile work through any pooler; the runbooks' fence, capture, sync-back "
            "and verify (session settings, temporary tables) and %s[refresh] mode = logical (the "
            "replication protocol) need a session: a direct connection or a session-mode pooler", ver, how,
            logical ? "(configured here) " : "");
    }
    PQfinish(c);
}

static void check_primary(check_job *j) { check_reachable(j, "primary"); }
static void check_backup(check_job *j) { check_reachable(j, "backup"); }

/* The backup accepts writes in the app's database. */
static void check_backup_writable(check_job *j)
{
    char err[1024], v[64];
    char *db = pgconn_dbname(app_url_of(&j->cfg->backup));
    PGconn *c = db_connect(j, &j->cfg->backup, db, err, sizeof err);

    if (c == NULL) {
        set(j, ST_FAIL, "make the app's database reachable on the backup",
            "cannot connect to the app's database %s on the backup: %s", db ? db : "", err);
        goto cleanup;
    }
    if (!db_value(c, "SELECT pg_is_in_recovery()", NULL, v, sizeof v, err, sizeof err)) {
        set(j, ST_FAIL, NULL, "pg_is_in_recovery() failed: %s", err);
        goto cleanup;
    }
    if (strcmp(v, "t") == 0) {
        set(j, ST_FAIL, "promote the standby (or use a writable copy) before a failover",
            "the backup is in recovery (a read-only standby)");
        goto cleanup;
    }
    if (!db_value(c, "SHOW default_transaction_read_only", NULL, v, sizeof v, err, sizeof err)) {
        set(j, ST_FAIL, NULL, "SHOW default_transaction_read_only failed: %s", err);
        goto cleanup;
    }
    /* On after a failback: the backup is fenced for the app (fence-backup),
     * and the next failover lifts it before the app starts there
     * (unfence-backup). Test the rest in a read-write transaction (no
     * session SET: it would outlive this check on a pooler's connection). */
    bool fenced = strcmp(v, "on") == 0;
    if (!db_value(c, "BEGIN READ WRITE", NULL, NULL, 0, err, sizeof err) ||
        !db_value(c, "CREATE TEMP TABLE drd_check_probe (x int)", NULL, NULL, 0, err, sizeof err)) {
        db_value(c, "ROLLBACK", NULL, NULL, 0, v, sizeof v);
        char fix[300], role[128];
        privs_role(&j->cfg->backup, role, sizeof role);
        snprintf(fix, sizeof fix, "GRANT TEMPORARY ON DATABASE %s TO %s; (on the backup)",
                 db != NULL ? db : "(the app's database)", role[0] ? role : "CURRENT_USER");
        set(j, ST_FAIL, fix, "cannot write (CREATE TEMP TABLE, rolled back): %s", err);
        goto cleanup;
    }
    db_value(c, "ROLLBACK", NULL, NULL, 0, v, sizeof v);
    if (fenced)
        set(j, ST_OK, NULL, "writable once the failover's unfence-backup step lifts the fence a failback"
            " left (not in recovery, a temp table could be created)");
    else
        set(j, ST_OK, NULL, "writable (not in recovery, read-only off, a temp table could be created)");
cleanup:
    PQfinish(c);
    free(db);
}

/* The privileges drd's role needs on a side (privs.c's list, for both
 * runbooks and [refresh] mode), tested against the objects of the app's
 * database there. The failing items go with the check's JSON ("items"),
 * so the dry run can show each step its own. */
static void check_privs(check_job *j, privs_side side)
{
    const char *name = side == PRIV_PRIMARY ? "primary" : "backup";
    const config_target *t = target_of(j->cfg, name);
    privs_list l = { 0 };
    char err[1024], role[128], reason[REASON_LEN], fix[FIX_LEN];
    char *db = pgconn_dbname(app_url_of(t));
    PGconn *c = NULL;
    json_t *items = json_array();
    bool required;

    if (items == NULL) {
        set(j, ST_FAIL, NULL, "out of memory");
        goto cleanup;
    }
    if (!privs_for_config(&l, j->cfg, err, sizeof err)) {
        set(j, ST_FAIL, "fix the runbooks (drd -n -c FILE lists every error)", "%s", err);
        goto cleanup;
    }
    if (!privs_side_used(&l, side, &required)) {
        set(j, ST_OK, NULL, "the runbooks and [refresh] need no privilege on the %s", name);
        goto cleanup;
    }
    c = privs_connect(t, db, budget_ms(j), "drd-check", err, sizeof err);
    if (c == NULL) {
        set(j, ST_FAIL, "make the app's database reachable", "cannot connect to the app's database %s on the %s: %s",
            db != NULL ? db : "(the URL's)", name, err);
        goto cleanup;
    }
    privs_role(t, role, sizeof role);
    if (!privs_check(&l, side, c, role, items, err, sizeof err)) {
        set(j, ST_FAIL, "check the role in the side's url", "privileges cannot be tested on the %s: %s",
            name, err);
        goto cleanup;
    }
    privs_summary(items, NULL, false, reason, sizeof reason, fix, sizeof fix);
    if (reason[0] != '\0') {
        set(j, ST_FAIL, fix, "drd's role %s lacks %s", role[0] ? role : "(current user)", reason);
        goto cleanup;
    }
    privs_summary(items, NULL, true, reason, sizeof reason, fix, sizeof fix);
    if (reason[0] != '\0')
        set(j, ST_WARN, fix, "drd's role %s lacks (optional) %s", role[0] ? role : "(current user)", reason);
    else
        set(j, ST_OK, NULL, "drd's role %s has every privilege the runbooks and [refresh] need in database %s",
            role[0] ? role : "(current user)", db != NULL ? db : "(the URL's)");
cleanup:
    if (c != NULL)
        PQfinish(c);
    if (json_array_size(items) > 0)
        j->items = json_incref(items);
    json_decref(items);
    privs_list_free(&l);
    free(db);
}

static void check_priv_primary(check_job *j) { check_privs(j, PRIV_PRIMARY); }
static void check_priv_backup(check_job *j) { check_privs(j, PRIV_BACKUP); }

/* ------------------------------------------------------------------ */
/* env file, commands, disk                                           */

bool check_env_writable(const config_t *cfg, char *why, size_t wn, char *fix, size_t fn)
{
    const char *path = cfg->app_env_file;
    char dir[PATH_MAX];

    fix[0] = '\0';
    if (path == NULL || *path == '\0') {
        str_copy(fix, "set [app] env_file", fn);
        snprintf(why, wn, "no [app] env_file: switch-env has nothing to rewrite");
        return false;
    }
    if (access(path, F_OK) != 0) {
        str_copy(fix, "create the env file (with the key) or fix [app] env_file", fn);
        snprintf(why, wn, "%s is missing: %s", path, strerror(errno));
        return false;
    }
    if (access(path, R_OK) != 0) {
        str_copy(fix, "give drd read access to the env file", fn);
        snprintf(why, wn, "%s is not readable: %s", path, strerror(errno));
        return false;
    }
    if (access(path, W_OK) != 0) {
        str_copy(fix, "give drd write access to the env file", fn);
        snprintf(why, wn, "%s is not writable: %s", path, strerror(errno));
        return false;
    }
    /* The rule switch-env applies: where the path leads, and who could
     * change that (envfile.c). */
    char real[PATH_MAX];
    if (!envfile_check(path, real, sizeof real, why, wn)) {
        str_copy(fix, "make the file and every directory and link on the way belong to root or to "
                 "the file's owner, none writable by its group or others", fn);
        return false;
    }
    str_copy(dir, real, sizeof dir);
    *strrchr(dir, '/') = '\0';
    if (dir[0] == '\0')
        str_copy(dir, "/", sizeof dir);
    if (access(dir, W_OK) != 0) {
        str_copy(fix, "give drd write access to the env file's directory (it replaces the file by a rename)", fn);
        snprintf(why, wn, "directory %s is not writable: %s", dir, strerror(errno));
        return false;
    }
    snprintf(why, wn, "%s present and writable", path);
    return true;
}

static void check_env_file(check_job *j)
{
    const config_t *cfg = j->cfg;
    const char *path = cfg->app_env_file;
    const char *key = cfg->app_env_key != NULL ? cfg->app_env_key : "DATABASE_URL";
    char err[512], masked[2048], want[2048], why[PATH_MAX + 128], fix[256];
    char *val = NULL;

    if (!check_env_writable(cfg, why, sizeof why, fix, sizeof fix)) {
        set(j, ST_FAIL, fix, "%s", why);
        return;
    }
    val = malloc(8192);
    if (val == NULL) {
        set(j, ST_FAIL, NULL, "out of memory");
        return;
    }
    if (!envfile_get(path, key, val, 8192, err, sizeof err)) {
        if (err[0] == '\0')
            set(j, ST_FAIL, "add KEY=<the active side's app_url> to the env file",
                "%s has no %s (switch-env would append it)", path, key);
        else
            set(j, ST_FAIL, "check the env file", "cannot read %s: %s", path, err);
        goto cleanup;
    }
    const char *active_url = app_url_of(target_of(cfg, j->active));
    if (strcmp(val, active_url) != 0) {
        mask_secrets(val, masked, sizeof masked);
        mask_secrets(active_url, want, sizeof want);
        set(j, ST_FAIL, "run the pending switch, or set the key to the active side's app_url",
            "%s=%s but the active side (%s) has app_url %s", key, masked, j->active, want);
        goto cleanup;
    }
    set(j, ST_OK, NULL, "%s present, writable, %s points at the active side (%s)", path, key, j->active);
cleanup:
    if (val != NULL) {
        explicit_bzero(val, 8192);
        free(val);
    }
}

static bool is_builtin(const char *w)
{
    static const char *const b[] = { "true", "false", ":", "exit", "cd", "echo", "test", "[",
                                     "exec", ".", "set", "export", "printf", "sleep", "kill",
                                     "wait", "eval", "command", "trap", "if", "for", "while",
                                     "case", "{", "(", "!", "unset", "umask", "read", "return" };
    for (size_t i = 0; i < ARRAY_LEN(b); i++)
        if (strcmp(w, b[i]) == 0)
            return true;
    return false;
}

static bool executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Whether the program a shell command starts resolves the way /bin/sh,
 * started by drd in the config's directory, would find it: a builtin, a
 * path (relative ones from the config's directory) to an executable file,
 * or a name on PATH. Leading VAR=value assignments are skipped. */
bool check_command_resolves(const config_t *cfg, const char *cmd, char *why, size_t n)
{
    char word[4096], path[8192];
    const char *p = cmd;
    size_t k = 0;

    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        k = strcspn(p, " \t;|&<>()");
        const char *eq = memchr(p, '=', k);
        if (eq == NULL || eq == p || k == 0)
            break;
        p += k;
    }
    if (k == 0 && *p != '\0')
        k = 1;
    if (k >= sizeof word)
        k = sizeof word - 1;
    memcpy(word, p, k);
    word[k] = '\0';
    size_t wl = strlen(word);
    if (wl >= 2 && (word[0] == '\'' || word[0] == '"') && word[wl - 1] == word[0]) {
        memmove(word, word + 1, wl - 2);
        word[wl - 2] = '\0';
    }
    if (word[0] == '\0') {
        snprintf(why, n, "the command is empty");
        return false;
    }
    if (strchr(word, '/') != NULL) {
        if (word[0] == '/' || cfg->dir == NULL)
            str_copy(path, word, sizeof path);
        else
            snprintf(path, sizeof path, "%s/%s", cfg->dir, word);
        if (!executable(path)) {
            snprintf(why, n, "%s is not an executable file", path);
            return false;
        }
        snprintf(why, n, "%s is an executable file", path);
        return true;
    }
    if (is_builtin(word)) {
        snprintf(why, n, "%s is a shell builtin", word);
        return true;
    }
    const char *env = getenv("PATH");
    char dirs[4096];
    str_copy(dirs, env != NULL ? env : "/usr/local/bin:/usr/bin:/bin", sizeof dirs);
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof path, "%s/%s", *d ? d : ".", word);
        if (executable(path)) {
            snprintf(why, n, "%s resolves to %s", word, path);
            return true;
        }
    }
    snprintf(why, n, "%s is not a shell builtin nor on PATH", word);
    return false;
}

/* One command: "" when resolvable, else why (into why). */
static bool command_ok(const config_t *cfg, const char *what, const char *cmd, char *why, size_t n)
{
    char err[256], sub[600];
    char *x = config_expand(cfg, cmd, err, sizeof err);

    if (x == NULL) {
        snprintf(why, n, "[app] %s: %s", what, err);
        return false;
    }
    bool ok = check_command_resolves(cfg, x, sub, sizeof sub);
    if (!ok)
        snprintf(why, n, "[app] %s: %s", what, sub);
    free(x);
    return ok;
}

static void check_commands(check_job *j)
{
    char why[1024];
    const char *names[] = { "stop", "start" };
    const char *cmds[] = { j->cfg->app_stop, j->cfg->app_start };

    for (size_t i = 0; i < 2; i++) {
        if (cmds[i] == NULL || *cmds[i] == '\0') {
            set(j, ST_FAIL, "set [app] stop and start", "no [app] %s", names[i]);
            return;
        }
        errno = 0;
        if (!command_ok(j->cfg, names[i], cmds[i], why, sizeof why)) {
            set(j, ST_FAIL, "install the program, or fix the command's path", "%s", why);
            return;
        }
    }
    set(j, ST_OK, NULL, "stop and start commands resolve");
}

static void check_disk(check_job *j)
{
    refresh_mode rm = j->cfg->refresh_mode;
    const char *mode = refresh_mode_name(rm);
    char dir[PATH_MAX];
    struct statvfs vs;

    if (rm != REFRESH_DUMP) {
        set(j, ST_OK, NULL, "no dumps ([refresh] mode = %s)", mode);
        return;
    }
    str_copy(dir, j->cfg->refresh_dir != NULL ? j->cfg->refresh_dir : "/var/lib/drd/dumps", sizeof dir);
    while (statvfs(dir, &vs) != 0) {         /* nearest existing parent */
        char *slash = strrchr(dir, '/');
        if (slash == NULL || slash == dir) {
            str_copy(dir, "/", sizeof dir);
            if (statvfs(dir, &vs) != 0) {
                set(j, ST_WARN, NULL, "cannot statvfs %s: %s", j->cfg->refresh_dir, strerror(errno));
                return;
            }
            break;
        }
        *slash = '\0';
    }
    double free_b = (double)vs.f_bavail * (double)vs.f_frsize;
    if (free_b < DUMP_MIN_FREE)
        set(j, ST_WARN, "free disk space, or move [refresh] dir",
            "only %.0f MiB free for dumps in %s", free_b / 1048576.0, dir);
    else
        set(j, ST_OK, NULL, "%.1f GiB free for dumps in %s", free_b / 1073741824.0, dir);
}

/* ------------------------------------------------------------------ */
/* HTTP                                                               */

static size_t discard(char *p, size_t sz, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return sz * n;
}

/* HTTP code, or 0 with err set on a transport error. */
static long http_probe(check_job *j, const char *url, bool head, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    char cerr[CURL_ERROR_SIZE] = "";
    long code = 0;

    if (c == NULL) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return 0;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, budget_ms(j));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, budget_ms(j));
    curl_easy_setopt(c, CURLOPT_USERAGENT, "drctl-check");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    if (head)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    else
        mask_secrets(cerr[0] ? cerr : curl_easy_strerror(rc), err, errlen);
    curl_easy_cleanup(c);
    return code;
}

static void check_health(check_job *j)
{
    char err[512], url[1024];
    const char *h = j->cfg->app_health_url;

    if (h == NULL || *h == '\0') {
        set(j, ST_WARN, "set [app] health_url", "no [app] health_url: wait-healthy cannot check the app");
        return;
    }
    mask_secrets(h, url, sizeof url);
    long code = http_probe(j, h, false, err, sizeof err);
    if (code == 0)
        set(j, ST_FAIL, "start the app, or fix [app] health_url", "%s does not answer: %s", url, err);
    else if (code < 200 || code > 299)
        set(j, ST_FAIL, "make the app healthy, or fix [app] health_url", "%s answered HTTP %ld", url, code);
    else
        set(j, ST_OK, NULL, "%s answered HTTP %ld", url, code);
}

static void check_webhook(check_job *j)
{
    char err[512], host[256] = "";
    const char *w = j->cfg->notify_webhook;

    if (w == NULL || *w == '\0') {
        set(j, ST_OK, NULL, "no webhook configured");
        return;
    }
    /* only the host: the URL usually embeds a token */
    const char *p = strstr(w, "://");
    p = p != NULL ? p + 3 : w;
    const char *at = strchr(p, '@'), *end = p + strcspn(p, "/?#");
    if (at != NULL && at < end)
        p = at + 1;
    size_t hl = (size_t)(p + strcspn(p, "/?#") - p);
    if (hl >= sizeof host)
        hl = sizeof host - 1;
    memcpy(host, p, hl);
    host[hl] = '\0';
    long code = http_probe(j, w, true, err, sizeof err);
    if (code == 0)
        set(j, ST_WARN, "check [notify] webhook and the network", "webhook host %s unreachable: %s", host, err);
    else
        set(j, ST_OK, NULL, "webhook host %s answered HTTP %ld", host, code);
}

/* ------------------------------------------------------------------ */
/* backup-schema: the backup's app database has the app's tables      */

/* The tables of [sync] schemas in the app's database on one side,
 * "schema.table,..." sorted (malloc'd), or NULL with err. */
static char *app_tables(check_job *j, const config_target *t, char *err, size_t errlen)
{
    char *db = pgconn_dbname(app_url_of(t));
    PGconn *c = db_connect(j, t, db, err, errlen);
    free(db);
    if (c == NULL)
        return NULL;
    const char *schemas = j->cfg->sync_schemas != NULL ? j->cfg->sync_schemas : "public";
    const char *params[1] = { schemas };
    PGresult *r = pgconn_exec(c,
        "SELECT coalesce(string_agg(n.nspname || '.' || c.relname, ',' ORDER BY n.nspname, c.relname), '')"
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
        "   AND n.nspname IN (SELECT btrim(x) FROM unnest(string_to_array($1, ',')) x)",
        1, params, err, errlen);
    char *out = NULL;
    if (r != NULL && PQntuples(r) == 1)
        out = strdup(PQgetvalue(r, 0, 0));
    else if (r != NULL)
        str_copy(err, "no result", errlen);
    PQclear(r);
    PQfinish(c);
    return out;
}

/* Is NAME one of the comma-separated LIST? */
static bool in_list(const char *list, const char *name, size_t len)
{
    for (const char *p = list; *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l == len && strncmp(p, name, len) == 0)
            return true;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return false;
}

/* A failover onto a backup whose app database lacks the app's tables
 * would "succeed" onto an empty database: every table of [sync] schemas
 * on the primary must be there on the backup too. */
static void check_backup_schema(check_job *j)
{
    char err[512], missing[REASON_LEN] = "";
    char *p = app_tables(j, &j->cfg->primary, err, sizeof err);
    if (p == NULL) {
        set(j, ST_WARN, NULL, "cannot compare: the primary's app database does not answer: %s", err);
        return;
    }
    char *b = app_tables(j, &j->cfg->backup, err, sizeof err);
    if (b == NULL) {
        set(j, ST_FAIL, "make the app's database reachable on the backup",
            "cannot list the backup's tables: %s", err);
        free(p);
        return;
    }
    size_t n = 0, total = 0, used = 0;
    for (const char *s = p; *s != '\0';) {
        const char *e = strchr(s, ',');
        size_t l = e != NULL ? (size_t)(e - s) : strlen(s);
        total++;
        if (!in_list(b, s, l)) {
            if (n < 5 && used + l + 3 < sizeof missing) {
                used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%.*s", n ? ", " : "",
                                         (int)l, s);
            }
            n++;
        }
        if (e == NULL)
            break;
        s = e + 1;
    }
    if (n > 0)
        set(j, ST_FAIL, "refresh the backup (drctl refresh), or restore the app's schema there",
            "the backup's app database lacks %zu of the primary's %zu tables: %s%s", n, total, missing,
            n > 5 ? ", ..." : "");
    else
        set(j, ST_OK, NULL, "the backup's app database has all %zu tables of the primary's", total);
    free(p);
    free(b);
}

/* ------------------------------------------------------------------ */
/* refresh: reconcile's tables, the egress budget (check_refresh.c)    */

static void check_refresh(check_job *j)
{
    int st = check_refresh_eval(j->cfg, budget_ms(j), j->reason, sizeof j->reason, j->fix, sizeof j->fix);
    j->st = st == 2 ? ST_FAIL : st == 1 ? ST_WARN : ST_OK;
}

/* ------------------------------------------------------------------ */
/* lag                                                                */

/* The rows the last comparison of the two sides left different (status
 * refresh.difference, logical mode); false when none is known. */
static bool known_difference(const check_job *j, long long *rows, long long *found, char *when, size_t n,
                             const char **by)
{
    json_t *d = json_object_get(json_object_get(j->status, "refresh"), "difference");
    if (!json_is_object(d))
        return false;
    *rows = (long long)json_integer_value(json_object_get(d, "rows"));
    *found = (long long)json_integer_value(json_object_get(d, "found"));
    *by = json_string_value(json_object_get(d, "by"));
    if (*by == NULL)
        *by = "?";
    int64_t age = wall_ms() - (int64_t)json_integer_value(json_object_get(d, "at"));
    format_duration(age > 0 ? age : 0, when, n);
    return true;
}

/* Logical mode: replication carries changes only; rows the backup missed
 * (the lag before an outage) stay different until something copies them.
 * verify at a failback finds them, converge copies them (see sync.h). */
static void check_converged(check_job *j)
{
    refresh_mode rm = j->cfg->refresh_mode;
    const char *mode = refresh_mode_name(rm);
    long long rows, found;
    const char *by;
    char when[32];
    if (rm != REFRESH_LOGICAL) {
        set(j, ST_OK, NULL, "[refresh] mode = %s: the backup is as fresh as its last copy (see backup-lag)", mode);
    } else if (j->status == NULL) {
        set(j, ST_WARN, "start drd", "unknown: drd is not running");
    } else if (!known_difference(j, &rows, &found, when, sizeof when, &by)) {
        set(j, ST_OK, NULL, "no difference known (the sides were not compared since the backup was set up)");
    } else if (rows > 0) {
        set(j, ST_FAIL, "drctl refresh (copies the primary whole and subscribes again)",
            "the backup differs from the primary in %lld rows (found by %s %s ago): replication does not"
            " carry them; a failover now would serve them stale or missing", rows, by, when);
    } else {
        set(j, ST_OK, NULL, "the backup equalled the primary %s ago (%s%s%lld rows differed%s)", when, by,
            strcmp(by, "converge") == 0 ? ": " : ", ", found, strcmp(by, "converge") == 0 ? " and were copied" : "");
    }
}

static void check_lag(check_job *j)
{
    const config_t *cfg = j->cfg;
    refresh_mode rm = cfg->refresh_mode;
    double max_s = (double)cfg->refresh_max_lag_ms / 1000.0;
    json_t *lag = json_object_get(json_object_get(json_object_get(j->status, "targets"), "backup"),
                                  "lag_seconds");
    char err[1024], v[64], lagtxt[64];

    if (json_is_number(lag)) {
        double s = json_number_value(lag);
        format_duration((int64_t)(s * 1000.0), lagtxt, sizeof lagtxt);
        long long rows, found;
        const char *by;
        char when[32];
        if (s > max_s)
            set(j, ST_FAIL, "refresh the backup (drctl refresh) or repair [refresh]",
                "the backup is %s behind, over [refresh] max_lag", lagtxt);
        else if (rm == REFRESH_LOGICAL && known_difference(j, &rows, &found, when, sizeof when, &by) &&
                 rows > 0)
            set(j, ST_FAIL, "drctl refresh (see backup-converged)",
                "replication is %s behind, but the backup lacks or has stale %lld rows (found by %s %s ago)",
                lagtxt, rows, by, when);
        else
            set(j, ST_OK, NULL, "the backup is %s behind (max_lag %.0f s)", lagtxt, max_s);
        return;
    }
    if (rm == REFRESH_LOGICAL) {
        /* no figure from the daemon: is there a subscription at all? */
        const char *sub = cfg->refresh_subscription != NULL ? cfg->refresh_subscription : "drd_sub";
        char *db = pgconn_dbname(app_url_of(&cfg->backup));
        PGconn *c = db_connect(j, &cfg->backup, db, err, sizeof err);
        free(db);
        if (c == NULL) {
            set(j, ST_FAIL, "make the backup reachable", "lag unknown, backup unreachable: %s", err);
            return;
        }
        bool ok = db_value(c, "SELECT count(*) FROM pg_subscription WHERE subname = $1",
                           sub, v, sizeof v, err, sizeof err);
        PQfinish(c);
        if (!ok)
            set(j, ST_WARN, NULL, "lag unknown: %s", err);
        else if (strcmp(v, "0") == 0)
            set(j, ST_FAIL, "let drd create it (drctl refresh) or create it by hand",
                "stale: [refresh] mode = logical but the backup has no subscription %s", sub);
        else
            set(j, ST_WARN, "start drd to measure the lag", "lag unknown (subscription %s exists)", sub);
        return;
    }
    set(j, ST_WARN,
        rm == REFRESH_OFF ? "set [refresh] mode = dump or logical, or watch the backup's freshness yourself"
                                 : "start drd, or run drctl refresh",
        "unknown: %s", rm == REFRESH_OFF ? "[refresh] mode = off, drd does not track the backup's lag"
                                                : "drd reports no lag yet");
}

/* ------------------------------------------------------------------ */

static void *run_job(void *arg)
{
    check_job *j = arg;
    j->fn(j);
    return NULL;
}

static json_t *item(const char *name, check_status st, const char *reason, const char *fix)
{
    static const char *const names[] = { "ok", "warn", "fail" };
    char r[REASON_LEN + 256], f[FIX_LEN + 256];

    mask_secrets(reason != NULL ? reason : "", r, sizeof r);
    mask_secrets(fix != NULL ? fix : "", f, sizeof f);
    return json_pack("{s:s, s:s, s:o, s:o}", "name", name, "status", names[st], "reason", json_text(r),
                     "fix", json_text(f));
}

static void active_side(const config_t *cfg, const json_t *status, char *out, size_t n)
{
    const char *a = json_string_value(json_object_get(status, "active"));
    str_copy(out, target_name(TARGET_PRIMARY), n);
    if (a != NULL) {
        str_copy(out, target_name(target_or_primary(a)), n);
        return;
    }
    if (cfg->state_db == NULL || access(cfg->state_db, R_OK) != 0)
        return;
    char err[256], v[32] = "";
    store_t *s = store_open_readonly(cfg->state_db, err, sizeof err);
    if (s != NULL && store_kv_get(s, "active", v, sizeof v))
        str_copy(out, target_name(target_or_primary(v)), n);
    store_close(s);
}

json_t *check_run(const config_t *cfg, const json_t *status, int64_t deadline_ms)
{
    static const struct { const char *name; void (*fn)(check_job *); } table[] = {
        { "primary",            check_primary },
        { "backup",             check_backup },
        { "backup-writable",    check_backup_writable },
        { "backup-schema",      check_backup_schema },
        { "env-file",           check_env_file },
        { "app-commands",       check_commands },
        { "health-url",         check_health },
        { "privileges-backup",  check_priv_backup },
        { "privileges-primary", check_priv_primary },
        { "backup-lag",         check_lag },
        { "backup-converged",   check_converged },
        { "dump-disk",          check_disk },
        { "refresh",            check_refresh },
        { "webhook",            check_webhook },
    };
    check_job jobs[ARRAY_LEN(table)];
    char active[16];
    json_t *out = json_array();
    config_errors errs = { 0 };

    if (out == NULL)
        return NULL;
    active_side(cfg, status, active, sizeof active);
    memset(jobs, 0, sizeof jobs);
    for (size_t i = 0; i < ARRAY_LEN(table); i++) {
        check_job *j = &jobs[i];
        j->name = table[i].name;
        j->fn = table[i].fn;
        j->cfg = cfg;
        j->status = status;
        j->active = active;
        j->deadline_ms = deadline_ms;
        j->st = ST_FAIL;
        str_copy(j->reason, "check did not run", sizeof j->reason);
        if (worker_spawn(&j->thread, false, run_job, j))
            j->started = true;
        else
            run_job(j);                     /* no thread: run it here */
    }

    /* config: the runbooks and what the parser cannot check */
    runbook_t *a = runbook_load(cfg->failover_runbook, cfg, &errs);
    runbook_t *b = runbook_load(cfg->failback_runbook, cfg, &errs);
    bool cfg_ok = a != NULL && b != NULL;
    cfg_ok = refresh_check_config(cfg, &errs) && cfg_ok;
    runbook_free(a);
    runbook_free(b);
    if (cfg_ok && errs.n == 0) {
        char r[PATH_MAX + 64];
        snprintf(r, sizeof r, "%s and both runbooks are valid", cfg->path != NULL ? cfg->path : "config");
        json_array_append_new(out, item("config", ST_OK, r, NULL));
    } else {
        json_t *arr = check_config_failed(&errs);
        json_array_extend(out, arr);
        json_decref(arr);
    }
    config_errors_free(&errs);

    for (size_t i = 0; i < ARRAY_LEN(table); i++) {
        if (jobs[i].started)
            pthread_join(jobs[i].thread, NULL);
        json_t *it = item(jobs[i].name, jobs[i].st, jobs[i].reason, jobs[i].fix);
        if (it != NULL && jobs[i].items != NULL)
            json_object_set(it, "items", jobs[i].items);
        json_decref(jobs[i].items);
        json_array_append_new(out, it);
    }
    return out;
}

json_t *check_config_failed(const config_errors *errs)
{
    char reason[REASON_LEN];

    reason[0] = '\0';
    for (size_t i = 0; errs != NULL && i < errs->n; i++) {
        if (i > 0)
            str_append(reason, sizeof reason, "; ");
        str_append(reason, sizeof reason, errs->msgs[i]);
    }
    if (reason[0] == '\0')
        str_copy(reason, "the configuration cannot be loaded", sizeof reason);
    json_t *arr = json_array();
    if (arr != NULL)
        json_array_append_new(arr, item("config", ST_FAIL, reason, "fix the file (drd -n -c FILE lists every error)"));
    return arr;
}

void check_print(const json_t *checks, FILE *out)
{
    size_t i;
    json_t *c;

    json_array_foreach(checks, i, c) {
        const char *fix = json_string_value(json_object_get(c, "fix"));
        fprintf(out, "%-4s  %-18s  %s", json_string_value(json_object_get(c, "status")),
                json_string_value(json_object_get(c, "name")),
                json_string_value(json_object_get(c, "reason")));
        if (fix != NULL && *fix != '\0' && !str_eq(json_string_value(json_object_get(c, "status")), "ok"))
            fprintf(out, "  (fix: %s)", fix);
        fputc('\n', out);
    }
}

bool check_any_failed(const json_t *checks)
{
    size_t i;
    json_t *c;

    json_array_foreach(checks, i, c)
        if (str_eq(json_string_value(json_object_get(c, "status")), "fail"))
            return true;
    return false;
}
