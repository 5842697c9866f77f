/* api_int.h - what the files of the HTTP server share (not a contract
 * with other modules; see include/drd/http/api.h for that).
 *
 *   api.c        start/stop, listening sockets, the page's files, publish,
 *                the command queue's consumer side (api_cmd_pop)
 *   api_conn.c   connection deadlines, the reaper thread, MHD's log
 *   api_route.c  responses, the route table, the MHD request callbacks
 *   api_auth.c   bearer token, sessions (login/logout/CSRF), throttling
 *   api_views.c  GET handlers, the read-only store connection
 *   api_cmd.c    POST commands: checked, queued for the main loop
 *
 * Threads: everything but api.c's public functions runs on MHD's threads
 * (or the reaper); see api.c's header for the locks. */
#ifndef DRD_HTTP_API_INT_H
#define DRD_HTTP_API_INT_H

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

/* The page: the only files ever served, whatever the URL says. */
typedef struct {
    const char *path;            /* URL path */
    const char *file;            /* name in web_root */
    const char *ctype;
} web_entry;

#define WEB_FILES 5
extern const web_entry api_web_files[WEB_FILES];
extern const char API_CSP_PAGE[];
extern const char API_CSP_API[];

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
    size_t web_idx;              /* R_STATIC: index in api_web_files */
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
/* responses                                                          */

typedef struct {
    const char *ctype;           /* default application/json */
    const char *cache;           /* Cache-Control, default no-store */
    const char *csp;             /* default API_CSP_API */
    const char *allow;           /* Allow (405) */
    bool challenge;              /* WWW-Authenticate: Bearer (401) */
    const char *cookie;          /* Set-Cookie */
    const char *etag;
    int64_t retry_after;         /* seconds, 0 = none */
} resp_opts;

/* A route's handler: answers the request (GET: from the headers; POST:
 * once the body is in). */
typedef enum MHD_Result (*route_fn)(listener *l, struct MHD_Connection *c, request *rq);

/* api_conn.c */
void api_conn_renew(struct MHD_Connection *c);
void api_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                   enum MHD_ConnectionNotificationCode toe);
bool api_reaper_start(api_t *a, char *err, size_t errlen);
void api_reaper_stop(api_t *a);
void api_mhd_logger(void *cls, const char *fm, va_list ap);

/* api_route.c */
enum MHD_Result api_send_resp(struct MHD_Connection *c, unsigned code, void *body, size_t len,
                          enum MHD_ResponseMemoryMode mode, const resp_opts *o);
enum MHD_Result api_send_body(struct MHD_Connection *c, unsigned code, char *body);
enum MHD_Result api_send_json_opts(struct MHD_Connection *c, unsigned code, json_t *doc,
                               const resp_opts *o);
enum MHD_Result api_send_json(struct MHD_Connection *c, unsigned code, json_t *doc);
enum MHD_Result api_send_error_opts(struct MHD_Connection *c, unsigned code,
                                const char *msg, const resp_opts *o);
enum MHD_Result api_send_error(struct MHD_Connection *c, unsigned code, const char *msg);
bool api_parse_id(const char *s, bool allow_zero, int64_t *out);
enum MHD_Result api_on_request(void *cls, struct MHD_Connection *c, const char *url,
                           const char *method, const char *version,
                           const char *upload_data, size_t *upload_data_size,
                           void **con_cls);
void api_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                  enum MHD_RequestTerminationCode toe);

/* api_auth.c */
int64_t api_sessions_live(api_t *a);
void api_client_addr(struct MHD_Connection *c, char *out, size_t n);
void api_client_key(struct MHD_Connection *c, char *out, size_t n);
int64_t api_auth_failure(api_t *a, const char *key);
who_kind api_identify(listener *l, struct MHD_Connection *c, request *rq);
bool api_origin_ok(struct MHD_Connection *c);
const char *api_csrf_problem(struct MHD_Connection *c, const request *rq);
enum MHD_Result api_post_login(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_post_logout(listener *l, struct MHD_Connection *c, request *rq);

/* api_views.c: GET handlers (route_fn) */
enum MHD_Result api_get_healthz(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_static(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_metrics(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_session(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_status(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_events(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_incidents(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_probes(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_run(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_runs(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_request(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_refreshes(listener *l, struct MHD_Connection *c, request *rq);
enum MHD_Result api_get_drills(listener *l, struct MHD_Connection *c, request *rq);

/* api_cmd.c */
enum MHD_Result api_post_command(listener *l, struct MHD_Connection *c, request *rq);

#endif
