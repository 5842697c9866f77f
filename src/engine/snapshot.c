/* snapshot.c - see snapshot.h. */
#include "drd/engine/snapshot.h"
#include "drd/engine/attention.h"
#include "drd/engine/status.h"
#include "drd/engine/views.h"
#include "drd/core/log.h"

#include <stdlib.h>
#include <string.h>

struct snapshot {
    loop_t *loop;
    snapshot_parts p;
    snapshot_publish_cb cb;
    void *arg;
    uint64_t timer;              /* the end-of-turn publication, 0 = none pending */
    unsigned dirty;              /* snapshot_change bits since the last publication */
    /* the engine's parts, as last read (references) */
    json_t *run, *approvals, *attention, *readiness, *drill;
    int64_t block_until;
};

/* Read the engine's parts again. */
static void read_engine(snapshot_t *s)
{
    json_decref(s->run);
    json_decref(s->approvals);
    json_decref(s->attention);
    json_decref(s->readiness);
    json_decref(s->drill);
    /* the run and approvals as views.c shows them (as GET /api/runs/N) */
    int64_t run_id = executor_run_id(s->p.executor);
    s->run = run_id != 0 ? views_run(s->p.store, run_id, false) : json_null();
    s->approvals = views_approvals_pending(s->p.store);
    s->attention = attention_from_store(s->p.store, *s->p.cfg);
    s->block_until = policy_block_until(s->p.policy);
    s->readiness = s->p.readiness != NULL ? readiness_json(s->p.readiness) : NULL;
    s->drill = s->p.readiness != NULL ? readiness_drill_json(s->p.readiness) : NULL;
}

/* The document from the monitor's targets, the refresh status (both read
 * now) and the engine's parts as last read. */
static json_t *assemble(snapshot_t *s)
{
    status_snapshot st;
    json_t *refresh = refresh_status_json(s->p.refresh);
    monitor_status_fill(s->p.monitor, &st);
    st.run = s->run;
    st.approvals = s->approvals;
    st.attention = s->attention;
    st.block_until = s->block_until;
    st.refresh = refresh;
    json_t *doc = status_to_json(&st);
    json_decref(refresh);
    if (doc == NULL)
        return NULL;
    if (s->p.readiness != NULL) {
        json_object_set(doc, "readiness", s->readiness != NULL ? s->readiness : json_null());
        json_object_set(doc, "drill", s->drill != NULL ? s->drill : json_null());
    }
    if (s->p.drill)
        json_object_set_new(doc, "drill_mode", json_true());
    return doc;
}

static void on_publish(loop_t *loop, void *arg)
{
    snapshot_t *s = arg;
    bool engine = (s->dirty & SNAPSHOT_ENGINE) != 0;
    s->timer = 0;
    s->dirty = 0;
    if (engine)
        read_engine(s);
    json_t *doc = assemble(s);
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text == NULL)
        log_error("status: out of memory; the published status is stale");
    else if (s->cb != NULL)
        s->cb(s->arg, text, doc, engine);
    free(text);
    json_decref(doc);
}

void snapshot_changed(snapshot_t *s, snapshot_change what)
{
    if (s == NULL)
        return;
    s->dirty |= (unsigned)what;
    if (s->timer == 0)
        s->timer = loop_add_timer(s->loop, 0, on_publish, s);
}

json_t *snapshot_status(snapshot_t *s)
{
    read_engine(s);
    return assemble(s);
}

snapshot_t *snapshot_new(loop_t *loop, const snapshot_parts *parts, snapshot_publish_cb cb, void *arg)
{
    snapshot_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->p = *parts;
    s->cb = cb;
    s->arg = arg;
    snapshot_changed(s, SNAPSHOT_TARGETS | SNAPSHOT_ENGINE);
    return s;
}

void snapshot_free(snapshot_t *s)
{
    if (s == NULL)
        return;
    if (s->timer)
        loop_cancel_timer(s->loop, s->timer);
    json_decref(s->run);
    json_decref(s->approvals);
    json_decref(s->attention);
    json_decref(s->readiness);
    json_decref(s->drill);
    free(s);
}
