/* commands.h - the requests that change something (failover, failback,
 * approve, reject, refresh, check, drill report, unblock): the queue the
 * HTTP thread posts them into, and what the loop does with each.
 *
 * The queue is the one thing shared between the HTTP thread and the loop:
 * command_queue_push (any thread) appends under a lock and makes an
 * eventfd readable; the loop, woken by it, pops each command and hands it
 * to commands_handle, which calls the engine through command_ops (the
 * daemon wires policy/executor/refresh/readiness; tests wire fakes) and
 * says what became of it (the store_request row GET /api/requests/{id}
 * shows). The HTTP thread never executes an action. */
#ifndef DRD_COMMANDS_H
#define DRD_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "drd/store/store.h"

typedef enum {
    CMD_FAILOVER = 1,
    CMD_FAILBACK,
    CMD_APPROVE,
    CMD_REJECT,
    CMD_REFRESH,
    CMD_CHECK,               /* POST /api/checks: run the readiness checks now */
    CMD_DRILL,               /* POST /api/drill: record a drill report (body) */
    CMD_UNBLOCK,             /* POST /api/unblock: lift the policy block */
    CMD_COUNT
} command_kind;
const char *command_kind_name(command_kind k);     /* "failover" ...; "" when unknown */

typedef struct command {
    int64_t request_id;      /* set by command_queue_push */
    command_kind kind;
    int64_t approval_id;     /* APPROVE/REJECT */
    char reason[256];
    char choice[16];         /* APPROVE of a step needing attention: retry | skip | abort | backup-wins | primary-wins | "" */
    char actor[64];          /* "socket", "token", "session:..." */
    char *body;              /* DRILL: the report (JSON text, malloc'd), else NULL */
    struct command *next;
} command;

void command_free(command *c);                      /* accepts NULL; frees body */

typedef struct command_queue command_queue;
/* At most max commands wait; request ids count up from first_id. */
command_queue *command_queue_new(size_t max, int64_t first_id);
void command_queue_free(command_queue *q);          /* accepts NULL; frees what still waits */
/* Readable while commands wait. */
int command_queue_fd(const command_queue *q);
/* Append c (any thread; the queue owns it from now on, also on failure).
 * Returns its request id, 0 when the queue is full, -1 on error. */
int64_t command_queue_push(command_queue *q, command *c);
/* The oldest command (the caller frees it), or NULL; the fd is cleared
 * when the queue becomes empty. */
command *command_queue_pop(command_queue *q);

/* The engine's operations, as the daemon wires them. Each returns false
 * (or 0) with a reason in err. */
typedef struct {
    void *arg;
    int64_t (*failover)(void *arg, const char *reason, const char *by, int64_t request_id,
                        char *err, size_t errlen);
    int64_t (*failback)(void *arg, const char *reason, const char *by, int64_t request_id,
                        char *err, size_t errlen);
    bool (*decide)(void *arg, int64_t approval_id, bool approve, const char *choice, const char *by,
                   const char *reason, int64_t *run_id, char *err, size_t errlen);
    bool (*refresh)(void *arg, char *err, size_t errlen);
    bool (*check)(void *arg, char *err, size_t errlen);
    bool (*drill)(void *arg, const char *body, char *err, size_t errlen);
    bool (*unblock)(void *arg, const char *by, char *err, size_t errlen);
} command_ops;

/* Carry out c now (from the loop) and fill *out with what became of it:
 * state accepted | refused, the run it started or touched, the error. A
 * refusal is logged here. now: wall ms for out->at. */
void commands_handle(const command_ops *ops, const command *c, int64_t now, store_request *out);

#endif
