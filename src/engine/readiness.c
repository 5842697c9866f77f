/* readiness.c - scheduled readiness checks inside drd.
 *
 * A run: the loop takes a deep copy of the status document and starts a
 * detached worker thread that loads the configuration from its file (the
 * `config` check) and calls check_run() (every check concurrently, 2 s
 * each). The worker hands its result back through an eventfd; the loop
 * then stores every check, logs an event and notifies for each one that
 * turned to fail, and asks for a republish. A job abandoned at shutdown
 * frees itself when its thread ends, so stopping never waits for it. */
#include "drd/engine/readiness.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "drd/check/check.h"
#include "drd/core/log.h"
#include "drd/core/util.h"
#include "drd/core/worker.h"

#define FIRST_RUN_MS 5000        /* after start: let the probes settle first */
#define CHECK_BUDGET_MS 2500     /* the whole run (each check has 2 s) */

typedef struct job {
    pthread_mutex_t mu;
    bool orphaned;               /* readiness_free ran: the thread frees the job */
    bool done;
    int efd;
    char *config_path;
    json_t *status;              /* deep copy, owned by the thread */
    json_t *result;              /* the checks array */
} job_t;

struct readiness {
    loop_t *loop;
    store_t *store;
    notify_t *notify;
    const config_t *cfg;
    char *config_path;
    readiness_status_fn status_fn;
    readiness_changed_fn changed_fn;
    void *arg;
    uint64_t timer;
    job_t *job;                  /* running, or NULL */
    bool again;                  /* asked for while a job ran: run once more after it */
    json_t *checks;              /* the last results (array) */
    int64_t checked_at;
    json_t *drill_last;          /* the newest drill's summary, or NULL */
    int64_t drill_ok_at;
};

