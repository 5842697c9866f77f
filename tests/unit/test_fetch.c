/* test_fetch.c - HTTP requests on the event loop, against a tiny HTTP
 * server running in a thread of this process (127.0.0.1, ephemeral port). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drd/core/fetch.h"
#include "drd/core/loop.h"
#include "drd/core/util.h"

#define BIG_LEN (200 * 1024)
#define MAX_CONNS 256

/* ---- the test server --------------------------------------------------- */

typedef struct {
    int lfd;
    int port;
    atomic_bool stop;
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_t conns[MAX_CONNS];
    size_t nconns;
    int requests;                 /* requests seen */
    char post_body[1024];         /* last POST */
    char post_type[128];
    char user_agent[128];
} server;

typedef struct {
    server *srv;
    int fd;
} conn_arg;

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;              /* client went away: fine */
        p += w;
        n -= (size_t)w;
    }
}

static void respond(int fd, int status, const char *reason, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, reason, len);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* Value of header `name` (case-insensitive) in the header block, or "". */
static void header_value(const char *hdrs, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *line = strstr(hdrs, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r\n");
            if (vl >= n)
                vl = n - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return;
        }
    }
}

static void *conn_main(void *p)
{
    conn_arg *ca = p;
    server *srv = ca->srv;
    int fd = ca->fd;
    free(ca);

    char buf[8192];
    size_t len = 0;
    char *end = NULL;
    /* Read the header block (5 s at most). */
    while (end == NULL && len < sizeof(buf) - 1) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, 5000) <= 0)
            goto out;
        ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (r <= 0)
            goto out;
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end == NULL)
        goto out;
    end[2] = '\0';                /* header block keeps its last CRLF */
    char *body = end + 4;
    size_t have = len - (size_t)(body - buf);

    char method[16] = "", path[256] = "";
    if (sscanf(buf, "%15s %255s", method, path) != 2)
        goto out;
    char clen[32], ctype[128], ua[128];
    header_value(buf, "Content-Length", clen, sizeof(clen));
    header_value(buf, "Content-Type", ctype, sizeof(ctype));
    header_value(buf, "User-Agent", ua, sizeof(ua));
    size_t want = clen[0] ? (size_t)strtoul(clen, NULL, 10) : 0;
    while (have < want && (size_t)(body - buf) + have < sizeof(buf) - 1) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, 5000) <= 0)
            goto out;
        ssize_t r = recv(fd, body + have, sizeof(buf) - 1 - (size_t)(body - buf) - have, 0);
        if (r <= 0)
            goto out;
        have += (size_t)r;
    }
    body[have] = '\0';

    pthread_mutex_lock(&srv->mu);
    srv->requests++;
    str_copy(srv->user_agent, ua, sizeof(srv->user_agent));
    if (strcmp(method, "POST") == 0) {
        str_copy(srv->post_body, body, sizeof(srv->post_body));
        str_copy(srv->post_type, ctype, sizeof(srv->post_type));
    }
    pthread_mutex_unlock(&srv->mu);

    if (strcmp(path, "/ok") == 0) {
        respond(fd, 200, "OK", "hello", 5);
    } else if (strcmp(path, "/fail") == 0) {
        respond(fd, 503, "Service Unavailable", "down", 4);
    } else if (strcmp(path, "/post") == 0) {
        respond(fd, 200, "OK", "posted", 6);
    } else if (strcmp(path, "/slow") == 0) {
        /* Answer after 2 s, or give up as soon as the client hangs up. */
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, 2000) == 0)
            respond(fd, 200, "OK", "slow", 4);
    } else if (strcmp(path, "/big") == 0) {
        char *big = malloc(BIG_LEN);
        if (big != NULL) {
            for (size_t i = 0; i < BIG_LEN; i++)
                big[i] = (char)('a' + i % 26);
            respond(fd, 200, "OK", big, BIG_LEN);
            free(big);
        }
    } else {
        respond(fd, 404, "Not Found", "", 0);
    }
out:
    close(fd);
    return NULL;
}

