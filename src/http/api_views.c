/* api_views.c - the GET handlers: the published status and metrics, the
 * page's files, and lists read from the HTTP threads' own read-only store
 * connection. */
#include "api_int.h"

/* ------------------------------------------------------------------ */
/* the read-only store (HTTP threads only; caller holds store_lock)    */

static store_t *ro_store(api_t *a)
{
    char err[256];
    int64_t now;

    if (a->store != NULL)
        return a->store;
    if (a->db_path == NULL)
        return NULL;
    now = mono_ms();
    if (a->store_retry_at != 0 && now < a->store_retry_at)
        return NULL;
    err[0] = '\0';
    a->store = store_open_readonly(a->db_path, err, sizeof(err));
    if (a->store == NULL) {
        if (!a->store_warned)
            log_warn("http: cannot open %s read-only: %s (will retry)", a->db_path, err);
        a->store_warned = true;
        a->store_retry_at = now + API_STORE_RETRY_MS;
        return NULL;
    }
    if (a->store_warned)
        log_info("http: state database %s is readable again", a->db_path);
    a->store_warned = false;
    a->store_retry_at = 0;
    return a->store;
}

/* After a failed read, reopen on the next request (the file may have been
 * replaced or migrated under us). */
static void ro_store_reset(api_t *a)
{
    store_close(a->store);
    a->store = NULL;
}

/* ------------------------------------------------------------------ */
/* GET handlers                                                       */

enum MHD_Result api_get_status(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    char *copy = NULL;

    pthread_mutex_lock(&a->lock);
    if (a->status != NULL)
        copy = strdup(a->status);
    pthread_mutex_unlock(&a->lock);
    if (copy == NULL)
        return api_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting");
    return api_send_body(c, MHD_HTTP_OK, copy);
}

/* An optional non-negative integer query argument bounded by max (clamped).
 * false when present but not a number. */
static bool query_int(struct MHD_Connection *c, const char *key, bool allow_zero,
                      int64_t def, int64_t max, int64_t *out)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);

    *out = def;
    if (v == NULL)
        return true;
    if (!api_parse_id(v, allow_zero, out))
        return false;
    if (max > 0 && *out > max)
        *out = max;
    return true;
}

/* Fill a new array from the HTTP thread's read-only store, under its lock.
 * Returns the array, or NULL with *code: 503 (no state database), 500 (the
 * read failed; the connection is reopened next time), 0 (out of memory). */
typedef bool (*list_fill_fn)(store_t *st, json_t *arr, const void *arg);

static json_t *store_list(api_t *a, list_fill_fn fill, const void *arg, unsigned *code)
{
    json_t *arr = json_array();
    *code = 0;
    if (arr == NULL)
        return NULL;
    pthread_mutex_lock(&a->store_lock);
    store_t *st = ro_store(a);
    bool ok = st != NULL && fill(st, arr, arg);
    if (st != NULL && !ok)
        ro_store_reset(a);
    pthread_mutex_unlock(&a->store_lock);
    if (ok)
        return arr;
    *code = st == NULL ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_INTERNAL_SERVER_ERROR;
    json_decref(arr);
    return NULL;
}

static enum MHD_Result list_error(struct MHD_Connection *c, unsigned code, const char *what)
{
    char msg[96];
    if (code == 0)
        return MHD_NO;
    if (code == MHD_HTTP_SERVICE_UNAVAILABLE)
        return api_send_error(c, code, "state database unavailable");
    snprintf(msg, sizeof msg, "cannot read %s", what);
    return api_send_error(c, code, msg);
}

/* GET /api/WHAT?limit=N (1..1000, default 20): {"WHAT": [...]} from fill. */
static enum MHD_Result get_list(api_t *a, struct MHD_Connection *c, list_fill_fn fill, const char *what)
{
    int64_t limit;
    unsigned code;

    if (!query_int(c, "limit", false, 20, 1000, &limit))
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "limit must be an integer from 1 to 1000");
    json_t *arr = store_list(a, fill, &limit, &code);
    if (arr == NULL)
        return list_error(c, code, what);
    return api_send_json(c, MHD_HTTP_OK, json_pack("{s:o}", what, arr));
}

