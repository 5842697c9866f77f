/* worker.c - worker threads and their completion eventfd (see
 * include/drd/core/worker.h). */
#include "drd/core/worker.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "drd/core/log.h"

bool worker_spawn(pthread_t *t, bool detached, void *(*fn)(void *), void *arg)
{
    pthread_attr_t at;
    sigset_t all, old;
    int rc;

    if ((rc = pthread_attr_init(&at)) != 0) {
        errno = rc;
        return false;
    }
    if (detached)
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);    /* inherited by the thread */
    rc = pthread_create(t, &at, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    if (rc != 0)
        errno = rc;
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
