/* probe.c - one non-blocking PostgreSQL probe of one target.
 *
 * A probe is a small state machine driven by the loop:
 *
 *   IDLE --start--> CONNECTING --PQconnectPoll OK--> FLUSHING --> READING
 *     ^                 |                               |            |
 *     +---- report <----+-------- failure / deadline ---+------------+
 *
 * CONNECTING  PQconnectPoll() is called whenever the socket is ready in the
 *             direction it asked for (POLLIN for PGRES_POLLING_READING,
 *             POLLOUT for PGRES_POLLING_WRITING).
 * FLUSHING    the query is queued (PQsendQuery) and PQflush() returned 1:
 *             wait for POLLOUT and flush again.
 * READING     wait for POLLIN, PQconsumeInput(), and collect results while
 *             PQisBusy() is false, until PQgetResult() returns NULL.
 * REPORTING   the outcome is known but the callback must not run from
 *             inside probe_start(): a 0 ms timer delivers it.
 *
 * A hard deadline timer, armed by probe_start(), closes the connection
 * (PQfinish) and fails the probe with "timeout after Nms" whatever the
 * phase.  libpq 15 has no asynchronous cancel, so closing is the only way
 * out; PQfinish() does not block here because it only sends a Terminate
 * message on a connection that is CONNECTION_OK, and by then the
 * connection has been put in non-blocking mode (PQsetnonblocking), so the
 * flush gives up instead of waiting for a full send buffer.
 *
 * Known limitation: PQconnectStartParams() resolves host names with a
 * blocking getaddrinfo() before it returns, so a slow DNS server stalls the
 * loop.  Using hostaddr= (or an IP address as host) avoids it.
 *
 * The completion callback is always the last thing a probe function does
 * with the probe, so the callback may start the next probe or free this
 * one (probe_free() from inside the callback is allowed).
 */
#include "drd/probe.h"

#include <inttypes.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "drd/log.h"
#include "drd/pgconn.h"
#include "drd/util.h"

#define PROBE_QUERY "SELECT pg_is_in_recovery(), current_setting('server_version')"

typedef enum {
    PHASE_IDLE,
    PHASE_CONNECTING,
    PHASE_FLUSHING,
    PHASE_READING,
    PHASE_REPORTING,
} probe_phase;

struct probe {
    loop_t *loop;
    char *name;
    char *url;
    char *password;          /* NULL: libpq finds it (URL, PGPASSFILE, ...) */
    int64_t timeout_ms;
    probe_done_cb cb;
    void *arg;

    probe_phase phase;
    PGconn *conn;
    pgconn_watch watch;      /* the loop watcher on the connection's socket */
    uint64_t deadline_timer;
    uint64_t report_timer;
    bool have_row;           /* a result row was read */
    probe_result result;
};

static void on_socket(loop_t *loop, int fd, short revents, void *arg);

/* ---- helpers --------------------------------------------------------- */

