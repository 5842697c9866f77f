/* worker.c - worker threads and their completion eventfd (see
 * include/drd/core/worker.h). */
#include "drd/core/worker.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "drd/core/crash.h"
#include "drd/core/log.h"

typedef struct {
    void *(*fn)(void *);
    void *arg;
    bool detached;
} start;

/* Detached workers still running (worker_detached_running). */
static atomic_int g_detached;

/* Named before it runs anything: a crash's trace says "drd-worker". */
static void *trampoline(void *p)
{
    start s = *(start *)p;
    free(p);
    pthread_setname_np(pthread_self(), "drd-worker");
    void *ret = s.fn(s.arg);
    if (s.detached)
        atomic_fetch_sub(&g_detached, 1);
    return ret;
}

int worker_detached_running(void)
{
    return atomic_load(&g_detached);
}

bool worker_spawn(pthread_t *t, bool detached, void *(*fn)(void *), void *arg)
{
    pthread_attr_t at;
    sigset_t all, old;
    int rc;
    start *s = malloc(sizeof *s);

    if (s == NULL) {
        errno = ENOMEM;
        return false;
    }
    *s = (start){ .fn = fn, .arg = arg, .detached = detached };
    if ((rc = pthread_attr_init(&at)) != 0) {
        free(s);
        errno = rc;
        return false;
    }
    if (detached)
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    /* a fault in the thread must reach crash.c's handler (a blocked
     * SIGSEGV kills the process without it: no backtrace) */
    crash_sigdel(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);    /* inherited by the thread */
    if (detached)
        atomic_fetch_add(&g_detached, 1);
    rc = pthread_create(t, &at, trampoline, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        if (detached)
            atomic_fetch_sub(&g_detached, 1);
        free(s);
        errno = rc;
    }
    return rc == 0;
}

int worker_eventfd(loop_t *loop, loop_fd_cb cb, void *arg)
{
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    if (efd < 0)
        return -1;
    if (!loop_add_fd(loop, efd, POLLIN, cb, arg)) {
        close(efd);
        errno = ENOMEM;
        return -1;
    }
    return efd;
}

void worker_notify(int efd)
{
    uint64_t one = 1;

    /* EAGAIN: the counter is full, the loop will wake anyway */
    while (write(efd, &one, sizeof one) < 0) {
        if (errno != EINTR) {
            log_debug("worker: eventfd: %s", strerror(errno));
            return;
        }
    }
}
