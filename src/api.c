/* api.c - drd's HTTP server: libmicrohttpd in its own internal polling
 * thread, one daemon per listener (the unix socket, and optionally TCP),
 * both served by the same handler.
 *
 * The HTTP threads never act and never block on the network or a child:
 * a handler only touches memory (the published status document, the
 * command queue) and the local SQLite file through its own read-only
 * connection. Mutations are queued for the main loop, which is woken by an
 * eventfd, and are answered 202 with the request id.
 *
 * SIGPIPE: MHD sends with MSG_NOSIGNAL on Linux, and the daemon's main
 * ignores SIGPIPE anyway (signal(SIGPIPE, SIG_IGN)), so a client that goes
 * away mid-response cannot kill drd. */
#include "drd/api.h"
#include "drd/executor.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "drd/log.h"
#include "drd/store.h"
#include "drd/util.h"

#define API_MAX_BODY          (64 * 1024)   /* bigger bodies get 413 */
#define API_MAX_DRAIN         (1024 * 1024) /* beyond this a too-large upload is cut */
#define API_CONN_LIMIT        256u
#define API_PER_IP_LIMIT      64u
#define API_CONN_TIMEOUT_S    10u
#define API_CONN_MEMORY       ((size_t)128 * 1024)
#define API_MAX_QUEUED        1000          /* commands waiting for the main loop */
#define API_EVENTS_DEFAULT    100
#define API_EVENTS_MAX        1000
#define API_INCIDENTS_DEFAULT 20
#define API_INCIDENTS_MAX     500
#define API_STORE_RETRY_MS    1000

typedef struct listener {
    struct api *api;
    bool tcp;                    /* TCP needs the bearer token */
    int fd;                      /* ours until MHD_start_daemon succeeds */
    struct MHD_Daemon *d;
} listener;

struct api {
    listener unix_l, tcp_l;
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool socket_created;
    dev_t socket_dev;
    ino_t socket_ino;
    char *token;                 /* NULL: TCP refuses all but /healthz */
    char *db_path;

    pthread_mutex_t lock;        /* status, queue, next_request_id */
    char *status;                /* last published document, or NULL */
    api_cmd *head, *tail;
    size_t queued;
    int64_t next_request_id;
    int efd;

    /* The HTTP threads' own read-only store connection (both MHD threads
     * share it, hence the lock). Opened lazily, retried after a failure. */
    pthread_mutex_t store_lock;
    store_t *store;
    int64_t store_retry_at;      /* mono ms */
    bool store_warned;
};

typedef enum {
    R_NONE = 0,
    R_HEALTHZ,
    R_STATUS,
    R_EVENTS,
    R_INCIDENTS,
    R_FAILOVER,
    R_FAILBACK,
    R_APPROVE,
    R_REJECT,
    R_RUNS,
    R_RUN,
    R_REQUEST,
} route_id;

typedef struct {
    route_id id;
    bool post;                   /* POST route (else GET/HEAD) */
    char id_str[32];             /* the {id} path segment, if any */
    bool id_too_long;
} route;

/* Per-request state (MHD's con_cls). */
typedef struct {
    route r;
    bool responded;
    bool too_large;
    char *body;
    size_t len, cap;
    size_t drained;
} request;

