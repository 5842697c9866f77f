/* views.c - see views.h. */
#include "drd/engine/views.h"

#include "drd/engine/executor.h"
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

typedef struct {
    store_t *st;
    json_t *arr;
} runs_ctx;

static bool run_to_array(const store_run *run, void *arg)
{
    runs_ctx *x = arg;
    json_t *j = executor_run_to_json(x->st, run->id, false);
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
