/* api_route.c - responses, the route table and the MHD request callbacks:
 * a request is matched to a route, its asker identified (api_auth.c),
 * and the route's handler answers (api_views.c, api_cmd.c). */
#include "api_int.h"

/* Queue a response. body: len bytes; with MHD_RESPMEM_MUST_FREE it is
 * ours to free (also on failure). */
enum MHD_Result api_send_resp(struct MHD_Connection *c, unsigned code, void *body, size_t len,
                              enum MHD_ResponseMemoryMode mode, const resp_opts *o)
{
    static const resp_opts none;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char num[32];

    if (o == NULL)
        o = &none;
    resp = MHD_create_response_from_buffer(len, body, mode);
    if (resp == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            o->ctype != NULL ? o->ctype : "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                            o->cache != NULL ? o->cache : "no-store");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY,
                            o->csp != NULL ? o->csp : API_CSP_API);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    if (o->allow != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, o->allow);
    if (o->challenge)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (o->cookie != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, o->cookie);
    if (o->etag != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, o->etag);
    if (o->retry_after > 0) {
        snprintf(num, sizeof(num), "%" PRId64, o->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, num);
    }
    ret = MHD_queue_response(c, code, resp);
    MHD_destroy_response(resp);
    api_conn_renew(c);   /* the request is in: the answer has its own deadline */
    return ret;
}

/* A malloc'd NUL-terminated JSON text (taken). */
static enum MHD_Result send_body_opts(struct MHD_Connection *c, unsigned code, char *body,
                                      const resp_opts *o)
{
    if (body == NULL)
        return MHD_NO;
    return api_send_resp(c, code, body, strlen(body), MHD_RESPMEM_MUST_FREE, o);
}

enum MHD_Result api_send_body(struct MHD_Connection *c, unsigned code, char *body)
{
    return send_body_opts(c, code, body, NULL);
}

/* Takes ownership of doc. */
enum MHD_Result api_send_json_opts(struct MHD_Connection *c, unsigned code, json_t *doc,
                                   const resp_opts *o)
{
    char *s = NULL;

    if (doc != NULL)
        s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (s == NULL)
        return MHD_NO;
    return send_body_opts(c, code, s, o);
}

enum MHD_Result api_send_json(struct MHD_Connection *c, unsigned code, json_t *doc)
{
    return api_send_json_opts(c, code, doc, NULL);
}

enum MHD_Result api_send_error_opts(struct MHD_Connection *c, unsigned code,
                                    const char *msg, const resp_opts *o)
{
    return api_send_json_opts(c, code, json_pack("{s:s}", "error", msg), o);
}

enum MHD_Result api_send_error(struct MHD_Connection *c, unsigned code, const char *msg)
{
    return api_send_error_opts(c, code, msg, NULL);
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

/* The route table, one row per route_id: its path (exact, or with one
 * {id} segment: a non-empty run of anything but '/'), its method and its
 * handler. R_STATIC's paths are those of api_web_files. */
static const struct {
    const char *path;
    bool post;                   /* POST route (else GET/HEAD) */
    route_fn fn;
} routes[] = {
    [R_HEALTHZ]   = { "/healthz",                    false, api_get_healthz },
    [R_STATIC]    = { NULL,                          false, api_get_static },
    [R_METRICS]   = { "/metrics",                    false, api_get_metrics },
    [R_LOGIN]     = { "/api/login",                  true,  api_post_login },
    [R_LOGOUT]    = { "/api/logout",                 true,  api_post_logout },
    [R_SESSION]   = { "/api/session",                false, api_get_session },
    [R_STATUS]    = { "/api/status",                 false, api_get_status },
    [R_EVENTS]    = { "/api/events",                 false, api_get_events },
    [R_INCIDENTS] = { "/api/incidents",              false, api_get_incidents },
    [R_PROBES]    = { "/api/probes",                 false, api_get_probes },
    [R_FAILOVER]  = { "/api/failover",               true,  api_post_command },
    [R_FAILBACK]  = { "/api/failback",               true,  api_post_command },
    [R_APPROVE]   = { "/api/approvals/{id}/approve", true,  api_post_command },
    [R_REJECT]    = { "/api/approvals/{id}/reject",  true,  api_post_command },
    [R_RUNS]      = { "/api/runs",                   false, api_get_runs },
    [R_DRILLS]    = { "/api/drills",                 false, api_get_drills },
    [R_DRILL]     = { "/api/drill",                  true,  api_post_command },
    [R_CHECKS]    = { "/api/checks",                 true,  api_post_command },
    [R_UNBLOCK]   = { "/api/unblock",                true,  api_post_command },
    [R_RUN]       = { "/api/runs/{id}",              false, api_get_run },
    [R_REQUEST]   = { "/api/requests/{id}",          false, api_get_request },
    [R_REFRESH]   = { "/api/refresh",                true,  api_post_command },
    [R_REFRESHES] = { "/api/refreshes",              false, api_get_refreshes },
};

/* Does url match pattern (see routes)? The {id} segment goes to r. */
static bool path_match(const char *pattern, const char *url, route *r)
{
    static const char ID[] = "{id}";
    const char *hole = strstr(pattern, ID);
    size_t pre, seg;

    if (hole == NULL)
        return strcmp(url, pattern) == 0;
    pre = (size_t)(hole - pattern);
    if (strncmp(url, pattern, pre) != 0)
        return false;
    url += pre;
    seg = strcspn(url, "/");
    if (strcmp(url + seg, hole + sizeof(ID) - 1) != 0)
        return false;
    return segment_copy(url, seg, r);
}

/* Exact paths only: anything else ("..", "//", encoded variants, a
 * trailing slash) is simply not a route. */
static void route_match(const char *url, route *r)
{
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < ARRAY_LEN(routes); i++) {
        if (routes[i].path != NULL && path_match(routes[i].path, url, r)) {
            r->id = (route_id)i;
            r->post = routes[i].post;
            return;
        }
    }
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < WEB_FILES; i++) {
        if (strcmp(url, api_web_files[i].path) == 0) {
            r->id = R_STATIC;
            r->web_idx = i;
            return;
        }
    }
}

