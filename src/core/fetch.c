/* fetch.c - non-blocking HTTP requests on the event loop (libcurl multi).
 *
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and
 * when to call it back (CURLMOPT_TIMERFUNCTION); we map those onto loop.h
 * fd watchers and one loop timer, and drive curl with
 * curl_multi_socket_action() from the loop's callbacks only.  Nothing
 * calls into curl from inside a curl callback: a 0 ms curl timeout
 * becomes a 0 ms loop timer, which the loop fires on its next iteration.
 *
 * Completion happens in two phases so that user callbacks may re-enter:
 *   1. drain curl_multi_info_read(): for every finished transfer, build its
 *      result, remove and free the easy handle, and move the request from
 *      the `active` list to the `done` queue;
 *   2. pop the `done` queue one request at a time and call its callback.
 * During phase 2 curl holds no message of ours, so a callback may call
 * fetch_start() (new requests only run from the loop) or fetch_cancel()
 * on any id, including one still waiting in the `done` queue (it is
 * dropped without a callback).  fetch_free() must not be called from
 * inside a fetch callback.
 *
 * curl_global_init() runs once, through pthread_once, on the first
 * fetch_new().  It is not thread-safe with respect to other libraries'
 * initialisation (OpenSSL), which is fine here: the daemon creates its
 * fetch_t at start-up, before the HTTP thread exists.
 */
#include "drd/core/fetch.h"

#include <curl/curl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

#define FETCH_BODY_MAX       (64 * 1024)
#define FETCH_CONNECT_MAX_MS 5000
#define FETCH_USER_AGENT     "drd/0.1"

typedef struct request {
    struct request *prev, *next;
    fetch_t *f;
    uint64_t id;
    CURL *easy;
    struct curl_slist *headers;
    fetch_cb cb;
    void *arg;
    int64_t started_ms;

    char *body;                 /* NUL-terminated, at most FETCH_BODY_MAX bytes */
    size_t body_len, body_cap;
    bool body_truncated;

    long status;                /* filled when the transfer finishes */
    int64_t duration_ms;
    char error[CURL_ERROR_SIZE + 64];
    char errbuf[CURL_ERROR_SIZE]; /* CURLOPT_ERRORBUFFER */
} request;

typedef struct {
    request *head, *tail;
} req_list;

/* One per socket curl asked us to watch; also set as curl's socketp. */
typedef struct sock {
    struct sock *prev, *next;
    curl_socket_t fd;
} sock;

struct fetch {
    loop_t *loop;
    CURLM *multi;
    uint64_t timer_id;          /* the loop timer standing for curl's timeout; 0 = none */
    uint64_t next_id;
    req_list active;            /* added to the multi handle */
    req_list done;              /* finished, callback not yet called */
    sock *socks;
};

/* ---- global init ------------------------------------------------------ */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- request lists ---------------------------------------------------- */

static void list_push(req_list *l, request *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
}

static void list_unlink(req_list *l, request *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
}

