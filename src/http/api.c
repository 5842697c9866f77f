/* api.c - drd's HTTP server: libmicrohttpd in its own internal polling
 * thread, one daemon per listener (the unix socket, and optionally TCP),
 * both served by the same handler.
 *
 * The HTTP threads never act and never block on the network or a child:
 * a handler only touches memory (the published status document and
 * metrics text, the page's files, the sessions, the command queue) and the
 * local SQLite file through its own read-only connection. Mutations are
 * queued for the main loop, which is woken by an eventfd, and are answered
 * 202 with the request id.
 *
 * Who may do what:
 *   - the unix socket: everything, no credentials (its mode 0660 guards
 *     it); commands are recorded as made by "socket";
 *   - TCP: /healthz, the page's files and POST /api/login are open, and
 *     /metrics unless [http] metrics = token. Everything else needs either
 *     `Authorization: Bearer TOKEN` (actor "token") or the page's session
 *     cookie (actor "session:<first 8 hex of the session id>"). A POST
 *     made with the cookie must also carry the session's CSRF token in
 *     X-CSRF-Token, and its Origin (when the browser sends one) must be
 *     this server; otherwise 403. A wrong bearer token is never rescued by
 *     a cookie.
 *
 * Sessions: POST /api/login {"token": ...} compares the token in constant
 * time and, when right, creates a session: a 32-byte id from getrandom()
 * in an HttpOnly, SameSite=Strict cookie, and a CSRF token returned in the
 * body (the page keeps it in memory; GET /api/session gives it again while
 * the cookie is valid). Sessions live in a bounded table (the least
 * recently used one makes room) and expire `session_ttl` after the login
 * (absolute expiry: using the page does not extend it).
 *
 * Wrong tokens (a login, or a bearer token on a route that needs one) are
 * throttled, right ones never: an address (an IPv6 /64) may make 5 at
 * once and then one every 12 s, all addresses together 20 at once and
 * then one every 3 s; beyond that a wrong token is answered 429 with
 * Retry-After instead of 401, and not logged one by one. So a right token
 * always gets in at once, behind a proxy too (where every user shares one
 * address). What makes guessing hopeless is the token's entropy (at least
 * 128 bits, config.c), not the throttle: a guesser who ignores the 429s
 * still learns that each guess was wrong. The throttle bounds what wrong
 * tokens cost (log lines, work) and tells clients to back off.
 *
 * The page: a fixed map of URL paths to files of web_root (never a path
 * built from the URL, so no traversal), read once at api_start and served
 * from memory with a Content-Security-Policy that allows no inline script.
 *
 * Slow clients: MHD's connection timeout only measures idle gaps, so a
 * client sending a byte every few seconds would hold its connection (one
 * of API_CONN_LIMIT) forever. Every connection is therefore listed with a
 * deadline: its request must arrive whole within API_DEADLINE_MS of accept
 * (or of the end of the previous request on it), and its answer must leave
 * within API_DEADLINE_MS of being queued. A reaper thread shuts down the
 * socket of a connection past its deadline; MHD then closes it as if the
 * client had gone. One address has at most API_PER_IP_LIMIT connections.
 *
 * SIGPIPE: MHD sends with MSG_NOSIGNAL on Linux, and the daemon's main
 * ignores SIGPIPE anyway (signal(SIGPIPE, SIG_IGN)), so a client that goes
 * away mid-response cannot kill drd. */
#include "drd/http/api.h"
#include "drd/engine/views.h"
#include "drd/engine/executor.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "drd/core/log.h"
#include "drd/store/store.h"
#include "drd/core/util.h"

#define API_MAX_BODY          (64 * 1024)   /* bigger bodies get 413 */
#define API_MAX_DRAIN         (1024 * 1024) /* beyond this a too-large upload is cut */
#define API_CONN_LIMIT        256u
#define API_PER_IP_LIMIT      32u           /* TCP only */
#define API_CONN_TIMEOUT_S    10u           /* idle connections are closed */
#define API_DEADLINE_MS       10000         /* a whole request (or answer) in this long */
#define API_CUT_LOG_MS        60000         /* one line about cut connections a minute */
#define API_CONN_MEMORY       ((size_t)128 * 1024)
#define API_MAX_QUEUED        1000          /* commands waiting for the main loop */
#define API_EVENTS_DEFAULT    100
#define API_EVENTS_MAX        1000
#define API_INCIDENTS_DEFAULT 20
#define API_INCIDENTS_MAX     500
#define API_PROBES_DEFAULT    15            /* minutes */
#define API_PROBES_MAX        (7 * 24 * 60)
#define API_STORE_RETRY_MS    1000
#define API_LOG_BURST         20            /* MHD messages logged per minute */

#define API_WEB_FILE_MAX      (1024 * 1024) /* a page file larger than this is refused */
#define API_SESSIONS_MAX      64
#define API_SESSION_TTL_DEFAULT_MS (12LL * 3600 * 1000)
/* Wrong tokens (login or bearer): an address may make 5 at once, then one
 * every 12 s; all addresses together 20 at once, then one every 3 s. */
#define API_FAIL_BURST_ADDR   5
#define API_FAIL_EVERY_ADDR_MS 12000
#define API_FAIL_BURST_ALL    20
#define API_FAIL_EVERY_ALL_MS 3000
#define API_FAIL_TRACKED      256           /* client addresses remembered */
#define API_FAIL_LOG_MS       60000         /* one line about 429s a minute */
#define API_TOKEN_MAX         1024

#define SESSION_COOKIE        "drd_session"
#define SESSION_ID_BYTES      32
#define SESSION_HEX_LEN       (2 * SESSION_ID_BYTES)
#define CSRF_HEADER           "X-CSRF-Token"

/* The page may load its own script, style and icon and talk to this
 * server, nothing else; no inline script or style, no framing. */
