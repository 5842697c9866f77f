/* attention.c - see attention.h. */
#include "drd/engine/attention.h"

#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"

typedef enum { APP_NONE = 0, APP_STOP, APP_START } app_cmd;

typedef struct {
    const config_t *cfg;
    char *stop, *start;          /* [app] stop / start, expanded and trimmed */
    /* the walk over the run's steps */
    bool stopped;
    int64_t stopped_at;
    char cur_step[64];           /* the run's current step, or the failed one */
    int cur_idx;
} walk_ctx;

static char *expanded(const config_t *cfg, const char *cmd)
{
    char err[256];
    if (cfg == NULL || cmd == NULL)
        return NULL;
    char *e = config_expand(cfg, cmd, err, sizeof err);
    if (e == NULL)
        return NULL;
    char *t = strdup(str_trim(e));
    free(e);
    return t;
}

/* Which [app] command an exec step runs: its command is [app] stop or
 * [app] start; when it is neither or both, its name decides. */
static app_cmd step_app_cmd(const walk_ctx *w, const store_step *s)
{
    if (strcmp(s->action, "exec") != 0)
        return APP_NONE;
    json_t *p = json_loads(s->params != NULL ? s->params : "{}", 0, NULL);
    const char *c = json_string_value(json_object_get(p, "command"));
    char *cmd = c != NULL ? strdup(c) : NULL;
    json_decref(p);
    const char *t = cmd != NULL ? str_trim(cmd) : NULL;
    bool is_stop = t != NULL && w->stop != NULL && strcmp(t, w->stop) == 0;
    bool is_start = t != NULL && w->start != NULL && strcmp(t, w->start) == 0;
    free(cmd);
    if (is_stop == is_start) {
        bool app = strstr(s->name, "app") != NULL;
        is_stop = app && strstr(s->name, "stop") != NULL;
        is_start = app && strstr(s->name, "start") != NULL;
        if (is_stop == is_start)
            return APP_NONE;
    }
    return is_stop ? APP_STOP : APP_START;
}

static bool walk_step(const store_step *s, void *arg)
{
    walk_ctx *w = arg;
    step_state state = step_state_of(s->state);
    bool done = state == STEP_DONE;
    bool skipped = state == STEP_SKIPPED;
    app_cmd a = step_app_cmd(w, s);

    /* A skipped stop-app: "skip if it completed" - count it as stopped. A
     * skipped start-app did not start anything. */
    if (a == APP_STOP && (done || skipped)) {
        w->stopped = true;
        w->stopped_at = s->finished_at;
    } else if (a == APP_START && done) {
        w->stopped = false;
    }
    if (s->idx == w->cur_idx || state == STEP_FAILED || state == STEP_NEEDS_ATTENTION)
        str_copy(w->cur_step, s->name, sizeof w->cur_step);
    return true;
}

static bool newest_run(const store_run *r, void *arg)
{
    *(store_run *)arg = *r;
    return false;
}

typedef struct {
    store_approval a;
    bool any;
} pending_ctx;

static bool pending_of_run(const store_approval *a, void *arg)
{
    pending_ctx *p = arg;
    if (approval_state_of(a->state) == APPROVAL_PENDING) {
        p->a = *a;
        p->any = true;
        return false;
    }
    return true;
}

json_t *attention_from_store(store_t *st, const config_t *cfg)
{
    store_run run;
    walk_ctx w;
    pending_ctx pend;
    json_t *out = NULL;

    memset(&run, 0, sizeof run);
    memset(&w, 0, sizeof w);
    memset(&pend, 0, sizeof pend);
    if (st == NULL || !store_runs_recent(st, 1, newest_run, &run) || run.id == 0)
        return json_null();
    run_state state = run_state_of(run.state);
    bool waiting = state == RUN_WAITING;
    bool failed = state == RUN_FAILED || state == RUN_ABORTED;
    if (!waiting && !failed)
        return json_null();              /* running on its own, or succeeded */

    w.cfg = cfg;
    w.stop = cfg != NULL ? expanded(cfg, cfg->app_stop) : NULL;
    w.start = cfg != NULL ? expanded(cfg, cfg->app_start) : NULL;
    w.cur_idx = run.current_step;
    if (!store_steps_of(st, run.id, walk_step, &w))
        goto cleanup;
    if (waiting)
        store_approvals_of_run(st, run.id, pending_of_run, &pend);
    bool needs_human = waiting && pend.any && approval_kind_of(pend.a.kind) == APPROVAL_ATTENTION;
    if (!w.stopped && !needs_human) {
        out = json_null();
        goto cleanup;
    }
    const char *reason = waiting && pend.any ? pend.a.prompt : run.error[0] ? run.error : run.state;
    out = json_pack("{s:I, s:s, s:s, s:o, s:b, s:o, s:o, s:o}",
                    "run_id", (json_int_t)run.id, "kind", run.kind, "state", run.state,
                    "step", w.cur_step[0] ? json_text(w.cur_step) : json_null(),
                    "app_stopped", w.stopped,
                    "stopped_at", w.stopped && w.stopped_at > 0 ? json_integer(w.stopped_at) : json_null(),
                    "approval_id", waiting && pend.any ? json_integer(pend.a.id) : json_null(),
                    "reason", json_text(reason));

cleanup:
    free(w.stop);
    free(w.start);
    return out != NULL ? out : json_null();
}
