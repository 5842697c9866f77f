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

#include "drd/api.h"
#include "drd/log.h"
#include "drd/status.h"
#include "drd/store.h"
#include "drd/util.h"

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
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if (g_extra_header != NULL)
        h = curl_slist_append(h, g_extra_header);
    if (h != NULL)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else
        r->status = -(long)rc;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);

    /* Every answer is JSON, not cached, not sniffed. */
    if (r->status > 0) {
        assert_true(has_header(r, "Content-Type: application/json"));
        assert_true(has_header(r, "Cache-Control: no-store"));
        assert_true(has_header(r, "X-Content-Type-Options: nosniff"));
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
                                   "drd.db-shm", "drd.db-journal", "plain" };
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
    assert_null(api_cmd_pop(f->api));
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
    int fd = api_cmd_fd(f->api);
    json_t *doc;
    int64_t id1, id2;
    api_cmd *c;
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
    c = api_cmd_pop(f->api);
    assert_non_null(c);
    assert_int_equal(c->kind, API_CMD_FAILOVER);
    assert_int_equal(c->request_id, id1);
    assert_string_equal(c->reason, "");
    assert_string_equal(c->actor, "socket");
    free(c);
    assert_null(api_cmd_pop(f->api));
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
    c = api_cmd_pop(f->api);
    assert_non_null(c);
    assert_int_equal(c->kind, API_CMD_FAILBACK);
    assert_string_equal(c->reason, "primary is back");
    assert_true(c->request_id > id1);
    free(c);
    assert_true(fd_readable(fd, 0));
    c = api_cmd_pop(f->api);
    assert_non_null(c);
    assert_int_equal(c->kind, API_CMD_REJECT);
    assert_int_equal(c->approval_id, 42);
    assert_int_equal(c->request_id, id2);
    assert_string_equal(c->reason, "no");
    assert_string_equal(c->actor, "token");
    free(c);
    assert_null(api_cmd_pop(f->api));
    assert_false(fd_readable(fd, 0));

    assert_int_equal(sock_post(f, "/api/approvals/7/approve", "", &r), 202);
    reply_free(&r);
    c = api_cmd_pop(f->api);
    assert_non_null(c);
    assert_int_equal(c->kind, API_CMD_APPROVE);
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
    free(api_cmd_pop(f->api));
    assert_null(api_cmd_pop(f->api));
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
    assert_null(api_cmd_pop(f->api));
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