static const char CSP_PAGE[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'";
/* API answers are data, never a document. */
static const char CSP_API[] =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/* The page: the only files ever served, whatever the URL says. */
typedef struct {
    const char *path;            /* URL path */
    const char *file;            /* name in web_root */
    const char *ctype;
} web_entry;

static const web_entry web_files[] = {
    { "/",            "index.html",  "text/html; charset=utf-8" },
    { "/index.html",  "index.html",  "text/html; charset=utf-8" },
    { "/app.js",      "app.js",      "text/javascript; charset=utf-8" },
    { "/style.css",   "style.css",   "text/css; charset=utf-8" },
    { "/favicon.svg", "favicon.svg", "image/svg+xml" },
};
#define WEB_FILES (sizeof(web_files) / sizeof(web_files[0]))

typedef struct {
    char *data;                  /* NULL: not available (404) */
    size_t len;
    char etag[24];
} web_file;

typedef struct {
    char id[SESSION_HEX_LEN + 1];   /* "" = free slot */
    char csrf[SESSION_HEX_LEN + 1];
    int64_t expires_mono;           /* mono ms */
    int64_t expires_wall;           /* wall ms, for the page */
    int64_t last_used;              /* mono ms, for eviction */
} session;

/* Failed-attempt budget of one client (an IPv4 address or an IPv6 /64),
 * as a GCRA: `tat` moves API_FAIL_EVERY_ADDR_MS ahead per counted failure
 * (from now, if it is in the past); a failure is counted only while tat is
 * less than API_FAIL_BURST_ADDR steps ahead of now. */
typedef struct {
    char key[INET6_ADDRSTRLEN + 4];  /* "" = free slot */
    int64_t tat;                     /* mono ms */
} fail_budget;

/* A connection, from MHD's STARTED notification to its CLOSED one (MHD
 * closes the socket only after CLOSED returns, so fd stays ours to
 * shutdown() while the entry is in the list, under conn_lock). */
typedef struct conn {
    struct conn *prev, *next;
    struct api *api;
    int fd;
    int64_t deadline;            /* mono ms */
    bool cut;                    /* shutdown() by the reaper */
    char addr[INET6_ADDRSTRLEN];
} conn;

typedef struct listener {
    struct api *api;
    bool tcp;                    /* TCP needs the bearer token or a session */
    int fd;                      /* ours until MHD_start_daemon succeeds */
    struct MHD_Daemon *d;
} listener;

struct api {
    listener unix_l, tcp_l;
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool socket_created;
    dev_t socket_dev;
    ino_t socket_ino;
    char *token;                 /* NULL: TCP refuses all but the open routes */
    char *db_path;
    int64_t session_ttl_ms;
    bool metrics_need_token;
    bool secure_cookie;
    web_file web[WEB_FILES];     /* read at start, immutable afterwards */

    pthread_mutex_t lock;        /* status, metrics, queue, next_request_id */
    char *status;                /* last published document, or NULL */
    char *metrics;               /* last published metrics text, or NULL */
    api_cmd *head, *tail;
    size_t queued;
    int64_t next_request_id;
    int efd;

    pthread_mutex_t log_lock;    /* rate limit of MHD's messages */
    int64_t log_window;          /* mono ms */
    int log_count;
    int64_t log_dropped;

    atomic_llong requests;       /* every request received (drd_http_requests_total) */
    atomic_llong login_failures;

    atomic_llong login_throttled;
    pthread_mutex_t auth_lock;   /* sessions, fails, fails_all_tat, throttle_* */
    session sessions[API_SESSIONS_MAX];
    fail_budget fails[API_FAIL_TRACKED];
    int64_t fails_all_tat;       /* the same budget, for every client together */
    int64_t throttle_logged_at;  /* mono ms */
    int64_t throttle_unlogged;

    /* Whole-request deadlines: every connection is listed with the time
     * by which its current request must have arrived whole (or its answer
     * left); the reaper thread shuts down the ones that miss it, MHD then
     * closes them. */
    pthread_mutex_t conn_lock;   /* conns, reaper_*, cut_* */
    pthread_cond_t conn_cond;
    bool conn_cond_init;
    conn *conns;
    pthread_t reaper;
    bool reaper_started, reaper_stop;
    int64_t reaper_wake;         /* mono ms: when the reaper wakes next */
    int64_t cut_logged_at;       /* mono ms */
    int64_t cut_unlogged;
    char cut_last[INET6_ADDRSTRLEN];
    atomic_llong slow_cut;       /* drd_http_slow_connections_closed_total */

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
    R_STATIC,
    R_METRICS,
    R_LOGIN,
    R_LOGOUT,
    R_SESSION,
    R_STATUS,
    R_EVENTS,
    R_INCIDENTS,
    R_PROBES,
    R_FAILOVER,
    R_FAILBACK,
    R_APPROVE,
    R_REJECT,
    R_RUNS,
    R_DRILLS,
    R_DRILL,
    R_CHECKS,
    R_UNBLOCK,
    R_RUN,
    R_REQUEST,
    R_REFRESH,
    R_REFRESHES,
} route_id;

typedef struct {
    route_id id;
    bool post;                   /* POST route (else GET/HEAD) */
    size_t web_idx;              /* R_STATIC: index in web_files */
    char id_str[32];             /* the {id} path segment, if any */
    bool id_too_long;
} route;

/* Who is asking (decided from the headers, before the body). */
typedef enum { WHO_NONE = 0, WHO_SOCKET, WHO_TOKEN, WHO_SESSION } who_kind;

/* Per-request state (MHD's con_cls). */
typedef struct {
    route r;
    bool deferred;               /* a GET answered on the second call */
    bool responded;
    bool too_large;
    char *body;
    size_t len, cap;
    size_t drained;
    who_kind who;
    bool bad_bearer;             /* an Authorization header with a wrong token */
    char actor[sizeof(((api_cmd *)0)->actor)];
    char session_id[SESSION_HEX_LEN + 1];   /* WHO_SESSION */
    char csrf[SESSION_HEX_LEN + 1];         /* WHO_SESSION */
    int64_t session_expires;                /* WHO_SESSION, wall ms */
} request;

/* ------------------------------------------------------------------ */
/* whole-request deadlines (conn_lock)                                */

/* The connection's request, or its answer, or the next request on it has
 * API_DEADLINE_MS from now to be complete. Called when a connection
 * starts, when an answer is queued and when a request ends. */
static void conn_renew(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn *k = ci != NULL ? ci->socket_context : NULL;
    api_t *a;

    if (k == NULL)
        return;
    a = k->api;
    pthread_mutex_lock(&a->conn_lock);
    k->deadline = mono_ms() + API_DEADLINE_MS;
    pthread_mutex_unlock(&a->conn_lock);
}

/* ------------------------------------------------------------------ */
/* responses                                                          */

typedef struct {
    const char *ctype;           /* default application/json */
    const char *cache;           /* Cache-Control, default no-store */
    const char *csp;             /* default CSP_API */
    const char *allow;           /* Allow (405) */
    bool challenge;              /* WWW-Authenticate: Bearer (401) */
    const char *cookie;          /* Set-Cookie */
    const char *etag;
    int64_t retry_after;         /* seconds, 0 = none */
} resp_opts;

/* Queue a response. body: len bytes; with MHD_RESPMEM_MUST_FREE it is
 * ours to free (also on failure). */
static enum MHD_Result send_resp(struct MHD_Connection *c, unsigned code, void *body, size_t len,
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
                            o->csp != NULL ? o->csp : CSP_API);
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
    conn_renew(c);   /* the request is in: the answer has its own deadline */
    return ret;
}

/* A malloc'd NUL-terminated JSON text (taken). */
static enum MHD_Result send_body_opts(struct MHD_Connection *c, unsigned code, char *body,
                                      const resp_opts *o)
{
    if (body == NULL)
        return MHD_NO;
    return send_resp(c, code, body, strlen(body), MHD_RESPMEM_MUST_FREE, o);
}

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned code, char *body)
{
    return send_body_opts(c, code, body, NULL);
}