static void *accept_main(void *p)
{
    server *srv = p;
    while (!atomic_load(&srv->stop)) {
        int fd = accept(srv->lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;                /* shutdown() wakes us with EINVAL */
        }
        conn_arg *ca = malloc(sizeof(*ca));
        bool spawned = false;
        if (ca != NULL) {
            ca->srv = srv;
            ca->fd = fd;
            pthread_mutex_lock(&srv->mu);
            if (srv->nconns < MAX_CONNS &&
                pthread_create(&srv->conns[srv->nconns], NULL, conn_main, ca) == 0) {
                srv->nconns++;
                spawned = true;
            }
            pthread_mutex_unlock(&srv->mu);
        }
        if (!spawned) {
            free(ca);
            close(fd);
        }
    }
    return NULL;
}

static server *server_start(void)
{
    server *srv = calloc(1, sizeof(*srv));
    assert_non_null(srv);
    pthread_mutex_init(&srv->mu, NULL);
    srv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(srv->lfd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(srv->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(srv->lfd, 128), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(srv->lfd, (struct sockaddr *)&sa, &sl), 0);
    srv->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&srv->acceptor, NULL, accept_main, srv), 0);
    return srv;
}

static void server_stop(server *srv)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->stop, true);
    shutdown(srv->lfd, SHUT_RDWR);
    pthread_join(srv->acceptor, NULL);
    close(srv->lfd);
    /* The acceptor is gone: nconns no longer changes. */
    for (size_t i = 0; i < srv->nconns; i++)
        pthread_join(srv->conns[i], NULL);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}

/* A port nothing listens on: bind an ephemeral one and close it. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- fixture ------------------------------------------------------------ */

typedef struct fixture fixture;

typedef struct {
    fixture *fx;
    int calls;
    long status;
    char error[512];
    char *body;
    size_t body_len;
    int64_t duration_ms;
    /* re-entrancy hooks, run from the callback */
    uint64_t cancel_id;
    uint64_t *cancel_id_ptr;
    bool start_another;
} rec;

struct fixture {
    server *srv;
    loop_t *loop;
    fetch_t *f;
    int done;                 /* callbacks run so far */
    int want;                 /* stop the loop when done reaches want */
    bool watchdog_fired;
    rec extra;                /* target of a request started from a callback */
    uint64_t extra_id;
};

static void url_for(const fixture *fx, const char *path, char *out, size_t n)
{
    snprintf(out, n, "http://127.0.0.1:%d%s", fx->srv->port, path);
}

static void on_done(void *arg, const fetch_result *r)
{
    rec *rc = arg;
    fixture *fx = rc->fx;
    rc->calls++;
    rc->status = r->status;
    str_copy(rc->error, r->error, sizeof(rc->error));
    free(rc->body);
    rc->body = malloc(r->body_len + 1);
    assert_non_null(rc->body);
    memcpy(rc->body, r->body, r->body_len + 1);
    rc->body_len = r->body_len;
    rc->duration_ms = r->duration_ms;
    fx->done++;

    if (rc->cancel_id_ptr != NULL)
        fetch_cancel(fx->f, *rc->cancel_id_ptr);
    if (rc->start_another) {
        char url[128], err[256];
        url_for(fx, "/ok", url, sizeof(url));
        fx->extra.fx = fx;
        fx->extra_id = fetch_start(fx->f, "GET", url, NULL, NULL, 3000, on_done,
                                   &fx->extra, err, sizeof(err));
        assert_true(fx->extra_id > 0);
        assert_int_equal(fx->extra.calls, 0);   /* never from inside fetch_start */
    }
    if (fx->done >= fx->want)
        loop_stop(fx->loop);
}

static void watchdog(loop_t *loop, void *arg)
{
    fixture *fx = arg;
    fx->watchdog_fired = true;
    loop_stop(loop);
}

/* Run the loop until `want` callbacks have run in total, or fail after
 * deadline_ms. */
static void run_until(fixture *fx, int want, int64_t deadline_ms)
{
    fx->want = want;
    if (fx->done >= want)
        return;
    uint64_t wd = loop_add_timer(fx->loop, deadline_ms, watchdog, fx);
    assert_true(wd > 0);
    loop_run(fx->loop);
    loop_cancel_timer(fx->loop, wd);
    assert_false(fx->watchdog_fired);
    assert_int_equal(fx->done, want);
}