/* ------------------------------------------------------------------ */
/* responses                                                          */

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned code,
                                 char *body, const char *allow, bool auth_challenge)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (body == NULL)
        return MHD_NO;
    resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (allow != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (auth_challenge)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    ret = MHD_queue_response(c, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Takes ownership of doc. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code, json_t *doc)
{
    char *s = NULL;

    if (doc != NULL)
        s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (s == NULL)
        return MHD_NO;
    return send_body(c, code, s, NULL, false);
}

static enum MHD_Result send_error_ex(struct MHD_Connection *c, unsigned code,
                                     const char *msg, const char *allow, bool challenge)
{
    json_t *doc = json_pack("{s:s}", "error", msg);
    char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;

    json_decref(doc);
    if (s == NULL)
        return MHD_NO;
    return send_body(c, code, s, allow, challenge);
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code, const char *msg)
{
    return send_error_ex(c, code, msg, NULL, false);
}

/* ------------------------------------------------------------------ */
/* routing                                                            */

static bool segment_copy(const char *s, size_t len, route *r)
{
    if (len == 0)
        return false;
    if (len >= sizeof(r->id_str)) {
        r->id_too_long = true;
        len = sizeof(r->id_str) - 1;
    }
    memcpy(r->id_str, s, len);
    r->id_str[len] = '\0';
    return true;
}

static void route_match(const char *url, route *r)
{
    static const struct { const char *path; route_id id; bool post; } exact[] = {
        { "/healthz",       R_HEALTHZ,   false },
        { "/api/status",    R_STATUS,    false },
        { "/api/events",    R_EVENTS,    false },
        { "/api/incidents", R_INCIDENTS, false },
        { "/api/failover",  R_FAILOVER,  true  },
        { "/api/failback",  R_FAILBACK,  true  },
        { "/api/runs",      R_RUNS,      false },
    };
    static const char runs[] = "/api/runs/";
    static const char requests[] = "/api/requests/";
    static const char approvals[] = "/api/approvals/";

    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < ARRAY_LEN(exact); i++) {
        if (strcmp(url, exact[i].path) == 0) {
            r->id = exact[i].id;
            r->post = exact[i].post;
            return;
        }
    }
    if (strncmp(url, runs, sizeof(runs) - 1) == 0) {
        const char *seg = url + sizeof(runs) - 1;
        if (strchr(seg, '/') == NULL && segment_copy(seg, strlen(seg), r))
            r->id = R_RUN;
        return;
    }
    if (strncmp(url, requests, sizeof(requests) - 1) == 0) {
        const char *seg = url + sizeof(requests) - 1;
        if (strchr(seg, '/') == NULL && segment_copy(seg, strlen(seg), r))
            r->id = R_REQUEST;
        return;
    }
    if (strncmp(url, approvals, sizeof(approvals) - 1) == 0) {
        const char *seg = url + sizeof(approvals) - 1;
        const char *slash = strchr(seg, '/');
        route_id id = R_NONE;

        if (slash == NULL)
            return;
        if (strcmp(slash, "/approve") == 0)
            id = R_APPROVE;
        else if (strcmp(slash, "/reject") == 0)
            id = R_REJECT;
        if (id != R_NONE && segment_copy(seg, (size_t)(slash - seg), r)) {
            r->id = id;
            r->post = true;
        }
    }
}

/* Positive decimal integer, nothing else (no sign, no spaces). */
static bool parse_id(const char *s, bool allow_zero, int64_t *out)
{
    int64_t v = 0;

    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        if (v > (INT64_MAX - (*p - '0')) / 10)
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v == 0 && !allow_zero)
        return false;
    *out = v;
    return true;
}

/* ------------------------------------------------------------------ */
/* auth                                                               */

static bool authorized(const api_t *a, struct MHD_Connection *c)
{
    const char *h;
    static const char scheme[] = "Bearer ";

    if (a->token == NULL || a->token[0] == '\0')
        return false;
    h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, scheme, sizeof(scheme) - 1) != 0)
        return false;
    h += sizeof(scheme) - 1;
    while (*h == ' ')
        h++;
    return str_ct_equal(h, a->token);
}

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

static enum MHD_Result get_status(api_t *a, struct MHD_Connection *c)
{
    char *copy = NULL;

    pthread_mutex_lock(&a->lock);
    if (a->status != NULL)
        copy = strdup(a->status);
    pthread_mutex_unlock(&a->lock);
    if (copy == NULL)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting");
    return send_body(c, MHD_HTTP_OK, copy, NULL, false);
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
    if (!parse_id(v, allow_zero, out))
        return false;
    if (max > 0 && *out > max)
        *out = max;
    return true;
}

