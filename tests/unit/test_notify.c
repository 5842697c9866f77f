/* test_notify.c - webhook notifications on a real loop, fetch and store,
 * delivered to an HTTP receiver running in a thread of this process
 * (127.0.0.1, ephemeral port) that records every body and can answer 500
 * to the first N requests, or never answer (hang).
 *
 * Retry delays are shortened with DRD_NOTIFY_BACKOFF_MS (read by
 * notify_new), set per test before the notifier is created. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "drd/core/fetch.h"
#include "drd/core/log.h"
#include "drd/core/loop.h"
#include "drd/engine/notify.h"
#include "drd/store/store.h"
#include "drd/core/util.h"

#define MAX_CONNS  256
#define MAX_BODIES 64
#define MAX_ROWS   64

/* ---- the receiver ----------------------------------------------------------- */

typedef struct {
    int lfd;
    int port;
    int wake[2];                  /* written at stop: releases hanging connections */
    atomic_bool stop;
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_t conns[MAX_CONNS];
    size_t nconns;
    /* behaviour (set under mu) */
    int fail_first;               /* answer 500 to this many requests, then 200 */
    bool hang;                    /* read the request, never answer */
    /* what it saw (under mu) */
    int requests;
    char *bodies[MAX_BODIES];
    int64_t at[MAX_BODIES];       /* mono ms of each request */
    char ctype[128];              /* of the last request */
    char path[256];
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
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void respond(int fd, int status, const char *reason)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 2\r\nConnection: close\r\n\r\nok",
                     status, reason);
    send_all(fd, head, (size_t)n);
}

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

/* Wait until fd is readable or the server stops; false on timeout/stop. */
static bool wait_readable(server *srv, int fd, int timeout_ms)
{
    struct pollfd pfd[2] = { { .fd = fd, .events = POLLIN }, { .fd = srv->wake[0], .events = POLLIN } };
    int r = poll(pfd, 2, timeout_ms);
    return r > 0 && (pfd[0].revents & (POLLIN | POLLHUP)) && !(pfd[1].revents & POLLIN);
}

