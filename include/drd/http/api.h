/* api.h - the HTTP server (libmicrohttpd, its own internal thread) and
 * the JSON API. Reads are served from an immutable status snapshot that
 * the main loop publishes, and from the HTTP thread's own read-only SQLite
 * connection. Mutations are queued to the main loop (eventfd) and answered
 * 202 with the request id; HTTP never executes an action itself.
 *
 * Two listeners: the unix socket (no token; its file mode 0660 guards it)
 * and optionally TCP `listen` (Authorization: Bearer TOKEN required for
 * everything but /healthz). */
#ifndef DRD_API_H
#define DRD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "drd/engine/commands.h"

typedef struct api api_t;

typedef struct {
    const char *listen;      /* "127.0.0.1:8080", "[::1]:8080", or NULL/"" */
    const char *socket_path; /* unix socket, or NULL/"" */
    const char *token;       /* bearer token for TCP, or NULL (TCP then refuses all but /healthz) */
    const char *db_path;     /* SQLite file, opened read-only by the HTTP thread */
    const char *web_root;    /* directory with the page, or NULL */
    int64_t session_ttl_ms;  /* dashboard sessions expire after this */
    bool metrics_need_token; /* [http] metrics = token */
    bool secure_cookie;      /* Secure attribute on the session cookie */
} api_options;

api_t *api_start(const api_options *o, char *err, size_t errlen);
void api_stop(api_t *a);                      /* accepts NULL; joins the thread */

/* Replace the status document (a complete JSON text, copied). */
void api_publish_status(api_t *a, const char *json);

/* Replace the /metrics text (copied). */
void api_publish_metrics(api_t *a, const char *text);

/* The queue the POSTs that ask drd to act go into (commands.h): the
 * loop pops them (command_queue_fd, command_queue_pop). */
command_queue *api_commands(api_t *a);

#endif