static void stop_loop(loop_t *loop, void *arg)
{
    (void)arg;
    loop_stop(loop);
}

/* Run the loop for ms milliseconds. */
static void run_for(fixture *fx, int64_t ms)
{
    fx->want = INT32_MAX;
    assert_true(loop_add_timer(fx->loop, ms, stop_loop, NULL) > 0);
    loop_run(fx->loop);
}

static uint64_t start_get(fixture *fx, const char *path, int64_t timeout_ms, rec *rc)
{
    char url[128], err[256] = "";
    url_for(fx, path, url, sizeof(url));
    rc->fx = fx;
    uint64_t id = fetch_start(fx->f, "GET", url, NULL, NULL, timeout_ms, on_done, rc,
                              err, sizeof(err));
    if (id == 0)
        fail_msg("fetch_start %s: %s", url, err);
    assert_int_equal(rc->calls, 0);
    return id;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->srv = server_start();
    fx->loop = loop_new();
    assert_non_null(fx->loop);
    fx->f = fetch_new(fx->loop);
    assert_non_null(fx->f);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    fetch_free(fx->f);
    loop_free(fx->loop);
    server_stop(fx->srv);
    free(fx->extra.body);
    free(fx);
    return 0;
}

static void rec_free(rec *rc)
{
    free(rc->body);
    rc->body = NULL;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_get_ok(void **state)
{
    fixture *fx = *state;
    rec a = { 0 };
    uint64_t id = start_get(fx, "/ok", 3000, &a);
    assert_true(id > 0);
    assert_int_equal(fetch_pending(fx->f), 1);
    run_until(fx, 1, 5000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.error, "");
    assert_string_equal(a.body, "hello");
    assert_int_equal(a.body_len, 5);
    assert_true(a.duration_ms >= 0 && a.duration_ms < 3000);
    assert_int_equal(fetch_pending(fx->f), 0);
    pthread_mutex_lock(&fx->srv->mu);
    assert_string_equal(fx->srv->user_agent, "drd/0.1");
    pthread_mutex_unlock(&fx->srv->mu);
    rec_free(&a);
}

static void test_http_error_status(void **state)
{
    fixture *fx = *state;
    rec a = { 0 };
    start_get(fx, "/fail", 3000, &a);
    run_until(fx, 1, 5000);
    assert_int_equal(a.status, 503);
    assert_string_equal(a.error, "");     /* a response is not a transport error */
    assert_string_equal(a.body, "down");
    rec_free(&a);
}

static void test_timeout(void **state)
{
    fixture *fx = *state;
    rec a = { 0 };
    int64_t t0 = mono_ms();
    start_get(fx, "/slow", 300, &a);
    run_until(fx, 1, 5000);
    int64_t elapsed = mono_ms() - t0;
    assert_int_equal(a.status, 0);
    if (strcasestr(a.error, "timed out") == NULL && strcasestr(a.error, "timeout") == NULL)
        fail_msg("error does not mention a timeout: %s", a.error);
    assert_true(elapsed >= 250);
    print_message("# error: %s (%lld ms)\n", a.error, (long long)elapsed);
    if (elapsed > 1000)
        fail_msg("timeout of 300 ms took %lld ms", (long long)elapsed);
    rec_free(&a);
}

static void test_connection_refused(void **state)
{
    fixture *fx = *state;
    rec a = { .fx = fx };
    char url[128], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", closed_port());
    assert_true(fetch_start(fx->f, "GET", url, NULL, NULL, 3000, on_done, &a,
                            err, sizeof(err)) > 0);
    assert_int_equal(a.calls, 0);           /* even a quick failure is deferred */
    run_until(fx, 1, 5000);
    assert_int_equal(a.status, 0);
    assert_true(a.error[0] != '\0');
    assert_int_equal(a.body_len, 0);
    assert_string_equal(a.body, "");
    rec_free(&a);
}

static void test_secret_not_in_error(void **state)
{
    fixture *fx = *state;
    rec a = { .fx = fx };
    char url[128], err[256];
    snprintf(url, sizeof(url), "http://user:secret@127.0.0.1:%d/", closed_port());
    assert_true(fetch_start(fx->f, "GET", url, NULL, NULL, 3000, on_done, &a,
                            err, sizeof(err)) > 0);
    run_until(fx, 1, 5000);
    assert_int_equal(a.status, 0);
    assert_true(a.error[0] != '\0');
    assert_null(strstr(a.error, "secret"));
    print_message("# error: %s\n", a.error);
    rec_free(&a);
}

static void test_post(void **state)
{
    fixture *fx = *state;
    rec a = { .fx = fx };
    char url[128], err[256];
    url_for(fx, "/post", url, sizeof(url));
    const char *json = "{\"text\":\"failover started\"}";
    assert_true(fetch_start(fx->f, "POST", url, json, "application/json", 3000, on_done, &a,
                            err, sizeof(err)) > 0);
    run_until(fx, 1, 5000);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "posted");
    pthread_mutex_lock(&fx->srv->mu);
    assert_string_equal(fx->srv->post_body, json);
    assert_string_equal(fx->srv->post_type, "application/json");
    pthread_mutex_unlock(&fx->srv->mu);
    rec_free(&a);
}

