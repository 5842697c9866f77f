/* refresh_job.c - one refresh, run as a table-driven sequence of phases.
 *
 * Each phase has an enter function that starts one piece of asynchronous
 * work (a pgexec on one of the servers, or a child process) and returns
 * PHASE_ASYNC, or finishes at once (PHASE_OK: nothing to do, PHASE_FAILED).
 * When the work ends, refresh_job_phase_done() moves on. The main sequences:
 *
 *   dump:     primary-info backup-info db-spec scrub-new prepare
 *             copying verifying indexing swap keep done drop-old
 *   logical:  primary-info backup-info publish unsubscribe drop-slot
 *             db-spec scrub-new prepare schema subscribe initial-copy pause
 *             swap resume done drop-old
 *
 * The backup's live database is never written to: everything is built in a
 * scratch database (<db>_drd_new) and swapped in by renaming both databases
 * in one transaction (PH_SWAP). A failure before the swap switches to the
 * cleanup sequence (clean-scrub clean-slot clean-drop: the scratch
 * database and what was made for it go away) and the refresh ends failed;
 * after the swap only soft phases remain (keep, done, drop-old). The
 * success is recorded by `done`, as soon as the new copy is live; dropping
 * the previous copy is housekeeping that follows (the refresh stays busy
 * until it ends). A guard timer
 * aborts the refresh if a runbook run starts, the app moves to the backup
 * or the primary's breaker opens, except during the swap itself. */
#include "refresh_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

#define GUARD_EVERY_MS   1000
#define SQL_SHORT_MS     30000
#define SQL_CREATE_MS    120000
#define SQL_SWAP_MS      60000
#define SQL_DROP_MS      600000

static int primary_info_enter(job_t *j);
static int backup_info_enter(job_t *j);
static int db_spec_enter(job_t *j);
static int scrub_new_enter(job_t *j);
static int prepare_enter(job_t *j);
static int swap_enter(job_t *j);
static int drop_old_enter(job_t *j);
static int clean_drop_enter(job_t *j);
static int done_enter(job_t *j);

typedef struct {
    const char *name;
    int (*enter)(job_t *j);
    bool guarded;            /* the guard may abort it */
    bool soft;               /* a failure is logged, the refresh goes on */
} phase_def;

static const phase_def phases[PH_END + 1] = {
    [PH_PRIMARY_INFO]    = { "primary-info", primary_info_enter, true, false },
    [PH_BACKUP_INFO]     = { "backup-info", backup_info_enter, true, false },
    [PH_DB_SPEC]         = { "db-spec", db_spec_enter, true, false },
    [PH_SCRUB_NEW]       = { "scrub-new", scrub_new_enter, true, false },
    [PH_PREPARE]         = { "prepare", prepare_enter, true, false },
    [PH_DUMP_COPY]       = { "copying", refresh_dump_copy_enter, true, false },
    [PH_DUMP_VERIFY]     = { "verifying", refresh_dump_verify_enter, true, false },
    [PH_DUMP_POSTDATA]   = { "indexing", refresh_dump_postdata_enter, true, false },
    [PH_LOG_PUBLISH]     = { "publish", refresh_logical_publish_enter, true, false },
    [PH_LOG_UNSUBSCRIBE] = { "unsubscribe", refresh_logical_unsubscribe_enter, true, false },
    [PH_LOG_DROP_SLOT]   = { "drop-slot", refresh_logical_drop_slot_enter, true, false },
    [PH_LOG_SCHEMA]      = { "schema", refresh_logical_schema_enter, true, false },
    [PH_LOG_SUBSCRIBE]   = { "subscribe", refresh_logical_subscribe_enter, true, false },
    [PH_LOG_SYNC]        = { "initial-copy", refresh_logical_sync_enter, true, false },
    [PH_LOG_PAUSE]       = { "pause", refresh_logical_pause_enter, true, false },
    [PH_SWAP]            = { "swap", swap_enter, false, false },
    [PH_LOG_RESUME]      = { "resume", refresh_logical_resume_enter, false, false },
    [PH_DONE]            = { "done", done_enter, false, true },
    [PH_DROP_OLD]        = { "drop-old", drop_old_enter, false, true },
    [PH_DUMP_KEEP]       = { "keep", refresh_dump_keep_enter, false, true },
    [PH_CLEAN_SCRUB]     = { "clean-scrub", refresh_logical_clean_scrub_enter, false, true },
    [PH_CLEAN_SLOT]      = { "clean-slot", refresh_logical_clean_slot_enter, false, true },
    [PH_CLEAN_DROP]      = { "clean-drop", clean_drop_enter, false, true },
    [PH_REC_PASS]        = { "pass", refresh_reconcile_pass_enter, true, false },
    [PH_END]             = { "end", NULL, false, false },
};

