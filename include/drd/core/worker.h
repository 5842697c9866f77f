/* worker.h - THE way to run blocking work off the loop: a thread that does
 * not take the process's signals (they stay with the loop's thread), and
 * an eventfd, watched by the loop, that the thread writes when it is done
 * (its completion then runs on the loop, never on the thread). */
#ifndef DRD_CORE_WORKER_H
#define DRD_CORE_WORKER_H

#include <pthread.h>
#include <stdbool.h>

#include "drd/core/loop.h"

/* pthread_create with every signal blocked in the new thread (but the
 * fatal ones: a crash there prints its backtrace, see crash.h), named
 * "drd-worker"; detached: nobody joins it. false with errno set.
 *
 * A job's memory: the loop frees it only after the worker's last access.
 * A worker that writes the eventfd (worker_notify) while it holds the
 * job's mutex still unlocks it afterwards, so the completion must take that
 * mutex (or join the thread) before freeing the job: the eventfd says the
 * work is done, not that the thread has let go of the job. */
bool worker_spawn(pthread_t *t, bool detached, void *(*fn)(void *), void *arg);
/* Detached workers whose function has not returned yet (a readiness
 * check or a preflight the loop gave up on). At exit they would run under
 * the libraries' destructors (libkrb5's, under libpq's connect: SIGABRT);
 * while there are any, drd leaves with _exit (see drd.c's main). */
int worker_detached_running(void);
/* A non-blocking eventfd watched by loop (cb on POLLIN); -1 with errno set
 * (nothing left open). Remove it with loop_del_fd, then close it. */
int worker_eventfd(loop_t *loop, loop_fd_cb cb, void *arg);
/* Wake the loop (from the worker): the eventfd becomes readable. */
void worker_notify(int efd);

#endif
