/* watch.c - see watch.h.
 *
 *   IDLE --retry timer--> CONNECTING --ok--> UP --socket readable, EOF/error--> lost -> IDLE
 *                              \--failure or deadline--> IDLE
 *
 * While UP the socket is watched for POLLIN only: an idle session receives
 * nothing unless the server sends a notice or closes it. */
#include "drd/health/watch.h"
#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/core/util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef enum { W_IDLE, W_CONNECTING, W_UP } watch_state;

struct watch {
    loop_t *loop;
    char *name, *url, *password;
    int64_t timeout_ms, retry_ms;
    watch_lost_cb cb;
    void *arg;
    watch_state state;
    PGconn *conn;
    pgconn_watch sock;
    uint64_t timer;              /* retry, or the connect deadline */
};

static void start_connect(loop_t *loop, void *arg);

static void drop(watch_t *w)
{
    pgconn_unwatch(&w->sock);
    if (w->conn != NULL)
        PQfinish(w->conn);
    w->conn = NULL;
    if (w->timer)
        loop_cancel_timer(w->loop, w->timer);
    w->timer = loop_add_timer(w->loop, w->retry_ms, start_connect, w);
    w->state = W_IDLE;
}

static void on_socket(loop_t *loop, int fd, short revents, void *arg)
{
    watch_t *w = arg;
    char err[256];
    (void)fd;
    if (w->state == W_UP) {
        /* Anything readable on an idle session: a notice, or the end. */
        if (PQconsumeInput(w->conn) == 0 || PQstatus(w->conn) == CONNECTION_BAD) {
            pgconn_error_text(PQerrorMessage(w->conn), err, sizeof err);
            log_info("%s: its idle connection was dropped (%s)", w->name, err);
            drop(w);
            w->cb(w->arg);
            return;
        }
        PGnotify *n;
        while ((n = PQnotifies(w->conn)) != NULL)
            PQfreemem(n);
        return;
    }
    /* CONNECTING */
    switch (pgconn_connect_step(&w->sock, w->conn, on_socket, w, err, sizeof err)) {
    case PGCONN_STEP_WAIT:
        return;
    case PGCONN_STEP_READY:
        break;
    case PGCONN_STEP_FAILED:
    case PGCONN_STEP_NO_WATCH:
    default:
        drop(w);
        return;
    }
    if (w->timer)
        loop_cancel_timer(loop, w->timer);
    w->timer = 0;
    PQsetnonblocking(w->conn, 1);
    if (!pgconn_watch_socket(&w->sock, w->conn, POLLIN, on_socket, w, err, sizeof err)) {
        drop(w);
        return;
    }
    w->state = W_UP;
    log_debug("%s: idle watch connection up", w->name);
}

static void on_deadline(loop_t *loop, void *arg)
{
    watch_t *w = arg;
    (void)loop;
    w->timer = 0;
    drop(w);
}

static void start_connect(loop_t *loop, void *arg)
{
    watch_t *w = arg;
    char err[256];
    w->timer = 0;
    w->conn = pgconn_start(w->url, w->password, w->timeout_ms, "drd-watch", err, sizeof err);
    if (w->conn == NULL) {
        w->timer = loop_add_timer(loop, w->retry_ms, start_connect, w);
        return;
    }
    w->state = W_CONNECTING;
    if (!pgconn_watch_socket(&w->sock, w->conn, POLLOUT, on_socket, w, err, sizeof err)) {
        drop(w);
        return;
    }
    w->timer = loop_add_timer(loop, w->timeout_ms, on_deadline, w);
}

watch_t *watch_new(loop_t *loop, const char *name, const char *url, const char *password,
                   int64_t timeout_ms, int64_t retry_ms, watch_lost_cb cb, void *arg)
{
    watch_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->loop = loop;
    w->name = strdup(name);
    w->url = strdup(url);
    w->password = password ? strdup(password) : NULL;
    w->timeout_ms = timeout_ms;
    w->retry_ms = retry_ms;
    w->cb = cb;
    w->arg = arg;
    pgconn_watch_init(&w->sock, loop);
    if (w->name == NULL || w->url == NULL || (password && w->password == NULL)) {
        watch_free(w);
        return NULL;
    }
    w->timer = loop_add_timer(loop, 0, start_connect, w);
    return w;
}

void watch_free(watch_t *w)
{
    if (w == NULL)
        return;
    pgconn_unwatch(&w->sock);
    if (w->conn != NULL)
        PQfinish(w->conn);
    if (w->timer)
        loop_cancel_timer(w->loop, w->timer);
    free(w->name);
    free(w->url);
    if (w->password != NULL) {
        explicit_bzero(w->password, strlen(w->password));
        free(w->password);
    }
    free(w);
}