static bool event_to_array(const store_event *e, void *arg)
{
    json_t *arr = arg;
    json_t *o = json_pack("{s:I,s:I,s:s,s:o,s:s}",
                          "id", (json_int_t)e->id,
                          "at", (json_int_t)e->at,
                          "kind", e->kind,
                          "target", e->target[0] != '\0' ? json_string(e->target) : json_null(),
                          "message", e->message);
    if (o == NULL)
        return false;
    json_array_append_new(arr, o);
    return true;
}

static enum MHD_Result get_events(api_t *a, struct MHD_Connection *c)
{
    int64_t since = 0, limit = 0, last_id = 0;
    bool has_since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since") != NULL;
    json_t *events = NULL;
    store_t *st;
    bool ok;

    if (!query_int(c, "since", true, 0, 0, &since))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "since must be a non-negative integer");
    if (!query_int(c, "limit", false, API_EVENTS_DEFAULT, API_EVENTS_MAX, &limit))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "limit must be a positive integer");

    events = json_array();
    if (events == NULL)
        return MHD_NO;
    pthread_mutex_lock(&a->store_lock);
    st = ro_store(a);
    if (st == NULL) {
        pthread_mutex_unlock(&a->store_lock);
        json_decref(events);
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database unavailable");
    }
    if (has_since)
        ok = store_events_since(st, since, (int)limit, event_to_array, events);
    else
        ok = store_events_recent(st, (int)limit, event_to_array, events);
    if (!ok)
        ro_store_reset(a);
    pthread_mutex_unlock(&a->store_lock);
    if (!ok) {
        json_decref(events);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot read events");
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
    return send_json(c, MHD_HTTP_OK,
                     json_pack("{s:o,s:I}", "events", events, "last_id", (json_int_t)last_id));
}

static bool incident_to_array(const store_incident *i, void *arg)
{
    json_t *arr = arg;
    json_t *o = json_pack("{s:I,s:s,s:I,s:o,s:s}",
                          "id", (json_int_t)i->id,
                          "target", i->target,
                          "started_at", (json_int_t)i->started_at,
                          "ended_at", i->ended_at > 0 ? json_integer((json_int_t)i->ended_at)
                                                      : json_null(),
                          "reason", i->reason);
    if (o == NULL)
        return false;
    json_array_append_new(arr, o);
    return true;
}

static enum MHD_Result get_incidents(api_t *a, struct MHD_Connection *c)
{
    int64_t limit = 0;
    json_t *arr;
    store_t *st;
    bool ok;

    if (!query_int(c, "limit", false, API_INCIDENTS_DEFAULT, API_INCIDENTS_MAX, &limit))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "limit must be a positive integer");
    arr = json_array();
    if (arr == NULL)
        return MHD_NO;
    pthread_mutex_lock(&a->store_lock);
    st = ro_store(a);
    if (st == NULL) {
        pthread_mutex_unlock(&a->store_lock);
        json_decref(arr);
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database unavailable");
    }
    ok = store_incidents_recent(st, (int)limit, incident_to_array, arr);
    if (!ok)
        ro_store_reset(a);
    pthread_mutex_unlock(&a->store_lock);
    if (!ok) {
        json_decref(arr);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot read incidents");
    }
    return send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "incidents", arr));
}

/* GET /api/runs/{id}: the run, its steps with their output, its approvals. */
static enum MHD_Result get_run(api_t *a, struct MHD_Connection *c, const route *r)
{
    int64_t id;
    if (r->id_too_long || !parse_id(r->id_str, false, &id))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "run id must be a positive integer");
    store_t *st = ro_store(a);
    if (st == NULL)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database not available");
    json_t *run = executor_run_to_json(st, id, true);
    if (run == NULL)
        return send_error(c, MHD_HTTP_NOT_FOUND, "no such run");
    return send_json(c, MHD_HTTP_OK, run);
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