static const phase_id dump_seq[] = {
    PH_PRIMARY_INFO, PH_BACKUP_INFO, PH_DB_SPEC, PH_SCRUB_NEW, PH_PREPARE,
    PH_DUMP_COPY, PH_DUMP_VERIFY, PH_DUMP_POSTDATA, PH_SWAP, PH_DUMP_KEEP, PH_DONE, PH_DROP_OLD,
};
static const phase_id logical_seq[] = {
    PH_PRIMARY_INFO, PH_BACKUP_INFO, PH_LOG_PUBLISH, PH_LOG_UNSUBSCRIBE, PH_LOG_DROP_SLOT,
    PH_DB_SPEC, PH_SCRUB_NEW, PH_PREPARE, PH_LOG_SCHEMA, PH_LOG_SUBSCRIBE, PH_LOG_SYNC,
    PH_LOG_PAUSE, PH_SWAP, PH_LOG_RESUME, PH_DONE, PH_DROP_OLD,
};
static const phase_id reconcile_seq[] = { PH_REC_PASS, PH_DONE };
static const phase_id cleanup_seq[] = { PH_CLEAN_SCRUB, PH_CLEAN_SLOT, PH_CLEAN_DROP };

static void job_run(job_t *j);
static void job_finish(job_t *j);

/* ---- errors ------------------------------------------------------------ */

void refresh_job_fail(job_t *j, const char *fmt, ...)
{
    va_list ap;
    /* children and servers may echo connection strings: mask them (whole,
     * then cut). On the cleanup path the first error stays the refresh's error. */
    char *dst = j->cleaning ? j->clean_error : j->error;
    va_start(ap, fmt);
    mask_vformat(dst, sizeof j->error, "\xE2\x80\xA6", fmt, ap);
    va_end(ap);
}

/* ---- the driver ----------------------------------------------------------- */

const char *refresh_job_phase_name(const job_t *j)
{
    return phases[j->phase].name;
}

/* A phase failed: a soft one or one on the cleanup path is logged and the
 * sequence goes on; any other switches to the cleanup sequence. */
static void phase_failed(job_t *j)
{
    if (j->cleaning || phases[j->phase].soft) {
        const char *e = j->cleaning ? j->clean_error : j->error;
        log_warn("refresh %" PRId64 ": %s: %s (continuing)", j->rec.id, phases[j->phase].name,
                 e[0] ? e : "failed");
        if (!j->cleaning)
            j->error[0] = '\0';
        j->clean_error[0] = '\0';
        return;
    }
    if (j->error[0] == '\0')
        refresh_job_fail(j, "%s failed", phases[j->phase].name);
    log_error("refresh %" PRId64 " (%s) failed during %s: %s", j->rec.id, j->rec.mode,
              phases[j->phase].name, j->error);
    j->cleaning = true;
    j->seq = cleanup_seq;
    j->n_seq = ARRAY_LEN(cleanup_seq);
    j->idx = 0;
}

static void job_run(job_t *j)
{
    for (;;) {
        if (j->done_early && !j->cleaning)
            j->idx = j->n_seq;
        if (j->idx >= j->n_seq) {
            job_finish(j);
            return;
        }
        j->phase = j->seq[j->idx++];
        log_debug("refresh %" PRId64 ": phase %s", j->rec.id, phases[j->phase].name);
        int rc = phases[j->phase].enter(j);
        if (rc == PHASE_ASYNC)
            return;
        if (rc == PHASE_FAILED)
            phase_failed(j);
    }
}

void refresh_job_phase_done(job_t *j, bool ok)
{
    if (!ok)
        phase_failed(j);
    job_run(j);
}

static void on_start(loop_t *loop, void *arg)
{
    job_t *j = arg;
    j->poll_timer = 0;
    job_run(j);
}

static void on_guard(loop_t *loop, void *arg)
{
    job_t *j = arg;
    j->guard_timer = loop_add_timer(loop, GUARD_EVERY_MS, on_guard, j);
    if (j->cleaning || !phases[j->phase].guarded)
        return;
    char why[256];
    if (!refresh_interlock(j->r, why, sizeof why))
        refresh_job_abort(j, why);
}