static void *conn_main(void *p)
{
    conn_arg *ca = p;
    server *srv = ca->srv;
    int fd = ca->fd;
    free(ca);

    char buf[16384];
    size_t len = 0;
    char *end = NULL;
    while (end == NULL && len < sizeof(buf) - 1) {
        if (!wait_readable(srv, fd, 5000))
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
    end[2] = '\0';
    char *body = end + 4;
    size_t have = len - (size_t)(body - buf);
    char method[16] = "", path[256] = "", clen[32], ctype[128];
    if (sscanf(buf, "%15s %255s", method, path) != 2)
        goto out;
    header_value(buf, "Content-Length", clen, sizeof(clen));
    header_value(buf, "Content-Type", ctype, sizeof(ctype));
    size_t want = clen[0] ? (size_t)strtoul(clen, NULL, 10) : 0;
    while (have < want && (size_t)(body - buf) + have < sizeof(buf) - 1) {
        if (!wait_readable(srv, fd, 5000))
            goto out;
        ssize_t r = recv(fd, body + have, sizeof(buf) - 1 - (size_t)(body - buf) - have, 0);
        if (r <= 0)
            goto out;
        have += (size_t)r;
    }
    body[have] = '\0';

    pthread_mutex_lock(&srv->mu);
    int idx = srv->requests++;
    if (idx < MAX_BODIES) {
        srv->bodies[idx] = strdup(body);
        srv->at[idx] = mono_ms();
    }
    str_copy(srv->ctype, ctype, sizeof(srv->ctype));
    str_copy(srv->path, path, sizeof(srv->path));
    bool hang = srv->hang;
    bool fail = idx < srv->fail_first;
    pthread_mutex_unlock(&srv->mu);

    if (hang) {
        /* until the client hangs up or the server stops */
        struct pollfd pfd[2] = { { .fd = fd, .events = POLLIN }, { .fd = srv->wake[0], .events = POLLIN } };
        while (poll(pfd, 2, -1) < 0 && errno == EINTR)
            ;
    } else if (fail) {
        respond(fd, 500, "Internal Server Error");
    } else {
        respond(fd, 200, "OK");
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
    assert_int_equal(pipe2(srv->wake, O_CLOEXEC), 0);
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
    assert_int_equal(write(srv->wake[1], "x", 1), 1);
    shutdown(srv->lfd, SHUT_RDWR);
    pthread_join(srv->acceptor, NULL);
    close(srv->lfd);
    for (size_t i = 0; i < srv->nconns; i++)
        pthread_join(srv->conns[i], NULL);
    for (int i = 0; i < MAX_BODIES; i++)
        free(srv->bodies[i]);
    close(srv->wake[0]);
    close(srv->wake[1]);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}

static int server_requests(server *srv)
{
    pthread_mutex_lock(&srv->mu);
    int n = srv->requests;
    pthread_mutex_unlock(&srv->mu);
    return n;
}

/* Body of request i (malloc'd copy), failing the test if there is none. */
static char *server_body(server *srv, int i)
{
    pthread_mutex_lock(&srv->mu);
    char *b = i < srv->requests && i < MAX_BODIES && srv->bodies[i] != NULL
                  ? strdup(srv->bodies[i]) : NULL;
    pthread_mutex_unlock(&srv->mu);
    if (b == NULL)
        fail_msg("the receiver has no request %d", i);
    return b;
}

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

/* ---- fixture ------------------------------------------------------------------ */

typedef struct {
    server *srv;
    loop_t *loop;
    fetch_t *fetch;
    store_t *store;
    notify_t *n;
    metrics_counters counters;
    config_t cfg;                 /* only the [notify] fields are read */
    char url[256];
    char dir[64], db[128];
    bool watchdog_fired;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->srv = server_start();
    fx->loop = loop_new();
    assert_non_null(fx->loop);
    fx->fetch = fetch_new(fx->loop);
    assert_non_null(fx->fetch);
    str_copy(fx->dir, "/tmp/drd-test-notify.XXXXXX", sizeof(fx->dir));
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->db, sizeof(fx->db), "%s/drd.db", fx->dir);
    char err[256] = "";
    fx->store = store_open(fx->db, err, sizeof(err));
    if (fx->store == NULL)
        fail_msg("store_open: %s", err);
    snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/hook", fx->srv->port);
    fx->cfg.notify_webhook = fx->url;
    fx->cfg.notify_format = NOTIFY_SLACK;
    fx->cfg.notify_retries = 3;
    fx->cfg.notify_timeout_ms = 3000;
    fx->cfg.notify_queue = 100;
    setenv("DRD_NOTIFY_BACKOFF_MS", "50", 1);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    notify_free(fx->n);
    fetch_free(fx->fetch);
    loop_free(fx->loop);
    store_close(fx->store);
    server_stop(fx->srv);
    static const char *const files[] = { "drd.db", "drd.db-wal", "drd.db-shm", "drd.db-journal" };
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        char p[192];
        snprintf(p, sizeof(p), "%s/%s", fx->dir, files[i]);
        unlink(p);
    }
    rmdir(fx->dir);
    log_clear_secrets();
    log_set_level(LOG_LVL_INFO);
    unsetenv("DRD_NOTIFY_BACKOFF_MS");
    free(fx);
    return 0;
}

static void make_notify(fixture *fx)
{
    fx->n = notify_new(fx->loop, fx->fetch, fx->store, &fx->cfg, &fx->counters);
    assert_non_null(fx->n);
}

/* ---- running the loop --------------------------------------------------------- */

typedef bool (*pred_fn)(fixture *fx, void *arg);

typedef struct {
    fixture *fx;
    pred_fn pred;
    void *arg;
    bool met;
    uint64_t timer;
} waiter;

static void wait_check(loop_t *loop, void *p)
{
    waiter *w = p;
    if (w->pred(w->fx, w->arg)) {
        w->met = true;
        w->timer = 0;
        loop_stop(loop);
        return;
    }
    w->timer = loop_add_timer(loop, 5, wait_check, w);
}

static void watchdog(loop_t *loop, void *arg)
{
    fixture *fx = arg;
    fx->watchdog_fired = true;
    loop_stop(loop);
}