/* Takes ownership of doc. */
static enum MHD_Result send_json_opts(struct MHD_Connection *c, unsigned code, json_t *doc,
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

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code, json_t *doc)
{
    return send_json_opts(c, code, doc, NULL);
}

static enum MHD_Result send_error_opts(struct MHD_Connection *c, unsigned code,
                                       const char *msg, const resp_opts *o)
{
    return send_json_opts(c, code, json_pack("{s:s}", "error", msg), o);
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code, const char *msg)
{
    return send_error_opts(c, code, msg, NULL);
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

/* Exact paths only: anything else ("..", "//", encoded variants, a
 * trailing slash) is simply not a route. */
static void route_match(const char *url, route *r)
{
    static const struct { const char *path; route_id id; bool post; } exact[] = {
        { "/healthz",       R_HEALTHZ,   false },
        { "/metrics",       R_METRICS,   false },
        { "/api/login",     R_LOGIN,     true  },
        { "/api/logout",    R_LOGOUT,    true  },
        { "/api/session",   R_SESSION,   false },
        { "/api/status",    R_STATUS,    false },
        { "/api/events",    R_EVENTS,    false },
        { "/api/incidents", R_INCIDENTS, false },
        { "/api/probes",    R_PROBES,    false },
        { "/api/failover",  R_FAILOVER,  true  },
        { "/api/failback",  R_FAILBACK,  true  },
        { "/api/refresh",   R_REFRESH,   true  },
        { "/api/refreshes", R_REFRESHES, false },
        { "/api/runs",      R_RUNS,      false },
        { "/api/drills",    R_DRILLS,    false },
        { "/api/drill",     R_DRILL,     true  },
        { "/api/checks",    R_CHECKS,    true  },
        { "/api/unblock",   R_UNBLOCK,   true  },
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
    for (size_t i = 0; i < WEB_FILES; i++) {
        if (strcmp(url, web_files[i].path) == 0) {
            r->id = R_STATIC;
            r->web_idx = i;
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
/* sessions and login throttling (auth_lock)                          */

static bool random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[SESSION_ID_BYTES];
    size_t got = 0;

    if (nbytes > sizeof(b))
        return false;
    while (got < nbytes) {
        ssize_t r = getrandom(b + got, nbytes - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            log_error("http: getrandom: %s", strerror(errno));
            return false;
        }
        got += (size_t)r;
    }
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return true;
}

static bool is_session_id(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == SESSION_HEX_LEN;
}

static void actor_of_session(const char *id, char *out, size_t n)
{
    snprintf(out, n, "session:%.8s", id);
}

/* Caller holds auth_lock. */
static void sessions_expire(api_t *a, int64_t now)
{
    for (size_t i = 0; i < API_SESSIONS_MAX; i++) {
        session *s = &a->sessions[i];
        if (s->id[0] != '\0' && now >= s->expires_mono)
            memset(s, 0, sizeof(*s));
    }
}

/* Find the live session whose id is `id`; copy what the request needs. */
static bool session_find(api_t *a, const char *id, request *rq)
{
    int64_t now = mono_ms();
    int found = -1;

    if (!is_session_id(id))
        return false;
    pthread_mutex_lock(&a->auth_lock);
    sessions_expire(a, now);
    /* Compare against every slot (no early exit): constant time. */
    for (size_t i = 0; i < API_SESSIONS_MAX; i++) {
        const session *s = &a->sessions[i];
        if (s->id[0] != '\0' && str_ct_equal(id, s->id))
            found = (int)i;
    }
    if (found >= 0) {
        session *s = &a->sessions[found];
        s->last_used = now;
        str_copy(rq->session_id, s->id, sizeof(rq->session_id));
        str_copy(rq->csrf, s->csrf, sizeof(rq->csrf));
        rq->session_expires = s->expires_wall;
    }
    pthread_mutex_unlock(&a->auth_lock);
    return found >= 0;
}

/* A new session (the least recently used one makes room when full). */
static bool session_create(api_t *a, session *out)
{
    int64_t now = mono_ms();
    session s;
    size_t slot = 0;

    memset(&s, 0, sizeof(s));
    if (!random_hex(s.id, SESSION_ID_BYTES) || !random_hex(s.csrf, SESSION_ID_BYTES))
        return false;
    s.expires_mono = now + a->session_ttl_ms;
    s.expires_wall = wall_ms() + a->session_ttl_ms;
    s.last_used = now;
    pthread_mutex_lock(&a->auth_lock);
    sessions_expire(a, now);
    for (size_t i = 0; i < API_SESSIONS_MAX; i++) {
        if (a->sessions[i].id[0] == '\0') {
            slot = i;
            break;
        }
        if (a->sessions[i].last_used < a->sessions[slot].last_used)
            slot = i;
    }
    if (a->sessions[slot].id[0] != '\0')
        log_info("http: too many sessions: session:%.8s (least recently used) ends",
                 a->sessions[slot].id);
    a->sessions[slot] = s;
    pthread_mutex_unlock(&a->auth_lock);
    *out = s;
    return true;
}

static void session_remove(api_t *a, const char *id)
{
    pthread_mutex_lock(&a->auth_lock);
    for (size_t i = 0; i < API_SESSIONS_MAX; i++) {
        session *s = &a->sessions[i];
        if (s->id[0] != '\0' && strcmp(s->id, id) == 0)
            memset(s, 0, sizeof(*s));
    }
    pthread_mutex_unlock(&a->auth_lock);
}

static int64_t sessions_live(api_t *a)
{
    int64_t n = 0;

    pthread_mutex_lock(&a->auth_lock);
    sessions_expire(a, mono_ms());
    for (size_t i = 0; i < API_SESSIONS_MAX; i++)
        if (a->sessions[i].id[0] != '\0')
            n++;
    pthread_mutex_unlock(&a->auth_lock);
    return n;
}

/* The client's address as text ("local" on the unix socket). */
static void client_addr(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

    str_copy(out, "local", n);
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)n);
}

/* The key failed attempts are counted under: the address for IPv4, its
 * /64 for IPv6 (one host usually holds a whole /64). */
static void client_key(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

    if (sa != NULL && sa->sa_family == AF_INET6) {
        struct in6_addr net = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        char text[INET6_ADDRSTRLEN];

        memset(net.s6_addr + 8, 0, 8);
        if (inet_ntop(AF_INET6, &net, text, sizeof(text)) != NULL) {
            snprintf(out, n, "%s/64", text);
            return;
        }
    }
    client_addr(c, out, n);
}

/* ms until one more failure fits a GCRA budget (0: now). */
static int64_t budget_wait(int64_t tat, int64_t now, int64_t burst, int64_t every)
{
    int64_t at = tat - (burst - 1) * every;
    return at > now ? at - now : 0;
}

static int64_t budget_take(int64_t tat, int64_t now, int64_t every)
{
    return (tat > now ? tat : now) + every;
}

/* A wrong token from key. Counted when both key's budget and everyone's
 * allow it: returns 0, the caller answers 401. Otherwise nothing is
 * counted and it returns the seconds to wait (429 with Retry-After). A
 * right token is never throttled: only failures are. */
static int64_t auth_failure(api_t *a, const char *key)
{
    int64_t now = mono_ms(), wait_addr = 0, wait_all, wait, unlogged = 0;
    size_t slot = 0;
    bool found = false;

    pthread_mutex_lock(&a->auth_lock);
    for (size_t i = 0; i < API_FAIL_TRACKED && !found; i++) {
        if (a->fails[i].key[0] != '\0' && strcmp(a->fails[i].key, key) == 0) {
            slot = i;
            found = true;
        }
    }
    if (found)
        wait_addr = budget_wait(a->fails[slot].tat, now, API_FAIL_BURST_ADDR,
                                API_FAIL_EVERY_ADDR_MS);
    wait_all = budget_wait(a->fails_all_tat, now, API_FAIL_BURST_ALL, API_FAIL_EVERY_ALL_MS);
    wait = wait_addr > wait_all ? wait_addr : wait_all;
    if (wait == 0) {
        if (!found) {
            /* a free slot, else the one closest to a full budget (the
             * global budget still holds when that one comes back) */
            for (size_t i = 0; i < API_FAIL_TRACKED; i++) {
                if (a->fails[i].key[0] == '\0') {
                    slot = i;
                    break;
                }
                if (a->fails[i].tat < a->fails[slot].tat)
                    slot = i;
            }
            str_copy(a->fails[slot].key, key, sizeof(a->fails[slot].key));
            a->fails[slot].tat = 0;
        }
        a->fails[slot].tat = budget_take(a->fails[slot].tat, now, API_FAIL_EVERY_ADDR_MS);
        a->fails_all_tat = budget_take(a->fails_all_tat, now, API_FAIL_EVERY_ALL_MS);
    } else {
        a->throttle_unlogged++;
        if (now - a->throttle_logged_at >= API_FAIL_LOG_MS) {
            unlogged = a->throttle_unlogged;
            a->throttle_unlogged = 0;
            a->throttle_logged_at = now;
        }
    }
    pthread_mutex_unlock(&a->auth_lock);
    if (wait == 0) {
        atomic_fetch_add(&a->login_failures, 1);
        return 0;
    }
    atomic_fetch_add(&a->login_throttled, 1);
    if (unlogged > 0)
        log_warn("http: too many wrong tokens (%s): %lld attempt%s refused with 429, "
                 "the last from %s", wait_addr >= wait_all ? "from this address" : "from all addresses",
                 (long long)unlogged, unlogged == 1 ? "" : "s", key);
    return (wait + 999) / 1000;
}

/* ------------------------------------------------------------------ */
/* auth                                                               */

static bool bearer_ok(const api_t *a, const char *h)
{
    static const char scheme[] = "Bearer ";

    if (a->token == NULL || a->token[0] == '\0')
        return false;
    if (h == NULL || strncasecmp(h, scheme, sizeof(scheme) - 1) != 0)
        return false;
    h += sizeof(scheme) - 1;
    while (*h == ' ')
        h++;
    return str_ct_equal(h, a->token);
}

/* Who is asking: the socket, the bearer token, a session cookie, or
 * nobody. Fills rq->actor (and the session fields). */
static who_kind identify(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    const char *h, *cookie;

    if (!l->tcp) {
        str_copy(rq->actor, "socket", sizeof(rq->actor));
        return WHO_SOCKET;
    }
    h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h != NULL) {
        /* A wrong token is not rescued by a cookie. */
        if (!bearer_ok(a, h)) {
            rq->bad_bearer = true;
            return WHO_NONE;
        }
        str_copy(rq->actor, "token", sizeof(rq->actor));
        return WHO_TOKEN;
    }
    cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, SESSION_COOKIE);
    if (cookie != NULL && session_find(a, cookie, rq)) {
        actor_of_session(rq->session_id, rq->actor, sizeof(rq->actor));
        return WHO_SESSION;
    }
    return WHO_NONE;
}