static void test_big_body_truncated(void **state)
{
    fixture *fx = *state;
    rec a = { 0 };
    start_get(fx, "/big", 5000, &a);
    run_until(fx, 1, 8000);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.error, "");
    assert_int_equal(a.body_len, 64 * 1024);
    assert_int_equal(strlen(a.body), 64 * 1024);
    for (size_t i = 0; i < a.body_len; i += 4093)
        assert_int_equal(a.body[i], 'a' + (int)(i % 26));
    assert_int_equal(a.body[a.body_len - 1], 'a' + (int)((a.body_len - 1) % 26));
    rec_free(&a);
}

static void test_rejected_urls(void **state)
{
    fixture *fx = *state;
    rec a = { .fx = fx };
    static const char *const bad[] = {
        "ftp://x", "file:///etc/passwd", "gopher://127.0.0.1/", "127.0.0.1/ok", "", "httpx://a",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char err[256] = "";
        assert_int_equal(fetch_start(fx->f, "GET", bad[i], NULL, NULL, 1000, on_done, &a,
                                     err, sizeof(err)), 0);
        assert_string_equal(err, "only http and https URLs are allowed");
    }
    char err[256] = "", url[128];
    url_for(fx, "/ok", url, sizeof(url));
    assert_int_equal(fetch_start(fx->f, "PUT", url, NULL, NULL, 1000, on_done, &a,
                                 err, sizeof(err)), 0);
    assert_non_null(strstr(err, "method"));
    assert_int_equal(fetch_start(fx->f, "GET", url, NULL, NULL, 0, on_done, &a,
                                 err, sizeof(err)), 0);
    assert_int_equal(fetch_start(fx->f, "POST", url, "x", "text/plain\r\nX-Evil: 1", 1000,
                                 on_done, &a, err, sizeof(err)), 0);
    assert_int_equal(fetch_pending(fx->f), 0);
    run_for(fx, 50);
    assert_int_equal(a.calls, 0);
}

static void test_concurrent(void **state)
{
    fixture *fx = *state;
    enum { N = 20 };
    rec r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++)
        start_get(fx, i % 2 ? "/ok" : "/fail", 5000, &r[i]);
    assert_int_equal(fetch_pending(fx->f), N);
    run_until(fx, N, 10000);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, i % 2 ? 200 : 503);
        rec_free(&r[i]);
    }
    assert_int_equal(fetch_pending(fx->f), 0);
    pthread_mutex_lock(&fx->srv->mu);
    assert_int_equal(fx->srv->requests, N);
    pthread_mutex_unlock(&fx->srv->mu);
}

