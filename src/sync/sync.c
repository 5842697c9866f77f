/* sync.c - a sync job: copies what it needs from the config, runs the
 * operation on its own thread (blocking libpq there), and hands the result
 * to the loop through an eventfd the loop watches. A watchdog thread
 * enforces timeout_ms; sync_job_free cancels and joins.
 *
 * Cancelling = shutting the job's sockets down (sync_shutdown_conns): every
 * blocked libpq call returns at once, and the servers, which check their
 * client every second, abort the running statement and roll back. Unlike
 * PQcancel() this cannot itself hang on a frozen server, so the loop
 * thread's sync_job_free() is bounded. */
#include "sync_int.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/core/util.h"
#include "drd/core/worker.h"

struct sync_job {
    loop_t *loop;
    sync_done_cb cb;
    void *arg;
    int efd;                       /* eventfd: the worker is done */
    pthread_t worker, watchdog;
    bool worker_started, watchdog_started;
    bool done;                     /* guarded by ctx.mu */
    pthread_cond_t done_cond;      /* signalled when done (watchdog waits) */
    bool timed_out;
    int64_t t0;
    bool ok;
    sync_ctx ctx;
};

static const char *op_name(sync_op op)
{
    switch (op) {
    case SYNC_CAPTURE: return "capture";
    case SYNC_UNCAPTURE: return "uncapture";
    case SYNC_BACK: return "sync-back";
    case SYNC_VERIFY: return "verify";
    case SYNC_FULL: return "full";
    case SYNC_CONVERGE: return "converge";
    }
    return "?";
}

static void *worker_main(void *arg)
{
    sync_job *j = arg;
    sync_ctx *c = &j->ctx;
    bool ok = false;
    switch (c->op) {
    case SYNC_CAPTURE: ok = sync_op_capture(c); break;
    case SYNC_UNCAPTURE: ok = sync_op_uncapture(c); break;
    case SYNC_BACK:
        ok = c->online ? sync_op_presync(c) : c->full ? sync_op_full(c) : sync_op_back(c);
        break;
    case SYNC_VERIFY:
        ok = (!c->resync || (c->full ? sync_op_full(c) : sync_op_back(c))) &&
             (c->full ? sync_op_verify(c) : sync_op_verify_window(c));
        break;
    case SYNC_FULL: ok = sync_op_full(c); break;
    case SYNC_CONVERGE: ok = sync_op_converge(c); break;
    }
    if (!ok && !sync_failed(c))
        sync_fail(c, "%s failed", op_name(c->op));
    pthread_mutex_lock(&c->mu);
    j->ok = ok && !c->failed;
    j->done = true;
    pthread_cond_signal(&j->done_cond);
    pthread_mutex_unlock(&c->mu);
    worker_notify(j->efd);
    return NULL;
}