bool refresh_job_abort(job_t *j, const char *why)
{
    if (j->cleaning)
        return false;
    if (!phases[j->phase].guarded) {
        /* the swap and what follows it are short and must not be cut */
        log_warn("refresh %" PRId64 ": not stopping during %s (%s): it ends in a moment",
                 j->rec.id, phases[j->phase].name, why);
        return false;
    }
    pgexec_free(j->sql);
    j->sql = NULL;
    refresh_reconcile_pass_free(j->rp);   /* an open backup transaction rolls back */
    j->rp = NULL;
    proc_free(j->proc);            /* kills the process group */
    j->proc = NULL;
    loop_cancel_timer(j->r->loop, j->poll_timer);
    j->poll_timer = 0;
    refresh_job_fail(j, "stopped during %s: %s", phases[j->phase].name, why);
    phase_failed(j);
    job_run(j);
    return true;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

job_t *refresh_job_start(refresh_t *r, job_kind kind, int64_t id, const char *trigger, char *err, size_t errlen)
{
    const config_t *c = r->cfg;
    job_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    j->r = r;
    j->kind = kind;
    j->rec.id = id;
    str_copy(j->rec.mode, kind == JOB_DUMP ? "dump" : kind == JOB_LOGICAL ? "logical" : "reconcile",
             sizeof j->rec.mode);
    str_copy(j->rec.trigger, trigger, sizeof j->rec.trigger);
    str_copy(j->rec.state, "running", sizeof j->rec.state);
    j->rec.started_at = wall_ms();
    j->seq = kind == JOB_DUMP ? dump_seq : kind == JOB_LOGICAL ? logical_seq : reconcile_seq;
    j->n_seq = kind == JOB_DUMP ? ARRAY_LEN(dump_seq)
             : kind == JOB_LOGICAL ? ARRAY_LEN(logical_seq) : ARRAY_LEN(reconcile_seq);
    j->phase = j->seq[0];
    j->dir = dup_or_null(c->refresh_dir);
    j->pub = dup_or_null(c->refresh_publication);
    j->sub = dup_or_null(c->refresh_subscription);
    j->jobs = c->refresh_jobs > 0 ? c->refresh_jobs : 1;
    j->keep = c->refresh_keep;
    j->max_age_ms = c->refresh_max_age_ms;
    char perr[256];
    if (j->dir == NULL || j->pub == NULL || j->sub == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!refresh_rconn_parse_target(&c->primary, &j->prim, perr, sizeof perr)) {
        snprintf(err, errlen, "[primary] url: %s", perr);
        goto fail;
    }
    if (!refresh_rconn_parse_target(&c->backup, &j->back, perr, sizeof perr)) {
        snprintf(err, errlen, "[backup] url: %s", perr);
        goto fail;
    }
    j->c_prim = refresh_rconn_string(&j->prim, NULL, false, j->prim.password != NULL);
    j->c_back = refresh_rconn_string(&j->back, NULL, false, j->back.password != NULL);
    if (j->c_prim == NULL || j->c_back == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    j->poll_timer = loop_add_timer(r->loop, 0, on_start, j);
    j->guard_timer = loop_add_timer(r->loop, GUARD_EVERY_MS, on_guard, j);
    if (j->poll_timer == 0 || j->guard_timer == 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return j;
fail:
    refresh_job_free(j);
    return NULL;
}

void refresh_job_free(job_t *j)
{
    if (j == NULL)
        return;
    pgexec_free(j->sql);
    refresh_reconcile_pass_free(j->rp);
    proc_free(j->proc);
    loop_cancel_timer(j->r->loop, j->poll_timer);
    loop_cancel_timer(j->r->loop, j->guard_timer);
    if (j->tmpdir[0] != '\0' && !refresh_rm_tree(j->tmpdir))
        log_warn("refresh: cannot remove %s: %s", j->tmpdir, strerror(errno));
    refresh_rconn_free(&j->prim);
    refresh_rconn_free(&j->back);
    free(j->c_prim);
    free(j->c_back);
    free(j->c_maint);
    free(j->c_new);
    free(j->db);
    free(j->new_db);
    free(j->old_db);
    free(j->maint_db);
    free(j->create_sql);
    free(j->settings_sql);
    free(j->dir);
    free(j->pub);
    free(j->sub);
    free(j);
}

/* The outcome as the record shows it (done once, by PH_DONE or the end). */
static void set_outcome(job_t *j)
{
    j->rec.finished_at = wall_ms();
    if (j->kind == JOB_RECONCILE)
        j->rec.bytes = j->egress;     /* what it read, whatever the outcome */
    if (j->cleaning) {
        str_copy(j->rec.state, "failed", sizeof j->rec.state);
        str_copy(j->rec.error, j->error, sizeof j->rec.error);
        if (j->kind != JOB_RECONCILE)
            j->rec.bytes = 0;
        j->rec.file[0] = '\0';
    } else {
        str_copy(j->rec.state, "succeeded", sizeof j->rec.state);
        j->rec.error[0] = '\0';
    }
}

static void job_finish(job_t *j)
{
    loop_cancel_timer(j->r->loop, j->guard_timer);
    j->guard_timer = 0;
    if (!j->recorded)
        set_outcome(j);
    if (j->tmpdir[0] != '\0') {
        if (!refresh_rm_tree(j->tmpdir))
            log_warn("refresh: cannot remove %s: %s", j->tmpdir, strerror(errno));
        j->tmpdir[0] = '\0';
    }
    refresh_job_ended(j->r, j);        /* records and frees j */
}

/* ---- building blocks ------------------------------------------------------ */

static void on_sql(void *arg, const pgexec_result *res)
{
    job_t *j = arg;
    pgexec_free(j->sql);
    j->sql = NULL;
    bool ok = res->ok;
    if (!ok && (j->sql_flags & JOB_SQL_MISSING_OK) && strstr(res->error, "does not exist") != NULL) {
        log_debug("refresh %" PRId64 ": %s: nothing to do (%s)", j->rec.id, j->sql_what, res->error);
        refresh_job_phase_done(j, true);
        return;
    }
    if (!ok)
        refresh_job_fail(j, "%s: %s", j->sql_what, res->error);
    else if (j->sql_cb != NULL && !j->sql_cb(j, res->last_value))
        ok = false;
    if (ok && j->again) {
        j->again = false;
        if (refresh_job_poll_later(j, 1000, j->poll_fn) == PHASE_ASYNC)
            return;
        ok = false;
    }
    refresh_job_phase_done(j, ok);
}

int refresh_job_sql(job_t *j, const char *conninfo, const char *password, const char *const *stmts,
            size_t n, int64_t timeout_ms, job_sql_cb on_ok, const char *what, unsigned flags)
{
    j->sql_cb = on_ok;
    j->sql_flags = flags;
    str_copy(j->sql_what, what, sizeof j->sql_what);
    /* First, in every session: drd's own work is never stopped by a fence
     * (the backup is read-only for the app after a failback: a refresh
     * then replaces its subscription or its database), as in the runbook
     * helpers' and sync's sessions. */
    const char **all = calloc(n + 1, sizeof *all);
    if (all != NULL) {
        all[0] = "SET default_transaction_read_only = off";
        for (size_t i = 0; i < n; i++)
            all[i + 1] = stmts[i];
        j->sql = pgexec_start(j->r->loop, conninfo, password, all, n + 1, timeout_ms, on_sql, j);
        free(all);
    }
    if (all == NULL || j->sql == NULL) {
        refresh_job_fail(j, "%s: out of memory", what);
        return PHASE_FAILED;
    }
    return PHASE_ASYNC;
}

static void on_cmd(void *arg, const proc_result *res)
{
    job_t *j = arg;
    store_kv_set(j->r->store, REFRESH_PGID_KEY, "");
    bool ok = j->cmd_cb(j, res);
    proc_free(j->proc);
    j->proc = NULL;
    refresh_job_phase_done(j, ok);
}

int refresh_job_cmd(job_t *j, const char *command, int64_t timeout_ms, job_cmd_cb on_exit)
{
    char err[256];
    proc_spec spec = {
        .command = command,
        .timeout_ms = timeout_ms,
        .grace_ms = 5000,
        .cwd = j->tmpdir,
        .output_cap = 16384,
    };
    j->cmd_cb = on_exit;
    char masked[1024];
    mask_secrets(command, masked, sizeof masked);
    log_debug("refresh %" PRId64 ": running %s", j->rec.id, masked);
    j->proc = proc_spawn(j->r->loop, &spec, on_cmd, j, err, sizeof err);
    if (j->proc == NULL) {
        refresh_job_fail(j, "cannot start a child process: %s", err);
        return PHASE_FAILED;
    }
    /* Its process group, so that a drd killed meanwhile can end a
     * pg_dump / pg_restore left running (refresh_kill_leftover). */
    char pgid[48];
    snprintf(pgid, sizeof pgid, "%ld:%lld", (long)proc_pid(j->proc), (long long)(wall_ms() / 1000));
    store_kv_set(j->r->store, REFRESH_PGID_KEY, pgid);
    return PHASE_ASYNC;
}

static void on_poll(loop_t *loop, void *arg)
{
    job_t *j = arg;
    j->poll_timer = 0;
    int rc = j->poll_fn(j);
    if (rc == PHASE_ASYNC)
        return;
    refresh_job_phase_done(j, rc == PHASE_OK);
}

int refresh_job_poll_later(job_t *j, int64_t delay_ms, int (*fn)(job_t *j))
{
    j->poll_fn = fn;
    j->poll_timer = loop_add_timer(j->r->loop, delay_ms, on_poll, j);
    if (j->poll_timer == 0) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    return PHASE_ASYNC;
}

char *refresh_job_client(job_t *j, const char *program, bool primary_side)
{
    char path[PATH_MAX];
    if (j->bindir[0] != '\0')
        snprintf(path, sizeof path, "%s/%s", j->bindir, program);
    else
        str_copy(path, program, sizeof path);
    char *qprog = refresh_sh_quote(path);
    if (qprog == NULL)
        return NULL;
    /* Restores into the scratch database need no synchronous commits: the
     * swap's commit flushes all of it, and a crash before discards it. It
     * is created like the live database, with its settings: a backup
     * fenced after a failback (default_transaction_read_only) would refuse
     * the restore, which is drd's own work. */
    if (!primary_side) {
        char *p = refresh_xasprintf("PGOPTIONS='-c synchronous_commit=off -c default_transaction_read_only=off' %s",
                                    qprog);
        free(qprog);
        if (p == NULL)
            return NULL;
        qprog = p;
    }
    const rconn *c = primary_side ? &j->prim : &j->back;
    if (c->password == NULL)
        return qprog;
    char pass[PATH_MAX];
    snprintf(pass, sizeof pass, "%s/%s.pgpass", j->tmpdir, primary_side ? "primary" : "backup");
    char *qpass = refresh_sh_quote(pass);
    char *out = qpass ? refresh_xasprintf("PGPASSFILE=%s %s", qpass, qprog) : NULL;
    free(qpass);
    free(qprog);
    return out;
}

int refresh_job_out_rc(const proc_result *res, const char *name)
{
    int rc = -1;
    size_t nlen = strlen(name);
    const char *out = res->output != NULL ? res->output : "";
    for (const char *line = out; *line; ) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, "rc ", 3) == 0 && strncmp(line + 3, name, nlen) == 0 && line[3 + nlen] == ' ') {
            char *end;
            long v = strtol(line + 4 + nlen, &end, 10);
            if (end != line + 4 + nlen && v >= 0 && v < 1000)
                rc = (int)v;
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return rc;
}

void refresh_job_out_message(const proc_result *res, const char *prog, char *out, size_t n)
{
    const char *text = res->output != NULL ? res->output : "";
    const char *first_error = NULL, *last = NULL;
    size_t plen = strlen(prog);
    for (const char *line = text; *line; ) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > plen && strncmp(line, prog, plen) == 0 && line[plen] == ':') {
            last = line;
            if (first_error == NULL && memmem(line, len, "error", 5) != NULL)
                first_error = line;
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    const char *pick = first_error != NULL ? first_error : last;
    out[0] = '\0';
    if (pick == NULL)
        return;
    const char *nl = strchr(pick, '\n');
    size_t len = nl ? (size_t)(nl - pick) : strlen(pick);
    if (len >= n)
        len = n - 1;
    memcpy(out, pick, len);
    out[len] = '\0';
}

/* ---- shared phases ---------------------------------------------------------- */

static bool make_tmpdir(job_t *j)
{
    char err[256];
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/.", j->dir);
    if (!mkdir_parents(probe, 0700, err, sizeof err)) {
        refresh_job_fail(j, "%s", err);
        return false;
    }
    if ((size_t)snprintf(j->tmpdir, sizeof j->tmpdir, "%s/" TMP_PREFIX "XXXXXX", j->dir) >= sizeof j->tmpdir ||
        mkdtemp(j->tmpdir) == NULL) {
        refresh_job_fail(j, "cannot create a temporary directory in %s: %s", j->dir, strerror(errno));
        j->tmpdir[0] = '\0';
        return false;
    }
    char path[PATH_MAX];
    if (j->prim.password != NULL) {
        snprintf(path, sizeof path, "%s/primary.pgpass", j->tmpdir);
        if (!refresh_pgpass_write(path, j->prim.password, err, sizeof err)) {
            refresh_job_fail(j, "%s", err);
            return false;
        }
    }
    if (j->back.password != NULL) {
        snprintf(path, sizeof path, "%s/backup.pgpass", j->tmpdir);
        if (!refresh_pgpass_write(path, j->back.password, err, sizeof err)) {
            refresh_job_fail(j, "%s", err);
            return false;
        }
    }
    return true;
}

static bool parse_version(const char *v, int *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < 90000 || n > 9999999)
        return false;
    *out = (int)n;
    return true;
}

static bool primary_info_done(job_t *j, const char *value)
{
    if (!parse_version(value, &j->prim_version)) {
        refresh_job_fail(j, "the primary reported server_version_num '%s'", value);
        return false;
    }
    refresh_pg_bindir(j->prim_version, NULL, j->bindir, sizeof j->bindir);
    log_info("refresh %" PRId64 ": primary is PostgreSQL %d; using %s", j->rec.id, j->prim_version / 10000,
             j->bindir[0] ? j->bindir : "the client programs in PATH");
    return true;
}

static int primary_info_enter(job_t *j)
{
    if (!make_tmpdir(j))
        return PHASE_FAILED;
    static const char *const q[] = { "SELECT current_setting('server_version_num')" };
    return refresh_job_sql(j, j->c_prim, j->prim.password, q, 1, SQL_SHORT_MS, primary_info_done,
                   "primary", 0);
}

static bool truthy(const char *s)
{
    return strcmp(s, "t") == 0 || strcmp(s, "true") == 0;
}

static bool backup_info_done(job_t *j, const char *value)
{
    char buf[256], *f[5];
    str_copy(buf, value, sizeof buf);
    if (refresh_split_fields(buf, '\x1f', f, 5) != 5 || !parse_version(f[2], &j->back_version)) {
        refresh_job_fail(j, "unexpected answer from the backup");
        return false;
    }
    const char *db = f[0];
    if (strcmp(db, "template0") == 0 || strcmp(db, "template1") == 0) {
        refresh_job_fail(j, "the backup URL names %s: point it at the application's database", db);
        return false;
    }
    if (strlen(db) > 63 - strlen("_drd_new") || strstr(db, "$drd$") != NULL) {
        refresh_job_fail(j, "the backup database name \"%s\" is too long for a scratch copy next to it", db);
        return false;
    }
    j->superuser = truthy(f[1]);
    j->sub_state = refresh_sub_state_of(f[3]);
    long subs = strtol(f[4], NULL, 10);
    j->db = strdup(db);
    j->new_db = refresh_xasprintf("%s_drd_new", db);
    j->old_db = refresh_xasprintf("%s_drd_old", db);
    j->maint_db = strdup(strcmp(db, "postgres") == 0 ? "template1" : "postgres");
    if (j->db == NULL || j->new_db == NULL || j->old_db == NULL || j->maint_db == NULL) {
        refresh_job_fail(j, "out of memory");
        return false;
    }
    j->c_maint = refresh_rconn_string(&j->back, j->maint_db, false, j->back.password != NULL);
    j->c_new = refresh_rconn_string(&j->back, j->new_db, false, j->back.password != NULL);
    if (j->c_maint == NULL || j->c_new == NULL) {
        refresh_job_fail(j, "out of memory");
        return false;
    }
    if (j->kind == JOB_DUMP && subs > 0) {
        refresh_job_fail(j, "the backup database %s has a logical replication subscription: a dump refresh "
                    "would replace what it writes into; drop it or use [refresh] mode = logical", db);
        return false;
    }
    if (j->kind == JOB_LOGICAL && j->back_version < 100000) {
        refresh_job_fail(j, "logical replication needs PostgreSQL 10 or later on the backup");
        return false;
    }
    if (j->kind == JOB_LOGICAL && j->sub_state == SUB_ENABLED) {
        /* enabled and, as far as the watcher knows, working: nothing to
         * do; enabled but broken (worker down, errors): copy again */
        const rwatch_t *w = &j->r->w;
        if (w->enabled && w->error[0] != '\0') {
            log_warn("refresh %" PRId64 ": the subscription %s is enabled but %s: copying again",
                     j->rec.id, j->sub, w->error);
            j->sub_state = SUB_BROKEN;
        } else {
            log_info("refresh %" PRId64 ": the subscription %s is in place and enabled: nothing to do",
                     j->rec.id, j->sub);
            j->done_early = true;
        }
    }
    return true;
}

static int backup_info_enter(job_t *j)
{
    char *lit = refresh_sql_literal(j->sub);
    char *q = lit ? refresh_xasprintf(
        "SELECT concat_ws(chr(31), current_database(),"
        " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
        " current_setting('server_version_num'),"
        " coalesce((SELECT CASE WHEN subenabled THEN 'enabled' ELSE 'disabled' END"
        "   FROM pg_subscription WHERE subname = %s"
        "   AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())), 'missing'),"
        " (SELECT count(*) FROM pg_subscription"
        "   WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())))", lit) : NULL;
    free(lit);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_back, j->back.password, stmts, 1, SQL_SHORT_MS, backup_info_done, "backup", 0);
    free(q);
    return rc;
}

