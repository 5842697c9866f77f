/* test_api.c - the HTTP API over its unix socket and TCP, with libcurl. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "drd/http/api.h"
#include "drd/core/log.h"
#include "drd/engine/status.h"
#include "drd/store/store.h"
#include "drd/core/util.h"

#define TOKEN "t0ken-for-tests"

typedef struct {
    char dir[64];
    char sock[128];
    char db[128];
    char listen[64];
    char base[64];       /* http://127.0.0.1:PORT */
    api_t *api;
} fixture;

typedef struct {
    long status;
    char *body;
    size_t len;
    char headers[4096];
} reply;

/* ---- helpers ---- */

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    reply *r = arg;
    size_t add = sz * n;
    char *nb = realloc(r->body, r->len + add + 1);

    if (nb == NULL)
        return 0;
    memcpy(nb + r->len, p, add);
    r->len += add;
    nb[r->len] = '\0';
    r->body = nb;
    return add;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    reply *r = arg;
    size_t add = sz * n, have = strlen(r->headers);

    if (have + add < sizeof(r->headers)) {
        memcpy(r->headers + have, p, add);
        r->headers[have + add] = '\0';
    }
    return add;
}

typedef struct {
    const char *data;
    size_t len, off;
} upload;

/* One more request header for the next req() calls, or NULL. */
static const char *g_extra_header;
/* More request headers (NULL-terminated) for the next req() calls. */
static const char *g_headers[8];

static size_t on_read(char *p, size_t sz, size_t n, void *arg)
{
    upload *u = arg;
    size_t want = sz * n, left = u->len - u->off;

    if (want > left)
        want = left;
    memcpy(p, u->data + u->off, want);
    u->off += want;
    return want;
}

static void reply_free(reply *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static bool has_header(const reply *r, const char *line)
{
    return strcasestr(r->headers, line) != NULL;
}

/* One request. unix_path != NULL: over the socket. chunked: no
 * Content-Length, the body goes out with Transfer-Encoding: chunked. */
static long req(const char *method, const char *url, const char *unix_path,
                const char *token, const char *body, size_t body_len, bool chunked,
                reply *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char auth[256];
    upload u = { body, body_len, 0 };
    CURLcode rc;

    memset(r, 0, sizeof(*r));
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (unix_path != NULL)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_path);
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        if (chunked) {
            h = curl_slist_append(h, "Transfer-Encoding: chunked");
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, &u);
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if (g_extra_header != NULL)
        h = curl_slist_append(h, g_extra_header);
    for (size_t i = 0; i < ARRAY_LEN(g_headers) && g_headers[i] != NULL; i++)
        h = curl_slist_append(h, g_headers[i]);
    /* send "..", "//" and the like as they are */
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (h != NULL)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else
        r->status = -(long)rc;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);

    /* Every answer is not sniffed, not framed, leaks no referrer; every
     * API answer is JSON and not cached. */
    if (r->status > 0) {
        bool api = strstr(url, "/api/") != NULL || strstr(url, "/healthz") != NULL;
        assert_true(has_header(r, "X-Content-Type-Options: nosniff"));
        assert_true(has_header(r, "Referrer-Policy: no-referrer"));
        assert_true(has_header(r, "X-Frame-Options: DENY"));
        assert_true(has_header(r, "Content-Security-Policy: "));
        if (api || has_header(r, "Content-Type: application/json")) {
            assert_true(has_header(r, "Content-Type: application/json"));
            assert_true(has_header(r, "Cache-Control: no-store"));
            assert_true(has_header(r, "Content-Security-Policy: default-src 'none'"));
        }
    }
    return r->status;
}

static long sock_get(fixture *f, const char *path, reply *r)
{
    char url[256];
    snprintf(url, sizeof(url), "http://localhost%s", path);
    return req("GET", url, f->sock, NULL, NULL, 0, false, r);
}

static long sock_post(fixture *f, const char *path, const char *body, reply *r)
{
    char url[256];
    snprintf(url, sizeof(url), "http://localhost%s", path);
    return req("POST", url, f->sock, NULL, body, body != NULL ? strlen(body) : 0, false, r);
}

static long tcp_req(fixture *f, const char *method, const char *path, const char *token,
                    reply *r)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", f->base, path);
    return req(method, url, NULL, token, NULL, 0, false, r);
}

/* The "error" member of a JSON error reply. */
static const char *error_of(const reply *r, char *buf, size_t n)
{
    json_t *doc = json_loads(r->body != NULL ? r->body : "", 0, NULL);
    const char *e = doc != NULL ? json_string_value(json_object_get(doc, "error")) : NULL;

    str_copy(buf, e != NULL ? e : "", n);
    json_decref(doc);
    return buf;
}

static bool fd_readable(int fd, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int64_t deadline = mono_ms() + timeout_ms;

    for (;;) {
        int left = (int)(deadline - mono_ms());
        int rc = poll(&p, 1, left > 0 ? left : 0);
        if (rc > 0)
            return (p.revents & POLLIN) != 0;
        if (rc == 0 || errno != EINTR)
            return false;
    }
}

static api_t *start_api(fixture *f, const char *listen, const char *token,
                        char *err, size_t errlen)
{
    api_options o = {
        .listen = listen, .socket_path = f->sock, .token = token,
        .db_path = f->db, .web_root = NULL,
    };
    return api_start(&o, err, errlen);
}

/* ---- fixture ---- */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char err[256] = "";

    assert_non_null(f);
    str_copy(f->dir, "/tmp/drd-test-api-XXXXXX", sizeof(f->dir));
    assert_non_null(mkdtemp(f->dir));
    /* A missing parent directory is created by api_start. */
    snprintf(f->sock, sizeof(f->sock), "%s/run/drd.sock", f->dir);
    snprintf(f->db, sizeof(f->db), "%s/drd.db", f->dir);

    /* A free TCP port: try a few random ones. */
    srand((unsigned)(getpid() ^ (unsigned)time(NULL)));
    for (int i = 0; i < 30 && f->api == NULL; i++) {
        int port = 20000 + rand() % 40000;
        snprintf(f->listen, sizeof(f->listen), "127.0.0.1:%d", port);
        snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", port);
        f->api = start_api(f, f->listen, TOKEN, err, sizeof(err));
    }
    if (f->api == NULL)
        fail_msg("api_start: %s", err);
    *state = f;
    return 0;
}