static void free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* libpq messages are multi-line ("...failed: Connection refused\n\tIs the
 * server running..."): one line, secrets masked (pgconn.c). */
static void set_error_text(probe_t *p, const char *msg)
{
    pgconn_error_text(msg, p->result.error, sizeof(p->result.error));
}

static void set_error_fmt(probe_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error_fmt(probe_t *p, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    set_error_text(p, buf);
}

/* Stop watching the socket and close the connection (if any). */
static void close_conn(probe_t *p)
{
    pgconn_unwatch(&p->watch);
    if (p->conn != NULL) {
        PQfinish(p->conn);
        p->conn = NULL;
    }
}

/* Release everything held by the in-flight probe and deliver the result.
 * The callback is the last use of p: it may free p or start again. */
static void finish(probe_t *p, bool ok)
{
    close_conn(p);
    loop_cancel_timer(p->loop, p->deadline_timer);
    loop_cancel_timer(p->loop, p->report_timer);
    p->deadline_timer = p->report_timer = 0;
    p->phase = PHASE_IDLE;

    probe_result r = p->result;
    r.ok = ok;
    if (ok)
        r.error[0] = '\0';
    else
        r.in_recovery = false;
    r.latency_ms = loop_now(p->loop) - r.started_mono;
    if (ok)
        log_debug("probe %s: ok in %" PRId64 "ms (in_recovery=%d, version %s)",
                  p->name, r.latency_ms, r.in_recovery, r.server_version);
    else
        log_debug("probe %s: failed in %" PRId64 "ms: %s", p->name, r.latency_ms, r.error);
    probe_done_cb cb = p->cb;
    void *arg = p->arg;
    cb(arg, &r);
}

static void fail_with_conn_error(probe_t *p)
{
    set_error_text(p, p->conn ? PQerrorMessage(p->conn) : "out of memory");
    finish(p, false);
}

/* Watch libpq's socket for events.  The socket can change between
 * PQconnectPoll() calls, so the registration follows PQsocket(). */
static bool watch_socket(probe_t *p, short events)
{
    return pgconn_watch_socket(&p->watch, p->conn, events, on_socket, p,
                               p->result.error, sizeof(p->result.error));
}

/* ---- query phase ----------------------------------------------------- */

static void flush_query(probe_t *p)
{
    int r = PQflush(p->conn);
    if (r < 0) {
        fail_with_conn_error(p);
        return;
    }
    p->phase = r == 1 ? PHASE_FLUSHING : PHASE_READING;
    if (!watch_socket(p, r == 1 ? POLLOUT : POLLIN))
        finish(p, false);
}

static void send_query(probe_t *p)
{
    if (PQsetnonblocking(p->conn, 1) != 0 || !PQsendQuery(p->conn, PROBE_QUERY)) {
        fail_with_conn_error(p);
        return;
    }
    flush_query(p);
}

static void take_result(probe_t *p, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) >= 2) {
        const char *rec = PQgetvalue(res, 0, 0);
        p->result.in_recovery = rec != NULL && rec[0] == 't';
        /* "15.18 (Debian 15.18-0+deb12u1)" -> "15.18" */
        const char *ver = PQgetvalue(res, 0, 1);
        size_t vlen = strcspn(ver, " ");
        if (vlen >= sizeof(p->result.server_version))
            vlen = sizeof(p->result.server_version) - 1;
        memcpy(p->result.server_version, ver, vlen);
        p->result.server_version[vlen] = '\0';
        p->have_row = true;
    } else if (p->result.error[0] == '\0') {
        const char *msg = PQresultErrorMessage(res);
        if (msg != NULL && msg[0] != '\0')
            set_error_text(p, msg);
        else
            set_error_fmt(p, "unexpected query result: %s", PQresStatus(st));
    }
}

static void read_results(probe_t *p)
{
    if (!PQconsumeInput(p->conn)) {
        fail_with_conn_error(p);
        return;
    }
    while (!PQisBusy(p->conn)) {
        PGresult *res = PQgetResult(p->conn);
        if (res == NULL) {
            bool ok = p->have_row && p->result.error[0] == '\0';
            if (!ok && p->result.error[0] == '\0')
                set_error_fmt(p, "query returned no row");
            finish(p, ok);
            return;
        }
        take_result(p, res);
        PQclear(res);
    }
    /* Still busy: keep waiting for POLLIN. */
}

/* ---- connect phase --------------------------------------------------- */

static void connect_step(probe_t *p)
{
    switch (PQconnectPoll(p->conn)) {
    case PGRES_POLLING_OK:
        send_query(p);
        return;
    case PGRES_POLLING_READING:
        if (!watch_socket(p, POLLIN))
            finish(p, false);
        return;
    case PGRES_POLLING_WRITING:
        if (!watch_socket(p, POLLOUT))
            finish(p, false);
        return;
    case PGRES_POLLING_FAILED:
    default:
        fail_with_conn_error(p);
        return;
    }
}

static void on_socket(loop_t *loop, int fd, short revents, void *arg)
{
    probe_t *p = arg;
    (void)loop;
    (void)fd;
    switch (p->phase) {
    case PHASE_CONNECTING:
        /* POLLERR/POLLHUP too: PQconnectPoll finds out what happened. */
        connect_step(p);
        break;
    case PHASE_FLUSHING:
        /* libpq docs: if the socket is read-ready while flushing, consume
         * input first (the server may be sending errors/notices). */
        if ((revents & POLLIN) && !PQconsumeInput(p->conn)) {
            fail_with_conn_error(p);
            break;
        }
        flush_query(p);
        break;
    case PHASE_READING:
        read_results(p);
        break;
    default:
        /* Not expected: the watcher is removed whenever the phase ends. */
        log_error("probe %s: socket event in phase %d", p->name, (int)p->phase);
        close_conn(p);
        break;
    }
}

