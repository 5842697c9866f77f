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
#include "drd/health/probe.h"

#include <inttypes.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/core/util.h"

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

/* ---- classification ------------------------------------------------- */

/* SQLSTATEs a server sends while refusing a connection that point at a
 * misconfiguration.  Every other code (57P03 starting up / shutting down /
 * in recovery, 53300 too many connections, class 08, ...) is an outage. */
static const struct {
    const char *sqlstate;
    probe_class cls;
} sqlstate_classes[] = {
    { "28P01", PROBE_AUTH },      /* invalid_password */
    { "28000", PROBE_AUTH },      /* no pg_hba.conf entry, rejected, unknown role, no login */
    { "42501", PROBE_AUTH },      /* insufficient_privilege: no CONNECT on the database */
    { "3D000", PROBE_CONFIG },    /* invalid_catalog_name: the database does not exist */
};

/* The same refusals as libpq or the server word them (C locale), for
 * messages without a SQLSTATE: libpq's own client-side errors (TLS,
 * missing password) and already-shortened texts (the state file).
 * `also`, when set, must follow `phrase` in the same line. */
static const struct {
    const char *phrase, *also;
    probe_class cls;
} phrase_classes[] = {
    { "password authentication failed", NULL, PROBE_AUTH },
    { "authentication failed for user", NULL, PROBE_AUTH },
    { "no pg_hba.conf entry", NULL, PROBE_AUTH },
    { "pg_hba.conf rejects connection", NULL, PROBE_AUTH },
    { "no password supplied", NULL, PROBE_AUTH },
    { "is not permitted to log in", NULL, PROBE_AUTH },
    { "permission denied for database", NULL, PROBE_AUTH },
    { "role \"", "\" does not exist", PROBE_AUTH },
    { "database \"", "\" does not exist", PROBE_CONFIG },
    { "server does not support SSL, but SSL was required", NULL, PROBE_CONFIG },
    { "certificate verify failed", NULL, PROBE_CONFIG },
    { "does not match host name", NULL, PROBE_CONFIG },
    { "root certificate file", NULL, PROBE_CONFIG },
    { "channel binding required", NULL, PROBE_CONFIG },
    { "invalid sslmode value", NULL, PROBE_CONFIG },
    { "invalid connection option", NULL, PROBE_CONFIG },
};

const char *probe_class_name(probe_class c)
{
    switch (c) {
    case PROBE_UNREACHABLE: return "unreachable";
    case PROBE_AUTH:        return "auth";
    case PROBE_CONFIG:      return "config";
    default:                return NULL;
    }
}

static bool is_sqlstate_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

/* The verbose form's "SEVERITY:  XXXXX: " at s? Returns the SQLSTATE's
 * start (s + 3) or NULL. */
static const char *sqlstate_at(const char *s)
{
    if (s[0] != ':' || s[1] != ' ' || s[2] != ' ')
        return NULL;
    for (int i = 0; i < 5; i++)
        if (!is_sqlstate_char(s[3 + i]))
            return NULL;
    return s[8] == ':' && s[9] == ' ' ? s + 3 : NULL;
}

/* strstr bounded to [s, end). */
static const char *find_in(const char *s, const char *end, const char *needle)
{
    size_t nl = strlen(needle);
    for (const char *c = s; c + nl <= end; c++)
        if (memcmp(c, needle, nl) == 0)
            return c;
    return NULL;
}

static const char *line_start(const char *base, const char *at)
{
    while (at > base && at[-1] != '\n')
        at--;
    return at;
}

/* The reason at `at` (a marker in its line): from after the libpq
 * "connection to server ... failed: " prefix and the severity ("FATAL:  ")
 * to the end of the line, masked. */
static void cause_of(const char *base, const char *at, bool after_sqlstate, char *out, size_t n)
{
    const char *from = at, *eol;
    if (after_sqlstate) {
        from = at + 7;                       /* "XXXXX: " */
    } else {
        const char *ls = line_start(base, at);
        const char *f = find_in(ls, at, "failed: ");
        from = f != NULL ? f + 8 : ls;
        const char *sev = find_in(from, at, ":  ");
        if (sev != NULL && sev - from <= 8)  /* "FATAL:  ", "ERROR:  " */
            from = sev + 3;
    }
    eol = from + strcspn(from, "\n");
    char line[256];
    size_t len = (size_t)(eol - from) < sizeof line - 1 ? (size_t)(eol - from) : sizeof line - 1;
    memcpy(line, from, len);
    line[len] = '\0';
    mask_secrets(str_trim(line), out, n);
}

/* One connection attempt's text [s, end): its class, and its cause when
 * misconfigured. */