/* GET /api/runs?limit=N: newest first, with steps (no output). */
static enum MHD_Result get_runs(api_t *a, struct MHD_Connection *c)
{
    int64_t limit;
    if (!query_int(c, "limit", false, 20, 1000, &limit))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "limit must be an integer from 1 to 1000");
    store_t *st = ro_store(a);
    if (st == NULL)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database not available");
    runs_ctx x = { st, json_array() };
    if (!store_runs_recent(st, (int)limit, run_to_array, &x)) {
        json_decref(x.arr);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot read runs");
    }
    return send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "runs", x.arr));
}

/* GET /api/requests/{id}: what became of a queued request. 404 while it is
 * still queued (the main loop has not taken it yet). */
static enum MHD_Result get_request(api_t *a, struct MHD_Connection *c, const route *r)
{
    int64_t id;
    store_request rq;
    if (r->id_too_long || !parse_id(r->id_str, false, &id))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "request id must be a positive integer");
    store_t *st = ro_store(a);
    if (st == NULL)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database not available");
    if (!store_request_get(st, id, &rq))
        return send_error(c, MHD_HTTP_NOT_FOUND, "no such request (yet)");
    return send_json(c, MHD_HTTP_OK,
                     json_pack("{s:I, s:s, s:s, s:s, s:o, s:o, s:I}", "id", (json_int_t)rq.id,
                               "kind", rq.kind, "state", rq.state, "actor", rq.actor,
                               "run_id", rq.run_id ? json_integer(rq.run_id) : json_null(),
                               "error", rq.error[0] ? json_string(rq.error) : json_null(),
                               "at", (json_int_t)rq.at));
}

/* ------------------------------------------------------------------ */
/* the command queue                                                  */

/* Returns the request id, 0 when the queue is full, -1 on error. */
static int64_t queue_cmd(api_t *a, api_cmd_kind kind, int64_t approval_id,
                         const char *reason, const char *choice, const char *actor)
{
    api_cmd *cmd = calloc(1, sizeof(*cmd));
    uint64_t one = 1;
    int64_t id;

    if (cmd == NULL)
        return -1;
    cmd->kind = kind;
    cmd->approval_id = approval_id;
    str_copy(cmd->reason, reason, sizeof(cmd->reason));
    str_copy(cmd->choice, choice, sizeof(cmd->choice));
    str_copy(cmd->actor, actor, sizeof(cmd->actor));

    pthread_mutex_lock(&a->lock);
    if (a->queued >= API_MAX_QUEUED) {
        pthread_mutex_unlock(&a->lock);
        free(cmd);
        return 0;
    }
    id = a->next_request_id++;
    cmd->request_id = id;
    if (a->tail != NULL)
        a->tail->next = cmd;
    else
        a->head = cmd;
    a->tail = cmd;
    a->queued++;
    /* Written under the lock so api_cmd_pop's drain cannot lose a wakeup. */
    if (write(a->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        log_warn("http: cannot wake the main loop: %s", strerror(errno));
    pthread_mutex_unlock(&a->lock);
    return id;
}

static bool body_is_blank(const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)b[i]))
            return false;
    return true;
}