static request *list_find(const req_list *l, uint64_t id)
{
    for (request *r = l->head; r != NULL; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

static size_t list_len(const req_list *l)
{
    size_t n = 0;
    for (const request *r = l->head; r != NULL; r = r->next)
        n++;
    return n;
}

/* Remove the easy handle from the multi (if still attached) and free it. */
static void request_release_easy(fetch_t *f, request *r)
{
    if (r->easy != NULL) {
        curl_multi_remove_handle(f->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    curl_slist_free_all(r->headers);
    r->headers = NULL;
}

static void request_free(fetch_t *f, request *r)
{
    if (r == NULL)
        return;
    request_release_easy(f, r);
    free(r->body);
    free(r);
}

/* ---- curl callbacks --------------------------------------------------- */

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    request *r = userp;
    size_t n = size * nmemb;
    size_t room = FETCH_BODY_MAX - r->body_len;
    size_t keep = n < room ? n : room;

    if (keep < n)
        r->body_truncated = true;
    if (keep > 0) {
        if (r->body_len + keep + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 1024;
            while (cap < r->body_len + keep + 1)
                cap *= 2;
            if (cap > FETCH_BODY_MAX + 1)
                cap = FETCH_BODY_MAX + 1;
            char *b = realloc(r->body, cap);
            if (b == NULL) {
                /* Keep what we have; the status is still worth reporting. */
                r->body_truncated = true;
                return n;
            }
            r->body = b;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, data, keep);
        r->body_len += keep;
        r->body[r->body_len] = '\0';
    }
    /* Claim everything: the excess is dropped, not an error. */
    return n;
}

static void on_loop_timer(loop_t *loop, void *arg);
static void on_loop_fd(loop_t *loop, int fd, short revents, void *arg);

/* CURLMOPT_TIMERFUNCTION: replace our single loop timer. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    fetch_t *f = userp;
    (void)multi;

    if (f->timer_id != 0) {
        loop_cancel_timer(f->loop, f->timer_id);
        f->timer_id = 0;
    }
    if (timeout_ms < 0)
        return 0;
    f->timer_id = loop_add_timer(f->loop, timeout_ms, on_loop_timer, f);
    return f->timer_id != 0 ? 0 : -1;
}

static short poll_events(int what)
{
    switch (what) {
    case CURL_POLL_IN:    return POLLIN;
    case CURL_POLL_OUT:   return POLLOUT;
    case CURL_POLL_INOUT: return POLLIN | POLLOUT;
    default:              return 0;
    }
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    fetch_t *f = userp;
    sock *sk = socketp;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            loop_del_fd(f->loop, s);
            if (sk->prev != NULL)
                sk->prev->next = sk->next;
            else
                f->socks = sk->next;
            if (sk->next != NULL)
                sk->next->prev = sk->prev;
            free(sk);
            curl_multi_assign(f->multi, s, NULL);
        }
        return 0;
    }

    short events = poll_events(what);
    if (sk != NULL) {
        loop_mod_fd(f->loop, s, events);
        return 0;
    }
    sk = calloc(1, sizeof(*sk));
    if (sk == NULL) {
        log_error("fetch: out of memory watching socket %d", (int)s);
        return -1;
    }
    if (!loop_add_fd(f->loop, s, events, on_loop_fd, f)) {
        /* errors have already been logged */
        free(sk);
        return -1;
    }
    sk->fd = s;
    sk->next = f->socks;
    if (f->socks != NULL)
        f->socks->prev = sk;
    f->socks = sk;
    curl_multi_assign(f->multi, s, sk);
    return 0;
}

/* ---- completion ------------------------------------------------------- */

/* Phase 1 for one transfer: record its outcome and detach it from curl. */
static void request_finish(fetch_t *f, request *r, CURLcode rc)
{
    r->duration_ms = mono_ms() - r->started_ms;
    if (rc == CURLE_OK) {
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        r->status = code;
        r->error[0] = '\0';
    } else {
        /* curl's detailed message when it left one, else the generic text. */
        const char *msg = r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(rc);
        r->status = 0;
        mask_secrets(msg, r->error, sizeof(r->error));
    }
    if (r->body_truncated)
        log_debug("fetch: request %llu: body truncated to %d bytes",
                  (unsigned long long)r->id, FETCH_BODY_MAX);
    request_release_easy(f, r);
    list_unlink(&f->active, r);
    list_push(&f->done, r);
}

static void process_completions(fetch_t *f)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        request *r = (request *)(void *)priv;
        if (r == NULL) {
            log_error("fetch: finished transfer without its request");
            curl_multi_remove_handle(f->multi, easy);
            curl_easy_cleanup(easy);
            continue;
        }
        request_finish(f, r, rc);
    }

    /* Phase 2: callbacks may start or cancel requests, so re-read the head
     * of the queue each time instead of walking it. */
    request *r;
    while ((r = f->done.head) != NULL) {
        list_unlink(&f->done, r);
        fetch_result res = {
            .status = r->status,
            .error = r->error,
            .body = r->body != NULL ? r->body : "",
            .body_len = r->body_len,
            .duration_ms = r->duration_ms,
        };
        fetch_cb cb = r->cb;
        void *arg = r->arg;
        cb(arg, &res);
        request_free(f, r);
    }
}