/* Positive decimal integer, nothing else (no sign, no spaces). */
bool api_parse_id(const char *s, bool allow_zero, int64_t *out)
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
/* the MHD callbacks                                                  */

static bool is_get(const char *m)
{
    return strcmp(m, MHD_HTTP_METHOD_GET) == 0 || strcmp(m, MHD_HTTP_METHOD_HEAD) == 0;
}

/* Routes anyone may use over TCP. */
static bool route_open(const api_t *a, route_id id)
{
    return id == R_HEALTHZ || id == R_STATIC || id == R_LOGIN ||
           (id == R_METRICS && !a->metrics_need_token);
}

/* Headers are in, the body (if any) is not (see api_on_request for when this
 * runs). Answer everything that does not need the body right away; MHD
 * then discards any upload. */
static enum MHD_Result begin_request(listener *l, request *rq, struct MHD_Connection *c,
                                     const char *url, const char *method)
{
    api_t *a = l->api;
    route *r = &rq->r;
    const char *clen;

    route_match(url, r);
    rq->responded = true;   /* every branch but the POST one answers now */
    rq->who = api_identify(l, c, rq);

    if (l->tcp && rq->who == WHO_NONE && !route_open(a, r->id)) {
        resp_opts o = { .challenge = true };

        if (rq->bad_bearer) {
            char addr[INET6_ADDRSTRLEN + 4];

            api_client_key(c, addr, sizeof(addr));
            if ((o.retry_after = api_auth_failure(a, addr)) > 0)
                return api_send_error_opts(c, MHD_HTTP_TOO_MANY_REQUESTS,
                                           "wrong token, and too many of them: try again later", &o);
            log_warn("http: wrong bearer token from %s", addr);
        }
        return api_send_error_opts(c, MHD_HTTP_UNAUTHORIZED, "unauthorized", &o);
    }
    if (r->id == R_NONE)
        return api_send_error(c, MHD_HTTP_NOT_FOUND, "not found");
    if (r->post ? strcmp(method, MHD_HTTP_METHOD_POST) != 0 : !is_get(method)) {
        resp_opts o = { .allow = r->post ? "POST" : "GET, HEAD" };
        return api_send_error_opts(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", &o);
    }
    if (r->id == R_LOGIN) {
        /* no throttling here: a right token always gets in (api_post_login) */
        if (!api_origin_ok(c))
            return api_send_error(c, MHD_HTTP_FORBIDDEN, "cross-origin request refused");
    } else if (r->post && rq->who == WHO_SESSION) {
        const char *why = api_csrf_problem(c, rq);
        if (why != NULL) {
            log_warn("http: a POST by %s was refused: %s", rq->actor, why);
            return api_send_error(c, MHD_HTTP_FORBIDDEN, why);
        }
    }

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
             * end (api_on_request). */
            const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                             MHD_HTTP_HEADER_EXPECT);
            if (bad || n > API_MAX_DRAIN ||
                (expect != NULL && strcasecmp(expect, "100-continue") == 0))
                return api_send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
            rq->too_large = true;
            rq->responded = false;
            return MHD_YES;
        }
    }

    if (!r->post)
        return routes[r->id].fn(l, c, rq);
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
         * so the 413 goes out at its end (api_on_request). */
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

enum MHD_Result api_on_request(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
    listener *l = cls;
    request *rq = *con_cls;

    (void)version;
    if (rq == NULL) {
        atomic_fetch_add(&l->api->requests, 1);
        rq = calloc(1, sizeof(*rq));
        if (rq == NULL)
            return MHD_NO;
        *con_cls = rq;
        /* libmicrohttpd 0.9.75 closes the connection after a response
         * queued in this first call (it cannot know the body was empty).
         * A GET without a body is answered on the next call instead, so
         * that keep-alive works; everything else is decided now, before
         * any body is read. */
        if (is_get(method) &&
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) == NULL &&
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) == NULL) {
            rq->deferred = true;
            return MHD_YES;
        }
        return begin_request(l, rq, c, url, method);
    }
    if (rq->deferred) {
        rq->deferred = false;
        *upload_data_size = 0;
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
        return api_send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
    return routes[rq->r.id].fn(l, c, rq);
}

void api_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    request *rq = *con_cls;

    (void)cls;
    (void)toe;
    api_conn_renew(c);   /* the next request on this connection: a fresh deadline */
    if (rq != NULL) {
        if (rq->body != NULL)
            memset(rq->body, 0, rq->cap);    /* may hold the token (login) */
        free(rq->body);
        memset(rq, 0, sizeof(*rq));
        free(rq);
        *con_cls = NULL;
    }
}