static void rm_rf(const char *dir)
{
    static const char *names[] = { "run/drd.sock", "run", "drd.db", "drd.db-wal",
                                   "drd.db-shm", "drd.db-journal", "plain",
                                   "web/index.html", "web/app.js", "web/style.css",
                                   "web/favicon.svg", "web" };
    char p[256];

    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        if (unlink(p) != 0 && errno == EISDIR)
            rmdir(p);
        rmdir(p);
    }
    rmdir(dir);
}

static int teardown(void **state)
{
    fixture *f = *state;

    api_stop(f->api);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* ---- tests ---- */

static void test_healthz(void **state)
{
    fixture *f = *state;
    reply r;

    assert_int_equal(sock_get(f, "/healthz", &r), 200);
    assert_string_equal(r.body, "{\"ok\":true}");
    reply_free(&r);
    /* no token needed on TCP for /healthz */
    assert_int_equal(tcp_req(f, "GET", "/healthz", NULL, &r), 200);
    assert_string_equal(r.body, "{\"ok\":true}");
    reply_free(&r);
}

static void test_status_publish(void **state)
{
    fixture *f = *state;
    const char *doc = "{\"active\":\"primary\",\"daemon\":\"running\"}";
    char e[128];
    reply r;

    assert_int_equal(sock_get(f, "/api/status", &r), 503);
    assert_string_equal(error_of(&r, e, sizeof(e)), "starting");
    reply_free(&r);

    api_publish_status(f->api, doc);
    assert_int_equal(sock_get(f, "/api/status", &r), 200);
    assert_string_equal(r.body, doc);
    reply_free(&r);

    api_publish_status(f->api, "{\"active\":\"backup\"}");
    assert_int_equal(tcp_req(f, "GET", "/api/status", TOKEN, &r), 200);
    assert_string_equal(r.body, "{\"active\":\"backup\"}");
    reply_free(&r);
}

static void test_tcp_auth(void **state)
{
    fixture *f = *state;
    reply r;

    api_publish_status(f->api, "{}");
    assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 401);
    assert_true(has_header(&r, "WWW-Authenticate: Bearer"));
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/status", "wrong", &r), 401);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/status", TOKEN "x", &r), 401);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/status", TOKEN, &r), 200);
    reply_free(&r);
    /* unknown paths do not leak without a token */
    assert_int_equal(tcp_req(f, "GET", "/nope", NULL, &r), 401);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 401);
    reply_free(&r);
    assert_null(command_queue_pop(api_commands(f->api)));
}

static void test_tcp_without_token(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    api_t *a = NULL;
    reply r;

    /* a second instance on another socket/port with no token at all */
    api_stop(f->api);
    f->api = NULL;
    for (int i = 0; i < 30 && a == NULL; i++) {
        int port = 20000 + rand() % 40000;
        snprintf(f->listen, sizeof(f->listen), "127.0.0.1:%d", port);
        snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", port);
        a = start_api(f, f->listen, NULL, err, sizeof(err));
    }
    assert_non_null(a);
    f->api = a;
    assert_int_equal(tcp_req(f, "GET", "/healthz", NULL, &r), 200);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 401);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/status", "", &r), 401);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/status", "anything", &r), 401);
    reply_free(&r);
    /* the socket still works without a token */
    assert_int_equal(sock_get(f, "/healthz", &r), 200);
    reply_free(&r);
}

static void test_not_found_and_method(void **state)
{
    fixture *f = *state;
    char url[256];
    reply r;

    assert_int_equal(sock_get(f, "/nope", &r), 404);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/status/", &r), 404);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/approvals/1/maybe", &r), 404);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/nope", TOKEN, &r), 404);
    reply_free(&r);

    assert_int_equal(sock_post(f, "/api/status", NULL, &r), 405);
    assert_true(has_header(&r, "Allow: GET"));
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/failover", &r), 405);
    assert_true(has_header(&r, "Allow: POST"));
    reply_free(&r);
    snprintf(url, sizeof(url), "http://localhost/api/approvals/3/approve");
    assert_int_equal(req("DELETE", url, f->sock, NULL, NULL, 0, false, &r), 405);
    assert_true(has_header(&r, "Allow: POST"));
    reply_free(&r);
    assert_int_equal(tcp_req(f, "PUT", "/api/status", TOKEN, &r), 405);
    reply_free(&r);

    /* runs and requests: no state database in this fixture yet -> 503;
     * ids are validated first */
    assert_int_equal(sock_get(f, "/api/runs", &r), 503);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/runs/7", &r), 503);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/requests/x", &r), 400);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/requests/7/more", &r), 404);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/runs/x7", &r), 400);
    reply_free(&r);
}

static void test_commands(void **state)
{
    fixture *f = *state;
    int fd = command_queue_fd(api_commands(f->api));
    json_t *doc;
    int64_t id1, id2;
    command *c;
    char url[256];
    reply r;

    assert_true(fd >= 0);
    assert_false(fd_readable(fd, 0));

    assert_int_equal(sock_post(f, "/api/failover", NULL, &r), 202);
    doc = json_loads(r.body, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "queued");
    id1 = json_integer_value(json_object_get(doc, "request_id"));
    assert_true(id1 > 0);
    json_decref(doc);
    reply_free(&r);

    assert_true(fd_readable(fd, 2000));
    c = command_queue_pop(api_commands(f->api));
    assert_non_null(c);
    assert_int_equal(c->kind, CMD_FAILOVER);
    assert_int_equal(c->request_id, id1);
    assert_string_equal(c->reason, "");
    assert_string_equal(c->actor, "socket");
    free(c);
    assert_null(command_queue_pop(api_commands(f->api)));
    assert_false(fd_readable(fd, 0));

    /* two queued: the fd stays readable until the queue is empty */
    assert_int_equal(sock_post(f, "/api/failback", "{\"reason\":\"primary is back\"}", &r), 202);
    reply_free(&r);
    snprintf(url, sizeof(url), "%s/api/approvals/42/reject", f->base);
    assert_int_equal(req("POST", url, NULL, TOKEN, "{\"reason\":\"no\"}", 15, false, &r), 202);
    doc = json_loads(r.body, 0, NULL);
    id2 = json_integer_value(json_object_get(doc, "request_id"));
    json_decref(doc);
    reply_free(&r);

    assert_true(fd_readable(fd, 2000));
    c = command_queue_pop(api_commands(f->api));
    assert_non_null(c);
    assert_int_equal(c->kind, CMD_FAILBACK);
    assert_string_equal(c->reason, "primary is back");
    assert_true(c->request_id > id1);
    free(c);
    assert_true(fd_readable(fd, 0));
    c = command_queue_pop(api_commands(f->api));
    assert_non_null(c);
    assert_int_equal(c->kind, CMD_REJECT);
    assert_int_equal(c->approval_id, 42);
    assert_int_equal(c->request_id, id2);
    assert_string_equal(c->reason, "no");
    assert_string_equal(c->actor, "token");
    free(c);
    assert_null(command_queue_pop(api_commands(f->api)));
    assert_false(fd_readable(fd, 0));

    assert_int_equal(sock_post(f, "/api/approvals/7/approve", "", &r), 202);
    reply_free(&r);
    c = command_queue_pop(api_commands(f->api));
    assert_non_null(c);
    assert_int_equal(c->kind, CMD_APPROVE);
    assert_int_equal(c->approval_id, 7);
    free(c);
    /* a queued command left behind is freed by api_stop */
    assert_int_equal(sock_post(f, "/api/failover", "{}", &r), 202);
    reply_free(&r);
}

