/* pgexec_check - run SQL statements on a PostgreSQL target with pgexec on
 * the event loop and print one line:
 *   ok connected=1 rows=N value=V ms=N
 *   fail connected=0|1 index=K error=TEXT ms=N
 * Usage: pgexec_check URL TIMEOUT_MS SQL [SQL...]   (exits 0 when run, 2 on
 * usage errors).  PGEXEC_CHECK_PASSWORD, if set, is passed as the password;
 * PGEXEC_CHECK_DEBUG turns on debug logging.
 * Used by tests/integration/t_pgexec.sh.  It also checks two promises of
 * pgexec.h: the callback never runs inside pgexec_start(), and
 * pgexec_free() may be called from inside the callback. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "drd/log.h"
#include "drd/loop.h"
#include "drd/pgexec.h"

typedef struct {
    loop_t *loop;
    pgexec_t *exec;
    bool in_start;
    bool done;
} state;

static void on_done(void *arg, const pgexec_result *r)
{
    state *s = arg;
    if (s->in_start) {
        printf("bug: callback called from inside pgexec_start\n");
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
    long long timeout;
    if (argc < 4 || !parse_num(argv[2], 1, &timeout)) {
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
    rc = s.done ? 0 : 1;
cleanup:
    pgexec_free(s.exec);
    loop_free(s.loop);
    return rc;
}