/* Run the loop until pred holds (true) or deadline_ms passed (false). */
static bool wait_until(fixture *fx, pred_fn pred, void *arg, int64_t deadline_ms)
{
    waiter w = { .fx = fx, .pred = pred, .arg = arg };
    if (pred(fx, arg))
        return true;
    fx->watchdog_fired = false;
    uint64_t wd = loop_add_timer(fx->loop, deadline_ms, watchdog, fx);
    w.timer = loop_add_timer(fx->loop, 5, wait_check, &w);
    loop_run(fx->loop);
    loop_cancel_timer(fx->loop, wd);
    loop_cancel_timer(fx->loop, w.timer);
    return w.met;
}

static void stop_loop(loop_t *loop, void *arg)
{
    (void)arg;
    loop_stop(loop);
}

static void run_for(fixture *fx, int64_t ms)
{
    assert_true(loop_add_timer(fx->loop, ms, stop_loop, NULL) > 0);
    loop_run(fx->loop);
}

static bool nothing_pending(fixture *fx, void *arg)
{
    (void)arg;
    return notify_pending(fx->n) == 0;
}

static bool requests_at_least(fixture *fx, void *arg)
{
    return server_requests(fx->srv) >= *(int *)arg;
}

/* ---- store rows ------------------------------------------------------------------ */

typedef struct {
    store_notification r[MAX_ROWS];
    int n;
} rows;

static bool collect(const store_notification *n, void *arg)
{
    rows *rs = arg;
    if (rs->n < MAX_ROWS)
        rs->r[rs->n++] = *n;
    return true;
}

/* All rows, oldest first. */
static void load_rows(fixture *fx, rows *rs)
{
    rows tmp = { .n = 0 };
    assert_true(store_notifications_recent(fx->store, -1, collect, &tmp));
    rs->n = tmp.n;
    for (int i = 0; i < tmp.n; i++)
        rs->r[i] = tmp.r[tmp.n - 1 - i];
}

static int count_state(const rows *rs, const char *state)
{
    int c = 0;
    for (int i = 0; i < rs->n; i++)
        if (strcmp(rs->r[i].state, state) == 0)
            c++;
    return c;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_no_webhook(void **state)
{
    fixture *fx = *state;
    fx->cfg.notify_webhook = NULL;
    make_notify(fx);
    assert_true(notify_send(fx->n, "incident_start", "primary is down", NULL));
    assert_int_equal(notify_pending(fx->n), 0);
    run_for(fx, 50);
    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 0);
    assert_int_equal(server_requests(fx->srv), 0);
    assert_int_equal(fx->counters.notifications_total[0] + fx->counters.notifications_total[1]
                     + fx->counters.notifications_total[2], 0);
    assert_int_equal(fetch_pending(fx->fetch), 0);
    /* An empty URL is no webhook either. */
    notify_free(fx->n);
    fx->cfg.notify_webhook = (char *)"";
    make_notify(fx);
    assert_true(notify_send(fx->n, "incident_start", "primary is down", NULL));
    assert_int_equal(notify_pending(fx->n), 0);
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 0);
}

static void test_slack_body(void **state)
{
    fixture *fx = *state;
    make_notify(fx);
    json_t *fields = json_pack("{s:s}", "target", "primary");
    assert_true(notify_send(fx->n, "incident_start", "Primary \"db1\" is down \xc3\xa9", fields));
    json_decref(fields);
    assert_int_equal(notify_pending(fx->n), 1);
    assert_true(wait_until(fx, nothing_pending, NULL, 5000));
    assert_int_equal(server_requests(fx->srv), 1);
    char *body = server_body(fx->srv, 0);
    assert_string_equal(body, "{\"text\":\"Primary \\\"db1\\\" is down \xc3\xa9\"}");
    free(body);
    pthread_mutex_lock(&fx->srv->mu);
    assert_string_equal(fx->srv->ctype, "application/json");
    assert_string_equal(fx->srv->path, "/hook");
    pthread_mutex_unlock(&fx->srv->mu);

    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.r[0].event, "incident_start");
    assert_string_equal(rs.r[0].state, "sent");
    assert_int_equal(rs.r[0].attempts, 1);
    assert_int_equal(rs.r[0].http_status, 200);
    assert_string_equal(rs.r[0].error, "");
    assert_true(rs.r[0].last_attempt_at >= rs.r[0].at);
    assert_string_equal(rs.r[0].summary, "Primary \"db1\" is down \xc3\xa9");
    assert_int_equal(fx->counters.notifications_total[0], 1);
    assert_int_equal(fx->counters.notifications_total[1], 0);
    assert_int_equal(fx->counters.notifications_total[2], 0);
}