/* Origin, when the client sends one, must be this server: "http://" or
 * "https://" followed by exactly the Host header. */
static bool origin_ok(struct MHD_Connection *c)
{
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN);
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *rest;

    if (origin == NULL)
        return true;
    if (host == NULL || host[0] == '\0')
        return false;
    if (strncasecmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    else
        return false;            /* "null", another scheme */
    return strcasecmp(rest, host) == 0;
}

/* A POST made with the session cookie: same origin, and the CSRF token. */
static const char *csrf_problem(struct MHD_Connection *c, const request *rq)
{
    const char *site = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-Fetch-Site");
    const char *tok = MHD_lookup_connection_value(c, MHD_HEADER_KIND, CSRF_HEADER);

    if (!origin_ok(c) || (site != NULL && strcmp(site, "cross-site") == 0))
        return "cross-origin request refused";
    if (tok == NULL || tok[0] == '\0')
        return "missing CSRF token (X-CSRF-Token)";
    if (!str_ct_equal(tok, rq->csrf))
        return "wrong CSRF token";
    return NULL;
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
    return send_body(c, MHD_HTTP_OK, copy);
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
        return send_error(c, code, "state database unavailable");
    snprintf(msg, sizeof msg, "cannot read %s", what);
    return send_error(c, code, msg);
}

/* GET /api/WHAT?limit=N (1..1000, default 20): {"WHAT": [...]} from fill. */
static enum MHD_Result get_list(api_t *a, struct MHD_Connection *c, list_fill_fn fill, const char *what)
{
    int64_t limit;
    unsigned code;

    if (!query_int(c, "limit", false, 20, 1000, &limit))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "limit must be an integer from 1 to 1000");
    json_t *arr = store_list(a, fill, &limit, &code);
    if (arr == NULL)
        return list_error(c, code, what);
    return send_json(c, MHD_HTTP_OK, json_pack("{s:o}", what, arr));
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
        ok = store_events_since(st, since, (int)limit, views_add_event, events);
    else
        ok = store_events_recent(st, (int)limit, views_add_event, events);
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

static bool fill_incidents(store_t *st, json_t *arr, const void *arg)
{
    return store_incidents_recent(st, (int)*(const int64_t *)arg, views_add_incident, arr);
}

static enum MHD_Result get_incidents(api_t *a, struct MHD_Connection *c)
{
    int64_t limit = 0;
    unsigned code;

