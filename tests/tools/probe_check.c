/* probe_check - run COUNT probes of one PostgreSQL target on the event loop
 * and print one line per probe:
 *   ok latency_ms=N in_recovery=0|1 server_version=V
 *   fail latency_ms=N error=TEXT
 * Usage: probe_check URL TIMEOUT_MS COUNT INTERVAL_MS   (exits 0 when run)
 * Used by tests/integration/t_probe.sh.  It also checks two promises of
 * probe.h: the callback never runs inside probe_start(), and probe_free()
 * may be called from inside the callback (done after the last probe). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "drd/core/log.h"
#include "drd/core/loop.h"
#include "drd/health/probe.h"

typedef struct {
    loop_t *loop;
    probe_t *probe;
    long remaining;
    int64_t interval_ms;
    bool in_start;
} state;

static bool start(state *s)
{
    s->in_start = true;
    bool ok = probe_start(s->probe);
    s->in_start = false;
    return ok;
}

static void start_next(loop_t *loop, void *arg)
{
    state *s = arg;
    if (!start(s)) {
        fprintf(stderr, "probe_check: probe_start failed\n");
        loop_stop(loop);
    }
}

static void on_done(void *arg, const probe_result *r)
{
    state *s = arg;
    if (s->in_start) {
        printf("bug: callback called from inside probe_start\n");
        fflush(stdout);
        abort();
    }
    if (r->ok)
        printf("ok latency_ms=%" PRId64 " in_recovery=%d server_version=%s\n",
               r->latency_ms, r->in_recovery ? 1 : 0, r->server_version);
    else
        printf("fail latency_ms=%" PRId64 " error=%s\n", r->latency_ms, r->error);
    fflush(stdout);
    if (--s->remaining <= 0) {
        probe_free(s->probe);            /* allowed from the callback */
        s->probe = NULL;
        loop_stop(s->loop);
        return;
    }
    if (s->interval_ms == 0)
        start_next(s->loop, s);          /* from inside the callback */
    else if (loop_add_timer(s->loop, s->interval_ms, start_next, s) == 0)
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
    long long timeout, count, interval;
    if (argc != 5 || !parse_num(argv[2], 1, &timeout) || !parse_num(argv[3], 1, &count) ||
        !parse_num(argv[4], 0, &interval)) {
        fprintf(stderr, "usage: probe_check URL TIMEOUT_MS COUNT INTERVAL_MS\n");
        return 2;
    }
    if (getenv("PROBE_CHECK_DEBUG") != NULL)
        log_set_level(LOG_LVL_DEBUG);
    state s = { .remaining = (long)count, .interval_ms = interval };
    int rc = 1;
    s.loop = loop_new();
    if (s.loop == NULL)
        goto cleanup;
    s.probe = probe_new(s.loop, "target", argv[1], NULL, timeout, on_done, &s);
    if (s.probe == NULL)
        goto cleanup;
    if (!start(&s))
        goto cleanup;
    loop_run(s.loop);
    rc = 0;
cleanup:
    probe_free(s.probe);
    loop_free(s.loop);
    return rc;
}