static void test_too_large(void **state)
{
    fixture *f = *state;
    size_t n = 70 * 1024;
    char *big = malloc(n + 1);
    char url[256];
    reply r;

    assert_non_null(big);
    /* a valid JSON object padded with spaces: only the size is wrong */
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    snprintf(url, sizeof(url), "http://localhost/api/failover");
    assert_int_equal(req("POST", url, f->sock, NULL, big, n, false, &r), 413);
    reply_free(&r);
    /* a client waiting for 100 Continue gets the 413 before sending */
    g_extra_header = "Expect: 100-continue";
    assert_int_equal(req("POST", url, f->sock, NULL, big, n, false, &r), 413);
    reply_free(&r);
    g_extra_header = "Expect:";   /* curl: do not send Expect */
    assert_int_equal(req("POST", url, f->sock, NULL, big, n, false, &r), 413);
    reply_free(&r);
    g_extra_header = NULL;
    /* chunked: no Content-Length up front, the accumulated size decides */
    assert_int_equal(req("POST", url, f->sock, NULL, big, n, true, &r), 413);
    reply_free(&r);
    /* just under the limit is fine */
    assert_int_equal(req("POST", url, f->sock, NULL, big, 60 * 1024, false, &r), 400);
    reply_free(&r);
    big[60 * 1024 - 1] = '}';
    assert_int_equal(req("POST", url, f->sock, NULL, big, 60 * 1024, true, &r), 202);
    reply_free(&r);
    free(command_queue_pop(api_commands(f->api)));
    assert_null(command_queue_pop(api_commands(f->api)));
    free(big);
}

static void test_bad_bodies_and_ids(void **state)
{
    fixture *f = *state;
    char e[256];
    reply r;

    assert_int_equal(sock_post(f, "/api/failover", "{\"reason\":", &r), 400);
    assert_non_null(strstr(error_of(&r, e, sizeof(e)), "malformed JSON"));
    reply_free(&r);
    assert_int_equal(sock_post(f, "/api/failover", "[1,2]", &r), 400);
    reply_free(&r);
    assert_int_equal(sock_post(f, "/api/failover", "{\"reason\":5}", &r), 400);
    reply_free(&r);
    assert_int_equal(sock_post(f, "/api/approvals/abc/approve", NULL, &r), 400);
    assert_string_equal(error_of(&r, e, sizeof(e)), "approval id must be a positive integer");
    reply_free(&r);
    assert_int_equal(sock_post(f, "/api/approvals/0/approve", NULL, &r), 400);
    reply_free(&r);
    assert_int_equal(sock_post(f, "/api/approvals/-3/reject", NULL, &r), 400);
    reply_free(&r);
    assert_int_equal(sock_post(f, "/api/approvals/99999999999999999999999/reject", NULL, &r), 400);
    reply_free(&r);
    assert_null(command_queue_pop(api_commands(f->api)));
}

static void test_events(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store_t *st;
    int64_t e1, e2, e3;
    json_t *doc, *ev;
    char path[128];
    reply r;

    /* no database yet: 503, and retried later */
    assert_int_equal(sock_get(f, "/api/events", &r), 503);
    reply_free(&r);

    st = store_open(f->db, err, sizeof(err));
    assert_non_null(st);
    e1 = store_event_add(st, 1000, "daemon", "", "started");
    e2 = store_event_add(st, 2000, "breaker", "primary", "closed -> open");
    e3 = store_event_add(st, 3000, "incident", "primary", "outage");
    assert_true(e1 > 0 && e2 > e1 && e3 > e2);
    assert_true(store_incident_open(st, "primary", 2500, "3 failures") > 0);
    store_close(st);

    /* the read-only store is retried at most once a second */
    {
        int64_t deadline = mono_ms() + 5000;
        long code;
        do {
            code = sock_get(f, "/api/events?since=0", &r);
            if (code != 200) {
                reply_free(&r);
                usleep(100 * 1000);
            }
        } while (code != 200 && mono_ms() < deadline);
        assert_int_equal(code, 200);
    }
    doc = json_loads(r.body, 0, NULL);
    assert_non_null(doc);
    ev = json_object_get(doc, "events");
    assert_int_equal(json_array_size(ev), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 0), "id")), e1);
    assert_true(json_is_null(json_object_get(json_array_get(ev, 0), "target")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 1), "target")),
                        "primary");
    assert_int_equal(json_integer_value(json_object_get(doc, "last_id")), e3);
    json_decref(doc);
    reply_free(&r);

    snprintf(path, sizeof(path), "/api/events?since=%lld&limit=1&junk=yes",
             (long long)e1);
    assert_int_equal(sock_get(f, path, &r), 200);
    doc = json_loads(r.body, 0, NULL);
    ev = json_object_get(doc, "events");
    assert_int_equal(json_array_size(ev), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 0), "id")), e2);
    json_decref(doc);
    reply_free(&r);

    /* without since: the newest, oldest first */
    assert_int_equal(sock_get(f, "/api/events?limit=2", &r), 200);
    doc = json_loads(r.body, 0, NULL);
    ev = json_object_get(doc, "events");
    assert_int_equal(json_array_size(ev), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 0), "id")), e2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 1), "id")), e3);
    json_decref(doc);
    reply_free(&r);

    assert_int_equal(sock_get(f, "/api/events?since=abc", &r), 400);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/events?limit=0", &r), 400);
    reply_free(&r);

    assert_int_equal(sock_get(f, "/api/incidents", &r), 200);
    doc = json_loads(r.body, 0, NULL);
    ev = json_object_get(doc, "incidents");
    assert_int_equal(json_array_size(ev), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "reason")),
                        "3 failures");
    assert_true(json_is_null(json_object_get(json_array_get(ev, 0), "ended_at")));
    json_decref(doc);
    reply_free(&r);
}

