/* pgexec.c - run a short list of SQL statements on a PostgreSQL target
 * without blocking the loop.
 *
 * One pgexec is a small state machine driven by the loop:
 *
 *   CONNECTING --CONNECTION_OK--> [SETUP] --> SENDING <--> READING --> DONE
 *        |                                       ^            |
 *        |                                       +-- next ----+
 *        +------------- failure / deadline -------------------------> DONE
 *
 * CONNECTING  PQconnectPoll() whenever the socket is ready in the direction
 *             it asked for (the connect helpers are shared with probe.c, in
 *             pgconn.c).  Once CONNECTION_OK the connection is put in
 *             non-blocking mode before anything else is sent.
 * SETUP       (PostgreSQL >= 14) "SET client_connection_check_interval":
 *             when we give up at the deadline and close the connection, the
 *             server then notices within a second and aborts the statement
 *             it was running, instead of finishing it (and holding its
 *             locks) until it next talks to us.  Its failure is ignored.
 * SENDING     the statement is queued (PQsendQuery) and PQflush() returned
 *             1: wait until the socket is writable (or readable: consume
 *             input first, as libpq asks) and flush again.
 * READING     on POLLIN, PQconsumeInput() and take results while PQisBusy()
 *             is false; PQgetResult() == NULL ends the statement and the
 *             next one is sent.  A result other than COMMAND_OK/TUPLES_OK
 *             ends the whole run with the server's message.
 * REPORTING   an immediate failure inside pgexec_start() is delivered by a
 *             0 ms timer: the callback never runs from inside start.
 *
 * One hard deadline timer covers all of it.  At the deadline the
 * connection is closed (libpq 15 has no asynchronous cancel) and the run
 * fails with "timeout after N ms while connecting / running statement K".
 * A statement interrupted that way may or may not have taken effect.
 * PQfinish() does not block: on a connection that is CONNECTION_OK it only
 * sends a Terminate message, and by then the connection is non-blocking.
 *
 * The callback is the last thing done with the pgexec, so it may call
 * pgexec_free().
 */
#include "drd/pg/pgexec.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <sys/socket.h>

#include <libpq-fe.h>

#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/core/util.h"

#define PGEXEC_APP_NAME "drd"   /* the fence spares sessions named 'drd' and 'drd-probe' */
#define PGEXEC_SETUP_SQL "SET client_connection_check_interval = 1000"
#define PGEXEC_SETUP_MIN_VERSION 140000

typedef enum {
    PHASE_CONNECTING,
    PHASE_SENDING,
    PHASE_READING,
    PHASE_REPORTING,
    PHASE_DONE,
} pgexec_phase;

struct pgexec {
    loop_t *loop;
    char *url;
    char *password;          /* NULL: libpq finds it (URL, PGPASSFILE, ...) */
    char **stmts;
    size_t n;
    int64_t timeout_ms;
    pgexec_cb cb;
    void *arg;

    pgexec_phase phase;
    PGconn *conn;
    pgconn_watch watch;
    uint64_t deadline_timer;
    uint64_t report_timer;
    int64_t started;
    bool setup;              /* the setup statement is running */
    size_t cur;              /* index of the statement being run */
    unsigned flags;          /* PGEXEC_* */
    PGresult *rows;          /* PGEXEC_KEEP_ROWS: the last result with rows */
    int64_t est_in;          /* result sizes + protocol overhead, bytes */
    pgexec_result result;
};

static void on_socket(loop_t *loop, int fd, short revents, void *arg);

/* ---- helpers --------------------------------------------------------- */

static void set_error_text(pgexec_t *p, const char *msg)
{
    pgconn_error_text(msg, p->result.error, sizeof(p->result.error));
}

