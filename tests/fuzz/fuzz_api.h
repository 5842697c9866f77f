/* fuzz_api.h - the real HTTP server (api.c on libmicrohttpd, its own
 * thread) started once per fuzzing process: a unix socket and a loopback
 * TCP listener with a token, over a SQLite state that holds a few events,
 * an incident, a run with its steps, a refresh and a drill, and a
 * published status and metrics text. fuzz_api_send() writes raw bytes to
 * one of the listeners, closes the writing half and reads the reply to
 * the end; a server that does not answer within 5 s is a finding (a
 * hang). Queued commands are drained after each input. */
#ifndef DRD_FUZZ_API_H
#define DRD_FUZZ_API_H

#include "fuzz.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <jansson.h>

#include "drd/http/api.h"
#include "drd/engine/status.h"
#include "drd/store/store.h"

#define FUZZ_TOKEN "fuzz-token-0123456789abcdefghijklmnopqrstuvwxyz"
#define FUZZ_REPLY_MAX (4 * 1024 * 1024)

static api_t *fuzz_api;
static char fuzz_sock[128];
static int fuzz_port;

static inline void fuzz_api_seed_store(const char *db)
{
    char err[256];
    store_t *st = store_open(db, err, sizeof err);
    int64_t now = wall_ms();

    if (st == NULL) {
        fprintf(stderr, "store_open: %s\n", err);
        abort();
    }
    store_event_add(st, now - 3000, "daemon", "", "started");
    store_event_add(st, now - 2000, "breaker", "primary", "closed -> open: connection refused");
    store_event_add(st, now - 1000, "incident", "primary", "caf\xc3\xa9 outage");
    store_incident_open(st, "primary", now - 1500, "3 failed probes");

    static const char *const names[] = { "check-backup", "switch-env" };
    static const char *const actions[] = { "wait-healthy", "switch-env" };
    static const char *const params[] = { "{\"name\":\"check-backup\",\"action\":\"wait-healthy\"}",
                                          "{\"name\":\"switch-env\",\"action\":\"switch-env\"}" };
    store_run run = { 0 };
    str_copy(run.kind, "failover", sizeof run.kind);
    str_copy(run.reason, "primary down", sizeof run.reason);
    str_copy(run.started_by, "socket", sizeof run.started_by);
    str_copy(run.runbook, "runbooks/failover.ini", sizeof run.runbook);
    run.created_at = now - 900;
    run.current_step = -1;
    int64_t id = store_run_create(st, &run, names, actions, params, 2);
    if (id > 0)
        store_run_update(st, id, "failed", 1, "switch-env: permission denied", now - 100);

    store_refresh r = { 0 };
    str_copy(r.mode, "dump", sizeof r.mode);
    str_copy(r.trigger, "manual", sizeof r.trigger);
    str_copy(r.state, "succeeded", sizeof r.state);
    r.started_at = now - 5000;
    r.finished_at = now - 4000;
    store_refresh_add(st, &r);

    store_drill d = { .started_at = now - 9000, .ended_at = now - 8000,
                      .report = "{\"result\":\"succeeded\",\"rto_ms\":1234}" };
    str_copy(d.result, "succeeded", sizeof d.result);
    store_drill_add(st, &d);

    store_probe_minute m = { .minute = now / 60000, .probes = 60, .failures = 2,
                             .latency_sum_ms = 120, .latency_max_ms = 9 };
    str_copy(m.target, "primary", sizeof m.target);
    store_probe_minute_add(st, &m);

    status_snapshot snap;
    if (status_from_store(st, &snap)) {
        json_t *doc = status_to_json(&snap);
        char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
        if (text != NULL)
            api_publish_status(fuzz_api, text);
        free(text);
        json_decref(doc);
    }
    store_close(st);
}

static inline void fuzz_api_start(void)
{
    char db[128], listen[64], err[256] = "";
    const char *web = access("web/index.html", R_OK) == 0 ? "web" : NULL;

    fuzz_quiet();
    fuzz_path(fuzz_sock, sizeof fuzz_sock, "drd.sock");
    fuzz_path(db, sizeof db, "drd.db");
    {
        /* the schema must exist before the HTTP thread opens it read-only */
        store_t *st = store_open(db, err, sizeof err);
        if (st == NULL) {
            fprintf(stderr, "store_open: %s\n", err);
            abort();
        }
        store_close(st);
    }
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    for (int i = 0; i < 50 && fuzz_api == NULL; i++) {
        fuzz_port = 20000 + rand() % 40000;
        snprintf(listen, sizeof listen, "127.0.0.1:%d", fuzz_port);
        api_options o = {
            .listen = listen, .socket_path = fuzz_sock, .token = FUZZ_TOKEN,
            .db_path = db, .web_root = web, .session_ttl_ms = 3600 * 1000,
            .metrics_need_token = true,
        };
        fuzz_api = api_start(&o, err, sizeof err);
    }
    if (fuzz_api == NULL) {
        fprintf(stderr, "api_start: %s\n", err);
        abort();
    }
    fuzz_api_seed_store(db);
    api_publish_metrics(fuzz_api, "# TYPE drd_up gauge\ndrd_up 1\n");
}

/* How long a reply may take: 5 s (FUZZ_DEADLINE_MS to study one input). */
static inline long fuzz_deadline_ms(void)
{
    const char *e = getenv("FUZZ_DEADLINE_MS");
    return e != NULL ? strtol(e, NULL, 10) : 5000;
}