static void test_json_body(void **state)
{
    fixture *fx = *state;
    fx->cfg.notify_format = NOTIFY_JSON;
    make_notify(fx);
    json_t *fields = json_pack("{s:s, s:I, s:b, s:{s:[i,i]}, s:s}", "target", "primary",
                               "incident_id", (json_int_t)7, "auto", 0, "extra", "list", 1, 2,
                               "event", "not-this-one");
    int64_t t0 = wall_ms();
    assert_true(notify_send(fx->n, "incident_start", "primary is down", fields));
    json_decref(fields);
    int64_t t1 = wall_ms();
    assert_true(wait_until(fx, nothing_pending, NULL, 5000));
    char *body = server_body(fx->srv, 0);
    json_error_t jerr;
    json_t *o = json_loads(body, 0, &jerr);
    if (o == NULL)
        fail_msg("body is not JSON (%s): %s", jerr.text, body);
    free(body);
    assert_string_equal(json_string_value(json_object_get(o, "event")), "incident_start");
    assert_string_equal(json_string_value(json_object_get(o, "text")), "primary is down");
    assert_string_equal(json_string_value(json_object_get(o, "target")), "primary");
    assert_int_equal(json_integer_value(json_object_get(o, "incident_id")), 7);
    assert_true(json_is_false(json_object_get(o, "auto")));
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(o, "extra"), "list"), 1)), 2);
    json_t *at_ms = json_object_get(o, "at_ms");
    assert_true(json_is_integer(at_ms));
    int64_t ms = json_integer_value(at_ms);
    assert_true(ms >= t0 && ms <= t1);
    /* "at": the same instant, ISO-8601 UTC with milliseconds */
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char want[40], date[32];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(want, sizeof(want), "%s.%03dZ", date, (int)(ms % 1000));
    assert_string_equal(json_string_value(json_object_get(o, "at")), want);
    assert_int_equal(json_object_size(o), 8);
    json_decref(o);
    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.r[0].state, "sent");
    assert_int_equal(rs.r[0].at, ms);
}

/* 500, 500, then 200: delivered on the third attempt, after 1x then 2x the
 * base delay. */
static void test_retry_backoff(void **state)
{
    fixture *fx = *state;
    setenv("DRD_NOTIFY_BACKOFF_MS", "100", 1);
    fx->srv->fail_first = 2;
    make_notify(fx);
    assert_true(notify_send(fx->n, "run_failed", "failover run 3 failed", NULL));
    assert_true(wait_until(fx, nothing_pending, NULL, 5000));
    assert_int_equal(server_requests(fx->srv), 3);
    pthread_mutex_lock(&fx->srv->mu);
    int64_t gap1 = fx->srv->at[1] - fx->srv->at[0];
    int64_t gap2 = fx->srv->at[2] - fx->srv->at[1];
    pthread_mutex_unlock(&fx->srv->mu);
    print_message("# gaps: %lld ms, %lld ms\n", (long long)gap1, (long long)gap2);
    assert_true(gap1 >= 90 && gap1 < 1000);
    assert_true(gap2 >= 190 && gap2 < 1500);
    for (int i = 0; i < 3; i++) {
        char *b = server_body(fx->srv, i);
        assert_string_equal(b, "{\"text\":\"failover run 3 failed\"}");
        free(b);
    }
    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.r[0].state, "sent");
    assert_int_equal(rs.r[0].attempts, 3);
    assert_int_equal(rs.r[0].http_status, 200);
    assert_string_equal(rs.r[0].error, "");
    assert_int_equal(fx->counters.notifications_total[0], 1);
    assert_int_equal(fx->counters.notifications_total[1], 0);
}

/* Always 500: 1 + retries attempts, then failed with the last status. */
static void test_http_error_gives_up(void **state)
{
    fixture *fx = *state;
    fx->srv->fail_first = 1000;
    fx->cfg.notify_retries = 2;
    make_notify(fx);
    assert_true(notify_send(fx->n, "approval_needed", "approve failover?", NULL));
    assert_true(wait_until(fx, nothing_pending, NULL, 5000));
    assert_int_equal(server_requests(fx->srv), 3);
    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.r[0].state, "failed");
    assert_int_equal(rs.r[0].attempts, 3);
    assert_int_equal(rs.r[0].http_status, 500);
    assert_string_equal(rs.r[0].error, "HTTP 500");
    assert_int_equal(fx->counters.notifications_total[0], 0);
    assert_int_equal(fx->counters.notifications_total[1], 1);
}

