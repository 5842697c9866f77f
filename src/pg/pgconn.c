/* pgconn.c - the connect-phase helpers shared by probe.c and pgexec.c.
 *
 * Both drive a libpq connection from the loop with PQconnectPoll(); what
 * they share is how the connection is started (one place for drd's libpq
 * settings), how libpq's socket is watched, and how libpq's messages are
 * made printable (one line, no secrets).
 */
#include "drd/pg/pgconn.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libpq-events.h>

#include "drd/core/util.h"

/* ---- error text ------------------------------------------------------ */

void pgconn_error_text(const char *msg, char *out, size_t n)
{
    char joined[512] = "";
    const char *s = msg ? msg : "";
    while (*s != '\0') {
        size_t len = strcspn(s, "\n");
        char line[512];
        size_t l = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
        memcpy(line, s, l);
        line[l] = '\0';
        char *t = str_trim(line);
        if (*t != '\0') {
            if (joined[0] != '\0')
                str_append(joined, sizeof(joined), "; ");
            str_append(joined, sizeof(joined), t);
        }
        s += len;
        if (*s == '\n')
            s++;
    }
    if (joined[0] == '\0')
        str_copy(joined, "unknown error", sizeof(joined));
    mask_secrets(joined, out, n);
}

void pgconn_hide_quoted(char *s, size_t n)
{
    char in[512];
    str_copy(in, s, sizeof(in));
    size_t o = 0;
    bool inside = false;
    for (const char *c = in; *c != '\0' && o + 6 < n; c++) {
        if (*c == '"') {
            s[o++] = '"';
            if (!inside) {
                memcpy(&s[o], "****", 4);
                o += 4;
            }
            inside = !inside;
        } else if (!inside) {
            s[o++] = *c;
        }
    }
    s[o] = '\0';
}

/* libpq's URL/conninfo syntax errors quote pieces of the URL that
 * mask_secrets() cannot recognise as secrets: 'invalid percent-encoded
 * token: "<the password>"', 'missing "=" after "<half a password>" in
 * connection info string'.  True when the URL does not even parse; its
 * error message must then have its quoted pieces hidden. */
static bool url_syntax_error(const char *url)
{
    /* libpq's rule: a URI or anything with '=' is a connection string;
     * anything else is a plain database name. */
    if (strncmp(url, "postgresql://", 13) != 0 && strncmp(url, "postgres://", 11) != 0 &&
        strchr(url, '=') == NULL)
        return false;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    bool bad = opts == NULL;
    PQconninfoFree(opts);
    PQfreemem(perr);
    return bad;
}

/* ---- connection start ------------------------------------------------ */

PGconn *pgconn_start(const char *url, const char *password, int64_t timeout_ms,
                     const char *app_name, char *err, size_t errlen)
{
    return pgconn_start_db(url, NULL, password, timeout_ms, app_name, err, errlen);
}

char *pgconn_dbname(const char *url)
{
    char *perr = NULL, *out = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    PQfreemem(perr);
    if (opts == NULL)
        return NULL;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, "dbname") == 0 && o->val != NULL && o->val[0] != '\0')
            out = strdup(o->val);
    PQconninfoFree(opts);
    return out;
}

static PGconn *start_params(const char *url, const char *dbname, const char *password, int64_t timeout_ms,
                            const char *app_name, const char *options, char *err, size_t errlen);

PGconn *pgconn_start_db(const char *url, const char *dbname, const char *password, int64_t timeout_ms,
                        const char *app_name, char *err, size_t errlen)
{
    return start_params(url, dbname, password, timeout_ms, app_name, NULL, err, errlen);
}

