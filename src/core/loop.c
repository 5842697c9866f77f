/* loop.c - the single-threaded poll(2) event loop.
 *
 * fd watchers live in a dynamic array.  While callbacks are being
 * dispatched, deleting a watcher only marks it dead (a tombstone) and
 * new watchers are appended after the ones that were polled, so:
 *   - a watcher deleted by an earlier callback of the same iteration is
 *     never dispatched afterwards;
 *   - a watcher added during dispatch (even for an fd number that was just
 *     deleted and reused) is not dispatched with revents that belong to the
 *     previous owner of that number: only indices below the polled count
 *     are dispatched.
 * Dead entries are compacted away after dispatch.  pfd[i] always describes
 * w[i] for the polled range, so dispatch works by index and never keeps a
 * pointer into w across a callback (callbacks may realloc it).
 *
 * Timers are one-shot, in a binary min-heap ordered by (deadline, id).
 * Deadlines are loop_now() + delay.  An iteration fires only the timers
 * that existed when it began (id up to the limit taken before dispatch)
 * and are due at loop_now(), so a timer
 * callback that re-arms itself with delay 0 cannot starve fd events: it
 * fires again only after the next poll().  Cancelling removes the entry
 * from the heap, so a timer cancelled by an earlier callback of the same
 * iteration does not fire.  A timer is popped before its callback runs,
 * so cancelling itself from inside the callback is a harmless no-op.
 */
#include "drd/core/loop.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

typedef struct {
    int fd;
    short events;
    bool dead;              /* deleted during dispatch; compacted later */
    loop_fd_cb cb;
    void *arg;
} fd_watch;

typedef struct {
    int64_t deadline;
    uint64_t id;
    loop_timer_cb cb;
    void *arg;
} timer_ent;

struct loop {
    fd_watch *w;
    size_t nw, capw;
    size_t ndead;           /* tombstones in w */
    struct pollfd *pfd;
    size_t cappfd;
    bool dispatching;

    timer_ent *heap;
    size_t nt, capt;
    uint64_t next_id;       /* last id handed out */

    int64_t now;
    bool stop;
};

/* ---- fd watchers ---------------------------------------------------- */

static fd_watch *find_live(loop_t *loop, int fd)
{
    for (size_t i = 0; i < loop->nw; i++)
        if (!loop->w[i].dead && loop->w[i].fd == fd)
            return &loop->w[i];
    return NULL;
}

static void compact(loop_t *loop)
{
    size_t j = 0;
    for (size_t i = 0; i < loop->nw; i++)
        if (!loop->w[i].dead)
            loop->w[j++] = loop->w[i];
    loop->nw = j;
    loop->ndead = 0;
}

bool loop_add_fd(loop_t *loop, int fd, short events, loop_fd_cb cb, void *arg)
{
    if (fd < 0 || cb == NULL) {
        log_error("loop: invalid watcher (fd %d)", fd);
        return false;
    }
    if (find_live(loop, fd) != NULL) {
        log_error("loop: fd %d is already watched", fd);
        return false;
    }
    if (loop->nw == loop->capw) {
        size_t cap = loop->capw ? loop->capw * 2 : 16;
        fd_watch *w = realloc(loop->w, cap * sizeof(*w));
        if (w == NULL) {
            log_error("loop: out of memory adding fd %d", fd);
            return false;
        }
        loop->w = w;
        loop->capw = cap;
    }
    loop->w[loop->nw++] = (fd_watch){ .fd = fd, .events = events, .cb = cb, .arg = arg };
    return true;
}

void loop_mod_fd(loop_t *loop, int fd, short events)
{
    fd_watch *w = find_live(loop, fd);
    if (w == NULL) {
        log_warn("loop: modifying unwatched fd %d", fd);
        return;
    }
    w->events = events;
}

void loop_del_fd(loop_t *loop, int fd)
{
    fd_watch *w = find_live(loop, fd);
    if (w == NULL)
        return;
    if (loop->dispatching) {
        w->dead = true;
        loop->ndead++;
        return;
    }
    size_t i = (size_t)(w - loop->w);
    memmove(&loop->w[i], &loop->w[i + 1], (loop->nw - i - 1) * sizeof(*w));
    loop->nw--;
}

/* ---- timers: binary min-heap on (deadline, id) ------------------------ */

static bool timer_before(const timer_ent *a, const timer_ent *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->id < b->id);
}

static void heap_swap(loop_t *loop, size_t i, size_t j)
{
    timer_ent t = loop->heap[i];
    loop->heap[i] = loop->heap[j];
    loop->heap[j] = t;
}

static void sift_up(loop_t *loop, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(&loop->heap[i], &loop->heap[parent]))
            break;
        heap_swap(loop, i, parent);
        i = parent;
    }
}

static void sift_down(loop_t *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->nt && timer_before(&loop->heap[l], &loop->heap[m]))
            m = l;
        if (r < loop->nt && timer_before(&loop->heap[r], &loop->heap[m]))
            m = r;
        if (m == i)
            break;
        heap_swap(loop, i, m);
        i = m;
    }
}

static void heap_remove(loop_t *loop, size_t i)
{
    loop->nt--;
    if (i == loop->nt)
        return;
    loop->heap[i] = loop->heap[loop->nt];
    sift_down(loop, i);
    sift_up(loop, i);
}