static void test_cancel(void **state)
{
    fixture *fx = *state;
    rec a = { 0 }, b = { 0 }, c = { 0 };
    uint64_t ida = start_get(fx, "/ok", 3000, &a);
    uint64_t idc = start_get(fx, "/slow", 3000, &c);
    start_get(fx, "/ok", 3000, &b);
    fetch_cancel(fx->f, ida);
    fetch_cancel(fx->f, ida);            /* twice: ignored */
    fetch_cancel(fx->f, 999999);         /* unknown: ignored */
    fetch_cancel(fx->f, 0);
    assert_int_equal(fetch_pending(fx->f), 2);
    run_until(fx, 1, 5000);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, 200);
    /* cancel one that is already on the wire */
    fetch_cancel(fx->f, idc);
    assert_int_equal(fetch_pending(fx->f), 0);
    run_for(fx, 100);
    assert_int_equal(a.calls, 0);
    assert_int_equal(c.calls, 0);
    rec_free(&b);
}

/* A callback cancels the other request (which may already have finished
 * and be waiting for its own callback) and starts a new one. */
static void test_reentrant_callbacks(void **state)
{
    fixture *fx = *state;
    rec a = { 0 }, b = { 0 };
    uint64_t ida = start_get(fx, "/ok", 3000, &a);
    uint64_t idb = start_get(fx, "/ok", 3000, &b);
    a.cancel_id_ptr = &idb;
    b.cancel_id_ptr = &ida;
    a.start_another = true;
    b.start_another = true;
    run_until(fx, 2, 5000);                /* the first of a/b, then extra */
    assert_int_equal(a.calls + b.calls, 1);
    assert_int_equal(fx->extra.calls, 1);
    assert_int_equal(fx->extra.status, 200);
    assert_int_equal(fetch_pending(fx->f), 0);
    run_for(fx, 50);
    assert_int_equal(a.calls + b.calls, 1);
    rec_free(&a);
    rec_free(&b);
}

typedef struct {
    fixture *fx;
    int ticks;
    int64_t last, max_gap;
    uint64_t id;
} ticker;

static void tick(loop_t *loop, void *arg)
{
    ticker *t = arg;
    int64_t now = mono_ms();
    if (t->last != 0 && now - t->last > t->max_gap)
        t->max_gap = now - t->last;
    t->last = now;
    t->ticks++;
    t->id = loop_add_timer(loop, 50, tick, t);
}

static void test_loop_not_blocked(void **state)
{
    fixture *fx = *state;
    rec a = { 0 };
    ticker t = { .fx = fx };
    t.id = loop_add_timer(fx->loop, 50, tick, &t);
    int64_t t0 = mono_ms();
    start_get(fx, "/slow", 5000, &a);
    run_until(fx, 1, 6000);
    int64_t elapsed = mono_ms() - t0;
    loop_cancel_timer(fx->loop, t.id);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "slow");
    assert_true(elapsed >= 1900);
    /* ~40 ticks in 2 s; allow generous slack for slow (valgrind) runs. */
    if (t.ticks < 15 || t.max_gap > 400)
        fail_msg("loop starved: %d ticks in %lld ms, max gap %lld ms", t.ticks,
                 (long long)elapsed, (long long)t.max_gap);
    rec_free(&a);
}

/* fetch_free with requests in flight: no callbacks, nothing leaks, the
 * loop is left with no watchers or timers of ours. */
static void test_free_in_flight(void **state)
{
    fixture *fx = *state;
    rec a = { 0 }, b = { 0 }, c = { 0 };
    start_get(fx, "/slow", 3000, &a);
    start_get(fx, "/ok", 3000, &b);
    run_until(fx, 1, 5000);                 /* /ok done, /slow on the wire */
    assert_int_equal(b.calls, 1);
    start_get(fx, "/ok", 3000, &c);         /* not even started */
    fetch_free(fx->f);
    fx->f = NULL;
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(c.calls, 0);
    /* Nothing of fetch's left in the loop: loop_run returns at once. */
    int64_t t0 = mono_ms();
    loop_run(fx->loop);
    assert_true(mono_ms() - t0 < 100);
    rec_free(&a);
    rec_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_error_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_not_in_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_body_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejected_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentrant_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_not_blocked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
