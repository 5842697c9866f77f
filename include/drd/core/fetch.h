/* fetch.h - non-blocking HTTP requests on the event loop, through libcurl's
 * multi interface (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION wired to loop.h).
 * Used by the app health check (wait-healthy) and webhooks (notify).
 * Only http:// and https:// URLs are allowed (CURLOPT_PROTOCOLS_STR). */
#ifndef DRD_FETCH_H
#define DRD_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "drd/core/loop.h"

typedef struct fetch fetch_t;

typedef struct {
    long status;               /* HTTP status, 0 on a transport error */
    const char *error;         /* "" on success; curl's message (URL secrets masked) otherwise */
    const char *body;          /* response body, NUL-terminated, at most 64 KiB kept */
    size_t body_len;
    int64_t duration_ms;
} fetch_result;

typedef void (*fetch_cb)(void *arg, const fetch_result *r);

fetch_t *fetch_new(loop_t *loop);
/* Cancels everything in flight without callbacks; accepts NULL. Call it
 * before loop_free(), and never from inside a fetch callback (fetch_start
 * and fetch_cancel may be called from there). */
void fetch_free(fetch_t *f);

/* Start a request. method "GET" or "POST"; body/content_type for POST (may
 * be NULL). The callback runs exactly once, from the loop, never from inside
 * fetch_start. Returns a request id > 0, or 0 with err filled. */
uint64_t fetch_start(fetch_t *f, const char *method, const char *url,
                     const char *body, const char *content_type, int64_t timeout_ms,
                     fetch_cb cb, void *arg, char *err, size_t errlen);
/* Cancel one request (no callback). Unknown ids are ignored. */
void fetch_cancel(fetch_t *f, uint64_t id);
/* Requests in flight. */
size_t fetch_pending(const fetch_t *f);

#endif