static void test_socket_lifecycle(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    struct stat st;
    api_t *a;

    assert_int_equal(lstat(f->sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);

    /* a live daemon owns the socket: a second one is refused */
    a = start_api(f, NULL, NULL, err, sizeof(err));
    assert_null(a);
    assert_non_null(strstr(err, "listening"));
    assert_int_equal(lstat(f->sock, &st), 0);

    api_stop(f->api);
    f->api = NULL;
    assert_int_equal(lstat(f->sock, &st), -1);
    assert_int_equal(errno, ENOENT);

    /* a stale socket (nobody listening) is replaced */
    {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        str_copy(sun.sun_path, f->sock, sizeof(sun.sun_path));
        assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
        close(fd);
    }
    assert_int_equal(lstat(f->sock, &st), 0);
    f->api = start_api(f, NULL, NULL, err, sizeof(err));
    assert_non_null(f->api);
    {
        reply r;
        assert_int_equal(sock_get(f, "/healthz", &r), 200);
        reply_free(&r);
    }
    api_stop(f->api);
    f->api = NULL;

    /* a regular file in the way is never removed */
    {
        char plain[160];
        FILE *fp;
        snprintf(plain, sizeof(plain), "%s/plain", f->dir);
        fp = fopen(plain, "w");
        assert_non_null(fp);
        fclose(fp);
        str_copy(f->sock, plain, sizeof(f->sock));
        a = start_api(f, NULL, NULL, err, sizeof(err));
        assert_null(a);
        assert_non_null(strstr(err, "not a socket"));
        assert_int_equal(lstat(plain, &st), 0);
    }
}

static void test_bad_listen(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    const char *bad[] = { "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:80",
                          "[::1]80", "localhost:8080", ":8080", "1.2.3.4:12x" };

    api_stop(f->api);
    f->api = NULL;
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        api_t *a = start_api(f, bad[i], TOKEN, err, sizeof(err));
        assert_null(a);
        assert_non_null(strstr(err, "listen"));
        /* the failed start left no socket behind */
        struct stat st;
        assert_int_equal(lstat(f->sock, &st), -1);
    }
    /* IPv6 loopback works when the host has it */
    {
        api_t *a = NULL;
        char spec[64];
        for (int i = 0; i < 30 && a == NULL; i++) {
            int port = 20000 + rand() % 40000;
            snprintf(spec, sizeof(spec), "[::1]:%d", port);
            a = start_api(f, spec, TOKEN, err, sizeof(err));
            if (a == NULL && strstr(err, "Cannot assign") != NULL)
                break;   /* no IPv6 here */
        }
        if (a != NULL) {
            reply r;
            char url[128];
            snprintf(url, sizeof(url), "http://%s/healthz", spec);
            assert_int_equal(req("GET", url, NULL, NULL, NULL, 0, false, &r), 200);
            reply_free(&r);
            api_stop(a);
        }
    }
}


/* ---- the page, sessions, CSRF, metrics ---- */

#define PAGE_HTML "<!doctype html><title>drd</title><script src=\"app.js\"></script>"
#define PAGE_JS   "document.title = 'drd';"
#define PAGE_CSS  "body { color: black; }"

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Restart the fixture's API with these options (listeners, token, db
 * filled in) on a free port. */
static void restart_with(fixture *f, api_options o)
{
    char err[256] = "";

    api_stop(f->api);
    f->api = NULL;
    o.socket_path = f->sock;
    o.db_path = f->db;
    for (int i = 0; i < 30 && f->api == NULL; i++) {
        int port = 20000 + rand() % 40000;
        snprintf(f->listen, sizeof(f->listen), "127.0.0.1:%d", port);
        snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", port);
        o.listen = f->listen;
        f->api = api_start(&o, err, sizeof(err));
    }
    if (f->api == NULL)
        fail_msg("api_start: %s", err);
}

static void make_web_root(fixture *f, char *root, size_t n)
{
    char p[256];

    snprintf(root, n, "%s/web", f->dir);
    assert_int_equal(mkdir(root, 0755), 0);
    snprintf(p, sizeof(p), "%s/index.html", root);
    write_text(p, PAGE_HTML);
    snprintf(p, sizeof(p), "%s/app.js", root);
    write_text(p, PAGE_JS);
    snprintf(p, sizeof(p), "%s/style.css", root);
    write_text(p, PAGE_CSS);
}