static probe_class classify_attempt(const char *base, const char *s, const char *end, char *cause, size_t n)
{
    for (const char *c = s; c + 10 <= end; c++) {
        const char *code = sqlstate_at(c);
        if (code == NULL)
            continue;
        for (size_t i = 0; i < ARRAY_LEN(sqlstate_classes); i++)
            if (memcmp(code, sqlstate_classes[i].sqlstate, 5) == 0) {
                if (cause != NULL)
                    cause_of(base, code, true, cause, n);
                return sqlstate_classes[i].cls;
            }
        return PROBE_UNREACHABLE;            /* the server said why: not ours */
    }
    for (size_t i = 0; i < ARRAY_LEN(phrase_classes); i++) {
        const char *at = find_in(s, end, phrase_classes[i].phrase);
        if (at == NULL)
            continue;
        if (phrase_classes[i].also != NULL) {
            const char *eol = at + strcspn(at, "\n");
            if (eol > end)
                eol = end;
            if (find_in(at + strlen(phrase_classes[i].phrase), eol, phrase_classes[i].also) == NULL)
                continue;
        }
        if (cause != NULL)
            cause_of(base, at, false, cause, n);
        return phrase_classes[i].cls;
    }
    return PROBE_UNREACHABLE;
}

probe_class probe_classify(const char *msg, bool needs_password, char *cause, size_t n)
{
    static const char attempt[] = "connection to server ";
    probe_class result = PROBE_UNREACHABLE;
    char first_cause[256] = "";
    bool any = false;

    if (cause != NULL && n > 0)
        cause[0] = '\0';
    if (msg == NULL)
        msg = "";
    /* libpq tries each host (and address) in turn and appends one
     * "connection to server ... failed: ..." per attempt: misconfigured
     * only when every attempt was refused for a misconfiguration. */
    const char *end = msg + strlen(msg);
    for (const char *s = msg; s < end; ) {
        const char *e = strstr(s + 1, attempt);
        if (e == NULL)
            e = end;
        char c[256] = "";
        probe_class k = classify_attempt(msg, s, e, c, sizeof c);
        if (!PROBE_MISCONFIGURED(k))
            return PROBE_UNREACHABLE;
        if (!any) {
            result = k;
            str_copy(first_cause, c, sizeof first_cause);
            any = true;
        }
        s = e;
    }
    if (!any) {                              /* an empty message */
        if (!needs_password)
            return PROBE_UNREACHABLE;
        result = PROBE_AUTH;
        str_copy(first_cause, "the server asks for a password and none was given", sizeof first_cause);
    }
    if (cause != NULL)
        str_copy(cause, first_cause, n);
    return result;
}

/* Drop what PQERRORS_VERBOSE adds to a message (the SQLSTATE after the
 * severity, the LOCATION line), so texts read as they always did. */
static void strip_verbose(const char *in, char *out, size_t n)
{
    size_t o = 0;
    const char *s = in;
    if (n == 0)
        return;
    while (*s != '\0' && o + 1 < n) {
        size_t len = strcspn(s, "\n");
        if (strncmp(s, "LOCATION:", 9) != 0) {
            for (size_t i = 0; i < len && o + 1 < n; i++) {
                if (sqlstate_at(s + i) != NULL && i + 10 <= len) {
                    out[o++] = ':';
                    if (o + 1 < n) out[o++] = ' ';
                    if (o + 1 < n) out[o++] = ' ';
                    i += 9;
                    continue;
                }
                out[o++] = s[i];
            }
            if (s[len] == '\n' && o + 1 < n)
                out[o++] = '\n';
        }
        s += len;
        if (*s == '\n')
            s++;
    }
    out[o] = '\0';
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
    if (ok) {
        r.error[0] = '\0';
        r.cause[0] = '\0';
        r.cls = PROBE_OK;
    } else {
        r.in_recovery = false;
        if (r.cls == PROBE_OK)
            r.cls = PROBE_UNREACHABLE;
    }
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

/* The connection was refused: why, from the verbose message libpq kept
 * (it has the server's SQLSTATE, see probe_start). */
static void fail_connect(probe_t *p)
{
    char text[1024];
    const char *msg = p->conn ? PQerrorMessage(p->conn) : "out of memory";
    bool needs_pw = p->conn != NULL && PQconnectionNeedsPassword(p->conn);
    p->result.cls = probe_classify(msg, needs_pw, p->result.cause, sizeof p->result.cause);
    strip_verbose(msg, text, sizeof text);
    set_error_text(p, text);
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
    PQsetErrorVerbosity(p->conn, PQERRORS_DEFAULT);
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
    switch (pgconn_connect_step(&p->watch, p->conn, on_socket, p, p->result.error,
                                sizeof(p->result.error))) {
    case PGCONN_STEP_READY:
        send_query(p);
        return;
    case PGCONN_STEP_WAIT:
        return;
    case PGCONN_STEP_NO_WATCH:
        finish(p, false);
        return;
    case PGCONN_STEP_FAILED:
    default:
        fail_connect(p);
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
        str_free_secret(u);
        str_free_secret(pw);
        return false;
    }
    str_free_secret(p->url);
    str_free_secret(p->password);
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
        /* The server's SQLSTATE is only in the message (a failed
         * connection has no PGresult to ask): "FATAL:  28P01: ...". */
        PQsetErrorVerbosity(p->conn, PQERRORS_VERBOSE);
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

    /* Immediate failure: deliver it from the loop, never from here.  A
     * connection string libpq refuses is a misconfiguration. */
    if (p->conn == NULL)
        p->result.cls = probe_classify(p->result.error, false, p->result.cause, sizeof p->result.cause);
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
    str_free_secret(p->url);
    str_free_secret(p->password);
    free(p);
}