/* Nobody listens: retried up to retries, then failed with curl's error. */
static void test_receiver_down(void **state)
{
    fixture *fx = *state;
    snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/hook", closed_port());
    fx->cfg.notify_retries = 2;
    make_notify(fx);
    assert_true(notify_send(fx->n, "incident_start", "primary is down", NULL));
    assert_true(notify_send(fx->n, "run_started", "failover run 1 started", NULL));
    assert_int_equal(notify_pending(fx->n), 2);
    assert_true(wait_until(fx, nothing_pending, NULL, 5000));
    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(rs.r[i].state, "failed");
        assert_int_equal(rs.r[i].attempts, 3);
        assert_int_equal(rs.r[i].http_status, 0);
        assert_true(rs.r[i].error[0] != '\0');
        assert_true(rs.r[i].last_attempt_at > 0);
    }
    print_message("# error: %s\n", rs.r[0].error);
    assert_string_equal(rs.r[0].event, "incident_start");
    assert_string_equal(rs.r[1].event, "run_started");
    assert_int_equal(fx->counters.notifications_total[1], 2);
    assert_int_equal(fetch_pending(fx->fetch), 0);
}

/* queue = 3, the receiver hangs: of 10 notifications 7 are dropped. */
static void test_queue_bound(void **state)
{
    fixture *fx = *state;
    fx->srv->hang = true;
    fx->cfg.notify_queue = 3;
    fx->cfg.notify_timeout_ms = 10000;
    make_notify(fx);
    for (int i = 0; i < 10; i++) {
        char text[64];
        snprintf(text, sizeof(text), "event %d", i);
        assert_true(notify_send(fx->n, "incident_start", text, NULL));
        assert_true(notify_pending(fx->n) <= 3);
    }
    assert_int_equal(notify_pending(fx->n), 3);
    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 10);
    assert_int_equal(count_state(&rs, "dropped"), 7);
    assert_int_equal(count_state(&rs, "pending"), 3);
    for (int i = 0; i < rs.n; i++)
        if (strcmp(rs.r[i].state, "dropped") == 0)
            assert_string_equal(rs.r[i].error, "queue full");
    assert_int_equal(fx->counters.notifications_total[2], 7);
    int three = 3;
    assert_true(wait_until(fx, requests_at_least, &three, 5000));
    run_for(fx, 100);
    assert_int_equal(server_requests(fx->srv), 3);
    assert_int_equal(notify_pending(fx->n), 3);
    /* teardown: notify_free cancels the three requests in flight */
}

/* At most 4 requests in flight at a time. */
static void test_concurrency_cap(void **state)
{
    fixture *fx = *state;
    fx->srv->hang = true;
    fx->cfg.notify_timeout_ms = 10000;
    make_notify(fx);
    for (int i = 0; i < 10; i++)
        assert_true(notify_send(fx->n, "run_started", "x", NULL));
    int four = 4;
    assert_true(wait_until(fx, requests_at_least, &four, 5000));
    run_for(fx, 200);
    assert_int_equal(server_requests(fx->srv), 4);
    assert_int_equal(notify_pending(fx->n), 10);
    assert_int_equal(fetch_pending(fx->fetch), 4);
}

static bool all_waiting_retry(fixture *fx, void *arg)
{
    rows rs;
    load_rows(fx, &rs);
    int want = *(int *)arg, c = 0;
    for (int i = 0; i < rs.n; i++)
        if (strcmp(rs.r[i].state, "pending") == 0 && rs.r[i].attempts == 1
            && rs.r[i].http_status == 500)
            c++;
    return c == want;
}

/* The full queue drops its oldest notification that is not in flight (one
 * waiting for a retry), not the newcomer. */