static void set_error_fmt(pgexec_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error_fmt(pgexec_t *p, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    set_error_text(p, buf);
}

/* Server notices (e.g. "relation ... already exists, skipping") would go
 * to stderr with libpq's default processor: log them instead. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    char line[512];
    pgconn_error_text(message, line, sizeof(line));
    log_debug("pgexec: server notice: %s", line);
}

/* Bytes the server sent on this connection: TCP_INFO's count (exact, TLS
 * included) when the socket is TCP, else -1. */
static int64_t socket_bytes_in(PGconn *conn)
{
    int fd = PQsocket(conn);
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
        return -1;
    return (int64_t)ti.tcpi_bytes_received;
}

/* A result's size on the wire, estimated: each DataRow is a 5-byte
 * header, a 2-byte column count and 4 bytes of length per value, then the
 * values; the RowDescription about 30 bytes a column; CommandComplete and
 * ReadyForQuery about 20. */
static int64_t result_wire_size(const PGresult *res)
{
    int rows = PQntuples(res), cols = PQnfields(res);
    int64_t n = 20 + (int64_t)cols * 30;
    for (int r = 0; r < rows; r++) {
        n += 7 + (int64_t)cols * 4;
        for (int c = 0; c < cols; c++)
            n += PQgetlength(res, r, c);
    }
    return n;
}

static void close_conn(pgexec_t *p)
{
    pgconn_unwatch(&p->watch);
    if (p->conn != NULL && p->result.connected) {
        int64_t tcp = socket_bytes_in(p->conn);
        /* the start-up exchange (authentication, parameters, key): ~400 bytes */
        p->result.bytes_in = tcp >= 0 ? tcp : p->est_in + 400;
    }
    if (p->conn != NULL) {
        PQfinish(p->conn);
        p->conn = NULL;
    }
}

/* Release the connection and the timers, then deliver the result.  The
 * callback is the last use of p: it may free it. */
static void finish(pgexec_t *p, bool ok)
{
    close_conn(p);
    loop_cancel_timer(p->loop, p->deadline_timer);
    loop_cancel_timer(p->loop, p->report_timer);
    p->deadline_timer = p->report_timer = 0;
    p->phase = PHASE_DONE;

    pgexec_result r = p->result;
    r.ok = ok;
    if (ok) {
        r.error[0] = '\0';
        r.failed_index = -1;
    } else {
        r.last_value[0] = '\0';
        r.last_rows = 0;
        if (r.error[0] == '\0')
            str_copy(r.error, "unknown error", sizeof(r.error));
    }
    r.duration_ms = loop_now(p->loop) - p->started;
    r.rows = ok ? p->rows : NULL;
    if (ok)
        log_debug("pgexec: %zu statement(s) ok in %" PRId64 " ms", p->n, r.duration_ms);
    else if (r.failed_index >= 0)
        log_debug("pgexec: statement %d failed after %" PRId64 " ms: %s",
                  r.failed_index, r.duration_ms, r.error);
    else
        log_debug("pgexec: failed after %" PRId64 " ms: %s", r.duration_ms, r.error);
    pgexec_cb cb = p->cb;
    void *arg = p->arg;
    cb(arg, &r);      /* last use of p: the callback may free it (and p->rows) */
}

/* Failure reported by libpq on the connection (lost, refused, ...). */
static void fail_with_conn_error(pgexec_t *p)
{
    set_error_text(p, p->conn ? PQerrorMessage(p->conn) : "out of memory");
    finish(p, false);
}

static bool watch_socket(pgexec_t *p, short events)
{
    return pgconn_watch_socket(&p->watch, p->conn, events, on_socket, p,
                               p->result.error, sizeof(p->result.error));
}

/* ---- statements ------------------------------------------------------ */

static void flush_out(pgexec_t *p)
{
    int r = PQflush(p->conn);
    if (r < 0) {
        fail_with_conn_error(p);
        return;
    }
    /* libpq: while PQflush() returns 1, wait for read- or write-ready. */
    p->phase = r == 1 ? PHASE_SENDING : PHASE_READING;
    if (!watch_socket(p, r == 1 ? (POLLIN | POLLOUT) : POLLIN))
        finish(p, false);
}

static void send_sql(pgexec_t *p, const char *sql)
{
    if (!PQsendQuery(p->conn, sql)) {
        fail_with_conn_error(p);
        return;
    }
    flush_out(p);
}

/* Run statement i, or report success when there is none left. */
static void run_statement(pgexec_t *p, size_t i)
{
    p->cur = i;
    if (i >= p->n) {
        finish(p, true);
        return;
    }
    p->result.failed_index = (int)i;    /* if anything fails from now on */
    send_sql(p, p->stmts[i]);
}

/* Statement p->cur (or the setup) has all its results: go on. */
static void next_statement(pgexec_t *p)
{
    if (p->setup) {
        p->setup = false;
        run_statement(p, 0);
    } else {
        run_statement(p, p->cur + 1);
    }
}

/* The server's message for a failed statement: "ERROR:  primary message"
 * and its DETAIL, if any.  Not PQresultErrorMessage(): for a syntax error
 * it quotes the statement text ("LINE 1: ALTER ROLE x PASSWORD '...'"),
 * which may hold a secret that mask_secrets() cannot recognise.  For the
 * same reason the token a syntax error quotes ('at or near "..."') is
 * hidden. */
static void set_result_error(pgexec_t *p, const PGresult *res)
{
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    if (primary == NULL) {
        /* Made by libpq itself (e.g. the connection was lost). */
        const char *msg = PQresultErrorMessage(res);
        if (msg != NULL && msg[0] != '\0')
            set_error_text(p, msg);
        else
            set_error_fmt(p, "unexpected result status %s",
                          PQresStatus(PQresultStatus(res)));
        return;
    }
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s:  %s%s%s", severity ? severity : "ERROR", primary,
             detail ? "\nDETAIL:  " : "", detail ? detail : "");
    set_error_text(p, msg);
    if (str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42601"))   /* syntax_error */
        pgconn_hide_quoted(p->result.error, sizeof(p->result.error));
}

static long cmd_tuples(PGresult *res)
{
    const char *s = PQcmdTuples(res);
    if (s == NULL || *s == '\0')
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0)
        return 0;
    return v;
}

