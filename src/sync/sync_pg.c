/* sync_pg.c - the sync module's blocking libpq layer, used only on worker
 * threads: connections registered with their job (so another thread can
 * cancel them), statements that fail the job with a readable message,
 * COPY streamed between two connections, and SQL text building. */
#include "sync_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/core/util.h"

#define CONNECT_TIMEOUT_MS 15000
/* libpq's tcp_user_timeout for sync connections: a COPY may keep data
 * unacknowledged for a while on a busy server, so longer than a probe's. */
#define TCP_USER_TIMEOUT_MS 60000

/* ---- the job context --------------------------------------------------- */

void sync_fail(sync_ctx *c, const char *fmt, ...)
{
    char masked[1024];
    va_list ap;
    va_start(ap, fmt);
    mask_vformat(masked, sizeof(masked), "\xE2\x80\xA6", fmt, ap);   /* masked whole, then cut */
    va_end(ap);
    bool first = false;
    pthread_mutex_lock(&c->mu);
    bool cancelled = c->cancelled;       /* set by the loop's thread: read under mu */
    if (!c->failed) {
        c->failed = true;
        first = true;
        str_copy(c->error, masked, sizeof(c->error));
    }
    pthread_mutex_unlock(&c->mu);
    atomic_store(&c->stop, true);
    if (first && !cancelled)
        log_error("sync: %s", masked);
    else if (first)
        log_info("sync: %s", masked);
    else
        log_debug("sync: (after the first error) %s", masked);
}

bool sync_failed(sync_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    bool f = c->failed;
    pthread_mutex_unlock(&c->mu);
    return f;
}

void sync_report(sync_ctx *c, const char *fmt, ...)
{
    sbuf line;
    sb_init(&line);
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&line, fmt, ap);
    va_end(ap);
    log_info("sync: %s", sb_str(&line));
    pthread_mutex_lock(&c->mu);
    sb_add(&c->report, sb_str(&line));
    sb_add(&c->report, "\n");
    pthread_mutex_unlock(&c->mu);
    sb_free(&line);
}

void sync_add_counts(sync_ctx *c, int64_t rows, int64_t tables)
{
    pthread_mutex_lock(&c->mu);
    c->rows += rows;
    c->tables += tables;
    pthread_mutex_unlock(&c->mu);
}

void sync_shutdown_conns(sync_ctx *c)
{
    atomic_store(&c->stop, true);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nfds; i++)
        if (c->fds[i] >= 0)
            shutdown(c->fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&c->mu);
}

/* A socket is registered under the mutex, and unregistered under it before
 * libpq closes it, so sync_shutdown_conns() never touches a reused fd. */