static PGconn *start_params(const char *url, const char *dbname, const char *password, int64_t timeout_ms,
                            const char *app_name, const char *options, char *err, size_t errlen)
{
    char connect_timeout[24], user_timeout[24];
    /* connect_timeout is only a backstop: PQconnectPoll ignores it (the
     * caller enforces time limits), the caller's deadline is the real bound. */
    snprintf(connect_timeout, sizeof(connect_timeout), "%" PRId64, (timeout_ms + 999) / 1000);
    snprintf(user_timeout, sizeof(user_timeout), "%" PRId64, timeout_ms);

    /* "dbname" comes first and is expanded (URI or conninfo); the keywords
     * after it override what the URL says.  Keepalives and
     * tcp_user_timeout are both needed: keepalives detect a dead peer on
     * an idle connection, but are not sent while data is unacknowledged;
     * tcp_user_timeout bounds how long sent data may stay unacknowledged
     * (e.g. a half-open connection after a network partition), so the
     * kernel drops the connection even if no deadline of ours is armed. */
    const char *keys[13], *vals[13];
    int k = 0;
    keys[k] = "dbname";              vals[k++] = url;
    keys[k] = "connect_timeout";     vals[k++] = connect_timeout;
    keys[k] = "application_name";    vals[k++] = app_name;
    keys[k] = "keepalives";          vals[k++] = "1";
    keys[k] = "keepalives_idle";     vals[k++] = "5";
    keys[k] = "keepalives_interval"; vals[k++] = "2";
    keys[k] = "keepalives_count";    vals[k++] = "3";
    keys[k] = "tcp_user_timeout";    vals[k++] = user_timeout;
    if (password != NULL) {
        keys[k] = "password";        vals[k++] = password;
    }
    /* A later dbname is a plain database name and wins over the URL's. */
    if (dbname != NULL) {
        keys[k] = "dbname";          vals[k++] = dbname;
    }
    if (options != NULL) {
        keys[k] = "options";         vals[k++] = options;
    }
    keys[k] = NULL;                  vals[k] = NULL;

    /* Blocks on DNS for host names. */
    PGconn *conn = PQconnectStartParams(keys, vals, 1);
    if (conn != NULL && PQstatus(conn) != CONNECTION_BAD)
        return conn;

    pgconn_error_text(conn ? PQerrorMessage(conn) : "out of memory", err, errlen);
    if (url_syntax_error(url))
        pgconn_hide_quoted(err, errlen);
    PQfinish(conn);
    return NULL;
}

/* ---- socket watcher -------------------------------------------------- */

void pgconn_watch_init(pgconn_watch *w, loop_t *loop)
{
    w->loop = loop;
    w->fd = -1;
    w->events = 0;
}

/* If libpq closed the old socket and the new one got the same number,
 * modifying the events is enough: poll() takes fd numbers afresh on every
 * call. */
bool pgconn_watch_socket(pgconn_watch *w, PGconn *conn, short events,
                         loop_fd_cb cb, void *arg, char *err, size_t errlen)
{
    int fd = PQsocket(conn);
    if (fd < 0) {
        str_copy(err, "no connection socket", errlen);
        return false;
    }
    if (fd != w->fd) {
        pgconn_unwatch(w);
        if (!loop_add_fd(w->loop, fd, events, cb, arg)) {
            str_copy(err, "cannot watch the connection socket", errlen);
            return false;
        }
        w->fd = fd;
    } else if (events != w->events) {
        loop_mod_fd(w->loop, fd, events);
    }
    w->events = events;
    return true;
}

void pgconn_unwatch(pgconn_watch *w)
{
    if (w->fd >= 0) {
        loop_del_fd(w->loop, w->fd);
        w->fd = -1;
    }
}

bool pgconn_identity(const char *url, char *user, size_t un, char *db, size_t dn)
{
    char *err = NULL;
    PQconninfoOption *opts = url != NULL ? PQconninfoParse(url, &err) : NULL;
    user[0] = db[0] = '\0';
    if (opts == NULL) {
        PQfreemem(err);
        return false;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "user") == 0)
            str_copy(user, o->val, un);
        else if (strcmp(o->keyword, "dbname") == 0)
            str_copy(db, o->val, dn);
    }
    PQconninfoFree(opts);
    if (db[0] == '\0')
        str_copy(db, user, dn);           /* libpq's default: dbname = user */
    return user[0] != '\0';
}

/* ---- connecting ------------------------------------------------------ */

pgconn_step pgconn_connect_step(pgconn_watch *w, PGconn *conn, loop_fd_cb cb, void *arg,
                                char *err, size_t errlen)
{
    switch (PQconnectPoll(conn)) {
    case PGRES_POLLING_OK:
        return PGCONN_STEP_READY;
    case PGRES_POLLING_READING:
        return pgconn_watch_socket(w, conn, POLLIN, cb, arg, err, errlen) ? PGCONN_STEP_WAIT
                                                                          : PGCONN_STEP_NO_WATCH;
    case PGRES_POLLING_WRITING:
        return pgconn_watch_socket(w, conn, POLLOUT, cb, arg, err, errlen) ? PGCONN_STEP_WAIT
                                                                           : PGCONN_STEP_NO_WATCH;
    case PGRES_POLLING_FAILED:
    default:
        return PGCONN_STEP_FAILED;
    }
}