/* ---- timers ---------------------------------------------------------- */

static void on_deadline(loop_t *loop, void *arg)
{
    probe_t *p = arg;
    (void)loop;
    p->deadline_timer = 0;
    const char *what = p->phase == PHASE_CONNECTING ? "while connecting"
                                                    : "waiting for the query result";
    set_error_fmt(p, "timeout after %" PRId64 "ms %s", p->timeout_ms, what);
    finish(p, false);
}

static void on_report(loop_t *loop, void *arg)
{
    probe_t *p = arg;
    (void)loop;
    p->report_timer = 0;
    finish(p, false);
}

/* ---- public ---------------------------------------------------------- */

probe_t *probe_new(loop_t *loop, const char *name, const char *url,
                   const char *password, int64_t timeout_ms,
                   probe_done_cb cb, void *arg)
{
    if (loop == NULL || cb == NULL) {
        log_error("probe: missing loop or callback");
        return NULL;
    }
    probe_t *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(name ? name : "target")) == NULL) {
        log_error("probe: out of memory");
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->cb = cb;
    p->arg = arg;
    pgconn_watch_init(&p->watch, loop);
    if (!probe_configure(p, url, password, timeout_ms)) {
        probe_free(p);
        return NULL;
    }
    return p;
}

bool probe_configure(probe_t *p, const char *url, const char *password, int64_t timeout_ms)
{
    if (url == NULL || url[0] == '\0') {
        log_error("probe %s: empty url", p->name);
        return false;
    }
    if (timeout_ms <= 0) {
        log_error("probe %s: timeout must be positive", p->name);
        return false;
    }
    char *u = strdup(url);
    char *pw = password ? strdup(password) : NULL;
    if (u == NULL || (password != NULL && pw == NULL)) {
        log_error("probe %s: out of memory", p->name);
        free_secret(u);
        free_secret(pw);
        return false;
    }
    free_secret(p->url);
    free_secret(p->password);
    p->url = u;
    p->password = pw;
    p->timeout_ms = timeout_ms;
    return true;
}

bool probe_start(probe_t *p)
{
    if (p->phase != PHASE_IDLE)
        return false;

    memset(&p->result, 0, sizeof(p->result));
    p->result.started_mono = loop_now(p->loop);
    p->have_row = false;

    /* Blocks on DNS for host names (see the top of this file). */
    p->conn = pgconn_start(p->url, p->password, p->timeout_ms, "drd-probe",
                           p->result.error, sizeof(p->result.error));

    if (p->conn != NULL) {
        p->deadline_timer = loop_add_timer(p->loop, p->timeout_ms, on_deadline, p);
        if (p->deadline_timer == 0) {
            close_conn(p);
            return false;           /* logged by the loop */
        }
        p->phase = PHASE_CONNECTING;
        /* Before the first PQconnectPoll() call, act as if it had
         * returned PGRES_POLLING_WRITING. */
        if (watch_socket(p, POLLOUT))
            return true;
        /* fall through: report the failure from the loop */
    }

    /* Immediate failure: deliver it from the loop, never from here. */
    close_conn(p);
    loop_cancel_timer(p->loop, p->deadline_timer);
    p->deadline_timer = 0;
    p->report_timer = loop_add_timer(p->loop, 0, on_report, p);
    if (p->report_timer == 0) {
        p->phase = PHASE_IDLE;
        return false;               /* logged by the loop */
    }
    p->phase = PHASE_REPORTING;
    return true;
}

bool probe_busy(const probe_t *p)
{
    return p != NULL && p->phase != PHASE_IDLE;
}

void probe_free(probe_t *p)
{
    if (p == NULL)
        return;
    close_conn(p);
    loop_cancel_timer(p->loop, p->deadline_timer);
    loop_cancel_timer(p->loop, p->report_timer);
    free(p->name);
    free_secret(p->url);
    free_secret(p->password);
    free(p);
}