static inline int fuzz_api_connect(bool tcp)
{
    int fd;

    if (tcp) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)fuzz_port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(fd);
            fd = -1;
        }
    } else {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        str_copy(sa.sun_path, fuzz_sock, sizeof sa.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        fuzz_fail("cannot connect to the server (%s): %s", tcp ? "tcp" : "unix", strerror(errno));
    return fd;
}

/* Send req, read the reply into a malloc'd NUL-terminated buffer
 * (*reply_len bytes) until the server closes, or until 30 ms pass without
 * a byte after some answer (libmicrohttpd may keep a keep-alive connection
 * open after its answer although the client shut its side), or, with
 * may_stall, until 40 ms pass after the request without any answer
 * (*stalled then tells): libmicrohttpd 0.9.75 does not notice the end of
 * the input while it waits for more header lines ("GET / HTTP/1.1\r\n"
 * and a half-close hold the connection until its idle timeout, 10 s), and
 * a fuzzed request is mostly incomplete. Otherwise no answer within the deadline is a
 * finding. The server may close early: a failed send is not a finding. */
static inline char *fuzz_api_exchange(bool tcp, const void *req, size_t len, bool may_stall,
                                      size_t *reply_len, bool *stalled)
{
    int fd = fuzz_api_connect(tcp);
    size_t off = 0, cap = 65536, got = 0;
    long last_ms = 0, deadline = fuzz_deadline_ms();
    char *buf = malloc(cap + 1);
    struct timespec t0, now;

    if (buf == NULL)
        abort();
    *stalled = false;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct pollfd p = { fd, (short)(POLLIN | (off < len ? POLLOUT : 0)), 0 };
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (off == len && ((got > 0 && ms - last_ms > 30) || (may_stall && ms - last_ms > 40))) {
            *stalled = got == 0;
            break;
        }
        if (ms > deadline) {
            buf[got] = '\0';
            fuzz_fail("the server neither answered nor closed within %ld ms (%zu of %zu bytes sent, "
                      "%zu received: \"%.300s\")", deadline, off, len, got, buf);
        }
        int rc = poll(&p, 1, 10);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            fuzz_fail("poll: %s", strerror(errno));
        if (off < len && (p.revents & POLLOUT)) {
            ssize_t w = send(fd, (const char *)req + off, len - off, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                off = len;                  /* the server closed: read what it said */
            else if (w > 0)
                off += (size_t)w;
            if (off == len) {
                shutdown(fd, SHUT_WR);
                last_ms = ms;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (got == cap) {
                if (cap >= FUZZ_REPLY_MAX)
                    fuzz_fail("a reply larger than %d bytes", FUZZ_REPLY_MAX);
                cap *= 2;
                char *nb = realloc(buf, cap + 1);
                if (nb == NULL)
                    abort();
                buf = nb;
            }
            ssize_t r = recv(fd, buf + got, cap - got, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0)
                break;                      /* EOF, or a reset after an early close */
            got += (size_t)r;
            last_ms = ms;
        }
    }
    close(fd);
    buf[got] = '\0';
    *reply_len = got;
    return buf;
}

/* Any bytes: when they leave their connection without an answer, the
 * server must still answer everyone else (GET /healthz, within the
 * deadline). */
static inline char *fuzz_api_send_raw(bool tcp, const void *req, size_t len, size_t *reply_len)
{
    static const char probe[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    bool stalled;
    char *reply = fuzz_api_exchange(tcp, req, len, true, reply_len, &stalled);

    if (stalled) {
        size_t n;
        char *ok = fuzz_api_exchange(false, probe, sizeof probe - 1, false, &n, &stalled);
        if (n < 12 || memcmp(ok, "HTTP/1.1 200", 12) != 0)
            fuzz_fail("after a stalled request /healthz answers \"%.100s\"", ok);
        free(ok);
    }
    return reply;
}

/* A well-formed request: it must be answered. */
static inline char *fuzz_api_send(bool tcp, const void *req, size_t len, size_t *reply_len)
{
    bool stalled;
    return fuzz_api_exchange(tcp, req, len, false, reply_len, &stalled);
}

/* The first response of a reply: its status (0 if the reply is empty) and,
 * when it has a JSON body, that body must be valid JSON (an answer to HEAD,
 * head == true, has none: the next bytes are the next response). */
static inline int fuzz_api_check_reply(const char *reply, size_t len, bool head, json_t **body)
{
    const char *end, *p;
    int status = 0;
    long long clen = -1;
    bool is_json = false;

    if (body != NULL)
        *body = NULL;
    if (len == 0)
        return 0;
    if (len < 12 || memcmp(reply, "HTTP/1.", 7) != 0 || sscanf(reply + 9, "%3d", &status) != 1)
        fuzz_fail("not an HTTP response: \"%.60s\"", reply);
    end = memmem(reply, len, "\r\n\r\n", 4);
    if (end == NULL)
        fuzz_fail("a response without the end of its headers");
    for (p = reply; p < end; p = memchr(p, '\n', (size_t)(end - p)) + 1) {
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            clen = strtoll(p + 15, NULL, 10);
        else if (strncasecmp(p, "Content-Type: application/json", 30) == 0)
            is_json = true;
        if (memchr(p, '\n', (size_t)(end - p)) == NULL)
            break;
    }
    const char *b = end + 4;
    size_t avail = len - (size_t)(b - reply);
    if (is_json && !head && clen > 0 && (size_t)clen <= avail) {
        json_error_t jerr;
        json_t *doc = json_loadb(b, (size_t)clen, 0, &jerr);
        if (doc == NULL)
            fuzz_fail("status %d: a JSON body that is not JSON (%s): \"%.*s\"", status,
                      jerr.text, (int)(clen < 200 ? clen : 200), b);
        if (body != NULL)
            *body = doc;
        else
            json_decref(doc);
    }
    return status;
}

static inline void fuzz_api_drain(void)
{
    command *c;

    while ((c = command_queue_pop(api_commands(fuzz_api))) != NULL)
        command_free(c);
}

#endif