static void socket_action(fetch_t *f, curl_socket_t s, int flags)
{
    int running = 0;
    CURLMcode mc = curl_multi_socket_action(f->multi, s, flags, &running);
    if (mc != CURLM_OK)
        log_error("fetch: curl_multi_socket_action: %s", curl_multi_strerror(mc));
    process_completions(f);
}

static void on_loop_timer(loop_t *loop, void *arg)
{
    fetch_t *f = arg;
    (void)loop;
    f->timer_id = 0;            /* fired: one-shot */
    socket_action(f, CURL_SOCKET_TIMEOUT, 0);
}

static void on_loop_fd(loop_t *loop, int fd, short revents, void *arg)
{
    fetch_t *f = arg;
    int flags = 0;
    (void)loop;

    if (revents & (POLLIN | POLLHUP))
        flags |= CURL_CSELECT_IN;
    if (revents & POLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (revents & (POLLERR | POLLNVAL))
        flags |= CURL_CSELECT_ERR;
    socket_action(f, fd, flags);
}

/* ---- public API ------------------------------------------------------- */

fetch_t *fetch_new(loop_t *loop)
{
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        log_error("fetch: curl_global_init: %s", curl_easy_strerror(global_rc));
        return NULL;
    }
    fetch_t *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        log_error("fetch: out of memory");
        return NULL;
    }
    f->loop = loop;
    f->multi = curl_multi_init();
    if (f->multi == NULL) {
        log_error("fetch: curl_multi_init failed");
        free(f);
        return NULL;
    }
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
    return f;
}

void fetch_free(fetch_t *f)
{
    if (f == NULL)
        return;
    request *r;
    while ((r = f->active.head) != NULL) {
        list_unlink(&f->active, r);
        request_free(f, r);
    }
    while ((r = f->done.head) != NULL) {
        list_unlink(&f->done, r);
        request_free(f, r);
    }
    /* May close cached connections through on_curl_socket(REMOVE). */
    curl_multi_cleanup(f->multi);
    if (f->timer_id != 0)
        loop_cancel_timer(f->loop, f->timer_id);
    sock *sk = f->socks;
    while (sk != NULL) {
        sock *next = sk->next;
        loop_del_fd(f->loop, sk->fd);
        free(sk);
        sk = next;
    }
    free(f);
}