/* The optional body {"reason": "..."}. false with a message for a 400. */
static bool parse_body(const request *rq, char *reason, size_t n, char *choice, size_t cn,
                       char *msg, size_t msglen)
{
    json_error_t jerr;
    json_t *doc, *r;
    bool ok = false;

    reason[0] = '\0';
    choice[0] = '\0';
    if (rq->len == 0 || body_is_blank(rq->body, rq->len))
        return true;
    doc = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        snprintf(msg, msglen, "malformed JSON body: %s (line %d, column %d)",
                 jerr.text, jerr.line, jerr.column);
        return false;
    }
    if (!json_is_object(doc)) {
        snprintf(msg, msglen, "the body must be a JSON object");
        goto done;
    }
    r = json_object_get(doc, "reason");
    if (r != NULL && !json_is_null(r)) {
        if (!json_is_string(r)) {
            snprintf(msg, msglen, "reason must be a string");
            goto done;
        }
        if (json_string_length(r) >= n) {
            snprintf(msg, msglen, "reason is too long (at most %zu bytes)", n - 1);
            goto done;
        }
        str_copy(reason, json_string_value(r), n);
    }
    r = json_object_get(doc, "choice");
    if (r != NULL && !json_is_null(r)) {
        const char *v = json_string_value(r);
        if (v == NULL || (strcmp(v, "retry") != 0 && strcmp(v, "skip") != 0 && strcmp(v, "abort") != 0)) {
            snprintf(msg, msglen, "choice must be \"retry\", \"skip\" or \"abort\"");
            goto done;
        }
        str_copy(choice, v, cn);
    }
    ok = true;
done:
    json_decref(doc);
    return ok;
}

static enum MHD_Result post_command(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    char reason[sizeof(((api_cmd *)0)->reason)];
    char choice[sizeof(((api_cmd *)0)->choice)];
    char msg[256];
    int64_t approval_id = 0, id;
    api_cmd_kind kind;

    if (!parse_body(rq, reason, sizeof(reason), choice, sizeof(choice), msg, sizeof(msg)))
        return send_error(c, MHD_HTTP_BAD_REQUEST, msg);

    switch (rq->r.id) {
    case R_FAILOVER: kind = API_CMD_FAILOVER; break;
    case R_FAILBACK: kind = API_CMD_FAILBACK; break;
    case R_APPROVE:  kind = API_CMD_APPROVE; break;
    case R_REJECT:   kind = API_CMD_REJECT; break;
    default:
        return send_error(c, MHD_HTTP_NOT_FOUND, "not found");
    }
    if (kind == API_CMD_APPROVE || kind == API_CMD_REJECT) {
        if (rq->r.id_too_long || !parse_id(rq->r.id_str, false, &approval_id))
            return send_error(c, MHD_HTTP_BAD_REQUEST,
                              "approval id must be a positive integer");
    }
    if (choice[0] != '\0' && kind != API_CMD_APPROVE)
        return send_error(c, MHD_HTTP_BAD_REQUEST, "choice only applies to approve");
    id = queue_cmd(a, kind, approval_id, reason, choice, l->tcp ? "token" : "socket");
    if (id == 0)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many queued requests");
    if (id < 0)
        return MHD_NO;
    return send_json(c, MHD_HTTP_ACCEPTED,
                     json_pack("{s:I,s:s}", "request_id", (json_int_t)id, "status", "queued"));
}

/* ------------------------------------------------------------------ */
/* the MHD callbacks                                                  */

static bool is_get(const char *m)
{
    return strcmp(m, MHD_HTTP_METHOD_GET) == 0 || strcmp(m, MHD_HTTP_METHOD_HEAD) == 0;
}

/* First call for a request: headers are in, the body (if any) is not.
 * Answer everything that does not need the body right away; MHD then
 * discards any upload. */