static void job_free(job_t *j)
{
    if (j == NULL)
        return;
    if (j->efd >= 0)
        close(j->efd);
    free(j->config_path);
    json_decref(j->status);
    json_decref(j->result);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void *job_main(void *arg)
{
    job_t *j = arg;
    config_errors errs = { 0 };
    json_t *result;
    config_t *cfg = config_load(j->config_path, &errs);
    if (cfg == NULL)
        result = check_config_failed(&errs);
    else
        result = check_run(cfg, j->status, mono_ms() + CHECK_BUDGET_MS);
    config_errors_free(&errs);
    config_free(cfg);

    pthread_mutex_lock(&j->mu);
    j->result = result;
    j->done = true;
    bool orphaned = j->orphaned;
    if (!orphaned)
        worker_notify(j->efd);
    pthread_mutex_unlock(&j->mu);
    if (orphaned)
        job_free(j);
    return NULL;
}

/* ---- results ---- */

static const char *str_of(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* The previous status of name ("" if never checked). */
static const char *previous(const readiness_t *r, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(r->checks, i, c) {
        if (strcmp(str_of(c, "name"), name) == 0)
            return str_of(c, "status");
    }
    return "";
}

static bool collect_stored(const store_check *c, void *arg)
{
    json_t *a = arg;
    json_array_append_new(a, json_pack("{s:s, s:s, s:o, s:o, s:I, s:I}", "name", c->name,
                                       "status", c->status, "reason", json_text(c->reason),
                                       "fix", json_text(c->fix),
                                       "since", (json_int_t)c->since,
                                       "checked_at", (json_int_t)c->checked_at));
    return true;
}

static void load_stored(readiness_t *r)
{
    json_t *a = json_array();
    if (a == NULL)
        return;
    store_checks_all(r->store, collect_stored, a);
    json_decref(r->checks);
    r->checks = a;
    r->checked_at = 0;
    size_t i;
    json_t *c;
    json_array_foreach(a, i, c) {
        int64_t at = json_integer_value(json_object_get(c, "checked_at"));
        if (at > r->checked_at)
            r->checked_at = at;
    }
}

/* The drill freshness as a check item. */
static json_t *drill_item(const readiness_t *r, int64_t now)
{
    const config_t *cfg = r->cfg;
    char reason[256], fix[256] = "";
    const char *st = "ok";
    if (cfg->drill_warn_after_ms <= 0)
        return NULL;
    if (r->drill_ok_at == 0) {
        st = "warn";
        str_copy(reason, "no successful drill on record", sizeof reason);
        str_copy(fix, cfg->drill_primary_url != NULL
                          ? "run drctl drill"
                          : "configure a [drill] environment (README), then run drctl drill",
                 sizeof fix);
    } else {
        char age[32], limit[32];
        format_duration(now - r->drill_ok_at, age, sizeof age);
        format_duration(cfg->drill_warn_after_ms, limit, sizeof limit);
        if (now - r->drill_ok_at > cfg->drill_warn_after_ms) {
            st = "warn";
            snprintf(reason, sizeof reason, "the last successful drill was %s ago (more than %s)",
                     age, limit);
            str_copy(fix, "run drctl drill", sizeof fix);
        } else {
            snprintf(reason, sizeof reason, "the last successful drill was %s ago", age);
        }
    }
    return json_pack("{s:s, s:s, s:o, s:o}", "name", "drill", "status", st, "reason", json_text(reason),
                     "fix", json_text(fix));
}

static void record(readiness_t *r, json_t *result)
{
    int64_t now = wall_ms();
    json_t *item = drill_item(r, now);
    if (item != NULL)
        json_array_append_new(result, item);
    size_t i;
    json_t *c;
    json_array_foreach(result, i, c) {
        const char *name = str_of(c, "name"), *st = str_of(c, "status");
        const char *was = previous(r, name);
        store_check sc;
        memset(&sc, 0, sizeof sc);
        str_copy(sc.name, name, sizeof sc.name);
        str_copy(sc.status, st, sizeof sc.status);
        mask_secrets(str_of(c, "reason"), sc.reason, sizeof sc.reason);
        mask_secrets(str_of(c, "fix"), sc.fix, sizeof sc.fix);
        sc.checked_at = now;
        store_check_put(r->store, &sc);
        if (strcmp(st, was) == 0 || (was[0] == '\0' && strcmp(st, "ok") == 0))
            continue;
        char msg[800];
        snprintf(msg, sizeof msg, "check %s: %s -> %s: %s", name, was[0] ? was : "(new)", st,
                 sc.reason);
        store_event_add(r->store, now, "check", "", msg);
        if (strcmp(st, "fail") == 0) {
            log_warn("readiness: %s", msg);
            char text[900];
            snprintf(text, sizeof text, "drd: readiness check %s fails: %s%s%s", name, sc.reason,
                     sc.fix[0] ? " (fix: " : "", sc.fix[0] ? sc.fix : "");
            if (sc.fix[0])
                str_append(text, sizeof text, ")");
            json_t *f = json_pack("{s:s, s:o}", "check", name, "reason", json_text(sc.reason));
            notify_send(r->notify, "check_failed", text, f);
            json_decref(f);
        } else {
            log_info("readiness: %s", msg);
        }
    }
    store_checks_prune(r->store, now);
    load_stored(r);
}

/* ---- scheduling ---- */

static void arm(readiness_t *r, int64_t delay_ms);
static bool start(readiness_t *r);

static void on_done(loop_t *loop, int fd, short revents, void *arg)
{
    readiness_t *r = arg;
    job_t *j = r->job;
    uint64_t n;
    (void)revents;
    if (read(fd, &n, sizeof n) < 0 && errno == EAGAIN)
        return;
    loop_del_fd(loop, fd);
    pthread_mutex_lock(&j->mu);
    json_t *result = j->result;
    j->result = NULL;
    pthread_mutex_unlock(&j->mu);
    r->job = NULL;
    job_free(j);
    if (result != NULL) {
        record(r, result);
        json_decref(result);
    } else {
        log_error("readiness: the checks could not run (out of memory)");
    }
    if (r->changed_fn != NULL)
        r->changed_fn(r->arg);
    if (r->again) {              /* something changed while it ran: its results may be stale */
        r->again = false;
        start(r);
    }
}

static bool start(readiness_t *r)
{
    if (r->job != NULL) {
        r->again = true;
        return true;
    }
    job_t *j = calloc(1, sizeof *j);
    if (j == NULL)
        return false;
    pthread_mutex_init(&j->mu, NULL);
    j->efd = worker_eventfd(r->loop, on_done, r);
    j->config_path = strdup(r->config_path);
    json_t *st = r->status_fn != NULL ? r->status_fn(r->arg) : NULL;
    j->status = st != NULL ? json_deep_copy(st) : NULL;
    json_decref(st);
    if (j->efd < 0 || j->config_path == NULL) {
        log_error("readiness: cannot start the checks");
        if (j->efd >= 0)
            loop_del_fd(r->loop, j->efd);
        job_free(j);
        return false;
    }
    pthread_t th;
    if (!worker_spawn(&th, true, job_main, j)) {
        log_error("readiness: cannot start a thread: %s", strerror(errno));
        loop_del_fd(r->loop, j->efd);
        job_free(j);
        return false;
    }
    r->job = j;
    log_debug("readiness: checks started");
    return true;
}

static void on_timer(loop_t *loop, void *arg)
{
    readiness_t *r = arg;
    (void)loop;
    r->timer = 0;
    start(r);
    arm(r, r->cfg->check_every_ms);
}

static void arm(readiness_t *r, int64_t delay_ms)
{
    if (r->timer)
        loop_cancel_timer(r->loop, r->timer);
    r->timer = 0;
    if (r->cfg->check_every_ms > 0)
        r->timer = loop_add_timer(r->loop, delay_ms, on_timer, r);
}

static bool drill_newest(const store_drill *d, void *arg)
{
    readiness_t *r = arg;
    json_t *rep = json_loads(d->report != NULL ? d->report : "{}", 0, NULL);
    json_t *s = json_pack("{s:I, s:I, s:I, s:s}", "id", (json_int_t)d->id,
                          "started_at", (json_int_t)d->started_at, "ended_at",
                          (json_int_t)d->ended_at, "result", d->result);
    if (s != NULL && json_is_object(rep)) {
        static const char *const keys[] = { "detection_ms", "rto_ms", "rows_written", "rows_found",
                                            "sync_ms", "error" };
        for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
            json_t *v = json_object_get(rep, keys[i]);
            if (v != NULL)
                json_object_set(s, keys[i], v);
        }
    }
    json_decref(rep);
    json_decref(r->drill_last);
    r->drill_last = s;
    return false;
}

static bool drill_good(const store_drill *d, void *arg)
{
    readiness_t *r = arg;
    r->drill_ok_at = d->ended_at;
    return false;
}

void readiness_drill_recorded(readiness_t *r)
{
    if (r == NULL)
        return;
    json_decref(r->drill_last);
    r->drill_last = NULL;
    r->drill_ok_at = 0;
    store_drills_recent(r->store, 1, drill_newest, r);
    store_drill_last_good(r->store, drill_good, r);
}

readiness_t *readiness_new(loop_t *loop, store_t *store, notify_t *notify, const config_t *cfg,
                           const char *config_path, readiness_status_fn status_fn,
                           readiness_changed_fn changed_fn, void *arg)
{
    readiness_t *r = calloc(1, sizeof *r);
    if (r == NULL || (r->config_path = strdup(config_path)) == NULL) {
        free(r);
        log_error("readiness: out of memory");
        return NULL;
    }
    r->loop = loop;
    r->store = store;
    r->notify = notify;
    r->cfg = cfg;
    r->status_fn = status_fn;
    r->changed_fn = changed_fn;
    r->arg = arg;
    load_stored(r);
    if (r->checks == NULL) {
        readiness_free(r);
        return NULL;
    }
    readiness_drill_recorded(r);
    arm(r, FIRST_RUN_MS);
    return r;
}

void readiness_free(readiness_t *r)
{
    if (r == NULL)
        return;
    if (r->timer)
        loop_cancel_timer(r->loop, r->timer);
    if (r->job != NULL) {
        job_t *j = r->job;
        loop_del_fd(r->loop, j->efd);
        pthread_mutex_lock(&j->mu);
        bool done = j->done;
        j->orphaned = true;
        pthread_mutex_unlock(&j->mu);
        if (done)
            job_free(j);             /* finished, result never read */
    }
    json_decref(r->checks);
    json_decref(r->drill_last);
    free(r->config_path);
    free(r);
}

void readiness_reconfigure(readiness_t *r, const config_t *cfg)
{
    if (r == NULL)
        return;
    int64_t old = r->cfg->check_every_ms;
    r->cfg = cfg;
    if (cfg->check_every_ms != old)
        arm(r, cfg->check_every_ms);
}

void readiness_run_now(readiness_t *r)
{
    if (r != NULL)
        start(r);
}

int readiness_ready(const readiness_t *r)
{
    if (r == NULL || json_array_size(r->checks) == 0)
        return -1;
    size_t i;
    json_t *c;
    json_array_foreach(r->checks, i, c) {
        if (strcmp(str_of(c, "status"), "fail") == 0)
            return 0;
    }
    return 1;
}

json_t *readiness_json(const readiness_t *r)
{
    int ready = readiness_ready(r);
    return json_pack("{s:o, s:o, s:I, s:b, s:O}",
                     "ready", ready < 0 ? json_null() : json_boolean(ready == 1),
                     "checked_at", r->checked_at > 0 ? json_integer(r->checked_at) : json_null(),
                     "every_ms", (json_int_t)r->cfg->check_every_ms,
                     "running", r->job != NULL, "checks", r->checks);
}

json_t *readiness_drill_json(const readiness_t *r)
{
    json_t *warning = json_null();
    int64_t now = wall_ms();
    if (r->cfg->drill_warn_after_ms > 0) {
        char w[200];
        if (r->drill_ok_at == 0) {
            str_copy(w, "no successful drill on record: run drctl drill", sizeof w);
            warning = json_string(w);
        } else if (now - r->drill_ok_at > r->cfg->drill_warn_after_ms) {
            char age[32];
            format_duration(now - r->drill_ok_at, age, sizeof age);
            snprintf(w, sizeof w, "the last successful drill was %s ago: run drctl drill", age);
            warning = json_string(w);
        }
    }
    return json_pack("{s:O?, s:o, s:I, s:o}", "last", r->drill_last,
                     "last_ok_at", r->drill_ok_at > 0 ? json_integer(r->drill_ok_at) : json_null(),
                     "warn_after_ms", (json_int_t)r->cfg->drill_warn_after_ms, "warning", warning);
}

int64_t readiness_drill_ok_at(const readiness_t *r)
{
    return r != NULL ? r->drill_ok_at : 0;
}

const json_t *readiness_checks(const readiness_t *r)
{
    return r != NULL ? r->checks : NULL;
}