enum MHD_Result api_get_events(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    int64_t since = 0, limit = 0, last_id = 0;
    bool has_since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since") != NULL;
    json_t *events = NULL;
    store_t *st;
    bool ok;

    if (!query_int(c, "since", true, 0, 0, &since))
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "since must be a non-negative integer");
    if (!query_int(c, "limit", false, API_EVENTS_DEFAULT, API_EVENTS_MAX, &limit))
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "limit must be a positive integer");

    events = json_array();
    if (events == NULL)
        return MHD_NO;
    pthread_mutex_lock(&a->store_lock);
    st = ro_store(a);
    if (st == NULL) {
        pthread_mutex_unlock(&a->store_lock);
        json_decref(events);
        return api_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database unavailable");
    }
    if (has_since)
        ok = store_events_since(st, since, (int)limit, views_add_event, events);
    else
        ok = store_events_recent(st, (int)limit, views_add_event, events);
    if (!ok)
        ro_store_reset(a);
    pthread_mutex_unlock(&a->store_lock);
    if (!ok) {
        json_decref(events);
        return api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot read events");
    }

    /* Without since: the newest `limit` events, still oldest first, so a
     * client can continue with ?since=last_id. */
    if (!has_since) {
        size_t n = json_array_size(events);
        json_t *rev = json_array();

        if (rev == NULL) {
            json_decref(events);
            return MHD_NO;
        }
        for (size_t i = n; i > 0; i--)
            json_array_append(rev, json_array_get(events, i - 1));
        json_decref(events);
        events = rev;
    }
    last_id = since;
    if (json_array_size(events) > 0) {
        json_t *last = json_array_get(events, json_array_size(events) - 1);
        last_id = (int64_t)json_integer_value(json_object_get(last, "id"));
    }
    return api_send_json(c, MHD_HTTP_OK,
                         json_pack("{s:o,s:I}", "events", events, "last_id", (json_int_t)last_id));
}

static bool fill_incidents(store_t *st, json_t *arr, const void *arg)
{
    return store_incidents_recent(st, (int)*(const int64_t *)arg, views_add_incident, arr);
}

enum MHD_Result api_get_incidents(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    int64_t limit = 0;
    unsigned code;

    if (!query_int(c, "limit", false, API_INCIDENTS_DEFAULT, API_INCIDENTS_MAX, &limit))
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "limit must be a positive integer");
    json_t *arr = store_list(a, fill_incidents, &limit, &code);
    if (arr == NULL)
        return list_error(c, code, "incidents");
    return api_send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "incidents", arr));
}

/* GET /api/runs/{id}: the run, its steps with their output, its approvals. */
enum MHD_Result api_get_run(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    const route *r = &rq->r;
    int64_t id;
    store_t *st;
    json_t *run;

    if (r->id_too_long || !api_parse_id(r->id_str, false, &id))
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "run id must be a positive integer");
    pthread_mutex_lock(&a->store_lock);
    st = ro_store(a);
    run = st != NULL ? executor_run_to_json(st, id, true) : NULL;
    pthread_mutex_unlock(&a->store_lock);
    if (st == NULL)
        return api_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database not available");
    if (run == NULL)
        return api_send_error(c, MHD_HTTP_NOT_FOUND, "no such run");
    return api_send_json(c, MHD_HTTP_OK, run);
}

/* GET /api/runs?limit=N: newest first, with steps (no output). */
static bool fill_runs(store_t *st, json_t *arr, const void *arg)
{
    return views_runs(st, (int)*(const int64_t *)arg, arr);
}

/* GET /api/requests/{id}: what became of a queued request. 404 while it is
 * still queued (the main loop has not taken it yet). */
