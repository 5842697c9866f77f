/* watch.h - one idle, persistent connection to a target, kept open so that
 * a server that goes away (crash, immediate shutdown, a dropped network)
 * is noticed the moment its connection drops, not at the next probe. The
 * monitor then confirms with quick probes ([probe] confirm_interval); the
 * breaker still needs `failures` consecutive failed probes. Reconnects after
 * `retry_ms` while the target is away. Never blocks the loop. */
#ifndef DRD_WATCH_H
#define DRD_WATCH_H

#include <stdint.h>
#include "drd/core/loop.h"

typedef struct watch watch_t;
/* The connection was lost (not called for failed reconnection attempts). */
typedef void (*watch_lost_cb)(void *arg);

watch_t *watch_new(loop_t *loop, const char *name, const char *url, const char *password,
                   int64_t timeout_ms, int64_t retry_ms, watch_lost_cb cb, void *arg);
void watch_free(watch_t *w);                 /* accepts NULL */

#endif
