/* probe.h - one non-blocking PostgreSQL probe of one target, driven by the
 * event loop: PQconnectStartParams + PQconnectPoll under poll(), then
 * "SELECT pg_is_in_recovery()" sent with PQsendQuery, all under a hard
 * monotonic deadline; at the deadline the connection is closed (PQfinish)
 * and the probe fails with "timeout after Nms". Never blocks the loop. */
#ifndef DRD_PROBE_H
#define DRD_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "drd/core/loop.h"

/* What a failed probe says about the target.  Only UNREACHABLE is an
 * outage (it counts toward the breaker); AUTH and CONFIG are a
 * misconfiguration of drd or of the server (wrong password, unknown role
 * or database, pg_hba.conf, TLS) that no failover can fix: they never count
 * toward the breaker and never start a policy failover. */
typedef enum {
    PROBE_OK = 0,
    PROBE_UNREACHABLE,       /* refused, reset, timeout, shutting down, unknown */
    PROBE_AUTH,              /* credentials, role, pg_hba.conf, CONNECT privilege */
    PROBE_CONFIG,            /* unknown database, TLS misconfiguration */
} probe_class;

#define PROBE_MISCONFIGURED(c) ((c) == PROBE_AUTH || (c) == PROBE_CONFIG)

typedef struct {
    bool ok;
    probe_class cls;         /* PROBE_OK when ok */
    char cause[256];         /* misconfigured: the server's or libpq's reason, masked */
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

/* Classify a failed connection from libpq's error message (as
 * PQerrorMessage gives it; with PQERRORS_VERBOSE the server's SQLSTATE is
 * in it: "FATAL:  28P01: password ...") and PQconnectionNeedsPassword().
 * Conservative: anything not known to be a misconfiguration, and any
 * message that also names a known outage symptom (several hosts tried),
 * is PROBE_UNREACHABLE.  cause (may be NULL) gets the one reason, without
 * the "connection to server ... failed:" and severity prefixes, masked. */
probe_class probe_classify(const char *msg, bool needs_password, char *cause, size_t n);
/* "unreachable", "auth", "config" (DESIGN.md's error_class); NULL for OK. */
const char *probe_class_name(probe_class c);
void probe_free(probe_t *p);     /* cancels an in-flight probe; accepts NULL */

#endif
