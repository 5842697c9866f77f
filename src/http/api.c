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
 * away mid-response cannot kill drd.
 *
 * The server's files: see api_int.h. */
#include "api_int.h"

/* The page may load its own script, style and icon and talk to this
 * server, nothing else; no inline script or style, no framing. */
const char API_CSP_PAGE[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'";
/* API answers are data, never a document. */
const char API_CSP_API[] =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/* The page: the only files ever served, whatever the URL says. */
const web_entry api_web_files[WEB_FILES] = {
    { "/",            "index.html",  "text/html; charset=utf-8" },
    { "/index.html",  "index.html",  "text/html; charset=utf-8" },
    { "/app.js",      "app.js",      "text/javascript; charset=utf-8" },
    { "/style.css",   "style.css",   "text/css; charset=utf-8" },
    { "/favicon.svg", "favicon.svg", "image/svg+xml" },
};

/* ------------------------------------------------------------------ */
/* listening sockets                                                  */

/* A socket left at path by a drd that ended: removed when nobody answers
 * on it; false with err when it is not a socket or someone answers. */
static bool remove_stale(const struct sockaddr_un *sun, const struct stat *st, const char *path,
                         char *err, size_t errlen)
{
    if (!S_ISSOCK(st->st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return false;
    }
    /* Only a socket nobody answers on is stale. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return false;
    }
    if (connect(probe, (const struct sockaddr *)sun, sizeof(*sun)) == 0) {
        close(probe);
        snprintf(err, errlen, "another process is listening on %s (is drd already running?)", path);
        return false;
    }
    if (errno != ECONNREFUSED && errno != ENOENT) {
        snprintf(err, errlen, "cannot check %s: %s", path, strerror(errno));
        close(probe);
        return false;
    }
    close(probe);
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
        return false;
    }
    log_info("removed stale socket %s", path);
    return true;
}

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

    if (lstat(path, &st) == 0 && !remove_stale(&sun, &st, path, err, errlen))
        return -1;

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
    if (!api_parse_id(port_s, false, &port) || port > 65535)
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
        0, NULL, NULL, api_on_request, l,
        MHD_OPTION_EXTERNAL_LOGGER, api_mhd_logger, (void *)l->api,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)l->fd,
        MHD_OPTION_CONNECTION_LIMIT, API_CONN_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, l->tcp ? API_PER_IP_LIMIT : 0u,
        MHD_OPTION_CONNECTION_TIMEOUT, API_CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, API_CONN_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, api_on_completed, (void *)NULL,
        MHD_OPTION_NOTIFY_CONNECTION, api_on_connection, (void *)l,
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

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", root, api_web_files[i].file) >= sizeof(path))
            continue;
        f->data = read_file(path, API_WEB_FILE_MAX, &f->len);
        if (f->data == NULL) {
            /* the icon is optional */
            if (strcmp(api_web_files[i].file, "favicon.svg") != 0) {
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
    a->session_ttl_ms = o->session_ttl_ms > 0 ? o->session_ttl_ms : API_SESSION_TTL_DEFAULT_MS;
    a->metrics_need_token = o->metrics_need_token;
    a->secure_cookie = o->secure_cookie;
    /* Seed jansson's hash function here, in one thread, rather than racing
     * on it from the two HTTP threads' first json_object(). */
    json_object_seed(0);
    /* Request ids from the wall clock: unique across restarts. */
    a->cmds = command_queue_new(API_MAX_QUEUED, wall_ms());
    if (a->cmds == NULL) {
        snprintf(err, errlen, "cannot create the command queue");
        goto fail;
    }
    if (o->token != NULL && o->token[0] != '\0' && (a->token = strdup(o->token)) == NULL)
        goto oom;
    if (o->db_path != NULL && o->db_path[0] != '\0' && (a->db_path = strdup(o->db_path)) == NULL)
        goto oom;
    web_load(a, o->web_root);
    if (!api_reaper_start(a, err, errlen))
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
    api_reaper_stop(a);
    /* Remove the socket file only if it is still the one we created. */
    if (a->socket_created) {
        struct stat st;

        if (lstat(a->socket_path, &st) == 0 && st.st_dev == a->socket_dev &&
            st.st_ino == a->socket_ino)
            unlink(a->socket_path);
    }
    command_queue_free(a->cmds);
    store_close(a->store);
    for (size_t i = 0; i < WEB_FILES; i++)
        free(a->web[i].data);
    free(a->status);
    free(a->metrics);
    if (a->token != NULL)
        memset(a->token, 0, strlen(a->token));
    free(a->token);
    free(a->db_path);
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

command_queue *api_commands(api_t *a)
{
    return a != NULL ? a->cmds : NULL;
}