static void *watchdog_main(void *arg)
{
    sync_job *j = arg;
    sync_ctx *c = &j->ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (c->timeout_ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(c->timeout_ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&c->mu);
    while (!j->done && !atomic_load(&c->stop)) {
        if (pthread_cond_timedwait(&j->done_cond, &c->mu, &ts) == ETIMEDOUT) {
            if (!j->done)
                j->timed_out = true;
            break;
        }
    }
    bool fire = j->timed_out;
    pthread_mutex_unlock(&c->mu);
    if (fire) {
        char d[32];
        format_duration(c->timeout_ms, d, sizeof(d));
        sync_fail(c, "%s timed out after %s: cancelled", op_name(c->op), d);
        sync_shutdown_conns(c);
    }
    return NULL;
}

static void on_done(loop_t *loop, int fd, short revents, void *arg)
{
    sync_job *j = arg;
    (void)revents;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0 && errno == EAGAIN)
        return;
    loop_del_fd(loop, fd);
    pthread_join(j->worker, NULL);
    j->worker_started = false;
    if (j->watchdog_started) {
        pthread_join(j->watchdog, NULL);
        j->watchdog_started = false;
    }
    sync_ctx *c = &j->ctx;
    sync_result r = { 0 };
    r.ok = j->ok;
    r.conflicts = c->conflicts && !j->ok;
    if (!r.ok)
        str_copy(r.error, c->error[0] ? c->error : "failed", sizeof(r.error));
    r.rows = c->rows;
    r.tables = c->tables;
    r.differing = c->differing;
    r.duration_ms = mono_ms() - j->t0;

    /* The report is masked here once more, whole: it quotes data. */
    size_t n = c->report.len * 2 + 64;
    char *masked = malloc(n);
    if (masked != NULL) {
        mask_secrets(sb_str(&c->report), masked, n);
        log_mask(masked, n);
    }
    r.report = masked != NULL ? masked : "";
    sync_done_cb cb = j->cb;
    void *cbarg = j->arg;
    j->cb = NULL;
    if (cb != NULL)
        cb(cbarg, &r);                     /* may free the job */
    free(masked);
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

/* "a, b ,c" -> "a,b,c" */
static char *clean_list(const char *s, bool *oom)
{
    sbuf b;
    sb_init(&b);
    const char *p = s ? s : "";
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        size_t l = len;
        while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t'))
            l--;
        if (l > 0) {
            if (b.len > 0)
                sb_add(&b, ",");
            sb_addn(&b, p, l);
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (b.oom || b.s == NULL) {
        if (b.oom)
            *oom = true;
        sb_free(&b);
        return *oom ? NULL : strdup("");
    }
    return b.s;
}

static void ctx_free(sync_ctx *c)
{
    free(c->primary_url);
    free(c->primary_password);
    free(c->backup_url);
    free(c->primary_db);
    free(c->backup_db);
    free(c->backup_password);
    free(c->schemas);
    free(c->exclude);
    free(c->fds);
    free(c->since);
    sb_free(&c->report);
    pthread_mutex_destroy(&c->mu);
}

/* What the job's thread needs of the configuration and the request,
 * copied into c (the thread never reads the config). false with err. */
static bool ctx_fill(sync_ctx *c, const config_t *cfg, const sync_request *req, conflicts_mode res,
                     char *err, size_t errlen)
{
    bool oom = false;
    c->primary_url = dup_or_null(cfg->primary.url, &oom);
    c->primary_password = dup_or_null(cfg->primary.password, &oom);
    c->backup_url = dup_or_null(cfg->backup.url, &oom);
    /* The app's data lives in the database its app_url names; drd connects
     * there with its own role (url's user, password, host, TLS). */
    c->primary_db = cfg->primary.app_url ? pgconn_dbname(cfg->primary.app_url) : NULL;
    c->backup_db = cfg->backup.app_url ? pgconn_dbname(cfg->backup.app_url) : NULL;
    char app_db[128];
    if (cfg->backup.app_url == NULL ||
        !pgconn_identity(cfg->backup.app_url, c->backup_app_user, sizeof c->backup_app_user,
                         app_db, sizeof app_db))
        c->backup_app_user[0] = '\0';
    c->backup_password = dup_or_null(cfg->backup.password, &oom);
    c->schemas = clean_list(cfg->sync_schemas ? cfg->sync_schemas : "public", &oom);
    c->exclude = dup_or_null(cfg->sync_exclude, &oom);
    c->resolution = res;
    c->no_pk_copy = cfg->sync_no_pk == NO_PK_COPY;
    c->full = cfg->sync_mode == SYNC_MODE_FULL;
    c->parallel = cfg->sync_parallel >= 1 && cfg->sync_parallel <= 64 ? (int)cfg->sync_parallel : 4;
    c->op = req->op;
    c->resync = req->resync;
    c->online = req->online;
    c->run_id = req->run_id;
    c->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : 0;
    if (oom) {
        str_copy(err, "out of memory", errlen);
        return false;
    }
    if (c->primary_url == NULL || c->backup_url == NULL) {
        str_copy(err, "[primary] url and [backup] url are needed", errlen);
        return false;
    }
    if (c->schemas[0] == '\0') {
        str_copy(err, "[sync] schemas is empty", errlen);
        return false;
    }
    return true;
}

sync_job *sync_start(loop_t *loop, const config_t *cfg, const sync_request *req,
                     sync_done_cb cb, void *arg, char *err, size_t errlen)
{
    conflicts_mode res = cfg->sync_conflicts;
    if (req->resolution != NULL && !conflicts_mode_parse(req->resolution, &res)) {
        snprintf(err, errlen, "unknown conflict resolution '%s' (ask, backup-wins, primary-wins)",
                 req->resolution);
        return NULL;
    }
    sync_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        str_copy(err, "out of memory", errlen);
        return NULL;
    }
    j->loop = loop;
    j->cb = cb;
    j->arg = arg;
    j->efd = -1;
    j->t0 = mono_ms();
    sync_ctx *c = &j->ctx;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->done_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&c->stop, false);

    if (!ctx_fill(c, cfg, req, res, err, errlen))
        goto fail;
    j->efd = worker_eventfd(loop, on_done, j);
    if (j->efd < 0) {
        snprintf(err, errlen, "cannot watch the job's eventfd: %s", strerror(errno));
        goto fail;
    }
    log_info("sync: %s started", op_name(c->op));
    if (!worker_spawn(&j->worker, false, worker_main, j)) {
        snprintf(err, errlen, "cannot start a thread: %s", strerror(errno));
        loop_del_fd(loop, j->efd);
        goto fail;
    }
    j->worker_started = true;
    if (c->timeout_ms > 0) {
        if (!worker_spawn(&j->watchdog, false, watchdog_main, j)) {
            snprintf(err, errlen, "cannot start a thread: %s", strerror(errno));
            sync_job_free(j);
            return NULL;
        }
        j->watchdog_started = true;
    }
    return j;
fail:
    if (j->efd >= 0)
        close(j->efd);
    pthread_cond_destroy(&j->done_cond);
    ctx_free(c);
    free(j);
    return NULL;
}

char *sync_job_progress(const sync_job *j)
{
    sync_ctx *c = (sync_ctx *)&j->ctx;
    pthread_mutex_lock(&c->mu);
    size_t n = c->report.len * 2 + 64;
    char *out = malloc(n);
    if (out != NULL)
        mask_secrets(sb_str(&c->report), out, n);
    pthread_mutex_unlock(&c->mu);
    if (out != NULL)
        log_mask(out, n);
    return out;
}

void sync_job_free(sync_job *j)
{
    if (j == NULL)
        return;
    sync_ctx *c = &j->ctx;
    if (j->worker_started) {
        /* Still running: cancel, no callback. */
        j->cb = NULL;
        pthread_mutex_lock(&c->mu);
        c->cancelled = true;
        pthread_mutex_unlock(&c->mu);
        sync_shutdown_conns(c);
        pthread_mutex_lock(&c->mu);
        pthread_cond_broadcast(&j->done_cond);
        pthread_mutex_unlock(&c->mu);
        pthread_join(j->worker, NULL);
        log_info("sync: %s cancelled", op_name(c->op));
    }
    if (j->watchdog_started) {
        pthread_mutex_lock(&c->mu);
        pthread_cond_broadcast(&j->done_cond);
        pthread_mutex_unlock(&c->mu);
        pthread_join(j->watchdog, NULL);
    }
    if (j->efd >= 0) {
        loop_del_fd(j->loop, j->efd);
        close(j->efd);
    }
    pthread_cond_destroy(&j->done_cond);
    ctx_free(c);
    free(j);
}