/* GUCs whose stored value is a list to be written unquoted (pg_dump's list). */
static const char *const list_gucs =
    "ARRAY['local_preload_libraries','search_path','session_preload_libraries',"
    "'shared_preload_libraries','temp_tablespaces','unix_socket_directories']";

static bool db_spec_done(job_t *j, const char *value)
{
    char buf[256], *f[8];
    str_copy(buf, value, sizeof buf);
    size_t nf = refresh_split_fields(buf, '\x1f', f, 8);
    if (nf < 6) {
        refresh_job_fail(j, "cannot read how the backup database %s was created", j->db);
        return false;
    }
    char *new_id = refresh_sql_ident(j->new_db), *enc = refresh_sql_literal(f[0]), *col = refresh_sql_literal(f[1]),
         *ctype = refresh_sql_literal(f[2]), *owner = refresh_sql_ident(f[3]), *spc = refresh_sql_ident(f[5]),
         *icu = nf >= 8 ? refresh_sql_literal(f[7]) : NULL;
    char *old_lit = refresh_sql_literal(j->db), *new_lit = refresh_sql_literal(j->new_db);
    long connlimit = strtol(f[4], NULL, 10);
    bool ok = false;
    if (new_id && enc && col && ctype && owner && spc && old_lit && new_lit && (nf < 8 || icu)) {
        char icu_part[300] = "", owner_part[100] = "", spc_part[100] = "", limit_part[48] = "";
        if (nf >= 8 && strcmp(f[6], "i") == 0)
            snprintf(icu_part, sizeof icu_part, " LOCALE_PROVIDER icu ICU_LOCALE %s", icu);
        if (j->superuser)
            snprintf(owner_part, sizeof owner_part, " OWNER %s", owner);
        if (strcmp(f[5], "pg_default") != 0)
            snprintf(spc_part, sizeof spc_part, " TABLESPACE %s", spc);
        if (connlimit >= 0)
            snprintf(limit_part, sizeof limit_part, " CONNECTION LIMIT %ld", connlimit);
        j->create_sql = refresh_xasprintf("CREATE DATABASE %s TEMPLATE template0 ENCODING %s LC_COLLATE %s"
                                  " LC_CTYPE %s%s%s%s%s", new_id, enc, col, ctype, icu_part,
                                  owner_part, spc_part, limit_part);
        /* The live database's grants and per-database settings, onto the new one. */
        j->settings_sql = refresh_xasprintf(
            "DO $drd$ DECLARE r record; BEGIN\n"
            "  IF (SELECT datacl IS NOT NULL FROM pg_database WHERE datname = %s) THEN\n"
            "    EXECUTE format('REVOKE ALL ON DATABASE %%I FROM PUBLIC', %s);\n"
            "    FOR r IN SELECT a.privilege_type, a.grantee, a.is_grantable\n"
            "             FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s LOOP\n"
            "      EXECUTE format('GRANT %%s ON DATABASE %%I TO %%s%%s', r.privilege_type, %s,\n"
            "        CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,\n"
            "        CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);\n"
            "    END LOOP;\n"
            "  END IF;\n"
            "  FOR r IN SELECT s.setrole, split_part(kv, '=', 1) AS k, substr(kv, strpos(kv, '=') + 1) AS v\n"
            "           FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase,\n"
            "                unnest(s.setconfig) AS kv WHERE d.datname = %s LOOP\n"
            "    EXECUTE format('ALTER %%s SET %%I = %%s',\n"
            "      CASE WHEN r.setrole = 0 THEN format('DATABASE %%I', %s)\n"
            "           ELSE format('ROLE %%I IN DATABASE %%I', pg_get_userbyid(r.setrole), %s) END,\n"
            "      r.k, CASE WHEN r.k = ANY (%s) THEN r.v ELSE quote_literal(r.v) END);\n"
            "  END LOOP;\n"
            "END $drd$",
            old_lit, new_lit, old_lit, new_lit, old_lit, new_lit, new_lit, list_gucs);
        ok = j->create_sql != NULL && j->settings_sql != NULL;
        if (!ok)
            refresh_job_fail(j, "out of memory");
    } else {
        refresh_job_fail(j, "out of memory");
    }
    free(new_id);
    free(enc);
    free(col);
    free(ctype);
    free(owner);
    free(spc);
    free(icu);
    free(old_lit);
    free(new_lit);
    return ok;
}