static enum MHD_Result begin_request(listener *l, request *rq, struct MHD_Connection *c,
                                     const char *url, const char *method)
{
    api_t *a = l->api;
    route *r = &rq->r;
    const char *clen;

    route_match(url, r);
    rq->responded = true;   /* every branch but the POST one answers now */

    if (l->tcp && !(r->id == R_HEALTHZ && is_get(method)) && !authorized(a, c))
        return send_error_ex(c, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL, true);
    if (r->id == R_NONE)
        return send_error(c, MHD_HTTP_NOT_FOUND, "not found");
    if (r->post ? strcmp(method, MHD_HTTP_METHOD_POST) != 0 : !is_get(method))
        return send_error_ex(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                             r->post ? "POST" : "GET, HEAD", false);

    clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (clen != NULL) {
        char *end = NULL;
        unsigned long long n;

        bool bad;

        errno = 0;
        n = strtoull(clen, &end, 10);
        bad = errno != 0 || end == clen || *end != '\0';
        if (bad || n > API_MAX_BODY) {
            /* Answering before the body is read makes MHD close the
             * connection with the body unread, and a client still sending
             * may then see a reset instead of the 413. So answer now only
             * when the client waits for us (Expect: 100-continue) or the
             * body is absurd; otherwise read and discard it, answer at the
             * end (on_request). */
            const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                             MHD_HTTP_HEADER_EXPECT);
            if (bad || n > API_MAX_DRAIN ||
                (expect != NULL && strcasecmp(expect, "100-continue") == 0))
                return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
            rq->too_large = true;
            rq->responded = false;
            return MHD_YES;
        }
    }

    switch (r->id) {
    case R_HEALTHZ:
        return send_json(c, MHD_HTTP_OK, json_pack("{s:b}", "ok", 1));
    case R_STATUS:
        return get_status(a, c);
    case R_EVENTS:
        return get_events(a, c);
    case R_INCIDENTS:
        return get_incidents(a, c);
    case R_RUN:
        return get_run(a, c, r);
    case R_RUNS:
        return get_runs(a, c);
    case R_REQUEST:
        return get_request(a, c, r);
    default:
        break;
    }
    /* A POST route: read the body first (MHD sends 100 Continue if asked). */
    rq->responded = false;
    return MHD_YES;
}

static enum MHD_Result on_upload(request *rq, const char *data, size_t *size)
{
    size_t n = *size;

