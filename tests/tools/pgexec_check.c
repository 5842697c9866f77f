/* pgexec_check - run SQL statements on a PostgreSQL target with pgexec on
 * the event loop and print one line:
 *   ok connected=1 rows=N value=V ms=N
 *   fail connected=0|1 index=K error=TEXT ms=N
 * Usage: pgexec_check URL TIMEOUT_MS SQL [SQL...]   (exits 0 when run, 2 on
 * usage errors).  PGEXEC_CHECK_PASSWORD, if set, is passed as the password;
 * PGEXEC_CHECK_DEBUG turns on debug logging.  PGEXEC_CHECK_CANCEL_MS=N
 * calls pgexec_free() on the running pgexec after N ms, prints
 * "cancelled ms=N" and waits 300 ms more for a callback that must not come.
 * Used by tests/integration/t_pgexec.sh.  It also checks two promises of
 * pgexec.h: the callback never runs inside pgexec_start(), and
 * pgexec_free() may be called from inside the callback. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "drd/core/log.h"
#include "drd/core/loop.h"
#include "drd/pg/pgexec.h"

typedef struct {
    loop_t *loop;
    pgexec_t *exec;
    bool in_start;
    bool done;
    bool cancelled;
    int64_t t0;
} state;

static void on_done(void *arg, const pgexec_result *r)
{
    state *s = arg;
    if (s->in_start) {
        printf("bug: callback called from inside pgexec_start\n");
        fflush(stdout);
        abort();
    }
    if (s->cancelled) {
        printf("bug: callback called after pgexec_free\n");
        fflush(stdout);
        abort();
    }
    if (s->done) {
        printf("bug: callback called twice\n");
        fflush(stdout);
        abort();
    }
    s->done = true;
    if (r->ok)
        printf("ok connected=%d rows=%ld value=%s ms=%" PRId64 "\n",
               r->connected ? 1 : 0, r->last_rows, r->last_value, r->duration_ms);
    else
        printf("fail connected=%d index=%d error=%s ms=%" PRId64 "\n",
               r->connected ? 1 : 0, r->failed_index, r->error, r->duration_ms);
    fflush(stdout);
    pgexec_free(s->exec);                /* allowed from the callback */
    s->exec = NULL;
    loop_stop(s->loop);
}

static void on_stop(loop_t *loop, void *arg)
{
    (void)arg;
    loop_stop(loop);
}

static void on_cancel(loop_t *loop, void *arg)
{
    state *s = arg;
    if (s->done)
        return;
    pgexec_free(s->exec);                /* running: no callback */
    s->exec = NULL;
    s->cancelled = true;
    printf("cancelled ms=%" PRId64 "\n", loop_now(loop) - s->t0);
    fflush(stdout);
    if (loop_add_timer(loop, 300, on_stop, s) == 0)
        loop_stop(loop);
}

static bool parse_num(const char *s, long long min, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    long long timeout, cancel_ms = -1;
    const char *cancel = getenv("PGEXEC_CHECK_CANCEL_MS");
    if (argc < 4 || !parse_num(argv[2], 1, &timeout) ||
        (cancel != NULL && !parse_num(cancel, 0, &cancel_ms))) {
        fprintf(stderr, "usage: pgexec_check URL TIMEOUT_MS SQL [SQL...]\n");
        return 2;
    }
    if (getenv("PGEXEC_CHECK_DEBUG") != NULL)
        log_set_level(LOG_LVL_DEBUG);
    state s = { 0 };
    int rc = 1;
    s.loop = loop_new();
    if (s.loop == NULL)
        goto cleanup;
    s.t0 = loop_now(s.loop);
    if (cancel_ms >= 0 && loop_add_timer(s.loop, cancel_ms, on_cancel, &s) == 0)
        goto cleanup;
    s.in_start = true;
    s.exec = pgexec_start(s.loop, argv[1], getenv("PGEXEC_CHECK_PASSWORD"),
                          (const char *const *)&argv[3], (size_t)(argc - 3), timeout,
                          on_done, &s);
    s.in_start = false;
    if (s.exec == NULL) {
        fprintf(stderr, "pgexec_check: pgexec_start failed\n");
        goto cleanup;
    }
    loop_run(s.loop);
    rc = s.done || s.cancelled ? 0 : 1;
cleanup:
    pgexec_free(s.exec);
    loop_free(s.loop);
    return rc;
}