static void test_drop_oldest_waiting(void **state)
{
    fixture *fx = *state;
    setenv("DRD_NOTIFY_BACKOFF_MS", "10000", 1);
    fx->srv->fail_first = 1000;
    fx->cfg.notify_queue = 2;
    make_notify(fx);
    assert_true(notify_send(fx->n, "incident_start", "A", NULL));
    assert_true(notify_send(fx->n, "approval_needed", "B", NULL));
    int two = 2;
    assert_true(wait_until(fx, all_waiting_retry, &two, 5000));
    assert_true(notify_send(fx->n, "incident_end", "C", NULL));
    assert_int_equal(notify_pending(fx->n), 2);
    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 3);
    assert_string_equal(rs.r[0].summary, "A");
    assert_string_equal(rs.r[0].state, "dropped");
    assert_int_equal(rs.r[0].attempts, 1);
    assert_string_equal(rs.r[1].state, "pending");
    assert_string_equal(rs.r[2].state, "pending");
    assert_int_equal(fx->counters.notifications_total[2], 1);
}

static bool body_has(const char *body, const char *s)
{
    return strstr(body, s) != NULL;
}

/* Secrets in the text and in the fields never reach the receiver or the
 * store. */
static void test_secrets_masked(void **state)
{
    fixture *fx = *state;
    fx->cfg.notify_format = NOTIFY_JSON;
    log_add_secret("tok-XYZ-123");
    make_notify(fx);
    json_t *fields = json_pack("{s:s, s:{s:[s]}}", "dsn", "postgresql://app:hunter2@db:5432/app",
                               "nested", "list", "host=db password=hunter2 token tok-XYZ-123");
    assert_true(notify_send(fx->n, "incident_start",
                            "cannot reach postgresql://app:hunter2@db.example.com:5432/app "
                            "(password=hunter2, api token tok-XYZ-123)", fields));
    json_decref(fields);
    assert_true(wait_until(fx, nothing_pending, NULL, 5000));
    char *body = server_body(fx->srv, 0);
    print_message("# body: %s\n", body);
    assert_false(body_has(body, "hunter2"));
    assert_false(body_has(body, "tok-XYZ-123"));
    assert_true(body_has(body, "postgresql://app:****@db.example.com"));
    assert_true(body_has(body, "\"dsn\""));
    free(body);
    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 1);
    assert_null(strstr(rs.r[0].summary, "hunter2"));
    assert_null(strstr(rs.r[0].summary, "tok-XYZ-123"));
}

/* Logs name the webhook by its host only: the token in its path never
 * appears, even at debug level and on failures. */
static void test_url_never_logged(void **state)
{
    fixture *fx = *state;
    snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/services/T0K3N-PATH-SECRET", fx->srv->port);
    fx->srv->fail_first = 1;
    log_set_level(LOG_LVL_DEBUG);
    char logpath[128];
    snprintf(logpath, sizeof(logpath), "%s/stderr.log", fx->dir);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    int lfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(lfd >= 0);
    assert_true(dup2(lfd, STDERR_FILENO) >= 0);
    close(lfd);

    make_notify(fx);
    char text[300];
    snprintf(text, sizeof(text), "see %s", fx->url);
    assert_true(notify_send(fx->n, "incident_start", text, NULL));
    bool done = wait_until(fx, nothing_pending, NULL, 5000);
    /* and a failure with the receiver gone */
    char dead[256];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d/services/T0K3N-PATH-SECRET", closed_port());
    fx->cfg.notify_webhook = dead;
    fx->cfg.notify_retries = 1;
    notify_reconfigure(fx->n, &fx->cfg);
    assert_true(notify_send(fx->n, "incident_end", "primary is back", NULL));
    bool done2 = wait_until(fx, nothing_pending, NULL, 5000);

    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    assert_true(done);
    assert_true(done2);
    size_t len = 0;
    char *log = read_file(logpath, 1 << 20, &len);
    assert_non_null(log);
    unlink(logpath);
    char host[64];
    snprintf(host, sizeof(host), "127.0.0.1:%d", fx->srv->port);
    if (strstr(log, "T0K3N") != NULL || strstr(log, host) == NULL)
        fail_msg("log:\n%s", log);
    assert_non_null(strstr(log, "retrying in"));
    assert_non_null(strstr(log, "giving up"));
    free(log);
    char *body = server_body(fx->srv, 0);
    assert_null(strstr(body, "T0K3N"));       /* the text quoted the URL */
    free(body);
}