static int db_spec_enter(job_t *j)
{
    char *lit = refresh_sql_literal(j->db);
    char *q = lit ? refresh_xasprintf(
        "SELECT concat_ws(chr(31), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,"
        " pg_get_userbyid(d.datdba), d.datconnlimit, t.spcname%s)"
        " FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s",
        j->back_version >= 150000 ? ", d.datlocprovider, coalesce(d.daticulocale, '')" : "", lit) : NULL;
    free(lit);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_maint, j->back.password, stmts, 1, SQL_SHORT_MS, db_spec_done,
                     "backup (maintenance database)", 0);
    free(q);
    return rc;
}

/* A scratch database left by an interrupted refresh may hold a
 * subscription, which DROP DATABASE refuses: drop it first. */
static int scrub_new_enter(job_t *j)
{
    char *q = refresh_sql_drop_subscriptions(NULL);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_new, j->back.password, stmts, 1, SQL_SHORT_MS, NULL,
                     "backup (stale scratch database)", JOB_SQL_MISSING_OK);
    free(q);
    return rc;
}

static const char *force(const job_t *j)
{
    return j->back_version >= 130000 ? " WITH (FORCE)" : "";
}

static bool prepare_done(job_t *j, const char *value)
{
    log_info("refresh %" PRId64 ": created the scratch database %s on the backup", j->rec.id, j->new_db);
    return true;
}

