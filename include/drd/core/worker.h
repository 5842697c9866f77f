/* worker.h - THE way to run blocking work off the loop: a thread that does
 * not take the process's signals (they stay with the loop's thread), and
 * an eventfd, watched by the loop, that the thread writes when it is done
 * (its completion then runs on the loop, never on the thread). */
#ifndef DRD_CORE_WORKER_H
#define DRD_CORE_WORKER_H

#include <pthread.h>
#include <stdbool.h>

#include "drd/core/loop.h"

/* pthread_create with every signal blocked in the new thread; detached:
 * nobody joins it. false with errno set. */
bool worker_spawn(pthread_t *t, bool detached, void *(*fn)(void *), void *arg);
/* A non-blocking eventfd watched by loop (cb on POLLIN); -1 with errno set
 * (nothing left open). Remove it with loop_del_fd, then close it. */
int worker_eventfd(loop_t *loop, loop_fd_cb cb, void *arg);
/* Wake the loop (from the worker): the eventfd becomes readable. */
void worker_notify(int efd);

#endif