    if (!query_int(c, "limit", false, API_INCIDENTS_DEFAULT, API_INCIDENTS_MAX, &limit))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "limit must be a positive integer");
    json_t *arr = store_list(a, fill_incidents, &limit, &code);
    if (arr == NULL)
        return list_error(c, code, "incidents");
    return send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "incidents", arr));
}

/* GET /api/runs/{id}: the run, its steps with their output, its approvals. */
static enum MHD_Result get_run(api_t *a, struct MHD_Connection *c, const route *r)
{
    int64_t id;
    store_t *st;
    json_t *run;

    if (r->id_too_long || !parse_id(r->id_str, false, &id))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "run id must be a positive integer");
    pthread_mutex_lock(&a->store_lock);
    st = ro_store(a);
    run = st != NULL ? executor_run_to_json(st, id, true) : NULL;
    pthread_mutex_unlock(&a->store_lock);
    if (st == NULL)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database not available");
    if (run == NULL)
        return send_error(c, MHD_HTTP_NOT_FOUND, "no such run");
    return send_json(c, MHD_HTTP_OK, run);
}

/* GET /api/runs?limit=N: newest first, with steps (no output). */
static bool fill_runs(store_t *st, json_t *arr, const void *arg)
{
    return views_runs(st, (int)*(const int64_t *)arg, arr);
}


/* GET /api/requests/{id}: what became of a queued request. 404 while it is
 * still queued (the main loop has not taken it yet). */
static enum MHD_Result get_request(api_t *a, struct MHD_Connection *c, const route *r)
{
    int64_t id;
    store_request rq;
    store_t *st;
    bool found;

    if (r->id_too_long || !parse_id(r->id_str, false, &id))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "request id must be a positive integer");
    pthread_mutex_lock(&a->store_lock);
    st = ro_store(a);
    found = st != NULL && store_request_get(st, id, &rq);
    pthread_mutex_unlock(&a->store_lock);
    if (st == NULL)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "state database not available");
    if (!found)
        return send_error(c, MHD_HTTP_NOT_FOUND, "no such request (yet)");
    return send_json(c, MHD_HTTP_OK,
                     json_pack("{s:I, s:s, s:s, s:s, s:o, s:o, s:I}", "id", (json_int_t)rq.id,
                               "kind", rq.kind, "state", rq.state, "actor", rq.actor,
                               "run_id", rq.run_id ? json_integer(rq.run_id) : json_null(),
                               "error", rq.error[0] ? json_text(rq.error) : json_null(),
                               "at", (json_int_t)rq.at));
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

static enum MHD_Result get_probes(api_t *a, struct MHD_Connection *c)
{
    const char *target = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "target");
    int64_t minutes = 0;
    unsigned code;

    if (target == NULL || (strcmp(target, "primary") != 0 && strcmp(target, "backup") != 0))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "target must be primary or backup");
    if (!query_int(c, "minutes", false, API_PROBES_DEFAULT, API_PROBES_MAX, &minutes))
        return send_error(c, MHD_HTTP_BAD_REQUEST, "minutes must be a positive integer");
    probes_arg pa = { target, wall_ms() / 60000 - minutes };
    json_t *arr = store_list(a, fill_probes, &pa, &code);
    if (arr == NULL)
        return list_error(c, code, "probe statistics");
    return send_json(c, MHD_HTTP_OK,
                     json_pack("{s:s,s:o}", "target", target, "minutes", arr));
}

/* GET /metrics: the main loop's last snapshot, then the HTTP side's own
 * counters, current at this very request. */
static enum MHD_Result get_metrics(api_t *a, struct MHD_Connection *c)
{
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
                 (long long)atomic_load(&a->login_throttled), sessions_live(a),
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
    return send_resp(c, MHD_HTTP_OK, out, head_len + tail_len, MHD_RESPMEM_MUST_FREE, &o);
}

/* One of the page's files, from memory. */
static enum MHD_Result get_static(api_t *a, struct MHD_Connection *c, const route *r)
{
    const web_entry *e = &web_files[r->web_idx];
    const web_file *f = &a->web[r->web_idx];
    const char *inm;
    resp_opts o = { .ctype = e->ctype, .cache = "no-cache", .csp = CSP_PAGE, .etag = f->etag };

    if (f->data == NULL)
        return send_error(c, MHD_HTTP_NOT_FOUND, "not found");
    inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm != NULL && strcmp(inm, f->etag) == 0)
        return send_resp(c, MHD_HTTP_NOT_MODIFIED, NULL, 0, MHD_RESPMEM_PERSISTENT, &o);
    return send_resp(c, MHD_HTTP_OK, f->data, f->len, MHD_RESPMEM_PERSISTENT, &o);
}

/* GET /api/session: who this is, and the session's CSRF token. */
static enum MHD_Result get_session(struct MHD_Connection *c, const request *rq)
{
    if (rq->who == WHO_SESSION)
        return send_json(c, MHD_HTTP_OK,
                         json_pack("{s:s,s:s,s:I}", "actor", rq->actor, "csrf", rq->csrf,
                                   "expires_at", (json_int_t)rq->session_expires));
    return send_json(c, MHD_HTTP_OK,
                     json_pack("{s:s,s:n,s:n}", "actor", rq->actor, "csrf", "expires_at"));
}

/* ------------------------------------------------------------------ */
/* the command queue                                                  */

/* Returns the request id, 0 when the queue is full, -1 on error. */
static int64_t queue_cmd(api_t *a, api_cmd_kind kind, int64_t approval_id,
                         const char *reason, const char *choice, const char *actor, char *body)
{
    api_cmd *cmd = calloc(1, sizeof(*cmd));
    uint64_t one = 1;
    int64_t id;

    if (cmd == NULL) {
        free(body);
        return -1;
    }
    cmd->body = body;
    cmd->kind = kind;
    cmd->approval_id = approval_id;
    str_copy(cmd->reason, reason, sizeof(cmd->reason));
    str_copy(cmd->choice, choice, sizeof(cmd->choice));
    str_copy(cmd->actor, actor, sizeof(cmd->actor));

    pthread_mutex_lock(&a->lock);
    if (a->queued >= API_MAX_QUEUED) {
        pthread_mutex_unlock(&a->lock);
        api_cmd_free(cmd);
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
        if (v == NULL || (strcmp(v, "retry") != 0 && strcmp(v, "skip") != 0 && strcmp(v, "abort") != 0 &&
                          strcmp(v, "backup-wins") != 0 && strcmp(v, "primary-wins") != 0)) {
            snprintf(msg, msglen, "choice must be \"retry\", \"skip\", \"abort\", \"backup-wins\" or \"primary-wins\"");
            goto done;
        }
        str_copy(choice, v, cn);
    }
    ok = true;
done:
    json_decref(doc);
    return ok;
}

/* POST /api/drill: record a drill's report (drctl drill sends it). The
 * body: {"started_at": ms, "ended_at": ms, "result": "succeeded"|"failed",
 * ...figures}; stored as given, after masking, by the main loop. */
