/* commands.c - see commands.h. */
#include "drd/engine/commands.h"
#include "drd/core/log.h"
#include "drd/core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static const char *const kind_names[CMD_COUNT] = { "", "failover", "failback", "approve", "reject", "refresh",
                                                   "check", "drill", "unblock" };

const char *command_kind_name(command_kind k)
{
    return (unsigned)k < CMD_COUNT ? kind_names[k] : "";
}

void command_free(command *c)
{
    if (c == NULL)
        return;
    free(c->body);
    free(c);
}

/* ---------------------------------------------------------------- queue */

struct command_queue {
    pthread_mutex_t lock;        /* everything below */
    command *head, *tail;
    size_t queued, max;
    int64_t next_id;
    int efd;
};

command_queue *command_queue_new(size_t max, int64_t first_id)
{
    command_queue *q = calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        log_error("commands: eventfd: %s", strerror(errno));
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->lock, NULL);
    q->max = max;
    q->next_id = first_id > 0 ? first_id : 1;
    return q;
}

void command_queue_free(command_queue *q)
{
    if (q == NULL)
        return;
    command *c;
    while ((c = q->head) != NULL) {
        q->head = c->next;
        command_free(c);
    }
    close(q->efd);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

int command_queue_fd(const command_queue *q)
{
    return q != NULL ? q->efd : -1;
}

int64_t command_queue_push(command_queue *q, command *c)
{
    uint64_t one = 1;
    int64_t id;
    if (q == NULL || c == NULL) {
        command_free(c);
        return -1;
    }
    c->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->queued >= q->max) {
        pthread_mutex_unlock(&q->lock);
        command_free(c);
        return 0;
    }
    id = q->next_id++;
    c->request_id = id;
    if (q->tail != NULL)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->queued++;
    /* Written under the lock so the pop's drain cannot lose a wakeup. */
    if (write(q->efd, &one, sizeof one) != (ssize_t)sizeof one)
        log_warn("commands: cannot wake the main loop: %s", strerror(errno));
    pthread_mutex_unlock(&q->lock);
    return id;
}

command *command_queue_pop(command_queue *q)
{
    command *c;
    if (q == NULL)
        return NULL;
    pthread_mutex_lock(&q->lock);
    c = q->head;
    if (c != NULL) {
        q->head = c->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->queued--;
        c->next = NULL;
    }
    if (q->head == NULL) {
        uint64_t v;
        /* Empty now: clear the eventfd (EAGAIN when already clear). */
        if (read(q->efd, &v, sizeof v) < 0 && errno != EAGAIN)
            log_warn("commands: reading the eventfd: %s", strerror(errno));
    }
    pthread_mutex_unlock(&q->lock);
    return c;
}

/* -------------------------------------------------------------- handler */

void commands_handle(const command_ops *ops, const command *c, int64_t now, store_request *out)
{
    char err[512] = "";
    int64_t run = 0;
    bool ok = false;
    const char *reason = c->reason[0] ? c->reason : "requested by an operator";

    memset(out, 0, sizeof *out);
    out->id = c->request_id;
    str_copy(out->kind, command_kind_name(c->kind), sizeof out->kind);
    str_copy(out->actor, c->actor, sizeof out->actor);
    out->at = now;

    switch (c->kind) {
    case CMD_FAILOVER:
        run = ops->failover(ops->arg, reason, c->actor, c->request_id, err, sizeof err);
        ok = run != 0;
        break;
    case CMD_FAILBACK:
        run = ops->failback(ops->arg, reason, c->actor, c->request_id, err, sizeof err);
        ok = run != 0;
        break;
    case CMD_APPROVE:
    case CMD_REJECT:
        ok = ops->decide(ops->arg, c->approval_id, c->kind == CMD_APPROVE, c->choice, c->actor, c->reason,
                         &run, err, sizeof err);
        break;
    case CMD_REFRESH:
        ok = ops->refresh(ops->arg, err, sizeof err);
        break;
    case CMD_CHECK:
        ok = ops->check(ops->arg, err, sizeof err);
        break;
    case CMD_DRILL:
        ok = ops->drill(ops->arg, c->body, err, sizeof err);
        break;
    case CMD_UNBLOCK:
        ok = ops->unblock(ops->arg, c->actor, err, sizeof err);
        break;
    default:
        str_copy(err, "unknown request", sizeof err);
        break;
    }
    str_copy(out->state, ok ? "accepted" : "refused", sizeof out->state);
    out->run_id = run;
    str_copy(out->error, err, sizeof out->error);
    if (!ok)
        log_warn("request %lld (%s from %s) refused: %s", (long long)c->request_id, out->kind, c->actor, err);
}
