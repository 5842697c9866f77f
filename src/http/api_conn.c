/* api_conn.c - the HTTP server's connections: every one listed with a
 * whole-request deadline, the reaper thread that cuts the slow ones, and
 * the rate-limited log of libmicrohttpd's own messages (see api.c). */
#include "api_int.h"

/* ------------------------------------------------------------------ */
/* whole-request deadlines (conn_lock)                                */

/* The connection's request, or its answer, or the next request on it has
 * API_DEADLINE_MS from now to be complete. Called when a connection
 * starts, when an answer is queued and when a request ends. */
void api_conn_renew(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn *k = ci != NULL ? ci->socket_context : NULL;
    api_t *a;

    if (k == NULL)
        return;
    a = k->api;
    pthread_mutex_lock(&a->conn_lock);
    k->deadline = mono_ms() + API_DEADLINE_MS;
    pthread_mutex_unlock(&a->conn_lock);
}

/* MHD's STARTED and CLOSED notifications: list the connection with its
 * first deadline, and take it off the list. A connection that cannot be
 * listed is not served (shutdown: MHD closes it). */
void api_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode toe)
{
    listener *l = cls;
    api_t *a = l->api;
    conn *k;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

        if (ci == NULL)
            return;
        k = calloc(1, sizeof(*k));
        if (k == NULL) {
            shutdown(ci->connect_fd, SHUT_RDWR);
            return;
        }
        k->api = a;
        k->fd = ci->connect_fd;
        api_client_addr(c, k->addr, sizeof(k->addr));
        pthread_mutex_lock(&a->conn_lock);
        k->deadline = mono_ms() + API_DEADLINE_MS;
        k->next = a->conns;
        if (a->conns != NULL)
            a->conns->prev = k;
        a->conns = k;
        if (k->deadline < a->reaper_wake)
            pthread_cond_signal(&a->conn_cond);
        pthread_mutex_unlock(&a->conn_lock);
        *socket_context = k;
        return;
    }
    k = *socket_context;
    if (k == NULL)
        return;
    pthread_mutex_lock(&a->conn_lock);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        a->conns = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    pthread_mutex_unlock(&a->conn_lock);
    free(k);
    *socket_context = NULL;
}

/* The reaper: shuts down every connection past its deadline (a client
 * trickling its headers or body, or reading its answer a byte at a time),
 * so that it cannot hold one of the connection slots longer than
 * API_DEADLINE_MS a request. MHD sees the shutdown as the end of the
 * connection and closes it; the others are not affected. */
static void *reaper_main(void *arg)
{
    api_t *a = arg;

    pthread_mutex_lock(&a->conn_lock);
    while (!a->reaper_stop) {
        int64_t now = mono_ms(), next = now + API_CUT_LOG_MS, n = 0;
        struct timespec ts;

        for (conn *k = a->conns; k != NULL; k = k->next) {
            if (k->cut)
                continue;
            if (k->deadline <= now) {
                shutdown(k->fd, SHUT_RDWR);
                k->cut = true;
                a->cut_unlogged++;
                str_copy(a->cut_last, k->addr, sizeof(a->cut_last));
                n++;
            } else if (k->deadline < next) {
                next = k->deadline;
            }
        }
        if (n > 0)
            atomic_fetch_add(&a->slow_cut, n);
        if (a->cut_unlogged > 0 && now - a->cut_logged_at >= API_CUT_LOG_MS) {
            char last[INET6_ADDRSTRLEN];
            int64_t count = a->cut_unlogged;

            str_copy(last, a->cut_last, sizeof(last));
            a->cut_unlogged = 0;
            a->cut_logged_at = now;
            pthread_mutex_unlock(&a->conn_lock);
            log_warn("http: closed %lld slow connection%s (no whole request or answer within "
                     "%d s; the last from %s)", (long long)count, count == 1 ? "" : "s",
                     API_DEADLINE_MS / 1000, last);
            pthread_mutex_lock(&a->conn_lock);
            continue;    /* the list may have changed */
        }
        if (a->cut_unlogged > 0 && a->cut_logged_at + API_CUT_LOG_MS < next)
            next = a->cut_logged_at + API_CUT_LOG_MS;
        a->reaper_wake = next;
        ts.tv_sec = (time_t)(next / 1000);
        ts.tv_nsec = (long)(next % 1000) * 1000000L;
        pthread_cond_timedwait(&a->conn_cond, &a->conn_lock, &ts);
    }
    pthread_mutex_unlock(&a->conn_lock);
    return NULL;
}

bool api_reaper_start(api_t *a, char *err, size_t errlen)
{
    pthread_condattr_t ca;
    int rc;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->conn_cond, &ca);
    a->conn_cond_init = true;
    pthread_condattr_destroy(&ca);
    a->reaper_wake = INT64_MAX;
    a->cut_logged_at = mono_ms() - API_CUT_LOG_MS;
    rc = pthread_create(&a->reaper, NULL, reaper_main, a);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the HTTP reaper thread: %s", strerror(rc));
        return false;
    }
    a->reaper_started = true;
    return true;
}

void api_reaper_stop(api_t *a)
{
    if (!a->reaper_started)
        return;
    pthread_mutex_lock(&a->conn_lock);
    a->reaper_stop = true;
    pthread_cond_signal(&a->conn_cond);
    pthread_mutex_unlock(&a->conn_lock);
    pthread_join(a->reaper, NULL);
    a->reaper_started = false;
}

/* libmicrohttpd's own messages (malformed requests, timeouts, ...). A
 * client can cause one per connection, so at most API_LOG_BURST lines a
 * minute reach the log; the rest are counted and summed up later. */
void api_mhd_logger(void *cls, const char *fm, va_list ap)
{
    api_t *a = cls;
    char buf[512];
    size_t n;
    int64_t now = mono_ms(), dropped = 0;
    bool emit;

    pthread_mutex_lock(&a->log_lock);
    if (now - a->log_window >= 60000) {
        dropped = a->log_dropped;
        a->log_window = now;
        a->log_count = 0;
        a->log_dropped = 0;
    }
    emit = a->log_count < API_LOG_BURST;
    if (emit)
        a->log_count++;
    else
        a->log_dropped++;
    pthread_mutex_unlock(&a->log_lock);
    if (dropped > 0)
        log_warn("http: %lld more messages from the HTTP server were not logged",
                 (long long)dropped);
    if (!emit)
        return;
    vsnprintf(buf, sizeof(buf), fm, ap);
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    /* MHD quotes its whole canned HTML answer: keep only the code */
    {
        char *html = strstr(buf, " ('<html>");
        if (html != NULL)
            str_copy(html, ")", sizeof(buf) - (size_t)(html - buf));
    }
    log_warn("http: %s", buf);
}
