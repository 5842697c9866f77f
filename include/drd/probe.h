/* probe.h - one non-blocking PostgreSQL probe of one target, driven by the
 * event loop: PQconnectStartParams + PQconnectPoll under poll(), then
 * "SELECT pg_is_in_recovery()" sent with PQsendQuery, all under a hard
 * monotonic deadline; at the deadline the connection is closed (PQfinish)
 * and the probe fails with "timeout after Nms". Never blocks the loop. */
#ifndef DRD_PROBE_H
#define DRD_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include "drd/loop.h"

typedef struct {
    bool ok;
    bool in_recovery;        /* meaningful when ok */
    int64_t latency_ms;      /* start to result (or to failure) */
    int64_t started_mono;    /* loop_now() when the probe began */
    char error[256];         /* empty when ok; secrets masked */
    char server_version[32]; /* e.g. "15.18", when ok */
} probe_result;

typedef void (*probe_done_cb)(void *arg, const probe_result *r);

typedef struct probe probe_t;

/* name: "primary"/"backup" (for logs). url: libpq URI or conninfo.
 * password: NULL to let libpq use the URL, PGPASSFILE or ~/.pgpass. */
probe_t *probe_new(loop_t *loop, const char *name, const char *url,
                   const char *password, int64_t timeout_ms,
                   probe_done_cb cb, void *arg);
/* Replace url/password/timeout (config reload); takes effect next start. */
bool probe_configure(probe_t *p, const char *url, const char *password, int64_t timeout_ms);
/* Begin a probe. Returns false if one is already in flight.
 * The callback is always called exactly once per successful start, from
 * the loop (never from inside probe_start). */
bool probe_start(probe_t *p);
bool probe_busy(const probe_t *p);
void probe_free(probe_t *p);     /* cancels an in-flight probe; accepts NULL */

#endif
