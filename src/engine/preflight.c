/* preflight.c - the run's prerequisites before it changes anything. See
 * preflight.h. */
#include "drd/engine/preflight.h"
#include "drd/check/check.h"
#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/check/privs.h"
#include "drd/core/util.h"
#include "drd/core/worker.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define DB_TIMEOUT_MS 2000

/* Where items go: the report's lines and the first failure. One for the
 * files and commands, one per side (the sides are checked at once). */
typedef struct {
    FILE *rep;
    char *text;
    size_t len;
    bool ok;
    int fails;
    char error[512];
} sink;

struct preflight {
    loop_t *loop;
    preflight_cb cb;
    void *arg;
    int efd;
    pthread_mutex_t mu;
    bool done, cancelled;
    int64_t started;

    /* the worker's own copies */
    privs_list needs;
    config_target t[2];          /* url, password */
    char *db[2];                 /* the app's database on each side */
    bool up[2], target[2];
    char *kind;

    /* results */
    sink out[3];                 /* files and commands, primary, backup */
    bool ok;
    char error[512];
    char *report;
};

static const char *const side_names[2] = { "primary", "backup" };

static void job_free(preflight_t *p)
{
    if (p == NULL)
        return;
    if (p->efd >= 0)
        close(p->efd);
    pthread_mutex_destroy(&p->mu);
    privs_list_free(&p->needs);
    for (int i = 0; i < 2; i++) {
        free(p->t[i].url);
        if (p->t[i].password != NULL) {
            explicit_bzero(p->t[i].password, strlen(p->t[i].password));
            free(p->t[i].password);
        }
        free(p->db[i]);
    }
    free(p->kind);
    for (int i = 0; i < 3; i++) {
        if (p->out[i].rep != NULL)
            fclose(p->out[i].rep);
        free(p->out[i].text);
    }
    free(p->report);
    free(p);
}

