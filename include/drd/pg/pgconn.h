/* pgconn.h - internal helpers shared by the loop-driven libpq clients
 * (probe.c, pgexec.c): starting a non-blocking connection with drd's
 * connection settings, following libpq's socket with a loop watcher, and
 * turning libpq's multi-line messages into one masked line. */
#ifndef DRD_PGCONN_H
#define DRD_PGCONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "drd/core/loop.h"

/* PQconnectStartParams() with "dbname" = url (URI or conninfo, expanded),
 * then drd's settings, which override the URL's: application_name,
 * keepalives, tcp_user_timeout = timeout_ms and a connect_timeout
 * backstop.  password: NULL lets libpq find it (URL, PGPASSFILE, ...).
 * Returns a connection whose status is not CONNECTION_BAD, to be driven
 * with PQconnectPoll() (first wait for POLLOUT); or NULL with err set
 * (one line, secrets masked).  Blocks on DNS for host names. */
PGconn *pgconn_start(const char *url, const char *password, int64_t timeout_ms,
                     const char *app_name, char *err, size_t errlen);
/* The same, connecting to database dbname instead of the URL's (NULL: the
 * URL's): drd's own credentials in the app's database. */
PGconn *pgconn_start_db(const char *url, const char *dbname, const char *password, int64_t timeout_ms,
                        const char *app_name, char *err, size_t errlen);
/* The loop watcher on a connection's socket. */
typedef struct {
    loop_t *loop;
    int fd;                  /* registered fd, or -1 */
    short events;            /* its events */
} pgconn_watch;

/* A blocking connect, for worker threads and drctl (never the loop):
 * pgconn_start_db, then PQconnectPoll with poll() until connected or
 * connect_ms has passed. */
typedef struct {
    const char *dbname;          /* instead of the URL's; NULL: the URL's */
    const char *password;        /* NULL: libpq finds it */
    const char *app_name;
    int64_t connect_ms;          /* the whole connect */
    int64_t tcp_user_timeout_ms; /* 0: connect_ms */
    const atomic_bool *stop;     /* looked at every 100 ms: err "cancelled"; NULL: none */
    const char *options;         /* the "options" startup parameter (a pooler refuses or
                                  * drops it: check's pooler test only); NULL: none */
} pgconn_opts;
/* The connection, or NULL with err set (one line, secrets masked). */
PGconn *pgconn_connect(const char *url, const pgconn_opts *o, char *err, size_t errlen);

/* Statements on a blocking connection with a timeout the client keeps,
 * so that no session state is left on the server: a session SET
 * statement_timeout through a transaction-mode pooler (pgbouncer) stays
 * on the server connection it ran on, for the pooler's next client (the
 * app), and a frozen server cannot enforce it anyway.
 * pgconn_set_timeout: the time every later pgconn_exec on c may wait for
 * its results (0: no limit). pgconn_exec: sql (several statements only
 * without params) with nparams text params; past the timeout it shuts the
 * socket down (the server aborts the statement when it next checks its
 * client; c is unusable after) and fails "no answer in time". The last
 * result (PQclear it) when every result was PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK; else NULL with err set (the first error, one line,
 * masked). */
bool pgconn_set_timeout(PGconn *c, int64_t timeout_ms);
PGresult *pgconn_exec(PGconn *c, const char *sql, int nparams, const char *const *params,
                      char *err, size_t errlen);

/* One step of a non-blocking connect driven by the loop: PQconnectPoll,
 * then the socket watched (cb) for what libpq waits for. */
typedef enum {
    PGCONN_STEP_WAIT,            /* watching the socket: cb comes */
    PGCONN_STEP_READY,           /* connected (the watch is left as it was) */
    PGCONN_STEP_FAILED,          /* libpq failed: PQerrorMessage says why */
    PGCONN_STEP_NO_WATCH,        /* the socket cannot be watched: err set */
} pgconn_step;
pgconn_step pgconn_connect_step(pgconn_watch *w, PGconn *conn, loop_fd_cb cb, void *arg,
                                char *err, size_t errlen);

/* The database a URL or conninfo names (malloc'd), or NULL if it names none
 * (then libpq uses the user name) or does not parse. */
char *pgconn_dbname(const char *url);

/* The user and database a URL or conninfo names (database: the user's
 * name when none, as libpq does). false when it names no user or does not
 * parse. */
bool pgconn_identity(const char *url, char *user, size_t un, char *db, size_t dn);
/* One line from a libpq message: lines joined with "; ", indentation
 * dropped, secrets masked; "unknown error" when msg is NULL or blank. */
void pgconn_error_text(const char *msg, char *out, size_t n);

/* Replace what is between each pair of double quotes with ****, in place
 * (s holds n bytes; an unpaired quote hides the rest of the text): for
 * messages that quote pieces of a URL or a statement. */
void pgconn_hide_quoted(char *s, size_t n);


void pgconn_watch_init(pgconn_watch *w, loop_t *loop);
/* Watch PQsocket(conn) for events, following it when libpq switches to a
 * new socket (next host or address, SSL/GSS fallback).  False with err
 * set when there is no socket or the loop cannot watch it. */
bool pgconn_watch_socket(pgconn_watch *w, PGconn *conn, short events,
                         loop_fd_cb cb, void *arg, char *err, size_t errlen);
/* Stop watching (no-op when not watching). */
void pgconn_unwatch(pgconn_watch *w);

#endif