static int prepare_enter(job_t *j)
{
    char *new_id = refresh_sql_ident(j->new_db), *old_id = refresh_sql_ident(j->old_db);
    char *d1 = new_id ? refresh_xasprintf("DROP DATABASE IF EXISTS %s%s", new_id, force(j)) : NULL;
    char *d2 = old_id ? refresh_xasprintf("DROP DATABASE IF EXISTS %s%s", old_id, force(j)) : NULL;
    int rc = PHASE_FAILED;
    if (d1 != NULL && d2 != NULL) {
        const char *stmts[] = { d1, d2, j->create_sql, j->settings_sql };
        j->new_created = true;         /* from here on, the cleanup drops it */
        rc = refresh_job_sql(j, j->c_maint, j->back.password, stmts, 4, SQL_CREATE_MS, prepare_done,
                     "backup (creating the scratch database)", 0);
    } else {
        refresh_job_fail(j, "out of memory");
    }
    free(new_id);
    free(old_id);
    free(d1);
    free(d2);
    return rc;
}

static bool swap_done(job_t *j, const char *value)
{
    j->swapped = true;
    log_info("refresh %" PRId64 ": swapped: %s is now the refreshed copy", j->rec.id, j->db);
    return true;
}

/* Both renames in one transaction: the live name always designates a
 * complete database. Sessions on the live database are terminated (the
 * rename needs it alone); a session that arrives meanwhile makes the rename
 * fail with object_in_use, and the whole step is retried. */