/* The first failure is the sink's error; every item goes to its report. */
static void item(sink *k, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void item(sink *k, bool ok, const char *fmt, ...)
{
    char line[2048], masked[2100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    mask_secrets(line, masked, sizeof masked);
    if (k->rep != NULL)
        fprintf(k->rep, "%-4s  %s\n", ok ? "ok" : "fail", masked);
    if (!ok)
        k->fails++;
    if (!ok && k->ok) {
        k->ok = false;
        str_copy(k->error, masked, sizeof k->error);
    }
}

/* ---------------------------------------------------------- the worker */

static void check_side(preflight_t *p, int side)
{
    sink *k = &p->out[1 + side];
    bool required = false;
    bool used = privs_side_used(&p->needs, (privs_side)side, &required);
    char err[1024], role[128];

    required = required || p->target[side];
    if (!used && !p->target[side])
        return;
    if (!required && !p->up[side]) {
        item(k, true, "%s: down, skipped (only a fence needs it, and that is left pending)", side_names[side]);
        return;
    }
    int64_t t0 = mono_ms();
    PGconn *c = privs_connect(&p->t[side], p->db[side], DB_TIMEOUT_MS, "drd", err, sizeof err);
    if (c == NULL) {
        if (required)
            item(k, false, "the %s does not answer (database %s): %s", side_names[side],
                 p->db[side] != NULL ? p->db[side] : "(the URL's)", err);
        else
            item(k, true, "%s: unreachable (%s), skipped (only a fence needs it, and that is left pending)",
                 side_names[side], err);
        return;
    }
    int64_t t1 = mono_ms();
    json_t *items = json_array();
    privs_role(&p->t[side], role, sizeof role);
    if (items == NULL) {
        item(k, false, "out of memory");
    } else if (!privs_check(&p->needs, (privs_side)side, c, role, items, err, sizeof err)) {
        item(k, false, "the privileges on the %s cannot be tested: %s", side_names[side], err);
    } else {
        size_t i, li, missing = 0;
        json_t *it, *lb;
        json_array_foreach(items, i, it) {
            bool optional = json_is_true(json_object_get(it, "optional"));
            char by[512] = "";
            json_array_foreach(json_object_get(it, "needed_by"), li, lb) {
                if (li > 0)
                    str_append(by, sizeof by, ", ");
                str_append(by, sizeof by, json_string_value(lb));
            }
            item(k, optional, "on the %s, drd's role %s lacks %s%s (needed by %s; fix: %s)", side_names[side],
                 role[0] ? role : "(current user)", optional ? "(optional) " : "",
                 json_string_value(json_object_get(it, "what")), by,
                 json_string_value(json_object_get(it, "fix")));
            if (!optional)
                missing++;
        }
        if (missing == 0)
            item(k, true, "%s: reachable, drd's role %s has what the %s's steps need (connect %lldms,"
                 " privileges %lldms)", side_names[side], role[0] ? role : "(current user)", p->kind,
                 (long long)(t1 - t0), (long long)(mono_ms() - t1));
    }
    json_decref(items);
    PQfinish(c);
}

static void *side_main(void *arg)
{
    preflight_t *p = arg;
    check_side(p, 0);
    return NULL;
}

/* Both sides at once (the primary on a thread of its own); the report:
 * files and commands, then the run's target, then the other side. */
static void *job_main(void *arg)
{
    preflight_t *p = arg;
    pthread_t th;
    bool threaded = pthread_create(&th, NULL, side_main, p) == 0;
    check_side(p, 1);
    if (threaded)
        pthread_join(th, NULL);
    else
        check_side(p, 0);

    int order[3] = { 0, p->target[1] ? 2 : 1, p->target[1] ? 1 : 2 };
    FILE *rep = open_memstream(&p->report, &(size_t){ 0 });
    int fails = 0;
    p->ok = true;
    for (int i = 0; i < 3; i++) {
        sink *k = &p->out[order[i]];
        if (k->rep != NULL) {
            fclose(k->rep);
            k->rep = NULL;
        }
        if (rep != NULL && k->text != NULL)
            fputs(k->text, rep);
        fails += k->fails;
        if (!k->ok && p->ok) {
            p->ok = false;
            str_copy(p->error, k->error, sizeof p->error);
        }
    }
    if (rep != NULL) {
        fprintf(rep, "preflight: %lldms\n", (long long)(mono_ms() - p->started));
        fclose(rep);
    }
    if (fails > 1) {
        char more[64];
        snprintf(more, sizeof more, " (+%d more: see the step's output)", fails - 1);
        if (strlen(p->error) + strlen(more) >= sizeof p->error)
            p->error[sizeof p->error - strlen(more) - 1] = '\0';
        str_append(p->error, sizeof p->error, more);
    }
    pthread_mutex_lock(&p->mu);
    p->done = true;
    bool cancelled = p->cancelled;
    if (!cancelled)
        worker_notify(p->efd);
    pthread_mutex_unlock(&p->mu);
    if (cancelled)
        job_free(p);
    return NULL;
}

/* ------------------------------------------------------------ the loop */

static void on_done(loop_t *loop, int fd, short revents, void *arg)
{
    preflight_t *p = arg;
    uint64_t v;
    (void)revents;
    if (read(fd, &v, sizeof v) < 0 && errno == EAGAIN)
        return;
    loop_del_fd(loop, fd);
    /* The worker wrote the eventfd holding p->mu and unlocks it after:
     * until it has, freeing p lets its unlock write into freed (maybe
     * reused) memory, a heap corruption that crashed drd later (issue 13,
     * a SIGSEGV during pre-sync under load). Taking the mutex waits for it. */
    pthread_mutex_lock(&p->mu);
    pthread_mutex_unlock(&p->mu);
    log_debug("preflight (%s): %s in %lldms", p->kind, p->ok ? "ok" : "failed", (long long)(mono_ms() - p->started));
    p->cb(p->arg, p->ok, p->ok ? "" : p->error, p->report != NULL ? p->report : "");
    job_free(p);
}

static char *dupnull(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

preflight_t *preflight_start(loop_t *loop, const config_t *cfg, const char *kind,
                             const runbook_step *steps, size_t n, const bool up[2],
                             preflight_cb cb, void *arg)
{
    preflight_t *p = calloc(1, sizeof *p);
    char why[8400], fix[512];

    if (p == NULL)
        return NULL;
    p->efd = -1;
    pthread_mutex_init(&p->mu, NULL);
    p->loop = loop;
    p->cb = cb;
    p->arg = arg;
    p->started = mono_ms();
    for (int i = 0; i < 3; i++) {
        p->out[i].ok = true;
        if ((p->out[i].rep = open_memstream(&p->out[i].text, &p->out[i].len)) == NULL)
            goto fail;
    }
    p->kind = strdup(kind);
    if (p->kind == NULL)
        goto fail;

    /* files and commands: stat and access only */
    bool env_checked = false;
    for (size_t i = 0; i < n; i++) {
        const runbook_step *s = &steps[i];
        if (s->action == ACT_EXEC || (s->action == ACT_FENCE && s->fence == FENCE_COMMAND)) {
            bool ok = check_command_resolves(cfg, s->command, why, sizeof why);
            if (ok)
                item(&p->out[0], true, "step %s: %s", s->name, why);
            else
                item(&p->out[0], false, "step %s: %s (fix: install the program, or fix the command)", s->name, why);
        } else if (s->action == ACT_SWITCH_ENV && !env_checked) {
            env_checked = true;
            bool ok = check_env_writable(cfg, why, sizeof why, fix, sizeof fix);
            item(&p->out[0], ok, "step %s: %s%s%s%s", s->name, why, ok ? "" : " (fix: ", ok ? "" : fix, ok ? "" : ")");
        }
    }

    /* databases: on the worker, with copies */
    if (!privs_for_steps(&p->needs, cfg, kind, steps, n))
        goto fail;
    const config_target *t[2] = { &cfg->primary, &cfg->backup };
    for (int i = 0; i < 2; i++) {
        p->t[i].url = dupnull(t[i]->url);
        p->t[i].password = dupnull(t[i]->password);
        p->db[i] = pgconn_dbname(t[i]->app_url != NULL ? t[i]->app_url : t[i]->url);
        p->up[i] = up[i];
        if (p->t[i].url == NULL || (t[i]->password != NULL && p->t[i].password == NULL))
            goto fail;
    }
    p->target[strcmp(kind, "failback") == 0 ? 0 : 1] = true;

    p->efd = worker_eventfd(loop, on_done, p);
    if (p->efd < 0)
        goto fail;
    pthread_t th;
    if (!worker_spawn(&th, true, job_main, p)) {
        loop_del_fd(loop, p->efd);
        goto fail;
    }
    return p;
fail:
    log_error("preflight: cannot start (out of memory or threads)");
    job_free(p);
    return NULL;
}

void preflight_cancel(preflight_t *p)
{
    if (p == NULL)
        return;
    loop_del_fd(p->loop, p->efd);
    pthread_mutex_lock(&p->mu);
    bool done = p->done;
    p->cancelled = true;
    pthread_mutex_unlock(&p->mu);
    if (done)
        job_free(p);             /* the worker has finished: nobody else holds it */
}