    *size = 0;
    if (rq->too_large) {
        /* Waiting for the end of the upload to answer 413; cut off a
         * client that keeps sending far beyond the limit. */
        rq->drained += n;
        return rq->drained > API_MAX_DRAIN ? MHD_NO : MHD_YES;
    }
    if (n > API_MAX_BODY - rq->len) {
        free(rq->body);
        rq->body = NULL;
        rq->len = rq->cap = 0;
        rq->too_large = true;
        rq->drained = n;
        /* MHD 0.9.75 accepts a response only before or after the upload,
         * so the 413 goes out at its end (on_request). */
        return MHD_YES;
    }
    if (rq->len + n > rq->cap) {
        size_t cap = rq->cap != 0 ? rq->cap : 1024;
        char *nb;

        while (cap < rq->len + n)
            cap *= 2;
        if (cap > API_MAX_BODY)
            cap = API_MAX_BODY;
        nb = realloc(rq->body, cap);
        if (nb == NULL)
            return MHD_NO;
        rq->body = nb;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    listener *l = cls;
    request *rq = *con_cls;

    (void)version;
    if (rq == NULL) {
        rq = calloc(1, sizeof(*rq));
        if (rq == NULL)
            return MHD_NO;
        *con_cls = rq;
        return begin_request(l, rq, c, url, method);
    }
    if (*upload_data_size != 0) {
        if (rq->responded) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        return on_upload(rq, upload_data, upload_data_size);
    }
    /* the upload is complete */
    if (rq->responded)
        return MHD_YES;
    rq->responded = true;
    if (rq->too_large)
        return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
    return post_command(l, c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    request *rq = *con_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (rq != NULL) {
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

static void mhd_logger(void *cls, const char *fm, va_list ap)
{
    char buf[512];
    size_t n;

    (void)cls;
    vsnprintf(buf, sizeof(buf), fm, ap);
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    log_warn("http: %s", buf);
}

/* ------------------------------------------------------------------ */
/* listening sockets                                                  */


static int unix_listen(api_t *a, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    struct stat st;
    mode_t old_mask;
    int fd = -1, rc;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "socket path too long (max %zu bytes): %s",
                 sizeof(sun.sun_path) - 1, path);
        return -1;
    }
    str_copy(sun.sun_path, path, sizeof(sun.sun_path));
    if (!mkdir_parents(path, 0755, err, errlen))
        return -1;

    if (lstat(path, &st) == 0) {
        int probe;

        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            return -1;
        }
        /* Only a socket nobody answers on is stale. */
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            snprintf(err, errlen, "socket: %s", strerror(errno));
            return -1;
        }
        rc = connect(probe, (struct sockaddr *)&sun, sizeof(sun));
        if (rc == 0) {
            close(probe);
            snprintf(err, errlen, "another process is listening on %s (is drd already running?)",
                     path);
            return -1;
        }
        if (errno != ECONNREFUSED && errno != ENOENT) {
            snprintf(err, errlen, "cannot check %s: %s", path, strerror(errno));
            close(probe);
            return -1;
        }
        close(probe);
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
            return -1;
        }
        log_info("removed stale socket %s", path);
    }

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    /* Never let the socket exist with a wider mode than 0660, even briefly
     * (api_start runs before any other thread creates files). */
    old_mask = umask(0117);
    rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old_mask);
    if (rc != 0) {
        snprintf(err, errlen, "cannot bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (chmod(path, 0660) != 0 || lstat(path, &st) != 0) {
        snprintf(err, errlen, "cannot set the mode of %s: %s", path, strerror(errno));
        goto fail;
    }
    a->socket_created = true;
    a->socket_dev = st.st_dev;
    a->socket_ino = st.st_ino;
    if (listen(fd, 64) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    unlink(path);
    a->socket_created = false;
    close(fd);
    return -1;
}

/* "1.2.3.4:port" or "[v6]:port", numeric only. */
static bool parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                         char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_s;
    size_t hlen;
    int64_t port = 0;
    bool v6 = false;

    if (s[0] == '[') {
        const char *close_b = strchr(s, ']');
        if (close_b == NULL || close_b[1] != ':')
            goto bad;
        hlen = (size_t)(close_b - s - 1);
        if (hlen == 0 || hlen >= sizeof(host))
            goto bad;
        memcpy(host, s + 1, hlen);
        port_s = close_b + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL)
            goto bad;
        hlen = (size_t)(colon - s);
        if (hlen == 0 || hlen >= sizeof(host) || memchr(s, ':', hlen) != NULL)
            goto bad;
        memcpy(host, s, hlen);
        port_s = colon + 1;
    }
    host[hlen] = '\0';
    if (!parse_id(port_s, false, &port) || port > 65535)
        goto bad;

    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            goto bad;
        *len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            goto bad;
        *len = sizeof(*sin);
    }
    return true;
bad:
    snprintf(err, errlen, "listen: expected IPv4:PORT or [IPv6]:PORT, got \"%s\"", s);
    return false;
}

static int tcp_listen(const char *spec, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int fd, one = 1;

    if (!parse_listen(spec, &ss, &len, err, errlen))
        return -1;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        snprintf(err, errlen, "cannot bind %s: %s", spec, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, 128) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static bool start_daemon(listener *l, char *err, size_t errlen)
{
    l->d = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, l,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, (void *)NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)l->fd,
        MHD_OPTION_CONNECTION_LIMIT, API_CONN_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, l->tcp ? API_PER_IP_LIMIT : 0u,
        MHD_OPTION_CONNECTION_TIMEOUT, API_CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, API_CONN_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, (void *)NULL,
        MHD_OPTION_END);
    if (l->d == NULL) {
        snprintf(err, errlen, "cannot start the HTTP server on the %s listener",
                 l->tcp ? "TCP" : "unix socket");
        return false;
    }
    l->fd = -1;   /* MHD owns and closes it now */
    return true;
}

/* ------------------------------------------------------------------ */
/* public                                                             */