static int swap_enter(job_t *j)
{
    char why[256];
    if (!refresh_interlock(j->r, why, sizeof why)) {
        refresh_job_fail(j, "not swapping: %s", why);
        return PHASE_FAILED;
    }
    char *db_lit = refresh_sql_literal(j->db), *new_lit = refresh_sql_literal(j->new_db),
         *db_id = refresh_sql_ident(j->db), *new_id = refresh_sql_ident(j->new_db), *old_id = refresh_sql_ident(j->old_db);
    char *q = NULL;
    if (db_lit && new_lit && db_id && new_id && old_id)
        q = refresh_xasprintf(
            "DO $drd$ DECLARE tries int := 0; BEGIN\n"
            "  LOOP\n"
            "    BEGIN\n"
            "      BEGIN\n"
            "        PERFORM pg_terminate_backend(pid) FROM pg_stat_activity\n"
            "          WHERE datname IN (%s, %s) AND pid <> pg_backend_pid();\n"
            "      EXCEPTION WHEN insufficient_privilege THEN NULL;\n"
            "      END;\n"
            "      IF EXISTS (SELECT 1 FROM pg_database WHERE datname = %s) THEN\n"
            "        ALTER DATABASE %s RENAME TO %s;\n"
            "      END IF;\n"
            "      ALTER DATABASE %s RENAME TO %s;\n"
            "      EXIT;\n"
            "    EXCEPTION WHEN object_in_use THEN\n"
            "      tries := tries + 1;\n"
            "      IF tries >= 5 THEN RAISE; END IF;\n"
            "      PERFORM pg_sleep(0.1);\n"
            "    END;\n"
            "  END LOOP;\n"
            "END $drd$",
            db_lit, new_lit, db_lit, db_id, old_id, new_id, db_id);
    free(db_lit);
    free(new_lit);
    free(db_id);
    free(new_id);
    free(old_id);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_maint, j->back.password, stmts, 1, SQL_SWAP_MS, swap_done,
                     "backup (swapping the databases)", 0);
    free(q);
    return rc;
}

