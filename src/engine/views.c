/* views.c - see views.h. */
#include "drd/engine/views.h"

#include "drd/core/util.h"

bool views_add_event(const store_event *e, void *arg)
{
    json_t *arr = arg;
    json_t *o = json_pack("{s:I,s:I,s:s,s:o,s:o}",
                          "id", (json_int_t)e->id,
                          "at", (json_int_t)e->at,
                          "kind", e->kind,
                          "target", e->target[0] != '\0' ? json_string(e->target) : json_null(),
                          "message", json_text(e->message));
    if (o == NULL)
        return false;
    json_array_append_new(arr, o);
    return true;
}

bool views_add_incident(const store_incident *i, void *arg)
{
    json_t *arr = arg;
    json_t *o = json_pack("{s:I,s:s,s:I,s:o,s:o}",
                          "id", (json_int_t)i->id,
                          "target", i->target,
                          "started_at", (json_int_t)i->started_at,
                          "ended_at", i->ended_at > 0 ? json_integer((json_int_t)i->ended_at)
                                                      : json_null(),
                          "reason", json_text(i->reason));
    if (o == NULL)
        return false;
    json_array_append_new(arr, o);
    return true;
}

static json_t *jtime(int64_t ms)
{
    return ms > 0 ? json_integer(ms) : json_null();
}

static json_t *jstr_or_null(const char *s)
{
    return s != NULL && *s != '\0' ? json_text(s) : json_null();
}

static json_t *run_json(const store_run *r)
{
    return json_pack("{s:I, s:s, s:s, s:o, s:s, s:I, s:o, s:o, s:o, s:i, s:s, s:o}",
                     "id", (json_int_t)r->id, "kind", r->kind, "state", r->state,
                     "reason", jstr_or_null(r->reason), "started_by", r->started_by,
                     "request_id", (json_int_t)r->request_id,
                     "incident_id", r->incident_id ? json_integer(r->incident_id) : json_null(),
                     "created_at", jtime(r->created_at), "finished_at", jtime(r->finished_at),
                     "current_step", r->current_step, "runbook", r->runbook,
                     "error", jstr_or_null(r->error));
}

static json_t *step_json(const store_step *st, bool with_output)
{
    int64_t dur = st->finished_at > 0 && st->started_at > 0 ? st->finished_at - st->started_at
                : st->started_at > 0 ? wall_ms() - st->started_at : -1;
    json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:o, s:o}",
                          "index", st->idx, "name", st->name, "action", st->action, "state", st->state,
                          "attempts", st->attempts, "started_at", jtime(st->started_at),
                          "finished_at", jtime(st->finished_at),
                          "duration_ms", dur >= 0 ? json_integer(dur) : json_null(),
                          "exit_code", st->exit_code >= 0 ? json_integer(st->exit_code) : json_null(),
                          "detail", jstr_or_null(st->error));
    if (o != NULL && with_output)
        json_object_set_new(o, "output", jstr_or_null(st->output));
    return o;
}

typedef struct {
    json_t *arr;
    bool with_output;
} steps_ctx;

static bool add_step(const store_step *st, void *arg)
{
    steps_ctx *c = arg;
    json_array_append_new(c->arr, step_json(st, c->with_output));
    return true;
}

static json_t *approval_json(const store_approval *a, const char *step_name)
{
    return json_pack("{s:I, s:o, s:o, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o}",
                     "id", (json_int_t)a->id,
                     "run_id", a->run_id ? json_integer(a->run_id) : json_null(),
                     "step", jstr_or_null(step_name), "kind", a->kind, "state", a->state,
                     "prompt", a->prompt, "created_at", jtime(a->created_at),
                     "expires_at", jtime(a->expires_at), "decided_at", jtime(a->decided_at),
                     "decided_by", jstr_or_null(a->decided_by), "reason", jstr_or_null(a->reason),
                     "choice", jstr_or_null(a->choice));
}

typedef struct {
    json_t *arr;
    json_t *steps;               /* the run's steps, to name the step an approval is about; may be NULL */
    store_t *st;                 /* or read them from here */
} appr_ctx;

typedef struct {
    int idx;
    char name[64];
} step_name_ctx;

static bool find_step_name(const store_step *st, void *arg)
{
    step_name_ctx *c = arg;
    if (st->idx != c->idx)
        return true;
    str_copy(c->name, st->name, sizeof c->name);
    return false;
}

static bool add_approval(const store_approval *a, void *arg)
{
    appr_ctx *c = arg;
    step_name_ctx sn = { .idx = a->step_idx };
    const char *name = NULL;
    if (a->step_idx >= 0 && c->steps != NULL) {
        name = json_string_value(json_object_get(json_array_get(c->steps, (size_t)a->step_idx), "name"));
    } else if (a->step_idx >= 0 && a->run_id > 0 && c->st != NULL) {
        store_steps_of(c->st, a->run_id, find_step_name, &sn);
        name = sn.name;
    }
    json_array_append_new(c->arr, approval_json(a, name));
    return true;
}

json_t *views_run(store_t *store, int64_t run_id, bool with_output)
{
    store_run r;
    if (!store_run_get(store, run_id, &r))
        return NULL;
    json_t *o = run_json(&r);
    steps_ctx sc = { json_array(), with_output };
    store_steps_of(store, run_id, add_step, &sc);
    json_object_set_new(o, "steps", sc.arr);
    appr_ctx ac = { json_array(), sc.arr, store };
    store_approvals_of_run(store, run_id, add_approval, &ac);
    json_object_set_new(o, "approvals", ac.arr);
    return o;
}

json_t *views_approvals_pending(store_t *store)
{
    appr_ctx ac = { json_array(), NULL, store };
    store_approvals_pending(store, add_approval, &ac);
    return ac.arr;
}

typedef struct {
    store_t *st;
    json_t *arr;
} runs_ctx;

static bool run_to_array(const store_run *run, void *arg)
{
    runs_ctx *x = arg;
    json_t *j = views_run(x->st, run->id, false);
    if (j != NULL)
        json_array_append_new(x->arr, j);
    return true;
}

bool views_add_refresh(const store_refresh *r, void *arg)
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:I, s:o, s:I, s:o, s:o}",
                          "id", (json_int_t)r->id, "mode", r->mode, "trigger", r->trigger,
                          "state", r->state, "started_at", (json_int_t)r->started_at,
                          "finished_at", r->finished_at ? json_integer(r->finished_at) : json_null(),
                          "bytes", (json_int_t)r->bytes,
                          "file", r->file[0] ? json_string(r->file) : json_null(),
                          "error", r->error[0] ? json_text(r->error) : json_null());
    if (o == NULL)
        return false;
    json_array_append_new(arg, o);
    return true;
}

bool views_add_drill(const store_drill *d, void *arg)
{
    json_t *rep = json_loads(d->report != NULL ? d->report : "{}", 0, NULL);
    json_t *o = json_pack("{s:I, s:I, s:I, s:s, s:o}", "id", (json_int_t)d->id,
                          "started_at", (json_int_t)d->started_at,
                          "ended_at", (json_int_t)d->ended_at, "result", d->result,
                          "report", rep != NULL ? rep : json_object());
    if (o == NULL)
        return false;
    json_array_append_new(arg, o);
    return true;
}

bool views_runs(store_t *st, int limit, json_t *arr)
{
    runs_ctx x = { st, arr };
    return store_runs_recent(st, limit, run_to_array, &x);
}