static bool conn_register(sync_ctx *c, sconn *s)
{
    bool ok = true;
    pthread_mutex_lock(&c->mu);
    size_t i;
    for (i = 0; i < c->nfds; i++)
        if (c->fds[i] < 0)
            break;
    if (i == c->nfds) {
        if (c->nfds == c->capfds) {
            size_t cap = c->capfds ? c->capfds * 2 : 8;
            int *f = realloc(c->fds, cap * sizeof(*f));
            if (f == NULL) {
                ok = false;
                goto out;
            }
            c->fds = f;
            c->capfds = cap;
        }
        c->nfds++;
    }
    c->fds[i] = PQsocket(s->pg);
    s->slot = (int)i;
    /* Registered after a cancel: stop it at once too. */
    if (atomic_load(&c->stop))
        shutdown(c->fds[i], SHUT_RDWR);
out:
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void conn_unregister(sconn *s)
{
    if (s->slot < 0)
        return;
    pthread_mutex_lock(&s->ctx->mu);
    s->ctx->fds[s->slot] = -1;
    pthread_mutex_unlock(&s->ctx->mu);
    s->slot = -1;
}

/* ---- connections -------------------------------------------------------- */

void sq_errtext(const char *msg, char *out, size_t n)
{
    pgconn_error_text(msg, out, n);
    log_mask(out, n);
}

static void notice_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* The settings that make both servers print values the same way: row text
 * (verify's checksums) and to_jsonb() (conflict detection) depend on them. */
static const char *const session_sql =
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';"
    " SET extra_float_digits = 1; SET bytea_output = 'hex'; SET lc_monetary = 'C';"
    " SET standard_conforming_strings = on; SET temp_buffers = '128MB'; SET work_mem = '64MB';"
    /* the rows we look up are few and hot: index lookups, not scans */
    " SET random_page_cost = 1.1; SET search_path = pg_catalog, pg_temp;"
    " SET statement_timeout = 0; SET lock_timeout = 0;"
    " SET idle_in_transaction_session_timeout = 0; SET client_min_messages = warning;"
    " SET default_transaction_read_only = off; SET default_transaction_isolation = 'read committed'";

bool sconn_open(sync_ctx *c, sconn *s, bool primary)
{
    *s = (sconn){ .ctx = c, .side = primary ? "primary" : "backup", .slot = -1 };
    const char *url = primary ? c->primary_url : c->backup_url;
    const char *pw = primary ? c->primary_password : c->backup_password;
    char err[512];
    if (atomic_load(&c->stop))
        return false;
    pgconn_opts o = { .dbname = primary ? c->primary_db : c->backup_db, .password = pw,
                      .app_name = "drd-sync", .connect_ms = CONNECT_TIMEOUT_MS,
                      .tcp_user_timeout_ms = TCP_USER_TIMEOUT_MS, .stop = &c->stop };
    s->pg = pgconn_connect(url, &o, err, sizeof(err));
    if (s->pg == NULL) {
        if (!atomic_load(&c->stop))
            sync_fail(c, "cannot connect to the %s: %s", s->side, err);
        return false;
    }
    PQsetNoticeProcessor(s->pg, notice_quiet, NULL);
    s->server_version = PQserverVersion(s->pg);
    if (!conn_register(c, s)) {
        sync_fail(c, "out of memory");
        goto fail;
    }
    if (!sq_cmd(s, session_sql, "setting up the session"))
        goto fail;
    /* The server checks every second that we are still there, so that a
     * cancelled job (its socket shut down) stops at once there too. */
    if (s->server_version >= 140000)
        sq_try(s, "SET client_connection_check_interval = '1s'", NULL, 0);
    return true;
fail:
    sconn_close(s);
    return false;
}

void sconn_close(sconn *s)
{
    if (s == NULL || s->pg == NULL)
        return;
    conn_unregister(s);
    PQfinish(s->pg);
    s->pg = NULL;
}

/* ---- statements --------------------------------------------------------- */

static PGresult *check_result(sconn *s, PGresult *res, const char *what)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    char err[512];
    sq_errtext(res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(s->pg), err, sizeof(err));
    if (res == NULL || PQstatus(s->pg) == CONNECTION_BAD) {
        if (atomic_load(&s->ctx->stop))
            sync_fail(s->ctx, "cancelled");
        else
            sync_fail(s->ctx, "lost the connection to the %s%s%s: %s", s->side,
                      what ? " while " : "", what ? what : "", err);
    } else {
        sync_fail(s->ctx, "on the %s%s%s: %s", s->side, what ? ", " : "", what ? what : "", err);
    }
    PQclear(res);
    return NULL;
}

PGresult *sq_exec(sconn *s, const char *sql, const char *what)
{
    if (atomic_load(&s->ctx->stop)) {
        sync_fail(s->ctx, "cancelled");
        return NULL;
    }
    log_debug("sync: %s: %.300s", s->side, sql);
    return check_result(s, PQexec(s->pg, sql), what);
}

PGresult *sq_params(sconn *s, const char *sql, int n, const char *const *values, const char *what)
{
    if (atomic_load(&s->ctx->stop)) {
        sync_fail(s->ctx, "cancelled");
        return NULL;
    }
    log_debug("sync: %s: %.300s", s->side, sql);
    return check_result(s, PQexecParams(s->pg, sql, n, NULL, values, NULL, NULL, 0), what);
}

/* The last result of each of two queries already sent (simple protocol:
 * one statement, one result), both checked; on any failure neither is
 * kept. Both servers work at once: the second result is read while the
 * first server is done already (or the other way round). */
static bool both_results(sconn *a, bool sent_a, sconn *b, bool sent_b,
                         PGresult **ra, PGresult **rb, const char *what)
{
    PGresult *r, *la = NULL, *lb = NULL;
    if (sent_a)
        while ((r = PQgetResult(a->pg)) != NULL) {
            PQclear(la);
            la = r;
        }
    if (sent_b)
        while ((r = PQgetResult(b->pg)) != NULL) {
            PQclear(lb);
            lb = r;
        }
    *ra = check_result(a, la, what);
    *rb = check_result(b, lb, what);
    if (*ra == NULL || *rb == NULL) {
        PQclear(*ra);
        PQclear(*rb);
        *ra = *rb = NULL;
        return false;
    }
    return true;
}

bool sq_exec_both(sconn *a, const char *sql_a, sconn *b, const char *sql_b,
                  PGresult **ra, PGresult **rb, const char *what)
{
    *ra = *rb = NULL;
    if (atomic_load(&a->ctx->stop)) {
        sync_fail(a->ctx, "cancelled");
        return false;
    }
    log_debug("sync: both: %.300s", sql_a);
    bool sa = PQsendQuery(a->pg, sql_a) == 1;
    bool sb = PQsendQuery(b->pg, sql_b) == 1;
    return both_results(a, sa, b, sb, ra, rb, what);
}

bool sq_params_both(sconn *a, sconn *b, const char *sql, int n, const char *const *values,
                    PGresult **ra, PGresult **rb, const char *what)
{
    *ra = *rb = NULL;
    if (atomic_load(&a->ctx->stop)) {
        sync_fail(a->ctx, "cancelled");
        return false;
    }
    log_debug("sync: both: %.300s", sql);
    bool sa = PQsendQueryParams(a->pg, sql, n, NULL, values, NULL, NULL, 0) == 1;
    bool sb = PQsendQueryParams(b->pg, sql, n, NULL, values, NULL, NULL, 0) == 1;
    return both_results(a, sa, b, sb, ra, rb, what);
}

bool sq_cmd(sconn *s, const char *sql, const char *what)
{
    PGresult *r = sq_exec(s, sql, what);
    PQclear(r);
    return r != NULL;
}

bool sq_try(sconn *s, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(s->pg, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok && err != NULL)
        sq_errtext(r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(s->pg), err, errlen);
    PQclear(r);
    return ok;
}

/* ---- COPY between two connections --------------------------------------- */

/* Read results until libpq has none: the connection is then idle again. */
static bool drain(sconn *s, char *err, size_t errlen, int64_t *rows)
{
    bool ok = true;
    PGresult *r;
    while ((r = PQgetResult(s->pg)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_OUT || st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) {
            /* should not happen once the copy ended; give up on the connection */
            PQclear(r);
            snprintf(err, errlen, "the %s is still in COPY", s->side);
            return false;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            if (ok) {
                char e[400];
                sq_errtext(PQresultErrorMessage(r), e, sizeof(e));
                snprintf(err, errlen, "on the %s: %s", s->side, e);
            }
            ok = false;
        } else if (rows != NULL) {
            const char *t = PQcmdTuples(r);
            if (t != NULL && *t != '\0')
                *rows = strtoll(t, NULL, 10);
        }
        PQclear(r);
    }
    if (PQstatus(s->pg) == CONNECTION_BAD) {
        if (ok) {
            char e[400];
            sq_errtext(PQerrorMessage(s->pg), e, sizeof(e));
            snprintf(err, errlen, "lost the connection to the %s: %s", s->side, e);
        }
        ok = false;
    }
    return ok;
}

static bool start_copy(sconn *s, const char *sql, ExecStatusType want, char *err, size_t errlen)
{
    log_debug("sync: %s: %.300s", s->side, sql);
    if (!PQsendQuery(s->pg, sql)) {
        sq_errtext(PQerrorMessage(s->pg), err, errlen);
        return false;
    }
    PGresult *r = PQgetResult(s->pg);
    ExecStatusType st = PQresultStatus(r);
    if (st == want) {
        PQclear(r);
        return true;
    }
    char e[400];
    sq_errtext(r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(s->pg), e, sizeof(e));
    snprintf(err, errlen, "on the %s: %s", s->side, e);
    PQclear(r);
    drain(s, e, sizeof(e), NULL);
    return false;
}

bool sq_copy(sconn *src, const char *out_sql, sconn *dst, const char *in_sql,
             int64_t *rows, char *err, size_t errlen)
{
    *rows = 0;
    err[0] = '\0';
    if (atomic_load(&src->ctx->stop)) {
        str_copy(err, "cancelled", errlen);
        return false;
    }
    if (!start_copy(dst, in_sql, PGRES_COPY_IN, err, errlen))
        return false;
    if (!start_copy(src, out_sql, PGRES_COPY_OUT, err, errlen)) {
        char e[400];
        PQputCopyEnd(dst->pg, "source failed");
        drain(dst, e, sizeof(e), NULL);
        return false;
    }
    bool ok = true;
    char e[400];
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(src->pg, &buf, 0);
        if (n == -1)
            break;                               /* end of the data */
        if (n == -2) {
            sq_errtext(PQerrorMessage(src->pg), e, sizeof(e));
            snprintf(err, errlen, "reading from the %s: %s", src->side, e);
            ok = false;
            break;
        }
        int w = PQputCopyData(dst->pg, buf, n);
        PQfreemem(buf);
        if (w != 1) {
            sq_errtext(PQerrorMessage(dst->pg), e, sizeof(e));
            snprintf(err, errlen, "writing to the %s: %s", dst->side, e);
            ok = false;
            break;
        }
    }
    if (!ok) {
        /* Stop the source: a cancel request would be the polite way, but
         * reading the rest is bounded and needs no second connection. */
        char *buf = NULL;
        int n;
        while ((n = PQgetCopyData(src->pg, &buf, 0)) >= 0)
            PQfreemem(buf);
        drain(src, e, sizeof(e), NULL);
        if (PQputCopyEnd(dst->pg, "source failed") == 1)
            drain(dst, e, sizeof(e), NULL);
        if (atomic_load(&src->ctx->stop))
            str_copy(err, "cancelled", errlen);
        return false;
    }
    if (!drain(src, err, errlen, NULL)) {
        if (PQputCopyEnd(dst->pg, "source failed") == 1)
            drain(dst, e, sizeof(e), NULL);
        return false;
    }
    if (PQputCopyEnd(dst->pg, NULL) != 1) {
        sq_errtext(PQerrorMessage(dst->pg), e, sizeof(e));
        snprintf(err, errlen, "writing to the %s: %s", dst->side, e);
        drain(dst, e, sizeof(e), NULL);
        return false;
    }
    if (!drain(dst, err, errlen, rows))
        return false;
    return true;
}