/* The value of a response header (first occurrence), "" if absent. */
static const char *header_value(const reply *r, const char *name, char *out, size_t n)
{
    const char *p = r->headers;
    size_t nl = strlen(name);

    out[0] = '\0';
    while (p != NULL && *p != '\0') {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *end;
            while (*v == ' ')
                v++;
            end = strpbrk(v, "\r\n");
            snprintf(out, n, "%.*s", (int)(end != NULL ? end - v : (ptrdiff_t)strlen(v)), v);
            return out;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return out;
}

static void test_static_files(void **state)
{
    fixture *f = *state;
    char root[128], v[512], url[256], etag[64];
    reply r;

    make_web_root(f, root, sizeof(root));
    restart_with(f, (api_options){ .token = TOKEN, .web_root = root });

    /* open without a token, over TCP and the socket */
    assert_int_equal(tcp_req(f, "GET", "/", NULL, &r), 200);
    assert_string_equal(r.body, PAGE_HTML);
    assert_string_equal(header_value(&r, "Content-Type", v, sizeof(v)), "text/html; charset=utf-8");
    assert_string_equal(header_value(&r, "Cache-Control", v, sizeof(v)), "no-cache");
    header_value(&r, "Content-Security-Policy", v, sizeof(v));
    assert_non_null(strstr(v, "default-src 'self'"));
    assert_non_null(strstr(v, "script-src 'self'"));
    assert_non_null(strstr(v, "style-src 'self'"));
    assert_non_null(strstr(v, "frame-ancestors 'none'"));
    assert_non_null(strstr(v, "base-uri 'none'"));
    assert_non_null(strstr(v, "form-action 'self'"));
    assert_null(strstr(v, "unsafe-inline"));
    header_value(&r, "ETag", etag, sizeof(etag));
    assert_true(strlen(etag) > 2);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/index.html", NULL, &r), 200);
    assert_string_equal(r.body, PAGE_HTML);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/", &r), 200);
    assert_string_equal(r.body, PAGE_HTML);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/app.js", NULL, &r), 200);
    assert_string_equal(r.body, PAGE_JS);
    assert_string_equal(header_value(&r, "Content-Type", v, sizeof(v)),
                        "text/javascript; charset=utf-8");
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/style.css", NULL, &r), 200);
    assert_string_equal(r.body, PAGE_CSS);
    assert_string_equal(header_value(&r, "Content-Type", v, sizeof(v)), "text/css; charset=utf-8");
    reply_free(&r);
    /* HEAD: headers, no body */
    assert_int_equal(tcp_req(f, "HEAD", "/app.js", NULL, &r), 200);
    assert_null(r.body);
    reply_free(&r);
    /* a revalidation with the ETag */
    snprintf(v, sizeof(v), "If-None-Match: %s", etag);
    g_headers[0] = v;
    assert_int_equal(tcp_req(f, "GET", "/", NULL, &r), 304);
    g_headers[0] = NULL;
    assert_null(r.body);
    reply_free(&r);
    /* the optional icon is absent here; files are read at start: a file
     * created afterwards is not served */
    assert_int_equal(tcp_req(f, "GET", "/favicon.svg", TOKEN, &r), 404);
    reply_free(&r);
    snprintf(url, sizeof(url), "%s/favicon.svg", root);
    write_text(url, "<svg/>");
    assert_int_equal(tcp_req(f, "GET", "/favicon.svg", TOKEN, &r), 404);
    reply_free(&r);
    /* GET only */
    assert_int_equal(tcp_req(f, "POST", "/", NULL, &r), 405);
    assert_true(has_header(&r, "Allow: GET, HEAD"));
    reply_free(&r);
    assert_int_equal(tcp_req(f, "DELETE", "/app.js", NULL, &r), 405);
    reply_free(&r);

    /* nothing but the map: traversal and lookalikes are 404 (with the
     * token), never a file; without the token they are 401 */
    {
        static const char *bad[] = {
            "/..", "/../", "/../drd.db", "/%2e%2e/drd.db", "/%2e%2e%2fdrd.db", "/web/../etc/passwd",
            "//etc/passwd", "/etc/passwd", "/./index.html", "/index.html/", "/index.html/..",
            "/app.js%00", "/APP.JS", "/app.js.bak", "/.git/config", "/web/index.html",
            "/%2fetc%2fpasswd", "/..%2f..%2fetc%2fpasswd", "/index.htm", "/drd.db",
        };
        for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
            long code = tcp_req(f, "GET", bad[i], TOKEN, &r);
            if (code != 404)
                fail_msg("GET %s: %ld, expected 404", bad[i], code);
            reply_free(&r);
            code = tcp_req(f, "GET", bad[i], NULL, &r);
            if (code != 401)
                fail_msg("GET %s without a token: %ld, expected 401", bad[i], code);
            reply_free(&r);
            snprintf(url, sizeof(url), "http://localhost%s", bad[i]);
            code = req("GET", url, f->sock, NULL, NULL, 0, false, &r);
            if (code != 404)
                fail_msg("GET %s on the socket: %ld, expected 404", bad[i], code);
            reply_free(&r);
        }
    }

    /* no web_root: no page */
    restart_with(f, (api_options){ .token = TOKEN });
    assert_int_equal(tcp_req(f, "GET", "/", TOKEN, &r), 404);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/app.js", NULL, &r), 404);
    reply_free(&r);
}

typedef struct {
    char cookie[160];    /* "Cookie: drd_session=..." */
    char id[80];
    char csrf[80];
    char csrf_hdr[120];  /* "X-CSRF-Token: ..." */
    char origin[120];    /* "Origin: http://127.0.0.1:PORT" */
} login_t;

/* Log in with the token; assert success and fill l. */
static void login(fixture *f, login_t *l)
{
    char url[256], v[512], body[128];
    json_t *doc;
    const char *csrf, *p;
    reply r;

    memset(l, 0, sizeof(*l));
    snprintf(url, sizeof(url), "%s/api/login", f->base);
    snprintf(body, sizeof(body), "{\"token\":\"%s\"}", TOKEN);
    assert_int_equal(req("POST", url, NULL, NULL, body, strlen(body), false, &r), 200);
    header_value(&r, "Set-Cookie", v, sizeof(v));
    assert_true(strncmp(v, "drd_session=", 12) == 0);
    p = strchr(v, ';');
    assert_non_null(p);
    snprintf(l->id, sizeof(l->id), "%.*s", (int)(p - v - 12), v + 12);
    assert_int_equal(strlen(l->id), 64);
    assert_non_null(strstr(v, "; HttpOnly"));
    assert_non_null(strstr(v, "; SameSite=Strict"));
    assert_non_null(strstr(v, "; Path=/"));
    doc = json_loads(r.body, 0, NULL);
    assert_non_null(doc);
    csrf = json_string_value(json_object_get(doc, "csrf"));
    assert_non_null(csrf);
    assert_int_equal(strlen(csrf), 64);
    str_copy(l->csrf, csrf, sizeof(l->csrf));
    assert_true(strncmp(json_string_value(json_object_get(doc, "actor")), "session:", 8) == 0);
    assert_true(json_integer_value(json_object_get(doc, "expires_at")) > wall_ms());
    json_decref(doc);
    reply_free(&r);
    snprintf(l->cookie, sizeof(l->cookie), "Cookie: drd_session=%s", l->id);
    snprintf(l->csrf_hdr, sizeof(l->csrf_hdr), "X-CSRF-Token: %s", l->csrf);
    snprintf(l->origin, sizeof(l->origin), "Origin: %s", f->base);
}

static long login_with(fixture *f, const char *body, reply *r)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/api/login", f->base);
    return req("POST", url, NULL, NULL, body, strlen(body), false, r);
}