uint64_t loop_add_timer(loop_t *loop, int64_t delay_ms, loop_timer_cb cb, void *arg)
{
    if (cb == NULL) {
        log_error("loop: timer without a callback");
        return 0;
    }
    if (loop->nt == loop->capt) {
        size_t cap = loop->capt ? loop->capt * 2 : 16;
        timer_ent *h = realloc(loop->heap, cap * sizeof(*h));
        if (h == NULL) {
            log_error("loop: out of memory adding a timer");
            return 0;
        }
        loop->heap = h;
        loop->capt = cap;
    }
    /* Clamp so that now + delay cannot overflow (~146 years max). */
    if (delay_ms < 0)
        delay_ms = 0;
    if (delay_ms > INT64_MAX / 4)
        delay_ms = INT64_MAX / 4;
    timer_ent t = { .deadline = loop_now(loop) + delay_ms, .id = ++loop->next_id,
                    .cb = cb, .arg = arg };
    loop->heap[loop->nt] = t;
    sift_up(loop, loop->nt++);
    return t.id;
}

void loop_cancel_timer(loop_t *loop, uint64_t id)
{
    if (loop == NULL || id == 0)
        return;
    for (size_t i = 0; i < loop->nt; i++) {
        if (loop->heap[i].id == id) {
            heap_remove(loop, i);
            return;
        }
    }
}

/* ---- the loop -------------------------------------------------------- */

loop_t *loop_new(void)
{
    loop_t *loop = calloc(1, sizeof(*loop));
    if (loop == NULL) {
        log_error("loop: out of memory");
        return NULL;
    }
    loop->now = mono_ms();
    return loop;
}

void loop_free(loop_t *loop)
{
    if (loop == NULL)
        return;
    free(loop->w);
    free(loop->pfd);
    free(loop->heap);
    free(loop);
}

/* Inside callbacks, the time taken just after poll() returned, so that
 * everything dispatched in one iteration sees the same "now".  Outside
 * (set-up before loop_run, code between runs) a fresh reading, so that
 * timers and probes started during a slow start-up are not measured from
 * a stale clock. */
int64_t loop_now(loop_t *loop)
{
    if (!loop->dispatching)
        loop->now = mono_ms();
    return loop->now;
}

void loop_stop(loop_t *loop)
{
    loop->stop = true;
}

/* poll() timeout: ms until the earliest timer, 0 if overdue, -1 if none.
 * Computed from a fresh clock reading: callbacks may have taken time. */
static int next_timeout(loop_t *loop)
{
    if (loop->nt == 0)
        return -1;
    int64_t wait = loop->heap[0].deadline - mono_ms();
    if (wait <= 0)
        return 0;
    return wait > INT_MAX ? INT_MAX : (int)wait;
}

static bool prepare_pollfds(loop_t *loop)
{
    if (loop->cappfd < loop->nw) {
        struct pollfd *p = realloc(loop->pfd, loop->capw * sizeof(*p));
        if (p == NULL) {
            log_error("loop: out of memory");
            return false;
        }
        loop->pfd = p;
        loop->cappfd = loop->capw;
    }
    for (size_t i = 0; i < loop->nw; i++) {
        /* events == 0 pauses the watcher entirely (poll ignores fd -1,
         * otherwise POLLHUP/POLLERR would still be reported). */
        loop->pfd[i].fd = loop->w[i].events ? loop->w[i].fd : -1;
        loop->pfd[i].events = loop->w[i].events;
        loop->pfd[i].revents = 0;
    }
    return true;
}

static void dispatch_fds(loop_t *loop, size_t npolled)
{
    for (size_t i = 0; i < npolled; i++) {
        if (loop->w[i].dead || loop->pfd[i].revents == 0)
            continue;
        /* Report only what the watcher still asks for (an earlier callback
         * may have changed its events), plus the conditions poll() always
         * reports. */
        short revents = loop->pfd[i].revents &
                        (loop->w[i].events | POLLERR | POLLHUP | POLLNVAL);
        if (revents == 0 || loop->w[i].events == 0)
            continue;
        int fd = loop->w[i].fd;
        loop_fd_cb cb = loop->w[i].cb;
        void *arg = loop->w[i].arg;
        cb(loop, fd, revents, arg);
        /* A closed fd stays POLLNVAL forever: drop a watcher its callback
         * did not remove rather than spin. */
        if ((revents & POLLNVAL) && !loop->w[i].dead) {
            log_error("loop: fd %d is not open; watcher removed", fd);
            loop->w[i].dead = true;
            loop->ndead++;
        }
    }
}

static void dispatch_timers(loop_t *loop, uint64_t id_limit)
{
    while (loop->nt > 0) {
        timer_ent t = loop->heap[0];
        /* Both conditions stop at the heap top: a timer created during this
         * iteration has deadline >= now, and any older due timer sorts
         * before it (smaller or equal deadline, smaller id). */
        if (t.deadline > loop->now || t.id > id_limit)
            break;
        heap_remove(loop, 0);
        t.cb(loop, t.arg);
    }
}

void loop_run(loop_t *loop)
{
    loop->stop = false;
    loop->now = mono_ms();
    while (!loop->stop) {
        if (loop->nw - loop->ndead == 0 && loop->nt == 0) {
            log_debug("loop: nothing to wait for, leaving");
            break;
        }
        if (!prepare_pollfds(loop))
            break;
        size_t npolled = loop->nw;
        int n = poll(loop->pfd, (nfds_t)npolled, next_timeout(loop));
        int err = errno;
        loop->now = mono_ms();
        if (n < 0 && err != EINTR) {
            log_error("loop: poll: %s", strerror(err));
            break;
        }
        uint64_t id_limit = loop->next_id;
        loop->dispatching = true;
        if (n > 0)
            dispatch_fds(loop, npolled);
        dispatch_timers(loop, id_limit);
        loop->dispatching = false;
        if (loop->ndead > 0)
            compact(loop);
    }
}