static bool url_allowed(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

#define SETOPT(opt, val)                                                   \
    do {                                                                   \
        CURLcode rc_ = curl_easy_setopt(r->easy, opt, val);                \
        if (rc_ != CURLE_OK) {                                             \
            snprintf(err, errlen, "curl option %s: %s", #opt,              \
                     curl_easy_strerror(rc_));                             \
            goto fail;                                                     \
        }                                                                  \
    } while (0)

/* The request's arguments: a GET or POST (post) of an http(s) URL with a
 * deadline and a one-line content type. false with err. */
static bool request_valid(const char *method, const char *url, const char *content_type,
                          int64_t timeout_ms, bool *post, char *err, size_t errlen)
{
    if (strcmp(method, "GET") == 0) {
        *post = false;
    } else if (strcmp(method, "POST") == 0) {
        *post = true;
    } else {
        snprintf(err, errlen, "unsupported method \"%s\" (GET or POST)", method);
        return false;
    }
    if (!url_allowed(url)) {
        snprintf(err, errlen, "only http and https URLs are allowed");
        return false;
    }
    if (timeout_ms <= 0) {
        snprintf(err, errlen, "a positive timeout is required");
        return false;
    }
    if (content_type != NULL && strpbrk(content_type, "\r\n") != NULL) {
        snprintf(err, errlen, "invalid content type");
        return false;
    }
    return true;
}

/* A POST's body and headers (Content-Type, and no Expect). */
static bool set_post(request *r, const char *body, const char *content_type, char *err, size_t errlen)
{
    const char *data = body != NULL ? body : "";
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(data));
    SETOPT(CURLOPT_COPYPOSTFIELDS, data);
    if (content_type != NULL) {
        char hdr[256];
        if ((size_t)snprintf(hdr, sizeof(hdr), "Content-Type: %s", content_type) >= sizeof(hdr)) {
            snprintf(err, errlen, "content type too long");
            goto fail;
        }
        struct curl_slist *h = curl_slist_append(r->headers, hdr);
        if (h == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        r->headers = h;
    }
    /* No "Expect: 100-continue" round trip: bodies are small. */
    struct curl_slist *h = curl_slist_append(r->headers, "Expect:");
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    r->headers = h;
    SETOPT(CURLOPT_HTTPHEADER, r->headers);
    return true;
fail:
    return false;
}

/* The easy handle's options: http(s) only, no redirects, the deadlines. */
static bool set_options(request *r, const char *url, int64_t timeout_ms, char *err, size_t errlen)
{
    long connect_ms = timeout_ms < FETCH_CONNECT_MAX_MS ? (long)timeout_ms : FETCH_CONNECT_MAX_MS;
    long total_ms = timeout_ms > LONG_MAX ? LONG_MAX : (long)timeout_ms;
    SETOPT(CURLOPT_URL, url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_TIMEOUT_MS, total_ms);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_USERAGENT, FETCH_USER_AGENT);
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, r);
    SETOPT(CURLOPT_ERRORBUFFER, r->errbuf);
    SETOPT(CURLOPT_PRIVATE, r);
    return true;
fail:
    return false;
}

uint64_t fetch_start(fetch_t *f, const char *method, const char *url,
                     const char *body, const char *content_type, int64_t timeout_ms,
                     fetch_cb cb, void *arg, char *err, size_t errlen)
{
    request *r = NULL;
    bool post;

    if (f == NULL || method == NULL || url == NULL || cb == NULL) {
        snprintf(err, errlen, "invalid arguments");
        return 0;
    }
    if (!request_valid(method, url, content_type, timeout_ms, &post, err, errlen))
        return 0;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    r->f = f;
    r->cb = cb;
    r->arg = arg;
    r->easy = curl_easy_init();
    if (r->easy == NULL) {
        snprintf(err, errlen, "curl_easy_init failed");
        goto fail;
    }
    if (!set_options(r, url, timeout_ms, err, errlen) ||
        (post && !set_post(r, body, content_type, err, errlen)))
        goto fail;

    r->id = ++f->next_id;
    r->started_ms = mono_ms();
    /* Only arms curl's timer (a 0 ms loop timer): the transfer and its
     * callback run from the loop, never from here. */
    CURLMcode mc = curl_multi_add_handle(f->multi, r->easy);
    if (mc != CURLM_OK) {
        snprintf(err, errlen, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        goto fail;
    }
    list_push(&f->active, r);
    char masked[512];
    log_debug("fetch: request %llu: %s %s (timeout %lld ms)", (unsigned long long)r->id,
              method, mask_secrets(url, masked, sizeof(masked)), (long long)timeout_ms);
    return r->id;

fail:
    if (r->easy != NULL) {
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    request_free(f, r);
    return 0;
}

void fetch_cancel(fetch_t *f, uint64_t id)
{
    if (f == NULL || id == 0)
        return;
    request *r = list_find(&f->active, id);
    if (r != NULL) {
        list_unlink(&f->active, r);
    } else {
        r = list_find(&f->done, id);
        if (r == NULL)
            return;
        list_unlink(&f->done, r);
    }
    log_debug("fetch: request %llu cancelled", (unsigned long long)id);
    request_free(f, r);
}

size_t fetch_pending(const fetch_t *f)
{
    if (f == NULL)
        return 0;
    return list_len(&f->active) + list_len(&f->done);
}