/* Wait (poll, in slices of 100 ms for o->stop) until the socket is ready
 * for what libpq wants. false with err set on stop, deadline or error. */
static bool wait_socket(PGconn *c, PostgresPollingStatusType st, int64_t deadline,
                        const pgconn_opts *o, char *err, size_t errlen)
{
    struct pollfd pfd = { .fd = PQsocket(c), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT };
    int r = 0;

    while (r == 0) {
        int64_t left = deadline - mono_ms();

        if (o->stop != NULL && atomic_load(o->stop)) {
            str_copy(err, "cancelled", errlen);
            return false;
        }
        if (left <= 0) {
            snprintf(err, errlen, "no answer within %lld s", (long long)((o->connect_ms + 999) / 1000));
            return false;
        }
        r = poll(&pfd, 1, left < 100 ? (int)left : 100);
        if (r < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return false;
        }
        if (r < 0)
            r = 0;
    }
    return true;
}

PGconn *pgconn_connect(const char *url, const pgconn_opts *o, char *err, size_t errlen)
{
    int64_t deadline = mono_ms() + o->connect_ms;
    int64_t tcp = o->tcp_user_timeout_ms > 0 ? o->tcp_user_timeout_ms : o->connect_ms;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    PGconn *c;

    if (o->stop != NULL && atomic_load(o->stop)) {
        str_copy(err, "cancelled", errlen);
        return NULL;
    }
    c = start_params(url, o->dbname, o->password, tcp, o->app_name, o->options, err, errlen);
    if (c == NULL)
        return NULL;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            pgconn_error_text(PQerrorMessage(c), err, errlen);
            goto fail;
        }
        if (!wait_socket(c, st, deadline, o, err, errlen))
            goto fail;
        st = PQconnectPoll(c);
    }
    return c;
fail:
    PQfinish(c);
    return NULL;
}

/* ---- statements with a client-side deadline -------------------------- */

/* The timeout lives with the connection (libpq's instance data), freed
 * when the connection is. */
static int deadline_event(PGEventId id, void *info, void *pass)
{
    (void)pass;
    if (id == PGEVT_CONNDESTROY) {
        PGEventConnDestroy *d = info;
        free(PQinstanceData(d->conn, deadline_event));
    }
    return 1;
}

bool pgconn_set_timeout(PGconn *c, int64_t timeout_ms)
{
    int64_t *d = PQinstanceData(c, deadline_event);
    if (d == NULL) {
        if ((d = malloc(sizeof *d)) == NULL)
            return false;
        if (!PQregisterEventProc(c, deadline_event, "drd-deadline", NULL) ||
            !PQsetInstanceData(c, deadline_event, d)) {
            free(d);
            return false;
        }
    }
    *d = timeout_ms;
    return true;
}

/* Wait until libpq has a whole result (or the deadline passes). */
static bool wait_result(PGconn *c, int64_t deadline, char *err, size_t errlen)
{
    while (PQisBusy(c)) {
        int64_t left = deadline > 0 ? deadline - mono_ms() : INT_MAX;
        if (left <= 0) {
            /* not a cancel request: that can itself hang on a frozen server */
            shutdown(PQsocket(c), SHUT_RDWR);
            str_copy(err, "no answer in time (the statement was abandoned)", errlen);
            return false;
        }
        struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
        int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return false;
        }
        if (r > 0 && !PQconsumeInput(c)) {
            pgconn_error_text(PQerrorMessage(c), err, errlen);
            return false;
        }
    }
    return true;
}

PGresult *pgconn_exec(PGconn *c, const char *sql, int nparams, const char *const *params,
                      char *err, size_t errlen)
{
    const int64_t *d = PQinstanceData(c, deadline_event);
    int64_t deadline = d != NULL && *d > 0 ? mono_ms() + *d : 0;
    PGresult *last = NULL, *r;
    bool failed = false;

    int sent = nparams > 0 ? PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0)
                           : PQsendQuery(c, sql);
    if (!sent) {
        pgconn_error_text(PQerrorMessage(c), err, errlen);
        return NULL;
    }
    for (;;) {
        if (!wait_result(c, deadline, err, errlen))
            goto fail;
        if ((r = PQgetResult(c)) == NULL)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && !failed) {
            failed = true;
            pgconn_error_text(PQresultErrorMessage(r), err, errlen);
        }
        PQclear(last);
        last = r;
    }
    if (!failed)
        return last;
fail:
    PQclear(last);
    return NULL;
}