typedef struct {
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

/* Deliveries that hang (and retries against a dead port) never stall the loop. */
static void test_never_blocks(void **state)
{
    fixture *fx = *state;
    fx->srv->hang = true;
    fx->cfg.notify_timeout_ms = 300;     /* time out, retry, time out again ... */
    fx->cfg.notify_retries = 10;
    make_notify(fx);
    ticker t = { 0 };
    t.id = loop_add_timer(fx->loop, 50, tick, &t);
    int64_t t0 = mono_ms();
    for (int i = 0; i < 8; i++)
        assert_true(notify_send(fx->n, "run_started", "run started", NULL));
    assert_true(mono_ms() - t0 < 200);   /* notify_send itself returns at once */
    run_for(fx, 1500);
    loop_cancel_timer(fx->loop, t.id);
    print_message("# %d ticks, max gap %lld ms, %d requests\n", t.ticks, (long long)t.max_gap,
                  server_requests(fx->srv));
    if (t.ticks < 20 || t.max_gap > 400)
        fail_msg("loop starved: %d ticks, max gap %lld ms", t.ticks, (long long)t.max_gap);
    assert_true(server_requests(fx->srv) > 4);      /* timed out and retried */
    assert_int_equal(notify_pending(fx->n), 8);
}

/* A new URL: queued notifications (even one waiting for a retry) go there. */
static void test_reconfigure_url(void **state)
{
    fixture *fx = *state;
    setenv("DRD_NOTIFY_BACKOFF_MS", "10000", 1);   /* would wait 10 s without the reload */
    char good[256];
    str_copy(good, fx->url, sizeof(good));
    snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/hook", closed_port());
    fx->cfg.notify_retries = 5;
    make_notify(fx);
    assert_true(notify_send(fx->n, "incident_start", "primary is down", NULL));
    rows rs;
    for (int64_t t0 = mono_ms(); mono_ms() - t0 < 5000;) {
        run_for(fx, 20);
        load_rows(fx, &rs);
        if (rs.n == 1 && rs.r[0].attempts == 1 && rs.r[0].error[0] != '\0')
            break;
    }
    assert_int_equal(rs.r[0].attempts, 1);
    assert_string_equal(rs.r[0].state, "pending");
    str_copy(fx->url, good, sizeof(fx->url));
    fx->cfg.notify_format = NOTIFY_JSON;
    notify_reconfigure(fx->n, &fx->cfg);
    assert_true(wait_until(fx, nothing_pending, NULL, 3000));
    load_rows(fx, &rs);
    assert_string_equal(rs.r[0].state, "sent");
    assert_int_equal(rs.r[0].attempts, 2);
    char *body = server_body(fx->srv, 0);
    assert_true(body_has(body, "\"event\":\"incident_start\""));
    free(body);

    /* webhook removed: what is queued is dropped, nothing is sent */
    fx->srv->hang = true;
    assert_true(notify_send(fx->n, "incident_end", "primary is back", NULL));
    fx->cfg.notify_webhook = NULL;
    notify_reconfigure(fx->n, &fx->cfg);   /* the new one is in flight: it stays */
    assert_true(notify_send(fx->n, "run_started", "ignored", NULL));
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 2);
    assert_int_equal(notify_pending(fx->n), 1);
}

/* notify_free with requests in flight and retries scheduled: nothing
 * leaks, no callback runs later, the rows stay pending. */
static void test_free_in_flight(void **state)
{
    fixture *fx = *state;
    fx->srv->hang = true;
    fx->cfg.notify_timeout_ms = 10000;
    make_notify(fx);
    for (int i = 0; i < 6; i++)
        assert_true(notify_send(fx->n, "run_started", "x", NULL));
    int four = 4;
    assert_true(wait_until(fx, requests_at_least, &four, 5000));
    notify_free(fx->n);
    fx->n = NULL;
    assert_int_equal(fetch_pending(fx->fetch), 0);
    rows rs;
    load_rows(fx, &rs);
    assert_int_equal(rs.n, 6);
    assert_int_equal(count_state(&rs, "pending"), 6);
    run_for(fx, 50);
    notify_free(NULL);
    assert_int_equal(notify_pending(NULL), 0);
    assert_true(notify_send(NULL, "x", "y", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_webhook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slack_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_error_gives_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_oldest_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_masked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_never_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconfigure_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