enum MHD_Result api_get_request(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    const route *r = &rq->r;
    int64_t id;
    store_request req;
    store_t *st;
    bool found;

    if (r->id_too_long || !api_parse_id(r->id_str, false, &id))
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "request id must be a positive integer");
    pthread_mutex_lock(&a->store_lock);
    st = ro_store(a);
    found = st != NULL && store_request_get(st, id, &req);
    pthread_mutex_unlock(&a->store_lock);
    if (st == NULL)
        return api_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database not available");
    if (!found)
        return api_send_error(c, MHD_HTTP_NOT_FOUND, "no such request (yet)");
    return api_send_json(c, MHD_HTTP_OK,
                         json_pack("{s:I, s:s, s:s, s:s, s:o, s:o, s:I}", "id", (json_int_t)req.id,
                               "kind", req.kind, "state", req.state, "actor", req.actor,
                               "run_id", req.run_id ? json_integer(req.run_id) : json_null(),
                               "error", req.error[0] ? json_text(req.error) : json_null(),
                               "at", (json_int_t)req.at));
}

/* GET /api/drills?limit=N: drill reports, newest first. */
static bool fill_drills(store_t *st, json_t *arr, const void *arg)
{
    return store_drills_recent(st, (int)*(const int64_t *)arg, views_add_drill, arr);
}

/* GET /api/refreshes?limit=N: backup refreshes, newest first. */
static bool fill_refreshes(store_t *st, json_t *arr, const void *arg)
{
    return store_refreshes_recent(st, (int)*(const int64_t *)arg, views_add_refresh, arr);
}

static bool probe_minute_to_array(const store_probe_minute *m, void *arg)
{
    json_t *arr = arg;
    int64_t ok = m->probes - m->failures;
    json_t *o = json_pack("{s:I,s:I,s:I,s:o,s:I}",
                          "at", (json_int_t)(m->minute * 60000),
                          "probes", (json_int_t)m->probes,
                          "failures", (json_int_t)m->failures,
                          "latency_avg_ms",
                          ok > 0 ? json_real((double)m->latency_sum_ms / (double)ok)
                                 : json_null(),
                          "latency_max_ms", (json_int_t)m->latency_max_ms);
    if (o == NULL)
        return false;
    json_array_append_new(arr, o);
    return true;
}

/* GET /api/probes?target=primary|backup&minutes=N: per-minute probe
 * statistics of the last N minutes (the current minute is added by the
 * daemon when it ends), oldest first. */
typedef struct {
    const char *target;
    int64_t since_minute;
} probes_arg;

static bool fill_probes(store_t *st, json_t *arr, const void *arg)
{
    const probes_arg *p = arg;
    return store_probe_minutes(st, p->target, p->since_minute, probe_minute_to_array, arr);
}

enum MHD_Result api_get_probes(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    const char *target = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "target");
    int64_t minutes = 0;
    unsigned code;

    if (target == NULL || (strcmp(target, "primary") != 0 && strcmp(target, "backup") != 0))
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "target must be primary or backup");
    if (!query_int(c, "minutes", false, API_PROBES_DEFAULT, API_PROBES_MAX, &minutes))
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "minutes must be a positive integer");
    probes_arg pa = { target, wall_ms() / 60000 - minutes };
    json_t *arr = store_list(a, fill_probes, &pa, &code);
    if (arr == NULL)
        return list_error(c, code, "probe statistics");
    return api_send_json(c, MHD_HTTP_OK,
                         json_pack("{s:s,s:o}", "target", target, "minutes", arr));
}

/* GET /metrics: the main loop's last snapshot, then the HTTP side's own
 * counters, current at this very request. */
