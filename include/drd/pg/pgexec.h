/* pgexec.h - run a short list of SQL statements on a PostgreSQL target
 * without blocking the event loop: PQconnectStartParams/PQconnectPoll, then
 * each statement with PQsendQuery, all under one hard monotonic deadline
 * (the connection is closed at the deadline). Used by the fence step and
 * later by sync steps for small control statements. */
#ifndef DRD_PGEXEC_H
#define DRD_PGEXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "drd/core/loop.h"

typedef struct {
    bool ok;                   /* connected and every statement succeeded */
    bool connected;            /* got as far as a connection */
    int failed_index;          /* index of the failing statement, -1 if none or connection failure */
    char error[512];           /* masked; "" when ok */
    int64_t duration_ms;
    /* First column of the first row of the LAST statement's result, if any
     * (e.g. a count), "" otherwise. */
    char last_value[256];
    long last_rows;            /* PQntuples or PQcmdTuples of the last statement */
    /* Bytes read from the server: the socket's own count on TCP
     * (TCP_INFO), else the sizes of the results plus an estimate of the
     * protocol's overhead. What a refresh reports as its egress. */
    int64_t bytes_in;
    /* The last result with rows (a SELECT) of the whole run, for callers
     * that read more than one value (PQgetvalue...); owned by pgexec and
     * valid during the callback only; NULL when none or on failure. */
    const struct pg_result *rows;
} pgexec_result;

typedef void (*pgexec_cb)(void *arg, const pgexec_result *r);
typedef struct pgexec pgexec_t;

/* Statements run in order, each in its own implicit transaction unless the
 * list itself contains BEGIN/COMMIT. Stops at the first error. The strings
 * are copied. The callback runs once, from the loop, never from inside
 * pgexec_start; it may call pgexec_free. NULL on immediate failure (OOM). */
pgexec_t *pgexec_start(loop_t *loop, const char *url, const char *password,
                       const char *const *statements, size_t n, int64_t timeout_ms,
                       pgexec_cb cb, void *arg);
/* The same, with flags. PGEXEC_POOLED: the target may be a
 * transaction-mode pooler: no session setup statement (it would stay on a
 * server connection other clients share). PGEXEC_KEEP_ROWS: keep the last
 * result with rows for the callback (pgexec_result.rows). */
#define PGEXEC_POOLED    1u
#define PGEXEC_KEEP_ROWS 2u
pgexec_t *pgexec_start_flags(loop_t *loop, const char *url, const char *password,
                             const char *const *statements, size_t n, int64_t timeout_ms,
                             unsigned flags, pgexec_cb cb, void *arg);
void pgexec_free(pgexec_t *p);       /* cancels (no callback) if still running; accepts NULL */

#endif