static void test_login_and_csrf(void **state)
{
    fixture *f = *state;
    char v[512], url[256], bad_origin[160];
    login_t l, l2;
    json_t *doc;
    command *c;
    reply r;

    api_publish_status(f->api, "{\"active\":\"primary\"}");
    /* bad logins */
    assert_int_equal(login_with(f, "{\"token\":\"nope\"}", &r), 401);
    assert_false(has_header(&r, "Set-Cookie"));
    reply_free(&r);
    assert_int_equal(login_with(f, "{\"token\":", &r), 400);
    reply_free(&r);
    assert_int_equal(login_with(f, "{\"token\":5}", &r), 400);
    reply_free(&r);
    assert_int_equal(login_with(f, "[]", &r), 400);
    reply_free(&r);
    /* a login from another origin */
    g_headers[0] = "Origin: http://evil.example";
    assert_int_equal(login_with(f, "{\"token\":\"" TOKEN "\"}", &r), 403);
    reply_free(&r);
    g_headers[0] = NULL;

    login(f, &l);
    header_value(&r, "Set-Cookie", v, sizeof(v));
    /* the cookie authenticates GETs */
    g_headers[0] = l.cookie;
    assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 200);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/session", NULL, &r), 200);
    doc = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "csrf")), l.csrf);
    json_decref(doc);
    reply_free(&r);

    /* POST with the cookie: CSRF token and origin required */
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 403);
    assert_non_null(strstr(r.body, "CSRF"));
    reply_free(&r);
    g_headers[1] = "X-CSRF-Token: 0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 403);
    reply_free(&r);
    g_headers[1] = "X-CSRF-Token: ";
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 403);
    reply_free(&r);
    g_headers[1] = l.csrf_hdr;
    g_headers[2] = "Origin: http://evil.example";
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 403);
    assert_non_null(strstr(r.body, "cross-origin"));
    reply_free(&r);
    g_headers[2] = "Origin: null";
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 403);
    reply_free(&r);
    snprintf(bad_origin, sizeof(bad_origin), "Origin: %s.evil.example", f->base);
    g_headers[2] = bad_origin;
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 403);
    reply_free(&r);
    g_headers[2] = l.origin;
    g_headers[3] = "Sec-Fetch-Site: cross-site";
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 403);
    reply_free(&r);
    g_headers[3] = "Sec-Fetch-Site: same-origin";
    assert_null(command_queue_pop(api_commands(f->api)));
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 202);
    reply_free(&r);
    c = command_queue_pop(api_commands(f->api));
    assert_non_null(c);
    assert_int_equal(c->kind, CMD_FAILOVER);
    snprintf(v, sizeof(v), "session:%.8s", l.id);
    assert_string_equal(c->actor, v);
    free(c);
    /* no Origin (not every client sends one): the CSRF token suffices */
    g_headers[2] = NULL;
    snprintf(url, sizeof(url), "%s/api/approvals/5/approve", f->base);
    assert_int_equal(req("POST", url, NULL, NULL, "{\"reason\":\"ok\"}", 15, false, &r), 202);
    reply_free(&r);
    c = command_queue_pop(api_commands(f->api));
    assert_non_null(c);
    assert_int_equal(c->kind, CMD_APPROVE);
    assert_int_equal(c->approval_id, 5);
    assert_string_equal(c->actor, v);
    free(c);

    /* a wrong bearer token is not rescued by a valid cookie */
    assert_int_equal(tcp_req(f, "GET", "/api/status", "wrong", &r), 401);
    reply_free(&r);
    /* the bearer token needs no CSRF token */
    g_headers[0] = NULL;
    g_headers[1] = NULL;
    g_headers[3] = NULL;
    assert_int_equal(tcp_req(f, "POST", "/api/failback", TOKEN, &r), 202);
    reply_free(&r);
    c = command_queue_pop(api_commands(f->api));
    assert_non_null(c);
    assert_string_equal(c->actor, "token");
    free(c);
    /* the bearer token's session view */
    assert_int_equal(tcp_req(f, "GET", "/api/session", TOKEN, &r), 200);
    doc = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "actor")), "token");
    assert_true(json_is_null(json_object_get(doc, "csrf")));
    json_decref(doc);
    reply_free(&r);
    /* a made-up or malformed cookie is nobody */
    g_headers[0] = "Cookie: drd_session=0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 401);
    reply_free(&r);
    g_headers[0] = "Cookie: drd_session=../../x";
    assert_int_equal(tcp_req(f, "GET", "/api/session", NULL, &r), 401);
    reply_free(&r);

    /* two sessions are independent */
    login(f, &l2);
    assert_string_not_equal(l.id, l2.id);
    assert_string_not_equal(l.csrf, l2.csrf);
    g_headers[0] = l2.cookie;
    g_headers[1] = l.csrf_hdr;       /* the other session's CSRF token */
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 403);
    reply_free(&r);

    /* logout: needs the CSRF token too, then the cookie is dead */
    g_headers[0] = l.cookie;
    g_headers[1] = NULL;
    assert_int_equal(tcp_req(f, "POST", "/api/logout", NULL, &r), 403);
    reply_free(&r);
    g_headers[1] = l.csrf_hdr;
    assert_int_equal(tcp_req(f, "POST", "/api/logout", NULL, &r), 200);
    header_value(&r, "Set-Cookie", v, sizeof(v));
    assert_true(strncmp(v, "drd_session=;", 13) == 0);
    assert_non_null(strstr(v, "Max-Age=0"));
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 401);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "POST", "/api/failover", NULL, &r), 401);
    reply_free(&r);
    /* the other session lives on */
    g_headers[0] = l2.cookie;
    g_headers[1] = NULL;
    assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 200);
    reply_free(&r);
    g_headers[0] = NULL;
    assert_null(command_queue_pop(api_commands(f->api)));

    /* the socket needs none of this */
    assert_int_equal(sock_post(f, "/api/failover", NULL, &r), 202);
    reply_free(&r);
    c = command_queue_pop(api_commands(f->api));
    assert_string_equal(c->actor, "socket");
    free(c);
}

static void test_login_rate_limit(void **state)
{
    fixture *f = *state;
    char v[64];
    reply r;

    api_publish_status(f->api, "{}");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(login_with(f, "{\"token\":\"guess\"}", &r), 401);
        reply_free(&r);
    }
    assert_int_equal(login_with(f, "{\"token\":\"guess\"}", &r), 429);
    header_value(&r, "Retry-After", v, sizeof(v));
    assert_true(atol(v) >= 1 && atol(v) <= 60);
    reply_free(&r);
    /* the right token is never throttled */
    assert_int_equal(login_with(f, "{\"token\":\"" TOKEN "\"}", &r), 200);
    reply_free(&r);
    /* a wrong bearer token is throttled like a wrong login, the right one is not */
    assert_int_equal(tcp_req(f, "GET", "/api/status", "guess", &r), 429);
    header_value(&r, "Retry-After", v, sizeof(v));
    assert_true(atol(v) >= 1 && atol(v) <= 60);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/status", TOKEN, &r), 200);
    reply_free(&r);
    /* an open route does not look at the bearer token */
    assert_int_equal(tcp_req(f, "GET", "/healthz", "guess", &r), 200);
    reply_free(&r);
}