static enum MHD_Result post_drill(listener *l, struct MHD_Connection *c, request *rq)
{
    json_error_t jerr;
    json_t *doc = json_loadb(rq->body ? rq->body : "", rq->len, JSON_REJECT_DUPLICATES, &jerr);
    char msg[256];
    const char *res;

    if (doc == NULL) {
        snprintf(msg, sizeof msg, "malformed JSON body: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        return send_error(c, MHD_HTTP_BAD_REQUEST, msg);
    }
    res = json_string_value(json_object_get(doc, "result"));
    if (!json_is_object(doc) || res == NULL ||
        (strcmp(res, "succeeded") != 0 && strcmp(res, "failed") != 0) ||
        !json_is_integer(json_object_get(doc, "started_at")) ||
        !json_is_integer(json_object_get(doc, "ended_at"))) {
        json_decref(doc);
        return send_error(c, MHD_HTTP_BAD_REQUEST,
                          "a drill report needs result (succeeded|failed), started_at and ended_at");
    }
    json_int_t t0 = json_integer_value(json_object_get(doc, "started_at"));
    json_int_t t1 = json_integer_value(json_object_get(doc, "ended_at"));
    if (t0 <= 0 || t1 < t0 || t1 > wall_ms() + 60000) {
        json_decref(doc);
        return send_error(c, MHD_HTTP_BAD_REQUEST,
                          "a drill report's started_at <= ended_at, in wall ms, not in the future");
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL)
        return MHD_NO;
    int64_t id = queue_cmd(l->api, API_CMD_DRILL, 0, "", "", rq->actor, text);
    if (id == 0)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many queued requests");
    if (id < 0)
        return MHD_NO;
    return send_json(c, MHD_HTTP_ACCEPTED,
                     json_pack("{s:I,s:s}", "request_id", (json_int_t)id, "status", "queued"));
}

static enum MHD_Result post_command(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    char reason[sizeof(((api_cmd *)0)->reason)];
    char choice[sizeof(((api_cmd *)0)->choice)];
    char msg[256];
    int64_t approval_id = 0, id;
    api_cmd_kind kind;

    if (rq->r.id == R_DRILL)
        return post_drill(l, c, rq);
    if (!parse_body(rq, reason, sizeof(reason), choice, sizeof(choice), msg, sizeof(msg)))
        return send_error(c, MHD_HTTP_BAD_REQUEST, msg);

    switch (rq->r.id) {
    case R_FAILOVER: kind = API_CMD_FAILOVER; break;
    case R_FAILBACK: kind = API_CMD_FAILBACK; break;
    case R_REFRESH:  kind = API_CMD_REFRESH; break;
    case R_CHECKS:   kind = API_CMD_CHECK; break;
    case R_UNBLOCK:  kind = API_CMD_UNBLOCK; break;
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
    id = queue_cmd(a, kind, approval_id, reason, choice, rq->actor, NULL);
    if (id == 0)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many queued requests");
    if (id < 0)
        return MHD_NO;
    return send_json(c, MHD_HTTP_ACCEPTED,
                     json_pack("{s:I,s:s}", "request_id", (json_int_t)id, "status", "queued"));
}

static void session_cookie(const api_t *a, const char *id, int64_t max_age_s, char *out, size_t n)
{
    snprintf(out, n, SESSION_COOKIE "=%s; Path=/; Max-Age=%" PRId64 "; HttpOnly; SameSite=Strict%s",
             id, max_age_s, a->secure_cookie ? "; Secure" : "");
}

/* POST /api/login {"token": "..."}: a session cookie and the CSRF token. */
static enum MHD_Result post_login(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    char addr[INET6_ADDRSTRLEN + 4], cookie[256], actor[32];
    const char *given = NULL;
    json_t *doc = NULL;
    json_error_t jerr;
    session s;
    int64_t wait;
    enum MHD_Result ret;

    client_key(c, addr, sizeof(addr));
    if (rq->len > 0)
        doc = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        json_decref(doc);
        return send_error(c, MHD_HTTP_BAD_REQUEST, "the body must be a JSON object {\"token\": ...}");
    }
    given = json_string_value(json_object_get(doc, "token"));
    if (given == NULL || json_string_length(json_object_get(doc, "token")) > API_TOKEN_MAX) {
        json_decref(doc);
        return send_error(c, MHD_HTTP_BAD_REQUEST, "token must be a string");
    }
    if (a->token == NULL || a->token[0] == '\0' || !str_ct_equal(given, a->token)) {
        json_decref(doc);
        if ((wait = auth_failure(a, addr)) > 0) {
            resp_opts o = { .retry_after = wait };
            return send_error_opts(c, MHD_HTTP_TOO_MANY_REQUESTS,
                                   "wrong token, and too many of them: try again later", &o);
        }
        log_warn("http: failed login from %s", addr);
        return send_error(c, MHD_HTTP_UNAUTHORIZED, "wrong token");
    }
    json_decref(doc);
    if (!session_create(a, &s))
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot create a session");
    actor_of_session(s.id, actor, sizeof(actor));
    log_info("http: login from %s: %s", addr, actor);
    session_cookie(a, s.id, (a->session_ttl_ms + 999) / 1000, cookie, sizeof(cookie));
    {
        resp_opts o = { .cookie = cookie };
        ret = send_json_opts(c, MHD_HTTP_OK,
                             json_pack("{s:s,s:s,s:I}", "actor", actor, "csrf", s.csrf,
                                       "expires_at", (json_int_t)s.expires_wall), &o);
    }
    memset(&s, 0, sizeof(s));
    return ret;
}

/* POST /api/logout: ends the session (if the request came with one) and
 * clears the cookie. */
static enum MHD_Result post_logout(listener *l, struct MHD_Connection *c, request *rq)
{
    char cookie[256];
    resp_opts o = { .cookie = cookie };

