/* api_auth.c - who is asking: the bearer token, the page's sessions (login,
 * logout, CSRF) and the throttling of wrong tokens (see api.c's header). */
#include "api_int.h"

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

int64_t api_sessions_live(api_t *a)
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
void api_client_addr(struct MHD_Connection *c, char *out, size_t n)
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
void api_client_key(struct MHD_Connection *c, char *out, size_t n)
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
    api_client_addr(c, out, n);
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
int64_t api_auth_failure(api_t *a, const char *key)
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
who_kind api_identify(listener *l, struct MHD_Connection *c, request *rq)
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
bool api_origin_ok(struct MHD_Connection *c)
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
const char *api_csrf_problem(struct MHD_Connection *c, const request *rq)
{
    const char *site = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-Fetch-Site");
    const char *tok = MHD_lookup_connection_value(c, MHD_HEADER_KIND, CSRF_HEADER);

    if (!api_origin_ok(c) || (site != NULL && strcmp(site, "cross-site") == 0))
        return "cross-origin request refused";
    if (tok == NULL || tok[0] == '\0')
        return "missing CSRF token (X-CSRF-Token)";
    if (!str_ct_equal(tok, rq->csrf))
        return "wrong CSRF token";
    return NULL;
}

static void session_cookie(const api_t *a, const char *id, int64_t max_age_s, char *out, size_t n)
{
    snprintf(out, n, SESSION_COOKIE "=%s; Path=/; Max-Age=%" PRId64 "; HttpOnly; SameSite=Strict%s",
             id, max_age_s, a->secure_cookie ? "; Secure" : "");
}

/* POST /api/login {"token": "..."}: a session cookie and the CSRF token. */
enum MHD_Result api_post_login(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    char addr[INET6_ADDRSTRLEN + 4], cookie[256], actor[32];
    const char *given = NULL;
    json_t *doc = NULL;
    json_error_t jerr;
    session s;
    int64_t wait;
    enum MHD_Result ret;

    api_client_key(c, addr, sizeof(addr));
    if (rq->len > 0)
        doc = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        json_decref(doc);
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "the body must be a JSON object {\"token\": ...}");
    }
    given = json_string_value(json_object_get(doc, "token"));
    if (given == NULL || json_string_length(json_object_get(doc, "token")) > API_TOKEN_MAX) {
        json_decref(doc);
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "token must be a string");
    }
    if (a->token == NULL || a->token[0] == '\0' || !str_ct_equal(given, a->token)) {
        json_decref(doc);
        if ((wait = api_auth_failure(a, addr)) > 0) {
            resp_opts o = { .retry_after = wait };
            return api_send_error_opts(c, MHD_HTTP_TOO_MANY_REQUESTS,
                                       "wrong token, and too many of them: try again later", &o);
        }
        log_warn("http: failed login from %s", addr);
        return api_send_error(c, MHD_HTTP_UNAUTHORIZED, "wrong token");
    }
    json_decref(doc);
    if (!session_create(a, &s))
        return api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot create a session");
    actor_of_session(s.id, actor, sizeof(actor));
    log_info("http: login from %s: %s", addr, actor);
    session_cookie(a, s.id, (a->session_ttl_ms + 999) / 1000, cookie, sizeof(cookie));
    {
        resp_opts o = { .cookie = cookie };
        ret = api_send_json_opts(c, MHD_HTTP_OK,
                                 json_pack("{s:s,s:s,s:I}", "actor", actor, "csrf", s.csrf,
                                       "expires_at", (json_int_t)s.expires_wall), &o);
    }
    memset(&s, 0, sizeof(s));
    return ret;
}

/* POST /api/logout: ends the session (if the request came with one) and
 * clears the cookie. */
enum MHD_Result api_post_logout(listener *l, struct MHD_Connection *c, request *rq)
{
    char cookie[256];
    resp_opts o = { .cookie = cookie };

    if (rq->who == WHO_SESSION) {
        session_remove(l->api, rq->session_id);
        log_info("http: logout: %s", rq->actor);
    }
    session_cookie(l->api, "", 0, cookie, sizeof(cookie));
    return api_send_json_opts(c, MHD_HTTP_OK, json_pack("{s:b}", "ok", 1), &o);
}