static void test_session_expiry_and_bounds(void **state)
{
    fixture *f = *state;
    login_t l, first;
    char v[512];
    int64_t deadline;
    long code;
    reply r;

    restart_with(f, (api_options){ .token = TOKEN, .session_ttl_ms = 400, .secure_cookie = true });
    api_publish_status(f->api, "{}");
    login(f, &l);
    g_headers[0] = l.cookie;
    assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 200);
    reply_free(&r);
    /* absolute expiry: in use or not, the session ends after the ttl */
    deadline = mono_ms() + 5000;
    do {
        code = tcp_req(f, "GET", "/api/status", NULL, &r);
        reply_free(&r);
        if (code == 200)
            usleep(50 * 1000);
    } while (code == 200 && mono_ms() < deadline);
    assert_int_equal(code, 401);
    g_headers[0] = NULL;

    /* Secure when configured; Max-Age rounds up to a whole second */
    assert_int_equal(login_with(f, "{\"token\":\"" TOKEN "\"}", &r), 200);
    header_value(&r, "Set-Cookie", v, sizeof(v));
    assert_non_null(strstr(v, "; Secure"));
    assert_non_null(strstr(v, "Max-Age=1;"));
    reply_free(&r);

    /* the table is bounded (64): the least recently used session makes room */
    restart_with(f, (api_options){ .token = TOKEN, .web_root = NULL });
    api_publish_status(f->api, "{}");
    {
        login_t *others = calloc(64, sizeof(*others));
        assert_non_null(others);
        login(f, &first);
        for (int i = 0; i < 63; i++)
            login(f, &others[i]);          /* the table is full now */
        usleep(5 * 1000);
        g_headers[0] = first.cookie;       /* the oldest, but used */
        assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 200);
        reply_free(&r);
        usleep(5 * 1000);
        login(f, &l);                      /* one more */
        g_headers[0] = l.cookie;
        assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 200);
        reply_free(&r);
        g_headers[0] = first.cookie;
        assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 200);
        reply_free(&r);
        g_headers[0] = others[0].cookie;   /* the least recently used: gone */
        assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 401);
        reply_free(&r);
        g_headers[0] = others[1].cookie;
        assert_int_equal(tcp_req(f, "GET", "/api/status", NULL, &r), 200);
        reply_free(&r);
        g_headers[0] = NULL;
        free(others);
    }
}

static void test_metrics_access(void **state)
{
    fixture *f = *state;
    const char *text = "# HELP drd_x An example.\n# TYPE drd_x gauge\ndrd_x 1\n";
    char v[256];
    login_t l;
    reply r;
    long n1, n2;
    const char *p;

    /* before anything is published: the HTTP side's own figures */
    assert_int_equal(tcp_req(f, "GET", "/metrics", NULL, &r), 200);
    assert_string_equal(header_value(&r, "Content-Type", v, sizeof(v)),
                        "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "# TYPE drd_http_requests_total counter\n"));
    reply_free(&r);

    api_publish_metrics(f->api, text);
    assert_int_equal(tcp_req(f, "GET", "/metrics", NULL, &r), 200);
    assert_true(strncmp(r.body, text, strlen(text)) == 0);
    p = strstr(r.body, "\ndrd_http_requests_total ");
    assert_non_null(p);
    n1 = atol(p + 25);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/metrics", &r), 200);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/metrics", NULL, &r), 200);
    p = strstr(r.body, "\ndrd_http_requests_total ");
    n2 = atol(p + 25);
    assert_int_equal(n2, n1 + 2);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "POST", "/metrics", NULL, &r), 405);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "POST", "/metrics", TOKEN, &r), 405);
    reply_free(&r);

    /* [http] metrics = token: the bearer token or a session */
    restart_with(f, (api_options){ .token = TOKEN, .metrics_need_token = true });
    api_publish_metrics(f->api, text);
    assert_int_equal(tcp_req(f, "GET", "/metrics", NULL, &r), 401);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/metrics", "wrong", &r), 401);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/metrics", TOKEN, &r), 200);
    assert_non_null(strstr(r.body, "drd_x 1\n"));
    reply_free(&r);
    login(f, &l);
    g_headers[0] = l.cookie;
    assert_int_equal(tcp_req(f, "GET", "/metrics", NULL, &r), 200);
    assert_non_null(strstr(r.body, "drd_http_sessions 1\n"));
    reply_free(&r);
    g_headers[0] = NULL;
    /* the socket stays open */
    assert_int_equal(sock_get(f, "/metrics", &r), 200);
    reply_free(&r);
}

static void test_probes(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    int64_t now_min = wall_ms() / 60000;
    store_probe_minute m;
    store_t *st;
    json_t *doc, *arr;
    int64_t deadline;
    long code;
    reply r;

    st = store_open(f->db, err, sizeof(err));
    assert_non_null(st);
    memset(&m, 0, sizeof(m));
    str_copy(m.target, "primary", sizeof(m.target));
    m.minute = now_min - 100;            /* too old for the default 15 minutes */
    m.probes = 60;
    assert_true(store_probe_minute_add(st, &m));
    m.minute = now_min - 2;
    m.probes = 60;
    m.failures = 10;
    m.latency_sum_ms = 250;
    m.latency_max_ms = 20;
    assert_true(store_probe_minute_add(st, &m));
    m.minute = now_min - 1;
    m.probes = 5;
    m.failures = 5;
    m.latency_sum_ms = 0;
    m.latency_max_ms = 0;
    assert_true(store_probe_minute_add(st, &m));
    store_close(st);

    deadline = mono_ms() + 5000;
    do {
        code = sock_get(f, "/api/probes?target=primary", &r);
        if (code != 200) {
            reply_free(&r);
            usleep(100 * 1000);
        }
    } while (code != 200 && mono_ms() < deadline);
    assert_int_equal(code, 200);
    doc = json_loads(r.body, 0, NULL);
    assert_non_null(doc);
    arr = json_object_get(doc, "minutes");
    assert_int_equal(json_array_size(arr), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "at")),
                     (now_min - 2) * 60000);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "failures")), 10);
    assert_true(json_real_value(json_object_get(json_array_get(arr, 0), "latency_avg_ms")) == 5.0);
    assert_true(json_is_null(json_object_get(json_array_get(arr, 1), "latency_avg_ms")));
    json_decref(doc);
    reply_free(&r);

    assert_int_equal(sock_get(f, "/api/probes?target=primary&minutes=1000", &r), 200);
    doc = json_loads(r.body, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(doc, "minutes")), 3);
    json_decref(doc);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/probes?target=backup", &r), 200);
    assert_non_null(strstr(r.body, "\"minutes\":[]"));
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/probes", &r), 400);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/probes?target=../etc", &r), 400);
    reply_free(&r);
    assert_int_equal(sock_get(f, "/api/probes?target=primary&minutes=-1", &r), 400);
    reply_free(&r);
    assert_int_equal(tcp_req(f, "GET", "/api/probes?target=primary", NULL, &r), 401);
    reply_free(&r);
}

