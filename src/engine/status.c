/* status.c - the one builder of the status document (DESIGN.md §3), used
 * by the daemon for GET /api/status and by drctl when the daemon is down. */
#include "drd/engine/status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "drd/health/breaker.h"
#include "drd/engine/steps.h"
#include "drd/core/util.h"

/* n, or null when the value is unknown (0). */
static json_t *int_or_null(int64_t v)
{
    return v > 0 ? json_integer((json_int_t)v) : json_null();
}

/* "probe": {"state": "ok"|"unreachable"|"misconfigured"|"not probed",
 * "cause": the misconfiguration's reason or null}. */
static json_t *probe_to_json(const store_target *t)
{
    const char *state = t->last_probe_at <= 0 ? "not probed"
                        : t->reachable ? "ok"
                        : PROBE_MISCONFIGURED(t->error_class) ? "misconfigured" : "unreachable";
    return json_pack("{s:s,s:o}", "state", state, "cause",
                     PROBE_MISCONFIGURED(t->error_class) && t->cause[0] != '\0'
                         ? json_text(t->cause) : json_null());
}

static json_t *fenced_json(const char *f)
{
    if (strcmp(f, "pending") == 0)
        return json_string("pending");
    return json_boolean(strcmp(f, "true") == 0);
}

static json_t *target_to_json(const store_target *t, const char *fenced, bool live)
{
    bool probed = t->last_probe_at > 0;
    const char *cls = probe_class_name(t->reachable || !probed ? PROBE_OK : t->error_class);
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "healthy", json_boolean(t->healthy));
    json_object_set_new(o, "breaker", json_string(breaker_state_name(t->breaker)));
    json_object_set_new(o, "latency_ms",
                        probed ? json_integer((json_int_t)t->latency_ms) : json_null());
    json_object_set_new(o, "last_error",
                        t->last_error[0] != '\0' ? json_text(t->last_error) : json_null());
    json_object_set_new(o, "in_recovery", json_boolean(t->in_recovery));
    json_object_set_new(o, "reachable", json_boolean(t->reachable));
    json_object_set_new(o, "last_probe_at", int_or_null(t->last_probe_at));
    json_object_set_new(o, "breaker_since", int_or_null(t->breaker_since));
    json_object_set_new(o, "fenced", fenced_json(fenced));
    json_object_set_new(o, "error_class", cls != NULL ? json_string(cls) : json_null());
    json_object_set_new(o, "probe", probe_to_json(t));
    /* only the running daemon knows what it has seen */
    json_object_set_new(o, "seen_healthy", live ? json_boolean(t->seen_healthy) : json_null());
    return o;
}

json_t *status_to_json(const status_snapshot *s)
{
    json_t *root = NULL, *targets = NULL;

    if (s == NULL)
        return NULL;
    root = json_object();
    targets = json_object();
    if (root == NULL || targets == NULL)
        goto fail;

    json_object_set_new(root, "active",
                        json_string(s->active[0] != '\0' ? s->active : "primary"));
    json_object_set_new(root, "daemon",
                        json_string(s->daemon_running ? "running" : "not running"));
    json_object_set_new(root, "generated_at", json_integer((json_int_t)s->generated_at));
    json_object_set_new(root, "started_at", int_or_null(s->started_at));

    json_object_set_new(targets, "primary", target_to_json(&s->primary, s->fenced[0], s->daemon_running));
    json_object_set_new(targets, "backup", target_to_json(&s->backup, s->fenced[1], s->daemon_running));
    if (s->refresh != NULL && json_is_object(s->refresh)) {
        json_t *b = json_object_get(targets, "backup"), *v;
        v = json_object_get(s->refresh, "lag_seconds");
        json_object_set(b, "lag_seconds", v != NULL ? v : json_null());
        v = json_object_get(s->refresh, "last_good_at");
        json_object_set(b, "last_copy_at", v != NULL ? v : json_null());
        /* rows the last comparison of the two sides left different
         * (null: never compared) */
        v = json_object_get(json_object_get(s->refresh, "difference"), "rows");
        json_object_set(b, "differing_rows", v != NULL ? v : json_null());
        json_object_set(root, "refresh", s->refresh);
    }
    json_object_set_new(root, "targets", targets);
    targets = NULL;

    /* run and approvals are borrowed: json_object_set takes a reference. */
    if (s->run != NULL)
        json_object_set(root, "run", s->run);
    else
        json_object_set_new(root, "run", json_null());
    if (s->approvals != NULL && json_is_array(s->approvals))
        json_object_set(root, "approvals", s->approvals);
    else
        json_object_set_new(root, "approvals", json_array());
    if (s->attention != NULL)
        json_object_set(root, "attention", s->attention);
    else
        json_object_set_new(root, "attention", json_null());
    json_object_set_new(root, "block_until",
                        s->block_until > s->generated_at ? json_integer((json_int_t)s->block_until) : json_null());
    return root;

fail:
    json_decref(targets);
    json_decref(root);
    return NULL;
}

/* A target without a row has never been probed: unhealthy, breaker closed. */
static void target_from_store(store_t *st, const char *name, store_target *out)
{
    if (!store_target_get(st, name, out)) {
        memset(out, 0, sizeof(*out));
        out->healthy = false;
        out->breaker = BREAKER_CLOSED;
    }
    str_copy(out->name, name, sizeof(out->name));
    /* The class is not stored: the stored (masked, one-line) error says it. */
    out->error_class = PROBE_OK;
    out->cause[0] = '\0';
    if (!out->reachable && out->last_probe_at > 0)
        out->error_class = probe_classify(out->last_error, false, out->cause, sizeof(out->cause));
}

bool status_from_store(store_t *st, status_snapshot *out)
{
    char buf[64];

    if (st == NULL || out == NULL)
        return false;
    memset(out, 0, sizeof(*out));
    out->daemon_running = false;
    out->generated_at = wall_ms();

    target_from_store(st, "primary", &out->primary);
    target_from_store(st, "backup", &out->backup);

    if (store_kv_get(st, "active", buf, sizeof(buf)) &&
        (strcmp(buf, "primary") == 0 || strcmp(buf, "backup") == 0))
        str_copy(out->active, buf, sizeof(out->active));
    else
        str_copy(out->active, "primary", sizeof(out->active));

    if (store_kv_get(st, "started_at", buf, sizeof(buf))) {
        char *end = NULL;
        long long v;

        errno = 0;
        v = strtoll(buf, &end, 10);
        if (errno == 0 && end != buf && *end == '\0' && v > 0)
            out->started_at = (int64_t)v;
    }
    out->run = NULL;
    out->approvals = NULL;
    status_fence_from_store(st, out);
    return true;
}

void status_fence_from_store(store_t *st, status_snapshot *s)
{
    static const char *const names[2] = { "primary", "backup" };
    char fenced[16] = "", pending[16] = "";

    store_fenced_get(st, fenced, sizeof fenced);
    store_fence_pending_get(st, pending, sizeof pending);
    for (int i = 0; i < 2; i++)
        str_copy(s->fenced[i], strcmp(pending, names[i]) == 0 ? "pending"
                             : strcmp(fenced, names[i]) == 0 ? "true" : "false", sizeof s->fenced[i]);
}