/* Take one result of the running statement.  False when it failed (the
 * error is set). */
static bool take_result(pgexec_t *p, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (p->setup) {
        if (st != PGRES_COMMAND_OK) {
            char msg[256];
            pgconn_error_text(PQresultErrorMessage(res), msg, sizeof(msg));
            log_debug("pgexec: session setup failed (ignored): %s", msg);
        }
        return true;
    }
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        p->est_in += result_wire_size(res);
    switch (st) {
    case PGRES_TUPLES_OK:
        p->result.last_rows = PQntuples(res);
        if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
            str_copy(p->result.last_value, PQgetvalue(res, 0, 0), sizeof(p->result.last_value));
        else
            p->result.last_value[0] = '\0';
        return true;
    case PGRES_COMMAND_OK:
        p->result.last_rows = cmd_tuples(res);
        p->result.last_value[0] = '\0';
        return true;
    default:
        set_result_error(p, res);
        return false;
    }
}

static void read_results(pgexec_t *p)
{
    if (!PQconsumeInput(p->conn)) {
        fail_with_conn_error(p);
        return;
    }
    while (!PQisBusy(p->conn)) {
        PGresult *res = PQgetResult(p->conn);
        if (res == NULL) {
            next_statement(p);
            return;
        }
        bool good = take_result(p, res);
        if (good && !p->setup && (p->flags & PGEXEC_KEEP_ROWS) && PQresultStatus(res) == PGRES_TUPLES_OK) {
            PQclear(p->rows);
            p->rows = res;
        } else {
            PQclear(res);
        }
        if (!good) {
            /* No need to drain the rest: the connection is closed. */
            finish(p, false);
            return;
        }
    }
    /* Still busy: wait for more input. */
}

/* ---- connect phase --------------------------------------------------- */

static void connected(pgexec_t *p)
{
    p->result.connected = true;
    if (PQsetnonblocking(p->conn, 1) != 0) {
        fail_with_conn_error(p);
        return;
    }
    if (p->n > 0 && !(p->flags & PGEXEC_POOLED) && PQserverVersion(p->conn) >= PGEXEC_SETUP_MIN_VERSION) {
        p->setup = true;
        send_sql(p, PGEXEC_SETUP_SQL);
        return;
    }
    run_statement(p, 0);
}

static void connect_step(pgexec_t *p)
{
    switch (pgconn_connect_step(&p->watch, p->conn, on_socket, p, p->result.error,
                                sizeof(p->result.error))) {
    case PGCONN_STEP_READY:
        connected(p);
        return;
    case PGCONN_STEP_WAIT:
        return;
    case PGCONN_STEP_NO_WATCH:
        finish(p, false);
        return;
    case PGCONN_STEP_FAILED:
    default:
        fail_with_conn_error(p);
        return;
    }
}