    if (rq->who == WHO_SESSION) {
        session_remove(l->api, rq->session_id);
        log_info("http: logout: %s", rq->actor);
    }
    session_cookie(l->api, "", 0, cookie, sizeof(cookie));
    return send_json_opts(c, MHD_HTTP_OK, json_pack("{s:b}", "ok", 1), &o);
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

/* Headers are in, the body (if any) is not (see on_request for when this
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
    rq->who = identify(l, c, rq);

    if (l->tcp && rq->who == WHO_NONE && !route_open(a, r->id)) {
        resp_opts o = { .challenge = true };

        if (rq->bad_bearer) {
            char addr[INET6_ADDRSTRLEN + 4];

            client_key(c, addr, sizeof(addr));
            if ((o.retry_after = auth_failure(a, addr)) > 0)
                return send_error_opts(c, MHD_HTTP_TOO_MANY_REQUESTS,
                                       "wrong token, and too many of them: try again later", &o);
            log_warn("http: wrong bearer token from %s", addr);
        }
        return send_error_opts(c, MHD_HTTP_UNAUTHORIZED, "unauthorized", &o);
    }
    if (r->id == R_NONE)
        return send_error(c, MHD_HTTP_NOT_FOUND, "not found");
    if (r->post ? strcmp(method, MHD_HTTP_METHOD_POST) != 0 : !is_get(method)) {
        resp_opts o = { .allow = r->post ? "POST" : "GET, HEAD" };
        return send_error_opts(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", &o);
    }
    if (r->id == R_LOGIN) {
        /* no throttling here: a right token always gets in (post_login) */
        if (!origin_ok(c))
            return send_error(c, MHD_HTTP_FORBIDDEN, "cross-origin request refused");
    } else if (r->post && rq->who == WHO_SESSION) {
        const char *why = csrf_problem(c, rq);
        if (why != NULL) {
            log_warn("http: a POST by %s was refused: %s", rq->actor, why);
            return send_error(c, MHD_HTTP_FORBIDDEN, why);
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
    case R_STATIC:
        return get_static(a, c, r);
    case R_METRICS:
        return get_metrics(a, c);
    case R_SESSION:
        return get_session(c, rq);
    case R_STATUS:
        return get_status(a, c);
    case R_EVENTS:
        return get_events(a, c);
    case R_INCIDENTS:
        return get_incidents(a, c);
    case R_PROBES:
        return get_probes(a, c);
    case R_RUN:
        return get_run(a, c, r);
    case R_RUNS:
        return get_list(a, c, fill_runs, "runs");
    case R_REQUEST:
        return get_request(a, c, r);
    case R_REFRESHES:
        return get_list(a, c, fill_refreshes, "refreshes");
    case R_DRILLS:
        return get_list(a, c, fill_drills, "drills");
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
        return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
    switch (rq->r.id) {
    case R_LOGIN:
        return post_login(l, c, rq);
    case R_LOGOUT:
        return post_logout(l, c, rq);
    default:
        return post_command(l, c, rq);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    request *rq = *con_cls;

    (void)cls;
    (void)toe;
    conn_renew(c);   /* the next request on this connection: a fresh deadline */
    if (rq != NULL) {
        if (rq->body != NULL)
            memset(rq->body, 0, rq->cap);    /* may hold the token (login) */
        free(rq->body);
        memset(rq, 0, sizeof(*rq));
        free(rq);
        *con_cls = NULL;
    }
}

/* MHD's STARTED and CLOSED notifications: list the connection with its
 * first deadline, and take it off the list. A connection that cannot be
 * listed is not served (shutdown: MHD closes it). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    listener *l = cls;
    api_t *a = l->api;
    conn *k;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

        if (ci == NULL)
            return;
        k = calloc(1, sizeof(*k));
        if (k == NULL) {
            shutdown(ci->connect_fd, SHUT_RDWR);
            return;
        }
        k->api = a;
        k->fd = ci->connect_fd;
        client_addr(c, k->addr, sizeof(k->addr));
        pthread_mutex_lock(&a->conn_lock);
        k->deadline = mono_ms() + API_DEADLINE_MS;
        k->next = a->conns;
        if (a->conns != NULL)
            a->conns->prev = k;
        a->conns = k;
        if (k->deadline < a->reaper_wake)
            pthread_cond_signal(&a->conn_cond);
        pthread_mutex_unlock(&a->conn_lock);
        *socket_context = k;
        return;
    }
    k = *socket_context;
    if (k == NULL)
        return;
    pthread_mutex_lock(&a->conn_lock);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        a->conns = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    pthread_mutex_unlock(&a->conn_lock);
    free(k);
    *socket_context = NULL;
}

/* The reaper: shuts down every connection past its deadline (a client
 * trickling its headers or body, or reading its answer a byte at a time),
 * so that it cannot hold one of the connection slots longer than
 * API_DEADLINE_MS a request. MHD sees the shutdown as the end of the
 * connection and closes it; the others are not affected. */
static void *reaper_main(void *arg)
{
    api_t *a = arg;

    pthread_mutex_lock(&a->conn_lock);
    while (!a->reaper_stop) {
        int64_t now = mono_ms(), next = now + API_CUT_LOG_MS, n = 0;
        struct timespec ts;

        for (conn *k = a->conns; k != NULL; k = k->next) {
            if (k->cut)
                continue;
            if (k->deadline <= now) {
                shutdown(k->fd, SHUT_RDWR);
                k->cut = true;
                a->cut_unlogged++;
                str_copy(a->cut_last, k->addr, sizeof(a->cut_last));
                n++;
            } else if (k->deadline < next) {
                next = k->deadline;
            }
        }
        if (n > 0)
            atomic_fetch_add(&a->slow_cut, n);
        if (a->cut_unlogged > 0 && now - a->cut_logged_at >= API_CUT_LOG_MS) {
            char last[INET6_ADDRSTRLEN];
            int64_t count = a->cut_unlogged;

            str_copy(last, a->cut_last, sizeof(last));
            a->cut_unlogged = 0;
            a->cut_logged_at = now;
            pthread_mutex_unlock(&a->conn_lock);
            log_warn("http: closed %lld slow connection%s (no whole request or answer within "
                     "%d s; the last from %s)", (long long)count, count == 1 ? "" : "s",
                     API_DEADLINE_MS / 1000, last);
            pthread_mutex_lock(&a->conn_lock);
            continue;    /* the list may have changed */
        }
        if (a->cut_unlogged > 0 && a->cut_logged_at + API_CUT_LOG_MS < next)
            next = a->cut_logged_at + API_CUT_LOG_MS;
        a->reaper_wake = next;
        ts.tv_sec = (time_t)(next / 1000);
        ts.tv_nsec = (long)(next % 1000) * 1000000L;
        pthread_cond_timedwait(&a->conn_cond, &a->conn_lock, &ts);
    }
    pthread_mutex_unlock(&a->conn_lock);
    return NULL;
}

static bool reaper_start(api_t *a, char *err, size_t errlen)
{
    pthread_condattr_t ca;
    int rc;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->conn_cond, &ca);
    a->conn_cond_init = true;
    pthread_condattr_destroy(&ca);
    a->reaper_wake = INT64_MAX;
    a->cut_logged_at = mono_ms() - API_CUT_LOG_MS;
    rc = pthread_create(&a->reaper, NULL, reaper_main, a);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the HTTP reaper thread: %s", strerror(rc));
        return false;
    }
    a->reaper_started = true;
    return true;
}

static void reaper_stop(api_t *a)
{
    if (!a->reaper_started)
        return;
    pthread_mutex_lock(&a->conn_lock);
    a->reaper_stop = true;
    pthread_cond_signal(&a->conn_cond);
    pthread_mutex_unlock(&a->conn_lock);
    pthread_join(a->reaper, NULL);
    a->reaper_started = false;
}

/* libmicrohttpd's own messages (malformed requests, timeouts, ...). A
 * client can cause one per connection, so at most API_LOG_BURST lines a
 * minute reach the log; the rest are counted and summed up later. */
static void mhd_logger(void *cls, const char *fm, va_list ap)
{
    api_t *a = cls;
    char buf[512];
    size_t n;
    int64_t now = mono_ms(), dropped = 0;
    bool emit;

    pthread_mutex_lock(&a->log_lock);
    if (now - a->log_window >= 60000) {
        dropped = a->log_dropped;
        a->log_window = now;
        a->log_count = 0;
        a->log_dropped = 0;
    }
    emit = a->log_count < API_LOG_BURST;
    if (emit)
        a->log_count++;
    else
        a->log_dropped++;
    pthread_mutex_unlock(&a->log_lock);
    if (dropped > 0)
        log_warn("http: %lld more messages from the HTTP server were not logged",
                 (long long)dropped);
    if (!emit)
        return;
    vsnprintf(buf, sizeof(buf), fm, ap);
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    /* MHD quotes its whole canned HTML answer: keep only the code */
    {
        char *html = strstr(buf, " ('<html>");
        if (html != NULL)
            str_copy(html, ")", sizeof(buf) - (size_t)(html - buf));
    }
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

static int hex_val(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* MHD's %HH decoding of paths and query arguments, except that %00 stays
 * as it is: a NUL would cut "/app.js%00anything" down to a route. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;

    (void)cls;
    (void)c;
    for (const char *r = s; *r != '\0';) {
        int hi, lo;
        if (r[0] == '%' && (hi = hex_val(r[1])) >= 0 && (lo = hex_val(r[2])) >= 0 &&
            (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static bool start_daemon(listener *l, char *err, size_t errlen)
{
    l->d = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, l,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, (void *)l->api,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)l->fd,
        MHD_OPTION_CONNECTION_LIMIT, API_CONN_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, l->tcp ? API_PER_IP_LIMIT : 0u,
        MHD_OPTION_CONNECTION_TIMEOUT, API_CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, API_CONN_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, (void *)NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, (void *)l,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, (void *)NULL,
        MHD_OPTION_END);
    if (l->d == NULL) {
        snprintf(err, errlen, "cannot start the HTTP server on the %s listener",
                 l->tcp ? "TCP" : "unix socket");
        return false;
    }
    l->fd = -1;   /* MHD owns and closes it now */
    return true;
}

/* Read the page's files from web_root. A missing file is not an error
 * (the API works without the page): it is logged and answered 404. */
static void web_load(api_t *a, const char *root)
{
    size_t missing = 0;

    if (root == NULL || root[0] == '\0')
        return;
    for (size_t i = 0; i < WEB_FILES; i++) {
        char path[PATH_MAX];
        web_file *f = &a->web[i];
        uint32_t h = 2166136261u;        /* FNV-1a, for the ETag */

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", root, web_files[i].file) >= sizeof(path))
            continue;
        f->data = read_file(path, API_WEB_FILE_MAX, &f->len);
        if (f->data == NULL) {
            /* the icon is optional */
            if (strcmp(web_files[i].file, "favicon.svg") != 0) {
                log_warn("http: cannot read %s: %s (not served)", path, strerror(errno));
                missing++;
            }
            continue;
        }
        for (size_t k = 0; k < f->len; k++) {
            h ^= (unsigned char)f->data[k];
            h *= 16777619u;
        }
        snprintf(f->etag, sizeof(f->etag), "\"%08x-%zx\"", (unsigned)h, f->len);
    }
    if (missing == 0)
        log_debug("http: the page is served from %s", root);
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
    pthread_mutex_init(&a->auth_lock, NULL);
    pthread_mutex_init(&a->log_lock, NULL);
    pthread_mutex_init(&a->conn_lock, NULL);
    atomic_init(&a->requests, 0);
    atomic_init(&a->slow_cut, 0);
    atomic_init(&a->login_failures, 0);
    atomic_init(&a->login_throttled, 0);
    a->unix_l = (listener){ .api = a, .tcp = false, .fd = -1, .d = NULL };
    a->tcp_l = (listener){ .api = a, .tcp = true, .fd = -1, .d = NULL };
    a->next_request_id = wall_ms();
    a->session_ttl_ms = o->session_ttl_ms > 0 ? o->session_ttl_ms : API_SESSION_TTL_DEFAULT_MS;
    a->metrics_need_token = o->metrics_need_token;
    a->secure_cookie = o->secure_cookie;
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
    web_load(a, o->web_root);
    if (!reaper_start(a, err, errlen))
        goto fail;

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
            log_warn("http: no token configured: %s answers only /healthz, the page and%s",
                     o->listen, a->metrics_need_token ? " nothing else" : " /metrics");
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
    /* every connection is closed (CLOSED notified) once the daemons stop */
    reaper_stop(a);
    /* Remove the socket file only if it is still the one we created. */
    if (a->socket_created) {
        struct stat st;

        if (lstat(a->socket_path, &st) == 0 && st.st_dev == a->socket_dev &&
            st.st_ino == a->socket_ino)
            unlink(a->socket_path);
    }
    while ((c = a->head) != NULL) {
        a->head = c->next;
        api_cmd_free(c);
    }
    store_close(a->store);
    for (size_t i = 0; i < WEB_FILES; i++)
        free(a->web[i].data);
    free(a->status);
    free(a->metrics);
    if (a->token != NULL)
        memset(a->token, 0, strlen(a->token));
    free(a->token);
    free(a->db_path);
    if (a->efd >= 0)
        close(a->efd);
    memset(a->sessions, 0, sizeof(a->sessions));
    pthread_mutex_destroy(&a->auth_lock);
    pthread_mutex_destroy(&a->log_lock);
    pthread_mutex_destroy(&a->conn_lock);
    if (a->conn_cond_init)
        pthread_cond_destroy(&a->conn_cond);
    pthread_mutex_destroy(&a->store_lock);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static void publish(api_t *a, char **slot, const char *text, const char *what)
{
    char *copy, *old;

    if (a == NULL || text == NULL)
        return;
    copy = strdup(text);
    if (copy == NULL) {
        log_error("http: out of memory publishing the %s", what);
        return;
    }
    pthread_mutex_lock(&a->lock);
    old = *slot;
    *slot = copy;
    pthread_mutex_unlock(&a->lock);
    free(old);
}

void api_publish_status(api_t *a, const char *json)
{
    if (a != NULL)
        publish(a, &a->status, json, "status");
}

void api_publish_metrics(api_t *a, const char *text)
{
    if (a != NULL)
        publish(a, &a->metrics, text, "metrics");
}

int api_cmd_fd(api_t *a)
{
    return a != NULL ? a->efd : -1;
}

void api_cmd_free(api_cmd *c)
{
    if (c == NULL)
        return;
    free(c->body);
    free(c);
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