enum MHD_Result api_get_metrics(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    static const resp_opts o = { .ctype = "text/plain; version=0.0.4; charset=utf-8" };
    char tail[1024];
    char *out;
    size_t head_len = 0, tail_len;
    int n;

    n = snprintf(tail, sizeof(tail),
                 "# HELP drd_http_requests_total HTTP requests received since drd started.\n"
                 "# TYPE drd_http_requests_total counter\n"
                 "drd_http_requests_total %lld\n"
                 "# HELP drd_http_login_failures_total Wrong tokens (page logins and bearer "
                 "tokens) answered 401 since drd started.\n"
                 "# TYPE drd_http_login_failures_total counter\n"
                 "drd_http_login_failures_total %lld\n"
                 "# HELP drd_http_login_throttled_total Wrong tokens answered 429 (too many) "
                 "since drd started.\n"
                 "# TYPE drd_http_login_throttled_total counter\n"
                 "drd_http_login_throttled_total %lld\n"
                 "# HELP drd_http_sessions Live sessions of the page.\n"
                 "# TYPE drd_http_sessions gauge\n"
                 "drd_http_sessions %" PRId64 "\n"
                 "# HELP drd_http_slow_connections_closed_total Connections closed because a request "
                 "or its answer took longer than 10 s.\n"
                 "# TYPE drd_http_slow_connections_closed_total counter\n"
                 "drd_http_slow_connections_closed_total %lld\n",
                 (long long)atomic_load(&a->requests),
                 (long long)atomic_load(&a->login_failures),
                 (long long)atomic_load(&a->login_throttled), api_sessions_live(a),
                 (long long)atomic_load(&a->slow_cut));
    if (n < 0 || (size_t)n >= sizeof(tail))
        return MHD_NO;
    tail_len = (size_t)n;
    pthread_mutex_lock(&a->lock);
    if (a->metrics != NULL)
        head_len = strlen(a->metrics);
    out = malloc(head_len + tail_len + 1);
    if (out != NULL && head_len > 0)
        memcpy(out, a->metrics, head_len);
    pthread_mutex_unlock(&a->lock);
    if (out == NULL)
        return MHD_NO;
    memcpy(out + head_len, tail, tail_len + 1);
    return api_send_resp(c, MHD_HTTP_OK, out, head_len + tail_len, MHD_RESPMEM_MUST_FREE, &o);
}

/* One of the page's files, from memory. */
enum MHD_Result api_get_static(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    const route *r = &rq->r;
    const web_entry *e = &api_web_files[r->web_idx];
    const web_file *f = &a->web[r->web_idx];
    const char *inm;
    resp_opts o = { .ctype = e->ctype, .cache = "no-cache", .csp = API_CSP_PAGE, .etag = f->etag };

    if (f->data == NULL)
        return api_send_error(c, MHD_HTTP_NOT_FOUND, "not found");
    inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm != NULL && strcmp(inm, f->etag) == 0)
        return api_send_resp(c, MHD_HTTP_NOT_MODIFIED, NULL, 0, MHD_RESPMEM_PERSISTENT, &o);
    return api_send_resp(c, MHD_HTTP_OK, f->data, f->len, MHD_RESPMEM_PERSISTENT, &o);
}

/* GET /api/session: who this is, and the session's CSRF token. */
enum MHD_Result api_get_session(listener *l, struct MHD_Connection *c, request *rq)
{
    if (rq->who == WHO_SESSION)
        return api_send_json(c, MHD_HTTP_OK,
                             json_pack("{s:s,s:s,s:I}", "actor", rq->actor, "csrf", rq->csrf,
                                   "expires_at", (json_int_t)rq->session_expires));
    return api_send_json(c, MHD_HTTP_OK,
                         json_pack("{s:s,s:n,s:n}", "actor", rq->actor, "csrf", "expires_at"));
}

enum MHD_Result api_get_healthz(listener *l, struct MHD_Connection *c, request *rq)
{
    return api_send_json(c, MHD_HTTP_OK, json_pack("{s:b}", "ok", 1));
}

enum MHD_Result api_get_runs(listener *l, struct MHD_Connection *c, request *rq)
{
    return get_list(l->api, c, fill_runs, "runs");
}

enum MHD_Result api_get_refreshes(listener *l, struct MHD_Connection *c, request *rq)
{
    return get_list(l->api, c, fill_refreshes, "refreshes");
}

enum MHD_Result api_get_drills(listener *l, struct MHD_Connection *c, request *rq)
{
    return get_list(l->api, c, fill_drills, "drills");
}