/* The new copy is live (and its file kept): record the success now; the
 * previous copy is dropped afterwards, as housekeeping. */
static int done_enter(job_t *j)
{
    set_outcome(j);
    refresh_job_record(j->r, j);
    return PHASE_OK;
}

static int drop_old_enter(job_t *j)
{
    char *old_id = refresh_sql_ident(j->old_db);
    char *q = old_id ? refresh_xasprintf("DROP DATABASE IF EXISTS %s%s", old_id, force(j)) : NULL;
    free(old_id);
    if (q == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_maint, j->back.password, stmts, 1, SQL_DROP_MS, NULL,
                     "backup (dropping the previous copy)", 0);
    free(q);
    return rc;
}

static int clean_drop_enter(job_t *j)
{
    if (!j->new_created || j->swapped || j->c_maint == NULL)
        return PHASE_OK;
    char *new_id = refresh_sql_ident(j->new_db);
    char *q = new_id ? refresh_xasprintf("DROP DATABASE IF EXISTS %s%s", new_id, force(j)) : NULL;
    free(new_id);
    if (q == NULL)
        return PHASE_FAILED;
    const char *stmts[] = { q };
    int rc = refresh_job_sql(j, j->c_maint, j->back.password, stmts, 1, SQL_DROP_MS, NULL,
                     "backup (dropping the scratch database)", 0);
    free(q);
    return rc;
}