/* GETs keep the connection open (libmicrohttpd 0.9.75 would close it
 * after an answer queued before the end of the request). */
static void test_keepalive(void **state)
{
    fixture *f = *state;
    CURL *c = curl_easy_init();
    reply r;
    char url[256];
    long conns = -1, code = 0;

    assert_non_null(c);
    api_publish_status(f->api, "{}");
    snprintf(url, sizeof(url), "%s/api/status", f->base);
    memset(&r, 0, sizeof(r));
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, TOKEN);
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        assert_int_equal(code, 200);
        curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
        assert_int_equal(conns, i == 0 ? 1 : 0);   /* reused after the first */
    }
    free(r.body);
    curl_easy_cleanup(c);
}

/* ---- status.c: the one builder of the status document ---- */

static void test_status_json(void **state)
{
    status_snapshot s;
    json_t *doc, *t, *ap = json_pack("[{s:i}]", "id", 4), *run = json_pack("{s:i}", "id", 9);
    char *txt;

    (void)state;
    memset(&s, 0, sizeof(s));
    s.daemon_running = true;
    s.generated_at = 5000;
    str_copy(s.primary.name, "primary", sizeof(s.primary.name));
    s.primary.healthy = true;
    s.primary.reachable = true;
    s.primary.breaker = BREAKER_HALF_OPEN;
    s.primary.latency_ms = 12;
    s.primary.last_probe_at = 4000;
    s.primary.breaker_since = 3000;
    str_copy(s.backup.last_error, "refused", sizeof(s.backup.last_error));
    s.backup.breaker = BREAKER_OPEN;

    doc = status_to_json(&s);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "active")), "primary");
    assert_string_equal(json_string_value(json_object_get(doc, "daemon")), "running");
    assert_int_equal(json_integer_value(json_object_get(doc, "generated_at")), 5000);
    assert_true(json_is_null(json_object_get(doc, "started_at")));
    assert_true(json_is_null(json_object_get(doc, "run")));
    assert_int_equal(json_array_size(json_object_get(doc, "approvals")), 0);
    assert_true(json_is_array(json_object_get(doc, "approvals")));
    t = json_object_get(json_object_get(doc, "targets"), "primary");
    assert_true(json_is_true(json_object_get(t, "healthy")));
    assert_string_equal(json_string_value(json_object_get(t, "breaker")), "half_open");
    assert_int_equal(json_integer_value(json_object_get(t, "latency_ms")), 12);
    assert_true(json_is_null(json_object_get(t, "last_error")));
    assert_int_equal(json_integer_value(json_object_get(t, "last_probe_at")), 4000);
    assert_int_equal(json_integer_value(json_object_get(t, "breaker_since")), 3000);
    t = json_object_get(json_object_get(doc, "targets"), "backup");
    assert_true(json_is_false(json_object_get(t, "healthy")));
    assert_string_equal(json_string_value(json_object_get(t, "breaker")), "open");
    assert_true(json_is_null(json_object_get(t, "latency_ms")));   /* never probed */
    assert_string_equal(json_string_value(json_object_get(t, "last_error")), "refused");
    assert_true(json_is_null(json_object_get(t, "last_probe_at")));
    json_decref(doc);

    /* borrowed run/approvals; "active" kept when set */
    s.run = run;
    s.approvals = ap;
    s.daemon_running = false;
    str_copy(s.active, "backup", sizeof(s.active));
    doc = status_to_json(&s);
    txt = json_dumps(doc, JSON_COMPACT);
    assert_non_null(strstr(txt, "\"run\":{\"id\":9}"));
    assert_non_null(strstr(txt, "\"approvals\":[{\"id\":4}]"));
    assert_non_null(strstr(txt, "\"daemon\":\"not running\""));
    assert_non_null(strstr(txt, "\"active\":\"backup\""));
    /* key order as documented */
    assert_true(strstr(txt, "\"active\"") < strstr(txt, "\"daemon\""));
    assert_true(strstr(txt, "\"targets\"") < strstr(txt, "\"run\""));
    free(txt);
    json_decref(doc);
    assert_int_equal(run->refcount, 1);
    assert_int_equal(ap->refcount, 1);
    json_decref(run);
    json_decref(ap);
}

static void test_status_from_store(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    status_snapshot s;
    store_target t;
    store_t *st = store_open(f->db, err, sizeof(err));

    assert_non_null(st);
    /* empty store: never probed, active defaults to primary */
    assert_true(status_from_store(st, &s));
    assert_false(s.daemon_running);
    assert_string_equal(s.active, "primary");
    assert_false(s.primary.healthy);
    assert_int_equal(s.primary.breaker, BREAKER_CLOSED);
    assert_int_equal(s.backup.last_probe_at, 0);
    assert_int_equal(s.started_at, 0);
    assert_true(s.generated_at > 0);

    memset(&t, 0, sizeof(t));
    str_copy(t.name, "backup", sizeof(t.name));
    t.healthy = true;
    t.reachable = true;
    t.in_recovery = true;
    t.breaker = BREAKER_CLOSED;
    t.latency_ms = 7;
    t.last_probe_at = 1234;
    assert_true(store_target_put(st, &t));
    assert_true(store_kv_set(st, "active", "backup"));
    assert_true(store_kv_set(st, "started_at", "99000"));
    assert_true(status_from_store(st, &s));
    assert_string_equal(s.active, "backup");
    assert_int_equal(s.started_at, 99000);
    assert_true(s.backup.healthy);
    assert_true(s.backup.in_recovery);
    assert_int_equal(s.backup.latency_ms, 7);
    assert_string_equal(s.backup.name, "backup");
    assert_false(s.primary.healthy);

    /* junk in kv falls back to the defaults */
    assert_true(store_kv_set(st, "active", "sideways"));
    assert_true(store_kv_set(st, "started_at", "12abc"));
    assert_true(status_from_store(st, &s));
    assert_string_equal(s.active, "primary");
    assert_int_equal(s.started_at, 0);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_healthz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_without_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_bodies_and_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_listen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_and_csrf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_expiry_and_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
        cmocka_unit_test(test_status_json),
        cmocka_unit_test_setup_teardown(test_status_from_store, setup, teardown),
    };
    int rc;

    log_set_level(getenv("TEST_VERBOSE") != NULL ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