api_t *api_start(const api_options *o, char *err, size_t errlen)
{
    api_t *a;
    bool has_unix = o != NULL && o->socket_path != NULL && o->socket_path[0] != '\0';
    bool has_tcp = o != NULL && o->listen != NULL && o->listen[0] != '\0';

    if (errlen > 0)
        err[0] = '\0';
    if (!has_unix && !has_tcp) {
        snprintf(err, errlen, "no HTTP listener configured (socket or listen)");
        return NULL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->store_lock, NULL);
    a->unix_l = (listener){ .api = a, .tcp = false, .fd = -1, .d = NULL };
    a->tcp_l = (listener){ .api = a, .tcp = true, .fd = -1, .d = NULL };
    a->next_request_id = wall_ms();
    /* Seed jansson's hash function here, in one thread, rather than racing
     * on it from the two HTTP threads' first json_object(). */
    json_object_seed(0);
    a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if (o->token != NULL && o->token[0] != '\0' && (a->token = strdup(o->token)) == NULL)
        goto oom;
    if (o->db_path != NULL && o->db_path[0] != '\0' && (a->db_path = strdup(o->db_path)) == NULL)
        goto oom;

    if (has_unix) {
        str_copy(a->socket_path, o->socket_path, sizeof(a->socket_path));
        a->unix_l.fd = unix_listen(a, o->socket_path, err, errlen);
        if (a->unix_l.fd < 0 || !start_daemon(&a->unix_l, err, errlen))
            goto fail;
    }
    if (has_tcp) {
        a->tcp_l.fd = tcp_listen(o->listen, err, errlen);
        if (a->tcp_l.fd < 0 || !start_daemon(&a->tcp_l, err, errlen))
            goto fail;
        if (a->token == NULL)
            log_warn("http: no token configured: %s answers only /healthz", o->listen);
    }
    return a;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    api_stop(a);
    return NULL;
}

void api_stop(api_t *a)
{
    listener *ls[2];
    api_cmd *c;

    if (a == NULL)
        return;
    ls[0] = &a->unix_l;
    ls[1] = &a->tcp_l;
    for (size_t i = 0; i < ARRAY_LEN(ls); i++) {
        if (ls[i]->d != NULL)
            MHD_stop_daemon(ls[i]->d);   /* joins its thread, closes the socket */
        ls[i]->d = NULL;
        if (ls[i]->fd >= 0)
            close(ls[i]->fd);
        ls[i]->fd = -1;
    }
    /* Remove the socket file only if it is still the one we created. */
    if (a->socket_created) {
        struct stat st;

        if (lstat(a->socket_path, &st) == 0 && st.st_dev == a->socket_dev &&
            st.st_ino == a->socket_ino)
            unlink(a->socket_path);
    }
    while ((c = a->head) != NULL) {
        a->head = c->next;
        free(c);
    }
    store_close(a->store);
    free(a->status);
    free(a->token);
    free(a->db_path);
    if (a->efd >= 0)
        close(a->efd);
    pthread_mutex_destroy(&a->store_lock);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

void api_publish_status(api_t *a, const char *json)
{
    char *copy, *old;

    if (a == NULL || json == NULL)
        return;
    copy = strdup(json);
    if (copy == NULL) {
        log_error("http: out of memory publishing the status");
        return;
    }
    pthread_mutex_lock(&a->lock);
    old = a->status;
    a->status = copy;
    pthread_mutex_unlock(&a->lock);
    free(old);
}

int api_cmd_fd(api_t *a)
{
    return a != NULL ? a->efd : -1;
}

api_cmd *api_cmd_pop(api_t *a)
{
    api_cmd *c;

    if (a == NULL)
        return NULL;
    pthread_mutex_lock(&a->lock);
    c = a->head;
    if (c != NULL) {
        a->head = c->next;
        if (a->head == NULL)
            a->tail = NULL;
        a->queued--;
        c->next = NULL;
    }
    if (a->head == NULL) {
        uint64_t v;
        /* Empty now: clear the eventfd (EAGAIN when already clear). */
        if (read(a->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            log_warn("http: reading the command eventfd: %s", strerror(errno));
    }
    pthread_mutex_unlock(&a->lock);
    return c;
}