static void on_socket(loop_t *loop, int fd, short revents, void *arg)
{
    pgexec_t *p = arg;
    (void)loop;
    (void)fd;
    switch (p->phase) {
    case PHASE_CONNECTING:
        /* POLLERR/POLLHUP too: PQconnectPoll finds out what happened. */
        connect_step(p);
        break;
    case PHASE_SENDING:
        if ((revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(p->conn)) {
            fail_with_conn_error(p);
            break;
        }
        flush_out(p);
        break;
    case PHASE_READING:
        read_results(p);
        break;
    default:
        /* Not expected: the watcher goes away whenever the run ends. */
        log_error("pgexec: socket event in phase %d", (int)p->phase);
        close_conn(p);
        break;
    }
}

/* ---- timers ---------------------------------------------------------- */

static void on_deadline(loop_t *loop, void *arg)
{
    pgexec_t *p = arg;
    (void)loop;
    p->deadline_timer = 0;
    if (p->phase == PHASE_CONNECTING) {
        set_error_fmt(p, "timeout after %" PRId64 " ms while connecting", p->timeout_ms);
    } else if (p->setup) {
        set_error_fmt(p, "timeout after %" PRId64 " ms while setting up the session",
                      p->timeout_ms);
    } else {
        set_error_fmt(p, "timeout after %" PRId64 " ms while running statement %zu",
                      p->timeout_ms, p->cur);
    }
    finish(p, false);
}

static void on_report(loop_t *loop, void *arg)
{
    pgexec_t *p = arg;
    (void)loop;
    p->report_timer = 0;
    finish(p, false);
}

/* ---- public ---------------------------------------------------------- */

pgexec_t *pgexec_start(loop_t *loop, const char *url, const char *password,
                       const char *const *statements, size_t n, int64_t timeout_ms,
                       pgexec_cb cb, void *arg)
{
    return pgexec_start_flags(loop, url, password, statements, n, timeout_ms, 0, cb, arg);
}

pgexec_t *pgexec_start_flags(loop_t *loop, const char *url, const char *password,
                             const char *const *statements, size_t n, int64_t timeout_ms,
                             unsigned flags, pgexec_cb cb, void *arg)
{
    if (loop == NULL || cb == NULL || url == NULL || url[0] == '\0' ||
        (n > 0 && statements == NULL) || timeout_ms <= 0) {
        log_error("pgexec: invalid arguments");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (statements[i] == NULL) {
            log_error("pgexec: statement %zu is NULL", i);
            return NULL;
        }
    }

    pgexec_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto oom;
    p->loop = loop;
    p->cb = cb;
    p->arg = arg;
    p->timeout_ms = timeout_ms;
    p->flags = flags;
    p->phase = PHASE_DONE;
    pgconn_watch_init(&p->watch, loop);
    p->result.failed_index = -1;
    p->started = loop_now(loop);

    p->url = strdup(url);
    if (p->url == NULL || (password != NULL && (p->password = strdup(password)) == NULL))
        goto oom;
    if (n > 0 && (p->stmts = calloc(n, sizeof(*p->stmts))) == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        if ((p->stmts[i] = strdup(statements[i])) == NULL)
            goto oom;
        p->n = i + 1;       /* what pgexec_free must release */
    }
    p->n = n;

    p->conn = pgconn_start(p->url, p->password, timeout_ms, PGEXEC_APP_NAME,
                           p->result.error, sizeof(p->result.error));
    if (p->conn != NULL) {
        PQsetNoticeProcessor(p->conn, on_notice, NULL);
        p->deadline_timer = loop_add_timer(loop, timeout_ms, on_deadline, p);
        if (p->deadline_timer == 0)
            goto fail;          /* logged by the loop */
        p->phase = PHASE_CONNECTING;
        /* Before the first PQconnectPoll() call, act as if it had
         * returned PGRES_POLLING_WRITING. */
        if (watch_socket(p, POLLOUT))
            return p;
        /* else: report the failure from the loop */
    }

    /* Immediate failure: deliver it from the loop, never from here. */
    close_conn(p);
    loop_cancel_timer(loop, p->deadline_timer);
    p->deadline_timer = 0;
    p->report_timer = loop_add_timer(loop, 0, on_report, p);
    if (p->report_timer == 0)
        goto fail;              /* logged by the loop */
    p->phase = PHASE_REPORTING;
    return p;

oom:
    log_error("pgexec: out of memory");
fail:
    pgexec_free(p);
    return NULL;
}

void pgexec_free(pgexec_t *p)
{
    if (p == NULL)
        return;
    close_conn(p);
    loop_cancel_timer(p->loop, p->deadline_timer);
    loop_cancel_timer(p->loop, p->report_timer);
    PQclear(p->rows);
    str_free_secret(p->url);
    str_free_secret(p->password);
    for (size_t i = 0; i < p->n; i++)
        str_free_secret(p->stmts[i]);      /* statements may carry passwords */
    free(p->stmts);
    free(p);
}
