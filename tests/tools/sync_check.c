/* sync_check - run one sync job (include/drd/sync.h) on the event loop and
 * print its report, then one result line:
 *   ok rows=N tables=N ms=N
 *   fail conflicts=0|1 error=TEXT
 * Usage: sync_check CONFIG OP [--resolution backup-wins|primary-wins]
 *        OP: capture | uncapture | sync-back | pre-sync | verify | full | converge
 *        (pre-sync: sync-back with online = true)
 * Exit: 0 ok, 1 fail, 2 usage or config error.
 * Environment: SYNC_CHECK_TIMEOUT_MS (the request's timeout_ms),
 * SYNC_CHECK_CANCEL_MS=N (sync_job_free() after N ms: prints
 * "cancelled ms=N", waits 300 ms for a callback that must not come, exits 3),
 * SYNC_CHECK_PROGRESS_MS=N (every N ms, the number of report lines so far
 * from sync_job_progress(): "progress lines=N"), SYNC_CHECK_DEBUG (debug
 * logging), SYNC_CHECK_RUN_ID (the request's run_id, default 1: a
 * verify after a pre-sync checks only the touched keys). It also checks that the callback never runs inside
 * sync_start() and may free the job. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/conf/config.h"
#include "drd/core/log.h"
#include "drd/core/loop.h"
#include "drd/sync/sync.h"

typedef struct {
    loop_t *loop;
    sync_job *job;
    bool in_start, done, cancelled, ok;
    int64_t t0;
    long long progress_ms;
} state;

static void on_progress(loop_t *loop, void *arg)
{
    state *s = arg;
    if (s->done || s->cancelled || s->job == NULL)
        return;
    char *p = sync_job_progress(s->job);
    int lines = 0;
    for (const char *c = p ? p : ""; *c; c++)
        lines += *c == '\n';
    printf("progress lines=%d\n", lines);
    fflush(stdout);
    free(p);
    loop_add_timer(loop, s->progress_ms, on_progress, s);
}

static void on_done(void *arg, const sync_result *r)
{
    state *s = arg;
    if (s->in_start || s->cancelled || s->done) {
        printf("bug: callback %s\n", s->in_start ? "inside sync_start" :
               s->cancelled ? "after sync_job_free" : "called twice");
        fflush(stdout);
        abort();
    }
    s->done = true;
    s->ok = r->ok;
    if (r->report != NULL && r->report[0] != '\0')
        fputs(r->report, stdout);
    if (r->ok) {
        printf("differing=%" PRId64 "\n", r->differing);
        printf("ok rows=%" PRId64 " tables=%" PRId64 " ms=%" PRId64 "\n", r->rows, r->tables,
               r->duration_ms);
    } else {
        printf("fail conflicts=%d error=%s\n", r->conflicts ? 1 : 0, r->error);
    }
    fflush(stdout);
    sync_job_free(s->job);               /* allowed from the callback */
    s->job = NULL;
    loop_stop(s->loop);
}

static void on_stop(loop_t *loop, void *arg)
{
    (void)arg;
    loop_stop(loop);
}

static void on_cancel(loop_t *loop, void *arg)
{
    state *s = arg;
    if (s->done)
        return;
    sync_job_free(s->job);
    s->job = NULL;
    s->cancelled = true;
    printf("cancelled ms=%" PRId64 "\n", loop_now(loop) - s->t0);
    fflush(stdout);
    if (loop_add_timer(loop, 300, on_stop, s) == 0)
        loop_stop(loop);
}

static bool parse_num(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0)
        return false;
    *out = v;
    return true;
}

static int usage(void)
{
    fprintf(stderr, "usage: sync_check CONFIG capture|uncapture|sync-back|pre-sync|verify|full|converge"
                    " [--resolution backup-wins|primary-wins]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 5)
        return usage();
    sync_request req = { 0 };
    if (strcmp(argv[2], "capture") == 0)
        req.op = SYNC_CAPTURE;
    else if (strcmp(argv[2], "uncapture") == 0)
        req.op = SYNC_UNCAPTURE;
    else if (strcmp(argv[2], "sync-back") == 0)
        req.op = SYNC_BACK;
    else if (strcmp(argv[2], "pre-sync") == 0) {
        req.op = SYNC_BACK;
        req.online = true;
    } else if (strcmp(argv[2], "verify") == 0)
        req.op = SYNC_VERIFY;
    else if (strcmp(argv[2], "full") == 0)
        req.op = SYNC_FULL;
    else if (strcmp(argv[2], "converge") == 0)
        req.op = SYNC_CONVERGE;
    else
        return usage();
    if (argc == 5) {
        if (strcmp(argv[3], "--resolution") != 0)
            return usage();
        req.resolution = argv[4];
    }
    long long timeout = 0, cancel_ms = -1;
    const char *e = getenv("SYNC_CHECK_TIMEOUT_MS");
    if (e != NULL && !parse_num(e, &timeout))
        return usage();
    e = getenv("SYNC_CHECK_CANCEL_MS");
    if (e != NULL && !parse_num(e, &cancel_ms))
        return usage();
    long long progress_ms = 0;
    e = getenv("SYNC_CHECK_PROGRESS_MS");
    if (e != NULL && (!parse_num(e, &progress_ms) || progress_ms == 0))
        return usage();
    req.timeout_ms = timeout;
    long long run_id = 1;
    e = getenv("SYNC_CHECK_RUN_ID");
    if (e != NULL && !parse_num(e, &run_id))
        return usage();
    req.run_id = run_id;

    config_errors errs = { 0 };
    config_t *cfg = config_load(argv[1], &errs);
    if (cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        config_errors_free(&errs);
        return 2;
    }
    config_errors_free(&errs);
    log_level lvl = LOG_LVL_WARN;
    if (getenv("SYNC_CHECK_DEBUG") != NULL)
        lvl = LOG_LVL_DEBUG;
    log_set_level(lvl);
    if (cfg->primary.password != NULL)
        log_add_secret(cfg->primary.password);
    if (cfg->backup.password != NULL)
        log_add_secret(cfg->backup.password);

    state s = { 0 };
    int rc = 1;
    char err[512] = "";
    s.loop = loop_new();
    if (s.loop == NULL)
        goto cleanup;
    s.t0 = loop_now(s.loop);
    if (cancel_ms >= 0 && loop_add_timer(s.loop, cancel_ms, on_cancel, &s) == 0)
        goto cleanup;
    s.progress_ms = progress_ms;
    if (progress_ms > 0 && loop_add_timer(s.loop, progress_ms, on_progress, &s) == 0)
        goto cleanup;
    s.in_start = true;
    s.job = sync_start(s.loop, cfg, &req, on_done, &s, err, sizeof(err));
    s.in_start = false;
    if (s.job == NULL) {
        printf("fail conflicts=0 error=%s\n", err);
        rc = 2;
        goto cleanup;
    }
    loop_run(s.loop);
    rc = s.cancelled ? 3 : s.done && s.ok ? 0 : 1;
cleanup:
    sync_job_free(s.job);
    loop_free(s.loop);
    config_free(cfg);
    log_clear_secrets();
    return rc;
}
